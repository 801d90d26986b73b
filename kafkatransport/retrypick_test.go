package kafkatransport

import (
	"testing"
	"time"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"
	"google.golang.org/protobuf/types/descriptorpb"
)

// knownTopic returns the state of a topic of n partitions whose count the
// client has read.
func knownTopic(n int) *topicState {
	return &topicState{topic: "t", tokens: throttleMaxTokens, partitions: n,
		lastReply: make([]time.Time, n), suspect: make([]time.Time, n)}
}

func TestPickPartitions(t *testing.T) {
	unknown := &topicState{topic: "t", tokens: throttleMaxTokens}
	if p := unknown.pick([]int32{0}, time.Second); p != kafka.PartitionAny {
		t.Errorf("unknown partition count: picked %d, want PartitionAny", p)
	}
	ts := knownTopic(4)
	if p := ts.pick(nil, time.Second); p != kafka.PartitionAny {
		t.Errorf("nothing suspect: first attempt picked %d, want PartitionAny", p)
	}
	start := time.Now()
	ts.noReplySince(0, start)
	ts.noReplySince(1, start)
	for range 50 {
		if p := ts.pick(nil, time.Second); p != 2 && p != 3 {
			t.Fatalf("0 and 1 suspect: first attempt picked %d, want 2 or 3", p)
		}
		if p := ts.pick([]int32{2}, time.Second); p != 3 {
			t.Fatalf("0 and 1 suspect, 2 used: picked %d, want 3", p)
		}
	}
	// Every partition used or suspect: one not used, suspect or not.
	if p := ts.pick([]int32{2, 3}, time.Second); p != 0 && p != 1 {
		t.Errorf("picked %d, want 0 or 1", p)
	}
	if p := ts.pick([]int32{0, 1, 2, 3}, time.Second); p != kafka.PartitionAny {
		t.Errorf("every partition used: picked %d, want PartitionAny", p)
	}
	// A hedge prefers a partition that answered within the hedge delay.
	ts.heard(1) // clears its suspicion too
	for range 50 {
		if p := ts.pick([]int32{0}, time.Second); p != 1 {
			t.Fatalf("hedge picked %d, want 1, the one that answered", p)
		}
	}
	// A partition that answered after the request was sent is not made
	// suspect.
	ts.noReplySince(1, start)
	if ts.suspect[1].After(time.Now()) {
		t.Error("partition 1 made suspect although it answered since")
	}
	// Suspicion ends by itself.
	ts.suspect[0] = time.Now().Add(-time.Millisecond)
	if p := ts.pick(nil, time.Second); p != kafka.PartitionAny {
		t.Errorf("suspicion over: first attempt picked %d, want PartitionAny", p)
	}
}

func TestThrottle(t *testing.T) {
	ts := knownTopic(1)
	n := 0
	for ts.allowRetry() {
		ts.failed()
		n++
	}
	if n != 5 {
		t.Errorf("%d failures before the throttle closed, want 5", n)
	}
	for range 10 {
		ts.replied()
	}
	if !ts.allowRetry() {
		t.Error("10 replies did not reopen the throttle")
	}
}

func TestBackoff(t *testing.T) {
	p := RetryPolicy{MaxAttempts: 5, InitialBackoff: 100 * time.Millisecond, MaxBackoff: 300 * time.Millisecond}
	for n, want := range map[int]time.Duration{1: 100 * time.Millisecond, 2: 200 * time.Millisecond, 3: 300 * time.Millisecond, 4: 300 * time.Millisecond} {
		for range 100 {
			if d := p.backoff(n); d < want-want/5 || d > want+want/5 {
				t.Fatalf("backoff(%d) = %v, want %v ±20%%", n, d, want)
			}
		}
	}
}

func TestIdempotencyLevelOf(t *testing.T) {
	for method, want := range map[string]descriptorpb.MethodOptions_IdempotencyLevel{
		"/kgrpc.testing.v1.EchoService/Lookup": descriptorpb.MethodOptions_NO_SIDE_EFFECTS,
		"/kgrpc.testing.v1.EchoService/Put":    descriptorpb.MethodOptions_IDEMPOTENT,
		"/kgrpc.testing.v1.EchoService/Sleep":  descriptorpb.MethodOptions_IDEMPOTENCY_UNKNOWN,
		"/grpc.health.v1.Health/Check":         descriptorpb.MethodOptions_NO_SIDE_EFFECTS,
		"/no.such.Service/Method":              descriptorpb.MethodOptions_IDEMPOTENCY_UNKNOWN,
		"malformed":                            descriptorpb.MethodOptions_IDEMPOTENCY_UNKNOWN,
	} {
		if got := IdempotencyLevelOf(method); got != want {
			t.Errorf("IdempotencyLevelOf(%q) = %v, want %v", method, got, want)
		}
	}
}
