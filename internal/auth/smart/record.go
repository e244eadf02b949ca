package smart

import (
	"context"
	"net/http"
)

// Actions of recorded events.
const (
	ActionAuthorize    = "smart-authorize"     // a consent given (success) or refused (denied)
	ActionTokenIssue   = "smart-token-issue"   // tokens issued for a code or a client assertion
	ActionTokenRefresh = "smart-token-refresh" // a refresh token rotated
	ActionTokenRevoke  = "smart-token-revoke"  // a token or family revoked (RFC 7009, or reuse detected)
	ActionTokenFailure = "smart-token-failure" // a refused token request
	ActionAuthFailure  = "smart-authenticate"  // a FHIR request whose token or proof was refused
)

// Outcomes of recorded events.
const (
	OutcomeSuccess = "success"
	OutcomeFailure = "failure" // the client's mistake
	OutcomeDenied  = "denied"  // refused: not authenticated, not allowed, or an attack
)

// Event is one security event. It never holds a token, code, verifier,
// assertion or key: only public ids.
type Event struct {
	Action    string
	Outcome   string
	Principal string // the user id, or the client id for programs; "" if unknown
	Client    string // the client id, if known
	Session   string // the login session, if any
	Device    string // the enrolled device, if any
	Token     string // the public id of the token or family concerned, if any
	Source    string // the caller's network address
	Reason    string // why it failed (an OAuth error code and a short phrase)
}

// Recorder keeps security events (the lead wires it to the audit log).
type Recorder interface {
	Record(ctx context.Context, e Event) error
}

// RecorderFunc adapts a function to Recorder.
type RecorderFunc func(ctx context.Context, e Event) error

// Record calls f.
func (f RecorderFunc) Record(ctx context.Context, e Event) error { return f(ctx, e) }

// record keeps e; the error is for events that must not happen unrecorded
// (issuing tokens): the caller then fails closed.
func (s *Server) record(ctx context.Context, r *http.Request, e Event) error {
	if r != nil && e.Source == "" {
		e.Source = sourceOf(r)
	}
	if e.Principal == "" {
		e.Principal = e.Client
	}
	if s.cfg.Recorder == nil {
		s.log.Info("smart event", "action", e.Action, "outcome", e.Outcome, "client", e.Client, "reason", e.Reason)
		return nil
	}
	err := s.cfg.Recorder.Record(ctx, e)
	if err != nil {
		s.log.Error("smart: record event", "action", e.Action, "err", err)
	}
	return err
}
