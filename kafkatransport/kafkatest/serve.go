package kafkatest

import (
	"bytes"
	"context"
	"runtime/pprof"
	"sync"
	"testing"
	"time"

	"github.com/kgrpc/platform/kafkatransport"
)

// Serve runs srv, with its services registered, until t has finished: it
// returns once srv is ready (its request topics exist and its consumers
// have joined), and stops it gracefully in t's cleanup, failing t if Serve
// fails or has not returned a minute after the stop (with every
// goroutine's stack, to show where it hangs). The function it returns
// stops srv the same way sooner; calling it again does nothing. Give srv
// and the clients of the test the same
// kafkatransport.WithTopicPrefix(TopicPrefix(t)), so that tests sharing a
// real cluster do not collide.
func Serve(t testing.TB, srv *kafkatransport.Server) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx) }()
	select {
	case <-srv.Ready():
	case err := <-done:
		cancel()
		t.Fatalf("kafkatest: Serve: %v", err)
	case <-time.After(time.Minute):
		cancel()
		t.Fatal("kafkatest: server not ready after a minute")
	}
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			select {
			case err := <-done:
				if err != nil {
					t.Errorf("kafkatest: Serve returned %v", err)
				}
			case <-time.After(time.Minute):
				var stacks bytes.Buffer
				_ = pprof.Lookup("goroutine").WriteTo(&stacks, 1)
				t.Errorf("kafkatest: Serve did not return a minute after its stop; goroutines:\n%s", stacks.String())
			}
		})
	}
	t.Cleanup(stop)
	return stop
}

// Dial returns a client of brokers, closed when t has finished. It fails t
// if the client cannot start within 30 seconds.
func Dial(t testing.TB, brokers string, opts ...kafkatransport.ClientOption) *kafkatransport.ClientConn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cc, err := kafkatransport.Dial(ctx, brokers, opts...)
	if err != nil {
		t.Fatalf("kafkatest: Dial: %v", err)
	}
	t.Cleanup(func() {
		if err := cc.Close(); err != nil {
			t.Errorf("kafkatest: close client: %v", err)
		}
	})
	return cc
}
