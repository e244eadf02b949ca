package synth

// Prescriptions and the reconciled medication list.

// onDrugs reports whether the patient has an active long-term prescription
// at encounter e.
func (p *patientGen) onDrugs(e *enc) bool {
	for _, rx := range p.rxs {
		if rx.t <= e.end && rx.cond.def.chronic {
			return true
		}
	}
	return false
}

func (p *patientGen) writeMedicationRequest(rx *prescription) {
	w := &p.w
	m := rx.med
	p.begin("MedicationRequest", &rx.id)
	w.str("status", rx.status)
	w.str("intent", "order")
	p.cc("medicationCodeableConcept", m.code)
	p.ref("subject", &p.patientID)
	p.ref("encounter", &rx.enc.id)
	p.dateTime("authoredOn", rx.t)
	p.sharedRef("requester", "Practitioner/", &rx.enc.prac.id)
	w.arr("reasonReference")
	p.refItem("urn:uuid:", &rx.cond.id)
	w.close(']')
	if m.days > 0 {
		p.cc("courseOfTherapyType", courseAcute)
	} else {
		p.cc("courseOfTherapyType", courseContinuous)
	}
	w.arr("dosageInstruction")
	w.open('{')
	w.integer("sequence", 1)
	w.str("text", m.sig)
	w.obj("timing")
	w.obj("repeat")
	if m.asNeed && m.perDay == 0 {
		w.integer("frequency", 1)
		w.decimal("period", int64(m.every), 0)
		w.str("periodUnit", "h")
	} else {
		w.integer("frequency", int64(m.perDay))
		w.decimal("period", 1, 0)
		w.str("periodUnit", "d")
	}
	w.close('}')
	w.close('}')
	w.boolean("asNeededBoolean", m.asNeed)
	w.arr("doseAndRate")
	w.open('{')
	p.cc("type", doseOrdered)
	w.obj("doseQuantity")
	w.decimal("value", int64(m.dose), 0)
	w.str("unit", m.form.display)
	w.str("system", m.form.system)
	w.str("code", m.form.code)
	w.close('}')
	w.close('}')
	w.close(']')
	w.close('}')
	w.close(']')
	days := m.days
	if days == 0 {
		days = 30
	}
	w.obj("dispenseRequest")
	if m.days == 0 {
		w.integer("numberOfRepeatsAllowed", int64(5+p.pick(7)))
	} else {
		w.integer("numberOfRepeatsAllowed", 0)
	}
	perDay := m.perDay
	if perDay == 0 {
		perDay = 24 / m.every
		if perDay > 4 {
			perDay = 4
		}
	}
	units := int64(m.dose * perDay * days)
	if m.form == formInhaler || m.form == formSpray {
		units = 1
	}
	w.obj("quantity")
	w.decimal("value", units, 0)
	w.str("unit", m.form.display)
	w.str("system", m.form.system)
	w.str("code", m.form.code)
	w.close('}')
	w.obj("expectedSupplyDuration")
	w.decimal("value", int64(days), 0)
	w.str("unit", "days")
	w.str("system", sysUCUM)
	w.str("code", "d")
	w.close('}')
	w.close('}')
	p.end("MedicationRequest", &rx.id)
}

// writeStatements writes the medication list reconciled at encounter e: one
// MedicationStatement per long-term drug prescribed so far, and for some
// adults a drug bought over the counter.
func (p *patientGen) writeStatements(e *enc) {
	w := &p.w
	status := "active"
	if p.death != 0 {
		status = "stopped"
	}
	for _, rx := range p.rxs {
		// The latest prescription of each long-term drug by the end of e.
		if rx.t > e.end || !rx.cond.def.chronic || p.laterRx(rx, e.end) {
			continue
		}
		id := p.newID()
		p.begin("MedicationStatement", &id)
		w.str("status", status)
		p.cc("medicationCodeableConcept", rx.med.code)
		p.ref("subject", &p.patientID)
		p.ref("context", &e.id)
		p.period("effectivePeriod", rx.first, 0)
		p.dateTime("dateAsserted", e.start)
		p.ref("informationSource", &p.patientID)
		w.arr("derivedFrom")
		p.refItem("urn:uuid:", &rx.id)
		w.close(']')
		w.arr("reasonReference")
		p.refItem("urn:uuid:", &rx.cond.id)
		w.close(']')
		w.arr("dosage")
		w.open('{')
		w.str("text", rx.med.sig)
		w.close('}')
		w.close(']')
		p.end("MedicationStatement", &id)
	}
	if p.ageAt(e.start) >= 18 && p.chance(0.3) {
		otc := [...]*medication{&medAcetaminophen, &medIbuprofen, &medNaproxenNa}
		m := otc[p.pick(len(otc))]
		id := p.newID()
		p.begin("MedicationStatement", &id)
		w.str("status", status)
		p.cc("medicationCodeableConcept", m.code)
		p.ref("subject", &p.patientID)
		p.ref("context", &e.id)
		p.period("effectivePeriod", max(e.start-p.between(30*day, 700*day), p.birth+18*year), 0)
		p.dateTime("dateAsserted", e.start)
		p.ref("informationSource", &p.patientID)
		w.arr("dosage")
		w.open('{')
		w.str("text", "Takes as needed for headaches; bought over the counter.")
		w.boolean("asNeededBoolean", true)
		w.close('}')
		w.close(']')
		p.end("MedicationStatement", &id)
	}
}

// laterRx reports whether the same drug was prescribed again for the same
// condition after rx and by t.
func (p *patientGen) laterRx(rx *prescription, t int64) bool {
	for _, o := range p.rxs {
		if o != rx && o.cond == rx.cond && o.med == rx.med && o.t > rx.t && o.t <= t {
			return true
		}
	}
	return false
}
