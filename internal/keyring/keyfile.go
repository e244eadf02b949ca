package keyring

import (
	"bytes"
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"sync"

	"golang.org/x/crypto/argon2"
)

// A key file holds the KEK sealed under a passphrase. It is a small JSON
// object; binary fields are standard base64 with padding (RFC 4648 §4), the
// key id is lowercase hex. For example (testdata/golden.key: TestKDFParams,
// passphrase "golden"):
//
//	{
//	  "format": "ehrvault key file",
//	  "version": 1,
//	  "key_id": "f0e1d2c3b4a5968778695a4b3c2d1e0f",
//	  "kdf": {
//	    "name": "argon2id",
//	    "time": 1,
//	    "memory_kib": 64,
//	    "threads": 1,
//	    "salt": "pyz5rQFtcbeHV+gLnwE6dw=="
//	  },
//	  "nonce": "b3bQcMXkR1aeJNPh",
//	  "sealed_kek": "EBmEHtZMxf/TjElOwjeV96lnS4nFDynO0ZBreDVUfJgkPGWAE1ruBzmp934OncAh"
//	}
//
// The file is read as follows:
//
//	sealing key = argon2id(passphrase, salt, time, memory_kib, threads, 32 bytes)  (RFC 9106)
//	KEK         = AES-256-GCM-Open(sealing key, nonce, sealed_kek, header)
//	header      = "ehrvault key file\x00" || u32(version)
//	              || u32(len("argon2id")) || "argon2id"
//	              || u32(time) || u32(memory_kib) || u8(threads)
//	              || u32(len(salt)) || salt || u32(len(key id)) || key id
//
// with every integer big-endian and the key id as its 16 raw bytes. Binding
// the header as associated data means any change to it (a cheaper KDF, a
// different key id) fails like a wrong passphrase. The file must also be
// byte for byte what ehrvault writes (this field order, two-space indent,
// one final newline), so not even a change that decodes to the same values
// goes unnoticed.
//
// A fresh salt is drawn whenever the file is written, so each sealing key
// seals exactly one message; the random nonce is belt and braces.
const (
	keyFileFormat  = "ehrvault key file"
	keyFileVersion = 1
	kdfArgon2id    = "argon2id"

	kekSize        = 32
	saltSize       = 16
	keyIDSize      = 16
	gcmNonceSize   = 12
	gcmTagSize     = 16
	maxKeyFileSize = 64 << 10 // a real key file is about 350 bytes

	// Sane maximums for the argon2id parameters of a key file. A hostile or
	// damaged file must not make OpenKeyFile allocate or spin without bound.
	// 2 GiB is RFC 9106's first recommendation, the most anyone should use.
	maxKDFTime      = 16
	maxKDFMemoryKiB = 2 << 20 // 2 GiB
	maxKDFThreads   = 32
)

// wrapInfo is the HKDF info of the key that wraps data keys. It lies outside
// the "ehrvault/v1/" namespace of Derive, so no purpose can derive it.
const wrapInfo = "ehrvault/wrap/v1"

// deriveInfoPrefix is the HKDF info prefix of derived keys.
const deriveInfoPrefix = "ehrvault/v1/"

// KDFParams are the argon2id cost parameters (RFC 9106 §3.1) that turn a
// passphrase into the key that seals the KEK.
type KDFParams struct {
	Time      uint32 // passes over memory (t)
	MemoryKiB uint32 // memory in KiB (m)
	Threads   uint8  // lanes (p)
}

// DefaultKDFParams is RFC 9106's second recommended option (§4): t=3,
// m=64 MiB, p=4. Opening a key file with them takes 0.15 to 0.3 s on a
// 2-core virtual machine, once at start-up (BenchmarkOpenKeyFile).
var DefaultKDFParams = KDFParams{Time: 3, MemoryKiB: 64 << 10, Threads: 4}

// TestKDFParams are as cheap as argon2id allows, for tests only: a key file
// sealed with them is barely stronger than its passphrase. Never use them for
// data that matters.
var TestKDFParams = KDFParams{Time: 1, MemoryKiB: 64, Threads: 1}

// check reports parameters outside what argon2id needs or what we accept.
func (p KDFParams) check() error {
	switch {
	case p.Time < 1 || p.Time > maxKDFTime:
		return fmt.Errorf("argon2id time %d outside 1..%d", p.Time, maxKDFTime)
	case p.Threads < 1 || p.Threads > maxKDFThreads:
		return fmt.Errorf("argon2id threads %d outside 1..%d", p.Threads, maxKDFThreads)
	case p.MemoryKiB < 8*uint32(p.Threads) || p.MemoryKiB > maxKDFMemoryKiB:
		return fmt.Errorf("argon2id memory %d KiB outside %d..%d", p.MemoryKiB, 8*uint32(p.Threads), maxKDFMemoryKiB)
	}
	return nil
}

var errEmptyPassphrase = errors.New("keyring: empty passphrase")

// FileProvider is the local Provider: a KEK unsealed from a key file and
// held only in memory. Close forgets it.
type FileProvider struct {
	keyID  []byte
	params KDFParams

	mu sync.RWMutex
	s  *fileSecrets // nil after Close
}

type fileSecrets struct {
	kek  []byte
	wrap cipher.AEAD // AES-256-GCM under HKDF(KEK, wrapInfo), random nonces
}

var (
	_ Provider       = (*FileProvider)(nil)
	_ slog.LogValuer = (*FileProvider)(nil)
	_ fmt.Formatter  = (*FileProvider)(nil)
)

// newFileProvider takes ownership of kek.
func newFileProvider(kek, keyID []byte, p KDFParams) (*FileProvider, error) {
	wk, err := hkdf.Key(sha256.New, kek, nil, wrapInfo, 32)
	if err != nil {
		clear(kek)
		return nil, fmt.Errorf("keyring: derive wrapping key: %w", err)
	}
	defer clear(wk)
	wrap, err := newRandomNonceGCM(wk)
	if err != nil {
		clear(kek)
		return nil, err
	}
	return &FileProvider{keyID: keyID, params: p, s: &fileSecrets{kek: kek, wrap: wrap}}, nil
}

// newRandomNonceGCM returns AES-256-GCM that draws a random 96-bit nonce for
// every Seal and puts it in front of the ciphertext.
func newRandomNonceGCM(key []byte) (cipher.AEAD, error) {
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, fmt.Errorf("keyring: %w", err)
	}
	aead, err := cipher.NewGCMWithRandomNonce(block)
	if err != nil {
		return nil, fmt.Errorf("keyring: %w", err)
	}
	return aead, nil
}

// wrapVersion is the first byte of a wrapped data key. Wrapping draws a
// random nonce like DataKey.Seal; the wrapping key seals one message per
// owner (millions at most), far below GCM's 2³² bound for random nonces.
const wrapVersion = 0x01

// Wrap seals plaintext under the KEK's wrapping key:
// 0x01 || nonce (12) || ciphertext || tag (16).
func (p *FileProvider) Wrap(ctx context.Context, plaintext, ad []byte) ([]byte, error) {
	p.mu.RLock()
	defer p.mu.RUnlock()
	if p.s == nil {
		return nil, ErrClosed
	}
	out := make([]byte, 1, 1+p.s.wrap.Overhead()+len(plaintext))
	out[0] = wrapVersion
	return p.s.wrap.Seal(out, nil, plaintext, ad), nil
}

// Unwrap opens what Wrap returned; ErrUnwrap if it does not authenticate
// with ad.
func (p *FileProvider) Unwrap(ctx context.Context, wrapped, ad []byte) ([]byte, error) {
	p.mu.RLock()
	defer p.mu.RUnlock()
	if p.s == nil {
		return nil, ErrClosed
	}
	if len(wrapped) < 1+p.s.wrap.Overhead() || wrapped[0] != wrapVersion {
		return nil, ErrUnwrap
	}
	pt, err := p.s.wrap.Open(nil, nil, wrapped[1:], ad)
	if err != nil {
		return nil, ErrUnwrap
	}
	return pt, nil
}

// Derive returns HKDF-SHA256(KEK, salt none, info "ehrvault/v1/"+purpose),
// 32 bytes (RFC 5869; the KEK is uniformly random, so no salt is needed).
func (p *FileProvider) Derive(ctx context.Context, purpose string) ([]byte, error) {
	if purpose == "" {
		return nil, errors.New("keyring: derive: empty purpose")
	}
	p.mu.RLock()
	defer p.mu.RUnlock()
	if p.s == nil {
		return nil, ErrClosed
	}
	k, err := hkdf.Key(sha256.New, p.s.kek, nil, deriveInfoPrefix+purpose, 32)
	if err != nil {
		return nil, fmt.Errorf("keyring: derive %q: %w", purpose, err)
	}
	return k, nil
}

// Describe implements Provider.
func (p *FileProvider) Describe() string { return "local key file (argon2id)" }

// KeyID returns the KEK's id: 32 lowercase hex digits, random, public, the
// same for as long as the KEK lives (ChangePassphrase keeps it). Rows may
// record it to say which KEK wrapped them.
func (p *FileProvider) KeyID() string { return hex.EncodeToString(p.keyID) }

// Close zeroes the KEK. Later calls fail with ErrClosed. The expanded AES
// key inside the wrapping AEAD cannot be zeroed from Go; it becomes garbage.
func (p *FileProvider) Close() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.s != nil {
		clear(p.s.kek)
		p.s = nil
	}
}

// LogValue implements slog.LogValuer: the provider kind, key id and KDF
// parameters, never the key.
func (p *FileProvider) LogValue() slog.Value {
	return slog.GroupValue(
		slog.String("provider", p.Describe()),
		slog.String("key_id", p.KeyID()),
		slog.String("kdf", fmt.Sprintf("argon2id t=%d m=%dKiB p=%d", p.params.Time, p.params.MemoryKiB, p.params.Threads)),
		slog.String("kek", "REDACTED"),
	)
}

// Format prints the provider's key id and never its key, whatever the verb.
// Without it fmt reaches the key: a verb that does not suit a pointer field
// (%s, %x, %d) makes fmt print what the pointer points to.
func (p *FileProvider) Format(f fmt.State, verb rune) {
	fmt.Fprintf(f, "keyring.FileProvider{key_id: %s, kek: REDACTED}", p.KeyID())
}

// CreateKeyFile generates a random KEK and writes it to path sealed under
// passphrase with argon2id parameters p. It never overwrites: if path
// exists it returns ErrKeyFileExists. The file is created with mode 0600 and
// is durable (file and directory synced) when CreateKeyFile returns nil.
func CreateKeyFile(path string, passphrase []byte, p KDFParams) error {
	if len(passphrase) == 0 {
		return errEmptyPassphrase
	}
	if err := p.check(); err != nil {
		return fmt.Errorf("keyring: create key file: %w", err)
	}
	kek := make([]byte, kekSize)
	rand.Read(kek)
	defer clear(kek)
	keyID := make([]byte, keyIDSize)
	rand.Read(keyID)
	data, err := sealKeyFile(kek, keyID, passphrase, p)
	if err != nil {
		return err
	}

	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if errors.Is(err, fs.ErrExist) {
		return fmt.Errorf("%s: %w", path, ErrKeyFileExists)
	} else if err != nil {
		return fmt.Errorf("keyring: create key file: %w", err)
	}
	if err := writeSync(f, data); err != nil {
		os.Remove(path) // we created it with O_EXCL: it is ours
		return fmt.Errorf("keyring: write key file: %w", err)
	}
	if err := syncDir(filepath.Dir(path)); err != nil {
		return fmt.Errorf("keyring: write key file: %w", err)
	}
	return nil
}

// OpenKeyFile unseals the key file at path with passphrase. A wrong
// passphrase and a well-formed file whose sealed key or header was altered
// are the same error, ErrWrongPassphrase: nobody can tell them apart. A file
// that cannot be read, is not byte for byte in the key-file format, or asks
// for argon2id parameters above the maximums (time 16, memory 2 GiB,
// threads 32) is an error naming the file; the parameters are checked
// before any work is done.
func OpenKeyFile(path string, passphrase []byte) (*FileProvider, error) {
	kf, err := readKeyFile(path)
	if err != nil {
		return nil, err
	}
	kek, err := kf.unseal(passphrase)
	if err != nil {
		return nil, err
	}
	return newFileProvider(kek, kf.keyID, kf.params)
}

// ChangePassphrase re-seals the KEK of the key file at path under a new
// passphrase and argon2id parameters p. The KEK and its id stay the same,
// so nothing else changes. The file is replaced atomically: a new file is
// written beside it, synced, read back and unsealed with the new
// passphrase, then renamed over the old one, and the directory synced. On
// any error the old file is left as it was.
func ChangePassphrase(path string, oldPassphrase, newPassphrase []byte, p KDFParams) error {
	if len(newPassphrase) == 0 {
		return errEmptyPassphrase
	}
	if err := p.check(); err != nil {
		return fmt.Errorf("keyring: change passphrase: %w", err)
	}
	kf, err := readKeyFile(path)
	if err != nil {
		return err
	}
	kek, err := kf.unseal(oldPassphrase)
	if err != nil {
		return err
	}
	defer clear(kek)
	data, err := sealKeyFile(kek, kf.keyID, newPassphrase, p)
	if err != nil {
		return err
	}

	dir := filepath.Dir(path)
	tmp, err := os.CreateTemp(dir, "."+filepath.Base(path)+".*.tmp") // mode 0600, O_EXCL
	if err != nil {
		return fmt.Errorf("keyring: change passphrase: %w", err)
	}
	tmpPath := tmp.Name()
	done := false
	defer func() {
		if !done {
			os.Remove(tmpPath)
		}
	}()
	if err := writeSync(tmp, data); err != nil {
		return fmt.Errorf("keyring: change passphrase: %w", err)
	}
	// Read back what reached the disk before the only other copy of the
	// KEK is replaced.
	check, err := readKeyFile(tmpPath)
	if err != nil {
		return fmt.Errorf("keyring: change passphrase: verify new file: %w", err)
	}
	kek2, err := check.unseal(newPassphrase)
	if err != nil {
		return fmt.Errorf("keyring: change passphrase: verify new file: %w", err)
	}
	same := subtle.ConstantTimeCompare(kek, kek2) == 1
	clear(kek2)
	if !same {
		return errors.New("keyring: change passphrase: verify new file: KEK differs")
	}
	if err := os.Rename(tmpPath, path); err != nil {
		return fmt.Errorf("keyring: change passphrase: %w", err)
	}
	done = true
	if err := syncDir(dir); err != nil {
		return fmt.Errorf("keyring: change passphrase: %w", err)
	}
	return nil
}

// writeSync writes data to f, syncs and closes it.
func writeSync(f *os.File, data []byte) error {
	_, err := f.Write(data)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

// syncDir makes a created or renamed entry of dir durable.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	return err
}

// keyFile is a parsed key file. Nothing in it is secret but the KEK it
// seals.
type keyFile struct {
	keyID  []byte
	params KDFParams
	salt   []byte
	nonce  []byte
	sealed []byte // KEK || tag
}

// keyFileJSON and kdfJSON are the file's JSON shape.
type keyFileJSON struct {
	Format  string  `json:"format"`
	Version int     `json:"version"`
	KeyID   string  `json:"key_id"`
	KDF     kdfJSON `json:"kdf"`
	Nonce   string  `json:"nonce"`
	Sealed  string  `json:"sealed_kek"`
}

type kdfJSON struct {
	Name      string `json:"name"`
	Time      uint32 `json:"time"`
	MemoryKiB uint32 `json:"memory_kib"`
	Threads   uint8  `json:"threads"`
	Salt      string `json:"salt"`
}

// readKeyFile reads and parses the key file at path. Its errors name the
// file.
func readKeyFile(path string) (*keyFile, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("keyring: read key file: %w", err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxKeyFileSize+1))
	if err != nil {
		return nil, fmt.Errorf("keyring: read key file: %w", err)
	}
	if len(data) > maxKeyFileSize {
		return nil, fmt.Errorf("keyring: key file %s: larger than %d bytes, not a key file", path, maxKeyFileSize)
	}
	kf, err := parseKeyFile(data)
	if err != nil {
		return nil, fmt.Errorf("keyring: key file %s: %w", path, err)
	}
	return kf, nil
}

// parseKeyFile checks the syntax and ranges of a key file; it does not
// unseal it. Its errors say where, never what.
func parseKeyFile(data []byte) (*keyFile, error) {
	// Format and version first, so that a newer file says so rather than
	// failing on a field this build does not know.
	var head struct {
		Format  string `json:"format"`
		Version int    `json:"version"`
	}
	if err := json.Unmarshal(data, &head); err != nil || head.Format != keyFileFormat {
		return nil, errors.New("not an ehrvault key file")
	}
	if head.Version != keyFileVersion {
		return nil, fmt.Errorf("field version: unsupported version %d (this build reads version %d)", head.Version, keyFileVersion)
	}
	var j keyFileJSON
	if err := json.Unmarshal(data, &j); err != nil {
		var te *json.UnmarshalTypeError
		if errors.As(err, &te) && te.Field != "" {
			return nil, fmt.Errorf("field %s: wrong type or out of range", te.Field)
		}
		return nil, errors.New("not an ehrvault key file")
	}
	if j.KDF.Name != kdfArgon2id {
		return nil, errors.New("field kdf.name: unsupported key derivation function")
	}
	kf := &keyFile{params: KDFParams{Time: j.KDF.Time, MemoryKiB: j.KDF.MemoryKiB, Threads: j.KDF.Threads}}
	if err := kf.params.check(); err != nil {
		return nil, fmt.Errorf("field kdf: %w", err)
	}
	var err error
	if kf.keyID, err = hex.DecodeString(j.KeyID); err != nil || len(kf.keyID) != keyIDSize || hex.EncodeToString(kf.keyID) != j.KeyID {
		return nil, fmt.Errorf("field key_id: not %d lowercase hex digits", 2*keyIDSize)
	}
	if kf.salt, err = decodeBase64("kdf.salt", j.KDF.Salt, saltSize); err != nil {
		return nil, err
	}
	if kf.nonce, err = decodeBase64("nonce", j.Nonce, gcmNonceSize); err != nil {
		return nil, err
	}
	if kf.sealed, err = decodeBase64("sealed_kek", j.Sealed, kekSize+gcmTagSize); err != nil {
		return nil, err
	}
	// Only the exact bytes ehrvault writes are accepted. encoding/json
	// matches field names without regard to case and skips unknown ones;
	// requiring the canonical form leaves no way to change a byte of the
	// file, not even its white space, without being noticed.
	if !bytes.Equal(kf.marshal(), data) {
		return nil, errors.New("not in the exact form ehrvault writes (edited or damaged?)")
	}
	return kf, nil
}

// decodeBase64 decodes s, which must be the canonical padded standard
// base64 of exactly n bytes.
func decodeBase64(field, s string, n int) ([]byte, error) {
	b, err := base64.StdEncoding.Strict().DecodeString(s)
	if err != nil || len(b) != n || base64.StdEncoding.EncodeToString(b) != s {
		return nil, fmt.Errorf("field %s: not base64 of %d bytes", field, n)
	}
	return b, nil
}

// marshal encodes kf as a key file.
func (kf *keyFile) marshal() []byte {
	j := keyFileJSON{
		Format:  keyFileFormat,
		Version: keyFileVersion,
		KeyID:   hex.EncodeToString(kf.keyID),
		KDF: kdfJSON{
			Name:      kdfArgon2id,
			Time:      kf.params.Time,
			MemoryKiB: kf.params.MemoryKiB,
			Threads:   kf.params.Threads,
			Salt:      base64.StdEncoding.EncodeToString(kf.salt),
		},
		Nonce:  base64.StdEncoding.EncodeToString(kf.nonce),
		Sealed: base64.StdEncoding.EncodeToString(kf.sealed),
	}
	b, err := json.MarshalIndent(j, "", "  ")
	if err != nil {
		panic("keyring: marshal key file: " + err.Error()) // plain strings and numbers cannot fail
	}
	return append(b, '\n')
}

// header returns the associated data that binds the file's header to the
// sealed KEK; see the format comment above.
func (kf *keyFile) header() []byte {
	b := make([]byte, 0, 96)
	b = append(b, keyFileFormat+"\x00"...)
	b = binary.BigEndian.AppendUint32(b, keyFileVersion)
	b = appendLenPrefixed(b, kdfArgon2id)
	b = binary.BigEndian.AppendUint32(b, kf.params.Time)
	b = binary.BigEndian.AppendUint32(b, kf.params.MemoryKiB)
	b = append(b, kf.params.Threads)
	b = appendLenPrefixed(b, kf.salt)
	b = appendLenPrefixed(b, kf.keyID)
	return b
}

// sealingAEAD runs argon2id over passphrase and returns AES-256-GCM under
// the result. This is the expensive step.
func (kf *keyFile) sealingAEAD(passphrase []byte) (cipher.AEAD, error) {
	k := argon2.IDKey(passphrase, kf.salt, kf.params.Time, kf.params.MemoryKiB, kf.params.Threads, 32)
	defer clear(k)
	block, err := aes.NewCipher(k)
	if err != nil {
		return nil, fmt.Errorf("keyring: %w", err)
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, fmt.Errorf("keyring: %w", err)
	}
	return aead, nil
}

// unseal returns the KEK; ErrWrongPassphrase if it does not open.
func (kf *keyFile) unseal(passphrase []byte) ([]byte, error) {
	aead, err := kf.sealingAEAD(passphrase)
	if err != nil {
		return nil, err
	}
	kek, err := aead.Open(nil, kf.nonce, kf.sealed, kf.header())
	if err != nil || len(kek) != kekSize {
		return nil, ErrWrongPassphrase
	}
	return kek, nil
}

// sealKeyFile seals kek under passphrase with a fresh salt and nonce and
// returns the file's bytes.
func sealKeyFile(kek, keyID, passphrase []byte, p KDFParams) ([]byte, error) {
	kf := &keyFile{keyID: keyID, params: p, salt: make([]byte, saltSize), nonce: make([]byte, gcmNonceSize)}
	rand.Read(kf.salt)
	rand.Read(kf.nonce)
	aead, err := kf.sealingAEAD(passphrase)
	if err != nil {
		return nil, err
	}
	kf.sealed = aead.Seal(nil, kf.nonce, kek, kf.header())
	data := kf.marshal()
	// Cheap self-check of the encoding before anything reaches the disk.
	if back, err := parseKeyFile(data); err != nil || !bytes.Equal(back.header(), kf.header()) {
		panic("keyring: key file does not parse back")
	}
	return data, nil
}

// appendLenPrefixed appends u32(len(s)) || s.
func appendLenPrefixed[S string | []byte](b []byte, s S) []byte {
	if uint64(len(s)) > 0xFFFFFFFF {
		panic("keyring: field longer than 4 GiB")
	}
	b = binary.BigEndian.AppendUint32(b, uint32(len(s)))
	return append(b, s...)
}
