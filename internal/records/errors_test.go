package records

import "testing"

// TestEveryCodeHasAnIssue: each error code names itself and maps to an
// OperationOutcome issue type (a missing one panicked on every refused
// restricted write).
func TestEveryCodeHasAnIssue(t *testing.T) {
	if len(issueCode) != len(codeNames) {
		t.Fatalf("%d issue types for %d codes", len(issueCode), len(codeNames))
	}
	for c := Internal; c <= Forbidden; c++ {
		e := newError(c, "", "x")
		if e.Issues[0].Code == "" || c.String() == "" {
			t.Errorf("code %d: issue %q name %q", c, e.Issues[0].Code, c)
		}
	}
	if got := newError(Forbidden, "", "x").Issues[0].Code; got != "forbidden" {
		t.Errorf("Forbidden's issue type is %q, want forbidden", got)
	}
}
