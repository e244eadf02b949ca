package main

import (
	"bytes"
	"os"
	"testing"

	"github.com/ehrvault/ehrvault/internal/sharedtest"
)

// TestGeneratedFileIsFresh fails when params_gen.go differs from what the
// generator makes of the specification: run go generate ./internal/search.
func TestGeneratedFileIsFresh(t *testing.T) {
	want, err := generate(sharedtest.Dir(t, "fhir-r4"))
	if err != nil {
		t.Fatalf("generate: %v", err)
	}
	got, err := os.ReadFile("../params_gen.go")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("internal/search/params_gen.go is stale: run go generate ./internal/search")
	}
}
