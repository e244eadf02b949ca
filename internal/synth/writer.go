package synth

// writer appends JSON text to b. Its only state besides the bytes is
// whether the next member or array item needs a comma in front of it, which
// is all that nesting needs: opening an object or array clears the flag, and
// every value, scalar or closed container, sets it.
//
// Member names are trusted constants; string values are escaped.
type writer struct {
	b     []byte
	comma bool
}

// key writes a member name and its colon.
func (w *writer) key(k string) {
	if w.comma {
		w.b = append(w.b, ',')
	}
	w.b = append(w.b, '"')
	w.b = append(w.b, k...)
	w.b = append(w.b, '"', ':')
	w.comma = false
}

// open starts an object ('{') or array ('[') as an array item or, after
// key, as a member's value.
func (w *writer) open(c byte) {
	if w.comma {
		w.b = append(w.b, ',')
	}
	w.b = append(w.b, c)
	w.comma = false
}

// close ends the innermost object ('}') or array (']').
func (w *writer) close(c byte) {
	w.b = append(w.b, c)
	w.comma = true
}

func (w *writer) obj(k string) { w.key(k); w.open('{') }
func (w *writer) arr(k string) { w.key(k); w.open('[') }

// str writes a string member.
func (w *writer) str(k, v string) {
	w.key(k)
	w.quote(v)
	w.comma = true
}

// item writes a string array item.
func (w *writer) item(v string) {
	if w.comma {
		w.b = append(w.b, ',')
	}
	w.quote(v)
	w.comma = true
}

// boolean writes a boolean member.
func (w *writer) boolean(k string, v bool) {
	w.key(k)
	if v {
		w.b = append(w.b, "true"...)
	} else {
		w.b = append(w.b, "false"...)
	}
	w.comma = true
}

// integer writes an integer member.
func (w *writer) integer(k string, v int64) {
	w.key(k)
	w.b = appendInt(w.b, v)
	w.comma = true
}

// decimal writes the number v/10^scale with exactly scale decimals, the way
// FHIR keeps a decimal's precision ("37.0" says more than "37").
func (w *writer) decimal(k string, v int64, scale int) {
	w.key(k)
	w.b = appendDecimal(w.b, v, scale)
	w.comma = true
}

// uuidValue writes a member whose value is prefix followed by a UUID.
func (w *writer) uuidValue(k, prefix string, u *uuid) {
	w.key(k)
	w.b = append(w.b, '"')
	w.b = append(w.b, prefix...)
	w.b = append(w.b, u[:]...)
	w.b = append(w.b, '"')
	w.comma = true
}

// quote appends s as a JSON string. Only the quote, the backslash and
// control characters are escaped; everything else, non-ASCII included, is
// written as it is, so a value's bytes appear verbatim in the output.
func (w *writer) quote(s string) {
	w.b = append(w.b, '"')
	start := 0
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= 0x20 && c != '"' && c != '\\' {
			continue
		}
		w.b = append(w.b, s[start:i]...)
		switch c {
		case '"':
			w.b = append(w.b, '\\', '"')
		case '\\':
			w.b = append(w.b, '\\', '\\')
		case '\n':
			w.b = append(w.b, '\\', 'n')
		case '\t':
			w.b = append(w.b, '\\', 't')
		default:
			const hex = "0123456789abcdef"
			w.b = append(w.b, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xf])
		}
		start = i + 1
	}
	w.b = append(w.b, s[start:]...)
	w.b = append(w.b, '"')
}

func appendInt(b []byte, v int64) []byte {
	if v < 0 {
		b = append(b, '-')
		v = -v
	}
	var buf [20]byte
	i := len(buf)
	for {
		i--
		buf[i] = byte('0' + v%10)
		v /= 10
		if v == 0 {
			break
		}
	}
	return append(b, buf[i:]...)
}

// appendDecimal appends v/10^scale with scale decimals: (3725, 2) is "37.25".
func appendDecimal(b []byte, v int64, scale int) []byte {
	if scale == 0 {
		return appendInt(b, v)
	}
	if v < 0 {
		b = append(b, '-')
		v = -v
	}
	p := pow10[scale]
	b = appendInt(b, v/p)
	b = append(b, '.')
	frac := v % p
	for d := p / 10; d > 0; d /= 10 {
		b = append(b, byte('0'+frac/d%10))
	}
	return b
}

var pow10 = [...]int64{1, 10, 100, 1000, 10000, 100000, 1000000}
