// Package telemetry sets up what makes every call of a process visible:
// OpenTelemetry tracing configured by the standard OTEL_* environment
// variables, one Prometheus registry served on /metrics, and the
// instrumentation each unit gives its kafkatransport roles (otelgrpc's
// stats handlers, go-grpc-middleware's Prometheus interceptors,
// kafkaprom's Kafka facts).
//
// Tracing: spans are recorded and exported only when
// OTEL_EXPORTER_OTLP_TRACES_ENDPOINT or
// OTEL_EXPORTER_OTLP_ENDPOINT is set (and OTEL_TRACES_EXPORTER is not
// "none"; OTEL_SDK_DISABLED=true makes no spans at all, and log lines then
// carry a trace id only when the caller sent one), over OTEL_EXPORTER_OTLP_TRACES_PROTOCOL or
// OTEL_EXPORTER_OTLP_PROTOCOL: "http/protobuf" (the default) or "grpc".
// Without an exporter the units still carry the trace context (the
// gateway's span ids, sent on as traceparent, and the caller's on the
// services' side) so that every hop's log lines share one trace id, but
// make no RPC spans: interceptors only inject and extract traceparent. A request whose traceparent says sampled keeps that
// decision downstream.
// The exporters read their other OTEL_EXPORTER_OTLP_* variables (headers,
// timeout, TLS) themselves; OTEL_TRACES_SAMPLER and
// OTEL_TRACES_SAMPLER_ARG choose the sampler (default parentbased_always_on)
// and OTEL_RESOURCE_ATTRIBUTES adds resource attributes. Each unit's spans
// carry its own service.name (gateway, usersvc, productsvc, ordersvc); a
// one-unit binary lets OTEL_SERVICE_NAME override it, cmd/platform, where
// four units share a process, does not.
//
// The attribute names of RPC spans are otelgrpc's: by default the current
// semantic conventions (rpc.system.name, rpc.method
// "pkg.Service/Method", rpc.response.status_code);
// OTEL_SEMCONV_STABILITY_OPT_IN=rpc/dup adds the older rpc.system,
// rpc.service, rpc.method "Method" and rpc.grpc.status_code.
package telemetry

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"strings"
	"sync"

	grpcprom "github.com/grpc-ecosystem/go-grpc-middleware/providers/prometheus"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.opentelemetry.io/contrib/instrumentation/google.golang.org/grpc/otelgrpc"
	"go.opentelemetry.io/contrib/instrumentation/google.golang.org/grpc/otelgrpc/filters"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	metricnoop "go.opentelemetry.io/otel/metric/noop"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	semconv "go.opentelemetry.io/otel/semconv/v1.40.0"
	"go.opentelemetry.io/otel/trace"
	tracenoop "go.opentelemetry.io/otel/trace/noop"

	"github.com/kgrpc/platform/kafkatransport"
	"github.com/kgrpc/platform/kafkatransport/kafkaprom"
)

// Propagator is the trace context format of every hop: W3C traceparent
// and tracestate. Not baggage: the gateway takes the trace context from
// callers outside, and their baggage would go on, unchecked, into every
// service's metadata.
var Propagator propagation.TextMapPropagator = propagation.TraceContext{}

// Telemetry is one process's tracing and metrics.
type Telemetry struct {
	// Registry holds every metric of the process: Go runtime and process
	// metrics, and each unit's, labelled with the unit's name.
	Registry *prometheus.Registry

	shared bool // several units in the process: their names are fixed
	env    func(string) string

	mu        sync.Mutex
	providers []*sdktrace.TracerProvider
}

// New returns the telemetry of a process running one unit, or several
// when shared. It checks the OTEL_* variables it reads itself, and sends
// OpenTelemetry's own errors (a failed export) to logger. Call it once per
// process: OpenTelemetry's error handler is the process's.
func New(shared bool, logger *slog.Logger) (*Telemetry, error) {
	t := &Telemetry{Registry: prometheus.NewRegistry(), shared: shared, env: os.Getenv}
	if _, err := t.protocol(); err != nil {
		return nil, err
	}
	otel.SetErrorHandler(otel.ErrorHandlerFunc(func(err error) {
		logger.Warn("opentelemetry", "err", err)
	}))
	t.Registry.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return t, nil
}

// Handler serves the registry in the Prometheus text format; nil for a
// nil Telemetry.
func (t *Telemetry) Handler() http.Handler {
	if t == nil {
		return nil
	}
	return promhttp.HandlerFor(t.Registry, promhttp.HandlerOpts{Registry: t.Registry})
}

// exporting reports whether spans are exported: an OTLP endpoint is set.
func (t *Telemetry) exporting() bool {
	if t.env("OTEL_TRACES_EXPORTER") == "none" {
		return false
	}
	return t.env("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") != "" || t.env("OTEL_EXPORTER_OTLP_ENDPOINT") != ""
}

// disabled reports whether OTEL_SDK_DISABLED turns tracing off.
func (t *Telemetry) disabled() bool { return strings.EqualFold(t.env("OTEL_SDK_DISABLED"), "true") }

// protocol returns the OTLP protocol the environment asks for.
func (t *Telemetry) protocol() (string, error) {
	name := "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL"
	p := t.env(name)
	if p == "" {
		name = "OTEL_EXPORTER_OTLP_PROTOCOL"
		p = t.env(name)
	}
	switch p {
	case "", "http/protobuf":
		return "http/protobuf", nil
	case "grpc":
		return "grpc", nil
	}
	return "", fmt.Errorf("%s %q: want http/protobuf or grpc (http/json is not supported)", name, p)
}

// Unit is the instrumentation of one unit.
type Unit struct {
	// Name is the unit's name, its service.name unless overridden.
	Name string
	// Tracer makes the unit's spans.
	Tracer trace.TracerProvider
	// Registerer registers the unit's metrics, labelled unit=Name.
	Registerer prometheus.Registerer

	// exporting: its spans are recorded and exported, else its stats
	// handlers only carry the trace context (carrier).
	exporting bool

	kafka  *kafkaprom.Metrics
	server *grpcprom.ServerMetrics
	client *grpcprom.ClientMetrics
}

// Unit returns the instrumentation of the unit name; call it once per
// unit and process (its metrics are registered under its name). Its spans
// are exported until Shutdown.
func (t *Telemetry) Unit(ctx context.Context, name string) (*Unit, error) {
	tp, err := t.tracerProvider(ctx, name)
	if err != nil {
		return nil, err
	}
	reg := prometheus.WrapRegistererWith(prometheus.Labels{"unit": name}, t.Registry)
	u := &Unit{Name: name, Tracer: tp, Registerer: reg, kafka: kafkaprom.New(), exporting: t.exporting() && !t.disabled(),
		server: grpcprom.NewServerMetrics(grpcprom.WithServerHandlingTimeHistogram()),
		client: grpcprom.NewClientMetrics(grpcprom.WithClientHandlingTimeHistogram())}
	for _, c := range []prometheus.Collector{u.kafka, u.server, u.client} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("telemetry: register metrics of %s: %w", name, err)
		}
	}
	return u, nil
}

// tracerProvider returns the unit's tracer provider, exporting when the
// environment says so; one that makes no spans when OTEL_SDK_DISABLED is
// "true".
func (t *Telemetry) tracerProvider(ctx context.Context, name string) (trace.TracerProvider, error) {
	if t.disabled() {
		return tracenoop.NewTracerProvider(), nil
	}
	attrs := []resource.Option{resource.WithTelemetrySDK(), resource.WithAttributes(semconv.ServiceName(name))}
	if t.shared {
		attrs = append([]resource.Option{resource.WithFromEnv()}, attrs...) // the unit's name wins
	} else {
		attrs = append(attrs, resource.WithFromEnv()) // OTEL_SERVICE_NAME wins
	}
	res, err := resource.New(ctx, attrs...)
	if err != nil && !errors.Is(err, resource.ErrPartialResource) {
		return nil, fmt.Errorf("telemetry: resource: %w", err)
	}
	opts := []sdktrace.TracerProviderOption{sdktrace.WithResource(res)}
	if t.exporting() {
		exp, err := t.exporter(ctx)
		if err != nil {
			return nil, err
		}
		opts = append(opts, sdktrace.WithBatcher(exp))
	} else {
		// Spans that go nowhere are not recorded: they still carry trace
		// and span ids (for log lines and the next hop's traceparent, sent
		// unsampled) but cost no attributes, events or processing. A
		// sampled parent keeps its decision, for the hops that export.
		opts = append(opts, sdktrace.WithSampler(sdktrace.ParentBased(sdktrace.NeverSample())))
	}
	tp := sdktrace.NewTracerProvider(opts...)
	t.mu.Lock()
	t.providers = append(t.providers, tp)
	t.mu.Unlock()
	return tp, nil
}

// exporter returns the OTLP span exporter the environment configures.
func (t *Telemetry) exporter(ctx context.Context) (sdktrace.SpanExporter, error) {
	p, err := t.protocol()
	if err != nil {
		return nil, err
	}
	var exp sdktrace.SpanExporter
	if p == "grpc" {
		exp, err = otlptracegrpc.New(ctx)
	} else {
		exp, err = otlptracehttp.New(ctx)
	}
	if err != nil {
		return nil, fmt.Errorf("telemetry: OTLP %s exporter: %w", p, err)
	}
	return exp, nil
}

// Shutdown exports the spans still buffered, bounded by ctx, and stops
// every unit's tracer provider. A nil Telemetry has none.
func (t *Telemetry) Shutdown(ctx context.Context) error {
	if t == nil {
		return nil
	}
	t.mu.Lock()
	providers := t.providers
	t.providers = nil
	t.mu.Unlock()
	var errs []error
	for _, tp := range providers {
		errs = append(errs, tp.Shutdown(ctx))
	}
	return errors.Join(errs...)
}

// Transport returns the option that instruments every role of the unit:
// its Kafka facts (kafkaprom).
func (u *Unit) Transport() kafkatransport.Option {
	return kafkatransport.WithMetrics(u.kafka)
}

// Events returns the options that trace a unit's publishers and
// subscribers.
func (u *Unit) Events() kafkatransport.EventOption {
	return kafkatransport.WithTracerProvider(u.Tracer)
}

// Server returns the options that instrument a unit's transport server:
// otelgrpc's server spans (when exported; else an interceptor that only
// carries the trace context, see carryServer) and go-grpc-middleware's
// grpc_server_* metrics (interceptors: put them first).
//
// Streams, which the transport's stats handlers do not see, carry the
// trace context with interceptors either way and get the same metrics.
func (u *Unit) Server() []kafkatransport.ServerOption {
	streams := kafkatransport.WithStreamServerInterceptors(carryServerStream, u.server.StreamServerInterceptor())
	if !u.exporting {
		return []kafkatransport.ServerOption{kafkatransport.WithUnaryServerInterceptors(carryServer, u.server.UnaryServerInterceptor()), streams}
	}
	return []kafkatransport.ServerOption{
		kafkatransport.WithStatsHandler(otelgrpc.NewServerHandler(u.otel()...)),
		kafkatransport.WithUnaryServerInterceptors(u.server.UnaryServerInterceptor()),
		streams,
	}
}

// Client returns the options that instrument a unit's transport client:
// otelgrpc's client spans (when exported; else an interceptor that only
// carries the trace context, see carryClient) and go-grpc-middleware's
// grpc_client_* metrics.
func (u *Unit) Client() []kafkatransport.ClientOption {
	streams := kafkatransport.WithStreamClientInterceptors(carryClientStream, u.client.StreamClientInterceptor())
	if !u.exporting {
		return []kafkatransport.ClientOption{kafkatransport.WithUnaryClientInterceptors(carryClient, u.client.UnaryClientInterceptor()), streams}
	}
	return []kafkatransport.ClientOption{
		kafkatransport.WithStatsHandler(otelgrpc.NewClientHandler(u.otel()...)),
		kafkatransport.WithUnaryClientInterceptors(u.client.UnaryClientInterceptor()),
		streams,
	}
}

// notHealth keeps health checks, which probes make every few seconds, out
// of the traces; grpc_* metrics still count them.
var notHealth = filters.Not(filters.ServiceName("grpc.health.v1.Health"))

// otel returns otelgrpc's options: the unit's tracer, our propagator, no
// OpenTelemetry metrics (Prometheus has them), no spans of health checks.
func (u *Unit) otel() []otelgrpc.Option {
	return []otelgrpc.Option{otelgrpc.WithTracerProvider(u.Tracer), otelgrpc.WithPropagators(Propagator),
		otelgrpc.WithMeterProvider(metricnoop.NewMeterProvider()), otelgrpc.WithFilter(notHealth)}
}
