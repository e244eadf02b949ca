package api

import (
	"net/http"
	"net/url"
	"strings"

	"github.com/ehrvault/ehrvault/internal/fhir"
	"github.com/ehrvault/ehrvault/internal/records"
	"github.com/ehrvault/ehrvault/internal/search"
)

// listingParams shape a listing (history, the audit log's views) rather
// than select from it.
var listingParams = map[string]bool{
	"_format": true, "_pretty": true, "_count": true, "_page": true,
}

// search answers GET [base]/Type?… and, with compartment set,
// GET [base]/Patient/{compartment}/Type?….
func (h *Handler) search(q *request, typ, compartment string, form url.Values) {
	if !fhir.IsResourceType(typ) {
		h.fail(q, errorf(http.StatusNotFound, "not-found", "unknown resource type in the URL; /metadata lists the supported types"))
		return
	}
	if h.engine == nil {
		h.fail(q, errorf(http.StatusNotImplemented, "not-supported", "search is not configured on this server"))
		return
	}
	h.recordQuery(q, form)
	if !h.permitChains(q, form) {
		return
	}
	require, ok := h.require(q)
	if !ok {
		return
	}
	res, err := h.engine.Search(q.r.Context(), search.Request{
		Type: typ, Params: form, Compartment: compartment, Restrict: q.restrict, Strict: parsePrefer(q.r).strict, Require: require,
	})
	if err != nil {
		h.fail(q, err)
		return
	}
	path := typ
	if compartment != "" {
		path = "Patient/" + compartment + "/" + typ
	}
	h.writeSearchset(q, path, res)
}

// writeSearchset renders a page of search results.
func (h *Handler) writeSearchset(q *request, path string, res *search.Result) {
	bw := newBundleWriter("searchset", h.now())
	if res.Total >= 0 {
		bw.total(res.Total)
	}
	self := q.base + "/" + path
	if enc := res.Self.Encode(); enc != "" {
		self += "?" + enc
	}
	bw.link("self", self)
	if res.Next != "" {
		bw.link("next", q.base+"/"+path+"?_page="+url.QueryEscape(res.Next))
	}
	for _, r := range res.Matches {
		q.touch(r)
		bw.entry(q.base+"/"+r.Type+"/"+r.ID, r.JSON, `"search":{"mode":"match"}`)
	}
	readable := map[string]bool{}
	for _, r := range res.Included {
		ok, seen := readable[r.Type]
		if !seen {
			ok = h.readable(q, r.Type)
			readable[r.Type] = ok
		}
		if !ok {
			continue // not in the token's scopes
		}
		q.touch(r)
		bw.entry(q.base+"/"+r.Type+"/"+r.ID, r.JSON, `"search":{"mode":"include"}`)
	}
	var issues []fhir.Issue
	for _, ig := range res.Ignored {
		issues = append(issues, fhir.Issue{Severity: "warning", Code: "not-supported", Path: ig.Param, Message: "left out of the search: " + ig.Why})
	}
	issues = append(issues, res.Warnings...)
	if len(issues) > 0 {
		oo := outcome(issues)
		bw.entry("urn:uuid:"+records.RandomID(), fhir.Marshal(&oo), `"search":{"mode":"outcome"}`)
	}
	h.writeJSON(q, http.StatusOK, bw.finish())
}

// postSearch answers POST [base]/Type/_search: the parameters in a form
// body (and the query string).
func (h *Handler) postSearch(q *request, typ string, form url.Values) {
	all, ok := h.readForm(q, form)
	if !ok {
		return
	}
	h.search(q, typ, "", all)
}

// readForm merges the query string with a form body.
func (h *Handler) readForm(q *request, form url.Values) (url.Values, bool) {
	ct := strings.ToLower(q.r.Header.Get("Content-Type"))
	if !strings.HasPrefix(ct, "application/x-www-form-urlencoded") {
		h.fail(q, errorf(http.StatusUnsupportedMediaType, "not-supported", "POST _search takes Content-Type: application/x-www-form-urlencoded"))
		return nil, false
	}
	q.r.Body = http.MaxBytesReader(q.w, q.r.Body, 1<<20)
	if err := q.r.ParseForm(); err != nil {
		h.fail(q, errorf(http.StatusBadRequest, "invalid", "the form body could not be read"))
		return nil, false
	}
	all := url.Values{}
	for k, v := range form {
		all[k] = append(all[k], v...)
	}
	for k, v := range q.r.PostForm {
		all[k] = append(all[k], v...)
	}
	return all, true
}

// everything answers GET [base]/Patient/{id}/$everything.
func (h *Handler) everything(q *request, id string, form url.Values) {
	if h.engine == nil {
		h.fail(q, errorf(http.StatusNotImplemented, "not-supported", "search is not configured on this server"))
		return
	}
	h.recordQuery(q, form)
	res, err := h.engine.Everything(q.r.Context(), id, h.everythingTypes(q, form), q.restrict)
	if err != nil {
		h.fail(q, err)
		return
	}
	h.writeSearchset(q, "Patient/"+id+"/$everything", res)
}
