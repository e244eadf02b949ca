package main

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"flag"
	"html"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
	"github.com/pquerna/otp"
	"github.com/pquerna/otp/totp"

	"github.com/ehrvault/ehrvault/internal/api"
	"github.com/ehrvault/ehrvault/internal/auth/devices"
	"github.com/ehrvault/ehrvault/internal/auth/dpop/dpoptest"
	"github.com/ehrvault/ehrvault/internal/auth/smart"
	"github.com/ehrvault/ehrvault/internal/edge"
	"github.com/ehrvault/ehrvault/internal/importer"
)

// idServer is "ehrvault serve" over a fresh data directory, wired as the
// command wires it (c.serve on a loopback listener), with a clock the
// test may move forward (the SMART server's), an HTTPS client that
// trusts the directory's self-signed certificate, and an operator token.
type idServer struct {
	t       testing.TB
	v       *vault
	dir     string
	origin  string // https://localhost:PORT
	addr    string // the listener's address, which every connection dials
	tr      *http.Transport
	op      string // an operator token
	logs    *lockedBuffer
	offset  atomic.Int64 // added to the clock, nanoseconds
	secrets secretList   // values that must never reach the audit log or logs
}

// lockedBuffer is a log sink safe for the server's goroutines.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) Bytes() []byte {
	l.mu.Lock()
	defer l.mu.Unlock()
	return bytes.Clone(l.b.Bytes())
}

// secretList collects tokens, passwords and codes the test handled.
type secretList struct {
	mu   sync.Mutex
	vals map[string]string // value → what it is
}

func (s *secretList) add(what string, vals ...string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.vals == nil {
		s.vals = map[string]string{}
	}
	for _, v := range vals {
		if len(v) >= 8 {
			s.vals[v] = what
		}
	}
}

// sub makes t, a subtest of the server's test, the one its helpers fail
// until t ends.
func (s *idServer) sub(t *testing.T) {
	parent := s.t
	s.t = t
	t.Cleanup(func() { s.t = parent })
}

// now is the server's clock as the test set it.
func (s *idServer) now() time.Time { return time.Now().Add(time.Duration(s.offset.Load())) }

// newIDServer serves a new data directory with serve's flags args
// (e.g. "--rate-per-principal", "2").
func newIDServer(t testing.TB, args ...string) *idServer {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	dir := filepath.Join(t.TempDir(), "data")
	c := testCLI()
	if err := c.initVault(ctx, dir, []byte(testPassphrase)); err != nil {
		t.Fatalf("initVault: %v", err)
	}
	var sf serveFlags
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	sf.register(fs)
	if err := fs.Parse(args); err != nil {
		t.Fatal(err)
	}
	as, err := sf.auditSettings()
	if err != nil {
		t.Fatal(err)
	}
	s := &idServer{t: t, dir: dir, logs: &lockedBuffer{}}
	sf.now = s.now
	log := slog.New(slog.NewTextHandler(s.logs, nil))
	if s.v, err = openVaultWith(ctx, dir, []byte(testPassphrase), log, writerAccess, as); err != nil {
		t.Fatalf("openVault: %v", err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s.addr = ln.Addr().String()
	ready := make(chan string, 1)
	done := make(chan error, 1)
	go func() { done <- c.serve(ctx, s.v, ln, &sf, log, func(u string) { ready <- u }) }()
	select {
	case u := <-ready:
		s.origin = strings.TrimSuffix(u, api.Base)
	case err := <-done:
		t.Fatalf("serve: %v", err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			for _, l := range strings.Split(string(s.logs.Bytes()), "\n") {
				if strings.Contains(l, "level=ERROR") {
					t.Log("server: " + l)
				}
			}
		}
		cancel()
		if err := <-done; err != nil {
			t.Errorf("serve: %v", err)
		}
		s.v.Close()
	})
	if !strings.HasPrefix(s.origin, "https://localhost:") {
		t.Fatalf("origin %q: want HTTPS on localhost by default", s.origin)
	}
	pem, err := os.ReadFile(filepath.Join(dir, edge.CertFile))
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		t.Fatal("the self-signed certificate does not parse")
	}
	s.tr = &http.Transport{
		TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12},
		DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, "tcp", s.addr)
		},
	}
	t.Cleanup(s.tr.CloseIdleConnections)
	if s.op, _, err = s.v.tokens.Create(ctx, time.Hour, "test operator"); err != nil {
		t.Fatal(err)
	}
	s.secrets.add("operator token", s.op)
	return s
}

// client is an HTTP client that does not follow redirects; with a
// cookie jar when jar is true (a browser).
func (s *idServer) client(jar bool) *http.Client {
	hc := &http.Client{Transport: s.tr, Timeout: time.Minute, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	if jar {
		hc.Jar, _ = cookiejar.New(nil)
	}
	return hc
}

// importSynthetic imports n synthetic patients and returns their ids.
func (s *idServer) importSynthetic(seed uint64, n int) []string {
	s.t.Helper()
	rep, err := importer.Import(context.Background(), s.v.records, []string{writeSynthetic(s.t, seed, n)}, importer.Options{})
	if err != nil || len(rep.Problems) > 0 {
		s.t.Fatalf("import: %v %v", err, rep.Problems)
	}
	var ids []string
	for _, e := range s.op_().get("/Patient?_count=100").want(s.t, 200).entries() {
		ids = append(ids, e["id"].(string))
	}
	if len(ids) != n {
		s.t.Fatalf("%d patients imported, want %d", len(ids), n)
	}
	return ids
}

// cred is how a FHIR request authenticates.
type cred struct {
	s     *idServer
	token string
	key   *dpoptest.Key // nil: Bearer
}

func (s *idServer) op_() *cred { return &cred{s: s, token: s.op} }

// request builds a FHIR request (path below /fhir) with its proof.
func (c *cred) request(method, path string, body string) *http.Request {
	var r io.Reader
	if body != "" {
		r = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, c.s.origin+api.Base+path, r)
	if err != nil {
		c.s.t.Fatal(err)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/fhir+json")
	}
	if c.key == nil {
		req.Header.Set("Authorization", "Bearer "+c.token)
	} else {
		req.Header.Set("Authorization", "DPoP "+c.token)
		req.Header.Set("DPoP", c.key.Proof(method, c.s.origin+req.URL.EscapedPath(), c.token, c.s.now()))
	}
	return req
}

func (c *cred) get(path string) *idResponse { return c.do(c.request("GET", path, "")) }

func (c *cred) send(method, path, body string, headers ...string) *idResponse {
	req := c.request(method, path, body)
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	return c.do(req)
}

func (c *cred) do(req *http.Request) *idResponse { return c.s.do(c.s.client(false), req) }

// idResponse is an answer, decoded when it is JSON.
type idResponse struct {
	response
	req string
}

func (s *idServer) do(hc *http.Client, req *http.Request) *idResponse {
	s.t.Helper()
	resp, err := hc.Do(req)
	if err != nil {
		s.t.Fatalf("%s %s: %v", req.Method, req.URL, err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	out := &idResponse{response: response{status: resp.StatusCode, header: resp.Header, body: data}, req: req.Method + " " + req.URL.RequestURI()}
	if len(data) > 0 && strings.Contains(resp.Header.Get("Content-Type"), "json") {
		if err := json.Unmarshal(data, &out.json); err != nil {
			s.t.Fatalf("%s: response is not JSON: %v", out.req, err)
		}
	}
	return out
}

func (r *idResponse) want(t testing.TB, status int) *idResponse {
	t.Helper()
	if r.status != status {
		t.Fatalf("%s: status %d, want %d; body: %.600s", r.req, r.status, status, r.body)
	}
	return r
}

// entries returns the resources of a Bundle's entries.
func (r *idResponse) entries() []map[string]any {
	var out []map[string]any
	list, _ := r.json["entry"].([]any)
	for _, e := range list {
		if res, ok := e.(map[string]any)["resource"].(map[string]any); ok {
			out = append(out, res)
		}
	}
	return out
}

// keys returns Type/id of a Bundle's entry resources.
func (r *idResponse) keys() []string {
	var out []string
	for _, res := range r.entries() {
		out = append(out, key(res))
	}
	return out
}

func key(res map[string]any) string { return res["resourceType"].(string) + "/" + res["id"].(string) }

// next returns the path below /fhir of a Bundle's next link, or "".
func (r *idResponse) next(s *idServer) string {
	links, _ := r.json["link"].([]any)
	for _, l := range links {
		m := l.(map[string]any)
		if m["relation"] == "next" {
			u := m["url"].(string)
			if !strings.HasPrefix(u, s.origin+api.Base) {
				s.t.Fatalf("next link %q is not below %s", u, s.origin+api.Base)
			}
			return strings.TrimPrefix(u, s.origin+api.Base)
		}
	}
	return ""
}

// all follows next links and returns every entry resource.
func (c *cred) all(path string) []map[string]any {
	var out []map[string]any
	for path != "" {
		r := c.get(path).want(c.s.t, 200)
		out = append(out, r.entries()...)
		path = r.next(c.s)
	}
	return out
}

// person is an enrolled user: password and TOTP secret.
type person struct {
	id, name, password, totpSecret string
	recovery                       []string
}

var (
	csrfRE     = regexp.MustCompile(`name="csrf" value="([^"]+)"`)
	secretRE   = regexp.MustCompile(`id="totp-secret">([A-Z2-7=]+)<`)
	recoveryRE = regexp.MustCompile(`<li><code>([^<]+)</code></li>`)
	hiddenRE   = regexp.MustCompile(`<input type="hidden" name="([^"]+)" value="([^"]*)">`)
)

// page GETs or POSTs a form (path on the server) with the browser hc.
func (s *idServer) page(hc *http.Client, method, path string, form url.Values, headers ...string) *idResponse {
	s.t.Helper()
	var body io.Reader
	if form != nil {
		body = strings.NewReader(form.Encode())
	}
	req, err := http.NewRequest(method, s.origin+path, body)
	if err != nil {
		s.t.Fatal(err)
	}
	if form != nil {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	return s.do(hc, req)
}

// csrf returns the CSRF field of a page.
func (s *idServer) csrf(r *idResponse) string {
	s.t.Helper()
	m := csrfRE.FindSubmatch(r.body)
	if m == nil {
		s.t.Fatalf("%s: no csrf field in %d page: %.400s", r.req, r.status, r.body)
	}
	return html.UnescapeString(string(m[1]))
}

// totpCode is the code of secret at t.
func totpCode(t testing.TB, secret string, at time.Time) string {
	c, err := totp.GenerateCodeCustom(secret, at, totp.ValidateOpts{Period: 30, Digits: otp.DigitsSix, Algorithm: otp.AlgorithmSHA1})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// enroll adds a user with role and enrolls them through /auth/enroll as
// the person would: code, password, TOTP (the code of the current time
// step; logins use the next one, which the ±1 window accepts).
func (s *idServer) enroll(name, role string) *person {
	s.t.Helper()
	ctx := context.Background()
	en, err := s.v.users.Add(ctx, name, "Test "+name, role)
	if err != nil {
		s.t.Fatalf("user add: %v", err)
	}
	p := &person{id: en.User.ID, name: name, password: "plum orchard " + name + " quietly hums"}
	b := s.client(true)
	csrf := s.csrf(s.page(b, "GET", "/auth/enroll", nil).want(s.t, 200))
	s.page(b, "POST", "/auth/enroll", url.Values{"csrf": {csrf}, "step": {"code"}, "code": {en.Code}}).want(s.t, 303)
	s.page(b, "POST", "/auth/enroll", url.Values{"csrf": {csrf}, "step": {"password"}, "password": {p.password}, "password2": {p.password}}).want(s.t, 303)
	pg := s.page(b, "GET", "/auth/enroll", nil).want(s.t, 200)
	m := secretRE.FindSubmatch(pg.body)
	if m == nil {
		s.t.Fatalf("no TOTP secret on the enrollment page: %.600s", pg.body)
	}
	p.totpSecret = string(m[1])
	done := s.page(b, "POST", "/auth/enroll", url.Values{"csrf": {csrf}, "step": {"totp"}, "code": {totpCode(s.t, p.totpSecret, time.Now())}}).want(s.t, 200)
	for _, m := range recoveryRE.FindAllSubmatch(done.body, -1) {
		p.recovery = append(p.recovery, string(m[1]))
	}
	if len(p.recovery) == 0 {
		s.t.Fatalf("no recovery codes shown: %.600s", done.body)
	}
	s.secrets.add("password of "+name, p.password)
	s.secrets.add("TOTP secret of "+name, p.totpSecret)
	s.secrets.add("recovery code of "+name, p.recovery...)
	s.secrets.add("enrollment code of "+name, en.Code)
	return p
}

// login signs p in on a new browser with the password and a TOTP code
// (method "otp") or a recovery code ("recovery"), and returns the
// browser.
func (s *idServer) login(p *person, method, code string) *http.Client {
	s.t.Helper()
	b := s.client(true)
	csrf := s.csrf(s.page(b, "GET", "/auth/login", nil).want(s.t, 200))
	s.page(b, "POST", "/auth/login", url.Values{"csrf": {csrf}, "username": {p.name}, "password": {p.password}}).want(s.t, 200)
	if method == "otp" && code == "" {
		code = totpCode(s.t, p.totpSecret, time.Now().Add(30*time.Second))
	}
	r := s.page(b, "POST", "/auth/login/factor", url.Values{"csrf": {csrf}, "method": {method}, "code": {code}})
	if r.status != 303 || r.header.Get("Location") != "/auth/" {
		s.t.Fatalf("second factor: %d %q, want 303 to /auth/: %.300s", r.status, r.header.Get("Location"), r.body)
	}
	return b
}

// device enrolls and approves a new device key and returns it as a DPoP
// key with the device's id.
func (s *idServer) device(label string) (*dpoptest.Key, string) {
	s.t.Helper()
	ctx := context.Background()
	code, _, err := s.v.devices.NewCode(ctx, label, devices.Workstation, "test")
	if err != nil {
		s.t.Fatal(err)
	}
	k, err := devices.GenerateKey()
	if err != nil {
		s.t.Fatal(err)
	}
	proof, err := k.Proof("enroll", code, &devices.Posture{OS: "linux", OSVersion: "6.1", DiskEncrypted: true, ScreenLock: true, Hostname: label}, time.Now())
	if err != nil {
		s.t.Fatal(err)
	}
	d, err := s.v.devices.Enroll(ctx, proof)
	if err != nil {
		s.t.Fatal(err)
	}
	if _, err := s.v.devices.Approve(ctx, d.ID, "test"); err != nil {
		s.t.Fatal(err)
	}
	priv, ok := k.Signer().(*ecdsa.PrivateKey)
	if !ok {
		s.t.Fatalf("device key is %T, want ECDSA", k.Signer())
	}
	return &dpoptest.Key{Private: priv, JWK: k.Public(), JKT: k.JKT()}, d.ID
}

// cli runs an ehrvault command beside the server, as an operator would
// in another terminal, and returns its output and exit status.
func (s *idServer) cli(args ...string) (string, int) {
	var out bytes.Buffer
	c := &cli{stdin: strings.NewReader(""), stdout: &out, stderr: &out, getenv: func(k string) string {
		switch k {
		case PassphraseEnv:
			return testPassphrase
		case insecureKDFEnv:
			return "1"
		}
		return ""
	}}
	st := c.main(context.Background(), args)
	return out.String(), st
}

// app registers a SMART app allowed scopes, as "client add-app" does.
func (s *idServer) app(name, scopes string) *smart.Client {
	s.t.Helper()
	c, err := s.v.clients.Add(context.Background(), smart.Client{Kind: smart.ClientApp, Name: name, RedirectURIs: []string{"https://app.example/cb"}, Scopes: append(strings.Fields(scopes), appScopes...)})
	if err != nil {
		s.t.Fatal(err)
	}
	return c
}

// tokenAnswer is the token endpoint's answer.
type tokenAnswer struct {
	status                                         int
	AccessToken, RefreshToken, Scope, Patient, Err string
	IDToken                                        string
	body                                           []byte
}

// tokenRequest posts form to /auth/token with a DPoP proof by key.
func (s *idServer) tokenRequest(form url.Values, key *dpoptest.Key) *tokenAnswer {
	s.t.Helper()
	req, _ := http.NewRequest("POST", s.origin+smart.PathToken, strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("DPoP", key.Proof("POST", s.origin+smart.PathToken, "", s.now()))
	r := s.do(s.client(false), req)
	a := &tokenAnswer{status: r.status, body: r.body}
	a.AccessToken, a.RefreshToken, a.Scope, a.Patient, a.Err = r.str("access_token"), r.str("refresh_token"), r.str("scope"), r.str("patient"), r.str("error")
	a.IDToken = r.str("id_token")
	s.secrets.add("access token", a.AccessToken)
	s.secrets.add("refresh token", a.RefreshToken)
	return a
}

// authorize runs the authorization code flow for app in the logged-in
// browser b, choosing patient on the consent page, and exchanges the code
// with a proof by key. It fails the test unless tokens are issued.
func (s *idServer) authorize(b *http.Client, app *smart.Client, scope, patient string, key *dpoptest.Key) *tokenAnswer {
	s.t.Helper()
	a, _ := s.tryAuthorize(b, app, scope, patient, key)
	if a == nil || a.status != 200 || a.AccessToken == "" {
		s.t.Fatalf("authorize %s for %q: no token: %+v", app.Name, scope, a)
	}
	return a
}

// tryAuthorize is authorize that returns the redirect's error instead.
func (s *idServer) tryAuthorize(b *http.Client, app *smart.Client, scope, patient string, key *dpoptest.Key) (*tokenAnswer, url.Values) {
	s.t.Helper()
	verifier := randHex(32)
	sum := sha256.Sum256([]byte(verifier))
	params := url.Values{"response_type": {"code"}, "client_id": {app.ID}, "redirect_uri": {app.RedirectURIs[0]}, "scope": {scope},
		"state": {randHex(8)}, "aud": {s.origin + api.Base}, "code_challenge": {base64.RawURLEncoding.EncodeToString(sum[:])}, "code_challenge_method": {"S256"}}
	r := s.page(b, "GET", smart.PathAuthorize+"?"+params.Encode(), nil)
	if r.status == 303 {
		q := s.redirectQuery(r)
		return nil, q
	}
	r.want(s.t, 200)
	form := url.Values{}
	for _, m := range hiddenRE.FindAllSubmatch(r.body, -1) {
		form.Set(html.UnescapeString(string(m[1])), html.UnescapeString(string(m[2])))
	}
	form.Set("decision", "approve")
	if patient != "" {
		form.Set("patient", patient)
	}
	r = s.page(b, "POST", smart.PathAuthorize, form)
	if r.status != 303 {
		s.t.Fatalf("consent: %d, want 303: %.400s", r.status, r.body)
	}
	q := s.redirectQuery(r)
	if q.Get("code") == "" {
		return nil, q
	}
	s.secrets.add("authorization code", q.Get("code"))
	s.secrets.add("PKCE verifier", verifier)
	return s.tokenRequest(url.Values{"grant_type": {"authorization_code"}, "code": {q.Get("code")}, "redirect_uri": {app.RedirectURIs[0]},
		"code_verifier": {verifier}, "client_id": {app.ID}}, key), q
}

func (s *idServer) redirectQuery(r *idResponse) url.Values {
	s.t.Helper()
	loc, err := url.Parse(r.header.Get("Location"))
	if err != nil || !strings.HasPrefix(loc.String(), "https://app.example/cb") {
		s.t.Fatalf("%s: redirected to %q, want the app", r.req, r.header.Get("Location"))
	}
	return loc.Query()
}

// program is a backend service or device client with its signing key.
type program struct {
	client *smart.Client
	key    *ecdsa.PrivateKey
	dpop   *dpoptest.Key
}

// program registers a backend service or a device (kind) allowed scopes,
// with a new ES256 key.
func (s *idServer) program(kind, name, scopes string, patients ...string) *program {
	s.t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		s.t.Fatal(err)
	}
	set := jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: &k.PublicKey, KeyID: "k1", Algorithm: "ES256", Use: "sig"}}}
	jwks, _ := json.Marshal(set)
	c, err := s.v.clients.Add(context.Background(), smart.Client{Kind: kind, Name: name, Scopes: strings.Fields(scopes), JWKS: jwks, Patients: patients})
	if err != nil {
		s.t.Fatalf("client add %s: %v", name, err)
	}
	return &program{client: c, key: k, dpop: dpoptest.NewKey()}
}

// assertion signs a client assertion for the token endpoint.
func (s *idServer) assertion(p *program) string {
	s.t.Helper()
	sig, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.ES256, Key: p.key}, (&jose.SignerOptions{}).WithType("JWT").WithHeader("kid", "k1"))
	if err != nil {
		s.t.Fatal(err)
	}
	now := s.now()
	a, err := jwt.Signed(sig).Claims(jwt.Claims{Issuer: p.client.ID, Subject: p.client.ID, Audience: jwt.Audience{s.origin + smart.PathToken},
		ID: randHex(16), IssuedAt: jwt.NewNumericDate(now), Expiry: jwt.NewNumericDate(now.Add(4 * time.Minute))}).Serialize()
	if err != nil {
		s.t.Fatal(err)
	}
	s.secrets.add("client assertion", a)
	return a
}

// credentials asks for a client_credentials token.
func (s *idServer) credentials(p *program, scope string) *tokenAnswer {
	s.t.Helper()
	return s.tokenRequest(url.Values{"grant_type": {"client_credentials"}, "scope": {scope},
		"client_assertion_type": {"urn:ietf:params:oauth:client-assertion-type:jwt-bearer"}, "client_assertion": {s.assertion(p)}}, p.dpop)
}

func randHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}
