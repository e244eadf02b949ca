package smart

import (
	"errors"
	"testing"
)

func TestParseScope(t *testing.T) {
	tests := []struct{ in, want string }{
		{"patient/Observation.rs", "patient/Observation.rs"},
		{"user/*.cruds", "user/*.cruds"},
		{"system/Patient.r", "system/Patient.r"},
		{"patient/Observation.read", "patient/Observation.rs"},
		{"user/Patient.write", "user/Patient.cud"},
		{"patient/*.*", "patient/*.cruds"},
		{"patient/Observation.rs?category=http://terminology.hl7.org/CodeSystem/observation-category|laboratory",
			"patient/Observation.rs?category=http://terminology.hl7.org/CodeSystem/observation-category|laboratory"},
		{"patient/Observation.rs?code=a%26b%3Ac", "patient/Observation.rs?code=a%26b:c"},
		{"launch/patient", "launch/patient"},
		{"offline_access", "offline_access"},
	}
	for _, tt := range tests {
		s, err := ParseScope(tt.in)
		if err != nil || s.String() != tt.want {
			t.Errorf("ParseScope(%q) = %q, %v; want %q", tt.in, s.String(), err, tt.want)
		}
	}
	for _, bad := range []string{"", "patient/Observation", "patient/Observation.sr", "patient/Observation.rr",
		"patient/Observation.x", "patient/observation.r", "encounter/Observation.r", "patient/.r",
		"launch", "patient/Observation.read?category=x", "patient/Observation.rs?", "patient/Observation.rs?category=",
		"patient/Obs-ervation.r"} {
		if _, err := ParseScope(bad); !errors.Is(err, ErrScope) {
			t.Errorf("ParseScope(%q) = %v, want ErrScope", bad, err)
		}
	}
}

func FuzzParseScope(f *testing.F) {
	for _, s := range []string{"patient/Observation.rs", "user/*.cruds", "patient/Observation.rs?category=a|b", "openid"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		s, err := ParseScope(in)
		if err != nil {
			return
		}
		again, err := ParseScope(s.String())
		if err != nil || again.String() != s.String() {
			t.Fatalf("round trip of %q: %q, %v", s.String(), again.String(), err)
		}
	})
}

func TestPermitsAndConstraints(t *testing.T) {
	ss := MustParseScopes("patient/Observation.rs?category=laboratory patient/Patient.r user/Encounter.cruds")
	tests := []struct {
		ctx, typ string
		i        byte
		want     bool
		filters  int
	}{
		{"patient", "Observation", 'r', true, 1},
		{"patient", "Observation", 's', true, 1},
		{"patient", "Observation", 'c', false, 0},
		{"user", "Observation", 'r', false, 0},
		{"patient", "Patient", 'r', true, 0},
		{"patient", "Patient", 's', false, 0},
		{"user", "Encounter", 'd', true, 0},
		{"system", "Encounter", 'r', false, 0},
	}
	for _, tt := range tests {
		f, ok := ss.Constraints(tt.ctx, tt.typ, tt.i)
		if ok != tt.want || len(f) != tt.filters || ss.Permits(tt.ctx, tt.typ, tt.i) != tt.want {
			t.Errorf("Constraints(%s, %s, %c) = %v, %v; want %v with %d filters", tt.ctx, tt.typ, tt.i, f, ok, tt.want, tt.filters)
		}
	}
	if f, _ := ss.Constraints("patient", "Observation", 'r'); f[0].Get("category") != "laboratory" {
		t.Errorf("filter = %v, want category=laboratory", f)
	}
	// An unconstrained scope beside the granular one lifts the filter.
	ss = append(ss, MustParseScopes("patient/Observation.r")...)
	if f, ok := ss.Constraints("patient", "Observation", 'r'); !ok || f != nil {
		t.Errorf("with patient/Observation.r: Constraints = %v, %v; want nil, true", f, ok)
	}
}

func TestGrant(t *testing.T) {
	tests := []struct{ requested, allowed, want string }{
		// Never more than asked.
		{"patient/Observation.r", "patient/*.cruds", "patient/Observation.r"},
		// Never more than allowed: scope escalation asks for more.
		{"patient/*.cruds", "patient/Observation.rs", "patient/Observation.rs"},
		{"patient/Observation.cruds", "patient/Observation.rs", "patient/Observation.rs"},
		{"user/Observation.rs", "patient/Observation.rs", ""},
		{"system/*.cruds", "system/Observation.c system/ImagingStudy.c", "system/ImagingStudy.c system/Observation.c"},
		{"patient/Observation.rs", "patient/Observation.rs?category=lab", "patient/Observation.rs?category=lab"},
		{"patient/Observation.rs?category=lab", "patient/Observation.r", "patient/Observation.r?category=lab"},
		{"patient/Observation.rs?category=lab", "patient/Observation.r?category=vital", ""},
		{"launch/patient offline_access patient/Patient.r", "patient/Patient.rs launch/patient", "launch/patient patient/Patient.r"},
	}
	for _, tt := range tests {
		got := Grant(MustParseScopes(tt.requested), MustParseScopes(tt.allowed)).String()
		if got != tt.want {
			t.Errorf("Grant(%q, %q) = %q, want %q", tt.requested, tt.allowed, got, tt.want)
		}
	}
}

func TestHandles(t *testing.T) {
	for h, want := range map[string]bool{
		"DPoP " + AccessTokenPrefix + "x":   true,
		"dpop anything":                     true,
		"Bearer " + AccessTokenPrefix + "x": true,
		"Bearer ehv_operator":               false,
		"":                                  false,
	} {
		r := fhirReq("GET", "/fhir/Patient", "", "", "")
		if h != "" {
			r.Header.Set("Authorization", h)
		}
		if got := Handles(r); got != want {
			t.Errorf("Handles(%q) = %v, want %v", h, got, want)
		}
	}
}
