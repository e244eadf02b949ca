package devices

import (
	"errors"
	"testing"
	"time"
)

// FuzzVerifyProof feeds arbitrary text to the proof parser: it must
// refuse (with ErrProof) or accept, never panic, and accept only what a
// device key signed.
func FuzzVerifyProof(f *testing.F) {
	k, err := GenerateKey()
	if err != nil {
		f.Fatal(err)
	}
	now := time.Unix(1_800_000_000, 0)
	for _, act := range []string{actEnroll, actPosture, actStatus} {
		s, err := k.Proof(act, "ehd_x", &Posture{OS: "linux"}, now)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(s)
	}
	f.Add("eyJhbGciOiJub25lIn0.e30.")
	f.Add("..")
	f.Fuzz(func(t *testing.T, s string) {
		r := &Registry{now: func() time.Time { return now }}
		r.proofs.seen = map[string]time.Time{}
		for _, act := range []string{actEnroll, actPosture, actStatus} {
			v, err := r.verifyProof(s, act)
			if err != nil && !errors.Is(err, ErrProof) {
				t.Fatalf("verifyProof error %v does not wrap ErrProof", err)
			}
			if err == nil && (v.jkt == "" || v.claims.Act != act) {
				t.Fatalf("verifyProof accepted %+v for act %s", v, act)
			}
		}
	})
}
