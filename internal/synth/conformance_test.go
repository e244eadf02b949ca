package synth

// A structural R4 checker built from the specification's own definitions
// (../shared/fhir-r4, see its README): element names, choice types,
// cardinality, JSON kinds and primitive patterns, codes of required
// bindings, displays of HL7 code systems, and reference target types. It
// checks no invariants and no profiles. It lives in a test because the
// server's validator (internal/fhir) is someone else's; this one exists so
// that the generator's output is checked against the specification itself
// rather than against the generator's idea of it.

import (
	"encoding/json"
	"fmt"
	"os"
	"regexp"
	"sort"
	"strings"
	"sync"
	"testing"

	"github.com/ehrvault/ehrvault/internal/sharedtest"
)

type specElement struct {
	Path             string `json:"path"`
	Min              int    `json:"min"`
	Max              string `json:"max"`
	ContentReference string `json:"contentReference"`
	Type             []struct {
		Code          string   `json:"code"`
		TargetProfile []string `json:"targetProfile"`
		Extension     []struct {
			URL         string `json:"url"`
			ValueString string `json:"valueString"`
			ValueURL    string `json:"valueUrl"`
		} `json:"extension"`
	} `json:"type"`
	Binding *struct {
		Strength string `json:"strength"`
		ValueSet string `json:"valueSet"`
	} `json:"binding"`
}

type specType struct {
	name     string
	kind     string // primitive-type, complex-type, resource
	children map[string][]*specElement
	regex    *regexp.Regexp
}

type codeSystem struct {
	displays map[string]string // code -> display
}

type spec struct {
	types       map[string]*specType
	codeSystems map[string]*codeSystem
	valueSets   map[string]json.RawMessage
	expanded    map[string]map[string]map[string]bool // url -> system -> codes; nil: cannot expand
	mu          sync.Mutex
}

var specOnce struct {
	sync.Once
	s   *spec
	err error
}

// theSpec loads the definitions once per test binary.
func theSpec(t testing.TB) *spec {
	t.Helper()
	dir := sharedtest.Dir(t, "fhir-r4")
	specOnce.Do(func() { specOnce.s, specOnce.err = readSpec(dir) })
	if specOnce.err != nil {
		t.Fatalf("reading the R4 definitions: %v", specOnce.err)
	}
	return specOnce.s
}

func readBundleResources(path string) ([]json.RawMessage, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var b struct {
		Entry []struct {
			Resource json.RawMessage `json:"resource"`
		} `json:"entry"`
	}
	if err := json.Unmarshal(data, &b); err != nil {
		return nil, fmt.Errorf("%s: %v", path, err)
	}
	out := make([]json.RawMessage, len(b.Entry))
	for i, e := range b.Entry {
		out[i] = e.Resource
	}
	return out, nil
}

func readSpec(dir string) (*spec, error) {
	s := &spec{
		types:       map[string]*specType{},
		codeSystems: map[string]*codeSystem{},
		valueSets:   map[string]json.RawMessage{},
		expanded:    map[string]map[string]map[string]bool{},
	}
	for _, f := range []string{"profiles-types.json", "profiles-resources.json"} {
		res, err := readBundleResources(dir + "/" + f)
		if err != nil {
			return nil, err
		}
		for _, raw := range res {
			var head struct {
				ResourceType string `json:"resourceType"`
				Name         string `json:"name"`
				Kind         string `json:"kind"`
				Derivation   string `json:"derivation"`
				FhirVersion  string `json:"fhirVersion"`
			}
			if err := json.Unmarshal(raw, &head); err != nil {
				return nil, err
			}
			if head.ResourceType != "StructureDefinition" || head.Derivation != "specialization" || head.FhirVersion != "4.0.1" {
				continue
			}
			var sd struct {
				Snapshot struct {
					Element []*specElement `json:"element"`
				} `json:"snapshot"`
			}
			if err := json.Unmarshal(raw, &sd); err != nil {
				return nil, err
			}
			t := &specType{name: head.Name, kind: head.Kind, children: map[string][]*specElement{}}
			for _, e := range sd.Snapshot.Element {
				i := strings.LastIndexByte(e.Path, '.')
				if i < 0 {
					continue
				}
				t.children[e.Path[:i]] = append(t.children[e.Path[:i]], e)
				if t.kind == "primitive-type" && e.Path == head.Name+".value" {
					for _, ty := range e.Type {
						for _, x := range ty.Extension {
							if x.URL == "http://hl7.org/fhir/StructureDefinition/regex" {
								t.regex = regexp.MustCompile(`\A(?:` + x.ValueString + `)\z`)
							}
						}
					}
				}
			}
			s.types[head.Name] = t
		}
	}
	for _, f := range []string{"valuesets.json", "v3-codesystems.json"} {
		res, err := readBundleResources(dir + "/" + f)
		if err != nil {
			return nil, err
		}
		for _, raw := range res {
			var head struct {
				ResourceType string `json:"resourceType"`
				URL          string `json:"url"`
			}
			if err := json.Unmarshal(raw, &head); err != nil {
				return nil, err
			}
			switch head.ResourceType {
			case "ValueSet":
				s.valueSets[head.URL] = raw
			case "CodeSystem":
				var cs struct {
					Concept []csConcept `json:"concept"`
				}
				if err := json.Unmarshal(raw, &cs); err != nil {
					return nil, err
				}
				c := &codeSystem{displays: map[string]string{}}
				var walk func([]csConcept)
				walk = func(cc []csConcept) {
					for _, k := range cc {
						c.displays[k.Code] = k.Display
						walk(k.Concept)
					}
				}
				walk(cs.Concept)
				s.codeSystems[head.URL] = c
			}
		}
	}
	if len(s.types) < 150 {
		return nil, fmt.Errorf("only %d types defined", len(s.types))
	}
	return s, nil
}

type csConcept struct {
	Code    string      `json:"code"`
	Display string      `json:"display"`
	Concept []csConcept `json:"concept"`
}

// expand returns the codes of a value set by system, or nil when it uses
// filters or code systems that are not at hand.
func (s *spec) expand(url string) map[string]map[string]bool {
	url, _, _ = strings.Cut(url, "|")
	s.mu.Lock()
	defer s.mu.Unlock()
	if v, ok := s.expanded[url]; ok {
		return v
	}
	s.expanded[url] = nil // cycles expand to nil
	raw, ok := s.valueSets[url]
	if !ok {
		return nil
	}
	var vs struct {
		Compose struct {
			Include []struct {
				System  string `json:"system"`
				Concept []struct {
					Code string `json:"code"`
				} `json:"concept"`
				Filter   []json.RawMessage `json:"filter"`
				ValueSet []string          `json:"valueSet"`
			} `json:"include"`
		} `json:"compose"`
	}
	if json.Unmarshal(raw, &vs) != nil {
		return nil
	}
	out := map[string]map[string]bool{}
	add := func(system, code string) {
		if out[system] == nil {
			out[system] = map[string]bool{}
		}
		out[system][code] = true
	}
	for _, inc := range vs.Compose.Include {
		if len(inc.Filter) > 0 {
			return nil
		}
		for _, u := range inc.ValueSet {
			s.mu.Unlock()
			sub := s.expand(u)
			s.mu.Lock()
			if sub == nil {
				return nil
			}
			for sys, codes := range sub {
				for c := range codes {
					add(sys, c)
				}
			}
		}
		if inc.System == "" {
			continue
		}
		if len(inc.Concept) > 0 {
			for _, c := range inc.Concept {
				add(inc.System, c.Code)
			}
			continue
		}
		cs := s.codeSystems[inc.System]
		if cs == nil {
			return nil
		}
		for c := range cs.displays {
			add(inc.System, c)
		}
	}
	s.expanded[url] = out
	return out
}

// reference is one Reference.reference found while checking, with the
// resource types the element allows.
type reference struct {
	path    string
	value   string
	targets []string // nil: any
}

type checker struct {
	s    *spec
	errs []string
	refs []reference
}

func (c *checker) errorf(format string, args ...any) {
	c.errs = append(c.errs, fmt.Sprintf(format, args...))
}

// checkResource checks one resource (a decoded JSON object).
func (c *checker) checkResource(where string, v any) {
	obj, ok := v.(map[string]any)
	if !ok {
		c.errorf("%s: resource is not an object", where)
		return
	}
	rt, _ := obj["resourceType"].(string)
	t := c.s.types[rt]
	if t == nil || t.kind != "resource" {
		c.errorf("%s: unknown resourceType %q", where, rt)
		return
	}
	c.checkObject(t, rt, where+" "+rt, obj)
}

// child finds the element that JSON member k of path stands for, and the
// type code it selects.
func (t *specType) child(path, k string) (*specElement, string) {
	for _, e := range t.children[path] {
		name := e.Path[len(path)+1:]
		if name == k {
			if len(e.Type) == 0 {
				return e, ""
			}
			return e, e.Type[0].Code
		}
		base, ok := strings.CutSuffix(name, "[x]")
		if !ok || !strings.HasPrefix(k, base) {
			continue
		}
		for _, ty := range e.Type {
			if k == base+strings.ToUpper(ty.Code[:1])+ty.Code[1:] {
				return e, ty.Code
			}
		}
	}
	return nil, ""
}

func (c *checker) checkObject(t *specType, path, where string, obj map[string]any) {
	if len(obj) == 0 {
		c.errorf("%s: empty object", where)
	}
	seen := map[*specElement]bool{}
	keys := make([]string, 0, len(obj))
	for k := range obj {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		val := obj[k]
		if k == "resourceType" && t.kind == "resource" && path == t.name {
			continue
		}
		e, code := t.child(path, k)
		if e == nil {
			c.errorf("%s.%s: no such element in R4", where, k)
			continue
		}
		seen[e] = true
		items, isArray := val.([]any)
		if e.Max == "1" && isArray {
			c.errorf("%s.%s: array where R4 allows one value", where, k)
			continue
		}
		if e.Max != "1" && !isArray {
			c.errorf("%s.%s: single value where R4 wants an array", where, k)
			continue
		}
		if !isArray {
			items = []any{val}
		} else if len(items) == 0 {
			c.errorf("%s.%s: empty array", where, k)
		}
		for i, item := range items {
			w := where + "." + k
			if isArray {
				w = fmt.Sprintf("%s[%d]", w, i)
			}
			c.checkValue(t, e, code, w, item)
		}
	}
	for _, e := range t.children[path] {
		if e.Min > 0 && !seen[e] {
			c.errorf("%s: required element %s missing", where, e.Path)
		}
	}
}

func (c *checker) checkValue(t *specType, e *specElement, code, where string, v any) {
	if v == nil {
		c.errorf("%s: null", where)
		return
	}
	if e.ContentReference != "" {
		obj, ok := v.(map[string]any)
		if !ok {
			c.errorf("%s: want an object", where)
			return
		}
		c.checkObject(t, strings.TrimPrefix(e.ContentReference, "#"), where, obj)
		return
	}
	if strings.HasPrefix(code, "http://hl7.org/fhirpath/System.") {
		code = "string"
		for _, ty := range e.Type {
			for _, x := range ty.Extension {
				if x.URL == "http://hl7.org/fhir/StructureDefinition/structuredefinition-fhir-type" {
					code = x.ValueURL
				}
			}
		}
	}
	switch code {
	case "BackboneElement", "Element":
		obj, ok := v.(map[string]any)
		if !ok {
			c.errorf("%s: want an object", where)
			return
		}
		c.checkObject(t, e.Path, where, obj)
		return
	case "Resource":
		c.checkResource(where, v)
		return
	}
	ct := c.s.types[code]
	if ct == nil {
		c.errorf("%s: unknown type %q", where, code)
		return
	}
	if ct.kind == "primitive-type" {
		c.checkPrimitive(ct, where, v)
		if e.Binding != nil && e.Binding.Strength == "required" && code == "code" {
			if s, ok := v.(string); ok {
				c.checkCode(e.Binding.ValueSet, where, "", s, true)
			}
		}
		return
	}
	obj, ok := v.(map[string]any)
	if !ok {
		c.errorf("%s: %s wants an object", where, code)
		return
	}
	c.checkObject(ct, ct.name, where, obj)
	switch code {
	case "Coding":
		c.checkCoding(e, where, obj)
	case "CodeableConcept":
		codings, _ := obj["coding"].([]any)
		for i, cd := range codings {
			if m, ok := cd.(map[string]any); ok {
				c.checkCoding(e, fmt.Sprintf("%s.coding[%d]", where, i), m)
			}
		}
	case "Reference":
		if ref, ok := obj["reference"].(string); ok {
			var targets []string
			for _, ty := range e.Type {
				for _, tp := range ty.TargetProfile {
					name := strings.TrimPrefix(tp, "http://hl7.org/fhir/StructureDefinition/")
					if name == "Resource" {
						targets = nil
						goto done
					}
					targets = append(targets, name)
				}
			}
		done:
			c.refs = append(c.refs, reference{where, ref, targets})
		}
	}
}

func (c *checker) checkCoding(e *specElement, where string, coding map[string]any) {
	system, _ := coding["system"].(string)
	code, _ := coding["code"].(string)
	display, hasDisplay := coding["display"].(string)
	if cs := c.s.codeSystems[system]; cs != nil && code != "" {
		want, known := cs.displays[code]
		switch {
		case !known && len(cs.displays) > 0:
			c.errorf("%s: code %q is not in %s", where, code, system)
		case known && hasDisplay && want != "" && !strings.EqualFold(want, display):
			c.errorf("%s: display %q of %s|%s should be %q", where, display, system, code, want)
		}
	}
	if e.Binding != nil && e.Binding.Strength == "required" {
		c.checkCode(e.Binding.ValueSet, where, system, code, false)
	}
}

// checkCode checks a code against a required binding. For a plain code
// (anySystem) any system of the value set will do.
func (c *checker) checkCode(vs, where, system, code string, anySystem bool) {
	exp := c.s.expand(vs)
	if exp == nil {
		return
	}
	if anySystem {
		for _, codes := range exp {
			if codes[code] {
				return
			}
		}
		c.errorf("%s: code %q is not in required value set %s", where, code, vs)
		return
	}
	if !exp[system][code] {
		c.errorf("%s: %s|%s is not in required value set %s", where, system, code, vs)
	}
}

var (
	jsonNumberTypes = map[string]bool{"integer": true, "decimal": true, "positiveInt": true, "unsignedInt": true}
)

func (c *checker) checkPrimitive(t *specType, where string, v any) {
	var text string
	switch x := v.(type) {
	case bool:
		if t.name != "boolean" {
			c.errorf("%s: boolean where %s is wanted", where, t.name)
			return
		}
		return
	case json.Number:
		if !jsonNumberTypes[t.name] {
			c.errorf("%s: number where %s is wanted", where, t.name)
			return
		}
		text = x.String()
	case string:
		if t.name == "boolean" || jsonNumberTypes[t.name] {
			c.errorf("%s: string where %s is wanted", where, t.name)
			return
		}
		if x == "" {
			c.errorf("%s: empty string", where)
			return
		}
		if strings.TrimSpace(x) != x {
			c.errorf("%s: leading or trailing white space", where)
		}
		text = x
	default:
		c.errorf("%s: %T where %s is wanted", where, v, t.name)
		return
	}
	if t.regex != nil && !t.regex.MatchString(text) {
		c.errorf("%s: %q is not a valid %s", where, text, t.name)
	}
}

// checkBundle checks a transaction bundle's resources and that every
// reference resolves, within the bundle or among known (from Shared), to
// a resource of a type the element allows. It returns the problems found.
func checkBundle(s *spec, data []byte, known map[string]string) []string {
	c := &checker{s: s}
	dec := json.NewDecoder(strings.NewReader(string(data)))
	dec.UseNumber()
	var bundle map[string]any
	if err := dec.Decode(&bundle); err != nil {
		return []string{"bundle: " + err.Error()}
	}
	c.checkResource("bundle", bundle)
	types := map[string]string{} // fullUrl or Type/id -> type
	for k, v := range known {
		types[k] = v
	}
	entries, _ := bundle["entry"].([]any)
	for _, e := range entries {
		em, _ := e.(map[string]any)
		res, _ := em["resource"].(map[string]any)
		rt, _ := res["resourceType"].(string)
		if fu, ok := em["fullUrl"].(string); ok {
			types[fu] = rt
		}
		if id, ok := res["id"].(string); ok {
			types[rt+"/"+id] = rt
		}
	}
	for _, r := range c.refs {
		got, ok := types[r.value]
		if !ok {
			c.errorf("%s: reference %q resolves to nothing", r.path, r.value)
			continue
		}
		if r.targets != nil && !contains(r.targets, got) {
			c.errorf("%s: reference to a %s where R4 allows %v", r.path, got, r.targets)
		}
	}
	return c.errs
}

func contains(ss []string, s string) bool {
	for _, x := range ss {
		if x == s {
			return true
		}
	}
	return false
}

// sharedTypes returns Type/id -> type for every resource of the Shared
// bundle.
func sharedTypes(t testing.TB, g *Generator) map[string]string {
	t.Helper()
	b, err := g.Shared()
	if err != nil {
		t.Fatalf("Shared() error: %v", err)
	}
	var bundle struct {
		Entry []struct {
			Resource struct {
				ResourceType string `json:"resourceType"`
				ID           string `json:"id"`
			} `json:"resource"`
		} `json:"entry"`
	}
	if err := json.Unmarshal(b, &bundle); err != nil {
		t.Fatalf("Shared(): %v", err)
	}
	m := map[string]string{}
	for _, e := range bundle.Entry {
		m[e.Resource.ResourceType+"/"+e.Resource.ID] = e.Resource.ResourceType
	}
	return m
}

func TestConformsToR4(t *testing.T) {
	t.Parallel()
	s := theSpec(t)
	for _, seed := range []uint64{1, 2} {
		g := New(seed)
		known := sharedTypes(t, g)
		shared, _ := g.Shared()
		for _, e := range checkBundle(s, shared, nil) {
			t.Errorf("seed %d Shared(): %s", seed, e)
		}
		for i := range 25 {
			b, err := g.PatientBundle(i)
			if err != nil {
				t.Fatalf("PatientBundle(%d): %v", i, err)
			}
			errs := checkBundle(s, b, known)
			for j, e := range errs {
				if j == 10 {
					t.Errorf("seed %d PatientBundle(%d): and %d more", seed, i, len(errs)-j)
					break
				}
				t.Errorf("seed %d PatientBundle(%d): %s", seed, i, e)
			}
		}
	}
}

// TestCheckerCatches breaks a generated bundle in ways the checker must
// see, so that TestConformsToR4 cannot pass by checking nothing.
func TestCheckerCatches(t *testing.T) {
	s := theSpec(t)
	g := New(7)
	known := sharedTypes(t, g)
	orig, err := g.PatientBundle(3)
	if err != nil {
		t.Fatal(err)
	}
	if errs := checkBundle(s, orig, known); len(errs) != 0 {
		t.Fatalf("unbroken bundle: %v", errs)
	}
	tests := []struct {
		name string
		old  string // first occurrence is replaced
		new  string
		want string // in some problem
	}{
		{"missing status", `"resourceType":"Observation","id":`, `"resourceType":"Observation","statuz":"final","id":`, "no such element"},
		{"missing required", `"status":"final","category"`, `"category"`, "required element Observation.status missing"},
		{"bad gender", `"gender":"`, `"gender":"x`, "not in required value set"},
		{"bad date", `"birthDate":"`, `"birthDate":"01-`, "not a valid date"},
		{"array for one", `"birthDate":"`, `"birthDate":["1990-01-01"],"x":"`, "array where"},
		{"one for array", `"given":[`, `"given":"Extra","x":[`, "single value"},
		{"wrong choice", `"valueQuantity"`, `"valueQuality"`, "no such element"},
		{"bad clinical status", `"code":"active","display":"Active"`, `"code":"activ","display":"Active"`, "condition-clinical"},
		{"bad display", `"display":"Vital Signs"`, `"display":"Vital Sign"`, "display"},
		{"dangling reference", `"subject":{"reference":"urn:uuid:`, `"subject":{"reference":"urn:uuid:0`, "resolves to nothing"},
		{"wrong target", `"serviceProvider":{"reference":"Organization/`, `"serviceProvider":{"reference":"Practitioner/`, "resolves to nothing"},
		{"number as string", `"frequency":`, `"frequency":"1","x":`, "string where"},
		{"bad decimal", `"valueQuantity":{"value":`, `"valueQuantity":{"value":01`, "bundle:"},
		{"empty string", `"text":"`, `"text":"","x":"`, "empty string"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := strings.Replace(string(orig), tt.old, tt.new, 1)
			if b == string(orig) {
				t.Fatalf("bundle has no %q to break", tt.old)
			}
			errs := checkBundle(s, []byte(b), known)
			for _, e := range errs {
				if strings.Contains(e, tt.want) {
					return
				}
			}
			t.Errorf("checkBundle found %q, want a problem containing %q", errs, tt.want)
		})
	}
	t.Run("wrong reference type", func(t *testing.T) {
		// An Observation's subject pointing at the Coverage.
		var bundle struct {
			Entry []struct {
				FullURL  string `json:"fullUrl"`
				Resource struct {
					ResourceType string `json:"resourceType"`
				} `json:"resource"`
			} `json:"entry"`
		}
		if err := json.Unmarshal(orig, &bundle); err != nil {
			t.Fatal(err)
		}
		var coverage string
		for _, e := range bundle.Entry {
			if e.Resource.ResourceType == "Coverage" {
				coverage = e.FullURL
			}
		}
		b := strings.Replace(string(orig), `"encounter":{"reference":"`, `"encounter":{"reference":"`+coverage+`","x":"`, 1)
		errs := checkBundle(s, []byte(b), known)
		found := false
		for _, e := range errs {
			if strings.Contains(e, "reference to a Coverage") {
				found = true
			}
		}
		if !found {
			t.Errorf("checkBundle found %q, want a wrong-target problem", errs)
		}
	})
}
