package kafkatransport

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// ClientConn carries gRPC calls and streams over Kafka. It implements
// grpc.ClientConnInterface, so the standard generated clients run over it:
// usersv1.NewUserServiceClient(conn). Generated New<Service>KafkaClient
// helpers add each service's topic and partition keys.
//
// A ClientConn reads its replies from one partition of the shared reply topic
// by direct assignment, never through a consumer group, so it starts at once
// and any number of instances can run. It is safe for concurrent use; Close
// releases it.
type ClientConn struct {
	cfg            config
	producer       *kafka.Producer
	consumer       *kafka.Consumer
	admin          *kafka.AdminClient
	replyTopic     string
	replyPartition int32
	idPrefix       string
	seq            atomic.Uint64
	bufs           bufferPool

	mu      sync.Mutex
	pending map[uint64]*pendingCall // by sequence number
	closed  bool
	// streams are the open streams, by sequence number; livenessStarted
	// whether their heartbeat loop runs.
	streams         map[uint64]*clientStream
	livenessStarted bool
	silenced        atomic.Bool  // tests: no more heartbeats (SilenceForTest)
	failProduces    atomic.Int32 // tests: requests refused before the producer (FailProducesForTest)

	// levels caches the idempotency levels of methods; topics holds a
	// *topicState per request topic called, for retries and hedges;
	// metadata counts the partition counts being read (watchPartitions),
	// which Close waits for before closing the admin client.
	levels   methodLevels
	topics   sync.Map
	metadata sync.WaitGroup

	// produceMu is held shared around Produce and exclusively while the
	// producer closes, so no call produces on a closed producer.
	produceMu sync.RWMutex

	stop     chan struct{}
	wg       sync.WaitGroup
	stopLogs func()
}

// pendingCall is a call waiting for its reply. It is also the opaque of
// its request record, so a failed delivery finds it.
type pendingCall struct {
	seq    uint64
	method string          // for the Guard, which opens its reply
	ch     chan callResult // buffered: finish never blocks
	// span is the call's span, when a stats handler tagged it, to record
	// where its request was stored.
	span trace.Span
	// sentAt is when the request was produced; partition the partition
	// it was produced to, or once its delivery report came, stored on
	// (kafka.PartitionAny until then).
	sentAt    time.Time
	partition atomic.Int32
}

// callResult is what ends a pending call: a reply or a transport error.
type callResult struct {
	reply replyEnvelope
	value []byte
	err   error
	// unsent says that err is a failure of a request the broker did not
	// store, so that no server can have run it.
	unsent bool
	pc     *pendingCall // the attempt it ends; finish sets it
}

// Dial connects a client to the brokers (a librdkafka bootstrap.servers
// list). It creates the reply topic when missing (never a request topic:
// servers create those), picks its reply partition
// and starts reading it; ctx bounds that start. An invalid option is an
// error.
func Dial(ctx context.Context, brokers string, opts ...ClientOption) (*ClientConn, error) {
	cfg, err := newConfig(brokers, opts, ClientOption.applyClient)
	if err != nil {
		return nil, err
	}
	c := &ClientConn{
		cfg:        cfg,
		replyTopic: cfg.topic(cfg.replyTopic),
		idPrefix:   cfg.instanceID + "-" + runID() + "-",
		pending:    map[uint64]*pendingCall{},
		stop:       make(chan struct{}),
	}
	c.stopLogs = c.cfg.forwardLogs()
	// producerConfig never lets the broker create the request topic of a
	// service that is not running: only servers create request topics.
	if c.producer, err = kafka.NewProducer(c.cfg.producerConfig(producerDefaults)); err != nil {
		c.stopLogs()
		return nil, fmt.Errorf("kafkatransport: new producer: %w", err)
	}
	fail := func(err error) (*ClientConn, error) {
		if c.consumer != nil {
			_ = c.consumer.Close()
		}
		if c.admin != nil {
			c.admin.Close()
		}
		c.producer.Close()
		c.stopLogs()
		return nil, err
	}
	if c.admin, err = kafka.NewAdminClientFromProducer(c.producer); err != nil {
		return fail(fmt.Errorf("kafkatransport: new admin client: %w", err))
	}
	if c.consumer, c.replyPartition, err = openInbox(ctx, c.admin, &c.cfg, c.replyTopic, cfg.replyPartition, "kgrpc-reply-"); err != nil {
		return fail(err)
	}
	c.wg.Go(c.readReplies)
	c.wg.Go(func() { readDeliveries(c.producer, &c.cfg, c.delivered) })
	cfg.logger.Info("kafkatransport client ready", "reply_topic", c.replyTopic, "reply_partition", c.replyPartition, "instance", cfg.instanceID)
	return c, nil
}

// Ping checks that the brokers answer a metadata request within ctx.
func (c *ClientConn) Ping(ctx context.Context) error {
	if _, err := c.admin.GetMetadata(&c.replyTopic, false, timeoutMs(ctx, 5*time.Second)); err != nil {
		return status.Errorf(codes.Unavailable, "kafkatransport: brokers unreachable: %v", err)
	}
	return nil
}

// ReplyPartition returns the partition of the reply topic this client reads.
func (c *ClientConn) ReplyPartition() int32 { return c.replyPartition }

// Close stops reading replies, fails the calls and streams still waiting
// with Unavailable (telling the streams' servers), drops the requests not yet sent (no caller waits for them),
// and closes the Kafka clients. It is safe to call more than
// once.
func (c *ClientConn) Close() error {
	c.mu.Lock()
	closed := c.closed
	c.mu.Unlock()
	if !closed {
		c.closeStreams() // before the producer refuses their cancels
	}
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return nil
	}
	c.closed = true
	for seq, pc := range c.pending {
		pc.ch <- callResult{err: errClientClosed, pc: pc}
		delete(c.pending, seq)
	}
	c.mu.Unlock()
	close(c.stop)
	// Wait for the calls inside Produce; later ones see closed. Not held
	// while the loops below end: they may be producing a frame.
	c.produceMu.Lock()
	c.produceMu.Unlock() // empty on purpose: a barrier
	c.metadata.Wait()    // partition counts being read, on the admin client
	// Every call has ended: requests still queued (for example to a
	// service whose topic does not exist) have no caller left.
	_ = c.producer.Purge(kafka.PurgeQueue | kafka.PurgeNonBlocking)
	c.producer.Flush(5000)
	c.admin.Close()
	c.producer.Close() // closes the Events channel, ending readDeliveries
	c.wg.Wait()
	err := c.consumer.Close()
	c.stopLogs()
	return err
}

// openInbox creates the reply topic when missing and assigns a new
// consumer to one of its partitions (want, or a random one when want is
// negative) at the partition's end as it is now, so that every record
// produced to it from here on is read: the reply partition of a client,
// the stream inbox of a server. ctx bounds it.
func openInbox(ctx context.Context, admin *kafka.AdminClient, cfg *config, topic string, want int32, groupPrefix string) (*kafka.Consumer, int32, error) {
	if err := newTopicEnsurer(admin, cfg).ensureCalls(ctx, cfg.replyPartitions, topic); err != nil {
		return nil, 0, fmt.Errorf("kafkatransport: %w", err)
	}
	// A topic just created takes a moment to have leaders on real Kafka.
	startCtx, cancel := context.WithTimeout(ctx, adminTimeout)
	defer cancel()
	var n int
	err := retry(startCtx, func() (err error) {
		n, err = partitionCount(admin, topic, timeoutMs(startCtx, 5*time.Second))
		return err
	})
	if err != nil {
		return nil, 0, fmt.Errorf("kafkatransport: %w", err)
	}
	partition := want
	if partition < 0 {
		partition = int32(rand.IntN(n))
	} else if int(partition) >= n {
		return nil, 0, fmt.Errorf("kafkatransport: reply partition %d out of range: %q has %d partitions", partition, topic, n)
	}
	consumer, err := kafka.NewConsumer(cfg.consumerConfig(groupPrefix+cfg.instanceID, kafka.ConfigMap{
		"enable.auto.commit": false,
	}))
	if err != nil {
		return nil, 0, fmt.Errorf("kafkatransport: new consumer of %q: %w", topic, err)
	}
	// Start at the partition's end as it is now: every record produced to
	// it from here on lands at or after it.
	var high int64
	err = retry(startCtx, func() (err error) {
		_, high, err = consumer.QueryWatermarkOffsets(topic, partition, timeoutMs(startCtx, 5*time.Second))
		return err
	})
	if err == nil {
		err = consumer.Assign([]kafka.TopicPartition{{Topic: &topic, Partition: partition, Offset: kafka.Offset(high)}})
	}
	if err != nil {
		_ = consumer.Close()
		return nil, 0, fmt.Errorf("kafkatransport: assign partition %d of %q: %w", partition, topic, err)
	}
	return consumer, partition, nil
}

// runID returns 8 random hex digits naming this ClientConn, so that a
// restarted instance (same instance id, same reply partition, a sequence
// starting again at 1) never takes a late reply to its previous run's call
// for one of its own.
func runID() string {
	return fmt.Sprintf("%08x", rand.Uint32()) // math/rand/v2: seeded from the OS
}
