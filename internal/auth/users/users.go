// Package users keeps the people who log in to ehrvault: their passwords,
// second factors (TOTP, WebAuthn, recovery codes), browser sessions, the
// throttling of failed logins, the login and enrollment pages and the
// admin API that manages them.
//
// # Promises
//
//   - Every record lives in store.AuthObjects sealed with XChaCha20-Poly1305
//     under a key derived from the KEK, bound to its kind and id. The
//     argon2id hash of a password is sealed a second time on its own
//     (ad "pwd/"+id), so it is never in clear even inside the opened
//     user record, and only verifyPassword ever unwraps it.
//   - Passwords follow NIST SP 800-63B: 12 to 256 code points after NFKC,
//     no composition rules, refused if common (a list shipped in the
//     binary), an obvious pattern, or built from the user name.
//   - Nobody gets a session that sees health data without a second
//     factor. A user is created with a one-time enrollment code (128
//     random bits, 24 hours, stored as a keyed hash) that sets the
//     password and enrolls TOTP and/or WebAuthn, then hands out ten
//     one-time recovery codes, stored as keyed hashes.
//   - A TOTP code (RFC 6238: SHA-1, 6 digits, 30 s, ±1 step) is accepted
//     once: the user record keeps the last accepted time step and a code
//     of that step or an earlier one is refused. The update is a
//     compare-and-swap, so two requests racing with one code cannot both
//     win; the same holds for recovery and enrollment codes.
//   - Session ids are 256 random bits, stored as keyed hashes, in a
//     __Host- cookie (Secure, HttpOnly, SameSite=Strict). Sessions end
//     after IdleTimeout without use and AbsoluteTimeout after login.
//   - Every user carries an epoch, raised when the user is disabled,
//     changes password or has MFA reset; every session from an older
//     epoch is dead at once (and deleted), and Alive tells token issuers
//     the same.
//   - Failed logins are throttled per account and per source address with
//     growing delays (never a hard lock-out), before the password is even
//     checked. Every failure and success goes to the Recorder, which never
//     sees a password or code.
//
// # Non-promises
//
//   - The throttle's counters are in memory, per process, bounded
//     (throttleMax entries): a restart forgets them, and two servers on
//     one store throttle apart.
//   - The source address is r.RemoteAddr unless Config.SourceAddr says
//     otherwise; behind a proxy the lead must supply it.
package users

import (
	"context"
	"crypto/rand"
	"encoding/base32"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/go-webauthn/webauthn/webauthn"
	"golang.org/x/text/unicode/norm"

	"github.com/ehrvault/ehrvault/internal/auth"
	"github.com/ehrvault/ehrvault/internal/keyring"
	"github.com/ehrvault/ehrvault/internal/store"
)

// Kinds of the records this package keeps in store.AuthObjects.
const (
	KindUser       = "user"          // a person (Lookup: the user name)
	KindSession    = "user.session"  // a browser session (Parent: the user)
	KindEnrollment = "user.enroll"   // a one-time enrollment code (Parent: the user)
	KindWebAuthn   = "user.webauthn" // a WebAuthn ceremony's challenge (Parent: the session)
)

// Defaults of Config.
const (
	DefaultIdleTimeout     = 15 * time.Minute
	DefaultAbsoluteTimeout = 12 * time.Hour
	EnrollmentTTL          = 24 * time.Hour
	RecoveryCodes          = 10
)

// Errors. Callers answer ErrNotFound with 404, ErrInvalid with 400; the
// login pages answer every failed check alike.
var (
	ErrNotFound = errors.New("users: no such user")
	ErrExists   = errors.New("users: user name taken")
	ErrInvalid  = errors.New("users: invalid input")
	// errCode is a wrong, used or expired code or password; callers show
	// one message for all.
	errCode = errors.New("users: wrong or used code")
)

// Event is one security event for the audit log: never a password, code
// or token.
type Event struct {
	Action  string // one of the Action constants
	Outcome string // "success", "failure" or "denied"
	User    string // the user id, if known
	Session string // the session id, if any
	Source  string // the source address, or "local"
	Detail  string // e.g. the factor, or the new role; never a secret
}

// Actions of Event.
const (
	ActionLogin      = "user-login"       // password step
	ActionSecondStep = "user-mfa"         // second factor (Detail: the factor)
	ActionStepUp     = "user-stepup"      // step-up (Detail: the factor)
	ActionLogout     = "user-logout"      // logout
	ActionEnroll     = "user-enroll"      // enrollment code used, password set, factor enrolled (Detail)
	ActionAdd        = "user-add"         // user created
	ActionDisable    = "user-disable"     // user disabled
	ActionEnable     = "user-enable"      // user enabled
	ActionSetRole    = "user-set-role"    // role changed (Detail: the role)
	ActionSetPatient = "user-set-patient" // a patient user linked to their Patient resource
	ActionResetMFA   = "user-reset-mfa"
	ActionPassword   = "user-password" // password changed
	ActionThrottled  = "user-throttled"
)

// Outcomes of Event.
const (
	OutcomeSuccess = "success"
	OutcomeFailure = "failure"
	OutcomeDenied  = "denied"
)

// Recorder takes security events; the lead wires it to the audit log.
type Recorder interface {
	Record(ctx context.Context, e Event) error
}

// RecorderFunc adapts a function to Recorder.
type RecorderFunc func(ctx context.Context, e Event) error

// Record calls f.
func (f RecorderFunc) Record(ctx context.Context, e Event) error { return f(ctx, e) }

// Config builds a Service.
type Config struct {
	Store  store.AuthObjects // required
	Sealer *keyring.Sealer   // PurposeAuthSeal; required
	MAC    *keyring.MAC      // PurposeAuthLookup; required

	Recorder Recorder         // nil: events are dropped
	Log      *slog.Logger     // nil: discarded
	Now      func() time.Time // nil: time.Now

	Hash HashParams // zero: DefaultHashParams

	IdleTimeout     time.Duration // zero: DefaultIdleTimeout
	AbsoluteTimeout time.Duration // zero: DefaultAbsoluteTimeout

	// BaseURL is the server's public URL ("https://ehr.example.org");
	// WebAuthn's relying party id and origin default to its host and
	// origin. Needed only for the pages.
	BaseURL string
	// RPID and RPOrigins override the WebAuthn relying party.
	RPID      string
	RPOrigins []string
	// Issuer names the service in authenticator apps; "" is "ehrvault".
	Issuer string

	// SourceAddr returns a request's source address; nil: the host of
	// r.RemoteAddr.
	SourceAddr func(r *http.Request) string
}

// Service manages users and their sessions; it implements the Sessions
// seam (Session, LoginURL, Alive). It is safe for concurrent use.
type Service struct {
	store    store.AuthObjects
	sealer   *keyring.Sealer
	mac      *keyring.MAC
	rec      Recorder
	log      *slog.Logger
	now      func() time.Time
	hash     HashParams
	idle     time.Duration
	absolute time.Duration
	issuer   string
	source   func(r *http.Request) string
	wa       *webauthn.WebAuthn // nil without a relying party
	throttle *throttle
	dummy    func() string // a hash to verify against for unknown users
}

// New returns a Service.
func New(cfg Config) (*Service, error) {
	if cfg.Store == nil || cfg.Sealer == nil || cfg.MAC == nil {
		return nil, errors.New("users: Store, Sealer and MAC are required")
	}
	s := &Service{store: cfg.Store, sealer: cfg.Sealer, mac: cfg.MAC, rec: cfg.Recorder, log: cfg.Log,
		now: cfg.Now, hash: cfg.Hash, idle: cfg.IdleTimeout, absolute: cfg.AbsoluteTimeout, issuer: cfg.Issuer, source: cfg.SourceAddr}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	if s.now == nil {
		s.now = time.Now
	}
	if s.hash == (HashParams{}) {
		s.hash = DefaultHashParams
	}
	if s.idle <= 0 {
		s.idle = DefaultIdleTimeout
	}
	if s.absolute <= 0 {
		s.absolute = DefaultAbsoluteTimeout
	}
	if s.issuer == "" {
		s.issuer = "ehrvault"
	}
	if s.source == nil {
		s.source = remoteHost
	}
	rpid, origins := cfg.RPID, cfg.RPOrigins
	if cfg.BaseURL != "" {
		u, err := url.Parse(cfg.BaseURL)
		if err != nil || u.Host == "" || (u.Scheme != "https" && u.Scheme != "http") {
			return nil, errors.New("users: BaseURL must be an absolute http(s) URL")
		}
		if rpid == "" {
			rpid = u.Hostname()
		}
		if len(origins) == 0 {
			origins = []string{u.Scheme + "://" + u.Host}
		}
	}
	if rpid != "" && len(origins) > 0 {
		wa, err := webauthn.New(&webauthn.Config{RPID: rpid, RPDisplayName: s.issuer, RPOrigins: origins})
		if err != nil {
			return nil, fmt.Errorf("users: webauthn: %w", err)
		}
		s.wa = wa
	}
	s.throttle = newThrottle(s.now)
	s.dummy = sync.OnceValue(func() string { return hashPassword("not a password: equalises the time of unknown users", s.hash) })
	return s, nil
}

// record hands e to the Recorder; a failure to record is logged, and
// returned so that callers that must not act unaudited can refuse.
func (s *Service) record(ctx context.Context, e Event) error {
	if s.rec == nil {
		return nil
	}
	if src, ok := ctx.Value(sourceKeyCtx{}).(string); ok && e.Source == "local" {
		e.Source = src // an admin API call: where it came from
	}
	if err := s.rec.Record(ctx, e); err != nil {
		s.log.Error("users: record event", "action", e.Action, "err", err)
		return err
	}
	return nil
}

type sourceKeyCtx struct{}

// user is the sealed record of a person.
type user struct {
	ID          string `json:"id"`
	Name        string `json:"name"` // as given; the lookup is of its NFKC lower-case form
	DisplayName string `json:"display,omitempty"`
	Role        string `json:"role"`
	Patient     string `json:"patient,omitempty"` // for role patient: the id of their own Patient resource
	Disabled    bool   `json:"disabled,omitempty"`
	Epoch       int64  `json:"epoch"`

	Password []byte `json:"pwd,omitempty"` // Seal(PHC string, "pwd/"+id)

	TOTPSecret []byte `json:"totp,omitempty"` // base32 secret
	TOTPStep   int64  `json:"totp_step,omitempty"`

	WebAuthn []webauthn.Credential `json:"webauthn,omitempty"`
	Recovery [][]byte              `json:"rcodes,omitempty"` // MACs of unused recovery codes

	Created time.Time `json:"created"`
	Updated time.Time `json:"updated"`

	version int64
}

// enrolled reports whether u has a password and a second factor.
func (u *user) enrolled() bool {
	return len(u.Password) > 0 && (len(u.TOTPSecret) > 0 || len(u.WebAuthn) > 0)
}

// webauthnUser adapts a user to go-webauthn. The user handle is the
// random user id: no personal data.
type webauthnUser struct{ u *user }

func (w webauthnUser) WebAuthnID() []byte                         { return []byte(w.u.ID) }
func (w webauthnUser) WebAuthnName() string                       { return w.u.Name }
func (w webauthnUser) WebAuthnDisplayName() string                { return cmpOr(w.u.DisplayName, w.u.Name) }
func (w webauthnUser) WebAuthnCredentials() []webauthn.Credential { return w.u.WebAuthn }

func cmpOr(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

// User is what may be shown about a user: no secrets.
type User struct {
	ID          string    `json:"id"`
	Name        string    `json:"name"`
	DisplayName string    `json:"display_name,omitempty"`
	Role        string    `json:"role"`
	Patient     string    `json:"patient,omitempty"` // a patient's own Patient id
	Disabled    bool      `json:"disabled"`
	Enrolled    bool      `json:"enrolled"`
	Factors     []string  `json:"factors"` // enrolled second factors: auth.FactorTOTP, auth.FactorWebAuthn
	Created     time.Time `json:"created"`
	Updated     time.Time `json:"updated"`
}

func (u *user) public() User {
	p := User{ID: u.ID, Name: u.Name, DisplayName: u.DisplayName, Role: u.Role, Patient: u.Patient, Disabled: u.Disabled,
		Enrolled: u.enrolled(), Factors: []string{}, Created: u.Created, Updated: u.Updated}
	if len(u.TOTPSecret) > 0 {
		p.Factors = append(p.Factors, auth.FactorTOTP)
	}
	if len(u.WebAuthn) > 0 {
		p.Factors = append(p.Factors, auth.FactorWebAuthn)
	}
	return p
}

// NormalizeName is the form of a user name that is unique: NFKC, lower
// case, trimmed.
func NormalizeName(name string) string {
	return strings.ToLower(norm.NFKC.String(strings.TrimSpace(name)))
}

// checkName refuses empty, over-long or control-character names.
func checkName(name string) error {
	n := NormalizeName(name)
	if n == "" || utf8.RuneCountInString(n) > 64 || !utf8.ValidString(n) {
		return fmt.Errorf("%w: name must be 1 to 64 characters", ErrInvalid)
	}
	for _, r := range n {
		if r < 0x20 || r == 0x7f || r == ' ' || r == '/' {
			return fmt.Errorf("%w: name must not hold spaces, slashes or control characters", ErrInvalid)
		}
	}
	return nil
}

func (s *Service) lookup(kind, value string) []byte {
	m := s.mac.Sum([]byte(kind + "\x00" + value))
	return m[:]
}

func (s *Service) nameLookup(name string) []byte { return s.lookup(KindUser, NormalizeName(name)) }

// randomID returns prefix + 128 random bits in hex.
func randomID(prefix string) string {
	var b [16]byte
	rand.Read(b[:]) // never fails (crypto/rand)
	return prefix + hex.EncodeToString(b[:])
}

// randomCode returns n random bytes as unpadded base32, in groups of 4 for
// people to copy.
func randomCode(n int) string {
	b := make([]byte, n)
	rand.Read(b) // never fails (crypto/rand)
	s := strings.ToLower(base32.StdEncoding.WithPadding(base32.NoPadding).EncodeToString(b))
	var out strings.Builder
	for i, r := range s {
		if i > 0 && i%4 == 0 {
			out.WriteByte('-')
		}
		out.WriteRune(r)
	}
	return out.String()
}

// canonCode undoes what people do to a code they copy: case, spaces,
// dashes.
func canonCode(c string) string {
	return strings.Map(func(r rune) rune {
		switch {
		case r == '-' || r == ' ' || r == '\t':
			return -1
		case r >= 'A' && r <= 'Z':
			return r + 'a' - 'A'
		}
		return r
	}, strings.TrimSpace(c))
}

func (s *Service) sealUser(u *user) ([]byte, error) {
	b, err := json.Marshal(u)
	if err != nil {
		return nil, err
	}
	out := s.sealer.Seal(b, []byte(KindUser+"/"+u.ID))
	clear(b)
	return out, nil
}

func (s *Service) openUser(o *store.AuthObject) (*user, error) {
	b, err := s.sealer.Open(o.Data, []byte(KindUser+"/"+o.ID))
	if err != nil {
		return nil, fmt.Errorf("open user %s: %w", o.ID, err)
	}
	var u user
	err = json.Unmarshal(b, &u)
	clear(b)
	if err != nil || u.ID != o.ID {
		return nil, fmt.Errorf("open user %s: malformed record", o.ID)
	}
	u.version = o.Version
	return &u, nil
}

// getUser returns the user with id; ErrNotFound if none.
func (s *Service) getUser(ctx context.Context, id string) (*user, error) {
	o, err := s.store.AuthObject(ctx, KindUser, id)
	if errors.Is(err, store.ErrNotFound) {
		return nil, ErrNotFound
	}
	if err != nil {
		return nil, err
	}
	return s.openUser(o)
}

// userByName returns the user with this name; ErrNotFound if none.
func (s *Service) userByName(ctx context.Context, name string) (*user, error) {
	o, err := s.store.AuthObjectByLookup(ctx, KindUser, s.nameLookup(name))
	if errors.Is(err, store.ErrNotFound) {
		return nil, ErrNotFound
	}
	if err != nil {
		return nil, err
	}
	return s.openUser(o)
}

// putUser writes u if nobody else did since it was read; store.ErrConflict
// otherwise.
func (s *Service) putUser(ctx context.Context, u *user) error {
	u.Updated = s.now().UTC()
	data, err := s.sealUser(u)
	if err != nil {
		return err
	}
	v, err := s.store.UpdateAuthObject(ctx, store.AuthObject{Kind: KindUser, ID: u.ID, Lookup: s.nameLookup(u.Name), Data: data, Version: u.version})
	if err != nil {
		return err
	}
	u.version = v
	return nil
}

// modify applies f to the current user record and writes it, retrying on
// a conflicting write. f returns an error to abort.
func (s *Service) modify(ctx context.Context, id string, f func(u *user) error) (*user, error) {
	for range 16 {
		u, err := s.getUser(ctx, id)
		if err != nil {
			return nil, err
		}
		if err := f(u); err != nil {
			return nil, err
		}
		err = s.putUser(ctx, u)
		if errors.Is(err, store.ErrConflict) {
			continue
		}
		if err != nil {
			return nil, err
		}
		return u, nil
	}
	return nil, errors.New("users: update: too many concurrent writes")
}

// Resolve returns the user named by an id (usr_…) or a user name;
// ErrNotFound if none.
func (s *Service) Resolve(ctx context.Context, idOrName string) (User, error) {
	u, err := s.resolve(ctx, idOrName)
	if err != nil {
		return User{}, err
	}
	return u.public(), nil
}

func (s *Service) resolve(ctx context.Context, idOrName string) (*user, error) {
	if strings.HasPrefix(idOrName, "usr_") {
		if u, err := s.getUser(ctx, idOrName); err == nil || !errors.Is(err, ErrNotFound) {
			return u, err
		}
	}
	return s.userByName(ctx, idOrName)
}

// Enrollment is a one-time code that lets a person set a password and
// enroll factors. Code is secret: show it once, to the person.
type Enrollment struct {
	User    User
	Code    string
	Expires time.Time
}

// Add creates a user with role and returns an enrollment code for them;
// ErrExists if the name is taken, ErrInvalid for a bad name or role.
func (s *Service) Add(ctx context.Context, name, displayName, role string) (*Enrollment, error) {
	if err := checkName(name); err != nil {
		return nil, err
	}
	if !auth.ValidRole(role) {
		return nil, fmt.Errorf("%w: role must be one of %s", ErrInvalid, strings.Join(auth.Roles, ", "))
	}
	if utf8.RuneCountInString(displayName) > 200 {
		return nil, fmt.Errorf("%w: display name must be at most 200 characters", ErrInvalid)
	}
	now := s.now().UTC()
	u := &user{ID: randomID("usr_"), Name: strings.TrimSpace(name), DisplayName: strings.TrimSpace(displayName), Role: role, Epoch: 1, Created: now, Updated: now}
	data, err := s.sealUser(u)
	if err != nil {
		return nil, err
	}
	err = s.store.CreateAuthObject(ctx, store.AuthObject{Kind: KindUser, ID: u.ID, Lookup: s.nameLookup(u.Name), Data: data})
	if errors.Is(err, store.ErrExists) {
		return nil, ErrExists
	}
	if err != nil {
		return nil, fmt.Errorf("add user: %w", err)
	}
	u.version = 1
	e, err := s.newEnrollment(ctx, u)
	if err != nil {
		return nil, err
	}
	s.record(ctx, Event{Action: ActionAdd, Outcome: OutcomeSuccess, User: u.ID, Source: "local", Detail: role})
	return e, nil
}

// enrollment is the sealed record of an enrollment code.
type enrollment struct {
	User    string    `json:"user"`
	Epoch   int64     `json:"epoch"`
	Expires time.Time `json:"expires"`
}

// newEnrollment replaces u's enrollment codes with a new one.
func (s *Service) newEnrollment(ctx context.Context, u *user) (*Enrollment, error) {
	if _, err := s.store.DeleteAuthObjects(ctx, KindEnrollment, u.ID); err != nil {
		return nil, fmt.Errorf("enrollment code: %w", err)
	}
	code := randomCode(20) // 160 bits
	exp := s.now().UTC().Add(EnrollmentTTL)
	id := randomID("enr_")
	b, _ := json.Marshal(enrollment{User: u.ID, Epoch: u.Epoch, Expires: exp})
	err := s.store.CreateAuthObject(ctx, store.AuthObject{Kind: KindEnrollment, ID: id, Parent: u.ID,
		Lookup: s.lookup(KindEnrollment, canonCode(code)), Data: s.sealer.Seal(b, []byte(KindEnrollment+"/"+id)), Expires: exp})
	if err != nil {
		return nil, fmt.Errorf("enrollment code: %w", err)
	}
	return &Enrollment{User: u.public(), Code: code, Expires: exp}, nil
}

// useEnrollment consumes a code and returns its user; errCode if it is
// unknown, used, expired or from before the user's epoch changed. Only
// one of two concurrent uses wins: the record is deleted, and the store
// tells the second it is gone.
func (s *Service) useEnrollment(ctx context.Context, code string) (*user, error) {
	o, err := s.store.AuthObjectByLookup(ctx, KindEnrollment, s.lookup(KindEnrollment, canonCode(code)))
	if errors.Is(err, store.ErrNotFound) {
		return nil, errCode
	}
	if err != nil {
		return nil, err
	}
	b, err := s.sealer.Open(o.Data, []byte(KindEnrollment+"/"+o.ID))
	if err != nil {
		return nil, err
	}
	var e enrollment
	if err := json.Unmarshal(b, &e); err != nil {
		return nil, errors.New("enrollment code: malformed record")
	}
	if err := s.store.DeleteAuthObject(ctx, KindEnrollment, o.ID); err != nil {
		if errors.Is(err, store.ErrNotFound) {
			return nil, errCode
		}
		return nil, err
	}
	if !s.now().Before(e.Expires) {
		return nil, errCode
	}
	u, err := s.getUser(ctx, e.User)
	if err != nil {
		return nil, err
	}
	if u.Disabled || u.Epoch != e.Epoch {
		return nil, errCode
	}
	return u, nil
}

// List returns every user, in id order.
func (s *Service) List(ctx context.Context) ([]User, error) {
	objs, err := s.store.AuthObjects(ctx, KindUser, "")
	if err != nil {
		return nil, fmt.Errorf("list users: %w", err)
	}
	out := make([]User, 0, len(objs))
	for i := range objs {
		u, err := s.openUser(&objs[i])
		if err != nil {
			return nil, err
		}
		out = append(out, u.public())
	}
	slices.SortFunc(out, func(a, b User) int { return strings.Compare(NormalizeName(a.Name), NormalizeName(b.Name)) })
	return out, nil
}

// bump raises u's epoch and deletes its sessions: called with a modified
// record that has been written.
func (s *Service) killSessions(ctx context.Context, userID string) error {
	_, err := s.store.DeleteAuthObjects(ctx, KindSession, userID)
	return err
}

// Disable disables a user: every session dies and no login succeeds until
// Enable.
func (s *Service) Disable(ctx context.Context, id string) error {
	_, err := s.modify(ctx, id, func(u *user) error {
		u.Disabled = true
		u.Epoch++
		return nil
	})
	if err != nil {
		return err
	}
	s.record(ctx, Event{Action: ActionDisable, Outcome: OutcomeSuccess, User: id, Source: "local"})
	return s.killSessions(ctx, id)
}

// Enable enables a disabled user.
func (s *Service) Enable(ctx context.Context, id string) error {
	_, err := s.modify(ctx, id, func(u *user) error {
		u.Disabled = false
		return nil
	})
	if err != nil {
		return err
	}
	s.record(ctx, Event{Action: ActionEnable, Outcome: OutcomeSuccess, User: id, Source: "local"})
	return nil
}

// SetRole changes a user's role; the user's sessions die, since they
// carry the old one.
func (s *Service) SetRole(ctx context.Context, id, role string) error {
	if !auth.ValidRole(role) {
		return fmt.Errorf("%w: role must be one of %s", ErrInvalid, strings.Join(auth.Roles, ", "))
	}
	_, err := s.modify(ctx, id, func(u *user) error {
		if u.Role != role {
			u.Role = role
			u.Epoch++
		}
		return nil
	})
	if err != nil {
		return err
	}
	s.record(ctx, Event{Action: ActionSetRole, Outcome: OutcomeSuccess, User: id, Source: "local", Detail: role})
	return s.killSessions(ctx, id)
}

// SetPatient links a user with role patient to their own Patient resource
// (id), the only record their SMART apps may reach; "" unlinks. The
// user's sessions die, since they carry the old link.
func (s *Service) SetPatient(ctx context.Context, id, patient string) error {
	if patient != "" && !validPatientID(patient) {
		return fmt.Errorf("%w: a patient id is 1 to 64 letters, digits, '-' and '.'", ErrInvalid)
	}
	_, err := s.modify(ctx, id, func(u *user) error {
		if u.Role != auth.RolePatient && patient != "" {
			return fmt.Errorf("%w: only a user with role patient is linked to a patient", ErrInvalid)
		}
		if u.Patient != patient {
			u.Patient = patient
			u.Epoch++
		}
		return nil
	})
	if err != nil {
		return err
	}
	s.record(ctx, Event{Action: ActionSetPatient, Outcome: OutcomeSuccess, User: id, Source: "local"})
	return s.killSessions(ctx, id)
}

// validPatientID reports whether id is a FHIR id.
func validPatientID(id string) bool {
	if len(id) == 0 || len(id) > 64 {
		return false
	}
	for _, c := range id {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '.') {
			return false
		}
	}
	return true
}

// ResetMFA clears a user's password, TOTP secret, WebAuthn credentials and
// recovery codes, kills every session, and returns a new enrollment code
// with which the person starts again.
func (s *Service) ResetMFA(ctx context.Context, id string) (*Enrollment, error) {
	u, err := s.modify(ctx, id, func(u *user) error {
		u.Password, u.TOTPSecret, u.TOTPStep, u.WebAuthn, u.Recovery = nil, nil, 0, nil, nil
		u.Epoch++
		return nil
	})
	if err != nil {
		return nil, err
	}
	if err := s.killSessions(ctx, id); err != nil {
		return nil, err
	}
	e, err := s.newEnrollment(ctx, u)
	if err != nil {
		return nil, err
	}
	s.record(ctx, Event{Action: ActionResetMFA, Outcome: OutcomeSuccess, User: id, Source: "local"})
	return e, nil
}

// SetPassword checks and sets a user's password; every session dies.
func (s *Service) SetPassword(ctx context.Context, id, password string) error {
	u, err := s.getUser(ctx, id)
	if err != nil {
		return err
	}
	if err := CheckPassword(password, u.Name, u.DisplayName); err != nil {
		return err
	}
	phc := hashPassword(password, s.hash)
	_, err = s.modify(ctx, id, func(u *user) error {
		u.Password = s.sealer.Seal([]byte(phc), []byte("pwd/"+u.ID))
		u.Epoch++
		return nil
	})
	if err != nil {
		return err
	}
	s.record(ctx, Event{Action: ActionPassword, Outcome: OutcomeSuccess, User: id})
	return s.killSessions(ctx, id)
}

// checkPassword verifies password against u's wrapped hash, or against a
// dummy hash when u is nil or has none, so that unknown names take as
// long as known ones.
func (s *Service) checkPassword(u *user, password string) bool {
	phc := s.dummy()
	if u != nil && len(u.Password) > 0 {
		b, err := s.sealer.Open(u.Password, []byte("pwd/"+u.ID))
		if err != nil {
			s.log.Error("users: unwrap password hash", "user", u.ID)
			return false
		}
		phc = string(b)
		clear(b)
	}
	ok, err := verifyPassword(password, phc)
	return ok && err == nil && u != nil && len(u.Password) > 0
}
