package search

import (
	"math"
	"strings"
	"time"

	"github.com/ehrvault/ehrvault/internal/fhirpath"
	"github.com/ehrvault/ehrvault/internal/store"
)

// compileLocal compiles a clause that needs nothing but its own values (no
// chain, no _has) into one store condition. residual reports that the
// condition finds a superset, and each resource it finds must be checked
// against the clause itself (matchClause) once opened: a string longer
// than the indexed prefixes, :contains.
func compileLocal(h *hasher, c *Clause) (cond store.Cond, residual bool, err error) {
	p := c.param
	if len(p.parts) > 0 {
		// A union of other parameters: any of them (none of them, for
		// :not and :missing=true).
		for _, part := range p.parts {
			pc := *c
			pc.param = part
			cc, res, err := compileLocal(h, &pc)
			if err != nil {
				return cond, false, err
			}
			cond.Tokens = append(cond.Tokens, cc.Tokens...)
			cond.Values = append(cond.Values, cc.Values...)
			cond.Not = cc.Not
			residual = residual || res
		}
		return cond, residual, nil
	}
	if c.Modifier == "missing" {
		return store.Cond{Tokens: []store.Token{h.key(p.prefix, formPresent)}, Not: c.Values[0].missing}, false, nil
	}
	switch p.kind {
	case kindToken:
		if c.Modifier == "text" {
			for _, v := range c.Values {
				n := normalize(v.Text)
				if n == "" {
					return cond, false, &QueryError{Param: c.Name, Err: ErrEmpty}
				}
				x, whole, ok := indexedPrefix(n, textLengths)
				if !ok {
					// Shorter than any indexed prefix: every resource
					// with a text is a candidate.
					return store.Cond{Tokens: []store.Token{h.key(p.prefix, formPresent)}}, true, nil
				}
				residual = residual || !whole
				cond.Tokens = append(cond.Tokens, h.key(p.prefix, formText, x))
			}
			return cond, residual, nil
		}
		for _, v := range c.Values {
			cond.Tokens = append(cond.Tokens, tokenOf(h, p, v.Parts))
		}
		cond.Not = c.Modifier == "not"
	case kindString:
		for _, v := range c.Values {
			switch c.Modifier {
			case "exact":
				cond.Tokens = append(cond.Tokens, h.key(p.prefix, formRaw, v.Text))
			case "contains":
				if normalize(v.Text) == "" {
					return cond, false, &QueryError{Param: c.Name, Err: ErrEmpty}
				}
				residual = true
			default:
				n := normalize(v.Text)
				if n == "" {
					return cond, false, &QueryError{Param: c.Name, Err: ErrEmpty}
				}
				x, whole, _ := indexedPrefix(n, stringLengths) // every value reaches length 1
				residual = residual || !whole
				cond.Tokens = append(cond.Tokens, h.key(p.prefix, formPrefix, x))
			}
		}
		if c.Modifier == "contains" {
			// Nothing is indexed for it: every resource with a value is a
			// candidate.
			cond = store.Cond{Tokens: []store.Token{h.key(p.prefix, formPresent)}}
		}
	case kindReference:
		for _, v := range c.Values {
			cond.Tokens = append(cond.Tokens, refToken(h, p, c.Modifier, v.Text))
		}
	case kindURI:
		for _, v := range c.Values {
			cond.Tokens = append(cond.Tokens, h.key(p.prefix, formURI, v.Text))
		}
	case kindDate:
		if identifyingDates[p.code] {
			for _, v := range c.Values {
				ts, err := identifyingTokens(h, p, v)
				if err != nil {
					return cond, false, &QueryError{Param: c.Name, Err: err}
				}
				cond.Tokens = append(cond.Tokens, ts...)
			}
			return cond, false, nil
		}
		key := h.key(p.prefix, keyDate)
		for _, v := range c.Values {
			cond.Values = append(cond.Values, dateRanges(key, v)...)
		}
	case kindNumber:
		key := h.key(p.prefix, keyNumber)
		for _, v := range c.Values {
			cond.Values = append(cond.Values, numberRanges(key, v)...)
		}
	case kindQuantity:
		for _, v := range c.Values {
			var key store.Token
			switch {
			case len(v.Parts) == 1 || v.Parts[1] == "" && v.Parts[2] == "":
				key = h.key(p.prefix, keyQuantity)
			case v.Parts[1] == "":
				key = h.key(p.prefix, keyQuantity, "", v.Parts[2])
			default:
				key = h.key(p.prefix, keyQuantity, v.Parts[1], v.Parts[2])
			}
			cond.Values = append(cond.Values, numberRanges(key, v)...)
		}
	}
	return cond, residual, nil
}

// tokenOf returns the token a token value stands for.
func tokenOf(h *hasher, p *param, parts []string) store.Token {
	if len(parts) == 1 {
		return h.key(p.prefix, formCode, parts[0])
	}
	system, code := parts[0], parts[1]
	switch {
	case system == "":
		return h.key(p.prefix, formNoSystem, code)
	case code == "":
		return h.key(p.prefix, formSystem, system)
	}
	return h.key(p.prefix, formSystemCode, system, code)
}

// refToken returns the token a reference value stands for: the row of
// Type/id (its version dropped), a bare id, or an absolute URL or
// canonical as written. typ is the :Type modifier, if any.
func refToken(h *hasher, p *param, typ, s string) store.Token {
	if t, id, ok := fhirpath.ReferenceTarget(s); ok && !strings.Contains(s, "://") {
		return h.key(p.prefix, formRefRow, h.rowID(t, id))
	}
	if typ != "" && validID(s) {
		return h.key(p.prefix, formRefRow, h.rowID(typ, s))
	}
	if validID(s) {
		return h.key(p.prefix, formRefID, s)
	}
	return h.key(p.prefix, formRef, s)
}

// rowToken returns the token of a reference, by parameter p, to the row
// of a resource.
func rowToken(h *hasher, p *param, row string) store.Token {
	return h.key(p.prefix, formRefRow, row)
}

// approxWidth is how far ap (approximately) reaches on each side of a
// date: a tenth of its distance from now.
func approxWidth(v Value) float64 {
	n := float64(now().UnixMilli())
	return math.Abs(n-(v.lo+v.hi)/2) / 10
}

// dateMatch is the R4 comparison of a resource's date range [lo, hi]
// with a search value v: eq, the value's range contains the resource's;
// gt, the resource's range reaches above the value's; ge, gt or eq; sa,
// it starts after the value's range; ap, the ranges overlap once the
// value's is widened by approxWidth on each side.
func dateMatch(prefix string, lo, hi, pl, ph, w float64) bool {
	in := lo >= pl && hi <= ph
	switch prefix {
	case "eq":
		return in
	case "ne":
		return !in
	case "gt":
		return hi > ph
	case "lt":
		return lo < pl
	case "ge":
		return hi > ph || in
	case "le":
		return lo < pl || in
	case "sa":
		return lo > ph
	case "eb":
		return hi < pl
	case "ap":
		return lo <= ph+w && hi >= pl-w
	}
	return false
}

// dateRanges compiles a date value into value ranges (ORed) that
// dateMatch describes.
func dateRanges(key store.Token, v Value) []store.ValueRange {
	r := func(bs ...store.Bound) store.ValueRange { return store.ValueRange{Key: key, Bounds: bs} }
	b := func(end, op string, x float64) store.Bound { return store.Bound{End: end, Op: op, V: x} }
	in := r(b("lo", ">=", v.lo), b("hi", "<=", v.hi))
	switch v.Prefix {
	case "ne":
		return []store.ValueRange{r(b("lo", "<", v.lo)), r(b("hi", ">", v.hi))}
	case "gt":
		return []store.ValueRange{r(b("hi", ">", v.hi))}
	case "lt":
		return []store.ValueRange{r(b("lo", "<", v.lo))}
	case "ge":
		return []store.ValueRange{r(b("hi", ">", v.hi)), in}
	case "le":
		return []store.ValueRange{r(b("lo", "<", v.lo)), in}
	case "sa":
		return []store.ValueRange{r(b("lo", ">", v.hi))}
	case "eb":
		return []store.ValueRange{r(b("hi", "<", v.lo))}
	case "ap":
		w := approxWidth(v)
		return []store.ValueRange{r(b("lo", "<=", v.hi+w), b("hi", ">=", v.lo-w))}
	}
	return []store.ValueRange{in}
}

// numberMatch is the R4 comparison of a number x with a search value v:
// eq means within v's precision ("100" is [99.5, 100.5)); the order
// prefixes compare with v exactly; ap means within 10% of v (at least its
// precision).
func numberMatch(prefix string, x float64, v Value) bool {
	switch prefix {
	case "eq":
		return x >= v.num-v.half && x < v.num+v.half
	case "ne":
		return x < v.num-v.half || x >= v.num+v.half
	case "gt", "sa":
		return x > v.num
	case "lt", "eb":
		return x < v.num
	case "ge":
		return x >= v.num
	case "le":
		return x <= v.num
	case "ap":
		w := max(math.Abs(v.num)/10, v.half)
		return x >= v.num-w && x <= v.num+w
	}
	return false
}

// numberRanges compiles a number value into value ranges that numberMatch
// describes (values of numbers are points: lo = hi).
func numberRanges(key store.Token, v Value) []store.ValueRange {
	r := func(bs ...store.Bound) store.ValueRange { return store.ValueRange{Key: key, Bounds: bs} }
	b := func(op string, x float64) store.Bound { return store.Bound{End: "lo", Op: op, V: x} }
	switch v.Prefix {
	case "ne":
		return []store.ValueRange{r(b("<", v.num-v.half)), r(b(">=", v.num+v.half))}
	case "gt", "sa":
		return []store.ValueRange{r(b(">", v.num))}
	case "lt", "eb":
		return []store.ValueRange{r(b("<", v.num))}
	case "ge":
		return []store.ValueRange{r(b(">=", v.num))}
	case "le":
		return []store.ValueRange{r(b("<=", v.num))}
	case "ap":
		w := max(math.Abs(v.num)/10, v.half)
		return []store.ValueRange{r(b(">=", v.num-w), b("<=", v.num+w))}
	}
	return []store.ValueRange{r(b(">=", v.num-v.half), b("<", v.num+v.half))}
}

// The years within which identifying dates can be searched by range;
// dates outside them are indexed as "early" or "late".
const (
	dateWindowStart = 1800
	dateWindowEnd   = 2200
)

func yearStart(y int) float64 { return ms(time.Date(y, 1, 1, 0, 0, 0, 0, time.UTC)) }

// identifyingTokens compiles a value of an identifying date (birthdate,
// death-date) into the tokens of the dates that match it: dateMatch on
// each possible indexed date (a year, a month or a day), as a union of
// whole years, whole months, days, and dates that are only a year or a
// month. Only the years, months and days that a bound of the comparison
// falls into need looking at closely; all others match entirely or not
// at all.
func identifyingTokens(h *hasher, p *param, v Value) ([]store.Token, error) {
	if v.Prefix == "eq" {
		switch v.prec {
		case 4:
			return []store.Token{h.key(p.prefix, formYear, v.Text)}, nil
		case 7:
			return []store.Token{h.key(p.prefix, formMonth, v.Text)}, nil
		}
		return []store.Token{h.key(p.prefix, formDay, v.Text[:10])}, nil
	}
	w := 0.0
	if v.Prefix == "ap" {
		w = approxWidth(v)
	}
	bounds := []float64{v.lo, v.hi, v.lo - w, v.hi + w}
	for _, b := range bounds {
		if b < yearStart(dateWindowStart+1) || b >= yearStart(dateWindowEnd) {
			return nil, ErrDateWindow
		}
	}
	match := func(lo, hi float64) bool { return dateMatch(v.Prefix, lo, hi, v.lo, v.hi, w) }
	// mixed reports whether a bound falls into [lo, hi+1 ms]: the cells
	// inside may then differ.
	mixed := func(lo, hi float64) bool {
		for _, b := range bounds {
			if b >= lo && b <= hi+1 {
				return true
			}
		}
		return false
	}
	var out []store.Token
	if match(yearStart(1000), yearStart(1001)-1) {
		out = append(out, h.key(p.prefix, formEarly))
	}
	if match(yearStart(3000), yearStart(3001)-1) {
		out = append(out, h.key(p.prefix, formLate))
	}
	for y := dateWindowStart; y <= dateWindowEnd; y++ {
		ylo, yhi := yearStart(y), yearStart(y+1)-1
		ys := time.Date(y, 1, 1, 0, 0, 0, 0, time.UTC).Format("2006")
		if !mixed(ylo, yhi) {
			if match(ylo, yhi) {
				out = append(out, h.key(p.prefix, formYear, ys))
			}
			continue
		}
		if match(ylo, yhi) {
			out = append(out, h.key(p.prefix, formYearOnly, ys))
		}
		for m := time.January; m <= time.December; m++ {
			start := time.Date(y, m, 1, 0, 0, 0, 0, time.UTC)
			end := start.AddDate(0, 1, 0)
			mlo, mhi := ms(start), ms(end)-1
			mstr := start.Format("2006-01")
			if !mixed(mlo, mhi) {
				if match(mlo, mhi) {
					out = append(out, h.key(p.prefix, formMonth, mstr))
				}
				continue
			}
			if match(mlo, mhi) {
				out = append(out, h.key(p.prefix, formMonthOnly, mstr))
			}
			for d := start; d.Before(end); d = d.AddDate(0, 0, 1) {
				if match(ms(d), ms(d.AddDate(0, 0, 1))-1) {
					out = append(out, h.key(p.prefix, formDay, d.Format("2006-01-02")))
				}
			}
		}
	}
	return out, nil
}
