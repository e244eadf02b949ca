package main

import (
	"errors"
	"os"
	"os/exec"
	"strconv"
	"testing"

	"github.com/rogpeppe/go-internal/testscript"
)

// TestMain lets the scripts in testdata/script run "ehrvault" in-process.
func TestMain(m *testing.M) {
	testscript.Main(m, map[string]func(){
		"ehrvault": func() { os.Exit(run()) },
	})
}

// TestScripts runs the command-line scripts in testdata/script: what an
// operator types, and what the command answers (exit status, messages,
// hints), for every subcommand.
func TestScripts(t *testing.T) {
	testscript.Run(t, testscript.Params{
		Dir: "testdata/script",
		Cmds: map[string]func(ts *testscript.TestScript, neg bool, args []string){
			"exits": exits,
		},
		Setup: func(env *testscript.Env) error {
			// Cheap argon2id parameters: the scripts init many stores.
			env.Setenv(insecureKDFEnv, "1")
			return nil
		},
	})
}

// exits N PROG ARGS... runs a program like exec and checks that its exit
// status is N: the CLI promises 0 for success, 1 for failure and 2 for a
// usage error.
func exits(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) < 2 {
		ts.Fatalf("usage: exits STATUS PROGRAM [ARGS...]")
	}
	want, err := strconv.Atoi(args[0])
	if err != nil {
		ts.Fatalf("exits: bad status %q", args[0])
	}
	got := 0
	if err := ts.Exec(args[1], args[2:]...); err != nil {
		var ee *exec.ExitError
		if !errors.As(err, &ee) {
			ts.Fatalf("exits: %v", err)
		}
		got = ee.ExitCode()
	}
	if got != want {
		ts.Fatalf("exit status %d, want %d", got, want)
	}
}
