package fhirpath

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ehrvault/ehrvault/internal/fhir"
	"github.com/ehrvault/ehrvault/internal/sharedtest"
)

// staticTypes returns the types n can yield when its focus has one of the
// types in focus. A nil slice means "unknown" (resolve() targets, System
// values); an element no focus type has is an error.
func staticTypes(n *node, focus []*fhir.TypeDef) ([]*fhir.TypeDef, error) {
	in := focus
	if n.l != nil {
		var err error
		if in, err = staticTypes(n.l, focus); err != nil {
			return nil, err
		}
	}
	switch n.kind {
	case nEmpty, nLiteral, nEq, nNe, nAnd, nOr, nIs:
		return nil, nil
	case nThis:
		return focus, nil
	case nTypeFilter:
		return []*fhir.TypeDef{fhir.Type(n.name)}, nil
	case nIndex:
		return in, nil
	case nAs:
		return []*fhir.TypeDef{fhir.Type(n.typ.name)}, nil
	case nUnion:
		r, err := staticTypes(n.r, focus)
		return append(append([]*fhir.TypeDef(nil), in...), r...), err
	case nMember:
		if in == nil {
			return nil, nil
		}
		var out []*fhir.TypeDef
		for _, t := range in {
			for name, m := range membersOf(t) {
				if m.elem == n.name && (name == n.name || len(name) > len(n.name)) {
					out = append(out, m.typ)
				}
			}
		}
		if len(out) == 0 {
			var names []string
			for _, t := range in {
				names = append(names, t.Name)
			}
			return nil, fmt.Errorf("no element %s in %s", n.name, strings.Join(names, ", "))
		}
		return out, nil
	case nFunc:
		switch n.name {
		case "where", "exists":
			for _, a := range n.args {
				if _, err := staticTypes(a, in); err != nil {
					return nil, err
				}
			}
			if n.name == "where" {
				return in, nil
			}
			return nil, nil
		case "first":
			return in, nil
		case "as", "ofType":
			return []*fhir.TypeDef{fhir.Type(n.typ.name)}, nil
		case "extension":
			return []*fhir.TypeDef{fhir.Type("Extension")}, nil
		}
		return nil, nil // resolve(), empty(), not(), is()
	}
	return nil, nil
}

// TestSpecExpressionsMatchModel checks that every element the search
// parameter expressions name exists in the R4 model, for every base type.
func TestSpecExpressionsMatchModel(t *testing.T) {
	data, err := os.ReadFile(filepath.Join(sharedtest.Dir(t, "fhir-r4"), "search-parameters.json"))
	if err != nil {
		t.Fatal(err)
	}
	var b struct {
		Entry []struct {
			Resource struct {
				ID         string   `json:"id"`
				Type       string   `json:"type"`
				Base       []string `json:"base"`
				Expression string   `json:"expression"`
			} `json:"resource"`
		} `json:"entry"`
	}
	if err := json.Unmarshal(data, &b); err != nil {
		t.Fatal(err)
	}
	// Not R4 4.0.1: added to the Medplum copy of the definitions.
	notR4 := map[string]bool{"DetectedIssue-status": true, "DeviceDefinition-classification": true, "ServiceRequest-order-detail": true}
	checked := 0
	for _, e := range b.Entry {
		p := e.Resource
		if p.Expression == "" || notR4[p.ID] {
			continue
		}
		x, err := Parse(p.Expression)
		if err != nil {
			t.Errorf("%s: %v", p.ID, err)
			continue
		}
		for _, base := range p.Base {
			if base == "Resource" || base == "DomainResource" {
				base = "Patient"
			}
			s, err := x.For(base)
			if err != nil {
				t.Errorf("%s for %s: %v", p.ID, base, err)
				continue
			}
			if _, err := staticTypes(s.root, []*fhir.TypeDef{fhir.Type(base)}); err != nil {
				t.Errorf("%s for %s: %s: %v", p.ID, base, p.Expression, err)
			}
			checked++
		}
	}
	if checked < 1500 {
		t.Errorf("checked %d, want over 1,500", checked)
	}
}
