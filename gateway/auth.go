package gateway

import (
	"context"
	"errors"
	"net/http"
	"strings"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/kgrpc/platform/internal/auth"
	"github.com/kgrpc/platform/internal/telemetry"
)

type claimsKey struct{}

// verifyBearer refuses, 401 UNAUTHENTICATED, a request whose Authorization
// header is not "Bearer <token>", whose token v does not verify, or whose
// user's tokens are revoked (revoked, when set), before anything is
// forwarded. A verified request goes on with the header removed and the
// claims in its context, which callMetadata turns into the
// auth.PrincipalKey metadata of its calls: the token itself never goes on
// the bus. A request without the header goes on anonymous: public routes
// need no token, and the others are refused 401 before their request is
// decoded (refuseAnonymous).
func verifyBearer(v *auth.Verifier, revoked func(id string, version int64) error) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			vals, present := r.Header["Authorization"]
			if !present {
				next.ServeHTTP(w, r)
				return
			}
			// Whatever happens, the header goes no further: grpc-gateway
			// would forward every value of it as call metadata.
			r = r.WithContext(r.Context())
			r.Header = r.Header.Clone() // the caller's request keeps its own
			r.Header.Del("Authorization")
			if len(vals) != 1 {
				writeError(w, r, status.Error(codes.Unauthenticated, "send one authorization header"))
				return
			}
			tok, ok := strings.CutPrefix(vals[0], "Bearer ")
			if !ok {
				writeError(w, r, status.Error(codes.Unauthenticated, `authorization header must be "Bearer <token>"`))
				return
			}
			c, err := v.Verify(strings.TrimSpace(tok))
			if err != nil {
				writeError(w, r, status.Error(codes.Unauthenticated, err.Error()))
				return
			}
			if revoked != nil {
				if err := revoked(c.Subject, c.TokenVersion); err != nil {
					writeError(w, r, revocationError(err))
					return
				}
			}
			ctx := context.WithValue(r.Context(), claimsKey{}, c)
			if isStream(r) && !c.ExpiresAt.IsZero() {
				// A stream outlives the check made when it opened: it
				// ends when the token expires.
				var cancel context.CancelFunc
				ctx, cancel = context.WithDeadline(ctx, c.ExpiresAt)
				defer cancel()
			}
			next.ServeHTTP(w, r.WithContext(ctx))
		})
	}
}

// revocationError is the status of a token refused by the revocation check:
// Unavailable while the revocations are not known yet (auth.ErrNotCaughtUp:
// a retry succeeds), else Unauthenticated.
func revocationError(err error) error {
	if errors.Is(err, auth.ErrNotCaughtUp) {
		return status.Error(codes.Unavailable, "token revocations not read yet; retry")
	}
	return status.Errorf(codes.Unauthenticated, "token revoked: %v", err)
}

// requestMetadata is the metadata of a request's calls (see callMetadata).
func requestMetadata(r *http.Request) metadata.MD {
	md := make(metadata.MD, 2)
	if id, ok := telemetry.RequestID(r.Context()); ok {
		md[telemetry.RequestIDMetadata] = []string{id}
	}
	if c, ok := r.Context().Value(claimsKey{}).(auth.Claims); ok {
		md[auth.PrincipalKey] = []string{auth.Principal(c)}
	}
	return md
}

// serveJWKS serves the public keys that verify user tokens, as a JSON Web
// Key Set: what another party verifying the shop's tokens needs.
func serveJWKS(v *auth.Verifier) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		body, err := v.JWKS()
		if err != nil {
			writeError(w, r, status.Error(codes.Internal, "key set unavailable"))
			return
		}
		w.Header().Set("Content-Type", "application/jwk-set+json")
		w.Header().Set("Cache-Control", "public, max-age=300")
		_, _ = w.Write(append(body, '\n'))
	}
}
