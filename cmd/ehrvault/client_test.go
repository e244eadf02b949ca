package main

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"

	"github.com/ehrvault/ehrvault/internal/auth"
	"github.com/ehrvault/ehrvault/internal/auth/dpop/dpoptest"
	"github.com/ehrvault/ehrvault/internal/auth/smart"
	"github.com/ehrvault/ehrvault/internal/keyring"
)

type noSessions struct{}

func (noSessions) Session(r *http.Request) (*auth.Principal, error) {
	return nil, auth.ErrUnauthenticated
}
func (noSessions) LoginURL(next string) string                { return "/login" }
func (noSessions) Alive(ctx context.Context, id string) error { return auth.ErrUnauthenticated }
func (noSessions) DeviceByKey(ctx context.Context, jkt string) (string, error) {
	return "", auth.ErrUnauthenticated
}

// TestClientRegisteredByCLI: a backend service registered with `ehrvault
// client add-service` gets a DPoP-bound token from a smart.Server built on
// the same vault, and `client remove` ends it.
func TestClientRegisteredByCLI(t *testing.T) {
	ctx := context.Background()
	dir := filepath.Join(t.TempDir(), "data")
	c := testCLI()
	if err := c.initVault(ctx, dir, []byte(testPassphrase)); err != nil {
		t.Fatal(err)
	}
	key, err := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	set, _ := json.Marshal(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: &key.PublicKey, KeyID: "k1", Algorithm: "ES384"}}})
	jwks := filepath.Join(t.TempDir(), "jwks.json")
	os.WriteFile(jwks, set, 0o600)
	run := func(args ...string) string {
		t.Helper()
		var out, errOut bytes.Buffer
		c := testCLI()
		c.stdout, c.stderr = &out, &errOut
		c.getenv = func(k string) string {
			if k == PassphraseEnv {
				return testPassphrase
			}
			return ""
		}
		if code := c.main(ctx, args); code != 0 {
			t.Fatalf("ehrvault %s: exit %d: %s", strings.Join(args, " "), code, errOut.String())
		}
		return strings.TrimSpace(out.String())
	}
	id := run("client", "add-service", "--data", dir, "--name", "Export", "--jwks", jwks, "--scope", "system/Patient.rs")

	v, err := openVault(ctx, dir, []byte(testPassphrase), slog.New(slog.DiscardHandler), adminAccess)
	if err != nil {
		t.Fatal(err)
	}
	defer v.Close()
	seal, _ := v.keys.Sealer(ctx, keyring.PurposeAuthSeal)
	mac, _ := v.keys.MAC(ctx, keyring.PurposeAuthLookup)
	const issuer = "https://ehr.example.org"
	srv, err := smart.New(smart.Config{Issuer: issuer, FHIRBase: issuer + "/fhir", Store: v.db, Sealer: seal, MAC: mac,
		Sessions: noSessions{}, Devices: noSessions{}})
	if err != nil {
		t.Fatal(err)
	}
	sig, _ := jose.NewSigner(jose.SigningKey{Algorithm: jose.ES384, Key: key}, (&jose.SignerOptions{}).WithHeader("kid", "k1"))
	assertion, _ := jwt.Signed(sig).Claims(jwt.Claims{Issuer: id, Subject: id, Audience: jwt.Audience{issuer + smart.PathToken},
		Expiry: jwt.NewNumericDate(time.Now().Add(time.Minute)), ID: "jti-1"}).Serialize()
	form := url.Values{"grant_type": {"client_credentials"}, "scope": {"system/Patient.r"},
		"client_assertion_type": {"urn:ietf:params:oauth:client-assertion-type:jwt-bearer"}, "client_assertion": {assertion}}
	dk := dpoptest.NewKey()
	r := httptest.NewRequest("POST", issuer+smart.PathToken, strings.NewReader(form.Encode()))
	r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	r.Header.Set("DPoP", dk.Proof("POST", issuer+smart.PathToken, "", time.Now()))
	w := httptest.NewRecorder()
	srv.ServeHTTP(w, r)
	var tok struct {
		AccessToken string `json:"access_token"`
		Scope       string `json:"scope"`
	}
	if err := json.Unmarshal(w.Body.Bytes(), &tok); err != nil || w.Code != 200 || tok.Scope != "system/Patient.r" {
		t.Fatalf("token: %d %s", w.Code, w.Body)
	}
	fhir := func() error {
		r := httptest.NewRequest("GET", issuer+"/fhir/Patient", nil)
		r.Header.Set("Authorization", "DPoP "+tok.AccessToken)
		r.Header.Set("DPoP", dk.Proof("GET", issuer+"/fhir/Patient", tok.AccessToken, time.Now()))
		_, err := srv.Authenticate(r)
		return err
	}
	if err := fhir(); err != nil {
		t.Fatalf("Authenticate: %v", err)
	}
	run("client", "remove", "--data", dir, id)
	time.Sleep(smart.CacheTTL + 50*time.Millisecond) // the removal was another process's
	if err := fhir(); err == nil {
		t.Errorf("token of a removed client still works")
	}
}
