package synth

import (
	"cmp"
	"math"
	"slices"
)

// cond is one condition of the patient.
type cond struct {
	def    *condDef
	id     uuid
	onset  int64
	abated int64 // 0 while unresolved at the end of the record
	enc    *enc  // the encounter at which it was recorded
}

// enc is one encounter and what is attached to it.
type enc struct {
	id         uuid
	kind       encKind
	start, end int64
	prac       *practitioner
	org        *organization
	reason     *cond   // the acute condition treated, or the chronic one followed up
	recorded   []*cond // conditions recorded at this encounter
	vax        []*vaccination
	rxs        []*prescription
	statements bool // the patient's medication list is reconciled here
}

type vaccination struct {
	code concept
	t    int64
	enc  *enc // nil for a vaccination recorded without an encounter of ours
}

type prescription struct {
	id     uuid
	med    *medication
	cond   *cond
	enc    *enc
	t      int64
	status string
	first  int64 // when this drug was first prescribed for this condition
}

// planCare decides the patient's conditions, encounters, vaccinations and
// prescriptions.
func (p *patientGen) planCare() {
	p.planChronic()
	p.planEncounters()
	p.planVaccinations()
	p.planPrescriptions()
}

// prevalence returns the chance that someone aged age (at the end of the
// record) has chronic condition c, and the youngest age at which it starts.
func (p *patientGen) prevalence(c int, age float64) (prob, minAge float64) {
	has := func(c int) bool { return p.chron[c] != nil }
	smoker := p.smoking != smokerNever
	switch c {
	case chHypertension:
		switch {
		case age < 18:
			return 0, 0
		case age < 25:
			return 0.01, 18
		case age < 40:
			return 0.08, 25
		case age < 60:
			return 0.30, 30
		}
		return 0.55, 35
	case chHyperlipidemia:
		if age < 35 {
			return 0, 0
		}
		return math.Min(0.1+0.004*(age-35), 0.35), 35
	case chDiabetes:
		if age < 30 {
			return 0, 0
		}
		prob = 0.04 + 0.002*(age-30)
		if p.bmiAt(age) >= 30 {
			prob += 0.1
		}
		return prob, 30
	case chPrediabetes:
		if age < 25 || has(chDiabetes) {
			return 0, 0
		}
		prob = 0.08
		if p.bmiAt(age) >= 30 {
			prob += 0.06
		}
		return prob, 25
	case chObesity:
		if age < 18 || p.bmiAt(age) < 30 {
			return 0, 0
		}
		return 1, math.Max(18, age-10)
	case chAsthma:
		if age < 2 {
			return 0, 0
		}
		return 0.08, 2
	case chCKD:
		if age < 50 {
			return 0, 0
		}
		prob = 0.03
		if has(chHypertension) || has(chDiabetes) {
			prob += 0.1
		}
		return prob, 50
	case chAnemia:
		switch {
		case p.female && age >= 12 && age < 50:
			return 0.07, 12
		case age >= 65:
			return 0.06, 65
		}
		return 0, 0
	case chDepression:
		if age < 14 {
			return 0, 0
		}
		return 0.09, 14
	case chCOPD:
		switch {
		case age >= 45 && smoker:
			return 0.2, 45
		case age >= 55:
			return 0.02, 55
		}
		return 0, 0
	case chAFib:
		if age < 60 {
			return 0, 0
		}
		return 0.02 + 0.003*(age-60), 60
	case chCHD:
		if age < 50 {
			return 0, 0
		}
		prob = 0.03 + 0.004*(age-50)
		if smoker {
			prob += 0.04
		}
		return prob, 50
	case chOsteoarthritis:
		if age < 50 {
			return 0, 0
		}
		return 0.1, 50
	case chOsteoporosis:
		switch {
		case p.female && age >= 55:
			return 0.15, 55
		case age >= 65:
			return 0.03, 65
		}
		return 0, 0
	case chAlzheimers:
		if age < 70 {
			return 0, 0
		}
		return 0.02 + 0.008*(age-70), 70
	case chRhinitis:
		if age < 3 {
			return 0, 0
		}
		return 0.1, 3
	}
	return 0, 0
}

func (p *patientGen) planChronic() {
	age := p.ageAt(p.until)
	for c := range numChronic {
		prob, minAge := p.prevalence(c, age)
		if prob <= 0 || age <= minAge || !p.chance(prob) {
			continue
		}
		hi := age
		if c == chAsthma && p.chance(0.7) {
			hi = math.Min(age, 12) // asthma mostly starts in childhood
		}
		onset := p.birth + int64((minAge+p.r.Float64()*(hi-minAge))*year)
		p.addChronic(c, min(onset, p.until-day))
	}
}

func (p *patientGen) addChronic(c int, onset int64) *cond {
	k := &cond{def: &chronicDefs[c], id: p.newID(), onset: onset}
	p.chron[c] = k
	p.conds = append(p.conds, k)
	switch c {
	case chHypertension:
		alt := [...]medication{medLisinopril, medAmlodipine, medHCTZ}
		first := p.pick(len(alt))
		p.scheme[c] = append(p.scheme[c], alt[first])
		if p.chance(0.3) {
			p.scheme[c] = append(p.scheme[c], alt[(first+1+p.pick(2))%3])
		}
	case chHyperlipidemia:
		if p.chance(0.5) {
			p.scheme[c] = []medication{medSimvastatin}
		} else {
			p.scheme[c] = []medication{medAtorvastatin}
		}
	case chDiabetes:
		p.scheme[c] = []medication{medMetformin}
	case chAsthma:
		p.scheme[c] = []medication{medAlbuterol}
		if p.chance(0.5) {
			p.scheme[c] = append(p.scheme[c], medFluticasone)
		}
	case chCOPD:
		p.scheme[c] = []medication{medAlbuterol, medFluticasone}
	case chAnemia:
		p.scheme[c] = []medication{medFerrous}
	case chDepression:
		if p.chance(0.7) {
			p.scheme[c] = []medication{medCitalopram}
		}
	case chAFib:
		p.scheme[c] = []medication{medWarfarin}
		if p.chance(0.3) {
			p.scheme[c] = append(p.scheme[c], medDigoxin)
		}
	case chCHD:
		p.scheme[c] = []medication{medClopidogrel, medNitro}
	case chOsteoarthritis:
		p.scheme[c] = []medication{medNaproxen}
	case chOsteoporosis:
		p.scheme[c] = []medication{medAlendronate}
	case chAlzheimers:
		p.scheme[c] = []medication{medGalantamine}
	case chRhinitis:
		if p.chance(0.6) {
			p.scheme[c] = []medication{medFexofenadine}
		}
	}
	return k
}

func (p *patientGen) planEncounters() {
	opt := &p.g.opt
	n := opt.MinEncounters + p.pick(opt.MaxEncounters-opt.MinEncounters+1)
	if p.ageAt(p.until) >= 65 {
		n = min(n+p.pick(3), opt.MaxEncounters)
	}
	// Leave a week before the end for the longest hospital stay, and no
	// more than one encounter per three weeks of record (an infant's record
	// is short), a week apart where there is room.
	last := p.until - 8*day
	n = max(min(n, int((last-p.start)/(21*day))), opt.MinEncounters)
	times := make([]int64, n)
	for k := range times {
		times[k] = p.between(p.start, last)
	}
	slices.Sort(times)
	for k := 1; k < n; k++ {
		times[k] = min(max(times[k], times[k-1]+7*day), last)
	}
	p.encs = make([]*enc, 0, n)
	for _, t := range times {
		e := &enc{id: p.newID(), start: t}
		switch u := p.r.Float64(); {
		case u < 0.36:
			e.kind = kWellness
		case u < 0.62:
			e.kind = kSymptom
		case u < 0.82:
			e.kind = kFollowUp
		case u < 0.94:
			e.kind = kEmergency
			if p.ageAt(t) < 1 && p.chance(0.6) {
				e.kind = kSymptom // infants are mostly seen in the office
			}
		default:
			e.kind = kInpatient
		}
		p.schedule(e)
		p.encs = append(p.encs, e)
	}
	// Office visits moved to office hours may have changed places.
	slices.SortStableFunc(p.encs, func(a, b *enc) int { return cmp.Compare(a.start, b.start) })

	// Chronic conditions are recorded at the first encounter on or after
	// their onset. One that began after the last encounter is moved before
	// it: the record knows only what was seen.
	lastEnc := p.encs[len(p.encs)-1]
	for _, c := range p.conds {
		if c.onset > lastEnc.start {
			c.onset = max(lastEnc.start-p.between(day, 90*day), p.birth+day)
		}
		for _, e := range p.encs {
			if e.start >= c.onset {
				c.enc = e
				break
			}
		}
		if c.enc == nil { // every encounter on the day of birth
			c.enc, c.onset = lastEnc, lastEnc.start
		}
	}

	for _, e := range p.encs {
		if e.kind == kFollowUp {
			var pool [numChronic]*cond
			m := 0
			for _, c := range p.chron {
				if c != nil && c.enc.start <= e.start {
					pool[m] = c
					m++
				}
			}
			if m == 0 {
				// Nothing to follow up: a check-up or a sick visit instead.
				e.kind = kSymptom
				if p.chance(0.5) {
					e.kind = kWellness
					e.end += 30 * minute
				}
			} else {
				e.reason = pool[p.pick(m)]
			}
		}
		if e.kind == kSymptom || e.kind == kEmergency || e.kind == kInpatient {
			p.planAcute(e)
		}
	}
	// A chronic condition revealed by an acute one (the coronary disease
	// behind a heart attack) has been added by planAcute, with its
	// encounter.
	for _, c := range p.conds {
		c.enc.recorded = append(c.enc.recorded, c)
	}
}

// schedule fixes an encounter's hours, place and practitioner.
func (p *patientGen) schedule(e *enc) {
	sh := p.g.shared
	switch e.kind {
	case kWellness, kSymptom, kFollowUp:
		d := localDay(e.start, p.off)
		e.start = localTime(d, 8*hour+int64(p.pick(9*60))*minute, p.off)
		if e.start < p.start {
			e.start += day
		}
		dur := 20 + p.pick(25)
		if e.kind == kWellness {
			dur += 30
		}
		e.end = e.start + int64(dur)*minute
		e.org = p.clinic
		e.prac = p.pcp
		if p.chance(0.2) {
			e.prac = &sh.pracs[p.clinic.pracs[p.pick(len(p.clinic.pracs))]]
		}
	default:
		e.org = p.hospital
		e.prac = &sh.pracs[p.hospital.pracs[p.pick(len(p.hospital.pracs))]]
		e.end = e.start + int64(90+p.pick(300))*minute
	}
}

// planAcute picks what brought the patient in and how long it lasts.
func (p *patientGen) planAcute(e *enc) {
	age := p.yearsAt(e.start)
	day0 := localDay(e.start, p.off)
	total := 0
	var fits [32]*condDef
	var weights [32]int
	m := 0
	for i := range acuteDefs {
		d := &acuteDefs[i]
		if d.setting != e.kind || age < d.minAge || age > d.maxAge || day0 < d.sinceDay {
			continue
		}
		if d.sex == 'f' && !p.female || d.sex == 'm' && p.female {
			continue
		}
		w := d.weight
		if d.leadsTo != nil && age < 55 && p.chron[chCHD] == nil {
			w = 0 // heart attacks in the middle-aged only with known disease
		}
		if w == 0 {
			continue
		}
		fits[m], weights[m] = d, w
		total += w
		m++
	}
	if m == 0 {
		// The tables have a condition for every age in every setting;
		// this is only a guard.
		e.kind = kWellness
		return
	}
	u := p.pick(total)
	var d *condDef
	for k := 0; k < m; k++ {
		if u < weights[k] {
			d = fits[k]
			break
		}
		u -= weights[k]
	}
	if e.kind == kInpatient {
		stay := d.stay[0] + p.pick(d.stay[1]-d.stay[0]+1)
		e.end = e.start + int64(stay)*day + int64(p.pick(8*60))*minute
		if e.end > p.until-hour {
			e.end = p.until - hour
		}
	}
	c := &cond{def: d, id: p.newID(), enc: e}
	c.onset = max(e.start-p.between(2*hour, 5*day), p.birth)
	if e.kind == kEmergency || e.kind == kInpatient && d.leadsTo != nil {
		c.onset = max(e.start-p.between(20*minute, 6*hour), p.birth)
	}
	c.abated = e.start + int64(d.days[0]+p.pick(d.days[1]-d.days[0]+1))*day
	if c.abated > p.until {
		c.abated = 0
	}
	e.reason = c
	p.conds = append(p.conds, c)
	if d.leadsTo != nil && p.chron[chCHD] == nil {
		k := p.addChronic(chCHD, e.start)
		k.enc = e
	}
	if d.afterwards != nil {
		p.conds = append(p.conds, &cond{def: d.afterwards, id: p.newID(), onset: e.end - hour, enc: e})
	}
}

// Vaccination schedules. Ages are in days.
var childVaccines = [...]struct {
	code concept
	age  int
}{
	{vaxHepBPed, 0}, {vaxHepBPed, 30}, {vaxHepBPed, 180},
	{vaxDTaP, 61}, {vaxDTaP, 122}, {vaxDTaP, 183}, {vaxDTaP, 456}, {vaxDTaP, 1461},
	{vaxIPV, 61}, {vaxIPV, 122}, {vaxIPV, 183}, {vaxIPV, 1461},
	{vaxHib, 61}, {vaxHib, 122}, {vaxHib, 365},
	{vaxPCV13, 61}, {vaxPCV13, 122}, {vaxPCV13, 183}, {vaxPCV13, 365},
	{vaxRotavirus, 61}, {vaxRotavirus, 122},
	{vaxMMR, 365}, {vaxMMR, 1461},
	{vaxVaricella, 365}, {vaxVaricella, 1461},
	{vaxHepAPed, 365}, {vaxHepAPed, 548},
	{vaxTdap, 4020}, {vaxHPV, 4020}, {vaxHPV, 4200}, {vaxMenACWY, 4020}, {vaxMenACWY, 5845},
}

func (p *patientGen) planVaccinations() {
	add := func(code concept, t int64) {
		// Vaccines are given in the daytime, within the record and life.
		d := localDay(t, p.off)
		t = localTime(d, 9*hour+int64(p.pick(7*60))*minute, p.off)
		if t < p.start || t < p.birth || t > p.until-hour {
			return
		}
		p.vax = append(p.vax, vaccination{code: code, t: t})
	}
	if p.chance(0.92) {
		for _, v := range childVaccines {
			add(v.code, p.birth+int64(v.age+p.pick(21))*day)
		}
	}
	// Adults: tetanus every ten years, shingles and pneumococcal vaccines
	// when old enough, hepatitis B for some.
	if p.chance(0.6) {
		for a := 21 + p.pick(4); a < 100; a += 10 {
			add(vaxTd, p.birth+int64(a)*year+p.between(0, 200*day))
		}
	}
	if p.chance(0.5) {
		add(vaxZoster, p.birth+int64(60+p.pick(6))*year+p.between(0, 300*day))
	}
	if p.chance(0.7) {
		t := p.birth + 65*year + p.between(0, 300*day)
		add(vaxPCV13, t)
		add(vaxPPSV23, t+365*day)
	}
	if p.chance(0.15) {
		t := p.birth + int64(19+p.pick(40))*year
		add(vaxHepBAdult, t)
		add(vaxHepBAdult, t+30*day)
		add(vaxHepBAdult, t+180*day)
	}
	// Influenza each autumn from six months of age, by a share of people
	// that depends on age.
	y0, _, _ := civilFromDays(localDay(p.start, p.off))
	y1, _, _ := civilFromDays(localDay(p.until, p.off))
	for y := y0 - 1; y <= y1; y++ {
		t := localTime(daysFromCivil(y, 9, 15), 0, p.off) + p.between(0, 100*day)
		age := p.ageAt(t)
		share := 0.45
		switch {
		case age < 0.5:
			continue
		case age < 18:
			share = 0.6
		case age >= 65:
			share = 0.7
		}
		if p.chance(share) {
			add(vaxFlu, t)
		}
	}
	// COVID-19: two doses in 2021 for most people twelve and older, and a
	// booster for some.
	covid := localTime(daysFromCivil(2021, 1, 15), 0, p.off)
	if p.ageAt(covid) >= 12 && p.chance(0.7) {
		code, gap := vaxCovidPfz, int64(21*day)
		if p.chance(0.4) {
			code, gap = vaxCovidMod, 28*day
		}
		t := covid + p.between(0, 150*day)
		if p.ageAt(covid) >= 65 {
			t = covid + p.between(0, 60*day)
		}
		add(code, t)
		add(code, t+gap)
		if p.chance(0.5) {
			add(code, localTime(daysFromCivil(2021, 10, 15), 0, p.off)+p.between(0, 120*day))
		}
	}

	// A vaccination within a month of a check-up is given at the check-up,
	// unless the check-up already gives that vaccine.
	for i := range p.vax {
		v := &p.vax[i]
		var best *enc
		for _, e := range p.encs {
			if e.kind != kWellness || e.gives(v.code) {
				continue
			}
			if dt := e.start - v.t; dt < 30*day && dt > -30*day {
				if best == nil || abs64(e.start-v.t) < abs64(best.start-v.t) {
					best = e
				}
			}
		}
		if best != nil {
			v.enc = best
			v.t = best.start + int64(5+p.pick(10))*minute
			best.vax = append(best.vax, v)
		}
	}
}

// gives reports whether vaccine code is given at e.
func (e *enc) gives(code concept) bool {
	for _, v := range e.vax {
		if v.code == code {
			return true
		}
	}
	return false
}

func abs64(v int64) int64 {
	if v < 0 {
		return -v
	}
	return v
}

// planPrescriptions writes the prescriptions: a short course for an acute
// condition, and a chronic condition's drugs when it is recorded and renewed
// about yearly (or when it is the reason for a visit) afterwards. The last
// prescription of a drug stays active; those it replaced are completed.
func (p *patientGen) planPrescriptions() {
	type key struct {
		c   *cond
		med int
	}
	latest := make(map[key]*prescription)
	var lastAny [numChronic]int64
	add := func(e *enc, c *cond, med *medication, t int64) *prescription {
		rx := &prescription{id: p.newID(), med: med, cond: c, enc: e, t: t, first: t}
		e.rxs = append(e.rxs, rx)
		p.rxs = append(p.rxs, rx)
		return rx
	}
	var lastVisit *enc
	for _, e := range p.encs {
		t := e.start + (e.end-e.start)*3/4
		if c := e.reason; c != nil && !c.def.chronic {
			meds := c.def.adultMeds
			if p.yearsAt(e.start) < 12 {
				meds = c.def.childMeds
			}
			for i := range meds {
				rx := add(e, c, &meds[i], t)
				rx.status = "completed"
				if t+int64(meds[i].days)*day > p.until {
					rx.status = "active"
				}
			}
		}
		for ci, c := range p.chron {
			if c == nil || c.enc == nil || c.enc.start > e.start || len(p.scheme[ci]) == 0 {
				continue
			}
			renew := e.kind == kWellness || e.kind == kFollowUp
			due := lastAny[ci] == 0 || e.start-lastAny[ci] >= 330*day || e.reason == c
			if c.enc != e && !(renew && due) {
				continue
			}
			for mi := range p.scheme[ci] {
				rx := add(e, c, &p.scheme[ci][mi], t)
				k := key{c, mi}
				if prev := latest[k]; prev != nil {
					prev.status = "completed"
					rx.first = prev.first
				}
				rx.status = "active"
				latest[k] = rx
			}
			lastAny[ci] = e.start
		}
		if e.kind == kWellness || e.kind == kFollowUp {
			lastVisit = e
		}
	}
	if p.death != 0 {
		for _, rx := range p.rxs {
			if rx.status == "active" {
				rx.status = "stopped"
			}
		}
	}
	if lastVisit != nil {
		lastVisit.statements = true
	}
}
