package records

import (
	"context"
	"errors"
	"net/url"
	"strings"
	"time"

	"github.com/ehrvault/ehrvault/internal/access"
	"github.com/ehrvault/ehrvault/internal/fhir"
	"github.com/ehrvault/ehrvault/internal/keyring"
	"github.com/ehrvault/ehrvault/internal/store"
)

// Result says what a write did.
type Result uint8

// The results of a write.
const (
	// Created: a new resource, or a deleted one brought back (201).
	Created Result = iota + 1
	// Updated: a new version of a current resource (200).
	Updated
	// Unchanged: the content equals the current version's, so no version
	// was written (200). This is what makes a repeated import harmless.
	Unchanged
	// Existing: a conditional create found its match and wrote nothing (200).
	Existing
	// Deleted: a deletion version was written (204).
	Deleted
	// NothingToDelete: the resource did not exist or was already deleted (204).
	NothingToDelete
)

// Outcome is the result of one write.
type Outcome struct {
	Result Result
	// Resource is the version current after the write: the new version,
	// the unchanged one, the match of a conditional create, or the
	// deletion version (JSON nil). Nil for NothingToDelete.
	Resource *Resource
}

// WriteOptions changes how writes treat ids.
type WriteOptions struct {
	// KeepIDs makes a create keep the id its resource carries (or the UUID
	// of its urn:uuid fullUrl in a Bundle) and behave as an update when
	// that resource exists. This is bulk-load behaviour, used by import so
	// that loading the same files twice creates nothing new; over the API
	// a create always gets a server-assigned id, as FHIR requires.
	KeepIDs bool
	// LoadOnly makes a Bundle carry out only what loads data: its reads
	// (GET, HEAD) and operation calls ($name) are left out, each with
	// EntryResult.LeftOut set, and the version preconditions of its
	// entries (ifMatch, ifNoneMatch, ifModifiedSince) are ignored, since
	// they name versions on the server the Bundle came from. Import uses
	// it; the API never does.
	LoadOnly bool
	// Restrict limits what a Bundle's GET entries may read: a resource it
	// does not admit is not found.
	Restrict *access.Restriction
	// RestrictWrites, if set, limits what may be written: every version
	// written, and every current version replaced or deleted, must be one
	// it admits (a patient's own compartment for a patient app, the
	// assigned patients of a medical device); anything else fails with
	// Forbidden and nothing of the request is kept.
	RestrictWrites *access.Restriction
}

// writer performs writes inside one store transaction.
type writer struct {
	s      *Service
	tx     store.Tx
	now    time.Time
	opt    WriteOptions
	wscope *Scope // RestrictWrites resolved, once
}

// update runs fn in one write transaction.
func (s *Service) update(ctx context.Context, opt WriteOptions, fn func(w *writer) error) error {
	err := s.store.Update(ctx, func(tx store.Tx) error {
		// The clock is read inside the transaction, so write times follow
		// commit order.
		now := s.now().UTC().Truncate(time.Millisecond)
		return fn(&writer{s: s, tx: tx, now: now, opt: opt})
	})
	if err != nil {
		return s.storeError(err, "", "")
	}
	return nil
}

// Create stores b as a new resource. With ifNoneExist (a search query such
// as "identifier=system|value") it first looks for a match: one match is
// returned as Existing, several fail with PreconditionFailed. Create takes
// b over: it sets its id and meta.
func (s *Service) Create(ctx context.Context, b *Body, ifNoneExist string, opt WriteOptions) (*Outcome, error) {
	var out *Outcome
	err := s.update(ctx, opt, func(w *writer) error {
		var err error
		out, err = w.create(ctx, &b.v, ifNoneExist, "")
		return err
	})
	return out, err
}

// Update stores b as the new version of typ/id, creating the resource if it
// does not exist. ifMatch, if not empty, is the ETag the current version
// must have (W/"3").
func (s *Service) Update(ctx context.Context, typ, id string, b *Body, ifMatch string, opt WriteOptions) (*Outcome, error) {
	if err := checkType(typ); err != nil {
		return nil, err
	}
	if err := checkID(id); err != nil {
		return nil, err
	}
	want, err := parseETag(ifMatch)
	if err != nil {
		return nil, err
	}
	var out *Outcome
	err = s.update(ctx, opt, func(w *writer) error {
		if err := w.checkBody(&b.v, typ, id); err != nil {
			return err
		}
		out, err = w.put(ctx, typ, id, &b.v, want)
		return err
	})
	return out, err
}

// ConditionalUpdate updates the one resource of typ matching query, creates
// b if none matches, and fails with PreconditionFailed if several do.
func (s *Service) ConditionalUpdate(ctx context.Context, typ, query string, b *Body, ifMatch string, opt WriteOptions) (*Outcome, error) {
	if err := checkType(typ); err != nil {
		return nil, err
	}
	want, err := parseETag(ifMatch)
	if err != nil {
		return nil, err
	}
	var out *Outcome
	err = s.update(ctx, opt, func(w *writer) error {
		var err error
		out, err = w.conditionalPut(ctx, typ, query, &b.v, want)
		return err
	})
	return out, err
}

// Delete deletes typ/id: a deletion version is written and the resource
// reads as Gone. Deleting what does not exist succeeds with NothingToDelete.
func (s *Service) Delete(ctx context.Context, typ, id, ifMatch string, opt WriteOptions) (*Outcome, error) {
	if err := checkType(typ); err != nil {
		return nil, err
	}
	if err := checkID(id); err != nil {
		return nil, err
	}
	want, err := parseETag(ifMatch)
	if err != nil {
		return nil, err
	}
	var out *Outcome
	err = s.update(ctx, opt, func(w *writer) error {
		var err error
		out, err = w.delete(ctx, typ, id, want)
		return err
	})
	return out, err
}

// ConditionalDelete deletes the one resource of typ matching query. No match
// gives NothingToDelete; several fail with PreconditionFailed (ehrvault
// deletes one resource at a time, as the CapabilityStatement says).
func (s *Service) ConditionalDelete(ctx context.Context, typ, query string, opt WriteOptions) (*Outcome, error) {
	if err := checkType(typ); err != nil {
		return nil, err
	}
	var out *Outcome
	err := s.update(ctx, opt, func(w *writer) error {
		ids, err := w.match(ctx, typ, query)
		if err != nil {
			return err
		}
		switch len(ids) {
		case 0:
			out = &Outcome{Result: NothingToDelete}
			return nil
		case 1:
			cur, err := w.current(ctx, typ, ids[0])
			if err != nil {
				return err
			}
			out, err = w.delete(ctx, typ, cur.ID, 0)
			return err
		}
		return newError(PreconditionFailed, "", "the conditional delete matches more than one resource; narrow the search")
	})
	return out, err
}

// parseETag reads an If-Match value: W/"3", "3" or 3. Empty gives 0.
func parseETag(s string) (int64, error) {
	if s == "" {
		return 0, nil
	}
	t := strings.TrimPrefix(strings.TrimSpace(s), "W/")
	t = strings.Trim(t, `"`)
	n, ok := parsePositive(t)
	if !ok {
		return 0, newError(Invalid, "", `If-Match must be a version ETag such as W/"3"`)
	}
	return n, nil
}

func parsePositive(s string) (int64, bool) {
	if s == "" || len(s) > 18 {
		return 0, false
	}
	var n int64
	for _, c := range []byte(s) {
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + int64(c-'0')
	}
	return n, n > 0
}

// checkBody checks that a body sent for typ/id says so itself.
func (w *writer) checkBody(res *fhir.Value, typ, id string) error {
	if rt := res.Str("resourceType"); rt != typ {
		return newError(Invalid, "resourceType", "the resource type of the body differs from the one in the URL")
	}
	bid := res.Str("id")
	if bid == "" {
		return newError(Invalid, typ+".id", "an update must carry the resource id in the body")
	}
	if bid != id {
		return newError(Invalid, typ+".id", "the id in the body differs from the id in the URL")
	}
	return nil
}

// create stores res as a new resource. fullURL is the entry's fullUrl in a
// Bundle, used for its id under KeepIDs.
func (w *writer) create(ctx context.Context, res *fhir.Value, ifNoneExist, fullURL string) (*Outcome, error) {
	typ := res.Str("resourceType")
	if ifNoneExist != "" {
		ids, err := w.match(ctx, typ, ifNoneExist)
		if err != nil {
			return nil, err
		}
		switch len(ids) {
		case 0:
		case 1:
			r, err := w.current(ctx, typ, ids[0])
			if err != nil {
				return nil, err
			}
			return &Outcome{Result: Existing, Resource: r}, nil
		default:
			return nil, newError(PreconditionFailed, "", "If-None-Exist matches more than one resource")
		}
	}
	if w.opt.KeepIDs {
		if id := keptID(res, fullURL); id != "" {
			res.Set("id", fhir.StringValue(id))
			return w.put(ctx, typ, id, res, 0)
		}
	}
	id := w.s.newID()
	res.Set("id", fhir.StringValue(id))
	r, err := w.write(ctx, typ, id, 1, res)
	if err != nil {
		return nil, err
	}
	return &Outcome{Result: Created, Resource: r}, nil
}

// keptID is the id a create keeps under KeepIDs: the resource's own, else
// the UUID of a urn:uuid fullUrl.
func keptID(res *fhir.Value, fullURL string) string {
	if id := res.Str("id"); id != "" {
		return id
	}
	if u, ok := strings.CutPrefix(fullURL, "urn:uuid:"); ok && fhir.ValidID(u) {
		return u
	}
	return ""
}

// put writes res as the next version of typ/id; want, if non-zero, is the
// version the current one must have.
func (w *writer) put(ctx context.Context, typ, id string, res *fhir.Value, want int64) (*Outcome, error) {
	head, err := w.tx.Read(ctx, typ, w.s.rowID(typ, id))
	switch {
	case errors.Is(err, store.ErrNotFound):
		if want != 0 {
			return nil, newError(PreconditionFailed, "", "If-Match names a version of a resource that does not exist")
		}
		r, err := w.write(ctx, typ, id, 1, res)
		if err != nil {
			return nil, err
		}
		return &Outcome{Result: Created, Resource: r}, nil
	case err != nil:
		return nil, w.s.storeError(err, typ, id)
	}
	if want != 0 && head.Version != want {
		return nil, newError(PreconditionFailed, "", "If-Match does not name the current version; read the resource again")
	}
	result := Created
	if !head.Deleted {
		result = Updated
		cur, err := w.s.open(ctx, w.tx, head)
		if err != nil {
			return nil, err
		}
		if err := w.mayWrite(ctx, cur); err != nil {
			return nil, err
		}
		if same, err := sameContent(cur.JSON, res); err != nil {
			return nil, &Error{Code: Internal, cause: err}
		} else if same {
			return &Outcome{Result: Unchanged, Resource: cur}, nil
		}
	}
	// Keep write times increasing per resource even if the clock steps back.
	if w.now.Before(head.Updated) {
		w.now = head.Updated
	}
	r, err := w.write(ctx, typ, id, head.Version+1, res)
	if err != nil {
		return nil, err
	}
	return &Outcome{Result: result, Resource: r}, nil
}

// conditionalPut updates the one match of query, or creates res.
func (w *writer) conditionalPut(ctx context.Context, typ, query string, res *fhir.Value, want int64) (*Outcome, error) {
	if rt := res.Str("resourceType"); rt != typ {
		return nil, newError(Invalid, "resourceType", "the resource type of the body differs from the one in the URL")
	}
	ids, err := w.match(ctx, typ, query)
	if err != nil {
		return nil, err
	}
	switch len(ids) {
	case 0:
		id := res.Str("id")
		if id == "" {
			id = w.s.newID()
			res.Set("id", fhir.StringValue(id))
		} else if _, err := w.tx.Read(ctx, typ, w.s.rowID(typ, id)); err == nil {
			return nil, newError(Conflict, typ+".id", "no resource matches the condition, but the id in the body belongs to another resource")
		}
		return w.put(ctx, typ, id, res, want)
	case 1:
		cur, err := w.current(ctx, typ, ids[0])
		if err != nil {
			return nil, err
		}
		if bid := res.Str("id"); bid != "" && bid != cur.ID {
			return nil, newError(Invalid, typ+".id", "the id in the body differs from the id of the resource the condition matches")
		}
		res.Set("id", fhir.StringValue(cur.ID))
		return w.put(ctx, typ, cur.ID, res, want)
	}
	return nil, newError(PreconditionFailed, "", "the condition matches more than one resource; narrow the search")
}

// delete writes a deletion version of typ/id.
func (w *writer) delete(ctx context.Context, typ, id string, want int64) (*Outcome, error) {
	row := w.s.rowID(typ, id)
	head, err := w.tx.Read(ctx, typ, row)
	if errors.Is(err, store.ErrNotFound) {
		if want != 0 {
			return nil, newError(PreconditionFailed, "", "If-Match names a version of a resource that does not exist")
		}
		return &Outcome{Result: NothingToDelete}, nil
	}
	if err != nil {
		return nil, w.s.storeError(err, typ, id)
	}
	if want != 0 && head.Version != want {
		return nil, newError(PreconditionFailed, "", "If-Match does not name the current version; read the resource again")
	}
	if head.Deleted {
		return &Outcome{Result: NothingToDelete}, nil
	}
	now := w.now
	if now.Before(head.Updated) {
		now = head.Updated
	}
	// The tombstone is sealed under the key of the version it follows, so
	// that shredding that key also hides which id was deleted.
	k, err := w.s.keys.KeyByID(ctx, w.tx, head.KeyID)
	if err != nil {
		return nil, w.s.storeError(err, typ, id)
	}
	cur, err := w.s.open(ctx, w.tx, head)
	if err != nil {
		return nil, err
	}
	if err := w.mayWrite(ctx, cur); err != nil {
		return nil, err
	}
	var security *fhir.Value
	var ix *store.Index
	if body, err := fhir.Parse(cur.JSON, 0); err == nil {
		if meta := body.Get("meta"); meta != nil {
			security = meta.Get("security")
		}
		if labels := securityLabels(&body); len(labels) > 0 {
			ix = &store.Index{Labels: w.s.index.LabelTokens(labels)}
		}
	}
	version := head.Version + 1
	v := &store.Version{Type: typ, ID: row, Version: version, Updated: now, Deleted: true, KeyID: k.ID(),
		Data: k.Seal(tombstone(typ, id, security), keyring.ResourceAD(typ, row, version))}
	if err := w.tx.Put(ctx, v, ix); err != nil {
		return nil, w.s.storeError(err, typ, id)
	}
	return &Outcome{Result: Deleted, Resource: &Resource{Type: typ, ID: id, Version: v.Version, Updated: now, Deleted: true, Owner: k.Owner()}}, nil
}

// write seals res as version of typ/id and stores it.
func (w *writer) write(ctx context.Context, typ, id string, version int64, res *fhir.Value) (*Resource, error) {
	setMeta(res, version, w.now)
	fhir.Normalize(res)
	data := fhir.Marshal(res)
	k, err := w.s.keys.KeyFor(ctx, w.tx, w.s.ownerKey(w.s.index.Owner(res)))
	if err != nil {
		return nil, w.s.storeError(err, typ, id)
	}
	row := w.s.rowID(typ, id)
	v := &store.Version{
		Type:    typ,
		ID:      row,
		Version: version,
		Updated: w.now,
		KeyID:   k.ID(),
		Data:    k.Seal(data, keyring.ResourceAD(typ, row, version)),
	}
	out := &Resource{Type: typ, ID: id, Version: version, Updated: w.now, JSON: data, Owner: k.Owner()}
	if err := w.mayWrite(ctx, out); err != nil {
		return nil, err
	}
	if err := w.tx.Put(ctx, v, w.s.index.Index(res)); err != nil {
		return nil, w.s.storeError(err, typ, id)
	}
	return out, nil
}

// mayWrite refuses a version outside opt.RestrictWrites.
func (w *writer) mayWrite(ctx context.Context, r *Resource) error {
	if w.opt.RestrictWrites == nil {
		return nil
	}
	if w.wscope == nil {
		sc, err := w.s.Scope(ctx, w.opt.RestrictWrites)
		if err != nil {
			return err
		}
		w.wscope = sc
	}
	if !w.wscope.Admits(r) {
		return newError(Forbidden, "", "this resource belongs to a patient outside what the caller may write")
	}
	return nil
}

// current reads and unseals the current version of the resource with row
// id row (as List returns them).
func (w *writer) current(ctx context.Context, typ, row string) (*Resource, error) {
	v, err := w.tx.Read(ctx, typ, row)
	if err != nil {
		return nil, w.s.storeError(err, typ, "")
	}
	return w.s.open(ctx, w.tx, v)
}

// match returns the row ids of the resources of typ matching a conditional
// query, at most two (enough to tell none, one and several apart).
func (w *writer) match(ctx context.Context, typ, query string) ([]string, error) {
	// Some clients write the type in front ("Patient?identifier=…"), as
	// in a conditional reference; the query means the same.
	query = strings.TrimPrefix(query, typ+"?")
	q, err := url.ParseQuery(query)
	if err != nil {
		return nil, newError(Invalid, "", "the search query of the conditional interaction is not a valid URL query")
	}
	if len(q) == 0 {
		return nil, newError(Invalid, "", "a conditional interaction needs at least one search parameter")
	}
	tokens, err := w.s.index.Condition(typ, q)
	if err != nil {
		return nil, newError(Invalid, "", "%s", err.Error())
	}
	limit := 2
	if w.opt.RestrictWrites != nil {
		// A restricted writer matches only what it may write: the rest
		// is not there for it (neither a conflict nor a 412).
		limit = restrictedMatchLimit
	}
	ids, err := w.tx.List(ctx, store.ListQuery{Type: typ, Tokens: tokens, Limit: limit})
	if err != nil {
		return nil, w.s.storeError(err, typ, "")
	}
	if w.opt.RestrictWrites == nil {
		return ids, nil
	}
	var admitted []string
	for _, row := range ids {
		cur, err := w.current(ctx, typ, row)
		if err != nil {
			return nil, err
		}
		if w.mayWrite(ctx, cur) == nil {
			admitted = append(admitted, row)
		}
		if len(admitted) == 2 {
			break
		}
	}
	return admitted, nil
}

// restrictedMatchLimit bounds the matches a restricted writer's
// conditional interaction looks through for ones it may write.
const restrictedMatchLimit = 64

// setMeta sets meta.versionId and meta.lastUpdated, keeping the rest of
// meta (profiles, tags, security labels, source).
func setMeta(res *fhir.Value, version int64, now time.Time) {
	meta := res.Get("meta")
	if meta == nil {
		res.Set("meta", fhir.Value{Kind: fhir.Object})
		meta = res.Get("meta")
	}
	meta.Delete("_versionId")
	meta.Delete("_lastUpdated")
	meta.Set("versionId", fhir.StringValue(formatInt(version)))
	meta.Set("lastUpdated", fhir.StringValue(FormatInstant(now)))
}

// FormatInstant formats t as a FHIR instant in UTC with milliseconds.
func FormatInstant(t time.Time) string {
	return t.UTC().Format("2006-01-02T15:04:05.000Z07:00")
}

func formatInt(n int64) string {
	var b [20]byte
	i := len(b)
	for {
		i--
		b[i] = byte('0' + n%10)
		n /= 10
		if n == 0 {
			break
		}
	}
	return string(b[i:])
}

// sameContent reports whether the stored JSON cur and res say the same,
// ignoring meta.versionId and meta.lastUpdated.
func sameContent(cur []byte, res *fhir.Value) (bool, error) {
	old, err := fhir.Parse(cur, 0)
	if err != nil {
		return false, err
	}
	strip := func(v *fhir.Value) fhir.Value {
		c := *v
		c.Fields = make([]fhir.Field, 0, len(v.Fields))
		for _, f := range v.Fields {
			if f.Name == "meta" {
				m := f.Value.Clone()
				for _, n := range []string{"versionId", "_versionId", "lastUpdated", "_lastUpdated"} {
					m.Delete(n)
				}
				if len(m.Fields) == 0 {
					continue
				}
				f.Value = m
			}
			c.Fields = append(c.Fields, f)
		}
		return c
	}
	a, b := strip(&old), strip(res)
	return fhir.Equal(&a, &b), nil
}
