package productsvc

import (
	"context"
	"fmt"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	ordersv1 "github.com/kgrpc/platform/gen/shop/orders/v1"
	productsv1 "github.com/kgrpc/platform/gen/shop/products/v1"
	"github.com/kgrpc/platform/kafkatransport/validate"
)

// HandleOrderStatusChanged releases the reservation of an order that was
// cancelled (the reservation id is the order id), exactly once however often
// the event is delivered. Other statuses are ignored. It runs as an event
// handler, without user claims; a returned error asks for redelivery.
func (s *Service) HandleOrderStatusChanged(ctx context.Context, ev *ordersv1.OrderStatusChanged) error {
	if ev.GetNewStatus() != ordersv1.OrderStatus_ORDER_STATUS_CANCELLED {
		return nil
	}
	id := ev.GetOrderId()
	// The reservation id's rule, as ReleaseStock checks it.
	if err := validate.Check(s.rules, &productsv1.ReleaseStockRequest{ReservationId: id}); status.Code(err) == codes.Internal {
		return err // the rules failed, not the id: redeliver
	} else if err != nil {
		// Redelivery cannot fix it.
		s.logger.WarnContext(ctx, "productsvc: ignoring OrderStatusChanged with a bad order id", "err", err)
		return nil
	}
	released, err := s.release(ctx, id)
	if err != nil {
		s.logger.ErrorContext(ctx, "productsvc: release stock of cancelled order", "order_id", id, "err", err)
		return fmt.Errorf("productsvc: release stock of cancelled order %s: %w", id, err)
	}
	s.logger.InfoContext(ctx, "productsvc: cancelled order", "order_id", id, "released", released)
	return nil
}
