package smart

import (
	"errors"
	"fmt"
	"net/url"
	"sort"
	"strings"
)

// Contexts of resource scopes (SMART App Launch v2, section "Scopes for
// requesting clinical data").
const (
	ContextPatient = "patient" // data of the patient in context (Principal.Patient)
	ContextUser    = "user"    // data the user may see
	ContextSystem  = "system"  // data a backend service or device may see
)

// Interactions a scope grants, in the order v2 writes them.
const permOrder = "cruds"

// Non-resource scopes that are understood.
const (
	ScopeOpenID        = "openid"
	ScopeFHIRUser      = "fhirUser"
	ScopeLaunchPatient = "launch/patient"
	ScopeOffline       = "offline_access"
	ScopeOnline        = "online_access"
)

var otherScopes = map[string]bool{ScopeOpenID: true, ScopeFHIRUser: true, ScopeLaunchPatient: true, ScopeOffline: true, ScopeOnline: true}

// ErrScope is wrapped by every scope syntax error (OAuth invalid_scope).
var ErrScope = errors.New("invalid scope")

// Scope is one parsed scope. A resource scope has Context, Type and Perms;
// any other scope (openid, launch/patient ...) has only Name.
type Scope struct {
	Name    string     // a non-resource scope, e.g. "offline_access"
	Context string     // patient, user or system
	Type    string     // a resource type, or "*"
	Perms   string     // a non-empty subsequence of "cruds"
	Query   url.Values // granular constraints (?category=...), nil if none
}

// IsResource reports whether s grants access to resources.
func (s Scope) IsResource() bool { return s.Context != "" }

// String returns the scope in SMART v2 syntax (v1 scopes come back in v2
// form: patient/Observation.read is patient/Observation.rs).
func (s Scope) String() string {
	if !s.IsResource() {
		return s.Name
	}
	out := s.Context + "/" + s.Type + "." + s.Perms
	if len(s.Query) > 0 {
		out += "?" + queryReadable.Replace(s.Query.Encode())
	}
	return out
}

// queryReadable undoes the escaping of the characters SMART's granular
// scopes are written with (system|code URLs), which a scope may hold as
// they are (RFC 6749 section 3.3): a client then finds its granted scope
// spelled as it asked for it.
var queryReadable = strings.NewReplacer("%3A", ":", "%2F", "/", "%7C", "|")

// Has reports whether s grants interaction i ('c','r','u','d','s').
func (s Scope) Has(i byte) bool { return strings.IndexByte(s.Perms, i) >= 0 }

// ParseScope parses one scope: a v2 resource scope
// (patient/Observation.rs, user/*.cruds, system/Patient.r,
// patient/Observation.rs?category=http://...|laboratory), a v1 one
// (.read, .write, .*), or one of the non-resource scopes ehrvault knows.
func ParseScope(s string) (Scope, error) {
	if otherScopes[s] {
		return Scope{Name: s}, nil
	}
	if len(s) > 512 {
		return Scope{}, fmt.Errorf("%w: scope longer than 512 bytes", ErrScope)
	}
	body, query, hasQuery := strings.Cut(s, "?")
	ctx, rest, ok := strings.Cut(body, "/")
	if !ok || (ctx != ContextPatient && ctx != ContextUser && ctx != ContextSystem) {
		return Scope{}, fmt.Errorf("%w: %q is not a known scope (want patient/, user/ or system/ scopes, openid, fhirUser, launch/patient, offline_access or online_access)", ErrScope, trim(s))
	}
	typ, perms, ok := strings.Cut(rest, ".")
	if !ok || !validType(typ) {
		return Scope{}, fmt.Errorf("%w: %q: want a resource type or * before the dot", ErrScope, trim(s))
	}
	switch perms {
	case "read":
		perms = "rs"
	case "write":
		perms = "cud"
	case "*":
		perms = permOrder
	default:
		if !validPerms(perms) {
			return Scope{}, fmt.Errorf("%w: %q: permissions must be letters of c, r, u, d, s in that order, none repeated", ErrScope, trim(s))
		}
	}
	sc := Scope{Context: ctx, Type: typ, Perms: perms}
	if hasQuery {
		if hasV1(rest) {
			return Scope{}, fmt.Errorf("%w: %q: v1 scopes take no query", ErrScope, trim(s))
		}
		q, err := url.ParseQuery(query)
		if err != nil || len(q) == 0 {
			return Scope{}, fmt.Errorf("%w: %q: malformed query", ErrScope, trim(s))
		}
		for k, vs := range q {
			if k == "" || len(vs) == 0 {
				return Scope{}, fmt.Errorf("%w: %q: malformed query", ErrScope, trim(s))
			}
			for _, v := range vs {
				if v == "" {
					return Scope{}, fmt.Errorf("%w: %q: empty value of %s", ErrScope, trim(s), k)
				}
			}
		}
		sc.Query = q
	}
	return sc, nil
}

func hasV1(rest string) bool {
	_, p, _ := strings.Cut(rest, ".")
	p, _, _ = strings.Cut(p, "?")
	return p == "read" || p == "write" || p == "*"
}

func trim(s string) string {
	if len(s) > 80 {
		return s[:80] + "…"
	}
	return s
}

func validType(t string) bool {
	if t == "*" {
		return true
	}
	if t == "" || len(t) > 64 || t[0] < 'A' || t[0] > 'Z' {
		return false
	}
	for i := 0; i < len(t); i++ {
		c := t[i]
		if !(c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || c >= '0' && c <= '9') {
			return false
		}
	}
	return true
}

func validPerms(p string) bool {
	if p == "" {
		return false
	}
	last := -1
	for i := 0; i < len(p); i++ {
		j := strings.IndexByte(permOrder, p[i])
		if j <= last {
			return false
		}
		last = j
	}
	return true
}

// Scopes is a set of scopes: what a client may ask for, or what a token
// grants.
type Scopes []Scope

// ParseScopes parses a space-separated scope string (OAuth's scope
// parameter). Duplicates are dropped; an empty string is no scopes.
func ParseScopes(s string) (Scopes, error) {
	var out Scopes
	seen := map[string]bool{}
	for _, f := range strings.Fields(s) {
		sc, err := ParseScope(f)
		if err != nil {
			return nil, err
		}
		if k := sc.String(); !seen[k] {
			seen[k] = true
			out = append(out, sc)
		}
	}
	return out, nil
}

// MustParseScopes is ParseScopes for constants; it panics on error.
func MustParseScopes(s string) Scopes {
	sc, err := ParseScopes(s)
	if err != nil {
		panic(err)
	}
	return sc
}

// String joins the scopes in v2 syntax, space-separated.
func (ss Scopes) String() string { return strings.Join(ss.Strings(), " ") }

// Strings returns each scope in v2 syntax.
func (ss Scopes) Strings() []string {
	out := make([]string, len(ss))
	for i, s := range ss {
		out[i] = s.String()
	}
	return out
}

// Contains reports whether the non-resource scope name is in ss.
func (ss Scopes) Contains(name string) bool {
	for _, s := range ss {
		if !s.IsResource() && s.Name == name {
			return true
		}
	}
	return false
}

// HasContext reports whether some resource scope of ss is in context.
func (ss Scopes) HasContext(context string) bool {
	for _, s := range ss {
		if s.Context == context {
			return true
		}
	}
	return false
}

// Permits reports whether ss lets its holder do interaction ('c' create,
// 'r' read, 'u' update, 'd' delete, 's' search) on resources of
// resourceType in context (patient: within the compartment of the
// patient in context; user: what the user may see; system: a program).
// When Permits is true the caller must still apply Constraints: a
// granular scope permits only the resources matching its query.
func (ss Scopes) Permits(context, resourceType string, interaction byte) bool {
	_, ok := ss.Constraints(context, resourceType, interaction)
	return ok
}

// Constraints returns what Permits needs to be exact: ok is false if no
// scope permits the interaction; otherwise filters lists the granular
// queries of which a resource must match at least one (each url.Values
// is one scope's query: all of its parameters must match), and filters is
// nil when some scope permits the interaction without a query.
//
// For example patient/Observation.rs?category=...|laboratory alone gives
// filters [{category: [...|laboratory]}]; adding patient/Observation.r
// makes filters nil (every Observation of the patient may be read).
func (ss Scopes) Constraints(context, resourceType string, interaction byte) (filters []url.Values, ok bool) {
	for _, s := range ss {
		if s.Context != context || !s.Has(interaction) || s.Type != "*" && s.Type != resourceType {
			continue
		}
		if len(s.Query) == 0 {
			return nil, true
		}
		ok = true
		filters = append(filters, s.Query)
	}
	return filters, ok
}

// Grant returns the scopes of requested that allowed covers: for each
// requested resource scope, its intersection with each allowed one of the
// same context (the permissions both have, on the narrower type, under
// the query either carries: never more than asked, never more than
// allowed); and each requested non-resource scope that allowed also
// lists. The result is sorted and without duplicates.
func Grant(requested, allowed Scopes) Scopes {
	seen := map[string]bool{}
	var out Scopes
	add := func(s Scope) {
		if k := s.String(); !seen[k] {
			seen[k] = true
			out = append(out, s)
		}
	}
	for _, r := range requested {
		if !r.IsResource() {
			if allowed.Contains(r.Name) {
				add(r)
			}
			continue
		}
		for _, a := range allowed {
			if g, ok := intersect(r, a); ok {
				add(g)
			}
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].String() < out[j].String() })
	return out
}

func intersect(r, a Scope) (Scope, bool) {
	if !a.IsResource() || r.Context != a.Context {
		return Scope{}, false
	}
	g := Scope{Context: r.Context}
	switch {
	case r.Type == a.Type || a.Type == "*":
		g.Type = r.Type
	case r.Type == "*":
		g.Type = a.Type
	default:
		return Scope{}, false
	}
	for i := 0; i < len(permOrder); i++ {
		if r.Has(permOrder[i]) && a.Has(permOrder[i]) {
			g.Perms += permOrder[i : i+1]
		}
	}
	if g.Perms == "" {
		return Scope{}, false
	}
	switch {
	case len(a.Query) == 0:
		g.Query = r.Query
	case len(r.Query) == 0 || r.Query.Encode() == a.Query.Encode():
		g.Query = a.Query
	default:
		// Two different filters: their conjunction is not one SMART
		// scope; grant nothing rather than guess.
		return Scope{}, false
	}
	return g, true
}
