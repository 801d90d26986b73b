package productsvc

import (
	"context"
	"errors"
	"fmt"
	"google.golang.org/protobuf/proto"
	"strings"
	"time"

	"github.com/kgrpc/platform/internal/outbox"
)

// ErrNotFound is returned by a Repository when no live (not deleted) product
// matches.
var ErrNotFound = errors.New("productsvc: product not found")

// ErrSKUTaken is returned by Repository.CreateProduct when a live product has
// the same SKU, ignoring case.
var ErrSKUTaken = errors.New("productsvc: sku already exists")

// ErrInsufficientStock is returned when a stock change would take a
// product's stock below zero.
var ErrInsufficientStock = errors.New("productsvc: insufficient stock")

// ErrStockLimit is returned when a stock change would take a product's stock
// above MaxStock.
var ErrStockLimit = errors.New("productsvc: stock limit exceeded")

// ErrReservationConflict is returned by Repository.Reserve when a reservation
// with the same id exists with other items.
var ErrReservationConflict = errors.New("productsvc: reservation id already used")

// ErrReservationReleased is returned by Repository.Reserve when reservation
// id was released already, or was released before it was ever made (see
// Repository.Release): a released id never holds stock again.
var ErrReservationReleased = errors.New("productsvc: reservation already released")

// ItemError tells which product of a reservation failed. Its Err is
// ErrNotFound or ErrInsufficientStock.
type ItemError struct {
	// ProductID is the product that failed.
	ProductID string
	// Requested is the quantity asked for.
	Requested int64
	// Available is the stock there was (zero for an unknown product).
	Available int64
	// Err is the reason.
	Err error
}

// Error implements error.
func (e *ItemError) Error() string {
	return fmt.Sprintf("product %s: %v (requested %d, available %d)", e.ProductID, e.Err, e.Requested, e.Available)
}

// Unwrap returns e.Err.
func (e *ItemError) Unwrap() error { return e.Err }

// Product is a stored catalogue entry.
type Product struct {
	// ID is the immutable product id.
	ID string
	// SKU is the stock keeping unit as given (trimmed); unique among live
	// products, ignoring case.
	SKU string
	// Name is the display name.
	Name string
	// Description is the long description.
	Description string
	// Category is the category as given; filters match it ignoring case.
	Category string
	// PriceCents is the unit price in cents.
	PriceCents int64
	// Stock is the number of units available.
	Stock int64
	// CreateTime is when the product was created (microsecond precision).
	CreateTime time.Time
	// UpdateTime is when the product last changed (microsecond precision).
	UpdateTime time.Time
}

// ProductPatch lists the fields of an update; nil fields are left unchanged.
type ProductPatch struct {
	// Name, when set, replaces the name.
	Name *string
	// Description, when set, replaces the description.
	Description *string
	// Category, when set, replaces the category.
	Category *string
	// PriceCents, when set, replaces the price.
	PriceCents *int64
	// UpdateTime is the new update time; it is always written.
	UpdateTime time.Time
}

// SortField is a column ListProducts can sort by. Every order ends with the
// product id as tie-breaker, in the same direction.
type SortField int

// The sort fields.
const (
	// SortName sorts by name, ignoring case.
	SortName SortField = iota
	// SortPrice sorts by price.
	SortPrice
	// SortCreateTime sorts by creation time.
	SortCreateTime
)

// Cursor is the position of the last product of a page; the next page starts
// right after it in the query's order. Only the field of the query's
// SortField is used, with ID.
type Cursor struct {
	// Name is the last product's name (as stored; the store folds its case).
	Name string
	// PriceCents is the last product's price.
	PriceCents int64
	// CreateTime is the last product's creation time.
	CreateTime time.Time
	// ID is the last product's id.
	ID string
}

// ListQuery selects, orders and pages live products. Filters combine with
// AND; zero values do not filter.
type ListQuery struct {
	// Text keeps products whose name or description contains it, ignoring
	// case. It is matched literally (no wildcards).
	Text string
	// Category keeps products of this category, ignoring case.
	Category string
	// MinPriceCents keeps products priced at least this much.
	MinPriceCents *int64
	// MaxPriceCents keeps products priced at most this much.
	MaxPriceCents *int64
	// InStock keeps products with stock above zero.
	InStock bool
	// Sort is the sort field.
	Sort SortField
	// Desc sorts in descending order.
	Desc bool
	// After, when set, starts the page after this position.
	After *Cursor
	// Limit is the maximum number of products returned; it must be positive.
	Limit int
}

// StockRequest is a quantity of one product to reserve.
type StockRequest struct {
	// ProductID is the product id.
	ProductID string
	// Quantity is the number of units; positive.
	Quantity int64
}

// ReservedItem is one stored line of a reservation, with the name and price
// the product had when it was reserved.
type ReservedItem struct {
	// ProductID is the product id.
	ProductID string
	// ProductName is the product's name at reservation time.
	ProductName string
	// UnitPriceCents is the product's price at reservation time.
	UnitPriceCents int64
	// Quantity is the number of units reserved.
	Quantity int64
}

// Reservation is stock held for one order.
type Reservation struct {
	// ID is the reservation id (the order id).
	ID string
	// Items are the reserved lines in request order; empty for a
	// reservation that was released before it was made.
	Items []ReservedItem
	// Released is true once the stock went back.
	Released bool
	// CreateTime is when the reservation (or its release marker) was stored.
	CreateTime time.Time
	// ReleaseTime is when it was released, or zero.
	ReleaseTime time.Time
}

// StockChange is one product's stock change made by a reservation or release.
type StockChange struct {
	// ProductID is the product id.
	ProductID string
	// Delta is the change; negative when stock was taken.
	Delta int64
	// Stock is the stock after the change.
	Stock int64
	// Deleted is true when the product has been deleted (stock still goes
	// back to it on release).
	Deleted bool
}

// ProductEvents returns the events that describe a product change, given the
// product after the change (before it, for a deletion). Repositories call it
// inside the change's transaction and add what it returns to the outbox.
type ProductEvents = outbox.Events[Product]

// StockMove is what one reservation or release did: the reservation, and
// the stock change it made to each of its products.
type StockMove struct {
	// Reservation is the reservation made or released.
	Reservation Reservation
	// Changes are the stock changes, one per product, in item order.
	Changes []StockChange
}

// StockEvents returns the events that describe the stock changes of a
// reservation or release. Repositories call it inside the transaction and
// add what it returns to the outbox.
type StockEvents = outbox.Events[StockMove]

// Repository stores products and stock reservations. Each method is one
// transaction: the data change and the events its callback returns are
// committed together or not at all. Implementations must be safe for
// concurrent use, must never let a stock go below zero whatever the
// concurrency, and must report the errors as documented. A nil events
// callback adds no events.
type Repository interface {
	// CreateProduct stores p. It fails with ErrSKUTaken when a live product
	// has the same SKU, ignoring case.
	CreateProduct(ctx context.Context, p Product, events ProductEvents) error
	// GetProduct returns the live product id, or ErrNotFound.
	GetProduct(ctx context.Context, id string) (Product, error)
	// ImportProduct creates p (its ID and times set) when no live product
	// has its SKU, ignoring case; else it sets that product's name,
	// description, category, price and stock to p's, keeping its id, SKU
	// and create time, and stamps p.UpdateTime. One transaction either
	// way; events gets the product as stored and the stock delta (p's
	// stock for a new product). It reports whether it created.
	ImportProduct(ctx context.Context, p Product, events func(p Product, created bool, delta int64) []proto.Message) (bool, error)
	// ListProducts returns the live products q selects, in q's order.
	ListProducts(ctx context.Context, q ListQuery) ([]Product, error)
	// UpdateProduct applies patch to the live product id and returns it
	// after the change, or ErrNotFound.
	UpdateProduct(ctx context.Context, id string, patch ProductPatch, events ProductEvents) (Product, error)
	// DeleteProduct soft-deletes the live product id (its SKU becomes free;
	// reservations keep referring to it) and returns it as it was, or
	// ErrNotFound.
	DeleteProduct(ctx context.Context, id string, deleteTime time.Time, events ProductEvents) (Product, error)
	// AdjustStock adds delta to the stock of the live product id and returns
	// it after the change. It fails with ErrNotFound, ErrInsufficientStock
	// (the stock would go below zero) or ErrStockLimit (above MaxStock), and
	// then changes nothing.
	AdjustStock(ctx context.Context, id string, delta int64, updateTime time.Time, events ProductEvents) (Product, error)
	// Reserve takes the stock of every item under reservation id, all or
	// nothing, capturing each product's current name and price. Items must
	// name distinct products. When reservation id exists already it changes
	// nothing and returns the stored reservation with replayed true, or
	// ErrReservationReleased when it was released (or it is a release
	// marker), or ErrReservationConflict when the stored items differ. A
	// missing or deleted product fails with an *ItemError wrapping
	// ErrNotFound, short stock with one wrapping ErrInsufficientStock.
	Reserve(ctx context.Context, id string, items []StockRequest, now time.Time, events StockEvents) (r Reservation, replayed bool, err error)
	// Release gives back the stock of reservation id and marks it released,
	// exactly once: it returns true only for the call that released it. An
	// unknown id is stored as a release marker, so that a reservation
	// arriving after its own release is refused with ErrReservationReleased
	// instead of leaking stock; Release still returns false for it.
	Release(ctx context.Context, id string, now time.Time, events StockEvents) (bool, error)
	// SeedProducts stores products when the store has never held any product
	// (deleted ones included) and reports whether it did.
	SeedProducts(ctx context.Context, products []Product, events ProductEvents) (bool, error)
}

// foldCase is the case folding of the *_key columns: what searches, category
// filters, name ordering and SKU uniqueness compare.
func foldCase(s string) string { return strings.ToLower(s) }

var _ Repository = (*SQLRepository)(nil)
