package app

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"time"
)

// ServeProfiles serves net/http/pprof's endpoints (/debug/pprof/: CPU,
// heap, allocations, goroutines, blocking, mutexes, execution traces) on
// addr until ctx ends, for --pprof-addr; nothing when addr is empty. They
// show a process's internals and cost CPU while a profile runs: keep addr
// on loopback or a private network. It returns once it listens; the
// returned function stops the server and waits for it.
func ServeProfiles(ctx context.Context, addr string, logger *slog.Logger) (stop func(), err error) {
	if addr == "" {
		return func() {}, nil
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("--pprof-addr: %w", err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index) // and the named profiles: heap, allocs, goroutine, block, mutex
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			logger.Warn("profiling endpoints stopped", "err", err)
		}
	}()
	stopped := make(chan struct{})
	go func() {
		select {
		case <-ctx.Done():
		case <-stopped:
		}
		_ = srv.Close() // profiles in progress end: they are diagnostics
	}()
	logger.Info("profiling endpoints serving", "addr", ln.Addr().String())
	return func() {
		select {
		case <-stopped:
		default:
			close(stopped)
		}
		<-done
	}, nil
}
