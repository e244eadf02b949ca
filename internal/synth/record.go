package synth

import "strings"

// writeCare writes everything planCare decided, encounter by encounter,
// then what belongs to no encounter.
func (p *patientGen) writeCare() {
	for _, e := range p.encs {
		p.writeEncounter(e)
		for _, c := range e.recorded {
			p.writeCondition(c)
		}
		p.writeVitals(e)
		p.writeLabs(e)
		procs := p.writeProcedures(e)
		for _, v := range e.vax {
			p.writeImmunization(v)
		}
		for _, rx := range e.rxs {
			p.writeMedicationRequest(rx)
		}
		if e.statements {
			p.writeStatements(e)
		}
		if p.chance(0.35) {
			p.writeClaim(e, procs)
		}
	}
	for i := range p.vax {
		if p.vax[i].enc == nil {
			p.writeImmunization(&p.vax[i])
		}
	}
	p.writeAllergies()
	p.writeFamilyHistory()
}

func (p *patientGen) writeEncounter(e *enc) {
	w := &p.w
	p.begin("Encounter", &e.id)
	w.str("status", "finished")
	typ := encCheckUp
	switch e.kind {
	case kWellness:
		p.coding("class", classAmbulatory)
		if p.yearsAt(e.start) < 18 {
			typ = encWellChild
		}
	case kSymptom:
		p.coding("class", classAmbulatory)
		typ = encSymptom
	case kFollowUp:
		p.coding("class", classAmbulatory)
		typ = encFollowUp
	case kEmergency:
		p.coding("class", classEmergency)
		typ = encEmergency
	case kInpatient:
		p.coding("class", classInpatient)
		typ = encInpatient
	}
	p.ccArray("type", typ)
	p.ref("subject", &p.patientID)
	w.arr("participant")
	w.open('{')
	p.ccArray("type", primaryPerformer)
	p.period("period", e.start, e.end)
	p.sharedRef("individual", "Practitioner/", &e.prac.id)
	w.close('}')
	w.close(']')
	p.period("period", e.start, e.end)
	if e.reason != nil {
		w.arr("reasonReference")
		p.refItem("urn:uuid:", &e.reason.id)
		w.close(']')
	}
	if e.kind == kInpatient {
		w.obj("hospitalization")
		p.cc("dischargeDisposition", dischargeHome)
		w.close('}')
	}
	p.sharedRef("serviceProvider", "Organization/", &e.org.id)
	p.end("Encounter", &e.id)
}

func (p *patientGen) writeCondition(c *cond) {
	e := c.enc
	p.begin("Condition", &c.id)
	if c.abated != 0 {
		p.ccCodingOnly("clinicalStatus", condResolved)
	} else {
		p.ccCodingOnly("clinicalStatus", condActive)
	}
	p.ccCodingOnly("verificationStatus", condConfirmed)
	if c.def.chronic {
		p.ccArray("category", condProblem)
	} else {
		p.ccArray("category", condEncounter)
	}
	p.cc("code", c.def.code)
	p.ref("subject", &p.patientID)
	p.ref("encounter", &e.id)
	p.dateTime("onsetDateTime", c.onset)
	if c.abated != 0 {
		p.dateTime("abatementDateTime", c.abated)
	}
	p.dateTime("recordedDate", e.start)
	p.sharedRef("recorder", "Practitioner/", &e.prac.id)
	if len(c.def.notes) > 0 && p.chance(0.3) {
		p.writeNote(c.def.notes, e)
	}
	p.end("Condition", &c.id)
}

// writeNote writes a note member of one Annotation made from a template.
func (p *patientGen) writeNote(templates []string, e *enc) {
	w := &p.w
	text := p.expand(templates[p.pick(len(templates))])
	w.arr("note")
	w.open('{')
	p.sharedRef("authorReference", "Practitioner/", &e.prac.id)
	p.dateTime("time", e.start)
	w.str("text", text)
	w.close('}')
	w.close(']')
	p.identifying(text)
}

// expand fills in a note template (see words.go).
func (p *patientGen) expand(tmpl string) string {
	var b strings.Builder
	b.Grow(len(tmpl) + 32)
	for i := 0; i < len(tmpl); i++ {
		c := tmpl[i]
		if c != '@' || i+1 == len(tmpl) {
			b.WriteByte(c)
			continue
		}
		i++
		switch tmpl[i] {
		case 'F':
			b.WriteString(p.given)
		case 'T':
			b.WriteString(p.town)
		case 'R':
			b.WriteString(relations[p.pick(len(relations))])
		case 'A':
			b.WriteString(activities[p.pick(len(activities))])
		case 'N':
			b.WriteByte(byte('2' + p.pick(8)))
		case 'W':
			b.WriteString(pad(int64(2+p.pick(11)), 1))
		default:
			b.WriteByte('@')
			b.WriteByte(tmpl[i])
		}
	}
	return b.String()
}

func (p *patientGen) writeProcedures(e *enc) []procedure {
	var procs []procedure
	age := p.ageAt(e.start)
	switch e.kind {
	case kWellness:
		if p.onDrugs(e) {
			procs = append(procs, procMedRec)
		}
		if age >= 12 && p.chance(0.5) {
			procs = append(procs, procDepression)
		}
		if age >= 18 && p.chance(0.25) {
			procs = append(procs, procNeeds)
		}
		if p.female && age >= 40 && age < 75 && p.chance(0.45) {
			procs = append(procs, procMammography)
		}
		if age >= 45 && age < 75 && p.chance(0.1) {
			procs = append(procs, procColonoscopy)
		}
	case kFollowUp:
		if (e.reason.def == &chronicDefs[chAsthma] || e.reason.def == &chronicDefs[chCOPD]) && p.chance(0.6) {
			procs = append(procs, procSpirometry)
		}
		if p.onDrugs(e) && p.chance(0.5) {
			procs = append(procs, procMedRec)
		}
	default:
		if e.reason != nil {
			procs = append(procs, e.reason.def.procs...)
		}
	}
	w := &p.w
	t := e.start + 10*minute
	for _, pr := range procs {
		id := p.newID()
		end := min(t+int64(pr.mins)*minute, e.end)
		if e.kind == kInpatient && pr.mins >= 60 {
			t = min(e.start+int64(1+p.pick(4))*hour, e.end-int64(pr.mins)*minute)
			end = t + int64(pr.mins)*minute
		}
		p.begin("Procedure", &id)
		w.str("status", "completed")
		p.cc("code", pr.code)
		p.ref("subject", &p.patientID)
		p.ref("encounter", &e.id)
		p.period("performedPeriod", t, end)
		w.arr("performer")
		w.open('{')
		p.sharedRef("actor", "Practitioner/", &e.prac.id)
		w.close('}')
		w.close(']')
		if e.reason != nil && !e.reason.def.chronic {
			w.arr("reasonReference")
			p.refItem("urn:uuid:", &e.reason.id)
			w.close(']')
		}
		if p.chance(0.1) {
			p.writeNote(notesGeneral[:], e)
		}
		p.end("Procedure", &id)
		t = min(end, e.end)
	}
	return procs
}

func (p *patientGen) writeImmunization(v *vaccination) {
	w := &p.w
	id := p.newID()
	p.begin("Immunization", &id)
	w.str("status", "completed")
	p.cc("vaccineCode", v.code)
	p.ref("patient", &p.patientID)
	if v.enc != nil {
		p.ref("encounter", &v.enc.id)
	}
	p.dateTime("occurrenceDateTime", v.t)
	w.boolean("primarySource", v.enc != nil)
	w.str("lotNumber", string(rune('A'+p.pick(26)))+pad(int64(p.pick(1_000_000)), 6))
	if v.enc != nil {
		w.arr("performer")
		w.open('{')
		p.cc("function", administering)
		p.sharedRef("actor", "Practitioner/", &v.enc.prac.id)
		w.close('}')
		w.close(']')
	}
	p.end("Immunization", &id)
}

func (p *patientGen) writeAllergies() {
	if len(p.encs) == 0 || !p.chance(0.25) {
		return
	}
	w := &p.w
	n := 1 + p.pick(2)
	first := p.pick(len(allergies))
	for k := 0; k < n; k++ {
		a := &allergies[(first+k*3)%len(allergies)]
		e := p.encs[p.pick(len(p.encs))]
		id := p.newID()
		reaction := reactions[p.pick(len(reactions)-1)]
		if a.category == "food" && p.chance(0.15) {
			reaction = reactions[len(reactions)-1] // anaphylaxis
		}
		severe := reaction == reactions[len(reactions)-1]
		p.begin("AllergyIntolerance", &id)
		p.ccCodingOnly("clinicalStatus", allergyActive)
		p.ccCodingOnly("verificationStatus", allergyConfirmed)
		w.str("type", "allergy")
		w.arr("category")
		w.item(a.category)
		w.close(']')
		if severe {
			w.str("criticality", "high")
		} else {
			w.str("criticality", "low")
		}
		p.cc("code", a.code)
		p.ref("patient", &p.patientID)
		p.ref("encounter", &e.id)
		onset := p.between(min(p.birth+180*day, e.start), e.start)
		p.dateTime("onsetDateTime", onset)
		p.dateTime("recordedDate", e.start)
		p.sharedRef("recorder", "Practitioner/", &e.prac.id)
		if p.chance(0.4) {
			p.writeNote(notesAllergy[:], e)
		}
		w.arr("reaction")
		w.open('{')
		w.arr("manifestation")
		p.ccItem(reaction)
		w.close(']')
		switch {
		case severe:
			w.str("severity", "severe")
		case p.chance(0.6):
			w.str("severity", "mild")
		default:
			w.str("severity", "moderate")
		}
		w.close('}')
		w.close(']')
		p.end("AllergyIntolerance", &id)
	}
}

func (p *patientGen) writeFamilyHistory() {
	if len(p.encs) == 0 || !p.chance(0.35) {
		return
	}
	w := &p.w
	e := p.encs[0]
	kin := [...]struct {
		role   concept
		female bool
	}{
		{roleMother, true}, {roleFather, false}, {roleSister, true},
		{roleBrother, false}, {roleGrandmother, true}, {roleGrandfather, false},
	}
	n := 1 + p.pick(3)
	first := p.pick(len(kin))
	for k := 0; k < n; k++ {
		rel := kin[(first+k)%len(kin)]
		cond := familyConditions[p.pick(len(familyConditions))]
		if cond.code == "254837009" && !rel.female { // breast cancer
			cond = familyConditions[0]
		}
		id := p.newID()
		p.begin("FamilyMemberHistory", &id)
		w.str("status", "completed")
		p.ref("patient", &p.patientID)
		p.dateTime("date", e.start)
		p.cc("relationship", rel.role)
		if rel.female {
			p.cc("sex", concept{"http://hl7.org/fhir/administrative-gender", "female", "Female"})
		} else {
			p.cc("sex", concept{"http://hl7.org/fhir/administrative-gender", "male", "Male"})
		}
		w.arr("condition")
		w.open('{')
		p.cc("code", cond)
		w.obj("onsetAge")
		w.decimal("value", int64(35+p.pick(45)), 0)
		w.str("unit", "a")
		w.str("system", sysUCUM)
		w.str("code", "a")
		w.close('}')
		w.close('}')
		w.close(']')
		p.end("FamilyMemberHistory", &id)
	}
}
