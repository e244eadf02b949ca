// Package smart is ehrvault's SMART App Launch v2 authorization server:
// apps get tokens by authorization code with PKCE and a consent page,
// backend services and connected medical devices by client_credentials
// with a signed client assertion, and the FHIR API turns a presented
// token into an auth.Principal whose Scopes say what it may do.
//
// # Promises
//
//   - Every token is sender-constrained (DPoP, RFC 9449): the token
//     endpoint demands a proof, binds the access and refresh token to the
//     proof's key (cnf.jkt), and Authenticate refuses a token without a
//     fresh proof from that key, or sent as a Bearer token. For a person's
//     tokens the key must be an enrolled device (Devices.DeviceByKey), at
//     issue and on every request: revoking the device kills its tokens at
//     once. A backend service's or medical device's DPoP key need not be a
//     registered device; its client assertion already proves which program
//     it is, and DPoP keeps a copied token useless.
//   - Access tokens are 256 random bits, live at most 10 minutes (default
//     5) and are stored only as keyed hashes (keyring.PurposeAuthLookup);
//     refresh tokens and authorization codes likewise. Every record is
//     sealed (keyring.PurposeAuthSeal) with its kind and id as associated
//     data, so a copy of the database yields no token and no grant.
//   - Authorization codes live 60 seconds, are bound to the client, the
//     redirect URI, the PKCE challenge (S256 only) and the login session,
//     and work once: a second use revokes every token issued from the
//     first.
//   - Refresh tokens rotate on every use; presenting a used one revokes
//     the whole family (every refresh and access token descended from the
//     same code), including the newest.
//   - A person's tokens die with the login session behind them
//     (Sessions.Alive on every request): disabling the user, changing the
//     password or resetting MFA kills them. offline_access is granted but
//     does not outlive that session's absolute time-out.
//   - Granted scopes are the intersection of what was asked and what the
//     client is registered for (Grant); a medical device can only ever hold
//     write-only system/ scopes and reads nothing.
//   - Client assertions (RFC 7523) are verified with the client's
//     registered public keys under RS384, ES384, RS256 or ES256 only: alg
//     "none" and HMAC algorithms (including HS256 keyed with the public
//     key) never verify. Their jti is single use.
//   - An app granted openid gets an OpenID Connect id_token with the
//     tokens of its code (not on refresh): RS256, signed by one RSA 2048
//     key made with crypto/rand on first need and kept sealed in the store
//     (kind "smart.signing"); its public half is at PathJWKS with kid =
//     RFC 7638 thumbprint. Apps may always be granted openid and fhirUser;
//     services and devices never. fhirUser is only claimed for a patient
//     user linked to a patient record.
//   - Errors on the wire are RFC 6749 JSON errors; they name the parameter
//     at fault, never a token or a key.
//
// # Non-promises
//
//   - The signing key is never rotated; staff get no fhirUser claim (they
//     are not linked to Practitioner resources yet).
//   - EHR launch (the launch scope) and server DPoP nonces are not
//     implemented.
//   - A revocation made by another process (the CLI beside a server)
//     bites within CacheTTL.
//   - Expired records are deleted by store.PurgeAuthObjects, which the
//     caller runs from time to time.
package smart

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/ehrvault/ehrvault/internal/auth"
	"github.com/ehrvault/ehrvault/internal/auth/dpop"
	"github.com/ehrvault/ehrvault/internal/keyring"
	"github.com/ehrvault/ehrvault/internal/store"
)

// Sessions tells who is logged in to the server's own pages (implemented
// by the users package).
type Sessions interface {
	// Session returns the principal of the live browser session that sent
	// r (Kind auth.KindUser, User, Role, Session, Factors, and Patient for
	// a user linked to a patient record); auth.ErrUnauthenticated if none.
	Session(r *http.Request) (*auth.Principal, error)
	// LoginURL is the path of the login page that returns the browser to
	// next (a local path) after login.
	LoginURL(next string) string
	// Alive returns nil if tokens issued from the session may still be
	// used; auth.ErrUnauthenticated otherwise.
	Alive(ctx context.Context, sessionID string) error
}

// Devices tells whether a key belongs to an enrolled device (implemented
// by the devices package).
type Devices interface {
	// DeviceByKey returns the id of the approved, unrevoked device whose
	// key has this RFC 7638 thumbprint; auth.ErrUnauthenticated otherwise.
	DeviceByKey(ctx context.Context, jkt string) (string, error)
}

// Paths the Handler serves.
const (
	PathConfiguration = "/.well-known/smart-configuration"
	PathAuthorize     = "/auth/authorize"
	PathToken         = "/auth/token"
	PathIntrospect    = "/auth/introspect"
	PathRevoke        = "/auth/revoke"
	// PathJWKS is the JWK Set of the id_token signing key.
	PathJWKS = "/auth/jwks"
	// PathOpenIDConfiguration is OpenID Connect discovery.
	PathOpenIDConfiguration = "/.well-known/openid-configuration"
)

// Lifetimes.
const (
	DefaultAccessTTL  = 5 * time.Minute
	MaxAccessTTL      = 10 * time.Minute
	DefaultRefreshTTL = 12 * time.Hour
	CodeTTL           = 60 * time.Second
	// MaxAssertionTTL is how far ahead a client assertion's exp may be
	// (SMART Backend Services: no more than five minutes).
	MaxAssertionTTL = 5 * time.Minute
	// CacheTTL is how long a verified access token's record is kept in
	// memory before the store is asked again.
	CacheTTL = time.Second
)

// Config builds a Server.
type Config struct {
	// Issuer is the server's public origin, e.g. https://ehr.example.org;
	// the endpoints are Issuer + the Path constants.
	Issuer string
	// FHIRBase is the FHIR base URL, e.g. https://ehr.example.org/fhir:
	// the aud an app must name.
	FHIRBase string

	Store  store.AuthObjects
	Sealer *keyring.Sealer // keyring.PurposeAuthSeal
	MAC    *keyring.MAC    // keyring.PurposeAuthLookup

	Sessions Sessions
	Devices  Devices
	Recorder Recorder // nil: events are only logged

	// Operator reports whether r carries the operator's credential; such
	// a caller may use the introspection endpoint. nil: nobody.
	Operator func(r *http.Request) bool
	// PatientExists, if set, checks a patient id picked on the consent
	// page; it returns an error if there is no such patient.
	PatientExists func(ctx context.Context, id string) error
	// RequestURL returns the URL a client addressed, for DPoP's htu on
	// FHIR requests. nil: Issuer's origin + r.URL.EscapedPath(), which
	// needs r's full path (before any http.StripPrefix).
	RequestURL func(r *http.Request) string

	AccessTTL  time.Duration // default DefaultAccessTTL, at most MaxAccessTTL
	RefreshTTL time.Duration // life of a refresh family; default DefaultRefreshTTL
	DPoPWindow time.Duration // default dpop.DefaultWindow
	Now        func() time.Time
	Log        *slog.Logger
}

// Server is the authorization server and the verifier of its tokens.
type Server struct {
	cfg     Config
	clients *Clients
	proofs  *dpop.Verifier
	now     func() time.Time
	log     *slog.Logger
	mux     *http.ServeMux

	mu    sync.Mutex
	cache map[[32]byte]cachedToken

	keyMu sync.Mutex
	key   *signingKey // the id_token signing key, once loaded
}

// New checks cfg and returns a Server.
func New(cfg Config) (*Server, error) {
	switch {
	case cfg.Store == nil || cfg.Sealer == nil || cfg.MAC == nil:
		return nil, errors.New("smart: config: Store, Sealer and MAC are required")
	case cfg.Sessions == nil || cfg.Devices == nil:
		return nil, errors.New("smart: config: Sessions and Devices are required")
	case cfg.AccessTTL < 0 || cfg.AccessTTL > MaxAccessTTL:
		return nil, fmt.Errorf("smart: config: AccessTTL must be at most %s", MaxAccessTTL)
	}
	for name, u := range map[string]string{"Issuer": cfg.Issuer, "FHIRBase": cfg.FHIRBase} {
		if _, err := dpop.NormalizeURL(u); err != nil {
			return nil, fmt.Errorf("smart: config: %s: want an absolute http(s) URL", name)
		}
	}
	cfg.Issuer = strings.TrimSuffix(cfg.Issuer, "/")
	cfg.FHIRBase = strings.TrimSuffix(cfg.FHIRBase, "/")
	if cfg.AccessTTL == 0 {
		cfg.AccessTTL = DefaultAccessTTL
	}
	if cfg.RefreshTTL <= 0 {
		cfg.RefreshTTL = DefaultRefreshTTL
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	s := &Server{cfg: cfg, now: cfg.Now, log: cfg.Log, cache: map[[32]byte]cachedToken{}}
	s.clients = NewClients(cfg.Store, cfg.Sealer, cfg.Now)
	s.proofs = dpop.NewVerifier(dpop.Options{Now: cfg.Now, Window: cfg.DPoPWindow})
	s.mux = http.NewServeMux()
	s.mux.HandleFunc("GET "+PathConfiguration, s.serveConfiguration)
	s.mux.HandleFunc("GET "+PathAuthorize, s.serveAuthorize)
	s.mux.HandleFunc("POST "+PathAuthorize, s.serveAuthorize)
	s.mux.HandleFunc("POST "+PathToken, s.serveToken)
	s.mux.HandleFunc("POST "+PathIntrospect, s.serveIntrospect)
	s.mux.HandleFunc("POST "+PathRevoke, s.serveRevoke)
	s.mux.HandleFunc("GET "+PathJWKS, s.serveJWKS)
	s.mux.HandleFunc("GET "+PathOpenIDConfiguration, s.serveOpenIDConfiguration)
	return s, nil
}

// Clients returns the client registry the server uses.
func (s *Server) Clients() *Clients { return s.clients }

// Handler returns the HTTP handler of the Path constants.
func (s *Server) Handler() http.Handler { return s }

// ServeHTTP implements http.Handler.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, 64<<10)
	s.mux.ServeHTTP(w, r)
}

func (s *Server) tokenURL() string { return s.cfg.Issuer + PathToken }

// Algorithms a client assertion may be signed with.
var assertionAlgs = []string{"RS384", "ES384", "RS256", "ES256"}

func (s *Server) serveConfiguration(w http.ResponseWriter, r *http.Request) {
	algs := make([]string, len(dpop.Algorithms))
	for i, a := range dpop.Algorithms {
		algs[i] = string(a)
	}
	doc := map[string]any{
		"issuer":                                           s.cfg.Issuer,
		"authorization_endpoint":                           s.cfg.Issuer + PathAuthorize,
		"token_endpoint":                                   s.tokenURL(),
		"introspection_endpoint":                           s.cfg.Issuer + PathIntrospect,
		"revocation_endpoint":                              s.cfg.Issuer + PathRevoke,
		"jwks_uri":                                         s.cfg.Issuer + PathJWKS,
		"grant_types_supported":                            []string{"authorization_code", "refresh_token", "client_credentials"},
		"response_types_supported":                         []string{"code"},
		"code_challenge_methods_supported":                 []string{"S256"},
		"token_endpoint_auth_methods_supported":            []string{"private_key_jwt", "none"},
		"token_endpoint_auth_signing_alg_values_supported": assertionAlgs,
		"dpop_signing_alg_values_supported":                algs,
		"scopes_supported": []string{ScopeOpenID, ScopeFHIRUser, ScopeLaunchPatient, ScopeOffline, ScopeOnline,
			"patient/*.cruds", "user/*.cruds", "system/*.cruds", "patient/*.rs", "user/*.rs", "system/*.rs"},
		"capabilities": []string{"launch-standalone", "client-public", "client-confidential-asymmetric",
			"context-standalone-patient", "permission-v2", "permission-v1", "permission-patient", "permission-user",
			"permission-offline", "permission-online", "authorize-post", "sso-openid-connect"},
	}
	w.Header().Set("Cache-Control", "max-age=300")
	writeJSON(w, http.StatusOK, doc)
}

// oauthError is an RFC 6749 section 5.2 error.
type oauthError struct {
	Status      int    `json:"-"`
	Code        string `json:"error"`
	Description string `json:"error_description,omitempty"`
}

func (e *oauthError) Error() string { return e.Code + ": " + e.Description }

func oauthErr(status int, code, format string, args ...any) *oauthError {
	return &oauthError{Status: status, Code: code, Description: fmt.Sprintf(format, args...)}
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("Pragma", "no-cache")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v)
}

// writeError answers err as an OAuth JSON error; anything but an
// *oauthError is logged and answered as server_error.
func (s *Server) writeError(w http.ResponseWriter, err error) {
	var oe *oauthError
	if !errors.As(err, &oe) {
		s.log.Error("smart: internal error", "err", err)
		oe = oauthErr(http.StatusInternalServerError, "server_error", "internal error")
	}
	if oe.Code == "invalid_dpop_proof" {
		w.Header().Set("WWW-Authenticate", `DPoP error="invalid_dpop_proof"`)
	}
	writeJSON(w, oe.Status, oe)
}

// secret returns prefix + 256 random bits, base64url.
func secret(prefix string) string {
	var b [32]byte
	rand.Read(b[:]) // never fails (crypto/rand)
	return prefix + base64.RawURLEncoding.EncodeToString(b[:])
}

// newID returns prefix + 64 random bits, hex: a public record id.
func newID(prefix string) string {
	var b [8]byte
	rand.Read(b[:])
	return prefix + hex.EncodeToString(b[:])
}

// lookup is the keyed hash by which a record of kind holding value is
// found.
func (s *Server) lookup(kind, value string) []byte {
	sum := s.cfg.MAC.Sum([]byte(kind + "\x00" + value))
	return sum[:]
}

func ad(kind, id string) []byte { return []byte(kind + "/" + id) }

// create seals v into a new record.
func (s *Server) create(ctx context.Context, kind, id string, lookup []byte, parent string, v any, expires time.Time) error {
	data, err := json.Marshal(v)
	if err != nil {
		return err
	}
	return s.cfg.Store.CreateAuthObject(ctx, store.AuthObject{Kind: kind, ID: id, Lookup: lookup, Parent: parent,
		Data: s.cfg.Sealer.Seal(data, ad(kind, id)), Expires: expires})
}

// find returns the record of kind holding value, opened into v;
// store.ErrNotFound if none.
func (s *Server) find(ctx context.Context, kind, value string, v any) (*store.AuthObject, error) {
	o, err := s.cfg.Store.AuthObjectByLookup(ctx, kind, s.lookup(kind, value))
	if err != nil {
		return nil, err
	}
	data, err := s.cfg.Sealer.Open(o.Data, ad(kind, o.ID))
	if err != nil {
		return nil, fmt.Errorf("open %s %s: %w", kind, o.ID, err)
	}
	if err := json.Unmarshal(data, v); err != nil {
		return nil, fmt.Errorf("open %s %s: damaged record", kind, o.ID)
	}
	return o, nil
}

// update rewrites o with v if nobody changed it since it was read;
// store.ErrConflict if somebody did.
func (s *Server) update(ctx context.Context, o *store.AuthObject, v any) error {
	data, err := json.Marshal(v)
	if err != nil {
		return err
	}
	o.Data = s.cfg.Sealer.Seal(data, ad(o.Kind, o.ID))
	_, err = s.cfg.Store.UpdateAuthObject(ctx, *o)
	return err
}

// sourceOf is the client's network address, for the record.
func sourceOf(r *http.Request) string {
	if i := strings.LastIndexByte(r.RemoteAddr, ':'); i > 0 {
		return strings.Trim(r.RemoteAddr[:i], "[]")
	}
	return r.RemoteAddr
}
