package users

import (
	"context"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pquerna/otp/totp"

	"github.com/ehrvault/ehrvault/internal/auth/authtest"
	"github.com/ehrvault/ehrvault/internal/keyring"
	"github.com/ehrvault/ehrvault/internal/store/sqlite"
)

// clock is an injected clock tests move by hand.
type clock = authtest.Clock

// events collects what the Service records.
type events struct {
	mu   sync.Mutex
	list []Event
}

func (e *events) Record(ctx context.Context, ev Event) error {
	e.mu.Lock()
	e.list = append(e.list, ev)
	e.mu.Unlock()
	return nil
}

func (e *events) count(action, outcome string) int {
	e.mu.Lock()
	defer e.mu.Unlock()
	n := 0
	for _, ev := range e.list {
		if ev.Action == action && ev.Outcome == outcome {
			n++
		}
	}
	return n
}

type env struct {
	svc    *Service
	db     *sqlite.DB
	sealer *keyring.Sealer
	clock  *clock
	events *events
}

const testBase = "https://ehr.example.org"

func newEnv(t *testing.T) *env {
	t.Helper()
	k := authtest.New(t)
	db, sealer, mac := k.DB, k.Sealer, k.MAC
	e := &env{db: db, sealer: sealer, clock: authtest.NewClock(time.Date(2026, 3, 1, 9, 0, 0, 0, time.UTC)), events: &events{}}
	var err error
	e.svc, err = New(Config{Store: db, Sealer: sealer, MAC: mac, Recorder: e.events, Now: e.clock.Now,
		Hash: TestHashParams, BaseURL: testBase})
	if err != nil {
		t.Fatal(err)
	}
	return e
}

// account is an enrolled user and its secrets.
type account struct {
	id, name, password, totp string
	recovery                 []string
}

// enroll creates and enrolls a user with a password, TOTP and recovery
// codes, through the package's own steps.
func (e *env) enroll(t *testing.T, name, role string) *account {
	t.Helper()
	ctx := context.Background()
	en, err := e.svc.Add(ctx, name, "", role)
	if err != nil {
		t.Fatalf("Add(%q): %v", name, err)
	}
	a := &account{id: en.User.ID, name: name, password: "purple elephants dance at " + name}
	secret, _, err := e.svc.newTOTPKey(name)
	if err != nil {
		t.Fatal(err)
	}
	a.totp = secret
	codes, hashes := e.svc.newRecoveryCodes()
	a.recovery = codes
	phc := hashPassword(a.password, e.svc.hash)
	if _, err := e.svc.modify(ctx, a.id, func(u *user) error {
		u.Password = e.svc.sealer.Seal([]byte(phc), []byte("pwd/"+u.ID))
		u.TOTPSecret = []byte(secret)
		u.Recovery = hashes
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return a
}

// code returns the TOTP code of a's secret at now + d.
func (e *env) code(t *testing.T, a *account, d time.Duration) string {
	t.Helper()
	c, err := totp.GenerateCodeCustom(a.totp, e.clock.Now().Add(d), totpOpts)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// browser drives a handler like a browser: it keeps cookies and reads the
// CSRF token.
type browser struct {
	t       *testing.T
	h       http.Handler
	cookies map[string]string
	remote  string
}

func newBrowser(t *testing.T, h http.Handler) *browser {
	return &browser{t: t, h: h, cookies: map[string]string{}, remote: "192.0.2.1:5000"}
}

func (b *browser) do(req *http.Request) *httptest.ResponseRecorder {
	b.t.Helper()
	req.RemoteAddr = b.remote
	for k, v := range b.cookies {
		req.AddCookie(&http.Cookie{Name: k, Value: v})
	}
	w := httptest.NewRecorder()
	b.h.ServeHTTP(w, req)
	for _, c := range w.Result().Cookies() {
		if c.MaxAge < 0 {
			delete(b.cookies, c.Name)
		} else {
			b.cookies[c.Name] = c.Value
		}
	}
	return w
}

func (b *browser) get(path string) *httptest.ResponseRecorder {
	return b.do(httptest.NewRequest("GET", testBase+path, nil))
}

// post sends a form, with the CSRF token unless the form has one.
func (b *browser) post(path string, form url.Values) *httptest.ResponseRecorder {
	if _, ok := form["csrf"]; !ok {
		if b.cookies[CSRFCookie] == "" {
			b.get("/auth/login")
		}
		form.Set("csrf", b.cookies[CSRFCookie])
	}
	req := httptest.NewRequest("POST", testBase+path, strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	return b.do(req)
}

func (b *browser) postJSON(path, body string) *httptest.ResponseRecorder {
	req := httptest.NewRequest("POST", testBase+path, strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("X-CSRF-Token", b.cookies[CSRFCookie])
	return b.do(req)
}

// request returns a request carrying the browser's cookies, for Session.
func (b *browser) request() *http.Request {
	req := httptest.NewRequest("GET", testBase+"/fhir/Patient", nil)
	for k, v := range b.cookies {
		req.AddCookie(&http.Cookie{Name: k, Value: v})
	}
	return req
}

// login runs the password and TOTP pages and checks it worked.
func (b *browser) login(e *env, a *account, next string) *httptest.ResponseRecorder {
	b.t.Helper()
	w := b.post("/auth/login", url.Values{"username": {a.name}, "password": {a.password}, "next": {next}})
	if w.Code != http.StatusOK || !strings.Contains(w.Body.String(), `id="code"`) {
		b.t.Fatalf("POST /auth/login: %d, want 200 and the factor page\n%s", w.Code, w.Body)
	}
	return b.post("/auth/login/factor", url.Values{"method": {"totp"}, "code": {e.code(b.t, a, 0)}})
}
