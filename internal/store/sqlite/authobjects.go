package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/ehrvault/ehrvault/internal/store"
)

var _ store.AuthObjects = (*DB)(nil)

const (
	authObjectCols       = `kind, id, lookup, parent, data, version, expires`
	insertAuthObjectSQL  = `INSERT INTO auth_objects (` + authObjectCols + `) VALUES (?, ?, ?, ?, ?, 1, ?)`
	updateAuthObjectSQL  = `UPDATE auth_objects SET lookup = ?, parent = ?, data = ?, expires = ?, version = version + 1 WHERE kind = ? AND id = ? AND version = ?`
	authObjectVerSQL     = `SELECT version FROM auth_objects WHERE kind = ? AND id = ?`
	authObjectSQL        = `SELECT ` + authObjectCols + ` FROM auth_objects WHERE kind = ? AND id = ?`
	authObjectLookupSQL  = `SELECT ` + authObjectCols + ` FROM auth_objects WHERE kind = ? AND lookup = ?`
	authObjectsSQL       = `SELECT ` + authObjectCols + ` FROM auth_objects WHERE kind = ? ORDER BY id`
	authObjectsParentSQL = `SELECT ` + authObjectCols + ` FROM auth_objects WHERE kind = ? AND parent = ? AND parent <> '' ORDER BY id`
	deleteAuthObjectSQL  = `DELETE FROM auth_objects WHERE kind = ? AND id = ?`
	deleteAuthObjectsSQL = `DELETE FROM auth_objects WHERE kind = ? AND parent = ? AND parent <> ''`
	purgeAuthObjectsSQL  = `DELETE FROM auth_objects WHERE expires <> 0 AND expires <= ?`
)

// expiresMicros stores a zero time as 0 (never).
func expiresMicros(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return micros(t)
}

// lookupArg stores an empty lookup as NULL, which the unique index skips.
func lookupArg(b []byte) any {
	if len(b) == 0 {
		return nil
	}
	return b
}

// CreateAuthObject implements store.AuthObjects.
func (db *DB) CreateAuthObject(ctx context.Context, o store.AuthObject) error {
	if db.closed.Load() {
		return store.ErrClosed
	}
	if o.Kind == "" || o.ID == "" || o.Data == nil {
		return errors.New("create auth object: an object needs a kind, an id and data")
	}
	_, err := db.w.ExecContext(ctx, insertAuthObjectSQL, o.Kind, o.ID, lookupArg(o.Lookup), o.Parent, o.Data, expiresMicros(o.Expires))
	if isUnique(err) {
		return fmt.Errorf("create auth object %s %s: %w", o.Kind, o.ID, store.ErrExists)
	}
	return db.fail("create auth object", err)
}

// UpdateAuthObject implements store.AuthObjects.
func (db *DB) UpdateAuthObject(ctx context.Context, o store.AuthObject) (int64, error) {
	if db.closed.Load() {
		return 0, store.ErrClosed
	}
	if o.Data == nil {
		return 0, errors.New("update auth object: an object needs data")
	}
	res, err := db.w.ExecContext(ctx, updateAuthObjectSQL, lookupArg(o.Lookup), o.Parent, o.Data, expiresMicros(o.Expires), o.Kind, o.ID, o.Version)
	if isUnique(err) {
		return 0, fmt.Errorf("update auth object %s %s: lookup: %w", o.Kind, o.ID, store.ErrExists)
	}
	if err != nil {
		return 0, db.fail("update auth object", err)
	}
	if n, err := res.RowsAffected(); err != nil {
		return 0, db.fail("update auth object", err)
	} else if n == 1 {
		return o.Version + 1, nil
	}
	// Not updated: gone, or changed by someone else. Ask the writer, which
	// has seen every commit.
	var v int64
	err = db.w.QueryRowContext(ctx, authObjectVerSQL, o.Kind, o.ID).Scan(&v)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, store.ErrNotFound
	}
	if err != nil {
		return 0, db.fail("update auth object", err)
	}
	return 0, fmt.Errorf("update auth object %s %s: version %d, not %d: %w", o.Kind, o.ID, v, o.Version, store.ErrConflict)
}

// AuthObject implements store.AuthObjects.
func (db *DB) AuthObject(ctx context.Context, kind, id string) (*store.AuthObject, error) {
	return db.authObject(ctx, authObjectSQL, kind, id)
}

// AuthObjectByLookup implements store.AuthObjects.
func (db *DB) AuthObjectByLookup(ctx context.Context, kind string, lookup []byte) (*store.AuthObject, error) {
	if len(lookup) == 0 {
		return nil, store.ErrNotFound
	}
	return db.authObject(ctx, authObjectLookupSQL, kind, lookup)
}

func (db *DB) authObject(ctx context.Context, query string, args ...any) (*store.AuthObject, error) {
	if db.closed.Load() {
		return nil, store.ErrClosed
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	o, err := scanAuthObject(db.r.QueryRowContext(short(ctx), query, args...))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, store.ErrNotFound
	}
	if err != nil {
		return nil, db.fail("auth object", err)
	}
	return &o, nil
}

// AuthObjects implements store.AuthObjects.
func (db *DB) AuthObjects(ctx context.Context, kind, parent string) ([]store.AuthObject, error) {
	if db.closed.Load() {
		return nil, store.ErrClosed
	}
	q, args := authObjectsSQL, []any{kind}
	if parent != "" {
		q, args = authObjectsParentSQL, []any{kind, parent}
	}
	rows, err := db.r.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, db.fail("auth objects", err)
	}
	defer rows.Close()
	var out []store.AuthObject
	for rows.Next() {
		o, err := scanAuthObject(rows)
		if err != nil {
			return nil, db.fail("auth objects", err)
		}
		out = append(out, o)
	}
	return out, db.fail("auth objects", rows.Err())
}

// DeleteAuthObject implements store.AuthObjects.
func (db *DB) DeleteAuthObject(ctx context.Context, kind, id string) error {
	n, err := db.deleteAuthObjects(ctx, deleteAuthObjectSQL, kind, id)
	if err == nil && n == 0 {
		return store.ErrNotFound
	}
	return err
}

// DeleteAuthObjects implements store.AuthObjects.
func (db *DB) DeleteAuthObjects(ctx context.Context, kind, parent string) (int, error) {
	if parent == "" {
		return 0, errors.New("delete auth objects: no parent")
	}
	return db.deleteAuthObjects(ctx, deleteAuthObjectsSQL, kind, parent)
}

// PurgeAuthObjects implements store.AuthObjects.
func (db *DB) PurgeAuthObjects(ctx context.Context, before time.Time) (int, error) {
	return db.deleteAuthObjects(ctx, purgeAuthObjectsSQL, micros(before))
}

func (db *DB) deleteAuthObjects(ctx context.Context, query string, args ...any) (int, error) {
	if db.closed.Load() {
		return 0, store.ErrClosed
	}
	res, err := db.w.ExecContext(ctx, query, args...)
	if err != nil {
		return 0, db.fail("delete auth objects", err)
	}
	n, err := res.RowsAffected()
	return int(n), db.fail("delete auth objects", err)
}

func scanAuthObject(sc interface{ Scan(...any) error }) (store.AuthObject, error) {
	var (
		o       store.AuthObject
		expires int64
	)
	if err := sc.Scan(&o.Kind, &o.ID, &o.Lookup, &o.Parent, &o.Data, &o.Version, &expires); err != nil {
		return store.AuthObject{}, err
	}
	if expires != 0 {
		o.Expires = fromMicros(expires)
	}
	return o, nil
}
