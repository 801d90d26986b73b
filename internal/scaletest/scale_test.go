package scaletest

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/kgrpc/platform/internal/proctest"
	"github.com/kgrpc/platform/internal/sqlstore"
	"github.com/kgrpc/platform/internal/sqlstore/sqltest"
	"github.com/kgrpc/platform/kafkatransport/kafkatest"
)

const (
	initialStock = 100000
	loadFor      = 8 * time.Second
	killAfter    = 3 * time.Second
	callTimeout  = 15 * time.Second // the gateways' request timeout is 10s
	recoverAfter = 12 * time.Second // ordersvc --recover-after; more than its 10s call timeout
)

func waitOK(t *testing.T, p *proctest.Proc) {
	t.Helper()
	proctest.WaitOK(t, p, "/readyz", 60*time.Second)
}

func TestScaleOutAndCrash(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs eight processes; skipped with -short")
	}
	bin := proctest.Build(t, "./cmd/gateway", "./cmd/usersvc", "./cmd/productsvc", "./cmd/ordersvc")
	dir := t.TempDir()
	// On real Kafka with a PostgreSQL server at hand the services use
	// PostgreSQL, as in production; otherwise shared SQLite files. The
	// databases are made first so that they are dropped after the
	// processes are killed.
	dbs := map[string]string{}
	for _, name := range []string{"users", "products", "orders"} {
		if os.Getenv("KAFKA_BROKERS") != "" && os.Getenv(sqltest.EnvPostgres) != "" {
			dbs[name] = sqltest.Postgres(t)
		} else {
			dbs[name] = filepath.Join(dir, name+".db")
		}
	}
	t.Logf("databases: %s", sqlstore.DialectOf(dbs["users"]))
	// Made after the databases, so the processes are killed before those
	// are dropped.
	c := proctest.NewCluster(t, bin, kafkatest.Brokers(t), kafkatest.TopicPrefix(t))
	db := func(name string) string { return dbs[name] }

	// The first users instance seeds the admin alone; the rest then join.
	users1 := c.Start("users-1", "usersvc", "--db", db("users"), "--admin-email", proctest.AdminEmail, "--admin-password", proctest.AdminPassword)
	waitOK(t, users1)
	services := map[string][2]*proctest.Proc{}
	services["users"] = [2]*proctest.Proc{users1, c.Start("users-2", "usersvc", "--db", db("users"))}
	services["products"] = [2]*proctest.Proc{c.Start("products-1", "productsvc", "--db", db("products")), c.Start("products-2", "productsvc", "--db", db("products"))}
	// A short recover time: the stock of order attempts that died with
	// orders-2 comes back within the test.
	services["orders"] = [2]*proctest.Proc{
		c.Start("orders-1", "ordersvc", "--db", db("orders"), "--recover-after", recoverAfter.String()),
		c.Start("orders-2", "ordersvc", "--db", db("orders"), "--recover-after", recoverAfter.String()),
	}
	// Every caller is on this host: no login or registration rate limit.
	gateways := []*proctest.Proc{c.Start("gateway-1", "gateway", "--auth-rate-limit", "0"), c.Start("gateway-2", "gateway", "--auth-rate-limit", "0")}
	for _, pair := range services {
		waitOK(t, pair[0])
		waitOK(t, pair[1])
	}
	for _, g := range gateways {
		waitOK(t, g)
	}
	gw := func(i int) string { return gateways[i%2].URL }

	ctx := context.Background()
	must := func(code int, body map[string]any, err error) map[string]any {
		t.Helper()
		if err != nil || code != 200 {
			t.Fatalf("setup call = %d %v %v", code, body, err)
		}
		return body
	}
	admin := must(proctest.API(ctx, gw(0), "POST", "/v1/auth:login", "", map[string]any{"email": proctest.AdminEmail, "password": proctest.AdminPassword}))["accessToken"].(string)
	product := must(proctest.API(ctx, gw(0), "POST", "/v1/products", admin, map[string]any{
		"sku": "SCALE-1", "name": "Scale test item", "category": "test", "priceCents": 100, "stock": initialStock}))["id"].(string)
	type buyer struct{ id, token string }
	var buyers []buyer
	for i := range 6 {
		email := fmt.Sprintf("buyer%d@example.com", i)
		id := must(proctest.API(ctx, gw(i), "POST", "/v1/users", "", map[string]any{"email": email, "password": "password-123", "displayName": "Buyer"}))["id"].(string)
		tok := must(proctest.API(ctx, gw(i+1), "POST", "/v1/auth:login", "", map[string]any{"email": email, "password": "password-123"}))["accessToken"].(string)
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
			pair[1].Kill()
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
					code, body, err = proctest.API(cctx, base, "POST", "/v1/users", "", map[string]any{
						"email": fmt.Sprintf("w%d-%d@example.com", w, i), "password": "password-123", "displayName": "Load"})
					if err == nil && code == 200 {
						registered.Add(1)
					}
				case 1:
					code, body, err = proctest.API(cctx, base, "GET", "/v1/products/"+product, "", nil)
					if err == nil && code == 200 {
						productsGot.Add(1)
					}
				default:
					b := buyers[(w+i)%len(buyers)]
					qty := int64(1 + i%3)
					code, body, err = proctest.API(cctx, base, "POST", "/v1/orders", b.token, map[string]any{
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
			code, body, err := proctest.API(ctx, gw(0), "GET", "/v1/users/"+b.id+"/orders?pageSize=100&pageToken="+tok, admin, nil)
			if err != nil || code != 200 {
				t.Fatalf("list orders = %d %v %v", code, body, err)
			}
			for _, o := range body["orders"].([]any) {
				om := o.(map[string]any)
				seen[om["id"].(string)]++
				if om["status"] != "ORDER_STATUS_CANCELLED" {
					for _, it := range om["items"].([]any) {
						reserved += proctest.Num(it.(map[string]any)["quantity"])
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
		code, body, err := proctest.API(ctx, gw(1), "GET", "/v1/products/"+product, "", nil)
		if err != nil || code != 200 {
			t.Fatalf("get product = %d %v %v", code, body, err)
		}
		stock = proctest.Num(body["stock"])
		if stock == initialStock-reserved || time.Now().After(deadline) {
			break
		}
	}
	recovered := 0
	for _, p := range services["orders"] {
		recovered += strings.Count(p.Log.String(), "released the stock of an order attempt")
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
			if n := strings.Count(p.Log.String(), "msg=rpc "); n == 0 {
				t.Errorf("%s served no call", p.Name)
			} else {
				t.Logf("%s served %d calls", p.Name, n)
			}
		}
	}
}
