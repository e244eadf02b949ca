package search

import (
	"fmt"
	"slices"
	"strings"
	"sync"

	"github.com/ehrvault/ehrvault/internal/fhir"
	"github.com/ehrvault/ehrvault/internal/fhirpath"
)

// paramDef is one SearchParameter of the specification, as generated into
// params_gen.go.
type paramDef struct {
	id        string   // SearchParameter.id ("clinical-patient")
	code      string   // the name used in queries ("patient")
	url       string   // canonical URL
	typ       string   // token, reference, uri, string, date, …
	base      []string // resource types it applies to ("Resource": all)
	expr      string   // FHIRPath expression; empty for a few special ones
	target    []string // resource types a reference parameter may point to
	component []componentDef
}

// componentDef is one component of a composite SearchParameter.
type componentDef struct {
	definition string // canonical URL of the component's SearchParameter
	expr       string // FHIRPath, relative to the composite's expression
}

// compartmentDef names the parameters that put a resource type in the
// patient compartment.
type compartmentDef struct {
	typ    string
	params []string
}

// paramKind is the kind of a search parameter this package indexes.
type paramKind uint8

const (
	kindToken paramKind = iota + 1
	kindReference
	kindURI
	kindString
	kindDate
	kindNumber
	kindQuantity
)

var kinds = map[string]paramKind{
	"token": kindToken, "reference": kindReference, "uri": kindURI,
	"string": kindString, "date": kindDate, "number": kindNumber, "quantity": kindQuantity,
}

// param is a supported search parameter compiled for one resource type.
type param struct {
	code string
	kind paramKind
	def  *paramDef
	expr *fhirpath.Expr // specialized to the type
	// codeSets lists the value sets of required bindings that the
	// expression's code elements have, for their implicit systems.
	codeSets []string
	// parts, when set, are parameters of the same type whose expressions
	// together make this one's (Observation's combo-code is code |
	// component-code): it is not indexed itself, and a query of it asks
	// for any of its parts.
	parts  []*param
	prefix []byte // lp(type) ‖ lp(code): the start of every token message
}

// typeTable is what the indexer knows of one resource type.
type typeTable struct {
	params []*param          // supported parameters, in definition order
	byCode map[string]*param // the same, by code
	// owner holds the compiled compartment parameters in the order Owner
	// tries them; nil for types outside the patient compartment.
	owner []*fhirpath.Expr
}

// ownerPreference lists the compartment parameters Owner tries first, in
// this order; the others follow in definition order.
var ownerPreference = []string{"patient", "subject", "beneficiary", "individual"}

var (
	tablesOnce sync.Once
	tables     map[string]*typeTable
)

// typeTables returns the compiled tables of every R4 resource type. They
// are built once per process and never change. The expressions come from
// the specification and the tests compile all of them, so a failure here
// is a broken invariant.
func typeTables() map[string]*typeTable {
	tablesOnce.Do(func() {
		t, err := compileTables()
		if err != nil {
			panic("search: " + err.Error())
		}
		tables = t
	})
	return tables
}

func compileTables() (map[string]*typeTable, error) {
	types := fhir.ResourceTypes()
	out := make(map[string]*typeTable, len(types))
	for _, typ := range types {
		out[typ] = &typeTable{byCode: map[string]*param{}}
	}
	parsed := make(map[string]*fhirpath.Expr)
	compile := func(p *paramDef, typ string) (*fhirpath.Expr, error) {
		e, ok := parsed[p.expr]
		if !ok {
			var err error
			if e, err = fhirpath.Parse(p.expr); err != nil {
				return nil, fmt.Errorf("%s: %w", p.id, err)
			}
			parsed[p.expr] = e
		}
		e, err := e.For(typ)
		if err != nil {
			return nil, fmt.Errorf("%s for %s: %w", p.id, typ, err)
		}
		return e, nil
	}
	for i := range specParams {
		p := &specParams[i]
		kind := kinds[p.typ]
		if kind == 0 || p.expr == "" {
			continue
		}
		for _, typ := range appliesTo(p, types) {
			e, err := compile(p, typ)
			if err != nil {
				return nil, err
			}
			if e.Empty() {
				continue // no path of the expression starts at typ
			}
			tt := out[typ]
			if tt.byCode[p.code] != nil {
				return nil, fmt.Errorf("%s: a second parameter %s for %s", p.id, p.code, typ)
			}
			pp := &param{code: p.code, kind: kind, def: p, expr: e}
			if kind == kindToken {
				pp.codeSets = codeBindings(p.expr, typ)
			}
			pp.prefix = appendLP(appendLP(nil, typ), p.code)
			tt.params = append(tt.params, pp)
			tt.byCode[p.code] = pp
		}
	}
	for typ, tt := range out {
		findUnions(typ, tt)
	}
	for _, c := range patientCompartment {
		tt := out[c.typ]
		if tt == nil {
			return nil, fmt.Errorf("compartment: %s is not a resource type", c.typ)
		}
		for _, code := range ownerOrder(c.params) {
			p := tt.byCode[code]
			if p == nil || p.kind != kindReference {
				return nil, fmt.Errorf("compartment: %s has no reference parameter %s", c.typ, code)
			}
			tt.owner = append(tt.owner, p.expr)
		}
	}
	return out, nil
}

// ownerOrder returns params in the order Owner tries them.
func ownerOrder(params []string) []string {
	var out []string
	for _, pref := range ownerPreference {
		if slices.Contains(params, pref) {
			out = append(out, pref)
		}
	}
	for _, p := range params {
		if !slices.Contains(ownerPreference, p) {
			out = append(out, p)
		}
	}
	return out
}

// appliesTo returns the resource types p is a parameter of: its bases,
// with Resource standing for every type and DomainResource for every type
// but Binary, Bundle and Parameters.
func appliesTo(p *paramDef, types []string) []string {
	var out []string
	for _, b := range p.base {
		switch b {
		case "Resource":
			return types
		case "DomainResource":
			for _, t := range types {
				if t != "Binary" && t != "Bundle" && t != "Parameters" {
					out = append(out, t)
				}
			}
		default:
			if fhir.IsResourceType(b) {
				out = append(out, b)
			}
		}
	}
	return out
}

// codeBindings returns the value sets of the required bindings of the code
// elements that expr reaches from typ by plain paths (Type.a.b, in a union
// or not): a code element's system is implicit in its binding.
func codeBindings(expr, typ string) []string {
	var out []string
	for _, part := range strings.Split(expr, "|") {
		path := strings.Trim(strings.TrimSpace(part), "()")
		rest, ok := strings.CutPrefix(path, typ+".")
		if !ok {
			continue
		}
		t := fhir.Type(typ)
		var e *fhir.ElementDef
		for _, name := range strings.Split(rest, ".") {
			if t == nil || !isIdent(name) {
				e = nil
				break
			}
			var code string
			if e, code = t.Element(name); e == nil {
				break
			}
			t = fhir.Type(code)
		}
		if e != nil && t != nil && t.Name == "code" && e.Binding.Strength == "required" && e.Binding.ValueSet != "" && !slices.Contains(out, e.Binding.ValueSet) {
			out = append(out, e.Binding.ValueSet)
		}
	}
	return out
}

func isIdent(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_') {
			return false
		}
	}
	return true
}

// findUnions marks the parameters of a type whose expression, for that
// type, is the union of the expressions of others of the same kind.
func findUnions(typ string, tt *typeTable) {
	bySingle := map[string]*param{}
	for _, p := range tt.params {
		if pieces := ownPieces(p.def.expr, typ); len(pieces) == 1 {
			bySingle[pieces[0]] = p
		}
	}
	for _, p := range tt.params {
		pieces := ownPieces(p.def.expr, typ)
		if len(pieces) < 2 {
			continue
		}
		var parts []*param
		for _, piece := range pieces {
			q := bySingle[piece]
			if q == nil || q.kind != p.kind {
				parts = nil
				break
			}
			parts = append(parts, q)
		}
		p.parts = parts
	}
}

// ownPieces returns the pieces of a union expression that start at typ.
// Any piece that is not a plain path from typ makes it nil: the expression
// is then not a union of plain parts.
func ownPieces(expr, typ string) []string {
	var out []string
	for _, piece := range strings.Split(expr, "|") {
		piece = strings.TrimSpace(piece)
		if strings.HasPrefix(piece, "(") && strings.HasSuffix(piece, ")") {
			piece = strings.TrimSpace(piece[1 : len(piece)-1])
		}
		if !strings.HasPrefix(piece, typ+".") {
			continue
		}
		// A path, and perhaps a cast: Observation.value as Quantity.
		path, cast, _ := strings.Cut(piece[len(typ)+1:], " as ")
		for _, name := range strings.Split(path, ".") {
			if !isIdent(name) {
				return nil
			}
		}
		if cast != "" && !isIdent(cast) {
			return nil
		}
		out = append(out, piece)
	}
	return out
}
