// Package auth issues and verifies the shop's user tokens and carries the
// verified caller to the services.
//
// User tokens are JWTs (github.com/golang-jwt/jwt/v5) signed by the users
// service alone with its unit's Ed25519 key (JWS alg "EdDSA", the key id in
// "kid"; see kafkatransport/trust), carrying iss TokenIssuer, aud
// TokenAudience, sub (the user id), exp, nbf, iat, jti, roles and ver (the
// user's token version, which a password change or deletion raises). The
// gateway verifies them with the public keys of the keyring (Verifier) and
// serves those keys as a JSON Web Key Set.
//
// Tokens never go on the bus. The gateway names the verified user in
// PrincipalKey metadata instead, and UnaryServerInterceptor trusts that
// name only on a request the transport's Guard authenticated as produced
// by the gateway's unit; a request of any other unit is that unit calling
// as itself (RoleService), with only the methods the Guard's policy lets it
// call.
package auth
