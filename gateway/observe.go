package gateway

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/grpc-ecosystem/grpc-gateway/v2/runtime"
	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	semconv "go.opentelemetry.io/otel/semconv/v1.40.0"
	"go.opentelemetry.io/otel/trace"

	"github.com/kgrpc/platform/internal/telemetry"
)

// RequestIDHeader is the header that names a request: the gateway keeps a
// caller's (up to 128 printable ASCII characters), makes one otherwise,
// echoes it on the response, adds it to its log lines as request_id and
// passes it to the services it calls as "x-request-id" metadata.
const RequestIDHeader = "X-Request-Id"

// traceHTTP makes the server span of each request with tp, continuing the
// trace of an incoming traceparent header, except for probes. The span
// follows the semantic conventions for HTTP servers and is named after the
// route ("GET /v1/products/{id}"); withRoute must run before it. It is
// leaner than otelhttp's handler, which measured twice its cost here (no
// body or writer wrappers beyond the status, no metrics: Prometheus has
// them).
func traceHTTP(tp trace.TracerProvider, prop propagation.TextMapPropagator) func(http.Handler) http.Handler {
	tracer := tp.Tracer("github.com/kgrpc/platform/gateway")
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if probes[r.URL.Path] {
				next.ServeHTTP(w, r)
				return
			}
			ctx := prop.Extract(r.Context(), propagation.HeaderCarrier(r.Header))
			scheme := "http"
			if r.TLS != nil {
				scheme = "https"
			}
			method := methodLabel(r.Method)
			ctx, span := tracer.Start(ctx, method, trace.WithSpanKind(trace.SpanKindServer))
			defer span.End()
			recording := span.IsRecording() // a span that is not (no exporter) only carries ids: skip the rest
			if recording {
				attrs := []attribute.KeyValue{semconv.HTTPRequestMethodKey.String(method), semconv.URLScheme(scheme), semconv.URLPath(r.URL.Path),
					semconv.NetworkProtocolVersion(fmt.Sprintf("%d.%d", r.ProtoMajor, r.ProtoMinor))}
				if host, _, err := net.SplitHostPort(r.RemoteAddr); err == nil {
					attrs = append(attrs, semconv.ClientAddress(host))
				}
				if ua := r.UserAgent(); ua != "" {
					attrs = append(attrs, semconv.UserAgentOriginal(ua))
				}
				if id, ok := telemetry.RequestID(r.Context()); ok {
					attrs = append(attrs, semconv.HTTPRequestHeader("x-request-id", id))
				}
				span.SetAttributes(attrs...)
			}
			next.ServeHTTP(w, r.WithContext(ctx))
			if !recording {
				return
			}
			if route := *routeOf(r); routeFound(route) {
				span.SetName(method + " " + route)
				span.SetAttributes(semconv.HTTPRoute(route))
			}
			code := statusOf(r)
			span.SetAttributes(semconv.HTTPResponseStatusCode(code))
			if code >= 500 {
				span.SetStatus(codes.Error, http.StatusText(code))
			}
		})
	}
}

// probes are the paths of probes and scrapers, which get no spans: made
// every few seconds, they would bury the traces of calls.
var probes = map[string]bool{"/healthz": true, "/readyz": true, "/metrics": true}

// requestIDOf returns the request's id (RequestIDHeader): the caller's
// when valid, else a new one, written to the request's header.
func requestIDOf(r *http.Request) string {
	id := r.Header.Get(RequestIDHeader)
	if !validRequestID(id) {
		var b [16]byte
		_, _ = rand.Read(b[:])
		id = hex.EncodeToString(b[:])
		r.Header.Set(RequestIDHeader, id)
	}
	return id
}

// validRequestID accepts up to 128 printable ASCII characters.
func validRequestID(id string) bool {
	if id == "" || len(id) > 128 {
		return false
	}
	for i := 0; i < len(id); i++ {
		if id[i] < 0x21 || id[i] > 0x7e {
			return false
		}
	}
	return true
}

// httpMetrics are the gateway's request rate, errors and duration, by route
// pattern (not raw path: ids would make a series each) and status.
type httpMetrics struct {
	requests *prometheus.CounterVec
	duration *prometheus.HistogramVec
}

// newHTTPMetrics registers the gateway's HTTP metrics with reg.
func newHTTPMetrics(reg prometheus.Registerer) (*httpMetrics, error) {
	m := &httpMetrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "http_requests_total",
			Help: "HTTP requests the gateway answered, by route pattern, method and status code."}, []string{"route", "method", "code"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "http_request_duration_seconds",
			Help: "Time the gateway took to answer HTTP requests, by route pattern and method.", Buckets: prometheus.DefBuckets}, []string{"route", "method"}),
	}
	for _, c := range []prometheus.Collector{m.requests, m.duration} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return m, nil
}

// routeKey holds, in a request's context, its exchange, where routing
// writes the request's route pattern: "/v1/products/{id}", "/healthz", routeNone for a
// request no route matched (404, 405) or routeEarly for one answered before
// routing (a refused token, rate limit, oversized headers, a CORS
// preflight).
type routeKey struct{}

// The route labels of requests without a route.
const (
	routeNone  = "unmatched"
	routeEarly = "unrouted"
)

// methodLabel returns the request's method as a metrics label and span
// name: one of the methods HTTP defines, or "_OTHER", so that made-up
// methods cannot make series without bound.
func methodLabel(m string) string {
	switch m {
	case http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut, http.MethodPatch,
		http.MethodDelete, http.MethodOptions, http.MethodConnect, http.MethodTrace:
		return m
	}
	return "_OTHER"
}

// exchange is what the middleware learn of a request while it is served:
// its route, which routing writes, the status code written and the body
// limit (limitBody), kept in one context value rather than one each: every
// value is a copy of the request.
type exchange struct {
	route   string
	rec     *statusRecorder
	maxBody int64
}

// withRoute records each request's exchange, once for every middleware
// that reads it (traceHTTP, measure, logRequests): it runs outermost. It
// also gives every request its id (RequestIDHeader, see requestIDOf),
// echoed on the response, in the log lines (telemetry.WithRequestID) and
// passed to the services (callMetadata).
func withRoute(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ex := &exchange{rec: &statusRecorder{ResponseWriter: w, code: http.StatusOK}}
		id := requestIDOf(r)
		w.Header().Set(RequestIDHeader, id)
		ctx := telemetry.WithRequestID(context.WithValue(r.Context(), routeKey{}, ex), id)
		next.ServeHTTP(ex.rec, r.WithContext(ctx))
	})
}

// exchangeOf returns the exchange withRoute records, or a throwaway.
func exchangeOf(r *http.Request) *exchange {
	if ex, ok := r.Context().Value(routeKey{}).(*exchange); ok {
		return ex
	}
	return &exchange{rec: &statusRecorder{code: http.StatusOK}}
}

// routeOf returns where the request's route is written.
func routeOf(r *http.Request) *string { return &exchangeOf(r).route }

// statusOf returns the status code written so far (200 when none was).
func statusOf(r *http.Request) int { return exchangeOf(r).rec.code }

// routeOfRoot serves r with the root mux and, when grpc-gateway did not
// record a route, records the root mux's pattern, or routeEarly when the
// API's middleware answered before grpc-gateway routed the request.
func routeOfRoot(root *http.ServeMux) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		root.ServeHTTP(w, r)
		if route := routeOf(r); *route == "" {
			*route = routeEarly
			if _, p, ok := strings.Cut(r.Pattern, " "); ok && p != "/" {
				*route = p
			}
		}
	})
}

// routeFound reports whether route names a route (http.route may hold it).
func routeFound(route string) bool { return route != "" && route != routeNone && route != routeEarly }

// measure records each request's route, status and duration, when m is
// not nil.
func measure(m *httpMetrics) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		if m == nil {
			return next
		}
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			start := time.Now()
			next.ServeHTTP(w, r)
			route, method := *routeOf(r), methodLabel(r.Method)
			if route == "" { // answered outside the router: a CORS preflight
				route = routeEarly
			}
			m.requests.WithLabelValues(route, method, strconv.Itoa(statusOf(r))).Inc()
			m.duration.WithLabelValues(route, method).Observe(time.Since(start).Seconds())
		})
	}
}

// recordRoute is a grpc-gateway middleware: it writes the route pattern
// the mux matched where measure reads it.
func recordRoute(next runtime.HandlerFunc) runtime.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request, params map[string]string) {
		if p, ok := runtime.HTTPPattern(r.Context()); ok {
			*routeOf(r) = cleanPattern(p.String())
		}
		next(w, r, params)
	}
}

// capture matches a grpc-gateway path variable, "{id=*}".
var capture = regexp.MustCompile(`\{([^=}]+)=\*\}`)

// cleanPattern writes a grpc-gateway pattern as the route was declared:
// "/v1/products/{id=*}" as "/v1/products/{id}".
func cleanPattern(p string) string { return capture.ReplaceAllString(p, "{$1}") }
