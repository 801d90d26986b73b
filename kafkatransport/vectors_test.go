package kafkatransport_test

import (
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	spb "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	"github.com/kgrpc/platform/kafkatransport"
	kafkav1 "github.com/kgrpc/platform/kafkatransport/gen/kgrpc/kafka/v1"
	testingv1 "github.com/kgrpc/platform/kafkatransport/gen/kgrpc/testing/v1"
	"github.com/kgrpc/platform/kafkatransport/kafkatest"
)

var updateVectors = flag.Bool("update-vectors", false, "write kafkatransport/testdata/vectors from the transport's encoders")

// vectorsDir holds the golden vectors of docs/wire.md.
const vectorsDir = "testdata/vectors"

// vector is one golden vector file: a record as it is on the wire, every
// byte in hex, with a readable dump beside.
type vector struct {
	Description string         `json:"description"`
	Topic       string         `json:"topic"`
	Partition   *int32         `json:"partition,omitempty"`
	Key         *vectorBytes   `json:"key"`
	Headers     []vectorHeader `json:"headers"`
	Value       vectorBytes    `json:"value"`
	// StatusDetails is the reply envelope's status_details, decoded.
	StatusDetails json.RawMessage `json:"statusDetails,omitempty"`
}

// vectorBytes is bytes in hex, and what they are: text, or a protobuf
// message of Type in protobuf's JSON mapping.
type vectorBytes struct {
	Hex     string          `json:"hex"`
	Text    string          `json:"text,omitempty"`
	Type    string          `json:"type,omitempty"`
	Decoded json.RawMessage `json:"decoded,omitempty"`
}

type vectorHeader struct {
	Key string `json:"key"`
	vectorBytes
}

// The inputs of the vectors: a keyed call of Echo with metadata, its OK
// reply, an error reply with a PreconditionFailure, and a Pinged event.
const (
	vecID       = "vectors-0badc0de-1"
	vecDeadline = 4102444800000 // 2100-01-01T00:00:00Z
	vecReplies  = "kgrpc.replies"
	vecReplyPn  = 3
	vecTrace    = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
	vecEventID  = "vectors-outbox-7"
)

var (
	vecRequest = &testingv1.EchoRequest{Key: "order-42", Message: "hello"}
	vecMD      = metadata.MD{"x-request-id": {"req-7"}, "idempotency-key": {"order-42-create"}, "traceparent": {vecTrace}}
	vecOK      = &testingv1.EchoResponse{Message: "hello"}
	vecHeader  = metadata.MD{"x-served-by": {"echo-a"}}
	vecPinged  = &testingv1.Pinged{Id: "a", Seq: 7}
)

// vecFailure is the error of the error reply.
func vecFailure(t *testing.T) error {
	st, err := status.New(codes.FailedPrecondition, `insufficient stock for product "p_1"`).WithDetails(&errdetails.PreconditionFailure{
		Violations: []*errdetails.PreconditionFailure_Violation{{Type: "STOCK", Subject: "p_1", Description: "requested 3, available 1"}},
	})
	if err != nil {
		t.Fatal(err)
	}
	return st.Err()
}

// goldenVectors builds the vectors with the transport's own encoders and
// key functions, as its client, server and publisher produce records.
func goldenVectors(t *testing.T) map[string]vector {
	t.Helper()
	method := testingv1.EchoService_Echo_FullMethodName
	key := testingv1.EchoServiceKafkaSpec.Keys[method](vecRequest)
	pn := int32(vecReplyPn)
	return map[string]vector{
		"request": {
			Description: "A request of the keyed method " + method + ": key from partition_key, metadata in key order, traceparent repeated as a header.",
			Topic:       testingv1.EchoServiceKafkaTopic,
			Key:         textBytes(key),
			Headers: []vectorHeader{
				{Key: "rpc", vectorBytes: messageBytes(t, kafkatransport.RequestEnvelopeForTest(method, vecID, vecReplies, vecReplyPn, vecDeadline, vecMD), &kafkav1.RequestEnvelope{})},
				{Key: "traceparent", vectorBytes: *textBytes([]byte(vecTrace))},
			},
			Value: messageBytes(t, marshal(t, vecRequest), &testingv1.EchoRequest{}),
		},
		"reply-ok": {
			Description: "The OK reply to the request: no key, the response as the value, header metadata in the envelope.",
			Topic:       vecReplies,
			Partition:   &pn,
			Headers:     []vectorHeader{{Key: "rpc", vectorBytes: messageBytes(t, kafkatransport.ReplyEnvelopeForTest(vecID, nil, vecHeader, nil), &kafkav1.ReplyEnvelope{})}},
			Value:       messageBytes(t, marshal(t, vecOK), &testingv1.EchoResponse{}),
		},
		"reply-error": {
			Description:   "An error reply: FAILED_PRECONDITION with a google.rpc.PreconditionFailure in status_details, a google.rpc.Status repeating code and message; empty value.",
			Topic:         vecReplies,
			Partition:     &pn,
			Headers:       []vectorHeader{{Key: "rpc", vectorBytes: messageBytes(t, kafkatransport.ReplyEnvelopeForTest(vecID, vecFailure(t), nil, nil), &kafkav1.ReplyEnvelope{})}},
			Value:         vectorBytes{Hex: ""},
			StatusDetails: messageBytes(t, statusBytes(t, vecFailure(t)), &spb.Status{}).Decoded,
		},
		"event": {
			Description: "A Pinged event: key from the event option's key field, ev-type its full name, ev-id as the publisher gave it (WithEventID).",
			Topic:       testingv1.PingedKafkaTopic,
			Key:         textBytes(testingv1.PingedKafkaEvent.Key(vecPinged)),
			Headers: []vectorHeader{
				{Key: "ev-type", vectorBytes: *textBytes([]byte(testingv1.PingedKafkaEvent.Name))},
				{Key: "ev-id", vectorBytes: *textBytes([]byte(vecEventID))},
			},
			Value: messageBytes(t, marshal(t, vecPinged), &testingv1.Pinged{}),
		},
	}
}

// TestGoldenVectors: the transport's encoders produce the vectors of
// testdata/vectors byte for byte (go test -run TestGoldenVectors
// -update-vectors writes them).
func TestGoldenVectors(t *testing.T) {
	for name, want := range goldenVectors(t) {
		path := filepath.Join(vectorsDir, name+".json")
		b, err := json.MarshalIndent(want, "", "  ")
		if err != nil {
			t.Fatal(err)
		}
		b = append(b, '\n')
		if *updateVectors {
			if err := os.MkdirAll(vectorsDir, 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(path, b, 0o644); err != nil {
				t.Fatal(err)
			}
			continue
		}
		got, err := os.ReadFile(path)
		if err != nil {
			t.Fatalf("%v (go test -run TestGoldenVectors -update-vectors writes it)", err)
		}
		if !bytes.Equal(got, b) {
			t.Errorf("%s differs from what the transport encodes now:\n%s", path, b)
		}
	}
}

// TestGoldenVectorsAccepted: the transport accepts every vector as it is
// on the wire. A server serves the request vector, produced raw, and its
// reply reaches the vector's reply partition; a client decodes both reply
// vectors; a publisher gives the event vector's bytes and a subscriber
// handles them.
func TestGoldenVectorsAccepted(t *testing.T) {
	vs := readVectors(t)

	t.Run("replies", func(t *testing.T) {
		var resp testingv1.EchoResponse
		var header metadata.MD
		id, err := kafkatransport.DecodeReplyForTest(vs["reply-ok"].header(t, "rpc"), vs["reply-ok"].Value.bytes(t), &resp, grpc.Header(&header))
		if err != nil || id != vecID || !proto.Equal(&resp, vecOK) || !slices.Equal(header.Get("x-served-by"), []string{"echo-a"}) {
			t.Fatalf("OK reply: id %q, %v, %v, header %v", id, &resp, err, header)
		}
		id, err = kafkatransport.DecodeReplyForTest(vs["reply-error"].header(t, "rpc"), nil, &resp)
		if id != vecID || !proto.Equal(status.Convert(err).Proto(), status.Convert(vecFailure(t)).Proto()) {
			t.Fatalf("error reply: id %q, %v; want %v", id, err, vecFailure(t))
		}
	})

	t.Run("request", func(t *testing.T) {
		// The vector names the unprefixed topics; this test's broker is
		// its own (kfake) or shared with tests that all use prefixes.
		e := newEnv(t)
		plain := kafkatransport.WithKafkaConfig(fastGroup)
		srv, err := kafkatransport.NewServer(e.brokers, plain)
		if err != nil {
			t.Fatal(err)
		}
		testingv1.RegisterEchoServiceKafkaServer(srv, newEcho("vectors"))
		e.run(srv)
		c := testingv1.NewEchoServiceKafkaClient(kafkatest.Dial(t, e.brokers, plain)) // creates kgrpc.replies
		waitServing(t, c)

		v := vs["request"]
		reader, err := kafka.NewConsumer(&kafka.ConfigMap{"bootstrap.servers": e.brokers, "group.id": e.prefix + "vector-reader"})
		if err != nil {
			t.Fatal(err)
		}
		defer reader.Close()
		topic := vecReplies
		_, high, err := reader.QueryWatermarkOffsets(topic, vecReplyPn, 10_000)
		if err != nil {
			t.Fatal(err)
		}
		if err := reader.Assign([]kafka.TopicPartition{{Topic: &topic, Partition: vecReplyPn, Offset: kafka.Offset(high)}}); err != nil {
			t.Fatal(err)
		}
		produceTo(t, e.rawProducer(), v.Topic, 0, v.Key.orNil(t), v.Value.bytes(t),
			kafka.Header{Key: "rpc", Value: v.header(t, "rpc")}, kafka.Header{Key: "traceparent", Value: v.header(t, "traceparent")})
		for end := time.Now().Add(30 * time.Second); time.Now().Before(end); {
			m, err := reader.ReadMessage(time.Second)
			if err != nil {
				continue
			}
			var env []byte
			for _, h := range m.Headers {
				if h.Key == "rpc" {
					env = h.Value
				}
			}
			var resp testingv1.EchoResponse
			id, err := kafkatransport.DecodeReplyForTest(env, m.Value, &resp)
			if id != vecID {
				continue // another call's reply
			}
			if err != nil || resp.GetMessage() != vecRequest.GetMessage() {
				t.Fatalf("reply to the request vector: %v, %v", &resp, err)
			}
			return
		}
		t.Fatal("no reply to the request vector within 30s")
	})

	t.Run("event", func(t *testing.T) {
		e := newEnv(t)
		v := vs["event"]
		// Published: the vector's bytes.
		pub, err := kafkatransport.NewPublisher(e.brokers, e.common())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = pub.Close(context.Background()) })
		ctx := kafkatransport.WithEventID(ctxTimeout(t, 30*time.Second), vecEventID)
		if err := testingv1.NewPingedPublisher(pub).Publish(ctx, vecPinged); err != nil {
			t.Fatal(err)
		}
		got := e.readRecords(e.prefix+v.Topic, 1)[0]
		if !bytes.Equal(got.Key, v.Key.orNil(t)) || !bytes.Equal(got.Value, v.Value.bytes(t)) || len(got.Headers) != len(v.Headers) {
			t.Fatalf("published key %x value %x headers %v; want the vector", got.Key, got.Value, got.Headers)
		}
		for i, h := range got.Headers {
			if h.Key != v.Headers[i].Key || !bytes.Equal(h.Value, v.Headers[i].bytes(t)) {
				t.Fatalf("published header %d = %s: %q; want %s: %q", i, h.Key, h.Value, v.Headers[i].Key, v.Headers[i].bytes(t))
			}
		}
		// Consumed: the vector produced raw reaches a subscriber's handler.
		handled := make(chan *testingv1.Pinged, 1)
		sub, err := kafkatransport.NewSubscriber(e.brokers, "vector-subscriber", e.common())
		if err != nil {
			t.Fatal(err)
		}
		testingv1.SubscribePinged(sub, func(ctx context.Context, ev *testingv1.Pinged) error {
			if info, _ := kafkatransport.EventFromContext(ctx); info.ID == vecEventID+"-raw" {
				handled <- ev
			}
			return nil
		})
		runSubscriber(t, sub)
		produceTo(t, e.rawProducer(), e.prefix+v.Topic, 0, v.Key.orNil(t), v.Value.bytes(t),
			kafka.Header{Key: "ev-type", Value: v.header(t, "ev-type")}, kafka.Header{Key: "ev-id", Value: []byte(vecEventID + "-raw")})
		select {
		case ev := <-handled:
			if !proto.Equal(ev, vecPinged) {
				t.Fatalf("handled %v, want %v", ev, vecPinged)
			}
		case <-time.After(30 * time.Second):
			t.Fatal("the event vector was not handled within 30s")
		}
	})
}

func readVectors(t *testing.T) map[string]vector {
	t.Helper()
	out := map[string]vector{}
	for name := range goldenVectors(t) {
		b, err := os.ReadFile(filepath.Join(vectorsDir, name+".json"))
		if err != nil {
			t.Fatal(err)
		}
		var v vector
		if err := json.Unmarshal(b, &v); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		out[name] = v
	}
	return out
}

func (v vector) header(t *testing.T, key string) []byte {
	t.Helper()
	for _, h := range v.Headers {
		if h.Key == key {
			return h.bytes(t)
		}
	}
	t.Fatalf("vector %q has no header %s", v.Description, key)
	return nil
}

func (b vectorBytes) bytes(t *testing.T) []byte {
	t.Helper()
	out, err := hex.DecodeString(b.Hex)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// orNil returns the bytes of b, nil for none (no key).
func (b *vectorBytes) orNil(t *testing.T) []byte {
	t.Helper()
	if b == nil {
		return nil
	}
	return b.bytes(t)
}

func textBytes(b []byte) *vectorBytes {
	if b == nil {
		return nil
	}
	return &vectorBytes{Hex: hex.EncodeToString(b), Text: string(b)}
}

// messageBytes describes b, the encoding of a message of into's type,
// with its JSON form (normalized: protojson's spacing varies by design).
func messageBytes(t *testing.T, b []byte, into proto.Message) vectorBytes {
	t.Helper()
	if err := proto.Unmarshal(b, into); err != nil {
		t.Fatal(err)
	}
	js, err := protojson.Marshal(into)
	if err != nil {
		t.Fatal(err)
	}
	var v any
	if err := json.Unmarshal(js, &v); err != nil {
		t.Fatal(err)
	}
	norm, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return vectorBytes{Hex: hex.EncodeToString(b), Type: string(into.ProtoReflect().Descriptor().FullName()), Decoded: norm}
}

// statusBytes is the google.rpc.Status of err, as status_details carries it.
func statusBytes(t *testing.T, err error) []byte {
	t.Helper()
	return marshal(t, status.Convert(err).Proto())
}

func marshal(t *testing.T, m proto.Message) []byte {
	t.Helper()
	b, err := proto.MarshalOptions{Deterministic: true}.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
