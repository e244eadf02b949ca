package search

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/ehrvault/ehrvault/internal/fhir"
	"github.com/ehrvault/ehrvault/internal/fhirpath"
	"github.com/ehrvault/ehrvault/internal/records"
	"github.com/ehrvault/ehrvault/internal/sharedtest"
	"github.com/ehrvault/ehrvault/internal/store"
)

var testKey = bytes.Repeat([]byte{7}, 32)

func parseJSON(t testing.TB, data []byte) *fhir.Value {
	t.Helper()
	v, err := fhir.Parse(data, 0)
	if err != nil {
		t.Fatalf("fhir.Parse: %v", err)
	}
	return &v
}

func readJSON(t testing.TB, path string) *fhir.Value {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return parseJSON(t, data)
}

// TestSpecExpressionsCompile compiles the expression of every
// SearchParameter that is not composite or special for every type it is
// based on, and checks that the supported ones apply to each base.
func TestSpecExpressionsCompile(t *testing.T) {
	types := fhir.ResourceTypes()
	n := 0
	for i := range specParams {
		p := &specParams[i]
		if p.typ == "composite" || p.typ == "special" || p.expr == "" {
			continue
		}
		e, err := fhirpath.Parse(p.expr)
		if err != nil {
			t.Errorf("%s: %v", p.id, err)
			continue
		}
		bases := appliesTo(p, types)
		if len(bases) == 0 {
			t.Errorf("%s: no R4 resource type among its bases %v", p.id, p.base)
		}
		for _, typ := range bases {
			s, err := e.For(typ)
			if err != nil {
				t.Errorf("%s for %s: %v", p.id, typ, err)
				continue
			}
			n++
			if s.Empty() && p.base[0] != "Resource" && p.base[0] != "DomainResource" {
				t.Errorf("%s: nothing of %q applies to its base %s", p.id, p.expr, typ)
			}
		}
	}
	if n < 2000 {
		t.Errorf("compiled %d (parameter, type) pairs, want over 2,000", n)
	}
	if _, err := compileTables(); err != nil {
		t.Fatalf("compileTables: %v", err)
	}
}

func TestParams(t *testing.T) {
	ix := NewIndexer(testKey, testRowID)
	obs := ix.Params("Observation")
	has := func(ps []ParamInfo, name string) *ParamInfo {
		for i := range ps {
			if ps[i].Name == name {
				return &ps[i]
			}
		}
		return nil
	}
	for _, want := range []ParamInfo{
		{Name: "_id", Type: "token", URL: "http://hl7.org/fhir/SearchParameter/Resource-id"},
		{Name: "_profile", Type: "uri", URL: "http://hl7.org/fhir/SearchParameter/Resource-profile"},
		{Name: "code", Type: "token", URL: "http://hl7.org/fhir/SearchParameter/clinical-code"},
		{Name: "identifier", Type: "token", URL: "http://hl7.org/fhir/SearchParameter/clinical-identifier"},
		{Name: "patient", Type: "reference", URL: "http://hl7.org/fhir/SearchParameter/clinical-patient"},
		{Name: "subject", Type: "reference", URL: "http://hl7.org/fhir/SearchParameter/Observation-subject"},
		{Name: "value-concept", Type: "token", URL: "http://hl7.org/fhir/SearchParameter/Observation-value-concept"},
	} {
		if got := has(obs, want.Name); got == nil || got.Name != want.Name || got.Type != want.Type || got.URL != want.URL {
			t.Errorf("Params(Observation)[%s] = %v, want %v", want.Name, got, want)
		}
	}
	for _, want := range []ParamInfo{
		{Name: "date", Type: "date", URL: "http://hl7.org/fhir/SearchParameter/clinical-date"},
		{Name: "value-quantity", Type: "quantity", URL: "http://hl7.org/fhir/SearchParameter/Observation-value-quantity"},
		{Name: "_lastUpdated", Type: "date", URL: "http://hl7.org/fhir/SearchParameter/Resource-lastUpdated"},
	} {
		if got := has(obs, want.Name); got == nil || got.Name != want.Name || got.Type != want.Type || got.URL != want.URL {
			t.Errorf("Params(Observation)[%s] = %v, want %v", want.Name, got, want)
		}
	}
	for _, absent := range []string{"code-value-concept", "_text", "_content", "_query", "name"} {
		if has(obs, absent) != nil {
			t.Errorf("Params(Observation) has %s, which is not indexed", absent)
		}
	}
	if has(ix.Params("Location"), "near") != nil {
		t.Errorf("Params(Location) has near, a special parameter")
	}
	for typ, want := range map[string]string{"Patient": "name", "Organization": "address", "RiskAssessment": "probability"} {
		if has(ix.Params(typ), want) == nil {
			t.Errorf("Params(%s) lacks %s", typ, want)
		}
	}
	if p := ix.Params("Bundle"); has(p, "composition") == nil || has(p, "_id") == nil {
		t.Errorf("Params(Bundle) lacks composition or _id: %v", p)
	}
	if p := ix.Params("DetectedIssue"); has(p, "status") != nil {
		t.Errorf("Params(DetectedIssue) has the Medplum-added status")
	}
	if p := ix.Params("HumanName"); p != nil {
		t.Errorf("Params(HumanName) = %v, want nil", p)
	}
	// Every supported parameter can be queried.
	sample := map[string]string{"date": "2020-01", "number": "5", "quantity": "5|http://unitsofmeasure.org|mg"}
	for _, typ := range fhir.ResourceTypes() {
		for _, p := range ix.Params(typ) {
			v := sample[p.Type]
			if v == "" {
				v = "x"
			}
			if _, err := ix.Parse(typ, url.Values{p.Name: {v}}, true); err != nil {
				t.Errorf("Parse(%s, %s=%s): %v", typ, p.Name, v, err)
			}
		}
	}
}

// resolveBundle rewrites the urn:uuid: references of a transaction Bundle
// into "Type/id" through the entries' fullUrls, as a server does, and
// returns the entries' resources.
func resolveBundle(t testing.TB, b *fhir.Value) []*fhir.Value {
	t.Helper()
	entries := b.Get("entry")
	if entries == nil {
		t.Fatal("bundle without entries")
	}
	names := map[string]string{}
	for i := range entries.Items {
		e := &entries.Items[i]
		r := e.Get("resource")
		if full := e.Str("fullUrl"); full != "" && r != nil {
			names[full] = r.Str("resourceType") + "/" + r.Str("id")
		}
	}
	var walk func(v *fhir.Value)
	walk = func(v *fhir.Value) {
		switch v.Kind {
		case fhir.Object:
			for i := range v.Fields {
				f := &v.Fields[i]
				if f.Name == "reference" && f.Value.Kind == fhir.String {
					if n, ok := names[f.Value.Text]; ok {
						f.Value.Text = n
					}
					continue
				}
				walk(&f.Value)
			}
		case fhir.Array:
			for i := range v.Items {
				walk(&v.Items[i])
			}
		}
	}
	var out []*fhir.Value
	for i := range entries.Items {
		r := entries.Items[i].Get("resource")
		walk(r)
		out = append(out, r)
	}
	return out
}

func syntheaBundles(t testing.TB) []string {
	t.Helper()
	var files []string
	for _, dir := range []string{"smart-r4-2019", "fhir-data-pipes"} {
		m, err := filepath.Glob(filepath.Join(sharedtest.Dir(t, "testdata", "synthea", dir), "*.json"))
		if err != nil {
			t.Fatal(err)
		}
		files = append(files, m...)
	}
	if len(files) != 42 {
		t.Fatalf("found %d Synthea files, want 42", len(files))
	}
	return files
}

func inCompartment(typ string) bool {
	for _, c := range patientCompartment {
		if c.typ == typ {
			return true
		}
	}
	return false
}

// TestOwnerSynthea checks that every resource of a Synthea patient bundle
// of a patient compartment type is owned by the bundle's patient, and
// every other resource by the store.
func TestOwnerSynthea(t *testing.T) {
	ix := NewIndexer(testKey, testRowID)
	total, owned := 0, 0
	for _, f := range syntheaBundles(t) {
		resources := resolveBundle(t, readJSON(t, f))
		patient := "store"
		for _, r := range resources {
			if r.Str("resourceType") == "Patient" {
				if patient != "store" {
					t.Fatalf("%s: two patients", filepath.Base(f))
				}
				patient = "Patient/" + r.Str("id")
			}
		}
		isInfo := strings.Contains(f, "Information")
		if isInfo != (patient == "store") {
			t.Fatalf("%s: patient %s", filepath.Base(f), patient)
		}
		for _, r := range resources {
			typ := r.Str("resourceType")
			want := "store"
			if typ == "Patient" || inCompartment(typ) {
				want = patient
			}
			if got := ix.Owner(r); got != want {
				t.Errorf("%s: Owner(%s/%s) = %s, want %s", filepath.Base(f), typ, r.Str("id"), got, want)
			}
			total++
			if want != "store" {
				owned++
			}
		}
	}
	t.Logf("%d resources, %d owned by their patient", total, owned)
	if owned < 10000 {
		t.Errorf("only %d resources owned by a patient", owned)
	}
}

func example(t testing.TB, name string) *fhir.Value {
	t.Helper()
	return readJSON(t, filepath.Join(sharedtest.Dir(t, "testdata", "fhir-examples"), name))
}

func TestOwnerExamples(t *testing.T) {
	ix := NewIndexer(testKey, testRowID)
	tests := []struct {
		file, want string
	}{
		{"observation-example.json", "Patient/example"},
		{"patient-example.json", "Patient/example"},
		{"group-example-member.json", "shared"}, // four patients
		{"group-example.json", "store"},         // no members
		{"organization-example.json", "store"},
		{"practitioner-example.json", "store"},
		{"condition-example.json", "Patient/example"},
		{"encounter-example.json", "Patient/example"},
		{"allergyintolerance-example.json", "Patient/example"},
		{"coverage-example.json", "Patient/4"},
		{"claim-example.json", "Patient/1"},
		{"medicationrequest0301.json", "Patient/pat1"},
		{"immunization-example.json", "Patient/example"},
		{"procedure-example.json", "Patient/example"},
	}
	for _, tt := range tests {
		if got := ix.Owner(example(t, tt.file)); got != tt.want {
			t.Errorf("Owner(%s) = %s, want %s", tt.file, got, tt.want)
		}
	}
	// Every example gets an owner without trouble, and an owner named by
	// the resource.
	files, _ := filepath.Glob(filepath.Join(sharedtest.Dir(t, "testdata", "fhir-examples"), "*.json"))
	patients := 0
	for _, f := range files {
		r := readJSON(t, f)
		o := ix.Owner(r)
		if o == "store" || o == "shared" {
			continue
		}
		patients++
		id := strings.TrimPrefix(o, "Patient/")
		js := fhir.Marshal(r)
		if !bytes.Contains(js, []byte(`Patient/`+id+`"`)) && !bytes.Contains(js, []byte(`Patient/`+id+`/_history/`)) && r.Str("id") != id {
			t.Errorf("Owner(%s) = %s, which the resource does not name", filepath.Base(f), o)
		}
	}
	if patients < 150 {
		t.Errorf("%d examples owned by a patient, want over 150", patients)
	}
}

func TestOwnerRule(t *testing.T) {
	ix := NewIndexer(testKey, testRowID)
	tests := []struct {
		res, want string
	}{
		{`{"resourceType":"Patient","id":"p1"}`, "Patient/p1"},
		{`{"resourceType":"Patient"}`, "store"},
		{`{"resourceType":"Observation","subject":{"reference":"Patient/p1"}}`, "Patient/p1"},
		{`{"resourceType":"Observation","subject":{"reference":"Patient/p1/_history/3"}}`, "Patient/p1"},
		{`{"resourceType":"Observation","subject":{"reference":"https://other.example/fhir/Patient/p1"}}`, "Patient/p1"},
		{`{"resourceType":"Observation","subject":{"reference":"urn:uuid:6e0d3b3c-2d4e-4a8f-9d62-6f1e2f0b7c11"}}`, "store"},
		{`{"resourceType":"Observation","subject":{"reference":"#p"},"contained":[{"resourceType":"Patient","id":"p"}]}`, "store"},
		{`{"resourceType":"Observation","subject":{"identifier":{"system":"s","value":"v"}}}`, "store"},
		{`{"resourceType":"Observation","subject":{"reference":"Patient?identifier=s|v"}}`, "store"},
		{`{"resourceType":"Observation","subject":{"reference":"Group/g"}}`, "store"},
		// subject decides before performer; performer only when subject yields no patient.
		{`{"resourceType":"Observation","subject":{"reference":"Patient/a"},"performer":[{"reference":"Patient/b"}]}`, "Patient/a"},
		{`{"resourceType":"Observation","subject":{"reference":"Group/g"},"performer":[{"reference":"Patient/b"}]}`, "Patient/b"},
		{`{"resourceType":"Observation","performer":[{"reference":"Patient/b"},{"reference":"Patient/c"}]}`, "shared"},
		{`{"resourceType":"Observation","performer":[{"reference":"Patient/b"},{"reference":"Patient/b"}]}`, "Patient/b"},
		// patient before the others, whatever the definition order.
		{`{"resourceType":"MedicationDispense","subject":{"reference":"Patient/a"},"receiver":[{"reference":"Patient/b"}]}`, "Patient/a"},
		{`{"resourceType":"Coverage","policyHolder":{"reference":"Patient/h"},"subscriber":{"reference":"Patient/s"},"beneficiary":{"reference":"Patient/b"},"payor":[{"reference":"Organization/o"}]}`, "Patient/b"},
		{`{"resourceType":"ResearchSubject","individual":{"reference":"Patient/r"}}`, "Patient/r"},
		{`{"resourceType":"Group","member":[{"entity":{"reference":"Patient/a"}},{"entity":{"reference":"Patient/b"}}]}`, "shared"},
		{`{"resourceType":"Group","member":[{"entity":{"reference":"Patient/a"}}]}`, "Patient/a"},
		{`{"resourceType":"Communication","recipient":[{"reference":"Patient/a"},{"reference":"Patient/b"}]}`, "shared"},
		{`{"resourceType":"Provenance","target":[{"reference":"Observation/o"},{"reference":"Patient/a"}]}`, "Patient/a"},
		{`{"resourceType":"Organization","id":"o"}`, "store"},
		{`{"resourceType":"Task","for":{"reference":"Patient/t"}}`, "Patient/t"},
		{`{"resourceType":"NoSuchType","subject":{"reference":"Patient/t"}}`, "store"},
	}
	for _, tt := range tests {
		if got := ix.Owner(parseJSON(t, []byte(tt.res))); got != tt.want {
			t.Errorf("Owner(%s) = %s, want %s", tt.res, got, tt.want)
		}
	}
}

func condition(t testing.TB, ix *Indexer, typ string, q string) []store.Token {
	t.Helper()
	v, err := url.ParseQuery(q)
	if err != nil {
		t.Fatal(err)
	}
	toks, err := ix.Condition(typ, v)
	if err != nil {
		t.Fatalf("Condition(%s, %s): %v", typ, q, err)
	}
	return toks
}

func contains(toks []store.Token, want []store.Token) bool {
	for _, w := range want {
		if !slices.ContainsFunc(toks, func(t store.Token) bool { return bytes.Equal(t, w) }) {
			return false
		}
	}
	return true
}

func esc(s string) string {
	return strings.NewReplacer(`\`, `\\`, `,`, `\,`, `|`, `\|`, `$`, `\$`).Replace(s)
}

// TestTokensMatchConditions checks, on every Synthea resource, that the
// tokens of a resource hold what Condition makes of each of its
// identifiers, codes, id and patient reference, and not what it makes of
// a different value.
func TestTokensMatchConditions(t *testing.T) {
	ix := NewIndexer(testKey, testRowID)
	checked := 0
	check := func(typ string, toks []store.Token, param, value string) {
		t.Helper()
		if _, ok := ix.tables[typ].byCode[param]; !ok {
			return
		}
		q := url.Values{param: {value}}
		want, err := ix.Condition(typ, q)
		if err != nil {
			t.Fatalf("Condition(%s, %s): %v", typ, param, err)
		}
		if !contains(toks, want) {
			t.Errorf("%s: tokens lack %s=%s", typ, param, value)
		}
		other, _ := ix.Condition(typ, url.Values{param: {value + "x"}})
		if contains(toks, other) {
			t.Errorf("%s: tokens hold %s=%sx", typ, param, value)
		}
		checked++
	}
	for _, f := range syntheaBundles(t) {
		for _, r := range resolveBundle(t, readJSON(t, f)) {
			typ := r.Str("resourceType")
			toks := ix.Tokens(r)
			check(typ, toks, "_id", r.Str("id"))
			if ids := r.Get("identifier"); ids != nil {
				for i := range ids.Items {
					id := &ids.Items[i]
					sys, val := id.Str("system"), id.Str("value")
					check(typ, toks, "identifier", esc(sys)+"|"+esc(val))
					check(typ, toks, "identifier", esc(val))
					check(typ, toks, "identifier", esc(sys)+"|")
				}
			}
			if code := r.Get("code"); code != nil && code.Kind == fhir.Object {
				if cs := code.Get("coding"); cs != nil {
					for i := range cs.Items {
						c := &cs.Items[i]
						check(typ, toks, "code", esc(c.Str("system"))+"|"+esc(c.Str("code")))
						check(typ, toks, "code", esc(c.Str("code")))
					}
				}
			}
			if tags := r.Get("meta").Get("tag"); tags != nil {
				for i := range tags.Items {
					c := &tags.Items[i]
					check(typ, toks, "_tag", esc(c.Str("system"))+"|"+esc(c.Str("code")))
				}
			}
			if s := r.Str("status"); s != "" {
				check(typ, toks, "status", s)
				check(typ, toks, "status", "|"+s)
			}
			for _, param := range []string{"subject", "patient"} {
				for _, el := range []string{"subject", "patient"} {
					ref := r.Get(el).Str("reference")
					if rt, id, ok := fhirpath.ReferenceTarget(ref); ok && rt == "Patient" {
						check(typ, toks, param, ref)
						check(typ, toks, param, id)
					}
				}
			}
		}
	}
	t.Logf("%d conditions checked", checked)
	if checked < 50000 {
		t.Errorf("only %d conditions checked", checked)
	}
}

func TestTokens(t *testing.T) {
	ix := NewIndexer(testKey, testRowID)
	obs := parseJSON(t, []byte(`{
	  "resourceType": "Observation", "id": "o1",
	  "meta": {"profile": ["http://example.org/StructureDefinition/bp|2.0"], "source": "http://src.example/x"},
	  "identifier": [{"system": "urn:oid:1.2.3", "value": "A,1|2\\3$"}, {"value": "no-system"}],
	  "status": "final",
	  "code": {"coding": [{"system": "http://loinc.org", "code": "85354-9"}, {"code": "local"}]},
	  "subject": {"reference": "Patient/p1/_history/2"},
	  "performer": [{"reference": "https://example.org/fhir/Practitioner/9"}, {"reference": "#c"}, {"reference": "urn:uuid:6e0d3b3c-2d4e-4a8f-9d62-6f1e2f0b7c11"}],
	  "hasMember": [{"reference": "Observation/o2"}],
	  "valueCodeableConcept": {"coding": [{"system": "http://snomed.info/sct", "code": "373066001"}]}
	}`))
	toks := ix.Tokens(obs)
	yes := []string{
		"_id=o1",
		"_id=|o1",
		"identifier=urn:oid:1.2.3|A\\,1\\|2\\\\3\\$",
		"identifier=A\\,1\\|2\\\\3$", // $ needs no escape outside composites
		"identifier=urn:oid:1.2.3|",
		"identifier=no-system",
		"identifier=|no-system",
		"status=final",
		"code=http://loinc.org|85354-9",
		"code=85354-9",
		"code=http://loinc.org|",
		"code=|local",
		"code=local",
		"value-concept=http://snomed.info/sct|373066001",
		"subject=Patient/p1",
		"subject=p1",
		"patient=Patient/p1",
		"patient=p1",
		"performer=https://example.org/fhir/Practitioner/9",
		"performer=urn:uuid:6e0d3b3c-2d4e-4a8f-9d62-6f1e2f0b7c11",
		"has-member=Observation/o2",
		"has-member=o2",
		"_profile=http://example.org/StructureDefinition/bp|2.0",
		"_source=http://src.example/x",
		"identifier=A\\,1\\|2\\\\3$&status=final&code=85354-9&code=local&subject=p1",
	}
	for _, q := range yes {
		if !contains(toks, condition(t, ix, "Observation", q)) {
			t.Errorf("Tokens lack %s", q)
		}
	}
	no := []string{
		"_id=o2",
		"identifier=urn:oid:1.2.3|A",
		"identifier=|A\\,1\\|2\\\\3$",              // it has a system
		"identifier=urn:oid:1.2.4|A\\,1\\|2\\\\3$", // another system
		"code=|85354-9",
		"code=http://loinc.org|local",
		"code=http://snomed.info/sct|85354-9",
		"subject=Patient/p2",
		"subject=Group/p1",
		"performer=Practitioner/9", // absolute references are indexed as written
		"performer=9",
		"performer=c",
		"status=FINAL", // exact, case-sensitive
		"_profile=http://example.org/StructureDefinition/bp",
		"code=85354-9&code=other", // AND
		"_source=http://src.example/X",
	}
	for _, q := range no {
		if contains(toks, condition(t, ix, "Observation", q)) {
			t.Errorf("Tokens hold %s", q)
		}
	}
	// Sorted, distinct, 16 bytes each.
	for i, tok := range toks {
		if len(tok) != TokenSize {
			t.Fatalf("token %d has %d bytes", i, len(tok))
		}
		if i > 0 && bytes.Compare(toks[i-1], tok) >= 0 {
			t.Fatalf("tokens not sorted and distinct at %d", i)
		}
	}
	// The same resource gives the same tokens.
	if again := ix.Tokens(obs); !slices.EqualFunc(again, toks, func(a, b store.Token) bool { return bytes.Equal(a, b) }) {
		t.Errorf("Tokens differ between two calls")
	}
	// A canonical with a version is indexed with and without it.
	pd := parseJSON(t, []byte(`{"resourceType":"PlanDefinition","library":["http://example.org/Library/l|1.0"],"url":"http://example.org/PlanDefinition/p"}`))
	ptoks := ix.Tokens(pd)
	for _, q := range []string{"depends-on=http://example.org/Library/l|1.0", "depends-on=http://example.org/Library/l", "url=http://example.org/PlanDefinition/p"} {
		if !contains(ptoks, condition(t, ix, "PlanDefinition", q)) {
			t.Errorf("PlanDefinition tokens lack %s", q)
		}
	}
	// A resource as the value of a reference parameter: its Type/id.
	doc := parseJSON(t, []byte(`{"resourceType":"Bundle","type":"document","entry":[{"resource":{"resourceType":"Composition","id":"c1"}},{"resource":{"resourceType":"Patient","id":"p9"}}]}`))
	dtoks := ix.Tokens(doc)
	for _, q := range []string{"composition=Composition/c1", "composition=c1"} {
		if !contains(dtoks, condition(t, ix, "Bundle", q)) {
			t.Errorf("Bundle tokens lack %s", q)
		}
	}
	if contains(dtoks, condition(t, ix, "Bundle", "composition=p9")) {
		t.Errorf("Bundle tokens hold composition=p9, the second entry")
	}
	// Booleans, ContactPoints, computed tokens.
	pat := parseJSON(t, []byte(`{"resourceType":"Patient","id":"p","active":true,"deceasedDateTime":"2020-01-01",
	  "telecom":[{"system":"phone","value":"555-1234"},{"system":"email","value":"jo@example.org"}],
	  "link":[{"other":{"reference":"Patient/q"},"type":"seealso"}]}`))
	ptoks = ix.Tokens(pat)
	for _, q := range []string{"active=true", "deceased=true", "phone=555-1234", "phone=phone|555-1234", "email=jo@example.org", "telecom=555-1234", "telecom=email|jo@example.org", "link=Patient/q", "link=q"} {
		if !contains(ptoks, condition(t, ix, "Patient", q)) {
			t.Errorf("Patient tokens lack %s", q)
		}
	}
	for _, q := range []string{"active=false", "deceased=false", "phone=jo@example.org", "email=555-1234"} {
		if contains(ptoks, condition(t, ix, "Patient", q)) {
			t.Errorf("Patient tokens hold %s", q)
		}
	}
	if toks := ix.Tokens(parseJSON(t, []byte(`{"resourceType":"NoSuchType","id":"x"}`))); toks != nil {
		t.Errorf("Tokens of an unknown type = %d tokens", len(toks))
	}
}

// TestTokensDiffer checks that a token depends on the key, the resource
// type, the parameter and the form.
func TestTokensDiffer(t *testing.T) {
	a := NewIndexer(testKey, testRowID)
	b := NewIndexer(bytes.Repeat([]byte{8}, 32), testRowID)
	seen := map[string]string{}
	add := func(name string, toks []store.Token) {
		t.Helper()
		if len(toks) != 1 {
			t.Fatalf("%s: %d tokens, want 1", name, len(toks))
		}
		if other, dup := seen[string(toks[0])]; dup {
			t.Errorf("%s and %s have the same token", name, other)
		}
		seen[string(toks[0])] = name
	}
	add("key a, Patient identifier", condition(t, a, "Patient", "identifier=s|v"))
	add("key b, Patient identifier", condition(t, b, "Patient", "identifier=s|v"))
	add("key a, Practitioner identifier", condition(t, a, "Practitioner", "identifier=s|v"))
	add("key a, Patient _security", condition(t, a, "Patient", "_security=s|v"))
	add("key a, Patient _tag", condition(t, a, "Patient", "_tag=s|v"))
	add("key a, Patient identifier v", condition(t, a, "Patient", "identifier=v"))
	add("key a, Patient identifier |v", condition(t, a, "Patient", "identifier=|v"))
	add("key a, Patient identifier s|", condition(t, a, "Patient", "identifier=s|"))
	add("key a, Patient identifier s\\|v", condition(t, a, "Patient", "identifier=s\\|v"))
	add("key a, Patient identifier sv|", condition(t, a, "Patient", "identifier=sv|"))
	add("key a, Patient identifier s|v|", condition(t, a, "Patient", "identifier=s\\|v|"))
	add("key a, Patient identifier |s|v", condition(t, a, "Patient", "identifier=|s\\|v"))
	add("key a, Patient link Patient/v", condition(t, a, "Patient", "link=Patient/v"))
	add("key a, Patient link v", condition(t, a, "Patient", "link=v"))
	add("key a, Patient _id v", condition(t, a, "Patient", "_id=v"))
	add("key a, Patient general-practitioner v", condition(t, a, "Patient", "general-practitioner=v"))
}

// TestTokenEncoding pins the wire format of the package doc with an
// independent computation.
func TestTokenEncoding(t *testing.T) {
	ix := NewIndexer(testKey, testRowID)
	mac := func(msg string) []byte {
		m := hmac.New(sha256.New, testKey)
		m.Write([]byte(msg))
		return m.Sum(nil)[:16]
	}
	tests := []struct {
		typ, query, msg string
	}{
		{"Patient", "identifier=http://x|123", "\x07Patient\x0aidentifier" + "s" + "\x08http://x" + "\x03123"},
		{"Patient", "identifier=123", "\x07Patient\x0aidentifier" + "c" + "\x03123"},
		{"Patient", "identifier=|123", "\x07Patient\x0aidentifier" + "n" + "\x03123"},
		{"Patient", "identifier=http://x|", "\x07Patient\x0aidentifier" + "S" + "\x08http://x"},
		{"Observation", "subject=Patient/1", "\x0bObservation\x07subject" + "R" + "\x20" + testRowID("Patient", "1")},
		{"Observation", "subject:Patient=1", "\x0bObservation\x07subject" + "R" + "\x20" + testRowID("Patient", "1")},
		{"Observation", "subject=http://x/Patient/1", "\x0bObservation\x07subject" + "r" + "\x12http://x/Patient/1"},
		{"Patient", "name=Jo", "\x07Patient\x04name" + "p" + "\x02jo"},
		{"Patient", "name:exact=Jo", "\x07Patient\x04name" + "X" + "\x02Jo"},
		{"Patient", "birthdate=1970-05", "\x07Patient\x09birthdate" + "m" + "\x071970-05"},
		{"Patient", "identifier:missing=false", "\x07Patient\x0aidentifier" + "P"},
		{"Observation", "subject=1", "\x0bObservation\x07subject" + "i" + "\x011"},
		{"Observation", "_profile=http://p", "\x0bObservation\x08_profile" + "u" + "\x08http://p"},
		{"Observation", "identifier=" + strings.Repeat("a", 200), "\x0bObservation\x0aidentifier" + "c" + "\xc8\x01" + strings.Repeat("a", 200)},
	}
	for _, tt := range tests {
		got := condition(t, ix, tt.typ, tt.query)
		if len(got) != 1 || !bytes.Equal(got[0], mac(tt.msg)) {
			t.Errorf("Condition(%s, %s) = %x, want HMAC of %q", tt.typ, tt.query, got, tt.msg)
		}
	}
}

func TestConditionErrors(t *testing.T) {
	ix := NewIndexer(testKey, testRowID)
	tests := []struct {
		typ, query string
		unknown    string // the parameter of an UnknownParamError
		err        error  // else the error a QueryError wraps
	}{
		{"Patient", "nosuch=1", "nosuch", nil},
		{"Observation", "code-value-concept=a$b", "code-value-concept", nil}, // composite
		{"Patient", "subject=Patient/1", "subject", nil},                     // another type's parameter
		{"Patient", "nosuch:exact=x", "nosuch", nil},
		{"Patient", "_text=x", "_text", nil},
		{"Observation", "value-quantity=5", "", ErrConditional}, // a range
		{"Observation", "date=2020", "", ErrConditional},
		{"Patient", "general-practitioner.name=x", "", ErrConditional}, // chain
		{"Patient", "_has:Observation:patient:code=x", "", ErrConditional},
		{"Patient", "_count=1&identifier=x", "", ErrConditional},
		{"Patient", "identifier:missing=true", "", ErrConditional},
		{"Patient", "identifier:not=x", "", ErrConditional},
		{"Patient", "name:contains=x", "", ErrConditional},
		{"Patient", "identifier=a,b", "", ErrConditional}, // OR
		{"Patient", "link=Patient/1,Patient/2", "", ErrConditional},
		{"Patient", "identifier:of-type=a|b|c", "", ErrModifier},
		{"Patient", "birthdate=ab", "", ErrDate},
		{"Patient", "identifier=a\\b", "", ErrEscape},
		{"Patient", "identifier=ab\\", "", ErrEscape},
		{"Patient", "identifier=", "", ErrEmpty},
		{"Patient", "link=", "", ErrEmpty},
		{"Patient", "identifier=|", "", ErrToken},
		{"Patient", "identifier=a|b|c", "", ErrToken},
		{"Patient", "_format=json", "", ErrNoCriteria},
		{"Patient", "_format=json&_pretty=true", "", ErrNoCriteria},
	}
	for _, tt := range tests {
		q, err := url.ParseQuery(tt.query)
		if err != nil {
			t.Fatal(err)
		}
		_, err = ix.Condition(tt.typ, q)
		if tt.unknown != "" {
			var u *records.UnknownParamError
			if !errors.As(err, &u) || u.Param != tt.unknown {
				t.Errorf("Condition(%s, %s) = %v, want UnknownParamError{%s}", tt.typ, tt.query, err, tt.unknown)
			}
			continue
		}
		var qe *QueryError
		if !errors.Is(err, tt.err) || !errors.As(err, &qe) {
			t.Errorf("Condition(%s, %s) = %v, want a QueryError wrapping %v", tt.typ, tt.query, err, tt.err)
			continue
		}
		// The message names the parameter and never the value.
		name, _, _ := strings.Cut(tt.query, "=")
		if strings.HasPrefix(name, "_count") {
			name = "_count"
		}
		if tt.err != ErrNoCriteria && !strings.Contains(err.Error(), `"`+name+`"`) {
			t.Errorf("Condition(%s, %s) = %q, which does not name %s", tt.typ, tt.query, err, name)
		}
		if _, value, _ := strings.Cut(tt.query, "="); len(value) > 1 && strings.Contains(err.Error(), value) {
			t.Errorf("Condition(%s, %s) = %q, which quotes the value", tt.typ, tt.query, err)
		}
	}
	// _format and _pretty are ignored beside real parameters.
	got := condition(t, ix, "Patient", "identifier=a|b&_format=json&_pretty=true")
	want := condition(t, ix, "Patient", "identifier=a|b")
	if !slices.EqualFunc(got, want, func(a, b store.Token) bool { return bytes.Equal(a, b) }) {
		t.Errorf("_format and _pretty changed the tokens")
	}
	// Repeating a parameter ANDs: two tokens; repeating a value: one.
	if toks := condition(t, ix, "Patient", "identifier=a&identifier=b"); len(toks) != 2 {
		t.Errorf("identifier=a&identifier=b gave %d tokens, want 2", len(toks))
	}
	if toks := condition(t, ix, "Patient", "identifier=a&identifier=a"); len(toks) != 1 {
		t.Errorf("identifier=a&identifier=a gave %d tokens, want 1", len(toks))
	}
	// A reference value: Type/id, id, version dropped, absolute as given.
	if !bytes.Equal(condition(t, ix, "Observation", "subject=Patient/1/_history/2")[0], condition(t, ix, "Observation", "subject=Patient/1")[0]) {
		t.Errorf("subject=Patient/1/_history/2 differs from subject=Patient/1")
	}
}

func TestSplitValue(t *testing.T) {
	tests := []struct {
		in   string
		want []string
		err  error
	}{
		{"abc", []string{"abc"}, nil},
		{"a|b", []string{"a", "b"}, nil},
		{"|b", []string{"", "b"}, nil},
		{"a|", []string{"a", ""}, nil},
		{`a\|b`, []string{"a|b"}, nil},
		{`a\,b\$c\\d`, []string{`a,b$c\d`}, nil},
		{`a$b`, []string{`a$b`}, nil},
		{`\\|\|`, []string{`\`, `|`}, nil},
		{`a,b`, []string{`a,b`}, nil}, // commas were split before
		{`a\`, nil, ErrEscape},
		{`a\n`, nil, ErrEscape},
	}
	for _, tt := range tests {
		got, err := splitValue(tt.in)
		if err != tt.err || !slices.Equal(got, tt.want) {
			t.Errorf("splitValue(%q) = %q, %v; want %q, %v", tt.in, got, err, tt.want, tt.err)
		}
	}
}

func BenchmarkIndex(b *testing.B) {
	var resources []*fhir.Value
	for _, f := range syntheaBundles(b) {
		if strings.Contains(f, "Information") {
			continue // Organizations, Practitioners, Locations: not what an import is made of
		}
		resources = append(resources, resolveBundle(b, readJSON(b, f))...)
	}
	ix := NewIndexer(testKey, testRowID)
	run := func(b *testing.B, fn func(r *fhir.Value)) {
		b.ReportAllocs()
		n := 0
		for b.Loop() {
			fn(resources[n%len(resources)])
			n++
		}
		b.ReportMetric(float64(b.Elapsed().Microseconds())/float64(n), "µs/resource")
	}
	b.Run("OwnerTokens", func(b *testing.B) {
		run(b, func(r *fhir.Value) { ix.Owner(r); ix.Tokens(r) })
	})
	b.Run("Owner", func(b *testing.B) { run(b, func(r *fhir.Value) { ix.Owner(r) }) })
	b.Run("Tokens", func(b *testing.B) { run(b, func(r *fhir.Value) { ix.Tokens(r) }) })
	b.Run("Parallel", func(b *testing.B) {
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			n := 0
			for pb.Next() {
				r := resources[n%len(resources)]
				ix.Owner(r)
				ix.Tokens(r)
				n++
			}
		})
	})
}

// TestConcurrent runs Owner, Tokens and Condition from several goroutines
// (under -race in CI) and compares with a serial run.
func TestConcurrent(t *testing.T) {
	ix := NewIndexer(testKey, testRowID)
	files := syntheaBundles(t)
	resources := resolveBundle(t, readJSON(t, files[0]))
	want := make([][]store.Token, len(resources))
	owners := make([]string, len(resources))
	for i, r := range resources {
		want[i], owners[i] = ix.Tokens(r), ix.Owner(r)
	}
	errs := make(chan string, 8)
	for g := 0; g < 4; g++ {
		go func() {
			for i := len(resources) - 1; i >= 0; i-- {
				r := resources[i]
				if ix.Owner(r) != owners[i] {
					errs <- "Owner differs"
					return
				}
				got := ix.Tokens(r)
				if !slices.EqualFunc(got, want[i], func(a, b store.Token) bool { return bytes.Equal(a, b) }) {
					errs <- "Tokens differ"
					return
				}
				if _, err := ix.Condition("Patient", url.Values{"identifier": {"a|b"}}); err != nil {
					errs <- err.Error()
					return
				}
			}
			errs <- ""
		}()
	}
	for g := 0; g < 4; g++ {
		if e := <-errs; e != "" {
			t.Error(e)
		}
	}
}

// testRowID names rows as records does, under a fixed key.
func testRowID(typ, id string) string {
	m := hmac.New(sha256.New, bytes.Repeat([]byte{9}, 32))
	m.Write([]byte(typ))
	m.Write([]byte{0})
	m.Write([]byte(id))
	return hex.EncodeToString(m.Sum(nil)[:16])
}

// TestImplicitCodeSystems checks that a code element is found by the
// system of its required binding too.
func TestImplicitCodeSystems(t *testing.T) {
	ix := NewIndexer(testKey, testRowID)
	pat := parseJSON(t, []byte(`{"resourceType":"Patient","id":"p","gender":"female"}`))
	toks := ix.Tokens(pat)
	for _, q := range []string{"gender=female", "gender=http://hl7.org/fhir/administrative-gender|female", "gender=http://hl7.org/fhir/administrative-gender|"} {
		if !contains(toks, condition(t, ix, "Patient", q)) {
			t.Errorf("tokens lack %s", q)
		}
	}
	for _, q := range []string{"gender=|female", "gender=http://hl7.org/fhir/administrative-gender|male", "gender=http://other|female"} {
		if q != "gender=|female" && contains(toks, condition(t, ix, "Patient", q)) {
			t.Errorf("tokens hold %s", q)
		}
	}
	obs := parseJSON(t, []byte(`{"resourceType":"Observation","status":"final","code":{"text":"x"}}`))
	if !contains(ix.Tokens(obs), condition(t, ix, "Observation", "status=http://hl7.org/fhir/observation-status|final")) {
		t.Errorf("Observation.status lacks its system")
	}
	if got := ix.tables["Patient"].byCode["gender"].codeSets; len(got) != 1 || got[0] != "http://hl7.org/fhir/ValueSet/administrative-gender" {
		t.Errorf("Patient gender binds %v", got)
	}
}

// TestUnionParams checks a parameter whose expression is the union of
// others' (combo-code): not indexed itself, and found through its parts.
func TestUnionParams(t *testing.T) {
	ix := NewIndexer(testKey, testRowID)
	p := ix.tables["Observation"].byCode["combo-code"]
	if len(p.parts) != 2 || p.parts[0].code != "code" || p.parts[1].code != "component-code" {
		t.Fatalf("combo-code parts: %v", p.parts)
	}
	obs := parseJSON(t, []byte(`{"resourceType":"Observation","status":"final","code":{"coding":[{"system":"http://loinc.org","code":"85354-9"}]},
	  "component":[{"code":{"coding":[{"system":"http://loinc.org","code":"8480-6"}]}}]}`))
	toks := ix.Tokens(obs)
	for q, want := range map[string]bool{
		"combo-code=85354-9": true, "combo-code=8480-6": true, "combo-code=http://loinc.org|8480-6": true, "combo-code=1-1": false,
		"combo-code:missing=false": true, "combo-code:missing=true": false, "combo-code:not=8480-6": false, "combo-code:not=1-1": true,
	} {
		v, _ := url.ParseQuery(q)
		pq, err := ix.Parse("Observation", v, true)
		if err != nil {
			t.Fatal(err)
		}
		h := ix.pool.Get().(*hasher)
		cond, _, err := compileLocal(h, pq.Clauses[0])
		ix.pool.Put(h)
		if err != nil {
			t.Fatal(err)
		}
		any := false
		for _, c := range cond.Tokens {
			any = any || contains(toks, []store.Token{c})
		}
		if got := any != cond.Not; got != want {
			t.Errorf("%s: matches %v, want %v", q, got, want)
		}
	}
}
