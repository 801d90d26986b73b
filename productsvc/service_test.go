package productsvc

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"

	ordersv1 "github.com/kgrpc/platform/gen/shop/orders/v1"
	productsv1 "github.com/kgrpc/platform/gen/shop/products/v1"
	"github.com/kgrpc/platform/internal/auth"
	"github.com/kgrpc/platform/internal/validatetest"
	"github.com/kgrpc/platform/kafkatransport/validate"
)

type testEnv struct {
	svc      *Service
	repo     *SQLRepository
	notified *atomic.Int64
	logs     *bytes.Buffer
}

// newEnv returns a Service on a fresh SQLite store.
func newEnv(t *testing.T) testEnv {
	t.Helper()
	return newEnvOn(t, openSQLite(t))
}

// newEnvOn returns a Service on store s.
func newEnvOn(t *testing.T, s store) testEnv {
	t.Helper()
	var n atomic.Int64
	logs := &bytes.Buffer{}
	svc, err := New(Config{Repo: s.repo, Logger: slog.New(slog.NewTextHandler(logs, nil)), Notify: func() { n.Add(1) }})
	if err != nil {
		t.Fatal(err)
	}
	return testEnv{svc: svc, repo: s.repo.(*SQLRepository), notified: &n, logs: logs}
}

// as returns a context carrying the claims of subject with role.
func as(subject string, role auth.Role) context.Context {
	return auth.NewContext(context.Background(), auth.Claims{Subject: subject, Role: role})
}

var (
	anonymous = context.Background()
	admin     = as("u_admin", auth.RoleAdmin)
	customer  = as("u_cust", auth.RoleCustomer)
	service   = as("ordersvc", auth.RoleService)
)

// wantCode fails the test unless err is a gRPC status with code want.
func wantCode(t *testing.T, err error, want codes.Code) {
	t.Helper()
	if _, ok := status.FromError(err); !ok && err != nil {
		t.Fatalf("error %v is not a gRPC status", err)
	}
	if got := status.Code(err); got != want {
		t.Fatalf("code = %v (%v), want %v", got, err, want)
	}
}

func (e testEnv) create(t *testing.T, sku, name, category string, price, stock int64) *productsv1.Product {
	t.Helper()
	resp, err := validatetest.Wrap(e.svc.CreateProduct)(admin, &productsv1.CreateProductRequest{
		Sku: sku, Name: name, Description: "About " + name, Category: category, PriceCents: price, Stock: stock,
	})
	if err != nil {
		t.Fatalf("CreateProduct(%s): %v", sku, err)
	}
	return resp.GetProduct()
}

func (e testEnv) stock(t *testing.T, id string) int64 {
	t.Helper()
	var n int64
	if err := e.repo.DB().QueryRowContext(t.Context(), `SELECT stock FROM products WHERE id = $1`, id).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// events returns the outbox events in order.
func (e testEnv) events(t *testing.T) []proto.Message {
	t.Helper()
	rows, err := e.repo.DB().QueryContext(t.Context(), `SELECT event_type, payload FROM outbox ORDER BY id`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var out []proto.Message
	for rows.Next() {
		var (
			typ     string
			payload []byte
		)
		if err := rows.Scan(&typ, &payload); err != nil {
			t.Fatal(err)
		}
		mt, err := protoregistry.GlobalTypes.FindMessageByName(protoreflect.FullName(typ))
		if err != nil {
			t.Fatal(err)
		}
		m := mt.New().Interface()
		if err := proto.Unmarshal(payload, m); err != nil {
			t.Fatal(err)
		}
		out = append(out, m)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

func TestNewValidatesConfig(t *testing.T) {
	if _, err := New(Config{}); err == nil {
		t.Fatal("New without a repository succeeded")
	}
}

func TestAuthorization(t *testing.T) {
	e := newEnv(t)
	p := e.create(t, "SKU-1", "Thing", "misc", 100, 10)
	calls := map[string]func(ctx context.Context) error{
		"create": func(ctx context.Context) error {
			_, err := validatetest.Wrap(e.svc.CreateProduct)(ctx, &productsv1.CreateProductRequest{Sku: "X-1", Name: "n"})
			return err
		},
		"update": func(ctx context.Context) error {
			name := "n"
			_, err := validatetest.Wrap(e.svc.UpdateProduct)(ctx, &productsv1.UpdateProductRequest{Id: p.GetId(), Name: &name})
			return err
		},
		"adjust": func(ctx context.Context) error {
			_, err := validatetest.Wrap(e.svc.AdjustStock)(ctx, &productsv1.AdjustStockRequest{Id: p.GetId(), Delta: 1})
			return err
		},
		"delete": func(ctx context.Context) error {
			_, err := validatetest.Wrap(e.svc.DeleteProduct)(ctx, &productsv1.DeleteProductRequest{Id: "p_unknown"})
			return err
		},
		"reserve": func(ctx context.Context) error {
			_, err := validatetest.Wrap(e.svc.ReserveStock)(ctx, &productsv1.ReserveStockRequest{ReservationId: "o_x", Items: []*productsv1.StockItem{{ProductId: p.GetId(), Quantity: 1}}})
			return err
		},
		"release": func(ctx context.Context) error {
			_, err := validatetest.Wrap(e.svc.ReleaseStock)(ctx, &productsv1.ReleaseStockRequest{ReservationId: "o_x"})
			return err
		},
		"get": func(ctx context.Context) error {
			_, err := validatetest.Wrap(e.svc.GetProduct)(ctx, &productsv1.GetProductRequest{Id: p.GetId()})
			return err
		},
		"list": func(ctx context.Context) error {
			_, err := validatetest.Wrap(e.svc.ListProducts)(ctx, &productsv1.ListProductsRequest{})
			return err
		},
	}
	tests := []struct {
		call    string
		who     string
		ctx     context.Context
		want    codes.Code
		wantErr bool
	}{
		{"create", "anonymous", anonymous, codes.Unauthenticated, true},
		{"create", "customer", customer, codes.PermissionDenied, true},
		{"create", "service", service, codes.PermissionDenied, true},
		{"update", "anonymous", anonymous, codes.Unauthenticated, true},
		{"update", "customer", customer, codes.PermissionDenied, true},
		{"update", "admin", admin, codes.OK, false},
		{"adjust", "customer", customer, codes.PermissionDenied, true},
		{"adjust", "service", service, codes.PermissionDenied, true},
		{"adjust", "admin", admin, codes.OK, false},
		{"delete", "anonymous", anonymous, codes.Unauthenticated, true},
		{"delete", "customer", customer, codes.PermissionDenied, true},
		{"delete", "admin (unknown id)", admin, codes.NotFound, true},
		{"reserve", "anonymous", anonymous, codes.Unauthenticated, true},
		{"reserve", "customer", customer, codes.PermissionDenied, true},
		{"reserve", "service", service, codes.OK, false},
		{"reserve", "admin", admin, codes.OK, false},
		{"release", "anonymous", anonymous, codes.Unauthenticated, true},
		{"release", "customer", customer, codes.PermissionDenied, true},
		{"release", "service", service, codes.OK, false},
		{"release", "admin", admin, codes.OK, false},
		{"get", "anonymous", anonymous, codes.OK, false},
		{"list", "anonymous", anonymous, codes.OK, false},
		{"list", "customer", customer, codes.OK, false},
	}
	for _, tc := range tests {
		t.Run(tc.call+" as "+tc.who, func(t *testing.T) {
			wantCode(t, calls[tc.call](tc.ctx), tc.want)
		})
	}
	// Only the admin's own writes happened: one create, one update, one
	// adjustment, one reservation (twice, idempotent), one release.
	if got := e.stock(t, p.GetId()); got != 11 {
		t.Fatalf("stock = %d, want 11", got)
	}
}

func TestCreateProductValidation(t *testing.T) {
	e := newEnv(t)
	e.create(t, "TAKEN-1", "Taken", "x", 1, 1)
	ok := func() *productsv1.CreateProductRequest {
		return &productsv1.CreateProductRequest{Sku: "SKU-OK", Name: "Name", Description: "d", Category: "c", PriceCents: 1, Stock: 1}
	}
	tests := []struct {
		name   string
		modify func(r *productsv1.CreateProductRequest)
		want   codes.Code
	}{
		{"valid", func(r *productsv1.CreateProductRequest) {}, codes.OK},
		{"no sku", func(r *productsv1.CreateProductRequest) { r.Sku = "  " }, codes.InvalidArgument},
		{"sku with space", func(r *productsv1.CreateProductRequest) { r.Sku = "A B" }, codes.InvalidArgument},
		{"sku starting with dash", func(r *productsv1.CreateProductRequest) { r.Sku = "-AB" }, codes.InvalidArgument},
		{"sku non-ASCII", func(r *productsv1.CreateProductRequest) { r.Sku = "ÄB" }, codes.InvalidArgument},
		{"sku too long", func(r *productsv1.CreateProductRequest) { r.Sku = strings.Repeat("A", 65) }, codes.InvalidArgument},
		{"sku longest", func(r *productsv1.CreateProductRequest) { r.Sku = strings.Repeat("A", 64) }, codes.OK},
		{"sku taken", func(r *productsv1.CreateProductRequest) { r.Sku = "TAKEN-1" }, codes.AlreadyExists},
		{"sku taken other case", func(r *productsv1.CreateProductRequest) { r.Sku = "taken-1" }, codes.AlreadyExists},
		{"sku padded", func(r *productsv1.CreateProductRequest) { r.Sku = " SKU-OK " }, codes.InvalidArgument},
		{"no name", func(r *productsv1.CreateProductRequest) { r.Name = " " }, codes.InvalidArgument},
		{"name too long", func(r *productsv1.CreateProductRequest) { r.Name = strings.Repeat("é", 201) }, codes.InvalidArgument},
		{"name longest", func(r *productsv1.CreateProductRequest) { r.Name = strings.Repeat("é", 200); r.Sku = "N2" }, codes.OK},
		{"name control char", func(r *productsv1.CreateProductRequest) { r.Name = "a\nb" }, codes.InvalidArgument},
		{"name padded", func(r *productsv1.CreateProductRequest) { r.Name = "  Padded  "; r.Sku = "PAD" }, codes.OK},
		{"description too long", func(r *productsv1.CreateProductRequest) { r.Description = strings.Repeat("x", 5001) }, codes.InvalidArgument},
		{"description multiline", func(r *productsv1.CreateProductRequest) { r.Description = "line 1\nline 2"; r.Sku = "D2" }, codes.OK},
		{"category too long", func(r *productsv1.CreateProductRequest) { r.Category = strings.Repeat("c", 101) }, codes.InvalidArgument},
		{"negative price", func(r *productsv1.CreateProductRequest) { r.PriceCents = -1 }, codes.InvalidArgument},
		{"huge price", func(r *productsv1.CreateProductRequest) { r.PriceCents = 10_000_000_001 }, codes.InvalidArgument},
		{"free", func(r *productsv1.CreateProductRequest) { r.PriceCents = 0; r.Sku = "FREE" }, codes.OK},
		{"negative stock", func(r *productsv1.CreateProductRequest) { r.Stock = -1 }, codes.InvalidArgument},
		{"huge stock", func(r *productsv1.CreateProductRequest) { r.Stock = MaxStock + 1 }, codes.InvalidArgument},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := ok()
			tc.modify(r)
			resp, err := validatetest.Wrap(e.svc.CreateProduct)(admin, r)
			wantCode(t, err, tc.want)
			if err != nil {
				return
			}
			p := resp.GetProduct()
			if !strings.HasPrefix(p.GetId(), "p_") || len(p.GetId()) != 18 || p.GetSku() != strings.TrimSpace(r.Sku) ||
				p.GetCreateTime() == nil || !proto.Equal(p.GetCreateTime(), p.GetUpdateTime()) {
				t.Fatalf("created %v", p)
			}
			got, err := validatetest.Wrap(e.svc.GetProduct)(anonymous, &productsv1.GetProductRequest{Id: p.GetId()})
			if err != nil || !proto.Equal(got.GetProduct(), p) {
				t.Fatalf("GetProduct = %v, %v; want %v", got, err, p)
			}
		})
	}
}

func TestUpdateAndDelete(t *testing.T) {
	e := newEnv(t)
	p := e.create(t, "SKU-1", "Old", "Cat", 100, 5)
	s := func(v string) *string { return &v }
	i := func(v int64) *int64 { return &v }
	tests := []struct {
		name  string
		req   *productsv1.UpdateProductRequest
		want  codes.Code
		check func(*productsv1.Product) bool
	}{
		{"nothing to update", &productsv1.UpdateProductRequest{Id: p.GetId()}, codes.InvalidArgument, nil},
		{"no id", &productsv1.UpdateProductRequest{Name: s("x")}, codes.InvalidArgument, nil},
		{"unknown id", &productsv1.UpdateProductRequest{Id: "p_nope", Name: s("x")}, codes.NotFound, nil},
		{"empty name", &productsv1.UpdateProductRequest{Id: p.GetId(), Name: s(" ")}, codes.InvalidArgument, nil},
		{"negative price", &productsv1.UpdateProductRequest{Id: p.GetId(), PriceCents: i(-1)}, codes.InvalidArgument, nil},
		{"name only", &productsv1.UpdateProductRequest{Id: p.GetId(), Name: s(" New ")}, codes.OK, func(got *productsv1.Product) bool {
			return got.GetName() == "New" && got.GetCategory() == "Cat" && got.GetPriceCents() == 100
		}},
		{"price to zero, clear category", &productsv1.UpdateProductRequest{Id: p.GetId(), PriceCents: i(0), Category: s("")}, codes.OK, func(got *productsv1.Product) bool {
			return got.GetName() == "New" && got.GetCategory() == "" && got.GetPriceCents() == 0 && got.GetStock() == 5
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			resp, err := validatetest.Wrap(e.svc.UpdateProduct)(admin, tc.req)
			wantCode(t, err, tc.want)
			if tc.check != nil && !tc.check(resp.GetProduct()) {
				t.Fatalf("updated %v", resp.GetProduct())
			}
		})
	}
	if _, err := validatetest.Wrap(e.svc.DeleteProduct)(admin, &productsv1.DeleteProductRequest{Id: p.GetId()}); err != nil {
		t.Fatal(err)
	}
	_, err := validatetest.Wrap(e.svc.GetProduct)(anonymous, &productsv1.GetProductRequest{Id: p.GetId()})
	wantCode(t, err, codes.NotFound)
	_, err = validatetest.Wrap(e.svc.DeleteProduct)(admin, &productsv1.DeleteProductRequest{Id: p.GetId()})
	wantCode(t, err, codes.NotFound)
	list, err := validatetest.Wrap(e.svc.ListProducts)(anonymous, &productsv1.ListProductsRequest{})
	if err != nil || len(list.GetProducts()) != 0 {
		t.Fatalf("list after delete = %v, %v", list, err)
	}
	_, err = validatetest.Wrap(e.svc.ReserveStock)(service, &productsv1.ReserveStockRequest{ReservationId: "o_1", Items: []*productsv1.StockItem{{ProductId: p.GetId(), Quantity: 1}}})
	wantCode(t, err, codes.NotFound)
	// The SKU is free again.
	e.create(t, "SKU-1", "Again", "Cat", 1, 1)

	evs := e.events(t)
	var kinds []string
	for _, ev := range evs {
		switch ev := ev.(type) {
		case *productsv1.ProductChanged:
			kinds = append(kinds, fmt.Sprintf("product(deleted=%v,name=%s)", ev.GetDeleted(), ev.GetProduct().GetName()))
		case *productsv1.StockChanged:
			kinds = append(kinds, fmt.Sprintf("stock(%+d=%d)", ev.GetDelta(), ev.GetStock()))
		}
	}
	want := "[product(deleted=false,name=Old) stock(+5=5) product(deleted=false,name=New) product(deleted=false,name=New) product(deleted=true,name=New) product(deleted=false,name=Again) stock(+1=1)]"
	if got := fmt.Sprint(kinds); got != want {
		t.Fatalf("events = %s\nwant     %s", got, want)
	}
	if n := e.notified.Load(); n != 5 {
		t.Fatalf("notified %d times, want 5", n)
	}
}

func TestAdjustStockNeverNegative(t *testing.T) {
	e := newEnv(t)
	p := e.create(t, "SKU-1", "Thing", "", 100, 3)
	tests := []struct {
		name  string
		id    string
		delta int64
		want  codes.Code
		stock int64
	}{
		{"zero delta", p.GetId(), 0, codes.InvalidArgument, 3},
		{"unknown product", "p_nope", 1, codes.NotFound, 3},
		{"huge delta", p.GetId(), MaxStock + 1, codes.InvalidArgument, 3},
		{"take too much", p.GetId(), -4, codes.FailedPrecondition, 3},
		{"take all", p.GetId(), -3, codes.OK, 0},
		{"take from empty", p.GetId(), -1, codes.FailedPrecondition, 0},
		{"add", p.GetId(), 7, codes.OK, 7},
		{"beyond max", p.GetId(), MaxStock, codes.FailedPrecondition, 7},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			resp, err := validatetest.Wrap(e.svc.AdjustStock)(admin, &productsv1.AdjustStockRequest{Id: tc.id, Delta: tc.delta})
			wantCode(t, err, tc.want)
			if err == nil && resp.GetProduct().GetStock() != tc.stock {
				t.Fatalf("response stock = %d, want %d", resp.GetProduct().GetStock(), tc.stock)
			}
			if got := e.stock(t, p.GetId()); got != tc.stock {
				t.Fatalf("stock = %d, want %d", got, tc.stock)
			}
		})
	}
	// Concurrent takes of one unit each: exactly the stock succeeds.
	var wg sync.WaitGroup
	var okCount atomic.Int64
	for range 20 {
		wg.Go(func() {
			_, err := validatetest.Wrap(e.svc.AdjustStock)(admin, &productsv1.AdjustStockRequest{Id: p.GetId(), Delta: -1})
			if err == nil {
				okCount.Add(1)
			} else if status.Code(err) != codes.FailedPrecondition {
				t.Errorf("concurrent AdjustStock: %v", err)
			}
		})
	}
	wg.Wait()
	if okCount.Load() != 7 || e.stock(t, p.GetId()) != 0 {
		t.Fatalf("%d adjustments succeeded, stock %d; want 7 and 0", okCount.Load(), e.stock(t, p.GetId()))
	}
}

func TestReserveStock(t *testing.T) {
	e := newEnv(t)
	a := e.create(t, "A", "Alpha", "", 150, 5)
	b := e.create(t, "B", "Beta", "", 990, 2)
	item := func(id string, q int32) *productsv1.StockItem {
		return &productsv1.StockItem{ProductId: id, Quantity: q}
	}
	reserve := func(id string, items ...*productsv1.StockItem) (*productsv1.ReserveStockResponse, error) {
		return validatetest.Wrap(e.svc.ReserveStock)(service, &productsv1.ReserveStockRequest{ReservationId: id, Items: items})
	}

	invalid := []struct {
		name  string
		id    string
		items []*productsv1.StockItem
		want  codes.Code
	}{
		{"no reservation id", "", []*productsv1.StockItem{item(a.GetId(), 1)}, codes.InvalidArgument},
		{"reservation id with space", "o 1", []*productsv1.StockItem{item(a.GetId(), 1)}, codes.InvalidArgument},
		{"no items", "o_1", nil, codes.InvalidArgument},
		{"zero quantity", "o_1", []*productsv1.StockItem{item(a.GetId(), 0)}, codes.InvalidArgument},
		{"negative quantity", "o_1", []*productsv1.StockItem{item(a.GetId(), -1)}, codes.InvalidArgument},
		{"no product id", "o_1", []*productsv1.StockItem{item("", 1)}, codes.InvalidArgument},
		{"unknown product", "o_1", []*productsv1.StockItem{item(a.GetId(), 1), item("p_nope", 1)}, codes.NotFound},
		{"second item short", "o_1", []*productsv1.StockItem{item(a.GetId(), 5), item(b.GetId(), 3)}, codes.FailedPrecondition},
		{"merged duplicates short", "o_1", []*productsv1.StockItem{item(b.GetId(), 1), item(a.GetId(), 1), item(b.GetId(), 2)}, codes.FailedPrecondition},
	}
	for _, tc := range invalid {
		t.Run(tc.name, func(t *testing.T) {
			_, err := reserve(tc.id, tc.items...)
			wantCode(t, err, tc.want)
			if e.stock(t, a.GetId()) != 5 || e.stock(t, b.GetId()) != 2 {
				t.Fatalf("failed reservation changed stock: a=%d b=%d", e.stock(t, a.GetId()), e.stock(t, b.GetId()))
			}
		})
	}
	t.Run("short stock names the product", func(t *testing.T) {
		_, err := reserve("o_1", item(a.GetId(), 1), item(b.GetId(), 3))
		st := status.Convert(err)
		if !strings.Contains(st.Message(), b.GetId()) {
			t.Fatalf("message %q does not name %s", st.Message(), b.GetId())
		}
		var pf *errdetails.PreconditionFailure
		for _, d := range st.Details() {
			if d, ok := d.(*errdetails.PreconditionFailure); ok {
				pf = d
			}
		}
		if pf == nil || pf.GetViolations()[0].GetSubject() != b.GetId() || pf.GetViolations()[0].GetType() != "STOCK" {
			t.Fatalf("details = %v", st.Details())
		}
	})

	// Duplicates are merged, request order kept, prices captured.
	resp, err := reserve("o_1", item(b.GetId(), 1), item(a.GetId(), 2), item(b.GetId(), 1))
	if err != nil {
		t.Fatal(err)
	}
	want := []*productsv1.ReservedItem{
		{ProductId: b.GetId(), ProductName: "Beta", UnitPriceCents: 990, Quantity: 2},
		{ProductId: a.GetId(), ProductName: "Alpha", UnitPriceCents: 150, Quantity: 2},
	}
	checkItems := func(got *productsv1.ReserveStockResponse) {
		t.Helper()
		if len(got.GetItems()) != len(want) {
			t.Fatalf("items = %v", got.GetItems())
		}
		for i := range want {
			if !proto.Equal(got.GetItems()[i], want[i]) {
				t.Fatalf("item %d = %v, want %v", i, got.GetItems()[i], want[i])
			}
		}
	}
	checkItems(resp)
	if e.stock(t, a.GetId()) != 3 || e.stock(t, b.GetId()) != 0 {
		t.Fatalf("stock a=%d b=%d, want 3 and 0", e.stock(t, a.GetId()), e.stock(t, b.GetId()))
	}

	// Repeats return the first result, even after a price change, and take
	// nothing.
	price := int64(1)
	if _, err := validatetest.Wrap(e.svc.UpdateProduct)(admin, &productsv1.UpdateProductRequest{Id: a.GetId(), PriceCents: &price}); err != nil {
		t.Fatal(err)
	}
	again, err := reserve("o_1", item(b.GetId(), 2), item(a.GetId(), 2))
	if err != nil {
		t.Fatal(err)
	}
	checkItems(again)
	if e.stock(t, a.GetId()) != 3 || e.stock(t, b.GetId()) != 0 {
		t.Fatalf("repeat took stock: a=%d b=%d", e.stock(t, a.GetId()), e.stock(t, b.GetId()))
	}
	_, err = reserve("o_1", item(a.GetId(), 1))
	wantCode(t, err, codes.FailedPrecondition)

	var stockEvents []string
	for _, ev := range e.events(t) {
		if ev, ok := ev.(*productsv1.StockChanged); ok && ev.GetReservationId() != "" {
			stockEvents = append(stockEvents, fmt.Sprintf("%s %s %+d=%d", ev.GetReservationId(), ev.GetProductId(), ev.GetDelta(), ev.GetStock()))
		}
	}
	wantEvents := fmt.Sprint([]string{
		fmt.Sprintf("o_1 %s -2=0", b.GetId()),
		fmt.Sprintf("o_1 %s -2=3", a.GetId()),
	})
	if got := fmt.Sprint(stockEvents); got != wantEvents {
		t.Fatalf("reservation events = %s, want %s", got, wantEvents)
	}
}

func TestReleaseStockExactlyOnce(t *testing.T) {
	e := newEnv(t)
	a := e.create(t, "A", "Alpha", "", 150, 5)
	reserve := func(id string, q int32) {
		t.Helper()
		if _, err := validatetest.Wrap(e.svc.ReserveStock)(service, &productsv1.ReserveStockRequest{ReservationId: id, Items: []*productsv1.StockItem{{ProductId: a.GetId(), Quantity: q}}}); err != nil {
			t.Fatal(err)
		}
	}
	reserve("o_1", 2)
	reserve("o_2", 3)
	if e.stock(t, a.GetId()) != 0 {
		t.Fatalf("stock = %d", e.stock(t, a.GetId()))
	}

	tests := []struct {
		name     string
		id       string
		released bool
		stock    int64
	}{
		{"release", "o_1", true, 2},
		{"release again", "o_1", false, 2},
		{"unknown reservation", "o_never", false, 2},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			resp, err := validatetest.Wrap(e.svc.ReleaseStock)(service, &productsv1.ReleaseStockRequest{ReservationId: tc.id})
			if err != nil || resp.GetReleased() != tc.released {
				t.Fatalf("ReleaseStock = %v, %v; want released=%v", resp, err, tc.released)
			}
			if got := e.stock(t, a.GetId()); got != tc.stock {
				t.Fatalf("stock = %d, want %d", got, tc.stock)
			}
		})
	}
	_, err := validatetest.Wrap(e.svc.ReleaseStock)(service, &productsv1.ReleaseStockRequest{})
	wantCode(t, err, codes.InvalidArgument)

	// A reservation arriving after its own release is refused, and so is a
	// repeat of a released one: a released id never holds stock again. So is
	// a held id with other items. Each carries a RESERVATION violation naming
	// the id and the reason.
	for _, tc := range []struct {
		id  string
		q   int32
		why string
	}{{"o_never", 1, "released"}, {"o_1", 2, "released"}, {"o_2", 1, "other items"}} {
		_, err = validatetest.Wrap(e.svc.ReserveStock)(service, &productsv1.ReserveStockRequest{ReservationId: tc.id, Items: []*productsv1.StockItem{{ProductId: a.GetId(), Quantity: tc.q}}})
		wantCode(t, err, codes.FailedPrecondition)
		var v *errdetails.PreconditionFailure_Violation
		for _, d := range status.Convert(err).Details() {
			if pf, ok := d.(*errdetails.PreconditionFailure); ok && len(pf.GetViolations()) == 1 {
				v = pf.GetViolations()[0]
			}
		}
		if v.GetType() != "RESERVATION" || v.GetSubject() != tc.id || v.GetDescription() != tc.why {
			t.Fatalf("reserve %s: violation %v, want type RESERVATION subject %s description %q", tc.id, v, tc.id, tc.why)
		}
		if got := e.stock(t, a.GetId()); got != 2 {
			t.Fatalf("stock = %d after a refused reservation of %s, want 2", got, tc.id)
		}
	}

	t.Run("via OrderStatusChanged", func(t *testing.T) {
		ev := func(id string, st ordersv1.OrderStatus) *ordersv1.OrderStatusChanged {
			return &ordersv1.OrderStatusChanged{OrderId: id, OldStatus: ordersv1.OrderStatus_ORDER_STATUS_PENDING, NewStatus: st}
		}
		steps := []struct {
			name  string
			ev    *ordersv1.OrderStatusChanged
			stock int64
		}{
			{"confirmed is ignored", ev("o_2", ordersv1.OrderStatus_ORDER_STATUS_CONFIRMED), 2},
			{"cancelled releases", ev("o_2", ordersv1.OrderStatus_ORDER_STATUS_CANCELLED), 5},
			{"redelivered cancel does nothing", ev("o_2", ordersv1.OrderStatus_ORDER_STATUS_CANCELLED), 5},
			{"cancel of unknown order", ev("o_unknown", ordersv1.OrderStatus_ORDER_STATUS_CANCELLED), 5},
			{"cancel without order id", ev("", ordersv1.OrderStatus_ORDER_STATUS_CANCELLED), 5},
		}
		for _, st := range steps {
			// Event handlers run without claims.
			if err := e.svc.HandleOrderStatusChanged(t.Context(), st.ev); err != nil {
				t.Fatalf("%s: %v", st.name, err)
			}
			if got := e.stock(t, a.GetId()); got != st.stock {
				t.Fatalf("%s: stock = %d, want %d", st.name, got, st.stock)
			}
		}
	})

	var released []string
	for _, ev := range e.events(t) {
		if ev, ok := ev.(*productsv1.StockChanged); ok && ev.GetDelta() > 0 && ev.GetReservationId() != "" {
			released = append(released, fmt.Sprintf("%s %+d=%d", ev.GetReservationId(), ev.GetDelta(), ev.GetStock()))
		}
	}
	if got := fmt.Sprint(released); got != "[o_1 +2=2 o_2 +3=5]" {
		t.Fatalf("release events = %s", got)
	}
}

// Stock never goes negative and a reservation id reserves once, whatever the
// concurrency, on every store.
func TestReserveStockConcurrency(t *testing.T) {
	for name, open := range stores {
		t.Run(name, func(t *testing.T) { testReserveStockConcurrency(t, newEnvOn(t, open(t))) })
	}
}

func testReserveStockConcurrency(t *testing.T, e testEnv) {
	p := e.create(t, "HOT", "Hot item", "", 100, 10)
	const callers = 50
	var (
		wg        sync.WaitGroup
		succeeded atomic.Int64
	)
	for i := range callers {
		wg.Go(func() {
			_, err := validatetest.Wrap(e.svc.ReserveStock)(service, &productsv1.ReserveStockRequest{
				ReservationId: fmt.Sprintf("o_%d", i),
				Items:         []*productsv1.StockItem{{ProductId: p.GetId(), Quantity: 1}},
			})
			switch status.Code(err) {
			case codes.OK:
				succeeded.Add(1)
			case codes.FailedPrecondition:
			default:
				t.Errorf("reservation %d: %v", i, err)
			}
		})
	}
	// The same reservation id from many goroutines reserves once.
	q := e.create(t, "DUP", "Dup item", "", 100, 10)
	for range 20 {
		wg.Go(func() {
			if _, err := validatetest.Wrap(e.svc.ReserveStock)(service, &productsv1.ReserveStockRequest{
				ReservationId: "o_same",
				Items:         []*productsv1.StockItem{{ProductId: q.GetId(), Quantity: 3}},
			}); err != nil {
				t.Errorf("duplicate reservation: %v", err)
			}
		})
	}
	wg.Wait()
	if got := succeeded.Load(); got != 10 {
		t.Fatalf("%d reservations succeeded, want 10", got)
	}
	if got := e.stock(t, p.GetId()); got != 0 {
		t.Fatalf("stock = %d, want 0", got)
	}
	if got := e.stock(t, q.GetId()); got != 7 {
		t.Fatalf("stock of the duplicated reservation = %d, want 7", got)
	}
	var n int
	if err := e.repo.DB().QueryRowContext(t.Context(), `SELECT count(*) FROM outbox WHERE event_type = 'shop.products.v1.StockChanged'`).Scan(&n); err != nil {
		t.Fatal(err)
	}
	if n != 2+10+1 { // two creates with stock, ten reservations, one duplicated reservation
		t.Fatalf("StockChanged events = %d, want 13", n)
	}
}

// Instances starting together seed the catalog once, on every store.
func TestSeedDemoCatalogConcurrent(t *testing.T) {
	for name, open := range stores {
		t.Run(name, func(t *testing.T) {
			e := newEnvOn(t, open(t))
			var (
				wg     sync.WaitGroup
				seeded atomic.Int32
			)
			for range 4 {
				wg.Go(func() {
					ok, err := e.svc.SeedDemoCatalog(t.Context())
					if err != nil {
						t.Errorf("SeedDemoCatalog: %v", err)
					}
					if ok {
						seeded.Add(1)
					}
				})
			}
			wg.Wait()
			if n := seeded.Load(); n != 1 {
				t.Fatalf("%d instances seeded the catalog, want 1", n)
			}
		})
	}
}

func TestSeedDemoCatalog(t *testing.T) {
	e := newEnv(t)
	for i, want := range []bool{true, false} {
		got, err := e.svc.SeedDemoCatalog(t.Context())
		if err != nil || got != want {
			t.Fatalf("SeedDemoCatalog #%d = %v, %v; want %v", i, got, err, want)
		}
	}
	resp, err := validatetest.Wrap(e.svc.ListProducts)(anonymous, &productsv1.ListProductsRequest{PageSize: 100})
	if err != nil {
		t.Fatal(err)
	}
	cats := map[string]int{}
	for _, p := range resp.GetProducts() {
		cats[p.GetCategory()]++
	}
	if len(resp.GetProducts()) != len(demoCatalog) || len(cats) != 3 {
		t.Fatalf("seeded %d products in %v", len(resp.GetProducts()), cats)
	}
	// Every demo entry passes CreateProduct's validation.
	for _, d := range demoCatalog {
		req := &productsv1.CreateProductRequest{Sku: d.sku, Name: d.name, Description: d.description, Category: d.category, PriceCents: d.priceCents, Stock: d.stock}
		if err := validate.Check(validatetest.Rules(), req); err != nil {
			t.Errorf("%s: %v", d.sku, err)
		}
	}
}

func TestStorageFailureIsInternal(t *testing.T) {
	e := newEnv(t)
	p := e.create(t, "A", "Alpha", "", 1, 1)
	e.repo.Close()
	_, err := validatetest.Wrap(e.svc.GetProduct)(anonymous, &productsv1.GetProductRequest{Id: p.GetId()})
	wantCode(t, err, codes.Internal)
	if msg := status.Convert(err).Message(); msg != "internal error" {
		t.Fatalf("message %q leaks details", msg)
	}
	if !strings.Contains(e.logs.String(), "get product") {
		t.Fatalf("failure not logged: %q", e.logs.String())
	}
	if err := e.svc.HandleOrderStatusChanged(t.Context(), &ordersv1.OrderStatusChanged{OrderId: "o_1", NewStatus: ordersv1.OrderStatus_ORDER_STATUS_CANCELLED}); err == nil {
		t.Fatal("HandleOrderStatusChanged hid a storage failure; the event would be lost")
	}
}
