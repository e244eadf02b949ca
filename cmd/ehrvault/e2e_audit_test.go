package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/transparency-dev/merkle/proof"
	"github.com/transparency-dev/merkle/rfc6962"
	"golang.org/x/mod/sumdb/note"

	"github.com/ehrvault/ehrvault/internal/api"
	"github.com/ehrvault/ehrvault/internal/audit"
	"github.com/ehrvault/ehrvault/internal/fhir"
)

// entriesOf returns every entry of the server's audit log.
func (ts *testServer) entriesOf(t *testing.T) []audit.Found {
	t.Helper()
	found, err := ts.v.audit.Find(context.Background(), audit.Filter{Limit: 100000})
	if err != nil {
		t.Fatal(err)
	}
	return found
}

// entryOf returns the entry of the request that answered r.
func (ts *testServer) entryOf(t *testing.T, r *response) *audit.Entry {
	t.Helper()
	id := r.header.Get("X-Request-Id")
	var got *audit.Entry
	for _, f := range ts.entriesOf(t) {
		if f.Entry.Request == id {
			if got != nil {
				t.Fatalf("request %s has two audit entries", id)
			}
			got = f.Entry
		}
	}
	if got == nil {
		t.Fatalf("request %s (status %d) has no audit entry", id, r.status)
	}
	return got
}

func TestAuditRecordsEveryRequest(t *testing.T) {
	ts := newTestServer(t)
	ssn := "999-12-3456"
	created := ts.do("POST", "/Patient", `{"resourceType":"Patient","identifier":[{"system":"http://hl7.org/fhir/sid/us-ssn","value":"`+ssn+`"}],"name":[{"family":"Auditee"}]}`).want(t, 201)
	pid := created.str("id")
	obs := ts.do("POST", "/Observation", `{"resourceType":"Observation","status":"final","code":{"text":"pulse"},"subject":{"reference":"Patient/`+pid+`"}}`).want(t, 201)
	oid := obs.str("id")
	cases := []struct {
		r        *response
		action   string
		outcome  string
		touches  []string // Type/id of the resources the entry must list
		patients int      // how many patients it must name
	}{
		{created, "create", "success", []string{"Patient/" + pid}, 1},
		{obs, "create", "success", []string{"Observation/" + oid}, 1},
		{ts.do("GET", "/Patient/"+pid, nil).want(t, 200), "read", "success", []string{"Patient/" + pid}, 1},
		{ts.do("GET", "/Observation/"+oid+"/_history/1", nil).want(t, 200), "vread", "success", []string{"Observation/" + oid}, 1},
		{ts.do("GET", "/Patient?identifier="+url.QueryEscape("http://hl7.org/fhir/sid/us-ssn|"+ssn), nil).want(t, 200), "search-type", "success", []string{"Patient/" + pid}, 1},
		{ts.do("GET", "/Patient/"+pid+"/_history", nil).want(t, 200), "history-instance", "success", []string{"Patient/" + pid}, 1},
		{ts.do("DELETE", "/Observation/"+oid, nil).want(t, 204), "delete", "success", []string{"Observation/" + oid}, 1},
		{ts.do("GET", "/Patient/nobody", nil).want(t, 404), "read", "failure", nil, 0},
		{ts.do("POST", "/Patient", `{"resourceType":"Patient","gender":"robot"}`).want(t, 400), "create", "failure", nil, 0},
		{ts.do("GET", "/Patient/"+pid, nil, "Authorization", "Bearer ehv_forged").want(t, 401), "read", "denied", nil, 0},
	}
	for i, c := range cases {
		e := ts.entryOf(t, c.r)
		if e.Action != c.action || e.Outcome != c.outcome || e.Status != c.r.status {
			t.Errorf("case %d: entry says %s %s %d, want %s %s %d", i, e.Action, e.Outcome, e.Status, c.action, c.outcome, c.r.status)
		}
		for _, want := range c.touches {
			ok := false
			for _, r := range e.Resources {
				ok = ok || r.Type+"/"+r.ID == want
			}
			if !ok {
				t.Errorf("case %d (%s): the entry does not list %s: %+v", i, c.action, want, e.Resources)
			}
		}
		if len(e.Patients()) != c.patients {
			t.Errorf("case %d (%s): the entry names %d patients, want %d", i, c.action, len(e.Patients()), c.patients)
		}
		if c.outcome == "denied" {
			if e.Principal.Kind != "anonymous" || e.Principal.ID != "" {
				t.Errorf("a refused request is recorded as %+v", e.Principal)
			}
		} else if e.Principal.Kind != "operator-token" || e.Principal.ID == "" || e.Role == "" || e.Source == "" {
			t.Errorf("case %d: principal %+v role %q source %q", i, e.Principal, e.Role, e.Source)
		}
	}
	// The search value is there only as its keyed hash.
	e := ts.entryOf(t, cases[4].r)
	if len(e.Query) != 1 || e.Query[0].Name != "identifier" || e.Query[0].Value != ts.v.audit.Hash("http://hl7.org/fhir/sid/us-ssn|"+ssn) {
		t.Errorf("search recorded as %+v", e.Query)
	}
	for _, f := range ts.entriesOf(t) {
		if bytes.Contains(f.Leaf, []byte(ssn)) || bytes.Contains(f.Leaf, []byte("Auditee")) {
			t.Errorf("entry %d holds a value in the clear: %s", f.Index, f.Leaf)
		}
	}
	// The CapabilityStatement is not health data and is not audited.
	n := len(ts.entriesOf(t))
	ts.do("GET", "/metadata", nil).want(t, 200)
	if len(ts.entriesOf(t)) != n {
		t.Error("/metadata was audited")
	}
	// A declared purpose of use is recorded.
	r := ts.do("GET", "/Patient/"+pid, nil, api.PurposeHeader, "TREAT").want(t, 200)
	if ts.entryOf(t, r).Purpose != "TREAT" {
		t.Error("the purpose of use was not recorded")
	}
}

// failingAuditor cannot write.
type failingAuditor struct{}

func (failingAuditor) Append(context.Context, *audit.Entry) (int64, error) {
	return 0, fmt.Errorf("%w: disk full", audit.ErrUnavailable)
}
func (failingAuditor) Hash(string) string { return "h:0" }

// TestAuditFailsClosed: when the audit entry cannot be written, the
// client gets 503 and none of the data.
func TestAuditFailsClosed(t *testing.T) {
	ts := newTestServer(t)
	p := ts.do("POST", "/Patient", `{"resourceType":"Patient","name":[{"family":"Closedfail"}],"birthDate":"1961-07-04"}`).want(t, 201)
	id := p.str("id")
	broken := newTestServer(t, func(c *api.Config) {
		c.Records, c.Auth = ts.v.records, ts.v.tokens
		c.Audit = failingAuditor{}
	})
	broken.token = ts.token
	for _, path := range []string{"/Patient/" + id, "/Patient/" + id + "/_history/1", "/Patient?_id=" + id, "/Patient/" + id + "/_history", "/AuditEvent"} {
		r := broken.do("GET", path, nil).want(t, 503)
		if bytes.Contains(r.body, []byte("Closedfail")) || bytes.Contains(r.body, []byte("1961")) || r.header.Get("ETag") != "" {
			t.Errorf("GET %s leaked data with the audit log down: %s", path, r.body)
		}
		if r.header.Get("Retry-After") == "" || !strings.Contains(r.outcomeText(), "audit") {
			t.Errorf("GET %s: the 503 does not say why: %s", path, r.body)
		}
	}
	r := broken.do("PUT", "/Patient/"+id, `{"resourceType":"Patient","id":"`+id+`","name":[{"family":"Closedfail"}]}`).want(t, 503)
	if bytes.Contains(r.body, []byte("Closedfail")) {
		t.Error("the refused update echoed the resource")
	}
}

func TestAuditEventView(t *testing.T) {
	ts := newTestServer(t)
	a := ts.do("POST", "/Patient", `{"resourceType":"Patient","name":[{"family":"A"}]}`).want(t, 201).str("id")
	b := ts.do("POST", "/Patient", `{"resourceType":"Patient","name":[{"family":"B"}]}`).want(t, 201).str("id")
	for i := 0; i < 3; i++ {
		ts.do("GET", "/Patient/"+a, nil).want(t, 200)
	}
	ts.do("GET", "/Patient/"+b, nil).want(t, 200)
	ts.do("GET", "/Patient/nobody", nil).want(t, 404)

	r := ts.do("GET", "/AuditEvent?patient=Patient/"+a, nil).want(t, 200)
	list := entries(r)
	if len(list) != 4 { // the create and three reads
		t.Fatalf("AuditEvent?patient=A found %d events, want 4", len(list))
	}
	for _, e := range list {
		data, _ := json.Marshal(e.(map[string]any)["resource"])
		v, issues, err := fhir.ParseResource(data)
		if err != nil || len(issues) > 0 {
			t.Fatalf("an AuditEvent is not valid R4: %v %v\n%s", err, issues, data)
		}
		if v.Str("resourceType") != "AuditEvent" {
			t.Fatal("not an AuditEvent")
		}
	}
	if n := len(entries(ts.do("GET", "/AuditEvent?patient="+b+"&subtype=read", nil).want(t, 200))); n != 1 {
		t.Errorf("AuditEvent?patient=B&subtype=read found %d", n)
	}
	if n := len(entries(ts.do("GET", "/AuditEvent?outcome=4", nil).want(t, 200))); n != 1 {
		t.Errorf("AuditEvent?outcome=4 found %d, want the 404", n)
	}
	if n := len(entries(ts.do("GET", "/AuditEvent?action=C", nil).want(t, 200))); n != 2 {
		t.Errorf("AuditEvent?action=C found %d, want the 2 creates", n)
	}
	// (Reading the log is audited too, and the searches above showed A:
	// so only reads are counted here.)
	if n := len(entries(ts.do("GET", "/AuditEvent?entity=Patient/"+a+"&subtype=read&date=ge2000-01-01&date=lt2999-01-01", nil).want(t, 200))); n != 3 {
		t.Errorf("AuditEvent?entity&date found %d", n)
	}
	if n := len(entries(ts.do("GET", "/AuditEvent?date=lt2000-01-01", nil).want(t, 200))); n != 0 {
		t.Errorf("AuditEvent?date=lt2000 found %d", n)
	}
	// Paging.
	r = ts.do("GET", "/AuditEvent?_count=2", nil).want(t, 200)
	seen := len(entries(r))
	for next := linkURL(r, "next"); next != ""; next = linkURL(r, "next") {
		u, _ := url.Parse(next)
		r = ts.do("GET", strings.TrimPrefix(u.Path, "/fhir")+"?"+u.RawQuery, nil).want(t, 200)
		seen += len(entries(r))
	}
	if seen < 8 {
		t.Errorf("paging through AuditEvents saw %d", seen)
	}
	// Read by index; the log cannot be written through FHIR.
	r = ts.do("GET", "/AuditEvent/0", nil).want(t, 200)
	if r.str("id") != "0" || r.str("resourceType") != "AuditEvent" {
		t.Errorf("AuditEvent/0: %s", r.body)
	}
	ts.do("PUT", "/AuditEvent/0", `{"resourceType":"AuditEvent","id":"0"}`).want(t, 405)
	ts.do("DELETE", "/AuditEvent/3", nil).want(t, 405)
	ts.do("GET", "/AuditEvent/999999", nil).want(t, 404)
	ts.do("GET", "/AuditEvent?date=yesterday", nil).want(t, 400)
}

func linkURL(r *response, rel string) string {
	links, _ := r.json["link"].([]any)
	for _, l := range links {
		m := l.(map[string]any)
		if m["relation"] == rel {
			return m["url"].(string)
		}
	}
	return ""
}

// get fetches a non-FHIR endpoint of the server.
func (ts *testServer) get(t *testing.T, path string, auth bool) (int, []byte) {
	t.Helper()
	req, _ := http.NewRequest("GET", ts.srv.URL+path, nil)
	if auth {
		req.Header.Set("Authorization", "Bearer "+ts.token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b
}

// TestWhoOpenedMyRecord plays the patient's software: it fetches every
// access to its record with proofs, and checks each with nothing but the
// published key and an independent Merkle verifier.
func TestWhoOpenedMyRecord(t *testing.T) {
	ts := newTestServer(t)
	ctx := context.Background()
	id := ts.do("POST", "/Patient", `{"resourceType":"Patient","name":[{"family":"Watched"}]}`).want(t, 201).str("id")
	other := ts.do("POST", "/Patient", `{"resourceType":"Patient"}`).want(t, 201).str("id")
	nurse, _, err := ts.v.tokens.Create(ctx, time.Hour, "nurse station")
	if err != nil {
		t.Fatal(err)
	}
	ts.do("GET", "/Patient/"+id, nil).want(t, 200)
	ts.do("GET", "/Patient/"+id, nil, "Authorization", "Bearer "+nurse, api.PurposeHeader, "TREAT").want(t, 200)
	ts.do("POST", "/Observation", `{"resourceType":"Observation","status":"final","code":{"text":"bp"},"subject":{"reference":"Patient/`+id+`"}}`).want(t, 201)
	ts.do("GET", "/Patient/"+other, nil).want(t, 200)

	_, vkey := ts.get(t, "/audit/key", false)
	status, body := ts.get(t, "/audit/patients/"+id+"/accesses", true)
	if status != 200 {
		t.Fatalf("accesses: %d %s", status, body)
	}
	var al audit.AccessLog
	if err := json.Unmarshal(body, &al); err != nil {
		t.Fatal(err)
	}
	if len(al.Accesses) != 4 { // create, two reads, the observation
		t.Fatalf("%d accesses, want 4: %s", len(al.Accesses), body)
	}
	// The checkpoint is signed by the published key.
	v, err := note.NewVerifier(strings.TrimSpace(string(vkey)))
	if err != nil {
		t.Fatal(err)
	}
	n, err := note.Open([]byte(al.Checkpoint), note.VerifierList(v))
	if err != nil {
		t.Fatalf("the checkpoint does not verify with /audit/key: %v", err)
	}
	lines := strings.Split(n.Text, "\n")
	root, _ := base64.StdEncoding.DecodeString(lines[2])
	var size uint64
	fmt.Sscan(lines[1], &size)
	whos := map[string]bool{}
	for _, a := range al.Accesses {
		entry, _ := base64.StdEncoding.DecodeString(a.Entry)
		var hs [][]byte
		for _, s := range a.Proof {
			h, _ := base64.StdEncoding.DecodeString(s)
			hs = append(hs, h)
		}
		leaf := sha256.Sum256(append([]byte{0}, entry...))
		if err := proof.VerifyInclusion(rfc6962.DefaultHasher, uint64(a.Index), size, leaf[:], hs, root); err != nil {
			t.Errorf("access %d: its proof does not verify against the checkpoint: %v", a.Index, err)
		}
		// What the patient is shown is what the entry says.
		e, err := audit.Decode(entry)
		if err != nil || e.Principal.ID != a.Who || e.Action != a.Action {
			t.Errorf("access %d: shown %s by %s, the entry says %+v", a.Index, a.Action, a.Who, e)
		}
		whos[a.Who] = true
		// A doctored entry no longer verifies.
		bad := bytes.Replace(entry, []byte(a.Action), []byte("vread"), 1)
		badLeaf := sha256.Sum256(append([]byte{0}, bad...))
		if proof.VerifyInclusion(rfc6962.DefaultHasher, uint64(a.Index), size, badLeaf[:], hs, root) == nil {
			t.Errorf("access %d: an altered entry still verifies", a.Index)
		}
	}
	if len(whos) != 2 {
		t.Errorf("accesses by %v, want two principals", whos)
	}
	// Reading the access log is itself an access to the record.
	status, body = ts.get(t, "/audit/patients/"+id+"/accesses", true)
	json.Unmarshal(body, &al)
	if status != 200 || len(al.Accesses) != 5 || al.Accesses[4].Action != audit.ActionAuditRead {
		t.Errorf("the access log's own reading was not recorded: %d %d", status, len(al.Accesses))
	}
	if s, _ := ts.get(t, "/audit/patients/"+id+"/accesses", false); s != 401 {
		t.Errorf("the access log without a token: %d", s)
	}
}

func TestDisclosuresAndReport(t *testing.T) {
	ts := newTestServer(t)
	id := ts.do("POST", "/Patient", `{"resourceType":"Patient"}`).want(t, 201).str("id")
	ts.do("GET", "/Patient/"+id, nil, api.PurposeHeader, "HPAYMT").want(t, 200)
	ts.do("GET", "/Patient?_id="+id, nil).want(t, 200)
	ts.do("PUT", "/Patient/"+id, `{"resourceType":"Patient","id":"`+id+`","active":true}`).want(t, 200)

	status, body := ts.get(t, "/audit/patients/"+id+"/disclosures", true)
	var al audit.AccessLog
	json.Unmarshal(body, &al)
	if status != 200 || len(al.Accesses) != 2 || al.Accesses[0].Purpose != "HPAYMT" {
		t.Fatalf("disclosures: %d %s", status, body)
	}
	status, body = ts.get(t, "/audit/patients/"+id+"/disclosures?_format=csv", true)
	if status != 200 || !bytes.HasPrefix(body, []byte("index,time,recipient")) || bytes.Count(body, []byte("\n")) != 3 {
		t.Errorf("disclosures CSV: %d\n%s", status, body)
	}
	status, body = ts.get(t, "/audit/report?_format=csv&_sort=-action,index&outcome=success", true)
	if status != 200 {
		t.Fatalf("report: %d %s", status, body)
	}
	lines := strings.Split(strings.TrimSpace(string(body)), "\n")
	if lines[0] != strings.Join(audit.ReportColumns, ",") || len(lines) < 6 {
		t.Fatalf("report:\n%s", body)
	}
	if !strings.Contains(lines[1], ",update,") {
		t.Errorf("sorted by -action, the first row is %q", lines[1])
	}
	status, body = ts.get(t, "/audit/report?action=read&purpose=HPAYMT", true)
	var rep struct {
		Rows []map[string]string `json:"rows"`
	}
	json.Unmarshal(body, &rep)
	if status != 200 || len(rep.Rows) != 1 || rep.Rows[0]["purpose"] != "HPAYMT" {
		t.Errorf("report JSON filtered: %d %s", status, body)
	}
	if s, b := ts.get(t, "/audit/report?_sort=colour", true); s != 400 || !bytes.Contains(b, []byte("colour")) {
		t.Errorf("report sorted by an unknown column: %d %s", s, b)
	}
	if s, _ := ts.get(t, "/audit/report", false); s != 401 {
		t.Errorf("report without a token: %d", s)
	}
	// Proofs and checkpoints are public; inclusion proofs are not.
	if s, b := ts.get(t, "/audit/checkpoint", false); s != 200 || !bytes.Contains(b, []byte(ts.v.audit.Origin())) {
		t.Errorf("checkpoint: %d %s", s, b)
	}
	if s, b := ts.get(t, "/audit/proof/consistency?from=1", false); s != 200 || !bytes.Contains(b, []byte("hashes")) {
		t.Errorf("consistency proof: %d %s", s, b)
	}
	if s, _ := ts.get(t, "/audit/proof/inclusion?index=0", false); s != 401 {
		t.Errorf("inclusion proof without a token: %d", s)
	}
	if s, _ := ts.get(t, "/audit/proof/inclusion?index=0", true); s != 200 {
		t.Errorf("inclusion proof: %d", s)
	}
	if s, _ := ts.get(t, "/audit/proof/consistency?from=0", false); s != 400 {
		t.Errorf("consistency from 0: %d", s)
	}
}

// copyDir copies a closed data directory.
func copyDir(t *testing.T, from, to string) {
	t.Helper()
	os.MkdirAll(to, 0o700)
	files, _ := filepath.Glob(filepath.Join(from, "*"))
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(to, filepath.Base(f)), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
}

// serveDir serves a data directory's API (with its audit log) until the
// test ends or stop is called.
func serveDir(t *testing.T, dir string) (*vault, *httptest.Server, string) {
	t.Helper()
	ctx := context.Background()
	v, err := openVault(ctx, dir, []byte(testPassphrase), slog.New(slog.DiscardHandler), writerAccess)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(api.New(api.Config{Records: v.records, Auth: v.tokens, Audit: v.audit, AuditLog: v.audit, Search: v.search}))
	tok, _, _ := v.tokens.Create(ctx, time.Hour, "t")
	return v, srv, tok
}

// TestWitnessCatchesAFork runs the witness against a server, then against
// a copy of the same store whose log went another way after a point (a
// restored and rewritten log, or a server showing different logs to
// different people): the witness must raise the alarm.
func TestWitnessCatchesAFork(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "a")
	c := testCLI()
	if err := c.initVault(context.Background(), dir, []byte(testPassphrase)); err != nil {
		t.Fatal(err)
	}
	state := filepath.Join(t.TempDir(), "witness", "checkpoint")
	os.MkdirAll(filepath.Dir(state), 0o755)
	read := func(srv *httptest.Server, tok string, n int) {
		for i := 0; i < n; i++ {
			req, _ := http.NewRequest("GET", srv.URL+"/fhir/Patient/x", nil)
			req.Header.Set("Authorization", "Bearer "+tok)
			resp, err := http.DefaultClient.Do(req)
			if err == nil {
				resp.Body.Close()
			}
		}
	}
	witness := func(srv *httptest.Server, vkey string) error {
		var out, errb bytes.Buffer
		wc := &cli{stdin: strings.NewReader(""), stdout: &out, stderr: &errb, getenv: func(string) string { return "" }}
		return auditWitness(context.Background(), wc, []string{"--url", srv.URL, "--key", vkey, "--state", state, "--once"})
	}
	v, srv, tok := serveDir(t, dir)
	vkey := v.audit.VerifierKey()
	read(srv, tok, 5)
	v.audit.Sign(context.Background())
	if err := witness(srv, vkey); err != nil {
		t.Fatalf("first witness round: %v", err)
	}
	read(srv, tok, 3)
	v.audit.Sign(context.Background())
	if err := witness(srv, vkey); err != nil {
		t.Fatalf("witness after appends: %v", err)
	}
	srv.Close()
	v.Close()
	// The fork: a copy of the store now, each copy going on its own way.
	fork := filepath.Join(t.TempDir(), "b")
	copyDir(t, dir, fork)
	v, srv, tok = serveDir(t, dir)
	read(srv, tok, 2)
	v.audit.Sign(context.Background())
	if err := witness(srv, vkey); err != nil {
		t.Fatalf("witness of the original: %v", err)
	}
	srv.Close()
	v.Close()
	v2, srv2, tok2 := serveDir(t, fork)
	defer v2.Close()
	defer srv2.Close()
	read(srv2, tok2, 6)
	v2.audit.Sign(context.Background())
	err := witness(srv2, vkey)
	if !errors.Is(err, audit.ErrForked) {
		t.Fatalf("the witness accepted a forked log: %v", err)
	}
	if ev, _ := filepath.Glob(state + ".alarm-*"); len(ev) == 0 {
		t.Error("the witness kept no evidence of the fork")
	}
	// The witnessed checkpoint also lets verify catch the fork offline.
	witnessed, err := os.ReadFile(state)
	if err != nil {
		t.Fatal(err)
	}
	rep, err := audit.Verify(context.Background(), audit.VerifyConfig{Path: filepath.Join(fork, auditFileName), Sealer: v2.akeys.sealer, MAC: v2.akeys.mac,
		VerifierKey: vkey, Origin: v2.akeys.cfg.Origin, Witnessed: [][]byte{witnessed}})
	if err != nil {
		t.Fatal(err)
	}
	if rep.OK() {
		t.Error("verify with the witnessed checkpoint passed the forked log")
	}
}

// TestVerifyCommand runs "ehrvault audit verify" on a good log and on one
// edited in the file, in process.
func TestVerifyCommand(t *testing.T) {
	ts := newTestServer(t)
	for i := 0; i < 20; i++ {
		ts.do("GET", "/Patient/x"+fmt.Sprint(i), nil)
	}
	dir := ts.v.dir
	ts.srv.Close()
	ts.v.Close()
	run := func(args ...string) (int, string, string) {
		var out, errb bytes.Buffer
		c := &cli{stdin: strings.NewReader(""), stdout: &out, stderr: &errb, getenv: func(k string) string {
			if k == PassphraseEnv {
				return testPassphrase
			}
			return ""
		}}
		code := c.main(context.Background(), args)
		return code, out.String(), errb.String()
	}
	code, out, errs := run("audit", "verify", "--data", dir)
	if code != 0 || !strings.Contains(out, "audit log OK: 21 entries") {
		t.Fatalf("verify of a good log: %d\n%s%s", code, out, errs)
	}
	// Flip a byte of entry 7's sealed bytes in the file.
	path := filepath.Join(dir, auditFileName)
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	off := 0
	for rec := 0; rec <= 8; rec++ { // the header, then entries 0 … 7
		n := int(binary.BigEndian.Uint32(data[off+1:]))
		if rec == 8 {
			data[off+5+n-3] ^= 0x01
		}
		if rec < 8 {
			off += 5 + n
		}
	}
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	code, _, errs = run("audit", "verify", "--data", dir)
	if code != 1 || !strings.Contains(errs, "the first bad one is entry 7") || !strings.Contains(errs, "hint:") {
		t.Errorf("verify of an edited log: exit %d\n%s", code, errs)
	}
}
