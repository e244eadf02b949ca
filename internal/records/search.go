package records

import (
	"context"
	"errors"
	"net/url"

	"github.com/ehrvault/ehrvault/internal/store"
)

// UnknownParamError is what an Indexer returns for a search parameter it
// does not support, so that the API can apply Prefer: handling.
type UnknownParamError struct {
	Param string
}

func (e *UnknownParamError) Error() string {
	return "unknown or unsupported search parameter " + e.Param
}

// SearchRequest is a search of one type by exact-match parameters.
//
// This is the foundation's search: every parameter the Indexer turns into
// tokens, ANDed and ORed as FHIR says, paged in id order. The search
// engine of internal/search (its own issue) supersedes it.
type SearchRequest struct {
	Type   string
	Params url.Values // search parameters only: no _count, _page, _format …
	Count  int
	Scope  string // canonical query, which cursors are bound to
	Page   string
}

// SearchPage is one page of matches.
type SearchPage struct {
	Resources []*Resource
	Next      string
}

// Search returns a page of the current resources of r.Type matching
// r.Params.
func (s *Service) Search(ctx context.Context, r SearchRequest) (*SearchPage, error) {
	if err := checkType(r.Type); err != nil {
		return nil, err
	}
	var tokens []store.Token
	if len(r.Params) > 0 {
		var err error
		tokens, err = s.index.Condition(r.Type, r.Params)
		if err != nil {
			var u *UnknownParamError
			if errors.As(err, &u) {
				return nil, newError(NotSupported, u.Param, "%s", u.Error())
			}
			return nil, newError(Invalid, "", "%s", err.Error())
		}
	}
	count := pageCount(r.Count)
	q := store.ListQuery{Type: r.Type, Tokens: tokens, Limit: count + 1}
	if r.Page != "" {
		p, err := s.cursors.decode("search|"+r.Scope, r.Page)
		if err != nil {
			return nil, newError(Invalid, "_page", "the page cursor is invalid or belongs to another query; start again from the first page")
		}
		q.AfterID = string(p)
	}
	ids, err := s.store.List(ctx, q)
	if err != nil {
		return nil, s.storeError(err, r.Type, "")
	}
	page := &SearchPage{}
	if len(ids) > count {
		ids = ids[:count]
		page.Next = s.cursors.encode("search|"+r.Scope, []byte(ids[count-1]))
	}
	ks := s.store.Keys()
	for _, row := range ids {
		v, err := s.store.Read(ctx, r.Type, row)
		if errors.Is(err, store.ErrNotFound) {
			continue // deleted between List and Read
		}
		if err != nil {
			return nil, s.storeError(err, r.Type, "")
		}
		if v.Deleted {
			continue
		}
		res, err := s.open(ctx, ks, v)
		if err != nil {
			return nil, err
		}
		page.Resources = append(page.Resources, res)
	}
	return page, nil
}
