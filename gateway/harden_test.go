package gateway_test

import (
	"bufio"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/kgrpc/platform/gateway"
	"github.com/kgrpc/platform/internal/auth"
	"github.com/kgrpc/platform/kafkatransport"
)

// A client that sends its body a byte at a time is cut off at the request
// timeout with 408, instead of holding the connection as long as it likes.
func TestSlowBodyCutOff(t *testing.T) {
	b := newBackend(t)
	base := b.serve(t, func(c *gateway.Config) { c.RequestTimeout = time.Second })
	u, _ := url.Parse(base)
	conn, err := net.Dial("tcp", u.Host)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	start := time.Now()
	if _, err := conn.Write([]byte("POST /v1/users HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n")); err != nil {
		t.Fatal(err)
	}
	stop := make(chan struct{})
	defer close(stop)
	go func() { // one byte every 200ms, far too slow for 100 bytes in 1s
		for {
			select {
			case <-stop:
				return
			case <-time.After(200 * time.Millisecond):
				if _, err := conn.Write([]byte(" ")); err != nil {
					return
				}
			}
		}
	}()
	_ = conn.SetReadDeadline(time.Now().Add(20 * time.Second))
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatalf("no answer to a slow body after %v: %v", time.Since(start), err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusRequestTimeout {
		t.Fatalf("status %d after %v, want 408", resp.StatusCode, time.Since(start))
	}
	t.Logf("slow body answered 408 after %v (request timeout 1s)", time.Since(start).Round(time.Millisecond))
}

// A body within the gateway's limit whose request is too large for the
// message bus is 413 with a message of ours, not the 429 of a rate limit.
func TestRequestTooLargeForTheBus(t *testing.T) {
	b := newBackend(t)
	base := b.serve(t, nil)
	body := `{"email":"a@example.com","password":"pw-123456","displayName":"` + strings.Repeat("x", 1_010_000) + `"}`
	r := do(t, base, "POST", "/v1/users", body)
	details, _ := r.json["details"].([]any)
	info, _ := func() (map[string]any, bool) {
		if len(details) != 1 {
			return nil, false
		}
		m, ok := details[0].(map[string]any)
		return m, ok
	}()
	if r.status != http.StatusRequestEntityTooLarge || r.json["code"] != "RESOURCE_EXHAUSTED" || r.json["message"] != "request too large to send to the service" ||
		info["reason"] != kafkatransport.ReasonRequestTooLarge || info["domain"] != kafkatransport.ErrorDomain {
		t.Fatalf("%d %s, want 413 RESOURCE_EXHAUSTED with the transport's ErrorInfo", r.status, r.raw)
	}
}

func TestSecurityHeaders(t *testing.T) {
	b := newBackend(t)
	base := b.serve(t, nil)
	tok := "Bearer " + b.token(t, "u_alice", auth.RoleCustomer)
	tests := []struct {
		name      string
		path      string
		header    []string
		wantCache string
	}{
		{"anonymous", "/v1/products/p_1", nil, ""},
		{"authenticated", "/v1/products/p_1", []string{"Authorization", tok}, "no-store"},
		{"an error", "/v1/nope", nil, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := do(t, base, "GET", tt.path, "", tt.header...)
			if got := r.header.Get("X-Content-Type-Options"); got != "nosniff" {
				t.Errorf("X-Content-Type-Options = %q, want nosniff", got)
			}
			if got := r.header.Get("Cache-Control"); got != tt.wantCache {
				t.Errorf("Cache-Control = %q, want %q", got, tt.wantCache)
			}
		})
	}
}

func TestCORS(t *testing.T) {
	b := newBackend(t)
	allowed := b.serve(t, func(c *gateway.Config) { c.CORSOrigins = []string{"https://shop.example.com"} })
	closed := b.serve(t, nil)
	preflight := []string{"Origin", "https://shop.example.com", "Access-Control-Request-Method", "POST", "Access-Control-Request-Headers", "authorization, content-type"}
	tests := []struct {
		name       string
		base       string
		method     string
		header     []string
		status     int
		wantOrigin string
	}{
		{"preflight from an allowed origin", allowed, "OPTIONS", preflight, 204, "https://shop.example.com"},
		{"request from an allowed origin", allowed, "GET", []string{"Origin", "https://shop.example.com"}, 200, "https://shop.example.com"},
		{"preflight from another origin", allowed, "OPTIONS", []string{"Origin", "https://evil.example", "Access-Control-Request-Method", "POST"}, 403, ""},
		{"request from another origin", allowed, "GET", []string{"Origin", "https://evil.example"}, 200, ""},
		{"no origins configured", closed, "OPTIONS", preflight, 405, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := do(t, tt.base, tt.method, "/v1/products/p_1", "", tt.header...)
			if r.status != tt.status || r.header.Get("Access-Control-Allow-Origin") != tt.wantOrigin {
				t.Fatalf("status %d, Access-Control-Allow-Origin %q; want %d, %q (body %s)", r.status, r.header.Get("Access-Control-Allow-Origin"), tt.status, tt.wantOrigin, r.raw)
			}
			if tt.status == 204 {
				if m := r.header.Get("Access-Control-Allow-Methods"); !strings.Contains(m, "POST") {
					t.Errorf("Access-Control-Allow-Methods = %q", m)
				}
				if h := r.header.Get("Access-Control-Allow-Headers"); !strings.Contains(h, "Authorization") || !strings.Contains(h, "Idempotency-Key") ||
					!strings.Contains(h, "X-Request-Id") || !strings.Contains(h, "traceparent") {
					t.Errorf("Access-Control-Allow-Headers = %q", h)
				}
			}
		})
	}
}

func TestAuthRateLimit(t *testing.T) {
	b := newBackend(t)
	base := b.serve(t, func(c *gateway.Config) { c.AuthRateLimit = 3 })
	// from posts a login as email from the loopback address ip, so that
	// addresses and emails can be told apart.
	from := func(ip, path, email string) reply {
		t.Helper()
		client := &http.Client{Transport: &http.Transport{DialContext: (&net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(ip)}}).DialContext}}
		req, err := http.NewRequest("POST", base+path, strings.NewReader(`{"email":"`+email+`","password":"wrong-password","displayName":"N"}`))
		if err != nil {
			t.Fatal(err)
		}
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		raw, _ := io.ReadAll(resp.Body)
		return reply{status: resp.StatusCode, header: resp.Header, raw: raw}
	}
	t.Run("per email", func(t *testing.T) {
		for i, ip := range []string{"127.0.0.2", "127.0.0.3", "127.0.0.4"} {
			if r := from(ip, "/v1/auth:login", "Victim@Example.com"); r.status == http.StatusTooManyRequests {
				t.Fatalf("attempt %d: 429 within the limit", i+1)
			}
		}
		r := from("127.0.0.5", "/v1/auth:login", " victim@example.com") // a fresh address, the same email however written
		if r.status != http.StatusTooManyRequests || r.header.Get("Retry-After") != "20" || !strings.Contains(string(r.raw), "retry in 20 s") {
			t.Fatalf("4th guess at one email: %d, Retry-After %q, %s; want 429, 20 (a token every 20s at 3 a minute)", r.status, r.header.Get("Retry-After"), r.raw)
		}
	})
	t.Run("per client address", func(t *testing.T) {
		for i := range 3 {
			if r := from("127.0.0.6", "/v1/auth:login", fmt.Sprint("user", i, "@example.com")); r.status == http.StatusTooManyRequests {
				t.Fatalf("attempt %d: 429 within the limit", i+1)
			}
		}
		// Registration counts too.
		if r := from("127.0.0.6", "/v1/users", "someone-new@example.com"); r.status != http.StatusTooManyRequests || r.header.Get("Retry-After") == "" {
			t.Fatalf("4th attempt from one address: %d %s, want 429 with Retry-After", r.status, r.raw)
		}
	})
	t.Run("other routes are not limited", func(t *testing.T) {
		if r := do(t, base, "GET", "/v1/products/p_1", ""); r.status != http.StatusOK {
			t.Fatalf("GET: %d %s", r.status, r.raw)
		}
	})
}

// Headers over the limit are refused 431 in the JSON error format.
func TestHeadersTooLarge(t *testing.T) {
	b := newBackend(t)
	base := b.serve(t, nil)
	r := do(t, base, "GET", "/v1/products/p_1", "", "X-Padding", strings.Repeat("x", gateway.DefaultMaxHeaderBytes))
	if r.status != http.StatusRequestHeaderFieldsTooLarge || r.json["code"] != "RESOURCE_EXHAUSTED" ||
		r.json["message"] != fmt.Sprintf("request headers larger than %d bytes", gateway.DefaultMaxHeaderBytes) {
		t.Fatalf("%d %s, want 431 RESOURCE_EXHAUSTED", r.status, r.raw)
	}
	if r := do(t, base, "GET", "/v1/products/p_1", "", "X-Padding", strings.Repeat("x", 1000)); r.status != http.StatusOK {
		t.Fatalf("small headers: %d %s", r.status, r.raw)
	}
}

// /.well-known/jwks.json serves the public keys that verify user tokens:
// a token's kid is among them, with the EdDSA algorithm, and no private or
// sealing key is.
func TestJWKS(t *testing.T) {
	b := newBackend(t)
	base := b.serve(t, nil)
	r := do(t, base, "GET", "/.well-known/jwks.json", "")
	if r.status != http.StatusOK || r.header.Get("Content-Type") != "application/jwk-set+json" {
		t.Fatalf("%d %s %s", r.status, r.header.Get("Content-Type"), r.raw)
	}
	var set struct{ Keys []map[string]any }
	if err := json.Unmarshal(r.raw, &set); err != nil {
		t.Fatal(err)
	}
	keys := set.Keys
	tok := b.token(t, "u_alice", auth.RoleCustomer)
	hdr, _ := base64.RawURLEncoding.DecodeString(strings.Split(tok, ".")[0])
	var h map[string]string
	if err := json.Unmarshal(hdr, &h); err != nil {
		t.Fatal(err)
	}
	found := false
	for _, k := range keys {
		if k["kty"] != "OKP" || k["crv"] != "Ed25519" || k["alg"] != "EdDSA" || k["use"] != "sig" || k["d"] != nil {
			t.Errorf("key %v: want a public Ed25519 signing key", k)
		}
		found = found || k["kid"] == h["kid"]
	}
	if !found || h["alg"] != "EdDSA" {
		t.Fatalf("token header %v: its kid is not among %v", h, keys)
	}
}

// A request with two Authorization headers, the first empty, is refused,
// and no value of the header reaches a service: a token never goes on the
// bus.
func TestDuplicateAuthorization(t *testing.T) {
	b := newBackend(t)
	base := b.serve(t, nil)
	alice := "Bearer " + b.token(t, "u_alice", auth.RoleCustomer)
	for _, vals := range [][]string{{"", alice}, {alice, alice}, {""}} {
		before := b.rec.calls("GetUser")
		req, err := http.NewRequest("GET", base+"/v1/users/me", nil)
		if err != nil {
			t.Fatal(err)
		}
		req.Header["Authorization"] = vals
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusUnauthorized || b.rec.calls("GetUser") != before {
			t.Errorf("Authorization %q: %d, service reached %v; want 401, not reached", vals, resp.StatusCode, b.rec.calls("GetUser") != before)
		}
	}
	// A verified call reaches the service without the header.
	r := do(t, base, "GET", "/v1/users/me", "", "Authorization", alice)
	c, _ := b.rec.lastCall("GetUser")
	if r.status != http.StatusOK || len(c.md.Get("authorization")) != 0 {
		t.Fatalf("%d; the service saw authorization metadata %q", r.status, c.md.Get("authorization"))
	}
}
