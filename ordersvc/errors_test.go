package ordersvc

import (
	"testing"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	productsv1 "github.com/kgrpc/platform/gen/shop/products/v1"
)

// The refusals as the product service puts them on the wire (literal
// strings, so a change of the proto's options that changes the wire fails
// here).
func TestReservationRefusal(t *testing.T) {
	violation := func(typ, desc string) error {
		st, err := status.New(codes.FailedPrecondition, "refused").WithDetails(&errdetails.PreconditionFailure{
			Violations: []*errdetails.PreconditionFailure_Violation{{Type: typ, Subject: "o_1", Description: desc}}})
		if err != nil {
			t.Fatal(err)
		}
		return st.Err()
	}
	tests := []struct {
		name   string
		err    error
		want   productsv1.ReservationRefusal
		wantOK bool
		// The caller's answer without and with an idempotency key.
		wantCode, wantKeyedCode codes.Code
	}{
		{"released", violation("RESERVATION", "released"), productsv1.ReservationRefusal_RESERVATION_REFUSAL_RELEASED, true, codes.Aborted, codes.FailedPrecondition},
		{"other items", violation("RESERVATION", "other items"), productsv1.ReservationRefusal_RESERVATION_REFUSAL_OTHER_ITEMS, true, codes.FailedPrecondition, codes.FailedPrecondition},
		{"unknown reason", violation("RESERVATION", "gone fishing"), productsv1.ReservationRefusal_RESERVATION_REFUSAL_UNSPECIFIED, true, codes.Aborted, codes.FailedPrecondition},
		{"short stock", violation("STOCK", "requested 2, available 1"), 0, false, 0, 0},
		{"no details", status.Error(codes.FailedPrecondition, "refused"), 0, false, 0, 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, ok := reservationRefusal(tc.err)
			if got != tc.want || ok != tc.wantOK {
				t.Fatalf("reservationRefusal = %v, %v; want %v, %v", got, ok, tc.want, tc.wantOK)
			}
			if !ok {
				return
			}
			if c := status.Code(refusedReservation(got, "")); c != tc.wantCode {
				t.Errorf("without a key: %v, want %v", c, tc.wantCode)
			}
			if c := status.Code(refusedReservation(got, "k")); c != tc.wantKeyedCode {
				t.Errorf("with a key: %v, want %v", c, tc.wantKeyedCode)
			}
		})
	}
}
