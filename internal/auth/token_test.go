package auth

import (
	"errors"
	"strings"
	"testing"
	"time"
)

func TestIssueVerify(t *testing.T) {
	s, err := NewSigner([]byte("0123456789abcdef0123"))
	if err != nil {
		t.Fatal(err)
	}
	tok, exp, err := s.Issue("u1", RoleAdmin, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	c, err := s.Verify(tok)
	if err != nil || c.Subject != "u1" || c.Role != RoleAdmin || c.ExpiresAt != exp.Unix() {
		t.Fatalf("Verify = %+v, %v", c, err)
	}
	other, _ := NewSigner([]byte("another-secret-of-16+"))
	expired := &Signer{secret: s.secret, now: func() time.Time { return time.Now().Add(2 * time.Hour) }}
	parts := strings.Split(tok, ".")
	tests := []struct {
		name  string
		s     *Signer
		token string
	}{
		{"other secret", other, tok},
		{"expired", expired, tok},
		{"garbage", s, "not.a.token"},
		{"two parts", s, parts[0] + "." + parts[1]},
		{"tampered payload", s, parts[0] + "." + parts[1] + "x." + parts[2]},
		{"empty", s, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := tc.s.Verify(tc.token); !errors.Is(err, ErrInvalidToken) {
				t.Fatalf("Verify = %v, want ErrInvalidToken", err)
			}
		})
	}
	if _, err := NewSigner([]byte("short")); err == nil {
		t.Fatal("short secret accepted")
	}
}
