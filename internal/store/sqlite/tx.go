package sqlite

import (
	"context"
	"database/sql"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"strings"

	"github.com/ehrvault/ehrvault/internal/store"
)

// errTxDone is returned by a Tx used after its Update returned.
var errTxDone = errors.New("sqlite: transaction used after its Update returned")

// Update implements store.Store. It runs fn in a BEGIN IMMEDIATE
// transaction on the writer connection, waiting for that connection while
// another Update runs. Functions registered with AfterCommit run, in order,
// after the commit and before Update returns.
func (db *DB) Update(ctx context.Context, fn func(store.Tx) error) error {
	if db.closed.Load() {
		return store.ErrClosed
	}
	stx, err := db.w.BeginTx(ctx, nil)
	if err != nil {
		return db.txFail(ctx, "update: begin", err)
	}
	t := &tx{db: db, tx: stx}
	committed := false
	defer func() {
		t.done = true
		if !committed {
			stx.Rollback() // also when fn panics
		}
	}()
	if err := fn(t); err != nil {
		return err
	}
	if t.broken != nil {
		return fmt.Errorf("update: a write failed halfway, so the transaction was rolled back: %w", t.broken)
	}
	if db.cache != nil {
		db.cache.hold(t.written)
	}
	err = stx.Commit()
	if db.cache != nil {
		db.cache.release(t.written)
	}
	if err != nil {
		return db.txFail(ctx, "update: commit", err)
	}
	committed = true
	t.done = true
	for _, f := range t.after {
		f()
	}
	if db.commits.Add(1)%walCheckEvery == 0 {
		db.boundWAL(ctx)
	}
	return nil
}

// txFail wraps an error of a write transaction. database/sql rolls back a
// transaction whose context ends and then reports only that it is done, so
// the context's error is the one to tell.
func (db *DB) txFail(ctx context.Context, op string, err error) error {
	if errors.Is(err, sql.ErrTxDone) && ctx.Err() != nil {
		err = ctx.Err()
	}
	return db.fail(op, err)
}

// tx is a store.Tx.
type tx struct {
	db    *DB
	tx    *sql.Tx
	after []func()
	// broken is set when a Put failed after it had written: the
	// transaction holds half a write and must not commit.
	broken error
	done   bool
	// written lists what Put wrote, for the read cache to forget after
	// the commit; nil without a cache.
	written []headKey
}

func (t *tx) check() error {
	if t.done {
		return errTxDone
	}
	if t.broken != nil {
		return fmt.Errorf("an earlier write failed halfway: %w", t.broken)
	}
	return nil
}

// AfterCommit implements store.Tx.
func (t *tx) AfterCommit(f func()) { t.after = append(t.after, f) }

// Read implements store.Reader, seeing the transaction's own writes.
func (t *tx) Read(ctx context.Context, typ, id string) (*store.Version, error) {
	if err := t.check(); err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	v, err := readVersion(short(ctx), t.tx, typ, id)
	return v, t.fail(ctx, "read", err)
}

// VRead implements store.Reader, seeing the transaction's own writes.
func (t *tx) VRead(ctx context.Context, typ, id string, version int64) (*store.Version, error) {
	if err := t.check(); err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	v, err := vreadVersion(short(ctx), t.tx, typ, id, version)
	return v, t.fail(ctx, "vread", err)
}

// History implements store.Reader, seeing the transaction's own writes.
func (t *tx) History(ctx context.Context, q store.HistoryQuery) ([]*store.Version, error) {
	if err := t.check(); err != nil {
		return nil, err
	}
	vs, err := history(ctx, t.tx, q)
	return vs, t.fail(ctx, "history", err)
}

// List implements store.Reader, seeing the transaction's own writes.
func (t *tx) List(ctx context.Context, q store.ListQuery) ([]string, error) {
	if err := t.check(); err != nil {
		return nil, err
	}
	ids, err := list(ctx, t.tx, q)
	return ids, t.fail(ctx, "list", err)
}

func (t *tx) fail(ctx context.Context, op string, err error) error {
	return t.db.txFail(ctx, op, err)
}

// The statements of Put.
const (
	headSQL        = `SELECT version, tokens, vals FROM heads WHERE type = ? AND id = ?`
	insertSQL      = `INSERT INTO versions (type, id, version, updated, deleted, key_id, data) VALUES (?, ?, ?, ?, ?, ?, ?)`
	newHeadSQL     = `INSERT INTO heads (type, id, version, seq, deleted, tokens, key_id, vals) VALUES (?, ?, ?, ?, ?, ?, ?, ?)`
	moveHeadSQL    = `UPDATE heads SET version = ?, seq = ?, deleted = ?, tokens = ?, key_id = ?, vals = ? WHERE type = ? AND id = ?`
	deleteTokenSQL = `DELETE FROM tokens WHERE type = ? AND token = ? AND id = ?`
	insertLabelSQL = `INSERT INTO labels (seq, label) VALUES (?, ?)`
	deleteValueSQL = `DELETE FROM vals WHERE type = ? AND key = ? AND lo = ? AND hi = ? AND id = ?`
)

// Put implements store.Tx.
func (t *tx) Put(ctx context.Context, v *store.Version, ix *store.Index) error {
	var tokens, labels []store.Token
	var values []store.Value
	if ix != nil {
		tokens, values, labels = ix.Tokens, ix.Values, ix.Labels
	}
	if err := t.check(); err != nil {
		return err
	}
	if v.Type == "" || v.ID == "" {
		return errors.New("put: a version needs a type and an id")
	}
	if v.Deleted && (len(tokens) > 0 || len(values) > 0) {
		return fmt.Errorf("put %s/%s: a deletion carries no index", v.Type, v.ID)
	}
	for _, x := range values {
		if len(x.Key) == 0 || math.IsNaN(x.Lo) || math.IsNaN(x.Hi) || x.Lo > x.Hi {
			return fmt.Errorf("put %s/%s: a value needs a key and lo <= hi", v.Type, v.ID)
		}
	}
	var (
		current int64
		list    []byte
		vlist   []byte
	)
	if err := ctx.Err(); err != nil {
		return t.fail(ctx, "put", err)
	}
	err := t.tx.QueryRowContext(short(ctx), headSQL, v.Type, v.ID).Scan(&current, &list, &vlist)
	if err != nil && !errors.Is(err, sql.ErrNoRows) {
		return t.fail(ctx, "put", err)
	}
	if v.Version != current+1 {
		return fmt.Errorf("put %s/%s version %d: the current version is %d: %w", v.Type, v.ID, v.Version, current, store.ErrConflict)
	}
	old, err := decodeTokens(list)
	if err != nil {
		return fmt.Errorf("put %s/%s: token list of the current version: %w", v.Type, v.ID, err)
	}
	oldVals, err := decodeValues(vlist)
	if err != nil {
		return fmt.Errorf("put %s/%s: value list of the current version: %w", v.Type, v.ID, err)
	}
	// From here on a failure leaves half a write in the transaction.
	if t.db.cache != nil {
		t.written = append(t.written, headKey{v.Type, v.ID})
	}
	seq, err := t.put(short(ctx), v, current, old, uniqueTokens(tokens), oldVals, uniqueValues(values), uniqueTokens(labels))
	if err != nil {
		err = t.fail(ctx, fmt.Sprintf("put %s/%s", v.Type, v.ID), err)
		t.broken = err
		return err
	}
	v.Seq = seq
	return nil
}

func (t *tx) put(ctx context.Context, v *store.Version, current int64, old, tokens []store.Token, oldVals, values []store.Value, labels []store.Token) (seq int64, err error) {
	res, err := t.tx.ExecContext(ctx, insertSQL, v.Type, v.ID, v.Version, micros(v.Updated), v.Deleted, v.KeyID, v.Data)
	if err != nil {
		return 0, err
	}
	if seq, err = res.LastInsertId(); err != nil {
		return 0, err
	}
	for _, l := range labels {
		if _, err := t.tx.ExecContext(ctx, insertLabelSQL, seq, []byte(l)); err != nil {
			return 0, err
		}
	}
	list, vlist := encodeTokens(tokens), encodeValues(values)
	if current == 0 {
		_, err = t.tx.ExecContext(ctx, newHeadSQL, v.Type, v.ID, v.Version, seq, v.Deleted, list, v.KeyID, vlist)
	} else {
		_, err = t.tx.ExecContext(ctx, moveHeadSQL, v.Version, seq, v.Deleted, list, v.KeyID, vlist, v.Type, v.ID)
	}
	if err != nil {
		return 0, err
	}
	if err := t.putValues(ctx, v, oldVals, values); err != nil {
		return 0, err
	}
	// Only the tokens that changed are written: an update usually keeps
	// most of them, and each row is a write to a random page.
	had := make(map[string]bool, len(old))
	for _, tok := range old {
		had[string(tok)] = true
	}
	// New rows go in with multi-row INSERTs: one statement per resource
	// rather than one per token saves a round through database/sql and
	// cgo for each token, most of the cost of a Put.
	args := make([]any, 0, 3*min(len(tokens), tokensPerInsert))
	flush := func() error {
		if len(args) == 0 {
			return nil
		}
		_, err := t.tx.ExecContext(ctx, insertTokensSQL(len(args)/3), args...)
		args = args[:0]
		return err
	}
	for _, tok := range tokens {
		if had[string(tok)] {
			delete(had, string(tok))
			continue
		}
		args = append(args, v.Type, []byte(tok), v.ID)
		if len(args) == 3*tokensPerInsert {
			if err := flush(); err != nil {
				return 0, err
			}
		}
	}
	if err := flush(); err != nil {
		return 0, err
	}
	for _, tok := range old {
		if had[string(tok)] {
			if _, err := t.tx.ExecContext(ctx, deleteTokenSQL, v.Type, []byte(tok), v.ID); err != nil {
				return 0, err
			}
		}
	}
	return seq, nil
}

// putValues replaces the resource's value rows: only those that changed
// are written.
func (t *tx) putValues(ctx context.Context, v *store.Version, old, values []store.Value) error {
	had := make(map[string]bool, len(old))
	for _, x := range old {
		had[valueKey(x)] = true
	}
	args := make([]any, 0, 5*min(len(values), valuesPerInsert))
	flush := func() error {
		if len(args) == 0 {
			return nil
		}
		n := len(args) / 5
		q := "INSERT INTO vals (type, key, lo, hi, id) VALUES (?, ?, ?, ?, ?)" + strings.Repeat(", (?, ?, ?, ?, ?)", n-1)
		_, err := t.tx.ExecContext(ctx, q, args...)
		args = args[:0]
		return err
	}
	for _, x := range values {
		if k := valueKey(x); had[k] {
			delete(had, k)
			continue
		}
		args = append(args, v.Type, []byte(x.Key), x.Lo, x.Hi, v.ID)
		if len(args) == 5*valuesPerInsert {
			if err := flush(); err != nil {
				return err
			}
		}
	}
	if err := flush(); err != nil {
		return err
	}
	for _, x := range old {
		if had[valueKey(x)] {
			if _, err := t.tx.ExecContext(ctx, deleteValueSQL, v.Type, []byte(x.Key), x.Lo, x.Hi, v.ID); err != nil {
				return err
			}
		}
	}
	return nil
}

// valuesPerInsert is the most value rows one INSERT writes.
const valuesPerInsert = 32

func valueKey(x store.Value) string {
	var b [16]byte
	binary.BigEndian.PutUint64(b[:], math.Float64bits(x.Lo))
	binary.BigEndian.PutUint64(b[8:], math.Float64bits(x.Hi))
	return string(x.Key) + string(b[:])
}

// uniqueValues returns vs without repeats, in their first order.
func uniqueValues(vs []store.Value) []store.Value {
	if len(vs) < 2 {
		return vs
	}
	seen := make(map[string]bool, len(vs))
	out := make([]store.Value, 0, len(vs))
	for _, x := range vs {
		if k := valueKey(x); !seen[k] {
			seen[k] = true
			out = append(out, x)
		}
	}
	return out
}

// encodeValues encodes a resource's value list for heads.vals: each value
// as a uvarint key length, the key, and lo and hi as 8-byte IEEE 754.
func encodeValues(vs []store.Value) []byte {
	if len(vs) == 0 {
		return nil
	}
	var b []byte
	for _, x := range vs {
		b = binary.AppendUvarint(b, uint64(len(x.Key)))
		b = append(b, x.Key...)
		b = binary.BigEndian.AppendUint64(b, math.Float64bits(x.Lo))
		b = binary.BigEndian.AppendUint64(b, math.Float64bits(x.Hi))
	}
	return b
}

// decodeValues decodes what encodeValues encoded.
func decodeValues(b []byte) ([]store.Value, error) {
	var vs []store.Value
	for len(b) > 0 {
		n, k := binary.Uvarint(b)
		if k <= 0 || n+16 > uint64(len(b)-k) {
			return nil, errors.New("damaged value list")
		}
		b = b[k:]
		x := store.Value{Key: store.Token(b[:n])}
		x.Lo = math.Float64frombits(binary.BigEndian.Uint64(b[n:]))
		x.Hi = math.Float64frombits(binary.BigEndian.Uint64(b[n+8:]))
		vs = append(vs, x)
		b = b[n+16:]
	}
	return vs, nil
}

// tokensPerInsert is the most token rows one INSERT writes.
const tokensPerInsert = 64

// insertTokensSQLs[n] inserts n token rows.
var insertTokensSQLs = func() (s [tokensPerInsert + 1]string) {
	for n := 1; n <= tokensPerInsert; n++ {
		s[n] = "INSERT INTO tokens (type, token, id) VALUES (?, ?, ?)" + strings.Repeat(", (?, ?, ?)", n-1)
	}
	return s
}()

func insertTokensSQL(n int) string { return insertTokensSQLs[n] }

// encodeTokens encodes a resource's token list for heads.tokens: each
// token as a uvarint length and its bytes. No tokens encode as NULL.
func encodeTokens(ts []store.Token) []byte {
	if len(ts) == 0 {
		return nil
	}
	n := 0
	for _, t := range ts {
		n += binary.MaxVarintLen64 + len(t)
	}
	b := make([]byte, 0, n)
	for _, t := range ts {
		b = binary.AppendUvarint(b, uint64(len(t)))
		b = append(b, t...)
	}
	return b
}

// decodeTokens decodes what encodeTokens encoded.
func decodeTokens(b []byte) ([]store.Token, error) {
	var ts []store.Token
	for len(b) > 0 {
		n, k := binary.Uvarint(b)
		if k <= 0 || n > uint64(len(b)-k) {
			return nil, errors.New("damaged token list")
		}
		ts = append(ts, store.Token(b[k:k+int(n)]))
		b = b[k+int(n):]
	}
	return ts, nil
}
