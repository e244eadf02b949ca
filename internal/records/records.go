// Package records carries out the FHIR RESTful interactions — read, vread,
// create, update, delete, history, conditional interactions, batch and
// transaction Bundles — over a sealed store.
//
// # Promises
//
//   - Every resource version is sealed before it reaches the store, under
//     the data key of the patient whose compartment holds it, or under the
//     store key when it belongs to no single patient. The sealing binds
//     type, id and version, so a row moved or replayed under another name
//     does not open.
//
//   - A write is validated before anything is stored; a transaction Bundle
//     is stored entirely or not at all.
//
//   - Errors a client can cause are *Error values whose issues name
//     elements, parameters and entries, never values.
//
//   - The store never holds a resource id. Rows are keyed by a keyed hash
//     of (type, id) — the row id — and the id itself travels sealed inside
//     the resource (or, for a deletion, inside a sealed tombstone). Clients
//     may choose ids (update as create, imports keep theirs), and some
//     choose medical record numbers.
//
// # Non-promises
//
// Records does not authenticate or authorize; the caller has done that.
// It does not parse HTTP; internal/api does.
package records

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"hash"
	"log/slog"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/ehrvault/ehrvault/internal/access"
	"github.com/ehrvault/ehrvault/internal/fhir"
	"github.com/ehrvault/ehrvault/internal/keyring"
	"github.com/ehrvault/ehrvault/internal/store"
)

// Indexer reads from a resource's content what records needs to seal and
// find it. internal/search implements it from the specification's search
// parameters and the patient CompartmentDefinition.
type Indexer interface {
	// Owner names the data key that seals res: "Patient/<id>" for a
	// resource of one patient's compartment, "shared" for a resource in
	// several patients' compartments, else "store".
	Owner(res *fhir.Value) string
	// Index returns what res is found and sorted by: its blind-index
	// tokens and its values.
	Index(res *fhir.Value) *store.Index
	// Condition compiles the query of a conditional interaction on typ
	// ("identifier=system|value") into tokens that all must match. The
	// error names an unsupported or malformed parameter.
	Condition(typ string, q url.Values) ([]store.Token, error)
	// LabelTokens returns the tokens that Index gives security labels
	// ("system|code"), for restrictions to some labels.
	LabelTokens(labels []string) []store.Token
}

// Config holds what a Service is built from.
type Config struct {
	Store   store.Store
	Keys    *keyring.Keyring
	Indexer Indexer
	// Now returns the current time; time.Now if nil.
	Now func() time.Time
	// NewID returns a fresh resource id; random 128-bit ids if nil.
	NewID func() string
	Log   *slog.Logger
}

// Service carries out FHIR interactions. It is safe for concurrent use.
type Service struct {
	store   store.Store
	keys    *keyring.Keyring
	index   Indexer
	now     func() time.Time
	newID   func() string
	log     *slog.Logger
	cursors *cursorCodec
	rows    func(typ, id string) string
}

// New returns a Service.
func New(ctx context.Context, c Config) (*Service, error) {
	if c.Store == nil || c.Keys == nil || c.Indexer == nil {
		return nil, errors.New("records: Store, Keys and Indexer are required")
	}
	ck, err := c.Keys.Derived(ctx, keyring.PurposeCursor)
	if err != nil {
		return nil, err
	}
	rows, err := RowIDs(ctx, c.Keys)
	if err != nil {
		return nil, err
	}
	s := &Service{
		store:   c.Store,
		keys:    c.Keys,
		index:   c.Indexer,
		now:     c.Now,
		newID:   c.NewID,
		log:     c.Log,
		cursors: newCursorCodec(ck),
		rows:    rows,
	}
	if s.now == nil {
		s.now = time.Now
	}
	if s.newID == nil {
		s.newID = RandomID
	}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	return s, nil
}

// purposeRowID names the key, derived from the KEK, of row ids.
const purposeRowID = "row-id"

// rowID is the store's name for typ/id (see RowIDs).
func (s *Service) rowID(typ, id string) string { return s.rows(typ, id) }

// RowID returns the store's name for the row of typ/id.
func (s *Service) RowID(typ, id string) string { return s.rows(typ, id) }

// RowIDs returns the function that names the store's rows: HMAC-SHA256
// under the row-id key over an unambiguous encoding of (type, id),
// truncated to 128 bits and hex-encoded. Equal resources get equal row
// ids; nothing else about the id can be learned without the key. Every
// function it returns for the same keyring names rows alike; it is safe
// for concurrent use.
func RowIDs(ctx context.Context, keys *keyring.Keyring) (func(typ, id string) string, error) {
	ik, err := keys.Derived(ctx, purposeRowID)
	if err != nil {
		return nil, err
	}
	// A pooled HMAC saves setting up its key pads on every call, a
	// noticeable part of a read.
	pool := sync.Pool{New: func() any { return hmac.New(sha256.New, ik) }}
	return func(typ, id string) string {
		m := pool.Get().(hash.Hash)
		m.Reset()
		m.Write([]byte(typ))
		m.Write([]byte{0})
		m.Write([]byte(id))
		var sum [sha256.Size]byte
		out := hex.EncodeToString(m.Sum(sum[:0])[:16])
		pool.Put(m)
		return out
	}, nil
}

// ownerKey maps an Indexer owner ("Patient/<id>" or "store") to the name
// its data key is stored under, which must not hold the id either.
func (s *Service) ownerKey(owner string) string {
	if id, ok := strings.CutPrefix(owner, "Patient/"); ok {
		return "Patient/" + s.rowID("Patient", id)
	}
	return owner
}

// PatientKey returns the pseudonym of the patient with id: what
// Resource.Owner holds after "Patient/" for the patient's resources.
func (s *Service) PatientKey(id string) string { return s.rowID("Patient", id) }

// RandomID returns a random 128-bit id in the UUID text form, which is a
// valid FHIR id.
func RandomID() string {
	var b [16]byte
	rand.Read(b[:])
	b[6] = b[6]&0x0f | 0x40 // version 4
	b[8] = b[8]&0x3f | 0x80 // RFC 4122 variant
	var s [36]byte
	hex.Encode(s[0:8], b[0:4])
	s[8] = '-'
	hex.Encode(s[9:13], b[4:6])
	s[13] = '-'
	hex.Encode(s[14:18], b[6:8])
	s[18] = '-'
	hex.Encode(s[19:23], b[8:10])
	s[23] = '-'
	hex.Encode(s[24:], b[10:])
	return string(s[:])
}

// Resource is one version of a resource as a client sees it.
type Resource struct {
	Type    string
	ID      string
	Version int64
	Updated time.Time
	Deleted bool
	// JSON is the resource with meta.versionId and meta.lastUpdated set;
	// nil for a deletion.
	JSON []byte
	// Owner names whose data key seals the version: "Patient/<key>" for a
	// resource in one patient's compartment, where <key> is the patient's
	// pseudonym (the keyed hash of the patient's id, never the id), or
	// "store" or "shared" (see Indexer.Owner). The audit log records it,
	// so that a patient's accesses can be found without the log holding
	// patient ids.
	Owner string

	tomb []byte // a deletion's opened tombstone
}

// ETag returns the weak ETag of the version: W/"3".
func (r *Resource) ETag() string { return `W/"` + strconv.FormatInt(r.Version, 10) + `"` }

// Location returns Type/id/_history/version.
func (r *Resource) Location() string {
	return r.Type + "/" + r.ID + "/_history/" + strconv.FormatInt(r.Version, 10)
}

// Body is a parsed resource that has passed validation. Only Parse makes
// one, so every write method knows its input was validated.
type Body struct {
	v fhir.Value
}

// Type returns the body's resourceType.
func (b *Body) Type() string { return b.v.Str("resourceType") }

// Value returns the parsed resource. Changing it does not revalidate it.
func (b *Body) Value() *fhir.Value { return &b.v }

// Parse parses and validates a resource. Malformed JSON and invalid
// resources give an Invalid *Error whose issues name each bad element.
func Parse(data []byte) (*Body, error) {
	v, issues, err := fhir.ParseResource(data)
	if err != nil {
		var se *fhir.SyntaxError
		if errors.As(err, &se) {
			return nil, newError(Invalid, "", "%s", se.Error())
		}
		return nil, newError(Invalid, "", "the body is not a FHIR JSON resource")
	}
	if hasErrors(issues) {
		return nil, &Error{Code: Invalid, Issues: issues}
	}
	return &Body{v: v}, nil
}

func hasErrors(issues []fhir.Issue) bool {
	for _, i := range issues {
		if i.Severity == "error" || i.Severity == "fatal" {
			return true
		}
	}
	return false
}

// checkType reports whether typ names a concrete resource type, as a
// NotFound error for a URL that names something else.
func checkType(typ string) error {
	if !fhir.IsResourceType(typ) {
		return newError(NotFound, "", "unknown resource type in the URL; /metadata lists the supported types")
	}
	return nil
}

func checkID(id string) error {
	if !fhir.ValidID(id) {
		return newError(Invalid, "", "the id in the URL is not a valid FHIR id (1-64 of A-Z a-z 0-9 - .)")
	}
	return nil
}

// Read returns the current version of typ/id. A deleted resource gives a
// Gone error carrying its deletion version. A resource that r does not
// admit is not found, deleted or not.
func (s *Service) Read(ctx context.Context, typ, id string, r *access.Restriction) (*Resource, error) {
	if err := checkType(typ); err != nil {
		return nil, err
	}
	if err := checkID(id); err != nil {
		return nil, err
	}
	v, err := s.store.Read(ctx, typ, s.rowID(typ, id))
	if err != nil {
		return nil, s.storeError(err, typ, id)
	}
	return s.admitted(ctx, s.store.Keys(), v, r, "the resource has been deleted")
}

// admitted opens v for a caller restricted by r: not found if r does not
// admit it, Gone if it is a deletion.
func (s *Service) admitted(ctx context.Context, ks store.KeyStore, v *store.Version, r *access.Restriction, gone string) (*Resource, error) {
	if r == nil && v.Deleted {
		return nil, goneError(v.Version, gone)
	}
	res, err := s.open(ctx, ks, v)
	if err != nil {
		return nil, err
	}
	if r != nil {
		sc, err := s.Scope(ctx, r)
		if err != nil {
			return nil, err
		}
		if !sc.Admits(res) {
			return nil, newError(NotFound, "", "no such resource")
		}
		if v.Deleted {
			return nil, goneError(v.Version, gone)
		}
	}
	return res, nil
}

func goneError(version int64, msg string) error {
	return &Error{Code: Gone, Version: version, Issues: []fhir.Issue{{Severity: "error", Code: "deleted", Message: msg}}}
}

// VRead returns one version of typ/id, if r admits it.
func (s *Service) VRead(ctx context.Context, typ, id, version string, r *access.Restriction) (*Resource, error) {
	if err := checkType(typ); err != nil {
		return nil, err
	}
	if err := checkID(id); err != nil {
		return nil, err
	}
	n, err := strconv.ParseInt(version, 10, 64)
	if err != nil || n < 1 {
		return nil, newError(NotFound, "", "no such version: version ids are positive integers")
	}
	v, err := s.store.VRead(ctx, typ, s.rowID(typ, id), n)
	if err != nil {
		return nil, s.storeError(err, typ, id)
	}
	return s.admitted(ctx, s.store.Keys(), v, r, "this version records a deletion")
}

// open unseals a stored version: the resource, or for a deletion its
// tombstone, which only names it.
func (s *Service) open(ctx context.Context, ks store.KeyStore, v *store.Version) (*Resource, error) {
	r := &Resource{Type: v.Type, Version: v.Version, Updated: v.Updated, Deleted: v.Deleted}
	k, err := s.keys.KeyByID(ctx, ks, v.KeyID)
	if err == nil {
		r.Owner = k.Owner()
	}
	if err != nil {
		s.log.Error("cannot load data key", "type", v.Type, "row", v.ID, "version", v.Version, "key_id", v.KeyID, "err", err)
		return nil, &Error{Code: Internal, cause: err}
	}
	pt, err := k.Open(v.Data, keyring.ResourceAD(v.Type, v.ID, v.Version))
	if err != nil {
		// A row that does not open under its own name was damaged or
		// moved: an integrity failure, never served.
		s.log.Error("sealed version does not open: damaged or tampered row", "type", v.Type, "row", v.ID, "version", v.Version, "key_id", v.KeyID)
		return nil, &Error{Code: Internal, cause: err}
	}
	r.ID = idOf(pt, v.Type)
	if r.ID == "" || s.rowID(v.Type, r.ID) != v.ID {
		s.log.Error("sealed version names another resource", "type", v.Type, "row", v.ID, "version", v.Version)
		return nil, &Error{Code: Internal, cause: errors.New("sealed content does not match its row")}
	}
	if v.Deleted {
		r.tomb = pt
	} else {
		r.JSON = pt
	}
	return r, nil
}

// idOf reads the id of a sealed resource or tombstone. Both are written by
// this package in normalized form, which starts
// {"resourceType":"<type>","id":"<id>" — and ids hold no characters JSON
// escapes.
func idOf(data []byte, typ string) string {
	prefix := `{"resourceType":"` + typ + `","id":"`
	if len(data) < len(prefix) || string(data[:len(prefix)]) != prefix {
		return ""
	}
	rest := data[len(prefix):]
	for i, c := range rest {
		if c == '"' {
			return string(rest[:i])
		}
	}
	return ""
}

// tombstone is the sealed content of a deletion version: it names the
// resource, so that history can show what was deleted, and keeps the
// security labels of the version it deletes, so that a restriction to some
// labels hides the deletion as it hid the resource.
func tombstone(typ, id string, security *fhir.Value) []byte {
	t := fhir.Value{Kind: fhir.Object}
	t.Set("resourceType", fhir.StringValue(typ))
	t.Set("id", fhir.StringValue(id))
	if security != nil {
		meta := fhir.Value{Kind: fhir.Object}
		meta.Set("security", security.Clone())
		t.Set("meta", meta)
	}
	return fhir.Marshal(&t)
}

// storeError turns a store error into a records error.
func (s *Service) storeError(err error, typ, id string) error {
	switch {
	case errors.Is(err, store.ErrNotFound):
		return newError(NotFound, "", "no such resource")
	case errors.Is(err, store.ErrConflict):
		return newError(Conflict, "", "another write to this resource happened first; read it again and retry")
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return &Error{Code: Unavailable, cause: err, Issues: []fhir.Issue{{Severity: "error", Code: "transient", Message: "the request was cancelled or timed out"}}}
	case errors.Is(err, store.ErrClosed):
		return &Error{Code: Unavailable, cause: err, Issues: []fhir.Issue{{Severity: "error", Code: "transient", Message: "the server is shutting down"}}}
	}
	var re *Error
	if errors.As(err, &re) {
		return err
	}
	s.log.Error("store failure", "type", typ, "id", id, "err", err)
	return &Error{Code: Internal, cause: err}
}
