package kafkatransport_test

import (
	"context"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kgrpc/platform/kafkatransport"
	testingv1 "github.com/kgrpc/platform/kafkatransport/gen/kgrpc/testing/v1"
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

// A request in its handler past the stall timeout makes Health report the
// partition stalled; once the handler returns, Health is nil again.
func TestServerHealthReportsStall(t *testing.T) {
	e := newEnv(t)
	impl := &stubborn{started: make(chan struct{}, 1), release: make(chan struct{})}
	srv, err := kafkatransport.NewServer(e.brokers, e.common(), testReplyTopics, kafkatransport.WithStallTimeout(300*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	testingv1.RegisterEchoServiceKafkaServer(srv, impl)
	e.run(srv)
	release := sync.OnceFunc(func() { close(impl.release) })
	t.Cleanup(release) // before the stop: cleanups run last first
	if err := srv.Health(); err != nil {
		t.Fatalf("Health of an idle server = %v", err)
	}
	e.rawRequester().send("/stuck")
	select {
	case <-impl.started:
	case <-time.After(30 * time.Second):
		t.Fatal("handler not started after 30s")
	}
	var reason error
	if !waitUntil(10*time.Second, func() bool { reason = srv.Health(); return reason != nil }) {
		t.Fatal("Health = nil while a handler is stuck past the stall timeout")
	}
	if !strings.Contains(reason.Error(), "partition 0 of "+e.prefix+testingv1.EchoServiceKafkaTopic+" stalled") {
		t.Errorf("Health = %q, want partition 0 stalled", reason)
	}
	release()
	if !waitUntil(10*time.Second, func() bool { reason = srv.Health(); return reason == nil }) {
		t.Fatalf("Health = %v once the handler returned, want nil", reason)
	}
}
