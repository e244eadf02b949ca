// Package importer loads files and folders of FHIR JSON into the records
// service: transaction, batch and collection Bundles, NDJSON (one resource
// a line) and single resources.
//
// # Promises
//
//   - Loading the same input twice creates nothing new: resources keep the
//     ids they carry (or the UUIDs of their urn:uuid fullUrls), and a
//     resource whose content is unchanged gets no new version.
//   - A transaction Bundle is loaded entirely or not at all. In batch and
//     collection Bundles and NDJSON files, a bad resource is reported with
//     its file and entry (or line) and the rest goes on, unless Strict.
//   - A transaction that fails only because a conditional reference
//     (Organization?identifier=…) matches nothing yet is retried after the
//     other files, which may create its target. Synthea's
//     hospitalInformation and practitionerInformation files are loaded
//     before the patient files that refer to them.
//   - What a problem report says names files, entries, lines and element
//     paths, never values.
//   - Import loads data: the reads (GET, HEAD) and operation calls in a
//     transaction or batch Bundle are left out and counted, and the
//     version preconditions of its entries (ifMatch …), which name versions
//     on the server the Bundle came from, are ignored.
//
// Files are read and validated by several workers and written by one, in
// file order.
package importer

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/ehrvault/ehrvault/internal/records"
)

// Options change how an import runs.
type Options struct {
	// Strict stops the import at the first problem.
	Strict bool
	// Progress receives progress reports; nil for none.
	Progress io.Writer
	// Terminal draws a progress bar on Progress; otherwise a plain line is
	// written every few seconds.
	Terminal bool
	// Workers read and validate files in parallel (GOMAXPROCS if 0).
	Workers int
	Log     *slog.Logger
	// Loaded, if set, is told what each file (or NDJSON chunk) loaded,
	// after it is stored: the audit log records it there. An error stops
	// the import.
	Loaded func(ctx context.Context, file string, results []records.EntryResult) error
}

// Problem is one thing that could not be loaded.
type Problem struct {
	File  string
	Entry int // Bundle entry index; -1 when the problem is the whole file
	Line  int // NDJSON line (1-based); 0 when not NDJSON
	Err   error
}

func (p Problem) String() string {
	var b strings.Builder
	b.WriteString(p.File)
	switch {
	case p.Line > 0:
		fmt.Fprintf(&b, ": line %d", p.Line)
	case p.Entry >= 0:
		fmt.Fprintf(&b, ": entry %d", p.Entry)
	}
	b.WriteString(": ")
	var re *records.Error
	if errors.As(p.Err, &re) && len(re.Issues) > 0 {
		for i, is := range re.Issues {
			if i > 0 {
				b.WriteString("; ")
			}
			if i == 5 {
				fmt.Fprintf(&b, "and %d more", len(re.Issues)-5)
				break
			}
			if is.Path != "" {
				b.WriteString(is.Path)
				b.WriteString(": ")
			}
			b.WriteString(is.Message)
		}
		return b.String()
	}
	if re != nil && re.Code == records.Internal {
		b.WriteString("internal error (see the log)")
		return b.String()
	}
	b.WriteString(p.Err.Error())
	return b.String()
}

// Report says what an import did.
type Report struct {
	Files     int
	Skipped   []string // files that are not .json, .ndjson or .jsonl
	Entries   int      // resources and entries processed
	Created   int
	Updated   int
	Unchanged int // already there with the same content
	Existing  int // conditional creates that found their match
	Deleted   int
	// LeftOut counts Bundle entries that load nothing and were left out:
	// reads (GET, HEAD) and operation calls.
	LeftOut  int
	Problems []Problem
	Elapsed  time.Duration
}

// Failed is how many entries or files could not be loaded.
func (r *Report) Failed() int { return len(r.Problems) }

// ErrStopped is returned when Strict stopped an import at a problem.
var ErrStopped = errors.New("import stopped at the first problem (--strict)")

// unit is one piece of work for the writer: a file or part of one.
type unit struct {
	file  string
	bytes int64 // input bytes this unit accounts for
	body  *records.Body
	orig  []int // entry index in the file of each batch entry, if renumbered
	line0 int   // for NDJSON chunks: line number of the first item
	lines []int // for NDJSON chunks: line of each batch entry
	probs []Problem
	err   error // the whole unit failed before writing
}

// Import loads paths (files and folders).
func Import(ctx context.Context, rec *records.Service, paths []string, opt Options) (*Report, error) {
	if opt.Workers <= 0 {
		opt.Workers = runtime.GOMAXPROCS(0)
	}
	if opt.Log == nil {
		opt.Log = slog.New(slog.DiscardHandler)
	}
	rep := &Report{}
	files, total, err := listFiles(paths, rep)
	if err != nil {
		return nil, err
	}
	rep.Files = len(files)
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()

	start := time.Now()
	prog := newProgress(opt.Progress, opt.Terminal, total, start)
	defer prog.stop()

	queue := make(chan chan *unit, opt.Workers*2)
	go produce(ctx, files, opt.Workers, queue)

	var deferred, pending []*unit
	pendingEntries := 0
	flush := func() error {
		if len(pending) == 0 {
			return nil
		}
		retry, err := write(ctx, rec, pending, rep, opt, false)
		if err != nil {
			return err
		}
		deferred = append(deferred, retry...)
		for _, u := range pending {
			if !slices.Contains(retry, u) {
				prog.add(u.bytes, rep.Entries)
			}
		}
		pending, pendingEntries = pending[:0], 0
		return nil
	}
	for fut := range queue {
		var u *unit
		select {
		case u = <-fut:
		case <-ctx.Done():
			return rep, ctx.Err()
		}
		if u == nil {
			continue
		}
		pending = append(pending, u)
		if u.body != nil {
			if list := u.body.Value().Get("entry"); list != nil {
				pendingEntries += len(list.Items)
			}
		}
		if pendingEntries >= groupEntries || len(pending) >= groupUnits {
			if err := flush(); err != nil {
				return rep, err
			}
		}
	}
	if err := flush(); err != nil {
		return rep, err
	}
	// Retry transactions that waited for references, while that helps.
	for len(deferred) > 0 {
		var still []*unit
		for _, u := range deferred {
			retry, err := write(ctx, rec, []*unit{u}, rep, opt, false)
			if err != nil {
				return rep, err
			}
			if len(retry) > 0 {
				still = append(still, u)
			} else {
				prog.add(u.bytes, rep.Entries)
			}
		}
		if len(still) == len(deferred) {
			for _, u := range still {
				if _, err := write(ctx, rec, []*unit{u}, rep, opt, true); err != nil {
					return rep, err
				}
				prog.add(u.bytes, rep.Entries)
			}
			break
		}
		deferred = still
	}
	rep.Elapsed = time.Since(start)
	prog.finish(rep)
	return rep, nil
}

// Units are written in groups that share a commit (records.Bundles): up to
// groupEntries entries or groupUnits files and chunks. A commit rewrites
// every database page its writes touched, and blind-index writes touch
// pages all over, so one commit per file would write the index many times
// over. Measured on smart-r4-2019 (2 cores): one commit per file wrote
// 134,000 pages for 8,541 resources.
const (
	groupEntries = 4000
	groupUnits   = 64
)

// write stores a group of units and records their results. It returns
// the transactions to try again later because a conditional reference
// matched nothing yet (none when final).
func write(ctx context.Context, rec *records.Service, units []*unit, rep *Report, opt Options, final bool) ([]*unit, error) {
	problem := func(p Problem) error {
		rep.Problems = append(rep.Problems, p)
		opt.Log.Warn("import problem", "file", p.File, "entry", p.Entry, "line", p.Line, "code", records.CodeOf(p.Err).String())
		if opt.Strict {
			return ErrStopped
		}
		return nil
	}
	var todo []*unit
	var bodies []*records.Body
	for _, u := range units {
		for _, p := range u.probs {
			if err := problem(p); err != nil {
				return nil, err
			}
		}
		u.probs = nil
		if u.err != nil {
			if err := problem(Problem{File: u.file, Entry: -1, Err: u.err}); err != nil {
				return nil, err
			}
			continue
		}
		if u.body != nil {
			todo = append(todo, u)
			bodies = append(bodies, u.body)
		}
	}
	if len(todo) == 0 {
		return nil, nil
	}
	var retry []*unit
	for k, br := range rec.Bundles(ctx, bodies, records.WriteOptions{KeepIDs: true, LoadOnly: true}) {
		u := todo[k]
		if err := record(ctx, u, br, rep, final, problem); err != nil {
			if errors.Is(err, errRetry) {
				retry = append(retry, u)
				continue
			}
			return retry, err
		}
		if opt.Loaded != nil && br.Err == nil {
			if err := opt.Loaded(ctx, u.file, br.Results); err != nil {
				return retry, err
			}
		}
	}
	return retry, nil
}

// errRetry says a unit waits for a conditional reference's target.
var errRetry = errors.New("retry later")

// record counts what one unit's Bundle did and reports its problems.
func record(ctx context.Context, u *unit, br records.BundleResult, rep *Report, final bool, problem func(Problem) error) error {
	kind, results, err := br.Kind, br.Results, br.Err
	if err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if !final && errors.Is(err, records.ErrUnresolvedReference) {
			return errRetry
		}
		entry := -1
		if kind == "transaction" {
			entry = entryOf(err)
			if entry >= 0 && u.orig != nil && entry < len(u.orig) {
				entry = u.orig[entry]
			}
		}
		return problem(Problem{File: u.file, Entry: entry, Err: err})
	}
	for i, r := range results {
		rep.Entries++
		if r.Err != nil {
			p := Problem{File: u.file, Entry: i, Err: r.Err}
			if u.orig != nil {
				p.Entry = u.orig[i]
			}
			if u.lines != nil {
				p.Entry, p.Line = -1, u.lines[i]
			}
			if err := problem(p); err != nil {
				return err
			}
			continue
		}
		if r.LeftOut {
			rep.Entries--
			rep.LeftOut++
			continue
		}
		if r.Outcome == nil {
			continue
		}
		switch r.Outcome.Result {
		case records.Created:
			rep.Created++
		case records.Updated:
			rep.Updated++
		case records.Unchanged:
			rep.Unchanged++
		case records.Existing:
			rep.Existing++
		case records.Deleted:
			rep.Deleted++
		}
	}
	return nil
}

var entryPath = regexp.MustCompile(`^Bundle\.entry\[(\d+)\]`)

// entryOf returns the entry index an error's first issue names, or -1.
func entryOf(err error) int {
	var re *records.Error
	if !errors.As(err, &re) || len(re.Issues) == 0 {
		return -1
	}
	m := entryPath.FindStringSubmatch(re.Issues[0].Path)
	if m == nil {
		return -1
	}
	n, _ := strconv.Atoi(m[1])
	return n
}

// listFiles expands folders and orders the files to load.
func listFiles(paths []string, rep *Report) ([]string, int64, error) {
	var files []string
	var total int64
	add := func(p string, size int64) {
		switch strings.ToLower(filepath.Ext(p)) {
		case ".json", ".ndjson", ".jsonl":
			files = append(files, p)
			total += size
		default:
			rep.Skipped = append(rep.Skipped, p)
		}
	}
	for _, root := range paths {
		st, err := os.Stat(root)
		if err != nil {
			return nil, 0, fmt.Errorf("%s: %w", root, errors.Unwrap(err))
		}
		if !st.IsDir() {
			add(root, st.Size())
			continue
		}
		err = filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			if strings.HasPrefix(d.Name(), ".") && p != root {
				if d.IsDir() {
					return filepath.SkipDir
				}
				return nil
			}
			if d.IsDir() {
				return nil
			}
			info, err := d.Info()
			if err != nil {
				return err
			}
			add(p, info.Size())
			return nil
		})
		if err != nil {
			return nil, 0, fmt.Errorf("read folder %s: %w", root, err)
		}
	}
	sort.SliceStable(files, func(i, j int) bool {
		pi, pj := loadRank(files[i]), loadRank(files[j])
		if pi != pj {
			return pi < pj
		}
		return files[i] < files[j]
	})
	return files, total, nil
}

// loadRank orders Synthea's shared files before the patient files that
// point at them.
func loadRank(p string) int {
	base := filepath.Base(p)
	switch {
	case strings.HasPrefix(base, "hospitalInformation"):
		return 0
	case strings.HasPrefix(base, "practitionerInformation"):
		return 1
	}
	return 2
}

// ndjsonChunk is how many NDJSON lines share one batch.
const ndjsonChunk = 500

// produce reads files into units, validated by workers, delivered in order.
func produce(ctx context.Context, files []string, workers int, queue chan<- chan *unit) {
	defer close(queue)
	sem := make(chan struct{}, workers)
	submit := func(work func() *unit) bool {
		fut := make(chan *unit, 1)
		select {
		case queue <- fut:
		case <-ctx.Done():
			return false
		}
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
			return false
		}
		go func() {
			defer func() { <-sem }()
			fut <- work()
		}()
		return true
	}
	for _, f := range files {
		ext := strings.ToLower(filepath.Ext(f))
		if ext == ".json" {
			if !submit(func() *unit { return readJSON(f) }) {
				return
			}
			continue
		}
		if !readNDJSON(ctx, f, submit) {
			return
		}
	}
}

// readJSON reads a .json file: a Bundle or a single resource.
func readJSON(file string) *unit {
	u := &unit{file: file}
	data, err := os.ReadFile(file)
	if err != nil {
		u.err = fmt.Errorf("read: %w", errors.Unwrap(err))
		return u
	}
	u.bytes = int64(len(data))
	data = bytes.TrimPrefix(data, bom)
	body, err := records.Parse(data)
	if records.CodeOf(err) == records.Invalid {
		// Perhaps only some entries of a batch or collection are bad: load
		// the others and report those.
		b, orig, bad, err := records.SplitBatch(data)
		if err != nil {
			u.err = err
			return u
		}
		for _, e := range bad {
			u.probs = append(u.probs, Problem{File: file, Entry: e.Index, Err: e.Err})
		}
		u.body, u.orig = b, orig
		return u
	}
	if err != nil {
		u.err = err
		return u
	}
	if body.Type() == "Bundle" {
		if b, orig, ok := records.AsBatch(body); ok {
			u.body, u.orig = b, orig
			return u
		}
	}
	u.body = records.BatchOf([]records.BatchItem{{Body: body}})
	return u
}

// readNDJSON streams an NDJSON file in chunks of lines.
func readNDJSON(ctx context.Context, file string, submit func(func() *unit) bool) bool {
	f, err := os.Open(file)
	if err != nil {
		return submit(func() *unit { return &unit{file: file, err: fmt.Errorf("read: %w", errors.Unwrap(err))} })
	}
	defer f.Close()
	r := bufio.NewReaderSize(f, 1<<20)
	line := 0
	for {
		var lines [][]byte
		var nums []int
		var size int64
		eof := false
		for len(lines) < ndjsonChunk {
			b, err := r.ReadBytes('\n')
			if len(b) > 0 {
				line++
				size += int64(len(b))
				if t := trimSpace(b); len(t) > 0 {
					lines = append(lines, t)
					nums = append(nums, line)
				}
			}
			if err == io.EOF {
				eof = true
				break
			}
			if err != nil {
				return submit(func() *unit { return &unit{file: file, err: fmt.Errorf("read at line %d: %w", line, err)} })
			}
		}
		if size > 0 {
			ok := submit(func() *unit {
				u := &unit{file: file, bytes: size}
				var items []records.BatchItem
				for i, l := range lines {
					body, err := records.Parse(l)
					if err != nil {
						u.probs = append(u.probs, Problem{File: file, Entry: -1, Line: nums[i], Err: err})
						continue
					}
					items = append(items, records.BatchItem{Body: body})
					u.lines = append(u.lines, nums[i])
				}
				if len(items) > 0 {
					u.body = records.BatchOf(items)
				}
				return u
			})
			if !ok {
				return false
			}
		}
		if eof || ctx.Err() != nil {
			return ctx.Err() == nil
		}
	}
}

var bom = []byte{0xef, 0xbb, 0xbf}

// trimSpace drops surrounding white space and a UTF-8 byte order mark.
func trimSpace(b []byte) []byte {
	b = bytes.TrimPrefix(b, bom)
	return bytes.TrimSpace(b)
}
