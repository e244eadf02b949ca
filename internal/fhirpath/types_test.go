package fhirpath

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ehrvault/ehrvault/internal/fhir"
	"github.com/ehrvault/ehrvault/internal/sharedtest"
)

// TestBaseTypesMatchSpecification checks baseType against the
// baseDefinition of every R4 type and resource StructureDefinition.
func TestBaseTypesMatchSpecification(t *testing.T) {
	n := 0
	for _, file := range []string{"profiles-types.json", "profiles-resources.json"} {
		data, err := os.ReadFile(filepath.Join(sharedtest.Dir(t, "fhir-r4"), file))
		if err != nil {
			t.Fatal(err)
		}
		var b struct {
			Entry []struct {
				Resource json.RawMessage `json:"resource"`
			} `json:"entry"`
		}
		if err := json.Unmarshal(data, &b); err != nil {
			t.Fatal(err)
		}
		for _, e := range b.Entry {
			var sd struct {
				ResourceType   string `json:"resourceType"`
				Type           any    `json:"type"`
				Kind           string `json:"kind"`
				Derivation     string `json:"derivation"`
				BaseDefinition string `json:"baseDefinition"`
				FHIRVersion    string `json:"fhirVersion"`
			}
			if err := json.Unmarshal(e.Resource, &sd); err != nil {
				t.Fatal(err)
			}
			if sd.ResourceType != "StructureDefinition" || sd.Kind == "logical" || sd.Derivation == "constraint" || sd.FHIRVersion != "4.0.1" {
				continue
			}
			name, _ := sd.Type.(string)
			typ := fhir.Type(name)
			if typ == nil {
				t.Errorf("%s: not in the model", name)
				continue
			}
			want := ""
			if sd.BaseDefinition != "" {
				want = sd.BaseDefinition[strings.LastIndexByte(sd.BaseDefinition, '/')+1:]
			}
			if got := baseType(typ); got != want {
				t.Errorf("baseType(%s) = %q, want %q", name, got, want)
			}
			n++
		}
	}
	if n < 200 {
		t.Errorf("checked %d types, want over 200", n)
	}
	for _, tt := range []struct {
		typ, base string
		want      bool
	}{
		{"Patient", "Resource", true},
		{"Patient", "DomainResource", true},
		{"Bundle", "DomainResource", false},
		{"Age", "Quantity", true},
		{"Quantity", "Age", false},
		{"code", "string", true},
		{"canonical", "uri", true},
		{"string", "uri", false},
		{"Observation.component", "BackboneElement", true},
		{"Observation.component", "Element", true},
		{"Dosage", "BackboneElement", true},
		{"HumanName", "Element", true},
	} {
		if got := isType(fhir.Type(tt.typ), tt.base); got != tt.want {
			t.Errorf("isType(%s, %s) = %v, want %v", tt.typ, tt.base, got, tt.want)
		}
	}
}
