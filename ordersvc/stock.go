package ordersvc

import (
	"context"
	"log/slog"

	productsv1 "github.com/kgrpc/platform/gen/shop/products/v1"
)

// This file is the order service's side of the product service: reserving
// and releasing stock under an order id. The calls carry no user: the
// transport's Guard authenticates them as the order service's unit, which
// the product service admits as a caller with the service role.

// reserve reserves the stock of lines under reservation id within the call
// timeout.
func (s *Service) reserve(ctx context.Context, id string, lines []Item) (*productsv1.ReserveStockResponse, error) {
	ctx, cancel := context.WithTimeout(ctx, s.cfg.CallTimeout)
	defer cancel()
	req := &productsv1.ReserveStockRequest{ReservationId: id, Items: make([]*productsv1.StockItem, len(lines))}
	for i, l := range lines {
		req.Items[i] = &productsv1.StockItem{ProductId: l.ProductID, Quantity: l.Quantity}
	}
	return s.cfg.Products.ReserveStock(ctx, req)
}

// release gives back reservation id within the call timeout, even when ctx
// is done.
func (s *Service) release(ctx context.Context, id string) error {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.cfg.CallTimeout)
	defer cancel()
	_, err := s.cfg.Products.ReleaseStock(ctx, &productsv1.ReleaseStockRequest{ReservationId: id})
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
