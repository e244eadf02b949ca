package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"

	"github.com/ehrvault/ehrvault/internal/store"
)

const (
	insertAuthTokenSQL = `INSERT INTO auth_tokens (id, hash, label, created, expires, revoked) VALUES (?, ?, ?, ?, ?, ?)`
	authTokenSQL       = `SELECT id, hash, label, created, expires, revoked FROM auth_tokens WHERE hash = ?`
	// Newest first; tokens created in the same microsecond in the
	// reverse order of their insertion.
	authTokensSQL      = `SELECT id, hash, label, created, expires, revoked FROM auth_tokens ORDER BY created DESC, rowid DESC`
	revokeAuthTokenSQL = `UPDATE auth_tokens SET revoked = 1 WHERE id = ?`
)

// PutAuthToken implements store.AuthTokens.
func (db *DB) PutAuthToken(ctx context.Context, t store.AuthToken) error {
	if db.closed.Load() {
		return store.ErrClosed
	}
	if t.ID == "" || len(t.Hash) == 0 {
		return errors.New("put auth token: a token needs an id and a hash")
	}
	_, err := db.w.ExecContext(ctx, insertAuthTokenSQL, t.ID, t.Hash, t.Label, micros(t.Created), micros(t.Expires), t.Revoked)
	if isUnique(err) {
		return fmt.Errorf("put auth token %s: %w", t.ID, store.ErrExists)
	}
	return db.fail("put auth token", err)
}

// AuthTokenByHash implements store.AuthTokens.
func (db *DB) AuthTokenByHash(ctx context.Context, hash []byte) (*store.AuthToken, error) {
	if db.closed.Load() {
		return nil, store.ErrClosed
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	t, err := scanAuthToken(db.r.QueryRowContext(short(ctx), authTokenSQL, hash))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, store.ErrNotFound
	}
	if err != nil {
		return nil, db.fail("auth token", err)
	}
	return &t, nil
}

// AuthTokens implements store.AuthTokens.
func (db *DB) AuthTokens(ctx context.Context) ([]store.AuthToken, error) {
	if db.closed.Load() {
		return nil, store.ErrClosed
	}
	rows, err := db.r.QueryContext(ctx, authTokensSQL)
	if err != nil {
		return nil, db.fail("auth tokens", err)
	}
	defer rows.Close()
	var ts []store.AuthToken
	for rows.Next() {
		t, err := scanAuthToken(rows)
		if err != nil {
			return nil, db.fail("auth tokens", err)
		}
		ts = append(ts, t)
	}
	return ts, db.fail("auth tokens", rows.Err())
}

// RevokeAuthToken implements store.AuthTokens. Revoking a revoked token
// succeeds.
func (db *DB) RevokeAuthToken(ctx context.Context, id string) error {
	if db.closed.Load() {
		return store.ErrClosed
	}
	res, err := db.w.ExecContext(ctx, revokeAuthTokenSQL, id)
	if err != nil {
		return db.fail("revoke auth token", err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return db.fail("revoke auth token", err)
	}
	if n == 0 {
		return store.ErrNotFound
	}
	return nil
}

func scanAuthToken(sc interface{ Scan(...any) error }) (store.AuthToken, error) {
	var (
		t                store.AuthToken
		created, expires int64
	)
	if err := sc.Scan(&t.ID, &t.Hash, &t.Label, &created, &expires, &t.Revoked); err != nil {
		return store.AuthToken{}, err
	}
	t.Created = fromMicros(created)
	t.Expires = fromMicros(expires)
	return t, nil
}
