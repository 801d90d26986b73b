package kafkatransport

import (
	"log/slog"
	"testing"
	"time"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"
)

// testLane returns a lane with a tracker and key queues but no consumer:
// enough to drive keyed requests through fetch, revoke and completion.
func testLane() *lane {
	s := &Server{cfg: config{logger: slog.New(slog.DiscardHandler), maxConcurrency: 4}, stopping: make(chan struct{})}
	s.sem = make(chan struct{}, 4)
	return &lane{s: s, topic: "topic", tracker: newTracker("topic", nil), keys: newKeyQueues(s.stopping)}
}

// fetch stands for the dispatch of a keyed record: it starts tracking it and
// queues it behind its key, and reports whether it may run now.
func (l *lane) fetch(t *testing.T, partition int32, offset int64, key string) (*request, bool) {
	t.Helper()
	req := &request{lane: l, msg: &kafka.Message{TopicPartition: kafka.TopicPartition{Topic: &l.topic, Partition: partition, Offset: kafka.Offset(offset)}, Key: []byte(key)}}
	l.tracker.start(&req.ticket, partition, offset)
	l.s.add(1)
	res, _ := l.keys.enqueue(req)
	if res == refused {
		t.Fatalf("request %d refused", offset)
	}
	return req, res == runNow
}

// toStore returns the offset of partition the next flush stores.
func (l *lane) toStore(partition int32) int64 {
	l.tracker.mu.Lock()
	defer l.tracker.mu.Unlock()
	return l.tracker.dirty[partition]
}

// TestReassignedPartitionKeepsItsRequests: a partition lost while a request
// of key K runs and another waits, then given straight back, serves the
// refetched requests of K; the old chain is abandoned alone.
func TestReassignedPartitionKeepsItsRequests(t *testing.T) {
	l := testLane()
	old10, run := l.fetch(t, 0, 10, "K")
	if !run {
		t.Fatal("first request of K must run at once")
	}
	if _, run := l.fetch(t, 0, 11, "K"); run {
		t.Fatal("second request of K must wait")
	}
	l.tracker.forget([]kafka.TopicPartition{{Partition: 0}}) // assignment lost
	new10, run := l.fetch(t, 0, 10, "K")                     // refetched after reassignment
	if !run {
		t.Fatal("refetched request of K waits behind requests of the lost assignment")
	}
	new11, run := l.fetch(t, 0, 11, "K")
	if run {
		t.Fatal("refetched second request of K must wait for the first")
	}
	// The old head ends: its successor belongs to the lost assignment.
	l.tracker.finish(&old10.ticket)
	if next := l.nextOfKey(old10); next != nil {
		t.Fatalf("old head's successor %d started after the partition was lost", next.msg.TopicPartition.Offset)
	}
	l.tracker.finish(&new10.ticket)
	if next := l.nextOfKey(new10); next != new11 {
		t.Fatalf("after the refetched 10, next = %v, want the refetched 11", next)
	}
	l.tracker.finish(&new11.ticket)
	if next := l.nextOfKey(new11); next != nil {
		t.Fatalf("nothing waits behind 11, got %v", next)
	}
	if stored := l.toStore(0); stored != 12 {
		t.Fatalf("offset to commit %d, want 12", stored)
	}
}

// TestRevokeAbandonsWaitingRequests: once a revoke begins, the requests
// waiting for their key are not started but left uncommitted for the next
// owner, and the revoke waits only for the running ones.
func TestRevokeAbandonsWaitingRequests(t *testing.T) {
	l := testLane()
	parts := []kafka.TopicPartition{{Partition: 0}}
	head, _ := l.fetch(t, 0, 10, "K")
	for off := int64(11); off < 20; off++ {
		l.fetch(t, 0, off, "K")
	}
	l.tracker.revoke(parts)
	go func() {
		time.Sleep(50 * time.Millisecond)
		l.done(head)
		if next := l.nextOfKey(head); next != nil {
			t.Errorf("request %d started during a revoke", next.msg.TopicPartition.Offset)
		}
	}()
	start := time.Now()
	if !l.tracker.waitIdle(parts, 5*time.Second) {
		t.Fatalf("revoke still waiting after 5s: %d in flight", l.tracker.inFlight(parts))
	}
	if d := time.Since(start); d > time.Second {
		t.Fatalf("revoke waited %v for one running request", d)
	}
	if stored := l.toStore(0); stored != 11 {
		t.Fatalf("offset to commit %d, want 11 (the waiting requests are uncommitted)", stored)
	}
	if n := l.s.count.Load(); n != 0 {
		t.Fatalf("%d requests still counted in flight", n)
	}
}
