package productsvc

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"buf.build/go/protovalidate"
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
	// Rules checks the items of ImportProducts, which the server's
	// validation interceptor passes unchecked (a client stream), and the
	// order ids of events; nil means a new protovalidate.Validator.
	Rules protovalidate.Validator
}

// Service implements productsv1.ProductServiceServer.
type Service struct {
	productsv1.UnimplementedProductServiceServer

	repo   Repository
	logger *slog.Logger
	notify func()
	rules  protovalidate.Validator
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
	if cfg.Rules == nil {
		var err error
		if cfg.Rules, err = protovalidate.New(); err != nil {
			return nil, fmt.Errorf("productsvc: validation rules: %w", err)
		}
	}
	return &Service{
		repo:   cfg.Repo,
		logger: cfg.Logger,
		notify: cfg.Notify,
		rules:  cfg.Rules,
		now:    func() time.Time { return time.Now().UTC().Truncate(time.Microsecond) },
	}, nil
}

// CreateProduct adds a product to the catalogue. Admins only.
func (s *Service) CreateProduct(ctx context.Context, req *productsv1.CreateProductRequest) (*productsv1.CreateProductResponse, error) {
	if _, err := auth.RequireAdmin(ctx); err != nil {
		return nil, err
	}
	p := newProduct(req.GetSku(), req.GetName(), req.GetDescription(), req.GetCategory(), req.GetPriceCents(), req.GetStock())
	now := s.now()
	p.ID, p.CreateTime, p.UpdateTime = sqlstore.NewID("p_"), now, now
	err := s.repo.CreateProduct(ctx, p, createdEvents(now))
	if errors.Is(err, ErrSKUTaken) {
		return nil, status.Errorf(codes.AlreadyExists, "a product with sku %q already exists", p.SKU)
	}
	if err != nil {
		return nil, s.internal(ctx, "create product", err)
	}
	s.notify()
	return &productsv1.CreateProductResponse{Product: toProto(p)}, nil
}

// newProduct returns a new product (CreateProduct, and ImportProducts)
// without id and times, its text trimmed. The request's rules (products.proto)
// have checked the fields.
func newProduct(sku, name, description, category string, priceCents, stock int64) Product {
	return Product{
		SKU: sku, Name: strings.TrimSpace(name), Description: strings.TrimSpace(description),
		Category: strings.TrimSpace(category), PriceCents: priceCents, Stock: stock,
	}
}

// GetProduct returns one product. Anyone may call it.
func (s *Service) GetProduct(ctx context.Context, req *productsv1.GetProductRequest) (*productsv1.GetProductResponse, error) {
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
	q := ListQuery{
		Text: strings.TrimSpace(req.GetQuery()), Category: strings.TrimSpace(req.GetCategory()),
		MinPriceCents: req.MinPriceCents, MaxPriceCents: req.MaxPriceCents, InStock: req.GetInStock(),
	}
	ob := orderBy[req.GetOrderBy()] // one of them: the request's rules
	q.Sort, q.Desc = ob.sort, ob.desc
	q.Limit = DefaultPageSize
	if size := req.GetPageSize(); size > 0 {
		q.Limit = min(int(size), MaxPageSize)
	}
	if tok := req.GetPageToken(); tok != "" {
		var err error
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
	patch := ProductPatch{UpdateTime: s.now(), PriceCents: req.PriceCents}
	trimmed := func(s *string) *string {
		if s == nil {
			return nil
		}
		t := strings.TrimSpace(*s)
		return &t
	}
	patch.Name, patch.Description, patch.Category = trimmed(req.Name), trimmed(req.Description), trimmed(req.Category)
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
	delta := req.GetDelta()
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
