package scaletest

import (
	"bufio"
	"context"
	"encoding/json"
	"net/http"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/kgrpc/platform/internal/proctest"
	"github.com/kgrpc/platform/kafkatransport/kafkatest"
)

// watchLine is one line of GET /v1/orders/{id}:watch.
type watchLine struct {
	Result *struct {
		Order struct {
			Status string `json:"status"`
		} `json:"order"`
	} `json:"result"`
	Error *struct {
		Code    int    `json:"code"`
		Message string `json:"message"`
	} `json:"error"`
}

// TestWatchAcrossInstancesAndKill opens many watches of one order through a
// gateway, which land on both ordersvc instances, changes the order's
// status through the API (whichever instance serves the change), and
// checks that every watch sees it; then it SIGKILLs one ordersvc instance:
// the watches it held end with UNAVAILABLE (code 14) within 10s, and the
// others go on and see the next change.
func TestWatchAcrossInstancesAndKill(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs five processes; skipped with -short")
	}
	bin := proctest.Build(t, "./cmd/gateway", "./cmd/usersvc", "./cmd/productsvc", "./cmd/ordersvc")
	dir := t.TempDir()
	c := proctest.NewCluster(t, bin, kafkatest.Brokers(t), kafkatest.TopicPrefix(t))
	users := c.Start("users", "usersvc", "--db", filepath.Join(dir, "users.db"), "--admin-email", proctest.AdminEmail, "--admin-password", proctest.AdminPassword)
	products := c.Start("products", "productsvc", "--db", filepath.Join(dir, "products.db"))
	orders := []*proctest.Proc{
		c.Start("orders-1", "ordersvc", "--db", filepath.Join(dir, "orders.db")),
		c.Start("orders-2", "ordersvc", "--db", filepath.Join(dir, "orders.db")),
	}
	gw := c.Start("gateway", "gateway", "--auth-rate-limit", "0")
	for _, p := range []*proctest.Proc{users, products, orders[0], orders[1], gw} {
		waitOK(t, p)
	}
	// Both instances must hold request partitions before the watches open,
	// or the first to join may hold them all and take every watch.
	c.WaitServing("shop.orders.v1.OrderService", 30*time.Second, orders...)
	ctx := context.Background()
	must := func(code int, body map[string]any, err error) map[string]any {
		t.Helper()
		if err != nil || code != 200 {
			t.Fatalf("setup call = %d %v %v", code, body, err)
		}
		return body
	}
	admin := must(proctest.API(ctx, gw.URL, "POST", "/v1/auth:login", "", map[string]any{"email": proctest.AdminEmail, "password": proctest.AdminPassword}))["accessToken"].(string)
	product := must(proctest.API(ctx, gw.URL, "POST", "/v1/products", admin, map[string]any{
		"sku": "WATCH-1", "name": "Watched item", "category": "test", "priceCents": 100, "stock": 10}))["id"].(string)
	must(proctest.API(ctx, gw.URL, "POST", "/v1/users", "", map[string]any{"email": "w@example.com", "password": "password-123", "displayName": "W"}))
	tok := must(proctest.API(ctx, gw.URL, "POST", "/v1/auth:login", "", map[string]any{"email": "w@example.com", "password": "password-123"}))["accessToken"].(string)
	order := must(proctest.API(ctx, gw.URL, "POST", "/v1/orders", tok, map[string]any{"items": []any{map[string]any{"productId": product, "quantity": 1}}}))["id"].(string)

	// Sixteen watches, opened apart: keyless openings stick to one request
	// partition for 10ms, so spaced ones spread over both instances.
	const n = 16
	watches := make([]chan watchLine, n)
	for i := range watches {
		req, err := http.NewRequest("GET", gw.URL+"/v1/orders/"+order+":watch", nil)
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Authorization", "Bearer "+tok)
		resp, err := http.DefaultClient.Do(req)
		if err != nil || resp.StatusCode != 200 {
			t.Fatalf("watch %d = %v %v", i, resp, err)
		}
		t.Cleanup(func() { _ = resp.Body.Close() })
		lines := make(chan watchLine, 8)
		watches[i] = lines
		go func() {
			defer close(lines)
			sc := bufio.NewScanner(resp.Body)
			for sc.Scan() {
				var l watchLine
				if json.Unmarshal(sc.Bytes(), &l) == nil {
					lines <- l
				}
			}
		}()
		time.Sleep(30 * time.Millisecond)
	}
	next := func(i int, within time.Duration) (watchLine, bool) {
		select {
		case l, ok := <-watches[i]:
			return l, ok
		case <-time.After(within):
			t.Fatalf("watch %d: no line within %v", i, within)
			return watchLine{}, false
		}
	}
	for i := range watches {
		if l, ok := next(i, 10*time.Second); !ok || l.Result == nil || l.Result.Order.Status != "ORDER_STATUS_PENDING" {
			t.Fatalf("watch %d's first line = %+v", i, l)
		}
	}
	must(proctest.API(ctx, gw.URL, "POST", "/v1/orders/"+order+":updateStatus", admin, map[string]any{"status": "ORDER_STATUS_CONFIRMED"}))
	for i := range watches {
		if l, ok := next(i, 10*time.Second); !ok || l.Result == nil || l.Result.Order.Status != "ORDER_STATUS_CONFIRMED" {
			t.Fatalf("watch %d after CONFIRMED = %+v", i, l)
		}
	}

	orders[1].Kill()
	killed := time.Now()
	// Each watch either ends with UNAVAILABLE within 10s (orders-2 held
	// it) or stays open (orders-1 holds it); they are read side by side,
	// each with the time its line came.
	type after struct {
		line watchLine
		ok   bool
		at   time.Duration
	}
	got := make([]*after, n)
	var wg sync.WaitGroup
	for i := range watches {
		wg.Go(func() {
			select {
			case l, ok := <-watches[i]:
				got[i] = &after{l, ok, time.Since(killed)}
			case <-time.After(12 * time.Second):
			}
		})
	}
	wg.Wait()
	ended := make([]bool, n)
	var endedCount int
	for i, a := range got {
		if a == nil {
			continue // still open: orders-1 holds it
		}
		if !a.ok || a.line.Error == nil || a.line.Error.Code != 14 || a.at > 10*time.Second {
			t.Fatalf("watch %d %v after the kill: %+v (open %v), want an UNAVAILABLE error line within 10s", i, a.at, a.line, a.ok)
		}
		ended[i] = true
		endedCount++
		t.Logf("watch %d: UNAVAILABLE %v after SIGKILL: %s", i, a.at.Round(time.Millisecond), a.line.Error.Message)
	}
	if endedCount == 0 || endedCount == n {
		t.Fatalf("%d of %d watches ended after orders-2 was killed; want those it held, and only those", endedCount, n)
	}
	// The survivors see the next change, made through orders-1.
	must(proctest.API(ctx, gw.URL, "POST", "/v1/orders/"+order+":updateStatus", admin, map[string]any{"status": "ORDER_STATUS_SHIPPED"}))
	for i := range watches {
		if ended[i] {
			continue
		}
		if l, ok := next(i, 10*time.Second); !ok || l.Result == nil || l.Result.Order.Status != "ORDER_STATUS_SHIPPED" {
			t.Fatalf("surviving watch %d after SHIPPED = %+v", i, l)
		}
	}
	t.Logf("%d of %d watches were on the killed instance", endedCount, n)
}
