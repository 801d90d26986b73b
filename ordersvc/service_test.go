package ordersvc

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	ordersv1 "github.com/kgrpc/platform/gen/shop/orders/v1"
	productsv1 "github.com/kgrpc/platform/gen/shop/products/v1"
	"github.com/kgrpc/platform/internal/auth"
	"github.com/kgrpc/platform/internal/validatetest"
)

// fakeProducts is an in-memory product service: a catalogue with stock,
// all-or-nothing reservations idempotent by id, and injectable failures. It
// records whether each call names a user: it must not, since the order
// service calls as its own unit (which the transport authenticates). Methods the order service
// does not call panic (nil embedded interface).
type fakeProducts struct {
	productsv1.ProductServiceClient

	mu           sync.Mutex
	catalog      map[string]*fakeProduct
	reservations map[string][]*productsv1.ReservedItem
	// reserveErr, when set, fails ReserveStock; with reserveThenFail the
	// stock is reserved first (a reply lost after the work was done).
	reserveErr      error
	reserveThenFail bool
	releaseErr      error
	reserveCalls    []*productsv1.ReserveStockRequest
	releaseCalls    []string
	userCalls       int // calls that carried a user's principal or token
	calls           int
	deadlines       []bool
}

type fakeProduct struct {
	name  string
	price int64
	stock int32
}

func newFakeProducts() *fakeProducts {
	return &fakeProducts{
		catalog: map[string]*fakeProduct{
			"p_anvil": {"Anvil", 9900, 5},
			"p_bolt":  {"Bolt", 25, 1000},
			"p_cog":   {"Cog", 150, 1},
			"p_gear":  {"Gear", 1234, 1 << 30},
		},
		reservations: map[string][]*productsv1.ReservedItem{},
	}
}

// authorize records the call's deadline and whether it names a user.
func (f *fakeProducts) authorize(ctx context.Context) error {
	md, _ := metadata.FromOutgoingContext(ctx)
	if len(md.Get(auth.PrincipalKey)) > 0 || len(md.Get("authorization")) > 0 {
		f.userCalls++
	}
	f.calls++
	_, hasDeadline := ctx.Deadline()
	f.deadlines = append(f.deadlines, hasDeadline)
	return nil
}

func (f *fakeProducts) ReserveStock(ctx context.Context, req *productsv1.ReserveStockRequest, _ ...grpc.CallOption) (*productsv1.ReserveStockResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.authorize(ctx); err != nil {
		return nil, err
	}
	f.reserveCalls = append(f.reserveCalls, proto.Clone(req).(*productsv1.ReserveStockRequest))
	if f.reserveErr != nil && !f.reserveThenFail {
		return nil, f.reserveErr
	}
	if items, ok := f.reservations[req.GetReservationId()]; ok {
		if items == nil { // released: refused as the product service does
			st, _ := status.New(codes.FailedPrecondition, "reservation was released").WithDetails(&errdetails.PreconditionFailure{
				Violations: []*errdetails.PreconditionFailure_Violation{{Type: "RESERVATION", Subject: req.GetReservationId(), Description: "released"}}})
			return nil, st.Err()
		}
		return &productsv1.ReserveStockResponse{Items: items}, nil
	}
	var items []*productsv1.ReservedItem
	for _, it := range req.GetItems() {
		p, ok := f.catalog[it.GetProductId()]
		switch {
		case !ok:
			return nil, status.Errorf(codes.NotFound, "product %q not found", it.GetProductId())
		case p.stock < it.GetQuantity():
			return nil, status.Errorf(codes.FailedPrecondition, "insufficient stock for product %q", it.GetProductId())
		}
		items = append(items, &productsv1.ReservedItem{
			ProductId: it.GetProductId(), ProductName: p.name, UnitPriceCents: p.price, Quantity: it.GetQuantity(),
		})
	}
	for _, it := range items {
		f.catalog[it.ProductId].stock -= it.Quantity
	}
	f.reservations[req.GetReservationId()] = items
	if f.reserveErr != nil {
		return nil, f.reserveErr
	}
	return &productsv1.ReserveStockResponse{Items: items}, nil
}

func (f *fakeProducts) ReleaseStock(ctx context.Context, req *productsv1.ReleaseStockRequest, _ ...grpc.CallOption) (*productsv1.ReleaseStockResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.authorize(ctx); err != nil {
		return nil, err
	}
	f.releaseCalls = append(f.releaseCalls, req.GetReservationId())
	if f.releaseErr != nil {
		return nil, f.releaseErr
	}
	items, ok := f.reservations[req.GetReservationId()]
	if !ok || items == nil {
		f.reservations[req.GetReservationId()] = nil // a marker refuses a late reservation
		return &productsv1.ReleaseStockResponse{}, nil
	}
	for _, it := range items {
		f.catalog[it.ProductId].stock += it.Quantity
	}
	f.reservations[req.GetReservationId()] = nil // released; stays known
	return &productsv1.ReleaseStockResponse{Released: true}, nil
}

func (f *fakeProducts) stock(id string) int32 {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.catalog[id].stock
}

func (f *fakeProducts) releases() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.releaseCalls)
}

// fakeConn carries the calls of a generated ProductServiceClient to f, as a
// connection to the product service would, so that the order service's
// client is built as in production (NewProductsClient).
type fakeConn struct{ f *fakeProducts }

func (c fakeConn) Invoke(ctx context.Context, method string, args, reply any, _ ...grpc.CallOption) error {
	var (
		resp proto.Message
		err  error
	)
	switch method {
	case productsv1.ProductService_ReserveStock_FullMethodName:
		resp, err = c.f.ReserveStock(ctx, args.(*productsv1.ReserveStockRequest))
	case productsv1.ProductService_ReleaseStock_FullMethodName:
		resp, err = c.f.ReleaseStock(ctx, args.(*productsv1.ReleaseStockRequest))
	default:
		return status.Errorf(codes.Unimplemented, "fake product service: %s", method)
	}
	if err != nil {
		return err
	}
	proto.Merge(reply.(proto.Message), resp)
	return nil
}

func (fakeConn) NewStream(context.Context, *grpc.StreamDesc, string, ...grpc.CallOption) (grpc.ClientStream, error) {
	return nil, status.Error(codes.Unimplemented, "fake product service: no streams")
}

// failingCreate is a Repository whose Create fails, as a broken disk would.
type failingCreate struct {
	Repository
}

func (failingCreate) Create(context.Context, Order, OrderEvents) error {
	return errors.New("disk I/O error at /var/lib/orders.db")
}

// env is a Service on a real SQLite store with a fake product service.
type env struct {
	svc      *Service
	repo     *SQLRepository
	db       *sql.DB
	products *fakeProducts
	notified atomic.Int32
	clock    time.Time // next time the service's clock returns; advances 1ms per read
	clockMu  sync.Mutex
}

type envOption func(*Config)

func newEnv(t *testing.T, opts ...envOption) *env {
	t.Helper()
	r, err := Open(t.Context(), t.TempDir()+"/orders.db")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	e := &env{repo: r, db: r.DB(), products: newFakeProducts(), clock: t0}
	cfg := Config{Repo: r, Products: productsv1.NewProductServiceClient(fakeConn{e.products}), Notify: func() { e.notified.Add(1) }}
	for _, o := range opts {
		o(&cfg)
	}
	svc, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	svc.now = func() time.Time {
		e.clockMu.Lock()
		defer e.clockMu.Unlock()
		now := e.clock
		e.clock = e.clock.Add(time.Millisecond)
		return now
	}
	e.svc = svc
	return e
}

func as(subject string, role auth.Role) context.Context {
	return auth.NewContext(context.Background(), auth.Claims{Subject: subject, Role: role})
}

var (
	alice   = as("u_alice", auth.RoleCustomer)
	bob     = as("u_bob", auth.RoleCustomer)
	admin   = as("u_admin", auth.RoleAdmin)
	service = as(ServiceSubject, auth.RoleService)
	anon    = context.Background()
)

func items(kv ...any) []*ordersv1.CreateOrderItem {
	var out []*ordersv1.CreateOrderItem
	for i := 0; i < len(kv); i += 2 {
		out = append(out, &ordersv1.CreateOrderItem{ProductId: kv[i].(string), Quantity: int32(kv[i+1].(int))})
	}
	return out
}

// place creates an order for ctx's user, failing the test on error.
func (e *env) place(t *testing.T, ctx context.Context, kv ...any) *ordersv1.Order {
	t.Helper()
	if len(kv) == 0 {
		kv = []any{"p_bolt", 1}
	}
	resp, err := validatetest.Wrap(e.svc.CreateOrder)(ctx, &ordersv1.CreateOrderRequest{Items: items(kv...)})
	if err != nil {
		t.Fatalf("CreateOrder: %v", err)
	}
	return resp.GetOrder()
}

func wantCode(t *testing.T, err error, want codes.Code) {
	t.Helper()
	if got := status.Code(err); got != want {
		t.Fatalf("code = %v (%v), want %v", got, err, want)
	}
}

func countOrders(t *testing.T, db *sql.DB) int {
	t.Helper()
	var n int
	if err := db.QueryRow(`SELECT count(*) FROM orders`).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

func TestNewValidatesConfig(t *testing.T) {
	e := newEnv(t)
	tests := []struct {
		name string
		cfg  Config
	}{
		{"no repo", Config{Products: e.products}},
		{"no products", Config{Repo: e.repo}},
		{"negative timeout", Config{Repo: e.repo, Products: e.products, CallTimeout: -1}},
		{"recover before the call timeout", Config{Repo: e.repo, Products: e.products, CallTimeout: time.Minute, RecoverAfter: 30 * time.Second}},
		{"negative sweep interval", Config{Repo: e.repo, Products: e.products, RecoverEvery: -1}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := New(tc.cfg); err == nil {
				t.Fatal("New accepted an invalid config")
			}
		})
	}
}

func TestCreateOrder(t *testing.T) {
	e := newEnv(t)
	resp, err := validatetest.Wrap(e.svc.CreateOrder)(alice, &ordersv1.CreateOrderRequest{Items: items("p_anvil", 2, "p_bolt", 3, "p_anvil", 1)})
	if err != nil {
		t.Fatal(err)
	}
	o := resp.GetOrder()
	wantItems := []*ordersv1.OrderItem{
		{ProductId: "p_anvil", ProductName: "Anvil", UnitPriceCents: 9900, Quantity: 3},
		{ProductId: "p_bolt", ProductName: "Bolt", UnitPriceCents: 25, Quantity: 3},
	}
	switch {
	case len(o.GetId()) != 18 || o.GetId()[:2] != "o_":
		t.Errorf("id = %q", o.GetId())
	case o.GetUserId() != "u_alice":
		t.Errorf("user_id = %q", o.GetUserId())
	case o.GetStatus() != ordersv1.OrderStatus_ORDER_STATUS_PENDING:
		t.Errorf("status = %v", o.GetStatus())
	case o.GetTotalCents() != 3*9900+3*25:
		t.Errorf("total_cents = %d", o.GetTotalCents())
	case !o.GetCreateTime().AsTime().Equal(t0) || !o.GetUpdateTime().AsTime().Equal(t0):
		t.Errorf("times = %v, %v", o.GetCreateTime(), o.GetUpdateTime())
	case !slices.EqualFunc(o.GetItems(), wantItems, func(a, b *ordersv1.OrderItem) bool { return proto.Equal(a, b) }):
		t.Errorf("items = %v", o.GetItems())
	}

	// Reserved under the order id, merged, as the service itself, with a deadline.
	f := e.products
	if len(f.reserveCalls) != 1 || f.reserveCalls[0].GetReservationId() != o.GetId() || len(f.reserveCalls[0].GetItems()) != 2 {
		t.Fatalf("ReserveStock calls = %v", f.reserveCalls)
	}
	if f.userCalls != 0 || !f.deadlines[0] {
		t.Fatalf("ReserveStock named a user (%d) or had no deadline (%v)", f.userCalls, f.deadlines[0])
	}
	if got := f.stock("p_anvil"); got != 2 {
		t.Fatalf("anvil stock = %d, want 2", got)
	}

	// Stored as answered, with its event.
	got, err := validatetest.Wrap(e.svc.GetOrder)(alice, &ordersv1.GetOrderRequest{Id: o.GetId()})
	if err != nil || !proto.Equal(got.GetOrder(), o) {
		t.Fatalf("GetOrder = %v, %v, want %v", got.GetOrder(), err, o)
	}
	evs := outboxEvents(t, e.db)
	if len(evs) != 1 || !proto.Equal(evs[0], &ordersv1.OrderCreated{Order: o}) {
		t.Fatalf("outbox = %v, want OrderCreated of %v", evs, o)
	}
	if e.notified.Load() != 1 {
		t.Fatalf("Notify called %d times, want 1", e.notified.Load())
	}
}

func TestCreateOrderRejects(t *testing.T) {
	many := func(n int) []*ordersv1.CreateOrderItem {
		out := make([]*ordersv1.CreateOrderItem, n)
		for i := range out {
			out[i] = &ordersv1.CreateOrderItem{ProductId: fmt.Sprintf("p_%d", i), Quantity: 1}
		}
		return out
	}
	long := string(make([]byte, 129)) // past the product_id rule
	tests := []struct {
		name  string
		ctx   context.Context
		items []*ordersv1.CreateOrderItem
		want  codes.Code
	}{
		{"no token", anon, items("p_bolt", 1), codes.Unauthenticated},
		{"service role", service, items("p_bolt", 1), codes.PermissionDenied},
		{"no items", alice, nil, codes.InvalidArgument},
		{"too many items", alice, many(MaxItems + 1), codes.InvalidArgument},
		{"empty product id", alice, items("", 1), codes.InvalidArgument},
		{"long product id", alice, items(long, 1), codes.InvalidArgument},
		{"zero quantity", alice, items("p_bolt", 0), codes.InvalidArgument},
		{"negative quantity", alice, items("p_bolt", -1), codes.InvalidArgument},
		{"quantity too large", alice, items("p_bolt", MaxQuantity+1), codes.InvalidArgument},
		{"merged quantity too large", alice, items("p_bolt", 600, "p_bolt", 401), codes.InvalidArgument},
	}
	e := newEnv(t)
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := validatetest.Wrap(e.svc.CreateOrder)(tc.ctx, &ordersv1.CreateOrderRequest{Items: tc.items})
			wantCode(t, err, tc.want)
		})
	}
	if len(e.products.reserveCalls) != 0 || countOrders(t, e.db) != 0 {
		t.Fatalf("rejected orders reached the product service or the store")
	}
	// Exactly at the limits is fine.
	e.products.catalog["p_many"] = &fakeProduct{"Many", 1, 10000}
	e.place(t, alice, "p_many", MaxQuantity)
}

func TestCreateOrderReserveFailures(t *testing.T) {
	tests := []struct {
		name        string
		items       []*ordersv1.CreateOrderItem
		reserveErr  error
		thenFail    bool
		want        codes.Code
		wantMessage string
		wantRelease bool
	}{
		{"insufficient stock", items("p_bolt", 1, "p_cog", 2), nil, false,
			codes.FailedPrecondition, `insufficient stock for product "p_cog"`, false},
		{"unknown product", items("p_nope", 1), nil, false,
			codes.NotFound, `product "p_nope" not found`, false},
		{"invalid argument", items("p_bolt", 1), status.Error(codes.InvalidArgument, "bad item"), false,
			codes.InvalidArgument, "bad item", false},
		{"product service down", items("p_bolt", 1), status.Error(codes.Unavailable, "no broker"), false,
			codes.Unavailable, "", true},
		{"reply lost after reserving", items("p_bolt", 7), status.Error(codes.DeadlineExceeded, "timeout"), true,
			codes.Unavailable, "", true},
		{"token refused", items("p_bolt", 1), status.Error(codes.PermissionDenied, "service role required"), false,
			codes.Internal, "internal error", false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t)
			e.products.reserveErr, e.products.reserveThenFail = tc.reserveErr, tc.thenFail
			_, err := validatetest.Wrap(e.svc.CreateOrder)(alice, &ordersv1.CreateOrderRequest{Items: tc.items})
			wantCode(t, err, tc.want)
			if tc.wantMessage != "" && status.Convert(err).Message() != tc.wantMessage {
				t.Fatalf("message = %q, want %q", status.Convert(err).Message(), tc.wantMessage)
			}
			if n := countOrders(t, e.db); n != 0 {
				t.Fatalf("%d orders stored", n)
			}
			if evs := outboxEvents(t, e.db); len(evs) != 0 {
				t.Fatalf("outbox = %v", evs)
			}
			rel := e.products.releases()
			if tc.wantRelease != (len(rel) == 1) || (tc.wantRelease && rel[0] != e.products.reserveCalls[0].GetReservationId()) {
				t.Fatalf("ReleaseStock calls = %v, want release: %v", rel, tc.wantRelease)
			}
			if got := e.products.stock("p_bolt"); got != 1000 {
				t.Fatalf("bolt stock = %d, want 1000 (nothing kept)", got)
			}
		})
	}
}

func TestCreateOrderCompensatesWhenStoreFails(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.Repo = failingCreate{c.Repo} })
	_, err := validatetest.Wrap(e.svc.CreateOrder)(alice, &ordersv1.CreateOrderRequest{Items: items("p_anvil", 2)})
	wantCode(t, err, codes.Internal)
	if msg := status.Convert(err).Message(); msg != "internal error" {
		t.Fatalf("message = %q leaks details", msg)
	}
	rel := e.products.releases()
	if len(rel) != 1 || rel[0] != e.products.reserveCalls[0].GetReservationId() {
		t.Fatalf("ReleaseStock calls = %v, want the order's reservation", rel)
	}
	if e.products.calls != 2 || e.products.userCalls != 0 {
		t.Fatalf("%d product calls, %d of them naming a user", e.products.calls, e.products.userCalls)
	}
	if got := e.products.stock("p_anvil"); got != 5 {
		t.Fatalf("anvil stock = %d, want 5 after compensation", got)
	}
	if e.notified.Load() != 0 || countOrders(t, e.db) != 0 {
		t.Fatal("a failed order was stored or notified")
	}
}

// sweptCreate is a Repository whose Create comes too late: the recovery
// sweep has claimed the attempt's pending reservation, as when an attempt
// outlives its recover time.
type sweptCreate struct {
	Repository
}

func (r sweptCreate) Create(ctx context.Context, o Order, events OrderEvents) error {
	late := o.CreateTime.Add(time.Hour)
	if c, err := r.Repository.ClaimRecovery(ctx, o.ID, late, late.Add(time.Minute)); err != nil || c != ClaimRelease {
		return fmt.Errorf("sweep claim = %v, %v", c, err)
	}
	return r.Repository.Create(ctx, o, events)
}

// An attempt whose stock the sweep took over is rolled back, and does not
// release the stock itself: the sweep owns the release.
func TestCreateOrderTooLate(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.Repo = sweptCreate{c.Repo} })
	_, err := validatetest.Wrap(e.svc.CreateOrder)(alice, &ordersv1.CreateOrderRequest{Items: items("p_anvil", 2)})
	wantCode(t, err, codes.Aborted)
	if rel := e.products.releases(); len(rel) != 0 {
		t.Fatalf("ReleaseStock calls = %v, want none (the sweep releases)", rel)
	}
	if got := e.products.stock("p_anvil"); got != 3 {
		t.Fatalf("anvil stock = %d, want 3 until the sweep releases", got)
	}
	if e.notified.Load() != 0 || countOrders(t, e.db) != 0 {
		t.Fatal("a rolled back order was stored or notified")
	}
}

func TestGetOrder(t *testing.T) {
	e := newEnv(t)
	o := e.place(t, alice)
	tests := []struct {
		name string
		ctx  context.Context
		id   string
		want codes.Code
	}{
		{"owner", alice, o.GetId(), codes.OK},
		{"admin", admin, o.GetId(), codes.OK},
		{"other user", bob, o.GetId(), codes.NotFound},
		{"service role", service, o.GetId(), codes.NotFound},
		{"unknown", alice, "o_0000000000000000", codes.NotFound},
		{"unknown as admin", admin, "o_0000000000000000", codes.NotFound},
		{"empty id", alice, "", codes.InvalidArgument},
		{"no token", anon, o.GetId(), codes.Unauthenticated},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			resp, err := validatetest.Wrap(e.svc.GetOrder)(tc.ctx, &ordersv1.GetOrderRequest{Id: tc.id})
			wantCode(t, err, tc.want)
			if err == nil && !proto.Equal(resp.GetOrder(), o) {
				t.Fatalf("GetOrder = %v, want %v", resp.GetOrder(), o)
			}
		})
	}
	// Someone else's order and an unknown one are indistinguishable.
	_, errOther := validatetest.Wrap(e.svc.GetOrder)(bob, &ordersv1.GetOrderRequest{Id: o.GetId()})
	_, errUnknown := validatetest.Wrap(e.svc.GetOrder)(bob, &ordersv1.GetOrderRequest{Id: "o_ffffffffffffffff"})
	if a, b := status.Convert(errOther).Message(), status.Convert(errUnknown).Message(); a != fmt.Sprintf("order %q not found", o.GetId()) || b != `order "o_ffffffffffffffff" not found` {
		t.Fatalf("messages differ in form: %q, %q", a, b)
	}
}

func TestListUserOrders(t *testing.T) {
	e := newEnv(t)
	var placed []*ordersv1.Order // alice's
	for i := range 23 {
		if i%5 == 0 {
			e.clockMu.Lock()
			e.clock = e.clock.Add(-time.Millisecond) // a create-time tie with the previous order
			e.clockMu.Unlock()
		}
		placed = append(placed, e.place(t, alice, "p_gear", 1))
		if i%4 == 0 {
			e.place(t, bob, "p_gear", 1)
		}
	}
	// Newest first, ties broken by id desc.
	slices.SortFunc(placed, func(a, b *ordersv1.Order) int {
		if c := b.GetCreateTime().AsTime().Compare(a.GetCreateTime().AsTime()); c != 0 {
			return c
		}
		return strings.Compare(b.GetId(), a.GetId())
	})
	want := make([]string, len(placed))
	ties := 0
	for i, o := range placed {
		want[i] = o.GetId()
		if i > 0 && o.GetCreateTime().AsTime().Equal(placed[i-1].GetCreateTime().AsTime()) {
			ties++
		}
	}
	if ties == 0 {
		t.Fatal("no create-time ties: the tie-break is untested")
	}

	t.Run("walk all pages", func(t *testing.T) {
		for _, size := range []int32{1, 7, 23, 100} {
			t.Run(fmt.Sprint(size), func(t *testing.T) {
				var got []string
				tok := ""
				for page := 0; ; page++ {
					if page > 30 {
						t.Fatal("pagination does not end")
					}
					resp, err := validatetest.Wrap(e.svc.ListUserOrders)(alice, &ordersv1.ListUserOrdersRequest{UserId: "me", PageSize: size, PageToken: tok})
					if err != nil {
						t.Fatal(err)
					}
					if resp.GetTotalSize() != 23 {
						t.Fatalf("total_size = %d, want 23", resp.GetTotalSize())
					}
					for _, o := range resp.GetOrders() {
						if o.GetUserId() != "u_alice" || len(o.GetItems()) != 1 {
							t.Fatalf("listed %v", o)
						}
						got = append(got, o.GetId())
					}
					if tok = resp.GetNextPageToken(); tok == "" {
						break
					}
				}
				if !slices.Equal(got, want) {
					t.Fatalf("listed %v\nwant   %v", got, want)
				}
			})
		}
	})

	tests := []struct {
		name      string
		ctx       context.Context
		req       *ordersv1.ListUserOrdersRequest
		want      codes.Code
		wantCount int
		wantTotal int32
	}{
		{"me, default page size", alice, &ordersv1.ListUserOrdersRequest{UserId: "me"}, codes.OK, DefaultPageSize, 23},
		{"own id", alice, &ordersv1.ListUserOrdersRequest{UserId: "u_alice", PageSize: 5}, codes.OK, 5, 23},
		{"admin lists someone", admin, &ordersv1.ListUserOrdersRequest{UserId: "u_bob", PageSize: 100}, codes.OK, 6, 6},
		{"page size capped", bob, &ordersv1.ListUserOrdersRequest{UserId: "me", PageSize: 100000}, codes.OK, 6, 6},
		{"user without orders", as("u_new", auth.RoleCustomer), &ordersv1.ListUserOrdersRequest{UserId: "me"}, codes.OK, 0, 0},
		{"someone else", bob, &ordersv1.ListUserOrdersRequest{UserId: "u_alice"}, codes.PermissionDenied, 0, 0},
		{"service role", service, &ordersv1.ListUserOrdersRequest{UserId: "u_alice"}, codes.PermissionDenied, 0, 0},
		{"no token", anon, &ordersv1.ListUserOrdersRequest{UserId: "u_alice"}, codes.Unauthenticated, 0, 0},
		{"empty user id", alice, &ordersv1.ListUserOrdersRequest{}, codes.InvalidArgument, 0, 0},
		{"negative page size", alice, &ordersv1.ListUserOrdersRequest{UserId: "me", PageSize: -1}, codes.InvalidArgument, 0, 0},
		{"token not base64", alice, &ordersv1.ListUserOrdersRequest{UserId: "me", PageToken: "!!"}, codes.InvalidArgument, 0, 0},
		{"token without id", alice, &ordersv1.ListUserOrdersRequest{UserId: "me", PageToken: "MTIz"}, codes.InvalidArgument, 0, 0},
		{"token bad time", alice, &ordersv1.ListUserOrdersRequest{UserId: "me", PageToken: "eDpvXzE"}, codes.InvalidArgument, 0, 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			resp, err := validatetest.Wrap(e.svc.ListUserOrders)(tc.ctx, tc.req)
			wantCode(t, err, tc.want)
			if err == nil && (len(resp.GetOrders()) != tc.wantCount || resp.GetTotalSize() != tc.wantTotal) {
				t.Fatalf("got %d orders, total %d; want %d, %d", len(resp.GetOrders()), resp.GetTotalSize(), tc.wantCount, tc.wantTotal)
			}
		})
	}
}

var allStatuses = []Status{StatusPending, StatusConfirmed, StatusShipped, StatusDelivered, StatusCancelled}

// orderIn places an order for alice and moves it to st directly in the
// store (the store does not check transitions).
func (e *env) orderIn(t *testing.T, st Status) *ordersv1.Order {
	t.Helper()
	o := e.place(t, alice, "p_bolt", 2, "p_gear", 1)
	if st != StatusPending {
		if _, err := e.repo.UpdateStatus(t.Context(), o.GetId(), StatusPending, st, t0, nil); err != nil {
			t.Fatal(err)
		}
	}
	return o
}

// lastStatusChange returns the newest OrderStatusChanged in the outbox.
func (e *env) lastStatusChange(t *testing.T) *ordersv1.OrderStatusChanged {
	t.Helper()
	evs := outboxEvents(t, e.db)
	for i := len(evs) - 1; i >= 0; i-- {
		if ev, ok := evs[i].(*ordersv1.OrderStatusChanged); ok {
			return ev
		}
	}
	return nil
}

func TestUpdateOrderStatusTransitions(t *testing.T) {
	allowed := map[[2]Status]bool{
		{StatusPending, StatusConfirmed}:   true,
		{StatusConfirmed, StatusShipped}:   true,
		{StatusShipped, StatusDelivered}:   true,
		{StatusPending, StatusCancelled}:   true,
		{StatusConfirmed, StatusCancelled}: true,
	}
	e := newEnv(t)
	for _, from := range allStatuses {
		for _, to := range allStatuses {
			want := codes.FailedPrecondition
			if allowed[[2]Status{from, to}] {
				want = codes.OK
			}
			t.Run(fmt.Sprintf("%s to %s", from, to), func(t *testing.T) {
				o := e.orderIn(t, from)
				events := len(outboxEvents(t, e.db))
				resp, err := validatetest.Wrap(e.svc.UpdateOrderStatus)(admin, &ordersv1.UpdateOrderStatusRequest{Id: o.GetId(), Status: toProtoStatus(to)})
				wantCode(t, err, want)
				stored, _ := e.repo.Get(t.Context(), o.GetId())
				if err != nil {
					if stored.Status != from || len(outboxEvents(t, e.db)) != events {
						t.Fatalf("refused change wrote: status %v", stored.Status)
					}
					return
				}
				got := resp.GetOrder()
				if got.GetStatus() != toProtoStatus(to) || stored.Status != to || !got.GetUpdateTime().AsTime().After(got.GetCreateTime().AsTime()) {
					t.Fatalf("order after change = %v (stored %v)", got, stored.Status)
				}
				ev := e.lastStatusChange(t)
				wantEv := &ordersv1.OrderStatusChanged{
					OrderId:    o.GetId(),
					UserId:     "u_alice",
					OldStatus:  toProtoStatus(from),
					NewStatus:  toProtoStatus(to),
					Items:      o.GetItems(),
					ChangeTime: got.GetUpdateTime(),
				}
				if len(outboxEvents(t, e.db)) != events+1 || !proto.Equal(ev, wantEv) {
					t.Fatalf("event = %v, want %v", ev, wantEv)
				}
			})
		}
	}

	o := e.orderIn(t, StatusPending)
	tests := []struct {
		name   string
		ctx    context.Context
		id     string
		status ordersv1.OrderStatus
		want   codes.Code
	}{
		{"unspecified", admin, o.GetId(), ordersv1.OrderStatus_ORDER_STATUS_UNSPECIFIED, codes.InvalidArgument},
		{"unknown enum", admin, o.GetId(), ordersv1.OrderStatus(99), codes.InvalidArgument},
		{"empty id", admin, "", ordersv1.OrderStatus_ORDER_STATUS_CONFIRMED, codes.InvalidArgument},
		{"unknown order", admin, "o_0000000000000000", ordersv1.OrderStatus_ORDER_STATUS_CONFIRMED, codes.NotFound},
		{"owner is not admin", alice, o.GetId(), ordersv1.OrderStatus_ORDER_STATUS_CONFIRMED, codes.PermissionDenied},
		{"service is not admin", service, o.GetId(), ordersv1.OrderStatus_ORDER_STATUS_CONFIRMED, codes.PermissionDenied},
		{"no token", anon, o.GetId(), ordersv1.OrderStatus_ORDER_STATUS_CONFIRMED, codes.Unauthenticated},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := validatetest.Wrap(e.svc.UpdateOrderStatus)(tc.ctx, &ordersv1.UpdateOrderStatusRequest{Id: tc.id, Status: tc.status})
			wantCode(t, err, tc.want)
		})
	}
}

func TestCancelOrder(t *testing.T) {
	tests := []struct {
		name string
		ctx  context.Context
		from Status
		want codes.Code
	}{
		{"owner, pending", alice, StatusPending, codes.OK},
		{"owner, confirmed", alice, StatusConfirmed, codes.OK},
		{"admin, pending", admin, StatusPending, codes.OK},
		{"admin, confirmed", admin, StatusConfirmed, codes.OK},
		{"other user", bob, StatusPending, codes.NotFound},
		{"service role", service, StatusPending, codes.NotFound},
		{"no token", anon, StatusPending, codes.Unauthenticated},
		{"shipped", alice, StatusShipped, codes.FailedPrecondition},
		{"delivered", admin, StatusDelivered, codes.FailedPrecondition},
		{"already cancelled", alice, StatusCancelled, codes.FailedPrecondition},
	}
	e := newEnv(t)
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			o := e.orderIn(t, tc.from)
			events := len(outboxEvents(t, e.db))
			resp, err := validatetest.Wrap(e.svc.CancelOrder)(tc.ctx, &ordersv1.CancelOrderRequest{Id: o.GetId()})
			wantCode(t, err, tc.want)
			if err != nil {
				if n := len(outboxEvents(t, e.db)); n != events {
					t.Fatalf("refused cancel wrote %d events", n-events)
				}
				return
			}
			if resp.GetOrder().GetStatus() != ordersv1.OrderStatus_ORDER_STATUS_CANCELLED {
				t.Fatalf("status = %v", resp.GetOrder().GetStatus())
			}
			ev := e.lastStatusChange(t)
			if ev.GetOrderId() != o.GetId() || ev.GetOldStatus() != toProtoStatus(tc.from) ||
				ev.GetNewStatus() != ordersv1.OrderStatus_ORDER_STATUS_CANCELLED || len(ev.GetItems()) != 2 {
				t.Fatalf("event = %v", ev)
			}
		})
	}
	t.Run("empty id", func(t *testing.T) {
		_, err := validatetest.Wrap(e.svc.CancelOrder)(alice, &ordersv1.CancelOrderRequest{})
		wantCode(t, err, codes.InvalidArgument)
	})
	t.Run("unknown", func(t *testing.T) {
		_, err := validatetest.Wrap(e.svc.CancelOrder)(admin, &ordersv1.CancelOrderRequest{Id: "o_0000000000000000"})
		wantCode(t, err, codes.NotFound)
	})
	// Stock comes back through the event, never by a direct call.
	if rel := e.products.releases(); len(rel) != 0 {
		t.Fatalf("CancelOrder called ReleaseStock %v", rel)
	}
}

func TestConcurrentStatusChanges(t *testing.T) {
	e := newEnv(t)
	o := e.place(t, alice)
	const n = 10
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			ctx := alice
			if i%2 == 1 {
				ctx = admin
			}
			_, errs[i] = validatetest.Wrap(e.svc.CancelOrder)(ctx, &ordersv1.CancelOrderRequest{Id: o.GetId()})
		})
	}
	wg.Wait()
	won := 0
	for _, err := range errs {
		switch status.Code(err) {
		case codes.OK:
			won++
		case codes.FailedPrecondition:
		default:
			t.Errorf("CancelOrder = %v, want OK or FailedPrecondition", err)
		}
	}
	var changes int
	for _, ev := range outboxEvents(t, e.db) {
		if _, ok := ev.(*ordersv1.OrderStatusChanged); ok {
			changes++
		}
	}
	if won != 1 || changes != 1 {
		t.Fatalf("%d cancels won, %d events; want 1 and 1", won, changes)
	}
}

func TestStorageFailureIsInternal(t *testing.T) {
	e := newEnv(t)
	o := e.place(t, alice)
	e.repo.Close()
	tests := []struct {
		name string
		call func() error
	}{
		{"get", func() error {
			_, err := validatetest.Wrap(e.svc.GetOrder)(alice, &ordersv1.GetOrderRequest{Id: o.GetId()})
			return err
		}},
		{"list", func() error {
			_, err := validatetest.Wrap(e.svc.ListUserOrders)(alice, &ordersv1.ListUserOrdersRequest{UserId: "me"})
			return err
		}},
		{"cancel", func() error {
			_, err := validatetest.Wrap(e.svc.CancelOrder)(alice, &ordersv1.CancelOrderRequest{Id: o.GetId()})
			return err
		}},
		{"create", func() error {
			_, err := validatetest.Wrap(e.svc.CreateOrder)(alice, &ordersv1.CreateOrderRequest{Items: items("p_bolt", 1)})
			return err
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.call()
			wantCode(t, err, codes.Internal)
			if msg := status.Convert(err).Message(); msg != "internal error" {
				t.Fatalf("message %q leaks details", msg)
			}
		})
	}
}

func TestCreateOrderIdempotencyKey(t *testing.T) {
	e := newEnv(t)
	withKey := func(ctx context.Context, key string) context.Context {
		return metadata.NewIncomingContext(ctx, metadata.Pairs(IdempotencyMetadataKey, key))
	}
	first := e.place(t, withKey(alice, "k1"), "p_bolt", 2)
	// The same request again (a client retry, or Kafka redelivering it after
	// a crash) answers the same order and reserves nothing more.
	again := e.place(t, withKey(alice, "k1"), "p_bolt", 2)
	if again.GetId() != first.GetId() {
		t.Fatalf("retry made order %s, want %s", again.GetId(), first.GetId())
	}
	if n := countOrders(t, e.db); n != 1 {
		t.Fatalf("%d orders stored, want 1", n)
	}
	if n := len(e.products.reserveCalls); n != 1 {
		t.Fatalf("%d reservations, want 1", n)
	}
	// Another user's identical key is another order.
	if bobs := e.place(t, withKey(bob, "k1"), "p_bolt", 2); bobs.GetId() == first.GetId() {
		t.Fatal("two users' keys named the same order")
	}
	// The key reused for a different order is refused and changes nothing.
	_, err := validatetest.Wrap(e.svc.CreateOrder)(withKey(alice, "k1"), &ordersv1.CreateOrderRequest{Items: items("p_bolt", 3)})
	wantCode(t, err, codes.FailedPrecondition)
	_, err = validatetest.Wrap(e.svc.CreateOrder)(withKey(alice, strings.Repeat("k", MaxIdempotencyKeyLen+1)), &ordersv1.CreateOrderRequest{Items: items("p_bolt", 1)})
	wantCode(t, err, codes.InvalidArgument)
	if n := countOrders(t, e.db); n != 2 {
		t.Fatalf("%d orders stored, want 2", n)
	}
}

// advance moves the service's clock forward by d.
func (e *env) advance(d time.Duration) {
	e.clockMu.Lock()
	defer e.clockMu.Unlock()
	e.clock = e.clock.Add(d)
}

func pendingCount(t *testing.T, db *sql.DB) int {
	t.Helper()
	var n int
	if err := db.QueryRow(`SELECT count(*) FROM pending_reservations`).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// A crash between reserving and storing leaves a pending reservation; the
// sweep gives its stock back once it is due, and only then.
func TestRecoverDueReleasesAbandonedReservations(t *testing.T) {
	e := newEnv(t)
	ctx := t.Context()
	// An attempt that reserved and died: what CreateOrder does before it
	// stores the order.
	if err := e.repo.BeginReservation(ctx, "o_dead", "u_alice", t0, t0.Add(DefaultRecoverAfter)); err != nil {
		t.Fatal(err)
	}
	if _, err := e.svc.reserve(ctx, "o_dead", []Item{{ProductID: "p_anvil", Quantity: 2}}); err != nil {
		t.Fatal(err)
	}
	// An order stored normally, and a leftover pending record of its id (a
	// duplicate attempt that died after the first one stored the order).
	stored := e.place(t, alice, "p_anvil", 1)
	if err := e.repo.BeginReservation(ctx, stored.GetId(), "u_alice", t0, t0.Add(DefaultRecoverAfter)); err != nil {
		t.Fatal(err)
	}
	if got := e.products.stock("p_anvil"); got != 2 {
		t.Fatalf("anvil stock = %d, want 2", got)
	}

	if n, err := e.svc.RecoverDue(ctx); err != nil || n != 0 {
		t.Fatalf("RecoverDue before due = %d, %v; want nothing released", n, err)
	}
	e.advance(DefaultRecoverAfter)
	if n, err := e.svc.RecoverDue(ctx); err != nil || n != 1 {
		t.Fatalf("RecoverDue = %d, %v; want 1 released", n, err)
	}
	if rel := e.products.releases(); !slices.Equal(rel, []string{"o_dead"}) {
		t.Fatalf("ReleaseStock calls = %v, want only the abandoned o_dead", rel)
	}
	if got := e.products.stock("p_anvil"); got != 4 {
		t.Fatalf("anvil stock = %d, want 4 (the stored order keeps its unit)", got)
	}
	if n := pendingCount(t, e.db); n != 0 {
		t.Fatalf("%d pending reservations left", n)
	}
	if _, err := validatetest.Wrap(e.svc.GetOrder)(alice, &ordersv1.GetOrderRequest{Id: stored.GetId()}); err != nil {
		t.Fatalf("stored order after the sweep: %v", err)
	}
	e.advance(time.Hour)
	if n, err := e.svc.RecoverDue(ctx); err != nil || n != 0 {
		t.Fatalf("second RecoverDue = %d, %v", n, err)
	}
}

// A release that fails stays pending and is retried after its lease.
func TestRecoverDueRetriesFailedReleases(t *testing.T) {
	e := newEnv(t)
	ctx := t.Context()
	e.products.reserveErr, e.products.reserveThenFail = status.Error(codes.DeadlineExceeded, "reply lost"), true
	e.products.releaseErr = status.Error(codes.Unavailable, "no broker")
	_, err := validatetest.Wrap(e.svc.CreateOrder)(alice, &ordersv1.CreateOrderRequest{Items: items("p_cog", 1)})
	wantCode(t, err, codes.Unavailable)
	if got := e.products.stock("p_cog"); got != 0 {
		t.Fatalf("cog stock = %d, want 0 (held, release failed)", got)
	}
	e.advance(DefaultRecoverAfter)
	if n, err := e.svc.RecoverDue(ctx); err == nil || n != 0 {
		t.Fatalf("RecoverDue with the product service down = %d, %v; want an error", n, err)
	}
	e.products.mu.Lock()
	e.products.releaseErr = nil
	e.products.mu.Unlock()
	if n, err := e.svc.RecoverDue(ctx); err != nil || n != 0 {
		t.Fatalf("RecoverDue within the lease = %d, %v; want nothing", n, err)
	}
	e.advance(2 * DefaultCallTimeout)
	if n, err := e.svc.RecoverDue(ctx); err != nil || n != 1 {
		t.Fatalf("RecoverDue after the lease = %d, %v; want 1", n, err)
	}
	if got := e.products.stock("p_cog"); got != 1 {
		t.Fatalf("cog stock = %d, want 1 after recovery", got)
	}
}

// A retry of an idempotency key meets the rollback of its earlier attempt:
// while it runs, and after it.
func TestCreateOrderRetryAfterRollback(t *testing.T) {
	e := newEnv(t)
	ctx := t.Context()
	keyed := metadata.NewIncomingContext(alice, metadata.Pairs(IdempotencyMetadataKey, "k-retry"))
	id := orderIDFor("u_alice", "k-retry")
	req := &ordersv1.CreateOrderRequest{Items: items("p_cog", 1)}

	// The first attempt reserved and died.
	if err := e.repo.BeginReservation(ctx, id, "u_alice", t0, t0.Add(DefaultRecoverAfter)); err != nil {
		t.Fatal(err)
	}
	if _, err := e.svc.reserve(ctx, id, []Item{{ProductID: "p_cog", Quantity: 1}}); err != nil {
		t.Fatal(err)
	}
	// The sweep has claimed it: a retry now is told to come back.
	e.advance(DefaultRecoverAfter + time.Second)
	if c, err := e.repo.ClaimRecovery(ctx, id, e.svc.now(), e.svc.now().Add(time.Minute)); err != nil || c != ClaimRelease {
		t.Fatalf("ClaimRecovery = %v, %v", c, err)
	}
	_, err := validatetest.Wrap(e.svc.CreateOrder)(keyed, req)
	wantCode(t, err, codes.Unavailable)
	// The sweep finishes; the retry learns the key's attempt was rolled
	// back, and nothing is held or stored.
	if err := e.svc.release(ctx, id); err != nil {
		t.Fatal(err)
	}
	if err := e.repo.FinishRecovery(ctx, id); err != nil {
		t.Fatal(err)
	}
	_, err = validatetest.Wrap(e.svc.CreateOrder)(keyed, req)
	wantCode(t, err, codes.FailedPrecondition)
	if msg := status.Convert(err).Message(); !strings.Contains(msg, "new idempotency key") {
		t.Fatalf("message = %q, want advice to use a new idempotency key", msg)
	}
	if got := e.products.stock("p_cog"); got != 1 || countOrders(t, e.db) != 0 {
		t.Fatalf("cog stock = %d, orders = %d; want 1, 0", got, countOrders(t, e.db))
	}
	// A new key places the order.
	fresh := metadata.NewIncomingContext(alice, metadata.Pairs(IdempotencyMetadataKey, "k-new"))
	if _, err := validatetest.Wrap(e.svc.CreateOrder)(fresh, req); err != nil {
		t.Fatal(err)
	}
}

// A backlog larger than one batch (many failed orders at once) drains in one
// sweep.
func TestRecoverDueDrainsABacklog(t *testing.T) {
	e := newEnv(t)
	ctx := t.Context()
	const n = 2*recoverBatch + 17
	for i := range n {
		if err := e.repo.BeginReservation(ctx, fmt.Sprintf("o_backlog_%03d", i), "u_alice", t0, t0.Add(time.Second)); err != nil {
			t.Fatal(err)
		}
	}
	e.advance(time.Minute)
	if got, err := e.svc.RecoverDue(ctx); err != nil || got != n {
		t.Fatalf("RecoverDue = %d, %v; want all %d released", got, err, n)
	}
	if left := pendingCount(t, e.db); left != 0 {
		t.Fatalf("%d pending reservations left after one sweep", left)
	}
	if calls := len(e.products.releases()); calls != n {
		t.Fatalf("%d ReleaseStock calls, want %d", calls, n)
	}
}

// A keyed attempt whose reservation outcome is unknown keeps the stock for
// a retry of its key, which completes the order with the same reservation;
// without a retry, the sweep gives the stock back after RecoverAfter.
func TestCreateOrderUnknownReservationKeptForRetry(t *testing.T) {
	for _, retry := range []bool{true, false} {
		t.Run(fmt.Sprintf("retry=%v", retry), func(t *testing.T) {
			e := newEnv(t)
			keyed := metadata.NewIncomingContext(alice, metadata.Pairs(IdempotencyMetadataKey, "k-lost"))
			req := &ordersv1.CreateOrderRequest{Items: items("p_bolt", 3)}
			// The product service reserves, but its answer is lost.
			e.products.reserveErr, e.products.reserveThenFail = status.Error(codes.DeadlineExceeded, "timeout"), true
			_, err := validatetest.Wrap(e.svc.CreateOrder)(keyed, req)
			wantCode(t, err, codes.Unavailable)
			if rel := e.products.releases(); len(rel) != 0 {
				t.Fatalf("released at once: %v", rel)
			}
			if got := e.products.stock("p_bolt"); got != 997 {
				t.Fatalf("bolt stock = %d, want 997 (kept for the retry)", got)
			}
			e.products.reserveErr, e.products.reserveThenFail = nil, false
			if retry {
				resp, err := validatetest.Wrap(e.svc.CreateOrder)(keyed, req)
				if err != nil {
					t.Fatal(err)
				}
				if resp.GetOrder().GetId() != orderIDFor("u_alice", "k-lost") || countOrders(t, e.db) != 1 {
					t.Fatalf("order %v, %d stored", resp.GetOrder(), countOrders(t, e.db))
				}
			}
			e.advance(DefaultRecoverAfter + time.Second)
			if _, err := e.svc.RecoverDue(t.Context()); err != nil {
				t.Fatal(err)
			}
			want := int32(1000)
			if retry {
				want = 997 // the order holds it
			}
			if got := e.products.stock("p_bolt"); got != want {
				t.Fatalf("bolt stock after the sweep = %d, want %d", got, want)
			}
			if left := pendingCount(t, e.db); left != 0 {
				t.Fatalf("%d pending reservations left", left)
			}
		})
	}
}
