package smart

import (
	"context"
	"crypto/subtle"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/ehrvault/ehrvault/internal/auth"
	"github.com/ehrvault/ehrvault/internal/store"
)

// Error codes of a refused FHIR request (RFC 6750 section 3.1, RFC 9449
// section 7.1), for the WWW-Authenticate header.
const (
	CodeInvalidToken = "invalid_token"      // no token, or unknown, expired, revoked, or its device, session or client gone
	CodeInvalidProof = "invalid_dpop_proof" // the DPoP proof is missing, malformed, replayed or from another key
)

// AuthError is a refused FHIR request. It wraps auth.ErrUnauthenticated;
// Challenge is the WWW-Authenticate header to answer with.
type AuthError struct {
	Code   string // CodeInvalidToken or CodeInvalidProof
	Reason string // a short phrase, never a token
}

func (e *AuthError) Error() string { return "smart: " + e.Code + ": " + e.Reason }

// Unwrap makes errors.Is(err, auth.ErrUnauthenticated) true.
func (e *AuthError) Unwrap() error { return auth.ErrUnauthenticated }

// Challenge returns the WWW-Authenticate value, e.g.
//
//	DPoP algs="ES256 ES384 EdDSA RS256 PS256", error="invalid_dpop_proof", error_description="..."
func (e *AuthError) Challenge() string {
	return fmt.Sprintf(`DPoP algs="ES256 ES384 EdDSA RS256 PS256", error="%s", error_description="%s"`, e.Code, strings.ReplaceAll(e.Reason, `"`, "'"))
}

func refuse(code, format string, args ...any) error {
	return &AuthError{Code: code, Reason: fmt.Sprintf(format, args...)}
}

// cachedToken is an access token's record found valid, remembered until
// the earlier of its expiry and CacheTTL.
type cachedToken struct {
	id    string
	rec   accessRecord
	until time.Time
}

const cacheMax = 4096

// Handles reports whether r carries a credential for Authenticate: an
// Authorization header with the DPoP scheme, or a SMART access token
// sent as Bearer (which Authenticate refuses).
func Handles(r *http.Request) bool {
	scheme, tok, _ := strings.Cut(r.Header.Get("Authorization"), " ")
	return strings.EqualFold(scheme, "DPoP") || strings.EqualFold(scheme, "Bearer") && strings.HasPrefix(strings.TrimSpace(tok), AccessTokenPrefix)
}

// Authenticate returns the principal of a FHIR request that carries
// `Authorization: DPoP <access token>` and a `DPoP` proof for its method,
// URL and token. It checks that the token is live, the proof's key is the
// one the token is bound to, a person's device is still enrolled and
// their session still alive, and the client still registered. Every
// refusal is an *AuthError (wrapping auth.ErrUnauthenticated); other
// errors are the store's.
func (s *Server) Authenticate(r *http.Request) (*auth.Principal, error) {
	p, rec, err := s.authenticate(r)
	if err != nil {
		var ae *AuthError
		if errors.As(err, &ae) {
			e := Event{Action: ActionAuthFailure, Outcome: OutcomeDenied, Reason: ae.Code + ": " + ae.Reason}
			if rec != nil {
				e.Client, e.Principal, e.Session, e.Device, e.Token = rec.Client, rec.User, rec.Session, rec.Device, rec.Family
			}
			s.record(r.Context(), r, e)
		}
		return nil, err
	}
	return p, nil
}

func (s *Server) authenticate(r *http.Request) (*auth.Principal, *accessRecord, error) {
	ctx := r.Context()
	hs := r.Header.Values("Authorization")
	if len(hs) != 1 {
		return nil, nil, refuse(CodeInvalidToken, "one Authorization header is required")
	}
	scheme, tok, _ := strings.Cut(hs[0], " ")
	tok = strings.TrimSpace(tok)
	if strings.EqualFold(scheme, "Bearer") {
		return nil, nil, refuse(CodeInvalidToken, "the token is DPoP-bound: send it as Authorization: DPoP, with a DPoP proof")
	}
	if !strings.EqualFold(scheme, "DPoP") || !strings.HasPrefix(tok, AccessTokenPrefix) || len(tok) != len(AccessTokenPrefix)+43 {
		return nil, nil, refuse(CodeInvalidToken, "not a SMART access token")
	}
	id, rec, err := s.accessToken(r, tok)
	if err != nil {
		return nil, nil, err
	}
	proofs := r.Header.Values("DPoP")
	if len(proofs) != 1 {
		return nil, rec, refuse(CodeInvalidProof, "one DPoP proof is required")
	}
	proof, err := s.proofs.Verify(proofs[0], r.Method, s.requestURL(r), tok)
	if err != nil {
		return nil, rec, refuse(CodeInvalidProof, "%s", dpopReason(err))
	}
	// The jkt is public; constant time anyway, by habit.
	if subtle.ConstantTimeCompare([]byte(proof.JKT), []byte(rec.JKT)) != 1 {
		return nil, rec, refuse(CodeInvalidProof, "the proof's key is not the one the token is bound to")
	}
	if rec.Kind == auth.KindUser {
		// Asked on every request, not cached here: revoking a device or
		// ending a session bites at once.
		dev, err := s.cfg.Devices.DeviceByKey(ctx, rec.JKT)
		if err != nil || dev != rec.Device {
			if err != nil && !errors.Is(err, auth.ErrUnauthenticated) {
				return nil, rec, fmt.Errorf("device by key: %w", err)
			}
			return nil, rec, refuse(CodeInvalidToken, "the device the token is bound to is no longer enrolled")
		}
		if err := s.cfg.Sessions.Alive(ctx, rec.Session); err != nil {
			if !errors.Is(err, auth.ErrUnauthenticated) {
				return nil, rec, fmt.Errorf("session alive: %w", err)
			}
			return nil, rec, refuse(CodeInvalidToken, "the login session behind the token has ended")
		}
	}
	scopes := slices.Clone(rec.Scopes)
	if rec.Kind == auth.KindDevice {
		// Belt and braces: a device never holds a reading scope, even
		// if its record were edited.
		scopes = slices.DeleteFunc(scopes, func(sc string) bool {
			p, err := ParseScope(sc)
			return err != nil || p.Has('r') || p.Has('s')
		})
	}
	p := &auth.Principal{Kind: rec.Kind, ID: id, Role: rec.Role, User: rec.User, Client: rec.Client,
		Device: rec.Device, Session: rec.Session, Patient: rec.Patient, Scopes: scopes, Factors: slices.Clone(rec.Factors)}
	if p.Kind != auth.KindUser {
		p.Label = rec.Client
	}
	return p, rec, nil
}

// accessToken returns the live record of an access token, from the cache
// or the store.
func (s *Server) accessToken(r *http.Request, tok string) (string, *accessRecord, error) {
	ctx := r.Context()
	key := [32]byte(s.lookup(kindAccess, tok))
	now := s.now()
	s.mu.Lock()
	hit, ok := s.cache[key]
	s.mu.Unlock()
	// Found by the token's keyed hash, which only its holder can produce.
	if ok && now.Before(hit.until) {
		rec := hit.rec
		return hit.id, &rec, nil
	}
	var rec accessRecord
	o, err := s.find(ctx, kindAccess, tok, &rec)
	if errors.Is(err, store.ErrNotFound) {
		return "", nil, refuse(CodeInvalidToken, "token unknown, expired or revoked")
	} else if err != nil {
		return "", nil, err
	}
	if subtle.ConstantTimeCompare(o.Lookup, key[:]) != 1 || !now.Before(rec.Expires) {
		return "", &rec, refuse(CodeInvalidToken, "token unknown, expired or revoked")
	}
	if _, err := s.clients.Get(ctx, rec.Client); errors.Is(err, ErrNoClient) {
		return "", &rec, refuse(CodeInvalidToken, "the client the token was issued to is no longer registered")
	} else if err != nil {
		return "", nil, err
	}
	until := now.Add(CacheTTL)
	if rec.Expires.Before(until) {
		until = rec.Expires
	}
	s.mu.Lock()
	if len(s.cache) >= cacheMax {
		clear(s.cache)
	}
	s.cache[key] = cachedToken{id: o.ID, rec: rec, until: until}
	s.mu.Unlock()
	return o.ID, &rec, nil
}

// forget empties the verification cache: a revocation in this process
// bites at once.
func (s *Server) forget() {
	s.mu.Lock()
	clear(s.cache)
	s.mu.Unlock()
}

func (s *Server) requestURL(r *http.Request) string {
	if s.cfg.RequestURL != nil {
		return s.cfg.RequestURL(r)
	}
	return s.cfg.Issuer + r.URL.EscapedPath()
}

// AssignedPatients returns the patients a medical device's principal may
// write for (the API checks that a created resource's subject is one of
// them); nil for any other principal.
func (s *Server) AssignedPatients(ctx context.Context, p *auth.Principal) ([]string, error) {
	if p.Kind != auth.KindDevice {
		return nil, nil
	}
	c, err := s.clients.Get(ctx, p.Client)
	if err != nil {
		return nil, err
	}
	return slices.Clone(c.Patients), nil
}

// ScopesOf parses a principal's granted scopes (Principal.Scopes) for
// Permits and Constraints. A principal without scopes (an operator token)
// gets nil, which permits nothing: the caller treats operator tokens
// apart.
func ScopesOf(p *auth.Principal) Scopes {
	var out Scopes
	for _, s := range p.Scopes {
		if sc, err := ParseScope(s); err == nil {
			out = append(out, sc)
		}
	}
	return out
}
