// Package sharedtest finds the shared test data that CI places beside the
// repository (../shared), for tests that read it in place. The data is never
// copied into the repository.
package sharedtest

import (
	"os"
	"path/filepath"
	"testing"
)

// Dir returns the path of ../shared/elem... relative to the repository root
// (the directory holding go.mod). A test that asks for data that is not
// there fails: the suite must not pass by skipping what it cannot see.
func Dir(tb testing.TB, elem ...string) string {
	tb.Helper()
	root, err := repoRoot()
	if err != nil {
		tb.Fatalf("sharedtest: %v", err)
	}
	p := filepath.Join(append([]string{root, "..", "shared"}, elem...)...)
	if _, err := os.Stat(p); err != nil {
		tb.Fatalf("sharedtest: %v (the shared data must sit beside the repository, as ../shared)", err)
	}
	return p
}

func repoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", os.ErrNotExist
		}
		dir = parent
	}
}
