package api

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/ehrvault/ehrvault/internal/audit"
	"github.com/ehrvault/ehrvault/internal/fhir"
)

// AuditBase is the path of the audit log's own endpoints.
const AuditBase = "/audit"

// The audit log's endpoints (all GET):
//
//	/audit/checkpoint                      the newest signed checkpoint (text; public)
//	/audit/key                             the key that verifies checkpoints (text; public)
//	/audit/proof/consistency?from=&to=     a consistency proof (JSON; public)
//	/audit/proof/inclusion?index=&size=    an inclusion proof (JSON)
//	/audit/entries/{index}                 one entry, its bytes and its AuditEvent (JSON)
//	/audit/report?from=&to=&…&_sort=&_format=csv|json
//	/audit/patients/{id}/accesses          who opened a patient's record, with proofs (JSON)
//	/audit/patients/{id}/disclosures       the accounting of disclosures (JSON or CSV)
//	/fhir/AuditEvent[?…], /fhir/AuditEvent/{index}   the FHIR view, read-only
//
// The public ones hold hashes and signatures only, so that witnesses need
// no credentials. The others need a token, and each use is itself audited.

func (h *Handler) auditRoute(q *request, rest string) {
	r := q.r
	q.route = "audit"
	if h.alog == nil {
		h.fail(q, errorf(http.StatusNotFound, "not-found", "this server has no audit log"))
		return
	}
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		h.fail(q, methodNotAllowed("GET"))
		return
	}
	form := r.URL.Query()
	ctx := r.Context()
	switch rest {
	case "checkpoint":
		cp, err := h.alog.Latest(ctx)
		if err == nil && cp == nil {
			cp, err = h.alog.Sign(ctx)
		}
		if err != nil || cp == nil {
			h.auditFail(q, err)
			return
		}
		h.sendRaw(q, http.StatusOK, "text/plain; charset=utf-8", cp.Note)
		return
	case "key":
		h.sendRaw(q, http.StatusOK, "text/plain; charset=utf-8", []byte(h.alog.VerifierKey()+"\n"))
		return
	case "proof/consistency":
		from, err1 := strconv.ParseInt(form.Get("from"), 10, 64)
		to, err2 := int64(0), error(nil)
		if s := form.Get("to"); s != "" {
			to, err2 = strconv.ParseInt(s, 10, 64)
		}
		if err1 != nil || err2 != nil {
			h.fail(q, errorf(http.StatusBadRequest, "invalid", "from (and to, if given) must be tree sizes"))
			return
		}
		p, err := h.alog.ProveConsistency(ctx, from, to)
		if err != nil {
			h.auditFail(q, err)
			return
		}
		h.sendJSON(q, consistencyJSON(p))
		return
	}
	// Everything else shows entries: authenticated, and audited.
	q.action = audit.ActionAuditRead
	if !h.authenticate(q) {
		return
	}
	if q.principal != nil && q.principal.Scopes != nil {
		// SMART scopes name FHIR resources; the log's own views are for
		// operators until the access issue gives auditors their roles.
		h.fail(q, errorf(http.StatusForbidden, "forbidden", "the audit log's views are not open to SMART tokens; read AuditEvent through the FHIR API"))
		return
	}
	switch {
	case rest == "proof/inclusion":
		index, err1 := strconv.ParseInt(form.Get("index"), 10, 64)
		size, err2 := int64(0), error(nil)
		if s := form.Get("size"); s != "" {
			size, err2 = strconv.ParseInt(s, 10, 64)
		}
		if err1 != nil || err2 != nil {
			h.fail(q, errorf(http.StatusBadRequest, "invalid", "index (and size, if given) must be integers"))
			return
		}
		p, err := h.alog.ProveInclusion(ctx, index, size)
		if err != nil {
			h.auditFail(q, err)
			return
		}
		h.sendJSON(q, inclusionJSON(p))
	case strings.HasPrefix(rest, "entries/"):
		index, err := strconv.ParseInt(strings.TrimPrefix(rest, "entries/"), 10, 64)
		if err != nil {
			h.fail(q, errorf(http.StatusBadRequest, "invalid", "the entry index must be an integer"))
			return
		}
		leaf, e, err := h.alog.ReadEntry(ctx, index)
		if err != nil {
			h.auditFail(q, err)
			return
		}
		q.resources = e.Resources
		ae := e.AuditEvent(index)
		h.sendJSON(q, map[string]any{
			"index":      index,
			"entry":      base64.StdEncoding.EncodeToString(leaf),
			"auditEvent": json.RawMessage(fhir.Marshal(&ae)),
		})
	case rest == "report":
		h.auditReport(q, form)
	case strings.HasPrefix(rest, "patients/"):
		parts := strings.Split(strings.TrimPrefix(rest, "patients/"), "/")
		if len(parts) != 2 || !fhir.ValidID(parts[0]) || (parts[1] != "accesses" && parts[1] != "disclosures") {
			h.fail(q, errorf(http.StatusNotFound, "not-found", "use /audit/patients/{id}/accesses or /audit/patients/{id}/disclosures"))
			return
		}
		h.patientLog(q, parts[0], parts[1] == "disclosures", form)
	default:
		h.fail(q, errorf(http.StatusNotFound, "not-found", "no such audit endpoint: checkpoint, key, proof/consistency, proof/inclusion, entries/{index}, report, patients/{id}/accesses, patients/{id}/disclosures"))
	}
}

// auditFail answers an audit log error: a range error is the client's.
func (h *Handler) auditFail(q *request, err error) {
	switch {
	case errors.Is(err, audit.ErrRange):
		h.fail(q, errorf(http.StatusBadRequest, "invalid", "%s", strings.TrimPrefix(err.Error(), "audit: ")))
	case errors.Is(err, audit.ErrNoEntry):
		h.fail(q, errorf(http.StatusNotFound, "not-found", "no such entry in the audit log"))
	case err == nil:
		h.fail(q, errorf(http.StatusServiceUnavailable, "transient", "no checkpoint yet; try again"))
	default:
		h.fail(q, err)
	}
}

// sendRaw answers with bytes of another media type than FHIR JSON.
func (h *Handler) sendRaw(q *request, status int, ctype string, b []byte) {
	if !h.record(q, status) {
		return
	}
	q.status = status
	q.w.Header().Set("Content-Type", ctype)
	q.w.WriteHeader(status)
	if q.r.Method != http.MethodHead {
		q.w.Write(b)
	}
}

func (h *Handler) sendJSON(q *request, v any) {
	var b []byte
	var err error
	if q.r.URL.Query().Get("_pretty") == "true" {
		b, err = json.MarshalIndent(v, "", "  ")
	} else {
		b, err = json.Marshal(v)
	}
	if err != nil {
		h.fail(q, err)
		return
	}
	h.sendRaw(q, http.StatusOK, "application/json", append(b, '\n'))
}

func b64(hs ...[32]byte) []string {
	out := make([]string, len(hs))
	for i, h := range hs {
		out[i] = base64.StdEncoding.EncodeToString(h[:])
	}
	return out
}

func inclusionJSON(p *audit.InclusionProof) map[string]any {
	hs := make([][32]byte, len(p.Hashes))
	for i, x := range p.Hashes {
		hs[i] = x
	}
	return map[string]any{"index": p.Index, "size": p.Size, "leafHash": b64(p.Leaf)[0], "root": b64(p.Root)[0], "hashes": b64(hs...)}
}

func consistencyJSON(p *audit.ConsistencyProof) map[string]any {
	hs := make([][32]byte, len(p.Hashes))
	for i, x := range p.Hashes {
		hs[i] = x
	}
	return map[string]any{"from": p.From, "to": p.To, "fromRoot": b64(p.FromRoot)[0], "toRoot": b64(p.ToRoot)[0], "hashes": b64(hs...)}
}

// auditFilter reads the filters that AuditEvent search, reports and the
// patient views share. It returns the filter and the names it used.
func (h *Handler) auditFilter(form url.Values, names map[string]string) (audit.Filter, error) {
	var f audit.Filter
	get := func(std string) string { return form.Get(names[std]) }
	var err error
	if s := get("from"); s != "" {
		if f.From, err = parseAuditTime(s, false); err != nil {
			return f, errorf(http.StatusBadRequest, "invalid", "%s must be a date or an instant", names["from"])
		}
	}
	if s := get("to"); s != "" {
		if f.To, err = parseAuditTime(s, true); err != nil {
			return f, errorf(http.StatusBadRequest, "invalid", "%s must be a date or an instant", names["to"])
		}
	}
	if s := get("patient"); s != "" {
		id := strings.TrimPrefix(s, "Patient/")
		if !fhir.ValidID(id) {
			return f, errorf(http.StatusBadRequest, "invalid", "%s must be Patient/id or an id", names["patient"])
		}
		f.Patient = h.rec.PatientKey(id)
	}
	if s := get("agent"); s != "" {
		_, f.Agent, _ = cutLast(s, "|")
	}
	f.Entity = get("entity")
	f.Action = get("action")
	f.Outcome = get("outcome")
	return f, nil
}

// cutLast splits at the last sep (system|value); all of s is the value
// when there is none.
func cutLast(s, sep string) (string, string, bool) {
	if i := strings.LastIndex(s, sep); i >= 0 {
		return s[:i], s[i+len(sep):], true
	}
	return "", s, false
}

// parseAuditTime reads a date (the day's start, or with end the next
// day's) or an instant.
func parseAuditTime(s string, end bool) (time.Time, error) {
	if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
		return t.UTC(), nil
	}
	t, err := time.Parse("2006-01-02", s)
	if err != nil {
		return t, err
	}
	if end {
		t = t.AddDate(0, 0, 1)
	}
	return t, nil
}

// auditEvents serves the FHIR AuditEvent view: read by index, and search
// by patient, agent, entity, date (ge, gt, le, lt, eq), subtype (the
// action), action (C R U D E) and outcome (0 4 8 12), paged with _count
// and _page.
func (h *Handler) auditEvents(q *request, id string, form url.Values) {
	ctx := q.r.Context()
	if id != "" {
		index, err := strconv.ParseInt(id, 10, 64)
		if err != nil || index < 0 {
			h.fail(q, errorf(http.StatusNotFound, "not-found", "no such AuditEvent: their ids are the log's entry indexes"))
			return
		}
		_, e, err := h.alog.ReadEntry(ctx, index)
		if err != nil {
			h.auditFail(q, err)
			return
		}
		q.resources = e.Resources
		ae := e.AuditEvent(index)
		h.writeValue(q, http.StatusOK, &ae)
		return
	}
	f, err := h.auditFilter(form, map[string]string{"patient": "patient", "agent": "agent", "entity": "entity"})
	if err != nil {
		h.fail(q, err)
		return
	}
	strict := parsePrefer(q.r).strict
	var crude, outcomeCode string
	for name, vals := range form {
		v := vals[0]
		switch name {
		case "patient", "agent", "entity", "_count", "_page", "_format", "_pretty":
		case "subtype":
			_, f.Action, _ = cutLast(v, "|")
		case "action":
			crude = v
		case "outcome":
			outcomeCode = v
		case "date":
			for _, d := range vals {
				if err := applyDate(&f, d); err != nil {
					h.fail(q, errorf(http.StatusBadRequest, "invalid", "date: %s", err.Error()))
					return
				}
			}
		default:
			if strict {
				h.fail(q, errorf(http.StatusBadRequest, "not-supported", "AuditEvent search does not support the parameter %s: use patient, agent, entity, date, subtype, action, outcome", name))
				return
			}
		}
	}
	count, err := countParam(form)
	if err != nil {
		h.fail(q, err)
		return
	}
	if count <= 0 || count > 1000 {
		count = 100
	}
	if s := form.Get("_page"); s != "" {
		if f.Start, err = strconv.ParseInt(s, 10, 64); err != nil || f.Start < 0 {
			h.fail(q, errorf(http.StatusBadRequest, "invalid", "_page must be an entry index from a next link"))
			return
		}
	}
	// Filters the lookup index has no token for are applied to pages.
	var out []audit.Found
	for len(out) < count {
		f.Limit = count + 1 - len(out)
		found, err := h.alog.Find(ctx, f)
		if err != nil {
			h.fail(q, err)
			return
		}
		for _, x := range found {
			if crude != "" && audit.CRUDE(x.Entry.Action) != crude || outcomeCode != "" && audit.OutcomeCode(x.Entry.Outcome) != outcomeCode {
				continue
			}
			out = append(out, x)
		}
		if len(found) < f.Limit {
			break
		}
		f.Start = found[len(found)-1].Index + 1
	}
	bw := newBundleWriter("searchset", h.now())
	self := q.base + "/AuditEvent"
	if enc := selfQuery(form); enc != "" {
		self += "?" + enc
	}
	bw.link("self", self)
	if len(out) > count {
		next := url.Values{}
		for k, v := range form {
			if k != "_page" {
				next[k] = v
			}
		}
		next.Set("_page", strconv.FormatInt(out[count].Index, 10))
		out = out[:count]
		bw.link("next", q.base+"/AuditEvent?"+next.Encode())
	}
	for _, x := range out {
		q.resources = append(q.resources, x.Entry.Resources...)
		ae := x.Entry.AuditEvent(x.Index)
		bw.entry(q.base+"/AuditEvent/"+strconv.FormatInt(x.Index, 10), fhir.Marshal(&ae), `"search":{"mode":"match"}`)
	}
	h.writeJSON(q, http.StatusOK, bw.finish())
}

func selfQuery(form url.Values) string {
	v := url.Values{}
	for k, vals := range form {
		if k != "_format" && k != "_pretty" {
			v[k] = vals
		}
	}
	return v.Encode()
}

// applyDate narrows f by one date parameter value (prefix and a date or
// instant).
func applyDate(f *audit.Filter, s string) error {
	prefix := "eq"
	if len(s) > 2 && s[0] >= 'a' && s[0] <= 'z' {
		prefix, s = s[:2], s[2:]
	}
	lo, err := parseAuditTime(s, false)
	if err != nil {
		return errors.New("not a date or instant")
	}
	hi := lo
	if len(s) == len("2006-01-02") {
		hi = lo.AddDate(0, 0, 1)
	} else {
		hi = lo.Add(time.Microsecond)
	}
	narrow := func(from, to time.Time) {
		if !from.IsZero() && (f.From.IsZero() || from.After(f.From)) {
			f.From = from
		}
		if !to.IsZero() && (f.To.IsZero() || to.Before(f.To)) {
			f.To = to
		}
	}
	switch prefix {
	case "eq":
		narrow(lo, hi)
	case "ge":
		narrow(lo, time.Time{})
	case "gt":
		narrow(hi, time.Time{})
	case "le":
		narrow(time.Time{}, hi)
	case "lt":
		narrow(time.Time{}, lo)
	default:
		return errors.New("the prefix must be eq, ge, gt, le or lt")
	}
	return nil
}

// auditReport serves an audit report (ONC 170.315(d)(3)): the entries of a
// period, filtered by any field, sorted by any fields, as JSON or CSV.
func (h *Handler) auditReport(q *request, form url.Values) {
	f, err := h.auditFilter(form, map[string]string{"from": "from", "to": "to", "patient": "patient", "agent": "principal", "entity": "resource", "action": "action", "outcome": "outcome"})
	if err != nil {
		h.fail(q, err)
		return
	}
	spec := audit.ReportSpec{Filter: f, Equal: map[string]string{}}
	for _, c := range []string{"status", "principal_kind", "role", "source", "purpose", "request"} {
		if v := form.Get(c); v != "" {
			spec.Equal[c] = v
		}
	}
	if s := form.Get("_sort"); s != "" {
		spec.Sort = strings.Split(s, ",")
	}
	format := form.Get("_format")
	if format != "" && format != "json" && format != "csv" && format != "text/csv" {
		h.fail(q, errorf(http.StatusBadRequest, "invalid", "_format must be json or csv"))
		return
	}
	rep, err := h.alog.Report(q.r.Context(), spec)
	if err != nil {
		h.auditSpecFail(q, err)
		return
	}
	for _, x := range rep.Found {
		q.resources = append(q.resources, x.Entry.Resources...)
	}
	h.recordQuery(q, form)
	if rep.Truncated {
		q.w.Header().Set("X-Report-Truncated", strconv.Itoa(audit.MaxReportRows))
	}
	if format == "csv" || format == "text/csv" {
		h.sendRaw(q, http.StatusOK, "text/csv; charset=utf-8", rep.CSV())
		return
	}
	h.sendRaw(q, http.StatusOK, "application/json", rep.JSON())
}

func (h *Handler) auditSpecFail(q *request, err error) {
	if errors.Is(err, audit.ErrSpec) {
		h.fail(q, errorf(http.StatusBadRequest, "invalid", "%s", strings.TrimPrefix(err.Error(), "audit: bad request: ")))
		return
	}
	h.fail(q, err)
}

// patientLog serves, for one patient, every access to their record with
// an inclusion proof of each (who opened my record), or the accounting of
// disclosures (ONC 170.315(d)(11)).
func (h *Handler) patientLog(q *request, id string, disclosures bool, form url.Values) {
	key := h.rec.PatientKey(id)
	q.resources = []audit.Resource{{Type: "Patient", ID: id, Owner: "Patient/" + key}}
	f, err := h.auditFilter(form, map[string]string{"from": "from", "to": "to"})
	if err != nil {
		h.fail(q, err)
		return
	}
	al, err := h.alog.Accesses(q.r.Context(), id, key, f, disclosures)
	if err != nil {
		h.fail(q, err)
		return
	}
	if disclosures && form.Get("_format") == "csv" {
		h.sendRaw(q, http.StatusOK, "text/csv; charset=utf-8", al.DisclosuresCSV())
		return
	}
	h.sendJSON(q, al)
}
