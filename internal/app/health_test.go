package app

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// /readyz follows the unit: 503 until it is ready, 200 while it serves and
// its checks pass, 503 with the reason while one fails and once it is
// stopping; /healthz answers while it drains. A failing unit's error comes
// back, and a taken address stops the unit.
func TestRunWithHealth(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	var body string
	get := func(path string) int {
		resp, err := http.Get("http://" + addr + path)
		if err != nil {
			return 0
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		body = string(b)
		return resp.StatusCode
	}
	ready := new(Ready)
	var problem atomic.Pointer[error]
	ready.Watch(func() error {
		if p := problem.Load(); p != nil {
			return *p
		}
		return nil
	})
	ctx, cancel := context.WithCancel(context.Background())
	stopping, release := make(chan struct{}), make(chan struct{})
	failure := errors.New("unit failed")
	done := make(chan error, 1)
	go func() {
		done <- runWithHealth(ctx, addr, ready, slog.New(slog.DiscardHandler), nil, func(ctx context.Context) error {
			<-ctx.Done()
			close(stopping)
			<-release // draining
			return failure
		})
	}()
	waitFor(t, func() bool { return get("/healthz") == http.StatusOK })
	if got := get("/readyz"); got != http.StatusServiceUnavailable {
		t.Fatalf("/readyz before ready = %d", got)
	}
	ready.Set()
	if got := get("/readyz"); got != http.StatusOK {
		t.Fatalf("/readyz when ready = %d", got)
	}
	stall := errors.New("partition 3 of orders stalled")
	problem.Store(&stall)
	if got := get("/readyz"); got != http.StatusServiceUnavailable || !strings.Contains(body, stall.Error()) {
		t.Fatalf("/readyz while a check fails = %d %q, want 503 with the reason", got, body)
	}
	problem.Store(nil)
	if got := get("/readyz"); got != http.StatusOK {
		t.Fatalf("/readyz once the check passes again = %d %q", got, body)
	}
	cancel()
	<-stopping
	if h, r := get("/healthz"), get("/readyz"); h != http.StatusOK || r != http.StatusServiceUnavailable {
		t.Fatalf("while draining: /healthz %d, /readyz %d; want 200, 503", h, r)
	}
	close(release)
	if err := <-done; !errors.Is(err, failure) {
		t.Fatalf("runWithHealth = %v, want the unit's error", err)
	}
	if got := get("/healthz"); got != 0 {
		t.Fatalf("/healthz after the unit stopped = %d, want no listener", got)
	}

	// The address is taken: the unit is not left running.
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	err = runWithHealth(context.Background(), taken.Addr().String(), new(Ready), slog.New(slog.DiscardHandler), nil, func(ctx context.Context) error {
		t.Error("the unit ran although its health address is taken")
		return nil
	})
	if err == nil || !strings.Contains(err.Error(), "health") {
		t.Fatalf("taken address: %v", err)
	}
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met within 5s")
		}
		time.Sleep(10 * time.Millisecond)
	}
}
