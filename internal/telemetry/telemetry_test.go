package telemetry

import (
	"bytes"
	"context"
	"log/slog"
	"strings"
	"testing"
	"time"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"
)

// resourceOf starts a span of the unit and returns its resource
// attributes, or nil when the span records nothing.
func resourceOf(t *testing.T, u *Unit) map[string]string {
	t.Helper()
	_, span := u.Tracer.Tracer("test").Start(context.Background(), "s")
	defer span.End()
	ro, ok := span.(sdktrace.ReadOnlySpan)
	if !ok || !span.IsRecording() {
		return nil
	}
	attrs := map[string]string{}
	for _, a := range ro.Resource().Attributes() {
		attrs[string(a.Key)] = a.Value.Emit()
	}
	return attrs
}

func TestServiceName(t *testing.T) {
	for _, tt := range []struct {
		name   string
		shared bool
		env    map[string]string
		want   string
	}{
		{"one unit: its name", false, nil, "productsvc"},
		{"one unit: OTEL_SERVICE_NAME overrides it", false, map[string]string{"OTEL_SERVICE_NAME": "catalog"}, "catalog"},
		{"shared process: the unit's name wins", true, map[string]string{"OTEL_SERVICE_NAME": "catalog"}, "productsvc"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Setenv("OTEL_RESOURCE_ATTRIBUTES", "deployment.environment.name=test")
			// Spans are recorded only when exported: to an endpoint that
			// does not answer, given up on quickly.
			t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:1")
			t.Setenv("OTEL_EXPORTER_OTLP_TIMEOUT", "100")
			for k, v := range tt.env {
				t.Setenv(k, v)
			}
			tel, err := New(tt.shared, slog.New(slog.DiscardHandler))
			if err != nil {
				t.Fatal(err)
			}
			defer func() {
				ctx, cancel := context.WithTimeout(context.Background(), time.Second)
				defer cancel()
				_ = tel.Shutdown(ctx) // the export fails: nothing listens
			}()
			u, err := tel.Unit(context.Background(), "productsvc")
			if err != nil {
				t.Fatal(err)
			}
			attrs := resourceOf(t, u)
			if attrs["service.name"] != tt.want || attrs["deployment.environment.name"] != "test" {
				t.Errorf("resource %v: want service.name %q and OTEL_RESOURCE_ATTRIBUTES", attrs, tt.want)
			}
			// A second unit of the same name in one process is refused:
			// its metrics would collide.
			if _, err := tel.Unit(context.Background(), "productsvc"); err == nil {
				t.Error("a second Unit of one name: no error")
			}
		})
	}
}

// unitWithoutExporter returns the unit name of a Telemetry with no OTLP
// endpoint set, shut down when the test ends.
func unitWithoutExporter(t *testing.T, name string) *Unit {
	t.Helper()
	t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "")
	t.Setenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "")
	tel, err := New(false, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = tel.Shutdown(context.Background()) })
	u, err := tel.Unit(context.Background(), name)
	if err != nil {
		t.Fatal(err)
	}
	return u
}

func TestSpansWithoutExporter(t *testing.T) {
	// No endpoint: spans are not recorded, yet carry ids for log lines and
	// the next hop, which learns that nothing was sampled.
	u := unitWithoutExporter(t, "productsvc")
	ctx, parent := u.Tracer.Tracer("test").Start(context.Background(), "parent")
	defer parent.End()
	_, child := u.Tracer.Tracer("test").Start(ctx, "child")
	defer child.End()
	p, c := parent.SpanContext(), child.SpanContext()
	switch {
	case parent.IsRecording() || child.IsRecording():
		t.Error("spans recorded with no exporter")
	case !p.IsValid() || !c.IsValid():
		t.Errorf("span contexts without ids: %v, %v", p, c)
	case c.TraceID() != p.TraceID() || c.SpanID() == p.SpanID():
		t.Errorf("child %v does not continue parent %v", c, p)
	case c.IsSampled():
		t.Error("an unrecorded span says it is sampled")
	}
}

func TestSettings(t *testing.T) {
	t.Run("OTEL_SDK_DISABLED makes no spans", func(t *testing.T) {
		t.Setenv("OTEL_SDK_DISABLED", "true")
		tel, err := New(false, slog.New(slog.DiscardHandler))
		if err != nil {
			t.Fatal(err)
		}
		u, err := tel.Unit(context.Background(), "gateway")
		if err != nil {
			t.Fatal(err)
		}
		if attrs := resourceOf(t, u); attrs != nil {
			t.Errorf("a span records with OTEL_SDK_DISABLED=true")
		}
	})
	t.Run("an unsupported protocol is refused, naming its variable", func(t *testing.T) {
		t.Setenv("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "http/json")
		_, err := New(false, slog.New(slog.DiscardHandler))
		if err == nil || !strings.Contains(err.Error(), "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL") {
			t.Fatalf("New = %v, want an error naming OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", err)
		}
	})
	t.Run("no endpoint: spans record, nothing is exported", func(t *testing.T) {
		tel, err := New(false, slog.New(slog.DiscardHandler))
		if err != nil {
			t.Fatal(err)
		}
		if tel.exporting() {
			t.Fatal("exporting without an endpoint")
		}
		t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:1")
		if !tel.exporting() {
			t.Fatal("not exporting with OTEL_EXPORTER_OTLP_ENDPOINT set")
		}
		t.Setenv("OTEL_TRACES_EXPORTER", "none")
		if tel.exporting() {
			t.Fatal("exporting with OTEL_TRACES_EXPORTER=none")
		}
	})
}

func TestLogHandler(t *testing.T) {
	var buf bytes.Buffer
	log := slog.New(LogHandler(slog.NewJSONHandler(&buf, nil))).With("unit", "gateway")
	tp := sdktrace.NewTracerProvider()
	ctx, span := tp.Tracer("test").Start(context.Background(), "call")
	log.InfoContext(WithRequestID(ctx, "req-1"), "inside")
	span.End()
	log.Info("outside")
	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	sc := trace.SpanContextFromContext(ctx)
	if !strings.Contains(lines[0], `"trace_id":"`+sc.TraceID().String()+`"`) || !strings.Contains(lines[0], `"span_id":"`+sc.SpanID().String()+`"`) ||
		!strings.Contains(lines[0], `"request_id":"req-1"`) || !strings.Contains(lines[0], `"unit":"gateway"`) {
		t.Errorf("line inside a span: %s", lines[0])
	}
	if strings.Contains(lines[1], "trace_id") {
		t.Errorf("line outside any span has a trace id: %s", lines[1])
	}
}

func TestCarrierWithoutExporter(t *testing.T) {
	// With no exporter the units make no RPC spans but carry the trace
	// context: the server continues the client's trace.
	u := unitWithoutExporter(t, "gateway")
	if u.exporting {
		t.Fatal("exporting without an endpoint")
	}
	ctx, span := u.Tracer.Tracer("test").Start(context.Background(), "request")
	defer span.End()
	var sent metadata.MD
	invoker := func(ctx context.Context, _ string, _, _ any, _ *grpc.ClientConn, _ ...grpc.CallOption) error {
		sent, _ = metadata.FromOutgoingContext(ctx)
		return nil
	}
	if err := carryClient(ctx, "/x.Y/Z", nil, nil, nil, invoker); err != nil {
		t.Fatal(err)
	}
	if len(sent.Get("traceparent")) != 1 {
		t.Fatalf("outgoing metadata %v: want one traceparent", sent)
	}
	var got trace.SpanContext
	handler := func(ctx context.Context, _ any) (any, error) {
		got = trace.SpanContextFromContext(ctx)
		return nil, nil
	}
	if _, err := carryServer(metadata.NewIncomingContext(context.Background(), sent), nil, &grpc.UnaryServerInfo{}, handler); err != nil {
		t.Fatal(err)
	}
	want := span.SpanContext()
	if got.TraceID() != want.TraceID() || got.SpanID() != want.SpanID() || !got.IsRemote() {
		t.Errorf("server side %v: want the remote parent %v", got, want)
	}
	// No trace context: nothing sent, nothing continued.
	if err := carryClient(context.Background(), "/x.Y/Z", nil, nil, nil, invoker); err != nil || len(sent) > 0 {
		t.Errorf("metadata sent without a trace: %v, %v", sent, err)
	}
	bad := metadata.NewIncomingContext(context.Background(), metadata.Pairs("traceparent", "garbage"))
	if sc := trace.SpanContextFromContext(extractTrace(bad)); sc.IsValid() {
		t.Errorf("a malformed traceparent continued: %v", sc)
	}
}
