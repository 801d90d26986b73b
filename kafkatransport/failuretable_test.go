package kafkatransport_test

import (
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/proto"

	kafkav1 "github.com/kgrpc/platform/kafkatransport/gen/kgrpc/kafka/v1"
	testingv1 "github.com/kgrpc/platform/kafkatransport/gen/kgrpc/testing/v1"
)

// TestFailureTable checks the table of docs/wire.md section 5 row by row:
// for each malformed or hostile request, produced raw, whether the handler
// runs, and whether the server answers (with which code) or dead-letters
// it (with which reason). Requests that expire are neither.
func TestFailureTable(t *testing.T) {
	e := newEnv(t)
	impl := newEcho("table")
	e.serve(impl)
	c := testingv1.NewEchoServiceKafkaClient(e.dial()) // creates the reply topic
	waitServing(t, c)

	replies := e.prefix + "kgrpc.replies"
	reader, err := kafka.NewConsumer(&kafka.ConfigMap{"bootstrap.servers": e.brokers, "group.id": e.prefix + "table-reader"})
	if err != nil {
		t.Fatal(err)
	}
	defer reader.Close()
	_, high, err := reader.QueryWatermarkOffsets(replies, 0, 10_000)
	if err != nil {
		t.Fatal(err)
	}
	if err := reader.Assign([]kafka.TopicPartition{{Topic: &replies, Partition: 0, Offset: kafka.Offset(high)}}); err != nil {
		t.Fatal(err)
	}

	sleep := testingv1.EchoService_Sleep_FullMethodName
	inAMinute := time.Now().Add(time.Minute).UnixMilli()
	type row struct {
		name     string
		env      *kafkav1.RequestEnvelope // nil: no rpc header
		rawEnv   []byte                   // instead of env
		value    []byte                   // nil: a SleepRequest of the row's id
		runs     bool
		code     codes.Code // the reply's, when the row expects one
		answered bool
		reason   string // the dead letter's, when the row expects one
	}
	ok := func(id string) *kafkav1.RequestEnvelope {
		return &kafkav1.RequestEnvelope{Method: sleep, Id: id, ReplyTopic: replies, DeadlineUnixMs: inAMinute}
	}
	with := func(id string, f func(*kafkav1.RequestEnvelope)) *kafkav1.RequestEnvelope {
		env := ok(id)
		f(env)
		return env
	}
	rows := []row{
		{name: "no rpc header", reason: "no rpc header"},
		{name: "undecodable envelope", rawEnv: []byte{0xff, 0xff}, reason: "undecodable rpc envelope"},
		{name: "empty id", env: with("", func(*kafkav1.RequestEnvelope) {}), reason: "without a correlation id"},
		{name: "empty reply topic", env: with("t-no-topic", func(e *kafkav1.RequestEnvelope) { e.ReplyTopic = "" }), reason: "without a reply address"},
		{name: "negative partition", env: with("t-negative", func(e *kafkav1.RequestEnvelope) { e.ReplyPartition = -1 }), reason: "without a reply address"},
		{name: "deadline in seconds", env: with("t-seconds", func(e *kafkav1.RequestEnvelope) { e.DeadlineUnixMs /= 1000 }), reason: "milliseconds since the Unix epoch expected"},
		{name: "foreign reply topic", env: with("t-foreign", func(e *kafkav1.RequestEnvelope) { e.ReplyTopic = e.ReplyTopic + "-elsewhere" }), reason: "not one this server replies to"},
		{name: "partition out of range", env: with("t-range", func(e *kafkav1.RequestEnvelope) { e.ReplyPartition = 1000 }), reason: "out of range"},
		{name: "expired", env: with("t-expired", func(e *kafkav1.RequestEnvelope) { e.DeadlineUnixMs = time.Now().Add(-time.Second).UnixMilli() })},
		{name: "unknown method", env: with("t-unknown", func(e *kafkav1.RequestEnvelope) { e.Method = "/kgrpc.testing.v1.EchoService/Nope" }), answered: true, code: codes.Unimplemented},
		{name: "undecodable value", env: ok("t-badvalue"), value: []byte{0xff}, answered: true, code: codes.InvalidArgument},
		{name: "empty value", env: ok("t-empty"), value: []byte{}, runs: true, answered: true, code: codes.OK},
		{name: "valid", env: ok("t-valid"), runs: true, answered: true, code: codes.OK},
	}
	topic := e.prefix + testingv1.EchoServiceKafkaTopic
	p := e.rawProducer()
	wantLetters, wantReplies := 0, map[string]codes.Code{}
	for _, r := range rows {
		var headers []kafka.Header
		switch {
		case r.rawEnv != nil:
			headers = []kafka.Header{{Key: "rpc", Value: r.rawEnv}}
		case r.env != nil:
			b, err := proto.Marshal(r.env)
			if err != nil {
				t.Fatal(err)
			}
			headers = []kafka.Header{{Key: "rpc", Value: b}}
		}
		value := r.value
		if value == nil {
			if value, err = proto.Marshal(&testingv1.SleepRequest{Id: r.env.GetId(), DurationMs: 1}); err != nil {
				t.Fatal(err)
			}
		}
		produceTo(t, p, topic, 0, nil, value, headers...)
		if r.reason != "" {
			wantLetters++
		}
		if r.answered {
			wantReplies[r.env.GetId()] = r.code
		}
	}

	// The answers, on the reply partition.
	got := map[string]codes.Code{}
	for end := time.Now().Add(30 * time.Second); len(got) < len(wantReplies) && time.Now().Before(end); {
		m, err := reader.ReadMessage(time.Second)
		if err != nil {
			continue
		}
		for _, h := range m.Headers {
			if h.Key != "rpc" {
				continue
			}
			var env kafkav1.ReplyEnvelope
			if err := proto.Unmarshal(h.Value, &env); err == nil && strings.HasPrefix(env.GetId(), "t-") {
				got[env.GetId()] = codes.Code(env.GetCode())
			}
		}
	}
	// The dead letters.
	var reasons []string
	for _, m := range e.readRecords(topic+".dlq", wantLetters) {
		reasons = append(reasons, headerMap(m)["dlq-error"])
	}
	time.Sleep(time.Second) // anything still to run or answer would have by now
	for _, r := range rows {
		t.Run(r.name, func(t *testing.T) {
			id := r.env.GetId()
			// A row's request is a SleepRequest of its id, unless the row
			// gives its value; requests of id "" are counted below.
			if ran := impl.startedCount(id) > 0; id != "" && r.value == nil && ran != r.runs {
				t.Errorf("handler ran: %v, want %v", ran, r.runs)
			}
			code, answered := got[id]
			if answered != r.answered || code != r.code {
				t.Errorf("answered %v with %v, want answered %v with %v", answered, code, r.answered, r.code)
			}
			if r.reason != "" && !slices.ContainsFunc(reasons, func(s string) bool { return strings.Contains(s, r.reason) }) {
				t.Errorf("no dead letter says %q: %q", r.reason, reasons)
			}
		})
	}
	if len(reasons) != wantLetters {
		t.Errorf("%d dead letters, want %d: %q", len(reasons), wantLetters, reasons)
	}
	// The empty request's SleepRequest has id "", as have those of the rows
	// without an envelope or id, which must not run.
	if n := impl.startedCount(""); n != 1 {
		t.Errorf("requests of id \"\" ran %d times, want 1 (the empty value's)", n)
	}
}
