package storetest

import (
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/ehrvault/ehrvault/internal/store"
)

// putIndexed stores v with an index in an Update of its own.
func putIndexed(t *testing.T, s store.Store, v *store.Version, ix *store.Index) {
	t.Helper()
	err := s.Update(context.Background(), func(tx store.Tx) error { return tx.Put(context.Background(), v, ix) })
	if err != nil {
		t.Fatalf("Update(Put(%s)) = %v", name(v), err)
	}
}

func ids(hits []store.Hit) []string {
	out := make([]string, len(hits))
	for i, h := range hits {
		out[i] = h.ID
	}
	return out
}

// testSearch checks Searcher against a model: six Observations with
// tokens, values, data keys and times, and every kind of condition,
// restriction, order and continuation.
func (r *runner) testSearch(t *testing.T) {
	s := r.newStore(t)
	sr, ok := s.(store.Searcher)
	if !ok {
		t.Fatal("the backend does not implement store.Searcher, which search needs")
	}
	ctx := context.Background()
	date := tok("date")
	value := tok("value")
	inf := math.Inf(1)
	type obs struct {
		id     string
		key    int64
		tokens []string
		dates  [][2]float64
		vals   []float64
	}
	all := []obs{
		{"a", 1, []string{"final", "bp"}, [][2]float64{{100, 199}}, []float64{120}},
		{"b", 1, []string{"final", "pulse"}, [][2]float64{{200, 299}}, []float64{60}},
		{"c", 2, []string{"amended", "bp"}, [][2]float64{{150, 250}}, []float64{140, 90}},
		{"d", 2, []string{"final"}, [][2]float64{{300, inf}}, nil},
		{"e", 3, []string{"bp"}, nil, []float64{100}},
		{"f", 3, nil, [][2]float64{{-inf, 120}, {500, 600}}, nil},
	}
	for i, o := range all {
		ix := &store.Index{}
		for _, tk := range o.tokens {
			ix.Tokens = append(ix.Tokens, tok(tk))
		}
		for _, d := range o.dates {
			ix.Values = append(ix.Values, store.Value{Key: date, Lo: d[0], Hi: d[1]})
		}
		for _, v := range o.vals {
			ix.Values = append(ix.Values, store.Value{Key: value, Lo: v, Hi: v})
		}
		v := ver("Observation", o.id, 1, at(10-i)) // f is the oldest
		v.KeyID = o.key
		putIndexed(t, s, v, ix)
	}
	// Another type's rows never show.
	putIndexed(t, s, ver("Condition", "a", 1, at(20)), &store.Index{Tokens: []store.Token{tok("final")}, Values: []store.Value{{Key: date, Lo: 100, Hi: 100}}})

	check := func(name string, q store.SearchQuery, want ...string) {
		t.Helper()
		q.Type = "Observation"
		hits, err := sr.Search(ctx, q)
		if err != nil {
			t.Fatalf("%s: Search = %v", name, err)
		}
		if got := ids(hits); !slices.Equal(got, want) {
			t.Errorf("%s: Search = %v, want %v", name, got, want)
		}
		if q.Limit == 0 && q.After == nil {
			n, err := sr.Count(ctx, q)
			if err != nil || n != int64(len(want)) {
				t.Errorf("%s: Count = %d, %v, want %d", name, n, err, len(want))
			}
		}
	}
	toks := func(ts ...string) []store.Token {
		var out []store.Token
		for _, x := range ts {
			out = append(out, tok(x))
		}
		return out
	}
	rng := func(key store.Token, bounds ...store.Bound) store.ValueRange {
		return store.ValueRange{Key: key, Bounds: bounds}
	}
	check("everything", store.SearchQuery{}, "a", "b", "c", "d", "e", "f")
	check("one token", store.SearchQuery{Where: []store.Cond{{Tokens: toks("final")}}}, "a", "b", "d")
	check("OR of tokens", store.SearchQuery{Where: []store.Cond{{Tokens: toks("amended", "pulse")}}}, "b", "c")
	check("AND of tokens", store.SearchQuery{Where: []store.Cond{{Tokens: toks("final")}, {Tokens: toks("bp")}}}, "a")
	check("NOT", store.SearchQuery{Where: []store.Cond{{Tokens: toks("bp"), Not: true}}}, "b", "d", "f")
	check("no such token", store.SearchQuery{Where: []store.Cond{{Tokens: toks("nothing")}}})
	check("empty condition", store.SearchQuery{Where: []store.Cond{{}}})
	check("empty NOT", store.SearchQuery{Where: []store.Cond{{Not: true}}}, "a", "b", "c", "d", "e", "f")
	check("ids", store.SearchQuery{Where: []store.Cond{{IDs: []string{"e", "a", "zz"}}}}, "a", "e")
	check("contained in [150, 299]", store.SearchQuery{Where: []store.Cond{{Values: []store.ValueRange{rng(date, store.Bound{End: "lo", Op: ">=", V: 150}, store.Bound{End: "hi", Op: "<=", V: 299})}}}}, "b", "c")
	check("ends after 500", store.SearchQuery{Where: []store.Cond{{Values: []store.ValueRange{rng(date, store.Bound{End: "hi", Op: ">", V: 500})}}}}, "d", "f")
	check("open start", store.SearchQuery{Where: []store.Cond{{Values: []store.ValueRange{rng(date, store.Bound{End: "lo", Op: "<", V: 0})}}}}, "f")
	check("OR of ranges", store.SearchQuery{Where: []store.Cond{{Values: []store.ValueRange{
		rng(value, store.Bound{End: "lo", Op: ">=", V: 130}), rng(value, store.Bound{End: "hi", Op: "<", V: 70})}}}}, "b", "c")
	check("token OR range", store.SearchQuery{Where: []store.Cond{{Tokens: toks("pulse"), Values: []store.ValueRange{rng(value, store.Bound{End: "lo", Op: ">", V: 1e9})}}}}, "b")
	check("range and token", store.SearchQuery{Where: []store.Cond{{Tokens: toks("bp")}, {Values: []store.ValueRange{rng(value, store.Bound{End: "hi", Op: "<=", V: 100})}}}}, "c", "e")
	// The restriction is part of the query.
	check("keys", store.SearchQuery{Keys: []int64{1, 3}}, "a", "b", "e", "f")
	check("keys and token", store.SearchQuery{Keys: []int64{2}, Where: []store.Cond{{Tokens: toks("final")}}}, "d")
	check("no keys", store.SearchQuery{Keys: []int64{}})
	// Orders and continuation.
	check("by date", store.SearchQuery{Order: []store.Order{{By: "value", Key: date}}}, "f", "a", "c", "b", "d", "e")
	check("by date, descending", store.SearchQuery{Order: []store.Order{{By: "value", Key: date, Desc: true}}}, "d", "f", "b", "c", "a", "e")
	check("by updated", store.SearchQuery{Order: []store.Order{{By: "updated"}}}, "f", "e", "d", "c", "b", "a")
	check("by value then updated", store.SearchQuery{Order: []store.Order{{By: "value", Key: value}, {By: "updated", Desc: true}}}, "b", "c", "e", "a", "d", "f")
	check("limit", store.SearchQuery{Limit: 2}, "a", "b")
	// Paging by continuation gives every hit once, in order.
	for _, order := range [][]store.Order{nil, {{By: "value", Key: date}}, {{By: "value", Key: value, Desc: true}, {By: "updated"}}} {
		full, err := sr.Search(ctx, store.SearchQuery{Type: "Observation", Order: order})
		if err != nil {
			t.Fatal(err)
		}
		var paged []string
		var after *store.Hit
		for range 10 {
			page, err := sr.Search(ctx, store.SearchQuery{Type: "Observation", Order: order, After: after, Limit: 2})
			if err != nil {
				t.Fatal(err)
			}
			if len(page) == 0 {
				break
			}
			paged = append(paged, ids(page)...)
			after = &page[len(page)-1]
		}
		if !slices.Equal(paged, ids(full)) {
			t.Errorf("order %v: pages give %v, the whole %v", order, paged, ids(full))
		}
	}
	// An update replaces the index; a delete removes it.
	v := ver("Observation", "a", 2, at(30))
	v.KeyID = 1
	putIndexed(t, s, v, &store.Index{Tokens: toks("amended"), Values: []store.Value{{Key: value, Lo: 1, Hi: 1}}})
	check("after update, old token", store.SearchQuery{Where: []store.Cond{{Tokens: toks("final")}}}, "b", "d")
	check("after update, new token", store.SearchQuery{Where: []store.Cond{{Tokens: toks("amended")}}}, "a", "c")
	check("after update, old range", store.SearchQuery{Where: []store.Cond{{Values: []store.ValueRange{rng(date, store.Bound{End: "lo", Op: "<=", V: 100})}}}}, "f")
	check("after update, new range", store.SearchQuery{Where: []store.Cond{{Values: []store.ValueRange{rng(value, store.Bound{End: "hi", Op: "<=", V: 1})}}}}, "a")
	put(t, s, del("Observation", "c", 2, at(31)))
	check("after delete", store.SearchQuery{Where: []store.Cond{{Tokens: toks("amended")}}}, "a")
	check("after delete, keys", store.SearchQuery{Keys: []int64{2}}, "d")
	// Malformed queries are errors, not wrong answers.
	for i, q := range []store.SearchQuery{
		{},
		{Type: "Observation", Where: []store.Cond{{Values: []store.ValueRange{rng(date, store.Bound{End: "mid", Op: ">", V: 1})}}}},
		{Type: "Observation", Where: []store.Cond{{Values: []store.ValueRange{rng(date, store.Bound{End: "lo", Op: "~", V: 1})}}}},
		{Type: "Observation", Where: []store.Cond{{Values: []store.ValueRange{rng(date, store.Bound{End: "lo", Op: ">", V: math.NaN()})}}}},
		{Type: "Observation", Order: []store.Order{{By: "colour"}}},
		{Type: "Observation", Order: []store.Order{{By: "value"}}, After: &store.Hit{ID: "a"}},
	} {
		if _, err := sr.Search(ctx, q); err == nil {
			t.Errorf("malformed query %d: Search succeeded", i)
		}
	}
}

// testSearchLabels checks the label restriction, in searches and history.
func (r *runner) testSearchLabels(t *testing.T) {
	s := r.newStore(t)
	sr := s.(store.Searcher)
	ctx := context.Background()
	secret, hiv := tok("label:R"), tok("label:HIV")
	putIndexed(t, s, ver("Observation", "plain", 1, at(1)), &store.Index{Tokens: []store.Token{tok("x")}})
	putIndexed(t, s, ver("Observation", "r", 1, at(2)), &store.Index{Tokens: []store.Token{tok("x")}, Labels: []store.Token{secret}})
	putIndexed(t, s, ver("Observation", "rh", 1, at(3)), &store.Index{Tokens: []store.Token{tok("x")}, Labels: []store.Token{secret, hiv}})
	for _, c := range []struct {
		name   string
		labels []store.Token
		want   []string
	}{
		{"no restriction", nil, []string{"plain", "r", "rh"}},
		{"no labels allowed", []store.Token{}, []string{"plain"}},
		{"R allowed", []store.Token{secret}, []string{"plain", "r"}},
		{"both allowed", []store.Token{hiv, secret}, []string{"plain", "r", "rh"}},
		{"HIV only", []store.Token{hiv}, []string{"plain"}},
	} {
		for _, where := range [][]store.Cond{nil, {{Tokens: []store.Token{tok("x")}}}} {
			q := store.SearchQuery{Type: "Observation", Where: where, Labels: c.labels}
			hits, err := sr.Search(ctx, q)
			if err != nil {
				t.Fatal(err)
			}
			if got := ids(hits); !slices.Equal(got, c.want) {
				t.Errorf("%s (%d conditions): Search = %v, want %v", c.name, len(where), got, c.want)
			}
			if n, err := sr.Count(ctx, q); err != nil || n != int64(len(c.want)) {
				t.Errorf("%s (%d conditions): Count = %d, %v, want %d", c.name, len(where), n, err, len(c.want))
			}
		}
	}
	// A new version without the label is admitted; its old, labelled
	// version is not, in history.
	putIndexed(t, s, ver("Observation", "r", 2, at(4)), &store.Index{Tokens: []store.Token{tok("x")}})
	hits, err := sr.Search(ctx, store.SearchQuery{Type: "Observation", Labels: []store.Token{}})
	if err != nil || !slices.Equal(ids(hits), []string{"plain", "r"}) {
		t.Errorf("after relabelling: Search = %v, %v, want [plain r]", ids(hits), err)
	}
	vs, err := s.History(ctx, store.HistoryQuery{Type: "Observation", Labels: []store.Token{}})
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, v := range vs {
		got = append(got, fmt.Sprintf("%s/%d", v.ID, v.Version))
	}
	if want := []string{"r/2", "plain/1"}; !slices.Equal(got, want) {
		t.Errorf("History(no labels allowed) = %v, want %v", got, want)
	}
	// A deletion carries the labels it is given.
	d := del("Observation", "rh", 2, at(5))
	if err := s.Update(ctx, func(tx store.Tx) error { return tx.Put(ctx, d, &store.Index{Labels: []store.Token{hiv}}) }); err != nil {
		t.Fatalf("Put(deletion with labels) = %v", err)
	}
	vs, err = s.History(ctx, store.HistoryQuery{Type: "Observation", ID: "rh", Labels: []store.Token{secret}})
	if err != nil || len(vs) != 0 {
		t.Errorf("History(rh, R allowed) = %d versions, %v; want none: both versions carry HIV", len(vs), err)
	}
}

// testHistoryKeys checks the data-key restriction of history.
func (r *runner) testHistoryKeys(t *testing.T) {
	s := r.newStore(t)
	ctx := context.Background()
	for i, k := range []int64{1, 2, 1, 3} {
		v := ver("Observation", fmt.Sprint("o", i), 1, at(i))
		v.KeyID = k
		put(t, s, v)
	}
	v := ver("Observation", "o0", 2, at(9))
	v.KeyID = 2 // moved to another patient
	put(t, s, v)
	for _, c := range []struct {
		q    store.HistoryQuery
		want []string
	}{
		{store.HistoryQuery{Keys: []int64{1}}, []string{"o2/1", "o0/1"}},
		{store.HistoryQuery{Type: "Observation", Keys: []int64{2}}, []string{"o0/2", "o1/1"}},
		{store.HistoryQuery{Type: "Observation", ID: "o0", Keys: []int64{1}}, []string{"o0/1"}},
		{store.HistoryQuery{Keys: []int64{}}, nil},
	} {
		vs, err := s.History(ctx, c.q)
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, v := range vs {
			got = append(got, fmt.Sprintf("%s/%d", v.ID, v.Version))
		}
		if !slices.Equal(got, c.want) {
			t.Errorf("History(%+v) = %v, want %v", c.q, got, c.want)
		}
	}
}

// testSearchModel runs random queries over a few hundred random resources
// and compares every answer with a model evaluated in memory. Backends
// whose plans depend on the data (which condition drives) take each plan
// only if the data calls for it, so the suite is worth running with
// settings that make each plan likely (a small probe limit in SQLite).
func (r *runner) testSearchModel(t *testing.T) {
	s := r.newStore(t)
	sr := s.(store.Searcher)
	ctx := context.Background()
	rnd := rand.New(rand.NewPCG(7, 11))
	type res struct {
		id     string
		key    int64
		tokens map[int]bool
		vals   map[int][][2]float64
		labels map[int]bool
		upd    int
	}
	const nTokens, nKeys, nLabels = 12, 6, 3
	vkeys := []store.Token{tok("v0"), tok("v1")}
	label := func(i int) store.Token { return tok(fmt.Sprint("label", i)) }
	var model []*res
	err := s.Update(ctx, func(tx store.Tx) error {
		for i := range 300 {
			x := &res{id: fmt.Sprintf("r%03d", i), key: 1 + rnd.Int64N(nKeys), tokens: map[int]bool{}, vals: map[int][][2]float64{}, labels: map[int]bool{}, upd: rnd.IntN(50)}
			ix := &store.Index{}
			// Skewed: token 0 is on most resources, token 11 on few.
			for k := range nTokens {
				if rnd.Float64() < 0.9/float64(k+1) {
					x.tokens[k] = true
					ix.Tokens = append(ix.Tokens, tok(fmt.Sprint("t", k)))
				}
			}
			for k := range vkeys {
				for range rnd.IntN(3) {
					lo := float64(rnd.IntN(100))
					hi := lo + float64(rnd.IntN(20))
					x.vals[k] = append(x.vals[k], [2]float64{lo, hi})
					ix.Values = append(ix.Values, store.Value{Key: vkeys[k], Lo: lo, Hi: hi})
				}
			}
			for k := range nLabels {
				if rnd.IntN(8) == 0 {
					x.labels[k] = true
					ix.Labels = append(ix.Labels, label(k))
				}
			}
			v := ver("Observation", x.id, 1, at(x.upd))
			v.KeyID = x.key
			if err := tx.Put(ctx, v, ix); err != nil {
				return err
			}
			model = append(model, x)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	cmp := func(op string, a, b float64) bool {
		switch op {
		case ">=":
			return a >= b
		case ">":
			return a > b
		case "<=":
			return a <= b
		}
		return a < b
	}
	ops := []string{">=", ">", "<=", "<"}
	for qi := range 400 {
		q := store.SearchQuery{Type: "Observation"}
		type mcond struct {
			tokens []int
			ranges []struct {
				k      int
				bounds []store.Bound
			}
			ids []string
			not bool
		}
		var mconds []mcond
		for range 1 + rnd.IntN(3) {
			var mc mcond
			var c store.Cond
			switch rnd.IntN(4) {
			case 0, 1:
				for range 1 + rnd.IntN(2) {
					k := rnd.IntN(nTokens)
					mc.tokens = append(mc.tokens, k)
					c.Tokens = append(c.Tokens, tok(fmt.Sprint("t", k)))
				}
			case 2:
				k := rnd.IntN(len(vkeys))
				var bounds []store.Bound
				for range 1 + rnd.IntN(2) {
					bounds = append(bounds, store.Bound{End: []string{"lo", "hi"}[rnd.IntN(2)], Op: ops[rnd.IntN(4)], V: float64(rnd.IntN(120))})
				}
				mc.ranges = append(mc.ranges, struct {
					k      int
					bounds []store.Bound
				}{k, bounds})
				c.Values = append(c.Values, store.ValueRange{Key: vkeys[k], Bounds: bounds})
			default:
				for range 1 + rnd.IntN(5) {
					id := fmt.Sprintf("r%03d", rnd.IntN(320))
					mc.ids = append(mc.ids, id)
					c.IDs = append(c.IDs, id)
				}
			}
			if rnd.IntN(5) == 0 {
				mc.not, c.Not = true, true
			}
			mconds = append(mconds, mc)
			q.Where = append(q.Where, c)
		}
		if rnd.IntN(3) == 0 {
			q.Keys = []int64{}
			for k := range int64(nKeys) {
				if rnd.IntN(3) == 0 {
					q.Keys = append(q.Keys, k+1)
				}
			}
		}
		if rnd.IntN(4) == 0 {
			q.Labels = []store.Token{}
			for k := range nLabels {
				if rnd.IntN(2) == 0 {
					q.Labels = append(q.Labels, label(k))
				}
			}
		}
		var want []string
		for _, x := range model {
			ok := true
			if q.Keys != nil && !slices.Contains(q.Keys, x.key) {
				ok = false
			}
			if q.Labels != nil {
				for k := range x.labels {
					if !slices.ContainsFunc(q.Labels, func(l store.Token) bool { return string(l) == string(label(k)) }) {
						ok = false
					}
				}
			}
			for _, mc := range mconds {
				hit := false
				for _, k := range mc.tokens {
					hit = hit || x.tokens[k]
				}
				for _, rg := range mc.ranges {
					for _, v := range x.vals[rg.k] {
						all := true
						for _, bd := range rg.bounds {
							end := v[0]
							if bd.End == "hi" {
								end = v[1]
							}
							all = all && cmp(bd.Op, end, bd.V)
						}
						hit = hit || all
					}
				}
				hit = hit || slices.Contains(mc.ids, x.id)
				if hit == mc.not {
					ok = false
				}
			}
			if ok {
				want = append(want, x.id)
			}
		}
		hits, err := sr.Search(ctx, q)
		if err != nil {
			t.Fatalf("query %d: Search = %v", qi, err)
		}
		if got := ids(hits); !slices.Equal(got, want) {
			t.Fatalf("query %d %+v:\n got  %v\n want %v", qi, q, got, want)
		}
		n, err := sr.Count(ctx, q)
		if err != nil || n != int64(len(want)) {
			t.Fatalf("query %d: Count = %d, %v, want %d", qi, n, err, len(want))
		}
		// Paging by continuation gives the same rows in the same order,
		// sorted or not.
		if qi%2 == 0 {
			q.Order = []store.Order{{By: "value", Key: vkeys[qi%4/2], Desc: qi%3 == 0}}
			hits, err = sr.Search(ctx, q)
			if err != nil {
				t.Fatal(err)
			}
		}
		var paged []string
		q.Limit = 7
		for range 100 {
			page, err := sr.Search(ctx, q)
			if err != nil {
				t.Fatalf("query %d, paged: %v", qi, err)
			}
			if len(page) == 0 {
				break
			}
			paged = append(paged, ids(page)...)
			q.After = &page[len(page)-1]
		}
		if !slices.Equal(paged, ids(hits)) {
			t.Fatalf("query %d %+v: pages give\n %v\nthe whole\n %v", qi, q, paged, ids(hits))
		}
	}
}
