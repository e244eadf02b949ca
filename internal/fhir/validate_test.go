package fhir

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ehrvault/ehrvault/internal/sharedtest"
)

func TestModelCoversR4(t *testing.T) {
	types := ResourceTypes()
	// 146 concrete R4 resource types; SubscriptionStatus (R4B) is not one.
	if len(types) != 146 {
		t.Errorf("ResourceTypes() has %d types, want 146", len(types))
	}
	for _, name := range []string{"Patient", "Coverage", "Observation", "ExplanationOfBenefit", "Consent", "ImagingStudy"} {
		if !IsResourceType(name) {
			t.Errorf("IsResourceType(%q) = false", name)
		}
	}
	for _, name := range []string{"SubscriptionStatus", "DomainResource", "Resource", "HumanName", "Patient.contact", "MetadataResource"} {
		if IsResourceType(name) {
			t.Errorf("IsResourceType(%q) = true", name)
		}
	}
	obs := Type("Observation")
	e, code := obs.Element("valueQuantity")
	if e == nil || code != "Quantity" || !e.Choice || e.Path != "Observation.value[x]" {
		t.Errorf("Observation.Element(valueQuantity) = %+v, %q", e, code)
	}
	if e, _ := obs.Element("value"); e != nil {
		t.Errorf("Observation.Element(value) = %+v, want nil: the JSON name carries the type", e)
	}
	q := Type("Questionnaire.item")
	if e, code := q.Element("item"); e == nil || code != "Questionnaire.item" {
		t.Errorf("Questionnaire.item.item = %+v, %q, want the recursive backbone type", e, code)
	}
	if e, code := Type("Patient").Element("id"); e == nil || code != "id" {
		t.Errorf("Patient.id has type %q, want id", code)
	}
	if g := Type("Patient").Elements; g[0].Name != "id" || g[1].Name != "meta" {
		t.Errorf("Patient elements start %s, %s; want id, meta (snapshot order)", g[0].Name, g[1].Name)
	}
}

// issuePaths validates doc and returns the paths of its error issues.
func issuePaths(t *testing.T, doc string) []string {
	t.Helper()
	v, issues, err := ParseResource([]byte(doc))
	if err != nil {
		t.Fatalf("ParseResource(%s): %v", doc, err)
	}
	_ = v
	var paths []string
	for _, is := range issues {
		if is.Severity == "error" {
			paths = append(paths, is.Path)
		}
	}
	return paths
}

func TestValidate(t *testing.T) {
	for _, tt := range []struct {
		name string
		doc  string
		want []string // paths of the error issues; nil for a valid resource
	}{
		{"minimal", `{"resourceType":"Patient"}`, nil},
		{"full patient", `{"resourceType":"Patient","id":"p1","meta":{"versionId":"2","lastUpdated":"2024-01-02T03:04:05.678Z"},
			"identifier":[{"system":"http://hl7.org/fhir/sid/us-ssn","value":"999-12-3456"}],"active":true,
			"name":[{"use":"official","family":"Doe","given":["Jane","Q"]}],"gender":"female","birthDate":"1980-02-29",
			"deceasedBoolean":false,"multipleBirthInteger":2,
			"address":[{"line":["1 Main St"],"city":"Springfield","state":"MA","postalCode":"01100"}],
			"telecom":[{"system":"phone","value":"555-0100","use":"home"}],
			"contact":[{"relationship":[{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/v2-0131","code":"N"}]}],"name":{"family":"Doe"}}]}`, nil},
		{"no resourceType", `{"id":"x"}`, []string{"resourceType"}},
		{"unknown resourceType", `{"resourceType":"Patientt"}`, []string{"resourceType"}},
		{"abstract resourceType", `{"resourceType":"DomainResource"}`, []string{"resourceType"}},
		{"R4B type", `{"resourceType":"SubscriptionStatus"}`, []string{"resourceType"}},
		{"not an object", `[1,2]`, []string{""}},
		{"unknown element", `{"resourceType":"Patient","nickname":"x"}`, []string{"Patient.nickname"}},
		{"unknown nested element", `{"resourceType":"Patient","name":[{"first":"x"}]}`, []string{"Patient.name[0].first"}},
		{"bad date", `{"resourceType":"Patient","birthDate":"1980-02-30"}`, []string{"Patient.birthDate"}},
		{"not leap year", `{"resourceType":"Patient","birthDate":"1900-02-29"}`, []string{"Patient.birthDate"}},
		{"date form", `{"resourceType":"Patient","birthDate":"02/03/1980"}`, []string{"Patient.birthDate"}},
		{"dateTime without zone", `{"resourceType":"Observation","status":"final","code":{"text":"x"},"effectiveDateTime":"2020-01-01T10:00:00"}`, []string{"Observation.effectiveDateTime"}},
		{"instant needs seconds and zone", `{"resourceType":"Patient","meta":{"lastUpdated":"2020-01-01"}}`, []string{"Patient.meta.lastUpdated"}},
		{"bad code", `{"resourceType":"Patient","gender":"robot"}`, []string{"Patient.gender"}},
		{"code with spaces", `{"resourceType":"Patient","gender":" male"}`, []string{"Patient.gender"}},
		{"bad id", `{"resourceType":"Patient","id":"a b"}`, []string{"Patient.id"}},
		{"id too long", `{"resourceType":"Patient","id":"` + strings.Repeat("a", 65) + `"}`, []string{"Patient.id"}},
		{"boolean as string", `{"resourceType":"Patient","active":"true"}`, []string{"Patient.active"}},
		{"integer as decimal", `{"resourceType":"Patient","multipleBirthInteger":1.5}`, []string{"Patient.multipleBirthInteger"}},
		{"integer out of range", `{"resourceType":"Patient","multipleBirthInteger":2147483648}`, []string{"Patient.multipleBirthInteger"}},
		{"positiveInt zero", `{"resourceType":"Observation","status":"final","code":{"text":"x"},"valueSampledData":{"origin":{"value":1},"period":1,"dimensions":0,"data":"1"}}`, []string{"Observation.valueSampledData.dimensions"}},
		{"decimal as string", `{"resourceType":"Observation","status":"final","code":{"text":"x"},"valueQuantity":{"value":"1.0"}}`, []string{"Observation.valueQuantity.value"}},
		{"decimal precision kept", `{"resourceType":"Observation","status":"final","code":{"text":"x"},"valueQuantity":{"value":1.50}}`, nil},
		{"array for single", `{"resourceType":"Patient","gender":["male"]}`, []string{"Patient.gender"}},
		{"single for array", `{"resourceType":"Patient","name":{"family":"x"}}`, []string{"Patient.name"}},
		{"empty array", `{"resourceType":"Patient","name":[]}`, []string{"Patient.name"}},
		{"empty object", `{"resourceType":"Patient","name":[{}]}`, []string{"Patient.name[0]"}},
		{"empty string", `{"resourceType":"Patient","name":[{"family":""}]}`, []string{"Patient.name[0].family"}},
		{"null", `{"resourceType":"Patient","active":null}`, []string{"Patient.active"}},
		{"missing required", `{"resourceType":"Observation","status":"final"}`, []string{"Observation.code"}},
		{"missing required choice", `{"resourceType":"MedicationRequest","status":"active","intent":"order","subject":{"reference":"Patient/1"}}`, []string{"MedicationRequest.medication[x]"}},
		{"two choices", `{"resourceType":"Observation","status":"final","code":{"text":"x"},"valueString":"a","valueBoolean":true}`, []string{"Observation.valueBoolean"}},
		{"choice type not allowed", `{"resourceType":"Patient","deceasedString":"yes"}`, []string{"Patient.deceasedString"}},
		{"required binding on code", `{"resourceType":"Observation","status":"done","code":{"text":"x"}}`, []string{"Observation.status"}},
		{"required binding on CodeableConcept", `{"resourceType":"Observation","status":"final","code":{"text":"x"},
			"component":[{"code":{"text":"y"},"dataAbsentReason":{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/data-absent-reason","code":"asked"}]}}]}`, nil},
		{"primitive extension", `{"resourceType":"Patient","birthDate":"1980-01-01","_birthDate":{"extension":[{"url":"http://hl7.org/fhir/StructureDefinition/patient-birthTime","valueDateTime":"1980-01-01T10:00:00Z"}]}}`, nil},
		{"primitive extension alone", `{"resourceType":"Patient","_birthDate":{"extension":[{"url":"http://hl7.org/fhir/StructureDefinition/data-absent-reason","valueCode":"unknown"}]}}`, nil},
		{"extension on non-primitive", `{"resourceType":"Patient","_name":{"id":"x"}}`, []string{"Patient._name"}},
		{"repeating primitive with nulls", `{"resourceType":"Patient","name":[{"given":["A",null],"_given":[null,{"extension":[{"url":"http://example.org/x","valueString":"y"}]}]}]}`, nil},
		{"null without its pair", `{"resourceType":"Patient","name":[{"given":["A",null]}]}`, []string{"Patient.name[0].given[1]"}},
		{"pair arrays differ in length", `{"resourceType":"Patient","name":[{"given":["A","B"],"_given":[{"id":"x"}]}]}`, []string{"Patient.name[0].given"}},
		{"extension without url", `{"resourceType":"Patient","extension":[{"valueString":"x"}]}`, []string{"Patient.extension[0].url"}},
		{"extension with value and extensions", `{"resourceType":"Patient","extension":[{"url":"http://example.org/a","valueString":"x","extension":[{"url":"b","valueString":"y"}]}]}`, []string{"Patient.extension[0]"}},
		{"bad extension value", `{"resourceType":"Patient","extension":[{"url":"http://example.org/a","valueDate":"tomorrow"}]}`, []string{"Patient.extension[0].valueDate"}},
		{"contained", `{"resourceType":"Observation","status":"final","code":{"text":"x"},"contained":[{"resourceType":"Patient","id":"p"}],"subject":{"reference":"#p"}}`, nil},
		{"contained invalid", `{"resourceType":"Observation","status":"final","code":{"text":"x"},"contained":[{"resourceType":"Patient","id":"p","gender":"x"}],"subject":{"reference":"#p"}}`, []string{"Observation.contained[0].gender"}},
		{"contained nests", `{"resourceType":"Observation","status":"final","code":{"text":"x"},"contained":[{"resourceType":"Patient","id":"p","contained":[{"resourceType":"Patient","id":"q"}]}],"subject":{"reference":"#p"}}`, []string{"Observation.contained[0].contained"}},
		{"contained with version", `{"resourceType":"Observation","status":"final","code":{"text":"x"},"contained":[{"resourceType":"Patient","id":"p","meta":{"versionId":"1"}}],"subject":{"reference":"#p"}}`, []string{"Observation.contained[0].meta"}},
		{"dangling local reference", `{"resourceType":"Observation","status":"final","code":{"text":"x"},"subject":{"reference":"#nope"}}`, []string{"Observation.subject.reference"}},
		{"bundle entry", `{"resourceType":"Bundle","type":"collection","entry":[{"resource":{"resourceType":"Patient","gender":"x"}}]}`, []string{"Bundle.entry[0].resource.gender"}},
		{"narrative", `{"resourceType":"Patient","text":{"status":"generated","div":"<div xmlns=\"http://www.w3.org/1999/xhtml\"><p>Jane&nbsp;Doe</p></div>"}}`, nil},
		{"narrative not xml", `{"resourceType":"Patient","text":{"status":"generated","div":"<div xmlns=\"http://www.w3.org/1999/xhtml\"><p>x</div>"}}`, []string{"Patient.text.div"}},
		{"narrative not a div", `{"resourceType":"Patient","text":{"status":"generated","div":"<p xmlns=\"http://www.w3.org/1999/xhtml\">x</p>"}}`, []string{"Patient.text.div"}},
		{"narrative script", `{"resourceType":"Patient","text":{"status":"generated","div":"<div xmlns=\"http://www.w3.org/1999/xhtml\"><script>alert(1)</script></div>"}}`, []string{"Patient.text.div"}},
		{"narrative handler", `{"resourceType":"Patient","text":{"status":"generated","div":"<div xmlns=\"http://www.w3.org/1999/xhtml\"><img src=\"x\" onerror=\"alert(1)\"/></div>"}}`, []string{"Patient.text.div"}},
		{"narrative javascript link", `{"resourceType":"Patient","text":{"status":"generated","div":"<div xmlns=\"http://www.w3.org/1999/xhtml\"><a href=\" JavaScript:alert(1)\">x</a></div>"}}`, []string{"Patient.text.div"}},
		{"base64", `{"resourceType":"Binary","contentType":"text/plain","data":"aGVsbG8="}`, nil},
		{"bad base64", `{"resourceType":"Binary","contentType":"text/plain","data":"a*b"}`, []string{"Binary.data"}},
		{"fhir_comments", `{"resourceType":"Patient","fhir_comments":["x"]}`, []string{"Patient.fhir_comments"}},
		{"too many", `{"resourceType":"Patient","link":[{"other":{"reference":"Patient/1"},"type":"seealso","type":"refer"}]}`, nil}, // duplicate member: refused by Parse (see below)
	} {
		t.Run(tt.name, func(t *testing.T) {
			if tt.name == "too many" {
				if _, _, err := ParseResource([]byte(tt.doc)); err == nil {
					t.Errorf("ParseResource accepted a duplicate member")
				}
				return
			}
			got := issuePaths(t, tt.doc)
			if strings.Join(got, "|") != strings.Join(tt.want, "|") {
				t.Errorf("Validate(%s):\n issue paths %q\n want %q", tt.name, got, tt.want)
			}
		})
	}
}

// TestIssuesNeverQuoteValues: an invalid value may be health data, so no
// message repeats it.
func TestIssuesNeverQuoteValues(t *testing.T) {
	const secret = "Zebediah-999-87-6543"
	for _, doc := range []string{
		`{"resourceType":"Patient","birthDate":"` + secret + `"}`,
		`{"resourceType":"Patient","gender":"` + secret + `"}`,
		`{"resourceType":"Patient","id":"` + secret + ` x"}`,
		`{"resourceType":"Patient","active":"` + secret + `"}`,
		`{"resourceType":"Patient","text":{"status":"generated","div":"<p>` + secret + `</p>"}}`,
		`{"resourceType":"` + secret + `"}`,
		`{"resourceType":"Patient","` + secret + `":1}`,
	} {
		_, issues, err := ParseResource([]byte(doc))
		if err != nil {
			t.Fatal(err)
		}
		if len(issues) == 0 {
			t.Errorf("%s: no issue", doc)
		}
		for _, is := range issues {
			if strings.Contains(is.Message, "Zebediah") || strings.Contains(is.Message, "6543") {
				t.Errorf("issue message quotes the value: %q", is.Message)
			}
		}
	}
}

// TestExamplesAndSyntheaAreValid: the official examples and the Synthea
// patients are valid R4 (../shared/testdata/README.md says so, checked by
// another tool), so Validate must accept every one of them.
func TestExamplesAndSyntheaAreValid(t *testing.T) {
	var files []string
	for _, dir := range [][]string{{"testdata", "fhir-examples"}, {"testdata", "synthea", "smart-r4-2019"}, {"testdata", "synthea", "fhir-data-pipes"}} {
		m, _ := filepath.Glob(filepath.Join(sharedtest.Dir(t, dir...), "*.json"))
		files = append(files, m...)
	}
	if len(files) < 750 {
		t.Fatalf("found only %d files", len(files))
	}
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		_, issues, err := ParseResource(data)
		if err != nil {
			t.Errorf("%s: %v", filepath.Base(f), err)
			continue
		}
		for i, is := range issues {
			if i == 3 {
				break
			}
			t.Errorf("%s: %v", filepath.Base(f), is)
		}
	}
}

func TestNormalize(t *testing.T) {
	v, err := Parse([]byte(`{"gender":"male","_birthDate":{"id":"b"},"name":[{"given":["A"],"family":"B","use":"official"}],
		"birthDate":"1980-01-01","id":"p","resourceType":"Patient",
		"contained":[{"status":"final","resourceType":"Observation","code":{"text":"x"}}]}`), 0)
	if err != nil {
		t.Fatal(err)
	}
	Normalize(&v)
	got := string(Marshal(&v))
	want := `{"resourceType":"Patient","id":"p","contained":[{"resourceType":"Observation","status":"final","code":{"text":"x"}}],` +
		`"name":[{"use":"official","family":"B","given":["A"]}],"gender":"male","birthDate":"1980-01-01","_birthDate":{"id":"b"}}`
	if got != want {
		t.Errorf("Normalize:\n got %s\nwant %s", got, want)
	}
}

func TestReferences(t *testing.T) {
	v, err := Parse([]byte(`{"resourceType":"Observation","status":"final","code":{"text":"x"},
		"subject":{"reference":"urn:uuid:1"},
		"performer":[{"reference":"Practitioner/2"},{"display":"no reference"}],
		"extension":[{"url":"http://example.org/e","valueReference":{"reference":"Organization/3"}}],
		"contained":[{"resourceType":"Provenance","target":[{"reference":"#"}],"recorded":"2020-01-01T00:00:00Z","agent":[{"who":{"reference":"Device/4"}}]}],
		"component":[{"code":{"text":"c"},"valueString":"Patient/5"}]}`), 0)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, r := range References(&v) {
		got = append(got, r.Str("reference"))
	}
	want := "urn:uuid:1|Practitioner/2||Organization/3|#|Device/4"
	if strings.Join(got, "|") != want {
		t.Errorf("References = %q, want %q", strings.Join(got, "|"), want)
	}
	// The pointers are into v: rewriting one changes v.
	References(&v)[0].Set("reference", StringValue("Patient/9"))
	if v.Get("subject").Str("reference") != "Patient/9" {
		t.Error("References did not return pointers into the resource")
	}
}

func FuzzParseResource(f *testing.F) {
	for _, seed := range []string{
		`{"resourceType":"Patient","id":"a","name":[{"family":"B","given":["C",null],"_given":[null,{"id":"x"}]}]}`,
		`{"resourceType":"Observation","status":"final","code":{"text":"x"},"valueQuantity":{"value":1.50e2}}`,
		`{"resourceType":"Bundle","type":"transaction","entry":[{"fullUrl":"urn:uuid:1","resource":{"resourceType":"Patient"},"request":{"method":"POST","url":"Patient"}}]}`,
		`{"resourceType":"Patient","text":{"status":"generated","div":"<div xmlns=\"http://www.w3.org/1999/xhtml\">x</div>"}}`,
		`[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[`,
		"{\"resourceType\":\"Patient\",\"id\":\"\xff\"}",
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		v, issues, err := ParseResource(data)
		if err != nil {
			return
		}
		for _, is := range issues {
			if is.Message == "" || is.Severity == "" || is.Code == "" {
				t.Fatalf("incomplete issue %+v", is)
			}
		}
		// A valid resource stays valid and keeps its meaning when
		// normalized and written out again.
		if len(issues) == 0 {
			c := v.Clone()
			Normalize(&c)
			back, err := Parse(Marshal(&c), 0)
			if err != nil {
				t.Fatalf("normalized output does not parse: %v", err)
			}
			if !Equal(&v, &back) {
				t.Fatalf("normalizing changed the meaning")
			}
			if is := Validate(&back); len(is) > 0 {
				t.Fatalf("normalized resource is invalid: %v", is[0])
			}
		}
	})
}

// TestHandMatchersAgreeWithPatterns: the hand-written checks of the
// commonest primitives accept exactly what the specification's regular
// expressions accept.
func TestHandMatchersAgreeWithPatterns(t *testing.T) {
	samples := []string{"a", "abc", "A-Z.09", strings.Repeat("x", 64), strings.Repeat("x", 65), "a b", "a\fb", "a\vb", " ", "\t", "x\n", "ü", "http://x/y", "urn:uuid:1", "a_b", "é", "\u00a0", "-", "."}
	for _, name := range []string{"id", "string", "markdown", "uri", "url", "canonical"} {
		typ := Type(name)
		for _, s := range samples {
			if got, want := matchPrimitive(typ, s), typ.MatchString(s); got != want {
				t.Errorf("matchPrimitive(%s, %q) = %v, the pattern says %v", name, s, got, want)
			}
		}
	}
}
