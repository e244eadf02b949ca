// Package synth makes synthetic patients as FHIR R4 transaction Bundles, for
// the demo and for load tests at any scale.
//
// A Generator is built from a seed. Shared returns the organizations
// (clinics, hospitals, insurers) and practitioners that patients refer to;
// load it first. PatientBundle(i) returns patient number i: a Patient with
// a Coverage (and, for a minor, the parent who holds it), 3 to 15
// encounters each with its vital signs, laboratory panels and reports,
// conditions, procedures, prescriptions, vaccinations and some claims,
// plus allergies, family history and a reconciled medication list.
// Identifying(i) returns the values in that bundle that identify the
// person, for tests that scan stored files for them.
//
// A bundle entry looks like this (abridged):
//
//	{"fullUrl": "urn:uuid:0f4b…",
//	 "resource": {"resourceType": "Encounter", "id": "0f4b…",
//	              "subject": {"reference": "urn:uuid:<patient>"},
//	              "serviceProvider": {"reference": "Organization/<id from Shared>"}, …},
//	 "request": {"method": "PUT", "url": "Encounter/0f4b…"}}
//
// # Promises
//
//   - Deterministic: the same seed, Options and patient number give the
//     same bytes, whatever else was generated before, on any goroutine.
//     Patient i is made without making patients 0 to i-1.
//   - Bundles are transactions of PUTs with ids chosen here, so loading one
//     twice changes nothing. References within a patient's bundle are
//     urn:uuid: fullUrls of its entries; references to Shared are literal
//     Organization/<id> and Practitioner/<id>.
//   - The resources are structurally valid R4: only elements R4 defines,
//     with R4 cardinalities, primitive formats and required codes.
//   - Nothing is dated after Options.Now, before the patient's birth or
//     after their death.
//   - Nothing identifies a real person. Names, towns, streets,
//     organizations and notes are made up in this package. SSNs are in the
//     999 area, which is never issued; telephone numbers are in the
//     555-0100 to 555-0199 block kept for fiction; e-mail addresses use the
//     example.com, .org and .net domains of RFC 2606; NPIs start with 9,
//     which no issued NPI does.
//   - SSNs are distinct for patient numbers below 1,000,000 (all the 999
//     area holds); medical record numbers and member ids are distinct below
//     100,000,000.
//   - A Generator is safe for concurrent use.
//
// # Non-promises
//
//   - Bytes are stable only for one version of this package built with one
//     Go release (math/rand/v2 may change how it derives values from PCG).
//   - The medicine is plausible, not accurate: values follow age, sex and
//     conditions coarsely, and the data is no use for research or for
//     training anything clinical.
//   - Codes are real LOINC, SNOMED CT, RxNorm, CVX, UCUM and HL7 codes, but
//     not checked against any terminology server, and displays are ours to
//     choose among a code's descriptions.
package synth

import (
	"bytes"
	"errors"
	"sync"
	"time"
)

// Options tune a Generator. The zero value gives the defaults.
type Options struct {
	// Now is the reference time: nothing is dated after it. Zero means
	// 2025-01-01T00:00:00Z.
	Now time.Time
	// MinEncounters and MaxEncounters bound the encounters of a patient,
	// inclusive; an older patient tends to the maximum. Zero means 3 and
	// 15; values below 1 are raised to 1, and a maximum below the minimum
	// is raised to it. Each encounter brings 10 to 20 resources.
	MinEncounters, MaxEncounters int
}

// Generator makes synthetic patients deterministically from a seed.
type Generator struct {
	seed   uint64
	opt    Options
	now    int64
	shared *sharedSet
}

// New returns a Generator with the default Options.
func New(seed uint64) *Generator { return NewWithOptions(seed, Options{}) }

// NewWithOptions returns a Generator with the given Options.
func NewWithOptions(seed uint64, opt Options) *Generator {
	if opt.Now.IsZero() {
		opt.Now = time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	}
	if opt.MinEncounters == 0 && opt.MaxEncounters == 0 {
		opt.MinEncounters, opt.MaxEncounters = 3, 15
	}
	opt.MinEncounters = max(opt.MinEncounters, 1)
	opt.MaxEncounters = max(opt.MaxEncounters, opt.MinEncounters)
	return &Generator{seed: seed, opt: opt, now: opt.Now.Unix(), shared: newShared(seed)}
}

// ErrPatientNumber is returned for a negative patient number.
var ErrPatientNumber = errors.New("synth: negative patient number")

// PatientBundle returns patient number i as a FHIR R4 transaction Bundle
// in JSON. The same seed, Options and i give the same bytes.
func (g *Generator) PatientBundle(i int) ([]byte, error) {
	b, _, err := g.patientBundle(i)
	return b, err
}

// patientBundle is PatientBundle that also returns the number of entries.
func (g *Generator) patientBundle(i int) ([]byte, int, error) {
	// Writing into a pooled buffer and copying the result out costs less
	// than growing a new buffer: the copy is exactly as long as the bundle
	// and is not zeroed first.
	buf := buffers.Get().(*[]byte)
	defer buffers.Put(buf)
	b, n, err := g.appendPatient((*buf)[:0], i)
	*buf = b
	if err != nil {
		return nil, 0, err
	}
	return bytes.Clone(b), n, nil
}

// buffers holds scratch buffers for PatientBundle and Identifying.
var buffers = sync.Pool{New: func() any { b := make([]byte, 0, 512<<10); return &b }}

// AppendPatientBundle appends patient i's bundle to b, for callers that
// reuse a buffer.
func (g *Generator) AppendPatientBundle(b []byte, i int) ([]byte, error) {
	b, _, err := g.appendPatient(b, i)
	return b, err
}

// appendPatient is AppendPatientBundle that also returns the number of
// entries written.
func (g *Generator) appendPatient(b []byte, i int) ([]byte, int, error) {
	p, err := g.patient(b, i, false)
	if err != nil {
		return b, 0, err
	}
	return p.w.b, p.entries, nil
}

// Identifying returns every value in patient i's bundle that identifies
// the person: name parts and full names as written, SSN, MRN, member and
// subscriber ids, birth date, first street lines and whole addresses
// (street and town as Address.text writes them), phone numbers, e-mail
// address and the free-text notes, without repeats. A second address line
// ("Apt 12") is left out: alone it identifies nobody and would match
// everywhere. Each value occurs in the bundle's bytes exactly as returned.
// It returns nil for a negative i.
func (g *Generator) Identifying(i int) []string {
	buf := buffers.Get().(*[]byte)
	defer buffers.Put(buf)
	p, err := g.patient((*buf)[:0], i, true)
	if err != nil {
		return nil
	}
	*buf = p.w.b
	seen := make(map[string]bool, len(p.ident))
	out := p.ident[:0]
	for _, s := range p.ident {
		if !seen[s] {
			seen[s] = true
			out = append(out, s)
		}
	}
	return out
}

// Shared returns a transaction Bundle with the organizations and
// practitioners (and their roles) the patients refer to. It depends on the
// seed alone.
func (g *Generator) Shared() ([]byte, error) {
	return g.shared.write(make([]byte, 0, 192<<10)), nil
}

func (g *Generator) patient(b []byte, i int, collect bool) (*patientGen, error) {
	if i < 0 {
		return nil, ErrPatientNumber
	}
	p := &patientGen{g: g, collect: collect}
	p.w.b = b
	p.k0, p.k1 = keys(g.seed, domainPatient, uint64(i))
	p.r = newRand(g.seed, domainRandom, uint64(i))
	p.planPerson(i)
	p.planCare()
	p.beginBundle()
	p.writePerson()
	p.writeCare()
	p.endBundle()
	return p, nil
}
