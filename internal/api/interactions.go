package api

import (
	"net/http"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/ehrvault/ehrvault/internal/fhir"
	"github.com/ehrvault/ehrvault/internal/records"
)

// prefer holds what the Prefer header asks for.
type prefer struct {
	ret    string // minimal, representation, OperationOutcome; "" if not said
	strict bool   // handling=strict
}

func parsePrefer(r *http.Request) prefer {
	var p prefer
	for _, h := range r.Header.Values("Prefer") {
		for _, part := range strings.Split(h, ",") {
			k, v, _ := strings.Cut(strings.TrimSpace(part), "=")
			v = strings.Trim(strings.TrimSpace(v), `"`)
			switch strings.ToLower(strings.TrimSpace(k)) {
			case "return":
				p.ret = v
			case "handling":
				p.strict = v == "strict"
			}
		}
	}
	return p
}

// setVersionHeaders sets ETag and Last-Modified for a resource version.
func setVersionHeaders(w http.ResponseWriter, r *records.Resource) {
	h := w.Header()
	h["Etag"] = []string{r.ETag()}
	h["Last-Modified"] = []string{r.Updated.UTC().Format(http.TimeFormat)}
}

func (h *Handler) read(q *request, typ, id string) {
	if !h.filtered(q, typ, id) {
		return
	}
	res, err := h.rec.Read(q.r.Context(), typ, id, q.restrict)
	if err != nil {
		h.failVersioned(q, err)
		return
	}
	q.touch(res)
	setVersionHeaders(q.w, res)
	if inm := q.r.Header.Get("If-None-Match"); inm != "" && etagMatches(inm, res.ETag()) {
		if !h.record(q, http.StatusNotModified) {
			return
		}
		q.status = http.StatusNotModified
		q.w.WriteHeader(http.StatusNotModified)
		return
	}
	h.writeJSON(q, http.StatusOK, res.JSON)
}

func etagMatches(header, etag string) bool {
	for _, part := range strings.Split(header, ",") {
		t := strings.TrimSpace(part)
		if t == "*" || strings.TrimPrefix(t, "W/") == strings.TrimPrefix(etag, "W/") {
			return true
		}
	}
	return false
}

// failVersioned answers an error, adding the ETag of a deletion for Gone.
func (h *Handler) failVersioned(q *request, err error) {
	if re, ok := err.(*records.Error); ok && re.Code == records.Gone && re.Version > 0 {
		q.w.Header().Set("ETag", `W/"`+strconv.FormatInt(re.Version, 10)+`"`)
	}
	h.fail(q, err)
}

func (h *Handler) vread(q *request, typ, id, vid string) {
	res, err := h.rec.VRead(q.r.Context(), typ, id, vid, q.restrict)
	if err != nil {
		h.failVersioned(q, err)
		return
	}
	q.touch(res)
	setVersionHeaders(q.w, res)
	h.writeJSON(q, http.StatusOK, res.JSON)
}

func (h *Handler) create(q *request, typ string) {
	if !fhir.IsResourceType(typ) {
		h.fail(q, errorf(http.StatusNotFound, "not-found", "unknown resource type in the URL; /metadata lists the supported types"))
		return
	}
	b, err := h.parseBody(q)
	if err != nil {
		h.fail(q, err)
		return
	}
	if b.Type() != typ {
		h.fail(q, errorf(http.StatusBadRequest, "invalid", "the resource type of the body differs from the one in the URL"))
		return
	}
	if ine := q.r.Header.Get("If-None-Exist"); ine != "" {
		h.recordRawQuery(q, ine)
	}
	out, err := h.rec.Create(q.r.Context(), b, q.r.Header.Get("If-None-Exist"), q.writeOptions())
	if err != nil {
		h.fail(q, err)
		return
	}
	h.writeOutcome(q, out)
}

func (h *Handler) update(q *request, typ, id string) {
	b, err := h.parseBody(q)
	if err != nil {
		h.fail(q, err)
		return
	}
	out, err := h.rec.Update(q.r.Context(), typ, id, b, q.r.Header.Get("If-Match"), q.writeOptions())
	if err != nil {
		h.fail(q, err)
		return
	}
	h.writeOutcome(q, out)
}

func (h *Handler) conditionalUpdate(q *request, typ, rawQuery string) {
	if rawQuery == "" {
		h.fail(q, errorf(http.StatusBadRequest, "invalid", "PUT on a type needs search parameters (a conditional update); to update one resource PUT Type/id"))
		return
	}
	b, err := h.parseBody(q)
	if err != nil {
		h.fail(q, err)
		return
	}
	h.recordRawQuery(q, rawQuery)
	out, err := h.rec.ConditionalUpdate(q.r.Context(), typ, conditionQuery(rawQuery), b, q.r.Header.Get("If-Match"), q.writeOptions())
	if err != nil {
		h.fail(q, err)
		return
	}
	h.writeOutcome(q, out)
}

// conditionQuery drops the result parameters (_format, _pretty) from a
// conditional interaction's query.
func conditionQuery(raw string) string {
	v, err := url.ParseQuery(raw)
	if err != nil {
		return raw
	}
	v.Del("_format")
	v.Del("_pretty")
	return v.Encode()
}

func (h *Handler) delete(q *request, typ, id string) {
	out, err := h.rec.Delete(q.r.Context(), typ, id, q.r.Header.Get("If-Match"), q.writeOptions())
	if err != nil {
		h.fail(q, err)
		return
	}
	h.writeDelete(q, out)
}

func (h *Handler) conditionalDelete(q *request, typ, rawQuery string) {
	if rawQuery == "" {
		h.fail(q, errorf(http.StatusBadRequest, "invalid", "DELETE on a type needs search parameters (a conditional delete); to delete one resource DELETE Type/id"))
		return
	}
	h.recordRawQuery(q, rawQuery)
	out, err := h.rec.ConditionalDelete(q.r.Context(), typ, conditionQuery(rawQuery), q.writeOptions())
	if err != nil {
		h.fail(q, err)
		return
	}
	h.writeDelete(q, out)
}

func (h *Handler) writeDelete(q *request, out *records.Outcome) {
	q.touch(out.Resource)
	if out.Resource != nil {
		q.w.Header().Set("ETag", out.Resource.ETag())
	}
	p := parsePrefer(q.r)
	if p.ret == "OperationOutcome" {
		msg := "deleted"
		if out.Result == records.NothingToDelete {
			msg = "nothing to delete: the resource does not exist or is already deleted"
		}
		oo := information(msg)
		h.writeValue(q, http.StatusOK, &oo)
		return
	}
	h.noContent(q)
}

// writeOutcome answers a create or update as Prefer: return asks.
func (h *Handler) writeOutcome(q *request, out *records.Outcome) {
	res := out.Resource
	q.touch(res)
	status := http.StatusOK
	if out.Result == records.Created {
		status = http.StatusCreated
		q.w.Header().Set("Location", q.base+"/"+res.Location())
	}
	setVersionHeaders(q.w, res)
	switch parsePrefer(q.r).ret {
	case "minimal":
		if !h.record(q, status) {
			return
		}
		q.status = status
		q.w.WriteHeader(status)
	case "OperationOutcome":
		msg := map[records.Result]string{
			records.Created:   "created",
			records.Updated:   "updated",
			records.Unchanged: "unchanged: the content equals the current version, so no version was written",
			records.Existing:  "a resource matching If-None-Exist exists; nothing was created",
		}[out.Result]
		oo := information(msg)
		h.writeValue(q, status, &oo)
	default:
		h.writeJSON(q, status, res.JSON)
	}
}

func countParam(form url.Values) (int, error) {
	c := form.Get("_count")
	if c == "" {
		return 0, nil
	}
	n, err := strconv.Atoi(c)
	if err != nil || n < 0 {
		return 0, &httpError{status: http.StatusBadRequest, code: "invalid", msg: "_count must be a non-negative integer"}
	}
	if n == 0 {
		n = 1 // _count=0 asks for no resources; a one-entry page is the smallest ehrvault serves until _summary=count lands
	}
	return n, nil
}

// queryString renders a listing's parameters in a stable order.
func queryString(params url.Values, count int, page string) string {
	keys := make([]string, 0, len(params))
	for k := range params {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b strings.Builder
	add := func(k, v string) {
		if b.Len() == 0 {
			b.WriteByte('?')
		} else {
			b.WriteByte('&')
		}
		b.WriteString(url.QueryEscape(k))
		b.WriteByte('=')
		b.WriteString(url.QueryEscape(v))
	}
	for _, k := range keys {
		for _, v := range params[k] {
			add(k, v)
		}
	}
	if count > 0 {
		add("_count", strconv.Itoa(count))
	}
	if page != "" {
		add("_page", page)
	}
	return b.String()
}

func (h *Handler) history(q *request, typ, id string, form url.Values) {
	if typ != "" && !fhir.IsResourceType(typ) {
		h.fail(q, errorf(http.StatusNotFound, "not-found", "unknown resource type in the URL; /metadata lists the supported types"))
		return
	}
	req := records.HistoryRequest{Type: typ, ID: id, Page: form.Get("_page"), Restrict: q.restrict}
	params := url.Values{}
	for _, name := range []string{"_since", "_at"} {
		s := form.Get(name)
		if s == "" {
			continue
		}
		t, err := parseInstantParam(s)
		if err != nil {
			h.fail(q, &httpError{status: http.StatusBadRequest, code: "invalid", msg: name + " must be an instant such as 2024-01-31T12:00:00Z"})
			return
		}
		params.Set(name, s)
		if name == "_since" {
			req.Since = t
		} else {
			req.At = t
		}
	}
	for k := range form {
		if !listingParams[k] && k != "_since" && k != "_at" && parsePrefer(q.r).strict {
			h.fail(q, &httpError{status: http.StatusBadRequest, code: "not-supported", msg: "history takes only _since, _at, _count and _page"})
			return
		}
	}
	count, err := countParam(form)
	if err != nil {
		h.fail(q, err)
		return
	}
	req.Count = count
	path := "_history"
	if typ != "" {
		path = typ + "/_history"
		if id != "" {
			path = typ + "/" + id + "/_history"
		}
	}
	req.Scope = path + "?" + params.Encode()
	page, err := h.rec.History(q.r.Context(), req)
	if err != nil {
		h.fail(q, err)
		return
	}
	bw := newBundleWriter("history", h.now())
	bw.link("self", q.base+"/"+path+queryString(params, count, ""))
	if page.Next != "" {
		bw.link("next", q.base+"/"+path+queryString(params, count, page.Next))
	}
	h.recordQuery(q, form)
	for _, e := range page.Entries {
		q.touch(e.Resource)
		full := q.base + "/" + e.Type + "/" + e.ID
		reqURL := e.Type + "/" + e.ID
		if e.Method == "POST" {
			reqURL = e.Type
		}
		status := "200 OK"
		switch e.Method {
		case "POST":
			status = "201 Created"
		case "DELETE":
			status = "204 No Content"
		}
		extra := `"request":{"method":"` + e.Method + `","url":"` + reqURL + `"},"response":{"status":"` + status + `","etag":"W/\"` +
			strconv.FormatInt(e.Version, 10) + `\"","lastModified":"` + records.FormatInstant(e.Updated) + `"}`
		bw.entry(full, e.JSON, extra)
	}
	h.writeJSON(q, http.StatusOK, bw.finish())
}

// parseInstantParam reads a _since/_at value: an instant, or a dateTime
// down to the second, or a date (midnight UTC).
func parseInstantParam(s string) (time.Time, error) {
	for _, layout := range []string{time.RFC3339Nano, "2006-01-02T15:04:05", "2006-01-02"} {
		if t, err := time.Parse(layout, s); err == nil {
			return t.UTC(), nil
		}
	}
	return time.Time{}, errorf(http.StatusBadRequest, "invalid", "not an instant")
}

func (h *Handler) bundle(q *request) {
	b, err := h.parseBody(q)
	if err != nil {
		h.fail(q, err)
		return
	}
	if k := b.Value().Str("type"); k == "transaction" || k == "batch" {
		q.action = k
	}
	if !h.permitBundle(q, b) {
		return
	}
	kind, results, err := h.rec.Bundle(q.r.Context(), b, q.writeOptions())
	if err != nil {
		h.fail(q, err)
		return
	}
	for _, r := range results {
		q.touch(r.Read)
		if r.Outcome != nil {
			q.touch(r.Outcome.Resource)
		}
	}
	p := parsePrefer(q.r)
	bw := newBundleWriter(kind+"-response", h.now())
	for _, r := range results {
		bw.raw(h.entryResponse(q, r, p))
	}
	h.writeJSON(q, http.StatusOK, bw.finish())
}

// entryResponse renders one entry of a transaction or batch response.
func (h *Handler) entryResponse(q *request, r records.EntryResult, p prefer) []byte {
	e := fhir.Value{Kind: fhir.Object}
	resp := fhir.Value{Kind: fhir.Object}
	var body []byte
	switch {
	case r.Err != nil:
		status, issues, _ := problem(r.Err)
		if status == http.StatusInternalServerError {
			h.log.Error("internal error in a batch entry", "request_id", q.id, "err", r.Err)
		}
		resp.Set("status", fhir.StringValue(statusLine(status)))
		resp.Set("outcome", outcome(issues))
	case r.Read != nil:
		resp.Set("status", fhir.StringValue("200 OK"))
		resp.Set("etag", fhir.StringValue(r.Read.ETag()))
		resp.Set("lastModified", fhir.StringValue(records.FormatInstant(r.Read.Updated)))
		e.Set("fullUrl", fhir.StringValue(q.base+"/"+r.Read.Type+"/"+r.Read.ID))
		body = r.Read.JSON
	case r.Outcome != nil:
		o := r.Outcome
		status := http.StatusOK
		switch o.Result {
		case records.Created:
			status = http.StatusCreated
		case records.Deleted, records.NothingToDelete:
			status = http.StatusNoContent
		}
		resp.Set("status", fhir.StringValue(statusLine(status)))
		if res := o.Resource; res != nil {
			if !res.Deleted {
				e.Set("fullUrl", fhir.StringValue(q.base+"/"+res.Type+"/"+res.ID))
				resp.Set("location", fhir.StringValue(res.Location()))
			}
			resp.Set("etag", fhir.StringValue(res.ETag()))
			resp.Set("lastModified", fhir.StringValue(records.FormatInstant(res.Updated)))
			if p.ret == "representation" && !res.Deleted {
				body = res.JSON
			}
		}
	}
	out := fhir.AppendJSON(nil, &e)
	out = out[:len(out)-1] // reopen the object
	if body != nil {
		if len(e.Fields) > 0 {
			out = append(out, ',')
		}
		out = append(out, `"resource":`...)
		out = append(out, body...)
	}
	if len(e.Fields) > 0 || body != nil {
		out = append(out, ',')
	}
	out = append(out, `"response":`...)
	out = fhir.AppendJSON(out, &resp)
	return append(out, '}')
}

func statusLine(code int) string {
	return strconv.Itoa(code) + " " + http.StatusText(code)
}

// bundleWriter writes a Bundle whose resources are already JSON, without
// parsing them again.
type bundleWriter struct {
	buf     []byte
	links   int
	entries int
}

func newBundleWriter(typ string, now time.Time) *bundleWriter {
	b := &bundleWriter{buf: make([]byte, 0, 64<<10)}
	b.buf = append(b.buf, `{"resourceType":"Bundle","id":"`...)
	b.buf = append(b.buf, records.RandomID()...)
	b.buf = append(b.buf, `","meta":{"lastUpdated":"`...)
	b.buf = append(b.buf, records.FormatInstant(now)...)
	b.buf = append(b.buf, `"},"type":"`...)
	b.buf = append(b.buf, typ...)
	b.buf = append(b.buf, '"')
	return b
}

// total sets Bundle.total; it must come before links and entries.
func (b *bundleWriter) total(n int64) {
	b.buf = append(b.buf, `,"total":`...)
	b.buf = strconv.AppendInt(b.buf, n, 10)
}

func (b *bundleWriter) link(rel, u string) {
	if b.entries > 0 {
		panic("api: bundle link after entries")
	}
	if b.links == 0 {
		b.buf = append(b.buf, `,"link":[`...)
	} else {
		b.buf = append(b.buf, ',')
	}
	b.links++
	v := fhir.Value{Kind: fhir.Object, Fields: []fhir.Field{{Name: "relation", Value: fhir.StringValue(rel)}, {Name: "url", Value: fhir.StringValue(u)}}}
	b.buf = fhir.AppendJSON(b.buf, &v)
}

func (b *bundleWriter) openEntry() {
	if b.links > 0 && b.entries == 0 {
		b.buf = append(b.buf, ']')
		b.links = -1
	}
	if b.entries == 0 {
		b.buf = append(b.buf, `,"entry":[`...)
	} else {
		b.buf = append(b.buf, ',')
	}
	b.entries++
}

// entry adds an entry with a fullUrl, a resource (nil for none) and extra
// members given as JSON text.
func (b *bundleWriter) entry(fullURL string, resource []byte, extra string) {
	b.openEntry()
	s := fhir.StringValue(fullURL)
	b.buf = append(b.buf, `{"fullUrl":`...)
	b.buf = fhir.AppendJSON(b.buf, &s)
	if resource != nil {
		b.buf = append(b.buf, `,"resource":`...)
		b.buf = append(b.buf, resource...)
	}
	if extra != "" {
		b.buf = append(b.buf, ',')
		b.buf = append(b.buf, extra...)
	}
	b.buf = append(b.buf, '}')
}

// raw adds an entry given as a whole JSON object.
func (b *bundleWriter) raw(entry []byte) {
	b.openEntry()
	b.buf = append(b.buf, entry...)
}

func (b *bundleWriter) finish() []byte {
	if b.links > 0 && b.entries == 0 {
		b.buf = append(b.buf, ']')
	}
	if b.entries > 0 {
		b.buf = append(b.buf, ']')
	}
	return append(b.buf, '}')
}

// writeOptions are the records options of the request's writes: its
// restrictions on what it reads (Bundle GETs) and writes.
func (q *request) writeOptions() records.WriteOptions {
	return records.WriteOptions{Restrict: q.restrict, RestrictWrites: q.wrestrict}
}
