package audit

import (
	"sort"
	"sync"
)

// index finds entries without reading them all: for each fact an entry
// is found by (patient, agent, resource, action, outcome) the indexes of
// the entries that have it, and every entry's time. It lives in memory,
// built from the entries when the log opens and kept up as they are
// appended; nothing of it is stored, so it costs no disk write per entry
// and holds nothing a stolen file could show.
type index struct {
	mu       sync.RWMutex
	size     int64              // entries indexed: 0 … size-1
	times    []int64            // unix microseconds, by entry index
	postings map[string][]int64 // fact -> entry indexes, ascending
}

func newIndex() *index { return &index{postings: map[string][]int64{}} }

// fact names one thing an entry is found by.
func fact(kind, value string) string { return kind + "\x00" + value }

// facts lists what e is found by.
func facts(e *Entry) []string {
	out := make([]string, 0, 4+len(e.Resources))
	var seen map[string]bool
	if len(e.Resources) > 16 {
		seen = make(map[string]bool, len(e.Resources))
	}
	add := func(kind, value string) {
		if value == "" {
			return
		}
		f := fact(kind, value)
		if seen != nil {
			if seen[f] {
				return
			}
			seen[f] = true
		} else {
			for _, g := range out { // few: a scan beats a map
				if g == f {
					return
				}
			}
		}
		out = append(out, f)
	}
	for _, p := range e.Patients() {
		add("patient", p)
	}
	add("agent", e.Principal.ID)
	for _, r := range e.Resources {
		if r.ID != "" {
			add("entity", r.Type+"/"+r.ID)
		}
	}
	add("action", e.Action)
	add("outcome", e.Outcome)
	return out
}

// add indexes entry i, which must be the next one.
func (x *index) add(i, micros int64, fs []string) {
	x.mu.Lock()
	defer x.mu.Unlock()
	if i != x.size {
		return // indexed already (caught up from the database)
	}
	x.times = append(x.times, micros)
	for _, f := range fs {
		x.postings[f] = append(x.postings[f], i)
	}
	x.size++
}

// indexed returns how many entries are indexed.
func (x *index) indexed() int64 {
	x.mu.RLock()
	defer x.mu.RUnlock()
	return x.size
}

// candidates returns, in order and at most limit, the indexes at or after
// start whose time is in [from, to) and that have the fact (every entry
// when fact is ""). Zero from and to do not bound.
func (x *index) candidates(f string, start, from, to int64, limit int) []int64 {
	x.mu.RLock()
	defer x.mu.RUnlock()
	inTime := func(i int64) bool {
		t := x.times[i]
		return (from == 0 || t >= from) && (to == 0 || t < to)
	}
	var out []int64
	if f != "" {
		list := x.postings[f]
		k := sort.Search(len(list), func(j int) bool { return list[j] >= start })
		for ; k < len(list) && len(out) < limit; k++ {
			if inTime(list[k]) {
				out = append(out, list[k])
			}
		}
		return out
	}
	// Times are nearly in log order (the clock may step back a little),
	// so a time range is scanned, not searched.
	for i := max(start, 0); i < x.size && len(out) < limit; i++ {
		if inTime(i) {
			out = append(out, i)
		}
	}
	return out
}
