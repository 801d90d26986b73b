// Package auth issues and verifies the shop's bearer tokens and enforces them
// on both sides of a call: the gateway verifies a caller's token before
// forwarding it as "authorization" metadata, and every service verifies it
// again with a unary server interceptor, so no service trusts a bare user id.
//
// Tokens are compact JWTs signed with HMAC-SHA256 (alg HS256) carrying the
// subject (user id), role, issue and expiry times. Services share the signing
// secret; see the platform's --auth-secret flag.
package auth
