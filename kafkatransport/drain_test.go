package kafkatransport_test

import (
	"context"
	"runtime"
	"strings"
	"testing"
	"time"

	testingv1 "github.com/kgrpc/platform/gen/kgrpc/testing/v1"
	"github.com/kgrpc/platform/kafkatransport"
)

// stubborn is an echo service whose Echo ignores cancellation: it returns
// only once release is closed.
type stubborn struct {
	testingv1.UnimplementedEchoServiceServer
	started chan struct{}
	release chan struct{}
}

func (s *stubborn) Echo(context.Context, *testingv1.EchoRequest) (*testingv1.EchoResponse, error) {
	s.started <- struct{}{}
	<-s.release
	return &testingv1.EchoResponse{}, nil
}

// A handler that ignores cancellation outlives Serve, which returns after
// the drain timeout and its grace period, but Serve leaves no goroutine of
// its own behind waiting for it.
func TestStopLeavesNoWaiterBehindStubbornHandler(t *testing.T) {
	e := newEnv(t)
	impl := &stubborn{started: make(chan struct{}, 1), release: make(chan struct{})}
	t.Cleanup(func() { close(impl.release) })
	stop := e.serve(impl, kafkatransport.WithDrainTimeout(100*time.Millisecond))
	e.rawRequester().send("/stubborn")
	select {
	case <-impl.started:
	case <-time.After(30 * time.Second):
		t.Fatal("handler not started after 30s")
	}
	stop() // returns once Serve has given up on the handler
	buf := make([]byte, 1<<20)
	for _, g := range strings.Split(string(buf[:runtime.Stack(buf, true)]), "\n\n") {
		if strings.Contains(g, "kafkatransport") && strings.Contains(g, "sync.(*WaitGroup).Wait") {
			t.Fatalf("goroutine left waiting for the handler after Serve returned:\n%s", g)
		}
	}
}
