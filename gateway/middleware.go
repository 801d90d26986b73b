package gateway

import (
	"context"
	"log/slog"
	"net/http"
	"time"
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
func withTimeout(d time.Duration) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			ctx, cancel := context.WithTimeout(r.Context(), d)
			defer cancel()
			next.ServeHTTP(w, r.WithContext(ctx))
		})
	}
}

// limitBody bounds request bodies to n bytes. Reading past them fails, and
// grpc-gateway's decoder answers 400 INVALID_ARGUMENT "http: request body
// too large" before anything is forwarded.
func limitBody(n int64) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler { return http.MaxBytesHandler(next, n) }
}

// logRequests logs one line per request: method, path, status and
// duration.
func logRequests(log *slog.Logger) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			start := time.Now()
			rec := &statusRecorder{ResponseWriter: w, code: http.StatusOK}
			next.ServeHTTP(rec, r)
			log.Info("http request", "method", r.Method, "path", r.URL.Path, "status", rec.code, "duration", time.Since(start))
		})
	}
}

// statusRecorder remembers the status code written.
type statusRecorder struct {
	http.ResponseWriter
	code int
}

func (s *statusRecorder) WriteHeader(code int) {
	s.code = code
	s.ResponseWriter.WriteHeader(code)
}
