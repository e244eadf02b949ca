package main

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"flag"
	"fmt"
	"net"
	neturl "net/url"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/ehrvault/ehrvault/internal/auth"
	"github.com/ehrvault/ehrvault/internal/edge"
	"github.com/ehrvault/ehrvault/internal/fhir"
	"github.com/ehrvault/ehrvault/internal/records"
	"github.com/ehrvault/ehrvault/internal/synth"
)

func runDemo(ctx context.Context, c *cli, args []string) error {
	fs := c.flags("demo", "[--listen ADDR] [--patients N] [--data DIR]", `
Start a throw-away ehrvault with synthetic demo patients: create a store in
a temporary directory under a random passphrase, load the patients (made
by ehrvault's own generator: names, SSNs in the 999- test range,
addresses, coverage, conditions, vitals, labs, immunizations,
medications), print a URL, a bearer token and curl lines to try, and serve
until Ctrl-C. The temporary store is deleted on exit unless --data names
a directory to keep.`)
	var sf serveFlags
	sf.register(fs)
	patients := fs.Int("patients", 20, "how many synthetic patients to load")
	seed := fs.Uint64("seed", 1, "seed of the synthetic patients (the same seed gives the same patients)")
	keep := fs.String("data", "", "keep the store in this new `directory` instead of a temporary one")
	if err := c.parse(fs, args); err != nil {
		return err
	}
	if *patients < 0 || *patients > 100000 {
		return usagef("--patients must be between 0 and 100000")
	}
	log, err := newLogger(c.stderr, sf.logFormat)
	if err != nil {
		return err
	}
	dir := *keep
	if dir == "" {
		dir, err = os.MkdirTemp("", "ehrvault-demo-*")
		if err != nil {
			return fmt.Errorf("create a temporary directory: %w", err)
		}
		defer os.RemoveAll(dir)
	}
	var raw [24]byte
	rand.Read(raw[:])
	pass := []byte(base64.RawURLEncoding.EncodeToString(raw[:]))
	if err := c.initVault(ctx, dir, pass); err != nil {
		return err
	}
	as, err := sf.auditSettings()
	if err != nil {
		return err
	}
	v, err := openVaultWith(ctx, dir, pass, log, writerAccess, as)
	if err != nil {
		return err
	}
	defer v.Close()

	start := time.Now()
	n, first, err := loadDemo(ctx, v, *seed, *patients)
	if err != nil {
		return fmt.Errorf("load demo patients: %w", err)
	}
	fmt.Fprintf(c.stderr, "loaded %d demo patients (%d resources) in %s\n", *patients, n, time.Since(start).Round(time.Millisecond))
	tok, _, err := v.tokens.Create(ctx, 24*time.Hour, "demo")
	if err != nil {
		return err
	}
	enroll, err := v.users.Add(ctx, "admin", "Demo administrator", auth.RoleAdmin)
	if err != nil {
		return fmt.Errorf("demo administrator: %w", err)
	}
	ln, err := net.Listen("tcp", sf.listen)
	if errors.Is(err, syscall.EADDRINUSE) && !flagSet(fs, "listen") {
		// The default port is taken: any free one will do for a demo.
		ln, err = net.Listen("tcp", "127.0.0.1:0")
	}
	if err != nil {
		return withHint(err, "choose another address with --listen")
	}
	family, year := "", ""
	if p, err := v.records.Read(ctx, "Patient", first, nil); err == nil {
		if body, err := fhir.Parse(p.JSON, 0); err == nil {
			if names := body.Get("name"); names != nil && len(names.Items) > 0 {
				family = names.Items[0].Str("family")
			}
			year = body.Str("birthDate")[:min(4, len(body.Str("birthDate")))]
		}
	}
	family = string([]rune(family)[:min(3, len([]rune(family)))])
	return c.serve(ctx, v, ln, &sf, log, func(url string) {
		kept := "deleted when the demo stops"
		if *keep != "" {
			kept = "kept"
		}
		origin := strings.TrimSuffix(url, "/fhir")
		curl := "curl -s"
		if strings.HasPrefix(url, "https:") {
			curl = "curl -s --cacert " + filepath.Join(dir, edge.CertFile)
		}
		bearer := `-H "Authorization: Bearer ` + tok + `"`
		fmt.Fprintf(c.stdout, `
ehrvault demo is running. Its store (%s) is in %s.

  FHIR API   %s
  Token      %s   (an operator token, for scripts)
  TLS        a self-signed certificate: %s

Try:
  %s %s "%s/Patient?_count=3&_pretty=true"
  %s %s "%s/Patient?family=%s&birthdate=%s&_elements=name,birthDate&_pretty=true"
  %s %s "%s/Observation?patient=%s&category=vital-signs&_sort=-date&_count=5&_pretty=true"
  %s %s "%s/Patient/%s/\$everything?_count=20"
  %s %s "%s/Patient/%s/_history"
  %s "%s/metadata" | head -c 300
  %s "%s/.well-known/smart-configuration"

Log in as a person: open %s/auth/enroll in a browser (accept the
certificate), enter the one-time code %s for user "admin",
choose a password of 12 or more characters and add an authenticator app
(TOTP) or a passkey.

Use the CLI on this store meanwhile:
  export EHRVAULT_PASSPHRASE='%s'
  go run ./cmd/ehrvault token list --data %s
  go run ./cmd/ehrvault user list --data %s

Press Ctrl-C to stop.
`, kept, dir, url, tok, filepath.Join(dir, edge.CertFile),
			curl, bearer, url, curl, bearer, url, neturl.QueryEscape(family), year, curl, bearer, url, first, curl, bearer, url, first, curl, bearer, url, first, curl, url, curl, origin,
			origin, enroll.Code, pass, dir, dir)
	})
}

// loadDemo loads the shared organizations and practitioners and n
// synthetic patients. It returns how many resources were loaded and the id
// of the first patient.
func loadDemo(ctx context.Context, v *vault, seed uint64, n int) (int, string, error) {
	g := synth.New(seed)
	total := 0
	load := func(data []byte) ([]records.EntryResult, error) {
		b, err := records.Parse(data)
		if err != nil {
			return nil, err
		}
		_, res, err := v.records.Bundle(ctx, b, records.WriteOptions{KeepIDs: true})
		if err != nil {
			return nil, err
		}
		total += len(res)
		return res, v.auditLoaded(ctx, "demo-patient", res)
	}
	shared, err := g.Shared()
	if err != nil {
		return 0, "", err
	}
	if _, err := load(shared); err != nil {
		return 0, "", fmt.Errorf("shared resources: %w", err)
	}
	first := ""
	for i := 0; i < n; i++ {
		data, err := g.PatientBundle(i)
		if err != nil {
			return 0, "", err
		}
		res, err := load(data)
		if err != nil {
			return 0, "", fmt.Errorf("patient %d: %w", i, err)
		}
		if first == "" {
			for _, r := range res {
				if r.Outcome != nil && r.Outcome.Resource != nil && r.Outcome.Resource.Type == "Patient" {
					first = r.Outcome.Resource.ID
					break
				}
			}
		}
	}
	return total, first, nil
}

// flagSet reports whether the flag name was given on the command line.
func flagSet(fs *flag.FlagSet, name string) bool {
	set := false
	fs.Visit(func(f *flag.Flag) { set = set || f.Name == name })
	return set
}
