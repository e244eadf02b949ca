package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"

	"github.com/ehrvault/ehrvault/internal/importer"
)

// maxProblemsShown bounds the problems listed on stderr; the count says
// how many there were in all.
const maxProblemsShown = 200

func runImport(ctx context.Context, c *cli, args []string) error {
	fs := c.flags("import", "--data DIR [--strict] PATH...", `
Load FHIR R4 JSON into the store: transaction, batch and collection
Bundles, NDJSON files (one resource a line, .ndjson or .jsonl) and single
resources, from files and folders (recursively, in name order; Synthea's
hospitalInformation and practitionerInformation files first).

Resources keep their ids, so importing the same files again creates
nothing new. A transaction Bundle is loaded whole or not at all; elsewhere a
bad resource is reported with its file and entry or line and the rest goes
on, unless --strict. The exit status is 1 if anything was not loaded.

One process writes records to a data directory at a time: while a server
runs on it, import refuses to start; POST the Bundles to the server's API
(/fhir) instead, or stop it first.

Reads (GET) and operation calls in Bundles load nothing and are left out;
version preconditions (ifMatch) are ignored, since they name versions on
the server the Bundle came from.`)
	var pf passphraseFlags
	pf.register(fs)
	strict := fs.Bool("strict", false, "stop at the first problem")
	workers := fs.Int("workers", 0, "files read and validated in parallel (default: number of CPUs)")
	if err := c.parse(fs, args); err != nil {
		return err
	}
	if err := pf.check(); err != nil {
		return err
	}
	if fs.NArg() == 0 {
		return usagef("name at least one file or folder to import")
	}
	log := slog.New(slog.DiscardHandler)
	v, err := c.unseal(ctx, &pf, log, writerAccess)
	if err != nil {
		return err
	}
	defer v.Close()
	rep, err := importer.Import(ctx, v.records, fs.Args(), importer.Options{
		Strict:   *strict,
		Progress: c.stderr,
		Terminal: isTerminal(c.stderr),
		Workers:  *workers,
		Loaded:   v.auditLoaded,
	})
	if rep != nil {
		for i, p := range rep.Problems {
			if i == maxProblemsShown {
				fmt.Fprintf(c.stderr, "ehrvault: ... and %d more problems\n", len(rep.Problems)-i)
				break
			}
			fmt.Fprintf(c.stderr, "ehrvault: %s\n", p)
		}
		for _, s := range rep.Skipped {
			fmt.Fprintf(c.stderr, "ehrvault: skipped %s: not .json, .ndjson or .jsonl\n", s)
		}
	}
	if err != nil {
		if errors.Is(err, importer.ErrStopped) {
			return withHint(err, "fix the entry named above, or leave out --strict to load everything else")
		}
		return fmt.Errorf("import: %w", err)
	}
	if n := rep.Failed(); n > 0 {
		return fmt.Errorf("%d of the entries and files could not be loaded (listed above); everything else was", n)
	}
	return nil
}
