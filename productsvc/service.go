package productsvc

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	productsv1 "github.com/kgrpc/platform/gen/shop/products/v1"
	"github.com/kgrpc/platform/internal/auth"
	"github.com/kgrpc/platform/internal/rpcerr"
	"github.com/kgrpc/platform/internal/sqlstore"
)

// Config configures a Service.
type Config struct {
	// Repo stores products and reservations. Required.
	Repo Repository
	// Logger receives storage failures; nil discards them.
	Logger *slog.Logger
	// Notify, when not nil, is called after a transaction that added outbox
	// events commits (typically outbox.Relay.Notify).
	Notify func()
}

// Service implements productsv1.ProductServiceServer.
type Service struct {
	productsv1.UnimplementedProductServiceServer

	repo   Repository
	logger *slog.Logger
	notify func()
	now    func() time.Time
}

var _ productsv1.ProductServiceServer = (*Service)(nil)

// New returns a Service for cfg.
func New(cfg Config) (*Service, error) {
	if cfg.Repo == nil {
		return nil, errors.New("productsvc: Config.Repo is required")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Notify == nil {
		cfg.Notify = func() {}
	}
	return &Service{
		repo:   cfg.Repo,
		logger: cfg.Logger,
		notify: cfg.Notify,
		now:    func() time.Time { return time.Now().UTC().Truncate(time.Microsecond) },
	}, nil
}

// CreateProduct adds a product to the catalogue. Admins only.
func (s *Service) CreateProduct(ctx context.Context, req *productsv1.CreateProductRequest) (*productsv1.CreateProductResponse, error) {
	if _, err := auth.RequireAdmin(ctx); err != nil {
		return nil, err
	}
	p, err := newProduct(req.GetSku(), req.GetName(), req.GetDescription(), req.GetCategory(), req.GetPriceCents(), req.GetStock())
	if err != nil {
		return nil, err
	}
	now := s.now()
	p.ID, p.CreateTime, p.UpdateTime = sqlstore.NewID("p_"), now, now
	err = s.repo.CreateProduct(ctx, p, createdEvents(now))
	if errors.Is(err, ErrSKUTaken) {
		return nil, status.Errorf(codes.AlreadyExists, "a product with sku %q already exists", p.SKU)
	}
	if err != nil {
		return nil, s.internal(ctx, "create product", err)
	}
	s.notify()
	return &productsv1.CreateProductResponse{Product: toProto(p)}, nil
}

// newProduct checks the fields of a new product (CreateProduct, and
// ImportProducts) and returns it without id and times, or an
// InvalidArgument error.
func newProduct(sku, name, description, category string, priceCents, stock int64) (Product, error) {
	sku, err := parseSKU(sku)
	if err != nil {
		return Product{}, invalid(err)
	}
	if name, err = parseName(name); err != nil {
		return Product{}, invalid(err)
	}
	if description, err = parseDescription(description); err != nil {
		return Product{}, invalid(err)
	}
	if category, err = parseCategory(category); err != nil {
		return Product{}, invalid(err)
	}
	if err := checkPrice("price_cents", priceCents); err != nil {
		return Product{}, invalid(err)
	}
	if stock < 0 || stock > MaxStock {
		return Product{}, status.Errorf(codes.InvalidArgument, "stock must be between 0 and %d", int64(MaxStock))
	}
	return Product{SKU: sku, Name: name, Description: description, Category: category, PriceCents: priceCents, Stock: stock}, nil
}

// GetProduct returns one product. Anyone may call it.
func (s *Service) GetProduct(ctx context.Context, req *productsv1.GetProductRequest) (*productsv1.GetProductResponse, error) {
	if err := checkID("id", req.GetId()); err != nil {
		return nil, invalid(err)
	}
	p, err := s.repo.GetProduct(ctx, req.GetId())
	if errors.Is(err, ErrNotFound) {
		return nil, notFound(req.GetId())
	}
	if err != nil {
		return nil, s.internal(ctx, "get product", err)
	}
	return &productsv1.GetProductResponse{Product: toProto(p)}, nil
}

// ListProducts searches and pages through the catalogue. Anyone may call it.
func (s *Service) ListProducts(ctx context.Context, req *productsv1.ListProductsRequest) (*productsv1.ListProductsResponse, error) {
	text, err := parseText("query", req.GetQuery(), MaxQueryLen, false)
	if err != nil {
		return nil, invalid(err)
	}
	cat, err := parseCategory(req.GetCategory())
	if err != nil {
		return nil, invalid(err)
	}
	q := ListQuery{Text: text, Category: cat, MinPriceCents: req.MinPriceCents, MaxPriceCents: req.MaxPriceCents, InStock: req.GetInStock()}
	if q.MinPriceCents != nil && *q.MinPriceCents < 0 {
		return nil, status.Error(codes.InvalidArgument, "min_price_cents must not be negative")
	}
	if q.MaxPriceCents != nil && *q.MaxPriceCents < 0 {
		return nil, status.Error(codes.InvalidArgument, "max_price_cents must not be negative")
	}
	if q.MinPriceCents != nil && q.MaxPriceCents != nil && *q.MinPriceCents > *q.MaxPriceCents {
		return nil, status.Error(codes.InvalidArgument, "min_price_cents must not exceed max_price_cents")
	}
	ob, ok := orderBy[strings.TrimSpace(req.GetOrderBy())]
	if !ok {
		return nil, status.Errorf(codes.InvalidArgument, "order_by %q is not one of name, price, create_time, optionally prefixed with '-'", req.GetOrderBy())
	}
	q.Sort, q.Desc = ob.sort, ob.desc
	switch size := req.GetPageSize(); {
	case size < 0:
		return nil, status.Error(codes.InvalidArgument, "page_size must not be negative")
	case size == 0:
		q.Limit = DefaultPageSize
	default:
		q.Limit = min(int(size), MaxPageSize)
	}
	if tok := req.GetPageToken(); tok != "" {
		if q.After, err = decodePageToken(q, tok); err != nil {
			return nil, invalid(err)
		}
	}
	want := q.Limit
	q.Limit++ // one more tells whether there is a next page
	ps, err := s.repo.ListProducts(ctx, q)
	if err != nil {
		return nil, s.internal(ctx, "list products", err)
	}
	resp := &productsv1.ListProductsResponse{}
	if len(ps) > want {
		ps = ps[:want]
		resp.NextPageToken = encodePageToken(q, ps[want-1])
	}
	resp.Products = make([]*productsv1.Product, len(ps))
	for i, p := range ps {
		resp.Products[i] = toProto(p)
	}
	return resp, nil
}

// UpdateProduct changes the fields set in the request. Admins only.
func (s *Service) UpdateProduct(ctx context.Context, req *productsv1.UpdateProductRequest) (*productsv1.UpdateProductResponse, error) {
	if _, err := auth.RequireAdmin(ctx); err != nil {
		return nil, err
	}
	if err := checkID("id", req.GetId()); err != nil {
		return nil, invalid(err)
	}
	patch := ProductPatch{UpdateTime: s.now()}
	if req.Name != nil {
		name, err := parseName(req.GetName())
		if err != nil {
			return nil, invalid(err)
		}
		patch.Name = &name
	}
	if req.Description != nil {
		desc, err := parseDescription(req.GetDescription())
		if err != nil {
			return nil, invalid(err)
		}
		patch.Description = &desc
	}
	if req.Category != nil {
		cat, err := parseCategory(req.GetCategory())
		if err != nil {
			return nil, invalid(err)
		}
		patch.Category = &cat
	}
	if req.PriceCents != nil {
		if err := checkPrice("price_cents", req.GetPriceCents()); err != nil {
			return nil, invalid(err)
		}
		price := req.GetPriceCents()
		patch.PriceCents = &price
	}
	if patch.Name == nil && patch.Description == nil && patch.Category == nil && patch.PriceCents == nil {
		return nil, status.Error(codes.InvalidArgument, "nothing to update: set at least one of name, description, category, price_cents")
	}
	p, err := s.repo.UpdateProduct(ctx, req.GetId(), patch, changedEvents(patch.UpdateTime, false))
	if errors.Is(err, ErrNotFound) {
		return nil, notFound(req.GetId())
	}
	if err != nil {
		return nil, s.internal(ctx, "update product", err)
	}
	s.notify()
	return &productsv1.UpdateProductResponse{Product: toProto(p)}, nil
}

// DeleteProduct removes a product from the catalogue. Admins only. The
// product is soft-deleted: it is NotFound afterwards and its SKU is free, but
// existing reservations still release their stock to it.
func (s *Service) DeleteProduct(ctx context.Context, req *productsv1.DeleteProductRequest) (*productsv1.DeleteProductResponse, error) {
	if _, err := auth.RequireAdmin(ctx); err != nil {
		return nil, err
	}
	if err := checkID("id", req.GetId()); err != nil {
		return nil, invalid(err)
	}
	now := s.now()
	_, err := s.repo.DeleteProduct(ctx, req.GetId(), now, changedEvents(now, true))
	if errors.Is(err, ErrNotFound) {
		return nil, notFound(req.GetId())
	}
	if err != nil {
		return nil, s.internal(ctx, "delete product", err)
	}
	s.notify()
	return &productsv1.DeleteProductResponse{}, nil
}

// AdjustStock adds delta to a product's stock. Admins only.
func (s *Service) AdjustStock(ctx context.Context, req *productsv1.AdjustStockRequest) (*productsv1.AdjustStockResponse, error) {
	if _, err := auth.RequireAdmin(ctx); err != nil {
		return nil, err
	}
	if err := checkID("id", req.GetId()); err != nil {
		return nil, invalid(err)
	}
	delta := req.GetDelta()
	if delta == 0 {
		return nil, status.Error(codes.InvalidArgument, "delta must not be zero")
	}
	if delta < -MaxStock || delta > MaxStock {
		return nil, status.Errorf(codes.InvalidArgument, "delta must be between %d and %d", -int64(MaxStock), int64(MaxStock))
	}
	now := s.now()
	p, err := s.repo.AdjustStock(ctx, req.GetId(), delta, now, adjustedEvents(now, delta))
	var ie *ItemError
	switch {
	case errors.Is(err, ErrNotFound):
		return nil, notFound(req.GetId())
	case errors.As(err, &ie) && errors.Is(err, ErrInsufficientStock):
		return nil, shortStock(ie, "stock of product %q would go negative: it is %d, delta %d", ie.ProductID, ie.Available, delta)
	case errors.Is(err, ErrStockLimit):
		return nil, status.Errorf(codes.FailedPrecondition, "stock of product %q would exceed %d", req.GetId(), int64(MaxStock))
	case err != nil:
		return nil, s.internal(ctx, "adjust stock", err)
	}
	s.notify()
	return &productsv1.AdjustStockResponse{Product: toProto(p)}, nil
}

// requireService admits callers with the service or admin role.
func requireService(ctx context.Context) error {
	c, err := auth.Require(ctx)
	if err != nil {
		return err
	}
	if c.Role != auth.RoleService && c.Role != auth.RoleAdmin {
		return status.Error(codes.PermissionDenied, "service or admin role required")
	}
	return nil
}

// ReserveStock takes stock for every item, all or nothing, idempotently by
// reservation id. Service and admin callers only.
func (s *Service) ReserveStock(ctx context.Context, req *productsv1.ReserveStockRequest) (*productsv1.ReserveStockResponse, error) {
	if err := requireService(ctx); err != nil {
		return nil, err
	}
	id := req.GetReservationId()
	if err := checkID("reservation_id", id); err != nil {
		return nil, invalid(err)
	}
	items, err := mergeItems(req.GetItems())
	if err != nil {
		return nil, invalid(err)
	}
	now := s.now()
	res, replayed, err := s.repo.Reserve(ctx, id, items, now, stockEvents(now))
	var ie *ItemError
	switch {
	case errors.As(err, &ie) && errors.Is(err, ErrNotFound):
		return nil, notFound(ie.ProductID)
	case errors.As(err, &ie) && errors.Is(err, ErrInsufficientStock):
		return nil, shortStock(ie, "insufficient stock for product %q: requested %d, available %d", ie.ProductID, ie.Requested, ie.Available)
	case errors.Is(err, ErrReservationReleased):
		return nil, reservationFailure(id, productsv1.ReservationRefusal_RESERVATION_REFUSAL_RELEASED, "reservation %q was released and cannot hold stock again", id)
	case errors.Is(err, ErrReservationConflict):
		return nil, reservationFailure(id, productsv1.ReservationRefusal_RESERVATION_REFUSAL_OTHER_ITEMS, "reservation %q already exists with other items", id)
	case err != nil:
		return nil, s.internal(ctx, "reserve stock", err)
	}
	if !replayed {
		s.notify()
	}
	resp := &productsv1.ReserveStockResponse{Items: make([]*productsv1.ReservedItem, len(res.Items))}
	for i, it := range res.Items {
		resp.Items[i] = &productsv1.ReservedItem{
			ProductId: it.ProductID, ProductName: it.ProductName,
			UnitPriceCents: it.UnitPriceCents, Quantity: int32(it.Quantity),
		}
	}
	return resp, nil
}

// ReleaseStock gives back the stock of a reservation, exactly once. Service
// and admin callers only. Unknown or released reservations answer
// released=false.
func (s *Service) ReleaseStock(ctx context.Context, req *productsv1.ReleaseStockRequest) (*productsv1.ReleaseStockResponse, error) {
	if err := requireService(ctx); err != nil {
		return nil, err
	}
	if err := checkID("reservation_id", req.GetReservationId()); err != nil {
		return nil, invalid(err)
	}
	released, err := s.release(ctx, req.GetReservationId())
	if err != nil {
		return nil, s.internal(ctx, "release stock", err)
	}
	return &productsv1.ReleaseStockResponse{Released: released}, nil
}

func (s *Service) release(ctx context.Context, id string) (bool, error) {
	now := s.now()
	released, err := s.repo.Release(ctx, id, now, stockEvents(now))
	if err != nil {
		return false, err
	}
	if released {
		s.notify()
	}
	return released, nil
}

// toProto converts p to its message.
func toProto(p Product) *productsv1.Product {
	return &productsv1.Product{
		Id: p.ID, Sku: p.SKU, Name: p.Name, Description: p.Description, Category: p.Category,
		PriceCents: p.PriceCents, Stock: p.Stock,
		CreateTime: timestamppb.New(p.CreateTime), UpdateTime: timestamppb.New(p.UpdateTime),
	}
}

// createdEvents describes a new product: ProductChanged, and StockChanged
// when it starts with stock.
func createdEvents(t time.Time) ProductEvents {
	return func(p Product) []proto.Message {
		evs := []proto.Message{productChanged(p, false, t)}
		if p.Stock > 0 {
			evs = append(evs, &productsv1.StockChanged{ProductId: p.ID, Delta: p.Stock, Stock: p.Stock, ChangeTime: timestamppb.New(t)})
		}
		return evs
	}
}

// changedEvents describes an update or (deleted) a deletion.
func changedEvents(t time.Time, deleted bool) ProductEvents {
	return func(p Product) []proto.Message { return []proto.Message{productChanged(p, deleted, t)} }
}

// adjustedEvents describes a manual stock adjustment.
func adjustedEvents(t time.Time, delta int64) ProductEvents {
	return func(p Product) []proto.Message {
		return []proto.Message{
			productChanged(p, false, t),
			&productsv1.StockChanged{ProductId: p.ID, Delta: delta, Stock: p.Stock, ChangeTime: timestamppb.New(t)},
		}
	}
}

// stockEvents describes a reservation or release: one StockChanged per
// product that is not deleted.
func stockEvents(t time.Time) StockEvents {
	return func(m StockMove) []proto.Message {
		evs := make([]proto.Message, 0, len(m.Changes))
		for _, c := range m.Changes {
			if c.Deleted {
				continue
			}
			evs = append(evs, &productsv1.StockChanged{
				ProductId: c.ProductID, Delta: c.Delta, Stock: c.Stock, ReservationId: m.Reservation.ID, ChangeTime: timestamppb.New(t),
			})
		}
		return evs
	}
}

func productChanged(p Product, deleted bool, t time.Time) *productsv1.ProductChanged {
	return &productsv1.ProductChanged{ProductId: p.ID, Product: toProto(p), Deleted: deleted, ChangeTime: timestamppb.New(t)}
}

func invalid(err error) error { return status.Error(codes.InvalidArgument, err.Error()) }

func notFound(id string) error { return status.Errorf(codes.NotFound, "product %q not found", id) }

// shortStock returns FailedPrecondition with a PreconditionFailure detail of
// type "STOCK" whose subject is the product id.
func shortStock(ie *ItemError, format string, args ...any) error {
	return failedPrecondition(&errdetails.PreconditionFailure_Violation{
		Type: "STOCK", Subject: ie.ProductID,
		Description: fmt.Sprintf("requested %d, available %d", ie.Requested, ie.Available),
	}, format, args...)
}

// reservationFailure returns FailedPrecondition refusing reservation id for
// reason why, with the PreconditionFailure violation that
// productsv1.ReservationRefusal defines (proto/shop/products/v1/errors.proto):
// type "RESERVATION" (the enum's violation_type), subject id, description
// the value's violation_description ("released", "other items").
func reservationFailure(id string, why productsv1.ReservationRefusal, format string, args ...any) error {
	refusals := why.Descriptor()
	return failedPrecondition(&errdetails.PreconditionFailure_Violation{
		Type:        proto.GetExtension(refusals.Options(), productsv1.E_ViolationType).(string),
		Subject:     id,
		Description: proto.GetExtension(refusals.Values().ByNumber(why.Number()).Options(), productsv1.E_ViolationDescription).(string),
	}, format, args...)
}

// failedPrecondition returns FailedPrecondition with a PreconditionFailure
// detail holding v.
func failedPrecondition(v *errdetails.PreconditionFailure_Violation, format string, args ...any) error {
	st := status.Newf(codes.FailedPrecondition, format, args...)
	if d, err := st.WithDetails(&errdetails.PreconditionFailure{Violations: []*errdetails.PreconditionFailure_Violation{v}}); err == nil {
		st = d
	}
	return st.Err()
}

// internal logs a storage failure and returns a status without its details
// (see rpcerr.Internal).
func (s *Service) internal(ctx context.Context, op string, err error) error {
	return rpcerr.Internal(ctx, s.logger, "productsvc: "+op, err)
}
