package gateway_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/health/grpc_health_v1"

	"github.com/kgrpc/platform/gateway"
	productsv1 "github.com/kgrpc/platform/gen/shop/products/v1"
	"github.com/kgrpc/platform/internal/app"
	"github.com/kgrpc/platform/internal/auth"
	"github.com/kgrpc/platform/kafkatransport"
	"github.com/kgrpc/platform/kafkatransport/trust"
)

func TestAuthentication(t *testing.T) {
	b := newBackend(t)
	base := b.serve(t, nil)
	// A key the keyring does not know signs a forged token; a key the
	// keyring knows, of another unit, another.
	_, other, err := trust.Generate(time.Now(), "usersvc")
	if err != nil {
		t.Fatal(err)
	}
	otherIssuer, _ := auth.NewIssuer(other["usersvc"].Current(), time.Hour)
	forged, _, err := otherIssuer.Issue("u_alice", auth.RoleAdmin, 1)
	if err != nil {
		t.Fatal(err)
	}
	expired, _, err := b.issuer.IssueAt(time.Now().Add(-2*time.Hour), "u_alice", auth.RoleCustomer, 1)
	if err != nil {
		t.Fatal(err)
	}
	alice := b.token(t, "u_alice", auth.RoleCustomer)
	admin := b.token(t, "u_admin", auth.RoleAdmin)
	product := `{"sku":"B-1","name":"Bolt","priceCents":25}`

	tests := []struct {
		name         string
		method, path string
		body         string
		header       []string
		status       int
		code, msg    string // of the error; "" for a success
		method2      string // the service method the call must (not) reach
		reaches      bool
		wantSubject  string // the caller identity the service saw
	}{
		{"no token, private route: the service refuses", "GET", "/v1/users/me", "", nil,
			401, "UNAUTHENTICATED", "authentication required: send a bearer token", "GetUser", true, ""},
		{"not a bearer header", "GET", "/v1/users/me", "", []string{"Authorization", "Basic dTpw"},
			401, "UNAUTHENTICATED", `authorization header must be "Bearer <token>"`, "GetUser", false, ""},
		{"lowercase bearer scheme", "GET", "/v1/users/me", "", []string{"Authorization", "bearer " + alice},
			401, "UNAUTHENTICATED", `authorization header must be "Bearer <token>"`, "GetUser", false, ""},
		{"malformed token", "GET", "/v1/users/me", "", bearer("not-a-token"),
			401, "UNAUTHENTICATED", "invalid token: malformed", "GetUser", false, ""},
		{"forged token", "GET", "/v1/users/me", "", bearer(forged),
			401, "UNAUTHENTICATED", "invalid token: unknown signing key", "GetUser", false, ""},
		{"expired token", "GET", "/v1/users/me", "", bearer(expired),
			401, "UNAUTHENTICATED", "invalid token: expired", "GetUser", false, ""},
		{"bad token on a public route", "GET", "/v1/products/p_1", "", bearer(forged),
			401, "UNAUTHENTICATED", "invalid token: unknown signing key", "GetProduct", false, ""},
		{"no token, public route", "GET", "/v1/products/p_1", "", nil,
			200, "", "", "GetProduct", true, ""},
		{"valid token: the caller reaches the service", "GET", "/v1/users/me", "", bearer(alice),
			200, "", "", "GetUser", true, "u_alice"},
		{"valid token with spaces around it", "GET", "/v1/users/me", "", []string{"Authorization", "Bearer  " + alice + " "},
			200, "", "", "GetUser", true, "u_alice"},
		{"admin-only route as a customer: the service refuses", "POST", "/v1/products", product, bearer(alice),
			403, "PERMISSION_DENIED", "admin role required", "CreateProduct", true, "u_alice"},
		{"admin-only route as an admin", "POST", "/v1/products", product, bearer(admin),
			200, "", "", "CreateProduct", true, "u_admin"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := b.rec.calls(tt.method2)
			r := do(t, base, tt.method, tt.path, tt.body, tt.header...)
			if tt.code != "" {
				wantError(t, r, tt.status, tt.code, tt.msg)
				if got, want := r.header.Get("WWW-Authenticate"), wwwAuthenticate(tt.status); got != want {
					t.Errorf("WWW-Authenticate %q, want %q", got, want)
				}
			} else if r.status != tt.status {
				t.Fatalf("status %d, want %d (body %s)", r.status, tt.status, r.raw)
			}
			c, n := b.rec.lastCall(tt.method2)
			if reached := n > before; reached != tt.reaches {
				t.Fatalf("%s reached: %v, want %v", tt.method2, reached, tt.reaches)
			}
			if !tt.reaches {
				return
			}
			if c.claims.Subject != tt.wantSubject || c.authed != (tt.wantSubject != "") {
				t.Errorf("service saw caller %q (authenticated %v), want %q", c.claims.Subject, c.authed, tt.wantSubject)
			}
			if tt.wantSubject != "" && tt.method2 == "GetUser" && r.json["id"] != tt.wantSubject {
				t.Errorf("/v1/users/me answered user %v, want %s", r.json["id"], tt.wantSubject)
			}
		})
	}
}

// wwwAuthenticate is the challenge the gateway sends with a 401.
func wwwAuthenticate(status int) string {
	if status == http.StatusUnauthorized {
		return `Bearer realm="shop"`
	}
	return ""
}

var generatedKey = regexp.MustCompile(`^gw-[0-9a-f]{32}$`)

func TestIdempotencyKey(t *testing.T) {
	b := newBackend(t)
	base := b.serve(t, nil)
	alice := bearer(b.token(t, "u_alice", auth.RoleCustomer))
	user := `{"email":"a@example.com","password":"pw-123456","displayName":"A"}`
	order := `{"items":[{"productId":"p_1","quantity":1}]}`

	tests := []struct {
		name         string
		method, path string
		body         string
		header       []string
		service      string
		want         string // the key the service sees; "generated" for a made-up one
	}{
		{"POST without a key gets a generated one", "POST", "/v1/users", user, nil, "CreateUser", "generated"},
		{"POST with a key passes it on", "POST", "/v1/users", user, []string{"Idempotency-Key", "client-key-1"}, "CreateUser", "client-key-1"},
		{"authenticated POST without a key", "POST", "/v1/orders", order, alice, "CreateOrder", "generated"},
		{"authenticated POST with a key", "POST", "/v1/orders", order, append([]string{"Idempotency-Key", "order-key"}, alice...), "CreateOrder", "order-key"},
		{"PATCH without a key gets a generated one", "PATCH", "/v1/products/p_1", `{"name":"N"}`, nil, "UpdateProduct", "generated"},
		{"DELETE without a key gets a generated one", "DELETE", "/v1/products/p_1", "", nil, "DeleteProduct", "generated"},
		{"DELETE with a key passes it on", "DELETE", "/v1/products/p_1", "", []string{"Idempotency-Key", "del-key"}, "DeleteProduct", "del-key"},
		{"GET without a key gets none", "GET", "/v1/products/p_1", "", nil, "GetProduct", ""},
		{"GET with a key passes it on", "GET", "/v1/products/p_1", "", []string{"Idempotency-Key", "get-key"}, "GetProduct", "get-key"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := do(t, base, tt.method, tt.path, tt.body, tt.header...)
			if r.status != http.StatusOK {
				t.Fatalf("status %d (body %s)", r.status, r.raw)
			}
			c, _ := b.rec.lastCall(tt.service)
			got := c.md.Get(gateway.IdempotencyMetadataKey)
			switch {
			case tt.want == "generated" && (len(got) != 1 || !generatedKey.MatchString(got[0])):
				t.Errorf("metadata %s = %q, want one generated key", gateway.IdempotencyMetadataKey, got)
			case tt.want == "" && len(got) != 0:
				t.Errorf("metadata %s = %q, want none", gateway.IdempotencyMetadataKey, got)
			case tt.want != "generated" && tt.want != "" && (len(got) != 1 || got[0] != tt.want):
				t.Errorf("metadata %s = %q, want [%s]", gateway.IdempotencyMetadataKey, got, tt.want)
			}
			// Of the request's headers only Idempotency-Key becomes
			// metadata, the verified user goes as the principal (never
			// the token), the request id goes along for log lines, and
			// grpc-gateway always adds the x-forwarded-* pair.
			if id := c.md.Get("x-request-id"); len(id) != 1 || len(id[0]) != 32 {
				t.Errorf("metadata x-request-id = %q, want the request id the gateway made", id)
			}
			allowed := map[string]bool{auth.PrincipalKey: true, gateway.IdempotencyMetadataKey: true, "x-request-id": true, "x-forwarded-host": true, "x-forwarded-for": true}
			for k, v := range c.md {
				if !allowed[k] {
					t.Errorf("metadata %s = %q: only the principal, Idempotency-Key, x-request-id and x-forwarded-* become metadata", k, v)
				}
			}
		})
	}

	t.Run("each POST gets a key of its own", func(t *testing.T) {
		keys := map[string]bool{}
		for range 3 {
			if r := do(t, base, "POST", "/v1/users", user); r.status != http.StatusOK {
				t.Fatalf("status %d (body %s)", r.status, r.raw)
			}
			c, _ := b.rec.lastCall("CreateUser")
			keys[strings.Join(c.md.Get(gateway.IdempotencyMetadataKey), ",")] = true
		}
		if len(keys) != 3 {
			t.Errorf("3 POSTs got keys %v, want 3 different ones", keys)
		}
	})
}

func TestBodyLimit(t *testing.T) {
	b := newBackend(t)
	small := b.serve(t, func(c *gateway.Config) { c.MaxBodyBytes = 100 })
	dflt := b.serve(t, nil)
	user := func(n int) string {
		return `{"email":"a@example.com","password":"pw-123456","displayName":"` + strings.Repeat("x", n) + `"}`
	}
	tests := []struct {
		name   string
		base   string
		body   string
		status int
	}{
		{"within the limit", small, user(10), 200},
		{"exactly the limit", small, user(100 - len(user(0))), 200},
		{"one byte over the limit", small, user(101 - len(user(0))), 413},
		{"far over the limit", small, user(10_000), 413},
		{"default limit: half a MiB passes", dflt, user(1 << 19), 200},
		{"default limit: 1 MiB and a byte fails", dflt, user(1<<20 + 1 - len(user(0))), 413},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := b.rec.calls("CreateUser")
			r := do(t, tt.base, "POST", "/v1/users", tt.body)
			reached := b.rec.calls("CreateUser") > before
			if tt.status == http.StatusOK {
				if r.status != http.StatusOK || !reached {
					t.Fatalf("status %d, reached the service %v (body %s), want 200 from the service", r.status, reached, r.raw)
				}
				return
			}
			limit := map[string]int{small: 100, dflt: 1 << 20}[tt.base]
			wantError(t, r, tt.status, "INVALID_ARGUMENT", fmt.Sprintf("request body larger than %d bytes", limit))
			if reached {
				t.Error("an oversized request reached the service")
			}
		})
	}
}

func TestRequestTimeout(t *testing.T) {
	b := newBackend(t)
	const timeout = time.Second
	base := b.serve(t, func(c *gateway.Config) { c.RequestTimeout = timeout })
	// The first call to a topic can take longer on real Kafka.
	if r := do(t, b.serve(t, nil), "GET", "/v1/products/warm-up", ""); r.status != http.StatusOK {
		t.Fatalf("warm-up: status %d (body %s)", r.status, r.raw)
	}
	tests := []struct {
		name   string
		path   string
		status int
	}{
		{"a fast call answers", "/v1/products/p_1", 200},
		{"a slow service times out", "/v1/products/slow", 504},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			start := time.Now()
			r := do(t, base, "GET", tt.path, "")
			took := time.Since(start)
			if tt.status == http.StatusOK {
				if r.status != http.StatusOK {
					t.Fatalf("status %d (body %s)", r.status, r.raw)
				}
				return
			}
			wantError(t, r, tt.status, "DEADLINE_EXCEEDED", "context deadline exceeded")
			if took < timeout || took > timeout+5*time.Second {
				t.Errorf("answered after %v, want just after the %v timeout", took, timeout)
			}
		})
	}
}

func TestHealthReadinessAndOpenAPI(t *testing.T) {
	b := newBackend(t)
	base := b.serve(t, nil)
	brokerDown := b.serve(t, func(c *gateway.Config) {
		c.Ping = func(context.Context) error { return errors.New("broker down") }
	})
	noPing := b.serve(t, func(c *gateway.Config) { c.Ping = nil })
	services := map[string]any{"users": "ok", "products": "ok", "orders": "ok"}
	withBroker := func(v string) map[string]any {
		m := map[string]any{"broker": v}
		for k, s := range services {
			m[k] = s
		}
		return m
	}
	tests := []struct {
		name   string
		base   string
		path   string
		status int
		want   map[string]any
	}{
		{"healthz", base, "/healthz", 200, map[string]any{"status": "ok"}},
		{"readyz", base, "/readyz", 200, map[string]any{"ready": true, "checks": withBroker("ok")}},
		{"readyz with the broker down", brokerDown, "/readyz", 503, map[string]any{"ready": false, "checks": withBroker("broker down")}},
		{"readyz without a Ping", noPing, "/readyz", 200, map[string]any{"ready": true, "checks": services}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := do(t, tt.base, "GET", tt.path, "")
			if r.status != tt.status || !jsonEqual(r.json, tt.want) {
				t.Errorf("%d %s, want %d %s", r.status, r.raw, tt.status, mustJSON(t, tt.want))
			}
		})
	}
	// Each service's check is the health protocol's Check of its unit.
	products := productsv1.ProductService_ServiceDesc.ServiceName
	absent := b.serve(t, func(c *gateway.Config) {
		c.OrdersHealth = grpc_health_v1.NewHealthClient(b.conn.Service(kafkatransport.HealthSpec("nobody")))
	})
	unhealthy := []struct {
		name   string
		base   string
		status grpc_health_v1.HealthCheckResponse_ServingStatus
		check  string // the check that fails
		want   string // its prefix
	}{
		{"readyz with products not serving", base, grpc_health_v1.HealthCheckResponse_NOT_SERVING, "products", "NOT_SERVING"},
		{"readyz with a unit that does not answer", absent, grpc_health_v1.HealthCheckResponse_SERVING, "orders", "unavailable: "},
	}
	for _, tt := range unhealthy {
		t.Run(tt.name, func(t *testing.T) {
			b.health.SetServingStatus(products, tt.status)
			defer b.health.SetServingStatus(products, grpc_health_v1.HealthCheckResponse_SERVING)
			r := do(t, tt.base, "GET", "/readyz", "")
			checks, _ := r.json["checks"].(map[string]any)
			got, _ := checks[tt.check].(string)
			if r.status != http.StatusServiceUnavailable || r.json["ready"] != false || !strings.HasPrefix(got, tt.want) || checks["users"] != "ok" {
				t.Fatalf("%d %s, want 503, ready false, %s %q..., users ok", r.status, r.raw, tt.check, tt.want)
			}
		})
	}
	t.Run("health endpoints need no token and ignore a bad one", func(t *testing.T) {
		r := do(t, base, "GET", "/healthz", "", bearer("not-a-token")...)
		if r.status != http.StatusOK {
			t.Errorf("status %d (body %s)", r.status, r.raw)
		}
	})
	t.Run("openapi.json", func(t *testing.T) {
		r := do(t, base, "GET", "/openapi.json", "")
		if r.status != http.StatusOK || r.header.Get("Content-Type") != "application/json" || string(r.raw) != string(gateway.OpenAPI) {
			t.Errorf("status %d, Content-Type %q, %d bytes; want 200, application/json and the %d bytes of gateway.OpenAPI",
				r.status, r.header.Get("Content-Type"), len(r.raw), len(gateway.OpenAPI))
		}
	})
}

func TestDashboard(t *testing.T) {
	b := newBackend(t)
	base := b.serve(t, nil)
	alice := bearer(b.token(t, "u_alice", auth.RoleCustomer))
	tests := []struct {
		name   string
		path   string
		header []string
		status int
		userID string
	}{
		{"me alias", "/v1/users/me/dashboard", alice, 200, "u_alice"},
		{"by id", "/v1/users/u_bob/dashboard", alice, 200, "u_bob"},
		{"no token", "/v1/users/me/dashboard", nil, 401, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := do(t, base, "GET", tt.path, "", tt.header...)
			if tt.status != http.StatusOK {
				wantError(t, r, tt.status, "UNAUTHENTICATED", "authentication required: send a bearer token")
				return
			}
			if r.status != http.StatusOK {
				t.Fatalf("status %d (body %s)", r.status, r.raw)
			}
			user, _ := r.json["user"].(map[string]any)
			recent, _ := r.json["recentOrders"].([]any)
			if user["id"] != tt.userID || user["displayName"] != "" || user["role"] != "ROLE_CUSTOMER" {
				t.Errorf("user %v, want %s with every field (protojson names)", user, tt.userID)
			}
			if len(recent) != 5 || r.json["orderCount"] != float64(7) {
				t.Errorf("%d recent orders of %v, want 5 of 7", len(recent), r.json["orderCount"])
			}
			if o, _ := recent[0].(map[string]any); o["userId"] != tt.userID || o["totalCents"] != "100" {
				t.Errorf("first order %v, want one of %s in protojson", o, tt.userID)
			}
			for _, m := range []string{"GetUser", "ListUserOrders"} {
				if c, _ := b.rec.lastCall(m); c.claims.Subject != "u_alice" {
					t.Errorf("%s saw caller %q, want u_alice", m, c.claims.Subject)
				}
			}
		})
	}
}

func TestNewNeedsClientsAndSigner(t *testing.T) {
	if _, err := gateway.New(t.Context(), gateway.Config{}); err == nil {
		t.Fatal("New without clients and signer succeeded")
	}
}

func TestLogsOneLinePerRequest(t *testing.T) {
	b := newBackend(t)
	logs := &captureHandler{}
	base := b.serve(t, func(c *gateway.Config) { c.Logger = slog.New(logs) })
	for _, p := range []string{"/healthz", "/v1/products/code-5", "/v1/products/p_1"} {
		do(t, base, "GET", p, "")
	}
	want := []string{"GET /healthz 200", "GET /v1/products/code-5 404", "GET /v1/products/p_1 200"}
	if got := logs.lines(); strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("logged %q, want %q", got, want)
	}
}

// TestErrorFormat checks the HTTP status and JSON error of every gRPC code a
// service may answer, and the status details.
func TestErrorFormat(t *testing.T) {
	b := newBackend(t)
	base := b.serve(t, nil)
	tests := []struct {
		code   codes.Code
		status int
		name   string
	}{
		{codes.Canceled, 499, "CANCELLED"},
		{codes.Unknown, 500, "UNKNOWN"},
		{codes.InvalidArgument, 400, "INVALID_ARGUMENT"},
		{codes.DeadlineExceeded, 504, "DEADLINE_EXCEEDED"},
		{codes.NotFound, 404, "NOT_FOUND"},
		{codes.AlreadyExists, 409, "ALREADY_EXISTS"},
		{codes.PermissionDenied, 403, "PERMISSION_DENIED"},
		{codes.ResourceExhausted, 429, "RESOURCE_EXHAUSTED"},
		{codes.FailedPrecondition, 400, "FAILED_PRECONDITION"},
		{codes.Aborted, 409, "ABORTED"},
		{codes.OutOfRange, 400, "OUT_OF_RANGE"},
		{codes.Unimplemented, 501, "UNIMPLEMENTED"},
		{codes.Internal, 500, "INTERNAL"},
		{codes.Unavailable, 503, "UNAVAILABLE"},
		{codes.DataLoss, 500, "DATA_LOSS"},
		{codes.Unauthenticated, 401, "UNAUTHENTICATED"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := do(t, base, "GET", "/v1/products/code-"+strconv.Itoa(int(tt.code)), "")
			wantError(t, r, tt.status, tt.name, "failed with "+tt.code.String())
			if got, want := r.header.Get("WWW-Authenticate"), wwwAuthenticate(tt.status); got != want {
				t.Errorf("WWW-Authenticate %q, want %q", got, want)
			}
		})
	}

	t.Run("details in protojson with their @type", func(t *testing.T) {
		r := do(t, base, "GET", "/v1/products/code-9-details", "")
		want := map[string]any{
			"code":    "FAILED_PRECONDITION",
			"message": "failed with FailedPrecondition",
			"details": []any{
				map[string]any{
					"@type":    "type.googleapis.com/google.rpc.ErrorInfo",
					"reason":   "OUT_OF_STOCK",
					"domain":   "shop.test",
					"metadata": map[string]any{"sku": "B-1"},
				},
				map[string]any{
					"@type":           "type.googleapis.com/google.rpc.BadRequest",
					"fieldViolations": []any{map[string]any{"field": "quantity", "description": "too many"}},
				},
			},
		}
		if r.status != 400 || !jsonEqual(r.json, want) {
			t.Errorf("%d %s, want 400 %s", r.status, r.raw, mustJSON(t, want))
		}
	})
}

// TestRequestErrors checks the errors of requests that do not make a call:
// no route, the wrong method, a body or parameter that does not decode.
func TestRequestErrors(t *testing.T) {
	b := newBackend(t)
	base := b.serve(t, nil)
	tests := []struct {
		name         string
		method, path string
		body         string
		status       int
		code, msg    string
	}{
		{"no route", "GET", "/v1/nope", "", 404, "NOT_FOUND", "no route for GET /v1/nope"},
		{"no route outside /v1", "GET", "/metrics", "", 404, "NOT_FOUND", "no route for GET /metrics"},
		{"method not allowed", "PUT", "/v1/users/u_1", "", 405, "UNIMPLEMENTED", "method not allowed"},
		{"POST to healthz", "POST", "/healthz", "", 404, "NOT_FOUND", "no route for POST /healthz"},
		{"a method the service does not implement", "GET", "/v1/users", "", 501, "UNIMPLEMENTED", "method ListUsers not implemented"},
		{"malformed JSON", "POST", "/v1/users", `{"email":`, 400, "INVALID_ARGUMENT", "malformed JSON: the request body ends too early"},
		{"not JSON", "POST", "/v1/users", `email=a`, 400, "INVALID_ARGUMENT", "malformed JSON in the request body"},
		{"unknown field", "POST", "/v1/users", `{"nope":1}`, 400, "INVALID_ARGUMENT", `request body: unknown field "nope"`},
		{"wrong type in the body", "POST", "/v1/products", `{"priceCents":"abc"}`, 400, "INVALID_ARGUMENT", `request body: invalid value for int64 field priceCents: "abc"`},
		{"bad query parameter", "GET", "/v1/users/u_1/orders?pageSize=many", "", 400, "INVALID_ARGUMENT",
			`invalid value for query parameter "pageSize"`},
		{"data after the JSON object", "POST", "/v1/users", `{"email":"a@b.c"} {"x":1}`, 400, "INVALID_ARGUMENT",
			"unexpected data after the JSON object in the request body"},
		{"garbage after the JSON object", "POST", "/v1/users", "{\"email\":\"a@b.c\"}\n]", 400, "INVALID_ARGUMENT",
			"unexpected data after the JSON object in the request body"},
		{"invalid UTF-8 in a path", "GET", "/v1/products/%ff", "", 400, "INVALID_ARGUMENT", `path segment "%ff" is not valid UTF-8`},
		{"invalid UTF-8 in a query", "GET", "/v1/products?query=%ff", "", 400, "INVALID_ARGUMENT", `query parameter "query" is not valid UTF-8`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			wantError(t, do(t, base, tt.method, tt.path, tt.body), tt.status, tt.code, tt.msg)
		})
	}
}

// TestErrorBodiesAreNotHTMLEscaped checks that error messages keep <, > and
// & as written: the body is JSON, not HTML.
func TestErrorBodiesAreNotHTMLEscaped(t *testing.T) {
	b := newBackend(t)
	base := b.serve(t, nil)
	r := do(t, base, "GET", "/v1/users/me", "", "Authorization", "Basic x")
	wantError(t, r, 401, "UNAUTHENTICATED", `authorization header must be "Bearer <token>"`)
	if !strings.Contains(string(r.raw), `Bearer <token>`) {
		t.Errorf("body %s escapes the message", r.raw)
	}
}

// TestAnonymousRefusedBeforeDecoding checks that a request without
// credentials of a route that is not public is 401, with the services'
// error, whatever its body or query, and reaches no service; public routes
// still decode first, and a bad token is refused as before.
func TestAnonymousRefusedBeforeDecoding(t *testing.T) {
	b := newBackend(t)
	base := b.serve(t, func(c *gateway.Config) { c.Public = app.PublicMethod })
	const msg = "authentication required: send a bearer token"
	tests := []struct {
		name, method, path, body string
	}{
		{"truncated JSON", "POST", "/v1/orders", `{"items": `},
		{"unknown field", "POST", "/v1/orders", `{"foo":1}`},
		{"bad query parameter", "GET", "/v1/users/me/orders?pageSize=abc", ""},
		{"malformed JSON", "POST", "/v1/products", `{`},
		{"well-formed", "POST", "/v1/orders", `{}`},
		{"bad path parameter type", "PATCH", "/v1/users/u_1", `{"displayName": 1}`},
		{"watch", "GET", "/v1/orders/o_1:watch", ""},
		{"import", "POST", "/v1/products:import", "{\"nme\":1}\n"},
		{"dashboard", "GET", "/v1/users/u_1/dashboard", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := do(t, base, tt.method, tt.path, tt.body)
			wantError(t, r, 401, "UNAUTHENTICATED", msg)
			if got := r.header.Get("WWW-Authenticate"); got != `Bearer realm="shop"` {
				t.Errorf("WWW-Authenticate %q", got)
			}
		})
	}
	for _, m := range []string{"CreateOrder", "ListUserOrders", "CreateProduct", "UpdateUser", "GetUser", "WatchOrder", "ImportProducts"} {
		if n := b.rec.calls(m); n != 0 {
			t.Errorf("%d calls of %s reached the service", n, m)
		}
	}
	t.Run("public routes decode first", func(t *testing.T) {
		wantError(t, do(t, base, "POST", "/v1/users", `{"nope":1}`), 400, "INVALID_ARGUMENT", `request body: unknown field "nope"`)
		wantError(t, do(t, base, "POST", "/v1/auth:login", `{`), 400, "INVALID_ARGUMENT", "malformed JSON: the request body ends too early")
		wantError(t, do(t, base, "GET", "/v1/products?pageSize=abc", ""), 400, "INVALID_ARGUMENT", `invalid value for query parameter "pageSize"`)
	})
	t.Run("a bad token is refused as before", func(t *testing.T) {
		r := do(t, base, "POST", "/v1/orders", `{"items": `, "Authorization", "Basic x")
		wantError(t, r, 401, "UNAUTHENTICATED", `authorization header must be "Bearer <token>"`)
	})
	t.Run("with a token the body is decoded", func(t *testing.T) {
		r := do(t, base, "POST", "/v1/orders", `{"foo":1}`, bearer(b.token(t, "u_1", auth.RoleCustomer))...)
		wantError(t, r, 400, "INVALID_ARGUMENT", `request body: unknown field "foo"`)
	})
}

// TestImportLineErrors checks that an import's body is decoded line by
// line before anything is sent: a line that does not decode answers 400
// naming it, in the message and in a BadRequest field violation, and the
// service sees no call.
func TestImportLineErrors(t *testing.T) {
	b := newBackend(t)
	base := b.serve(t, func(c *gateway.Config) { c.Public = app.PublicMethod })
	tok := bearer(b.token(t, "admin", auth.RoleAdmin))
	ok := `{"sku":"UF-1","name":"n","priceCents":1}`
	tests := []struct {
		name, body, field, problem string
	}{
		{"unknown field", ok + "\n" + `{"sku":"x","nme":"y"}` + "\n", "line 2", `unknown field "nme"`},
		{"two objects on a line", ok + " " + ok + "\n", "line 1", "unexpected data after the JSON object"},
		{"empty line", ok + "\n\n" + ok + "\n", "line 2", "empty line: send one JSON object per line"},
		{"truncated", ok + "\n" + ok + "\n" + `{"sku":`, "line 3", "malformed JSON: the line ends too early"},
		{"not JSON", "sku=x\n", "line 1", "malformed JSON"},
		{"wrong type", ok + "\r\n" + `{"priceCents":"abc"}`, "line 2", `invalid value for int64 field priceCents: "abc"`},
		// The line's words are not reworded again as a body's error: the
		// value quoted here is what the client sent, not a JSON error.
		{"value that reads like an error", ok + "\n" + `{"priceCents":"invalid character"}`, "line 2", `invalid value for int64 field priceCents: "invalid character"`},
		// More lines than productsvc takes: refused before any is sent, so
		// the service never applies the first 10,000 and fails the rest.
		{"too many lines", strings.Repeat(ok+"\n", gateway.MaxImportLines+1), "line 10001", "beyond the 10000 lines an import may have"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := do(t, base, "POST", "/v1/products:import", tt.body, tok...)
			want := map[string]any{
				"code":    "INVALID_ARGUMENT",
				"message": importMessage(tt.field, tt.problem),
				"details": []any{map[string]any{
					"@type":           "type.googleapis.com/google.rpc.BadRequest",
					"fieldViolations": []any{map[string]any{"field": tt.field, "description": tt.problem}},
				}},
			}
			if r.status != 400 || !jsonEqual(normalizeNBSP(r.json), want) {
				t.Errorf("%d %s, want 400 %s", r.status, r.raw, mustJSON(t, want))
			}
		})
	}
	t.Run("a good body reaches the service", func(t *testing.T) {
		r := do(t, base, "POST", "/v1/products:import", ok+"\n"+ok+"\n\n", tok...)
		if r.status != 501 {
			t.Errorf("%d %s, want the test service's 501", r.status, r.raw)
		}
	})
}

// importMessage is the message of an import refused for problem at
// field: "line N: problem", or the whole import's for one too long.
func importMessage(field, problem string) string {
	if strings.HasPrefix(problem, "beyond the") {
		return fmt.Sprintf("an import carries at most %d products, one per line; this one has %d lines", gateway.MaxImportLines, gateway.MaxImportLines+1)
	}
	return field + ": " + problem
}

// normalizeNBSP replaces the no-break spaces protobuf-go's errors put in
// their words (see wantError) in every string of v.
func normalizeNBSP(v any) any {
	switch v := v.(type) {
	case string:
		return strings.ReplaceAll(v, "\u00a0", " ")
	case []any:
		out := make([]any, len(v))
		for i, e := range v {
			out[i] = normalizeNBSP(e)
		}
		return out
	case map[string]any:
		out := make(map[string]any, len(v))
		for k, e := range v {
			out[k] = normalizeNBSP(e)
		}
		return out
	}
	return v
}
