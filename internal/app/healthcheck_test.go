package app

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"
	"golang.org/x/sync/errgroup"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	productsv1 "github.com/kgrpc/platform/gen/shop/products/v1"
	"github.com/kgrpc/platform/internal/sqlstore/sqltest"
	"github.com/kgrpc/platform/kafkatransport"
	"github.com/kgrpc/platform/kafkatransport/kafkatest"
)

// TestHealthNamesTheDatabase runs the shop's four units, the products
// service on PostgreSQL behind a TCP proxy, then takes the database away
// by closing the proxy: the products unit's health service answers
// NOT_SERVING saying "database: ...", its readiness says so, and the
// gateway's /readyz answers 503 naming the products service and the
// database; all recover once the proxy is back. Then the proxy holds
// connections without answering: the check gives up after DBCheckTimeout.
func TestHealthNamesTheDatabase(t *testing.T) {
	dsn := sqltest.Postgres(t) // skips without TEST_POSTGRES_DSN
	u, err := url.Parse(dsn)
	if err != nil {
		t.Fatal(err)
	}
	proxy := startProxy(t, u.Host)
	u.Host = proxy.addr
	productsDSN := u.String()

	brokers := kafkatest.Brokers(t)
	logger := slog.New(slog.NewTextHandler(testLog{t}, &slog.HandlerOptions{Level: slog.LevelError}))
	keys, err := EnsureKeys(t.TempDir(), logger)
	if err != nil {
		t.Fatal(err)
	}
	c := Common{Brokers: brokers, Trust: keys, Logger: logger, Partitions: 2, Kafka: []kafkatransport.Option{
		kafkatransport.WithTopicPrefix(kafkatest.TopicPrefix(t)),
		kafkatransport.WithKafkaConfig(kafka.ConfigMap{"session.timeout.ms": 6000, "heartbeat.interval.ms": 500}),
	}}
	users, _, orders := DBPaths(t.TempDir())
	productsReady := new(Ready)
	listening := make(chan string, 1)
	ctx, cancel := context.WithCancel(context.Background())
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return RunUsers(gctx, c, UsersConfig{ServiceConfig: ServiceConfig{DB: users}}) })
	g.Go(func() error {
		return RunProducts(gctx, c, ProductsConfig{ServiceConfig: ServiceConfig{DB: productsDSN, Ready: productsReady}})
	})
	g.Go(func() error { return RunOrders(gctx, c, OrdersConfig{ServiceConfig: ServiceConfig{DB: orders}}) })
	g.Go(func() error {
		return RunGateway(gctx, c, GatewayConfig{HTTPAddr: "127.0.0.1:0", Listening: func(a string) { listening <- a }})
	})
	t.Cleanup(func() {
		cancel()
		done := make(chan error, 1)
		go func() { done <- g.Wait() }()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("units: %v", err)
			}
		case <-time.After(90 * time.Second):
			t.Error("units did not stop within 90s")
		}
	})
	var base string
	select {
	case a := <-listening:
		base = "http://" + a
	case <-gctx.Done():
		t.Fatalf("units stopped: %v", g.Wait())
	case <-time.After(60 * time.Second):
		t.Fatal("gateway not listening after 60s")
	}

	// The test calls the products unit's health service as the gateway.
	gw, err := c.unit(UnitGateway)
	if err != nil {
		t.Fatal(err)
	}
	conn, err := kafkatransport.Dial(ctx, brokers, c.clientOptions(gw, nil)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	health := healthClient(conn, UnitProducts)
	products := productsv1.ProductService_ServiceDesc.ServiceName
	check := func(service string) (grpc_health_v1.HealthCheckResponse_ServingStatus, string, error) {
		cctx, ccancel := context.WithTimeout(ctx, 5*time.Second)
		defer ccancel()
		var trailer metadata.MD
		resp, err := health.Check(cctx, &grpc_health_v1.HealthCheckRequest{Service: service}, grpc.Trailer(&trailer))
		return resp.GetStatus(), strings.Join(trailer.Get(kafkatransport.HealthReasonKey), ","), err
	}
	readyz := func() (int, map[string]any) {
		resp, err := http.Get(base + "/readyz")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var body struct{ Checks map[string]any }
		if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
			t.Fatal(err)
		}
		return resp.StatusCode, body.Checks
	}
	eventually := func(what string, cond func() bool) {
		t.Helper()
		deadline := time.Now().Add(60 * time.Second)
		for !cond() {
			if time.Now().After(deadline) {
				t.Fatalf("%s: not within 60s", what)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}

	eventually("gateway ready", func() bool {
		code, _ := readyz()
		return code == http.StatusOK
	})
	t.Run("serving", func(t *testing.T) {
		for _, service := range []string{"", products} {
			if st, reason, err := check(service); err != nil || st != grpc_health_v1.HealthCheckResponse_SERVING || reason != "" {
				t.Errorf("Check(%q) = %v %q, %v; want SERVING", service, st, reason, err)
			}
		}
		if _, _, err := check("shop.users.v1.UserService"); status.Code(err) != codes.NotFound {
			t.Errorf("Check of a service the unit does not serve = %v, want NotFound", err)
		}
	})

	proxy.stop()
	t.Run("database down", func(t *testing.T) {
		var reason string
		eventually("NOT_SERVING", func() bool {
			st, r, err := check(products)
			reason = r
			return err == nil && st == grpc_health_v1.HealthCheckResponse_NOT_SERVING
		})
		if !strings.HasPrefix(reason, "database: ") {
			t.Errorf("reason %q, want database: ...", reason)
		}
		if st, _, err := check(""); err != nil || st != grpc_health_v1.HealthCheckResponse_NOT_SERVING {
			t.Errorf("overall Check = %v, %v; want NOT_SERVING", st, err)
		}
		if err := productsReady.Err(); err == nil || !strings.Contains(err.Error(), "database: ") {
			t.Errorf("products unit's readiness = %v, want database: ...", err)
		}
		code, checks := readyz()
		got, _ := checks["products"].(string)
		if code != http.StatusServiceUnavailable || !strings.HasPrefix(got, "NOT_SERVING: database: ") || checks["users"] != "ok" || checks["orders"] != "ok" {
			t.Errorf("/readyz = %d %v; want 503, products NOT_SERVING: database: ..., users and orders ok", code, checks)
		}
		t.Logf("/readyz with the products database down: %d %v", code, checks)
	})

	proxy.start(false)
	t.Run("database back", func(t *testing.T) {
		eventually("SERVING again", func() bool {
			st, _, err := check(products)
			return err == nil && st == grpc_health_v1.HealthCheckResponse_SERVING
		})
		eventually("gateway ready again", func() bool {
			code, _ := readyz()
			return code == http.StatusOK
		})
		if err := productsReady.Err(); err != nil {
			t.Errorf("products unit's readiness = %v, want nil", err)
		}
	})

	// A database that accepts connections and never answers: the check
	// gives up after DBCheckTimeout, within the gateway's 3s.
	proxy.stop()
	proxy.start(true)
	t.Run("database hangs", func(t *testing.T) {
		// The pool's connections, closed by stop, fail at once; then a new
		// one hangs.
		var reason string
		var took time.Duration
		eventually("a check that waited for the database", func() bool {
			start := time.Now()
			st, r, err := check(products)
			took, reason = time.Since(start), r
			if err != nil || st != grpc_health_v1.HealthCheckResponse_NOT_SERVING || !strings.HasPrefix(reason, "database: ") {
				t.Fatalf("Check = %v %q, %v; want NOT_SERVING, database: ...", st, reason, err)
			}
			return took >= DBCheckTimeout
		})
		t.Logf("Check answered in %v with a database that does not answer: %q", took.Round(time.Millisecond), reason)
		code, checks := readyz()
		if got, _ := checks["products"].(string); code != http.StatusServiceUnavailable || !strings.HasPrefix(got, "NOT_SERVING: database: ") {
			t.Errorf("/readyz = %d %v; want 503, products NOT_SERVING: database: ...", code, checks)
		}
	})
	proxy.stop()
	proxy.start(false)
	eventually("SERVING after the hang", func() bool {
		st, _, err := check(products)
		return err == nil && st == grpc_health_v1.HealthCheckResponse_SERVING
	})
}

// proxy forwards TCP connections from addr to target while started, or
// holds them open without a byte either way while started to hold.
type proxy struct {
	t            *testing.T
	addr, target string

	mu    sync.Mutex
	ln    net.Listener
	conns map[net.Conn]bool
	wg    sync.WaitGroup
}

// startProxy starts a proxy to target on a free local port; it stops when
// t ends.
func startProxy(t *testing.T, target string) *proxy {
	p := &proxy{t: t, addr: "127.0.0.1:0", target: target, conns: map[net.Conn]bool{}}
	p.start(false)
	t.Cleanup(p.stop)
	return p
}

// start listens on p.addr (the same port again after stop) and forwards
// what it accepts, or holds it when hold is set.
func (p *proxy) start(hold bool) {
	ln, err := net.Listen("tcp", p.addr)
	if err != nil {
		p.t.Fatalf("proxy: %v", err)
	}
	p.mu.Lock()
	p.ln, p.addr = ln, ln.Addr().String()
	p.mu.Unlock()
	p.wg.Go(func() {
		for {
			in, err := ln.Accept()
			if err != nil {
				return // closed by stop
			}
			if hold {
				if !p.track(in) {
					return
				}
				continue
			}
			out, err := net.DialTimeout("tcp", p.target, 5*time.Second)
			if err != nil {
				in.Close()
				continue
			}
			if !p.track(in, out) {
				return
			}
			for _, pair := range [][2]net.Conn{{in, out}, {out, in}} {
				p.wg.Go(func() {
					_, _ = io.Copy(pair[0], pair[1])
					pair[0].Close()
					pair[1].Close()
				})
			}
		}
	})
}

// track records conns for stop, or closes them and reports false when
// stop has begun.
func (p *proxy) track(conns ...net.Conn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.ln == nil {
		for _, c := range conns {
			c.Close()
		}
		return false
	}
	for _, c := range conns {
		p.conns[c] = true
	}
	return true
}

// stop closes the listener and every connection, and waits for the
// forwarding goroutines; the database then does not answer.
func (p *proxy) stop() {
	p.mu.Lock()
	if p.ln != nil {
		p.ln.Close()
		p.ln = nil
	}
	for c := range p.conns {
		c.Close()
		delete(p.conns, c)
	}
	p.mu.Unlock()
	p.wg.Wait()
}

// testLog writes log lines to the test log.
type testLog struct{ t *testing.T }

func (w testLog) Write(b []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(b), "\n"))
	return len(b), nil
}
