package kafkatransport_test

// BenchmarkRawPingPong is the floor the transport's round-trip benchmarks are
// compared against: request-reply over plain confluent-kafka-go, with no
// protobuf, no interceptors, no deadlines and no offset tracking. Whatever
// BenchmarkTransport adds on top of these numbers is the transport's cost.
//
//	go test ./kafkatransport -run '^$' -bench RawPingPong -benchtime 3s
//
// The broker is kfake in-process unless KAFKA_BROKERS names a real cluster.
// RAW_PINGPONG_CONFIG overrides librdkafka properties of every client for
// experiments, e.g. RAW_PINGPONG_CONFIG='linger.ms=5,fetch.wait.max.ms=10'.

import (
	"context"
	"fmt"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"

	"github.com/kgrpc/platform/internal/kafkatest"
	"github.com/kgrpc/platform/kafkatransport"
)

// rawIDHeader carries the correlation id of a ping and its pong.
const rawIDHeader = "rpc-id"

// rawLowLatencyProducer returns the librdkafka producer settings of the
// ping-pong floor: exactly the transport's defaults
// (kafkatransport.DefaultProducerConfig documents them), so the comparison
// measures the transport's own cost and not different settings.
func rawLowLatencyProducer(brokers string) kafka.ConfigMap {
	m := kafkatransport.DefaultProducerConfig()
	m["bootstrap.servers"] = brokers
	m["log_level"] = 3
	return rawWithOverrides(m)
}

// rawLowLatencyConsumer returns the librdkafka consumer settings of the
// ping-pong floor: the transport's defaults, with auto-commit off since the
// floor commits nothing. librdkafka needs a group.id even for a consumer
// that only uses Assign; that group is never joined.
func rawLowLatencyConsumer(brokers, group string) kafka.ConfigMap {
	m := kafkatransport.DefaultConsumerConfig()
	m["bootstrap.servers"] = brokers
	m["group.id"] = group
	m["enable.auto.commit"] = false
	m["log_level"] = 3
	return rawWithOverrides(m)
}

// rawProducerOnly and rawConsumerOnly are the properties of
// RAW_PINGPONG_CONFIG that apply to one kind of client only.
var (
	rawProducerOnly = map[string]bool{"linger.ms": true, "sticky.partitioning.linger.ms": true, "max.in.flight.requests.per.connection": true, "queue.buffering.max.ms": true, "acks": true,
		"enable.idempotence": true, "batch.num.messages": true, "batch.size": true, "compression.type": true}
	rawConsumerOnly = map[string]bool{"fetch.wait.max.ms": true, "fetch.min.bytes": true,
		"fetch.queue.backoff.ms": true, "fetch.error.backoff.ms": true, "queued.min.messages": true}
)

// rawWithOverrides applies RAW_PINGPONG_CONFIG (k=v,k=v) to m, skipping
// properties meant for the other kind of client.
func rawWithOverrides(m kafka.ConfigMap) kafka.ConfigMap {
	_, producer := m["linger.ms"]
	for kv := range strings.SplitSeq(os.Getenv("RAW_PINGPONG_CONFIG"), ",") {
		k, v, ok := strings.Cut(strings.TrimSpace(kv), "=")
		if !ok || (producer && rawConsumerOnly[k]) || (!producer && rawProducerOnly[k]) {
			continue
		}
		m[k] = v
	}
	return m
}

// BenchmarkRawPingPong measures request-reply round trips over two
// one-partition topics: the client produces a ping, a server goroutine
// consumes it and produces the same value to pong, and the client's reader
// matches the pong to its caller by correlation id.
func BenchmarkRawPingPong(b *testing.B) {
	brokers := kafkatest.Brokers(b)
	prefix := kafkatest.TopicPrefix(b)
	ping, pong := prefix+"ping", prefix+"pong"
	rawCreateTopics(b, brokers, ping, pong)

	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	b.Cleanup(func() { cancel(); wg.Wait() })

	srv := rawNewServer(b, brokers, prefix+"server", ping, pong)
	wg.Go(func() { srv.run(ctx) })
	cli := rawNewClient(b, brokers, prefix+"client", ping, pong)
	wg.Go(func() { cli.run(ctx) })

	// Warm up: connections open, metadata cached, the server's group joined.
	payload := make([]byte, 100)
	for i := range 200 {
		wctx, wcancel := context.WithTimeout(ctx, 30*time.Second)
		err := cli.call(wctx, payload)
		wcancel()
		if err != nil {
			b.Fatalf("warm-up call %d: %v", i, err)
		}
	}
	for _, conc := range benchConcurrency {
		b.Run(fmt.Sprintf("conc=%d", conc), func(b *testing.B) {
			measureCalls(b, conc, func(ctx context.Context, _ int) error {
				return cli.call(ctx, payload)
			})
		})
	}
	if err := srv.err(); err != nil {
		b.Fatal(err)
	}
}

// rawCreateTopics creates one-partition topics with the admin client.
func rawCreateTopics(b testing.TB, brokers string, topics ...string) {
	b.Helper()
	cfg := kafka.ConfigMap{"bootstrap.servers": brokers, "log_level": 3}
	admin, err := kafka.NewAdminClient(&cfg)
	if err != nil {
		b.Fatal(err)
	}
	defer admin.Close()
	specs := make([]kafka.TopicSpecification, len(topics))
	for i, t := range topics {
		specs[i] = kafka.TopicSpecification{Topic: t, NumPartitions: 1, ReplicationFactor: -1}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	res, err := admin.CreateTopics(ctx, specs)
	if err != nil {
		b.Fatalf("CreateTopics: %v", err)
	}
	for _, r := range res {
		if c := r.Error.Code(); c != kafka.ErrNoError && c != kafka.ErrTopicAlreadyExists {
			b.Fatalf("CreateTopics %s: %v", r.Topic, r.Error)
		}
	}
}

// rawServer answers every ping with a pong carrying the same value and
// correlation id. It consumes through a consumer group, as a service does.
type rawServer struct {
	consumer *kafka.Consumer
	producer *kafka.Producer
	pong     string
	failure  atomic.Pointer[error]
}

func rawNewServer(b testing.TB, brokers, group, ping, pong string) *rawServer {
	b.Helper()
	cc := rawLowLatencyConsumer(brokers, group)
	c, err := kafka.NewConsumer(&cc)
	if err != nil {
		b.Fatal(err)
	}
	pc := rawLowLatencyProducer(brokers)
	p, err := kafka.NewProducer(&pc)
	if err != nil {
		c.Close()
		b.Fatal(err)
	}
	if err := c.Subscribe(ping, nil); err != nil {
		c.Close()
		p.Close()
		b.Fatal(err)
	}
	return &rawServer{consumer: c, producer: p, pong: pong}
}

// run serves pings until ctx is done, then closes the server's clients.
func (s *rawServer) run(ctx context.Context) {
	defer s.producer.Close()
	defer s.consumer.Close()
	go rawDrainDeliveries(s.producer, s.fail)
	for ctx.Err() == nil {
		switch e := s.consumer.Poll(100).(type) {
		case *kafka.Message:
			err := s.producer.Produce(&kafka.Message{
				TopicPartition: kafka.TopicPartition{Topic: &s.pong, Partition: 0},
				Value:          e.Value,
				Headers:        e.Headers,
			}, nil)
			if err != nil {
				s.fail(fmt.Errorf("produce pong: %w", err))
			}
		case kafka.Error:
			if e.IsFatal() {
				s.fail(fmt.Errorf("server consumer: %w", e))
			}
		}
	}
}

func (s *rawServer) fail(err error) { s.failure.CompareAndSwap(nil, &err) }

// err returns the first error the server met, if any.
func (s *rawServer) err() error {
	if p := s.failure.Load(); p != nil {
		return *p
	}
	return nil
}

// rawDrainDeliveries reads p's delivery reports until p is closed, reporting
// failed deliveries to fail.
func rawDrainDeliveries(p *kafka.Producer, fail func(error)) {
	for e := range p.Events() {
		if m, ok := e.(*kafka.Message); ok && m.TopicPartition.Error != nil {
			fail(fmt.Errorf("delivery to %s: %w", *m.TopicPartition.Topic, m.TopicPartition.Error))
		}
	}
}

// rawClient sends pings and waits for the matching pongs, which its reader
// takes from the pong partition by direct assignment (no group join).
type rawClient struct {
	producer *kafka.Producer
	consumer *kafka.Consumer
	ping     string
	nextID   atomic.Uint64

	mu      sync.Mutex
	pending map[string]chan error // by correlation id
}

func rawNewClient(b testing.TB, brokers, group, ping, pong string) *rawClient {
	b.Helper()
	pc := rawLowLatencyProducer(brokers)
	p, err := kafka.NewProducer(&pc)
	if err != nil {
		b.Fatal(err)
	}
	cc := rawLowLatencyConsumer(brokers, group)
	c, err := kafka.NewConsumer(&cc)
	if err != nil {
		p.Close()
		b.Fatal(err)
	}
	// Start at the explicit end offset: Assign at kafka.OffsetEnd resolves
	// the end lazily and could skip a pong produced in between.
	// A topic just created has no leader for a moment on real Kafka.
	var high int64
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		if _, high, err = c.QueryWatermarkOffsets(pong, 0, 10000); err == nil || time.Now().After(deadline) {
			break
		}
	}
	if err == nil {
		err = c.Assign([]kafka.TopicPartition{{Topic: &pong, Partition: 0, Offset: kafka.Offset(high)}})
	}
	if err != nil {
		c.Close()
		p.Close()
		b.Fatal(err)
	}
	return &rawClient{producer: p, consumer: c, ping: ping, pending: map[string]chan error{}}
}

// run reads pongs and wakes their callers until ctx is done, then closes
// the client's Kafka clients.
func (c *rawClient) run(ctx context.Context) {
	defer c.producer.Close()
	defer c.consumer.Close()
	go rawDrainDeliveries(c.producer, func(err error) {
		// A failed ping is reported by its delivery report only; the
		// caller then times out. Good enough for a benchmark.
		_ = err
	})
	for ctx.Err() == nil {
		m, ok := c.consumer.Poll(100).(*kafka.Message)
		if !ok {
			continue
		}
		var id string
		for _, h := range m.Headers {
			if h.Key == rawIDHeader {
				id = string(h.Value)
			}
		}
		c.mu.Lock()
		ch := c.pending[id]
		delete(c.pending, id)
		c.mu.Unlock()
		if ch != nil {
			ch <- nil // buffered; unknown ids are ignored
			// Let the caller run before the next Poll blocks this
			// goroutine in cgo with the caller queued behind it (about
			// 100µs a call otherwise). The transport does this once per
			// burst of records (pollBurst); the floor stays the plain
			// one-record-at-a-time loop.
			runtime.Gosched()
		}
	}
}

// call sends one ping and waits for its pong or ctx.
func (c *rawClient) call(ctx context.Context, payload []byte) error {
	id := strconv.FormatUint(c.nextID.Add(1), 10)
	ch := make(chan error, 1)
	c.mu.Lock()
	c.pending[id] = ch
	c.mu.Unlock()
	err := c.producer.Produce(&kafka.Message{
		TopicPartition: kafka.TopicPartition{Topic: &c.ping, Partition: 0},
		Value:          payload,
		Headers:        []kafka.Header{{Key: rawIDHeader, Value: []byte(id)}},
	}, nil)
	if err == nil {
		select {
		case err = <-ch:
		case <-ctx.Done():
			err = ctx.Err()
		}
	}
	if err != nil {
		c.mu.Lock()
		delete(c.pending, id)
		c.mu.Unlock()
		return fmt.Errorf("raw ping-pong call %s: %w", id, err)
	}
	return nil
}
