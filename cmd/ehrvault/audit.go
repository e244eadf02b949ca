package main

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/ehrvault/ehrvault/internal/audit"
)

const auditUsage = `Usage:
  ehrvault audit verify      --data DIR [--checkpoint FILE]...
  ehrvault audit prove       --data DIR --entry N [--size S]
  ehrvault audit prove       --data DIR --from A [--to B]
  ehrvault audit report      --data DIR [--from T] [--to T] [filters] [--sort COLS] [--format csv|json]
  ehrvault audit accesses    --data DIR --patient ID
  ehrvault audit disclosures --data DIR --patient ID [--format csv|json]
  ehrvault audit key         --data DIR
  ehrvault audit hash        --data DIR VALUE...
  ehrvault audit witness     --url URL --key KEY --state FILE [--once] [--every D]

The audit log (audit.log and audit.checkpoints in the data directory) holds one entry for every
access to health data and every security event. Its entries are the leaves
of an RFC 6962 Merkle tree; the server signs checkpoints of the tree, and
witnesses outside the server keep them, so that nobody can rewrite the log
unnoticed. "verify" recomputes all of it; "witness" is such a witness.
Run "ehrvault audit <command> -h" for a command's flags.
`

func runAudit(ctx context.Context, c *cli, args []string) error {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" {
		fmt.Fprint(c.stdout, auditUsage)
		if len(args) == 0 {
			return usagef("name a subcommand: verify, prove, report, accesses, disclosures, key, hash or witness")
		}
		return nil
	}
	sub := map[string]func(context.Context, *cli, []string) error{
		"verify": auditVerify, "prove": auditProve, "report": auditReport, "accesses": auditAccesses,
		"disclosures": auditDisclosures, "key": auditKey, "hash": auditHash, "witness": auditWitness,
	}[args[0]]
	if sub == nil {
		return usagef("unknown subcommand %q: use verify, prove, report, accesses, disclosures, key, hash or witness", args[0])
	}
	return sub(ctx, c, args[1:])
}

// openForAudit opens a data directory beside a running server (token
// commands' access), for commands that read the audit log.
func (c *cli) openForAudit(ctx context.Context, pf *passphraseFlags) (*vault, error) {
	if err := pf.check(); err != nil {
		return nil, err
	}
	return c.unseal(ctx, pf, slog.New(slog.DiscardHandler), adminAccess)
}

// multiFlag collects a repeated flag.
type multiFlag []string

func (m *multiFlag) String() string     { return strings.Join(*m, ",") }
func (m *multiFlag) Set(s string) error { *m = append(*m, s); return nil }

func auditVerify(ctx context.Context, c *cli, args []string) error {
	fs := c.flags("audit verify", "--data DIR [--checkpoint FILE]...", `
Recompute the whole audit log from its stored entries and check it: every
entry opens under its index, no index is missing, each entry's stored tree
hashes and time match its content, every checkpoint's signature verifies,
its root is the recomputed root at its size, each names the one before,
and the lookup index holds exactly the entries' lookups. With --checkpoint
(a signed checkpoint kept outside the server, e.g. by "audit witness"),
also prove that the log has only been appended to since.

On failure it names the first entry (or checkpoint) that does not match,
and exits 1. It reads the file only, and may run beside a server.`)
	var pf passphraseFlags
	pf.register(fs)
	var cps multiFlag
	fs.Var(&cps, "checkpoint", "a witnessed checkpoint `file` (repeatable)")
	if err := c.parse(fs, args); err != nil {
		return err
	}
	var witnessed [][]byte
	for _, f := range cps {
		b, err := os.ReadFile(f)
		if err != nil {
			return fmt.Errorf("read checkpoint: %w", err)
		}
		witnessed = append(witnessed, b)
	}
	if err := pf.check(); err != nil {
		return err
	}
	v, err := c.unsealWith(ctx, &pf, slog.New(slog.DiscardHandler), adminAccess, auditSettings{keysOnly: true})
	if err != nil {
		return err
	}
	defer v.Close()
	if _, err := os.Stat(filepath.Join(v.dir, auditFileName)); err != nil {
		return withHint(fmt.Errorf("the audit log %s is missing", filepath.Join(v.dir, auditFileName)), "restore it from a backup; a store never runs without it")
	}
	term := isTerminal(c.stderr)
	start := time.Now()
	rep, err := audit.Verify(ctx, audit.VerifyConfig{
		Path: filepath.Join(v.dir, auditFileName), Sealer: v.akeys.sealer, MAC: v.akeys.mac,
		VerifierKey: v.akeys.cfg.VerifierKey, Origin: v.akeys.cfg.Origin, Witnessed: witnessed,
		Progress: func(done, total int64) {
			rate := float64(done) / max(time.Since(start).Seconds(), 1e-9)
			if term {
				fmt.Fprintf(c.stderr, "\r\x1b[Kverifying %d/%d entries, %.0f/s", done, total, rate)
			} else if done < total {
				fmt.Fprintf(c.stderr, "verifying: %d/%d entries, %.0f/s\n", done, total, rate)
			}
		},
	})
	if term {
		fmt.Fprint(c.stderr, "\r\x1b[K")
	}
	if err != nil {
		return fmt.Errorf("audit verify: %w", err)
	}
	for _, p := range rep.Problems {
		fmt.Fprintf(c.stderr, "ehrvault: %s\n", p)
	}
	if !rep.OK() {
		first := rep.FirstBad()
		where := "the checkpoints or the lookup index (listed above)"
		if first >= 0 {
			where = fmt.Sprintf("entry %d", first)
		}
		return withHint(fmt.Errorf("the audit log does not verify: %d problems; the first bad one is %s", len(rep.Problems), where),
			"treat this as a security incident: keep a copy of audit.log and audit.checkpoints as they are, and compare it with a backup and with your witnesses' checkpoints")
	}
	fmt.Fprintf(c.stdout, "audit log OK: %d entries, %d checkpoints (the newest covers %d entries), verified in %s\n",
		rep.Entries, rep.Checkpoints, rep.Signed, rep.Elapsed.Round(time.Millisecond))
	if n := rep.Entries - rep.Signed; n > 0 {
		fmt.Fprintf(c.stdout, "%d entries after the newest checkpoint are not signed yet (the server signs them within seconds)\n", n)
	}
	for _, w := range rep.Witnessed {
		fmt.Fprintf(c.stdout, "the log has only been appended to since the witnessed checkpoint of %d entries\n", w)
	}
	return nil
}

func auditProve(ctx context.Context, c *cli, args []string) error {
	fs := c.flags("audit prove", "--data DIR (--entry N [--size S] | --from A [--to B])", `
Print, as JSON, an RFC 6962 inclusion proof of entry N in the tree of S
entries (the newest checkpoint's size by default), or a consistency proof
between the trees of A and B entries. Hashes are base64; the leaf hash is
SHA-256 of 0x00 and the entry's bytes.`)
	var pf passphraseFlags
	pf.register(fs)
	entry := fs.Int64("entry", -1, "the entry `index` to prove")
	size := fs.Int64("size", 0, "the tree `size` (default: the newest checkpoint's)")
	from := fs.Int64("from", 0, "the older tree `size` of a consistency proof")
	to := fs.Int64("to", 0, "the newer tree `size` (default: the newest checkpoint's)")
	if err := c.parse(fs, args); err != nil {
		return err
	}
	if (*entry >= 0) == (*from > 0) {
		return usagef("give --entry N or --from A, one of them")
	}
	v, err := c.openForAudit(ctx, &pf)
	if err != nil {
		return err
	}
	defer v.Close()
	var out any
	if *entry >= 0 {
		p, err := v.audit.ProveInclusion(ctx, *entry, *size)
		if err != nil {
			return err
		}
		out = map[string]any{"index": p.Index, "size": p.Size, "leafHash": b64(p.Leaf[:]), "root": b64(p.Root[:]), "hashes": b64s(p.Hashes)}
	} else {
		p, err := v.audit.ProveConsistency(ctx, *from, *to)
		if err != nil {
			return err
		}
		out = map[string]any{"from": p.From, "to": p.To, "fromRoot": b64(p.FromRoot[:]), "toRoot": b64(p.ToRoot[:]), "hashes": b64s(p.Hashes)}
	}
	return printJSON(c, out)
}

func b64(b []byte) string { return base64.StdEncoding.EncodeToString(b) }

func b64s[H ~[32]byte](hs []H) []string {
	out := make([]string, len(hs))
	for i := range hs {
		out[i] = b64(hs[i][:])
	}
	return out
}

func printJSON(c *cli, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	_, err = fmt.Fprintf(c.stdout, "%s\n", b)
	return err
}

// timeFlag parses a date (2026-12-01) or an instant.
func parseTimeFlag(name, s string, end bool) (time.Time, error) {
	if s == "" {
		return time.Time{}, nil
	}
	if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
		return t.UTC(), nil
	}
	t, err := time.Parse("2006-01-02", s)
	if err != nil {
		return t, usagef("--%s must be a date (2026-12-01) or an instant (2026-12-01T09:00:00Z)", name)
	}
	if end {
		t = t.AddDate(0, 0, 1) // the whole day
	}
	return t, nil
}

func auditReport(ctx context.Context, c *cli, args []string) error {
	fs := c.flags("audit report", "--data DIR [--from T] [--to T] [filters] [--sort COLS] [--format csv|json]", `
Print an audit report: the entries of a period, filtered by any column,
sorted by any columns, as CSV (default) or JSON. The columns are
`+strings.Join(audit.ReportColumns, ", ")+`. Search values in the query
column are keyed hashes; "ehrvault audit hash VALUE" gives the hash of a
value to look for. Reading the report is itself audited.`)
	var pf passphraseFlags
	pf.register(fs)
	from := fs.String("from", "", "entries at or after this date or `instant`")
	to := fs.String("to", "", "entries before this instant, or up to the end of this date")
	patient := fs.String("patient", "", "only events on this patient's record (a Patient `id`)")
	principal := fs.String("principal", "", "only events by this principal (a token `id`, a user)")
	resource := fs.String("resource", "", "only events on this resource (`Type/id`)")
	action := fs.String("action", "", "only this `action` (read, search-type, create, import, token-create …)")
	outcome := fs.String("outcome", "", "only this `outcome` (success, failure, denied, error)")
	source := fs.String("source", "", "only requests from this `address`")
	purpose := fs.String("purpose", "", "only this purpose of use `code`")
	sortBy := fs.String("sort", "", "sort by these `columns`, comma-separated, - for descending (e.g. principal,-time)")
	format := fs.String("format", "csv", "csv or json")
	if err := c.parse(fs, args); err != nil {
		return err
	}
	if *format != "csv" && *format != "json" {
		return usagef("--format must be csv or json")
	}
	f := audit.Filter{Agent: *principal, Entity: *resource, Action: *action, Outcome: *outcome}
	var err error
	if f.From, err = parseTimeFlag("from", *from, false); err != nil {
		return err
	}
	if f.To, err = parseTimeFlag("to", *to, true); err != nil {
		return err
	}
	v, err := c.openForAudit(ctx, &pf)
	if err != nil {
		return err
	}
	defer v.Close()
	if *patient != "" {
		f.Patient = v.records.PatientKey(*patient)
	}
	spec := audit.ReportSpec{Filter: f, Equal: map[string]string{}}
	if *source != "" {
		spec.Equal["source"] = *source
	}
	if *purpose != "" {
		spec.Equal["purpose"] = *purpose
	}
	if *sortBy != "" {
		spec.Sort = strings.Split(*sortBy, ",")
	}
	rep, err := v.audit.Report(ctx, spec)
	if errors.Is(err, audit.ErrSpec) {
		return usagef("%s", strings.TrimPrefix(err.Error(), "audit: bad request: "))
	}
	if err != nil {
		return err
	}
	e := &audit.Entry{Action: audit.ActionAuditRead, Outcome: audit.OutcomeSuccess, Detail: []audit.Param{{Name: "report rows", Value: fmt.Sprint(len(rep.Rows))}}}
	for _, x := range rep.Found {
		e.Resources = append(e.Resources, x.Entry.Resources...)
	}
	if err := v.auditCommand(ctx, e); err != nil {
		return err
	}
	if *format == "json" {
		_, err = c.stdout.Write(rep.JSON())
	} else {
		_, err = c.stdout.Write(rep.CSV())
	}
	if rep.Truncated {
		fmt.Fprintf(c.stderr, "ehrvault: the report stops at %d rows; ask for a shorter period\n", audit.MaxReportRows)
	}
	return err
}

func auditPatient(ctx context.Context, c *cli, args []string, disclosures bool) error {
	name, about := "audit accesses", `
Print every access to one patient's record (who opened it, when, in what
role and why), each with the entry's bytes and its inclusion proof against
a signed checkpoint, as JSON: what the patient's own software checks.`
	if disclosures {
		name, about = "audit disclosures", `
Print the accounting of disclosures of one patient's record (ONC
170.315(d)(11)): every successful event that released the patient's data,
with when, to whom, in what role, for what purpose and what.`
	}
	fs := c.flags(name, "--data DIR --patient ID", about)
	var pf passphraseFlags
	pf.register(fs)
	patient := fs.String("patient", "", "the Patient `id`")
	from := fs.String("from", "", "events at or after this date or `instant`")
	to := fs.String("to", "", "events before this instant, or up to the end of this date")
	format := "json"
	if disclosures {
		fs.StringVar(&format, "format", "json", "json or csv")
	}
	if err := c.parse(fs, args); err != nil {
		return err
	}
	if *patient == "" {
		return usagef("--patient ID is required")
	}
	if format != "json" && format != "csv" {
		return usagef("--format must be json or csv")
	}
	var f audit.Filter
	var err error
	if f.From, err = parseTimeFlag("from", *from, false); err != nil {
		return err
	}
	if f.To, err = parseTimeFlag("to", *to, true); err != nil {
		return err
	}
	v, err := c.openForAudit(ctx, &pf)
	if err != nil {
		return err
	}
	defer v.Close()
	key := v.records.PatientKey(*patient)
	al, err := v.audit.Accesses(ctx, *patient, key, f, disclosures)
	if err != nil {
		return err
	}
	e := &audit.Entry{Action: audit.ActionAuditRead, Outcome: audit.OutcomeSuccess,
		Resources: []audit.Resource{{Type: "Patient", ID: *patient, Owner: "Patient/" + key}}}
	if err := v.auditCommand(ctx, e); err != nil {
		return err
	}
	if format == "csv" {
		_, err := c.stdout.Write(al.DisclosuresCSV())
		return err
	}
	return printJSON(c, al)
}

func auditAccesses(ctx context.Context, c *cli, args []string) error {
	return auditPatient(ctx, c, args, false)
}

func auditDisclosures(ctx context.Context, c *cli, args []string) error {
	return auditPatient(ctx, c, args, true)
}

func auditKey(ctx context.Context, c *cli, args []string) error {
	fs := c.flags("audit key", "--data DIR", `
Print the public key that verifies the audit log's checkpoints, in the
signed-note format (name+hash+key). Give it to witnesses; it is also
served at /audit/key.`)
	var pf passphraseFlags
	pf.register(fs)
	if err := c.parse(fs, args); err != nil {
		return err
	}
	v, err := c.openForAudit(ctx, &pf)
	if err != nil {
		return err
	}
	defer v.Close()
	fmt.Fprintln(c.stdout, v.akeys.cfg.VerifierKey)
	return nil
}

func auditHash(ctx context.Context, c *cli, args []string) error {
	fs := c.flags("audit hash", "--data DIR VALUE...", `
Print the keyed hash that stands for each value in the audit log (search
values, labels, file names are recorded only so), to find the entries
that hold a value you know: for example the SSN a search looked for.`)
	var pf passphraseFlags
	pf.register(fs)
	if err := c.parse(fs, args); err != nil {
		return err
	}
	if fs.NArg() == 0 {
		return usagef("give at least one value")
	}
	v, err := c.openForAudit(ctx, &pf)
	if err != nil {
		return err
	}
	defer v.Close()
	for _, a := range fs.Args() {
		fmt.Fprintln(c.stdout, v.audit.Hash(a))
	}
	return nil
}
