package trust

import (
	"context"
	"crypto/ecdh"
	"crypto/ed25519"
	"crypto/sha256"
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
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/kgrpc/platform/kafkatransport"
	"github.com/kgrpc/platform/kafkatransport/embedkafka"
	kafkav1 "github.com/kgrpc/platform/kafkatransport/gen/kgrpc/kafka/v1"
	testingv1 "github.com/kgrpc/platform/kafkatransport/gen/kgrpc/testing/v1"
	"github.com/kgrpc/platform/kafkatransport/kafkatest"
)

// Captured wire vectors: records the Go transport produced, with a Guard,
// over an in-process broker, kept in testdata/vectors/captured with the
// fixed test keys they were sealed and signed with (testdata/vectors/keys).
// clients/python reads the same files (clients/python/README.md describes
// the format). go test -run TestCapturedVectors -update-vectors captures
// them again.
var updateVectors = flag.Bool("update-vectors", false, "capture the wire vectors of testdata/vectors/captured again")

const (
	vectorDir    = "../testdata/vectors/captured"
	vectorKeyDir = "../testdata/vectors/keys"
	vectorPrefix = "vectors."
	vectorFormat = "kgrpc-vector-v1"
	echoMethod   = "/kgrpc.testing.v1.EchoService/Echo"
	failMethod   = "/kgrpc.testing.v1.EchoService/Fail"
	pingedEvent  = "kgrpc.testing.v1.Pinged"
)

// vectorPolicy is the policy of the vectors' two units: "echo" serves
// kgrpc.testing.v1 and publishes its events, "client" calls it.
var vectorPolicy = Policy{
	Owners: map[string]string{"kgrpc.testing.v1": "echo"},
	Calls:  map[string][]string{"client": {"/kgrpc.testing.v1.EchoService/*"}},
}

// vector is one record of a vector file.
type vector struct {
	Format string `json:"format"`
	// Name names the vector; Kind is "request", "reply" or "event".
	Name string `json:"name"`
	Kind string `json:"kind"`
	// Method is the full method name (requests, replies) or the event's
	// full message name: the name a seal or signature binds.
	Method string `json:"method"`
	// Topic, Key (hex, null for none), Headers (values in hex) and Value
	// (hex) are the record as it was on the broker.
	Topic   string         `json:"topic"`
	Key     *string        `json:"key"`
	Headers []vectorHeader `json:"headers"`
	Value   string         `json:"value"`
	// Producer is the unit that produced it; Recipient the unit whose key
	// opens a sealed value (empty for events, which are signed).
	Producer  string `json:"producer"`
	Recipient string `json:"recipient,omitempty"`
	// Plain is the value opened (for events: the value itself), and
	// MessageType its protobuf type ("" for an empty error reply).
	Plain       string `json:"plain"`
	MessageType string `json:"message_type"`
	// Envelope is the type of the "rpc" header, for requests and replies.
	Envelope string `json:"envelope,omitempty"`
}

type vectorHeader struct {
	Key   string `json:"key"`
	Value string `json:"value"`
}

// vectorKey returns the fixed test key of unit: its seeds derive from the
// unit's name, so the key files are the same whenever they are written.
func vectorKey(t *testing.T, unit string) *UnitKey {
	t.Helper()
	seed := sha256.Sum256([]byte("kgrpc-vector-ed25519-" + unit))
	dhSeed := sha256.Sum256([]byte("kgrpc-vector-x25519-" + unit))
	dh, err := ecdh.X25519().NewPrivateKey(dhSeed[:])
	if err != nil {
		t.Fatal(err)
	}
	secret := sha256.Sum256([]byte("kgrpc-vector-secret-" + unit))
	created := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	return &UnitKey{Unit: unit, secret: secret[:], Keys: []Key{{ID: unit + "-20260101-00000001", Created: created, sign: ed25519.NewKeyFromSeed(seed[:]), dh: dh}}}
}

// loadVectorTrust reads the vectors' key directory (not with LoadUnitKey:
// git keeps no 0600 mode).
func loadVectorTrust(t *testing.T) (*Keyring, map[string]*UnitKey) {
	t.Helper()
	body, err := os.ReadFile(filepath.Join(vectorKeyDir, KeyringFile))
	if err != nil {
		t.Fatal(err)
	}
	ring, err := ParseKeyring(body)
	if err != nil {
		t.Fatal(err)
	}
	keys := map[string]*UnitKey{}
	for _, u := range []string{"client", "echo"} {
		b, err := os.ReadFile(filepath.Join(vectorKeyDir, u+".key"))
		if err != nil {
			t.Fatal(err)
		}
		if keys[u], err = parseUnitKey(b); err != nil {
			t.Fatal(err)
		}
	}
	return ring, keys
}

type vectorEcho struct {
	testingv1.UnimplementedEchoServiceServer
}

func (vectorEcho) Echo(ctx context.Context, req *testingv1.EchoRequest) (*testingv1.EchoResponse, error) {
	return &testingv1.EchoResponse{Message: req.GetMessage(), Payload: req.GetPayload(), ServedBy: "echo"}, nil
}

func (vectorEcho) Fail(ctx context.Context, req *testingv1.FailRequest) (*testingv1.FailResponse, error) {
	st, err := status.New(codes.Code(req.GetCode()), req.GetMessage()).WithDetails(&errdetails.ErrorInfo{Reason: req.GetDetail(), Domain: "kgrpc.vectors"})
	if err != nil {
		return nil, err
	}
	return nil, st.Err()
}

// captureVectors runs an echo server, a client and a publisher with the
// fixed keys on an in-process broker and returns the records they produced.
func captureVectors(t *testing.T) []vector {
	ring := &Keyring{}
	keys := map[string]*UnitKey{"client": vectorKey(t, "client"), "echo": vectorKey(t, "echo")}
	for _, u := range []string{"client", "echo"} {
		ring.Set(keys[u])
		if err := keys[u].Save(filepath.Join(vectorKeyDir, u+".key")); err != nil {
			t.Fatal(err)
		}
	}
	if err := ring.Save(filepath.Join(vectorKeyDir, KeyringFile)); err != nil {
		t.Fatal(err)
	}
	brokers := kafkatest.Embedded(t, embedkafka.Config{}).Addr()
	guard := func(u string) *Guard {
		g, err := NewGuard(keys[u], ring, vectorPolicy)
		if err != nil {
			t.Fatal(err)
		}
		return g
	}
	srv, err := kafkatransport.NewServer(brokers, kafkatransport.WithTopicPrefix(vectorPrefix), kafkatransport.WithGuard(guard("echo")), kafkatransport.WithInstanceID("echo-1"))
	if err != nil {
		t.Fatal(err)
	}
	testingv1.RegisterEchoServiceKafkaServer(srv, vectorEcho{})
	kafkatest.Serve(t, srv)
	cc := kafkatest.Dial(t, brokers, kafkatransport.WithTopicPrefix(vectorPrefix), kafkatransport.WithGuard(guard("client")),
		kafkatransport.WithInstanceID("client-1"))
	client := testingv1.NewEchoServiceKafkaClient(cc)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	// One metadata key only: the envelope encodes metadata in map order.
	mctx := metadata.AppendToOutgoingContext(ctx, "x-vector", "echo")
	if _, err := client.Echo(mctx, &testingv1.EchoRequest{Key: "k1", Message: "hello", Payload: []byte{0, 1, 2}}); err != nil {
		t.Fatal(err)
	}
	if _, err := client.Fail(ctx, &testingv1.FailRequest{Code: int32(codes.FailedPrecondition), Message: "not now", Detail: "VECTOR"}); status.Code(err) != codes.FailedPrecondition {
		t.Fatalf("Fail: %v", err)
	}
	pub, err := kafkatransport.NewPublisher(brokers, kafkatransport.WithTopicPrefix(vectorPrefix), kafkatransport.WithGuard(guard("echo")))
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = pub.Close(context.Background()) }()
	if err := testingv1.NewPingedPublisher(pub).Publish(ctx, &testingv1.Pinged{Id: "p1", Seq: 7}); err != nil {
		t.Fatal(err)
	}

	var out []vector
	for _, m := range readAll(t, brokers, vectorPrefix+"kgrpc.testing.v1.EchoService", 2) {
		var env kafkav1.RequestEnvelope
		rpc, _ := headerValue(m.Headers, "rpc")
		if err := proto.Unmarshal(rpc, &env); err != nil {
			t.Fatal(err)
		}
		name, typ := "echo-request", "kgrpc.testing.v1.EchoRequest"
		if env.GetMethod() == failMethod {
			name, typ = "fail-request", "kgrpc.testing.v1.FailRequest"
		}
		out = append(out, toVector(t, name, "request", env.GetMethod(), m, "client", "echo", typ, "kgrpc.kafka.v1.RequestEnvelope", guard("echo")))
	}
	for _, m := range readAll(t, brokers, vectorPrefix+"kgrpc.replies", 2) {
		var env kafkav1.ReplyEnvelope
		rpc, _ := headerValue(m.Headers, "rpc")
		if err := proto.Unmarshal(rpc, &env); err != nil {
			t.Fatal(err)
		}
		name, method, typ := "echo-reply", echoMethod, "kgrpc.testing.v1.EchoResponse"
		if env.GetCode() != 0 {
			name, method, typ = "fail-reply", failMethod, ""
		}
		out = append(out, toVector(t, name, "reply", method, m, "echo", "client", typ, "kgrpc.kafka.v1.ReplyEnvelope", guard("client")))
	}
	for _, m := range readAll(t, brokers, vectorPrefix+pingedEvent, 1) {
		out = append(out, toVector(t, "pinged-event", "event", pingedEvent, m, "echo", "", "kgrpc.testing.v1.Pinged", "", nil))
	}
	return out
}

// toVector records m, opening a sealed value with open (the recipient's
// Guard).
func toVector(t *testing.T, name, kind, method string, m *kafka.Message, producer, recipient, typ, envType string, open *Guard) vector {
	t.Helper()
	v := vector{Format: vectorFormat, Name: name, Kind: kind, Method: method, Topic: *m.TopicPartition.Topic, Value: hex.EncodeToString(m.Value),
		Producer: producer, Recipient: recipient, MessageType: typ, Envelope: envType}
	if m.Key != nil {
		k := hex.EncodeToString(m.Key)
		v.Key = &k
	}
	for _, h := range m.Headers {
		v.Headers = append(v.Headers, vectorHeader{Key: h.Key, Value: hex.EncodeToString(h.Value)})
	}
	plain := m.Value
	if open != nil {
		c := *m
		if _, err := open.open(kind, method, &c); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		plain = c.Value
	}
	v.Plain = hex.EncodeToString(plain)
	return v
}

// readAll reads n records of every partition of topic from the start.
func readAll(t *testing.T, brokers, topic string, n int) []*kafka.Message {
	t.Helper()
	c, err := kafka.NewConsumer(&kafka.ConfigMap{"bootstrap.servers": brokers, "group.id": "vectors-reader", "enable.auto.commit": false})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	md, err := c.GetMetadata(&topic, false, 10000)
	if err != nil {
		t.Fatal(err)
	}
	var tps []kafka.TopicPartition
	for _, p := range md.Topics[topic].Partitions {
		tps = append(tps, kafka.TopicPartition{Topic: &topic, Partition: p.ID, Offset: kafka.OffsetBeginning})
	}
	if err := c.Assign(tps); err != nil {
		t.Fatal(err)
	}
	var out []*kafka.Message
	end := time.Now().Add(30 * time.Second)
	for len(out) < n && time.Now().Before(end) {
		if m, err := c.ReadMessage(200 * time.Millisecond); err == nil {
			out = append(out, m)
		}
	}
	if len(out) < n {
		t.Fatalf("%s: read %d records, want %d", topic, len(out), n)
	}
	slices.SortFunc(out, func(a, b *kafka.Message) int { return compareStrings(string(a.Value), string(b.Value)) })
	return out
}

func headerValue(hs []kafka.Header, key string) ([]byte, bool) {
	for _, h := range hs {
		if h.Key == key {
			return h.Value, true
		}
	}
	return nil, false
}

// TestCapturedVectors checks the captured wire vectors against the Go
// code: envelopes decode and encode again to the same bytes, sealed values
// open with the recipient's key to the recorded message, and events'
// signatures verify and are made again identical (Ed25519 is
// deterministic).
func TestCapturedVectors(t *testing.T) {
	if *updateVectors {
		vs := captureVectors(t)
		if err := os.MkdirAll(vectorDir, 0o755); err != nil {
			t.Fatal(err)
		}
		for _, v := range vs {
			body, err := json.MarshalIndent(v, "", "  ")
			if err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(vectorDir, v.Name+".json"), append(body, '\n'), 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
	ring, keys := loadVectorTrust(t)
	files, err := filepath.Glob(filepath.Join(vectorDir, "*.json"))
	if err != nil || len(files) < 5 {
		t.Fatalf("want at least 5 vectors in %s, have %d (%v)", vectorDir, len(files), err)
	}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			var v vector
			body, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			if err := json.Unmarshal(body, &v); err != nil || v.Format != vectorFormat {
				t.Fatalf("not a %s vector: %v", vectorFormat, err)
			}
			m := &kafka.Message{TopicPartition: kafka.TopicPartition{Topic: &v.Topic}, Value: unhex(t, v.Value)}
			if v.Key != nil {
				m.Key = unhex(t, *v.Key)
			}
			for _, h := range v.Headers {
				m.Headers = append(m.Headers, kafka.Header{Key: h.Key, Value: unhex(t, h.Value)})
			}
			switch v.Kind {
			case "request", "reply":
				rpc, ok := headerValue(m.Headers, "rpc")
				if !ok {
					t.Fatal("no rpc header")
				}
				var env proto.Message = &kafkav1.RequestEnvelope{}
				if v.Kind == "reply" {
					env = &kafkav1.ReplyEnvelope{}
				}
				if err := proto.Unmarshal(rpc, env); err != nil {
					t.Fatal(err)
				}
				if again, err := proto.Marshal(env); err != nil || string(again) != string(rpc) {
					t.Errorf("envelope encodes again as %x, not %x (%v)", again, rpc, err)
				}
				if r, ok := env.(*kafkav1.RequestEnvelope); ok && r.GetMethod() != v.Method {
					t.Errorf("method %q, vector says %q", r.GetMethod(), v.Method)
				}
				g, err := NewGuard(keys[v.Recipient], ring, vectorPolicy)
				if err != nil {
					t.Fatal(err)
				}
				if v.Kind == "request" {
					caller, err := g.OpenRequest(v.Method, m)
					if err != nil || caller != v.Producer {
						t.Fatalf("OpenRequest: %q, %v; want %q", caller, err, v.Producer)
					}
				} else if err := g.OpenReply(v.Method, m); err != nil {
					t.Fatalf("OpenReply: %v", err)
				}
				if hex.EncodeToString(m.Value) != v.Plain {
					t.Errorf("opened %x, want %s", m.Value, v.Plain)
				}
				// A changed header no longer opens.
				m2 := &kafka.Message{TopicPartition: m.TopicPartition, Key: m.Key, Value: unhex(t, v.Value),
					Headers: append(slices.Clone(m.Headers), kafka.Header{Key: "x", Value: []byte("y")})}
				if _, err := g.open(v.Kind, v.Method, m2); err == nil {
					t.Error("a record with a header added still opens")
				}
			case "event":
				g, err := NewGuard(keys["client"], ring, vectorPolicy)
				if err != nil {
					t.Fatal(err)
				}
				producer, err := g.OpenEvent(v.Method, m)
				if err != nil || producer != v.Producer {
					t.Fatalf("OpenEvent: %q, %v; want %q", producer, err, v.Producer)
				}
				// Signed again by its producer: the same header.
				pg, err := NewGuard(keys[v.Producer], ring, vectorPolicy)
				if err != nil {
					t.Fatal(err)
				}
				re := &kafka.Message{TopicPartition: m.TopicPartition, Key: m.Key, Value: m.Value, Headers: slices.Clone(m.Headers[:len(m.Headers)-1])}
				if err := pg.SealEvent(v.Method, re); err != nil {
					t.Fatal(err)
				}
				if got, want := string(re.Headers[len(re.Headers)-1].Value), string(m.Headers[len(m.Headers)-1].Value); got != want {
					t.Errorf("signed again: %q, want %q", got, want)
				}
			default:
				t.Fatalf("kind %q", v.Kind)
			}
		})
	}
}

func unhex(t *testing.T, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(s)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
