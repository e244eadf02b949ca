package users

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"time"

	"github.com/ehrvault/ehrvault/internal/auth"
	"github.com/ehrvault/ehrvault/internal/store"
)

// SessionCookie names the browser session's cookie. The __Host- prefix
// makes browsers refuse it unless Secure, Path=/ and without Domain, so
// that no other host (a sibling subdomain) can set or read it.
const SessionCookie = "__Host-ehrvault_session"

// Stages of a session: only a full one (stageFull) sees health data.
const (
	stageFull     = ""
	stageMFA      = "mfa"             // password given; a second factor is due
	stagePassword = "enroll-password" // enrollment code given; a password is due
	stageFactor   = "enroll-factor"   // password set; TOTP or WebAuthn is due
)

// pendingTTL bounds a session that is not yet full: a login half done.
const pendingTTL = 15 * time.Minute

// touchEvery is how stale the stored last-use time may get before a
// request writes it again; the idle time-out is exact to within it.
const touchEvery = 10 * time.Second

// session is the sealed record of a browser session. Its id is public
// (it goes into tokens issued from it); the cookie holds another value
// whose keyed hash is the record's lookup.
type session struct {
	ID      string        `json:"id"`
	User    string        `json:"user"`
	Epoch   int64         `json:"epoch"`
	Stage   string        `json:"stage,omitempty"`
	Created time.Time     `json:"created"`
	Seen    time.Time     `json:"seen"`
	Factors []auth.Factor `json:"factors,omitempty"`
	Pending string        `json:"totp_pending,omitempty"` // TOTP secret being enrolled
	Next    string        `json:"next,omitempty"`         // where to go after login
	version int64
}

// deadline is when s ends however it is used.
func (s *Service) deadline(ss *session) time.Time {
	if ss.Stage != stageFull {
		return ss.Created.Add(pendingTTL)
	}
	return ss.Created.Add(s.absolute)
}

func newSecret() string {
	var b [32]byte
	rand.Read(b[:]) // never fails (crypto/rand)
	return base64.RawURLEncoding.EncodeToString(b[:])
}

func (s *Service) sealSession(ss *session) []byte {
	b, _ := json.Marshal(ss)
	out := s.sealer.Seal(b, []byte(KindSession+"/"+ss.ID))
	clear(b)
	return out
}

func (s *Service) openSession(o *store.AuthObject) (*session, error) {
	b, err := s.sealer.Open(o.Data, []byte(KindSession+"/"+o.ID))
	if err != nil {
		return nil, fmt.Errorf("open session %s: %w", o.ID, err)
	}
	var ss session
	if err := json.Unmarshal(b, &ss); err != nil || ss.ID != o.ID {
		return nil, fmt.Errorf("open session %s: malformed record", o.ID)
	}
	ss.version = o.Version
	return &ss, nil
}

// newSession stores a session of u at stage and returns the cookie value.
func (s *Service) newSession(ctx context.Context, u *user, stage string, factors []auth.Factor, next string) (string, *session, error) {
	now := s.now().UTC()
	ss := &session{ID: randomID("ses_"), User: u.ID, Epoch: u.Epoch, Stage: stage, Created: now, Seen: now, Factors: factors, Next: next}
	secret := newSecret()
	err := s.store.CreateAuthObject(ctx, store.AuthObject{Kind: KindSession, ID: ss.ID, Parent: u.ID,
		Lookup: s.lookup(KindSession, secret), Data: s.sealSession(ss), Expires: s.deadline(ss)})
	if err != nil {
		return "", nil, fmt.Errorf("create session: %w", err)
	}
	ss.version = 1
	return secret, ss, nil
}

// putSession writes ss under a new cookie value (a session is given a new
// id at every change of stage or factors, so that one seen before login
// is worth nothing after) and returns it.
func (s *Service) putSession(ctx context.Context, ss *session) (string, error) {
	secret := newSecret()
	v, err := s.store.UpdateAuthObject(ctx, store.AuthObject{Kind: KindSession, ID: ss.ID, Parent: ss.User,
		Lookup: s.lookup(KindSession, secret), Data: s.sealSession(ss), Version: ss.version, Expires: s.deadline(ss)})
	if err != nil {
		return "", err
	}
	ss.version = v
	return secret, nil
}

// current returns the live session that sent r, at any stage, and its
// user; auth.ErrUnauthenticated if none. A dead session is deleted.
func (s *Service) current(r *http.Request) (*session, *user, error) {
	c, err := r.Cookie(SessionCookie)
	if err != nil || c.Value == "" || len(c.Value) > 100 {
		return nil, nil, auth.ErrUnauthenticated
	}
	ctx := r.Context()
	o, err := s.store.AuthObjectByLookup(ctx, KindSession, s.lookup(KindSession, c.Value))
	if err != nil {
		return nil, nil, auth.ErrUnauthenticated
	}
	ss, err := s.openSession(o)
	if err != nil {
		return nil, nil, auth.ErrUnauthenticated
	}
	now := s.now()
	u, err := s.liveUser(ctx, ss)
	if err != nil || !now.Before(ss.Seen.Add(s.idle)) {
		s.store.DeleteAuthObject(ctx, KindSession, ss.ID)
		return nil, nil, auth.ErrUnauthenticated
	}
	if now.Sub(ss.Seen) >= touchEvery {
		ss.Seen = now.UTC()
		// A conflict means another request touched it: fine.
		if v, err := s.store.UpdateAuthObject(ctx, store.AuthObject{Kind: KindSession, ID: ss.ID, Parent: ss.User,
			Lookup: o.Lookup, Data: s.sealSession(ss), Version: ss.version, Expires: s.deadline(ss)}); err == nil {
			ss.version = v
		}
	}
	return ss, u, nil
}

// liveUser returns the user of ss if ss is before its deadline and its
// user exists, is enabled and has the same epoch.
func (s *Service) liveUser(ctx context.Context, ss *session) (*user, error) {
	if !s.now().Before(s.deadline(ss)) {
		return nil, auth.ErrUnauthenticated
	}
	u, err := s.getUser(ctx, ss.User)
	if err != nil {
		if errors.Is(err, ErrNotFound) {
			return nil, auth.ErrUnauthenticated
		}
		return nil, err
	}
	if u.Disabled || u.Epoch != ss.Epoch {
		return nil, auth.ErrUnauthenticated
	}
	return u, nil
}

// Session returns the principal of the live, fully logged-in browser
// session that sent r (Kind auth.KindUser; User, Role, Session and
// Factors set), touching its idle timer; auth.ErrUnauthenticated if there
// is none, it timed out, is only half logged in, or its user was
// disabled, changed password or had MFA reset.
func (s *Service) Session(r *http.Request) (*auth.Principal, error) {
	ss, u, err := s.current(r)
	if err != nil {
		return nil, err
	}
	if ss.Stage != stageFull || !hasSecondFactor(ss.Factors) {
		return nil, auth.ErrUnauthenticated
	}
	return principal(ss, u), nil
}

func principal(ss *session, u *user) *auth.Principal {
	return &auth.Principal{Kind: auth.KindUser, ID: u.ID, Label: u.Name, Role: u.Role, User: u.ID,
		Session: ss.ID, Patient: u.Patient, Factors: append([]auth.Factor(nil), ss.Factors...)}
}

func hasSecondFactor(fs []auth.Factor) bool {
	for _, f := range fs {
		if f.Method != auth.FactorPassword {
			return true
		}
	}
	return false
}

// The Sessions seam of internal/auth/smart, checked here so that a change
// of either side fails to compile.
var _ interface {
	Session(r *http.Request) (*auth.Principal, error)
	LoginURL(next string) string
	Alive(ctx context.Context, sessionID string) error
} = (*Service)(nil)

// StepUpURL is the path of the page that asks a logged-in person for a
// second factor again and returns the browser to next (a local path
// only); after it, the session's principal passes
// FactorSince("", time.Now().Add(-5*time.Minute)).
func (s *Service) StepUpURL(next string) string {
	if !localPath(next) {
		return "/auth/stepup"
	}
	return "/auth/stepup?next=" + url.QueryEscape(next)
}

// LoginURL is the path of the login page that returns the browser to next
// after login; next is dropped unless it is a local path.
func (s *Service) LoginURL(next string) string {
	if !localPath(next) {
		return "/auth/login"
	}
	return "/auth/login?next=" + url.QueryEscape(next)
}

// Alive returns nil if the session with this id is fully logged in, not
// past its absolute time-out nor its idle time-out, and its user is
// enabled with an unchanged epoch; auth.ErrUnauthenticated otherwise. A
// token used is the session used: Alive touches its idle timer, so a
// session ends when neither its browser nor any token issued from it has
// been used for the idle time-out (ONC 170.315(d)(5)).
func (s *Service) Alive(ctx context.Context, sessionID string) error {
	o, err := s.store.AuthObject(ctx, KindSession, sessionID)
	if err != nil {
		if errors.Is(err, store.ErrNotFound) {
			return auth.ErrUnauthenticated
		}
		return err
	}
	ss, err := s.openSession(o)
	if err != nil {
		return auth.ErrUnauthenticated
	}
	if ss.Stage != stageFull {
		return auth.ErrUnauthenticated
	}
	if _, err := s.liveUser(ctx, ss); err != nil {
		return err
	}
	now := s.now()
	if !now.Before(ss.Seen.Add(s.idle)) {
		s.store.DeleteAuthObject(ctx, KindSession, ss.ID)
		return auth.ErrUnauthenticated
	}
	if now.Sub(ss.Seen) >= touchEvery {
		ss.Seen = now.UTC()
		// A conflict means another request touched it: fine.
		s.store.UpdateAuthObject(ctx, store.AuthObject{Kind: KindSession, ID: ss.ID, Parent: ss.User,
			Lookup: o.Lookup, Data: s.sealSession(ss), Version: ss.version, Expires: s.deadline(ss)})
	}
	return nil
}

// Logout ends the session that sent r, if any.
func (s *Service) logout(r *http.Request) *session {
	ss, _, err := s.current(r)
	if err != nil {
		return nil
	}
	s.store.DeleteAuthObject(r.Context(), KindSession, ss.ID)
	return ss
}

// localPath reports whether next is a path on this server: it starts with
// one "/" (not "//", not "/\", which browsers read as another host), has
// no scheme or host, and no control characters.
func localPath(next string) bool {
	if next == "" || len(next) > 2048 || next[0] != '/' {
		return false
	}
	if len(next) > 1 && (next[1] == '/' || next[1] == '\\') {
		return false
	}
	for i := 0; i < len(next); i++ {
		if next[i] < 0x20 || next[i] == 0x7f || next[i] == '\\' {
			return false
		}
	}
	u, err := url.Parse(next)
	return err == nil && u.Scheme == "" && u.Host == "" && u.User == nil
}
