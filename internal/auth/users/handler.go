package users

import (
	"context"
	"crypto/subtle"
	"embed"
	"errors"
	"html/template"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/ehrvault/ehrvault/internal/auth"
)

// CSRFCookie holds the double-submit token every POST must repeat (form
// field "csrf", or header X-CSRF-Token for the JSON endpoints). Its
// __Host- prefix keeps other hosts from planting one.
const CSRFCookie = "__Host-ehrvault_csrf"

//go:embed pages.html webauthn.js
var assets embed.FS

var pages = template.Must(template.ParseFS(assets, "pages.html"))

// page is what every template gets.
type page struct {
	Title    string
	CSRF     string
	Next     string
	Error    string
	User     string
	WebAuthn bool         // offer WebAuthn
	TOTP     bool         // offer TOTP
	Secret   string       // TOTP secret being enrolled
	URI      template.URL // its otpauth:// URI (built here, so trusted as a link)
	Codes    []string     // recovery codes, shown once
	Action   string       // form action
	Step     string       // enrollment step
	Done     bool         // a factor is enrolled: enrollment may finish
}

// Handler returns the login pages, to mount at /auth/ (paths are
// absolute; no StripPrefix):
//
//	GET  /auth/                     who is logged in, a logout button
//	GET  /auth/login?next=/path     user name and password (#username #password #submit)
//	POST /auth/login                password step, then the second-factor page
//	POST /auth/login/factor         TOTP or recovery code (#code)
//	GET  /auth/enroll               enrollment: code, password, TOTP/WebAuthn, recovery codes
//	POST /auth/enroll               one enrollment step (field "step")
//	GET  /auth/stepup?next=/path    re-ask a second factor
//	POST /auth/stepup               TOTP or recovery code
//	GET  /auth/password             change the password (#password #new-password #new-password2)
//	POST /auth/password             needs a second factor within 5 minutes; ends every session
//	POST /auth/logout               end the session
//	POST /auth/webauthn/register/begin|finish   JSON: WebAuthn registration
//	POST /auth/webauthn/login/begin|finish      JSON: WebAuthn as second factor or step-up
//	GET  /auth/static/webauthn.js
func (s *Service) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /auth/{$}", s.serveHome)
	mux.HandleFunc("GET /auth/login", s.serveLogin)
	mux.HandleFunc("POST /auth/login", s.postLogin)
	mux.HandleFunc("POST /auth/login/factor", s.postFactor)
	mux.HandleFunc("GET /auth/enroll", s.serveEnroll)
	mux.HandleFunc("POST /auth/enroll", s.postEnroll)
	mux.HandleFunc("GET /auth/stepup", s.serveStepUp)
	mux.HandleFunc("POST /auth/stepup", s.postStepUp)
	mux.HandleFunc("POST /auth/logout", s.postLogout)
	mux.HandleFunc("GET /auth/password", s.servePassword)
	mux.HandleFunc("POST /auth/password", s.postPassword)
	mux.HandleFunc("POST /auth/webauthn/register/begin", s.webauthnRegisterBegin)
	mux.HandleFunc("POST /auth/webauthn/register/finish", s.webauthnRegisterFinish)
	mux.HandleFunc("POST /auth/webauthn/login/begin", s.webauthnLoginBegin)
	mux.HandleFunc("POST /auth/webauthn/login/finish", s.webauthnLoginFinish)
	mux.HandleFunc("GET /auth/static/webauthn.js", func(w http.ResponseWriter, r *http.Request) {
		b, _ := assets.ReadFile("webauthn.js")
		w.Header().Set("Content-Type", "text/javascript; charset=utf-8")
		w.Header().Set("Cache-Control", "no-cache")
		w.Write(b)
	})
	return securityHeaders(http.MaxBytesHandler(mux, 64<<10))
}

func securityHeaders(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hd := w.Header()
		hd.Set("Content-Security-Policy", "default-src 'none'; script-src 'self'; connect-src 'self'; img-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
		hd.Set("X-Frame-Options", "DENY")
		hd.Set("X-Content-Type-Options", "nosniff")
		hd.Set("Referrer-Policy", "no-referrer")
		hd.Set("Cache-Control", "no-store")
		h.ServeHTTP(w, r)
	})
}

// csrfToken returns the request's CSRF cookie value, setting a new one if
// there is none.
func csrfToken(w http.ResponseWriter, r *http.Request) string {
	if c, err := r.Cookie(CSRFCookie); err == nil && len(c.Value) >= 32 && len(c.Value) <= 64 {
		return c.Value
	}
	v := newSecret()
	http.SetCookie(w, &http.Cookie{Name: CSRFCookie, Value: v, Path: "/", Secure: true, HttpOnly: true, SameSite: http.SameSiteStrictMode})
	return v
}

// checkCSRF reports whether the POST repeats its CSRF cookie.
func checkCSRF(r *http.Request) bool {
	c, err := r.Cookie(CSRFCookie)
	if err != nil || len(c.Value) < 32 {
		return false
	}
	got := r.Header.Get("X-CSRF-Token")
	if got == "" {
		got = r.PostFormValue("csrf")
	}
	return subtle.ConstantTimeCompare([]byte(got), []byte(c.Value)) == 1
}

func setSession(w http.ResponseWriter, secret string, maxAge time.Duration) {
	http.SetCookie(w, &http.Cookie{Name: SessionCookie, Value: secret, Path: "/", Secure: true, HttpOnly: true,
		SameSite: http.SameSiteStrictMode, MaxAge: int(maxAge / time.Second)})
}

func clearSession(w http.ResponseWriter) {
	http.SetCookie(w, &http.Cookie{Name: SessionCookie, Value: "", Path: "/", Secure: true, HttpOnly: true, SameSite: http.SameSiteStrictMode, MaxAge: -1})
}

func (s *Service) render(w http.ResponseWriter, r *http.Request, status int, name string, p page) {
	p.CSRF = csrfToken(w, r)
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(status)
	if err := pages.ExecuteTemplate(w, name, p); err != nil {
		s.log.Error("users: render page", "page", name, "err", err)
	}
}

// fail answers a refused step on page name: 429 with Retry-After when
// throttled, 401 for a wrong password or code, 500 (with no detail) else.
func (s *Service) fail(w http.ResponseWriter, r *http.Request, name string, p page, err error) {
	var te *ThrottledError
	switch {
	case errors.As(err, &te):
		// Whole seconds, rounded up: "Try again in 0s" while the wait
		// lasts would only make the person try at once, and fail.
		wait := max((te.RetryAfter + time.Second - 1).Truncate(time.Second), time.Second)
		w.Header().Set("Retry-After", strconv.Itoa(int(wait/time.Second)))
		p.Error = "Too many failed attempts. Try again in " + wait.String() + "."
		s.render(w, r, http.StatusTooManyRequests, name, p)
	case errors.Is(err, errCode), errors.Is(err, auth.ErrUnauthenticated):
		if p.Error == "" {
			p.Error = "That did not work. Check what you typed and try again."
		}
		s.render(w, r, http.StatusUnauthorized, name, p)
	default:
		var pe *PasswordError
		if errors.As(err, &pe) {
			p.Error = "The password " + pe.Reason + "."
			s.render(w, r, http.StatusBadRequest, name, p)
			return
		}
		s.log.Error("users: page", "page", name, "err", err)
		p.Error = "Something went wrong on the server. Try again later."
		s.render(w, r, http.StatusInternalServerError, name, p)
	}
}

func nextOf(v string) string {
	if localPath(v) {
		return v
	}
	return ""
}

func (s *Service) redirectNext(w http.ResponseWriter, r *http.Request, next string) {
	if !localPath(next) {
		next = "/auth/"
	}
	http.Redirect(w, r, next, http.StatusSeeOther)
}

func (s *Service) serveHome(w http.ResponseWriter, r *http.Request) {
	p, err := s.Session(r)
	if err != nil {
		http.Redirect(w, r, "/auth/login", http.StatusSeeOther)
		return
	}
	s.render(w, r, http.StatusOK, "home", page{Title: "Signed in", User: p.Label})
}

func (s *Service) serveLogin(w http.ResponseWriter, r *http.Request) {
	next := nextOf(r.URL.Query().Get("next"))
	if ss, u, err := s.current(r); err == nil && ss.Stage == stageMFA {
		s.render(w, r, http.StatusOK, "factor", s.factorPage(u, ss.Next, "/auth/login/factor"))
		return
	}
	s.render(w, r, http.StatusOK, "login", page{Title: "Sign in", Next: next})
}

func (s *Service) factorPage(u *user, next, action string) page {
	return page{Title: "Second factor", Next: next, User: u.Name, TOTP: len(u.TOTPSecret) > 0,
		WebAuthn: len(u.WebAuthn) > 0 && s.wa != nil, Action: action}
}

func (s *Service) postLogin(w http.ResponseWriter, r *http.Request) {
	next := nextOf(r.PostFormValue("next"))
	p := page{Title: "Sign in", Next: next}
	if !checkCSRF(r) {
		p.Error = "The form expired. Please try again."
		s.render(w, r, http.StatusForbidden, "login", p)
		return
	}
	ctx := r.Context()
	u, err := s.checkLogin(ctx, r.PostFormValue("username"), r.PostFormValue("password"), s.source(r))
	if err != nil {
		if errors.Is(err, errCode) {
			p.Error = "Wrong user name or password."
		}
		s.fail(w, r, "login", p, err)
		return
	}
	if old, _, err := s.current(r); err == nil {
		s.store.DeleteAuthObject(ctx, KindSession, old.ID)
	}
	secret, _, err := s.newSession(ctx, u, stageMFA, []auth.Factor{{Method: auth.FactorPassword, At: s.now().UTC()}}, next)
	if err != nil {
		s.fail(w, r, "login", p, err)
		return
	}
	setSession(w, secret, pendingTTL)
	s.render(w, r, http.StatusOK, "factor", s.factorPage(u, next, "/auth/login/factor"))
}

// method maps the form's choice to a factor.
func method(r *http.Request) string {
	if r.PostFormValue("method") == "recovery" {
		return auth.FactorRecovery
	}
	return auth.FactorTOTP
}

func (s *Service) postFactor(w http.ResponseWriter, r *http.Request) {
	ss, u, err := s.current(r)
	if err != nil || ss.Stage != stageMFA {
		http.Redirect(w, r, "/auth/login", http.StatusSeeOther)
		return
	}
	p := s.factorPage(u, ss.Next, "/auth/login/factor")
	if !checkCSRF(r) {
		p.Error = "The form expired. Please try again."
		s.render(w, r, http.StatusForbidden, "factor", p)
		return
	}
	m := method(r)
	if err := s.useFactor(r.Context(), ActionSecondStep, u, ss, m, r.PostFormValue("code"), s.source(r)); err != nil {
		s.fail(w, r, "factor", p, err)
		return
	}
	s.complete(w, r, ss, m)
}

// complete makes ss a full session, factor method just used, and sends
// the browser on.
func (s *Service) complete(w http.ResponseWriter, r *http.Request, ss *session, method string) {
	s.addFactor(ss, method)
	ss.Stage = stageFull
	secret, err := s.putSession(r.Context(), ss)
	if err != nil {
		s.fail(w, r, "login", page{Title: "Sign in"}, err)
		return
	}
	setSession(w, secret, s.absolute)
	s.redirectNext(w, r, ss.Next)
}

func (s *Service) serveStepUp(w http.ResponseWriter, r *http.Request) {
	next := nextOf(r.URL.Query().Get("next"))
	ss, u, err := s.current(r)
	if err != nil || ss.Stage != stageFull {
		http.Redirect(w, r, s.LoginURL(next), http.StatusSeeOther)
		return
	}
	p := s.factorPage(u, next, "/auth/stepup")
	p.Title = "Confirm it is you"
	s.render(w, r, http.StatusOK, "factor", p)
}

func (s *Service) postStepUp(w http.ResponseWriter, r *http.Request) {
	next := nextOf(r.PostFormValue("next"))
	ss, u, err := s.current(r)
	if err != nil || ss.Stage != stageFull {
		http.Redirect(w, r, s.LoginURL(next), http.StatusSeeOther)
		return
	}
	p := s.factorPage(u, next, "/auth/stepup")
	p.Title = "Confirm it is you"
	if !checkCSRF(r) {
		p.Error = "The form expired. Please try again."
		s.render(w, r, http.StatusForbidden, "factor", p)
		return
	}
	m := method(r)
	if err := s.useFactor(r.Context(), ActionStepUp, u, ss, m, r.PostFormValue("code"), s.source(r)); err != nil {
		s.fail(w, r, "factor", p, err)
		return
	}
	ss.Next = next
	s.complete(w, r, ss, m)
}

func (s *Service) postLogout(w http.ResponseWriter, r *http.Request) {
	if !checkCSRF(r) {
		s.render(w, r, http.StatusForbidden, "login", page{Title: "Sign in", Error: "The form expired. Please try again."})
		return
	}
	if ss := s.logout(r); ss != nil {
		s.record(r.Context(), Event{Action: ActionLogout, Outcome: OutcomeSuccess, User: ss.User, Session: ss.ID, Source: s.source(r)})
	}
	clearSession(w)
	http.Redirect(w, r, "/auth/login", http.StatusSeeOther)
}

// enrollPage is the page of ss's enrollment stage.
func (s *Service) enrollPage(ctx context.Context, ss *session, u *user) page {
	p := page{Title: "Set up your account", User: u.Name, Next: ss.Next}
	switch ss.Stage {
	case stagePassword:
		p.Step = "password"
	case stageFactor:
		p.Step = "factor"
		p.Secret = ss.Pending
		// html/template would replace an otpauth: link with #ZgotmplZ;
		// this one is the server's own, its parts escaped by totpURI.
		p.URI = template.URL(s.totpURI(u, ss.Pending))
		p.WebAuthn = s.wa != nil
		p.Done = len(u.WebAuthn) > 0
	default:
		p.Step = "code"
	}
	return p
}

func (s *Service) totpURI(u *user, secret string) string {
	return "otpauth://totp/" + url.PathEscape(s.issuer) + ":" + url.PathEscape(u.Name) +
		"?secret=" + secret + "&issuer=" + url.QueryEscape(s.issuer) + "&algorithm=SHA1&digits=6&period=30"
}

func (s *Service) serveEnroll(w http.ResponseWriter, r *http.Request) {
	if ss, u, err := s.current(r); err == nil && (ss.Stage == stagePassword || ss.Stage == stageFactor) {
		s.render(w, r, http.StatusOK, "enroll", s.enrollPage(r.Context(), ss, u))
		return
	}
	s.render(w, r, http.StatusOK, "enroll", page{Title: "Set up your account", Step: "code"})
}

func (s *Service) postEnroll(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	src := s.source(r)
	p := page{Title: "Set up your account", Step: "code"}
	if !checkCSRF(r) {
		p.Error = "The form expired. Please try again."
		s.render(w, r, http.StatusForbidden, "enroll", p)
		return
	}
	ss, u, err := s.current(r)
	if err != nil || (ss.Stage != stagePassword && ss.Stage != stageFactor) || r.PostFormValue("step") == "code" {
		// Step 1: the enrollment code. Throttled by address: codes are
		// long, but guessing should still be slow.
		if d := s.throttle.wait(sourceKey(src)); d > 0 {
			s.fail(w, r, "enroll", p, &ThrottledError{RetryAfter: d})
			return
		}
		u, err := s.useEnrollment(ctx, r.PostFormValue("code"))
		if err != nil {
			if errors.Is(err, errCode) {
				s.throttle.fail(sourceKey(src))
				s.record(ctx, Event{Action: ActionEnroll, Outcome: OutcomeFailure, Source: src, Detail: "code"})
				p.Error = "That enrollment code is wrong, used or expired. Ask an administrator for a new one."
			}
			s.fail(w, r, "enroll", p, err)
			return
		}
		s.record(ctx, Event{Action: ActionEnroll, Outcome: OutcomeSuccess, User: u.ID, Source: src, Detail: "code"})
		secret, _, err := s.newSession(ctx, u, stagePassword, nil, nextOf(r.PostFormValue("next")))
		if err != nil {
			s.fail(w, r, "enroll", p, err)
			return
		}
		setSession(w, secret, pendingTTL)
		http.Redirect(w, r, "/auth/enroll", http.StatusSeeOther)
		return
	}
	p = s.enrollPage(ctx, ss, u)
	switch {
	case ss.Stage == stagePassword && r.PostFormValue("step") == "password":
		pw := r.PostFormValue("password")
		if pw != r.PostFormValue("password2") {
			p.Error = "The two passwords differ."
			s.render(w, r, http.StatusBadRequest, "enroll", p)
			return
		}
		if err := CheckPassword(pw, u.Name, u.DisplayName); err != nil {
			s.fail(w, r, "enroll", p, err)
			return
		}
		phc := hashPassword(pw, s.hash)
		// The epoch stays: the password is the first, set by the person
		// holding the code, and this session must live on.
		if _, err := s.modify(ctx, u.ID, func(u *user) error {
			if u.Epoch != ss.Epoch {
				return auth.ErrUnauthenticated
			}
			u.Password = s.sealer.Seal([]byte(phc), []byte("pwd/"+u.ID))
			return nil
		}); err != nil {
			s.fail(w, r, "enroll", p, err)
			return
		}
		secret, _, err := s.newTOTPKey(u.Name)
		if err != nil {
			s.fail(w, r, "enroll", p, err)
			return
		}
		ss.Stage, ss.Pending = stageFactor, secret
		s.addFactor(ss, auth.FactorPassword)
		s.record(ctx, Event{Action: ActionEnroll, Outcome: OutcomeSuccess, User: u.ID, Session: ss.ID, Source: src, Detail: auth.FactorPassword})
		s.saveAndRedirect(w, r, ss, "/auth/enroll")
	case ss.Stage == stageFactor && r.PostFormValue("step") == "totp":
		st, ok := totpStep(ss.Pending, strings.TrimSpace(r.PostFormValue("code")), s.now())
		if !ok {
			s.record(ctx, Event{Action: ActionEnroll, Outcome: OutcomeFailure, User: u.ID, Session: ss.ID, Source: src, Detail: auth.FactorTOTP})
			s.fail(w, r, "enroll", p, errCode)
			return
		}
		pending := ss.Pending
		s.finishEnroll(w, r, ss, u, auth.FactorTOTP, func(u *user) {
			u.TOTPSecret, u.TOTPStep = []byte(pending), st
		})
	case ss.Stage == stageFactor && r.PostFormValue("step") == "finish" && len(u.WebAuthn) > 0:
		s.finishEnroll(w, r, ss, u, auth.FactorWebAuthn, func(*user) {})
	default:
		s.render(w, r, http.StatusBadRequest, "enroll", p)
	}
}

// finishEnroll applies f to the user, gives them new recovery codes and
// makes ss a full session, showing the codes once.
func (s *Service) finishEnroll(w http.ResponseWriter, r *http.Request, ss *session, u *user, method string, f func(*user)) {
	ctx := r.Context()
	codes, hashes := s.newRecoveryCodes()
	if _, err := s.modify(ctx, u.ID, func(u *user) error {
		if u.Epoch != ss.Epoch {
			return auth.ErrUnauthenticated
		}
		f(u)
		u.Recovery = hashes
		return nil
	}); err != nil {
		s.fail(w, r, "enroll", s.enrollPage(ctx, ss, u), err)
		return
	}
	s.addFactor(ss, method)
	ss.Stage, ss.Pending = stageFull, ""
	secret, err := s.putSession(ctx, ss)
	if err != nil {
		s.fail(w, r, "enroll", s.enrollPage(ctx, ss, u), err)
		return
	}
	s.record(ctx, Event{Action: ActionEnroll, Outcome: OutcomeSuccess, User: u.ID, Session: ss.ID, Source: s.source(r), Detail: method})
	setSession(w, secret, s.absolute)
	next := ss.Next
	if next == "" {
		next = "/auth/"
	}
	s.render(w, r, http.StatusOK, "codes", page{Title: "Your recovery codes", User: u.Name, Codes: codes, Next: next})
}

func (s *Service) saveAndRedirect(w http.ResponseWriter, r *http.Request, ss *session, to string) {
	secret, err := s.putSession(r.Context(), ss)
	if err != nil {
		s.fail(w, r, "enroll", page{Title: "Set up your account", Step: "code"}, err)
		return
	}
	setSession(w, secret, pendingTTL)
	http.Redirect(w, r, to, http.StatusSeeOther)
}

// recentSession returns the full session that sent r with a second factor
// within stepUpRecent, or redirects to login or step-up and returns nil.
func (s *Service) recentSession(w http.ResponseWriter, r *http.Request, here string) (*session, *user) {
	ss, u, err := s.current(r)
	if err != nil || ss.Stage != stageFull {
		http.Redirect(w, r, s.LoginURL(here), http.StatusSeeOther)
		return nil, nil
	}
	if !principal(ss, u).FactorSince("", s.now().Add(-stepUpRecent)) {
		http.Redirect(w, r, "/auth/stepup?next="+url.QueryEscape(here), http.StatusSeeOther)
		return nil, nil
	}
	return ss, u
}

func (s *Service) servePassword(w http.ResponseWriter, r *http.Request) {
	if ss, u := s.recentSession(w, r, "/auth/password"); ss != nil {
		s.render(w, r, http.StatusOK, "password", page{Title: "Change your password", User: u.Name})
	}
}

// postPassword changes the password: the current one again (throttled
// like a login), then the new one twice. Every session of the user ends,
// this one too: the person logs in again.
func (s *Service) postPassword(w http.ResponseWriter, r *http.Request) {
	ss, u := s.recentSession(w, r, "/auth/password")
	if ss == nil {
		return
	}
	ctx := r.Context()
	src := s.source(r)
	p := page{Title: "Change your password", User: u.Name}
	if !checkCSRF(r) {
		p.Error = "The form expired. Please try again."
		s.render(w, r, http.StatusForbidden, "password", p)
		return
	}
	if err := s.throttled(ctx, ActionPassword, u.ID, u.Name, src); err != nil {
		s.fail(w, r, "password", p, err)
		return
	}
	if !s.checkPassword(u, r.PostFormValue("password")) {
		s.throttle.fail(s.accountKey(u.Name), sourceKey(src))
		s.record(ctx, Event{Action: ActionPassword, Outcome: OutcomeFailure, User: u.ID, Session: ss.ID, Source: src})
		p.Error = "The current password is wrong."
		s.fail(w, r, "password", p, errCode)
		return
	}
	pw := r.PostFormValue("new-password")
	if pw != r.PostFormValue("new-password2") {
		p.Error = "The two new passwords differ."
		s.render(w, r, http.StatusBadRequest, "password", p)
		return
	}
	if err := s.SetPassword(ctx, u.ID, pw); err != nil {
		s.fail(w, r, "password", p, err)
		return
	}
	clearSession(w)
	http.Redirect(w, r, "/auth/login", http.StatusSeeOther)
}
