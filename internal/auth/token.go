package auth

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/kgrpc/platform/kafkatransport/trust"
)

// Role is what a caller may do.
type Role string

// The roles. Service is for calls between services (for example the order
// service reserving stock); no user holds it.
const (
	RoleCustomer Role = "customer"
	RoleAdmin    Role = "admin"
	RoleService  Role = "service"
)

// The registered claims of user tokens.
const (
	// TokenIssuer is the "iss" of user tokens.
	TokenIssuer = "kgrpc-usersvc"
	// TokenAudience is the "aud" of user tokens: the public API, which the
	// gateway serves. No service accepts a user token.
	TokenAudience = "kgrpc-api"
	// DefaultTokenTTL is how long a user token lasts unless configured.
	DefaultTokenTTL = time.Hour
	// Leeway is the clock skew allowed when checking exp, nbf and iat.
	Leeway = 30 * time.Second
)

// Claims are what a verified caller is.
type Claims struct {
	// Subject is the user id, or the calling unit's name for RoleService.
	Subject string
	// Role is the caller's role.
	Role Role
	// TokenVersion is the user's token version when the token was issued;
	// a password change or the account's deletion raises it, which revokes
	// older tokens.
	TokenVersion int64
	// ExpiresAt is when the user's token expires; zero for a unit.
	ExpiresAt time.Time
}

// IsAdmin reports whether the bearer is an admin.
func (c Claims) IsAdmin() bool { return c.Role == RoleAdmin }

// ErrInvalidToken is wrapped by every Verify failure.
var ErrInvalidToken = errors.New("invalid token")

// tokenClaims is the JWT payload of a user token.
type tokenClaims struct {
	jwt.RegisteredClaims
	Roles   []string `json:"roles"`
	Version int64    `json:"ver"`
}

// Issuer signs user tokens with a unit's current Ed25519 key (JWS "EdDSA",
// the key id in "kid"). Only the users service has one.
type Issuer struct {
	key trust.Key
	ttl time.Duration
	now func() time.Time
}

// NewIssuer returns an issuer signing with key, for tokens valid for ttl
// (zero: DefaultTokenTTL).
func NewIssuer(key trust.Key, ttl time.Duration) (*Issuer, error) {
	switch {
	case ttl < 0 || ttl > MaxTokenTTL:
		return nil, fmt.Errorf("auth: token lifetime %v: want a positive duration up to %v", ttl, MaxTokenTTL)
	case ttl == 0:
		ttl = DefaultTokenTTL
	}
	if key.Signer() == nil {
		return nil, errors.New("auth: NewIssuer: no signing key")
	}
	return &Issuer{key: key, ttl: ttl, now: time.Now}, nil
}

// Issue returns a token for user subject with role and token version, and
// its expiry.
func (s *Issuer) Issue(subject string, role Role, version int64) (string, time.Time, error) {
	return s.IssueAt(s.now(), subject, role, version)
}

// IssueAt is Issue as if the time were now.
func (s *Issuer) IssueAt(now time.Time, subject string, role Role, version int64) (string, time.Time, error) {
	now = now.Truncate(time.Second)
	exp := now.Add(s.ttl)
	var jti [16]byte
	_, _ = rand.Read(jti[:])
	tok := jwt.NewWithClaims(jwt.SigningMethodEdDSA, tokenClaims{
		RegisteredClaims: jwt.RegisteredClaims{
			Issuer:    TokenIssuer,
			Subject:   subject,
			Audience:  jwt.ClaimStrings{TokenAudience},
			ExpiresAt: jwt.NewNumericDate(exp),
			NotBefore: jwt.NewNumericDate(now),
			IssuedAt:  jwt.NewNumericDate(now),
			ID:        hex.EncodeToString(jti[:]),
		},
		Roles:   []string{string(role)},
		Version: version,
	})
	tok.Header["kid"] = s.key.ID
	signed, err := tok.SignedString(s.key.Signer())
	if err != nil {
		return "", time.Time{}, fmt.Errorf("auth: sign token: %w", err)
	}
	return signed, exp, nil
}

// Verifier checks user tokens against the public keys a keyring holds for
// the issuing unit.
type Verifier struct {
	ring   *trust.Keyring
	unit   string
	parser *jwt.Parser
}

// NewVerifier returns a verifier of the tokens unit signs, with the keys
// ring holds for it.
func NewVerifier(ring *trust.Keyring, unit string) (*Verifier, error) {
	if ring == nil || len(ring.Keys(unit)) == 0 {
		return nil, fmt.Errorf("auth: the keyring has no key of the token issuer %q", unit)
	}
	return &Verifier{ring: ring, unit: unit, parser: jwt.NewParser(
		jwt.WithValidMethods([]string{jwt.SigningMethodEdDSA.Alg()}),
		jwt.WithIssuer(TokenIssuer),
		jwt.WithAudience(TokenAudience),
		jwt.WithLeeway(Leeway),
		jwt.WithExpirationRequired(),
		jwt.WithIssuedAt(),
	)}, nil
}

// Verify checks the token's signature, issuer, audience and times, and
// returns its claims.
func (v *Verifier) Verify(token string) (Claims, error) {
	var tc tokenClaims
	_, err := v.parser.ParseWithClaims(token, &tc, func(t *jwt.Token) (any, error) {
		kid, _ := t.Header["kid"].(string)
		k, ok := v.ring.Key(kid)
		if !ok || k.Unit != v.unit {
			return nil, fmt.Errorf("unknown key id %q", kid)
		}
		return ed25519.PublicKey(k.Verify), nil
	})
	if err != nil {
		return Claims{}, fmt.Errorf("%w: %s", ErrInvalidToken, tokenProblem(err))
	}
	c := Claims{Subject: tc.Subject, TokenVersion: tc.Version, ExpiresAt: tc.ExpiresAt.Time}
	switch {
	case slices.Contains(tc.Roles, string(RoleAdmin)):
		c.Role = RoleAdmin
	case slices.Contains(tc.Roles, string(RoleCustomer)):
		c.Role = RoleCustomer
	}
	if c.Subject == "" || c.Role == "" {
		return Claims{}, fmt.Errorf("%w: no subject or user role", ErrInvalidToken)
	}
	return c, nil
}

// tokenProblem says in a few words, without the library's wording, what is
// wrong with a token that did not verify.
func tokenProblem(err error) string {
	switch {
	case errors.Is(err, jwt.ErrTokenMalformed):
		return "malformed"
	case errors.Is(err, jwt.ErrTokenUnverifiable):
		return "unknown signing key"
	case errors.Is(err, jwt.ErrTokenSignatureInvalid):
		return "bad signature"
	case errors.Is(err, jwt.ErrTokenExpired):
		return "expired"
	case errors.Is(err, jwt.ErrTokenNotValidYet), errors.Is(err, jwt.ErrTokenUsedBeforeIssued):
		return "not valid yet"
	case errors.Is(err, jwt.ErrTokenInvalidAudience), errors.Is(err, jwt.ErrTokenInvalidIssuer):
		return "not issued for this API"
	}
	return "malformed claims"
}

// JWKS returns the JSON Web Key Set of the issuer's public keys, for
// /.well-known/jwks.json.
func (v *Verifier) JWKS() ([]byte, error) { return v.ring.JWKS(v.unit) }
