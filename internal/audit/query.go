package audit

import (
	"context"
	"time"
)

// Filter selects entries. Zero fields select everything.
type Filter struct {
	From, To time.Time // entries at or after From and before To
	// Patient is a patient's pseudonym (Resource.Owner without
	// "Patient/"); Agent a principal id; Entity a resource as "Type/id".
	Patient, Agent, Entity string
	Action, Outcome        string
	// Start is the first index to consider (for paging: one past the last
	// index of the page before).
	Start int64
	// Limit bounds the result (1000 if 0).
	Limit int
}

// Found is an entry a search found.
type Found struct {
	Index int64
	Leaf  []byte // the canonical bytes, the Merkle leaf
	Entry *Entry
}

// Match reports whether e meets every condition of f.
func (f *Filter) Match(e *Entry) bool {
	if !f.From.IsZero() && e.Time.Before(f.From) || !f.To.IsZero() && !e.Time.Before(f.To) {
		return false
	}
	if f.Action != "" && e.Action != f.Action || f.Outcome != "" && e.Outcome != f.Outcome {
		return false
	}
	if f.Agent != "" && e.Principal.ID != f.Agent {
		return false
	}
	if f.Patient != "" && !contains(e.Patients(), f.Patient) {
		return false
	}
	if f.Entity != "" {
		ok := false
		for _, r := range e.Resources {
			if r.Type+"/"+r.ID == f.Entity {
				ok = true
				break
			}
		}
		if !ok {
			return false
		}
	}
	return true
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// Find returns the entries f selects, in log order. It finds candidates
// through the in-memory index and checks every one against f after
// opening it.
func (l *Log) Find(ctx context.Context, f Filter) ([]Found, error) {
	// Entries another process appended since are indexed first.
	if err := l.refresh(ctx); err != nil {
		return nil, err
	}
	limit := f.Limit
	if limit <= 0 {
		limit = 1000
	}
	var key string
	switch {
	case f.Patient != "":
		key = fact("patient", f.Patient)
	case f.Entity != "":
		key = fact("entity", f.Entity)
	case f.Agent != "":
		key = fact("agent", f.Agent)
	case f.Action != "":
		key = fact("action", f.Action)
	case f.Outcome != "":
		key = fact("outcome", f.Outcome)
	}
	var from, to int64
	if !f.From.IsZero() {
		from = f.From.UnixMicro()
	}
	if !f.To.IsZero() {
		to = f.To.UnixMicro()
	}
	start := max(f.Start, 0)
	var out []Found
	for len(out) < limit {
		cands := l.idx.candidates(key, start, from, to, min(limit-len(out), 512))
		if len(cands) == 0 {
			break
		}
		got, err := l.readEntries(ctx, cands)
		if err != nil {
			return nil, err
		}
		for _, x := range got {
			if f.Match(x.Entry) {
				out = append(out, x)
			}
		}
		start = cands[len(cands)-1] + 1
	}
	return out, nil
}
