// Command gen compiles the FHIR R4 StructureDefinitions and the value sets
// of their required bindings into Go tables for package fhir.
//
// Usage (see internal/fhir/doc.go for the go:generate line):
//
//	go run ./gen -spec ../../../shared/fhir-r4 -o model_gen.go
//
// It reads profiles-types.json and profiles-resources.json and writes one
// TypeDef per primitive, complex and resource type (the abstract Element,
// BackboneElement, Resource and DomainResource included) and one per
// backbone element, named by its path ("Patient.contact"). Each type lists
// its elements from the snapshot, so inherited elements are there too.
//
// From valuesets.json and v3-codesystems.json it expands every value set
// that a required binding names, when the expansion can be known from the
// definitions: whole code systems defined there, and enumerated concepts.
// Value sets that need an outside terminology (UCUM, BCP 13 mime types, ISO
// 4217) are left out, and their bindings are not checked.
//
// It leaves out what the Medplum copy of the definitions added to R4 4.0.1:
// the R4B resource SubscriptionStatus (see ../shared/fhir-r4/README.md).
// The logical model MetadataResource and the constraint profiles
// (SimpleQuantity, MoneyQuantity) are not types of their own.
package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"go/format"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
)

// notR4Types lists StructureDefinitions that are not R4 4.0.1 types.
var notR4Types = map[string]bool{"SubscriptionStatus": true}

func main() {
	spec := flag.String("spec", "../../../shared/fhir-r4", "directory holding the FHIR R4 definitions")
	out := flag.String("o", "model_gen.go", "output file")
	flag.Parse()
	src, err := generate(*spec)
	if err != nil {
		fmt.Fprintf(os.Stderr, "gen: %v\n", err)
		os.Exit(1)
	}
	if err := os.WriteFile(*out, src, 0o644); err != nil {
		fmt.Fprintf(os.Stderr, "gen: %v\n", err)
		os.Exit(1)
	}
}

type extension struct {
	URL         string `json:"url"`
	ValueURL    string `json:"valueUrl"`
	ValueString string `json:"valueString"`
}

type elementType struct {
	Code          string      `json:"code"`
	TargetProfile []string    `json:"targetProfile"`
	Extension     []extension `json:"extension"`
}

type element struct {
	Path             string        `json:"path"`
	Min              int           `json:"min"`
	Max              string        `json:"max"`
	Type             []elementType `json:"type"`
	ContentReference string        `json:"contentReference"`
	IsSummary        bool          `json:"isSummary"`
	IsModifier       bool          `json:"isModifier"`
	Binding          *struct {
		Strength string `json:"strength"`
		ValueSet string `json:"valueSet"`
	} `json:"binding"`
}

type structureDefinition struct {
	ResourceType string `json:"resourceType"`
	Name         string `json:"name"`
	Type         string `json:"type"`
	Kind         string `json:"kind"`
	Abstract     bool   `json:"abstract"`
	Derivation   string `json:"derivation"`
	Snapshot     struct {
		Element []element `json:"element"`
	} `json:"snapshot"`
}

const (
	extFHIRType = "http://hl7.org/fhir/StructureDefinition/structuredefinition-fhir-type"
	extRegex    = "http://hl7.org/fhir/StructureDefinition/regex"
	sdPrefix    = "http://hl7.org/fhir/StructureDefinition/"
)

// typeDef mirrors fhir.TypeDef in the generator.
type typeDef struct {
	name     string
	kind     string // the fhir.TypeKind constant
	abstract bool
	json     string // the fhir.Kind constant of a primitive's value
	pattern  string
	elements []elementDef
}

type elementDef struct {
	name     string
	min, max int
	choice   bool
	types    []typeRef
	strength string
	valueSet string
	summary  bool
	modifier bool
}

type typeRef struct {
	code    string
	targets []string
}

// generate returns the gofmt'ed source of model_gen.go.
func generate(spec string) ([]byte, error) {
	var defs []structureDefinition
	for _, f := range []string{"profiles-types.json", "profiles-resources.json"} {
		d, err := readDefinitions(filepath.Join(spec, f))
		if err != nil {
			return nil, err
		}
		defs = append(defs, d...)
	}
	var types []*typeDef
	for _, sd := range defs {
		if notR4Types[sd.Name] || sd.Derivation == "constraint" || sd.Kind == "logical" {
			continue
		}
		ts, err := compile(sd)
		if err != nil {
			return nil, err
		}
		types = append(types, ts...)
	}
	sort.Slice(types, func(i, j int) bool { return types[i].name < types[j].name })
	known := map[string]bool{}
	for _, t := range types {
		if known[t.name] {
			return nil, fmt.Errorf("type %s is defined twice", t.name)
		}
		known[t.name] = true
	}
	required := map[string]bool{}
	for _, t := range types {
		for _, e := range t.elements {
			for _, tr := range e.types {
				if !known[tr.code] {
					return nil, fmt.Errorf("%s.%s: type %s is not defined", t.name, e.name, tr.code)
				}
			}
			if e.strength == "required" && e.valueSet != "" {
				required[e.valueSet] = true
			}
		}
	}
	vsets, err := expandValueSets(spec, required)
	if err != nil {
		return nil, err
	}
	return render(types, vsets)
}

func readDefinitions(path string) ([]structureDefinition, error) {
	var bundle struct {
		Entry []struct {
			Resource json.RawMessage `json:"resource"`
		} `json:"entry"`
	}
	if err := readJSON(path, &bundle); err != nil {
		return nil, err
	}
	var out []structureDefinition
	for i, e := range bundle.Entry {
		var head struct {
			ResourceType string `json:"resourceType"`
		}
		if err := json.Unmarshal(e.Resource, &head); err != nil {
			return nil, fmt.Errorf("%s: entry %d: %w", filepath.Base(path), i, err)
		}
		if head.ResourceType != "StructureDefinition" {
			continue
		}
		var sd structureDefinition
		if err := json.Unmarshal(e.Resource, &sd); err != nil {
			return nil, fmt.Errorf("%s: entry %d: %w", filepath.Base(path), i, err)
		}
		if len(sd.Snapshot.Element) == 0 {
			return nil, fmt.Errorf("%s: %s has no snapshot", filepath.Base(path), sd.Name)
		}
		out = append(out, sd)
	}
	return out, nil
}

// compile turns one StructureDefinition into its type and the types of its
// backbone elements.
func compile(sd structureDefinition) ([]*typeDef, error) {
	root := sd.Snapshot.Element[0].Path
	if root != sd.Type {
		return nil, fmt.Errorf("%s: snapshot starts at %s", sd.Name, root)
	}
	kind := map[string]string{
		"primitive-type": "KindPrimitive",
		"complex-type":   "KindComplex",
		"resource":       "KindResource",
	}[sd.Kind]
	if kind == "" {
		return nil, fmt.Errorf("%s: unknown kind %q", sd.Name, sd.Kind)
	}
	byPath := map[string]*typeDef{}
	top := &typeDef{name: root, kind: kind, abstract: sd.Abstract}
	byPath[root] = top
	out := []*typeDef{top}
	for _, el := range sd.Snapshot.Element[1:] {
		i := strings.LastIndexByte(el.Path, '.')
		if i < 0 {
			return nil, fmt.Errorf("%s: element %s outside the type", sd.Name, el.Path)
		}
		parent := byPath[el.Path[:i]]
		if parent == nil {
			return nil, fmt.Errorf("%s: element %s has no parent", sd.Name, el.Path)
		}
		name := el.Path[i+1:]
		if kind == "KindPrimitive" && parent == top && name == "value" {
			// The primitive's value is the JSON value itself.
			if len(el.Type) != 1 {
				return nil, fmt.Errorf("%s.value: %d types", root, len(el.Type))
			}
			top.json = jsonKind(root)
			for _, x := range el.Type[0].Extension {
				if x.URL == extRegex {
					top.pattern = x.ValueString
				}
			}
			continue
		}
		e := elementDef{
			name:     name,
			min:      el.Min,
			summary:  el.IsSummary,
			modifier: el.IsModifier,
		}
		if el.Max == "*" {
			e.max = -1
		} else {
			n, err := strconv.Atoi(el.Max)
			if err != nil {
				return nil, fmt.Errorf("%s: max %q", el.Path, el.Max)
			}
			e.max = n
		}
		if n, ok := strings.CutSuffix(name, "[x]"); ok {
			e.name, e.choice = n, true
		}
		if el.Binding != nil && el.Binding.ValueSet != "" {
			e.strength = el.Binding.Strength
			e.valueSet, _, _ = strings.Cut(el.Binding.ValueSet, "|")
		}
		switch {
		case el.ContentReference != "":
			ref, ok := strings.CutPrefix(el.ContentReference, "#")
			if !ok {
				return nil, fmt.Errorf("%s: contentReference %q", el.Path, el.ContentReference)
			}
			e.types = []typeRef{{code: ref}}
		case len(el.Type) == 1 && (el.Type[0].Code == "BackboneElement" || el.Type[0].Code == "Element") && !e.choice && parent != nil && hasChildren(sd, el.Path):
			bb := &typeDef{name: el.Path, kind: "KindBackbone"}
			byPath[el.Path] = bb
			out = append(out, bb)
			e.types = []typeRef{{code: el.Path}}
		default:
			for _, t := range el.Type {
				tr := typeRef{code: t.Code}
				if strings.HasPrefix(t.Code, "http://hl7.org/fhirpath/System.") {
					tr.code = ""
					for _, x := range t.Extension {
						if x.URL == extFHIRType {
							tr.code = x.ValueURL
						}
					}
					if tr.code == "" && t.Code == "http://hl7.org/fhirpath/System.String" {
						tr.code = "string" // xhtml.id says no more
					}
					if tr.code == "" {
						return nil, fmt.Errorf("%s: system type %s without a FHIR type", el.Path, t.Code)
					}
				}
				// Resource.id is of type id (the narrative of the
				// specification says so; the snapshot says string).
				if kind == "KindResource" && parent == top && name == "id" {
					tr.code = "id"
				}
				for _, p := range t.TargetProfile {
					if target, ok := strings.CutPrefix(p, sdPrefix); ok {
						if !notR4Types[target] {
							tr.targets = append(tr.targets, target)
						}
					}
				}
				e.types = append(e.types, tr)
			}
		}
		if len(e.types) == 0 {
			return nil, fmt.Errorf("%s: no type", el.Path)
		}
		parent.elements = append(parent.elements, e)
	}
	return out, nil
}

// hasChildren reports whether the snapshot defines elements under path.
func hasChildren(sd structureDefinition, path string) bool {
	for _, el := range sd.Snapshot.Element {
		if strings.HasPrefix(el.Path, path+".") {
			return true
		}
	}
	return false
}

// jsonKind is the JSON kind of a primitive type's values (FHIR JSON, 4.0.1
// section 2.6.2: booleans are JSON booleans, the integer and decimal types
// JSON numbers, everything else a string).
func jsonKind(name string) string {
	switch name {
	case "boolean":
		return "Bool"
	case "integer", "decimal", "positiveInt", "unsignedInt":
		return "Number"
	}
	return "String"
}

type codeSystem struct {
	ResourceType string    `json:"resourceType"`
	URL          string    `json:"url"`
	Content      string    `json:"content"`
	Concept      []concept `json:"concept"`
}

type concept struct {
	Code    string    `json:"code"`
	Concept []concept `json:"concept"`
}

type valueSet struct {
	ResourceType string `json:"resourceType"`
	URL          string `json:"url"`
	Compose      *struct {
		Include []include `json:"include"`
		Exclude []include `json:"exclude"`
	} `json:"compose"`
}

type include struct {
	System   string                  `json:"system"`
	Concept  []struct{ Code string } `json:"concept"`
	Filter   []json.RawMessage       `json:"filter"`
	ValueSet []string                `json:"valueSet"`
}

// vsDef is an expanded value set: codes per code system.
type vsDef struct {
	url     string
	systems []string
	codes   map[string]map[string]bool // system -> codes
}

// errOpen says a value set cannot be expanded from the definitions alone.
var errOpen = errors.New("needs an outside terminology")

// expandValueSets expands the value sets in urls that the definitions
// can expand, sorted by URL.
func expandValueSets(spec string, urls map[string]bool) ([]*vsDef, error) {
	systems := map[string]*codeSystem{}
	sets := map[string]*valueSet{}
	for _, f := range []string{"valuesets.json", "v3-codesystems.json"} {
		var bundle struct {
			Entry []struct {
				Resource json.RawMessage `json:"resource"`
			} `json:"entry"`
		}
		if err := readJSON(filepath.Join(spec, f), &bundle); err != nil {
			return nil, err
		}
		for i, e := range bundle.Entry {
			var head struct {
				ResourceType string `json:"resourceType"`
			}
			if err := json.Unmarshal(e.Resource, &head); err != nil {
				return nil, fmt.Errorf("%s: entry %d: %w", f, i, err)
			}
			switch head.ResourceType {
			case "CodeSystem":
				var cs codeSystem
				if err := json.Unmarshal(e.Resource, &cs); err != nil {
					return nil, fmt.Errorf("%s: entry %d: %w", f, i, err)
				}
				if _, dup := systems[cs.URL]; !dup {
					systems[cs.URL] = &cs
				}
			case "ValueSet":
				var vs valueSet
				if err := json.Unmarshal(e.Resource, &vs); err != nil {
					return nil, fmt.Errorf("%s: entry %d: %w", f, i, err)
				}
				if _, dup := sets[vs.URL]; !dup {
					sets[vs.URL] = &vs
				}
			}
		}
	}
	var out []*vsDef
	for url := range urls {
		d, err := expand(url, sets, systems, 0)
		if errors.Is(err, errOpen) {
			continue
		}
		if err != nil {
			return nil, err
		}
		out = append(out, d)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].url < out[j].url })
	return out, nil
}

func expand(url string, sets map[string]*valueSet, systems map[string]*codeSystem, depth int) (*vsDef, error) {
	if depth > 8 {
		return nil, fmt.Errorf("value set %s: imports nest too deeply", url)
	}
	vs := sets[url]
	if vs == nil || vs.Compose == nil {
		return nil, errOpen
	}
	d := &vsDef{url: url, codes: map[string]map[string]bool{}}
	add := func(system, code string, on bool) {
		m := d.codes[system]
		if m == nil {
			m = map[string]bool{}
			d.codes[system] = m
		}
		if on {
			m[code] = true
		} else {
			delete(m, code)
		}
	}
	apply := func(inc include, on bool) error {
		if len(inc.Filter) > 0 {
			return errOpen
		}
		for _, imp := range inc.ValueSet {
			sub, err := expand(strings.SplitN(imp, "|", 2)[0], sets, systems, depth+1)
			if err != nil {
				return err
			}
			for sys, codes := range sub.codes {
				for c := range codes {
					add(sys, c, on)
				}
			}
		}
		if inc.System == "" {
			return nil
		}
		if len(inc.Concept) > 0 {
			for _, c := range inc.Concept {
				add(inc.System, c.Code, on)
			}
			return nil
		}
		cs := systems[inc.System]
		if cs == nil || cs.Content != "complete" {
			return errOpen
		}
		var walk func([]concept)
		walk = func(cs []concept) {
			for _, c := range cs {
				add(inc.System, c.Code, on)
				walk(c.Concept)
			}
		}
		walk(cs.Concept)
		return nil
	}
	for _, inc := range vs.Compose.Include {
		if err := apply(inc, true); err != nil {
			return nil, err
		}
	}
	for _, exc := range vs.Compose.Exclude {
		if err := apply(exc, false); err != nil {
			return nil, err
		}
	}
	for sys := range d.codes {
		d.systems = append(d.systems, sys)
	}
	sort.Strings(d.systems)
	return d, nil
}

func render(types []*typeDef, vsets []*vsDef) ([]byte, error) {
	var b bytes.Buffer
	b.WriteString("// Code generated by internal/fhir/gen; DO NOT EDIT.\n\npackage fhir\n\n")
	b.WriteString("// generatedTypes are the types of FHIR R4 4.0.1, sorted by name.\n")
	b.WriteString("var generatedTypes = []TypeDef{\n")
	for _, t := range types {
		fmt.Fprintf(&b, "{Name: %q, Kind: %s", t.name, t.kind)
		if t.abstract {
			b.WriteString(", Abstract: true")
		}
		if t.json != "" {
			fmt.Fprintf(&b, ", JSON: %s", t.json)
		}
		if t.pattern != "" {
			fmt.Fprintf(&b, ", Pattern: %s", strconv.Quote(t.pattern))
		}
		b.WriteString(", Elements: []ElementDef{\n")
		for _, e := range t.elements {
			fmt.Fprintf(&b, "{Name: %q", e.name)
			if e.min != 0 {
				fmt.Fprintf(&b, ", Min: %d", e.min)
			}
			fmt.Fprintf(&b, ", Max: %d", e.max)
			if e.choice {
				b.WriteString(", Choice: true")
			}
			b.WriteString(", Types: []TypeRef{")
			for i, tr := range e.types {
				if i > 0 {
					b.WriteString(", ")
				}
				fmt.Fprintf(&b, "{Code: %q", tr.code)
				if len(tr.targets) > 0 {
					b.WriteString(", Targets: []string{")
					for j, x := range tr.targets {
						if j > 0 {
							b.WriteString(", ")
						}
						fmt.Fprintf(&b, "%q", x)
					}
					b.WriteString("}")
				}
				b.WriteString("}")
			}
			b.WriteString("}")
			if e.strength != "" {
				fmt.Fprintf(&b, ", Binding: Binding{Strength: %q, ValueSet: %q}", e.strength, e.valueSet)
			}
			if e.summary {
				b.WriteString(", Summary: true")
			}
			if e.modifier {
				b.WriteString(", Modifier: true")
			}
			b.WriteString("},\n")
		}
		b.WriteString("}},\n")
	}
	b.WriteString("}\n\n")
	b.WriteString("// generatedValueSets are the value sets of required bindings that the\n")
	b.WriteString("// definitions expand, sorted by URL: codes per code system.\n")
	b.WriteString("var generatedValueSets = []ValueSetDef{\n")
	for _, v := range vsets {
		fmt.Fprintf(&b, "{URL: %q, Includes: []CodeSet{\n", v.url)
		for _, sys := range v.systems {
			codes := make([]string, 0, len(v.codes[sys]))
			for c := range v.codes[sys] {
				codes = append(codes, c)
			}
			sort.Strings(codes)
			fmt.Fprintf(&b, "{System: %q, Codes: []string{", sys)
			for i, c := range codes {
				if i > 0 {
					b.WriteString(", ")
				}
				fmt.Fprintf(&b, "%q", c)
			}
			b.WriteString("}},\n")
		}
		b.WriteString("}},\n")
	}
	b.WriteString("}\n")
	src, err := format.Source(b.Bytes())
	if err != nil {
		return nil, fmt.Errorf("format: %w", err)
	}
	return src, nil
}

func readJSON(path string, v any) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	if err := json.Unmarshal(data, v); err != nil {
		return fmt.Errorf("%s: %w", filepath.Base(path), err)
	}
	return nil
}
