package main

import (
	"bytes"
	"encoding/base64"
	"encoding/binary"
	"fmt"
	"net/http"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"
	"google.golang.org/protobuf/proto"

	ordersv1 "github.com/kgrpc/platform/gen/shop/orders/v1"
	productsv1 "github.com/kgrpc/platform/gen/shop/products/v1"
	kafkav1 "github.com/kgrpc/platform/kafkatransport/gen/kgrpc/kafka/v1"
)

// After the README walkthrough (register, log in, order, cancel, change the
// password, delete the account), a plain consumer reading every topic from
// the beginning finds no password and no token in any key, value or
// header, and no header value it finds authenticates at the gateway.
func TestNoSecretsOnTheBus(t *testing.T) {
	brokers := make(chan string, 1)
	s := startShop(t, t.TempDir(), func(o *options) { o.broker = func(a string) { brokers <- a } })
	broker := <-brokers
	script := readmeScript(t)
	readmeWalkthrough(t, s, script)
	admin := s.adminToken() // a login whose token we know
	s.must(200, "GET", "/v1/users", admin, nil)

	// The passwords the walkthrough and this test sent, and the token we
	// know (its signature), and what starts every token the users service
	// signs: base64url of {"alg":"EdDSA","kid":
	secrets := [][]byte{[]byte(adminPassword), []byte(admin[strings.LastIndexByte(admin, '.')+1:]),
		[]byte(base64.RawURLEncoding.EncodeToString([]byte(`{"alg":"EdDSA","kid":`))[:26])}
	for _, m := range regexp.MustCompile(`"password": "([^"]+)"`).FindAllStringSubmatch(script, -1) {
		secrets = append(secrets, []byte(m[1]))
	}
	if len(secrets) < 5 {
		t.Fatalf("found %d secrets to look for; the walkthrough should send two passwords", len(secrets))
	}

	records, headers := readEverything(t, broker, s)
	t.Logf("read %d records, %d distinct header values", records.n, len(headers))
	if records.n < 20 {
		t.Fatalf("read only %d records: the walkthrough's calls should be there", records.n)
	}
	// The search sees values and headers: the UserCreated event (signed,
	// not encrypted) carries the user's email, and its type in a header.
	for _, seen := range []string{"ada@example.com", "shop.users.v1.UserCreated"} {
		if _, ok := records.find([]byte(seen)); !ok {
			t.Fatalf("%q not found on the bus: the search does not read what it should", seen)
		}
	}
	for _, secret := range secrets {
		if where, ok := records.find(secret); ok {
			t.Errorf("secret %q found on the bus: %s", secret, where)
		}
	}
	// No header value a consumer can read is a credential for the API.
	tried := 0
	for v := range headers {
		if tried == 300 {
			break
		}
		tried++
		code, _, _ := s.call("GET", "/v1/users/me", v, nil, nil)
		if code != http.StatusUnauthorized {
			t.Errorf("a header value off Kafka, as a bearer token, got %d, want 401: %q", code, v)
		}
	}
}

// busRecords is what readEverything read: every record, searchable.
type busRecords struct {
	n    int
	recs []string // "topic/partition@offset" of each record
	data [][]byte // key, value and headers of each record, concatenated
}

func (b *busRecords) find(secret []byte) (string, bool) {
	for i, d := range b.data {
		if bytes.Contains(d, secret) {
			return b.recs[i], true
		}
	}
	return "", false
}

// readEverything reads every partition of every topic on the broker (of
// the shop's topic prefix on a shared cluster) from the beginning to its
// end, with a plain consumer, and returns the records and the distinct
// printable header values.
func readEverything(t *testing.T, broker string, s *shop) (*busRecords, map[string]bool) {
	t.Helper()
	c, err := kafka.NewConsumer(&kafka.ConfigMap{"bootstrap.servers": broker, "group.id": "snoop", "enable.auto.commit": false})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	md, err := c.GetMetadata(nil, true, 10000)
	if err != nil {
		t.Fatal(err)
	}
	prefix := s.topicPrefix
	out := &busRecords{}
	headers := map[string]bool{}
	var assign []kafka.TopicPartition
	ends := map[string]int64{} // "topic/partition" to its end
	for topic, tm := range md.Topics {
		if strings.HasPrefix(topic, "__") || !strings.HasPrefix(topic, prefix) {
			continue
		}
		for _, p := range tm.Partitions {
			low, high, err := c.QueryWatermarkOffsets(topic, p.ID, 10000)
			if err != nil {
				t.Fatal(err)
			}
			if high > low {
				assign = append(assign, kafka.TopicPartition{Topic: &topic, Partition: p.ID, Offset: kafka.Offset(low)})
				ends[fmt.Sprint(topic, "/", p.ID)] = high
			}
		}
	}
	if err := c.Assign(assign); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(60 * time.Second)
	for len(ends) > 0 {
		if time.Now().After(deadline) {
			t.Fatalf("partitions not read to their end in 60s: %v", ends)
		}
		m, err := c.ReadMessage(time.Second)
		if err != nil {
			continue
		}
		tp := fmt.Sprint(*m.TopicPartition.Topic, "/", m.TopicPartition.Partition)
		if end, ok := ends[tp]; ok && int64(m.TopicPartition.Offset)+1 >= end {
			delete(ends, tp)
		}
		all := append(append([]byte{}, m.Key...), m.Value...)
		for _, h := range m.Headers {
			all = append(append(all, h.Key...), h.Value...)
			if v := string(h.Value); len(v) > 0 && isPrintable(v) {
				headers[v] = true
			}
		}
		out.n++
		out.recs = append(out.recs, fmt.Sprintf("%s@%d", tp, m.TopicPartition.Offset))
		out.data = append(out.data, all)
	}
	return out, headers
}

func isPrintable(v string) bool {
	for _, r := range v {
		if r < 0x20 || r > 0x7e {
			return false
		}
	}
	return true
}

// A new password, and the account's deletion, make the user's earlier
// tokens fail at the gateway within 5s; a new login works; only the user
// or an admin may delete an account.
func TestRevocation(t *testing.T) {
	s := startShop(t, t.TempDir())
	_, first := s.register("rev@example.com")
	s.must(200, "GET", "/v1/users/me", first, nil)

	// Another customer may not delete this account.
	_, other := s.register("other@example.com")
	id := s.must(200, "GET", "/v1/users/me", first, nil)["id"].(string)
	s.must(403, "DELETE", "/v1/users/"+id, other, nil)

	s.must(200, "PATCH", "/v1/users/me", first, map[string]any{"password": "new-password-456"})
	took := untilRefused(t, s, first)
	t.Logf("token refused %v after the password change", took)
	second := s.must(200, "POST", "/v1/auth:login", "", map[string]any{"email": "rev@example.com", "password": "new-password-456"})["accessToken"].(string)
	s.must(200, "GET", "/v1/users/me", second, nil)
	s.must(401, "POST", "/v1/auth:login", "", map[string]any{"email": "rev@example.com", "password": "password-123"})

	s.must(200, "DELETE", "/v1/users/me", second, nil)
	took = untilRefused(t, s, second)
	t.Logf("token refused %v after the deletion", took)
	s.must(401, "POST", "/v1/orders", second, map[string]any{"items": []any{map[string]any{"productId": "p", "quantity": 1}}})
	s.must(401, "POST", "/v1/auth:login", "", map[string]any{"email": "rev@example.com", "password": "new-password-456"})

	// An admin deletes another user; that user's token goes too.
	s.must(200, "DELETE", "/v1/users/"+s.must(200, "GET", "/v1/users/me", other, nil)["id"].(string), s.adminToken(), nil)
	untilRefused(t, s, other)
	s.must(404, "DELETE", "/v1/users/u_nobody", s.adminToken(), nil)
}

// untilRefused waits, for at most 5s, until token is refused 401 with a
// revocation, and returns how long that took.
func untilRefused(t *testing.T, s *shop, token string) time.Duration {
	t.Helper()
	start := time.Now()
	for {
		code, body := s.do("GET", "/v1/users/me", token, nil)
		if code == http.StatusUnauthorized {
			if msg, _ := body["message"].(string); !strings.Contains(msg, "revoked") {
				t.Fatalf("refused with %q, want a revocation", msg)
			}
			return time.Since(start)
		}
		if time.Since(start) > 5*time.Second {
			t.Fatalf("token still accepted (%d) 5s after its revocation", code)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Records produced with a plain Kafka client act on nothing: a forged
// OrderStatusChanged cancelling a pending order releases no stock and is
// dead-lettered with the reason, and a forged AdjustStock request claiming
// to come from the gateway on behalf of an admin never runs and is
// dead-lettered.
func TestForgedRecords(t *testing.T) {
	brokers := make(chan string, 1)
	s := startShop(t, t.TempDir(), func(o *options) { o.broker = func(a string) { brokers <- a } })
	broker := <-brokers
	admin := s.adminToken()
	pid := s.product(admin, "FORGE-1", 100, 5)
	_, tok := s.register("victim@example.com")
	order := s.must(200, "POST", "/v1/orders", tok, map[string]any{"items": []any{map[string]any{"productId": pid, "quantity": 2}}})
	oid := order["id"].(string)
	if got := s.stock(pid); got != 3 {
		t.Fatalf("stock %d after ordering 2 of 5", got)
	}

	p, err := kafka.NewProducer(&kafka.ConfigMap{"bootstrap.servers": broker})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	produce := func(topic string, key, value []byte, hs ...kafka.Header) {
		t.Helper()
		dc := make(chan kafka.Event, 1)
		if err := p.Produce(&kafka.Message{TopicPartition: kafka.TopicPartition{Topic: &topic, Partition: kafka.PartitionAny}, Key: key, Value: value, Headers: hs}, dc); err != nil {
			t.Fatal(err)
		}
		if m := (<-dc).(*kafka.Message); m.TopicPartition.Error != nil {
			t.Fatal(m.TopicPartition.Error)
		}
	}

	// The forged event, with a signature header naming the order service.
	ev, _ := proto.Marshal(&ordersv1.OrderStatusChanged{OrderId: oid, NewStatus: ordersv1.OrderStatus_ORDER_STATUS_CANCELLED,
		OldStatus: ordersv1.OrderStatus_ORDER_STATUS_PENDING, Items: []*ordersv1.OrderItem{{ProductId: pid, Quantity: 2}}})
	produce(s.topicPrefix+ordersv1.OrderStatusChangedKafkaTopic, []byte(oid), ev,
		kafka.Header{Key: "ev-type", Value: []byte("shop.orders.v1.OrderStatusChanged")},
		kafka.Header{Key: "kgrpc-sig", Value: []byte("v1 ordersvc ordersvc-20260101-00000000 AAAA")})
	letter := readOne(t, broker, s.topicPrefix+"shop.products.v1.ProductService.events.dlq")
	if reason := headerOf(letter, "dlq-error"); !strings.Contains(reason, "event not authentic") {
		t.Errorf("dead letter reason %q", reason)
	}
	if got := s.stock(pid); got != 3 {
		t.Fatalf("stock %d after the forged cancellation, want 3", got)
	}
	if st := s.must(200, "GET", "/v1/orders/"+oid, tok, nil)["status"]; st != "ORDER_STATUS_PENDING" {
		t.Fatalf("order %s", st)
	}

	// The forged request: an admin's AdjustStock, as the gateway would
	// send it, but sealed by no one.
	env, _ := proto.Marshal(&kafkav1.RequestEnvelope{
		Method: productsv1.ProductService_AdjustStock_FullMethodName, Id: "forged-1", ReplyTopic: s.topicPrefix + "kgrpc.replies",
		DeadlineUnixMs: time.Now().Add(30 * time.Second).UnixMilli(),
		Metadata:       []*kafkav1.MetadataEntry{{Key: "kgrpc-principal", Values: [][]byte{[]byte("admin 1 u_forger")}}},
	})
	req, _ := proto.Marshal(&productsv1.AdjustStockRequest{Id: pid, Delta: 1000})
	desc := "v1 gateway gateway-20260101-00000000 productsvc-20260101-00000000" // a seal naming keys no unit has
	sealed := append(append(binary.AppendUvarint(nil, uint64(len(desc))), desc...), append(make([]byte, 24), req...)...)
	produce(s.topicPrefix+productsv1.ProductServiceKafkaTopic, nil, sealed, kafka.Header{Key: "rpc", Value: env})
	letter = readOne(t, broker, s.topicPrefix+productsv1.ProductServiceKafkaTopic+".dlq")
	if reason := headerOf(letter, "dlq-error"); !strings.Contains(reason, "unknown key") {
		t.Errorf("dead letter reason %q", reason)
	}
	if got := s.stock(pid); got != 3 {
		t.Fatalf("stock %d after the forged AdjustStock, want 3", got)
	}
	// The shop goes on serving.
	s.must(200, "POST", "/v1/orders/"+oid+":cancel", tok, nil)
	eventually(t, "stock back after a real cancellation", func() bool { return s.stock(pid) == 5 })
}

// readOne waits, for at most 30s, for the first record of topic.
func readOne(t *testing.T, broker, topic string) *kafka.Message {
	t.Helper()
	c, err := kafka.NewConsumer(&kafka.ConfigMap{"bootstrap.servers": broker, "group.id": "forge-check", "enable.auto.commit": false})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Assign(partitionsOf(t, c, topic)); err != nil {
		t.Fatal(err)
	}
	m, err := c.ReadMessage(30 * time.Second)
	if err != nil {
		t.Fatalf("no record in %s within 30s: %v", topic, err)
	}
	return m
}

// partitionsOf returns every partition of topic, from the beginning,
// waiting for the topic to exist.
func partitionsOf(t *testing.T, c *kafka.Consumer, topic string) []kafka.TopicPartition {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		md, err := c.GetMetadata(&topic, false, 5000)
		if err == nil && len(md.Topics[topic].Partitions) > 0 && md.Topics[topic].Error.Code() == kafka.ErrNoError {
			var out []kafka.TopicPartition
			for _, p := range md.Topics[topic].Partitions {
				out = append(out, kafka.TopicPartition{Topic: &topic, Partition: p.ID, Offset: kafka.OffsetBeginning})
			}
			return out
		}
		if time.Now().After(deadline) {
			t.Fatalf("topic %s not there after 30s: %v", topic, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func headerOf(m *kafka.Message, key string) string {
	for _, h := range m.Headers {
		if h.Key == key {
			return string(h.Value)
		}
	}
	return ""
}
