package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ehrvault/ehrvault/internal/api"
	"github.com/ehrvault/ehrvault/internal/records"
	"github.com/ehrvault/ehrvault/internal/sharedtest"
)

// BenchmarkSearch measures searches over a large store: the Synthea sample
// imported again and again under fresh ids (each copy's patients get new
// ids, SSNs and birth dates, so that an identifier or a name and birth
// date finds one patient). It serves the API over HTTP with auditing on,
// as ehrvault serve does, and loads each kind of search from concurrent
// clients, reporting p50, p99 and requests per second.
//
//	EHRVAULT_BENCH_DIR     data directory, kept between runs (default: a temporary one)
//	EHRVAULT_BENCH_COPIES  copies of the sample to load (default 4; 254 make 1,000,000 Observations)
//	EHRVAULT_BENCH_CLIENTS concurrent clients, a list (default 1,8: latency alone, and under load)
//
// bench/search.sh runs it at a million-resource scale.
func BenchmarkSearch(b *testing.B) {
	ctx := context.Background()
	copies := envInt("EHRVAULT_BENCH_COPIES", 4)
	var clients []int
	for _, f := range strings.Split(envStr("EHRVAULT_BENCH_CLIENTS", "1,8"), ",") {
		if n, err := strconv.Atoi(strings.TrimSpace(f)); err == nil && n > 0 {
			clients = append(clients, n)
		}
	}
	dir := os.Getenv("EHRVAULT_BENCH_DIR")
	if dir == "" {
		dir = filepath.Join(b.TempDir(), "data")
	}
	log := slog.New(slog.DiscardHandler)
	if _, err := os.Stat(filepath.Join(dir, keyFileName)); err != nil {
		if err := testCLI().initVault(ctx, dir, []byte(testPassphrase)); err != nil {
			b.Fatal(err)
		}
	}
	v, err := openVault(ctx, dir, []byte(testPassphrase), log, writerAccess)
	if err != nil {
		b.Fatal(err)
	}
	defer v.Close()
	loadCopies(b, v, copies)

	srv := httptest.NewServer(api.New(api.Config{Records: v.records, Auth: v.tokens, Search: v.search, Audit: v.audit, AuditLog: v.audit}))
	defer srv.Close()
	token, _, err := v.tokens.Create(ctx, time.Hour, "bench")
	if err != nil {
		b.Fatal(err)
	}
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 256, MaxConnsPerHost: 256}}
	get := func(path string) (map[string]any, error) {
		req, _ := http.NewRequest("GET", srv.URL+"/fhir"+path, nil)
		req.Header.Set("Authorization", "Bearer "+token)
		resp, err := client.Do(req)
		if err != nil {
			return nil, err
		}
		defer resp.Body.Close()
		var out map[string]any
		if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
			return nil, err
		}
		if resp.StatusCode != 200 {
			return nil, fmt.Errorf("GET %s: %d %v", path, resp.StatusCode, out)
		}
		return out, nil
	}

	// What to ask for: 200 patients spread over the copies.
	type pat struct{ id, ssn, family, birth string }
	var pats []pat
	page := "/Patient?_count=1000&_elements=identifier,name,birthDate"
	for page != "" && len(pats) < 5000 {
		bundle, err := get(page)
		if err != nil {
			b.Fatal(err)
		}
		for _, e := range list(bundle["entry"]) {
			r := e.(map[string]any)["resource"].(map[string]any)
			p := pat{id: r["id"].(string), birth: str(r["birthDate"])}
			for _, id := range list(r["identifier"]) {
				m := id.(map[string]any)
				if m["system"] == "http://hl7.org/fhir/sid/us-ssn" {
					p.ssn = str(m["value"])
				}
			}
			if names := list(r["name"]); len(names) > 0 {
				p.family = str(names[0].(map[string]any)["family"])
			}
			if p.ssn != "" && len([]rune(p.family)) >= 3 && p.birth != "" {
				pats = append(pats, p)
			}
		}
		page = ""
		for _, l := range list(bundle["link"]) {
			if m := l.(map[string]any); m["relation"] == "next" {
				u, _ := url.Parse(m["url"].(string))
				page = "/Patient?" + u.RawQuery
			}
		}
	}
	if len(pats) < 35 {
		b.Fatalf("only %d patients with an SSN, a family name and a birth date", len(pats))
	}
	step := max(1, len(pats)/200)
	var sample []pat
	for i := 0; i < len(pats); i += step {
		sample = append(sample, pats[i])
	}
	total, err := get("/Observation?_summary=count")
	if err != nil {
		b.Fatal(err)
	}
	b.Logf("%d copies; %v Observations; sampling %d of %d patients", copies, total["total"], len(sample), len(pats))

	kinds := []struct {
		name string
		path func(p pat) string
	}{
		{"identifier", func(p pat) string {
			return "/Patient?identifier=" + url.QueryEscape("http://hl7.org/fhir/sid/us-ssn|"+p.ssn)
		}},
		{"name-prefix-birthdate", func(p pat) string {
			return "/Patient?family=" + url.QueryEscape(string([]rune(p.family)[:3])) + "&birthdate=" + p.birth
		}},
		{"observations-code-date-sorted", func(p pat) string {
			return "/Observation?subject=Patient/" + p.id + "&code=" + url.QueryEscape("http://loinc.org|8302-2,http://loinc.org|29463-7,http://loinc.org|8867-4") + "&date=ge2000-01-01&date=lt2030-01-01&_sort=date&_count=50"
		}},
		{"revinclude-page", func(p pat) string {
			return "/Encounter?subject=Patient/" + p.id + "&_count=10&_revinclude=Observation:encounter"
		}},
		{"count-all-observations", func(p pat) string { return "/Observation?_summary=count" }},
		{"count-observations-by-category", func(p pat) string {
			return "/Observation?category=" + url.QueryEscape("http://terminology.hl7.org/CodeSystem/observation-category|laboratory") + "&_summary=count"
		}},
	}
	for _, k := range kinds {
		// The queries are run once first: they must succeed, and most
		// must match.
		matched := 0
		for _, p := range sample {
			bundle, err := get(k.path(p))
			if err != nil {
				b.Fatal(err)
			}
			if len(list(bundle["entry"])) > 0 || bundle["total"] != nil && bundle["total"] != 0.0 {
				matched++
			}
		}
		if matched < len(sample)*3/4 {
			b.Fatalf("%s: only %d of %d queries match anything", k.name, matched, len(sample))
		}
		for _, c := range clients {
			b.Run(fmt.Sprintf("%s/clients=%d", k.name, c), func(b *testing.B) {
				var (
					mu   sync.Mutex
					lats []time.Duration
					i    atomic.Int64
					wg   sync.WaitGroup
				)
				next := atomic.Int64{}
				start := time.Now()
				for range c {
					wg.Add(1)
					go func() {
						defer wg.Done()
						var mine []time.Duration
						for next.Add(1) <= int64(b.N) {
							p := sample[int(i.Add(1))%len(sample)]
							t0 := time.Now()
							if _, err := get(k.path(p)); err != nil {
								b.Error(err)
								return
							}
							mine = append(mine, time.Since(t0))
						}
						mu.Lock()
						lats = append(lats, mine...)
						mu.Unlock()
					}()
				}
				wg.Wait()
				el := time.Since(start)
				slices.Sort(lats)
				if len(lats) == 0 {
					return
				}
				q := func(f float64) float64 { return float64(lats[int(f*float64(len(lats)-1))].Microseconds()) / 1000 }
				b.ReportMetric(q(0.5), "p50-ms")
				b.ReportMetric(q(0.99), "p99-ms")
				b.ReportMetric(float64(len(lats))/el.Seconds(), "req/s")
			})
		}
	}
}

// loadCopies imports copies of smart-r4-2019 that v does not hold yet,
// each under fresh ids. A file in the data directory remembers how many
// are in.
func loadCopies(b *testing.B, v *vault, copies int) {
	ctx := context.Background()
	mark := filepath.Join(v.dir, "bench-copies")
	have := 0
	if data, err := os.ReadFile(mark); err == nil {
		have, _ = strconv.Atoi(string(data))
	}
	if have >= copies {
		return
	}
	files, err := filepath.Glob(filepath.Join(sharedtest.Dir(b, "testdata", "synthea", "smart-r4-2019"), "*.json"))
	if err != nil {
		b.Fatal(err)
	}
	var sources [][]byte
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			b.Fatal(err)
		}
		sources = append(sources, data)
	}
	// Several copies share a transaction: index entries are keyed hashes,
	// spread over the whole index, so a commit rewrites most index pages
	// however little it adds; fewer, larger commits rewrite them less often.
	const perCommit = 8
	start, n := time.Now(), 0
	for c := have; c < copies; c += perCommit {
		var bodies []*records.Body
		last := min(c+perCommit, copies)
		for cc := c; cc < last; cc++ {
			for _, src := range sources {
				body, err := records.Parse(copyBundle(b, src, cc))
				if err != nil {
					b.Fatal(err)
				}
				bodies = append(bodies, body)
			}
		}
		for i, r := range v.records.Bundles(ctx, bodies, records.WriteOptions{KeepIDs: true, LoadOnly: true}) {
			if r.Err != nil {
				b.Fatalf("copies %d-%d, bundle %d: %v", c, last-1, i, r.Err)
			}
			n += len(r.Results)
		}
		if err := os.WriteFile(mark, []byte(strconv.Itoa(last)), 0o600); err != nil {
			b.Fatal(err)
		}
		el := time.Since(start)
		fmt.Fprintf(os.Stderr, "loaded copies to %d of %d: %d resources in %s, %.0f/s\n", last, copies, n, el.Round(time.Second), float64(n)/el.Seconds())
	}
}

var uuidRE = regexp.MustCompile(`[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}`)

// copyBundle returns copy c of a Synthea Bundle: every UUID (ids,
// fullUrls, references, MRNs) replaced by one derived from it and c, the
// patient's SSN and birth date changed by c.
func copyBundle(b *testing.B, src []byte, c int) []byte {
	out := uuidRE.ReplaceAllFunc(src, func(u []byte) []byte {
		sum := sha256.Sum256(append(slices.Clone(u), byte(c), byte(c>>8), byte(c>>16)))
		sum[6] = sum[6]&0x0f | 0x40
		sum[8] = sum[8]&0x3f | 0x80
		h := hex.EncodeToString(sum[:16])
		return []byte(h[:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:32])
	})
	var bundle map[string]any
	if err := json.Unmarshal(out, &bundle); err != nil {
		b.Fatal(err)
	}
	for _, e := range list(bundle["entry"]) {
		r, _ := e.(map[string]any)["resource"].(map[string]any)
		if r == nil || r["resourceType"] != "Patient" {
			continue
		}
		sum := sha256.Sum256([]byte(fmt.Sprint(r["id"])))
		for _, id := range list(r["identifier"]) {
			if m := id.(map[string]any); m["system"] == "http://hl7.org/fhir/sid/us-ssn" {
				m["value"] = fmt.Sprintf("999-%02d-%04d", sum[0]%100, (int(sum[1])<<8|int(sum[2]))%10000)
			}
		}
		if bd, err := time.Parse("2006-01-02", str(r["birthDate"])); err == nil {
			r["birthDate"] = bd.AddDate(0, 0, -(c*37)%3650).Format("2006-01-02")
		}
	}
	out, err := json.Marshal(bundle)
	if err != nil {
		b.Fatal(err)
	}
	return out
}

func list(x any) []any { l, _ := x.([]any); return l }

func str(x any) string { s, _ := x.(string); return s }

func envStr(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}

func envInt(name string, def int) int {
	if n, err := strconv.Atoi(os.Getenv(name)); err == nil && n > 0 {
		return n
	}
	return def
}
