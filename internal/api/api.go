// Package api serves the FHIR R4 RESTful API over HTTP: routes, content
// negotiation, authentication of each request, and the rendering of
// resources, Bundles and OperationOutcomes.
//
// # Promises
//
//   - No health data leaves without an authenticated principal. Only the
//     CapabilityStatement (/fhir/metadata) and a liveness probe (/healthz)
//     answer without one; neither holds health data.
//   - Every error reaches the client as an OperationOutcome with a status
//     from one table (errors.go); an internal error's text never does.
//   - The access log holds request ids, routes, ids, statuses and
//     durations; never a query string, a body or a token.
package api

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"runtime/debug"
	"strconv"
	"strings"
	"time"

	"github.com/ehrvault/ehrvault/internal/access"
	"github.com/ehrvault/ehrvault/internal/audit"
	"github.com/ehrvault/ehrvault/internal/auth"
	"github.com/ehrvault/ehrvault/internal/fhir"
	"github.com/ehrvault/ehrvault/internal/records"
	"github.com/ehrvault/ehrvault/internal/search"
)

// Authenticator tells who sent a request. It returns an error wrapping
// auth.ErrUnauthenticated for a request that carries no valid credential;
// if that error has a Challenge() string method, its value is the
// WWW-Authenticate header of the 401 (DPoP-bound tokens).
type Authenticator interface {
	AuthenticateRequest(r *http.Request) (*auth.Principal, error)
}

// Config holds what the API is built from.
type Config struct {
	Records *records.Service
	Auth    Authenticator
	Log     *slog.Logger
	// MaxBody is the largest request body accepted, in bytes
	// (DefaultMaxBody if 0).
	MaxBody int64
	// BaseURL is the public base of the FHIR API ("https://ehr.example/fhir").
	// If empty it is taken from each request's Host.
	BaseURL string
	// Version is the software version stated in the CapabilityStatement.
	Version string
	Now     func() time.Time
	// SearchParams lists the search parameters of a type, for the
	// CapabilityStatement.
	SearchParams func(typ string) []SearchParam
	// Audit records every request that may touch health data, before its
	// response leaves; nil records nothing (benchmarks of the bare read
	// path only: ehrvault serve always sets it).
	Audit Auditor
	// AuditLog serves the audit log's views (AuditEvent, checkpoints,
	// proofs, reports); nil serves none.
	AuditLog *audit.Log
	// Search carries out searches, compartment searches and $everything;
	// nil answers them with 501.
	Search *search.Engine
	// Access decides what an authenticated principal may see; nil lets
	// every principal see everything (operator tokens, until the access
	// issue brings roles and consent).
	Access AccessDecider
	// Grants decides what the principals that carry SMART scopes may do;
	// nil refuses every such principal.
	Grants Grants
	// Gate runs once a principal is known, before anything else: network
	// allowlists, rate limits per principal. An error refuses the
	// request (a *Refusal chooses the status; others give 403).
	Gate func(r *http.Request, p *auth.Principal) error
	// OAuth, if set, names the SMART authorization server's endpoints in
	// the CapabilityStatement.
	OAuth *OAuthURIs
}

// AccessDecider turns a principal into the restriction its requests obey.
// An error fails the request with 503, closed.
type AccessDecider interface {
	Restriction(ctx context.Context, p *auth.Principal) (*access.Restriction, error)
}

// DefaultMaxBody is the default request body limit: large enough for a
// patient's whole Synthea history in one transaction.
const DefaultMaxBody = 32 << 20

// Base is the path under which the FHIR API is served.
const Base = "/fhir"

// Handler serves the API.
type Handler struct {
	rec     *records.Service
	auth    Authenticator
	log     *slog.Logger
	maxBody int64
	base    string
	version string
	now     func() time.Time
	meta    []byte // the CapabilityStatement, built once
	audit   Auditor
	alog    *audit.Log
	engine  *search.Engine
	access  AccessDecider
	grants  Grants
	gate    func(r *http.Request, p *auth.Principal) error
}

// New returns the API handler.
func New(c Config) *Handler {
	h := &Handler{rec: c.Records, auth: c.Auth, log: c.Log, maxBody: c.MaxBody, base: strings.TrimRight(c.BaseURL, "/"), version: c.Version, now: c.Now, audit: c.Audit, alog: c.AuditLog, engine: c.Search, access: c.Access, grants: c.Grants, gate: c.Gate}
	if h.log == nil {
		h.log = slog.New(slog.DiscardHandler)
	}
	if h.maxBody <= 0 {
		h.maxBody = DefaultMaxBody
	}
	if h.now == nil {
		h.now = time.Now
	}
	h.meta = capabilityStatement(h.version, h.now(), c.SearchParams, c.OAuth)
	return h
}

// request is one request in flight.
type request struct {
	w         http.ResponseWriter
	r         *http.Request
	id        string
	route     string
	principal *auth.Principal
	restrict  *access.Restriction // what the principal may see; nil: everything
	wrestrict *access.Restriction // what the principal may write; nil: everything
	filters   []url.Values        // granular scopes' searches on the request's type
	status    int
	pretty    bool
	base      string
	// What the audit entry of the request will say; action "" means the
	// request is not audited (the CapabilityStatement, health checks).
	action    string
	resources []audit.Resource
	query     []audit.Param
	audited   bool
}

type ctxKey struct{}

// ServeHTTP handles one request.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	q := &request{w: w, r: r, id: newRequestID(), status: http.StatusOK}
	hdr := w.Header()
	// The keys are in canonical form, so they are set directly rather
	// than through Header.Set, which would canonicalize them on every
	// request; the value slices are shared and never changed.
	hdr["X-Request-Id"] = []string{q.id}
	for k, v := range securityHeaders {
		hdr[k] = v
	}
	defer func() {
		if p := recover(); p != nil {
			if p == http.ErrAbortHandler {
				panic(p)
			}
			// The panic value may hold data; log only its type and the stack.
			h.log.Error("panic serving request", "request_id", q.id, "route", q.route, "panic_type", typeName(p), "stack", string(debug.Stack()))
			h.fail(q, errors.New("panic"))
		}
		attrs := []any{"request_id", q.id, "method", r.Method, "route", q.route, "status", q.status, "duration_ms", float64(time.Since(start).Microseconds()) / 1000}
		if q.principal != nil {
			attrs = append(attrs, "principal", q.principal.ID)
		}
		h.log.Info("request", attrs...)
	}()
	h.route(q)
}

var fhirJSONType = []string{"application/fhir+json; charset=utf-8"}

// securityHeaders go on every response: nothing here is meant for a
// browser to render, frame, cache or sniff.
var securityHeaders = map[string][]string{
	"X-Content-Type-Options":  {"nosniff"},
	"X-Frame-Options":         {"DENY"},
	"Content-Security-Policy": {"default-src 'none'; frame-ancestors 'none'"},
	"Referrer-Policy":         {"no-referrer"},
	"Cache-Control":           {"no-store"},
}

func typeName(v any) string {
	switch v.(type) {
	case error:
		return "error"
	case string:
		return "string"
	}
	return "other"
}

func newRequestID() string {
	var b [12]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// route dispatches a request by path and method.
func (h *Handler) route(q *request) {
	r := q.r
	path := r.URL.Path
	switch {
	case path == "/healthz":
		q.route = "healthz"
		q.w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		io.WriteString(q.w, "ok\n")
		return
	case path == "/" || path == "":
		q.route = "root"
		q.w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		io.WriteString(q.w, "ehrvault: the FHIR R4 API is at "+Base+"/ (its CapabilityStatement at "+Base+"/metadata); every request but /metadata needs Authorization: Bearer <token>.\n")
		return
	case strings.HasPrefix(path, AuditBase+"/"):
		h.auditRoute(q, strings.TrimPrefix(path, AuditBase+"/"))
		return
	case path != Base && !strings.HasPrefix(path, Base+"/"):
		q.route = "unknown"
		h.fail(q, errorf(http.StatusNotFound, "not-found", "no such endpoint; the FHIR API is at %s/", Base))
		return
	}
	rest := strings.Trim(strings.TrimPrefix(path, Base), "/")
	var parts []string
	if rest != "" {
		parts = strings.Split(rest, "/")
	}
	form, err := url.ParseQuery(r.URL.RawQuery)
	if err != nil {
		q.route = "bad-query"
		h.fail(q, errorf(http.StatusBadRequest, "invalid", "the query string is not valid URL encoding"))
		return
	}
	q.pretty = form.Get("_pretty") == "true"
	q.base = h.baseURL(r)
	if err := checkFormat(r, form); err != nil {
		q.route = "format"
		h.fail(q, err)
		return
	}
	if len(parts) == 1 && parts[0] == "metadata" {
		q.route = "metadata"
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			h.fail(q, methodNotAllowed("GET"))
			return
		}
		h.writeJSON(q, http.StatusOK, h.meta)
		return
	}
	// Everything else may hold health data: it is audited, and it needs
	// an authenticated principal.
	q.action = actionOf(r.Method, parts)
	if !h.authenticate(q) {
		return
	}
	m := r.Method
	if m == http.MethodHead {
		m = http.MethodGet
	}
	if h.alog != nil && len(parts) > 0 && parts[0] == "AuditEvent" && (len(parts) == 1 && m == http.MethodGet || len(parts) == 2 && isLogIndex(parts[1])) {
		// The audit log, as a read-only view: AuditEvent/<index> is its
		// entry <index>, and searches search it. AuditEvents that other
		// systems send have ids that are not numbers, and are stored as
		// any resource.
		q.route = "audit-event"
		q.action = audit.ActionAuditRead
		if len(parts) == 1 && !h.permit(q, "AuditEvent", 's') || len(parts) == 2 && !h.permit(q, "AuditEvent", 'r') {
			return
		}
		if m != http.MethodGet {
			h.fail(q, errorf(http.StatusMethodNotAllowed, "not-supported", "AuditEvents with numeric ids are the server's audit log, which is read-only; store other AuditEvents under ids that are not numbers"))
			return
		}
		id := ""
		if len(parts) == 2 {
			id = parts[1]
		}
		h.auditEvents(q, id, form)
		return
	}
	switch len(parts) {
	case 0:
		q.route = "system"
		switch m {
		case http.MethodPost:
			h.bundle(q)
		default:
			h.fail(q, methodNotAllowed("POST"))
		}
		return
	case 1:
		if parts[0] == "_history" {
			q.route = "system-history"
			if m != http.MethodGet {
				h.fail(q, methodNotAllowed("GET"))
				return
			}
			if q.principal.Scopes != nil {
				h.fail(q, errorf(http.StatusForbidden, "forbidden", "the history of the whole server is not open to SMART tokens; ask for the history of a type"))
				return
			}
			h.history(q, "", "", form)
			return
		}
		if strings.HasPrefix(parts[0], "$") {
			q.route = "operation"
			h.fail(q, errorf(http.StatusNotImplemented, "not-supported", "operations are not implemented; /metadata lists what is"))
			return
		}
		typ := parts[0]
		q.route = "type"
		if i, ok := map[string]byte{http.MethodGet: 's', http.MethodPost: 'c', http.MethodPut: 'u', http.MethodDelete: 'd'}[m]; ok && fhir.IsResourceType(typ) && !h.permit(q, typ, i) {
			return
		}
		switch m {
		case http.MethodGet:
			h.search(q, typ, "", form)
		case http.MethodPost:
			h.create(q, typ)
		case http.MethodPut:
			h.conditionalUpdate(q, typ, r.URL.RawQuery)
		case http.MethodDelete:
			h.conditionalDelete(q, typ, r.URL.RawQuery)
		default:
			h.fail(q, methodNotAllowed("GET, POST, PUT, DELETE"))
		}
		return
	case 2:
		typ, id := parts[0], parts[1]
		switch {
		case id == "_history":
			q.route = "type-history"
			if m != http.MethodGet {
				h.fail(q, methodNotAllowed("GET"))
				return
			}
			if !h.permit(q, typ, 's') {
				return
			}
			h.history(q, typ, "", form)
		case id == "_search":
			q.route = "type-search"
			if m != http.MethodPost {
				h.fail(q, methodNotAllowed("POST"))
				return
			}
			if !h.permit(q, typ, 's') {
				return
			}
			h.postSearch(q, typ, form)
		case strings.HasPrefix(id, "$"):
			q.route = "operation"
			h.fail(q, errorf(http.StatusNotImplemented, "not-supported", "operations are not implemented; /metadata lists what is"))
		default:
			q.route = "instance"
			if i, ok := map[string]byte{http.MethodGet: 'r', http.MethodPut: 'u', http.MethodDelete: 'd'}[m]; ok && fhir.IsResourceType(typ) && !h.permit(q, typ, i) {
				return
			}
			switch m {
			case http.MethodGet:
				h.read(q, typ, id)
			case http.MethodPut:
				h.update(q, typ, id)
			case http.MethodDelete:
				h.delete(q, typ, id)
			case http.MethodPatch:
				h.fail(q, errorf(http.StatusMethodNotAllowed, "not-supported", "PATCH is not implemented; send the whole resource with PUT"))
			default:
				h.fail(q, methodNotAllowed("GET, PUT, DELETE"))
			}
		}
		return
	case 3:
		if parts[2] == "_history" {
			q.route = "instance-history"
			if m != http.MethodGet {
				h.fail(q, methodNotAllowed("GET"))
				return
			}
			if !h.permit(q, parts[0], 'r') || !h.filtered(q, parts[0], parts[1]) {
				return
			}
			h.history(q, parts[0], parts[1], form)
			return
		}
		if parts[0] == "Patient" && parts[2] == "$everything" {
			q.route = "everything"
			if m != http.MethodGet {
				h.fail(q, methodNotAllowed("GET"))
				return
			}
			if !h.permit(q, "Patient", 'r') {
				return
			}
			h.everything(q, parts[1], form)
			return
		}
		if parts[0] == "Patient" && fhir.IsResourceType(parts[2]) {
			q.route = "compartment"
			if m != http.MethodGet {
				h.fail(q, methodNotAllowed("GET"))
				return
			}
			if !h.permit(q, parts[2], 's') {
				return
			}
			h.search(q, parts[2], parts[1], form)
			return
		}
	case 4:
		if parts[2] == "_history" {
			q.route = "vread"
			if m != http.MethodGet {
				h.fail(q, methodNotAllowed("GET"))
				return
			}
			if !h.permit(q, parts[0], 'r') || !h.filtered(q, parts[0], parts[1]) {
				return
			}
			h.vread(q, parts[0], parts[1], parts[3])
			return
		}
	}
	q.route = "unknown"
	h.fail(q, errorf(http.StatusNotFound, "not-found", "no such FHIR endpoint; /metadata lists what is implemented"))
}

// isLogIndex reports whether an AuditEvent id names an entry of the audit
// log: a number.
func isLogIndex(id string) bool {
	if id == "" || len(id) > 19 {
		return false
	}
	for i := 0; i < len(id); i++ {
		if id[i] < '0' || id[i] > '9' {
			return false
		}
	}
	return true
}

// actionOf names the FHIR interaction a request asks for (the codes of
// http://hl7.org/fhir/restful-interaction), for the audit log.
func actionOf(method string, parts []string) string {
	if method == http.MethodHead {
		method = http.MethodGet
	}
	last := ""
	if len(parts) > 0 {
		last = parts[len(parts)-1]
	}
	switch {
	case len(parts) > 0 && strings.HasPrefix(last, "$"):
		return "operation"
	case len(parts) == 0:
		return "batch" // or transaction: bundle says which once it knows
	case len(parts) == 1 && parts[0] == "_history":
		return "history-system"
	case len(parts) == 1:
		return map[string]string{http.MethodGet: "search-type", http.MethodPost: "create", http.MethodPut: "update", http.MethodDelete: "delete"}[method]
	case len(parts) == 2 && parts[1] == "_history":
		return "history-type"
	case len(parts) == 2 && parts[1] == "_search":
		return "search-type"
	case len(parts) == 2:
		return map[string]string{http.MethodGet: "read", http.MethodPut: "update", http.MethodDelete: "delete", http.MethodPatch: "patch"}[method]
	case len(parts) == 3 && parts[2] == "_history":
		return "history-instance"
	case len(parts) == 3 && parts[0] == "Patient":
		return "search-compartment"
	case len(parts) == 4 && parts[2] == "_history":
		return "vread"
	}
	return "unknown"
}

func methodNotAllowed(allow string) *httpError {
	e := errorf(http.StatusMethodNotAllowed, "not-supported", "method not allowed here; use %s", allow)
	e.header = map[string]string{"Allow": allow}
	return e
}

// authenticate checks the request's credentials (an operator bearer
// token, a DPoP-bound SMART token) and answers 401 itself when they fail.
func (h *Handler) authenticate(q *request) bool {
	p, err := h.auth.AuthenticateRequest(q.r)
	if err != nil {
		if !errors.Is(err, auth.ErrUnauthenticated) {
			h.log.Error("authentication failed to run", "request_id", q.id, "err", err)
			h.fail(q, &httpError{status: http.StatusServiceUnavailable, code: "transient", msg: "authentication is unavailable; try again"})
			return false
		}
		var ch interface{ Challenge() string }
		var e *httpError
		switch {
		case errors.As(err, &ch):
			e = errorf(http.StatusUnauthorized, "login", "the access token or its DPoP proof was refused; get a new token, and sign a new DPoP proof for every request")
			e.header = map[string]string{"WWW-Authenticate": ch.Challenge()}
		case q.r.Header.Get("Authorization") == "":
			e = errorf(http.StatusUnauthorized, "login", "authentication required: send Authorization: Bearer <token> (make one with `ehrvault token create`) or a SMART access token with its DPoP proof")
			e.header = map[string]string{"WWW-Authenticate": `Bearer realm="ehrvault"`}
		default:
			e = errorf(http.StatusUnauthorized, "login", "the bearer token is invalid, expired or revoked")
			e.header = map[string]string{"WWW-Authenticate": `Bearer realm="ehrvault", error="invalid_token"`}
		}
		h.fail(q, e)
		return false
	}
	if h.gate != nil {
		if err := h.gate(q.r, p); err != nil {
			q.principal = p
			e := errorf(http.StatusForbidden, "forbidden", "%s", "this request is not allowed from here")
			var rf *Refusal
			if errors.As(err, &rf) {
				e = errorf(rf.Status, "throttled", "%s", rf.Msg)
				if rf.Status == http.StatusForbidden {
					e.code = "forbidden"
				}
				if rf.RetryAfter > 0 {
					e.header = map[string]string{"Retry-After": strconv.Itoa(int((rf.RetryAfter + time.Second - 1) / time.Second))}
				}
			}
			h.fail(q, e)
			return false
		}
	}
	q.principal = p
	if h.access != nil {
		r, err := h.access.Restriction(q.r.Context(), p)
		if err != nil {
			h.log.Error("access decision failed", "request_id", q.id, "err", err)
			h.fail(q, &httpError{status: http.StatusServiceUnavailable, code: "transient", msg: "the access decision is unavailable; try again"})
			return false
		}
		q.restrict = r
	}
	return true
}

// baseURL is the public base URL of the API for links and fullUrls.
func (h *Handler) baseURL(r *http.Request) string {
	if h.base != "" {
		return h.base
	}
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	return scheme + "://" + r.Host + Base
}

// checkFormat refuses what the API cannot speak: only FHIR JSON.
func checkFormat(r *http.Request, form url.Values) error {
	if f := form.Get("_format"); f != "" {
		switch f {
		case "json", "application/json", "application/fhir+json", "application/json+fhir":
		default:
			return errorf(http.StatusNotAcceptable, "not-supported", "_format must be json: ehrvault speaks FHIR JSON only")
		}
		return nil
	}
	if a := r.Header.Get("Accept"); a != "" && !acceptsJSON(a) {
		return errorf(http.StatusNotAcceptable, "not-supported", "ehrvault answers in application/fhir+json only; accept it")
	}
	return nil
}

func acceptsJSON(accept string) bool {
	for _, part := range strings.Split(accept, ",") {
		mt, _, _ := strings.Cut(strings.TrimSpace(part), ";")
		mt = strings.ToLower(strings.TrimSpace(mt))
		if mt == "*/*" || mt == "application/*" || strings.Contains(mt, "json") {
			return true
		}
	}
	return false
}

// readBody reads a FHIR JSON request body within the size limit.
func (h *Handler) readBody(q *request) ([]byte, error) {
	ct := q.r.Header.Get("Content-Type")
	mt, _, _ := strings.Cut(ct, ";")
	mt = strings.ToLower(strings.TrimSpace(mt))
	if mt != "application/fhir+json" && mt != "application/json" && mt != "application/json+fhir" {
		return nil, errorf(http.StatusUnsupportedMediaType, "not-supported", "send the body as Content-Type: application/fhir+json")
	}
	body, err := io.ReadAll(http.MaxBytesReader(q.w, q.r.Body, h.maxBody))
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return nil, errorf(http.StatusRequestEntityTooLarge, "too-long", "the body is larger than the limit of %d bytes", h.maxBody)
		}
		return nil, errorf(http.StatusBadRequest, "invalid", "the body could not be read")
	}
	return body, nil
}

// parseBody reads and validates a resource body.
func (h *Handler) parseBody(q *request) (*records.Body, error) {
	data, err := h.readBody(q)
	if err != nil {
		return nil, err
	}
	return records.Parse(data)
}

// fail answers with the OperationOutcome for err.
func (h *Handler) fail(q *request, err error) {
	status, issues, he := problem(err)
	if status == http.StatusInternalServerError {
		h.log.Error("internal error", "request_id", q.id, "route", q.route, "err", err)
	}
	if he != nil {
		for k, v := range he.header {
			q.w.Header().Set(k, v)
		}
	}
	oo := outcome(issues)
	h.writeValue(q, status, &oo)
}

// writeValue answers with a JSON value.
func (h *Handler) writeValue(q *request, status int, v *fhir.Value) {
	var b []byte
	if q.pretty {
		b = fhir.AppendIndent(make([]byte, 0, 1024), v)
	} else {
		b = fhir.AppendJSON(make([]byte, 0, 1024), v)
	}
	h.send(q, status, b)
}

// writeJSON answers with JSON bytes, indenting them if _pretty asks.
func (h *Handler) writeJSON(q *request, status int, b []byte) {
	if q.pretty {
		if v, err := fhir.Parse(b, 0); err == nil {
			b = fhir.AppendIndent(make([]byte, 0, len(b)*2), &v)
		}
	}
	h.send(q, status, b)
}

func (h *Handler) send(q *request, status int, b []byte) {
	if !h.record(q, status) {
		return
	}
	q.status = status
	hdr := q.w.Header()
	hdr["Content-Type"] = fhirJSONType
	if q.pretty {
		b = append(b, '\n')
	}
	q.w.WriteHeader(status)
	if q.r.Method != http.MethodHead {
		q.w.Write(b)
	}
}

// noContent answers 204.
func (h *Handler) noContent(q *request) {
	if !h.record(q, http.StatusNoContent) {
		return
	}
	q.status = http.StatusNoContent
	q.w.WriteHeader(http.StatusNoContent)
}
