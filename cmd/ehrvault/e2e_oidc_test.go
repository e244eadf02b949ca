package main

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"

	"github.com/ehrvault/ehrvault/internal/auth/smart"
)

// TestIdentityOpenID: through the real wiring, discovery names the JWK
// Set, the JWK Set is served, and an app granted openid gets an id_token
// that verifies against it.
func TestIdentityOpenID(t *testing.T) {
	s := newIDServer(t)
	get := func(path string) *idResponse {
		req, _ := http.NewRequest("GET", s.origin+path, nil)
		return s.do(s.client(false), req).want(t, 200)
	}
	doc := get(smart.PathOpenIDConfiguration)
	if doc.str("issuer") != s.origin || doc.str("jwks_uri") != s.origin+smart.PathJWKS {
		t.Errorf("openid-configuration issuer %q jwks_uri %q", doc.str("issuer"), doc.str("jwks_uri"))
	}
	if get(smart.PathConfiguration).str("jwks_uri") != s.origin+smart.PathJWKS {
		t.Errorf("smart-configuration lacks jwks_uri")
	}
	var set jose.JSONWebKeySet
	if err := json.Unmarshal(get(smart.PathJWKS).body, &set); err != nil || len(set.Keys) != 1 {
		t.Fatalf("jwks: %v, %d keys", err, len(set.Keys))
	}

	clin := s.enroll("olga", "clinician")
	browser := s.login(clin, "otp", "")
	key, _ := s.device("ws-oidc")
	app := s.app("Who am I", "user/Patient.rs")
	a := s.authorize(browser, app, "openid fhirUser user/Patient.rs", "", key)
	if a.IDToken == "" || !strings.Contains(" "+a.Scope+" ", " openid ") {
		t.Fatalf("authorize with openid: scope %q, id_token %q", a.Scope, a.IDToken)
	}
	tok, err := jwt.ParseSigned(a.IDToken, []jose.SignatureAlgorithm{jose.RS256})
	if err != nil {
		t.Fatalf("id_token: %v", err)
	}
	if tok.Headers[0].KeyID != set.Keys[0].KeyID {
		t.Fatalf("id_token kid %q, want %q", tok.Headers[0].KeyID, set.Keys[0].KeyID)
	}
	var c map[string]any
	if err := tok.Claims(set.Keys[0].Key, &c); err != nil {
		t.Fatalf("id_token does not verify against /auth/jwks: %v", err)
	}
	if c["iss"] != s.origin || c["aud"] != app.ID || c["sub"] == "" || c["sub"] == nil || c["fhirUser"] != nil {
		t.Errorf("id_token claims = %v", c)
	}
	if b := s.authorize(browser, app, "user/Patient.rs", "", key); b.IDToken != "" {
		t.Errorf("id_token without openid")
	}
}
