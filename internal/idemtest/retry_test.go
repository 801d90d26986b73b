package idemtest_test

import (
	"context"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/kgrpc/platform/kafkatransport/idempotency"
)

func TestRetryUnavailable(t *testing.T) {
	const (
		read  = "/shop.products.v1.ProductService/GetProduct"
		write = "/shop.products.v1.ProductService/AdjustStock"
	)
	keyed := metadata.AppendToOutgoingContext(context.Background(), idempotency.MetadataKey, "k")
	tests := []struct {
		name     string
		ctx      context.Context
		method   string
		failures []codes.Code // what the runs answer, then OK
		want     int          // runs
		wantCode codes.Code
	}{
		{"read left to the transport", context.Background(), read, []codes.Code{codes.Unavailable}, 1, codes.Unavailable},
		{"read with a key left to the transport", keyed, read, []codes.Code{codes.Unavailable}, 1, codes.Unavailable},
		{"write without a key runs once", context.Background(), write, []codes.Code{codes.Unavailable}, 1, codes.Unavailable},
		{"write with a key is retried", keyed, write, []codes.Code{codes.Unavailable}, 2, codes.OK},
		{"write with a key retried until it answers", keyed, write, []codes.Code{codes.Unavailable, codes.Unavailable}, 3, codes.OK},
		{"write with a key gives up after the attempts", keyed, write, []codes.Code{codes.Unavailable, codes.Unavailable, codes.Unavailable, codes.Unavailable}, 3, codes.Unavailable},
		{"other codes are not retried", context.Background(), read, []codes.Code{codes.DeadlineExceeded}, 1, codes.DeadlineExceeded},
		{"internal is not retried", keyed, write, []codes.Code{codes.Internal}, 1, codes.Internal},
	}
	retry := idempotency.RetryUnavailable(3, time.Millisecond)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			runs := 0
			invoker := func(context.Context, string, any, any, *grpc.ClientConn, ...grpc.CallOption) error {
				runs++
				if runs <= len(tt.failures) {
					return status.Error(tt.failures[runs-1], "no")
				}
				return nil
			}
			err := retry(tt.ctx, tt.method, nil, nil, nil, invoker)
			if runs != tt.want || status.Code(err) != tt.wantCode {
				t.Errorf("%d runs, %v; want %d runs, %v", runs, err, tt.want, tt.wantCode)
			}
		})
	}
	t.Run("never past the deadline", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(keyed, 50*time.Millisecond)
		defer cancel()
		runs := 0
		err := idempotency.RetryUnavailable(5, time.Second)(ctx, write, nil, nil, nil,
			func(context.Context, string, any, any, *grpc.ClientConn, ...grpc.CallOption) error {
				runs++
				return status.Error(codes.Unavailable, "no")
			})
		if runs != 1 || status.Code(err) != codes.Unavailable {
			t.Errorf("%d runs, %v; want 1 run: a 1s wait does not fit in 50ms", runs, err)
		}
	})
}
