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
//   - Tokens expire, and a revoked token fails on its next use.
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
	"strings"
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

// Principal is who a request acts for.
type Principal struct {
	Kind  string // "operator-token"
	ID    string // the token's public id
	Label string
}

// Tokens issues and verifies operator bearer tokens.
type Tokens struct {
	store store.AuthTokens
	key   []byte // HMAC key derived from the KEK
	now   func() time.Time
}

// NewTokens returns a token service; key is derived from the KEK for this
// purpose only.
func NewTokens(s store.AuthTokens, key []byte, now func() time.Time) *Tokens {
	if now == nil {
		now = time.Now
	}
	return &Tokens{store: s, key: key, now: now}
}

func (t *Tokens) digest(token string) []byte {
	m := hmac.New(sha256.New, t.key)
	m.Write([]byte(token))
	return m.Sum(nil)
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
	rec, err := t.store.AuthTokenByHash(ctx, d)
	if errors.Is(err, store.ErrNotFound) {
		return nil, ErrUnauthenticated
	}
	if err != nil {
		return nil, fmt.Errorf("look up token: %w", err)
	}
	// The lookup was by digest; compare again in constant time so that the
	// decision never rests on a comparison whose timing depends on secrets.
	if subtle.ConstantTimeCompare(rec.Hash, d) != 1 || rec.Revoked || !t.now().Before(rec.Expires) {
		return nil, ErrUnauthenticated
	}
	return &Principal{Kind: "operator-token", ID: rec.ID, Label: rec.Label}, nil
}

// List returns every token record, newest first.
func (t *Tokens) List(ctx context.Context) ([]store.AuthToken, error) {
	return t.store.AuthTokens(ctx)
}

// Revoke revokes the token with the given public id.
func (t *Tokens) Revoke(ctx context.Context, id string) error {
	return t.store.RevokeAuthToken(ctx, id)
}
