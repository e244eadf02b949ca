package synth

// Times inside the generator are int64 seconds since the Unix epoch (UTC);
// each patient lives in one fixed UTC offset, in minutes, and dates and
// times are written in that offset. Doing the calendar arithmetic here,
// rather than through time.Time, keeps formatting cheap: a bundle holds
// thousands of dates.

const (
	minute = 60
	hour   = 60 * minute
	day    = 24 * hour
	year   = 31556952 // seconds in a mean Gregorian year (365.2425 days)
)

// daysFromCivil returns the number of days from 1970-01-01 to y-m-d in the
// proleptic Gregorian calendar (H. Hinnant, "chrono-Compatible Low-Level
// Date Algorithms").
func daysFromCivil(y, m, d int) int {
	if m <= 2 {
		y--
	}
	era := floorDiv(y, 400)
	yoe := y - era*400
	mp := (m + 9) % 12
	doy := (153*mp+2)/5 + d - 1
	doe := yoe*365 + yoe/4 - yoe/100 + doy
	return era*146097 + doe - 719468
}

// civilFromDays is the inverse of daysFromCivil.
func civilFromDays(z int) (y, m, d int) {
	z += 719468
	era := floorDiv(z, 146097)
	doe := z - era*146097
	yoe := (doe - doe/1460 + doe/36524 - doe/146096) / 365
	y = yoe + era*400
	doy := doe - (365*yoe + yoe/4 - yoe/100)
	mp := (5*doy + 2) / 153
	d = doy - (153*mp+2)/5 + 1
	m = mp + 3
	if m > 12 {
		m -= 12
	}
	if m <= 2 {
		y++
	}
	return y, m, d
}

func floorDiv(a, b int) int {
	q := a / b
	if (a%b != 0) && ((a < 0) != (b < 0)) {
		q--
	}
	return q
}

func floorDiv64(a, b int64) int64 {
	q := a / b
	if (a%b != 0) && ((a < 0) != (b < 0)) {
		q--
	}
	return q
}

// localDay returns the day number of instant t in a zone offMin minutes
// east of UTC.
func localDay(t int64, offMin int) int {
	return int(floorDiv64(t+int64(offMin)*minute, day))
}

// localTime returns the instant of local day d at seconds sec after
// midnight.
func localTime(d int, sec int64, offMin int) int64 {
	return int64(d)*day + sec - int64(offMin)*minute
}

func append2(b []byte, v int) []byte { return append(b, byte('0'+v/10), byte('0'+v%10)) }

func appendYMD(b []byte, y, m, d int) []byte {
	b = append(b, byte('0'+y/1000), byte('0'+y/100%10), byte('0'+y/10%10), byte('0'+y%10), '-')
	b = append2(b, m)
	b = append(b, '-')
	return append2(b, d)
}

// appendDate appends day number d as a FHIR date, "2006-01-02".
func appendDate(b []byte, d int) []byte {
	y, m, dd := civilFromDays(d)
	return appendYMD(b, y, m, dd)
}

// appendDateTime appends t as a FHIR dateTime (also a valid instant) in the
// zone offMin minutes east of UTC: "2006-01-02T15:04:05-07:00".
func appendDateTime(b []byte, t int64, offMin int) []byte {
	local := t + int64(offMin)*minute
	d := floorDiv64(local, day)
	sec := int(local - d*day)
	b = appendDate(b, int(d))
	b = append(b, 'T')
	b = append2(b, sec/3600)
	b = append(b, ':')
	b = append2(b, sec/60%60)
	b = append(b, ':')
	b = append2(b, sec%60)
	if offMin == 0 {
		return append(b, 'Z')
	}
	sign := byte('+')
	if offMin < 0 {
		sign = '-'
		offMin = -offMin
	}
	b = append(b, sign)
	b = append2(b, offMin/60)
	b = append(b, ':')
	return append2(b, offMin%60)
}

// ageYears returns the age in whole years on day d of someone born on day
// birth.
func ageYears(birth, d int) int {
	by, bm, bd := civilFromDays(birth)
	y, m, dd := civilFromDays(d)
	age := y - by
	if m < bm || (m == bm && dd < bd) {
		age--
	}
	return age
}
