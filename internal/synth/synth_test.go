package synth

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"
)

var update = flag.Bool("update", false, "rewrite testdata/golden.txt")

// entry is a bundle entry decoded loosely, for tests.
type entry struct {
	FullURL  string         `json:"fullUrl"`
	Resource map[string]any `json:"resource"`
	Request  struct {
		Method string `json:"method"`
		URL    string `json:"url"`
	} `json:"request"`
}

type bundle struct {
	ResourceType string  `json:"resourceType"`
	Type         string  `json:"type"`
	Entry        []entry `json:"entry"`
}

func decodeBundle(t testing.TB, b []byte) *bundle {
	t.Helper()
	var bd bundle
	if err := json.Unmarshal(b, &bd); err != nil {
		t.Fatalf("bundle is not valid JSON: %v", err)
	}
	return &bd
}

func patientBundle(t testing.TB, g *Generator, i int) []byte {
	t.Helper()
	b, err := g.PatientBundle(i)
	if err != nil {
		t.Fatalf("PatientBundle(%d): %v", i, err)
	}
	return b
}

// walk calls f for every string value in v with its member path
// (resourceType-prefixed, without array indexes).
func walk(path string, v any, f func(path, s string)) {
	switch x := v.(type) {
	case map[string]any:
		for k, val := range x {
			walk(path+"."+k, val, f)
		}
	case []any:
		for _, val := range x {
			walk(path, val, f)
		}
	case string:
		f(path, x)
	}
}

func TestDeterministic(t *testing.T) {
	nums := []int{0, 1, 2, 17, 999, 123456, 9_999_999}
	a, b := New(42), New(42)
	// b makes them in the opposite order and after other patients, so
	// nothing may depend on what was made before.
	for _, i := range []int{5, 3} {
		patientBundle(t, b, i)
	}
	want := map[int][]byte{}
	for _, i := range nums {
		want[i] = patientBundle(t, a, i)
	}
	for k := len(nums) - 1; k >= 0; k-- {
		i := nums[k]
		if got := patientBundle(t, b, i); !bytes.Equal(got, want[i]) {
			t.Errorf("PatientBundle(%d) differs between two generators with seed 42", i)
		}
		if got, again := a.Identifying(i), b.Identifying(i); strings.Join(got, "\x00") != strings.Join(again, "\x00") {
			t.Errorf("Identifying(%d) differs between two generators with seed 42", i)
		}
	}
	sa, _ := a.Shared()
	sb, _ := b.Shared()
	if !bytes.Equal(sa, sb) {
		t.Errorf("Shared() differs between two generators with seed 42")
	}

	// Different patients, and different seeds, differ.
	if bytes.Equal(want[0], want[1]) {
		t.Errorf("PatientBundle(0) == PatientBundle(1)")
	}
	if other := patientBundle(t, New(43), 0); bytes.Equal(other, want[0]) {
		t.Errorf("seeds 42 and 43 give the same PatientBundle(0)")
	}
	if other, _ := New(43).Shared(); bytes.Equal(other, sa) {
		t.Errorf("seeds 42 and 43 give the same Shared()")
	}
	id0, id1 := a.Identifying(0), a.Identifying(1)
	if len(id0) == 0 || len(id1) == 0 {
		t.Fatalf("Identifying returned nothing: %q %q", id0, id1)
	}
	// The SSNs (second identifying value after the MRN) differ.
	if id0[1] == id1[1] {
		t.Errorf("patients 0 and 1 share SSN %q", id0[1])
	}
}

func TestConcurrent(t *testing.T) {
	g := New(5)
	const n = 40
	want := make([][]byte, n)
	for i := range want {
		want[i] = patientBundle(t, g, i)
	}
	var wg sync.WaitGroup
	got := make([][]byte, n)
	for w := 0; w < 4; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for i := w; i < n; i += 4 {
				b, err := g.PatientBundle(i)
				if err != nil {
					t.Errorf("PatientBundle(%d): %v", i, err)
				}
				got[i] = b
				g.Identifying(i)
			}
		}(w)
	}
	wg.Wait()
	for i := range want {
		if !bytes.Equal(got[i], want[i]) {
			t.Errorf("PatientBundle(%d) made concurrently differs", i)
		}
	}
}

var uuidRE = regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$`)

// checkEntries checks the entry shape Synthea-style loaders and a second
// load rely on, and returns fullUrl -> resource type. ids collects every id
// seen, to find duplicates across bundles.
func checkEntries(t *testing.T, name string, bd *bundle, ids map[string]string) map[string]string {
	t.Helper()
	if bd.ResourceType != "Bundle" || bd.Type != "transaction" {
		t.Errorf("%s: resourceType %q type %q, want a transaction Bundle", name, bd.ResourceType, bd.Type)
	}
	if len(bd.Entry) == 0 {
		t.Fatalf("%s: no entries", name)
	}
	urls := map[string]string{}
	for k, e := range bd.Entry {
		rt, _ := e.Resource["resourceType"].(string)
		id, _ := e.Resource["id"].(string)
		where := fmt.Sprintf("%s entry %d (%s)", name, k, rt)
		if rt == "" {
			t.Errorf("%s: no resourceType", where)
		}
		if !uuidRE.MatchString(id) {
			t.Errorf("%s: id %q is not a lowercase version-4 UUID", where, id)
		}
		if e.FullURL != "urn:uuid:"+id {
			t.Errorf("%s: fullUrl %q, want urn:uuid:%s", where, e.FullURL, id)
		}
		if e.Request.Method != "PUT" || e.Request.URL != rt+"/"+id {
			t.Errorf("%s: request %s %s, want PUT %s/%s", where, e.Request.Method, e.Request.URL, rt, id)
		}
		if _, dup := urls[e.FullURL]; dup {
			t.Errorf("%s: fullUrl %s repeats within the bundle", where, e.FullURL)
		}
		if prev, dup := ids[id]; dup {
			t.Errorf("%s: id %s already used in %s", where, id, prev)
		}
		ids[id] = name
		urls[e.FullURL] = rt
	}
	return urls
}

func TestBundleShape(t *testing.T) {
	g := New(1)
	ids := map[string]string{}
	sharedBundle := decodeBundle(t, mustShared(t, g))
	sharedURLs := checkEntries(t, "Shared()", sharedBundle, ids)
	known := map[string]string{}
	for u, rt := range sharedURLs {
		known[rt+"/"+strings.TrimPrefix(u, "urn:uuid:")] = rt
	}
	// Shared refers to itself by literal references only.
	for _, e := range sharedBundle.Entry {
		walk("", e.Resource, func(path, s string) {
			if strings.HasSuffix(path, ".reference") {
				if _, ok := known[s]; !ok {
					t.Errorf("Shared(): reference %q resolves to nothing in Shared()", s)
				}
			}
		})
	}
	var orgs, pracs int
	for _, rt := range known {
		switch rt {
		case "Organization":
			orgs++
		case "Practitioner":
			pracs++
		}
	}
	if orgs == 0 || pracs == 0 {
		t.Errorf("Shared() has %d organizations and %d practitioners", orgs, pracs)
	}

	for i := range 60 {
		name := fmt.Sprintf("PatientBundle(%d)", i)
		bd := decodeBundle(t, patientBundle(t, g, i))
		urls := checkEntries(t, name, bd, ids)
		var patient string
		for _, e := range bd.Entry {
			if e.Resource["resourceType"] == "Patient" {
				if patient != "" {
					t.Errorf("%s: more than one Patient", name)
				}
				patient = e.FullURL
			}
		}
		if patient == "" || bd.Entry[0].FullURL != patient {
			t.Errorf("%s: the first entry must be the one Patient", name)
		}
		for _, e := range bd.Entry {
			walk(e.Resource["resourceType"].(string), e.Resource, func(path, s string) {
				if !strings.HasSuffix(path, ".reference") {
					return
				}
				switch {
				case strings.HasPrefix(s, "urn:uuid:"):
					if _, ok := urls[s]; !ok {
						t.Errorf("%s %s: %q is no entry of the bundle", name, path, s)
					}
				case strings.HasPrefix(s, "Organization/") || strings.HasPrefix(s, "Practitioner/"):
					if _, ok := known[s]; !ok {
						t.Errorf("%s %s: %q is not in Shared()", name, path, s)
					}
				default:
					t.Errorf("%s %s: reference %q is neither urn:uuid: nor to Shared()", name, path, s)
				}
				if (strings.HasSuffix(path, ".subject.reference") || strings.HasSuffix(path, ".patient.reference") ||
					strings.HasSuffix(path, ".beneficiary.reference")) && s != patient {
					t.Errorf("%s %s: %q, want the patient %s", name, path, s, patient)
				}
			})
		}
	}
}

func mustShared(t testing.TB, g *Generator) []byte {
	t.Helper()
	b, err := g.Shared()
	if err != nil {
		t.Fatalf("Shared(): %v", err)
	}
	return b
}

var ssnRE = regexp.MustCompile(`^999-\d{2}-\d{4}$`)

func TestIdentifiers(t *testing.T) {
	t.Parallel()
	g := New(3)
	seen := map[string]map[string]int{"ssn": {}, "mrn": {}, "member": {}}
	for i := range 150 { // TestPermute covers distinctness for every number
		bd := decodeBundle(t, patientBundle(t, g, i))
		var ssns int
		for _, e := range bd.Entry {
			switch e.Resource["resourceType"] {
			case "Patient":
				for _, id := range e.Resource["identifier"].([]any) {
					id := id.(map[string]any)
					v := id["value"].(string)
					switch id["system"] {
					case sysSSN:
						ssns++
						if !ssnRE.MatchString(v) {
							t.Errorf("patient %d: SSN %q is outside the 999 test area", i, v)
						}
						if j, dup := seen["ssn"][v]; dup {
							t.Errorf("patients %d and %d share SSN %s", j, i, v)
						}
						seen["ssn"][v] = i
					default:
						if j, dup := seen["mrn"][v]; dup {
							t.Errorf("patients %d and %d share MRN %s", j, i, v)
						}
						seen["mrn"][v] = i
						typ := id["type"].(map[string]any)["coding"].([]any)[0].(map[string]any)
						if typ["system"] != sysV2IdType || typ["code"] != "MR" || !strings.HasPrefix(id["system"].(string), "https://") {
							t.Errorf("patient %d: MRN identifier %v", i, id)
						}
					}
				}
				walk("Patient", e.Resource, func(path, s string) {
					if path == "Patient.telecom.value" && strings.Contains(s, "555-") && !regexp.MustCompile(`555-01\d\d$`).MatchString(s) {
						t.Errorf("patient %d: phone %q outside 555-0100..0199", i, s)
					}
					if path == "Patient.telecom.value" && strings.Contains(s, "@") && !regexp.MustCompile(`@example\.(com|org|net)$`).MatchString(s) {
						t.Errorf("patient %d: e-mail %q outside the RFC 2606 domains", i, s)
					}
				})
			case "Coverage":
				v := e.Resource["subscriberId"].(string)
				if j, dup := seen["member"][v]; dup {
					t.Errorf("patients %d and %d share subscriber id %s", j, i, v)
				}
				seen["member"][v] = i
			}
		}
		if ssns != 1 {
			t.Errorf("patient %d has %d SSNs, want 1", i, ssns)
		}
	}
}

// identifyingPaths are the members whose values identify a person.
//
// A second address line ("Apt 12") says nothing alone and is left out.
var aptRE = regexp.MustCompile(`^Apt \d+$`)

var identifyingPaths = map[string]bool{
	"Patient.name.text": true, "Patient.name.family": true, "Patient.name.given": true,
	"Patient.telecom.value": true, "Patient.identifier.value": true, "Patient.birthDate": true,
	"Patient.address.line": true, "Patient.address.text": true,
	"RelatedPerson.name.text": true, "RelatedPerson.name.family": true, "RelatedPerson.name.given": true,
	"RelatedPerson.telecom.value": true, "RelatedPerson.address.line": true, "RelatedPerson.address.text": true,
	"Coverage.subscriberId": true, "Coverage.identifier.value": true,
}

func TestIdentifying(t *testing.T) {
	g := New(9)
	for i := range 100 {
		b := patientBundle(t, g, i)
		ident := g.Identifying(i)
		if len(ident) < 8 {
			t.Errorf("Identifying(%d) = %q, too few", i, ident)
		}
		set := map[string]bool{}
		for _, v := range ident {
			set[v] = true
			if !bytes.Contains(b, []byte(v)) {
				t.Errorf("Identifying(%d) value %q does not occur in the bundle", i, v)
			}
		}
		// And the other way: every identifying member of the bundle is
		// listed, notes included.
		bd := decodeBundle(t, b)
		for _, e := range bd.Entry {
			walk(e.Resource["resourceType"].(string), e.Resource, func(path, s string) {
				if identifyingPaths[path] || strings.HasSuffix(path, ".note.text") {
					if !set[s] && !aptRE.MatchString(s) {
						t.Errorf("Identifying(%d) lacks %s %q", i, path, s)
					}
				}
			})
		}
	}
	if got := g.Identifying(-1); got != nil {
		t.Errorf("Identifying(-1) = %q, want nil", got)
	}
}

var (
	dateRE     = regexp.MustCompile(`^\d{4}-\d{2}-\d{2}$`)
	dateTimeRE = regexp.MustCompile(`^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(Z|[+-]\d{2}:\d{2})$`)
)

// checkDates checks that every date and time in a bundle lies within the
// patient's life and not after now.
func checkDates(t *testing.T, name string, b []byte, now time.Time) (dates int) {
	t.Helper()
	bd := decodeBundle(t, b)
	p := bd.Entry[0].Resource
	birth, _ := time.Parse(time.DateOnly, p["birthDate"].(string))
	last := now
	if d, ok := p["deceasedDateTime"].(string); ok {
		death, err := time.Parse(time.RFC3339, d)
		if err != nil {
			t.Fatalf("%s: deceasedDateTime %q: %v", name, d, err)
		}
		if death.After(now) {
			t.Errorf("%s: deceasedDateTime %s is after the reference time", name, d)
		}
		last = death
	}
	for _, e := range bd.Entry {
		walk(e.Resource["resourceType"].(string), e.Resource, func(path, s string) {
			var at time.Time
			var err error
			switch {
			case dateRE.MatchString(s):
				at, err = time.Parse(time.DateOnly, s)
				// A date is within [birth, last] if its day is.
				if err == nil && (at.Before(birth) || at.After(last.Truncate(24*time.Hour).Add(24*time.Hour))) {
					t.Errorf("%s %s: %s outside %s..%s", name, path, s, birth.Format(time.DateOnly), last.Format(time.DateOnly))
				}
			case dateTimeRE.MatchString(s):
				at, err = time.Parse(time.RFC3339, s)
				if err == nil && (s[:10] < birth.Format(time.DateOnly) || at.After(last)) {
					t.Errorf("%s %s: %s outside %s..%s", name, path, s, birth.Format(time.DateOnly), last.Format(time.RFC3339))
				}
			default:
				return
			}
			if err != nil {
				t.Errorf("%s %s: %q is no real date: %v", name, path, s, err)
			}
			dates++
		})
	}
	return dates
}

func TestDates(t *testing.T) {
	t.Parallel()
	for _, now := range []time.Time{{}, time.Date(2019, 6, 30, 12, 0, 0, 0, time.UTC), time.Date(2031, 2, 28, 0, 0, 0, 0, time.UTC)} {
		g := NewWithOptions(11, Options{Now: now})
		if now.IsZero() {
			now = time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
		}
		// The first 60 patients, and further ones until three who died
		// have been checked too.
		dates, deceased := 0, 0
		for i := 0; i < 60 || deceased < 3 && i < 3000; i++ {
			b := patientBundle(t, g, i)
			dead := bytes.Contains(b, []byte(`"deceasedDateTime"`))
			if i >= 60 && !dead {
				continue
			}
			dates += checkDates(t, fmt.Sprintf("Now %s PatientBundle(%d)", now.Format(time.DateOnly), i), b, now)
			if dead {
				deceased++
			}
		}
		if dates < 60*100 {
			t.Errorf("Now %s: only %d dates checked", now, dates)
		}
		if deceased < 3 {
			t.Errorf("Now %s: %d deceased patients in 3000; the death bound goes untested", now, deceased)
		}
	}
}

// required lists, per resource type, members the checks below insist on,
// with the status codes R4 allows where the member is a status.
var required = map[string]map[string][]string{
	"Patient":              {"identifier": nil, "name": nil, "gender": {"male", "female"}, "birthDate": nil},
	"RelatedPerson":        {"patient": nil},
	"Coverage":             {"status": {"active", "cancelled"}, "beneficiary": nil, "payor": nil},
	"Encounter":            {"status": {"finished"}, "class": nil, "subject": nil, "period": nil},
	"Condition":            {"clinicalStatus": nil, "verificationStatus": nil, "code": nil, "subject": nil},
	"Observation":          {"status": {"final"}, "code": nil, "subject": nil, "effectiveDateTime": nil},
	"DiagnosticReport":     {"status": {"final"}, "code": nil, "result": nil},
	"Immunization":         {"status": {"completed"}, "vaccineCode": nil, "patient": nil, "occurrenceDateTime": nil},
	"MedicationRequest":    {"status": {"active", "completed", "stopped"}, "intent": {"order"}, "medicationCodeableConcept": nil, "subject": nil},
	"MedicationStatement":  {"status": {"active", "stopped"}, "medicationCodeableConcept": nil, "subject": nil},
	"AllergyIntolerance":   {"clinicalStatus": nil, "verificationStatus": nil, "patient": nil},
	"Procedure":            {"status": {"completed"}, "code": nil, "subject": nil},
	"FamilyMemberHistory":  {"status": {"completed"}, "patient": nil, "relationship": nil},
	"Claim":                {"status": {"active"}, "type": nil, "use": {"claim"}, "patient": nil, "created": nil, "provider": nil, "priority": nil, "insurance": nil},
	"ExplanationOfBenefit": {"status": {"active"}, "type": nil, "use": {"claim"}, "patient": nil, "created": nil, "insurer": nil, "provider": nil, "outcome": {"complete"}, "insurance": nil},
}

// TestSanity is a quick structural check that needs no specification:
// known resource types only, their key members present, statuses valid.
func TestSanity(t *testing.T) {
	t.Parallel()
	g := New(21)
	counts := map[string]int{}
	for i := range 200 {
		bd := decodeBundle(t, patientBundle(t, g, i))
		for _, e := range bd.Entry {
			rt, _ := e.Resource["resourceType"].(string)
			req, ok := required[rt]
			if !ok {
				t.Errorf("patient %d: unexpected resource type %q", i, rt)
				continue
			}
			counts[rt]++
			for member, allowed := range req {
				v, ok := e.Resource[member]
				if !ok {
					t.Errorf("patient %d: %s lacks %s", i, rt, member)
					continue
				}
				if allowed != nil {
					s, _ := v.(string)
					if !contains(allowed, s) {
						t.Errorf("patient %d: %s.%s = %v, want one of %q", i, rt, member, v, allowed)
					}
				}
			}
		}
	}
	// Every kind of resource the generator knows turns up in 200 patients.
	for rt := range required {
		if counts[rt] == 0 {
			t.Errorf("no %s in 200 patients", rt)
		}
	}
}

// TestPlausible checks clinical values against physiological bounds and a
// few relationships with age.
func TestPlausible(t *testing.T) {
	t.Parallel()
	g := New(31)
	bounds := map[string][2]float64{
		"8302-2": {40, 215}, "29463-7": {2, 250}, "39156-5": {10, 65},
		"8867-4": {35, 200}, "9279-1": {8, 60}, "8310-5": {35, 41.5},
		"2339-0": {40, 400}, "4548-4": {3.5, 14}, "2160-0": {0.1, 4},
		"718-7": {6, 20}, "2093-3": {80, 400}, "2085-9": {15, 110},
	}
	var childHeights, adultHeights []float64
	for i := range 120 {
		bd := decodeBundle(t, patientBundle(t, g, i))
		birth, _ := time.Parse(time.DateOnly, bd.Entry[0].Resource["birthDate"].(string))
		for _, e := range bd.Entry {
			r := e.Resource
			if r["resourceType"] != "Observation" {
				continue
			}
			code := r["code"].(map[string]any)["coding"].([]any)[0].(map[string]any)["code"].(string)
			if code == "85354-9" {
				comp := r["component"].([]any)
				sys := comp[0].(map[string]any)["valueQuantity"].(map[string]any)["value"].(float64)
				dia := comp[1].(map[string]any)["valueQuantity"].(map[string]any)["value"].(float64)
				if sys < 70 || sys > 220 || dia < 35 || dia > 130 || dia >= sys {
					t.Errorf("patient %d: blood pressure %v/%v", i, sys, dia)
				}
				continue
			}
			q, ok := r["valueQuantity"].(map[string]any)
			if !ok {
				continue
			}
			v := q["value"].(float64)
			if b, ok := bounds[code]; ok && (v < b[0] || v > b[1]) {
				t.Errorf("patient %d: %s = %v outside %v", i, code, v, b)
			}
			if code == "8302-2" {
				at, _ := time.Parse(time.RFC3339, r["effectiveDateTime"].(string))
				switch age := at.Sub(birth).Hours() / 24 / 365.25; {
				case age < 5:
					childHeights = append(childHeights, v)
				case age >= 20:
					adultHeights = append(adultHeights, v)
				}
			}
		}
	}
	mean := func(xs []float64) float64 {
		s := 0.0
		for _, x := range xs {
			s += x
		}
		return s / float64(len(xs))
	}
	if len(childHeights) == 0 || len(adultHeights) == 0 || mean(childHeights) > 110 || mean(adultHeights) < 160 {
		t.Errorf("heights do not follow age: under 5 mean %.1f cm (%d), adults mean %.1f cm (%d)",
			mean(childHeights), len(childHeights), mean(adultHeights), len(adultHeights))
	}
}

func TestOptions(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct{ min, max, wantMin, wantMax int }{
		{0, 0, 3, 15},
		{1, 1, 1, 1},
		{5, 2, 5, 5},
		{20, 30, 20, 30},
		{-4, 2, 1, 2},
	} {
		g := NewWithOptions(2, Options{MinEncounters: tt.min, MaxEncounters: tt.max})
		lo, hi := 1<<30, 0
		for i := range 60 {
			n := bytes.Count(patientBundle(t, g, i), []byte(`"resourceType":"Encounter"`))
			lo, hi = min(lo, n), max(hi, n)
		}
		if lo < tt.wantMin || hi > tt.wantMax {
			t.Errorf("Options{%d, %d}: encounters per patient in [%d, %d], want within [%d, %d]", tt.min, tt.max, lo, hi, tt.wantMin, tt.wantMax)
		}
	}
}

func TestNegativePatient(t *testing.T) {
	g := New(1)
	if _, err := g.PatientBundle(-1); !errors.Is(err, ErrPatientNumber) {
		t.Errorf("PatientBundle(-1) error = %v, want ErrPatientNumber", err)
	}
	buf := []byte("keep")
	if got, err := g.AppendPatientBundle(buf, -2); err == nil || string(got) != "keep" {
		t.Errorf("AppendPatientBundle(buf, -2) = %q, %v; want buf unchanged and an error", got, err)
	}
}

func TestAppend(t *testing.T) {
	g := New(8)
	want := patientBundle(t, g, 4)
	got, err := g.AppendPatientBundle([]byte("prefix"), 4)
	if err != nil || string(got[:6]) != "prefix" || !bytes.Equal(got[6:], want) {
		t.Errorf("AppendPatientBundle(prefix, 4) does not append PatientBundle(4)")
	}
}

// TestSize keeps the average patient within the size the load tests were
// planned for, and logs it.
func TestSize(t *testing.T) {
	t.Parallel()
	g := New(1)
	const n = 300
	resources, size := 0, 0
	for i := range n {
		b, entries, err := g.appendPatient(nil, i)
		if err != nil {
			t.Fatal(err)
		}
		size += len(b)
		resources += entries
	}
	avg := float64(resources) / n
	t.Logf("%d patients: %.1f resources and %.0f bytes per patient on average", n, avg, float64(size)/n)
	if avg < 100 || avg > 400 {
		t.Errorf("%.1f resources per patient on average, want 100 to 400", avg)
	}
}

// TestGolden pins the output of a few patients, so that a change to what
// the generator makes is a visible, deliberate one (go test -update).
func TestGolden(t *testing.T) {
	g := New(1)
	var sb strings.Builder
	sum := func(name string, b []byte) {
		h := sha256.Sum256(b)
		fmt.Fprintf(&sb, "%s %s\n", name, hex.EncodeToString(h[:]))
	}
	sum("Shared()", mustShared(t, g))
	for _, i := range []int{0, 1, 2, 1000} {
		sum(fmt.Sprintf("PatientBundle(%d)", i), patientBundle(t, g, i))
	}
	path := filepath.Join("testdata", "golden.txt")
	if *update {
		if err := os.WriteFile(path, []byte(sb.String()), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -update to create it)", err)
	}
	if sb.String() != string(want) {
		t.Errorf("output of seed 1 changed:\n got %s\nwant %s\nIf the change is meant, run go test -update.", sb.String(), want)
	}
}

func TestCalendar(t *testing.T) {
	for d := -50000; d < 50000; d += 7 {
		want := time.Unix(int64(d)*86400, 0).UTC()
		y, m, dd := civilFromDays(d)
		if y != want.Year() || m != int(want.Month()) || dd != want.Day() {
			t.Fatalf("civilFromDays(%d) = %d-%d-%d, want %s", d, y, m, dd, want.Format(time.DateOnly))
		}
		if got := daysFromCivil(y, m, dd); got != d {
			t.Fatalf("daysFromCivil(%d, %d, %d) = %d, want %d", y, m, dd, got, d)
		}
	}
	for _, tt := range []struct {
		t   int64
		off int
	}{{0, 0}, {1735689599, -300}, {-86401, -480}, {951782400, 330}, {4102444800, -420}} {
		zone := time.FixedZone("", tt.off*60)
		want := time.Unix(tt.t, 0).In(zone).Format(time.RFC3339)
		if got := string(appendDateTime(nil, tt.t, tt.off)); got != want {
			t.Errorf("appendDateTime(%d, %d) = %s, want %s", tt.t, tt.off, got, want)
		}
	}
	if got := ageYears(daysFromCivil(2000, 2, 29), daysFromCivil(2001, 2, 28)); got != 0 {
		t.Errorf("age on 2001-02-28 of someone born 2000-02-29 = %d, want 0", got)
	}
	if got := ageYears(daysFromCivil(1990, 6, 15), daysFromCivil(2020, 6, 15)); got != 30 {
		t.Errorf("age on 2020-06-15 of someone born 1990-06-15 = %d, want 30", got)
	}
}

func TestWriter(t *testing.T) {
	for _, tt := range []struct {
		v     int64
		scale int
		want  string
	}{{0, 0, "0"}, {3725, 2, "37.25"}, {5, 2, "0.05"}, {-15, 1, "-1.5"}, {1200, 1, "120.0"}, {7, 0, "7"}} {
		if got := string(appendDecimal(nil, tt.v, tt.scale)); got != tt.want {
			t.Errorf("appendDecimal(%d, %d) = %s, want %s", tt.v, tt.scale, got, tt.want)
		}
	}
	var w writer
	w.open('{')
	w.str("a", "q\"b\\s\n\x01é")
	w.arr("b")
	w.item("x")
	w.open('{')
	w.boolean("c", true)
	w.close('}')
	w.close(']')
	w.decimal("d", 15, 1)
	w.close('}')
	want := `{"a":"q\"b\\s\n\u0001é","b":["x",{"c":true}],"d":1.5}`
	if string(w.b) != want {
		t.Errorf("writer wrote %s, want %s", w.b, want)
	}
	var v any
	if err := json.Unmarshal(w.b, &v); err != nil {
		t.Errorf("writer output is not JSON: %v", err)
	}
}

func TestUUIDs(t *testing.T) {
	seen := map[uuid]bool{}
	for _, seed := range []uint64{0, 1} {
		for n := uint64(0); n < 2; n++ {
			k0, k1 := keys(seed, domainPatient, n)
			for i := uint64(0); i < 20000; i++ {
				u := makeUUID(k0, k1, i)
				if !uuidRE.MatchString(u.String()) {
					t.Fatalf("makeUUID = %s, not a version-4 UUID", u)
				}
				if seen[u] {
					t.Fatalf("makeUUID repeats %s", u)
				}
				seen[u] = true
			}
		}
	}
}

func TestPermute(t *testing.T) {
	const m = 1_000_000
	seen := make([]bool, m)
	for n := uint64(0); n < m; n++ {
		v := permute(77, domainSSN, n, m)
		if v >= m || seen[v] {
			t.Fatalf("permute(…, %d, %d) = %d: out of range or repeated", n, m, v)
		}
		seen[v] = true
	}
}

func TestWordLists(t *testing.T) {
	lists := map[string][]string{
		"femaleGiven": femaleGiven[:], "maleGiven": maleGiven[:], "familyNames": familyNames[:], "nicknames": nicknames[:],
	}
	seen := map[string]string{}
	for name, list := range lists {
		for _, s := range list {
			if n := len([]rune(s)); n < 4 {
				t.Errorf("%s: %q is shorter than four letters", name, s)
			}
			if asciiLower(s) == "" || strings.TrimSpace(s) != s {
				t.Errorf("%s: %q", name, s)
			}
			if prev, dup := seen[s]; dup && prev == name {
				t.Errorf("%s: %q twice", name, s)
			}
			seen[s] = name
		}
	}
	for _, s := range []string{"Chloé", "Joaquín", "Nguyễn", "Núñez", "Öztürk", "Noémie", "Castañeda", "Peña", "Renée", "José"} {
		if got := asciiLower(s); len(got) != len([]rune(s)) {
			t.Errorf("asciiLower(%q) = %q drops a letter", s, got)
		}
	}
}
