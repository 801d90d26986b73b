package productsvc

import (
	"fmt"

	productsv1 "github.com/kgrpc/platform/gen/shop/products/v1"
)

// The limits of each request's fields are its buf.validate rules, in
// proto/shop/products/v1/products.proto: the server's validation
// interceptor refuses a request that breaks them before a handler runs.
// What is left here depends on more than one field or on state.
const (
	// MaxStock is the highest stock a product may hold, and the largest
	// reserved quantity of one product.
	MaxStock = 1_000_000_000
	// MaxReservationItems is the most distinct products one reservation may
	// hold.
	MaxReservationItems = 100
	// DefaultPageSize is the ListProducts page size when the request has none.
	DefaultPageSize = 20
	// MaxPageSize caps the ListProducts page size.
	MaxPageSize = 100
)

// orderBy maps ListProductsRequest.order_by to a sort. Its keys are the
// values the field's rule allows.
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

// mergeItems merges lines of the same product into the first one, keeping
// request order, and checks the merged lines: at most MaxReservationItems
// products, each at most MaxStock units.
func mergeItems(items []*productsv1.StockItem) ([]StockRequest, error) {
	out := make([]StockRequest, 0, len(items))
	at := make(map[string]int, len(items))
	for _, it := range items {
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
