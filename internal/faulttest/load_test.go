package faulttest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/kgrpc/platform/internal/proctest"
)

const (
	// attemptTimeout bounds one HTTP attempt; the gateway answers 504 after
	// its 10s request timeout.
	attemptTimeout = 12 * time.Second
	// opDeadline bounds the retries of one logical operation.
	opDeadline = 60 * time.Second
)

// client calls the gateway the way a careful client does: each logical
// operation has its own Idempotency-Key, and an answer that says nothing
// about the outcome (502, 503, 504, 429, a connection error or a timeout)
// is retried with the same key until a definite one comes.
type client struct {
	gw         string
	unresolved atomic.Int64 // operations with no definite answer by opDeadline
	retries    atomic.Int64

	mu      sync.Mutex
	answers map[string]int    // "<what> <status>" -> count, for the log
	samples map[string]string // "<what> <status>" -> the message of one such answer
	okAt    map[string]int64  // what -> unix nanoseconds of its latest 200
}

// definite reports whether an answer tells the operation's outcome.
func definite(code int, err error) bool {
	if err != nil {
		return false
	}
	switch code {
	case http.StatusTooManyRequests, http.StatusBadGateway, http.StatusServiceUnavailable, http.StatusGatewayTimeout:
		return false
	}
	return true
}

// do runs one logical operation named what and returns its definite answer,
// or ok false when none came within opDeadline (or ctx ended).
func (c *client) do(ctx context.Context, what, method, path, token string, body any) (code int, out map[string]any, ok bool) {
	key := newKey()
	deadline := time.Now().Add(opDeadline)
	for attempt := 0; ; attempt++ {
		actx, cancel := context.WithTimeout(ctx, attemptTimeout)
		var err error
		code, out, err = proctest.API(actx, c.gw, method, path, token, body, "Idempotency-Key", key)
		cancel()
		if definite(code, err) {
			c.count(what, code)
			if code != http.StatusOK {
				c.sample(what, code, out)
			}
			if code == http.StatusOK {
				c.mu.Lock()
				if c.okAt == nil {
					c.okAt = map[string]int64{}
				}
				c.okAt[what] = time.Now().UnixNano()
				c.mu.Unlock()
			}
			return code, out, true
		}
		if ctx.Err() != nil || time.Now().After(deadline) {
			c.count(what, -1)
			c.unresolved.Add(1)
			return code, out, false
		}
		c.retries.Add(1)
		time.Sleep(200 * time.Millisecond)
	}
}

func (c *client) count(what string, code int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.answers == nil {
		c.answers = map[string]int{}
	}
	c.answers[fmt.Sprintf("%s %d", what, code)]++
}

// stalls returns, for each kind of operation that succeeded at least once,
// how long ago it last did, as of now.
func (c *client) stalls(now time.Time) map[string]time.Duration {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := map[string]time.Duration{}
	for what, at := range c.okAt {
		out[what] = now.Sub(time.Unix(0, at))
	}
	return out
}

func (c *client) sample(what string, code int, out map[string]any) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.samples == nil {
		c.samples = map[string]string{}
	}
	c.samples[fmt.Sprintf("%s %d", what, code)] = fmt.Sprint(out["message"])
}

func newKey() string {
	var b [12]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// order is an acknowledged order.
type order struct {
	id, user string
	qty      int64
}

// tally is what the workers had acknowledged.
type tally struct {
	mu           sync.Mutex
	adjustOK     int64
	orders       []order
	rolledBack   int // orders refused because their first attempt was rolled back
	cancelsOK    int
	confirmsOK   int
	users        map[string]string // user id -> display name of the last acknowledged update
	usersCreated int
	userUpdates  int
	products     map[string]int64 // live product id -> price of the last acknowledged update
	prodCreated  int
	prodUpdates  int
	prodDeletes  int
}

// adjustWorker adds 1 to product's stock, one operation after another.
func (c *client) adjustWorker(ctx context.Context, stop <-chan struct{}, tl *tally, admin, product string) {
	for !stopped(stop) {
		code, _, ok := c.do(ctx, "adjustStock", "POST", "/v1/products/"+product+":adjustStock", admin, map[string]any{"delta": 1})
		if ok && code == http.StatusOK {
			tl.mu.Lock()
			tl.adjustOK++
			tl.mu.Unlock()
		}
	}
}

// orderWorker places orders of product for the customer, cancels every
// third and has the admin confirm every fourth.
func (c *client) orderWorker(ctx context.Context, stop <-chan struct{}, tl *tally, admin, user, token, product string) {
	for i := 0; !stopped(stop); i++ {
		qty := int64(1 + i%3)
		code, body, ok := c.do(ctx, "createOrder", "POST", "/v1/orders", token, map[string]any{
			"items": []any{map[string]any{"productId": product, "quantity": qty}}})
		if ok && code == http.StatusBadRequest && strings.Contains(fmt.Sprint(body["message"]), "rolled back") {
			// ordersvc's answer to a retry whose first attempt failed
			// mid-way and was undone: no order, place it again with a new
			// key (the next one).
			tl.mu.Lock()
			tl.rolledBack++
			tl.mu.Unlock()
			continue
		}
		if !ok || code != http.StatusOK {
			continue
		}
		id, _ := body["id"].(string)
		tl.mu.Lock()
		tl.orders = append(tl.orders, order{id, user, qty})
		tl.mu.Unlock()
		switch {
		case i%3 == 0:
			if code, _, ok := c.do(ctx, "cancelOrder", "POST", "/v1/orders/"+id+":cancel", token, map[string]any{}); ok && code == http.StatusOK {
				tl.mu.Lock()
				tl.cancelsOK++
				tl.mu.Unlock()
			}
		case i%4 == 1:
			if code, _, ok := c.do(ctx, "updateStatus", "POST", "/v1/orders/"+id+":updateStatus", admin, map[string]any{"status": "ORDER_STATUS_CONFIRMED"}); ok && code == http.StatusOK {
				tl.mu.Lock()
				tl.confirmsOK++
				tl.mu.Unlock()
			}
		}
	}
}

// userWorker registers users and renames each once.
func (c *client) userWorker(ctx context.Context, stop <-chan struct{}, tl *tally, admin string) {
	for i := 0; !stopped(stop); i++ {
		code, body, ok := c.do(ctx, "createUser", "POST", "/v1/users", "", map[string]any{
			"email": fmt.Sprintf("faults-u%d@example.com", i), "password": "password-123", "displayName": "Fault user"})
		if !ok || code != http.StatusOK {
			continue
		}
		id, _ := body["id"].(string)
		tl.mu.Lock()
		tl.usersCreated++
		tl.users[id] = "Fault user"
		tl.mu.Unlock()
		name := fmt.Sprintf("Renamed %d", i)
		if code, _, ok := c.do(ctx, "updateUser", "PATCH", "/v1/users/"+id, admin, map[string]any{"displayName": name}); ok && code == http.StatusOK {
			tl.mu.Lock()
			tl.userUpdates++
			tl.users[id] = name
			tl.mu.Unlock()
		}
	}
}

// productWorker creates products, reprices each and deletes every fourth.
func (c *client) productWorker(ctx context.Context, stop <-chan struct{}, tl *tally, admin string) {
	for i := 0; !stopped(stop); i++ {
		code, body, ok := c.do(ctx, "createProduct", "POST", "/v1/products", admin, map[string]any{
			"sku": fmt.Sprintf("FAULT-%d", i), "name": fmt.Sprintf("Faultitem %d", i), "category": "faults", "priceCents": 100, "stock": 10})
		if !ok || code != http.StatusOK {
			continue
		}
		id, _ := body["id"].(string)
		tl.mu.Lock()
		tl.prodCreated++
		tl.products[id] = 100
		tl.mu.Unlock()
		price := int64(200 + i)
		if code, _, ok := c.do(ctx, "updateProduct", "PATCH", "/v1/products/"+id, admin, map[string]any{"priceCents": price}); ok && code == http.StatusOK {
			tl.mu.Lock()
			tl.prodUpdates++
			tl.products[id] = price
			tl.mu.Unlock()
		}
		if i%4 == 0 {
			if code, _, ok := c.do(ctx, "deleteProduct", "DELETE", "/v1/products/"+id, admin, nil); ok && code == http.StatusOK {
				tl.mu.Lock()
				tl.prodDeletes++
				delete(tl.products, id)
				tl.mu.Unlock()
			}
		}
	}
}

func stopped(stop <-chan struct{}) bool {
	select {
	case <-stop:
		return true
	default:
		return false
	}
}
