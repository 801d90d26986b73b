package observetest

import (
	"bufio"
	"context"
	"fmt"
	"net/http"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"

	"github.com/kgrpc/platform/internal/proctest"
	"github.com/kgrpc/platform/kafkatransport/kafkatest"
)

// shop is the split binaries, started once for the package's tests.
type shop struct {
	rx                          *receiver
	users, products, orders, gw *proctest.Proc
	admin, buyer                string // tokens
	product                     string // a product with stock
	prefix, brokers             string
}

// startShop starts the four units with tracing exported to an in-test
// OTLP/HTTP receiver.
func startShop(t *testing.T) *shop {
	t.Helper()
	bin := proctest.Build(t, "./cmd/gateway", "./cmd/usersvc", "./cmd/productsvc", "./cmd/ordersvc")
	dir := t.TempDir()
	rx := newReceiver(t)
	prefix, brokers := kafkatest.TopicPrefix(t), kafkatest.Brokers(t)
	c := proctest.NewCluster(t, bin, brokers, prefix)
	c.LogTail = 80
	c.Env = []string{
		"OTEL_EXPORTER_OTLP_ENDPOINT=" + rx.URL,
		"OTEL_EXPORTER_OTLP_PROTOCOL=http/protobuf",
		"OTEL_BSP_SCHEDULE_DELAY=100", // export within a tenth of a second
		"OTEL_RESOURCE_ATTRIBUTES=deployment.environment.name=observetest",
	}
	s := &shop{rx: rx, prefix: prefix, brokers: brokers}
	s.users = c.Start("users", "usersvc", "--db", filepath.Join(dir, "users.db"), "--admin-email", proctest.AdminEmail, "--admin-password", proctest.AdminPassword)
	s.products = c.Start("products", "productsvc", "--db", filepath.Join(dir, "products.db"))
	s.orders = c.Start("orders", "ordersvc", "--db", filepath.Join(dir, "orders.db"))
	s.gw = c.Start("gateway", "gateway", "--auth-rate-limit", "0")
	for _, p := range []*proctest.Proc{s.users, s.products, s.orders, s.gw} {
		proctest.WaitOK(t, p, "/readyz", 90*time.Second)
	}
	ctx := context.Background()
	must := func(code int, body map[string]any, err error) map[string]any {
		t.Helper()
		if err != nil || code != http.StatusOK {
			t.Fatalf("setup call = %d %v %v", code, body, err)
		}
		return body
	}
	s.admin = must(proctest.API(ctx, s.gw.URL, "POST", "/v1/auth:login", "", map[string]any{"email": proctest.AdminEmail, "password": proctest.AdminPassword}))["accessToken"].(string)
	s.product = must(proctest.API(ctx, s.gw.URL, "POST", "/v1/products", s.admin, map[string]any{
		"sku": "TRACE-1", "name": "Traced item", "category": "test", "priceCents": 100, "stock": 100}))["id"].(string)
	must(proctest.API(ctx, s.gw.URL, "POST", "/v1/users", "", map[string]any{"email": "tracer@example.com", "password": "password-123", "displayName": "Tracer"}))
	s.buyer = must(proctest.API(ctx, s.gw.URL, "POST", "/v1/auth:login", "", map[string]any{"email": "tracer@example.com", "password": "password-123"}))["accessToken"].(string)
	return s
}

// traceparent returns a new sampled W3C traceparent and its trace and
// span ids, as a caller of the API would send.
func traceparent(n int) (header, traceID, spanID string) {
	traceID = fmt.Sprintf("%032x", time.Now().UnixNano()+int64(n))
	spanID = fmt.Sprintf("%016x", 0xabc000+n)
	return "00-" + traceID + "-" + spanID + "-01", traceID, spanID
}

// waitTrace waits until the trace has a span of each service, and a
// little longer for the rest of its spans.
func waitTrace(t *testing.T, rx *receiver, id string, services ...string) []span {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		spans := rx.trace(id)
		have := map[string]bool{}
		for _, s := range spans {
			have[s.service] = true
		}
		missing := []string{}
		for _, svc := range services {
			if !have[svc] {
				missing = append(missing, svc)
			}
		}
		if len(missing) == 0 {
			time.Sleep(500 * time.Millisecond)
			return rx.trace(id)
		}
		if time.Now().After(deadline) {
			t.Fatalf("trace %s: no span from %v after 30s; spans: %s", id, missing, describe(spans))
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func describe(spans []span) string {
	var b strings.Builder
	for _, s := range spans {
		fmt.Fprintf(&b, "\n  %s %q kind=%v span=%s parent=%s links=%v", s.service, s.name, s.kind, s.spanID, s.parent, s.links)
	}
	return b.String()
}

// find returns the one span of the service, kind and name in spans.
func find(t *testing.T, spans []span, service string, kind tracepb.Span_SpanKind, name string) span {
	t.Helper()
	var found []span
	for _, s := range spans {
		if s.service == service && s.kind == kind && s.name == name {
			found = append(found, s)
		}
	}
	if len(found) != 1 {
		t.Fatalf("%d spans of %s kind %v named %q, want 1; spans: %s", len(found), service, kind, name, describe(spans))
	}
	return found[0]
}

// ancestor reports whether a is s or an ancestor of s in spans.
func ancestor(spans []span, a, s span) bool {
	byID := map[string]span{}
	for _, x := range spans {
		byID[x.spanID] = x
	}
	for range len(spans) + 1 {
		if s.spanID == a.spanID {
			return true
		}
		p, ok := byID[s.parent]
		if !ok {
			return false
		}
		s = p
	}
	return false
}

func TestObservability(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the four units; skipped with -short")
	}
	s := startShop(t)
	ctx := context.Background()

	t.Run("one order is one trace across the units", func(t *testing.T) {
		tp, traceID, callerSpan := traceparent(1)
		code, body, err := proctest.API(ctx, s.gw.URL, "POST", "/v1/orders", s.buyer,
			map[string]any{"items": []map[string]any{{"productId": s.product, "quantity": 1}}}, "traceparent", tp)
		if err != nil || code != http.StatusOK {
			t.Fatalf("POST /v1/orders = %d %v %v", code, body, err)
		}
		spans := waitTrace(t, s.rx, traceID, "gateway", "ordersvc", "productsvc")

		// gateway HTTP server span → gateway client span → ordersvc server
		// span → ordersvc client span → productsvc server span.
		httpSpan := find(t, spans, "gateway", tracepb.Span_SPAN_KIND_SERVER, "POST /v1/orders")
		if httpSpan.parent != callerSpan {
			t.Errorf("gateway HTTP span's parent = %q, want the caller's span %s (its traceparent)", httpSpan.parent, callerSpan)
		}
		if httpSpan.attrs["http.route"] != "/v1/orders" {
			t.Errorf("gateway HTTP span http.route = %q", httpSpan.attrs["http.route"])
		}
		const create = "shop.orders.v1.OrderService/CreateOrder"
		gwClient := find(t, spans, "gateway", tracepb.Span_SPAN_KIND_CLIENT, create)
		ordServer := find(t, spans, "ordersvc", tracepb.Span_SPAN_KIND_SERVER, create)
		var ordClient, prodServer span
		for _, sp := range spans {
			if sp.service == "ordersvc" && sp.kind == tracepb.Span_SPAN_KIND_CLIENT && strings.HasPrefix(sp.name, "shop.products.v1.ProductService/") {
				ordClient = sp
			}
		}
		if ordClient.spanID == "" {
			t.Fatalf("no ordersvc client span to productsvc; spans: %s", describe(spans))
		}
		prodServer = find(t, spans, "productsvc", tracepb.Span_SPAN_KIND_SERVER, ordClient.name)
		for _, hop := range []struct {
			name          string
			parent, child span
			direct        bool
		}{
			{"gateway HTTP → gateway client", httpSpan, gwClient, false},
			{"gateway client → ordersvc server", gwClient, ordServer, true},
			{"ordersvc server → ordersvc client", ordServer, ordClient, false},
			{"ordersvc client → productsvc server", ordClient, prodServer, true},
		} {
			if hop.direct && hop.child.parent != hop.parent.spanID {
				t.Errorf("%s: the server span's parent is %s, want the client span %s", hop.name, hop.child.parent, hop.parent.spanID)
			}
			if !hop.direct && !ancestor(spans, hop.parent, hop.child) {
				t.Errorf("%s: %q is not a descendant of %q; spans: %s", hop.name, hop.child.name, hop.parent.name, describe(spans))
			}
		}
		// The semantic conventions for RPC and the Kafka facts.
		for _, sp := range []span{gwClient, ordServer, ordClient, prodServer} {
			for k, want := range map[string]string{"rpc.system": "grpc", "rpc.system.name": "grpc", "rpc.method": sp.name,
				"rpc.service": strings.SplitN(sp.name, "/", 2)[0], "rpc.grpc.status_code": "0", "rpc.response.status_code": "OK", "messaging.system": "kafka"} {
				if sp.attrs[k] != want {
					t.Errorf("%s %s span: %s = %q, want %q", sp.service, sp.name, k, sp.attrs[k], want)
				}
			}
			if !strings.HasSuffix(sp.attrs["messaging.destination.name"], strings.SplitN(sp.name, "/", 2)[0]) {
				t.Errorf("%s %s span: messaging.destination.name = %q, want the service's request topic", sp.service, sp.name, sp.attrs["messaging.destination.name"])
			}
		}
		for _, k := range []string{"messaging.destination.partition.id", "messaging.kafka.offset", "messaging.message.id"} {
			if prodServer.attrs[k] == "" {
				t.Errorf("productsvc server span has no %s: %v", k, prodServer.attrs)
			}
		}
		// The order's OrderCreated event goes out in the order's trace.
		send := spans[0]
		found := false
		for _, sp := range spans {
			if sp.service == "ordersvc" && sp.kind == tracepb.Span_SPAN_KIND_PRODUCER && strings.HasSuffix(sp.name, "shop.orders.v1.OrderCreated") {
				send, found = sp, true
			}
		}
		if !found {
			t.Errorf("no ordersvc producer span of the OrderCreated event in the order's trace; spans: %s", describe(spans))
		} else if !ancestor(spans, ordServer, send) {
			t.Errorf("the event's send span is not inside the CreateOrder call's span")
		}

		// The log lines of the call, in every unit, carry its trace id.
		for _, p := range []*proctest.Proc{s.gw, s.orders, s.products} {
			if !strings.Contains(p.Log.String(), "trace_id="+traceID) {
				t.Errorf("no log line of %s carries trace_id=%s", p.Name, traceID)
			}
		}

		// A cancellation's OrderStatusChanged event is consumed by
		// productsvc in a span of its own that links to the event's send.
		id := body["id"].(string)
		tp2, trace2, _ := traceparent(2)
		code, body, err = proctest.API(ctx, s.gw.URL, "POST", "/v1/orders/"+id+":cancel", s.buyer, map[string]any{}, "traceparent", tp2)
		if err != nil || code != http.StatusOK {
			t.Fatalf("cancel = %d %v %v", code, body, err)
		}
		cancelSpans := waitTrace(t, s.rx, trace2, "gateway", "ordersvc")
		var changed span
		for _, sp := range cancelSpans {
			if sp.kind == tracepb.Span_SPAN_KIND_PRODUCER && strings.HasSuffix(sp.name, "shop.orders.v1.OrderStatusChanged") {
				changed = sp
			}
		}
		if changed.spanID == "" {
			t.Fatalf("no producer span of OrderStatusChanged in the cancellation's trace; spans: %s", describe(cancelSpans))
		}
		link := changed.traceID + "/" + changed.spanID
		deadline := time.Now().Add(20 * time.Second)
		for {
			var process *span
			for _, sp := range s.rx.all() {
				if sp.service == "productsvc" && sp.kind == tracepb.Span_SPAN_KIND_CONSUMER && len(sp.links) > 0 && sp.links[0] == link {
					process = &sp
				}
			}
			if process != nil {
				if process.traceID == trace2 {
					t.Errorf("the consumer span is in the producer's trace; want its own trace linked to it")
				}
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("no productsvc consumer span linked to %s after 20s", link)
			}
			time.Sleep(100 * time.Millisecond)
		}
	})

	t.Run("probes make no spans", func(t *testing.T) {
		// startShop waited for every /readyz, and the gateway's checks
		// each service's health over Kafka.
		for _, sp := range s.rx.all() {
			if strings.HasPrefix(sp.name, "grpc.health.v1.Health/") || strings.Contains(sp.name, "/readyz") || strings.Contains(sp.name, "/healthz") {
				t.Errorf("span %q of %s: probes should not be traced", sp.name, sp.service)
			}
		}
	})

	t.Run("every process serves metrics that move", func(t *testing.T) {
		// Traffic: reads and a not-found.
		for range 5 {
			_, _, _ = proctest.API(ctx, s.gw.URL, "GET", "/v1/products/"+s.product, "", nil)
		}
		_, _, _ = proctest.API(ctx, s.gw.URL, "GET", "/v1/products/p_missing", "", nil)
		want := map[*proctest.Proc][]string{
			s.gw: {
				`grpc_client_handled_total{grpc_code="OK",grpc_method="GetProduct",grpc_service="shop.products.v1.ProductService",grpc_type="unary",unit="gateway"}`,
				`grpc_client_handled_total{grpc_code="NotFound",grpc_method="GetProduct",grpc_service="shop.products.v1.ProductService",grpc_type="unary",unit="gateway"}`,
				`http_requests_total{code="200",method="GET",route="/v1/products/{id}",unit="gateway"}`,
				`http_requests_total{code="404",method="GET",route="/v1/products/{id}",unit="gateway"}`,
				`kgrpc_client_reply_wait_seconds_count{service="shop.products.v1.ProductService",unit="gateway"}`,
				`go_goroutines`, `process_resident_memory_bytes`,
			},
			s.products: {
				`grpc_server_handled_total{grpc_code="OK",grpc_method="GetProduct",grpc_service="shop.products.v1.ProductService",grpc_type="unary",unit="productsvc"}`,
				`grpc_server_started_total{grpc_method="GetProduct",grpc_service="shop.products.v1.ProductService",grpc_type="unary",unit="productsvc"}`,
				`grpc_server_handling_seconds_count{grpc_method="GetProduct",grpc_service="shop.products.v1.ProductService",grpc_type="unary",unit="productsvc"}`,
				`kgrpc_outbox_backlog{unit="productsvc"}`,
			},
			s.orders: {
				`grpc_server_handled_total{grpc_code="OK",grpc_method="CreateOrder",grpc_service="shop.orders.v1.OrderService",grpc_type="unary",unit="ordersvc"}`,
				`grpc_client_handled_total{grpc_code="OK",grpc_method="ReserveStock",grpc_service="shop.products.v1.ProductService",grpc_type="unary",unit="ordersvc"}`,
				`kgrpc_outbox_oldest_age_seconds{unit="ordersvc"}`,
			},
			s.users: {
				`grpc_server_handled_total{grpc_code="OK",grpc_method="Login",grpc_service="shop.users.v1.UserService",grpc_type="unary",unit="usersvc"}`,
			},
		}
		for p, series := range want {
			m := scrape(t, p)
			for _, name := range series {
				if v, ok := m.value(name); !ok || (strings.HasSuffix(name, "}") && strings.Contains(name, "_total") && v < 1) {
					t.Errorf("%s /metrics: %s = %v, %v; want it present (and counted)", p.Name, name, v, ok)
				}
			}
		}
		// A poison record (no envelope) in productsvc's request topic is
		// dead-lettered and counted. Consumer lag comes from librdkafka's
		// statistics, every 5s.
		topic := s.prefix + "shop.products.v1.ProductService"
		produce(t, s.brokers, topic, []byte("poison"))
		wantDead := `kgrpc_dead_letters_total{topic="` + topic + `",unit="productsvc"}`
		wantLag := `kgrpc_consumer_lag{group="` + topic + `",partition="`
		deadline := time.Now().Add(30 * time.Second)
		for {
			m := scrape(t, s.products)
			dead, deadOK := m.value(wantDead)
			_, lagOK := m.value(wantLag)
			_, queueOK := m.value(`kgrpc_kafka_queue_messages{`)
			if deadOK && dead >= 1 && lagOK && queueOK {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("productsvc /metrics after 30s: %s = %v (%v); %s... present: %v; kgrpc_kafka_queue_messages present: %v", wantDead, dead, deadOK, wantLag, lagOK, queueOK)
			}
			time.Sleep(500 * time.Millisecond)
		}
	})
}

// metrics is a scraped /metrics page.
type metrics []string

// scrape reads p's /metrics.
func scrape(t *testing.T, p *proctest.Proc) metrics {
	t.Helper()
	resp, err := http.Get(p.URL + "/metrics")
	if err != nil {
		t.Fatalf("GET %s/metrics: %v", p.Name, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/plain") {
		t.Fatalf("GET %s/metrics = %d %s", p.Name, resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	var m metrics
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		if line := sc.Text(); !strings.HasPrefix(line, "#") {
			m = append(m, line)
		}
	}
	return m
}

// value returns the value of the first series that starts with prefix.
func (m metrics) value(prefix string) (float64, bool) {
	for _, line := range m {
		if strings.HasPrefix(line, prefix) {
			i := strings.LastIndexByte(line, ' ')
			v, err := strconv.ParseFloat(line[i+1:], 64)
			return v, err == nil
		}
	}
	return 0, false
}

// produce writes one record with value and no headers to topic.
func produce(t *testing.T, brokers, topic string, value []byte) {
	t.Helper()
	p, err := kafka.NewProducer(&kafka.ConfigMap{"bootstrap.servers": brokers})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	done := make(chan kafka.Event, 1)
	if err := p.Produce(&kafka.Message{TopicPartition: kafka.TopicPartition{Topic: &topic, Partition: kafka.PartitionAny}, Value: value}, done); err != nil {
		t.Fatal(err)
	}
	select {
	case e := <-done:
		if m := e.(*kafka.Message); m.TopicPartition.Error != nil {
			t.Fatalf("produce poison: %v", m.TopicPartition.Error)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("produce poison: not acknowledged in 10s")
	}
}
