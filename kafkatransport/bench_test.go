package kafkatransport_test

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/kgrpc/platform/kafkatransport"
	testingv1 "github.com/kgrpc/platform/kafkatransport/gen/kgrpc/testing/v1"
	"github.com/kgrpc/platform/kafkatransport/kafkatest"
	"github.com/kgrpc/platform/kafkatransport/trust"
)

// benchConcurrency are the concurrency levels every round-trip benchmark
// runs at, so transport and raw ping-pong compare like for like.
var benchConcurrency = []int{1, 64}

// measureCalls runs b.N calls of call from conc goroutines and reports the
// per-call latency percentiles and the call rate.
func measureCalls(b *testing.B, conc int, call func(ctx context.Context, i int) error) {
	b.Helper()
	lat := make([]time.Duration, b.N)
	var next atomic.Int64
	var failed atomic.Int64
	var wg sync.WaitGroup
	b.ResetTimer()
	start, cpu0 := time.Now(), processCPU()
	for range conc {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1) - 1)
				if i >= b.N {
					return
				}
				ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
				t0 := time.Now()
				err := call(ctx, i)
				lat[i] = time.Since(t0)
				cancel()
				if err != nil && failed.Add(1) == 1 {
					b.Errorf("call %d: %v", i, err)
				}
			}
		}()
	}
	wg.Wait()
	elapsed, cpu := time.Since(start), processCPU()-cpu0
	b.StopTimer()
	slices.Sort(lat)
	pct := func(p float64) float64 {
		return float64(lat[min(len(lat)-1, int(float64(len(lat))*p))].Microseconds())
	}
	b.ReportMetric(pct(0.50), "p50_us")
	b.ReportMetric(pct(0.99), "p99_us")
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "calls/s")
	// CPU of this process (client and server, Go and librdkafka, not the
	// broker) per call: steadier than calls/s on a machine shared with the
	// broker.
	b.ReportMetric(float64(cpu.Microseconds())/float64(b.N), "cpu_us/call")
	b.ReportMetric(0, "ns/op") // latency is in p50_us/p99_us; ns/op would mix in concurrency
}

// processCPU returns the user and system CPU time this process has used.
func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkTransport measures unary round trips of the echo service through
// ClientConn and Server on one broker.
func BenchmarkTransport(b *testing.B) { benchTransport(b, nil, nil) }

// BenchmarkTransportGuarded is BenchmarkTransport with every record sealed
// and opened by the units' Guards (kafkatransport/trust): run beside it, it
// measures what authenticated, encrypted calls cost.
func BenchmarkTransportGuarded(b *testing.B) {
	ring, keys, err := trust.Generate(time.Now(), "client", "server")
	if err != nil {
		b.Fatal(err)
	}
	policy := trust.Policy{Owners: map[string]string{"kgrpc.testing.v1": "server"}, Calls: map[string][]string{"client": {"/kgrpc.testing.v1.EchoService/*"}}}
	guard := func(unit string) kafkatransport.Option {
		g, err := trust.NewGuard(keys[unit], ring, policy)
		if err != nil {
			b.Fatal(err)
		}
		return kafkatransport.WithGuard(g)
	}
	benchTransport(b, guard("server"), guard("client"))
}

// benchTransport measures Echo calls, with server and client options.
func benchTransport(b *testing.B, serverOpt, clientOpt kafkatransport.Option) {
	brokers := kafkatest.Brokers(b)
	prefix := kafkatest.TopicPrefix(b)
	opt := kafkatransport.WithTopicPrefix(prefix)
	if serverOpt == nil {
		serverOpt, clientOpt = opt, opt
	}
	srv, err := kafkatransport.NewServer(brokers, opt, serverOpt)
	if err != nil {
		b.Fatal(err)
	}
	testingv1.RegisterEchoServiceKafkaServer(srv, newEcho("bench"))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx) }()
	b.Cleanup(func() { cancel(); <-done })
	dctx, dcancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer dcancel()
	cc, err := kafkatransport.Dial(dctx, brokers, opt, clientOpt)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = cc.Close() })
	c := testingv1.NewEchoServiceKafkaClient(cc)
	// Warm up: group joined, connections open, topic metadata cached.
	for range 200 {
		wctx, wcancel := context.WithTimeout(context.Background(), 30*time.Second)
		_, err := c.Echo(wctx, &testingv1.EchoRequest{Message: "warm-up"})
		wcancel()
		if err != nil {
			b.Fatalf("warm-up: %v", err)
		}
	}
	payload := make([]byte, 100)
	for _, conc := range benchConcurrency {
		b.Run(fmt.Sprintf("conc=%d", conc), func(b *testing.B) {
			measureCalls(b, conc, func(ctx context.Context, i int) error {
				_, err := c.Echo(ctx, &testingv1.EchoRequest{Payload: payload})
				return err
			})
		})
	}
}

// BenchmarkStartToFirstCall measures the time from creating a server and a
// client on a running broker to the first answered call.
func BenchmarkStartToFirstCall(b *testing.B) {
	brokers := kafkatest.Brokers(b)
	var total time.Duration
	for i := range b.N {
		prefix := fmt.Sprintf("%sstart%d-", kafkatest.TopicPrefix(b), i)
		opt := kafkatransport.WithTopicPrefix(prefix)
		start := time.Now()
		srv, err := kafkatransport.NewServer(brokers, opt)
		if err != nil {
			b.Fatal(err)
		}
		testingv1.RegisterEchoServiceKafkaServer(srv, newEcho("bench"))
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- srv.Serve(ctx) }()
		cc, err := kafkatransport.Dial(ctx, brokers, opt)
		if err != nil {
			b.Fatal(err)
		}
		cctx, ccancel := context.WithTimeout(ctx, 30*time.Second)
		_, err = testingv1.NewEchoServiceKafkaClient(cc).Echo(cctx, &testingv1.EchoRequest{})
		ccancel()
		if err != nil {
			b.Fatal(err)
		}
		total += time.Since(start)
		_ = cc.Close()
		cancel()
		<-done
	}
	b.ReportMetric(float64(total.Milliseconds())/float64(b.N), "ms/first-call")
	b.ReportMetric(0, "ns/op")
}
