package kafkatransport

import (
	"context"
	"errors"
	"io"
	"runtime/debug"
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

// errServerStopping is the cause of the contexts of streams a stopping
// server ends; their clients get Unavailable and may open them again at
// another instance.
var errServerStopping = errors.New("kafkatransport: server stopping")

// errClientGone is the cause of the context of a stream whose client
// cancelled it or went silent.
var errClientGone = errors.New("kafkatransport: stream client gone")

// srvStream is the server end of a stream. It implements grpc.ServerStream.
type srvStream struct {
	l      *lane
	sd     *grpc.StreamDesc
	method string
	id     string
	caller string // the unit that opened it, as the Guard authenticated it
	open   []byte // a server-streaming method's one request
	req    *request
	flow   *flow

	replyTopic     string
	replyPartition int32

	ctx    context.Context
	cancel context.CancelCauseFunc

	mu         sync.Mutex
	header     metadata.MD
	headerSent bool
	trailer    metadata.MD
	recvDone   bool   // RecvMsg returned io.EOF or its one request
	ended      bool   // END was sent
	lostSeq    uint64 // the seq of an ordered frame that could not be sent: END takes it
}

// openStream starts the stream req opens; it runs on the poll goroutine.
// The opening record counts as finished once the ACCEPT (or the END of a
// refused stream) is handed to the producer: a stream is not served again
// after a crash, its client gets Unavailable.
func (l *lane) openStream(req *request) {
	s := l.s
	sd := l.svc.streams[req.method.name]
	refuse := func(err error) {
		st := &srvStream{l: l, method: req.method.name, id: string(req.env.id), caller: req.caller, req: req,
			replyTopic: req.replyTopic, replyPartition: req.env.replyPartition, flow: newFlow(1, 0, 0, 0, 0)}
		st.sendEnd(status.Convert(err))
		l.done(req)
	}
	switch {
	case sd == nil && req.method.desc != nil:
		refuse(status.Errorf(codes.Unimplemented, "kafkatransport: %s is not a streaming method", req.method.name))
		return
	case sd == nil:
		refuse(status.Errorf(codes.Unimplemented, "kafkatransport: unknown method %q on %s", req.method.name, l.svc.desc.ServiceName))
		return
	case req.refused != nil:
		refuse(req.refused)
		return
	case s.streams == nil:
		refuse(status.Error(codes.Internal, "kafkatransport: server has no stream inbox"))
		return
	case req.env.stream.window == 0:
		refuse(status.Error(codes.InvalidArgument, "kafkatransport: stream opening with a window of 0"))
		return
	}
	ss := s.streams
	st := &srvStream{
		l: l, sd: sd, method: req.method.name, id: string(req.env.id), caller: req.caller, req: req,
		replyTopic: req.replyTopic, replyPartition: req.env.replyPartition,
		flow: newFlow(s.cfg.streamWindow, s.cfg.streamWindowBytes, req.env.stream.window, req.env.stream.windowBytes, peerSilence(req.env.stream.heartbeatMs, s.cfg.streamHeartbeat)),
	}
	if req.env.stream.windowBytes == 0 {
		// A client without a byte window may be an older one, which does
		// not know byte credit: its messages are counted, not refused.
		st.flow.trustNoBytes()
	}
	if sd.ClientStreams == req.env.stream.halfClosed {
		refuse(status.Errorf(codes.Internal, "kafkatransport: stream opening of %s does not match its kind", req.method.name))
		return
	}
	if !sd.ClientStreams {
		st.open = req.msg.Value
	}
	ss.mu.Lock()
	if _, dup := ss.byID[st.id]; dup {
		ss.mu.Unlock()
		l.done(req) // a redelivered opening of a stream already held
		return
	}
	if len(ss.byID) >= s.cfg.maxStreams {
		ss.mu.Unlock()
		refuse(status.Errorf(codes.ResourceExhausted, "kafkatransport: server holds %d streams, its limit", s.cfg.maxStreams))
		return
	}
	ctx := s.base // cancelled after the drain timeout, like unary handlers
	var stopDeadline context.CancelFunc = func() {}
	if ms := req.env.deadlineUnixMs; ms > 0 {
		ctx, stopDeadline = context.WithDeadline(ctx, time.UnixMilli(ms))
	}
	ctx, st.cancel = context.WithCancelCause(ctx)
	if md := req.env.metadata; md != nil {
		ctx = metadata.NewIncomingContext(ctx, md)
	}
	st.ctx = grpc.NewContextWithServerTransportStream(ctx, &streamTransport{st})
	ss.byID[st.id] = st
	ss.running.Add(1)
	ss.mu.Unlock()

	err := st.send(&streamFrame{kind: frameAccept, credit: s.cfg.streamWindow, creditBytes: s.cfg.streamWindowBytes, inboxTopic: []byte(ss.inboxTopic), inboxPartition: ss.inboxPartition,
		heartbeatMs: uint64(s.cfg.streamHeartbeat / time.Millisecond)}, nil)
	l.done(req)
	if err != nil {
		s.cfg.logger.Warn("kafkatransport stream not accepted", "method", st.method, "id", st.id, "err", err)
		ss.mu.Lock()
		delete(ss.byID, st.id)
		ss.mu.Unlock()
		ss.running.Add(-1)
		st.cancel(err)
		stopDeadline()
		return
	}
	go func() {
		defer ss.running.Add(-1)
		defer stopDeadline()
		st.run()
	}()
}

// run runs the handler and ends the stream with its status.
func (st *srvStream) run() {
	s := st.l.s
	defer func() {
		s.streams.mu.Lock()
		delete(s.streams.byID, st.id)
		s.streams.mu.Unlock()
		st.cancel(nil)
	}()
	err := st.invoke()
	cause := context.Cause(st.ctx)
	switch {
	case errors.Is(cause, errClientGone):
		return // nobody to tell
	case errors.Is(cause, errServerStopping):
		err = status.Error(codes.Unavailable, "kafkatransport: server stopping; open the stream again")
	case err != nil:
		if _, isStatus := status.FromError(err); !isStatus {
			if ce := st.ctx.Err(); ce != nil && errors.Is(err, ce) {
				err = status.FromContextError(err).Err()
			}
		}
	}
	st.sendEnd(status.Convert(err))
}

// invoke runs the stream handler through the interceptors, turning panics
// into Internal.
func (st *srvStream) invoke() (err error) {
	s := st.l.s
	defer func() {
		if p := recover(); p != nil {
			s.cfg.logger.ErrorContext(st.ctx, "kafkatransport stream handler panic", "method", st.method, "panic", p, "stack", string(debug.Stack()))
			err = status.Errorf(codes.Internal, "handler panic: %v", p)
		}
	}()
	impl := st.l.svc.impl
	if ics := s.cfg.streamServerICs; len(ics) > 0 {
		info := &grpc.StreamServerInfo{FullMethod: st.method, IsClientStream: st.sd.ClientStreams, IsServerStream: st.sd.ServerStreams}
		return chainStreamServer(ics)(impl, st, info, st.sd.Handler)
	}
	return st.sd.Handler(impl, st)
}

// chainStreamServer composes stream interceptors so that ics[0] is the
// outermost.
func chainStreamServer(ics []grpc.StreamServerInterceptor) grpc.StreamServerInterceptor {
	return func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
		var next func(i int) grpc.StreamHandler
		next = func(i int) grpc.StreamHandler {
			if i == len(ics) {
				return handler
			}
			return func(srv any, ss grpc.ServerStream) error {
				return ics[i](srv, ss, info, next(i+1))
			}
		}
		return next(0)(srv, ss)
	}
}

// send produces a frame to the client's reply partition.
func (st *srvStream) send(f *streamFrame, value []byte) error {
	s := st.l.s
	buf := s.bufs.get()
	defer s.bufs.put(buf)
	f.id = []byte(st.id)
	if s.streams != nil {
		f.server = s.streams.run
	}
	*buf = appendStreamFrame(*buf, f)
	topic := st.replyTopic
	msg := &kafka.Message{
		TopicPartition: kafka.TopicPartition{Topic: &topic, Partition: st.replyPartition},
		Value:          value,
		Headers:        []kafka.Header{{Key: hdrStream, Value: *buf}},
		Opaque:         st,
	}
	if g := s.cfg.guard; g != nil {
		if err := g.SealReply(st.method, st.caller, msg); err != nil {
			s.cfg.logger.Error("kafkatransport seal stream frame", "method", st.method, "id", st.id, "err", err)
			return status.Errorf(codes.Internal, "kafkatransport: seal stream frame: %v", err)
		}
	}
	s.produceMu.RLock()
	defer s.produceMu.RUnlock()
	if s.closed {
		return status.Error(codes.Unavailable, "kafkatransport: server stopped")
	}
	st.flow.sentNow()
	if err := s.producer.Produce(msg, nil); err != nil {
		var ke kafka.Error
		if errors.As(err, &ke) && ke.Code() == kafka.ErrMsgSizeTooLarge {
			return status.Errorf(codes.ResourceExhausted, "kafkatransport: stream message too large: %v", err)
		}
		return status.Errorf(codes.Unavailable, "kafkatransport: produce stream frame: %v", err)
	}
	return nil
}

// sendOrdered sends an ordered frame; when it cannot be sent, its seq is
// kept for END, so that the client does not wait for a frame that never
// comes.
func (st *srvStream) sendOrdered(f *streamFrame, value []byte) error {
	err := st.send(f, value)
	if err != nil {
		st.mu.Lock()
		if st.lostSeq == 0 {
			st.lostSeq = f.seq
		}
		st.mu.Unlock()
	}
	return err
}

// sendEnd sends the stream's status and trailer, and the header when none
// was sent.
func (st *srvStream) sendEnd(stt *status.Status) {
	st.mu.Lock()
	if st.ended {
		st.mu.Unlock()
		return
	}
	st.ended = true
	f := &streamFrame{kind: frameEnd, code: int32(stt.Code()), message: []byte(strings.ToValidUTF8(stt.Message(), "\uFFFD")), details: statusDetails(stt),
		trailer: validMD(st.l.s, st.method, st.trailer)}
	if !st.headerSent {
		st.headerSent = true
		f.header = validMD(st.l.s, st.method, st.header)
	}
	lost := st.lostSeq
	st.mu.Unlock()
	if f.seq = lost; f.seq == 0 {
		f.seq = st.flow.nextSeqOut()
	}
	if err := st.send(f, nil); err != nil {
		st.l.s.cfg.logger.Warn("kafkatransport stream end not sent", "method", st.method, "id", st.id, "err", err)
	}
}

// validMD returns md without keys that are not UTF-8, which no client
// could decode, logging what it drops.
func validMD(s *Server, method string, md metadata.MD) metadata.MD {
	if invalidMetadataKey(md) == "" {
		return md
	}
	out := metadata.MD{}
	for k, vs := range md {
		if utf8.ValidString(k) {
			out[k] = vs
			continue
		}
		s.cfg.logger.Warn("kafkatransport dropping response metadata key that is not UTF-8", "method", method, "key", []byte(k))
	}
	return out
}

// Context implements grpc.ServerStream.
func (st *srvStream) Context() context.Context { return st.ctx }

// SetHeader implements grpc.ServerStream: md joins the header, which goes
// with the first message or the status, or SendHeader.
func (st *srvStream) SetHeader(md metadata.MD) error {
	st.mu.Lock()
	defer st.mu.Unlock()
	if st.headerSent {
		return status.Error(codes.Internal, "kafkatransport: header already sent")
	}
	st.header = metadata.Join(st.header, md)
	return nil
}

// SendHeader implements grpc.ServerStream: it sends the header now.
func (st *srvStream) SendHeader(md metadata.MD) error {
	st.mu.Lock()
	if st.headerSent {
		st.mu.Unlock()
		return status.Error(codes.Internal, "kafkatransport: header already sent")
	}
	st.headerSent = true
	h := validMD(st.l.s, st.method, metadata.Join(st.header, md))
	st.mu.Unlock()
	return st.sendOrdered(&streamFrame{kind: frameHeader, seq: st.flow.nextSeqOut(), header: h}, nil)
}

// SetTrailer implements grpc.ServerStream.
func (st *srvStream) SetTrailer(md metadata.MD) {
	st.mu.Lock()
	defer st.mu.Unlock()
	st.trailer = metadata.Join(st.trailer, md)
}

// SendMsg implements grpc.ServerStream. It waits for the client's credit.
func (st *srvStream) SendMsg(m any) error {
	pm, ok := m.(proto.Message)
	if !ok {
		return status.Errorf(codes.Internal, "kafkatransport: response %T is not a proto.Message", m)
	}
	value, err := proto.Marshal(pm)
	if err != nil {
		return status.Errorf(codes.Internal, "kafkatransport: marshal response: %v", err)
	}
	for {
		seq, ok, err, changed := st.flow.reserve(len(value))
		if err != nil {
			return err
		}
		if ok {
			f := &streamFrame{kind: frameMessage, seq: seq}
			st.mu.Lock()
			if !st.headerSent {
				st.headerSent = true
				f.header = validMD(st.l.s, st.method, st.header)
			}
			st.mu.Unlock()
			return st.sendOrdered(f, value)
		}
		select {
		case <-changed:
		case <-st.ctx.Done():
			return status.FromContextError(st.ctx.Err()).Err()
		}
	}
}

// RecvMsg implements grpc.ServerStream: the client's next message, or
// io.EOF once it half-closed.
func (st *srvStream) RecvMsg(m any) error {
	pm, ok := m.(proto.Message)
	if !ok {
		return status.Errorf(codes.Internal, "kafkatransport: request %T is not a proto.Message", m)
	}
	if !st.sd.ClientStreams {
		st.mu.Lock()
		done := st.recvDone
		st.recvDone = true
		st.mu.Unlock()
		if done {
			return io.EOF
		}
		if err := proto.Unmarshal(st.open, pm); err != nil {
			return status.Errorf(codes.InvalidArgument, "kafkatransport: undecodable request for %s: %v", st.method, err)
		}
		return nil
	}
	for {
		st.mu.Lock()
		done := st.recvDone
		st.mu.Unlock()
		if done {
			return io.EOF
		}
		fr, g, err, changed := st.flow.next()
		if g.msgs > 0 {
			if err := st.send(&streamFrame{kind: frameCredit, credit: g.msgs, creditBytes: g.bytes}, nil); err != nil {
				return err
			}
		}
		if fr != nil {
			switch fr.kind {
			case frameMessage:
				if err := proto.Unmarshal(fr.value, pm); err != nil {
					return status.Errorf(codes.InvalidArgument, "kafkatransport: undecodable request for %s: %v", st.method, err)
				}
				return nil
			case frameHalfClose:
				st.mu.Lock()
				st.recvDone = true
				st.mu.Unlock()
				return io.EOF
			}
			continue
		}
		if err != nil {
			return err
		}
		select {
		case <-changed:
		case <-st.ctx.Done():
			return status.FromContextError(st.ctx.Err()).Err()
		}
	}
}

// streamTransport is the grpc.ServerTransportStream of a stream handler's
// context, so grpc.SetHeader, grpc.SendHeader and grpc.SetTrailer work on
// it and RequestFromContext finds the opening record.
type streamTransport struct{ st *srvStream }

func (t *streamTransport) Method() string                  { return t.st.method }
func (t *streamTransport) SetHeader(md metadata.MD) error  { return t.st.SetHeader(md) }
func (t *streamTransport) SendHeader(md metadata.MD) error { return t.st.SendHeader(md) }
func (t *streamTransport) SetTrailer(md metadata.MD) error { t.st.SetTrailer(md); return nil }
