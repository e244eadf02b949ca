package keyring

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"testing"
)

// testDataKey returns a DataKey over random bytes.
func testDataKey(tb testing.TB, id int64, owner string) *DataKey {
	tb.Helper()
	raw := make([]byte, dataKeySize)
	rand.Read(raw)
	k, err := newDataKey(id, owner, raw)
	if err != nil {
		tb.Fatal(err)
	}
	return k
}

func TestNewDataKey(t *testing.T) {
	raw := bytes.Repeat([]byte{0x42}, dataKeySize)
	k, err := newDataKey(7, "Patient/1", raw)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(raw, make([]byte, dataKeySize)) {
		t.Errorf("newDataKey left the raw key bytes in its argument")
	}
	if k.ID() != 7 || k.Owner() != "Patient/1" {
		t.Errorf("ID(), Owner() = %d, %q; want 7, Patient/1", k.ID(), k.Owner())
	}
	for _, n := range []int{0, 16, 31, 33} {
		if _, err := newDataKey(1, "store", make([]byte, n)); err == nil {
			t.Errorf("newDataKey(%d bytes) succeeded", n)
		}
	}
}

func TestSealOpen(t *testing.T) {
	k := testDataKey(t, 1, "Patient/1")
	tests := []struct {
		name      string
		plaintext []byte
		ad        []byte
	}{
		{"empty", nil, nil},
		{"short", []byte(`{"resourceType":"Patient"}`), ResourceAD("Patient", "p1", 1)},
		{"4 KiB", bytes.Repeat([]byte("x"), 4096), ResourceAD("Observation", "o1", 3)},
		{"empty ad", []byte("data"), []byte{}},
	}
	for _, tt := range tests {
		sealed := k.Seal(tt.plaintext, tt.ad)
		if len(sealed) != len(tt.plaintext)+SealOverhead {
			t.Errorf("%s: len(Seal) = %d, want %d", tt.name, len(sealed), len(tt.plaintext)+SealOverhead)
		}
		if sealed[0] != 0x01 {
			t.Errorf("%s: Seal starts with %#x, want version 0x01", tt.name, sealed[0])
		}
		if len(tt.plaintext) > 8 && bytes.Contains(sealed, tt.plaintext[:8]) {
			t.Errorf("%s: Seal output holds plaintext", tt.name)
		}
		got, err := k.Open(sealed, tt.ad)
		if err != nil || !bytes.Equal(got, tt.plaintext) {
			t.Errorf("%s: Open(Seal(x)) = %q, %v; want x", tt.name, got, err)
		}
	}
}

func TestOpenTampered(t *testing.T) {
	k := testDataKey(t, 1, "Patient/1")
	ad := ResourceAD("Patient", "p1", 1)
	sealed := k.Seal([]byte(`{"resourceType":"Patient","id":"p1"}`), ad)
	bad := func(what string, s []byte) {
		t.Helper()
		if got, err := k.Open(s, ad); !errors.Is(err, ErrDecrypt) || got != nil {
			t.Errorf("Open(%s) = %q, %v; want ErrDecrypt", what, got, err)
		}
	}
	for i := range sealed {
		for _, mask := range []byte{0x01, 0x80} {
			s := bytes.Clone(sealed)
			s[i] ^= mask
			bad(fmt.Sprintf("byte %d ^ %#02x", i, mask), s)
		}
	}
	for n := range len(sealed) {
		bad(fmt.Sprintf("cut to %d", n), sealed[:n])
	}
	bad("one byte more", append(bytes.Clone(sealed), 0))
	bad("nil", nil)
	if _, err := k.Open(sealed, ad); err != nil {
		t.Errorf("Open(untouched) = %v", err)
	}
}

func TestOpenWrongAD(t *testing.T) {
	k := testDataKey(t, 1, "Patient/1")
	sealed := k.Seal([]byte("resource"), ResourceAD("Observation", "o1", 2))
	tests := []struct {
		name string
		ad   []byte
	}{
		{"other type", ResourceAD("Condition", "o1", 2)},
		{"other id", ResourceAD("Observation", "o2", 2)},
		{"older version", ResourceAD("Observation", "o1", 1)},
		{"newer version", ResourceAD("Observation", "o1", 3)},
		{"type and id swapped", ResourceAD("o1", "Observation", 2)},
		{"no ad", nil},
		{"ad with a byte more", append(ResourceAD("Observation", "o1", 2), 0)},
	}
	for _, tt := range tests {
		if _, err := k.Open(sealed, tt.ad); !errors.Is(err, ErrDecrypt) {
			t.Errorf("Open(%s) = %v, want ErrDecrypt", tt.name, err)
		}
	}
	if _, err := k.Open(sealed, ResourceAD("Observation", "o1", 2)); err != nil {
		t.Errorf("Open(right ad) = %v", err)
	}
}

func TestOpenWrongKey(t *testing.T) {
	k1 := testDataKey(t, 1, "Patient/1")
	k2 := testDataKey(t, 2, "Patient/2")
	ad := ResourceAD("Patient", "p1", 1)
	if _, err := k2.Open(k1.Seal([]byte("resource"), ad), ad); !errors.Is(err, ErrDecrypt) {
		t.Errorf("Open with another key = %v, want ErrDecrypt", err)
	}
}

func TestSealNoncesDiffer(t *testing.T) {
	k := testDataKey(t, 1, "store")
	seen := map[string]bool{}
	for range 10000 {
		s := k.Seal([]byte("same plaintext"), nil)
		nonce := string(s[1 : 1+gcmNonceSize])
		if seen[nonce] {
			t.Fatalf("Seal repeated nonce %x", nonce)
		}
		seen[nonce] = true
	}
}

func TestResourceAD(t *testing.T) {
	type triple struct {
		typ, id string
		version int64
	}
	pairs := []struct{ a, b triple }{
		{triple{"a", "bc", 1}, triple{"ab", "c", 1}},
		{triple{"", "ab", 1}, triple{"a", "b", 1}},
		{triple{"a\x00", "b", 1}, triple{"a", "\x00b", 1}},
		{triple{"Patient", "1", 1}, triple{"Patient", "1", 2}},
		{triple{"Patient", "1", 1}, triple{"Patient", "1", -1}},
		{triple{"Patient", "1", 256}, triple{"Patient", "1\x00\x00\x00\x00\x00\x00\x01", 0}},
		{triple{"Patient", "", 1}, triple{"", "Patient", 1}},
	}
	for _, p := range pairs {
		a := ResourceAD(p.a.typ, p.a.id, p.a.version)
		b := ResourceAD(p.b.typ, p.b.id, p.b.version)
		if bytes.Equal(a, b) {
			t.Errorf("ResourceAD%q == ResourceAD%q", fmt.Sprint(p.a), fmt.Sprint(p.b))
		}
	}
	// The encoding is part of the stored format: pin it.
	got := hex.EncodeToString(ResourceAD("Patient", "p1", 3))
	want := hex.EncodeToString([]byte("ehrvault resource v1\x00")) +
		"00000007" + hex.EncodeToString([]byte("Patient")) +
		"00000002" + hex.EncodeToString([]byte("p1")) +
		"0000000000000003"
	if got != want {
		t.Errorf("ResourceAD(Patient, p1, 3) = %s, want %s", got, want)
	}
}

func FuzzDataKeyOpen(f *testing.F) {
	k := testDataKey(f, 1, "store")
	f.Add(k.Seal([]byte("hello"), nil), []byte(nil))
	f.Add([]byte{0x01}, []byte("ad"))
	f.Add([]byte{}, []byte{})
	f.Fuzz(func(t *testing.T, sealed, ad []byte) {
		if _, err := k.Open(sealed, ad); err != nil && !errors.Is(err, ErrDecrypt) {
			t.Errorf("Open = %v, want nil or ErrDecrypt", err)
		}
	})
}

func BenchmarkSeal4K(b *testing.B) {
	k := testDataKey(b, 1, "Patient/1")
	pt := make([]byte, 4096)
	ad := ResourceAD("Observation", "0f1e2d3c4b5a69788796a5b4c3d2e1f0", 1)
	b.SetBytes(int64(len(pt)))
	b.ReportAllocs()
	for b.Loop() {
		k.Seal(pt, ad)
	}
}

func BenchmarkOpen4K(b *testing.B) {
	k := testDataKey(b, 1, "Patient/1")
	ad := ResourceAD("Observation", "0f1e2d3c4b5a69788796a5b4c3d2e1f0", 1)
	sealed := k.Seal(make([]byte, 4096), ad)
	b.SetBytes(4096)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := k.Open(sealed, ad); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkResourceAD(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		ResourceAD("Observation", "0f1e2d3c4b5a69788796a5b4c3d2e1f0", 12)
	}
}
