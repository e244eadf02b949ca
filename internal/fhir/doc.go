// Package fhir is the FHIR R4 (4.0.1) model, compiled from the
// specification's StructureDefinitions: a JSON value type that keeps what
// FHIR needs kept, the types and their elements, validation, the
// references of a resource, and the normalized form resources are stored
// in.
//
// # Promises
//
//   - Parse keeps member order and number literals exactly, and refuses
//     duplicate members, invalid UTF-8 and nesting deeper than a limit,
//     before the nesting costs stack.
//   - Validate checks structure against the StructureDefinitions: elements,
//     cardinality, JSON kinds, primitive formats and ranges, choice
//     elements, contained resources, extensions, narratives and required
//     bindings. Its issues name element paths and never quote a value.
//   - The tables in model_gen.go are generated from ../shared/fhir-r4 by
//     the committed generator in gen/; a test fails when they are stale.
//
// # Non-promises
//
// Validation is structural. FHIRPath invariants other than the few named
// in Validate's documentation, profiles, and bindings to terminologies
// outside the specification (SNOMED CT, LOINC, UCUM) are not checked.
package fhir

//go:generate go run ./gen -spec ../../../shared/fhir-r4 -o model_gen.go
