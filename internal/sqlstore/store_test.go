package sqlstore

import (
	"testing"
	"time"
)

func TestCursorTokenRoundTrip(t *testing.T) {
	tests := []Cursor{
		{CreateTime: time.Date(2025, 3, 4, 5, 6, 7, 8000, time.UTC), ID: "u_0123456789abcdef"},
		{CreateTime: time.UnixMicro(0).UTC(), ID: "id:with:colons"},
	}
	for _, c := range tests {
		t.Run(c.ID, func(t *testing.T) {
			got, err := ParseCursor(c.Token())
			if err != nil || got != c {
				t.Fatalf("round trip of %+v = %+v, %v", c, got, err)
			}
		})
	}
}

func TestParseCursorRejects(t *testing.T) {
	tests := []struct{ name, token string }{
		{"not base64", "!!"},
		{"without id", "MTIz"},      // "123"
		{"bad time", "eDpvXzE"},     // "x:o_1"
		{"negative time", "LTE6eA"}, // "-1:x"
		{"empty id", "MTIzOg"},      // "123:"
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if c, err := ParseCursor(tc.token); err == nil {
				t.Fatalf("ParseCursor(%q) = %+v, want an error", tc.token, c)
			}
		})
	}
}
