package gateway_test

// The gateway's tests run it as in production: in front of the standard
// generated clients on the Kafka transport, on a broker from kafkatest
// (kfake, or KAFKA_BROKERS), calling small test implementations of the three
// services (services_test.go) behind the services' own token interceptor.

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"
	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	"google.golang.org/grpc/health/grpc_health_v1"

	"github.com/kgrpc/platform/gateway"
	ordersv1 "github.com/kgrpc/platform/gen/shop/orders/v1"
	productsv1 "github.com/kgrpc/platform/gen/shop/products/v1"
	usersv1 "github.com/kgrpc/platform/gen/shop/users/v1"
	"github.com/kgrpc/platform/internal/auth"
	"github.com/kgrpc/platform/kafkatransport"
	"github.com/kgrpc/platform/kafkatransport/kafkatest"
	"github.com/kgrpc/platform/kafkatransport/trust"
)

// backend is the three test services, served over Kafka, and a client
// connection to them.
type backend struct {
	issuer   *auth.Issuer
	verifier *auth.Verifier
	rec      *recorder
	conn     *kafkatransport.ClientConn
	users    usersv1.UserServiceClient
	products productsv1.ProductServiceClient
	orders   ordersv1.OrderServiceClient
	// health is the backend's health service, which the gateway's
	// /readyz asks (on the default topic: one unit serves it).
	health       *health.Server
	healthClient grpc_health_v1.HealthClient
}

// newBackend starts the test services for t; they stop when t ends.
func newBackend(t *testing.T) *backend {
	t.Helper()
	ring, keys, err := trust.Generate(time.Now(), "gateway", "backend", "usersvc")
	if err != nil {
		t.Fatal(err)
	}
	issuer, err := auth.NewIssuer(keys["usersvc"].Current(), time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	verifier, err := auth.NewVerifier(ring, "usersvc")
	if err != nil {
		t.Fatal(err)
	}
	// One unit, "backend", serves the three services; the gateway's unit
	// may call them all.
	policy := trust.Policy{
		Owners: map[string]string{"shop.users.v1": "backend", "shop.products.v1": "backend", "shop.orders.v1": "backend", "grpc.health.v1": "backend"},
		Calls: map[string][]string{"gateway": {"/shop.users.v1.UserService/*", "/shop.products.v1.ProductService/*", "/shop.orders.v1.OrderService/*",
			"/grpc.health.v1.Health/*"}},
	}
	guard := func(unit string) kafkatransport.Option {
		g, err := trust.NewGuard(keys[unit], ring, policy)
		if err != nil {
			t.Fatal(err)
		}
		return kafkatransport.WithGuard(g)
	}
	rec := newRecorder()
	hs := health.NewServer()
	for _, d := range []grpc.ServiceDesc{usersv1.UserService_ServiceDesc, productsv1.ProductService_ServiceDesc, ordersv1.OrderService_ServiceDesc} {
		hs.SetServingStatus(d.ServiceName, grpc_health_v1.HealthCheckResponse_SERVING)
	}
	conn := serveOverKafka(t, func(s *kafkatransport.Server) {
		usersv1.RegisterUserServiceKafkaServer(s, &testUsers{rec: rec})
		productsv1.RegisterProductServiceKafkaServer(s, &testProducts{rec: rec})
		ordersv1.RegisterOrderServiceKafkaServer(s, &testOrders{rec: rec})
		grpc_health_v1.RegisterHealthServer(s, hs)
	}, guard("backend"), guard("gateway"), rec.interceptor, auth.UnaryServerInterceptor(auth.InterceptorConfig{Asserters: []string{"gateway"}}))
	return &backend{
		issuer:   issuer,
		verifier: verifier,
		rec:      rec,
		conn:     conn,
		users:    usersv1.NewUserServiceKafkaClient(conn),
		products: productsv1.NewProductServiceKafkaClient(conn),
		orders:   ordersv1.NewOrderServiceKafkaClient(conn),

		health:       hs,
		healthClient: grpc_health_v1.NewHealthClient(conn),
	}
}

// serveOverKafka serves what register registers on a kafkatransport server
// with its Guard and the interceptors, until t ends, and returns a client
// connection to it with the client's Guard. It is the one place these tests
// build transport servers and clients.
func serveOverKafka(t *testing.T, register func(*kafkatransport.Server), serverGuard, clientGuard kafkatransport.Option, ics ...grpc.UnaryServerInterceptor) *kafkatransport.ClientConn {
	t.Helper()
	brokers := kafkatest.Brokers(t)
	prefix := kafkatest.TopicPrefix(t)
	fastGroup := kafkatransport.WithKafkaConfig(kafka.ConfigMap{"session.timeout.ms": 6000, "heartbeat.interval.ms": 500})
	srv, err := kafkatransport.NewServer(brokers, kafkatransport.WithTopicPrefix(prefix), fastGroup, serverGuard,
		kafkatransport.WithUnaryServerInterceptors(ics...))
	if err != nil {
		t.Fatal(err)
	}
	register(srv)
	done := make(chan error, 1)
	go func() { done <- srv.Serve(t.Context()) }()
	select {
	case <-time.After(60 * time.Second):
		t.Fatal("server not ready after 60s")
	case err := <-done:
		t.Fatalf("server stopped before it was ready: %v", err)
	case <-srv.Ready():
	}
	// t.Context ends before the cleanups run: the server drains while the
	// client closes, and this cleanup, the last, waits for it.
	t.Cleanup(func() {
		if err := <-done; err != nil {
			t.Errorf("serve: %v", err)
		}
	})
	conn, err := kafkatransport.Dial(t.Context(), brokers, kafkatransport.WithTopicPrefix(prefix), clientGuard)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	return conn
}

// serve runs a gateway over b, configured by cfg on top of the defaults,
// and returns its base URL.
func (b *backend) serve(t *testing.T, cfg func(*gateway.Config)) string {
	t.Helper()
	c := gateway.Config{
		Users:    b.users,
		Products: b.products,
		Orders:   b.orders,
		Verifier: b.verifier,

		UsersHealth:    b.healthClient,
		ProductsHealth: b.healthClient,
		OrdersHealth:   b.healthClient,
		Ping:           b.conn.Ping,
		OpenAPI:        gateway.OpenAPI,
		Logger:         slog.New(slog.DiscardHandler),
	}
	if cfg != nil {
		cfg(&c)
	}
	h, err := gateway.New(t.Context(), c)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return srv.URL
}

// token returns a valid token for subject with role.
func (b *backend) token(t *testing.T, subject string, role auth.Role) string {
	t.Helper()
	tok, _, err := b.issuer.Issue(subject, role, 1)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// reply is an HTTP response with its body decoded.
type reply struct {
	status int
	header http.Header
	raw    []byte
	json   map[string]any
}

// do sends method path to the gateway at base with the headers (name,
// value pairs) and body, and returns the response.
func do(t *testing.T, base, method, path, body string, headers ...string) reply {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequestWithContext(t.Context(), method, base+path, rd)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	r := reply{status: resp.StatusCode, header: resp.Header, raw: raw}
	if strings.HasPrefix(resp.Header.Get("Content-Type"), "application/json") {
		if err := json.Unmarshal(raw, &r.json); err != nil {
			t.Fatalf("%s %s: body %q is not a JSON object: %v", method, path, raw, err)
		}
	}
	return r
}

// bearer returns the Authorization header pair for tok.
func bearer(tok string) []string { return []string{"Authorization", "Bearer " + tok} }

// wantError checks that r is the API's JSON error with the HTTP status,
// code and message, no details, and a JSON content type.
func wantError(t *testing.T, r reply, status int, code, message string) {
	t.Helper()
	if r.status != status {
		t.Errorf("status %d, want %d (body %s)", r.status, status, r.raw)
	}
	if ct := r.header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("Content-Type %q, want application/json", ct)
	}
	want := map[string]any{"code": code, "message": message, "details": []any{}}
	got := maps.Clone(r.json)
	if m, ok := got["message"].(string); ok {
		// protobuf-go's errors put a random no-break space after "proto:"
		// to keep callers from matching them; these tests do anyway.
		got["message"] = strings.ReplaceAll(m, "\u00a0", " ")
	}
	if !jsonEqual(got, want) {
		t.Errorf("body %s, want %v", r.raw, mustJSON(t, want))
	}
}

// jsonEqual reports whether a and b encode to the same JSON.
func jsonEqual(a, b any) bool {
	ja, err1 := json.Marshal(a)
	jb, err2 := json.Marshal(b)
	return err1 == nil && err2 == nil && string(ja) == string(jb)
}

func mustJSON(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// captureHandler is a slog.Handler keeping "method path status" of each
// request line.
type captureHandler struct {
	mu  sync.Mutex
	got []string
}

func (h *captureHandler) Enabled(context.Context, slog.Level) bool { return true }
func (h *captureHandler) WithAttrs([]slog.Attr) slog.Handler       { return h }
func (h *captureHandler) WithGroup(string) slog.Handler            { return h }

func (h *captureHandler) Handle(_ context.Context, r slog.Record) error {
	if r.Message != "http request" {
		return nil
	}
	a := map[string]string{}
	r.Attrs(func(at slog.Attr) bool {
		a[at.Key] = at.Value.String()
		return true
	})
	if a["duration"] == "" {
		return fmt.Errorf("no duration in %v", a)
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	h.got = append(h.got, a["method"]+" "+a["path"]+" "+a["status"])
	return nil
}

func (h *captureHandler) lines() []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]string(nil), h.got...)
}
