package idempotency

import (
	"bytes"
	"crypto/sha256"
	"testing"

	testingv1 "github.com/kgrpc/platform/kafkatransport/gen/kgrpc/testing/v1"
)

// With a key, a fingerprint is an HMAC: it differs from the plain hash
// (which anyone can compute from a guessed password) and between keys, and
// it is stable for one key.
func TestFingerprintKey(t *testing.T) {
	k := Key{Scope: "", Method: "/kgrpc.testing.v1.EchoService/Echo", Key: "gw-1"}
	req := &testingv1.EchoRequest{Key: "a@example.com", Message: "correct-horse"}
	plain, err := fingerprint(nil, k, req)
	if err != nil || len(plain) != sha256.Size {
		t.Fatal(plain, err)
	}
	a1, _ := fingerprint([]byte("key a"), k, req)
	a2, _ := fingerprint([]byte("key a"), k, req)
	b, _ := fingerprint([]byte("key b"), k, req)
	if !bytes.Equal(a1, a2) || bytes.Equal(a1, plain) || bytes.Equal(a1, b) {
		t.Fatalf("plain %x, key a %x and %x, key b %x", plain, a1, a2, b)
	}
	other, _ := fingerprint([]byte("key a"), k, &testingv1.EchoRequest{Key: "a@example.com", Message: "wrong-horse"})
	if bytes.Equal(a1, other) {
		t.Fatal("two requests share a fingerprint")
	}
}
