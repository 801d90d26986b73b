package proctest

import "testing"

func TestTail(t *testing.T) {
	for _, tc := range []struct {
		name string
		in   string
		n    int
		want string
	}{
		{"no limit", "a\nb\nc\n", 0, "a\nb\nc\n"},
		{"fewer lines than the limit", "a\nb\n", 3, "a\nb\n"},
		{"as many lines as the limit", "a\nb\n", 2, "a\nb\n"},
		{"more lines", "a\nb\nc\nd\n", 2, "(2 lines before)\nc\nd\n"},
		{"last line unterminated", "a\nb\nc", 1, "(2 lines before)\nc"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := tail(tc.in, tc.n); got != tc.want {
				t.Errorf("tail(%q, %d) = %q, want %q", tc.in, tc.n, got, tc.want)
			}
		})
	}
}
