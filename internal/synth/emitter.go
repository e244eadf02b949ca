package synth

// emitter writes Bundle entries and the FHIR data types they are made of.
type emitter struct {
	w       writer
	off     int // UTC offset, in minutes, of the dates written
	entries int // entries written so far
}

func (p *emitter) beginBundle() {
	w := &p.w
	w.open('{')
	w.str("resourceType", "Bundle")
	w.str("type", "transaction")
	w.arr("entry")
}

func (p *emitter) endBundle() {
	p.w.close(']')
	p.w.close('}')
}

// begin opens an entry and its resource: fullUrl urn:uuid:<id>, and a
// resource of type typ whose id is the same UUID.
func (p *emitter) begin(typ string, id *uuid) {
	w := &p.w
	w.open('{')
	w.uuidValue("fullUrl", "urn:uuid:", id)
	w.obj("resource")
	w.str("resourceType", typ)
	w.uuidValue("id", "", id)
}

// end closes the resource and the entry, with request PUT <typ>/<id>: a
// PUT with the id the bundle chose, so that loading it again updates the
// same resources rather than creating new ones.
func (p *emitter) end(typ string, id *uuid) {
	w := &p.w
	w.close('}')
	w.obj("request")
	w.str("method", "PUT")
	w.key("url")
	w.b = append(w.b, '"')
	w.b = append(w.b, typ...)
	w.b = append(w.b, '/')
	w.b = append(w.b, id[:]...)
	w.b = append(w.b, '"')
	w.comma = true
	w.close('}')
	w.close('}')
	p.entries++
}

// coding writes a Coding member.
func (p *emitter) coding(k string, c concept) {
	p.w.obj(k)
	p.codingFields(c)
	p.w.close('}')
}

func (p *emitter) codingFields(c concept) {
	p.w.str("system", c.system)
	p.w.str("code", c.code)
	p.w.str("display", c.display)
}

// cc writes a CodeableConcept member with one coding and the display as
// its text.
func (p *emitter) cc(k string, c concept) {
	p.w.key(k)
	p.ccItem(c)
}

// ccItem writes a CodeableConcept as an array item.
func (p *emitter) ccItem(c concept) {
	w := &p.w
	w.open('{')
	w.arr("coding")
	w.open('{')
	p.codingFields(c)
	w.close('}')
	w.close(']')
	w.str("text", c.display)
	w.close('}')
}

// ccCodingOnly writes a CodeableConcept without text, as the code systems
// with required bindings (clinicalStatus and the like) are usually sent.
func (p *emitter) ccCodingOnly(k string, c concept) {
	w := &p.w
	w.obj(k)
	w.arr("coding")
	w.open('{')
	p.codingFields(c)
	w.close('}')
	w.close(']')
	w.close('}')
}

// ccArray writes a member holding an array of one CodeableConcept.
func (p *emitter) ccArray(k string, c concept) {
	p.w.arr(k)
	p.ccItem(c)
	p.w.close(']')
}

// ref writes a Reference member to prefix+id: "urn:uuid:" for a resource
// of the same bundle, "Organization/" or "Practitioner/" for a shared one.
func (p *emitter) sharedRef(k, prefix string, id *uuid) {
	p.w.obj(k)
	p.w.uuidValue("reference", prefix, id)
	p.w.close('}')
}

// refItem writes a Reference as an array item.
func (p *emitter) refItem(prefix string, id *uuid) {
	p.w.open('{')
	p.w.uuidValue("reference", prefix, id)
	p.w.close('}')
}

// ref writes a Reference member to an entry of the same bundle.
func (p *emitter) ref(k string, id *uuid) { p.sharedRef(k, "urn:uuid:", id) }

func (p *emitter) dateTime(k string, t int64) {
	w := &p.w
	w.key(k)
	w.b = append(w.b, '"')
	w.b = appendDateTime(w.b, t, p.off)
	w.b = append(w.b, '"')
	w.comma = true
}

func (p *emitter) date(k string, d int) {
	w := &p.w
	w.key(k)
	w.b = append(w.b, '"')
	w.b = appendDate(w.b, d)
	w.b = append(w.b, '"')
	w.comma = true
}

// period writes a Period; an end of 0 leaves the period open.
func (p *emitter) period(k string, start, end int64) {
	p.w.obj(k)
	p.dateTime("start", start)
	if end != 0 {
		p.dateTime("end", end)
	}
	p.w.close('}')
}

// quantity writes a Quantity in UCUM units: v/10^scale unit.
func (p *emitter) quantity(k string, v int64, scale int, unit string) {
	w := &p.w
	w.obj(k)
	w.decimal("value", v, scale)
	w.str("unit", unit)
	w.str("system", sysUCUM)
	w.str("code", unit)
	w.close('}')
}

// money writes a Money amount in US dollars given in cents.
func (p *emitter) money(k string, cents int64) {
	w := &p.w
	w.obj(k)
	w.decimal("value", cents, 2)
	w.str("currency", "USD")
	w.close('}')
}
