package search

import (
	"strings"

	"github.com/ehrvault/ehrvault/internal/fhir"
	"github.com/ehrvault/ehrvault/internal/fhirpath"
)

// matchClause checks an opened resource against a clause that the index
// answers only in part (compileLocal's residual): string values longer
// than the indexed prefixes, :contains, and long :text values.
func matchClause(ev *fhirpath.Evaluator, c *Clause, res *fhir.Value) bool {
	nodes, err := ev.Eval(c.param.expr, res)
	if err != nil {
		return false
	}
	for _, n := range nodes {
		var texts []string
		if c.param.kind == kindToken {
			texts = tokenTexts(n)
		} else {
			texts = stringParts(n)
		}
		for _, t := range texts {
			nt := normalize(t)
			for _, v := range c.Values {
				switch c.Modifier {
				case "exact":
					if t == v.Text {
						return true
					}
				case "contains":
					if strings.Contains(nt, normalize(v.Text)) {
						return true
					}
				default:
					if nv := normalize(v.Text); nv != "" && strings.HasPrefix(nt, nv) {
						return true
					}
				}
			}
		}
	}
	return false
}
