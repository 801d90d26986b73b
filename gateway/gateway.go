package gateway

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/grpc-ecosystem/grpc-gateway/v2/runtime"
	rpccode "google.golang.org/genproto/googleapis/rpc/code"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"

	ordersv1 "github.com/kgrpc/platform/gen/shop/orders/v1"
	productsv1 "github.com/kgrpc/platform/gen/shop/products/v1"
	usersv1 "github.com/kgrpc/platform/gen/shop/users/v1"
	"github.com/kgrpc/platform/internal/auth"
)

// Config is what the gateway needs.
type Config struct {
	// Users, Products and Orders are the services' clients, normally the
	// generated Kafka clients.
	Users    usersv1.UserServiceClient
	Products productsv1.ProductServiceClient
	Orders   ordersv1.OrderServiceClient
	// Signer verifies bearer tokens before a request is forwarded.
	Signer *auth.Signer
	// Ping checks that the broker is reachable, for /readyz. Optional.
	Ping func(ctx context.Context) error
	// OpenAPI is served at /openapi.json.
	OpenAPI []byte
	// RequestTimeout bounds every API request, including its calls over
	// Kafka. Default: 10s.
	RequestTimeout time.Duration
	// MaxBodyBytes bounds request bodies. Default: 1 MiB.
	MaxBodyBytes int64
	// Logger logs one line per request. Default: discard.
	Logger *slog.Logger
}

// New returns the gateway's HTTP handler.
func New(ctx context.Context, cfg Config) (http.Handler, error) {
	if cfg.Users == nil || cfg.Products == nil || cfg.Orders == nil || cfg.Signer == nil {
		return nil, errors.New("gateway: Users, Products, Orders and Signer are required")
	}
	if cfg.RequestTimeout <= 0 {
		cfg.RequestTimeout = 10 * time.Second
	}
	if cfg.MaxBodyBytes <= 0 {
		cfg.MaxBodyBytes = 1 << 20
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	g := &gateway{cfg: cfg}
	g.mux = runtime.NewServeMux(
		runtime.WithMarshalerOption(runtime.MIMEWildcard, &runtime.JSONPb{
			MarshalOptions:   protojson.MarshalOptions{EmitUnpopulated: true},
			UnmarshalOptions: protojson.UnmarshalOptions{DiscardUnknown: false},
		}),
		runtime.WithErrorHandler(g.errorHandler),
		runtime.WithRoutingErrorHandler(g.routingErrorHandler),
		// Only Authorization (grpc-gateway forwards it as "authorization")
		// and Idempotency-Key become call metadata.
		runtime.WithIncomingHeaderMatcher(func(h string) (string, bool) {
			if strings.EqualFold(h, IdempotencyHeader) {
				return IdempotencyMetadataKey, true
			}
			return "", false
		}),
	)
	if err := usersv1.RegisterUserServiceHandlerClient(ctx, g.mux, cfg.Users); err != nil {
		return nil, fmt.Errorf("gateway: register users: %w", err)
	}
	if err := productsv1.RegisterProductServiceHandlerClient(ctx, g.mux, cfg.Products); err != nil {
		return nil, fmt.Errorf("gateway: register products: %w", err)
	}
	if err := ordersv1.RegisterOrderServiceHandlerClient(ctx, g.mux, cfg.Orders); err != nil {
		return nil, fmt.Errorf("gateway: register orders: %w", err)
	}
	if err := g.mux.HandlePath(http.MethodGet, "/v1/users/{id}/dashboard", g.dashboard); err != nil {
		return nil, fmt.Errorf("gateway: register dashboard: %w", err)
	}

	root := http.NewServeMux()
	root.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
	})
	root.HandleFunc("GET /readyz", g.readyz)
	root.HandleFunc("GET /openapi.json", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(cfg.OpenAPI)
	})
	root.Handle("/", g.authenticate(g.mux))
	return g.logRequests(root), nil
}

// IdempotencyHeader is the HTTP header a client may set on a POST so that
// retrying it does the work once; the gateway makes up a key for POSTs
// without one. It reaches services as IdempotencyMetadataKey metadata.
const IdempotencyHeader = "Idempotency-Key"

// IdempotencyMetadataKey is the gRPC metadata key of the idempotency key.
const IdempotencyMetadataKey = "idempotency-key"

func newIdempotencyKey() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return "gw-" + hex.EncodeToString(b[:])
}

type gateway struct {
	cfg Config
	mux *runtime.ServeMux
}

// authenticate verifies a bearer token, when the request has one, before
// anything is forwarded, and bounds the request's time and body size.
// Requests without a token go on: public routes need none, and the services
// refuse the others.
func (g *gateway) authenticate(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if h := r.Header.Get("Authorization"); h != "" {
			tok, ok := strings.CutPrefix(h, "Bearer ")
			if !ok {
				g.writeError(w, r, status.Error(codes.Unauthenticated, `authorization header must be "Bearer <token>"`))
				return
			}
			if _, err := g.cfg.Signer.Verify(strings.TrimSpace(tok)); err != nil {
				g.writeError(w, r, status.Error(codes.Unauthenticated, err.Error()))
				return
			}
		}
		if r.Method == http.MethodPost && r.Header.Get(IdempotencyHeader) == "" {
			// One key per HTTP request: if Kafka delivers the call twice
			// (a service instance crashed mid-call), the service sees the
			// same key and does the work once.
			r.Header.Set(IdempotencyHeader, newIdempotencyKey())
		}
		ctx, cancel := context.WithTimeout(r.Context(), g.cfg.RequestTimeout)
		defer cancel()
		r.Body = http.MaxBytesReader(w, r.Body, g.cfg.MaxBodyBytes)
		next.ServeHTTP(w, r.WithContext(ctx))
	})
}

// errorBody is the one JSON error format of the API.
type errorBody struct {
	Code    string            `json:"code"`
	Message string            `json:"message"`
	Details []json.RawMessage `json:"details"`
}

func (g *gateway) errorHandler(ctx context.Context, _ *runtime.ServeMux, _ runtime.Marshaler, w http.ResponseWriter, r *http.Request, err error) {
	g.writeError(w, r, err)
}

func (g *gateway) routingErrorHandler(ctx context.Context, _ *runtime.ServeMux, _ runtime.Marshaler, w http.ResponseWriter, r *http.Request, httpStatus int) {
	switch httpStatus {
	case http.StatusMethodNotAllowed:
		writeJSON(w, httpStatus, errorBody{Code: "UNIMPLEMENTED", Message: "method not allowed", Details: []json.RawMessage{}})
	case http.StatusNotFound:
		g.writeError(w, r, status.Errorf(codes.NotFound, "no route for %s %s", r.Method, r.URL.Path))
	default:
		g.writeError(w, r, status.Error(codes.InvalidArgument, http.StatusText(httpStatus)))
	}
}

// writeError writes err in the API's error format with the status code's
// HTTP status.
func (g *gateway) writeError(w http.ResponseWriter, r *http.Request, err error) {
	st := status.Convert(err)
	var mbe *http.MaxBytesError
	if errors.As(err, &mbe) {
		st = status.Newf(codes.InvalidArgument, "request body larger than %d bytes", mbe.Limit)
	}
	if ctxErr := r.Context().Err(); ctxErr != nil && st.Code() == codes.Unknown {
		st = status.FromContextError(ctxErr)
	}
	body := errorBody{Code: rpccode.Code(st.Code()).String(), Message: st.Message(), Details: []json.RawMessage{}}
	for _, d := range st.Proto().GetDetails() {
		if b, err := protojson.Marshal(d); err == nil {
			body.Details = append(body.Details, b)
		}
	}
	if st.Code() == codes.Unauthenticated {
		w.Header().Set("WWW-Authenticate", `Bearer realm="shop"`)
	}
	writeJSON(w, runtime.HTTPStatusFromCode(st.Code()), body)
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}

// readyz reports ready when the broker answers and every service answers a
// call (any status from the service itself counts; a transport failure or a
// timeout does not).
func (g *gateway) readyz(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), 3*time.Second)
	defer cancel()
	checks := map[string]func(context.Context) error{
		"users": func(ctx context.Context) error {
			_, err := g.cfg.Users.GetUser(ctx, &usersv1.GetUserRequest{Id: "readyz"})
			return answered(err)
		},
		"products": func(ctx context.Context) error {
			_, err := g.cfg.Products.GetProduct(ctx, &productsv1.GetProductRequest{Id: "readyz"})
			return answered(err)
		},
		"orders": func(ctx context.Context) error {
			_, err := g.cfg.Orders.GetOrder(ctx, &ordersv1.GetOrderRequest{Id: "readyz"})
			return answered(err)
		},
	}
	if g.cfg.Ping != nil {
		checks["broker"] = g.cfg.Ping
	}
	var mu sync.Mutex
	results := map[string]string{}
	var wg sync.WaitGroup
	for name, check := range checks {
		wg.Add(1)
		go func() {
			defer wg.Done()
			res := "ok"
			if err := check(ctx); err != nil {
				res = err.Error()
			}
			mu.Lock()
			results[name] = res
			mu.Unlock()
		}()
	}
	wg.Wait()
	code := http.StatusOK
	for _, res := range results {
		if res != "ok" {
			code = http.StatusServiceUnavailable
		}
	}
	writeJSON(w, code, map[string]any{"ready": code == http.StatusOK, "checks": results})
}

// answered turns the error of a readiness call into nil when the service
// itself answered.
func answered(err error) error {
	switch status.Code(err) {
	case codes.Unavailable, codes.DeadlineExceeded, codes.Canceled:
		return err
	}
	return nil
}

// statusRecorder remembers the status code written.
type statusRecorder struct {
	http.ResponseWriter
	code int
}

func (s *statusRecorder) WriteHeader(code int) {
	s.code = code
	s.ResponseWriter.WriteHeader(code)
}

// logRequests logs one line per request.
func (g *gateway) logRequests(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		rec := &statusRecorder{ResponseWriter: w, code: http.StatusOK}
		next.ServeHTTP(rec, r)
		g.cfg.Logger.Info("http request", "method", r.Method, "path", r.URL.Path, "status", rec.code, "duration", time.Since(start))
	})
}
