package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/ehrvault/ehrvault/internal/store"
)

// querier runs reads: the read pool, or a write transaction whose reads
// see its own writes.
type querier interface {
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}

// micros is how times are stored: unix microseconds, UTC.
func micros(t time.Time) int64 { return t.UnixMicro() }

func fromMicros(us int64) time.Time { return time.UnixMicro(us).UTC() }

// Read implements store.Reader.
func (db *DB) Read(ctx context.Context, typ, id string) (*store.Version, error) {
	if db.closed.Load() {
		return nil, store.ErrClosed
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	var epoch uint64
	if db.cache != nil {
		var v *store.Version
		if v, epoch = db.cache.get(typ, id); v != nil {
			return v, nil
		}
	}
	v, err := readVersion(short(ctx), db.r, typ, id)
	if err == nil && db.cache != nil {
		db.cache.add(v, epoch)
	}
	return v, db.fail("read", err)
}

// VRead implements store.Reader.
func (db *DB) VRead(ctx context.Context, typ, id string, version int64) (*store.Version, error) {
	if db.closed.Load() {
		return nil, store.ErrClosed
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	v, err := vreadVersion(short(ctx), db.r, typ, id, version)
	return v, db.fail("vread", err)
}

// History implements store.Reader. It returns at most MaxHistory versions.
func (db *DB) History(ctx context.Context, q store.HistoryQuery) ([]*store.Version, error) {
	if db.closed.Load() {
		return nil, store.ErrClosed
	}
	vs, err := history(ctx, db.r, q)
	return vs, db.fail("history", err)
}

// List implements store.Reader.
func (db *DB) List(ctx context.Context, q store.ListQuery) ([]string, error) {
	if db.closed.Load() {
		return nil, store.ErrClosed
	}
	ids, err := list(ctx, db.r, q)
	return ids, db.fail("list", err)
}

const readSQL = `
SELECT v.seq, v.version, v.updated, v.deleted, v.key_id, v.data
FROM heads h JOIN versions v ON v.seq = h.seq
WHERE h.type = ? AND h.id = ?`

func readVersion(ctx context.Context, q querier, typ, id string) (*store.Version, error) {
	v := &store.Version{Type: typ, ID: id}
	var updated int64
	err := q.QueryRowContext(ctx, readSQL, typ, id).Scan(&v.Seq, &v.Version, &updated, &v.Deleted, &v.KeyID, &v.Data)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, store.ErrNotFound
	}
	if err != nil {
		return nil, err
	}
	v.Updated = fromMicros(updated)
	return v, nil
}

const vreadSQL = `
SELECT seq, version, updated, deleted, key_id, data
FROM versions
WHERE type = ? AND id = ? AND version = ?`

func vreadVersion(ctx context.Context, q querier, typ, id string, version int64) (*store.Version, error) {
	v := &store.Version{Type: typ, ID: id}
	var updated int64
	err := q.QueryRowContext(ctx, vreadSQL, typ, id, version).Scan(&v.Seq, &v.Version, &updated, &v.Deleted, &v.KeyID, &v.Data)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, store.ErrNotFound
	}
	if err != nil {
		return nil, err
	}
	v.Updated = fromMicros(updated)
	return v, nil
}

// history runs a HistoryQuery. The statement depends only on which filters
// are set, so there are few of them and each stays prepared.
func history(ctx context.Context, q querier, hq store.HistoryQuery) ([]*store.Version, error) {
	if hq.ID != "" && hq.Type == "" {
		return nil, errors.New("an id needs a type")
	}
	limit := hq.Limit
	if limit <= 0 || limit > MaxHistory {
		limit = MaxHistory
	}
	var (
		where []string
		args  []any
	)
	if hq.Type != "" {
		where = append(where, "v.type = ?")
		args = append(args, hq.Type)
	}
	if hq.ID != "" {
		where = append(where, "v.id = ?")
		args = append(args, hq.ID)
	}
	if hq.BeforeSeq != 0 {
		where = append(where, "v.seq < ?")
		args = append(args, hq.BeforeSeq)
	}
	if !hq.Since.IsZero() {
		where = append(where, "v.updated >= ?")
		args = append(args, micros(hq.Since))
	}
	if !hq.At.IsZero() {
		// Current at At: written at or before At, and not replaced by a
		// later version written at or before At.
		at := micros(hq.At)
		where = append(where, `v.updated <= ? AND NOT EXISTS (
			SELECT 1 FROM versions n
			WHERE n.type = v.type AND n.id = v.id AND n.version > v.version AND n.updated <= ?)`)
		args = append(args, at, at)
	}
	if hq.Keys != nil {
		where = append(where, keysIn("v.key_id", hq.Keys, (*sqlArgs)(&args)))
	}
	if hq.Labels != nil {
		where = append(where, labelsWithin("v.seq", hq.Labels, (*sqlArgs)(&args)))
	}
	var b strings.Builder
	b.WriteString("SELECT v.seq, v.type, v.id, v.version, v.updated, v.deleted, v.key_id, v.data FROM versions v")
	if len(where) > 0 {
		b.WriteString(" WHERE ")
		b.WriteString(strings.Join(where, " AND "))
	}
	if hq.ID != "" {
		// The same order as seq within one resource, and the order of
		// the (type, id, version) index.
		b.WriteString(" ORDER BY v.version DESC LIMIT ?")
	} else {
		b.WriteString(" ORDER BY v.seq DESC LIMIT ?")
	}
	args = append(args, limit)

	rows, err := q.QueryContext(ctx, b.String(), args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var vs []*store.Version
	for rows.Next() {
		v := new(store.Version)
		var updated int64
		if err := rows.Scan(&v.Seq, &v.Type, &v.ID, &v.Version, &updated, &v.Deleted, &v.KeyID, &v.Data); err != nil {
			return nil, err
		}
		v.Updated = fromMicros(updated)
		vs = append(vs, v)
	}
	return vs, rows.Err()
}

// list runs a ListQuery. Tokens exist only for current, undeleted
// resources, so a token query needs no look at heads.
func list(ctx context.Context, q querier, lq store.ListQuery) ([]string, error) {
	if lq.Type == "" {
		return nil, errors.New("a list needs a type")
	}
	tokens := uniqueTokens(lq.Tokens)
	var (
		b    strings.Builder
		args []any
	)
	if len(tokens) == 0 {
		b.WriteString("SELECT id FROM heads t0 WHERE t0.type = ? AND t0.deleted = 0")
		args = append(args, lq.Type)
	} else {
		// One self-join per further token, each a primary-key lookup;
		// the first token's rows come in id order from its key range.
		b.WriteString("SELECT t0.id FROM tokens t0")
		for i := 1; i < len(tokens); i++ {
			fmt.Fprintf(&b, " JOIN tokens t%d ON t%[1]d.type = t0.type AND t%[1]d.token = ? AND t%[1]d.id = t0.id", i)
			args = append(args, []byte(tokens[i]))
		}
		b.WriteString(" WHERE t0.type = ? AND t0.token = ?")
		args = append(args, lq.Type, []byte(tokens[0]))
	}
	if lq.AfterID != "" {
		b.WriteString(" AND t0.id > ?")
		args = append(args, lq.AfterID)
	}
	b.WriteString(" ORDER BY t0.id LIMIT ?")
	limit := -1 // no limit
	if lq.Limit > 0 {
		limit = lq.Limit
	}
	args = append(args, limit)

	rows, err := q.QueryContext(ctx, b.String(), args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var ids []string
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			return nil, err
		}
		ids = append(ids, id)
	}
	return ids, rows.Err()
}

// uniqueTokens returns ts without repeats, in their first order.
func uniqueTokens(ts []store.Token) []store.Token {
	if len(ts) < 2 {
		return ts
	}
	seen := make(map[string]bool, len(ts))
	out := make([]store.Token, 0, len(ts))
	for _, t := range ts {
		if !seen[string(t)] {
			seen[string(t)] = true
			out = append(out, t)
		}
	}
	return out
}
