package kafkatransport

import (
	"context"
	"errors"
	"runtime/debug"
	"strings"
	"sync"
	"time"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/stats"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
)

// request is one call being served.
type request struct {
	lane       *lane
	ticket     ticket
	env        requestEnvelope
	method     method // desc is nil for a method the service does not have
	replyTopic string // one of lane.replyTopics
	msg        *kafka.Message
	// caller is the unit that produced the request, as the Guard says;
	// refused is the PermissionDenied the Guard answered it with.
	caller  string
	refused error
	stream  serverStream

	// key is msg.Key as a string and next the request of the same key
	// waiting behind this one (keyQueues); both only for keyed requests.
	key  string
	next *request
}

// handle serves req, which holds a concurrency slot, and then, one after
// another, the requests of its key that wait behind it.
func (l *lane) handle(req *request) {
	for req != nil {
		l.serve(req)
		<-l.s.sem
		if len(req.msg.Key) == 0 {
			return
		}
		req = l.nextOfKey(req)
	}
}

// nextOfKey returns the request of req's key to serve now that req has
// finished, holding a concurrency slot, or nil. The slot is taken as
// dispatch takes one, waiting in line with the other requests (a waiting
// request holds none, so a busy key cannot take every slot). Expired
// requests are finished without running; when the server is stopping or a
// revoke of the partition has begun (or happened), the waiting requests
// are abandoned, to be served by the partition's next owner.
func (l *lane) nextOfKey(req *request) *request {
	for {
		next := l.keys.next(req)
		if next == nil {
			return nil
		}
		// Dropping or finishing needs no slot: a revoke waiting for this
		// partition's running requests must not wait for a free one too.
		if l.s.isStopping() || !l.tracker.current(&next.ticket) {
			l.keys.dropFrom(next, l.abandon)
			return nil
		}
		if l.expired(next) {
			l.done(next)
			req = next
			continue
		}
		_, ok := l.acquire()
		// Checked again: the wait for a slot may have outlasted the run or
		// the assignment.
		if !ok || l.s.isStopping() || !l.tracker.current(&next.ticket) {
			if ok {
				<-l.s.sem
			}
			l.keys.dropFrom(next, l.abandon)
			return nil
		}
		if !l.expired(next) {
			return next
		}
		<-l.s.sem
		l.done(next)
		req = next
	}
}

// serve runs the method handler and produces the reply.
func (l *lane) serve(req *request) {
	deadline := time.Now().Add(l.s.cfg.defaultTimeout)
	if ms := req.env.deadlineUnixMs; ms > 0 {
		deadline = time.UnixMilli(ms)
	}
	ctx, cancel := context.WithDeadline(l.s.base, deadline)
	defer cancel()
	if md := req.env.metadata; md != nil {
		ctx = metadata.NewIncomingContext(ctx, md)
	}
	req.stream.req = req
	ctx = grpc.NewContextWithServerTransportStream(ctx, &req.stream)

	service := l.svc.desc.ServiceName
	l.s.cfg.metrics.RequestStarted(service)
	sh := l.s.cfg.statsHandler()
	if sh == nil {
		resp, err := l.invoke(ctx, req)
		l.s.cfg.metrics.RequestEnded(service)
		l.reply(req, resp, err)
		return
	}
	name, m := req.method.name, req.msg
	ctx, span := tagRPC(ctx, sh, &stats.RPCTagInfo{FullMethodName: name})
	sh.HandleRPC(ctx, &stats.InHeader{FullMethod: name, Header: req.env.metadata, WireLength: len(m.Value)})
	begin := time.Now()
	sh.HandleRPC(ctx, &stats.Begin{BeginTime: begin})
	recordLocation(span, l.topic, m.TopicPartition.Partition, int64(m.TopicPartition.Offset), string(req.env.id),
		keyConsumerGroup.String(l.topic), keyOperationType.String("process"))
	resp, err := l.invoke(ctx, req)
	l.s.cfg.metrics.RequestEnded(service)
	h, t := req.stream.metadata()
	if h != nil {
		sh.HandleRPC(ctx, &stats.OutHeader{Header: h, FullMethod: name})
	}
	if t != nil {
		sh.HandleRPC(ctx, &stats.OutTrailer{Trailer: t})
	}
	recordCall(span, name, err)
	sh.HandleRPC(ctx, &stats.End{BeginTime: begin, EndTime: time.Now(), Trailer: t, Error: err})
	l.reply(req, resp, err)
}

// invoke finds and runs the method's handler, turning panics into Internal
// errors and context errors into their status codes.
func (l *lane) invoke(ctx context.Context, req *request) (resp any, err error) {
	method, md := req.method.name, req.method.desc
	if req.refused != nil {
		return nil, req.refused
	}
	if md == nil {
		return nil, status.Errorf(codes.Unimplemented, "kafkatransport: unknown method %q on %s", method, l.svc.desc.ServiceName)
	}
	defer func() {
		if p := recover(); p != nil {
			l.s.cfg.logger.ErrorContext(ctx, "kafkatransport handler panic", "method", method, "panic", p, "stack", string(debug.Stack()))
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
	resp, err = md.Handler(l.svc.impl, ctx, dec, l.s.handler)
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
	value, env := l.s.bufs.get(), l.s.bufs.get()
	defer l.s.bufs.put(value)
	defer l.s.bufs.put(env)
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
	h, t = validMD(l.s, req.method.name, h), validMD(l.s, req.method.name, t)
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
	if g := l.s.cfg.guard; g != nil {
		if serr := g.SealReply(req.method.name, req.caller, msg); serr != nil {
			l.s.cfg.logger.Error("kafkatransport seal reply; no reply sent", "method", req.method.name, "id", string(req.env.id), "err", serr)
			l.done(req)
			return
		}
	}
	l.s.produceMu.RLock()
	if l.s.closed {
		l.s.produceMu.RUnlock()
		l.s.cfg.logger.Warn("kafkatransport handler finished after shutdown; reply dropped", "method", req.method.name, "id", string(req.env.id))
		l.done(req)
		return
	}
	perr := l.s.producer.Produce(msg, nil)
	l.s.produceMu.RUnlock()
	if perr != nil {
		var ke kafka.Error
		if errors.As(perr, &ke) && ke.Code() == kafka.ErrMsgSizeTooLarge && err == nil {
			l.reply(req, nil, status.Errorf(codes.ResourceExhausted, "kafkatransport: response too large: %v", perr))
			return
		}
		l.s.cfg.logger.Error("kafkatransport produce reply", "method", req.method.name, "id", string(req.env.id), "err", perr)
		l.done(req)
	}
}

// serverStream collects the header and trailer metadata a handler sets with
// grpc.SetHeader, grpc.SendHeader and grpc.SetTrailer; they travel with the
// reply.
type serverStream struct {
	method string
	req    *request // for RequestFromContext

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
