package edge

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"io"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/chacha20poly1305"
)

// testSealer is an XChaCha20-Poly1305 sealer like keyring.Sealer.
type testSealer struct{ key [32]byte }

func (s *testSealer) Seal(pt, ad []byte) []byte {
	aead, _ := chacha20poly1305.NewX(s.key[:])
	nonce := make([]byte, aead.NonceSize())
	rand.Read(nonce)
	return aead.Seal(nonce, nonce, pt, ad)
}

func (s *testSealer) Open(b, ad []byte) ([]byte, error) {
	aead, _ := chacha20poly1305.NewX(s.key[:])
	if len(b) < aead.NonceSize() {
		return nil, errors.New("short")
	}
	return aead.Open(nil, b[:aead.NonceSize()], b[aead.NonceSize():], ad)
}

func newSealer() *testSealer {
	s := &testSealer{}
	rand.Read(s.key[:])
	return s
}

func tlsServer(t *testing.T, cfg *tls.Config) *httptest.Server {
	t.Helper()
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if c := ClientCert(r); c != nil {
			io.WriteString(w, "client "+c.Subject.CommonName+" "+CertThumbprint(c))
			return
		}
		io.WriteString(w, "hello")
	}))
	srv.TLS = cfg
	srv.StartTLS()
	t.Cleanup(srv.Close)
	return srv
}

func TestSelfSigned(t *testing.T) {
	dir := t.TempDir()
	seal := newSealer()
	now := time.Now()
	cert, made, err := EnsureSelfSigned(dir, seal, now)
	if err != nil || !made {
		t.Fatalf("EnsureSelfSigned = made %v, %v", made, err)
	}
	leaf := cert.Leaf
	if leaf.PublicKeyAlgorithm != x509.ECDSA || leaf.PublicKey.(*ecdsa.PublicKey).Curve != elliptic.P256() {
		t.Errorf("key is %v, want ECDSA P-256", leaf.PublicKeyAlgorithm)
	}
	if d := leaf.NotAfter.Sub(now); d < CertLifetime-time.Minute || d > CertLifetime+time.Minute {
		t.Errorf("certificate valid for %v, want %v", d, CertLifetime)
	}
	for _, h := range []string{"localhost", "127.0.0.1", "::1"} {
		if err := leaf.VerifyHostname(h); err != nil {
			t.Errorf("VerifyHostname(%s): %v", h, err)
		}
	}
	if hn, _ := os.Hostname(); hn != "" {
		if err := leaf.VerifyHostname(hn); err != nil {
			t.Errorf("VerifyHostname(host name %s): %v", hn, err)
		}
	}

	// The key on disk is sealed: no PEM private key, and the DER of the
	// key does not appear.
	raw, _ := os.ReadFile(filepath.Join(dir, KeyFile))
	pkcs8, _ := x509.MarshalPKCS8PrivateKey(cert.PrivateKey)
	blk, _ := pem.Decode(raw)
	if blk == nil || blk.Type != sealedKeyPEM || strings.Contains(string(blk.Bytes), string(pkcs8)) || strings.Contains(string(raw), "BEGIN PRIVATE KEY") {
		t.Fatal("the key file does not hold the key sealed")
	}
	if fi, _ := os.Stat(filepath.Join(dir, KeyFile)); fi.Mode().Perm() != 0o600 {
		t.Errorf("key file mode %v, want 0600", fi.Mode().Perm())
	}
	if _, err := LoadSelfSigned(dir, newSealer()); err == nil {
		t.Error("LoadSelfSigned with another sealer key succeeded")
	}
	again, made, err := EnsureSelfSigned(dir, seal, now.Add(time.Hour))
	if err != nil || made || !again.Leaf.Equal(leaf) {
		t.Fatalf("EnsureSelfSigned again = made %v, %v; want the same certificate", made, err)
	}
	if _, made, _ := EnsureSelfSigned(t.TempDir(), seal, now); !made {
		t.Fatal("EnsureSelfSigned in a new directory did not make a certificate")
	}
	renewDir := t.TempDir()
	EnsureSelfSigned(renewDir, seal, now)
	if _, made, _ := EnsureSelfSigned(renewDir, seal, now.Add(CertLifetime-renewBefore)); !made {
		t.Error("EnsureSelfSigned near expiry did not renew")
	}

	// A TLS client that trusts the certificate connects; TLS 1.1 is refused.
	cert, err = LoadSelfSigned(dir, seal)
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := ServerConfig(cert, "")
	if err != nil {
		t.Fatal(err)
	}
	srv := tlsServer(t, cfg)
	roots := x509.NewCertPool()
	roots.AddCert(cert.Leaf)
	client := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots}}}
	resp, err := client.Get(strings.Replace(srv.URL, "127.0.0.1", "localhost", 1))
	if err != nil {
		t.Fatalf("GET over TLS with the certificate as root: %v", err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(body) != "hello" || resp.TLS.Version < tls.VersionTLS12 {
		t.Errorf("GET = %q over %x", body, resp.TLS.Version)
	}
	old := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots, MaxVersion: tls.VersionTLS11}}}
	if resp, err := old.Get(srv.URL); err == nil {
		resp.Body.Close()
		t.Error("a TLS 1.1 client connected")
	}
	other := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: x509.NewCertPool()}}}
	if resp, err := other.Get(srv.URL); err == nil {
		resp.Body.Close()
		t.Error("a client that does not trust the certificate connected")
	}
}

// newCA makes a CA and a client certificate it signed.
func newCA(t *testing.T, name string) (caPEM []byte, client tls.Certificate) {
	t.Helper()
	caKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	ca := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: name + " CA"}, NotBefore: time.Now().Add(-time.Hour),
		NotAfter: time.Now().Add(time.Hour), IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	caDER, err := x509.CreateCertificate(rand.Reader, ca, ca, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	caCert, _ := x509.ParseCertificate(caDER)
	k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	leaf := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: name}, NotBefore: time.Now().Add(-time.Hour),
		NotAfter: time.Now().Add(time.Hour), ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}, KeyUsage: x509.KeyUsageDigitalSignature}
	der, err := x509.CreateCertificate(rand.Reader, leaf, caCert, &k.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER}), tls.Certificate{Certificate: [][]byte{der}, PrivateKey: k}
}

func TestClientCertificates(t *testing.T) {
	dir := t.TempDir()
	cert, err := GenerateSelfSigned(dir, newSealer(), DefaultHosts(), time.Now())
	if err != nil {
		t.Fatal(err)
	}
	caPEM, good := newCA(t, "ward-7")
	_, rogue := newCA(t, "rogue")
	caFile := filepath.Join(dir, "clients.pem")
	os.WriteFile(caFile, caPEM, 0o644)
	cfg, err := ServerConfig(cert, caFile)
	if err != nil {
		t.Fatal(err)
	}
	srv := tlsServer(t, cfg)
	roots := x509.NewCertPool()
	roots.AddCert(cert.Leaf)
	get := func(certs ...tls.Certificate) (string, error) {
		cc := &tls.Config{RootCAs: roots}
		if len(certs) > 0 {
			// Send the certificate even if its CA is not one the server
			// names, as an attacker would.
			cc.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return &certs[0], nil }
		}
		c := &http.Client{Transport: &http.Transport{TLSClientConfig: cc}}
		resp, err := c.Get(srv.URL)
		if err != nil {
			return "", err
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return string(b), nil
	}
	if body, err := get(good); err != nil || !strings.HasPrefix(body, "client ward-7 ") {
		t.Errorf("GET with a client certificate of the CA = %q, %v", body, err)
	} else if x5t := strings.Fields(body)[2]; len(x5t) != 43 {
		t.Errorf("CertThumbprint = %q, want 43 base64url characters", x5t)
	}
	if body, err := get(); err != nil || body != "hello" {
		t.Errorf("GET without a client certificate = %q, %v; want hello", body, err)
	}
	if body, err := get(rogue); err == nil {
		t.Errorf("GET with a certificate of another CA = %q, want a handshake failure", body)
	}
	if _, err := ServerConfig(cert, filepath.Join(dir, "missing.pem")); err == nil {
		t.Error("ServerConfig with a missing CA file succeeded")
	}
}

func TestPlainHTTP(t *testing.T) {
	tests := []struct {
		listen   string
		insecure bool
		plain    bool
		err      bool
	}{
		{"0.0.0.0:8443", false, false, false},
		{"127.0.0.1:8080", true, true, false},
		{"127.9.9.9:8080", true, true, false},
		{"[::1]:8080", true, true, false},
		{"localhost:8080", true, true, false},
		{"[::ffff:127.0.0.1]:8080", true, true, false},
		{"0.0.0.0:8080", true, false, true},
		{":8080", true, false, true},
		{"[::]:8080", true, false, true},
		{"10.1.2.3:8080", true, false, true},
		{"ehr.example.org:8080", true, false, true},
		{"[fe80::1%eth0]:8080", true, false, true},
		{"127.0.0.1", true, false, true}, // no port
	}
	for _, tt := range tests {
		plain, err := PlainHTTP(tt.listen, tt.insecure)
		if plain != tt.plain || (err != nil) != tt.err {
			t.Errorf("PlainHTTP(%q, %v) = %v, %v; want %v, error %v", tt.listen, tt.insecure, plain, err, tt.plain, tt.err)
		}
	}
	_, err := PlainHTTP("0.0.0.0:8080", true)
	if !errors.Is(err, ErrPlainHTTP) || !strings.Contains(err.Error(), "127.0.0.1") {
		t.Errorf("PlainHTTP(0.0.0.0) error = %v, want ErrPlainHTTP saying what to use", err)
	}
}

// TestServeTLS serves as cmd/ehrvault will: http.Server with ServerConfig
// and ServeTLS on a loopback listener; HTTP/2 and HTTP/1.1 both work.
func TestServeTLS(t *testing.T) {
	cert, err := GenerateSelfSigned(t.TempDir(), newSealer(), DefaultHosts(), time.Now())
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := ServerConfig(cert, "")
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: SecurityHeaders(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, r.Proto) })), TLSConfig: cfg}
	go srv.ServeTLS(ln, "", "")
	defer srv.Close()
	roots := x509.NewCertPool()
	roots.AddCert(cert.Leaf)
	for _, h2 := range []bool{true, false} {
		c := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots}, ForceAttemptHTTP2: h2}}
		resp, err := c.Get("https://" + ln.Addr().String() + "/")
		if err != nil {
			t.Fatalf("GET (h2 %v): %v", h2, err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		want := "HTTP/1.1"
		if h2 {
			want = "HTTP/2.0"
		}
		if string(b) != want || resp.Header.Get("Strict-Transport-Security") != HSTS {
			t.Errorf("GET (h2 %v) = %q, HSTS %q; want %s with HSTS", h2, b, resp.Header.Get("Strict-Transport-Security"), want)
		}
	}
}
