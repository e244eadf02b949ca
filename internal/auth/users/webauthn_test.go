package users

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/go-webauthn/webauthn/protocol"
	"github.com/go-webauthn/webauthn/protocol/webauthncbor"
	"github.com/go-webauthn/webauthn/protocol/webauthncose"

	"github.com/ehrvault/ehrvault/internal/auth"
)

// softKey is a test-only software authenticator: one P-256 credential,
// "none" attestation, answering what navigator.credentials.create and get
// would send (WebAuthn Level 2, 6.1 and 6.5).
type softKey struct {
	t      *testing.T
	key    *ecdsa.PrivateKey
	id     []byte
	rpID   string
	origin string
	count  uint32
}

func newSoftKey(t *testing.T, rpID, origin string) *softKey {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	id := make([]byte, 16)
	rand.Read(id)
	return &softKey{t: t, key: k, id: id, rpID: rpID, origin: origin}
}

var b64u = base64.RawURLEncoding

func (k *softKey) clientData(typ string, challenge []byte) []byte {
	b, _ := json.Marshal(map[string]any{"type": typ, "challenge": b64u.EncodeToString(challenge), "origin": k.origin, "crossOrigin": false})
	return b
}

func (k *softKey) authData(flags protocol.AuthenticatorFlags, attested []byte) []byte {
	h := sha256.Sum256([]byte(k.rpID))
	out := append(h[:], byte(flags))
	out = binary.BigEndian.AppendUint32(out, k.count)
	return append(out, attested...)
}

// create answers registration options (the server's JSON).
func (k *softKey) create(options []byte) string {
	var cc protocol.CredentialCreation
	if err := json.Unmarshal(options, &cc); err != nil {
		k.t.Fatalf("registration options: %v\n%s", err, options)
	}
	cose, _ := webauthncbor.Marshal(map[int64]any{
		1:  int64(webauthncose.EllipticKey),
		3:  int64(webauthncose.AlgES256),
		-1: int64(webauthncose.P256),
		-2: k.key.PublicKey.X.FillBytes(make([]byte, 32)),
		-3: k.key.PublicKey.Y.FillBytes(make([]byte, 32)),
	})
	att := make([]byte, 16) // AAGUID: none
	att = binary.BigEndian.AppendUint16(att, uint16(len(k.id)))
	att = append(att, k.id...)
	att = append(att, cose...)
	ad := k.authData(protocol.FlagUserPresent|protocol.FlagUserVerified|protocol.FlagAttestedCredentialData, att)
	obj, _ := webauthncbor.Marshal(map[string]any{"fmt": "none", "attStmt": map[string]any{}, "authData": ad})
	b, _ := json.Marshal(map[string]any{
		"id": b64u.EncodeToString(k.id), "rawId": b64u.EncodeToString(k.id), "type": "public-key",
		"response": map[string]any{
			"clientDataJSON":    b64u.EncodeToString(k.clientData("webauthn.create", cc.Response.Challenge)),
			"attestationObject": b64u.EncodeToString(obj),
		},
	})
	return string(b)
}

// get answers login options, signing with key (k.key unless another).
func (k *softKey) get(options []byte, userHandle string, key *ecdsa.PrivateKey) string {
	var ca protocol.CredentialAssertion
	if err := json.Unmarshal(options, &ca); err != nil {
		k.t.Fatalf("login options: %v\n%s", err, options)
	}
	k.count++
	ad := k.authData(protocol.FlagUserPresent|protocol.FlagUserVerified, nil)
	cd := k.clientData("webauthn.get", ca.Response.Challenge)
	cdh := sha256.Sum256(cd)
	digest := sha256.Sum256(append(append([]byte{}, ad...), cdh[:]...))
	sig, err := ecdsa.SignASN1(rand.Reader, key, digest[:])
	if err != nil {
		k.t.Fatal(err)
	}
	b, _ := json.Marshal(map[string]any{
		"id": b64u.EncodeToString(k.id), "rawId": b64u.EncodeToString(k.id), "type": "public-key",
		"response": map[string]any{
			"clientDataJSON":    b64u.EncodeToString(cd),
			"authenticatorData": b64u.EncodeToString(ad),
			"signature":         b64u.EncodeToString(sig),
			"userHandle":        b64u.EncodeToString([]byte(userHandle)),
		},
	})
	return string(b)
}

// Enrollment with a security key only, then login with it; a wrong
// signature, a replayed answer and another origin fail.
func TestUserWebAuthn(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	en, _ := e.svc.Add(ctx, "walt", "", auth.RoleClinician)
	b := newBrowser(t, e.svc.Handler())
	b.post("/auth/enroll", url.Values{"step": {"code"}, "code": {en.Code}})
	pw := "lanterns over the harbour"
	if w := b.post("/auth/enroll", url.Values{"step": {"password"}, "password": {pw}, "password2": {pw}}); w.Code != http.StatusSeeOther {
		t.Fatalf("password: %d", w.Code)
	}
	key := newSoftKey(t, "ehr.example.org", testBase)

	w := b.postJSON("/auth/webauthn/register/begin", "{}")
	if w.Code != http.StatusOK {
		t.Fatalf("register/begin: %d %s", w.Code, w.Body)
	}
	answer := key.create(w.Body.Bytes())
	w = b.postJSON("/auth/webauthn/register/finish", answer)
	if w.Code != http.StatusOK || !strings.Contains(w.Body.String(), `"next":"/auth/enroll"`) {
		t.Fatalf("register/finish: %d %s", w.Code, w.Body)
	}
	// The challenge is single use.
	if w := b.postJSON("/auth/webauthn/register/finish", answer); w.Code != http.StatusBadRequest {
		t.Errorf("replayed registration: %d, want 400", w.Code)
	}
	if w := b.get("/auth/enroll"); !strings.Contains(w.Body.String(), `id="webauthn-done"`) {
		t.Fatalf("enroll page after registration:\n%s", w.Body)
	}
	w = b.post("/auth/enroll", url.Values{"step": {"finish"}})
	if w.Code != http.StatusOK || !strings.Contains(w.Body.String(), `id="recovery-codes"`) {
		t.Fatalf("finish: %d %s", w.Code, w.Body)
	}
	p, err := e.svc.Session(b.request())
	if err != nil || !p.FactorSince(auth.FactorWebAuthn, e.clock.Now()) {
		t.Fatalf("Session after WebAuthn enrollment: %v %+v", err, p)
	}

	// Login: password, then the key.
	login := func(b *browser) []byte {
		t.Helper()
		w := b.post("/auth/login", url.Values{"username": {"walt"}, "password": {pw}})
		if !strings.Contains(w.Body.String(), `id="webauthn-login"`) {
			t.Fatalf("factor page lacks #webauthn-login:\n%s", w.Body)
		}
		w = b.postJSON("/auth/webauthn/login/begin", "{}")
		if w.Code != http.StatusOK {
			t.Fatalf("login/begin: %d %s", w.Code, w.Body)
		}
		return w.Body.Bytes()
	}
	b2 := newBrowser(t, e.svc.Handler())
	other, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	opts := login(b2)
	if w := b2.postJSON("/auth/webauthn/login/finish", key.get(opts, en.User.ID, other)); w.Code != http.StatusUnauthorized {
		t.Errorf("assertion signed by another key: %d, want 401", w.Code)
	}
	if _, err := e.svc.Session(b2.request()); err == nil {
		t.Errorf("Session after a failed assertion = nil error")
	}
	opts = login(b2)
	good := key.get(opts, en.User.ID, key.key)
	w = b2.postJSON("/auth/webauthn/login/finish?next=/fhir/Patient", good)
	if w.Code != http.StatusOK || !strings.Contains(w.Body.String(), `"next":"/fhir/Patient"`) {
		t.Fatalf("login/finish: %d %s", w.Code, w.Body)
	}
	p, err = e.svc.Session(b2.request())
	if err != nil || !p.FactorSince(auth.FactorWebAuthn, e.clock.Now()) {
		t.Fatalf("Session after WebAuthn login: %v", err)
	}
	// The same answer again, in a fresh login: its challenge is gone.
	b3 := newBrowser(t, e.svc.Handler())
	login(b3)
	if w := b3.postJSON("/auth/webauthn/login/finish", good); w.Code != http.StatusUnauthorized {
		t.Errorf("replayed assertion: %d, want 401", w.Code)
	}
	// Another origin (a phishing site) fails.
	phish := newSoftKey(t, "ehr.example.org", "https://ehr-example.evil")
	phish.key, phish.id, phish.count = key.key, key.id, key.count+5
	opts = login(b3)
	if w := b3.postJSON("/auth/webauthn/login/finish", phish.get(opts, en.User.ID, key.key)); w.Code != http.StatusUnauthorized {
		t.Errorf("assertion for another origin: %d, want 401", w.Code)
	}
	// Open redirect through next is refused here too.
	b4 := newBrowser(t, e.svc.Handler())
	e.svc.throttle = newThrottle(e.clock.Now)
	opts = login(b4)
	w = b4.postJSON("/auth/webauthn/login/finish?next=//evil.example", key.get(opts, en.User.ID, key.key))
	if !strings.Contains(w.Body.String(), `"next":"/auth/"`) {
		t.Errorf("login/finish with next=//evil.example: %s", w.Body)
	}
}
