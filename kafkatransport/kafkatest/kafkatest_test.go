package kafkatest

import (
	"regexp"
	"strings"
	"testing"
)

func TestSanitize(t *testing.T) {
	tests := []struct {
		name, in, want string
	}{
		{"plain", "TestEcho", "testecho"},
		{"subtest", "BenchmarkRawPingPong/conc=64", "benchmarkrawpingpong-conc-64"},
		{"runs collapse", "A__b..c//d", "a-b-c-d"},
		{"edges", "/x/", "x"},
		{"empty", "///", "test"},
		{"long", strings.Repeat("ab", 40), strings.Repeat("ab", 24)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := sanitize(tt.in); got != tt.want {
				t.Errorf("sanitize(%q) = %q, want %q", tt.in, got, tt.want)
			}
		})
	}
}

func TestTopicPrefix(t *testing.T) {
	legal := regexp.MustCompile(`^[a-z0-9-]+$`)
	a, b := TopicPrefix(t), TopicPrefix(t)
	if a == b {
		t.Errorf("two prefixes are equal: %q", a)
	}
	if !legal.MatchString(a) || !strings.HasPrefix(a, "t-testtopicprefix-") || !strings.HasSuffix(a, "-") {
		t.Errorf("TopicPrefix = %q", a)
	}
}
