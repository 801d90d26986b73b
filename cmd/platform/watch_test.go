package main

import (
	"bufio"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
)

// watchLine is one line of GET /v1/orders/{id}:watch: a message, or the
// stream's error.
type watchLine struct {
	Result *struct {
		Order struct {
			ID     string `json:"id"`
			Status string `json:"status"`
			UserID string `json:"userId"`
		} `json:"order"`
	} `json:"result"`
	Error *struct {
		Code    int    `json:"code"`
		Message string `json:"message"`
	} `json:"error"`
}

// watch opens GET /v1/orders/{id}:watch and returns its status and a
// channel of its lines, closed at the end of the body.
func (s *shop) watch(id, token string) (int, <-chan watchLine) {
	s.t.Helper()
	req, err := http.NewRequest("GET", s.base+"/v1/orders/"+id+":watch", nil)
	if err != nil {
		s.t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		s.t.Fatal(err)
	}
	lines := make(chan watchLine, 16)
	go func() {
		defer close(lines)
		defer resp.Body.Close()
		sc := bufio.NewScanner(resp.Body)
		for sc.Scan() {
			var l watchLine
			if err := json.Unmarshal(sc.Bytes(), &l); err != nil {
				s.t.Errorf("watch line %q: %v", sc.Text(), err)
				return
			}
			lines <- l
		}
	}()
	return resp.StatusCode, lines
}

// next returns the next line of a watch, failing the test after 10s.
func nextLine(t *testing.T, lines <-chan watchLine) (watchLine, bool) {
	t.Helper()
	select {
	case l, ok := <-lines:
		return l, ok
	case <-time.After(10 * time.Second):
		t.Fatal("no watch line within 10s")
		return watchLine{}, false
	}
}

// The order's owner watches it over REST: the order as it is at once,
// then a line per status change an admin makes, and the stream ends after
// DELIVERED; the request timeout (5s here: logins hash passwords, slow on
// a busy machine) does not cut it. Another user gets NOT_FOUND, and an
// admin may watch any order.
func TestWatchOrderOverREST(t *testing.T) {
	s := startShop(t, t.TempDir(), func(o *options) { o.NoDemo = true; o.RequestTimeout = 5 * time.Second })
	admin := s.adminToken()
	_, tok := s.register("watcher@example.com")
	_, other := s.register("other@example.com")
	pid := s.product(admin, "WATCH-1", 100, 10)
	id := s.must(200, "POST", "/v1/orders", tok, map[string]any{"items": []any{map[string]any{"productId": pid, "quantity": 1}}})["id"].(string)

	code, lines := s.watch(id, tok)
	if code != 200 {
		t.Fatalf("watch = %d", code)
	}
	first, ok := nextLine(t, lines)
	if !ok || first.Result == nil || first.Result.Order.ID != id || first.Result.Order.Status != "ORDER_STATUS_PENDING" {
		t.Fatalf("first line = %+v, want the pending order", first)
	}
	_, adminLines := s.watch(id, admin)
	if l, ok := nextLine(t, adminLines); !ok || l.Result == nil || l.Result.Order.ID != id {
		t.Fatalf("admin's first line = %+v", l)
	}
	for i, st := range []string{"ORDER_STATUS_CONFIRMED", "ORDER_STATUS_SHIPPED", "ORDER_STATUS_DELIVERED"} {
		if i == 1 {
			time.Sleep(5500 * time.Millisecond) // past the request timeout
		}
		s.must(200, "POST", "/v1/orders/"+id+":updateStatus", admin, map[string]any{"status": st})
		l, ok := nextLine(t, lines)
		if !ok || l.Result == nil || l.Result.Order.Status != st {
			t.Fatalf("line after -> %s = %+v (open %v)", st, l, ok)
		}
	}
	if l, ok := nextLine(t, lines); ok {
		t.Fatalf("after DELIVERED the stream goes on: %+v", l)
	}

	code, otherLines := s.watch(id, other)
	l, ok := nextLine(t, otherLines)
	if code != http.StatusNotFound || !ok || l.Error == nil || !strings.Contains(l.Error.Message, "not found") {
		t.Fatalf("another user's watch = %d %+v, want 404 and a not-found error", code, l)
	}
}

// A watch outlives the token check made when it opened: it ends with
// UNAUTHENTICATED once the user's tokens are revoked (a new password), and
// when its token expires.
func TestWatchEndsWithItsToken(t *testing.T) {
	t.Run("revoked", func(t *testing.T) {
		s := startShop(t, t.TempDir(), func(o *options) { o.NoDemo = true; o.RequestTimeout = 5 * time.Second })
		admin := s.adminToken()
		_, tok := s.register("revoked-watcher@example.com")
		pid := s.product(admin, "WATCH-R", 100, 10)
		id := s.must(200, "POST", "/v1/orders", tok, map[string]any{"items": []any{map[string]any{"productId": pid, "quantity": 1}}})["id"].(string)
		_, lines := s.watch(id, tok)
		if l, ok := nextLine(t, lines); !ok || l.Result == nil {
			t.Fatalf("first line = %+v", l)
		}
		start := time.Now()
		s.must(200, "PATCH", "/v1/users/me", tok, map[string]any{"password": "new-password-456"})
		l, ok := nextLine(t, lines)
		if !ok || l.Error == nil || l.Error.Code != int(codes.Unauthenticated) || !strings.Contains(l.Error.Message, "revoked") {
			t.Fatalf("line after the password change = %+v (open %v), want an UNAUTHENTICATED revocation", l, ok)
		}
		t.Logf("watch ended %v after the password change", time.Since(start).Round(time.Millisecond))
		if l, ok := nextLine(t, lines); ok {
			t.Fatalf("the watch goes on after its revocation: %+v", l)
		}
	})
	t.Run("expired", func(t *testing.T) {
		const ttl = 6 * time.Second
		s := startShop(t, t.TempDir(), func(o *options) { o.NoDemo = true; o.RequestTimeout = 5 * time.Second; o.TokenTTL = ttl })
		admin := s.adminToken()
		pid := s.product(admin, "WATCH-E", 100, 10)
		_, tok := s.register("expiring-watcher@example.com")
		issued := time.Now()
		id := s.must(200, "POST", "/v1/orders", tok, map[string]any{"items": []any{map[string]any{"productId": pid, "quantity": 1}}})["id"].(string)
		_, lines := s.watch(id, tok)
		if l, ok := nextLine(t, lines); !ok || l.Result == nil {
			t.Fatalf("first line = %+v", l)
		}
		l, ok := nextLine(t, lines)
		ended := time.Since(issued)
		if !ok || l.Error == nil || l.Error.Code != int(codes.DeadlineExceeded) {
			t.Fatalf("line at the token's expiry = %+v (open %v), want DEADLINE_EXCEEDED", l, ok)
		}
		if ended > ttl+2*time.Second || ended < ttl-2*time.Second {
			t.Fatalf("the watch ended %v after its token was issued, which expired after %v", ended, ttl)
		}
		t.Logf("watch ended %v after its token was issued (ttl %v): %s", ended.Round(time.Millisecond), ttl, l.Error.Message)
	})
}

// One user may hold --max-streams-per-user watches at once; another is
// refused 429 until one of them ends, and other users are not affected.
func TestWatchesPerUserBounded(t *testing.T) {
	s := startShop(t, t.TempDir(), func(o *options) { o.NoDemo = true; o.RequestTimeout = 5 * time.Second; o.MaxStreamsPerUser = 2 })
	admin := s.adminToken()
	_, tok := s.register("many-watches@example.com")
	pid := s.product(admin, "WATCH-N", 100, 10)
	id := s.must(200, "POST", "/v1/orders", tok, map[string]any{"items": []any{map[string]any{"productId": pid, "quantity": 1}}})["id"].(string)
	var open []<-chan watchLine
	for range 2 {
		code, lines := s.watch(id, tok)
		if l, ok := nextLine(t, lines); code != 200 || !ok || l.Result == nil {
			t.Fatalf("watch = %d %+v", code, l)
		}
		open = append(open, lines)
	}
	if code, _ := s.watch(id, tok); code != http.StatusTooManyRequests {
		t.Fatalf("a third watch of the user = %d, want 429", code)
	}
	// Nor through grpc-gateway's POST form of a GET route, which the
	// gateway does not serve.
	form := http.Header{"Content-Type": {"application/x-www-form-urlencoded"}}
	if code, raw, _ := s.call("POST", "/v1/orders/"+id+":watch", tok, form, ""); code == http.StatusOK {
		t.Fatalf("POST form of the watch = %d %s, want it refused", code, raw)
	}
	if code, lines := s.watch(id, admin); code != 200 {
		t.Fatalf("the admin's watch beside them = %d, want 200", code)
	} else if l, ok := nextLine(t, lines); !ok || l.Result == nil {
		t.Fatalf("the admin's first line = %+v", l)
	}
	s.must(200, "POST", "/v1/orders/"+id+":cancel", tok, nil)
	for i, lines := range open {
		for {
			l, ok := nextLine(t, lines)
			if !ok {
				break
			}
			if l.Result == nil || l.Result.Order.Status != "ORDER_STATUS_CANCELLED" {
				t.Fatalf("watch %d: line %+v, want the cancelled order", i, l)
			}
		}
	}
	code, lines := s.watch(id, tok) // both ended: a slot is free again
	if l, ok := nextLine(t, lines); code != 200 || !ok || l.Result == nil || l.Result.Order.Status != "ORDER_STATUS_CANCELLED" {
		t.Fatalf("a watch after the others ended = %d %+v", code, l)
	}
}
