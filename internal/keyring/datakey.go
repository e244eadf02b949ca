package keyring

import (
	"crypto/cipher"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
)

// dataKeySize is the size of a data key: AES-256.
const dataKeySize = 32

// sealVersion is the first byte of everything DataKey.Seal returns.
const sealVersion = 0x01

// SealOverhead is how many bytes DataKey.Seal adds to a plaintext: the
// version byte, the 12-byte nonce and the 16-byte tag.
const SealOverhead = 1 + 12 + 16

// DataKey is an unwrapped data key: the key of one owner ("Patient/…" or
// "store") that seals that owner's resource versions. It is safe for
// concurrent use and stays usable after the Keyring's cache evicts it.
type DataKey struct {
	id    int64
	owner string
	// aead is AES-256-GCM with random nonces. The DataKey keeps no raw key
	// bytes: they are zeroed as soon as aead is built. The expanded AES key
	// inside aead cannot be zeroed from Go; it lives until the garbage
	// collector reclaims it.
	aead cipher.AEAD
}

var (
	_ slog.LogValuer = (*DataKey)(nil)
	_ fmt.Formatter  = DataKey{}
)

// newDataKey builds a DataKey from raw key bytes, which it zeroes.
func newDataKey(id int64, owner string, raw []byte) (*DataKey, error) {
	defer clear(raw)
	if len(raw) != dataKeySize {
		return nil, errors.New("keyring: data key has the wrong size")
	}
	aead, err := newRandomNonceGCM(raw)
	if err != nil {
		return nil, err
	}
	return &DataKey{id: id, owner: owner, aead: aead}, nil
}

// ID returns the store's id of the key, which a sealed row records.
func (k *DataKey) ID() int64 { return k.id }

// Owner returns the owner the key belongs to.
func (k *DataKey) Owner() string { return k.owner }

// Seal encrypts and authenticates plaintext, binding ad (use ResourceAD for
// resource versions), and returns
//
//	0x01 || nonce (12 bytes) || ciphertext || tag (16 bytes)
//
// The nonce is 96 random bits from crypto/rand, fresh for every call
// (cipher.NewGCMWithRandomNonce). Random nonces repeat by the birthday
// bound: after q messages under one key the chance of any repeat is about
// q²/2⁹⁷, and NIST SP 800-38D §8.3 allows at most 2³² messages per key
// (a chance near 2⁻³³). A repeat would be serious (it reveals the XOR of two
// plaintexts and lets the GCM authentication key be recovered), so the
// bound matters, but here it is far away: every patient has a key of their
// own and writes thousands of versions in a lifetime, not billions; the
// store key, shared by resources outside every patient compartment, is the
// busiest and would need four billion versions. A counter nonce would need
// per-key state that survives crashes and restores from backup, which is
// the usual way counters repeat; random nonces need none.
func (k *DataKey) Seal(plaintext, ad []byte) []byte {
	out := make([]byte, 1, SealOverhead+len(plaintext))
	out[0] = sealVersion
	return k.aead.Seal(out, nil, plaintext, ad)
}

// Open decrypts what Seal returned with the same ad. Any failure (damage,
// wrong ad, wrong key, unknown version) is ErrDecrypt and nothing more.
func (k *DataKey) Open(sealed, ad []byte) ([]byte, error) {
	if len(sealed) < SealOverhead || sealed[0] != sealVersion {
		return nil, ErrDecrypt
	}
	pt, err := k.aead.Open(nil, nil, sealed[1:], ad)
	if err != nil {
		return nil, ErrDecrypt
	}
	return pt, nil
}

// LogValue implements slog.LogValuer: the key's id, never the key (nor the
// owner, whose name a caller may not want logged).
func (k *DataKey) LogValue() slog.Value {
	return slog.GroupValue(slog.Int64("id", k.id), slog.String("key", "REDACTED"))
}

// Format prints the key's id and never the key, whatever the verb. Without
// it fmt reaches the expanded AES key inside aead: a verb that does not suit
// a pointer field (%s, %x, %d) makes fmt print what the pointer points to.
// (A value receiver, so that a copied DataKey is covered too.)
func (k DataKey) Format(f fmt.State, verb rune) {
	fmt.Fprintf(f, "keyring.DataKey{id: %d, key: REDACTED}", k.id)
}

// resourceADPrefix starts every ResourceAD, so that it can never equal
// associated data built for another purpose.
const resourceADPrefix = "ehrvault resource v1\x00"

// ResourceAD returns the associated data that binds a sealed resource
// version to its name, so that a row moved to another type, id or version
// does not open:
//
//	"ehrvault resource v1\x00" || u32(len(typ)) || typ || u32(len(id)) || id || u64(version)
//
// with integers big-endian. Each string is length-prefixed, so no two
// different triples give the same bytes (("a","bc",1) and ("ab","c",1)
// differ), whatever bytes the strings hold.
func ResourceAD(typ, id string, version int64) []byte {
	b := make([]byte, 0, len(resourceADPrefix)+4+len(typ)+4+len(id)+8)
	b = append(b, resourceADPrefix...)
	b = appendLenPrefixed(b, typ)
	b = appendLenPrefixed(b, id)
	return binary.BigEndian.AppendUint64(b, uint64(version))
}
