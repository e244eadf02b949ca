package main

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/ehrvault/ehrvault/internal/audit"
	"github.com/ehrvault/ehrvault/internal/fhir"
	"github.com/ehrvault/ehrvault/internal/records"
	"github.com/ehrvault/ehrvault/internal/search"
	"net/url"
)

// crashEnv is the environment of an ehrvault child process in these tests.
func crashEnv() []string {
	return append(os.Environ(), PassphraseEnv+"="+testPassphrase, insecureKDFEnv+"=1")
}

// newCrashStore makes a data directory for a child process to use.
func newCrashStore(t *testing.T) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "data")
	c := testCLI()
	if err := c.initVault(context.Background(), dir, []byte(testPassphrase)); err != nil {
		t.Fatal(err)
	}
	return dir
}

// ehrvaultBinary is this test binary, installed on $PATH as "ehrvault" by
// TestMain (testscript), which runs main when called by that name.
func ehrvaultBinary(t *testing.T) string {
	t.Helper()
	p, err := exec.LookPath("ehrvault")
	if err != nil {
		t.Fatalf("ehrvault is not on $PATH: %v", err)
	}
	return p
}

// reopen opens a data directory a killed process left behind, as the next
// server would.
func reopen(t *testing.T, dir string) *vault {
	t.Helper()
	v, err := openVault(context.Background(), dir, []byte(testPassphrase), slog.New(slog.DiscardHandler), writerAccess)
	if err != nil {
		t.Fatalf("reopen after kill -9: %v", err)
	}
	t.Cleanup(func() { v.Close() })
	return v
}

// TestKillNineServerLosesNoAcknowledgedWrite writes to a server from
// several clients, kills it with SIGKILL in the middle, and checks that
// every write the server had answered 201 or 200 is there after a
// restart, and that everything stored opens.
func TestKillNineServerLosesNoAcknowledgedWrite(t *testing.T) {
	dir := newCrashStore(t)
	v := reopen(t, dir)
	tok, _, err := v.tokens.Create(context.Background(), time.Hour, "crash")
	if err != nil {
		t.Fatal(err)
	}
	v.Close()

	cmd := exec.Command(ehrvaultBinary(t), "serve", "--data", dir, "--listen", "127.0.0.1:0", "--insecure-http")
	cmd.Env = crashEnv()
	stderr, _ := cmd.StderrPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	base := ""
	urlRE := regexp.MustCompile(`url=(http://\S+)`)
	sc := bufio.NewScanner(stderr)
	for sc.Scan() {
		if m := urlRE.FindStringSubmatch(sc.Text()); m != nil {
			base = m[1]
			break
		}
	}
	if base == "" {
		t.Fatal("the server never said where it listens")
	}
	go io.Copy(io.Discard, stderr)

	type ack struct {
		id      string
		version string
	}
	var mu sync.Mutex
	var acked []ack
	stop := make(chan struct{})
	var wg sync.WaitGroup
	client := &http.Client{Timeout: 5 * time.Second}
	for w := 0; w < 4; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				// Updates as creates with client ids, and updates of them,
				// so that both new resources and new versions are at stake.
				id := fmt.Sprintf("crash-%d-%d", w, i/2)
				body := fmt.Sprintf(`{"resourceType":"Patient","id":%q,"birthDate":"19%02d-01-01"}`, id, i%100)
				req, _ := http.NewRequest("PUT", base+"/Patient/"+id, strings.NewReader(body))
				req.Header.Set("Authorization", "Bearer "+tok)
				req.Header.Set("Content-Type", "application/fhir+json")
				resp, err := client.Do(req)
				if err != nil {
					return // the server is gone
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode == 200 || resp.StatusCode == 201 {
					mu.Lock()
					acked = append(acked, ack{id, strings.Trim(strings.TrimPrefix(resp.Header.Get("ETag"), "W/"), `"`)})
					mu.Unlock()
				}
			}
		}(w)
	}
	time.Sleep(1500 * time.Millisecond)
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	cmd.Wait()
	close(stop)
	wg.Wait()
	if len(acked) < 50 {
		t.Fatalf("only %d writes were acknowledged before the kill: the test proves little", len(acked))
	}

	v = reopen(t, dir)
	ctx := context.Background()
	latest := map[string]int{}
	for _, a := range acked {
		var n int
		fmt.Sscan(a.version, &n)
		latest[a.id] = max(latest[a.id], n)
	}
	for id, n := range latest {
		r, err := v.records.Read(ctx, "Patient", id, nil)
		if err != nil {
			t.Errorf("acknowledged Patient/%s (version %d) is lost: %v", id, n, err)
			continue
		}
		if int(r.Version) < n {
			t.Errorf("Patient/%s: version %d after restart, but version %d was acknowledged", id, r.Version, n)
		}
	}
	t.Logf("%d writes acknowledged to %d resources before kill -9; all there after restart", len(acked), len(latest))
	checkAllOpen(t, v, "Patient")
	// Nothing was answered before its audit entry was on disk.
	found, err := v.audit.Find(ctx, audit.Filter{Action: "update", Outcome: audit.OutcomeSuccess, Limit: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	if len(found) < len(acked) {
		t.Errorf("%d writes were acknowledged but only %d have audit entries", len(acked), len(found))
	}
}

// checkAllOpen reads every current resource of typ and each version of
// its history: a store left by a crash must open everywhere.
func checkAllOpen(t *testing.T, v *vault, typ string) int {
	t.Helper()
	ctx := context.Background()
	n := 0
	params := url.Values{"_count": {"1000"}}
	for {
		p, err := v.search.Search(ctx, search.Request{Type: typ, Params: params})
		if err != nil {
			t.Fatalf("search %s after restart: %v", typ, err)
		}
		for _, r := range p.Matches {
			if _, err := fhir.Parse(r.JSON, 0); err != nil {
				t.Fatalf("%s/%s does not parse after restart: %v", typ, r.ID, err)
			}
			n++
		}
		if p.Next == "" {
			return n
		}
		params = url.Values{"_page": {p.Next}}
	}
}

// patientsStored counts the Patients in dir, read beside its writer.
func patientsStored(t *testing.T, dir string) int {
	v, err := openVault(context.Background(), dir, []byte(testPassphrase), slog.New(slog.DiscardHandler), adminAccess)
	if err != nil {
		// The import may hold the database for a moment (on a loaded
		// machine, longer than the busy timeout): look again later.
		t.Logf("open beside the import: %v (trying again)", err)
		return 0
	}
	defer v.Close()
	p, err := v.search.Search(context.Background(), search.Request{Type: "Patient", Params: url.Values{"_summary": {"count"}}})
	if err != nil {
		return 0
	}
	return int(p.Total)
}

// TestKillNineImportKeepsBundlesWhole kills an import of synthetic
// patients (one transaction Bundle each) midway: every patient's
// resources must then be there entirely or not at all, the store must
// open, and importing again must finish the job.
func TestKillNineImportKeepsBundlesWhole(t *testing.T) {
	dir := newCrashStore(t)
	src := writeSynthetic(t, 7, 120)
	// What each file writes: its entries' Type/id (synth uses PUT Type/id).
	files, _ := filepath.Glob(filepath.Join(src, "patient-*.json"))
	want := map[string][]string{}
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		b, err := fhir.Parse(data, 0)
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range b.Get("entry").Items {
			want[f] = append(want[f], e.Get("request").Str("url"))
		}
	}

	cmd := exec.Command(ehrvaultBinary(t), "import", "--data", dir, src)
	cmd.Env = crashEnv()
	var out bytes.Buffer
	cmd.Stderr = &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	// Kill once some patients are in: look as a reader would.
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		if patientsStored(t, dir) >= 10 {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	cmd.Process.Signal(syscall.SIGKILL)
	err := cmd.Wait()
	if err == nil {
		t.Fatalf("the import finished before it could be killed; make it bigger:\n%s", out.String())
	}

	v := reopen(t, dir)
	ctx := context.Background()
	whole, none := 0, 0
	for f, urls := range want {
		present := 0
		for _, u := range urls {
			typ, id, _ := strings.Cut(u, "/")
			if _, err := v.records.Read(ctx, typ, id, nil); err == nil {
				present++
			} else if records.CodeOf(err) != records.NotFound {
				t.Fatalf("%s: %s after restart: %v", filepath.Base(f), u, err)
			}
		}
		switch present {
		case len(urls):
			whole++
		case 0:
			none++
		default:
			t.Errorf("%s: %d of its %d resources are stored: a transaction was cut in half", filepath.Base(f), present, len(urls))
		}
	}
	t.Logf("killed mid-import: %d patients loaded whole, %d not at all", whole, none)
	if whole == 0 || none == 0 {
		t.Errorf("the kill came at an end (%d whole, %d none): the test proves little", whole, none)
	}
	checkAllOpen(t, v, "Observation")

	// Importing again finishes the job, with no problems.
	rep := importAll(t, &testServer{t: t, v: v}, src)
	if rep.Created == 0 {
		t.Error("the second import created nothing")
	}
	for f, urls := range want {
		for _, u := range urls {
			typ, id, _ := strings.Cut(u, "/")
			if _, err := v.records.Read(ctx, typ, id, nil); err != nil {
				t.Fatalf("%s: %s missing after the import was run again: %v", filepath.Base(f), u, err)
			}
		}
	}
}
