package search

import (
	"errors"
	"net/url"
	"strconv"
	"strings"

	"github.com/ehrvault/ehrvault/internal/records"
	"github.com/ehrvault/ehrvault/internal/store"
)

// Errors of values, wrapped in a *QueryError; the API answers every
// QueryError with 400.
var (
	// ErrEscape: a backslash that escapes none of , | $ \ (or ends the value).
	ErrEscape = errors.New("a backslash must be followed by one of , | $ \\")
	// ErrEmpty: the value is empty.
	ErrEmpty = errors.New("the value is empty")
	// ErrToken: a token value with more than one unescaped '|', or only '|'.
	ErrToken = errors.New("a token is code, system|code, |code or system|")
	// ErrNoCriteria: a conditional interaction with no search parameter.
	ErrNoCriteria = errors.New("no search parameter besides _format and _pretty")
	// ErrConditional: a parameter that a conditional interaction cannot use.
	ErrConditional = errors.New("conditional interactions match by equality: tokens, references, uris, strings and birth dates, ANDed, without OR, :not, :missing or ranges")
)

// QueryError reports a search parameter that cannot be parsed or
// compiled. It names the parameter and never quotes the value, which may
// identify a patient.
type QueryError struct {
	Param string
	Err   error
	// ignorable: the parameter is unknown or unsupported, which Prefer:
	// handling=lenient leaves out.
	ignorable bool
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

// Condition compiles the query q of a conditional interaction on typ into
// tokens that all must match (see records.Indexer): parameters whose
// values are tokens (token, reference, uri, string, birth dates), each
// with one value; repeating a parameter ANDs its values. A parameter that
// typ does not have, or that this package does not index, is a
// *records.UnknownParamError; anything else a *QueryError. Errors name the
// parameter, never its value.
func (ix *Indexer) Condition(typ string, q url.Values) ([]store.Token, error) {
	query, err := ix.Parse(typ, q, true)
	if err != nil {
		var qe *QueryError
		if errors.As(err, &qe) && qe.ignorable {
			code, _, _ := strings.Cut(qe.Param, ":")
			return nil, &records.UnknownParamError{Param: code}
		}
		return nil, err
	}
	if len(query.Clauses) == 0 {
		return nil, &QueryError{Err: ErrNoCriteria}
	}
	for name := range query.Used {
		if resultParams[name] {
			return nil, &QueryError{Param: name, Err: ErrConditional}
		}
	}
	h := ix.pool.Get().(*hasher)
	defer ix.pool.Put(h)
	h.sums = h.sums[:0]
	for _, c := range query.Clauses {
		if c.Has != nil || len(c.Chains) > 0 {
			return nil, &QueryError{Param: c.Name, Err: ErrConditional}
		}
		cond, residual, err := compileLocal(h, c)
		if err != nil {
			return nil, err
		}
		if residual || cond.Not || len(cond.Values) > 0 || len(cond.IDs) > 0 || len(cond.Tokens) != 1 {
			return nil, &QueryError{Param: c.Name, Err: ErrConditional}
		}
		h.sums = append(h.sums, [TokenSize]byte(cond.Tokens[0]))
	}
	return h.tokens(), nil
}
