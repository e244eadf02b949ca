package synth

// Observations: vital signs, smoking status and laboratory panels with their
// DiagnosticReports.

import "math"

// Body measurements. Median heights by age in years (cm), read off growth
// charts and rounded; children's body mass index medians (kg/m²) likewise.
var (
	heightAges   = [...]float64{0, 0.5, 1, 2, 3, 4, 5, 6, 8, 10, 12, 14, 16, 18, 50, 70, 90, 200}
	heightMale   = [...]float64{50, 67, 76, 88, 96, 103, 110, 116, 128, 138, 149, 164, 173, 176, 176, 173, 170, 170}
	heightFemale = [...]float64{49, 65, 74, 86, 95, 102, 109, 115, 127, 138, 151, 159, 162, 163, 163, 160, 157, 157}
	bmiAges      = [...]float64{0, 0.5, 1, 2, 5, 8, 10, 12, 15, 18}
	bmiChild     = [...]float64{13.5, 17, 17.2, 16.5, 15.4, 15.8, 16.6, 17.6, 19.4, 21.3}
)

func interpolate(xs, ys []float64, x float64) float64 {
	if x <= xs[0] {
		return ys[0]
	}
	for i := 1; i < len(xs); i++ {
		if x <= xs[i] {
			f := (x - xs[i-1]) / (xs[i] - xs[i-1])
			return ys[i-1] + f*(ys[i]-ys[i-1])
		}
	}
	return ys[len(ys)-1]
}

func (p *patientGen) heightAt(age float64) float64 {
	med := heightMale[:]
	if p.female {
		med = heightFemale[:]
	}
	return interpolate(heightAges[:], med, age) * (1 + 0.04*p.heightZ)
}

// bmiAt returns the body mass index at an age: a child's follows the
// median curve at the personal percentile, an adult's drifts up through
// middle age and down in old age.
func (p *patientGen) bmiAt(age float64) float64 {
	if age < 18 {
		return interpolate(bmiAges[:], bmiChild[:], age) * math.Exp(0.1*p.bmiZ)
	}
	v := 24.5*math.Exp(0.16*p.bmiZ) + 0.08*math.Min(age-18, 42)
	if age > 75 {
		v -= 0.1 * (age - 75)
	}
	return v
}

// active reports whether the patient has chronic condition c at t.
func (p *patientGen) active(c int, t int64) bool {
	k := p.chron[c]
	return k != nil && k.onset <= t
}

// scaled rounds v to an integer count of 10^-scale units.
func scaled(v float64, scale int) int64 {
	return int64(math.Round(v * float64(pow10[scale])))
}

// beginObservation opens an Observation with the members every one has.
func (p *patientGen) beginObservation(id *uuid, e *enc, cat, code concept, t, issued int64) {
	p.begin("Observation", id)
	p.w.str("status", "final")
	p.ccArray("category", cat)
	p.cc("code", code)
	p.ref("subject", &p.patientID)
	p.ref("encounter", &e.id)
	p.dateTime("effectiveDateTime", t)
	p.dateTime("issued", issued)
}

func (p *patientGen) vital(e *enc, code concept, t int64, v int64, scale int, unit string) {
	id := p.newID()
	p.beginObservation(&id, e, catVitalSigns, code, t, t)
	p.quantity("valueQuantity", v, scale, unit)
	p.end("Observation", &id)
}

func (p *patientGen) writeVitals(e *enc) {
	t := e.start + int64(3+p.pick(10))*minute
	age := p.ageAt(t)
	fever := e.reason != nil && e.reason.def.fever

	h := p.heightAt(age) + p.normal(0, 0.4)
	bmi := p.bmiAt(age) * (1 + p.normal(0, 0.015))
	wt := bmi * h * h / 10000
	bmi = wt * 10000 / (h * h)
	p.vital(e, vitalHeight, t, scaled(h, 1), 1, "cm")
	p.vital(e, vitalWeight, t, scaled(wt, 1), 1, "kg")
	if age >= 2 {
		p.vital(e, vitalBMI, t, scaled(bmi, 1), 1, "kg/m2")
	}

	if age >= 3 {
		var sys, dia float64
		if age < 18 {
			sys = 92 + 1.3*age
			dia = 55 + 0.7*age
		} else {
			sys = 112 + 0.45*(age-18)
			dia = 72 + 0.15*(age-18)
			if age > 60 {
				dia -= 0.3 * (age - 60)
			}
		}
		sys += p.bpBase + p.normal(0, 7)
		dia += 0.5*p.bpBase + p.normal(0, 5)
		if p.active(chHypertension, t) {
			sys += 12
			dia += 6
		}
		dia = math.Min(dia, sys-25)
		id := p.newID()
		p.beginObservation(&id, e, catVitalSigns, vitalBP, t, t)
		w := &p.w
		w.arr("component")
		w.open('{')
		p.cc("code", vitalSystolic)
		p.quantity("valueQuantity", int64(math.Round(sys)), 0, "mm[Hg]")
		w.close('}')
		w.open('{')
		p.cc("code", vitalDiastolic)
		p.quantity("valueQuantity", int64(math.Round(dia)), 0, "mm[Hg]")
		w.close('}')
		w.close(']')
		p.end("Observation", &id)
	}

	var hr, rr float64
	switch {
	case age < 1:
		hr, rr = p.normal(130, 10), p.normal(36, 4)
	case age < 5:
		hr, rr = p.normal(110, 9), p.normal(26, 3)
	case age < 12:
		hr, rr = p.normal(90, 9), p.normal(20, 2)
	default:
		hr, rr = p.normal(72, 8), p.normal(15, 1.5)
	}
	if e.kind == kEmergency {
		hr += 10
	}
	if fever {
		hr += 12
		rr += 3
	}
	if p.active(chAFib, t) {
		hr += math.Abs(p.normal(8, 12))
	}
	p.vital(e, vitalHeartRate, t, int64(math.Round(hr)), 0, "/min")
	p.vital(e, vitalRespRate, t, int64(math.Round(rr)), 0, "/min")
	temp := p.normal(36.8, 0.25)
	if fever {
		temp = p.normal(38.4, 0.45)
	}
	p.vital(e, vitalTemp, t, scaled(temp, 1), 1, "Cel")

	if e.kind == kWellness && age >= 12 {
		id := p.newID()
		p.beginObservation(&id, e, catSocial, smokingStatus, t, t)
		p.cc("valueCodeableConcept", p.smoking)
		p.end("Observation", &id)
	}
}

// labResult is one laboratory value with its reference range, all in
// 10^-scale units of test.unit.
type labResult struct {
	test          *labTest
	value, lo, hi int64
	hasLo, hasHi  bool
}

func (p *patientGen) result(test *labTest, v float64, lo, hi float64, hasLo, hasHi bool) labResult {
	v = math.Max(v, 0.1)
	return labResult{test, scaled(v, test.scale), scaled(lo, test.scale), scaled(hi, test.scale), hasLo, hasHi}
}

func (p *patientGen) writeLabs(e *enc) {
	age := p.ageAt(e.start)
	t := e.start + int64(15+p.pick(20))*minute
	var bmp, lipid, cbc, a1c bool
	has := func(c int) bool { return p.active(c, e.start) }
	switch e.kind {
	case kWellness:
		if age >= 18 {
			lipid = p.chance(0.15) || age >= 35 && p.chance(0.45) || has(chHyperlipidemia) && p.chance(0.8)
			bmp = p.chance(0.35) || (has(chDiabetes) || has(chCKD) || has(chHypertension)) && p.chance(0.8)
			cbc = p.chance(0.25) || has(chAnemia) && p.chance(0.8)
			a1c = has(chDiabetes) || has(chPrediabetes) && p.chance(0.8) || age >= 45 && p.chance(0.2)
		} else {
			cbc = age >= 0.75 && age < 2 && p.chance(0.5)
		}
	case kFollowUp:
		switch e.reason.def {
		case &chronicDefs[chHypertension], &chronicDefs[chCKD]:
			bmp = true
		case &chronicDefs[chHyperlipidemia]:
			lipid = true
		case &chronicDefs[chDiabetes]:
			bmp, a1c = true, true
		case &chronicDefs[chPrediabetes]:
			a1c = true
		case &chronicDefs[chAnemia], &chronicDefs[chAFib]:
			cbc = true
		default:
			bmp = p.chance(0.2)
		}
	case kSymptom:
		cbc = e.reason.def.infection && p.chance(0.4)
	case kEmergency:
		bmp = p.chance(0.4)
		cbc = bmp || p.chance(0.2)
	case kInpatient:
		bmp, cbc = true, true
	}
	var buf [6]labResult
	male := !p.female
	if bmp {
		glucose := p.normal(88, 8)
		switch {
		case has(chDiabetes):
			glucose = p.normal(165, 35)
		case has(chPrediabetes):
			glucose = p.normal(112, 7)
		}
		creat := p.normal(0.8, 0.11)
		if male {
			creat = p.normal(1.0, 0.13)
		}
		if age < 12 {
			creat = p.normal(0.25+0.03*age, 0.05)
		}
		if has(chCKD) {
			creat = p.normal(1.8, 0.3)
		}
		creatHi := 1.1
		if male {
			creatHi = 1.3
		}
		res := append(buf[:0],
			p.result(&labGlucose, glucose, 70, 99, true, true),
			p.result(&labSodium, p.normal(140, 2), 136, 145, true, true),
			p.result(&labPotassium, p.normal(4.2, 0.3), 3.5, 5.1, true, true),
			p.result(&labCreatinine, creat, 0.6, creatHi, true, true),
		)
		p.writePanel(e, panelBMP, t, res)
	}
	if lipid {
		ldl, hdl, tg := p.normal(105, 20), p.normal(52, 11), p.normal(115, 35)
		if !male {
			hdl += 8
		}
		if has(chHyperlipidemia) {
			ldl += 45
			tg += 60
			if p.rxFor(chHyperlipidemia, e.start) {
				ldl -= 35
			}
		}
		tg = math.Max(tg, 40)
		total := ldl + hdl + tg/5
		res := append(buf[:0],
			p.result(&labCholesterol, total, 0, 200, false, true),
			p.result(&labTriglyceride, tg, 0, 150, false, true),
			p.result(&labLDL, ldl, 0, 100, false, true),
			p.result(&labHDL, hdl, 40, 0, true, false),
		)
		p.writePanel(e, panelLipid, t, res)
	}
	if cbc {
		hb, lo, hi := p.normal(13.6, 0.8), 12.0, 15.5
		switch {
		case age < 12:
			hb, lo, hi = p.normal(12.4, 0.7), 11.0, 14.5
		case male:
			hb, lo, hi = p.normal(15.0, 0.9), 13.5, 17.5
		}
		if has(chAnemia) {
			hb = lo - math.Abs(p.normal(1.5, 0.7))
		}
		wbc := p.normal(7, 1.5)
		if e.reason != nil && e.reason.def.infection {
			wbc = p.normal(13, 2.5)
		}
		res := append(buf[:0],
			p.result(&labHemoglobin, hb, lo, hi, true, true),
			p.result(&labHematocrit, hb*2.95+p.normal(0, 0.8), lo*2.95, hi*2.95, true, true),
			p.result(&labLeukocytes, wbc, 4.5, 11.0, true, true),
			p.result(&labPlatelets, p.normal(260, 50), 150, 400, true, true),
		)
		p.writePanel(e, panelCBC, t, res)
	}
	if a1c {
		v := p.normal(5.2, 0.25)
		switch {
		case has(chDiabetes):
			v = p.normal(7.4, 0.9)
		case has(chPrediabetes):
			v = p.normal(6.0, 0.2)
		}
		res := append(buf[:0], p.result(&labHbA1c, v, 4.0, 5.6, true, true))
		p.writePanel(e, labHbA1c.code, t, res)
	}
}

// rxFor reports whether chronic condition c was treated with a drug
// before t.
func (p *patientGen) rxFor(c int, t int64) bool {
	k := p.chron[c]
	if k == nil {
		return false
	}
	for _, rx := range p.rxs {
		if rx.cond == k && rx.t < t {
			return true
		}
	}
	return false
}

// writePanel writes one Observation per result and a DiagnosticReport
// whose results point at them.
func (p *patientGen) writePanel(e *enc, code concept, t int64, res []labResult) {
	w := &p.w
	issued := t + int64(2*60+p.pick(22*60))*minute
	if issued > p.until {
		issued = p.until
	}
	var ids [4]uuid // the largest panel has four results
	for i := range res {
		r := &res[i]
		ids[i] = p.newID()
		p.beginObservation(&ids[i], e, catLaboratory, r.test.code, t, issued)
		p.quantity("valueQuantity", r.value, r.test.scale, r.test.unit)
		interp := interpNormal
		if r.hasHi && r.value > r.hi {
			interp = interpHigh
		} else if r.hasLo && r.value < r.lo {
			interp = interpLow
		}
		p.ccArray("interpretation", interp)
		w.arr("referenceRange")
		w.open('{')
		if r.hasLo {
			p.quantity("low", r.lo, r.test.scale, r.test.unit) // a SimpleQuantity: no comparator
		}
		if r.hasHi {
			p.quantity("high", r.hi, r.test.scale, r.test.unit)
		}
		w.close('}')
		w.close(']')
		p.end("Observation", &ids[i])
	}
	id := p.newID()
	p.begin("DiagnosticReport", &id)
	w.str("status", "final")
	p.ccArray("category", catLab)
	p.cc("code", code)
	p.ref("subject", &p.patientID)
	p.ref("encounter", &e.id)
	p.dateTime("effectiveDateTime", t)
	p.dateTime("issued", issued)
	w.arr("performer")
	p.refItem("Organization/", &e.org.id)
	w.close(']')
	w.arr("result")
	for i := range res {
		p.refItem("urn:uuid:", &ids[i])
	}
	w.close(']')
	p.end("DiagnosticReport", &id)
}
