package kafkatransport

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"runtime"
	"strings"
	"sync"
	"time"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"
)

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
//     idempotent producer costs a third of the throughput. Publishers turn it
//     on, since events of one key must keep their order.
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
}

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
// thread, so Go pauses do not count against it.
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
	return &m
}

func (c *config) producerConfig(fixed kafka.ConfigMap) *kafka.ConfigMap {
	return c.clientConfig(producerDefaults, consumerOnly, fixed)
}

func (c *config) consumerConfig(group string, fixed kafka.ConfigMap) *kafka.ConfigMap {
	f := kafka.ConfigMap{"group.id": group}
	maps.Copy(f, fixed)
	return c.clientConfig(consumerDefaults, producerOnly, f)
}

// forwardLogs copies librdkafka's log lines to the logger until the returned
// stop function is called, after every Kafka client of the role is closed.
// Informational lines are logged at debug level.
func (c *config) forwardLogs() (stop func()) {
	done := make(chan struct{})
	finished := make(chan struct{})
	go func() {
		defer close(finished)
		for {
			select {
			case e := <-c.logs:
				level := slog.LevelDebug
				switch {
				case e.Level <= 3:
					level = slog.LevelError
				case e.Level == 4:
					level = slog.LevelWarn
				}
				c.logger.Log(context.Background(), level, "librdkafka: "+e.Message, "client", e.Name, "tag", e.Tag)
			case <-done:
				return
			}
		}
	}()
	return func() { close(done); <-finished }
}

// topic returns name with the configured prefix.
func (c *config) topic(name string) string { return c.topicPrefix + name }

// newInstanceID returns 8 random bytes in hex.
func newInstanceID() string {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// adminTimeout bounds an admin request whose context has no deadline, so
// that a start against unreachable brokers fails with a clear error instead
// of waiting forever.
const adminTimeout = 30 * time.Second

// topicEnsurer creates missing topics once per topic and name.
type topicEnsurer struct {
	admin *kafka.AdminClient
	cfg   *config
	mu    sync.Mutex
	done  map[string]bool
}

func newTopicEnsurer(admin *kafka.AdminClient, cfg *config) *topicEnsurer {
	return &topicEnsurer{admin: admin, cfg: cfg, done: map[string]bool{}}
}

// ensure creates each missing topic with the given partition count. Topics
// that exist already are left as they are.
func (e *topicEnsurer) ensure(ctx context.Context, partitions int, topics ...string) error {
	e.mu.Lock()
	var specs []kafka.TopicSpecification
	for _, t := range topics {
		if !e.done[t] {
			specs = append(specs, kafka.TopicSpecification{Topic: t, NumPartitions: partitions, ReplicationFactor: e.cfg.replicationFactor})
		}
	}
	e.mu.Unlock()
	if len(specs) == 0 {
		return nil
	}
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, adminTimeout)
		defer cancel()
	}
	res, err := e.admin.CreateTopics(ctx, specs)
	if err != nil {
		return fmt.Errorf("create topics %v on %s (are the brokers reachable?): %w", topics, e.cfg.brokers, err)
	}
	var errs []error
	e.mu.Lock()
	defer e.mu.Unlock()
	for _, r := range res {
		code := r.Error.Code()
		if code == kafka.ErrNoError || code == kafka.ErrTopicAlreadyExists {
			e.done[r.Topic] = true
			continue
		}
		errs = append(errs, fmt.Errorf("create topic %q: %w", r.Topic, r.Error))
	}
	return errors.Join(errs...)
}

// partitionCount returns the number of partitions of topic.
func partitionCount(admin *kafka.AdminClient, topic string, timeoutMs int) (int, error) {
	md, err := admin.GetMetadata(&topic, false, timeoutMs)
	if err != nil {
		return 0, fmt.Errorf("metadata of %q: %w", topic, err)
	}
	t, ok := md.Topics[topic]
	if !ok || t.Error.Code() != kafka.ErrNoError || len(t.Partitions) == 0 {
		return 0, fmt.Errorf("metadata of %q: topic not found (%v)", topic, t.Error)
	}
	return len(t.Partitions), nil
}

// retry runs fn until it succeeds or ctx ends, backing off from 20ms to 1s,
// and returns fn's last error. It covers what a freshly created topic lacks
// for a moment on real Kafka: metadata and partition leaders.
func retry(ctx context.Context, fn func() error) error {
	backoff := 20 * time.Millisecond
	for {
		err := fn()
		if err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return err
		case <-time.After(backoff):
		}
		backoff = min(backoff*2, time.Second)
	}
}

// serviceOf returns "pkg.Service" of "/pkg.Service/Method".
func serviceOf(fullMethod string) string {
	s := strings.TrimPrefix(fullMethod, "/")
	if i := strings.LastIndexByte(s, '/'); i >= 0 {
		return s[:i]
	}
	return s
}

// maxPollBurst bounds how many records pollBurst takes without blocking.
const maxPollBurst = 64

// pollBurst waits up to 100ms for an event of c, then takes every event
// already fetched (up to maxPollBurst, and none more once stop, if not nil,
// reports true), passing each to handle. handle reports whether it woke or
// started a goroutine; if any did, pollBurst yields the processor before
// returning, so that they run now rather than queued behind the next Poll,
// which blocks this goroutine in cgo (about 100µs a call otherwise). Started
// together, they produce together, and librdkafka sends what they produce in
// one request. A handle error ends the burst and is returned.
func pollBurst(c *kafka.Consumer, stop func() bool, handle func(kafka.Event) (bool, error)) error {
	woke := false
	for n, ev := 1, c.Poll(100); ev != nil; n++ {
		w, err := handle(ev)
		woke = woke || w
		if err != nil {
			return err
		}
		if n == maxPollBurst || (stop != nil && stop()) {
			break
		}
		ev = c.Poll(0)
	}
	if woke {
		runtime.Gosched()
	}
	return nil
}
