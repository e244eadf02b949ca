package audit

import (
	"context"
	"fmt"
	"strings"
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
// through the lookup index (or the time index) and checks every one
// against f after opening it, so an altered index can hide entries from a
// search but never put a wrong one in it.
func (l *Log) Find(ctx context.Context, f Filter) ([]Found, error) {
	limit := f.Limit
	if limit <= 0 {
		limit = 1000
	}
	var kind, value string
	switch {
	case f.Patient != "":
		kind, value = "patient", f.Patient
	case f.Entity != "":
		kind, value = "entity", f.Entity
	case f.Agent != "":
		kind, value = "agent", f.Agent
	case f.Action != "":
		kind, value = "action", f.Action
	case f.Outcome != "":
		kind, value = "outcome", f.Outcome
	}
	var q strings.Builder
	var args []any
	if kind != "" {
		q.WriteString(`SELECT e.idx, e.sealed FROM lookup k JOIN entries e ON e.idx = k.idx WHERE k.token = ? AND k.idx >= ?`)
		args = append(args, lookupToken(l.mac, kind, value))
	} else {
		q.WriteString(`SELECT e.idx, e.sealed FROM entries e WHERE e.idx >= ?`)
	}
	from := max(f.Start, 0)
	fromArg := len(args)
	args = append(args, from)
	if !f.From.IsZero() {
		q.WriteString(` AND e.time >= ?`)
		args = append(args, f.From.UnixMicro())
	}
	if !f.To.IsZero() {
		q.WriteString(` AND e.time < ?`)
		args = append(args, f.To.UnixMicro())
	}
	q.WriteString(` ORDER BY e.idx LIMIT ?`)
	const batch = 512
	var out []Found
	for len(out) < limit {
		a := append(append([]any(nil), args...), batch)
		a[fromArg] = from
		rows, err := l.r.QueryContext(ctx, q.String(), a...)
		if err != nil {
			return nil, fmt.Errorf("audit: find: %w", err)
		}
		n := 0
		for rows.Next() {
			var idx int64
			var sealed []byte
			if err := rows.Scan(&idx, &sealed); err != nil {
				rows.Close()
				return nil, fmt.Errorf("audit: find: %w", err)
			}
			n++
			from = idx + 1
			leaf, err := l.sealer.Open(sealed, entryAD(idx))
			if err != nil {
				rows.Close()
				return nil, fmt.Errorf("audit: entry %d does not open: altered or damaged (run ehrvault audit verify)", idx)
			}
			e, err := Decode(leaf)
			if err != nil {
				rows.Close()
				return nil, fmt.Errorf("audit: entry %d: %w", idx, err)
			}
			if f.Match(e) && len(out) < limit {
				out = append(out, Found{Index: idx, Leaf: leaf, Entry: e})
			}
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return nil, fmt.Errorf("audit: find: %w", err)
		}
		if n < batch {
			break
		}
	}
	return out, nil
}
