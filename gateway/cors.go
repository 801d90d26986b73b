package gateway

import (
	"net/http"
	"slices"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// cors answers browsers from the allowed origins ("*" allows any): their
// requests get Access-Control-Allow-Origin, and their preflights (OPTIONS
// with Access-Control-Request-Method) 204 with the API's methods and
// request headers. A preflight from another origin is 403; other requests
// from it go on without CORS headers, so the browser withholds the answer.
// With no allowed origins it does nothing.
func cors(origins []string) func(http.Handler) http.Handler {
	any := slices.Contains(origins, "*")
	return func(next http.Handler) http.Handler {
		if len(origins) == 0 {
			return next
		}
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			origin := r.Header.Get("Origin")
			if origin == "" {
				next.ServeHTTP(w, r)
				return
			}
			allowed := any || slices.Contains(origins, origin)
			preflight := r.Method == http.MethodOptions && r.Header.Get("Access-Control-Request-Method") != ""
			h := w.Header()
			h.Add("Vary", "Origin")
			if !allowed {
				if preflight {
					writeError(w, r, status.Errorf(codes.PermissionDenied, "origin %q is not allowed", origin))
					return
				}
				next.ServeHTTP(w, r)
				return
			}
			h.Set("Access-Control-Allow-Origin", origin)
			if !preflight {
				h.Set("Access-Control-Expose-Headers", ReplayedHeader+", WWW-Authenticate, "+RequestIDHeader)
				next.ServeHTTP(w, r)
				return
			}
			h.Set("Access-Control-Allow-Methods", "GET, POST, PATCH, DELETE")
			h.Set("Access-Control-Allow-Headers", "Authorization, Content-Type, "+IdempotencyHeader+", "+RequestIDHeader+", traceparent, tracestate")
			h.Set("Access-Control-Max-Age", "600")
			w.WriteHeader(http.StatusNoContent)
		})
	}
}
