package main

import (
	"context"
	"github.com/ehrvault/ehrvault/internal/records"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ehrvault/ehrvault/internal/auth/smart"
)

// TestIdentityEdge checks, on a server with a rate of 2 requests a
// second per principal and clinicians allowed only from 10.0.0.0/8, the
// rate limit, the allowlist, and (on the server's clock, moved forward)
// the session time-outs (absolute: 1 hour) and the expiry of access
// tokens.
func TestIdentityEdge(t *testing.T) {
	t.Parallel()
	s := newIDServer(t, "--rate-per-principal", "2", "--allow", "role:clinician=10.0.0.0/8", "--absolute-timeout", "1h")
	pats := s.importSynthetic(5, 1)
	op := s.op_()

	t.Run("capability statement names SMART", func(t *testing.T) {
		s.sub(t)
		r := op.get("/metadata").want(t, 200)
		if _, err := records.Parse(r.body); err != nil {
			t.Fatalf("the CapabilityStatement does not validate: %v", err)
		}
		sec := string(r.body)
		for _, want := range []string{`"code":"SMART-on-FHIR"`, "oauth-uris", `"valueUri":"` + s.origin + `/auth/token"`, `"valueUri":"` + s.origin + `/auth/authorize"`} {
			if !strings.Contains(sec, want) {
				t.Errorf("the CapabilityStatement's security lacks %s", want)
			}
		}
	})

	t.Run("rate per principal", func(t *testing.T) {
		s.sub(t)
		var limited *idResponse
		for i := 0; i < 12 && limited == nil; i++ {
			if r := op.get("/Patient/" + pats[0]); r.status == http.StatusTooManyRequests {
				limited = r
			} else {
				r.want(t, 200)
			}
		}
		if limited == nil {
			t.Fatal("12 requests at once by one principal limited at 2/s: never 429")
		}
		if ra, err := strconv.Atoi(limited.header.Get("Retry-After")); err != nil || ra < 1 {
			t.Errorf("Retry-After %q, want whole seconds", limited.header.Get("Retry-After"))
		}
		// Another principal is not held back by the first.
		other, _, err := s.v.tokens.Create(context.Background(), time.Hour, "other")
		if err != nil {
			t.Fatal(err)
		}
		(&cred{s: s, token: other}).get("/Patient/"+pats[0]).want(t, 200)
	})

	t.Run("allowlist", func(t *testing.T) {
		s.sub(t)
		key, _ := s.device("ws-edge")
		app := s.app("Viewer", "user/Patient.rs")
		doc := s.enroll("dr-far", "clinician")
		tok := s.authorize(s.login(doc, "otp", ""), app, "user/Patient.rs", "", key)
		r := (&cred{s: s, token: tok.AccessToken, key: key}).get("/Patient/" + pats[0])
		if r.status != http.StatusForbidden || strings.Contains(string(r.body), pats[0]) {
			t.Errorf("a clinician from 127.0.0.1 (allowed only from 10.0.0.0/8): %d, want 403", r.status)
		}
		nurse := s.enroll("nurse-near", "nurse")
		tok = s.authorize(s.login(nurse, "otp", ""), app, "user/Patient.rs", "", key)
		(&cred{s: s, token: tok.AccessToken, key: key}).get("/Patient/"+pats[0]).want(t, 200)
	})

	t.Run("session timeouts", func(t *testing.T) {
		s.sub(t)
		defer s.offset.Store(0)
		key, _ := s.device("ws-timeouts")
		app := s.app("Night viewer", "user/Patient.rs")
		p := s.enroll("nurse-night", "nurse")
		b := s.login(p, "otp", "")
		tok := s.authorize(b, app, "user/Patient.rs offline_access", "", key)
		refresh := func(rt string) *tokenAnswer {
			return s.tokenRequest(url.Values{"grant_type": {"refresh_token"}, "refresh_token": {rt}, "client_id": {app.ID}}, key)
		}
		s.offset.Store(int64(10 * time.Minute))
		s.page(b, "GET", "/auth/", nil).want(t, 200) // touches the idle timer
		s.offset.Store(int64(24 * time.Minute))
		// Using the session's tokens is activity too...
		second := refresh(tok.RefreshToken)
		if second.status != 200 {
			t.Fatalf("refresh 14 minutes after the browser was last seen: %d %s", second.status, second.body)
		}
		(&cred{s: s, token: second.AccessToken, key: key}).get("/Patient/"+pats[0]).want(t, 200)
		// ... so the browser, away 28 minutes, finds the session alive.
		s.offset.Store(int64(38 * time.Minute))
		s.page(b, "GET", "/auth/", nil).want(t, 200)
		// 16 minutes with neither the browser nor a token: the session
		// ends, for both.
		s.offset.Store(int64(54 * time.Minute))
		if a := refresh(second.RefreshToken); a.status == 200 {
			t.Error("a refresh token works after its session was idle 16 minutes")
		}
		if r := s.page(b, "GET", "/auth/", nil); r.status != 303 || !strings.HasPrefix(r.header.Get("Location"), "/auth/login") {
			t.Errorf("the browser after 16 idle minutes: %d %q, want the login page", r.status, r.header.Get("Location"))
		}
		// The absolute time-out (1h here) ends a session in constant use.
		b = s.login(p, "recovery", p.recovery[0])
		tok = s.authorize(b, app, "user/Patient.rs offline_access", "", key)
		rt := tok.RefreshToken
		for m := 12; m <= 48; m += 12 {
			s.offset.Store(int64(54*time.Minute + time.Duration(m)*time.Minute))
			a := refresh(rt)
			if a.status != 200 {
				t.Fatalf("refresh %d minutes after login, used every 12: %d %s", m, a.status, a.body)
			}
			rt = a.RefreshToken
		}
		s.offset.Store(int64(54*time.Minute + time.Hour + time.Minute))
		if a := refresh(rt); a.status == 200 {
			t.Error("a refresh token works past the session's absolute time-out")
		}
	})

	t.Run("expired token", func(t *testing.T) {
		s.sub(t)
		svc := s.program(smart.ClientService, "Export", "system/Patient.rs")
		tok := s.credentials(svc, "system/Patient.rs")
		if tok.status != 200 {
			t.Fatalf("token: %d %s", tok.status, tok.body)
		}
		me := &cred{s: s, token: tok.AccessToken, key: svc.dpop}
		me.get("/Patient/"+pats[0]).want(t, 200)
		s.offset.Store(int64(smart.DefaultAccessTTL - 2*time.Second))
		defer s.offset.Store(0)
		me.get("/Patient/"+pats[0]).want(t, 200)
		s.offset.Store(int64(smart.DefaultAccessTTL + time.Second))
		r := me.get("/Patient/" + pats[0])
		if r.status != 401 || !strings.Contains(r.header.Get("WWW-Authenticate"), "invalid_token") {
			t.Errorf("an expired token: %d %q, want 401 invalid_token", r.status, r.header.Get("WWW-Authenticate"))
		}
	})

	// Last: it leaves 127.0.0.1 throttled on the login page.
	t.Run("untrusted X-Forwarded-For", func(t *testing.T) {
		s.sub(t)
		b := s.client(true)
		csrf := s.csrf(s.page(b, "GET", "/auth/login", nil).want(t, 200))
		// Without --trusted-proxy a forged header is no new address:
		// failures for several accounts from "several addresses" add up
		// on 127.0.0.1.
		// An address may fail 20 times (a clinic shares one) before it
		// waits; 30 "addresses" must therefore meet the wait.
		throttled := 0
		for i := range 30 {
			r := s.page(b, "POST", "/auth/login", url.Values{"csrf": {csrf}, "username": {"nobody-" + strconv.Itoa(i)}, "password": {"guess guess guess"}},
				"X-Forwarded-For", "10.9.9."+strconv.Itoa(i))
			switch r.status {
			case 429:
				throttled++
			case 401: // not yet, or the wait was over
			default:
				t.Fatalf("attempt %d: %d", i, r.status)
			}
		}
		if throttled == 0 {
			t.Errorf("30 failures for 30 accounts from 127.0.0.1 under forged X-Forwarded-For were never throttled")
		}
	})
}

// BenchmarkIdentityRequest measures a FHIR read through serve's handler
// (in process, no network) with an operator Bearer token, a backend
// service's DPoP-bound SMART token, and a person's (which also asks the
// device registry and the login session on every request). The
// difference between them is the cost of the checks. Not run in CI:
//
//	go test -run '^$' -bench IdentityRequest ./cmd/ehrvault
func BenchmarkIdentityRequest(b *testing.B) {
	s := newIDServer(b, "--rate-per-principal", "0", "--rate-per-address", "0", "--audit-flush-every", "50ms")
	pats := s.importSynthetic(6, 1)
	svc := s.program(smart.ClientService, "Bench", "system/Patient.rs")
	stok := s.credentials(svc, "system/Patient.rs")
	key, _ := s.device("ws-bench")
	app := s.app("Bench app", "user/Patient.rs")
	utok := s.authorize(s.login(s.enroll("bench", "clinician"), "otp", ""), app, "user/Patient.rs", "", key)
	sf := serveFlags{ratePerAddress: 0, ratePerPrincipal: 0, idleTimeout: 15 * time.Minute, absoluteTimeout: 12 * time.Hour, accessTTL: 5 * time.Minute, maxBody: 1 << 20}
	h, err := newHandler(context.Background(), s.v, &sf, s.origin, slog.New(slog.DiscardHandler))
	if err != nil {
		b.Fatal(err)
	}
	path := "/fhir/Patient/" + pats[0]
	for _, bc := range []struct {
		name string
		c    *cred
	}{
		{"operator", s.op_()},
		{"smart-service", &cred{s: s, token: stok.AccessToken, key: svc.dpop}},
		{"smart-user", &cred{s: s, token: utok.AccessToken, key: key}},
	} {
		b.Run(bc.name, func(b *testing.B) {
			for b.Loop() {
				b.StopTimer()
				req := httptest.NewRequest("GET", s.origin+path, nil)
				if bc.c.key == nil {
					req.Header.Set("Authorization", "Bearer "+bc.c.token)
				} else {
					req.Header.Set("Authorization", "DPoP "+bc.c.token)
					req.Header.Set("DPoP", bc.c.key.Proof("GET", s.origin+path, bc.c.token, time.Now()))
				}
				w := httptest.NewRecorder()
				b.StartTimer()
				h.ServeHTTP(w, req)
				if w.Code != 200 {
					b.Fatalf("%s: %d %s", bc.name, w.Code, w.Body)
				}
			}
		})
	}
}
