package search

import (
	"strings"

	"github.com/ehrvault/ehrvault/internal/fhir"
	"github.com/ehrvault/ehrvault/internal/fhirpath"
)

// The value forms of a token message (see the package doc).
const (
	formCode       = 'c'
	formSystemCode = 's'
	formNoSystem   = 'n'
	formSystem     = 'S'
	formRef        = 'r'
	formRefRow     = 'R'
	formRefID      = 'i'
	formURI        = 'u'
)

// addValue adds the tokens of one value of parameter p.
func addValue(h *hasher, p *param, n fhirpath.Node) {
	v := n.Value
	if v == nil {
		return
	}
	switch p.kind {
	case kindToken:
		if v.Kind != fhir.Object {
			if s, ok := primitive(v); ok {
				addCode(h, p, "", s, false)
				// A code element's system is its binding's: gender=male
				// and gender=http://hl7.org/fhir/administrative-gender|male
				// both find it.
				for _, vs := range p.codeSets {
					if sys, ok := fhir.CodeSystemOf(vs, s); ok {
						h.add(p.prefix, formSystemCode, sys, s)
						h.add(p.prefix, formSystem, sys)
						break
					}
				}
			}
			return
		}
		if n.Type == nil {
			return
		}
		switch n.Type.Name {
		case "Coding":
			addCode(h, p, v.Str("system"), v.Str("code"), true)
		case "CodeableConcept":
			if c := v.Get("coding"); c != nil && c.Kind == fhir.Array {
				for i := range c.Items {
					if it := &c.Items[i]; it.Kind == fhir.Object {
						addCode(h, p, it.Str("system"), it.Str("code"), true)
					}
				}
			}
		case "Identifier", "ContactPoint":
			addCode(h, p, v.Str("system"), v.Str("value"), true)
		}
	case kindReference:
		switch {
		case v.Kind == fhir.String:
			addReference(h, p, v.Text) // canonical, uri
		case v.Kind != fhir.Object:
		case n.Type == nil || n.Type.Name == "Reference":
			addReference(h, p, v.Str("reference"))
		case n.Type.Kind == fhir.KindResource:
			// A resource itself, as Bundle.entry[0].resource for the
			// composition and message parameters: its own Type/id.
			if id := v.Str("id"); validID(id) {
				h.add(p.prefix, formRefRow, h.rowID(n.Type.Name, id))
				h.add(p.prefix, formRefID, id)
			}
		}
	case kindURI:
		if v.Kind == fhir.String && v.Text != "" {
			h.add(p.prefix, formURI, v.Text)
		}
	}
}

// primitive returns the text of a primitive value.
func primitive(v *fhir.Value) (string, bool) {
	switch v.Kind {
	case fhir.String, fhir.Bool, fhir.Number:
		return v.Text, v.Text != ""
	}
	return "", false
}

// addCode adds the forms of a code in a system. A value without a system
// element (a primitive, or a Coding without system) matches code and |code;
// one with a system matches code, system|code and system|.
func addCode(h *hasher, p *param, system, code string, hasSystem bool) {
	if code != "" {
		h.add(p.prefix, formCode, code)
		if system == "" {
			h.add(p.prefix, formNoSystem, code)
		} else {
			h.add(p.prefix, formSystemCode, system, code)
		}
	}
	if hasSystem && system != "" {
		h.add(p.prefix, formSystem, system)
	}
}

// addReference adds the forms of a literal reference. Contained ("#x")
// references are not indexed.
func addReference(h *hasher, p *param, ref string) {
	if ref == "" || ref[0] == '#' {
		return
	}
	if typ, id, ok := fhirpath.ReferenceTarget(ref); ok && !strings.Contains(ref, "://") {
		h.add(p.prefix, formRefRow, h.rowID(typ, id))
		h.add(p.prefix, formRefID, id)
		return
	}
	h.add(p.prefix, formRef, ref)
	if url, version, ok := strings.Cut(ref, "|"); ok && url != "" && version != "" {
		h.add(p.prefix, formRef, url) // a canonical with a version
	}
}
