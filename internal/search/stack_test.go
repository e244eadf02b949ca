package search

import (
	"context"
	"encoding/json"
	"math/rand/v2"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/ehrvault/ehrvault/internal/access"
	"github.com/ehrvault/ehrvault/internal/fhir"
	"github.com/ehrvault/ehrvault/internal/keyring"
	"github.com/ehrvault/ehrvault/internal/records"
	"github.com/ehrvault/ehrvault/internal/sharedtest"
	"github.com/ehrvault/ehrvault/internal/store/sqlite"
)

// stack is the whole of search over a real store: SQLite, the keyring,
// records and the engine, as ehrvault serve builds them.
type stack struct {
	db  *sqlite.DB
	rec *records.Service
	ix  *Indexer
	eng *Engine
	// all holds every stored resource as the store returns it, by type
	// and id.
	all map[string]map[string]*fhir.Value
}

func newStack(t testing.TB, o sqlite.Options) *stack {
	t.Helper()
	ctx := context.Background()
	dir := t.TempDir()
	keyPath := filepath.Join(dir, "ehrvault.key")
	pass := []byte("a test passphrase that is long enough")
	if err := keyring.CreateKeyFile(keyPath, pass, keyring.TestKDFParams); err != nil {
		t.Fatal(err)
	}
	kp, err := keyring.OpenKeyFile(keyPath, pass)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(kp.Close)
	o.Create = true
	db, err := sqlite.Open(ctx, filepath.Join(dir, "ehrvault.db"), o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	keys := keyring.New(kp, 10000)
	ik, err := keys.Derived(ctx, keyring.PurposeIndex)
	if err != nil {
		t.Fatal(err)
	}
	rows, err := records.RowIDs(ctx, keys)
	if err != nil {
		t.Fatal(err)
	}
	ix := NewIndexer(ik, rows)
	rec, err := records.New(ctx, records.Config{Store: db, Keys: keys, Indexer: ix})
	if err != nil {
		t.Fatal(err)
	}
	pages, err := keys.Sealer(ctx, keyring.PurposeSearchPage)
	if err != nil {
		t.Fatal(err)
	}
	return &stack{db: db, rec: rec, ix: ix, eng: NewEngine(ix, rec, db, pages), all: map[string]map[string]*fhir.Value{}}
}

// testLabels are the security labels load gives some resources.
var testLabels = []string{
	"http://terminology.hl7.org/CodeSystem/v3-Confidentiality|R",
	"http://terminology.hl7.org/CodeSystem/v3-Confidentiality|V",
	"http://terminology.hl7.org/CodeSystem/v3-ActCode|HIV",
}

// load imports the transaction Bundles of a Synthea folder (the first max
// of them, if max > 0), after giving
// one resource in eight one or two of testLabels (rnd decides), and then
// reads everything back into s.all.
func (s *stack) load(t testing.TB, rnd *rand.Rand, folder string, max int) {
	t.Helper()
	ctx := context.Background()
	files, err := filepath.Glob(filepath.Join(sharedtest.Dir(t, "testdata", "synthea", folder), "*.json"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no Synthea files in %s: %v", folder, err)
	}
	if max > 0 && len(files) > max {
		files = files[:max]
	}
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		var bundle map[string]any
		if err := json.Unmarshal(data, &bundle); err != nil {
			t.Fatal(err)
		}
		entries, _ := bundle["entry"].([]any)
		for _, e := range entries {
			res, _ := e.(map[string]any)["resource"].(map[string]any)
			if res == nil || rnd.IntN(8) != 0 {
				continue
			}
			meta, _ := res["meta"].(map[string]any)
			if meta == nil {
				meta = map[string]any{}
				res["meta"] = meta
			}
			var sec []any
			for _, i := range rnd.Perm(len(testLabels))[:1+rnd.IntN(2)] {
				sys, code, _ := strings.Cut(testLabels[i], "|")
				sec = append(sec, map[string]any{"system": sys, "code": code})
			}
			meta["security"] = sec
		}
		data, _ = json.Marshal(bundle)
		b, err := records.Parse(data)
		if err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		_, results, err := s.rec.Bundle(ctx, b, records.WriteOptions{KeepIDs: true, LoadOnly: true})
		if err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		for i, r := range results {
			if r.Err != nil {
				t.Fatalf("%s entry %d: %v", f, i, r.Err)
			}
		}
	}
	for _, typ := range fhir.ResourceTypes() {
		params := url.Values{"_count": {"1000"}}
		for {
			res, err := s.eng.Search(ctx, Request{Type: typ, Params: params})
			if err != nil {
				t.Fatalf("listing %s: %v", typ, err)
			}
			for _, m := range res.Matches {
				v, err := fhir.Parse(m.JSON, 0)
				if err != nil {
					t.Fatal(err)
				}
				if s.all[typ] == nil {
					s.all[typ] = map[string]*fhir.Value{}
				}
				s.all[typ][m.ID] = &v
			}
			if res.Next == "" {
				break
			}
			params = url.Values{"_page": {res.Next}}
		}
	}
}

// searchAll runs a search and follows its next links to the end, with
// pages of count, returning every match as Type/id in order.
func (s *stack) searchAll(t testing.TB, typ string, q url.Values, r *access.Restriction, count int) ([]string, error) {
	t.Helper()
	ctx := context.Background()
	params := url.Values{}
	for k, v := range q {
		params[k] = v
	}
	params.Set("_count", strconv.Itoa(count))
	var out []string
	for pages := 0; ; pages++ {
		if pages > 10000 {
			t.Fatalf("%s?%s: more than 10,000 pages", typ, q.Encode())
		}
		res, err := s.eng.Search(ctx, Request{Type: typ, Params: params, Restrict: r})
		if err != nil {
			return nil, err
		}
		for _, m := range res.Matches {
			out = append(out, m.Type+"/"+m.ID)
		}
		if res.Next == "" {
			return out, nil
		}
		params = url.Values{"_page": {res.Next}}
	}
}
