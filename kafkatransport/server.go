package kafkatransport

import (
	"context"
	"errors"
	"fmt"
	"runtime/debug"
	"sort"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
)

// Server serves gRPC services over Kafka. It implements
// grpc.ServiceRegistrar, so the standard generated Register<Service>Server
// functions work with it; the generated Register<Service>KafkaServer helpers
// also apply each service's topic.
//
// Each service's instances share one consumer group on the service's request
// topic, so starting more instances adds throughput. Handlers run
// concurrently, also within a partition, except that requests with the same
// record key in a partition run one after another, in the order they were
// produced; a record's offset is committed only once its reply is produced
// and every earlier record of its partition is finished.
type Server struct {
	cfg config

	mu       sync.Mutex
	services map[string]*service
	specs    map[string]ServiceSpec
	started  bool
	ready    chan struct{}

	handler grpc.UnaryServerInterceptor
}

// service is one registered gRPC service.
type service struct {
	desc    *grpc.ServiceDesc
	impl    any
	methods map[string]method // by full method name
}

// method is one method of a registered service.
type method struct {
	name string // full method name, "/pkg.Service/Method"
	desc *grpc.MethodDesc
}

// NewServer returns a server for the brokers (a librdkafka
// bootstrap.servers list), or the error of an invalid option. Register
// services, then call Serve.
func NewServer(brokers string, opts ...ServerOption) (*Server, error) {
	cfg, err := newConfig(brokers, opts, ServerOption.applyServer)
	if err != nil {
		return nil, err
	}
	return &Server{
		cfg:      cfg,
		services: map[string]*service{},
		specs:    map[string]ServiceSpec{},
		ready:    make(chan struct{}),
	}, nil
}

// RegisterService implements grpc.ServiceRegistrar. It panics when called
// after Serve or twice for one service, as grpc.Server does.
func (s *Server) RegisterService(desc *grpc.ServiceDesc, impl any) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.started {
		panic("kafkatransport: RegisterService after Serve")
	}
	if _, dup := s.services[desc.ServiceName]; dup {
		panic(fmt.Sprintf("kafkatransport: service %s registered twice", desc.ServiceName))
	}
	svc := &service{desc: desc, impl: impl, methods: map[string]method{}}
	for i := range desc.Methods {
		m := &desc.Methods[i]
		name := "/" + desc.ServiceName + "/" + m.MethodName
		svc.methods[name] = method{name: name, desc: m}
	}
	s.services[desc.ServiceName] = svc
}

// Describe applies a service's Kafka spec (its topic). Generated
// Register<Service>KafkaServer functions call it; call it before Serve.
func (s *Server) Describe(spec ServiceSpec) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.specs[spec.Name] = spec
}

// Ready is closed once Serve has joined every service's consumer group and
// started fetching requests.
func (s *Server) Ready() <-chan struct{} { return s.ready }

// Serve creates missing request topics, consumes requests and answers them
// until ctx ends. It then stops fetching, lets in-flight handlers finish and
// their replies be produced (for at most the drain timeout, after which their
// contexts are cancelled), commits, leaves the consumer groups and returns.
// It returns nil after such a graceful stop.
func (s *Server) Serve(ctx context.Context) error {
	s.mu.Lock()
	if s.started {
		s.mu.Unlock()
		return errors.New("kafkatransport: Serve called twice")
	}
	s.started = true
	names := make([]string, 0, len(s.services))
	for n := range s.services {
		names = append(names, n)
	}
	s.mu.Unlock()
	if len(names) == 0 {
		return errors.New("kafkatransport: no service registered")
	}
	sort.Strings(names)
	s.handler = chainServer(s.cfg.serverInterceptors)
	defer s.cfg.forwardLogs()() // stops last, after every client closed

	producer, err := kafka.NewProducer(s.cfg.producerConfig(nil))
	if err != nil {
		return fmt.Errorf("kafkatransport: new producer: %w", err)
	}
	defer producer.Close()
	admin, err := kafka.NewAdminClientFromProducer(producer)
	if err != nil {
		return fmt.Errorf("kafkatransport: new admin client: %w", err)
	}
	defer admin.Close()

	// Handlers outlive ctx during the drain; hardStop cancels them after it.
	base, hardStop := context.WithCancel(context.WithoutCancel(ctx))
	defer hardStop()
	r := &run{
		s:        s,
		producer: producer,
		base:     base,
		sem:      make(chan struct{}, s.cfg.maxConcurrency),
		stopping: make(chan struct{}),
	}
	topics := newTopicEnsurer(admin, &s.cfg)
	for _, n := range names {
		spec, ok := s.specs[n]
		if !ok {
			spec = ServiceSpec{Name: n}
		}
		topic := s.cfg.topic(spec.topic())
		if err := topics.ensure(ctx, s.cfg.partitions, topic); err != nil {
			r.closeLanes()
			return fmt.Errorf("kafkatransport: %w", err)
		}
		l, err := r.newLane(s.services[n], topic)
		if err != nil {
			r.closeLanes()
			return err
		}
		r.lanes = append(r.lanes, l)
	}

	var deliveries, polls sync.WaitGroup
	deliveries.Go(r.readDeliveries)
	errc := make(chan error, len(r.lanes))
	for _, l := range r.lanes {
		polls.Go(func() { errc <- l.poll() })
	}
	close(s.ready)
	s.cfg.logger.Info("kafkatransport server serving", "services", names, "instance", s.cfg.instanceID)

	var runErr error
	select {
	case <-ctx.Done():
	case runErr = <-errc:
	}
	close(r.stopping)
	polls.Wait() // no more dispatches, so waiting on r.inflight is sound
	s.cfg.logger.Info("kafkatransport server draining", "in_flight", r.inflightCount())
	if !waitTimeout(&r.inflight, s.cfg.drainTimeout) {
		s.cfg.logger.Warn("kafkatransport drain timeout: cancelling handlers")
		hardStop()
		waitTimeout(&r.inflight, 5*time.Second)
	}
	producer.Flush(int(s.cfg.drainTimeout / time.Millisecond))
	r.closeLanes()
	admin.Close()
	r.produceMu.Lock()
	r.closed = true  // a handler that outlived the drain cannot reply now
	producer.Close() // ends readDeliveries
	r.produceMu.Unlock()
	deliveries.Wait()
	s.cfg.logger.Info("kafkatransport server stopped")
	return runErr
}

// waitTimeout waits for wg for at most d and reports whether it finished.
func waitTimeout(wg *sync.WaitGroup, d time.Duration) bool {
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
		return true
	case <-time.After(d):
		return false
	}
}

// run is the state of one Serve call.
type run struct {
	s        *Server
	producer *kafka.Producer
	base     context.Context
	sem      chan struct{}
	stopping chan struct{}
	lanes    []*lane

	inflight sync.WaitGroup // records dispatched and not yet finished
	mu       sync.Mutex
	count    int
	bufs     bufferPool

	// produceMu is held shared around Produce and exclusively when the
	// producer closes; closed is set then, and replies after it are dropped.
	produceMu sync.RWMutex
	closed    bool
}

// isStopping reports whether Serve has begun to stop.
func (r *run) isStopping() bool {
	select {
	case <-r.stopping:
		return true
	default:
		return false
	}
}

func (r *run) inflightCount() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.count
}

func (r *run) add(n int) {
	r.mu.Lock()
	r.count += n
	r.mu.Unlock()
	r.inflight.Add(n)
}

func (r *run) closeLanes() {
	for _, l := range r.lanes {
		// Close commits the offsets stored so far and leaves the group.
		l.tracker.close()
		if err := l.consumer.Close(); err != nil {
			r.s.cfg.logger.Warn("kafkatransport close consumer", "topic", l.topic, "err", err)
		}
	}
}

// lane consumes one service's request topic.
type lane struct {
	r        *run
	svc      *service
	topic    string
	consumer *kafka.Consumer
	tracker  *tracker
	keys     *keyQueues

	// replyTopics interns the reply topics of requests, so that a request
	// does not allocate its reply topic's name. Only dispatch, on the poll
	// goroutine, uses it.
	replyTopics map[string]string
}

// maxReplyTopics bounds a lane's replyTopics; past it, names are not
// interned.
const maxReplyTopics = 256

func (r *run) newLane(svc *service, topic string) (*lane, error) {
	c, err := kafka.NewConsumer(r.s.cfg.consumerConfig(topic, nil))
	if err != nil {
		return nil, fmt.Errorf("kafkatransport: new consumer for %q: %w", topic, err)
	}
	l := &lane{r: r, svc: svc, topic: topic, consumer: c, tracker: newTracker(topic, c), keys: newKeyQueues(r.stopping), replyTopics: map[string]string{}}
	if err := c.SubscribeTopics([]string{topic}, l.rebalance); err != nil {
		_ = c.Close()
		return nil, fmt.Errorf("kafkatransport: subscribe %q: %w", topic, err)
	}
	return l, nil
}

// rebalance runs on the poll goroutine. Before partitions go to another
// instance it waits (boundedly) for their in-flight calls and commits, so
// that a rebalance redelivers as little as possible.
func (l *lane) rebalance(c *kafka.Consumer, ev kafka.Event) error {
	log := l.r.s.cfg.logger
	switch e := ev.(type) {
	case kafka.AssignedPartitions:
		log.Info("kafkatransport partitions assigned", "topic", l.topic, "partitions", partitionList(e.Partitions))
	case kafka.RevokedPartitions:
		stopping := false
		select {
		case <-l.r.stopping:
			stopping = true // Serve has drained already.
		default:
		}
		if !c.AssignmentLost() {
			if !stopping && !l.tracker.waitIdle(e.Partitions, min(l.r.s.cfg.drainTimeout, 10*time.Second)) {
				log.Warn("kafkatransport revoking partitions with calls in flight", "topic", l.topic)
			}
			l.tracker.flush()
			if _, err := c.Commit(); err != nil && !isNoOffset(err) {
				log.Warn("kafkatransport commit on revoke", "topic", l.topic, "err", err)
			}
		}
		l.tracker.forget(e.Partitions)
		log.Info("kafkatransport partitions revoked", "topic", l.topic, "partitions", partitionList(e.Partitions), "lost", c.AssignmentLost())
	}
	return nil
}

func isNoOffset(err error) bool {
	var ke kafka.Error
	return errors.As(err, &ke) && ke.Code() == kafka.ErrNoOffset
}

func partitionList(ps []kafka.TopicPartition) []int32 {
	out := make([]int32, len(ps))
	for i, p := range ps {
		out[i] = p.Partition
	}
	return out
}

// poll fetches requests and dispatches them until the run stops.
func (l *lane) poll() error {
	handle := func(ev kafka.Event) (bool, error) {
		switch e := ev.(type) {
		case *kafka.Message:
			return l.dispatch(e), nil
		case kafka.Error:
			if e.IsFatal() {
				return false, fmt.Errorf("kafkatransport: consumer of %q: %w", l.topic, e)
			}
			l.r.s.cfg.logger.Warn("kafkatransport consumer", "topic", l.topic, "err", e)
		}
		return false, nil
	}
	lastFlush := time.Now()
	for !l.r.isStopping() {
		if time.Since(lastFlush) >= 20*time.Millisecond {
			l.tracker.flush()
			lastFlush = time.Now()
		}
		if err := pollBurst(l.consumer, l.r.isStopping, handle); err != nil {
			return err
		}
	}
	return nil
}

// request is one call being served.
type request struct {
	lane       *lane
	ticket     ticket
	env        requestEnvelope
	method     method // desc is nil for a method the service does not have
	replyTopic string
	msg        *kafka.Message
	stream     serverStream

	// key is msg.Key as a string and next the request of the same key
	// waiting behind this one (keyQueues); both only for keyed requests.
	key  string
	next *request
}

// dispatch validates a request record and starts its handler, and reports
// whether it did. Records that cannot be answered (no decodable envelope, no
// reply address) or whose deadline has passed are finished without running
// anything.
func (l *lane) dispatch(m *kafka.Message) bool {
	log := l.r.s.cfg.logger
	req := &request{lane: l, msg: m}
	l.tracker.start(&req.ticket, m.TopicPartition.Partition, int64(m.TopicPartition.Offset))
	l.r.add(1)
	raw, ok := header(m.Headers, hdrRPC)
	var err error
	if ok {
		err = req.env.decode(raw)
	}
	if !ok || err != nil || len(req.env.id) == 0 || len(req.env.replyTopic) == 0 || req.env.replyPartition < 0 {
		log.Warn("kafkatransport dropping request without a valid rpc envelope", "topic", l.topic,
			"partition", m.TopicPartition.Partition, "offset", int64(m.TopicPartition.Offset), "err", err)
		l.done(req)
		return false
	}
	req.method, ok = l.svc.methods[string(req.env.method)]
	if !ok {
		req.method.name = string(req.env.method)
	}
	req.stream.method = req.method.name
	req.replyTopic = l.internReplyTopic(req.env.replyTopic)
	if l.expired(req) {
		l.done(req)
		return false
	}
	// Once the run is stopping, nothing more starts, even where a
	// concurrency slot is free (select would pick at random).
	start := !l.r.isStopping()
	if start {
		select {
		case l.r.sem <- struct{}{}:
		case <-l.r.stopping:
			start = false
		}
	}
	if !start {
		// Left unfinished, so its offset is not committed and another
		// instance will serve it.
		l.r.add(-1)
		return false
	}
	if len(m.Key) > 0 {
		switch l.keys.enqueue(req) {
		case queued:
			return false // the goroutine serving its key's requests will run it
		case refused:
			l.abandon(req)
			return false
		}
	}
	go l.handle(req)
	return true
}

// expired reports, and logs, that req's deadline has passed: its caller
// has given up, so it is not run.
func (l *lane) expired(req *request) bool {
	if ms := req.env.deadlineUnixMs; ms > 0 && !time.Now().Before(time.UnixMilli(ms)) {
		l.r.s.cfg.logger.Debug("kafkatransport dropping expired request", "method", req.method.name, "id", string(req.env.id))
		return true
	}
	return false
}

// abandon gives up a request that holds a concurrency slot without running
// it. Left unfinished, its offset is not committed and the partition's next
// owner serves it.
func (l *lane) abandon(*request) {
	l.r.add(-1)
	<-l.r.sem
}

// internReplyTopic returns topic as a string, the same string for every
// request naming it.
func (l *lane) internReplyTopic(topic []byte) string {
	if s, ok := l.replyTopics[string(topic)]; ok {
		return s
	}
	s := string(topic)
	if len(l.replyTopics) < maxReplyTopics {
		l.replyTopics[s] = s
	}
	return s
}

// done finishes a request that produced no reply.
func (l *lane) done(req *request) {
	l.tracker.finish(&req.ticket)
	l.r.add(-1)
}

// handle serves req and then, one after another, the requests of its key
// that wait behind it.
func (l *lane) handle(req *request) {
	for req != nil {
		l.serve(req)
		<-l.r.sem
		if len(req.msg.Key) == 0 {
			return
		}
		req = l.nextOfKey(req)
	}
}

// nextOfKey returns the request of req's key to serve now that req has
// finished, or nil. Expired requests are finished without running; when
// the server is stopping or the partition was revoked, the waiting
// requests are abandoned, to be served by the partition's next owner.
func (l *lane) nextOfKey(req *request) *request {
	for {
		next := l.keys.next(req)
		if next == nil {
			return nil
		}
		if l.r.isStopping() || !l.tracker.current(&next.ticket) {
			l.keys.dropFrom(next, l.abandon)
			return nil
		}
		if !l.expired(next) {
			return next
		}
		l.done(next)
		<-l.r.sem
		req = next
	}
}

// serve runs the method handler and produces the reply.
func (l *lane) serve(req *request) {
	s := l.r.s
	deadline := time.Now().Add(s.cfg.defaultTimeout)
	if ms := req.env.deadlineUnixMs; ms > 0 {
		deadline = time.UnixMilli(ms)
	}
	ctx, cancel := context.WithDeadline(l.r.base, deadline)
	defer cancel()
	if md := req.env.metadata; md != nil {
		ctx = metadata.NewIncomingContext(ctx, md)
	}
	ctx = grpc.NewContextWithServerTransportStream(ctx, &req.stream)

	resp, err := l.invoke(ctx, req)
	l.reply(req, resp, err)
}

// invoke finds and runs the method's handler, turning panics into Internal
// errors and context errors into their status codes.
func (l *lane) invoke(ctx context.Context, req *request) (resp any, err error) {
	method, md := req.method.name, req.method.desc
	if md == nil {
		return nil, status.Errorf(codes.Unimplemented, "kafkatransport: unknown method %q on %s", method, l.svc.desc.ServiceName)
	}
	defer func() {
		if p := recover(); p != nil {
			l.r.s.cfg.logger.Error("kafkatransport handler panic", "method", method, "panic", p, "stack", string(debug.Stack()))
			resp, err = nil, status.Errorf(codes.Internal, "handler panic: %v", p)
		}
	}()
	dec := func(v any) error {
		m, ok := v.(proto.Message)
		if !ok {
			return status.Errorf(codes.Internal, "kafkatransport: request %T is not a proto.Message", v)
		}
		if err := proto.Unmarshal(req.msg.Value, m); err != nil {
			return status.Errorf(codes.InvalidArgument, "kafkatransport: undecodable request for %s: %v", method, err)
		}
		return nil
	}
	resp, err = md.Handler(l.svc.impl, ctx, dec, l.r.s.handler)
	if err != nil {
		if _, isStatus := status.FromError(err); !isStatus {
			if ce := ctx.Err(); ce != nil && errors.Is(err, ce) {
				err = status.FromContextError(err).Err()
			}
		}
	}
	return resp, err
}

// reply produces the reply of req; its delivery finishes req.
func (l *lane) reply(req *request, resp any, err error) {
	value, env := l.r.bufs.get(), l.r.bufs.get()
	defer l.r.bufs.put(value)
	defer l.r.bufs.put(env)
	if err == nil {
		m, ok := resp.(proto.Message)
		if !ok {
			err = status.Errorf(codes.Internal, "kafkatransport: response %T is not a proto.Message", resp)
		} else if *value, err = (proto.MarshalOptions{}).MarshalAppend(*value, m); err != nil {
			err = status.Errorf(codes.Internal, "kafkatransport: marshal response: %v", err)
		}
	}
	var (
		code    codes.Code
		message string
		details []byte
	)
	if err != nil {
		st := status.Convert(err)
		// Protobuf strings are UTF-8; a message built from raw bytes would
		// make the reply undecodable and leave the caller to time out.
		code, message, details = st.Code(), strings.ToValidUTF8(st.Message(), "\uFFFD"), statusDetails(st)
	}
	h, t := req.stream.metadata()
	h, t = l.validMetadata(req, h), l.validMetadata(req, t)
	*env = appendReplyEnvelope(*env, req.env.id, int32(code), message, details, h, t)
	msg := &kafka.Message{
		TopicPartition: kafka.TopicPartition{Topic: &req.replyTopic, Partition: req.env.replyPartition},
		Value:          *value,
		Headers:        []kafka.Header{{Key: hdrRPC, Value: *env}},
		Opaque:         req,
	}
	if err != nil {
		msg.Value = nil
	}
	l.r.produceMu.RLock()
	if l.r.closed {
		l.r.produceMu.RUnlock()
		l.r.s.cfg.logger.Warn("kafkatransport handler finished after shutdown; reply dropped", "method", req.method.name, "id", string(req.env.id))
		l.done(req)
		return
	}
	perr := l.r.producer.Produce(msg, nil)
	l.r.produceMu.RUnlock()
	if perr != nil {
		var ke kafka.Error
		if errors.As(perr, &ke) && ke.Code() == kafka.ErrMsgSizeTooLarge && err == nil {
			l.reply(req, nil, status.Errorf(codes.ResourceExhausted, "kafkatransport: response too large: %v", perr))
			return
		}
		l.r.s.cfg.logger.Error("kafkatransport produce reply", "method", req.method.name, "id", string(req.env.id), "err", perr)
		l.done(req)
	}
}

// validMetadata returns md without keys that are not UTF-8, which no
// client could decode, logging what it drops.
func (l *lane) validMetadata(req *request, md metadata.MD) metadata.MD {
	if invalidMetadataKey(md) == "" {
		return md
	}
	out := metadata.MD{}
	for k, vs := range md {
		if utf8.ValidString(k) {
			out[k] = vs
			continue
		}
		l.r.s.cfg.logger.Warn("kafkatransport dropping response metadata key that is not UTF-8", "method", req.method.name, "key", []byte(k))
	}
	return out
}

// readDeliveries finishes each request whose reply the broker acknowledged.
func (r *run) readDeliveries() {
	for ev := range r.producer.Events() {
		m, ok := ev.(*kafka.Message)
		if !ok {
			if e, ok := ev.(kafka.Error); ok {
				r.s.cfg.logger.Debug("kafkatransport producer", "err", e) // librdkafka's own log has it
			}
			continue
		}
		req, ok := m.Opaque.(*request)
		if !ok {
			continue
		}
		if err := m.TopicPartition.Error; err != nil {
			// The client has timed out by now; serving again would not help.
			r.s.cfg.logger.Error("kafkatransport reply not delivered", "method", req.method.name, "id", string(req.env.id), "err", err)
		}
		req.lane.done(req)
	}
}

// chainServer composes interceptors so that ics[0] is the outermost. It
// returns nil for none, which generated handlers treat as no interceptor.
func chainServer(ics []grpc.UnaryServerInterceptor) grpc.UnaryServerInterceptor {
	switch len(ics) {
	case 0:
		return nil
	case 1:
		return ics[0]
	}
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		var next func(i int) grpc.UnaryHandler
		next = func(i int) grpc.UnaryHandler {
			if i == len(ics) {
				return handler
			}
			return func(ctx context.Context, req any) (any, error) {
				return ics[i](ctx, req, info, next(i+1))
			}
		}
		return ics[0](ctx, req, info, next(1))
	}
}

// serverStream collects the header and trailer metadata a handler sets with
// grpc.SetHeader, grpc.SendHeader and grpc.SetTrailer; they travel with the
// reply.
type serverStream struct {
	method string

	mu      sync.Mutex
	header  metadata.MD
	trailer metadata.MD
}

func (s *serverStream) Method() string { return s.method }

func (s *serverStream) SetHeader(md metadata.MD) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.header = metadata.Join(s.header, md)
	return nil
}

func (s *serverStream) SendHeader(md metadata.MD) error { return s.SetHeader(md) }

func (s *serverStream) SetTrailer(md metadata.MD) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.trailer = metadata.Join(s.trailer, md)
	return nil
}

func (s *serverStream) metadata() (metadata.MD, metadata.MD) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.header, s.trailer
}
