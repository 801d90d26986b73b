package kafkaprom

import (
	"context"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/kgrpc/platform/kafkatransport/breaker"
)

func TestCircuits(t *testing.T) {
	b, err := breaker.New(breaker.WithFailures(1))
	if err != nil {
		t.Fatal(err)
	}
	ic := b.UnaryClientInterceptor()
	call := func(method string, err error) {
		_ = ic(context.Background(), method, nil, nil, nil, func(context.Context, string, any, any, *grpc.ClientConn, ...grpc.CallOption) error { return err })
	}
	call("/shop.users.v1.UserService/GetUser", nil)
	call("/shop.products.v1.ProductService/GetProduct", status.Error(codes.Unavailable, "down")) // opens
	call("/shop.products.v1.ProductService/GetProduct", nil)                                     // shed
	call("/shop.products.v1.ProductService/GetProduct", nil)                                     // shed
	want := `
# HELP kgrpc_client_calls_shed_total Calls a client failed at once without sending them: reason CIRCUIT_OPEN (the service's circuit is open or probing) or OVERLOADED (too many of its calls in flight).
# TYPE kgrpc_client_calls_shed_total counter
kgrpc_client_calls_shed_total{reason="CIRCUIT_OPEN",service="shop.products.v1.ProductService"} 2
kgrpc_client_calls_shed_total{reason="CIRCUIT_OPEN",service="shop.users.v1.UserService"} 0
kgrpc_client_calls_shed_total{reason="OVERLOADED",service="shop.products.v1.ProductService"} 0
kgrpc_client_calls_shed_total{reason="OVERLOADED",service="shop.users.v1.UserService"} 0
# HELP kgrpc_client_circuit_state State of a client's circuit breaker for a downstream service: 0 closed, 1 half-open, 2 open.
# TYPE kgrpc_client_circuit_state gauge
kgrpc_client_circuit_state{service="shop.products.v1.ProductService"} 2
kgrpc_client_circuit_state{service="shop.users.v1.UserService"} 0
`
	if err := testutil.CollectAndCompare(NewCircuits(b), strings.NewReader(want)); err != nil {
		t.Fatal(err)
	}
}
