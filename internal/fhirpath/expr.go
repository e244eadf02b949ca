package fhirpath

import (
	"fmt"

	"github.com/ehrvault/ehrvault/internal/fhir"
)

// Expr is a compiled expression. It is immutable and safe for concurrent
// use.
type Expr struct {
	src  string
	root *node
	typ  *fhir.TypeDef // the resource type For specialized it to; nil if none
}

// Parse compiles src. It returns a *SyntaxError for malformed FHIRPath and
// for FHIRPath outside the supported subset (see the package doc). Parse
// does not consult the FHIR model; For does.
func Parse(src string) (*Expr, error) {
	root, err := parse(src)
	if err != nil {
		return nil, err
	}
	return &Expr{src: src, root: root}, nil
}

// String returns the source of the expression.
func (e *Expr) String() string { return e.src }

// Empty reports whether the expression yields nothing for every resource:
// what For makes of an expression none of whose paths start from its type.
func (e *Expr) Empty() bool { return e.root.kind == nEmpty }

// For returns e specialized to resources of type typ. The type names that
// start paths ("Observation.code | Condition.code") are decided once, so
// that branches for other types are dropped and the rest no longer test
// the type, and every type name the expression uses is checked against
// the model: an unknown one is an error.
func (e *Expr) For(typ string) (*Expr, error) {
	t := fhir.Type(typ)
	if t == nil || t.Kind != fhir.KindResource {
		return nil, fmt.Errorf("fhirpath: %s is not a resource type", typ)
	}
	if e.typ != nil && e.typ != t {
		return nil, fmt.Errorf("fhirpath: expression specialized to %s cannot be specialized to %s", e.typ.Name, typ)
	}
	root, err := specialize(e.root, t, true)
	if err != nil {
		return nil, err
	}
	return &Expr{src: e.src, root: root, typ: t}, nil
}

// specialize returns a copy of n for a resource of type t. atRoot says n's
// focus is the resource itself.
func specialize(n *node, t *fhir.TypeDef, atRoot bool) (*node, error) {
	c := *n
	switch n.kind {
	case nEmpty, nLiteral, nThis, nResource:
		return &c, nil
	case nTypeFilter:
		if !knownType(typeSpec{name: n.name}) {
			return nil, &SyntaxError{Offset: n.pos, Msg: fmt.Sprintf("unknown type %s", n.name)}
		}
		if !atRoot {
			return &c, nil
		}
		if isType(t, n.name) {
			return &node{kind: nThis, pos: n.pos}, nil
		}
		return &node{kind: nEmpty, pos: n.pos}, nil
	}
	if n.typ.name != "" && !knownType(n.typ) {
		return nil, &SyntaxError{Offset: n.pos, Msg: fmt.Sprintf("unknown type %s", n.typ)}
	}
	var err error
	if n.l != nil {
		if c.l, err = specialize(n.l, t, atRoot); err != nil {
			return nil, err
		}
	}
	if n.r != nil {
		if c.r, err = specialize(n.r, t, atRoot); err != nil {
			return nil, err
		}
	}
	if n.args != nil {
		c.args = make([]*node, len(n.args))
		for i, a := range n.args {
			if c.args[i], err = specialize(a, t, false); err != nil {
				return nil, err
			}
		}
	}
	empty := &node{kind: nEmpty, pos: n.pos}
	switch n.kind {
	case nMember, nIndex, nAs, nIs, nFunc:
		if c.l == nil {
			break
		}
		if c.l.kind == nThis && n.kind != nIndex {
			c.l = nil // $this.x is x
			break
		}
		if c.l.kind == nEmpty {
			switch {
			case n.kind == nFunc && n.name == "exists":
				return literal(n.pos, &falseValue), nil
			case n.kind == nFunc && n.name == "empty":
				return literal(n.pos, &trueValue), nil
			}
			return empty, nil // every other operation of nothing is nothing
		}
	case nUnion:
		switch {
		case c.l.kind == nEmpty:
			return c.r, nil
		case c.r.kind == nEmpty:
			return c.l, nil
		}
	case nEq, nNe:
		if c.l.kind == nEmpty || c.r.kind == nEmpty {
			return empty, nil
		}
	}
	return &c, nil
}

// Eval evaluates e on the resource res. An expression made by For must be
// given a resource of its type. Eval is a convenience; an Evaluator
// reused across calls allocates less.
func (e *Expr) Eval(res *fhir.Value) ([]Node, error) {
	var ev Evaluator
	return ev.Eval(e, res)
}
