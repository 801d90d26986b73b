package productsvc

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"

	"github.com/kgrpc/platform/internal/sqlstore"
)

// pageToken is the decoded ListProducts page token: the filter it belongs to
// and the sort key and id of the last product of the previous page.
type pageToken struct {
	// Filter is filterHash of the request that produced the token.
	Filter string `json:"f"`
	// Name, PriceCents and CreateTime (Unix microseconds) hold the sort key;
	// only the one of the request's order is set.
	Name       string `json:"n,omitempty"`
	PriceCents int64  `json:"p,omitempty"`
	CreateTime int64  `json:"t,omitempty"`
	// ID is the id of the last product.
	ID string `json:"id"`
}

// filterHash identifies the filters and order of q (not its page position or
// size), so that a token is only accepted with the request it came from.
func filterHash(q ListQuery) string {
	h := sha256.New()
	field := func(s string) { fmt.Fprintf(h, "%d:%s;", len(s), s) }
	field(foldCase(q.Text))
	field(foldCase(q.Category))
	opt := func(v *int64) {
		if v == nil {
			field("-")
		} else {
			field(strconv.FormatInt(*v, 10))
		}
	}
	opt(q.MinPriceCents)
	opt(q.MaxPriceCents)
	field(strconv.FormatBool(q.InStock))
	field(strconv.Itoa(int(q.Sort)))
	field(strconv.FormatBool(q.Desc))
	return base64.RawURLEncoding.EncodeToString(h.Sum(nil)[:12])
}

// encodePageToken returns the token of the page after last for q.
func encodePageToken(q ListQuery, last Product) string {
	t := pageToken{Filter: filterHash(q), ID: last.ID}
	switch q.Sort {
	case SortName:
		t.Name = last.Name
	case SortPrice:
		t.PriceCents = last.PriceCents
	case SortCreateTime:
		t.CreateTime = sqlstore.Micros(last.CreateTime)
	}
	b, _ := json.Marshal(t) // cannot fail: strings and integers only
	return base64.RawURLEncoding.EncodeToString(b)
}

// errBadPageToken is returned for malformed tokens and for tokens of another
// filter.
var errBadPageToken = errors.New("invalid page_token")

// decodePageToken returns the cursor of token for q.
func decodePageToken(q ListQuery, token string) (*Cursor, error) {
	b, err := base64.RawURLEncoding.DecodeString(token)
	if err != nil {
		return nil, errBadPageToken
	}
	var t pageToken
	if err := json.Unmarshal(b, &t); err != nil || t.ID == "" {
		return nil, errBadPageToken
	}
	if t.Filter != filterHash(q) {
		return nil, fmt.Errorf("%w: it belongs to a request with other filters or order", errBadPageToken)
	}
	return &Cursor{Name: t.Name, PriceCents: t.PriceCents, CreateTime: sqlstore.FromMicros(t.CreateTime), ID: t.ID}, nil
}
