package app

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sync/errgroup"
)

// Ready is a unit's readiness: false until Set, then true for good, as
// long as the checks given to Watch pass. Its zero value is not set; a nil
// *Ready ignores Set and Watch, for callers that do not watch readiness.
type Ready struct {
	set atomic.Bool

	mu     sync.Mutex
	checks []func() error
}

// Set marks the unit ready; later calls do nothing.
func (r *Ready) Set() {
	if r != nil {
		r.set.Store(true)
	}
}

// IsSet reports whether Set was called.
func (r *Ready) IsSet() bool { return r.set.Load() }

// Watch adds checks, such as the Health methods of the unit's transport
// server and subscribers: while one returns an error, the unit is not
// ready, for the reason the error gives.
func (r *Ready) Watch(checks ...func() error) {
	if r == nil {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.checks = append(r.checks, checks...)
}

// Err returns nil when the unit is ready: Set was called and every check
// passes. Otherwise it says why not.
func (r *Ready) Err() error {
	if !r.IsSet() {
		return errors.New("starting")
	}
	r.mu.Lock()
	checks := r.checks
	r.mu.Unlock()
	var errs []error
	for _, check := range checks {
		errs = append(errs, check())
	}
	return errors.Join(errs...)
}

// follow sets r once serving is closed, or returns when ctx ends: a member
// of a unit's errgroup, fed with the transport server's Ready channel.
func (r *Ready) follow(ctx context.Context, serving <-chan struct{}) error {
	select {
	case <-serving:
		r.Set()
	case <-ctx.Done():
	}
	return nil
}

// runWithHealth runs unit and serves /healthz (200 while the process runs),
// /metrics (metrics, when not nil) and /readyz (200 while ready.Err is nil; 503 with the reason as text
// before, while a check fails, and once the unit is stopping) on addr. The endpoints keep answering while the unit drains and
// stop after it; if they fail (say, addr is taken) the unit is stopped and
// the error returned.
func runWithHealth(ctx context.Context, addr string, ready *Ready, logger *slog.Logger, metrics http.Handler, unit func(context.Context) error) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("health listener: %w", err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		_, _ = w.Write([]byte("ok\n"))
	})
	if metrics != nil {
		mux.Handle("GET /metrics", metrics)
	}
	g, gctx := errgroup.WithContext(ctx)
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		if gctx.Err() != nil {
			http.Error(w, "not ready: stopping", http.StatusServiceUnavailable)
			return
		}
		if err := ready.Err(); err != nil {
			http.Error(w, "not ready: "+err.Error(), http.StatusServiceUnavailable)
			return
		}
		_, _ = w.Write([]byte("ready\n"))
	})
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	logger.Info("health endpoints listening", "addr", ln.Addr().String())
	unitDone := make(chan struct{})
	g.Go(func() error {
		defer close(unitDone)
		return unit(gctx)
	})
	g.Go(func() error {
		if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
			return fmt.Errorf("health endpoints: %w", err)
		}
		return nil
	})
	g.Go(func() error {
		<-unitDone
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		return srv.Shutdown(sctx)
	})
	return g.Wait()
}

// stopped is the error of a unit's task: nil when it only says that ctx,
// the unit's, ended; a task that fails with Canceled while the unit runs
// has failed.
func stopped(ctx context.Context, err error) error {
	if ctx.Err() != nil && errors.Is(err, context.Canceled) {
		return nil
	}
	return err
}
