// Command bench is a load generator for the platform. It drives either the
// REST API through the gateway or the Kafka transport directly, for a fixed
// duration at a fixed concurrency, prints live progress every second, and
// ends with throughput and latency percentiles.
//
//	bench rest --url http://127.0.0.1:8080 --scenario get-product -c 32 -d 20s
//	bench rest --url http://127.0.0.1:8080 --scenario create-order \
//	    --admin-email admin@example.com --admin-password admin-pass-123
//	bench transport --brokers 127.0.0.1:9092 -c 64 -d 20s
//	bench otlp-sink --addr 127.0.0.1:4318
//	bench rawrest --brokers 127.0.0.1:9092 --http-addr 127.0.0.1:19770
//
// The transport mode serves the sample echo service in-process unless
// --serve=false, and starts an embedded broker when --brokers is empty.
// The otlp-sink mode is a local OTLP/HTTP trace receiver that decodes and
// counts spans, for measuring what exporting traces costs. The rawrest mode
// serves the floor of a REST path over Kafka: plain net/http in front of
// plain confluent-kafka-go request-reply (see runRawREST).
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/signal"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/time/rate"
	"google.golang.org/grpc/status"

	"github.com/kgrpc/platform/kafkatransport"
	"github.com/kgrpc/platform/kafkatransport/embedkafka"
	testingv1 "github.com/kgrpc/platform/kafkatransport/gen/kgrpc/testing/v1"
)

func main() {
	if len(os.Args) < 2 || strings.HasPrefix(os.Args[1], "-") {
		fmt.Fprintln(os.Stderr, "usage: bench rest|transport|otlp-sink|rawrest [flags]  (bench rest --help)")
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	var err error
	switch os.Args[1] {
	case "rest":
		err = runREST(ctx, os.Args[2:])
	case "transport":
		err = runTransport(ctx, os.Args[2:])
	case "otlp-sink":
		err = runSink(ctx, os.Args[2:])
	case "rawrest":
		err = runRawREST(ctx, os.Args[2:])
	default:
		err = fmt.Errorf("unknown mode %q: want rest, transport, otlp-sink or rawrest", os.Args[1])
	}
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			os.Exit(0)
		}
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

// loadFlags are the flags every mode has.
type loadFlags struct {
	concurrency int
	duration    time.Duration
	warmup      time.Duration
	timeout     time.Duration
	rate        float64
}

func (l *loadFlags) register(fs *flag.FlagSet) {
	fs.IntVar(&l.concurrency, "c", 16, "concurrent callers")
	fs.DurationVar(&l.duration, "d", 10*time.Second, "measured duration")
	fs.DurationVar(&l.warmup, "warmup", 2*time.Second, "unmeasured warm-up before the measurement")
	fs.DurationVar(&l.timeout, "timeout", 10*time.Second, "deadline of each call")
	fs.Float64Var(&l.rate, "rate", 0, "calls a second at most, over all callers (0: as fast as they go); with a rate the system keeps up with, compare CPU per call")
}

func (l *loadFlags) check() error {
	if l.concurrency < 1 || l.duration <= 0 || l.timeout <= 0 || l.warmup < 0 || l.rate < 0 {
		return errors.New("-c must be >= 1, -d and -timeout > 0, -warmup and -rate >= 0")
	}
	return nil
}

// result is the outcome of one measured run.
type result struct {
	calls     int
	errors    map[string]int
	latencies []time.Duration
	elapsed   time.Duration
}

// drive calls op from l.concurrency goroutines, first for the warm-up and
// then for the measured duration, printing progress each second.
func drive(ctx context.Context, name string, l loadFlags, op func(ctx context.Context) error) result {
	if l.warmup > 0 {
		fmt.Fprintf(os.Stderr, "%s: warming up for %v\n", name, l.warmup)
		wctx, cancel := context.WithTimeout(ctx, l.warmup)
		run(wctx, l, op, nil)
		cancel()
	}
	fmt.Fprintf(os.Stderr, "%s: measuring for %v at concurrency %d\n", name, l.duration, l.concurrency)
	mctx, cancel := context.WithTimeout(ctx, l.duration)
	defer cancel()
	rec := &recorder{errors: map[string]int{}}
	done := make(chan struct{})
	go func() {
		t := time.NewTicker(time.Second)
		defer t.Stop()
		start := time.Now()
		var last int64
		for {
			select {
			case <-done:
				return
			case <-t.C:
				n := rec.count.Load()
				fmt.Fprintf(os.Stderr, "  %5.0fs  %8.0f calls/s  %d errors\n", time.Since(start).Seconds(), float64(n-last), rec.failed.Load())
				last = n
			}
		}
	}()
	start := time.Now()
	run(mctx, l, op, rec)
	elapsed := time.Since(start)
	close(done)
	return result{calls: len(rec.lat), errors: rec.errors, latencies: rec.lat, elapsed: elapsed}
}

// recorder collects latencies and errors.
type recorder struct {
	mu     sync.Mutex
	lat    []time.Duration
	errors map[string]int
	count  atomic.Int64
	failed atomic.Int64
}

func run(ctx context.Context, l loadFlags, op func(ctx context.Context) error, rec *recorder) {
	var wg sync.WaitGroup
	limit := rate.NewLimiter(rate.Inf, 1)
	if l.rate > 0 {
		limit = rate.NewLimiter(rate.Limit(l.rate), 1)
	}
	for range l.concurrency {
		wg.Go(func() {
			var mine []time.Duration
			for ctx.Err() == nil {
				if limit.Wait(ctx) != nil {
					break
				}
				cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), l.timeout)
				t0 := time.Now()
				err := op(cctx)
				d := time.Since(t0)
				cancel()
				if rec == nil {
					continue
				}
				rec.count.Add(1)
				if err != nil {
					rec.failed.Add(1)
					rec.mu.Lock()
					rec.errors[err.Error()]++
					rec.mu.Unlock()
					continue
				}
				mine = append(mine, d)
			}
			if rec != nil {
				rec.mu.Lock()
				rec.lat = append(rec.lat, mine...)
				rec.mu.Unlock()
			}
		})
	}
	wg.Wait()
}

// report prints the run's numbers.
func report(name string, r result) {
	slices.Sort(r.latencies)
	pct := func(p float64) time.Duration {
		if len(r.latencies) == 0 {
			return 0
		}
		return r.latencies[min(len(r.latencies)-1, int(float64(len(r.latencies))*p))]
	}
	failed := 0
	for _, n := range r.errors {
		failed += n
	}
	fmt.Printf("%s: %d ok, %d failed in %v: %.0f ok/s; latency p50 %v p90 %v p99 %v max %v\n",
		name, r.calls, failed, r.elapsed.Round(time.Millisecond), float64(r.calls)/r.elapsed.Seconds(),
		pct(0.50).Round(time.Microsecond), pct(0.90).Round(time.Microsecond), pct(0.99).Round(time.Microsecond), pct(1).Round(time.Microsecond))
	keys := make([]string, 0, len(r.errors))
	for k := range r.errors {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		fmt.Printf("  %6d × %s\n", r.errors[k], k)
	}
}

func runTransport(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("bench transport", flag.ContinueOnError)
	var l loadFlags
	l.register(fs)
	brokers := fs.String("brokers", os.Getenv("KAFKA_BROKERS"), "Kafka bootstrap servers; empty starts an embedded broker (KAFKA_BROKERS)")
	serve := fs.Bool("serve", true, "serve the echo service in this process")
	payload := fs.Int("payload", 100, "request payload bytes")
	prefix := fs.String("topic-prefix", fmt.Sprintf("bench-%d-", time.Now().Unix()), "topic prefix, so runs do not share topics")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if err := l.check(); err != nil {
		return err
	}
	if *brokers == "" {
		b, err := embedkafka.Start(embedkafka.Config{})
		if err != nil {
			return err
		}
		defer b.Close()
		*brokers = b.Addr()
		fmt.Fprintf(os.Stderr, "embedded broker on %s\n", *brokers)
	}
	opt := kafkatransport.WithTopicPrefix(*prefix)
	if *serve {
		srv, err := kafkatransport.NewServer(*brokers, opt)
		if err != nil {
			return err
		}
		testingv1.RegisterEchoServiceKafkaServer(srv, echo{})
		sctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
		done := make(chan error, 1)
		go func() { done <- srv.Serve(sctx) }()
		defer func() { cancel(); <-done }()
		// Servers create request topics, clients do not: wait for it.
		select {
		case <-srv.Ready():
		case err := <-done:
			done <- err // for the deferred wait
			return fmt.Errorf("serve: %w", err)
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	conn, err := kafkatransport.Dial(ctx, *brokers, opt)
	if err != nil {
		return err
	}
	defer conn.Close()
	client := testingv1.NewEchoServiceKafkaClient(conn)
	req := &testingv1.EchoRequest{Payload: make([]byte, *payload)}
	report("transport Echo", drive(ctx, "transport Echo", l, func(ctx context.Context) error {
		if _, err := client.Echo(ctx, req); err != nil {
			return errors.New(status.Code(err).String()) // bounded set of error keys
		}
		return nil
	}))
	return nil
}

// echo is the benchmark's echo service.
type echo struct {
	testingv1.UnimplementedEchoServiceServer
}

func (echo) Echo(_ context.Context, r *testingv1.EchoRequest) (*testingv1.EchoResponse, error) {
	return &testingv1.EchoResponse{Message: r.GetMessage(), Payload: r.GetPayload()}, nil
}

func runREST(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("bench rest", flag.ContinueOnError)
	var l loadFlags
	l.register(fs)
	base := fs.String("url", "http://127.0.0.1:8080", "gateway base URL")
	scenario := fs.String("scenario", "get-product", "get-product or create-order")
	adminEmail := fs.String("admin-email", os.Getenv("PLATFORM_ADMIN_EMAIL"), "admin account, to create the benchmark's product (create-order)")
	adminPassword := fs.String("admin-password", os.Getenv("PLATFORM_ADMIN_PASSWORD"), "admin password")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if err := l.check(); err != nil {
		return err
	}
	c := &api{base: strings.TrimRight(*base, "/"), http: &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: l.concurrency}}}
	var op func(ctx context.Context) error
	switch *scenario {
	case "get-product":
		var list struct {
			Products []struct{ ID string } `json:"products"`
		}
		if err := c.do(ctx, "GET", "/v1/products?pageSize=1", "", nil, &list); err != nil {
			return fmt.Errorf("find a product: %w", err)
		}
		if len(list.Products) == 0 {
			return errors.New("the catalog is empty: start the platform with its demo catalog")
		}
		path := "/v1/products/" + list.Products[0].ID
		op = func(ctx context.Context) error { return c.do(ctx, "GET", path, "", nil, nil) }
	case "create-order":
		if *adminEmail == "" {
			return errors.New("create-order needs --admin-email and --admin-password to create a product with enough stock")
		}
		var login struct {
			AccessToken string `json:"accessToken"`
		}
		if err := c.do(ctx, "POST", "/v1/auth:login", "", map[string]string{"email": *adminEmail, "password": *adminPassword}, &login); err != nil {
			return fmt.Errorf("admin login: %w", err)
		}
		var product struct{ ID string }
		sku := fmt.Sprintf("BENCH-%d", time.Now().UnixNano())
		if err := c.do(ctx, "POST", "/v1/products", login.AccessToken, map[string]any{
			"sku": sku, "name": "Benchmark item", "category": "bench", "priceCents": 100, "stock": 1_000_000_000}, &product); err != nil {
			return fmt.Errorf("create product: %w", err)
		}
		email := fmt.Sprintf("bench-%d@example.com", time.Now().UnixNano())
		if err := c.do(ctx, "POST", "/v1/users", "", map[string]string{"email": email, "password": "bench-password", "displayName": "Bench"}, nil); err != nil {
			return fmt.Errorf("register: %w", err)
		}
		var user struct {
			AccessToken string `json:"accessToken"`
		}
		if err := c.do(ctx, "POST", "/v1/auth:login", "", map[string]string{"email": email, "password": "bench-password"}, &user); err != nil {
			return fmt.Errorf("login: %w", err)
		}
		body := map[string]any{"items": []any{map[string]any{"productId": product.ID, "quantity": 1}}}
		op = func(ctx context.Context) error { return c.do(ctx, "POST", "/v1/orders", user.AccessToken, body, nil) }
	default:
		return fmt.Errorf("unknown scenario %q: want get-product or create-order", *scenario)
	}
	name := "REST " + *scenario
	report(name, drive(ctx, name, l, op))
	return nil
}

// api is a small JSON client of the gateway.
type api struct {
	base string
	http *http.Client
}

// do sends a request and decodes a 2xx JSON answer into out; other
// statuses become errors named by status and error code.
func (a *api) do(ctx context.Context, method, path, token string, body, out any) error {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, a.base+path, rd)
	if err != nil {
		return err
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := a.http.Do(req)
	if err != nil {
		if ctx.Err() != nil {
			return errors.New("client deadline exceeded")
		}
		return fmt.Errorf("transport: %w", err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		return fmt.Errorf("read body: %w", err)
	}
	if resp.StatusCode/100 != 2 {
		var e struct{ Code string }
		_ = json.Unmarshal(raw, &e)
		return fmt.Errorf("HTTP %d %s", resp.StatusCode, e.Code)
	}
	if out != nil {
		return json.Unmarshal(raw, out)
	}
	return nil
}
