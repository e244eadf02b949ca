package audit

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"time"

	"github.com/transparency-dev/merkle/compact"
	"github.com/transparency-dev/merkle/rfc6962"

	"github.com/ehrvault/ehrvault/internal/keyring"
)

// VerifyConfig holds what Verify needs.
type VerifyConfig struct {
	Path        string
	Sealer      *keyring.Sealer
	MAC         *keyring.MAC
	VerifierKey string
	Origin      string
	// Witnessed are signed checkpoints kept outside the server (by a
	// witness, or saved by hand): Verify proves the log has only been
	// appended to since each.
	Witnessed [][]byte
	// Progress, if set, is called now and then with the bytes checked and
	// the total.
	Progress func(done, total int64)
}

// Problem is one thing Verify found wrong.
type Problem struct {
	// Entry is the first entry the problem concerns; -1 when it concerns
	// no entry in particular (a checkpoint, the lookup index).
	Entry int64
	// Upto, when set, makes the problem one about the entries from Entry
	// up to (not including) Upto, without knowing which: a root that no
	// longer matches.
	Upto int64
	// Checkpoint is the size of the checkpoint concerned; -1 for none.
	Checkpoint int64
	What       string
}

func (p Problem) String() string {
	switch {
	case p.Entry >= 0 && p.Checkpoint >= 0:
		return fmt.Sprintf("entry %d (checkpoint at size %d): %s", p.Entry, p.Checkpoint, p.What)
	case p.Entry >= 0:
		return fmt.Sprintf("entry %d: %s", p.Entry, p.What)
	case p.Checkpoint >= 0:
		return fmt.Sprintf("checkpoint at size %d: %s", p.Checkpoint, p.What)
	}
	return p.What
}

// VerifyReport is what Verify found.
type VerifyReport struct {
	Entries     int64 // entries read
	Checkpoints int   // checkpoints that verified
	Signed      int64 // size of the newest checkpoint that verified and matches
	Witnessed   []int64
	Problems    []Problem
	Elapsed     time.Duration
}

// OK reports whether the log verified.
func (r *VerifyReport) OK() bool { return len(r.Problems) == 0 }

// FirstBad returns the first entry a problem names, or -1. Problems that
// name one entry come before those that name a range.
func (r *VerifyReport) FirstBad() int64 {
	first, ranged := int64(-1), int64(-1)
	for _, p := range r.Problems {
		switch {
		case p.Entry < 0:
		case p.Upto > 0:
			if ranged < 0 || p.Entry < ranged {
				ranged = p.Entry
			}
		case first < 0 || p.Entry < first:
			first = p.Entry
		}
	}
	if first < 0 {
		return ranged
	}
	return first
}

// Verify recomputes the whole log from its stored entries and checks it:
//
//   - every entry opens under its own index (an entry altered, moved,
//     inserted or removed does not), and indexes run without gaps;
//   - every entry's stored tree hashes match what its content gives (recomputed with github.com/transparency-dev/merkle,
//     not the golang.org/x/mod code that wrote them);
//   - every checkpoint's signature verifies, its root is the root of the
//     recomputed tree at its size, and each names the one before (so a
//     removed checkpoint shows), and none covers more entries than there
//     are (a truncated log shows);
//   - every witnessed checkpoint is such a root too: the log has only been
//     appended to since.
//
// Checkpoints all check against one recomputed tree, so they are
// consistent with each other whenever they all match. Verify opens the
// files read-only and may run beside a server. The error is for a log it
// cannot read at all; everything else is in the VerifyReport.
func Verify(ctx context.Context, c VerifyConfig) (*VerifyReport, error) {
	start := time.Now()
	rep := &VerifyReport{}
	bad := func(entry, cp int64, format string, args ...any) {
		rep.Problems = append(rep.Problems, Problem{Entry: entry, Checkpoint: cp, What: fmt.Sprintf(format, args...)})
	}
	f, err := os.Open(c.Path)
	if err != nil {
		return nil, fmt.Errorf("open the audit log: %w", err)
	}
	defer f.Close()
	cf, err := os.Open(CheckpointsPath(c.Path))
	if err != nil {
		return nil, fmt.Errorf("open the audit log's checkpoints: %w", err)
	}
	defer cf.Close()
	for _, file := range []*os.File{f, cf} {
		r, _, err := readRecord(file, 0, fileSize(file), nil)
		if err != nil || r.kind != kindHeader {
			return nil, fmt.Errorf("%s: not an ehrvault audit log, or its header is damaged", filepath.Base(file.Name()))
		}
		origin, vkey, err := parseHeader(r.payload)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", filepath.Base(file.Name()), err)
		}
		if origin != c.Origin || vkey != c.VerifierKey {
			bad(-1, -1, "%s names another log or key in its header: it was replaced or altered", filepath.Base(file.Name()))
		}
	}

	// The checkpoints, in order; each must verify and name the one before.
	type want struct {
		size      int64
		root      []byte
		witnessed bool
	}
	var wants []want
	csize := fileSize(cf)
	off := int64(0)
	prev := int64(0)
	var buf []byte
	for {
		r, b, err := readRecord(cf, off, csize, buf)
		buf = b
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			bad(-1, -1, "the checkpoints file is damaged at byte %d: %v", off, err)
			break
		}
		off += r.size
		if r.kind == kindHeader {
			continue
		}
		if r.kind != kindCheckpoint {
			bad(-1, -1, "a record of kind %q among the checkpoints at byte %d", r.kind, r.off)
			continue
		}
		cp, err := ParseCheckpoint(r.payload, c.VerifierKey)
		switch {
		case err != nil:
			bad(-1, -1, "the checkpoint at byte %d of the checkpoints file: %v: it was altered, or signed by another key", r.off, err)
			continue
		case cp.Origin != c.Origin:
			bad(-1, cp.Size, "names another log (%q)", cp.Origin)
			continue
		}
		if cp.Prev != prev {
			bad(-1, cp.Size, "names %d as the checkpoint before it, but the one before is %d: a checkpoint was removed or altered", cp.Prev, prev)
		}
		rep.Checkpoints++
		wants = append(wants, want{size: cp.Size, root: append([]byte(nil), cp.Root[:]...)})
		prev = cp.Size
	}
	for k, msg := range c.Witnessed {
		cp, err := ParseCheckpoint(msg, c.VerifierKey)
		if err != nil {
			bad(-1, -1, "witnessed checkpoint %d: %v", k+1, err)
			continue
		}
		if cp.Origin != c.Origin {
			bad(-1, cp.Size, "the witnessed checkpoint names another log (%q)", cp.Origin)
			continue
		}
		wants = append(wants, want{size: cp.Size, root: cp.Root[:], witnessed: true})
	}
	sort.SliceStable(wants, func(i, j int) bool { return wants[i].size < wants[j].size })

	hasher := rfc6962.DefaultHasher
	rf := &compact.RangeFactory{Hash: hasher.HashChildren}
	cr := rf.NewEmptyRange(0)
	var stored []byte
	next := 0            // next want to check
	lastGood := int64(0) // size of the last checkpoint that matched
	broken := false      // the tree can no longer be recomputed
	check := func(size int64) {
		for next < len(wants) && wants[next].size <= size {
			w := wants[next]
			next++
			if w.size != size || broken {
				continue
			}
			root, err := cr.GetRootHash(nil)
			if w.size == 0 {
				root, err = hasher.EmptyRoot(), nil
			}
			switch {
			case err != nil:
				bad(-1, w.size, "root: %v", err)
			case !bytes.Equal(root, w.root) && w.witnessed:
				bad(lastGood, w.size, "the log no longer has the root of the witnessed checkpoint: entries from %d to %d were rewritten", lastGood, w.size-1)
				rep.Problems[len(rep.Problems)-1].Upto = w.size
			case !bytes.Equal(root, w.root):
				bad(lastGood, w.size, "the entries from %d to %d do not give the checkpoint's root: they were rewritten, or the checkpoint was forged", lastGood, w.size-1)
				rep.Problems[len(rep.Problems)-1].Upto = w.size
			case w.witnessed:
				rep.Witnessed = append(rep.Witnessed, w.size)
			default:
				lastGood = w.size
				rep.Signed = w.size
			}
		}
	}
	check(0)
	size := fileSize(f)
	br := bufio.NewReaderSize(io.NewSectionReader(f, 0, size), 1<<20)
	head := make([]byte, recordHead)
	i := int64(0)
	pos := int64(0)
	total := size // bytes, for progress
	for !broken {
		if _, err := io.ReadFull(br, head); err != nil {
			if errors.Is(err, io.EOF) {
				break
			}
			bad(i, -1, "the log ends in the middle of a record (at byte %d): cut short", pos)
			broken = true
			break
		}
		n := int(binary.BigEndian.Uint32(head[1:]))
		if (head[0] != kindHeader && head[0] != kindEntry) || n > maxRecord {
			bad(i, -1, "no entry record starts at byte %d: the file was altered or damaged there", pos)
			broken = true
			break
		}
		if cap(buf) < n {
			buf = make([]byte, n)
		}
		buf = buf[:n]
		if _, err := io.ReadFull(br, buf); err != nil {
			bad(i, -1, "the log ends in the middle of a record (at byte %d): cut short", pos)
			broken = true
			break
		}
		pos += int64(recordHead + n)
		if head[0] == kindHeader {
			if pos != int64(recordHead+n) {
				bad(i, -1, "a second header in the log at byte %d: records were inserted", pos-int64(recordHead+n))
				broken = true
			}
			continue
		}
		pe, err := parseEntry(buf)
		if err != nil {
			bad(i, -1, "%v", err)
			broken = true
			break
		}
		if pe.index != i {
			if pe.index > i {
				bad(i, -1, "missing: the log jumps from entry %d to %d (entries removed, or an index altered)", i-1, pe.index)
			} else {
				bad(i, -1, "the record where entry %d belongs holds entry %d: entries were inserted, repeated or moved", i, pe.index)
			}
			broken = true
			break
		}
		leaf, err := c.Sealer.Open(pe.sealed, entryAD(i))
		if err != nil {
			bad(i, -1, "does not open under its index: altered, moved, inserted or damaged")
			broken = true
			break
		}
		if _, err := Decode(leaf); err != nil {
			bad(i, -1, "opens but does not decode: %v", err)
		}
		stored = stored[:0]
		if err := cr.Append(hasher.HashLeaf(leaf), func(_ compact.NodeID, h []byte) { stored = append(stored, h...) }); err != nil {
			return nil, fmt.Errorf("recompute the tree: %w", err)
		}
		if !bytes.Equal(stored, pe.hashes) {
			bad(i, -1, "its stored tree hashes differ from its content's: they were altered (proofs would be wrong)")
		}
		i++
		rep.Entries = i
		check(i)
		if c.Progress != nil && i%65536 == 0 {
			c.Progress(pos, total)
		}
		if i%4096 == 0 && ctx.Err() != nil {
			return nil, ctx.Err()
		}
	}
	if c.Progress != nil {
		c.Progress(total, total)
	}
	for ; !broken && next < len(wants); next++ {
		w := wants[next]
		if w.size > i {
			what := "checkpoint"
			if w.witnessed {
				what = "witnessed checkpoint"
			}
			bad(i, w.size, "the log ends at entry %d but a %s covers %d entries: the log was truncated", i, what, w.size)
			break
		}
	}
	rep.Elapsed = time.Since(start)
	return rep, nil
}
