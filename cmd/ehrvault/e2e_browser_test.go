package main

// End-to-end tests of the pages people use, in headless Chromium: account
// enrollment, login with password and TOTP, passkeys with a virtual
// authenticator, the SMART authorization code flow with its consent page,
// and the idle time-out. The server is the real one (c.serve, as
// "ehrvault serve" runs it) over a fresh data directory; the test plays
// the person in the browser and the SMART app and its device on the Go
// side.
//
// The browser is found by name (chromium, chromium-browser, google-chrome)
// or by CHROME_PATH. Without one the test is skipped, unless
// EHRVAULT_REQUIRE_BROWSER=1 (set by .ci/run), which makes it a failure.

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/cdproto/webauthn"
	"github.com/chromedp/chromedp"
	"github.com/pquerna/otp/totp"

	"github.com/ehrvault/ehrvault/internal/auth"
	"github.com/ehrvault/ehrvault/internal/auth/authtest"
	"github.com/ehrvault/ehrvault/internal/auth/devices"
	"github.com/ehrvault/ehrvault/internal/auth/dpop/dpoptest"
	"github.com/ehrvault/ehrvault/internal/auth/smart"
	"github.com/ehrvault/ehrvault/internal/auth/users"
	"github.com/ehrvault/ehrvault/internal/edge"
)

// requireBrowserEnv set to 1 makes a missing browser a failure (CI).
const requireBrowserEnv = "EHRVAULT_REQUIRE_BROWSER"

// findBrowser returns the path of a Chromium-like browser, or skips (fails
// when requireBrowserEnv is 1).
func findBrowser(t *testing.T) string {
	t.Helper()
	if p := os.Getenv("CHROME_PATH"); p != "" {
		if _, err := exec.LookPath(p); err != nil {
			t.Fatalf("CHROME_PATH=%s: %v", p, err)
		}
		return p
	}
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome", "google-chrome-stable"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	if os.Getenv(requireBrowserEnv) == "1" {
		t.Fatalf("%s=1 but no browser found: install Chromium (apt-get install -y chromium) or set CHROME_PATH", requireBrowserEnv)
	}
	t.Skip("no Chromium found: install it (Debian/Ubuntu: sudo apt-get install -y chromium) or set CHROME_PATH to run the browser tests")
	return ""
}

// testClock is the identity layer's clock (serveFlags.now: the login
// sessions and the SMART server), and the app's when it signs DPoP
// proofs. It stands still unless the test moves it, to pass a TOTP step,
// a throttling delay or an idle time-out at once, and so that how long a
// step takes on a busy machine changes nothing.
type testClock = authtest.Clock

// browserEnv is a served data directory and a browser.
type browserEnv struct {
	t        *testing.T
	v        *vault
	origin   string // https://localhost:PORT
	clock    *testClock
	hc       *http.Client // trusts the server's self-signed certificate
	operator string       // an operator token, to load patients
	browser  context.Context
	logs     *syncBuffer
}

func newBrowserEnv(t *testing.T, chrome string) *browserEnv {
	t.Helper()
	ctx := context.Background()
	dir := filepath.Join(t.TempDir(), "data")
	if err := testCLI().initVault(ctx, dir, []byte(testPassphrase)); err != nil {
		t.Fatal(err)
	}
	logs := &syncBuffer{}
	log := slog.New(slog.NewTextHandler(logs, nil))
	v, err := openVault(ctx, dir, []byte(testPassphrase), log, writerAccess)
	if err != nil {
		t.Fatal(err)
	}
	e := &browserEnv{t: t, v: v, clock: authtest.NewClock(time.Now()), logs: logs}

	// serve's defaults, as the command line gives them, and the clock.
	var sf serveFlags
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	sf.register(fs)
	if err := fs.Parse(nil); err != nil {
		t.Fatal(err)
	}
	sf.now = e.clock.Now
	// HTTPS, the default, and not --insecure-http: the session and CSRF
	// cookies are Secure and __Host-, and the point is to see them work
	// as operators deploy them. Chromium is told to trust the data
	// directory's self-signed certificate by its key
	// (--ignore-certificate-errors-spki-list), which makes the page a
	// secure context without certificate errors: WebAuthn refuses pages
	// with TLS errors, so --ignore-certificate-errors would not do. The
	// host is localhost (serve names loopback so): WebAuthn refuses IP
	// addresses as relying party ids.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	sctx, stop := context.WithCancel(ctx)
	ready := make(chan string, 1)
	served := make(chan error, 1)
	go func() { served <- testCLI().serve(sctx, v, ln, &sf, log, func(u string) { ready <- u }) }()
	select {
	case u := <-ready:
		e.origin = strings.TrimSuffix(u, "/fhir")
	case err := <-served:
		t.Fatalf("serve: %v", err)
	case <-time.After(30 * time.Second):
		t.Fatal("serve did not start")
	}
	t.Cleanup(func() {
		stop()
		if err := <-served; err != nil {
			t.Errorf("serve: %v", err)
		}
		v.Close()
		if t.Failed() {
			t.Logf("server log:\n%s", logs.String())
		}
	})
	if !strings.HasPrefix(e.origin, "https://localhost:") {
		t.Fatalf("origin %q, want https://localhost:PORT", e.origin)
	}

	certPEM, err := os.ReadFile(filepath.Join(dir, edge.CertFile))
	if err != nil {
		t.Fatal(err)
	}
	blk, _ := pem.Decode(certPEM)
	if blk == nil {
		t.Fatalf("%s holds no PEM block", edge.CertFile)
	}
	cert, err := x509.ParseCertificate(blk.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.TLSClientConfig.RootCAs = pool
	e.hc = &http.Client{Transport: tr, Timeout: 20 * time.Second, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	spki := sha256.Sum256(cert.RawSubjectPublicKeyInfo)

	if e.operator, _, err = v.tokens.Create(ctx, time.Hour, "browser test"); err != nil {
		t.Fatal(err)
	}

	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(chrome),
		// Headless is the new headless mode: the old one is gone from
		// Chromium since version 132.
		chromedp.Flag("ignore-certificate-errors-spki-list", base64.StdEncoding.EncodeToString(spki[:])),
		chromedp.Flag("disable-gpu", true),
		chromedp.Flag("password-store", "basic"),
		chromedp.Flag("disable-features", "Translate,PasswordLeakDetection,AutofillServerCommunication,OptimizationHints"),
	)
	if os.Geteuid() == 0 {
		// Chromium's sandbox does not start as root (CI containers).
		opts = append(opts, chromedp.NoSandbox)
	}
	actx, cancelAlloc := chromedp.NewExecAllocator(ctx, opts...)
	bctx, cancelBrowser := chromedp.NewContext(actx)
	t.Cleanup(func() { cancelBrowser(); cancelAlloc() })
	if err := chromedp.Do(bctx); err != nil { // start the browser, with no timeout
		t.Fatalf("start %s: %v", chrome, err)
	}
	e.browser = bctx
	return e
}

// page is one browser tab in a browser context of its own: its own
// cookies, as another person's browser.
type page struct {
	t   *testing.T
	ctx context.Context
}

func (e *browserEnv) newPage(t *testing.T) *page {
	t.Helper()
	ctx, cancel := chromedp.NewContext(e.browser, chromedp.WithNewBrowserContext())
	t.Cleanup(cancel)
	if err := chromedp.Do(ctx); err != nil {
		t.Fatalf("open a tab: %v", err)
	}
	return &page{t: t, ctx: ctx}
}

// bounded returns a context for one step: no step of a page takes long.
func (p *page) bounded() (context.Context, context.CancelFunc) {
	return context.WithTimeout(p.ctx, 20*time.Second)
}

func (p *page) do(steps ...chromedp.Action[chromedp.Void]) {
	p.t.Helper()
	ctx, cancel := p.bounded()
	defer cancel()
	if err := chromedp.Do(ctx, steps...); err != nil {
		p.t.Fatalf("browser: %v (at %s: %s)", err, p.location(), p.errorText())
	}
}

// open navigates to u and returns the status of the document it ends on.
func (p *page) open(u string) int64 {
	p.t.Helper()
	ctx, cancel := p.bounded()
	defer cancel()
	resp, err := chromedp.Run(ctx, chromedp.NavigateResponse(u))
	if err != nil {
		p.t.Fatalf("open %s: %v", u, err)
	}
	return resp.Status
}

// click clicks the element with id and waits for the page it leads to;
// it returns that page's status.
func (p *page) click(id string) int64 {
	p.t.Helper()
	ctx, cancel := p.bounded()
	defer cancel()
	resp, err := chromedp.RunResponse(ctx, chromedp.Click(chromedp.ID(id)))
	if err != nil {
		p.t.Fatalf("click #%s: %v (at %s: %s)", id, err, p.location(), p.errorText())
	}
	return resp.Status
}

// fill sets form fields, id → value. SetValue changes the value as a
// script would, so the browser's own hints (minlength, pattern) do not
// stop a submission: what is refused, the server refuses.
func (p *page) fill(fields ...string) {
	p.t.Helper()
	var steps []chromedp.Action[chromedp.Void]
	for i := 0; i+1 < len(fields); i += 2 {
		steps = append(steps, chromedp.SetValue(chromedp.ID(fields[i]), fields[i+1]))
	}
	p.do(steps...)
}

// eval evaluates a JavaScript expression with a string result.
func (p *page) eval(js string) string {
	p.t.Helper()
	ctx, cancel := p.bounded()
	defer cancel()
	s, err := chromedp.Run(ctx, chromedp.Evaluate[string](js))
	if err != nil {
		p.t.Fatalf("evaluate %s: %v", js, err)
	}
	return s
}

// text is the text of the element with id, "" if there is none.
func (p *page) text(id string) string {
	p.t.Helper()
	return p.eval(fmt.Sprintf(`(document.getElementById(%q) || {textContent: ""}).textContent.trim()`, id))
}

// has reports whether the page has an element with id.
func (p *page) has(id string) bool {
	p.t.Helper()
	return p.eval(fmt.Sprintf(`String(document.getElementById(%q) !== null)`, id)) == "true"
}

// location is the page's URL ("" when it cannot be read).
func (p *page) location() string {
	ctx, cancel := context.WithTimeout(p.ctx, 5*time.Second)
	defer cancel()
	s, _ := chromedp.Run(ctx, chromedp.Location())
	return s
}

// path is the path of the page's URL.
func (p *page) path() string {
	p.t.Helper()
	u, err := url.Parse(p.location())
	if err != nil {
		p.t.Fatalf("location: %v", err)
	}
	return u.Path
}

// errorText is the page's #error message, for failure reports.
func (p *page) errorText() string {
	ctx, cancel := context.WithTimeout(p.ctx, 5*time.Second)
	defer cancel()
	s, _ := chromedp.Run(ctx, chromedp.Evaluate[string](`(document.getElementById("error") || {textContent: ""}).textContent`))
	return s
}

// cookie returns the browser's cookie name for origin, nil if none.
func (p *page) cookie(origin, name string) *network.Cookie {
	p.t.Helper()
	ctx, cancel := p.bounded()
	defer cancel()
	res, err := chromedp.Call(ctx, network.GetCookies, network.GetCookiesParams{URLs: []string{origin + "/"}})
	if err != nil {
		p.t.Fatalf("cookies: %v", err)
	}
	for _, c := range res.Cookies {
		if c.Name == name {
			return c
		}
	}
	return nil
}

// wantPage fails unless the page is at path with the status.
func (p *page) wantPage(status, wantStatus int64, path string) {
	p.t.Helper()
	if got := p.path(); status != wantStatus || got != path {
		p.t.Fatalf("page %s (status %d), want %s (status %d); error: %q", got, status, path, wantStatus, p.errorText())
	}
}

// totpCode is the authenticator app's code now (by the server's clock).
func (e *browserEnv) totpCode(secret string) string {
	e.t.Helper()
	code, err := totp.GenerateCode(secret, e.clock.Now())
	if err != nil {
		e.t.Fatalf("totp: %v", err)
	}
	return code
}

// nextTOTPStep moves the clock to the next 30-second step, so that the
// next code is one the server has not seen (each is accepted once).
func (e *browserEnv) nextTOTPStep() { e.clock.Add(30 * time.Second) }

// login signs name in on p with password and a TOTP code of secret, from
// the login page p shows; it returns the code used.
func (e *browserEnv) login(p *page, name, password, secret string) string {
	p.t.Helper()
	p.fill("username", name, "password", password)
	if st := p.click("submit"); st != http.StatusOK || !p.has("code") {
		p.t.Fatalf("password step: status %d, no #code on %s; error %q", st, p.location(), p.errorText())
	}
	if got := p.text("user"); got != name {
		p.t.Fatalf("second-factor page names %q, want %q", got, name)
	}
	e.nextTOTPStep()
	code := e.totpCode(secret)
	p.fill("code", code)
	if st := p.click("submit"); st != http.StatusOK {
		p.t.Fatalf("TOTP step: status %d at %s; error %q", st, p.location(), p.errorText())
	}
	return code
}

// enrollStart enters an enrollment code and a password on a new page
// and returns it on the second-factor step.
func (e *browserEnv) enrollStart(p *page, name, code, password string) {
	p.t.Helper()
	p.wantPage(p.open(e.origin+"/auth/enroll"), http.StatusOK, "/auth/enroll")
	p.fill("code", code)
	if st := p.click("submit"); st != http.StatusOK || !p.has("password2") {
		p.t.Fatalf("enrollment code: status %d, no password form; error %q", st, p.errorText())
	}
	if got := p.text("user"); got != name {
		p.t.Fatalf("enrollment greets %q, want %q", got, name)
	}
	p.fill("password", password, "password2", password)
	if st := p.click("submit"); st != http.StatusOK || !p.has("totp-secret") {
		p.t.Fatalf("password %q: status %d, no second-factor step; error %q", password, st, p.errorText())
	}
}

// wantRecoveryCodes checks the page of recovery codes.
func wantRecoveryCodes(p *page) {
	p.t.Helper()
	if p.text("title") != "Your recovery codes" {
		p.t.Fatalf("at %s %q, want the recovery codes; error %q", p.location(), p.text("title"), p.errorText())
	}
	codes := strings.Fields(p.eval(`Array.from(document.querySelectorAll("#recovery-codes li")).map(li => li.textContent.trim()).join(" ")`))
	if len(codes) != 10 || len(slices.Compact(slices.Sorted(slices.Values(codes)))) != 10 {
		p.t.Fatalf("recovery codes %q, want 10 different ones", codes)
	}
	for _, c := range codes {
		if len(c) < 10 {
			p.t.Errorf("recovery code %q is short", c)
		}
	}
}

// wantUser checks what the server holds about a user.
func (e *browserEnv) wantUser(name string, factors ...string) {
	e.t.Helper()
	u, err := e.v.users.Resolve(context.Background(), name)
	if err != nil {
		e.t.Fatalf("user %s: %v", name, err)
	}
	if !u.Enrolled || !slices.Equal(u.Factors, factors) {
		e.t.Fatalf("user %s: enrolled %v, factors %q; want enrolled with %q", name, u.Enrolled, u.Factors, factors)
	}
}

// wantSessionCookie checks the browser holds the login session's cookie
// as the server meant it: Secure, HttpOnly, SameSite=Strict, host-only.
func (e *browserEnv) wantSessionCookie(p *page) {
	p.t.Helper()
	c := p.cookie(e.origin, users.SessionCookie)
	if c == nil {
		p.t.Fatalf("no %s cookie in the browser", users.SessionCookie)
	}
	if !c.Secure || !c.HTTPOnly || c.SameSite != network.CookieSameSiteStrict || c.Domain != "localhost" || c.Path != "/" {
		p.t.Errorf("session cookie: secure %v httpOnly %v sameSite %q domain %q path %q", c.Secure, c.HTTPOnly, c.SameSite, c.Domain, c.Path)
	}
}

// redirectCatcher is a SMART app's redirect URI: it hands each query it
// receives to the test.
type redirectCatcher struct {
	srv *httptest.Server
	got chan url.Values
}

func newRedirectCatcher(t *testing.T) *redirectCatcher {
	rc := &redirectCatcher{got: make(chan url.Values, 4)}
	rc.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/callback" {
			http.NotFound(w, r)
			return
		}
		rc.got <- r.URL.Query()
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		io.WriteString(w, `<!doctype html><title>app</title><p id="received">received</p>`)
	}))
	t.Cleanup(rc.srv.Close)
	return rc
}

func (rc *redirectCatcher) uri() string { return rc.srv.URL + "/callback" }

func (rc *redirectCatcher) wait(t *testing.T) url.Values {
	t.Helper()
	select {
	case q := <-rc.got:
		return q
	case <-time.After(10 * time.Second):
		t.Fatal("the redirect URI received nothing")
		return nil
	}
}

// randomString is n random bytes, base64url.
func randomString(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}

// fetch sends a request from the Go side (the app); it returns the
// status and body, and the WWW-Authenticate header after the body when
// there is one (the reason of a refusal).
func (e *browserEnv) fetch(method, u string, body io.Reader, header ...string) (int, []byte) {
	e.t.Helper()
	req, err := http.NewRequest(method, u, body)
	if err != nil {
		e.t.Fatal(err)
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := e.hc.Do(req)
	if err != nil {
		e.t.Fatalf("%s %s: %v", method, u, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if wa := resp.Header.Get("WWW-Authenticate"); wa != "" {
		b = append(b, "\nWWW-Authenticate: "+wa...)
	}
	return resp.StatusCode, b
}

// addPatient creates a Patient through the FHIR API and returns its id.
func (e *browserEnv) addPatient(family string) string {
	e.t.Helper()
	st, b := e.fetch("POST", e.origin+"/fhir/Patient",
		strings.NewReader(`{"resourceType":"Patient","name":[{"family":"`+family+`","given":["Test"]}],"birthDate":"1970-01-01"}`),
		"Authorization", "Bearer "+e.operator, "Content-Type", "application/fhir+json")
	var p struct{ ID string }
	if st != http.StatusCreated || json.Unmarshal(b, &p) != nil || p.ID == "" {
		e.t.Fatalf("create Patient: %d %.300s", st, b)
	}
	return p.ID
}

// TestBrowserFlows plays people in headless Chromium against a served data
// directory: enrollment, login, passkeys, SMART authorization, idle
// time-out. The subtests run in order and build on each other (the admin
// enrolled first logs in later); one browser serves them all.
func TestBrowserFlows(t *testing.T) {
	chrome := findBrowser(t)
	e := newBrowserEnv(t, chrome)
	ctx := context.Background()

	const adminPassword = "violet tundra ferry glass"
	admin, err := e.v.users.Add(ctx, "admin", "Ada Admin", auth.RoleAdmin)
	if err != nil {
		t.Fatal(err)
	}
	var adminSecret string

	ok := t.Run("Enroll", func(t *testing.T) {
		e.t = t
		p := e.newPage(t)
		p.wantPage(p.open(e.origin+"/auth/enroll"), http.StatusOK, "/auth/enroll")
		p.fill("code", admin.Code)
		if st := p.click("submit"); st != http.StatusOK || !p.has("password2") {
			t.Fatalf("enrollment code: status %d, no password form; error %q", st, p.errorText())
		}
		if got := p.text("user"); got != "admin" {
			t.Fatalf("enrollment greets %q, want admin", got)
		}
		// Refused passwords: the server says why, and stays on the step.
		for _, c := range []struct{ pw, why string }{
			{"short words", "too short"},
			{"password1234", "common passwords"},
		} {
			p.fill("password", c.pw, "password2", c.pw)
			st := p.click("submit")
			if msg := p.errorText(); st != http.StatusBadRequest || !strings.Contains(msg, c.why) || !p.has("password2") {
				t.Errorf("password %q: status %d, error %q; want 400 saying %q and the password form again", c.pw, st, msg, c.why)
			}
		}
		p.fill("password", adminPassword, "password2", adminPassword)
		if st := p.click("submit"); st != http.StatusOK || !p.has("totp-secret") {
			t.Fatalf("good password: status %d, no TOTP step; error %q", st, p.errorText())
		}
		adminSecret = p.text("totp-secret")
		uri := p.eval(`document.getElementById("totp-uri").getAttribute("href")`)
		if len(adminSecret) < 16 || !strings.HasPrefix(uri, "otpauth://totp/") || !strings.Contains(uri, "secret="+adminSecret) {
			t.Fatalf("TOTP secret %q, URI %q", adminSecret, uri)
		}
		// A wrong code is refused; the authenticator's code is taken.
		p.fill("code", "000000")
		if st := p.click("submit"); st != http.StatusUnauthorized || p.errorText() == "" || !p.has("totp-secret") {
			t.Errorf("wrong TOTP code at enrollment: status %d, error %q; want 401 and the TOTP step again", st, p.errorText())
		}
		if adminSecret2 := p.text("totp-secret"); adminSecret2 != adminSecret {
			t.Fatalf("the TOTP secret changed after a wrong code: %q, then %q", adminSecret, adminSecret2)
		}
		p.fill("code", e.totpCode(adminSecret))
		if st := p.click("submit"); st != http.StatusOK {
			t.Fatalf("TOTP code: status %d; error %q", st, p.errorText())
		}
		wantRecoveryCodes(p)
		e.wantUser("admin", auth.FactorTOTP)
		e.wantSessionCookie(p)
		if c := p.cookie(e.origin, users.CSRFCookie); c == nil || !c.Secure || !c.HTTPOnly {
			t.Errorf("CSRF cookie %+v, want a Secure HttpOnly one", c)
		}
		p.wantPage(p.click("continue"), http.StatusOK, "/auth/")
		if got := p.text("user"); got != "admin" {
			t.Errorf("signed-in page names %q, want admin", got)
		}
		// The code is spent.
		p2 := e.newPage(t)
		p2.open(e.origin + "/auth/enroll")
		p2.fill("code", admin.Code)
		if st := p2.click("submit"); st != http.StatusUnauthorized || !strings.Contains(p2.errorText(), "enrollment code") || p2.has("password2") {
			t.Errorf("used enrollment code: status %d, error %q; want 401 and no password form", st, p2.errorText())
		}
	})
	if !ok {
		t.FailNow() // the flows below log the admin in
	}

	t.Run("Login", func(t *testing.T) {
		e.t = t
		p := e.newPage(t)
		p.wantPage(p.open(e.origin+"/auth/"), http.StatusOK, "/auth/login")
		used := e.login(p, "admin", adminPassword, adminSecret)
		p.wantPage(http.StatusOK, http.StatusOK, "/auth/")
		if got := p.text("user"); got != "admin" {
			t.Fatalf("signed-in page names %q, want admin", got)
		}
		e.wantSessionCookie(p)
		p.wantPage(p.click("logout"), http.StatusOK, "/auth/login")
		if c := p.cookie(e.origin, users.SessionCookie); c != nil {
			t.Errorf("session cookie %q still set after logout", c.Name)
		}

		// The same TOTP code again, with the right password: refused.
		p.fill("username", "admin", "password", adminPassword)
		if st := p.click("submit"); st != http.StatusOK || !p.has("code") {
			t.Fatalf("password step: status %d; error %q", st, p.errorText())
		}
		p.fill("code", used)
		if st := p.click("submit"); st != http.StatusUnauthorized || p.errorText() == "" || !p.has("code") {
			t.Errorf("replayed TOTP code: status %d at %s, error %q; want 401 and the factor page again", st, p.path(), p.errorText())
		}
		if st := p.open(e.origin + "/auth/"); p.path() != "/auth/login" {
			t.Errorf("after a replayed code /auth/ answers %d at %s, want the login page", st, p.path())
		}
		// The next step's code works: the refusal was the replay. The
		// half-done login resumes at the factor page.
		e.nextTOTPStep()
		p.wantPage(p.open(e.origin+"/auth/login"), http.StatusOK, "/auth/login")
		if !p.has("code") {
			t.Fatalf("the half-done login does not resume at the second factor")
		}
		p.fill("code", e.totpCode(adminSecret))
		p.wantPage(p.click("submit"), http.StatusOK, "/auth/")
		p.click("logout")

		// A wrong password: refused at the first step.
		p.fill("username", "admin", "password", adminPassword+"x")
		if st := p.click("submit"); st != http.StatusUnauthorized || p.errorText() != "Wrong user name or password." || p.has("code") {
			t.Errorf("wrong password: status %d, error %q, factor page %v; want 401 and the login page", st, p.errorText(), p.has("code"))
		}
		if c := p.cookie(e.origin, users.SessionCookie); c != nil {
			t.Errorf("a wrong password left a session cookie")
		}
		// Two more wrong passwords make three on this account since its
		// last login: the next attempt must wait, right password or not.
		for i := 0; i < 2; i++ {
			p.fill("username", "admin", "password", adminPassword+"y")
			if st := p.click("submit"); st != http.StatusUnauthorized {
				t.Errorf("wrong password %d: status %d, want 401", i+2, st)
			}
		}
		p.fill("username", "admin", "password", adminPassword)
		if st := p.click("submit"); st != http.StatusTooManyRequests || !strings.HasPrefix(p.errorText(), "Too many failed attempts. Try again in 1s") {
			t.Errorf("after three failures: status %d, error %q; want 429 and a wait of 1s", st, p.errorText())
		}
		// Everyone here shares 127.0.0.1: wait out the delay (a second) on
		// the server's clock, for the flows below.
		e.clock.Add(time.Minute)
	})

	t.Run("WebAuthn", func(t *testing.T) {
		e.t = t
		const password = "quartz meadow lantern oboe"
		alice, err := e.v.users.Add(ctx, "alice", "Dr Alice Smith", auth.RoleClinician)
		if err != nil {
			t.Fatal(err)
		}
		p := e.newPage(t)
		// A platform authenticator that verifies its user and answers at
		// once, in this tab.
		if _, err := chromedp.Call(p.ctx, webauthn.Enable, webauthn.EnableParams{EnableUI: new(false)}); err != nil {
			t.Fatalf("WebAuthn.enable: %v", err)
		}
		va, err := chromedp.Call(p.ctx, webauthn.AddVirtualAuthenticator, webauthn.AddVirtualAuthenticatorParams{Options: &webauthn.VirtualAuthenticatorOptions{
			Protocol: webauthn.AuthenticatorProtocolCtap2, Ctap2version: webauthn.Ctap2versionCtap21, Transport: webauthn.AuthenticatorTransportInternal,
			HasResidentKey: true, HasUserVerification: true, IsUserVerified: true, AutomaticPresenceSimulation: true,
		}})
		if err != nil {
			t.Fatalf("WebAuthn.addVirtualAuthenticator: %v", err)
		}
		credentials := func() []*webauthn.Credential {
			t.Helper()
			res, err := chromedp.Call(p.ctx, webauthn.GetCredentials, webauthn.GetCredentialsParams{AuthenticatorID: va.AuthenticatorID})
			if err != nil {
				t.Fatalf("WebAuthn.getCredentials: %v", err)
			}
			return res.Credentials
		}

		e.enrollStart(p, "alice", alice.Code, password)
		if !p.has("webauthn-register") || p.has("finish") {
			t.Fatalf("the second-factor step offers no security key (register %v, finish %v)", p.has("webauthn-register"), p.has("finish"))
		}
		p.wantPage(p.click("webauthn-register"), http.StatusOK, "/auth/enroll")
		if !p.has("webauthn-done") || !p.has("finish") {
			t.Fatalf("after registering: no #webauthn-done/#finish; error %q", p.errorText())
		}
		creds := credentials()
		if len(creds) != 1 || creds[0].RpID != "localhost" {
			t.Fatalf("authenticator holds %d credentials (%+v), want one for localhost", len(creds), creds)
		}
		if st := p.click("finish"); st != http.StatusOK {
			t.Fatalf("finish: status %d; error %q", st, p.errorText())
		}
		wantRecoveryCodes(p)
		e.wantUser("alice", auth.FactorWebAuthn)
		p.wantPage(p.click("continue"), http.StatusOK, "/auth/")
		p.wantPage(p.click("logout"), http.StatusOK, "/auth/login")

		// Log in: password, then the key.
		p.fill("username", "alice", "password", password)
		if st := p.click("submit"); st != http.StatusOK || !p.has("webauthn-login") {
			t.Fatalf("password step: status %d, no security key button; error %q", st, p.errorText())
		}
		if p.eval(`String(document.querySelector('#method option[value="totp"]') !== null)`) != "false" {
			t.Errorf("the factor page offers TOTP to a user without it")
		}
		before := creds[0].SignCount
		p.wantPage(p.click("webauthn-login"), http.StatusOK, "/auth/")
		if got := p.text("user"); got != "alice" {
			t.Fatalf("signed-in page names %q, want alice", got)
		}
		if creds := credentials(); len(creds) != 1 || creds[0].SignCount <= before {
			t.Errorf("the authenticator signed nothing: sign count %v, then %+v", before, creds)
		}
		e.wantSessionCookie(p)

		// Without the key, the second factor cannot be given: the page
		// says so and the session stays half done.
		p.click("logout")
		if _, err := chromedp.Call(p.ctx, webauthn.ClearCredentials, webauthn.ClearCredentialsParams{AuthenticatorID: va.AuthenticatorID}); err != nil {
			t.Fatal(err)
		}
		p.fill("username", "alice", "password", password)
		p.click("submit")
		p.do(chromedp.Click(chromedp.ID("webauthn-login")), chromedp.WaitVisible(chromedp.ID("error")))
		if msg := p.errorText(); !strings.HasPrefix(msg, "Security key:") || p.path() != "/auth/login" {
			t.Errorf("login with no credential: at %s, error %q; want a security key error on the login page", p.path(), msg)
		}
		if st := p.open(e.origin + "/auth/"); p.path() != "/auth/login" {
			t.Errorf("without the second factor /auth/ answers %d at %s, want the login page", st, p.path())
		}
		e.clock.Add(time.Minute) // the failure's delay, for the flows below
	})

	// The SMART app: a public client with PKCE, its redirect URI here,
	// its DPoP key an enrolled, approved device's.
	rc := newRedirectCatcher(t)
	app, err := e.v.clients.Add(ctx, smart.Client{Kind: smart.ClientApp, Name: "Chart viewer",
		RedirectURIs: []string{rc.uri()}, Scopes: []string{"patient/Patient.rs", "patient/Observation.rs"}})
	if err != nil {
		t.Fatal(err)
	}
	dk := dpoptest.NewKey()
	authorizeURL := func(state, challenge string) string {
		q := url.Values{"response_type": {"code"}, "client_id": {app.ID}, "redirect_uri": {rc.uri()},
			"scope": {"patient/Patient.rs launch/patient"}, "state": {state}, "aud": {e.origin + "/fhir"},
			"code_challenge": {challenge}, "code_challenge_method": {"S256"}, "dpop_jkt": {dk.JKT}}
		return e.origin + smart.PathAuthorize + "?" + q.Encode()
	}
	// One browser for SMART, Deny and IdleTimeout: the admin's session
	// carries over (the page lives as long as the whole test).
	smartPage := e.newPage(t)

	t.Run("SMART", func(t *testing.T) {
		e.t = t
		pat, other := e.addPatient("Chosen"), e.addPatient("Other")
		key, err := devices.NewKey(dk.Private)
		if err != nil {
			t.Fatal(err)
		}
		if key.JKT() != dk.JKT {
			t.Fatalf("device key thumbprint %s, DPoP key's %s", key.JKT(), dk.JKT)
		}
		devCode, _, err := e.v.devices.NewCode(ctx, "e2e workstation", devices.Workstation, "test")
		if err != nil {
			t.Fatal(err)
		}
		st, err := devices.Enroll(ctx, e.hc, e.origin, devCode, key, devices.Posture{OS: "linux", OSVersion: "6.1", DiskEncrypted: true, ScreenLock: true, Hostname: "ws-7"})
		if err != nil {
			t.Fatalf("device enroll: %v", err)
		}
		if _, err := e.v.devices.Approve(ctx, st.Device, "test"); err != nil {
			t.Fatalf("approve device: %v", err)
		}

		verifier := randomString(32)
		sum := sha256.Sum256([]byte(verifier))
		challenge := base64.RawURLEncoding.EncodeToString(sum[:])
		state := randomString(16)

		p := smartPage
		p.t = t
		p.wantPage(p.open(authorizeURL(state, challenge)), http.StatusOK, "/auth/login")
		e.login(p, "admin", adminPassword, adminSecret)
		p.wantPage(http.StatusOK, http.StatusOK, smart.PathAuthorize)
		if app := p.text("app"); app != "Chart viewer" {
			t.Errorf("consent page names the app %q", app)
		}
		if sc := p.text("scopes"); !strings.Contains(sc, "Read and search Patient records of the selected patient") {
			t.Errorf("consent page lists the scopes as %q", sc)
		}
		if !p.has("patient") || !p.has("approve") || !p.has("deny") {
			t.Fatalf("consent page without #patient, #approve or #deny")
		}
		// A patient that does not exist is refused on the page.
		p.fill("patient", "no-such-patient")
		if st := p.click("approve"); st != http.StatusBadRequest || !strings.Contains(p.errorText(), "no patient") {
			t.Errorf("approve for a missing patient: status %d, error %q", st, p.errorText())
		}
		select {
		case q := <-rc.got:
			t.Fatalf("the app received %v before approval", q)
		default:
		}
		p.fill("patient", pat)
		p.click("approve")
		q := rc.wait(t)
		code := q.Get("code")
		if q.Get("state") != state || code == "" || q.Get("iss") != e.origin || q.Get("error") != "" {
			t.Fatalf("redirect query %v, want code, state %q and iss %s", q, state, e.origin)
		}
		if got := p.text("received"); got != "received" {
			t.Errorf("the browser did not land on the app's page: at %s", p.location())
		}

		// The app redeems the code with its verifier and a proof of its key.
		tokenURL := e.origin + smart.PathToken
		form := url.Values{"grant_type": {"authorization_code"}, "code": {code}, "redirect_uri": {rc.uri()},
			"code_verifier": {verifier}, "client_id": {app.ID}}
		redeem := func() (int, []byte) {
			return e.fetch("POST", tokenURL, strings.NewReader(form.Encode()),
				"Content-Type", "application/x-www-form-urlencoded", "DPoP", dk.Proof("POST", tokenURL, "", e.clock.Now()))
		}
		stc, b := redeem()
		var tok struct {
			AccessToken string `json:"access_token"`
			TokenType   string `json:"token_type"`
			Scope       string `json:"scope"`
			Patient     string `json:"patient"`
		}
		if stc != http.StatusOK || json.Unmarshal(b, &tok) != nil || tok.AccessToken == "" {
			t.Fatalf("token: %d %s", stc, b)
		}
		if tok.TokenType != "DPoP" || tok.Patient != pat || !slices.Contains(strings.Fields(tok.Scope), "patient/Patient.rs") {
			t.Errorf("token response: type %q, patient %q (want %q), scope %q", tok.TokenType, tok.Patient, pat, tok.Scope)
		}

		read := func(id string, withProof bool) (int, []byte) {
			u := e.origin + "/fhir/Patient/" + id
			h := []string{"Authorization", "DPoP " + tok.AccessToken, "Accept", "application/fhir+json"}
			if withProof {
				h = append(h, "DPoP", dk.Proof("GET", u, tok.AccessToken, e.clock.Now()))
			}
			return e.fetch("GET", u, nil, h...)
		}
		stc, b = read(pat, true)
		var got struct{ ResourceType, ID string }
		if stc != http.StatusOK || json.Unmarshal(b, &got) != nil || got.ResourceType != "Patient" || got.ID != pat {
			t.Errorf("read the chosen patient: %d %s", stc, b)
		}
		if stc, b := read(other, true); stc != http.StatusNotFound {
			t.Errorf("read another patient: %d %.300s; want 404", stc, b)
		}
		if stc, b := read(pat, false); stc != http.StatusUnauthorized {
			t.Errorf("read without a DPoP proof: %d %.300s; want 401", stc, b)
		}
		// The code a second time: refused, and the tokens it gave die
		// (RFC 6749 section 4.1.2: the code may have been stolen).
		if stc, b := redeem(); stc != http.StatusBadRequest || !bytes.Contains(b, []byte(`"invalid_grant"`)) {
			t.Errorf("the code a second time: %d %s; want 400 invalid_grant", stc, b)
		}
		if stc, b := read(pat, true); stc != http.StatusUnauthorized {
			t.Errorf("read after the code was replayed: %d %.300s; want 401", stc, b)
		}
	})

	t.Run("Deny", func(t *testing.T) {
		e.t = t
		p := smartPage
		p.t = t
		state := randomString(16)
		sum := sha256.Sum256([]byte(randomString(32)))
		p.wantPage(p.open(authorizeURL(state, base64.RawURLEncoding.EncodeToString(sum[:]))), http.StatusOK, smart.PathAuthorize)
		if !p.has("deny") {
			t.Fatalf("no consent page: at %s", p.location())
		}
		p.click("deny")
		q := rc.wait(t)
		if q.Get("error") != "access_denied" || q.Get("state") != state || q.Get("code") != "" {
			t.Errorf("redirect query after deny %v, want error=access_denied, state %q, no code", q, state)
		}
	})

	t.Run("IdleTimeout", func(t *testing.T) {
		e.t = t
		p := smartPage
		p.t = t
		// Each use within the idle time-out (15 minutes) keeps the
		// session: 28 minutes after login it lives.
		for range 2 {
			e.clock.Add(14 * time.Minute)
			p.wantPage(p.open(e.origin+"/auth/"), http.StatusOK, "/auth/")
			if got := p.text("user"); got != "admin" {
				t.Fatalf("signed-in page names %q, want admin", got)
			}
		}
		e.clock.Add(15*time.Minute + time.Second)
		p.wantPage(p.open(e.origin+"/auth/"), http.StatusOK, "/auth/login")
		// The authorization endpoint sends the browser to log in again.
		sum := sha256.Sum256([]byte(randomString(32)))
		au := authorizeURL(randomString(16), base64.RawURLEncoding.EncodeToString(sum[:]))
		p.wantPage(p.open(au), http.StatusOK, "/auth/login")
		u, _ := url.Parse(p.location())
		if next := u.Query().Get("next"); !strings.HasPrefix(next, smart.PathAuthorize+"?") {
			t.Errorf("login page's next %q, want the authorization request", next)
		}
		if p.has("approve") {
			t.Errorf("a timed-out session reached the consent page")
		}
	})
}

// syncBuffer is a log buffer safe for the server's goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
