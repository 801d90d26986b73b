package gateway

import (
	"net/http"
	"strings"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/kgrpc/platform/internal/auth"
)

// verifyBearer refuses, 401 UNAUTHENTICATED, a request whose Authorization
// header is not "Bearer <token>" or whose token s does not verify, before
// anything is forwarded. A request without the header goes on: public
// routes need no token, and the services refuse the others. grpc-gateway
// forwards the header to the services, which verify the token again.
func verifyBearer(s *auth.Signer) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if h := r.Header.Get("Authorization"); h != "" {
				tok, ok := strings.CutPrefix(h, "Bearer ")
				if !ok {
					writeError(w, r, status.Error(codes.Unauthenticated, `authorization header must be "Bearer <token>"`))
					return
				}
				if _, err := s.Verify(strings.TrimSpace(tok)); err != nil {
					writeError(w, r, status.Error(codes.Unauthenticated, err.Error()))
					return
				}
			}
			next.ServeHTTP(w, r)
		})
	}
}
