package ordersvc

import (
	"context"
	"errors"
	"fmt"
	"math"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	ordersv1 "github.com/kgrpc/platform/gen/shop/orders/v1"
	productsv1 "github.com/kgrpc/platform/gen/shop/products/v1"
	"github.com/kgrpc/platform/internal/auth"
	"github.com/kgrpc/platform/internal/sqlstore"
	"github.com/kgrpc/platform/kafkatransport/idempotency"
)

// CreateOrder places an order for the calling customer or admin. It is a
// saga of three steps over two services:
//
//  1. record a pending reservation under the order id (BeginReservation),
//     so that stock reserved by an attempt that then dies is found again;
//  2. reserve the stock with the product service (reservation id = order
//     id) and capture names and prices from the reservation;
//  3. store the order PENDING with an OrderCreated event, deleting the
//     pending reservation in the same transaction.
//
// Errors of the reservation that are the caller's (FailedPrecondition,
// NotFound, InvalidArgument) are returned unchanged.
//
// Who gives stock back. Stock leaves the product service in step 2 and
// returns in one of four places, each a ReleaseStock of the order id:
//
//   - here, at once, when this attempt fails after step 2 may have
//     reserved: the deferred compensation below, the saga's only one (but
//     not when step 2 itself failed with an unknown outcome and the call
//     has an idempotency key: its retry may still complete the order);
//   - the recovery sweep (RecoverDue, recovery.go), when the attempt died
//     before step 3 or the release here failed: its pending record from
//     step 1 outlives its recover time;
//   - the product service, when a stored order is cancelled: CancelOrder
//     and UpdateOrderStatus write OrderStatusChanged, which
//     productsvc.Service.HandleOrderStatusChanged consumes (wired in
//     internal/app's RunProducts);
//   - an admin calling ProductService.ReleaseStock over Kafka (it is not
//     exposed over REST).
//
// A release is final: the product service refuses a reservation that
// reaches it after the release of its id (ReservationRefusal RELEASED), so
// a step 2 delayed past a compensation takes nothing.
func (s *Service) CreateOrder(ctx context.Context, req *ordersv1.CreateOrderRequest) (_ *ordersv1.CreateOrderResponse, err error) {
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
	id := sqlstore.NewID("o_")
	key, err := idempotency.KeyFromContext(ctx)
	if err != nil {
		return nil, err
	}
	if key != "" {
		// The same key from the same user always names the same order, so
		// a retried or redelivered request finds the order it made.
		id = orderIDFor(c.Subject, key)
		o, err := s.cfg.Repo.Get(ctx, id)
		switch {
		case err == nil:
			return s.replay(o, c.Subject, lines)
		case !errors.Is(err, ErrNotFound):
			return nil, s.internal(ctx, "get order", err)
		}
	}
	log := s.cfg.Logger.With("order_id", id, "user_id", c.Subject)

	// Step 1: record the reservation before making it. It commits at once,
	// outside the call's unit of work (see kafkatransport/idempotency): the
	// recovery sweep must find it even if this attempt dies in step 2. Step
	// 3 commits with the call's recorded outcome.
	begun := s.now()
	switch err := s.cfg.Repo.BeginReservation(sqlstore.Detach(ctx), id, c.Subject, begun, begun.Add(s.cfg.RecoverAfter)); {
	case errors.Is(err, ErrRecovering):
		return nil, status.Error(codes.Unavailable, "an earlier attempt of this order is being rolled back, try again in a few seconds")
	case err != nil:
		return nil, s.internal(ctx, "begin reservation", err)
	}

	// compensate is whether a failure from here on gives the stock back at
	// once. It is set while stock may be held under id and the order is not
	// stored: a release then is harmless when nothing was reserved, and
	// RecoverDue releases again later in case a delayed reservation still
	// lands after it.
	compensate := false
	defer func() {
		if err != nil && compensate {
			s.releaseNow(ctx, log, id)
		}
	}()

	// Step 2: reserve and capture. When the outcome is unknown (the product
	// service did not answer) and the call has an idempotency key, the
	// stock the reservation may hold is left to a retry of the key, which
	// finds it again (ReserveStock is idempotent by id) and completes the
	// order, or else to the recovery sweep after RecoverAfter: releasing it
	// now would make the key's retry fail for good.
	reserved, err := s.reserve(ctx, id, lines)
	if err != nil {
		var mayHold bool
		mayHold, err = s.reserveFailed(ctx, log, err, key)
		compensate = mayHold && key == ""
		if mayHold && key != "" {
			log.InfoContext(ctx, "ordersvc: reservation outcome unknown; kept for a retry of the idempotency key or the recovery sweep")
		}
		return nil, err
	}
	compensate = true
	items, total, err := captureItems(lines, reserved.GetItems())
	if err != nil {
		log.ErrorContext(ctx, "ordersvc: unexpected reservation", "err", err)
		return nil, status.Error(codes.Internal, "internal error")
	}

	// Step 3: store the order.
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
	if err := s.cfg.Repo.Create(ctx, o, orderCreated); err != nil {
		if key != "" && errors.Is(err, ErrAlreadyExists) {
			if prev, gerr := s.cfg.Repo.Get(ctx, id); gerr == nil {
				// A concurrent run of the same request stored it first;
				// the reservation is shared, so it must not be released.
				compensate = false
				return s.replay(prev, c.Subject, lines)
			}
		}
		if errors.Is(err, ErrRecovering) {
			// This attempt outlived its recover time and the sweep took
			// its stock back: storing the order now would oversell.
			compensate = false
			log.WarnContext(ctx, "ordersvc: order attempt outlived its recover time, rolled back", "began", begun)
			return nil, status.Error(codes.Aborted, "the order took too long and was rolled back, try again")
		}
		return nil, s.internal(ctx, "create order", err)
	}
	s.cfg.Notify()
	return &ordersv1.CreateOrderResponse{Order: toProto(o)}, nil
}

// parseItems merges lines of the same product into the first one, keeping
// request order, and checks the merged lines: at most MaxItems products,
// each at most MaxQuantity units. The request's rules have checked each
// line.
func parseItems(in []*ordersv1.CreateOrderItem) ([]Item, error) {
	var (
		lines []Item
		index = make(map[string]int, len(in))
	)
	for _, it := range in {
		id, q := it.GetProductId(), it.GetQuantity()
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

// orderCreated is the event of a new order.
func orderCreated(o Order) []proto.Message {
	return []proto.Message{&ordersv1.OrderCreated{Order: toProto(o)}}
}
