package storetest

import (
	"context"
	"math"
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
	rng := func(key store.Token, bounds ...store.Bound) store.ValueRange { return store.ValueRange{Key: key, Bounds: bounds} }
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
