package devices

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/ehrvault/ehrvault/internal/auth"
)

// Routes of the Handler.
//
//	POST /auth/devices/enroll        body: the proof (application/jose)        → 201 Status
//	POST /auth/devices/posture       body: the proof                           → 200 Status
//	GET  /auth/devices/status        header Device-Proof: the proof            → 200 Status
//	GET  /admin/devices                                                        → 200 [Device]
//	GET  /admin/devices/{id}                                                   → 200 Device
//	POST /admin/devices/{id}/approve (Content-Type: application/json)          → 200 Device
//	POST /admin/devices/{id}/revoke  (Content-Type: application/json)          → 200 Device
//	POST /admin/devices/codes        {"label":"…","kind":"tablet"}             → 201 {"code":"ehd_…","id":…,"expires":…}
//
// Errors are JSON: {"error":"invalid_request","error_description":"…"}.
// POST bodies of the admin API must be application/json, which a page of
// another origin cannot send without a CORS preflight.
const (
	PathEnroll  = "/auth/devices/enroll"
	PathPosture = "/auth/devices/posture"
	PathStatus  = "/auth/devices/status"
	PathAdmin   = "/admin/devices"
)

// ProofHeader carries a proof on GET /auth/devices/status.
const ProofHeader = "Device-Proof"

// Actions recorded.
const (
	ActionCode    = "device-code-create"
	ActionEnroll  = "device-enroll"
	ActionPosture = "device-posture"
	ActionApprove = "device-approve"
	ActionRevoke  = "device-revoke"
	ActionAdmin   = "device-admin" // a refused admin request
)

// Outcomes recorded (those of internal/audit).
const (
	OutcomeSuccess = "success"
	OutcomeFailure = "failure" // the caller's fault
	OutcomeDenied  = "denied"  // not authenticated or not allowed
	OutcomeError   = "error"   // the server's fault
)

// Event is one security event of the registry. It never holds a code, a
// proof or a key; Reason is a short fixed text.
type Event struct {
	Action    string
	Outcome   string
	Principal string // who acted: the admin's principal id, or the device id
	Kind      string // the principal's kind (auth.Kind…, or "device")
	Role      string
	Device    string // the device concerned, if known
	Source    string // the request's remote address
	Reason    string // why it failed, if it did
}

// Recorder records security events, e.g. in the audit log.
type Recorder interface {
	// Record records e; an error means it was not recorded.
	Record(ctx context.Context, e Event) error
}

// RecorderFunc adapts a function to Recorder.
type RecorderFunc func(ctx context.Context, e Event) error

// Record calls f.
func (f RecorderFunc) Record(ctx context.Context, e Event) error { return f(ctx, e) }

// HandlerConfig configures NewHandler.
type HandlerConfig struct {
	Registry *Registry
	// Admin returns the principal of a request to /admin/devices;
	// auth.ErrUnauthenticated if it has none. The principal must have
	// Role auth.RoleAdmin or Kind auth.KindOperator.
	Admin func(r *http.Request) (*auth.Principal, error)
	// Recorder records enrolments, approvals, revocations and failures;
	// nil records nothing.
	Recorder Recorder
	// Log gets store failures (ids only); nil discards.
	Log *slog.Logger
	// Source returns the address a request came from, for the record
	// (default: the host of r.RemoteAddr; give edge's Proxies.Source
	// behind a trusted proxy).
	Source func(r *http.Request) string
}

type handler struct {
	HandlerConfig
	mux *http.ServeMux
}

// NewHandler returns the device endpoints (see the routes above).
func NewHandler(cfg HandlerConfig) http.Handler {
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	h := &handler{HandlerConfig: cfg, mux: http.NewServeMux()}
	h.mux.HandleFunc("POST "+PathEnroll, h.enroll)
	h.mux.HandleFunc("POST "+PathPosture, h.posture)
	h.mux.HandleFunc("GET "+PathStatus, h.status)
	h.mux.HandleFunc("GET "+PathAdmin, h.admin(h.list))
	h.mux.HandleFunc("GET "+PathAdmin+"/{id}", h.admin(h.show))
	h.mux.HandleFunc("POST "+PathAdmin+"/{id}/approve", h.admin(h.approve))
	h.mux.HandleFunc("POST "+PathAdmin+"/{id}/revoke", h.admin(h.revoke))
	h.mux.HandleFunc("POST "+PathAdmin+"/codes", h.admin(h.code))
	return h
}

func (h *handler) ServeHTTP(w http.ResponseWriter, r *http.Request) { h.mux.ServeHTTP(w, r) }

// Status is what a device learns about itself.
type Status struct {
	Device string `json:"device"`
	State  string `json:"state"`
	// Passes says whether the device may be used now; Reason says why
	// not when it may not.
	Passes bool   `json:"passes"`
	Reason string `json:"reason,omitempty"`
}

func (h *handler) statusOf(d *Device) Status {
	s := Status{Device: d.ID, State: d.State, Passes: true}
	if err := h.Registry.Check(d); err != nil {
		s.Passes, s.Reason = false, strings.TrimPrefix(err.Error(), "devices: ")
	}
	return s
}

func (h *handler) record(r *http.Request, e Event) {
	if h.Recorder == nil {
		return
	}
	if h.Source != nil {
		e.Source = h.Source(r)
	} else if host, _, err := net.SplitHostPort(r.RemoteAddr); err == nil {
		e.Source = host
	} else {
		e.Source = r.RemoteAddr
	}
	if err := h.Recorder.Record(r.Context(), e); err != nil {
		h.Log.Error("record device event", "action", e.Action, "err", err)
	}
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v)
}

func writeError(w http.ResponseWriter, status int, code, desc string) {
	writeJSON(w, status, map[string]string{"error": code, "error_description": desc})
}

// fail answers a registry error, and returns the reason to record.
func (h *handler) fail(w http.ResponseWriter, err error) string {
	switch {
	case errors.Is(err, ErrProof):
		writeError(w, http.StatusUnauthorized, "invalid_proof", strings.TrimPrefix(err.Error(), "devices: "))
		return "proof"
	case errors.Is(err, ErrCode):
		writeError(w, http.StatusBadRequest, "invalid_grant", "enrollment code unknown, used or expired")
		return "code"
	case errors.Is(err, ErrKeyTaken):
		writeError(w, http.StatusConflict, "key_taken", "this key is enrolled already; generate a new key")
		return "key-taken"
	case errors.Is(err, ErrNotFound):
		writeError(w, http.StatusNotFound, "not_found", "no such device")
		return "not-found"
	case errors.Is(err, ErrRevoked):
		writeError(w, http.StatusConflict, "revoked", "the device is revoked")
		return "revoked"
	case errors.Is(err, ErrUnencrypted):
		writeError(w, http.StatusConflict, "policy", "policy requires disk encryption and the device reports none")
		return "unencrypted"
	case errors.Is(err, ErrInvalid):
		writeError(w, http.StatusBadRequest, "invalid_request", strings.TrimPrefix(err.Error(), "devices: invalid input: "))
		return "request"
	}
	h.Log.Error("device registry", "err", err)
	writeError(w, http.StatusInternalServerError, "server_error", "internal error")
	return "internal"
}

// readProof reads a proof from the body of a POST.
func readProof(r *http.Request) (string, error) {
	b, err := io.ReadAll(io.LimitReader(r.Body, maxProof+1))
	if err != nil {
		return "", fmt.Errorf("%w: read body", ErrInvalid)
	}
	if len(b) > maxProof {
		return "", fmt.Errorf("%w: body longer than 16 KiB", ErrInvalid)
	}
	return strings.TrimSpace(string(b)), nil
}

func (h *handler) enroll(w http.ResponseWriter, r *http.Request) {
	h.signed(w, r, ActionEnroll, http.StatusCreated, h.Registry.Enroll)
}

func (h *handler) posture(w http.ResponseWriter, r *http.Request) {
	h.signed(w, r, ActionPosture, http.StatusOK, h.Registry.ReportPosture)
}

// signed serves a device's signed request (its proof is the body): do
// carries it out, and the outcome is recorded as action.
func (h *handler) signed(w http.ResponseWriter, r *http.Request, action string, status int, do func(context.Context, string) (*Device, error)) {
	proof, err := readProof(r)
	var d *Device
	if err == nil {
		d, err = do(r.Context(), proof)
	}
	if err != nil {
		reason := h.fail(w, err)
		h.record(r, Event{Action: action, Outcome: outcome(reason), Reason: reason})
		return
	}
	h.record(r, Event{Action: action, Outcome: OutcomeSuccess, Principal: d.ID, Kind: "device", Device: d.ID})
	writeJSON(w, status, h.statusOf(d))
}

func (h *handler) status(w http.ResponseWriter, r *http.Request) {
	d, err := h.Registry.Status(r.Context(), r.Header.Get(ProofHeader))
	if err != nil {
		h.fail(w, err)
		return
	}
	writeJSON(w, http.StatusOK, h.statusOf(d))
}

func outcome(reason string) string {
	switch reason {
	case "proof", "code":
		return OutcomeDenied
	case "internal":
		return OutcomeError
	}
	return OutcomeFailure
}

// admin wraps an admin endpoint: the caller must be an admin or an
// operator token, and a POST must be application/json.
func (h *handler) admin(next func(w http.ResponseWriter, r *http.Request, p *auth.Principal)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		var p *auth.Principal
		var err error
		if h.Admin != nil {
			p, err = h.Admin(r)
		}
		if p == nil || err != nil {
			if err != nil && !errors.Is(err, auth.ErrUnauthenticated) {
				h.Log.Error("device admin: authenticate", "err", err)
			}
			h.record(r, Event{Action: ActionAdmin, Outcome: OutcomeDenied, Reason: "unauthenticated"})
			writeError(w, http.StatusUnauthorized, "unauthorized", "authenticate as an admin")
			return
		}
		if p.Role != auth.RoleAdmin && p.Kind != auth.KindOperator {
			h.record(r, Event{Action: ActionAdmin, Outcome: OutcomeDenied, Principal: p.ID, Kind: p.Kind, Role: p.Role, Reason: "not-admin"})
			writeError(w, http.StatusForbidden, "forbidden", "only an admin may manage devices")
			return
		}
		if r.Method == http.MethodPost {
			mt, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
			if mt != "application/json" {
				writeError(w, http.StatusUnsupportedMediaType, "invalid_request", "Content-Type must be application/json")
				return
			}
		}
		next(w, r, p)
	}
}

func (h *handler) list(w http.ResponseWriter, r *http.Request, p *auth.Principal) {
	list, err := h.Registry.Devices(r.Context())
	if err != nil {
		h.fail(w, err)
		return
	}
	writeJSON(w, http.StatusOK, list)
}

func (h *handler) show(w http.ResponseWriter, r *http.Request, p *auth.Principal) {
	d, err := h.Registry.Device(r.Context(), r.PathValue("id"))
	if err != nil {
		h.fail(w, err)
		return
	}
	writeJSON(w, http.StatusOK, d)
}

func (h *handler) approve(w http.ResponseWriter, r *http.Request, p *auth.Principal) {
	h.change(w, r, p, ActionApprove, h.Registry.Approve)
}

func (h *handler) revoke(w http.ResponseWriter, r *http.Request, p *auth.Principal) {
	h.change(w, r, p, ActionRevoke, h.Registry.Revoke)
}

func (h *handler) change(w http.ResponseWriter, r *http.Request, p *auth.Principal, action string, f func(ctx context.Context, id, by string) (*Device, error)) {
	id := r.PathValue("id")
	d, err := f(r.Context(), id, p.ID)
	e := Event{Action: action, Outcome: OutcomeSuccess, Principal: p.ID, Kind: p.Kind, Role: p.Role, Device: id}
	if err != nil {
		e.Reason = h.fail(w, err)
		e.Outcome = outcome(e.Reason)
		h.record(r, e)
		return
	}
	h.record(r, e)
	writeJSON(w, http.StatusOK, d)
}

// codeRequest is the body of POST /admin/devices/codes.
type codeRequest struct {
	Label string `json:"label"`
	Kind  string `json:"kind"`
}

// CodeResponse answers POST /admin/devices/codes: the code, shown once.
type CodeResponse struct {
	Code    string    `json:"code"`
	ID      string    `json:"id"`
	Label   string    `json:"label"`
	Kind    string    `json:"kind"`
	Expires time.Time `json:"expires"`
}

func (h *handler) code(w http.ResponseWriter, r *http.Request, p *auth.Principal) {
	var req codeRequest
	dec := json.NewDecoder(io.LimitReader(r.Body, 4096))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		writeError(w, http.StatusBadRequest, "invalid_request", "body must be {\"label\":\"…\",\"kind\":\"workstation|tablet|app-instance\"}")
		return
	}
	code, c, err := h.Registry.NewCode(r.Context(), req.Label, req.Kind, p.ID)
	if err != nil {
		h.fail(w, err)
		return
	}
	h.record(r, Event{Action: ActionCode, Outcome: OutcomeSuccess, Principal: p.ID, Kind: p.Kind, Role: p.Role})
	writeJSON(w, http.StatusCreated, CodeResponse{Code: code, ID: c.ID, Label: c.Label, Kind: c.Kind, Expires: c.Expires})
}
