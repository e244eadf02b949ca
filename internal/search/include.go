package search

import (
	"context"
	"slices"

	"github.com/ehrvault/ehrvault/internal/fhir"
	"github.com/ehrvault/ehrvault/internal/fhirpath"
	"github.com/ehrvault/ehrvault/internal/records"
	"github.com/ehrvault/ehrvault/internal/store"
)

// includes returns what q's _include and _revinclude add to a page of
// matches: round one from the matches, then, for the :iterate ones, from
// what the previous round added, until a round adds nothing. Everything
// is read under the caller's restriction: a target it does not admit is
// left out as if it did not exist. More than maxIncluded resources end
// the rounds, with a warning.
func (e *Engine) includes(ctx context.Context, q *Query, sc *records.Scope, matches []*records.Resource) ([]*records.Resource, []fhir.Issue, error) {
	if len(q.Include) == 0 && len(q.RevInclude) == 0 {
		return nil, nil, nil
	}
	seen := map[string]bool{}
	for _, m := range matches {
		seen[m.Type+"/"+m.ID] = true
	}
	var out []*records.Resource
	from := matches
	for round := 0; len(from) > 0; round++ {
		var added []*records.Resource
		add := func(r *records.Resource) bool {
			if k := r.Type + "/" + r.ID; !seen[k] {
				seen[k] = true
				added = append(added, r)
			}
			return len(out)+len(added) < maxIncluded
		}
		full := false
		for _, inc := range q.Include {
			if round > 0 && !inc.Iterate || full {
				continue
			}
			if err := e.forward(ctx, sc, inc, from, add, &full); err != nil {
				return nil, nil, err
			}
		}
		for _, inc := range q.RevInclude {
			if round > 0 && !inc.Iterate || full {
				continue
			}
			if err := e.reverse(ctx, sc, inc, from, add, &full); err != nil {
				return nil, nil, err
			}
		}
		out = append(out, added...)
		if full {
			return out, []fhir.Issue{{Severity: "warning", Code: "too-costly", Message: "the included resources were cut short at the limit of a page; ask for fewer matches per page (_count)"}}, nil
		}
		from = added
	}
	return out, nil, nil
}

// forward adds the targets of inc's references in from. A wildcard (*)
// follows every reference parameter of its source type.
func (e *Engine) forward(ctx context.Context, sc *records.Scope, inc *Include, from []*records.Resource, add func(*records.Resource) bool, full *bool) error {
	ev := e.ix.evals.Get().(*fhirpath.Evaluator)
	defer func() { ev.Reset(); e.ix.evals.Put(ev) }()
	for _, r := range from {
		if r.Type != inc.Source {
			continue
		}
		params := []*param{inc.param}
		if inc.param == nil {
			params = e.refParams(r.Type)
		}
		v, err := fhir.Parse(r.JSON, 0)
		if err != nil {
			continue
		}
		for _, p := range params {
			nodes, err := ev.Eval(p.expr, &v)
			if err != nil {
				continue
			}
			for _, n := range nodes {
				typ, id, ok := relativeRef(n)
				if !ok || inc.Target != "" && typ != inc.Target {
					continue
				}
				t, err := e.rec.ReadIn(ctx, typ, id, sc)
				if err != nil {
					return err
				}
				if t != nil && !add(t) {
					*full = true
					return nil
				}
			}
			ev.Reset()
		}
	}
	return nil
}

// refParams returns the reference parameters of typ.
func (e *Engine) refParams(typ string) []*param {
	var out []*param
	if tt := e.ix.tables[typ]; tt != nil {
		for _, p := range tt.params {
			if p.kind == kindReference {
				out = append(out, p)
			}
		}
	}
	return out
}

// reverse adds the resources of inc.Source whose parameter inc.param
// points to one of from.
func (e *Engine) reverse(ctx context.Context, sc *records.Scope, inc *Include, from []*records.Resource, add func(*records.Resource) bool, full *bool) error {
	h := e.ix.pool.Get().(*hasher)
	defer e.ix.pool.Put(h)
	var tokens []store.Token
	for _, r := range from {
		if t := inc.param.def.target; len(t) > 0 && !slices.Contains(t, r.Type) {
			continue
		}
		if inc.Target != "" && r.Type != inc.Target {
			continue
		}
		tokens = append(tokens, rowToken(h, inc.param, e.rec.RowID(r.Type, r.ID)))
	}
	if len(tokens) == 0 {
		return nil
	}
	for start := 0; start < len(tokens); start += 500 {
		sq := store.SearchQuery{Type: inc.Source, Where: []store.Cond{{Tokens: tokens[start:min(start+500, len(tokens))]}}, Keys: sc.Keys(), Labels: sc.Labels(), Limit: maxIncluded + 1}
		hits, err := e.st.Search(ctx, sq)
		if err != nil {
			return e.storeErr(err)
		}
		rows := make([]string, len(hits))
		for i, hit := range hits {
			rows[i] = hit.ID
		}
		res, err := e.rec.OpenRows(ctx, inc.Source, rows, sc)
		if err != nil {
			return err
		}
		for _, r := range res {
			if !add(r) {
				*full = true
				return nil
			}
		}
	}
	return nil
}

// includeShared adds, for $everything, the resources that the page refers
// to and that belong to no patient: practitioners, organizations,
// medications, locations.
func (e *Engine) includeShared(ctx context.Context, sc *records.Scope, matches []*records.Resource) ([]*records.Resource, []fhir.Issue, error) {
	seen := map[string]bool{}
	for _, m := range matches {
		seen[m.Type+"/"+m.ID] = true
	}
	var out []*records.Resource
	full := false
	add := func(r *records.Resource) bool {
		if k := r.Type + "/" + r.ID; r.Owner == records.OwnerStore && !seen[k] {
			seen[k] = true
			out = append(out, r)
		}
		return len(out) < maxIncluded
	}
	byType := map[string][]*records.Resource{}
	for _, m := range matches {
		byType[m.Type] = append(byType[m.Type], m)
	}
	for typ, rs := range byType {
		if err := e.forward(ctx, sc, &Include{Source: typ}, rs, add, &full); err != nil {
			return nil, nil, err
		}
		if full {
			return out, []fhir.Issue{{Severity: "warning", Code: "too-costly", Message: "the referenced resources were cut short at the limit of a page; ask for fewer resources per page (_count)"}}, nil
		}
	}
	return out, nil, nil
}
