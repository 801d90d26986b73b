package kafkatransport

import (
	"context"
	"io"
	"maps"
	"slices"
	"strconv"
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
		flow:        newFlow(c.cfg.streamWindow, 0, streamSilence(c.cfg.streamHeartbeat)),
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
	cs.closeHeader()
	if accepted {
		cs.c.forgetStream(cs.seq)
	}
	return first
}

// closeHeader marks the header known (it may stay nil).
func (cs *clientStream) closeHeader() {
	cs.mu.Lock()
	defer cs.mu.Unlock()
	select {
	case <-cs.headerReady:
	default:
		close(cs.headerReady)
	}
}

// produceOpen produces the stream's opening record: a request record whose
// envelope carries StreamOpen.
func (cs *clientStream) produceOpen(value, key []byte, halfClosed bool) error {
	c := cs.c
	env := c.bufs.get()
	defer c.bufs.put(env)
	deadline, _ := cs.ctx.Deadline()
	headers := make([]kafka.Header, 1, 3)
	if len(cs.md) > 0 {
		headers = traceHeaders(headers, cs.md)
	}
	*env = appendRequestEnvelope(*env, cs.method, cs.id, c.replyTopic, c.replyPartition, unixMs(deadline), cs.md)
	*env = appendStreamOpen(*env, streamOpen{window: c.cfg.streamWindow, halfClosed: halfClosed, heartbeatMs: uint64(c.cfg.streamHeartbeat / time.Millisecond)})
	headers[0] = kafka.Header{Key: hdrRPC, Value: *env}
	msg := &kafka.Message{
		TopicPartition: kafka.TopicPartition{Topic: &cs.rt.topic, Partition: kafka.PartitionAny},
		Value:          value,
		Key:            key,
		Headers:        headers,
		Opaque:         cs,
	}
	if g := c.cfg.guard; g != nil {
		if err := g.SealRequest(cs.method, msg); err != nil {
			return status.Errorf(codes.Internal, "kafkatransport: seal stream opening: %v", err)
		}
	}
	cs.mu.Lock()
	cs.began = time.Now() // the wait for ACCEPT starts now
	cs.mu.Unlock()
	cs.flow.sentNow()
	return c.produce(msg)
}

// unixMs returns t in Unix milliseconds, or 0 for the zero time (no
// deadline).
func unixMs(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixMilli()
}

// sendFrame produces a frame to the server's inbox. The stream must have
// been accepted.
func (cs *clientStream) sendFrame(f *streamFrame, value []byte) error {
	cs.mu.Lock()
	topic, partition := cs.inboxTopic, cs.inboxPartition
	cs.mu.Unlock()
	return cs.sendFrameTo(topic, partition, f, value)
}

// sendFrameTo produces a frame to a server's inbox.
func (cs *clientStream) sendFrameTo(topic string, partition int32, f *streamFrame, value []byte) error {
	c := cs.c
	buf := c.bufs.get()
	defer c.bufs.put(buf)
	f.id, f.fromClient = cs.id, true
	*buf = appendStreamFrame(*buf, f)
	msg := &kafka.Message{
		TopicPartition: kafka.TopicPartition{Topic: &topic, Partition: partition},
		Value:          value,
		Headers:        []kafka.Header{{Key: hdrStream, Value: *buf}},
		Opaque:         cs,
	}
	if g := c.cfg.guard; g != nil {
		if err := g.SealRequest(cs.method, msg); err != nil {
			return status.Errorf(codes.Internal, "kafkatransport: seal stream frame: %v", err)
		}
	}
	cs.flow.sentNow()
	return c.produce(msg)
}

// sendCancel tells the server, if it accepted the stream, that the client
// gave it up.
func (cs *clientStream) sendCancel() {
	cs.mu.Lock()
	accepted := cs.accepted
	cs.mu.Unlock()
	if accepted {
		_ = cs.sendFrame(&streamFrame{kind: frameCancel}, nil)
	}
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
			seq, ok, err, _ = cs.flow.reserve()
		} else {
			err = cs.flow.err()
		}
		if err != nil {
			return io.EOF
		}
		if ok {
			value, merr := proto.Marshal(pm)
			if merr != nil {
				err := status.Errorf(codes.Internal, "kafkatransport: marshal request: %v", merr)
				cs.finish(err)
				return err
			}
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
		fr, grant, err, changed := cs.flow.next()
		if grant > 0 {
			cs.sendCredit(grant)
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

// setHeader records the server's header metadata, the first time.
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

// sendCredit grants the server credit up to total messages.
func (cs *clientStream) sendCredit(total uint64) {
	if err := cs.sendFrame(&streamFrame{kind: frameCredit, credit: total}, nil); err != nil {
		cs.finish(err)
	}
}

// onFrame handles a frame of the server for this stream. Only the frames
// of the first server instance to send one count: another instance that
// accepts the stream (its opening redelivered after a crash) gets CANCEL.
func (cs *clientStream) onFrame(f *streamFrame, value []byte) {
	cs.mu.Lock()
	if cs.server == "" {
		cs.server = string(f.server)
	}
	other := cs.server != string(f.server)
	cs.mu.Unlock()
	if other {
		if f.kind == frameAccept {
			_ = cs.sendFrameTo(string(f.inboxTopic), f.inboxPartition, &streamFrame{kind: frameCancel}, nil)
		}
		return
	}
	if f.kind.ordered() && f.seq == 1 {
		// The server's first ordered frame carries its header (or none
		// will come): Header need not wait for RecvMsg.
		cs.setHeader(f.header)
	}
	switch f.kind {
	case frameAccept:
		cs.onAccept(f)
	case frameCredit:
		cs.flow.credit(f.credit)
	case framePing:
		cs.flow.heard()
	case frameMessage, frameHeader:
		cs.flow.receive(f.seq, inFrame{kind: f.kind, value: value, header: f.header})
	case frameEnd:
		st := status.New(codes.Code(f.code), string(f.message))
		if len(f.details) > 0 {
			st = replyStatus(&replyEnvelope{code: f.code, message: f.message, details: f.details})
		}
		cs.mu.Lock()
		cs.peerEnded = true // SendMsg returns io.EOF from now on
		cs.mu.Unlock()
		cs.flow.receive(f.seq, inFrame{kind: frameEnd, header: f.header, status: st, trailer: f.trailer})
		cs.flow.signal() // also when the END waits for an earlier frame
	}
}

// onAccept records the server's inbox and first credit, and sends a
// half-close CloseSend left waiting. A stream given up before it was
// accepted is cancelled at the server.
func (cs *clientStream) onAccept(f *streamFrame) {
	cs.mu.Lock()
	if cs.accepted {
		cs.mu.Unlock()
		return
	}
	cs.flow.heard() // before accepted: the liveness loop then sees a fresh stream
	cs.flow.silence.Store(int64(peerSilence(f.heartbeatMs, cs.c.cfg.streamHeartbeat)))
	cs.accepted = true
	cs.inboxTopic, cs.inboxPartition = string(f.inboxTopic), f.inboxPartition
	ended := cs.ended
	halfClose := cs.halfClosed && cs.desc.ClientStreams && !cs.halfCloseSent && !ended
	cs.halfCloseSent = cs.halfCloseSent || halfClose
	cs.mu.Unlock()
	cs.flow.credit(f.credit)
	cs.flow.signal() // SendMsg waits for acceptance, even without credit
	if ended {
		_ = cs.sendFrame(&streamFrame{kind: frameCancel}, nil)
		cs.c.forgetStream(cs.seq)
		return
	}
	if halfClose {
		if err := cs.sendFrame(&streamFrame{kind: frameHalfClose, seq: cs.flow.nextSeqOut()}, nil); err != nil {
			cs.finish(err)
		}
	}
}

// handleStreamFrame hands a stream frame read from the reply partition to
// its stream. Frames of other clients' streams, and of streams ended, are
// ignored; one that is not authentic is logged and ignored.
func (c *ClientConn) handleStreamFrame(e *kafka.Message, raw []byte) bool {
	var f streamFrame
	if err := f.decode(raw); err != nil {
		c.cfg.logger.Warn("kafkatransport undecodable stream frame", "partition", e.TopicPartition.Partition, "offset", int64(e.TopicPartition.Offset), "err", err)
		return false
	}
	seq, ok := c.seqOf(f.id)
	if !ok || f.fromClient { // another stream's, or a server inbox's frame
		return false
	}
	c.mu.Lock()
	cs := c.streams[seq]
	c.mu.Unlock()
	if cs == nil {
		return false
	}
	if g := c.cfg.guard; g != nil {
		if err := g.OpenReply(cs.method, e); err != nil {
			c.cfg.logger.Warn("kafkatransport ignoring a stream frame that is not authentic", "method", cs.method,
				"partition", e.TopicPartition.Partition, "offset", int64(e.TopicPartition.Offset), "err", err)
			return false
		}
	}
	cs.onFrame(&f, e.Value)
	return true
}

// forgetStream drops a stream from the client's table.
func (c *ClientConn) forgetStream(seq uint64) {
	c.mu.Lock()
	delete(c.streams, seq)
	c.mu.Unlock()
}

// startStreamLiveness starts, once, the loop that sends heartbeats on idle
// streams and gives up those whose server went silent; c.mu is held.
func (c *ClientConn) startStreamLiveness() {
	if c.livenessStarted {
		return
	}
	c.livenessStarted = true
	c.wg.Go(func() {
		hb := c.cfg.streamHeartbeat
		t := time.NewTicker(hb / 2)
		defer t.Stop()
		for {
			select {
			case <-c.stop:
				return
			case now := <-t.C:
				c.checkStreams(now, hb)
			}
		}
	})
}

// checkStreams pings idle streams, fails those whose server has been
// silent too long, and forgets streams given up before they were accepted
// once streamOpenLinger has passed.
func (c *ClientConn) checkStreams(now time.Time, hb time.Duration) {
	for _, cs := range c.streamList() {
		cs.mu.Lock()
		accepted, ended, began := cs.accepted, cs.ended, cs.began
		cs.mu.Unlock()
		if ended {
			if !accepted && now.Sub(began) > streamOpenLinger {
				c.forgetStream(cs.seq)
			}
			continue
		}
		if !accepted {
			// The opening waits in the request topic, or was refused
			// without an answer (dead-lettered): WithDefaultTimeout bounds
			// the wait, as it bounds a unary call without a deadline.
			if opened := cs.openedLocked(); opened && now.Sub(began) > c.cfg.defaultTimeout {
				cs.finish(status.Errorf(codes.Unavailable, "kafkatransport: no server accepted the stream of %s within %v", cs.method, c.cfg.defaultTimeout))
			}
			continue
		}
		ping, dead := cs.flow.idle(now, hb)
		if dead {
			cs.finish(status.Errorf(codes.Unavailable, "kafkatransport: the server holding the stream of %s went silent", cs.method))
			continue
		}
		if ping && !c.silenced.Load() {
			if err := cs.sendFrame(&streamFrame{kind: framePing}, nil); err != nil {
				cs.finish(err)
			}
		}
	}
}

// openedLocked reports whether the opening was produced.
func (cs *clientStream) openedLocked() bool {
	cs.mu.Lock()
	defer cs.mu.Unlock()
	return cs.opened
}

// streamList returns the client's streams, so that they are handled
// without holding c.mu.
func (c *ClientConn) streamList() []*clientStream {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Collect(maps.Values(c.streams))
}

// closeStreams fails every stream of a closing client with Unavailable.
func (c *ClientConn) closeStreams() {
	for _, cs := range c.streamList() {
		if cs.finish(status.Error(codes.Unavailable, "kafkatransport: client closed")) {
			cs.sendCancel()
		}
	}
}
