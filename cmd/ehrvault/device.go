package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/ehrvault/ehrvault/internal/audit"
	"github.com/ehrvault/ehrvault/internal/auth/devices"
	"github.com/ehrvault/ehrvault/internal/keyring"
	"github.com/ehrvault/ehrvault/internal/store"
)

// openDevices builds the device registry of a vault.
func openDevices(ctx context.Context, keys *keyring.Keyring, s store.AuthObjects, opts ...devices.Option) (*devices.Registry, error) {
	seal, err := keys.Sealer(ctx, keyring.PurposeAuthSeal)
	if err != nil {
		return nil, err
	}
	mac, err := keys.MAC(ctx, keyring.PurposeAuthLookup)
	if err != nil {
		return nil, err
	}
	return devices.New(s, seal, mac, opts...), nil
}

func runDevice(ctx context.Context, c *cli, args []string) error {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" {
		fmt.Fprint(c.stdout, `Usage:
  ehrvault device code    --data DIR --label TEXT --kind workstation|tablet|app-instance
  ehrvault device list    --data DIR
  ehrvault device show    --data DIR ID
  ehrvault device approve --data DIR [--allow-unencrypted] ID
  ehrvault device revoke  --data DIR ID

Enrolled endpoints. "code" prints a one-time enrollment code (valid 24 h)
for one device; the device posts it to /auth/devices/enroll with its public
key and what it reports about itself (OS, disk encryption), signed by its
key. The device then waits until an admin approves it. Tokens are bound to
an approved device's key; revoking the device kills them within a second.
`)
		if len(args) == 0 {
			return usagef("name a subcommand: code, list, show, approve or revoke")
		}
		return nil
	}
	switch args[0] {
	case "code":
		return deviceCode(ctx, c, args[1:])
	case "list":
		return deviceList(ctx, c, args[1:])
	case "show":
		return deviceShow(ctx, c, args[1:])
	case "approve":
		return deviceChange(ctx, c, args[1:], "approve")
	case "revoke":
		return deviceChange(ctx, c, args[1:], "revoke")
	}
	return usagef("unknown subcommand %q: use code, list, show, approve or revoke", args[0])
}

func deviceCode(ctx context.Context, c *cli, args []string) error {
	fs := c.flags("device code", "--data DIR --label TEXT --kind KIND", `
Print a one-time enrollment code on standard output (its id and expiry on
standard error). Give it to the one device it is for; it is valid for 24
hours and works once. The label and kind become the device's.`)
	var pf passphraseFlags
	pf.register(fs)
	label := fs.String("label", "", "what the device is, e.g. \"ward 7 tablet 3\" (shown by list; not secret)")
	kind := fs.String("kind", "", "the kind of device: "+strings.Join(devices.DeviceKinds, ", "))
	if err := c.parse(fs, args); err != nil {
		return err
	}
	if err := pf.check(); err != nil {
		return err
	}
	if *label == "" {
		return usagef("--label is required")
	}
	if !validDeviceKind(*kind) {
		return usagef("--kind must be one of %s", strings.Join(devices.DeviceKinds, ", "))
	}
	v, err := c.unseal(ctx, &pf, slog.New(slog.DiscardHandler), adminAccess)
	if err != nil {
		return err
	}
	defer v.Close()
	code, rec, err := v.devices.NewCode(ctx, *label, *kind, cliPrincipal().ID)
	if err != nil {
		return err
	}
	if err := v.auditCommand(ctx, &audit.Entry{Action: devices.ActionCode, Outcome: audit.OutcomeSuccess,
		Detail: []audit.Param{{Name: "code", Value: rec.ID}, {Name: "kind", Value: rec.Kind}, {Name: "label", Value: v.audit.Hash(rec.Label)}}}); err != nil {
		return err // the code is unaudited but unknown to anyone: it expires unused
	}
	fmt.Fprintln(c.stdout, code)
	fmt.Fprintf(c.stderr, "enrollment code %s for a %s expires %s\n", rec.ID, rec.Kind, rec.Expires.Format(time.RFC3339))
	return nil
}

func validDeviceKind(k string) bool {
	for _, x := range devices.DeviceKinds {
		if x == k {
			return true
		}
	}
	return false
}

func deviceList(ctx context.Context, c *cli, args []string) error {
	fs := c.flags("device list", "--data DIR", "List devices: id, kind, label, state, disk encryption and when the device last reported.")
	var pf passphraseFlags
	pf.register(fs)
	if err := c.parse(fs, args); err != nil {
		return err
	}
	if err := pf.check(); err != nil {
		return err
	}
	v, err := c.unseal(ctx, &pf, slog.New(slog.DiscardHandler), adminAccess)
	if err != nil {
		return err
	}
	defer v.Close()
	list, err := v.devices.Devices(ctx)
	if err != nil {
		return err
	}
	tw := tabwriter.NewWriter(c.stdout, 2, 8, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tKIND\tLABEL\tSTATE\tENCRYPTED\tREPORTED")
	for _, d := range list {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%v\t%s\n", d.ID, d.Kind, d.Label, d.State, d.Posture.DiskEncrypted, d.Posture.ReportedAt.Format(time.RFC3339))
	}
	return tw.Flush()
}

func deviceShow(ctx context.Context, c *cli, args []string) error {
	fs := c.flags("device show", "--data DIR ID", "Print a device's record as JSON: its key, state, who approved or revoked it, and its latest posture report.")
	var pf passphraseFlags
	pf.register(fs)
	if err := c.parse(fs, args); err != nil {
		return err
	}
	if err := pf.check(); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		return usagef("name exactly one device id")
	}
	v, err := c.unseal(ctx, &pf, slog.New(slog.DiscardHandler), adminAccess)
	if err != nil {
		return err
	}
	defer v.Close()
	d, err := v.devices.Device(ctx, fs.Arg(0))
	if err != nil {
		return deviceError(err, fs.Arg(0))
	}
	b, err := json.MarshalIndent(d, "", "  ")
	if err != nil {
		return err
	}
	fmt.Fprintf(c.stdout, "%s\n", b)
	return nil
}

func deviceError(err error, id string) error {
	switch {
	case errors.Is(err, devices.ErrNotFound):
		return withHint(fmt.Errorf("no device with id %s", id), "ehrvault device list shows the ids")
	case errors.Is(err, devices.ErrUnencrypted):
		return withHint(fmt.Errorf("device %s reports an unencrypted disk", id), "turn on disk encryption on the device and let it report its posture again; or, if the server runs without the policy, pass --allow-unencrypted")
	case errors.Is(err, devices.ErrRevoked):
		return withHint(fmt.Errorf("device %s is revoked", id), "a revoked device stays revoked; enroll it again with a new key and code")
	}
	return err
}

func deviceChange(ctx context.Context, c *cli, args []string, op string) error {
	about := "Approve a pending device (dev_…, from device list): from now on tokens may be bound to its key."
	if op == "revoke" {
		about = "Revoke a device at once: its key is refused, and the tokens bound to it with it, within a second in a running server."
	}
	fs := c.flags("device "+op, "--data DIR ID", about)
	var pf passphraseFlags
	pf.register(fs)
	var lax *bool
	if op == "approve" {
		lax = fs.Bool("allow-unencrypted", false, "approve a device that reports no disk encryption (only useful if the server does not require it)")
	}
	if err := c.parse(fs, args); err != nil {
		return err
	}
	if err := pf.check(); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		return usagef("name exactly one device id to %s", op)
	}
	id := fs.Arg(0)
	v, err := c.unseal(ctx, &pf, slog.New(slog.DiscardHandler), adminAccess)
	if err != nil {
		return err
	}
	defer v.Close()
	reg, action, change := v.devices, devices.ActionRevoke, (*devices.Registry).Revoke
	if op == "approve" {
		action, change = devices.ActionApprove, (*devices.Registry).Approve
		if *lax {
			if reg, err = openDevices(ctx, v.keys, v.db, devices.RequireDiskEncryption(false)); err != nil {
				return err
			}
		}
	}
	d, err := change(reg, ctx, id, cliPrincipal().ID)
	if err != nil {
		return deviceError(err, id)
	}
	if err := v.auditCommand(ctx, &audit.Entry{Action: action, Outcome: audit.OutcomeSuccess,
		Detail: []audit.Param{{Name: "device", Value: d.ID}}}); err != nil {
		if op == "approve" {
			v.devices.Revoke(ctx, id, cliPrincipal().ID) // an unaudited approval must not stand
		}
		return err
	}
	fmt.Fprintf(c.stderr, "%s %s (%s, %s)\n", d.State, d.ID, d.Kind, d.Label)
	return nil
}
