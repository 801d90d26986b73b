package kafkatransport_test

// Conformance tests of keyed ordering: requests with the same record key in
// a partition are handled one after another in the order produced; other
// keys and keyless requests run concurrently; offsets are committed only up
// to the lowest unfinished request. The requests are produced by hand, one
// producer into one chosen partition, so that the test fixes their order.

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"
	"google.golang.org/protobuf/proto"

	"github.com/kgrpc/platform/kafkatransport"
	kafkav1 "github.com/kgrpc/platform/kafkatransport/gen/kgrpc/kafka/v1"
	testingv1 "github.com/kgrpc/platform/kafkatransport/gen/kgrpc/testing/v1"
)

// keyRecorder is an echo service whose Echo sleeps for the milliseconds
// after the ':' of the message ("a-1:300") and records when each call
// starts and ends.
type keyRecorder struct {
	testingv1.UnimplementedEchoServiceServer
	mu     sync.Mutex
	events []string // "start a-1", "end a-1", in order
	ended  map[string]bool
}

func newKeyRecorder() *keyRecorder { return &keyRecorder{ended: map[string]bool{}} }

func (r *keyRecorder) record(ev, name string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.events = append(r.events, ev+" "+name)
	if ev == "end" {
		r.ended[name] = true
	}
}

func (r *keyRecorder) Echo(ctx context.Context, req *testingv1.EchoRequest) (*testingv1.EchoResponse, error) {
	name, ms, _ := strings.Cut(req.GetMessage(), ":")
	d, _ := strconv.Atoi(ms)
	r.record("start", name)
	select {
	case <-time.After(time.Duration(d) * time.Millisecond):
	case <-ctx.Done():
	}
	r.record("end", name)
	return &testingv1.EchoResponse{Message: req.GetMessage()}, nil
}

// waitEnded waits until every named call has ended and returns the events.
func (r *keyRecorder) waitEnded(t *testing.T, names ...string) []string {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		r.mu.Lock()
		done := true
		for _, n := range names {
			done = done && r.ended[n]
		}
		events := append([]string(nil), r.events...)
		r.mu.Unlock()
		if done {
			return events
		}
		if time.Now().After(deadline) {
			t.Fatalf("calls %v not all ended after 30s; events %v", names, events)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// rawRequester produces Echo requests by hand into partition 0 of the echo
// topic, with an idempotent producer so that their order is the order of
// the calls to send. Replies go to a topic nobody reads.
type rawRequester struct {
	t          *testing.T
	p          *kafka.Producer
	topic      string
	replyTopic string
	timeout    time.Duration // of each request; 30s when 0
}

func (e *env) rawRequester() *rawRequester {
	e.t.Helper()
	p, err := kafka.NewProducer(&kafka.ConfigMap{"bootstrap.servers": e.brokers, "enable.idempotence": true, "linger.ms": 0})
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(p.Close)
	e.createTopic("raw-replies", 1)
	return &rawRequester{t: e.t, p: p, topic: e.prefix + testingv1.EchoServiceKafkaTopic, replyTopic: e.prefix + "raw-replies"}
}

// send produces one Echo request per "key/message" (an empty key is
// keyless) into partition 0, in order, and returns their offsets.
func (r *rawRequester) send(calls ...string) []int64 {
	r.t.Helper()
	return r.sendTo(0, calls...)
}

// sendTo is send into another partition.
func (r *rawRequester) sendTo(partition int32, calls ...string) []int64 {
	r.t.Helper()
	dc := make(chan kafka.Event, len(calls))
	for i, c := range calls {
		key, msg, _ := strings.Cut(c, "/")
		req, err := proto.Marshal(&testingv1.EchoRequest{Key: key, Message: msg})
		if err != nil {
			r.t.Fatal(err)
		}
		env, err := proto.Marshal(&kafkav1.RequestEnvelope{
			Method:         testingv1.EchoService_Echo_FullMethodName,
			Id:             fmt.Sprint("raw-", i),
			ReplyTopic:     r.replyTopic,
			DeadlineUnixMs: time.Now().Add(cmp.Or(r.timeout, 30*time.Second)).UnixMilli(),
		})
		if err != nil {
			r.t.Fatal(err)
		}
		m := &kafka.Message{
			TopicPartition: kafka.TopicPartition{Topic: &r.topic, Partition: partition},
			Value:          req,
			Headers:        []kafka.Header{{Key: "rpc", Value: env}},
		}
		if key != "" {
			m.Key = []byte(key)
		}
		if err := r.p.Produce(m, dc); err != nil {
			r.t.Fatal(err)
		}
	}
	offsets := make([]int64, len(calls))
	byID := map[int64]int{}
	for i := range calls {
		m := (<-dc).(*kafka.Message)
		if m.TopicPartition.Error != nil {
			r.t.Fatal(m.TopicPartition.Error)
		}
		byID[int64(m.TopicPartition.Offset)] = i
	}
	// Delivery reports of one partition arrive in offset order.
	for off, i := range byID {
		offsets[i] = off
	}
	for i := 1; i < len(offsets); i++ {
		if offsets[i] <= offsets[i-1] {
			r.t.Fatalf("requests stored out of order: %v", offsets)
		}
	}
	return offsets
}

func TestKeyedRequestsRunInOrder(t *testing.T) {
	// At a low concurrency bound the waiting requests fill every slot and
	// the server stops fetching until the first of its key ends: the
	// order holds and nothing deadlocks.
	for _, maxConc := range []int{256, 2, 1} {
		t.Run(fmt.Sprint("max concurrency ", maxConc), func(t *testing.T) {
			e := newEnv(t)
			rec := newKeyRecorder()
			e.serve(rec, kafkatransport.WithMaxConcurrency(maxConc))
			// The first request of key k is the slowest: without keyed
			// ordering the others would start, and end, before it
			// ends. Requests of another key in between keep their own
			// order.
			e.rawRequester().send("k/k1:400", "k/k2:0", "o/o1:50", "k/k3:100", "o/o2:0", "k/k4:0", "k/k5:0")
			events := rec.waitEnded(t, "k1", "k2", "k3", "k4", "k5", "o1", "o2")
			for key, n := range map[string]int{"k": 5, "o": 2} {
				if got, want := keyOrder(events, key, n); got != want {
					t.Errorf("key %s handled as\n %v\nwant one after another in order\n %v", key, got, want)
				}
			}
		})
	}
}

// keyOrder returns the events of the calls named prefix<n>, and the events
// of n calls one after another in order.
func keyOrder(events []string, prefix string, n int) (got, want string) {
	var g, w []string
	for _, ev := range events {
		if strings.HasPrefix(strings.Fields(ev)[1], prefix) {
			g = append(g, ev)
		}
	}
	for i := 1; i <= n; i++ {
		w = append(w, fmt.Sprintf("start %s%d", prefix, i), fmt.Sprintf("end %s%d", prefix, i))
	}
	return strings.Join(g, ", "), strings.Join(w, ", ")
}

func TestHotKeyDoesNotHoldUpOthers(t *testing.T) {
	tests := []struct {
		name    string
		maxConc int
		hot     int // requests of the hot key, 500ms each
	}{
		// More requests wait for the hot key than there are concurrency
		// slots: they must not take them from the other keys.
		{"waiting requests hold no slot", 3, 10},
		// More requests wait than the bound of a partition's waiting
		// requests (4 x max concurrency): partition 0 is paused, then
		// resumed, and every request still runs once, in order.
		{"partition paused at the waiting bound", 1, 12},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t)
			rec := newKeyRecorder()
			e.serve(rec, kafkatransport.WithMaxConcurrency(tc.maxConc))
			r := e.rawRequester()
			var calls, names []string
			for i := 1; i <= tc.hot; i++ {
				calls = append(calls, fmt.Sprintf("h/h%d:500", i))
				names = append(names, fmt.Sprint("h", i))
			}
			// o1 shares the hot key's partition, p1 has its own. Behind
			// a paused partition, o1 waits for the resume.
			calls, names = append(calls, "o/o1:0"), append(names, "o1")
			r.send(calls...)
			r.sendTo(1, "p/p1:0")
			others := []string{"p1"}
			if tc.hot < 4*tc.maxConc {
				others = append(others, "o1")
			}
			events := rec.waitEnded(t, append(names, "p1")...)
			// Measured against the hot key's own progress rather than the
			// clock: the other keys end while the hot key is at most half
			// way through (held up by it, they would end near its end).
			half := fmt.Sprintf("start h%d", tc.hot/2+1)
			for _, o := range others {
				if i, j := slices.Index(events, "end "+o), slices.Index(events, half); i < 0 || j < 0 || i > j {
					t.Errorf("%s ended after %q, behind the hot key: %v", o, half, events)
				}
			}
			if got, want := keyOrder(events, "h", tc.hot); got != want {
				t.Errorf("hot key handled as\n %v\nwant one after another in order\n %v", got, want)
			}
			if got := len(events); got != 2*(len(names)+1) {
				t.Errorf("%d events, want one start and one end per request: %v", got, events)
			}
		})
	}
}

func TestDifferentKeysRunConcurrently(t *testing.T) {
	e := newEnv(t)
	rec := newKeyRecorder()
	e.serve(rec)
	// Two keys and a keyless request, all in partition 0: all three run
	// at once, so each starts before any ends.
	e.rawRequester().send("a/a:1000", "b/b:1000", "/none:1000")
	events := rec.waitEnded(t, "a", "b", "none")
	if len(events) != 6 {
		t.Fatalf("events %v, want 3 starts and 3 ends", events)
	}
	for _, ev := range events[:3] {
		if !strings.HasPrefix(ev, "start ") {
			t.Fatalf("events %v: want every start before the first end", events)
		}
	}
}

func TestKeyedCommitsStopAtLowestUnfinished(t *testing.T) {
	e := newEnv(t)
	rec := newKeyRecorder()
	e.serve(rec)
	group := e.prefix + testingv1.EchoServiceKafkaTopic
	// slow (key a) is the lowest unfinished request while fast (key b),
	// after it, finishes: the commit must not pass slow.
	offs := e.rawRequester().send("a/slow:3000", "b/fast:0")
	rec.waitEnded(t, "fast")
	// Auto-commit runs every 500ms and stored offsets are flushed every
	// 20ms: give both time to (wrongly) commit past slow.
	time.Sleep(1500 * time.Millisecond)
	if c := e.committed(group, 0); c > offs[0] {
		t.Fatalf("committed %d while the request at %d runs, want at most %d", c, offs[0], offs[0])
	}
	rec.waitEnded(t, "slow")
	deadline := time.Now().Add(20 * time.Second)
	for c := e.committed(group, 0); c != offs[1]+1; c = e.committed(group, 0) {
		if time.Now().After(deadline) {
			t.Fatalf("committed %d after both finished, want %d", c, offs[1]+1)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// committed returns the committed offset of group on partition of the echo
// topic, or -1 for none.
func (e *env) committed(group string, partition int32) int64 {
	e.t.Helper()
	topic := e.prefix + testingv1.EchoServiceKafkaTopic
	res, err := e.admin().ListConsumerGroupOffsets(ctxTimeout(e.t, 10*time.Second), []kafka.ConsumerGroupTopicPartitions{
		{Group: group, Partitions: []kafka.TopicPartition{{Topic: &topic, Partition: partition}}},
	})
	if err != nil {
		e.t.Fatalf("committed offsets of %s: %v", group, err)
	}
	ps := res.ConsumerGroupsTopicPartitions[0].Partitions
	if len(ps) != 1 || ps[0].Error != nil {
		e.t.Fatalf("committed offsets of %s: %v", group, ps)
	}
	if ps[0].Offset < 0 {
		return -1
	}
	return int64(ps[0].Offset)
}

// A request whose deadline passes while it waits for a concurrency slot is
// dropped unrun, keyless or keyed.
func TestRequestExpiredWaitingForSlotIsDropped(t *testing.T) {
	for _, key := range []string{"", "k"} {
		t.Run("key "+key, func(t *testing.T) {
			e := newEnv(t)
			rec := newKeyRecorder()
			e.serve(rec, kafkatransport.WithMaxConcurrency(1))
			r := e.rawRequester()
			r.send("slow/slow:800") // holds the only slot
			r.timeout = 300 * time.Millisecond
			r.send(key + "/late:0")
			rec.waitEnded(t, "slow")
			time.Sleep(500 * time.Millisecond)
			rec.mu.Lock()
			defer rec.mu.Unlock()
			for _, ev := range rec.events {
				if ev == "start late" {
					t.Fatalf("a request run after its deadline passed waiting for a slot: %v", rec.events)
				}
			}
		})
	}
}
