package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/ehrvault/ehrvault/internal/audit"
	"github.com/ehrvault/ehrvault/internal/auth/smart"
)

// Audit actions of the client commands.
const (
	actionClientAdd    = "smart-client-add"
	actionClientRemove = "smart-client-remove"
)

// appScopes are added to every app's allowed scopes: the standalone
// launch context and refresh tokens (which still die with the login
// session).
var appScopes = []string{smart.ScopeLaunchPatient, smart.ScopeOnline, smart.ScopeOffline}

func runClient(ctx context.Context, c *cli, args []string) error {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" {
		fmt.Fprint(c.stdout, `Usage:
  ehrvault client add-app     --data DIR --name NAME --redirect-uri URI... --scope SCOPES [--jwks FILE]
  ehrvault client add-service --data DIR --name NAME --jwks FILE --scope SCOPES
  ehrvault client add-device  --data DIR --name NAME --jwks FILE --scope SCOPES --patient ID...
  ehrvault client list        --data DIR
  ehrvault client remove      --data DIR ID

SMART on FHIR clients. An app (a SMART app acting for a person) signs in
people with the authorization code flow and PKCE; a backend service, and a
connected medical device, authenticate with a JWT signed by a key in the
public JWK Set given with --jwks (private_key_jwt). Every token is bound
to a DPoP key. SCOPES are SMART v2 scopes, space-separated: what the client
may be granted at most (e.g. "patient/Observation.rs patient/Patient.r").
A device may only have write-only scopes (e.g. system/Observation.c) and
writes for its assigned patients only.
`)
		if len(args) == 0 {
			return usagef("name a subcommand: add-app, add-service, add-device, list or remove")
		}
		return nil
	}
	switch args[0] {
	case "add-app":
		return clientAdd(ctx, c, smart.ClientApp, args[1:])
	case "add-service":
		return clientAdd(ctx, c, smart.ClientService, args[1:])
	case "add-device":
		return clientAdd(ctx, c, smart.ClientDevice, args[1:])
	case "list":
		return clientList(ctx, c, args[1:])
	case "remove":
		return clientRemove(ctx, c, args[1:])
	}
	return usagef("unknown subcommand %q: use add-app, add-service, add-device, list or remove", args[0])
}

// listFlag is a repeatable string flag.
type listFlag []string

func (l *listFlag) String() string     { return strings.Join(*l, " ") }
func (l *listFlag) Set(s string) error { *l = append(*l, s); return nil }

func clientAdd(ctx context.Context, c *cli, kind string, args []string) error {
	name := "client add-" + kind
	synopsis := map[string]string{
		smart.ClientApp:     "--data DIR --name NAME --redirect-uri URI... --scope SCOPES [--jwks FILE]",
		smart.ClientService: "--data DIR --name NAME --jwks FILE --scope SCOPES",
		smart.ClientDevice:  "--data DIR --name NAME --jwks FILE --scope SCOPES --patient ID...",
	}[kind]
	about := map[string]string{
		smart.ClientApp: `Register a SMART app and print its client_id on standard output. Its
redirect URIs are matched exactly; launch/patient, online_access and
offline_access are added to its scopes, and openid and fhirUser (an
OpenID Connect id_token) are always allowed. With --jwks it is a confidential
app that authenticates with private_key_jwt; without, a public app (PKCE).`,
		smart.ClientService: `Register a SMART backend service (client_credentials with a JWT signed
by a key of the JWK Set in FILE) and print its client_id. Its scopes are
system/ scopes.`,
		smart.ClientDevice: `Register a connected medical device (like a backend service) and print
its client_id. Its scopes may only create (or update) named resource types,
e.g. "system/Observation.c system/ImagingStudy.c"; it reads nothing and
writes for the patients given with --patient only.`,
	}[kind]
	fs := c.flags(name, synopsis, about)
	var pf passphraseFlags
	pf.register(fs)
	label := fs.String("name", "", "what the client is called (shown on the consent page and by list)")
	scopes := fs.String("scope", "", "the SMART scopes it may be granted at most, space-separated")
	jwksFile := fs.String("jwks", "", "file holding the client's public JWK Set (JSON)")
	var redirects, patients listFlag
	if kind == smart.ClientApp {
		fs.Var(&redirects, "redirect-uri", "a redirect URI (repeat for more)")
	}
	if kind == smart.ClientDevice {
		fs.Var(&patients, "patient", "the id of a patient the device writes for (repeat for more)")
	}
	if err := c.parse(fs, args); err != nil {
		return err
	}
	if err := pf.check(); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usagef("unexpected argument %q", fs.Arg(0))
	}
	if *label == "" || *scopes == "" {
		return usagef("--name and --scope are required")
	}
	cl := smart.Client{Kind: kind, Name: *label, Scopes: strings.Fields(*scopes), RedirectURIs: redirects, Patients: patients}
	if kind == smart.ClientApp {
		for _, s := range appScopes {
			if !strings.Contains(" "+*scopes+" ", " "+s+" ") {
				cl.Scopes = append(cl.Scopes, s)
			}
		}
	}
	if *jwksFile != "" {
		b, err := os.ReadFile(*jwksFile)
		if err != nil {
			return fmt.Errorf("read --jwks: %w", err)
		}
		cl.JWKS = b
	}
	if err := cl.Validate(); err != nil {
		return usagef("%v", err)
	}
	v, err := c.unseal(ctx, &pf, slog.New(slog.DiscardHandler), adminAccess)
	if err != nil {
		return err
	}
	defer v.Close()
	added, err := v.clients.Add(ctx, cl)
	if err != nil {
		return err
	}
	if err := v.auditCommand(ctx, &audit.Entry{Action: actionClientAdd, Outcome: audit.OutcomeSuccess,
		Detail: []audit.Param{{Name: "client", Value: added.ID}, {Name: "kind", Value: kind}, {Name: "scopes", Value: strings.Join(added.Scopes, " ")}}}); err != nil {
		v.clients.Remove(ctx, added.ID) // an unaudited client must not work
		return err
	}
	fmt.Fprintln(c.stdout, added.ID)
	fmt.Fprintf(c.stderr, "registered %s %s (%s)\n", kind, added.ID, added.Name)
	return nil
}

func clientList(ctx context.Context, c *cli, args []string) error {
	fs := c.flags("client list", "--data DIR", "List SMART clients: id, kind, name, created, allowed scopes.")
	return c.onVault(ctx, fs, args, 0, "", func(v *vault) error {
		list, err := v.clients.List(ctx)
		if err != nil {
			return err
		}
		tw := tabwriter.NewWriter(c.stdout, 2, 8, 2, ' ', 0)
		fmt.Fprintln(tw, "ID\tKIND\tNAME\tCREATED\tSCOPES")
		for _, cl := range list {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", cl.ID, cl.Kind, cl.Name, cl.Created.Format(time.RFC3339), strings.Join(cl.Scopes, " "))
		}
		return tw.Flush()
	})
}

func clientRemove(ctx context.Context, c *cli, args []string) error {
	fs := c.flags("client remove", "--data DIR ID", "Remove the client with this id (from client list). Its tokens stop working within a second.")
	return c.onVault(ctx, fs, args, 1, "client id to remove", func(v *vault) error {
		if err := v.clients.Remove(ctx, fs.Arg(0)); err != nil {
			if errors.Is(err, smart.ErrNoClient) {
				return withHint(fmt.Errorf("no client with id %s", fs.Arg(0)), "ehrvault client list shows the ids")
			}
			return err
		}
		if err := v.auditCommand(ctx, &audit.Entry{Action: actionClientRemove, Outcome: audit.OutcomeSuccess,
			Detail: []audit.Param{{Name: "client", Value: fs.Arg(0)}}}); err != nil {
			return err
		}
		fmt.Fprintf(c.stderr, "removed %s\n", fs.Arg(0))
		return nil
	})
}
