package main

import (
	"bytes"
	"context"
	"log/slog"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/rogpeppe/go-internal/testscript"

	"github.com/ehrvault/ehrvault/internal/auth/devices"
	"github.com/ehrvault/ehrvault/internal/edge"
	"github.com/ehrvault/ehrvault/internal/keyring"
)

// TestDeviceScripts runs the scripts in testdata/device, which may use
// enroll-device to play a device.
func TestDeviceScripts(t *testing.T) {
	testscript.Run(t, testscript.Params{
		Dir:  "testdata/device",
		Cmds: map[string]func(ts *testscript.TestScript, neg bool, args []string){"exits": exits, "enroll-device": enrollDevice},
		Setup: func(env *testscript.Env) error {
			env.Setenv(insecureKDFEnv, "1")
			return nil
		},
	})
}

// enroll-device DIR CODEFILE encrypted|unencrypted enrolls a new key in
// the data directory DIR with the code in CODEFILE, as the device would,
// and sets $DEVICE to the new device's id.
func enrollDevice(ts *testscript.TestScript, neg bool, args []string) {
	if len(args) != 3 || args[2] != "encrypted" && args[2] != "unencrypted" {
		ts.Fatalf("usage: enroll-device DIR CODEFILE encrypted|unencrypted")
	}
	code, err := os.ReadFile(ts.MkAbs(args[1]))
	ts.Check(err)
	ctx := context.Background()
	v, err := openVault(ctx, ts.MkAbs(args[0]), []byte(ts.Getenv(PassphraseEnv)), nil, adminAccess)
	ts.Check(err)
	defer v.Close()
	key, err := devices.GenerateKey()
	ts.Check(err)
	proof, err := key.Proof("enroll", strings.TrimSpace(string(code)), &devices.Posture{OS: "android", OSVersion: "15", DiskEncrypted: args[2] == "encrypted", ScreenLock: true, Hostname: "tab-3"}, time.Now())
	ts.Check(err)
	d, err := v.devices.Enroll(ctx, proof)
	if neg {
		if err == nil {
			ts.Fatalf("enroll-device succeeded")
		}
		return
	}
	ts.Check(err)
	ts.Setenv("DEVICE", d.ID)
}

// TestDeviceEnrollOverHTTPS plays a device with "ehrvault device enroll"
// and "device status" against the device endpoints served over TLS with
// the data directory's self-signed certificate, wired as serve will.
func TestDeviceEnrollOverHTTPS(t *testing.T) {
	ctx := context.Background()
	dir := filepath.Join(t.TempDir(), "data")
	if err := testCLI().initVault(ctx, dir, []byte(testPassphrase)); err != nil {
		t.Fatal(err)
	}
	v, err := openVault(ctx, dir, []byte(testPassphrase), slog.New(slog.DiscardHandler), adminAccess)
	if err != nil {
		t.Fatal(err)
	}
	defer v.Close()
	seal, err := v.keys.Sealer(ctx, keyring.PurposeAuthSeal)
	if err != nil {
		t.Fatal(err)
	}
	cert, _, err := edge.EnsureSelfSigned(dir, seal, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	tlsCfg, err := edge.ServerConfig(cert, "")
	if err != nil {
		t.Fatal(err)
	}
	var recorded, failed int
	rec := v.deviceRecorder()
	h := devices.NewHandler(devices.HandlerConfig{Registry: v.devices, Recorder: devices.RecorderFunc(func(ctx context.Context, e devices.Event) error {
		recorded++
		err := rec.Record(ctx, e)
		if err != nil {
			failed++
		}
		return err
	})})
	srv := httptest.NewUnstartedServer(edge.SecurityHeaders(h))
	srv.TLS = tlsCfg
	srv.StartTLS()
	defer srv.Close()

	code, _, err := v.devices.NewCode(ctx, "ward 7 tablet", devices.Tablet, "test")
	if err != nil {
		t.Fatal(err)
	}
	keyFile := filepath.Join(t.TempDir(), "device.pem")
	caFile := filepath.Join(dir, edge.CertFile)
	run := func(args ...string) (string, string, int) {
		var out, errb bytes.Buffer
		c := testCLI()
		c.stdout, c.stderr = &out, &errb
		st := c.main(ctx, append([]string{"device"}, args...))
		return out.String(), errb.String(), st
	}
	out, errs, st := run("enroll", "--server", srv.URL, "--code", code, "--key", keyFile, "--ca", caFile, "--disk-encrypted", "--os-version", "14")
	if st != 0 || !strings.HasSuffix(strings.TrimSpace(out), " pending") {
		t.Fatalf("device enroll = %d %q %q", st, out, errs)
	}
	id := strings.Fields(out)[0]
	if fi, err := os.Stat(keyFile); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("key file: %v, want mode 0600", err)
	}
	if _, errs, st := run("enroll", "--server", srv.URL, "--code", code, "--key", keyFile, "--ca", caFile); st != 1 || !strings.Contains(errs, "invalid_grant") {
		t.Errorf("device enroll with a used code = %d %q, want 1 and invalid_grant", st, errs)
	}
	if _, errs, st := run("enroll", "--server", srv.URL, "--code", code, "--key", keyFile); st != 1 || !strings.Contains(errs, "certificate") {
		t.Errorf("device enroll without --ca = %d %q, want a certificate error", st, errs)
	}
	out, _, st = run("status", "--server", srv.URL, "--key", keyFile, "--ca", caFile)
	if st != 0 || out != id+" pending (refused: device is waiting for approval)\n" {
		t.Errorf("device status before approval = %d %q", st, out)
	}
	if _, err := v.devices.Approve(ctx, id, "test"); err != nil {
		t.Fatal(err)
	}
	out, _, st = run("status", "--server", srv.URL, "--key", keyFile, "--ca", caFile)
	if st != 0 || out != id+" approved\n" {
		t.Errorf("device status after approval = %d %q", st, out)
	}
	key, err := loadDeviceKey(keyFile, false)
	if err != nil {
		t.Fatal(err)
	}
	if got, err := v.devices.DeviceByKey(ctx, key.JKT()); err != nil || got != id {
		t.Errorf("DeviceByKey(the enrolled key) = %q, %v; want %q", got, err, id)
	}
	if recorded < 2 || failed != 0 {
		t.Errorf("recorded %d events, %d failed; want the enrolment and the refused one, none failing", recorded, failed)
	}
}
