package users

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strconv"
	"time"

	"github.com/go-webauthn/webauthn/protocol"
	"github.com/go-webauthn/webauthn/webauthn"

	"github.com/ehrvault/ehrvault/internal/auth"
	"github.com/ehrvault/ehrvault/internal/store"
)

// ceremonyTTL bounds a WebAuthn challenge: the browser asks the
// authenticator in between, and people take a moment to touch it.
const ceremonyTTL = 5 * time.Minute

// stepUpRecent is how recent a second factor must be to add a key to a
// full session.
const stepUpRecent = 5 * time.Minute

// ceremony kinds, the suffix of a KindWebAuthn record's id.
const (
	ceremonyRegister = ".reg"
	ceremonyLogin    = ".login"
)

// jsonError answers {"error": code, "error_description": desc}.
func jsonError(w http.ResponseWriter, status int, code, desc string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(map[string]string{"error": code, "error_description": desc})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v)
}

// saveCeremony keeps a challenge server side, one per session and kind;
// a new one replaces the old.
func (s *Service) saveCeremony(ctx context.Context, ss *session, kind string, sd *webauthn.SessionData) error {
	id := ss.ID + kind
	s.store.DeleteAuthObject(ctx, KindWebAuthn, id) // ErrNotFound is fine
	b, err := json.Marshal(sd)
	if err != nil {
		return err
	}
	return s.store.CreateAuthObject(ctx, store.AuthObject{Kind: KindWebAuthn, ID: id, Parent: ss.ID,
		Data: s.sealer.Seal(b, []byte(KindWebAuthn+"/"+id)), Expires: s.now().Add(ceremonyTTL)})
}

// takeCeremony returns and deletes the session's challenge of kind; only
// one caller gets it.
func (s *Service) takeCeremony(ctx context.Context, ss *session, kind string) (*webauthn.SessionData, error) {
	id := ss.ID + kind
	o, err := s.store.AuthObject(ctx, KindWebAuthn, id)
	if err != nil {
		return nil, errCode
	}
	if err := s.store.DeleteAuthObject(ctx, KindWebAuthn, id); err != nil {
		return nil, errCode
	}
	if !s.now().Before(o.Expires) {
		return nil, errCode
	}
	b, err := s.sealer.Open(o.Data, []byte(KindWebAuthn+"/"+id))
	if err != nil {
		return nil, errCode
	}
	var sd webauthn.SessionData
	if err := json.Unmarshal(b, &sd); err != nil {
		return nil, errCode
	}
	return &sd, nil
}

// ceremonySession returns the session a WebAuthn call acts in, after the
// CSRF check; it writes the error itself and returns nil on failure.
func (s *Service) ceremonySession(w http.ResponseWriter, r *http.Request) (*session, *user) {
	if s.wa == nil {
		jsonError(w, http.StatusNotFound, "not_configured", "WebAuthn needs the server's base URL")
		return nil, nil
	}
	if !checkCSRF(r) {
		jsonError(w, http.StatusForbidden, "csrf", "missing or wrong X-CSRF-Token")
		return nil, nil
	}
	ss, u, err := s.current(r)
	if err != nil {
		jsonError(w, http.StatusUnauthorized, "unauthenticated", "no live session")
		return nil, nil
	}
	return ss, u
}

func (s *Service) webauthnRegisterBegin(w http.ResponseWriter, r *http.Request) {
	ss, u := s.ceremonySession(w, r)
	if ss == nil {
		return
	}
	if !s.mayRegister(ss) {
		jsonError(w, http.StatusForbidden, "step_up_required", "confirm a second factor first")
		return
	}
	creation, sd, err := s.wa.BeginRegistration(webauthnUser{u},
		webauthn.WithExclusions(webauthn.Credentials(u.WebAuthn).CredentialDescriptors()),
		webauthn.WithResidentKeyRequirement(protocol.ResidentKeyRequirementDiscouraged))
	if err == nil {
		err = s.saveCeremony(r.Context(), ss, ceremonyRegister, sd)
	}
	if err != nil {
		s.log.Error("users: webauthn register begin", "err", err)
		jsonError(w, http.StatusInternalServerError, "server_error", "internal error")
		return
	}
	writeJSON(w, http.StatusOK, creation)
}

// mayRegister: a key is added during enrollment, or in a full session
// whose second factor is recent.
func (s *Service) mayRegister(ss *session) bool {
	if ss.Stage == stageFactor {
		return true
	}
	p := &auth.Principal{Factors: ss.Factors}
	return ss.Stage == stageFull && p.FactorSince("", s.now().Add(-stepUpRecent))
}

func (s *Service) webauthnRegisterFinish(w http.ResponseWriter, r *http.Request) {
	ss, u := s.ceremonySession(w, r)
	if ss == nil {
		return
	}
	ctx := r.Context()
	if !s.mayRegister(ss) {
		jsonError(w, http.StatusForbidden, "step_up_required", "confirm a second factor first")
		return
	}
	sd, err := s.takeCeremony(ctx, ss, ceremonyRegister)
	if err != nil {
		jsonError(w, http.StatusBadRequest, "invalid_request", "no pending registration; start again")
		return
	}
	parsed, err := protocol.ParseCredentialCreationResponseBody(r.Body)
	if err != nil {
		jsonError(w, http.StatusBadRequest, "invalid_request", "malformed credential")
		return
	}
	cred, err := s.wa.CreateCredential(webauthnUser{u}, *sd, parsed)
	if err != nil {
		s.record(ctx, Event{Action: ActionEnroll, Outcome: OutcomeFailure, User: u.ID, Session: ss.ID, Source: s.source(r), Detail: auth.FactorWebAuthn})
		jsonError(w, http.StatusBadRequest, "invalid_credential", "the authenticator's answer did not verify")
		return
	}
	if _, err := s.modify(ctx, u.ID, func(u *user) error {
		if u.Epoch != ss.Epoch {
			return auth.ErrUnauthenticated
		}
		u.WebAuthn = append(u.WebAuthn, *cred)
		return nil
	}); err != nil {
		jsonError(w, http.StatusUnauthorized, "unauthenticated", "no live session")
		return
	}
	s.record(ctx, Event{Action: ActionEnroll, Outcome: OutcomeSuccess, User: u.ID, Session: ss.ID, Source: s.source(r), Detail: auth.FactorWebAuthn})
	s.addFactor(ss, auth.FactorWebAuthn)
	secret, err := s.putSession(ctx, ss)
	if err != nil {
		jsonError(w, http.StatusConflict, "conflict", "the session changed; reload the page")
		return
	}
	setSession(w, secret, s.deadline(ss).Sub(s.now()))
	next := "/auth/enroll"
	if ss.Stage == stageFull {
		next = "/auth/"
	}
	writeJSON(w, http.StatusOK, map[string]string{"next": next})
}

func (s *Service) webauthnLoginBegin(w http.ResponseWriter, r *http.Request) {
	ss, u := s.ceremonySession(w, r)
	if ss == nil {
		return
	}
	if ss.Stage != stageMFA && ss.Stage != stageFull {
		jsonError(w, http.StatusForbidden, "wrong_stage", "give your password first")
		return
	}
	if len(u.WebAuthn) == 0 {
		jsonError(w, http.StatusBadRequest, "no_credentials", "no security key is registered")
		return
	}
	assertion, sd, err := s.wa.BeginLogin(webauthnUser{u})
	if err == nil {
		err = s.saveCeremony(r.Context(), ss, ceremonyLogin, sd)
	}
	if err != nil {
		s.log.Error("users: webauthn login begin", "err", err)
		jsonError(w, http.StatusInternalServerError, "server_error", "internal error")
		return
	}
	writeJSON(w, http.StatusOK, assertion)
}

func (s *Service) webauthnLoginFinish(w http.ResponseWriter, r *http.Request) {
	ss, u := s.ceremonySession(w, r)
	if ss == nil {
		return
	}
	ctx := r.Context()
	src := s.source(r)
	action := ActionSecondStep
	if ss.Stage == stageFull {
		action = ActionStepUp
	} else if ss.Stage != stageMFA {
		jsonError(w, http.StatusForbidden, "wrong_stage", "give your password first")
		return
	}
	if err := s.throttled(ctx, action, u.ID, u.Name, src); err != nil {
		var te *ThrottledError
		errors.As(err, &te)
		w.Header().Set("Retry-After", strconv.Itoa(int(te.RetryAfter/time.Second)+1))
		jsonError(w, http.StatusTooManyRequests, "throttled", "too many failed attempts")
		return
	}
	sd, err := s.takeCeremony(ctx, ss, ceremonyLogin)
	if err != nil {
		jsonError(w, http.StatusBadRequest, "invalid_request", "no pending login; start again")
		return
	}
	parsed, err := protocol.ParseCredentialRequestResponseBody(r.Body)
	var cred *webauthn.Credential
	if err == nil {
		cred, err = s.wa.ValidateLogin(webauthnUser{u}, *sd, parsed)
	}
	if err == nil && cred.Authenticator.CloneWarning {
		err = errors.New("signature counter went backwards")
	}
	if err != nil {
		s.throttle.fail(s.accountKey(u.Name), sourceKey(src))
		s.record(ctx, Event{Action: action, Outcome: OutcomeFailure, User: u.ID, Session: ss.ID, Source: src, Detail: auth.FactorWebAuthn})
		jsonError(w, http.StatusUnauthorized, "invalid_credential", "the security key's answer did not verify")
		return
	}
	// Keep the new signature counter.
	s.modify(ctx, u.ID, func(u *user) error {
		for i := range u.WebAuthn {
			if string(u.WebAuthn[i].ID) == string(cred.ID) {
				u.WebAuthn[i].Authenticator = cred.Authenticator
			}
		}
		return nil
	})
	s.throttle.succeed(s.accountKey(u.Name))
	s.record(ctx, Event{Action: action, Outcome: OutcomeSuccess, User: u.ID, Session: ss.ID, Source: src, Detail: auth.FactorWebAuthn})
	next := nextOf(r.URL.Query().Get("next"))
	if next == "" {
		next = ss.Next
	}
	s.addFactor(ss, auth.FactorWebAuthn)
	ss.Stage = stageFull
	secret, err := s.putSession(ctx, ss)
	if err != nil {
		jsonError(w, http.StatusConflict, "conflict", "the session changed; reload the page")
		return
	}
	setSession(w, secret, s.absolute)
	if !localPath(next) {
		next = "/auth/"
	}
	writeJSON(w, http.StatusOK, map[string]string{"next": next})
}
