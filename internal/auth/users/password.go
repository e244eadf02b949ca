package users

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"crypto/subtle"
	_ "embed"
	"encoding/base64"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"unicode"
	"unicode/utf8"

	"golang.org/x/crypto/argon2"
	"golang.org/x/text/unicode/norm"
)

// Password length limits (NIST SP 800-63B 5.1.1.2: at least 8, and this
// server asks 12; at least 64 must be allowed), in Unicode code points
// after NFKC normalisation.
const (
	MinPasswordLen = 12
	MaxPasswordLen = 256
)

// PasswordError says why a password was refused, in words a person can
// act on. It never contains the password.
type PasswordError struct{ Reason string }

func (e *PasswordError) Error() string { return "password: " + e.Reason }

// commonPasswords is Openwall's public-domain password.lst (Solar
// Designer, 1996-2011) as shipped by Debian's john-data 1.9.0-2 in
// /usr/share/john/password.lst, lower-cased. Few of its entries are 12
// characters long, so CheckPassword also refuses any password that is one
// of them with digits or symbols around it, or repeated ("monkey123456",
// "dragondragon"), and the generated patterns of obviousPattern.
//
//go:embed common-passwords.txt
var commonPasswordsFile []byte

var (
	commonOnce sync.Once
	common     map[string]bool
)

func commonPasswords() map[string]bool {
	commonOnce.Do(func() {
		common = map[string]bool{}
		sc := bufio.NewScanner(bytes.NewReader(commonPasswordsFile))
		for sc.Scan() {
			if w := sc.Text(); w != "" && !strings.HasPrefix(w, "#") {
				common[w] = true
			}
		}
	})
	return common
}

// normalizePassword applies NFKC (SP 800-63B 5.1.1.2), so that the same
// password typed on two keyboards hashes alike.
func normalizePassword(p string) string { return norm.NFKC.String(p) }

// CheckPassword applies the rules of NIST SP 800-63B 5.1.1.2: length
// between MinPasswordLen and MaxPasswordLen code points after NFKC, no
// composition rules, and not a common, obvious or context-specific
// password. context holds words the password must not be built from (the
// user name, the display name); "ehrvault" is always one.
func CheckPassword(password string, context ...string) error {
	if !utf8.ValidString(password) {
		return &PasswordError{"is not valid UTF-8"}
	}
	p := normalizePassword(password)
	n := utf8.RuneCountInString(p)
	if n < MinPasswordLen {
		return &PasswordError{fmt.Sprintf("is too short: use at least %d characters (a few random words make a good one)", MinPasswordLen)}
	}
	if n > MaxPasswordLen {
		return &PasswordError{fmt.Sprintf("is too long: at most %d characters", MaxPasswordLen)}
	}
	low := strings.ToLower(p)
	if obviousPattern(low) {
		return &PasswordError{"is too easy to guess: it is a repeated or sequential pattern"}
	}
	if isCommon(low) {
		return &PasswordError{"is too easy to guess: it is on a list of common passwords"}
	}
	words := append([]string{"ehrvault"}, context...)
	squeezed := stripNonLetters(low)
	for _, w := range words {
		w = strings.ToLower(normalizePassword(w))
		if utf8.RuneCountInString(w) < 3 {
			continue
		}
		if strings.Contains(low, w) && utf8.RuneCountInString(strings.ReplaceAll(low, w, "")) < 8 {
			return &PasswordError{"is too easy to guess: it is built from the user name or the service name"}
		}
		if ws := stripNonLetters(w); len(ws) >= 3 && squeezed == ws {
			return &PasswordError{"is too easy to guess: it is built from the user name or the service name"}
		}
	}
	return nil
}

// isCommon reports whether low (lower case) is a listed password, or a
// listed one of 4 or more characters with only digits and symbols around
// it, or one repeated.
func isCommon(low string) bool {
	c := commonPasswords()
	if c[low] {
		return true
	}
	core := strings.TrimFunc(low, func(r rune) bool { return !unicode.IsLetter(r) })
	if utf8.RuneCountInString(core) >= 4 && c[core] {
		return true
	}
	// "password" + digits, and the like, whatever the core
	if core == "password" || core == "passwort" || core == "passw" || core == "qwerty" || core == "letmein" || core == "welcome" || core == "admin" {
		return true
	}
	if w, ok := repeatedUnit(core); ok && utf8.RuneCountInString(w) >= 3 && c[w] {
		return true
	}
	return false
}

// obviousPattern reports runs that anyone would try: one character
// repeated, a short unit repeated ("abcabcabcabc"), and ascending or
// descending sequences of letters, digits or keyboard rows.
func obviousPattern(low string) bool {
	if w, ok := repeatedUnit(low); ok && utf8.RuneCountInString(w) <= 4 {
		return true
	}
	for _, seq := range []string{
		"abcdefghijklmnopqrstuvwxyz", "0123456789012345678901234567890", "qwertyuiopasdfghjklzxcvbnm",
		"1qaz2wsx3edc4rfv5tgb6yhn7ujm", "qazwsxedcrfvtgbyhnujmikolp",
	} {
		if strings.Contains(seq, low) || strings.Contains(reverse(seq), low) {
			return true
		}
	}
	// Only digits: a date, a phone number, a PIN; never enough.
	if strings.IndexFunc(low, func(r rune) bool { return !unicode.IsDigit(r) }) < 0 {
		return true
	}
	return false
}

// repeatedUnit returns the shortest w such that s is w repeated at least
// twice.
func repeatedUnit(s string) (string, bool) {
	r := []rune(s)
	for n := 1; n <= len(r)/2; n++ {
		if len(r)%n != 0 {
			continue
		}
		if strings.Repeat(string(r[:n]), len(r)/n) == s {
			return string(r[:n]), true
		}
	}
	return "", false
}

func reverse(s string) string {
	r := []rune(s)
	for i, j := 0, len(r)-1; i < j; i, j = i+1, j-1 {
		r[i], r[j] = r[j], r[i]
	}
	return string(r)
}

func stripNonLetters(s string) string {
	return strings.Map(func(r rune) rune {
		if unicode.IsLetter(r) {
			return r
		}
		return -1
	}, s)
}

// HashParams are argon2id's cost parameters.
type HashParams struct {
	Memory  uint32 // KiB
	Time    uint32 // passes
	Threads uint8
}

// DefaultHashParams follow OWASP's password storage cheat sheet for
// argon2id: 19 MiB, 2 passes, 1 lane.
var DefaultHashParams = HashParams{Memory: 19 * 1024, Time: 2, Threads: 1}

// TestHashParams are cheap enough for tests; never for real passwords.
var TestHashParams = HashParams{Memory: 64, Time: 1, Threads: 1}

const (
	saltLen = 16
	keyLen  = 32
)

// hashPassword returns the PHC string of argon2id over the NFKC form of
// password with a fresh random salt:
//
//	$argon2id$v=19$m=19456,t=2,p=1$<salt, base64 no padding>$<hash>
func hashPassword(password string, hp HashParams) string {
	salt := make([]byte, saltLen)
	rand.Read(salt) // never fails (crypto/rand)
	key := argon2.IDKey([]byte(normalizePassword(password)), salt, hp.Time, hp.Memory, hp.Threads, keyLen)
	b64 := base64.RawStdEncoding
	return fmt.Sprintf("$argon2id$v=%d$m=%d,t=%d,p=%d$%s$%s", argon2.Version, hp.Memory, hp.Time, hp.Threads, b64.EncodeToString(salt), b64.EncodeToString(key))
}

var errBadHash = errors.New("password hash: malformed")

// verifyPassword reports whether password matches the PHC string phc,
// comparing in constant time. The parameters are the ones in phc, so
// that raising DefaultHashParams leaves old hashes verifiable.
func verifyPassword(password, phc string) (bool, error) {
	f := strings.Split(phc, "$")
	if len(f) != 6 || f[0] != "" || f[1] != "argon2id" || f[2] != "v="+strconv.Itoa(argon2.Version) {
		return false, errBadHash
	}
	var hp HashParams
	if _, err := fmt.Sscanf(f[3], "m=%d,t=%d,p=%d", &hp.Memory, &hp.Time, &hp.Threads); err != nil || hp.Time == 0 || hp.Threads == 0 || hp.Memory > 1<<22 {
		return false, errBadHash
	}
	b64 := base64.RawStdEncoding
	salt, err1 := b64.DecodeString(f[4])
	want, err2 := b64.DecodeString(f[5])
	if err1 != nil || err2 != nil || len(want) == 0 {
		return false, errBadHash
	}
	got := argon2.IDKey([]byte(normalizePassword(password)), salt, hp.Time, hp.Memory, hp.Threads, uint32(len(want)))
	return subtle.ConstantTimeCompare(got, want) == 1, nil
}
