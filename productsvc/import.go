package productsvc

import (
	"context"
	"io"
	"strings"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	productsv1 "github.com/kgrpc/platform/gen/shop/products/v1"
	"github.com/kgrpc/platform/internal/auth"
	"github.com/kgrpc/platform/internal/sqlstore"
	"github.com/kgrpc/platform/kafkatransport/validate"
)

// Limits of ImportProducts.
const (
	// MaxImportItems is the most products one import may carry; the
	// stream fails InvalidArgument at the next one.
	MaxImportItems = 10_000
	// MaxImportRejections is the most rejected items an import lists (it
	// counts them all).
	MaxImportRejections = 1_000
)

// ImportProducts creates or updates, by SKU, every product the admin
// streams, one item after another: a new SKU is created with the item's
// fields and stock; a known one gets the item's name, description,
// category, price and stock (each line replaces the product's fields: a
// field left out is set to its zero value). An item that
// fails (an invalid field, a stock out of range) is rejected, with its
// position in the stream (from 1) and the reason, and the import goes on.
// Each item is its own unit of work: a failure later does not undo the
// items before it.
func (s *Service) ImportProducts(stream grpc.ClientStreamingServer[productsv1.ImportProductsRequest, productsv1.ImportProductsResponse]) error {
	ctx := stream.Context()
	if _, err := auth.RequireAdmin(ctx); err != nil {
		return err
	}
	resp := &productsv1.ImportProductsResponse{}
	for pos := int32(1); ; pos++ {
		req, err := stream.Recv()
		if err == io.EOF {
			return stream.SendAndClose(resp)
		}
		if err != nil {
			return err
		}
		if pos > MaxImportItems {
			return status.Errorf(codes.InvalidArgument, "an import carries at most %d products", MaxImportItems)
		}
		created, err := s.importOne(ctx, req)
		switch {
		case err == nil && created:
			resp.Created++
		case err == nil:
			resp.Updated++
		default:
			st, ok := status.FromError(err)
			if !ok || st.Code() == codes.Internal || st.Code() == codes.Unknown {
				return err // the store failed: say so rather than reject
			}
			resp.Rejected++
			if len(resp.Rejections) < MaxImportRejections {
				reason := strings.TrimPrefix(st.Message(), validate.MessagePrefix) // the item is the request
				resp.Rejections = append(resp.Rejections, &productsv1.ImportRejection{Position: pos, Sku: req.GetSku(), Reason: reason})
			}
		}
	}
}

// importOne creates or updates one imported product, in one unit of work,
// and reports whether it created it.
func (s *Service) importOne(ctx context.Context, req *productsv1.ImportProductsRequest) (bool, error) {
	// The messages of a client stream pass the validation interceptor
	// unchecked: a bad item is rejected here, and the import goes on.
	if err := validate.Check(s.rules, req); err != nil {
		return false, err
	}
	p := newProduct(req.GetSku(), req.GetName(), req.GetDescription(), req.GetCategory(), req.GetPriceCents(), req.GetStock())
	now := s.now()
	p.ID, p.CreateTime, p.UpdateTime = sqlstore.NewID("p_"), now, now
	created, err := s.repo.ImportProduct(ctx, p, func(p Product, created bool, delta int64) []proto.Message {
		evs := []proto.Message{productChanged(p, false, now)}
		if delta != 0 {
			evs = append(evs, &productsv1.StockChanged{ProductId: p.ID, Delta: delta, Stock: p.Stock, ChangeTime: timestamppb.New(now)})
		}
		return evs
	})
	if err != nil {
		return false, s.internal(ctx, "import product", err)
	}
	s.notify()
	return created, nil
}
