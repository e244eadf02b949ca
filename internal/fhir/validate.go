package fhir

import (
	"encoding/base64"
	"encoding/xml"
	"errors"
	"io"
	"strconv"
	"strings"
	"sync"
)

// Issue is one finding of validation, in the shape of an OperationOutcome
// issue. Messages say what is wrong and where, never the value found: an
// invalid value may still be health data.
type Issue struct {
	Severity string // fatal, error, warning or information
	Code     string // the OperationOutcome issue type: structure, required, value, code-invalid …
	// Path is where the issue is, as a FHIRPath from the resource type:
	// "Patient.name[0].given[1]". Choice elements carry their JSON name
	// ("Observation.valueQuantity"). Empty when the issue is about the
	// whole body.
	Path    string
	Message string
}

func (i Issue) String() string {
	if i.Path == "" {
		return i.Severity + ": " + i.Message
	}
	return i.Severity + ": " + i.Path + ": " + i.Message
}

// MaxStringBytes is the longest string value FHIR allows (R4 2.24.0.1:
// "strings SHALL NOT exceed 1MB").
const MaxStringBytes = 1 << 20

// ParseResource parses data as one FHIR JSON resource and validates it.
// The error is for data that is not JSON at all (a *SyntaxError, or
// ErrTooDeep); everything else wrong with the resource is in the issues.
func ParseResource(data []byte) (Value, []Issue, error) {
	v, err := Parse(data, DefaultMaxDepth)
	if err != nil {
		return Value{}, nil, err
	}
	return v, Validate(&v), nil
}

// Validate checks res against the R4 StructureDefinitions: that it is a
// resource of a concrete type; that every member is an element of its type
// (or the primitive extension "_name" of one); the JSON kind, lexical form
// and range of every primitive; cardinality; that a choice element is
// given once; contained and nested resources, recursively; the rules of
// extensions (ext-1), contained resources (dom-2, dom-4) and narratives
// (well-formed XHTML in a div, without scripts); and codes of required
// bindings whose value sets the definitions expand.
//
// It returns no issues for a valid resource.
func Validate(res *Value) []Issue {
	var v validator
	v.resource(res, "", 0)
	return v.issues
}

type validator struct {
	issues []Issue
}

func (v *validator) add(code, path, msg string) {
	v.issues = append(v.issues, Issue{Severity: "error", Code: code, Path: path, Message: msg})
}

// resource validates a resource at path; containedDepth counts how deep
// it sits in contained lists (1 for a contained resource).
func (v *validator) resource(res *Value, path string, containedDepth int) {
	if res.Kind != Object {
		v.add("structure", path, "a resource must be a JSON object")
		return
	}
	rt := res.Get("resourceType")
	switch {
	case rt == nil:
		v.add("required", join(path, "resourceType"), "the resource has no resourceType")
		return
	case rt.Kind != String || !IsResourceType(rt.Text):
		v.add("value", join(path, "resourceType"), "resourceType must name an R4 resource type")
		return
	}
	t := Type(rt.Text)
	if path == "" {
		path = t.Name
	}
	if containedDepth > 0 {
		if res.Get("contained") != nil {
			v.add("invariant", path+".contained", "a contained resource must not contain resources (dom-2)")
		}
		if m := res.Get("meta"); m != nil && m.Kind == Object && (m.Get("versionId") != nil || m.Get("lastUpdated") != nil) {
			v.add("invariant", path+".meta", "a contained resource must not have meta.versionId or meta.lastUpdated (dom-4)")
		}
	}
	v.object(res, t, path, containedDepth)
	if containedDepth == 0 {
		v.localReferences(res, path)
	}
}

// object validates the members of an object of type t.
func (v *validator) object(obj *Value, t *TypeDef, path string, containedDepth int) {
	if t.Kind != KindResource && len(obj.Fields) == 0 {
		v.add("structure", path, "an element must have a value or children; leave out empty objects")
		return
	}
	counts := make([]int, len(t.Elements))
	chosen := make([]string, len(t.Elements))
	for fi := range obj.Fields {
		f := &obj.Fields[fi]
		if f.Name == "resourceType" && t.Kind == KindResource {
			continue
		}
		name, under := strings.CutPrefix(f.Name, "_")
		e, code := t.Element(name)
		if e == nil {
			if f.Name == "fhir_comments" {
				v.add("structure", join(path, f.Name), "fhir_comments is not part of FHIR R4 JSON; remove it")
				continue
			}
			v.add("structure", join(path, f.Name), "unknown element: "+t.Name+" has no element of this name")
			continue
		}
		idx := elementIndex(t, e)
		if e.Choice {
			if chosen[idx] != "" && chosen[idx] != name {
				v.add("structure", join(path, f.Name), "only one of "+e.Name+"[x] may be given")
				continue
			}
			chosen[idx] = name
		}
		et := Type(code)
		if et == nil {
			// The model names every type it uses; this is a broken table.
			panic("fhir: element " + e.Path + " has unknown type " + code)
		}
		if under && et.Kind != KindPrimitive {
			v.add("structure", join(path, f.Name), "only primitive elements take a \"_\" member")
			continue
		}
		p := join(path, name)
		var other *Value // the value paired with this one: x with _x
		if under {
			other = obj.Get(name)
		} else if et.Kind == KindPrimitive {
			other = obj.Get("_" + name)
		}
		n := v.member(&f.Value, other, e, et, p, under, containedDepth)
		if n > counts[idx] {
			counts[idx] = n
		}
	}
	for i := range t.Elements {
		e := &t.Elements[i]
		switch {
		case counts[i] < e.Min:
			what := e.Name
			if e.Choice {
				what += "[x]"
			}
			v.add("required", join(path, what), "a required element is missing (at least "+strconv.Itoa(e.Min)+")")
		case e.Max >= 0 && counts[i] > e.Max:
			v.add("structure", join(path, e.Name), "too many values (at most "+strconv.Itoa(e.Max)+")")
		}
	}
	if t.Name == "Extension" {
		if obj.Get("extension") != nil && chosen[elementIndex(t, mustElement(t, "value"))] != "" {
			v.add("invariant", path, "an extension has either a value or nested extensions, not both (ext-1)")
		}
	}
}

func mustElement(t *TypeDef, name string) *ElementDef {
	for i := range t.Elements {
		if t.Elements[i].Name == name {
			return &t.Elements[i]
		}
	}
	panic("fhir: " + t.Name + " has no element " + name)
}

func elementIndex(t *TypeDef, e *ElementDef) int {
	for i := range t.Elements {
		if &t.Elements[i] == e {
			return i
		}
	}
	panic("fhir: element outside its type")
}

// member validates one JSON member (x or _x) of element e, whose type is
// et, and returns how many values it gives.
func (v *validator) member(val, other *Value, e *ElementDef, et *TypeDef, path string, under bool, containedDepth int) int {
	if !e.Repeats() {
		if val.Kind == Array {
			v.add("structure", path, "this element takes one value, not an array")
			return 1
		}
		v.item(val, other, e, et, path, under, containedDepth)
		return 1
	}
	if val.Kind != Array {
		v.add("structure", path, "this element repeats: its value must be an array")
		return 1
	}
	if len(val.Items) == 0 {
		v.add("structure", path, "an array must not be empty; leave the element out")
		return 0
	}
	if other != nil && other.Kind == Array && len(other.Items) != len(val.Items) {
		if !under { // report the mismatch once, at the value array
			v.add("structure", path, "the value array and its \"_\" array must have the same length")
		}
	}
	for i := range val.Items {
		var pair *Value
		if other != nil && other.Kind == Array && i < len(other.Items) {
			pair = &other.Items[i]
		}
		v.item(&val.Items[i], pair, e, et, path+"["+strconv.Itoa(i)+"]", under, containedDepth)
	}
	return len(val.Items)
}

// item validates one value of element e.
func (v *validator) item(val, pair *Value, e *ElementDef, et *TypeDef, path string, under bool, containedDepth int) {
	if val.Kind == Null {
		// null only holds a place in an array of primitives whose other
		// array has the value or extensions at that index.
		if e.Repeats() && et.Kind == KindPrimitive && pair != nil && pair.Kind != Null {
			return
		}
		v.add("structure", path, "null is not a FHIR value; leave the element out")
		return
	}
	switch {
	case under:
		if val.Kind != Object {
			v.add("structure", path, "the \"_\" member of a primitive must be an object with id or extension")
			return
		}
		v.object(val, Type("Element"), path, containedDepth)
	case et.Kind == KindPrimitive:
		before := len(v.issues)
		v.primitive(val, et, path)
		if len(v.issues) == before && e.Binding.Strength == "required" && et.Name == "code" {
			if vs := valueSet(e.Binding.ValueSet); vs != nil && !vs.hasCode(val.Text) {
				v.add("code-invalid", path, "the code is not in the required value set "+e.Binding.ValueSet)
			}
		}
	case et.Kind == KindResource:
		depth := containedDepth
		if e.Name == "contained" {
			depth++
		} else {
			depth = 0 // a Bundle entry or parameter is a resource of its own
		}
		v.resource(val, path, depth)
		if depth == 0 {
			return
		}
	default:
		if val.Kind != Object {
			v.add("structure", path, "this element must be a JSON object ("+et.Name+")")
			return
		}
		v.object(val, et, path, containedDepth)
		if e.Binding.Strength == "required" {
			v.codings(val, et, e.Binding.ValueSet, path)
		}
	}
}

// codings checks the codings of a Coding or CodeableConcept bound to a
// required value set: a coding of a code system the value set draws from
// must have one of its codes. Codings of other systems are left alone
// (they may be translations).
func (v *validator) codings(val *Value, et *TypeDef, url, path string) {
	vs := valueSet(url)
	if vs == nil {
		return
	}
	check := func(c *Value, p string) {
		if c.Kind != Object {
			return
		}
		sys, code := c.Str("system"), c.Str("code")
		if code == "" {
			return
		}
		if set := vs.system(sys); set != nil && !set[code] {
			v.add("code-invalid", p, "the code is not in the required value set "+url)
		}
	}
	switch et.Name {
	case "Coding":
		check(val, path)
	case "CodeableConcept":
		if cs := val.Get("coding"); cs != nil && cs.Kind == Array {
			for i := range cs.Items {
				check(&cs.Items[i], path+".coding["+strconv.Itoa(i)+"]")
			}
		}
	}
}

// primitive checks the JSON kind, lexical form and range of a primitive.
func (v *validator) primitive(val *Value, t *TypeDef, path string) {
	if val.Kind != t.JSON {
		v.add("structure", path, "a "+t.Name+" must be a JSON "+t.JSON.String())
		return
	}
	switch val.Kind {
	case Bool:
		return
	case String:
		if val.Text == "" {
			v.add("value", path, "a string value must not be empty; leave the element out")
			return
		}
		if len(val.Text) > MaxStringBytes {
			v.add("value", path, "the value is longer than FHIR's 1 MB limit for strings")
			return
		}
	}
	switch t.Name {
	case "base64Binary":
		if !validBase64(val.Text) {
			v.add("value", path, "not valid base64")
		}
		return
	case "xhtml":
		if msg := checkXHTML(val.Text); msg != "" {
			v.add("value", path, msg)
		}
		return
	}
	if !matchPrimitive(t, val.Text) {
		v.add("value", path, "not a valid "+t.Name+formatHint[t.Name])
		return
	}
	switch t.Name {
	case "date", "dateTime", "instant":
		if !validCalendarDate(val.Text) {
			v.add("value", path, "not a valid "+t.Name+": no such day in the calendar")
		}
	case "integer", "positiveInt", "unsignedInt":
		n, err := strconv.ParseInt(val.Text, 10, 64)
		if err != nil || n < -1<<31 || n > 1<<31-1 {
			v.add("value", path, "the "+t.Name+" is out of the 32-bit range FHIR allows")
		}
	}
}

// matchPrimitive reports whether s has the lexical form of primitive t.
// The commonest forms are checked by hand, which is several times faster
// than the specification's regular expressions and means the same.
func matchPrimitive(t *TypeDef, s string) bool {
	switch t.Name {
	case "id":
		return ValidID(s)
	case "string", "markdown":
		// [ \r\n\t\S]+ with RE2's ASCII \s ([\t\n\f\r ]): only a form
		// feed is refused (the empty string was refused before).
		return !strings.ContainsRune(s, '\f')
	case "uri", "url", "canonical":
		// \S*
		return !strings.ContainsAny(s, " \t\r\n\f")
	}
	return t.MatchString(s)
}

// ValidID reports whether s is a FHIR id: 1 to 64 of A-Z a-z 0-9 - and .
// (the id type's pattern, [A-Za-z0-9\-\.]{1,64}).
func ValidID(s string) bool {
	if len(s) == 0 || len(s) > 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '.') {
			return false
		}
	}
	return true
}

// formatHint says what a valid value of a primitive looks like.
var formatHint = map[string]string{
	"date":        " (YYYY, YYYY-MM or YYYY-MM-DD)",
	"dateTime":    " (YYYY, YYYY-MM, YYYY-MM-DD or YYYY-MM-DDThh:mm:ss with a time zone)",
	"instant":     " (YYYY-MM-DDThh:mm:ss[.sss] with a time zone)",
	"time":        " (hh:mm:ss)",
	"id":          " (1 to 64 of A-Z a-z 0-9 - .)",
	"code":        " (no leading, trailing or repeated whitespace)",
	"integer":     " (a whole number)",
	"positiveInt": " (a whole number of 1 or more)",
	"unsignedInt": " (a whole number of 0 or more)",
	"decimal":     " (a decimal number)",
	"oid":         " (urn:oid:…)",
	"uuid":        " (urn:uuid: and a lower-case UUID)",
	"uri":         " (no whitespace)",
	"url":         " (no whitespace)",
	"canonical":   " (no whitespace)",
}

// validCalendarDate checks the day of a date, dateTime or instant whose
// form already matched: 1980-02-30 has the form but no day.
func validCalendarDate(s string) bool {
	if len(s) < 10 {
		return true // year or year-month: the pattern checked the month
	}
	y, _ := strconv.Atoi(s[0:4])
	m, _ := strconv.Atoi(s[5:7])
	d, _ := strconv.Atoi(s[8:10])
	days := [13]int{0, 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31}[m]
	if m == 2 && (y%4 == 0 && y%100 != 0 || y%400 == 0) {
		days = 29
	}
	return d >= 1 && d <= days
}

func validBase64(s string) bool {
	if strings.ContainsAny(s, " \t\r\n") {
		s = strings.Map(func(r rune) rune {
			switch r {
			case ' ', '\t', '\r', '\n':
				return -1
			}
			return r
		}, s)
	}
	_, err := base64.StdEncoding.DecodeString(s)
	return err == nil
}

// forbiddenXHTML are the elements a FHIR narrative must not hold (txt-1
// allows basic formatting, links and images only). Scripts, frames,
// objects and forms are refused because a narrative is shown in browsers.
var forbiddenXHTML = map[string]bool{
	"script": true, "iframe": true, "frame": true, "frameset": true, "object": true,
	"embed": true, "applet": true, "form": true, "input": true, "button": true,
	"select": true, "textarea": true, "base": true, "link": true, "meta": true,
	"style": true, "head": true, "body": true, "html": true,
}

const xhtmlNS = "http://www.w3.org/1999/xhtml"

// checkXHTML checks a narrative: well-formed XHTML whose root is a div in
// the XHTML namespace, without active content (txt-1, txt-2). It returns
// what is wrong, or "".
func checkXHTML(s string) string {
	d := xml.NewDecoder(strings.NewReader(s))
	d.Strict = true
	d.Entity = xml.HTMLEntity
	depth, roots, text := 0, 0, false
	for {
		tok, err := d.Token()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return "the narrative is not well-formed XHTML"
		}
		switch t := tok.(type) {
		case xml.StartElement:
			if depth == 0 {
				roots++
				if t.Name.Local != "div" || t.Name.Space != xhtmlNS {
					return "the narrative must be one div element in the XHTML namespace (xmlns=\"" + xhtmlNS + "\")"
				}
			}
			if forbiddenXHTML[strings.ToLower(t.Name.Local)] {
				return "the narrative holds an element that FHIR narratives must not have (scripts, forms, frames, objects, styles)"
			}
			for _, a := range t.Attr {
				n := strings.ToLower(a.Name.Local)
				if strings.HasPrefix(n, "on") {
					return "the narrative holds an event-handler attribute, which FHIR narratives must not have"
				}
				if n == "href" || n == "src" {
					u := strings.ToLower(strings.TrimSpace(a.Value))
					if strings.HasPrefix(u, "javascript:") || strings.HasPrefix(u, "vbscript:") {
						return "the narrative holds a script link, which FHIR narratives must not have"
					}
				}
			}
			depth++
		case xml.EndElement:
			depth--
		case xml.CharData:
			if depth == 0 && strings.TrimSpace(string(t)) != "" {
				text = true
			}
		}
	}
	if roots != 1 || text {
		return "the narrative must be one div element in the XHTML namespace (xmlns=\"" + xhtmlNS + "\")"
	}
	return ""
}

// localReferences checks that every local reference ("#id") in res names
// one of its contained resources (ref-1); "#" alone names res itself.
func (v *validator) localReferences(res *Value, path string) {
	ids := map[string]bool{}
	if c := res.Get("contained"); c != nil && c.Kind == Array {
		for i := range c.Items {
			if id := c.Items[i].Str("id"); id != "" {
				ids[id] = true
			}
		}
	}
	walkReferences(res, Type(res.Str("resourceType")), path, true, func(ref *Value, p string) {
		r := ref.Str("reference")
		if id, ok := strings.CutPrefix(r, "#"); ok && id != "" && !ids[id] {
			v.add("invariant", p+".reference", "a local reference must name a contained resource (ref-1)")
		}
	})
}

// References returns the Reference objects in res and in its contained
// resources, as pointers into res, so that a caller can rewrite them. It
// does not look into resources nested as values of other elements
// (Bundle.entry.resource, Parameters.parameter.resource): those are
// resources of their own.
func References(res *Value) []*Value {
	t := Type(res.Str("resourceType"))
	if t == nil {
		return nil
	}
	var out []*Value
	walkReferences(res, t, t.Name, true, func(ref *Value, _ string) { out = append(out, ref) })
	return out
}

// walkReferences calls fn for each Reference in obj of type t, found
// through the model. It enters contained resources when contained is set.
func walkReferences(obj *Value, t *TypeDef, path string, contained bool, fn func(ref *Value, path string)) {
	if t == nil || obj.Kind != Object {
		return
	}
	for fi := range obj.Fields {
		f := &obj.Fields[fi]
		if strings.HasPrefix(f.Name, "_") {
			continue
		}
		e, code := t.Element(f.Name)
		if e == nil {
			continue
		}
		et := Type(code)
		if et == nil || et.Kind == KindPrimitive {
			continue
		}
		if et.Kind == KindResource {
			if e.Name != "contained" || !contained {
				continue
			}
		}
		visit := func(x *Value, p string) {
			switch {
			case et.Kind == KindResource:
				walkReferences(x, Type(x.Str("resourceType")), p, false, fn)
			case et.Name == "Reference":
				if x.Kind == Object {
					fn(x, p)
					// A Reference's identifier holds no references, but
					// its extensions may.
					walkReferences(x, et, p, false, fn)
				}
			default:
				walkReferences(x, et, p, false, fn)
			}
		}
		p := join(path, f.Name)
		if f.Value.Kind == Array {
			for i := range f.Value.Items {
				visit(&f.Value.Items[i], p+"["+strconv.Itoa(i)+"]")
			}
		} else {
			visit(&f.Value, p)
		}
	}
}

// Normalize puts the members of res, and of every object in it, in the
// order the specification defines its elements: resourceType first, then
// id, meta and so on, each primitive's "_" member right after it. Members
// the model does not know (Validate refuses them) keep their order at the
// end. Stored resources are normalized, so equal content gives equal bytes.
func Normalize(res *Value) {
	if res.Kind != Object {
		return
	}
	normalize(res, Type(res.Str("resourceType")))
}

func normalize(obj *Value, t *TypeDef) {
	if t == nil || obj.Kind != Object {
		return
	}
	if t.Kind == KindResource && !t.Abstract && t.Name != obj.Str("resourceType") {
		t = Type(obj.Str("resourceType"))
		if t == nil {
			return
		}
	}
	type ranked struct {
		rank int
		f    Field
	}
	rs := make([]ranked, len(obj.Fields))
	for i, f := range obj.Fields {
		rank := 2*len(t.Elements) + 2 + i // unknown: after all elements, in order
		name, under := strings.CutPrefix(f.Name, "_")
		switch e, code := t.Element(name); {
		case f.Name == "resourceType":
			rank = -1
		case e != nil:
			rank = 2 * elementIndex(t, e)
			if under {
				rank++
			} else if et := Type(code); et != nil && et.Kind != KindPrimitive {
				if et.Kind == KindResource {
					et = nil // the nested resource names its own type
				}
				if f.Value.Kind == Array {
					for j := range f.Value.Items {
						normalizeAs(&f.Value.Items[j], et)
					}
				} else {
					normalizeAs(&f.Value, et)
				}
			}
			if under {
				if f.Value.Kind == Array {
					for j := range f.Value.Items {
						normalize(&f.Value.Items[j], Type("Element"))
					}
				} else {
					normalize(&f.Value, Type("Element"))
				}
			}
		}
		rs[i] = ranked{rank, f}
	}
	// Insertion sort: objects are small and mostly in order already.
	for i := 1; i < len(rs); i++ {
		for j := i; j > 0 && rs[j].rank < rs[j-1].rank; j-- {
			rs[j], rs[j-1] = rs[j-1], rs[j]
		}
	}
	for i := range rs {
		obj.Fields[i] = rs[i].f
	}
}

// normalizeAs normalizes x as type t, or as the resource it is when t is nil.
func normalizeAs(x *Value, t *TypeDef) {
	if t == nil {
		Normalize(x)
		return
	}
	normalize(x, t)
}

func join(path, name string) string {
	if path == "" {
		return name
	}
	return path + "." + name
}

// valueSetIndex is an expanded value set for lookups.
type valueSetIndex struct {
	systems map[string]map[string]bool
}

func (vs *valueSetIndex) hasCode(code string) bool {
	for _, s := range vs.systems {
		if s[code] {
			return true
		}
	}
	return false
}

func (vs *valueSetIndex) system(sys string) map[string]bool { return vs.systems[sys] }

var valueSets = sync.OnceValue(func() map[string]*valueSetIndex {
	m := make(map[string]*valueSetIndex, len(generatedValueSets))
	for _, d := range generatedValueSets {
		vs := &valueSetIndex{systems: make(map[string]map[string]bool, len(d.Includes))}
		for _, cs := range d.Includes {
			set := make(map[string]bool, len(cs.Codes))
			for _, c := range cs.Codes {
				set[c] = true
			}
			vs.systems[cs.System] = set
		}
		m[d.URL] = vs
	}
	return m
})

// valueSet returns the expansion of the value set url, or nil when the
// definitions do not expand it (its codes are then not checked).
func valueSet(url string) *valueSetIndex { return valueSets()[url] }

// CodeSystemOf returns the code system that holds code in the value set
// url, when the definitions expand it and exactly one of its systems holds
// the code: the implicit system of a code element with a required binding
// (Patient.gender's "male" is http://hl7.org/fhir/administrative-gender's).
func CodeSystemOf(url, code string) (string, bool) {
	vs := valueSet(url)
	if vs == nil {
		return "", false
	}
	found := ""
	for sys, codes := range vs.systems {
		if codes[code] {
			if found != "" {
				return "", false
			}
			found = sys
		}
	}
	return found, found != ""
}
