package ordersvc

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"strconv"
	"strings"
	"sync"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"

	ordersv1 "github.com/kgrpc/platform/gen/shop/orders/v1"
	productsv1 "github.com/kgrpc/platform/gen/shop/products/v1"
	"github.com/kgrpc/platform/internal/auth"
)

// Limits of orders and of ListUserOrders pages.
const (
	// MaxItems is the most lines an order may have (after merging duplicate
	// products).
	MaxItems = 50
	// MaxQuantity is the most units of one product an order may have.
	MaxQuantity = 1000
	// MaxProductIDLen is the longest accepted product id, in bytes.
	MaxProductIDLen = 128
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
	// ServiceSubject is the subject of the service tokens the order service
	// presents to the product service.
	ServiceSubject = "ordersvc"
)

// Me is the user id that names the calling user in ListUserOrders.
const Me = "me"

// serviceTokenTTL is how long minted service tokens last; a cached token is
// replaced serviceTokenRenew before it expires.
const (
	serviceTokenTTL   = 10 * time.Minute
	serviceTokenRenew = 2 * time.Minute
)

// maxStatusRetries bounds how often a status change is retried when a
// concurrent change wins the race.
const maxStatusRetries = 3

// Config configures a Service.
type Config struct {
	// Repo stores the orders. Required.
	Repo Repository
	// Products reserves and releases stock. Required.
	Products productsv1.ProductServiceClient
	// Signer mints the service tokens presented to Products. Required.
	Signer *auth.Signer
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
}

// recoverBatch is how many pending reservations RecoverDue reads at a time.
const recoverBatch = 100

// Service implements ordersv1.OrderServiceServer.
type Service struct {
	ordersv1.UnimplementedOrderServiceServer

	repo         Repository
	products     productsv1.ProductServiceClient
	signer       *auth.Signer
	logger       *slog.Logger
	notify       func()
	callTimeout  time.Duration
	recoverAfter time.Duration
	recoverEvery time.Duration
	now          func() time.Time

	mu       sync.Mutex // guards token and tokenExp
	token    string
	tokenExp time.Time
}

var _ ordersv1.OrderServiceServer = (*Service)(nil)

// New returns a Service for cfg.
func New(cfg Config) (*Service, error) {
	switch {
	case cfg.Repo == nil:
		return nil, errors.New("ordersvc: Config.Repo is required")
	case cfg.Products == nil:
		return nil, errors.New("ordersvc: Config.Products is required")
	case cfg.Signer == nil:
		return nil, errors.New("ordersvc: Config.Signer is required")
	case cfg.CallTimeout < 0:
		return nil, fmt.Errorf("ordersvc: negative Config.CallTimeout %v", cfg.CallTimeout)
	}
	if cfg.CallTimeout == 0 {
		cfg.CallTimeout = DefaultCallTimeout
	}
	if cfg.RecoverAfter == 0 {
		cfg.RecoverAfter = DefaultRecoverAfter
	}
	if cfg.RecoverAfter <= cfg.CallTimeout {
		return nil, fmt.Errorf("ordersvc: Config.RecoverAfter %v must exceed Config.CallTimeout %v", cfg.RecoverAfter, cfg.CallTimeout)
	}
	switch {
	case cfg.RecoverEvery < 0:
		return nil, fmt.Errorf("ordersvc: negative Config.RecoverEvery %v", cfg.RecoverEvery)
	case cfg.RecoverEvery == 0:
		cfg.RecoverEvery = cfg.RecoverAfter / 6
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Notify == nil {
		cfg.Notify = func() {}
	}
	return &Service{
		repo:         cfg.Repo,
		products:     cfg.Products,
		signer:       cfg.Signer,
		logger:       cfg.Logger,
		notify:       cfg.Notify,
		callTimeout:  cfg.CallTimeout,
		recoverAfter: cfg.RecoverAfter,
		recoverEvery: cfg.RecoverEvery,
		now:          func() time.Time { return time.Now().UTC().Truncate(time.Microsecond) },
	}, nil
}

// CreateOrder places an order for the calling customer or admin: it reserves
// the stock with the product service (reservation id = order id), captures
// names and prices from the reservation, and stores the order PENDING with an
// OrderCreated event. Errors of the reservation that are the caller's
// (FailedPrecondition, NotFound, InvalidArgument) are returned unchanged.
func (s *Service) CreateOrder(ctx context.Context, req *ordersv1.CreateOrderRequest) (*ordersv1.CreateOrderResponse, error) {
	c, err := auth.Require(ctx)
	if err != nil {
		return nil, err
	}
	if c.Role != auth.RoleCustomer && c.Role != auth.RoleAdmin {
		return nil, status.Error(codes.PermissionDenied, "only users may place orders")
	}
	lines, err := parseItems(req.GetItems())
	if err != nil {
		return nil, status.Error(codes.InvalidArgument, err.Error())
	}
	id := newID()
	key, err := idempotencyKey(ctx)
	if err != nil {
		return nil, status.Error(codes.InvalidArgument, err.Error())
	}
	if key != "" {
		// The same key from the same user always names the same order, so
		// a retried or redelivered request finds the order it made.
		id = orderIDFor(c.Subject, key)
		o, err := s.repo.Get(ctx, id)
		switch {
		case err == nil:
			return s.replay(o, c.Subject, lines)
		case !errors.Is(err, ErrNotFound):
			return nil, s.internal(ctx, "get order", err)
		}
	}
	log := s.logger.With("order_id", id, "user_id", c.Subject)

	// Record the reservation before making it: if this attempt dies or
	// fails before the order is stored, RecoverDue gives the stock back.
	begun := s.now()
	switch err := s.repo.BeginReservation(ctx, id, c.Subject, begun, begun.Add(s.recoverAfter)); {
	case errors.Is(err, ErrRecovering):
		return nil, status.Error(codes.Unavailable, "an earlier attempt of this order is being rolled back, try again in a few seconds")
	case err != nil:
		return nil, s.internal(ctx, "begin reservation", err)
	}
	callCtx, err := s.serviceContext(ctx)
	if err != nil {
		return nil, s.internal(ctx, "mint service token", err)
	}
	reserved, err := s.reserve(callCtx, id, lines)
	if err != nil {
		switch status.Code(err) {
		case codes.FailedPrecondition:
			if why, ok := reservationRefused(err); ok {
				return nil, refusedReservation(why, key)
			}
			return nil, status.Convert(err).Err()
		case codes.NotFound, codes.InvalidArgument:
			return nil, status.Convert(err).Err()
		case codes.PermissionDenied, codes.Unauthenticated:
			// Our own service token was refused: nothing was reserved.
			log.ErrorContext(ctx, "ordersvc: product service refused the service token", "err", err)
			return nil, status.Error(codes.Internal, "internal error")
		}
		// The reservation may or may not have happened: give it back now
		// (RecoverDue releases it again later, in case a delayed request
		// still reserves after this).
		s.releaseNow(ctx, log, id)
		if ctx.Err() != nil {
			return nil, status.FromContextError(ctx.Err()).Err()
		}
		log.WarnContext(ctx, "ordersvc: reserve stock", "err", err)
		return nil, status.Error(codes.Unavailable, "product service unavailable, try again later")
	}
	items, total, err := captureItems(lines, reserved.GetItems())
	if err != nil {
		s.releaseNow(ctx, log, id)
		log.ErrorContext(ctx, "ordersvc: unexpected reservation", "err", err)
		return nil, status.Error(codes.Internal, "internal error")
	}
	now := begun // the order is placed when its attempt began
	o := Order{
		ID:         id,
		UserID:     c.Subject,
		Items:      items,
		TotalCents: total,
		Status:     StatusPending,
		CreateTime: now,
		UpdateTime: now,
	}
	if err := s.repo.Create(ctx, o, &ordersv1.OrderCreated{Order: toProto(o)}); err != nil {
		if key != "" && errors.Is(err, ErrAlreadyExists) {
			// A concurrent run of the same request stored it first; the
			// reservation is shared, so it must not be released.
			if prev, gerr := s.repo.Get(ctx, id); gerr == nil {
				return s.replay(prev, c.Subject, lines)
			}
		}
		if errors.Is(err, ErrRecovering) {
			// This attempt outlived its recover time and the sweep took
			// its stock back: storing the order now would oversell.
			log.WarnContext(ctx, "ordersvc: order attempt outlived its recover time, rolled back", "began", begun)
			return nil, status.Error(codes.Aborted, "the order took too long and was rolled back, try again")
		}
		s.releaseNow(ctx, log, id)
		return nil, s.internal(ctx, "create order", err)
	}
	s.notify()
	return &ordersv1.CreateOrderResponse{Order: toProto(o)}, nil
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
	if id == "" {
		return nil, status.Error(codes.InvalidArgument, "id is required")
	}
	o, err := s.repo.Get(ctx, id)
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
	case userID == "":
		return nil, status.Error(codes.InvalidArgument, `user_id is required (a user id or "me")`)
	case userID == Me:
		userID = c.Subject
	case userID != c.Subject && !c.IsAdmin():
		return nil, status.Error(codes.PermissionDenied, "you may only list your own orders")
	}
	size := int(req.GetPageSize())
	switch {
	case size < 0:
		return nil, status.Error(codes.InvalidArgument, "page_size must not be negative")
	case size == 0:
		size = DefaultPageSize
	case size > MaxPageSize:
		size = MaxPageSize
	}
	var after *Cursor
	if tok := req.GetPageToken(); tok != "" {
		cur, err := decodePageToken(tok)
		if err != nil {
			return nil, status.Error(codes.InvalidArgument, "malformed page_token")
		}
		after = &cur
	}
	orders, err := s.repo.ListByUser(ctx, userID, after, size+1)
	if err != nil {
		return nil, s.internal(ctx, "list orders", err)
	}
	total, err := s.repo.CountByUser(ctx, userID)
	if err != nil {
		return nil, s.internal(ctx, "count orders", err)
	}
	resp := &ordersv1.ListUserOrdersResponse{TotalSize: int32(min(total, math.MaxInt32))}
	if len(orders) > size {
		orders = orders[:size]
		last := orders[size-1]
		resp.NextPageToken = encodePageToken(Cursor{CreateTime: last.CreateTime, ID: last.ID})
	}
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
	if req.GetId() == "" {
		return nil, status.Error(codes.InvalidArgument, "id is required")
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
	if req.GetId() == "" {
		return nil, status.Error(codes.InvalidArgument, "id is required")
	}
	to, ok := fromProtoStatus(req.GetStatus())
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
		o, err := s.repo.Get(ctx, id)
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
		now := s.now()
		ev := &ordersv1.OrderStatusChanged{
			OrderId:    o.ID,
			UserId:     o.UserID,
			OldStatus:  toProtoStatus(o.Status),
			NewStatus:  toProtoStatus(to),
			Items:      toProtoItems(o.Items),
			ChangeTime: timestamppb.New(now),
		}
		updated, err := s.repo.UpdateStatus(ctx, id, o.Status, to, now, ev)
		switch {
		case errors.Is(err, ErrStatusConflict):
			continue
		case errors.Is(err, ErrNotFound):
			return Order{}, notFound(id)
		case err != nil:
			return Order{}, s.internal(ctx, "change order status", err)
		}
		s.notify()
		return updated, nil
	}
	return Order{}, status.Errorf(codes.Aborted, "order %q is being changed concurrently, try again", id)
}

// reserve reserves the stock of lines under reservation id within the call
// timeout; ctx carries the service token.
func (s *Service) reserve(ctx context.Context, id string, lines []Item) (*productsv1.ReserveStockResponse, error) {
	ctx, cancel := context.WithTimeout(ctx, s.callTimeout)
	defer cancel()
	req := &productsv1.ReserveStockRequest{ReservationId: id, Items: make([]*productsv1.StockItem, len(lines))}
	for i, l := range lines {
		req.Items[i] = &productsv1.StockItem{ProductId: l.ProductID, Quantity: l.Quantity}
	}
	return s.products.ReserveStock(ctx, req)
}

// release gives back reservation id within the call timeout, even when ctx
// is done.
func (s *Service) release(ctx context.Context, id string) error {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.callTimeout)
	defer cancel()
	ctx, err := s.serviceContext(ctx)
	if err != nil {
		return err
	}
	_, err = s.products.ReleaseStock(ctx, &productsv1.ReleaseStockRequest{ReservationId: id})
	return err
}

// releaseNow gives back the reservation of a failed order attempt at once,
// best effort: a failure is only logged, since the attempt's pending
// reservation stays for RecoverDue.
func (s *Service) releaseNow(ctx context.Context, log *slog.Logger, id string) {
	if err := s.release(ctx, id); err != nil {
		log.WarnContext(ctx, "ordersvc: release stock after failed order; the recovery sweep retries", "err", err)
		return
	}
	log.InfoContext(ctx, "ordersvc: released stock of failed order")
}

// RecoverReservations runs the recovery sweep (RecoverDue) every
// Config.RecoverEvery until ctx ends. Every instance runs one; they share
// the work through the repository's claims.
func (s *Service) RecoverReservations(ctx context.Context) error {
	t := time.NewTicker(s.recoverEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
		if _, err := s.RecoverDue(ctx); err != nil && ctx.Err() == nil {
			s.logger.WarnContext(ctx, "ordersvc: recovery sweep", "err", err)
		}
	}
}

// RecoverDue releases the stock of the pending reservations whose recover
// time has passed and whose order was never stored, and returns how many it
// released. It works in batches of recoverBatch until none is due, at most
// maxRecoverBatches per call, so a backlog (many failed orders at once)
// drains at the speed of the release calls. A pending reservation whose
// order exists is only forgotten. A failed release stays pending and is
// retried by a later call once its lease (twice the call timeout) ends.
func (s *Service) RecoverDue(ctx context.Context) (int, error) {
	released := 0
	var errs []error
	for range maxRecoverBatches {
		n, due, err := s.recoverOnce(ctx)
		released += n
		if err != nil {
			errs = append(errs, err)
		}
		// A short batch drained the backlog; a failing one would only fail
		// again.
		if due < recoverBatch || err != nil || ctx.Err() != nil {
			break
		}
	}
	if released > 0 {
		s.logger.InfoContext(ctx, "ordersvc: recovery sweep released abandoned reservations", "released", released)
	}
	return released, errors.Join(errs...)
}

// maxRecoverBatches bounds the batches of one RecoverDue call.
const maxRecoverBatches = 50

// recoverOnce handles up to recoverBatch due pending reservations and
// returns how many it released and how many were due.
func (s *Service) recoverOnce(ctx context.Context) (released, due int, err error) {
	now := s.now()
	ids, err := s.repo.DueReservations(ctx, now, recoverBatch)
	if err != nil {
		return 0, 0, err
	}
	var errs []error
	for _, id := range ids {
		claim, err := s.repo.ClaimRecovery(ctx, id, now, s.now().Add(2*s.callTimeout))
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if claim != ClaimRelease {
			continue
		}
		if err := s.release(ctx, id); err != nil {
			errs = append(errs, fmt.Errorf("release %s: %w", id, err))
			continue
		}
		if err := s.repo.FinishRecovery(ctx, id); err != nil {
			errs = append(errs, err)
			continue
		}
		released++
		s.logger.DebugContext(ctx, "ordersvc: released the stock of an order attempt that stored no order", "order_id", id)
	}
	return released, len(ids), errors.Join(errs...)
}

// The ReserveStock refusal for the reservation id itself, as the product
// service documents it: a PreconditionFailure violation of this type whose
// description is "released" or "other items".
const (
	reservationViolation  = "RESERVATION"
	reservationOtherItems = "other items"
)

// reservationRefused reports whether err is a ReserveStock refusal for the
// reservation id itself (a PreconditionFailure violation of type
// RESERVATION), and its reason.
func reservationRefused(err error) (string, bool) {
	for _, d := range status.Convert(err).Details() {
		if pf, ok := d.(*errdetails.PreconditionFailure); ok {
			for _, v := range pf.GetViolations() {
				if v.GetType() == reservationViolation {
					return v.GetDescription(), true
				}
			}
		}
	}
	return "", false
}

// refusedReservation is the caller's error for a reservation refused for its
// id: the order id, and so the reservation id, comes from the idempotency key.
func refusedReservation(why, key string) error {
	if why == reservationOtherItems {
		return status.Error(codes.FailedPrecondition, "idempotency key already used for a different order")
	}
	if key != "" {
		return status.Error(codes.FailedPrecondition, "an earlier attempt with this idempotency key failed and was rolled back; place the order again with a new idempotency key")
	}
	return status.Error(codes.Aborted, "the stock reservation was rolled back, try again")
}

// serviceContext returns ctx carrying the order service's token, minting a
// new one when the cached one is missing or about to expire.
func (s *Service) serviceContext(ctx context.Context) (context.Context, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.token == "" || time.Until(s.tokenExp) < serviceTokenRenew {
		tok, exp, err := s.signer.Issue(ServiceSubject, auth.RoleService, serviceTokenTTL)
		if err != nil {
			return ctx, err
		}
		s.token, s.tokenExp = tok, exp
	}
	return auth.OutgoingContext(ctx, s.token), nil
}

// parseItems checks the requested lines and merges lines of the same product
// into the first one, keeping request order.
func parseItems(in []*ordersv1.CreateOrderItem) ([]Item, error) {
	if len(in) == 0 {
		return nil, errors.New("items must not be empty")
	}
	var (
		lines []Item
		index = make(map[string]int, len(in))
	)
	for i, it := range in {
		id, q := it.GetProductId(), it.GetQuantity()
		switch {
		case id == "":
			return nil, fmt.Errorf("items[%d].product_id is required", i)
		case len(id) > MaxProductIDLen:
			return nil, fmt.Errorf("items[%d].product_id is longer than %d bytes", i, MaxProductIDLen)
		case q < 1 || q > MaxQuantity:
			return nil, fmt.Errorf("items[%d].quantity must be between 1 and %d", i, MaxQuantity)
		}
		if j, ok := index[id]; ok {
			lines[j].Quantity += q
			if lines[j].Quantity > MaxQuantity {
				return nil, fmt.Errorf("total quantity of product %q must be at most %d", id, MaxQuantity)
			}
			continue
		}
		index[id] = len(lines)
		lines = append(lines, Item{ProductID: id, Quantity: q})
	}
	if len(lines) > MaxItems {
		return nil, fmt.Errorf("an order has at most %d distinct products", MaxItems)
	}
	return lines, nil
}

// captureItems fills in the names and prices of lines from a reservation and
// returns them with the order total. The reservation must cover exactly the
// requested products and quantities.
func captureItems(lines []Item, reserved []*productsv1.ReservedItem) ([]Item, int64, error) {
	if len(reserved) != len(lines) {
		return nil, 0, fmt.Errorf("reservation has %d items, want %d", len(reserved), len(lines))
	}
	byID := make(map[string]*productsv1.ReservedItem, len(reserved))
	for _, r := range reserved {
		byID[r.GetProductId()] = r
	}
	items := make([]Item, len(lines))
	var total int64
	for i, l := range lines {
		r := byID[l.ProductID]
		switch {
		case r == nil:
			return nil, 0, fmt.Errorf("reservation lacks product %q", l.ProductID)
		case r.GetQuantity() != l.Quantity:
			return nil, 0, fmt.Errorf("reservation of product %q has quantity %d, want %d", l.ProductID, r.GetQuantity(), l.Quantity)
		case r.GetUnitPriceCents() < 0:
			return nil, 0, fmt.Errorf("product %q has negative price %d", l.ProductID, r.GetUnitPriceCents())
		}
		price := r.GetUnitPriceCents()
		if price > (math.MaxInt64-total)/int64(l.Quantity) {
			return nil, 0, errors.New("order total overflows")
		}
		total += price * int64(l.Quantity)
		items[i] = Item{ProductID: l.ProductID, ProductName: r.GetProductName(), UnitPriceCents: price, Quantity: l.Quantity}
	}
	return items, total, nil
}

// mayAccess reports whether the caller c may see and cancel order o.
func mayAccess(c auth.Claims, o Order) bool {
	return c.IsAdmin() || (c.Subject == o.UserID && c.Role != auth.RoleService)
}

// notFound is the one answer for an unknown order and for someone else's.
func notFound(id string) error {
	return status.Errorf(codes.NotFound, "order %q not found", id)
}

// internal logs err and returns an Internal status without its details, or
// the status of ctx's end when ctx is done.
func (s *Service) internal(ctx context.Context, op string, err error) error {
	if ctx.Err() != nil {
		return status.FromContextError(ctx.Err()).Err()
	}
	s.logger.ErrorContext(ctx, "ordersvc: "+op, "err", err)
	return status.Error(codes.Internal, "internal error")
}

// newID returns a new order id: "o_" and 16 hex digits.
// IdempotencyMetadataKey is the call metadata key of an idempotency key. The
// gateway sets it from the HTTP Idempotency-Key header, or makes one up per
// HTTP request, so that a request delivered twice creates one order.
const IdempotencyMetadataKey = "idempotency-key"

// MaxIdempotencyKeyLen bounds an idempotency key.
const MaxIdempotencyKeyLen = 200

// idempotencyKey returns the call's idempotency key, or "".
func idempotencyKey(ctx context.Context) (string, error) {
	md, _ := metadata.FromIncomingContext(ctx)
	vs := md.Get(IdempotencyMetadataKey)
	if len(vs) == 0 || vs[0] == "" {
		return "", nil
	}
	if len(vs[0]) > MaxIdempotencyKeyLen {
		return "", fmt.Errorf("idempotency key longer than %d bytes", MaxIdempotencyKeyLen)
	}
	return vs[0], nil
}

// orderIDFor derives the order id of a user's idempotency key.
func orderIDFor(userID, key string) string {
	h := sha256.Sum256([]byte(userID + "\x00" + key))
	return "o_" + hex.EncodeToString(h[:8])
}

// replay answers a repeated CreateOrder with the order the first one made,
// provided it is the same request.
func (s *Service) replay(o Order, userID string, lines []Item) (*ordersv1.CreateOrderResponse, error) {
	same := o.UserID == userID && len(o.Items) == len(lines)
	for i := 0; same && i < len(lines); i++ {
		same = o.Items[i].ProductID == lines[i].ProductID && o.Items[i].Quantity == lines[i].Quantity
	}
	if !same {
		return nil, status.Error(codes.FailedPrecondition, "idempotency key already used for a different order")
	}
	return &ordersv1.CreateOrderResponse{Order: toProto(o)}, nil
}

func newID() string {
	var b [8]byte
	_, _ = rand.Read(b[:]) // never fails (crypto/rand.Read documents it)
	return "o_" + hex.EncodeToString(b[:])
}

// encodePageToken returns the opaque page token of c.
func encodePageToken(c Cursor) string {
	return base64.RawURLEncoding.EncodeToString([]byte(strconv.FormatInt(c.CreateTime.UnixMicro(), 10) + ":" + c.ID))
}

// decodePageToken parses a token of encodePageToken.
func decodePageToken(tok string) (Cursor, error) {
	b, err := base64.RawURLEncoding.DecodeString(tok)
	if err != nil {
		return Cursor{}, err
	}
	ts, id, ok := strings.Cut(string(b), ":")
	if !ok || id == "" {
		return Cursor{}, errors.New("missing id")
	}
	us, err := strconv.ParseInt(ts, 10, 64)
	if err != nil || us < 0 {
		return Cursor{}, errors.New("bad time")
	}
	return Cursor{CreateTime: time.UnixMicro(us).UTC(), ID: id}, nil
}

var statusToProto = map[Status]ordersv1.OrderStatus{
	StatusPending:   ordersv1.OrderStatus_ORDER_STATUS_PENDING,
	StatusConfirmed: ordersv1.OrderStatus_ORDER_STATUS_CONFIRMED,
	StatusShipped:   ordersv1.OrderStatus_ORDER_STATUS_SHIPPED,
	StatusDelivered: ordersv1.OrderStatus_ORDER_STATUS_DELIVERED,
	StatusCancelled: ordersv1.OrderStatus_ORDER_STATUS_CANCELLED,
}

func toProtoStatus(s Status) ordersv1.OrderStatus { return statusToProto[s] }

// fromProtoStatus maps a request's status; UNSPECIFIED and unknown values
// are not valid.
func fromProtoStatus(p ordersv1.OrderStatus) (Status, bool) {
	for s, v := range statusToProto {
		if v == p {
			return s, true
		}
	}
	return "", false
}

func toProtoItems(items []Item) []*ordersv1.OrderItem {
	out := make([]*ordersv1.OrderItem, len(items))
	for i, it := range items {
		out[i] = &ordersv1.OrderItem{
			ProductId:      it.ProductID,
			ProductName:    it.ProductName,
			UnitPriceCents: it.UnitPriceCents,
			Quantity:       it.Quantity,
		}
	}
	return out
}

func toProto(o Order) *ordersv1.Order {
	return &ordersv1.Order{
		Id:         o.ID,
		UserId:     o.UserID,
		Items:      toProtoItems(o.Items),
		TotalCents: o.TotalCents,
		Status:     toProtoStatus(o.Status),
		CreateTime: timestamppb.New(o.CreateTime),
		UpdateTime: timestamppb.New(o.UpdateTime),
	}
}
