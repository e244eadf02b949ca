// Command ehrvault is a FHIR R4 health-record server whose stored records are
// encrypted per patient. This file and its siblings only parse flags and wire
// the parts of internal/ together; one file per subcommand.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
)

// version is set at build time with -ldflags "-X main.version=…".
var version = "dev"

func main() {
	os.Exit(run())
}

// run executes the command line in os.Args and returns the exit code:
// 0 success, 1 failure, 2 usage error.
func run() int {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	env := &cli{stdin: os.Stdin, stdout: os.Stdout, stderr: os.Stderr, getenv: os.Getenv}
	return env.main(ctx, os.Args[1:])
}

// cli is the process environment a command runs in.
type cli struct {
	stdin          io.Reader
	stdout, stderr io.Writer
	getenv         func(string) string
}

// command is one subcommand.
type command struct {
	name    string
	summary string
	run     func(ctx context.Context, c *cli, args []string) error
}

func commands() []command {
	return []command{
		{"init", "create a data directory and its sealed key", runInit},
		{"serve", "serve the FHIR R4 API", runServe},
		{"import", "load files and folders of FHIR JSON (Bundles, NDJSON, resources)", runImport},
		{"token", "create, list and revoke API bearer tokens", runToken},
		{"client", "register SMART apps, backend services and medical devices", runClient},
		{"device", "enrollment codes; list, approve and revoke enrolled devices", runDevice},
		{"user", "add, list, disable, enable, set-role and reset-mfa people", runUser},
		{"audit", "verify the audit log, prove entries, report, witness", runAudit},
		{"demo", "start a throw-away server with synthetic demo patients", runDemo},
		{"synth", "write synthetic patients as FHIR transaction Bundles", runSynth},
		{"version", "print the version", runVersion},
	}
}

const mainUsage = `ehrvault is a FHIR R4 health-record server whose stored records are
encrypted per patient: its files are worthless to a thief without the key.

Usage:
  ehrvault <command> [flags] [arguments]

Commands:
%s
Try it:
  ehrvault demo                              # throw-away server with demo patients

Run a real one:
  ehrvault init  --data /var/lib/ehrvault    # asks for a passphrase (or EHRVAULT_PASSPHRASE)
  ehrvault import --data /var/lib/ehrvault ./bundles/
  ehrvault token create --data /var/lib/ehrvault --ttl 8h
  ehrvault serve --data /var/lib/ehrvault --listen 127.0.0.1:8080

The passphrase that unseals the data directory's key comes from
EHRVAULT_PASSPHRASE, --passphrase-file, or a prompt on a terminal.

Run "ehrvault <command> -h" for a command's flags.
Exit status: 0 success, 1 failure, 2 usage error.
`

func (c *cli) usage(w io.Writer) {
	var b strings.Builder
	for _, cmd := range commands() {
		fmt.Fprintf(&b, "  %-9s %s\n", cmd.name, cmd.summary)
	}
	fmt.Fprintf(w, mainUsage, b.String())
}

// usageError is an error in how the command was called (exit status 2).
type usageError struct{ msg string }

func (e *usageError) Error() string { return e.msg }

func usagef(format string, args ...any) error { return &usageError{fmt.Sprintf(format, args...)} }

// hintError carries advice for the operator beside the error.
type hintError struct {
	err  error
	hint string
}

func (e *hintError) Error() string { return e.err.Error() }
func (e *hintError) Unwrap() error { return e.err }

func withHint(err error, hint string) error { return &hintError{err: err, hint: hint} }

func (c *cli) main(ctx context.Context, args []string) int {
	if len(args) == 0 {
		c.usage(c.stderr)
		return 2
	}
	name := args[0]
	if name == "-h" || name == "--help" || name == "help" {
		c.usage(c.stdout)
		return 0
	}
	for _, cmd := range commands() {
		if cmd.name != name {
			continue
		}
		err := cmd.run(ctx, c, args[1:])
		switch {
		case err == nil:
			return 0
		case errors.Is(err, flag.ErrHelp):
			return 0
		}
		var ue *usageError
		if errors.As(err, &ue) {
			fmt.Fprintf(c.stderr, "ehrvault %s: %s\nRun \"ehrvault %s -h\" for usage.\n", name, ue.msg, name)
			return 2
		}
		fmt.Fprintf(c.stderr, "ehrvault: error: %v\n", err)
		var he *hintError
		if errors.As(err, &he) {
			fmt.Fprintf(c.stderr, "ehrvault: hint: %s\n", he.hint)
		}
		return 1
	}
	fmt.Fprintf(c.stderr, "ehrvault: unknown command %q\n\n", name)
	c.usage(c.stderr)
	return 2
}

// flags returns a flag set for a subcommand whose -h prints usage and a
// description, and whose errors become usage errors.
func (c *cli) flags(name, synopsis, about string) *flag.FlagSet {
	fs := flag.NewFlagSet("ehrvault "+name, flag.ContinueOnError)
	fs.SetOutput(c.stderr)
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "Usage: ehrvault %s %s\n\n%s\n\nFlags:\n", name, synopsis, strings.TrimSpace(about))
		fs.PrintDefaults()
	}
	return fs
}

// parse parses args, turning flag errors into usage errors.
func (c *cli) parse(fs *flag.FlagSet, args []string) error {
	fs.SetOutput(io.Discard)
	err := fs.Parse(args)
	if errors.Is(err, flag.ErrHelp) {
		fs.SetOutput(c.stdout)
		fs.Usage()
		return flag.ErrHelp
	}
	if err != nil {
		return usagef("%v", err)
	}
	return nil
}

func runVersion(ctx context.Context, c *cli, args []string) error {
	fmt.Fprintf(c.stdout, "ehrvault %s (FHIR R4 4.0.1)\n", version)
	return nil
}
