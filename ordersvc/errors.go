package ordersvc

import (
	"context"
	"log/slog"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	productsv1 "github.com/kgrpc/platform/gen/shop/products/v1"
	"github.com/kgrpc/platform/internal/rpcerr"
)

// This file maps failures to the caller's errors: storage failures, and the
// product service's answers to ReserveStock.

// internal logs err and returns an Internal status without its details, or
// the status of ctx's end when ctx is done.
func (s *Service) internal(ctx context.Context, op string, err error) error {
	return rpcerr.Internal(ctx, s.cfg.Logger, "ordersvc: "+op, err)
}

// reserveFailed reports whether a failed ReserveStock of an order attempt
// with idempotency key key (or "") may have reserved all the same, so that
// the attempt must give the stock back, and maps err to the caller's error.
//
// The caller's mistakes (FailedPrecondition, NotFound, InvalidArgument)
// reserved nothing and come back unchanged, message and details included,
// except a refusal of the reservation id itself (refusedReservation). A
// refused service token (PermissionDenied, Unauthenticated) reserved
// nothing either and is our fault: Internal. Any other failure (the product
// service unavailable, a reply lost after the work was done) may have
// reserved: Unavailable, or the status of ctx's end when ctx is done.
func (s *Service) reserveFailed(ctx context.Context, log *slog.Logger, err error, key string) (mayHold bool, _ error) {
	switch status.Code(err) {
	case codes.FailedPrecondition:
		if why, ok := reservationRefusal(err); ok {
			return false, refusedReservation(why, key)
		}
		return false, status.Convert(err).Err()
	case codes.NotFound, codes.InvalidArgument:
		return false, status.Convert(err).Err()
	case codes.PermissionDenied, codes.Unauthenticated:
		log.ErrorContext(ctx, "ordersvc: product service refused the service token", "err", err)
		return false, status.Error(codes.Internal, "internal error")
	}
	if ctx.Err() != nil {
		return true, status.FromContextError(ctx.Err()).Err()
	}
	log.WarnContext(ctx, "ordersvc: reserve stock", "err", err)
	return true, status.Error(codes.Unavailable, "product service unavailable, try again later")
}

// reservationRefusal reports whether err is a ReserveStock refusal of the
// reservation id itself, and which, as productsv1.ReservationRefusal
// defines it on the wire: a PreconditionFailure violation of the enum's
// violation_type ("RESERVATION") whose description is a value's
// violation_description. An unknown description is UNSPECIFIED.
func reservationRefusal(err error) (productsv1.ReservationRefusal, bool) {
	refusals := productsv1.ReservationRefusal(0).Descriptor()
	typ := proto.GetExtension(refusals.Options(), productsv1.E_ViolationType).(string)
	for _, d := range status.Convert(err).Details() {
		pf, ok := d.(*errdetails.PreconditionFailure)
		if !ok {
			continue
		}
		for _, v := range pf.GetViolations() {
			if v.GetType() != typ {
				continue
			}
			values := refusals.Values()
			for i := range values.Len() {
				if proto.GetExtension(values.Get(i).Options(), productsv1.E_ViolationDescription).(string) == v.GetDescription() {
					return productsv1.ReservationRefusal(values.Get(i).Number()), true
				}
			}
			return productsv1.ReservationRefusal_RESERVATION_REFUSAL_UNSPECIFIED, true
		}
	}
	return productsv1.ReservationRefusal_RESERVATION_REFUSAL_UNSPECIFIED, false
}

// refusedReservation is the caller's error for a reservation refused for its
// id: the order id, and so the reservation id, comes from the idempotency key.
func refusedReservation(why productsv1.ReservationRefusal, key string) error {
	if why == productsv1.ReservationRefusal_RESERVATION_REFUSAL_OTHER_ITEMS {
		return status.Error(codes.FailedPrecondition, "idempotency key already used for a different order")
	}
	if key != "" {
		return status.Error(codes.FailedPrecondition, "an earlier attempt with this idempotency key failed and was rolled back; place the order again with a new idempotency key")
	}
	return status.Error(codes.Aborted, "the stock reservation was rolled back, try again")
}
