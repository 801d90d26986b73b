package app

import (
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"testing"
)

func TestServeProfiles(t *testing.T) {
	log := slog.New(slog.DiscardHandler)
	stop, err := ServeProfiles(context.Background(), "", log)
	if err != nil {
		t.Fatalf("no address: %v", err)
	}
	stop() // nothing to stop

	if _, err := ServeProfiles(context.Background(), "127.0.0.1:notaport", log); err == nil || !strings.Contains(err.Error(), "--pprof-addr") {
		t.Fatalf("a bad address: %v, want an error naming --pprof-addr", err)
	}

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	stop, err = ServeProfiles(context.Background(), addr, log)
	if err != nil {
		t.Fatal(err)
	}
	for path, want := range map[string]string{"/debug/pprof/cmdline": ".test", "/debug/pprof/goroutine?debug=1": "goroutine profile"} {
		resp, err := http.Get("http://" + addr + path)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), want) {
			t.Errorf("GET %s: %d %.80q, want 200 with %q", path, resp.StatusCode, body, want)
		}
	}
	stop()
	if _, err := http.Get("http://" + addr + "/debug/pprof/cmdline"); err == nil {
		t.Error("profiles still served after stop")
	}
}
