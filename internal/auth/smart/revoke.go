package smart

import (
	"errors"
	"net/http"
	"strings"

	"github.com/ehrvault/ehrvault/internal/auth"
	"github.com/ehrvault/ehrvault/internal/store"
)

// serveIntrospect is RFC 7662 token introspection, for resource servers:
// a backend service authenticating with a client assertion, or the
// operator (Config.Operator).
func (s *Server) serveIntrospect(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	if err := r.ParseForm(); err != nil {
		s.writeError(w, oauthErr(400, "invalid_request", "request body: not a form, or too large"))
		return
	}
	f := r.PostForm
	operator := s.cfg.Operator != nil && s.cfg.Operator(r)
	if !operator {
		c, err := s.authenticateClient(ctx, s.cfg.Issuer+PathIntrospect, f.Get("client_id"), f.Get("client_assertion_type"), f.Get("client_assertion"))
		if err == nil && c.Kind != ClientService {
			err = oauthErr(401, "invalid_client", "only backend services and the operator may introspect")
		}
		if err != nil {
			s.writeError(w, err)
			return
		}
	}
	tok := f.Get("token")
	inactive := map[string]any{"active": false}
	switch {
	case strings.HasPrefix(tok, AccessTokenPrefix):
		var rec accessRecord
		_, err := s.find(ctx, kindAccess, tok, &rec)
		if err != nil || !s.now().Before(rec.Expires) || !s.grantLive(r, &rec.grant) {
			if err != nil && !errors.Is(err, store.ErrNotFound) {
				s.writeError(w, err)
				return
			}
			writeJSON(w, http.StatusOK, inactive)
			return
		}
		writeJSON(w, http.StatusOK, introspection(&rec.grant, "DPoP", rec.Issued.Unix(), rec.Expires.Unix()))
	case strings.HasPrefix(tok, RefreshTokenPrefix):
		var rec refreshRecord
		_, err := s.find(ctx, kindRefresh, tok, &rec)
		if err != nil || rec.Used || !s.now().Before(rec.Ends) || !s.grantLive(r, &rec.grant) {
			if err != nil && !errors.Is(err, store.ErrNotFound) {
				s.writeError(w, err)
				return
			}
			writeJSON(w, http.StatusOK, inactive)
			return
		}
		writeJSON(w, http.StatusOK, introspection(&rec.grant, "refresh_token", 0, rec.Ends.Unix()))
	default:
		writeJSON(w, http.StatusOK, inactive)
	}
}

// grantLive reports whether a person's grant still has its device and
// session, and the client is still registered.
func (s *Server) grantLive(r *http.Request, g *grant) bool {
	if _, err := s.clients.Get(r.Context(), g.Client); err != nil {
		return false
	}
	if g.Kind != auth.KindUser {
		return true
	}
	dev, err := s.cfg.Devices.DeviceByKey(r.Context(), g.JKT)
	return err == nil && dev == g.Device && s.cfg.Sessions.Alive(r.Context(), g.Session) == nil
}

func introspection(g *grant, typ string, iat, exp int64) map[string]any {
	out := map[string]any{"active": true, "scope": strings.Join(g.Scopes, " "), "client_id": g.Client,
		"token_type": typ, "exp": exp, "cnf": map[string]string{"jkt": g.JKT}}
	if iat != 0 {
		out["iat"] = iat
	}
	if g.User != "" {
		out["sub"] = g.User
	} else {
		out["sub"] = g.Client
	}
	if g.Patient != "" {
		out["patient"] = g.Patient
	}
	return out
}

// serveRevoke is RFC 7009 revocation. The client authenticates as at the
// token endpoint; a token that is unknown or not the client's is ignored
// (200, as the RFC asks). Revoking a refresh token revokes its family.
func (s *Server) serveRevoke(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	if err := r.ParseForm(); err != nil {
		s.writeError(w, oauthErr(400, "invalid_request", "request body: not a form, or too large"))
		return
	}
	f := r.PostForm
	c, err := s.authenticateClient(ctx, s.cfg.Issuer+PathRevoke, f.Get("client_id"), f.Get("client_assertion_type"), f.Get("client_assertion"))
	if err != nil {
		s.writeError(w, err)
		return
	}
	tok := f.Get("token")
	if tok == "" {
		s.writeError(w, oauthErr(400, "invalid_request", "token is required"))
		return
	}
	ev := Event{Action: ActionTokenRevoke, Outcome: OutcomeSuccess, Client: c.ID}
	switch {
	case strings.HasPrefix(tok, AccessTokenPrefix):
		var rec accessRecord
		o, err := s.find(ctx, kindAccess, tok, &rec)
		if err == nil && rec.Client == c.ID {
			err = s.cfg.Store.DeleteAuthObject(ctx, kindAccess, o.ID)
			s.forget()
			ev.Token, ev.Principal, ev.Session = o.ID, rec.User, rec.Session
		}
		if err != nil && !errors.Is(err, store.ErrNotFound) {
			s.writeError(w, err)
			return
		}
	case strings.HasPrefix(tok, RefreshTokenPrefix):
		var rec refreshRecord
		_, err := s.find(ctx, kindRefresh, tok, &rec)
		if err == nil && rec.Client == c.ID {
			err = s.revokeFamily(ctx, rec.Family)
			ev.Token, ev.Principal, ev.Session = rec.Family, rec.User, rec.Session
		}
		if err != nil && !errors.Is(err, store.ErrNotFound) {
			s.writeError(w, err)
			return
		}
	}
	if ev.Token != "" {
		s.record(ctx, r, ev)
	}
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusOK)
}
