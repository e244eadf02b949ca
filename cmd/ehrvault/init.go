package main

import (
	"context"
	"errors"
	"fmt"
)

func runInit(ctx context.Context, c *cli, args []string) error {
	fs := c.flags("init", "--data DIR [--passphrase-file FILE]", `
Create a data directory: a random key-encryption key (KEK) sealed by your
passphrase with argon2id (ehrvault.key), and an empty database
(ehrvault.db) whose records will be encrypted under keys the KEK wraps.
init never overwrites an existing store.

The passphrase comes from --passphrase-file, $EHRVAULT_PASSPHRASE, or a
prompt (asked twice) on a terminal; it must be at least 12 characters.
Without it the data cannot be read: keep it, and a backup of ehrvault.key,
somewhere safe and apart from the database backups.`)
	var pf passphraseFlags
	pf.register(fs)
	admin := fs.String("admin", "admin", "user name of the first administrator, who gets a one-time enrollment code")
	if err := c.parse(fs, args); err != nil {
		return err
	}
	if err := pf.check(); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usagef("unexpected argument %q", fs.Arg(0))
	}
	pass, err := c.passphrase(&pf, true)
	if err != nil {
		return err
	}
	if len([]rune(string(pass))) < minPassphrase {
		return withHint(errors.New("the passphrase is too short"), fmt.Sprintf("use at least %d characters; a few random words make a good one", minPassphrase))
	}
	if err := c.initVault(ctx, pf.data, pass); err != nil {
		return err
	}
	fmt.Fprintf(c.stdout, "Created an ehrvault store in %s.\n", pf.data)
	fmt.Fprintf(c.stdout, "Back up %s/%s and keep the passphrase safe: without both, the data is lost.\n", pf.data, keyFileName)
	if err := c.initAdmin(ctx, pf.data, pass, *admin); err != nil {
		return err
	}
	fmt.Fprintf(c.stdout, "Next: ehrvault import --data %s FILES... ; ehrvault token create --data %s ; ehrvault serve --data %s\n", pf.data, pf.data, pf.data)
	return nil
}
