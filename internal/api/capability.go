package api

import (
	"slices"
	"time"

	"github.com/ehrvault/ehrvault/internal/fhir"
	"github.com/ehrvault/ehrvault/internal/records"
)

// paramDocs says, per parameter type, how values are matched.
var paramDocs = map[string]string{
	"string":    "starts with, case- and accent-insensitive; :exact, :contains",
	"token":     "code, system|code, |code or system|; :not, :text",
	"reference": "Type/id, id, or an absolute URL; :[type]; chains one level deep",
	"date":      "yyyy[-mm[-dd[Thh:mm[:ss][zone]]]] with a prefix (eq, ne, gt, lt, ge, le, sa, eb, ap) and the precision semantics of R4",
	"number":    "with a prefix; eq within the value's precision",
	"quantity":  "[prefix]number[|system|code] or number||unit; no unit conversion",
	"uri":       "the exact URI",
}

// SearchParam describes one search parameter a type supports, for the
// CapabilityStatement.
type SearchParam struct {
	Name       string
	Type       string   // token, string, reference, …
	Definition string   // canonical URL of the SearchParameter
	Targets    []string // of a reference: the types it may point to (none: any)
}

// capabilityStatement states exactly what this server implements: every
// R4 resource type with the same interactions, the search parameters the
// search supplies for each, and the system interactions.
func capabilityStatement(version string, now time.Time, params func(typ string) []SearchParam, oauth *OAuthURIs) []byte {
	str := fhir.StringValue
	obj := func(fields ...fhir.Field) fhir.Value { return fhir.Value{Kind: fhir.Object, Fields: fields} }
	f := func(name string, v fhir.Value) fhir.Field { return fhir.Field{Name: name, Value: v} }
	arr := func(items ...fhir.Value) fhir.Value { return fhir.Value{Kind: fhir.Array, Items: items} }
	code := func(c string) fhir.Value { return obj(f("code", str(c))) }

	// _revinclude: for each type, the reference parameters of all types
	// that may point to it.
	types := fhir.ResourceTypes()
	revs := map[string][]fhir.Value{}
	if params != nil {
		for _, src := range types {
			for _, p := range params(src) {
				if p.Type != "reference" {
					continue
				}
				for _, t := range types {
					if len(p.Targets) == 0 || slices.Contains(p.Targets, t) {
						revs[t] = append(revs[t], str(src+":"+p.Name))
					}
				}
			}
		}
	}
	var resources []fhir.Value
	for _, t := range types {
		r := obj(
			f("type", str(t)),
			f("interaction", arr(code("read"), code("vread"), code("update"), code("delete"),
				code("history-instance"), code("history-type"), code("create"), code("search-type"))),
			f("versioning", str("versioned")),
			f("readHistory", fhir.BoolValue(true)),
			f("updateCreate", fhir.BoolValue(true)),
			f("conditionalCreate", fhir.BoolValue(true)),
			f("conditionalRead", str("not-supported")),
			f("conditionalUpdate", fhir.BoolValue(true)),
			f("conditionalDelete", str("single")),
			f("referencePolicy", arr(str("literal"), str("logical"))),
		)
		if params != nil {
			var sp []fhir.Value
			incs := []fhir.Value{str("*")}
			for _, p := range params(t) {
				e := obj(f("name", str(p.Name)))
				if p.Definition != "" {
					e.Set("definition", str(p.Definition))
				}
				e.Set("type", str(p.Type))
				if doc := paramDocs[p.Type]; doc != "" {
					e.Set("documentation", str(doc))
				}
				sp = append(sp, e)
				if p.Type == "reference" {
					incs = append(incs, str(t+":"+p.Name))
				}
			}
			if len(sp) > 0 {
				r.Set("searchInclude", arr(incs...))
				if len(revs[t]) > 0 {
					r.Set("searchRevInclude", arr(revs[t]...))
				}
				r.Set("searchParam", arr(sp...))
			}
		}
		if t == "Patient" {
			r.Set("operation", arr(obj(f("name", str("everything")), f("definition", str("http://hl7.org/fhir/OperationDefinition/Patient-everything")))))
		}
		resources = append(resources, r)
	}
	rest := obj(
		f("mode", str("server")),
		f("documentation", str("Every request but this CapabilityStatement needs a SMART access token with its DPoP proof (Authorization: DPoP <token>), or an operator token (Authorization: Bearer <token>, ehrvault token create). "+
			"Search takes the listed parameters with their modifiers (:missing on all; :exact and :contains on strings; :not and :text on tokens; :[type] on references), "+
			"OR by commas, AND by repeating, the prefixes eq ne gt lt ge le sa eb ap on dates, numbers and quantities, chains one level deep (subject:Patient.name), _has, "+
			"_include and _revinclude (with :iterate), _sort by date, number and quantity parameters and _lastUpdated, _count, _summary, _elements and _total; "+
			"compartment searches (Patient/[id]/[type]) and Patient/[id]/$everything. Pages are continued by sealed cursors (the next link). "+
			"Unknown parameters are left out and reported in an OperationOutcome entry unless Prefer: handling=strict asks for a 400.")),
		f("security", security(oauth)),
		f("resource", arr(resources...)),
		f("interaction", arr(code("transaction"), code("batch"), code("history-system"))),
		f("searchParam", arr(
			obj(f("name", str("_count")), f("type", str("number")), f("documentation", str("page size, 0 to 1000 (default 50); 0 gives the total alone"))),
			obj(f("name", str("_sort")), f("type", str("string")), f("documentation", str("date, number and quantity parameters and _lastUpdated, several keys, '-' for descending"))),
			obj(f("name", str("_total")), f("type", str("token")), f("documentation", str("none (the default), estimate or accurate: both count exactly"))),
			obj(f("name", str("_summary")), f("type", str("token")), f("documentation", str("true, text, data, count or false"))),
			obj(f("name", str("_elements")), f("type", str("string")), f("documentation", str("top-level elements to return; id, meta and the mandatory and modifier elements always come"))),
		)),
	)
	cs := obj(
		f("resourceType", str("CapabilityStatement")),
		f("status", str("active")),
		f("date", str(records.FormatInstant(now))),
		f("publisher", str("ehrvault")),
		f("kind", str("instance")),
		f("software", obj(f("name", str("ehrvault")), f("version", str(version)))),
		f("implementation", obj(f("description", str("ehrvault: a FHIR R4 server whose stored records are encrypted per patient")))),
		f("fhirVersion", str("4.0.1")),
		f("format", arr(str("json"), str("application/fhir+json"))),
		f("rest", arr(rest)),
	)
	return fhir.Marshal(&cs)
}

// OAuthURIs are the SMART authorization server's endpoints, for the
// CapabilityStatement's security element.
type OAuthURIs struct {
	Authorize, Token, Introspect, Revoke string
}

// security describes how clients authenticate: SMART on FHIR (with the
// oauth-uris extension SMART App Launch defines) when oauth is set.
func security(oauth *OAuthURIs) fhir.Value {
	str := fhir.StringValue
	obj := func(fields ...fhir.Field) fhir.Value { return fhir.Value{Kind: fhir.Object, Fields: fields} }
	f := func(name string, v fhir.Value) fhir.Field { return fhir.Field{Name: name, Value: v} }
	arr := func(items ...fhir.Value) fhir.Value { return fhir.Value{Kind: fhir.Array, Items: items} }
	if oauth == nil {
		return obj(
			f("cors", fhir.BoolValue(false)),
			f("description", str("Bearer tokens issued by the operator with `ehrvault token create`; stored only as keyed hashes; they expire.")),
		)
	}
	uri := func(name, u string) fhir.Value { return obj(f("url", str(name)), f("valueUri", str(u))) }
	return obj(
		f("extension", arr(obj(
			f("extension", arr(uri("authorize", oauth.Authorize), uri("token", oauth.Token), uri("introspect", oauth.Introspect), uri("revoke", oauth.Revoke))),
			f("url", str("http://fhir-registry.smarthealthit.org/StructureDefinition/oauth-uris")),
		))),
		f("cors", fhir.BoolValue(false)),
		f("service", arr(obj(f("coding", arr(obj(
			f("system", str("http://terminology.hl7.org/CodeSystem/restful-security-service")),
			f("code", str("SMART-on-FHIR")),
		)))))),
		f("description", str("SMART App Launch v2 (/.well-known/smart-configuration): DPoP-bound access tokens for apps (authorization code with PKCE S256), backend services (client_credentials, private_key_jwt) and connected devices; operator bearer tokens for scripts.")),
	)
}
