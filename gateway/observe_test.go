package gateway_test

import (
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/kgrpc/platform/gateway"
)

// TestObserve checks the gateway's request ids, server spans and HTTP
// metrics: route labels for matched, unmatched and early-answered requests,
// made-up methods folded into one label, probes without spans.
func TestObserve(t *testing.T) {
	b := newBackend(t)
	reg := prometheus.NewRegistry()
	spans := tracetest.NewInMemoryExporter()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(spans))
	t.Cleanup(func() { _ = tp.Shutdown(t.Context()) })
	base := b.serve(t, func(c *gateway.Config) { c.Metrics, c.TracerProvider = reg, tp })

	const traceID, parentID = "0af7651916cd43dd8448eb211c80319c", "b7ad6b7169203331"
	r := do(t, base, "GET", "/v1/products/p_1", "", "traceparent", "00-"+traceID+"-"+parentID+"-01", gateway.RequestIDHeader, "caller-id-1")
	if r.status != 200 {
		t.Fatalf("GET /v1/products/p_1 = %d %s", r.status, r.raw)
	}
	if got := r.header.Get(gateway.RequestIDHeader); got != "caller-id-1" {
		t.Errorf("X-Request-Id = %q, want the caller's", got)
	}
	if c, _ := b.rec.lastCall("GetProduct"); strings.Join(c.md.Get("x-request-id"), ",") != "caller-id-1" {
		t.Errorf("x-request-id metadata = %q, want the caller's id", c.md.Get("x-request-id"))
	}
	var server sdktrace.ReadOnlySpan
	for _, s := range spans.GetSpans().Snapshots() {
		if s.Name() == "GET /v1/products/{id}" {
			server = s
		}
	}
	if server == nil {
		t.Fatalf("no span named GET /v1/products/{id}; spans: %v", spans.GetSpans())
	}
	if server.SpanContext().TraceID().String() != traceID || server.Parent().SpanID().String() != parentID {
		t.Errorf("server span in trace %s under %s, want the caller's traceparent", server.SpanContext().TraceID(), server.Parent().SpanID())
	}
	attrs := map[string]string{}
	for _, a := range server.Attributes() {
		attrs[string(a.Key)] = a.Value.Emit()
	}
	for k, want := range map[string]string{"http.route": "/v1/products/{id}", "http.request.method": "GET", "http.response.status_code": "200"} {
		if attrs[k] != want {
			t.Errorf("server span %s = %q, want %q", k, attrs[k], want)
		}
	}

	// An id the gateway will not pass on is replaced by one it makes.
	r = do(t, base, "GET", "/v1/products/p_1", "", gateway.RequestIDHeader, strings.Repeat("x", 129))
	if got := r.header.Get(gateway.RequestIDHeader); len(got) != 32 {
		t.Errorf("X-Request-Id for a 129-character one = %q, want a new 32-hex id", got)
	}

	spans.Reset()
	do(t, base, "GET", "/v1/nothing-here", "")
	do(t, base, "GET", "/v1/users/me", "", bearer("not-a-token")...) // 401 before routing
	do(t, base, "BREW", "/v1/products", "")
	do(t, base, "GET", "/healthz", "")
	for _, s := range spans.GetSpans().Snapshots() {
		if strings.Contains(s.Name(), "healthz") {
			t.Errorf("span %q: probes are not traced", s.Name())
		}
		if s.Name() != "GET" && s.Name() != "_OTHER" {
			t.Errorf("span %q of a request without a route, want its method only", s.Name())
		}
	}
	for _, want := range []struct{ route, method, code string }{
		{"/v1/products/{id}", "GET", "200"},
		{"unmatched", "GET", "404"},
		{"unrouted", "GET", "401"}, // refused before routing
		{"/healthz", "GET", "200"},
	} {
		labels := map[string]string{"route": want.route, "method": want.method, "code": want.code}
		if got := counter(t, reg, "http_requests_total", labels); got < 1 {
			t.Errorf("http_requests_total%v: none counted", labels)
		}
	}
	// BREW: no route has the method.
	if got := counter(t, reg, "http_requests_total", map[string]string{"route": "unmatched", "method": "_OTHER"}); got < 1 {
		t.Errorf("http_requests_total{route=unmatched,method=_OTHER}: none counted")
	}
	if got := counter(t, reg, "http_requests_total", map[string]string{"method": "BREW"}); got != 0 {
		t.Errorf("http_requests_total has a series of the made-up method BREW")
	}
}

// counter returns the sum of the series of the counter name whose labels
// include want.
func counter(t *testing.T, reg *prometheus.Registry, name string, want map[string]string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	sum := 0.0
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	series:
		for _, m := range mf.GetMetric() {
			labels := map[string]string{}
			for _, l := range m.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			for k, v := range want {
				if labels[k] != v {
					continue series
				}
			}
			sum += m.GetCounter().GetValue()
		}
	}
	return sum
}
