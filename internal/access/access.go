// Package access holds what an access decision hands the layers below it:
// the restriction that says which records a principal may see. Deciding it
// (roles, consent, break-glass, least privilege) is the access issue's
// work; this package only names the result, so that search, history,
// reads and includes can all obey one value.
//
// # Promises
//
//   - A nil *Restriction means the principal may see every record (an
//     operator, an import). Any other value is a closed list: what it does
//     not name is not there. Every path that returns or counts resources
//     (read, vread, history, search with its chains, _has, includes,
//     counts and totals, paging, $everything) answers a restricted caller
//     as if the records outside the restriction did not exist.
//   - The restriction is applied inside the store's queries, so counts,
//     totals and page boundaries never reveal what it hides.
package access

import (
	"slices"
	"strconv"
	"strings"
)

// Restriction is the set of records a principal may see.
type Restriction struct {
	// Patients lists the ids of the patients whose compartments the
	// principal may see: a resource is in patient P's compartment when
	// it is P or its owner is P (see internal/search: the first
	// compartment reference that names a patient decides).
	Patients []string
	// Shared admits the resources that belong to no patient:
	// Organization, Practitioner, Medication, and resources of
	// compartment types that name no patient. Resources that name
	// several patients (a Group, a Communication to two of them) are
	// never admitted by a restriction: they would show a patient outside
	// it.
	Shared bool
	// Labels lists the security labels ("system|code", or "|code" for a
	// label without a system) the principal may see. A resource is
	// admitted only if every label in its meta.security is listed; a
	// resource without labels is always admitted.
	Labels []string
}

// HasPatient reports whether r admits patient id's compartment.
func (r *Restriction) HasPatient(id string) bool {
	return r == nil || slices.Contains(r.Patients, id)
}

// HasLabel reports whether r admits the label system|code.
func (r *Restriction) HasLabel(system, code string) bool {
	return r == nil || slices.Contains(r.Labels, system+"|"+code)
}

// String describes r for logs and errors by its size, never its ids.
func (r *Restriction) String() string {
	if r == nil {
		return "unrestricted"
	}
	var b strings.Builder
	b.WriteString("restricted to ")
	b.WriteString(strconv.Itoa(len(r.Patients)))
	b.WriteString(" patients")
	if r.Shared {
		b.WriteString(" and shared records")
	}
	b.WriteString(", ")
	b.WriteString(strconv.Itoa(len(r.Labels)))
	b.WriteString(" labels")
	return b.String()
}
