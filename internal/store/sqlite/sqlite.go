// Package sqlite is ehrvault's embedded storage backend: one SQLite database
// file (with its -wal and -shm companions) that holds sealed resource
// versions, blind-index tokens, wrapped data keys and hashed API tokens. It
// implements store.Store and store.AuthTokens and passes storetest.
//
// # What the file shows
//
// A holder of the files without the key-encryption key learns only:
//
//   - resource types, row ids (keyed hashes of resource ids, computed by
//     the caller), version numbers, the time of each write (microseconds),
//     which versions are deletions, and the length of each sealed version
//     or tombstone;
//   - the id of the data key that sealed each version, and so which
//     versions share an owner; data-key owners as the caller names them
//     ("Patient/<row id>", "store");
//   - blind-index tokens (keyed hashes) per resource: which resources share
//     a token, and how often each token occurs, never what it stands for;
//   - API tokens' public ids, SHA-256 hashes, labels, creation and expiry
//     times and revocation flags.
//
// Resource contents exist only as sealed bytes and data keys only wrapped.
// Deleted rows are overwritten with zeros (secure_delete=FAST), so a
// replaced token or a removed key does not linger in free pages.
//
// # Promises
//
//   - Everything store.Store promises: Update is one SQLite write
//     transaction (BEGIN IMMEDIATE on the only writer connection), durable
//     on return with Synchronous "full" (the default); "normal" may lose the
//     last transactions on power loss, never consistency.
//   - Writes are serialized: one Update runs at a time, the others wait for
//     the writer connection (honouring their context). Reads run in
//     parallel on a separate read-only pool and never wait for writes.
//   - Update retries nothing: a busy database (another process writing for
//     longer than the busy timeout) is returned as an error.
//   - Seq values and data-key ids are never reused.
//   - ListQuery orders ids by their bytes; History returns at most
//     MaxHistory versions per call, List has no cap.
//   - Database files are created with mode 0600; Open never creates one,
//     Open with Options.Create never opens an existing one.
//   - The schema is versioned (PRAGMA user_version) and migrated forward on
//     Open; a schema newer than this code is refused.
//
// # Non-promises
//
//   - A Tx is used by one goroutine at a time, and only until its Update
//     returns; calling Update from inside an Update's function deadlocks
//     until the outer context ends.
//   - Nothing here hides the size, count or timing of writes.
package sqlite

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
	"path"
	"runtime"
	"strconv"
	"strings"
	"sync/atomic"

	"github.com/mattn/go-sqlite3"

	"github.com/ehrvault/ehrvault/internal/store"
)

// Compile-time checks.
var (
	_ store.Store      = (*DB)(nil)
	_ store.AuthTokens = (*DB)(nil)
	_ store.Tx         = (*tx)(nil)
	_ store.KeyStore   = keys{}
)

// applicationID marks the file as an ehrvault database (PRAGMA
// application_id; "ehrv" in ASCII), so that Open refuses other SQLite files.
const applicationID = 0x65687276

// MaxHistory caps the versions one History call returns; callers page with
// HistoryQuery.BeforeSeq.
const MaxHistory = 10000

// busyTimeoutMS is how long a statement waits for another process's lock.
const busyTimeoutMS = 5000

// pageSize is the page size of new databases.
const pageSize = 4096

// walCheckpointPages is how long the write-ahead log grows, in pages,
// before a commit copies it into the database file. SQLite's default is
// 1000 (4 MiB); a longer log writes each page that several transactions
// changed once instead of once per checkpoint, which matters because
// index pages are changed at random.
const walCheckpointPages = 32768

// walSizeLimit is the size the log file is cut back to after a checkpoint
// has emptied it.
const walSizeLimit = 64 << 20

// stmtCacheSize is how many prepared statements each connection keeps for
// reuse. The store's statements are few (history and list queries vary with
// their filters), so all of them stay prepared.
const stmtCacheSize = 128

// Options change how Open opens a database.
type Options struct {
	// Create makes a new database file; Open then fails if the file exists.
	// Without it Open fails if the file does not exist.
	Create bool
	// Synchronous is the SQLite synchronous setting of the writer: "full"
	// (the default: a transaction is on disk when Update returns) or
	// "normal" (faster; power loss may undo the last transactions).
	Synchronous string
	// ReadConns is the size of the read-only connection pool; 0 picks
	// twice the number of usable CPUs, at least 4.
	ReadConns int
	// ReadCache is how many current versions Read keeps in memory (as the
	// sealed bytes stored); 0 keeps none. Set it only in a process that
	// is the database's only writer: the cache does not see writes made
	// by other processes. (ehrvault serve holds the data directory's lock,
	// which every other writer of records takes too.)
	ReadCache int
	// CacheMiB is the page cache of the writer connection, in MiB; 0 picks
	// 256. The blind index is keyed by hashes, so every write touches
	// index pages all over the file: a cache that holds more of them makes
	// large imports much faster (the index of a million resources is a few
	// GiB).
	CacheMiB int
	// ProbeLimit is how many rows the search planner counts, at most, to
	// size each condition that could drive a search; 0 picks 4096. Tests
	// set it small to take every plan with little data.
	ProbeLimit int
	// WALLimit is the size of the write-ahead log, in bytes, past which a
	// commit waits for the readers to reach the latest snapshot and
	// empties the log (wal_checkpoint(TRUNCATE)); 0 picks 1 GiB. Without
	// it, reads that never pause (a busy server, an import that reads as
	// it writes) keep SQLite's own checkpoints from ever restarting the
	// log: it grew to 7.8 GB in a load of two million resources, and
	// every read then searched its index.
	WALLimit int64
}

// walLimitDefault is Options.WALLimit's default.
const walLimitDefault = 1 << 30

// walCheckEvery is how many commits pass between looks at the log's size.
const walCheckEvery = 64

// DB is an open database. It is safe for concurrent use.
type DB struct {
	path   string
	w      *sql.DB    // one connection: every write transaction
	r      *sql.DB    // read-only connections
	cache  *headCache // nil without Options.ReadCache
	probe  int        // Options.ProbeLimit
	closed atomic.Bool

	walLimit int64        // Options.WALLimit
	commits  atomic.Int64 // commits since Open, to look at the log now and then
}

// Open opens the database file at path (see Options).
func Open(ctx context.Context, path string, o Options) (*DB, error) {
	sync := "FULL"
	switch strings.ToLower(o.Synchronous) {
	case "", "full":
	case "normal":
		sync = "NORMAL"
	default:
		return nil, fmt.Errorf("open %s: synchronous must be \"full\" or \"normal\", not %q", path, o.Synchronous)
	}
	readConns := o.ReadConns
	if readConns <= 0 {
		readConns = max(4, 2*runtime.GOMAXPROCS(0))
	}

	if o.Create {
		if err := createFile(path); err != nil {
			return nil, err
		}
	} else {
		fi, err := os.Stat(path)
		if errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("open %s: %w; create a store with `ehrvault init`", path, fs.ErrNotExist)
		}
		if err != nil {
			return nil, fmt.Errorf("open %s: %w", path, err)
		}
		if !fi.Mode().IsRegular() {
			return nil, fmt.Errorf("open %s: not a regular file", path)
		}
	}

	cache := o.CacheMiB
	if cache <= 0 {
		cache = 256
	}
	db, err := open(ctx, path, sync, readConns, o.ProbeLimit, cache)
	if err != nil {
		if o.Create {
			// Leave nothing half made behind, so that init can run again.
			for _, suffix := range []string{"", "-wal", "-shm", "-journal"} {
				os.Remove(path + suffix)
			}
		}
		return nil, err
	}
	if o.ReadCache > 0 {
		db.cache = newHeadCache(o.ReadCache)
	}
	db.walLimit = o.WALLimit
	if db.walLimit <= 0 {
		db.walLimit = walLimitDefault
	}
	return db, nil
}

// createFile creates an empty database file with mode 0600. SQLite gives
// the -wal and -shm files it makes later the mode of the database file.
func createFile(path string) error {
	// A -wal file left from an earlier database would be replayed into the
	// new one.
	for _, suffix := range []string{"-wal", "-journal"} {
		if _, err := os.Lstat(path + suffix); err == nil {
			return fmt.Errorf("create %s: %s is there, left from an earlier database; move it away first", path, path+suffix)
		}
	}
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
	if errors.Is(err, fs.ErrExist) {
		return fmt.Errorf("create %s: %w; a new database is never written over an existing file", path, fs.ErrExist)
	}
	if err != nil {
		return fmt.Errorf("create %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("create %s: %w", path, err)
	}
	return nil
}

func open(ctx context.Context, path, sync string, readConns, probe, cacheMiB int) (*DB, error) {
	db := &DB{path: path, probe: probe}
	if db.probe <= 0 {
		db.probe = 4096
	}
	var err error
	db.w = sql.OpenDB(&connector{
		dsn: dsn(path, url.Values{
			"mode":             {"rw"}, // never create: Open decided that
			"_txlock":          {"immediate"},
			"_synchronous":     {sync},
			"_foreign_keys":    {"1"},
			"_secure_delete":   {"FAST"},
			"_busy_timeout":    {strconv.Itoa(busyTimeoutMS)},
			"_cache_size":      {strconv.Itoa(-cacheMiB << 10)}, // KiB
			"_stmt_cache_size": {strconv.Itoa(stmtCacheSize)},
		}),
		pragmas: []string{
			// The page size of a new database; an existing one keeps
			// its own. It must come before WAL mode.
			fmt.Sprintf("PRAGMA page_size = %d", pageSize),
			"PRAGMA journal_mode = WAL",
			fmt.Sprintf("PRAGMA wal_autocheckpoint = %d", walCheckpointPages),
			fmt.Sprintf("PRAGMA journal_size_limit = %d", walSizeLimit),
			// Statement journals (the undo of one statement inside a
			// transaction, needed by multi-row INSERTs) in memory: on
			// disk they cost a page write each (measured: 520,000 extra
			// writes importing smart-r4-2019). They live only while a
			// statement runs and hold index rows, never resources.
			"PRAGMA temp_store = MEMORY",
		},
	})
	db.w.SetMaxOpenConns(1)
	db.w.SetMaxIdleConns(1)
	db.w.SetConnMaxLifetime(0)
	db.w.SetConnMaxIdleTime(0)
	if err = db.migrate(ctx); err != nil {
		db.w.Close()
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	// The -wal and -shm files exist now and stay while the writer
	// connection is open, so read-only connections can share them.
	db.r = sql.OpenDB(&connector{
		dsn: dsn(path, url.Values{
			"mode":             {"ro"},
			"_query_only":      {"1"},
			"_busy_timeout":    {strconv.Itoa(busyTimeoutMS)},
			"_stmt_cache_size": {strconv.Itoa(stmtCacheSize)},
		}),
		// Reads map the file (up to the 2 GiB go-sqlite3 allows) rather
		// than copy each page they touch: searches, which touch many
		// index pages, ran 20% faster for it.
		pragmas: []string{"PRAGMA cache_size = -2000", "PRAGMA mmap_size = 2147418112"},
	})
	db.r.SetMaxOpenConns(readConns)
	db.r.SetMaxIdleConns(readConns)
	db.r.SetConnMaxLifetime(0)
	db.r.SetConnMaxIdleTime(0)
	if err := db.r.PingContext(ctx); err != nil {
		db.w.Close()
		db.r.Close()
		return nil, fmt.Errorf("open %s: read pool: %w", path, err)
	}
	return db, nil
}

// short returns the context for a statement that finishes in
// microseconds (a point read, one row written): ctx's values without its
// cancellation. database/sql and go-sqlite3 each start a goroutine per
// statement to watch a context that can be cancelled, which costs more
// than such a statement does (measured: a third of a Put's time). Callers
// check ctx before the statement.
func short(ctx context.Context) context.Context { return context.WithoutCancel(ctx) }

// dsn returns the go-sqlite3 data source name of path: a file: URI, with
// the characters URIs give a meaning to escaped in the path.
func dsn(path string, params url.Values) string {
	p := strings.NewReplacer("%", "%25", "?", "%3f", "#", "%23").Replace(path)
	return "file:" + p + "?" + params.Encode()
}

// connector opens go-sqlite3 connections without registering a driver
// name globally.
type connector struct {
	dsn     string
	pragmas []string // run on each new connection, in order
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

//go:embed migrations/*.sql
var migrationFS embed.FS

// migrations returns the embedded migrations in order; migration i (from
// 1) brings the schema from version i-1 to version i.
func migrations() ([]string, []string) {
	names, err := fs.Glob(migrationFS, "migrations/*.sql")
	if err != nil {
		panic(err)
	}
	var sqls []string
	for i, name := range names {
		// The file names are the order; a gap or a duplicate is a bug.
		if want := fmt.Sprintf("%04d_", i+1); !strings.HasPrefix(path.Base(name), want) {
			panic(fmt.Sprintf("sqlite: migration %s out of sequence, want prefix %s", name, want))
		}
		b, err := migrationFS.ReadFile(name)
		if err != nil {
			panic(err)
		}
		sqls = append(sqls, string(b))
	}
	return names, sqls
}

// SchemaVersion is the schema version this code writes.
func SchemaVersion() int {
	names, _ := migrations()
	return len(names)
}

// migrate brings the schema up to date, one transaction per migration.
func (db *DB) migrate(ctx context.Context) error {
	names, sqls := migrations()
	for {
		done, err := db.migrateOne(ctx, names, sqls)
		if err != nil || done {
			return err
		}
	}
}

// migrateOne applies the next migration, if any. It reads the schema
// version inside the write transaction, so two processes opening the same
// file never both apply a migration.
func (db *DB) migrateOne(ctx context.Context, names, sqls []string) (done bool, err error) {
	tx, err := db.w.BeginTx(ctx, nil)
	if err != nil {
		return false, err
	}
	defer tx.Rollback()
	var version, appID, objects int
	if err := tx.QueryRowContext(ctx, "PRAGMA user_version").Scan(&version); err != nil {
		return false, err
	}
	if err := tx.QueryRowContext(ctx, "PRAGMA application_id").Scan(&appID); err != nil {
		return false, err
	}
	if err := tx.QueryRowContext(ctx, "SELECT count(*) FROM sqlite_schema").Scan(&objects); err != nil {
		return false, err
	}
	var mode string
	if err := tx.QueryRowContext(ctx, "PRAGMA journal_mode").Scan(&mode); err != nil {
		return false, err
	}
	if mode != "wal" {
		return false, fmt.Errorf("journal mode is %q, not wal (is the file on a network file system?)", mode)
	}
	switch {
	case appID != applicationID && (appID != 0 || version != 0 || objects != 0):
		return false, errors.New("not an ehrvault database")
	case version > len(sqls):
		return false, fmt.Errorf("schema version %d is newer than this ehrvault knows (%d); run a newer ehrvault", version, len(sqls))
	case version == len(sqls):
		return true, nil
	}
	if _, err := tx.ExecContext(ctx, sqls[version]); err != nil {
		return false, fmt.Errorf("migrate %s: %w", path.Base(names[version]), err)
	}
	// PRAGMA takes no parameters; both values are integers from this code.
	if _, err := tx.ExecContext(ctx, fmt.Sprintf("PRAGMA user_version = %d; PRAGMA application_id = %d", version+1, applicationID)); err != nil {
		return false, fmt.Errorf("migrate %s: %w", path.Base(names[version]), err)
	}
	if err := tx.Commit(); err != nil {
		return false, fmt.Errorf("migrate %s: %w", path.Base(names[version]), err)
	}
	return false, nil
}

// Path returns the path of the database file.
func (db *DB) Path() string { return db.path }

// Checkpoint copies the write-ahead log into the database file and
// truncates the log (wal_checkpoint(TRUNCATE)). The server calls it on a
// clean shutdown, so the data directory is one self-contained file. It
// fails if readers kept it from finishing.
func (db *DB) Checkpoint(ctx context.Context) error {
	if db.closed.Load() {
		return store.ErrClosed
	}
	var busy, logFrames, checkpointed int
	err := db.w.QueryRowContext(ctx, "PRAGMA wal_checkpoint(TRUNCATE)").Scan(&busy, &logFrames, &checkpointed)
	if err != nil {
		return db.fail("checkpoint", err)
	}
	if busy != 0 {
		return errors.New("checkpoint: the database is busy; try again when reads and writes have finished")
	}
	return nil
}

// boundWAL empties the write-ahead log if it has grown past the limit. It
// runs on the writer after a commit; a checkpoint that cannot finish (the
// busy timeout passed) is left for the next look.
func (db *DB) boundWAL(ctx context.Context) {
	fi, err := os.Stat(db.path + "-wal")
	if err != nil || fi.Size() < db.walLimit {
		return
	}
	var busy, logFrames, checkpointed int
	db.w.QueryRowContext(context.WithoutCancel(ctx), "PRAGMA wal_checkpoint(TRUNCATE)").Scan(&busy, &logFrames, &checkpointed)
}

// Close closes the database, waiting for running calls to finish. Later
// calls, Close included, fail with store.ErrClosed.
func (db *DB) Close() error {
	if db.closed.Swap(true) {
		return store.ErrClosed
	}
	// Readers first: the last connection to close checkpoints the log and
	// removes the -wal and -shm files, and that is the writer.
	rerr := db.r.Close()
	werr := db.w.Close()
	if err := errors.Join(rerr, werr); err != nil {
		return fmt.Errorf("close %s: %w", db.path, err)
	}
	return nil
}

// fail wraps an error of step op. Errors after Close, from calls that raced
// with it, become store.ErrClosed.
func (db *DB) fail(op string, err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, store.ErrNotFound):
		return err
	case db.closed.Load():
		return fmt.Errorf("%s: %w", op, store.ErrClosed)
	}
	return fmt.Errorf("%s: %w", op, err)
}

// isUnique reports whether err is a UNIQUE or PRIMARY KEY violation.
func isUnique(err error) bool {
	var se sqlite3.Error
	return errors.As(err, &se) &&
		(se.ExtendedCode == sqlite3.ErrConstraintUnique || se.ExtendedCode == sqlite3.ErrConstraintPrimaryKey)
}
