package main

import (
	"bytes"
	"os"
	"testing"

	"github.com/ehrvault/ehrvault/internal/sharedtest"
)

// TestGeneratedFileIsFresh fails when model_gen.go differs from what the
// generator makes of the specification: run go generate ./internal/fhir.
func TestGeneratedFileIsFresh(t *testing.T) {
	want, err := generate(sharedtest.Dir(t, "fhir-r4"))
	if err != nil {
		t.Fatalf("generate: %v", err)
	}
	got, err := os.ReadFile("../model_gen.go")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("internal/fhir/model_gen.go is stale: run go generate ./internal/fhir")
	}
}
