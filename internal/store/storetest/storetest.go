// Package storetest is the conformance suite of store backends. Every
// backend's tests call Run; a backend is done when Run passes under -race.
//
// The suite checks each promise of package store, method by method, with
// fixed times (microsecond precision, UTC) and with expectations computed
// from a small in-memory model of the contract, so that a backend is held
// to the contract and not to another backend's habits. Optional
// interfaces (store.AuthTokens) are checked when the store implements
// them, and the run logs which ones it checked.
package storetest

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ehrvault/ehrvault/internal/store"
)

// Run runs the suite. open is called once per subtest and must return a
// new, empty store; the suite closes it when the subtest ends (a second
// Close may fail with store.ErrClosed).
func Run(t *testing.T, open func(t *testing.T) store.Store) {
	r := &runner{open: open}
	tests := []struct {
		name string
		fn   func(t *testing.T)
	}{
		{"Versions", r.testVersions},
		{"Seq", r.testSeq},
		{"Read", r.testRead},
		{"VRead", r.testVRead},
		{"Data", r.testData},
		{"Times", r.testTimes},
		{"History", r.testHistory},
		{"List", r.testList},
		{"Search", r.testSearch},
		{"SearchLabels", r.testSearchLabels},
		{"SearchModel", r.testSearchModel},
		{"HistoryKeys", r.testHistoryKeys},
		{"UpdateRollback", r.testUpdateRollback},
		{"AfterCommit", r.testAfterCommit},
		{"TxReadsOwnWrites", r.testTxReadsOwnWrites},
		{"TxAfterUpdate", r.testTxAfterUpdate},
		{"ConcurrentUpdates", r.testConcurrentUpdates},
		{"ConcurrentStaleWrites", r.testConcurrentStaleWrites},
		{"KeyStore", r.testKeyStore},
		{"AuthTokens", r.testAuthTokens},
		{"AuthObjects", r.testAuthObjects},
		{"Context", r.testContext},
		{"Closed", r.testClosed},
	}
	for _, tt := range tests {
		t.Run(tt.name, tt.fn)
	}
	ran := "store.AuthTokens: not implemented, not checked"
	if r.authTokens.Load() {
		ran = "store.AuthTokens: checked"
	}
	if r.authObjects.Load() {
		ran += "; store.AuthObjects: checked"
	} else {
		ran += "; store.AuthObjects: not implemented, not checked"
	}

	t.Logf("storetest: optional interfaces: %s", ran)
}

type runner struct {
	open        func(t *testing.T) store.Store
	authTokens  atomic.Bool
	authObjects atomic.Bool
}

// newStore opens a new, empty store that is closed when t ends.
func (r *runner) newStore(t *testing.T) store.Store {
	t.Helper()
	s := r.open(t)
	t.Cleanup(func() {
		if err := s.Close(); err != nil && !errors.Is(err, store.ErrClosed) {
			t.Errorf("Close() = %v", err)
		}
	})
	return s
}

// t0 is the suite's clock: every time it writes is t0 plus whole minutes
// and microseconds, so every time is representable by every backend.
var t0 = time.Date(2024, 2, 29, 13, 14, 15, 123456000, time.UTC)

// at returns the time i minutes and i microseconds after t0.
func at(i int) time.Time {
	return t0.Add(time.Duration(i)*time.Minute + time.Duration(i)*time.Microsecond)
}

// tok returns the blind-index token standing for s: 32 opaque bytes, as a
// real HMAC-SHA-256 token is.
func tok(s string) store.Token {
	sum := sha256.Sum256([]byte(s))
	return sum[:]
}

// ver returns version n of typ/id written at when, sealed by key 7.
func ver(typ, id string, n int64, when time.Time) *store.Version {
	return &store.Version{
		Type:    typ,
		ID:      id,
		Version: n,
		Updated: when,
		KeyID:   7,
		Data:    []byte(fmt.Sprintf("sealed %s/%s/%d \x00\xff", typ, id, n)),
	}
}

// del returns version n of typ/id recording a delete, with its sealed
// tombstone.
func del(typ, id string, n int64, when time.Time) *store.Version {
	return &store.Version{
		Type:    typ,
		ID:      id,
		Version: n,
		Updated: when,
		Deleted: true,
		KeyID:   8,
		Data:    []byte(fmt.Sprintf("tombstone %s/%s/%d \x00", typ, id, n)),
	}
}

// put stores v with tokens in an Update of its own and fails t if that
// fails; v.Seq is set.
func put(t *testing.T, s store.Store, v *store.Version, tokens ...store.Token) *store.Version {
	t.Helper()
	err := s.Update(context.Background(), func(tx store.Tx) error {
		return tx.Put(context.Background(), v, &store.Index{Tokens: tokens})
	})
	if err != nil {
		t.Fatalf("Update(Put(%s)) = %v", name(v), err)
	}
	return v
}

func name(v *store.Version) string {
	return fmt.Sprintf("%s/%s version %d", v.Type, v.ID, v.Version)
}

// same reports how got differs from want, or "" if it does not.
func same(got, want *store.Version) string {
	if got == nil {
		return "nil version"
	}
	var diffs []string
	if got.Type != want.Type || got.ID != want.ID || got.Version != want.Version {
		diffs = append(diffs, fmt.Sprintf("is %s", name(got)))
	}
	if !got.Updated.Equal(want.Updated) {
		diffs = append(diffs, fmt.Sprintf("Updated %s, want %s", got.Updated.Format(time.RFC3339Nano), want.Updated.Format(time.RFC3339Nano)))
	}
	if got.Updated.Location() != time.UTC {
		diffs = append(diffs, fmt.Sprintf("Updated in %s, want UTC", got.Updated.Location()))
	}
	if got.Deleted != want.Deleted {
		diffs = append(diffs, fmt.Sprintf("Deleted %v, want %v", got.Deleted, want.Deleted))
	}
	if got.KeyID != want.KeyID {
		diffs = append(diffs, fmt.Sprintf("KeyID %d, want %d", got.KeyID, want.KeyID))
	}
	if !bytes.Equal(got.Data, want.Data) {
		diffs = append(diffs, fmt.Sprintf("Data %d bytes %.40q, want %d bytes %.40q", len(got.Data), got.Data, len(want.Data), want.Data))
	}
	if want.Seq != 0 && got.Seq != want.Seq {
		diffs = append(diffs, fmt.Sprintf("Seq %d, want %d", got.Seq, want.Seq))
	}
	return strings.Join(diffs, "; ")
}

func checkRead(t *testing.T, r store.Reader, want *store.Version) {
	t.Helper()
	got, err := r.Read(context.Background(), want.Type, want.ID)
	if err != nil {
		t.Errorf("Read(%s/%s) = %v, want %s", want.Type, want.ID, err, name(want))
		return
	}
	if d := same(got, want); d != "" {
		t.Errorf("Read(%s/%s): %s", want.Type, want.ID, d)
	}
}

func checkVRead(t *testing.T, r store.Reader, want *store.Version) {
	t.Helper()
	got, err := r.VRead(context.Background(), want.Type, want.ID, want.Version)
	if err != nil {
		t.Errorf("VRead(%s) = %v", name(want), err)
		return
	}
	if d := same(got, want); d != "" {
		t.Errorf("VRead(%s): %s", name(want), d)
	}
}

func checkNotFound(t *testing.T, r store.Reader, typ, id string) {
	t.Helper()
	if v, err := r.Read(context.Background(), typ, id); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("Read(%s/%s) = %v, %v; want ErrNotFound", typ, id, v, err)
	}
}

func checkVNotFound(t *testing.T, r store.Reader, typ, id string, n int64) {
	t.Helper()
	if v, err := r.VRead(context.Background(), typ, id, n); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("VRead(%s/%s, %d) = %v, %v; want ErrNotFound", typ, id, n, v, err)
	}
}

// keys returns "type/id/version@seq" of each version, for comparing lists.
func keys(vs []*store.Version) []string {
	out := make([]string, len(vs))
	for i, v := range vs {
		out[i] = fmt.Sprintf("%s/%s/%d@%d", v.Type, v.ID, v.Version, v.Seq)
	}
	return out
}

// allHistory pages through q with small pages and returns every version.
func allHistory(t *testing.T, r store.Reader, q store.HistoryQuery) []*store.Version {
	t.Helper()
	q.Limit = 50
	var all []*store.Version
	for {
		vs, err := r.History(context.Background(), q)
		if err != nil {
			t.Fatalf("History(%+v) = %v", q, err)
		}
		all = append(all, vs...)
		if len(vs) < q.Limit {
			return all
		}
		q.BeforeSeq = vs[len(vs)-1].Seq
	}
}

func (r *runner) testVersions(t *testing.T) {
	ctx := context.Background()
	s := r.newStore(t)
	v1 := put(t, s, ver("Patient", "a", 1, at(1)), tok("x"))
	v2 := put(t, s, ver("Patient", "a", 2, at(2)), tok("y"))
	v3 := put(t, s, ver("Patient", "a", 3, at(3)))
	if v1.Seq <= 0 || v2.Seq <= v1.Seq || v3.Seq <= v2.Seq {
		t.Errorf("Put set Seq %d, %d, %d; want positive and increasing", v1.Seq, v2.Seq, v3.Seq)
	}

	conflicts := []struct {
		name string
		v    *store.Version
	}{
		{"new resource with version 2", ver("Patient", "b", 2, at(4))},
		{"new resource with version 0", ver("Patient", "b", 0, at(4))},
		{"new resource with version -1", ver("Patient", "b", -1, at(4))},
		{"stale version", ver("Patient", "a", 3, at(4))},
		{"old version", ver("Patient", "a", 1, at(4))},
		{"version 0 of an existing resource", ver("Patient", "a", 0, at(4))},
		{"skipped version", ver("Patient", "a", 5, at(4))},
		{"stale deletion", del("Patient", "a", 2, at(4))},
		{"same id, other type, version 2", ver("Observation", "a", 2, at(4))},
	}
	for _, c := range conflicts {
		var putErr error
		err := s.Update(ctx, func(tx store.Tx) error {
			putErr = tx.Put(ctx, c.v, nil)
			return putErr
		})
		if !errors.Is(putErr, store.ErrConflict) {
			t.Errorf("%s: Put(%s) = %v, want ErrConflict", c.name, name(c.v), putErr)
		}
		if !errors.Is(err, store.ErrConflict) {
			t.Errorf("%s: Update = %v, want ErrConflict", c.name, err)
		}
		if c.v.Seq != 0 {
			t.Errorf("%s: a failed Put set Seq %d", c.name, c.v.Seq)
		}
	}
	checkRead(t, s, v3)
	checkNotFound(t, s, "Patient", "b")
	checkNotFound(t, s, "Observation", "a")
	checkVNotFound(t, s, "Patient", "a", 4)
	checkVNotFound(t, s, "Patient", "a", 5)

	// Versions go on without a gap after the conflicts.
	v4 := put(t, s, del("Patient", "a", 4, at(5)))
	v5 := put(t, s, ver("Patient", "a", 5, at(6)))
	if v4.Seq <= v3.Seq || v5.Seq <= v4.Seq {
		t.Errorf("Seq after conflicts: %d, %d after %d; want increasing", v4.Seq, v5.Seq, v3.Seq)
	}
	for _, v := range []*store.Version{v1, v2, v3, v4, v5} {
		checkVRead(t, s, v)
	}
	// A resource whose first version is a deletion is allowed.
	put(t, s, del("Patient", "c", 1, at(7)))
	checkRead(t, s, del("Patient", "c", 1, at(7)))
}

func (r *runner) testSeq(t *testing.T) {
	ctx := context.Background()
	s := r.newStore(t)
	var all []*store.Version
	// Single puts and several puts in one Update, over several types.
	for i := range 4 {
		all = append(all, put(t, s, ver("Patient", fmt.Sprint(i), 1, at(i))))
	}
	batch := []*store.Version{
		ver("Observation", "o1", 1, at(5)),
		ver("Patient", "0", 2, at(5)),
		ver("Observation", "o1", 2, at(5)),
		ver("Encounter", "e1", 1, at(5)),
	}
	err := s.Update(ctx, func(tx store.Tx) error {
		for _, v := range batch {
			if err := tx.Put(ctx, v, nil); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatalf("Update(4 Puts) = %v", err)
	}
	all = append(all, batch...)
	all = append(all, put(t, s, ver("Patient", "1", 2, at(6))))
	for i := 1; i < len(all); i++ {
		if all[i].Seq <= all[i-1].Seq {
			t.Errorf("Put(%s) set Seq %d after Put(%s) set %d; want increasing", name(all[i]), all[i].Seq, name(all[i-1]), all[i-1].Seq)
		}
	}
	for _, v := range all {
		checkVRead(t, s, v)
	}
	got := allHistory(t, s, store.HistoryQuery{})
	want := slices.Clone(all)
	slices.Reverse(want)
	if !slices.Equal(keys(got), keys(want)) {
		t.Errorf("History() = %v, want %v", keys(got), keys(want))
	}
}

func (r *runner) testRead(t *testing.T) {
	s := r.newStore(t)
	checkNotFound(t, s, "Patient", "a")
	v1 := put(t, s, ver("Patient", "a", 1, at(1)))
	checkRead(t, s, v1)
	v2 := put(t, s, ver("Patient", "a", 2, at(2)))
	checkRead(t, s, v2)
	v3 := put(t, s, del("Patient", "a", 3, at(3)))
	checkRead(t, s, v3) // the deletion version, not ErrNotFound
	v4 := put(t, s, ver("Patient", "a", 4, at(4)))
	checkRead(t, s, v4)

	checkNotFound(t, s, "Patient", "b")
	checkNotFound(t, s, "Patient", "A")
	checkNotFound(t, s, "Observation", "a") // same id, other type
	checkNotFound(t, s, "Patient", "")
	checkNotFound(t, s, "", "a")
}

func (r *runner) testVRead(t *testing.T) {
	s := r.newStore(t)
	vs := []*store.Version{
		put(t, s, ver("Patient", "a", 1, at(1))),
		put(t, s, ver("Patient", "a", 2, at(2))),
		put(t, s, del("Patient", "a", 3, at(3))),
		put(t, s, ver("Patient", "a", 4, at(4))),
		put(t, s, ver("Observation", "a", 1, at(5))),
	}
	for _, v := range vs {
		checkVRead(t, s, v)
	}
	for _, n := range []int64{0, -1, 5, 100} {
		checkVNotFound(t, s, "Patient", "a", n)
	}
	checkVNotFound(t, s, "Observation", "a", 2)
	checkVNotFound(t, s, "Patient", "b", 1)
	checkVNotFound(t, s, "Encounter", "a", 1)
}

func (r *runner) testData(t *testing.T) {
	s := r.newStore(t)
	all := make([]byte, 256)
	for i := range all {
		all[i] = byte(i)
	}
	big := make([]byte, 1<<20)
	for i := range big {
		big[i] = byte(i*7 + i>>8)
	}
	cases := []struct {
		name string
		data []byte
	}{
		{"zero bytes", []byte{0, 0, 0, 0}},
		{"every byte value", all},
		{"leading and trailing zeros", []byte("\x00sealed\x00")},
		{"invalid UTF-8", []byte{0xff, 0xfe, 0xc0, 0x80, 0xed, 0xa0, 0x80}},
		{"one byte", []byte{0}},
		{"1 MiB", big},
	}
	for i, c := range cases {
		v := ver("Binary", fmt.Sprint(i), 1, at(i))
		v.Data = slices.Clone(c.data)
		put(t, s, v)
		got, err := s.Read(context.Background(), "Binary", fmt.Sprint(i))
		if err != nil {
			t.Fatalf("%s: Read = %v", c.name, err)
		}
		if !bytes.Equal(got.Data, c.data) {
			t.Errorf("%s: Read returned %d bytes %.40q, want %d bytes %.40q", c.name, len(got.Data), got.Data, len(c.data), c.data)
		}
		got, err = s.VRead(context.Background(), "Binary", fmt.Sprint(i), 1)
		if err != nil {
			t.Fatalf("%s: VRead = %v", c.name, err)
		}
		if !bytes.Equal(got.Data, c.data) {
			t.Errorf("%s: VRead returned %d bytes, want %d", c.name, len(got.Data), len(c.data))
		}
	}
	// The store keeps no reference to the caller's slice.
	v := ver("Binary", "copy", 1, at(1))
	want := slices.Clone(v.Data)
	put(t, s, v)
	clear(v.Data)
	got, err := s.Read(context.Background(), "Binary", "copy")
	if err != nil || !bytes.Equal(got.Data, want) {
		t.Errorf("Read after the caller reused its Data = %v, %q; want %q", err, got.Data, want)
	}
	for _, v := range allHistory(t, s, store.HistoryQuery{Type: "Binary"}) {
		var i int
		if _, err := fmt.Sscan(v.ID, &i); err == nil && !bytes.Equal(v.Data, cases[i].data) {
			t.Errorf("%s: History returned %d bytes, want %d", cases[i].name, len(v.Data), len(cases[i].data))
		}
	}
}

func (r *runner) testTimes(t *testing.T) {
	s := r.newStore(t)
	zone := time.FixedZone("UTC+05:30", 5*3600+1800)
	cases := []time.Time{
		t0,
		time.Date(2024, 2, 29, 18, 44, 15, 999999000, zone), // not UTC
		time.Date(1969, 12, 31, 23, 59, 59, 1000, time.UTC), // before the unix epoch
		time.Date(1970, 1, 1, 0, 0, 0, 0, time.UTC),
		time.Date(2262, 4, 11, 23, 47, 16, 854775000, time.UTC), // past int64 nanoseconds
		time.Date(9999, 12, 31, 23, 59, 59, 999999000, time.UTC),
	}
	for i, when := range cases {
		v := put(t, s, ver("Patient", fmt.Sprint(i), 1, when))
		checkRead(t, s, v)
		checkVRead(t, s, v)
		d := put(t, s, del("Patient", fmt.Sprint(i), 2, when))
		checkRead(t, s, d)
	}
	for _, v := range allHistory(t, s, store.HistoryQuery{}) {
		var i int
		fmt.Sscan(v.ID, &i)
		if !v.Updated.Equal(cases[i]) || v.Updated.Location() != time.UTC {
			t.Errorf("History: %s Updated %s, want %s in UTC", name(v), v.Updated, cases[i].UTC())
		}
	}
}

// historyScenario writes the versions the History test queries, one
// Update each, and returns them in write order.
func historyScenario(t *testing.T, s store.Store) []*store.Version {
	t.Helper()
	vs := []*store.Version{
		ver("Patient", "a", 1, at(1)),
		ver("Patient", "b", 1, at(2)),
		ver("Observation", "x", 1, at(3)),
		ver("Patient", "a", 2, at(4)),
		del("Patient", "a", 3, at(5)),
		ver("Observation", "x", 2, at(6)),
		ver("Patient", "b", 2, at(6)), // same time as the one before
		ver("Patient", "a", 4, at(8)), // back after its deletion
		ver("Observation", "y", 1, at(9)),
		ver("Patient", "b", 3, at(10)),
	}
	for _, v := range vs {
		put(t, s, v)
	}
	return vs
}

// modelHistory is what History must return for q over all (in write
// order), without Limit.
func modelHistory(all []*store.Version, q store.HistoryQuery) []*store.Version {
	var out []*store.Version
	for i := len(all) - 1; i >= 0; i-- {
		v := all[i]
		switch {
		case q.Type != "" && v.Type != q.Type,
			q.ID != "" && v.ID != q.ID,
			q.BeforeSeq != 0 && v.Seq >= q.BeforeSeq,
			!q.Since.IsZero() && v.Updated.Before(q.Since):
			continue
		}
		if !q.At.IsZero() && !currentAt(all, v, q.At) {
			continue
		}
		out = append(out, v)
	}
	return out
}

// currentAt reports whether v was the current version of its resource at
// the instant at: written at or before at, and not replaced by a later
// version written at or before at.
func currentAt(all []*store.Version, v *store.Version, at time.Time) bool {
	if v.Updated.After(at) {
		return false
	}
	for _, w := range all {
		if w.Type == v.Type && w.ID == v.ID && w.Version > v.Version && !w.Updated.After(at) {
			return false
		}
	}
	return true
}

func (r *runner) testHistory(t *testing.T) {
	ctx := context.Background()
	s := r.newStore(t)
	all := historyScenario(t, s)
	seq := func(i int) int64 { return all[i].Seq }
	queries := []store.HistoryQuery{
		{},
		{Type: "Patient"},
		{Type: "Observation"},
		{Type: "Encounter"},
		{Type: "Patient", ID: "a"},
		{Type: "Patient", ID: "b"},
		{Type: "Observation", ID: "a"},
		{Type: "Patient", ID: "zzz"},
		{Since: at(4)}, // inclusive
		{Since: at(4).Add(time.Microsecond)},
		{Since: at(6)},
		{Since: at(11)},
		{Since: at(-10)},
		{Type: "Patient", Since: at(5)},
		{Type: "Patient", ID: "a", Since: at(4)},
		{At: at(0)},
		{At: at(1)}, // inclusive
		{At: at(4)},
		{At: at(5)}, // Patient/a is deleted then
		{At: at(6)}, // two writes at the same time
		{At: at(7)},
		{At: at(100)},
		{Type: "Patient", At: at(6)},
		{Type: "Patient", ID: "a", At: at(5)},
		{Type: "Patient", ID: "a", At: at(7)},
		{At: at(6), Since: at(3)},
		{BeforeSeq: seq(4)},
		{BeforeSeq: seq(0)},
		{BeforeSeq: seq(9) + 1000},
		{Type: "Patient", BeforeSeq: seq(7)},
		{Type: "Patient", ID: "a", BeforeSeq: seq(7)},
		{Type: "Observation", Since: at(3), BeforeSeq: seq(8)},
		{At: at(9), BeforeSeq: seq(7)},
	}
	for _, q := range queries {
		want := modelHistory(all, q)
		got, err := s.History(ctx, q)
		if err != nil {
			t.Errorf("History(%+v) = %v", q, err)
			continue
		}
		if !slices.Equal(keys(got), keys(want)) {
			t.Errorf("History(%+v) =\n\t%v\nwant\n\t%v", q, keys(got), keys(want))
			continue
		}
		for i := range got {
			if d := same(got[i], want[i]); d != "" {
				t.Errorf("History(%+v)[%d]: %s", q, i, d)
			}
		}

		// Limit cuts the list; BeforeSeq with the last Seq of a page
		// continues it.
		for _, limit := range []int{1, 2, 3} {
			lq := q
			lq.Limit = limit
			var paged []*store.Version
			for page := 0; ; page++ {
				vs, err := s.History(ctx, lq)
				if err != nil {
					t.Fatalf("History(%+v) = %v", lq, err)
				}
				if len(vs) > limit {
					t.Errorf("History(%+v) returned %d versions", lq, len(vs))
				}
				paged = append(paged, vs...)
				if len(vs) < limit || page > len(all) {
					break
				}
				lq.BeforeSeq = vs[len(vs)-1].Seq
			}
			if !slices.Equal(keys(paged), keys(want)) {
				t.Errorf("History(%+v) paged by %d =\n\t%v\nwant\n\t%v", q, limit, keys(paged), keys(want))
			}
		}
	}
}

// listModel is what List must answer: the tokens of each current,
// undeleted resource.
type listModel map[string]map[string][]store.Token // type → id → tokens

func (m listModel) put(typ, id string, tokens []store.Token) {
	if m[typ] == nil {
		m[typ] = map[string][]store.Token{}
	}
	m[typ][id] = tokens
}

func (m listModel) del(typ, id string) { delete(m[typ], id) }

func (m listModel) list(q store.ListQuery) []string {
	var ids []string
	for id, have := range m[q.Type] {
		if id <= q.AfterID && q.AfterID != "" {
			continue
		}
		ok := true
		for _, want := range q.Tokens {
			if !slices.ContainsFunc(have, func(h store.Token) bool { return bytes.Equal(h, want) }) {
				ok = false
				break
			}
		}
		if ok {
			ids = append(ids, id)
		}
	}
	slices.Sort(ids) // byte order
	if q.Limit > 0 && len(ids) > q.Limit {
		ids = ids[:q.Limit]
	}
	return ids
}

func (r *runner) testList(t *testing.T) {
	ctx := context.Background()
	s := r.newStore(t)
	m := listModel{}
	versions := map[string]int64{}
	write := func(typ, id string, tokens ...store.Token) {
		t.Helper()
		k := typ + "/" + id
		versions[k]++
		put(t, s, ver(typ, id, versions[k], at(int(versions[k]))), tokens...)
		m.put(typ, id, tokens)
	}
	remove := func(typ, id string) {
		t.Helper()
		k := typ + "/" + id
		versions[k]++
		put(t, s, del(typ, id, versions[k], at(int(versions[k]))))
		m.del(typ, id)
	}
	female, male := tok("gender|female"), tok("gender|male")
	smith, jones := tok("family|smith"), tok("family|jones")
	short := tok("family|smith")[:16] // a prefix of smith: a different token
	zeros := store.Token(make([]byte, 32))

	check := func(phase string) {
		t.Helper()
		var queries []store.ListQuery
		tokenSets := [][]store.Token{
			nil,
			{female},
			{male},
			{smith},
			{short},
			{zeros},
			{female, smith},
			{smith, female},
			{female, female},
			{male, smith, jones},
			{female, male},
			{tok("unknown")},
		}
		for _, typ := range []string{"Patient", "Observation", "Encounter"} {
			for _, ts := range tokenSets {
				for _, after := range []string{"", "9", "B", "a", "a-1", "zzz"} {
					for _, limit := range []int{0, 1, 2, 100} {
						queries = append(queries, store.ListQuery{Type: typ, Tokens: ts, AfterID: after, Limit: limit})
					}
				}
			}
		}
		for _, q := range queries {
			got, err := s.List(ctx, q)
			if err != nil {
				t.Fatalf("%s: List(%+v) = %v", phase, q, err)
			}
			if want := m.list(q); !slices.Equal(got, want) {
				t.Errorf("%s: List(%s) = %q, want %q", phase, listString(q, female, male, smith, jones, short, zeros), got, want)
			}
		}
		// Paging with AfterID and Limit visits every id once.
		for _, ts := range tokenSets {
			want := m.list(store.ListQuery{Type: "Patient", Tokens: ts})
			var paged []string
			q := store.ListQuery{Type: "Patient", Tokens: ts, Limit: 2}
			for range 100 {
				ids, err := s.List(ctx, q)
				if err != nil {
					t.Fatalf("%s: List(%+v) = %v", phase, q, err)
				}
				paged = append(paged, ids...)
				if len(ids) < q.Limit {
					break
				}
				q.AfterID = ids[len(ids)-1]
			}
			if !slices.Equal(paged, want) {
				t.Errorf("%s: List paged by 2 = %q, want %q", phase, paged, want)
			}
		}
	}

	check("empty store")
	// Ids sort by their bytes: "10" < "9" < "B" < "a" < "a-1" < "b".
	write("Patient", "a", female, smith)
	write("Patient", "b", male, smith, jones)
	write("Patient", "c", female, jones)
	write("Patient", "9", male)
	write("Patient", "10", female, smith, short)
	write("Patient", "B", zeros, female)
	write("Patient", "a-1")
	write("Patient", "d", female, female, smith) // a token twice
	write("Observation", "a", male, smith)       // same tokens, other type
	write("Observation", "o", female)
	check("first versions")

	write("Patient", "a", male, smith) // tokens replaced
	write("Patient", "c")              // tokens removed
	remove("Patient", "b")             // deleted: never listed
	remove("Patient", "a-1")
	remove("Observation", "o")
	write("Patient", "d", female, smith) // same tokens again
	check("second versions")

	write("Patient", "b", female, jones) // back after its deletion
	remove("Patient", "10")
	write("Patient", "e", female, smith)
	check("third versions")
}

func listString(q store.ListQuery, named ...store.Token) string {
	names := []string{"female", "male", "smith", "jones", "short", "zeros"}
	var ts []string
	for _, tk := range q.Tokens {
		n := fmt.Sprintf("%x", []byte(tk))
		for i, x := range named {
			if bytes.Equal(tk, x) {
				n = names[i]
			}
		}
		ts = append(ts, n)
	}
	return fmt.Sprintf("Type=%s Tokens=%v AfterID=%q Limit=%d", q.Type, ts, q.AfterID, q.Limit)
}

var errRollback = errors.New("storetest: fn failed on purpose")

func (r *runner) testUpdateRollback(t *testing.T) {
	ctx := context.Background()
	s := r.newStore(t)
	a1 := put(t, s, ver("Patient", "a", 1, at(1)), tok("one"))
	keyID, err := s.Keys().PutWrappedKey(ctx, "Patient/a", []byte("wrapped a"))
	if err != nil {
		t.Fatalf("PutWrappedKey(Patient/a) = %v", err)
	}

	ran := false
	err = s.Update(ctx, func(tx store.Tx) error {
		tx.AfterCommit(func() { ran = true })
		for _, w := range []struct {
			v  *store.Version
			ts []store.Token
		}{
			{ver("Patient", "a", 2, at(2)), []store.Token{tok("two")}},
			{ver("Patient", "new", 1, at(2)), []store.Token{tok("one"), tok("two")}},
			{ver("Patient", "new", 2, at(3)), []store.Token{tok("one")}},
			{del("Patient", "a", 3, at(3)), nil},
		} {
			if err := tx.Put(ctx, w.v, &store.Index{Tokens: w.ts}); err != nil {
				t.Errorf("Put(%s) = %v", name(w.v), err)
			}
		}
		if _, err := tx.PutWrappedKey(ctx, "Patient/new", []byte("wrapped new")); err != nil {
			t.Errorf("PutWrappedKey(Patient/new) = %v", err)
		}
		return errRollback
	})
	if err != errRollback {
		t.Errorf("Update = %v, want the error of fn unchanged (%v)", err, errRollback)
	}
	if ran {
		t.Errorf("AfterCommit function ran after a rollback")
	}
	checkRollback := func(when string) {
		t.Helper()
		checkRead(t, s, a1)
		checkVNotFound(t, s, "Patient", "a", 2)
		checkNotFound(t, s, "Patient", "new")
		checkVNotFound(t, s, "Patient", "new", 1)
		if got := allHistory(t, s, store.HistoryQuery{}); !slices.Equal(keys(got), keys([]*store.Version{a1})) {
			t.Errorf("%s: History() = %v, want only %s", when, keys(got), name(a1))
		}
		for _, c := range []struct {
			tk   store.Token
			want []string
		}{{tok("one"), []string{"a"}}, {tok("two"), nil}} {
			ids, err := s.List(ctx, store.ListQuery{Type: "Patient", Tokens: []store.Token{c.tk}})
			if err != nil || !slices.Equal(ids, c.want) {
				t.Errorf("%s: List = %q, %v; want %q", when, ids, err, c.want)
			}
		}
		if ids, err := s.List(ctx, store.ListQuery{Type: "Patient"}); err != nil || !slices.Equal(ids, []string{"a"}) {
			t.Errorf("%s: List(Patient) = %q, %v; want [a]", when, ids, err)
		}
		if id, _, err := s.Keys().WrappedKey(ctx, "Patient/new"); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("%s: WrappedKey(Patient/new) = %d, %v; want ErrNotFound", when, id, err)
		}
		if id, w, err := s.Keys().WrappedKey(ctx, "Patient/a"); err != nil || id != keyID || string(w) != "wrapped a" {
			t.Errorf("%s: WrappedKey(Patient/a) = %d, %q, %v; want %d, %q", when, id, w, err, keyID, "wrapped a")
		}
	}
	checkRollback("after fn failed")

	// A conflict returned by fn rolls back what fn wrote before it.
	err = s.Update(ctx, func(tx store.Tx) error {
		tx.AfterCommit(func() { ran = true })
		if err := tx.Put(ctx, ver("Patient", "new", 1, at(4)), &store.Index{Tokens: []store.Token{tok("two")}}); err != nil {
			return err
		}
		return tx.Put(ctx, ver("Patient", "a", 1, at(4)), nil)
	})
	if !errors.Is(err, store.ErrConflict) {
		t.Errorf("Update with a conflicting Put = %v, want ErrConflict", err)
	}
	if ran {
		t.Errorf("AfterCommit function ran after a rollback")
	}
	checkRollback("after a conflict")

	// The versions of the rolled-back Updates were not used up.
	a2 := put(t, s, ver("Patient", "a", 2, at(5)), tok("two"))
	n1 := put(t, s, ver("Patient", "new", 1, at(5)))
	if a2.Seq <= a1.Seq || n1.Seq <= a2.Seq {
		t.Errorf("Seq after rollbacks: %d, %d after %d; want increasing", a2.Seq, n1.Seq, a1.Seq)
	}
	checkRead(t, s, a2)
	checkRead(t, s, n1)
}

func (r *runner) testAfterCommit(t *testing.T) {
	ctx := context.Background()
	s := r.newStore(t)
	var (
		calls []int
		seen  []string
	)
	v := ver("Patient", "a", 1, at(1))
	err := s.Update(ctx, func(tx store.Tx) error {
		for i := range 3 {
			tx.AfterCommit(func() {
				calls = append(calls, i)
				// The write is committed: a read outside the
				// transaction sees it.
				got, err := s.Read(ctx, "Patient", "a")
				if err != nil {
					seen = append(seen, err.Error())
				} else {
					seen = append(seen, name(got))
				}
			})
		}
		if len(calls) != 0 {
			t.Errorf("AfterCommit function ran before the commit")
		}
		return tx.Put(ctx, v, nil)
	})
	if err != nil {
		t.Fatalf("Update = %v", err)
	}
	if want := []int{0, 1, 2}; !slices.Equal(calls, want) {
		t.Errorf("AfterCommit functions ran as %v by the time Update returned, want %v", calls, want)
	}
	for _, got := range seen {
		if got != name(v) {
			t.Errorf("Read in an AfterCommit function = %s, want %s", got, name(v))
		}
	}
	// An Update that writes nothing still commits.
	ran := false
	if err := s.Update(ctx, func(tx store.Tx) error { tx.AfterCommit(func() { ran = true }); return nil }); err != nil {
		t.Fatalf("empty Update = %v", err)
	}
	if !ran {
		t.Errorf("AfterCommit function of an empty Update did not run")
	}
}

func (r *runner) testTxReadsOwnWrites(t *testing.T) {
	ctx := context.Background()
	s := r.newStore(t)
	old := put(t, s, ver("Patient", "old", 1, at(1)), tok("t1"))
	outside := func(call string, f func() error) {
		t.Helper()
		if err := f(); err != nil {
			t.Errorf("outside the transaction, %s: %v", call, err)
		}
	}
	var final *store.Version
	err := s.Update(ctx, func(tx store.Tx) error {
		checkNotFound(t, tx, "Patient", "a")
		checkRead(t, tx, old)

		v1 := ver("Patient", "a", 1, at(2))
		if err := tx.Put(ctx, v1, &store.Index{Tokens: []store.Token{tok("t1")}}); err != nil {
			return err
		}
		checkRead(t, tx, v1)
		checkVRead(t, tx, v1)
		if got := allHistory(t, tx, store.HistoryQuery{Type: "Patient", ID: "a"}); !slices.Equal(keys(got), keys([]*store.Version{v1})) {
			t.Errorf("tx.History(Patient/a) = %v, want %s", keys(got), name(v1))
		}
		if got := allHistory(t, tx, store.HistoryQuery{}); !slices.Equal(keys(got), keys([]*store.Version{v1, old})) {
			t.Errorf("tx.History() = %v", keys(got))
		}
		listIs(t, tx, store.ListQuery{Type: "Patient", Tokens: []store.Token{tok("t1")}}, "a", "old")

		v2 := ver("Patient", "a", 2, at(3))
		if err := tx.Put(ctx, v2, &store.Index{Tokens: []store.Token{tok("t2")}}); err != nil {
			return err
		}
		checkRead(t, tx, v2)
		checkVRead(t, tx, v1)
		listIs(t, tx, store.ListQuery{Type: "Patient", Tokens: []store.Token{tok("t1")}}, "old")
		listIs(t, tx, store.ListQuery{Type: "Patient", Tokens: []store.Token{tok("t2")}}, "a")

		v3 := del("Patient", "a", 3, at(4))
		if err := tx.Put(ctx, v3, nil); err != nil {
			return err
		}
		checkRead(t, tx, v3)
		listIs(t, tx, store.ListQuery{Type: "Patient"}, "old")
		listIs(t, tx, store.ListQuery{Type: "Patient", Tokens: []store.Token{tok("t2")}})
		final = v3

		id, err := tx.PutWrappedKey(ctx, "Patient/a", []byte("wrapped"))
		if err != nil {
			return err
		}
		if got, w, err := tx.WrappedKey(ctx, "Patient/a"); err != nil || got != id || string(w) != "wrapped" {
			t.Errorf("tx.WrappedKey(Patient/a) = %d, %q, %v; want %d", got, w, err, id)
		}
		if owner, w, err := tx.WrappedKeyByID(ctx, id); err != nil || owner != "Patient/a" || string(w) != "wrapped" {
			t.Errorf("tx.WrappedKeyByID(%d) = %q, %q, %v", id, owner, w, err)
		}

		// Nothing of it is visible outside before the commit.
		outside("Read", func() error {
			if v, err := s.Read(ctx, "Patient", "a"); !errors.Is(err, store.ErrNotFound) {
				return fmt.Errorf("Read(Patient/a) = %v, %v; want ErrNotFound", v, err)
			}
			return nil
		})
		outside("History", func() error {
			if vs, err := s.History(ctx, store.HistoryQuery{}); err != nil || len(vs) != 1 {
				return fmt.Errorf("History() = %v, %v; want only %s", keys(vs), err, name(old))
			}
			return nil
		})
		outside("List", func() error {
			if ids, err := s.List(ctx, store.ListQuery{Type: "Patient", Tokens: []store.Token{tok("t2")}}); err != nil || len(ids) != 0 {
				return fmt.Errorf("List(t2) = %q, %v; want none", ids, err)
			}
			return nil
		})
		outside("WrappedKey", func() error {
			if _, _, err := s.Keys().WrappedKey(ctx, "Patient/a"); !errors.Is(err, store.ErrNotFound) {
				return fmt.Errorf("WrappedKey(Patient/a) = %v, want ErrNotFound", err)
			}
			return nil
		})
		return nil
	})
	if err != nil {
		t.Fatalf("Update = %v", err)
	}
	checkRead(t, s, final)
	if _, _, err := s.Keys().WrappedKey(ctx, "Patient/a"); err != nil {
		t.Errorf("WrappedKey(Patient/a) after the commit = %v", err)
	}
}

func listIs(t *testing.T, r store.Reader, q store.ListQuery, want ...string) {
	t.Helper()
	got, err := r.List(context.Background(), q)
	if err != nil {
		t.Errorf("List(%+v) = %v", q, err)
		return
	}
	if !slices.Equal(got, want) {
		t.Errorf("List(Type=%s, %d tokens) = %q, want %q", q.Type, len(q.Tokens), got, want)
	}
}

func (r *runner) testTxAfterUpdate(t *testing.T) {
	ctx := context.Background()
	s := r.newStore(t)
	var leaked store.Tx
	if err := s.Update(ctx, func(tx store.Tx) error { leaked = tx; return nil }); err != nil {
		t.Fatalf("Update = %v", err)
	}
	if err := leaked.Put(ctx, ver("Patient", "a", 1, at(1)), nil); err == nil {
		t.Errorf("Put on a Tx whose Update returned = nil, want an error")
	}
	if _, err := leaked.PutWrappedKey(ctx, "Patient/a", []byte("k")); err == nil {
		t.Errorf("PutWrappedKey on a Tx whose Update returned = nil, want an error")
	}
	checkNotFound(t, s, "Patient", "a")
	if _, _, err := s.Keys().WrappedKey(ctx, "Patient/a"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("WrappedKey(Patient/a) = %v, want ErrNotFound", err)
	}
}

// checkGapless checks that typ/id has exactly versions 1..n, in Seq
// order, the last one current.
func checkGapless(t *testing.T, s store.Store, typ, id string, n int64) {
	t.Helper()
	cur, err := s.Read(context.Background(), typ, id)
	if err != nil {
		t.Fatalf("Read(%s/%s) = %v", typ, id, err)
	}
	if cur.Version != n {
		t.Errorf("Read(%s/%s) = version %d, want %d", typ, id, cur.Version, n)
	}
	hist := allHistory(t, s, store.HistoryQuery{Type: typ, ID: id})
	if int64(len(hist)) != n {
		t.Errorf("History(%s/%s) has %d versions, want %d", typ, id, len(hist), n)
	}
	for i, v := range hist {
		if want := n - int64(i); v.Version != want {
			t.Fatalf("History(%s/%s)[%d] = version %d, want %d", typ, id, i, v.Version, want)
		}
		if i > 0 && v.Seq >= hist[i-1].Seq {
			t.Errorf("History(%s/%s): version %d has Seq %d, version %d has %d; want increasing", typ, id, v.Version, v.Seq, hist[i-1].Version, hist[i-1].Seq)
		}
	}
}

// readWhile reads typ/id until stop is closed and checks that the versions
// it sees never go back.
func readWhile(s store.Store, typ, id string, stop <-chan struct{}) error {
	var last int64
	for {
		select {
		case <-stop:
			return nil
		default:
		}
		v, err := s.Read(context.Background(), typ, id)
		if errors.Is(err, store.ErrNotFound) {
			if last != 0 {
				return fmt.Errorf("Read(%s/%s) = ErrNotFound after version %d", typ, id, last)
			}
			continue
		}
		if err != nil {
			return fmt.Errorf("Read(%s/%s) = %v", typ, id, err)
		}
		if v.Version < last {
			return fmt.Errorf("Read(%s/%s) = version %d after version %d", typ, id, v.Version, last)
		}
		last = v.Version
	}
}

// concurrently runs write in workers goroutines, each n times, while two
// readers read typ/id, and returns the first error.
func concurrently(s store.Store, typ, id string, workers, n int, write func() error) error {
	stop := make(chan struct{})
	errs := make(chan error, workers+2)
	var readers, writers sync.WaitGroup
	for range 2 {
		readers.Go(func() { errs <- readWhile(s, typ, id, stop) })
	}
	for range workers {
		writers.Go(func() {
			for range n {
				if err := write(); err != nil {
					errs <- err
					return
				}
			}
		})
	}
	writers.Wait()
	close(stop)
	readers.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}

func (r *runner) testConcurrentUpdates(t *testing.T) {
	ctx := context.Background()
	s := r.newStore(t)
	const workers, n = 8, 25
	var conflicts atomic.Int64
	err := concurrently(s, "Patient", "a", workers, n, func() error {
		for {
			err := s.Update(ctx, func(tx store.Tx) error {
				next := int64(1)
				cur, err := tx.Read(ctx, "Patient", "a")
				switch {
				case err == nil:
					next = cur.Version + 1
				case !errors.Is(err, store.ErrNotFound):
					return err
				}
				return tx.Put(ctx, ver("Patient", "a", next, at(int(next))), &store.Index{Tokens: []store.Token{tok(fmt.Sprint(next))}})
			})
			if errors.Is(err, store.ErrConflict) {
				conflicts.Add(1)
				continue
			}
			return err
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%d conflicts retried", conflicts.Load())
	checkGapless(t, s, "Patient", "a", workers*n)
	listIs(t, s, store.ListQuery{Type: "Patient", Tokens: []store.Token{tok(fmt.Sprint(workers * n))}}, "a")
	listIs(t, s, store.ListQuery{Type: "Patient", Tokens: []store.Token{tok("1")}})
}

func (r *runner) testConcurrentStaleWrites(t *testing.T) {
	ctx := context.Background()
	s := r.newStore(t)
	const workers, n = 8, 10
	var conflicts atomic.Int64
	// Each writer reads outside the transaction, as a client doing a
	// conditional update does, so writers race and conflicts are normal.
	err := concurrently(s, "Patient", "a", workers, n, func() error {
		for {
			next := int64(1)
			cur, err := s.Read(ctx, "Patient", "a")
			switch {
			case err == nil:
				next = cur.Version + 1
			case !errors.Is(err, store.ErrNotFound):
				return err
			}
			err = s.Update(ctx, func(tx store.Tx) error {
				return tx.Put(ctx, ver("Patient", "a", next, at(int(next))), nil)
			})
			if errors.Is(err, store.ErrConflict) {
				conflicts.Add(1)
				continue
			}
			return err
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%d conflicts retried", conflicts.Load())
	checkGapless(t, s, "Patient", "a", workers*n)
}

func (r *runner) testKeyStore(t *testing.T) {
	ctx := context.Background()
	s := r.newStore(t)
	ks := s.Keys()
	if id, w, err := ks.WrappedKey(ctx, "Patient/1"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("WrappedKey(Patient/1) on an empty store = %d, %q, %v; want ErrNotFound", id, w, err)
	}
	for _, id := range []int64{0, 1, 2, -1} {
		if owner, w, err := ks.WrappedKeyByID(ctx, id); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("WrappedKeyByID(%d) on an empty store = %q, %q, %v; want ErrNotFound", id, owner, w, err)
		}
	}
	type key struct {
		owner   string
		wrapped []byte
		id      int64
	}
	want := []*key{
		{owner: "Patient/1", wrapped: []byte("\x00wrapped\x00one\xff")},
		{owner: "store", wrapped: bytes.Repeat([]byte{0}, 60)},
		{owner: "Patient/2", wrapped: []byte("wrapped two")},
	}
	for _, k := range want[:2] {
		id, err := ks.PutWrappedKey(ctx, k.owner, slices.Clone(k.wrapped))
		if err != nil {
			t.Fatalf("PutWrappedKey(%s) = %v", k.owner, err)
		}
		k.id = id
	}
	err := s.Update(ctx, func(tx store.Tx) error {
		id, err := tx.PutWrappedKey(ctx, want[2].owner, slices.Clone(want[2].wrapped))
		want[2].id = id
		return err
	})
	if err != nil {
		t.Fatalf("Update(PutWrappedKey(%s)) = %v", want[2].owner, err)
	}
	ids := map[int64]bool{}
	for _, k := range want {
		if k.id <= 0 || ids[k.id] {
			t.Errorf("PutWrappedKey(%s) = id %d, want a new positive id", k.owner, k.id)
		}
		ids[k.id] = true
	}

	check := func(when string) {
		t.Helper()
		for _, k := range want {
			if id, w, err := ks.WrappedKey(ctx, k.owner); err != nil || id != k.id || !bytes.Equal(w, k.wrapped) {
				t.Errorf("%s: WrappedKey(%s) = %d, %q, %v; want %d, %q", when, k.owner, id, w, err, k.id, k.wrapped)
			}
			if owner, w, err := ks.WrappedKeyByID(ctx, k.id); err != nil || owner != k.owner || !bytes.Equal(w, k.wrapped) {
				t.Errorf("%s: WrappedKeyByID(%d) = %q, %q, %v; want %q, %q", when, k.id, owner, w, err, k.owner, k.wrapped)
			}
		}
		for _, owner := range []string{"Patient/3", "patient/1", "Patient/1 ", ""} {
			if id, _, err := ks.WrappedKey(ctx, owner); !errors.Is(err, store.ErrNotFound) {
				t.Errorf("%s: WrappedKey(%q) = %d, %v; want ErrNotFound", when, owner, id, err)
			}
		}
		if _, _, err := ks.WrappedKeyByID(ctx, 1<<40); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("%s: WrappedKeyByID(1<<40) = %v, want ErrNotFound", when, err)
		}
	}
	check("after puts")

	if id, err := ks.PutWrappedKey(ctx, "Patient/1", []byte("another")); !errors.Is(err, store.ErrExists) {
		t.Errorf("PutWrappedKey(Patient/1) again = %d, %v; want ErrExists", id, err)
	}
	err = s.Update(ctx, func(tx store.Tx) error {
		_, err := tx.PutWrappedKey(ctx, "store", []byte("another"))
		return err
	})
	if !errors.Is(err, store.ErrExists) {
		t.Errorf("Update(PutWrappedKey(store)) again = %v, want ErrExists", err)
	}
	check("after duplicates")
}

func (r *runner) testAuthTokens(t *testing.T) {
	ctx := context.Background()
	s := r.newStore(t)
	at, ok := s.(store.AuthTokens)
	if !ok {
		t.Skip("store.AuthTokens: not implemented")
	}
	r.authTokens.Store(true)

	if ts, err := at.AuthTokens(ctx); err != nil || len(ts) != 0 {
		t.Errorf("AuthTokens() on an empty store = %v, %v; want none", ts, err)
	}
	hash := func(s string) []byte { h := sha256.Sum256([]byte(s)); return h[:] }
	toks := []store.AuthToken{
		{ID: "tok1", Hash: hash("secret1"), Label: "import job", Created: at0(1), Expires: at0(61)},
		{ID: "tok2", Hash: hash("secret2"), Label: "", Created: at0(2), Expires: at0(62)},
		{ID: "tok3", Hash: hash("secret3"), Label: "ünïcode label", Created: at0(3), Expires: at0(3 + 60*24*365)},
	}
	for _, tk := range toks {
		if err := at.PutAuthToken(ctx, tk); err != nil {
			t.Fatalf("PutAuthToken(%s) = %v", tk.ID, err)
		}
	}
	sameToken := func(call string, got *store.AuthToken, want store.AuthToken) {
		t.Helper()
		if got.ID != want.ID || !bytes.Equal(got.Hash, want.Hash) || got.Label != want.Label ||
			!got.Created.Equal(want.Created) || !got.Expires.Equal(want.Expires) || got.Revoked != want.Revoked ||
			got.Created.Location() != time.UTC || got.Expires.Location() != time.UTC {
			t.Errorf("%s = %+v, want %+v", call, *got, want)
		}
	}
	for _, tk := range toks {
		got, err := at.AuthTokenByHash(ctx, tk.Hash)
		if err != nil {
			t.Errorf("AuthTokenByHash(hash of %s) = %v", tk.ID, err)
			continue
		}
		sameToken("AuthTokenByHash(hash of "+tk.ID+")", got, tk)
	}
	if got, err := at.AuthTokenByHash(ctx, hash("nope")); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("AuthTokenByHash(unknown) = %v, %v; want ErrNotFound", got, err)
	}
	if got, err := at.AuthTokenByHash(ctx, toks[0].Hash[:16]); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("AuthTokenByHash(prefix of a hash) = %v, %v; want ErrNotFound", got, err)
	}

	for _, dup := range []store.AuthToken{
		{ID: "tok1", Hash: hash("other"), Created: at0(4), Expires: at0(5)},
		{ID: "tok4", Hash: hash("secret2"), Created: at0(4), Expires: at0(5)},
	} {
		if err := at.PutAuthToken(ctx, dup); !errors.Is(err, store.ErrExists) {
			t.Errorf("PutAuthToken(id %s, taken id or hash) = %v, want ErrExists", dup.ID, err)
		}
	}

	if err := at.RevokeAuthToken(ctx, "tok2"); err != nil {
		t.Errorf("RevokeAuthToken(tok2) = %v", err)
	}
	toks[1].Revoked = true
	if err := at.RevokeAuthToken(ctx, "nope"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("RevokeAuthToken(nope) = %v, want ErrNotFound", err)
	}
	if got, err := at.AuthTokenByHash(ctx, toks[1].Hash); err != nil {
		t.Errorf("AuthTokenByHash(hash of tok2) = %v", err)
	} else {
		sameToken("AuthTokenByHash(hash of tok2) after revoking", got, toks[1])
	}

	list, err := at.AuthTokens(ctx)
	if err != nil {
		t.Fatalf("AuthTokens() = %v", err)
	}
	want := []store.AuthToken{toks[2], toks[1], toks[0]} // newest first
	if len(list) != len(want) {
		t.Fatalf("AuthTokens() returned %d tokens, want %d", len(list), len(want))
	}
	for i := range want {
		sameToken(fmt.Sprintf("AuthTokens()[%d]", i), &list[i], want[i])
	}
}

// at0 returns t0 plus m minutes.
func at0(m int) time.Time { return t0.Add(time.Duration(m) * time.Minute) }

func (r *runner) testContext(t *testing.T) {
	s := r.newStore(t)
	put(t, s, ver("Patient", "a", 1, at(1)))
	ctx, cancel := context.WithCancel(context.Background())
	cancel()

	calls := map[string]func() error{
		"Read":  func() error { _, err := s.Read(ctx, "Patient", "a"); return err },
		"VRead": func() error { _, err := s.VRead(ctx, "Patient", "a", 1); return err },
		"History": func() error {
			_, err := s.History(ctx, store.HistoryQuery{})
			return err
		},
		"List": func() error { _, err := s.List(ctx, store.ListQuery{Type: "Patient"}); return err },
		"Update": func() error {
			return s.Update(ctx, func(tx store.Tx) error {
				return tx.Put(ctx, ver("Patient", "a", 2, at(2)), nil)
			})
		},
		"WrappedKey": func() error { _, _, err := s.Keys().WrappedKey(ctx, "Patient/a"); return err },
		"PutWrappedKey": func() error {
			_, err := s.Keys().PutWrappedKey(ctx, "Patient/a", []byte("k"))
			return err
		},
	}
	for name, call := range calls {
		if err := call(); !errors.Is(err, context.Canceled) {
			t.Errorf("%s with a cancelled context = %v, want context.Canceled", name, err)
		}
	}

	// A context that ends while fn runs: nothing commits.
	ctx, cancel = context.WithCancel(context.Background())
	ran := false
	err := s.Update(ctx, func(tx store.Tx) error {
		tx.AfterCommit(func() { ran = true })
		if err := tx.Put(ctx, ver("Patient", "a", 2, at(2)), nil); err != nil {
			return err
		}
		cancel()
		return nil
	})
	if !errors.Is(err, context.Canceled) {
		t.Errorf("Update whose context ended in fn = %v, want context.Canceled", err)
	}
	if ran {
		t.Errorf("AfterCommit function ran although the context ended")
	}
	checkRead(t, s, ver("Patient", "a", 1, at(1)))
	checkVNotFound(t, s, "Patient", "a", 2)
	checkNotFound(t, s, "Patient", "b")
	if _, _, err := s.Keys().WrappedKey(context.Background(), "Patient/a"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("WrappedKey(Patient/a) = %v, want ErrNotFound", err)
	}
	put(t, s, ver("Patient", "a", 2, at(3)))
}

func (r *runner) testClosed(t *testing.T) {
	ctx := context.Background()
	s := r.newStore(t)
	put(t, s, ver("Patient", "a", 1, at(1)))
	ks := s.Keys()
	if _, err := ks.PutWrappedKey(ctx, "store", []byte("k")); err != nil {
		t.Fatalf("PutWrappedKey(store) = %v", err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("Close() = %v", err)
	}
	ran := false
	calls := map[string]func() error{
		"Read":  func() error { _, err := s.Read(ctx, "Patient", "a"); return err },
		"VRead": func() error { _, err := s.VRead(ctx, "Patient", "a", 1); return err },
		"History": func() error {
			_, err := s.History(ctx, store.HistoryQuery{})
			return err
		},
		"List": func() error { _, err := s.List(ctx, store.ListQuery{Type: "Patient"}); return err },
		"Update": func() error {
			return s.Update(ctx, func(tx store.Tx) error { ran = true; return nil })
		},
		"Keys().WrappedKey": func() error { _, _, err := ks.WrappedKey(ctx, "store"); return err },
		"Keys().WrappedKeyByID": func() error {
			_, _, err := ks.WrappedKeyByID(ctx, 1)
			return err
		},
		"Keys().PutWrappedKey": func() error {
			_, err := ks.PutWrappedKey(ctx, "Patient/a", []byte("k"))
			return err
		},
		"later Keys().WrappedKey": func() error { _, _, err := s.Keys().WrappedKey(ctx, "store"); return err },
	}
	if at, ok := s.(store.AuthTokens); ok {
		calls["PutAuthToken"] = func() error {
			return at.PutAuthToken(ctx, store.AuthToken{ID: "x", Hash: []byte("h"), Created: t0, Expires: t0})
		}
		calls["AuthTokenByHash"] = func() error { _, err := at.AuthTokenByHash(ctx, []byte("h")); return err }
		calls["AuthTokens"] = func() error { _, err := at.AuthTokens(ctx); return err }
		calls["RevokeAuthToken"] = func() error { return at.RevokeAuthToken(ctx, "x") }
	}
	for name, call := range calls {
		if err := call(); !errors.Is(err, store.ErrClosed) {
			t.Errorf("%s after Close = %v, want ErrClosed", name, err)
		}
	}
	if ran {
		t.Errorf("Update after Close ran its function")
	}
	if err := s.Close(); err != nil && !errors.Is(err, store.ErrClosed) {
		t.Errorf("second Close() = %v, want nil or ErrClosed", err)
	}
}
