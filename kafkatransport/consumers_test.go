package kafkatransport_test

import (
	"bytes"
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"
	"google.golang.org/protobuf/proto"

	testingv1 "github.com/kgrpc/platform/gen/kgrpc/testing/v1"
	"github.com/kgrpc/platform/kafkatransport"
)

// poisonSize is the value size of the oversized records: over librdkafka's
// default message.max.bytes (1000000), under the broker's limit (1048588).
const poisonSize = 1_020_000

// rawProducer returns a producer that takes records up to 2 MB, for
// producing records by hand.
func (e *env) rawProducer() *kafka.Producer {
	e.t.Helper()
	p, err := kafka.NewProducer(&kafka.ConfigMap{"bootstrap.servers": e.brokers, "message.max.bytes": 2_000_000, "linger.ms": 0})
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(p.Close)
	return p
}

// produceTo produces one record into partition p of topic and returns its
// offset.
func produceTo(t *testing.T, p *kafka.Producer, topic string, partition int32, key, value []byte, headers ...kafka.Header) int64 {
	t.Helper()
	dc := make(chan kafka.Event, 1)
	if err := p.Produce(&kafka.Message{TopicPartition: kafka.TopicPartition{Topic: &topic, Partition: partition}, Key: key, Value: value, Headers: headers}, dc); err != nil {
		t.Fatal(err)
	}
	m := (<-dc).(*kafka.Message)
	if m.TopicPartition.Error != nil {
		t.Fatal(m.TopicPartition.Error)
	}
	return int64(m.TopicPartition.Offset)
}

// pinged returns a Pinged event's value.
func pinged(t *testing.T, id string, seq int64) []byte {
	t.Helper()
	v, err := proto.Marshal(&testingv1.Pinged{Id: id, Seq: seq})
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// readRecords reads n records of topic from its beginning, within 30s.
func (e *env) readRecords(topic string, n int) []*kafka.Message {
	e.t.Helper()
	c, err := kafka.NewConsumer(&kafka.ConfigMap{"bootstrap.servers": e.brokers, "group.id": e.prefix + "reader-" + topic, "auto.offset.reset": "earliest"})
	if err != nil {
		e.t.Fatal(err)
	}
	defer c.Close()
	if err := c.Subscribe(topic, nil); err != nil {
		e.t.Fatal(err)
	}
	var out []*kafka.Message
	deadline := time.Now().Add(30 * time.Second)
	for len(out) < n && time.Now().Before(deadline) {
		if m, err := c.ReadMessage(time.Second); err == nil {
			out = append(out, m)
		}
	}
	if len(out) < n {
		e.t.Fatalf("read %d records of %s, want %d", len(out), topic, n)
	}
	return out
}

// headerMap returns a record's headers by name (the last of each name).
func headerMap(m *kafka.Message) map[string]string {
	hs := map[string]string{}
	for _, h := range m.Headers {
		hs[h.Key] = string(h.Value)
	}
	return hs
}

// runSubscriber runs sub until the test ends.
func runSubscriber(t *testing.T, sub *kafkatransport.Subscriber) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- sub.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	select {
	case <-sub.Ready():
	case err := <-done:
		t.Fatalf("Run: %v", err)
	}
}

// handledSet records the ids of the events handled.
type handledSet struct {
	mu    sync.Mutex
	ids   map[string]bool
	order []string
}

func (h *handledSet) add(id string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.ids[id] = true
	h.order = append(h.order, id)
}

func (h *handledSet) has(ids ...string) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, id := range ids {
		if !h.ids[id] {
			return false
		}
	}
	return true
}

// waitUntil polls cond every 20ms for at most d.
func waitUntil(d time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(20 * time.Millisecond)
	}
	return true
}

// A 1 MB undecodable event cannot be dead-lettered whole: a stub goes to
// the dead-letter topic, and the events behind it, on every partition, are
// handled.
func TestOversizedEventDeadLetteredAsStub(t *testing.T) {
	e := newEnv(t)
	const group = "stub-test"
	seen := &handledSet{ids: map[string]bool{}}
	sub, err := kafkatransport.NewSubscriber(e.brokers, group, e.common(), kafkatransport.WithPartitions(3))
	if err != nil {
		t.Fatal(err)
	}
	testingv1.SubscribePinged(sub, func(_ context.Context, p *testingv1.Pinged) error {
		seen.add(fmt.Sprint(p.GetId(), "/", p.GetSeq()))
		return nil
	})
	runSubscriber(t, sub)

	p := e.rawProducer()
	topic := e.prefix + testingv1.PingedKafkaTopic
	poison := produceTo(t, p, topic, 0, []byte("poison"), bytes.Repeat([]byte{0xff}, poisonSize), kafka.Header{Key: "origin", Value: []byte("test")})
	start := time.Now()
	var want []string
	for part := range int32(3) {
		id := fmt.Sprint("p", part)
		produceTo(t, p, topic, part, []byte(id), pinged(t, id, 1))
		want = append(want, id+"/1")
	}
	if !waitUntil(30*time.Second, func() bool { return seen.has(want...) }) {
		t.Fatalf("events behind the oversized record not all handled within 30s")
	}
	t.Logf("events behind a %d-byte poison record handled on every partition after %v", poisonSize, time.Since(start).Round(time.Millisecond))

	stub := e.readRecords(sub.DeadLetterTopic(), 1)[0]
	hs := headerMap(stub)
	for k, v := range map[string]string{
		"dlq-stub": "true", "dlq-size": fmt.Sprint(poisonSize), "dlq-topic": topic, "dlq-partition": "0",
		"dlq-offset": fmt.Sprint(poison), "dlq-attempts": "1", "dlq-group": e.prefix + group, "origin": "test",
	} {
		if hs[k] != v {
			t.Errorf("stub header %s = %q, want %q", k, hs[k], v)
		}
	}
	if !strings.Contains(hs["dlq-error"], "undecodable") {
		t.Errorf("stub dlq-error = %q, want the decode error", hs["dlq-error"])
	}
	if len(stub.Value) != 0 || string(stub.Key) != "poison" {
		t.Errorf("stub value %d bytes, key %q; want none and the original key", len(stub.Value), stub.Key)
	}
	if err := sub.Health(); err != nil {
		t.Errorf("Health after the stub = %v, want nil", err)
	}
}

// A handler stuck on one partition holds up that partition only; Health
// reports it stalled, with the reason, until it moves again.
func TestStuckPartitionDoesNotHoldOthers(t *testing.T) {
	e := newEnv(t)
	seen := &handledSet{ids: map[string]bool{}}
	started, release := make(chan struct{}, 1), make(chan struct{})
	sub, err := kafkatransport.NewSubscriber(e.brokers, "stuck-test", e.common(), kafkatransport.WithPartitions(3),
		kafkatransport.WithStallTimeout(300*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	testingv1.SubscribePinged(sub, func(ctx context.Context, p *testingv1.Pinged) error {
		if p.GetId() == "stuck" {
			started <- struct{}{}
			select {
			case <-release:
			case <-ctx.Done():
				return ctx.Err()
			}
		}
		seen.add(p.GetId())
		return nil
	})
	runSubscriber(t, sub)

	p := e.rawProducer()
	topic := e.prefix + testingv1.PingedKafkaTopic
	produceTo(t, p, topic, 0, []byte("stuck"), pinged(t, "stuck", 1))
	select {
	case <-started:
	case <-time.After(30 * time.Second):
		t.Fatal("stuck handler not started within 30s")
	}
	for part := range int32(3) {
		id := fmt.Sprint("p", part)
		produceTo(t, p, topic, part, []byte(id), pinged(t, id, 1))
	}
	// More than a worker's queue holds wait behind the stuck event: the
	// partition is paused, and resumed as they start.
	var behind []string
	for i := range 80 {
		id := fmt.Sprint("behind-", i)
		produceTo(t, p, topic, 0, []byte(id), pinged(t, id, 1))
		behind = append(behind, id)
	}
	if !waitUntil(30*time.Second, func() bool { return seen.has("p1", "p2") }) {
		t.Fatal("events of partitions 1 and 2 not handled within 30s while partition 0 is stuck")
	}
	if seen.has("p0") {
		t.Fatal("the event behind the stuck one on partition 0 was handled before it")
	}
	var reason error
	if !waitUntil(10*time.Second, func() bool { reason = sub.Health(); return reason != nil }) {
		t.Fatal("Health = nil while a handler is stuck past the stall timeout")
	}
	if !strings.Contains(reason.Error(), "partition 0 of "+topic+" stalled") {
		t.Errorf("Health = %q, want partition 0 stalled", reason)
	}
	t.Logf("Health while stuck: %v", reason)
	close(release)
	if !waitUntil(30*time.Second, func() bool { return seen.has(append(behind, "stuck", "p0")...) }) {
		t.Fatal("partition 0 did not move on once released")
	}
	seen.mu.Lock()
	order := slices.Clone(seen.order)
	seen.mu.Unlock()
	want := append([]string{"p0"}, behind...)
	if got := slices.DeleteFunc(order, func(id string) bool { return !slices.Contains(want, id) }); !slices.Equal(got, want) {
		t.Errorf("partition 0 handled %v, want %v", got, want)
	}
	if !waitUntil(10*time.Second, func() bool { reason = sub.Health(); return reason == nil }) {
		t.Fatalf("Health = %v after the partition moved on, want nil", reason)
	}
}

// Requests that cannot be answered, a 1 MB one with a garbage envelope and
// one without an envelope, are dead-lettered to the server group's
// dead-letter topic, and later calls are answered.
func TestUnanswerableRequestsDeadLettered(t *testing.T) {
	e := newEnv(t)
	e.serve(newEcho("a"))
	c := testingv1.NewEchoServiceKafkaClient(e.dial())
	waitServing(t, c)

	p := e.rawProducer()
	topic := e.prefix + testingv1.EchoServiceKafkaTopic
	big := produceTo(t, p, topic, 0, nil, bytes.Repeat([]byte{0xfe}, poisonSize), kafka.Header{Key: "rpc", Value: []byte{0xff, 0xff}})
	bare := produceTo(t, p, topic, 1, []byte("k"), []byte("no envelope"))
	letters := e.readRecords(topic+".dlq", 2)
	for _, m := range letters {
		hs := headerMap(m)
		if hs["dlq-group"] != topic || hs["dlq-attempts"] != "1" || hs["dlq-topic"] != topic {
			t.Errorf("dead letter headers %v: want dlq-group and dlq-topic %s, dlq-attempts 1", hs, topic)
		}
		switch hs["dlq-partition"] + "@" + hs["dlq-offset"] {
		case fmt.Sprint("0@", big):
			if hs["dlq-stub"] != "true" || hs["dlq-size"] != fmt.Sprint(poisonSize) || len(m.Value) != 0 || !strings.Contains(hs["dlq-error"], "undecodable rpc envelope") {
				t.Errorf("oversized request's dead letter: headers %v, %d value bytes; want a stub", hs, len(m.Value))
			}
		case fmt.Sprint("1@", bare):
			if hs["dlq-stub"] != "" || string(m.Value) != "no envelope" || string(m.Key) != "k" || hs["dlq-error"] != "no rpc header" {
				t.Errorf("bare request's dead letter: headers %v, key %q, value %q; want a whole copy", hs, m.Key, m.Value)
			}
		default:
			t.Errorf("unexpected dead letter %v", hs)
		}
	}
	if _, err := c.Echo(ctxTimeout(t, 20*time.Second), &testingv1.EchoRequest{Message: "still here"}); err != nil {
		t.Fatalf("Echo after unanswerable requests: %v", err)
	}
}

// When the dead-letter topic refuses even a stub, the subscriber logs the
// record, reports the failure on Health and moves on; a later dead letter
// that goes through clears it.
func TestDeadLetterRefused(t *testing.T) {
	e := newEnv(t)
	const group = "refused-test"
	dlq := e.prefix + group + ".dlq"
	res, err := e.admin().CreateTopics(ctxTimeout(t, 20*time.Second), []kafka.TopicSpecification{{Topic: dlq, NumPartitions: 1, ReplicationFactor: -1,
		Config: map[string]string{"max.message.bytes": "100"}}})
	if err != nil || res[0].Error.Code() != kafka.ErrNoError {
		t.Fatalf("create topic: %v %v", err, res)
	}
	seen := &handledSet{ids: map[string]bool{}}
	sub, err := kafkatransport.NewSubscriber(e.brokers, group, e.common(), kafkatransport.WithPartitions(1))
	if err != nil {
		t.Fatal(err)
	}
	testingv1.SubscribePinged(sub, func(_ context.Context, p *testingv1.Pinged) error {
		seen.add(p.GetId())
		return nil
	})
	runSubscriber(t, sub)

	p := e.rawProducer()
	topic := e.prefix + testingv1.PingedKafkaTopic
	produceTo(t, p, topic, 0, nil, []byte{0xff, 0xff})
	produceTo(t, p, topic, 0, nil, pinged(t, "after", 1))
	if !waitUntil(30*time.Second, func() bool { return seen.has("after") }) {
		t.Fatal("the event behind a record that could not be dead-lettered not handled within 30s")
	}
	reason := sub.Health()
	if reason == nil || !strings.Contains(reason.Error(), "dead-letter produce failing") {
		t.Fatalf("Health = %v, want the dead-letter failure", reason)
	}
	t.Logf("Health after a refused dead letter: %v", reason)

	alt, err := e.admin().IncrementalAlterConfigs(ctxTimeout(t, 20*time.Second), []kafka.ConfigResource{{Type: kafka.ResourceTopic, Name: dlq,
		Config: []kafka.ConfigEntry{{Name: "max.message.bytes", Value: "1000000", IncrementalOperation: kafka.AlterConfigOpTypeSet}}}})
	if err != nil || alt[0].Error.Code() != kafka.ErrNoError {
		t.Fatalf("alter topic: %v %v", err, alt)
	}
	produceTo(t, p, topic, 0, nil, []byte{0xff, 0xfe})
	if !waitUntil(30*time.Second, func() bool { reason = sub.Health(); return reason == nil }) {
		t.Fatalf("Health = %v after a dead letter went through, want nil", reason)
	}
	if m := e.readRecords(dlq, 1)[0]; string(m.Value) != "\xff\xfe" {
		t.Errorf("dead letter value %q, want the second record's", m.Value)
	}
}
