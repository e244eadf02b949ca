package sqlite

import (
	"context"
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"

	"github.com/ehrvault/ehrvault/internal/store"
)

var _ store.Searcher = (*DB)(nil)

// Search implements store.Searcher.
func (db *DB) Search(ctx context.Context, q store.SearchQuery) ([]store.Hit, error) {
	if db.closed.Load() {
		return nil, store.ErrClosed
	}
	sqlText, args, nsort, err := db.buildSearch(ctx, q, false)
	if err != nil || sqlText == "" {
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
	sqlText, args, _, err := db.buildSearch(ctx, q, true)
	if err != nil || sqlText == "" {
		return 0, err
	}
	var n int64
	if err := db.r.QueryRowContext(ctx, sqlText, args...).Scan(&n); err != nil {
		return 0, db.fail("count", err)
	}
	return n, nil
}

// sqlArgs collects a statement's arguments as it is written.
type sqlArgs []any

func (a *sqlArgs) add(v any) string { *a = append(*a, v); return "?" }

// buildSearch compiles a SearchQuery into one SELECT: nothing is filtered
// after the query, the restriction included. It returns "" for a query
// that plainly selects nothing.
//
// The plan: SQLite keeps no statistics of blind-index tokens, and its
// guesses about IN subqueries are poor, so the statement fixes the plan.
// One positive condition drives it: the rows it names (a range scan of
// tokens or vals by their primary keys) are joined to heads, and every
// other condition is a correlated EXISTS, a point lookup per row. The
// driver is the condition that names fewest rows, counted up to the probe
// limit; the caller's data keys compete too (heads_key). Without any, the
// type's current rows are scanned through heads_key, which holds no
// token lists and so reads a tenth of the pages heads does.
func (db *DB) buildSearch(ctx context.Context, q store.SearchQuery, count bool) (string, []any, int, error) {
	if q.Type == "" {
		return "", nil, 0, errors.New("search: a query needs a type")
	}
	if err := checkQuery(q); err != nil {
		return "", nil, 0, err
	}
	for _, c := range q.Where {
		if !c.Not && len(c.Tokens) == 0 && len(c.Values) == 0 && len(c.IDs) == 0 {
			return "", nil, 0, nil // a condition that holds for nothing
		}
	}
	if q.Keys != nil && len(q.Keys) == 0 {
		return "", nil, 0, nil
	}

	// Counting the rows of one token is counting its resources: tokens
	// exist only for current resources.
	if count && len(q.Where) == 1 && q.Keys == nil && q.Labels == nil {
		if c := q.Where[0]; !c.Not && len(c.Tokens) == 1 && len(c.Values) == 0 && len(c.IDs) == 0 {
			return "SELECT count(*) FROM tokens WHERE type = ? AND token = ?", []any{q.Type, []byte(c.Tokens[0])}, 0, nil
		}
	}

	driver, err := db.chooseDriver(ctx, q)
	if err != nil {
		return "", nil, 0, err
	}

	var args sqlArgs
	sortExprs := make([]string, len(q.Order))
	for i, o := range q.Order {
		switch o.By {
		case "updated":
			sortExprs[i] = "(SELECT v.updated FROM versions v WHERE v.seq = h.seq)"
		case "value":
			// Keys are keyed hashes the caller made, never client text;
			// as literals they keep the statement's arguments in order.
			if o.Desc {
				sortExprs[i] = fmt.Sprintf("coalesce((SELECT max(s.hi) FROM vals s WHERE s.type = h.type AND s.key = x'%x' AND s.id = h.id), -9e999)", []byte(o.Key))
			} else {
				sortExprs[i] = fmt.Sprintf("coalesce((SELECT min(s.lo) FROM vals s WHERE s.type = h.type AND s.key = x'%x' AND s.id = h.id), 9e999)", []byte(o.Key))
			}
		}
	}

	var b strings.Builder
	if count {
		b.WriteString("SELECT count(*)")
	} else {
		b.WriteString("SELECT h.id")
		for _, e := range sortExprs {
			b.WriteString(", " + e)
		}
	}
	// In row order (no sort keys), a continuation is a seek: into the
	// driver's rows, which its primary key keeps in row order, or into
	// heads. A driver of one token then also gives the rows in order,
	// so that a page reads no more rows than it returns.
	afterID := ""
	if !count && len(q.Order) == 0 && q.After != nil {
		afterID = q.After.ID
	}
	orderBy := "h.id"
	switch {
	case driver >= 0:
		c := q.Where[driver]
		b.WriteString(" FROM ")
		writeDriver(&b, &args, q.Type, c, afterID)
		b.WriteString(" d CROSS JOIN heads h WHERE h.type = " + args.add(q.Type) + " AND h.id = d.id AND h.deleted = 0")
		if len(c.Tokens) == 1 && len(c.Values) == 0 && len(c.IDs) == 0 {
			orderBy = "d.id"
		}
	case count || q.Keys != nil:
		b.WriteString(" FROM heads h INDEXED BY heads_key WHERE h.type = " + args.add(q.Type) + " AND h.deleted = 0")
	default:
		b.WriteString(" FROM heads h WHERE h.type = " + args.add(q.Type) + " AND h.deleted = 0")
	}
	if afterID != "" {
		b.WriteString(" AND h.id > " + args.add(afterID))
	}
	if q.Keys != nil {
		b.WriteString(" AND " + keysIn("h.key_id", q.Keys, &args))
	}
	for i, c := range q.Where {
		if i == driver {
			continue
		}
		b.WriteString(" AND ")
		writeCond(&b, &args, q.Type, c)
	}
	if q.Labels != nil {
		b.WriteString(" AND " + labelsWithin("h.seq", q.Labels, &args))
	}
	if !count && q.After != nil && len(q.Order) > 0 {
		b.WriteString(" AND ")
		writeAfter(&b, &args, sortExprs, q.Order, q.After)
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
		b.WriteString(orderBy)
		if q.Limit > 0 {
			b.WriteString(" LIMIT " + args.add(q.Limit))
		}
	}
	return b.String(), args, len(sortExprs), nil
}

// checkQuery refuses what no statement can mean.
func checkQuery(q store.SearchQuery) error {
	for _, c := range q.Where {
		for _, r := range c.Values {
			if len(r.Key) == 0 {
				return errors.New("search: a value range needs a key")
			}
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
			}
		}
	}
	for _, o := range q.Order {
		switch {
		case o.By == "value" && len(o.Key) == 0:
			return errors.New("search: a value order needs a key")
		case o.By != "value" && o.By != "updated":
			return fmt.Errorf("search: unknown order %q", o.By)
		}
	}
	if q.After != nil && len(q.After.Sort) != len(q.Order) {
		return errors.New("search: the continuation does not fit the order")
	}
	return nil
}

// chooseDriver returns the index of the condition that drives q's plan, or
// -1 to scan the type's heads (through the caller's data keys, if any).
//
// Candidates are sized cheapest first (lists of ids need no probe, then
// conditions of few tokens, then value ranges), and each probe counts only
// up to the best size so far: a probe past it could not win. A candidate
// of smallDriver rows or fewer ends the search for a better one.
func (db *DB) chooseDriver(ctx context.Context, q store.SearchQuery) (int, error) {
	var cands []int
	for i, c := range q.Where {
		if !c.Not {
			cands = append(cands, i)
		}
	}
	switch {
	case len(cands) == 0:
		return -1, nil
	case len(cands) == 1 && q.Keys == nil:
		return cands[0], nil // nothing to compare it with
	}
	cost := func(c store.Cond) int {
		switch {
		case len(c.Tokens) == 0 && len(c.Values) == 0:
			return 0
		case len(c.Values) == 0:
			return len(c.Tokens)
		}
		return 1000 + len(c.Tokens) + len(c.Values)
	}
	slices.SortStableFunc(cands, func(a, b int) int { return cost(q.Where[a]) - cost(q.Where[b]) })
	best, bestN := -1, db.probe+1
	for _, i := range cands {
		c := q.Where[i]
		n := len(c.IDs)
		if len(c.Tokens) > 0 || len(c.Values) > 0 {
			var b strings.Builder
			var args sqlArgs
			writeDriver(&b, &args, q.Type, c, "")
			var err error
			if n, err = db.probeCount(ctx, "SELECT 1 FROM "+b.String(), args, bestN); err != nil {
				return 0, err
			}
		}
		if n < bestN {
			best, bestN = i, n
		}
		if bestN <= smallDriver {
			return best, nil
		}
	}
	if q.Keys != nil {
		// A condition beats the data keys on a tie: its rows come in row
		// order, so an unsorted page seeks and stops where it ends.
		var args sqlArgs
		n, err := db.probeCount(ctx, "SELECT 1 FROM heads INDEXED BY heads_key WHERE type = "+args.add(q.Type)+" AND deleted = 0 AND "+keysIn("key_id", q.Keys, &args), args, bestN)
		if err != nil {
			return 0, err
		}
		if n < bestN {
			return -1, nil
		}
	}
	if best < 0 {
		// Every condition is past the probe limit: still, reading one is
		// less than reading the whole type.
		return cands[0], nil
	}
	return best, nil
}

// smallDriver is a driver size that no other candidate is probed to beat.
const smallDriver = 256

// probeCount counts the rows of a subquery, up to limit.
func (db *DB) probeCount(ctx context.Context, sub string, args sqlArgs, limit int) (int, error) {
	var n int
	err := db.r.QueryRowContext(ctx, "SELECT count(*) FROM ("+sub+" LIMIT "+args.add(limit)+")", args...).Scan(&n)
	if err != nil {
		return 0, db.fail("search plan", err)
	}
	return n, nil
}

// writeDriver writes a positive condition as a subquery of distinct row
// ids, after afterID if it is set: "(SELECT … )".
func writeDriver(b *strings.Builder, args *sqlArgs, typ string, c store.Cond, afterID string) {
	after := func() string {
		if afterID == "" {
			return ""
		}
		return " AND id > " + args.add(afterID)
	}
	var parts []string
	if len(c.Tokens) > 0 {
		parts = append(parts, "SELECT id FROM tokens WHERE type = "+args.add(typ)+" AND token "+tokensIn(c.Tokens, args)+after())
	}
	for _, r := range c.Values {
		var p strings.Builder
		p.WriteString("SELECT id FROM vals WHERE type = " + args.add(typ) + " AND key = " + args.add([]byte(r.Key)))
		writeBounds(&p, args, "", r.Bounds)
		p.WriteString(after())
		parts = append(parts, p.String())
	}
	if len(c.IDs) > 0 {
		parts = append(parts, "SELECT id FROM heads WHERE type = "+args.add(typ)+" AND id "+idsIn(c.IDs, args)+after())
	}
	// One token or a list of ids names each row once; anything else may
	// name a row twice (a resource with two of the tokens, two values in
	// the range), and UNION makes the rows distinct.
	b.WriteString("(")
	if len(parts) == 1 && (len(c.Tokens) == 1 || len(c.IDs) > 0) {
		b.WriteString(parts[0])
	} else if len(parts) == 1 {
		b.WriteString("SELECT DISTINCT id FROM (" + parts[0] + ")")
	} else {
		b.WriteString(strings.Join(parts, " UNION "))
	}
	b.WriteString(")")
}

// writeCond writes one condition on the head h: an OR of point lookups,
// negated with Not.
func writeCond(b *strings.Builder, args *sqlArgs, typ string, c store.Cond) {
	var parts []string
	if len(c.Tokens) > 0 {
		parts = append(parts, "EXISTS (SELECT 1 FROM tokens t WHERE t.type = "+args.add(typ)+" AND t.token "+tokensIn(c.Tokens, args)+" AND t.id = h.id)")
	}
	for _, r := range c.Values {
		var p strings.Builder
		p.WriteString("EXISTS (SELECT 1 FROM vals s WHERE s.type = " + args.add(typ) + " AND s.key = " + args.add([]byte(r.Key)) + " AND s.id = h.id")
		writeBounds(&p, args, "s.", r.Bounds)
		p.WriteString(")")
		parts = append(parts, p.String())
	}
	if len(c.IDs) > 0 {
		parts = append(parts, "h.id "+idsIn(c.IDs, args))
	}
	expr := "0"
	if len(parts) > 0 {
		expr = "(" + strings.Join(parts, " OR ") + ")"
	}
	if c.Not {
		expr = "NOT " + expr
	}
	b.WriteString(expr)
}

// writeBounds writes " AND lo >= ?"… for each bound (checked by checkQuery).
func writeBounds(b *strings.Builder, args *sqlArgs, prefix string, bounds []store.Bound) {
	for _, bd := range bounds {
		b.WriteString(" AND " + prefix + bd.End + " " + bd.Op + " " + args.add(bd.V))
	}
}

func tokensIn(ts []store.Token, args *sqlArgs) string {
	if len(ts) == 1 {
		return "= " + args.add([]byte(ts[0]))
	}
	var b strings.Builder
	b.WriteString("IN (")
	for i, t := range ts {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString(args.add([]byte(t)))
	}
	b.WriteString(")")
	return b.String()
}

func idsIn(ids []string, args *sqlArgs) string {
	var b strings.Builder
	b.WriteString("IN (")
	for i, id := range ids {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString(args.add(id))
	}
	b.WriteString(")")
	return b.String()
}

// keysIn is the condition that col is one of keys (which is not empty).
func keysIn(col string, keys []int64, args *sqlArgs) string {
	if len(keys) == 0 {
		return "0"
	}
	var b strings.Builder
	b.WriteString(col + " IN (")
	for i, k := range keys {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString(args.add(k))
	}
	b.WriteString(")")
	return b.String()
}

// labelsWithin is the condition that the version with seq col carries no
// label outside labels.
func labelsWithin(col string, labels []store.Token, args *sqlArgs) string {
	if len(labels) == 0 {
		return "NOT EXISTS (SELECT 1 FROM labels l WHERE l.seq = " + col + ")"
	}
	var b strings.Builder
	b.WriteString("NOT EXISTS (SELECT 1 FROM labels l WHERE l.seq = " + col + " AND l.label NOT IN (")
	for i, l := range labels {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString(args.add([]byte(l)))
	}
	b.WriteString("))")
	return b.String()
}

// writeAfter writes the keyset continuation: the rows that come after the
// hit in the query's order.
func writeAfter(b *strings.Builder, args *sqlArgs, exprs []string, order []store.Order, after *store.Hit) {
	var rec func(i int) string
	rec = func(i int) string {
		if i == len(exprs) {
			return "h.id > " + args.add(after.ID)
		}
		cmp := ">"
		if order[i].Desc {
			cmp = "<"
		}
		v := after.Sort[i]
		return "(" + exprs[i] + " " + cmp + " " + args.add(v) + " OR (" + exprs[i] + " = " + args.add(v) + " AND " + rec(i+1) + "))"
	}
	b.WriteString(rec(0))
}
