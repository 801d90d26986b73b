// Package auth issues and verifies the shop's bearer tokens and enforces them
// on both sides of a call: the gateway verifies a caller's token before
// forwarding it as "authorization" metadata, and every service verifies it
// again with a unary server interceptor, so no service trusts a bare user id.
//
// Tokens are compact JWTs signed with HMAC-SHA256 (alg HS256) carrying the
// subject (user id), role, issue and expiry times. Services share the signing
// secret; see the platform's --auth-secret flag.
//
// A service that calls another as itself (the order service reserving stock
// with the product service) does not mint tokens in its handlers: its client
// carries ServiceTokenInterceptor, or is wrapped with WithServiceToken, which
// mints a RoleService token for the service's subject, caches it, renews it
// shortly before it expires and sets it as the call's "authorization"
// metadata for UnaryServerInterceptor on the other side.
package auth
