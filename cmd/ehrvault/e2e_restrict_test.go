package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/url"
	"strings"
	"testing"
	"time"

	acc "github.com/ehrvault/ehrvault/internal/access"
	"github.com/ehrvault/ehrvault/internal/api"
	"github.com/ehrvault/ehrvault/internal/auth"
)

// decider gives each token (by its public id) a restriction; tokens it
// does not know see everything.
type decider map[string]*acc.Restriction

func (d decider) Restriction(_ context.Context, p *auth.Principal) (*acc.Restriction, error) {
	return d[p.ID], nil
}

// TestRestrictionLeaksNothing gives a caller the compartment of one
// patient (Alice), the shared records and the label R, and has it try
// every path to learn about another patient (Bob), about records of
// several patients, and about a record of Alice's it may not see (labelled
// HIV): reads, versions, history at all three levels, searches and
// counts, chains, _has, _include, _revinclude, compartments, $everything,
// paging with another caller's cursor, and Bundles. Each answer must be
// the answer it gets about a patient that does not exist, or one that
// holds only what it may see.
func TestRestrictionLeaksNothing(t *testing.T) {
	d := decider{}
	ts := newTestServer(t, func(c *api.Config) { c.Access = d })
	importAll(t, ts, writeSynthetic(t, 11, 3))
	full := ts.token

	// The records, seen in full.
	pats := ts.do("GET", "/Patient?_count=10", nil).want(t, 200)
	alice, bob := pats.str("entry.0.resource.id"), pats.str("entry.1.resource.id")
	bobFamily := pats.str("entry.1.resource.name.0.family")
	bobSSN := ""
	for i := 0; ; i++ {
		sys := pats.str(fmt.Sprintf("entry.1.resource.identifier.%d.system", i))
		if sys == "" {
			break
		}
		if strings.Contains(sys, "ssn") {
			bobSSN = sys + "|" + pats.str(fmt.Sprintf("entry.1.resource.identifier.%d.value", i))
		}
	}
	if alice == "" || bob == "" || bobFamily == "" || bobSSN == "" {
		t.Fatalf("the synthetic patients lack ids, names or SSNs: %.400s", pats.body)
	}
	const none = "no-such-patient-0"
	obs := func(subject, code, extra string) string {
		body := `{"resourceType":"Observation","status":"final","code":{"coding":[{"system":"http://example.org/codes","code":"` + code + `"}]},"subject":{"reference":"Patient/` + subject + `"},"effectiveDateTime":"2024-03-01"` + extra + `}`
		return ts.do("POST", "/Observation", body).want(t, 201).str("id")
	}
	bobObs := obs(bob, "LEAK-1", "")
	obs(alice, "ALICE-1", `,"performer":[{"reference":"Patient/`+bob+`"}]`)
	hiv := obs(alice, "HIDDEN-1", `,"meta":{"security":[{"system":"http://terminology.hl7.org/CodeSystem/v3-ActCode","code":"HIV"}]}`)
	labelled := obs(alice, "LABELLED-R", `,"meta":{"security":[{"system":"http://terminology.hl7.org/CodeSystem/v3-Confidentiality","code":"R"}]}`)
	group := ts.do("POST", "/Group", `{"resourceType":"Group","type":"person","actual":true,"member":[{"entity":{"reference":"Patient/`+alice+`"}},{"entity":{"reference":"Patient/`+bob+`"}}]}`).want(t, 201).str("id")
	gone := obs(bob, "LEAK-2", "")
	ts.do("DELETE", "/Observation/"+gone, nil).want(t, 204)
	fullCursor := ts.do("GET", "/Observation?_count=2", nil).want(t, 200)
	nextAll := linkOf(fullCursor, "next")
	if nextAll == "" {
		t.Fatal("no next link over all Observations")
	}

	// Alice's view.
	tok, rec, err := ts.v.tokens.Create(context.Background(), time.Hour, "alice's app")
	if err != nil {
		t.Fatal(err)
	}
	d[rec.ID] = &acc.Restriction{Patients: []string{alice}, Shared: true, Labels: []string{"http://terminology.hl7.org/CodeSystem/v3-Confidentiality|R"}}
	ts.token = tok
	defer func() { ts.token = full }()

	// same checks that two answers tell nothing apart: status, outcome,
	// number of entries and total.
	same := func(what, path, nonePath string) {
		t.Helper()
		a, b := ts.do("GET", path, nil), ts.do("GET", nonePath, nil)
		if a.status != b.status || a.outcomeText() != b.outcomeText() || resourceEntries(a) != resourceEntries(b) || a.str("total") != b.str("total") {
			t.Errorf("%s: %s answers %d (%d entries, total %q, %q) but %s answers %d (%d entries, total %q, %q)",
				what, path, a.status, resourceEntries(a), a.str("total"), a.outcomeText(), nonePath, b.status, resourceEntries(b), b.str("total"), b.outcomeText())
		}
	}
	// nothing checks that an answer holds none of the hidden records (its
	// self link echoes the query, which the caller wrote: only entries
	// count).
	shared := map[string]bool{"Practitioner": true, "PractitionerRole": true, "Organization": true, "Location": true, "Medication": true}
	hidden := map[string]bool{"Patient/" + bob: true, "Observation/" + bobObs: true, "Observation/" + hiv: true, "Group/" + group: true, "Observation/" + gone: true}
	nothing := func(what, path string) *response {
		t.Helper()
		r := ts.do("GET", path, nil)
		if r.status != 200 {
			t.Errorf("%s: %s answers %d: %s", what, path, r.status, r.outcomeText())
			return r
		}
		list, _ := r.json["entry"].([]any)
		for _, e := range list {
			res, _ := e.(map[string]any)["resource"].(map[string]any)
			key := fmt.Sprint(res["resourceType"], "/", res["id"])
			if hidden[key] {
				t.Errorf("%s: %s shows %s", what, path, key)
			}
			text, _ := json.Marshal(res)
			leaks := []string{"LEAK-1", "LEAK-2", "HIDDEN-1", bobFamily}
			if shared[fmt.Sprint(res["resourceType"])] {
				leaks = leaks[:3] // a practitioner may share Bob's family name
			}
			for _, leak := range leaks {
				if strings.Contains(string(text), leak) {
					t.Errorf("%s: %s shows %q in %s", what, path, leak, key)
				}
			}
		}
		return r
	}

	// Reads and versions: Bob does not exist; nor does Alice's HIV record,
	// nor Bob's deleted one (not 410: that would say it existed).
	same("read", "/Patient/"+bob, "/Patient/"+none)
	same("vread", "/Patient/"+bob+"/_history/1", "/Patient/"+none+"/_history/1")
	same("read of a labelled record", "/Observation/"+hiv, "/Observation/"+none)
	same("read of a deleted record", "/Observation/"+gone, "/Observation/"+none)
	same("read of a shared Group", "/Group/"+group, "/Group/"+none)
	ts.do("GET", "/Patient/"+alice, nil).want(t, 200)
	ts.do("GET", "/Observation/"+labelled, nil).want(t, 200)

	// History.
	same("instance history", "/Patient/"+bob+"/_history", "/Patient/"+none+"/_history")
	same("instance history, deleted", "/Observation/"+gone+"/_history", "/Observation/"+none+"/_history")
	nothing("type history", "/Observation/_history?_count=1000")
	nothing("system history", "/_history?_count=1000")

	// Searches and counts.
	for _, q := range []string{
		"/Patient?_id=" + bob, "/Patient?family=" + url.QueryEscape(bobFamily), "/Patient?identifier=" + url.QueryEscape(bobSSN),
		"/Observation?subject=Patient/" + bob, "/Observation?code=LEAK-1", "/Observation?code=HIDDEN-1",
		"/Observation?subject:Patient.family=" + url.QueryEscape(bobFamily), "/Observation?patient.identifier=" + url.QueryEscape(bobSSN),
		"/Patient?_has:Observation:patient:code=LEAK-1", "/Patient?_has:Observation:subject:code=HIDDEN-1",
		"/Group?member=Patient/" + alice, "/Observation?_id=" + gone,
	} {
		for _, extra := range []string{"", "&_summary=count", "&_total=accurate", "&_count=0"} {
			r := nothing("search", q+extra)
			if n := resourceEntries(r); n != 0 || r.str("total") != "" && r.str("total") != "0" {
				t.Errorf("%s%s: %d entries, total %q, want none", q, extra, n, r.str("total"))
			}
		}
	}
	// What Alice may see is all there, counted rightly.
	mine := ts.do("GET", "/Observation?subject=Patient/"+alice+"&_summary=count", nil).want(t, 200).str("total")
	all := ts.do("GET", "/Observation?_summary=count", nil).want(t, 200).str("total")
	ts.token = full
	mineFull := ts.do("GET", "/Observation?subject=Patient/"+alice+"&_summary=count", nil).want(t, 200).str("total")
	ts.token = tok
	if mine == "" || mine == "0" || mine != all || mineFull != fmt.Sprint(atoi(t, mine)+1) {
		t.Errorf("counts: Alice's observations %s, all she sees %s, in full %s (one more: the HIV record)", mine, all, mineFull)
	}

	// Includes: Alice's observation names Bob as performer; the Group
	// names Alice as a member. Neither comes along.
	nothing("_include", "/Observation?subject=Patient/"+alice+"&_include=Observation:performer&_count=1000")
	nothing("_include *", "/Observation?subject=Patient/"+alice+"&_include=*&_count=1000")
	nothing("_revinclude", "/Patient?_id="+alice+"&_revinclude=Group:member&_revinclude=Observation:subject&_count=1000")
	nothing("_revinclude:iterate", "/Patient?_id="+alice+"&_revinclude:iterate=Observation:performer&_count=1000")

	// Compartments and $everything.
	same("compartment", "/Patient/"+bob+"/Observation?code=LEAK-1", "/Patient/"+none+"/Observation?code=LEAK-1")
	same("compartment count", "/Patient/"+bob+"/Observation?code=LEAK-1&_summary=count", "/Patient/"+none+"/Observation?code=LEAK-1&_summary=count")
	nothing("compartment", "/Patient/"+bob+"/Observation")
	nothing("compartment", "/Patient/"+bob+"/Group")
	same("$everything", "/Patient/"+bob+"/$everything", "/Patient/"+none+"/$everything")
	nothing("$everything of Alice", "/Patient/"+alice+"/$everything?_count=1000")

	// Another caller's cursor runs under this caller's restriction.
	path := strings.TrimPrefix(nextAll, ts.url)
	for i := 0; path != "" && i < 1000; i++ {
		r := nothing("paging with another's cursor", path)
		path = strings.TrimPrefix(linkOf(r, "next"), ts.url)
	}

	// A Bundle's reads.
	b := ts.do("POST", "", `{"resourceType":"Bundle","type":"batch","entry":[
		{"request":{"method":"GET","url":"Patient/`+bob+`"}},
		{"request":{"method":"GET","url":"Patient/`+none+`"}},
		{"request":{"method":"GET","url":"Observation/`+hiv+`"}}]}`).want(t, 200)
	for i := 0; i < 3; i++ {
		if s := b.str(fmt.Sprintf("entry.%d.response.status", i)); !strings.HasPrefix(s, "404") {
			t.Errorf("batch GET %d: %s, want 404", i, s)
		}
	}
	if strings.Contains(string(b.body), "LEAK") || strings.Contains(string(b.body), "HIDDEN") {
		t.Errorf("batch shows a hidden record: %.300s", b.body)
	}
}

// resourceEntries counts a Bundle's entries that are resources, not outcomes.
func resourceEntries(r *response) int {
	list, _ := r.json["entry"].([]any)
	n := 0
	for _, e := range list {
		if m, _ := e.(map[string]any)["search"].(map[string]any); m["mode"] != "outcome" {
			n++
		}
	}
	return n
}

func atoi(t *testing.T, s string) int {
	t.Helper()
	var n int
	if _, err := fmt.Sscan(s, &n); err != nil {
		t.Fatalf("not a number: %q", s)
	}
	return n
}

// TestEverythingSince checks $everything's _since: only what changed
// since then.
func TestEverythingSince(t *testing.T) {
	ts := newTestServer(t)
	importAll(t, ts, writeSynthetic(t, 12, 1))
	pid := ts.do("GET", "/Patient", nil).want(t, 200).str("entry.0.resource.id")
	all := ts.do("GET", "/Patient/"+pid+"/$everything?_count=1000", nil).want(t, 200)
	if resourceEntries(all) < 10 {
		t.Fatalf("$everything has %d entries", resourceEntries(all))
	}
	old := ts.do("GET", "/Patient/"+pid+"/$everything?_count=1000&_since=2000-01-01", nil).want(t, 200)
	if resourceEntries(old) != resourceEntries(all) {
		t.Errorf("_since=2000-01-01: %d entries, want %d", resourceEntries(old), resourceEntries(all))
	}
	mark := time.Now().UTC().Add(time.Second).Format(time.RFC3339)
	time.Sleep(1100 * time.Millisecond)
	obs := ts.do("POST", "/Observation", `{"resourceType":"Observation","status":"final","code":{"text":"late"},"subject":{"reference":"Patient/`+pid+`"}}`).want(t, 201).str("id")
	late := ts.do("GET", "/Patient/"+pid+"/$everything?_since="+url.QueryEscape(mark), nil).want(t, 200)
	if n := resourceEntries(late); n != 1 || late.str("entry.0.resource.id") != obs {
		t.Errorf("_since=%s: %d entries (%.200s), want only the new Observation", mark, n, late.body)
	}
	ts.do("GET", "/Patient/"+pid+"/$everything?_since=yesterday", nil).want(t, 400)
	ts.do("GET", "/Patient/"+pid+"/$everything?start=2020", nil).want(t, 400)
}
