package keyring

import (
	"bytes"
	"context"
	"crypto/hkdf"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

var testPassphrase = []byte("correct horse battery staple")

// newKeyFile creates a key file sealed with TestKDFParams and returns its
// path.
func newKeyFile(tb testing.TB) string {
	tb.Helper()
	path := filepath.Join(tb.TempDir(), "ehrvault.key")
	if err := CreateKeyFile(path, testPassphrase, TestKDFParams); err != nil {
		tb.Fatalf("CreateKeyFile: %v", err)
	}
	return path
}

// openKeyFile opens path with testPassphrase and closes it when the test
// ends.
func openKeyFile(tb testing.TB, path string) *FileProvider {
	tb.Helper()
	p, err := OpenKeyFile(path, testPassphrase)
	if err != nil {
		tb.Fatalf("OpenKeyFile: %v", err)
	}
	tb.Cleanup(p.Close)
	return p
}

func newTestProvider(tb testing.TB) *FileProvider {
	tb.Helper()
	return openKeyFile(tb, newKeyFile(tb))
}

func TestCreateOpenKeyFile(t *testing.T) {
	path := newKeyFile(t)
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if got := fi.Mode().Perm(); got != 0o600 {
		t.Errorf("key file mode = %v, want 0600", got)
	}
	p := openKeyFile(t, path)
	if !regexp.MustCompile(`^[0-9a-f]{32}$`).MatchString(p.KeyID()) {
		t.Errorf("KeyID() = %q, want 32 lowercase hex digits", p.KeyID())
	}
	if got := p.Describe(); got != "local key file (argon2id)" {
		t.Errorf("Describe() = %q", got)
	}
	data, _ := os.ReadFile(path)
	if !bytes.Contains(data, []byte(p.KeyID())) {
		t.Errorf("key file does not hold KeyID %s", p.KeyID())
	}
	if bytes.Contains(data, p.s.kek) {
		t.Errorf("key file holds the KEK in the clear")
	}

	// Two key files have different KEKs and ids.
	q := newTestProvider(t)
	if q.KeyID() == p.KeyID() || bytes.Equal(q.s.kek, p.s.kek) {
		t.Errorf("two CreateKeyFile calls gave the same KEK or key id")
	}
}

func TestOpenKeyFileWrongPassphrase(t *testing.T) {
	path := newKeyFile(t)
	for _, pass := range []string{
		"",
		"wrong",
		"correct horse battery stapl",
		"correct horse battery staple ",
		"Correct horse battery staple",
	} {
		_, err := OpenKeyFile(path, []byte(pass))
		if !errors.Is(err, ErrWrongPassphrase) {
			t.Errorf("OpenKeyFile(passphrase %q) = %v, want ErrWrongPassphrase", pass, err)
		}
	}
}

// TestOpenKeyFileTampered changes every byte of a key file in several ways
// and cuts it at every length: none of the results may open.
func TestOpenKeyFileTampered(t *testing.T) {
	path := newKeyFile(t)
	good, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	try := func(what string, data []byte) {
		t.Helper()
		bad := filepath.Join(dir, "bad.key")
		if err := os.WriteFile(bad, data, 0o600); err != nil {
			t.Fatal(err)
		}
		p, err := OpenKeyFile(bad, testPassphrase)
		if err == nil {
			p.Close()
			t.Errorf("OpenKeyFile(%s) succeeded, want an error", what)
		}
	}
	for i := range good {
		for _, mask := range []byte{0x01, 0x20, 0x80, 0xff} {
			data := bytes.Clone(good)
			data[i] ^= mask
			try(fmt.Sprintf("byte %d ^ %#02x", i, mask), data)
		}
	}
	for n := range len(good) {
		try(fmt.Sprintf("cut to %d bytes", n), good[:n])
	}
	try("one byte more", append(bytes.Clone(good), '\n'))
	try("CRLF", bytes.ReplaceAll(good, []byte("\n"), []byte("\r\n")))
	try("upper-case field name", bytes.Replace(good, []byte(`"salt"`), []byte(`"Salt"`), 1))

	// The untouched file still opens: the loop above tested tampering, not
	// a broken reader.
	openKeyFile(t, path)
}

// TestOpenKeyFileMalformed: files that are not key files fail with an error
// that names the file and is not ErrWrongPassphrase.
func TestOpenKeyFileMalformed(t *testing.T) {
	good, err := os.ReadFile(newKeyFile(t))
	if err != nil {
		t.Fatal(err)
	}
	replace := func(old, new string) []byte {
		if !bytes.Contains(good, []byte(old)) {
			t.Fatalf("key file has no %q", old)
		}
		return bytes.Replace(good, []byte(old), []byte(new), 1)
	}
	field := func(name string) string { // `"name": value`
		m := regexp.MustCompile(`"` + name + `": ("[^"]*"|[0-9]+)`).Find(good)
		if m == nil {
			t.Fatalf("key file has no field %s", name)
		}
		return string(m)
	}
	tests := []struct {
		name string
		data []byte
		want string // in the error
	}{
		{"empty", nil, "not an ehrvault key file"},
		{"null", []byte("null"), "not an ehrvault key file"},
		{"empty object", []byte("{}"), "not an ehrvault key file"},
		{"array", []byte("[1]"), "not an ehrvault key file"},
		{"age file", []byte("age-encryption.org/v1\n"), "not an ehrvault key file"},
		{"other format", replace(`"ehrvault key file"`, `"ehrvault key flie"`), "not an ehrvault key file"},
		{"version 2", replace(`"version": 1`, `"version": 2`), "unsupported version 2"},
		{"version 0", replace(`"version": 1`, `"version": 0`), "unsupported version 0"},
		{"scrypt", replace(`"argon2id"`, `"scrypt"`), "kdf.name"},
		{"upper-case key id", replace(field("key_id"), strings.ToUpper(field("key_id"))), "key_id"},
		{"short key id", replace(field("key_id"), `"key_id": "00"`), "key_id"},
		{"short salt", replace(field("salt"), `"salt": "AAAAAAAAAAAAAAAAAAAA"`), "kdf.salt"},
		{"salt not base64", replace(field("salt"), `"salt": "!!!!!!!!!!!!!!!!!!!!!!!="`), "kdf.salt"},
		{"short nonce", replace(field("nonce"), `"nonce": "AAAA"`), "nonce"},
		{"short sealed kek", replace(field("sealed_kek"), `"sealed_kek": "AAAA"`), "sealed_kek"},
		{"threads as string", replace(field("threads"), `"threads": "1"`), "kdf.threads"},
		{"too large", append(bytes.Clone(good), bytes.Repeat([]byte(" "), maxKeyFileSize)...), "larger than"},
		{"unknown field", replace(`"nonce"`, `"extra": 1, "nonce"`), "exact form"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "bad.key")
			if err := os.WriteFile(path, tt.data, 0o600); err != nil {
				t.Fatal(err)
			}
			_, err := OpenKeyFile(path, testPassphrase)
			if err == nil || errors.Is(err, ErrWrongPassphrase) {
				t.Fatalf("OpenKeyFile = %v, want a malformed-file error", err)
			}
			if !strings.Contains(err.Error(), path) || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("OpenKeyFile error %q, want it to name %s and say %q", err, path, tt.want)
			}
		})
	}

	t.Run("missing", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "none.key")
		_, err := OpenKeyFile(path, testPassphrase)
		if !errors.Is(err, os.ErrNotExist) || !strings.Contains(err.Error(), path) {
			t.Errorf("OpenKeyFile(missing) = %v, want ErrNotExist naming %s", err, path)
		}
	})
	t.Run("directory", func(t *testing.T) {
		path := t.TempDir()
		_, err := OpenKeyFile(path, testPassphrase)
		if err == nil || errors.Is(err, ErrWrongPassphrase) || !strings.Contains(err.Error(), path) {
			t.Errorf("OpenKeyFile(directory) = %v, want an error naming %s", err, path)
		}
	})
}

// TestKDFParamBombs: argon2id parameters that would make opening a key file
// allocate or spin without bound are refused, before any work is done.
func TestKDFParamBombs(t *testing.T) {
	good, err := os.ReadFile(newKeyFile(t))
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name   string
		params string // replaces the file's kdf numbers
		p      KDFParams
	}{
		{"100 GiB", `"time": 1, "memory_kib": 104857600, "threads": 1`, KDFParams{1, 100 << 20, 1}},
		{"just over 2 GiB", `"time": 1, "memory_kib": 2097153, "threads": 1`, KDFParams{1, 2<<20 + 1, 1}},
		{"max uint32 KiB", `"time": 1, "memory_kib": 4294967295, "threads": 1`, KDFParams{1, 1<<32 - 1, 1}},
		{"a million passes", `"time": 1000000, "memory_kib": 64, "threads": 1`, KDFParams{1000000, 64, 1}},
		{"max uint32 passes", `"time": 4294967295, "memory_kib": 64, "threads": 1`, KDFParams{1<<32 - 1, 64, 1}},
		{"255 threads", `"time": 1, "memory_kib": 4096, "threads": 255`, KDFParams{1, 4096, 255}},
		{"zero time", `"time": 0, "memory_kib": 64, "threads": 1`, KDFParams{0, 64, 1}},
		{"zero threads", `"time": 1, "memory_kib": 64, "threads": 0`, KDFParams{1, 64, 0}},
		{"memory below 8 KiB per lane", `"time": 1, "memory_kib": 31, "threads": 4`, KDFParams{1, 31, 4}},
	}
	re := regexp.MustCompile(`"time": \d+,\s+"memory_kib": \d+,\s+"threads": \d+`)
	if !re.Match(good) {
		t.Fatalf("key file has no kdf numbers in the expected form:\n%s", good)
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "bomb.key")
			data := re.ReplaceAll(good, []byte(strings.ReplaceAll(tt.params, ", ", ",\n    ")))
			if err := os.WriteFile(path, data, 0o600); err != nil {
				t.Fatal(err)
			}
			_, err := OpenKeyFile(path, testPassphrase)
			if err == nil || errors.Is(err, ErrWrongPassphrase) || !strings.Contains(err.Error(), "field kdf") {
				t.Errorf("OpenKeyFile = %v, want the kdf parameters refused", err)
			}
			err = CreateKeyFile(filepath.Join(t.TempDir(), "new.key"), testPassphrase, tt.p)
			if err == nil || !strings.Contains(err.Error(), "argon2id") {
				t.Errorf("CreateKeyFile(%+v) = %v, want the parameters refused", tt.p, err)
			}
		})
	}
}

func TestCreateKeyFileRefusesExisting(t *testing.T) {
	path := newKeyFile(t)
	before, _ := os.ReadFile(path)
	err := CreateKeyFile(path, []byte("another passphrase"), TestKDFParams)
	if !errors.Is(err, ErrKeyFileExists) {
		t.Errorf("CreateKeyFile(existing key file) = %v, want ErrKeyFileExists", err)
	}
	if after, _ := os.ReadFile(path); !bytes.Equal(before, after) {
		t.Errorf("CreateKeyFile changed an existing key file")
	}

	other := filepath.Join(t.TempDir(), "notes.txt")
	os.WriteFile(other, []byte("keep me"), 0o644)
	if err := CreateKeyFile(other, testPassphrase, TestKDFParams); !errors.Is(err, ErrKeyFileExists) {
		t.Errorf("CreateKeyFile(existing other file) = %v, want ErrKeyFileExists", err)
	}
	if got, _ := os.ReadFile(other); string(got) != "keep me" {
		t.Errorf("CreateKeyFile changed an existing file: %q", got)
	}

	if err := CreateKeyFile(filepath.Join(t.TempDir(), "k"), nil, TestKDFParams); err == nil {
		t.Errorf("CreateKeyFile(empty passphrase) succeeded")
	}
	if err := CreateKeyFile(filepath.Join(t.TempDir(), "no", "such", "dir", "k"), testPassphrase, TestKDFParams); err == nil {
		t.Errorf("CreateKeyFile(missing directory) succeeded")
	}
}

func TestChangePassphrase(t *testing.T) {
	ctx := context.Background()
	path := newKeyFile(t)
	dir := filepath.Dir(path)
	p := openKeyFile(t, path)
	ad := []byte("ehrvault data key v1\x00Patient/1")
	dk := []byte("0123456789abcdef0123456789abcdef")
	wrapped, err := p.Wrap(ctx, dk, ad)
	if err != nil {
		t.Fatal(err)
	}
	derived, _ := p.Derive(ctx, PurposeIndex)

	newPass := []byte("a new passphrase, longer")
	newParams := KDFParams{Time: 2, MemoryKiB: 128, Threads: 2}
	before, _ := os.ReadFile(path)

	// A wrong old passphrase changes nothing.
	if err := ChangePassphrase(path, []byte("wrong"), newPass, newParams); !errors.Is(err, ErrWrongPassphrase) {
		t.Fatalf("ChangePassphrase(wrong old passphrase) = %v, want ErrWrongPassphrase", err)
	}
	if after, _ := os.ReadFile(path); !bytes.Equal(before, after) {
		t.Fatalf("failed ChangePassphrase changed the key file")
	}
	if err := ChangePassphrase(path, testPassphrase, nil, newParams); err == nil {
		t.Fatalf("ChangePassphrase(empty new passphrase) succeeded")
	}
	if err := ChangePassphrase(path, testPassphrase, newPass, KDFParams{1, 100 << 20, 1}); err == nil {
		t.Fatalf("ChangePassphrase(100 GiB) succeeded")
	}

	if err := ChangePassphrase(path, testPassphrase, newPass, newParams); err != nil {
		t.Fatalf("ChangePassphrase: %v", err)
	}
	if _, err := OpenKeyFile(path, testPassphrase); !errors.Is(err, ErrWrongPassphrase) {
		t.Errorf("OpenKeyFile(old passphrase) after change = %v, want ErrWrongPassphrase", err)
	}
	q, err := OpenKeyFile(path, newPass)
	if err != nil {
		t.Fatalf("OpenKeyFile(new passphrase): %v", err)
	}
	defer q.Close()
	if q.KeyID() != p.KeyID() {
		t.Errorf("KeyID after change = %s, want %s", q.KeyID(), p.KeyID())
	}
	if q.params != newParams {
		t.Errorf("params after change = %+v, want %+v", q.params, newParams)
	}
	got, err := q.Unwrap(ctx, wrapped, ad)
	if err != nil || !bytes.Equal(got, dk) {
		t.Errorf("Unwrap of a key wrapped before the change = %x, %v; want the key", got, err)
	}
	if d, _ := q.Derive(ctx, PurposeIndex); !bytes.Equal(d, derived) {
		t.Errorf("Derive after change differs from before")
	}

	fi, _ := os.Stat(path)
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("mode after change = %v, want 0600", fi.Mode().Perm())
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 {
		var names []string
		for _, e := range entries {
			names = append(names, e.Name())
		}
		t.Errorf("directory after change holds %v, want only the key file", names)
	}
}

func TestFileProviderClose(t *testing.T) {
	ctx := context.Background()
	p := newTestProvider(t)
	wrapped, err := p.Wrap(ctx, []byte("k"), nil)
	if err != nil {
		t.Fatal(err)
	}
	kek := p.s.kek
	p.Close()
	if !bytes.Equal(kek, make([]byte, kekSize)) {
		t.Errorf("Close left the KEK in memory")
	}
	if _, err := p.Wrap(ctx, []byte("k"), nil); !errors.Is(err, ErrClosed) {
		t.Errorf("Wrap after Close = %v, want ErrClosed", err)
	}
	if _, err := p.Unwrap(ctx, wrapped, nil); !errors.Is(err, ErrClosed) {
		t.Errorf("Unwrap after Close = %v, want ErrClosed", err)
	}
	if _, err := p.Derive(ctx, PurposeIndex); !errors.Is(err, ErrClosed) {
		t.Errorf("Derive after Close = %v, want ErrClosed", err)
	}
	p.Close() // twice is fine
}

func TestWrapUnwrap(t *testing.T) {
	ctx := context.Background()
	p := newTestProvider(t)
	other := newTestProvider(t)
	ad := []byte("ehrvault data key v1\x00Patient/1")
	key := []byte("0123456789abcdef0123456789abcdef")
	wrapped, err := p.Wrap(ctx, key, ad)
	if err != nil {
		t.Fatal(err)
	}
	if got, err := p.Unwrap(ctx, wrapped, ad); err != nil || !bytes.Equal(got, key) {
		t.Fatalf("Unwrap(Wrap(key)) = %x, %v; want the key", got, err)
	}
	again, _ := p.Wrap(ctx, key, ad)
	if bytes.Equal(again, wrapped) {
		t.Errorf("two Wraps of the same key are equal: nonce reused")
	}
	bad := func(what string, prov *FileProvider, w, ad []byte) {
		t.Helper()
		if got, err := prov.Unwrap(ctx, w, ad); !errors.Is(err, ErrUnwrap) || got != nil {
			t.Errorf("Unwrap(%s) = %x, %v; want ErrUnwrap", what, got, err)
		}
	}
	bad("other ad", p, wrapped, []byte("ehrvault data key v1\x00Patient/2"))
	bad("no ad", p, wrapped, nil)
	bad("other KEK", other, wrapped, ad)
	for i := range wrapped {
		w := bytes.Clone(wrapped)
		w[i] ^= 0x01
		bad(fmt.Sprintf("byte %d flipped", i), p, w, ad)
	}
	for n := range len(wrapped) {
		bad(fmt.Sprintf("cut to %d", n), p, wrapped[:n], ad)
	}
}

func TestDerive(t *testing.T) {
	ctx := context.Background()
	path := newKeyFile(t)
	p := openKeyFile(t, path)
	again := openKeyFile(t, path)
	other := newTestProvider(t)
	purposes := []string{PurposeIndex, PurposeCursor, PurposeAuditSigning, PurposeToken}
	seen := map[string]string{}
	for _, purpose := range purposes {
		k1, err := p.Derive(ctx, purpose)
		if err != nil {
			t.Fatalf("Derive(%q): %v", purpose, err)
		}
		if len(k1) != 32 {
			t.Errorf("Derive(%q) is %d bytes, want 32", purpose, len(k1))
		}
		if k2, _ := p.Derive(ctx, purpose); !bytes.Equal(k1, k2) {
			t.Errorf("Derive(%q) twice differs", purpose)
		}
		if k3, _ := again.Derive(ctx, purpose); !bytes.Equal(k1, k3) {
			t.Errorf("Derive(%q) differs after reopening the key file", purpose)
		}
		if k4, _ := other.Derive(ctx, purpose); bytes.Equal(k1, k4) {
			t.Errorf("Derive(%q) is the same under two KEKs", purpose)
		}
		if prev, ok := seen[string(k1)]; ok {
			t.Errorf("Derive(%q) == Derive(%q)", purpose, prev)
		}
		seen[string(k1)] = purpose
		// The documented construction, computed independently.
		want, _ := hkdf.Key(sha256.New, p.s.kek, nil, "ehrvault/v1/"+purpose, 32)
		if !bytes.Equal(k1, want) {
			t.Errorf("Derive(%q) = %x, want HKDF-SHA256(KEK, info %q) = %x", purpose, k1, "ehrvault/v1/"+purpose, want)
		}
	}
	if _, err := p.Derive(ctx, ""); err == nil {
		t.Errorf("Derive(\"\") succeeded")
	}
	// The wrapping key is not a derived key of any purpose: its info lies
	// outside the "ehrvault/v1/" namespace.
	if strings.HasPrefix(wrapInfo, deriveInfoPrefix) {
		t.Errorf("wrapInfo %q is inside the Derive namespace %q", wrapInfo, deriveInfoPrefix)
	}
}

// TestKeyFileGolden opens a key file written by this code when the format
// was fixed, so that a change to the format or the header encoding cannot
// pass unnoticed. Its passphrase is "golden" and its KEK is known.
func TestKeyFileGolden(t *testing.T) {
	path := filepath.Join("testdata", "golden.key")
	p, err := OpenKeyFile(path, []byte("golden"))
	if err != nil {
		t.Fatalf("OpenKeyFile(%s): %v", path, err)
	}
	defer p.Close()
	if got, want := hex.EncodeToString(p.s.kek), "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f"; got != want {
		t.Errorf("golden KEK = %s, want %s", got, want)
	}
	if got, want := p.KeyID(), "f0e1d2c3b4a5968778695a4b3c2d1e0f"; got != want {
		t.Errorf("golden KeyID = %s, want %s", got, want)
	}
}

func FuzzParseKeyFile(f *testing.F) {
	good, err := os.ReadFile(filepath.Join("testdata", "golden.key"))
	if err != nil {
		f.Fatal(err)
	}
	f.Add(good)
	f.Add([]byte("{}"))
	f.Add([]byte(`{"format": "ehrvault key file", "version": 1}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		kf, err := parseKeyFile(data)
		if err != nil {
			return
		}
		// Anything accepted is canonical and within bounds.
		if !bytes.Equal(kf.marshal(), data) {
			t.Errorf("parseKeyFile accepted a non-canonical file")
		}
		if err := kf.params.check(); err != nil {
			t.Errorf("parseKeyFile accepted %+v: %v", kf.params, err)
		}
	})
}
