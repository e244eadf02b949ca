package users

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strconv"
	"time"

	"github.com/ehrvault/ehrvault/internal/auth"
)

// Authenticator returns who sent r; auth.ErrUnauthenticated if nobody.
type Authenticator func(r *http.Request) (*auth.Principal, error)

// AdminHandler returns the JSON admin API, to mount at /admin/users and
// /admin/users/ (paths are absolute; no StripPrefix). Callers must be an
// operator token (auth.KindOperator) or a user with role admin;
// authenticate says who is calling.
//
//	GET  /admin/users                   → 200 {"users": [User...]}
//	POST /admin/users                   {"name", "display_name", "role"}
//	                                    → 201 {"user": User, "enrollment_code", "expires"}
//	POST /admin/users/{id}/disable      → 200 {"user": User}
//	POST /admin/users/{id}/enable       → 200 {"user": User}
//	POST /admin/users/{id}/role         {"role"} → 200 {"user": User}
//	POST /admin/users/{id}/reset-mfa    → 200 {"user": User, "enrollment_code", "expires"}
//
// Errors are {"error": code, "error_description": text}: 401
// unauthenticated, 403 forbidden, 400 invalid_request, 404 not_found,
// 409 exists. The enrollment code is secret: hand it to the person only.
func (s *Service) AdminHandler(authenticate Authenticator) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /admin/users", s.adminList)
	mux.HandleFunc("POST /admin/users", s.adminAdd)
	mux.HandleFunc("POST /admin/users/{id}/{op}", s.adminOp)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "no-store")
		p, err := authenticate(r)
		if err != nil || p == nil {
			jsonError(w, http.StatusUnauthorized, "unauthenticated", "authenticate first")
			return
		}
		if !mayAdminister(p) {
			s.record(r.Context(), Event{Action: "user-admin", Outcome: OutcomeDenied, User: p.User, Session: p.Session, Source: s.source(r), Detail: r.Method + " " + r.URL.Path})
			jsonError(w, http.StatusForbidden, "forbidden", "needs an operator token or the admin role")
			return
		}
		r = r.WithContext(context.WithValue(withActor(r.Context(), p), sourceKeyCtx{}, s.source(r)))
		http.MaxBytesHandler(mux, 16<<10).ServeHTTP(w, r)
	})
}

// mayAdminister: operator tokens, and people with role admin who logged
// in with a second factor.
func mayAdminister(p *auth.Principal) bool {
	switch p.Kind {
	case auth.KindOperator:
		return true
	case auth.KindUser:
		return p.Role == auth.RoleAdmin && hasSecondFactor(p.Factors)
	}
	return false
}

type enrollmentJSON struct {
	User    User      `json:"user"`
	Code    string    `json:"enrollment_code,omitempty"`
	Expires time.Time `json:"expires,omitzero"`
}

func (s *Service) adminList(w http.ResponseWriter, r *http.Request) {
	list, err := s.List(r.Context())
	if err != nil {
		s.adminError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"users": list})
}

func (s *Service) adminAdd(w http.ResponseWriter, r *http.Request) {
	var req struct {
		Name        string `json:"name"`
		DisplayName string `json:"display_name"`
		Role        string `json:"role"`
	}
	if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
		jsonError(w, http.StatusBadRequest, "invalid_request", "body must be a JSON object with name, display_name, role")
		return
	}
	e, err := s.Add(r.Context(), req.Name, req.DisplayName, req.Role)
	if err != nil {
		s.adminError(w, err)
		return
	}
	s.audited(r, ActionAdd, e.User.ID, req.Role)
	writeJSON(w, http.StatusCreated, enrollmentJSON{User: e.User, Code: e.Code, Expires: e.Expires})
}

func (s *Service) adminOp(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	id := r.PathValue("id")
	if _, err := s.getUser(ctx, id); err != nil {
		s.adminError(w, err)
		return
	}
	var err error
	var e *Enrollment
	switch r.PathValue("op") {
	case "disable":
		if a := actor(ctx); a != nil && a.User == id {
			jsonError(w, http.StatusBadRequest, "invalid_request", "an admin cannot disable themself")
			return
		}
		err = s.Disable(ctx, id)
	case "enable":
		err = s.Enable(ctx, id)
	case "role":
		var req struct {
			Role string `json:"role"`
		}
		if json.NewDecoder(r.Body).Decode(&req) != nil {
			jsonError(w, http.StatusBadRequest, "invalid_request", `body must be {"role": ...}`)
			return
		}
		err = s.SetRole(ctx, id, req.Role)
	case "reset-mfa":
		e, err = s.ResetMFA(ctx, id)
	default:
		jsonError(w, http.StatusNotFound, "not_found", "unknown operation "+strconv.Quote(r.PathValue("op")))
		return
	}
	if err != nil {
		s.adminError(w, err)
		return
	}
	s.audited(r, "user-admin-"+r.PathValue("op"), id, "")
	u, err := s.Resolve(ctx, id)
	if err != nil {
		s.adminError(w, err)
		return
	}
	out := enrollmentJSON{User: u}
	if e != nil {
		out.Code, out.Expires = e.Code, e.Expires
	}
	writeJSON(w, http.StatusOK, out)
}

// audited records who did an admin operation (the Service's own events
// name only the subject).
func (s *Service) audited(r *http.Request, action, subject, detail string) {
	a := actor(r.Context())
	e := Event{Action: action, Outcome: OutcomeSuccess, Source: s.source(r), Detail: "subject=" + subject}
	if a != nil {
		e.User, e.Session = a.ID, a.Session
	}
	if detail != "" {
		e.Detail += " " + detail
	}
	s.record(r.Context(), e)
}

func (s *Service) adminError(w http.ResponseWriter, err error) {
	var pe *PasswordError
	switch {
	case errors.Is(err, ErrNotFound):
		jsonError(w, http.StatusNotFound, "not_found", "no such user")
	case errors.Is(err, ErrExists):
		jsonError(w, http.StatusConflict, "exists", "that user name is taken")
	case errors.Is(err, ErrInvalid):
		jsonError(w, http.StatusBadRequest, "invalid_request", err.Error())
	case errors.As(err, &pe):
		jsonError(w, http.StatusBadRequest, "invalid_request", pe.Error())
	default:
		s.log.Error("users: admin api", "err", err)
		jsonError(w, http.StatusInternalServerError, "server_error", "internal error")
	}
}

type actorKey struct{}

func withActor(ctx context.Context, p *auth.Principal) context.Context {
	return context.WithValue(ctx, actorKey{}, p)
}

// actor returns the admin acting through the admin API, if any.
func actor(ctx context.Context) *auth.Principal {
	p, _ := ctx.Value(actorKey{}).(*auth.Principal)
	return p
}
