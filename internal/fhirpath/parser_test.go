package fhirpath

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ehrvault/ehrvault/internal/fhir"
	"github.com/ehrvault/ehrvault/internal/sharedtest"
)

func TestParseTree(t *testing.T) {
	tests := []struct {
		src, want string
	}{
		{"Patient.name.given", "Patient.name.given"},
		{"name | alias", "(name | alias)"},
		{"a | b | c", "((a | b) | c)"},
		{"Observation.value as Quantity | Observation.value as SampledData",
			"((Observation.value as Quantity) | (Observation.value as SampledData))"},
		{"(Observation.value as CodeableConcept).text", "(Observation.value as CodeableConcept).text"},
		{"Condition.onset.as(Age) | Condition.onset.as(Range)", "(Condition.onset.as(Age) | Condition.onset.as(Range))"},
		{"Account.subject.where(resolve() is Patient)", "Account.subject.where((resolve() is Patient))"},
		{"Patient.deceased.exists() and Patient.deceased != false",
			"(Patient.deceased.exists() and (Patient.deceased != false))"},
		{"a = b or c = d and e", "((a = b) or ((c = d) and e))"},
		{"a or b or c", "((a or b) or c)"},
		{"a and b or c and d", "((a and b) or (c and d))"},
		{"a | b = c", "((a | b) = c)"},
		{"a = b | c", "(a = (b | c))"},
		{"x is FHIR.Quantity", "(x is FHIR.Quantity)"},
		{"x as System.String", "(x as System.String)"},
		{"Bundle.entry[0].resource", "Bundle.entry[0].resource"},
		{"ValueSet.expansion.contains.code", "ValueSet.expansion.contains.code"},
		{"x.as.is.in", "x.as.is.in"},
		{"telecom.where(system='email')", "telecom.where((system = 'email'))"},
		{"relatedArtifact.where(type='composed-of').resource", "relatedArtifact.where((type = 'composed-of')).resource"},
		{"extension('http://x.org/a').value", "extension('http://x.org/a').value"},
		{"code.coding.first().code", "code.coding.first().code"},
		{"status.empty().not()", "status.empty().not()"},
		{"$this.code", "$this.code"},
		{"%resource.referenceSeq.chromosome", "%resource.referenceSeq.chromosome"},
		{"x.ofType(Reference)", "x.ofType(Reference)"},
		{"x.exists(y = 1.5)", "x.exists((y = 1.5))"},
		{"`div`.x", "`div`.x"},
		{"x.`div`", "x.div"},
		{"`a b`.c", "`a b`.c"},
		{"'it\\'s' = 'a\\u0041\\n'", "('it\\'s' = 'aA\\n')"},
		{"true != false", "(true != false)"},
		{" a // comment\n | /* c */ b ", "(a | b)"},
		{"(((a)))", "a"},
	}
	for _, tt := range tests {
		n, err := parse(tt.src)
		if err != nil {
			t.Errorf("parse(%q): %v", tt.src, err)
			continue
		}
		if got := n.String(); got != tt.want {
			t.Errorf("parse(%q) = %s, want %s", tt.src, got, tt.want)
		}
		// The rendering is itself an expression with the same tree.
		n2, err := parse(n.String())
		if err != nil {
			t.Errorf("parse(%q) (rendering of %q): %v", n.String(), tt.src, err)
			continue
		}
		if n2.String() != n.String() {
			t.Errorf("rendering of %q does not round-trip: %s vs %s", tt.src, n2, n)
		}
	}
}

func TestParseErrors(t *testing.T) {
	tests := []struct {
		src    string
		offset int
		msg    string
	}{
		{"", 0, "unexpected end of expression"},
		{"a.", 2, "expected a name"},
		{"a +  b", 2, "operator '+' is not supported"},
		{"a - b", 2, "operator '-' is not supported"},
		{"a < b", 2, "operator '<' is not supported"},
		{"a ~ b", 2, "operator '~' is not supported"},
		{"a implies b", 2, "operator 'implies' is not supported"},
		{"a xor b", 2, "operator 'xor' is not supported"},
		{"a contains b", 2, "operator 'contains' is not supported"},
		{"a in b", 2, "operator 'in' is not supported"},
		{"a & b", 2, "operator '&' is not supported"},
		{"a div 2", 2, "operator 'div' is not supported"},
		{"-a", 0, "unary '-' is not supported"},
		{"a.count()", 2, "function count() is not supported"},
		{"a.select(b)", 2, "function select() is not supported"},
		{"a.where()", 2, "where() takes one argument"},
		{"a.where(b, c)", 2, "where() takes one argument"},
		{"a.first(1)", 2, "first() takes no arguments"},
		{"a.extension(b)", 12, "extension() takes a string literal"},
		{"a.as('x')", 5, "expected a type name"},
		{"a[b]", 2, "only an integer literal is supported as an index"},
		{"a[1.5]", 2, "only an integer literal"},
		{"a[0", 3, "expected ']'"},
		{"@2020-01-01", 0, "date and time literals are not supported"},
		{"5 'mg'", 2, "quantity literals are not supported"},
		{"4 days", 2, "quantity literals are not supported"},
		{"{}", 0, "collection literals are not supported"},
		{"$index", 0, "variable $index is not supported"},
		{"%ucum", 0, "variable %ucum is not supported"},
		{"a.$this", 2, "$this is not supported after '.'"},
		{"'abc", 4, "unterminated string literal"},
		{"'\\x'", 1, "invalid escape"},
		{"a b", 2, "unexpected 'b'"},
		{"(a", 2, "expected ')'"},
		{"a ! b", 2, "'!' must be followed by"},
		{"a # b", 2, "unexpected character '#'"},
		{"and", 0, "unexpected 'and'"},
		{"a as", 4, "expected a type name"},
		{"/* x", 0, "unterminated comment"},
		{strings.Repeat("(", 200) + "a" + strings.Repeat(")", 200), 100, "nested too deeply"},
	}
	for _, tt := range tests {
		_, err := Parse(tt.src)
		var se *SyntaxError
		if !errors.As(err, &se) {
			t.Errorf("Parse(%q) = %v, want a *SyntaxError", tt.src, err)
			continue
		}
		if se.Offset != tt.offset || !strings.Contains(se.Msg, tt.msg) {
			t.Errorf("Parse(%q) = %v, want offset %d and %q", tt.src, err, tt.offset, tt.msg)
		}
	}
}

// TestParseSpecification parses every expression of every R4
// SearchParameter, composite components included.
func TestParseSpecification(t *testing.T) {
	exprs := specExpressions(t)
	if len(exprs) < 1400 {
		t.Fatalf("found %d expressions, want the ~1,470 of R4", len(exprs))
	}
	for id, src := range exprs {
		if _, err := Parse(src); err != nil {
			t.Errorf("%s: Parse(%q): %v", id, src, err)
		}
	}
}

// specExpressions returns the FHIRPath expressions of search-parameters.json
// by SearchParameter id ("id#n" for the n-th component of a composite).
func specExpressions(t testing.TB) map[string]string {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(sharedtest.Dir(t, "fhir-r4"), "search-parameters.json"))
	if err != nil {
		t.Fatal(err)
	}
	var b struct {
		Entry []struct {
			Resource struct {
				ID         string `json:"id"`
				Expression string `json:"expression"`
				Component  []struct {
					Expression string `json:"expression"`
				} `json:"component"`
			} `json:"resource"`
		} `json:"entry"`
	}
	if err := json.Unmarshal(data, &b); err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for _, e := range b.Entry {
		r := e.Resource
		if r.Expression != "" {
			out[r.ID] = r.Expression
		}
		for i, c := range r.Component {
			out[r.ID+"#"+string(rune('0'+i))] = c.Expression
		}
	}
	return out
}

var fuzzResource = func() *fhir.Value {
	v, err := fhir.Parse([]byte(observation), 0)
	if err != nil {
		panic(err)
	}
	return &v
}()

// FuzzParse checks that Parse never panics, that what it accepts renders
// back to the same tree, and that evaluating it never panics.
func FuzzParse(f *testing.F) {
	for _, s := range []string{
		"Patient.name.given",
		"Observation.value as Quantity | Observation.component.value as Quantity",
		"Account.subject.where(resolve() is Patient)",
		"Patient.deceased.exists() and Patient.deceased != false",
		"telecom.where(system='email')",
		"Bundle.entry[0].resource",
		"extension('http://x.org/a').value.ofType(string).first()",
		"(a | b).not().empty() or $this = %resource",
		"'\\u00e9\\'' != 1.5",
		"`x y`.z",
		"a // c\n/* d */",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, src string) {
		e, err := Parse(src)
		if err != nil {
			var se *SyntaxError
			if !errors.As(err, &se) {
				t.Fatalf("Parse(%q) returned %T, want *SyntaxError", src, err)
			}
			if se.Offset < 0 || se.Offset > len(src) {
				t.Fatalf("Parse(%q): offset %d out of range", src, se.Offset)
			}
			return
		}
		// What parses renders to an expression with the same tree.
		r := e.root.String()
		e2, err := Parse(r)
		if err != nil {
			t.Fatalf("Parse(%q) rendered as %q, which fails: %v", src, r, err)
		}
		if e2.root.String() != r {
			t.Fatalf("Parse(%q): rendering %q re-renders as %q", src, r, e2.root.String())
		}
		// Evaluation fails or succeeds; it never panics, specialized or not.
		e.Eval(fuzzResource)
		if s, err := e.For("Observation"); err == nil {
			var ev Evaluator
			ev.Eval(s, fuzzResource)
			ev.Eval(s, fuzzResource)
		}
	})
}
