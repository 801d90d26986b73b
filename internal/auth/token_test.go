package auth

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/kgrpc/platform/kafkatransport/trust"
)

func keys(t *testing.T) (*trust.Keyring, map[string]*trust.UnitKey) {
	t.Helper()
	ring, ks, err := trust.Generate(time.Now(), "usersvc", "gateway")
	if err != nil {
		t.Fatal(err)
	}
	return ring, ks
}

func TestIssueVerify(t *testing.T) {
	ring, ks := keys(t)
	iss, err := NewIssuer(ks["usersvc"].Current(), time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	v, err := NewVerifier(ring, "usersvc")
	if err != nil {
		t.Fatal(err)
	}
	tok, exp, err := iss.Issue("u1", RoleAdmin, 7)
	if err != nil {
		t.Fatal(err)
	}
	c, err := v.Verify(tok)
	if err != nil || c.Subject != "u1" || c.Role != RoleAdmin || c.TokenVersion != 7 || !c.ExpiresAt.Equal(exp) {
		t.Fatalf("Verify = %+v, %v", c, err)
	}

	// The header names an asymmetric algorithm and the key.
	var hdr map[string]any
	raw, _ := base64.RawURLEncoding.DecodeString(strings.Split(tok, ".")[0])
	if err := json.Unmarshal(raw, &hdr); err != nil || hdr["alg"] != "EdDSA" || hdr["kid"] != ks["usersvc"].Current().ID {
		t.Fatalf("header = %v, %v", hdr, err)
	}
	// The payload has the registered claims.
	var claims map[string]any
	raw, _ = base64.RawURLEncoding.DecodeString(strings.Split(tok, ".")[1])
	_ = json.Unmarshal(raw, &claims)
	for _, k := range []string{"iss", "aud", "sub", "exp", "nbf", "iat", "jti", "roles", "ver"} {
		if _, ok := claims[k]; !ok {
			t.Errorf("claim %q missing: %v", k, claims)
		}
	}

	// A key of another unit (the gateway's) signs a token that does not verify.
	forger, _ := NewIssuer(ks["gateway"].Current(), time.Hour)
	forged, _, _ := forger.Issue("u1", RoleAdmin, 7)
	later := &Issuer{key: ks["usersvc"].Current(), ttl: time.Hour, now: func() time.Time { return time.Now().Add(-2 * time.Hour) }}
	expired, _, _ := later.Issue("u1", RoleAdmin, 7)
	parts := strings.Split(tok, ".")
	sign := func(method jwt.SigningMethod, key any, claims jwt.Claims) string {
		tk := jwt.NewWithClaims(method, claims)
		tk.Header["kid"] = ks["usersvc"].Current().ID
		s, err := tk.SignedString(key)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	good := func() tokenClaims {
		now := time.Now()
		return tokenClaims{RegisteredClaims: jwt.RegisteredClaims{Issuer: TokenIssuer, Audience: jwt.ClaimStrings{TokenAudience}, Subject: "u1",
			ExpiresAt: jwt.NewNumericDate(now.Add(time.Hour)), IssuedAt: jwt.NewNumericDate(now)}, Roles: []string{"admin"}}
	}
	wrongAud := good()
	wrongAud.Audience = jwt.ClaimStrings{"internal"}
	wrongIss := good()
	wrongIss.Issuer = "someone"
	noExp := good()
	noExp.ExpiresAt = nil
	noRole := good()
	noRole.Roles = []string{"service"}
	pub := ring.Keys("usersvc")[0].Verify
	tests := []struct {
		name, token string
	}{
		{"signed by another unit's key", forged},
		{"expired", expired},
		{"garbage", "not.a.token"},
		{"two parts", parts[0] + "." + parts[1]},
		{"tampered payload", parts[0] + "." + parts[1] + "x." + parts[2]},
		{"empty", ""},
		{"alg none", sign(jwt.SigningMethodNone, jwt.UnsafeAllowNoneSignatureType, good())},
		{"HS256 keyed with the public key", sign(jwt.SigningMethodHS256, []byte(pub), good())},
		{"wrong audience", sign(jwt.SigningMethodEdDSA, ks["usersvc"].Current().Signer(), wrongAud)},
		{"wrong issuer", sign(jwt.SigningMethodEdDSA, ks["usersvc"].Current().Signer(), wrongIss)},
		{"no expiry", sign(jwt.SigningMethodEdDSA, ks["usersvc"].Current().Signer(), noExp)},
		{"no user role", sign(jwt.SigningMethodEdDSA, ks["usersvc"].Current().Signer(), noRole)},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := v.Verify(tc.token); !errors.Is(err, ErrInvalidToken) {
				t.Fatalf("Verify = %v, want ErrInvalidToken", err)
			}
		})
	}
	if _, err := NewIssuer(ks["usersvc"].Current(), -time.Second); err == nil {
		t.Fatal("negative lifetime accepted")
	}
	if _, err := NewVerifier(ring, "productsvc"); err == nil {
		t.Fatal("verifier of a unit without keys accepted")
	}
}

// After a rotation the new key signs and tokens of the old one still
// verify, until it is retired.
func TestRotation(t *testing.T) {
	ring, ks := keys(t)
	u := ks["usersvc"]
	old, _ := NewIssuer(u.Current(), time.Hour)
	oldTok, _, _ := old.Issue("u1", RoleCustomer, 1)
	next, err := trust.GenerateKey("usersvc", time.Now().Add(time.Second))
	if err != nil {
		t.Fatal(err)
	}
	u.Keys = append([]trust.Key{next}, u.Keys...)
	ring.Set(u)
	v, _ := NewVerifier(ring, "usersvc")
	iss, _ := NewIssuer(u.Current(), time.Hour)
	newTok, _, _ := iss.Issue("u1", RoleCustomer, 1)
	for _, tok := range []string{oldTok, newTok} {
		if _, err := v.Verify(tok); err != nil {
			t.Fatalf("Verify after rotation: %v", err)
		}
	}
	u.Keys = u.Keys[:1] // retire the old key
	ring.Set(u)
	if _, err := v.Verify(oldTok); err == nil {
		t.Fatal("token of a retired key verified")
	}
	if _, err := v.Verify(newTok); err != nil {
		t.Fatal(err)
	}
}

func TestPrincipal(t *testing.T) {
	c := Claims{Subject: "u_1", Role: RoleAdmin, TokenVersion: 3}
	got, err := parsePrincipal(Principal(c))
	if err != nil || got != c {
		t.Fatalf("parsePrincipal(Principal) = %+v, %v", got, err)
	}
	for _, bad := range []string{"", "admin", "admin 3", "service 1 ordersvc", "admin x u1", "admin 1 "} {
		if _, err := parsePrincipal(bad); err == nil {
			t.Errorf("parsePrincipal(%q) accepted", bad)
		}
	}
}

// The reasons a token is refused are the gateway's error messages: short,
// and in our words.
func TestVerifyMessages(t *testing.T) {
	ring, ks := keys(t)
	v, _ := NewVerifier(ring, "usersvc")
	forger, _ := NewIssuer(ks["gateway"].Current(), time.Hour)
	forged, _, _ := forger.Issue("u1", RoleAdmin, 1)
	later := &Issuer{key: ks["usersvc"].Current(), ttl: time.Hour, now: func() time.Time { return time.Now().Add(-2 * time.Hour) }}
	expired, _, _ := later.Issue("u1", RoleAdmin, 1)
	own, _ := NewIssuer(ks["usersvc"].Current(), time.Hour)
	good, _, _ := own.Issue("u1", RoleAdmin, 1)
	p := strings.Split(good, ".")
	for token, want := range map[string]string{
		"x.y":                               "invalid token: malformed",
		forged:                              "invalid token: unknown signing key",
		expired:                             "invalid token: expired",
		p[0] + "." + p[1] + "." + p[2][:10]: "invalid token: bad signature",
	} {
		if _, err := v.Verify(token); err == nil || err.Error() != want {
			t.Errorf("Verify = %v, want %q", err, want)
		}
	}
}
