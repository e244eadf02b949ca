package main

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/mod/sumdb/tlog"

	"github.com/ehrvault/ehrvault/internal/audit"
)

func auditWitness(ctx context.Context, c *cli, args []string) error {
	fs := c.flags("audit witness", "--url URL --key KEY --state FILE [--once] [--every D]", `
Witness an ehrvault server's audit log from outside it: fetch the newest
signed checkpoint (URL/audit/checkpoint), check its signature with KEY
(from "ehrvault audit key" or URL/audit/key, obtained once, out of band),
and prove with a consistency proof (URL/audit/proof/consistency) that the
log has only been appended to since the checkpoint kept in FILE; then keep
the new one in FILE (and every one in FILE.d/). Needs no token and sees no
health data: checkpoints and proofs hold hashes only.

On a checkpoint that does not follow (a rewritten, shortened or forked log)
it says ALARM, saves the evidence beside FILE and exits 1. Run it on
another machine, by another person, with --once from cron or without to
poll every --every. Give FILE to "ehrvault audit verify --checkpoint" to
check the log itself against it.`)
	base := fs.String("url", "", "the server's base `URL` (http://host:8080)")
	key := fs.String("key", "", "the log's verifier `key` (name+hash+key)")
	state := fs.String("state", "", "the `file` that keeps the newest witnessed checkpoint")
	once := fs.Bool("once", false, "check once and exit")
	every := fs.Duration("every", time.Minute, "how often to check")
	if err := c.parse(fs, args); err != nil {
		return err
	}
	if *base == "" || *key == "" || *state == "" {
		return usagef("--url, --key and --state are required")
	}
	u, err := url.Parse(strings.TrimRight(*base, "/"))
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") {
		return usagef("--url must be an http or https URL")
	}
	w := &witness{base: u.String(), key: *key, state: *state, client: &http.Client{Timeout: 30 * time.Second}, c: c}
	for {
		if err := w.check(ctx); err != nil {
			if errors.Is(err, audit.ErrForked) {
				return withHint(fmt.Errorf("ALARM: %w", err), "the evidence is saved beside "+*state+"; tell the server's security officer")
			}
			if *once {
				return err
			}
			fmt.Fprintf(c.stderr, "ehrvault: witness: %v (will try again)\n", err)
		}
		if *once {
			return nil
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(*every):
		}
	}
}

type witness struct {
	base, key, state string
	client           *http.Client
	c                *cli
}

func (w *witness) get(ctx context.Context, path string) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, w.base+path, nil)
	if err != nil {
		return nil, err
	}
	resp, err := w.client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET %s: %s", path, resp.Status)
	}
	return b, nil
}

// check runs one round: fetch, verify, prove, keep.
func (w *witness) check(ctx context.Context) error {
	msg, err := w.get(ctx, "/audit/checkpoint")
	if err != nil {
		return err
	}
	next, err := audit.ParseCheckpoint(msg, w.key)
	if err != nil {
		w.evidence("checkpoint", msg)
		return fmt.Errorf("%w: the served checkpoint does not verify with the key: %v", audit.ErrForked, err)
	}
	old, err := os.ReadFile(w.state)
	if errors.Is(err, os.ErrNotExist) {
		fmt.Fprintf(w.c.stdout, "witnessing %s from %d entries on (first checkpoint kept)\n", next.Origin, next.Size)
		return w.keep(msg, next)
	}
	if err != nil {
		return fmt.Errorf("read state: %w", err)
	}
	prev, err := audit.ParseCheckpoint(old, w.key)
	if err != nil {
		return fmt.Errorf("the kept checkpoint %s does not verify with the key: %v", w.state, err)
	}
	var proof []tlog.Hash
	var raw []byte
	if next.Size > prev.Size {
		raw, err = w.get(ctx, fmt.Sprintf("/audit/proof/consistency?from=%d&to=%d", prev.Size, next.Size))
		if err != nil {
			return err
		}
		var p struct {
			Hashes []string `json:"hashes"`
		}
		if err := json.Unmarshal(raw, &p); err != nil {
			return fmt.Errorf("read the consistency proof: %w", err)
		}
		for _, s := range p.Hashes {
			b, err := base64.StdEncoding.DecodeString(s)
			if err != nil || len(b) != tlog.HashSize {
				return errors.New("read the consistency proof: a malformed hash")
			}
			var h tlog.Hash
			copy(h[:], b)
			proof = append(proof, h)
		}
	}
	if err := audit.CheckAppendOnly(prev, next, proof); err != nil {
		w.evidence("checkpoint", msg)
		if raw != nil {
			w.evidence("proof", raw)
		}
		return err
	}
	if next.Size == prev.Size {
		return nil
	}
	fmt.Fprintf(w.c.stdout, "%s: %d entries, appended to since %d\n", next.Origin, next.Size, prev.Size)
	return w.keep(msg, next)
}

// keep stores the checkpoint as the newest (atomically) and in FILE.d/.
func (w *witness) keep(msg []byte, cp *audit.Checkpoint) error {
	dir := w.state + ".d"
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, fmt.Sprintf("%012d", cp.Size)), msg, 0o644); err != nil {
		return err
	}
	p := &audit.FilePublisher{Path: w.state}
	return p.Publish(context.Background(), msg)
}

// evidence saves what the server showed, beside the state file.
func (w *witness) evidence(what string, b []byte) {
	name := fmt.Sprintf("%s.alarm-%s-%s", w.state, time.Now().UTC().Format("20060102T150405Z"), what)
	os.WriteFile(name, b, 0o644)
}
