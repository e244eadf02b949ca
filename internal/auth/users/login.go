package users

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/ehrvault/ehrvault/internal/auth"
)

// ThrottledError refuses a login attempt made too soon after failures:
// answer 429 with Retry-After. The password was not checked.
type ThrottledError struct{ RetryAfter time.Duration }

func (e *ThrottledError) Error() string {
	return fmt.Sprintf("login: too many failed attempts; retry after %s", e.RetryAfter.Round(time.Second))
}

func remoteHost(r *http.Request) string {
	if h, _, err := net.SplitHostPort(r.RemoteAddr); err == nil {
		return h
	}
	return r.RemoteAddr
}

func (s *Service) accountKey(name string) string {
	return "a:" + hex.EncodeToString(s.nameLookup(name))
}

func sourceKey(src string) string { return "s:" + src }

// throttled returns a ThrottledError if the account or the address must
// wait, and records it.
func (s *Service) throttled(ctx context.Context, action, userID, name, src string) error {
	if d := s.throttle.wait(s.accountKey(name), sourceKey(src)); d > 0 {
		s.record(ctx, Event{Action: action, Outcome: OutcomeDenied, User: userID, Source: src, Detail: "throttled"})
		return &ThrottledError{RetryAfter: d}
	}
	return nil
}

// checkLogin is the password step: it returns the user if name and
// password match an enabled, enrolled user; errCode for every other
// failure, a *ThrottledError while the account or address must wait.
func (s *Service) checkLogin(ctx context.Context, name, password, src string) (*user, error) {
	if err := s.throttled(ctx, ActionLogin, "", name, src); err != nil {
		return nil, err
	}
	u, err := s.userByName(ctx, name)
	if err != nil && !errors.Is(err, ErrNotFound) {
		return nil, err
	}
	if err != nil {
		u = nil
	}
	ok := s.checkPassword(u, password)
	if !ok || u.Disabled || !u.enrolled() {
		s.throttle.fail(s.accountKey(name), sourceKey(src))
		id := ""
		if u != nil {
			id = u.ID
		}
		s.record(ctx, Event{Action: ActionLogin, Outcome: OutcomeFailure, User: id, Source: src})
		return nil, errCode
	}
	s.record(ctx, Event{Action: ActionLogin, Outcome: OutcomeSuccess, User: u.ID, Source: src, Detail: auth.FactorPassword})
	return u, nil
}

// useFactor checks a second factor given as a code: method auth.FactorTOTP
// or auth.FactorRecovery. It is throttled with the password step, on the
// same counters.
func (s *Service) useFactor(ctx context.Context, action string, u *user, ss *session, method, code, src string) error {
	if err := s.throttled(ctx, action, u.ID, u.Name, src); err != nil {
		return err
	}
	code = strings.TrimSpace(code)
	var err error
	switch method {
	case auth.FactorTOTP:
		err = s.useTOTP(ctx, u.ID, code)
	case auth.FactorRecovery:
		err = s.useRecovery(ctx, u.ID, code)
	default:
		err = errCode
	}
	if err != nil {
		if errors.Is(err, errCode) {
			s.throttle.fail(s.accountKey(u.Name), sourceKey(src))
			s.record(ctx, Event{Action: action, Outcome: OutcomeFailure, User: u.ID, Session: ss.ID, Source: src, Detail: method})
		}
		return err
	}
	s.throttle.succeed(s.accountKey(u.Name))
	s.record(ctx, Event{Action: action, Outcome: OutcomeSuccess, User: u.ID, Session: ss.ID, Source: src, Detail: method})
	return nil
}

// addFactor records that method was used now: the session's entry for it
// is replaced, so that step-up renews it.
func (s *Service) addFactor(ss *session, method string) {
	now := s.now().UTC()
	for i := range ss.Factors {
		if ss.Factors[i].Method == method {
			ss.Factors[i].At = now
			return
		}
	}
	ss.Factors = append(ss.Factors, auth.Factor{Method: method, At: now})
}

// Login runs the password step and a code as second factor (TOTP or
// recovery) in one call, for callers without a browser (tests, a future
// API): it returns the new session's cookie value and principal.
func (s *Service) Login(ctx context.Context, name, password, method, code, src string) (string, *auth.Principal, error) {
	u, err := s.checkLogin(ctx, name, password, src)
	if err != nil {
		return "", nil, err
	}
	_, ss, err := s.newSession(ctx, u, stageMFA, []auth.Factor{{Method: auth.FactorPassword, At: s.now().UTC()}}, "")
	if err != nil {
		return "", nil, err
	}
	if err := s.useFactor(ctx, ActionSecondStep, u, ss, method, code, src); err != nil {
		s.store.DeleteAuthObject(ctx, KindSession, ss.ID)
		return "", nil, err
	}
	s.addFactor(ss, method)
	ss.Stage = stageFull
	secret, err := s.putSession(ctx, ss)
	if err != nil {
		return "", nil, err
	}
	return secret, principal(ss, u), nil
}
