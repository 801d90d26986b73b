package kafkatransport_test

import (
	"context"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	testingv1 "github.com/kgrpc/platform/gen/kgrpc/testing/v1"
	"github.com/kgrpc/platform/kafkatransport"
	"github.com/kgrpc/platform/kafkatransport/trust"
)

// With Guards on both sides, a call of a method the client's unit may call
// runs and its handler sees the calling unit; one it may not call is
// answered PermissionDenied without running; and a client with no Guard,
// whose request is not sealed, gets no answer (it is dead-lettered).
func TestGuardedCalls(t *testing.T) {
	e := newEnv(t)
	ring, keys, err := trust.Generate(time.Now(), "caller", "echo")
	if err != nil {
		t.Fatal(err)
	}
	policy := trust.Policy{Owners: map[string]string{"kgrpc.testing.v1": "echo"},
		Calls: map[string][]string{"caller": {testingv1.EchoService_Echo_FullMethodName}}}
	guard := func(unit string) kafkatransport.Option {
		g, err := trust.NewGuard(keys[unit], ring, policy)
		if err != nil {
			t.Fatal(err)
		}
		return kafkatransport.WithGuard(g)
	}
	impl := newEcho("a")
	callers := make(chan string, 10)
	seeCaller := kafkatransport.WithUnaryServerInterceptors(func(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
		ri, _ := kafkatransport.RequestFromContext(ctx)
		callers <- ri.Caller
		return h(ctx, req)
	})
	e.serve(impl, guard("echo"), seeCaller)
	c := testingv1.NewEchoServiceKafkaClient(e.dial(guard("caller")))
	if _, err := c.Echo(ctxTimeout(t, 30*time.Second), &testingv1.EchoRequest{Message: "hi"}); err != nil {
		t.Fatalf("Echo: %v", err)
	}
	if got := <-callers; got != "caller" {
		t.Fatalf("the handler saw caller %q", got)
	}
	_, err = c.Sleep(ctxTimeout(t, 30*time.Second), &testingv1.SleepRequest{Id: "denied", DurationMs: 1})
	if status.Code(err) != codes.PermissionDenied || impl.startedCount("denied") != 0 {
		t.Fatalf("Sleep = %v (ran %d times), want PermissionDenied without running", err, impl.startedCount("denied"))
	}
	plain := testingv1.NewEchoServiceKafkaClient(e.dial())
	_, err = plain.Echo(ctxTimeout(t, 3*time.Second), &testingv1.EchoRequest{Message: "unsealed"})
	if status.Code(err) != codes.DeadlineExceeded {
		t.Fatalf("unsealed Echo = %v, want no answer", err)
	}
	letters := e.readRecords(e.prefix+testingv1.EchoServiceKafkaTopic+".dlq", 1)
	if hs := headerMap(letters[0]); hs["dlq-error"] != "not a sealed value" {
		t.Errorf("dead letter reason %q", hs["dlq-error"])
	}
}
