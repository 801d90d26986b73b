package main

// End-to-end tests of the shop through its REST API, against the real
// platform: the embedded broker (or KAFKA_BROKERS), the three services on
// SQLite files, the gateway, all talking over Kafka.

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kgrpc/platform/internal/app"
	"github.com/kgrpc/platform/internal/auth"
	"github.com/kgrpc/platform/kafkatransport"
	"github.com/kgrpc/platform/kafkatransport/kafkatest"
)

const (
	adminEmail    = "admin@example.com"
	adminPassword = "admin-pass-123"
)

// shop is a running platform.
type shop struct {
	t           *testing.T
	base        string
	topicPrefix string
	stop        func()
}

// startShop runs the platform on dataDir until the test ends or stop is
// called. With KAFKA_BROKERS set it uses that cluster, with a topic prefix
// of its own.
func startShop(t *testing.T, dataDir string, mod ...func(*options)) *shop {
	t.Helper()
	o := options{Settings: app.Settings{
		HTTPAddr:      "127.0.0.1:0",
		DataDir:       dataDir,
		AdminEmail:    adminEmail,
		AdminPassword: adminPassword,
		LogLevel:      "warn",
		LogFormat:     "text",
		Brokers:       os.Getenv("KAFKA_BROKERS"),
	}}
	if o.Brokers != "" {
		// A shared cluster: topics of their own per data directory, so
		// tests do not see each other's calls and a restart on the same
		// directory finds its own.
		o.TopicPrefix = fmt.Sprintf("e2e-%x-", sha256.Sum256([]byte(dataDir)))[:20] + "-"
		kafkatest.CleanupTopics(t, o.Brokers, o.TopicPrefix)
	}
	for _, m := range mod {
		m(&o)
	}
	addr := make(chan string, 1)
	o.listening = func(a string) { addr <- a }
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	logger := slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelWarn}))
	go func() { done <- run(ctx, o, logger) }()
	s := &shop{t: t, topicPrefix: o.TopicPrefix}
	select {
	case a := <-addr:
		s.base = "http://" + a
	case err := <-done:
		cancel()
		t.Fatalf("platform exited: %v", err)
	case <-time.After(60 * time.Second):
		cancel()
		t.Fatal("platform not listening after 60s")
	}
	var once sync.Once
	s.stop = func() {
		once.Do(func() {
			cancel()
			select {
			case err := <-done:
				if err != nil {
					t.Errorf("platform run: %v", err)
				}
			case <-time.After(90 * time.Second):
				t.Error("platform did not stop within 90s")
			}
		})
	}
	t.Cleanup(s.stop)
	s.waitReady()
	return s
}

// testWriter sends log lines to the test log.
type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

func (s *shop) waitReady() {
	s.t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		code, body := s.do("GET", "/readyz", "", nil)
		if code == http.StatusOK {
			return
		}
		if time.Now().After(deadline) {
			s.t.Fatalf("not ready after 60s: %d %v", code, body)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// do makes a request and decodes a JSON object response.
func (s *shop) do(method, path, token string, body any) (int, map[string]any) {
	s.t.Helper()
	code, raw, _ := s.call(method, path, token, nil, body)
	var out map[string]any
	if len(raw) > 0 {
		if err := json.Unmarshal(raw, &out); err != nil {
			s.t.Fatalf("%s %s: status %d, body not a JSON object: %q", method, path, code, raw)
		}
	}
	return code, out
}

// call makes a request with the headers in header (and the bearer token)
// and returns the status, the body and the response headers. body is JSON
// text as a string, or a value to encode.
func (s *shop) call(method, path, token string, header http.Header, body any) (int, []byte, http.Header) {
	s.t.Helper()
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		rd = strings.NewReader(b)
	default:
		raw, err := json.Marshal(b)
		if err != nil {
			s.t.Fatal(err)
		}
		rd = bytes.NewReader(raw)
	}
	req, err := http.NewRequest(method, s.base+path, rd)
	if err != nil {
		s.t.Fatal(err)
	}
	maps.Copy(req.Header, header)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	client := &http.Client{Timeout: 30 * time.Second}
	resp, err := client.Do(req)
	if err != nil {
		s.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	// Every JSON body of the API ends with one newline.
	if strings.HasPrefix(resp.Header.Get("Content-Type"), "application/json") && len(raw) > 0 &&
		(!bytes.HasSuffix(raw, []byte("\n")) || bytes.HasSuffix(raw, []byte("\n\n"))) {
		s.t.Errorf("%s %s: the JSON body does not end with one newline: %q", method, path, raw[max(0, len(raw)-20):])
	}
	return resp.StatusCode, raw, resp.Header
}

// must makes a request that must answer want.
func (s *shop) must(want int, method, path, token string, body any) map[string]any {
	s.t.Helper()
	code, out := s.do(method, path, token, body)
	if code != want {
		s.t.Fatalf("%s %s = %d %v, want %d", method, path, code, out, want)
	}
	return out
}

// register creates a user and returns their id and token.
func (s *shop) register(email string) (id, token string) {
	s.t.Helper()
	u := s.must(200, "POST", "/v1/users", "", map[string]any{"email": email, "password": "password-123", "displayName": "User " + email})
	login := s.must(200, "POST", "/v1/auth:login", "", map[string]any{"email": email, "password": "password-123"})
	return u["id"].(string), login["accessToken"].(string)
}

func (s *shop) adminToken() string {
	s.t.Helper()
	return s.must(200, "POST", "/v1/auth:login", "", map[string]any{"email": adminEmail, "password": adminPassword})["accessToken"].(string)
}

// product creates a product as admin and returns its id.
func (s *shop) product(admin, sku string, price, stock int) string {
	s.t.Helper()
	p := s.must(200, "POST", "/v1/products", admin, map[string]any{
		"sku": sku, "name": "Product " + sku, "description": "A test product", "category": "tests", "priceCents": price, "stock": stock})
	return p["id"].(string)
}

// num reads a JSON number or an int64 rendered as a string by protojson.
func num(t *testing.T, v any) int64 {
	t.Helper()
	switch x := v.(type) {
	case float64:
		return int64(x)
	case string:
		var n int64
		if _, err := fmt.Sscan(x, &n); err != nil {
			t.Fatalf("not a number: %q", x)
		}
		return n
	case nil:
		return 0
	}
	t.Fatalf("not a number: %T %v", v, v)
	return 0
}

func (s *shop) stock(id string) int64 {
	s.t.Helper()
	return num(s.t, s.must(200, "GET", "/v1/products/"+id, "", nil)["stock"])
}

// eventually polls cond for up to 20s.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func TestWalkthrough(t *testing.T) {
	s := startShop(t, t.TempDir())
	userID, tok := s.register("ada@example.com")
	me := s.must(200, "GET", "/v1/users/me", tok, nil)
	if me["id"] != userID || me["email"] != "ada@example.com" || me["displayName"] != "User ada@example.com" || me["role"] != "ROLE_CUSTOMER" {
		t.Fatalf("me = %v", me)
	}
	if _, ok := me["passwordHash"]; ok {
		t.Fatal("password hash leaked")
	}
	// The demo catalog is there.
	list := s.must(200, "GET", "/v1/products?pageSize=3", "", nil)
	products, _ := list["products"].([]any)
	if len(products) != 3 || list["nextPageToken"] == "" {
		t.Fatalf("demo catalog page = %v", list)
	}
	cheapest := s.must(200, "GET", "/v1/products?inStock=true&orderBy=price&pageSize=1", "", nil)["products"].([]any)[0].(map[string]any)
	pid := cheapest["id"].(string)
	before := s.stock(pid)

	order := s.must(200, "POST", "/v1/orders", tok, map[string]any{"items": []any{map[string]any{"productId": pid, "quantity": 2}}})
	oid := order["id"].(string)
	if order["status"] != "ORDER_STATUS_PENDING" || order["userId"] != userID {
		t.Fatalf("order = %v", order)
	}
	item := order["items"].([]any)[0].(map[string]any)
	if item["productName"] != cheapest["name"] || num(t, item["unitPriceCents"]) != num(t, cheapest["priceCents"]) ||
		num(t, order["totalCents"]) != 2*num(t, cheapest["priceCents"]) {
		t.Fatalf("order prices not captured: %v vs product %v", order, cheapest)
	}
	if got := s.stock(pid); got != before-2 {
		t.Fatalf("stock after order = %d, want %d", got, before-2)
	}
	got := s.must(200, "GET", "/v1/orders/"+oid, tok, nil)
	if got["id"] != oid {
		t.Fatalf("GET order = %v", got)
	}
	hist := s.must(200, "GET", "/v1/users/me/orders?pageSize=10", tok, nil)
	if orders := hist["orders"].([]any); len(orders) != 1 || orders[0].(map[string]any)["id"] != oid {
		t.Fatalf("history = %v", hist)
	}
	dash := s.must(200, "GET", "/v1/users/me/dashboard", tok, nil)
	if dash["user"].(map[string]any)["id"] != userID || num(t, dash["orderCount"]) != 1 || len(dash["recentOrders"].([]any)) != 1 {
		t.Fatalf("dashboard = %v", dash)
	}

	cancelled := s.must(200, "POST", "/v1/orders/"+oid+":cancel", tok, nil)
	if cancelled["status"] != "ORDER_STATUS_CANCELLED" {
		t.Fatalf("cancel = %v", cancelled)
	}
	eventually(t, "stock to come back after cancel", func() bool { return s.stock(pid) == before })
	// Cancelling again is refused and releases nothing more.
	s.must(400, "POST", "/v1/orders/"+oid+":cancel", tok, nil)
	time.Sleep(500 * time.Millisecond)
	if got := s.stock(pid); got != before {
		t.Fatalf("stock after second cancel = %d, want %d", got, before)
	}
	// Misc endpoints.
	s.must(200, "GET", "/healthz", "", nil)
	openapi := s.must(200, "GET", "/openapi.json", "", nil)
	if _, ok := openapi["paths"].(map[string]any)["/v1/orders"]; !ok {
		t.Fatal("openapi.json lacks /v1/orders")
	}
	// /metrics on the API address has every unit's series, each labelled
	// with its unit, and the process's once.
	resp, err := http.Get(s.base + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	metrics := string(body)
	for _, want := range []string{
		`grpc_server_handled_total{grpc_code="OK",grpc_method="CreateOrder",grpc_service="shop.orders.v1.OrderService",grpc_type="unary",unit="ordersvc"} 1`,
		`grpc_server_handled_total{grpc_code="OK",grpc_method="ReserveStock",grpc_service="shop.products.v1.ProductService",grpc_type="unary",unit="productsvc"}`,
		`grpc_client_handled_total{grpc_code="OK",grpc_method="CreateOrder",grpc_service="shop.orders.v1.OrderService",grpc_type="unary",unit="gateway"} 1`,
		`grpc_server_handled_total{grpc_code="OK",grpc_method="CreateUser",grpc_service="shop.users.v1.UserService",grpc_type="unary",unit="usersvc"} 1`,
		`http_requests_total{code="200",method="POST",route="/v1/orders",unit="gateway"} 1`,
		`kgrpc_outbox_backlog{unit="ordersvc"}`,
		"\ngo_goroutines ",
	} {
		if !strings.Contains(metrics, want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
}

func TestErrorClasses(t *testing.T) {
	s := startShop(t, t.TempDir())
	admin := s.adminToken()
	aliceID, alice := s.register("alice@example.com")
	_, bob := s.register("bob@example.com")
	pid := s.product(admin, "ERR-1", 1000, 1)
	aliceOrder := s.must(200, "POST", "/v1/orders", alice, map[string]any{"items": []any{map[string]any{"productId": pid, "quantity": 1}}})["id"].(string)

	tests := []struct {
		name         string
		method, path string
		token        string
		body         any
		status       int
		code         string
	}{
		{"malformed JSON", "POST", "/v1/users", "", `{"email": `, 400, "INVALID_ARGUMENT"},
		{"unknown JSON field", "POST", "/v1/users", "", `{"email": "x@example.com", "password": "password-1", "displayName": "X", "isAdmin": true}`, 400, "INVALID_ARGUMENT"},
		{"invalid email", "POST", "/v1/users", "", map[string]any{"email": "not-an-email", "password": "password-1", "displayName": "X"}, 400, "INVALID_ARGUMENT"},
		{"short password", "POST", "/v1/users", "", map[string]any{"email": "short@example.com", "password": "short", "displayName": "X"}, 400, "INVALID_ARGUMENT"},
		{"duplicate email, other case", "POST", "/v1/users", "", map[string]any{"email": "ALICE@example.com", "password": "password-1", "displayName": "A2"}, 409, "ALREADY_EXISTS"},
		{"wrong password", "POST", "/v1/auth:login", "", map[string]any{"email": "alice@example.com", "password": "wrong-password"}, 401, "UNAUTHENTICATED"},
		{"missing token", "GET", "/v1/users/me", "", nil, 401, "UNAUTHENTICATED"},
		{"bad token", "GET", "/v1/users/me", "not-a-token", nil, 401, "UNAUTHENTICATED"},
		{"order without token", "POST", "/v1/orders", "", map[string]any{"items": []any{map[string]any{"productId": pid, "quantity": 1}}}, 401, "UNAUTHENTICATED"},
		{"another user's profile", "GET", "/v1/users/" + aliceID, bob, nil, 403, "PERMISSION_DENIED"},
		{"another user's orders", "GET", "/v1/users/" + aliceID + "/orders", bob, nil, 403, "PERMISSION_DENIED"},
		{"another user's order", "GET", "/v1/orders/" + aliceOrder, bob, nil, 404, "NOT_FOUND"},
		{"cancel another user's order", "POST", "/v1/orders/" + aliceOrder + ":cancel", bob, nil, 404, "NOT_FOUND"},
		{"customer creates product", "POST", "/v1/products", bob, map[string]any{"sku": "NOPE", "name": "n", "priceCents": 1, "stock": 1}, 403, "PERMISSION_DENIED"},
		{"customer lists users", "GET", "/v1/users", bob, nil, 403, "PERMISSION_DENIED"},
		{"customer updates status", "POST", "/v1/orders/" + aliceOrder + ":updateStatus", alice, map[string]any{"status": "ORDER_STATUS_SHIPPED"}, 403, "PERMISSION_DENIED"},
		{"unknown product", "GET", "/v1/products/p_doesnotexist", "", nil, 404, "NOT_FOUND"},
		{"unknown order", "GET", "/v1/orders/o_doesnotexist", admin, nil, 404, "NOT_FOUND"},
		{"unknown user", "GET", "/v1/users/u_doesnotexist", admin, nil, 404, "NOT_FOUND"},
		{"not enough stock", "POST", "/v1/orders", bob, map[string]any{"items": []any{map[string]any{"productId": pid, "quantity": 1}}}, 400, "FAILED_PRECONDITION"},
		{"unknown product in order", "POST", "/v1/orders", bob, map[string]any{"items": []any{map[string]any{"productId": "p_nope", "quantity": 1}}}, 404, "NOT_FOUND"},
		{"empty order", "POST", "/v1/orders", bob, map[string]any{"items": []any{}}, 400, "INVALID_ARGUMENT"},
		{"negative price filter", "GET", "/v1/products?minPriceCents=-1", "", nil, 400, "INVALID_ARGUMENT"},
		{"bad order_by", "GET", "/v1/products?orderBy=color", "", nil, 400, "INVALID_ARGUMENT"},
		{"bad page token", "GET", "/v1/products?pageToken=%21%21garbage", "", nil, 400, "INVALID_ARGUMENT"},
		{"stock below zero", "POST", "/v1/products/" + pid + ":adjustStock", admin, map[string]any{"delta": -5}, 400, "FAILED_PRECONDITION"},
		{"no such route", "GET", "/v1/nothing", "", nil, 404, "NOT_FOUND"},
		{"oversized body", "POST", "/v1/users", "", `{"email": "big@example.com", "password": "password-1", "displayName": "` + strings.Repeat("x", 2<<20) + `"}`, 413, "INVALID_ARGUMENT"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			code, body := s.do(tc.method, tc.path, tc.token, tc.body)
			if code != tc.status || body["code"] != tc.code {
				t.Fatalf("%s %s = %d %v, want %d %s", tc.method, tc.path, code, body, tc.status, tc.code)
			}
			if msg, _ := body["message"].(string); msg == "" {
				t.Fatalf("error without message: %v", body)
			}
			if _, ok := body["details"].([]any); !ok {
				t.Fatalf("error without details array: %v", body)
			}
		})
	}
	// Nothing above changed the product's stock or created users.
	if got := s.stock(pid); got != 0 {
		t.Fatalf("stock = %d, want 0", got)
	}
	users := s.must(200, "GET", "/v1/users?pageSize=100", admin, nil)["users"].([]any)
	if len(users) != 3 {
		t.Fatalf("%d users, want admin, alice and bob", len(users))
	}
}

// TestValidationListsEveryViolation: a request that breaks three of its
// buf.validate rules answers 400 with all three in a google.rpc.BadRequest
// detail, each with its field path in the API's JSON names (the gateway
// translates the services' protobuf names), and changes nothing.
func TestValidationListsEveryViolation(t *testing.T) {
	s := startShop(t, t.TempDir(), func(o *options) { o.NoDemo = true })
	admin := s.adminToken()
	pid := s.product(admin, "VALID-1", 100, 5)
	tests := []struct {
		name, method, path, token string
		body                      any
		fields                    []string
	}{
		{"new user", "POST", "/v1/users", "", map[string]any{"email": "", "password": "tiny-pw", "displayName": ""},
			[]string{"email", "password", "displayName"}},
		{"new product", "POST", "/v1/products", admin, map[string]any{"sku": "-bad sku", "name": " ", "priceCents": -1, "stock": "2000000000"},
			[]string{"sku", "name", "priceCents", "stock"}},
		{"order lines", "POST", "/v1/orders", admin, map[string]any{"items": []any{
			map[string]any{"productId": pid, "quantity": 0},
			map[string]any{"productId": "", "quantity": 1001},
		}}, []string{"items[0].quantity", "items[1].productId", "items[1].quantity"}},
		{"list filters", "GET", "/v1/products?minPriceCents=-1&orderBy=color&pageSize=-5", "", nil,
			[]string{"minPriceCents", "orderBy", "pageSize"}},
		// An empty required string is one violation ("value is required"),
		// not one per rule, and so is an empty name in a patch.
		{"empty sku", "POST", "/v1/products", admin, map[string]any{"sku": "", "name": "N"}, []string{"sku"}},
		{"empty name in a patch", "PATCH", "/v1/products/" + pid, admin, map[string]any{"name": ""}, []string{"name"}},
		{"order id", "GET", "/v1/orders/bad%20id", admin, nil, []string{"id"}},
		{"user id", "GET", "/v1/users/" + strings.Repeat("u", 129), admin, nil, []string{"id"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			code, body := s.do(tc.method, tc.path, tc.token, tc.body)
			if code != 400 || body["code"] != "INVALID_ARGUMENT" {
				t.Fatalf("%s %s = %d %v, want 400 INVALID_ARGUMENT", tc.method, tc.path, code, body)
			}
			var got []string
			for _, d := range body["details"].([]any) {
				d := d.(map[string]any)
				if d["@type"] != "type.googleapis.com/google.rpc.BadRequest" {
					continue
				}
				for _, fv := range d["fieldViolations"].([]any) {
					fv := fv.(map[string]any)
					if fv["description"] == "" || fv["reason"] == "" {
						t.Errorf("violation without description or reason: %v", fv)
					}
					got = append(got, fv["field"].(string))
				}
			}
			if !slices.Equal(got, tc.fields) {
				t.Fatalf("violations on %q, want %q; body %v", got, tc.fields, body)
			}
			for _, f := range tc.fields {
				if msg, _ := body["message"].(string); !strings.Contains(msg, f+": ") {
					t.Errorf("message %q does not name %s", msg, f)
				}
			}
		})
	}
	// Nothing above changed anything.
	if got := s.stock(pid); got != 5 {
		t.Fatalf("stock = %d, want 5", got)
	}
	if users := s.must(200, "GET", "/v1/users?pageSize=100", admin, nil)["users"].([]any); len(users) != 1 {
		t.Fatalf("%d users, want the admin alone", len(users))
	}
}

// TestAdminRoutesRefuseBeforeValidation: a customer calling an admin-only
// route is refused 403 "admin role required" whether or not the request is
// valid: the role is checked before the request's buf.validate rules, so
// an invalid body does not earn a 400 listing what is wrong with it.
func TestAdminRoutesRefuseBeforeValidation(t *testing.T) {
	s := startShop(t, t.TempDir(), func(o *options) { o.NoDemo = true })
	admin := s.adminToken()
	_, customer := s.register("eve@example.com")
	pid := s.product(admin, "ADMIN-1", 100, 5)
	oid := s.must(200, "POST", "/v1/orders", customer, map[string]any{"items": []any{map[string]any{"productId": pid, "quantity": 1}}})["id"].(string)
	tests := []struct {
		name, method, path string
		body               any
	}{
		{"create product", "POST", "/v1/products", map[string]any{"sku": ""}},
		{"update product", "PATCH", "/v1/products/" + pid, map[string]any{"name": " ", "priceCents": -1}},
		{"delete product", "DELETE", "/v1/products/bad%20id", nil},
		{"adjust stock", "POST", "/v1/products/" + pid + ":adjustStock", map[string]any{"delta": 0}},
		{"list users", "GET", "/v1/users?pageSize=-1", nil},
		{"update status", "POST", "/v1/orders/" + oid + ":updateStatus", map[string]any{"status": "ORDER_STATUS_UNSPECIFIED"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			// The admin's same request is invalid: 400, so the 403 below
			// is the role check's, not a route that takes anything.
			if code, body := s.do(tc.method, tc.path, admin, tc.body); code != 400 || body["code"] != "INVALID_ARGUMENT" {
				t.Fatalf("admin: %s %s = %d %v, want 400 INVALID_ARGUMENT", tc.method, tc.path, code, body)
			}
			code, body := s.do(tc.method, tc.path, customer, tc.body)
			if code != 403 || body["code"] != "PERMISSION_DENIED" || body["message"] != "admin role required" {
				t.Fatalf("customer: %s %s = %d %v, want 403 PERMISSION_DENIED admin role required", tc.method, tc.path, code, body)
			}
		})
	}
	t.Run("import", func(t *testing.T) {
		if code, raw, _ := s.call("POST", "/v1/products:import", customer, nil, `{"sku": "", "priceCents": -1}`+"\n"); code != 403 || !strings.Contains(string(raw), "admin role required") {
			t.Fatalf("customer's invalid import = %d %s, want 403 admin role required", code, raw)
		}
	})
	// Nothing above changed anything.
	if got := s.stock(pid); got != 4 {
		t.Fatalf("stock = %d, want 4", got)
	}
}

func TestConcurrentOrdersOnScarceStock(t *testing.T) {
	s := startShop(t, t.TempDir(), func(o *options) { o.NoDemo = true })
	admin := s.adminToken()
	const stock, buyers = 7, 40
	pid := s.product(admin, "SCARCE-1", 500, stock)
	tokens := make([]string, 8)
	for i := range tokens {
		_, tokens[i] = s.register(fmt.Sprintf("buyer%d@example.com", i))
	}
	var mu sync.Mutex
	results := map[int]int{}
	var wg sync.WaitGroup
	for i := range buyers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			code, body := s.do("POST", "/v1/orders", tokens[i%len(tokens)], map[string]any{"items": []any{map[string]any{"productId": pid, "quantity": 1}}})
			if code != 200 && !(code == 400 && body["code"] == "FAILED_PRECONDITION") {
				t.Errorf("order = %d %v", code, body)
			}
			mu.Lock()
			results[code]++
			mu.Unlock()
		}()
	}
	wg.Wait()
	if results[200] != stock || results[400] != buyers-stock {
		t.Fatalf("results %v, want %d successes and %d refusals", results, stock, buyers-stock)
	}
	if got := s.stock(pid); got != 0 {
		t.Fatalf("stock = %d, want 0", got)
	}
}

func TestStatusTransitions(t *testing.T) {
	s := startShop(t, t.TempDir(), func(o *options) { o.NoDemo = true })
	admin := s.adminToken()
	_, tok := s.register("carol@example.com")
	pid := s.product(admin, "FLOW-1", 100, 10)
	newOrder := func() string {
		return s.must(200, "POST", "/v1/orders", tok, map[string]any{"items": []any{map[string]any{"productId": pid, "quantity": 1}}})["id"].(string)
	}
	set := func(id, st string) (int, map[string]any) {
		return s.do("POST", "/v1/orders/"+id+":updateStatus", admin, map[string]any{"status": st})
	}
	o := newOrder()
	for _, st := range []string{"ORDER_STATUS_CONFIRMED", "ORDER_STATUS_SHIPPED", "ORDER_STATUS_DELIVERED"} {
		if code, body := set(o, st); code != 200 || body["status"] != st {
			t.Fatalf("-> %s = %d %v", st, code, body)
		}
	}
	for _, st := range []string{"ORDER_STATUS_CANCELLED", "ORDER_STATUS_PENDING", "ORDER_STATUS_SHIPPED"} {
		if code, body := set(o, st); code != 400 || body["code"] != "FAILED_PRECONDITION" {
			t.Fatalf("delivered -> %s = %d %v, want 400 FAILED_PRECONDITION", st, code, body)
		}
	}
	// Skipping a step is refused; cancelling from CONFIRMED is allowed
	// and returns the stock; a shipped order cannot be cancelled.
	o2 := newOrder()
	if code, body := set(o2, "ORDER_STATUS_SHIPPED"); code != 400 || body["code"] != "FAILED_PRECONDITION" {
		t.Fatalf("pending -> shipped = %d %v", code, body)
	}
	if code, body := set(o2, "ORDER_STATUS_BOGUS"); code != 400 {
		t.Fatalf("bogus status = %d %v", code, body)
	}
	s.must(200, "POST", "/v1/orders/"+o2+":updateStatus", admin, map[string]any{"status": "ORDER_STATUS_CONFIRMED"})
	s.must(200, "POST", "/v1/orders/"+o2+":cancel", tok, nil)
	eventually(t, "stock of the cancelled order back", func() bool { return s.stock(pid) == 9 })
	o3 := newOrder()
	s.must(200, "POST", "/v1/orders/"+o3+":updateStatus", admin, map[string]any{"status": "ORDER_STATUS_CONFIRMED"})
	s.must(200, "POST", "/v1/orders/"+o3+":updateStatus", admin, map[string]any{"status": "ORDER_STATUS_SHIPPED"})
	if code, body := s.do("POST", "/v1/orders/"+o3+":cancel", tok, nil); code != 400 || body["code"] != "FAILED_PRECONDITION" {
		t.Fatalf("cancel shipped = %d %v", code, body)
	}
}

func TestPagination(t *testing.T) {
	s := startShop(t, t.TempDir(), func(o *options) { o.NoDemo = true })
	admin := s.adminToken()
	for i := range 23 {
		s.product(admin, fmt.Sprintf("PAGE-%02d", i), 100+i, 100)
	}
	seen := map[string]bool{}
	token, pages := "", 0
	var lastPrice int64 = -1
	for {
		out := s.must(200, "GET", "/v1/products?orderBy=price&pageSize=5&pageToken="+token, "", nil)
		pages++
		for _, p := range out["products"].([]any) {
			pm := p.(map[string]any)
			if seen[pm["id"].(string)] {
				t.Fatalf("product %v on two pages", pm["id"])
			}
			seen[pm["id"].(string)] = true
			if price := num(t, pm["priceCents"]); price < lastPrice {
				t.Fatalf("price %d after %d: not ordered", price, lastPrice)
			} else {
				lastPrice = price
			}
		}
		token, _ = out["nextPageToken"].(string)
		if token == "" {
			break
		}
	}
	if len(seen) != 23 || pages != 5 {
		t.Fatalf("%d products over %d pages, want 23 over 5", len(seen), pages)
	}
	// A user's orders, newest first, in pages.
	_, tok := s.register("dave@example.com")
	pid := s.product(admin, "PAGE-ORD", 100, 100)
	var ids []string
	for range 7 {
		ids = append(ids, s.must(200, "POST", "/v1/orders", tok, map[string]any{"items": []any{map[string]any{"productId": pid, "quantity": 1}}})["id"].(string))
	}
	var got []string
	token = ""
	for {
		out := s.must(200, "GET", "/v1/users/me/orders?pageSize=3&pageToken="+token, tok, nil)
		if num(t, out["totalSize"]) != 7 {
			t.Fatalf("totalSize = %v, want 7", out["totalSize"])
		}
		for _, o := range out["orders"].([]any) {
			got = append(got, o.(map[string]any)["id"].(string))
		}
		token, _ = out["nextPageToken"].(string)
		if token == "" {
			break
		}
	}
	if len(got) != 7 {
		t.Fatalf("got %d orders, want 7", len(got))
	}
	for i := range got {
		if got[i] != ids[len(ids)-1-i] {
			t.Fatalf("orders %v, want newest first %v", got, ids)
		}
	}
}

func TestPersistenceAcrossRestart(t *testing.T) {
	dir := t.TempDir()
	s := startShop(t, dir)
	admin := s.adminToken()
	uid, tok := s.register("erin@example.com")
	pid := s.product(admin, "KEEP-1", 250, 5)
	oid := s.must(200, "POST", "/v1/orders", tok, map[string]any{"items": []any{map[string]any{"productId": pid, "quantity": 2}}})["id"].(string)
	demo := len(s.must(200, "GET", "/v1/products?pageSize=100", "", nil)["products"].([]any))
	s.stop()

	s2 := startShop(t, dir)
	// The same token still works: the units' keys were kept.
	me := s2.must(200, "GET", "/v1/users/me", tok, nil)
	if me["id"] != uid {
		t.Fatalf("me after restart = %v", me)
	}
	s2.must(200, "POST", "/v1/auth:login", "", map[string]any{"email": "erin@example.com", "password": "password-123"})
	if got := s2.stock(pid); got != 3 {
		t.Fatalf("stock after restart = %d, want 3", got)
	}
	o := s2.must(200, "GET", "/v1/orders/"+oid, tok, nil)
	if o["status"] != "ORDER_STATUS_PENDING" {
		t.Fatalf("order after restart = %v", o)
	}
	// The demo catalog is not loaded twice.
	if n := len(s2.must(200, "GET", "/v1/products?pageSize=100", "", nil)["products"].([]any)); n != demo {
		t.Fatalf("%d products after restart, want %d", n, demo)
	}
	// And cancelling after the restart still returns stock via the event.
	s2.must(200, "POST", "/v1/orders/"+oid+":cancel", tok, nil)
	eventually(t, "stock back after restart", func() bool { return s2.stock(pid) == 5 })
}

func TestServiceNotAnsweringGives504(t *testing.T) {
	// Only the gateway runs: requests reach Kafka but no service answers.
	brokers := kafkatest.Brokers(t)
	keys, err := app.EnsureKeys(t.TempDir(), slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	common := app.Common{Brokers: brokers, Trust: keys, Logger: slog.New(slog.DiscardHandler),
		Kafka: []kafkatransport.Option{kafkatransport.WithTopicPrefix(kafkatest.TopicPrefix(t))}}
	addr := make(chan string, 1)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- app.RunGateway(ctx, common, app.GatewayConfig{HTTPAddr: "127.0.0.1:0", RequestTimeout: time.Second, Listening: func(a string) { addr <- a }})
	}()
	t.Cleanup(func() { cancel(); <-done })
	s := &shop{t: t, base: "http://" + <-addr}
	// The dashboard is not public: a user's token (signed with the users
	// unit's key, as Login would) takes it to the services; without one the
	// gateway answers 401 itself.
	issuer, err := auth.NewIssuer(keys.Keys[app.UnitUsers].Current(), time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	tok, _, err := issuer.Issue("u_1", auth.RoleCustomer, 1)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct{ path, token string }{{"/v1/products/p_1", ""}, {"/v1/products", ""}, {"/v1/users/me/dashboard", tok}} {
		start := time.Now()
		code, body := s.do("GET", c.path, c.token, nil)
		if el := time.Since(start); el > 5*time.Second {
			t.Fatalf("GET %s took %v with a 1s deadline", c.path, el)
		}
		if code != 503 && code != 504 {
			t.Fatalf("GET %s = %d %v, want 503 or 504", c.path, code, body)
		}
	}
	if code, body := s.do("GET", "/v1/users/me/dashboard", "", nil); code != 401 {
		t.Fatalf("anonymous GET /v1/users/me/dashboard = %d %v, want 401 from the gateway", code, body)
	}
	if code, _ := s.do("GET", "/readyz", "", nil); code != 503 {
		t.Fatalf("/readyz = %d with no service running, want 503", code)
	}
	s.must(200, "GET", "/healthz", "", nil)
}

// TestREADMEWalkthrough runs the README's curl walkthrough verbatim (with
// the API address of this test's platform) and checks what it printed.
func TestREADMEWalkthrough(t *testing.T) {
	m := readmeScript(t)
	s := startShop(t, t.TempDir())
	readmeWalkthrough(t, s, m)
}

// readmeScript returns the README's curl walkthrough.
func readmeScript(t *testing.T) string {
	t.Helper()
	for _, tool := range []string{"bash", "curl", "jq"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("the README walkthrough needs %s: %v", tool, err)
		}
	}
	readme, err := os.ReadFile(filepath.Join("..", "..", "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile("(?s)```sh\n(API=http://127.0.0.1:8080\n.*?)```").FindSubmatch(readme)
	if m == nil {
		t.Fatal("README has no walkthrough block starting with API=http://127.0.0.1:8080")
	}
	return string(m[1])
}

// readmeWalkthrough runs script, the README's walkthrough, against s and
// checks what it printed.
func readmeWalkthrough(t *testing.T, s *shop, script string) {
	t.Helper()
	script = strings.Replace(script, "API=http://127.0.0.1:8080", "API="+s.base, 1)
	cmd := exec.Command("bash", "-euo", "pipefail", "-c", script)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("walkthrough failed: %v\n%s", err, out)
	}
	text := string(out)
	if !strings.Contains(text, "HTTP/1.1 400") {
		t.Errorf("walkthrough output lacks the 400 of the last request:\n%s", text)
	}
	// protojson varies its spacing, so compare without whitespace.
	compact := strings.Join(strings.Fields(text), "")
	for _, want := range []string{`"email":"ada@example.com"`, `"status":"ORDER_STATUS_PENDING"`, `"status":"ORDER_STATUS_CANCELLED"`, `"orderCount":1`, `"code":"FAILED_PRECONDITION"`,
		`"field":"email"`, `"field":"password"`, `"field":"displayName"`} {
		if !strings.Contains(compact, want) {
			t.Errorf("walkthrough output lacks %s:\n%s", want, text)
		}
	}
}

// A second platform on a data directory in use fails at once, naming the
// process that holds it, and the first one keeps serving. (Once the first
// has stopped, the directory is free: TestPersistenceAcrossRestart.)
func TestDataDirInUse(t *testing.T) {
	dir := t.TempDir()
	s := startShop(t, dir)
	o := options{Settings: app.Settings{HTTPAddr: "127.0.0.1:0", DataDir: dir, LogLevel: "warn", LogFormat: "text", Brokers: os.Getenv("KAFKA_BROKERS")}}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	start := time.Now()
	err := run(ctx, o, slog.New(slog.DiscardHandler))
	if err == nil || !strings.Contains(err.Error(), "in use by process "+strconv.Itoa(os.Getpid())) {
		t.Fatalf("a second platform on %s: %v, want an error naming process %d", dir, err, os.Getpid())
	}
	if took := time.Since(start); took > 5*time.Second {
		t.Fatalf("the second platform took %v to fail", took)
	}
	t.Logf("refused in %v: %v", time.Since(start).Round(time.Millisecond), err)
	s.must(200, "GET", "/v1/products?pageSize=1", "", nil)
}
