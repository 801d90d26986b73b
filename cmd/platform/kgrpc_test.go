package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"

	"github.com/kgrpc/platform/internal/kgrpccli"
)

// kgrpc (cmd/kgrpc) against the running shop, as an operator would use it
// with the platform's data directory: the services through reflection over
// Kafka, a call with JSON in and out, an error with its status, events as
// they are published, and a poison request dead-lettered, listed, replayed
// to its topic and dead-lettered again.
func TestKgrpcCLI(t *testing.T) {
	dir := t.TempDir()
	brokers := make(chan string, 1)
	s := startShop(t, dir, func(o *options) { o.broker = func(a string) { brokers <- a } })
	broker := <-brokers
	flags := []string{"--data-dir", dir, "--brokers", broker, "--topic-prefix", s.topicPrefix, "--timeout", "30s"}
	kgrpc := func(args ...string) (string, error) {
		t.Helper()
		var out bytes.Buffer
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		err := kgrpccli.Run(ctx, append(append([]string{}, flags...), args...), &out)
		return out.String(), err
	}
	must := func(args ...string) string {
		t.Helper()
		out, err := kgrpc(args...)
		if err != nil {
			t.Fatalf("kgrpc %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return out
	}

	if out := must("list"); out != "shop.orders.v1.OrderService\nshop.products.v1.ProductService\nshop.users.v1.UserService\n" {
		t.Fatalf("list = %q", out)
	}
	out := must("describe", "shop.orders.v1.OrderService")
	for _, want := range []string{"served by unit ordersvc", "rpc WatchOrder(.shop.orders.v1.WatchOrderRequest) returns (stream .shop.orders.v1.WatchOrderResponse);"} {
		if !strings.Contains(out, want) {
			t.Errorf("describe OrderService lacks %q:\n%s", want, out)
		}
	}
	if out := must("describe", "shop.products.v1.GetProductRequest"); !strings.Contains(out, "string id = 1;") {
		t.Errorf("describe GetProductRequest:\n%s", out)
	}

	id := s.must(200, "GET", "/v1/products?pageSize=1", "", nil)["products"].([]any)[0].(map[string]any)["id"].(string)
	var got struct {
		Product struct{ ID, Name string }
	}
	if err := json.Unmarshal([]byte(must("call", "shop.products.v1.ProductService/GetProduct", "-d", `{"id": "`+id+`"}`)), &got); err != nil || got.Product.ID != id || got.Product.Name == "" {
		t.Fatalf("call GetProduct = %+v, %v", got, err)
	}
	if _, err := kgrpc("call", "shop.products.v1.ProductService/GetProduct", "-d", `{"id": "p_nope"}`); err == nil || !strings.Contains(err.Error(), "Code: NotFound") {
		t.Fatalf("call GetProduct of an unknown id: %v, want NotFound", err)
	}
	if _, err := kgrpc("call", "shop.products.v1.ProductService/GetProduct", "-d", `{"nope": 1}`); err == nil || !strings.Contains(err.Error(), "-d") {
		t.Fatalf("call with a bad -d: %v", err)
	}

	// tail: the next UserCreated event, decoded. tail starts at the end
	// once it has its partitions: register users until it prints one.
	tailed := make(chan string, 1)
	go func() {
		out, err := kgrpc("tail", "shop.users.v1.UserCreated", "-n", "1")
		if err != nil {
			out = "error: " + err.Error()
		}
		tailed <- out
	}()
	var line string
	for i := 0; line == ""; i++ {
		if i == 15 {
			t.Fatal("tail printed nothing while 15 users registered")
		}
		s.register(fmt.Sprintf("tailed-%d@example.com", i))
		select {
		case line = <-tailed:
		case <-time.After(2 * time.Second):
		}
	}
	if !strings.Contains(line, `"email":"tailed-`) || !strings.Contains(line, `"type":"shop.users.v1.UserCreated"`) {
		t.Fatalf("tail printed %q", line)
	}

	// dlq: a request record without an envelope is dead-lettered.
	p, err := kafka.NewProducer(&kafka.ConfigMap{"bootstrap.servers": broker})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	topic := s.topicPrefix + "shop.products.v1.ProductService"
	if err := p.Produce(&kafka.Message{TopicPartition: kafka.TopicPartition{Topic: &topic, Partition: kafka.PartitionAny}, Key: []byte("poison"), Value: []byte("not a request")}, nil); err != nil {
		t.Fatal(err)
	}
	p.Flush(10_000)
	letters := func(n int) []map[string]any {
		t.Helper()
		for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(200 * time.Millisecond) {
			var ls []map[string]any
			for line := range strings.Lines(must("dlq", "list", "shop.products.v1.ProductService")) {
				var l map[string]any
				if err := json.Unmarshal([]byte(line), &l); err != nil {
					t.Fatalf("dlq list line %q: %v", line, err)
				}
				ls = append(ls, l)
			}
			if len(ls) >= n {
				return ls
			}
			if time.Now().After(deadline) {
				t.Fatalf("%d dead letters after 30s, want %d", len(ls), n)
			}
		}
	}
	first := letters(1)[0]
	src := first["source"].(map[string]any)
	if src["topic"] != topic || first["key"] != "poison" || first["error"] == "" {
		t.Fatalf("dead letter = %v", first)
	}
	if _, err := kgrpc("dlq", "replay", "shop.products.v1.ProductService", "--offset", fmt.Sprint(int64(first["offset"].(float64)))); err == nil || !strings.Contains(err.Error(), "--partition") {
		t.Fatalf("replay of an offset without its partition: %v, want a usage error", err)
	}
	out = must("dlq", "replay", "shop.products.v1.ProductService", "--partition", fmt.Sprint(int64(first["partition"].(float64))), "--offset", fmt.Sprint(int64(first["offset"].(float64))))
	if !strings.Contains(out, "replayed partition") || !strings.Contains(out, topic) {
		t.Fatalf("dlq replay printed %q", out)
	}
	// The replayed record came back on the request topic at a new offset,
	// and was dead-lettered again from there.
	second := letters(2)[1]
	src2 := second["source"].(map[string]any)
	if second["key"] != "poison" || src2["topic"] != topic || (src2["partition"] == src["partition"] && src2["offset"].(float64) <= src["offset"].(float64)) {
		t.Fatalf("after the replay: %v, first %v", second, first)
	}
	t.Logf("dead letter %v replayed and dead-lettered again as %v", first, second)
	if _, err := kgrpc("dlq", "replay", "shop.products.v1.ProductService", "--partition", "0", "--offset", "999999"); err == nil {
		t.Fatal("replay of an offset with no record succeeded")
	}
}
