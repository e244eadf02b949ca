package search

import (
	"strings"
	"testing"
)

func TestNormalize(t *testing.T) {
	for _, tt := range []struct{ in, want string }{
		{"Müller", "muller"},
		{"  José   María ", "jose maria"},
		{"ÅNGSTRÖM", "angstrom"},
		{"O'Reilly", "o'reilly"},
		{"ﬁnn", "finn"}, // a ligature: NFKD
		{"Ørsted", "ørsted"},
		{"", ""},
	} {
		if got := normalize(tt.in); got != tt.want {
			t.Errorf("normalize(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func TestPrefixes(t *testing.T) {
	p, whole := prefixes("añb")
	if strings.Join(p, ",") != "a,añ,añb" || !whole {
		t.Errorf("prefixes(añb) = %q, %v", p, whole)
	}
	long := strings.Repeat("x", maxPrefix+5)
	p, whole = prefixes(long)
	if len(p) != maxPrefix || whole || p[len(p)-1] != long[:maxPrefix] {
		t.Errorf("prefixes of a long string: %d, %v", len(p), whole)
	}
}
