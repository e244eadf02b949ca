package fhirpath

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/ehrvault/ehrvault/internal/fhir"
)

// Node is one item of a result: a JSON value of the resource together with
// its FHIR type.
type Node struct {
	// Value is the item's JSON: an object for a complex type, backbone
	// element or resource; a string, number or boolean for a primitive.
	// It is nil for what resolve() yields for a reference to a resource
	// outside the one evaluated: only the type of such a target is known.
	Value *fhir.Value
	// Type is the FHIR type of Value; nil for System values (literals and
	// the booleans that exists(), =, and … return) and for values of
	// elements the model gives no type.
	Type *fhir.TypeDef
}

// TypeName returns the name of the item's type: a FHIR type ("Reference",
// "code", "Observation.component") or, for a System value, "System.String",
// "System.Boolean", "System.Integer" or "System.Decimal".
func (n Node) TypeName() string {
	if n.Type != nil {
		return n.Type.Name
	}
	return "System." + systemType(n.Value)
}

func systemType(v *fhir.Value) string {
	if v == nil {
		return ""
	}
	switch v.Kind {
	case fhir.Bool:
		return "Boolean"
	case fhir.String:
		return "String"
	case fhir.Number:
		if strings.ContainsAny(v.Text, ".eE") {
			return "Decimal"
		}
		return "Integer"
	}
	return ""
}

var (
	trueValue  = fhir.BoolValue(true)
	falseValue = fhir.BoolValue(false)
)

// The results true and false. Results are never modified in place, so
// these can be shared.
var (
	trueResult  = []Node{{Value: &trueValue}}
	falseResult = []Node{{Value: &falseValue}}
)

func boolean(b bool) []Node {
	if b {
		return trueResult
	}
	return falseResult
}

// EvalError reports an expression that cannot be evaluated on a resource,
// such as several items where one boolean was needed. It names the
// offset in the expression, never a value of the resource.
type EvalError struct {
	Offset int
	Msg    string
}

func (e *EvalError) Error() string {
	return fmt.Sprintf("fhirpath: evaluating at offset %d: %s", e.Offset, e.Msg)
}

// An Evaluator evaluates expressions, reusing its memory from one call
// to the next: evaluation allocates little once an Evaluator has warmed
// up. It is not safe for concurrent use; keep one per goroutine (a
// sync.Pool serves).
type Evaluator struct {
	// arena holds the items of intermediate and final results. A result
	// is a capacity-limited window of it, so appending to one copies it;
	// nothing written to the arena overwrites a live result.
	arena    []Node
	focus    [1]Node
	resource Node // %resource
}

// Eval evaluates e on res. The result is valid until the next call of
// Eval or Reset on ev. An expression made by For must be given a resource
// of its type; otherwise Eval returns an error.
func (ev *Evaluator) Eval(e *Expr, res *fhir.Value) ([]Node, error) {
	root := Node{Value: res, Type: e.typ}
	if rt := res.Str("resourceType"); e.typ == nil || rt != e.typ.Name {
		if e.typ != nil {
			return nil, fmt.Errorf("fhirpath: expression for %s evaluated on a resource of another type", e.typ.Name)
		}
		root.Type = fhir.Type(rt)
	}
	ev.arena = ev.arena[:0]
	ev.resource = root
	ev.focus[0] = root
	return ev.eval(e.root, ev.focus[:])
}

// Reset drops the results of the last Eval, so that the Evaluator no
// longer keeps that resource reachable.
func (ev *Evaluator) Reset() {
	clear(ev.arena[:cap(ev.arena)])
	ev.arena = ev.arena[:0]
	ev.focus[0] = Node{}
	ev.resource = Node{}
}

// mark returns where the next result starts in the arena.
func (ev *Evaluator) mark() int { return len(ev.arena) }

// since returns the result made of the arena's items from start on.
func (ev *Evaluator) since(start int) []Node {
	if start == len(ev.arena) {
		return nil
	}
	return ev.arena[start:len(ev.arena):len(ev.arena)]
}

// eval returns the result of n with focus as the input of invocations
// that have no explicit target ($this). Results may share memory with
// focus or other results: callers never append to them in place.
func (ev *Evaluator) eval(n *node, focus []Node) ([]Node, error) {
	switch n.kind {
	case nEmpty:
		return nil, nil
	case nLiteral:
		return n.result, nil
	case nThis:
		return focus, nil
	case nResource:
		return ev.focus[:1:1], nil
	case nTypeFilter:
		start := ev.mark()
		for _, it := range focus {
			if it.Type != nil && isType(it.Type, n.name) {
				ev.arena = append(ev.arena, it)
			}
		}
		return ev.since(start), nil
	}

	// Invocations and operators with a left operand.
	in := focus
	if n.l != nil {
		var err error
		if in, err = ev.eval(n.l, focus); err != nil {
			return nil, err
		}
	}
	switch n.kind {
	case nMember:
		start := ev.mark()
		for _, it := range in {
			ev.arena = appendChildren(ev.arena, it, n.name)
		}
		return ev.since(start), nil
	case nIndex:
		if n.idx < len(in) {
			return in[n.idx : n.idx+1 : n.idx+1], nil
		}
		return nil, nil
	case nFunc:
		return ev.function(n, in)
	case nIs:
		switch len(in) {
		case 0:
			return nil, nil
		case 1:
			return boolean(matches(in[0], n.typ)), nil
		}
		return nil, &EvalError{Offset: n.pos, Msg: "'is' needs a single item"}
	case nAs:
		return ev.filterType(in, n.typ), nil
	}

	// Binary operators: both operands see the same focus.
	r, err := ev.eval(n.r, focus)
	if err != nil {
		return nil, err
	}
	switch n.kind {
	case nUnion:
		return ev.union(in, r), nil
	case nEq, nNe:
		if len(in) == 0 || len(r) == 0 {
			return nil, nil
		}
		eq := len(in) == len(r)
		for i := 0; eq && i < len(in); i++ {
			eq = itemEqual(in[i], r[i])
		}
		return boolean(eq == (n.kind == nEq)), nil
	case nAnd, nOr:
		a, aok, err := truth(in, n.l.pos)
		if err != nil {
			return nil, err
		}
		b, bok, err := truth(r, n.r.pos)
		if err != nil {
			return nil, err
		}
		if n.kind == nAnd {
			switch {
			case (aok && !a) || (bok && !b):
				return boolean(false), nil
			case aok && bok:
				return boolean(true), nil
			}
			return nil, nil
		}
		switch {
		case (aok && a) || (bok && b):
			return boolean(true), nil
		case aok && bok:
			return boolean(false), nil
		}
		return nil, nil
	}
	panic("fhirpath: unknown node kind " + strconv.Itoa(int(n.kind)))
}

func (ev *Evaluator) function(n *node, in []Node) ([]Node, error) {
	switch n.name {
	case "where", "exists":
		if len(n.args) == 0 { // exists()
			return boolean(len(in) > 0), nil
		}
		start := ev.mark()
		for i := range in {
			// The criterion's result is dead once judged: drop it from
			// the arena so that kept items stay contiguous.
			top := ev.mark()
			r, err := ev.eval(n.args[0], in[i:i+1:i+1])
			if err != nil {
				return nil, err
			}
			b, ok, err := truth(r, n.args[0].pos)
			if err != nil {
				return nil, err
			}
			ev.arena = ev.arena[:top]
			if ok && b {
				if n.name == "exists" {
					ev.arena = ev.arena[:start]
					return boolean(true), nil
				}
				ev.arena = append(ev.arena, in[i])
			}
		}
		if n.name == "exists" {
			return boolean(false), nil
		}
		return ev.since(start), nil
	case "empty":
		return boolean(len(in) == 0), nil
	case "first":
		if len(in) == 0 {
			return nil, nil
		}
		return in[:1:1], nil
	case "not":
		b, ok, err := truth(in, n.pos)
		if err != nil || !ok {
			return nil, err
		}
		return boolean(!b), nil
	case "resolve":
		start := ev.mark()
		for _, it := range in {
			if r, ok := ev.resolve(it); ok {
				ev.arena = append(ev.arena, r)
			}
		}
		return ev.since(start), nil
	case "as", "ofType":
		return ev.filterType(in, n.typ), nil
	case "is":
		switch len(in) {
		case 0:
			return nil, nil
		case 1:
			return boolean(matches(in[0], n.typ)), nil
		}
		return nil, &EvalError{Offset: n.pos, Msg: "is() needs a single item"}
	case "extension":
		start := ev.mark()
		for _, it := range in {
			top := ev.mark()
			ev.arena = appendChildren(ev.arena, it, "extension")
			kept := ev.arena[:top]
			for _, x := range ev.arena[top:] {
				if x.Value.Str("url") == n.url {
					kept = append(kept, x)
				}
			}
			ev.arena = kept
		}
		return ev.since(start), nil
	}
	panic("fhirpath: unknown function " + n.name)
}

// appendChildren appends the items of the element name of it: for a
// choice element ("value"), whichever of valueQuantity, valueString, …
// is present, each typed by the name it has.
func appendChildren(out []Node, it Node, name string) []Node {
	v := it.Value
	if v == nil || v.Kind != fhir.Object {
		return out
	}
	var ms members
	if it.Type != nil {
		ms = membersOf(it.Type)
	}
	for i := range v.Fields {
		f := &v.Fields[i]
		if len(f.Name) < len(name) || f.Name[:len(name)] != name {
			continue
		}
		var typ *fhir.TypeDef
		if ms != nil {
			m, ok := ms[f.Name]
			if !ok || m.elem != name {
				continue
			}
			typ = m.typ
		} else if f.Name != name {
			continue
		}
		if f.Value.Kind == fhir.Array {
			for j := range f.Value.Items {
				out = appendItem(out, &f.Value.Items[j], typ)
			}
		} else {
			out = appendItem(out, &f.Value, typ)
		}
	}
	return out
}

func appendItem(out []Node, v *fhir.Value, typ *fhir.TypeDef) []Node {
	switch v.Kind {
	case fhir.Null, fhir.Array:
		// null stands in for an absent value in arrays of primitives
		// whose extensions sit in the matching _name array.
		return out
	case fhir.Object:
		if typ != nil && typ.Kind == fhir.KindResource {
			// A contained or entry resource: its declared type is the
			// abstract Resource; its real type is named inside it.
			if rt := v.Str("resourceType"); rt != typ.Name {
				if t := fhir.Type(rt); t != nil {
					typ = t
				}
			}
		}
	}
	return append(out, Node{Value: v, Type: typ})
}

// matches reports whether it is of the type ts names (or a specialization
// of it). FHIR values are never System values: a FHIR string is not a
// System.String.
func matches(it Node, ts typeSpec) bool {
	if it.Type != nil {
		return ts.ns != "System" && isType(it.Type, ts.name)
	}
	return ts.ns != "FHIR" && systemType(it.Value) == ts.name
}

func (ev *Evaluator) filterType(in []Node, ts typeSpec) []Node {
	start := ev.mark()
	for _, it := range in {
		if matches(it, ts) {
			ev.arena = append(ev.arena, it)
		}
	}
	return ev.since(start)
}

// union returns the items of a and then those of b, without repeating an
// item (the same element of the resource, or an equal System value).
func (ev *Evaluator) union(a, b []Node) []Node {
	if len(b) == 0 && len(a) <= 1 {
		return a
	}
	start := ev.mark()
	add := func(x Node) {
		for _, y := range ev.arena[start:] {
			if x.Value == y.Value && x.Type == y.Type && (x.Value != nil || x.Type != nil) {
				return
			}
			if x.Type == nil && y.Type == nil && x.Value != nil && y.Value != nil && itemEqual(x, y) {
				return
			}
		}
		ev.arena = append(ev.arena, x)
	}
	for _, x := range a {
		add(x)
	}
	for _, x := range b {
		add(x)
	}
	return ev.since(start)
}

// truth converts a collection to a boolean as FHIRPath does where one is
// expected: empty is unknown (ok false), a single boolean is itself, any
// other single item is true, and several items are an error.
func truth(c []Node, pos int) (val, ok bool, err error) {
	switch len(c) {
	case 0:
		return false, false, nil
	case 1:
		if v := c[0].Value; v != nil && v.Kind == fhir.Bool {
			return v.Text == "true", true, nil
		}
		return true, true, nil
	}
	return false, false, &EvalError{Offset: pos, Msg: fmt.Sprintf("expected a single boolean, found %d items", len(c))}
}

// itemEqual is FHIRPath equality of two items: primitives by value (numbers
// numerically), complex values member by member.
func itemEqual(x, y Node) bool {
	a, b := x.Value, y.Value
	if a == nil || b == nil || a.Kind != b.Kind {
		return false
	}
	switch a.Kind {
	case fhir.Number:
		if a.Text == b.Text {
			return true
		}
		fa, err1 := strconv.ParseFloat(a.Text, 64)
		fb, err2 := strconv.ParseFloat(b.Text, 64)
		return err1 == nil && err2 == nil && fa == fb
	case fhir.Object, fhir.Array:
		return fhir.Equal(a, b)
	}
	return a.Text == b.Text
}

// resolve returns the target of a reference: the contained resource a
// "#id" reference names, or, for a literal reference to another resource
// ("Patient/123", "https://example.org/fhir/Patient/123",
// "Patient/123/_history/2"), an item that carries only the target's type.
// Anything else (urn:uuid:, logical references by identifier) does not
// resolve.
func (ev *Evaluator) resolve(it Node) (Node, bool) {
	if it.Value == nil {
		return Node{}, false
	}
	var ref string
	switch it.Value.Kind {
	case fhir.Object:
		if it.Type != nil && !isType(it.Type, "Reference") {
			return Node{}, false
		}
		ref = it.Value.Str("reference")
	case fhir.String:
		ref = it.Value.Text // canonical, uri
	default:
		return Node{}, false
	}
	if id, ok := strings.CutPrefix(ref, "#"); ok {
		return ev.contained(id)
	}
	typ, _, ok := ReferenceTarget(ref)
	if !ok {
		return Node{}, false
	}
	return Node{Type: fhir.Type(typ)}, true
}

func (ev *Evaluator) contained(id string) (Node, bool) {
	c := ev.resource.Value.Get("contained")
	if c == nil || c.Kind != fhir.Array || id == "" {
		return Node{}, false
	}
	for i := range c.Items {
		r := &c.Items[i]
		if r.Str("id") == id {
			if t := fhir.Type(r.Str("resourceType")); t != nil {
				return Node{Value: r, Type: t}, true
			}
		}
	}
	return Node{}, false
}

// ReferenceTarget parses a literal reference to a resource: relative
// ("Patient/123", "Patient/123/_history/2") or absolute
// ("https://example.org/fhir/Patient/123"), and returns the target's
// resource type and id. It reports false for anything else: contained
// ("#x"), urn:uuid: and urn:oid: references, conditional references
// ("Patient?identifier=…"), and references whose type is not an R4
// resource type.
func ReferenceTarget(ref string) (typ, id string, ok bool) {
	if ref == "" || strings.HasPrefix(ref, "#") || strings.HasPrefix(ref, "urn:") || strings.ContainsAny(ref, "?#") {
		return "", "", false
	}
	// Drop a version: …/Type/id/_history/v.
	if i := strings.LastIndex(ref, "/_history/"); i >= 0 {
		ref = ref[:i]
	}
	slash := strings.LastIndexByte(ref, '/')
	if slash <= 0 {
		return "", "", false
	}
	id = ref[slash+1:]
	rest := ref[:slash]
	typ = rest[strings.LastIndexByte(rest, '/')+1:]
	if typ != rest && !strings.Contains(rest, "://") {
		return "", "", false // a relative reference has exactly one '/'
	}
	if !validID(id) || !fhir.IsResourceType(typ) {
		return "", "", false
	}
	return typ, id, true
}

// validID reports whether s is a FHIR id: 1 to 64 of [A-Za-z0-9.-].
func validID(s string) bool {
	if s == "" || len(s) > 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '.') {
			return false
		}
	}
	return true
}
