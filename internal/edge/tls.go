// Package edge is what stands between the network and ehrvault's handlers:
// TLS, the choice of listener, security headers, request size limits,
// rate limits and source-address allowlists. It knows nothing of FHIR;
// cmd/ehrvault wires it around the API.
//
// # Promises
//
//   - HTTPS by default, TLS 1.2 or newer with AEAD cipher suites and
//     forward secrecy only. Plain HTTP only when asked for and only on a
//     loopback address (PlainHTTP).
//   - A self-signed certificate made at init (ECDSA P-256, a year) keeps
//     its private key sealed at rest by a keyring Sealer; the operator may
//     bring their own certificate instead.
//   - A client certificate, when the server asks for them, is exposed only
//     if it verified against the configured CAs (ClientCert).
//   - Limits answer with a small JSON body saying which limit was hit:
//     413 for a body past the limit, 429 with Retry-After when a rate is
//     exceeded. Their memory is bounded: least recently seen sources are
//     forgotten first.
//   - A source address is r.RemoteAddr unless it is one of the configured
//     trusted proxies; X-Forwarded-For is believed only from those.
//
// # Non-promises
//
//   - Rate limits are per process; two servers each allow the rate.
//   - IPv6 sources are limited per /64, since one host commonly holds a
//     whole /64; allowlists match whole addresses.
package edge

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"time"
)

// Files of the self-signed certificate in the data directory.
const (
	CertFile = "tls-cert.pem"   // the certificate, PEM (not secret)
	KeyFile  = "tls-key.sealed" // the private key, PKCS #8, sealed, PEM-armoured
)

// KeyAD is the associated data that binds the sealed key to its use.
const KeyAD = "tls-key"

// CertLifetime is how long a self-signed certificate is valid.
const CertLifetime = 365 * 24 * time.Hour

// renewBefore: EnsureSelfSigned makes a new certificate when the old one
// has less than this left.
const renewBefore = 30 * 24 * time.Hour

// sealedKeyPEM is the PEM type of the sealed key file.
const sealedKeyPEM = "EHRVAULT SEALED PRIVATE KEY"

// Sealer seals the private key at rest; *keyring.Sealer is one.
type Sealer interface {
	// Seal encrypts and authenticates plaintext, binding ad.
	Seal(plaintext, ad []byte) []byte
	// Open reverses Seal with the same ad.
	Open(sealed, ad []byte) ([]byte, error)
}

// DefaultHosts are the names every self-signed certificate carries, with
// the machine's host name.
func DefaultHosts() []string {
	hosts := []string{"localhost", "127.0.0.1", "::1"}
	if h, err := os.Hostname(); err == nil && h != "" && h != "localhost" {
		hosts = append(hosts, h)
	}
	return hosts
}

// GenerateSelfSigned makes a self-signed ECDSA P-256 certificate for
// hosts (names or IP addresses), valid from now for CertLifetime, writes
// it to dir/CertFile and its private key, sealed by seal, to dir/KeyFile,
// replacing any there, and returns it.
func GenerateSelfSigned(dir string, seal Sealer, hosts []string, now time.Time) (tls.Certificate, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("tls: generate key: %w", err)
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 128))
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("tls: serial: %w", err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: "ehrvault self-signed", Organization: []string{"ehrvault"}},
		NotBefore:             now.Add(-time.Hour), // tolerate clients whose clock runs a little behind
		NotAfter:              now.Add(CertLifetime),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		// IsCA lets clients trust this certificate as its own root, which
		// is how a self-signed certificate is pinned.
		IsCA: true,
	}
	for _, h := range hosts {
		if ip := net.ParseIP(h); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else if h != "" {
			tmpl.DNSNames = append(tmpl.DNSNames, h)
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("tls: create certificate: %w", err)
	}
	pkcs8, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("tls: encode key: %w", err)
	}
	sealed := seal.Seal(pkcs8, []byte(KeyAD))
	clear(pkcs8)
	if err := writeFile(filepath.Join(dir, KeyFile), pem.EncodeToMemory(&pem.Block{Type: sealedKeyPEM, Bytes: sealed}), 0o600); err != nil {
		return tls.Certificate{}, err
	}
	if err := writeFile(filepath.Join(dir, CertFile), pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
		return tls.Certificate{}, err
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("tls: parse certificate: %w", err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}, nil
}

// writeFile writes data to path through a temporary file and a rename,
// so that a crash leaves the old file or the new one.
func writeFile(path string, data []byte, perm os.FileMode) error {
	tmp := path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, perm)
	if err != nil {
		return fmt.Errorf("tls: write %s: %w", filepath.Base(path), err)
	}
	_, err = f.Write(data)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		os.Remove(tmp)
		return fmt.Errorf("tls: write %s: %w", filepath.Base(path), err)
	}
	return nil
}

// LoadSelfSigned reads the certificate and sealed key that
// GenerateSelfSigned wrote to dir; an error wrapping os.ErrNotExist if
// there are none.
func LoadSelfSigned(dir string, seal Sealer) (tls.Certificate, error) {
	certPEM, err := os.ReadFile(filepath.Join(dir, CertFile))
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("tls: read certificate: %w", err)
	}
	keyPEM, err := os.ReadFile(filepath.Join(dir, KeyFile))
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("tls: read key: %w", err)
	}
	cb, _ := pem.Decode(certPEM)
	kb, _ := pem.Decode(keyPEM)
	if cb == nil || cb.Type != "CERTIFICATE" {
		return tls.Certificate{}, fmt.Errorf("tls: %s holds no PEM certificate", CertFile)
	}
	if kb == nil || kb.Type != sealedKeyPEM {
		return tls.Certificate{}, fmt.Errorf("tls: %s holds no sealed key", KeyFile)
	}
	pkcs8, err := seal.Open(kb.Bytes, []byte(KeyAD))
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("tls: unseal %s: %w", KeyFile, err)
	}
	key, err := x509.ParsePKCS8PrivateKey(pkcs8)
	clear(pkcs8)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("tls: parse key: %w", err)
	}
	leaf, err := x509.ParseCertificate(cb.Bytes)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("tls: parse certificate: %w", err)
	}
	ek, ok := key.(*ecdsa.PrivateKey)
	if !ok || !ek.PublicKey.Equal(leaf.PublicKey) {
		return tls.Certificate{}, errors.New("tls: the sealed key does not belong to the certificate")
	}
	return tls.Certificate{Certificate: [][]byte{cb.Bytes}, PrivateKey: key, Leaf: leaf}, nil
}

// EnsureSelfSigned loads the self-signed certificate of dir, making a new
// one (for DefaultHosts) if there is none or it expires within 30 days.
// It reports whether it made one.
func EnsureSelfSigned(dir string, seal Sealer, now time.Time) (tls.Certificate, bool, error) {
	c, err := LoadSelfSigned(dir, seal)
	if err == nil && now.Add(renewBefore).Before(c.Leaf.NotAfter) {
		return c, false, nil
	}
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return tls.Certificate{}, false, err
	}
	c, err = GenerateSelfSigned(dir, seal, DefaultHosts(), now)
	return c, err == nil, err
}

// LoadKeyPair reads an operator's certificate chain and private key (PEM
// files, as for --tls-cert and --tls-key).
func LoadKeyPair(certFile, keyFile string) (tls.Certificate, error) {
	c, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("tls: load --tls-cert/--tls-key: %w", err)
	}
	return c, nil
}

// cipherSuites are the TLS 1.2 suites offered: ECDHE for forward secrecy,
// AEADs only. (TLS 1.3's suites are fixed by crypto/tls and all good.)
var cipherSuites = []uint16{
	tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
	tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
	tls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
	tls.TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
	tls.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
	tls.TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
}

// ServerConfig returns the server's TLS configuration for cert, for
// http.Server.TLSConfig and ServeTLS(ln, "", ""). If
// clientCAFile is set (--tls-client-ca, PEM), clients may present a
// certificate, which must then verify against those CAs (a client without
// one still connects; ClientCert tells the handlers which did).
func ServerConfig(cert tls.Certificate, clientCAFile string) (*tls.Config, error) {
	cfg := &tls.Config{
		MinVersion:   tls.VersionTLS12,
		CipherSuites: cipherSuites,
		Certificates: []tls.Certificate{cert},
		// NextProtos is left to http.Server.ServeTLS, which adds h2.
	}
	if clientCAFile != "" {
		b, err := os.ReadFile(clientCAFile)
		if err != nil {
			return nil, fmt.Errorf("tls: read --tls-client-ca: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(b) {
			return nil, fmt.Errorf("tls: --tls-client-ca %s holds no PEM certificate", clientCAFile)
		}
		cfg.ClientCAs = pool
		cfg.ClientAuth = tls.VerifyClientCertIfGiven
	}
	return cfg, nil
}

// ClientCert returns the client certificate of r if one was presented and
// verified against the client CAs; nil otherwise.
func ClientCert(r *http.Request) *x509.Certificate {
	if r.TLS == nil || len(r.TLS.VerifiedChains) == 0 || len(r.TLS.VerifiedChains[0]) == 0 {
		return nil
	}
	return r.TLS.VerifiedChains[0][0]
}

// CertThumbprint returns the base64url SHA-256 of a certificate's DER: the
// "x5t#S256" confirmation of a certificate-bound token (RFC 8705 3.1).
func CertThumbprint(c *x509.Certificate) string {
	s := sha256.Sum256(c.Raw)
	return base64.RawURLEncoding.EncodeToString(s[:])
}
