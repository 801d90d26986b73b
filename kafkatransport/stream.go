package kafkatransport

import (
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

// Streams (see "Streams" in the package doc): the state both ends of a
// stream keep, and the defaults.

const (
	// DefaultStreamWindow is how many messages each end of a stream accepts
	// from the other before it grants more credit (WithStreamWindow).
	DefaultStreamWindow = 4096
	// DefaultStreamWindowBytes is how many bytes of message values each end
	// of a stream accepts from the other before it grants more credit
	// (WithStreamWindowBytes). With DefaultStreamWindow it bounds what a
	// slow reader buffers per stream: 4096 messages, and 1 MiB plus one
	// message from a peer that announced a byte window of its own (one
	// that did not, such as an older version, is held to messages only). A credit round trip takes milliseconds on Kafka (a CREDIT
	// record produced with acks=all, then fetched), so a stream moves about
	// half a window per round trip: smaller windows cap one stream's rate.
	DefaultStreamWindowBytes = 1 << 20
	// DefaultStreamHeartbeat is how long a stream may be idle in one
	// direction before that end sends a heartbeat; an end that hears
	// nothing for three of its peer's heartbeats gives the stream up
	// (WithStreamHeartbeat). A dead peer is found within about 3.5 s
	// (three heartbeats and the half heartbeat between two checks), which
	// leaves room for a loaded machine within the 10 s a watcher may wait.
	// An idle stream costs a PING record a second each way.
	DefaultStreamHeartbeat = time.Second
	// DefaultMaxStreams is how many streams a server holds at once
	// (WithMaxStreams).
	DefaultMaxStreams = 1024

	// hdrStream is the header of every stream record but the opening one.
	hdrStream = "kgrpc-stream"
)

// streamSilence is how long an end waits without hearing from a peer
// whose heartbeat is heartbeat before it gives the stream up.
func streamSilence(heartbeat time.Duration) time.Duration { return 3 * heartbeat }

// peerSilence returns streamSilence of the heartbeat a peer announced in
// milliseconds, or of own when it announced none.
func peerSilence(announcedMs uint64, own time.Duration) time.Duration {
	if announcedMs == 0 || announcedMs > uint64(time.Hour/time.Millisecond) {
		return streamSilence(own)
	}
	return streamSilence(time.Duration(announcedMs) * time.Millisecond)
}

// inFrame is an ordered frame an end received: a message (its value), a
// header, a half-close or the end of the stream.
type inFrame struct {
	kind   frameKind
	value  []byte
	header metadata.MD
	// The end of the stream (frameEnd).
	status  *status.Status
	trailer metadata.MD
}

// flow is the ordering, flow control and liveness state of one end of a
// stream. Its methods are safe for concurrent use.
type flow struct {
	window      uint64 // messages granted to the peer at a time
	windowBytes uint64 // bytes granted to the peer at a time; 0: not counted

	mu      sync.Mutex
	changed chan struct{} // closed, and replaced, whenever anything changes
	taken   bool          // changed was handed out: someone may wait on it

	// Receiving: ordered frames are delivered in seq order. Those that
	// come early wait in early; the peer may send at most the credit it
	// was granted, so early and queue hold at most window messages (and a
	// few other frames: both are capped at window+8 frames). closedIn is
	// set once a last frame (HALF_CLOSE, END) was queued: later ordered
	// frames are dropped.
	closedIn bool
	nextSeq  uint64
	early    map[uint64]inFrame
	queue    []inFrame
	received uint64 // messages received
	consumed uint64 // messages the application took
	granted  uint64 // credit granted to the peer, a total
	// The same in bytes of message values, counted when windowBytes > 0;
	// maxSeen is the largest message received, orderedBytes the bytes of
	// those delivered in seq order. lenient: the byte credit is not
	// enforced (trustNoBytes).
	receivedBytes, consumedBytes, grantedBytes, maxSeen, orderedBytes uint64
	lenient                                                           bool

	// Sending.
	outSeq     uint64 // seq of the last ordered frame sent
	sent       uint64 // messages sent
	limit      uint64 // credit the peer granted, a total
	sentBytes  uint64 // bytes of messages sent
	limitBytes uint64 // byte credit the peer granted, a total; 0: none

	// failed is why the stream ended on this side (a broken rule of the
	// peer, the context, the peer's silence, a closed client or server).
	failed error

	lastSent, lastRecv atomic.Int64 // unix nanoseconds
	silence            atomic.Int64 // how long the peer may be silent, ns
}

// newFlow returns the state of an end that grants its peer window messages
// and windowBytes bytes (0: bytes not counted) at a time, and may send limit
// messages and limitBytes bytes (0: no byte limit) until the peer grants
// more.
func newFlow(window, windowBytes, limit, limitBytes uint64, silence time.Duration) *flow {
	f := &flow{window: window, windowBytes: windowBytes, granted: window, grantedBytes: windowBytes,
		limit: limit, limitBytes: limitBytes, nextSeq: 1, changed: make(chan struct{})}
	now := time.Now().UnixNano()
	f.lastSent.Store(now)
	f.lastRecv.Store(now)
	f.silence.Store(int64(silence))
	return f
}

// signalLocked wakes every waiter; f.mu is held.
func (f *flow) signalLocked() {
	if f.taken { // else no one can be waiting: spare a channel per message
		close(f.changed)
		f.changed = make(chan struct{})
		f.taken = false
	}
}

// signal wakes every waiter: state beside the flow changed.
func (f *flow) signal() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.signalLocked()
}

// changedCh returns the channel the next change closes. Take it before
// reading the state to wait on, so that no change is missed.
func (f *flow) changedCh() <-chan struct{} {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.changedLocked()
}

// changedLocked hands out the channel the next change closes; f.mu is held.
func (f *flow) changedLocked() <-chan struct{} {
	f.taken = true
	return f.changed
}

// fail ends the stream on this side with err, unless it ended already.
func (f *flow) fail(err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.failed == nil {
		f.failed = err
		f.signalLocked()
	}
}

// err returns why the stream ended on this side, or nil.
func (f *flow) err() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.failed
}

// receive adds an ordered frame of the peer. A frame seen before is
// dropped; one beyond the credit granted, or too far ahead of the next,
// breaks the stream (a peer that ignores flow control would make this end
// buffer without bound).
func (f *flow) receive(seq uint64, fr inFrame) {
	f.lastRecv.Store(time.Now().UnixNano())
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.failed != nil || f.closedIn || seq < f.nextSeq {
		return
	}
	if _, dup := f.early[seq]; dup {
		return
	}
	if len(f.early)+len(f.queue) > int(f.window)+8 {
		f.failed = status.Error(codes.ResourceExhausted, "kafkatransport: stream peer sent more frames than it may")
		f.signalLocked()
		return
	}
	if fr.kind == frameMessage {
		f.received++
		if f.received > f.granted {
			f.failed = status.Errorf(codes.ResourceExhausted, "kafkatransport: stream peer sent %d messages, more than the %d granted", f.received, f.granted)
			f.signalLocked()
			return
		}
		if f.windowBytes > 0 {
			// The peer starts a message while it has sent less than the
			// byte credit, so all it sent is under the credit plus its
			// last message, whatever order they arrive in; enqueueLocked
			// checks the rule exactly once the order is known.
			n := uint64(len(fr.value))
			f.receivedBytes += n
			f.maxSeen = max(f.maxSeen, n)
			if !f.lenient && f.receivedBytes >= f.grantedBytes+f.maxSeen {
				f.failed = status.Errorf(codes.ResourceExhausted, "kafkatransport: stream peer sent %d bytes, more than the %d granted", f.receivedBytes, f.grantedBytes)
				f.signalLocked()
				return
			}
		}
	}
	if seq != f.nextSeq {
		if f.early == nil {
			f.early = map[uint64]inFrame{}
		}
		f.early[seq] = fr
		return
	}
	f.enqueueLocked(fr)
	for !f.closedIn && f.failed == nil {
		next, ok := f.early[f.nextSeq]
		if !ok {
			break
		}
		delete(f.early, f.nextSeq)
		f.enqueueLocked(next)
	}
	if f.closedIn {
		f.early = nil
	}
	f.signalLocked()
}

// enqueueLocked queues the next ordered frame; f.mu is held. A message the
// peer started when it had sent its byte credit already breaks the stream.
func (f *flow) enqueueLocked(fr inFrame) {
	if fr.kind == frameMessage && f.windowBytes > 0 {
		if !f.lenient && f.orderedBytes >= f.grantedBytes {
			f.failed = status.Errorf(codes.ResourceExhausted, "kafkatransport: stream peer sent a message after %d bytes, the %d granted", f.orderedBytes, f.grantedBytes)
			return
		}
		f.orderedBytes += uint64(len(fr.value))
	}
	f.queue = append(f.queue, fr)
	f.nextSeq++
	if fr.kind == frameHalfClose || fr.kind == frameEnd {
		f.closedIn = true
	}
}

// heard records that the peer sent something unordered (credit, a ping).
func (f *flow) heard() { f.lastRecv.Store(time.Now().UnixNano()) }

// trustNoBytes stops refusing a peer that sends past this end's byte
// credit: the peer announced no byte window of its own, so it may be an
// older one that does not know byte credit. This end still grants bytes.
func (f *flow) trustNoBytes() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.lenient = true
}

// credit raises the credit the peer granted to total messages and
// totalBytes bytes, where those are more.
func (f *flow) credit(total, totalBytes uint64) {
	f.heard()
	f.mu.Lock()
	defer f.mu.Unlock()
	if total > f.limit || totalBytes > f.limitBytes {
		f.limit = max(f.limit, total)
		f.limitBytes = max(f.limitBytes, totalBytes)
		f.signalLocked()
	}
}

// grant is credit to send the peer: totals of messages and bytes.
type grant struct{ msgs, bytes uint64 }

// next returns the next ordered frame, or a nil frame, the error the stream
// ended with on this side, and a channel closed when either may have
// changed (nil with a frame: the caller does not wait then). A message taken counts as consumed; g is then the new credit to
// send the peer, or zero when none is due yet (credit goes out once half
// the window of messages, or of bytes, was consumed).
func (f *flow) next() (fr *inFrame, g grant, err error, changed <-chan struct{}) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.queue) > 0 {
		first := f.queue[0]
		f.queue[0] = inFrame{}
		f.queue = f.queue[1:]
		if first.kind == frameMessage {
			f.consumed++
			f.consumedBytes += uint64(len(first.value))
			if f.granted-f.consumed <= f.window/2 || (f.windowBytes > 0 && f.consumedBytes+f.windowBytes/2 >= f.grantedBytes) {
				f.granted = f.consumed + f.window
				if f.windowBytes > 0 {
					f.grantedBytes = f.consumedBytes + f.windowBytes
				}
				g = grant{f.granted, f.grantedBytes}
			}
		}
		return &first, g, nil, nil // no wait: the channel stays untaken
	}
	return nil, g, f.failed, f.changedLocked()
}

// reserve takes the credit to send one message of size bytes and returns
// its seq (and a nil channel), or reports that there is none yet (with a
// channel closed when that may have changed) or the error the stream ended
// with. A message
// goes while the bytes sent are under the byte credit, so one larger than
// the peer's whole window still goes.
func (f *flow) reserve(size int) (seq uint64, ok bool, err error, changed <-chan struct{}) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.failed != nil {
		return 0, false, f.failed, f.changedLocked()
	}
	if f.sent >= f.limit || (f.limitBytes > 0 && f.sentBytes >= f.limitBytes) {
		return 0, false, nil, f.changedLocked()
	}
	f.sent++
	f.sentBytes += uint64(size)
	f.outSeq++
	return f.outSeq, true, nil, nil // no wait: the channel stays untaken
}

// nextSeqOut returns the seq of an ordered frame that is not a message.
func (f *flow) nextSeqOut() uint64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.outSeq++
	return f.outSeq
}

// sentNow records that a frame went to the peer.
func (f *flow) sentNow() { f.lastSent.Store(time.Now().UnixNano()) }

// idle reports whether this end has sent nothing for d, and whether it has
// heard nothing for longer than its peer may be silent.
func (f *flow) idle(now time.Time, d time.Duration) (ping, dead bool) {
	n := now.UnixNano()
	return n-f.lastSent.Load() >= int64(d), n-f.lastRecv.Load() >= f.silence.Load()
}
