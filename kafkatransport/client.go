package kafkatransport

import (
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
)

// ClientConn carries unary gRPC calls over Kafka. It implements
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
	seq uint64
	ch  chan callResult // buffered: finish never blocks
}

// callResult is what ends a pending call: a reply or a transport error.
type callResult struct {
	reply replyEnvelope
	value []byte
	err   error
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
	// Never let the broker create the request topic of a service that is
	// not running: only servers create request topics, with their own
	// partition count.
	if c.producer, err = kafka.NewProducer(c.cfg.producerConfig(kafka.ConfigMap{"allow.auto.create.topics": false})); err != nil {
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
	if err := newTopicEnsurer(c.admin, &c.cfg).ensure(ctx, cfg.replyPartitions, c.replyTopic); err != nil {
		return fail(fmt.Errorf("kafkatransport: %w", err))
	}
	// A topic just created takes a moment to have leaders on real Kafka.
	startCtx, cancel := context.WithTimeout(ctx, adminTimeout)
	defer cancel()
	var n int
	err = retry(startCtx, func() (err error) {
		n, err = partitionCount(c.admin, c.replyTopic, timeoutMs(startCtx, 5*time.Second))
		return err
	})
	if err != nil {
		return fail(fmt.Errorf("kafkatransport: %w", err))
	}
	c.replyPartition = cfg.replyPartition
	if c.replyPartition < 0 {
		c.replyPartition = int32(rand.IntN(n))
	} else if int(c.replyPartition) >= n {
		return fail(fmt.Errorf("kafkatransport: reply partition %d out of range: %q has %d partitions", c.replyPartition, c.replyTopic, n))
	}
	c.consumer, err = kafka.NewConsumer(c.cfg.consumerConfig("kgrpc-reply-"+cfg.instanceID, kafka.ConfigMap{
		"enable.auto.commit":       false,
		"enable.auto.offset.store": false,
	}))
	if err != nil {
		return fail(fmt.Errorf("kafkatransport: new reply consumer: %w", err))
	}
	// Start at the partition's end as it is now: every reply to a call made
	// from here on lands at or after it.
	var high int64
	err = retry(startCtx, func() (err error) {
		_, high, err = c.consumer.QueryWatermarkOffsets(c.replyTopic, c.replyPartition, timeoutMs(startCtx, 5*time.Second))
		return err
	})
	if err != nil {
		return fail(fmt.Errorf("kafkatransport: reply partition end: %w", err))
	}
	if err := c.consumer.Assign([]kafka.TopicPartition{{Topic: &c.replyTopic, Partition: c.replyPartition, Offset: kafka.Offset(high)}}); err != nil {
		return fail(fmt.Errorf("kafkatransport: assign reply partition: %w", err))
	}
	c.wg.Add(2)
	go c.readReplies()
	go c.readDeliveries()
	cfg.logger.Info("kafkatransport client ready", "reply_topic", c.replyTopic, "reply_partition", c.replyPartition, "instance", cfg.instanceID)
	return c, nil
}

// timeoutMs returns the time left before ctx's deadline in milliseconds, or
// def when it has none.
func timeoutMs(ctx context.Context, def time.Duration) int {
	if d, ok := ctx.Deadline(); ok {
		left := time.Until(d)
		if left < time.Millisecond {
			left = time.Millisecond
		}
		return int(left / time.Millisecond)
	}
	return int(def / time.Millisecond)
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

// Close stops reading replies, fails the calls still waiting with
// Unavailable, drops the requests not yet sent (no caller waits for them),
// and closes the Kafka clients. It is safe to call more than
// once.
func (c *ClientConn) Close() error {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return nil
	}
	c.closed = true
	for seq, pc := range c.pending {
		pc.ch <- callResult{err: status.Error(codes.Unavailable, "kafkatransport: client closed")}
		delete(c.pending, seq)
	}
	c.mu.Unlock()
	close(c.stop)
	c.produceMu.Lock() // waits for calls inside Produce; later ones see closed
	defer c.produceMu.Unlock()
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

// readReplies hands each reply record to the call waiting for it. Replies to
// other clients sharing the partition, and late replies, are ignored.
func (c *ClientConn) readReplies() {
	defer c.wg.Done()
	for {
		select {
		case <-c.stop:
			return
		default:
		}
		_ = pollBurst(c.consumer, nil, c.handleReply) // handleReply returns no error
	}
}

// handleReply hands a reply record to the call waiting for it and reports
// whether there was one. Its error is always nil: a bad reply is logged and
// ignored.
func (c *ClientConn) handleReply(ev kafka.Event) (bool, error) {
	switch e := ev.(type) {
	case *kafka.Message:
		raw, ok := header(e.Headers, hdrRPC)
		if !ok {
			return false, nil
		}
		var env replyEnvelope
		if err := env.decode(raw); err != nil {
			c.cfg.logger.Warn("kafkatransport undecodable reply envelope", "partition", e.TopicPartition.Partition, "offset", int64(e.TopicPartition.Offset), "err", err)
			return false, nil
		}
		seq, ok := c.seqOf(env.id)
		if !ok {
			return false, nil // a reply to another client reading this partition
		}
		return c.finish(seq, callResult{reply: env, value: e.Value}), nil
	case kafka.Error:
		c.cfg.logger.Debug("kafkatransport reply consumer", "err", e) // librdkafka's own log has it
	}
	return false, nil
}

// readDeliveries fails a call whose request the broker did not accept.
func (c *ClientConn) readDeliveries() {
	defer c.wg.Done()
	for ev := range c.producer.Events() {
		m, ok := ev.(*kafka.Message)
		if !ok {
			if e, ok := ev.(kafka.Error); ok {
				c.cfg.logger.Debug("kafkatransport producer", "err", e) // librdkafka's own log has it
			}
			continue
		}
		if m.TopicPartition.Error == nil {
			continue
		}
		if pc, ok := m.Opaque.(*pendingCall); ok {
			c.finish(pc.seq, callResult{err: produceError(m.TopicPartition.Error)})
		}
	}
}

// finish ends a pending call, if it is still pending, and reports whether
// it was.
func (c *ClientConn) finish(seq uint64, r callResult) bool {
	c.mu.Lock()
	pc, ok := c.pending[seq]
	if ok {
		delete(c.pending, seq)
	}
	c.mu.Unlock()
	if ok {
		pc.ch <- r
	}
	return ok
}

// seqOf returns the sequence number of one of this client's correlation
// ids (idPrefix followed by the number in base 36), or false for an id
// that is not this client's.
func (c *ClientConn) seqOf(id []byte) (uint64, bool) {
	if len(id) <= len(c.idPrefix) || string(id[:len(c.idPrefix)]) != c.idPrefix {
		return 0, false
	}
	var seq uint64
	for _, ch := range id[len(c.idPrefix):] {
		var d byte
		switch {
		case ch >= '0' && ch <= '9':
			d = ch - '0'
		case ch >= 'a' && ch <= 'z':
			d = ch - 'a' + 10
		default:
			return 0, false
		}
		if seq > (math.MaxUint64-uint64(d))/36 {
			return 0, false
		}
		seq = seq*36 + uint64(d)
	}
	return seq, true
}

// Invoke implements grpc.ClientConnInterface. The request goes to the topic
// named after the method's service (plus any TopicPrefix) without a key; use
// Service, or the generated New<Service>KafkaClient, for topic overrides and
// keys.
func (c *ClientConn) Invoke(ctx context.Context, method string, args, reply any, opts ...grpc.CallOption) error {
	return c.invoke(ctx, route{topic: c.cfg.topic(serviceOf(method))}, method, args, reply, opts)
}

// NewStream implements grpc.ClientConnInterface. Streaming is not carried
// over Kafka yet: it returns an Unimplemented error.
func (c *ClientConn) NewStream(context.Context, *grpc.StreamDesc, string, ...grpc.CallOption) (grpc.ClientStream, error) {
	return nil, status.Error(codes.Unimplemented, "kafkatransport: streaming calls are not supported")
}

// Service returns a grpc.ClientConnInterface that routes the calls of one
// service as its spec says: to its topic, keyed per method.
func (c *ClientConn) Service(spec ServiceSpec) grpc.ClientConnInterface {
	return &serviceConn{c: c, spec: spec, topic: c.cfg.topic(spec.topic())}
}

type serviceConn struct {
	c     *ClientConn
	spec  ServiceSpec
	topic string
}

func (s *serviceConn) Invoke(ctx context.Context, method string, args, reply any, opts ...grpc.CallOption) error {
	rt := route{topic: s.topic}
	if serviceOf(method) != s.spec.Name {
		rt.topic = s.c.cfg.topic(serviceOf(method))
	}
	rt.key = s.spec.Keys[method]
	return s.c.invoke(ctx, rt, method, args, reply, opts)
}

func (s *serviceConn) NewStream(ctx context.Context, desc *grpc.StreamDesc, method string, opts ...grpc.CallOption) (grpc.ClientStream, error) {
	return s.c.NewStream(ctx, desc, method, opts...)
}

// route says where a call's request goes.
type route struct {
	topic string
	key   KeyFunc
}

func (c *ClientConn) invoke(ctx context.Context, rt route, method string, args, reply any, opts []grpc.CallOption) error {
	if len(c.cfg.clientInterceptors) == 0 {
		return c.call(ctx, rt, method, args, reply, opts)
	}
	invoker := func(ctx context.Context, method string, args, reply any, _ *grpc.ClientConn, opts ...grpc.CallOption) error {
		return c.call(ctx, rt, method, args, reply, opts)
	}
	return chainClient(c.cfg.clientInterceptors, invoker)(ctx, method, args, reply, nil, opts...)
}

// chainClient composes interceptors so that ics[0] is the outermost.
func chainClient(ics []grpc.UnaryClientInterceptor, final grpc.UnaryInvoker) grpc.UnaryInvoker {
	for i := len(ics) - 1; i >= 0; i-- {
		ic, next := ics[i], final
		final = func(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, opts ...grpc.CallOption) error {
			return ic(ctx, method, req, reply, cc, next, opts...)
		}
	}
	return final
}

// call sends one request and waits for its reply, the context's end, or a
// transport failure.
func (c *ClientConn) call(ctx context.Context, rt route, method string, args, reply any, opts []grpc.CallOption) error {
	req, ok := args.(proto.Message)
	if !ok {
		return status.Errorf(codes.Internal, "kafkatransport: request %T is not a proto.Message", args)
	}
	if _, ok := reply.(proto.Message); !ok {
		return status.Errorf(codes.Internal, "kafkatransport: reply %T is not a proto.Message", reply)
	}
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, c.cfg.defaultTimeout)
		defer cancel()
	}
	if err := ctx.Err(); err != nil {
		return status.FromContextError(err).Err()
	}
	pc := &pendingCall{seq: c.seq.Add(1), ch: make(chan callResult, 1)}
	if err := c.send(ctx, rt, method, req, pc); err != nil {
		return err
	}
	var res callResult
	select {
	case res = <-pc.ch:
	case <-ctx.Done():
		c.finish(pc.seq, callResult{})
		return status.FromContextError(ctx.Err()).Err()
	}
	if res.err != nil {
		return res.err
	}
	return decodeReply(&res.reply, res.value, reply, opts)
}

// send registers pc and produces its request. The encoding buffers go back
// to the pool once Produce has copied them.
func (c *ClientConn) send(ctx context.Context, rt route, method string, req proto.Message, pc *pendingCall) error {
	value, env := c.bufs.get(), c.bufs.get()
	defer c.bufs.put(value)
	defer c.bufs.put(env)
	var err error
	if *value, err = (proto.MarshalOptions{}).MarshalAppend(*value, req); err != nil {
		return status.Errorf(codes.Internal, "kafkatransport: marshal request: %v", err)
	}
	md, _ := metadata.FromOutgoingContext(ctx)
	if !utf8.ValidString(method) {
		return status.Errorf(codes.Internal, "kafkatransport: method name %q is not UTF-8", method)
	}
	deadline, _ := ctx.Deadline()
	var idBuf [64]byte
	id := strconv.AppendUint(append(idBuf[:0], c.idPrefix...), pc.seq, 36)
	headers := make([]kafka.Header, 1, 3)
	if len(md) > 0 {
		headers = traceHeaders(headers, md)
	}
	*env = appendRequestEnvelope(*env, method, id, c.replyTopic, c.replyPartition, deadline.UnixMilli(), md)
	headers[0] = kafka.Header{Key: hdrRPC, Value: *env}
	msg := &kafka.Message{
		TopicPartition: kafka.TopicPartition{Topic: &rt.topic, Partition: kafka.PartitionAny},
		Value:          *value,
		Headers:        headers,
		Opaque:         pc,
	}
	if rt.key != nil {
		msg.Key = rt.key(req)
	}

	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return status.Error(codes.Unavailable, "kafkatransport: client closed")
	}
	c.pending[pc.seq] = pc
	c.mu.Unlock()

	if err := c.produce(msg); err != nil {
		c.finish(pc.seq, callResult{})
		return err
	}
	return nil
}

// produce sends msg unless the client is closing.
func (c *ClientConn) produce(msg *kafka.Message) error {
	c.produceMu.RLock()
	defer c.produceMu.RUnlock()
	c.mu.Lock()
	closed := c.closed
	c.mu.Unlock()
	if closed {
		return status.Error(codes.Unavailable, "kafkatransport: client closed")
	}
	if err := c.producer.Produce(msg, nil); err != nil {
		return produceError(err)
	}
	return nil
}

// produceError maps a producer error to a status error.
func produceError(err error) error {
	var ke kafka.Error
	if errors.As(err, &ke) && (ke.Code() == kafka.ErrMsgSizeTooLarge) {
		return status.Errorf(codes.ResourceExhausted, "kafkatransport: request too large: %v", err)
	}
	return status.Errorf(codes.Unavailable, "kafkatransport: produce request: %v", err)
}

// decodeReply turns a reply into the call's result: the response message
// or a status error, plus header and trailer metadata.
func decodeReply(env *replyEnvelope, value []byte, reply any, opts []grpc.CallOption) error {
	for _, o := range opts {
		switch o := o.(type) {
		case grpc.HeaderCallOption:
			*o.HeaderAddr = env.header
		case grpc.TrailerCallOption:
			*o.TrailerAddr = env.trailer
		}
	}
	if env.code != int32(codes.OK) {
		return replyStatus(env).Err()
	}
	if err := proto.Unmarshal(value, reply.(proto.Message)); err != nil {
		return status.Errorf(codes.Internal, "kafkatransport: unmarshal response: %v", err)
	}
	return nil
}

// runID returns 8 random hex digits naming this ClientConn, so that a
// restarted instance (same instance id, same reply partition, a sequence
// starting again at 1) never takes a late reply to its previous run's call
// for one of its own.
func runID() string {
	return fmt.Sprintf("%08x", rand.Uint32()) // math/rand/v2: seeded from the OS
}
