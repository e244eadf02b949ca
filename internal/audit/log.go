package audit

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
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
	// Path is the audit database file (audit.db in the data directory).
	Path string
	// Create makes a new log; Open then refuses an existing file.
	Create bool
	// Sealer seals entries (keyring.PurposeAuditSeal).
	Sealer *keyring.Sealer
	// MAC makes the keyed hashes of lookups and query values
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
	Publish            []Publisher
	// Now is the clock entries are stamped by (time.Now if nil).
	Now func() time.Time
	Log *slog.Logger
}

// Log is an append-only, tamper-evident audit log. It is safe for
// concurrent use; concurrent Appends share commits.
type Log struct {
	w, r     *sql.DB
	sealer   *keyring.Sealer
	mac      *keyring.MAC
	signer   note.Signer
	verifier note.Verifier
	vkey     string
	origin   string
	every    int64
	interval time.Duration
	publish  []Publisher
	now      func() time.Time
	log      *slog.Logger

	reqs    chan *pending
	signs   chan chan error // Sign's requests, served by the writer
	closing chan struct{}
	stopped chan struct{}
	once    sync.Once

	// Owned by the writer goroutine.
	size   int64
	signed int64 // size of the newest checkpoint
	cache  map[int64]tlog.Hash
	first  time.Time // when the oldest unsigned entry was appended

	commits, appended atomic.Int64
	pubWG             sync.WaitGroup

	idx *index // what Find searches
}

// pending is one Append waiting for its commit.
type pending struct {
	leaf   []byte
	micros int64
	facts  []string // what the entry is found by, for the index
	done   chan result
}

type result struct {
	index int64
	err   error
}

// maxBatch bounds how many entries share one commit.
const maxBatch = 1024

// Open opens (or, with Config.Create, creates) the log and starts its
// writer. Close it to sign a last checkpoint and stop.
func Open(ctx context.Context, c Config) (*Log, error) {
	if c.Sealer == nil || c.MAC == nil || c.Signer == nil || c.VerifierKey == "" || c.Origin == "" {
		return nil, errors.New("audit: Sealer, MAC, Signer, VerifierKey and Origin are required")
	}
	v, err := note.NewVerifier(c.VerifierKey)
	if err != nil {
		return nil, fmt.Errorf("audit: verifier key: %w", err)
	}
	w, r, err := openDB(ctx, c.Path, c.Create, false)
	if err != nil {
		return nil, err
	}
	l := &Log{
		w: w, r: r, sealer: c.Sealer, mac: c.MAC, signer: c.Signer, verifier: v, vkey: c.VerifierKey,
		origin: c.Origin, every: c.CheckpointEvery, interval: c.CheckpointInterval, publish: c.Publish,
		now: c.Now, log: c.Log,
		reqs: make(chan *pending, 4*maxBatch), signs: make(chan chan error), closing: make(chan struct{}), stopped: make(chan struct{}),
		cache: map[int64]tlog.Hash{}, idx: newIndex(),
	}
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
	if err := l.checkMeta(ctx); err != nil {
		w.Close()
		r.Close()
		return nil, err
	}
	if err := w.QueryRowContext(ctx, sizeSQL).Scan(&l.size); err != nil {
		w.Close()
		r.Close()
		return nil, fmt.Errorf("audit: %w", err)
	}
	if err := w.QueryRowContext(ctx, `SELECT coalesce(max(size), 0) FROM checkpoints`).Scan(&l.signed); err != nil {
		w.Close()
		r.Close()
		return nil, fmt.Errorf("audit: %w", err)
	}
	// Build the index from the entries (about 5 µs an entry here).
	start := time.Now()
	if err := l.catchUp(ctx, l.size); err != nil {
		w.Close()
		r.Close()
		return nil, err
	}
	if l.size > 100000 {
		l.log.Info("audit log indexed", "entries", l.size, "ms", time.Since(start).Milliseconds())
	}
	go l.loop()
	return l, nil
}

const sizeSQL = `SELECT coalesce(max(idx) + 1, 0) FROM entries`

// checkMeta records the log's origin and verifier key in a new log, and
// refuses to append to a log of another origin or key.
func (l *Log) checkMeta(ctx context.Context) error {
	want := map[string]string{"origin": l.origin, "verifier": l.vkey}
	for k, v := range want {
		var got string
		err := l.w.QueryRowContext(ctx, `SELECT value FROM meta WHERE key = ?`, k).Scan(&got)
		switch {
		case errors.Is(err, sql.ErrNoRows):
			if _, err := l.w.ExecContext(ctx, `INSERT INTO meta (key, value) VALUES (?, ?)`, k, v); err != nil {
				return fmt.Errorf("audit: %w", err)
			}
		case err != nil:
			return fmt.Errorf("audit: %w", err)
		case got != v:
			return fmt.Errorf("audit: the log's %s differs from this store's: it belongs to another data directory", k)
		}
	}
	return nil
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
// index. It returns only once the entry is committed to disk (shared with
// other Appends in flight); an error wraps ErrUnavailable (or is
// ErrClosed), and then the event must not go ahead. Append sets e.Time and
// e.Request if they are empty.
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
	p := &pending{leaf: e.Encode(), micros: e.Time.UnixMicro(), facts: facts(e), done: make(chan result, 1)}
	select {
	case <-l.closing:
		return 0, ErrClosed
	default:
	}
	select {
	case l.reqs <- p:
	case <-l.closing:
		return 0, ErrClosed
	case <-ctx.Done():
		return 0, fmt.Errorf("%w: %w", ErrUnavailable, ctx.Err())
	}
	// Once queued the entry may be written, so wait for the verdict even
	// if ctx ends: a caller must never believe an appended entry failed.
	r := <-p.done
	return r.index, r.err
}

// Stats says how many entries and commits the log has written since Open;
// entries/commits is how well group commit shares.
func (l *Log) Stats() (entries, commits int64) { return l.appended.Load(), l.commits.Load() }

// loop is the writer: it gathers waiting Appends into one commit, and
// signs checkpoints.
func (l *Log) loop() {
	defer close(l.stopped)
	tick := time.NewTicker(l.interval / 4)
	defer tick.Stop()
	for {
		var first *pending
		select {
		case first = <-l.reqs:
		case <-tick.C:
			l.maybeSign(false)
			continue
		case done := <-l.signs:
			_, err := l.sign()
			if err == nil {
				l.first = time.Time{}
			}
			done <- err
			continue
		case <-l.closing:
			// Appends that got in before Close are written.
			for {
				select {
				case p := <-l.reqs:
					l.write([]*pending{p})
				default:
					l.maybeSign(true)
					return
				}
			}
		}
		batch := l.gather([]*pending{first})
		l.write(batch)
		l.maybeSign(false)
	}
}

// gather adds to batch the appends waiting now.
func (l *Log) gather(batch []*pending) []*pending {
	for len(batch) < maxBatch {
		select {
		case p := <-l.reqs:
			batch = append(batch, p)
		default:
			return batch
		}
	}
	return batch
}

// write commits a batch and tells each Append its fate.
func (l *Log) write(batch []*pending) {
	start, err := l.commit(batch)
	for k, p := range batch {
		if err != nil {
			p.done <- result{err: fmt.Errorf("%w: %w", ErrUnavailable, err)}
		} else {
			p.done <- result{index: start + int64(k)}
		}
	}
	if err != nil {
		l.log.Error("audit append failed; requests are refused until it works", "entries", len(batch), "err", err)
		return
	}
	if l.first.IsZero() {
		l.first = time.Now()
	}
	l.commits.Add(1)
	l.appended.Add(int64(len(batch)))
}

// entryAD is the associated data of entry i's seal: its place in the log.
func entryAD(i int64) []byte {
	b := []byte("ehrvault audit entry v1\x00\x00\x00\x00\x00\x00\x00\x00\x00")
	binary.BigEndian.PutUint64(b[len(b)-8:], uint64(i))
	return b
}

// rowsPerInsert bounds the rows of one multi-row INSERT.
const rowsPerInsert = 256

// commit appends a batch in one transaction and returns the index of its
// first entry.
func (l *Log) commit(batch []*pending) (int64, error) {
	ctx := context.Background()
	tx, err := l.w.BeginTx(ctx, nil)
	if err != nil {
		return 0, err
	}
	defer tx.Rollback()
	var n int64
	if err := tx.QueryRowContext(ctx, sizeSQL).Scan(&n); err != nil {
		return 0, err
	}
	if n != l.size {
		// Another process (a command beside the server) appended: the
		// cached hashes still hold, but the size must be read again, and
		// its entries indexed.
		l.size = n
	}
	if l.idx.indexed() < n {
		if err := l.catchUp(ctx, n); err != nil {
			return 0, err
		}
	}
	hr := &hashReader{q: tx, cache: l.cache}
	var rows []any
	for k, p := range batch {
		i := n + int64(k)
		hashes, err := tlog.StoredHashes(i, p.leaf, hr)
		if err != nil {
			l.resetCache()
			return 0, fmt.Errorf("tree hashes of entry %d: %w", i, err)
		}
		base := tlog.StoredHashIndex(0, i)
		blob := make([]byte, 0, len(hashes)*tlog.HashSize)
		for j, h := range hashes {
			l.cache[base+int64(j)] = h
			blob = append(blob, h[:]...)
		}
		rows = append(rows, i, p.micros, l.sealer.Seal(p.leaf, entryAD(i)), blob)
	}
	if err := insertRows(ctx, tx, "INSERT INTO entries (idx, time, sealed, hashes) VALUES ", 4, rows); err != nil {
		l.resetCache()
		return 0, err
	}
	if err := tx.Commit(); err != nil {
		l.resetCache()
		return 0, err
	}
	l.size = n + int64(len(batch))
	for k, p := range batch {
		l.idx.add(n+int64(k), p.micros, p.facts)
	}
	if len(l.cache) > 1<<16 {
		// Only the hashes on the tree's right edge are read again; the
		// database has them all.
		l.resetCache()
	}
	return n, nil
}

func (l *Log) resetCache() { clear(l.cache) }

// insertRows inserts rows of width columns, many per statement. Row
// counts are rounded down to powers of two, so that a few prepared
// statements (cached by the driver) serve every batch.
func insertRows(ctx context.Context, tx *sql.Tx, prefix string, width int, args []any) error {
	tuple := "(" + strings.TrimSuffix(strings.Repeat("?, ", width), ", ") + ")"
	for len(args) > 0 {
		n := min(len(args)/width, rowsPerInsert)
		for p := 1; ; p <<= 1 {
			if p*2 > n {
				n = p
				break
			}
		}
		q := prefix + strings.TrimSuffix(strings.Repeat(tuple+", ", n), ", ")
		if _, err := tx.ExecContext(ctx, q, args[:n*width]...); err != nil {
			return err
		}
		args = args[n*width:]
	}
	return nil
}

// querier is what hashReader reads through: a transaction or a pool.
type querier interface {
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}

// hashReader reads stored tree hashes (tlog.HashReader): the hash with
// stored index x at level L and number m was stored by entry
// (m+1)<<L - 1, at offset L of its hashes.
type hashReader struct {
	q     querier
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
		var blob []byte
		if err := h.q.QueryRowContext(context.Background(), `SELECT hashes FROM entries WHERE idx = ?`, rec).Scan(&blob); err != nil {
			return nil, fmt.Errorf("read tree hash %d (entry %d): %w", x, rec, err)
		}
		if len(blob) < (level+1)*tlog.HashSize {
			return nil, fmt.Errorf("read tree hash %d: entry %d stores too few hashes", x, rec)
		}
		copy(out[k][:], blob[level*tlog.HashSize:])
		if h.cache != nil {
			h.cache[x] = out[k]
		}
	}
	return out, nil
}

// maybeSign signs a checkpoint when enough entries or time passed since
// the last one (or, with final, whenever the log grew).
func (l *Log) maybeSign(final bool) {
	grown := l.size - l.signed
	if grown <= 0 {
		return
	}
	if !final && grown < l.every && time.Since(l.first) < l.interval {
		return
	}
	if _, err := l.sign(); err != nil {
		l.log.Error("audit checkpoint failed", "size", l.size, "err", err)
		return
	}
	l.first = time.Time{}
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
func (l *Log) sign() (*Checkpoint, error) {
	ctx := context.Background()
	tx, err := l.w.BeginTx(ctx, nil)
	if err != nil {
		return nil, err
	}
	defer tx.Rollback()
	var n, prev int64
	if err := tx.QueryRowContext(ctx, sizeSQL).Scan(&n); err != nil {
		return nil, err
	}
	if err := tx.QueryRowContext(ctx, `SELECT coalesce(max(size), 0) FROM checkpoints`).Scan(&prev); err != nil {
		return nil, err
	}
	if n <= prev {
		l.signed = prev
		return nil, nil
	}
	root, err := tlog.TreeHash(n, &hashReader{q: tx, cache: l.cache})
	if err != nil {
		return nil, err
	}
	cp := &Checkpoint{Origin: l.origin, Size: n, Root: root, Prev: prev, Time: l.now().UTC().Truncate(time.Second)}
	msg, err := note.Sign(&note.Note{Text: cp.body()}, l.signer)
	if err != nil {
		return nil, err
	}
	cp.Note = msg
	if _, err := tx.ExecContext(ctx, `INSERT INTO checkpoints (size, time, note) VALUES (?, ?, ?)`, n, cp.Time.Unix(), msg); err != nil {
		return nil, err
	}
	if err := tx.Commit(); err != nil {
		return nil, err
	}
	l.signed = n
	l.size = max(l.size, n)
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
	var msg []byte
	err := l.r.QueryRowContext(ctx, `SELECT note FROM checkpoints ORDER BY size DESC LIMIT 1`).Scan(&msg)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	return ParseCheckpoint(msg, l.vkey)
}

// Sign signs a checkpoint of everything appended so far, unless the
// newest checkpoint already covers it, and returns the newest checkpoint.
func (l *Log) Sign(ctx context.Context) (*Checkpoint, error) {
	done := make(chan error, 1)
	select {
	case l.signs <- done:
	case <-l.closing:
		return nil, ErrClosed
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	if err := <-done; err != nil {
		return nil, err
	}
	return l.Latest(ctx)
}

// Close writes what is queued, signs a last checkpoint, waits for the
// publishers and closes the database.
func (l *Log) Close() error {
	l.once.Do(func() { close(l.closing) })
	<-l.stopped
	l.pubWG.Wait()
	return errors.Join(l.w.Close(), l.r.Close())
}

// Size returns the number of entries in the log.
func (l *Log) Size(ctx context.Context) (int64, error) {
	var n int64
	err := l.r.QueryRowContext(ctx, sizeSQL).Scan(&n)
	return n, err
}

// ReadEntry returns entry i: its canonical bytes (the Merkle leaf) and
// their decoding.
func (l *Log) ReadEntry(ctx context.Context, i int64) ([]byte, *Entry, error) {
	var sealed []byte
	err := l.r.QueryRowContext(ctx, `SELECT sealed FROM entries WHERE idx = ?`, i).Scan(&sealed)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, nil, ErrNoEntry
	}
	if err != nil {
		return nil, nil, err
	}
	leaf, err := l.sealer.Open(sealed, entryAD(i))
	if err != nil {
		return nil, nil, fmt.Errorf("audit: entry %d does not open: altered or damaged (run ehrvault audit verify)", i)
	}
	e, err := Decode(leaf)
	if err != nil {
		return nil, nil, fmt.Errorf("audit: entry %d: %w", i, err)
	}
	return leaf, e, nil
}

// ErrNoEntry is returned for an index past the end of the log.
var ErrNoEntry = errors.New("audit: no such entry")
