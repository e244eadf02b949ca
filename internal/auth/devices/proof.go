package devices

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/go-jose/go-jose/v4"
)

// A device proves it holds its key by signing each request: a JWS in
// compact serialization (RFC 7515) whose protected header carries the
// public key (RFC 7515 4.1.3 "jwk") and the type, and whose payload says
// what the request is for:
//
//	header  {"alg":"ES256","typ":"ehrvault-device+jwt","jwk":{"kty":"EC","crv":"P-256","x":"…","y":"…"}}
//	payload {"act":"enroll","code":"ehd_…","iat":1764626400,"jti":"…","posture":{"os":"…","disk_encrypted":true,…}}
//
// act is "enroll" (with code and posture), "posture" (with posture) or
// "status". iat is the signing time in Unix seconds; jti is a random
// nonce of 16 to 64 characters, accepted once within ProofMaxAge.

// ProofType is the "typ" header of a device proof.
const ProofType = "ehrvault-device+jwt"

// ProofMaxAge is how old a proof may be; ProofMaxSkew how far in the
// future its iat may lie (the device's clock may run ahead).
const (
	ProofMaxAge  = 5 * time.Minute
	ProofMaxSkew = time.Minute
)

// maxProof bounds a proof's size: an RSA-4096 key and a posture fit.
const maxProof = 16 << 10

// seenMax bounds the remembered proof nonces.
const seenMax = 1 << 16

const (
	actEnroll  = "enroll"
	actPosture = "posture"
	actStatus  = "status"
)

// allowedAlgs are the only "alg" values a proof may carry: asymmetric
// signatures. "none" and the HMAC algorithms are absent, so a JWS "signed"
// with the public key as an HMAC secret fails to parse.
var allowedAlgs = []jose.SignatureAlgorithm{jose.ES256, jose.ES384, jose.EdDSA,
	jose.RS256, jose.RS384, jose.RS512, jose.PS256, jose.PS384, jose.PS512}

// claims is a proof's payload.
type claims struct {
	Act     string   `json:"act"`
	Code    string   `json:"code,omitempty"`
	IAT     int64    `json:"iat"`
	JTI     string   `json:"jti"`
	Posture *Posture `json:"posture,omitempty"`
}

// proofs remembers the nonces of accepted proofs until they are too old
// to be accepted anyway.
type proofs struct {
	seenMu sync.Mutex
	seen   map[string]time.Time // jti → when it stops mattering
}

// verified is a proof that passed.
type verified struct {
	key    *jose.JSONWebKey
	jkt    string
	claims claims
}

// Thumbprint returns the RFC 7638 SHA-256 thumbprint of k, base64url
// without padding: the "jkt" of RFC 9449.
func Thumbprint(k *jose.JSONWebKey) (string, error) {
	t, err := k.Thumbprint(crypto.SHA256)
	if err != nil {
		return "", fmt.Errorf("thumbprint: %w", err)
	}
	return base64.RawURLEncoding.EncodeToString(t), nil
}

// CheckKey returns nil if k is a public key of a kind devices may enroll:
// EC P-256 or P-384, Ed25519, RSA of at least 2048 bits; and the
// algorithms a signature by it may use.
func CheckKey(k *jose.JSONWebKey) ([]jose.SignatureAlgorithm, error) {
	if k == nil || !k.Valid() {
		return nil, errors.New("key: not a valid JWK")
	}
	if !k.IsPublic() {
		return nil, errors.New("key: a private or symmetric key was sent; send the public key only")
	}
	switch pk := k.Key.(type) {
	case *ecdsa.PublicKey:
		switch pk.Curve {
		case elliptic.P256():
			return []jose.SignatureAlgorithm{jose.ES256}, nil
		case elliptic.P384():
			return []jose.SignatureAlgorithm{jose.ES384}, nil
		}
		return nil, errors.New("key: EC keys must use P-256 or P-384")
	case ed25519.PublicKey:
		return []jose.SignatureAlgorithm{jose.EdDSA}, nil
	case *rsa.PublicKey:
		if pk.N.BitLen() < 2048 {
			return nil, errors.New("key: RSA keys must have at least 2048 bits")
		}
		return []jose.SignatureAlgorithm{jose.RS256, jose.RS384, jose.RS512, jose.PS256, jose.PS384, jose.PS512}, nil
	}
	return nil, errors.New("key: type not allowed; use EC P-256/P-384, Ed25519 or RSA")
}

// verifyProof checks a device's signed request for act and returns its
// key and claims.
func (r *Registry) verifyProof(s, act string) (*verified, error) {
	if s == "" {
		return nil, fmt.Errorf("%w: no proof", ErrProof)
	}
	if len(s) > maxProof {
		return nil, fmt.Errorf("%w: proof longer than %d bytes", ErrProof, maxProof)
	}
	obj, err := jose.ParseSignedCompact(s, allowedAlgs)
	if err != nil {
		// go-jose refuses here a disallowed alg (none, HS*) and an
		// embedded private or symmetric key.
		return nil, fmt.Errorf("%w: not a compact JWS with an allowed alg and a public jwk", ErrProof)
	}
	if len(obj.Signatures) != 1 {
		return nil, fmt.Errorf("%w: want exactly one signature", ErrProof)
	}
	h := obj.Signatures[0].Protected
	if typ, _ := h.ExtraHeaders[jose.HeaderType].(string); typ != ProofType {
		return nil, fmt.Errorf("%w: typ must be %s", ErrProof, ProofType)
	}
	if h.JSONWebKey == nil {
		return nil, fmt.Errorf("%w: no jwk in the protected header", ErrProof)
	}
	algs, err := CheckKey(h.JSONWebKey)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrProof, err)
	}
	ok := false
	for _, a := range algs {
		ok = ok || string(a) == h.Algorithm
	}
	if !ok {
		return nil, fmt.Errorf("%w: alg %q does not fit the key", ErrProof, h.Algorithm)
	}
	payload, err := obj.Verify(h.JSONWebKey.Key)
	if err != nil {
		return nil, fmt.Errorf("%w: signature does not verify with the jwk", ErrProof)
	}
	var c claims
	if err := json.Unmarshal(payload, &c); err != nil {
		return nil, fmt.Errorf("%w: payload is not a JSON object of claims", ErrProof)
	}
	if c.Act != act {
		return nil, fmt.Errorf("%w: act must be %q", ErrProof, act)
	}
	now := r.now()
	iat := time.Unix(c.IAT, 0)
	if iat.Before(now.Add(-ProofMaxAge)) || iat.After(now.Add(ProofMaxSkew)) {
		return nil, fmt.Errorf("%w: iat is not within %s of the server's time", ErrProof, ProofMaxAge)
	}
	if len(c.JTI) < 16 || len(c.JTI) > 64 {
		return nil, fmt.Errorf("%w: jti must be 16 to 64 characters", ErrProof)
	}
	jkt, err := Thumbprint(h.JSONWebKey)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrProof, err)
	}
	if !r.proofs.first(jkt+"\x00"+c.JTI, now, iat.Add(ProofMaxAge+ProofMaxSkew)) {
		return nil, fmt.Errorf("%w: proof replayed", ErrProof)
	}
	return &verified{key: h.JSONWebKey, jkt: jkt, claims: c}, nil
}

// first reports whether nonce is new, remembering it until until.
func (p *proofs) first(nonce string, now, until time.Time) bool {
	p.seenMu.Lock()
	defer p.seenMu.Unlock()
	if t, ok := p.seen[nonce]; ok && now.Before(t) {
		return false
	}
	if len(p.seen) >= seenMax {
		for k, t := range p.seen {
			if !now.Before(t) {
				delete(p.seen, k)
			}
		}
		if len(p.seen) >= seenMax {
			// Full of live nonces: refuse rather than forget one that
			// could then be replayed.
			return false
		}
	}
	p.seen[nonce] = until
	return true
}

// Key is the device side of the protocol: a private key that signs
// proofs. It never leaves the device.
type Key struct {
	signer crypto.Signer
	alg    jose.SignatureAlgorithm
	jwk    jose.JSONWebKey // public
	jkt    string
}

// NewKey wraps a device's private key (*ecdsa.PrivateKey on P-256 or
// P-384, ed25519.PrivateKey, *rsa.PrivateKey of at least 2048 bits).
func NewKey(priv crypto.Signer) (*Key, error) {
	pub := jose.JSONWebKey{Key: priv.Public()}
	algs, err := CheckKey(&pub)
	if err != nil {
		return nil, err
	}
	jkt, err := Thumbprint(&pub)
	if err != nil {
		return nil, err
	}
	alg := algs[0]
	if _, ok := priv.(*rsa.PrivateKey); ok {
		alg = jose.PS256
	}
	return &Key{signer: priv, alg: alg, jwk: pub, jkt: jkt}, nil
}

// GenerateKey makes a new P-256 device key.
func GenerateKey() (*Key, error) {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	return NewKey(k)
}

// JKT returns the RFC 7638 thumbprint of the key, base64url: what
// DeviceByKey and DPoP's cnf.jkt use.
func (k *Key) JKT() string { return k.jkt }

// Signer returns the private key, e.g. to sign DPoP proofs.
func (k *Key) Signer() crypto.Signer { return k.signer }

// Public returns the public key as a JWK.
func (k *Key) Public() jose.JSONWebKey { return k.jwk }

// Proof signs a proof for act ("enroll", "posture" or "status") at now.
// code is for enroll, p for enroll and posture.
func (k *Key) Proof(act, code string, p *Posture, now time.Time) (string, error) {
	var jti [18]byte
	rand.Read(jti[:]) // never fails (crypto/rand)
	payload, err := json.Marshal(claims{Act: act, Code: code, IAT: now.Unix(), JTI: base64.RawURLEncoding.EncodeToString(jti[:]), Posture: p})
	if err != nil {
		return "", err
	}
	opts := (&jose.SignerOptions{EmbedJWK: true}).WithType(ProofType)
	s, err := jose.NewSigner(jose.SigningKey{Algorithm: k.alg, Key: k.signer}, opts)
	if err != nil {
		return "", fmt.Errorf("proof signer: %w", err)
	}
	obj, err := s.Sign(payload)
	if err != nil {
		return "", fmt.Errorf("sign proof: %w", err)
	}
	return obj.CompactSerialize()
}
