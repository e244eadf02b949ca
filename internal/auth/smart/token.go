package smart

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/go-jose/go-jose/v4/jwt"

	jose "github.com/go-jose/go-jose/v4"

	"github.com/ehrvault/ehrvault/internal/auth"
	"github.com/ehrvault/ehrvault/internal/auth/dpop"
	"github.com/ehrvault/ehrvault/internal/store"
)

// Store kinds of the server's records.
const (
	kindCode    = "smart.code"    // an authorization code (lookup: its MAC)
	kindRefresh = "smart.refresh" // a refresh token (lookup: its MAC; parent: its family)
	kindAccess  = "smart.access"  // an access token (lookup: its MAC; parent: its family)
	kindJTI     = "smart.jti"     // a used client assertion jti (lookup: MAC of client and jti)
)

// Token prefixes, so that secret scanners and people recognise them.
const (
	AccessTokenPrefix  = "ehsa_"
	RefreshTokenPrefix = "ehsr_"
	codePrefix         = "ehsc_"
)

// assertionType is the client_assertion_type of RFC 7523.
const assertionType = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"

// grant is what a code, a refresh token and an access token carry: who,
// for which client, bound to which key, allowed what.
type grant struct {
	Family  string        `json:"family"` // the code's id; every token descended from it shares it
	Client  string        `json:"client"`
	Kind    string        `json:"kind"` // auth.Kind*
	User    string        `json:"user,omitempty"`
	Role    string        `json:"role,omitempty"`
	Session string        `json:"session,omitempty"`
	Patient string        `json:"patient,omitempty"`
	Device  string        `json:"device,omitempty"`
	JKT     string        `json:"jkt,omitempty"`
	Scopes  []string      `json:"scopes"`
	Factors []auth.Factor `json:"factors,omitempty"`
	Ends    time.Time     `json:"ends"` // when the family ends: no refresh past it
}

type codeRecord struct {
	grant
	Redirect  string `json:"redirect"`
	Challenge string `json:"challenge"`
	DPoPJKT   string `json:"dpop_jkt,omitempty"` // RFC 9449 section 10: the key the code is bound to
	Used      bool   `json:"used"`
	Nonce     string `json:"nonce,omitempty"` // OpenID Connect: echoed in the id_token
	// LinkedPatient is the patient record the user is (a patient user's
	// auth.Principal.Patient), for the id_token's fhirUser.
	LinkedPatient string `json:"linked_patient,omitempty"`
	// Until is the end of the code's 60 seconds; the record itself is
	// kept as long as its family may live, so that a late second use is
	// still seen as one and revokes the family.
	Until time.Time `json:"until"`
}

type refreshRecord struct {
	grant
	Used bool `json:"used"`
}

type accessRecord struct {
	grant
	Issued  time.Time `json:"issued"`
	Expires time.Time `json:"expires"`
}

// tokenResponse is RFC 6749 section 5.1, with SMART's patient.
type tokenResponse struct {
	AccessToken  string `json:"access_token"`
	TokenType    string `json:"token_type"`
	ExpiresIn    int    `json:"expires_in"`
	Scope        string `json:"scope"`
	RefreshToken string `json:"refresh_token,omitempty"`
	Patient      string `json:"patient,omitempty"`
	IDToken      string `json:"id_token,omitempty"` // OpenID Connect, with openid granted
}

func (s *Server) serveToken(w http.ResponseWriter, r *http.Request) {
	ev := Event{Action: ActionTokenIssue}
	resp, err := s.token(r, &ev)
	if err != nil {
		var oe *oauthError
		if errors.As(err, &oe) {
			ev.Action, ev.Outcome, ev.Reason = ActionTokenFailure, OutcomeDenied, oe.Code+": "+oe.Description
			s.record(r.Context(), r, ev)
		}
		s.writeError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, resp)
}

func (s *Server) token(r *http.Request, ev *Event) (*tokenResponse, error) {
	if err := r.ParseForm(); err != nil {
		return nil, oauthErr(400, "invalid_request", "request body: not a form, or too large")
	}
	f := r.PostForm
	for k, vs := range f {
		if len(vs) > 1 {
			return nil, oauthErr(400, "invalid_request", "parameter %s given twice", k)
		}
	}
	client, err := s.authenticateClient(r.Context(), s.tokenURL(), f.Get("client_id"), f.Get("client_assertion_type"), f.Get("client_assertion"))
	if err != nil {
		return nil, err
	}
	ev.Client = client.ID
	// Every token is sender-constrained: a proof is due before anything.
	proofs := r.Header.Values("DPoP")
	if len(proofs) != 1 {
		return nil, oauthErr(400, "invalid_dpop_proof", "DPoP header: one proof is required")
	}
	proof, err := s.proofs.Verify(proofs[0], http.MethodPost, s.tokenURL(), "")
	if err != nil {
		return nil, oauthErr(400, "invalid_dpop_proof", "%s", dpopReason(err))
	}
	switch gt := f.Get("grant_type"); gt {
	case "authorization_code":
		return s.exchangeCode(r, client, proof, ev)
	case "refresh_token":
		ev.Action = ActionTokenRefresh
		return s.refresh(r, client, proof, ev)
	case "client_credentials":
		return s.clientCredentials(r, client, proof, ev)
	case "":
		return nil, oauthErr(400, "invalid_request", "grant_type is required")
	default:
		return nil, oauthErr(400, "unsupported_grant_type", "grant_type %q is not supported", trim(gt))
	}
}

func dpopReason(err error) string {
	var de *dpop.Error
	if errors.As(err, &de) {
		return "DPoP proof: " + de.Reason
	}
	return "DPoP proof refused"
}

// authenticateClient finds the client and, for one with keys, checks its
// assertion (RFC 7523, SMART Backend Services).
//
// The assertion's aud must be the token endpoint; at the introspection and
// revocation endpoints their own URL (endpoint) is accepted as well.
func (s *Server) authenticateClient(ctx context.Context, endpoint, clientID, aType, assertion string) (*Client, error) {
	if assertion == "" {
		if clientID == "" {
			return nil, oauthErr(401, "invalid_client", "client_id or client_assertion is required")
		}
		c, err := s.clients.Get(ctx, clientID)
		if errors.Is(err, ErrNoClient) {
			return nil, oauthErr(401, "invalid_client", "unknown client")
		} else if err != nil {
			return nil, err
		}
		if c.Kind != ClientApp || len(c.JWKS) > 0 {
			return nil, oauthErr(401, "invalid_client", "this client must authenticate with a client_assertion (private_key_jwt)")
		}
		return c, nil
	}
	if aType != assertionType {
		return nil, oauthErr(401, "invalid_client", "client_assertion_type must be %s", assertionType)
	}
	if len(assertion) > 16<<10 {
		return nil, oauthErr(401, "invalid_client", "client_assertion too long")
	}
	algs := make([]jose.SignatureAlgorithm, len(assertionAlgs))
	for i, a := range assertionAlgs {
		algs[i] = jose.SignatureAlgorithm(a)
	}
	// go-jose refuses any alg outside the list at parse time: "none",
	// HS256 (whatever key it was "signed" with) and the rest.
	tok, err := jwt.ParseSigned(assertion, algs)
	if err != nil {
		return nil, oauthErr(401, "invalid_client", "client_assertion: not a JWT signed with %s", strings.Join(assertionAlgs, ", "))
	}
	var unverified jwt.Claims
	if err := tok.UnsafeClaimsWithoutVerification(&unverified); err != nil {
		return nil, oauthErr(401, "invalid_client", "client_assertion: malformed claims")
	}
	if clientID != "" && clientID != unverified.Issuer {
		return nil, oauthErr(401, "invalid_client", "client_assertion: iss differs from client_id")
	}
	c, err := s.clients.Get(ctx, unverified.Issuer)
	if errors.Is(err, ErrNoClient) {
		return nil, oauthErr(401, "invalid_client", "unknown client")
	} else if err != nil {
		return nil, err
	}
	if len(c.JWKS) == 0 {
		return nil, oauthErr(401, "invalid_client", "this client has no registered keys")
	}
	set, err := c.keys()
	if err != nil {
		return nil, err
	}
	keys := set.Keys
	if kid := tok.Headers[0].KeyID; kid != "" {
		keys = set.Key(kid)
	}
	var claims jwt.Claims
	verified := false
	for _, k := range keys {
		if k.Algorithm != "" && k.Algorithm != tok.Headers[0].Algorithm {
			continue
		}
		if err := tok.Claims(k.Key, &claims); err == nil {
			verified = true
			break
		}
	}
	if !verified {
		return nil, oauthErr(401, "invalid_client", "client_assertion: signature does not verify with a registered key")
	}
	now := s.now()
	switch {
	case claims.Issuer != c.ID || claims.Subject != c.ID:
		return nil, oauthErr(401, "invalid_client", "client_assertion: iss and sub must be the client_id")
	case !slices.Contains([]string(claims.Audience), s.tokenURL()) && !slices.Contains([]string(claims.Audience), endpoint):
		return nil, oauthErr(401, "invalid_client", "client_assertion: aud must be the token endpoint %s", s.tokenURL())
	case claims.Expiry == nil:
		return nil, oauthErr(401, "invalid_client", "client_assertion: exp is required")
	case !now.Before(claims.Expiry.Time()):
		return nil, oauthErr(401, "invalid_client", "client_assertion: expired")
	case claims.Expiry.Time().After(now.Add(MaxAssertionTTL + 5*time.Second)):
		return nil, oauthErr(401, "invalid_client", "client_assertion: exp more than 5 minutes ahead")
	case claims.NotBefore != nil && claims.NotBefore.Time().After(now.Add(5*time.Second)):
		return nil, oauthErr(401, "invalid_client", "client_assertion: not valid yet (nbf)")
	case claims.ID == "" || len(claims.ID) > 256:
		return nil, oauthErr(401, "invalid_client", "client_assertion: jti is required")
	}
	// jti single use, across processes: the store refuses a second record
	// with the same lookup.
	err = s.create(ctx, kindJTI, newID("jti_"), s.lookup(kindJTI, c.ID+"\x00"+claims.ID), c.ID, struct{}{}, claims.Expiry.Time())
	if errors.Is(err, store.ErrExists) {
		return nil, oauthErr(401, "invalid_client", "client_assertion: jti already used")
	}
	if err != nil {
		return nil, fmt.Errorf("record assertion jti: %w", err)
	}
	return c, nil
}

// exchangeCode redeems an authorization code (RFC 6749 section 4.1.3, RFC
// 7636 section 4.6).
func (s *Server) exchangeCode(r *http.Request, c *Client, proof *dpop.Proof, ev *Event) (*tokenResponse, error) {
	ctx := r.Context()
	f := r.PostForm
	if c.Kind != ClientApp {
		return nil, oauthErr(400, "unauthorized_client", "only apps use authorization_code")
	}
	code := f.Get("code")
	if code == "" {
		return nil, oauthErr(400, "invalid_request", "code is required")
	}
	var rec codeRecord
	o, err := s.find(ctx, kindCode, code, &rec)
	if errors.Is(err, store.ErrNotFound) {
		return nil, oauthErr(400, "invalid_grant", "code unknown or expired")
	} else if err != nil {
		return nil, err
	}
	ev.Token, ev.Session, ev.Principal = rec.Family, rec.Session, rec.User
	if rec.Used {
		// A second use: somebody else has the code. Everything issued
		// from it is revoked (RFC 6749 section 4.1.2).
		s.revokeFamily(ctx, rec.Family)
		s.record(ctx, r, Event{Action: ActionTokenRevoke, Outcome: OutcomeDenied, Client: c.ID, Principal: rec.User, Token: rec.Family, Reason: "authorization code reused: family revoked"})
		return nil, oauthErr(400, "invalid_grant", "code already used")
	}
	if !s.now().Before(rec.Until) {
		return nil, oauthErr(400, "invalid_grant", "code unknown or expired")
	}
	if rec.Client != c.ID {
		return nil, oauthErr(400, "invalid_grant", "code was issued to another client")
	}
	if f.Get("redirect_uri") != rec.Redirect {
		return nil, oauthErr(400, "invalid_grant", "redirect_uri differs from the authorization request's")
	}
	if !pkceOK(f.Get("code_verifier"), rec.Challenge) {
		return nil, oauthErr(400, "invalid_grant", "code_verifier does not match the code_challenge")
	}
	if rec.DPoPJKT != "" && rec.DPoPJKT != proof.JKT {
		return nil, oauthErr(400, "invalid_dpop_proof", "DPoP key differs from the dpop_jkt of the authorization request")
	}
	// Mark the code used before issuing: of two concurrent redemptions,
	// the compare-and-swap lets one through.
	rec.Used = true
	if err := s.update(ctx, o, &rec); errors.Is(err, store.ErrConflict) || errors.Is(err, store.ErrNotFound) {
		s.revokeFamily(ctx, rec.Family)
		return nil, oauthErr(400, "invalid_grant", "code already used")
	} else if err != nil {
		return nil, err
	}
	g := rec.grant
	if err := s.checkPerson(ctx, &g, proof.JKT); err != nil {
		return nil, err
	}
	ev.Device = g.Device
	g.Ends = s.now().Add(s.cfg.RefreshTTL)
	// The id_token is signed first: if that fails, nothing is issued.
	var idt string
	if slices.Contains(g.Scopes, ScopeOpenID) {
		if idt, err = s.idToken(ctx, &rec); err != nil {
			return nil, err
		}
	}
	resp, err := s.issue(ctx, r, g, refreshWanted(g.Scopes), ev)
	if err != nil {
		return nil, err
	}
	resp.IDToken = idt
	return resp, nil
}

// checkPerson checks that a person's grant may get tokens bound to jkt:
// the key is an enrolled device and the login session lives.
func (s *Server) checkPerson(ctx context.Context, g *grant, jkt string) error {
	dev, err := s.cfg.Devices.DeviceByKey(ctx, jkt)
	if err != nil {
		if !errors.Is(err, auth.ErrUnauthenticated) {
			return fmt.Errorf("device by key: %w", err)
		}
		return oauthErr(400, "invalid_dpop_proof", "the DPoP key is not an enrolled, approved device")
	}
	if g.Device != "" && g.Device != dev {
		return oauthErr(400, "invalid_grant", "token is bound to another device")
	}
	if err := s.cfg.Sessions.Alive(ctx, g.Session); err != nil {
		if !errors.Is(err, auth.ErrUnauthenticated) {
			return fmt.Errorf("session alive: %w", err)
		}
		return oauthErr(400, "invalid_grant", "the login session has ended")
	}
	g.Device, g.JKT = dev, jkt
	return nil
}

func refreshWanted(scopes []string) bool {
	return slices.Contains(scopes, ScopeOffline) || slices.Contains(scopes, ScopeOnline)
}

// pkceOK checks an S256 code_verifier (RFC 7636 section 4.6) in constant
// time.
func pkceOK(verifier, challenge string) bool {
	if len(verifier) < 43 || len(verifier) > 128 {
		return false
	}
	for i := 0; i < len(verifier); i++ {
		c := verifier[i]
		if !(c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '.' || c == '_' || c == '~') {
			return false
		}
	}
	sum := sha256.Sum256([]byte(verifier))
	want := base64.RawURLEncoding.EncodeToString(sum[:])
	return subtle.ConstantTimeCompare([]byte(want), []byte(challenge)) == 1
}

// refresh rotates a refresh token (RFC 6749 section 6; OAuth 2.0 Security
// BCP section 4.14: reuse revokes the family).
func (s *Server) refresh(r *http.Request, c *Client, proof *dpop.Proof, ev *Event) (*tokenResponse, error) {
	ctx := r.Context()
	f := r.PostForm
	tok := f.Get("refresh_token")
	if tok == "" {
		return nil, oauthErr(400, "invalid_request", "refresh_token is required")
	}
	var rec refreshRecord
	o, err := s.find(ctx, kindRefresh, tok, &rec)
	if errors.Is(err, store.ErrNotFound) {
		return nil, oauthErr(400, "invalid_grant", "refresh_token unknown, expired or revoked")
	} else if err != nil {
		return nil, err
	}
	ev.Token, ev.Session, ev.Principal = rec.Family, rec.Session, rec.User
	if rec.Client != c.ID {
		return nil, oauthErr(400, "invalid_grant", "refresh_token was issued to another client")
	}
	if rec.Used {
		s.revokeFamily(ctx, rec.Family)
		s.record(ctx, r, Event{Action: ActionTokenRevoke, Outcome: OutcomeDenied, Client: c.ID, Principal: rec.User, Session: rec.Session, Token: rec.Family, Reason: "refresh token reused: family revoked"})
		return nil, oauthErr(400, "invalid_grant", "refresh_token already used; every token of its family is revoked")
	}
	if !s.now().Before(rec.Ends) {
		return nil, oauthErr(400, "invalid_grant", "refresh_token unknown, expired or revoked")
	}
	if proof.JKT != rec.JKT {
		return nil, oauthErr(400, "invalid_dpop_proof", "DPoP key differs from the one the refresh token is bound to")
	}
	g := rec.grant
	if sc := f.Get("scope"); sc != "" {
		asked, err := ParseScopes(sc)
		if err != nil {
			return nil, oauthErr(400, "invalid_scope", "%v", err)
		}
		held, _ := ParseScopes(strings.Join(g.Scopes, " "))
		g.Scopes = Grant(asked, held).Strings()
		if !Scopes(Grant(asked, held)).HasResource() {
			return nil, oauthErr(400, "invalid_scope", "none of the requested scopes were granted before")
		}
	}
	rec.Used = true
	if err := s.update(ctx, o, &rec); errors.Is(err, store.ErrConflict) || errors.Is(err, store.ErrNotFound) {
		// Two concurrent uses of one refresh token: treat as reuse.
		s.revokeFamily(ctx, rec.Family)
		return nil, oauthErr(400, "invalid_grant", "refresh_token already used; every token of its family is revoked")
	} else if err != nil {
		return nil, err
	}
	if err := s.checkPerson(ctx, &g, proof.JKT); err != nil {
		return nil, err
	}
	ev.Device = g.Device
	return s.issue(ctx, r, g, true, ev)
}

// HasResource reports whether ss has a resource scope.
func (ss Scopes) HasResource() bool {
	for _, s := range ss {
		if s.IsResource() {
			return true
		}
	}
	return false
}

// clientCredentials issues a backend service's or device's token (SMART
// Backend Services; RFC 6749 section 4.4).
func (s *Server) clientCredentials(r *http.Request, c *Client, proof *dpop.Proof, ev *Event) (*tokenResponse, error) {
	if c.Kind != ClientService && c.Kind != ClientDevice {
		return nil, oauthErr(400, "unauthorized_client", "only backend services and devices use client_credentials")
	}
	if r.PostForm.Get("client_assertion") == "" {
		return nil, oauthErr(401, "invalid_client", "client_credentials needs a client_assertion")
	}
	asked, err := ParseScopes(r.PostForm.Get("scope"))
	if err != nil {
		return nil, oauthErr(400, "invalid_scope", "%v", err)
	}
	granted := Grant(asked, c.Allowed())
	if !granted.HasResource() {
		return nil, oauthErr(400, "invalid_scope", "none of the requested scopes is allowed for this client")
	}
	g := grant{Family: newID("fam_"), Client: c.ID, Kind: c.PrincipalKind(), JKT: proof.JKT, Scopes: granted.Strings(), Ends: s.now().Add(s.cfg.AccessTTL)}
	if c.Kind == ClientDevice && len(c.Patients) == 1 {
		g.Patient = c.Patients[0]
	}
	return s.issue(r.Context(), r, g, false, ev)
}

// issue stores and returns an access token (and a refresh token) for g.
// If the event cannot be recorded nothing is issued.
func (s *Server) issue(ctx context.Context, r *http.Request, g grant, withRefresh bool, ev *Event) (*tokenResponse, error) {
	now := s.now()
	exp := now.Add(s.cfg.AccessTTL)
	at := secret(AccessTokenPrefix)
	atID := newID("at_")
	if err := s.create(ctx, kindAccess, atID, s.lookup(kindAccess, at), g.Family, &accessRecord{grant: g, Issued: now, Expires: exp}, exp); err != nil {
		return nil, fmt.Errorf("store access token: %w", err)
	}
	resp := &tokenResponse{AccessToken: at, TokenType: "DPoP", ExpiresIn: int(s.cfg.AccessTTL / time.Second), Scope: strings.Join(g.Scopes, " "), Patient: g.Patient}
	if withRefresh && now.Before(g.Ends) {
		rt := secret(RefreshTokenPrefix)
		if err := s.create(ctx, kindRefresh, newID("rt_"), s.lookup(kindRefresh, rt), g.Family, &refreshRecord{grant: g}, g.Ends); err != nil {
			s.revokeFamily(ctx, g.Family)
			return nil, fmt.Errorf("store refresh token: %w", err)
		}
		resp.RefreshToken = rt
	}
	ev.Outcome, ev.Token, ev.Client, ev.Device = OutcomeSuccess, g.Family, g.Client, g.Device
	if g.User != "" {
		ev.Principal, ev.Session = g.User, g.Session
	}
	if err := s.record(ctx, r, *ev); err != nil {
		// Nothing is issued unrecorded.
		s.cfg.Store.DeleteAuthObject(ctx, kindAccess, atID)
		if resp.RefreshToken != "" {
			s.revokeFamily(ctx, g.Family)
		}
		return nil, fmt.Errorf("record token issue: %w", err)
	}
	return resp, nil
}

// revokeFamily deletes every access and refresh token of a family and
// forgets cached tokens.
func (s *Server) revokeFamily(ctx context.Context, family string) error {
	_, err1 := s.cfg.Store.DeleteAuthObjects(ctx, kindAccess, family)
	_, err2 := s.cfg.Store.DeleteAuthObjects(ctx, kindRefresh, family)
	s.forget()
	return errors.Join(err1, err2)
}
