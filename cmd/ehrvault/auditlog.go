package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"time"

	"github.com/ehrvault/ehrvault/internal/audit"
	"github.com/ehrvault/ehrvault/internal/keyring"
	"github.com/ehrvault/ehrvault/internal/records"
)

// auditFileName is the audit log of a data directory, apart from the
// records; its checkpoints are beside it (audit.checkpoints).
const auditFileName = "audit.log"

// auditKeys are the keys of a data directory's audit log.
type auditKeys struct {
	sealer *keyring.Sealer
	mac    *keyring.MAC
	cfg    audit.Config
}

// auditOrigin names a data directory's audit log: the first line of its
// checkpoints and the name of its signing key. The key file's public id
// makes it unique to the store.
func auditOrigin(kp *keyring.FileProvider) string {
	return "ehrvault.audit/" + kp.KeyID()
}

// loadAuditKeys derives the audit log's keys from the KEK.
func loadAuditKeys(ctx context.Context, keys *keyring.Keyring, kp *keyring.FileProvider) (*auditKeys, error) {
	s, err := keys.Sealer(ctx, keyring.PurposeAuditSeal)
	if err != nil {
		return nil, err
	}
	m, err := keys.MAC(ctx, keyring.PurposeAuditIndex)
	if err != nil {
		return nil, err
	}
	origin := auditOrigin(kp)
	signer, vkey, err := keys.NoteSigner(ctx, origin)
	if err != nil {
		return nil, err
	}
	return &auditKeys{sealer: s, mac: m, cfg: audit.Config{Sealer: s, MAC: m, Signer: signer, VerifierKey: vkey, Origin: origin}}, nil
}

// auditSettings are the operator's choices for the audit log.
type auditSettings struct {
	every      int64
	interval   time.Duration
	flushEvery time.Duration
	publish    []audit.Publisher
	// keysOnly loads the audit keys without opening the log: for verify,
	// which must run on a log too damaged to open.
	keysOnly bool
}

// openAudit opens the data directory's audit log (creates it, for init).
func openAudit(ctx context.Context, dir string, ak *auditKeys, create bool, s auditSettings, log *slog.Logger) (*audit.Log, error) {
	path := filepath.Join(dir, auditFileName)
	if !create {
		if _, err := os.Stat(path); errors.Is(err, os.ErrNotExist) {
			return nil, withHint(fmt.Errorf("the audit log %s is missing", path),
				"ehrvault never runs without its audit log; if it was removed, restore it from a backup (a new, empty one would hide what the old one held)")
		}
		if _, err := os.Stat(audit.CheckpointsPath(path)); errors.Is(err, os.ErrNotExist) {
			path = audit.CheckpointsPath(path)
			return nil, withHint(fmt.Errorf("the audit log %s is missing", path),
				"ehrvault never runs without its audit log; if it was removed, restore it from a backup (a new, empty one would hide what the old one held)")
		}
	}
	c := ak.cfg
	c.Path, c.Create = path, create
	c.CheckpointEvery, c.CheckpointInterval, c.Publish, c.FlushEvery = s.every, s.interval, s.publish, s.flushEvery
	c.Log = log
	l, err := audit.Open(ctx, c)
	if err != nil {
		return nil, fmt.Errorf("open audit log: %w", err)
	}
	return l, nil
}

// cliPrincipal is who runs a command: the operating-system user.
func cliPrincipal() audit.Principal {
	if u, err := user.Current(); err == nil && u.Username != "" {
		return audit.Principal{Kind: "cli", ID: u.Username}
	}
	return audit.Principal{Kind: "cli", ID: "uid:" + strconv.Itoa(os.Getuid())}
}

// auditCommand appends the entry of a command's event.
func (v *vault) auditCommand(ctx context.Context, e *audit.Entry) error {
	e.Principal = cliPrincipal()
	e.Role = "operator"
	e.Source = "local"
	if _, err := v.audit.Append(ctx, e); err != nil {
		return withHint(fmt.Errorf("audit log: %w", err), "nothing is done unaudited; check the disk holding "+filepath.Join(v.dir, auditFileName))
	}
	return nil
}

// auditLoaded records what one imported file loaded. The file's name is
// kept as a keyed hash: Synthea names files after patients.
func (v *vault) auditLoaded(ctx context.Context, file string, results []records.EntryResult) error {
	e := &audit.Entry{Action: audit.ActionImport, Outcome: audit.OutcomeSuccess}
	failed := 0
	for _, r := range results {
		switch {
		case r.Err != nil:
			failed++
		case r.Outcome != nil && r.Outcome.Resource != nil:
			res := r.Outcome.Resource
			e.Resources = append(e.Resources, audit.Resource{Type: res.Type, ID: res.ID, Version: res.Version, Owner: res.Owner})
		}
	}
	e.Detail = []audit.Param{{Name: "file", Value: v.audit.Hash(filepath.Base(file))}, {Name: "loaded", Value: strconv.Itoa(len(e.Resources))}}
	if failed > 0 {
		e.Detail = append(e.Detail, audit.Param{Name: "failed", Value: strconv.Itoa(failed)})
	}
	return v.auditCommand(ctx, e)
}
