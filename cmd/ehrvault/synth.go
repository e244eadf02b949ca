package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"

	"github.com/ehrvault/ehrvault/internal/synth"
)

func runSynth(ctx context.Context, c *cli, args []string) error {
	fs := c.flags("synth", "--out DIR [--patients N] [--seed S]", `
Write synthetic patients as FHIR R4 transaction Bundles, one file each
(patient-000001.json …), after shared.json with the organizations and
practitioners they refer to. The same seed gives the same patients. The
files load with "ehrvault import", and feed load tests at any scale. Every
value in them is made up; SSNs are in the 999- range that is never issued.`)
	out := fs.String("out", "", "the `directory` to write to (created if missing)")
	patients := fs.Int("patients", 10, "how many patients")
	seed := fs.Uint64("seed", 1, "the seed")
	if err := c.parse(fs, args); err != nil {
		return err
	}
	if *out == "" {
		return usagef("--out DIR is required")
	}
	if *patients < 0 {
		return usagef("--patients must not be negative")
	}
	if err := os.MkdirAll(*out, 0o755); err != nil {
		return err
	}
	g := synth.New(*seed)
	shared, err := g.Shared()
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(*out, "shared.json"), shared, 0o644); err != nil {
		return err
	}
	for i := 0; i < *patients; i++ {
		if err := ctx.Err(); err != nil {
			return err
		}
		data, err := g.PatientBundle(i)
		if err != nil {
			return err
		}
		name := filepath.Join(*out, fmt.Sprintf("patient-%06d.json", i+1))
		if err := os.WriteFile(name, data, 0o644); err != nil {
			return err
		}
	}
	fmt.Fprintf(c.stderr, "wrote shared.json and %d patient bundles to %s\n", *patients, *out)
	return nil
}
