package embedkafka_test

// These tests are the record that confluent-kafka-go (librdkafka) works
// against the embedded broker: admin CreateTopics, produce, consumer groups
// with commits, direct assignment at an offset from QueryWatermarkOffsets, and
// data surviving a restart on a data directory.

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"

	"github.com/kgrpc/platform/kafkatransport/embedkafka"
)

// start starts a broker for t and closes it when t ends.
func start(t *testing.T, cfg embedkafka.Config) *embedkafka.Broker {
	t.Helper()
	b, err := embedkafka.Start(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = b.Close() })
	return b
}

// clientConfig returns a librdkafka config for addr plus extra.
func clientConfig(addr string, extra kafka.ConfigMap) *kafka.ConfigMap {
	m := kafka.ConfigMap{
		"bootstrap.servers":    addr,
		"socket.nagle.disable": true,
		"log_level":            3, // errors only; keeps test output readable
	}
	for k, v := range extra {
		m[k] = v
	}
	return &m
}

func ctxTimeout(t *testing.T, d time.Duration) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// createTopic creates topic with the admin client and fails t on error.
func createTopic(t *testing.T, addr, topic string, partitions int) {
	t.Helper()
	admin, err := kafka.NewAdminClient(clientConfig(addr, nil))
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close()
	res, err := admin.CreateTopics(ctxTimeout(t, 10*time.Second),
		[]kafka.TopicSpecification{{Topic: topic, NumPartitions: partitions, ReplicationFactor: 1}})
	if err != nil {
		t.Fatalf("CreateTopics: %v", err)
	}
	for _, r := range res {
		if r.Error.Code() != kafka.ErrNoError {
			t.Fatalf("CreateTopics %s: %v", r.Topic, r.Error)
		}
	}
}

// produce writes n records key-i/value-i to topic, spread over partitions by
// key, and waits for every delivery report.
func produce(t *testing.T, addr, topic string, from, n int) {
	t.Helper()
	p, err := kafka.NewProducer(clientConfig(addr, kafka.ConfigMap{"linger.ms": 0, "enable.idempotence": true}))
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	dr := make(chan kafka.Event, n)
	for i := from; i < from+n; i++ {
		err := p.Produce(&kafka.Message{
			TopicPartition: kafka.TopicPartition{Topic: &topic, Partition: kafka.PartitionAny},
			Key:            fmt.Appendf(nil, "key-%d", i),
			Value:          fmt.Appendf(nil, "value-%d", i),
			Headers:        []kafka.Header{{Key: "h", Value: []byte("v")}},
		}, dr)
		if err != nil {
			t.Fatalf("Produce: %v", err)
		}
	}
	for range n {
		select {
		case e := <-dr:
			if m := e.(*kafka.Message); m.TopicPartition.Error != nil {
				t.Fatalf("delivery: %v", m.TopicPartition.Error)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("timed out waiting for delivery reports")
		}
	}
}

// readN reads n messages from c within d and returns their values.
func readN(t *testing.T, c *kafka.Consumer, n int, d time.Duration) []*kafka.Message {
	t.Helper()
	deadline := time.Now().Add(d)
	var msgs []*kafka.Message
	for len(msgs) < n {
		if time.Now().After(deadline) {
			t.Fatalf("read %d of %d messages before timeout", len(msgs), n)
		}
		m, err := c.ReadMessage(100 * time.Millisecond)
		if err != nil {
			var ke kafka.Error
			if errors.As(err, &ke) && ke.IsTimeout() {
				continue
			}
			t.Fatalf("ReadMessage: %v", err)
		}
		msgs = append(msgs, m)
	}
	return msgs
}

func TestConfluentKafkaGo(t *testing.T) {
	b := start(t, embedkafka.Config{})
	addr := b.Addr()
	const topic, partitions, n = "compat", 3, 30

	createTopic(t, addr, topic, partitions)

	t.Run("metadata right after CreateTopics", func(t *testing.T) {
		admin, err := kafka.NewAdminClient(clientConfig(addr, nil))
		if err != nil {
			t.Fatal(err)
		}
		defer admin.Close()
		md, err := admin.GetMetadata(&[]string{topic}[0], false, 5000)
		if err != nil {
			t.Fatal(err)
		}
		if got := len(md.Topics[topic].Partitions); got != partitions {
			t.Fatalf("partitions = %d, want %d", got, partitions)
		}
	})

	produce(t, addr, topic, 0, n)

	t.Run("consumer group subscribe and commit", func(t *testing.T) {
		start := time.Now()
		c, err := kafka.NewConsumer(clientConfig(addr, kafka.ConfigMap{
			"group.id":              "compat-group",
			"auto.offset.reset":     "earliest",
			"enable.auto.commit":    false,
			"session.timeout.ms":    6000,
			"heartbeat.interval.ms": 500,
		}))
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if err := c.Subscribe(topic, nil); err != nil {
			t.Fatal(err)
		}
		msgs := readN(t, c, n, 15*time.Second)
		t.Logf("group joined and %d records read in %v", n, time.Since(start))
		for _, m := range msgs {
			if len(m.Headers) != 1 || m.Headers[0].Key != "h" {
				t.Fatalf("headers = %v", m.Headers)
			}
		}
		parts, err := c.Commit()
		if err != nil {
			t.Fatalf("Commit: %v", err)
		}
		committed, err := c.Committed(parts, 5000)
		if err != nil {
			t.Fatalf("Committed: %v", err)
		}
		var sum int64
		for _, p := range committed {
			sum += int64(p.Offset)
		}
		if sum != n {
			t.Errorf("committed offsets sum to %d, want %d: %v", sum, n, committed)
		}
	})

	t.Run("assign at offset from QueryWatermarkOffsets", func(t *testing.T) {
		// librdkafka needs a group.id to create a consumer even when it only
		// uses Assign; the group is never joined and nothing is committed.
		c, err := kafka.NewConsumer(clientConfig(addr, kafka.ConfigMap{
			"group.id":           "compat-assign-unused",
			"enable.auto.commit": false,
		}))
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		low, high, err := c.QueryWatermarkOffsets(topic, 0, 5000)
		if err != nil {
			t.Fatal(err)
		}
		if low != 0 || high <= 0 {
			t.Fatalf("watermarks of partition 0 = [%d, %d)", low, high)
		}
		if err := c.Assign([]kafka.TopicPartition{{Topic: &[]string{topic}[0], Partition: 0, Offset: kafka.Offset(high - 1)}}); err != nil {
			t.Fatal(err)
		}
		m := readN(t, c, 1, 10*time.Second)[0]
		if m.TopicPartition.Partition != 0 || int64(m.TopicPartition.Offset) != high-1 {
			t.Fatalf("read %v, want partition 0 offset %d", m.TopicPartition, high-1)
		}
		// A record produced after the assignment arrives too: the consumer
		// tails the partition. Assign at the explicit high watermark, not at
		// kafka.OffsetEnd: librdkafka resolves OffsetEnd with a ListOffsets
		// request that, for a topic not yet in its metadata cache, runs only
		// after a ~500ms offset-query timer, so a record produced right
		// after Assign would be skipped.
		other := "tail"
		createTopic(t, addr, other, 1)
		_, high, err = c.QueryWatermarkOffsets(other, 0, 5000)
		if err != nil {
			t.Fatal(err)
		}
		if err := c.Assign([]kafka.TopicPartition{{Topic: &other, Partition: 0, Offset: kafka.Offset(high)}}); err != nil {
			t.Fatal(err)
		}
		produce(t, addr, other, 0, 1)
		if m := readN(t, c, 1, 10*time.Second)[0]; string(m.Value) != "value-0" {
			t.Fatalf("tail read %q", m.Value)
		}
	})

	t.Run("auto-created topic", func(t *testing.T) {
		produce(t, addr, "auto-created", 0, 1)
		admin, err := kafka.NewAdminClient(clientConfig(addr, nil))
		if err != nil {
			t.Fatal(err)
		}
		defer admin.Close()
		md, err := admin.GetMetadata(&[]string{"auto-created"}[0], false, 5000)
		if err != nil {
			t.Fatal(err)
		}
		if got := len(md.Topics["auto-created"].Partitions); got != embedkafka.DefaultPartitions {
			t.Errorf("auto-created topic has %d partitions, want %d", got, embedkafka.DefaultPartitions)
		}
	})
}

func TestRestartKeepsData(t *testing.T) {
	dir := t.TempDir()
	const topic, group, n = "durable", "durable-group", 10
	groupCfg := func(addr string) *kafka.ConfigMap {
		return clientConfig(addr, kafka.ConfigMap{
			"group.id":           group,
			"auto.offset.reset":  "earliest",
			"enable.auto.commit": false,
		})
	}

	// First life: create, produce 2n, consume and commit the first n.
	b1, err := embedkafka.Start(embedkafka.Config{DataDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	createTopic(t, b1.Addr(), topic, 1)
	produce(t, b1.Addr(), topic, 0, 2*n)
	c, err := kafka.NewConsumer(groupCfg(b1.Addr()))
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Subscribe(topic, nil); err != nil {
		t.Fatal(err)
	}
	msgs := readN(t, c, n, 15*time.Second)
	if _, err := c.CommitMessage(msgs[n-1]); err != nil {
		t.Fatal(err)
	}
	c.Close()
	_ = b1.Close()

	// Second life, on another port: the records and the commit are back.
	b2 := start(t, embedkafka.Config{DataDir: dir})
	c, err = kafka.NewConsumer(groupCfg(b2.Addr()))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Subscribe(topic, nil); err != nil {
		t.Fatal(err)
	}
	msgs = readN(t, c, n, 15*time.Second)
	if got := string(msgs[0].Value); got != fmt.Sprintf("value-%d", n) {
		t.Errorf("first record after restart = %q, want value-%d (resume after commit)", got, n)
	}
	low, high, err := c.QueryWatermarkOffsets(topic, 0, 5000)
	if err != nil {
		t.Fatal(err)
	}
	if low != 0 || high != 2*n {
		t.Errorf("watermarks after restart = [%d, %d), want [0, %d)", low, high, 2*n)
	}
}

func TestAddr(t *testing.T) {
	tests := []struct {
		name       string
		cfg        embedkafka.Config
		wantPrefix string
	}{
		{"default", embedkafka.Config{}, "127.0.0.1:"},
		{"unspecified host advertises loopback", embedkafka.Config{Addr: "0.0.0.0:0"}, "127.0.0.1:"},
		{"advertised host", embedkafka.Config{AdvertisedHost: "localhost"}, "localhost:"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := start(t, tt.cfg)
			if !strings.HasPrefix(b.Addr(), tt.wantPrefix) || strings.HasSuffix(b.Addr(), ":0") {
				t.Fatalf("Addr = %q, want %q and a port", b.Addr(), tt.wantPrefix)
			}
			// The advertised address is what clients reconnect to after
			// bootstrap, so a metadata round trip proves it is reachable.
			admin, err := kafka.NewAdminClient(clientConfig(b.Addr(), nil))
			if err != nil {
				t.Fatal(err)
			}
			defer admin.Close()
			if _, err := admin.GetMetadata(nil, true, 5000); err != nil {
				t.Fatal(err)
			}
		})
	}
}

func TestStartErrors(t *testing.T) {
	b := start(t, embedkafka.Config{})
	tests := []struct {
		name string
		cfg  embedkafka.Config
	}{
		{"bad address", embedkafka.Config{Addr: "nope"}},
		{"port in use", embedkafka.Config{Addr: b.Addr()}},
		{"negative partitions", embedkafka.Config{Partitions: -1}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if b, err := embedkafka.Start(tt.cfg); err == nil {
				_ = b.Close()
				t.Fatal("Start succeeded")
			}
		})
	}
}

func TestRun(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	ready := make(chan string, 1)
	go func() {
		done <- embedkafka.Run(ctx, embedkafka.Config{}, func(b *embedkafka.Broker) { ready <- b.Addr() })
	}()
	addr := <-ready
	admin, err := kafka.NewAdminClient(clientConfig(addr, nil))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := admin.GetMetadata(nil, true, 5000); err != nil {
		t.Fatal(err)
	}
	admin.Close()
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}
