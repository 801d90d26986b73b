package telemetry

import (
	"context"

	middleware "github.com/grpc-ecosystem/go-grpc-middleware/v2"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"
)

// A unit whose spans are not exported carries the trace context across
// its calls with two interceptors instead of otelgrpc's stats handlers, so
// that the log lines of every hop share one trace id: the client sends the
// caller's span context as traceparent metadata (carryClient) and the
// server continues it as a remote parent (carryServer). otelgrpc would
// start, name and attribute a span per call only for it to be dropped, and
// a stats handler makes the transport report every call's stats events:
// about a tenth of a service's allocations per call.

// carryClient sends the caller's trace context with the call.
func carryClient(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
	return invoker(injectTrace(ctx), method, req, reply, cc, opts...)
}

// carryServer runs the handler in the caller's trace context.
func carryServer(ctx context.Context, req any, _ *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	return handler(extractTrace(ctx), req)
}

// carryClientStream is carryClient for streams.
func carryClientStream(ctx context.Context, desc *grpc.StreamDesc, cc *grpc.ClientConn, method string, streamer grpc.Streamer, opts ...grpc.CallOption) (grpc.ClientStream, error) {
	return streamer(injectTrace(ctx), desc, cc, method, opts...)
}

// carryServerStream is carryServer for streams.
func carryServerStream(srv any, ss grpc.ServerStream, _ *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
	w := middleware.WrapServerStream(ss)
	w.WrappedContext = extractTrace(ss.Context())
	return handler(srv, w)
}

// injectTrace returns ctx with the traceparent (and tracestate) of its
// span context added to the outgoing metadata; ctx as it is without one.
func injectTrace(ctx context.Context) context.Context {
	if !trace.SpanContextFromContext(ctx).IsValid() {
		return ctx
	}
	md := metadata.MD{}
	Propagator.Inject(ctx, metadataCarrier{md})
	kv := make([]string, 0, 2*len(md))
	for k, vs := range md {
		for _, v := range vs {
			kv = append(kv, k, v)
		}
	}
	return metadata.AppendToOutgoingContext(ctx, kv...)
}

// extractTrace returns ctx continuing the trace context of its incoming
// traceparent metadata, if it has one that parses.
func extractTrace(ctx context.Context) context.Context {
	vs := metadata.ValueFromIncomingContext(ctx, "traceparent")
	if len(vs) != 1 {
		return ctx
	}
	md := metadata.MD{"traceparent": vs}
	if ts := metadata.ValueFromIncomingContext(ctx, "tracestate"); len(ts) > 0 {
		md["tracestate"] = ts
	}
	return Propagator.Extract(ctx, metadataCarrier{md})
}

// metadataCarrier adapts metadata to the propagator.
type metadataCarrier struct{ md metadata.MD }

var _ propagation.TextMapCarrier = metadataCarrier{}

func (c metadataCarrier) Get(key string) string {
	if v := c.md.Get(key); len(v) > 0 {
		return v[0]
	}
	return ""
}

func (c metadataCarrier) Set(key, value string) { c.md.Set(key, value) }

func (c metadataCarrier) Keys() []string {
	keys := make([]string, 0, len(c.md))
	for k := range c.md {
		keys = append(keys, k)
	}
	return keys
}
