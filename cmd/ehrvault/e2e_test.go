package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ehrvault/ehrvault/internal/api"
)

// testServer is an ehrvault API over a fresh data directory.
type testServer struct {
	t     testing.TB
	v     *vault
	srv   *httptest.Server
	url   string // base URL of the FHIR API
	token string
	logs  *bytes.Buffer
}

const testPassphrase = "correct horse battery staple"

// testCLI is a command environment with no terminal, no output and cheap
// argon2id parameters, for tests that make stores.
func testCLI() *cli {
	return &cli{stdin: strings.NewReader(""), stdout: io.Discard, stderr: io.Discard, getenv: func(k string) string {
		if k == insecureKDFEnv {
			return "1"
		}
		return ""
	}}
}

// newTestServer initializes a data directory with cheap KDF parameters,
// opens it, and serves its API on a loopback port.
func newTestServer(t testing.TB, opts ...func(*api.Config)) *testServer {
	t.Helper()
	ctx := context.Background()
	dir := filepath.Join(t.TempDir(), "data")
	c := testCLI()
	if err := c.initVault(ctx, dir, []byte(testPassphrase)); err != nil {
		t.Fatalf("initVault: %v", err)
	}
	logs := &bytes.Buffer{}
	log := slog.New(slog.NewTextHandler(&lockedWriter{w: logs}, nil))
	v, err := openVault(ctx, dir, []byte(testPassphrase), log, writerAccess)
	if err != nil {
		t.Fatalf("openVault: %v", err)
	}
	cfg := api.Config{Records: v.records, Auth: v.tokens, Log: log, Version: "test", SearchParams: v.searchParams, Audit: v.audit, AuditLog: v.audit, Search: v.search}
	for _, o := range opts {
		o(&cfg)
	}
	srv := httptest.NewServer(api.New(cfg))
	tok, _, err := v.tokens.Create(ctx, time.Hour, "test")
	if err != nil {
		t.Fatalf("token create: %v", err)
	}
	ts := &testServer{t: t, v: v, srv: srv, url: srv.URL + api.Base, token: tok, logs: logs}
	t.Cleanup(func() {
		srv.Close()
		v.Close()
	})
	return ts
}

// response is a decoded API answer.
type response struct {
	status int
	header http.Header
	body   []byte
	json   map[string]any
}

// do sends a request with the test token; body may be a string, []byte or nil.
func (ts *testServer) do(method, path string, body any, headers ...string) *response {
	ts.t.Helper()
	var r io.Reader
	switch b := body.(type) {
	case string:
		r = strings.NewReader(b)
	case []byte:
		r = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, ts.url+path, r)
	if err != nil {
		ts.t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+ts.token)
	if body != nil {
		req.Header.Set("Content-Type", "application/fhir+json")
	}
	for i := 0; i+1 < len(headers); i += 2 {
		if headers[i+1] == "" {
			req.Header.Del(headers[i])
		} else {
			req.Header.Set(headers[i], headers[i+1])
		}
	}
	resp, err := ts.srv.Client().Do(req)
	if err != nil {
		ts.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	out := &response{status: resp.StatusCode, header: resp.Header, body: data}
	if len(data) > 0 && strings.Contains(resp.Header.Get("Content-Type"), "json") {
		if err := json.Unmarshal(data, &out.json); err != nil {
			ts.t.Fatalf("%s %s: response is not JSON: %v", method, path, err)
		}
	}
	return out
}

// want fails the test unless the response has the status.
func (r *response) want(t *testing.T, status int) *response {
	t.Helper()
	if r.status != status {
		t.Fatalf("status %d, want %d; body: %.600s", r.status, status, r.body)
	}
	return r
}

// str returns a string at a dotted path of the JSON body ("meta.versionId",
// "entry.0.resource.id").
func (r *response) str(path string) string {
	var cur any = r.json
	for _, p := range strings.Split(path, ".") {
		switch c := cur.(type) {
		case map[string]any:
			cur = c[p]
		case []any:
			var i int
			if _, err := fmt.Sscan(p, &i); err != nil || i >= len(c) {
				return ""
			}
			cur = c[i]
		default:
			return ""
		}
	}
	switch c := cur.(type) {
	case string:
		return c
	case nil:
		return ""
	case float64:
		return fmt.Sprint(c)
	default:
		b, _ := json.Marshal(c)
		return string(b)
	}
}

// outcomeText joins the diagnostics and expressions of an OperationOutcome.
func (r *response) outcomeText() string {
	if r.json["resourceType"] != "OperationOutcome" {
		return ""
	}
	var parts []string
	for _, is := range r.json["issue"].([]any) {
		m := is.(map[string]any)
		s, _ := m["diagnostics"].(string)
		if ex, ok := m["expression"].([]any); ok {
			for _, e := range ex {
				s += " @" + e.(string)
			}
		}
		parts = append(parts, s)
	}
	return strings.Join(parts, " | ")
}

type lockedWriter struct {
	mu chan struct{}
	w  io.Writer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	if l.mu == nil {
		l.mu = make(chan struct{}, 1)
	}
	l.mu <- struct{}{}
	defer func() { <-l.mu }()
	return l.w.Write(p)
}

const patientJSON = `{"resourceType":"Patient","identifier":[{"system":"http://hl7.org/fhir/sid/us-ssn","value":"999-12-3456"}],"name":[{"family":"Testperson","given":["Ada"]}],"gender":"female","birthDate":"1980-02-29"}`

func TestAuthentication(t *testing.T) {
	ts := newTestServer(t)
	// The CapabilityStatement is public and holds no health data.
	ts.do("GET", "/metadata", nil, "Authorization", "").want(t, 200)
	for _, c := range []struct{ name, auth string }{
		{"none", ""},
		{"not bearer", "Basic dXNlcjpwYXNz"},
		{"unknown token", "Bearer ehv_" + strings.Repeat("A", 43)},
		{"malformed token", "Bearer nonsense"},
	} {
		t.Run(c.name, func(t *testing.T) {
			r := ts.do("GET", "/Patient", nil, "Authorization", c.auth).want(t, 401)
			if r.header.Get("WWW-Authenticate") == "" {
				t.Error("401 without WWW-Authenticate")
			}
			if r.str("resourceType") != "OperationOutcome" {
				t.Errorf("401 body is not an OperationOutcome: %s", r.body)
			}
		})
	}
	// Expired and revoked tokens fail.
	ctx := context.Background()
	tok, rec, err := ts.v.tokens.Create(ctx, time.Second, "short")
	if err != nil {
		t.Fatal(err)
	}
	ts.do("GET", "/Patient", nil, "Authorization", "Bearer "+tok).want(t, 200)
	if err := ts.v.tokens.Revoke(ctx, rec.ID); err != nil {
		t.Fatal(err)
	}
	ts.do("GET", "/Patient", nil, "Authorization", "Bearer "+tok).want(t, 401)
}

func TestCRUD(t *testing.T) {
	ts := newTestServer(t)
	r := ts.do("POST", "/Patient", patientJSON).want(t, 201)
	id := r.str("id")
	if id == "" || r.str("meta.versionId") != "1" || r.str("meta.lastUpdated") == "" {
		t.Fatalf("created resource lacks id or meta: %s", r.body)
	}
	if loc := r.header.Get("Location"); !strings.HasSuffix(loc, "/fhir/Patient/"+id+"/_history/1") {
		t.Errorf("Location = %q", loc)
	}
	if et := r.header.Get("ETag"); et != `W/"1"` {
		t.Errorf("ETag = %q, want W/\"1\"", et)
	}
	got := ts.do("GET", "/Patient/"+id, nil).want(t, 200)
	if got.str("name.0.family") != "Testperson" || got.str("birthDate") != "1980-02-29" {
		t.Fatalf("read back differs: %s", got.body)
	}
	// A server-assigned id is not the one a client sends with POST.
	r2 := ts.do("POST", "/Patient", strings.Replace(patientJSON, `"resourceType":"Patient"`, `"resourceType":"Patient","id":"chosen"`, 1)).want(t, 201)
	if r2.str("id") == "chosen" {
		t.Error("create kept the client's id")
	}

	upd := strings.Replace(patientJSON, `"resourceType":"Patient"`, `"resourceType":"Patient","id":"`+id+`"`, 1)
	upd = strings.Replace(upd, `"female"`, `"other"`, 1)
	ts.do("PUT", "/Patient/"+id, upd, "If-Match", `W/"2"`).want(t, 412)
	r = ts.do("PUT", "/Patient/"+id, upd, "If-Match", `W/"1"`).want(t, 200)
	if r.str("meta.versionId") != "2" || r.str("gender") != "other" {
		t.Fatalf("update: %s", r.body)
	}
	// The same content again writes no version.
	r = ts.do("PUT", "/Patient/"+id, upd).want(t, 200)
	if r.str("meta.versionId") != "2" {
		t.Errorf("unchanged update wrote version %s", r.str("meta.versionId"))
	}
	if v1 := ts.do("GET", "/Patient/"+id+"/_history/1", nil).want(t, 200); v1.str("gender") != "female" {
		t.Errorf("vread 1 gender = %q", v1.str("gender"))
	}
	ts.do("GET", "/Patient/"+id+"/_history/9", nil).want(t, 404)

	ts.do("DELETE", "/Patient/"+id, nil).want(t, 204)
	gone := ts.do("GET", "/Patient/"+id, nil).want(t, 410)
	if gone.str("resourceType") != "OperationOutcome" {
		t.Errorf("410 body: %s", gone.body)
	}
	ts.do("DELETE", "/Patient/"+id, nil).want(t, 204) // idempotent
	h := ts.do("GET", "/Patient/"+id+"/_history", nil).want(t, 200)
	if h.str("type") != "history" || h.str("entry.0.request.method") != "DELETE" || h.str("entry.2.request.method") != "POST" || h.str("entry.3.request.method") != "" {
		t.Fatalf("instance history: %s", h.body)
	}

	// Update as create, with the client's id.
	r = ts.do("PUT", "/Patient/client-chosen", strings.Replace(patientJSON, `"resourceType":"Patient"`, `"resourceType":"Patient","id":"client-chosen"`, 1)).want(t, 201)
	if r.str("id") != "client-chosen" {
		t.Errorf("update-as-create id = %q", r.str("id"))
	}
	ts.do("GET", "/Patient/unknown-id", nil).want(t, 404)
	ts.do("GET", "/Nonsense/1", nil).want(t, 404)
}

func TestPreferAndPretty(t *testing.T) {
	ts := newTestServer(t)
	r := ts.do("POST", "/Patient", patientJSON, "Prefer", "return=minimal").want(t, 201)
	if len(r.body) != 0 || r.header.Get("Location") == "" {
		t.Errorf("return=minimal: body %q, Location %q", r.body, r.header.Get("Location"))
	}
	r = ts.do("POST", "/Patient", patientJSON, "Prefer", "return=OperationOutcome").want(t, 201)
	if r.str("resourceType") != "OperationOutcome" {
		t.Errorf("return=OperationOutcome: %s", r.body)
	}
	r = ts.do("POST", "/Patient?_pretty=true", patientJSON).want(t, 201)
	if !bytes.Contains(r.body, []byte("\n  \"resourceType\": \"Patient\"")) {
		t.Errorf("_pretty=true is not indented: %.200s", r.body)
	}
}

func TestBadInput(t *testing.T) {
	ts := newTestServer(t, func(c *api.Config) { c.MaxBody = 64 << 10 })
	deep := strings.Repeat(`{"extension":[`, 200) + strings.Repeat(`]}`, 200)
	cases := []struct {
		name, method, path, body string
		headers                  []string
		status                   int
		mention                  string // the outcome must mention this
	}{
		{"malformed JSON", "POST", "/Patient", `{"resourceType":"Patient",`, nil, 400, "JSON"},
		{"not an object", "POST", "/Patient", `[1,2]`, nil, 400, ""},
		{"wrong resourceType", "POST", "/Patient", `{"resourceType":"Observation","status":"final","code":{"text":"x"}}`, nil, 400, "resource type"},
		{"unknown resourceType", "POST", "/Patient", `{"resourceType":"Patientx"}`, nil, 400, "resourceType"},
		{"id mismatch", "PUT", "/Patient/a", `{"resourceType":"Patient","id":"b"}`, nil, 400, "Patient.id"},
		{"id missing", "PUT", "/Patient/a", `{"resourceType":"Patient"}`, nil, 400, "Patient.id"},
		{"unknown element", "POST", "/Patient", `{"resourceType":"Patient","nickname":"x"}`, nil, 400, "Patient.nickname"},
		{"bad date", "POST", "/Patient", `{"resourceType":"Patient","birthDate":"1980-02-30"}`, nil, 400, "Patient.birthDate"},
		{"bad code", "POST", "/Patient", `{"resourceType":"Patient","gender":"robot"}`, nil, 400, "Patient.gender"},
		{"duplicate member", "POST", "/Patient", `{"resourceType":"Patient","active":true,"active":false}`, nil, 400, "duplicate"},
		{"absurd nesting", "POST", "/Patient", `{"resourceType":"Patient","extension":[` + deep + `]}`, nil, 400, "deep"},
		{"oversized", "POST", "/Patient", `{"resourceType":"Patient","text":{"status":"generated","div":"<div xmlns=\"http://www.w3.org/1999/xhtml\">` + strings.Repeat("a", 70<<10) + `</div>"}}`, nil, 413, "limit"},
		{"wrong media type", "POST", "/Patient", patientJSON, []string{"Content-Type", "text/plain"}, 415, "application/fhir+json"},
		{"xml wanted", "GET", "/Patient", "", []string{"Accept", "application/fhir+xml"}, 406, "JSON"},
		{"xml format", "GET", "/Patient?_format=xml", "", nil, 406, "json"},
		{"bad If-Match", "PUT", "/Patient/a", `{"resourceType":"Patient","id":"a"}`, []string{"If-Match", "yesterday"}, 400, "If-Match"},
		{"bad id in URL", "GET", "/Patient/" + strings.Repeat("x", 65), "", nil, 400, "id"},
		{"operation", "POST", "/Patient/$everything", "", nil, 501, "not implemented"},
		{"patch", "PATCH", "/Patient/a", "", nil, 405, "PUT"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var body any
			if c.body != "" {
				body = c.body
			}
			r := ts.do(c.method, c.path, body, c.headers...).want(t, c.status)
			text := r.outcomeText()
			if text == "" {
				t.Fatalf("no OperationOutcome: %.300s", r.body)
			}
			if !strings.Contains(strings.ToLower(text), strings.ToLower(c.mention)) {
				t.Errorf("outcome %q does not mention %q", text, c.mention)
			}
		})
	}
	// Nothing of the refused writes was stored.
	r := ts.do("GET", "/Patient", nil).want(t, 200)
	if e, ok := r.json["entry"].([]any); ok && len(e) > 0 {
		t.Errorf("%d patients stored by refused requests", len(e))
	}
}

// TestOneWriterPerDataDirectory: while one process writes records to a
// data directory (a server), another writer (an import) is refused with a
// hint, token commands still work, and the lock goes with its holder.
func TestOneWriterPerDataDirectory(t *testing.T) {
	ts := newTestServer(t)
	ctx := context.Background()
	log := slog.New(slog.DiscardHandler)
	_, err := openVault(ctx, ts.v.dir, []byte(testPassphrase), log, writerAccess)
	if !errors.Is(err, errLocked) {
		t.Fatalf("second writer: %v, want errLocked", err)
	}
	var he *hintError
	if !errors.As(err, &he) || !strings.Contains(he.hint, "POST") {
		t.Errorf("the refusal gives no hint: %v", err)
	}
	admin, err := openVault(ctx, ts.v.dir, []byte(testPassphrase), log, adminAccess)
	if err != nil {
		t.Fatalf("token access beside a writer: %v", err)
	}
	admin.Close()
	ts.srv.Close()
	ts.v.Close()
	again, err := openVault(ctx, ts.v.dir, []byte(testPassphrase), log, writerAccess)
	if err != nil {
		t.Fatalf("writer after the first closed: %v", err)
	}
	again.Close()
}
