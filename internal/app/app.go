package app

import (
	"cmp"
	"context"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"buf.build/go/protovalidate"
	middleware "github.com/grpc-ecosystem/go-grpc-middleware/v2"
	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	ordersv1 "github.com/kgrpc/platform/gen/shop/orders/v1"
	productsv1 "github.com/kgrpc/platform/gen/shop/products/v1"
	usersv1 "github.com/kgrpc/platform/gen/shop/users/v1"
	"github.com/kgrpc/platform/internal/auth"
	"github.com/kgrpc/platform/internal/telemetry"
	"github.com/kgrpc/platform/kafkatransport"
	"github.com/kgrpc/platform/kafkatransport/breaker"
	"github.com/kgrpc/platform/kafkatransport/idempotency"
	"github.com/kgrpc/platform/kafkatransport/kafkaprom"
	"github.com/kgrpc/platform/kafkatransport/validate"
)

// Common is what every unit needs.
type Common struct {
	// Brokers is the Kafka bootstrap list.
	Brokers string
	// Trust holds the keys of the units the process runs and the keyring
	// of every unit's public keys.
	Trust Trust
	// Logger is the root logger; each unit adds its name.
	Logger *slog.Logger
	// Kafka are extra transport options for every unit (librdkafka
	// settings, topic prefix, instance id).
	Kafka []kafkatransport.Option
	// Partitions is the partition count of the request and event topics a
	// unit creates when they are missing; 0 means
	// kafkatransport.DefaultPartitions.
	Partitions int
	// Client are extra transport options for the units that make calls
	// (the reply partition).
	Client []kafkatransport.ClientOption
	// Telemetry, when not nil, traces and measures every unit: their
	// spans, /metrics and trace ids in log lines. Nil means none.
	Telemetry *telemetry.Telemetry
}

// unitEnv is what a unit's parts share: its logger and the transport
// options of every role it creates.
type unitEnv struct {
	log   *slog.Logger
	kafka kafkatransport.Option
	// secret derives the unit's own secrets (trust.UnitKey.Secret).
	secret func(label string) []byte
	// tel instruments the unit; nil without Common.Telemetry.
	tel *telemetry.Unit
}

// unit returns the environment of the unit named name: a logger naming it,
// and transport options with that logger, the unit's Guard (its records
// are sealed and signed with its keys, and it acts only on records the
// Policy lets their producers produce) and c.Kafka.
func (c Common) unit(name string) (unitEnv, error) {
	log := c.Logger.With("unit", name)
	g, err := c.Trust.guard(name)
	if err != nil {
		return unitEnv{}, err
	}
	opts := append([]kafkatransport.Option{kafkatransport.WithLogger(log), kafkatransport.WithGuard(g)}, c.Kafka...)
	var tel *telemetry.Unit
	if c.Telemetry != nil {
		if tel, err = c.Telemetry.Unit(context.Background(), name); err != nil {
			return unitEnv{}, err
		}
		opts = append(opts, tel.Transport())
	}
	return unitEnv{log: log, kafka: kafkatransport.WithOptions(opts...), secret: c.Trust.Keys[name].Secret, tel: tel}, nil
}

// publisherOptions and subscriberOptions return the options of the unit's
// publishers and subscribers: the unit's, its topics' and, with
// telemetry, the spans of its events.
func (c Common) publisherOptions(u unitEnv) []kafkatransport.PublisherOption {
	opts := []kafkatransport.PublisherOption{u.kafka, c.topicOptions()}
	if u.tel != nil {
		opts = append(opts, u.tel.Events())
	}
	return opts
}

func (c Common) subscriberOptions(u unitEnv) []kafkatransport.SubscriberOption {
	opts := []kafkatransport.SubscriberOption{u.kafka, c.topicOptions()}
	if u.tel != nil {
		opts = append(opts, u.tel.Events())
	}
	return opts
}

// topicOptions returns the partition count of the topics a server,
// publisher or subscriber creates.
func (c Common) topicOptions() kafkatransport.TopicOption {
	return kafkatransport.WithPartitions(cmp.Or(c.Partitions, kafkatransport.DefaultPartitions))
}

// clientOptions returns the transport options of a unit's client: with
// telemetry, its spans and metrics outermost; then, when b is not nil, the
// breaker, which fails calls at once while their service's circuit is open
// or too many of its calls are in flight; then the retry of calls of
// methods with side effects that carry an idempotency key and fail
// Unavailable: up to twice, after about 100ms and 200ms, within their
// deadline (idempotency.RetryUnavailable). Below the interceptors, the
// transport retries, within the deadline, what else is safe to run again:
// requests that never reached the broker, reads and idempotent methods
// that failed Unavailable, and reads that got no reply within a second
// (hedged to another instance's partition), by
// kafkatransport.DefaultRetryPolicy.
//
// The breaker is outside every retry on purpose: a call counts once toward
// its circuit, after its retries (three quick Unavailables of one call are
// one failure, not three), it holds its in-flight slot while it retries,
// and a refusal (itself Unavailable) is not retried after 100ms and 200ms
// waits, which would undo failing fast.
func (c Common) clientOptions(u unitEnv, b *breaker.Breaker) []kafkatransport.ClientOption {
	opts := []kafkatransport.ClientOption{u.kafka}
	if u.tel != nil {
		opts = append(opts, u.tel.Client()...) // outermost: one grpc_client_handled_total per call
	}
	if b != nil {
		opts = append(opts, kafkatransport.WithUnaryClientInterceptors(b.UnaryClientInterceptor()),
			kafkatransport.WithStreamClientInterceptors(b.StreamClientInterceptor()))
	}
	opts = append(opts, kafkatransport.WithUnaryClientInterceptors(idempotency.RetryUnavailable(3, 100*time.Millisecond)))
	return append(opts, c.Client...)
}

// newBreaker returns the breaker of a unit's client, with at most
// maxInFlight calls in flight per service (0: breaker.DefaultMaxInFlight)
// and the other settings' defaults. It logs each change of a circuit's
// state and, with telemetry, exports the circuits' states
// (kafkaprom.NewCircuits).
func newBreaker(u unitEnv, maxInFlight int) (*breaker.Breaker, error) {
	log := u.log
	b, err := breaker.New(breaker.WithMaxInFlight(cmp.Or(maxInFlight, breaker.DefaultMaxInFlight)),
		breaker.WithStateChange(func(service string, from, to breaker.State) {
			level := slog.LevelInfo
			if to == breaker.StateOpen {
				level = slog.LevelWarn
			}
			log.Log(context.Background(), level, "circuit "+to.String(), "service", service, "from", from.String())
		}))
	if err != nil {
		return nil, err
	}
	if u.tel != nil {
		if err := u.tel.Registerer.Register(kafkaprom.NewCircuits(b)); err != nil {
			return nil, fmt.Errorf("register circuit metrics: %w", err)
		}
	}
	return b, nil
}

// newServer returns a transport server with the shop's interceptors: with
// telemetry, its spans and metrics outermost; then the request id for log
// lines, call logging, then the caller's identity (the unit that produced
// the request, and the user the gateway names, refused when rev knows the
// user's token revoked), then the request's buf.validate rules (an
// invalid request is InvalidArgument with every violation), then
// exactly-once effect
// for methods with side effects, with outcomes kept in idem, keys scoped
// to the caller and fingerprints keyed with a secret of the unit (a
// CreateUser's fingerprint then tells nothing about its password).
func (c Common) newServer(u unitEnv, idem idempotency.Store, rev *auth.Revocations, rules protovalidate.Validator) (*kafkatransport.Server, error) {
	opts := []kafkatransport.ServerOption{u.kafka, c.topicOptions()}
	if u.tel != nil {
		opts = append(opts, u.tel.Server()...) // outermost: every request counted
	}
	authCfg := auth.InterceptorConfig{Asserters: []string{UnitGateway}, Revoked: rev.Revoked, Public: PublicMethod, Admin: adminMethod}
	opts = append(opts, kafkatransport.WithUnaryServerInterceptors(requestID, logCalls(u.log),
		auth.UnaryServerInterceptor(authCfg),
		validate.UnaryServerInterceptor(rules),
		idempotency.UnaryServerInterceptor(idem, idempotency.WithScope(callerScope), idempotency.WithLogger(u.log),
			idempotency.WithFingerprintKey(u.secret("idempotency-fingerprint")))))
	// Streams get the same, but for idempotency, which keys one request
	// and its answer: WatchOrder is a read, and ImportProducts, whose items
	// each create or set a product by SKU, is safe to run again.
	opts = append(opts, kafkatransport.WithStreamServerInterceptors(requestIDStream, logStreams(u.log), auth.StreamServerInterceptor(authCfg),
		validate.StreamServerInterceptor(rules)))
	return kafkatransport.NewServer(c.Brokers, opts...)
}

// PublicMethod reports whether anyone may call method without a user or a
// unit: registration, login, the catalogue, and every unit's health and
// reflection services. Any other call without one is Unauthenticated
// before its request is validated or its handler runs.
func PublicMethod(method string) bool {
	switch method {
	case usersv1.UserService_CreateUser_FullMethodName, usersv1.UserService_Login_FullMethodName,
		productsv1.ProductService_GetProduct_FullMethodName, productsv1.ProductService_ListProducts_FullMethodName:
		return true
	}
	return strings.HasPrefix(method, "/grpc.health.v1.Health/") || strings.HasPrefix(method, "/grpc.reflection.")
}

// adminMethod reports whether method is for admins only, whoever calls it:
// any other caller gets the handler's own RequireAdmin error
// (PermissionDenied "admin role required") before its request is validated,
// so a customer is told it may not call the method, not what is wrong with
// the request. Methods for "admins or the owner" (GetUser, CancelOrder...)
// and for "the service or admin roles" (ReserveStock, ReleaseStock) are
// left to their handlers.
func adminMethod(method string) bool {
	switch method {
	case usersv1.UserService_ListUsers_FullMethodName,
		productsv1.ProductService_CreateProduct_FullMethodName, productsv1.ProductService_UpdateProduct_FullMethodName,
		productsv1.ProductService_DeleteProduct_FullMethodName, productsv1.ProductService_AdjustStock_FullMethodName,
		productsv1.ProductService_ImportProducts_FullMethodName,
		ordersv1.OrderService_UpdateOrderStatus_FullMethodName:
		return true
	}
	return false
}

// requestIDStream is requestID for streams.
func requestIDStream(srv any, ss grpc.ServerStream, _ *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
	ctx := ss.Context()
	if v := metadata.ValueFromIncomingContext(ctx, telemetry.RequestIDMetadata); len(v) == 1 {
		w := middleware.WrapServerStream(ss)
		w.WrappedContext = telemetry.WithRequestID(ctx, v[0])
		ss = w
	}
	return handler(srv, ss)
}

// logStreams is logCalls for streams: one line when a stream ends.
func logStreams(logger *slog.Logger) grpc.StreamServerInterceptor {
	return func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
		start := time.Now()
		err := handler(srv, ss)
		logCall(ss.Context(), logger, info.FullMethod, err, start)
		return err
	}
}

// requestID puts the request id the gateway passes as "x-request-id"
// metadata into the handler's context, for its log lines.
func requestID(ctx context.Context, req any, _ *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	// ValueFromIncomingContext, not FromIncomingContext: no copy of the
	// whole metadata per call.
	if v := metadata.ValueFromIncomingContext(ctx, telemetry.RequestIDMetadata); len(v) == 1 {
		ctx = telemetry.WithRequestID(ctx, v[0])
	}
	return handler(ctx, req)
}

// callerScope scopes idempotency keys to the verified caller: the user's
// id or the calling unit's name, or "" for anonymous calls (CreateUser).
func callerScope(ctx context.Context) string {
	c, _ := auth.FromContext(ctx)
	return c.Subject
}

// logCalls logs every call at debug level, and failures with a server-side
// code (Internal, Unknown, DataLoss) at error level.
func logCalls(logger *slog.Logger) grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		start := time.Now()
		resp, err := handler(ctx, req)
		logCall(ctx, logger, info.FullMethod, err, start)
		return resp, err
	}
}

// logCall logs one call or stream that began at start and ended with err.
func logCall(ctx context.Context, logger *slog.Logger, method string, err error, start time.Time) {
	st := status.Convert(err)
	level := slog.LevelDebug
	switch st.Code().String() {
	case "Internal", "Unknown", "DataLoss":
		level = slog.LevelError
	}
	logger.Log(ctx, level, "rpc", "method", method, "code", st.Code().String(), "duration", time.Since(start))
}

// PinReplyPartition adds the reply partition p to c's client options unless
// it is negative (random).
func (c *Common) PinReplyPartition(p int) {
	if p >= 0 {
		c.Client = append(c.Client, kafkatransport.WithReplyPartition(int32(p)))
	}
}
