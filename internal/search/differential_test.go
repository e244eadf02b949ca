package search

import (
	"errors"
	"flag"
	"fmt"
	"math"
	"math/rand/v2"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
	"unicode"

	"golang.org/x/text/unicode/norm"

	"github.com/ehrvault/ehrvault/internal/access"
	"github.com/ehrvault/ehrvault/internal/fhir"
	"github.com/ehrvault/ehrvault/internal/fhirpath"
	"github.com/ehrvault/ehrvault/internal/store"
	"github.com/ehrvault/ehrvault/internal/store/sqlite"
)

// The size of TestDifferential: a third of the sample keeps each query
// cheap enough for CI; a longer run, before a release:
//
//	go test ./internal/search -run Differential -differential.queries 5000 -differential.files 0
var (
	diffQueries = flag.Int("differential.queries", 400, "how many queries TestDifferential generates")
	diffFiles   = flag.Int("differential.files", 12, "how many Synthea patients TestDifferential loads (0: all 35)")
)

// TestDifferential runs generated queries over the Synthea sample and
// checks that the indexed search returns exactly what a brute-force
// evaluation over the opened resources returns: the same matches (every
// page followed), the same count, in an order that the sort keys allow,
// under random restrictions.
//
// The oracle below is written from the R4 search rules, apart from the
// indexed ones: it shares with the engine only the parameters' FHIRPath
// expressions (what a parameter is) and the owner rule (whose compartment
// a resource is in).
func TestDifferential(t *testing.T) {
	rnd := rand.New(rand.NewPCG(2026, 12))
	s := newStack(t, sqlite.Options{ProbeLimit: 50})
	queries := *diffQueries
	if raceEnabled {
		queries /= 2
	}
	s.load(t, rnd, "smart-r4-2019", *diffFiles)
	o := &oracle{s: s, ev: new(fhirpath.Evaluator)}
	o.index()
	now = func() time.Time { return time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC) }
	defer func() { now = time.Now }()

	kinds := map[string]int{}
	nonEmpty := 0
	for qi := 0; qi < queries; qi++ {
		g := o.generate(rnd)
		if g == nil {
			qi--
			continue
		}
		var r *access.Restriction
		if rnd.IntN(3) == 0 {
			r = o.restriction(rnd)
		}
		want := o.evaluate(g, r)
		count := []int{1, 3, 10, 50, 1000}[rnd.IntN(5)]
		if g.sort != nil {
			// A sorted page costs the sort of every candidate; pages of
			// one would make a quadratic test.
			count = max(count, 10)
		}
		got, err := s.searchAll(t, g.typ, g.q, r, count)
		if err != nil {
			t.Fatalf("query %d %s?%s: %v", qi, g.typ, g.q.Encode(), err)
		}
		if !sameSet(got, want) {
			t.Fatalf("query %d %s?%s (%s, pages of %d):\n got  %d %v\n want %d %v\n missing %v\n extra %v",
				qi, g.typ, g.q.Encode(), r, count, len(got), clipList(got), len(want), clipList(want), clipList(minus(want, got)), clipList(minus(got, want)))
		}
		if dup := duplicates(got); len(dup) > 0 {
			t.Fatalf("query %d %s?%s: pages repeat %v", qi, g.typ, g.q.Encode(), dup)
		}
		if g.sort != nil {
			if err := o.checkOrder(g, got); err != nil {
				t.Fatalf("query %d %s?%s: %v", qi, g.typ, g.q.Encode(), err)
			}
		}
		cq := url.Values{"_summary": {"count"}}
		for k, v := range g.q {
			if k != "_sort" {
				cq[k] = v
			}
		}
		res, err := s.eng.Search(t.Context(), Request{Type: g.typ, Params: cq, Restrict: r})
		if err != nil || res.Total != int64(len(want)) {
			t.Fatalf("query %d %s?%s: count = %d, %v; want %d", qi, g.typ, cq.Encode(), res.Total, err, len(want))
		}
		for _, k := range g.kinds {
			kinds[k]++
		}
		if len(want) > 0 {
			nonEmpty++
		}
	}
	t.Logf("%d queries, %d with matches; clauses by kind: %v", queries, nonEmpty, kinds)
	if nonEmpty < queries/2 {
		t.Errorf("only %d of %d queries had matches: the generator tests too little", nonEmpty, queries)
	}
	for _, k := range []string{"token", "token:not", "token:text", "string", "string:exact", "string:contains", "reference", "date", "birthdate", "number-or-quantity", "missing", "chain", "has", "or"} {
		if kinds[k] == 0 {
			t.Errorf("no query had a clause of kind %s", k)
		}
	}
}

func clipList(l []string) []string {
	if len(l) > 12 {
		return append(l[:12:12], fmt.Sprintf("… %d more", len(l)-12))
	}
	return l
}

func sameSet(a, b []string) bool {
	x, y := slices.Clone(a), slices.Clone(b)
	slices.Sort(x)
	slices.Sort(y)
	return slices.Equal(slices.Compact(x), slices.Compact(y)) && len(x) == len(y)
}

func minus(a, b []string) []string {
	var out []string
	for _, x := range a {
		if !slices.Contains(b, x) {
			out = append(out, x)
		}
	}
	return out
}

func duplicates(l []string) []string {
	seen := map[string]bool{}
	var out []string
	for _, x := range l {
		if seen[x] {
			out = append(out, x)
		}
		seen[x] = true
	}
	return out
}

// oracle evaluates queries by brute force over s.all.
type oracle struct {
	s  *stack
	ev *fhirpath.Evaluator
	// refs: for each "Type/id", the resources that refer to it, by the
	// referring type and parameter code.
	refs map[string]map[[2]string][]string
	// ids of every resource, by type, sorted for reproducible choices.
	ids   map[string][]string
	types []string
}

func (o *oracle) index() {
	o.refs = map[string]map[[2]string][]string{}
	o.ids = map[string][]string{}
	for typ, m := range o.s.all {
		o.types = append(o.types, typ)
		for id, r := range m {
			o.ids[typ] = append(o.ids[typ], id)
			for _, p := range o.s.ix.tables[typ].params {
				if p.kind != kindReference {
					continue
				}
				for _, n := range o.nodes(p, r) {
					if rt, rid, ok := relRef(n); ok {
						k := rt + "/" + rid
						if o.refs[k] == nil {
							o.refs[k] = map[[2]string][]string{}
						}
						o.refs[k][[2]string{typ, p.code}] = append(o.refs[k][[2]string{typ, p.code}], id)
					}
				}
			}
		}
		slices.Sort(o.ids[typ])
	}
	slices.Sort(o.types)
}

func (o *oracle) nodes(p *param, r *fhir.Value) []fhirpath.Node {
	o.ev.Reset()
	ns, err := o.ev.Eval(p.expr, r)
	if err != nil {
		return nil
	}
	return slices.Clone(ns)
}

// relRef reads a relative literal reference ("Type/id", a version
// dropped) from a Reference node.
func relRef(n fhirpath.Node) (string, string, bool) {
	if n.Value == nil || n.Value.Kind != fhir.Object {
		return "", "", false
	}
	ref := n.Value.Str("reference")
	if ref == "" || strings.Contains(ref, "://") || strings.HasPrefix(ref, "#") || strings.HasPrefix(ref, "urn:") {
		return "", "", false
	}
	parts := strings.Split(ref, "/")
	if len(parts) != 2 && !(len(parts) == 4 && parts[2] == "_history") {
		return "", "", false
	}
	if !fhir.IsResourceType(parts[0]) || !fhir.ValidID(parts[1]) {
		return "", "", false
	}
	return parts[0], parts[1], true
}

// gen is a generated query.
type gen struct {
	typ     string
	q       url.Values
	clauses []oclause
	sort    *oclause // the first _sort key, if any
	desc    bool
	kinds   []string
}

// oclause is one parameter of a generated query, as the oracle reads it.
type oclause struct {
	p       *param
	mod     string
	values  []string // ORed, unescaped
	missing *bool
	// chain: the parameter of the target type; has: the referring type,
	// its reference parameter, and the clause on it.
	chainType string
	chain     *oclause
	hasType   string
	hasParam  *param
	has       *oclause
}

var escaper = strings.NewReplacer(`\`, `\\`, `,`, `\,`, `|`, `\|`, `$`, `\$`)

// escv escapes a value for a query.
func escv(s string) string { return escaper.Replace(s) }

func (o *oracle) pick(rnd *rand.Rand, typ string) (string, *fhir.Value) {
	ids := o.ids[typ]
	id := ids[rnd.IntN(len(ids))]
	return id, o.s.all[typ][id]
}

// generate makes a query of one to three clauses from the values of a
// random resource (so that most queries match something), and now and
// then a sort.
func (o *oracle) generate(rnd *rand.Rand) *gen {
	typ := o.types[rnd.IntN(len(o.types))]
	if rnd.IntN(3) == 0 {
		typ = []string{"Patient", "Observation", "Encounter", "Condition"}[rnd.IntN(4)]
	}
	params := o.s.ix.tables[typ].params
	if rnd.IntN(3) == 0 {
		// Parameters people search by most, more often than their share.
		f := favorites[rnd.IntN(len(favorites))]
		typ = f[0]
		p := o.s.ix.tables[typ].byCode[f[1]]
		params = []*param{p, p, p}
		params = append(params, o.s.ix.tables[typ].params...)
	}
	_, r := o.pick(rnd, typ)
	g := &gen{typ: typ, q: url.Values{}}
	for tries := 0; len(g.clauses) < 1+rnd.IntN(3) && tries < 40; tries++ {
		p := params[rnd.IntN(len(params))]
		c, name, text, kind := o.clause(rnd, typ, p, r, 0)
		if c == nil {
			continue
		}
		g.clauses = append(g.clauses, *c)
		g.q.Add(name, text)
		g.kinds = append(g.kinds, kind)
	}
	if len(g.clauses) == 0 {
		return nil
	}
	if rnd.IntN(4) == 0 {
		var sortable []*param
		for _, p := range params {
			if (p.kind == kindDate && !identifyingDates[p.code]) || p.kind == kindNumber || p.kind == kindQuantity {
				sortable = append(sortable, p)
			}
		}
		if len(sortable) > 0 {
			p := sortable[rnd.IntN(len(sortable))]
			g.sort = &oclause{p: p}
			g.desc = rnd.IntN(2) == 0
			key := p.code
			if g.desc {
				key = "-" + key
			}
			g.q.Set("_sort", key)
		}
	}
	return g
}

// clause makes one clause on p from r's values: the clause, the
// parameter name and value text as sent, and its kind for the tally.
func (o *oracle) clause(rnd *rand.Rand, typ string, p *param, r *fhir.Value, depth int) (*oclause, string, string, string) {
	nodes := o.nodes(p, r)
	if rnd.IntN(12) == 0 {
		b := rnd.IntN(2) == 0
		return &oclause{p: p, mod: "missing", missing: &b}, p.code + ":missing", strconv.FormatBool(b), "missing"
	}
	if len(nodes) == 0 {
		return nil, "", "", ""
	}
	n := nodes[rnd.IntN(len(nodes))]
	c := &oclause{p: p}
	var text, kind string
	switch p.kind {
	case kindToken:
		vals := tokenForms(n)
		if len(vals) == 0 {
			return nil, "", "", ""
		}
		v := vals[rnd.IntN(len(vals))]
		kind = "token"
		if rnd.IntN(6) == 0 {
			c.mod, kind = "not", "token:not"
		}
		if texts := tokenTexts(n); rnd.IntN(5) == 0 && len(texts) > 0 && texts[0] != "" {
			t := texts[rnd.IntN(len(texts))]
			if t == "" {
				return nil, "", "", ""
			}
			c.mod, kind = "text", "token:text"
			c.values = []string{randomPrefix(rnd, t)}
			text = escv(c.values[0])
			break
		}
		c.values = []string{v}
		text = v // already escaped token syntax
	case kindString:
		parts := stringParts(n)
		if len(parts) == 0 || parts[0] == "" {
			return nil, "", "", ""
		}
		part := parts[rnd.IntN(len(parts))]
		if part == "" {
			return nil, "", "", ""
		}
		switch rnd.IntN(5) {
		case 0:
			c.mod, kind = "exact", "string:exact"
			c.values = []string{part}
		case 1:
			c.mod, kind = "contains", "string:contains"
			rs := []rune(part)
			i := rnd.IntN(len(rs))
			c.values = []string{string(rs[i:min(len(rs), i+1+rnd.IntN(4))])}
		default:
			kind = "string"
			c.values = []string{randomCase(rnd, randomPrefix(rnd, part))}
		}
		text = escv(c.values[0])
	case kindReference:
		rt, rid, ok := relRef(n)
		if !ok {
			return nil, "", "", ""
		}
		if depth == 0 && rnd.IntN(4) == 0 && o.s.all[rt][rid] != nil && (len(p.def.target) == 0 || slices.Contains(p.def.target, rt)) {
			// A chain: a parameter of the target, from the target's values.
			target := o.s.all[rt][rid]
			tps := o.s.ix.tables[rt].params
			for tries := 0; tries < 10; tries++ {
				tp := tps[rnd.IntN(len(tps))]
				if tp.kind == kindReference {
					continue
				}
				inner, iname, itext, _ := o.clause(rnd, rt, tp, target, 1)
				if inner == nil || inner.mod == "missing" || inner.mod == "not" {
					continue
				}
				c.chainType, c.chain = rt, inner
				return c, p.code + ":" + rt + "." + iname, itext, "chain"
			}
			return nil, "", "", ""
		}
		kind = "reference"
		switch rnd.IntN(3) {
		case 0:
			c.values = []string{rt + "/" + rid}
		case 1:
			c.values = []string{rid}
		default:
			if len(p.def.target) > 0 && !slices.Contains(p.def.target, rt) {
				return nil, "", "", ""
			}
			c.mod = rt
			c.values = []string{rid}
		}
		text = c.values[0]
	case kindURI:
		if n.Value == nil || n.Value.Kind != fhir.String || n.Value.Text == "" {
			return nil, "", "", ""
		}
		kind = "uri"
		c.values = []string{n.Value.Text}
		text = escv(n.Value.Text)
	case kindDate:
		s := dateText(n)
		if s == "" {
			return nil, "", "", ""
		}
		kind = "date"
		if identifyingDates[p.code] {
			kind = "birthdate"
			s = s[:min(len(s), 10)]
		}
		if len(s) < 4 {
			return nil, "", "", ""
		}
		precs := []int{4}
		if len(s) >= 7 {
			precs = append(precs, 7)
		}
		if len(s) >= 10 {
			precs = append(precs, 10)
		}
		if len(s) > 10 {
			precs = append(precs, len(s))
		}
		s = s[:precs[rnd.IntN(len(precs))]]
		if rnd.IntN(2) == 0 {
			// Another year: most resources then lie on one side.
			y, err := strconv.Atoi(s[:4])
			if err != nil {
				return nil, "", "", ""
			}
			s = fmt.Sprintf("%04d", y+rnd.IntN(21)-10) + s[4:]
			if _, _, _, ok := searchDate(s); !ok {
				return nil, "", "", "" // February 29th of another year
			}
		}
		prefix := valuePrefixes[rnd.IntN(len(valuePrefixes))]
		c.values = []string{prefix + s}
		text = prefix + s
		if rnd.IntN(5) == 0 && depth == 0 {
			// OR of two values.
			other := valuePrefixes[rnd.IntN(len(valuePrefixes))] + s[:4]
			c.values = append(c.values, other)
			text += "," + other
			kind = "or"
		}
	case kindNumber, kindQuantity:
		var num, unit string
		if n.Value == nil {
			return nil, "", "", ""
		}
		if p.kind == kindNumber {
			if n.Value.Kind != fhir.Number {
				return nil, "", "", ""
			}
			num = n.Value.Text
		} else {
			v := n.Value.Get("value")
			if n.Value.Kind != fhir.Object || v == nil || v.Kind != fhir.Number {
				return nil, "", "", ""
			}
			num = v.Text
			switch rnd.IntN(3) {
			case 0:
				if sys, code := n.Value.Str("system"), n.Value.Str("code"); sys != "" && code != "" {
					unit = "|" + escv(sys) + "|" + escv(code)
				}
			case 1:
				if code := n.Value.Str("unit"); code != "" {
					unit = "||" + escv(code)
				}
			}
		}
		kind = "number-or-quantity"
		prefix := valuePrefixes[rnd.IntN(len(valuePrefixes))]
		if rnd.IntN(3) == 0 {
			// a rounder value than the resource's
			f, _ := strconv.ParseFloat(num, 64)
			num = strconv.FormatFloat(math.Round(f), 'f', -1, 64)
		}
		c.values = []string{prefix + num + unit}
		text = c.values[0]
	default:
		return nil, "", "", ""
	}
	name := p.code
	if c.mod != "" {
		name += ":" + c.mod
	}
	// Now and then, a reverse chain instead, from a resource that refers
	// to r... only at the top, on types others refer to.
	if depth == 0 && rnd.IntN(10) == 0 {
		if hc, hname, htext := o.hasClause(rnd, typ, r); hc != nil {
			return hc, hname, htext, "has"
		}
	}
	return c, name, text, kind
}

// hasClause makes _has:Type:param:inner from a resource that refers to r.
func (o *oracle) hasClause(rnd *rand.Rand, typ string, r *fhir.Value) (*oclause, string, string) {
	by := o.refs[typ+"/"+r.Str("id")]
	if len(by) == 0 {
		return nil, "", ""
	}
	var keys [][2]string
	for k := range by {
		keys = append(keys, k)
	}
	slices.SortFunc(keys, func(a, b [2]string) int { return strings.Compare(a[0]+a[1], b[0]+b[1]) })
	k := keys[rnd.IntN(len(keys))]
	hp := o.s.ix.tables[k[0]].byCode[k[1]]
	if len(hp.def.target) > 0 && !slices.Contains(hp.def.target, typ) {
		return nil, "", ""
	}
	ids := by[k]
	src := o.s.all[k[0]][ids[rnd.IntN(len(ids))]]
	tps := o.s.ix.tables[k[0]].params
	for tries := 0; tries < 10; tries++ {
		tp := tps[rnd.IntN(len(tps))]
		if tp.kind == kindReference {
			continue
		}
		inner, iname, itext, _ := o.clause(rnd, k[0], tp, src, 1)
		if inner == nil || inner.mod == "missing" || inner.mod == "not" {
			continue
		}
		return &oclause{hasType: k[0], hasParam: hp, has: inner}, "_has:" + k[0] + ":" + k[1] + ":" + iname, itext
	}
	return nil, "", ""
}

var favorites = [][2]string{
	{"Patient", "birthdate"}, {"Patient", "family"}, {"Patient", "given"}, {"Patient", "name"},
	{"Patient", "identifier"}, {"Patient", "address-city"}, {"Patient", "death-date"},
	{"Observation", "value-quantity"}, {"Observation", "date"}, {"Observation", "code"},
	{"Observation", "component-value-quantity"}, {"Encounter", "date"}, {"Condition", "onset-date"},
	{"MedicationRequest", "authoredon"}, {"Claim", "created"}, {"Immunization", "date"},
}

// tokenForms returns the query forms a token value can be found by.
func tokenForms(n fhirpath.Node) []string {
	v := n.Value
	if v == nil {
		return nil
	}
	var out []string
	add := func(sys, code string, hasSystem bool) {
		if code != "" {
			out = append(out, escv(code))
			if sys != "" {
				out = append(out, escv(sys)+"|"+escv(code))
			} else {
				out = append(out, "|"+escv(code))
			}
		}
		if hasSystem && sys != "" {
			out = append(out, escv(sys)+"|")
		}
	}
	switch {
	case v.Kind == fhir.String || v.Kind == fhir.Bool || v.Kind == fhir.Number:
		add("", v.Text, false)
	case v.Kind == fhir.Object && n.Type != nil:
		switch n.Type.Name {
		case "Coding":
			add(v.Str("system"), v.Str("code"), true)
		case "CodeableConcept":
			if c := v.Get("coding"); c != nil {
				for i := range c.Items {
					add(c.Items[i].Str("system"), c.Items[i].Str("code"), true)
				}
			}
		case "Identifier", "ContactPoint":
			add(v.Str("system"), v.Str("value"), true)
		}
	}
	return out
}

func randomPrefix(rnd *rand.Rand, s string) string {
	rs := []rune(s)
	n := 1 + rnd.IntN(len(rs))
	if rnd.IntN(8) == 0 {
		n = len(rs) // whole, which may be longer than the indexed prefixes
	}
	return string(rs[:n])
}

func randomCase(rnd *rand.Rand, s string) string {
	switch rnd.IntN(3) {
	case 0:
		return strings.ToUpper(s)
	case 1:
		return strings.ToLower(s)
	}
	return s
}

// dateText returns a date node's text, or a Period's start or end.
func dateText(n fhirpath.Node) string {
	v := n.Value
	if v == nil {
		return ""
	}
	if v.Kind == fhir.String {
		return v.Text
	}
	if v.Kind == fhir.Object {
		if s := v.Str("start"); s != "" {
			return s
		}
		return v.Str("end")
	}
	return ""
}

// restriction returns a random restriction: some patients (each with
// probability 1/3), shared resources or not, some labels.
func (o *oracle) restriction(rnd *rand.Rand) *access.Restriction {
	r := &access.Restriction{Shared: rnd.IntN(2) == 0}
	for _, id := range o.ids["Patient"] {
		if rnd.IntN(3) == 0 {
			r.Patients = append(r.Patients, id)
		}
	}
	for _, l := range testLabels {
		if rnd.IntN(2) == 0 {
			r.Labels = append(r.Labels, l)
		}
	}
	return r
}

// admits reports whether r admits res.
func (o *oracle) admits(r *access.Restriction, res *fhir.Value) bool {
	if r == nil {
		return true
	}
	switch owner := o.s.ix.Owner(res); {
	case owner == "store":
		if !r.Shared {
			return false
		}
	case strings.HasPrefix(owner, "Patient/"):
		if !slices.Contains(r.Patients, strings.TrimPrefix(owner, "Patient/")) {
			return false
		}
	default:
		return false
	}
	if sec := res.Get("meta").Get("security"); sec != nil {
		for i := range sec.Items {
			if !slices.Contains(r.Labels, sec.Items[i].Str("system")+"|"+sec.Items[i].Str("code")) {
				return false
			}
		}
	}
	return true
}

// evaluate returns the matches of g under r, as Type/id.
func (o *oracle) evaluate(g *gen, r *access.Restriction) []string {
	var out []string
	for _, id := range o.ids[g.typ] {
		res := o.s.all[g.typ][id]
		if !o.admits(r, res) {
			continue
		}
		ok := true
		for i := range g.clauses {
			if !o.match(&g.clauses[i], g.typ, res, r) {
				ok = false
				break
			}
		}
		if ok {
			out = append(out, g.typ+"/"+id)
		}
	}
	return out
}

// match is the oracle's rule for one clause.
func (o *oracle) match(c *oclause, typ string, res *fhir.Value, r *access.Restriction) bool {
	switch {
	case c.chain != nil:
		for _, n := range o.nodes(c.p, res) {
			rt, rid, ok := relRef(n)
			if !ok || rt != c.chainType {
				continue
			}
			if t := o.s.all[rt][rid]; t != nil && o.admits(r, t) && o.match(c.chain, rt, t, r) {
				return true
			}
		}
		return false
	case c.has != nil:
		for _, sid := range o.ids[c.hasType] {
			src := o.s.all[c.hasType][sid]
			if !o.admits(r, src) || !o.match(c.has, c.hasType, src, r) {
				continue
			}
			for _, n := range o.nodes(c.hasParam, src) {
				if rt, rid, ok := relRef(n); ok && rt == typ && rid == res.Str("id") {
					return true
				}
			}
		}
		return false
	}
	nodes := o.nodes(c.p, res)
	if c.missing != nil {
		has := false
		for _, n := range nodes {
			has = has || o.hasValue(c.p, n)
		}
		return has != *c.missing
	}
	any := false
	for _, v := range c.values {
		for _, n := range nodes {
			if o.matchValue(c, v, n) {
				any = true
			}
		}
	}
	if c.mod == "not" {
		return !any
	}
	return any
}

// fold is the oracle's case- and accent-insensitive form of a string.
func fold(s string) string {
	var b strings.Builder
	for _, r := range norm.NFKD.String(s) {
		if !unicode.Is(unicode.Mn, r) {
			b.WriteRune(unicode.ToLower(r))
		}
	}
	return strings.Join(strings.Fields(b.String()), " ")
}

// matchValue is the oracle's rule for one value against one node.
func (o *oracle) matchValue(c *oclause, v string, n fhirpath.Node) bool {
	p := c.p
	switch p.kind {
	case kindToken:
		if c.mod == "text" {
			for _, t := range tokenTexts(n) {
				if fold(t) != "" && strings.HasPrefix(fold(t), fold(v)) {
					return true
				}
			}
			return false
		}
		parts, _ := splitValue(v)
		return slices.Contains(tokenForms(n), joinEsc(parts))
	case kindString:
		for _, part := range stringParts(n) {
			switch c.mod {
			case "exact":
				if part == v {
					return true
				}
			case "contains":
				if strings.Contains(fold(part), fold(v)) {
					return true
				}
			default:
				if part != "" && strings.HasPrefix(fold(part), fold(v)) {
					return true
				}
			}
		}
		return false
	case kindReference:
		rt, rid, ok := relRef(n)
		if !ok {
			return false
		}
		if c.mod != "" {
			return rt == c.mod && rid == v
		}
		if t, id, found := strings.Cut(v, "/"); found {
			return rt == t && rid == id
		}
		return rid == v
	case kindURI:
		return n.Value != nil && n.Value.Kind == fhir.String && n.Value.Text == v
	case kindDate:
		prefix, s := v[:2], v[2:]
		pl, ph := oracleRange(s)
		w := 0.0
		if prefix == "ap" {
			w = math.Abs(float64(now().UnixMilli())-(pl+ph)/2) / 10
		}
		for _, rg := range o.dateRanges(p, n) {
			if oracleDate(prefix, rg[0], rg[1], pl, ph, w) {
				return true
			}
		}
		return false
	case kindNumber, kindQuantity:
		prefix, rest := v[:2], v[2:]
		numText, unitSys, unitCode := rest, "", ""
		parts, _ := splitValue(rest)
		if len(parts) == 3 {
			numText, unitSys, unitCode = parts[0], parts[1], parts[2]
		}
		x, ok := nodeNumber(p, n)
		if !ok {
			return false
		}
		if p.kind == kindQuantity && unitCode != "" {
			q := n.Value
			code := q.Str("code")
			if unitSys != "" {
				if q.Str("system") != unitSys || (code != unitCode && !(code == "" && q.Str("unit") == unitCode)) {
					return false
				}
			} else if code != unitCode && q.Str("unit") != unitCode {
				return false
			}
		}
		return oracleNumber(prefix, x, numText)
	}
	return false
}

func joinEsc(parts []string) string {
	for i := range parts {
		parts[i] = escv(parts[i])
	}
	return strings.Join(parts, "|")
}

func nodeNumber(p *param, n fhirpath.Node) (float64, bool) {
	v := n.Value
	if v == nil {
		return 0, false
	}
	if p.kind == kindQuantity {
		if v.Kind != fhir.Object {
			return 0, false
		}
		v = v.Get("value")
		if v == nil {
			return 0, false
		}
	}
	if v.Kind != fhir.Number {
		return 0, false
	}
	f, err := strconv.ParseFloat(v.Text, 64)
	return f, err == nil
}

// oracleRange is the range of instants a date text stands for, in ms.
func oracleRange(s string) (float64, float64) {
	var start, end time.Time
	switch len(s) {
	case 4:
		y, _ := strconv.Atoi(s)
		start = time.Date(y, 1, 1, 0, 0, 0, 0, time.UTC)
		end = start.AddDate(1, 0, 0)
	case 7:
		start, _ = time.Parse("2006-01", s)
		end = start.AddDate(0, 1, 0)
	case 10:
		start, _ = time.Parse("2006-01-02", s)
		end = start.AddDate(0, 0, 1)
	default:
		var err error
		if start, err = time.Parse(time.RFC3339Nano, s); err != nil {
			panic("oracle: date " + s)
		}
		end = start.Add(time.Second)
		if i := strings.IndexByte(s, '.'); i >= 0 {
			d := 0
			for _, c := range s[i+1:] {
				if c < '0' || c > '9' {
					break
				}
				d++
			}
			end = start.Add(time.Duration(math.Pow10(9-min(d, 3))) * time.Nanosecond)
		}
	}
	return float64(start.UnixMilli()), float64(end.UnixMilli()) - 1
}

// dateRanges returns the ranges a date node stands for.
func (o *oracle) dateRanges(p *param, n fhirpath.Node) [][2]float64 {
	v := n.Value
	if v == nil {
		return nil
	}
	one := func(s string) [][2]float64 {
		if identifyingDates[p.code] {
			s = s[:min(len(s), 10)]
		}
		lo, hi := oracleRange(s)
		return [][2]float64{{lo, hi}}
	}
	if v.Kind == fhir.String {
		return one(v.Text)
	}
	if v.Kind != fhir.Object || n.Type == nil {
		return nil
	}
	switch n.Type.Name {
	case "Period":
		lo, hi := math.Inf(-1), math.Inf(1)
		if s := v.Str("start"); s != "" {
			lo, _ = oracleRange(s)
		}
		if e := v.Str("end"); e != "" {
			_, hi = oracleRange(e)
		}
		if v.Str("start") == "" && v.Str("end") == "" {
			return nil
		}
		return [][2]float64{{lo, hi}}
	case "Timing":
		var out [][2]float64
		if ev := v.Get("event"); ev != nil {
			for i := range ev.Items {
				out = append(out, one(ev.Items[i].Text)...)
			}
		}
		if b := v.Get("repeat").Get("boundsPeriod"); b != nil {
			out = append(out, o.dateRanges(p, fhirpath.Node{Value: b, Type: fhir.Type("Period")})...)
		}
		return out
	}
	return nil
}

// oracleDate is R4's rule for a date prefix (see the search page, 3.1.1.4.4).
func oracleDate(prefix string, lo, hi, pl, ph, w float64) bool {
	contained := pl <= lo && hi <= ph
	switch prefix {
	case "eq":
		return contained
	case "ne":
		return !contained
	case "gt":
		return hi > ph
	case "lt":
		return lo < pl
	case "ge":
		return hi > ph || contained
	case "le":
		return lo < pl || contained
	case "sa":
		return lo > ph
	case "eb":
		return hi < pl
	case "ap":
		return hi >= pl-w && lo <= ph+w
	}
	panic("oracle: prefix " + prefix)
}

// oracleNumber is R4's rule for a number prefix: eq within the value's
// significant figures, the others exact, ap within 10%.
func oracleNumber(prefix string, x float64, text string) bool {
	v, _ := strconv.ParseFloat(text, 64)
	dec := 0
	if i := strings.IndexByte(text, '.'); i >= 0 {
		dec = len(text) - i - 1
	}
	half := 0.5 * math.Pow10(-dec)
	switch prefix {
	case "eq":
		return v-half <= x && x < v+half
	case "ne":
		return !(v-half <= x && x < v+half)
	case "gt", "sa":
		return x > v
	case "lt", "eb":
		return x < v
	case "ge":
		return x >= v
	case "le":
		return x <= v
	case "ap":
		w := math.Max(math.Abs(v)/10, half)
		return v-w <= x && x <= v+w
	}
	panic("oracle: prefix " + prefix)
}

// hasValue reports whether a node gives the parameter something to match:
// what :missing=false asks for.
func (o *oracle) hasValue(p *param, n fhirpath.Node) bool {
	v := n.Value
	if v == nil {
		return false
	}
	switch p.kind {
	case kindToken:
		if len(tokenForms(n)) > 0 {
			return true
		}
		for _, t := range tokenTexts(n) {
			if fold(t) != "" {
				return true
			}
		}
		return false
	case kindString:
		for _, s := range stringParts(n) {
			if s != "" {
				return true
			}
		}
		return false
	case kindReference:
		if v.Kind == fhir.String {
			return v.Text != ""
		}
		if v.Kind == fhir.Object && n.Type != nil && n.Type.Kind == fhir.KindResource {
			return fhir.ValidID(v.Str("id"))
		}
		ref := v.Str("reference")
		return ref != "" && ref[0] != '#'
	case kindURI:
		return v.Kind == fhir.String && v.Text != ""
	case kindDate:
		if identifyingDates[p.code] {
			return v.Kind == fhir.String && len(v.Text) >= 4
		}
		return len(o.dateRanges(p, n)) > 0
	case kindNumber, kindQuantity:
		_, ok := nodeNumber(p, n)
		return ok
	}
	return false
}

// checkOrder checks that the matches come in the order of g's first
// sort key: by the least start (or, descending, the greatest end) of the
// parameter's values, resources without a value last.
func (o *oracle) checkOrder(g *gen, got []string) error {
	key := func(ref string) (float64, bool) {
		typ, id, _ := strings.Cut(ref, "/")
		res := o.s.all[typ][id]
		best, found := math.Inf(1), false
		if g.desc {
			best = math.Inf(-1)
		}
		for _, n := range o.nodes(g.sort.p, res) {
			var rs [][2]float64
			if g.sort.p.kind == kindDate {
				rs = o.dateRanges(g.sort.p, n)
			} else if x, ok := nodeNumber(g.sort.p, n); ok {
				rs = [][2]float64{{x, x}}
			}
			for _, rg := range rs {
				found = true
				if g.desc {
					best = math.Max(best, rg[1])
				} else {
					best = math.Min(best, rg[0])
				}
			}
		}
		return best, found
	}
	prev, prevFound := 0.0, true
	for i, ref := range got {
		k, found := key(ref)
		if i > 0 {
			switch {
			case found && !prevFound:
				return fmt.Errorf("%s has a sort value but comes after one without", ref)
			case found && prevFound && !g.desc && k < prev, found && prevFound && g.desc && k > prev:
				return fmt.Errorf("%s (%v) is out of order after %v", ref, k, prev)
			}
		}
		prev, prevFound = k, found
	}
	return nil
}

// TestIdentifyingDates checks birth dates, which are indexed only as
// hashes of their year, month and day, against the R4 rule for every
// prefix, for dates of each precision and search values of each
// precision around them.
func TestIdentifyingDates(t *testing.T) {
	ix := NewIndexer(testKey, testRowID)
	now = func() time.Time { return time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC) }
	defer func() { now = time.Now }()
	births := []string{"1970", "1970-05", "1970-05-12", "1970-12-31", "1971-01-01", "1969-12", "1700-01-01", "2250", "1800-03-04", "2024-02-29"}
	var values []string
	for _, y := range []string{"1969", "1970", "1971", "1850"} {
		values = append(values, y)
		for _, m := range []string{"01", "05", "12"} {
			values = append(values, y+"-"+m)
			for _, d := range []string{"01", "11", "12", "13", "31"} {
				if _, _, _, ok := searchDate(y + "-" + m + "-" + d); ok {
					values = append(values, y+"-"+m+"-"+d)
				}
			}
		}
	}
	checked := 0
	for _, b := range births {
		res := parseJSON(t, []byte(`{"resourceType":"Patient","id":"p","birthDate":"`+b+`"}`))
		toks := ix.Tokens(res)
		lo, hi := oracleRange(b)
		for _, v := range values {
			pl, ph := oracleRange(v)
			for _, prefix := range valuePrefixes {
				q, err := ix.Parse("Patient", url.Values{"birthdate": {prefix + v}}, true)
				if err != nil {
					t.Fatal(err)
				}
				h := ix.pool.Get().(*hasher)
				cond, _, err := compileLocal(h, q.Clauses[0])
				ix.pool.Put(h)
				if err != nil {
					t.Fatalf("birthdate=%s%s: %v", prefix, v, err)
				}
				got := false
				for _, c := range cond.Tokens {
					got = got || contains(toks, []store.Token{c})
				}
				w := 0.0
				if prefix == "ap" {
					w = math.Abs(float64(now().UnixMilli())-(pl+ph)/2) / 10
				}
				if want := oracleDate(prefix, lo, hi, pl, ph, w); got != want {
					t.Errorf("birthDate %s, birthdate=%s%s: matched %v, want %v", b, prefix, v, got, want)
				}
				checked++
			}
		}
	}
	t.Logf("%d (date, value, prefix) checked", checked)
	// Ranges must lie within the window; equality need not.
	for _, q := range []string{"birthdate=lt1750", "birthdate=ge2300-01-01", "birthdate=ap1801"} {
		v, _ := url.ParseQuery(q)
		pq, err := ix.Parse("Patient", v, true)
		if err == nil {
			h := ix.pool.Get().(*hasher)
			_, _, err = compileLocal(h, pq.Clauses[0])
			ix.pool.Put(h)
		}
		if !errors.Is(err, ErrDateWindow) {
			t.Errorf("%s: %v, want ErrDateWindow", q, err)
		}
	}
}
