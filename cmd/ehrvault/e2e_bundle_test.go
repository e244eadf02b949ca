package main

import (
	"fmt"
	"github.com/ehrvault/ehrvault/internal/fhir"
	"net/url"
	"strings"
	"testing"
)

func entries(r *response) []any {
	e, _ := r.json["entry"].([]any)
	return e
}

func TestConditionalInteractions(t *testing.T) {
	ts := newTestServer(t)
	q := "identifier=" + url.QueryEscape("http://hl7.org/fhir/sid/us-ssn|999-12-3456")
	r := ts.do("POST", "/Patient", patientJSON, "If-None-Exist", q).want(t, 201)
	id := r.str("id")
	r = ts.do("POST", "/Patient", patientJSON, "If-None-Exist", q).want(t, 200)
	if r.str("id") != id {
		t.Fatalf("conditional create made a second patient %s (first %s)", r.str("id"), id)
	}
	if n := len(entries(ts.do("GET", "/Patient?"+q, nil).want(t, 200))); n != 1 {
		t.Fatalf("search by identifier found %d patients, want 1", n)
	}
	// Conditional update finds the match and writes version 2.
	upd := strings.Replace(patientJSON, `"female"`, `"other"`, 1)
	r = ts.do("PUT", "/Patient?"+q, upd).want(t, 200)
	if r.str("id") != id || r.str("meta.versionId") != "2" {
		t.Fatalf("conditional update: %s", r.body)
	}
	// No match: it creates.
	other := strings.Replace(patientJSON, "999-12-3456", "999-65-4321", 1)
	q2 := "identifier=" + url.QueryEscape("http://hl7.org/fhir/sid/us-ssn|999-65-4321")
	r = ts.do("PUT", "/Patient?"+q2, other).want(t, 201)
	id2 := r.str("id")
	// Two matches: 412 for create, update and delete.
	both := "identifier=" + url.QueryEscape("http://hl7.org/fhir/sid/us-ssn|999-12-3456")
	ts.do("POST", "/Patient", patientJSON).want(t, 201) // a second patient with the first SSN
	ts.do("POST", "/Patient", patientJSON, "If-None-Exist", both).want(t, 412)
	ts.do("PUT", "/Patient?"+both, upd).want(t, 412)
	ts.do("DELETE", "/Patient?"+both, nil).want(t, 412)
	// Conditional delete of one.
	ts.do("DELETE", "/Patient?"+q2, nil).want(t, 204)
	ts.do("GET", "/Patient/"+id2, nil).want(t, 410)
	// An unknown parameter is refused for conditional interactions.
	r = ts.do("DELETE", "/Patient?shoe-size=44", nil).want(t, 400)
	if !strings.Contains(r.outcomeText(), "shoe-size") {
		t.Errorf("outcome does not name the parameter: %s", r.outcomeText())
	}
}

const transactionJSON = `{"resourceType":"Bundle","type":"transaction","entry":[
 {"fullUrl":"urn:uuid:0b4a3f6e-9e1c-4f0a-8a55-111111111111","resource":{"resourceType":"Patient","identifier":[{"system":"urn:test:mrn","value":"MRN-1"}],"name":[{"family":"Bundled"}]},"request":{"method":"POST","url":"Patient"}},
 {"fullUrl":"urn:uuid:0b4a3f6e-9e1c-4f0a-8a55-222222222222","resource":{"resourceType":"Observation","status":"final","code":{"coding":[{"system":"http://loinc.org","code":"8867-4"}]},"subject":{"reference":"urn:uuid:0b4a3f6e-9e1c-4f0a-8a55-111111111111"},"performer":[{"reference":"Organization?identifier=urn:test:org|ORG-1"}],"valueQuantity":{"value":72,"unit":"/min","system":"http://unitsofmeasure.org","code":"/min"}},"request":{"method":"POST","url":"Observation"}}
]}`

func TestTransaction(t *testing.T) {
	ts := newTestServer(t)
	// The conditional reference has no target yet: the whole transaction fails.
	r := ts.do("POST", "", transactionJSON).want(t, 400)
	if !strings.Contains(r.outcomeText(), "Bundle.entry[1]") {
		t.Errorf("outcome does not name the entry: %s", r.outcomeText())
	}
	if n := len(entries(ts.do("GET", "/Patient", nil).want(t, 200))); n != 0 {
		t.Fatalf("a failed transaction left %d patients behind", n)
	}
	ts.do("POST", "/Organization", `{"resourceType":"Organization","identifier":[{"system":"urn:test:org","value":"ORG-1"}],"name":"Clinic"}`).want(t, 201)
	org := entries(ts.do("GET", "/Organization", nil).want(t, 200))[0].(map[string]any)["resource"].(map[string]any)["id"].(string)

	r = ts.do("POST", "", transactionJSON, "Prefer", "return=representation").want(t, 200)
	if r.str("type") != "transaction-response" {
		t.Fatalf("type = %q", r.str("type"))
	}
	if r.str("entry.0.response.status") != "201 Created" || r.str("entry.1.response.status") != "201 Created" {
		t.Fatalf("statuses: %s", r.body)
	}
	pid := r.str("entry.0.resource.id")
	if got := r.str("entry.1.resource.subject.reference"); got != "Patient/"+pid {
		t.Errorf("urn:uuid reference rewritten to %q, want Patient/%s", got, pid)
	}
	if got := r.str("entry.1.resource.performer.0.reference"); got != "Organization/"+org {
		t.Errorf("conditional reference rewritten to %q, want Organization/%s", got, org)
	}
	obs := r.str("entry.1.resource.id")
	ts.do("GET", "/Observation/"+obs, nil).want(t, 200)
	if n := len(entries(ts.do("GET", "/Observation?subject=Patient/"+pid, nil).want(t, 200))); n != 1 {
		t.Errorf("search by subject found %d observations", n)
	}

	// A failing entry anywhere (here an If-Match on the last one) rolls everything back.
	bad := `{"resourceType":"Bundle","type":"transaction","entry":[
	 {"resource":{"resourceType":"Patient","name":[{"family":"Rolledback"}]},"request":{"method":"POST","url":"Patient"}},
	 {"resource":{"resourceType":"Patient","id":"` + pid + `","name":[{"family":"Changed"}]},"request":{"method":"PUT","url":"Patient/` + pid + `","ifMatch":"W/\"7\""}}]}`
	ts.do("POST", "", bad).want(t, 412)
	if n := len(entries(ts.do("GET", "/Patient", nil).want(t, 200))); n != 1 {
		t.Errorf("after a failed transaction there are %d patients, want 1", n)
	}
	if got := ts.do("GET", "/Patient/"+pid, nil).want(t, 200).str("name.0.family"); got != "Bundled" {
		t.Errorf("failed transaction changed the patient: family %q", got)
	}
	// Two entries writing one resource are refused.
	dup := `{"resourceType":"Bundle","type":"transaction","entry":[
	 {"resource":{"resourceType":"Patient","id":"dup"},"request":{"method":"PUT","url":"Patient/dup"}},
	 {"resource":{"resourceType":"Patient","id":"dup","active":true},"request":{"method":"PUT","url":"Patient/dup"}}]}`
	ts.do("POST", "", dup).want(t, 400)
	// An invalid resource inside names its path.
	inv := strings.Replace(transactionJSON, `"status":"final"`, `"status":"finished"`, 1)
	r = ts.do("POST", "", inv).want(t, 400)
	if !strings.Contains(r.outcomeText(), "Bundle.entry[1].resource.status") {
		t.Errorf("outcome: %s", r.outcomeText())
	}
}

func TestBatch(t *testing.T) {
	ts := newTestServer(t)
	batch := `{"resourceType":"Bundle","type":"batch","entry":[
	 {"resource":{"resourceType":"Patient","name":[{"family":"One"}]},"request":{"method":"POST","url":"Patient"}},
	 {"resource":{"resourceType":"Patient","id":"x","name":[{"family":"Two"}]},"request":{"method":"PUT","url":"Patient/x","ifMatch":"W/\"3\""}},
	 {"request":{"method":"GET","url":"Patient/nobody"}},
	 {"resource":{"resourceType":"Patient","name":[{"family":"Three"}]},"request":{"method":"POST","url":"Patient"}}]}`
	r := ts.do("POST", "", batch).want(t, 200)
	want := []string{"201 Created", "412 Precondition Failed", "404 Not Found", "201 Created"}
	for i, w := range want {
		if got := r.str(fmt.Sprintf("entry.%d.response.status", i)); got != w {
			t.Errorf("entry %d status %q, want %q", i, got, w)
		}
	}
	if r.str("entry.1.response.outcome.resourceType") != "OperationOutcome" {
		t.Errorf("failed entry has no outcome: %s", r.body)
	}
	if n := len(entries(ts.do("GET", "/Patient", nil).want(t, 200))); n != 2 {
		t.Errorf("batch stored %d patients, want 2", n)
	}
}

func TestHistoryAndPaging(t *testing.T) {
	ts := newTestServer(t)
	for i := 0; i < 7; i++ {
		ts.do("POST", "/Patient", patientJSON).want(t, 201)
	}
	seen := map[string]bool{}
	next := "/_history?_count=3"
	pages := 0
	for next != "" {
		r := ts.do("GET", next, nil).want(t, 200)
		pages++
		for _, e := range entries(r) {
			u := e.(map[string]any)["fullUrl"].(string)
			if seen[u] {
				t.Fatalf("%s on two pages", u)
			}
			seen[u] = true
		}
		next = ""
		for _, l := range r.json["link"].([]any) {
			m := l.(map[string]any)
			if m["relation"] == "next" {
				next = strings.TrimPrefix(m["url"].(string), ts.url)
			}
		}
		if pages > 5 {
			t.Fatal("paging does not end")
		}
	}
	if len(seen) != 7 || pages != 3 {
		t.Errorf("%d resources on %d pages, want 7 on 3", len(seen), pages)
	}
	// A cursor altered by a client is refused.
	r := ts.do("GET", "/_history?_count=3", nil).want(t, 200)
	var cursor string
	for _, l := range r.json["link"].([]any) {
		if m := l.(map[string]any); m["relation"] == "next" {
			u, _ := url.Parse(m["url"].(string))
			cursor = u.Query().Get("_page")
		}
	}
	if cursor == "" {
		t.Fatal("no next link")
	}
	flipped := []byte(cursor)
	flipped[len(flipped)/2] ^= 1
	if flipped[len(flipped)/2] == '-' || flipped[len(flipped)/2] == '_' {
		flipped[len(flipped)/2] = 'A'
	}
	ts.do("GET", "/_history?_count=3&_page="+url.QueryEscape(string(flipped)), nil).want(t, 400)
	// A cursor moved to another query is refused too.
	ts.do("GET", "/Patient/_history?_count=3&_page="+url.QueryEscape(cursor), nil).want(t, 400)
	// Type history and _since.
	if n := len(entries(ts.do("GET", "/Patient/_history?_since=2000-01-01T00:00:00Z", nil).want(t, 200))); n != 7 {
		t.Errorf("type history since 2000: %d entries", n)
	}
	if n := len(entries(ts.do("GET", "/Patient/_history?_since=2999-01-01T00:00:00Z", nil).want(t, 200))); n != 0 {
		t.Errorf("type history since 2999: %d entries", n)
	}
	ts.do("GET", "/Patient/_history?_since=yesterday", nil).want(t, 400)
}

func TestCapabilityStatement(t *testing.T) {
	ts := newTestServer(t)
	r := ts.do("GET", "/metadata", nil, "Authorization", "").want(t, 200)
	if r.str("fhirVersion") != "4.0.1" || r.str("kind") != "instance" {
		t.Fatalf("metadata: %.300s", r.body)
	}
	// It is a valid R4 resource itself.
	if _, issues, err := fhir.ParseResource(r.body); err != nil || len(issues) > 0 {
		t.Errorf("the CapabilityStatement does not validate: %v %v", err, issues)
	}
	rest := r.json["rest"].([]any)[0].(map[string]any)
	types := map[string]map[string]any{}
	for _, x := range rest["resource"].([]any) {
		m := x.(map[string]any)
		types[m["type"].(string)] = m
	}
	for _, want := range []string{"Patient", "Observation", "Coverage", "Claim", "ExplanationOfBenefit", "ImagingStudy", "Consent", "SubstanceNucleicAcid"} {
		if types[want] == nil {
			t.Errorf("metadata lacks %s", want)
		}
	}
	if types["SubscriptionStatus"] != nil {
		t.Error("metadata lists the R4B SubscriptionStatus")
	}
	if len(types) != 145 && len(types) != 146 {
		t.Errorf("metadata lists %d resource types", len(types))
	}
	// The search parameters it states are ones the server accepts.
	sample := map[string]string{"date": "2020", "number": "1", "quantity": "1", "reference": "Patient/x"}
	for _, typ := range []string{"Patient", "Observation", "Encounter", "Condition", "MedicationRequest", "Claim", "Organization"} {
		params := types[typ]["searchParam"].([]any)
		if len(params) < 5 {
			t.Errorf("%s states %d search parameters", typ, len(params))
		}
		for _, p := range params {
			m := p.(map[string]any)
			name := m["name"].(string)
			v := sample[m["type"].(string)]
			if v == "" {
				v = "x"
			}
			r := ts.do("GET", "/"+typ+"?"+name+"="+v, nil, "Prefer", "handling=strict")
			if r.status != 200 {
				t.Errorf("stated parameter %s of %s gives %d: %s", name, typ, r.status, r.outcomeText())
			}
		}
	}
	ts.do("GET", "/Patient?no-such-param=x", nil, "Prefer", "handling=strict").want(t, 400)
	ts.do("GET", "/Patient?no-such-param=x", nil, "Prefer", "handling=lenient").want(t, 200)
}
