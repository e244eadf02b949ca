package api

import (
	"context"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/ehrvault/ehrvault/internal/access"
	"github.com/ehrvault/ehrvault/internal/auth"
	"github.com/ehrvault/ehrvault/internal/fhir"
	"github.com/ehrvault/ehrvault/internal/records"
	"github.com/ehrvault/ehrvault/internal/search"
)

// Grants says what a principal's token lets it do: its SMART scopes. It is
// asked only for principals that carry scopes (operator tokens carry none
// and may do anything their restriction admits).
type Grants interface {
	// Permit decides interaction ('c' create, 'r' read, 'u' update,
	// 'd' delete, 's' search) on resources of typ. ok false refuses it.
	Permit(ctx context.Context, p *auth.Principal, typ string, interaction byte) (perm Permission, ok bool)
}

// Permission is a granted interaction and the limits that come with it.
type Permission struct {
	// Restrict limits what is read or searched (the compartment of the
	// patient in context for patient/ scopes); nil adds no limit.
	Restrict *access.Restriction
	// Writes limits what is written (a patient app's own compartment, a
	// medical device's assigned patients); nil adds no limit.
	Writes *access.Restriction
	// Filters are the searches of granular scopes
	// (patient/Observation.rs?category=…): nil for none, else what is
	// read must match at least one of them.
	Filters []url.Values
}

// Refusal is an error of Config.Gate: the request is refused with Status
// (403, 429) and Msg; RetryAfter, if set, becomes the Retry-After header.
type Refusal struct {
	Status     int
	Msg        string
	RetryAfter time.Duration
}

func (r *Refusal) Error() string { return r.Msg }

// interactionNames say in an error what was refused.
var interactionNames = map[byte]string{'c': "create", 'r': "read", 'u': "update", 'd': "delete", 's': "search"}

// scoped reports whether the principal's requests are decided by Grants.
func (h *Handler) scoped(q *request) bool {
	return h.grants != nil && q.principal != nil && q.principal.Scopes != nil
}

// permit checks interaction on typ against the principal's grant, narrows
// the request's restrictions to it, and answers 403 itself if it is not
// granted.
func (h *Handler) permit(q *request, typ string, interaction byte) bool {
	if q.principal != nil && q.principal.Scopes != nil && h.grants == nil {
		// A scoped token on a server that cannot read scopes: closed.
		h.fail(q, errorf(http.StatusForbidden, "forbidden", "this server cannot check the token's scopes"))
		return false
	}
	if !h.scoped(q) {
		return true
	}
	perm, ok := h.grants.Permit(q.r.Context(), q.principal, typ, interaction)
	if !ok {
		h.fail(q, errorf(http.StatusForbidden, "forbidden", "the token's scopes do not allow %s of %s", interactionNames[interaction], typ))
		return false
	}
	q.restrict = access.Intersect(q.restrict, perm.Restrict)
	q.wrestrict = access.Intersect(q.wrestrict, perm.Writes)
	q.filters = perm.Filters
	return true
}

// require turns the filters of granular scopes into conditions ANDed into a
// search: one filter as it is; several over one parameter as its values
// ORed (category=laboratory,vital-signs). Other mixes cannot be written as
// one search and are refused.
func (h *Handler) require(q *request) (url.Values, bool) {
	switch len(q.filters) {
	case 0:
		return nil, true
	case 1:
		return q.filters[0], true
	}
	name := ""
	var vals []string
	for _, f := range q.filters {
		if len(f) != 1 {
			name = ""
			break
		}
		for k, v := range f {
			if name != "" && k != name || len(v) != 1 {
				name = ""
				break
			}
			name = k
			vals = append(vals, v[0])
		}
		if name == "" {
			break
		}
	}
	if name == "" {
		h.fail(q, errorf(http.StatusForbidden, "forbidden", "the token's granular scopes for this type cannot be combined into one search; ask for one of them"))
		return nil, false
	}
	return url.Values{name: {strings.Join(vals, ",")}}, true
}

// readable reports whether included resources of typ may be shown.
func (h *Handler) readable(q *request, typ string) bool {
	if !h.scoped(q) {
		return true
	}
	perm, ok := h.grants.Permit(q.r.Context(), q.principal, typ, 'r')
	return ok && perm.Filters == nil
}

// everythingTypes limits $everything to the types the grant lets the
// principal read without granular filters, within what the client asked
// for in _type.
func (h *Handler) everythingTypes(q *request, form url.Values) url.Values {
	if !h.scoped(q) || form.Has("_page") {
		// A cursor stands for the query of its first page, limited then.
		return form
	}
	// The candidates: what the client asked for (a type outside the
	// compartment still gets the engine's error), else the compartment.
	var asked []string
	for _, v := range form["_type"] {
		for _, t := range strings.Split(v, ",") {
			if t = strings.TrimSpace(t); t != "" && !slices.Contains(asked, t) {
				asked = append(asked, t)
			}
		}
	}
	if len(asked) == 0 {
		asked = search.CompartmentTypes()
	}
	var types []string
	for _, t := range asked {
		if h.readable(q, t) {
			types = append(types, t)
		}
	}
	out := url.Values{}
	for k, v := range form {
		out[k] = v
	}
	out["_type"] = []string{strings.Join(types, ",")}
	if len(types) == 0 {
		out["_type"] = []string{"Patient"} // never empty: the patient alone, if readable at all
	}
	return out
}

// permitBundle checks every entry of a batch or transaction against the
// grant before anything runs: one refused entry refuses the Bundle.
func (h *Handler) permitBundle(q *request, b *records.Body) bool {
	if !h.scoped(q) {
		return h.permit(q, "", 0)
	}
	entries := b.Value().Get("entry")
	if entries == nil {
		return true
	}
	var restrict, writes *access.Restriction
	first := true
	for i := range entries.Items {
		req := entries.Items[i].Get("request")
		if req == nil {
			continue // records names the entry that lacks a request
		}
		method, raw := req.Str("method"), req.Str("url")
		typ, interaction := entryInteraction(method, raw)
		if typ == "" {
			h.fail(q, errorf(http.StatusForbidden, "forbidden", "Bundle entry %d: a token with scopes may only send entries on a resource type (Type, Type/id, Type?query)", i))
			return false
		}
		perm, ok := h.grants.Permit(q.r.Context(), q.principal, typ, interaction)
		if !ok {
			h.fail(q, errorf(http.StatusForbidden, "forbidden", "Bundle entry %d: the token's scopes do not allow %s of %s", i, interactionNames[interaction], typ))
			return false
		}
		if perm.Filters != nil {
			h.fail(q, errorf(http.StatusForbidden, "forbidden", "Bundle entry %d: granular scopes on %s are not supported inside Bundles; send the request on its own", i, typ))
			return false
		}
		if first {
			restrict, writes, first = perm.Restrict, perm.Writes, false
		} else {
			restrict, writes = access.Intersect(restrict, perm.Restrict), access.Intersect(writes, perm.Writes)
		}
	}
	q.restrict = access.Intersect(q.restrict, restrict)
	q.wrestrict = access.Intersect(q.wrestrict, writes)
	return true
}

// entryInteraction names the type and SMART interaction of a Bundle
// entry's request; typ is "" for what scopes cannot grant.
func entryInteraction(method, raw string) (typ string, interaction byte) {
	path, query, _ := strings.Cut(raw, "?")
	parts := strings.Split(strings.Trim(path, "/"), "/")
	if len(parts) == 0 || !fhir.IsResourceType(parts[0]) {
		return "", 0
	}
	typ = parts[0]
	switch {
	case method == "POST" && len(parts) == 1:
		return typ, 'c'
	case method == "PUT" && (len(parts) == 2 || len(parts) == 1 && query != ""):
		return typ, 'u'
	case method == "DELETE" && (len(parts) == 2 || len(parts) == 1 && query != ""):
		return typ, 'd'
	case (method == "GET" || method == "HEAD") && len(parts) == 1:
		return typ, 's'
	case (method == "GET" || method == "HEAD") && (len(parts) == 2 || len(parts) == 3 && parts[2] == "_history" || len(parts) == 4 && parts[2] == "_history"):
		return typ, 'r'
	}
	return "", 0
}

// filtered answers 404 itself unless typ/id matches the granular scopes'
// filters (and the restriction): to a token limited to some Observations
// the others do not exist. A read under granular scopes is a search for
// that one id.
func (h *Handler) filtered(q *request, typ, id string) bool {
	if len(q.filters) == 0 {
		return true
	}
	req, ok := h.require(q)
	if !ok {
		return false
	}
	found := false
	if h.engine != nil {
		res, err := h.engine.Search(q.r.Context(), search.Request{Type: typ, Params: url.Values{"_id": {id}, "_count": {"1"}}, Restrict: q.restrict, Require: req})
		if err != nil {
			h.fail(q, err)
			return false
		}
		found = len(res.Matches) > 0
	}
	if !found {
		h.fail(q, errorf(http.StatusNotFound, "not-found", "no such resource"))
	}
	return found
}

// permitChains checks the types a search reaches beyond its own: a chain
// (subject:Patient.name) searches its target type, and _has
// (_has:Observation:patient:code) its source type; each must be one the
// token may search. A chain that does not name its target type could
// reach several, so a token with scopes must name it.
func (h *Handler) permitChains(q *request, form url.Values) bool {
	if !h.scoped(q) {
		return true
	}
	for name := range form {
		rest := name
		for strings.HasPrefix(rest, "_has:") {
			parts := strings.SplitN(rest, ":", 4)
			if len(parts) < 4 {
				break // malformed: the engine says so
			}
			if fhir.IsResourceType(parts[1]) {
				if perm, ok := h.grants.Permit(q.r.Context(), q.principal, parts[1], 's'); !ok || perm.Filters != nil {
					h.fail(q, errorf(http.StatusForbidden, "forbidden", "%s: the token's scopes do not allow searching %s", name, parts[1]))
					return false
				}
			}
			rest = parts[3]
		}
		head, _, chained := strings.Cut(rest, ".")
		if !chained {
			continue
		}
		_, target, typed := strings.Cut(head, ":")
		if !typed || !fhir.IsResourceType(target) {
			h.fail(q, errorf(http.StatusForbidden, "forbidden", "%s: with a token's scopes, a chain must name its target type (as in subject:Patient.name)", name))
			return false
		}
		if perm, ok := h.grants.Permit(q.r.Context(), q.principal, target, 's'); !ok || perm.Filters != nil {
			h.fail(q, errorf(http.StatusForbidden, "forbidden", "%s: the token's scopes do not allow searching %s", name, target))
			return false
		}
	}
	return true
}
