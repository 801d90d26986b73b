package idempotency

import (
	"context"
	"math/rand/v2"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/descriptorpb"
)

// RetryUnavailable returns a client interceptor that runs a call again
// when it failed with Unavailable and running it again is safe: its method
// is marked NO_SIDE_EFFECTS or IDEMPOTENT, or the call carries an
// idempotency key (MetadataKey), so that a server with
// UnaryServerInterceptor runs it once whatever happens. It makes at most
// attempts runs (attempts < 2 disables it), waiting first, then twice as
// long each time, give or take a fifth, and never past the call's
// deadline: it then returns the last error. Other failures, DeadlineExceeded
// included, are returned at once.
func RetryUnavailable(attempts int, first time.Duration) grpc.UnaryClientInterceptor {
	return func(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
		err := invoker(ctx, method, req, reply, cc, opts...)
		if attempts < 2 || status.Code(err) != codes.Unavailable || !retrySafe(ctx, method) {
			return err
		}
		wait := first
		for n := 1; n < attempts && status.Code(err) == codes.Unavailable; n++ {
			jittered := wait - wait/5 + rand.N(wait/5*2+1)
			if d, ok := ctx.Deadline(); ok && time.Until(d) < jittered {
				return err
			}
			t := time.NewTimer(jittered)
			select {
			case <-t.C:
			case <-ctx.Done():
				t.Stop()
				return err
			}
			err = invoker(ctx, method, req, reply, cc, opts...)
			wait *= 2
		}
		return err
	}
}

// retrySafe reports whether running the call again cannot repeat an
// effect.
func retrySafe(ctx context.Context, method string) bool {
	if LevelOf(method) != descriptorpb.MethodOptions_IDEMPOTENCY_UNKNOWN {
		return true
	}
	md, _ := metadata.FromOutgoingContext(ctx)
	vs := md.Get(MetadataKey)
	return len(vs) > 0 && vs[0] != ""
}
