package gateway

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"time"

	"github.com/grpc-ecosystem/grpc-gateway/v2/runtime"
	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/protobuf/encoding/protojson"

	ordersv1 "github.com/kgrpc/platform/gen/shop/orders/v1"
	productsv1 "github.com/kgrpc/platform/gen/shop/products/v1"
	usersv1 "github.com/kgrpc/platform/gen/shop/users/v1"
	"github.com/kgrpc/platform/internal/auth"
	"github.com/kgrpc/platform/internal/telemetry"
	"github.com/kgrpc/platform/kafkatransport/breaker"
)

// Config is what the gateway needs.
type Config struct {
	// Users, Products and Orders are the services' clients, normally the
	// generated Kafka clients.
	Users    usersv1.UserServiceClient
	Products productsv1.ProductServiceClient
	Orders   ordersv1.OrderServiceClient
	// UsersHealth, ProductsHealth and OrdersHealth are the health clients
	// (grpc.health.v1) of the units serving Users, Products and Orders:
	// /readyz asks each whether its service is SERVING (see readyz).
	UsersHealth, ProductsHealth, OrdersHealth grpc_health_v1.HealthClient
	// Public reports whether anyone may call an RPC method (its full name,
	// "/shop.users.v1.UserService/Login") without a token; the gateway
	// refuses an anonymous request of any other 401 UNAUTHENTICATED before
	// decoding it (see refuseAnonymous). Normally internal/app's
	// PublicMethod, the services' own rule. Nil: anonymous requests go on
	// and the services decide.
	Public func(method string) bool
	// Verifier verifies bearer tokens before a request is forwarded, and
	// its keys are served at /.well-known/jwks.json.
	Verifier *auth.Verifier
	// Revoked, when set, reports why the tokens of user id at version are
	// revoked, or nil; a revoked token is refused 401.
	Revoked func(id string, version int64) error
	// Breaker, when not nil, is the breaker of the services' clients
	// (kafkatransport/breaker): /readyz shows its circuits. Optional.
	Breaker *breaker.Breaker
	// Ping checks that the broker is reachable, for /readyz. Optional.
	Ping func(ctx context.Context) error
	// Health are more /readyz checks by name, each nil when ready (the
	// revocation watch: "revocations"). Optional.
	Health map[string]func() error
	// OpenAPI is served at /openapi.json.
	OpenAPI []byte
	// RequestTimeout bounds every API request, including its calls over
	// Kafka, but streams. Default: 10s.
	RequestTimeout time.Duration
	// MaxStreamDuration bounds a streaming request (GET
	// /v1/orders/{id}:watch, POST /v1/products:import) instead: it lasts
	// until the stream ends, the client goes, this much time has passed
	// or the gateway stops. Default: 1h.
	MaxStreamDuration time.Duration
	// MaxStreamsPerUser bounds the streaming requests one user has open
	// at once; more answer 429 RESOURCE_EXHAUSTED. A stream holds a
	// server's stream slot (kafkatransport.WithMaxStreams) for as long as
	// it lasts, so one user must not take them all. Default:
	// DefaultMaxStreamsPerUser.
	MaxStreamsPerUser int
	// MaxBodyBytes bounds request bodies. Default: 1 MiB.
	MaxBodyBytes int64
	// MaxHeaderBytes bounds the request line and headers; more is 431.
	// Default: DefaultMaxHeaderBytes. The http.Server's MaxHeaderBytes
	// must be larger.
	MaxHeaderBytes int
	// Logger logs one line per request. Default: discard.
	Logger *slog.Logger
	// CORSOrigins are the browser origins allowed to call the API
	// ("https://shop.example.com", or "*" for any). Default: none.
	CORSOrigins []string
	// AuthRateLimit is how many login and registration attempts each
	// client address, and each email, may make a minute (in bursts of as
	// many); more are 429 with Retry-After. Zero means no limit.
	AuthRateLimit int
	// TracerProvider, when not nil, makes a server span of each request,
	// continuing the trace of an incoming traceparent; Propagator reads
	// it (nil: W3C trace context and baggage).
	TracerProvider trace.TracerProvider
	Propagator     propagation.TextMapPropagator
	// Metrics, when not nil, registers the gateway's HTTP metrics
	// (http_requests_total, http_request_duration_seconds).
	Metrics prometheus.Registerer
}

// gateway holds what the handlers of its own endpoints (readiness, the
// dashboard) need.
type gateway struct {
	cfg Config
	mux *runtime.ServeMux
}

// New returns the gateway's HTTP handler.
func New(ctx context.Context, cfg Config) (http.Handler, error) {
	if cfg.Users == nil || cfg.Products == nil || cfg.Orders == nil || cfg.Verifier == nil {
		return nil, errors.New("gateway: Users, Products, Orders and Verifier are required")
	}
	if cfg.UsersHealth == nil || cfg.ProductsHealth == nil || cfg.OrdersHealth == nil {
		return nil, errors.New("gateway: UsersHealth, ProductsHealth and OrdersHealth are required")
	}
	if cfg.RequestTimeout <= 0 {
		cfg.RequestTimeout = 10 * time.Second
	}
	if cfg.MaxStreamDuration <= 0 {
		cfg.MaxStreamDuration = time.Hour
	}
	if cfg.MaxStreamsPerUser <= 0 {
		cfg.MaxStreamsPerUser = DefaultMaxStreamsPerUser
	}
	if cfg.MaxBodyBytes <= 0 {
		cfg.MaxBodyBytes = 1 << 20
	}
	if cfg.MaxHeaderBytes <= 0 {
		cfg.MaxHeaderBytes = DefaultMaxHeaderBytes
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Propagator == nil {
		cfg.Propagator = telemetry.Propagator
	}

	mux := runtime.NewServeMux(
		runtime.WithMarshalerOption(runtime.MIMEWildcard, newlineJSON{&runtime.JSONPb{
			MarshalOptions:   protojson.MarshalOptions{EmitUnpopulated: true},
			UnmarshalOptions: protojson.UnmarshalOptions{DiscardUnknown: false},
		}}),
		runtime.WithErrorHandler(errorHandler),
		runtime.WithRoutingErrorHandler(routingErrorHandler),
		// grpc-gateway adds x-forwarded-host and x-forwarded-for; of the
		// headers, only Idempotency-Key is forwarded (verifyBearer removes
		// Authorization, which grpc-gateway would forward by itself), and
		// callMetadata adds the request id and the verified user
		// (auth.PrincipalKey).
		runtime.WithIncomingHeaderMatcher(idempotencyHeaderMatcher),
		runtime.WithMetadata(callMetadata(cfg.Public)),
		runtime.WithMiddlewares(recordRoute, refuseAnonymous),
		runtime.WithOutgoingHeaderMatcher(responseHeaderMatcher),
		// No POST form of GET routes (grpc-gateway's path-length
		// fallback): a POST .../{id}:watch would not be a stream to the
		// middlewares that bound streams (isStream).
		runtime.WithDisablePathLengthFallback(),
	)
	for _, svc := range []struct {
		name     string
		register func(context.Context, *runtime.ServeMux) error
	}{
		{"users", func(ctx context.Context, mux *runtime.ServeMux) error {
			return usersv1.RegisterUserServiceHandlerClient(ctx, mux, cfg.Users)
		}},
		{"products", func(ctx context.Context, mux *runtime.ServeMux) error {
			return productsv1.RegisterProductServiceHandlerClient(ctx, mux, cfg.Products)
		}},
		{"orders", func(ctx context.Context, mux *runtime.ServeMux) error {
			return ordersv1.RegisterOrderServiceHandlerClient(ctx, mux, cfg.Orders)
		}},
	} {
		if err := svc.register(ctx, mux); err != nil {
			return nil, fmt.Errorf("gateway: register %s: %w", svc.name, err)
		}
	}
	g := &gateway{cfg: cfg, mux: mux}
	// Registered after grpc-gateway's handler of the route, so it is the
	// one the mux picks: decode every line before sending any.
	if err := mux.HandlePath(http.MethodPost, importPath, g.importProducts); err != nil {
		return nil, fmt.Errorf("gateway: register import: %w", err)
	}
	if err := mux.HandlePath(http.MethodGet, "/v1/users/{id}/dashboard", g.dashboard); err != nil {
		return nil, fmt.Errorf("gateway: register dashboard: %w", err)
	}

	root := http.NewServeMux()
	root.HandleFunc("GET /healthz", healthz)
	root.HandleFunc("GET /readyz", g.readyz)
	root.Handle("GET /openapi.json", serveOpenAPI(cfg.OpenAPI))
	docsPage, docsAssets := serveDocs()
	root.Handle("GET /docs", docsPage)
	root.Handle("GET /docs/", docsAssets)
	root.Handle("GET /.well-known/jwks.json", serveJWKS(cfg.Verifier))
	// The API's middlewares, outermost first.
	root.Handle("/", chain(mux,
		limitHeaders(cfg.MaxHeaderBytes),        // 431 in the JSON error format
		validUTF8,                               // %ff in a path or query: 400 before routing
		verifyBearer(cfg.Verifier, cfg.Revoked), // a bad token is refused here; none goes on
		limitStreams(cfg.MaxStreamsPerUser),     // a user's open streams
		addIdempotencyKey,                       // one made-up key per POST, PATCH, DELETE without one
		withTimeout(ctx, cfg.RequestTimeout, cfg.MaxStreamDuration), // bounds the request and its calls
		bodyDeadline(cfg.RequestTimeout),                            // and the reading of its body
		limitBody(cfg.MaxBodyBytes),
		rateLimitAuth(cfg.AuthRateLimit), // reads the email of the bounded body
	))
	var metrics *httpMetrics
	if cfg.Metrics != nil {
		var err error
		if metrics, err = newHTTPMetrics(cfg.Metrics); err != nil {
			return nil, fmt.Errorf("gateway: register metrics: %w", err)
		}
	}
	outer := []func(http.Handler) http.Handler{withRoute}
	if cfg.TracerProvider != nil {
		outer = append(outer, traceHTTP(cfg.TracerProvider, cfg.Propagator))
	}
	outer = append(outer, measure(metrics), logRequests(cfg.Logger), securityHeaders, cors(cfg.CORSOrigins))
	return chain(routeOfRoot(root), outer...), nil
}

// newlineJSON is grpc-gateway's JSON marshaler with a newline after every
// message, as the gateway's own JSON (errors, the dashboard) has: a body
// ends with one, and a stream is newline-delimited JSON with no separator
// beside it.
type newlineJSON struct{ *runtime.JSONPb }

// Marshal implements runtime.Marshaler.
func (m newlineJSON) Marshal(v any) ([]byte, error) {
	b, err := m.JSONPb.Marshal(v)
	if err != nil {
		return nil, err
	}
	return append(b, '\n'), nil
}

// Delimiter implements runtime.Delimited: Marshal ends each message of a
// stream already.
func (newlineJSON) Delimiter() []byte { return nil }

// errTrailingData is the error of a request body with more than one JSON
// value.
var errTrailingData = errors.New("unexpected data after the JSON object in the request body")

// NewDecoder implements runtime.Marshaler: a request body is one JSON value,
// and anything but white space after it is an error (errTrailingData)
// rather than ignored, as grpc-gateway's decoder would.
func (m newlineJSON) NewDecoder(r io.Reader) runtime.Decoder {
	dw, ok := m.JSONPb.NewDecoder(r).(runtime.DecoderWrapper)
	if !ok {
		return m.JSONPb.NewDecoder(r)
	}
	return runtime.DecoderFunc(func(v any) error {
		if err := dw.Decode(v); err != nil {
			return err
		}
		return onlySpace(io.MultiReader(dw.Buffered(), r))
	})
}

// onlySpace reads r to its end and fails with errTrailingData at its first
// byte that is not JSON white space, or with r's error.
func onlySpace(r io.Reader) error {
	var buf [512]byte
	for {
		n, err := r.Read(buf[:])
		for _, c := range buf[:n] {
			if c != ' ' && c != '\t' && c != '\n' && c != '\r' {
				return errTrailingData
			}
		}
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
	}
}
