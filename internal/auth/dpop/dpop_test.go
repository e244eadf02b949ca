package dpop_test

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"

	"github.com/ehrvault/ehrvault/internal/auth/dpop"
	"github.com/ehrvault/ehrvault/internal/auth/dpop/dpoptest"
)

var t0 = time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)

const fhirURL = "https://ehr.example.org/fhir/Patient/123"

func newVerifier(now *time.Time) *dpop.Verifier {
	return dpop.NewVerifier(dpop.Options{Now: func() time.Time { return *now }})
}

func TestVerifyAccepts(t *testing.T) {
	now := t0
	v := newVerifier(&now)
	k := dpoptest.NewKey()
	p, err := v.Verify(k.Proof("GET", fhirURL, "Zq9-secret", now), "GET", fhirURL+"?x=1", "Zq9-secret")
	if err != nil {
		t.Fatalf("Verify: %v", err)
	}
	if p.JKT != k.JKT || p.JTI == "" || !p.IssuedAt.Equal(now) {
		t.Errorf("Verify = %+v, want jkt %s iat %v", p, k.JKT, now)
	}
}

func TestVerifyRefuses(t *testing.T) {
	now := t0
	k := dpoptest.NewKey()
	other := dpoptest.NewKey()
	tests := []struct {
		name   string
		proof  string
		method string
		url    string
		token  string
	}{
		{"empty", "", "GET", fhirURL, ""},
		{"garbage", "a.b.c", "GET", fhirURL, ""},
		{"other method", k.Proof("POST", fhirURL, "", now), "GET", fhirURL, ""},
		{"other URL", k.Proof("GET", "https://ehr.example.org/fhir/Patient/124", "", now), "GET", fhirURL, ""},
		{"other host", k.Proof("GET", "https://evil.example.org/fhir/Patient/123", "", now), "GET", fhirURL, ""},
		{"other scheme", k.Proof("GET", "http://ehr.example.org/fhir/Patient/123", "", now), "GET", fhirURL, ""},
		{"too old", k.Proof("GET", fhirURL, "", now.Add(-61*time.Second)), "GET", fhirURL, ""},
		{"from the future", k.Proof("GET", fhirURL, "", now.Add(61*time.Second)), "GET", fhirURL, ""},
		{"no ath", k.Proof("GET", fhirURL, "", now), "GET", fhirURL, "Zq9-secret"},
		{"ath of another token", k.Proof("GET", fhirURL, "Zq9-other", now), "GET", fhirURL, "Zq9-secret"},
		{"ath without token", k.Proof("GET", fhirURL, "Zq9-secret", now), "GET", fhirURL, ""},
		{"typ JWT", k.Sign(dpoptest.Claims{HTM: "GET", HTU: fhirURL, IAT: now.Unix()}, "JWT", true), "GET", fhirURL, ""},
		{"no jwk", k.Sign(dpoptest.Claims{HTM: "GET", HTU: fhirURL, IAT: now.Unix()}, "dpop+jwt", false), "GET", fhirURL, ""},
		{"no iat", k.Sign(dpoptest.Claims{HTM: "GET", HTU: fhirURL}, "dpop+jwt", true), "GET", fhirURL, ""},
		{"alg none", unsigned(k, now), "GET", fhirURL, ""},
		{"HS256 with the public key as secret", hs256(k, now), "GET", fhirURL, ""},
		{"private key in header", privateJWK(k, now), "GET", fhirURL, ""},
		{"signed by another key", swapKey(k, other, now), "GET", fhirURL, ""},
	}
	for _, tt := range tests {
		v := newVerifier(&now)
		_, err := v.Verify(tt.proof, tt.method, tt.url, tt.token)
		var de *dpop.Error
		if !errors.Is(err, dpop.ErrInvalidProof) || !errors.As(err, &de) {
			t.Errorf("%s: Verify = %v, want an *Error wrapping ErrInvalidProof", tt.name, err)
		}
		if err != nil && strings.Contains(err.Error(), "Zq9") {
			t.Errorf("%s: error %q mentions the token", tt.name, err)
		}
	}
}

func TestReplay(t *testing.T) {
	now := t0
	v := newVerifier(&now)
	k := dpoptest.NewKey()
	p := k.Proof("GET", fhirURL, "", now)
	if _, err := v.Verify(p, "GET", fhirURL, ""); err != nil {
		t.Fatalf("first Verify: %v", err)
	}
	now = now.Add(30 * time.Second)
	if _, err := v.Verify(p, "GET", fhirURL, ""); !errors.Is(err, dpop.ErrInvalidProof) || !strings.Contains(err.Error(), "replayed") {
		t.Errorf("replayed Verify = %v, want replay refused", err)
	}
	// Out of the window the iat check refuses it, whatever the cache holds.
	now = now.Add(60 * time.Second)
	if _, err := v.Verify(p, "GET", fhirURL, ""); !errors.Is(err, dpop.ErrInvalidProof) {
		t.Errorf("late replay Verify = %v, want refused", err)
	}
}

func TestReplayCacheBounded(t *testing.T) {
	now := t0
	v := dpop.NewVerifier(dpop.Options{Now: func() time.Time { return now }, MaxReplay: 3})
	k := dpoptest.NewKey()
	for i := 0; i < 3; i++ {
		if _, err := v.Verify(k.Proof("GET", fhirURL, "", now), "GET", fhirURL, ""); err != nil {
			t.Fatalf("Verify %d: %v", i, err)
		}
	}
	if _, err := v.Verify(k.Proof("GET", fhirURL, "", now), "GET", fhirURL, ""); err == nil {
		t.Fatalf("Verify with a full cache succeeded, want fail closed")
	}
	now = now.Add(2 * time.Minute) // the old entries age out
	if _, err := v.Verify(k.Proof("GET", fhirURL, "", now), "GET", fhirURL, ""); err != nil {
		t.Errorf("Verify after the window: %v", err)
	}
}

func TestNormalizeURL(t *testing.T) {
	tests := []struct{ in, want string }{
		{"https://EHR.Example.org:443/fhir/Patient?x=1#f", "https://ehr.example.org/fhir/Patient"},
		{"HTTP://localhost:80", "http://localhost/"},
		{"http://localhost:8080/a", "http://localhost:8080/a"},
		{"https://[::1]:8443/a", "https://[::1]:8443/a"},
	}
	for _, tt := range tests {
		got, err := dpop.NormalizeURL(tt.in)
		if err != nil || got != tt.want {
			t.Errorf("NormalizeURL(%q) = %q, %v; want %q", tt.in, got, err, tt.want)
		}
	}
	for _, bad := range []string{"", "/fhir", "ftp://x/y", "https://user@x/"} {
		if _, err := dpop.NormalizeURL(bad); err == nil {
			t.Errorf("NormalizeURL(%q) succeeded, want error", bad)
		}
	}
}

// Hand-made JWS for the attacks go-jose would not sign.

func b64(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }

func header(k *dpoptest.Key, alg string) string {
	jwk, _ := k.JWK.MarshalJSON()
	h, _ := json.Marshal(map[string]any{"typ": "dpop+jwt", "alg": alg, "jwk": json.RawMessage(jwk)})
	return b64(h)
}

func payload(now time.Time) string {
	p, _ := json.Marshal(dpoptest.Claims{JTI: "j1", HTM: "GET", HTU: fhirURL, IAT: now.Unix()})
	return b64(p)
}

func unsigned(k *dpoptest.Key, now time.Time) string {
	return header(k, "none") + "." + payload(now) + "."
}

func hs256(k *dpoptest.Key, now time.Time) string {
	jwk, _ := k.JWK.MarshalJSON()
	in := header(k, "HS256") + "." + payload(now)
	m := hmac.New(sha256.New, jwk)
	m.Write([]byte(in))
	return in + "." + b64(m.Sum(nil))
}

func privateJWK(k *dpoptest.Key, now time.Time) string {
	priv := jose.JSONWebKey{Key: k.Private, Algorithm: "ES256"}
	jwk, _ := priv.MarshalJSON()
	h, _ := json.Marshal(map[string]any{"typ": "dpop+jwt", "alg": "ES256", "jwk": json.RawMessage(jwk)})
	good := k.Proof("GET", fhirURL, "", now)
	parts := strings.Split(good, ".")
	return b64(h) + "." + parts[1] + "." + parts[2]
}

// swapKey signs with k but puts other's public key in the header.
func swapKey(k, other *dpoptest.Key, now time.Time) string {
	good := k.Proof("GET", fhirURL, "", now)
	parts := strings.Split(good, ".")
	return header(other, "ES256") + "." + parts[1] + "." + parts[2]
}

func FuzzVerify(f *testing.F) {
	k := dpoptest.NewKey()
	f.Add(k.Proof("GET", fhirURL, "", t0), "GET", fhirURL)
	f.Add("e30.e30.", "POST", "https://x/")
	f.Fuzz(func(t *testing.T, proof, method, url string) {
		now := t0
		v := newVerifier(&now)
		p, err := v.Verify(proof, method, url, "")
		if err == nil && p.JKT == "" {
			t.Fatalf("accepted a proof without a thumbprint")
		}
		if err != nil && !errors.Is(err, dpop.ErrInvalidProof) {
			t.Fatalf("error %v does not wrap ErrInvalidProof", err)
		}
	})
}
