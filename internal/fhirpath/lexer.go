package fhirpath

import (
	"fmt"
	"strconv"
	"strings"
	"unicode/utf8"
)

// tokKind is the kind of a lexical token.
type tokKind uint8

const (
	tEOF      tokKind = iota
	tIdent            // Patient, code, as, and, `delimited`
	tString           // 'text' (Text holds the decoded value)
	tNumber           // 12, 1.5
	tVariable         // $this, %resource (Text holds "$this", "%resource")
	tPunct            // . ( ) [ ] { } ,
	tOp               // = != ~ !~ < > <= >= + - * / & |
	tDate             // @2020-01-01 (recognized only to refuse it clearly)
)

// token is one lexical token. Pos is its byte offset in the source.
type token struct {
	Kind      tokKind
	Text      string
	Pos       int
	Delimited bool // a `backtick` identifier, which is never a keyword
}

func (t token) String() string {
	switch t.Kind {
	case tEOF:
		return "end of expression"
	case tString:
		return "string literal"
	case tNumber:
		return "number " + t.Text
	case tIdent:
		if t.Delimited {
			return "identifier `" + t.Text + "`"
		}
		return "'" + t.Text + "'"
	}
	return "'" + t.Text + "'"
}

// lex splits src into tokens, ending with a tEOF token.
func lex(src string) ([]token, error) {
	var toks []token
	i := 0
	for {
		// Skip white space and comments.
		for i < len(src) {
			c := src[i]
			if c == ' ' || c == '\t' || c == '\n' || c == '\r' {
				i++
				continue
			}
			if c == '/' && i+1 < len(src) && src[i+1] == '/' {
				for i < len(src) && src[i] != '\n' {
					i++
				}
				continue
			}
			if c == '/' && i+1 < len(src) && src[i+1] == '*' {
				end := strings.Index(src[i+2:], "*/")
				if end < 0 {
					return nil, &SyntaxError{Offset: i, Msg: "unterminated comment"}
				}
				i += 2 + end + 2
				continue
			}
			break
		}
		if i >= len(src) {
			return append(toks, token{Kind: tEOF, Pos: i}), nil
		}
		start := i
		c := src[i]
		switch {
		case isIdentStart(c):
			for i < len(src) && isIdentPart(src[i]) {
				i++
			}
			toks = append(toks, token{Kind: tIdent, Text: src[start:i], Pos: start})
		case c == '`':
			s, n, err := unquote(src[i:], '`')
			if err != nil {
				return nil, &SyntaxError{Offset: start + n, Msg: err.Error()}
			}
			i += n
			toks = append(toks, token{Kind: tIdent, Text: s, Pos: start, Delimited: true})
		case c == '\'':
			s, n, err := unquote(src[i:], '\'')
			if err != nil {
				return nil, &SyntaxError{Offset: start + n, Msg: err.Error()}
			}
			i += n
			toks = append(toks, token{Kind: tString, Text: s, Pos: start})
		case c >= '0' && c <= '9':
			for i < len(src) && src[i] >= '0' && src[i] <= '9' {
				i++
			}
			if i+1 < len(src) && src[i] == '.' && src[i+1] >= '0' && src[i+1] <= '9' {
				i++
				for i < len(src) && src[i] >= '0' && src[i] <= '9' {
					i++
				}
			}
			toks = append(toks, token{Kind: tNumber, Text: src[start:i], Pos: start})
		case c == '$' || c == '%':
			i++
			if i < len(src) && isIdentStart(src[i]) {
				for i < len(src) && isIdentPart(src[i]) {
					i++
				}
			} else if c == '%' && i < len(src) && (src[i] == '`' || src[i] == '\'') {
				_, n, err := unquote(src[i:], src[i])
				if err != nil {
					return nil, &SyntaxError{Offset: i + n, Msg: err.Error()}
				}
				i += n
			} else {
				return nil, &SyntaxError{Offset: start, Msg: fmt.Sprintf("expected a name after %q", c)}
			}
			toks = append(toks, token{Kind: tVariable, Text: src[start:i], Pos: start})
		case c == '@':
			i++
			for i < len(src) && (isIdentPart(src[i]) || strings.IndexByte("-:.+", src[i]) >= 0) {
				i++
			}
			toks = append(toks, token{Kind: tDate, Text: src[start:i], Pos: start})
		case strings.IndexByte(".()[]{},", c) >= 0:
			i++
			toks = append(toks, token{Kind: tPunct, Text: src[start:i], Pos: start})
		case c == '!' || c == '<' || c == '>':
			i++
			if i < len(src) && (src[i] == '=' || (c == '!' && src[i] == '~')) {
				i++
			} else if c == '!' {
				return nil, &SyntaxError{Offset: start, Msg: "'!' must be followed by '=' or '~'"}
			}
			toks = append(toks, token{Kind: tOp, Text: src[start:i], Pos: start})
		case strings.IndexByte("=~+-*/&|", c) >= 0:
			i++
			toks = append(toks, token{Kind: tOp, Text: src[start:i], Pos: start})
		default:
			r, _ := utf8.DecodeRuneInString(src[i:])
			return nil, &SyntaxError{Offset: start, Msg: fmt.Sprintf("unexpected character %s", strconv.QuoteRune(r))}
		}
	}
}

func isIdentStart(c byte) bool {
	return c == '_' || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')
}

func isIdentPart(c byte) bool { return isIdentStart(c) || (c >= '0' && c <= '9') }

// unquote decodes a quoted string or delimited identifier at the start of
// s, returning its value and the number of bytes it takes. On error the
// count is the offset of the problem.
func unquote(s string, q byte) (string, int, error) {
	var b strings.Builder
	i := 1
	for i < len(s) {
		c := s[i]
		switch {
		case c == q:
			return b.String(), i + 1, nil
		case c == '\\':
			if i+1 >= len(s) {
				return "", i, errUnterminated(q)
			}
			e := s[i+1]
			switch e {
			case '\'', '"', '`', '\\', '/':
				b.WriteByte(e)
			case 'f':
				b.WriteByte('\f')
			case 'n':
				b.WriteByte('\n')
			case 'r':
				b.WriteByte('\r')
			case 't':
				b.WriteByte('\t')
			case 'u':
				if i+6 > len(s) {
					return "", i, fmt.Errorf("short \\u escape")
				}
				n, err := strconv.ParseUint(s[i+2:i+6], 16, 16)
				if err != nil {
					return "", i, fmt.Errorf("invalid \\u escape")
				}
				b.WriteRune(rune(n))
				i += 6
				continue
			default:
				return "", i, fmt.Errorf("invalid escape \\%c", e)
			}
			i += 2
		default:
			if c >= utf8.RuneSelf {
				r, size := utf8.DecodeRuneInString(s[i:])
				if r == utf8.RuneError && size == 1 {
					return "", i, fmt.Errorf("invalid UTF-8")
				}
				b.WriteString(s[i : i+size])
				i += size
				continue
			}
			b.WriteByte(c)
			i++
		}
	}
	return "", i, errUnterminated(q)
}

func errUnterminated(q byte) error {
	if q == '`' {
		return fmt.Errorf("unterminated delimited identifier")
	}
	return fmt.Errorf("unterminated string literal")
}
