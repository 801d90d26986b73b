package productsvc

import (
	"cmp"
	"encoding/base64"
	"fmt"
	"slices"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/proto"

	productsv1 "github.com/kgrpc/platform/gen/shop/products/v1"
	"github.com/kgrpc/platform/internal/validatetest"
)

// listFixture creates 37 products with repeated names, prices and
// categories (so ties need the id) and returns them.
func listFixture(t *testing.T, e testEnv) []*productsv1.Product {
	t.Helper()
	names := []string{"Red Mug", "blue mug", "Green Kettle", "100% Cotton Towel", "snake_case Poster", "Mug"}
	cats := []string{"Kitchen", "kitchen", "Decor", "Bath"}
	var ps []*productsv1.Product
	for i := range 37 {
		name := names[i%len(names)]
		resp, err := validatetest.Wrap(e.svc.CreateProduct)(admin, &productsv1.CreateProductRequest{
			Sku: fmt.Sprintf("SKU-%02d", i), Name: name, Description: fmt.Sprintf("item %d, a %s", i, strings.ToLower(name)),
			Category: cats[i%len(cats)], PriceCents: int64(100 * (i % 7)), Stock: int64(i % 3),
		})
		if err != nil {
			t.Fatal(err)
		}
		ps = append(ps, resp.GetProduct())
	}
	return ps
}

// expected filters and sorts all as ListProducts should.
func expected(all []*productsv1.Product, req *productsv1.ListProductsRequest) []string {
	var out []*productsv1.Product
	for _, p := range all {
		q := strings.ToLower(req.GetQuery())
		if q != "" && !strings.Contains(strings.ToLower(p.GetName()), q) && !strings.Contains(strings.ToLower(p.GetDescription()), q) {
			continue
		}
		if req.GetCategory() != "" && !strings.EqualFold(req.GetCategory(), p.GetCategory()) {
			continue
		}
		if req.MinPriceCents != nil && p.GetPriceCents() < req.GetMinPriceCents() {
			continue
		}
		if req.MaxPriceCents != nil && p.GetPriceCents() > req.GetMaxPriceCents() {
			continue
		}
		if req.GetInStock() && p.GetStock() <= 0 {
			continue
		}
		out = append(out, p)
	}
	field, desc := strings.CutPrefix(req.GetOrderBy(), "-")
	slices.SortFunc(out, func(a, b *productsv1.Product) int {
		var c int
		switch field {
		case "", "name":
			c = cmp.Compare(strings.ToLower(a.GetName()), strings.ToLower(b.GetName()))
		case "price":
			c = cmp.Compare(a.GetPriceCents(), b.GetPriceCents())
		case "create_time":
			c = a.GetCreateTime().AsTime().Compare(b.GetCreateTime().AsTime())
		}
		c = cmp.Or(c, cmp.Compare(a.GetId(), b.GetId()))
		if desc {
			c = -c
		}
		return c
	})
	ids := make([]string, len(out))
	for i, p := range out {
		ids[i] = p.GetId()
	}
	return ids
}

// walk lists every page of req and returns the ids in order.
func walk(t *testing.T, e testEnv, req *productsv1.ListProductsRequest) []string {
	t.Helper()
	req = proto.Clone(req).(*productsv1.ListProductsRequest)
	var ids []string
	for pages := 0; ; pages++ {
		if pages > 100 {
			t.Fatal("too many pages")
		}
		resp, err := validatetest.Wrap(e.svc.ListProducts)(anonymous, req)
		if err != nil {
			t.Fatalf("page %d: %v", pages, err)
		}
		size := int(req.GetPageSize())
		if size == 0 {
			size = DefaultPageSize
		}
		if len(resp.GetProducts()) > size {
			t.Fatalf("page of %d products, page_size %d", len(resp.GetProducts()), size)
		}
		if resp.GetNextPageToken() != "" && len(resp.GetProducts()) != size {
			t.Fatalf("short page of %d products with a next page", len(resp.GetProducts()))
		}
		for _, p := range resp.GetProducts() {
			ids = append(ids, p.GetId())
		}
		if resp.GetNextPageToken() == "" {
			return ids
		}
		req.PageToken = resp.GetNextPageToken()
	}
}

func TestListProductsWalksAllPages(t *testing.T) {
	e := newEnv(t)
	all := listFixture(t, e)
	i64 := func(v int64) *int64 { return &v }
	filters := []struct {
		name string
		req  *productsv1.ListProductsRequest
	}{
		{"everything", &productsv1.ListProductsRequest{}},
		{"query", &productsv1.ListProductsRequest{Query: "MUG"}},
		{"query with percent", &productsv1.ListProductsRequest{Query: "100%"}},
		{"query with underscore", &productsv1.ListProductsRequest{Query: "e_c"}},
		{"query in description", &productsv1.ListProductsRequest{Query: "item 1"}},
		{"category", &productsv1.ListProductsRequest{Category: "KITCHEN"}},
		{"price range", &productsv1.ListProductsRequest{MinPriceCents: i64(200), MaxPriceCents: i64(400)}},
		{"min price", &productsv1.ListProductsRequest{MinPriceCents: i64(500)}},
		{"max price zero", &productsv1.ListProductsRequest{MaxPriceCents: i64(0)}},
		{"in stock", &productsv1.ListProductsRequest{InStock: true}},
		{"everything at once", &productsv1.ListProductsRequest{Query: "mug", Category: "kitchen", MinPriceCents: i64(100), InStock: true}},
		{"no match", &productsv1.ListProductsRequest{Query: "zzz"}},
	}
	orders := []string{"", "name", "-name", "price", "-price", "create_time", "-create_time"}
	sizes := []int32{0, 1, 3, 7, 100}
	for _, f := range filters {
		for _, order := range orders {
			for _, size := range sizes {
				req := proto.Clone(f.req).(*productsv1.ListProductsRequest)
				req.OrderBy, req.PageSize = order, size
				t.Run(fmt.Sprintf("%s/order=%q/size=%d", f.name, order, size), func(t *testing.T) {
					want := expected(all, req)
					got := walk(t, e, req)
					if !slices.Equal(got, want) {
						t.Fatalf("got  %v\nwant %v", got, want)
					}
				})
			}
		}
	}
}

func TestListProductsPagingSurvivesChanges(t *testing.T) {
	e := newEnv(t)
	all := listFixture(t, e)
	req := &productsv1.ListProductsRequest{OrderBy: "price", PageSize: 5}
	first, err := validatetest.Wrap(e.svc.ListProducts)(anonymous, req)
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for _, p := range first.GetProducts() {
		seen[p.GetId()] = true
	}
	// Delete one product already seen and one not yet seen, then go on.
	var unseen string
	for _, p := range all {
		if !seen[p.GetId()] {
			unseen = p.GetId()
			break
		}
	}
	for _, id := range []string{first.GetProducts()[0].GetId(), unseen} {
		if _, err := validatetest.Wrap(e.svc.DeleteProduct)(admin, &productsv1.DeleteProductRequest{Id: id}); err != nil {
			t.Fatal(err)
		}
	}
	req.PageToken = first.GetNextPageToken()
	rest := walk(t, e, req)
	for _, id := range rest {
		if seen[id] {
			t.Fatalf("%s listed twice", id)
		}
		seen[id] = true
	}
	if len(seen) != len(all)-1 || seen[unseen] {
		t.Fatalf("saw %d products, want %d without the deleted unseen one", len(seen), len(all)-1)
	}
}

func TestListProductsInvalid(t *testing.T) {
	e := newEnv(t)
	listFixture(t, e)
	first, err := validatetest.Wrap(e.svc.ListProducts)(anonymous, &productsv1.ListProductsRequest{Query: "mug", PageSize: 2})
	if err != nil || first.GetNextPageToken() == "" {
		t.Fatalf("first page = %v, %v", first, err)
	}
	tok := first.GetNextPageToken()
	i64 := func(v int64) *int64 { return &v }
	tests := []struct {
		name string
		req  *productsv1.ListProductsRequest
		want codes.Code
	}{
		{"same filters, other page size", &productsv1.ListProductsRequest{Query: "mug", PageSize: 5, PageToken: tok}, codes.OK},
		{"same filters, other case", &productsv1.ListProductsRequest{Query: "MUG", PageToken: tok}, codes.OK},
		{"token with other query", &productsv1.ListProductsRequest{Query: "kettle", PageToken: tok}, codes.InvalidArgument},
		{"token without query", &productsv1.ListProductsRequest{PageToken: tok}, codes.InvalidArgument},
		{"token with other order", &productsv1.ListProductsRequest{Query: "mug", OrderBy: "-name", PageToken: tok}, codes.InvalidArgument},
		{"token with in_stock", &productsv1.ListProductsRequest{Query: "mug", InStock: true, PageToken: tok}, codes.InvalidArgument},
		{"token with min price", &productsv1.ListProductsRequest{Query: "mug", MinPriceCents: i64(0), PageToken: tok}, codes.InvalidArgument},
		{"garbage token", &productsv1.ListProductsRequest{PageToken: "!!!"}, codes.InvalidArgument},
		{"base64 non-JSON token", &productsv1.ListProductsRequest{PageToken: base64.RawURLEncoding.EncodeToString([]byte("nope"))}, codes.InvalidArgument},
		{"token without id", &productsv1.ListProductsRequest{PageToken: base64.RawURLEncoding.EncodeToString([]byte(`{"f":"x"}`))}, codes.InvalidArgument},
		{"negative page size", &productsv1.ListProductsRequest{PageSize: -1}, codes.InvalidArgument},
		{"huge page size is capped", &productsv1.ListProductsRequest{PageSize: 1 << 30}, codes.OK},
		{"unknown order", &productsv1.ListProductsRequest{OrderBy: "stock"}, codes.InvalidArgument},
		{"order with space", &productsv1.ListProductsRequest{OrderBy: "name desc"}, codes.InvalidArgument},
		{"negative min price", &productsv1.ListProductsRequest{MinPriceCents: i64(-1)}, codes.InvalidArgument},
		{"negative max price", &productsv1.ListProductsRequest{MaxPriceCents: i64(-1)}, codes.InvalidArgument},
		{"min above max", &productsv1.ListProductsRequest{MinPriceCents: i64(5), MaxPriceCents: i64(4)}, codes.InvalidArgument},
		{"min equals max", &productsv1.ListProductsRequest{MinPriceCents: i64(100), MaxPriceCents: i64(100)}, codes.OK},
		{"query too long", &productsv1.ListProductsRequest{Query: strings.Repeat("q", 201)}, codes.InvalidArgument},
		{"query with control character", &productsv1.ListProductsRequest{Query: "a\x00b"}, codes.InvalidArgument},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := validatetest.Wrap(e.svc.ListProducts)(anonymous, tc.req)
			wantCode(t, err, tc.want)
		})
	}
	resp, err := validatetest.Wrap(e.svc.ListProducts)(anonymous, &productsv1.ListProductsRequest{PageSize: 1 << 30})
	if err != nil || len(resp.GetProducts()) != 37 {
		t.Fatalf("capped page: %d products, %v", len(resp.GetProducts()), err)
	}
}
