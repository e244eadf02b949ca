// Package authtest builds what the tests of the identity packages (users,
// smart, devices) share: a new store, the identity layer's keys derived
// from a fresh KEK, and a clock that tests move by hand.
package authtest

import (
	"context"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/ehrvault/ehrvault/internal/keyring"
	"github.com/ehrvault/ehrvault/internal/store/sqlite"
)

// Keys is a new, empty store and the keys of identity records: what a
// server and the CLI beside it share.
type Keys struct {
	DB     *sqlite.DB
	Sealer *keyring.Sealer // keyring.PurposeAuthSeal
	MAC    *keyring.MAC    // keyring.PurposeAuthLookup
}

// New makes a store and a KEK (cheap test KDF) in a temporary directory;
// both are closed when tb ends.
func New(tb testing.TB) *Keys {
	tb.Helper()
	ctx := context.Background()
	dir := tb.TempDir()
	kf := filepath.Join(dir, "ehrvault.key")
	if err := keyring.CreateKeyFile(kf, []byte("a test passphrase"), keyring.TestKDFParams); err != nil {
		tb.Fatal(err)
	}
	kp, err := keyring.OpenKeyFile(kf, []byte("a test passphrase"))
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { kp.Close() })
	kr := keyring.New(kp, 4)
	k := &Keys{}
	if k.Sealer, err = kr.Sealer(ctx, keyring.PurposeAuthSeal); err != nil {
		tb.Fatal(err)
	}
	if k.MAC, err = kr.MAC(ctx, keyring.PurposeAuthLookup); err != nil {
		tb.Fatal(err)
	}
	if k.DB, err = sqlite.Open(ctx, filepath.Join(dir, "t.db"), sqlite.Options{Create: true}); err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { k.DB.Close() })
	return k
}

// Clock is a clock that only moves when told. It is safe for concurrent
// use.
type Clock struct {
	mu sync.Mutex
	t  time.Time
}

// NewClock returns a clock that reads t.
func NewClock(t time.Time) *Clock { return &Clock{t: t} }

// Now returns the clock's time.
func (c *Clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

// Add moves the clock by d.
func (c *Clock) Add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}
