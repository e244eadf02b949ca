package fhir

import (
	"regexp"
	"sort"
	"strings"
	"sync"
)

// TypeKind says what sort of FHIR type a TypeDef describes.
type TypeKind uint8

// The kinds of FHIR types.
const (
	KindPrimitive TypeKind = iota + 1 // boolean, string, date, …
	KindComplex                       // HumanName, Quantity, Reference, …
	KindResource                      // Patient, Observation, … (and the abstract Resource, DomainResource)
	KindBackbone                      // an element with children defined inline: Patient.contact
)

// TypeDef is one FHIR type compiled from its StructureDefinition. Backbone
// elements become types of their own, named by their path ("Patient.contact").
type TypeDef struct {
	Name     string
	Kind     TypeKind
	Abstract bool
	// Elements are the type's child elements in specification order,
	// inherited ones included (the snapshot), so that output in this order
	// is the order the specification prints.
	Elements []ElementDef
	// JSON is the JSON kind a primitive's value takes (String, Number or
	// Bool); zero for other kinds.
	JSON Kind
	// Pattern is the regular expression the specification gives for a
	// primitive's value (anchored when compiled); empty when there is none.
	Pattern string

	byName map[string]int // JSON member name (choice names expanded) -> index in Elements
	choice map[string]string
	re     *regexp.Regexp
}

// ElementDef is one child element of a type.
type ElementDef struct {
	// Name is the element's JSON name; for a choice element "value[x]" it is
	// "value" and the JSON names are "value" + the capitalized type code.
	Name string
	// Path is the element's path in the specification ("Observation.value[x]").
	Path   string
	Min    int
	Max    int // -1 means unbounded ("*")
	Choice bool
	Types  []TypeRef
	// Binding is the element's terminology binding; Strength is "" when
	// the element is not bound.
	Binding  Binding
	Summary  bool // part of the _summary=true view
	Modifier bool // isModifier
}

// Repeats reports whether the element takes a JSON array.
func (e *ElementDef) Repeats() bool { return e.Max != 1 && e.Max != 0 }

// TypeRef is one type an element may take.
type TypeRef struct {
	// Code names a TypeDef: a primitive ("date"), complex type
	// ("Reference"), resource ("Resource" for contained resources) or
	// backbone type ("Patient.contact").
	Code string
	// Targets lists the resource types a Reference or canonical may point
	// to; empty means any.
	Targets []string
}

// Binding is an element's terminology binding.
type Binding struct {
	Strength string // required, extensible, preferred, example
	ValueSet string // canonical URL without a version
}

var (
	modelOnce sync.Once
	typeIndex map[string]*TypeDef
	resources []string
)

func model() map[string]*TypeDef {
	modelOnce.Do(func() {
		typeIndex = make(map[string]*TypeDef, len(generatedTypes))
		for i := range generatedTypes {
			t := &generatedTypes[i]
			t.byName = make(map[string]int, len(t.Elements))
			t.choice = make(map[string]string)
			for j := range t.Elements {
				e := &t.Elements[j]
				e.Path = t.Name + "." + e.Name
				if e.Choice {
					e.Path += "[x]"
				}
				if !e.Choice {
					t.byName[e.Name] = j
					continue
				}
				for _, tr := range e.Types {
					jn := e.Name + strings.ToUpper(tr.Code[:1]) + tr.Code[1:]
					t.byName[jn] = j
					t.choice[jn] = tr.Code
				}
			}
			if t.Pattern != "" {
				t.re = regexp.MustCompile(`\A(?:` + t.Pattern + `)\z`)
			}
			typeIndex[t.Name] = t
			if t.Kind == KindResource && !t.Abstract {
				resources = append(resources, t.Name)
			}
		}
		sort.Strings(resources)
	})
	return typeIndex
}

// Type returns the TypeDef named name, or nil if there is none.
func Type(name string) *TypeDef { return model()[name] }

// ResourceTypes returns the names of every concrete R4 resource type, sorted.
func ResourceTypes() []string {
	model()
	return append([]string(nil), resources...)
}

// IsResourceType reports whether name is a concrete R4 resource type.
func IsResourceType(name string) bool {
	t := Type(name)
	return t != nil && t.Kind == KindResource && !t.Abstract
}

// Element returns the element that the JSON member name stands for and, for
// a choice element, the type code the name selects ("valueQuantity" gives
// value[x] and "Quantity"). It returns nil when the type has no such member.
// A leading underscore (a primitive's extensions) is not understood here.
func (t *TypeDef) Element(name string) (*ElementDef, string) {
	model()
	i, ok := t.byName[name]
	if !ok {
		return nil, ""
	}
	e := &t.Elements[i]
	if e.Choice {
		return e, t.choice[name]
	}
	return e, e.Types[0].Code
}

// MatchString reports whether s is a valid lexical form of the primitive
// type t (always true for types without a pattern).
func (t *TypeDef) MatchString(s string) bool {
	model()
	if t.re == nil {
		return true
	}
	return t.re.MatchString(s)
}

// ValueSetDef is a value set of a required binding, expanded from the
// definitions: the codes it holds, per code system.
type ValueSetDef struct {
	URL      string
	Includes []CodeSet
}

// CodeSet is the codes of one code system in a value set, sorted.
type CodeSet struct {
	System string
	Codes  []string
}
