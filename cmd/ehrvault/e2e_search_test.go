package main

// End-to-end tests of FHIR search over HTTP, as a client sees it, against
// the smart-r4-2019 Synthea patients. Every expected answer is computed
// here from the Bundle files (read with encoding/json, urn:uuid references
// mapped to Type/id as the import rewrites them) by the R4 search rules,
// never by asking the engine.

import (
	"encoding/json"
	"maps"
	"math"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"
	"unicode"

	"golang.org/x/text/unicode/norm"

	"github.com/ehrvault/ehrvault/internal/sharedtest"
)

// synData is the smart-r4-2019 data as the test reads it.
type synData struct {
	res    map[string]map[string]any // "Type/id" → resource, references resolved
	byType map[string][]string       // type → keys, in file order
	bundle map[string][]string       // patient id → keys of the resources in its Bundle
}

// loadSynthea reads the transaction Bundles of dir.
func loadSynthea(t *testing.T, dir string) *synData {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(dir, "*.json"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no bundles in %s", dir)
	}
	type entry struct {
		FullURL  string         `json:"fullUrl"`
		Resource map[string]any `json:"resource"`
	}
	var bundles [][]entry
	urls := map[string]string{}
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		var b struct {
			Entry []entry `json:"entry"`
		}
		if err := json.Unmarshal(data, &b); err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		for _, e := range b.Entry {
			if e.FullURL != "" {
				urls[e.FullURL] = keyOf(e.Resource)
			}
		}
		bundles = append(bundles, b.Entry)
	}
	d := &synData{res: map[string]map[string]any{}, byType: map[string][]string{}, bundle: map[string][]string{}}
	for i, b := range bundles {
		pid := ""
		var keys []string
		for _, e := range b {
			resolveRefs(e.Resource, urls)
			k := keyOf(e.Resource)
			if _, dup := d.res[k]; !dup {
				d.res[k] = e.Resource
				typ, _, _ := strings.Cut(k, "/")
				d.byType[typ] = append(d.byType[typ], k)
			}
			if typ, id, _ := strings.Cut(k, "/"); typ == "Patient" {
				pid = id
			}
			keys = append(keys, k)
		}
		if pid == "" {
			t.Fatalf("%s holds no Patient", files[i])
		}
		d.bundle[pid] = keys
	}
	return d
}

func keyOf(res map[string]any) string {
	typ, _ := res["resourceType"].(string)
	id, _ := res["id"].(string)
	return typ + "/" + id
}

// resolveRefs rewrites urn:uuid references to the Type/id of their target.
func resolveRefs(x any, urls map[string]string) {
	switch v := x.(type) {
	case map[string]any:
		for k, e := range v {
			if s, ok := e.(string); ok && k == "reference" && strings.HasPrefix(s, "urn:uuid:") {
				if to, ok := urls[s]; ok {
					v[k] = to
				}
				continue
			}
			resolveRefs(e, urls)
		}
	case []any:
		for _, e := range v {
			resolveRefs(e, urls)
		}
	}
}

// literalRefs returns the references in x, skipping contained resources.
func literalRefs(x any) []string {
	var out []string
	var walk func(any)
	walk = func(x any) {
		switch v := x.(type) {
		case map[string]any:
			for k, e := range v {
				if k == "contained" {
					continue
				}
				if s, ok := e.(string); ok && k == "reference" {
					out = append(out, s)
					continue
				}
				walk(e)
			}
		case []any:
			for _, e := range v {
				walk(e)
			}
		}
	}
	walk(x)
	return out
}

// textAt returns the string at a path of nested objects.
func textAt(m map[string]any, path ...string) string {
	var cur any = m
	for _, p := range path {
		o, ok := cur.(map[string]any)
		if !ok {
			return ""
		}
		cur = o[p]
	}
	s, _ := cur.(string)
	return s
}

func objects(m map[string]any, name string) []map[string]any {
	arr, _ := m[name].([]any)
	var out []map[string]any
	for _, x := range arr {
		if o, ok := x.(map[string]any); ok {
			out = append(out, o)
		}
	}
	return out
}

func texts(x any) []string {
	switch v := x.(type) {
	case string:
		return []string{v}
	case []any:
		var out []string
		for _, e := range v {
			if s, ok := e.(string); ok {
				out = append(out, s)
			}
		}
		return out
	}
	return nil
}

// find returns the keys of typ whose resources pred accepts.
func (d *synData) find(typ string, pred func(map[string]any) bool) []string {
	var out []string
	for _, k := range d.byType[typ] {
		if pred(d.res[k]) {
			out = append(out, k)
		}
	}
	return out
}

// patientByFamily returns the id of the one patient with family name f.
func (d *synData) patientByFamily(t *testing.T, f string) string {
	t.Helper()
	ks := d.find("Patient", func(p map[string]any) bool { return slices.Contains(familyNames(p), f) })
	if len(ks) != 1 {
		t.Fatalf("%d patients named %s in the data", len(ks), f)
	}
	return strings.TrimPrefix(ks[0], "Patient/")
}

func (d *synData) observationsOf(pid string) []string {
	return d.find("Observation", func(o map[string]any) bool { return textAt(o, "subject", "reference") == "Patient/"+pid })
}

func familyNames(p map[string]any) []string {
	var out []string
	for _, n := range objects(p, "name") {
		out = append(out, texts(n["family"])...)
	}
	return out
}

// nameParts returns every string of every HumanName: what name matches.
func nameParts(p map[string]any) []string {
	var out []string
	for _, n := range objects(p, "name") {
		for _, f := range []string{"text", "family", "given", "prefix", "suffix"} {
			out = append(out, texts(n[f])...)
		}
	}
	return out
}

// foldCase makes a string case- and accent-insensitive, as string search is.
func foldCase(s string) string {
	var b strings.Builder
	for _, r := range norm.NFKD.String(s) {
		if !unicode.Is(unicode.Mn, r) {
			b.WriteRune(unicode.ToLower(r))
		}
	}
	return strings.Join(strings.Fields(b.String()), " ")
}

func anyPrefix(vals []string, q string) bool {
	for _, v := range vals {
		if strings.HasPrefix(foldCase(v), foldCase(q)) {
			return true
		}
	}
	return false
}

func hasIdentifier(p map[string]any, system, value string) bool {
	for _, id := range objects(p, "identifier") {
		if (system == "*" || textAt(id, "system") == system) && (value == "*" || textAt(id, "value") == value) {
			return true
		}
	}
	return false
}

// identifierValue returns the value of p's identifier in system.
func identifierValue(t *testing.T, p map[string]any, system string) string {
	t.Helper()
	for _, id := range objects(p, "identifier") {
		if textAt(id, "system") == system {
			return textAt(id, "value")
		}
	}
	t.Fatalf("%s has no identifier in %s", keyOf(p), system)
	return ""
}

func codings(cc map[string]any) [][2]string {
	var out [][2]string
	for _, c := range objects(cc, "coding") {
		out = append(out, [2]string{textAt(c, "system"), textAt(c, "code")})
	}
	return out
}

func hasCode(o map[string]any, elem, system, code string) bool {
	var ccs []map[string]any
	if arr := objects(o, elem); arr != nil {
		ccs = arr
	} else if cc, ok := o[elem].(map[string]any); ok {
		ccs = []map[string]any{cc}
	}
	for _, cc := range ccs {
		for _, c := range codings(cc) {
			if c[1] == code && (system == "*" || c[0] == system) {
				return true
			}
		}
	}
	return false
}

// The R4 prefixes of ordered values.
var searchPrefixes = []string{"eq", "ne", "gt", "lt", "ge", "le", "sa", "eb", "ap"}

func cutPrefix(v string) (prefix, rest string) {
	if len(v) >= 2 && slices.Contains(searchPrefixes, v[:2]) {
		return v[:2], v[2:]
	}
	return "eq", v
}

// dateSpan is the range of instants [lo, hi) a date, dateTime or instant, or
// a date search value, stands for at its precision.
func dateSpan(t *testing.T, s string) (lo, hi time.Time) {
	t.Helper()
	var err error
	switch len(s) {
	case 4:
		lo, err = time.Parse("2006", s)
		hi = lo.AddDate(1, 0, 0)
	case 7:
		lo, err = time.Parse("2006-01", s)
		hi = lo.AddDate(0, 1, 0)
	case 10:
		lo, err = time.Parse("2006-01-02", s)
		hi = lo.AddDate(0, 0, 1)
	default:
		lo, err = time.Parse(time.RFC3339, s)
		hi = lo.Add(time.Second)
	}
	if err != nil {
		t.Fatalf("test date %q: %v", s, err)
	}
	return lo, hi
}

// dateMatches is the R4 comparison of a target's range with a search
// value's range (search.html, 3.1.1.4.2 date).
func dateMatches(prefix string, tlo, thi, qlo, qhi time.Time) bool {
	in := !tlo.Before(qlo) && !thi.After(qhi)
	switch prefix {
	case "eq":
		return in
	case "ne":
		return !in
	case "gt":
		return thi.After(qhi)
	case "lt":
		return tlo.Before(qlo)
	case "ge":
		return thi.After(qhi) || in
	case "le":
		return tlo.Before(qlo) || in
	case "sa":
		return !tlo.Before(qhi)
	case "eb":
		return !thi.After(qlo)
	}
	panic("test uses prefix " + prefix)
}

// dateSearch reports whether the date s matches the search value v (ORed
// values separated by commas).
func dateSearch(t *testing.T, s, v string) bool {
	if s == "" {
		return false
	}
	tlo, thi := dateSpan(t, s)
	for _, one := range strings.Split(v, ",") {
		p, rest := cutPrefix(one)
		qlo, qhi := dateSpan(t, rest)
		if dateMatches(p, tlo, thi, qlo, qhi) {
			return true
		}
	}
	return false
}

// numberMatches is the R4 comparison of a number x with a search value:
// eq within the value's precision ("100" is [99.5, 100.5)), the order
// prefixes exactly.
func numberMatches(t *testing.T, x float64, v string) bool {
	p, rest := cutPrefix(v)
	n, err := strconv.ParseFloat(rest, 64)
	if err != nil {
		t.Fatalf("test number %q", v)
	}
	decimals := 0
	if i := strings.IndexByte(rest, '.'); i >= 0 {
		decimals = len(rest) - i - 1
	}
	half := 0.5 * math.Pow10(-decimals)
	switch p {
	case "eq":
		return x >= n-half && x < n+half
	case "ne":
		return x < n-half || x >= n+half
	case "gt", "sa":
		return x > n
	case "lt", "eb":
		return x < n
	case "ge":
		return x >= n
	case "le":
		return x <= n
	}
	panic("test uses prefix " + p)
}

// searchHit is one entry of a searchset.
type searchHit struct {
	key  string // Type/id
	mode string // search.mode
	res  map[string]any
}

func hitsOf(r *response) []searchHit {
	var out []searchHit
	for _, e := range entries(r) {
		m, _ := e.(map[string]any)
		res, _ := m["resource"].(map[string]any)
		h := searchHit{key: keyOf(res), res: res}
		if s, ok := m["search"].(map[string]any); ok {
			h.mode, _ = s["mode"].(string)
		}
		out = append(out, h)
	}
	return out
}

func linkOf(r *response, rel string) string {
	links, _ := r.json["link"].([]any)
	for _, l := range links {
		if m, ok := l.(map[string]any); ok && m["relation"] == rel {
			s, _ := m["url"].(string)
			return s
		}
	}
	return ""
}

// nextPath returns the path of the next link relative to the API base, or
// "" on the last page.
func nextPath(t *testing.T, ts *testServer, r *response) string {
	t.Helper()
	next := linkOf(r, "next")
	if next == "" {
		return ""
	}
	if !strings.HasPrefix(next, ts.url+"/") {
		t.Fatalf("next link %q is not under %s", next, ts.url)
	}
	return strings.TrimPrefix(next, ts.url)
}

// searchAll runs a search and follows its next links; it returns the
// entries of every page in order and the number of pages.
func searchAll(t *testing.T, ts *testServer, path string, headers ...string) ([]searchHit, int) {
	t.Helper()
	var all []searchHit
	pages := 0
	for path != "" {
		r := ts.do("GET", path, nil, headers...)
		if r.status != 200 {
			t.Fatalf("GET %s: status %d: %.400s", path, r.status, r.body)
		}
		if r.str("resourceType") != "Bundle" || r.str("type") != "searchset" {
			t.Fatalf("GET %s: not a searchset Bundle: %.300s", path, r.body)
		}
		for _, e := range entries(r) {
			m, _ := e.(map[string]any)
			res, _ := m["resource"].(map[string]any)
			if full, _ := m["fullUrl"].(string); res["resourceType"] != "OperationOutcome" && full != ts.url+"/"+keyOf(res) {
				t.Errorf("GET %s: entry %s has fullUrl %q", path, keyOf(res), full)
			}
		}
		all = append(all, hitsOf(r)...)
		pages++
		if pages > 300 {
			t.Fatalf("GET %s: paging does not end", path)
		}
		path = nextPath(t, ts, r)
	}
	return all, pages
}

// matchKeys returns the keys of the entries with search.mode match.
func matchKeys(hits []searchHit) []string {
	return modeKeys(hits, "match")
}

func modeKeys(hits []searchHit, mode string) []string {
	var out []string
	for _, h := range hits {
		if h.mode == mode {
			out = append(out, h.key)
		}
	}
	return out
}

// checkModes fails for an entry whose search.mode is not match, include
// or outcome.
func checkModes(t *testing.T, what string, hits []searchHit) {
	t.Helper()
	for _, h := range hits {
		switch h.mode {
		case "match", "include":
		case "outcome":
			if h.res["resourceType"] != "OperationOutcome" {
				t.Errorf("%s: entry %s has search.mode outcome", what, h.key)
			}
		default:
			t.Errorf("%s: entry %s has search.mode %q", what, h.key, h.mode)
		}
	}
}

// sameSet fails unless got holds each of want once and nothing else.
func sameSet(t *testing.T, what string, got, want []string) {
	t.Helper()
	seen := map[string]bool{}
	var dups []string
	for _, g := range got {
		if seen[g] {
			dups = append(dups, g)
		}
		seen[g] = true
	}
	wantSet := map[string]bool{}
	var missing []string
	for _, w := range want {
		wantSet[w] = true
		if !seen[w] {
			missing = append(missing, w)
		}
	}
	var extra []string
	for g := range seen {
		if !wantSet[g] {
			extra = append(extra, g)
		}
	}
	sort.Strings(extra)
	if len(dups) > 0 || len(missing) > 0 || len(extra) > 0 {
		t.Errorf("%s: got %d entries, want %d; missing %d %q, unexpected %d %q, repeated %d %q",
			what, len(got), len(wantSet), len(missing), firstFew(missing), len(extra), firstFew(extra), len(dups), firstFew(dups))
	}
}

func firstFew(s []string) []string {
	if len(s) > 4 {
		return append(s[:4:4], "…")
	}
	return s
}

// qs builds a query string from name, value pairs, in order.
func qs(kv ...string) string {
	var parts []string
	for i := 0; i+1 < len(kv); i += 2 {
		parts = append(parts, url.QueryEscape(kv[i])+"="+url.QueryEscape(kv[i+1]))
	}
	return strings.Join(parts, "&")
}

// TestSearch imports the smart-r4-2019 data once and runs the searches of
// a client against it. The expected answers come from the Bundle files.
func TestSearch(t *testing.T) {
	ts := newTestServer(t)
	dir := sharedtest.Dir(t, "testdata", "synthea", "smart-r4-2019")
	importAll(t, ts, dir)
	d := loadSynthea(t, dir)
	sub := func(t *testing.T, run func(*testing.T, *testServer, *synData)) {
		s := *ts // fail this subtest, not the parent, on a broken response
		s.t = t
		run(t, &s, d)
	}
	// The readers run in parallel; then the writes change the data.
	t.Run("read", func(t *testing.T) {
		for _, c := range []struct {
			name string
			run  func(*testing.T, *testServer, *synData)
		}{
			{"Patients", testSearchPatients},
			{"Observations", testSearchObservations},
			{"PagingAndShape", testSearchPagingAndShape},
			{"ChainsAndIncludes", testSearchChainsAndIncludes},
			{"Everything", testSearchEverything},
			{"Errors", testSearchErrors},
			{"More", testSearchMore},
		} {
			t.Run(c.name, func(t *testing.T) {
				t.Parallel()
				sub(t, c.run)
			})
		}
	})
	t.Run("Writes", func(t *testing.T) { sub(t, testSearchAfterWrites) })
}

func testSearchPatients(t *testing.T, ts *testServer, d *synData) {
	abdul := d.res["Patient/"+d.patientByFamily(t, "Koepp")]
	ssn := identifierValue(t, abdul, "http://hl7.org/fhir/sid/us-ssn")
	mrn := identifierValue(t, abdul, "http://hospital.smarthealthit.org")
	bd := textAt(abdul, "birthDate")
	towne := d.find("Patient", func(p map[string]any) bool { return slices.Contains(familyNames(p), "Towne") })
	birth := func(v string) func(map[string]any) bool {
		return func(p map[string]any) bool { return dateSearch(t, textAt(p, "birthDate"), v) }
	}
	family := func(q string) func(map[string]any) bool {
		return func(p map[string]any) bool { return anyPrefix(familyNames(p), q) }
	}
	and := func(fs ...func(map[string]any) bool) func(map[string]any) bool {
		return func(p map[string]any) bool {
			for _, f := range fs {
				if !f(p) {
					return false
				}
			}
			return true
		}
	}
	ida, idb := strings.TrimPrefix(d.byType["Patient"][3], "Patient/"), strings.TrimPrefix(d.byType["Patient"][17], "Patient/")
	type patientCase struct {
		query string
		want  func(p map[string]any) bool
		none  bool // the data has no match
	}
	cases := []patientCase{
		{qs("identifier", "http://hl7.org/fhir/sid/us-ssn|"+ssn), func(p map[string]any) bool { return hasIdentifier(p, "http://hl7.org/fhir/sid/us-ssn", ssn) }, false},
		{qs("identifier", ssn), func(p map[string]any) bool { return hasIdentifier(p, "*", ssn) }, false},
		{qs("identifier", "http://hospital.smarthealthit.org|"+mrn), func(p map[string]any) bool { return hasIdentifier(p, "http://hospital.smarthealthit.org", mrn) }, false},
		{qs("identifier", "http://hospital.smarthealthit.org|"+ssn), nil, true},
		{qs("identifier", "|"+ssn), nil, true}, // the SSN has a system
		{qs("identifier", "urn:oid:2.16.840.1.113883.4.3.25|"), func(p map[string]any) bool { return hasIdentifier(p, "urn:oid:2.16.840.1.113883.4.3.25", "*") }, false},
		{qs("family", "koe"), family("koe"), false},
		{qs("family", "KOEPP"), family("KOEPP"), false},
		{qs("family", "towne"), family("towne"), false},
		{qs("family", "Médi"), family("medi"), false},
		{qs("family", "deck"), family("deck"), false}, // maiden names
		{qs("family", "o'rei"), family("o'rei"), false},
		{qs("family", "towne,koepp"), func(p map[string]any) bool { return family("towne")(p) || family("koepp")(p) }, false},
		{qs("name", "maria"), func(p map[string]any) bool { return anyPrefix(nameParts(p), "maría") }, false},
		{qs("name", "MARÍA EUGENIA"), func(p map[string]any) bool { return anyPrefix(nameParts(p), "maria eugenia") }, false},
		{qs("family:exact", "Towne"), func(p map[string]any) bool { return slices.Contains(familyNames(p), "Towne") }, false},
		{qs("family:exact", "towne"), nil, true},
		{qs("family:exact", "Town"), nil, true},
		{qs("given:exact", "María Eugenia"), func(p map[string]any) bool {
			for _, n := range objects(p, "name") {
				if slices.Contains(texts(n["given"]), "María Eugenia") {
					return true
				}
			}
			return false
		}, false},
		{qs("family:contains", "ULL"), func(p map[string]any) bool {
			for _, f := range familyNames(p) {
				if strings.Contains(foldCase(f), "ull") {
					return true
				}
			}
			return false
		}, false},
		{qs("family:contains", "eck"), func(p map[string]any) bool {
			for _, f := range familyNames(p) {
				if strings.Contains(foldCase(f), "eck") {
					return true
				}
			}
			return false
		}, false},
		{qs("birthdate", bd), birth(bd), false},
		{qs("birthdate", "1913-01-13"), birth("1913-01-13"), false},
		{qs("birthdate", "1980"), birth("1980"), false},
		{qs("birthdate", "1980-10"), birth("1980-10"), false},
		{qs("birthdate", "1913-01-13,1980-05-29"), birth("1913-01-13,1980-05-29"), false},
		{qs("birthdate", "lt1950-01-01"), birth("lt1950-01-01"), false},
		{qs("birthdate", "le1980-05-29"), birth("le1980-05-29"), false},
		{qs("birthdate", "gt1980-05-29"), birth("gt1980-05-29"), false},
		{qs("birthdate", "ge2000"), birth("ge2000"), false},
		{qs("birthdate", "ge1995-01"), birth("ge1995-01"), false},
		{qs("birthdate", "sa1995-01-08"), birth("sa1995-01-08"), false},
		{qs("birthdate", "eb1936-08-18"), birth("eb1936-08-18"), false},
		{qs("birthdate", "ne1913-01-13"), birth("ne1913-01-13"), false},
		{qs("birthdate", "ge1950", "birthdate", "lt1960"), and(birth("ge1950"), birth("lt1960")), false},
		{qs("birthdate", "ge1980-05-29", "birthdate", "le1980-05-29"), birth("1980-05-29"), false},
	}
	for _, v := range []string{"le1980", "gt1980", "lt1980-05", "sa1980-05", "eb1980-06", "ge1980-05-29", "ne1980", "ne1980-10",
		"ge1913-01-14", "lt1913-01-14", "gt1913-01-13", "eb1913-01-14", "ge2019-09", "le2019-09-25", "sa2019-09-25", "gt2019-09-26", "lt1913"} {
		cases = append(cases, patientCase{qs("birthdate", v), birth(v), v == "gt2019-09-26" || v == "lt1913"})
	}
	cases = append(cases, []patientCase{
		{qs("gender", "female"), func(p map[string]any) bool { return p["gender"] == "female" }, false},
		{qs("gender:not", "male"), func(p map[string]any) bool { return p["gender"] != "male" }, false},
		{qs("_id", ida+","+idb), func(p map[string]any) bool { return p["id"] == ida || p["id"] == idb }, false},
		{qs("_id", ida+",no-such-patient"), func(p map[string]any) bool { return p["id"] == ida }, false},
		{qs("name", "towne", "name", "tyrell"), and(func(p map[string]any) bool { return anyPrefix(nameParts(p), "towne") }, func(p map[string]any) bool { return anyPrefix(nameParts(p), "tyrell") }), false},
		{qs("family", "towne", "gender", "female"), and(family("towne"), func(p map[string]any) bool { return p["gender"] == "female" }), false},
		{qs("death-date:missing", "true"), func(p map[string]any) bool { return p["deceasedDateTime"] == nil }, false},
		{qs("death-date:missing", "false"), func(p map[string]any) bool { return p["deceasedDateTime"] != nil }, false},
		{qs("death-date", "ge2000"), func(p map[string]any) bool { return dateSearch(t, textAt(p, "deceasedDateTime"), "ge2000") }, false},
	}...)
	for _, c := range cases {
		var want []string
		if c.want != nil {
			want = d.find("Patient", c.want)
		}
		if c.none != (len(want) == 0) || len(want) == len(d.byType["Patient"]) {
			t.Errorf("Patient?%s: the data has %d of %d patients matching: a weak case", c.query, len(want), len(d.byType["Patient"]))
		}
		hits, _ := searchAll(t, ts, "/Patient?"+c.query)
		checkModes(t, c.query, hits)
		sameSet(t, "Patient?"+c.query, matchKeys(hits), want)
	}
	if len(towne) != 2 {
		t.Errorf("the data has %d Townes", len(towne))
	}

	// POST _search with a form gives what GET gives; the query string and
	// the body are merged.
	get, _ := searchAll(t, ts, "/Patient?"+qs("family", "towne", "gender", "female"))
	for _, c := range []struct{ path, body string }{
		{"/Patient/_search", qs("family", "towne", "gender", "female")},
		{"/Patient/_search?gender=female", qs("family", "towne")},
	} {
		r := ts.do("POST", c.path, c.body, "Content-Type", "application/x-www-form-urlencoded").want(t, 200)
		sameSet(t, "POST "+c.path+" "+c.body, matchKeys(hitsOf(r)), matchKeys(get))
	}
	if len(get) == 0 {
		t.Error("no female Towne")
	}
	// A POSTed search pages by GET.
	r := ts.do("POST", "/Patient/_search", "_count=10", "Content-Type", "application/x-www-form-urlencoded").want(t, 200)
	all := matchKeys(hitsOf(r))
	if next := nextPath(t, ts, r); next != "" {
		more, _ := searchAll(t, ts, next)
		all = append(all, matchKeys(more)...)
	}
	sameSet(t, "POST /Patient/_search _count=10, then next links", all, d.byType["Patient"])
}

func testSearchObservations(t *testing.T, ts *testServer, d *synData) {
	pid := d.patientByFamily(t, "Koepp")
	mine := d.observationsOf(pid)
	if len(mine) < 50 {
		t.Fatalf("Koepp has %d observations", len(mine))
	}
	obs := func(pred func(o map[string]any) bool) []string {
		var out []string
		for _, k := range mine {
			if pred(d.res[k]) {
				out = append(out, k)
			}
		}
		return out
	}
	const weight = "29463-7" // Body Weight, kg
	isWeight := func(o map[string]any) bool { return hasCode(o, "code", "http://loinc.org", weight) }
	when := func(o map[string]any) string { return textAt(o, "effectiveDateTime") }
	inRange := func(o map[string]any) bool {
		return dateSearch(t, when(o), "ge2013-01-01T00:00:00Z") && dateSearch(t, when(o), "lt2018-01-01T00:00:00Z")
	}
	qty := func(o map[string]any) (float64, string, string, bool) {
		q, ok := o["valueQuantity"].(map[string]any)
		if !ok {
			return 0, "", "", false
		}
		v, ok := q["value"].(float64)
		return v, textAt(q, "system"), textAt(q, "code"), ok
	}
	quantity := func(v, system, code string) func(o map[string]any) bool {
		return func(o map[string]any) bool {
			x, s, c, ok := qty(o)
			return ok && (system == "" || s == system) && (code == "" || c == code) && numberMatches(t, x, v)
		}
	}
	var someWeight float64
	for _, k := range mine {
		if x, _, _, ok := qty(d.res[k]); ok && isWeight(d.res[k]) {
			someWeight = x
			break
		}
	}
	oneDecimal := strconv.FormatFloat(someWeight, 'f', 1, 64)
	rounded, _ := strconv.ParseFloat(oneDecimal, 64)
	exponent := strconv.FormatFloat(rounded, 'e', -1, 64) // 8.74e+01
	subj := "subject=" + url.QueryEscape("Patient/"+pid)
	cases := []struct {
		query string
		want  func(o map[string]any) bool
	}{
		{qs("code", "http://loinc.org|"+weight), isWeight},
		{qs("code", "http://loinc.org|"+weight, "date", "ge2013-01-01T01:00:00+01:00", "date", "lt2017-12-31T19:00:00-05:00"), func(o map[string]any) bool { return isWeight(o) && inRange(o) }},
		{qs("value-quantity", "gt"+exponent+"|http://unitsofmeasure.org|kg"), quantity("gt"+oneDecimal, "http://unitsofmeasure.org", "kg")},
		{qs("code", weight), func(o map[string]any) bool { return hasCode(o, "code", "*", weight) }},
		{qs("code", "http://loinc.org|"+weight, "date", "ge2013-01-01T00:00:00Z", "date", "lt2018-01-01T00:00:00Z"), func(o map[string]any) bool { return isWeight(o) && inRange(o) }},
		{qs("date", "ge2013-01-01T00:00:00Z", "date", "lt2018-01-01T00:00:00Z"), inRange},
		{qs("date", "sa2015-01-01T00:00:00Z"), func(o map[string]any) bool { return dateSearch(t, when(o), "sa2015-01-01T00:00:00Z") }},
		{qs("code:not", "http://loinc.org|8302-2"), func(o map[string]any) bool { return !hasCode(o, "code", "http://loinc.org", "8302-2") }},
		{qs("category", "vital-signs"), func(o map[string]any) bool { return hasCode(o, "category", "*", "vital-signs") }},
		{qs("category", "http://terminology.hl7.org/CodeSystem/observation-category|laboratory"), func(o map[string]any) bool {
			return hasCode(o, "category", "http://terminology.hl7.org/CodeSystem/observation-category", "laboratory")
		}},
		{qs("value-quantity", "gt80"), quantity("gt80", "", "")},
		{qs("value-quantity", "gt80|http://unitsofmeasure.org|kg"), quantity("gt80", "http://unitsofmeasure.org", "kg")},
		{qs("value-quantity", "gt80||kg"), quantity("gt80", "", "kg")},
		{qs("value-quantity", "le"+oneDecimal+"|http://unitsofmeasure.org|kg"), quantity("le"+oneDecimal, "http://unitsofmeasure.org", "kg")},
		{qs("value-quantity", "gt"+oneDecimal+"|http://unitsofmeasure.org|kg"), quantity("gt"+oneDecimal, "http://unitsofmeasure.org", "kg")},
		{qs("value-quantity", "lt100|http://unitsofmeasure.org|mg/dL"), quantity("lt100", "http://unitsofmeasure.org", "mg/dL")},
		{qs("value-quantity", oneDecimal+"|http://unitsofmeasure.org|kg"), quantity(oneDecimal, "http://unitsofmeasure.org", "kg")},
		{qs("value-quantity", "ne"+oneDecimal+"|http://unitsofmeasure.org|kg"), quantity("ne"+oneDecimal, "http://unitsofmeasure.org", "kg")},
		{qs("value-quantity:missing", "true"), func(o map[string]any) bool { _, _, _, ok := qty(o); return !ok }},
		{qs("value-quantity:missing", "false"), func(o map[string]any) bool { _, _, _, ok := qty(o); return ok }},
	}
	for _, c := range cases {
		want := obs(c.want)
		q := subj + "&" + c.query
		if len(want) == 0 || len(want) == len(mine) {
			t.Errorf("Observation?%s: %d of %d observations match: a weak case", q, len(want), len(mine))
		}
		hits, _ := searchAll(t, ts, "/Observation?"+q+"&_count=200")
		checkModes(t, q, hits)
		sameSet(t, "Observation?"+q, matchKeys(hits), want)
	}

	// Sorting by date, both ways, over a date range.
	base := subj + "&" + qs("code", "http://loinc.org|"+weight, "date", "ge2013-01-01T00:00:00Z", "date", "lt2018-01-01T00:00:00Z")
	var wantTimes []string
	for _, k := range obs(func(o map[string]any) bool { return isWeight(o) && inRange(o) }) {
		wantTimes = append(wantTimes, when(d.res[k]))
	}
	sort.Slice(wantTimes, func(i, j int) bool { return instantOf(t, wantTimes[i]).Before(instantOf(t, wantTimes[j])) })
	for _, desc := range []bool{false, true} {
		sortKey := "date"
		want := slices.Clone(wantTimes)
		if desc {
			sortKey = "-date"
			slices.Reverse(want)
		}
		hits, _ := searchAll(t, ts, "/Observation?"+base+"&_sort="+sortKey)
		var got []string
		for _, h := range hits {
			if h.mode == "match" {
				got = append(got, when(h.res))
			}
		}
		if !slices.Equal(got, want) {
			t.Errorf("_sort=%s: effectiveDateTime order\n got %q\nwant %q", sortKey, got, want)
		}
	}

	for _, q := range []string{qs("code", "http://snomed.info/sct|"+weight), qs("code", "|"+weight)} {
		hits, _ := searchAll(t, ts, "/Observation?"+subj+"&"+q)
		sameSet(t, "Observation?"+q, matchKeys(hits), nil)
	}

	// The same patient named three ways, and through the compartment.
	ref := obs(isWeight)
	for _, p := range []string{
		"/Observation?" + qs("patient", pid, "code", "http://loinc.org|"+weight),
		"/Observation?" + qs("subject", pid, "code", "http://loinc.org|"+weight),
		"/Observation?" + qs("subject:Patient", pid, "code", "http://loinc.org|"+weight),
		"/Patient/" + pid + "/Observation?" + qs("code", "http://loinc.org|"+weight),
	} {
		hits, _ := searchAll(t, ts, p)
		sameSet(t, p, matchKeys(hits), ref)
	}
	// Every observation of the compartment, against the subject search.
	comp, _ := searchAll(t, ts, "/Patient/"+pid+"/Observation?_count=40")
	sameSet(t, "Patient/"+pid+"/Observation", matchKeys(comp), mine)
	encs := d.find("Encounter", func(e map[string]any) bool { return textAt(e, "subject", "reference") == "Patient/"+pid })
	compEnc, _ := searchAll(t, ts, "/Patient/"+pid+"/Encounter")
	sameSet(t, "Patient/"+pid+"/Encounter", matchKeys(compEnc), encs)
}

// alterCursor changes the character at pos of a base64url cursor to another
// base64url character. (The last character may carry only padding bits,
// so tests alter others.)
func alterCursor(cursor string, pos int) string {
	b := []byte(cursor)
	if b[pos] == 'A' {
		b[pos] = 'B'
	} else {
		b[pos] = 'A'
	}
	return string(b)
}

// instantOf parses an R4 dateTime with seconds.
func instantOf(t *testing.T, s string) time.Time {
	lo, _ := dateSpan(t, s)
	return lo
}

func testSearchPagingAndShape(t *testing.T, ts *testServer, d *synData) {
	pid := d.patientByFamily(t, "Koepp")
	mine := d.observationsOf(pid)
	q := qs("patient", pid)

	// One big page.
	big := ts.do("GET", "/Observation?"+q+"&_count=1000", nil).want(t, 200)
	if linkOf(big, "next") != "" {
		t.Errorf("a page holding everything has a next link")
	}
	bigKeys := matchKeys(hitsOf(big))
	sameSet(t, "Observation?"+q, bigKeys, mine)
	if _, ok := big.json["total"]; ok {
		t.Errorf("a search without _total has Bundle.total %v", big.json["total"])
	}

	// Pages of 7 add up to the big page, in its order.
	for _, sortKey := range []string{"", "-date", "date"} {
		first := "/Observation?" + q + "&_count=7"
		bigPage := big
		if sortKey != "" {
			first += "&_sort=" + sortKey
			bigPage = ts.do("GET", "/Observation?"+q+"&_count=1000&_sort="+sortKey, nil).want(t, 200)
		}
		want := matchKeys(hitsOf(bigPage))
		var got []string
		path, pages := first, 0
		for path != "" {
			r := ts.do("GET", path, nil).want(t, 200)
			pages++
			n := len(matchKeys(hitsOf(r)))
			got = append(got, matchKeys(hitsOf(r))...)
			next := nextPath(t, ts, r)
			if next != "" {
				u, err := url.Parse(next)
				if err != nil {
					t.Fatal(err)
				}
				if keys := slices.Sorted(maps.Keys(u.Query())); !slices.Equal(keys, []string{"_page"}) {
					t.Errorf("next link carries %v, want only _page", keys)
				}
				if strings.Contains(next, pid) {
					t.Errorf("next link shows the query's values: %s", next)
				}
			}
			if n > 7 {
				t.Errorf("page %d (sort %q) holds %d matches, more than _count=7", pages, sortKey, n)
			}
			path = next
			if pages > 100 {
				t.Fatal("paging does not end")
			}
		}
		if !slices.Equal(got, want) {
			t.Errorf("_sort=%q: %d pages of 7 gave %d matches in another order or with repeats than one page of %d", sortKey, pages, len(got), len(want))
		}
		if pages < (len(mine)+6)/7 {
			t.Errorf("_sort=%q: %d pages of at most 7 for %d matches", sortKey, pages, len(mine))
		}
		if sortKey != "" {
			for i := 1; i < len(got); i++ {
				a, b := instantOf(t, textAt(d.res[got[i-1]], "effectiveDateTime")), instantOf(t, textAt(d.res[got[i]], "effectiveDateTime"))
				if sortKey == "date" && b.Before(a) || sortKey == "-date" && a.Before(b) {
					t.Errorf("_sort=%s: %s comes after %s", sortKey, got[i], got[i-1])
					break
				}
			}
		}
	}

	// A tampered cursor, a cursor with other parameters, a cursor of
	// another search: 400.
	r := ts.do("GET", "/Observation?"+q+"&_count=7", nil).want(t, 200)
	next := nextPath(t, ts, r)
	u, _ := url.Parse(next)
	cursor := u.Query().Get("_page")
	if cursor == "" {
		t.Fatalf("no cursor in %q", next)
	}
	for _, pos := range []int{0, len(cursor) / 3, len(cursor) / 2, len(cursor) - 2} {
		bad := ts.do("GET", "/Observation?_page="+url.QueryEscape(alterCursor(cursor, pos)), nil).want(t, 400)
		if got := bad.str("issue.0.expression.0"); got != "_page" {
			t.Errorf("cursor altered at %d: issue expression %q, want _page (%s)", pos, got, bad.outcomeText())
		}
	}
	ts.do("GET", "/Observation?_page="+url.QueryEscape(cursor), nil).want(t, 200)
	for _, extra := range []string{"_count=7", qs("patient", pid), qs("code", "8302-2")} {
		ts.do("GET", "/Observation?_page="+url.QueryEscape(cursor)+"&"+extra, nil).want(t, 400)
	}
	ts.do("GET", "/Encounter?_page="+url.QueryEscape(cursor), nil).want(t, 400)

	// Counts.
	r = ts.do("GET", "/Observation?"+q+"&_summary=count", nil).want(t, 200)
	if got, ok := r.json["total"].(float64); !ok || int(got) != len(mine) || len(entries(r)) != 0 {
		t.Errorf("_summary=count: total %v and %d entries, want total %d and no entries", r.json["total"], len(entries(r)), len(mine))
	}
	r = ts.do("GET", "/Observation?"+q+"&_total=accurate&_count=10", nil).want(t, 200)
	if got, ok := r.json["total"].(float64); !ok || int(got) != len(mine) || len(matchKeys(hitsOf(r))) != 10 {
		t.Errorf("_total=accurate&_count=10: total %v and %d matches, want %d and 10", r.json["total"], len(matchKeys(hitsOf(r))), len(mine))
	}
	r = ts.do("GET", "/Observation?"+q+"&_count=0", nil).want(t, 200)
	if len(entries(r)) != 0 {
		t.Errorf("_count=0 gave %d entries", len(entries(r)))
	}
	if got, ok := r.json["total"].(float64); ok && int(got) != len(mine) {
		t.Errorf("_count=0: total %v, want %d", got, len(mine))
	}
	females := d.find("Patient", func(p map[string]any) bool { return p["gender"] == "female" })
	r = ts.do("GET", "/Patient?gender=female&_summary=count", nil).want(t, 200)
	if got, _ := r.json["total"].(float64); int(got) != len(females) {
		t.Errorf("Patient?gender=female&_summary=count: total %v, want %d", r.json["total"], len(females))
	}

	// _elements and _summary=true, against the StructureDefinitions.
	sd := specElements(t, "Patient", "Observation")
	mills := d.patientByFamily(t, "Mills")
	for _, c := range []struct {
		path      string
		must, may func(e elementInfo) bool // what must come back (if the source has it), what may
	}{
		{"/Patient?gender=male&_elements=id,birthDate",
			func(e elementInfo) bool { return e.name == "birthDate" },
			func(e elementInfo) bool { return e.min > 0 || e.modifier }},
		{"/Patient?gender=male&_summary=true",
			func(e elementInfo) bool { return e.summary },
			func(elementInfo) bool { return false }},
		{"/Observation?" + qs("patient", mills, "_elements", "code,value"),
			func(e elementInfo) bool { return e.name == "code" || e.name == "value" },
			func(e elementInfo) bool { return e.min > 0 || e.modifier }},
		{"/Observation?" + qs("patient", mills, "_summary", "true"),
			func(e elementInfo) bool { return e.summary },
			func(elementInfo) bool { return false }},
		{"/Patient?gender=male&_summary=text",
			func(e elementInfo) bool { return e.name == "text" || e.min > 0 },
			func(e elementInfo) bool { return e.modifier }},
		{"/Observation?" + qs("patient", mills, "_summary", "text"),
			func(e elementInfo) bool { return e.name == "text" || e.min > 0 },
			func(e elementInfo) bool { return e.modifier }},
		{"/Patient?gender=male&_summary=data",
			func(e elementInfo) bool { return e.name != "text" },
			func(elementInfo) bool { return false }},
		{"/Patient?gender=male&_summary=false",
			func(elementInfo) bool { return true },
			func(elementInfo) bool { return false }},
	} {
		hits, _ := searchAll(t, ts, c.path)
		typ := strings.TrimPrefix(c.path[:strings.IndexByte(c.path, '?')], "/")
		want := d.find("Patient", func(p map[string]any) bool { return p["gender"] == "male" })
		if typ == "Observation" {
			want = d.observationsOf(mills)
		}
		sameSet(t, c.path, matchKeys(hits), want)
		for _, h := range hits {
			src := d.res[h.key]
			for name, v := range h.res {
				if name == "resourceType" || name == "id" || name == "meta" {
					continue
				}
				e := elementOf(sd[typ], name)
				if !c.must(e) && !c.may(e) {
					t.Errorf("%s: %s has %s", c.path, h.key, name)
					continue
				}
				got, _ := json.Marshal(v)
				want, _ := json.Marshal(src[name])
				if string(got) != string(want) {
					t.Errorf("%s: %s.%s = %s, want %s", c.path, h.key, name, got, want)
				}
			}
			for name := range src {
				if name != "meta" && name != "resourceType" && c.must(elementOf(sd[typ], name)) && h.res[name] == nil {
					t.Errorf("%s: %s lacks %s", c.path, h.key, name)
				}
			}
			if h.res["id"] != src["id"] {
				t.Errorf("%s: id %v", c.path, h.res["id"])
			}
			subsetted := false
			meta, _ := h.res["meta"].(map[string]any)
			for _, tag := range objects(meta, "tag") {
				if textAt(tag, "system") == "http://terminology.hl7.org/CodeSystem/v3-ObservationValue" && textAt(tag, "code") == "SUBSETTED" {
					subsetted = true
				}
			}
			cut := false
			for name := range src {
				if name != "meta" && h.res[name] == nil {
					cut = true
				}
			}
			if subsetted != cut {
				t.Errorf("%s: %s has %d of the %d elements of the source, and SUBSETTED tag: %v", c.path, h.key, len(h.res), len(src), subsetted)
			}
		}
		// The stored resources are whole still.
		if len(hits) > 0 {
			full := ts.do("GET", "/"+hits[0].key, nil).want(t, 200)
			for name := range d.res[hits[0].key] {
				if full.json[name] == nil {
					t.Errorf("after %s, a read of %s lacks %s", c.path, hits[0].key, name)
				}
			}
		}
	}
}

// elementInfo is what the test needs of an element definition.
type elementInfo struct {
	name              string // without [x]
	choice            bool
	summary, modifier bool
	min               int
}

// specElements reads the top-level elements of types from the R4
// StructureDefinitions, by name without [x].
func specElements(t *testing.T, types ...string) map[string]map[string]elementInfo {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(sharedtest.Dir(t, "fhir-r4"), "profiles-resources.json"))
	if err != nil {
		t.Fatal(err)
	}
	var b struct {
		Entry []struct {
			Resource struct {
				ResourceType string `json:"resourceType"`
				ID           string `json:"id"`
				Snapshot     struct {
					Element []struct {
						Path       string `json:"path"`
						Min        int    `json:"min"`
						IsSummary  bool   `json:"isSummary"`
						IsModifier bool   `json:"isModifier"`
					} `json:"element"`
				} `json:"snapshot"`
			} `json:"resource"`
		} `json:"entry"`
	}
	if err := json.Unmarshal(data, &b); err != nil {
		t.Fatal(err)
	}
	out := map[string]map[string]elementInfo{}
	for _, e := range b.Entry {
		typ := e.Resource.ID
		if e.Resource.ResourceType != "StructureDefinition" || !slices.Contains(types, typ) {
			continue
		}
		out[typ] = map[string]elementInfo{}
		for _, el := range e.Resource.Snapshot.Element {
			name, ok := strings.CutPrefix(el.Path, typ+".")
			if !ok || strings.Contains(name, ".") {
				continue
			}
			base, choice := strings.CutSuffix(name, "[x]")
			out[typ][base] = elementInfo{name: base, choice: choice, summary: el.IsSummary, modifier: el.IsModifier, min: el.Min}
		}
	}
	if p := out["Patient"]; len(p) < 20 || !p["birthDate"].summary || p["text"].summary || !p["deceased"].modifier {
		t.Fatalf("Patient elements read from the spec: %v", p)
	}
	return out
}

// elementOf returns the element of a JSON member: deceasedDateTime is
// deceased, _birthDate is birthDate. An unknown member gives a zero
// element with the member's name.
func elementOf(elems map[string]elementInfo, member string) elementInfo {
	member = strings.TrimPrefix(member, "_")
	if e, ok := elems[member]; ok {
		return e
	}
	for name, e := range elems {
		if rest, ok := strings.CutPrefix(member, name); e.choice && ok && rest != "" && unicode.IsUpper(rune(rest[0])) {
			return e
		}
	}
	return elementInfo{name: member}
}

func testSearchChainsAndIncludes(t *testing.T, ts *testServer, d *synData) {
	pid := d.patientByFamily(t, "Koepp")
	subjectOf := func(o map[string]any) map[string]any { return d.res[textAt(o, "subject", "reference")] }

	// Chains.
	for _, c := range []struct {
		query string
		want  func(o map[string]any) bool
	}{
		{qs("subject:Patient.family", "Towne"), func(o map[string]any) bool {
			p := subjectOf(o)
			return p != nil && anyPrefix(familyNames(p), "towne")
		}},
		{qs("subject.name", "tyrell"), func(o map[string]any) bool {
			p := subjectOf(o)
			return p != nil && anyPrefix(nameParts(p), "tyrell")
		}},
		{qs("patient.identifier", "http://hl7.org/fhir/sid/us-ssn|"+identifierValue(t, d.res["Patient/"+pid], "http://hl7.org/fhir/sid/us-ssn")), func(o map[string]any) bool {
			return textAt(o, "subject", "reference") == "Patient/"+pid
		}},
		{qs("patient.identifier", "http://hl7.org/fhir/sid/us-ssn|000-00-0000"), func(map[string]any) bool { return false }},
		{qs("patient.birthdate", "1913-01-13", "code", "http://loinc.org|8302-2"), func(o map[string]any) bool {
			p := subjectOf(o)
			return p != nil && p["birthDate"] == "1913-01-13" && hasCode(o, "code", "http://loinc.org", "8302-2")
		}},
	} {
		want := d.find("Observation", c.want)
		hits, _ := searchAll(t, ts, "/Observation?"+c.query+"&_count=500")
		sameSet(t, "Observation?"+c.query, matchKeys(hits), want)
	}

	// Reverse chains.
	hasObs := func(system, code string) func(p map[string]any) bool {
		with := map[string]bool{}
		for _, k := range d.byType["Observation"] {
			if o := d.res[k]; hasCode(o, "code", system, code) {
				with[textAt(o, "subject", "reference")] = true
			}
		}
		return func(p map[string]any) bool { return with[keyOf(p)] }
	}
	for _, c := range []struct {
		query string
		want  func(p map[string]any) bool
	}{
		{qs("_has:Observation:patient:code", "2093-3"), hasObs("*", "2093-3")},
		{qs("_has:Observation:patient:code", "http://loinc.org|2093-3"), hasObs("http://loinc.org", "2093-3")},
		{qs("_has:Observation:subject:code", "http://loinc.org|2093-3", "gender", "female"), func(p map[string]any) bool {
			return hasObs("http://loinc.org", "2093-3")(p) && p["gender"] == "female"
		}},
		{qs("_has:Observation:patient:code", "http://loinc.org|0000-0"), func(map[string]any) bool { return false }},
	} {
		want := d.find("Patient", c.want)
		if strings.Contains(c.query, "2093-3") && (len(want) == 0 || len(want) == len(d.byType["Patient"])) {
			t.Errorf("Patient?%s: %d patients match: a weak case", c.query, len(want))
		}
		hits, _ := searchAll(t, ts, "/Patient?"+c.query)
		sameSet(t, "Patient?"+c.query, matchKeys(hits), want)
	}

	// Includes. want lists the matches; inc, the resources they include.
	encs := d.find("Encounter", func(e map[string]any) bool { return textAt(e, "subject", "reference") == "Patient/"+pid })
	obsOf := d.observationsOf(pid)
	weights := d.find("Observation", func(o map[string]any) bool {
		return textAt(o, "subject", "reference") == "Patient/"+pid && hasCode(o, "code", "http://loinc.org", "29463-7")
	})
	meds := d.find("MedicationRequest", func(m map[string]any) bool { return textAt(m, "subject", "reference") == "Patient/"+pid })
	if len(meds) == 0 || len(encs) == 0 || len(weights) == 0 {
		t.Fatalf("Koepp has %d medication requests, %d encounters, %d weights", len(meds), len(encs), len(weights))
	}
	// targets returns the distinct existing targets of the references
	// that get finds in the resources of keys.
	targets := func(keys []string, get func(r map[string]any) []string) []string {
		seen := map[string]bool{}
		var out []string
		for _, k := range keys {
			for _, ref := range get(d.res[k]) {
				if _, ok := d.res[ref]; ok && !seen[ref] {
					seen[ref] = true
					out = append(out, ref)
				}
			}
		}
		return out
	}
	participants := func(e map[string]any) []string {
		var out []string
		for _, p := range objects(e, "participant") {
			out = append(out, textAt(p, "individual", "reference"))
		}
		return out
	}
	field := func(name string) func(r map[string]any) []string {
		return func(r map[string]any) []string { return []string{textAt(r, name, "reference")} }
	}
	both := func(a, b func(map[string]any) []string) func(map[string]any) []string {
		return func(r map[string]any) []string { return append(a(r), b(r)...) }
	}
	claimsOf := func(encKeys []string) []string {
		set := map[string]bool{}
		for _, k := range encKeys {
			set[k] = true
		}
		return d.find("Claim", func(c map[string]any) bool {
			for _, it := range objects(c, "item") {
				for _, e := range objects(it, "encounter") {
					if set[textAt(e, "reference")] {
						return true
					}
				}
			}
			return false
		})
	}
	weightEncs := targets(weights, field("encounter"))
	oneEnc := strings.TrimPrefix(encs[0], "Encounter/")
	for _, c := range []struct {
		path      string
		want, inc []string
	}{
		{"/Encounter?" + qs("patient", pid, "_include", "Encounter:participant", "_include", "Encounter:service-provider"),
			encs, targets(encs, both(participants, field("serviceProvider")))},
		{"/Encounter?" + qs("patient", pid, "_include", "Encounter:participant:Practitioner"),
			encs, targets(encs, participants)},
		{"/Encounter?" + qs("_id", oneEnc, "_include", "*"),
			encs[:1], targets(encs[:1], both(both(participants, field("serviceProvider")), field("subject")))},
		{"/MedicationRequest?" + qs("patient", pid, "_include", "MedicationRequest:medication"), meds, nil},
		{"/MedicationRequest?" + qs("patient", pid, "_include", "MedicationRequest:requester"), meds, targets(meds, field("requester"))},
		{"/Patient?" + qs("_id", pid, "_revinclude", "Observation:subject"), []string{"Patient/" + pid}, obsOf},
		{"/Observation?" + qs("patient", pid, "code", "http://loinc.org|29463-7", "_include", "Observation:subject", "_include", "Observation:patient"),
			weights, []string{"Patient/" + pid}},
		{"/Observation?" + qs("patient", pid, "code", "http://loinc.org|29463-7", "_include", "Observation:encounter", "_include:iterate", "Encounter:participant"),
			weights, append(slices.Clone(weightEncs), targets(weightEncs, participants)...)},
		{"/Patient?" + qs("_id", pid, "_revinclude", "Encounter:subject", "_revinclude:iterate", "Claim:encounter"),
			[]string{"Patient/" + pid}, append(slices.Clone(encs), claimsOf(encs)...)},
		{"/Encounter?" + qs("_id", oneEnc, "_include", "Encounter:subject", "_revinclude:iterate", "Encounter:subject"),
			encs[:1], append([]string{"Patient/" + pid}, encs[1:]...)},
	} {
		hits, _ := searchAll(t, ts, c.path+"&_count=1000")
		checkModes(t, c.path, hits)
		sameSet(t, c.path+" (matches)", matchKeys(hits), c.want)
		sameSet(t, c.path+" (includes)", modeKeys(hits, "include"), c.inc)
		for _, h := range hits {
			if h.mode == "outcome" {
				t.Errorf("%s: an outcome entry: %v", c.path, h.res["issue"])
			}
		}
	}
}

func testSearchEverything(t *testing.T, ts *testServer, d *synData) {
	compTypes := compartmentTypes(t)
	for _, family := range []string{"Koepp", "Mills"} {
		pid := d.patientByFamily(t, family)
		var want, shared []string
		for _, k := range d.bundle[pid] {
			typ, _, _ := strings.Cut(k, "/")
			if compTypes[typ] {
				want = append(want, k)
			}
		}
		seen := map[string]bool{}
		for _, k := range want {
			for _, ref := range literalRefs(d.res[k]) {
				typ, _, _ := strings.Cut(ref, "/")
				if _, ok := d.res[ref]; ok && !compTypes[typ] && !seen[ref] {
					seen[ref] = true
					shared = append(shared, ref)
				}
			}
		}
		if len(shared) == 0 || len(want) < 50 {
			t.Fatalf("%s: %d compartment resources, %d shared ones", family, len(want), len(shared))
		}
		var hits []searchHit
		for path, pages := "/Patient/"+pid+"/$everything?_count=25", 0; path != ""; pages++ {
			if pages > 100 {
				t.Fatal("$everything: paging does not end")
			}
			r := ts.do("GET", path, nil).want(t, 200)
			page := hitsOf(r)
			if n := len(matchKeys(page)); n > 25 {
				t.Errorf("%s: $everything page %d holds %d matches, more than _count=25", family, pages, n)
			}
			hits = append(hits, page...)
			path = nextPath(t, ts, r)
		}
		checkModes(t, "$everything", hits)
		got := matchKeys(hits)
		if len(got) == 0 || got[0] != "Patient/"+pid {
			t.Errorf("%s: $everything does not start with the patient", family)
		}
		sameSet(t, family+": $everything (matches)", got, want)
		var inc []string
		incSeen := map[string]bool{}
		for _, k := range modeKeys(hits, "include") {
			if !incSeen[k] {
				incSeen[k] = true
				inc = append(inc, k)
			}
		}
		sameSet(t, family+": $everything (referenced, as includes)", inc, shared)
	}
	pid := d.patientByFamily(t, "Koepp")
	hits, _ := searchAll(t, ts, "/Patient/"+pid+"/$everything?_type=Observation,Condition")
	want := d.find("Observation", func(o map[string]any) bool { return textAt(o, "subject", "reference") == "Patient/"+pid })
	want = append(want, d.find("Condition", func(o map[string]any) bool { return textAt(o, "subject", "reference") == "Patient/"+pid })...)
	sameSet(t, "$everything?_type=Observation,Condition", matchKeys(hits), want)
	r := ts.do("GET", "/Patient/no-such-patient/$everything", nil).want(t, 404)
	if r.str("resourceType") != "OperationOutcome" {
		t.Errorf("404 body: %.200s", r.body)
	}
}

// compartmentTypes reads the resource types of the patient compartment
// from its R4 CompartmentDefinition; Patient is one.
func compartmentTypes(t *testing.T) map[string]bool {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(sharedtest.Dir(t, "fhir-r4"), "compartmentdefinition-patient.json"))
	if err != nil {
		t.Fatal(err)
	}
	var cd struct {
		Resource []struct {
			Code  string   `json:"code"`
			Param []string `json:"param"`
		} `json:"resource"`
	}
	if err := json.Unmarshal(data, &cd); err != nil {
		t.Fatal(err)
	}
	out := map[string]bool{"Patient": true}
	for _, r := range cd.Resource {
		if len(r.Param) > 0 {
			out[r.Code] = true
		}
	}
	if !out["Observation"] || out["Practitioner"] || out["Organization"] {
		t.Fatalf("compartment types: %v", out)
	}
	return out
}

func testSearchErrors(t *testing.T, ts *testServer, d *synData) {
	const secret = "Zzyzx1980"
	cases := []struct {
		path    string
		headers []string
		expr    string // the parameter issue[0].expression names
		secret  string // a value the outcome must not repeat
	}{
		{"/Patient?birthdate=1980-13-45", nil, "birthdate", ""},
		{"/Patient?birthdate=" + secret, nil, "birthdate", secret},
		{"/Patient?birthdate=gt" + secret, nil, "birthdate", secret},
		{"/Observation?value-quantity=zz5", nil, "value-quantity", ""},
		{"/Observation?value-quantity=gt5" + secret, nil, "value-quantity", secret},
		{"/Observation?date=xx2020", nil, "date", ""},
		{"/Observation?date=" + secret + "-01-01", nil, "date", secret},
		{"/Patient?name:fuzzy=" + secret, nil, "name:fuzzy", secret},
		{"/Patient?gender.name=" + secret, nil, "gender.name", secret},
		{"/Patient?identifier=a|b|" + secret, nil, "identifier", secret},
		{"/Patient?_sort=family", nil, "_sort", ""},
		{"/Patient?_sort=" + secret, nil, "_sort", secret},
		{"/Patient?_count=-1", nil, "_count", ""},
		{"/Patient?_count=" + secret, nil, "_count", secret},
		{"/Patient?_summary=bogus" + secret, nil, "_summary", secret},
		{"/Patient?_total=" + secret, nil, "_total", secret},
		{"/Patient?_elements=" + secret, nil, "_elements", secret},
		{"/Observation?_include=Observation:" + secret, nil, "_include", secret},
		{"/Patient?death-date:missing=" + secret, nil, "death-date:missing", secret},
		{"/Patient?_has:Observation:encounter:code=" + secret, nil, "_has:Observation:encounter:code", secret},
		{"/Patient?family=" + secret + `\q`, nil, "family", secret},
		{"/Observation?code-value-quantity=" + secret, []string{"Prefer", "handling=strict"}, "code-value-quantity", secret},
		{"/Patient?shoe-size=" + secret, []string{"Prefer", "handling=strict"}, "shoe-size", secret},
		{"/Patient?gender=female&shoe-size=" + secret, []string{"Prefer", "handling=strict"}, "shoe-size", secret},
	}
	for _, c := range cases {
		r := ts.do("GET", c.path, nil, c.headers...)
		if r.status != 400 {
			t.Errorf("GET %s: status %d, want 400: %.300s", c.path, r.status, r.body)
			continue
		}
		if r.str("resourceType") != "OperationOutcome" {
			t.Errorf("GET %s: not an OperationOutcome: %.300s", c.path, r.body)
			continue
		}
		if got := r.str("issue.0.expression.0"); got != c.expr {
			t.Errorf("GET %s: issue[0].expression %q, want %q (%s)", c.path, got, c.expr, r.outcomeText())
		}
		if r.str("issue.0.diagnostics") == "" {
			t.Errorf("GET %s: the issue has no diagnostics", c.path)
		}
		if c.secret != "" && strings.Contains(string(r.body), c.secret) {
			t.Errorf("GET %s: the outcome repeats the value: %s", c.path, r.body)
		}
	}

	// Lenient (the default, or asked for): the unknown parameter is left
	// out, and an outcome entry says so.
	females := d.find("Patient", func(p map[string]any) bool { return p["gender"] == "female" })
	for _, h := range [][]string{nil, {"Prefer", "handling=lenient"}} {
		r := ts.do("GET", "/Patient?gender=female&shoe-size="+secret, nil, h...).want(t, 200)
		hits := hitsOf(r)
		checkModes(t, "lenient", hits)
		sameSet(t, "lenient Patient?gender=female&shoe-size=…", matchKeys(hits), females)
		found := false
		for _, x := range hits {
			if x.mode != "outcome" {
				continue
			}
			for _, is := range objects(x.res, "issue") {
				if slices.Contains(texts(is["expression"]), "shoe-size") {
					found = true
				}
			}
		}
		if !found {
			t.Errorf("lenient %v: no outcome entry names shoe-size", h)
		}
		if strings.Contains(string(r.body), secret) {
			t.Errorf("lenient %v: the Bundle repeats the ignored value", h)
		}
		if self := linkOf(r, "self"); strings.Contains(self, "shoe-size") || !strings.Contains(self, "gender=female") {
			t.Errorf("lenient %v: self link %q does not state the parameters used", h, self)
		}
	}
}

func TestSearchCapability(t *testing.T) {
	ts := newTestServer(t)
	r := ts.do("GET", "/metadata", nil, "Authorization", "").want(t, 200)
	data, err := os.ReadFile(filepath.Join(sharedtest.Dir(t, "fhir-r4"), "search-parameters.json"))
	if err != nil {
		t.Fatal(err)
	}
	var spec struct {
		Entry []struct {
			Resource struct {
				Code string   `json:"code"`
				Base []string `json:"base"`
				Type string   `json:"type"`
				URL  string   `json:"url"`
			} `json:"resource"`
		} `json:"entry"`
	}
	if err := json.Unmarshal(data, &spec); err != nil {
		t.Fatal(err)
	}
	stated := map[string]map[string]any{}
	for _, res := range objects(objects(r.json, "rest")[0], "resource") {
		if res["type"] == "Patient" {
			for _, p := range objects(res, "searchParam") {
				stated[textAt(p, "name")] = p
			}
		}
	}
	for _, name := range []string{"name", "family", "given", "birthdate", "identifier", "gender", "death-date", "_id"} {
		p := stated[name]
		if p == nil {
			t.Errorf("metadata does not objects Patient's %s", name)
			continue
		}
		if name == "_id" {
			if p["type"] != "token" {
				t.Errorf("Patient _id has type %v", p["type"])
			}
			continue
		}
		found := false
		for _, e := range spec.Entry {
			if e.Resource.Code == name && slices.Contains(e.Resource.Base, "Patient") {
				found = true
				if p["type"] != e.Resource.Type {
					t.Errorf("Patient %s: type %v, the spec says %s", name, p["type"], e.Resource.Type)
				}
				if def, ok := p["definition"]; ok && def != e.Resource.URL {
					t.Errorf("Patient %s: definition %v, the spec says %s", name, def, e.Resource.URL)
				}
			}
		}
		if !found {
			t.Fatalf("the spec has no Patient %s", name)
		}
	}
}

// farFuture stands for the open end of a Period.
var farFuture = time.Date(9999, 1, 1, 0, 0, 0, 0, time.UTC)

// periodSearch reports whether a Period matches the date search value v:
// its range runs from the start of start to the end of end, open where
// one is missing.
func periodSearch(t *testing.T, period map[string]any, v string) bool {
	if period == nil {
		return false
	}
	lo, hi := time.Time{}, farFuture
	if s := textAt(period, "start"); s != "" {
		lo, _ = dateSpan(t, s)
	}
	if e := textAt(period, "end"); e != "" {
		_, hi = dateSpan(t, e)
	}
	p, rest := cutPrefix(v)
	qlo, qhi := dateSpan(t, rest)
	return dateMatches(p, lo, hi, qlo, qhi)
}

// escapeValue escapes the characters a search value must escape.
func escapeValue(s string) string {
	return strings.NewReplacer(`\`, `\\`, `,`, `\,`, `|`, `\|`, `$`, `\$`).Replace(s)
}

func testSearchMore(t *testing.T, ts *testServer, d *synData) {
	pid := d.patientByFamily(t, "Koepp")
	type searchCase struct {
		typ, query string
		want       func(r map[string]any) bool
		none       bool // the data has no match
	}
	var cases []searchCase

	// Strings longer than what the index holds, escaped commas, :contains.
	var long map[string]any
	for _, k := range d.byType["Organization"] {
		if n := textAt(d.res[k], "name"); len([]rune(n)) > 30 && strings.Contains(n, ",") {
			long = d.res[k]
			break
		}
	}
	if long == nil {
		t.Fatal("no organization with a long name holding a comma")
	}
	orgName := func(q string) func(map[string]any) bool {
		return func(o map[string]any) bool { return anyPrefix(append(texts(o["name"]), texts(o["alias"])...), q) }
	}
	ln := strings.ToLower(textAt(long, "name"))
	cases = append(cases,
		searchCase{"Organization", qs("name", escapeValue(ln)), orgName(ln), false},
		searchCase{"Organization", qs("name", escapeValue(ln)+"x"), nil, true},
		searchCase{"Organization", qs("name", escapeValue(ln[:27])), orgName(ln[:27]), false},
		searchCase{"Organization", qs("name:exact", escapeValue(textAt(long, "name"))), func(o map[string]any) bool { return o["name"] == long["name"] }, false},
		searchCase{"Organization", qs("name:contains", "medical"), func(o map[string]any) bool {
			return strings.Contains(foldCase(textAt(o, "name")), "medical")
		}, false},
	)

	// Addresses and phones.
	p0 := d.res["Patient/"+pid]
	addr := objects(p0, "address")[0]
	phone := textAt(objects(p0, "telecom")[0], "value")
	addrHas := func(field, q string) func(map[string]any) bool {
		return func(p map[string]any) bool {
			for _, a := range objects(p, "address") {
				var vals []string
				if field == "" {
					for _, f := range []string{"text", "line", "city", "district", "state", "postalCode", "country"} {
						vals = append(vals, texts(a[f])...)
					}
				} else {
					vals = texts(a[field])
				}
				if anyPrefix(vals, q) {
					return true
				}
			}
			return false
		}
	}
	city := textAt(addr, "city")
	cases = append(cases,
		searchCase{"Patient", qs("address-city", strings.ToLower(city[:3])), addrHas("city", city[:3]), false},
		searchCase{"Patient", qs("address-postalcode", textAt(addr, "postalCode")[:3]), addrHas("postalCode", textAt(addr, "postalCode")[:3]), false},
		searchCase{"Patient", qs("address", strings.ToUpper(city)), addrHas("", city), false},
		searchCase{"Patient", qs("address-state", "massachusetts"), addrHas("state", "massachusetts"), false},
		searchCase{"Patient", qs("phone", phone), func(p map[string]any) bool {
			for _, tc := range objects(p, "telecom") {
				if textAt(tc, "system") == "phone" && textAt(tc, "value") == phone {
					return true
				}
			}
			return false
		}, false},
		searchCase{"Patient", qs("_lastUpdated", "ge2000-01-01"), func(map[string]any) bool { return true }, false},
		searchCase{"Patient", qs("_lastUpdated", "lt2000-01-01"), nil, true},
	)

	// Periods, open-ended ones too.
	for _, v := range []string{"ge2019-06-01T00:00:00Z", "lt1990-01-01T00:00:00Z", "sa2015-01-01T00:00:00Z", "eb2000-01-01T00:00:00Z", "gt2018-01-01T00:00:00Z"} {
		cases = append(cases, searchCase{"CarePlan", qs("date", v), func(c map[string]any) bool {
			p, _ := c["period"].(map[string]any)
			return periodSearch(t, p, v)
		}, false})
	}
	cases = append(cases, searchCase{"Encounter", qs("patient", pid, "date", "ge2012-01-01T00:00:00Z", "date", "lt2016-01-01T00:00:00Z"), func(e map[string]any) bool {
		p, _ := e["period"].(map[string]any)
		return textAt(e, "subject", "reference") == "Patient/"+pid && periodSearch(t, p, "ge2012-01-01T00:00:00Z") && periodSearch(t, p, "lt2016-01-01T00:00:00Z")
	}, false})

	// References: :missing, a type that does not fit, a chain into
	// Practitioner, a chain with a modifier.
	encs := d.find("Encounter", func(e map[string]any) bool { return textAt(e, "subject", "reference") == "Patient/"+pid })
	doc := d.res[textAt(objects(d.res[encs[0]], "participant")[0], "individual", "reference")]
	docFamily := familyNames(doc)[0]
	cases = append(cases,
		searchCase{"Encounter", qs("participant:missing", "true"), func(e map[string]any) bool { return len(objects(e, "participant")) == 0 }, false},
		searchCase{"Observation", qs("subject:Group", pid), nil, true},
		searchCase{"Encounter", qs("participant:Practitioner.family", docFamily), func(e map[string]any) bool {
			for _, p := range objects(e, "participant") {
				if doc := d.res[textAt(p, "individual", "reference")]; doc != nil && anyPrefix(familyNames(doc), docFamily) {
					return true
				}
			}
			return false
		}, false},
		searchCase{"Observation", qs("subject:Patient.family:exact", "Towne", "code", "http://loinc.org|8302-2"), func(o map[string]any) bool {
			p := d.res[textAt(o, "subject", "reference")]
			return p != nil && slices.Contains(familyNames(p), "Towne") && hasCode(o, "code", "http://loinc.org", "8302-2")
		}, false},
		searchCase{"Observation", qs("subject:Patient.family:exact", "towne"), nil, true},
	)

	// Tokens: :not on a value some observations lack, :text, OR, a
	// whole system.
	mine := func(pred func(o map[string]any) bool) func(o map[string]any) bool {
		return func(o map[string]any) bool { return textAt(o, "subject", "reference") == "Patient/"+pid && pred(o) }
	}
	text := func(cc map[string]any) []string {
		out := texts(cc["text"])
		for _, c := range objects(cc, "coding") {
			out = append(out, texts(c["display"])...)
		}
		return out
	}
	cases = append(cases,
		searchCase{"Observation", qs("subject", "Patient/"+pid, "value-concept:not", "http://snomed.info/sct|266919005"), mine(func(o map[string]any) bool {
			cc, _ := o["valueCodeableConcept"].(map[string]any)
			return cc == nil || !hasCode(o, "valueCodeableConcept", "http://snomed.info/sct", "266919005")
		}), false},
		searchCase{"Observation", qs("subject", "Patient/"+pid, "code:text", "body weight"), mine(func(o map[string]any) bool {
			cc, _ := o["code"].(map[string]any)
			return anyPrefix(text(cc), "body weight")
		}), false},
		searchCase{"Observation", qs("subject", "Patient/"+pid, "code", "http://loinc.org|29463-7,http://loinc.org|8302-2"), mine(func(o map[string]any) bool {
			return hasCode(o, "code", "http://loinc.org", "29463-7") || hasCode(o, "code", "http://loinc.org", "8302-2")
		}), false},
		searchCase{"Observation", qs("subject", "Patient/"+pid, "code", "http://loinc.org|"), mine(func(o map[string]any) bool {
			for _, c := range codings(o["code"].(map[string]any)) {
				if c[0] == "http://loinc.org" {
					return true
				}
			}
			return false
		}), false},
	)

	// Components.
	components := func(o map[string]any) []map[string]any { return objects(o, "component") }
	cases = append(cases,
		searchCase{"Observation", qs("subject", "Patient/"+pid, "component-code", "http://loinc.org|8480-6"), mine(func(o map[string]any) bool {
			for _, c := range components(o) {
				if hasCode(c, "code", "http://loinc.org", "8480-6") {
					return true
				}
			}
			return false
		}), false},
		searchCase{"Observation", qs("subject", "Patient/"+pid, "combo-code", "http://loinc.org|8480-6,http://loinc.org|29463-7"), mine(func(o map[string]any) bool {
			if hasCode(o, "code", "http://loinc.org", "29463-7") {
				return true
			}
			for _, c := range components(o) {
				if hasCode(c, "code", "http://loinc.org", "8480-6") {
					return true
				}
			}
			return false
		}), false},
		searchCase{"Observation", qs("subject", "Patient/"+pid, "component-value-quantity", "gt130"), mine(func(o map[string]any) bool {
			for _, c := range components(o) {
				if q, ok := c["valueQuantity"].(map[string]any); ok && numberMatches(t, q["value"].(float64), "gt130") {
					return true
				}
			}
			return false
		}), false},
		searchCase{"Observation", qs("subject", "Patient/"+pid, "combo-value-quantity", "lt80|http://unitsofmeasure.org|mm[Hg]"), mine(func(o map[string]any) bool {
			qs := []any{o["valueQuantity"]}
			for _, c := range components(o) {
				qs = append(qs, c["valueQuantity"])
			}
			for _, x := range qs {
				if q, ok := x.(map[string]any); ok && textAt(q, "code") == "mm[Hg]" && textAt(q, "system") == "http://unitsofmeasure.org" && numberMatches(t, q["value"].(float64), "lt80") {
					return true
				}
			}
			return false
		}), false},
		// A compartment search ANDs its parameters with the compartment.
		searchCase{"Patient/" + pid + "/Observation", qs("patient", d.patientByFamily(t, "Mills")), nil, true},
		searchCase{"Patient/" + pid + "/Observation", qs("code", "http://loinc.org|8302-2,http://loinc.org|29463-7", "_sort", "-date"), mine(func(o map[string]any) bool {
			return hasCode(o, "code", "http://loinc.org", "29463-7") || hasCode(o, "code", "http://loinc.org", "8302-2")
		}), false},
	)

	for _, c := range cases {
		var want []string
		if c.want != nil {
			typ := c.typ
			if i := strings.LastIndexByte(typ, '/'); i >= 0 {
				typ = typ[i+1:]
			}
			want = d.find(typ, c.want)
		}
		if c.none != (len(want) == 0) {
			t.Errorf("%s?%s: the data has %d matches: a weak case", c.typ, c.query, len(want))
		}
		hits, _ := searchAll(t, ts, "/"+c.typ+"?"+c.query+"&_count=500")
		checkModes(t, c.query, hits)
		sameSet(t, c.typ+"?"+c.query, matchKeys(hits), want)
	}

	// Paging through matches the index finds only in part (:contains is
	// checked on each resource), with a count.
	want := d.find("Organization", orgName("")) // every organization has a name
	want = slices.DeleteFunc(want, func(k string) bool { return !strings.Contains(foldCase(textAt(d.res[k], "name")), "e") })
	first := ts.do("GET", "/Organization?name:contains=E&_count=4&_total=accurate", nil).want(t, 200)
	if got, _ := first.json["total"].(float64); int(got) != len(want) {
		t.Errorf("Organization?name:contains=E&_total=accurate: total %v, want %d", first.json["total"], len(want))
	}
	hits, _ := searchAll(t, ts, "/Organization?name:contains=E&_count=4")
	sameSet(t, "Organization?name:contains=E, pages of 4", matchKeys(hits), want)

	// Sorting by a quantity and by _lastUpdated.
	weights := func(pred func(o map[string]any) bool) []float64 {
		var out []float64
		for _, k := range d.observationsOf(pid) {
			if o := d.res[k]; pred(o) {
				out = append(out, o["valueQuantity"].(map[string]any)["value"].(float64))
			}
		}
		return out
	}
	wantValues := weights(func(o map[string]any) bool { return hasCode(o, "code", "http://loinc.org", "29463-7") })
	slices.Sort(wantValues)
	for _, desc := range []bool{false, true} {
		key := "value-quantity"
		want := slices.Clone(wantValues)
		if desc {
			key = "-" + key
			slices.Reverse(want)
		}
		hits, _ := searchAll(t, ts, "/Observation?"+qs("patient", pid, "code", "http://loinc.org|29463-7", "_sort", key))
		var got []float64
		for _, h := range hits {
			if q, ok := h.res["valueQuantity"].(map[string]any); ok && h.mode == "match" {
				got = append(got, q["value"].(float64))
			}
		}
		if !slices.Equal(got, want) {
			t.Errorf("_sort=%s: values %v, want %v", key, got, want)
		}
	}
	hits, _ = searchAll(t, ts, "/Observation?"+qs("patient", pid, "_sort", "-_lastUpdated", "_count", "30"))
	for i := 1; i < len(hits); i++ {
		a, b := textAt(hits[i-1].res, "meta", "lastUpdated"), textAt(hits[i].res, "meta", "lastUpdated")
		if a == "" || b == "" || instantMilli(t, a).Before(instantMilli(t, b)) {
			t.Errorf("_sort=-_lastUpdated: %s (%s) before %s (%s)", hits[i-1].key, a, hits[i].key, b)
			break
		}
	}
	if len(hits) != len(d.observationsOf(pid)) {
		t.Errorf("_sort=-_lastUpdated: %d entries", len(hits))
	}

	// $everything cursors are sealed too.
	r := ts.do("GET", "/Patient/"+pid+"/$everything?_count=10", nil).want(t, 200)
	next := nextPath(t, ts, r)
	u, _ := url.Parse(next)
	cursor := u.Query().Get("_page")
	if cursor == "" {
		t.Fatalf("$everything: no cursor in %q", next)
	}
	bad := ts.do("GET", "/Patient/"+pid+"/$everything?_page="+url.QueryEscape(alterCursor(cursor, len(cursor)/2)), nil).want(t, 400)
	if got := bad.str("issue.0.expression.0"); got != "_page" {
		t.Errorf("$everything, altered cursor: issue expression %q", got)
	}
	ts.do("GET", "/Patient/"+pid+"/$everything?_count=3&_page="+url.QueryEscape(cursor), nil).want(t, 400)
	ts.do("GET", "/Observation?_page="+url.QueryEscape(cursor), nil).want(t, 400)
	other := d.patientByFamily(t, "Mills")
	ts.do("GET", "/Patient/"+other+"/$everything?_page="+url.QueryEscape(cursor), nil).want(t, 400)
	ts.do("GET", "/Patient/"+pid+"/$everything?_page="+url.QueryEscape(cursor), nil).want(t, 200)
}

// instantMilli parses an instant with optional fractional seconds.
func instantMilli(t *testing.T, s string) time.Time {
	v, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		t.Fatalf("instantOf %q: %v", s, err)
	}
	return v
}

// testSearchAfterWrites changes, deletes and adds resources, and searches
// see it at once.
func testSearchAfterWrites(t *testing.T, ts *testServer, d *synData) {
	koepp, mills := d.patientByFamily(t, "Koepp"), d.patientByFamily(t, "Mills")
	count := func(path string) int {
		t.Helper()
		r := ts.do("GET", path+"&_summary=count", nil).want(t, 200)
		n, ok := r.json["total"].(float64)
		if !ok {
			t.Fatalf("GET %s&_summary=count: no total", path)
		}
		return int(n)
	}
	towne := d.find("Observation", func(o map[string]any) bool {
		p := d.res[textAt(o, "subject", "reference")]
		return p != nil && slices.Contains(familyNames(p), "Towne")
	})
	if got := count("/Observation?subject:Patient.family=Towne"); got != len(towne) {
		t.Errorf("chained count: %d, want %d", got, len(towne))
	}
	if got := count("/Patient?_has:Observation:patient:code=2093-3&gender=female"); got == 0 {
		t.Errorf("_has count: %d", got)
	}

	// A new family name replaces the old one in every search.
	p := ts.do("GET", "/Patient/"+koepp, nil).want(t, 200)
	p.json["name"].([]any)[0].(map[string]any)["family"] = "Zyxwriter"
	body, _ := json.Marshal(p.json)
	ts.do("PUT", "/Patient/"+koepp, body).want(t, 200)
	for path, want := range map[string]int{
		"/Patient?family=koepp":                                                          0,
		"/Patient?family=zyxw":                                                           1,
		"/Patient?family:exact=Zyxwriter":                                                1,
		"/Observation?subject:Patient.family=zyxwriter":                                  len(d.observationsOf(koepp)),
		"/Observation?subject:Patient.family=koepp":                                      0,
		"/Patient?_id=" + koepp + "&gender=" + textAt(d.res["Patient/"+koepp], "gender"): 1,
	} {
		if got := count(path); got != want {
			t.Errorf("after the update, %s: %d, want %d", path, got, want)
		}
	}

	// A deleted patient is found by nothing; its observations stay.
	ts.do("DELETE", "/Patient/"+mills, nil).want(t, 204)
	for path, want := range map[string]int{
		"/Patient?family=mills":              0,
		"/Patient?_id=" + mills:              0,
		"/Patient?_lastUpdated=ge2000-01-01": len(d.byType["Patient"]) - 1,
		"/Observation?patient.family=mills":  0,
		"/Observation?patient=" + mills:      len(d.observationsOf(mills)),
		"/Patient?_has:Observation:patient:code=8302-2": len(d.find("Patient", func(p map[string]any) bool {
			return p["id"] != mills && slices.ContainsFunc(d.observationsOf(p["id"].(string)), func(k string) bool {
				return hasCode(d.res[k], "code", "*", "8302-2")
			})
		})),
	} {
		if got := count(path); got != want {
			t.Errorf("after the delete, %s: %d, want %d", path, got, want)
		}
	}
	if r := ts.do("GET", "/Patient/"+mills+"/$everything", nil); r.status != 404 && r.status != 410 {
		t.Errorf("$everything of a deleted patient: %d", r.status)
	}

	// A new observation is found at once, by itself and through its patient.
	obs := `{"resourceType":"Observation","status":"final","code":{"coding":[{"system":"urn:test:codes","code":"zz-1"}]},` +
		`"subject":{"reference":"Patient/` + koepp + `"},"effectiveDateTime":"2021-03-04T05:06:07Z","valueQuantity":{"value":12.5,"unit":"mg","system":"http://unitsofmeasure.org","code":"mg"}}`
	id := ts.do("POST", "/Observation", obs).want(t, 201).str("id")
	for _, path := range []string{
		"/Observation?code=urn:test:codes|zz-1",
		"/Observation?" + qs("value-quantity", "12.5|http://unitsofmeasure.org|mg", "date", "2021-03-04T05:06:07Z"),
		"/Patient/" + koepp + "/Observation?code=zz-1",
		"/Observation?subject:Patient.family=zyxwriter&code=zz-1",
	} {
		hits, _ := searchAll(t, ts, path)
		sameSet(t, path, matchKeys(hits), []string{"Observation/" + id})
	}
	hits, _ := searchAll(t, ts, "/Patient/"+koepp+"/$everything?_type=Observation&_count=200")
	if !slices.Contains(matchKeys(hits), "Observation/"+id) || len(matchKeys(hits)) != len(d.observationsOf(koepp))+1 {
		t.Errorf("$everything after a create: %d observations, want %d with the new one", len(matchKeys(hits)), len(d.observationsOf(koepp))+1)
	}
}
