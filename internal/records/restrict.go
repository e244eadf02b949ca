package records

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"slices"

	"github.com/ehrvault/ehrvault/internal/access"
	"github.com/ehrvault/ehrvault/internal/fhir"
	"github.com/ehrvault/ehrvault/internal/store"
)

// Scope is an access.Restriction resolved against the store: the data
// keys and label tokens that queries are restricted by, and the owners a
// single resource is checked against. A nil *Scope admits everything.
type Scope struct {
	owners map[string]bool // admitted Resource.Owner values
	keys   []int64         // admitted data keys, never nil
	labels []store.Token   // admitted labels, never nil
	allow  map[string]bool // admitted labels, as "system|code"
}

// Scope resolves r. A nil r gives a nil Scope: no restriction.
func (s *Service) Scope(ctx context.Context, r *access.Restriction) (*Scope, error) {
	if r == nil {
		return nil, nil
	}
	sc := &Scope{owners: map[string]bool{}, keys: []int64{}, allow: map[string]bool{}}
	ks := s.store.Keys()
	add := func(owner string) error {
		sc.owners[owner] = true
		id, _, err := ks.WrappedKey(ctx, owner)
		switch {
		case errors.Is(err, store.ErrNotFound):
			return nil // nothing is sealed under it yet
		case err != nil:
			return s.storeError(err, "", "")
		}
		sc.keys = append(sc.keys, id)
		return nil
	}
	for _, p := range r.Patients {
		if !fhir.ValidID(p) {
			continue
		}
		if err := add(s.ownerKey("Patient/" + p)); err != nil {
			return nil, err
		}
	}
	if r.Shared {
		if err := add(OwnerStore); err != nil {
			return nil, err
		}
	}
	slices.Sort(sc.keys)
	sc.keys = slices.Compact(sc.keys)
	for _, l := range r.Labels {
		sc.allow[l] = true
	}
	sc.labels = s.index.LabelTokens(r.Labels)
	if sc.labels == nil {
		sc.labels = []store.Token{}
	}
	return sc, nil
}

// The owners of resources that belong to no single patient (see Indexer).
const (
	OwnerStore  = "store"  // no patient
	OwnerShared = "shared" // several patients
)

// Fingerprint names what sc admits, for caches of results computed under
// it: equal for equal scopes, "" for no restriction.
func (sc *Scope) Fingerprint() string {
	if sc == nil {
		return ""
	}
	h := sha256.New()
	var b [8]byte
	for _, k := range sc.keys {
		binary.BigEndian.PutUint64(b[:], uint64(k))
		h.Write(b[:])
	}
	h.Write([]byte{0xff})
	labels := slices.Clone(sc.labels)
	slices.SortFunc(labels, func(a, b store.Token) int { return bytes.Compare(a, b) })
	for _, l := range labels {
		h.Write(l)
	}
	return string(h.Sum(nil))
}

// Keys returns the data keys sc admits; nil for no restriction.
func (sc *Scope) Keys() []int64 {
	if sc == nil {
		return nil
	}
	return sc.keys
}

// Labels returns the label tokens sc admits; nil for no restriction.
func (sc *Scope) Labels() []store.Token {
	if sc == nil {
		return nil
	}
	return sc.labels
}

// Admits reports whether sc admits the opened resource r.
func (sc *Scope) Admits(r *Resource) bool {
	if sc == nil {
		return true
	}
	if !sc.owners[r.Owner] {
		return false
	}
	data := r.JSON
	if data == nil {
		data = r.tomb
	}
	return sc.admitsLabels(data)
}

// admitsLabels reports whether every security label of a resource is one
// sc admits. Content that does not parse (never written by this package)
// is not admitted.
func (sc *Scope) admitsLabels(data []byte) bool {
	v, err := fhir.Parse(data, 0)
	if err != nil {
		return false
	}
	meta := v.Get("meta")
	if meta == nil {
		return true
	}
	sec := meta.Get("security")
	if sec == nil || sec.Kind != fhir.Array {
		return true
	}
	for i := range sec.Items {
		c := &sec.Items[i]
		if !sc.allow[c.Str("system")+"|"+c.Str("code")] {
			return false
		}
	}
	return true
}

// securityLabels returns the labels of res as "system|code".
func securityLabels(res *fhir.Value) []string {
	meta := res.Get("meta")
	if meta == nil {
		return nil
	}
	sec := meta.Get("security")
	if sec == nil || sec.Kind != fhir.Array {
		return nil
	}
	out := make([]string, 0, len(sec.Items))
	for i := range sec.Items {
		c := &sec.Items[i]
		out = append(out, c.Str("system")+"|"+c.Str("code"))
	}
	return out
}

// OpenRows reads and opens the current versions of rows of typ, as a
// search found them, in their order. A row deleted or gone since is left
// out; so is one that sc does not admit (the search admitted it; a write
// in between may have moved it).
func (s *Service) OpenRows(ctx context.Context, typ string, rows []string, sc *Scope) ([]*Resource, error) {
	ks := s.store.Keys()
	out := make([]*Resource, 0, len(rows))
	for _, row := range rows {
		v, err := s.store.Read(ctx, typ, row)
		if errors.Is(err, store.ErrNotFound) {
			continue
		}
		if err != nil {
			return nil, s.storeError(err, typ, "")
		}
		if v.Deleted {
			continue
		}
		res, err := s.open(ctx, ks, v)
		if err != nil {
			return nil, err
		}
		if sc.Admits(res) {
			out = append(out, res)
		}
	}
	return out, nil
}

// ReadIn reads the current version of typ/id for a caller restricted by
// sc: nil, nil when it does not exist, is deleted, or sc does not admit
// it. Includes use it, where a missing target is no error.
func (s *Service) ReadIn(ctx context.Context, typ, id string, sc *Scope) (*Resource, error) {
	if !fhir.IsResourceType(typ) || !fhir.ValidID(id) {
		return nil, nil
	}
	res, err := s.OpenRows(ctx, typ, []string{s.rowID(typ, id)}, sc)
	if err != nil || len(res) == 0 {
		return nil, err
	}
	return res[0], nil
}
