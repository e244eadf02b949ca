package fhirpath

import (
	"errors"
	"strings"
	"testing"

	"github.com/ehrvault/ehrvault/internal/fhir"
)

const observation = `{
  "resourceType": "Observation",
  "id": "o1",
  "contained": [{"resourceType": "Patient", "id": "p1", "gender": "female"}],
  "status": "final",
  "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category", "code": "vital-signs"}]}],
  "code": {"coding": [{"system": "http://loinc.org", "code": "85354-9"}, {"system": "http://snomed.info/sct", "code": "75367002"}], "text": "BP"},
  "subject": {"reference": "Patient/123"},
  "performer": [{"reference": "#p1"}, {"reference": "https://example.org/fhir/Practitioner/9/_history/2"}, {"reference": "urn:uuid:2c1f3f3e-8f7a-4b8e-9a53-0e0b3c1e0f00"}, {"identifier": {"value": "x"}}],
  "valueQuantity": {"value": 120, "unit": "mmHg"},
  "interpretation": [{"text": "high"}],
  "component": [
    {"code": {"text": "systolic"}, "valueQuantity": {"value": 120.0}},
    {"code": {"text": "mood"}, "valueCodeableConcept": {"text": "calm"}},
    {"code": {"text": "duration"}, "valueString": "long"}
  ],
  "extension": [
    {"url": "http://x.org/a", "valueString": "A"},
    {"url": "http://x.org/b", "valueBoolean": true}
  ]
}`

const patient = `{
  "resourceType": "Patient",
  "id": "p2",
  "active": true,
  "name": [{"family": "Doe", "given": ["Jo", null, "Ann"], "_given": [null, {"extension": []}, null]}],
  "telecom": [{"system": "phone", "value": "555"}, {"system": "email", "value": "jo@example.org"}, {"system": "email", "value": "ann@example.org"}],
  "deceasedDateTime": "2020-01-01",
  "link": [{"other": {"reference": "Patient/p3"}, "type": "seealso"}]
}`

const bundle = `{
  "resourceType": "Bundle",
  "type": "document",
  "entry": [
    {"resource": {"resourceType": "Composition", "id": "c1", "status": "final", "subject": {"reference": "Patient/1"}}},
    {"resource": {"resourceType": "Patient", "id": "1"}}
  ]
}`

func mustParseJSON(t testing.TB, s string) *fhir.Value {
	t.Helper()
	v, err := fhir.Parse([]byte(s), 0)
	if err != nil {
		t.Fatalf("fhir.Parse: %v", err)
	}
	return &v
}

// render shows a result as "Type=json" items separated by "; ".
func render(nodes []Node) string {
	var parts []string
	for _, n := range nodes {
		if n.Value == nil {
			parts = append(parts, n.TypeName()+"=?")
			continue
		}
		parts = append(parts, n.TypeName()+"="+string(fhir.Marshal(n.Value)))
	}
	return strings.Join(parts, "; ")
}

func TestEval(t *testing.T) {
	obs, pat, bun := mustParseJSON(t, observation), mustParseJSON(t, patient), mustParseJSON(t, bundle)
	tests := []struct {
		res  *fhir.Value
		expr string
		want string
	}{
		// Paths, type filters, arrays.
		{obs, "Observation.status", `code="final"`},
		{obs, "status", `code="final"`},
		{obs, "Patient.status", ``},
		{obs, "Resource.id = 'o1'", `System.Boolean=true`},
		{obs, "DomainResource.status", `code="final"`},
		{obs, "Observation.code.coding.code", `code="85354-9"; code="75367002"`},
		{obs, "Observation.code.text", `string="BP"`},
		{obs, "Observation.nothing", ``},
		{obs, "Observation.category.coding.system", `uri="http://terminology.hl7.org/CodeSystem/observation-category"`},
		{pat, "Patient.name.given", `string="Jo"; string="Ann"`},
		{pat, "Patient.name.given[1]", `string="Ann"`},
		{pat, "Patient.name.given[2]", ``},
		{pat, "Patient.name.given.first()", `string="Jo"`},
		// Choice elements.
		{obs, "Observation.value", `Quantity={"value":120,"unit":"mmHg"}`},
		{obs, "Observation.value.unit", `string="mmHg"`},
		{obs, "Observation.component.value", `Quantity={"value":120.0}; CodeableConcept={"text":"calm"}; string="long"`},
		{obs, "Observation.component.value as Quantity", `Quantity={"value":120.0}`},
		{obs, "(Observation.component.value as CodeableConcept).text", `string="calm"`},
		{obs, "Observation.component.value.as(string)", `string="long"`},
		{obs, "Observation.component.value.ofType(CodeableConcept)", `CodeableConcept={"text":"calm"}`},
		{obs, "Observation.value as Quantity | Observation.value as SampledData", `Quantity={"value":120,"unit":"mmHg"}`},
		{obs, "Observation.valueQuantity", ``}, // FHIRPath names the element, not the JSON member
		{pat, "Patient.deceased", `dateTime="2020-01-01"`},
		{pat, "Patient.deceased as dateTime", `dateTime="2020-01-01"`},
		{pat, "Patient.deceased as boolean", ``},
		// Specializations.
		{obs, "Observation.status is code", `System.Boolean=true`},
		{obs, "Observation.status is string", `System.Boolean=true`},
		{obs, "Observation.status is FHIR.string", `System.Boolean=true`},
		{obs, "Observation.status is System.String", `System.Boolean=false`},
		{obs, "Observation.status is uri", `System.Boolean=false`},
		{obs, "Observation.value is Quantity", `System.Boolean=true`},
		{obs, "Observation is DomainResource", `System.Boolean=true`},
		{obs, "Observation.component.first() is BackboneElement", `System.Boolean=true`},
		// Unions.
		{obs, "Observation.status | Observation.status", `code="final"`},
		{obs, "Observation.status | Observation.code.text", `code="final"; string="BP"`},
		{obs, "'a' | 'a' | 'b'", `System.String="a"; System.String="b"`},
		{obs, "Observation.subject | Group.member.entity", `Reference={"reference":"Patient/123"}`},
		// where, resolve.
		{pat, "Patient.telecom.where(system='email').value", `string="jo@example.org"; string="ann@example.org"`},
		{pat, "Patient.telecom.where(system='fax')", ``},
		{pat, "Patient.telecom.where(system!='email').value", `string="555"`},
		{obs, "Observation.subject.where(resolve() is Patient)", `Reference={"reference":"Patient/123"}`},
		{obs, "Observation.subject.where(resolve() is Group)", ``},
		{obs, "Observation.subject.resolve()", `Patient=?`},
		{obs, "Observation.performer.resolve()", `Patient={"resourceType":"Patient","id":"p1","gender":"female"}; Practitioner=?`},
		{obs, "Observation.performer.resolve().gender", `code="female"`},
		{obs, "Observation.performer.where(resolve() is Practitioner)", `Reference={"reference":"https://example.org/fhir/Practitioner/9/_history/2"}`},
		{obs, "Observation.performer.where(resolve() is Resource).count", ``},
		{obs, "Observation.contained.gender", `code="female"`},
		{obs, "Observation.contained is Patient", `System.Boolean=true`},
		{pat, "Patient.link.other.where(resolve() is Patient)", `Reference={"reference":"Patient/p3"}`},
		{bun, "Bundle.entry[0].resource", `Composition={"resourceType":"Composition","id":"c1","status":"final","subject":{"reference":"Patient/1"}}`},
		{bun, "Bundle.entry[0].resource.subject.reference", `string="Patient/1"`},
		{bun, "Bundle.entry.resource.ofType(Patient).id = '1'", `System.Boolean=true`},
		// exists, empty, not, boolean logic.
		{pat, "Patient.deceased.exists() and Patient.deceased != false", `System.Boolean=true`},
		{obs, "Observation.deceased.exists()", `System.Boolean=false`},
		{obs, "Observation.component.exists(value is string)", `System.Boolean=true`},
		{obs, "Observation.component.exists(value is boolean)", `System.Boolean=false`},
		{obs, "Observation.issued.empty()", `System.Boolean=true`},
		{obs, "Observation.status.empty().not()", `System.Boolean=true`},
		{obs, "Observation.issued.not()", ``},
		{obs, "Observation.issued = 'x'", ``},
		{obs, "Observation.issued != 'x'", ``},
		{obs, "Observation.status = 'final' and Observation.issued = 'x'", ``},
		{obs, "Observation.status = 'final' or Observation.issued = 'x'", `System.Boolean=true`},
		{obs, "Observation.status = 'draft' and Observation.issued = 'x'", `System.Boolean=false`},
		{obs, "Observation.status = 'draft' or Observation.issued = 'x'", ``},
		{obs, "false or false", `System.Boolean=false`},
		{obs, "Observation.value.value = 120.0", `System.Boolean=true`},
		{obs, "Observation.value.value = 121", `System.Boolean=false`},
		{obs, "Observation.code.coding.code = '85354-9'", `System.Boolean=false`}, // two items vs one
		{obs, "Observation.component[0].code = Observation.component[0].code", `System.Boolean=true`},
		{obs, "Observation.component[0].code = Observation.component[1].code", `System.Boolean=false`},
		{obs, "Observation.status = Observation.code.text", `System.Boolean=false`},
		// extension(), $this, %resource.
		{obs, "Observation.extension('http://x.org/a').value", `string="A"`},
		{obs, "Observation.extension('http://x.org/c')", ``},
		{obs, "extension('http://x.org/b').value = true", `System.Boolean=true`},
		{obs, "Observation.status.where($this = 'final')", `code="final"`},
		{obs, "Observation.component.where(%resource.status = 'final').code.text", `string="systolic"; string="mood"; string="duration"`},
		{obs, "Observation.category.coding.where(code = 'vital-signs' and system.exists()).code", `code="vital-signs"`},
	}
	for _, tt := range tests {
		e, err := Parse(tt.expr)
		if err != nil {
			t.Errorf("Parse(%q): %v", tt.expr, err)
			continue
		}
		got, err := e.Eval(tt.res)
		if err != nil {
			t.Errorf("Eval(%q): %v", tt.expr, err)
			continue
		}
		if r := render(got); r != tt.want {
			t.Errorf("Eval(%q) = %s, want %s", tt.expr, r, tt.want)
		}
		// The specialized expression gives the same result.
		typ := tt.res.Str("resourceType")
		s, err := e.For(typ)
		if err != nil {
			t.Errorf("Parse(%q).For(%s): %v", tt.expr, typ, err)
			continue
		}
		got, err = s.Eval(tt.res)
		if err != nil {
			t.Errorf("Parse(%q).For(%s).Eval: %v", tt.expr, typ, err)
			continue
		}
		if r := render(got); r != tt.want {
			t.Errorf("Parse(%q).For(%s).Eval = %s, want %s", tt.expr, typ, r, tt.want)
		}
	}
}

func TestEvalErrors(t *testing.T) {
	obs := mustParseJSON(t, observation)
	for _, src := range []string{
		"Observation.component is BackboneElement",
		"Observation.component.code.text.not()",
		"Observation.where(code.coding)",
		"Observation.code.coding.code and true",
	} {
		e, err := Parse(src)
		if err != nil {
			t.Fatalf("Parse(%q): %v", src, err)
		}
		_, err = e.Eval(obs)
		var ee *EvalError
		if !errors.As(err, &ee) {
			t.Errorf("Eval(%q) = %v, want an *EvalError", src, err)
		}
	}
	// A specialized expression refuses a resource of another type.
	e, _ := Parse("Patient.name")
	s, err := e.For("Patient")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Eval(obs); err == nil {
		t.Errorf("Patient expression evaluated on an Observation: no error")
	}
}

func TestFor(t *testing.T) {
	tests := []struct {
		expr, typ, want string
	}{
		{"Observation.subject | Group.member.entity", "Observation", "subject"},
		{"Observation.subject | Group.member.entity", "Group", "member.entity"},
		{"Observation.subject | Group.member.entity", "Patient", "{}"},
		{"(Observation.value as Quantity) | (Observation.value as SampledData) | (Condition.x as Quantity)", "Observation", "((value as Quantity) | (value as SampledData))"},
		{"Resource.id", "Patient", "id"},
		{"DomainResource.text", "Bundle", "{}"},
		{"name | alias", "Organization", "(name | alias)"},
		{"AuditEvent.agent.who.where(resolve() is Patient) | AuditEvent.entity.what.where(resolve() is Patient)", "AuditEvent",
			"(agent.who.where((resolve() is Patient)) | entity.what.where((resolve() is Patient)))"},
		{"Patient.deceased.exists() and Patient.deceased != false", "Patient", "(deceased.exists() and (deceased != false))"},
		{"Patient.deceased.exists() and Patient.deceased != false", "Person", "(false and {})"},
		{"Observation.code.where(Observation.status = 'x')", "Observation", "code.where((Observation.status = 'x'))"},
	}
	for _, tt := range tests {
		e, err := Parse(tt.expr)
		if err != nil {
			t.Fatalf("Parse(%q): %v", tt.expr, err)
		}
		s, err := e.For(tt.typ)
		if err != nil {
			t.Errorf("For(%s) of %q: %v", tt.typ, tt.expr, err)
			continue
		}
		if got := s.root.String(); got != tt.want {
			t.Errorf("For(%s) of %q = %s, want %s", tt.typ, tt.expr, got, tt.want)
		}
		if s.Empty() != (tt.want == "{}") {
			t.Errorf("For(%s) of %q: Empty() = %v", tt.typ, tt.expr, s.Empty())
		}
	}
	for _, src := range []string{"Foo.bar", "x as Quantty", "x.ofType(System.Strung)", "x.where(y is Nope)"} {
		e, err := Parse(src)
		if err != nil {
			t.Fatalf("Parse(%q): %v", src, err)
		}
		if _, err := e.For("Observation"); err == nil || !strings.Contains(err.Error(), "unknown type") {
			t.Errorf("For of %q = %v, want an unknown type error", src, err)
		}
	}
	if _, err := (&Expr{root: &node{kind: nThis}}).For("HumanName"); err == nil {
		t.Errorf("For(HumanName): no error")
	}
}

func TestReferenceTarget(t *testing.T) {
	tests := []struct {
		ref, typ, id string
	}{
		{"Patient/123", "Patient", "123"},
		{"Patient/123/_history/4", "Patient", "123"},
		{"https://example.org/fhir/Patient/a.b-c", "Patient", "a.b-c"},
		{"http://example.org/Observation/1/_history/1", "Observation", "1"},
		{"#p1", "", ""},
		{"urn:uuid:2c1f3f3e-8f7a-4b8e-9a53-0e0b3c1e0f00", "", ""},
		{"urn:oid:1.2.3", "", ""},
		{"Patient?identifier=a|b", "", ""},
		{"Patient", "", ""},
		{"Patient/", "", ""},
		{"/Patient/1", "", ""},
		{"Foo/1", "", ""},
		{"x/Patient/1", "", ""},
		{"Patient/1 2", "", ""},
		{"http://hl7.org/fhir/ValueSet/x|4.0.1", "", ""},
	}
	for _, tt := range tests {
		typ, id, ok := ReferenceTarget(tt.ref)
		if typ != tt.typ || id != tt.id || ok != (tt.typ != "") {
			t.Errorf("ReferenceTarget(%q) = %q, %q, %v; want %q, %q", tt.ref, typ, id, ok, tt.typ, tt.id)
		}
	}
}
