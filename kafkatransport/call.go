package kafkatransport

import (
	"context"
	"errors"
	"strconv"
	"time"
	"unicode/utf8"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/stats"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
)

// Invoke implements grpc.ClientConnInterface. The request goes to the topic
// named after the method's service (plus any TopicPrefix) without a key; use
// Service, or the generated New<Service>KafkaClient, for topic overrides and
// keys.
func (c *ClientConn) Invoke(ctx context.Context, method string, args, reply any, opts ...grpc.CallOption) error {
	return c.invoke(ctx, route{topic: c.cfg.topic(serviceOf(method))}, method, args, reply, opts)
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

// call sends one request and waits for its reply, the context's end, or a
// transport failure, reporting to the stats handlers and metrics.
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
	sh := c.cfg.statsHandler()
	if sh == nil {
		return c.roundTrip(ctx, nil, nil, rt, method, req, reply, opts)
	}
	ctx, span := tagRPC(ctx, sh, &stats.RPCTagInfo{FullMethodName: method, FailFast: true})
	begin := time.Now()
	sh.HandleRPC(ctx, &stats.Begin{Client: true, BeginTime: begin, FailFast: true})
	err := c.roundTrip(ctx, sh, span, rt, method, req, reply, opts)
	recordCall(span, method, err)
	sh.HandleRPC(ctx, &stats.End{Client: true, BeginTime: begin, EndTime: time.Now(), Error: err})
	return err
}

// roundTrip sends req and waits for its reply, the context's end, or a
// transport failure, sending it again as the retry policy allows (see
// RetryPolicy); span, when a stats handler made one, records where the
// requests went.
func (c *ClientConn) roundTrip(ctx context.Context, sh rpcStats, span trace.Span, rt route, method string, req proto.Message, reply any, opts []grpc.CallOption) error {
	if err := ctx.Err(); err != nil {
		return status.FromContextError(err).Err()
	}
	a := attempts{c: c, ctx: ctx, sh: sh, span: span, topic: rt.topic, method: method, req: req}
	if rt.key != nil {
		a.key = rt.key(req)
	}
	a.kind = c.kindOf(method, a.key != nil)
	if c.cfg.retry.MaxAttempts > 1 {
		a.state = c.state(rt.topic)
	}
	res, err := a.run()
	if a.n > 1 && span != nil && span.IsRecording() {
		span.SetAttributes(keyAttempts.Int(a.n))
	}
	if err != nil {
		return err
	}
	if sh != nil {
		now := time.Now()
		sh.HandleRPC(ctx, &stats.InHeader{Client: true, Header: res.reply.header, FullMethod: method, WireLength: len(res.value)})
		defer sh.HandleRPC(ctx, &stats.InTrailer{Client: true, Trailer: res.reply.trailer})
		defer func() {
			if res.reply.code == int32(codes.OK) {
				sh.HandleRPC(ctx, &stats.InPayload{Client: true, Payload: reply, Length: len(res.value), WireLength: len(res.value), RecvTime: now})
			}
		}()
	}
	return decodeReply(&res.reply, res.value, reply, opts)
}

// send registers pc and produces its request to partition of topic
// (kafka.PartitionAny: the producer picks) with key. The encoding buffers go back
// to the pool once Produce has copied them.
func (c *ClientConn) send(ctx context.Context, sh rpcStats, topic, method string, req proto.Message, key []byte, partition int32, pc *pendingCall) error {
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
		TopicPartition: kafka.TopicPartition{Topic: &topic, Partition: partition},
		Key:            key,
		Value:          *value,
		Headers:        headers,
		Opaque:         pc,
	}
	if g := c.cfg.guard; g != nil {
		if err := g.SealRequest(method, msg); err != nil {
			return status.Errorf(codes.Internal, "kafkatransport: seal request: %v", err)
		}
	}

	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return status.Error(codes.Unavailable, "kafkatransport: client closed")
	}
	c.pending[pc.seq] = pc
	c.mu.Unlock()

	if pc.span != nil {
		recordLocation(pc.span, topic, -1, -1, string(id))
	}
	if sh != nil {
		sh.HandleRPC(ctx, &stats.OutHeader{Client: true, Header: md, FullMethod: method})
		sh.HandleRPC(ctx, &stats.OutPayload{Client: true, Payload: req, Length: len(*value), WireLength: len(*value), SentTime: time.Now()})
	}
	if c.failProduces.Load() > 0 && c.failProduces.Add(-1) >= 0 { // tests: FailProducesForTest
		err = produceError(kafka.NewError(kafka.ErrQueueFull, "refused for the test", false))
	} else {
		err = c.produce(msg)
	}
	if err != nil {
		c.forget(pc.seq)
		if err != errClientClosed && status.Code(err) == codes.Unavailable {
			return unsentError{err} // the broker never had it
		}
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
		return errClientClosed
	}
	if err := c.producer.Produce(msg, nil); err != nil {
		return produceError(err)
	}
	return nil
}

// ErrorDomain and ReasonRequestTooLarge name, in a google.rpc.ErrorInfo
// detail, the ResourceExhausted of a request too large for the broker, so
// that callers (the gateway: 413) tell it from other ResourceExhausted
// errors without reading its message.
const (
	ErrorDomain           = "kgrpc.kafka"
	ReasonRequestTooLarge = "REQUEST_TOO_LARGE"
)

// errClientClosed fails what a closed ClientConn is asked to send.
var errClientClosed = status.Error(codes.Unavailable, "kafkatransport: client closed")

// produceError maps a producer error to a status error.
func produceError(err error) error {
	var ke kafka.Error
	if errors.As(err, &ke) && (ke.Code() == kafka.ErrMsgSizeTooLarge) {
		st := status.Newf(codes.ResourceExhausted, "kafkatransport: request too large: %v", err)
		if withInfo, derr := st.WithDetails(&errdetails.ErrorInfo{Reason: ReasonRequestTooLarge, Domain: ErrorDomain}); derr == nil {
			st = withInfo
		}
		return st.Err()
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
