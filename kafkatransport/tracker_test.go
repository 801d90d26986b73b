package kafkatransport

import (
	"maps"
	"testing"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"
)

// TestTracker runs sequences of record starts and finishes, partition by
// partition, and checks after each step the offsets the tracker would store
// for commit: never past the lowest unfinished record of a partition.
func TestTracker(t *testing.T) {
	type step struct {
		op        string // "start", "finish", "revoke" (forget a partition), "close"
		partition int32
		offset    int64
		stored    map[int32]int64 // offsets to store after the step (a flush); nil: none
		noFlush   bool            // no flush after this step
	}
	tests := []struct {
		name  string
		steps []step
	}{
		{"in order", []step{
			{op: "start", partition: 0, offset: 10},
			{op: "start", partition: 0, offset: 11},
			{op: "finish", partition: 0, offset: 10, stored: map[int32]int64{0: 11}},
			{op: "finish", partition: 0, offset: 11, stored: map[int32]int64{0: 12}},
		}},
		{"later record first waits for the earlier", []step{
			{op: "start", partition: 0, offset: 10},
			{op: "start", partition: 0, offset: 11},
			{op: "start", partition: 0, offset: 12},
			{op: "finish", partition: 0, offset: 12},
			{op: "finish", partition: 0, offset: 11},
			{op: "finish", partition: 0, offset: 10, stored: map[int32]int64{0: 13}},
		}},
		{"lowest unfinished in the middle", []step{
			{op: "start", partition: 0, offset: 10},
			{op: "start", partition: 0, offset: 11},
			{op: "start", partition: 0, offset: 12},
			{op: "finish", partition: 0, offset: 10, stored: map[int32]int64{0: 11}},
			{op: "finish", partition: 0, offset: 12},
			{op: "start", partition: 0, offset: 13},
			{op: "finish", partition: 0, offset: 13},
			{op: "finish", partition: 0, offset: 11, stored: map[int32]int64{0: 14}},
		}},
		{"gaps in offsets (compacted or transaction markers)", []step{
			{op: "start", partition: 0, offset: 10},
			{op: "start", partition: 0, offset: 15},
			{op: "finish", partition: 0, offset: 15},
			{op: "finish", partition: 0, offset: 10, stored: map[int32]int64{0: 16}},
		}},
		{"partitions are independent", []step{
			{op: "start", partition: 0, offset: 5},
			{op: "start", partition: 1, offset: 7},
			{op: "start", partition: 0, offset: 6},
			{op: "finish", partition: 1, offset: 7, stored: map[int32]int64{1: 8}},
			{op: "finish", partition: 0, offset: 6},
			{op: "finish", partition: 0, offset: 5, stored: map[int32]int64{0: 7}},
		}},
		{"several partitions in one flush", []step{
			{op: "start", partition: 0, offset: 1},
			{op: "start", partition: 2, offset: 3},
			{op: "finish", partition: 2, offset: 3, noFlush: true},
			{op: "finish", partition: 0, offset: 1, stored: map[int32]int64{0: 2, 2: 4}},
		}},
		{"revoked partition: late finishes store nothing", []step{
			{op: "start", partition: 0, offset: 10},
			{op: "start", partition: 0, offset: 11},
			{op: "finish", partition: 0, offset: 11},
			{op: "revoke", partition: 0},
			{op: "finish", partition: 0, offset: 10},
		}},
		{"reassigned partition starts afresh", []step{
			{op: "start", partition: 0, offset: 10},
			{op: "revoke", partition: 0},
			{op: "start", partition: 0, offset: 10}, // redelivered
			{op: "finish", partition: 0, offset: 10, stored: map[int32]int64{0: 11}},
		}},
		{"closed: nothing more stored", []step{
			{op: "start", partition: 0, offset: 10},
			{op: "close"},
			{op: "finish", partition: 0, offset: 10},
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tr := newTracker("topic", nil)
			tickets := map[[2]int64]*ticket{} // by partition, offset
			for i, s := range tc.steps {
				key := [2]int64{int64(s.partition), s.offset}
				switch s.op {
				case "start":
					tk := new(ticket)
					tr.start(tk, s.partition, s.offset)
					tickets[key] = tk
				case "finish":
					tk := tickets[key]
					if tk == nil {
						t.Fatalf("step %d: finish of %v never started", i, key)
					}
					delete(tickets, key)
					tr.finish(tk)
				case "revoke":
					tr.forget([]kafka.TopicPartition{{Partition: s.partition}})
				case "close":
					tr.mu.Lock()
					tr.closed = true
					tr.mu.Unlock()
				}
				if s.noFlush {
					continue
				}
				tr.mu.Lock()
				offs := tr.takeLocked()
				tr.mu.Unlock()
				got := map[int32]int64{}
				for _, o := range offs {
					if *o.Topic != "topic" {
						t.Fatalf("step %d: offset for topic %q", i, *o.Topic)
					}
					got[o.Partition] = int64(o.Offset)
				}
				if want := s.stored; !maps.Equal(got, want) && (len(got) != 0 || len(want) != 0) {
					t.Fatalf("step %d (%s %d/%d): stored %v, want %v", i, s.op, s.partition, s.offset, got, want)
				}
			}
		})
	}
}

// TestTrackerInFlight checks the count the rebalance handler waits on: the
// records of the revoked partitions neither finished nor abandoned.
func TestTrackerInFlight(t *testing.T) {
	tr := newTracker("topic", nil)
	var a, b, c, d ticket
	tr.start(&a, 0, 1)
	tr.start(&b, 0, 2)
	tr.start(&c, 1, 1)
	tr.start(&d, 0, 3)
	p0 := []kafka.TopicPartition{{Partition: 0}}
	tests := []struct {
		name    string
		finish  *ticket
		abandon *ticket
		parts   []kafka.TopicPartition
		want    int
	}{
		{"partition 0 before", nil, nil, p0, 3},
		{"both partitions", nil, nil, []kafka.TopicPartition{{Partition: 0}, {Partition: 1}}, 4},
		{"a finished record behind an unfinished one no longer counts", &b, nil, p0, 2},
		{"an abandoned record no longer counts", nil, &a, p0, 1},
		{"all of partition 0 finished or abandoned", &d, nil, p0, 0},
		{"partition 1 untouched", nil, nil, []kafka.TopicPartition{{Partition: 1}}, 1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if tc.finish != nil && !tr.finish(tc.finish) {
				t.Fatal("finish refused on an assigned partition")
			}
			if tc.abandon != nil {
				tr.abandon(tc.abandon)
			}
			if got := tr.inFlight(tc.parts); got != tc.want {
				t.Fatalf("inFlight = %d, want %d", got, tc.want)
			}
		})
	}
}
