package gateway_test

// Test implementations of the three services. They answer from the request
// alone, authorize as the real services do (internal/auth's Require and
// RequireAdmin on the claims the token interceptor put in the context) and
// record, per method, what the last call brought.

import (
	"context"
	"strconv"
	"strings"
	"sync"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	ordersv1 "github.com/kgrpc/platform/gen/shop/orders/v1"
	productsv1 "github.com/kgrpc/platform/gen/shop/products/v1"
	usersv1 "github.com/kgrpc/platform/gen/shop/users/v1"
	"github.com/kgrpc/platform/internal/auth"
)

// call is what a service saw of one call.
type call struct {
	md     metadata.MD
	claims auth.Claims
	authed bool
}

// recorder remembers the last call of each method that reached its handler,
// and counts the calls that reached the server, before the token
// interceptor.
type recorder struct {
	mu    sync.Mutex
	last  map[string]call
	count map[string]int
}

func newRecorder() *recorder {
	return &recorder{last: map[string]call{}, count: map[string]int{}}
}

// interceptor counts the calls of each method; put it first.
func (r *recorder) interceptor(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	method := info.FullMethod[strings.LastIndex(info.FullMethod, "/")+1:]
	r.mu.Lock()
	r.count[method]++
	r.mu.Unlock()
	return handler(ctx, req)
}

func (r *recorder) seen(ctx context.Context, method string) {
	md, _ := metadata.FromIncomingContext(ctx)
	c, ok := auth.FromContext(ctx)
	r.mu.Lock()
	defer r.mu.Unlock()
	r.last[method] = call{md: md.Copy(), claims: c, authed: ok}
}

// lastCall returns the last call of method that reached its handler, and
// how many reached the server.
func (r *recorder) lastCall(method string) (call, int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.last[method], r.count[method]
}

// calls returns how many calls of method reached the server.
func (r *recorder) calls(method string) int {
	_, n := r.lastCall(method)
	return n
}

// self resolves the "me" alias of a user id to the caller, as the real
// services do.
func self(ctx context.Context, id string) (string, error) {
	if id != "me" {
		return id, nil
	}
	c, err := auth.Require(ctx)
	return c.Subject, err
}

type testUsers struct {
	usersv1.UnimplementedUserServiceServer
	rec *recorder
}

func (s *testUsers) CreateUser(ctx context.Context, req *usersv1.CreateUserRequest) (*usersv1.CreateUserResponse, error) {
	s.rec.seen(ctx, "CreateUser")
	return &usersv1.CreateUserResponse{User: &usersv1.User{Id: "u_new", Email: req.GetEmail(), DisplayName: req.GetDisplayName(), Role: usersv1.Role_ROLE_CUSTOMER}}, nil
}

func (s *testUsers) GetUser(ctx context.Context, req *usersv1.GetUserRequest) (*usersv1.GetUserResponse, error) {
	s.rec.seen(ctx, "GetUser")
	id, err := self(ctx, req.GetId())
	if err != nil {
		return nil, err
	}
	return &usersv1.GetUserResponse{User: &usersv1.User{Id: id, Email: id + "@example.com", Role: usersv1.Role_ROLE_CUSTOMER}}, nil
}

type testProducts struct {
	productsv1.UnimplementedProductServiceServer
	rec *recorder
}

// GetProduct answers with a product, except for ids that ask for something
// else: "slow" waits until the call's deadline, "code-N" fails with gRPC code
// N, and "code-N-details" adds status details.
func (s *testProducts) GetProduct(ctx context.Context, req *productsv1.GetProductRequest) (*productsv1.GetProductResponse, error) {
	s.rec.seen(ctx, "GetProduct")
	id := req.GetId()
	switch {
	case id == "slow":
		<-ctx.Done()
		return nil, status.FromContextError(ctx.Err()).Err()
	case strings.HasPrefix(id, "code-"):
		return nil, failure(strings.TrimPrefix(id, "code-"))
	}
	return &productsv1.GetProductResponse{Product: &productsv1.Product{Id: id, Name: "Bolt", PriceCents: 25, Stock: 3}}, nil
}

// failure returns the error GetProduct("code-"+spec) fails with.
func failure(spec string) error {
	n, details := strings.CutSuffix(spec, "-details")
	c, err := strconv.Atoi(n)
	if err != nil {
		return status.Errorf(codes.InvalidArgument, "bad code %q", n)
	}
	st := status.New(codes.Code(c), "failed with "+codes.Code(c).String())
	if details {
		st, err = st.WithDetails(
			&errdetails.ErrorInfo{Reason: "OUT_OF_STOCK", Domain: "shop.test", Metadata: map[string]string{"sku": "B-1"}},
			&errdetails.BadRequest{FieldViolations: []*errdetails.BadRequest_FieldViolation{{Field: "quantity", Description: "too many"}}},
		)
		if err != nil {
			return err
		}
	}
	return st.Err()
}

func (s *testProducts) CreateProduct(ctx context.Context, req *productsv1.CreateProductRequest) (*productsv1.CreateProductResponse, error) {
	s.rec.seen(ctx, "CreateProduct")
	if _, err := auth.RequireAdmin(ctx); err != nil {
		return nil, err
	}
	return &productsv1.CreateProductResponse{Product: &productsv1.Product{Id: "p_new", Sku: req.GetSku(), Name: req.GetName(), PriceCents: req.GetPriceCents()}}, nil
}

func (s *testProducts) UpdateProduct(ctx context.Context, req *productsv1.UpdateProductRequest) (*productsv1.UpdateProductResponse, error) {
	s.rec.seen(ctx, "UpdateProduct")
	return &productsv1.UpdateProductResponse{Product: &productsv1.Product{Id: req.GetId(), Name: req.GetName()}}, nil
}

func (s *testProducts) DeleteProduct(ctx context.Context, req *productsv1.DeleteProductRequest) (*productsv1.DeleteProductResponse, error) {
	s.rec.seen(ctx, "DeleteProduct")
	return &productsv1.DeleteProductResponse{}, nil
}

type testOrders struct {
	ordersv1.UnimplementedOrderServiceServer
	rec *recorder
}

func (s *testOrders) CreateOrder(ctx context.Context, req *ordersv1.CreateOrderRequest) (*ordersv1.CreateOrderResponse, error) {
	s.rec.seen(ctx, "CreateOrder")
	c, err := auth.Require(ctx)
	if err != nil {
		return nil, err
	}
	return &ordersv1.CreateOrderResponse{Order: &ordersv1.Order{Id: "o_new", UserId: c.Subject}}, nil
}

func (s *testOrders) GetOrder(ctx context.Context, req *ordersv1.GetOrderRequest) (*ordersv1.GetOrderResponse, error) {
	s.rec.seen(ctx, "GetOrder")
	return &ordersv1.GetOrderResponse{Order: &ordersv1.Order{Id: req.GetId()}}, nil
}

// ListUserOrders answers page_size orders of the user, of 7 in all.
func (s *testOrders) ListUserOrders(ctx context.Context, req *ordersv1.ListUserOrdersRequest) (*ordersv1.ListUserOrdersResponse, error) {
	s.rec.seen(ctx, "ListUserOrders")
	id, err := self(ctx, req.GetUserId())
	if err != nil {
		return nil, err
	}
	resp := &ordersv1.ListUserOrdersResponse{TotalSize: 7}
	for i := range min(req.GetPageSize(), 7) {
		resp.Orders = append(resp.Orders, &ordersv1.Order{Id: "o_" + strconv.Itoa(int(i)), UserId: id, TotalCents: 100})
	}
	return resp, nil
}
