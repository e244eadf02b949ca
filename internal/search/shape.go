package search

import (
	"github.com/ehrvault/ehrvault/internal/fhir"
	"github.com/ehrvault/ehrvault/internal/records"
)

// The tag a resource carries when _summary or _elements left parts out.
const (
	subsettedSystem = "http://terminology.hl7.org/CodeSystem/v3-ObservationValue"
	subsettedCode   = "SUBSETTED"
)

// shape applies _summary and _elements to the matches of a page.
func shape(q *Query, matches []*records.Resource) error {
	if len(q.Elements) == 0 && (q.Summary == "" || q.Summary == "false") {
		return nil
	}
	t := fhir.Type(q.Type)
	for _, r := range matches {
		v, err := fhir.Parse(r.JSON, 0)
		if err != nil {
			return err
		}
		keep := func(name string) bool {
			switch name {
			case "resourceType", "id", "meta":
				return true
			}
			e, _ := t.Element(name)
			if e == nil {
				return false
			}
			if len(q.Elements) > 0 {
				for _, want := range q.Elements {
					if want == name || want == e.Name {
						return true
					}
				}
				return e.Modifier || e.Min > 0 // what a reader must not miss
			}
			switch q.Summary {
			case "true":
				return e.Summary
			case "text":
				return name == "text" || e.Min > 0 || e.Modifier
			case "data":
				return name != "text"
			}
			return true
		}
		cut := false
		kept := v.Fields[:0:0]
		for _, f := range v.Fields {
			name := f.Name
			if len(name) > 1 && name[0] == '_' {
				name = name[1:] // a primitive's extensions go with it
			}
			if keep(name) {
				kept = append(kept, f)
			} else {
				cut = true
			}
		}
		if !cut {
			continue
		}
		v.Fields = kept
		tagSubsetted(&v)
		fhir.Normalize(&v)
		r.JSON = fhir.Marshal(&v)
	}
	return nil
}

// tagSubsetted adds the SUBSETTED tag to meta.tag.
func tagSubsetted(v *fhir.Value) {
	meta := v.Get("meta")
	if meta == nil {
		v.Set("meta", fhir.Value{Kind: fhir.Object})
		meta = v.Get("meta")
	}
	tag := fhir.Value{Kind: fhir.Object}
	tag.Set("system", fhir.StringValue(subsettedSystem))
	tag.Set("code", fhir.StringValue(subsettedCode))
	tags := meta.Get("tag")
	if tags == nil || tags.Kind != fhir.Array {
		meta.Set("tag", fhir.Value{Kind: fhir.Array, Items: []fhir.Value{tag}})
		return
	}
	tags.Items = append(tags.Items, tag)
}
