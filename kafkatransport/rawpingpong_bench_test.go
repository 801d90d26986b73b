package kafkatransport_test

// BenchmarkRawPingPong is the floor the transport's round-trip benchmarks are
// compared against: request-reply over plain confluent-kafka-go
// (kafkatest/rawkafka), with no protobuf, no interceptors, no deadlines and
// no offset tracking. Whatever BenchmarkTransport adds on top of these
// numbers is the transport's cost.
//
//	go -C kafkatransport test . -run '^$' -bench RawPingPong -benchtime 3s
//
// The broker is kfake in-process unless KAFKA_BROKERS names a real cluster.
// RAW_PINGPONG_CONFIG overrides librdkafka properties of every client for
// experiments, e.g. RAW_PINGPONG_CONFIG='linger.ms=5,fetch.wait.max.ms=10'.

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/kgrpc/platform/kafkatransport/kafkatest"
	"github.com/kgrpc/platform/kafkatransport/kafkatest/rawkafka"
)

// BenchmarkRawPingPong measures request-reply round trips over two
// one-partition topics: the client produces a ping, a server goroutine
// consumes it and produces the same value to pong, and the client's reader
// matches the pong to its caller by correlation id.
func BenchmarkRawPingPong(b *testing.B) {
	brokers := kafkatest.Brokers(b)
	prefix := kafkatest.TopicPrefix(b)
	ping, pong := prefix+"ping", prefix+"pong"
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	b.Cleanup(func() { cancel(); wg.Wait() })
	setup, setupCancel := context.WithTimeout(ctx, 30*time.Second)
	defer setupCancel()
	if err := rawkafka.CreateTopics(setup, brokers, ping, pong); err != nil {
		b.Fatal(err)
	}
	srv, err := rawkafka.NewServer(brokers, prefix+"server", ping, pong)
	if err != nil {
		b.Fatal(err)
	}
	wg.Go(func() { srv.Run(ctx) })
	cli, err := rawkafka.NewClient(setup, brokers, prefix+"client", ping, pong)
	if err != nil {
		b.Fatal(err)
	}
	wg.Go(func() { cli.Run(ctx) })

	// Warm up: connections open, metadata cached, the server's group joined.
	payload := make([]byte, 100)
	for i := range 200 {
		wctx, wcancel := context.WithTimeout(ctx, 30*time.Second)
		_, err := cli.Call(wctx, payload)
		wcancel()
		if err != nil {
			b.Fatalf("warm-up call %d: %v", i, err)
		}
	}
	for _, conc := range benchConcurrency {
		b.Run(fmt.Sprintf("conc=%d", conc), func(b *testing.B) {
			measureCalls(b, conc, func(ctx context.Context, _ int) error {
				_, err := cli.Call(ctx, payload)
				return err
			})
		})
	}
	if err := srv.Err(); err != nil {
		b.Fatal(err)
	}
}
