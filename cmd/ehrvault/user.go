package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/ehrvault/ehrvault/internal/audit"
	"github.com/ehrvault/ehrvault/internal/auth"
	"github.com/ehrvault/ehrvault/internal/auth/users"
)

// newUsers builds a users service on the vault's store and identity keys;
// cfg gives the rest (Recorder, BaseURL, time-outs; zero: the CLI's, which
// audits for itself).
func (v *vault) newUsers(cfg users.Config) (*users.Service, error) {
	cfg.Store, cfg.Sealer, cfg.MAC = v.db, v.authSeal, v.authMAC
	return users.New(cfg)
}

// auditRecorder records the users service's events in the audit log (for
// serve: the login pages' successes, failures and throttling).
func auditRecorder(l *audit.Log) users.Recorder {
	return users.RecorderFunc(func(ctx context.Context, e users.Event) error {
		p := audit.Principal{Kind: "anonymous"}
		if e.User != "" {
			p = audit.Principal{Kind: auth.KindUser, ID: e.User}
		}
		ae := &audit.Entry{Action: e.Action, Outcome: e.Outcome, Principal: p, Session: e.Session, Source: e.Source}
		if e.Detail != "" {
			ae.Detail = []audit.Param{{Name: "detail", Value: e.Detail}}
		}
		_, err := l.Append(ctx, ae)
		return err
	})
}

const userUsage = `Usage:
  ehrvault user add       --data DIR --role ROLE [--display-name TEXT] NAME
  ehrvault user list      --data DIR
  ehrvault user disable   --data DIR NAME|ID
  ehrvault user enable    --data DIR NAME|ID
  ehrvault user set-role  --data DIR --role ROLE NAME|ID
  ehrvault user reset-mfa --data DIR NAME|ID

People who log in to ehrvault. add prints a one-time enrollment code
(valid 24 hours) on standard output: give it to the person, who opens
/auth/enroll on the server, enters it, chooses a password and sets up an
authenticator app or a security key. reset-mfa clears the password and
factors, ends every session and prints a new code. disable ends every
session at once.

Roles: %s
`

func runUser(ctx context.Context, c *cli, args []string) error {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" {
		fmt.Fprintf(c.stdout, userUsage, strings.Join(auth.Roles, ", "))
		if len(args) == 0 {
			return usagef("name a subcommand: add, list, disable, enable, set-role or reset-mfa")
		}
		return nil
	}
	switch args[0] {
	case "add", "list", "disable", "enable", "set-role", "reset-mfa":
		return userCommand(ctx, c, args[0], args[1:])
	}
	return usagef("unknown subcommand %q: use add, list, disable, enable, set-role or reset-mfa", args[0])
}

// parseInterspersed parses flags before and after positional arguments
// ("user add alice --role nurse" as well as "user add --role nurse alice").
func (c *cli) parseInterspersed(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := c.parse(fs, args); err != nil {
			return nil, err
		}
		args = fs.Args()
		if len(args) == 0 {
			return pos, nil
		}
		pos = append(pos, args[0])
		args = args[1:]
	}
}

func userCommand(ctx context.Context, c *cli, sub string, args []string) error {
	synopsis := map[string]string{
		"add": "--data DIR --role ROLE [--display-name TEXT] [--patient ID] NAME", "list": "--data DIR",
		"disable": "--data DIR NAME|ID", "enable": "--data DIR NAME|ID",
		"set-role": "--data DIR --role ROLE [--patient ID] NAME|ID", "reset-mfa": "--data DIR NAME|ID",
	}[sub]
	fs := c.flags("user "+sub, synopsis, fmt.Sprintf(userUsage, strings.Join(auth.Roles, ", ")))
	var pf passphraseFlags
	pf.register(fs)
	var role, display, patient *string
	if sub == "add" || sub == "set-role" {
		role = fs.String("role", "", "the person's role: "+strings.Join(auth.Roles, ", "))
		patient = fs.String("patient", "", "for role patient: the `id` of the person's own Patient resource, the only record their apps may reach")
	}
	if sub == "add" {
		display = fs.String("display-name", "", "the person's name as shown on pages (not secret)")
	}
	pos, err := c.parseInterspersed(fs, args)
	if err != nil {
		return err
	}
	if err := pf.check(); err != nil {
		return err
	}
	want := 1
	if sub == "list" {
		want = 0
	}
	if len(pos) != want {
		if want == 0 {
			return usagef("unexpected argument %q", pos[0])
		}
		return usagef("name exactly one user (a user name or usr_… id)")
	}
	if role != nil && !auth.ValidRole(*role) {
		return usagef("--role must be one of %s", strings.Join(auth.Roles, ", "))
	}
	if patient != nil && *patient != "" && *role != auth.RolePatient {
		return usagef("--patient goes with --role patient")
	}
	v, err := c.unseal(ctx, &pf, slog.New(slog.DiscardHandler), adminAccess)
	if err != nil {
		return err
	}
	defer v.Close()
	if sub == "list" {
		return userList(ctx, c, v)
	}
	if sub == "add" {
		e, err := v.users.Add(ctx, pos[0], *display, *role)
		if errors.Is(err, users.ErrExists) {
			return withHint(fmt.Errorf("a user named %q exists", pos[0]), "ehrvault user list shows them; user names ignore case")
		}
		if err != nil {
			return err
		}
		if *patient != "" {
			if err := v.users.SetPatient(ctx, e.User.ID, *patient); err != nil {
				v.users.Disable(ctx, e.User.ID)
				return err
			}
		}
		if err := v.auditCommand(ctx, &audit.Entry{Action: users.ActionAdd, Outcome: audit.OutcomeSuccess,
			Detail: []audit.Param{{Name: "user", Value: e.User.ID}, {Name: "role", Value: e.User.Role}}}); err != nil {
			v.users.Disable(ctx, e.User.ID) // an unaudited user must not log in
			return err
		}
		printEnrollment(c, e)
		return nil
	}
	u, err := v.users.Resolve(ctx, pos[0])
	if errors.Is(err, users.ErrNotFound) {
		return withHint(fmt.Errorf("no user %q", pos[0]), "ehrvault user list shows the user names and ids")
	}
	if err != nil {
		return err
	}
	detail := []audit.Param{{Name: "user", Value: u.ID}}
	var e *users.Enrollment
	switch sub {
	case "disable":
		err = v.users.Disable(ctx, u.ID)
	case "enable":
		err = v.users.Enable(ctx, u.ID)
	case "set-role":
		err = v.users.SetRole(ctx, u.ID, *role)
		if err == nil && (*patient != "" || *role != auth.RolePatient) {
			err = v.users.SetPatient(ctx, u.ID, *patient) // another role unlinks
		}
		detail = append(detail, audit.Param{Name: "role", Value: *role})
	case "reset-mfa":
		e, err = v.users.ResetMFA(ctx, u.ID)
	}
	if err != nil {
		return err
	}
	if err := v.auditCommand(ctx, &audit.Entry{Action: "user-" + sub, Outcome: audit.OutcomeSuccess, Detail: detail}); err != nil {
		return err
	}
	if e != nil {
		printEnrollment(c, e)
		return nil
	}
	fmt.Fprintf(c.stderr, "%s: %s (%s)\n", sub, u.Name, u.ID)
	return nil
}

// printEnrollment prints the code alone on stdout (for scripts), and what
// to do with it on stderr.
func printEnrollment(c *cli, e *users.Enrollment) {
	fmt.Fprintln(c.stdout, e.Code)
	fmt.Fprintf(c.stderr, "user %s (%s), role %s: enrollment code above, valid until %s, shown once.\n", e.User.Name, e.User.ID, e.User.Role, e.Expires.Format(time.RFC3339))
	fmt.Fprintf(c.stderr, "Give it to the person; they open /auth/enroll on the server and enter it.\n")
}

func userList(ctx context.Context, c *cli, v *vault) error {
	list, err := v.users.List(ctx)
	if err != nil {
		return err
	}
	tw := tabwriter.NewWriter(c.stdout, 2, 8, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tNAME\tROLE\tSTATE\tFACTORS\tCREATED")
	for _, u := range list {
		state := "active"
		switch {
		case u.Disabled:
			state = "disabled"
		case !u.Enrolled:
			state = "not-enrolled"
		}
		f := strings.Join(u.Factors, ",")
		if f == "" {
			f = "-"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", u.ID, u.Name, u.Role, state, f, u.Created.Format(time.RFC3339))
	}
	return tw.Flush()
}

// initAdmin creates the first administrator of a new store and prints its
// enrollment code.
func (c *cli) initAdmin(ctx context.Context, dir string, pass []byte, name string) error {
	v, err := openVault(ctx, dir, pass, slog.New(slog.DiscardHandler), adminAccess)
	if err != nil {
		return err
	}
	defer v.Close()
	e, err := v.users.Add(ctx, name, "", auth.RoleAdmin)
	if err != nil {
		return fmt.Errorf("first administrator: %w", err)
	}
	if err := v.auditCommand(ctx, &audit.Entry{Action: users.ActionAdd, Outcome: audit.OutcomeSuccess,
		Detail: []audit.Param{{Name: "user", Value: e.User.ID}, {Name: "role", Value: auth.RoleAdmin}}}); err != nil {
		v.users.Disable(ctx, e.User.ID)
		return err
	}
	fmt.Fprintf(c.stdout, "First administrator %q: enrollment code %s (valid until %s, shown once; open /auth/enroll on the server).\n",
		e.User.Name, e.Code, e.Expires.Format(time.RFC3339))
	return nil
}
