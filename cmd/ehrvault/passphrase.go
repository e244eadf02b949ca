package main

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"os"

	"golang.org/x/term"
)

// PassphraseEnv names the environment variable that may hold the passphrase.
const PassphraseEnv = "EHRVAULT_PASSPHRASE"

// minPassphrase is the shortest passphrase init accepts. The passphrase
// guards every record; argon2id slows guessing but cannot save a short one.
const minPassphrase = 12

// passphraseFlags are the flags of every command that unseals the key.
type passphraseFlags struct {
	data string
	file string
}

func (p *passphraseFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&p.data, "data", "", "the data `directory` (required)")
	fs.StringVar(&p.file, "passphrase-file", "", "read the passphrase from this `file` (else $"+PassphraseEnv+", else a prompt on a terminal)")
}

func (p *passphraseFlags) check() error {
	if p.data == "" {
		return usagef("--data DIR is required")
	}
	return nil
}

var errNoPassphrase = errors.New("no passphrase given")

// passphrase reads the passphrase: from --passphrase-file, from
// $EHRVAULT_PASSPHRASE, or from a prompt when stdin is a terminal. With
// confirm (init), a prompted passphrase is asked twice.
func (c *cli) passphrase(p *passphraseFlags, confirm bool) ([]byte, error) {
	if p.file != "" {
		b, err := os.ReadFile(p.file)
		if err != nil {
			return nil, fmt.Errorf("read passphrase file: %w", err)
		}
		b = bytes.TrimRight(b, "\r\n")
		if len(b) == 0 {
			return nil, fmt.Errorf("passphrase file %s is empty", p.file)
		}
		return b, nil
	}
	if v := c.getenv(PassphraseEnv); v != "" {
		return []byte(v), nil
	}
	f, ok := c.stdin.(*os.File)
	if !ok || !term.IsTerminal(int(f.Fd())) {
		return nil, withHint(errNoPassphrase, "set "+PassphraseEnv+", pass --passphrase-file FILE, or run on a terminal to be asked")
	}
	fmt.Fprintf(c.stderr, "Passphrase for %s: ", p.data)
	pw, err := term.ReadPassword(int(f.Fd()))
	fmt.Fprintln(c.stderr)
	if err != nil {
		return nil, fmt.Errorf("read passphrase: %w", err)
	}
	if confirm {
		fmt.Fprint(c.stderr, "Again, to confirm: ")
		again, err := term.ReadPassword(int(f.Fd()))
		fmt.Fprintln(c.stderr)
		if err != nil {
			return nil, fmt.Errorf("read passphrase: %w", err)
		}
		if !bytes.Equal(pw, again) {
			return nil, errors.New("the two passphrases differ")
		}
	}
	if len(pw) == 0 {
		return nil, errNoPassphrase
	}
	return pw, nil
}

// isTerminal reports whether w is a terminal.
func isTerminal(w any) bool {
	f, ok := w.(*os.File)
	return ok && term.IsTerminal(int(f.Fd()))
}
