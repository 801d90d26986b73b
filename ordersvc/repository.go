package ordersvc

import (
	"context"
	"errors"
	"time"

	"github.com/kgrpc/platform/internal/outbox"
	"github.com/kgrpc/platform/internal/sqlstore"
)

// ErrNotFound is returned by a Repository when no order matches.
var ErrNotFound = errors.New("ordersvc: order not found")

// ErrAlreadyExists is returned by Repository.Create when an order with the
// same id is stored.
var ErrAlreadyExists = errors.New("ordersvc: order already exists")

// ErrStatusConflict is returned by Repository.UpdateStatus when the order
// exists but its status is no longer the expected one (a concurrent change
// won).
var ErrStatusConflict = errors.New("ordersvc: order status changed concurrently")

// ErrRecovering is returned by Repository.BeginReservation when the recovery
// sweep is releasing the pending reservation of that id.
var ErrRecovering = errors.New("ordersvc: the pending reservation is being released")

// Claim is the outcome of Repository.ClaimRecovery.
type Claim int

// The outcomes of Repository.ClaimRecovery.
const (
	// ClaimLost: the pending reservation is gone or not due; do nothing.
	ClaimLost Claim = iota
	// ClaimOrderStored: the order exists, so its reservation is in use; the
	// pending record was deleted and nothing must be released.
	ClaimOrderStored
	// ClaimRelease: the caller owns the release until its lease ends; it
	// releases the reservation and then calls FinishRecovery.
	ClaimRelease
)

// Status is where an order is in its life cycle, as stored.
type Status string

// The stored statuses. They mirror ordersv1.OrderStatus without the
// unspecified value.
const (
	StatusPending   Status = "PENDING"
	StatusConfirmed Status = "CONFIRMED"
	StatusShipped   Status = "SHIPPED"
	StatusDelivered Status = "DELIVERED"
	StatusCancelled Status = "CANCELLED"
)

// transitions lists, for each status, the statuses an order may move to.
var transitions = map[Status][]Status{
	StatusPending:   {StatusConfirmed, StatusCancelled},
	StatusConfirmed: {StatusShipped, StatusCancelled},
	StatusShipped:   {StatusDelivered},
}

// CanTransition reports whether an order in status s may move to status to:
// PENDING to CONFIRMED to SHIPPED to DELIVERED, and to CANCELLED from
// PENDING or CONFIRMED. Staying in the same status is not a transition.
func (s Status) CanTransition(to Status) bool {
	for _, t := range transitions[s] {
		if t == to {
			return true
		}
	}
	return false
}

// Item is one line of a stored order.
type Item struct {
	// ProductID is the ordered product's id.
	ProductID string
	// ProductName is the product's name at order time.
	ProductName string
	// UnitPriceCents is the product's unit price at order time.
	UnitPriceCents int64
	// Quantity is the number of units ordered; positive.
	Quantity int32
}

// Order is a stored order. Its items never change after creation.
type Order struct {
	// ID is the immutable order id; it is also the stock reservation id.
	ID string
	// UserID is the id of the user who placed the order.
	UserID string
	// Items are the order's lines, in the order they were placed.
	Items []Item
	// TotalCents is the sum of UnitPriceCents times Quantity over Items.
	TotalCents int64
	// Status is where the order is in its life cycle.
	Status Status
	// CreateTime is when the order was placed (microsecond precision).
	CreateTime time.Time
	// UpdateTime is when the order last changed (microsecond precision).
	UpdateTime time.Time
}

// Cursor is a position in the newest-first (CreateTime desc, ID desc) order
// of one user's orders: a page starts right after it. Its Token is the
// ListUserOrders page token.
type Cursor = sqlstore.Cursor

// OrderEvents returns the events that describe a change of an order, given
// the order as the change stores it; the repository adds them to the outbox
// in the change's transaction. Nil means none.
type OrderEvents = outbox.Events[Order]

// cursor returns the position of o in the (CreateTime, ID) order.
func (o Order) cursor() Cursor { return Cursor{CreateTime: o.CreateTime, ID: o.ID} }

// Repository stores orders. Implementations must be safe for concurrent use
// and report ErrNotFound, ErrAlreadyExists and ErrStatusConflict as
// documented. Events passed to a write are added to the outbox in the same
// transaction as the write: both happen or neither does.
//
// Pending reservations make order creation crash-safe: CreateOrder records
// one (BeginReservation) before it asks the product service for stock, and
// Create deletes it with the order. A record that outlives its recover time
// belongs to an attempt that died or failed; the recovery sweep finds it
// (DueReservations), takes it over (ClaimRecovery), releases the stock and
// deletes it (FinishRecovery).
type Repository interface {
	// Create stores o with its items, adds events to the outbox and deletes
	// the pending reservation o.ID, which must exist and not be releasing:
	// otherwise its stock is (being) given back, and Create stores nothing
	// and fails with ErrRecovering. It fails with ErrAlreadyExists when o.ID
	// is taken.
	Create(ctx context.Context, o Order, events OrderEvents) error
	// BeginReservation records pending reservation id of userID, which the
	// recovery sweep may release from recoverAt on. When it is recorded
	// already (a retry of the same idempotency key) its recover time moves
	// to recoverAt, unless the sweep is releasing it: then it fails with
	// ErrRecovering and changes nothing.
	BeginReservation(ctx context.Context, id, userID string, now, recoverAt time.Time) error
	// DueReservations returns up to limit ids of pending reservations whose
	// recover time is before now, earliest first.
	DueReservations(ctx context.Context, now time.Time, limit int) ([]string, error)
	// ClaimRecovery takes over pending reservation id if its recover time is
	// before now, in one transaction: when order id exists it deletes the
	// record (ClaimOrderStored); otherwise it marks it releasing with recover
	// time leaseUntil, so that another sweeper retries if this one dies
	// (ClaimRelease). A record that is missing or not due is ClaimLost.
	ClaimRecovery(ctx context.Context, id string, now, leaseUntil time.Time) (Claim, error)
	// FinishRecovery deletes pending reservation id after its release.
	FinishRecovery(ctx context.Context, id string) error
	// Get returns the order with id, items included, or ErrNotFound.
	Get(ctx context.Context, id string) (Order, error)
	// ListByUser returns up to limit orders of userID, items included,
	// newest first (CreateTime desc, ID desc), starting after the cursor, or
	// from the newest when after is nil.
	ListByUser(ctx context.Context, userID string, after *Cursor, limit int) ([]Order, error)
	// CountByUser returns how many orders userID has.
	CountByUser(ctx context.Context, userID string) (int, error)
	// UpdateStatus moves the order with id from status from to status to,
	// sets its update time to at, adds events to the outbox, and returns the
	// order after the change. The change is conditional on the stored status
	// still being from: otherwise nothing is written and it fails with
	// ErrStatusConflict (ErrNotFound when there is no such order). It does not
	// check that the transition is allowed; callers do.
	UpdateStatus(ctx context.Context, id string, from, to Status, at time.Time, events OrderEvents) (Order, error)
}

var _ Repository = (*SQLRepository)(nil)
