package audit

import (
	"bytes"
	"encoding/binary"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/mod/sumdb/tlog"
)

// records lists the records of a log file: offset and size of each.
func records(data []byte) [][2]int {
	var out [][2]int
	for off := 0; off+recordHead <= len(data); {
		n := int(binary.BigEndian.Uint32(data[off+1:]))
		out = append(out, [2]int{off, recordHead + n})
		off += recordHead + n
	}
	return out
}

// copyLog copies a log's two files, edited by edit(log, checkpoints).
func copyLog(t *testing.T, path string, edit func(log, cps []byte) ([]byte, []byte)) string {
	t.Helper()
	log, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	cps, err := os.ReadFile(CheckpointsPath(path))
	if err != nil {
		t.Fatal(err)
	}
	log, cps = edit(bytes.Clone(log), bytes.Clone(cps))
	dst := filepath.Join(t.TempDir(), "audit.log")
	if err := os.WriteFile(dst, log, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(CheckpointsPath(dst), cps, 0o600); err != nil {
		t.Fatal(err)
	}
	return dst
}

// cut returns b without b[from:to].
func cut(b []byte, from, to int) []byte { return append(append([]byte(nil), b[:from]...), b[to:]...) }

// insert returns b with x inserted at at.
func insert(b []byte, at int, x []byte) []byte {
	out := append([]byte(nil), b[:at]...)
	return append(append(out, x...), b[at:]...)
}

// TestTamperingIsCaught edits, deletes, inserts, reorders and truncates
// entries, their stored hashes and checkpoints directly in the files, 100
// randomized times: verify must fail every time and name the first bad
// entry (or the checkpoint) that was touched.
func TestTamperingIsCaught(t *testing.T) {
	k := newKeys(t)
	const n = 120
	path := buildLog(t, k, n)
	if rep := k.verify(t, path); !rep.OK() || rep.Entries != n || rep.Signed != n {
		t.Fatalf("untouched log: %+v", rep)
	}
	orig, _ := os.ReadFile(path)
	origCps, _ := os.ReadFile(CheckpointsPath(path))
	recs := records(orig)[1:] // entry e is recs[e]
	cpRecs := records(origCps)[1:]
	if len(recs) != n || len(cpRecs) != 5 {
		t.Fatalf("%d entry records, %d checkpoints", len(recs), len(cpRecs))
	}
	// A checkpoint a witness saved before anything was touched (size 100).
	witnessed := append([]byte(nil), origCps[cpRecs[3][0]+recordHead:cpRecs[3][0]+cpRecs[3][1]]...)
	if cp, err := ParseCheckpoint(witnessed, k.cfg.VerifierKey); err != nil || cp.Size != 100 {
		t.Fatalf("witnessed checkpoint: %+v, %v", cp, err)
	}
	rnd := rand.New(rand.NewPCG(7, 11))
	kinds := []string{"flip", "flip-index", "delete", "insert-end", "insert-middle", "swap", "truncate", "truncate-mid", "hashes", "checkpoint-flip", "checkpoint-delete", "rewrite-with-key"}
	counts := map[string]int{}
	for trial := 0; trial < 100; trial++ {
		kind := kinds[trial%len(kinds)]
		counts[kind]++
		e := rnd.IntN(n)
		off, size := recs[e][0], recs[e][1]
		var wantEntry, wantCP int64 = int64(e), -1
		var edit func(log, cps []byte) ([]byte, []byte)
		switch kind {
		case "flip": // a byte of the sealed entry
			hashes := int(orig[off+recordHead+8])
			body := off + recordHead + entryHead + hashes*32
			at := body + rnd.IntN(off+size-body)
			x := byte(1 + rnd.IntN(255))
			edit = func(log, cps []byte) ([]byte, []byte) { log[at] ^= x; return log, cps }
		case "flip-index":
			at := off + recordHead + rnd.IntN(8)
			edit = func(log, cps []byte) ([]byte, []byte) { log[at] ^= 0x10; return log, cps }
		case "delete":
			edit = func(log, cps []byte) ([]byte, []byte) { return cut(log, off, off+size), cps }
		case "insert-end":
			wantEntry = n
			edit = func(log, cps []byte) ([]byte, []byte) { return append(log, orig[off:off+size]...), cps }
		case "insert-middle":
			wantEntry = int64(e) + 1 // entry e is where it was; the one after is not
			edit = func(log, cps []byte) ([]byte, []byte) { return insert(log, off+size, orig[off:off+size]), cps }
		case "swap":
			f := (e + 1 + rnd.IntN(n-1)) % n
			a, b := min(e, f), max(e, f)
			wantEntry = int64(a)
			edit = func(log, cps []byte) ([]byte, []byte) {
				ra, rb := recs[a], recs[b]
				out := append([]byte(nil), log[:ra[0]]...)
				out = append(out, log[rb[0]:rb[0]+rb[1]]...)
				out = append(out, log[ra[0]+ra[1]:rb[0]]...)
				out = append(out, log[ra[0]:ra[0]+ra[1]]...)
				return append(out, log[rb[0]+rb[1]:]...), cps
			}
		case "truncate":
			edit = func(log, cps []byte) ([]byte, []byte) { return log[:off], cps }
		case "truncate-mid":
			at := off + 1 + rnd.IntN(size-1)
			edit = func(log, cps []byte) ([]byte, []byte) { return log[:at], cps }
		case "hashes":
			edit = func(log, cps []byte) ([]byte, []byte) {
				clear(log[off+recordHead+entryHead : off+recordHead+entryHead+32])
				return log, cps
			}
		case "checkpoint-flip":
			c := cpRecs[rnd.IntN(len(cpRecs))]
			wantEntry = -1
			at := c[0] + rnd.IntN(c[1])
			edit = func(log, cps []byte) ([]byte, []byte) { cps[at] ^= 0x20; return log, cps }
		case "checkpoint-delete": // one of the first four: the next one names it
			j := rnd.IntN(4)
			wantEntry, wantCP = -1, int64(25*(j+2))
			if j == 3 {
				wantCP = n
			}
			edit = func(log, cps []byte) ([]byte, []byte) { return log, cut(cps, cpRecs[j][0], cpRecs[j][0]+cpRecs[j][1]) }
		case "rewrite-with-key":
			// An insider with the key re-seals an entry with other content:
			// it opens, but its stored hashes and the roots after it
			// differ; the witnessed checkpoint catches a rewrite before
			// 100 even if the insider re-signed every checkpoint.
			e = rnd.IntN(100)
			wantEntry = int64(e)
			off, size = recs[e][0], recs[e][1]
			edit = func(log, cps []byte) ([]byte, []byte) {
				ent := testEntry(e)
				ent.Action = "delete"
				pe, _ := parseEntry(orig[off+recordHead : off+size])
				var hs []tlog.Hash
				for j := 0; j+32 <= len(pe.hashes); j += 32 {
					var h tlog.Hash
					copy(h[:], pe.hashes[j:])
					hs = append(hs, h)
				}
				rec := appendRecord(nil, kindEntry, entryPayload(int64(e), hs, k.sealer.Seal(ent.Encode(), entryAD(int64(e))))...)
				return append(append(append([]byte(nil), log[:off]...), rec...), log[off+size:]...), cps
			}
		}
		cp := copyLog(t, path, edit)
		rep := k.verify(t, cp, witnessed)
		if rep.OK() {
			t.Fatalf("trial %d (%s at %d): verify passed a tampered log", trial, kind, e)
		}
		switch {
		case wantEntry >= 0:
			if got := rep.FirstBad(); got != wantEntry {
				t.Errorf("trial %d (%s at %d): verify named entry %d first, want %d: %v", trial, kind, e, got, wantEntry, rep.Problems)
			}
			if kind == "rewrite-with-key" && len(rep.Witnessed) != 0 {
				t.Errorf("trial %d: the witnessed checkpoint still matches a rewritten log", trial)
			}
		default:
			named := false
			for _, p := range rep.Problems {
				if wantCP >= 0 && p.Checkpoint == wantCP || wantCP < 0 && p.Entry < 0 {
					named = true
				}
			}
			if !named {
				t.Errorf("trial %d (%s): verify did not name checkpoint %d: %v", trial, kind, wantCP, rep.Problems)
			}
		}
	}
	t.Logf("100 tamperings caught: %v", counts)
}

// TestOpenRecoversATornWrite: a batch a crash cut short (never
// acknowledged) is cut off when the log opens, and the log goes on.
func TestOpenRecoversATornWrite(t *testing.T) {
	k := newKeys(t)
	path := buildLog(t, k, 10)
	data, _ := os.ReadFile(path)
	// Half of a copy of the last record, as an interrupted write leaves.
	recs := records(data)
	last := recs[len(recs)-1]
	torn := append(bytes.Clone(data), data[last[0]:last[0]+last[1]/2]...)
	os.WriteFile(path, torn, 0o600)
	if rep := k.verify(t, path); rep.OK() {
		t.Fatal("verify passed a log with half a record at its end")
	}
	l := k.open(t, path, false, nil)
	if n, _ := l.Size(t.Context()); n != 10 {
		t.Fatalf("size after recovery %d", n)
	}
	if _, err := l.Append(t.Context(), testEntry(10)); err != nil {
		t.Fatal(err)
	}
	l.Close()
	if rep := k.verify(t, path); !rep.OK() || rep.Entries != 11 {
		t.Fatalf("after recovery: %+v", rep)
	}
}
