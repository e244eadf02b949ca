package main

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"runtime"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/ehrvault/ehrvault/internal/audit"
	"github.com/ehrvault/ehrvault/internal/auth/devices"
	"github.com/ehrvault/ehrvault/internal/edge"
)

func runDevice(ctx context.Context, c *cli, args []string) error {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" {
		fmt.Fprint(c.stdout, `Usage:
  ehrvault device code    --data DIR --label TEXT --kind workstation|tablet|app-instance
  ehrvault device list    --data DIR
  ehrvault device show    --data DIR ID
  ehrvault device approve --data DIR [--allow-unencrypted] ID
  ehrvault device revoke  --data DIR ID

On the device (or to test one):
  ehrvault device enroll  --server URL --code CODE --key FILE [--ca FILE] [posture flags]
  ehrvault device status  --server URL --key FILE [--ca FILE]

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
	case "enroll":
		return deviceEnroll(ctx, c, args[1:])
	case "status":
		return deviceStatus(ctx, c, args[1:])
	}
	return usagef("unknown subcommand %q: use code, list, show, approve, revoke, enroll or status", args[0])
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
	return c.onVault(ctx, fs, args, 0, "", func(v *vault) error {
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
	})
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
			reg = devices.New(v.db, v.authSeal, v.authMAC, devices.RequireDiskEncryption(false))
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

// deviceRecorder records the events of the device endpoints in the audit
// log (for devices.HandlerConfig.Recorder).
func (v *vault) deviceRecorder() devices.Recorder {
	return devices.RecorderFunc(func(ctx context.Context, e devices.Event) error {
		ae := &audit.Entry{Action: e.Action, Outcome: e.Outcome, Principal: audit.Principal{Kind: e.Kind, ID: e.Principal}, Role: e.Role, Source: e.Source}
		if ae.Principal.Kind == "" {
			ae.Principal.Kind = "anonymous"
		}
		if e.Device != "" {
			ae.Detail = append(ae.Detail, audit.Param{Name: "device", Value: e.Device})
		}
		if e.Reason != "" {
			ae.Detail = append(ae.Detail, audit.Param{Name: "reason", Value: e.Reason})
		}
		_, err := v.audit.Append(ctx, ae)
		return err
	})
}

// deviceClientFlags are the flags of the device side's commands.
type deviceClientFlags struct {
	server, keyFile, caFile string
}

func (f *deviceClientFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&f.server, "server", "", "the server's base `URL`, e.g. https://ehr.example.org:8443")
	fs.StringVar(&f.keyFile, "key", "", "the device's private key (PEM PKCS #8) `file`; enroll makes a P-256 key there if there is none")
	fs.StringVar(&f.caFile, "ca", "", "trust the server certificate(s) in this PEM `file` (e.g. the data directory's "+edge.CertFile+")")
}

func (f *deviceClientFlags) check() error {
	if f.server == "" || f.keyFile == "" {
		return usagef("--server and --key are required")
	}
	u, err := url.Parse(f.server)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		return usagef("--server must be an https (or, on loopback, http) URL")
	}
	return nil
}

func (f *deviceClientFlags) client() (*http.Client, error) {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	if f.caFile != "" {
		b, err := os.ReadFile(f.caFile)
		if err != nil {
			return nil, fmt.Errorf("read --ca: %w", err)
		}
		roots := x509.NewCertPool()
		if !roots.AppendCertsFromPEM(b) {
			return nil, fmt.Errorf("--ca %s holds no PEM certificate", f.caFile)
		}
		tr.TLSClientConfig = &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12}
	}
	return &http.Client{Transport: tr, Timeout: 30 * time.Second}, nil
}

// loadDeviceKey reads the device's key, or with create makes one.
func loadDeviceKey(path string, create bool) (*devices.Key, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) && create {
		k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			return nil, err
		}
		der, err := x509.MarshalPKCS8PrivateKey(k)
		if err != nil {
			return nil, err
		}
		f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
		if err != nil {
			return nil, fmt.Errorf("write --key: %w", err)
		}
		_, err = f.Write(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}))
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return nil, fmt.Errorf("write --key: %w", err)
		}
		return devices.NewKey(k)
	}
	if err != nil {
		return nil, fmt.Errorf("read --key: %w", err)
	}
	blk, _ := pem.Decode(b)
	if blk == nil || blk.Type != "PRIVATE KEY" {
		return nil, fmt.Errorf("--key %s holds no PEM PKCS #8 private key", path)
	}
	k, err := x509.ParsePKCS8PrivateKey(blk.Bytes)
	if err != nil {
		return nil, fmt.Errorf("--key %s: %w", path, err)
	}
	signer, ok := k.(crypto.Signer)
	if !ok {
		return nil, fmt.Errorf("--key %s: not a signing key", path)
	}
	return devices.NewKey(signer)
}

func deviceEnroll(ctx context.Context, c *cli, args []string) error {
	fs := c.flags("device enroll", "--server URL --code CODE --key FILE [flags]", `
Enroll this device: send the enrollment code, the device's public key and
its posture, signed by its key, to the server. The device then waits for an
admin's approval ("ehrvault device status" tells). The posture flags are
what the device says about itself; the server records them.`)
	var df deviceClientFlags
	df.register(fs)
	code := fs.String("code", "", "the enrollment `code` (ehd_…) from ehrvault device code")
	host, _ := os.Hostname()
	var p devices.Posture
	fs.StringVar(&p.OS, "os", runtime.GOOS, "the operating system")
	fs.StringVar(&p.OSVersion, "os-version", "", "the operating system's version")
	fs.BoolVar(&p.DiskEncrypted, "disk-encrypted", false, "the device's disk is encrypted")
	fs.BoolVar(&p.ScreenLock, "screen-lock", false, "the device locks its screen when idle")
	fs.StringVar(&p.Hostname, "hostname", host, "the device's host name")
	if err := c.parse(fs, args); err != nil {
		return err
	}
	if err := df.check(); err != nil {
		return err
	}
	if !strings.HasPrefix(*code, devices.CodePrefix) {
		return usagef("--code must be an enrollment code (%s…)", devices.CodePrefix)
	}
	hc, err := df.client()
	if err != nil {
		return err
	}
	key, err := loadDeviceKey(df.keyFile, true)
	if err != nil {
		return err
	}
	s, err := devices.Enroll(ctx, hc, strings.TrimRight(df.server, "/"), *code, key, p)
	if err != nil {
		return withHint(err, "an enrollment code works once and for 24 hours; ask an admin for a new one if it was used or expired")
	}
	fmt.Fprintf(c.stdout, "%s %s\n", s.Device, s.State)
	fmt.Fprintf(c.stderr, "enrolled as %s (key %s); an admin approves it with: ehrvault device approve %s\n", s.Device, key.JKT(), s.Device)
	return nil
}

func deviceStatus(ctx context.Context, c *cli, args []string) error {
	fs := c.flags("device status", "--server URL --key FILE [--ca FILE]", "Ask the server whether this device is approved and passes policy.")
	var df deviceClientFlags
	df.register(fs)
	if err := c.parse(fs, args); err != nil {
		return err
	}
	if err := df.check(); err != nil {
		return err
	}
	hc, err := df.client()
	if err != nil {
		return err
	}
	key, err := loadDeviceKey(df.keyFile, false)
	if err != nil {
		return err
	}
	s, err := devices.FetchStatus(ctx, hc, strings.TrimRight(df.server, "/"), key)
	if err != nil {
		return err
	}
	fmt.Fprintf(c.stdout, "%s %s", s.Device, s.State)
	if !s.Passes {
		fmt.Fprintf(c.stdout, " (refused: %s)", s.Reason)
	}
	fmt.Fprintln(c.stdout)
	return nil
}
