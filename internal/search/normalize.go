package search

import (
	"strings"
	"unicode"
	"unicode/utf8"

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

// The lengths, in runes, of the prefixes a string is indexed by: every
// length up to 6, then fewer. A search value of another length is matched
// through its longest indexed prefix and then checked against the opened
// candidates; one longer than maxPrefix through its first maxPrefix runes.
// Fewer lengths make fewer index entries per value, and show less of the
// structure of names to someone who holds the index (see docs/SECURITY.md).
var (
	stringLengths = []int{1, 2, 3, 4, 5, 6, 8, 10, 12, 16, 20, 24}
	// Texts (:text on displays and CodeableConcept.text) are long and
	// searched rarely, by words rather than letters.
	textLengths = []int{3, 5, 8, 12, 16, 24}
)

// maxPrefix is the longest prefix, in runes, that strings are indexed by.
const maxPrefix = 24

// prefixes returns the prefixes of a normalized string at the lengths of
// lengths that it reaches.
func prefixes(s string, lengths []int) []string {
	var out []string
	n, li := 0, 0
	for i := range s {
		if li < len(lengths) && n == lengths[li] {
			out = append(out, s[:i])
			li++
		}
		n++
	}
	if li < len(lengths) && n == lengths[li] {
		out = append(out, s)
	}
	return out
}

// indexedPrefix returns the prefix of a normalized search value that the
// index can find: its longest prefix at one of lengths, and whether that
// is the whole value (else matches must be checked). ok is false when the
// value is shorter than every length.
func indexedPrefix(s string, lengths []int) (prefix string, whole, ok bool) {
	n := utf8.RuneCountInString(s)
	best := -1
	for i, l := range lengths {
		if l <= n {
			best = i
		}
	}
	if best < 0 {
		return "", false, false
	}
	l := lengths[best]
	if l == n {
		return s, true, true
	}
	k := 0
	for i := range s {
		if k == l {
			return s[:i], false, true
		}
		k++
	}
	return s, true, true
}
