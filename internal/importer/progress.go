package importer

import (
	"fmt"
	"io"
	"strings"
	"sync"
	"time"
)

// progress reports an import's advance: a redrawn bar on a terminal, a
// plain line every few seconds elsewhere (logs, CI).
type progress struct {
	w        io.Writer
	terminal bool
	total    int64
	start    time.Time

	mu      sync.Mutex
	done    int64
	entries int
	quit    chan struct{}
	exited  chan struct{}
}

func newProgress(w io.Writer, terminal bool, total int64, start time.Time) *progress {
	p := &progress{w: w, terminal: terminal, total: total, start: start, quit: make(chan struct{}), exited: make(chan struct{})}
	if w == nil {
		close(p.exited)
		return p
	}
	every := 5 * time.Second
	if terminal {
		every = 200 * time.Millisecond
	}
	go func() {
		defer close(p.exited)
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			select {
			case <-t.C:
				p.draw(false)
			case <-p.quit:
				return
			}
		}
	}()
	return p
}

func (p *progress) add(bytes int64, entries int) {
	p.mu.Lock()
	p.done += bytes
	p.entries = entries
	p.mu.Unlock()
}

func (p *progress) stop() {
	select {
	case <-p.quit:
	default:
		close(p.quit)
	}
	<-p.exited
}

// draw writes the current state.
func (p *progress) draw(final bool) {
	p.mu.Lock()
	done, entries := p.done, p.entries
	p.mu.Unlock()
	elapsed := time.Since(p.start)
	rate := 0.0
	if s := elapsed.Seconds(); s > 0 {
		rate = float64(entries) / s
	}
	frac := 1.0
	if p.total > 0 {
		frac = min(float64(done)/float64(p.total), 1)
	}
	eta := "--"
	if frac > 0 && frac < 1 {
		eta = (time.Duration(float64(elapsed) * (1 - frac) / frac)).Round(time.Second).String()
	} else if frac >= 1 {
		eta = "0s"
	}
	if p.terminal {
		const width = 30
		n := int(frac * width)
		bar := strings.Repeat("█", n) + strings.Repeat("░", width-n)
		fmt.Fprintf(p.w, "\r\033[Kimporting %3.0f%% %s %d resources  %.0f/s  ETA %s", frac*100, bar, entries, rate, eta)
		if final {
			fmt.Fprintln(p.w)
		}
		return
	}
	if !final {
		fmt.Fprintf(p.w, "import: %.0f%% of %s, %d resources, %.0f resources/s, ETA %s\n", frac*100, byteSize(p.total), entries, rate, eta)
	}
}

// finish draws the last state and a summary line.
func (p *progress) finish(r *Report) {
	p.stop()
	if p.w == nil {
		return
	}
	p.mu.Lock()
	p.done = p.total
	p.mu.Unlock()
	p.draw(true)
	rate := 0.0
	if s := r.Elapsed.Seconds(); s > 0 {
		rate = float64(r.Entries) / s
	}
	fmt.Fprintf(p.w, "imported %d files in %s: %d resources (%d created, %d updated, %d unchanged, %d matched existing), %.0f resources/s, %d problems\n",
		r.Files, r.Elapsed.Round(time.Millisecond), r.Entries, r.Created, r.Updated, r.Unchanged, r.Existing, rate, len(r.Problems))
	if r.LeftOut > 0 {
		fmt.Fprintf(p.w, "left out %d Bundle entries that load nothing (reads and operation calls)\n", r.LeftOut)
	}
}

func byteSize(n int64) string {
	switch {
	case n >= 1<<30:
		return fmt.Sprintf("%.1f GiB", float64(n)/(1<<30))
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%d B", n)
}
