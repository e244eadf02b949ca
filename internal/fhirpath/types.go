package fhirpath

import (
	"strings"
	"sync"

	"github.com/ehrvault/ehrvault/internal/fhir"
)

// baseType returns the name of the type t specializes, or "" for the roots
// (Element, Resource). The model does not record derivation, so the R4
// specializations are listed here; TestBaseTypesMatchSpecification checks
// them against the StructureDefinitions.
func baseType(t *fhir.TypeDef) string {
	switch t.Name {
	case "Element", "Resource":
		return ""
	case "code", "id", "markdown":
		return "string"
	case "canonical", "oid", "url", "uuid":
		return "uri"
	case "positiveInt", "unsignedInt":
		return "integer"
	case "Age", "Count", "Distance", "Duration":
		return "Quantity"
	case "Dosage", "ElementDefinition", "MarketingStatus", "Population",
		"ProdCharacteristic", "ProductShelfLife", "SubstanceAmount", "Timing":
		return "BackboneElement"
	case "Binary", "Bundle", "Parameters", "DomainResource":
		return "Resource"
	}
	switch t.Kind {
	case fhir.KindResource:
		return "DomainResource"
	case fhir.KindBackbone:
		return "BackboneElement"
	}
	return "Element"
}

// isType reports whether t is the type named name or specializes it.
func isType(t *fhir.TypeDef, name string) bool {
	for t != nil {
		if t.Name == name {
			return true
		}
		b := baseType(t)
		if b == "" {
			return false
		}
		t = fhir.Type(b)
	}
	return false
}

// systemTypes are the FHIRPath System types a literal can have.
var systemTypes = map[string]bool{
	"Boolean": true, "String": true, "Integer": true, "Decimal": true,
	"Date": true, "DateTime": true, "Time": true, "Quantity": true,
}

// knownType reports whether ts names a type this package can test for.
func knownType(ts typeSpec) bool {
	switch ts.ns {
	case "System":
		return systemTypes[ts.name]
	case "FHIR":
		return fhir.Type(ts.name) != nil
	}
	return fhir.Type(ts.name) != nil || systemTypes[ts.name]
}

// member is what a JSON member name of a type stands for.
type member struct {
	elem string        // the element's name: "value" for valueQuantity
	typ  *fhir.TypeDef // the member's type; nil if the model lacks it
}

// members maps each JSON member name of a type to its element and type.
type members map[string]member

var memberCache sync.Map // *fhir.TypeDef -> members

// membersOf returns the members of t, computing them once per type.
func membersOf(t *fhir.TypeDef) members {
	if m, ok := memberCache.Load(t); ok {
		return m.(members)
	}
	m := make(members, len(t.Elements)+4)
	for i := range t.Elements {
		e := &t.Elements[i]
		if !e.Choice {
			var typ *fhir.TypeDef
			if len(e.Types) > 0 {
				typ = fhir.Type(e.Types[0].Code)
			}
			m[e.Name] = member{elem: e.Name, typ: typ}
			continue
		}
		for _, tr := range e.Types {
			if tr.Code == "" {
				continue
			}
			m[e.Name+strings.ToUpper(tr.Code[:1])+tr.Code[1:]] = member{elem: e.Name, typ: fhir.Type(tr.Code)}
		}
	}
	v, _ := memberCache.LoadOrStore(t, m)
	return v.(members)
}
