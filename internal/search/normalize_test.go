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
	if p := prefixes("añb", stringLengths); strings.Join(p, ",") != "a,añ,añb" {
		t.Errorf("prefixes(añb) = %q", p)
	}
	long := strings.Repeat("x", maxPrefix+5)
	p := prefixes(long, stringLengths)
	if len(p) != len(stringLengths) || p[len(p)-1] != long[:maxPrefix] {
		t.Errorf("prefixes of a long string: %q", p)
	}
	if p := prefixes("abcdefghi", stringLengths); strings.Join(p, ",") != "a,ab,abc,abcd,abcde,abcdef,abcdefgh" {
		t.Errorf("prefixes(abcdefghi) = %q", p)
	}
	for _, tt := range []struct {
		in, prefix string
		whole, ok  bool
	}{
		{"abcdefgh", "abcdefgh", true, true},
		{"abcdefghi", "abcdefgh", false, true},
		{"añb", "añb", true, true},
		{long, long[:maxPrefix], false, true},
	} {
		if p, whole, ok := indexedPrefix(tt.in, stringLengths); p != tt.prefix || whole != tt.whole || ok != tt.ok {
			t.Errorf("indexedPrefix(%q) = %q, %v, %v", tt.in, p, whole, ok)
		}
	}
	if _, _, ok := indexedPrefix("ab", textLengths); ok {
		t.Errorf("indexedPrefix(ab, textLengths) found a prefix")
	}
}
