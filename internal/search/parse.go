package search

import (
	"errors"
	"fmt"
	"math"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/ehrvault/ehrvault/internal/fhir"
)

// Query is a parsed search of one resource type: what selects (Clauses,
// ANDed) and what shapes the result (the rest).
type Query struct {
	Type    string
	Clauses []*Clause
	Sort    []SortKey
	// Count is _count: the page size; -1 when not given.
	Count int
	// Summary is _summary: "", "true", "text", "data", "count" or "false".
	Summary string
	// Elements lists _elements: the top-level elements to return.
	Elements []string
	// Total is _total: "", "none", "estimate" or "accurate".
	Total      string
	Include    []*Include
	RevInclude []*Include
	// Page is _page: the cursor of a next page.
	Page string
	// Ignored lists the parameters left out under Prefer: handling=lenient
	// (unknown, or not supported), each with why.
	Ignored []Ignored
	// Used holds the parameters the search obeys, for the self link.
	Used url.Values
}

// Ignored is a parameter a lenient search left out.
type Ignored struct {
	Param string
	Why   string
}

// Clause is one search parameter of a query: its values are ORed.
type Clause struct {
	// Name is the parameter as written, for errors: "subject:Patient.name".
	Name     string
	param    *param
	Modifier string // "", exact, contains, text, not, missing, or a type name for a reference
	// Chains hold a parameter of the resources this reference points to
	// (subject.name), one clause for each type in Targets.
	Chains  []*Clause
	Targets []string
	// Has is a reverse chain: _has:Type:param:…
	Has    *Has
	Values []Value
	raw    string // the value as sent
}

// Has is a reverse chain: the resources of Type whose reference parameter
// param points to the resource, and that meet Inner.
type Has struct {
	Type  string
	param *param
	Inner *Clause
}

// Value is one of a clause's ORed values.
type Value struct {
	// Text is the value unescaped, without its prefix.
	Text string
	// Parts is Text split at unescaped '|' (token, quantity, reference).
	Parts []string
	// Prefix is the comparison of a date, number or quantity: eq, ne, gt,
	// lt, ge, le, sa, eb or ap.
	Prefix string
	// lo and hi bound a date (milliseconds, both included); num and half
	// are a number or quantity and half its precision.
	lo, hi    float64
	num, half float64
	prec      int  // a date's precision: len of yyyy, yyyy-mm, yyyy-mm-dd; 0 for a time
	missing   bool // :missing=true
}

// SortKey is one key of _sort.
type SortKey struct {
	Name  string // as written, without the '-'
	param *param // nil for _lastUpdated
	Desc  bool
}

// Include is one _include or _revinclude.
type Include struct {
	Name    string // as written
	Source  string // the type whose reference parameter is followed
	param   *param // nil for a wildcard
	Target  string // only targets of this type; "" any
	Iterate bool
}

// Limits of a query, so that one request cannot ask for unbounded work.
const (
	maxValues  = 100 // ORed values of one parameter
	maxClauses = 64  // parameters of one query
	maxIncl    = 16  // _include and _revinclude of one query
)

// resultParams shape a result; they select nothing.
var resultParams = map[string]bool{
	"_sort": true, "_count": true, "_include": true, "_revinclude": true,
	"_summary": true, "_elements": true, "_total": true, "_page": true,
	"_format": true, "_pretty": true, "_contained": true, "_containedType": true,
}

// notSupported are standard parameters ehrvault knows and does not
// implement, with why.
var notSupported = map[string]string{
	"_text":          "full-text search is not supported: narratives are stored only sealed",
	"_content":       "full-text search is not supported: resources are stored only sealed",
	"_list":          "_list is not supported yet",
	"_query":         "named queries are not supported",
	"_filter":        "_filter is not supported",
	"_type":          "_type belongs to a search of all types, which is not supported; search one type",
	"_contained":     "searching contained resources is not supported",
	"_containedType": "searching contained resources is not supported",
}

// Errors a parse reports, each wrapped in a *QueryError with the
// parameter's name.
var (
	ErrUnknown      = errors.New("unknown search parameter for this resource type; /metadata lists the supported ones")
	ErrModifier     = errors.New("this modifier is not supported for this parameter")
	ErrPrefix       = errors.New("a comparison prefix (eq, ne, gt, lt, ge, le, sa, eb, ap) is allowed only on date, number and quantity parameters")
	ErrDate         = errors.New("not a date: use yyyy, yyyy-mm, yyyy-mm-dd or yyyy-mm-ddThh:mm[:ss[.sss]][Z|±hh:mm], after an optional prefix")
	ErrNumber       = errors.New("not a number, after an optional prefix")
	ErrQuantity     = errors.New("a quantity is [prefix]number[|system|code]")
	ErrMissing      = errors.New(":missing takes true or false")
	ErrChain        = errors.New("a chain follows a reference parameter to a parameter of its targets: reference[:Type].parameter")
	ErrChainDepth   = errors.New("chains deeper than one level are not supported")
	ErrHas          = errors.New("_has is _has:Type:reference-parameter:parameter=value")
	ErrSort         = errors.New("_sort lists parameters of this type, each optionally preceded by '-'")
	ErrSortKind     = errors.New("sorting is supported by date, number and quantity parameters and _lastUpdated: other values are stored only as keyed hashes")
	ErrSortUnion    = errors.New("this parameter is the union of others: sort by one of them")
	ErrCount        = errors.New("_count must be a non-negative integer")
	ErrSummary      = errors.New("_summary is true, text, data, count or false")
	ErrTotal        = errors.New("_total is none, estimate or accurate")
	ErrElements     = errors.New("_elements lists element names of this type, separated by commas")
	ErrInclude      = errors.New("_include is Type:parameter[:targetType] or *, optionally with :iterate; the parameter must be a reference parameter of Type")
	ErrRevInclude   = errors.New("_revinclude is Type:parameter[:targetType], optionally with :iterate; the parameter must be a reference parameter of Type")
	ErrTooMany      = errors.New("too many values or parameters in one search")
	ErrRepeated     = errors.New("this parameter may appear only once")
	ErrPageMixed    = errors.New("a page cursor (_page) stands for the whole query: send it alone")
	ErrTimeOfDay    = errors.New("this date is searched by the day: leave out the time")
	ErrDateWindow   = errors.New("a range of this date must lie between the years 1801 and 2199")
	ErrNotSupported = errors.New("not supported")
)

// Parse parses the query q of a search of typ. Parameters that typ does not
// have, or that ehrvault does not support, are errors if strict (Prefer:
// handling=strict) and otherwise left out, each named in Query.Ignored.
// Malformed values are always errors. Every error is a *QueryError that
// names the parameter and never quotes its value.
func (ix *Indexer) Parse(typ string, q url.Values, strict bool) (*Query, error) {
	tt := ix.tables[typ]
	if tt == nil {
		return nil, &QueryError{Err: fmt.Errorf("%s is not a resource type", quoteName(typ))}
	}
	out := &Query{Type: typ, Count: -1, Used: url.Values{}}
	names := make([]string, 0, len(q))
	for name := range q {
		names = append(names, name)
	}
	slices.Sort(names) // the same errors, in the same order, for the same query
	if q.Has("_page") {
		for _, n := range names {
			if n != "_page" && n != "_format" && n != "_pretty" {
				return nil, &QueryError{Param: n, Err: ErrPageMixed}
			}
		}
		if len(q["_page"]) != 1 {
			return nil, &QueryError{Param: "_page", Err: ErrRepeated}
		}
		out.Page = q.Get("_page")
		return out, nil
	}
	nclauses := 0
	for _, name := range names {
		vals := q[name]
		base := name
		switch name {
		case "_include:iterate", "_include:recurse":
			base = "_include"
		case "_revinclude:iterate", "_revinclude:recurse":
			base = "_revinclude"
		}
		if resultParams[base] {
			if err := ix.parseResult(out, tt, name, vals); err != nil {
				return nil, err
			}
			if name != "_format" && name != "_pretty" {
				out.Used[name] = vals
			}
			continue
		}
		for _, raw := range vals {
			nclauses++
			if nclauses > maxClauses {
				return nil, &QueryError{Param: name, Err: ErrTooMany}
			}
			c, err := ix.parseClause(typ, name, raw, 0)
			if err != nil {
				var qe *QueryError
				if errors.As(err, &qe) && qe.ignorable && !strict {
					out.Ignored = append(out.Ignored, Ignored{Param: name, Why: qe.Err.Error()})
					break
				}
				return nil, err
			}
			out.Clauses = append(out.Clauses, c)
			out.Used[name] = append(out.Used[name], raw)
		}
	}
	return out, nil
}

// parseResult parses a parameter that shapes the result.
func (ix *Indexer) parseResult(out *Query, tt *typeTable, name string, vals []string) error {
	one := func() (string, error) {
		if len(vals) != 1 {
			return "", &QueryError{Param: name, Err: ErrRepeated}
		}
		return vals[0], nil
	}
	switch name {
	case "_format", "_pretty":
		return nil
	case "_contained", "_containedType":
		return &QueryError{Param: name, Err: errors.New(notSupported[name])}
	case "_count":
		n, err := parseCount(vals)
		if err != nil {
			return err
		}
		out.Count = n
	case "_summary":
		v, err := one()
		if err != nil {
			return err
		}
		switch v {
		case "true", "text", "data", "count", "false":
			out.Summary = v
		default:
			return &QueryError{Param: name, Err: ErrSummary}
		}
	case "_total":
		v, err := one()
		if err != nil {
			return err
		}
		switch v {
		case "none", "estimate", "accurate":
			out.Total = v
		default:
			return &QueryError{Param: name, Err: ErrTotal}
		}
	case "_elements":
		for _, v := range vals {
			for _, e := range strings.Split(v, ",") {
				e = strings.TrimSpace(e)
				if e == "" || !hasElement(out.Type, e) {
					return &QueryError{Param: name, Err: ErrElements}
				}
				out.Elements = append(out.Elements, e)
			}
		}
	case "_sort":
		for _, v := range vals {
			for _, k := range strings.Split(v, ",") {
				k = strings.TrimSpace(k)
				desc := strings.HasPrefix(k, "-")
				k = strings.TrimPrefix(k, "-")
				if k == "" {
					return &QueryError{Param: name, Err: ErrSort}
				}
				sk := SortKey{Name: k, Desc: desc}
				if k != "_lastUpdated" {
					p := tt.byCode[k]
					switch {
					case p == nil:
						return &QueryError{Param: name, Err: ErrSort}
					case p.kind != kindDate && p.kind != kindNumber && p.kind != kindQuantity || identifyingDates[p.code]:
						return &QueryError{Param: name, Err: ErrSortKind}
					case len(p.parts) > 0:
						return &QueryError{Param: name, Err: ErrSortUnion}
					}
					sk.param = p
				}
				out.Sort = append(out.Sort, sk)
			}
		}
	case "_include", "_revinclude", "_include:iterate", "_revinclude:iterate", "_include:recurse", "_revinclude:recurse":
		for _, v := range vals {
			inc, err := ix.parseInclude(out.Type, name, v)
			if err != nil {
				return err
			}
			if strings.HasPrefix(name, "_include") {
				out.Include = append(out.Include, inc)
			} else {
				out.RevInclude = append(out.RevInclude, inc)
			}
			if len(out.Include)+len(out.RevInclude) > maxIncl {
				return &QueryError{Param: name, Err: ErrTooMany}
			}
		}
	}
	return nil
}

// parseCount parses _count: one non-negative integer.
func parseCount(vals []string) (int, error) {
	if len(vals) != 1 {
		return 0, &QueryError{Param: "_count", Err: ErrRepeated}
	}
	n, err := strconv.Atoi(vals[0])
	if err != nil || n < 0 {
		return 0, &QueryError{Param: "_count", Err: ErrCount}
	}
	return n, nil
}

// parseInclude parses one _include or _revinclude value.
func (ix *Indexer) parseInclude(typ, name, v string) (*Include, error) {
	bad := ErrInclude
	rev := strings.HasPrefix(name, "_revinclude")
	if rev {
		bad = ErrRevInclude
	}
	inc := &Include{Name: v}
	if strings.HasSuffix(name, ":iterate") || strings.HasSuffix(name, ":recurse") {
		inc.Iterate = true
	}
	parts := strings.Split(v, ":")
	if n := len(parts); n > 1 && (parts[n-1] == "iterate" || parts[n-1] == "recurse") {
		inc.Iterate = true
		parts = parts[:n-1]
	}
	if !rev && len(parts) == 1 && parts[0] == "*" {
		inc.Source = typ
		return inc, nil
	}
	if len(parts) < 2 || len(parts) > 3 {
		return nil, &QueryError{Param: name, Err: bad}
	}
	tt := ix.tables[parts[0]]
	if tt == nil {
		return nil, &QueryError{Param: name, Err: bad}
	}
	inc.Source = parts[0]
	if parts[1] == "*" && !rev {
		return inc, nil
	}
	p := tt.byCode[parts[1]]
	if p == nil || p.kind != kindReference {
		return nil, &QueryError{Param: name, Err: bad}
	}
	inc.param = p
	if len(parts) == 3 {
		if !fhir.IsResourceType(parts[2]) || len(p.def.target) > 0 && !slices.Contains(p.def.target, parts[2]) {
			return nil, &QueryError{Param: name, Err: bad}
		}
		inc.Target = parts[2]
	}
	return inc, nil
}

// parseClause parses one search parameter of typ. depth counts the chains
// and reverse chains it is inside.
func (ix *Indexer) parseClause(typ, name, raw string, depth int) (*Clause, error) {
	if rest, ok := strings.CutPrefix(name, "_has:"); ok {
		return ix.parseHas(typ, name, rest, raw, depth)
	}
	head, chain, chained := strings.Cut(name, ".")
	code, mod, _ := strings.Cut(head, ":")
	if reason, ok := notSupported[code]; ok {
		return nil, &QueryError{Param: name, Err: errors.New(reason), ignorable: true}
	}
	p := ix.tables[typ].byCode[code]
	if p == nil {
		if ix.isSpecParam(typ, code) {
			return nil, &QueryError{Param: name, Err: errors.New("this parameter's type (composite or special) is not supported yet"), ignorable: true}
		}
		return nil, &QueryError{Param: name, Err: ErrUnknown, ignorable: true}
	}
	c := &Clause{Name: name, param: p, Modifier: mod, raw: raw}
	if chained {
		if p.kind != kindReference {
			return nil, &QueryError{Param: name, Err: ErrChain}
		}
		if depth > 0 {
			return nil, &QueryError{Param: name, Err: ErrChainDepth}
		}
		targets := p.def.target
		if mod != "" {
			if !fhir.IsResourceType(mod) || len(targets) > 0 && !slices.Contains(targets, mod) {
				return nil, &QueryError{Param: name, Err: ErrChain}
			}
			targets = []string{mod}
		}
		chainCode, _, _ := strings.Cut(chain, ".")
		chainCode, _, _ = strings.Cut(chainCode, ":")
		for _, t := range targets {
			if tt := ix.tables[t]; tt != nil && tt.byCode[chainCode] != nil {
				c.Targets = append(c.Targets, t)
			}
		}
		if len(c.Targets) == 0 {
			return nil, &QueryError{Param: name, Err: ErrChain}
		}
		for _, t := range c.Targets {
			inner, err := ix.parseClause(t, chain, raw, depth+1)
			if err != nil {
				var qe *QueryError
				if errors.As(err, &qe) {
					qe.Param = name
				}
				return nil, err
			}
			c.Chains = append(c.Chains, inner)
		}
		c.Modifier = ""
		return c, nil
	}
	if err := checkModifier(p, mod); err != nil {
		return nil, &QueryError{Param: name, Err: err}
	}
	if mod == "missing" {
		switch raw {
		case "true":
			c.Values = []Value{{missing: true}}
		case "false":
			c.Values = []Value{{}}
		default:
			return nil, &QueryError{Param: name, Err: ErrMissing}
		}
		return c, nil
	}
	texts, err := splitOr(raw)
	if err != nil {
		return nil, &QueryError{Param: name, Err: err}
	}
	if len(texts) > maxValues {
		return nil, &QueryError{Param: name, Err: ErrTooMany}
	}
	for _, t := range texts {
		v, err := parseValue(p, mod, t)
		if err != nil {
			return nil, &QueryError{Param: name, Err: err}
		}
		c.Values = append(c.Values, v)
	}
	return c, nil
}

// parseHas parses _has:Type:param:rest, rest being a parameter of Type
// (or another _has).
func (ix *Indexer) parseHas(typ, name, rest, raw string, depth int) (*Clause, error) {
	if depth > 0 {
		return nil, &QueryError{Param: name, Err: ErrChainDepth}
	}
	parts := strings.SplitN(rest, ":", 3)
	if len(parts) != 3 || parts[2] == "" {
		return nil, &QueryError{Param: name, Err: ErrHas}
	}
	tt := ix.tables[parts[0]]
	if tt == nil {
		return nil, &QueryError{Param: name, Err: ErrHas}
	}
	p := tt.byCode[parts[1]]
	if p == nil || p.kind != kindReference || len(p.def.target) > 0 && !slices.Contains(p.def.target, typ) {
		return nil, &QueryError{Param: name, Err: ErrHas}
	}
	inner, err := ix.parseClause(parts[0], parts[2], raw, depth+1)
	if err != nil {
		var qe *QueryError
		if errors.As(err, &qe) {
			qe.Param = name
		}
		return nil, err
	}
	return &Clause{Name: name, Has: &Has{Type: parts[0], param: p, Inner: inner}, raw: raw}, nil
}

// isSpecParam reports whether code is a parameter of typ in the
// specification, of a type ehrvault does not index.
func (ix *Indexer) isSpecParam(typ, code string) bool {
	types := fhir.ResourceTypes()
	for i := range specParams {
		p := &specParams[i]
		if p.code == code && slices.Contains(appliesTo(p, types), typ) {
			return true
		}
	}
	return false
}

// checkModifier says whether mod applies to p.
func checkModifier(p *param, mod string) error {
	if mod == "" || mod == "missing" {
		return nil
	}
	ok := false
	switch p.kind {
	case kindString:
		ok = mod == "exact" || mod == "contains"
	case kindToken:
		ok = mod == "not" || mod == "text"
	case kindReference:
		ok = fhir.IsResourceType(mod) && (len(p.def.target) == 0 || slices.Contains(p.def.target, mod))
	}
	if !ok {
		return ErrModifier
	}
	return nil
}

// prefixes of ordered values.
var valuePrefixes = []string{"eq", "ne", "gt", "lt", "ge", "le", "sa", "eb", "ap"}

// parseValue parses one value of p (with modifier mod).
func parseValue(p *param, mod, text string) (Value, error) {
	v := Value{}
	parts, err := splitValue(text)
	if err != nil {
		return v, err
	}
	v.Parts = parts
	v.Text = strings.Join(parts, "|")
	if v.Text == "" {
		return v, ErrEmpty
	}
	switch p.kind {
	case kindDate, kindNumber, kindQuantity:
		v.Prefix = "eq"
		if len(v.Text) >= 2 && slices.Contains(valuePrefixes, v.Text[:2]) {
			v.Prefix = v.Text[:2]
			v.Text = v.Text[2:]
			v.Parts[0] = v.Parts[0][2:]
		}
	}
	switch p.kind {
	case kindToken:
		if mod == "text" {
			v.Text = strings.Join(parts, "|")
			break
		}
		switch {
		case len(parts) > 2, len(parts) == 2 && parts[0] == "" && parts[1] == "":
			return v, ErrToken
		case len(parts) == 1 && parts[0] == "":
			return v, ErrEmpty
		}
	case kindDate:
		if len(parts) != 1 {
			return v, ErrDate
		}
		lo, hi, prec, ok := searchDate(v.Text)
		if !ok {
			return v, ErrDate
		}
		v.lo, v.hi, v.prec = lo, hi, prec
		if identifyingDates[p.code] && prec == 0 {
			return v, ErrTimeOfDay
		}
	case kindNumber:
		if len(parts) != 1 {
			return v, ErrNumber
		}
		n, half, ok := searchNumber(v.Text)
		if !ok {
			return v, ErrNumber
		}
		v.num, v.half = n, half
	case kindQuantity:
		if len(parts) != 1 && len(parts) != 3 {
			return v, ErrQuantity
		}
		n, half, ok := searchNumber(v.Parts[0])
		if !ok {
			return v, ErrQuantity
		}
		v.num, v.half = n, half
		if len(parts) == 3 && parts[1] != "" && parts[2] == "" {
			return v, ErrQuantity // a system needs a code
		}
	default:
		if len(v.Parts) > 1 && p.kind == kindString {
			v.Parts = []string{v.Text} // a '|' in a string is literal
		}
	}
	return v, nil
}

// splitOr splits a value at unescaped commas: its ORed values, still
// escaped.
func splitOr(v string) ([]string, error) {
	if !strings.Contains(v, ",") {
		return []string{v}, nil
	}
	var out []string
	start := 0
	for i := 0; i < len(v); i++ {
		switch v[i] {
		case '\\':
			i++
		case ',':
			out = append(out, v[start:i])
			start = i + 1
		}
	}
	return append(out, v[start:]), nil
}

// splitValue unescapes a search value (\, \| \$ \\) and splits it at
// unescaped '|'.
func splitValue(v string) ([]string, error) {
	if !strings.ContainsAny(v, `\|`) {
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
		case '|':
			parts = append(parts, b.String())
			b.Reset()
		default:
			b.WriteByte(c)
		}
	}
	return append(parts, b.String()), nil
}

// searchDate parses a date search value: the range of instants it stands
// for (milliseconds, both ends included) and its precision (4, 7 or 10
// for a date; 0 with a time). A time without a zone is taken as UTC.
func searchDate(s string) (lo, hi float64, prec int, ok bool) {
	if len(s) < 4 || !utf8.ValidString(s) {
		return 0, 0, 0, false
	}
	switch len(s) {
	case 4, 7, 10:
		if len(s) == 4 {
			if _, err := strconv.Atoi(s); err != nil || s[0] == '-' || s[0] == '+' {
				return 0, 0, 0, false
			}
		}
		lo, hi, ok := dateRange(s)
		return lo, hi, len(s), ok
	}
	if len(s) < 16 || s[10] != 'T' {
		return 0, 0, 0, false
	}
	if !hasZone(s[11:]) {
		s += "Z"
	}
	lo, hi, ok = dateRange(s)
	return lo, hi, 0, ok
}

// hasZone reports whether a time (after the 'T') ends in a zone.
func hasZone(t string) bool {
	return strings.HasSuffix(t, "Z") || strings.ContainsAny(t, "+-")
}

// searchNumber parses a number search value and half its precision: "100"
// stands for [99.5, 100.5), "100.0" for [99.95, 100.05), "1e2" for [50,
// 150).
func searchNumber(s string) (n, half float64, ok bool) {
	if s == "" || strings.ContainsAny(s, " _") || strings.HasPrefix(s, "+") {
		return 0, 0, false
	}
	f, err := strconv.ParseFloat(s, 64)
	if err != nil || math.IsInf(f, 0) || math.IsNaN(f) {
		return 0, 0, false
	}
	if strings.ContainsAny(s, "xXpP") || strings.EqualFold(s, "inf") || strings.EqualFold(s, "nan") {
		return 0, 0, false
	}
	mant, exp := s, 0
	if i := strings.IndexAny(s, "eE"); i >= 0 {
		mant = s[:i]
		e, err := strconv.Atoi(s[i+1:])
		if err != nil {
			return 0, 0, false
		}
		exp = e
	}
	decimals := 0
	if i := strings.IndexByte(mant, '.'); i >= 0 {
		decimals = len(mant) - i - 1
	}
	return f, 0.5 * math.Pow10(exp-decimals), true
}

// now is the clock of ap (approximately); tests set it.
var now = time.Now

// hasElement reports whether typ has a top-level element name: a JSON
// member ("valueQuantity") or a choice element's name ("value").
func hasElement(typ, name string) bool {
	t := fhir.Type(typ)
	if t == nil {
		return false
	}
	if e, _ := t.Element(name); e != nil {
		return true
	}
	for i := range t.Elements {
		if t.Elements[i].Name == name {
			return true
		}
	}
	return false
}
