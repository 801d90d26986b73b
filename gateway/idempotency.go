package gateway

import (
	"crypto/rand"
	"encoding/hex"
	"net/http"
	"strings"
)

// IdempotencyHeader is the HTTP header a client may set on a POST so that
// retrying it does the work once; the gateway makes up a key for POSTs
// without one. It reaches services as IdempotencyMetadataKey metadata.
const IdempotencyHeader = "Idempotency-Key"

// IdempotencyMetadataKey is the gRPC metadata key of the idempotency key.
const IdempotencyMetadataKey = "idempotency-key"

// addIdempotencyKey gives every POST without an Idempotency-Key header one
// of its own: if Kafka delivers the call twice (a service instance crashed
// mid-call), the service sees the same key and does the work once. Other
// methods, and POSTs with a key, go on as they are.
func addIdempotencyKey(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPost && r.Header.Get(IdempotencyHeader) == "" {
			r = r.Clone(r.Context())
			r.Header.Set(IdempotencyHeader, newIdempotencyKey())
		}
		next.ServeHTTP(w, r)
	})
}

func newIdempotencyKey() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return "gw-" + hex.EncodeToString(b[:])
}

// idempotencyHeaderMatcher is the ServeMux's header matcher: the
// Idempotency-Key header, on any method, becomes IdempotencyMetadataKey
// metadata, and no other header does (grpc-gateway forwards Authorization
// itself).
func idempotencyHeaderMatcher(h string) (string, bool) {
	if strings.EqualFold(h, IdempotencyHeader) {
		return IdempotencyMetadataKey, true
	}
	return "", false
}
