package search

import (
	"bytes"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/ehrvault/ehrvault/internal/fhir"
	"github.com/ehrvault/ehrvault/internal/fhirpath"
	"github.com/ehrvault/ehrvault/internal/store"
)

// The forms of the index, beyond the token forms of values.go.
const (
	formPresent   = 'P' // the resource has a value for the parameter (:missing)
	formPrefix    = 'p' // string: a normalized prefix, 1 to maxPrefix runes
	formRaw       = 'X' // string: the value exactly as written (:exact)
	formText      = 't' // token: a normalized prefix of a text or display (:text)
	formYear      = 'y' // an identifying date, hashed: its year
	formMonth     = 'm' // … its year and month
	formDay       = 'd' // … its day
	formYearOnly  = 'Y' // an identifying date that is only a year
	formMonthOnly = 'M' // … only a year and month
	formEarly     = 'E' // … before dateWindowStart
	formLate      = 'Z' // … after dateWindowEnd

	keyDate     = 'D' // the key of a date parameter's values
	keyNumber   = 'N' // a number's
	keyQuantity = 'Q' // a quantity's, with "" | code | system|code
)

// identifyingDates are the date parameters that name somebody: they are
// indexed as keyed hashes of the date at its precisions (equality only),
// never as values in the clear.
var identifyingDates = map[string]bool{"birthdate": true, "death-date": true}

// key returns the keyed hash that values stand under: prefix ‖ form ‖
// lp(vals…), as a token message.
func (h *hasher) key(prefix []byte, form byte, vals ...string) store.Token {
	h.msg = append(h.msg[:0], prefix...)
	h.msg = append(h.msg, form)
	for _, v := range vals {
		h.msg = appendLP(h.msg, v)
	}
	h.mac.Reset()
	h.mac.Write(h.msg)
	return store.Token(bytes.Clone(h.mac.Sum(h.sum[:0])[:TokenSize]))
}

// addString adds the forms of a string value.
func addString(h *hasher, p *param, s string) {
	if s == "" {
		return
	}
	h.add(p.prefix, formRaw, s)
	n := normalize(s)
	if n == "" {
		return
	}
	for _, x := range prefixes(n, stringLengths) {
		h.add(p.prefix, formPrefix, x)
	}
}

// stringParts returns the strings a string parameter matches in a value:
// the value itself, or each part of a HumanName or Address.
func stringParts(n fhirpath.Node) []string {
	v := n.Value
	if v == nil {
		return nil
	}
	if v.Kind == fhir.String {
		return []string{v.Text}
	}
	if v.Kind != fhir.Object || n.Type == nil {
		return nil
	}
	var fields []string
	switch n.Type.Name {
	case "HumanName":
		fields = []string{"text", "family", "given", "prefix", "suffix"}
	case "Address":
		fields = []string{"text", "line", "city", "district", "state", "postalCode", "country"}
	default:
		return nil
	}
	var out []string
	for _, f := range fields {
		x := v.Get(f)
		if x == nil {
			continue
		}
		if x.Kind == fhir.Array {
			for i := range x.Items {
				if x.Items[i].Kind == fhir.String {
					out = append(out, x.Items[i].Text)
				}
			}
		} else if x.Kind == fhir.String {
			out = append(out, x.Text)
		}
	}
	return out
}

// addTokenText adds the :text forms of a Coding's display or a
// CodeableConcept's text and displays.
func addTokenText(h *hasher, p *param, n fhirpath.Node) {
	for _, t := range tokenTexts(n) {
		if n := normalize(t); n != "" {
			for _, x := range prefixes(n, textLengths) {
				h.add(p.prefix, formText, x)
			}
		}
	}
}

// tokenTexts returns the texts that :text matches in a token value: a
// Coding's display, a CodeableConcept's text and displays, an
// Identifier's type text.
func tokenTexts(n fhirpath.Node) []string {
	v := n.Value
	if v == nil || v.Kind != fhir.Object || n.Type == nil {
		return nil
	}
	var texts []string
	switch n.Type.Name {
	case "Coding":
		texts = append(texts, v.Str("display"))
	case "CodeableConcept":
		texts = append(texts, v.Str("text"))
		if c := v.Get("coding"); c != nil && c.Kind == fhir.Array {
			for i := range c.Items {
				texts = append(texts, c.Items[i].Str("display"))
			}
		}
	case "Identifier":
		if t := v.Get("type"); t != nil {
			texts = append(texts, t.Str("text"))
		}
	}
	return texts
}

// dateRange returns the range of instants, in milliseconds since 1970
// (both ends included), that a FHIR date, dateTime or instant stands for
// at its precision: "2020" is all of 2020 (UTC), "2020-03-01T10:00:00Z"
// that second. ok is false for a value that is not one.
func dateRange(s string) (lo, hi float64, ok bool) {
	var start, end time.Time
	switch {
	case len(s) == 4:
		y, err := strconv.Atoi(s)
		if err != nil {
			return 0, 0, false
		}
		start = time.Date(y, 1, 1, 0, 0, 0, 0, time.UTC)
		end = start.AddDate(1, 0, 0)
	case len(s) == 7:
		t, err := time.Parse("2006-01", s)
		if err != nil {
			return 0, 0, false
		}
		start, end = t, t.AddDate(0, 1, 0)
	case len(s) == 10:
		t, err := time.Parse("2006-01-02", s)
		if err != nil {
			return 0, 0, false
		}
		start, end = t, t.AddDate(0, 0, 1)
	default:
		t, err := time.Parse(time.RFC3339Nano, s)
		if err != nil {
			// A time without seconds (allowed in search values).
			if t, err = time.Parse("2006-01-02T15:04Z07:00", s); err != nil {
				return 0, 0, false
			}
			return ms(t), ms(t.Add(time.Minute)) - 1, true
		}
		start = t
		frac := strings.IndexByte(s, '.')
		switch {
		case frac < 0:
			end = t.Add(time.Second)
		default:
			digits := 0
			for _, c := range s[frac+1:] {
				if c < '0' || c > '9' {
					break
				}
				digits++
			}
			step := time.Millisecond
			if digits < 3 {
				step = time.Duration(math.Pow10(3-digits)) * time.Millisecond
			}
			end = t.Add(step)
		}
	}
	return ms(start), ms(end) - 1, true
}

func ms(t time.Time) float64 { return float64(t.UnixMilli()) }

// addDate adds the values (or, for an identifying date, the tokens) of a
// date parameter's value: a date, dateTime, instant, Period or Timing.
func addDate(h *hasher, p *param, n fhirpath.Node) {
	v := n.Value
	if v == nil {
		return
	}
	add := func(lo, hi float64) {
		h.values = append(h.values, store.Value{Key: h.key(p.prefix, keyDate), Lo: lo, Hi: hi})
	}
	if v.Kind == fhir.String {
		if identifyingDates[p.code] {
			addDateTokens(h, p, v.Text)
			return
		}
		if lo, hi, ok := dateRange(v.Text); ok {
			add(lo, hi)
		}
		return
	}
	if v.Kind != fhir.Object || n.Type == nil {
		return
	}
	switch n.Type.Name {
	case "Period":
		lo, hi := math.Inf(-1), math.Inf(1)
		if s := v.Str("start"); s != "" {
			if l, _, ok := dateRange(s); ok {
				lo = l
			}
		}
		if e := v.Str("end"); e != "" {
			if _, h2, ok := dateRange(e); ok {
				hi = h2
			}
		}
		if lo <= hi && (v.Str("start") != "" || v.Str("end") != "") {
			add(lo, hi)
		}
	case "Timing":
		if ev := v.Get("event"); ev != nil && ev.Kind == fhir.Array {
			for i := range ev.Items {
				if lo, hi, ok := dateRange(ev.Items[i].Text); ok {
					add(lo, hi)
				}
			}
		}
		if r := v.Get("repeat"); r != nil {
			if b := r.Get("boundsPeriod"); b != nil {
				addDate(h, p, fhirpath.Node{Value: b, Type: fhir.Type("Period")})
			}
		}
	}
}

// addDateTokens adds an identifying date as keyed hashes of its year, its
// month and its day, each as far as the date is precise, and of its
// precision, so that a range of dates can be asked for as a union of
// years, months and days (see identifyingRange). A time of day is not
// indexed: these dates are searched by the day.
func addDateTokens(h *hasher, p *param, s string) {
	if len(s) < 4 {
		return
	}
	y, err := strconv.Atoi(s[:4])
	if err != nil {
		return
	}
	switch {
	case y < dateWindowStart:
		h.add(p.prefix, formEarly)
	case y > dateWindowEnd:
		h.add(p.prefix, formLate)
	}
	h.add(p.prefix, formYear, s[:4])
	switch {
	case len(s) == 4:
		h.add(p.prefix, formYearOnly, s)
	case len(s) == 7:
		h.add(p.prefix, formMonth, s)
		h.add(p.prefix, formMonthOnly, s)
	case len(s) >= 10:
		h.add(p.prefix, formMonth, s[:7])
		h.add(p.prefix, formDay, s[:10])
	}
}

// addNumber adds a number parameter's value.
func addNumber(h *hasher, p *param, n fhirpath.Node) {
	if v := n.Value; v != nil && v.Kind == fhir.Number {
		if f, err := strconv.ParseFloat(v.Text, 64); err == nil && !math.IsInf(f, 0) {
			h.values = append(h.values, store.Value{Key: h.key(p.prefix, keyNumber), Lo: f, Hi: f})
		}
	}
}

// addQuantity adds a quantity parameter's value under three keys: any
// unit, its code (or unit text), and system|code.
func addQuantity(h *hasher, p *param, n fhirpath.Node) {
	v := n.Value
	if v == nil || v.Kind != fhir.Object {
		return
	}
	num := v.Get("value")
	if num == nil || num.Kind != fhir.Number {
		return
	}
	f, err := strconv.ParseFloat(num.Text, 64)
	if err != nil || math.IsInf(f, 0) {
		return
	}
	add := func(k store.Token) { h.values = append(h.values, store.Value{Key: k, Lo: f, Hi: f}) }
	add(h.key(p.prefix, keyQuantity))
	system, code := v.Str("system"), v.Str("code")
	if code == "" {
		code = v.Str("unit")
	}
	if code != "" {
		add(h.key(p.prefix, keyQuantity, "", code))
		if system != "" {
			add(h.key(p.prefix, keyQuantity, system, code))
		}
	}
	if u := v.Str("unit"); u != "" && u != code {
		add(h.key(p.prefix, keyQuantity, "", u))
	}
}
