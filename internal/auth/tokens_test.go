package auth

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ehrvault/ehrvault/internal/store"
)

// memTokens is an in-memory store.AuthTokens that counts lookups.
type memTokens struct {
	mu      sync.Mutex
	byID    map[string]*store.AuthToken
	lookups int
}

func (m *memTokens) PutAuthToken(_ context.Context, t store.AuthToken) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.byID == nil {
		m.byID = map[string]*store.AuthToken{}
	}
	m.byID[t.ID] = &t
	return nil
}

func (m *memTokens) AuthTokenByHash(_ context.Context, h []byte) (*store.AuthToken, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.lookups++
	for _, t := range m.byID {
		if bytes.Equal(t.Hash, h) {
			c := *t
			return &c, nil
		}
	}
	return nil, store.ErrNotFound
}

func (m *memTokens) AuthTokens(context.Context) ([]store.AuthToken, error) { return nil, nil }

func (m *memTokens) RevokeAuthToken(_ context.Context, id string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	t, ok := m.byID[id]
	if !ok {
		return store.ErrNotFound
	}
	t.Revoked = true
	return nil
}

// revokeBehind revokes as another process would: in the store only.
func (m *memTokens) revokeBehind(id string) { m.RevokeAuthToken(context.Background(), id) }

type clock struct{ t time.Time }

func (c *clock) now() time.Time { return c.t }

func newTestTokens() (*Tokens, *memTokens, *clock) {
	st := &memTokens{}
	c := &clock{t: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	return NewTokens(st, bytes.Repeat([]byte{7}, 32), c.now), st, c
}

func TestTokens(t *testing.T) {
	ctx := context.Background()
	tk, st, c := newTestTokens()
	tok, rec, err := tk.Create(ctx, time.Hour, "script")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(tok, TokenPrefix) || bytes.Contains(rec.Hash, []byte(tok)) {
		t.Fatalf("token %q, record %+v", tok, rec)
	}
	p, err := tk.Authenticate(ctx, tok)
	if err != nil || p.ID != rec.ID || p.Label != "script" {
		t.Fatalf("Authenticate = %+v, %v", p, err)
	}
	// Wrong, truncated and foreign tokens all fail alike.
	for _, bad := range []string{"", tok[:len(tok)-1], tok[:len(tok)-1] + "x", "Bearer " + tok, strings.ToUpper(tok)} {
		if _, err := tk.Authenticate(ctx, bad); !errors.Is(err, ErrUnauthenticated) {
			t.Errorf("Authenticate(%q) = %v, want ErrUnauthenticated", bad, err)
		}
	}
	// Verified tokens are remembered for CacheTTL.
	n := st.lookups
	for range 5 {
		tk.Authenticate(ctx, tok)
	}
	if st.lookups != n {
		t.Errorf("%d store lookups for 5 cached authentications", st.lookups-n)
	}
	// A revocation behind the cache's back bites within CacheTTL.
	st.revokeBehind(rec.ID)
	c.t = c.t.Add(CacheTTL)
	if _, err := tk.Authenticate(ctx, tok); !errors.Is(err, ErrUnauthenticated) {
		t.Errorf("revoked token still works after CacheTTL: %v", err)
	}
}

func TestTokenRevokeAndExpiry(t *testing.T) {
	ctx := context.Background()
	tk, _, c := newTestTokens()
	tok, rec, _ := tk.Create(ctx, time.Minute, "a")
	if _, err := tk.Authenticate(ctx, tok); err != nil {
		t.Fatal(err)
	}
	// Revoking through Tokens bites at once, cache or not.
	if err := tk.Revoke(ctx, rec.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := tk.Authenticate(ctx, tok); !errors.Is(err, ErrUnauthenticated) {
		t.Errorf("revoked token works: %v", err)
	}
	tok2, _, _ := tk.Create(ctx, time.Minute, "b")
	if _, err := tk.Authenticate(ctx, tok2); err != nil {
		t.Fatal(err)
	}
	// The cache never outlives the token: at its expiry it fails, even
	// if it was verified a moment before.
	c.t = c.t.Add(time.Minute - time.Millisecond)
	if _, err := tk.Authenticate(ctx, tok2); err != nil {
		t.Fatalf("token fails before its expiry: %v", err)
	}
	c.t = c.t.Add(time.Millisecond)
	if _, err := tk.Authenticate(ctx, tok2); !errors.Is(err, ErrUnauthenticated) {
		t.Errorf("expired token works: %v", err)
	}
	if _, _, err := tk.Create(ctx, 0, "x"); err == nil {
		t.Error("Create accepted a zero lifetime")
	}
	if _, _, err := tk.Create(ctx, MaxTTL+time.Second, "x"); err == nil {
		t.Error("Create accepted a lifetime over MaxTTL")
	}
}
