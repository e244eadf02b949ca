package search

import (
	"errors"
	"net/url"
	"strings"
	"testing"
	"unicode/utf8"
)

// TestParseErrors checks that malformed searches are refused with an error
// that names the parameter, and never quotes the value.
func TestParseErrors(t *testing.T) {
	ix := NewIndexer(testKey, testRowID)
	const secret = "Zzyzx1980"
	tests := []struct {
		typ, query, param string
		err               error
	}{
		{"Patient", "birthdate=1980-13-45", "birthdate", ErrDate},
		{"Patient", "birthdate=" + secret, "birthdate", ErrDate},
		{"Patient", "birthdate=gx1980", "birthdate", ErrDate},
		{"Patient", "birthdate=1980-05-12T10:00", "birthdate", ErrTimeOfDay},
		{"Observation", "date=2020-02-30", "date", ErrDate},
		{"Observation", "date=2020-01-01T25:00:00Z", "date", ErrDate},
		{"Observation", "value-quantity=zz5", "value-quantity", ErrQuantity},
		{"Observation", "value-quantity=5|a", "value-quantity", ErrQuantity},
		{"Observation", "value-quantity=5|http://u|", "value-quantity", ErrQuantity},
		{"RiskAssessment", "probability=gt" + secret, "probability", ErrNumber},
		{"RiskAssessment", "probability=0x10", "probability", ErrNumber},
		{"RiskAssessment", "probability=NaN", "probability", ErrNumber},
		{"Patient", "name:fuzzy=" + secret, "name:fuzzy", ErrModifier},
		{"Patient", "gender:exact=male", "gender:exact", ErrModifier},
		{"Patient", "identifier:below=x", "identifier:below", ErrModifier},
		{"Observation", "subject:Device=x", "subject:Device", nil}, // Device is a target of subject: fine
		{"Observation", "subject:Medication=x", "subject:Medication", ErrModifier},
		{"Patient", "gender.name=" + secret, "gender.name", ErrChain},
		{"Observation", "subject:Medication.code=x", "subject:Medication.code", ErrChain},
		{"Observation", "subject.nosuch=x", "subject.nosuch", ErrChain},
		{"Observation", "subject.organization.name=x", "subject.organization.name", ErrChainDepth},
		{"Patient", "_has:Observation:patient:_has:Observation:patient:code=x", "_has:Observation:patient:_has:Observation:patient:code", ErrChainDepth},
		{"Patient", "_has:Observation:code:status=x", "_has:Observation:code:status", ErrHas},
		{"Patient", "_has:NoSuch:patient:code=x", "_has:NoSuch:patient:code", ErrHas},
		{"Patient", "_has:Observation:patient=x", "_has:Observation:patient", ErrHas},
		{"Patient", "active:missing=maybe", "active:missing", ErrMissing},
		{"Patient", "identifier=a\\b", "identifier", ErrEscape},
		{"Patient", "identifier=a|b|c", "identifier", ErrToken},
		{"Patient", "family=", "family", ErrEmpty},
		{"Patient", "_sort=family", "_sort", ErrSortKind},
		{"Patient", "_sort=nosuch", "_sort", ErrSort},
		{"Patient", "_sort=-", "_sort", ErrSort},
		{"Patient", "_count=-1", "_count", ErrCount},
		{"Patient", "_count=many", "_count", ErrCount},
		{"Patient", "_count=1&_count=2", "_count", ErrRepeated},
		{"Patient", "_summary=bogus", "_summary", ErrSummary},
		{"Patient", "_total=all", "_total", ErrTotal},
		{"Patient", "_elements=nosuch", "_elements", ErrElements},
		{"Patient", "_include=Patient:name", "_include", ErrInclude},
		{"Patient", "_include=Patient", "_include", ErrInclude},
		{"Patient", "_include=Patient:organization:Device", "_include", ErrInclude},
		{"Patient", "_revinclude=Observation:code", "_revinclude", ErrRevInclude},
		{"Patient", "_revinclude=*", "_revinclude", ErrRevInclude},
		{"Patient", "_page=abc&name=x", "name", ErrPageMixed},
		{"Patient", "_contained=true", "_contained", nil},
		{"Patient", "identifier=" + strings.Repeat("a,", 150), "identifier", ErrTooMany},
	}
	for _, tt := range tests {
		q, err := url.ParseQuery(tt.query)
		if err != nil {
			t.Fatal(err)
		}
		_, err = ix.Parse(tt.typ, q, true)
		if tt.err == nil && tt.param == "subject:Device" {
			if err != nil {
				t.Errorf("Parse(%s?%s) = %v, want success", tt.typ, tt.query, err)
			}
			continue
		}
		var qe *QueryError
		if !errors.As(err, &qe) {
			t.Errorf("Parse(%s?%s) = %v, want a QueryError", tt.typ, tt.query, err)
			continue
		}
		if qe.Param != tt.param {
			t.Errorf("Parse(%s?%s) names %q, want %q", tt.typ, tt.query, qe.Param, tt.param)
		}
		if tt.err != nil && !errors.Is(err, tt.err) {
			t.Errorf("Parse(%s?%s) = %v, want %v", tt.typ, tt.query, err, tt.err)
		}
		if strings.Contains(err.Error(), secret) {
			t.Errorf("Parse(%s?%s) = %q, which quotes the value", tt.typ, tt.query, err)
		}
	}
}

// TestParseLenient checks Prefer: handling: strict refuses what lenient
// leaves out, and names it.
func TestParseLenient(t *testing.T) {
	ix := NewIndexer(testKey, testRowID)
	q := url.Values{"nosuch": {"1"}, "_text": {"x"}, "code-value-concept": {"a$b"}, "family": {"x"}}
	for _, name := range []string{"nosuch", "_text", "code-value-concept"} {
		one := url.Values{name: q[name], "family": {"x"}}
		if _, err := ix.Parse("Observation", one, true); err == nil {
			t.Errorf("strict Parse with %s succeeded", name)
		}
	}
	pq, err := ix.Parse("Patient", q, false)
	if err != nil {
		t.Fatal(err)
	}
	if len(pq.Clauses) != 1 || pq.Clauses[0].Name != "family" || len(pq.Ignored) != 3 {
		t.Fatalf("lenient Parse: %d clauses, ignored %v", len(pq.Clauses), pq.Ignored)
	}
	if pq.Used.Has("nosuch") || !pq.Used.Has("family") {
		t.Errorf("Used = %v", pq.Used)
	}
	// Malformed values of known parameters are errors even when lenient.
	if _, err := ix.Parse("Patient", url.Values{"birthdate": {"x"}}, false); err == nil {
		t.Errorf("lenient Parse accepted a bad date")
	}
}

// TestParseValues checks how values are read: prefixes, precision, OR,
// escapes.
func TestParseValues(t *testing.T) {
	ix := NewIndexer(testKey, testRowID)
	parse := func(typ, query string) *Clause {
		t.Helper()
		q, _ := url.ParseQuery(query)
		pq, err := ix.Parse(typ, q, true)
		if err != nil {
			t.Fatalf("Parse(%s?%s): %v", typ, query, err)
		}
		return pq.Clauses[0]
	}
	c := parse("RiskAssessment", "probability=ge0.50")
	if v := c.Values[0]; v.Prefix != "ge" || v.num != 0.5 || v.half != 0.005 {
		t.Errorf("probability=ge0.50: %+v", v)
	}
	if v := parse("RiskAssessment", "probability=1e2").Values[0]; v.Prefix != "eq" || v.num != 100 || v.half != 50 {
		t.Errorf("probability=1e2: %+v", v)
	}
	c = parse("Observation", "date=lt2020-03,2021")
	if len(c.Values) != 2 || c.Values[0].Prefix != "lt" || c.Values[1].Prefix != "eq" || c.Values[0].prec != 7 || c.Values[1].prec != 4 {
		t.Errorf("date=lt2020-03,2021: %+v", c.Values)
	}
	lo, hi, _, _ := searchDate("2020-03-01T10:00")
	if hi-lo != 60_000-1 {
		t.Errorf("a minute without a zone spans %v ms", hi-lo+1)
	}
	c = parse("Patient", `identifier=a\,b|c\|d,e`)
	if len(c.Values) != 2 || c.Values[0].Parts[0] != "a,b" || c.Values[0].Parts[1] != "c|d" || c.Values[1].Text != "e" {
		t.Errorf("escapes: %+v", c.Values)
	}
	if c := parse("Patient", "family=a|b"); c.Values[0].Text != "a|b" || len(c.Values[0].Parts) != 1 {
		t.Errorf("a '|' in a string is literal: %+v", c.Values[0])
	}
	c = parse("Observation", "subject:Patient.name=x")
	if len(c.Chains) != 1 || c.Targets[0] != "Patient" || c.Chains[0].param.code != "name" {
		t.Errorf("chain: %+v", c)
	}
	c = parse("Observation", "subject.name=x")
	if len(c.Targets) < 2 {
		t.Errorf("an untyped chain searches every target with the parameter: %v", c.Targets)
	}
}

// FuzzParse throws arbitrary queries at the parser and the compiler: they
// must never panic, and every error must be a QueryError that names a
// parameter of the query (or none) and never quotes a value.
func FuzzParse(f *testing.F) {
	for _, s := range []string{
		"name=Jo&birthdate=ge1970-01-01", "identifier=http://x|1,2", "subject:Patient.name=x",
		"_has:Observation:patient:code=1234-5", "_include=Observation:subject&_revinclude:iterate=Provenance:target",
		"date=ap2020&_sort=-date,_lastUpdated&_count=5", "value-quantity=le5.4|http://unitsofmeasure.org|mg",
		"code:text=gluc&status:not=final", "family:exact=M%C3%BCller", "name:contains=ann", "birthdate=ne1970-05",
		"_elements=id,name&_summary=true&_total=accurate", `identifier=a\,b\|c\\`, "_page=AAAA",
		"general-practitioner:Practitioner.name=x&active:missing=true", "%FF=%FE", "date=2020-01-01T10:00:00.123+05:30",
	} {
		f.Add("Patient", s)
		f.Add("Observation", s)
	}
	ix := NewIndexer(testKey, testRowID)
	f.Fuzz(func(t *testing.T, typ, query string) {
		q, err := url.ParseQuery(query)
		if err != nil {
			return
		}
		pq, err := ix.Parse(typ, q, len(query)%2 == 0)
		if err != nil {
			var qe *QueryError
			if !errors.As(err, &qe) {
				t.Fatalf("Parse: %T %v, want a QueryError", err, err)
			}
			if qe.Param != "" && !q.Has(qe.Param) {
				t.Fatalf("the error names %q, which is not a parameter of the query", qe.Param)
			}
			for _, vals := range q {
				for _, v := range vals {
					if len(v) >= 8 && utf8.ValidString(v) && strings.Contains(qe.Err.Error(), v) {
						t.Fatalf("the error %q quotes the value %q", qe.Err, v)
					}
				}
			}
			return
		}
		h := ix.pool.Get().(*hasher)
		defer ix.pool.Put(h)
		for _, c := range pq.Clauses {
			if c.Has != nil || len(c.Chains) > 0 {
				continue
			}
			if _, _, err := compileLocal(h, c); err != nil {
				var qe *QueryError
				if !errors.As(err, &qe) {
					t.Fatalf("compile: %T %v, want a QueryError", err, err)
				}
			}
		}
	})
}
