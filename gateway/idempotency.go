package gateway

import (
	"crypto/rand"
	"encoding/hex"
	"net/http"
	"strings"

	"github.com/grpc-ecosystem/grpc-gateway/v2/runtime"

	"github.com/kgrpc/platform/kafkatransport/idempotency"
)

// IdempotencyHeader is the HTTP header a client may set on a POST, PATCH or
// DELETE so that retrying it does the work once; the gateway makes up a key
// for those without one. It reaches services as IdempotencyMetadataKey
// metadata.
const IdempotencyHeader = "Idempotency-Key"

// IdempotencyMetadataKey is the gRPC metadata key of the idempotency key,
// the one the services' idempotency interceptor reads.
const IdempotencyMetadataKey = idempotency.MetadataKey

// ReplayedHeader is the HTTP response header, "true", of an answer a
// service recorded for an earlier request with the same Idempotency-Key
// (the idempotency.ReplayedHeader response metadata).
const ReplayedHeader = "Idempotency-Replayed"

// mutating reports whether an HTTP method changes state: the methods the
// API's writes use.
func mutating(method string) bool {
	return method == http.MethodPost || method == http.MethodPatch || method == http.MethodDelete
}

// addIdempotencyKey gives every POST, PATCH and DELETE without an
// Idempotency-Key header one of its own: if Kafka delivers the call twice
// (a service instance crashed mid-call), the service sees the same key and
// does the work once. Other methods, and requests with a key, go on as they
// are.
func addIdempotencyKey(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if mutating(r.Method) && r.Header.Get(IdempotencyHeader) == "" {
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

// responseHeaderMatcher is the ServeMux's outgoing header matcher:
// idempotency.ReplayedHeader metadata becomes ReplayedHeader, other response
// metadata grpc-gateway's default Grpc-Metadata-<key> header.
func responseHeaderMatcher(key string) (string, bool) {
	if key == idempotency.ReplayedHeader {
		return ReplayedHeader, true
	}
	return runtime.MetadataHeaderPrefix + key, true
}

// idempotencyHeaderMatcher is the ServeMux's header matcher: the
// Idempotency-Key header, on any method, becomes IdempotencyMetadataKey
// metadata, and no other header does (grpc-gateway would forward
// Authorization itself, but verifyBearer has removed it).
func idempotencyHeaderMatcher(h string) (string, bool) {
	if strings.EqualFold(h, IdempotencyHeader) {
		return IdempotencyMetadataKey, true
	}
	return "", false
}
