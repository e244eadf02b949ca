package synth

// Claims and what the insurer made of them.

// Charges, in cents, for an encounter of each kind.
var encounterCharge = [...][2]int64{
	kWellness:  {15000, 26000},
	kSymptom:   {9000, 16000},
	kFollowUp:  {10000, 18000},
	kEmergency: {60000, 250000},
	kInpatient: {350000, 650000}, // per day
}

func (p *patientGen) writeClaim(e *enc, procs []procedure) {
	w := &p.w
	claimID, eobID := p.newID(), p.newID()
	ch := encounterCharge[e.kind]
	charges := make([]int64, 0, 1+len(procs))
	base := ch[0] + p.r.Int64N(ch[1]-ch[0])
	if e.kind == kInpatient {
		base *= max(1, (e.end-e.start)/day)
	}
	charges = append(charges, base)
	var total int64 = base
	for _, pr := range procs {
		c := pr.cost + p.r.Int64N(pr.cost/5+1)
		charges = append(charges, c)
		total += c
	}
	typ := claimProfessional
	if e.kind == kEmergency || e.kind == kInpatient {
		typ = claimInstitution
	}
	var encType concept
	switch e.kind {
	case kWellness:
		encType = encCheckUp
	case kSymptom:
		encType = encSymptom
	case kFollowUp:
		encType = encFollowUp
	case kEmergency:
		encType = encEmergency
	default:
		encType = encInpatient
	}
	created := min(e.end+int64(1+p.pick(48))*hour, p.until)

	p.begin("Claim", &claimID)
	w.str("status", "active")
	p.cc("type", typ)
	w.str("use", "claim")
	p.ref("patient", &p.patientID)
	p.period("billablePeriod", e.start, e.end)
	p.dateTime("created", created)
	p.sharedRef("insurer", "Organization/", &p.insurer.id)
	p.sharedRef("provider", "Organization/", &e.org.id)
	p.cc("priority", priorityNormal)
	if e.reason != nil {
		w.arr("diagnosis")
		w.open('{')
		w.integer("sequence", 1)
		p.ref("diagnosisReference", &e.reason.id)
		w.close('}')
		w.close(']')
	}
	w.arr("insurance")
	w.open('{')
	w.integer("sequence", 1)
	w.boolean("focal", true)
	p.ref("coverage", &p.coverageID)
	w.close('}')
	w.close(']')
	p.claimItems(e, encType, procs, charges, nil)
	p.money("total", total)
	p.end("Claim", &claimID)

	// The insurer allows most of the charge and pays most of what it
	// allows.
	allowedPct := int64(55 + p.pick(35))
	paidPct := int64(70 + p.pick(26))
	allowed := make([]int64, len(charges))
	paid := make([]int64, len(charges))
	var allowedTotal, paidTotal int64
	for i, c := range charges {
		allowed[i] = c * allowedPct / 100
		paid[i] = allowed[i] * paidPct / 100
		allowedTotal += allowed[i]
		paidTotal += paid[i]
	}
	processed := min(created+int64(1+p.pick(20))*day, p.until)
	p.begin("ExplanationOfBenefit", &eobID)
	w.str("status", "active")
	p.cc("type", typ)
	w.str("use", "claim")
	p.ref("patient", &p.patientID)
	p.period("billablePeriod", e.start, e.end)
	p.dateTime("created", processed)
	p.sharedRef("insurer", "Organization/", &p.insurer.id)
	p.sharedRef("provider", "Organization/", &e.org.id)
	p.ref("claim", &claimID)
	w.str("outcome", "complete")
	if e.reason != nil {
		w.arr("diagnosis")
		w.open('{')
		w.integer("sequence", 1)
		p.ref("diagnosisReference", &e.reason.id)
		w.close('}')
		w.close(']')
	}
	w.arr("insurance")
	w.open('{')
	w.boolean("focal", true)
	p.ref("coverage", &p.coverageID)
	w.close('}')
	w.close(']')
	p.claimItems(e, encType, procs, charges, func(i int) {
		w.arr("adjudication")
		p.adjudication(adjSubmitted, charges[i])
		p.adjudication(adjEligible, allowed[i])
		p.adjudication(adjBenefit, paid[i])
		w.close(']')
	})
	w.arr("total")
	p.adjudication(adjSubmitted, total)
	p.adjudication(adjEligible, allowedTotal)
	p.adjudication(adjBenefit, paidTotal)
	w.close(']')
	w.obj("payment")
	p.date("date", localDay(processed, p.off))
	p.money("amount", paidTotal)
	w.close('}')
	p.end("ExplanationOfBenefit", &eobID)
}

// claimItems writes the items of a Claim or ExplanationOfBenefit: the
// encounter, then each procedure. adjudicate, when not nil, writes an
// item's adjudication.
func (p *patientGen) claimItems(e *enc, encType concept, procs []procedure, charges []int64, adjudicate func(int)) {
	w := &p.w
	w.arr("item")
	for i := range charges {
		w.open('{')
		w.integer("sequence", int64(i+1))
		if e.reason != nil {
			w.arr("diagnosisSequence")
			w.b = append(w.b, '1')
			w.close(']')
		}
		if i == 0 {
			p.cc("productOrService", encType)
			p.period("servicedPeriod", e.start, e.end)
		} else {
			p.cc("productOrService", procs[i-1].code)
			p.date("servicedDate", localDay(e.start, p.off))
		}
		p.money("net", charges[i])
		w.arr("encounter")
		p.refItem("urn:uuid:", &e.id)
		w.close(']')
		if adjudicate != nil {
			adjudicate(i)
		}
		w.close('}')
	}
	w.close(']')
}

func (p *patientGen) adjudication(category concept, cents int64) {
	p.w.open('{')
	p.cc("category", category)
	p.money("amount", cents)
	p.w.close('}')
}
