package keyring

import (
	"context"
	"crypto/cipher"
	"crypto/ed25519"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"
	"hash"
	"log/slog"
	"sync"

	"golang.org/x/crypto/chacha20poly1305"
	"golang.org/x/mod/sumdb/note"
)

// Purposes of the keys behind Sealer, MAC and NoteSigner.
const (
	PurposeAuditSeal  = "audit-seal"  // XChaCha20-Poly1305 key of audit entries
	PurposeAuditIndex = "audit-index" // keyed hashes in and over audit entries
	PurposeSearchPage = "search-page" // XChaCha20-Poly1305 key of search page cursors
	PurposeAuthSeal   = "auth-seal"   // XChaCha20-Poly1305 key of the identity layer's records (store.AuthObjects)
	PurposeAuthLookup = "auth-lookup" // keyed hashes by which identity records are found (user names, tokens)
)

// Sealer seals small records under a key derived from the KEK for one
// purpose. It uses XChaCha20-Poly1305, whose 192-bit random nonces have no
// practical bound on how many records one key seals (unlike AES-GCM's 96
// bits: an audit log seals one record per request, forever).
type Sealer struct {
	aead cipher.AEAD
}

var (
	_ slog.LogValuer = (*Sealer)(nil)
	_ fmt.Formatter  = Sealer{}
	_ slog.LogValuer = (*MAC)(nil)
	_ fmt.Formatter  = MAC{}
)

// sealerVersion starts every Sealer output, for a future change of AEAD.
const sealerVersion = 0x01

// SealerOverhead is how much longer Seal's output is than its input.
const SealerOverhead = 1 + chacha20poly1305.NonceSizeX + chacha20poly1305.Overhead

// Sealer returns the Sealer of purpose (PurposeAuditSeal).
func (r *Keyring) Sealer(ctx context.Context, purpose string) (*Sealer, error) {
	k, err := r.Derived(ctx, purpose)
	if err != nil {
		return nil, err
	}
	defer clear(k)
	aead, err := chacha20poly1305.NewX(k)
	if err != nil {
		return nil, err
	}
	return &Sealer{aead: aead}, nil
}

// Seal encrypts and authenticates plaintext, binding ad:
//
//	0x01 || nonce (24 random bytes) || ciphertext || tag (16 bytes)
func (s *Sealer) Seal(plaintext, ad []byte) []byte {
	var nonce [chacha20poly1305.NonceSizeX]byte
	rand.Read(nonce[:]) // never fails (crypto/rand)
	out := make([]byte, 0, SealerOverhead+len(plaintext))
	out = append(out, sealerVersion)
	out = append(out, nonce[:]...)
	return s.aead.Seal(out, nonce[:], plaintext, ad)
}

// Open decrypts what Seal returned with the same ad. Every failure is
// ErrDecrypt.
func (s *Sealer) Open(sealed, ad []byte) ([]byte, error) {
	if len(sealed) < SealerOverhead || sealed[0] != sealerVersion {
		return nil, ErrDecrypt
	}
	nonce := sealed[1 : 1+chacha20poly1305.NonceSizeX]
	pt, err := s.aead.Open(nil, nonce, sealed[1+chacha20poly1305.NonceSizeX:], ad)
	if err != nil {
		return nil, ErrDecrypt
	}
	return pt, nil
}

// LogValue implements slog.LogValuer: never the key.
func (s *Sealer) LogValue() slog.Value { return slog.StringValue("keyring.Sealer(redacted)") }

// Format implements fmt.Formatter: never the key.
func (s Sealer) Format(f fmt.State, verb rune) { fmt.Fprint(f, "keyring.Sealer(redacted)") }

// MAC computes HMAC-SHA256 under a key derived from the KEK for one
// purpose. It is safe for concurrent use.
type MAC struct {
	pool *sync.Pool
}

// MAC returns the MAC of purpose (PurposeAuditIndex).
func (r *Keyring) MAC(ctx context.Context, purpose string) (*MAC, error) {
	k, err := r.Derived(ctx, purpose)
	if err != nil {
		return nil, err
	}
	return &MAC{pool: &sync.Pool{New: func() any { return hmac.New(sha256.New, k) }}}, nil
}

// Sum returns HMAC-SHA256(key, msg).
func (m *MAC) Sum(msg []byte) [sha256.Size]byte {
	h := m.pool.Get().(hash.Hash)
	h.Reset()
	h.Write(msg)
	var out [sha256.Size]byte
	h.Sum(out[:0])
	m.pool.Put(h)
	return out
}

// LogValue implements slog.LogValuer: never the key.
func (m *MAC) LogValue() slog.Value { return slog.StringValue("keyring.MAC(redacted)") }

// Format implements fmt.Formatter: never the key.
func (m MAC) Format(f fmt.State, verb rune) { fmt.Fprint(f, "keyring.MAC(redacted)") }

// NoteSigner returns the Ed25519 key that signs audit checkpoints, derived
// from the KEK (PurposeAuditSigning), as a signer of signed notes
// (golang.org/x/mod/sumdb/note) named name, and its verifier key in the
// note format ("name+hash+key"), which may be published. The same KEK and
// name always give the same key.
func (r *Keyring) NoteSigner(ctx context.Context, name string) (note.Signer, string, error) {
	seed, err := r.Derived(ctx, PurposeAuditSigning)
	if err != nil {
		return nil, "", err
	}
	defer clear(seed)
	priv := ed25519.NewKeyFromSeed(seed)
	vkey, err := note.NewEd25519VerifierKey(name, priv.Public().(ed25519.PublicKey))
	if err != nil {
		return nil, "", fmt.Errorf("keyring: audit signer: %w", err)
	}
	v, err := note.NewVerifier(vkey)
	if err != nil {
		return nil, "", fmt.Errorf("keyring: audit signer: %w", err)
	}
	return &noteSigner{name: name, hash: v.KeyHash(), priv: priv}, vkey, nil
}

// noteSigner signs notes with an Ed25519 key; note.NewSigner would need
// the private key as text, which we never make.
type noteSigner struct {
	name string
	hash uint32
	priv ed25519.PrivateKey
}

func (s *noteSigner) Name() string    { return s.name }
func (s *noteSigner) KeyHash() uint32 { return s.hash }
func (s *noteSigner) Sign(msg []byte) ([]byte, error) {
	if len(s.priv) != ed25519.PrivateKeySize {
		return nil, errors.New("keyring: closed signer")
	}
	return ed25519.Sign(s.priv, msg), nil
}

// LogValue implements slog.LogValuer: the name, never the key.
func (s *noteSigner) LogValue() slog.Value { return slog.StringValue("note signer " + s.name) }
