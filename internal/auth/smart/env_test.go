package smart

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"

	"github.com/ehrvault/ehrvault/internal/auth"
	"github.com/ehrvault/ehrvault/internal/auth/authtest"
	"github.com/ehrvault/ehrvault/internal/auth/dpop/dpoptest"
)

const (
	issuer   = "https://ehr.example.org"
	fhirBase = issuer + "/fhir"
	appCB    = "https://app.example.com/callback"
)

// fakeSessions: a browser's session is the cookie "sid".
type fakeSessions struct {
	mu    sync.Mutex
	byID  map[string]*auth.Principal
	alive map[string]bool
}

func (f *fakeSessions) Session(r *http.Request) (*auth.Principal, error) {
	c, err := r.Cookie("sid")
	if err != nil {
		return nil, auth.ErrUnauthenticated
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	p, ok := f.byID[c.Value]
	if !ok || !f.alive[c.Value] {
		return nil, auth.ErrUnauthenticated
	}
	cp := *p
	return &cp, nil
}

func (f *fakeSessions) LoginURL(next string) string { return "/login?next=" + url.QueryEscape(next) }

func (f *fakeSessions) Alive(ctx context.Context, id string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if !f.alive[id] {
		return auth.ErrUnauthenticated
	}
	return nil
}

func (f *fakeSessions) add(id string, p *auth.Principal) {
	f.mu.Lock()
	defer f.mu.Unlock()
	p.Session = id
	f.byID[id] = p
	f.alive[id] = true
}

func (f *fakeSessions) end(id string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.alive[id] = false
}

type fakeDevices struct {
	mu   sync.Mutex
	keys map[string]string // jkt -> device id
}

func (f *fakeDevices) DeviceByKey(ctx context.Context, jkt string) (string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if id, ok := f.keys[jkt]; ok {
		return id, nil
	}
	return "", auth.ErrUnauthenticated
}

func (f *fakeDevices) enrol(jkt, id string) {
	f.mu.Lock()
	f.keys[jkt] = id
	f.mu.Unlock()
}

func (f *fakeDevices) revoke(jkt string) {
	f.mu.Lock()
	delete(f.keys, jkt)
	f.mu.Unlock()
}

type events struct {
	mu   sync.Mutex
	list []Event
	fail bool
}

func (e *events) Record(ctx context.Context, ev Event) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.fail {
		return context.DeadlineExceeded
	}
	e.list = append(e.list, ev)
	return nil
}

func (e *events) has(action, outcome string) bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	for _, ev := range e.list {
		if ev.Action == action && ev.Outcome == outcome {
			return true
		}
	}
	return false
}

type env struct {
	t    testing.TB
	now  time.Time
	mu   sync.Mutex
	srv  *Server
	sess *fakeSessions
	devs *fakeDevices
	rec  *events

	app    *Client
	dkey   *dpoptest.Key // the enrolled device's key
	svc    *Client
	svcKey *ecdsa.PrivateKey
}

func (e *env) clock() time.Time {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.now
}

func (e *env) advance(d time.Duration) {
	e.mu.Lock()
	e.now = e.now.Add(d)
	e.mu.Unlock()
}

func newEnv(t testing.TB) *env {
	t.Helper()
	ctx := context.Background()
	k := authtest.New(t)
	db, sealer, mac := k.DB, k.Sealer, k.MAC
	var err error
	e := &env{t: t, now: time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC),
		sess: &fakeSessions{byID: map[string]*auth.Principal{}, alive: map[string]bool{}},
		devs: &fakeDevices{keys: map[string]string{}}, rec: &events{}}
	e.srv, err = New(Config{Issuer: issuer, FHIRBase: fhirBase, Store: db, Sealer: sealer, MAC: mac,
		Sessions: e.sess, Devices: e.devs, Recorder: e.rec, Now: e.clock,
		Operator: func(r *http.Request) bool { return r.Header.Get("X-Operator") == "yes" }})
	if err != nil {
		t.Fatal(err)
	}
	e.app, err = e.srv.Clients().Add(ctx, Client{Kind: ClientApp, Name: "Lab viewer", RedirectURIs: []string{appCB},
		Scopes: []string{"patient/Observation.rs", "patient/Patient.r", "user/Encounter.rs", "launch/patient", "offline_access"}})
	if err != nil {
		t.Fatal(err)
	}
	e.dkey = dpoptest.NewKey()
	e.devs.enrol(e.dkey.JKT, "dev-laptop-1")
	e.sess.add("sess-1", &auth.Principal{Kind: auth.KindUser, User: "u-clin", Role: auth.RoleClinician,
		Factors: []auth.Factor{{Method: auth.FactorPassword, At: e.now}, {Method: auth.FactorTOTP, At: e.now}}})
	e.svcKey, e.svc = e.addService(ClientService, []string{"system/Observation.rs", "system/Patient.r"}, nil)
	return e
}

// addService registers a service or device with a fresh P-384 key.
func (e *env) addService(kind string, scopes, patients []string) (*ecdsa.PrivateKey, *Client) {
	e.t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	if err != nil {
		e.t.Fatal(err)
	}
	set := jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: &k.PublicKey, KeyID: "k1", Algorithm: "ES384", Use: "sig"}}}
	js, _ := json.Marshal(set)
	c, err := e.srv.Clients().Add(context.Background(), Client{Kind: kind, Name: "svc " + kind, Scopes: scopes, JWKS: js, Patients: patients})
	if err != nil {
		e.t.Fatalf("add %s: %v", kind, err)
	}
	return k, c
}

// assertion signs a client assertion; mod may change the claims.
func (e *env) assertion(c *Client, k *ecdsa.PrivateKey, mod func(*jwt.Claims)) string {
	e.t.Helper()
	now := e.clock()
	cl := jwt.Claims{Issuer: c.ID, Subject: c.ID, Audience: jwt.Audience{issuer + PathToken},
		Expiry: jwt.NewNumericDate(now.Add(4 * time.Minute)), ID: randID()}
	if mod != nil {
		mod(&cl)
	}
	sig, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.ES384, Key: k}, (&jose.SignerOptions{}).WithType("JWT").WithHeader("kid", "k1"))
	if err != nil {
		e.t.Fatal(err)
	}
	s, err := jwt.Signed(sig).Claims(cl).Serialize()
	if err != nil {
		e.t.Fatal(err)
	}
	return s
}

func randID() string {
	var b [9]byte
	rand.Read(b[:])
	return base64.RawURLEncoding.EncodeToString(b[:])
}

// do runs a request through the handler.
func (e *env) do(method, target string, form url.Values, hdr http.Header) *httptest.ResponseRecorder {
	e.t.Helper()
	var body *strings.Reader
	if form != nil {
		body = strings.NewReader(form.Encode())
	} else {
		body = strings.NewReader("")
	}
	r := httptest.NewRequest(method, issuer+target, body)
	if form != nil {
		r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	for k, vs := range hdr {
		r.Header[k] = vs
	}
	w := httptest.NewRecorder()
	e.srv.ServeHTTP(w, r)
	return w
}

func cookie(sid string) http.Header { return http.Header{"Cookie": {"sid=" + sid}} }

// pkce returns a verifier and its S256 challenge.
func pkce() (string, string) {
	v := randID() + randID() + randID() + randID() + randID()
	sum := sha256.Sum256([]byte(v))
	return v, base64.RawURLEncoding.EncodeToString(sum[:])
}

func (e *env) authzParams(challenge string) url.Values {
	return url.Values{"response_type": {"code"}, "client_id": {e.app.ID}, "redirect_uri": {appCB},
		"scope": {"launch/patient patient/Observation.rs patient/Patient.r offline_access"}, "state": {"st-1"},
		"aud": {fhirBase}, "code_challenge": {challenge}, "code_challenge_method": {"S256"}}
}

var csrfRE = regexp.MustCompile(`name="csrf" value="([^"]+)"`)

// consentCSRF shows the consent page to sid and returns its CSRF token.
func (e *env) consentCSRF(params url.Values, sid string) string {
	e.t.Helper()
	w := e.do("GET", PathAuthorize+"?"+params.Encode(), nil, cookie(sid))
	if w.Code != 200 {
		e.t.Fatalf("consent page: status %d: %s", w.Code, w.Body)
	}
	m := csrfRE.FindStringSubmatch(w.Body.String())
	if m == nil {
		e.t.Fatalf("consent page has no csrf field")
	}
	return m[1]
}

// approve answers the consent page and returns the redirect's query.
func (e *env) approve(params url.Values, sid, csrf, patient string) url.Values {
	e.t.Helper()
	f := url.Values{}
	for k, v := range params {
		f[k] = v
	}
	f.Set("csrf", csrf)
	f.Set("decision", "approve")
	if patient != "" {
		f.Set("patient", patient)
	}
	w := e.do("POST", PathAuthorize, f, cookie(sid))
	if w.Code != http.StatusSeeOther {
		e.t.Fatalf("approve: status %d: %s", w.Code, w.Body)
	}
	u, err := url.Parse(w.Header().Get("Location"))
	if err != nil || !strings.HasPrefix(u.String(), appCB+"?") {
		e.t.Fatalf("approve: Location %q, want %s?...", w.Header().Get("Location"), appCB)
	}
	return u.Query()
}

// code runs authorize and consent for the clinician and returns a code.
func (e *env) code() (code, verifier string) {
	e.t.Helper()
	verifier, challenge := pkce()
	p := e.authzParams(challenge)
	q := e.approve(p, "sess-1", e.consentCSRF(p, "sess-1"), "pat-1")
	if q.Get("code") == "" || q.Get("state") != "st-1" || q.Get("iss") != issuer {
		e.t.Fatalf("approve redirect query = %v, want code, state st-1, iss", q)
	}
	return q.Get("code"), verifier
}

type tokenAnswer struct {
	status int
	tokenResponse
	Error string `json:"error"`
	Desc  string `json:"error_description"`
}

// token posts form to the token endpoint with a proof by k (none if nil).
func (e *env) token(form url.Values, k *dpoptest.Key) tokenAnswer {
	e.t.Helper()
	h := http.Header{}
	if k != nil {
		h.Set("DPoP", k.Proof("POST", issuer+PathToken, "", e.clock()))
	}
	w := e.do("POST", PathToken, form, h)
	var a tokenAnswer
	if err := json.Unmarshal(w.Body.Bytes(), &a); err != nil {
		e.t.Fatalf("token: status %d, body %q: %v", w.Code, w.Body, err)
	}
	a.status = w.Code
	if w.Header().Get("Cache-Control") != "no-store" {
		e.t.Errorf("token: Cache-Control %q, want no-store", w.Header().Get("Cache-Control"))
	}
	return a
}

func (e *env) exchange(code, verifier string, k *dpoptest.Key) tokenAnswer {
	return e.token(url.Values{"grant_type": {"authorization_code"}, "code": {code}, "redirect_uri": {appCB},
		"code_verifier": {verifier}, "client_id": {e.app.ID}}, k)
}

// userTokens returns tokens for the clinician on the enrolled device.
func (e *env) userTokens() tokenAnswer {
	e.t.Helper()
	code, v := e.code()
	a := e.exchange(code, v, e.dkey)
	if a.status != 200 {
		e.t.Fatalf("exchange: %d %s: %s", a.status, a.Error, a.Desc)
	}
	return a
}

// fhir builds a FHIR request carrying token and proof.
func fhirReq(method, path, scheme, token, proof string) *http.Request {
	r := httptest.NewRequest(method, issuer+path, nil)
	if token != "" {
		r.Header.Set("Authorization", scheme+" "+token)
	}
	if proof != "" {
		r.Header.Set("DPoP", proof)
	}
	return r
}

// authn authenticates a GET of path with token and a good proof by k.
func (e *env) authn(token string, k *dpoptest.Key) (*auth.Principal, error) {
	const path = "/fhir/Observation"
	return e.srv.Authenticate(fhirReq("GET", path+"?patient=pat-1", "DPoP", token, k.Proof("GET", issuer+path, token, e.clock())))
}

var _ crypto.PublicKey = (*ecdsa.PublicKey)(nil)
