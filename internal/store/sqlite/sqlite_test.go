package sqlite

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/ehrvault/ehrvault/internal/store"
	"github.com/ehrvault/ehrvault/internal/store/storetest"
)

func TestMain(m *testing.M) {
	code := m.Run()
	if readFixture.dir != "" {
		os.RemoveAll(readFixture.dir)
	}
	os.Exit(code)
}

func openTemp(t testing.TB, o Options) *DB {
	t.Helper()
	o.Create = true
	db, err := Open(context.Background(), filepath.Join(t.TempDir(), "ehrvault.db"), o)
	if err != nil {
		t.Fatalf("Open = %v", err)
	}
	return db
}

func TestStore(t *testing.T) {
	storetest.Run(t, func(t *testing.T) store.Store { return openTemp(t, Options{}) })
}

// TestStoreReadCache runs the suite with a read cache so small that it
// evicts all the time: every read must still see the latest commit.
func TestStoreReadCache(t *testing.T) {
	storetest.Run(t, func(t *testing.T) store.Store { return openTemp(t, Options{ReadCache: 3}) })
}

// TestStoreSmallProbe runs the suite with a probe limit so small that the
// search planner's choice of driver is decided by the data at hand, so
// that the model test takes every plan.
func TestStoreSmallProbe(t *testing.T) {
	storetest.Run(t, func(t *testing.T) store.Store { return openTemp(t, Options{ProbeLimit: 5}) })
}

func TestReadCacheSeesCommits(t *testing.T) {
	ctx := context.Background()
	db := openTemp(t, Options{ReadCache: 100})
	defer db.Close()
	put := func(n int64) {
		t.Helper()
		err := db.Update(ctx, func(tx store.Tx) error {
			return tx.Put(ctx, &store.Version{Type: "Patient", ID: "p", Version: n, Updated: time.Now().UTC().Truncate(time.Microsecond), KeyID: 1, Data: []byte{byte(n)}}, nil)
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	for n := int64(1); n <= 50; n++ {
		put(n)
		for range 2 { // the second read hits the cache
			v, err := db.Read(ctx, "Patient", "p")
			if err != nil || v.Version != n || v.Data[0] != byte(n) {
				t.Fatalf("after writing version %d, Read = %+v, %v", n, v, err)
			}
		}
	}
	// A rolled-back write leaves the cached version alone.
	db.Update(ctx, func(tx store.Tx) error {
		tx.Put(ctx, &store.Version{Type: "Patient", ID: "p", Version: 51, Updated: time.Now().UTC().Truncate(time.Microsecond), KeyID: 1, Data: []byte{51}}, nil)
		return errors.New("roll back")
	})
	if v, err := db.Read(ctx, "Patient", "p"); err != nil || v.Version != 50 {
		t.Fatalf("after a rollback, Read = %+v, %v", v, err)
	}
}

func TestStoreSynchronousNormal(t *testing.T) {
	if testing.Short() {
		t.Skip("the suite ran with the default setting in TestStore")
	}
	storetest.Run(t, func(t *testing.T) store.Store {
		return openTemp(t, Options{Synchronous: "normal", ReadConns: 1})
	})
}

func TestOpenMissing(t *testing.T) {
	path := filepath.Join(t.TempDir(), "missing.db")
	db, err := Open(context.Background(), path, Options{})
	if err == nil {
		db.Close()
		t.Fatalf("Open(missing file) = nil error")
	}
	if !errors.Is(err, fs.ErrNotExist) || !strings.Contains(err.Error(), path) || !strings.Contains(err.Error(), "ehrvault init") {
		t.Errorf("Open(missing file) = %q; want fs.ErrNotExist naming the path and `ehrvault init`", err)
	}
	if _, err := os.Stat(path); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("Open(missing file) left a file behind: %v", err)
	}
}

func TestCreateExisting(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "ehrvault.db")
	content := []byte("an existing file")
	if err := os.WriteFile(path, content, 0o600); err != nil {
		t.Fatal(err)
	}
	db, err := Open(context.Background(), path, Options{Create: true})
	if err == nil {
		db.Close()
		t.Fatalf("Open(existing file, Create) = nil error")
	}
	if !errors.Is(err, fs.ErrExist) || !strings.Contains(err.Error(), path) {
		t.Errorf("Open(existing file, Create) = %q; want fs.ErrExist naming the path", err)
	}
	if got, _ := os.ReadFile(path); !bytes.Equal(got, content) {
		t.Errorf("Open(existing file, Create) changed the file")
	}

	// A real database is refused just the same.
	path2 := filepath.Join(dir, "real.db")
	db, err = Open(context.Background(), path2, Options{Create: true})
	if err != nil {
		t.Fatal(err)
	}
	db.Close()
	if db, err := Open(context.Background(), path2, Options{Create: true}); !errors.Is(err, fs.ErrExist) {
		if err == nil {
			db.Close()
		}
		t.Errorf("Open(existing database, Create) = %v, want fs.ErrExist", err)
	}

	// So is a -wal file without its database: it would be replayed.
	path3 := filepath.Join(dir, "wal.db")
	if err := os.WriteFile(path3+"-wal", []byte("old log"), 0o600); err != nil {
		t.Fatal(err)
	}
	if db, err := Open(context.Background(), path3, Options{Create: true}); err == nil || !strings.Contains(err.Error(), path3+"-wal") {
		if err == nil {
			db.Close()
		}
		t.Errorf("Open(Create) beside a stale -wal = %v, want an error naming it", err)
	}
	if _, err := os.Stat(path3); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("Open(Create) beside a stale -wal created the database anyway")
	}
}

// rawExec runs statements on the file at path outside this package's
// connections, as another program (or an attacker) would.
func rawExec(t *testing.T, path string, stmts ...string) {
	t.Helper()
	raw, err := sql.Open("sqlite3", path)
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	for _, s := range stmts {
		if _, err := raw.Exec(s); err != nil {
			t.Fatalf("%s: %v", s, err)
		}
	}
}

func TestOpenRefuses(t *testing.T) {
	dir := t.TempDir()
	newer := filepath.Join(dir, "newer.db")
	db, err := Open(context.Background(), newer, Options{Create: true})
	if err != nil {
		t.Fatal(err)
	}
	db.Close()
	rawExec(t, newer, fmt.Sprintf("PRAGMA user_version = %d", SchemaVersion()+1))

	other := filepath.Join(dir, "other.db")
	rawExec(t, other, "CREATE TABLE notes (x TEXT)")

	garbage := filepath.Join(dir, "garbage.db")
	if err := os.WriteFile(garbage, bytes.Repeat([]byte("not a database "), 1000), 0o600); err != nil {
		t.Fatal(err)
	}

	for _, c := range []struct {
		path, want string
	}{
		{newer, fmt.Sprintf("schema version %d is newer than this ehrvault knows (%d)", SchemaVersion()+1, SchemaVersion())},
		{other, "not an ehrvault database"},
		{garbage, "not a database"},
	} {
		db, err := Open(context.Background(), c.path, Options{})
		if err == nil {
			db.Close()
			t.Errorf("Open(%s) = nil error, want %q", filepath.Base(c.path), c.want)
			continue
		}
		if !strings.Contains(err.Error(), c.want) || !strings.Contains(err.Error(), c.path) {
			t.Errorf("Open(%s) = %q, want it to name the path and say %q", filepath.Base(c.path), err, c.want)
		}
	}
}

func TestOptions(t *testing.T) {
	path := filepath.Join(t.TempDir(), "ehrvault.db")
	if db, err := Open(context.Background(), path, Options{Create: true, Synchronous: "off"}); err == nil {
		db.Close()
		t.Errorf("Open(Synchronous: off) = nil error")
	}
	if _, err := os.Stat(path); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("Open with bad options created the file")
	}
}

func TestSchema(t *testing.T) {
	db := openTemp(t, Options{})
	defer db.Close()
	var version, appID int
	db.r.QueryRow("PRAGMA user_version").Scan(&version)
	db.r.QueryRow("PRAGMA application_id").Scan(&appID)
	if version != SchemaVersion() || version < 1 {
		t.Errorf("user_version = %d, want %d", version, SchemaVersion())
	}
	if appID != applicationID {
		t.Errorf("application_id = %#x, want %#x", appID, applicationID)
	}
	var mode string
	db.r.QueryRow("PRAGMA journal_mode").Scan(&mode)
	if mode != "wal" {
		t.Errorf("journal_mode = %q, want wal", mode)
	}
	var fk int
	db.w.QueryRow("PRAGMA foreign_keys").Scan(&fk)
	if fk != 1 {
		t.Errorf("writer foreign_keys = %d, want 1", fk)
	}
	if _, err := db.r.Exec("INSERT INTO data_keys (owner, wrapped) VALUES ('x', x'00')"); err == nil {
		t.Errorf("a write on the read pool succeeded")
	}
}

func TestFileModes(t *testing.T) {
	// With no umask, SQLite alone would make its files 0644.
	old := syscall.Umask(0)
	defer syscall.Umask(old)
	db := openTemp(t, Options{})
	defer db.Close()
	if err := db.Update(context.Background(), func(tx store.Tx) error {
		return tx.Put(context.Background(), &store.Version{Type: "Patient", ID: "a", Version: 1, Data: []byte("x")}, nil)
	}); err != nil {
		t.Fatal(err)
	}
	if _, err := db.Read(context.Background(), "Patient", "a"); err != nil {
		t.Fatal(err)
	}
	for _, suffix := range []string{"", "-wal", "-shm"} {
		fi, err := os.Stat(db.Path() + suffix)
		if err != nil {
			t.Errorf("stat %s: %v", filepath.Base(db.Path()+suffix), err)
			continue
		}
		if mode := fi.Mode().Perm(); mode != 0o600 {
			t.Errorf("%s has mode %#o, want 0600", filepath.Base(db.Path()+suffix), mode)
		}
	}
}

func TestReopen(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "ehrvault.db")
	db, err := Open(ctx, path, Options{Create: true})
	if err != nil {
		t.Fatal(err)
	}
	when := time.Date(2024, 1, 2, 3, 4, 5, 6000, time.UTC)
	var vs []*store.Version
	var keyID int64
	err = db.Update(ctx, func(tx store.Tx) error {
		for i := range 10 {
			v := &store.Version{Type: "Patient", ID: fmt.Sprint(i), Version: 1, Updated: when, KeyID: 3, Data: []byte{byte(i), 0, 1}}
			if err := tx.Put(ctx, v, &store.Index{Tokens: []store.Token{{byte(i % 2)}}}); err != nil {
				return err
			}
			vs = append(vs, v)
		}
		d := &store.Version{Type: "Patient", ID: "9", Version: 2, Updated: when, Deleted: true}
		vs = append(vs, d)
		if err := tx.Put(ctx, d, nil); err != nil {
			return err
		}
		keyID, err = tx.PutWrappedKey(ctx, "Patient/1", []byte("wrapped"))
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	tok := store.AuthToken{ID: "t1", Hash: []byte("hash"), Label: "l", Created: when, Expires: when.Add(time.Hour)}
	if err := db.PutAuthToken(ctx, tok); err != nil {
		t.Fatal(err)
	}
	if err := db.Checkpoint(ctx); err != nil {
		t.Fatalf("Checkpoint = %v", err)
	}
	if fi, err := os.Stat(path + "-wal"); err == nil && fi.Size() != 0 {
		t.Errorf("-wal holds %d bytes after Checkpoint, want 0", fi.Size())
	}
	if err := db.Close(); err != nil {
		t.Fatalf("Close = %v", err)
	}
	for _, suffix := range []string{"-wal", "-shm"} {
		if _, err := os.Stat(path + suffix); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("%s still there after Close: %v", suffix, err)
		}
	}

	db, err = Open(ctx, path, Options{})
	if err != nil {
		t.Fatalf("reopen: %v", err)
	}
	defer db.Close()
	for _, v := range vs {
		got, err := db.VRead(ctx, v.Type, v.ID, v.Version)
		if err != nil || got.Seq != v.Seq || !got.Updated.Equal(v.Updated) || !bytes.Equal(got.Data, v.Data) || got.Deleted != v.Deleted || got.KeyID != v.KeyID {
			t.Errorf("after reopen, VRead(%s/%s/%d) = %+v, %v; want %+v", v.Type, v.ID, v.Version, got, err, v)
		}
	}
	if got, err := db.Read(ctx, "Patient", "9"); err != nil || !got.Deleted {
		t.Errorf("after reopen, Read(Patient/9) = %+v, %v; want the deletion", got, err)
	}
	ids, err := db.List(ctx, store.ListQuery{Type: "Patient", Tokens: []store.Token{{1}}})
	if want := []string{"1", "3", "5", "7"}; err != nil || !equal(ids, want) {
		t.Errorf("after reopen, List = %q, %v; want %q", ids, err, want)
	}
	if hist, err := db.History(ctx, store.HistoryQuery{}); err != nil || len(hist) != len(vs) {
		t.Errorf("after reopen, History returned %d versions, %v; want %d", len(hist), err, len(vs))
	}
	if id, w, err := db.Keys().WrappedKey(ctx, "Patient/1"); err != nil || id != keyID || string(w) != "wrapped" {
		t.Errorf("after reopen, WrappedKey = %d, %q, %v", id, w, err)
	}
	if got, err := db.AuthTokenByHash(ctx, []byte("hash")); err != nil || got.ID != "t1" || !got.Expires.Equal(tok.Expires) {
		t.Errorf("after reopen, AuthTokenByHash = %+v, %v", got, err)
	}
	// Seq and key ids go on from where they were.
	v := &store.Version{Type: "Patient", ID: "new", Version: 1, Updated: when}
	if err := db.Update(ctx, func(tx store.Tx) error {
		if err := tx.Put(ctx, v, nil); err != nil {
			return err
		}
		id, err := tx.PutWrappedKey(ctx, "Patient/2", []byte("w"))
		if err == nil && id <= keyID {
			t.Errorf("key id after reopen = %d, want more than %d", id, keyID)
		}
		return err
	}); err != nil {
		t.Fatal(err)
	}
	if v.Seq <= vs[len(vs)-1].Seq {
		t.Errorf("Seq after reopen = %d, want more than %d", v.Seq, vs[len(vs)-1].Seq)
	}
}

func equal(a, b []string) bool { return strings.Join(a, "\x00") == strings.Join(b, "\x00") }

func TestPutRejects(t *testing.T) {
	ctx := context.Background()
	db := openTemp(t, Options{})
	defer db.Close()
	bad := []struct {
		name   string
		v      *store.Version
		tokens []store.Token
	}{
		{"deletion with tokens", &store.Version{Type: "Patient", ID: "a", Version: 1, Deleted: true}, []store.Token{{1}}},
		{"no type", &store.Version{ID: "a", Version: 1}, nil},
		{"no id", &store.Version{Type: "Patient", Version: 1}, nil},
	}
	err := db.Update(ctx, func(tx store.Tx) error {
		for _, b := range bad {
			if err := tx.Put(ctx, b.v, &store.Index{Tokens: b.tokens}); err == nil || errors.Is(err, store.ErrConflict) {
				t.Errorf("Put(%s) = %v, want an error other than ErrConflict", b.name, err)
			}
		}
		// Those were refused before writing anything, and so were
		// conflicts: the transaction goes on.
		if err := tx.Put(ctx, &store.Version{Type: "Patient", ID: "a", Version: 2}, nil); !errors.Is(err, store.ErrConflict) {
			t.Errorf("Put(version 2 of a new resource) = %v, want ErrConflict", err)
		}
		return tx.Put(ctx, &store.Version{Type: "Patient", ID: "a", Version: 1}, nil)
	})
	if err != nil {
		t.Fatalf("Update = %v", err)
	}
	if v, err := db.Read(ctx, "Patient", "a"); err != nil || v.Version != 1 {
		t.Errorf("Read(Patient/a) = %+v, %v", v, err)
	}
}

func TestUpdatePanics(t *testing.T) {
	ctx := context.Background()
	db := openTemp(t, Options{})
	defer db.Close()
	func() {
		defer func() {
			if recover() == nil {
				t.Errorf("Update did not pass on the panic of fn")
			}
		}()
		db.Update(ctx, func(tx store.Tx) error {
			if err := tx.Put(ctx, &store.Version{Type: "Patient", ID: "a", Version: 1}, nil); err != nil {
				return err
			}
			panic("fn broke")
		})
	}()
	if _, err := db.Read(ctx, "Patient", "a"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("Read after a panicking Update = %v, want ErrNotFound", err)
	}
	// The writer connection was given back.
	if err := db.Update(ctx, func(tx store.Tx) error {
		return tx.Put(ctx, &store.Version{Type: "Patient", ID: "a", Version: 1}, nil)
	}); err != nil {
		t.Errorf("Update after a panicking Update = %v", err)
	}
}

func TestUpdateWaitsHonouringContext(t *testing.T) {
	db := openTemp(t, Options{})
	defer db.Close()
	started, release := make(chan struct{}), make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		db.Update(context.Background(), func(tx store.Tx) error {
			close(started)
			<-release
			return nil
		})
	})
	<-started
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	err := db.Update(ctx, func(tx store.Tx) error { return nil })
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Update while another runs, deadline passing = %v, want DeadlineExceeded", err)
	}
	// Reads go on while a write transaction is open.
	if _, err := db.Read(context.Background(), "Patient", "a"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("Read during an Update = %v, want ErrNotFound", err)
	}
	close(release)
	wg.Wait()
}

func TestDSN(t *testing.T) {
	for _, c := range []struct{ path, want string }{
		{"/data/ehrvault.db", "file:/data/ehrvault.db?mode=ro"},
		{"/da?ta/e#v%.db", "file:/da%3fta/e%23v%25.db?mode=ro"},
	} {
		if got := dsn(c.path, map[string][]string{"mode": {"ro"}}); got != c.want {
			t.Errorf("dsn(%q) = %q, want %q", c.path, got, c.want)
		}
	}
	// Such a path works.
	dir := filepath.Join(t.TempDir(), "odd ?#% dir")
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "e?#%.db")
	db, err := Open(context.Background(), path, Options{Create: true})
	if err != nil {
		t.Fatalf("Open(%q) = %v", path, err)
	}
	db.Close()
	if _, err := os.Stat(path); err != nil {
		t.Errorf("database not at %q: %v", path, err)
	}
}

// cpuTime returns the CPU time the process has used, in user and kernel
// mode, on all threads.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// reportCPU reports the CPU time per operation since start. On a shared
// machine it varies less than the wall-clock rates, which other processes
// slow down.
func reportCPU(b *testing.B, start time.Duration) {
	b.ReportMetric(float64(cpuTime()-start)/float64(time.Microsecond)/float64(b.N), "cpu-µs/op")
}

// benchData is random bytes that versions take their Data from.
var benchData = func() []byte {
	b := make([]byte, 8<<20)
	r := rand.NewChaCha8([32]byte{1})
	r.Read(b)
	return b
}()

var benchTypes = []string{"Observation", "Observation", "Observation", "Observation", "Encounter", "Condition", "Procedure", "Patient"}

// benchVersion returns the i-th version of the benchmarks: a new resource
// with a random row id, 4 KiB of random data and 5 tokens (3 its own, 2 shared
// with many others, like a gender or a status).
func benchVersion(r *rand.Rand, i int) (*store.Version, []store.Token) {
	var idb [16]byte
	binary.LittleEndian.PutUint64(idb[:], r.Uint64())
	binary.LittleEndian.PutUint64(idb[8:], r.Uint64())
	off := r.IntN(len(benchData) - 4096)
	v := &store.Version{
		Type:    benchTypes[i%len(benchTypes)],
		ID:      hex.EncodeToString(idb[:]), // a row id: 128 bits of a keyed hash
		Version: 1,
		Updated: time.UnixMicro(1700000000000000 + int64(i)).UTC(),
		KeyID:   int64(i%1000 + 1),
		Data:    benchData[off : off+4096],
	}
	tokens := make([]store.Token, 5)
	for j := range 3 {
		tk := make([]byte, 32)
		copy(tk, idb[:])
		tk[16] = byte(j)
		tokens[j] = tk
	}
	for j := 3; j < 5; j++ {
		tk := make([]byte, 32)
		tk[0] = byte(j)
		tk[1] = byte(r.IntN(20))
		tokens[j] = tk
	}
	return v, tokens
}

// BenchmarkPut writes new resources in Updates of 250 versions each, as an
// import does.
func BenchmarkPut(b *testing.B) {
	for _, mode := range []string{"full", "normal"} {
		b.Run("sync="+mode, func(b *testing.B) {
			ctx := context.Background()
			db := openTemp(b, Options{Synchronous: mode})
			defer db.Close()
			r := rand.New(rand.NewPCG(1, 2))
			const batch = 250
			b.SetBytes(4096)
			cpu := cpuTime()
			b.ResetTimer()
			for i := 0; i < b.N; i += batch {
				n := min(batch, b.N-i)
				err := db.Update(ctx, func(tx store.Tx) error {
					for j := range n {
						v, tokens := benchVersion(r, i+j)
						if err := tx.Put(ctx, v, &store.Index{Tokens: tokens}); err != nil {
							return err
						}
					}
					return nil
				})
				if err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "versions/s")
			reportCPU(b, cpu)
		})
	}
}

// readFixture is the database BenchmarkRead reads: built once per test
// binary, because it takes seconds.
var readFixture struct {
	once sync.Once
	dir  string
	path string
	keys []struct{ typ, id string }
	err  error
}

const readFixtureSize = 100000

func buildReadFixture() {
	f := &readFixture
	f.dir, f.err = os.MkdirTemp("", "ehrvault-bench-")
	if f.err != nil {
		return
	}
	f.path = filepath.Join(f.dir, "ehrvault.db")
	ctx := context.Background()
	db, err := Open(ctx, f.path, Options{Create: true, Synchronous: "normal"})
	if err != nil {
		f.err = err
		return
	}
	r := rand.New(rand.NewPCG(3, 4))
	for i := 0; i < readFixtureSize; i += 1000 {
		f.err = db.Update(ctx, func(tx store.Tx) error {
			for j := range 1000 {
				v, tokens := benchVersion(r, i+j)
				if err := tx.Put(ctx, v, &store.Index{Tokens: tokens}); err != nil {
					return err
				}
				f.keys = append(f.keys, struct{ typ, id string }{v.Type, v.ID})
			}
			return nil
		})
		if f.err != nil {
			db.Close()
			return
		}
	}
	f.err = errors.Join(db.Checkpoint(ctx), db.Close())
}

// BenchmarkRead reads random resources of a 100,000-resource database from
// parallel goroutines.
func BenchmarkRead(b *testing.B) {
	readFixture.once.Do(buildReadFixture)
	if readFixture.err != nil {
		b.Fatal(readFixture.err)
	}
	ctx := context.Background()
	db, err := Open(ctx, readFixture.path, Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer db.Close()
	keys := readFixture.keys
	var seed sync.Mutex
	next := uint64(0)
	cpu := cpuTime()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		seed.Lock()
		next++
		r := rand.New(rand.NewPCG(next, 5))
		seed.Unlock()
		for pb.Next() {
			k := keys[r.IntN(len(keys))]
			v, err := db.Read(ctx, k.typ, k.id)
			if err != nil {
				b.Error(err)
				return
			}
			if len(v.Data) != 4096 {
				b.Errorf("Read returned %d bytes", len(v.Data))
				return
			}
		}
	})
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "reads/s")
	reportCPU(b, cpu)
}

// Readers that never pause (two whose reads overlap, always one in a
// transaction) keep SQLite's own checkpoints from restarting the log;
// WALLimit bounds it anyway.
func TestWALStaysBounded(t *testing.T) {
	for _, tc := range []struct {
		name  string
		limit int64
		bound bool
	}{
		{"limited", 2 << 20, true},
		{"sqlite alone", 1 << 40, false}, // shows that the readers do starve it
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := context.Background()
			path := filepath.Join(t.TempDir(), "ehrvault.db")
			db, err := Open(ctx, path, Options{Create: true, Synchronous: "normal", WALLimit: tc.limit})
			if err != nil {
				t.Fatal(err)
			}
			defer db.Close()
			stop := make(chan struct{})
			var wg sync.WaitGroup
			for r := range 2 {
				wg.Add(1)
				go func() {
					defer wg.Done()
					time.Sleep(time.Duration(r) * time.Millisecond)
					for {
						select {
						case <-stop:
							return
						default:
						}
						tx, err := db.r.BeginTx(ctx, &sql.TxOptions{ReadOnly: true})
						if err != nil {
							continue
						}
						var n int
						tx.QueryRowContext(ctx, "SELECT count(*) FROM versions").Scan(&n)
						time.Sleep(2 * time.Millisecond) // overlap the other reader
						tx.Rollback()
					}
				}()
			}
			big := bytes.Repeat([]byte{7}, 16<<10)
			var most int64
			for i := range 600 {
				err := db.Update(ctx, func(tx store.Tx) error {
					return tx.Put(ctx, &store.Version{Type: "Patient", ID: fmt.Sprint(i), Version: 1, Updated: time.Now().UTC().Truncate(time.Microsecond), KeyID: 1, Data: big}, nil)
				})
				if err != nil {
					t.Fatal(err)
				}
				if fi, err := os.Stat(path + "-wal"); err == nil && fi.Size() > most {
					most = fi.Size()
				}
			}
			close(stop)
			wg.Wait()
			// 600 versions of 16 KiB write about 10 MiB of pages, and the log
			// holds them several times over unless it restarts.
			t.Logf("largest log: %d bytes", most)
			if tc.bound && most > tc.limit+14<<20 { // a look every 64 commits, and a checkpoint may wait out the busy timeout once
				t.Errorf("the log reached %d bytes with a limit of %d", most, tc.limit)
			}
			if !tc.bound && most < 20<<20 {
				t.Errorf("without a limit the log stayed at %d bytes: the readers did not starve SQLite's checkpoints, so the limited case proves nothing", most)
			}
		})
	}
}
