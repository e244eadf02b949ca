package fhir

import (
	"errors"
	"fmt"
	"strconv"
	"unicode/utf16"
	"unicode/utf8"
)

// Kind is the JSON kind of a Value.
type Kind uint8

// The JSON kinds.
const (
	Null Kind = iota
	Bool
	Number
	String
	Array
	Object
)

func (k Kind) String() string {
	switch k {
	case Null:
		return "null"
	case Bool:
		return "boolean"
	case Number:
		return "number"
	case String:
		return "string"
	case Array:
		return "array"
	case Object:
		return "object"
	}
	return "kind(" + strconv.Itoa(int(k)) + ")"
}

// A Value is one parsed JSON value. Objects keep their members in document
// order and numbers keep their literal text, so that a resource written back
// out says exactly what its client sent (decimal precision included).
type Value struct {
	Kind Kind
	// Text is the decoded text of a String, the literal of a Number, and
	// "true" or "false" for a Bool.
	Text   string
	Fields []Field // members of an Object, in order
	Items  []Value // elements of an Array
}

// Field is one member of a JSON object.
type Field struct {
	Name  string
	Value Value
}

// StringValue returns a String value.
func StringValue(s string) Value { return Value{Kind: String, Text: s} }

// NumberValue returns a Number value with the given literal text.
func NumberValue(lit string) Value { return Value{Kind: Number, Text: lit} }

// BoolValue returns a Bool value.
func BoolValue(b bool) Value {
	if b {
		return Value{Kind: Bool, Text: "true"}
	}
	return Value{Kind: Bool, Text: "false"}
}

// Get returns a pointer to the member named name of an object, or nil if the
// value is not an object or has no such member. The pointer stays valid until
// the object's members are added or removed.
func (v *Value) Get(name string) *Value {
	if v == nil || v.Kind != Object {
		return nil
	}
	for i := range v.Fields {
		if v.Fields[i].Name == name {
			return &v.Fields[i].Value
		}
	}
	return nil
}

// Str returns the text of the string member name, or "" when it is absent
// or not a string.
func (v *Value) Str(name string) string {
	f := v.Get(name)
	if f == nil || f.Kind != String {
		return ""
	}
	return f.Text
}

// Set replaces the member named name, or appends it when absent.
func (v *Value) Set(name string, x Value) {
	if f := v.Get(name); f != nil {
		*f = x
		return
	}
	v.Fields = append(v.Fields, Field{Name: name, Value: x})
}

// Delete removes the member named name, if present.
func (v *Value) Delete(name string) {
	for i := range v.Fields {
		if v.Fields[i].Name == name {
			v.Fields = append(v.Fields[:i], v.Fields[i+1:]...)
			return
		}
	}
}

// Clone returns a deep copy of v.
func (v *Value) Clone() Value {
	c := Value{Kind: v.Kind, Text: v.Text}
	if v.Fields != nil {
		c.Fields = make([]Field, len(v.Fields))
		for i := range v.Fields {
			c.Fields[i] = Field{Name: v.Fields[i].Name, Value: v.Fields[i].Value.Clone()}
		}
	}
	if v.Items != nil {
		c.Items = make([]Value, len(v.Items))
		for i := range v.Items {
			c.Items[i] = v.Items[i].Clone()
		}
	}
	return c
}

// Equal reports whether two values mean the same JSON: objects compare
// regardless of member order, numbers by their literal text.
func Equal(a, b *Value) bool {
	if a.Kind != b.Kind {
		return false
	}
	switch a.Kind {
	case Object:
		if len(a.Fields) != len(b.Fields) {
			return false
		}
		for i := range a.Fields {
			o := b.Get(a.Fields[i].Name)
			if o == nil || !Equal(&a.Fields[i].Value, o) {
				return false
			}
		}
		return true
	case Array:
		if len(a.Items) != len(b.Items) {
			return false
		}
		for i := range a.Items {
			if !Equal(&a.Items[i], &b.Items[i]) {
				return false
			}
		}
		return true
	}
	return a.Text == b.Text
}

// DefaultMaxDepth is the deepest nesting of objects and arrays that Parse
// accepts unless told otherwise. The deepest R4 example nests 13 levels.
const DefaultMaxDepth = 64

// SyntaxError reports malformed JSON. It names a byte offset and what was
// expected there, never the content.
type SyntaxError struct {
	Offset int
	Msg    string
}

func (e *SyntaxError) Error() string {
	return fmt.Sprintf("invalid JSON at byte %d: %s", e.Offset, e.Msg)
}

// ErrTooDeep is wrapped by the SyntaxError returned for input nested deeper
// than the limit.
var ErrTooDeep = errors.New("nested too deeply")

// Parse decodes one JSON document. It rejects what RFC 8259 rejects and, as
// FHIR requires, duplicate object members and invalid UTF-8. Nesting deeper
// than maxDepth (DefaultMaxDepth if 0) is refused before it costs stack.
func Parse(data []byte, maxDepth int) (Value, error) {
	if maxDepth <= 0 {
		maxDepth = DefaultMaxDepth
	}
	p := parser{data: data, maxDepth: maxDepth}
	p.skipSpace()
	v, err := p.value(0)
	if err != nil {
		return Value{}, err
	}
	p.skipSpace()
	if p.pos != len(p.data) {
		return Value{}, p.errorf("unexpected data after the top-level value")
	}
	return v, nil
}

type parser struct {
	data     []byte
	pos      int
	maxDepth int
}

func (p *parser) errorf(format string, args ...any) error {
	return &SyntaxError{Offset: p.pos, Msg: fmt.Sprintf(format, args...)}
}

func (p *parser) skipSpace() {
	for p.pos < len(p.data) {
		switch p.data[p.pos] {
		case ' ', '\t', '\n', '\r':
			p.pos++
		default:
			return
		}
	}
}

func (p *parser) value(depth int) (Value, error) {
	if p.pos >= len(p.data) {
		return Value{}, p.errorf("unexpected end of input")
	}
	switch c := p.data[p.pos]; {
	case c == '{':
		return p.object(depth + 1)
	case c == '[':
		return p.array(depth + 1)
	case c == '"':
		s, err := p.str()
		return Value{Kind: String, Text: s}, err
	case c == '-' || (c >= '0' && c <= '9'):
		return p.number()
	case c == 't':
		return p.literal("true", Value{Kind: Bool, Text: "true"})
	case c == 'f':
		return p.literal("false", Value{Kind: Bool, Text: "false"})
	case c == 'n':
		return p.literal("null", Value{Kind: Null})
	default:
		return Value{}, p.errorf("unexpected character %q", printable(c))
	}
}

func printable(c byte) string {
	if c >= 0x20 && c < 0x7f {
		return string(rune(c))
	}
	return fmt.Sprintf("\\x%02x", c)
}

func (p *parser) literal(word string, v Value) (Value, error) {
	if len(p.data)-p.pos < len(word) || string(p.data[p.pos:p.pos+len(word)]) != word {
		return Value{}, p.errorf("invalid literal (expected %s)", word)
	}
	p.pos += len(word)
	return v, nil
}

func (p *parser) object(depth int) (Value, error) {
	if depth > p.maxDepth {
		return Value{}, &SyntaxError{Offset: p.pos, Msg: ErrTooDeep.Error()}
	}
	p.pos++ // {
	v := Value{Kind: Object, Fields: []Field{}}
	p.skipSpace()
	if p.pos < len(p.data) && p.data[p.pos] == '}' {
		p.pos++
		return v, nil
	}
	for {
		p.skipSpace()
		if p.pos >= len(p.data) || p.data[p.pos] != '"' {
			return Value{}, p.errorf("expected a member name in double quotes")
		}
		name, err := p.str()
		if err != nil {
			return Value{}, err
		}
		for i := range v.Fields {
			if v.Fields[i].Name == name {
				return Value{}, p.errorf("duplicate member %q", clip(name))
			}
		}
		p.skipSpace()
		if p.pos >= len(p.data) || p.data[p.pos] != ':' {
			return Value{}, p.errorf("expected ':' after a member name")
		}
		p.pos++
		p.skipSpace()
		x, err := p.value(depth)
		if err != nil {
			return Value{}, err
		}
		v.Fields = append(v.Fields, Field{Name: name, Value: x})
		p.skipSpace()
		if p.pos >= len(p.data) {
			return Value{}, p.errorf("unexpected end of input in an object")
		}
		switch p.data[p.pos] {
		case ',':
			p.pos++
		case '}':
			p.pos++
			return v, nil
		default:
			return Value{}, p.errorf("expected ',' or '}' in an object")
		}
	}
}

// clip shortens member names quoted in errors: they are element names, but a
// hostile client could send anything as a name.
func clip(s string) string {
	const max = 64
	if len(s) <= max {
		return s
	}
	for i := max; i > 0; i-- {
		if utf8.RuneStart(s[i]) {
			return s[:i] + "…"
		}
	}
	return ""
}

func (p *parser) array(depth int) (Value, error) {
	if depth > p.maxDepth {
		return Value{}, &SyntaxError{Offset: p.pos, Msg: ErrTooDeep.Error()}
	}
	p.pos++ // [
	v := Value{Kind: Array, Items: []Value{}}
	p.skipSpace()
	if p.pos < len(p.data) && p.data[p.pos] == ']' {
		p.pos++
		return v, nil
	}
	for {
		p.skipSpace()
		x, err := p.value(depth)
		if err != nil {
			return Value{}, err
		}
		v.Items = append(v.Items, x)
		p.skipSpace()
		if p.pos >= len(p.data) {
			return Value{}, p.errorf("unexpected end of input in an array")
		}
		switch p.data[p.pos] {
		case ',':
			p.pos++
		case ']':
			p.pos++
			return v, nil
		default:
			return Value{}, p.errorf("expected ',' or ']' in an array")
		}
	}
}

func (p *parser) number() (Value, error) {
	start := p.pos
	d := p.data
	if d[p.pos] == '-' {
		p.pos++
	}
	switch {
	case p.pos < len(d) && d[p.pos] == '0':
		p.pos++
	case p.pos < len(d) && d[p.pos] >= '1' && d[p.pos] <= '9':
		for p.pos < len(d) && d[p.pos] >= '0' && d[p.pos] <= '9' {
			p.pos++
		}
	default:
		return Value{}, p.errorf("invalid number")
	}
	if p.pos < len(d) && d[p.pos] == '.' {
		p.pos++
		n := p.pos
		for p.pos < len(d) && d[p.pos] >= '0' && d[p.pos] <= '9' {
			p.pos++
		}
		if p.pos == n {
			return Value{}, p.errorf("invalid number: no digits after '.'")
		}
	}
	if p.pos < len(d) && (d[p.pos] == 'e' || d[p.pos] == 'E') {
		p.pos++
		if p.pos < len(d) && (d[p.pos] == '+' || d[p.pos] == '-') {
			p.pos++
		}
		n := p.pos
		for p.pos < len(d) && d[p.pos] >= '0' && d[p.pos] <= '9' {
			p.pos++
		}
		if p.pos == n {
			return Value{}, p.errorf("invalid number: no digits in the exponent")
		}
	}
	return Value{Kind: Number, Text: string(d[start:p.pos])}, nil
}

// str decodes a string starting at the opening quote.
func (p *parser) str() (string, error) {
	p.pos++ // "
	d := p.data
	start := p.pos
	// Fast path: no escapes, ASCII or valid UTF-8, no control characters.
	for p.pos < len(d) {
		c := d[p.pos]
		if c == '"' {
			s := d[start:p.pos]
			p.pos++
			return string(s), nil
		}
		if c == '\\' {
			break
		}
		if c < 0x20 {
			return "", p.errorf("control character in a string")
		}
		if c < utf8.RuneSelf {
			p.pos++
			continue
		}
		r, size := utf8.DecodeRune(d[p.pos:])
		if r == utf8.RuneError && size == 1 {
			return "", p.errorf("invalid UTF-8 in a string")
		}
		p.pos += size
	}
	if p.pos >= len(d) {
		return "", p.errorf("unterminated string")
	}
	// Slow path: copy what was scanned, then decode escapes.
	buf := make([]byte, 0, p.pos-start+16)
	buf = append(buf, d[start:p.pos]...)
	for p.pos < len(d) {
		c := d[p.pos]
		switch {
		case c == '"':
			p.pos++
			return string(buf), nil
		case c == '\\':
			if p.pos+1 >= len(d) {
				return "", p.errorf("unterminated escape")
			}
			e := d[p.pos+1]
			p.pos += 2
			switch e {
			case '"', '\\', '/':
				buf = append(buf, e)
			case 'b':
				buf = append(buf, '\b')
			case 'f':
				buf = append(buf, '\f')
			case 'n':
				buf = append(buf, '\n')
			case 'r':
				buf = append(buf, '\r')
			case 't':
				buf = append(buf, '\t')
			case 'u':
				r, err := p.hex4()
				if err != nil {
					return "", err
				}
				if utf16.IsSurrogate(r) {
					// A high surrogate must be followed by \u and a low one.
					r2 := rune(-1)
					if p.pos+1 < len(d) && d[p.pos] == '\\' && d[p.pos+1] == 'u' {
						save := p.pos
						p.pos += 2
						var err error
						if r2, err = p.hex4(); err != nil {
							return "", err
						}
						if dec := utf16.DecodeRune(r, r2); dec != utf8.RuneError {
							r = dec
							r2 = 0
						} else {
							p.pos = save
							r2 = -1
						}
					}
					if r2 != 0 {
						return "", p.errorf("unpaired UTF-16 surrogate in a \\u escape")
					}
				}
				buf = utf8.AppendRune(buf, r)
			default:
				return "", p.errorf("invalid escape \\%s", printable(e))
			}
		case c < 0x20:
			return "", p.errorf("control character in a string")
		case c < utf8.RuneSelf:
			buf = append(buf, c)
			p.pos++
		default:
			r, size := utf8.DecodeRune(d[p.pos:])
			if r == utf8.RuneError && size == 1 {
				return "", p.errorf("invalid UTF-8 in a string")
			}
			buf = append(buf, d[p.pos:p.pos+size]...)
			p.pos += size
		}
	}
	return "", p.errorf("unterminated string")
}

func (p *parser) hex4() (rune, error) {
	if len(p.data)-p.pos < 4 {
		return 0, p.errorf("short \\u escape")
	}
	var r rune
	for i := 0; i < 4; i++ {
		c := p.data[p.pos+i]
		switch {
		case c >= '0' && c <= '9':
			r = r<<4 | rune(c-'0')
		case c >= 'a' && c <= 'f':
			r = r<<4 | rune(c-'a'+10)
		case c >= 'A' && c <= 'F':
			r = r<<4 | rune(c-'A'+10)
		default:
			return 0, p.errorf("invalid hex digit in a \\u escape")
		}
	}
	p.pos += 4
	return r, nil
}

// Marshal returns the compact JSON encoding of v.
func Marshal(v *Value) []byte { return AppendJSON(make([]byte, 0, 1024), v) }

// AppendJSON appends the compact JSON encoding of v to dst.
func AppendJSON(dst []byte, v *Value) []byte {
	switch v.Kind {
	case Null:
		return append(dst, "null"...)
	case Bool, Number:
		return append(dst, v.Text...)
	case String:
		return appendString(dst, v.Text)
	case Array:
		dst = append(dst, '[')
		for i := range v.Items {
			if i > 0 {
				dst = append(dst, ',')
			}
			dst = AppendJSON(dst, &v.Items[i])
		}
		return append(dst, ']')
	case Object:
		dst = append(dst, '{')
		for i := range v.Fields {
			if i > 0 {
				dst = append(dst, ',')
			}
			dst = appendString(dst, v.Fields[i].Name)
			dst = append(dst, ':')
			dst = AppendJSON(dst, &v.Fields[i].Value)
		}
		return append(dst, '}')
	}
	panic("fhir: unknown JSON kind " + v.Kind.String())
}

// AppendIndent appends the JSON encoding of v indented by two spaces a level,
// as _pretty asks for.
func AppendIndent(dst []byte, v *Value) []byte {
	return appendIndent(dst, v, 0)
}

func appendIndent(dst []byte, v *Value, level int) []byte {
	newline := func(dst []byte, level int) []byte {
		dst = append(dst, '\n')
		for i := 0; i < level; i++ {
			dst = append(dst, ' ', ' ')
		}
		return dst
	}
	switch v.Kind {
	case Array:
		if len(v.Items) == 0 {
			return append(dst, "[]"...)
		}
		dst = append(dst, '[')
		for i := range v.Items {
			if i > 0 {
				dst = append(dst, ',')
			}
			dst = newline(dst, level+1)
			dst = appendIndent(dst, &v.Items[i], level+1)
		}
		dst = newline(dst, level)
		return append(dst, ']')
	case Object:
		if len(v.Fields) == 0 {
			return append(dst, "{}"...)
		}
		dst = append(dst, '{')
		for i := range v.Fields {
			if i > 0 {
				dst = append(dst, ',')
			}
			dst = newline(dst, level+1)
			dst = appendString(dst, v.Fields[i].Name)
			dst = append(dst, ':', ' ')
			dst = appendIndent(dst, &v.Fields[i].Value, level+1)
		}
		dst = newline(dst, level)
		return append(dst, '}')
	}
	return AppendJSON(dst, v)
}

const hexDigits = "0123456789abcdef"

func appendString(dst []byte, s string) []byte {
	dst = append(dst, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c >= 0x20 && c != '"' && c != '\\' && c < utf8.RuneSelf {
			i++
			continue
		}
		if c < utf8.RuneSelf {
			dst = append(dst, s[start:i]...)
			switch c {
			case '"', '\\':
				dst = append(dst, '\\', c)
			case '\n':
				dst = append(dst, '\\', 'n')
			case '\r':
				dst = append(dst, '\\', 'r')
			case '\t':
				dst = append(dst, '\\', 't')
			default:
				dst = append(dst, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			// Values built in memory may hold invalid UTF-8; never emit it.
			dst = append(dst, s[start:i]...)
			dst = append(dst, `\ufffd`...)
			i++
			start = i
			continue
		}
		if r == '\u2028' || r == '\u2029' {
			dst = append(dst, s[start:i]...)
			dst = append(dst, '\\', 'u', '2', '0', '2', hexDigits[r&0xf])
			i += size
			start = i
			continue
		}
		i += size
	}
	dst = append(dst, s[start:]...)
	return append(dst, '"')
}
