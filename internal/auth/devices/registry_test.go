package devices

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/hmac"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"

	"github.com/ehrvault/ehrvault/internal/auth"
	"github.com/ehrvault/ehrvault/internal/auth/authtest"
	"github.com/ehrvault/ehrvault/internal/keyring"
	"github.com/ehrvault/ehrvault/internal/store/sqlite"
)

// clock is a settable clock for tests.
type clock = authtest.Clock

// env is a store and keys shared by the registries of a test, as a
// server and the CLI beside it would share them.
type env struct {
	db    *sqlite.DB
	seal  *keyring.Sealer
	mac   *keyring.MAC
	clock *clock
}

func newEnv(t *testing.T) *env {
	t.Helper()
	k := authtest.New(t)
	return &env{db: k.DB, seal: k.Sealer, mac: k.MAC, clock: authtest.NewClock(time.Now().UTC().Truncate(time.Second))}
}

func (e *env) registry(opts ...Option) *Registry {
	return New(e.db, e.seal, e.mac, append([]Option{WithClock(e.clock.Now)}, opts...)...)
}

var encrypted = Posture{OS: "linux", OSVersion: "6.12", DiskEncrypted: true, ScreenLock: true, Hostname: "ws-17"}

func newKey(t *testing.T) *Key {
	t.Helper()
	k, err := GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func code(t *testing.T, r *Registry) string {
	t.Helper()
	c, _, err := r.NewCode(context.Background(), "front desk 2", Workstation, "usr_admin")
	if err != nil {
		t.Fatalf("NewCode: %v", err)
	}
	return c
}

func enroll(t *testing.T, r *Registry, k *Key, code string, p Posture, now time.Time) *Device {
	t.Helper()
	proof, err := k.Proof(actEnroll, code, &p, now)
	if err != nil {
		t.Fatal(err)
	}
	d, err := r.Enroll(context.Background(), proof)
	if err != nil {
		t.Fatalf("Enroll: %v", err)
	}
	return d
}

func TestLifecycle(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t)
	server, cli := e.registry(), e.registry()
	k := newKey(t)
	d := enroll(t, server, k, code(t, cli), encrypted, e.clock.Now())
	if d.State != StatePending || d.Label != "front desk 2" || d.Kind != Workstation || d.JKT != k.JKT() {
		t.Fatalf("Enroll = %+v, want pending workstation with the key's jkt", d)
	}
	if !d.Posture.ReportedAt.Equal(e.clock.Now()) || d.Posture.Hostname != "ws-17" {
		t.Errorf("Enroll posture = %+v, want the report with the server's time", d.Posture)
	}
	if _, err := server.DeviceByKey(ctx, k.JKT()); !errors.Is(err, auth.ErrUnauthenticated) {
		t.Fatalf("DeviceByKey(pending) err = %v, want ErrUnauthenticated", err)
	}
	if _, err := cli.Approve(ctx, d.ID, "usr_admin"); err != nil {
		t.Fatalf("Approve: %v", err)
	}
	id, err := server.DeviceByKey(ctx, k.JKT())
	if err != nil || id != d.ID {
		t.Fatalf("DeviceByKey(approved) = %q, %v; want %q", id, err, d.ID)
	}
	if _, err := server.DeviceByKey(ctx, newKey(t).JKT()); !errors.Is(err, auth.ErrUnauthenticated) {
		t.Errorf("DeviceByKey(unknown key) err = %v, want ErrUnauthenticated", err)
	}

	// Revoked by another process: the server may remember the device for
	// at most CacheTTL.
	if _, err := cli.Revoke(ctx, d.ID, "usr_admin"); err != nil {
		t.Fatalf("Revoke: %v", err)
	}
	e.clock.Add(CacheTTL)
	if _, err := server.DeviceByKey(ctx, k.JKT()); !errors.Is(err, auth.ErrUnauthenticated) {
		t.Fatalf("DeviceByKey %s after a revocation elsewhere: err = %v, want ErrUnauthenticated", CacheTTL, err)
	}
	if _, err := cli.Approve(ctx, d.ID, "usr_admin"); !errors.Is(err, ErrRevoked) {
		t.Errorf("Approve(revoked) err = %v, want ErrRevoked", err)
	}
	got, err := cli.Device(ctx, d.ID)
	if err != nil || got.State != StateRevoked || got.RevokedBy != "usr_admin" || got.ApprovedBy != "usr_admin" {
		t.Errorf("Device after revoke = %+v, %v", got, err)
	}
	// A revoked key never enrolls again.
	proof, _ := k.Proof(actEnroll, code(t, cli), &encrypted, e.clock.Now())
	if _, err := server.Enroll(ctx, proof); !errors.Is(err, ErrKeyTaken) {
		t.Errorf("Enroll(revoked key) err = %v, want ErrKeyTaken", err)
	}
}

func TestRevokeInProcessIsImmediate(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t)
	r := e.registry()
	k := newKey(t)
	d := enroll(t, r, k, code(t, r), encrypted, e.clock.Now())
	if _, err := r.Approve(ctx, d.ID, "a"); err != nil {
		t.Fatal(err)
	}
	if _, err := r.DeviceByKey(ctx, k.JKT()); err != nil {
		t.Fatalf("DeviceByKey: %v", err)
	}
	if _, err := r.Revoke(ctx, d.ID, "a"); err != nil {
		t.Fatal(err)
	}
	// No clock advance: the cache entry must be gone.
	if _, err := r.DeviceByKey(ctx, k.JKT()); !errors.Is(err, auth.ErrUnauthenticated) {
		t.Fatalf("DeviceByKey right after Revoke: err = %v, want ErrUnauthenticated", err)
	}
}

func TestCodeSingleUseAndExpiry(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t)
	r := e.registry()
	c := code(t, r)
	enroll(t, r, newKey(t), c, encrypted, e.clock.Now())
	proof, _ := newKey(t).Proof(actEnroll, c, &encrypted, e.clock.Now())
	if _, err := r.Enroll(ctx, proof); !errors.Is(err, ErrCode) {
		t.Fatalf("Enroll with a used code: err = %v, want ErrCode", err)
	}

	c = code(t, r)
	e.clock.Add(CodeTTL)
	proof, _ = newKey(t).Proof(actEnroll, c, &encrypted, e.clock.Now())
	if _, err := r.Enroll(ctx, proof); !errors.Is(err, ErrCode) {
		t.Fatalf("Enroll with a code %s old: err = %v, want ErrCode", CodeTTL, err)
	}
	proof, _ = newKey(t).Proof(actEnroll, "ehd_"+base64.RawURLEncoding.EncodeToString(make([]byte, 32)), &encrypted, e.clock.Now())
	if _, err := r.Enroll(ctx, proof); !errors.Is(err, ErrCode) {
		t.Fatalf("Enroll with a made-up code: err = %v, want ErrCode", err)
	}
	if _, _, err := r.NewCode(ctx, "x", "toaster", "a"); !errors.Is(err, ErrInvalid) {
		t.Errorf("NewCode(kind toaster) err = %v, want ErrInvalid", err)
	}
	if _, _, err := r.NewCode(ctx, "", Tablet, "a"); !errors.Is(err, ErrInvalid) {
		t.Errorf("NewCode(no label) err = %v, want ErrInvalid", err)
	}
}

func b64(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }

// rawJWS builds a compact JWS by hand, so that tests can send what no
// honest library would.
func rawJWS(t *testing.T, header map[string]any, payload any, sign func(input []byte) []byte) string {
	t.Helper()
	h, err := json.Marshal(header)
	if err != nil {
		t.Fatal(err)
	}
	p, err := json.Marshal(payload)
	if err != nil {
		t.Fatal(err)
	}
	input := b64(h) + "." + b64(p)
	return input + "." + b64(sign([]byte(input)))
}

func es256(k *ecdsa.PrivateKey) func([]byte) []byte {
	return func(in []byte) []byte {
		d := sha256.Sum256(in)
		r, s, err := ecdsa.Sign(rand.Reader, k, d[:])
		if err != nil {
			panic(err)
		}
		out := make([]byte, 64)
		r.FillBytes(out[:32])
		s.FillBytes(out[32:])
		return out
	}
}

func jwkJSON(t *testing.T, key any) map[string]any {
	t.Helper()
	b, err := json.Marshal(jose.JSONWebKey{Key: key})
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	json.Unmarshal(b, &m)
	return m
}

func TestProofAttacks(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t)
	r := e.registry()
	c := code(t, r)
	now := e.clock.Now()
	jti := 0
	// good returns honest claims, each with a new nonce.
	good := func() claims {
		jti++
		return claims{Act: actEnroll, Code: c, IAT: now.Unix(), JTI: fmt.Sprintf("nonce-%016d", jti), Posture: &encrypted}
	}
	a, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	b, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	p384, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	rsa1024, _ := rsa.GenerateKey(rand.Reader, 1024)
	_, edPriv, _ := ed25519.GenerateKey(rand.Reader)
	pubA := jwkJSON(t, &a.PublicKey)
	privA := jwkJSON(t, a)
	hdr := func(alg string, jwk map[string]any) map[string]any {
		return map[string]any{"alg": alg, "typ": ProofType, "jwk": jwk}
	}

	tests := []struct {
		name  string
		proof func() string
	}{
		{"signed by another key than the jwk", func() string {
			return rawJWS(t, hdr("ES256", jwkJSON(t, &b.PublicKey)), good(), es256(a))
		}},
		{"alg none", func() string {
			return rawJWS(t, hdr("none", pubA), good(), func([]byte) []byte { return nil })
		}},
		{"HS256 keyed with the public key", func() string {
			pub, _ := json.Marshal(pubA)
			return rawJWS(t, hdr("HS256", pubA), good(), func(in []byte) []byte {
				m := hmac.New(sha256.New, pub)
				m.Write(in)
				return m.Sum(nil)
			})
		}},
		{"private JWK sent", func() string {
			return rawJWS(t, hdr("ES256", privA), good(), es256(a))
		}},
		{"symmetric JWK sent", func() string {
			oct := map[string]any{"kty": "oct", "k": b64([]byte("0123456789abcdef0123456789abcdef"))}
			return rawJWS(t, hdr("HS256", oct), good(), func(in []byte) []byte {
				m := hmac.New(sha256.New, []byte("0123456789abcdef0123456789abcdef"))
				m.Write(in)
				return m.Sum(nil)
			})
		}},
		{"alg that does not fit the key", func() string {
			k, _ := NewKey(p384)
			k.alg = jose.ES384
			// An ES384 signature by a P-384 key, but headed ES256.
			s, _ := k.Proof(actEnroll, c, &encrypted, now)
			parts := splitJWS(s)
			var h map[string]any
			hb, _ := base64.RawURLEncoding.DecodeString(parts[0])
			json.Unmarshal(hb, &h)
			h["alg"] = "ES256"
			nh, _ := json.Marshal(h)
			return b64(nh) + "." + parts[1] + "." + parts[2]
		}},
		{"RSA key of 1024 bits", func() string {
			k := &Key{signer: rsa1024, alg: jose.RS256, jwk: jose.JSONWebKey{Key: &rsa1024.PublicKey}}
			s, _ := k.Proof(actEnroll, c, &encrypted, now)
			return s
		}},
		{"wrong typ", func() string {
			h := hdr("ES256", pubA)
			h["typ"] = "JWT"
			return rawJWS(t, h, good(), es256(a))
		}},
		{"stale iat", func() string {
			cl := good()
			cl.IAT = now.Add(-ProofMaxAge - time.Second).Unix()
			return rawJWS(t, hdr("ES256", pubA), cl, es256(a))
		}},
		{"iat in the future", func() string {
			cl := good()
			cl.IAT = now.Add(ProofMaxSkew + time.Second).Unix()
			return rawJWS(t, hdr("ES256", pubA), cl, es256(a))
		}},
		{"proof for another act", func() string {
			cl := good()
			cl.Act = actPosture
			return rawJWS(t, hdr("ES256", pubA), cl, es256(a))
		}},
		{"short jti", func() string {
			cl := good()
			cl.JTI = "abc"
			return rawJWS(t, hdr("ES256", pubA), cl, es256(a))
		}},
		{"no jwk", func() string {
			return rawJWS(t, map[string]any{"alg": "ES256", "typ": ProofType}, good(), es256(a))
		}},
		{"tampered payload", func() string {
			s := rawJWS(t, hdr("ES256", pubA), good(), es256(a))
			parts := splitJWS(s)
			cl := good()
			cl.Code = "ehd_other"
			p, _ := json.Marshal(cl)
			return parts[0] + "." + b64(p) + "." + parts[2]
		}},
		{"not a JWS", func() string { return "hello" }},
	}
	for _, tt := range tests {
		if _, err := r.Enroll(ctx, tt.proof()); !errors.Is(err, ErrProof) {
			t.Errorf("Enroll(%s) err = %v, want ErrProof", tt.name, err)
		}
	}

	// Refused proofs did not use up the code; honest ones of each key
	// type enroll, and a replayed one is refused.
	valid := rawJWS(t, hdr("ES256", pubA), good(), es256(a))
	if _, err := r.Enroll(ctx, valid); err != nil {
		t.Fatalf("Enroll(valid proof after refused ones): %v", err)
	}
	if _, err := r.Enroll(ctx, valid); !errors.Is(err, ErrProof) {
		t.Errorf("Enroll(replayed proof) err = %v, want ErrProof", err)
	}
	rsa2048, _ := rsa.GenerateKey(rand.Reader, 2048)
	for name, priv := range map[string]crypto.Signer{"P-384": p384, "Ed25519": edPriv, "RSA-2048": rsa2048} {
		k, err := NewKey(priv)
		if err != nil {
			t.Fatalf("NewKey(%s): %v", name, err)
		}
		enroll(t, r, k, code(t, r), encrypted, now)
	}
}

func splitJWS(s string) [3]string {
	var out [3]string
	i := 0
	for j := 0; j < len(s); j++ {
		if s[j] == '.' {
			i++
			continue
		}
		out[i] += string(s[j])
	}
	return out
}

func TestDiskEncryptionPolicy(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t)
	r := e.registry()
	if !r.RequiresDiskEncryption() {
		t.Fatal("RequiresDiskEncryption() = false by default, want true")
	}
	k := newKey(t)
	plain := encrypted
	plain.DiskEncrypted = false
	d := enroll(t, r, k, code(t, r), plain, e.clock.Now())
	if _, err := r.Approve(ctx, d.ID, "a"); !errors.Is(err, ErrUnencrypted) {
		t.Fatalf("Approve(unencrypted) err = %v, want ErrUnencrypted", err)
	}
	post := func(p Posture) {
		t.Helper()
		proof, _ := k.Proof(actPosture, "", &p, e.clock.Now())
		if _, err := r.ReportPosture(ctx, proof); err != nil {
			t.Fatalf("ReportPosture: %v", err)
		}
	}
	e.clock.Add(time.Minute)
	post(encrypted)
	if _, err := r.Approve(ctx, d.ID, "a"); err != nil {
		t.Fatalf("Approve after an encrypted posture: %v", err)
	}
	if _, err := r.DeviceByKey(ctx, k.JKT()); err != nil {
		t.Fatalf("DeviceByKey(encrypted, approved): %v", err)
	}
	e.clock.Add(time.Minute)
	post(plain)
	if _, err := r.DeviceByKey(ctx, k.JKT()); !errors.Is(err, auth.ErrUnauthenticated) {
		t.Fatalf("DeviceByKey after an unencrypted posture: err = %v, want ErrUnauthenticated", err)
	}
	got, _ := r.Device(ctx, d.ID)
	if got.Posture.DiskEncrypted || !got.Posture.ReportedAt.Equal(e.clock.Now()) {
		t.Errorf("latest posture = %+v, want the unencrypted report at %v", got.Posture, e.clock.Now())
	}
	// A posture proof must be by an enrolled key.
	proof, _ := newKey(t).Proof(actPosture, "", &encrypted, e.clock.Now())
	if _, err := r.ReportPosture(ctx, proof); !errors.Is(err, ErrProof) {
		t.Errorf("ReportPosture(unenrolled key) err = %v, want ErrProof", err)
	}

	// With the policy off, an unencrypted device is approved and passes.
	lax := e.registry(RequireDiskEncryption(false))
	k2 := newKey(t)
	d2 := enroll(t, lax, k2, code(t, lax), plain, e.clock.Now())
	if _, err := lax.Approve(ctx, d2.ID, "a"); err != nil {
		t.Fatalf("Approve(unencrypted, policy off): %v", err)
	}
	if _, err := lax.DeviceByKey(ctx, k2.JKT()); err != nil {
		t.Fatalf("DeviceByKey(unencrypted, policy off): %v", err)
	}
}

func TestPostureFieldsChecked(t *testing.T) {
	e := newEnv(t)
	r := e.registry()
	bad := encrypted
	bad.Hostname = "ws\x1b[31m"
	proof, _ := newKey(t).Proof(actEnroll, code(t, r), &bad, e.clock.Now())
	if _, err := r.Enroll(context.Background(), proof); !errors.Is(err, ErrInvalid) {
		t.Errorf("Enroll(hostname with an escape) err = %v, want ErrInvalid", err)
	}
}

// TestThumbprint checks Thumbprint against the example of RFC 7638 3.1.
func TestThumbprint(t *testing.T) {
	var k jose.JSONWebKey
	if err := k.UnmarshalJSON([]byte(`{"kty":"RSA","e":"AQAB","alg":"RS256","kid":"2011-04-29","n":"0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw"}`)); err != nil {
		t.Fatal(err)
	}
	got, err := Thumbprint(&k)
	if want := "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"; err != nil || got != want {
		t.Errorf("Thumbprint(RFC 7638 example) = %q, %v; want %q", got, err, want)
	}
}
