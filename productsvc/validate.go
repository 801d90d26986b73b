package productsvc

import (
	"errors"
	"fmt"
	"strings"
	"unicode"
	"unicode/utf8"

	productsv1 "github.com/kgrpc/platform/gen/shop/products/v1"
)

// Limits of the product fields, stock and requests.
const (
	// MaxSKULen is the longest accepted SKU, in bytes.
	MaxSKULen = 64
	// MaxNameLen is the longest accepted product name, in characters.
	MaxNameLen = 200
	// MaxDescriptionLen is the longest accepted description, in characters.
	MaxDescriptionLen = 5000
	// MaxCategoryLen is the longest accepted category, in characters.
	MaxCategoryLen = 100
	// MaxPriceCents is the highest accepted price (100 million currency
	// units), which keeps order totals far from overflowing.
	MaxPriceCents = 10_000_000_000
	// MaxStock is the highest stock a product may hold, and the largest
	// AdjustStock delta and reserved quantity.
	MaxStock = 1_000_000_000
	// MaxIDLen is the longest accepted product or reservation id, in bytes.
	MaxIDLen = 128
	// MaxQueryLen is the longest accepted ListProducts query, in characters.
	MaxQueryLen = 200
	// MaxReservationItems is the most distinct products one reservation may
	// hold.
	MaxReservationItems = 100
	// DefaultPageSize is the ListProducts page size when the request has none.
	DefaultPageSize = 20
	// MaxPageSize caps the ListProducts page size.
	MaxPageSize = 100
)

// parseSKU trims sku and checks it: 1 to MaxSKULen bytes of ASCII letters,
// digits, '-', '_' and '.', starting with a letter or digit.
func parseSKU(sku string) (string, error) {
	sku = strings.TrimSpace(sku)
	if sku == "" {
		return "", errors.New("sku is required")
	}
	if len(sku) > MaxSKULen {
		return "", fmt.Errorf("sku is longer than %d characters", MaxSKULen)
	}
	for i, c := range []byte(sku) {
		alnum := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9'
		if !alnum && (i == 0 || c != '-' && c != '_' && c != '.') {
			return "", errors.New("sku must be letters, digits, '-', '_' or '.', starting with a letter or digit")
		}
	}
	return sku, nil
}

// parseText trims s and checks it is valid UTF-8 of at most max characters,
// without control characters (newlines and tabs allowed when multiline).
// field names it in errors.
func parseText(field, s string, max int, multiline bool) (string, error) {
	s = strings.TrimSpace(s)
	if !utf8.ValidString(s) {
		return "", fmt.Errorf("%s is not valid UTF-8", field)
	}
	if n := utf8.RuneCountInString(s); n > max {
		return "", fmt.Errorf("%s is longer than %d characters", field, max)
	}
	for _, r := range s {
		if unicode.IsControl(r) && !(multiline && (r == '\n' || r == '\t' || r == '\r')) {
			return "", fmt.Errorf("%s contains control characters", field)
		}
	}
	return s, nil
}

// parseName checks a product name: required, at most MaxNameLen characters.
func parseName(name string) (string, error) {
	name, err := parseText("name", name, MaxNameLen, false)
	if err == nil && name == "" {
		err = errors.New("name is required")
	}
	return name, err
}

// parseDescription checks a description: at most MaxDescriptionLen
// characters, may span lines.
func parseDescription(d string) (string, error) {
	return parseText("description", d, MaxDescriptionLen, true)
}

// parseCategory checks a category: at most MaxCategoryLen characters, may be
// empty.
func parseCategory(c string) (string, error) {
	return parseText("category", c, MaxCategoryLen, false)
}

// checkPrice checks a price in cents.
func checkPrice(field string, cents int64) error {
	if cents < 0 {
		return fmt.Errorf("%s must not be negative", field)
	}
	if cents > MaxPriceCents {
		return fmt.Errorf("%s must be at most %d", field, int64(MaxPriceCents))
	}
	return nil
}

// checkID checks a product or reservation id: present, at most MaxIDLen
// bytes, printable ASCII without spaces.
func checkID(field, id string) error {
	if id == "" {
		return fmt.Errorf("%s is required", field)
	}
	if len(id) > MaxIDLen {
		return fmt.Errorf("%s is longer than %d bytes", field, MaxIDLen)
	}
	for _, c := range []byte(id) {
		if c <= ' ' || c >= 0x7f {
			return fmt.Errorf("%s must be printable ASCII without spaces", field)
		}
	}
	return nil
}

// orderBy maps ListProductsRequest.order_by to a sort.
var orderBy = map[string]struct {
	sort SortField
	desc bool
}{
	"":             {SortName, false},
	"name":         {SortName, false},
	"-name":        {SortName, true},
	"price":        {SortPrice, false},
	"-price":       {SortPrice, true},
	"create_time":  {SortCreateTime, false},
	"-create_time": {SortCreateTime, true},
}

// mergeItems checks items and merges lines of the same product into the
// first one, keeping request order.
func mergeItems(items []*productsv1.StockItem) ([]StockRequest, error) {
	if len(items) == 0 {
		return nil, errors.New("items must not be empty")
	}
	out := make([]StockRequest, 0, len(items))
	at := make(map[string]int, len(items))
	for i, it := range items {
		if err := checkID(fmt.Sprintf("items[%d].product_id", i), it.GetProductId()); err != nil {
			return nil, err
		}
		if it.GetQuantity() < 1 {
			return nil, fmt.Errorf("items[%d].quantity must be at least 1", i)
		}
		if j, ok := at[it.GetProductId()]; ok {
			out[j].Quantity += int64(it.GetQuantity())
		} else {
			at[it.GetProductId()] = len(out)
			out = append(out, StockRequest{ProductID: it.GetProductId(), Quantity: int64(it.GetQuantity())})
		}
	}
	if len(out) > MaxReservationItems {
		return nil, fmt.Errorf("a reservation holds at most %d distinct products", MaxReservationItems)
	}
	for _, it := range out {
		// The response carries quantities as int32.
		if it.Quantity > MaxStock {
			return nil, fmt.Errorf("quantity of product %q must be at most %d", it.ProductID, int64(MaxStock))
		}
	}
	return out, nil
}
