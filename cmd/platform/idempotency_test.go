package main

import (
	"encoding/json"
	"net/http"
	"strings"
	"sync"
	"testing"
)

// send makes a request with an Idempotency-Key and returns the status, the
// raw body and whether the answer was a replay.
func (s *shop) send(method, path, token, key string, body any) (int, string, bool) {
	s.t.Helper()
	code, raw, h := s.call(method, path, token, http.Header{"Idempotency-Key": {key}}, body)
	return code, string(raw), h.Get("Idempotency-Replayed") == "true"
}

// TestIdempotencyKeyOnEveryMutatingRoute sends each mutating route ten
// times at once with one Idempotency-Key: the effect happens once, and all
// ten get the first answer, nine of them as replays. The same key with
// another body is refused with a 400 that says so, and changes nothing.
func TestIdempotencyKeyOnEveryMutatingRoute(t *testing.T) {
	s := startShop(t, t.TempDir(), func(o *options) { o.NoDemo = true })
	admin := s.adminToken()
	_, alice := s.register("alice@example.com")
	stocked := s.product(admin, "IDEM-1", 250, 100)
	doomed := s.product(admin, "IDEM-2", 100, 1)
	spare := s.product(admin, "IDEM-5", 100, 1)
	order := func() string {
		return s.must(200, "POST", "/v1/orders", alice, map[string]any{"items": []any{map[string]any{"productId": stocked, "quantity": 1}}})["id"].(string)
	}
	toCancel, toConfirm := order(), order()

	routes := []struct {
		name         string
		method, path string
		token        string
		body, other  any
		// otherPath, when set, is the path of the different request.
		otherPath string
		// effect checks, after the ten calls, that the change happened once.
		effect func(t *testing.T, answer map[string]any)
	}{
		{name: "create user", method: "POST", path: "/v1/users",
			body:  map[string]any{"email": "bob@example.com", "password": "password-123", "displayName": "Bob"},
			other: map[string]any{"email": "carol@example.com", "password": "password-123", "displayName": "Carol"}},
		{name: "update user", method: "PATCH", path: "/v1/users/me", token: alice,
			body: map[string]any{"displayName": "Alice A."}, other: map[string]any{"displayName": "Alice B."}},
		{name: "create product", method: "POST", path: "/v1/products", token: admin,
			body:  map[string]any{"sku": "IDEM-3", "name": "Three", "priceCents": 300, "stock": 3},
			other: map[string]any{"sku": "IDEM-4", "name": "Four", "priceCents": 400, "stock": 4}},
		{name: "update product", method: "PATCH", path: "/v1/products/" + stocked, token: admin,
			body: map[string]any{"priceCents": 260}, other: map[string]any{"priceCents": 270}},
		{name: "adjust stock", method: "POST", path: "/v1/products/" + stocked + ":adjustStock", token: admin,
			body: map[string]any{"delta": 5}, other: map[string]any{"delta": 6},
			effect: func(t *testing.T, _ map[string]any) {
				// 100, less the two orders, plus 5 once.
				if got := s.stock(stocked); got != 103 {
					t.Errorf("stock = %d, want 103: adjustStock(+5) applied %d times", got, (got-98)/5)
				}
			}},
		{name: "delete product", method: "DELETE", path: "/v1/products/" + doomed, token: admin,
			otherPath: "/v1/products/" + spare},
		{name: "create order", method: "POST", path: "/v1/orders", token: alice,
			body:  map[string]any{"items": []any{map[string]any{"productId": stocked, "quantity": 2}}},
			other: map[string]any{"items": []any{map[string]any{"productId": stocked, "quantity": 3}}},
			effect: func(t *testing.T, _ map[string]any) {
				if got := s.stock(stocked); got != 101 {
					t.Errorf("stock = %d, want 101 (one order of 2)", got)
				}
			}},
		{name: "cancel order", method: "POST", path: "/v1/orders/" + toCancel + ":cancel", token: alice,
			otherPath: "/v1/orders/" + toConfirm + ":cancel"},
		{name: "update order status", method: "POST", path: "/v1/orders/" + toConfirm + ":updateStatus", token: admin,
			body:  map[string]any{"status": "ORDER_STATUS_CONFIRMED"},
			other: map[string]any{"status": "ORDER_STATUS_SHIPPED"}},
	}
	for _, r := range routes {
		t.Run(r.name, func(t *testing.T) {
			key := "idem-" + strings.ReplaceAll(r.name, " ", "-")
			type answer struct {
				code     int
				body     string
				replayed bool
			}
			answers := make([]answer, 10)
			var wg sync.WaitGroup
			for i := range answers {
				wg.Go(func() {
					a := &answers[i]
					a.code, a.body, a.replayed = s.send(r.method, r.path, r.token, key, r.body)
				})
			}
			wg.Wait()
			replays := 0
			for i, a := range answers {
				if a.code != http.StatusOK {
					t.Fatalf("answer %d: %d %s", i, a.code, a.body)
				}
				if a.body != answers[0].body {
					t.Errorf("answer %d differs:\n%s\nfirst:\n%s", i, a.body, answers[0].body)
				}
				if a.replayed {
					replays++
				}
			}
			if replays != len(answers)-1 {
				t.Errorf("%d answers were replays, want %d (one run)", replays, len(answers)-1)
			}
			if r.effect != nil {
				var first map[string]any
				_ = json.Unmarshal([]byte(answers[0].body), &first)
				r.effect(t, first)
			}

			otherPath := r.path
			if r.otherPath != "" {
				otherPath = r.otherPath
			}
			code, body, _ := s.send(r.method, otherPath, r.token, key, r.other)
			if code != http.StatusBadRequest || !strings.Contains(body, "FAILED_PRECONDITION") || !strings.Contains(body, "different request") {
				t.Errorf("same key, other body: %d %s, want 400 FAILED_PRECONDITION about a different request", code, body)
			}
			if r.effect != nil {
				r.effect(t, nil) // unchanged by the refused request
			}
			// A new key is a new operation.
			if r.name == "adjust stock" {
				if code, body, _ := s.send(r.method, r.path, r.token, key+"-2", r.body); code != http.StatusOK {
					t.Fatalf("new key: %d %s", code, body)
				}
				if got := s.stock(stocked); got != 108 {
					t.Errorf("stock = %d after a second key, want 108", got)
				}
				s.must(200, "POST", r.path, r.token, map[string]any{"delta": -5}) // back to 103 for the order case
			}
		})
	}
	t.Run("keys are scoped to the caller", func(t *testing.T) {
		_, bob := s.register("dave@example.com")
		body := map[string]any{"items": []any{map[string]any{"productId": stocked, "quantity": 1}}}
		_, a, _ := s.send("POST", "/v1/orders", alice, "shared-key", body)
		_, b, replayed := s.send("POST", "/v1/orders", bob, "shared-key", body)
		if a == b || replayed {
			t.Errorf("two users' orders with one key: %s and %s (replayed %v), want two orders", a, b, replayed)
		}
	})
	t.Run("an error answer is replayed", func(t *testing.T) {
		body := map[string]any{"delta": -1000}
		code1, b1, r1 := s.send("POST", "/v1/products/"+stocked+":adjustStock", admin, "too-much", body)
		code2, b2, r2 := s.send("POST", "/v1/products/"+stocked+":adjustStock", admin, "too-much", body)
		if code1 != http.StatusBadRequest || code2 != code1 || b1 != b2 || r1 || !r2 {
			t.Errorf("answers %d %s (replayed %v), then %d %s (replayed %v): want one 400 FAILED_PRECONDITION, replayed", code1, b1, r1, code2, b2, r2)
		}
	})
	t.Run("overlong key", func(t *testing.T) {
		code, body, _ := s.send("POST", "/v1/products/"+stocked+":adjustStock", admin, strings.Repeat("k", 201), map[string]any{"delta": 1})
		if code != http.StatusBadRequest || !strings.Contains(body, "longer than") {
			t.Errorf("201-byte key: %d %s, want 400", code, body)
		}
	})
	// The requests refused above changed nothing.
	s.must(200, "GET", "/v1/products/"+spare, "", nil)
	if o := s.must(200, "GET", "/v1/orders/"+toConfirm, alice, nil); o["status"] != "ORDER_STATUS_CONFIRMED" {
		t.Errorf("order %s is %v, want ORDER_STATUS_CONFIRMED", toConfirm, o["status"])
	}
}
