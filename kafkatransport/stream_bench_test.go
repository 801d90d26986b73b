package kafkatransport_test

// BenchmarkServerStream measures messages a second and delivery latency of
// server streams (100-byte messages, as fast as flow control lets them
// go) with 1 and 64 concurrent streams; BenchmarkRawStream is its floor:
// the same payloads produced with plain confluent-kafka-go to a
// one-partition topic and consumed by an assigned consumer, with 1 and 64
// producing goroutines.
//
//	go -C kafkatransport test . -run '^$' -bench 'ServerStream|RawStream' -benchtime 100000x
//
// The broker is kfake in-process unless KAFKA_BROKERS names a real cluster.
// STREAM_WINDOW and STREAM_WINDOW_BYTES set WithStreamWindow and
// WithStreamWindowBytes on both ends, for experiments.

import (
	"context"
	"encoding/binary"
	"fmt"
	"os"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"
	"google.golang.org/grpc"

	"github.com/kgrpc/platform/kafkatransport"
	testingv1 "github.com/kgrpc/platform/kafkatransport/gen/kgrpc/testing/v1"
	"github.com/kgrpc/platform/kafkatransport/kafkatest"
	"github.com/kgrpc/platform/kafkatransport/kafkatest/rawkafka"
)

// streamBenchConcurrency are the stream counts of the streaming benchmarks.
var streamBenchConcurrency = []int{1, 64}

// stamped sends count messages whose payload (100 bytes) begins with the
// time each was sent, in Unix nanoseconds.
type stamped struct {
	testingv1.UnimplementedEchoServiceServer
}

func (stamped) ServerStream(req *testingv1.ServerStreamRequest, stream grpc.ServerStreamingServer[testingv1.ServerStreamResponse]) error {
	payload := make([]byte, 100)
	for range req.GetCount() {
		binary.BigEndian.PutUint64(payload, uint64(time.Now().UnixNano()))
		if err := stream.Send(&testingv1.ServerStreamResponse{Payload: payload}); err != nil {
			return err
		}
	}
	return nil
}

// reportStream reports the rate and latency percentiles of n messages
// received over elapsed, lat holding each one's latency, and the CPU this
// process used per message since cpu0 (processCPU; with kfake, the
// broker's included).
func reportStream(b *testing.B, n int, elapsed time.Duration, lat []time.Duration, cpu0 time.Duration) {
	b.Helper()
	slices.Sort(lat)
	pct := func(p float64) float64 {
		if len(lat) == 0 {
			return 0
		}
		return float64(lat[min(len(lat)-1, int(float64(len(lat))*p))].Microseconds())
	}
	b.ReportMetric(float64(n)/elapsed.Seconds(), "msgs/s")
	b.ReportMetric(pct(0.50), "p50_us")
	b.ReportMetric(pct(0.99), "p99_us")
	b.ReportMetric(float64((processCPU()-cpu0).Microseconds())/float64(n), "cpu_us/msg")
	b.ReportMetric(0, "ns/op")
}

func BenchmarkServerStream(b *testing.B) {
	brokers := kafkatest.Brokers(b)
	prefix := kafkatest.TopicPrefix(b)
	opt := kafkatransport.WithOptions(kafkatransport.WithTopicPrefix(prefix))
	msgs, bytes := kafkatransport.DefaultStreamWindow, kafkatransport.DefaultStreamWindowBytes
	if w, err := strconv.Atoi(os.Getenv("STREAM_WINDOW")); err == nil {
		msgs = w
	}
	if w, err := strconv.Atoi(os.Getenv("STREAM_WINDOW_BYTES")); err == nil {
		bytes = w
	}
	window, windowBytes := kafkatransport.WithStreamWindow(msgs), kafkatransport.WithStreamWindowBytes(bytes)
	srv, err := kafkatransport.NewServer(brokers, opt, window, windowBytes)
	if err != nil {
		b.Fatal(err)
	}
	testingv1.RegisterEchoServiceKafkaServer(srv, stamped{})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx) }()
	b.Cleanup(func() { cancel(); <-done })
	<-srv.Ready()
	dctx, dcancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer dcancel()
	conn, err := kafkatransport.Dial(dctx, brokers, opt, window, windowBytes)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = conn.Close() })
	c := testingv1.NewEchoServiceKafkaClient(conn)
	drain := func(ctx context.Context, count int, lat []time.Duration) error {
		stream, err := c.ServerStream(ctx, &testingv1.ServerStreamRequest{Count: int32(count)})
		if err != nil {
			return err
		}
		for i := range count {
			resp, err := stream.Recv()
			if err != nil {
				return fmt.Errorf("message %d of %d: %w", i, count, err)
			}
			if lat != nil {
				lat[i] = time.Duration(time.Now().UnixNano() - int64(binary.BigEndian.Uint64(resp.GetPayload())))
			}
		}
		return nil
	}
	// Warm up: the server's group joined, connections open.
	for deadline := time.Now().Add(30 * time.Second); ; {
		wctx, wcancel := context.WithTimeout(context.Background(), 5*time.Second)
		err := drain(wctx, 100, nil)
		wcancel()
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			b.Fatalf("warm-up stream: %v", err)
		}
	}
	for _, streams := range streamBenchConcurrency {
		b.Run(fmt.Sprintf("streams=%d", streams), func(b *testing.B) {
			per := max(1, b.N/streams)
			lat := make([]time.Duration, per*streams)
			var wg sync.WaitGroup
			var failed atomic.Pointer[error]
			b.ResetTimer()
			start, cpu0 := time.Now(), processCPU()
			for s := range streams {
				wg.Go(func() {
					sctx, scancel := context.WithTimeout(context.Background(), 5*time.Minute)
					defer scancel()
					if err := drain(sctx, per, lat[s*per:(s+1)*per]); err != nil {
						failed.CompareAndSwap(nil, &err)
					}
				})
			}
			wg.Wait()
			elapsed := time.Since(start)
			b.StopTimer()
			if p := failed.Load(); p != nil {
				b.Fatal(*p)
			}
			reportStream(b, per*streams, elapsed, lat, cpu0)
		})
	}
}

func BenchmarkRawStream(b *testing.B) {
	brokers := kafkatest.Brokers(b)
	topic := kafkatest.TopicPrefix(b) + "raw-stream"
	setup, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := rawkafka.CreateTopics(setup, brokers, topic); err != nil {
		b.Fatal(err)
	}
	pc := rawkafka.ProducerConfig(brokers)
	p, err := kafka.NewProducer(&pc)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(p.Close)
	go func() {
		for range p.Events() { // delivery reports
		}
	}()
	cc := rawkafka.ConsumerConfig(brokers, topic+"-reader")
	c, err := kafka.NewConsumer(&cc)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = c.Close() })
	if err := c.Assign([]kafka.TopicPartition{{Topic: &topic, Partition: 0, Offset: kafka.OffsetBeginning}}); err != nil {
		b.Fatal(err)
	}
	produce := func(n int) error {
		payload := make([]byte, 100)
		for range n {
			binary.BigEndian.PutUint64(payload, uint64(time.Now().UnixNano()))
			for {
				err := p.Produce(&kafka.Message{TopicPartition: kafka.TopicPartition{Topic: &topic, Partition: 0}, Value: payload}, nil)
				if err == nil {
					break
				}
				if ke, ok := err.(kafka.Error); !ok || ke.Code() != kafka.ErrQueueFull {
					return err
				}
				time.Sleep(time.Millisecond) // the local queue is full: let it drain
			}
		}
		return nil
	}
	consume := func(n int, lat []time.Duration) error {
		deadline := time.Now().Add(5 * time.Minute)
		for i := 0; i < n; {
			if time.Now().After(deadline) {
				return fmt.Errorf("consumed %d of %d", i, n)
			}
			m, ok := c.Poll(100).(*kafka.Message)
			if !ok {
				continue
			}
			if lat != nil {
				lat[i] = time.Duration(time.Now().UnixNano() - int64(binary.BigEndian.Uint64(m.Value)))
			}
			i++
		}
		return nil
	}
	// Warm up: metadata known, connections open.
	if err := produce(100); err != nil {
		b.Fatal(err)
	}
	if err := consume(100, nil); err != nil {
		b.Fatal(err)
	}
	for _, producers := range streamBenchConcurrency {
		b.Run(fmt.Sprintf("producers=%d", producers), func(b *testing.B) {
			per := max(1, b.N/producers)
			lat := make([]time.Duration, per*producers)
			var failed atomic.Pointer[error]
			var wg sync.WaitGroup
			b.ResetTimer()
			start, cpu0 := time.Now(), processCPU()
			for range producers {
				wg.Go(func() {
					if err := produce(per); err != nil {
						failed.CompareAndSwap(nil, &err)
					}
				})
			}
			err := consume(per*producers, lat)
			elapsed := time.Since(start)
			wg.Wait()
			b.StopTimer()
			if p := failed.Load(); p != nil {
				b.Fatal(*p)
			}
			if err != nil {
				b.Fatal(err)
			}
			reportStream(b, per*producers, elapsed, lat, cpu0)
		})
	}
}
