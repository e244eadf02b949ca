package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"text/tabwriter"
	"time"

	"github.com/ehrvault/ehrvault/internal/audit"
	"github.com/ehrvault/ehrvault/internal/auth"
	"github.com/ehrvault/ehrvault/internal/store"
)

func runToken(ctx context.Context, c *cli, args []string) error {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" {
		fmt.Fprint(c.stdout, `Usage:
  ehrvault token create --data DIR [--ttl DURATION] [--label TEXT]
  ehrvault token list   --data DIR
  ehrvault token revoke --data DIR ID

Operator bearer tokens for the API. A token is printed once, on standard
output; only a keyed hash of it is stored, so a copy of the database
neither reveals one nor lets anybody mint one. Tokens expire after --ttl
and can be revoked by their id (tok_…) at any time.
`)
		if len(args) == 0 {
			return usagef("name a subcommand: create, list or revoke")
		}
		return nil
	}
	switch args[0] {
	case "create":
		return tokenCreate(ctx, c, args[1:])
	case "list":
		return tokenList(ctx, c, args[1:])
	case "revoke":
		return tokenRevoke(ctx, c, args[1:])
	}
	return usagef("unknown subcommand %q: use create, list or revoke", args[0])
}

func tokenCreate(ctx context.Context, c *cli, args []string) error {
	fs := c.flags("token create", "--data DIR [--ttl DURATION] [--label TEXT]", `
Print a new bearer token for the API on standard output (and its id and
expiry on standard error), e.g.:
  TOKEN=$(ehrvault token create --data DIR --ttl 8h --label "night batch")
  curl -H "Authorization: Bearer $TOKEN" http://127.0.0.1:8080/fhir/Patient`)
	var pf passphraseFlags
	pf.register(fs)
	ttl := fs.Duration("ttl", 24*time.Hour, "how long the token stays valid (e.g. 30m, 8h; at most 8784h)")
	label := fs.String("label", "", "what the token is for (shown by list; not secret)")
	if err := c.parse(fs, args); err != nil {
		return err
	}
	if err := pf.check(); err != nil {
		return err
	}
	if *ttl <= 0 || *ttl > auth.MaxTTL {
		return usagef("--ttl must be between 1s and %s", auth.MaxTTL)
	}
	v, err := c.unseal(ctx, &pf, slog.New(slog.DiscardHandler), adminAccess)
	if err != nil {
		return err
	}
	defer v.Close()
	tok, rec, err := v.tokens.Create(ctx, *ttl, *label)
	if err != nil {
		return err
	}
	// The label is free text an operator wrote: hashed, like all such.
	if err := v.auditCommand(ctx, &audit.Entry{Action: audit.ActionTokenCreate, Outcome: audit.OutcomeSuccess,
		Detail: []audit.Param{{Name: "token", Value: rec.ID}, {Name: "expires", Value: rec.Expires.Format(time.RFC3339)}, {Name: "label", Value: v.audit.Hash(rec.Label)}}}); err != nil {
		v.tokens.Revoke(ctx, rec.ID) // an unaudited token must not work
		return err
	}
	fmt.Fprintln(c.stdout, tok)
	fmt.Fprintf(c.stderr, "token %s expires %s\n", rec.ID, rec.Expires.Format(time.RFC3339))
	return nil
}

func tokenList(ctx context.Context, c *cli, args []string) error {
	fs := c.flags("token list", "--data DIR", "List tokens: id, label, created, expires, state. Tokens themselves are never shown again.")
	return c.onVault(ctx, fs, args, 0, "", func(v *vault) error {
		list, err := v.tokens.List(ctx)
		if err != nil {
			return err
		}
		tw := tabwriter.NewWriter(c.stdout, 2, 8, 2, ' ', 0)
		fmt.Fprintln(tw, "ID\tLABEL\tCREATED\tEXPIRES\tSTATE")
		now := time.Now()
		for _, t := range list {
			state := "valid"
			switch {
			case t.Revoked:
				state = "revoked"
			case !now.Before(t.Expires):
				state = "expired"
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", t.ID, t.Label, t.Created.Format(time.RFC3339), t.Expires.Format(time.RFC3339), state)
		}
		return tw.Flush()
	})
}

func tokenRevoke(ctx context.Context, c *cli, args []string) error {
	fs := c.flags("token revoke", "--data DIR ID", "Revoke the token with this id (tok_…, from token list). It fails on its next use.")
	return c.onVault(ctx, fs, args, 1, "token id to revoke", func(v *vault) error {
		if err := v.tokens.Revoke(ctx, fs.Arg(0)); err != nil {
			if errors.Is(err, store.ErrNotFound) {
				return withHint(fmt.Errorf("no token with id %s", fs.Arg(0)), "ehrvault token list shows the ids")
			}
			return err
		}
		if err := v.auditCommand(ctx, &audit.Entry{Action: audit.ActionTokenRevoke, Outcome: audit.OutcomeSuccess,
			Detail: []audit.Param{{Name: "token", Value: fs.Arg(0)}}}); err != nil {
			return err
		}
		fmt.Fprintf(c.stderr, "revoked %s\n", fs.Arg(0))
		return nil
	})
}

// onVault finishes an administrative command: it adds the passphrase
// flags to fs, parses args, checks that exactly nargs positional
// arguments came (what names the one expected), unseals the data
// directory beside any server and runs fn on it.
func (c *cli) onVault(ctx context.Context, fs *flag.FlagSet, args []string, nargs int, what string, fn func(v *vault) error) error {
	var pf passphraseFlags
	pf.register(fs)
	if err := c.parse(fs, args); err != nil {
		return err
	}
	if err := pf.check(); err != nil {
		return err
	}
	if fs.NArg() != nargs {
		if nargs == 0 {
			return usagef("unexpected argument %q", fs.Arg(0))
		}
		return usagef("name exactly one %s", what)
	}
	v, err := c.unseal(ctx, &pf, slog.New(slog.DiscardHandler), adminAccess)
	if err != nil {
		return err
	}
	defer v.Close()
	return fn(v)
}
