// Package rawkafka is the request-reply floor the platform is measured
// against: request-reply over plain confluent-kafka-go, with no protobuf,
// no envelope, no interceptors, no deadlines, no sealing and no offset
// tracking. A Server answers every request record with a reply carrying the
// same value; a Client sends requests and matches replies to callers by a
// correlation-id header. Both use exactly the transport's librdkafka
// defaults (kafkatransport.DefaultProducerConfig and
// DefaultConsumerConfig), so what a benchmark of the transport adds on top
// of this floor is the transport's own cost.
//
// kafkatransport's BenchmarkRawPingPong drives it directly; `bench rawrest`
// puts a minimal net/http handler in front of it, the floor of a REST path
// over Kafka (scripts/compare.sh).
package rawkafka

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"

	"github.com/kgrpc/platform/kafkatransport"
)

// IDHeader carries the correlation id of a request and its reply.
const IDHeader = "rpc-id"

// ConfigEnv names the environment variable whose k=v,k=v pairs override
// librdkafka properties of every client, for experiments, e.g.
// RAW_PINGPONG_CONFIG='linger.ms=5,fetch.wait.max.ms=10'.
const ConfigEnv = "RAW_PINGPONG_CONFIG"

// ProducerConfig returns the librdkafka producer settings of the floor:
// the transport's defaults, then ConfigEnv's overrides.
func ProducerConfig(brokers string) kafka.ConfigMap {
	m := kafkatransport.DefaultProducerConfig()
	m["bootstrap.servers"] = brokers
	m["log_level"] = 3
	return withOverrides(m, true)
}

// ConsumerConfig returns the librdkafka consumer settings of the floor:
// the transport's defaults with auto-commit off, since the floor commits
// nothing, then ConfigEnv's overrides. librdkafka needs a group.id even for
// a consumer that only uses Assign; that group is never joined.
func ConsumerConfig(brokers, group string) kafka.ConfigMap {
	m := kafkatransport.DefaultConsumerConfig()
	m["bootstrap.servers"] = brokers
	m["group.id"] = group
	m["enable.auto.commit"] = false
	m["log_level"] = 3
	return withOverrides(m, false)
}

// producerOnly and consumerOnly are the properties of ConfigEnv that apply
// to one kind of client only.
var (
	producerOnly = map[string]bool{"linger.ms": true, "sticky.partitioning.linger.ms": true, "max.in.flight.requests.per.connection": true, "queue.buffering.max.ms": true, "acks": true,
		"enable.idempotence": true, "batch.num.messages": true, "batch.size": true, "compression.type": true}
	consumerOnly = map[string]bool{"fetch.wait.max.ms": true, "fetch.min.bytes": true,
		"fetch.queue.backoff.ms": true, "fetch.error.backoff.ms": true, "queued.min.messages": true}
)

// withOverrides applies ConfigEnv to m, skipping properties meant for the
// other kind of client.
func withOverrides(m kafka.ConfigMap, producer bool) kafka.ConfigMap {
	for kv := range strings.SplitSeq(os.Getenv(ConfigEnv), ",") {
		k, v, ok := strings.Cut(strings.TrimSpace(kv), "=")
		if !ok || (producer && consumerOnly[k]) || (!producer && producerOnly[k]) {
			continue
		}
		m[k] = v
	}
	return m
}

// CreateTopics creates one-partition topics, accepting topics that exist.
func CreateTopics(ctx context.Context, brokers string, topics ...string) error {
	cfg := kafka.ConfigMap{"bootstrap.servers": brokers, "log_level": 3}
	admin, err := kafka.NewAdminClient(&cfg)
	if err != nil {
		return err
	}
	defer admin.Close()
	specs := make([]kafka.TopicSpecification, len(topics))
	for i, t := range topics {
		specs[i] = kafka.TopicSpecification{Topic: t, NumPartitions: 1, ReplicationFactor: -1}
	}
	res, err := admin.CreateTopics(ctx, specs)
	if err != nil {
		return fmt.Errorf("create topics: %w", err)
	}
	for _, r := range res {
		if c := r.Error.Code(); c != kafka.ErrNoError && c != kafka.ErrTopicAlreadyExists {
			return fmt.Errorf("create topic %s: %w", r.Topic, r.Error)
		}
	}
	return nil
}

// Server answers every request with a reply carrying the same value and
// correlation id. It consumes through a consumer group, as a service does.
type Server struct {
	consumer *kafka.Consumer
	producer *kafka.Producer
	reply    string
	failure  atomic.Pointer[error]
}

// NewServer subscribes group to the request topic; replies go to partition
// 0 of the reply topic.
func NewServer(brokers, group, request, reply string) (*Server, error) {
	cc := ConsumerConfig(brokers, group)
	c, err := kafka.NewConsumer(&cc)
	if err != nil {
		return nil, err
	}
	pc := ProducerConfig(brokers)
	p, err := kafka.NewProducer(&pc)
	if err != nil {
		c.Close()
		return nil, err
	}
	if err := c.Subscribe(request, nil); err != nil {
		c.Close()
		p.Close()
		return nil, err
	}
	return &Server{consumer: c, producer: p, reply: reply}, nil
}

// Run serves requests until ctx is done, then closes the server's clients.
func (s *Server) Run(ctx context.Context) {
	defer s.producer.Close()
	defer s.consumer.Close()
	go drainDeliveries(s.producer, s.fail)
	for ctx.Err() == nil {
		switch e := s.consumer.Poll(100).(type) {
		case *kafka.Message:
			err := s.producer.Produce(&kafka.Message{
				TopicPartition: kafka.TopicPartition{Topic: &s.reply, Partition: 0},
				Value:          e.Value,
				Headers:        e.Headers,
			}, nil)
			if err != nil {
				s.fail(fmt.Errorf("produce reply: %w", err))
			}
		case kafka.Error:
			if e.IsFatal() {
				s.fail(fmt.Errorf("server consumer: %w", e))
			}
		}
	}
}

func (s *Server) fail(err error) { s.failure.CompareAndSwap(nil, &err) }

// Err returns the first error the server met, if any.
func (s *Server) Err() error {
	if p := s.failure.Load(); p != nil {
		return *p
	}
	return nil
}

// drainDeliveries reads p's delivery reports until p is closed, reporting
// failed deliveries to fail.
func drainDeliveries(p *kafka.Producer, fail func(error)) {
	for e := range p.Events() {
		if m, ok := e.(*kafka.Message); ok && m.TopicPartition.Error != nil {
			fail(fmt.Errorf("delivery to %s: %w", *m.TopicPartition.Topic, m.TopicPartition.Error))
		}
	}
}

// Client sends requests and waits for the matching replies, which its
// reader takes from partition 0 of the reply topic by direct assignment
// (no group join).
type Client struct {
	producer *kafka.Producer
	consumer *kafka.Consumer
	request  string
	run      string // random per client, so ids never repeat across runs
	nextID   atomic.Uint64

	mu      sync.Mutex
	pending map[string]chan []byte // by correlation id
}

// NewClient assigns the reply partition at its current end; group is only
// the group.id librdkafka requires. ctx bounds the wait for the reply
// topic's leader: give it a deadline.
func NewClient(ctx context.Context, brokers, group, request, reply string) (*Client, error) {
	pc := ProducerConfig(brokers)
	p, err := kafka.NewProducer(&pc)
	if err != nil {
		return nil, err
	}
	cc := ConsumerConfig(brokers, group)
	c, err := kafka.NewConsumer(&cc)
	if err != nil {
		p.Close()
		return nil, err
	}
	// Start at the explicit end offset: Assign at kafka.OffsetEnd resolves
	// the end lazily and could skip a reply produced in between. A topic
	// just created has no leader for a moment on real Kafka.
	var high int64
	for {
		if _, high, err = c.QueryWatermarkOffsets(reply, 0, 10000); err == nil || ctx.Err() != nil {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if err == nil {
		err = c.Assign([]kafka.TopicPartition{{Topic: &reply, Partition: 0, Offset: kafka.Offset(high)}})
	}
	if err != nil {
		c.Close()
		p.Close()
		return nil, err
	}
	return &Client{producer: p, consumer: c, request: request, run: fmt.Sprintf("%08x-", rand.Uint32()), pending: map[string]chan []byte{}}, nil
}

// Run reads replies and wakes their callers until ctx is done, then closes
// the client's Kafka clients.
func (c *Client) Run(ctx context.Context) {
	defer c.producer.Close()
	defer c.consumer.Close()
	// A failed request is reported by its delivery report only; the
	// caller then times out. Good enough for a floor.
	go drainDeliveries(c.producer, func(error) {})
	for ctx.Err() == nil {
		m, ok := c.consumer.Poll(100).(*kafka.Message)
		if !ok {
			continue
		}
		var id string
		for _, h := range m.Headers {
			if h.Key == IDHeader {
				id = string(h.Value)
			}
		}
		c.mu.Lock()
		ch := c.pending[id]
		delete(c.pending, id)
		c.mu.Unlock()
		if ch != nil {
			ch <- m.Value // buffered; unknown ids are ignored
			// Let the caller run before the next Poll blocks this
			// goroutine in cgo with the caller queued behind it (about
			// 100µs a call otherwise). The transport does this once per
			// burst of records (pollBurst); the floor stays the plain
			// one-record-at-a-time loop.
			runtime.Gosched()
		}
	}
}

// ErrNoReply wraps a call that ended before its reply came.
var ErrNoReply = errors.New("raw request-reply: no reply")

// Call sends one request and returns its reply's value, or ctx's error.
func (c *Client) Call(ctx context.Context, payload []byte) ([]byte, error) {
	id := c.run + strconv.FormatUint(c.nextID.Add(1), 10)
	ch := make(chan []byte, 1)
	c.mu.Lock()
	c.pending[id] = ch
	c.mu.Unlock()
	err := c.producer.Produce(&kafka.Message{
		TopicPartition: kafka.TopicPartition{Topic: &c.request, Partition: 0},
		Value:          payload,
		Headers:        []kafka.Header{{Key: IDHeader, Value: []byte(id)}},
	}, nil)
	if err == nil {
		select {
		case v := <-ch:
			return v, nil
		case <-ctx.Done():
			err = fmt.Errorf("%w: %w", ErrNoReply, ctx.Err())
		}
	}
	c.mu.Lock()
	delete(c.pending, id)
	c.mu.Unlock()
	return nil, fmt.Errorf("raw call %s: %w", id, err)
}
