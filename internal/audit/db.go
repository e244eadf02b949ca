package audit

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"net/url"
	"os"
	"sort"
	"strconv"
	"strings"

	"github.com/mattn/go-sqlite3"
)

//go:embed migrations/*.sql
var migrationFS embed.FS

// applicationID marks audit.db files (PRAGMA application_id): "EVAU".
const applicationID = 0x45564155

// openDB opens the audit database at path: one writer connection (nil
// when readOnly) and a pool of readers. create makes a new file and
// refuses an existing one; otherwise the file must exist.
func openDB(ctx context.Context, path string, create, readOnly bool) (w, r *sql.DB, err error) {
	_, statErr := os.Stat(path)
	switch {
	case create && statErr == nil:
		return nil, nil, fmt.Errorf("open %s: %w", path, os.ErrExist)
	case create:
		f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
		if err != nil {
			return nil, nil, fmt.Errorf("create %s: %w", path, err)
		}
		f.Close()
	case statErr != nil:
		return nil, nil, fmt.Errorf("open %s: %w", path, statErr)
	}
	if !readOnly {
		w = sql.OpenDB(&connector{dsn: dsn(path, url.Values{
			"mode":             {"rw"},
			"_txlock":          {"immediate"},
			"_synchronous":     {"NORMAL"},
			"_busy_timeout":    {"10000"},
			"_cache_size":      {"-16384"},
			"_stmt_cache_size": {"64"},
		}), pragmas: []string{"PRAGMA journal_mode = WAL", "PRAGMA temp_store = MEMORY"}})
		w.SetMaxOpenConns(1)
		w.SetMaxIdleConns(1)
		w.SetConnMaxLifetime(0)
		w.SetConnMaxIdleTime(0)
		if err := migrate(ctx, w); err != nil {
			w.Close()
			if create {
				for _, s := range []string{"", "-wal", "-shm"} {
					os.Remove(path + s)
				}
			}
			return nil, nil, fmt.Errorf("open %s: %w", path, err)
		}
	}
	mode := "ro"
	r = sql.OpenDB(&connector{dsn: dsn(path, url.Values{
		"mode":             {mode},
		"_query_only":      {"1"},
		"_busy_timeout":    {"10000"},
		"_stmt_cache_size": {"64"},
	})})
	r.SetMaxOpenConns(4)
	r.SetMaxIdleConns(4)
	if readOnly {
		var v int
		if err := r.QueryRowContext(ctx, "PRAGMA application_id").Scan(&v); err != nil {
			r.Close()
			return nil, nil, fmt.Errorf("open %s: %w", path, err)
		}
		if v != applicationID {
			r.Close()
			return nil, nil, fmt.Errorf("open %s: not an ehrvault audit log", path)
		}
	}
	return w, r, nil
}

func dsn(path string, params url.Values) string {
	p := strings.NewReplacer("%", "%25", "?", "%3f", "#", "%23").Replace(path)
	return "file:" + p + "?" + params.Encode()
}

// connector opens go-sqlite3 connections without registering a driver
// name globally.
type connector struct {
	dsn     string
	pragmas []string
}

func (c *connector) Connect(ctx context.Context) (driver.Conn, error) {
	conn, err := c.Driver().Open(c.dsn)
	if err != nil {
		return nil, err
	}
	sc := conn.(*sqlite3.SQLiteConn)
	for _, p := range c.pragmas {
		if _, err := sc.ExecContext(ctx, p, nil); err != nil {
			sc.Close()
			return nil, fmt.Errorf("%s: %w", p, err)
		}
	}
	return conn, nil
}

func (c *connector) Driver() driver.Driver { return &sqlite3.SQLiteDriver{} }

// migrate brings the schema to the newest version (PRAGMA user_version).
func migrate(ctx context.Context, db *sql.DB) error {
	names, err := fs.Glob(migrationFS, "migrations/*.sql")
	if err != nil {
		return err
	}
	sort.Strings(names)
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	defer tx.Rollback()
	var version, appID int
	if err := tx.QueryRowContext(ctx, "PRAGMA user_version").Scan(&version); err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	if err := tx.QueryRowContext(ctx, "PRAGMA application_id").Scan(&appID); err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	if version > 0 && appID != applicationID {
		return errors.New("not an ehrvault audit log")
	}
	if version > len(names) {
		return fmt.Errorf("the audit log has schema version %d, newer than this ehrvault knows (%d): upgrade ehrvault", version, len(names))
	}
	for i := version; i < len(names); i++ {
		b, err := migrationFS.ReadFile(names[i])
		if err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, string(b)); err != nil {
			return fmt.Errorf("migrate %s: %w", names[i], err)
		}
	}
	if version < len(names) {
		if _, err := tx.ExecContext(ctx, "PRAGMA user_version = "+strconv.Itoa(len(names))+"; PRAGMA application_id = "+strconv.Itoa(applicationID)); err != nil {
			return fmt.Errorf("migrate: %w", err)
		}
	}
	return tx.Commit()
}
