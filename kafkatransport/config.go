package kafkatransport

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"log/slog"
	"maps"
	"time"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc"
	"google.golang.org/grpc/stats"
)

// DefaultPartitions is the partition count of the request and event topics
// a Server, Publisher or Subscriber creates when WithPartitions is not given.
const DefaultPartitions = 6

// config is the union of every role's settings.
type config struct {
	brokers            string
	kafka              kafka.ConfigMap
	logger             *slog.Logger
	topicPrefix        string
	partitions         int
	replicationFactor  int
	callRetention      time.Duration
	replyTopic         string
	replyTopics        []string // servers: the reply topics they answer to
	guard              Guard
	replyPartitions    int
	replyPartition     int32
	defaultTimeout     time.Duration
	clientInterceptors []grpc.UnaryClientInterceptor
	serverInterceptors []grpc.UnaryServerInterceptor
	streamClientICs    []grpc.StreamClientInterceptor
	streamServerICs    []grpc.StreamServerInterceptor
	streamWindow       uint64
	streamWindowBytes  uint64
	streamHeartbeat    time.Duration
	maxStreams         int
	maxConcurrency     int
	drainTimeout       time.Duration
	stallTimeout       time.Duration
	instanceID         string
	eventAttempts      int
	eventBackoff       time.Duration
	eventMaxBackoff    time.Duration
	retry              RetryPolicy // clients' unary calls
	logs               chan kafka.LogEvent
	metrics            Metrics
	statistics         bool // librdkafka statistics go to metrics
	statsHandlers      []stats.Handler
	tracer             trace.Tracer // events' spans; nil for none
}

// newConfig returns the defaults with opts applied by apply, the method of
// the role's option type (ServerOption.applyServer, ...). It returns the
// errors of every invalid option together.
func newConfig[O any](brokers string, opts []O, apply func(O, *config) error) (config, error) {
	c := config{
		brokers:           brokers,
		logger:            slog.New(slog.DiscardHandler),
		partitions:        DefaultPartitions,
		replicationFactor: -1,
		callRetention:     DefaultCallRetention,
		replyTopic:        "kgrpc.replies",
		replyPartitions:   16,
		replyPartition:    -1,
		defaultTimeout:    30 * time.Second,
		maxConcurrency:    256,
		streamWindow:      DefaultStreamWindow,
		streamWindowBytes: DefaultStreamWindowBytes,
		streamHeartbeat:   DefaultStreamHeartbeat,
		maxStreams:        DefaultMaxStreams,
		metrics:           nopMetrics{},
		drainTimeout:      30 * time.Second,
		stallTimeout:      DefaultStallTimeout,
		eventAttempts:     4,
		eventBackoff:      100 * time.Millisecond,
		eventMaxBackoff:   5 * time.Second,
		retry:             DefaultRetryPolicy(),
	}
	var errs []error
	for _, o := range opts {
		if any(o) == nil {
			errs = append(errs, errors.New("kafkatransport: nil option"))
			continue
		}
		if err := apply(o, &c); err != nil {
			errs = append(errs, err)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return config{}, err
	}
	if c.instanceID == "" {
		c.instanceID = newInstanceID()
	}
	c.logs = make(chan kafka.LogEvent, 256)
	return c, nil
}

// producerDefaults are the librdkafka producer settings of the transport's
// requests and replies; WithKafkaConfig overrides any of them. They favour
// latency without giving up batching under load:
//
//   - linger.ms=0: send at once; under load librdkafka still batches what
//     queues while requests are in flight.
//   - max.in.flight.requests.per.connection=2: few enough produce requests in
//     flight that records queue up and share requests under load (unbounded,
//     every record went out alone: four times the broker requests).
//   - sticky.partitioning.linger.ms=10: keyless records stick to one
//     partition for 10ms instead of each going to a random one.
//   - socket.nagle.disable=true: no Nagle delays on small requests.
//   - acks=all. Idempotence is off: a call is at-least-once anyway, and the
//     idempotent producer costs a third of the throughput. The price: with
//     two requests in flight, a retried batch can be stored after the next
//     one, so calls a client makes concurrently with one partition key may
//     be handled out of order (calls made one after another keep theirs).
//     Publishers turn it on, since events of one key must keep their order.
var producerDefaults = kafka.ConfigMap{
	"linger.ms":                             0,
	"max.in.flight.requests.per.connection": 2,
	"sticky.partitioning.linger.ms":         10,
	"socket.nagle.disable":                  true,
	"acks":                                  "all",
	"enable.idempotence":                    false,
	// Delivery reports only need the error and our opaque: copying key and
	// value back into Go for each one is wasted work.
	"go.delivery.report.fields": "none",
	// confluent-kafka-go allocates both channels whole, a million entries
	// (16 MB) each by default, and the garbage collector scans them on every
	// cycle. Delivery reports are read as they come, and Produce does not
	// use the produce channel at all.
	"go.events.channel.size":  8192,
	"go.produce.channel.size": 1,
	// See reconnectBackoffMaxMs.
	"reconnect.backoff.max.ms": reconnectBackoffMaxMs,
}

// reconnectBackoffMaxMs caps librdkafka's wait between attempts to
// reconnect to a broker, 10s by default. The wait starts at
// reconnect.backoff.ms (100ms) and doubles on every failed attempt, so
// after an outage of a few seconds each connection retries only every
// 10s (±25%), and a client went on failing for up to 10s after the
// broker was back. Measured against a single-node Apache Kafka 4.1 stopped
// for 20s (internal/faulttest's TestMeasureReconnect, FAULT_MEASURE=1): a
// consumer reading an assigned partition, like a client's reply consumer,
// read again 3.8s after the broker answered with the default and 0.16-0.25s
// with 1s; a group member, like a server's request consumer, 9.0-9.2s
// and 6.6-6.7s; a producer 0.2-0.4s either way (it connects when it has
// records to send). A connection attempt costs a refused TCP connect while
// the broker is down, so once a second is cheap.
//
// What is left for a group member is the broker's, not librdkafka's: the
// member's session times out during the outage (session.timeout.ms, 6s),
// librdkafka then drops its member id, and the restarted coordinator, which
// loaded the group with the old member in it, holds the new JoinGroup until
// that member's session expires, session.timeout.ms after the load. Static
// membership (group.instance.id) would let the member take its old place at
// once (2.8s in the same measurement), but a static member does not leave
// the group when it closes, so a stopped instance's partitions would wait
// out its session instead of moving at once; the transport keeps dynamic
// membership.
const reconnectBackoffMaxMs = 1000

// publisherDefaults keep the events of one key in order through retries:
// the idempotent producer.
var publisherDefaults = func() kafka.ConfigMap {
	m := maps.Clone(producerDefaults)
	m["enable.idempotence"] = true
	delete(m, "max.in.flight.requests.per.connection")
	return m
}()

// DefaultProducerConfig returns a copy of the librdkafka settings the
// transport's request and reply producers start from.
func DefaultProducerConfig() kafka.ConfigMap { return maps.Clone(producerDefaults) }

// DefaultConsumerConfig returns a copy of the librdkafka settings the
// transport's consumers start from.
func DefaultConsumerConfig() kafka.ConfigMap { return maps.Clone(consumerDefaults) }

// consumerDefaults are the librdkafka consumer settings the transport starts
// from; WithKafkaConfig overrides any of them. Fetches return as soon as one
// byte is there, and the broker holds an empty fetch for at most 100ms.
// session.timeout.ms=6000, the least a broker accepts by default
// (group.min.session.timeout.ms), bounds how long the partitions of an
// instance that died stay unserved; heartbeats come from librdkafka's own
// thread, so Go pauses do not count against it. reconnect.backoff.max.ms=1000:
// see reconnectBackoffMaxMs.
var consumerDefaults = kafka.ConfigMap{
	"socket.nagle.disable":               true,
	"fetch.wait.max.ms":                  100,
	"fetch.min.bytes":                    1,
	"fetch.queue.backoff.ms":             0,
	"enable.partition.eof":               false,
	"go.logs.channel.enable":             false,
	"auto.offset.reset":                  "earliest",
	"enable.auto.commit":                 true,
	"enable.auto.offset.store":           false,
	"auto.commit.interval.ms":            500,
	"session.timeout.ms":                 6000,
	"heartbeat.interval.ms":              1000,
	"partition.assignment.strategy":      "cooperative-sticky",
	"topic.metadata.refresh.interval.ms": 10000,
	"reconnect.backoff.max.ms":           reconnectBackoffMaxMs,
}

// producerOnly and consumerOnly name librdkafka properties that the other
// kind of client rejects or warns about, so WithKafkaConfig can hold both.
var producerOnly = []string{"linger.ms", "sticky.partitioning.linger.ms", "max.in.flight.requests.per.connection", "max.in.flight", "queue.buffering.max.ms", "acks", "request.required.acks",
	"enable.idempotence", "batch.size", "batch.num.messages", "compression.type", "compression.codec",
	"message.timeout.ms", "delivery.timeout.ms", "retries", "message.send.max.retries",
	"queue.buffering.max.messages", "queue.buffering.max.kbytes", "go.delivery.reports", "go.produce.channel.size", "go.events.channel.size",
	"go.delivery.report.fields"}

var consumerOnly = []string{"fetch.wait.max.ms", "fetch.min.bytes", "fetch.queue.backoff.ms",
	"enable.partition.eof", "auto.offset.reset", "enable.auto.commit", "enable.auto.offset.store",
	"auto.commit.interval.ms", "session.timeout.ms", "heartbeat.interval.ms", "partition.assignment.strategy",
	"group.id", "group.instance.id", "max.poll.interval.ms", "isolation.level", "go.application.rebalance.enable",
	"fetch.max.bytes", "max.partition.fetch.bytes"}

// clientConfig merges defaults, the caller's properties and the fixed
// settings of one client, dropping properties meant for the other kind.
func (c *config) clientConfig(defaults kafka.ConfigMap, drop []string, fixed kafka.ConfigMap) *kafka.ConfigMap {
	m := kafka.ConfigMap{}
	maps.Copy(m, defaults)
	maps.Copy(m, c.kafka)
	for _, k := range drop {
		delete(m, k)
	}
	maps.Copy(m, fixed)
	m["bootstrap.servers"] = c.brokers
	m["go.logs.channel.enable"] = true
	m["go.logs.channel"] = c.logs
	if _, ok := m["client.id"]; !ok {
		m["client.id"] = "kgrpc-" + c.instanceID
	}
	if _, ok := m["statistics.interval.ms"]; !ok && c.statistics {
		m["statistics.interval.ms"] = int(DefaultStatisticsInterval / time.Millisecond)
	}
	return &m
}

// producerConfig is the configuration of a producer with defaults (the
// transport's or the publishers'). Whatever WithKafkaConfig says, it never
// lets the broker create a topic: each role creates its own topics (see
// doc.go), so a request to a service that is not running, or a reply to a
// reply topic no client made, does not create one.
func (c *config) producerConfig(defaults kafka.ConfigMap) *kafka.ConfigMap {
	return c.clientConfig(defaults, consumerOnly, kafka.ConfigMap{"allow.auto.create.topics": false})
}

// consumerConfig is the configuration of a consumer in group, with fixed
// on top. Whatever WithKafkaConfig says, it stores offsets only when told:
// a request or event is stored once handled, and with librdkafka storing
// every polled record's offset the records still waiting or running would
// be committed, and lost in a crash.
func (c *config) consumerConfig(group string, fixed kafka.ConfigMap) *kafka.ConfigMap {
	f := kafka.ConfigMap{"group.id": group, "enable.auto.offset.store": false}
	maps.Copy(f, fixed)
	return c.clientConfig(consumerDefaults, producerOnly, f)
}

// topic returns name with the configured prefix.
func (c *config) topic(name string) string { return c.topicPrefix + name }

// newInstanceID returns 8 random bytes in hex.
func newInstanceID() string {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}
