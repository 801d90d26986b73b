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

// RetryUnavailable returns a client interceptor that runs a call of a
// method with side effects again when it failed with Unavailable and
// carries an idempotency key (MetadataKey), so that a server with
// UnaryServerInterceptor runs it once whatever happens. It makes at most
// attempts runs (attempts < 2 disables it), waiting first, then twice as
// long each time, give or take a fifth, and never past the call's
// deadline: it then returns the last error. Other failures,
// DeadlineExceeded included, are returned at once.
//
// Calls of methods marked NO_SIDE_EFFECTS or IDEMPOTENT, and requests
// that never reached the broker, are retried by the transport's client
// itself (kafkatransport.RetryPolicy, on by default), inside each run of
// this interceptor: it leaves those methods alone, so that two layers do
// not multiply their attempts.
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

// retrySafe reports whether the call is one of a method with side effects
// that running again cannot repeat the effect of: it carries an
// idempotency key.
func retrySafe(ctx context.Context, method string) bool {
	if LevelOf(method) != descriptorpb.MethodOptions_IDEMPOTENCY_UNKNOWN {
		return false // the transport retries it
	}
	md, _ := metadata.FromOutgoingContext(ctx)
	vs := md.Get(MetadataKey)
	return len(vs) > 0 && vs[0] != ""
}
