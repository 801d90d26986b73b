package kafkatransport

import (
	"context"
	"strconv"
	"time"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc/stats"
	"google.golang.org/grpc/status"
)

// Metrics receives the transport's own measurements, the facts of Kafka
// that gRPC metrics do not have. Every method is called on the hot path
// and from many goroutines at once: implementations must be fast and
// safe for concurrent use. kafkatransport/kafkaprom implements it for
// Prometheus.
type Metrics interface {
	// RequestStarted and RequestEnded bracket each request a Server runs
	// the handler of (service is its full protobuf name).
	RequestStarted(service string)
	RequestEnded(service string)
	// RequestExpired counts a request a Server dropped without running it
	// because its deadline had passed: its caller had given up.
	RequestExpired(service string)
	// CallStarted and CallEnded bracket each call a ClientConn sent and
	// waits for; wait runs from the request's send to the call's end, and
	// replied says whether a reply ended it (rather than the deadline, a
	// cancellation or a transport failure).
	CallStarted(service string)
	CallEnded(service string, wait time.Duration, replied bool)
	// DeadLettered counts a record a Server or Subscriber copied to its
	// dead-letter topic; topic is the record's own topic.
	DeadLettered(topic string)
	// PartitionsAssigned reports how many partitions of its request topic
	// a Server's instance holds after each rebalance of its group; 0 is an
	// instance that stands by, the group having more members than the
	// topic has partitions.
	PartitionsAssigned(topic string, n int)
	// KafkaStatistics receives the statistics of one librdkafka client of
	// the role, the JSON document librdkafka emits every
	// statistics.interval.ms (DefaultStatisticsInterval unless
	// WithKafkaConfig sets it). group is the consumer group of a group
	// consumer (a server's request topic, a subscriber's group), else "".
	// It is called on the poll and delivery loops: keep the document and
	// read it later (kafkaprom parses it at scrape time).
	KafkaStatistics(group, json string)
}

// RetryMetrics is implemented by a Metrics that also counts retries.
// It is a separate interface so that a Metrics written before retries
// existed still compiles; a ClientConn calls it when its Metrics has it.
// kafkaprom.Metrics does.
type RetryMetrics interface {
	// CallRetried counts a request a ClientConn sends again for a call it
	// brackets (see RetryPolicy): reason is RetryUnsent (the request never
	// reached the broker), RetryUnavailable (the server answered
	// Unavailable) or RetryHedge (no reply within the hedge delay).
	CallRetried(service, reason string)
}

// DefaultStatisticsInterval is how often each Kafka client of a role
// given WithMetrics reports librdkafka's statistics, unless WithKafkaConfig
// sets statistics.interval.ms.
const DefaultStatisticsInterval = 5 * time.Second

// nopMetrics is the Metrics of a role without WithMetrics.
type nopMetrics struct{}

func (nopMetrics) RequestStarted(string)                 {}
func (nopMetrics) RequestEnded(string)                   {}
func (nopMetrics) RequestExpired(string)                 {}
func (nopMetrics) CallStarted(string)                    {}
func (nopMetrics) CallEnded(string, time.Duration, bool) {}
func (nopMetrics) DeadLettered(string)                   {}
func (nopMetrics) PartitionsAssigned(string, int)        {}
func (nopMetrics) KafkaStatistics(string, string)        {}

// WithMetrics sends the role's measurements to m, not nil, and makes its
// Kafka clients report librdkafka's statistics to it. Default: none. All
// roles.
func WithMetrics(m Metrics) Option {
	return option(func(c *config) error {
		if m == nil {
			return invalid("WithMetrics", "nil", "a Metrics")
		}
		c.metrics, c.statistics = m, true
		return nil
	})
}

// RPCOption configures the roles that carry calls: ClientConn and Server.
type RPCOption struct{ set setting }

func (o RPCOption) applyClient(c *config) error { return o.set.run(c) }
func (o RPCOption) applyServer(c *config) error { return o.set.run(c) }

// WithStatsHandler installs a grpc-go stats.Handler, not nil, as
// grpc.WithStatsHandler and grpc.StatsHandler do over HTTP/2: every call a
// ClientConn makes, and every request a Server runs, is tagged (TagRPC)
// and reported: on a client Begin, OutHeader, OutPayload, then InHeader,
// InPayload and InTrailer once a reply came, and End; on a server
// InHeader (the request's metadata), Begin, OutHeader and OutTrailer when
// the handler set them, and End. So otelgrpc.NewClientHandler and NewServerHandler make
// their spans and metrics over Kafka. The handler sits inside the
// interceptors, as in grpc-go: a retrying interceptor makes one tagged call
// per attempt. The transport's own retries and hedges (WithRetry) stay
// inside one tagged call: its OutHeader and OutPayload are those of the
// first attempt, and its span gets a "kgrpc.retry" event (with
// kgrpc.retry.reason) for each later one and the kgrpc.attempts attribute. On the span in the tagged context (OpenTelemetry's) the
// transport records the Kafka facts of the call: messaging.system "kafka",
// messaging.destination.name (the request topic), the request's partition
// and offset (messaging.destination.partition.id,
// messaging.kafka.offset; on a client, when the broker acknowledged the
// request before the reply came) and its correlation id
// (messaging.message.id). Several may be given; they run in order.
// Default: none. Client, Server.
func WithStatsHandler(h stats.Handler) RPCOption {
	return RPCOption{func(c *config) error {
		if h == nil {
			return invalid("WithStatsHandler", "nil", "a stats.Handler")
		}
		c.statsHandlers = append(c.statsHandlers, h)
		return nil
	}}
}

// EventOption configures the roles that carry events: Publisher and
// Subscriber.
type EventOption struct{ set setting }

func (o EventOption) applyPublisher(c *config) error  { return o.set.run(c) }
func (o EventOption) applySubscriber(c *config) error { return o.set.run(c) }

// WithTracerProvider makes OpenTelemetry spans for events with tp, not
// nil: a Publisher starts a producer span "send <topic>" in the
// publishing context and writes its W3C trace context into the record's
// traceparent and tracestate headers; a Subscriber runs each handler in a
// consumer span "process <topic>" that links to the trace context the
// record carries (a link rather than a parent: an event outlives the call
// that wrote it, and one call's events may be consumed much later).
// Without it, a Publisher copies the traceparent of the publishing
// context's outgoing metadata, and a Subscriber passes a record's trace
// context to its handler as incoming metadata only. Default: none.
// Publisher, Subscriber.
func WithTracerProvider(tp trace.TracerProvider) EventOption {
	return EventOption{func(c *config) error {
		if tp == nil {
			return invalid("WithTracerProvider", "nil", "a TracerProvider")
		}
		c.tracer = tp.Tracer(tracerName)
		return nil
	}}
}

// tracerName is the instrumentation scope of the transport's own spans.
const tracerName = "github.com/kgrpc/platform/kafkatransport"

// Attribute keys of the Kafka facts on spans (OpenTelemetry semantic
// conventions for messaging).
var (
	attrMessagingSystem = attribute.String("messaging.system", "kafka")
	keyDestination      = attribute.Key("messaging.destination.name")
	keyPartition        = attribute.Key("messaging.destination.partition.id")
	keyOffset           = attribute.Key("messaging.kafka.offset")
	keyMessageID        = attribute.Key("messaging.message.id")
	keyConsumerGroup    = attribute.Key("messaging.consumer.group.name")
	keyOperationType    = attribute.Key("messaging.operation.type")
	// The attempts of a call the client sent more than one request for,
	// and, on the event of each retry or hedge, its reason.
	keyAttempts    = attribute.Key("kgrpc.attempts")
	keyRetryReason = attribute.Key("kgrpc.retry.reason")
)

// Attributes of the RPC semantic conventions the transport sets itself,
// whatever convention its stats handler follows: otelgrpc's current one
// has rpc.system.name, rpc.method and rpc.response.status_code but not
// these.
var (
	attrRPCSystem = attribute.String("rpc.system", "grpc")
	keyRPCService = attribute.Key("rpc.service")
	keyRPCCode    = attribute.Key("rpc.grpc.status_code")
)

// recordCall sets the RPC attributes of a call's span that otelgrpc may
// not: rpc.system, rpc.service and, once it ended with err,
// rpc.grpc.status_code.
func recordCall(span trace.Span, method string, err error) {
	if span.IsRecording() {
		span.SetAttributes(attrRPCSystem, keyRPCService.String(serviceOf(method)), keyRPCCode.Int(int(status.Code(err))))
	}
}

// multiStats runs stats handlers in order.
type multiStats []stats.Handler

func (m multiStats) TagRPC(ctx context.Context, info *stats.RPCTagInfo) context.Context {
	for _, h := range m {
		ctx = h.TagRPC(ctx, info)
	}
	return ctx
}

func (m multiStats) HandleRPC(ctx context.Context, s stats.RPCStats) {
	for _, h := range m {
		h.HandleRPC(ctx, s)
	}
}

// statsHandler returns the configured stats handlers as one, or nil.
func (c *config) statsHandler() rpcStats {
	switch len(c.statsHandlers) {
	case 0:
		return nil
	case 1:
		return c.statsHandlers[0]
	}
	return multiStats(c.statsHandlers)
}

// tagRPC tags a call with sh and returns the tagged context and the span
// the tagging started, or a span that records nothing when it started none
// (a handler filtered the call out, or makes no spans): the span in the
// context is then the caller's, which the call's facts must not land on.
func tagRPC(ctx context.Context, sh rpcStats, info *stats.RPCTagInfo) (context.Context, trace.Span) {
	before := trace.SpanContextFromContext(ctx)
	ctx = sh.TagRPC(ctx, info)
	span := trace.SpanFromContext(ctx)
	if sc := span.SpanContext(); !sc.IsValid() || sc.SpanID() == before.SpanID() {
		return ctx, noSpan
	}
	return ctx, span
}

// noSpan records nothing.
var noSpan = trace.SpanFromContext(context.Background())

// rpcStats is the part of stats.Handler the transport calls: it has no
// connections to tag.
type rpcStats interface {
	TagRPC(context.Context, *stats.RPCTagInfo) context.Context
	HandleRPC(context.Context, stats.RPCStats)
}

// recordLocation sets the messaging attributes of a record on span, when
// it records: the system and destination when topic is not empty, the
// partition and offset when not negative, the id when not empty, and
// extra.
func recordLocation(span trace.Span, topic string, partition int32, offset int64, id string, extra ...attribute.KeyValue) {
	if !span.IsRecording() {
		return
	}
	attrs := make([]attribute.KeyValue, 0, 5+len(extra))
	if topic != "" {
		attrs = append(attrs, attrMessagingSystem, keyDestination.String(topic))
	}
	if partition >= 0 {
		attrs = append(attrs, keyPartition.String(strconv.Itoa(int(partition))))
	}
	if offset >= 0 {
		attrs = append(attrs, keyOffset.Int64(offset))
	}
	if id != "" {
		attrs = append(attrs, keyMessageID.String(id))
	}
	span.SetAttributes(append(attrs, extra...)...)
}

// traceContext is the W3C trace context format of the traceparent and
// tracestate headers (doc.go).
var traceContext propagation.TraceContext

// headerCarrier reads and writes the trace context headers of a record.
type headerCarrier struct{ hs *[]kafka.Header }

func (c headerCarrier) Get(key string) string {
	v, _ := header(*c.hs, key)
	return string(v)
}

func (c headerCarrier) Set(key, value string) {
	for i, h := range *c.hs {
		if h.Key == key {
			(*c.hs)[i].Value = []byte(value)
			return
		}
	}
	*c.hs = append(*c.hs, kafka.Header{Key: key, Value: []byte(value)})
}

func (c headerCarrier) Keys() []string {
	keys := make([]string, len(*c.hs))
	for i, h := range *c.hs {
		keys[i] = h.Key
	}
	return keys
}

// startSend starts the producer span of an event published to topic and
// writes its trace context into headers.
func (c *config) startSend(ctx context.Context, topic, id string, headers *[]kafka.Header) (context.Context, trace.Span) {
	ctx, span := c.tracer.Start(ctx, "send "+topic, trace.WithSpanKind(trace.SpanKindProducer),
		trace.WithAttributes(attrMessagingSystem, keyDestination.String(topic), keyOperationType.String("send"), keyMessageID.String(id)))
	traceContext.Inject(ctx, headerCarrier{headers})
	return ctx, span
}

// startProcess starts the consumer span of handling the event m in a
// subscriber's group, linked to the trace context m carries.
func (c *config) startProcess(ctx context.Context, group string, m *kafka.Message, id string) (context.Context, trace.Span) {
	topic := *m.TopicPartition.Topic
	opts := []trace.SpanStartOption{trace.WithSpanKind(trace.SpanKindConsumer), trace.WithNewRoot(),
		trace.WithAttributes(attrMessagingSystem, keyDestination.String(topic), keyOperationType.String("process"),
			keyConsumerGroup.String(group), keyPartition.String(strconv.Itoa(int(m.TopicPartition.Partition))),
			keyOffset.Int64(int64(m.TopicPartition.Offset)), keyMessageID.String(id))}
	hs := m.Headers
	if sc := trace.SpanContextFromContext(traceContext.Extract(context.Background(), headerCarrier{&hs})); sc.IsValid() {
		opts = append(opts, trace.WithLinks(trace.Link{SpanContext: sc}))
	}
	return c.tracer.Start(ctx, "process "+topic, opts...)
}

// endSpan ends span with err's status.
func endSpan(span trace.Span, err error) {
	if err != nil {
		span.RecordError(err)
		span.SetStatus(codes.Error, err.Error())
	}
	span.End()
}
