package keyring

import (
	"bytes"
	"context"
	"sync"
	"sync/atomic"

	"github.com/ehrvault/ehrvault/internal/store"
)

// memKeyStore is an in-memory store.KeyStore with the behaviour the SQLite
// backend promises: one key per owner, ids assigned by the store,
// ErrNotFound and ErrExists. Hooks and counters let tests steer and observe
// it.
type memKeyStore struct {
	mu      sync.Mutex
	rows    map[int64]memRow
	byOwner map[string]int64
	nextID  int64

	// afterWrappedKey, if set, runs at the end of every WrappedKey, after
	// the lookup and before the answer is returned.
	afterWrappedKey func(owner string)
	// failGet and failPut, if set, are returned by every read and by every
	// PutWrappedKey, as a broken database would.
	failGet, failPut error

	gets, getsByID, puts, exists atomic.Int64
}

type memRow struct {
	owner   string
	wrapped []byte
}

func newMemKeyStore() *memKeyStore {
	return &memKeyStore{rows: map[int64]memRow{}, byOwner: map[string]int64{}}
}

var _ store.KeyStore = (*memKeyStore)(nil)

func (m *memKeyStore) WrappedKey(ctx context.Context, owner string) (int64, []byte, error) {
	m.gets.Add(1)
	if m.failGet != nil {
		return 0, nil, m.failGet
	}
	m.mu.Lock()
	id, ok := m.byOwner[owner]
	wrapped := bytes.Clone(m.rows[id].wrapped)
	m.mu.Unlock()
	if m.afterWrappedKey != nil {
		m.afterWrappedKey(owner)
	}
	if !ok {
		return 0, nil, store.ErrNotFound
	}
	return id, wrapped, nil
}

func (m *memKeyStore) WrappedKeyByID(ctx context.Context, id int64) (string, []byte, error) {
	m.getsByID.Add(1)
	if m.failGet != nil {
		return "", nil, m.failGet
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	r, ok := m.rows[id]
	if !ok {
		return "", nil, store.ErrNotFound
	}
	return r.owner, bytes.Clone(r.wrapped), nil
}

func (m *memKeyStore) PutWrappedKey(ctx context.Context, owner string, wrapped []byte) (int64, error) {
	m.puts.Add(1)
	if m.failPut != nil {
		return 0, m.failPut
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, ok := m.byOwner[owner]; ok {
		m.exists.Add(1)
		return 0, store.ErrExists
	}
	m.nextID++
	m.rows[m.nextID] = memRow{owner, bytes.Clone(wrapped)}
	m.byOwner[owner] = m.nextID
	return m.nextID, nil
}

// len returns how many keys are stored.
func (m *memKeyStore) len() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.rows)
}

// setRow overwrites row id as an attacker with write access to the
// database could.
func (m *memKeyStore) setRow(id int64, owner string, wrapped []byte) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if old, ok := m.rows[id]; ok {
		delete(m.byOwner, old.owner)
	}
	m.rows[id] = memRow{owner, bytes.Clone(wrapped)}
	m.byOwner[owner] = id
}

func (m *memKeyStore) row(id int64) memRow {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.rows[id]
}

// begin starts a fake write transaction: its reads see its own writes, its
// writes reach the store on commit and vanish on rollback, and AfterCommit
// functions run after commit only.
func (m *memKeyStore) begin() *memTx {
	return &memTx{m: m, staged: map[string]memRow{}, stagedIDs: map[int64]string{}}
}

type memTx struct {
	m           *memKeyStore
	staged      map[string]memRow // owner → row written in this tx
	stagedIDs   map[int64]string
	afterCommit []func()
	done        bool
}

var (
	_ store.KeyStore = (*memTx)(nil)
	_ committer      = (*memTx)(nil)
)

func (tx *memTx) WrappedKey(ctx context.Context, owner string) (int64, []byte, error) {
	for id, o := range tx.stagedIDs {
		if o == owner {
			return id, bytes.Clone(tx.staged[owner].wrapped), nil
		}
	}
	return tx.m.WrappedKey(ctx, owner)
}

func (tx *memTx) WrappedKeyByID(ctx context.Context, id int64) (string, []byte, error) {
	if owner, ok := tx.stagedIDs[id]; ok {
		return owner, bytes.Clone(tx.staged[owner].wrapped), nil
	}
	return tx.m.WrappedKeyByID(ctx, id)
}

func (tx *memTx) PutWrappedKey(ctx context.Context, owner string, wrapped []byte) (int64, error) {
	if _, ok := tx.staged[owner]; ok {
		return 0, store.ErrExists
	}
	tx.m.mu.Lock()
	defer tx.m.mu.Unlock()
	if _, ok := tx.m.byOwner[owner]; ok {
		return 0, store.ErrExists
	}
	tx.m.nextID++ // like an autoincrement: a rolled-back id is not reused
	tx.staged[owner] = memRow{owner, bytes.Clone(wrapped)}
	tx.stagedIDs[tx.m.nextID] = owner
	return tx.m.nextID, nil
}

func (tx *memTx) AfterCommit(f func()) { tx.afterCommit = append(tx.afterCommit, f) }

func (tx *memTx) commit() {
	if tx.done {
		panic("memTx: commit after end")
	}
	tx.done = true
	tx.m.mu.Lock()
	for id, owner := range tx.stagedIDs {
		tx.m.rows[id] = tx.staged[owner]
		tx.m.byOwner[owner] = id
	}
	tx.m.mu.Unlock()
	for _, f := range tx.afterCommit {
		f()
	}
}

func (tx *memTx) rollback() {
	if tx.done {
		panic("memTx: rollback after end")
	}
	tx.done = true
}

// funcProvider is a Provider whose methods a test can replace; the ones it
// leaves nil go to Provider.
type funcProvider struct {
	Provider
	wrap, unwrap func(ctx context.Context, b, ad []byte) ([]byte, error)
	derive       func(ctx context.Context, purpose string) ([]byte, error)
}

func (p *funcProvider) Wrap(ctx context.Context, pt, ad []byte) ([]byte, error) {
	if p.wrap != nil {
		return p.wrap(ctx, pt, ad)
	}
	return p.Provider.Wrap(ctx, pt, ad)
}

func (p *funcProvider) Unwrap(ctx context.Context, w, ad []byte) ([]byte, error) {
	if p.unwrap != nil {
		return p.unwrap(ctx, w, ad)
	}
	return p.Provider.Unwrap(ctx, w, ad)
}

func (p *funcProvider) Derive(ctx context.Context, purpose string) ([]byte, error) {
	if p.derive != nil {
		return p.derive(ctx, purpose)
	}
	return p.Provider.Derive(ctx, purpose)
}

// countingProvider counts calls to a Provider.
type countingProvider struct {
	Provider
	wraps, unwraps, derives atomic.Int64
}

func (p *countingProvider) Wrap(ctx context.Context, pt, ad []byte) ([]byte, error) {
	p.wraps.Add(1)
	return p.Provider.Wrap(ctx, pt, ad)
}

func (p *countingProvider) Unwrap(ctx context.Context, w, ad []byte) ([]byte, error) {
	p.unwraps.Add(1)
	return p.Provider.Unwrap(ctx, w, ad)
}

func (p *countingProvider) Derive(ctx context.Context, purpose string) ([]byte, error) {
	p.derives.Add(1)
	return p.Provider.Derive(ctx, purpose)
}
