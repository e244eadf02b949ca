package main

import (
	"context"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/rogpeppe/go-internal/testscript"

	"github.com/ehrvault/ehrvault/internal/auth/devices"
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
