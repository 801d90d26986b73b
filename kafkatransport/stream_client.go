package kafkatransport

import (
	"context"
	"io"
	"strconv"
	"sync"
	"time"
	"unicode/utf8"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
)

// streamOpenLinger is how long a stream given up before the server
// accepted it stays known, so that a late ACCEPT is answered with CANCEL
// and the server stops its handler at once instead of after its silence.
const streamOpenLinger = 30 * time.Second

// clientStream is the client end of a stream. It implements
// grpc.ClientStream.
type clientStream struct {
	c      *ClientConn
	ctx    context.Context
	cancel context.CancelFunc
	desc   *grpc.StreamDesc
	method string
	rt     route
	seq    uint64
	id     []byte
	md     metadata.MD
	opts   []grpc.CallOption
	flow   *flow
	began  time.Time

	mu             sync.Mutex
	opened         bool // the opening record was produced
	accepted       bool
	server         string // the instance whose frames count (the first to send one)
	inboxTopic     string
	inboxPartition int32
	halfClosed     bool // CloseSend was called
	halfCloseSent  bool
	headerReady    chan struct{} // closed once the header is known
	header         metadata.MD
	trailer        metadata.MD
	ended          bool  // END was read, or the stream failed
	endErr         error // what RecvMsg returns from now on
	gotMessage     bool  // a non-server-streaming method's one response
	peerEnded      bool  // the server's END arrived (it may not be read yet)
	done           chan struct{}
	doneOnce       sync.Once
}

// NewStream implements grpc.ClientConnInterface: it opens a stream of a
// streaming method (see "Streams" in the package doc). The request topic
// is the method's service's, without a key; use Service, or the generated
// New<Service>KafkaClient, for topic overrides and keys.
func (c *ClientConn) NewStream(ctx context.Context, desc *grpc.StreamDesc, method string, opts ...grpc.CallOption) (grpc.ClientStream, error) {
	return c.newStreamChain(ctx, route{topic: c.cfg.topic(serviceOf(method))}, desc, method, opts)
}

func (s *serviceConn) NewStream(ctx context.Context, desc *grpc.StreamDesc, method string, opts ...grpc.CallOption) (grpc.ClientStream, error) {
	rt := route{topic: s.topic}
	if serviceOf(method) != s.spec.Name {
		rt.topic = s.c.cfg.topic(serviceOf(method))
	}
	rt.key = s.spec.Keys[method]
	return s.c.newStreamChain(ctx, rt, desc, method, opts)
}

// newStreamChain runs the stream client interceptors around newStream.
func (c *ClientConn) newStreamChain(ctx context.Context, rt route, desc *grpc.StreamDesc, method string, opts []grpc.CallOption) (grpc.ClientStream, error) {
	streamer := func(ctx context.Context, desc *grpc.StreamDesc, _ *grpc.ClientConn, method string, opts ...grpc.CallOption) (grpc.ClientStream, error) {
		return c.newStream(ctx, rt, desc, method, opts)
	}
	ics := c.cfg.streamClientICs
	for i := len(ics) - 1; i >= 0; i-- {
		ic, next := ics[i], streamer
		streamer = func(ctx context.Context, desc *grpc.StreamDesc, cc *grpc.ClientConn, method string, opts ...grpc.CallOption) (grpc.ClientStream, error) {
			return ic(ctx, desc, cc, method, next, opts...)
		}
	}
	return streamer(ctx, desc, nil, method, opts...)
}

func (c *ClientConn) newStream(ctx context.Context, rt route, desc *grpc.StreamDesc, method string, opts []grpc.CallOption) (grpc.ClientStream, error) {
	if err := ctx.Err(); err != nil {
		return nil, status.FromContextError(err).Err()
	}
	if !utf8.ValidString(method) {
		return nil, status.Errorf(codes.Internal, "kafkatransport: method name %q is not UTF-8", method)
	}
	if !desc.ClientStreams && !desc.ServerStreams {
		return nil, status.Errorf(codes.Internal, "kafkatransport: %s is not a streaming method", method)
	}
	md, _ := metadata.FromOutgoingContext(ctx)
	sctx, cancel := context.WithCancel(ctx)
	cs := &clientStream{
		c: c, ctx: sctx, cancel: cancel, desc: desc, method: method, rt: rt, md: md, opts: opts,
		seq:         c.seq.Add(1),
		flow:        newFlow(c.cfg.streamWindow, c.cfg.streamWindowBytes, 0, 0, streamSilence(c.cfg.streamHeartbeat)),
		began:       time.Now(),
		headerReady: make(chan struct{}),
		done:        make(chan struct{}),
	}
	cs.id = strconv.AppendUint([]byte(c.idPrefix), cs.seq, 36)
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		cancel()
		return nil, status.Error(codes.Unavailable, "kafkatransport: client closed")
	}
	if c.streams == nil {
		c.streams = map[uint64]*clientStream{}
	}
	c.streams[cs.seq] = cs
	c.startStreamLiveness()
	c.mu.Unlock()
	// A client-streaming or bidirectional stream opens now; a
	// server-streaming one opens with its one request (SendMsg).
	if desc.ClientStreams {
		cs.mu.Lock()
		cs.opened = true
		cs.mu.Unlock()
		if err := cs.produceOpen(nil, nil, false); err != nil {
			cs.finish(err)
			c.forgetStream(cs.seq)
			return nil, err
		}
	}
	go cs.watchContext()
	return cs, nil
}

// watchContext ends the stream when its context ends, telling the server.
func (cs *clientStream) watchContext() {
	select {
	case <-cs.done:
		return
	case <-cs.ctx.Done():
	}
	err := status.FromContextError(cs.ctx.Err()).Err()
	if cs.finish(err) {
		cs.sendCancel()
	}
}

// finish ends the stream on this side with err and reports whether it was
// still going. A stream not yet accepted stays known for a while (see
// streamOpenLinger); the liveness loop forgets it.
func (cs *clientStream) finish(err error) bool {
	cs.flow.fail(err)
	first := false
	cs.doneOnce.Do(func() {
		first = true
		close(cs.done)
		cs.cancel()
	})
	cs.mu.Lock()
	accepted := cs.accepted || !cs.opened
	if !cs.ended {
		cs.ended, cs.endErr = true, err
	}
	cs.mu.Unlock()
	cs.setHeader(nil) // known now, if it was not: Header returns
	if accepted {
		cs.c.forgetStream(cs.seq)
	}
	return first
}

// Context implements grpc.ClientStream.
func (cs *clientStream) Context() context.Context { return cs.ctx }

// Header implements grpc.ClientStream: it waits for the server's header
// metadata, which comes before its first message or with its status.
func (cs *clientStream) Header() (metadata.MD, error) {
	select {
	case <-cs.headerReady:
	case <-cs.done:
	}
	cs.mu.Lock()
	defer cs.mu.Unlock()
	if cs.header == nil && cs.ended && cs.endErr != nil && cs.endErr != io.EOF {
		return nil, cs.endErr
	}
	return cs.header, nil
}

// Trailer implements grpc.ClientStream: the trailer metadata, once
// RecvMsg has returned an error or io.EOF.
func (cs *clientStream) Trailer() metadata.MD {
	cs.mu.Lock()
	defer cs.mu.Unlock()
	return cs.trailer
}

// CloseSend implements grpc.ClientStream: the client sends no more.
func (cs *clientStream) CloseSend() error {
	cs.mu.Lock()
	if cs.halfClosed || cs.ended {
		cs.mu.Unlock()
		return nil
	}
	cs.halfClosed = true
	if !cs.desc.ClientStreams {
		opened := cs.opened
		cs.opened = true
		cs.mu.Unlock()
		if !opened { // no request was sent: the server gets an empty one
			if err := cs.produceOpen(nil, nil, true); err != nil {
				cs.finish(err)
			}
		}
		return nil
	}
	send := cs.accepted && !cs.halfCloseSent
	cs.halfCloseSent = cs.halfCloseSent || send
	cs.mu.Unlock()
	if send { // else sent once the server accepts (onAccept)
		if err := cs.sendFrame(&streamFrame{kind: frameHalfClose, seq: cs.flow.nextSeqOut()}, nil); err != nil {
			cs.finish(err)
		}
	}
	return nil
}

// SendMsg implements grpc.ClientStream. It waits for the server to accept
// the stream and for credit; it returns io.EOF once the stream has ended,
// whose status RecvMsg then returns.
func (cs *clientStream) SendMsg(m any) error {
	pm, ok := m.(proto.Message)
	if !ok {
		return status.Errorf(codes.Internal, "kafkatransport: request %T is not a proto.Message", m)
	}
	cs.mu.Lock()
	if cs.halfClosed {
		cs.mu.Unlock()
		return status.Error(codes.Internal, "kafkatransport: SendMsg called after CloseSend")
	}
	if cs.ended {
		cs.mu.Unlock()
		return io.EOF
	}
	if !cs.desc.ClientStreams {
		if cs.opened {
			cs.mu.Unlock()
			return status.Errorf(codes.Internal, "kafkatransport: %s takes one request", cs.method)
		}
		cs.opened = true
		cs.mu.Unlock()
		value, err := proto.Marshal(pm)
		if err != nil {
			return status.Errorf(codes.Internal, "kafkatransport: marshal request: %v", err)
		}
		var key []byte
		if cs.rt.key != nil {
			key = cs.rt.key(pm)
		}
		if err := cs.produceOpen(value, key, true); err != nil {
			cs.finish(err)
			return err // the generated stub returns it: say why, not io.EOF
		}
		return nil
	}
	cs.mu.Unlock()
	value, err := proto.Marshal(pm)
	if err != nil {
		err := status.Errorf(codes.Internal, "kafkatransport: marshal request: %v", err)
		cs.finish(err)
		return err
	}
	for {
		// The channel first, then the state: a change in between wakes us.
		changed := cs.flow.changedCh()
		cs.mu.Lock()
		accepted, peerEnded := cs.accepted, cs.peerEnded
		cs.mu.Unlock()
		if peerEnded {
			return io.EOF
		}
		var (
			seq uint64
			ok  bool
			err error
		)
		if accepted {
			seq, ok, err, _ = cs.flow.reserve(len(value))
		} else {
			err = cs.flow.err()
		}
		if err != nil {
			return io.EOF
		}
		if ok {
			if err := cs.sendFrame(&streamFrame{kind: frameMessage, seq: seq}, value); err != nil {
				cs.finish(err)
				cs.sendCancel() // its seq is lost: the server must not wait for it
				return err
			}
			return nil
		}
		select {
		case <-changed:
		case <-cs.done:
		}
	}
}

// RecvMsg implements grpc.ClientStream. It returns io.EOF after the last
// message of a stream that ended OK, and the stream's status error
// otherwise. For a method without server streaming it returns the one
// response, or the status, once the server ended the stream.
func (cs *clientStream) RecvMsg(m any) error {
	pm, ok := m.(proto.Message)
	if !ok {
		return status.Errorf(codes.Internal, "kafkatransport: response %T is not a proto.Message", m)
	}
	for {
		cs.mu.Lock()
		if cs.ended && cs.flowDrained() {
			err := cs.endErr
			cs.mu.Unlock()
			return err
		}
		cs.mu.Unlock()
		fr, g, err, changed := cs.flow.next()
		if g.msgs > 0 {
			cs.sendCredit(g)
		}
		if fr == nil {
			if err != nil {
				if cs.finish(err) {
					cs.sendCancel() // a broken rule of the server: tell it
				}
				cs.mu.Lock()
				err = cs.endErr
				cs.mu.Unlock()
				return err
			}
			<-changed
			continue
		}
		switch fr.kind {
		case frameHeader:
			cs.setHeader(fr.header)
		case frameMessage:
			cs.setHeader(fr.header)
			if err := proto.Unmarshal(fr.value, pm); err != nil {
				err = status.Errorf(codes.Internal, "kafkatransport: unmarshal response: %v", err)
				cs.finish(err)
				cs.sendCancel()
				return err
			}
			if cs.desc.ServerStreams {
				return nil
			}
			cs.mu.Lock()
			dup := cs.gotMessage
			cs.gotMessage = true
			cs.mu.Unlock()
			if dup {
				err := status.Errorf(codes.Internal, "kafkatransport: %s sent more than one response", cs.method)
				cs.finish(err)
				cs.sendCancel()
				return err
			}
			// Wait for the status: the response counts only if it is OK.
			if err := cs.RecvMsg(pm); err != io.EOF {
				if err == nil {
					err = status.Errorf(codes.Internal, "kafkatransport: %s sent more than one response", cs.method)
				}
				return err
			}
			return nil
		case frameEnd:
			cs.setHeader(fr.header)
			cs.mu.Lock()
			cs.trailer = fr.trailer
			err := fr.status.Err()
			if err == nil {
				err = io.EOF
				if !cs.desc.ServerStreams && !cs.gotMessage {
					err = status.Errorf(codes.Internal, "kafkatransport: %s ended without a response", cs.method)
				}
			}
			cs.mu.Unlock()
			cs.applyCallOptions()
			cs.finish(err)
			return err
		}
	}
}

// flowDrained reports whether no ordered frame waits to be read; cs.mu is
// held. Messages received before the stream failed are still read.
func (cs *clientStream) flowDrained() bool {
	cs.flow.mu.Lock()
	defer cs.flow.mu.Unlock()
	return len(cs.flow.queue) == 0
}

// setHeader records the server's header metadata the first time, and
// marks it known (nil, when the stream ended without one).
func (cs *clientStream) setHeader(md metadata.MD) {
	cs.mu.Lock()
	select {
	case <-cs.headerReady:
		cs.mu.Unlock()
		return
	default:
	}
	cs.header = md
	close(cs.headerReady)
	cs.mu.Unlock()
}

// applyCallOptions fills grpc.Header and grpc.Trailer call options.
func (cs *clientStream) applyCallOptions() {
	cs.mu.Lock()
	defer cs.mu.Unlock()
	for _, o := range cs.opts {
		switch o := o.(type) {
		case grpc.HeaderCallOption:
			*o.HeaderAddr = cs.header
		case grpc.TrailerCallOption:
			*o.TrailerAddr = cs.trailer
		}
	}
}
