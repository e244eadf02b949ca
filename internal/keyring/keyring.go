package keyring

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"errors"
	"fmt"
	"log/slog"
	"sync"

	"github.com/ehrvault/ehrvault/internal/store"
)

// Purposes of derived keys; see Keyring.Derived. Each names one use, and a
// key is never used for two.
const (
	PurposeIndex        = "index"         // blind-index tokens (HMAC)
	PurposeCursor       = "cursor"        // MACs of paging cursors
	PurposeAuditSigning = "audit-signing" // seed of the audit checkpoint signing key
	PurposeToken        = "token"         // keyed hashes of bearer tokens
)

// dataKeyADPrefix starts the associated data of a wrapped data key, which
// ends with the owner's name, so a wrapped key moved to another owner's row
// does not unwrap.
const dataKeyADPrefix = "ehrvault data key v1\x00"

func dataKeyAD(owner string) []byte { return []byte(dataKeyADPrefix + owner) }

// committer is the ability of a write transaction that KeyFor looks for:
// store.Tx has it.
type committer interface {
	AfterCommit(f func())
}

var _ committer = store.Tx(nil)

// Keyring hands out data keys and derived keys. It finds an owner's data key
// in its cache or in a store.KeyStore, creates it if there is none, and
// keeps the most recently used ones unwrapped. It is safe for concurrent
// use.
type Keyring struct {
	p     Provider
	cache *keyCache
	// derived is behind a pointer so that printing a Keyring with fmt shows
	// an address, never key bytes.
	derived *derivedKeys
}

type derivedKeys struct {
	mu   sync.Mutex
	keys map[string][]byte // purpose → key
}

var (
	_ slog.LogValuer = (*Keyring)(nil)
	_ fmt.Formatter  = Keyring{}
)

// New returns a Keyring over p that keeps up to cacheSize data keys
// unwrapped (at least 1); each costs about 2 KiB. A Keyring serves one
// store: its cache knows keys by the store's ids.
func New(p Provider, cacheSize int) *Keyring {
	return &Keyring{p: p, cache: newKeyCache(cacheSize), derived: &derivedKeys{keys: make(map[string][]byte)}}
}

// KeyFor returns the data key of owner ("Patient/<row id>" or "store"),
// creating and storing it if owner has none. It reads and writes through
// ks.
//
// If ks is a write transaction (it has AfterCommit, as store.Tx does), a
// key found or created through it enters the shared cache only once the
// transaction commits: a rolled-back transaction must not leave behind a
// cached key that the database never stored, or data sealed with it later
// would not open after a restart. The key is returned for use inside the
// transaction either way.
//
// If another writer stores owner's key first (PutWrappedKey says
// store.ErrExists), KeyFor reads and returns that one.
func (r *Keyring) KeyFor(ctx context.Context, ks store.KeyStore, owner string) (*DataKey, error) {
	if owner == "" {
		return nil, errors.New("keyring: data key for an empty owner")
	}
	if k := r.cache.byOwnerKey(owner); k != nil {
		return k, nil
	}
	id, wrapped, err := ks.WrappedKey(ctx, owner)
	switch {
	case err == nil:
		k, err := r.unwrap(ctx, id, owner, wrapped)
		if err != nil {
			return nil, err
		}
		r.remember(ks, k)
		return k, nil
	case !errors.Is(err, store.ErrNotFound):
		return nil, fmt.Errorf("keyring: read data key: %w", err)
	}

	k, err := r.create(ctx, ks, owner)
	if err != nil {
		return nil, err
	}
	r.remember(ks, k)
	return k, nil
}

// create generates, wraps and stores a new data key for owner. If owner got
// one meanwhile, it returns that one.
func (r *Keyring) create(ctx context.Context, ks store.KeyStore, owner string) (*DataKey, error) {
	raw := make([]byte, dataKeySize)
	rand.Read(raw)
	defer clear(raw)
	ad := dataKeyAD(owner)
	wrapped, err := r.p.Wrap(ctx, raw, ad)
	if err != nil {
		return nil, fmt.Errorf("keyring: wrap new data key: %w", err)
	}
	// Unwrap before storing: data sealed under a key whose stored form does
	// not unwrap would be lost. Cheap locally; one more round trip for a KMS,
	// once per owner.
	back, err := r.p.Unwrap(ctx, wrapped, ad)
	if err != nil {
		return nil, fmt.Errorf("keyring: check new data key: %w", err)
	}
	same := subtle.ConstantTimeCompare(back, raw) == 1
	clear(back)
	if !same {
		return nil, errors.New("keyring: check new data key: provider unwrapped another key")
	}

	id, err := ks.PutWrappedKey(ctx, owner, wrapped)
	if errors.Is(err, store.ErrExists) {
		// Somebody else stored owner's key first: use theirs.
		id, wrapped, err := ks.WrappedKey(ctx, owner)
		if err != nil {
			return nil, fmt.Errorf("keyring: read data key after a concurrent create: %w", err)
		}
		return r.unwrap(ctx, id, owner, wrapped)
	}
	if err != nil {
		return nil, fmt.Errorf("keyring: store new data key: %w", err)
	}
	return newDataKey(id, owner, raw)
}

// KeyByID returns the data key with id, for opening what it sealed: from the
// cache, else read through ks and unwrapped. The key is unwrapped with the
// owner its row names bound as associated data, so a wrapped key copied
// into another owner's row fails with ErrUnwrap. An unknown id is
// store.ErrNotFound. As with KeyFor, a key read through a write
// transaction is cached only after it commits.
func (r *Keyring) KeyByID(ctx context.Context, ks store.KeyStore, id int64) (*DataKey, error) {
	if k := r.cache.byIDKey(id); k != nil {
		return k, nil
	}
	owner, wrapped, err := ks.WrappedKeyByID(ctx, id)
	if err != nil {
		return nil, fmt.Errorf("keyring: read data key %d: %w", id, err)
	}
	k, err := r.unwrap(ctx, id, owner, wrapped)
	if err != nil {
		return nil, err
	}
	r.remember(ks, k)
	return k, nil
}

// unwrap unwraps the stored key id of owner.
func (r *Keyring) unwrap(ctx context.Context, id int64, owner string, wrapped []byte) (*DataKey, error) {
	raw, err := r.p.Unwrap(ctx, wrapped, dataKeyAD(owner))
	if err != nil {
		return nil, fmt.Errorf("keyring: data key %d: %w", id, err)
	}
	if len(raw) != dataKeySize {
		clear(raw)
		return nil, fmt.Errorf("keyring: data key %d: %w", id, ErrUnwrap)
	}
	return newDataKey(id, owner, raw)
}

// remember caches k now, or after commit if ks is a write transaction.
func (r *Keyring) remember(ks store.KeyStore, k *DataKey) {
	if tx, ok := ks.(committer); ok {
		tx.AfterCommit(func() { r.cache.add(k) })
		return
	}
	r.cache.add(k)
}

// Derived returns the 32-byte key derived from the KEK for purpose (one of
// the Purpose constants), asking the provider once and caching the result.
// The caller gets its own copy.
func (r *Keyring) Derived(ctx context.Context, purpose string) ([]byte, error) {
	d := r.derived
	d.mu.Lock()
	defer d.mu.Unlock()
	k, ok := d.keys[purpose]
	if !ok {
		var err error
		k, err = r.p.Derive(ctx, purpose)
		if err != nil {
			return nil, err
		}
		if len(k) != 32 {
			clear(k)
			return nil, fmt.Errorf("keyring: derive %q: provider returned %d bytes, want 32", purpose, len(k))
		}
		d.keys[purpose] = k
	}
	return append([]byte(nil), k...), nil
}

// Close drops the cached data keys and zeroes the cached derived keys. It
// does not close the provider, which the caller opened.
func (r *Keyring) Close() {
	r.cache.clear()
	d := r.derived
	d.mu.Lock()
	defer d.mu.Unlock()
	for p, k := range d.keys {
		clear(k)
		delete(d.keys, p)
	}
}

// Format prints what LogValue does and never a key, whatever the verb; see
// DataKey.Format.
func (r Keyring) Format(f fmt.State, verb rune) {
	fmt.Fprintf(f, "keyring.Keyring{provider: %q, cache_size: %d}", r.p.Describe(), r.cache.max)
}

// LogValue implements slog.LogValuer: the provider and the cache's fill,
// never a key.
func (r *Keyring) LogValue() slog.Value {
	return slog.GroupValue(
		slog.String("provider", r.p.Describe()),
		slog.Int("cached_keys", r.cache.len()),
		slog.Int("cache_size", r.cache.max),
	)
}
