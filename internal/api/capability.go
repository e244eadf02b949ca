package api

import (
	"github.com/ehrvault/ehrvault/internal/fhir"
	"github.com/ehrvault/ehrvault/internal/records"
	"time"
)

// SearchParam describes one search parameter a type supports, for the
// CapabilityStatement.
type SearchParam struct {
	Name       string
	Type       string // token, string, reference, …
	Definition string // canonical URL of the SearchParameter
}

// capabilityStatement states exactly what this server implements: every
// R4 resource type with the same interactions, the search parameters the
// search supplies for each, and the system interactions.
func capabilityStatement(version string, now time.Time, params func(typ string) []SearchParam) []byte {
	str := fhir.StringValue
	obj := func(fields ...fhir.Field) fhir.Value { return fhir.Value{Kind: fhir.Object, Fields: fields} }
	f := func(name string, v fhir.Value) fhir.Field { return fhir.Field{Name: name, Value: v} }
	arr := func(items ...fhir.Value) fhir.Value { return fhir.Value{Kind: fhir.Array, Items: items} }
	code := func(c string) fhir.Value { return obj(f("code", str(c))) }

	var resources []fhir.Value
	for _, t := range fhir.ResourceTypes() {
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
			for _, p := range params(t) {
				e := obj(f("name", str(p.Name)))
				if p.Definition != "" {
					e.Set("definition", str(p.Definition))
				}
				e.Set("type", str(p.Type))
				sp = append(sp, e)
			}
			if len(sp) > 0 {
				r.Set("searchParam", arr(sp...))
			}
		}
		resources = append(resources, r)
	}
	rest := obj(
		f("mode", str("server")),
		f("documentation", str("Every request but this CapabilityStatement needs Authorization: Bearer <token> (ehrvault token create). Search supports exact matches on the listed parameters, ANDed by repeating them; results are paged by opaque cursors (_count, next links).")),
		f("security", obj(
			f("cors", fhir.BoolValue(false)),
			f("description", str("Bearer tokens issued by the operator with `ehrvault token create`; stored only as keyed hashes; they expire.")),
		)),
		f("resource", arr(resources...)),
		f("interaction", arr(code("transaction"), code("batch"), code("history-system"))),
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
