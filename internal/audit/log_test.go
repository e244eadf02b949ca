package audit

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/transparency-dev/merkle/proof"
	"github.com/transparency-dev/merkle/rfc6962"

	"github.com/ehrvault/ehrvault/internal/keyring"
)

var update = flag.Bool("update", false, "rewrite testdata/*.golden")

// keys are the audit keys of a test key file.
type keys struct {
	sealer *keyring.Sealer
	mac    *keyring.MAC
	cfg    Config
}

const testOrigin = "ehrvault.test/audit"

func newKeys(t testing.TB) *keys {
	t.Helper()
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "test.key")
	if err := keyring.CreateKeyFile(path, []byte("test passphrase 123"), keyring.TestKDFParams); err != nil {
		t.Fatal(err)
	}
	p, err := keyring.OpenKeyFile(path, []byte("test passphrase 123"))
	if err != nil {
		t.Fatal(err)
	}
	r := keyring.New(p, 4)
	s, err := r.Sealer(ctx, keyring.PurposeAuditSeal)
	if err != nil {
		t.Fatal(err)
	}
	m, err := r.MAC(ctx, keyring.PurposeAuditIndex)
	if err != nil {
		t.Fatal(err)
	}
	signer, vkey, err := r.NoteSigner(ctx, testOrigin)
	if err != nil {
		t.Fatal(err)
	}
	return &keys{sealer: s, mac: m, cfg: Config{Sealer: s, MAC: m, Signer: signer, VerifierKey: vkey, Origin: testOrigin}}
}

func (k *keys) open(t testing.TB, path string, create bool, mod func(*Config)) *Log {
	t.Helper()
	c := k.cfg
	c.Path, c.Create = path, create
	if mod != nil {
		mod(&c)
	}
	l, err := Open(context.Background(), c)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	return l
}

func (k *keys) verify(t testing.TB, path string, witnessed ...[]byte) *VerifyReport {
	t.Helper()
	rep, err := Verify(context.Background(), VerifyConfig{Path: path, Sealer: k.sealer, MAC: k.mac, VerifierKey: k.cfg.VerifierKey, Origin: testOrigin, Witnessed: witnessed})
	if err != nil {
		t.Fatalf("Verify: %v", err)
	}
	return rep
}

// testEntry is entry number i of the tests: a read by one of 5 agents of
// an Observation of one of 7 patients.
func testEntry(i int) *Entry {
	return &Entry{
		Time:      time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC).Add(time.Duration(i) * time.Second),
		Request:   fmt.Sprintf("req-%06d", i),
		Principal: Principal{Kind: "operator-token", ID: fmt.Sprintf("tok_%d", i%5)},
		Role:      "operator",
		Source:    "127.0.0.1",
		Action:    "read",
		Outcome:   OutcomeSuccess,
		Status:    200,
		Resources: []Resource{{Type: "Observation", ID: fmt.Sprintf("obs-%d", i), Version: 1, Owner: fmt.Sprintf("Patient/p%d", i%7)}},
	}
}

// buildLog appends n test entries, signing a checkpoint after every 25,
// and closes (which signs the last).
func buildLog(t testing.TB, k *keys, n int) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "audit.log")
	l := k.open(t, path, true, func(c *Config) { c.CheckpointEvery = 1 << 40; c.CheckpointInterval = time.Hour })
	for i := 0; i < n; i++ {
		if _, err := l.Append(context.Background(), testEntry(i)); err != nil {
			t.Fatal(err)
		}
		if (i+1)%25 == 0 {
			if _, err := l.Sign(context.Background()); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestAppendVerify(t *testing.T) {
	k := newKeys(t)
	path := filepath.Join(t.TempDir(), "audit.log")
	l := k.open(t, path, true, func(c *Config) { c.CheckpointEvery = 100 })
	// Many appenders at once share commits.
	var wg sync.WaitGroup
	const workers, each = 32, 100
	idx := make(chan int64, workers*each)
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for j := 0; j < each; j++ {
				i, err := l.Append(context.Background(), testEntry(w*each+j))
				if err != nil {
					t.Error(err)
					return
				}
				idx <- i
			}
		}(w)
	}
	wg.Wait()
	close(idx)
	seen := map[int64]bool{}
	for i := range idx {
		if seen[i] {
			t.Fatalf("index %d given twice", i)
		}
		seen[i] = true
	}
	entries, commits := l.Stats()
	if entries != workers*each || commits >= entries {
		t.Errorf("%d entries in %d flushes: group commit did not share", entries, commits)
	}
	t.Logf("%d entries in %d flushes", entries, commits)
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := l.Append(context.Background(), testEntry(0)); !errors.Is(err, ErrClosed) {
		t.Errorf("Append after Close = %v", err)
	}
	rep := k.verify(t, path)
	if !rep.OK() || rep.Entries != workers*each || rep.Signed != workers*each || rep.Checkpoints < 2 {
		t.Fatalf("verify: %+v", rep)
	}
	// Reopened, the log goes on where it was.
	l = k.open(t, path, false, nil)
	if i, err := l.Append(context.Background(), testEntry(9999)); err != nil || i != workers*each {
		t.Fatalf("append after reopen: %d, %v", i, err)
	}
	l.Close()
	if rep := k.verify(t, path); !rep.OK() || rep.Entries != workers*each+1 {
		t.Fatalf("verify after reopen: %+v", rep)
	}
}

func TestOpenRefusesAnotherLog(t *testing.T) {
	k := newKeys(t)
	path := buildLog(t, k, 3)
	other := newKeys(t)
	c := other.cfg
	c.Path = path
	if _, err := Open(context.Background(), c); err == nil || !strings.Contains(err.Error(), "another data directory") {
		t.Errorf("Open with another store's keys: %v", err)
	}
	if _, err := Open(context.Background(), Config{Path: path}); err == nil {
		t.Error("Open without keys succeeded")
	}
	c = k.cfg
	c.Path, c.Create = path, true
	if _, err := Open(context.Background(), c); err == nil {
		t.Error("Create over an existing log succeeded")
	}
}

func TestEncodingGolden(t *testing.T) {
	e := &Entry{
		Time:      time.Date(2026, 12, 1, 19, 0, 0, 123456000, time.UTC),
		Request:   "0123456789abcdef01234567",
		Session:   "s-1",
		Principal: Principal{Kind: "operator-token", ID: "tok_0a1b2c3d4e5f"},
		Role:      "operator",
		Source:    "192.0.2.7",
		Action:    "search-type",
		Outcome:   OutcomeSuccess,
		Status:    200,
		Purpose:   "TREAT",
		Resources: []Resource{
			{Type: "Observation", ID: "o1", Version: 3, Owner: "Patient/3f2a"},
			{Type: "Organization", ID: "org", Version: 1, Owner: "store"},
		},
		Query:  []Param{{"code", "h:00ff"}, {"_count", "10"}},
		Detail: []Param{{"total", "2"}},
	}
	got := e.Encode()
	golden := filepath.Join("testdata", "entry-v1.golden")
	if *update {
		if err := os.WriteFile(golden, append(got, '\n'), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatal(err)
	}
	if string(got)+"\n" != string(want) {
		t.Errorf("the v1 encoding changed: it is frozen, because leaves and proofs depend on it\n got %s\nwant %s", got, want)
	}
	back, err := Decode(got)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(back.Encode(), got) {
		t.Errorf("Decode(Encode(e)) differs:\n%s\n%s", back.Encode(), got)
	}
	if p := back.Patients(); len(p) != 1 || p[0] != "3f2a" {
		t.Errorf("Patients = %v", p)
	}
	for _, bad := range []string{"", "{}", `{"v":2,"time":"2026-12-01T19:00:00.000000Z"}`, `{"v":1,"time":"yesterday"}`, "[1]"} {
		if _, err := Decode([]byte(bad)); err == nil {
			t.Errorf("Decode(%q) succeeded", bad)
		}
	}
}

// TestProofs checks the log's proofs with an independent verifier
// (github.com/transparency-dev/merkle), for every pair of sizes of a
// small log and for samples of a larger one.
func TestProofs(t *testing.T) {
	k := newKeys(t)
	path := buildLog(t, k, 70)
	l := k.open(t, path, false, nil)
	defer l.Close()
	ctx := context.Background()
	h := rfc6962.DefaultHasher
	for size := int64(1); size <= 70; size++ {
		for i := int64(0); i < size; i += 1 + size/9 {
			p, err := l.ProveInclusion(ctx, i, size)
			if err != nil {
				t.Fatalf("ProveInclusion(%d, %d): %v", i, size, err)
			}
			leaf, _, err := l.ReadEntry(ctx, i)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(h.HashLeaf(leaf), p.Leaf[:]) {
				t.Fatalf("entry %d: the proof's leaf is not the hash of the entry's bytes", i)
			}
			if err := proof.VerifyInclusion(h, uint64(i), uint64(size), p.Leaf[:], hashes(p.Hashes), p.Root[:]); err != nil {
				t.Fatalf("inclusion of %d in %d does not verify: %v", i, size, err)
			}
			if err := p.Check(); err != nil {
				t.Fatal(err)
			}
			// Each proof hash altered, the proof fails.
			for j := range p.Hashes {
				bad := hashes(p.Hashes)
				bad[j][0] ^= 1
				if proof.VerifyInclusion(h, uint64(i), uint64(size), p.Leaf[:], bad, p.Root[:]) == nil {
					t.Fatalf("inclusion proof with hash %d altered verifies", j)
				}
			}
		}
		for from := int64(1); from <= size; from += 1 + size/7 {
			p, err := l.ProveConsistency(ctx, from, size)
			if err != nil {
				t.Fatalf("ProveConsistency(%d, %d): %v", from, size, err)
			}
			if err := proof.VerifyConsistency(h, uint64(from), uint64(size), hashes(p.Hashes), p.FromRoot[:], p.ToRoot[:]); err != nil {
				t.Fatalf("consistency %d -> %d does not verify: %v", from, size, err)
			}
			for j := range p.Hashes {
				bad := hashes(p.Hashes)
				bad[j][3] ^= 0x80
				if proof.VerifyConsistency(h, uint64(from), uint64(size), bad, p.FromRoot[:], p.ToRoot[:]) == nil {
					t.Fatalf("consistency proof with hash %d altered verifies", j)
				}
			}
		}
	}
	for _, c := range [][2]int64{{-1, 10}, {10, 10}, {0, 71}} {
		if _, err := l.ProveInclusion(ctx, c[0], c[1]); !errors.Is(err, ErrRange) {
			t.Errorf("ProveInclusion(%d, %d) = %v, want ErrRange", c[0], c[1], err)
		}
	}
	if _, err := l.ProveConsistency(ctx, 0, 5); !errors.Is(err, ErrRange) {
		t.Errorf("ProveConsistency(0, 5) = %v", err)
	}
	// The newest checkpoint's root is the root the proofs use.
	cp, err := l.Latest(ctx)
	if err != nil || cp == nil || cp.Size != 70 {
		t.Fatalf("Latest = %+v, %v", cp, err)
	}
	p, _ := l.ProveInclusion(ctx, 5, 0)
	if p.Root != cp.Root || p.Size != 70 {
		t.Errorf("a proof against the newest checkpoint has root %x, the checkpoint %x", p.Root, cp.Root)
	}
}

func hashes[H ~[32]byte](hs []H) [][]byte {
	out := make([][]byte, len(hs))
	for i := range hs {
		out[i] = append([]byte(nil), hs[i][:]...)
	}
	return out
}

func TestFind(t *testing.T) {
	k := newKeys(t)
	path := buildLog(t, k, 200)
	l := k.open(t, path, false, nil)
	defer l.Close()
	ctx := context.Background()
	check := func(f Filter, want func(i int) bool) {
		t.Helper()
		got, err := l.Find(ctx, f)
		if err != nil {
			t.Fatal(err)
		}
		var wantIdx []int
		for i := 0; i < 200; i++ {
			if want(i) {
				wantIdx = append(wantIdx, i)
			}
		}
		if f.Limit > 0 && len(wantIdx) > f.Limit {
			wantIdx = wantIdx[:f.Limit]
		}
		if len(got) != len(wantIdx) {
			t.Fatalf("Find(%+v) found %d entries, want %d", f, len(got), len(wantIdx))
		}
		for j, g := range got {
			if g.Index != int64(wantIdx[j]) || g.Entry.Request != fmt.Sprintf("req-%06d", wantIdx[j]) {
				t.Fatalf("Find(%+v)[%d] = entry %d, want %d", f, j, g.Index, wantIdx[j])
			}
		}
	}
	t0 := time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)
	check(Filter{Patient: "p3"}, func(i int) bool { return i%7 == 3 })
	check(Filter{Agent: "tok_2"}, func(i int) bool { return i%5 == 2 })
	check(Filter{Patient: "p3", Agent: "tok_2"}, func(i int) bool { return i%7 == 3 && i%5 == 2 })
	check(Filter{Entity: "Observation/obs-17"}, func(i int) bool { return i == 17 })
	check(Filter{From: t0.Add(50 * time.Second), To: t0.Add(60 * time.Second)}, func(i int) bool { return i >= 50 && i < 60 })
	check(Filter{Patient: "p1", From: t0.Add(100 * time.Second)}, func(i int) bool { return i%7 == 1 && i >= 100 })
	check(Filter{Action: "read", Limit: 10, Start: 150}, func(i int) bool { return i >= 150 })
	check(Filter{Outcome: OutcomeFailure}, func(i int) bool { return false })
	check(Filter{}, func(i int) bool { return true })
	check(Filter{Patient: "nobody"}, func(i int) bool { return false })
}

// TestAppendFailsClosed: when the log cannot be written, Append says so
// and never returns an index.
func TestAppendFailsClosed(t *testing.T) {
	k := newKeys(t)
	path := filepath.Join(t.TempDir(), "audit.log")
	l := k.open(t, path, true, nil)
	if _, err := l.Append(context.Background(), testEntry(0)); err != nil {
		t.Fatal(err)
	}
	l.f.Close() // the disk went away
	_, err := l.Append(context.Background(), testEntry(1))
	if !errors.Is(err, ErrUnavailable) {
		t.Fatalf("Append on a broken log = %v, want ErrUnavailable", err)
	}
	l.Close()
}

// FuzzEncode: whatever an entry holds, its encoding decodes to the same
// entry and encodes again to the same bytes.
func FuzzEncode(f *testing.F) {
	f.Add("req", "tok_1", "read", "Observation", "o\"1", "Patient/p", "code", "h:1\u2028x", int64(3), 200)
	f.Add("", "", "", "", "", "", "", "", int64(0), 0)
	f.Fuzz(func(t *testing.T, req, agent, action, typ, id, owner, qn, qv string, version int64, status int) {
		e := &Entry{Time: time.Unix(1700000000, 123456000), Request: req, Principal: Principal{Kind: "k", ID: agent},
			Action: action, Status: status, Resources: []Resource{{Type: typ, ID: id, Version: version, Owner: owner}},
			Query: []Param{{qn, qv}}}
		if !utf8Valid(req, agent, action, typ, id, owner, qn, qv) {
			return // entries hold only valid UTF-8 (ids, codes, hashes)
		}
		enc := e.Encode()
		back, err := Decode(enc)
		if err != nil {
			t.Fatalf("Decode(Encode(e)): %v\n%s", err, enc)
		}
		if again := back.Encode(); string(again) != string(enc) {
			t.Fatalf("re-encoding differs:\n%s\n%s", enc, again)
		}
	})
}

func utf8Valid(ss ...string) bool {
	for _, s := range ss {
		if !utf8.ValidString(s) {
			return false
		}
	}
	return true
}

// TestFlushEvery: with FlushEvery the log acknowledges before it flushes,
// flushes within the interval, and before it signs or closes.
func TestFlushEvery(t *testing.T) {
	k := newKeys(t)
	path := filepath.Join(t.TempDir(), "audit.log")
	l := k.open(t, path, true, func(c *Config) { c.FlushEvery = 20 * time.Millisecond; c.CheckpointEvery = 10 })
	for i := 0; i < 55; i++ {
		if _, err := l.Append(context.Background(), testEntry(i)); err != nil {
			t.Fatal(err)
		}
	}
	cp, err := l.Sign(context.Background())
	if err != nil || cp.Size != 55 {
		t.Fatalf("Sign = %+v, %v", cp, err)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if rep := k.verify(t, path); !rep.OK() || rep.Entries != 55 || rep.Signed != 55 {
		t.Fatalf("verify: %+v", rep)
	}
}
