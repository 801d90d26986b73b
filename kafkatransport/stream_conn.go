package kafkatransport

// The wire side of client streams: the opening record, the frames a
// client sends to a server's inbox, the frames it reads from its reply
// partition, and the heartbeat loop of its streams. stream_client.go holds
// the grpc.ClientStream the application uses.

import (
	"maps"
	"slices"
	"time"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

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
			if opened := cs.isOpened(); opened && now.Sub(began) > c.cfg.defaultTimeout {
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

// isOpened reports whether the opening was produced.
func (cs *clientStream) isOpened() bool {
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
		cs.flow.credit(f.credit, f.creditBytes)
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
	if f.creditBytes == 0 {
		cs.flow.trustNoBytes() // a server without byte credit may not keep to ours
	}
	cs.flow.credit(f.credit, f.creditBytes)
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
		if err := g.SealStreamFrame(cs.method, cs.rt.topic, msg); err != nil {
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

// sendCredit grants the server credit up to g.
func (cs *clientStream) sendCredit(g grant) {
	if err := cs.sendFrame(&streamFrame{kind: frameCredit, credit: g.msgs, creditBytes: g.bytes}, nil); err != nil {
		cs.finish(err)
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
	*env = appendStreamOpen(*env, streamOpen{window: c.cfg.streamWindow, windowBytes: c.cfg.streamWindowBytes, halfClosed: halfClosed, heartbeatMs: uint64(c.cfg.streamHeartbeat / time.Millisecond)})
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
