package sqlite

import (
	"context"
	"errors"
	"fmt"
	"math"
	"strings"

	"github.com/ehrvault/ehrvault/internal/store"
)

var _ store.Searcher = (*DB)(nil)

// Search implements store.Searcher.
func (db *DB) Search(ctx context.Context, q store.SearchQuery) ([]store.Hit, error) {
	if db.closed.Load() {
		return nil, store.ErrClosed
	}
	sqlText, args, nsort, err := buildSearch(q, false)
	if err != nil {
		return nil, err
	}
	rows, err := db.r.QueryContext(ctx, sqlText, args...)
	if err != nil {
		return nil, db.fail("search", err)
	}
	defer rows.Close()
	var hits []store.Hit
	dest := make([]any, 1+nsort)
	for rows.Next() {
		h := store.Hit{Sort: make([]float64, nsort)}
		dest[0] = &h.ID
		for i := range h.Sort {
			dest[1+i] = &h.Sort[i]
		}
		if err := rows.Scan(dest...); err != nil {
			return nil, db.fail("search", err)
		}
		if nsort == 0 {
			h.Sort = nil
		}
		hits = append(hits, h)
	}
	return hits, db.fail("search", rows.Err())
}

// Count implements store.Searcher.
func (db *DB) Count(ctx context.Context, q store.SearchQuery) (int64, error) {
	if db.closed.Load() {
		return 0, store.ErrClosed
	}
	sqlText, args, _, err := buildSearch(q, true)
	if err != nil {
		return 0, err
	}
	var n int64
	if err := db.r.QueryRowContext(ctx, sqlText, args...).Scan(&n); err != nil {
		return 0, db.fail("count", err)
	}
	return n, nil
}

// buildSearch compiles a SearchQuery into one SELECT over heads, each
// condition a subquery on tokens or vals (primary-key ranges), the
// restriction a condition on the head's data key, the order and the
// continuation in SQL: nothing is filtered after the query.
func buildSearch(q store.SearchQuery, count bool) (string, []any, int, error) {
	if q.Type == "" {
		return "", nil, 0, errors.New("search: a query needs a type")
	}
	var b strings.Builder
	var args []any
	arg := func(v any) string { args = append(args, v); return "?" }

	// A count of one positive token condition, unrestricted, is a count
	// of that token's rows: tokens exist only for current resources.
	if count && len(q.Where) == 1 && q.Keys == nil {
		if c := q.Where[0]; !c.Not && len(c.Tokens) == 1 && len(c.Values) == 0 && len(c.IDs) == 0 {
			return "SELECT count(*) FROM tokens WHERE type = ? AND token = ?", []any{q.Type, []byte(c.Tokens[0])}, 0, nil
		}
	}

	sortExprs := make([]string, len(q.Order))
	for i, o := range q.Order {
		switch o.By {
		case "updated":
			sortExprs[i] = "(SELECT v.updated FROM versions v WHERE v.seq = h.seq)"
		case "value":
			if len(o.Key) == 0 {
				return "", nil, 0, errors.New("search: a value order needs a key")
			}
			if o.Desc {
				sortExprs[i] = fmt.Sprintf("coalesce((SELECT max(s.hi) FROM vals s WHERE s.type = h.type AND s.key = x'%x' AND s.id = h.id), -9e999)", []byte(o.Key))
			} else {
				sortExprs[i] = fmt.Sprintf("coalesce((SELECT min(s.lo) FROM vals s WHERE s.type = h.type AND s.key = x'%x' AND s.id = h.id), 9e999)", []byte(o.Key))
			}
		default:
			return "", nil, 0, fmt.Errorf("search: unknown order %q", o.By)
		}
	}

	if count {
		b.WriteString("SELECT count(*)")
	} else {
		b.WriteString("SELECT h.id")
		for _, e := range sortExprs {
			b.WriteString(", " + e)
		}
	}
	b.WriteString(" FROM heads h WHERE h.type = " + arg(q.Type) + " AND h.deleted = 0")
	if q.Keys != nil {
		if len(q.Keys) == 0 {
			b.WriteString(" AND 0")
		} else {
			b.WriteString(" AND h.key_id IN (")
			for i, k := range q.Keys {
				if i > 0 {
					b.WriteString(", ")
				}
				b.WriteString(arg(k))
			}
			b.WriteString(")")
		}
	}
	for _, c := range q.Where {
		b.WriteString(" AND ")
		if err := writeCond(&b, arg, q.Type, c); err != nil {
			return "", nil, 0, err
		}
	}
	if !count && q.After != nil {
		if len(q.After.Sort) != len(q.Order) {
			return "", nil, 0, errors.New("search: the continuation does not fit the order")
		}
		b.WriteString(" AND ")
		writeAfter(&b, arg, sortExprs, q.Order, q.After)
	}
	if !count {
		b.WriteString(" ORDER BY ")
		for i, e := range sortExprs {
			b.WriteString(e)
			if q.Order[i].Desc {
				b.WriteString(" DESC")
			}
			b.WriteString(", ")
		}
		b.WriteString("h.id")
		if q.Limit > 0 {
			b.WriteString(" LIMIT " + arg(q.Limit))
		}
	}
	return b.String(), args, len(sortExprs), nil
}

// writeCond writes one condition: an OR of subqueries, negated with Not.
func writeCond(b *strings.Builder, arg func(any) string, typ string, c store.Cond) error {
	var parts []string
	if len(c.Tokens) > 0 {
		var p strings.Builder
		p.WriteString("h.id IN (SELECT id FROM tokens WHERE type = " + arg(typ) + " AND token IN (")
		for i, t := range c.Tokens {
			if i > 0 {
				p.WriteString(", ")
			}
			p.WriteString(arg([]byte(t)))
		}
		p.WriteString("))")
		parts = append(parts, p.String())
	}
	for _, r := range c.Values {
		var p strings.Builder
		p.WriteString("h.id IN (SELECT id FROM vals WHERE type = " + arg(typ) + " AND key = " + arg([]byte(r.Key)))
		for _, bd := range r.Bounds {
			if bd.End != "lo" && bd.End != "hi" {
				return fmt.Errorf("search: unknown end %q", bd.End)
			}
			switch bd.Op {
			case ">=", ">", "<=", "<":
			default:
				return fmt.Errorf("search: unknown comparison %q", bd.Op)
			}
			if math.IsNaN(bd.V) {
				return errors.New("search: a bound is not a number")
			}
			p.WriteString(" AND " + bd.End + " " + bd.Op + " " + arg(bd.V))
		}
		p.WriteString(")")
		parts = append(parts, p.String())
	}
	if len(c.IDs) > 0 {
		var p strings.Builder
		p.WriteString("h.id IN (")
		for i, id := range c.IDs {
			if i > 0 {
				p.WriteString(", ")
			}
			p.WriteString(arg(id))
		}
		p.WriteString(")")
		parts = append(parts, p.String())
	}
	expr := "0"
	if len(parts) > 0 {
		expr = "(" + strings.Join(parts, " OR ") + ")"
	}
	if c.Not {
		expr = "NOT " + expr
	}
	b.WriteString(expr)
	return nil
}

// writeAfter writes the keyset continuation: the rows that come after the
// hit in the query's order.
func writeAfter(b *strings.Builder, arg func(any) string, exprs []string, order []store.Order, after *store.Hit) {
	var rec func(i int) string
	rec = func(i int) string {
		if i == len(exprs) {
			return "h.id > " + arg(after.ID)
		}
		cmp := ">"
		if order[i].Desc {
			cmp = "<"
		}
		v := after.Sort[i]
		return "(" + exprs[i] + " " + cmp + " " + arg(v) + " OR (" + exprs[i] + " = " + arg(v) + " AND " + rec(i+1) + "))"
	}
	b.WriteString(rec(0))
}
