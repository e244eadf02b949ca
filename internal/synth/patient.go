package synth

import (
	"math"
	"math/rand/v2"
	"strings"
)

// patientGen makes one patient: first a plan (who they are, what they
// have, when they were seen), then the bundle written from the plan. Every
// random choice comes from r, seeded from the generator's seed and the
// patient number, so a patient is the same whatever was generated before.
type patientGen struct {
	emitter
	g       *Generator
	r       *rand.Rand
	k0, k1  uint64 // UUID stream keys
	nid     uint64 // UUIDs handed out
	collect bool   // whether to collect identifying values
	ident   []string

	// Life and record. Instants are seconds since the epoch.
	birthDay int   // local day of birth
	birth    int64 // local midnight at the start of birthDay
	death    int64 // 0 while alive
	until    int64 // the last instant anything may happen: death or the reference time
	start    int64 // the first instant of the record
	regIdx   int
	reg      *region
	clinic   *organization
	hospital *organization
	pcp      *practitioner
	insurer  *organization

	female   bool
	given    string
	middle   string
	family   string
	maiden   string // family name at birth, if it differs
	nickname string
	prefix   string
	suffix   string
	marital  concept
	language concept

	ssn, mrn, member          string
	phone, mobile, email      string
	line1, line2, town, zip   string
	addrText                  string
	parentGiven, parentFamily string
	parentFemale              bool

	smoking concept
	heightZ float64 // personal percentile of height, as a z-score
	bmiZ    float64 // personal percentile of body mass index
	bpBase  float64 // personal offset of blood pressure, mmHg

	patientID, coverageID, parentID uuid

	conds  []*cond
	encs   []*enc
	vax    []vaccination
	rxs    []*prescription
	chron  [numChronic]*cond
	scheme [numChronic][]medication // the drugs each chronic condition is treated with
}

func (p *patientGen) newID() uuid {
	p.nid++
	return makeUUID(p.k0, p.k1, p.nid-1)
}

// identifying records a value that identifies the patient.
func (p *patientGen) identifying(s string) {
	if p.collect && s != "" {
		p.ident = append(p.ident, s)
	}
}

func (p *patientGen) chance(prob float64) bool { return p.r.Float64() < prob }

func (p *patientGen) pick(n int) int { return p.r.IntN(n) }

// between returns a uniform instant in [lo, hi], or lo if hi < lo.
func (p *patientGen) between(lo, hi int64) int64 {
	if hi <= lo {
		return lo
	}
	return lo + p.r.Int64N(hi-lo+1)
}

func (p *patientGen) normal(mean, sd float64) float64 { return mean + sd*p.r.NormFloat64() }

// ageAt returns the age in years, with fractions, at instant t.
func (p *patientGen) ageAt(t int64) float64 { return float64(t-p.birth) / year }

// yearsAt returns the age in whole years at instant t.
func (p *patientGen) yearsAt(t int64) int { return ageYears(p.birthDay, localDay(t, p.off)) }

func (p *patientGen) planPerson(i int) {
	g, r := p.g, p.r
	now := g.now

	// Age: roughly the US pyramid, children through the very old.
	var age float64
	switch u := r.Float64(); {
	case u < 0.22:
		age = r.Float64() * 18
	case u < 0.58:
		age = 18 + r.Float64()*27
	case u < 0.83:
		age = 45 + r.Float64()*20
	default:
		age = 65 + r.Float64()*32
	}
	p.regIdx = p.pick(len(regions))
	p.reg = &regions[p.regIdx]
	p.off = p.reg.offMin
	nowDay := localDay(now, p.off)
	p.birthDay = nowDay - 45 - int(age*365.2425)
	p.birth = localTime(p.birthDay, 0, p.off)
	p.until = now - hour
	p.female = p.pick(2) == 0

	// Some die; the old more often. Death falls in the last five years.
	var pDeath float64
	switch {
	case age < 50:
		pDeath = 0.005
	case age < 70:
		pDeath = 0.03
	case age < 85:
		pDeath = 0.10
	default:
		pDeath = 0.25
	}
	if p.chance(pDeath) {
		earliest := max(p.birth+120*day, now-5*year)
		p.death = p.between(earliest, now-2*day)
		p.until = p.death
	}
	p.start = max(p.birth, p.until-10*year)
	years := p.yearsAt(p.until)

	// Where they live and who looks after them.
	sh := g.shared
	reg := &sh.regional[p.regIdx]
	p.clinic = &sh.orgs[reg.clinics[p.pick(clinicsPerRegion)]]
	p.hospital = &sh.orgs[reg.hospital]
	p.pcp = &sh.pracs[p.clinic.pracs[p.pick(len(p.clinic.pracs))]]
	p.town = p.reg.towns[p.pick(len(p.reg.towns))]
	switch {
	case years >= 65:
		p.insurer = &sh.orgs[sh.insurers[0]]
	case p.chance(0.15):
		p.insurer = &sh.orgs[sh.insurers[1]]
	default:
		p.insurer = &sh.orgs[sh.insurers[2+p.pick(len(insurers)-2)]]
	}

	// Names.
	p.given, p.middle = p.givenName(p.female), ""
	if p.chance(0.6) {
		for p.middle == "" || p.middle == p.given {
			p.middle = p.givenName(p.female)
		}
	}
	p.family = familyNames[p.pick(len(familyNames))]
	switch {
	case years < 16:
		p.marital = concept{}
	case years < 30:
		p.marital = p.pickMarital(0.25, 0.70, 0.05, 0)
	case years < 65:
		p.marital = p.pickMarital(0.58, 0.22, 0.15, 0.05)
	default:
		p.marital = p.pickMarital(0.50, 0.08, 0.12, 0.30)
	}
	if p.female && p.marital.code != "" && p.marital != maritalNever && p.chance(0.6) {
		for p.maiden == "" || p.maiden == p.family {
			p.maiden = familyNames[p.pick(len(familyNames))]
		}
	}
	if p.chance(0.12) {
		p.nickname = nicknames[p.pick(len(nicknames))]
	}
	if years >= 18 {
		switch {
		case !p.female:
			p.prefix = "Mr."
		case p.marital == maritalMarried || p.marital == maritalWidowed:
			p.prefix = "Mrs."
		default:
			p.prefix = "Ms."
		}
		if !p.female && p.chance(0.03) {
			p.suffix = "Jr."
		}
	}
	switch u := r.Float64(); {
	case u < 0.85:
		p.language = langEnglish
	case u < 0.95:
		p.language = langSpanish
	case u < 0.98:
		p.language = langVietnamese
	default:
		p.language = langChinese
	}

	// Identifiers. The permutations make them distinct per patient number.
	ssn := permute(g.seed, domainSSN, uint64(i), 1_000_000)
	p.ssn = "999-" + pad(int64(ssn/10000), 2) + "-" + pad(int64(ssn%10000), 4)
	p.mrn = pad(int64(permute(g.seed, domainMRN, uint64(i), 100_000_000)), 8)
	p.member = insurers[p.insurer.insurer].prefix + pad(int64(permute(g.seed, domainMember, uint64(i), 1_000_000_000)), 9)

	// Contact details.
	p.phone = phoneNumber(r, p.reg)
	if years >= 13 {
		p.mobile = phoneNumber(r, p.reg)
		if p.mobile == p.phone {
			p.mobile = ""
		}
	}
	if years >= 16 {
		domains := [...]string{"example.com", "example.org", "example.net"}
		p.email = asciiLower(p.given) + "." + asciiLower(p.family) + pad(int64(p.pick(100)), 2) + "@" + domains[p.pick(len(domains))]
	}
	p.line1 = houseNumber(r) + " " + streetNames[p.pick(len(streetNames))] + " " + streetKinds[p.pick(len(streetKinds))]
	if p.chance(0.25) {
		p.line2 = "Apt " + pad(int64(1+p.pick(40)), 1)
	}
	p.zip = zipCode(r, p.reg)
	var sb strings.Builder
	sb.WriteString(p.line1)
	if p.line2 != "" {
		sb.WriteString(", ")
		sb.WriteString(p.line2)
	}
	sb.WriteString(", ")
	sb.WriteString(p.town)
	sb.WriteString(", ")
	sb.WriteString(p.reg.state)
	sb.WriteString(" ")
	sb.WriteString(p.zip)
	p.addrText = sb.String()

	// A minor's parent holds the insurance.
	if years < 18 {
		p.parentFemale = p.chance(0.6)
		p.parentGiven = p.givenName(p.parentFemale)
		p.parentFamily = p.family
	}

	// Body and habits.
	p.heightZ = clamp(p.r.NormFloat64(), -2.5, 2.5)
	p.bmiZ = clamp(p.r.NormFloat64(), -2, 2.8)
	p.bpBase = p.normal(0, 6)
	p.smoking = smokerNever
	if years >= 12 {
		switch u := r.Float64(); {
		case years < 18:
			if u < 0.03 {
				p.smoking = smokerCurrent
			}
		case u < 0.13:
			p.smoking = smokerCurrent
		case u < 0.35:
			p.smoking = smokerFormer
		}
	}

	p.patientID = p.newID()
	p.coverageID = p.newID()
	if p.parentGiven != "" {
		p.parentID = p.newID()
	}
}

func (p *patientGen) givenName(female bool) string {
	if female {
		return femaleGiven[p.pick(len(femaleGiven))]
	}
	return maleGiven[p.pick(len(maleGiven))]
}

func (p *patientGen) pickMarital(married, never, divorced, widowed float64) concept {
	u := p.r.Float64() * (married + never + divorced + widowed)
	switch {
	case u < married:
		return maritalMarried
	case u < married+never:
		return maritalNever
	case u < married+never+divorced:
		return maritalDivorced
	}
	return maritalWidowed
}

func clamp(v, lo, hi float64) float64 { return math.Max(lo, math.Min(hi, v)) }

func (p *patientGen) fullName() string {
	s := p.given
	if p.middle != "" {
		s += " " + p.middle
	}
	return s + " " + p.family
}

// writePerson writes the Patient, a minor's parent as RelatedPerson and the
// Coverage.
func (p *patientGen) writePerson() {
	w := &p.w
	p.begin("Patient", &p.patientID)

	w.arr("identifier")
	w.open('{')
	w.str("use", "usual")
	p.cc("type", idTypeMR)
	w.str("system", "https://"+p.clinic.slug+".example.org/fhir/sid/mrn")
	w.str("value", p.mrn)
	p.sharedRef("assigner", "Organization/", &p.clinic.id)
	w.close('}')
	w.open('{')
	w.str("use", "official")
	p.cc("type", idTypeSS)
	w.str("system", sysSSN)
	w.str("value", p.ssn)
	w.close('}')
	w.close(']')
	p.identifying(p.mrn)
	p.identifying(p.ssn)

	w.boolean("active", p.death == 0)

	full := p.fullName()
	w.arr("name")
	w.open('{')
	w.str("use", "official")
	w.str("text", full)
	w.str("family", p.family)
	w.arr("given")
	w.item(p.given)
	if p.middle != "" {
		w.item(p.middle)
	}
	w.close(']')
	if p.prefix != "" {
		w.arr("prefix")
		w.item(p.prefix)
		w.close(']')
	}
	if p.suffix != "" {
		w.arr("suffix")
		w.item(p.suffix)
		w.close(']')
	}
	w.close('}')
	if p.maiden != "" {
		w.open('{')
		w.str("use", "maiden")
		w.str("family", p.maiden)
		w.arr("given")
		w.item(p.given)
		w.close(']')
		w.close('}')
	} else if p.nickname != "" {
		w.open('{')
		w.str("use", "nickname")
		w.arr("given")
		w.item(p.nickname)
		w.close(']')
		w.close('}')
	}
	w.close(']')
	p.identifying(full)
	p.identifying(p.given)
	p.identifying(p.middle)
	p.identifying(p.family)
	p.identifying(p.maiden)
	if p.maiden == "" {
		p.identifying(p.nickname)
	}

	w.arr("telecom")
	w.open('{')
	w.str("system", "phone")
	w.str("value", p.phone)
	w.str("use", "home")
	w.close('}')
	if p.mobile != "" {
		w.open('{')
		w.str("system", "phone")
		w.str("value", p.mobile)
		w.str("use", "mobile")
		w.close('}')
	}
	if p.email != "" {
		w.open('{')
		w.str("system", "email")
		w.str("value", p.email)
		w.str("use", "home")
		w.close('}')
	}
	w.close(']')
	p.identifying(p.phone)
	p.identifying(p.mobile)
	p.identifying(p.email)

	if p.female {
		w.str("gender", "female")
	} else {
		w.str("gender", "male")
	}
	p.date("birthDate", p.birthDay)
	p.identifying(string(appendDate(nil, p.birthDay)))
	if p.death != 0 {
		p.dateTime("deceasedDateTime", p.death)
	}

	p.writeAddress("address")
	if p.marital.code != "" {
		p.ccCodingOnly("maritalStatus", p.marital)
	}
	w.arr("communication")
	w.open('{')
	p.cc("language", p.language)
	w.boolean("preferred", true)
	w.close('}')
	w.close(']')
	w.arr("generalPractitioner")
	p.refItem("Practitioner/", &p.pcp.id)
	w.close(']')
	p.sharedRef("managingOrganization", "Organization/", &p.clinic.id)
	p.end("Patient", &p.patientID)

	if p.parentGiven != "" {
		p.begin("RelatedPerson", &p.parentID)
		w.boolean("active", true)
		p.ref("patient", &p.patientID)
		if p.parentFemale {
			p.ccArray("relationship", roleMother)
		} else {
			p.ccArray("relationship", roleFather)
		}
		parentFull := p.parentGiven + " " + p.parentFamily
		w.arr("name")
		w.open('{')
		w.str("use", "official")
		w.str("text", parentFull)
		w.str("family", p.parentFamily)
		w.arr("given")
		w.item(p.parentGiven)
		w.close(']')
		w.close('}')
		w.close(']')
		w.arr("telecom")
		w.open('{')
		w.str("system", "phone")
		w.str("value", p.phone)
		w.str("use", "home")
		w.close('}')
		w.close(']')
		if p.parentFemale {
			w.str("gender", "female")
		} else {
			w.str("gender", "male")
		}
		p.writeAddress("address")
		p.end("RelatedPerson", &p.parentID)
		p.identifying(parentFull)
		p.identifying(p.parentGiven)
	}

	p.writeCoverage()
}

func (p *patientGen) writeAddress(k string) {
	w := &p.w
	w.arr(k)
	w.open('{')
	w.str("use", "home")
	w.str("type", "physical")
	w.str("text", p.addrText)
	w.arr("line")
	w.item(p.line1)
	if p.line2 != "" {
		w.item(p.line2)
	}
	w.close(']')
	w.str("city", p.town)
	w.str("state", p.reg.state)
	w.str("postalCode", p.zip)
	w.str("country", "US")
	w.close('}')
	w.close(']')
	p.identifying(p.line1)
	p.identifying(p.addrText)
}

func (p *patientGen) writeCoverage() {
	w := &p.w
	in := &insurers[p.insurer.insurer]
	dependent := "01"
	if p.parentGiven != "" {
		dependent = "02"
	}
	memberID := p.member + "-" + dependent
	p.begin("Coverage", &p.coverageID)
	w.arr("identifier")
	w.open('{')
	w.str("use", "official")
	p.cc("type", idTypeMB)
	w.str("system", "https://"+in.slug+".example.com/fhir/sid/member")
	w.str("value", memberID)
	w.close('}')
	w.close(']')
	if p.death != 0 {
		w.str("status", "cancelled")
	} else {
		w.str("status", "active")
	}
	p.cc("type", coverageHIP)
	if p.parentGiven != "" {
		p.ref("policyHolder", &p.parentID)
		p.ref("subscriber", &p.parentID)
	} else {
		p.ref("policyHolder", &p.patientID)
		p.ref("subscriber", &p.patientID)
	}
	w.str("subscriberId", p.member)
	p.ref("beneficiary", &p.patientID)
	w.str("dependent", dependent)
	if p.parentGiven != "" {
		p.cc("relationship", relChild)
	} else {
		p.cc("relationship", relSelf)
	}
	p.period("period", p.start, p.death)
	w.arr("payor")
	p.refItem("Organization/", &p.insurer.id)
	w.close(']')
	w.arr("class")
	w.open('{')
	p.cc("type", classGroup)
	w.str("value", in.prefix+"-G"+pad(int64(1000+p.pick(9000)), 4))
	w.str("name", in.name+" "+p.reg.state+" group")
	w.close('}')
	w.open('{')
	p.cc("type", classPlan)
	plan := planNames[p.pick(len(planNames))]
	if in.public {
		plan = in.name
	}
	w.str("value", in.prefix+"-"+strings.ToUpper(strings.ReplaceAll(plan, " ", "")))
	w.str("name", plan)
	w.close('}')
	w.close(']')
	p.end("Coverage", &p.coverageID)
	p.identifying(p.member)
	p.identifying(memberID)
}
