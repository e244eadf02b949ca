package keyring

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/ehrvault/ehrvault/internal/store"
	"golang.org/x/mod/sumdb/note"
)

func TestKeyForCreatesOnce(t *testing.T) {
	ctx := context.Background()
	path := newKeyFile(t)
	ks := newMemKeyStore()
	r := New(openKeyFile(t, path), 16)

	k1, err := r.KeyFor(ctx, ks, "Patient/1")
	if err != nil {
		t.Fatalf("KeyFor: %v", err)
	}
	if k1.Owner() != "Patient/1" {
		t.Errorf("Owner() = %q, want Patient/1", k1.Owner())
	}
	gets := ks.gets.Load()
	k2, err := r.KeyFor(ctx, ks, "Patient/1")
	if err != nil {
		t.Fatalf("KeyFor again: %v", err)
	}
	if k2 != k1 {
		t.Errorf("KeyFor twice gave two keys (ids %d, %d)", k1.ID(), k2.ID())
	}
	if ks.gets.Load() != gets {
		t.Errorf("second KeyFor read the store; want a cache hit")
	}
	if n := ks.len(); n != 1 || ks.puts.Load() != 1 {
		t.Errorf("store holds %d keys after %d puts, want 1 and 1", n, ks.puts.Load())
	}
	if k3, _ := r.KeyFor(ctx, ks, "store"); k3.ID() == k1.ID() {
		t.Errorf("two owners share key %d", k1.ID())
	}

	// After a restart (new Keyring, new provider over the same key file) the
	// owner's key is read, not created, and opens what the old one sealed.
	ad := ResourceAD("Patient", "p1", 1)
	sealed := k1.Seal([]byte("resource"), ad)
	r2 := New(openKeyFile(t, path), 16)
	k4, err := r2.KeyFor(ctx, ks, "Patient/1")
	if err != nil {
		t.Fatalf("KeyFor after restart: %v", err)
	}
	if k4.ID() != k1.ID() {
		t.Errorf("KeyFor after restart: id %d, want %d", k4.ID(), k1.ID())
	}
	if got, err := k4.Open(sealed, ad); err != nil || string(got) != "resource" {
		t.Errorf("Open after restart = %q, %v", got, err)
	}
	k5, err := r2.KeyByID(ctx, ks, k1.ID())
	if err != nil || k5 != k4 {
		t.Errorf("KeyByID(%d) = %v, %v; want the cached key", k1.ID(), k5, err)
	}
	if ks.len() != 2 {
		t.Errorf("store holds %d keys, want 2", ks.len())
	}
}

func TestKeyForEmptyOwner(t *testing.T) {
	r := New(newTestProvider(t), 4)
	if _, err := r.KeyFor(context.Background(), newMemKeyStore(), ""); err == nil {
		t.Errorf("KeyFor(\"\") succeeded")
	}
}

// TestKeyForConcurrent: goroutines that all miss the cache and the store
// for the same owner create one key between them: the losers of the race to
// PutWrappedKey get ErrExists and read the winner's key.
func TestKeyForConcurrent(t *testing.T) {
	const n = 8
	ctx := context.Background()
	ks := newMemKeyStore()
	// Hold the first n WrappedKey answers until all n lookups are done, so
	// that every goroutine sees "not found" before any stores a key.
	var arrived sync.WaitGroup
	arrived.Add(n)
	var calls atomic.Int64
	ks.afterWrappedKey = func(string) {
		if calls.Add(1) <= n {
			arrived.Done()
			arrived.Wait()
		}
	}
	r := New(newTestProvider(t), 16)
	keys := make([]*DataKey, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() { keys[i], errs[i] = r.KeyFor(ctx, ks, "Patient/1") })
	}
	wg.Wait()
	for i := range n {
		if errs[i] != nil {
			t.Fatalf("KeyFor #%d: %v", i, errs[i])
		}
	}
	if ks.len() != 1 {
		t.Errorf("store holds %d keys, want 1", ks.len())
	}
	if got := ks.exists.Load(); got != n-1 {
		t.Errorf("PutWrappedKey answered ErrExists %d times of %d, want %d (the race did not happen)", got, ks.puts.Load(), n-1)
	}
	ad := ResourceAD("Patient", "p1", 1)
	sealed := keys[0].Seal([]byte("resource"), ad)
	for i, k := range keys {
		if k.ID() != keys[0].ID() {
			t.Errorf("KeyFor #%d: id %d, want %d", i, k.ID(), keys[0].ID())
		}
		if _, err := k.Open(sealed, ad); err != nil {
			t.Errorf("KeyFor #%d: cannot open what #0 sealed: %v", i, err)
		}
	}
}

// TestKeyForConcurrentReaders runs many readers and writers over a small
// cache, for the race detector.
func TestKeyForConcurrentReaders(t *testing.T) {
	ctx := context.Background()
	ks := newMemKeyStore()
	r := New(newTestProvider(t), 4)
	const owners = 16
	ids := make([]int64, owners)
	for i := range owners {
		k, err := r.KeyFor(ctx, ks, fmt.Sprintf("Patient/%d", i))
		if err != nil {
			t.Fatal(err)
		}
		ids[i] = k.ID()
	}
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := range 500 {
				o := (g + i) % owners
				var k *DataKey
				var err error
				if i%2 == 0 {
					k, err = r.KeyByID(ctx, ks, ids[o])
				} else {
					k, err = r.KeyFor(ctx, ks, fmt.Sprintf("Patient/%d", o))
				}
				if err != nil {
					t.Error(err)
					return
				}
				if k.ID() != ids[o] {
					t.Errorf("key for owner %d has id %d, want %d", o, k.ID(), ids[o])
					return
				}
			}
		})
	}
	wg.Wait()
	if n := r.cache.len(); n > 4 {
		t.Errorf("cache holds %d keys, bound 4", n)
	}
}

// TestKeyInTransaction: a key found or created through a write transaction
// enters the cache only when the transaction commits.
func TestKeyInTransaction(t *testing.T) {
	ctx := context.Background()
	tests := []struct {
		name   string
		exists bool // the owner's key is in the store before the tx
		byID   bool // the tx asks KeyByID instead of KeyFor
		commit bool
	}{
		{name: "create, commit", commit: true},
		{name: "create, rollback"},
		{name: "read, commit", exists: true, commit: true},
		{name: "read, rollback", exists: true},
		{name: "by id, commit", exists: true, byID: true, commit: true},
		{name: "by id, rollback", exists: true, byID: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			const owner = "Patient/1"
			ks := newMemKeyStore()
			p := newTestProvider(t)
			var stored *DataKey
			if tt.exists {
				var err error
				if stored, err = New(p, 4).KeyFor(ctx, ks, owner); err != nil {
					t.Fatal(err)
				}
			}
			r := New(p, 4)
			tx := ks.begin()
			var k *DataKey
			var err error
			if tt.byID {
				k, err = r.KeyByID(ctx, tx, stored.ID())
			} else {
				k, err = r.KeyFor(ctx, tx, owner)
			}
			if err != nil {
				t.Fatalf("in tx: %v", err)
			}
			if tt.exists && k.ID() != stored.ID() {
				t.Errorf("in tx: key %d, want the stored %d", k.ID(), stored.ID())
			}
			if r.cache.byOwnerKey(owner) != nil || r.cache.byIDKey(k.ID()) != nil {
				t.Fatalf("key cached before the transaction ended")
			}
			// Within the transaction the same key comes back.
			if again, err := r.KeyFor(ctx, tx, owner); err != nil || again.ID() != k.ID() {
				t.Errorf("second KeyFor in tx = %v, %v; want key %d", again, err, k.ID())
			}
			ad := ResourceAD("Patient", "p1", 1)
			sealed := k.Seal([]byte("resource"), ad)

			if tt.commit {
				tx.commit()
				if r.cache.byOwnerKey(owner) != k || r.cache.byIDKey(k.ID()) != k {
					t.Errorf("key not cached after commit")
				}
				gets, getsByID := ks.gets.Load(), ks.getsByID.Load()
				if k2, err := r.KeyFor(ctx, ks, owner); err != nil || k2 != k {
					t.Errorf("KeyFor after commit = %v, %v; want the cached key", k2, err)
				}
				if ks.gets.Load() != gets || ks.getsByID.Load() != getsByID {
					t.Errorf("KeyFor after commit read the store")
				}
				return
			}

			tx.rollback()
			if r.cache.byOwnerKey(owner) != nil || r.cache.byIDKey(k.ID()) != nil {
				t.Errorf("key cached after rollback")
			}
			k2, err := r.KeyFor(ctx, ks, owner)
			if err != nil {
				t.Fatalf("KeyFor after rollback: %v", err)
			}
			if tt.exists {
				if k2.ID() != stored.ID() {
					t.Errorf("KeyFor after rollback: key %d, want the stored %d", k2.ID(), stored.ID())
				}
				return
			}
			// The rolled-back key is gone for good: the next KeyFor creates
			// another, and only that one is stored.
			if k2.ID() == k.ID() {
				t.Errorf("KeyFor after rollback returned the rolled-back key %d", k.ID())
			}
			if _, err := k2.Open(sealed, ad); !errors.Is(err, ErrDecrypt) {
				t.Errorf("new key opens data sealed with the rolled-back key: %v", err)
			}
			if _, err := r.KeyByID(ctx, ks, k.ID()); !errors.Is(err, store.ErrNotFound) {
				t.Errorf("KeyByID(rolled-back id) = %v, want ErrNotFound", err)
			}
			if ks.len() != 1 {
				t.Errorf("store holds %d keys, want 1", ks.len())
			}
		})
	}
}

func TestCacheBound(t *testing.T) {
	ctx := context.Background()
	for _, size := range []int{-1, 0, 1, 3, 10} {
		t.Run(fmt.Sprint(size), func(t *testing.T) {
			bound := max(size, 1)
			ks := newMemKeyStore()
			r := New(newTestProvider(t), size)
			var ids []int64
			for i := range 25 {
				k, err := r.KeyFor(ctx, ks, fmt.Sprintf("Patient/%d", i))
				if err != nil {
					t.Fatal(err)
				}
				ids = append(ids, k.ID())
				if n := r.cache.len(); n > bound {
					t.Fatalf("after %d keys the cache holds %d, bound %d", i+1, n, bound)
				}
			}
			if n := r.cache.len(); n != bound {
				t.Errorf("cache holds %d keys, want it full at %d", n, bound)
			}
			// Both indexes agree with the ring.
			nID, nOwner := 0, 0
			r.cache.byID.Range(func(any, any) bool { nID++; return true })
			r.cache.byOwner.Range(func(any, any) bool { nOwner++; return true })
			if nID != bound || nOwner != bound {
				t.Errorf("indexes hold %d ids and %d owners, want %d each", nID, nOwner, bound)
			}
			// Evicted keys come back from the store.
			for i, id := range ids {
				k, err := r.KeyByID(ctx, ks, id)
				if err != nil || k.Owner() != fmt.Sprintf("Patient/%d", i) {
					t.Errorf("KeyByID(%d) = %v, %v", id, k, err)
				}
			}
		})
	}
}

// TestCacheRecency: the cache evicts what was used least recently, not what
// came in first.
func TestCacheRecency(t *testing.T) {
	key := func(id int64) *DataKey { return &DataKey{id: id, owner: fmt.Sprint("Patient/", id)} }
	tests := []struct {
		name    string
		max     int
		ops     string // "+3": add key 3; "3": use key 3
		want    []int64
		wantOut []int64
	}{
		{"fifo without use", 3, "+1 +2 +3 +4", []int64{2, 3, 4}, []int64{1}},
		{"used survives", 3, "+1 +2 +3 1 +4", []int64{1, 3, 4}, []int64{2}},
		{"two used survive", 3, "+1 +2 +3 1 2 +4", []int64{1, 2, 4}, []int64{3}},
		{"all used: oldest goes", 3, "+1 +2 +3 1 2 3 +4", []int64{2, 3, 4}, []int64{1}},
		{"newcomer gets a turn", 3, "+1 +2 +3 1 +4 +5", []int64{1, 4, 5}, []int64{2, 3}},
		{"re-add keeps entry", 2, "+1 +1 +2 1 +3", []int64{1, 3}, []int64{2}},
		{"size one", 1, "+1 1 +2", []int64{2}, []int64{1}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := newKeyCache(tt.max)
			keys := map[int64]*DataKey{}
			for _, op := range strings.Fields(tt.ops) {
				var id int64
				if s, ok := strings.CutPrefix(op, "+"); ok {
					fmt.Sscan(s, &id)
					if keys[id] == nil {
						keys[id] = key(id)
					}
					c.add(keys[id])
				} else {
					fmt.Sscan(op, &id)
					if c.byIDKey(id) == nil {
						t.Fatalf("after %q: key %d not cached", tt.ops, id)
					}
				}
			}
			for _, id := range tt.want {
				if c.byIDKey(id) != keys[id] || c.byOwnerKey(keys[id].owner) != keys[id] {
					t.Errorf("after %q: key %d not cached", tt.ops, id)
				}
			}
			for _, id := range tt.wantOut {
				if c.byIDKey(id) != nil || c.byOwnerKey(keys[id].owner) != nil {
					t.Errorf("after %q: key %d still cached", tt.ops, id)
				}
			}
		})
	}
}

// TestCacheOwnerNewKey: when an owner's key is replaced (a new id for the
// same owner), the old one leaves the cache.
func TestCacheOwnerNewKey(t *testing.T) {
	c := newKeyCache(4)
	old := &DataKey{id: 1, owner: "Patient/1"}
	c.add(old)
	c.add(&DataKey{id: 2, owner: "Patient/2"})
	nw := &DataKey{id: 3, owner: "Patient/1"}
	c.add(nw)
	if c.byIDKey(1) != nil {
		t.Errorf("old key of Patient/1 still cached by id")
	}
	if c.byOwnerKey("Patient/1") != nw || c.byIDKey(3) != nw {
		t.Errorf("new key of Patient/1 not cached")
	}
	if c.byIDKey(2) == nil || c.len() != 2 {
		t.Errorf("cache holds %d keys, want 2 (Patient/2 and the new Patient/1)", c.len())
	}
	c.clear()
	if c.len() != 0 || c.byIDKey(2) != nil || c.byOwnerKey("Patient/1") != nil {
		t.Errorf("clear left keys behind")
	}
}

// TestKeyByIDOwnerMismatch: a wrapped key moved to another owner's row
// does not unwrap, because the owner is bound as associated data.
func TestKeyByIDOwnerMismatch(t *testing.T) {
	ctx := context.Background()
	tests := []struct {
		name   string
		tamper func(ks *memKeyStore, id1, id2 int64)
		bad    []int64 // ids whose KeyByID must fail (1 or 2)
		badFor []string
	}{
		{
			name: "wrapped keys swapped",
			tamper: func(ks *memKeyStore, id1, id2 int64) {
				r1, r2 := ks.row(id1), ks.row(id2)
				ks.setRow(id1, r1.owner, r2.wrapped)
				ks.setRow(id2, r2.owner, r1.wrapped)
			},
			bad:    []int64{1, 2},
			badFor: []string{"Patient/1", "Patient/2"},
		},
		{
			name: "row renamed to another owner",
			tamper: func(ks *memKeyStore, id1, id2 int64) {
				ks.setRow(id1, "Patient/3", ks.row(id1).wrapped)
			},
			bad:    []int64{1},
			badFor: []string{"Patient/3"},
		},
		{
			name: "wrapped key copied",
			tamper: func(ks *memKeyStore, id1, id2 int64) {
				ks.setRow(id2, "Patient/2", ks.row(id1).wrapped)
			},
			bad:    []int64{2},
			badFor: []string{"Patient/2"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ks := newMemKeyStore()
			p := newTestProvider(t)
			r := New(p, 8)
			k1, _ := r.KeyFor(ctx, ks, "Patient/1")
			k2, _ := r.KeyFor(ctx, ks, "Patient/2")
			ids := map[int64]int64{1: k1.ID(), 2: k2.ID()}
			tt.tamper(ks, k1.ID(), k2.ID())
			fresh := New(p, 8) // nothing cached
			for _, n := range tt.bad {
				if k, err := fresh.KeyByID(ctx, ks, ids[n]); !errors.Is(err, ErrUnwrap) {
					t.Errorf("KeyByID(key of Patient/%d) = %v, %v; want ErrUnwrap", n, k, err)
				}
			}
			for _, owner := range tt.badFor {
				if k, err := fresh.KeyFor(ctx, ks, owner); !errors.Is(err, ErrUnwrap) {
					t.Errorf("KeyFor(%s) = %v, %v; want ErrUnwrap", owner, k, err)
				}
			}
		})
	}
	// Untampered, both open.
	ks := newMemKeyStore()
	p := newTestProvider(t)
	k1, _ := New(p, 8).KeyFor(ctx, ks, "Patient/1")
	if k, err := New(p, 8).KeyByID(ctx, ks, k1.ID()); err != nil || k.Owner() != "Patient/1" {
		t.Errorf("KeyByID(untampered) = %v, %v", k, err)
	}
}

func TestKeyByIDNotFound(t *testing.T) {
	r := New(newTestProvider(t), 4)
	if _, err := r.KeyByID(context.Background(), newMemKeyStore(), 42); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("KeyByID(unknown) = %v, want store.ErrNotFound", err)
	}
}

// TestKeyOtherKEK: keys wrapped under one KEK do not unwrap under another.
func TestKeyOtherKEK(t *testing.T) {
	ctx := context.Background()
	ks := newMemKeyStore()
	k, err := New(newTestProvider(t), 4).KeyFor(ctx, ks, "store")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := New(newTestProvider(t), 4).KeyByID(ctx, ks, k.ID()); !errors.Is(err, ErrUnwrap) {
		t.Errorf("KeyByID under another KEK = %v, want ErrUnwrap", err)
	}
}

func TestDerived(t *testing.T) {
	ctx := context.Background()
	fp := newTestProvider(t)
	p := &countingProvider{Provider: fp}
	r := New(p, 4)
	purposes := []string{PurposeIndex, PurposeCursor, PurposeAuditSigning, PurposeToken}
	got := map[string][]byte{}
	for _, purpose := range purposes {
		k, err := r.Derived(ctx, purpose)
		if err != nil {
			t.Fatalf("Derived(%q): %v", purpose, err)
		}
		want, _ := fp.Derive(ctx, purpose)
		if !bytes.Equal(k, want) {
			t.Errorf("Derived(%q) differs from the provider's Derive", purpose)
		}
		for other, ok := range got {
			if bytes.Equal(k, ok) {
				t.Errorf("Derived(%q) == Derived(%q)", purpose, other)
			}
		}
		got[purpose] = k
		k[0] ^= 0xff // the caller's copy is its own
		again, _ := r.Derived(ctx, purpose)
		if !bytes.Equal(again, want) {
			t.Errorf("Derived(%q) changed when a caller changed its copy", purpose)
		}
	}
	if n := p.derives.Load(); n != int64(len(purposes)) {
		t.Errorf("provider asked %d times for %d purposes, want once each", n, len(purposes))
	}
	if _, err := r.Derived(ctx, ""); err == nil {
		t.Errorf("Derived(\"\") succeeded")
	}
	kept := r.derived.keys[PurposeIndex]
	r.Close()
	if len(r.derived.keys) != 0 || !bytes.Equal(kept, make([]byte, 32)) {
		t.Errorf("Close left derived keys behind")
	}

	bad := New(&funcProvider{Provider: fp, derive: func(context.Context, string) ([]byte, error) {
		return make([]byte, 16), nil
	}}, 4)
	if k, err := bad.Derived(ctx, PurposeIndex); err == nil {
		t.Errorf("Derived with a provider giving 16 bytes = %x, want an error", k)
	}
}

// TestSecretsRedacted: nothing that prints or logs a secret-bearing value
// shows key bytes in any usual encoding.
func TestSecretsRedacted(t *testing.T) {
	ctx := context.Background()
	ks := newMemKeyStore()
	fp := newTestProvider(t)
	r := New(fp, 4)
	dk, err := r.KeyFor(ctx, ks, "Patient/1")
	if err != nil {
		t.Fatal(err)
	}
	derived, _ := r.Derived(ctx, PurposeIndex)
	// The data key's bytes, recovered the way an attacker with the KEK would.
	_, wrapped, _ := ks.WrappedKey(ctx, "Patient/1")
	raw, err := fp.Unwrap(ctx, wrapped, dataKeyAD("Patient/1"))
	if err != nil {
		t.Fatal(err)
	}
	secrets := map[string][]byte{"KEK": fp.s.kek, "data key": raw, "derived key": derived}

	var buf bytes.Buffer
	log := slog.New(slog.NewJSONHandler(&buf, nil))
	log.Info("keys", "provider", fp, "keyring", r, "data_key", dk)
	slog.New(slog.NewTextHandler(&buf, nil)).Info("keys", "provider", fp, "keyring", r, "data_key", dk)
	// A struct that holds them in unexported fields, as a service would:
	// fmt cannot call their methods there and prints them by reflection.
	holder := struct {
		p  *FileProvider
		r  *Keyring
		k  *DataKey
		pr Provider
	}{fp, r, dk, fp}
	for _, v := range []any{fp, r, *r, dk, *dk, holder, &holder} {
		for _, verb := range []string{"%v", "%+v", "%#v", "%s", "%q", "%x", "%X", "%d", "%o", "%b"} {
			fmt.Fprintf(&buf, verb+"\n", v) // not a constant: vet would refuse the odd verbs
		}
	}
	out := buf.String()
	for name, s := range secrets {
		for i, enc := range []string{
			hex.EncodeToString(s), strings.ToUpper(hex.EncodeToString(s)),
			base64.StdEncoding.EncodeToString(s), base64.RawURLEncoding.EncodeToString(s),
			fmt.Sprint(s), string(s),
			// AES round keys begin with the key as 32-bit words.
			fmt.Sprint(binary.BigEndian.Uint32(s)), fmt.Sprint(binary.LittleEndian.Uint32(s)),
		} {
			if len(enc) >= 8 && strings.Contains(out, enc) { // (shorter could match by chance)
				t.Errorf("%s appears in printed or logged output (encoding #%d: %s)\n%s", name, i, enc, out)
			}
		}
	}
	if !strings.Contains(out, "REDACTED") || !strings.Contains(out, fp.KeyID()) {
		t.Errorf("log output lacks the redaction marker or the key id:\n%s", out)
	}
}

// TestLogValuerNoString: secret-bearing types have no String method, so
// that nothing formats them by accident.
func TestLogValuerNoString(t *testing.T) {
	for _, v := range []any{&FileProvider{}, &DataKey{}, &Keyring{}} {
		if _, ok := v.(fmt.Stringer); ok {
			t.Errorf("%T has a String method", v)
		}
		if _, ok := v.(slog.LogValuer); !ok {
			t.Errorf("%T is not a slog.LogValuer", v)
		}
	}
}

func BenchmarkKeyByIDHit(b *testing.B) {
	ctx := context.Background()
	ks := newMemKeyStore()
	r := New(newTestProvider(b), 1024)
	const owners = 512
	ids := make([]int64, owners)
	for i := range owners {
		k, err := r.KeyFor(ctx, ks, fmt.Sprintf("Patient/%d", i))
		if err != nil {
			b.Fatal(err)
		}
		ids[i] = k.ID()
	}
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		i := 0
		for pb.Next() {
			if _, err := r.KeyByID(ctx, ks, ids[i%owners]); err != nil {
				b.Fatal(err)
			}
			i++
		}
	})
	if ks.getsByID.Load() != 0 {
		b.Fatalf("benchmark missed the cache %d times", ks.getsByID.Load())
	}
}

func BenchmarkKeyByIDMiss(b *testing.B) {
	ctx := context.Background()
	ks := newMemKeyStore()
	p := newTestProvider(b)
	k, err := New(p, 1).KeyFor(ctx, ks, "Patient/1")
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := New(p, 1).KeyByID(ctx, ks, k.ID()); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkKeyForHit(b *testing.B) {
	ctx := context.Background()
	ks := newMemKeyStore()
	r := New(newTestProvider(b), 16)
	if _, err := r.KeyFor(ctx, ks, "Patient/1"); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			r.KeyFor(ctx, ks, "Patient/1")
		}
	})
}

// BenchmarkOpenKeyFile times unsealing with DefaultKDFParams: the start-up
// cost an operator pays, and per guess an attacker pays.
func BenchmarkOpenKeyFile(b *testing.B) {
	path := filepath.Join(b.TempDir(), "ehrvault.key")
	if err := CreateKeyFile(path, testPassphrase, DefaultKDFParams); err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		p, err := OpenKeyFile(path, testPassphrase)
		if err != nil {
			b.Fatal(err)
		}
		p.Close()
	}
}

// TestKeyringFailures: a broken store or a broken provider is an error,
// never a key that was not stored or does not match what was stored, and
// nothing of it is cached.
func TestKeyringFailures(t *testing.T) {
	ctx := context.Background()
	errDisk := errors.New("disk on fire")
	errKMS := errors.New("kms unreachable")
	short := func(context.Context, []byte, []byte) ([]byte, error) { return make([]byte, 16), nil }
	tests := []struct {
		name    string
		setup   func(ks *memKeyStore, p *funcProvider)
		byID    bool  // call KeyByID on a stored key instead of KeyFor on a new owner
		want    error // errors.Is, if set
		wantMsg string
	}{
		{name: "store read fails", setup: func(ks *memKeyStore, p *funcProvider) { ks.failGet = errDisk }, want: errDisk},
		{name: "store read by id fails", byID: true, setup: func(ks *memKeyStore, p *funcProvider) { ks.failGet = errDisk }, want: errDisk},
		{name: "store write fails", setup: func(ks *memKeyStore, p *funcProvider) { ks.failPut = errDisk }, want: errDisk},
		{name: "wrap fails", setup: func(ks *memKeyStore, p *funcProvider) {
			p.wrap = func(context.Context, []byte, []byte) ([]byte, error) { return nil, errKMS }
		}, want: errKMS},
		{name: "unwrap fails", byID: true, setup: func(ks *memKeyStore, p *funcProvider) {
			p.unwrap = func(context.Context, []byte, []byte) ([]byte, error) { return nil, errKMS }
		}, want: errKMS},
		{name: "provider unwraps another key", setup: func(ks *memKeyStore, p *funcProvider) {
			p.unwrap = func(_ context.Context, w, ad []byte) ([]byte, error) {
				k, err := p.Provider.Unwrap(ctx, w, ad)
				if err == nil {
					k[0] ^= 1
				}
				return k, err
			}
		}, wantMsg: "provider unwrapped another key"},
		{name: "provider unwraps a short key", byID: true, setup: func(ks *memKeyStore, p *funcProvider) { p.unwrap = short }, want: ErrUnwrap},
		{name: "provider closed", setup: func(ks *memKeyStore, p *funcProvider) { p.Provider.(*FileProvider).Close() }, want: ErrClosed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ks := newMemKeyStore()
			fp := newTestProvider(t)
			stored, err := New(fp, 4).KeyFor(ctx, ks, "Patient/1")
			if err != nil {
				t.Fatal(err)
			}
			p := &funcProvider{Provider: fp}
			tt.setup(ks, p)
			r := New(p, 4)
			var k *DataKey
			if tt.byID {
				k, err = r.KeyByID(ctx, ks, stored.ID())
			} else {
				k, err = r.KeyFor(ctx, ks, "Patient/2")
			}
			if err == nil {
				t.Fatalf("got key %v, want an error", k)
			}
			if tt.want != nil && !errors.Is(err, tt.want) {
				t.Errorf("error %v, want %v", err, tt.want)
			}
			if !strings.Contains(err.Error(), tt.wantMsg) {
				t.Errorf("error %q, want it to say %q", err, tt.wantMsg)
			}
			if n := r.cache.len(); n != 0 {
				t.Errorf("cache holds %d keys after a failure", n)
			}
			if !tt.byID && ks.failPut == nil {
				if n := ks.puts.Load(); n != 1 {
					t.Errorf("store got %d puts, want only the setup's", n)
				}
			}
		})
	}
}

func TestSealerMACAndNoteSigner(t *testing.T) {
	ctx := context.Background()
	r := New(newTestProvider(t), 10)
	s, err := r.Sealer(ctx, PurposeAuditSeal)
	if err != nil {
		t.Fatal(err)
	}
	sealed := s.Seal([]byte("entry"), []byte("ad 1"))
	if len(sealed) != SealerOverhead+5 {
		t.Errorf("sealed length %d, want %d", len(sealed), SealerOverhead+5)
	}
	if pt, err := s.Open(sealed, []byte("ad 1")); err != nil || string(pt) != "entry" {
		t.Errorf("Open = %q, %v", pt, err)
	}
	if _, err := s.Open(sealed, []byte("ad 2")); err != ErrDecrypt {
		t.Errorf("Open with other ad = %v, want ErrDecrypt", err)
	}
	for i := range sealed {
		bad := bytes.Clone(sealed)
		bad[i] ^= 1
		if _, err := s.Open(bad, []byte("ad 1")); err != ErrDecrypt {
			t.Fatalf("Open accepted a flipped byte %d", i)
		}
	}
	if bytes.Equal(s.Seal([]byte("entry"), nil)[1:25], s.Seal([]byte("entry"), nil)[1:25]) {
		t.Error("two seals share a nonce")
	}
	m, err := r.MAC(ctx, PurposeAuditIndex)
	if err != nil {
		t.Fatal(err)
	}
	if m.Sum([]byte("a")) == m.Sum([]byte("b")) || m.Sum([]byte("a")) != m.Sum([]byte("a")) {
		t.Error("MAC is not a function of its input")
	}
	if fmt.Sprintf("%v %+v", *s, *m) != "keyring.Sealer(redacted) keyring.MAC(redacted)" {
		t.Errorf("secrets print: %v %+v", *s, *m)
	}
	signer, vkey, err := r.NoteSigner(ctx, "ehrvault.example/audit")
	if err != nil {
		t.Fatal(err)
	}
	v, err := note.NewVerifier(vkey)
	if err != nil {
		t.Fatal(err)
	}
	msg, err := note.Sign(&note.Note{Text: "hello\n"}, signer)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := note.Open(msg, note.VerifierList(v)); err != nil {
		t.Errorf("a note signed by NoteSigner does not verify with its key: %v", err)
	}
	_, vkey2, _ := r.NoteSigner(ctx, "ehrvault.example/audit")
	if vkey2 != vkey {
		t.Error("NoteSigner is not deterministic")
	}
}
