package kafkatransport

import (
	"context"

	"google.golang.org/grpc"
)

// chainServer composes interceptors so that ics[0] is the outermost. It
// returns nil for none, which generated handlers treat as no interceptor.
func chainServer(ics []grpc.UnaryServerInterceptor) grpc.UnaryServerInterceptor {
	switch len(ics) {
	case 0:
		return nil
	case 1:
		return ics[0]
	}
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		var next func(i int) grpc.UnaryHandler
		next = func(i int) grpc.UnaryHandler {
			if i == len(ics) {
				return handler
			}
			return func(ctx context.Context, req any) (any, error) {
				return ics[i](ctx, req, info, next(i+1))
			}
		}
		return ics[0](ctx, req, info, next(1))
	}
}

// chainClient composes interceptors so that ics[0] is the outermost.
func chainClient(ics []grpc.UnaryClientInterceptor, final grpc.UnaryInvoker) grpc.UnaryInvoker {
	for i := len(ics) - 1; i >= 0; i-- {
		ic, next := ics[i], final
		final = func(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, opts ...grpc.CallOption) error {
			return ic(ctx, method, req, reply, cc, next, opts...)
		}
	}
	return final
}
