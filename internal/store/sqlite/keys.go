package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"

	"github.com/ehrvault/ehrvault/internal/store"
)

const (
	keyByOwnerSQL = `SELECT id, wrapped FROM data_keys WHERE owner = ?`
	keyByIDSQL    = `SELECT owner, wrapped FROM data_keys WHERE id = ?`
	insertKeySQL  = `INSERT INTO data_keys (owner, wrapped) VALUES (?, ?)`
)

// Keys implements store.Store: it reads committed keys from the read pool,
// and PutWrappedKey runs as a write transaction of its own.
func (db *DB) Keys() store.KeyStore { return keys{db} }

// keys is the store.KeyStore of a DB.
type keys struct{ db *DB }

func (k keys) WrappedKey(ctx context.Context, owner string) (int64, []byte, error) {
	if k.db.closed.Load() {
		return 0, nil, store.ErrClosed
	}
	id, wrapped, err := keyByOwner(ctx, k.db.r, owner)
	return id, wrapped, k.db.fail("wrapped key", err)
}

func (k keys) WrappedKeyByID(ctx context.Context, id int64) (string, []byte, error) {
	if k.db.closed.Load() {
		return "", nil, store.ErrClosed
	}
	owner, wrapped, err := keyByID(ctx, k.db.r, id)
	return owner, wrapped, k.db.fail("wrapped key", err)
}

func (k keys) PutWrappedKey(ctx context.Context, owner string, wrapped []byte) (id int64, err error) {
	err = k.db.Update(ctx, func(tx store.Tx) error {
		id, err = tx.PutWrappedKey(ctx, owner, wrapped)
		return err
	})
	return id, err
}

// WrappedKey implements store.KeyStore, seeing the transaction's own keys.
func (t *tx) WrappedKey(ctx context.Context, owner string) (int64, []byte, error) {
	if err := t.check(); err != nil {
		return 0, nil, err
	}
	id, wrapped, err := keyByOwner(ctx, t.tx, owner)
	return id, wrapped, t.fail(ctx, "wrapped key", err)
}

// WrappedKeyByID implements store.KeyStore, seeing the transaction's own
// keys.
func (t *tx) WrappedKeyByID(ctx context.Context, id int64) (string, []byte, error) {
	if err := t.check(); err != nil {
		return "", nil, err
	}
	owner, wrapped, err := keyByID(ctx, t.tx, id)
	return owner, wrapped, t.fail(ctx, "wrapped key", err)
}

// PutWrappedKey implements store.KeyStore. Key ids start at 1 and are
// never reused.
func (t *tx) PutWrappedKey(ctx context.Context, owner string, wrapped []byte) (int64, error) {
	if err := t.check(); err != nil {
		return 0, err
	}
	if owner == "" || len(wrapped) == 0 {
		return 0, errors.New("put wrapped key: a key needs an owner and wrapped bytes")
	}
	res, err := t.tx.ExecContext(ctx, insertKeySQL, owner, wrapped)
	if isUnique(err) {
		// A failed statement undoes itself; the transaction goes on.
		return 0, fmt.Errorf("put wrapped key of %s: %w", owner, store.ErrExists)
	}
	if err != nil {
		return 0, t.fail(ctx, "put wrapped key", err)
	}
	id, err := res.LastInsertId()
	return id, t.fail(ctx, "put wrapped key", err)
}

func keyByOwner(ctx context.Context, q querier, owner string) (id int64, wrapped []byte, err error) {
	err = q.QueryRowContext(ctx, keyByOwnerSQL, owner).Scan(&id, &wrapped)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, nil, store.ErrNotFound
	}
	if err != nil {
		return 0, nil, err
	}
	return id, wrapped, nil
}

func keyByID(ctx context.Context, q querier, id int64) (owner string, wrapped []byte, err error) {
	err = q.QueryRowContext(ctx, keyByIDSQL, id).Scan(&owner, &wrapped)
	if errors.Is(err, sql.ErrNoRows) {
		return "", nil, store.ErrNotFound
	}
	if err != nil {
		return "", nil, err
	}
	return owner, wrapped, nil
}
