package gateway_test

import (
	"context"
	"net/http"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"

	"github.com/kgrpc/platform/gateway"
	productsv1 "github.com/kgrpc/platform/gen/shop/products/v1"
	"github.com/kgrpc/platform/internal/auth"
	"github.com/kgrpc/platform/kafkatransport/breaker"
)

// intercepted runs ic around the unary calls of cc, as
// kafkatransport.WithUnaryClientInterceptors does on a client.
type intercepted struct {
	grpc.ClientConnInterface
	ic grpc.UnaryClientInterceptor
}

func (i intercepted) Invoke(ctx context.Context, method string, args, reply any, opts ...grpc.CallOption) error {
	return i.ic(ctx, method, args, reply, nil, func(ctx context.Context, method string, args, reply any, _ *grpc.ClientConn, opts ...grpc.CallOption) error {
		return i.ClientConnInterface.Invoke(ctx, method, args, reply, opts...)
	}, opts...)
}

// withBreaker returns a gateway configuration whose Products client goes
// through br, as RunGateway's client does.
func (b *backend) withBreaker(br *breaker.Breaker, timeout time.Duration) func(*gateway.Config) {
	return func(c *gateway.Config) {
		c.Products = productsv1.NewProductServiceClient(intercepted{b.conn.Service(productsv1.ProductServiceKafkaSpec), br.UnaryClientInterceptor()})
		c.Breaker = br
		c.RequestTimeout = timeout
	}
}

// refused gets a product from the gateway at base and checks that the
// answer is, within 100ms, the 503 UNAVAILABLE of a breaker's refusal for
// reason with Retry-After retryAfter.
func refused(t *testing.T, base, reason, retryAfter string) {
	t.Helper()
	start := time.Now()
	r := do(t, base, "GET", "/v1/products/p_1", "")
	if took := time.Since(start); took > 100*time.Millisecond {
		t.Errorf("refusal took %v", took)
	}
	if r.status != http.StatusServiceUnavailable || r.json["code"] != "UNAVAILABLE" {
		t.Fatalf("status %d, body %s; want 503 UNAVAILABLE", r.status, r.raw)
	}
	if got := r.header.Get("Retry-After"); got != retryAfter {
		t.Errorf("Retry-After %q, want %q", got, retryAfter)
	}
	details, _ := r.json["details"].([]any)
	for _, d := range details {
		if m, _ := d.(map[string]any); m["reason"] == reason {
			return
		}
	}
	t.Errorf("details %v have no ErrorInfo with reason %s", details, reason)
}

func TestCircuitOpenAnswers503WithRetryAfter(t *testing.T) {
	b := newBackend(t)
	br, err := breaker.New(breaker.WithFailures(2), breaker.WithOpenFor(3*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	base := b.serve(t, b.withBreaker(br, 500*time.Millisecond))
	if r := do(t, base, "GET", "/v1/products/p_1", ""); r.status != http.StatusOK {
		t.Fatalf("first call: %d %s", r.status, r.raw)
	}
	// Business errors are answers: the circuit stays closed.
	for range 3 {
		if r := do(t, base, "GET", "/v1/products/code-5", ""); r.status != http.StatusNotFound {
			t.Fatalf("NotFound: %d %s", r.status, r.raw)
		}
	}
	for range 2 {
		if r := do(t, base, "GET", "/v1/products/slow", ""); r.status != http.StatusGatewayTimeout {
			t.Fatalf("slow call: %d %s, want 504", r.status, r.raw)
		}
	}
	refused(t, base, breaker.ReasonCircuitOpen, "3")
	// Other services' calls do not go through this circuit.
	if r := do(t, base, "GET", "/v1/users/u_1", "", bearer(b.token(t, "u_1", auth.RoleCustomer))...); r.status != http.StatusOK {
		t.Errorf("users call with the products circuit open: %d %s", r.status, r.raw)
	}
	ready := do(t, base, "GET", "/readyz", "")
	circuits, _ := ready.json["circuits"].(map[string]any)
	if circuits["shop.products.v1.ProductService"] != "open" || ready.status != http.StatusOK {
		t.Errorf("/readyz %d %s: want ready, the products circuit shown open", ready.status, ready.raw)
	}
}

func TestInFlightBoundAnswers503(t *testing.T) {
	b := newBackend(t)
	br, err := breaker.New(breaker.WithMaxInFlight(2))
	if err != nil {
		t.Fatal(err)
	}
	base := b.serve(t, b.withBreaker(br, 2*time.Second))
	if r := do(t, base, "GET", "/v1/products/p_1", ""); r.status != http.StatusOK {
		t.Fatalf("first call: %d %s", r.status, r.raw)
	}
	var wg sync.WaitGroup
	for range 2 {
		wg.Go(func() { do(t, base, "GET", "/v1/products/slow", "") })
	}
	deadline := time.Now().Add(time.Second)
	for br.Stats()[0].InFlight < 2 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	refused(t, base, breaker.ReasonOverloaded, "1")
	wg.Wait()
	if r := do(t, base, "GET", "/v1/products/p_1", ""); r.status != http.StatusOK {
		t.Fatalf("call once the slow ones ended: %d %s", r.status, r.raw)
	}
}
