package main

import (
	"encoding/json"
	"fmt"
	"maps"
	"net/http"
	"strings"
	"testing"
)

// schemaDoc is what the limits test reads of /openapi.json: each
// definition's required fields and the limits of its properties.
type schemaDoc struct {
	Definitions map[string]struct {
		Required   []string `json:"required"`
		Properties map[string]struct {
			MaxLength   *int     `json:"maxLength"`
			MinLength   *int     `json:"minLength"`
			Maximum     *float64 `json:"maximum"`
			Minimum     *float64 `json:"minimum"`
			MaxItems    *int     `json:"maxItems"`
			MinItems    *int     `json:"minItems"`
			Description string   `json:"description"`
		} `json:"properties"`
	} `json:"definitions"`
}

// The required fields and limits /openapi.json states are the ones the API
// enforces: a body without a required field, or one past a limit, answers
// 400 INVALID_ARGUMENT, and a value at the limit is accepted. Each case
// starts from a valid body and changes one field, with the limit read from
// the served document.
func TestOpenAPILimitsHold(t *testing.T) {
	s := startShop(t, t.TempDir(), func(o *options) { o.NoDemo = true })
	_, raw, _ := s.call("GET", "/openapi.json", "", nil, nil)
	var doc schemaDoc
	if err := json.Unmarshal(raw, &doc); err != nil {
		t.Fatal(err)
	}
	admin := s.adminToken()
	_, user := s.register("limits@example.com")
	pid := s.product(admin, "LIMITS-1", 100, 1_000_000) // orders at the quantity limit never run out
	n := 0
	unique := func() string { n++; return fmt.Sprint(n) }

	type route struct {
		method, path, token, def string
		body                     func() map[string]any // a valid body
	}
	routes := []route{
		{"POST", "/v1/users", "", "CreateUserRequest", func() map[string]any {
			return map[string]any{"email": "u" + unique() + "@example.com", "password": "correct-horse", "displayName": "U"}
		}},
		{"POST", "/v1/products", admin, "CreateProductRequest", func() map[string]any {
			return map[string]any{"sku": "SKU-" + unique(), "name": "N", "description": "D", "category": "C", "priceCents": "100", "stock": "1"}
		}},
		{"PATCH", "/v1/products/" + pid, admin, "UpdateProductBody", func() map[string]any {
			return map[string]any{"name": "N", "description": "D", "category": "C", "priceCents": "100"}
		}},
		{"POST", "/v1/products/" + pid + ":adjustStock", admin, "AdjustStockBody", func() map[string]any {
			return map[string]any{"delta": "1"}
		}},
		{"POST", "/v1/orders", user, "CreateOrderRequest", func() map[string]any {
			return map[string]any{"items": []any{map[string]any{"productId": pid, "quantity": 1}}}
		}},
		{"PATCH", "/v1/users/me", user, "UpdateUserBody", func() map[string]any {
			return map[string]any{"displayName": "U"}
		}},
	}
	// The body schemas name the request message; the test covers each
	// limit the document states on them.
	checked := 0
	send := func(r route, body map[string]any) (int, string) {
		t.Helper()
		code, raw, _ := s.call(r.method, r.path, r.token, nil, body)
		return code, string(raw)
	}
	expect := func(r route, what string, body map[string]any, bad bool) {
		t.Helper()
		code, raw := send(r, body)
		if bad && (code != http.StatusBadRequest || !strings.Contains(raw, "INVALID_ARGUMENT")) {
			t.Errorf("%s %s with %s: %d %s, want 400 INVALID_ARGUMENT as the document says", r.method, r.path, what, code, raw)
		}
		if !bad && code >= 300 {
			t.Errorf("%s %s with %s: %d %s, but the document allows it", r.method, r.path, what, code, raw)
		}
		checked++
	}
	for _, r := range routes {
		def, ok := doc.Definitions[r.def]
		if !ok {
			t.Fatalf("no definition %s", r.def)
		}
		if code, raw := send(r, r.body()); code >= 400 {
			t.Fatalf("%s %s with a valid body: %d %s", r.method, r.path, code, raw)
		}
		for _, f := range def.Required {
			b := r.body()
			delete(b, f)
			expect(r, "no "+f, b, true)
		}
		for name, p := range def.Properties {
			with := func(v any) map[string]any { b := maps.Clone(r.body()); b[name] = v; return b }
			text := func(n int) string {
				if n <= 0 {
					return ""
				}
				if name == "sku" {
					return "S" + strings.Repeat("K", n-1)
				}
				return strings.Repeat("a", n)
			}
			// Values at a limit are sent too, except where one would
			// change what the next cases need: an email that long needs a
			// valid address that long, a new password would revoke the
			// test's token, and a stock adjustment at the limit depends on
			// the stock.
			atLimit := name != "email" && !(name == "password" && r.method == "PATCH") && name != "delta"
			if p.MaxLength != nil && atLimit {
				expect(r, fmt.Sprintf("%s of %d characters", name, *p.MaxLength), with(text(*p.MaxLength)), false)
			}
			if p.MaxLength != nil {
				expect(r, fmt.Sprintf("%s of %d characters", name, *p.MaxLength+1), with(text(*p.MaxLength+1)), true)
			}
			if p.MinLength != nil && *p.MinLength > 0 {
				if atLimit {
					expect(r, fmt.Sprintf("%s of %d characters", name, *p.MinLength), with(text(*p.MinLength)), false)
				}
				expect(r, fmt.Sprintf("%s of %d characters", name, *p.MinLength-1), with(text(*p.MinLength-1)), true)
			}
			if p.Maximum != nil {
				if atLimit {
					expect(r, fmt.Sprintf("%s %v", name, int64(*p.Maximum)), with(fmt.Sprint(int64(*p.Maximum))), false)
				}
				expect(r, fmt.Sprintf("%s %v", name, int64(*p.Maximum)+1), with(fmt.Sprint(int64(*p.Maximum)+1)), true)
			}
			if p.Minimum != nil {
				if atLimit {
					expect(r, fmt.Sprintf("%s %v", name, int64(*p.Minimum)), with(fmt.Sprint(int64(*p.Minimum))), false)
				}
				expect(r, fmt.Sprintf("%s %v", name, int64(*p.Minimum)-1), with(fmt.Sprint(int64(*p.Minimum)-1)), true)
			}
			// A minimum of 0 does not survive the generator (proto3 drops
			// zero values): the description says "not negative".
			if strings.Contains(p.Description, "not negative") {
				if atLimit {
					expect(r, name+" 0", with("0"), false)
				}
				expect(r, name+" -1", with("-1"), true)
			}
			// Byte limits on text: a password of characters that take two
			// bytes each, within the characters, past the bytes.
			if name == "password" && strings.Contains(p.Description, "bytes") && p.MaxLength != nil {
				expect(r, "a password of multi-byte characters past the byte limit", with(strings.Repeat("é", *p.MaxLength/2+1)), true)
			}
			if p.MaxItems != nil || p.MinItems != nil {
				items := func(k int) []any {
					out := make([]any, k)
					for i := range out {
						out[i] = map[string]any{"productId": fmt.Sprint("p_", i), "quantity": 1}
					}
					return out
				}
				if p.MaxItems != nil {
					expect(r, fmt.Sprintf("%d %s", *p.MaxItems+1, name), with(items(*p.MaxItems+1)), true)
				}
				if p.MinItems != nil && *p.MinItems > 0 {
					expect(r, fmt.Sprintf("%d %s", *p.MinItems-1, name), with(items(*p.MinItems-1)), true)
				}
			}
		}
	}
	// An order item's limits, inside a CreateOrderRequest.
	item := doc.Definitions["CreateOrderItem"]
	orders := routes[4]
	for _, f := range item.Required {
		it := map[string]any{"productId": pid, "quantity": 1}
		delete(it, f)
		expect(orders, "an item without "+f, map[string]any{"items": []any{it}}, true)
	}
	if q := item.Properties["quantity"]; q.Maximum != nil && q.Minimum != nil {
		expect(orders, "an item of quantity above the maximum", map[string]any{"items": []any{map[string]any{"productId": pid, "quantity": int(*q.Maximum) + 1}}}, true)
		expect(orders, "an item of quantity below the minimum", map[string]any{"items": []any{map[string]any{"productId": pid, "quantity": int(*q.Minimum) - 1}}}, true)
	}
	if checked < 30 {
		t.Fatalf("checked %d limits: the document states fewer than expected", checked)
	}
	t.Logf("checked %d required fields and limits against the API", checked)
}

// The limits /openapi.json states for path and query parameters are the
// ones the API enforces: a value at the limit is accepted, one past it
// answers 400 INVALID_ARGUMENT. 64-bit integers (minPriceCents) are JSON
// strings: their limits are in words only.
func TestOpenAPIParameterLimitsHold(t *testing.T) {
	s := startShop(t, t.TempDir(), func(o *options) { o.NoDemo = true })
	_, raw, _ := s.call("GET", "/openapi.json", "", nil, nil)
	var doc struct {
		Paths map[string]map[string]struct {
			Parameters []struct {
				Name, In             string
				MaxLength, MinLength *int
				Minimum, Maximum     *float64
			}
		}
	}
	if err := json.Unmarshal(raw, &doc); err != nil {
		t.Fatal(err)
	}
	admin := s.adminToken()
	type param = struct {
		Name, In             string
		MaxLength, MinLength *int
		Minimum, Maximum     *float64
	}
	find := func(path, method, name string) param {
		for _, p := range doc.Paths[path][method].Parameters {
			if p.Name == name {
				return p
			}
		}
		t.Fatalf("%s %s: no parameter %s", method, path, name)
		return param{}
	}
	status := func(path string) int {
		code, _ := s.do("GET", path, admin, nil)
		return code
	}
	for _, name := range []string{"query", "category"} {
		p := find("/v1/products", "get", name)
		if p.MaxLength == nil {
			t.Fatalf("%s: no maxLength", name)
		}
		if code := status("/v1/products?" + name + "=" + strings.Repeat("a", *p.MaxLength)); code != 200 {
			t.Errorf("%s at maxLength %d = %d, want 200", name, *p.MaxLength, code)
		}
		if code := status("/v1/products?" + name + "=" + strings.Repeat("a", *p.MaxLength+1)); code != 400 {
			t.Errorf("%s past maxLength %d = %d, want 400", name, *p.MaxLength, code)
		}
	}
	for _, route := range []struct{ path, method, url string }{
		{"/v1/products", "get", "/v1/products?pageSize="},
		{"/v1/users", "get", "/v1/users?pageSize="},
		{"/v1/users/{userId}/orders", "get", "/v1/users/me/orders?pageSize="},
	} {
		p := find(route.path, route.method, "pageSize")
		if p.Minimum == nil {
			t.Fatalf("%s pageSize: no minimum", route.path)
		}
		if code := status(route.url + fmt.Sprint(*p.Minimum)); code != 200 {
			t.Errorf("%s pageSize at its minimum = %d, want 200", route.path, code)
		}
		if code := status(route.url + fmt.Sprint(*p.Minimum-1)); code != 400 {
			t.Errorf("%s pageSize below its minimum = %d, want 400", route.path, code)
		}
	}
	p := find("/v1/orders/{id}", "get", "id")
	if p.MaxLength == nil || p.MinLength == nil || *p.MinLength != 1 {
		t.Fatalf("order id limits = %+v", p)
	}
	if code := status("/v1/orders/" + strings.Repeat("o", *p.MaxLength)); code != 404 {
		t.Errorf("order id at maxLength = %d, want 404 (valid, unknown)", code)
	}
	if code := status("/v1/orders/" + strings.Repeat("o", *p.MaxLength+1)); code != 400 {
		t.Errorf("order id past maxLength = %d, want 400", code)
	}
}
