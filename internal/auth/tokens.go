// Package auth decides who is calling. For now that is one kind of caller:
// the holder of an operator bearer token made with `ehrvault token create`.
// People, MFA, devices and SMART on FHIR come next (their own issue) and
// will produce the same Principal.
//
// # Promises
//
//   - A token is 256 random bits; the store keeps only an HMAC of it under a
//     key derived from the KEK. A copy of the database neither reveals a
//     token nor lets anyone without the key mint one that verifies.
//   - Tokens expire. A token revoked through this Tokens fails on its next
//     use; one revoked by another process (ehrvault token revoke beside a
//     running server) fails within CacheTTL, since verified tokens are
//     remembered that long to spare the store a lookup per request.
//   - Authentication failures all look alike to the caller.
package auth

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/ehrvault/ehrvault/internal/store"
)

// TokenPrefix starts every operator token, so that secret scanners and
// people recognise one.
const TokenPrefix = "ehv_"

// MaxTTL is the longest lifetime a token may be given.
const MaxTTL = 366 * 24 * time.Hour

// ErrUnauthenticated is returned for a missing, unknown, expired or revoked
// token; the API answers 401 and says no more.
var ErrUnauthenticated = errors.New("auth: not authenticated")

// CacheTTL is how long a verified token is remembered before the store is
// asked again: the longest a revocation by another process takes to bite.
const CacheTTL = time.Second

// cacheMax bounds the remembered tokens; past it the memory is cleared.
const cacheMax = 4096

// Tokens issues and verifies operator bearer tokens.
type Tokens struct {
	store store.AuthTokens
	key   []byte // HMAC key derived from the KEK
	now   func() time.Time

	macs  sync.Pool // of HMAC-SHA256 under key
	mu    sync.Mutex
	cache map[[sha256.Size]byte]verified // by token digest
}

// verified is a token found valid, until the earlier of its expiry and the
// end of its time in the cache.
type verified struct {
	p     *Principal
	until time.Time
}

// NewTokens returns a token service; key is derived from the KEK for this
// purpose only.
func NewTokens(s store.AuthTokens, key []byte, now func() time.Time) *Tokens {
	if now == nil {
		now = time.Now
	}
	t := &Tokens{store: s, key: key, now: now, cache: map[[sha256.Size]byte]verified{}}
	t.macs.New = func() any { return hmac.New(sha256.New, key) }
	return t
}

func (t *Tokens) digest(token string) []byte {
	m := t.macs.Get().(hash.Hash)
	m.Reset()
	m.Write([]byte(token))
	d := m.Sum(nil)
	t.macs.Put(m)
	return d
}

// Create makes a token valid for ttl and returns it with its record. The
// token is shown once; only its HMAC is stored.
func (t *Tokens) Create(ctx context.Context, ttl time.Duration, label string) (string, store.AuthToken, error) {
	if ttl <= 0 || ttl > MaxTTL {
		return "", store.AuthToken{}, fmt.Errorf("token lifetime must be between 1s and %s", MaxTTL)
	}
	var secret [32]byte
	var id [6]byte
	if _, err := rand.Read(secret[:]); err != nil {
		return "", store.AuthToken{}, err
	}
	rand.Read(id[:])
	token := TokenPrefix + base64.RawURLEncoding.EncodeToString(secret[:])
	now := t.now().UTC().Truncate(time.Second)
	rec := store.AuthToken{
		ID:      "tok_" + hex.EncodeToString(id[:]),
		Hash:    t.digest(token),
		Label:   label,
		Created: now,
		Expires: now.Add(ttl),
	}
	if err := t.store.PutAuthToken(ctx, rec); err != nil {
		return "", store.AuthToken{}, fmt.Errorf("store token: %w", err)
	}
	return token, rec, nil
}

// Authenticate returns the principal a bearer token stands for.
func (t *Tokens) Authenticate(ctx context.Context, token string) (*Principal, error) {
	if !strings.HasPrefix(token, TokenPrefix) || len(token) != len(TokenPrefix)+43 {
		return nil, ErrUnauthenticated
	}
	d := t.digest(token)
	var key [sha256.Size]byte
	copy(key[:], d)
	now := t.now()
	t.mu.Lock()
	hit, ok := t.cache[key]
	t.mu.Unlock()
	// The map lookup found the entry by its digest, which only the
	// token's holder can produce: no secret is compared here.
	if ok && now.Before(hit.until) {
		return hit.p, nil
	}
	rec, err := t.store.AuthTokenByHash(ctx, d)
	if errors.Is(err, store.ErrNotFound) {
		return nil, ErrUnauthenticated
	}
	if err != nil {
		return nil, fmt.Errorf("look up token: %w", err)
	}
	// The lookup was by digest; compare again in constant time so that the
	// decision never rests on a comparison whose timing depends on secrets.
	if subtle.ConstantTimeCompare(rec.Hash, d) != 1 || rec.Revoked || !now.Before(rec.Expires) {
		return nil, ErrUnauthenticated
	}
	p := &Principal{Kind: KindOperator, ID: rec.ID, Label: rec.Label}
	until := now.Add(CacheTTL)
	if rec.Expires.Before(until) {
		until = rec.Expires
	}
	t.mu.Lock()
	if len(t.cache) >= cacheMax {
		clear(t.cache)
	}
	t.cache[key] = verified{p: p, until: until}
	t.mu.Unlock()
	return p, nil
}

// List returns every token record, newest first.
func (t *Tokens) List(ctx context.Context) ([]store.AuthToken, error) {
	return t.store.AuthTokens(ctx)
}

// Revoke revokes the token with the given public id. It takes effect at
// once in this process.
func (t *Tokens) Revoke(ctx context.Context, id string) error {
	err := t.store.RevokeAuthToken(ctx, id)
	t.mu.Lock()
	clear(t.cache)
	t.mu.Unlock()
	return err
}

// AuthenticateRequest authenticates the operator bearer token of r's
// Authorization header (scheme Bearer, token starting with TokenPrefix);
// ErrUnauthenticated if there is none or it is not valid.
func (t *Tokens) AuthenticateRequest(r *http.Request) (*Principal, error) {
	token, ok := BearerToken(r)
	if !ok {
		return nil, ErrUnauthenticated
	}
	return t.Authenticate(r.Context(), token)
}

// BearerToken returns the token of an "Authorization: Bearer <token>"
// header.
func BearerToken(r *http.Request) (string, bool) {
	scheme, token, ok := strings.Cut(r.Header.Get("Authorization"), " ")
	token = strings.TrimSpace(token)
	if !ok || !strings.EqualFold(scheme, "Bearer") || token == "" {
		return "", false
	}
	return token, true
}
