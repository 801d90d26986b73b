package scaletest

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/kgrpc/platform/internal/kafkatest"
	"github.com/kgrpc/platform/internal/sqlstore"
	"github.com/kgrpc/platform/internal/sqlstore/sqltest"
)

const (
	secret        = "scale-test-secret-0123456789abcdef"
	adminEmail    = "admin@example.com"
	adminPassword = "admin-pass-123"
	initialStock  = 100000
	loadFor       = 8 * time.Second
	killAfter     = 3 * time.Second
	callTimeout   = 15 * time.Second // the gateways' request timeout is 10s
	recoverAfter  = 12 * time.Second // ordersvc --recover-after; more than its 10s call timeout
)

// proc is one running binary.
type proc struct {
	name   string
	cmd    *exec.Cmd
	health string // base URL of /healthz and /readyz, or the API
	log    *lockedBuffer
	exited chan struct{}
}

// cluster starts the binaries.
type cluster struct {
	t       *testing.T
	bin     string
	brokers string
	prefix  string
	dir     string
	procs   []*proc
}

func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

func (c *cluster) start(name, binary string, args ...string) *proc {
	c.t.Helper()
	addr := freeAddr(c.t)
	args = append([]string{"--brokers", c.brokers, "--auth-secret", secret, "--topic-prefix", c.prefix,
		"--instance-id", name, "--log-format", "text", "--log-level", "debug", "--http-addr", addr}, args...)
	cmd := exec.Command(filepath.Join(c.bin, binary), args...)
	p := &proc{name: name, cmd: cmd, health: "http://" + addr, log: &lockedBuffer{}, exited: make(chan struct{})}
	cmd.Stdout, cmd.Stderr = p.log, p.log
	if err := cmd.Start(); err != nil {
		c.t.Fatalf("start %s: %v", name, err)
	}
	go func() { _ = cmd.Wait(); close(p.exited) }()
	c.procs = append(c.procs, p)
	return p
}

// lockedBuffer is a process's output, written by its stdout and stderr
// copiers and read by the test.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *lockedBuffer) Write(b []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(b)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

// waitOK polls url until it answers 200.
func waitOK(t *testing.T, p *proc, path string) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case <-p.exited:
			t.Fatalf("%s exited during start:\n%s", p.name, p.log)
		default:
		}
		resp, err := http.Get(p.health + path)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("%s%s not 200 after 60s:\n%s", p.name, path, p.log)
}

// api calls a gateway and decodes a JSON object.
func api(ctx context.Context, base, method, path, token string, body any) (int, map[string]any, error) {
	var rd io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, base+path, rd)
	if err != nil {
		return 0, nil, err
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	var out map[string]any
	raw, _ := io.ReadAll(resp.Body)
	_ = json.Unmarshal(raw, &out)
	return resp.StatusCode, out, nil
}

func num(v any) int64 {
	switch x := v.(type) {
	case float64:
		return int64(x)
	case string:
		var n int64
		fmt.Sscan(x, &n)
		return n
	}
	return 0
}

func TestScaleOutAndCrash(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs eight processes; skipped with -short")
	}
	c := &cluster{t: t, bin: t.TempDir(), brokers: kafkatest.Brokers(t), prefix: kafkatest.TopicPrefix(t), dir: t.TempDir()}
	build := exec.Command("go", "build", "-o", c.bin, "./cmd/gateway", "./cmd/usersvc", "./cmd/productsvc", "./cmd/ordersvc")
	build.Dir = filepath.Join("..", "..")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	// On real Kafka with a PostgreSQL server at hand the services use
	// PostgreSQL, as in production; otherwise shared SQLite files. The
	// databases are made first so that they are dropped after the
	// processes are killed.
	dbs := map[string]string{}
	for _, name := range []string{"users", "products", "orders"} {
		if os.Getenv("KAFKA_BROKERS") != "" && os.Getenv(sqltest.EnvPostgres) != "" {
			dbs[name] = sqltest.Postgres(t)
		} else {
			dbs[name] = filepath.Join(c.dir, name+".db")
		}
	}
	t.Logf("databases: %s", sqlstore.DialectOf(dbs["users"]))
	t.Cleanup(func() {
		for _, p := range c.procs {
			_ = p.cmd.Process.Signal(syscall.SIGKILL)
			<-p.exited
		}
		if t.Failed() {
			for _, p := range c.procs {
				t.Logf("--- log of %s:\n%s", p.name, p.log)
			}
		}
	})
	db := func(name string) string { return dbs[name] }

	// The first users instance seeds the admin alone; the rest then join.
	users1 := c.start("users-1", "usersvc", "--db", db("users"), "--admin-email", adminEmail, "--admin-password", adminPassword)
	waitOK(t, users1, "/readyz")
	services := map[string][2]*proc{}
	services["users"] = [2]*proc{users1, c.start("users-2", "usersvc", "--db", db("users"))}
	services["products"] = [2]*proc{c.start("products-1", "productsvc", "--db", db("products")), c.start("products-2", "productsvc", "--db", db("products"))}
	// A short recover time: the stock of order attempts that died with
	// orders-2 comes back within the test.
	services["orders"] = [2]*proc{
		c.start("orders-1", "ordersvc", "--db", db("orders"), "--recover-after", recoverAfter.String()),
		c.start("orders-2", "ordersvc", "--db", db("orders"), "--recover-after", recoverAfter.String()),
	}
	gateways := []*proc{c.start("gateway-1", "gateway"), c.start("gateway-2", "gateway")}
	for _, pair := range services {
		waitOK(t, pair[0], "/readyz")
		waitOK(t, pair[1], "/readyz")
	}
	for _, g := range gateways {
		waitOK(t, g, "/readyz")
	}
	gw := func(i int) string { return gateways[i%2].health }

	ctx := context.Background()
	must := func(code int, body map[string]any, err error) map[string]any {
		t.Helper()
		if err != nil || code != 200 {
			t.Fatalf("setup call = %d %v %v", code, body, err)
		}
		return body
	}
	admin := must(api(ctx, gw(0), "POST", "/v1/auth:login", "", map[string]any{"email": adminEmail, "password": adminPassword}))["accessToken"].(string)
	product := must(api(ctx, gw(0), "POST", "/v1/products", admin, map[string]any{
		"sku": "SCALE-1", "name": "Scale test item", "category": "test", "priceCents": 100, "stock": initialStock}))["id"].(string)
	type buyer struct{ id, token string }
	var buyers []buyer
	for i := range 6 {
		email := fmt.Sprintf("buyer%d@example.com", i)
		id := must(api(ctx, gw(i), "POST", "/v1/users", "", map[string]any{"email": email, "password": "password-123", "displayName": "Buyer"}))["id"].(string)
		tok := must(api(ctx, gw(i+1), "POST", "/v1/auth:login", "", map[string]any{"email": email, "password": "password-123"}))["accessToken"].(string)
		buyers = append(buyers, buyer{id, tok})
	}

	// Mixed load through both gateways; one instance of each service is
	// killed mid-load.
	var (
		mu          sync.Mutex
		acked       = map[string]int64{} // order id -> quantity
		orderFails  int
		otherFails  = map[string]int{}
		slowest     time.Duration
		registered  atomic.Int64
		productsGot atomic.Int64
	)
	start := time.Now()
	killed := make(chan struct{})
	go func() {
		time.Sleep(killAfter)
		for name, pair := range services {
			_ = pair[1].cmd.Process.Signal(syscall.SIGKILL)
			t.Logf("killed %s-2 at %v", name, time.Since(start).Round(time.Millisecond))
		}
		close(killed)
	}()
	var wg sync.WaitGroup
	for w := range 12 {
		wg.Go(func() {
			for i := 0; time.Since(start) < loadFor; i++ {
				base := gw(w + i)
				cctx, cancel := context.WithTimeout(ctx, callTimeout)
				t0 := time.Now()
				var code int
				var body map[string]any
				var err error
				kind := (w + i) % 4
				switch kind {
				case 0:
					code, body, err = api(cctx, base, "POST", "/v1/users", "", map[string]any{
						"email": fmt.Sprintf("w%d-%d@example.com", w, i), "password": "password-123", "displayName": "Load"})
					if err == nil && code == 200 {
						registered.Add(1)
					}
				case 1:
					code, body, err = api(cctx, base, "GET", "/v1/products/"+product, "", nil)
					if err == nil && code == 200 {
						productsGot.Add(1)
					}
				default:
					b := buyers[(w+i)%len(buyers)]
					qty := int64(1 + i%3)
					code, body, err = api(cctx, base, "POST", "/v1/orders", b.token, map[string]any{
						"items": []any{map[string]any{"productId": product, "quantity": qty}}})
					mu.Lock()
					if err == nil && code == 200 {
						acked[body["id"].(string)] = qty
					} else {
						orderFails++
					}
					mu.Unlock()
				}
				d := time.Since(t0)
				cancel()
				mu.Lock()
				slowest = max(slowest, d)
				if err != nil || code != 200 {
					otherFails[fmt.Sprintf("kind %d: %v %v %v", kind, code, body["code"], err)]++
				}
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	<-killed
	t.Logf("load: %d orders acknowledged, %d order requests failed, %d registrations, %d product reads, slowest %v",
		len(acked), orderFails, registered.Load(), productsGot.Load(), slowest)
	for k, n := range otherFails {
		t.Logf("  %d × %s", n, k)
	}

	// No request hangs past its deadline: the gateways answer within their
	// 10s request timeout (plus scheduling slack).
	if slowest > 12*time.Second {
		t.Errorf("slowest request took %v, past the gateway's 10s deadline", slowest)
	}
	if len(acked) == 0 {
		t.Fatal("no order was acknowledged")
	}

	// Let redelivered work and outbox relays settle, then compare.
	time.Sleep(3 * time.Second)
	seen := map[string]int{}
	var reserved int64
	for _, b := range buyers {
		tok := ""
		for {
			code, body, err := api(ctx, gw(0), "GET", "/v1/users/"+b.id+"/orders?pageSize=100&pageToken="+tok, admin, nil)
			if err != nil || code != 200 {
				t.Fatalf("list orders = %d %v %v", code, body, err)
			}
			for _, o := range body["orders"].([]any) {
				om := o.(map[string]any)
				seen[om["id"].(string)]++
				if om["status"] != "ORDER_STATUS_CANCELLED" {
					for _, it := range om["items"].([]any) {
						reserved += num(it.(map[string]any)["quantity"])
					}
				}
			}
			tok, _ = body["nextPageToken"].(string)
			if tok == "" {
				break
			}
		}
	}
	var ackedQty int64
	for id, q := range acked {
		ackedQty += q
		if seen[id] != 1 {
			t.Errorf("acknowledged order %s listed %d times, want once", id, seen[id])
		}
	}
	for id, n := range seen {
		if n != 1 {
			t.Errorf("order %s listed %d times", id, n)
		}
	}
	unacked := len(seen) - len(acked)
	if unacked > orderFails {
		t.Errorf("%d orders exist that were not acknowledged, but only %d order requests failed", unacked, orderFails)
	}
	// Order attempts that died mid-way held stock; the surviving orders
	// instance's recovery sweep gives it back once their recover time has
	// passed (sweeping every recoverAfter/6).
	var stock int64
	settle := time.Now()
	for deadline := time.Now().Add(recoverAfter + 15*time.Second); ; time.Sleep(500 * time.Millisecond) {
		code, body, err := api(ctx, gw(1), "GET", "/v1/products/"+product, "", nil)
		if err != nil || code != 200 {
			t.Fatalf("get product = %d %v %v", code, body, err)
		}
		stock = num(body["stock"])
		if stock == initialStock-reserved || time.Now().After(deadline) {
			break
		}
	}
	recovered := 0
	for _, p := range services["orders"] {
		recovered += strings.Count(p.log.String(), "released the stock of an order attempt")
	}
	t.Logf("stock settled after %v; the recovery sweep released %d abandoned reservations", time.Since(settle).Round(time.Millisecond), recovered)
	t.Logf("stock %d: initial %d, acknowledged orders reserved %d, all stored orders reserved %d (%d stored but not acknowledged)",
		stock, initialStock, ackedQty, reserved, unacked)
	if stock != initialStock-reserved {
		t.Errorf("stock = %d, want initial %d minus the %d reserved by stored orders", stock, initialStock, reserved)
	}
	if unacked == 0 && stock != initialStock-ackedQty {
		t.Errorf("stock = %d, want initial %d minus the %d acknowledged", stock, initialStock, ackedQty)
	}

	// Both instances of each service served calls: each logs every call at
	// debug level.
	for _, pair := range services {
		for _, p := range pair {
			if n := strings.Count(p.log.String(), "msg=rpc "); n == 0 {
				t.Errorf("%s served no call", p.name)
			} else {
				t.Logf("%s served %d calls", p.name, n)
			}
		}
	}
}
