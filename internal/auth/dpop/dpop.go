// Package dpop verifies DPoP proofs (RFC 9449): the signed JWT a client
// sends in the DPoP header to show that it holds the private key an access
// or refresh token is bound to.
//
// # Promises
//
//   - A proof is accepted only if: its header says typ "dpop+jwt"; its alg
//     is one of Algorithms (asymmetric only: never "none", never HS*); its
//     jwk header is a valid public key (private parts are refused); the
//     signature verifies with that key; htm equals the request method;
//     htu equals the request URL without query and fragment, compared after
//     normalizing scheme and host case and default ports; iat lies within
//     Window of the verifier's clock; jti has not been seen before from
//     that key within the window; and, when an access token is presented,
//     ath is base64url(SHA-256(token)).
//   - Proof.JKT is the RFC 7638 JWK SHA-256 thumbprint (base64url, no
//     padding) of the proof's key: what tokens are bound to (cnf.jkt).
//   - Every refusal is an *Error that wraps ErrInvalidProof, so that the
//     caller can answer `WWW-Authenticate: DPoP error="invalid_dpop_proof"`.
//     Its text names the check that failed, never a token or a key.
//
// # Non-promises
//
//   - The replay cache lives in this process's memory. Two servers behind
//     one load balancer each accept a proof once; the window (default
//     ±60 s) and the binding to method and URL bound what a replay buys.
//   - When the cache is full of live entries, new proofs are refused
//     (fail closed) until entries age out of the window.
//   - Server-provided nonces (RFC 9449 section 8) are not used.
package dpop

import (
	"crypto"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"sync"
	"time"

	jose "github.com/go-jose/go-jose/v4"
)

// Algorithms are the signature algorithms a proof may use: asymmetric
// only, so that the key in the header can only verify, never forge.
var Algorithms = []jose.SignatureAlgorithm{jose.ES256, jose.ES384, jose.EdDSA, jose.RS256, jose.PS256}

// DefaultWindow is how far a proof's iat may lie from the server's clock.
const DefaultWindow = 60 * time.Second

// DefaultMaxReplay bounds the replay cache (entries; about 100 bytes each).
const DefaultMaxReplay = 100_000

// maxProofLen bounds what is parsed: a proof with an RSA-4096 key is ~2 KB.
const maxProofLen = 8 << 10

// ErrInvalidProof is wrapped by every refusal of a proof; the HTTP answer
// is 401 (400 at the token endpoint) with error="invalid_dpop_proof".
var ErrInvalidProof = errors.New("invalid DPoP proof")

// Error is a refused proof; Reason names the failed check.
type Error struct {
	Reason string
}

func (e *Error) Error() string { return "dpop: " + e.Reason }

// Unwrap makes errors.Is(err, ErrInvalidProof) true.
func (e *Error) Unwrap() error { return ErrInvalidProof }

func fail(format string, args ...any) error {
	return &Error{Reason: fmt.Sprintf(format, args...)}
}

// Proof is what a verified proof tells.
type Proof struct {
	JKT      string    // RFC 7638 SHA-256 thumbprint of the key, base64url
	JTI      string    // the proof's unique id
	IssuedAt time.Time // its iat
}

// Options tune a Verifier; zero values take the defaults.
type Options struct {
	Now       func() time.Time // clock; time.Now if nil
	Window    time.Duration    // allowed |iat - now|; DefaultWindow if 0
	MaxReplay int              // replay cache bound; DefaultMaxReplay if 0
}

// Verifier verifies proofs and remembers their jti. It is safe for
// concurrent use.
type Verifier struct {
	now    func() time.Time
	window time.Duration
	max    int

	mu   sync.Mutex
	seen map[string]time.Time // jkt + "\x00" + jti -> when it may be forgotten
}

// NewVerifier returns a Verifier.
func NewVerifier(o Options) *Verifier {
	v := &Verifier{now: o.Now, window: o.Window, max: o.MaxReplay, seen: map[string]time.Time{}}
	if v.now == nil {
		v.now = time.Now
	}
	if v.window <= 0 {
		v.window = DefaultWindow
	}
	if v.max <= 0 {
		v.max = DefaultMaxReplay
	}
	return v
}

// claims are a proof's payload (RFC 9449 section 4.2).
type claims struct {
	JTI string          `json:"jti"`
	HTM string          `json:"htm"`
	HTU string          `json:"htu"`
	IAT json.RawMessage `json:"iat"`
	ATH string          `json:"ath"`
}

// Verify checks proof for a request with this method and URL (the full
// URL the client addressed; query and fragment are ignored) and, when
// accessToken is not "", that it is bound to that token. It records the
// proof's jti, so a second Verify of the same proof fails.
func (v *Verifier) Verify(proof, method, rawURL, accessToken string) (*Proof, error) {
	if proof == "" {
		return nil, fail("no proof")
	}
	if len(proof) > maxProofLen {
		return nil, fail("proof too long")
	}
	if strings.Count(proof, ".") != 2 {
		return nil, fail("proof is not a compact JWS")
	}
	jws, err := jose.ParseSignedCompact(proof, Algorithms)
	if err != nil {
		// go-jose refuses algorithms outside the list here, and embedded
		// keys that are not public.
		return nil, fail("parse proof: algorithm not allowed or malformed")
	}
	if len(jws.Signatures) != 1 {
		return nil, fail("proof must carry one signature")
	}
	h := jws.Signatures[0].Protected
	if typ, _ := h.ExtraHeaders[jose.HeaderType].(string); typ != "dpop+jwt" {
		return nil, fail("typ must be dpop+jwt")
	}
	jwk := h.JSONWebKey
	if jwk == nil {
		return nil, fail("no jwk header")
	}
	if !jwk.Valid() || !jwk.IsPublic() {
		return nil, fail("jwk must be a public key")
	}
	payload, err := jws.Verify(jwk)
	if err != nil {
		return nil, fail("signature does not verify")
	}
	var c claims
	if err := json.Unmarshal(payload, &c); err != nil {
		return nil, fail("payload is not a JSON object")
	}
	if c.JTI == "" || len(c.JTI) > 256 {
		return nil, fail("jti missing or too long")
	}
	if c.HTM != method {
		return nil, fail("htm does not match the request method")
	}
	want, err := NormalizeURL(rawURL)
	if err != nil {
		return nil, fail("request URL: %v", err)
	}
	got, err := NormalizeURL(c.HTU)
	if err != nil || got != want {
		return nil, fail("htu does not match the request URL")
	}
	var iatF float64
	if err := json.Unmarshal(c.IAT, &iatF); err != nil || iatF <= 0 {
		return nil, fail("iat missing or not a number")
	}
	iat := time.Unix(int64(iatF), 0)
	now := v.now()
	if d := now.Sub(iat); d > v.window || d < -v.window {
		return nil, fail("iat outside the allowed window")
	}
	if accessToken != "" {
		if c.ATH != ATH(accessToken) { // ath is public (a hash): no secret compared
			return nil, fail("ath does not match the access token")
		}
	} else if c.ATH != "" {
		return nil, fail("ath given without an access token")
	}
	tp, err := jwk.Thumbprint(crypto.SHA256)
	if err != nil {
		return nil, fail("thumbprint of jwk")
	}
	jkt := base64.RawURLEncoding.EncodeToString(tp)
	if err := v.remember(jkt+"\x00"+c.JTI, iat.Add(v.window), now); err != nil {
		return nil, err
	}
	return &Proof{JKT: jkt, JTI: c.JTI, IssuedAt: iat}, nil
}

// remember records key until forget; it fails if key is already there.
func (v *Verifier) remember(key string, forget, now time.Time) error {
	v.mu.Lock()
	defer v.mu.Unlock()
	if until, ok := v.seen[key]; ok && now.Before(until) {
		return fail("proof replayed (jti seen before)")
	}
	if len(v.seen) >= v.max {
		for k, until := range v.seen {
			if !now.Before(until) {
				delete(v.seen, k)
			}
		}
		if len(v.seen) >= v.max {
			return fail("too many proofs in the window; try again shortly")
		}
	}
	// Keep it until its iat leaves the window: a later replay fails the
	// iat check instead.
	if forget.Before(now) {
		forget = now
	}
	v.seen[key] = forget.Add(time.Second)
	return nil
}

// ATH returns the ath claim for an access token: base64url(SHA-256(token)).
func ATH(accessToken string) string {
	sum := sha256.Sum256([]byte(accessToken))
	return base64.RawURLEncoding.EncodeToString(sum[:])
}

// Thumbprint returns the RFC 7638 SHA-256 thumbprint of a public key, as
// base64url: the jkt that tokens are bound to.
func Thumbprint(k *jose.JSONWebKey) (string, error) {
	tp, err := k.Thumbprint(crypto.SHA256)
	if err != nil {
		return "", fmt.Errorf("dpop: thumbprint: %w", err)
	}
	return base64.RawURLEncoding.EncodeToString(tp), nil
}

// NormalizeURL returns an absolute http(s) URL as htu compares it
// (RFC 9449 section 4.3, RFC 3986 section 6): scheme and host lower case,
// the default port dropped, an empty path made "/", query and fragment
// removed.
func NormalizeURL(raw string) (string, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return "", errors.New("not a URL")
	}
	scheme := strings.ToLower(u.Scheme)
	if scheme != "https" && scheme != "http" {
		return "", errors.New("not an http(s) URL")
	}
	if u.Host == "" || u.User != nil {
		return "", errors.New("no host, or user info present")
	}
	host := strings.ToLower(u.Hostname())
	port := u.Port()
	if port == "443" && scheme == "https" || port == "80" && scheme == "http" {
		port = ""
	}
	if strings.Contains(host, ":") {
		host = "[" + host + "]"
	}
	if port != "" {
		host += ":" + port
	}
	path := u.EscapedPath()
	if path == "" {
		path = "/"
	}
	return scheme + "://" + host + path, nil
}
