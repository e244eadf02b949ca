package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/ehrvault/ehrvault/internal/audit"
	"github.com/ehrvault/ehrvault/internal/auth"
	"github.com/ehrvault/ehrvault/internal/auth/devices"
	"github.com/ehrvault/ehrvault/internal/auth/smart"
	"github.com/ehrvault/ehrvault/internal/auth/users"
	"github.com/ehrvault/ehrvault/internal/edge"
	"github.com/ehrvault/ehrvault/internal/keyring"
	"github.com/ehrvault/ehrvault/internal/records"
	"github.com/ehrvault/ehrvault/internal/search"
	"github.com/ehrvault/ehrvault/internal/store/sqlite"
)

// The files of a data directory.
const (
	keyFileName = "ehrvault.key" // the KEK, sealed by the passphrase
	dbFileName  = "ehrvault.db"  // sealed resource versions (+ -wal, -shm)
)

// keyCacheSize bounds how many unwrapped data keys stay in memory.
const keyCacheSize = 10000

// insecureKDFEnv, when set to 1, makes init seal the key with very cheap
// argon2id parameters. It exists so that the CLI tests run fast; never set
// it for real data.
const insecureKDFEnv = "EHRVAULT_INSECURE_TEST_KDF"

// cacheEnv sizes the database's write cache, in MiB (docs/OPERATIONS.md).
const cacheEnv = "EHRVAULT_CACHE_MIB"

// vault is an unsealed data directory with the parts built on it.
type vault struct {
	dir      string
	lock     *dirLock // held by the processes that write records
	kp       *keyring.FileProvider
	db       *sqlite.DB
	keys     *keyring.Keyring
	index    *search.Indexer
	search   *search.Engine
	records  *records.Service
	tokens   *auth.Tokens
	clients  *smart.Clients    // SMART apps, services, devices
	devices  *devices.Registry // enrolled endpoints
	users    *users.Service    // people: passwords, MFA, sessions (user.go)
	authSeal *keyring.Sealer   // PurposeAuthSeal: identity records
	authMAC  *keyring.MAC      // PurposeAuthLookup: their lookups
	akeys    *auditKeys
	audit    *audit.Log
}

// initVault creates a data directory: its sealed key and its database.
func (c *cli) initVault(ctx context.Context, dir string, pass []byte) error {
	if fi, err := os.Stat(filepath.Join(dir, keyFileName)); err == nil && !fi.IsDir() {
		return withHint(fmt.Errorf("%s already holds a store", dir), "init never overwrites a store; choose another --data directory")
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("create data directory: %w", err)
	}
	if entries, err := os.ReadDir(dir); err != nil {
		return fmt.Errorf("read data directory: %w", err)
	} else if len(entries) > 0 {
		return withHint(fmt.Errorf("%s is not empty", dir), "init needs a new or empty directory, so that it never mixes with other files")
	}
	params := keyring.DefaultKDFParams
	if c.getenv(insecureKDFEnv) == "1" {
		fmt.Fprintf(c.stderr, "ehrvault: warning: %s=1: sealing the key with test-only argon2id parameters; never use this for real data\n", insecureKDFEnv)
		params = keyring.TestKDFParams
	}
	if err := keyring.CreateKeyFile(filepath.Join(dir, keyFileName), pass, params); err != nil {
		return fmt.Errorf("create key file: %w", err)
	}
	db, err := sqlite.Open(ctx, filepath.Join(dir, dbFileName), sqlite.Options{Create: true})
	if err != nil {
		return fmt.Errorf("create database: %w", err)
	}
	if err := db.Close(); err != nil {
		return err
	}
	// The audit log is born with the store, so that a store without one
	// is never mistaken for a new one.
	kp, err := keyring.OpenKeyFile(filepath.Join(dir, keyFileName), pass)
	if err != nil {
		return fmt.Errorf("open key file: %w", err)
	}
	defer kp.Close()
	keys := keyring.New(kp, 4)
	ak, err := loadAuditKeys(ctx, keys, kp)
	if err != nil {
		return err
	}
	// HTTPS from the first start: a self-signed certificate, its key
	// sealed under the KEK, for clients to pin (tls-cert.pem).
	seal, err := keys.Sealer(ctx, keyring.PurposeAuthSeal)
	if err != nil {
		return err
	}
	if _, err := edge.GenerateSelfSigned(dir, seal, edge.DefaultHosts(), time.Now()); err != nil {
		return fmt.Errorf("self-signed certificate: %w", err)
	}
	l, err := openAudit(ctx, dir, ak, true, auditSettings{}, nil)
	if err != nil {
		return err
	}
	e := &audit.Entry{Action: audit.ActionStoreInit, Outcome: audit.OutcomeSuccess, Principal: cliPrincipal(), Role: "operator", Source: "local"}
	if _, err := l.Append(ctx, e); err != nil {
		l.Close()
		return fmt.Errorf("audit log: %w", err)
	}
	return l.Close()
}

// access says what a command does with a data directory.
type access uint8

const (
	// adminAccess reads records and manages tokens: token commands,
	// which may run beside a server.
	adminAccess access = iota
	// writerAccess writes records (serve, import, demo): it takes the
	// data directory's lock, so that one such process runs at a time,
	// and lets the store cache reads.
	writerAccess
)

// readCacheSize is how many current versions a writer's store keeps in
// memory (sealed), about 30 MB of Synthea-sized resources.
const readCacheSize = 10000

// openVault unseals a data directory and builds the parts on it.
func openVault(ctx context.Context, dir string, pass []byte, log *slog.Logger, acc access) (*vault, error) {
	return openVaultWith(ctx, dir, pass, log, acc, auditSettings{})
}

// openVaultWith is openVault with the operator's audit settings.
func openVaultWith(ctx context.Context, dir string, pass []byte, log *slog.Logger, acc access, as auditSettings) (*vault, error) {
	keyPath := filepath.Join(dir, keyFileName)
	if _, err := os.Stat(keyPath); err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, withHint(fmt.Errorf("%s is not an ehrvault data directory (no %s)", dir, keyFileName), "create one with: ehrvault init --data "+dir)
		}
		return nil, fmt.Errorf("data directory: %w", err)
	}
	kp, err := keyring.OpenKeyFile(keyPath, pass)
	if err != nil {
		if errors.Is(err, keyring.ErrWrongPassphrase) {
			return nil, withHint(fmt.Errorf("cannot unseal %s: wrong passphrase or damaged key file", keyPath), "check "+PassphraseEnv+" or --passphrase-file; a lost passphrase cannot be recovered")
		}
		return nil, fmt.Errorf("open key file: %w", err)
	}
	v := &vault{dir: dir, kp: kp}
	opts := sqlite.Options{}
	if n, err := strconv.Atoi(os.Getenv(cacheEnv)); err == nil && n > 0 {
		opts.CacheMiB = n
	}
	if acc == writerAccess {
		if v.lock, err = lockDir(dir); err != nil {
			v.Close()
			return nil, err
		}
		opts.ReadCache = readCacheSize
	}
	v.db, err = sqlite.Open(ctx, filepath.Join(dir, dbFileName), opts)
	if err != nil {
		v.Close()
		return nil, fmt.Errorf("open database: %w", err)
	}
	v.keys = keyring.New(kp, keyCacheSize)
	ik, err := v.keys.Derived(ctx, keyring.PurposeIndex)
	if err != nil {
		v.Close()
		return nil, err
	}
	rowIDs, err := records.RowIDs(ctx, v.keys)
	if err != nil {
		v.Close()
		return nil, err
	}
	v.index = search.NewIndexer(ik, rowIDs)
	v.records, err = records.New(ctx, records.Config{Store: v.db, Keys: v.keys, Indexer: v.index, Log: log})
	if err != nil {
		v.Close()
		return nil, err
	}
	pages, err := v.keys.Sealer(ctx, keyring.PurposeSearchPage)
	if err != nil {
		v.Close()
		return nil, err
	}
	v.search = search.NewEngine(v.index, v.records, v.db, pages)
	tk, err := v.keys.Derived(ctx, keyring.PurposeToken)
	if err != nil {
		v.Close()
		return nil, err
	}
	v.tokens = auth.NewTokens(v.db, tk, nil)
	// The identity layer's records (users, clients, devices) are sealed
	// and found under keys derived once here.
	if v.authSeal, err = v.keys.Sealer(ctx, keyring.PurposeAuthSeal); err != nil {
		v.Close()
		return nil, err
	}
	if v.authMAC, err = v.keys.MAC(ctx, keyring.PurposeAuthLookup); err != nil {
		v.Close()
		return nil, err
	}
	v.clients = smart.NewClients(v.db, v.authSeal, nil)
	v.devices = devices.New(v.db, v.authSeal, v.authMAC)
	if v.users, err = v.newUsers(users.Config{Log: log}); err != nil {
		v.Close()
		return nil, err
	}
	if v.akeys, err = loadAuditKeys(ctx, v.keys, kp); err != nil {
		v.Close()
		return nil, err
	}
	if as.keysOnly {
		return v, nil
	}
	if v.audit, err = openAudit(ctx, dir, v.akeys, false, as, log); err != nil {
		v.Close()
		return nil, err
	}
	return v, nil
}

// Close signs a last audit checkpoint, checkpoints and closes the
// database and forgets the key.
func (v *vault) Close() error {
	var err error
	if v.audit != nil {
		err = v.audit.Close()
		v.audit = nil
	}
	if v.db != nil {
		v.db.Checkpoint(context.Background())
		err = errors.Join(err, v.db.Close())
		v.db = nil
	}
	if v.kp != nil {
		v.kp.Close()
		v.kp = nil
	}
	v.lock.unlock()
	v.lock = nil
	return err
}

// unseal reads the passphrase and opens the data directory of pf.
func (c *cli) unseal(ctx context.Context, pf *passphraseFlags, log *slog.Logger, acc access) (*vault, error) {
	return c.unsealWith(ctx, pf, log, acc, auditSettings{})
}

// unsealWith is unseal with the operator's audit settings.
func (c *cli) unsealWith(ctx context.Context, pf *passphraseFlags, log *slog.Logger, acc access, as auditSettings) (*vault, error) {
	pass, err := c.passphrase(pf, false)
	if err != nil {
		return nil, err
	}
	return openVaultWith(ctx, pf.data, pass, log, acc, as)
}
