package audit

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"

	"github.com/ehrvault/ehrvault/internal/keyring"
)

// ErrClosed is returned by Append after Close.
var ErrClosed = errors.New("audit: log closed")

// ErrUnavailable wraps every failure to make an entry durable. The API
// answers it with 503 and no data: nothing leaves unaudited.
var ErrUnavailable = errors.New("audit: the log cannot be written")

// Publisher receives each new signed checkpoint, so that a witness outside
// the server keeps it (see FilePublisher, WebhookPublisher).
type Publisher interface {
	// Publish delivers one signed checkpoint (a signed note).
	Publish(ctx context.Context, checkpoint []byte) error
	// String names the destination for logs (never a secret).
	String() string
}

// Config holds what a Log is built from.
type Config struct {
	// Path is the log file (audit.log in the data directory). The
	// checkpoints go in a second file beside it (CheckpointsPath), so
	// that cutting the end off one shows in the other.
	Path string
	// Create makes a new log; Open then refuses existing files.
	Create bool
	// Sealer seals entries (keyring.PurposeAuditSeal).
	Sealer *keyring.Sealer
	// MAC makes the keyed hashes of identifying values
	// (keyring.PurposeAuditIndex).
	MAC *keyring.MAC
	// Signer signs checkpoints; VerifierKey is its public key in note
	// format. Origin is the checkpoints' first line, naming the log.
	Signer      note.Signer
	VerifierKey string
	Origin      string
	// CheckpointEvery and CheckpointInterval say when to sign: after that
	// many new entries, or that long after the first unsigned one (1000
	// and 10 s if zero).
	CheckpointEvery    int64
	CheckpointInterval time.Duration
	// FlushEvery, when not zero, acknowledges an entry once it is written
	// to the file (in the operating system's hands: it survives a crash of
	// the server, not of the machine) and flushes the file to disk at most
	// that long after; zero flushes every batch before acknowledging it.
	FlushEvery time.Duration
	Publish    []Publisher
	// Now is the clock entries are stamped by (time.Now if nil).
	Now func() time.Time
	Log *slog.Logger
}

// CheckpointsPath is where the checkpoints of the log at path are.
func CheckpointsPath(path string) string {
	return strings.TrimSuffix(path, filepath.Ext(path)) + ".checkpoints"
}

// Log is an append-only, tamper-evident audit log. It is safe for
// concurrent use; concurrent Appends share a write and a disk flush.
type Log struct {
	f, cf    *os.File // the entries, the checkpoints
	sealer   *keyring.Sealer
	mac      *keyring.MAC
	signer   note.Signer
	vkey     string
	origin   string
	every    int64
	interval time.Duration
	flush    time.Duration // Config.FlushEvery
	publish  []Publisher
	now      func() time.Time
	log      *slog.Logger

	// Appends queue their entries; whoever holds wmu writes every entry
	// queued (flat combining), so that concurrent appends share one write
	// without handing over to another goroutine.
	qmu    sync.Mutex
	queue  []*pending
	wmu    sync.Mutex // held while writing entries or computing a checkpoint
	closed bool       // under wmu

	// The group flush: flushed is how much of f is known to be on disk;
	// one appender flushes for all who wait (fcond).
	fmu      sync.Mutex
	fcond    *sync.Cond
	flushed  int64
	flushing bool
	flushErr error // the last flush failed; cleared by one that works

	cmu     sync.Mutex    // held while writing a checkpoint
	wake    chan struct{} // tells the keeper a checkpoint may be due
	closing chan struct{} // closed by Close
	stopped chan struct{} // closed when the keeper is done
	once    sync.Once

	// mu guards what readers share with the writer.
	mu      sync.RWMutex
	end     int64   // bytes of complete records in f
	offsets []int64 // offset of every entry's record in f
	cend    int64   // bytes of complete records in cf
	latest  *Checkpoint
	idx     *index // what Find searches

	// Under wmu.
	cache map[int64]tlog.Hash // recent tree hashes, by stored index
	first time.Time           // when the oldest unsigned entry was appended

	commits, appended, flushes atomic.Int64
	pubWG                      sync.WaitGroup
}

// pending is one Append waiting for its entry to be written.
type pending struct {
	leaf   []byte
	micros int64
	facts  []string // what the entry is found by, for the index
	// Set by whoever writes it, under wmu.
	written bool
	index   int64
	end     int64 // the file's end after the entry's batch
	err     error
}

// maxBatch bounds how many entries share one write.
const maxBatch = 1024

// Open opens (or, with Config.Create, creates) the log and starts its
// writer. Close it to sign a last checkpoint and stop.
func Open(ctx context.Context, c Config) (*Log, error) {
	if c.Sealer == nil || c.MAC == nil || c.Signer == nil || c.VerifierKey == "" || c.Origin == "" {
		return nil, errors.New("audit: Sealer, MAC, Signer, VerifierKey and Origin are required")
	}
	if _, err := note.NewVerifier(c.VerifierKey); err != nil {
		return nil, fmt.Errorf("audit: verifier key: %w", err)
	}
	l := &Log{
		sealer: c.Sealer, mac: c.MAC, signer: c.Signer, vkey: c.VerifierKey, origin: c.Origin,
		every: c.CheckpointEvery, interval: c.CheckpointInterval, flush: c.FlushEvery, publish: c.Publish, now: c.Now, log: c.Log,
		wake: make(chan struct{}, 1), closing: make(chan struct{}), stopped: make(chan struct{}),
		cache: map[int64]tlog.Hash{}, idx: newIndex(),
	}
	l.fcond = sync.NewCond(&l.fmu)
	if l.every <= 0 {
		l.every = 1000
	}
	if l.interval <= 0 {
		l.interval = 10 * time.Second
	}
	if l.now == nil {
		l.now = time.Now
	}
	if l.log == nil {
		l.log = slog.New(slog.DiscardHandler)
	}
	var err error
	if l.f, err = openFile(c.Path, c.Create, headerPayload(c.Origin, c.VerifierKey)); err != nil {
		return nil, err
	}
	if l.cf, err = openFile(CheckpointsPath(c.Path), c.Create, headerPayload(c.Origin, c.VerifierKey)); err != nil {
		l.f.Close()
		if c.Create {
			os.Remove(c.Path)
		}
		return nil, err
	}
	if err := l.lock(); err != nil {
		l.closeFiles()
		return nil, err
	}
	start := time.Now()
	err = l.load(ctx)
	l.unlock()
	if err != nil {
		l.closeFiles()
		return nil, err
	}
	if n := len(l.offsets); n > 100000 {
		l.log.Info("audit log indexed", "entries", n, "ms", time.Since(start).Milliseconds())
	}
	l.flushed = l.end
	go l.keep()
	return l, nil
}

// openFile opens (or creates, with its header record) one file of the log.
func openFile(path string, create bool, header []byte) (*os.File, error) {
	if !create {
		f, err := os.OpenFile(path, os.O_RDWR, 0)
		if err != nil {
			return nil, fmt.Errorf("open audit log: %w", err)
		}
		return f, nil
	}
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return nil, fmt.Errorf("create audit log: %w", err)
	}
	if _, err := f.Write(appendRecord(nil, kindHeader, header)); err != nil {
		f.Close()
		os.Remove(path)
		return nil, fmt.Errorf("create audit log: %w", err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		os.Remove(path)
		return nil, fmt.Errorf("create audit log: %w", err)
	}
	if d, err := os.Open(filepath.Dir(path)); err == nil {
		d.Sync()
		d.Close()
	}
	return f, nil
}

func (l *Log) closeFiles() {
	l.f.Close()
	l.cf.Close()
}

// lock takes the exclusive lock every appender holds: the server and any
// command beside it append to the same files in turn. flock(2) excludes
// other processes only; within this one, wmu excludes.
func (l *Log) lock() error {
	for {
		err := syscall.Flock(int(l.f.Fd()), syscall.LOCK_EX)
		if !errors.Is(err, syscall.EINTR) {
			return err
		}
	}
}

func (l *Log) unlock() { syscall.Flock(int(l.f.Fd()), syscall.LOCK_UN) }

// load reads both files from the start, with the lock held.
func (l *Log) load(ctx context.Context) error {
	for _, f := range []*os.File{l.f, l.cf} {
		r, _, err := readRecord(f, 0, fileSize(f), nil)
		if err != nil || r.kind != kindHeader {
			return fmt.Errorf("audit: %s: not an ehrvault audit log, or its header is damaged", filepath.Base(f.Name()))
		}
		origin, vkey, err := parseHeader(r.payload)
		if err != nil {
			return fmt.Errorf("audit: %s: %w", filepath.Base(f.Name()), err)
		}
		if origin != l.origin || vkey != l.vkey {
			return fmt.Errorf("audit: %s belongs to another data directory (its origin or key differs)", filepath.Base(f.Name()))
		}
		if f == l.f {
			l.end = r.size
		} else {
			l.cend = r.size
		}
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.ingest(ctx, true)
}

func fileSize(f *os.File) int64 {
	fi, err := f.Stat()
	if err != nil {
		return 0
	}
	return fi.Size()
}

// ingest reads the records appended to either file since it last looked
// (by this process, or another one), with l.mu held. locked says this
// process holds the append lock, so that an incomplete last record is a
// crash's leftover, cut off; otherwise it may be a write in progress, and
// ingest stops before it.
func (l *Log) ingest(ctx context.Context, locked bool) error {
	size := fileSize(l.f)
	var buf []byte
	for l.end < size {
		r, b, err := readRecord(l.f, l.end, size, buf)
		buf = b
		if errors.Is(err, errTorn) {
			if !locked {
				break
			}
			l.log.Warn("audit log: cutting off an incomplete last record (a write a crash interrupted, never acknowledged)", "bytes", size-l.end)
			if err := l.f.Truncate(l.end); err != nil {
				return fmt.Errorf("audit: %w", err)
			}
			l.f.Sync()
			break
		}
		if err != nil {
			return fmt.Errorf("audit: %s: %w (run ehrvault audit verify)", filepath.Base(l.f.Name()), err)
		}
		if r.kind != kindEntry {
			return fmt.Errorf("audit: a record of kind %q among the entries at byte %d (run ehrvault audit verify)", r.kind, r.off)
		}
		pe, err := parseEntry(r.payload)
		i := int64(len(l.offsets))
		if err != nil || pe.index != i {
			return fmt.Errorf("audit: entry %d is missing or misplaced at byte %d (run ehrvault audit verify)", i, r.off)
		}
		leaf, err := l.sealer.Open(pe.sealed, entryAD(i))
		if err != nil {
			return fmt.Errorf("audit: entry %d does not open: altered or damaged (run ehrvault audit verify)", i)
		}
		e, err := Decode(leaf)
		if err != nil {
			return fmt.Errorf("audit: entry %d: %w", i, err)
		}
		l.offsets = append(l.offsets, r.off)
		l.idx.add(i, e.Time.UnixMicro(), facts(e))
		l.end += r.size
		if i%4096 == 0 && ctx.Err() != nil {
			return ctx.Err()
		}
	}
	csize := fileSize(l.cf)
	for l.cend < csize {
		r, b, err := readRecord(l.cf, l.cend, csize, buf)
		buf = b
		if errors.Is(err, errTorn) {
			if locked {
				l.cf.Truncate(l.cend)
				l.cf.Sync()
			}
			break
		}
		if err != nil || r.kind != kindCheckpoint {
			return fmt.Errorf("audit: %s is damaged at byte %d (run ehrvault audit verify)", filepath.Base(l.cf.Name()), l.cend)
		}
		cp, err := ParseCheckpoint(r.payload, l.vkey)
		if err != nil {
			return fmt.Errorf("audit: the checkpoint at byte %d of %s: %w (run ehrvault audit verify)", r.off, filepath.Base(l.cf.Name()), err)
		}
		cp.Note = append([]byte(nil), cp.Note...)
		l.latest = cp
		l.cend += r.size
	}
	return nil
}

// refresh reads what another process appended since, if anything.
func (l *Log) refresh(ctx context.Context) error {
	l.mu.RLock()
	stale := fileSize(l.f) > l.end || fileSize(l.cf) > l.cend
	l.mu.RUnlock()
	if !stale {
		return nil
	}
	// This process's own appends grow the file before they record its new
	// end: wmu keeps them from being read in twice.
	l.wmu.Lock()
	defer l.wmu.Unlock()
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.ingest(ctx, false)
}

// VerifierKey returns the public key that verifies the log's checkpoints,
// in note format.
func (l *Log) VerifierKey() string { return l.vkey }

// Origin returns the log's origin line.
func (l *Log) Origin() string { return l.origin }

// Hash returns the keyed hash that stands for an identifying value in an
// entry ("h:" and 32 hex digits). An auditor who knows a value finds the
// entries that hold it by hashing it the same way (ehrvault audit hash).
func (l *Log) Hash(value string) string {
	s := l.mac.Sum([]byte("value\x00" + value))
	return "h:" + hex.EncodeToString(s[:16])
}

// Append makes e durable as the next entry of the log and returns its
// index. It returns only once the entry is written and flushed to disk
// (with Config.FlushEvery: written), sharing the write and the flush with
// the Appends in flight; an error wraps ErrUnavailable (or is ErrClosed),
// and then the event must not go ahead. Append sets e.Time and e.Request
// if they are empty.
func (l *Log) Append(ctx context.Context, e *Entry) (int64, error) {
	if e.Time.IsZero() {
		e.Time = l.now()
	}
	e.Time = e.Time.UTC().Truncate(time.Microsecond)
	if e.Request == "" {
		var b [12]byte
		rand.Read(b[:])
		e.Request = "r-" + hex.EncodeToString(b[:])
	}
	if err := ctx.Err(); err != nil {
		return 0, fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	p := &pending{leaf: e.Encode(), micros: e.Time.UnixMicro(), facts: facts(e)}
	l.qmu.Lock()
	l.queue = append(l.queue, p)
	l.qmu.Unlock()
	// Whoever holds wmu writes everything queued: once this goroutine
	// holds it, its entry is written, by itself or by the holder before.
	l.wmu.Lock()
	if !p.written {
		l.writeQueued()
	}
	l.wmu.Unlock()
	if p.err != nil {
		return 0, p.err
	}
	if l.flush == 0 {
		if err := l.flushTo(p.end); err != nil {
			return 0, fmt.Errorf("%w: %w", ErrUnavailable, err)
		}
	}
	select {
	case l.wake <- struct{}{}:
	default:
	}
	return p.index, nil
}

// Stats says how many entries the log has written since Open, and in how
// many flushes to disk (or, with FlushEvery, writes): entries/flushes is
// how well appends share.
func (l *Log) Stats() (entries, flushes int64) {
	if l.flush > 0 {
		return l.appended.Load(), l.commits.Load()
	}
	return l.appended.Load(), l.flushes.Load()
}

// writeQueued writes every queued entry in one write, with wmu held.
func (l *Log) writeQueued() {
	l.qmu.Lock()
	batch := l.queue
	l.queue = nil
	l.qmu.Unlock()
	if len(batch) == 0 {
		return
	}
	var start, end int64
	var err error
	if l.closed {
		err = ErrClosed
	} else {
		start, end, err = l.commit(batch)
		if err != nil {
			l.log.Error("audit append failed; requests are refused until it works", "entries", len(batch), "err", err)
			err = fmt.Errorf("%w: %w", ErrUnavailable, err)
		}
	}
	for k, p := range batch {
		p.written, p.index, p.end, p.err = true, start+int64(k), end, err
	}
	if err == nil {
		if l.first.IsZero() {
			l.first = time.Now()
		}
		l.commits.Add(1)
		l.appended.Add(int64(len(batch)))
	}
}

// flushTo returns once the file is on disk at least up to end: it flushes
// itself, or waits for the flush in progress and then flushes again if
// that one started too early. One fdatasync serves every appender waiting.
func (l *Log) flushTo(end int64) error {
	l.fmu.Lock()
	defer l.fmu.Unlock()
	for l.flushed < end {
		if l.flushing {
			l.fcond.Wait()
			continue
		}
		l.flushing = true
		l.mu.RLock()
		target := l.end
		l.mu.RUnlock()
		l.fmu.Unlock()
		err := datasync(l.f)
		l.fmu.Lock()
		l.flushing = false
		if err != nil {
			// Nothing written since the last good flush is known to be
			// on disk: everyone waiting is refused.
			l.flushErr = err
			l.fcond.Broadcast()
			return err
		}
		l.flushed, l.flushErr = max(l.flushed, target), nil
		l.flushes.Add(1)
		l.fcond.Broadcast()
	}
	return nil
}

// keep signs checkpoints when due (and, with FlushEvery, flushes), until
// Close.
func (l *Log) keep() {
	defer close(l.stopped)
	tick := time.NewTicker(l.interval / 4)
	defer tick.Stop()
	var flushes <-chan time.Time
	if l.flush > 0 {
		ft := time.NewTicker(l.flush)
		defer ft.Stop()
		flushes = ft.C
	}
	for {
		select {
		case <-tick.C:
			l.maybeSign(false)
		case <-l.wake:
			l.maybeSign(false)
		case <-flushes:
			l.mu.RLock()
			end := l.end
			l.mu.RUnlock()
			if err := l.flushTo(end); err != nil {
				l.log.Error("audit log flush failed", "err", err)
			}
		case <-l.closing:
			l.mu.RLock()
			end := l.end
			l.mu.RUnlock()
			l.flushTo(end)
			l.maybeSign(true)
			return
		}
	}
}

// entryAD is the associated data of entry i's seal: its place in the log.
func entryAD(i int64) []byte {
	b := []byte("ehrvault audit entry v1\x00\x00\x00\x00\x00\x00\x00\x00\x00")
	binary.BigEndian.PutUint64(b[len(b)-8:], uint64(i))
	return b
}

// commit appends a batch to the file in one write, with wmu held, and
// returns the index of its first entry and the file's end after it.
func (l *Log) commit(batch []*pending) (int64, int64, error) {
	if err := l.lock(); err != nil {
		return 0, 0, err
	}
	defer l.unlock()
	if err := l.refreshLocked(); err != nil {
		return 0, 0, err
	}
	l.mu.RLock()
	n, end := int64(len(l.offsets)), l.end
	l.mu.RUnlock()
	hr := &hashReader{l: l, cache: l.cache}
	buf := make([]byte, 0, len(batch)*512)
	offs := make([]int64, len(batch))
	for k, p := range batch {
		i := n + int64(k)
		hashes, err := tlog.StoredHashes(i, p.leaf, hr)
		if err != nil {
			clear(l.cache)
			return 0, 0, fmt.Errorf("tree hashes of entry %d: %w", i, err)
		}
		base := tlog.StoredHashIndex(0, i)
		for j, h := range hashes {
			l.cache[base+int64(j)] = h
		}
		offs[k] = end + int64(len(buf))
		buf = appendRecord(buf, kindEntry, entryPayload(i, hashes, l.sealer.Seal(p.leaf, entryAD(i)))...)
	}
	if _, err := l.f.WriteAt(buf, end); err != nil {
		l.f.Truncate(end) // leave no part of a batch that failed
		clear(l.cache)
		return 0, 0, err
	}
	l.mu.Lock()
	l.offsets = append(l.offsets, offs...)
	l.end = end + int64(len(buf))
	l.mu.Unlock()
	for k, p := range batch {
		l.idx.add(n+int64(k), p.micros, p.facts)
	}
	if len(l.cache) > 1<<16 {
		// Only the hashes on the tree's right edge are read again; the
		// file has them all.
		clear(l.cache)
	}
	return n, end + int64(len(buf)), nil
}

// datasync flushes f's data and what is needed to read it back (its
// size) to disk: fdatasync(2), a third cheaper than fsync here (236 µs
// against 341 µs for an 8 KB append).
func datasync(f *os.File) error {
	for {
		err := syscall.Fdatasync(int(f.Fd()))
		if !errors.Is(err, syscall.EINTR) {
			return err
		}
	}
}

// refreshLocked reads what another appender wrote, with the lock held.
func (l *Log) refreshLocked() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if fileSize(l.f) == l.end && fileSize(l.cf) == l.cend {
		return nil
	}
	return l.ingest(context.Background(), true)
}

// hashReader reads stored tree hashes (tlog.HashReader): the hash with
// stored index x, at level L with number m, was stored by entry
// (m+1)<<L - 1, as the L-th of its hashes.
type hashReader struct {
	l     *Log
	cache map[int64]tlog.Hash // may be nil
}

func (h *hashReader) ReadHashes(indexes []int64) ([]tlog.Hash, error) {
	out := make([]tlog.Hash, len(indexes))
	for k, x := range indexes {
		if hh, ok := h.cache[x]; ok {
			out[k] = hh
			continue
		}
		level, m := tlog.SplitStoredHashIndex(x)
		rec := (m+1)<<level - 1
		h.l.mu.RLock()
		if rec >= int64(len(h.l.offsets)) {
			h.l.mu.RUnlock()
			return nil, fmt.Errorf("read tree hash %d: entry %d is not in the log", x, rec)
		}
		off := h.l.offsets[rec]
		h.l.mu.RUnlock()
		if _, err := h.l.f.ReadAt(out[k][:], off+recordHead+entryHead+int64(level)*tlog.HashSize); err != nil {
			return nil, fmt.Errorf("read tree hash %d (entry %d): %w", x, rec, err)
		}
		if h.cache != nil {
			h.cache[x] = out[k]
		}
	}
	return out, nil
}

// maybeSign signs a checkpoint when enough entries or time passed since
// the last one (or, with final, whenever the log grew).
func (l *Log) maybeSign(final bool) {
	l.mu.RLock()
	grown := int64(len(l.offsets))
	if l.latest != nil {
		grown -= l.latest.Size
	}
	l.mu.RUnlock()
	if grown <= 0 {
		return
	}
	l.wmu.Lock()
	first := l.first
	l.wmu.Unlock()
	if !final && grown < l.every && (first.IsZero() || time.Since(first) < l.interval) {
		return
	}
	if _, err := l.sign(); err != nil {
		l.log.Error("audit checkpoint failed", "err", err)
	}
}

// Checkpoint is a signed statement of the log's size and root hash.
type Checkpoint struct {
	Origin string
	Size   int64
	Root   tlog.Hash
	Prev   int64 // size of the checkpoint before; 0 for the first
	Time   time.Time
	Note   []byte // the signed note as stored and published
}

// sign signs a checkpoint of the whole log now, stores and publishes it.
// Appends go on meanwhile, but for the moment the root is computed.
func (l *Log) sign() (*Checkpoint, error) {
	l.cmu.Lock()
	defer l.cmu.Unlock()
	// The size and root, consistent with what is written.
	l.wmu.Lock()
	if err := l.lock(); err != nil {
		l.wmu.Unlock()
		return nil, err
	}
	err := l.refreshLocked()
	l.mu.RLock()
	n, end, prev, cend := int64(len(l.offsets)), l.end, int64(0), l.cend
	if l.latest != nil {
		prev = l.latest.Size
	}
	l.mu.RUnlock()
	var root tlog.Hash
	if err == nil && n > prev {
		root, err = tlog.TreeHash(n, &hashReader{l: l, cache: l.cache})
	}
	l.first = time.Time{}
	l.unlock()
	l.wmu.Unlock()
	if err != nil || n <= prev {
		return nil, err
	}
	// A checkpoint never covers entries that are not on disk.
	if err := l.flushTo(end); err != nil {
		return nil, err
	}
	cp := &Checkpoint{Origin: l.origin, Size: n, Root: root, Prev: prev, Time: l.now().UTC().Truncate(time.Second)}
	msg, err := note.Sign(&note.Note{Text: cp.body()}, l.signer)
	if err != nil {
		return nil, err
	}
	cp.Note = msg
	rec := appendRecord(nil, kindCheckpoint, msg)
	// Another process may have signed meanwhile: take the locks and look.
	// (flock does not exclude this process's own goroutines: wmu does.)
	l.wmu.Lock()
	defer l.wmu.Unlock()
	if err := l.lock(); err != nil {
		return nil, err
	}
	defer l.unlock()
	l.mu.Lock()
	if err := l.ingest(context.Background(), true); err != nil {
		l.mu.Unlock()
		return nil, err
	}
	if l.latest != nil && l.latest.Size >= n {
		latest := l.latest
		l.mu.Unlock()
		return latest, nil
	}
	cp.Prev = 0
	if l.latest != nil {
		cp.Prev = l.latest.Size
	}
	cend = l.cend
	l.mu.Unlock()
	if cp.Prev != prev { // re-sign naming the right predecessor
		if msg, err = note.Sign(&note.Note{Text: cp.body()}, l.signer); err != nil {
			return nil, err
		}
		cp.Note, rec = msg, appendRecord(nil, kindCheckpoint, msg)
	}
	if _, err := l.cf.WriteAt(rec, cend); err != nil {
		l.cf.Truncate(cend)
		return nil, err
	}
	if err := datasync(l.cf); err != nil {
		l.cf.Truncate(cend)
		return nil, err
	}
	l.mu.Lock()
	l.latest = cp
	l.cend = cend + int64(len(rec))
	l.mu.Unlock()
	for _, p := range l.publish {
		l.pubWG.Add(1)
		go func(p Publisher) {
			defer l.pubWG.Done()
			pctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			if err := p.Publish(pctx, msg); err != nil {
				l.log.Warn("audit checkpoint not published", "to", p.String(), "size", n, "err", err)
			}
		}(p)
	}
	return cp, nil
}

// body is the checkpoint's text (the C2SP tlog-checkpoint format):
//
//	<origin>
//	<size>
//	<root hash, base64>
//	prev <size of the checkpoint before>     (extension lines)
//	time <RFC 3339, UTC>
func (c *Checkpoint) body() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s\n%d\n%s\n", c.Origin, c.Size, base64.StdEncoding.EncodeToString(c.Root[:]))
	fmt.Fprintf(&b, "prev %d\n", c.Prev)
	fmt.Fprintf(&b, "time %s\n", c.Time.Format(time.RFC3339))
	return b.String()
}

// ParseCheckpoint verifies a signed checkpoint with vkey and reads it.
func ParseCheckpoint(msg []byte, vkey string) (*Checkpoint, error) {
	v, err := note.NewVerifier(vkey)
	if err != nil {
		return nil, fmt.Errorf("verifier key: %w", err)
	}
	n, err := note.Open(msg, note.VerifierList(v))
	if err != nil {
		return nil, fmt.Errorf("the checkpoint's signature does not verify: %w", err)
	}
	lines := strings.Split(strings.TrimSuffix(n.Text, "\n"), "\n")
	if len(lines) < 3 {
		return nil, errors.New("malformed checkpoint")
	}
	c := &Checkpoint{Origin: lines[0], Note: msg}
	if c.Size, err = strconv.ParseInt(lines[1], 10, 64); err != nil || c.Size < 0 {
		return nil, errors.New("malformed checkpoint size")
	}
	root, err := base64.StdEncoding.DecodeString(lines[2])
	if err != nil || len(root) != tlog.HashSize {
		return nil, errors.New("malformed checkpoint root")
	}
	copy(c.Root[:], root)
	for _, ext := range lines[3:] {
		k, val, _ := strings.Cut(ext, " ")
		switch k {
		case "prev":
			c.Prev, _ = strconv.ParseInt(val, 10, 64)
		case "time":
			c.Time, _ = time.Parse(time.RFC3339, val)
		}
	}
	return c, nil
}

// Latest returns the newest signed checkpoint, or nil before the first.
func (l *Log) Latest(ctx context.Context) (*Checkpoint, error) {
	if err := l.refresh(ctx); err != nil {
		return nil, err
	}
	l.mu.RLock()
	defer l.mu.RUnlock()
	return l.latest, nil
}

// Sign signs a checkpoint of everything appended so far, unless the
// newest checkpoint already covers it, and returns the newest checkpoint.
func (l *Log) Sign(ctx context.Context) (*Checkpoint, error) {
	select {
	case <-l.closing:
		return nil, ErrClosed
	default:
	}
	if _, err := l.sign(); err != nil {
		return nil, err
	}
	return l.Latest(ctx)
}

// Close stops appends, flushes, signs a last checkpoint, waits for the
// publishers and closes the files.
func (l *Log) Close() error {
	l.once.Do(func() {
		l.wmu.Lock()
		l.closed = true
		l.writeQueued() // appends already queued fail with ErrClosed
		l.wmu.Unlock()
		close(l.closing)
	})
	<-l.stopped
	l.pubWG.Wait()
	return errors.Join(l.f.Close(), l.cf.Close())
}

// Size returns the number of entries in the log.
func (l *Log) Size(ctx context.Context) (int64, error) {
	if err := l.refresh(ctx); err != nil {
		return 0, err
	}
	l.mu.RLock()
	defer l.mu.RUnlock()
	return int64(len(l.offsets)), nil
}

// ReadEntry returns entry i: its canonical bytes (the Merkle leaf) and
// their decoding.
func (l *Log) ReadEntry(ctx context.Context, i int64) ([]byte, *Entry, error) {
	n, err := l.Size(ctx)
	if err != nil {
		return nil, nil, err
	}
	if i < 0 || i >= n {
		return nil, nil, ErrNoEntry
	}
	got, err := l.readEntries(ctx, []int64{i})
	if err != nil {
		return nil, nil, err
	}
	return got[0].Leaf, got[0].Entry, nil
}

// readEntries opens the entries with the given indexes, in order.
func (l *Log) readEntries(ctx context.Context, idxs []int64) ([]Found, error) {
	out := make([]Found, 0, len(idxs))
	var buf []byte
	for _, i := range idxs {
		l.mu.RLock()
		if i < 0 || i >= int64(len(l.offsets)) {
			l.mu.RUnlock()
			return nil, ErrNoEntry
		}
		off, end := l.offsets[i], l.end
		l.mu.RUnlock()
		r, b, err := readRecord(l.f, off, end, buf)
		buf = b
		if err != nil {
			return nil, fmt.Errorf("audit: entry %d: %w", i, err)
		}
		pe, err := parseEntry(r.payload)
		if err != nil || pe.index != i {
			return nil, fmt.Errorf("audit: entry %d is damaged (run ehrvault audit verify)", i)
		}
		leaf, err := l.sealer.Open(pe.sealed, entryAD(i))
		if err != nil {
			return nil, fmt.Errorf("audit: entry %d does not open: altered or damaged (run ehrvault audit verify)", i)
		}
		e, err := Decode(leaf)
		if err != nil {
			return nil, fmt.Errorf("audit: entry %d: %w", i, err)
		}
		out = append(out, Found{Index: i, Leaf: leaf, Entry: e})
	}
	return out, nil
}

// ErrNoEntry is returned for an index past the end of the log.
var ErrNoEntry = errors.New("audit: no such entry")

var _ io.ReaderAt = (*os.File)(nil)
