package search

import (
	"errors"
	"net/url"
	"slices"
	"strconv"
	"strings"

	"github.com/ehrvault/ehrvault/internal/fhirpath"
	"github.com/ehrvault/ehrvault/internal/records"
	"github.com/ehrvault/ehrvault/internal/store"
)

// Errors a QueryError wraps. Callers test them with errors.Is; the API
// answers all of them with 400.
var (
	// ErrOr: a value holds an unescaped comma, which means OR.
	ErrOr = errors.New("OR (a comma in the value) is not supported yet for conditional interactions; escape a literal comma as \\,")
	// ErrModifier: the parameter carries a modifier (name:modifier).
	ErrModifier = errors.New("modifiers are not supported yet")
	// ErrEscape: a backslash that escapes none of , | $ \ (or ends the value).
	ErrEscape = errors.New("a backslash must be followed by one of , | $ \\")
	// ErrEmpty: the value is empty.
	ErrEmpty = errors.New("the value is empty")
	// ErrToken: a token value with more than one unescaped '|', or only '|'.
	ErrToken = errors.New("a token is code, system|code, |code or system|")
	// ErrNoCriteria: nothing but _format and _pretty was given.
	ErrNoCriteria = errors.New("no search parameter besides _format and _pretty")
)

// QueryError reports a search parameter that Condition cannot compile. It
// names the parameter and never quotes the value, which may identify a
// patient.
type QueryError struct {
	Param string
	Err   error
}

func (e *QueryError) Error() string {
	if e.Param == "" {
		return "search: " + e.Err.Error()
	}
	return "search parameter " + quoteName(e.Param) + ": " + e.Err.Error()
}

func (e *QueryError) Unwrap() error { return e.Err }

// quoteName quotes a parameter name for an error message, shortened: it
// comes from the client.
func quoteName(s string) string {
	const max = 64
	if len(s) > max {
		s = s[:max] + "…"
	}
	return strconv.Quote(s)
}

// ignored lists the parameters Condition skips: they shape the response,
// not the match.
var ignored = map[string]bool{"_format": true, "_pretty": true}

// Condition compiles the query q of a conditional interaction on typ into
// tokens that all must match (see records.Indexer). Repeating a parameter
// ANDs its values. A parameter that typ does not have, or that this
// package does not index, is a *records.UnknownParamError; anything else
// malformed is a *QueryError. Errors name the parameter, never its value.
func (ix *Indexer) Condition(typ string, q url.Values) ([]store.Token, error) {
	tt := ix.tables[typ]
	names := make([]string, 0, len(q))
	for name := range q {
		if !ignored[name] {
			names = append(names, name)
		}
	}
	if len(names) == 0 {
		return nil, &QueryError{Err: ErrNoCriteria}
	}
	slices.Sort(names) // report the same error for the same query
	h := ix.pool.Get().(*hasher)
	defer ix.pool.Put(h)
	h.sums = h.sums[:0]
	for _, name := range names {
		code, _, modified := strings.Cut(name, ":")
		var p *param
		if tt != nil {
			p = tt.byCode[code]
		}
		if p == nil {
			return nil, &records.UnknownParamError{Param: code}
		}
		if modified {
			return nil, &QueryError{Param: name, Err: ErrModifier}
		}
		for _, v := range q[name] {
			if err := addQueryValue(h, p, v); err != nil {
				return nil, &QueryError{Param: name, Err: err}
			}
		}
	}
	return h.tokens(), nil
}

// addQueryValue adds the token a query value of p stands for.
func addQueryValue(h *hasher, p *param, v string) error {
	parts, err := splitValue(v)
	if err != nil {
		return err
	}
	switch p.kind {
	case kindToken:
		switch len(parts) {
		case 1:
			if parts[0] == "" {
				return ErrEmpty
			}
			h.add(p.prefix, formCode, parts[0])
		case 2:
			system, code := parts[0], parts[1]
			switch {
			case system == "" && code == "":
				return ErrToken
			case system == "":
				h.add(p.prefix, formNoSystem, code)
			case code == "":
				h.add(p.prefix, formSystem, system)
			default:
				h.add(p.prefix, formSystemCode, system, code)
			}
		default:
			return ErrToken
		}
		return nil
	}
	// A '|' in a reference or uri is literal: canonical|version.
	s := strings.Join(parts, "|")
	if s == "" {
		return ErrEmpty
	}
	if p.kind == kindURI {
		h.add(p.prefix, formURI, s)
		return nil
	}
	switch typ, id, ok := fhirpath.ReferenceTarget(s); {
	case ok && !strings.Contains(s, "://"):
		h.add(p.prefix, formRef, typ+"/"+id)
	case !ok && validID(s):
		h.add(p.prefix, formRefID, s)
	default:
		h.add(p.prefix, formRef, s)
	}
	return nil
}

// splitValue unescapes a search value (\, \| \$ \\) and splits it at
// unescaped '|'. An unescaped ',' (OR) is refused.
func splitValue(v string) ([]string, error) {
	if !strings.ContainsAny(v, `\|,`) {
		return []string{v}, nil
	}
	var parts []string
	var b strings.Builder
	for i := 0; i < len(v); i++ {
		switch c := v[i]; c {
		case '\\':
			if i+1 >= len(v) || !strings.ContainsRune(`,|$\`, rune(v[i+1])) {
				return nil, ErrEscape
			}
			i++
			b.WriteByte(v[i])
		case ',':
			return nil, ErrOr
		case '|':
			parts = append(parts, b.String())
			b.Reset()
		default:
			b.WriteByte(c)
		}
	}
	return append(parts, b.String()), nil
}
