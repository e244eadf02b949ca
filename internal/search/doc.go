// Package search is FHIR search over a store that holds no identifying
// value: it turns resources into blind-index entries when they are
// written, and queries into conditions on those entries when they are
// searched, with the caller's restriction inside the store's query. It also
// names the owner of a resource: the patient whose data key seals it.
//
// The search parameters are R4's (search-parameters.json, compiled by the
// generator in ./gen into params_gen.go) and their FHIRPath expressions,
// evaluated by internal/fhirpath, one compiled expression per (parameter,
// resource type). Token, reference, uri, string, date, number and quantity
// parameters are supported; composite and special ones are not.
//
// # Owner
//
// The owner of a resource decides its data key: "Patient/<id>" seals it
// under that patient's own key, "shared" under the key of resources of
// several patients, "store" under the store key. Deleting a patient's key
// therefore crypto-shreds every resource the patient owns, and nothing
// else. The rule, from compartmentdefinition-patient.json:
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
//     "shared". No productive parameter: "store".
//
// The rule reads only the resource, so the same content always gets the
// same owner. A restriction (internal/access) admits a patient's resources
// by their owner; "shared" resources, which would show a patient outside
// it, never.
//
// # Index entries
//
// A token is a keyed hash standing for (resource type, search parameter,
// one form of one value):
//
//	token = HMAC-SHA256(index key, msg)[:16]
//	msg   = lp(resource type) ‖ lp(parameter code) ‖ form ‖ lp(a) [‖ lp(b)]
//	lp(s) = uvarint(len(s)) ‖ s
//
// The length prefixes and the form byte make the encoding injective. The
// forms:
//
//	'c' a      token: code a in any system              (query: code)
//	's' a b    token: system a, code b                  (query: system|code)
//	'n' a      token: code a with no system             (query: |code)
//	'S' a      token: any code in system a              (query: system|)
//	't' a      token: a normalized prefix of a display or text (:text)
//	'R' a      reference: relative "Type/id", by the target's row id a
//	'i' a      reference: the bare id of a relative reference (query: id)
//	'r' a      reference: an absolute URL or canonical as written (and a
//	           canonical with |version also without it)
//	'u' a      uri: the value exactly
//	'p' a      string: a normalized prefix of 1 to 24 runes
//	'X' a      string: the value exactly as written (:exact)
//	'y' 'm' 'd' a    an identifying date's year, year-month, day
//	'Y' 'M' a  the same date is only a year, only a year and month
//	'E' 'Z'    the date lies before 1800, after 2200
//	'P'        the resource has a value for the parameter (:missing)
//
// Security labels (meta.security) get a token each that is the same for
// every type (an empty type in the message, form 'L'), kept per version so
// that a restriction to some labels is a condition inside the query.
//
// Normalization (strings, :text) folds case and accents: NFKD, combining
// marks dropped, lower case, runs of white space made one. A string value
// longer than 24 runes is found through its first 24 and checked against
// the opened resources; :contains is answered by opening the candidates
// the other parameters leave (nothing is indexed for it).
//
// Values that name nobody are held in the clear, under a key that is a
// keyed hash of (type, parameter[, unit]): clinical dates as ranges of
// milliseconds (a date, dateTime, instant, Period or Timing stands for the
// range its precision covers), numbers, and quantities (under any unit,
// the code or unit text, and system|code). Birth and death dates name
// somebody: they are tokens only, and a range of them is asked for as the
// union of the years, months and days it covers, within 1801-2199.
//
// # Queries
//
// Parse reads the R4 syntax: modifiers, OR by commas, AND by repetition,
// escapes, prefixes with R4's precision semantics (eq: the value's range
// contains the resource's; gt: the resource's range reaches above it; ge:
// gt or eq; sa: starts after it; ap: overlaps it widened by a tenth of its
// distance from now), chains one level deep, _has, _include and
// _revinclude with :iterate, _sort, _count, _summary, _elements, _total,
// Prefer: handling. Errors name the parameter, never its value.
//
// The Engine compiles each clause into one store condition (an OR of
// tokens and value ranges, possibly negated), runs the inner searches of
// chains (their rows become 'R' tokens without opening anything) and _has
// (their matches are opened to read their references), and lets the store
// plan, restrict, order and page. Pages continue by sealed cursors that
// hold a keyset position, never an offset.
//
// # Non-promises
//
//   - Tokens hide values, not equality: within one type and parameter,
//     equal values give equal tokens. docs/SECURITY.md states what a holder
//     of the database learns.
//   - No terminology: :above, :below, :in, :not-in, code system
//     hierarchies and UCUM unit conversion are not supported; codes match
//     exactly and case-sensitively.
//   - Sorting is by dates, numbers, quantities and _lastUpdated; strings
//     and tokens are stored only as hashes and cannot be ordered.
//   - A chain or _has whose inner search matches more than 10,000
//     resources is refused with a request to narrow it.
package search

//go:generate go run ./gen -spec ../../../shared/fhir-r4 -o params_gen.go
