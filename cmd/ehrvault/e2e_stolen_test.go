package main

import (
	"bytes"
	"encoding/base64"
	"encoding/binary"
	"fmt"
	"math"
	"net/url"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/ehrvault/ehrvault/internal/fhir"
	"github.com/ehrvault/ehrvault/internal/sharedtest"
	"github.com/ehrvault/ehrvault/internal/synth"
)

// writeSynthetic writes the shared resources and n synthetic patients of
// seed into a temporary folder, as "ehrvault synth" does.
func writeSynthetic(t testing.TB, seed uint64, n int) string {
	t.Helper()
	dir := t.TempDir()
	g := synth.New(seed)
	shared, err := g.Shared()
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "shared.json"), shared, 0o600); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < n; i++ {
		b, err := g.PatientBundle(i)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, fmt.Sprintf("patient-%06d.json", i+1)), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// secretSet holds the identifying values a stolen-file scan looks for, by
// category, and the patterns that stand for each value in raw bytes.
type secretSet struct {
	byCategory map[string]map[string]bool
}

func newSecretSet() *secretSet { return &secretSet{byCategory: map[string]map[string]bool{}} }

func (s *secretSet) add(category, v string) {
	v = strings.TrimSpace(v)
	if len(v) < 3 {
		return
	}
	if s.byCategory[category] == nil {
		s.byCategory[category] = map[string]bool{}
	}
	s.byCategory[category][v] = true
}

// patterns returns the byte strings to search for: each value as written
// and lower-cased (a blind index normalizes case), quoted as in JSON when it
// is short (so random ciphertext cannot match it by chance: a 7-byte
// pattern has a 2^-56 chance per position).
func (s *secretSet) patterns() map[string]string {
	out := map[string]string{}
	for cat, vals := range s.byCategory {
		for v := range vals {
			for _, form := range []string{v, strings.ToLower(v)} {
				p := form
				if len(p) < 8 {
					p = `"` + p + `"`
				}
				out[p] = cat + ": " + v
			}
		}
	}
	return out
}

// collectSecrets gathers the identifying values of a set of resources:
// names, identifiers (SSN, MRN, licences, member ids), birth dates,
// addresses, phone numbers and e-mail addresses, and free text (notes,
// narratives, attached documents).
func collectSecrets(resources []fhir.Value) *secretSet {
	s := newSecretSet()
	for i := range resources {
		res := &resources[i]
		typ := res.Str("resourceType")
		if typ == "Patient" || typ == "RelatedPerson" {
			for _, n := range items(res.Get("name")) {
				var full []string
				for _, g := range items(n.Get("given")) {
					s.add("name", g.Text)
					full = append(full, g.Text)
				}
				s.add("name", n.Str("family"))
				full = append(full, n.Str("family"))
				s.add("name", strings.Join(full, " "))
			}
			s.add("birth date", res.Str("birthDate"))
			for _, a := range items(res.Get("address")) {
				for _, l := range items(a.Get("line")) {
					s.add("address", l.Text)
				}
				s.add("address", a.Str("city")+", "+a.Str("state"))
			}
			for _, c := range items(res.Get("telecom")) {
				s.add("telecom", c.Str("value"))
			}
			for _, id := range items(res.Get("identifier")) {
				cat := "identifier"
				if strings.Contains(id.Str("system"), "us-ssn") {
					cat = "SSN"
				}
				for _, c := range items(id.Get("type").Get("coding")) {
					if c.Str("code") == "MR" {
						cat = "MRN"
					}
				}
				if id.Str("value") != res.Str("id") {
					s.add(cat, id.Str("value"))
				}
			}
		}
		walkStrings(res, "", func(path string, v string) {
			switch {
			case strings.HasSuffix(path, "note.text"), strings.HasSuffix(path, ".description") && len(v) > 40:
				s.add("free text", v)
			case strings.HasSuffix(path, "text.div"):
				for _, part := range strings.FieldsFunc(stripTags(v), func(r rune) bool { return r == '\n' }) {
					if len(strings.TrimSpace(part)) >= 12 {
						s.add("narrative", part)
					}
				}
			case strings.HasSuffix(path, "attachment.data"):
				s.add("attachment", v[:min(len(v), 64)])
				if dec, err := base64.StdEncoding.DecodeString(v); err == nil {
					for _, line := range strings.Split(string(dec), "\n") {
						if len(strings.TrimSpace(line)) >= 16 {
							s.add("attached note", line)
						}
					}
				}
			}
		})
	}
	return s
}

func items(v *fhir.Value) []*fhir.Value {
	if v == nil {
		return nil
	}
	if v.Kind != fhir.Array {
		return []*fhir.Value{v}
	}
	out := make([]*fhir.Value, len(v.Items))
	for i := range v.Items {
		out[i] = &v.Items[i]
	}
	return out
}

func walkStrings(v *fhir.Value, path string, f func(path, s string)) {
	switch v.Kind {
	case fhir.String:
		f(path, v.Text)
	case fhir.Array:
		for i := range v.Items {
			walkStrings(&v.Items[i], path, f)
		}
	case fhir.Object:
		for i := range v.Fields {
			walkStrings(&v.Fields[i].Value, path+"."+v.Fields[i].Name, f)
		}
	}
}

func stripTags(s string) string {
	var b strings.Builder
	in := false
	for _, r := range s {
		switch {
		case r == '<':
			in = true
			b.WriteRune('\n')
		case r == '>':
			in = false
		case !in:
			b.WriteRune(r)
		}
	}
	return b.String()
}

// scan returns the patterns that occur in data. It filters positions by a
// bitset of 4-byte prefixes, then compares candidates exactly, so that one
// pass over a large file checks thousands of patterns.
func scan(data []byte, patterns map[string]string) []string {
	const bits = 1 << 24
	filter := make([]uint64, bits/64)
	byPrefix := map[uint32][]string{}
	h := func(w uint32) uint32 { return (w * 2654435761) >> 8 }
	for p := range patterns {
		if len(p) < 4 {
			continue
		}
		w := uint32(p[0]) | uint32(p[1])<<8 | uint32(p[2])<<16 | uint32(p[3])<<24
		x := h(w)
		filter[x/64] |= 1 << (x % 64)
		byPrefix[w] = append(byPrefix[w], p)
	}
	found := map[string]bool{}
	for i := 0; i+4 <= len(data); i++ {
		w := uint32(data[i]) | uint32(data[i+1])<<8 | uint32(data[i+2])<<16 | uint32(data[i+3])<<24
		x := h(w)
		if filter[x/64]&(1<<(x%64)) == 0 {
			continue
		}
		for _, p := range byPrefix[w] {
			if bytes.HasPrefix(data[i:], []byte(p)) {
				found[p] = true
			}
		}
	}
	out := make([]string, 0, len(found))
	for p := range found {
		out = append(out, patterns[p])
	}
	sort.Strings(out)
	return out
}

func TestScanFindsPlantedValues(t *testing.T) {
	// The scanner itself must be able to fail.
	s := newSecretSet()
	s.add("name", "Koepp")
	s.add("SSN", "999-12-3456")
	s.add("address", "1 Main Street Apt 4")
	data := append(bytes.Repeat([]byte{0x8f, 0x11, 0x3a}, 5000), []byte(`xx"koepp"yy 999-12-3456 zz`)...)
	got := scan(data, s.patterns())
	if len(got) != 2 {
		t.Fatalf("scan found %v, want the name (lower case, quoted) and the SSN", got)
	}
}

// TestStolenFilesRevealNothing is the rule ehrvault exists for: after the
// Synthea samples are imported and served, the raw bytes of every file in
// the data directory and of the server's log hold none of the patients'
// identifying values.
func TestStolenFilesRevealNothing(t *testing.T) {
	ts := newTestServer(t)
	var resources []fhir.Value
	for _, set := range []string{"smart-r4-2019", "fhir-data-pipes"} {
		dir := sharedtest.Dir(t, "testdata", "synthea", set)
		importAll(t, ts, dir)
		resources = append(resources, bundleResources(t, dir)...)
	}
	// The Synthea samples carry no clinical notes; the synthetic patients
	// do, so they stand for the free text a clinic writes.
	synthDir := writeSynthetic(t, 1, 30)
	importAll(t, ts, synthDir)
	resources = append(resources, bundleResources(t, synthDir)...)
	secrets := collectSecrets(resources)
	g := synth.New(1)
	for i := 0; i < 30; i++ {
		for _, v := range g.Identifying(i) {
			secrets.add("synthetic", v)
		}
	}
	for _, cat := range []string{"name", "SSN", "MRN", "birth date", "address", "telecom", "free text", "narrative", "attached note", "synthetic"} {
		if len(secrets.byCategory[cat]) == 0 {
			t.Errorf("no %s values collected: the scan would prove nothing about them", cat)
		}
		t.Logf("%-13s %5d values", cat, len(secrets.byCategory[cat]))
	}
	// Exercise the API so the log holds every kind of line: reads,
	// searches by identifying values, refused writes quoting nothing.
	n := 0
	for i := range resources {
		res := &resources[i]
		if res.Str("resourceType") != "Patient" || n >= 10 {
			continue
		}
		n++
		ts.do("GET", "/Patient/"+res.Str("id"), nil).want(t, 200)
		for _, id := range items(res.Get("identifier")) {
			ts.do("GET", "/Patient?identifier="+url.QueryEscape(id.Str("system")+"|"+id.Str("value")), nil).want(t, 200)
		}
		bad := res.Clone()
		bad.Set("birthDate", fhir.StringValue(res.Str("birthDate")+"T99"))
		ts.do("PUT", "/Patient/"+res.Str("id"), fhir.Marshal(&bad)).want(t, 400)
	}
	// Searches by name prefix and birth date: their values reach the
	// index, the audit log and the cursors only as keyed hashes.
	n = 0
	for i := range resources {
		res := &resources[i]
		if res.Str("resourceType") != "Patient" || n >= 10 {
			continue
		}
		n++
		fam := res.Get("name").Items[0].Str("family")
		r := ts.do("GET", "/Patient?family="+url.QueryEscape(fam[:min(len(fam), 3)])+"&birthdate=le"+res.Str("birthDate")+"&_count=1", nil).want(t, 200)
		if next := linkOf(r, "next"); next != "" {
			ts.do("GET", strings.TrimPrefix(next, ts.url), nil).want(t, 200)
		}
	}
	patterns := secrets.patterns()
	// Birth and death dates are indexed only as keyed hashes: no file may
	// hold one as a number either (as the store holds clinical dates:
	// milliseconds since 1970, an 8-byte float, in either byte order).
	numbers := 0
	for i := range resources {
		res := &resources[i]
		if res.Str("resourceType") != "Patient" {
			continue
		}
		for _, d := range []string{res.Str("birthDate"), res.Str("deceasedDateTime")} {
			day, err := time.Parse("2006-01-02", d[:min(len(d), 10)])
			if err != nil {
				continue
			}
			for _, ms := range []int64{day.UnixMilli(), day.AddDate(0, 0, 1).UnixMilli() - 1} {
				bits := math.Float64bits(float64(ms))
				var be, le [8]byte
				binary.BigEndian.PutUint64(be[:], bits)
				binary.LittleEndian.PutUint64(le[:], bits)
				patterns[string(be[:])] = "birth or death date as a number: " + d
				patterns[string(le[:])] = "birth or death date as a number: " + d
				numbers++
			}
		}
	}
	if numbers < 100 {
		t.Errorf("only %d birth and death dates to look for as numbers", numbers)
	}
	check := func(when string) {
		files, err := filepath.Glob(filepath.Join(ts.v.dir, "*"))
		if err != nil || len(files) < 2 {
			t.Fatalf("data directory holds %v", files)
		}
		for _, f := range files {
			data, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			if found := scan(data, patterns); len(found) > 0 {
				t.Errorf("%s: %s (%d bytes) holds %d identifying values, e.g. %q", when, filepath.Base(f), len(data), len(found), found[0])
			} else {
				t.Logf("%s: %s: %d bytes, clean", when, filepath.Base(f), len(data))
			}
		}
		if found := scan(ts.logs.Bytes(), patterns); len(found) > 0 {
			t.Errorf("%s: the server log holds %d identifying values, e.g. %q", when, len(found), found[0])
		}
	}
	check("while serving")
	ts.srv.Close()
	if err := ts.v.Close(); err != nil {
		t.Fatal(err)
	}
	check("after shutdown")
	if ts.logs.Len() == 0 {
		t.Error("the server logged nothing: the log scan proves nothing")
	}
}
