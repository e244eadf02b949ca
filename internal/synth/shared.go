package synth

import (
	"math/rand/v2"
	"strings"
)

// The shared resources: per region one hospital and three clinics, each
// with its practitioners, and the insurers. They depend on the seed only.

const (
	clinicsPerRegion = 3
	pracsPerClinic   = 4
	pracsPerHospital = 5
	orgHospital      = 'h'
	orgClinic        = 'c'
	orgInsurer       = 'i'
)

type organization struct {
	id      uuid
	kind    byte // orgHospital, orgClinic, orgInsurer
	name    string
	slug    string // lowercase, hyphenated name, for identifier systems
	npi     string
	phone   string
	line    string
	city    string
	state   string
	zip     string
	region  int // index into regions; -1 for insurers
	insurer int // index into insurers, for insurers
	pracs   []int
}

type practitioner struct {
	id, roleID uuid
	npi        string
	given      string
	family     string
	female     bool
	org        int // index into sharedSet.orgs
	specialty  concept
}

type sharedSet struct {
	orgs     []organization
	pracs    []practitioner
	regional [len(regions)]struct {
		hospital int
		clinics  [clinicsPerRegion]int
	}
	insurers [len(insurers)]int
}

func newShared(seed uint64) *sharedSet {
	r := newRand(seed, domainSharedRandom, 0)
	k0, k1 := keys(seed, domainShared, 0)
	var n uint64
	next := func() uuid { n++; return makeUUID(k0, k1, n-1) }
	s := &sharedSet{}
	npis := 0
	npi := func() string {
		// NPIs begin with 1 or 2; these begin with 9, so none is real.
		npis++
		return "99" + pad(int64(permute(seed, domainNPI, uint64(npis), 100_000_000)), 8)
	}
	addPrac := func(org int, spec concept) {
		female := r.IntN(2) == 0
		given := maleGiven[r.IntN(len(maleGiven))]
		if female {
			given = femaleGiven[r.IntN(len(femaleGiven))]
		}
		s.pracs = append(s.pracs, practitioner{
			id: next(), roleID: next(), npi: npi(),
			given: given, family: familyNames[r.IntN(len(familyNames))],
			female: female, org: org, specialty: spec,
		})
		s.orgs[org].pracs = append(s.orgs[org].pracs, len(s.pracs)-1)
	}
	addOrg := func(kind byte, name string, ri int, town string) int {
		reg := &regions[ri]
		s.orgs = append(s.orgs, organization{
			id: next(), kind: kind, name: name, slug: slugify(name), npi: npi(),
			phone: phoneNumber(r, reg),
			line:  houseNumber(r) + " " + streetNames[r.IntN(len(streetNames))] + " " + streetKinds[r.IntN(len(streetKinds))],
			city:  town, state: reg.state, zip: zipCode(r, reg),
			region: ri,
		})
		return len(s.orgs) - 1
	}
	for ri := range regions {
		reg := &regions[ri]
		towns := r.Perm(len(reg.towns))
		town := reg.towns[towns[0]]
		h := addOrg(orgHospital, town+" "+hospitalKinds[r.IntN(len(hospitalKinds))], ri, town)
		s.regional[ri].hospital = h
		for j := 0; j < pracsPerHospital; j++ {
			spec := specialtyEmergency
			if j >= 3 {
				spec = specialtyGeneral
			}
			addPrac(h, spec)
		}
		for c := 0; c < clinicsPerRegion; c++ {
			town := reg.towns[towns[1+c]]
			o := addOrg(orgClinic, town+" "+clinicKinds[c], ri, town)
			s.regional[ri].clinics[c] = o
			for j := 0; j < pracsPerClinic; j++ {
				addPrac(o, specialtyFamily)
			}
		}
	}
	for ii := range insurers {
		in := &insurers[ii]
		s.orgs = append(s.orgs, organization{
			id: next(), kind: orgInsurer, name: in.name, slug: in.slug,
			phone:  "(800) 555-01" + pad(int64(r.IntN(100)), 2),
			region: -1, insurer: ii,
		})
		s.insurers[ii] = len(s.orgs) - 1
	}
	return s
}

// slugify lowercases name and joins its words with hyphens.
func slugify(name string) string {
	return strings.ToLower(strings.ReplaceAll(name, " ", "-"))
}

// pad formats v in decimal with at least width digits.
func pad(v int64, width int) string {
	var buf [20]byte
	b := appendInt(buf[:0], v)
	if len(b) >= width {
		return string(b)
	}
	return strings.Repeat("0", width-len(b)) + string(b)
}

func houseNumber(r *rand.Rand) string {
	// Mostly small numbers, as on real streets.
	if r.IntN(4) == 0 {
		return pad(int64(100+r.IntN(9800)), 1)
	}
	return pad(int64(1+r.IntN(400)), 1)
}

func zipCode(r *rand.Rand, reg *region) string {
	return pad(int64(reg.zipLo+r.IntN(reg.zipHi-reg.zipLo+1)), 3) + pad(int64(r.IntN(100)), 2)
}

// phoneNumber returns a number in the 555-0100..555-0199 block, which
// is reserved for fictional use.
func phoneNumber(r *rand.Rand, reg *region) string {
	return "(" + reg.areaCodes[r.IntN(len(reg.areaCodes))] + ") 555-01" + pad(int64(r.IntN(100)), 2)
}

// writeShared writes the shared transaction Bundle.
func (s *sharedSet) write(b []byte) []byte {
	p := &emitter{w: writer{b: b}}
	p.beginBundle()
	for i := range s.orgs {
		o := &s.orgs[i]
		p.begin("Organization", &o.id)
		w := &p.w
		if o.npi != "" {
			w.arr("identifier")
			w.open('{')
			p.cc("type", idTypeNPI)
			w.str("system", sysNPI)
			w.str("value", o.npi)
			w.close('}')
			w.close(']')
		}
		w.boolean("active", true)
		w.arr("type")
		if o.kind == orgInsurer {
			p.ccItem(orgPayer)
		} else {
			p.ccItem(orgProvider)
		}
		w.close(']')
		w.str("name", o.name)
		w.arr("telecom")
		w.open('{')
		w.str("system", "phone")
		w.str("value", o.phone)
		w.str("use", "work")
		w.close('}')
		w.close(']')
		if o.line != "" {
			w.arr("address")
			w.open('{')
			w.str("use", "work")
			w.arr("line")
			w.item(o.line)
			w.close(']')
			w.str("city", o.city)
			w.str("state", o.state)
			w.str("postalCode", o.zip)
			w.str("country", "US")
			w.close('}')
			w.close(']')
		}
		p.end("Organization", &o.id)
	}
	for i := range s.pracs {
		pr := &s.pracs[i]
		o := &s.orgs[pr.org]
		p.begin("Practitioner", &pr.id)
		w := &p.w
		w.arr("identifier")
		w.open('{')
		p.cc("type", idTypeNPI)
		w.str("system", sysNPI)
		w.str("value", pr.npi)
		w.close('}')
		w.close(']')
		w.boolean("active", true)
		w.arr("name")
		w.open('{')
		w.str("use", "official")
		w.str("family", pr.family)
		w.arr("given")
		w.item(pr.given)
		w.close(']')
		w.arr("prefix")
		w.item("Dr.")
		w.close(']')
		w.close('}')
		w.close(']')
		w.arr("telecom")
		w.open('{')
		w.str("system", "email")
		w.str("value", asciiLower(pr.given)+"."+asciiLower(pr.family)+"@"+o.slug+".example.org")
		w.str("use", "work")
		w.close('}')
		w.close(']')
		w.arr("address")
		w.open('{')
		w.str("use", "work")
		w.arr("line")
		w.item(o.line)
		w.close(']')
		w.str("city", o.city)
		w.str("state", o.state)
		w.str("postalCode", o.zip)
		w.str("country", "US")
		w.close('}')
		w.close(']')
		if pr.female {
			w.str("gender", "female")
		} else {
			w.str("gender", "male")
		}
		w.arr("qualification")
		w.open('{')
		p.cc("code", degreeMD)
		w.close('}')
		w.close(']')
		p.end("Practitioner", &pr.id)

		p.begin("PractitionerRole", &pr.roleID)
		w.boolean("active", true)
		p.sharedRef("practitioner", "Practitioner/", &pr.id)
		p.sharedRef("organization", "Organization/", &o.id)
		w.arr("code")
		p.ccItem(roleDoctor)
		w.close(']')
		w.arr("specialty")
		p.ccItem(pr.specialty)
		w.close(']')
		p.end("PractitionerRole", &pr.roleID)
	}
	p.endBundle()
	return p.w.b
}

// asciiLower returns s in lowercase ASCII letters, for e-mail addresses:
// the accented letters of the word lists lose their accents, anything else
// that is not a letter is dropped.
func asciiLower(s string) string {
	var b strings.Builder
	for _, c := range s {
		switch {
		case c >= 'a' && c <= 'z':
			b.WriteRune(c)
		case c >= 'A' && c <= 'Z':
			b.WriteRune(c + 'a' - 'A')
		default:
			switch c {
			case 'é', 'ë', 'ễ', 'É':
				b.WriteByte('e')
			case 'í':
				b.WriteByte('i')
			case 'ñ':
				b.WriteByte('n')
			case 'ú', 'ü':
				b.WriteByte('u')
			case 'Ö', 'ö':
				b.WriteByte('o')
			}
		}
	}
	return b.String()
}
