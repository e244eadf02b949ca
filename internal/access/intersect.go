package access

import "slices"

// Intersect returns the restriction that admits only what both a and b
// admit; nil stands for no restriction, so Intersect(nil, b) is b.
func Intersect(a, b *Restriction) *Restriction {
	switch {
	case a == nil:
		return b
	case b == nil:
		return a
	}
	out := &Restriction{Shared: a.Shared && b.Shared, Patients: []string{}, Labels: []string{}}
	for _, p := range a.Patients {
		if slices.Contains(b.Patients, p) && !slices.Contains(out.Patients, p) {
			out.Patients = append(out.Patients, p)
		}
	}
	for _, l := range a.Labels {
		if slices.Contains(b.Labels, l) && !slices.Contains(out.Labels, l) {
			out.Labels = append(out.Labels, l)
		}
	}
	return out
}
