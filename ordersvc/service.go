package ordersvc

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	ordersv1 "github.com/kgrpc/platform/gen/shop/orders/v1"
	productsv1 "github.com/kgrpc/platform/gen/shop/products/v1"
	"github.com/kgrpc/platform/internal/auth"
	"github.com/kgrpc/platform/internal/sqlstore"
)

// The service's files, one concern each: service.go (Service, Config and
// the simple RPCs), create.go (the CreateOrder saga), stock.go (the product
// service client), recovery.go (the recovery sweep), idempotency.go
// (idempotency keys), errors.go (errors for the caller) and convert.go
// (messages and statuses).

// Limits of orders and of ListUserOrders pages. Those of each request's
// fields are its buf.validate rules, in proto/shop/orders/v1/orders.proto,
// which the server's validation interceptor enforces before a handler runs;
// these depend on more than one field.
const (
	// MaxItems is the most lines an order may have (after merging duplicate
	// products).
	MaxItems = 50
	// MaxQuantity is the most units of one product an order may have, all
	// its lines together.
	MaxQuantity = 1000
	// DefaultPageSize is the ListUserOrders page size when the request has
	// none.
	DefaultPageSize = 20
	// MaxPageSize caps the ListUserOrders page size.
	MaxPageSize = 100
	// DefaultCallTimeout bounds each call to the product service unless
	// Config says otherwise.
	DefaultCallTimeout = 10 * time.Second
	// DefaultRecoverAfter is how long after an order attempt began the
	// recovery sweep may release its stock when no order was stored, unless
	// Config says otherwise.
	DefaultRecoverAfter = 30 * time.Second
	// ServiceSubject is the unit the order service runs as: the caller the
	// product service sees (see Config.Products).
	ServiceSubject = "ordersvc"
)

// Me is the user id that names the calling user in ListUserOrders.
const Me = "me"

// maxStatusRetries bounds how often a status change is retried when a
// concurrent change wins the race.
const maxStatusRetries = 3

// Config configures a Service.
type Config struct {
	// Repo stores the orders. Required.
	Repo Repository
	// Products reserves and releases stock. Required. Its calls carry no
	// user: the product service must see them from unit ServiceSubject
	// with the service role, as the transport's Guard authenticates them
	// (auth.UnaryServerInterceptor).
	Products productsv1.ProductServiceClient
	// Logger receives storage and product service failures; nil discards
	// them.
	Logger *slog.Logger
	// Notify, when not nil, is called after a transaction that added outbox
	// events commits (typically outbox.Relay.Notify).
	Notify func()
	// CallTimeout bounds each call to Products (the caller's deadline applies
	// too when it is earlier); zero means DefaultCallTimeout.
	CallTimeout time.Duration
	// RecoverAfter is how long after an order attempt began RecoverDue may
	// release its stock reservation when the attempt stored no order (it
	// crashed or failed). It must exceed CallTimeout plus the clock skew
	// between hosts, since a reservation request can reach the product
	// service until its deadline. Zero means DefaultRecoverAfter.
	RecoverAfter time.Duration
	// RecoverEvery is the pause between sweeps of RecoverReservations; zero
	// means RecoverAfter/6.
	RecoverEvery time.Duration
	// Watches, when not nil, serves WatchOrder from the OrderStatusChanged
	// events the instance reads into it (Watches.Publish); nil answers
	// WatchOrder Unimplemented.
	Watches *Watches
}

// withDefaults checks cfg and returns it with every zero value that has a
// default replaced by it.
func (cfg Config) withDefaults() (Config, error) {
	switch {
	case cfg.Repo == nil:
		return cfg, errors.New("ordersvc: Config.Repo is required")
	case cfg.Products == nil:
		return cfg, errors.New("ordersvc: Config.Products is required")
	case cfg.CallTimeout < 0:
		return cfg, fmt.Errorf("ordersvc: negative Config.CallTimeout %v", cfg.CallTimeout)
	case cfg.RecoverEvery < 0:
		return cfg, fmt.Errorf("ordersvc: negative Config.RecoverEvery %v", cfg.RecoverEvery)
	}
	if cfg.CallTimeout == 0 {
		cfg.CallTimeout = DefaultCallTimeout
	}
	if cfg.RecoverAfter == 0 {
		cfg.RecoverAfter = DefaultRecoverAfter
	}
	if cfg.RecoverAfter <= cfg.CallTimeout {
		return cfg, fmt.Errorf("ordersvc: Config.RecoverAfter %v must exceed Config.CallTimeout %v", cfg.RecoverAfter, cfg.CallTimeout)
	}
	if cfg.RecoverEvery == 0 {
		cfg.RecoverEvery = cfg.RecoverAfter / 6
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Notify == nil {
		cfg.Notify = func() {}
	}
	return cfg, nil
}

// Service implements ordersv1.OrderServiceServer.
type Service struct {
	ordersv1.UnimplementedOrderServiceServer

	cfg Config // checked, defaults applied
	now func() time.Time
}

var _ ordersv1.OrderServiceServer = (*Service)(nil)

// New returns a Service for cfg.
func New(cfg Config) (*Service, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	return &Service{cfg: cfg, now: func() time.Time { return time.Now().UTC().Truncate(time.Microsecond) }}, nil
}

// GetOrder returns one order of the caller, or any order for an admin. An
// order of someone else is NotFound, like an unknown one, so ids cannot be
// probed.
func (s *Service) GetOrder(ctx context.Context, req *ordersv1.GetOrderRequest) (*ordersv1.GetOrderResponse, error) {
	c, err := auth.Require(ctx)
	if err != nil {
		return nil, err
	}
	id := req.GetId()
	o, err := s.cfg.Repo.Get(ctx, id)
	if errors.Is(err, ErrNotFound) || (err == nil && !mayAccess(c, o)) {
		return nil, notFound(id)
	}
	if err != nil {
		return nil, s.internal(ctx, "get order", err)
	}
	return &ordersv1.GetOrderResponse{Order: toProto(o)}, nil
}

// ListUserOrders pages through one user's orders, newest first: the caller's
// own (user_id "me" or their id) or, for admins, anyone's.
func (s *Service) ListUserOrders(ctx context.Context, req *ordersv1.ListUserOrdersRequest) (*ordersv1.ListUserOrdersResponse, error) {
	c, err := auth.Require(ctx)
	if err != nil {
		return nil, err
	}
	userID := req.GetUserId()
	switch {
	case userID == Me:
		userID = c.Subject
	case userID != c.Subject && !c.IsAdmin():
		return nil, status.Error(codes.PermissionDenied, "you may only list your own orders")
	}
	size, after, err := sqlstore.PageRequest(req.GetPageSize(), req.GetPageToken(), DefaultPageSize, MaxPageSize)
	if err != nil {
		return nil, status.Error(codes.InvalidArgument, err.Error())
	}
	orders, err := s.cfg.Repo.ListByUser(ctx, userID, after, size+1)
	if err != nil {
		return nil, s.internal(ctx, "list orders", err)
	}
	total, err := s.cfg.Repo.CountByUser(ctx, userID)
	if err != nil {
		return nil, s.internal(ctx, "count orders", err)
	}
	resp := &ordersv1.ListUserOrdersResponse{TotalSize: int32(min(total, math.MaxInt32))}
	orders, resp.NextPageToken = sqlstore.NextPage(orders, size, Order.cursor)
	resp.Orders = make([]*ordersv1.Order, len(orders))
	for i, o := range orders {
		resp.Orders[i] = toProto(o)
	}
	return resp, nil
}

// CancelOrder cancels a pending or confirmed order of the caller (any order
// for an admin). Someone else's order is NotFound. The stock comes back
// asynchronously: the product service releases the reservation when it
// consumes the OrderStatusChanged event written here.
func (s *Service) CancelOrder(ctx context.Context, req *ordersv1.CancelOrderRequest) (*ordersv1.CancelOrderResponse, error) {
	c, err := auth.Require(ctx)
	if err != nil {
		return nil, err
	}
	o, err := s.changeStatus(ctx, req.GetId(), StatusCancelled, func(o Order) bool { return mayAccess(c, o) })
	if err != nil {
		return nil, err
	}
	return &ordersv1.CancelOrderResponse{Order: toProto(o)}, nil
}

// UpdateOrderStatus moves an order along its life cycle. Admins only.
func (s *Service) UpdateOrderStatus(ctx context.Context, req *ordersv1.UpdateOrderStatusRequest) (*ordersv1.UpdateOrderStatusResponse, error) {
	if _, err := auth.RequireAdmin(ctx); err != nil {
		return nil, err
	}
	to, ok := fromProtoStatus(req.GetStatus()) // a defined status but UNSPECIFIED: the request's rules
	if !ok {
		return nil, status.Errorf(codes.InvalidArgument, "status %v is not a valid order status", req.GetStatus())
	}
	o, err := s.changeStatus(ctx, req.GetId(), to, func(Order) bool { return true })
	if err != nil {
		return nil, err
	}
	return &ordersv1.UpdateOrderStatusResponse{Order: toProto(o)}, nil
}

// changeStatus moves order id to status to when allowed(order) and the
// transition is, writing an OrderStatusChanged event with it. The write is
// conditional on the status read; when a concurrent change wins, the order is
// read again and the checks repeated.
func (s *Service) changeStatus(ctx context.Context, id string, to Status, allowed func(Order) bool) (Order, error) {
	for range maxStatusRetries {
		o, err := s.cfg.Repo.Get(ctx, id)
		if errors.Is(err, ErrNotFound) || (err == nil && !allowed(o)) {
			return Order{}, notFound(id)
		}
		if err != nil {
			return Order{}, s.internal(ctx, "change order status: get", err)
		}
		if !o.Status.CanTransition(to) {
			return Order{}, status.Errorf(codes.FailedPrecondition,
				"order %q cannot change from %s to %s", id, toProtoStatus(o.Status), toProtoStatus(to))
		}
		now, from := s.now(), o.Status
		changed := func(o Order) []proto.Message {
			return []proto.Message{&ordersv1.OrderStatusChanged{
				OrderId:    o.ID,
				UserId:     o.UserID,
				OldStatus:  toProtoStatus(from),
				NewStatus:  toProtoStatus(o.Status),
				Items:      toProtoItems(o.Items),
				ChangeTime: timestamppb.New(now),
			}}
		}
		updated, err := s.cfg.Repo.UpdateStatus(ctx, id, from, to, now, changed)
		switch {
		case errors.Is(err, ErrStatusConflict):
			continue
		case errors.Is(err, ErrNotFound):
			return Order{}, notFound(id)
		case err != nil:
			return Order{}, s.internal(ctx, "change order status", err)
		}
		s.cfg.Notify()
		return updated, nil
	}
	return Order{}, status.Errorf(codes.Aborted, "order %q is being changed concurrently, try again", id)
}

// mayAccess reports whether the caller c may see and cancel order o.
func mayAccess(c auth.Claims, o Order) bool {
	return c.IsAdmin() || (c.Subject == o.UserID && c.Role != auth.RoleService)
}

// notFound is the one answer for an unknown order and for someone else's.
func notFound(id string) error {
	return status.Errorf(codes.NotFound, "order %q not found", id)
}
