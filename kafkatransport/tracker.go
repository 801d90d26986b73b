package kafkatransport

import (
	"sync"
	"time"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"
)

// tracker follows the records of one topic's assigned partitions from fetch
// to completion, and stores for commit the offset below which every record is
// finished. Offsets are stored in batches by flush (the poll loop calls it
// every 20ms), one cgo call for all partitions rather than one per record.
// Records complete in any order; the stored offset never passes the lowest
// unfinished one, so a crash redelivers everything not finished
// (at-least-once) and skips nothing.
type tracker struct {
	topic    string
	consumer *kafka.Consumer

	mu     sync.Mutex
	parts  map[int32]*partState
	dirty  map[int32]int64 // partition -> offset to store at the next flush
	closed bool            // the consumer is closing: store nothing more
}

// partState is one partition's records in flight, in fetch order. A new
// partState is made on each assignment, so completions of records fetched
// under an earlier assignment are recognised and ignored, and the key queues
// of one assignment never mix with another's.
type partState struct {
	// Guarded by tracker.mu.
	pending    []int64 // offsets in fetch order
	done       map[int64]bool
	stored     int64 // last offset stored for commit, -1 for none
	unfinished int   // records neither finished nor abandoned
	revoking   bool  // a revoke began: start no waiting request
	// headSince is when pending[0] became the oldest unfinished record
	// (Health's stall check).
	headSince time.Time

	// Guarded by keyQueues.mu.
	keys    map[string]*request // key -> last request of the key
	waiting int                 // keyed requests waiting behind their key
}

// ticket is one record being processed.
type ticket struct {
	ps        *partState
	partition int32
	offset    int64
}

func newTracker(topic string, consumer *kafka.Consumer) *tracker {
	return &tracker{topic: topic, consumer: consumer, parts: map[int32]*partState{}, dirty: map[int32]int64{}}
}

// start records in tk that the record at offset of partition is being
// processed.
func (t *tracker) start(tk *ticket, partition int32, offset int64) {
	t.mu.Lock()
	defer t.mu.Unlock()
	ps := t.parts[partition]
	if ps == nil {
		ps = &partState{done: map[int64]bool{}, stored: -1}
		t.parts[partition] = ps
	}
	if len(ps.pending) == 0 {
		ps.headSince = time.Now()
	}
	ps.pending = append(ps.pending, offset)
	ps.unfinished++
	*tk = ticket{ps: ps, partition: partition, offset: offset}
}

// finish records that tk's record is done and stores the new commit offset
// when it moved. It returns false when the partition was revoked meanwhile.
func (t *tracker) finish(tk *ticket) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	tk.ps.unfinished--
	ps := t.parts[tk.partition]
	if ps != tk.ps || t.closed {
		return false
	}
	ps.done[tk.offset] = true
	next := int64(-1)
	for len(ps.pending) > 0 && ps.done[ps.pending[0]] {
		next = ps.pending[0] + 1
		delete(ps.done, ps.pending[0])
		ps.pending = ps.pending[1:]
	}
	if next > ps.stored {
		if len(ps.pending) > 0 {
			ps.headSince = time.Now()
		}
		ps.stored = next
		t.dirty[tk.partition] = next
	}
	return true
}

// abandon records that tk's record is given up unfinished: it is not run,
// its offset is not stored, and the partition's next owner serves it.
func (t *tracker) abandon(tk *ticket) {
	t.mu.Lock()
	defer t.mu.Unlock()
	tk.ps.unfinished--
}

// current reports whether tk's partition is still assigned as it was when
// tk's record started, and no revoke of it has begun.
func (t *tracker) current(tk *ticket) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.parts[tk.partition] == tk.ps && !tk.ps.revoking && !t.closed
}

// revoke marks the partitions as being revoked: from now on current
// reports false for their records, so no waiting request of theirs starts.
func (t *tracker) revoke(parts []kafka.TopicPartition) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, p := range parts {
		if ps := t.parts[p.Partition]; ps != nil {
			ps.revoking = true
		}
	}
}

// flush stores the offsets finished since the last flush.
func (t *tracker) flush() {
	t.mu.Lock()
	defer t.mu.Unlock()
	if offs := t.takeLocked(); len(offs) > 0 {
		// Storing under the lock keeps stored offsets in order. A
		// partition revoked meanwhile is refused by librdkafka, which is
		// right.
		_, _ = t.consumer.StoreOffsets(offs)
	}
}

// takeLocked returns the offsets to store, one per partition whose offset
// moved since the last call, and forgets them. t.mu is held.
func (t *tracker) takeLocked() []kafka.TopicPartition {
	if len(t.dirty) == 0 || t.closed {
		return nil
	}
	offs := make([]kafka.TopicPartition, 0, len(t.dirty))
	for p, o := range t.dirty {
		offs = append(offs, kafka.TopicPartition{Topic: &t.topic, Partition: p, Offset: kafka.Offset(o)})
	}
	clear(t.dirty)
	return offs
}

// inFlight returns how many records of the partitions are neither finished
// nor abandoned: running, or waiting for their key.
func (t *tracker) inFlight(parts []kafka.TopicPartition) int {
	t.mu.Lock()
	defer t.mu.Unlock()
	n := 0
	for _, p := range parts {
		if ps := t.parts[p.Partition]; ps != nil {
			n += ps.unfinished
		}
	}
	return n
}

// waitIdle waits until the partitions have no record that is neither
// finished nor abandoned, or timeout. Called after revoke, it waits for the
// running requests only: their successors of the same key are abandoned as
// each ends.
func (t *tracker) waitIdle(parts []kafka.TopicPartition, timeout time.Duration) bool {
	deadline := time.Now().Add(timeout)
	for t.inFlight(parts) > 0 {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(5 * time.Millisecond)
	}
	return true
}

// stall is a partition whose oldest unfinished record has been so since.
type stall struct {
	partition int32
	offset    int64
	since     time.Time
}

// stalled returns the partitions whose oldest unfinished record has been
// so for longer than bound.
func (t *tracker) stalled(now time.Time, bound time.Duration) []stall {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		return nil
	}
	var out []stall
	for p, ps := range t.parts {
		if len(ps.pending) > 0 && now.Sub(ps.headSince) > bound {
			out = append(out, stall{partition: p, offset: ps.pending[0], since: ps.headSince})
		}
	}
	return out
}

// assigned returns the partitions t follows.
func (t *tracker) assigned() []kafka.TopicPartition {
	t.mu.Lock()
	defer t.mu.Unlock()
	out := make([]kafka.TopicPartition, 0, len(t.parts))
	for p := range t.parts {
		out = append(out, kafka.TopicPartition{Topic: &t.topic, Partition: p})
	}
	return out
}

// close stores what is finished and stops storing offsets, before the
// consumer closes.
func (t *tracker) close() {
	t.flush()
	t.mu.Lock()
	defer t.mu.Unlock()
	t.closed = true
}

// forget drops the partitions' state; later completions are ignored.
func (t *tracker) forget(parts []kafka.TopicPartition) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, p := range parts {
		delete(t.parts, p.Partition)
		delete(t.dirty, p.Partition)
	}
}
