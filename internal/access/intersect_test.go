package access

import (
	"slices"
	"testing"
)

func TestIntersect(t *testing.T) {
	a := &Restriction{Patients: []string{"p1", "p2", "p2"}, Shared: true, Labels: []string{"s|R", "s|N"}}
	b := &Restriction{Patients: []string{"p2", "p3"}, Shared: false, Labels: []string{"s|N"}}
	if Intersect(nil, nil) != nil {
		t.Errorf("Intersect(nil, nil) is not nil: two unrestricted callers make an unrestricted one")
	}
	if Intersect(nil, b) != b || Intersect(a, nil) != a {
		t.Errorf("Intersect with nil must return the other restriction")
	}
	got := Intersect(a, b)
	if !slices.Equal(got.Patients, []string{"p2"}) || got.Shared || !slices.Equal(got.Labels, []string{"s|N"}) {
		t.Errorf("Intersect(a, b) = %+v, want patients [p2], not shared, labels [s|N]", got)
	}
	if got := Intersect(&Restriction{Patients: []string{"p1"}}, &Restriction{Patients: []string{"p9"}}); got == nil || len(got.Patients) != 0 || got.HasPatient("p1") {
		t.Errorf("disjoint restrictions must admit no patient, got %+v", got)
	}
}
