package smart

import (
	"context"
	"crypto"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"

	"github.com/ehrvault/ehrvault/internal/auth"
)

// jwks fetches the server's JWK Set and checks its one key.
func (e *env) jwks(srv *Server) jose.JSONWebKey {
	e.t.Helper()
	old := e.srv
	e.srv = srv
	w := e.do("GET", PathJWKS, nil, nil)
	e.srv = old
	var set jose.JSONWebKeySet
	if err := json.Unmarshal(w.Body.Bytes(), &set); err != nil || w.Code != 200 {
		e.t.Fatalf("jwks: %d %s: %v", w.Code, w.Body, err)
	}
	if len(set.Keys) != 1 {
		e.t.Fatalf("jwks holds %d keys, want 1", len(set.Keys))
	}
	k := set.Keys[0]
	pub, ok := k.Key.(*rsa.PublicKey)
	if !ok || !k.IsPublic() || pub.N.BitLen() < 2048 || k.Algorithm != "RS256" || k.Use != "sig" {
		e.t.Fatalf("jwks key = %+v, want a public RSA 2048 key, alg RS256, use sig", k)
	}
	if strings.Contains(w.Body.String(), `"d"`) || strings.Contains(w.Body.String(), `"p"`) {
		e.t.Fatalf("jwks exposes private key material: %s", w.Body)
	}
	sum, _ := k.Thumbprint(crypto.SHA256)
	if k.KeyID != base64.RawURLEncoding.EncodeToString(sum) {
		e.t.Fatalf("jwks kid = %q, want the RFC 7638 thumbprint", k.KeyID)
	}
	return k
}

// verifyIDToken checks idt's signature against key and returns its claims.
func verifyIDToken(t *testing.T, idt string, key jose.JSONWebKey) map[string]any {
	t.Helper()
	tok, err := jwt.ParseSigned(idt, []jose.SignatureAlgorithm{jose.RS256})
	if err != nil {
		t.Fatalf("id_token: %v", err)
	}
	if h := tok.Headers[0]; h.Algorithm != "RS256" || h.KeyID != key.KeyID {
		t.Fatalf("id_token header alg %q kid %q, want RS256 and %q", h.Algorithm, h.KeyID, key.KeyID)
	}
	var claims map[string]any
	if err := tok.Claims(key.Key, &claims); err != nil {
		t.Fatalf("id_token does not verify with the JWKS key: %v", err)
	}
	return claims
}

// openidCode runs authorize and consent with scope and nonce for sid.
func (e *env) openidCode(sid, scope, nonce, patient string) (code, verifier string) {
	e.t.Helper()
	verifier, challenge := pkce()
	p := e.authzParams(challenge)
	p.Set("scope", scope)
	if nonce != "" {
		p.Set("nonce", nonce)
	}
	q := e.approve(p, sid, e.consentCSRF(p, sid), patient)
	if q.Get("code") == "" {
		e.t.Fatalf("approve: %v", q)
	}
	return q.Get("code"), verifier
}

func TestIDToken(t *testing.T) {
	e := newEnv(t)
	login := e.clock()
	e.advance(time.Minute)
	code, v := e.openidCode("sess-1", "openid fhirUser launch/patient patient/Observation.rs offline_access", "n-0S6_WzA2Mj", "pat-1")
	a := e.exchange(code, v, e.dkey)
	if a.status != 200 || a.IDToken == "" {
		t.Fatalf("exchange = %+v, want 200 with an id_token", a)
	}
	if !strings.Contains(" "+a.Scope+" ", " openid ") || !strings.Contains(" "+a.Scope+" ", " fhirUser ") {
		t.Errorf("scope = %q, want openid and fhirUser granted", a.Scope)
	}
	c := verifyIDToken(t, a.IDToken, e.jwks(e.srv))
	now := e.clock()
	want := map[string]any{"iss": issuer, "sub": "u-clin", "aud": e.app.ID, "nonce": "n-0S6_WzA2Mj",
		"iat": float64(now.Unix()), "exp": float64(now.Add(5 * time.Minute).Unix()), "auth_time": float64(login.Unix())}
	for k, v := range want {
		if c[k] != v {
			t.Errorf("id_token %s = %v, want %v", k, c[k], v)
		}
	}
	if _, ok := c["fhirUser"]; ok {
		t.Errorf("id_token of a clinician has fhirUser %v; staff are linked to no resource", c["fhirUser"])
	}
	// Refresh: new tokens, no id_token.
	b := e.token(url.Values{"grant_type": {"refresh_token"}, "refresh_token": {a.RefreshToken}, "client_id": {e.app.ID}}, e.dkey)
	if b.status != 200 || b.IDToken != "" {
		t.Errorf("refresh = %d id_token %q, want 200 without id_token", b.status, b.IDToken)
	}

	// Without openid: no id_token, and no nonce is needed.
	code, v = e.openidCode("sess-1", "fhirUser launch/patient patient/Observation.rs", "", "pat-1")
	if a := e.exchange(code, v, e.dkey); a.status != 200 || a.IDToken != "" {
		t.Errorf("exchange without openid = %d id_token %q, want none", a.status, a.IDToken)
	}
	// Without a nonce: none in the id_token.
	code, v = e.openidCode("sess-1", "openid patient/Observation.rs launch/patient", "", "pat-1")
	a = e.exchange(code, v, e.dkey)
	if c := verifyIDToken(t, a.IDToken, e.jwks(e.srv)); c["nonce"] != nil {
		t.Errorf("nonce = %v, want none", c["nonce"])
	}
	// An overlong nonce is refused at the authorization endpoint.
	_, challenge := pkce()
	p := e.authzParams(challenge)
	p.Set("nonce", strings.Repeat("n", MaxNonce+1))
	w := e.do("GET", PathAuthorize+"?"+p.Encode(), nil, cookie("sess-1"))
	if u, _ := url.Parse(w.Header().Get("Location")); u == nil || u.Query().Get("error") != "invalid_request" || !strings.Contains(u.Query().Get("error_description"), "nonce") {
		t.Errorf("overlong nonce: %d Location %q, want invalid_request naming nonce", w.Code, w.Header().Get("Location"))
	}
}

func TestIDTokenFHIRUser(t *testing.T) {
	e := newEnv(t)
	e.sess.add("sess-p", &auth.Principal{Kind: auth.KindUser, User: "u-pat", Role: auth.RolePatient, Patient: "pat-self"})
	e.sess.add("sess-q", &auth.Principal{Kind: auth.KindUser, User: "u-new", Role: auth.RolePatient})
	key := e.jwks(e.srv)
	for _, c := range []struct {
		sid, scope, want string
	}{
		{"sess-p", "openid fhirUser patient/Observation.rs", fhirBase + "/Patient/pat-self"},
		{"sess-p", "openid patient/Observation.rs", ""},     // fhirUser not asked for
		{"sess-q", "openid fhirUser user/Encounter.rs", ""}, // a patient user linked to no record
		{"sess-1", "openid fhirUser user/Encounter.rs", ""}, // staff
	} {
		code, v := e.openidCode(c.sid, c.scope, "", "")
		a := e.exchange(code, v, e.dkey)
		if a.status != 200 {
			t.Fatalf("%s %q: exchange %d %s: %s", c.sid, c.scope, a.status, a.Error, a.Desc)
		}
		claims := verifyIDToken(t, a.IDToken, key)
		got, _ := claims["fhirUser"].(string)
		if got != c.want {
			t.Errorf("%s %q: fhirUser = %q, want %q", c.sid, c.scope, got, c.want)
		}
		if claims["sub"] != e.sess.byID[c.sid].User {
			t.Errorf("%s: sub = %v", c.sid, claims["sub"])
		}
	}
}

func TestIDTokenNotForServices(t *testing.T) {
	e := newEnv(t)
	a := e.token(url.Values{"grant_type": {"client_credentials"}, "scope": {"openid fhirUser system/Patient.r"},
		"client_assertion_type": {assertionType}, "client_assertion": {e.assertion(e.svc, e.svcKey, nil)}}, e.dkey)
	if a.status != 200 || a.IDToken != "" || a.Scope != "system/Patient.r" {
		t.Errorf("client_credentials with openid = %d scope %q id_token %q, want system/Patient.r only and no id_token", a.status, a.Scope, a.IDToken)
	}
	if _, err := e.srv.Clients().Add(context.Background(), Client{Kind: ClientService, Name: "x", Scopes: []string{"system/Patient.r", "openid"}, JWKS: e.svc.JWKS}); err == nil {
		t.Errorf("a service registered with openid")
	}
}

func TestSigningKeySurvivesRestart(t *testing.T) {
	e := newEnv(t)
	code, v := e.openidCode("sess-1", "openid patient/Observation.rs launch/patient", "", "pat-1")
	a := e.exchange(code, v, e.dkey)
	first := e.jwks(e.srv)
	verifyIDToken(t, a.IDToken, first)

	// A second server on the same store: same key, and it verifies the
	// first's id_token.
	again, err := New(e.srv.cfg)
	if err != nil {
		t.Fatal(err)
	}
	second := e.jwks(again)
	if second.KeyID != first.KeyID {
		t.Fatalf("after restart kid = %q, want %q", second.KeyID, first.KeyID)
	}
	verifyIDToken(t, a.IDToken, second)

	// The record is sealed: it is neither the key nor readable JSON.
	o, err := e.srv.cfg.Store.AuthObject(context.Background(), kindSigning, signingID)
	if err != nil {
		t.Fatal(err)
	}
	if json.Valid(o.Data) || strings.Contains(string(o.Data), "RS256") {
		t.Errorf("signing key record is not sealed")
	}
}

// TestSigningKeyRace: servers starting together on an empty store end up
// with one key.
func TestSigningKeyRace(t *testing.T) {
	e := newEnv(t)
	srvs := make([]*Server, 3)
	for i := range srvs {
		var err error
		if srvs[i], err = New(e.srv.cfg); err != nil {
			t.Fatal(err)
		}
	}
	kids := make([]string, len(srvs))
	var wg sync.WaitGroup
	for i, s := range srvs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			k, err := s.signer(context.Background())
			if err != nil {
				t.Error(err)
				return
			}
			kids[i] = k.kid
		}()
	}
	wg.Wait()
	for _, kid := range kids {
		if kid == "" || kid != kids[0] {
			t.Fatalf("kids = %v, want one key", kids)
		}
	}
	if objs, err := e.srv.cfg.Store.AuthObjects(context.Background(), kindSigning, ""); err != nil || len(objs) != 1 {
		t.Errorf("signing records = %d (%v), want 1", len(objs), err)
	}
}

func TestOpenIDConfiguration(t *testing.T) {
	e := newEnv(t)
	w := e.do("GET", PathOpenIDConfiguration, nil, nil)
	var doc map[string]any
	if err := json.Unmarshal(w.Body.Bytes(), &doc); err != nil || w.Code != 200 {
		t.Fatalf("openid-configuration: %d %v", w.Code, err)
	}
	for k, v := range map[string]string{"issuer": issuer, "authorization_endpoint": issuer + PathAuthorize,
		"token_endpoint": issuer + PathToken, "jwks_uri": issuer + PathJWKS} {
		if doc[k] != v {
			t.Errorf("%s = %v, want %s", k, doc[k], v)
		}
	}
	list := func(k string) string {
		var out []string
		xs, _ := doc[k].([]any)
		for _, x := range xs {
			out = append(out, x.(string))
		}
		return " " + strings.Join(out, " ") + " "
	}
	for k, v := range map[string]string{"response_types_supported": " code ", "subject_types_supported": " public ",
		"id_token_signing_alg_values_supported": " RS256 "} {
		if list(k) != v {
			t.Errorf("%s = %q, want %q", k, list(k), v)
		}
	}
	for _, s := range []string{"openid", "fhirUser"} {
		if !strings.Contains(list("scopes_supported"), " "+s+" ") {
			t.Errorf("scopes_supported = %q lacks %s", list("scopes_supported"), s)
		}
	}
}
