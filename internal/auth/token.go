package auth

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"
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

// Claims are what a verified token says about its bearer.
type Claims struct {
	// Subject is the user id (or the service name for RoleService).
	Subject string `json:"sub"`
	// Role is the bearer's role.
	Role Role `json:"role"`
	// IssuedAt and ExpiresAt are Unix seconds.
	IssuedAt  int64 `json:"iat"`
	ExpiresAt int64 `json:"exp"`
}

// IsAdmin reports whether the bearer is an admin.
func (c Claims) IsAdmin() bool { return c.Role == RoleAdmin }

// ErrInvalidToken is wrapped by every Verify failure.
var ErrInvalidToken = errors.New("invalid token")

// Signer issues and verifies tokens with one secret.
type Signer struct {
	secret []byte
	now    func() time.Time
}

// NewSigner returns a signer for secret, which must be at least 16 bytes.
func NewSigner(secret []byte) (*Signer, error) {
	if len(secret) < 16 {
		return nil, fmt.Errorf("auth: secret of %d bytes is too short: want at least 16", len(secret))
	}
	return &Signer{secret: append([]byte(nil), secret...), now: time.Now}, nil
}

var jwtHeader = base64.RawURLEncoding.EncodeToString([]byte(`{"alg":"HS256","typ":"JWT"}`))

// Issue returns a token for subject with role, valid for ttl, and its expiry.
func (s *Signer) Issue(subject string, role Role, ttl time.Duration) (string, time.Time, error) {
	now := s.now()
	exp := now.Add(ttl).Truncate(time.Second)
	payload, err := json.Marshal(Claims{Subject: subject, Role: role, IssuedAt: now.Unix(), ExpiresAt: exp.Unix()})
	if err != nil {
		return "", time.Time{}, fmt.Errorf("auth: encode claims: %w", err)
	}
	unsigned := jwtHeader + "." + base64.RawURLEncoding.EncodeToString(payload)
	return unsigned + "." + s.sign(unsigned), exp, nil
}

func (s *Signer) sign(unsigned string) string {
	m := hmac.New(sha256.New, s.secret)
	m.Write([]byte(unsigned))
	return base64.RawURLEncoding.EncodeToString(m.Sum(nil))
}

// Verify checks the token's signature and expiry and returns its claims.
func (s *Signer) Verify(token string) (Claims, error) {
	parts := strings.Split(token, ".")
	if len(parts) != 3 || parts[0] != jwtHeader {
		return Claims{}, fmt.Errorf("%w: malformed", ErrInvalidToken)
	}
	want := s.sign(parts[0] + "." + parts[1])
	if !hmac.Equal([]byte(want), []byte(parts[2])) {
		return Claims{}, fmt.Errorf("%w: bad signature", ErrInvalidToken)
	}
	payload, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		return Claims{}, fmt.Errorf("%w: malformed payload", ErrInvalidToken)
	}
	var c Claims
	if err := json.Unmarshal(payload, &c); err != nil {
		return Claims{}, fmt.Errorf("%w: malformed claims", ErrInvalidToken)
	}
	if c.Subject == "" || (c.Role != RoleCustomer && c.Role != RoleAdmin && c.Role != RoleService) {
		return Claims{}, fmt.Errorf("%w: missing subject or role", ErrInvalidToken)
	}
	if s.now().Unix() >= c.ExpiresAt {
		return Claims{}, fmt.Errorf("%w: expired", ErrInvalidToken)
	}
	return c, nil
}
