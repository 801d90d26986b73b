package gateway

import (
	"context"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/kgrpc/platform/internal/auth"
)

// chain wraps h in the middlewares, the first outermost.
func chain(h http.Handler, mws ...func(http.Handler) http.Handler) http.Handler {
	for i := len(mws) - 1; i >= 0; i-- {
		h = mws[i](h)
	}
	return h
}

// withTimeout bounds each request, and so every call it makes over Kafka,
// by d. A call cut short answers 504 DEADLINE_EXCEEDED (see writeError).
// A stream (isStream) is bounded by streamD instead, and ends when run, the
// gateway's context, does.
func withTimeout(run context.Context, d, streamD time.Duration) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if !isStream(r) {
				ctx, cancel := context.WithTimeout(r.Context(), d)
				defer cancel()
				next.ServeHTTP(w, r.WithContext(ctx))
				return
			}
			ctx, cancel := context.WithTimeout(r.Context(), streamD)
			defer cancel()
			defer context.AfterFunc(run, cancel)()
			next.ServeHTTP(w, r.WithContext(ctx))
		})
	}
}

// isStream reports whether r is a request of a streaming route: GET
// /v1/orders/{id}:watch, POST /v1/products:import.
func isStream(r *http.Request) bool {
	switch r.Method {
	case http.MethodGet:
		return strings.HasPrefix(r.URL.Path, "/v1/orders/") && strings.HasSuffix(r.URL.Path, ":watch")
	case http.MethodPost:
		return r.URL.Path == "/v1/products:import"
	}
	return false
}

// DefaultMaxStreamsPerUser is Config.MaxStreamsPerUser's default.
const DefaultMaxStreamsPerUser = 16

// limitStreams answers 429 RESOURCE_EXHAUSTED to a streaming request
// (isStream) of a user who has n open already. Anonymous streams are not
// counted: they are refused at once (refuseAnonymous, or the services).
func limitStreams(n int) func(http.Handler) http.Handler {
	var (
		mu   sync.Mutex
		open = map[string]int{}
	)
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			c, ok := r.Context().Value(claimsKey{}).(auth.Claims)
			if !ok || !isStream(r) {
				next.ServeHTTP(w, r)
				return
			}
			mu.Lock()
			if open[c.Subject] >= n {
				mu.Unlock()
				writeError(w, r, status.Errorf(codes.ResourceExhausted, "at most %d streams open at once per user", n))
				return
			}
			open[c.Subject]++
			mu.Unlock()
			defer func() {
				mu.Lock()
				if open[c.Subject]--; open[c.Subject] == 0 {
					delete(open, c.Subject)
				}
				mu.Unlock()
			}()
			next.ServeHTTP(w, r)
		})
	}
}

// limitBody bounds request bodies to n bytes. Reading past them fails, and
// the decoder's error answers 413 INVALID_ARGUMENT (see decodeError) before
// anything is forwarded.
func limitBody(n int64) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		limited := http.MaxBytesHandler(next, n)
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			exchangeOf(r).maxBody = n // for decodeError's message
			limited.ServeHTTP(w, r)
		})
	}
}

// logRequests logs one line per request: method, path, status (as
// withRoute records it) and duration.
func logRequests(log *slog.Logger) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			start := time.Now()
			next.ServeHTTP(w, r)
			log.InfoContext(r.Context(), "http request", "method", r.Method, "path", r.URL.Path, "status", statusOf(r), "duration", time.Since(start))
		})
	}
}

// statusRecorder remembers the status code written.
type statusRecorder struct {
	http.ResponseWriter
	code int
}

// Unwrap lets http.ResponseController reach the connection (bodyDeadline
// sets its read deadline through it).
func (s *statusRecorder) Unwrap() http.ResponseWriter { return s.ResponseWriter }

func (s *statusRecorder) WriteHeader(code int) {
	s.code = code
	s.ResponseWriter.WriteHeader(code)
}

// Flush sends what was written so far, for streams: grpc-gateway flushes
// each message of a server stream through http.Flusher.
func (s *statusRecorder) Flush() {
	if f, ok := s.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}
