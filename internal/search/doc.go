// Package search turns FHIR resources and queries into blind-index tokens:
// keyed hashes that let the store find resources by their values without
// holding the values. It also names the owner of a resource: the patient
// whose data key seals it.
//
// The search parameters are R4's (search-parameters.json, compiled by the
// generator in ./gen into params_gen.go) and their FHIRPath expressions,
// evaluated by internal/fhirpath. Each expression is compiled once per
// resource type.
//
// # Owner
//
// The owner of a resource decides its data key: "Patient/<id>" seals it
// under that patient's own key, "store" under the store key. Deleting a
// patient's key therefore crypto-shreds every resource the patient owns,
// and nothing else. The rule, from compartmentdefinition-patient.json:
//
//   - A Patient owns itself: "Patient/" + its id ("store" if it has none).
//   - A resource of a type the patient compartment does not list (Organization,
//     Practitioner, Medication, …) is owned by "store".
//   - Otherwise the type's compartment parameters are tried in a fixed
//     order: patient, subject, beneficiary, individual, then the others in
//     the order the CompartmentDefinition gives them. Each yields the
//     literal references to a Patient it finds: relative ("Patient/123",
//     "Patient/123/_history/2") or absolute URLs ending in Patient/123.
//     Contained ("#x"), urn:uuid:/urn:oid:, conditional and identifier-only
//     references count for nothing. The first parameter that yields any
//     patient decides: exactly one distinct patient is the owner; several
//     (a Group's members, a Communication to two patients) make the owner
//     "store". No productive parameter: "store".
//
// The rule reads only the resource, so the same content always gets the
// same owner. A client can move a resource to another key only by
// changing the reference that decides its owner.
//
// # Tokens
//
// A token stands for (resource type, search parameter, one value form):
//
//	token = HMAC-SHA256(index key, msg)[:16]
//	msg   = lp(resource type) ‖ lp(parameter code) ‖ form ‖ lp(a) [‖ lp(b)]
//	lp(s) = uvarint(len(s)) ‖ s
//
// The length prefixes and the form byte make the encoding injective, so
// two different triples never hash the same message. The forms:
//
//	'c' a            token: code a in any system      (query: code)
//	's' a b          token: system a, code b          (query: system|code)
//	'n' a            token: code a with no system     (query: |code)
//	'S' a            token: any code in system a      (query: system|)
//	'r' a            reference: "Type/id" for a relative reference (its
//	                 version dropped), else the reference as written
//	                 (absolute URL, canonical); a canonical with a
//	                 |version also without it
//	'i' a            reference: the bare id of a relative reference (query: id)
//	'u' a            uri: the value exactly
//
// Token values come from Coding (system, code), CodeableConcept (each
// coding), Identifier (system, value), ContactPoint (system, value) and
// primitives (code, string, uri, id, boolean …: the value as code, with no
// system). _id is the token parameter on Resource.id.
//
// # Non-promises
//
//   - Values are hashed exactly as written: matching is exact and
//     case-sensitive; there is no normalization, no :text, :not, :above,
//     :below, :missing, no chaining and no OR (a comma) yet.
//   - Only token, reference and uri parameters (and _id) are indexed.
//     string, date, number, quantity, composite and special parameters
//     wait for the search engine.
//   - Tokens hide values, not equality: within one resource type and
//     parameter, equal values give equal tokens, so a holder of the
//     database sees which resources share a value and how many values
//     each has. docs/SECURITY.md states this leakage profile.
package search

//go:generate go run ./gen -spec ../../../shared/fhir-r4 -o params_gen.go
