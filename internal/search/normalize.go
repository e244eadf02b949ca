package search

import (
	"strings"
	"unicode"

	"golang.org/x/text/unicode/norm"
)

// normalize folds a string for string search, which FHIR makes case- and
// accent-insensitive: decomposed (NFKD), combining marks dropped, lower
// case, runs of white space made one space, trimmed. "Müller  Ø" and
// "muller ø" are the same.
func normalize(s string) string {
	var b strings.Builder
	b.Grow(len(s))
	space := false
	for _, r := range norm.NFKD.String(s) {
		switch {
		case unicode.Is(unicode.Mn, r):
			continue
		case unicode.IsSpace(r):
			space = b.Len() > 0
			continue
		}
		if space {
			b.WriteByte(' ')
			space = false
		}
		b.WriteRune(unicode.ToLower(r))
	}
	return b.String()
}

// maxPrefix is the longest prefix, in runes, that string values are
// indexed by. A search value that is longer is matched through its first
// maxPrefix runes and then checked against the resources themselves.
const maxPrefix = 24

// prefixes returns the prefixes of a normalized string, 1 to maxPrefix
// runes long, and whether the whole string is among them.
func prefixes(s string) ([]string, bool) {
	var out []string
	n := 0
	for i := range s {
		if i > 0 {
			out = append(out, s[:i])
		}
		n++
		if n > maxPrefix {
			return out, false
		}
	}
	if s != "" {
		out = append(out, s)
	}
	return out, true
}
