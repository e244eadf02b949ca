// Package dpoptest makes DPoP proofs for tests: a client's key pair and
// the proofs it signs, including deliberately broken ones.
package dpoptest

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"time"

	jose "github.com/go-jose/go-jose/v4"

	"github.com/ehrvault/ehrvault/internal/auth/dpop"
)

// Key is a client's DPoP key pair (P-256, ES256).
type Key struct {
	Private *ecdsa.PrivateKey
	JWK     jose.JSONWebKey // the public key
	JKT     string          // its RFC 7638 thumbprint
}

// NewKey makes a key pair; it panics if the system has no randomness.
func NewKey() *Key {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		panic(err)
	}
	pub := jose.JSONWebKey{Key: &k.PublicKey, Algorithm: string(jose.ES256), Use: "sig"}
	jkt, err := dpop.Thumbprint(&pub)
	if err != nil {
		panic(err)
	}
	return &Key{Private: k, JWK: pub, JKT: jkt}
}

// Claims of a proof; zero fields are filled by Proof.
type Claims struct {
	JTI string `json:"jti,omitempty"`
	HTM string `json:"htm,omitempty"`
	HTU string `json:"htu,omitempty"`
	IAT int64  `json:"iat,omitempty"`
	ATH string `json:"ath,omitempty"`
}

// Proof signs a proof for method and url at time at, bound to
// accessToken when it is not "".
func (k *Key) Proof(method, url, accessToken string, at time.Time) string {
	c := Claims{HTM: method, HTU: url, IAT: at.Unix()}
	if accessToken != "" {
		c.ATH = dpop.ATH(accessToken)
	}
	return k.Sign(c, "dpop+jwt", true)
}

// Sign signs claims as they are (a random jti if empty) with typ, and
// the public key in the header when withJWK.
func (k *Key) Sign(c Claims, typ string, withJWK bool) string {
	if c.JTI == "" {
		var b [12]byte
		rand.Read(b[:])
		c.JTI = hex.EncodeToString(b[:])
	}
	payload, _ := json.Marshal(c)
	opts := (&jose.SignerOptions{}).WithType(jose.ContentType(typ))
	if withJWK {
		opts.EmbedJWK = true
	}
	s, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.ES256, Key: k.Private}, opts)
	if err != nil {
		panic(err)
	}
	jws, err := s.Sign(payload)
	if err != nil {
		panic(err)
	}
	out, err := jws.CompactSerialize()
	if err != nil {
		panic(err)
	}
	return out
}

// Thumbprint is the jkt of a public key given as JWK JSON.
func Thumbprint(pub crypto.PublicKey) string {
	j := jose.JSONWebKey{Key: pub}
	tp, _ := j.Thumbprint(crypto.SHA256)
	return base64.RawURLEncoding.EncodeToString(tp)
}
