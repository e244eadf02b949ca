package main

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"runtime"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ehrvault/ehrvault/internal/api"
	"github.com/ehrvault/ehrvault/internal/audit"
	"github.com/ehrvault/ehrvault/internal/search"
	"github.com/ehrvault/ehrvault/internal/sharedtest"
	"net/url"
)

// BenchmarkReadPath loads GET /fhir/Observation/{id} over HTTP (keep-alive
// clients in the same process, as wrk on the same machine would be), with
// the audit log on and off in the same run: what auditing costs a read.
// bench/readpath.sh measures the real binary with wrk.
func BenchmarkReadPath(b *testing.B) {
	ts := newTestServer(b)
	importAll(b, ts, sharedtest.Dir(b, "testdata", "synthea", "smart-r4-2019"))
	page, err := ts.v.search.Search(context.Background(), search.Request{Type: "Observation", Params: url.Values{"_count": {"1000"}}})
	if err != nil {
		b.Fatal(err)
	}
	var ids []string
	for _, r := range page.Matches {
		ids = append(ids, r.ID)
	}
	for _, c := range []struct {
		mode  string
		conns int
	}{{"off", 32}, {"on", 32}, {"on-flush-50ms", 32}, {"off", 128}, {"on", 128}, {"on-flush-50ms", 128}} {
		mode := c.mode
		b.Run("audit="+mode+"/clients="+itoa(c.conns), func(b *testing.B) {
			cfg := api.Config{Records: ts.v.records, Auth: ts.v.tokens, Search: ts.v.search}
			al := ts.v.audit
			if mode == "on-flush-50ms" {
				c := ts.v.akeys.cfg
				c.Path, c.Create, c.FlushEvery = filepath.Join(b.TempDir(), "audit.log"), true, 50*time.Millisecond
				var err error
				if al, err = audit.Open(context.Background(), c); err != nil {
					b.Fatal(err)
				}
				defer al.Close()
			}
			if mode != "off" {
				cfg.Audit, cfg.AuditLog = al, al
			}
			srv := httptest.NewServer(api.New(cfg))
			defer srv.Close()
			client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 256, MaxConnsPerHost: 256}}
			e0, c0 := al.Stats()
			var n atomic.Int64
			b.SetParallelism(c.conns / runtime.GOMAXPROCS(0))
			b.ResetTimer()
			start := time.Now()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					i := n.Add(1)
					req, _ := http.NewRequest("GET", srv.URL+"/fhir/Observation/"+ids[int(i)%len(ids)], nil)
					req.Header.Set("Authorization", "Bearer "+ts.token)
					resp, err := client.Do(req)
					if err != nil {
						b.Error(err)
						return
					}
					io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					if resp.StatusCode != 200 {
						b.Errorf("status %d", resp.StatusCode)
						return
					}
				}
			})
			b.ReportMetric(float64(n.Load())/time.Since(start).Seconds(), "req/s")
			if e1, c1 := al.Stats(); c1 > c0 {
				b.ReportMetric(float64(e1-e0)/float64(c1-c0), "entries/flush")
			}
		})
	}
}

func itoa(n int) string { return strconv.Itoa(n) }
