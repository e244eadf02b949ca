package search

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/ehrvault/ehrvault/internal/access"
	"github.com/ehrvault/ehrvault/internal/fhir"
	"github.com/ehrvault/ehrvault/internal/fhirpath"
	"github.com/ehrvault/ehrvault/internal/keyring"
	"github.com/ehrvault/ehrvault/internal/records"
	"github.com/ehrvault/ehrvault/internal/store"
)

// Engine carries out FHIR searches over the blind index: it parses a
// query, compiles it into store conditions (running the searches that
// chains and _has need first), lets the store find and order the rows with
// the caller's restriction inside the query, opens the rows it returns,
// and adds what _include and _revinclude ask for. It is safe for
// concurrent use.
type Engine struct {
	ix    *Indexer
	rec   *records.Service
	st    store.Searcher
	pages *keyring.Sealer
	inner innerCache
}

// innerCache remembers, for a short while, the rows that the inner search
// of a chain or _has resolved to, so that the pages of one search do that
// work once. Entries are per restriction (Scope.Fingerprint) and hold row
// ids only.
type innerCache struct {
	mu sync.Mutex
	m  map[string]innerEntry
}

type innerEntry struct {
	rows []string
	at   time.Time
}

const (
	innerTTL = 30 * time.Second
	innerMax = 64
)

func (c *innerCache) get(key string) ([]string, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.m[key]
	if !ok || time.Since(e.at) > innerTTL {
		return nil, false
	}
	return e.rows, true
}

func (c *innerCache) put(key string, rows []string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.m == nil || len(c.m) >= innerMax {
		c.m = map[string]innerEntry{} // simple: forget everything
	}
	c.m[key] = innerEntry{rows: rows, at: time.Now()}
}

// NewEngine returns an Engine. pages seals page cursors
// (keyring.PurposeSearchPage).
func NewEngine(ix *Indexer, rec *records.Service, st store.Searcher, pages *keyring.Sealer) *Engine {
	return &Engine{ix: ix, rec: rec, st: st, pages: pages}
}

// Limits of the work one search may do.
const (
	// DefaultCount and MaxCount bound a page.
	DefaultCount = 50
	MaxCount     = 1000
	// maxChainRows is how many resources the inner search of a chain or
	// _has may find; more is a 400 that asks to narrow it.
	maxChainRows = 10000
	// maxIncluded bounds the resources _include and _revinclude add to a
	// page.
	maxIncluded = 1000
	// maxScan bounds the resources one page (or one count) opens to check
	// a condition the index answers only in part.
	maxScan = 20000
)

// Request is one search.
type Request struct {
	Type   string
	Params url.Values
	// Compartment, if set, is the id of the patient whose compartment
	// the search is in (Patient/{id}/{Type}).
	Compartment string
	// Restrict is the caller's restriction; nil sees everything.
	Restrict *access.Restriction
	// Strict refuses unknown parameters (Prefer: handling=strict).
	Strict bool
	// Require holds conditions the caller's grant adds to the query
	// (SMART granular scopes such as category=laboratory), ANDed into
	// every page, including pages reached through a cursor made for
	// someone else.
	Require url.Values
}

// Result is one page of a search.
type Result struct {
	Matches  []*records.Resource
	Included []*records.Resource
	// Total is the number of matches of the whole search, or -1 when it
	// was not asked for (_total) and not counted.
	Total int64
	// CountOnly: the request asked for the count alone (_summary=count,
	// _count=0); Matches is empty.
	CountOnly bool
	// Next is the cursor of the next page ("" on the last): the value of
	// _page, which stands for the whole query.
	Next string
	// Self holds the parameters the search obeyed.
	Self url.Values
	// Ignored lists parameters a lenient search left out.
	Ignored []Ignored
	// Warnings are issues for an OperationOutcome in the Bundle (a page
	// whose includes were cut short).
	Warnings []fhir.Issue
}

// qerr turns a parse or compile error into the records error the API
// answers with 400, naming the parameter.
func qerr(err error) error {
	var qe *QueryError
	if errors.As(err, &qe) {
		return records.NewError(records.Invalid, qe.Param, "%s", qe.Err.Error())
	}
	return err
}

// plan is a query compiled for the store.
type plan struct {
	q        *Query
	sq       store.SearchQuery
	residual []*Clause // to check on each opened resource
	empty    bool      // matches nothing, known without asking the store
	sc       *records.Scope
}

// Search carries out r.
func (e *Engine) Search(ctx context.Context, r Request) (*Result, error) {
	var after *store.Hit
	params, strict := r.Params, r.Strict
	if r.Params.Has("_page") {
		st, err := e.openCursor(r.Params)
		if err != nil {
			return nil, err
		}
		if st.Type != r.Type || st.Compartment != r.Compartment || st.Everything {
			return nil, records.NewError(records.Invalid, "_page", "the page cursor belongs to another search; start again from the first page")
		}
		if params, err = url.ParseQuery(st.Query); err != nil {
			return nil, records.NewError(records.Invalid, "_page", "the page cursor is invalid; start again from the first page")
		}
		strict, after = st.Strict, st.After
	}
	if len(r.Require) > 0 {
		merged := url.Values{}
		for k, v := range params {
			merged[k] = append([]string(nil), v...)
		}
		for k, v := range r.Require {
			merged[k] = append(merged[k], v...)
		}
		params = merged
	}
	q, err := e.ix.Parse(r.Type, params, strict)
	if err != nil {
		return nil, qerr(err)
	}
	if r.Compartment != "" && !fhir.ValidID(r.Compartment) {
		return nil, records.NewError(records.NotFound, "", "no such patient")
	}
	sc, err := e.rec.Scope(ctx, r.Restrict)
	if err != nil {
		return nil, err
	}
	pl, err := e.compile(ctx, q, sc, r.Compartment)
	if err != nil {
		return nil, err
	}
	res := &Result{Total: -1, Self: q.Used, Ignored: q.Ignored}
	if q.Summary == "count" || q.Count == 0 {
		res.CountOnly = true
		if res.Total, err = e.count(ctx, pl); err != nil {
			return nil, err
		}
		return res, nil
	}
	count := pageSize(q.Count)
	matches, last, more, err := e.page(ctx, pl, after, count)
	if err != nil {
		return nil, err
	}
	res.Matches = matches
	if more {
		res.Next = e.sealCursor(cursorState{Type: r.Type, Compartment: r.Compartment, Query: q.Used.Encode(), Strict: strict, After: last})
	}
	if q.Total == "accurate" || q.Total == "estimate" {
		if res.Total, err = e.count(ctx, pl); err != nil {
			return nil, err
		}
	}
	if res.Included, res.Warnings, err = e.includes(ctx, q, sc, res.Matches); err != nil {
		return nil, err
	}
	if err := shape(q, res.Matches); err != nil {
		return nil, err
	}
	return res, nil
}

func pageSize(n int) int {
	switch {
	case n < 0:
		return DefaultCount
	case n > MaxCount:
		return MaxCount
	}
	return n
}

// compile turns q into a plan: each clause a store condition, chains and
// _has resolved by searches of their own (under the same restriction).
func (e *Engine) compile(ctx context.Context, q *Query, sc *records.Scope, compartment string) (*plan, error) {
	pl := &plan{q: q, sc: sc, sq: store.SearchQuery{Type: q.Type, Keys: sc.Keys(), Labels: sc.Labels()}}
	h := e.ix.pool.Get().(*hasher)
	defer e.ix.pool.Put(h)
	if compartment != "" {
		c, ok := e.compartmentCond(h, q.Type, compartment)
		if !ok {
			return nil, records.NewError(records.Invalid, "", "%s is not in the patient compartment; search it directly", q.Type)
		}
		pl.sq.Where = append(pl.sq.Where, c)
	}
	for _, c := range q.Clauses {
		cond, residual, err := e.compileClause(ctx, h, sc, q.Type, c)
		if err != nil {
			return nil, err
		}
		if !cond.Not && len(cond.Tokens) == 0 && len(cond.Values) == 0 && len(cond.IDs) == 0 {
			pl.empty = true
		}
		pl.sq.Where = append(pl.sq.Where, cond)
		if residual {
			pl.residual = append(pl.residual, c)
		}
	}
	for _, k := range q.Sort {
		switch {
		case k.param == nil:
			pl.sq.Order = append(pl.sq.Order, store.Order{By: "updated", Desc: k.Desc})
		case k.param.kind == kindDate:
			pl.sq.Order = append(pl.sq.Order, store.Order{By: "value", Key: h.key(k.param.prefix, keyDate), Desc: k.Desc})
		case k.param.kind == kindNumber:
			pl.sq.Order = append(pl.sq.Order, store.Order{By: "value", Key: h.key(k.param.prefix, keyNumber), Desc: k.Desc})
		case k.param.kind == kindQuantity:
			pl.sq.Order = append(pl.sq.Order, store.Order{By: "value", Key: h.key(k.param.prefix, keyQuantity), Desc: k.Desc})
		}
	}
	return pl, nil
}

// compileClause compiles one clause, running the inner searches of a
// chain or _has.
func (e *Engine) compileClause(ctx context.Context, h *hasher, sc *records.Scope, typ string, c *Clause) (store.Cond, bool, error) {
	key := typ + "\x00" + c.Name + "\x00" + c.raw + "\x00" + sc.Fingerprint()
	switch {
	case c.Has != nil:
		rows, ok := e.inner.get(key)
		if !ok {
			var err error
			if rows, err = e.hasRows(ctx, sc, typ, c); err != nil {
				return store.Cond{}, false, err
			}
			e.inner.put(key, rows)
		}
		return store.Cond{IDs: rows}, false, nil
	case len(c.Chains) > 0:
		rows, ok := e.inner.get(key)
		if !ok {
			for i, inner := range c.Chains {
				r, err := e.innerRows(ctx, sc, c.Targets[i], inner, c.Name)
				if err != nil {
					return store.Cond{}, false, err
				}
				rows = append(rows, r...)
			}
			e.inner.put(key, rows)
		}
		var cond store.Cond
		for _, row := range rows {
			cond.Tokens = append(cond.Tokens, rowToken(h, c.param, row))
		}
		return cond, false, nil
	}
	cond, residual, err := compileLocal(h, c)
	if err != nil {
		return cond, false, qerr(err)
	}
	return cond, residual, nil
}

// innerRows returns the rows of typ that the clause c selects, for the
// chain or _has named name.
func (e *Engine) innerRows(ctx context.Context, sc *records.Scope, typ string, c *Clause, name string) ([]string, error) {
	q := &Query{Type: typ, Clauses: []*Clause{c}, Count: -1}
	pl, err := e.compile(ctx, q, sc, "")
	if err != nil {
		return nil, err
	}
	if pl.empty {
		return nil, nil
	}
	if len(pl.residual) == 0 {
		pl.sq.Limit = maxChainRows + 1
		hits, err := e.st.Search(ctx, pl.sq)
		if err != nil {
			return nil, e.storeErr(err)
		}
		if len(hits) > maxChainRows {
			return nil, tooBroad(name)
		}
		rows := make([]string, len(hits))
		for i, hit := range hits {
			rows[i] = hit.ID
		}
		return rows, nil
	}
	matches, _, more, err := e.page(ctx, pl, nil, maxChainRows)
	if err != nil {
		return nil, err
	}
	if more {
		return nil, tooBroad(name)
	}
	rows := make([]string, len(matches))
	for i, m := range matches {
		rows[i] = e.rec.RowID(m.Type, m.ID)
	}
	return rows, nil
}

func tooBroad(name string) error {
	return records.NewError(records.Invalid, name, "the chained search matches more than %d resources; narrow it", maxChainRows)
}

// hasRows resolves _has:Type:param:…: the rows of the resources that
// the matching resources of Type point to by param.
func (e *Engine) hasRows(ctx context.Context, sc *records.Scope, outer string, c *Clause) ([]string, error) {
	hs := c.Has
	q := &Query{Type: hs.Type, Clauses: []*Clause{hs.Inner}, Count: -1}
	pl, err := e.compile(ctx, q, sc, "")
	if err != nil {
		return nil, err
	}
	if pl.empty {
		return nil, nil
	}
	matches, _, more, err := e.page(ctx, pl, nil, maxChainRows)
	if err != nil {
		return nil, err
	}
	if more {
		return nil, tooBroad(c.Name)
	}
	ev := e.ix.evals.Get().(*fhirpath.Evaluator)
	defer func() { ev.Reset(); e.ix.evals.Put(ev) }()
	seen := map[string]bool{}
	var rows []string
	for _, m := range matches {
		v, err := fhir.Parse(m.JSON, 0)
		if err != nil {
			continue
		}
		nodes, err := ev.Eval(hs.param.expr, &v)
		if err != nil {
			continue
		}
		for _, n := range nodes {
			typ, id, ok := relativeRef(n)
			if !ok || typ != outer {
				continue
			}
			row := e.rec.RowID(typ, id)
			if !seen[row] {
				seen[row] = true
				rows = append(rows, row)
			}
		}
		ev.Reset()
	}
	return rows, nil
}

// relativeRef returns the target of a relative literal reference.
func relativeRef(n fhirpath.Node) (typ, id string, ok bool) {
	v := n.Value
	if v == nil || v.Kind != fhir.Object {
		return "", "", false
	}
	ref := v.Str("reference")
	if ref == "" || ref[0] == '#' || containsScheme(ref) {
		return "", "", false
	}
	return fhirpath.ReferenceTarget(ref)
}

func containsScheme(s string) bool {
	for i := 0; i+2 < len(s); i++ {
		if s[i] == ':' && s[i+1] == '/' && s[i+2] == '/' {
			return true
		}
	}
	return false
}

// compartmentCond is the condition that a resource of typ is in the
// compartment of patient id: one of its compartment parameters points to
// the patient (or, for a Patient, it is the patient).
func (e *Engine) compartmentCond(h *hasher, typ, id string) (store.Cond, bool) {
	row := e.rec.RowID("Patient", id)
	var c store.Cond
	if typ == "Patient" {
		c.IDs = []string{row}
	}
	for _, cd := range patientCompartment {
		if cd.typ != typ {
			continue
		}
		tt := e.ix.tables[typ]
		for _, code := range cd.params {
			if p := tt.byCode[code]; p != nil {
				c.Tokens = append(c.Tokens, rowToken(h, p, row))
			}
		}
	}
	return c, len(c.Tokens) > 0 || len(c.IDs) > 0
}

// compartmentTypes lists the types in the patient compartment, Patient
// first, in the order of the CompartmentDefinition.
// CompartmentTypes lists the resource types of the patient compartment:
// the types $everything may return.
func CompartmentTypes() []string { return compartmentTypes() }

func compartmentTypes() []string {
	out := []string{"Patient"}
	for _, cd := range patientCompartment {
		if cd.typ != "Patient" && len(cd.params) > 0 {
			out = append(out, cd.typ)
		}
	}
	return out
}

// page returns up to count matches of pl after the position after, the
// position of the last, and whether more may follow.
func (e *Engine) page(ctx context.Context, pl *plan, after *store.Hit, count int) ([]*records.Resource, *store.Hit, bool, error) {
	if pl.empty {
		return nil, nil, false, nil
	}
	sq := pl.sq
	sq.After = after
	if len(pl.residual) == 0 {
		sq.Limit = count + 1
		hits, err := e.st.Search(ctx, sq)
		if err != nil {
			return nil, nil, false, e.storeErr(err)
		}
		more := len(hits) > count
		if more {
			hits = hits[:count]
		}
		res, err := e.open(ctx, pl, hits)
		if err != nil {
			return nil, nil, false, err
		}
		var last *store.Hit
		if len(hits) > 0 {
			last = &hits[len(hits)-1]
		}
		return res, last, more, nil
	}
	// Some condition needs a look at each resource: read in batches until
	// the page is full and one more match shows that another page follows,
	// or the candidates end, or the page has looked at maxScan of them (a
	// page may then be short, and the next one goes on from there).
	var out []*records.Resource
	var last *store.Hit
	scanned := 0
	ev := e.ix.evals.Get().(*fhirpath.Evaluator)
	defer func() { ev.Reset(); e.ix.evals.Put(ev) }()
	for {
		sq.Limit = min(max(2*(count+1), 64), 1000)
		hits, err := e.st.Search(ctx, sq)
		if err != nil {
			return nil, nil, false, e.storeErr(err)
		}
		res, err := e.openAll(ctx, pl, hits)
		if err != nil {
			return nil, nil, false, err
		}
		for i, r := range res {
			if r != nil && checkResidual(ev, pl.residual, r) {
				if len(out) == count {
					return out, last, true, nil
				}
				out = append(out, r)
				last = &hits[i]
			}
			if scanned++; scanned >= maxScan {
				return out, &hits[i], true, nil
			}
		}
		if len(hits) < sq.Limit {
			return out, last, false, nil
		}
		sq.After = &hits[len(hits)-1]
	}
}

// checkResidual checks an opened resource against the residual clauses.
func checkResidual(ev *fhirpath.Evaluator, cs []*Clause, r *records.Resource) bool {
	v, err := fhir.Parse(r.JSON, 0)
	if err != nil {
		return false
	}
	for _, c := range cs {
		ok := matchClause(ev, c, &v)
		ev.Reset()
		if !ok {
			return false
		}
	}
	return true
}

// open opens the rows of hits, leaving out any that is gone since.
func (e *Engine) open(ctx context.Context, pl *plan, hits []store.Hit) ([]*records.Resource, error) {
	rows := make([]string, len(hits))
	for i, h := range hits {
		rows[i] = h.ID
	}
	return e.rec.OpenRows(ctx, pl.q.Type, rows, pl.sc)
}

// openAll opens the rows of hits in their places: nil where one is gone.
func (e *Engine) openAll(ctx context.Context, pl *plan, hits []store.Hit) ([]*records.Resource, error) {
	out := make([]*records.Resource, len(hits))
	for i, h := range hits {
		res, err := e.rec.OpenRows(ctx, pl.q.Type, []string{h.ID}, pl.sc)
		if err != nil {
			return nil, err
		}
		if len(res) == 1 {
			out[i] = res[0]
		}
	}
	return out, nil
}

// count counts the matches of pl.
func (e *Engine) count(ctx context.Context, pl *plan) (int64, error) {
	if pl.empty {
		return 0, nil
	}
	if len(pl.residual) == 0 {
		n, err := e.st.Count(ctx, pl.sq)
		return n, e.storeErr(err)
	}
	var n int64
	scanned := 0
	sq := pl.sq
	sq.Order = nil
	ev := e.ix.evals.Get().(*fhirpath.Evaluator)
	defer func() { ev.Reset(); e.ix.evals.Put(ev) }()
	for {
		sq.Limit = 1000
		hits, err := e.st.Search(ctx, sq)
		if err != nil {
			return 0, e.storeErr(err)
		}
		res, err := e.openAll(ctx, pl, hits)
		if err != nil {
			return 0, err
		}
		for _, r := range res {
			if r != nil && checkResidual(ev, pl.residual, r) {
				n++
			}
		}
		scanned += len(hits)
		if len(hits) < sq.Limit {
			return n, nil
		}
		if scanned >= 5*maxScan {
			return 0, records.NewError(records.Invalid, pl.residual[0].Name, "counting this search would open more than %d resources to check this parameter; narrow the search", 5*maxScan)
		}
		sq.After = &hits[len(hits)-1]
	}
}

func (e *Engine) storeErr(err error) error {
	if err == nil {
		return nil
	}
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return records.NewError(records.Unavailable, "", "the search was cancelled or timed out")
	}
	var re *records.Error
	if errors.As(err, &re) {
		return err
	}
	return fmt.Errorf("search: %w", err)
}

// Everything returns a page of Patient/{id}/$everything: the patient,
// every resource in its compartment, type by type, and the resources they
// refer to that belong to no patient (practitioners, organizations,
// medications), as includes. params may hold _count, _type and _page.
func (e *Engine) Everything(ctx context.Context, id string, params url.Values, restrict *access.Restriction) (*Result, error) {
	var st cursorState
	if params.Has("_page") {
		s, err := e.openCursor(params)
		if err != nil {
			return nil, err
		}
		if !s.Everything || s.Compartment != id {
			return nil, records.NewError(records.Invalid, "_page", "the page cursor belongs to another search; start again from the first page")
		}
		st = *s
		if params, err = url.ParseQuery(st.Query); err != nil {
			return nil, records.NewError(records.Invalid, "_page", "the page cursor is invalid; start again from the first page")
		}
	}
	count := -1
	types := compartmentTypes()
	used := url.Values{}
	since := ""
	for name, vals := range params {
		switch name {
		case "_since":
			if len(vals) != 1 {
				return nil, records.NewError(records.Invalid, name, "%s", ErrRepeated.Error())
			}
			if _, _, prec, ok := searchDate(vals[0]); !ok || prec != 0 && prec != 10 {
				return nil, records.NewError(records.Invalid, name, "_since is an instant such as 2024-01-31T12:00:00Z, or a date")
			}
			since = vals[0]
			used[name] = vals
		case "_count":
			n, err := parseCount(vals)
			if err != nil {
				return nil, qerr(err)
			}
			count = n
			used[name] = vals
		case "_type":
			var keep []string
			for _, v := range vals {
				for _, t := range splitComma(v) {
					if !slices.Contains(types, t) {
						return nil, records.NewError(records.Invalid, "_type", "_type lists resource types of the patient compartment, separated by commas")
					}
					keep = append(keep, t)
				}
			}
			types = slices.DeleteFunc(types, func(t string) bool { return !slices.Contains(keep, t) })
			used[name] = vals
		case "_format", "_pretty":
		default:
			return nil, records.NewError(records.Invalid, name, "$everything takes _count, _type and _since")
		}
	}
	if !fhir.ValidID(id) {
		return nil, records.NewError(records.NotFound, "", "no such patient")
	}
	sc, err := e.rec.Scope(ctx, restrict)
	if err != nil {
		return nil, err
	}
	if p, err := e.rec.ReadIn(ctx, "Patient", id, sc); err != nil {
		return nil, err
	} else if p == nil {
		return nil, records.NewError(records.NotFound, "", "no such patient")
	}
	size := pageSize(count)
	if size == 0 {
		size = 1
	}
	res := &Result{Total: -1, Self: used}
	after := st.After
	for ti := st.TypeIndex; ti < len(types); ti++ {
		q := &Query{Type: types[ti], Count: -1, Used: url.Values{}}
		if since != "" {
			var err error
			if q, err = e.ix.Parse(types[ti], url.Values{"_lastUpdated": {"ge" + since}}, true); err != nil {
				return nil, qerr(err)
			}
		}
		pl, err := e.compile(ctx, q, sc, id)
		if err != nil {
			return nil, err
		}
		matches, last, more, err := e.page(ctx, pl, after, size-len(res.Matches))
		if err != nil {
			return nil, err
		}
		res.Matches = append(res.Matches, matches...)
		after = nil
		if len(res.Matches) == size {
			if more {
				res.Next = e.sealCursor(cursorState{Everything: true, Compartment: id, Query: used.Encode(), TypeIndex: ti, After: last})
			} else if ti+1 < len(types) {
				res.Next = e.sealCursor(cursorState{Everything: true, Compartment: id, Query: used.Encode(), TypeIndex: ti + 1})
			}
			break
		}
	}
	// What the page refers to outside every compartment.
	included, warnings, err := e.includeShared(ctx, sc, res.Matches)
	if err != nil {
		return nil, err
	}
	res.Included, res.Warnings = included, warnings
	return res, nil
}

func splitComma(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}
