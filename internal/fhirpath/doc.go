// Package fhirpath compiles and evaluates the subset of FHIRPath
// (http://hl7.org/fhirpath/N1/) that the R4 search parameters use, over
// resources parsed by internal/fhir.
//
// Every item of a result carries its FHIR type from the model, so that
// choice elements navigate by their element name (Observation.value finds
// valueQuantity, valueCodeableConcept, … and types each by the member it
// came from), and so that is, as and ofType can test types, including
// specializations (Age is a Quantity, code is a string, every resource is a
// Resource).
//
// # Supported
//
//   - paths: Patient.name.given, choice elements, contained resources and
//     Bundle entries typed by their resourceType; a type name that starts a
//     path (Observation.code) selects the focus if it is of that type
//   - literals: 'strings' (with FHIRPath escapes), numbers, true, false;
//     `delimited` names
//   - operators, with the FHIRPath precedence: . and [integer], is and as,
//     |, = and !=, and, or
//   - functions: where(criteria), exists(), exists(criteria), empty(),
//     first(), not(), resolve(), as(Type), is(Type), ofType(Type),
//     extension('url')
//   - $this, and %resource (composite parameters' components use it)
//   - comments
//
// Anything else (arithmetic, comparison, ~, in, contains, implies, xor,
// other functions, dates and quantities as literals, {}, other variables)
// is refused by Parse with a *SyntaxError that names it and its offset.
//
// # Semantics worth knowing
//
//   - resolve() never fetches: a "#id" reference yields the contained
//     resource; a literal reference ("Patient/123", an absolute URL ending
//     in Patient/123, either with /_history/n) yields an item that carries
//     only the type Patient, which is all that "resolve() is Patient"
//     needs; urn:uuid:, conditional and identifier-only references yield
//     nothing.
//   - as and ofType filter a collection of any size (search parameters
//     apply as to collections), and a FHIR value is never of a System type
//     (a FHIR string is not a System.String).
//   - = compares primitives by value (numbers numerically) and complex
//     values member by member; an empty operand gives an empty result, and
//     and, or and not() follow the three-valued logic of the specification.
//   - Primitive extensions (_name members) are not navigated, and a
//     primitive that has only extensions is absent.
//
// # Compiling once
//
// Parse compiles an expression without consulting the model. For
// specializes it to a resource type, once: paths that start from other
// types are dropped ("Observation.subject | Group.member" is just subject
// for an Observation) and every type name is checked against the model.
// An Evaluator evaluates compiled expressions reusing its memory, so that
// indexing a resource allocates almost nothing.
package fhirpath
