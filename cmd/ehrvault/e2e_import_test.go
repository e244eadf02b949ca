package main

import (
	"context"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/ehrvault/ehrvault/internal/fhir"
	"github.com/ehrvault/ehrvault/internal/importer"
	"github.com/ehrvault/ehrvault/internal/records"
	"github.com/ehrvault/ehrvault/internal/sharedtest"
)

// importAll imports paths and fails the test on any problem.
func importAll(t testing.TB, ts *testServer, paths ...string) *importer.Report {
	t.Helper()
	rep, err := importer.Import(context.Background(), ts.v.records, paths, importer.Options{})
	if err != nil {
		t.Fatalf("import: %v", err)
	}
	for i, p := range rep.Problems {
		if i == 20 {
			t.Errorf("... %d problems in all", len(rep.Problems))
			break
		}
		t.Errorf("import problem: %s", p)
	}
	if len(rep.Problems) > 0 {
		t.FailNow()
	}
	return rep
}

// bundleResources returns every entry resource of the Bundle files in dir,
// with urn:uuid fullUrls mapped to Type/id as a server rewrites them.
func bundleResources(t *testing.T, dir string) []fhir.Value {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(dir, "*.json"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no bundles in %s", dir)
	}
	var out []fhir.Value
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		b, err := fhir.Parse(data, 0)
		if err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		for _, e := range b.Get("entry").Items {
			out = append(out, *e.Get("resource"))
		}
	}
	return out
}

func TestImportSynthea(t *testing.T) {
	ts := newTestServer(t)
	for _, set := range []string{"smart-r4-2019", "fhir-data-pipes"} {
		t.Run(set, func(t *testing.T) {
			dir := sharedtest.Dir(t, "testdata", "synthea", set)
			rep := importAll(t, ts, dir)
			want := bundleResources(t, dir)
			if rep.Entries != len(want) {
				t.Errorf("import processed %d entries, the files hold %d", rep.Entries, len(want))
			}
			// Every resource reads back under its own id.
			byType := map[string]int{}
			for _, res := range want {
				typ, id := res.Str("resourceType"), res.Str("id")
				got, err := ts.v.records.Read(context.Background(), typ, id, nil)
				if err != nil {
					t.Fatalf("read %s/%s: %v", typ, id, err)
				}
				back, err := fhir.Parse(got.JSON, 0)
				if err != nil {
					t.Fatalf("stored %s/%s does not parse: %v", typ, id, err)
				}
				if issues := fhir.Validate(&back); len(issues) > 0 {
					t.Fatalf("stored %s/%s is invalid: %v", typ, id, issues[0])
				}
				byType[typ]++
			}
			t.Logf("%s: %d resources read back (%d types); import: %d created, %d updated, %d unchanged, %d matched",
				set, len(want), len(byType), rep.Created, rep.Updated, rep.Unchanged, rep.Existing)
			// Importing again creates nothing and writes no version.
			again := importAll(t, ts, dir)
			if again.Created != 0 || again.Updated != 0 {
				t.Errorf("second import created %d and updated %d resources", again.Created, again.Updated)
			}
		})
	}
	// The fhir-data-pipes patients point at their practitioners through
	// conditional references; after import they are literal.
	r := ts.do("GET", "/Encounter?_count=5", nil).want(t, 200)
	for _, e := range entries(r) {
		res := e.(map[string]any)["resource"].(map[string]any)
		for _, p := range res["participant"].([]any) {
			ref := p.(map[string]any)["individual"].(map[string]any)["reference"].(string)
			if strings.Contains(ref, "?") || strings.HasPrefix(ref, "urn:") {
				t.Errorf("reference %q was not resolved", ref)
			}
		}
	}
}

// TestExamplesRoundTrip stores every official R4 example as a resource
// (Bundles too, as Bundle resources) and reads it back equal in meaning.
func TestExamplesRoundTrip(t *testing.T) {
	ts := newTestServer(t)
	dir := sharedtest.Dir(t, "testdata", "fhir-examples")
	files, _ := filepath.Glob(filepath.Join(dir, "*.json"))
	if len(files) < 700 {
		t.Fatalf("only %d examples in %s", len(files), dir)
	}
	types := map[string]bool{}
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		orig, err := fhir.Parse(data, 0)
		if err != nil {
			t.Fatalf("%s: %v", filepath.Base(f), err)
		}
		typ, id := orig.Str("resourceType"), orig.Str("id")
		types[typ] = true
		var r *response
		if id != "" {
			r = ts.do("PUT", "/"+typ+"/"+id, data)
		} else {
			r = ts.do("POST", "/"+typ, data)
		}
		if r.status != 200 && r.status != 201 {
			t.Errorf("%s: store gave %d: %s", filepath.Base(f), r.status, r.outcomeText())
			continue
		}
		if id == "" {
			id = r.str("id")
		}
		got := ts.do("GET", "/"+typ+"/"+id, nil).want(t, 200)
		back, err := fhir.Parse(got.body, 0)
		if err != nil {
			t.Fatal(err)
		}
		if !sameMeaning(&orig, &back, id) {
			t.Errorf("%s: read back differs from what was stored", filepath.Base(f))
		}
	}
	t.Logf("%d examples of %d resource types stored and read back", len(files), len(types))
}

// sameMeaning compares a stored example with what was read back, ignoring
// meta.versionId and meta.lastUpdated (set by the server) and the id the
// server assigned when the example had none.
func sameMeaning(orig, back *fhir.Value, id string) bool {
	a, b := orig.Clone(), back.Clone()
	for _, v := range []*fhir.Value{&a, &b} {
		if m := v.Get("meta"); m != nil {
			for _, n := range []string{"versionId", "lastUpdated", "_versionId", "_lastUpdated"} {
				m.Delete(n)
			}
			if len(m.Fields) == 0 {
				v.Delete("meta")
			}
		}
	}
	if a.Get("id") == nil {
		a.Set("id", fhir.StringValue(id))
	}
	return fhir.Equal(&a, &b)
}

func TestImportExamplesFolder(t *testing.T) {
	ts := newTestServer(t)
	dir := sharedtest.Dir(t, "testdata", "fhir-examples")
	rep := importAll(t, ts, dir)
	if rep.Files < 700 {
		t.Errorf("imported %d files", rep.Files)
	}
	t.Logf("examples: %d files, %d entries, %d created", rep.Files, rep.Entries, rep.Created)
}

func TestImportReportsBadEntries(t *testing.T) {
	ts := newTestServer(t)
	dir := t.TempDir()
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	write("a-batch.json", `{"resourceType":"Bundle","type":"batch","entry":[
	 {"resource":{"resourceType":"Patient","id":"good1"},"request":{"method":"POST","url":"Patient"}},
	 {"resource":{"resourceType":"Patient","id":"bad","gender":"robot"},"request":{"method":"POST","url":"Patient"}},
	 {"resource":{"resourceType":"Patient","id":"good2"},"request":{"method":"POST","url":"Patient"}}]}`)
	write("b.ndjson", "{\"resourceType\":\"Patient\",\"id\":\"nd1\"}\n\n{\"resourceType\":\"Patient\",\"id\":\"nd2\",\"birthDate\":\"1980-13-01\"}\n{\"resourceType\":\"Patient\",\"id\":\"nd3\"}\n")
	write("c-collection.json", `{"resourceType":"Bundle","type":"collection","entry":[{"fullUrl":"urn:uuid:x"},{"resource":{"resourceType":"Patient","id":"col1","active":"yes"}}]}`)
	write("d-broken.json", `{"resourceType":"Patient",`)
	write("e-single.json", `{"resourceType":"Patient","id":"single"}`)
	write("notes.txt", "not FHIR")
	rep, err := importer.Import(context.Background(), ts.v.records, []string{dir}, importer.Options{})
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, p := range rep.Problems {
		got = append(got, p.String())
	}
	sort.Strings(got)
	want := []string{
		filepath.Join(dir, "a-batch.json") + ": entry 1: Bundle.entry[1].resource.gender",
		filepath.Join(dir, "b.ndjson") + ": line 3: Patient.birthDate",
		filepath.Join(dir, "c-collection.json") + ": entry 1: Bundle.entry[1].resource.active",
		filepath.Join(dir, "d-broken.json") + ": invalid JSON",
	}
	if len(got) != len(want) {
		t.Fatalf("problems:\n%s\nwant %d", strings.Join(got, "\n"), len(want))
	}
	for i := range want {
		if !strings.HasPrefix(got[i], want[i]) {
			t.Errorf("problem %d = %q, want it to start %q", i, got[i], want[i])
		}
	}
	for _, id := range []string{"good1", "good2", "nd1", "nd3", "single"} {
		if _, err := ts.v.records.Read(context.Background(), "Patient", id, nil); err != nil {
			t.Errorf("Patient/%s was not loaded: %v", id, err)
		}
	}
	for _, id := range []string{"bad", "nd2", "col1"} {
		if _, err := ts.v.records.Read(context.Background(), "Patient", id, nil); records.CodeOf(err) != records.NotFound {
			t.Errorf("Patient/%s: %v, want not found", id, err)
		}
	}
	if len(rep.Skipped) != 1 {
		t.Errorf("skipped %v", rep.Skipped)
	}
	// Strict stops at the first problem.
	_, err = importer.Import(context.Background(), ts.v.records, []string{dir}, importer.Options{Strict: true})
	if err == nil {
		t.Error("strict import of bad input succeeded")
	}
}
