package fhirpath

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/ehrvault/ehrvault/internal/fhir"
)

// SyntaxError reports an expression this package cannot compile: malformed
// FHIRPath, or FHIRPath outside the supported subset. Offset is the byte
// offset in the expression where the problem was found.
type SyntaxError struct {
	Offset int
	Msg    string
}

func (e *SyntaxError) Error() string {
	return fmt.Sprintf("fhirpath: at offset %d: %s", e.Offset, e.Msg)
}

// nodeKind says what a node of the syntax tree computes.
type nodeKind uint8

const (
	nEmpty      nodeKind = iota // {} — also what For folds impossible branches into
	nLiteral                    // 'text', 12, true
	nThis                       // $this: the focus
	nResource                   // %resource: the resource the expression started from
	nMember                     // l.name, or name on the focus when l is nil
	nTypeFilter                 // Patient at the start of a path: the focus if it is a Patient
	nFunc                       // l.name(args), or name(args) on the focus when l is nil
	nIndex                      // l[idx]
	nUnion                      // l | r
	nEq                         // l = r
	nNe                         // l != r
	nAnd                        // l and r
	nOr                         // l or r
	nIs                         // l is typ
	nAs                         // l as typ
)

// node is one node of a compiled expression.
type node struct {
	kind nodeKind
	pos  int
	name string // member, type filter or function name
	l, r *node
	args []*node
	typ  typeSpec // of is, as, and the functions as(), is(), ofType()
	lit  *fhir.Value
	// result is the literal as a result, made once.
	result []Node
	idx    int
	url    string // the argument of extension()
}

func literal(pos int, v *fhir.Value) *node {
	return &node{kind: nLiteral, pos: pos, lit: v, result: []Node{{Value: v}}}
}

// typeSpec names a type: ns is "FHIR", "System" or "" (either).
type typeSpec struct {
	ns, name string
}

func (t typeSpec) String() string {
	if t.ns != "" {
		return t.ns + "." + t.name
	}
	return t.name
}

// maxDepth bounds the nesting of an expression, so that hostile input
// cannot exhaust the stack. The deepest search parameter nests 4 levels.
const maxDepth = 100

// Binding powers of the binary operators, from the FHIRPath grammar's
// precedence (loosest first). Unsupported operators are listed so that
// they are refused by name rather than as a confusing syntax error.
var binaryPower = map[string]int{
	"implies": 1,
	"or":      2, "xor": 2,
	"and": 3,
	"in":  4, "contains": 4,
	"=": 5, "~": 5, "!=": 5, "!~": 5,
	"<=": 6, "<": 6, ">": 6, ">=": 6,
	"|":  7,
	"is": 8, "as": 8,
	"+": 9, "-": 9, "&": 9,
	"*": 10, "/": 10, "div": 10, "mod": 10,
}

var supportedBinary = map[string]nodeKind{
	"|": nUnion, "=": nEq, "!=": nNe, "and": nAnd, "or": nOr, "is": nIs, "as": nAs,
}

// functions lists the supported functions and how many arguments each
// takes (min, max).
var functions = map[string][2]int{
	"where":     {1, 1},
	"exists":    {0, 1},
	"empty":     {0, 0},
	"first":     {0, 0},
	"not":       {0, 0},
	"resolve":   {0, 0},
	"as":        {1, 1},
	"is":        {1, 1},
	"ofType":    {1, 1},
	"extension": {1, 1},
}

type parser struct {
	toks  []token
	i     int
	depth int
}

// parse compiles src into a syntax tree.
func parse(src string) (*node, error) {
	toks, err := lex(src)
	if err != nil {
		return nil, err
	}
	p := &parser{toks: toks}
	n, err := p.expr(0)
	if err != nil {
		return nil, err
	}
	if t := p.peek(); t.Kind != tEOF {
		return nil, p.errorf(t, "unexpected %s", t)
	}
	return n, nil
}

func (p *parser) peek() token { return p.toks[p.i] }

func (p *parser) next() token {
	t := p.toks[p.i]
	if t.Kind != tEOF {
		p.i++
	}
	return t
}

func (p *parser) errorf(t token, format string, args ...any) error {
	return &SyntaxError{Offset: t.Pos, Msg: fmt.Sprintf(format, args...)}
}

func (p *parser) expect(kind tokKind, text string) error {
	t := p.peek()
	if t.Kind != kind || t.Text != text {
		return p.errorf(t, "expected '%s', found %s", text, t)
	}
	p.i++
	return nil
}

// binaryOp returns the operator t stands for in operator position, if any.
func binaryOp(t token) (string, bool) {
	switch t.Kind {
	case tOp:
		return t.Text, true
	case tIdent:
		if t.Delimited {
			return "", false
		}
		if _, ok := binaryPower[t.Text]; ok {
			return t.Text, true
		}
	}
	return "", false
}

// expr parses an expression whose operators bind more tightly than minPower.
func (p *parser) expr(minPower int) (*node, error) {
	p.depth++
	defer func() { p.depth-- }()
	if p.depth > maxDepth {
		return nil, p.errorf(p.peek(), "expression nested too deeply")
	}
	left, err := p.postfix()
	if err != nil {
		return nil, err
	}
	for {
		t := p.peek()
		op, ok := binaryOp(t)
		if !ok {
			return left, nil
		}
		power := binaryPower[op]
		if power <= minPower {
			return left, nil
		}
		kind, ok := supportedBinary[op]
		if !ok {
			return nil, p.errorf(t, "operator '%s' is not supported", op)
		}
		p.next()
		if kind == nIs || kind == nAs {
			ts, err := p.typeSpecifier()
			if err != nil {
				return nil, err
			}
			left = &node{kind: kind, pos: t.Pos, l: left, typ: ts}
			continue
		}
		right, err := p.expr(power) // left-associative
		if err != nil {
			return nil, err
		}
		left = &node{kind: kind, pos: t.Pos, l: left, r: right}
	}
}

// postfix parses a term followed by any number of .invocation and [index].
func (p *parser) postfix() (*node, error) {
	n, err := p.term()
	if err != nil {
		return nil, err
	}
	for {
		t := p.peek()
		switch {
		case t.Kind == tPunct && t.Text == ".":
			p.next()
			n, err = p.invocation(n, true)
			if err != nil {
				return nil, err
			}
		case t.Kind == tPunct && t.Text == "[":
			p.next()
			it := p.next()
			if it.Kind != tNumber || strings.Contains(it.Text, ".") {
				return nil, p.errorf(it, "only an integer literal is supported as an index")
			}
			idx, err := strconv.Atoi(it.Text)
			if err != nil {
				return nil, p.errorf(it, "index out of range")
			}
			if err := p.expect(tPunct, "]"); err != nil {
				return nil, err
			}
			n = &node{kind: nIndex, pos: t.Pos, l: n, idx: idx}
		default:
			return n, nil
		}
	}
}

// term parses a literal, a variable, a parenthesized expression or an
// invocation on the focus.
func (p *parser) term() (*node, error) {
	t := p.peek()
	switch t.Kind {
	case tString:
		p.next()
		v := fhir.StringValue(t.Text)
		return literal(t.Pos, &v), nil
	case tNumber:
		p.next()
		if n := p.peek(); n.Kind == tString || (n.Kind == tIdent && !n.Delimited && isCalendarUnit(n.Text)) {
			return nil, p.errorf(n, "quantity literals are not supported")
		}
		v := fhir.NumberValue(t.Text)
		return literal(t.Pos, &v), nil
	case tDate:
		return nil, p.errorf(t, "date and time literals are not supported")
	case tVariable:
		p.next()
		switch t.Text {
		case "$this":
			return &node{kind: nThis, pos: t.Pos}, nil
		case "%resource":
			return &node{kind: nResource, pos: t.Pos}, nil
		}
		return nil, p.errorf(t, "variable %s is not supported", t.Text)
	case tPunct:
		switch t.Text {
		case "(":
			p.next()
			n, err := p.expr(0)
			if err != nil {
				return nil, err
			}
			if err := p.expect(tPunct, ")"); err != nil {
				return nil, err
			}
			return n, nil
		case "{":
			return nil, p.errorf(t, "collection literals are not supported")
		}
	case tOp:
		if t.Text == "+" || t.Text == "-" {
			return nil, p.errorf(t, "unary '%s' is not supported", t.Text)
		}
	case tIdent:
		if !t.Delimited && (t.Text == "true" || t.Text == "false") {
			p.next()
			v := fhir.BoolValue(t.Text == "true")
			return literal(t.Pos, &v), nil
		}
		return p.invocation(nil, false)
	}
	return nil, p.errorf(t, "unexpected %s", t)
}

func isCalendarUnit(s string) bool {
	switch strings.TrimSuffix(s, "s") {
	case "year", "month", "week", "day", "hour", "minute", "second", "millisecond":
		return true
	}
	return false
}

// invocation parses a member name or a function call applied to target
// (nil: the focus). afterDot says it follows a '.', where keywords such as
// 'as' and 'contains' are plain names.
func (p *parser) invocation(target *node, afterDot bool) (*node, error) {
	t := p.next()
	if t.Kind == tVariable && afterDot {
		return nil, p.errorf(t, "%s is not supported after '.'", t.Text)
	}
	if t.Kind != tIdent {
		return nil, p.errorf(t, "expected a name, found %s", t)
	}
	if n := p.peek(); n.Kind == tPunct && n.Text == "(" && !t.Delimited {
		p.next()
		return p.function(target, t)
	}
	if !afterDot && !t.Delimited {
		if _, kw := binaryPower[t.Text]; kw {
			return nil, p.errorf(t, "unexpected %s", t)
		}
	}
	if target == nil && isUpper(t.Text) {
		return &node{kind: nTypeFilter, pos: t.Pos, name: t.Text}, nil
	}
	return &node{kind: nMember, pos: t.Pos, name: t.Text, l: target}, nil
}

func isUpper(s string) bool { return s != "" && s[0] >= 'A' && s[0] <= 'Z' }

// function parses the arguments of a call of name (after its '(').
func (p *parser) function(target *node, name token) (*node, error) {
	arity, ok := functions[name.Text]
	if !ok {
		return nil, p.errorf(name, "function %s() is not supported", name.Text)
	}
	n := &node{kind: nFunc, pos: name.Pos, name: name.Text, l: target}
	switch name.Text {
	case "as", "is", "ofType":
		ts, err := p.typeSpecifier()
		if err != nil {
			return nil, err
		}
		n.typ = ts
	case "extension":
		t := p.next()
		if t.Kind != tString {
			return nil, p.errorf(t, "extension() takes a string literal")
		}
		n.url = t.Text
	default:
		for {
			if c := p.peek(); c.Kind == tPunct && c.Text == ")" {
				break
			}
			if len(n.args) > 0 {
				if err := p.expect(tPunct, ","); err != nil {
					return nil, err
				}
			}
			a, err := p.expr(0)
			if err != nil {
				return nil, err
			}
			n.args = append(n.args, a)
		}
		if len(n.args) < arity[0] || len(n.args) > arity[1] {
			return nil, p.errorf(name, "%s() takes %s", name.Text, plural(arity))
		}
	}
	if err := p.expect(tPunct, ")"); err != nil {
		return nil, err
	}
	return n, nil
}

func plural(a [2]int) string {
	switch {
	case a[0] == a[1] && a[0] == 0:
		return "no arguments"
	case a[0] == a[1] && a[0] == 1:
		return "one argument"
	case a[0] == 0 && a[1] == 1:
		return "at most one argument"
	}
	return fmt.Sprintf("%d to %d arguments", a[0], a[1])
}

// typeSpecifier parses a type name, optionally qualified: Quantity,
// FHIR.Quantity, System.String.
func (p *parser) typeSpecifier() (typeSpec, error) {
	t := p.next()
	if t.Kind != tIdent {
		return typeSpec{}, p.errorf(t, "expected a type name, found %s", t)
	}
	if d := p.peek(); d.Kind == tPunct && d.Text == "." && (t.Text == "FHIR" || t.Text == "System") {
		p.next()
		n := p.next()
		if n.Kind != tIdent {
			return typeSpec{}, p.errorf(n, "expected a type name, found %s", n)
		}
		return typeSpec{ns: t.Text, name: n.Text}, nil
	}
	return typeSpec{name: t.Text}, nil
}

// String renders the tree with every operation parenthesized, for tests
// and error messages.
func (n *node) String() string {
	var b strings.Builder
	n.write(&b)
	return b.String()
}

func (n *node) write(b *strings.Builder) {
	target := func() {
		if n.l != nil {
			n.l.write(b)
			b.WriteByte('.')
		}
	}
	switch n.kind {
	case nEmpty:
		b.WriteString("{}")
	case nLiteral:
		if n.lit.Kind == fhir.String {
			b.WriteString(quote(n.lit.Text))
		} else {
			b.WriteString(n.lit.Text)
		}
	case nThis:
		b.WriteString("$this")
	case nResource:
		b.WriteString("%resource")
	case nMember:
		target()
		b.WriteString(renderName(n.name, n.l != nil))
	case nTypeFilter:
		b.WriteString(renderName(n.name, false))
	case nFunc:
		target()
		b.WriteString(n.name)
		b.WriteByte('(')
		switch n.name {
		case "as", "is", "ofType":
			b.WriteString(n.typ.String())
		case "extension":
			b.WriteString(quote(n.url))
		default:
			for i, a := range n.args {
				if i > 0 {
					b.WriteString(", ")
				}
				a.write(b)
			}
		}
		b.WriteByte(')')
	case nIndex:
		n.l.write(b)
		b.WriteByte('[')
		b.WriteString(strconv.Itoa(n.idx))
		b.WriteByte(']')
	case nIs, nAs:
		b.WriteByte('(')
		n.l.write(b)
		if n.kind == nIs {
			b.WriteString(" is ")
		} else {
			b.WriteString(" as ")
		}
		b.WriteString(n.typ.String())
		b.WriteByte(')')
	default:
		b.WriteByte('(')
		n.l.write(b)
		b.WriteString(map[nodeKind]string{nUnion: " | ", nEq: " = ", nNe: " != ", nAnd: " and ", nOr: " or "}[n.kind])
		n.r.write(b)
		b.WriteByte(')')
	}
}

// renderName writes a member name so that it parses back as the same
// name: in backticks unless it is a plain identifier (and, at the start of
// a path, no keyword).
func renderName(s string, afterDot bool) string {
	plain := s != "" && isIdentStart(s[0])
	for i := 0; plain && i < len(s); i++ {
		plain = isIdentPart(s[i])
	}
	if plain && !afterDot {
		_, kw := binaryPower[s]
		plain = !kw && s != "true" && s != "false"
	}
	if plain {
		return s
	}
	q := quote(s)
	return "`" + strings.ReplaceAll(q[1:len(q)-1], "`", "\\`") + "`"
}

func quote(s string) string {
	var b strings.Builder
	b.WriteByte('\'')
	for _, r := range s {
		switch r {
		case '\'', '\\':
			b.WriteByte('\\')
			b.WriteRune(r)
		case '\n':
			b.WriteString(`\n`)
		case '\r':
			b.WriteString(`\r`)
		case '\t':
			b.WriteString(`\t`)
		default:
			if r < 0x20 {
				fmt.Fprintf(&b, `\u%04x`, r)
				continue
			}
			b.WriteRune(r)
		}
	}
	b.WriteByte('\'')
	return b.String()
}
