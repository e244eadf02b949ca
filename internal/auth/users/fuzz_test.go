package users

import (
	"net/url"
	"strings"
	"testing"
	"unicode/utf8"
)

// CheckPassword never panics, and what it accepts has the promised length.
func FuzzCheckPassword(f *testing.F) {
	for _, s := range []string{"purple elephants dance", "password123456", "\uFB01\uFB01\uFB01\uFB01\uFB01x", "\xff\xfe", strings.Repeat("ab", 200)} {
		f.Add(s, "alice")
	}
	f.Fuzz(func(t *testing.T, pw, name string) {
		if CheckPassword(pw, name) != nil {
			return
		}
		n := utf8.RuneCountInString(normalizePassword(pw))
		if n < MinPasswordLen || n > MaxPasswordLen {
			t.Errorf("CheckPassword accepted %d code points", n)
		}
	})
}

// What localPath accepts stays on this server when a browser resolves it.
func FuzzLocalPath(f *testing.F) {
	for _, s := range []string{"/", "/fhir/Patient?x=1", "//evil.example", "/\\evil", "https://evil.example", "/%2F%2Fevil"} {
		f.Add(s)
	}
	base, _ := url.Parse("https://ehr.example.org/auth/login")
	f.Fuzz(func(t *testing.T, next string) {
		if !localPath(next) {
			return
		}
		u, err := base.Parse(next)
		if err != nil || u.Host != "ehr.example.org" || u.Scheme != "https" {
			t.Errorf("localPath(%q) accepted a path that resolves to %v", next, u)
		}
	})
}
