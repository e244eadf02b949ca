package records

import (
	"context"
	"time"

	"github.com/ehrvault/ehrvault/internal/access"
	"github.com/ehrvault/ehrvault/internal/store"
)

// Page sizes for listings.
const (
	DefaultCount = 50
	MaxCount     = 1000
)

// HistoryRequest asks for the history of the system, a type or an
// instance.
type HistoryRequest struct {
	Type, ID string    // both empty: the whole system
	Since    time.Time // _since
	At       time.Time // _at
	Count    int       // _count; DefaultCount if 0
	// Scope is the canonical form of the query, which page cursors are
	// bound to; the API passes the query without its cursor.
	Scope string
	Page  string // cursor from a previous page's Next
	// Restrict limits the history to the versions it admits, each by its
	// own owner and labels; an instance outside it is not found.
	Restrict *access.Restriction
}

// HistoryEntry is one version in a history page.
type HistoryEntry struct {
	*Resource
	// Method is how the version came to be: POST for the first version,
	// PUT for later ones, DELETE for deletions.
	Method string
}

// HistoryPage is one page of history, newest first.
type HistoryPage struct {
	Entries []HistoryEntry
	Next    string // cursor of the next page; empty on the last
}

// History returns a page of history.
func (s *Service) History(ctx context.Context, r HistoryRequest) (*HistoryPage, error) {
	if r.Type != "" {
		if err := checkType(r.Type); err != nil {
			return nil, err
		}
	}
	if r.ID != "" {
		if err := checkID(r.ID); err != nil {
			return nil, err
		}
	}
	count := pageCount(r.Count)
	q := store.HistoryQuery{Type: r.Type, Since: r.Since, At: r.At, Limit: count + 1}
	if r.ID != "" {
		q.ID = s.rowID(r.Type, r.ID)
	}
	if r.Page != "" {
		seq, err := s.cursors.decodeSeq("history|"+r.Scope, r.Page)
		if err != nil {
			return nil, newError(Invalid, "_page", "the page cursor is invalid or belongs to another query; start again from the first page")
		}
		q.BeforeSeq = seq
	}
	sc, err := s.Scope(ctx, r.Restrict)
	if err != nil {
		return nil, err
	}
	q.Keys, q.Labels = sc.Keys(), sc.Labels()
	if r.ID != "" && r.Page == "" {
		head, err := s.store.Read(ctx, r.Type, q.ID)
		if err != nil {
			return nil, s.storeError(err, r.Type, r.ID)
		}
		if sc != nil {
			res, err := s.open(ctx, s.store.Keys(), head)
			if err != nil {
				return nil, err
			}
			if !sc.Admits(res) {
				return nil, newError(NotFound, "", "no such resource")
			}
		}
	}
	vs, err := s.store.History(ctx, q)
	if err != nil {
		return nil, s.storeError(err, r.Type, r.ID)
	}
	page := &HistoryPage{}
	if len(vs) > count {
		vs = vs[:count]
		page.Next = s.cursors.encodeSeq("history|"+r.Scope, vs[count-1].Seq)
	}
	ks := s.store.Keys()
	for _, v := range vs {
		res, err := s.open(ctx, ks, v)
		if err != nil {
			return nil, err
		}
		m := "PUT"
		switch {
		case v.Deleted:
			m = "DELETE"
		case v.Version == 1:
			m = "POST"
		}
		page.Entries = append(page.Entries, HistoryEntry{Resource: res, Method: m})
	}
	return page, nil
}

func pageCount(n int) int {
	switch {
	case n <= 0:
		return DefaultCount
	case n > MaxCount:
		return MaxCount
	}
	return n
}
