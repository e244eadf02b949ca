package smart

import (
	"context"
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"

	"github.com/ehrvault/ehrvault/internal/store"
)

// OpenID Connect (SMART App Launch v2 "sso-openid-connect"): an app
// granted openid gets an id_token beside its access token, signed RS256
// with one server-wide RSA key that is made on first need and kept sealed
// in the store like every other record.

// IDTokenTTL is the life of an id_token.
const IDTokenTTL = 5 * time.Minute

// MaxNonce is the longest nonce an authorization request may carry.
const MaxNonce = 256

const (
	kindSigning  = "smart.signing" // the id_token signing key (one record)
	signingID    = "sig_rs256"     // its fixed id: a second create fails, so one key wins
	signingBits  = 2048
	signingAlg   = jose.RS256
	signingValue = "rs256" // the lookup's value
)

// signingRecord is the sealed form of the signing key.
type signingRecord struct {
	Alg     string    `json:"alg"`
	KID     string    `json:"kid"`
	Key     []byte    `json:"key"` // PKCS #8 DER
	Created time.Time `json:"created"`
}

// signingKey is the loaded key.
type signingKey struct {
	kid  string
	priv *rsa.PrivateKey
}

// signer returns the signing key, loading it from the store or, if there
// is none yet, making it. Of two servers making one at once, the store's
// unique id lets one create succeed; the other reads the winner's.
func (s *Server) signer(ctx context.Context) (*signingKey, error) {
	s.keyMu.Lock()
	defer s.keyMu.Unlock()
	if s.key != nil {
		return s.key, nil
	}
	k, err := s.loadSigningKey(ctx)
	if errors.Is(err, store.ErrNotFound) {
		var priv *rsa.PrivateKey
		priv, err = rsa.GenerateKey(rand.Reader, signingBits)
		if err != nil {
			return nil, fmt.Errorf("signing key: generate: %w", err)
		}
		k = &signingKey{priv: priv}
		if k.kid, err = thumbprint(&priv.PublicKey); err != nil {
			return nil, err
		}
		der, err := x509.MarshalPKCS8PrivateKey(priv)
		if err != nil {
			return nil, fmt.Errorf("signing key: encode: %w", err)
		}
		rec := signingRecord{Alg: string(signingAlg), KID: k.kid, Key: der, Created: s.now().UTC()}
		err = s.create(ctx, kindSigning, signingID, s.lookup(kindSigning, signingValue), "", &rec, time.Time{})
		if errors.Is(err, store.ErrExists) {
			// Another server was quicker: use its key.
			k, err = s.loadSigningKey(ctx)
		}
	}
	if err != nil {
		return nil, fmt.Errorf("signing key: %w", err)
	}
	s.key = k
	return k, nil
}

func (s *Server) loadSigningKey(ctx context.Context) (*signingKey, error) {
	var rec signingRecord
	if _, err := s.find(ctx, kindSigning, signingValue, &rec); err != nil {
		return nil, err
	}
	parsed, err := x509.ParsePKCS8PrivateKey(rec.Key)
	if err != nil {
		return nil, errors.New("signing key: damaged record")
	}
	priv, ok := parsed.(*rsa.PrivateKey)
	if !ok || rec.Alg != string(signingAlg) {
		return nil, errors.New("signing key: not an RS256 key")
	}
	kid, err := thumbprint(&priv.PublicKey)
	if err != nil {
		return nil, err
	}
	return &signingKey{kid: kid, priv: priv}, nil
}

// thumbprint is the RFC 7638 SHA-256 thumbprint of pub, base64url: the
// key's kid.
func thumbprint(pub *rsa.PublicKey) (string, error) {
	sum, err := (&jose.JSONWebKey{Key: pub}).Thumbprint(crypto.SHA256)
	if err != nil {
		return "", fmt.Errorf("signing key: thumbprint: %w", err)
	}
	return base64.RawURLEncoding.EncodeToString(sum), nil
}

// jwk is the public half as a JWK.
func (k *signingKey) jwk() jose.JSONWebKey {
	return jose.JSONWebKey{Key: &k.priv.PublicKey, KeyID: k.kid, Algorithm: string(signingAlg), Use: "sig"}
}

// serveJWKS answers the JWK Set of the id_token signing key.
func (s *Server) serveJWKS(w http.ResponseWriter, r *http.Request) {
	k, err := s.signer(r.Context())
	if err != nil {
		s.writeError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, jose.JSONWebKeySet{Keys: []jose.JSONWebKey{k.jwk()}})
}

// serveOpenIDConfiguration is OpenID Connect Discovery 1.0 section 3.
func (s *Server) serveOpenIDConfiguration(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, map[string]any{
		"issuer":                                s.cfg.Issuer,
		"authorization_endpoint":                s.cfg.Issuer + PathAuthorize,
		"token_endpoint":                        s.tokenURL(),
		"jwks_uri":                              s.cfg.Issuer + PathJWKS,
		"response_types_supported":              []string{"code"},
		"subject_types_supported":               []string{"public"},
		"id_token_signing_alg_values_supported": []string{string(signingAlg)},
		"scopes_supported":                      []string{ScopeOpenID, ScopeFHIRUser, ScopeLaunchPatient, ScopeOffline, ScopeOnline},
		"grant_types_supported":                 []string{"authorization_code", "refresh_token", "client_credentials"},
		"token_endpoint_auth_methods_supported": []string{"private_key_jwt", "none"},
		"code_challenge_methods_supported":      []string{"S256"},
		"claims_supported":                      []string{"iss", "sub", "aud", "exp", "iat", "auth_time", "nonce", "fhirUser"},
	})
}

// idClaims are the claims of an id_token (OpenID Connect Core 1.0
// section 2; SMART App Launch v2 fhirUser).
type idClaims struct {
	jwt.Claims
	AuthTime *jwt.NumericDate `json:"auth_time,omitempty"`
	Nonce    string           `json:"nonce,omitempty"`
	FHIRUser string           `json:"fhirUser,omitempty"`
}

// idToken signs the id_token of a code's grant: sub is the user, aud the
// client; fhirUser only if granted and the user is linked to a patient.
func (s *Server) idToken(ctx context.Context, rec *codeRecord) (string, error) {
	k, err := s.signer(ctx)
	if err != nil {
		return "", err
	}
	now := s.now()
	c := idClaims{Claims: jwt.Claims{Issuer: s.cfg.Issuer, Subject: rec.User, Audience: jwt.Audience{rec.Client},
		IssuedAt: jwt.NewNumericDate(now), Expiry: jwt.NewNumericDate(now.Add(IDTokenTTL))}, Nonce: rec.Nonce}
	// The session's authentication ends with its last factor.
	var at time.Time
	for _, f := range rec.Factors {
		if f.At.After(at) {
			at = f.At
		}
	}
	if !at.IsZero() {
		c.AuthTime = jwt.NewNumericDate(at)
	}
	if slices.Contains(rec.Scopes, ScopeFHIRUser) && rec.LinkedPatient != "" {
		c.FHIRUser = s.cfg.FHIRBase + "/Patient/" + rec.LinkedPatient
	}
	sig, err := jose.NewSigner(jose.SigningKey{Algorithm: signingAlg, Key: k.priv},
		(&jose.SignerOptions{}).WithType("JWT").WithHeader("kid", k.kid))
	if err != nil {
		return "", fmt.Errorf("id_token: signer: %w", err)
	}
	tok, err := jwt.Signed(sig).Claims(c).Serialize()
	if err != nil {
		return "", fmt.Errorf("id_token: sign: %w", err)
	}
	return tok, nil
}
