package api

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/url"
	"sort"

	"github.com/ehrvault/ehrvault/internal/audit"
	"github.com/ehrvault/ehrvault/internal/fhir"
	"github.com/ehrvault/ehrvault/internal/records"
)

// Auditor records one entry per request. internal/audit's Log is one.
type Auditor interface {
	// Append makes the entry durable before it returns; on error nothing
	// may be sent (the API answers 503).
	Append(ctx context.Context, e *audit.Entry) (int64, error)
	// Hash returns the keyed hash that stands for an identifying value.
	Hash(value string) string
}

var _ Auditor = (*audit.Log)(nil)

// PurposeHeader carries the purpose of use a client declares for a
// request, as a code of the v3 PurposeOfUse value set (TREAT, HPAYMT,
// HOPERAT …). It is recorded in the audit log; the access issue will
// decide by it.
const PurposeHeader = "X-Purpose-Of-Use"

// shapeParams are search parameters that shape a result rather than
// select it; their values are recorded in the clear. Every other value
// is recorded as a keyed hash, since it may identify somebody.
var shapeParams = map[string]bool{
	"_count": true, "_sort": true, "_summary": true, "_elements": true, "_include": true,
	"_revinclude": true, "_total": true, "_format": true, "_pretty": true, "_contained": true,
	"_containedType": true,
}

// touch records that the request read, returned or wrote res.
func (q *request) touch(res *records.Resource) {
	if res == nil {
		return
	}
	q.resources = append(q.resources, audit.Resource{Type: res.Type, ID: res.ID, Version: res.Version, Owner: res.Owner})
}

// recordQuery keeps the request's query for the audit entry: parameter
// names in the clear, values hashed but for shapeParams; _page is left
// out (it is an opaque cursor).
func (h *Handler) recordQuery(q *request, form url.Values) {
	if h.audit == nil {
		return
	}
	names := make([]string, 0, len(form))
	for k := range form {
		if k != "_page" {
			names = append(names, k)
		}
	}
	sort.Strings(names)
	q.query = q.query[:0]
	for _, k := range names {
		for _, v := range form[k] {
			if !shapeParams[k] {
				v = h.audit.Hash(v)
			}
			q.query = append(q.query, audit.Param{Name: k, Value: v})
		}
	}
}

// recordRawQuery is recordQuery for a query string (a conditional
// interaction's); one that does not parse is recorded as one hash.
func (h *Handler) recordRawQuery(q *request, raw string) {
	if h.audit == nil {
		return
	}
	v, err := url.ParseQuery(raw)
	if err != nil {
		q.query = []audit.Param{{Name: "?", Value: h.audit.Hash(raw)}}
		return
	}
	h.recordQuery(q, v)
}

// record appends the request's audit entry, once, before anything of the
// response is sent. If the entry cannot be made durable it answers 503
// with no data and returns false.
func (h *Handler) record(q *request, status int) bool {
	if h.audit == nil || q.audited || q.action == "" {
		return true
	}
	q.audited = true
	e := &audit.Entry{
		Request:   q.id,
		Principal: audit.Principal{Kind: "anonymous"},
		Source:    sourceAddr(q.r),
		Action:    q.action,
		Outcome:   audit.OutcomeOf(status),
		Status:    status,
		Resources: q.resources,
		Query:     q.query,
	}
	if p := q.principal; p != nil {
		e.Principal = audit.Principal{Kind: p.Kind, ID: p.ID}
		e.Role = "operator"
	}
	if pu := q.r.Header.Get(PurposeHeader); validPurpose(pu) {
		e.Purpose = pu
	}
	if _, err := h.audit.Append(q.r.Context(), e); err != nil {
		if !errors.Is(err, context.Canceled) {
			h.log.Error("audit entry not written: refusing the response", "request_id", q.id, "route", q.route, "err", err)
		}
		h.unaudited(q)
		return false
	}
	return true
}

// unaudited answers 503 with nothing of what the request would have got.
func (h *Handler) unaudited(q *request) {
	hdr := q.w.Header()
	for _, k := range []string{"Etag", "Last-Modified", "Location", "Content-Location"} {
		delete(hdr, k)
	}
	hdr.Set("Retry-After", "5")
	oo := outcome([]fhir.Issue{{Severity: "error", Code: "transient",
		Message: "the audit log cannot be written, so nothing is served; try again later (the server log has this request's id)"}})
	b := fhir.AppendJSON(nil, &oo)
	q.status = http.StatusServiceUnavailable
	hdr["Content-Type"] = fhirJSONType
	q.w.WriteHeader(http.StatusServiceUnavailable)
	q.w.Write(b)
}

// validPurpose accepts a PurposeOfUse code: 1 to 32 letters, digits and
// hyphens. Anything else is not recorded.
func validPurpose(s string) bool {
	if s == "" || len(s) > 32 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('A' <= c && c <= 'Z' || 'a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '-') {
			return false
		}
	}
	return true
}

// sourceAddr is the network address of the client (without its port).
func sourceAddr(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}
