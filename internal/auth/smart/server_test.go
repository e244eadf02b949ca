package smart

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"

	"github.com/ehrvault/ehrvault/internal/auth"
	"github.com/ehrvault/ehrvault/internal/auth/dpop/dpoptest"
)

func TestHappyPath(t *testing.T) {
	e := newEnv(t)
	verifier, challenge := pkce()
	p := e.authzParams(challenge)

	// No session: to the login page, which comes back here.
	w := e.do("GET", PathAuthorize+"?"+p.Encode(), nil, nil)
	loc := w.Header().Get("Location")
	if w.Code != http.StatusSeeOther || !strings.HasPrefix(loc, "/login?next=") {
		t.Fatalf("authorize without session: %d Location %q, want 303 to the login page", w.Code, loc)
	}
	if next, _ := url.Parse(loc); !strings.HasPrefix(next.Query().Get("next"), PathAuthorize+"?") {
		t.Errorf("login next = %q, want the authorize URL", next.Query().Get("next"))
	}

	// The consent page lists the scopes in words and asks for the patient.
	w = e.do("GET", PathAuthorize+"?"+p.Encode(), nil, cookie("sess-1"))
	body := w.Body.String()
	for _, want := range []string{`id="approve"`, `id="deny"`, `id="patient"`, "Lab viewer", "Read and search Observation records of the selected patient"} {
		if !strings.Contains(body, want) {
			t.Errorf("consent page lacks %q", want)
		}
	}
	if w.Header().Get("X-Frame-Options") != "DENY" {
		t.Errorf("consent page X-Frame-Options = %q, want DENY", w.Header().Get("X-Frame-Options"))
	}
	q := e.approve(p, "sess-1", csrfRE.FindStringSubmatch(body)[1], "pat-1")

	a := e.exchange(q.Get("code"), verifier, e.dkey)
	if a.status != 200 || a.TokenType != "DPoP" || a.RefreshToken == "" || a.Patient != "pat-1" || a.ExpiresIn != 300 {
		t.Fatalf("exchange = %+v, want 200 DPoP with refresh, patient pat-1, 300 s", a)
	}
	if got := a.Scope; got != "launch/patient offline_access patient/Observation.rs patient/Patient.r" {
		t.Errorf("scope = %q", got)
	}
	pr, err := e.authn(a.AccessToken, e.dkey)
	if err != nil {
		t.Fatalf("Authenticate: %v", err)
	}
	if pr.Kind != auth.KindUser || pr.User != "u-clin" || pr.Role != auth.RoleClinician || pr.Client != e.app.ID ||
		pr.Device != "dev-laptop-1" || pr.Session != "sess-1" || pr.Patient != "pat-1" || !strings.HasPrefix(pr.ID, "at_") ||
		len(pr.Factors) != 2 {
		t.Errorf("principal = %+v", pr)
	}
	ss := ScopesOf(pr)
	if !ss.Permits(ContextPatient, "Observation", 's') || ss.Permits(ContextPatient, "Observation", 'c') || ss.Permits(ContextUser, "Encounter", 'r') {
		t.Errorf("Permits of %v wrong", pr.Scopes)
	}

	// Refresh rotates.
	b := e.token(url.Values{"grant_type": {"refresh_token"}, "refresh_token": {a.RefreshToken}, "client_id": {e.app.ID}}, e.dkey)
	if b.status != 200 || b.RefreshToken == "" || b.RefreshToken == a.RefreshToken || b.AccessToken == a.AccessToken {
		t.Fatalf("refresh = %+v, want new tokens", b)
	}
	if _, err := e.authn(b.AccessToken, e.dkey); err != nil {
		t.Fatalf("Authenticate refreshed token: %v", err)
	}
	// Revoking the refresh token revokes its family.
	w = e.do("POST", PathRevoke, url.Values{"token": {b.RefreshToken}, "client_id": {e.app.ID}}, nil)
	if w.Code != 200 {
		t.Fatalf("revoke: %d %s", w.Code, w.Body)
	}
	for _, tok := range []string{a.AccessToken, b.AccessToken} {
		if _, err := e.authn(tok, e.dkey); !errors.Is(err, auth.ErrUnauthenticated) {
			t.Errorf("Authenticate after revoke = %v, want ErrUnauthenticated", err)
		}
	}
	for _, ev := range []string{ActionAuthorize, ActionTokenIssue, ActionTokenRefresh, ActionTokenRevoke} {
		if !e.rec.has(ev, OutcomeSuccess) {
			t.Errorf("no %s success recorded", ev)
		}
	}
	for _, ev := range e.rec.list {
		for _, secret := range []string{a.AccessToken, a.RefreshToken, q.Get("code"), verifier} {
			if strings.Contains(ev.Reason+ev.Token+ev.Principal, secret) {
				t.Errorf("event %+v holds a secret", ev)
			}
		}
	}
}

func TestAuthenticateRefuses(t *testing.T) {
	e := newEnv(t)
	a := e.userTokens()
	tok := a.AccessToken
	other := dpoptest.NewKey()
	e.devs.enrol(other.JKT, "dev-other") // even an enrolled device may not use another's token
	const path = "/fhir/Observation"
	now := e.clock()
	replayed := e.dkey.Proof("GET", issuer+path, tok, now)
	if _, err := e.srv.Authenticate(fhirReq("GET", path, "DPoP", tok, replayed)); err != nil {
		t.Fatalf("first use: %v", err)
	}
	tests := []struct {
		name string
		r    *httptest_req
		code string
	}{
		{"no token", req("GET", path, "", "", ""), CodeInvalidToken},
		{"no proof", req("GET", path, "DPoP", tok, ""), CodeInvalidProof},
		{"sent as Bearer", req("GET", path, "Bearer", tok, e.dkey.Proof("GET", issuer+path, tok, now)), CodeInvalidToken},
		{"proof by another device", req("GET", path, "DPoP", tok, other.Proof("GET", issuer+path, tok, now)), CodeInvalidProof},
		{"replayed proof", req("GET", path, "DPoP", tok, replayed), CodeInvalidProof},
		{"proof for another method", req("GET", path, "DPoP", tok, e.dkey.Proof("POST", issuer+path, tok, now)), CodeInvalidProof},
		{"proof for another URL", req("GET", path, "DPoP", tok, e.dkey.Proof("GET", issuer+"/fhir/Patient", tok, now)), CodeInvalidProof},
		{"proof without ath", req("GET", path, "DPoP", tok, e.dkey.Proof("GET", issuer+path, "", now)), CodeInvalidProof},
		{"unknown token", req("GET", path, "DPoP", AccessTokenPrefix+strings.Repeat("A", 43), e.dkey.Proof("GET", issuer+path, AccessTokenPrefix+strings.Repeat("A", 43), now)), CodeInvalidToken},
		{"refresh token as access token", req("GET", path, "DPoP", a.RefreshToken, e.dkey.Proof("GET", issuer+path, a.RefreshToken, now)), CodeInvalidToken},
	}
	for _, tt := range tests {
		_, err := e.srv.Authenticate(tt.r.Request)
		var ae *AuthError
		if !errors.Is(err, auth.ErrUnauthenticated) || !errors.As(err, &ae) || ae.Code != tt.code {
			t.Errorf("%s: Authenticate = %v, want %s", tt.name, err, tt.code)
			continue
		}
		if strings.Contains(err.Error(), tok) || strings.Contains(ae.Challenge(), tok) {
			t.Errorf("%s: error holds the token", tt.name)
		}
	}
	if !e.rec.has(ActionAuthFailure, OutcomeDenied) {
		t.Errorf("no authentication failure recorded")
	}
}

type httptest_req struct{ *http.Request }

func req(method, path, scheme, token, proof string) *httptest_req {
	return &httptest_req{fhirReq(method, path, scheme, token, proof)}
}

func TestTokenDiesWith(t *testing.T) {
	tests := []struct {
		name string
		kill func(e *env, a tokenAnswer)
	}{
		{"expiry", func(e *env, a tokenAnswer) { e.advance(5*time.Minute + time.Second) }},
		{"device revoked", func(e *env, a tokenAnswer) { e.devs.revoke(e.dkey.JKT) }},
		{"session ended", func(e *env, a tokenAnswer) { e.sess.end("sess-1") }},
		{"revocation", func(e *env, a tokenAnswer) {
			e.do("POST", PathRevoke, url.Values{"token": {a.AccessToken}, "client_id": {e.app.ID}}, nil)
		}},
		{"client removed", func(e *env, a tokenAnswer) {
			e.srv.Clients().Remove(context.Background(), e.app.ID)
			e.advance(CacheTTL) // another process's removal bites within CacheTTL
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t)
			a := e.userTokens()
			if _, err := e.authn(a.AccessToken, e.dkey); err != nil {
				t.Fatalf("Authenticate before: %v", err)
			}
			tt.kill(e, a)
			// At once: the verification cache does not keep it alive.
			_, err := e.authn(a.AccessToken, e.dkey)
			var ae *AuthError
			if !errors.As(err, &ae) || ae.Code != CodeInvalidToken {
				t.Errorf("Authenticate after %s = %v, want invalid_token", tt.name, err)
			}
			if tt.name == "device revoked" || tt.name == "session ended" {
				b := e.token(url.Values{"grant_type": {"refresh_token"}, "refresh_token": {a.RefreshToken}, "client_id": {e.app.ID}}, e.dkey)
				if b.status != 400 {
					t.Errorf("refresh after %s = %d %+v, want refused", tt.name, b.status, b)
				}
			}
		})
	}
}

func TestRefreshReuseRevokesFamily(t *testing.T) {
	e := newEnv(t)
	a := e.userTokens()
	refresh := func(rt string) tokenAnswer {
		return e.token(url.Values{"grant_type": {"refresh_token"}, "refresh_token": {rt}, "client_id": {e.app.ID}}, e.dkey)
	}
	b := refresh(a.RefreshToken)
	if b.status != 200 {
		t.Fatalf("refresh: %+v", b)
	}
	if c := refresh(a.RefreshToken); c.status != 400 || c.Error != "invalid_grant" {
		t.Fatalf("reuse of the rotated refresh token = %d %s, want invalid_grant", c.status, c.Error)
	}
	if c := refresh(b.RefreshToken); c.status != 400 {
		t.Errorf("the newest refresh token after reuse = %d, want refused (family revoked)", c.status)
	}
	for _, tok := range []string{a.AccessToken, b.AccessToken} {
		if _, err := e.authn(tok, e.dkey); err == nil {
			t.Errorf("an access token of the revoked family still works")
		}
	}
	if !e.rec.has(ActionTokenRevoke, OutcomeDenied) {
		t.Errorf("family revocation not recorded")
	}
	// A refresh with another key is refused, even an enrolled one.
	e2 := newEnv(t)
	a2 := e2.userTokens()
	k := dpoptest.NewKey()
	e2.devs.enrol(k.JKT, "dev-2")
	if c := e2.token(url.Values{"grant_type": {"refresh_token"}, "refresh_token": {a2.RefreshToken}, "client_id": {e2.app.ID}}, k); c.Error != "invalid_dpop_proof" {
		t.Errorf("refresh with another key = %+v, want invalid_dpop_proof", c)
	}
}

func TestPKCE(t *testing.T) {
	e := newEnv(t)
	_, challenge := pkce()
	for name, mod := range map[string]func(url.Values){
		"missing":        func(p url.Values) { p.Del("code_challenge"); p.Del("code_challenge_method") },
		"plain":          func(p url.Values) { p.Set("code_challenge_method", "plain") },
		"no method":      func(p url.Values) { p.Del("code_challenge_method") },
		"short":          func(p url.Values) { p.Set("code_challenge", "abc") },
		"wrong aud":      func(p url.Values) { p.Set("aud", "https://evil.example.org/fhir") },
		"no state":       func(p url.Values) { p.Del("state") },
		"token response": func(p url.Values) { p.Set("response_type", "token") },
	} {
		p := e.authzParams(challenge)
		mod(p)
		w := e.do("GET", PathAuthorize+"?"+p.Encode(), nil, cookie("sess-1"))
		u, _ := url.Parse(w.Header().Get("Location"))
		if w.Code != http.StatusSeeOther || !strings.HasPrefix(u.String(), appCB) || u.Query().Get("error") == "" || u.Query().Get("code") != "" {
			t.Errorf("%s: %d Location %q, want an error redirect", name, w.Code, u)
		}
		if name == "missing" || name == "plain" {
			if u.Query().Get("error") != "invalid_request" {
				t.Errorf("%s: error %q, want invalid_request", name, u.Query().Get("error"))
			}
		}
	}
	code, verifier := e.code()
	for name, v := range map[string]string{"wrong verifier": verifier[:len(verifier)-1] + "x", "no verifier": "", "the challenge itself": challenge} {
		if a := e.exchange(code, v, e.dkey); a.status != 400 || a.Error != "invalid_grant" {
			t.Errorf("%s: exchange = %d %s, want invalid_grant", name, a.status, a.Error)
		}
	}
}

func TestCodeSingleUse(t *testing.T) {
	e := newEnv(t)
	code, verifier := e.code()
	a := e.exchange(code, verifier, e.dkey)
	if a.status != 200 {
		t.Fatalf("first exchange: %+v", a)
	}
	if b := e.exchange(code, verifier, e.dkey); b.status != 400 || b.Error != "invalid_grant" {
		t.Fatalf("second exchange = %d %s, want invalid_grant", b.status, b.Error)
	}
	if _, err := e.authn(a.AccessToken, e.dkey); err == nil {
		t.Errorf("token from a reused code still works")
	}
	if c := e.token(url.Values{"grant_type": {"refresh_token"}, "refresh_token": {a.RefreshToken}, "client_id": {e.app.ID}}, e.dkey); c.status != 400 {
		t.Errorf("refresh token from a reused code = %d, want refused", c.status)
	}
	// A code expires after 60 s.
	code, verifier = e.code()
	e.advance(CodeTTL + time.Second)
	if b := e.exchange(code, verifier, e.dkey); b.Error != "invalid_grant" {
		t.Errorf("late exchange = %+v, want invalid_grant", b)
	}
}

func TestTokenEndpointNeedsDPoP(t *testing.T) {
	e := newEnv(t)
	code, verifier := e.code()
	if a := e.exchange(code, verifier, nil); a.status != 400 || a.Error != "invalid_dpop_proof" {
		t.Errorf("exchange without proof = %d %s, want invalid_dpop_proof", a.status, a.Error)
	}
	// A key that is not an enrolled device gets no person's token.
	code, verifier = e.code()
	if a := e.exchange(code, verifier, dpoptest.NewKey()); a.status != 400 || a.Error != "invalid_dpop_proof" || a.AccessToken != "" {
		t.Errorf("exchange with unenrolled key = %+v, want invalid_dpop_proof", a)
	}
	// Another client cannot redeem the app's code; nor with another redirect_uri.
	code, verifier = e.code()
	f := url.Values{"grant_type": {"authorization_code"}, "code": {code}, "redirect_uri": {appCB + "/x"}, "code_verifier": {verifier}, "client_id": {e.app.ID}}
	if a := e.token(f, e.dkey); a.Error != "invalid_grant" {
		t.Errorf("exchange with another redirect_uri = %+v, want invalid_grant", a)
	}
}

func TestRedirectURIMismatch(t *testing.T) {
	e := newEnv(t)
	_, challenge := pkce()
	for _, bad := range []string{"https://evil.example.com/callback", appCB + "/", appCB + "?x=1", "https://APP.example.com/callback"} {
		p := e.authzParams(challenge)
		p.Set("redirect_uri", bad)
		w := e.do("GET", PathAuthorize+"?"+p.Encode(), nil, cookie("sess-1"))
		if w.Code != http.StatusBadRequest || w.Header().Get("Location") != "" {
			t.Errorf("redirect_uri %q: %d Location %q, want 400 and no redirect", bad, w.Code, w.Header().Get("Location"))
		}
	}
	p := e.authzParams(challenge)
	p.Set("client_id", "app_nobody")
	if w := e.do("GET", PathAuthorize+"?"+p.Encode(), nil, cookie("sess-1")); w.Code != 400 || w.Header().Get("Location") != "" {
		t.Errorf("unknown client: %d, want 400 and no redirect", w.Code)
	}
}

func TestConsentCSRF(t *testing.T) {
	e := newEnv(t)
	e.sess.add("sess-2", &auth.Principal{Kind: auth.KindUser, User: "u-other", Role: auth.RoleNurse})
	_, challenge := pkce()
	p := e.authzParams(challenge)
	otherCSRF := e.consentCSRF(p, "sess-2")
	for name, csrf := range map[string]string{"none": "", "wrong": "AAAA", "another session's": otherCSRF} {
		f := url.Values{}
		for k, v := range p {
			f[k] = v
		}
		f.Set("decision", "approve")
		f.Set("patient", "pat-1")
		if csrf != "" {
			f.Set("csrf", csrf)
		}
		w := e.do("POST", PathAuthorize, f, cookie("sess-1"))
		if w.Code != http.StatusForbidden || strings.Contains(w.Header().Get("Location"), "code=") {
			t.Errorf("csrf %s: %d Location %q, want 403 and no code", name, w.Code, w.Header().Get("Location"))
		}
	}
	// Deny: access_denied.
	f := url.Values{}
	for k, v := range p {
		f[k] = v
	}
	f.Set("csrf", e.consentCSRF(p, "sess-1"))
	f.Set("decision", "deny")
	w := e.do("POST", PathAuthorize, f, cookie("sess-1"))
	u, _ := url.Parse(w.Header().Get("Location"))
	if u.Query().Get("error") != "access_denied" || u.Query().Get("state") != "st-1" || u.Query().Get("code") != "" {
		t.Errorf("deny: Location %q, want error=access_denied with state", u)
	}
}

func TestPatientRole(t *testing.T) {
	e := newEnv(t)
	e.sess.add("sess-p", &auth.Principal{Kind: auth.KindUser, User: "u-pat", Role: auth.RolePatient, Patient: "pat-self"})
	verifier, challenge := pkce()
	p := e.authzParams(challenge)
	w := e.do("GET", PathAuthorize+"?"+p.Encode(), nil, cookie("sess-p"))
	if strings.Contains(w.Body.String(), `id="patient"`) {
		t.Errorf("a patient is asked to pick a patient")
	}
	// Even a forged patient field cannot name another patient.
	q := e.approve(p, "sess-p", csrfRE.FindStringSubmatch(w.Body.String())[1], "pat-1")
	a := e.exchange(q.Get("code"), verifier, e.dkey)
	if a.Patient != "pat-self" {
		t.Errorf("patient in context = %q, want pat-self", a.Patient)
	}
	// A clinician who names no patient is asked again.
	f := url.Values{}
	for k, v := range p {
		f[k] = v
	}
	f.Set("csrf", e.consentCSRF(p, "sess-1"))
	f.Set("decision", "approve")
	if w := e.do("POST", PathAuthorize, f, cookie("sess-1")); w.Code != 400 || w.Header().Get("Location") != "" {
		t.Errorf("approve without a patient: %d, want 400 and the page again", w.Code)
	}
}

func TestScopeEscalation(t *testing.T) {
	e := newEnv(t)
	// The app asks for more than it is registered for: it gets the allowed part.
	verifier, challenge := pkce()
	p := e.authzParams(challenge)
	p.Set("scope", "patient/*.cruds user/*.cruds launch/patient offline_access")
	q := e.approve(p, "sess-1", e.consentCSRF(p, "sess-1"), "pat-1")
	a := e.exchange(q.Get("code"), verifier, e.dkey)
	if a.Scope != "launch/patient offline_access patient/Observation.rs patient/Patient.r user/Encounter.rs" {
		t.Errorf("granted %q", a.Scope)
	}
	pr, err := e.authn(a.AccessToken, e.dkey)
	if err != nil {
		t.Fatal(err)
	}
	ss := ScopesOf(pr)
	for _, c := range []struct {
		ctx, typ string
		i        byte
	}{{ContextPatient, "Observation", 'c'}, {ContextPatient, "Condition", 'r'}, {ContextUser, "Encounter", 'u'}, {ContextSystem, "Patient", 'r'}} {
		if ss.Permits(c.ctx, c.typ, c.i) {
			t.Errorf("Permits(%s, %s, %c) = true for ungranted %v", c.ctx, c.typ, c.i, pr.Scopes)
		}
	}
	// Nothing allowed: invalid_scope.
	p.Set("scope", "patient/Condition.rs")
	w := e.do("GET", PathAuthorize+"?"+p.Encode(), nil, cookie("sess-1"))
	if u, _ := url.Parse(w.Header().Get("Location")); u.Query().Get("error") != "invalid_scope" {
		t.Errorf("no allowed scope: Location %q, want invalid_scope", u)
	}
	// A refresh cannot widen scopes.
	b := e.token(url.Values{"grant_type": {"refresh_token"}, "refresh_token": {a.RefreshToken}, "client_id": {e.app.ID}, "scope": {"patient/*.cruds"}}, e.dkey)
	if b.status != 200 || b.Scope != "patient/Observation.rs patient/Patient.r" {
		t.Errorf("refresh asking patient/*.cruds = %d %q %s %s, want the held patient scopes only", b.status, b.Scope, b.Error, b.Desc)
	}
	// A service asks for more than allowed.
	k := dpoptest.NewKey()
	c := e.token(url.Values{"grant_type": {"client_credentials"}, "scope": {"system/*.cruds"}, "client_assertion_type": {assertionType},
		"client_assertion": {e.assertion(e.svc, e.svcKey, nil)}}, k)
	if c.status != 200 || c.Scope != "system/Observation.rs system/Patient.r" {
		t.Errorf("service asking system/*.cruds = %d %q", c.status, c.Scope)
	}
	c = e.token(url.Values{"grant_type": {"client_credentials"}, "scope": {"user/Patient.r"}, "client_assertion_type": {assertionType},
		"client_assertion": {e.assertion(e.svc, e.svcKey, nil)}}, k)
	if c.Error != "invalid_scope" {
		t.Errorf("service asking user/ scopes = %+v, want invalid_scope", c)
	}
}

func TestBackendService(t *testing.T) {
	e := newEnv(t)
	k := dpoptest.NewKey() // not an enrolled device: services need none
	grant := func(assertion string) tokenAnswer {
		return e.token(url.Values{"grant_type": {"client_credentials"}, "scope": {"system/Observation.rs"},
			"client_assertion_type": {assertionType}, "client_assertion": {assertion}}, k)
	}
	a := grant(e.assertion(e.svc, e.svcKey, nil))
	if a.status != 200 || a.TokenType != "DPoP" || a.RefreshToken != "" {
		t.Fatalf("client_credentials = %+v", a)
	}
	pr, err := e.authn(a.AccessToken, k)
	if err != nil || pr.Kind != auth.KindService || pr.Client != e.svc.ID || pr.User != "" {
		t.Fatalf("Authenticate service token = %+v, %v", pr, err)
	}
	if a := grant(e.assertion(e.svc, e.svcKey, nil)); a.status != 200 {
		t.Errorf("second assertion with a new jti: %+v", a)
	}

	otherKey, _ := e.addService(ClientService, []string{"system/Patient.r"}, nil)
	replay := e.assertion(e.svc, e.svcKey, nil)
	grant(replay)
	tests := []struct {
		name      string
		assertion string
	}{
		{"alg none", noneJWT(e)},
		{"HS256 with the public key as secret", hs256JWT(e)},
		{"expired", e.assertion(e.svc, e.svcKey, func(c *jwt.Claims) { c.Expiry = jwt.NewNumericDate(e.clock().Add(-time.Second)) })},
		{"exp too far ahead", e.assertion(e.svc, e.svcKey, func(c *jwt.Claims) { c.Expiry = jwt.NewNumericDate(e.clock().Add(10 * time.Minute)) })},
		{"no exp", e.assertion(e.svc, e.svcKey, func(c *jwt.Claims) { c.Expiry = nil })},
		{"wrong aud", e.assertion(e.svc, e.svcKey, func(c *jwt.Claims) { c.Audience = jwt.Audience{issuer + "/token"} })},
		{"replayed jti", replay},
		{"no jti", e.assertion(e.svc, e.svcKey, func(c *jwt.Claims) { c.ID = "" })},
		{"sub differs", e.assertion(e.svc, e.svcKey, func(c *jwt.Claims) { c.Subject = "svc_other" })},
		{"signed by another client's key", e.assertion(e.svc, otherKey, nil)},
		{"garbage", "not.a.jwt"},
	}
	for _, tt := range tests {
		a := grant(tt.assertion)
		if a.status != 401 || a.Error != "invalid_client" || a.AccessToken != "" {
			t.Errorf("%s: %d %s %s, want 401 invalid_client", tt.name, a.status, a.Error, a.Desc)
		}
	}
	// Without DPoP.
	f := url.Values{"grant_type": {"client_credentials"}, "scope": {"system/Observation.rs"},
		"client_assertion_type": {assertionType}, "client_assertion": {e.assertion(e.svc, e.svcKey, nil)}}
	if a := e.token(f, nil); a.Error != "invalid_dpop_proof" {
		t.Errorf("service without proof = %+v, want invalid_dpop_proof", a)
	}
	// A public app cannot use client_credentials.
	if a := e.token(url.Values{"grant_type": {"client_credentials"}, "client_id": {e.app.ID}, "scope": {"patient/Patient.r"}}, k); a.status < 400 {
		t.Errorf("app client_credentials = %+v, want refused", a)
	}
	if !e.rec.has(ActionTokenFailure, OutcomeDenied) {
		t.Errorf("refused token requests not recorded")
	}
}

func b64(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }

func claimsOf(e *env) string {
	c, _ := json.Marshal(map[string]any{"iss": e.svc.ID, "sub": e.svc.ID, "aud": issuer + PathToken,
		"exp": e.clock().Add(time.Minute).Unix(), "jti": randID()})
	return b64(c)
}

func noneJWT(e *env) string {
	h, _ := json.Marshal(map[string]string{"alg": "none", "typ": "JWT", "kid": "k1"})
	return b64(h) + "." + claimsOf(e) + "."
}

// hs256JWT "signs" with the registered public key's bytes as an HMAC key:
// the classic key-confusion attack.
func hs256JWT(e *env) string {
	h, _ := json.Marshal(map[string]string{"alg": "HS256", "typ": "JWT", "kid": "k1"})
	in := b64(h) + "." + claimsOf(e)
	pub, _ := (&jose.JSONWebKey{Key: &e.svcKey.PublicKey}).MarshalJSON()
	m := hmac.New(sha256.New, pub)
	m.Write([]byte(in))
	return in + "." + b64(m.Sum(nil))
}

func TestMedicalDevice(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	js := e.svc.JWKS
	for _, bad := range [][]string{{"system/Observation.rs"}, {"system/Observation.cs"}, {"system/*.c"}, {"patient/Observation.c"}, {"system/Observation.cruds"}} {
		if _, err := e.srv.Clients().Add(ctx, Client{Kind: ClientDevice, Name: "monitor", Scopes: bad, JWKS: js, Patients: []string{"pat-1"}}); err == nil {
			t.Errorf("device with scopes %v registered, want refused", bad)
		}
	}
	if _, err := e.srv.Clients().Add(ctx, Client{Kind: ClientDevice, Name: "monitor", Scopes: []string{"system/Observation.c"}, JWKS: js}); err == nil {
		t.Errorf("device without patients registered")
	}
	key, dev := e.addService(ClientDevice, []string{"system/Observation.c", "system/ImagingStudy.c"}, []string{"pat-7"})
	k := dpoptest.NewKey()
	grant := func(scope string) tokenAnswer {
		return e.token(url.Values{"grant_type": {"client_credentials"}, "scope": {scope},
			"client_assertion_type": {assertionType}, "client_assertion": {e.assertion(dev, key, nil)}}, k)
	}
	if a := grant("system/Observation.rs system/Patient.r"); a.Error != "invalid_scope" {
		t.Errorf("device asking read scopes = %+v, want invalid_scope", a)
	}
	a := grant("system/*.cruds")
	if a.status != 200 || a.Scope != "system/ImagingStudy.c system/Observation.c" || a.Patient != "pat-7" {
		t.Fatalf("device token = %+v", a)
	}
	pr, err := e.authn(a.AccessToken, k)
	if err != nil || pr.Kind != auth.KindDevice || pr.Patient != "pat-7" {
		t.Fatalf("Authenticate device = %+v, %v", pr, err)
	}
	ss := ScopesOf(pr)
	if !ss.Permits(ContextSystem, "Observation", 'c') || ss.Permits(ContextSystem, "Observation", 'r') || ss.Permits(ContextSystem, "Observation", 's') {
		t.Errorf("device Permits wrong for %v", pr.Scopes)
	}
	pats, err := e.srv.AssignedPatients(ctx, pr)
	if err != nil || len(pats) != 1 || pats[0] != "pat-7" {
		t.Errorf("AssignedPatients = %v, %v", pats, err)
	}
}

func TestIntrospect(t *testing.T) {
	e := newEnv(t)
	a := e.userTokens()
	intro := func(tok string, hdr http.Header, form url.Values) (int, map[string]any) {
		if form == nil {
			form = url.Values{}
		}
		form.Set("token", tok)
		w := e.do("POST", PathIntrospect, form, hdr)
		var m map[string]any
		json.Unmarshal(w.Body.Bytes(), &m)
		return w.Code, m
	}
	op := http.Header{"X-Operator": {"yes"}}
	if code, m := intro(a.AccessToken, op, nil); code != 200 || m["active"] != true || m["client_id"] != e.app.ID ||
		m["cnf"].(map[string]any)["jkt"] != e.dkey.JKT || m["patient"] != "pat-1" || m["sub"] != "u-clin" {
		t.Errorf("introspect = %d %v", code, m)
	}
	svc := url.Values{"client_assertion_type": {assertionType}, "client_assertion": {e.assertion(e.svc, e.svcKey, nil)}}
	if code, m := intro(a.RefreshToken, nil, svc); code != 200 || m["active"] != true {
		t.Errorf("introspect refresh by a service = %d %v", code, m)
	}
	if code, _ := intro(a.AccessToken, nil, nil); code != 401 {
		t.Errorf("introspect unauthenticated = %d, want 401", code)
	}
	if code, _ := intro(a.AccessToken, nil, url.Values{"client_id": {e.app.ID}}); code != 401 {
		t.Errorf("introspect by a public app = %d, want 401", code)
	}
	e.devs.revoke(e.dkey.JKT)
	if _, m := intro(a.AccessToken, op, nil); m["active"] != false {
		t.Errorf("introspect after device revoked = %v, want inactive", m)
	}
	if _, m := intro("ehsa_nothing", op, nil); m["active"] != false || len(m) != 1 {
		t.Errorf("introspect unknown = %v", m)
	}
}

func TestRevokeOthersToken(t *testing.T) {
	e := newEnv(t)
	a := e.userTokens()
	other, err := e.srv.Clients().Add(context.Background(), Client{Kind: ClientApp, Name: "Other", RedirectURIs: []string{appCB}, Scopes: []string{"patient/Patient.r"}})
	if err != nil {
		t.Fatal(err)
	}
	if w := e.do("POST", PathRevoke, url.Values{"token": {a.AccessToken}, "client_id": {other.ID}}, nil); w.Code != 200 {
		t.Errorf("revoke by another client: %d, want 200 (RFC 7009) and no effect", w.Code)
	}
	if _, err := e.authn(a.AccessToken, e.dkey); err != nil {
		t.Errorf("another client revoked the token: %v", err)
	}
}

func TestIssueFailsClosedWithoutRecord(t *testing.T) {
	e := newEnv(t)
	code, verifier := e.code()
	e.rec.mu.Lock()
	e.rec.fail = true
	e.rec.mu.Unlock()
	if a := e.exchange(code, verifier, e.dkey); a.status != 500 || a.AccessToken != "" {
		t.Errorf("exchange with a failing recorder = %+v, want 500 and no token", a)
	}
}

func TestConfiguration(t *testing.T) {
	e := newEnv(t)
	w := e.do("GET", PathConfiguration, nil, nil)
	var doc map[string]any
	if err := json.Unmarshal(w.Body.Bytes(), &doc); err != nil || w.Code != 200 {
		t.Fatalf("smart-configuration: %d %v", w.Code, err)
	}
	want := map[string]string{"issuer": issuer, "authorization_endpoint": issuer + PathAuthorize, "token_endpoint": issuer + PathToken,
		"introspection_endpoint": issuer + PathIntrospect, "revocation_endpoint": issuer + PathRevoke,
		"jwks_uri": issuer + PathJWKS}
	for k, v := range want {
		if doc[k] != v {
			t.Errorf("%s = %v, want %s", k, doc[k], v)
		}
	}
	list := func(k string) string {
		var out []string
		for _, x := range doc[k].([]any) {
			out = append(out, x.(string))
		}
		return strings.Join(out, " ")
	}
	if list("code_challenge_methods_supported") != "S256" || !strings.Contains(list("capabilities"), "permission-v2") ||
		strings.Contains(list("dpop_signing_alg_values_supported"), "HS") || strings.Contains(list("token_endpoint_auth_signing_alg_values_supported"), "none") {
		t.Errorf("smart-configuration = %v", doc)
	}
	for k, v := range map[string]string{"capabilities": "sso-openid-connect", "scopes_supported": "openid fhirUser"} {
		if !strings.Contains(" "+list(k)+" ", " "+v+" ") {
			t.Errorf("smart-configuration %s = %q, want it to hold %q", k, list(k), v)
		}
	}
}

// TestConcurrentRedemption: of two simultaneous uses of one code, or of
// one refresh token, at most one gets tokens.
func TestConcurrentRedemption(t *testing.T) {
	e := newEnv(t)
	code, verifier := e.code()
	a := e.userTokens()
	for name, form := range map[string]url.Values{
		"code":    {"grant_type": {"authorization_code"}, "code": {code}, "redirect_uri": {appCB}, "code_verifier": {verifier}, "client_id": {e.app.ID}},
		"refresh": {"grant_type": {"refresh_token"}, "refresh_token": {a.RefreshToken}, "client_id": {e.app.ID}},
	} {
		results := make(chan int, 4)
		for i := 0; i < 4; i++ {
			go func() {
				h := http.Header{"Dpop": {e.dkey.Proof("POST", issuer+PathToken, "", e.clock())}}
				results <- e.do("POST", PathToken, form, h).Code
			}()
		}
		ok := 0
		for i := 0; i < 4; i++ {
			if <-results == 200 {
				ok++
			}
		}
		if ok > 1 {
			t.Errorf("%s: %d concurrent redemptions succeeded, want at most 1", name, ok)
		}
	}
}

// The consent page's form-action lets the answer reach the app: browsers
// check the redirect after the form post against it.
func TestConsentFormAction(t *testing.T) {
	e := newEnv(t)
	_, challenge := pkce()
	w := e.do("GET", PathAuthorize+"?"+e.authzParams(challenge).Encode(), nil, cookie("sess-1"))
	if w.Code != http.StatusOK {
		t.Fatalf("consent page: %d", w.Code)
	}
	if csp := w.Header().Get("Content-Security-Policy"); !strings.Contains(csp, "form-action 'self' https://app.example.com;") {
		t.Errorf("consent page CSP %q, want form-action 'self' and the app's origin", csp)
	}
	for in, want := range map[string]string{
		"https://app.example.com:8443/cb?x=1": "'self' https://app.example.com:8443",
		"http://127.0.0.1:5000/callback":      "'self' http://127.0.0.1:5000",
		"http://[::1]:5000/callback":          "'self' http:",
		"org.example.app:/callback":           "'self' org.example.app:",
	} {
		if got := formAction(in); got != want {
			t.Errorf("formAction(%q) = %q, want %q", in, got, want)
		}
	}
}
