// Package store defines where ehrvault keeps resource versions, the contract
// every storage backend meets, and nothing else: it holds no SQL and never
// parses FHIR. Backends live in child packages named after their technology
// (sqlite now, postgres next), and all of them pass the suite in storetest.
//
// # What a backend sees
//
// A backend stores sealed bytes. A resource version reaches it as metadata in
// the clear (type, row id, version number, time of the write, deleted flag,
// the id of the data key that sealed it) and an opaque sealed payload. The
// row id is a keyed hash of the resource's id, never the id itself: clients
// may choose ids, and some choose medical record numbers. Index entries
// reach it as opaque keyed hashes. Nothing a backend holds names a person.
//
// # What a backend promises
//
//   - Update runs its function in one atomic, isolated write transaction:
//     everything it wrote is durable when Update returns nil, nothing of it
//     is visible if it returns an error.
//   - Version numbers of one resource start at 1 and have no gaps; a Put that
//     would break that fails with ErrConflict.
//   - Seq is assigned by the backend, increases with every Put across all
//     resources, and orders history.
package store

import (
	"context"
	"errors"
	"time"
)

// Errors a backend returns. Callers test them with errors.Is.
var (
	// ErrNotFound: the thing asked for has never existed. Read and VRead
	// answer a deleted resource with its deletion version, not this.
	// (IDs in this package are row ids: keyed hashes the caller computes.)
	ErrNotFound = errors.New("store: not found")
	// ErrConflict: a Put named a version that is not the next one, so
	// somebody else wrote first. The API answers 409 or 412.
	ErrConflict = errors.New("store: version conflict")
	// ErrExists: the store was asked to create something that is there.
	ErrExists = errors.New("store: already exists")
	// ErrClosed: the store was used after Close.
	ErrClosed = errors.New("store: closed")
)

// Version is one stored version of one resource.
type Version struct {
	Type    string
	ID      string
	Version int64     // 1, 2, 3, … per resource
	Updated time.Time // when the version was written (meta.lastUpdated), UTC, microseconds
	Deleted bool      // the version records a delete; Data is a sealed tombstone
	KeyID   int64     // the data key that sealed Data
	Data    []byte    // the sealed resource; opaque to the store
	Seq     int64     // global write order; set by the store on Put
}

// Token is one opaque blind-index entry: a keyed hash standing for
// (search parameter, normalized value). The store compares tokens for
// equality and knows nothing else about them.
type Token []byte

// Index is what a resource version is found and sorted by.
type Index struct {
	// Tokens are keyed hashes of values, matched by equality.
	Tokens []Token
	// Values are values held in the clear, matched by range and sorted
	// by: clinical dates (milliseconds since 1970) and quantities. Only
	// values that name nobody go here (the caller decides; see the leakage
	// profile in docs/SECURITY.md). Each stands under a Key, a keyed hash
	// of the search parameter (and a quantity's unit).
	Values []Value
	// Labels are keyed hashes of the version's security labels
	// (meta.security), one per label and the same for every resource
	// type, so that a restriction to some labels can be a condition inside
	// a query (SearchQuery.Labels, HistoryQuery.Labels). A deletion may
	// carry the labels of the version it deletes, and nothing else.
	Labels []Token
}

// Value is one range [Lo, Hi], both ends included, under a key. A point
// value has Lo == Hi; an open end is ±Inf.
type Value struct {
	Key    Token
	Lo, Hi float64
}

// HistoryQuery selects versions for a history interaction. Type and ID
// narrow it to a type or an instance; empty means all.
type HistoryQuery struct {
	Type  string
	ID    string
	Since time.Time // only versions written at or after Since, if set
	At    time.Time // only versions current at At (written at or before At), if set
	// BeforeSeq continues a listing: only versions with Seq < BeforeSeq, if
	// non-zero.
	BeforeSeq int64
	Limit     int // at most this many; the backend may cap it
	// Keys and Labels restrict the versions as SearchQuery's do, version
	// by version: a version is admitted by its own data key and labels.
	Keys   []int64
	Labels []Token
}

// ListQuery selects current, undeleted resources of one type, in id order,
// optionally narrowed to those carrying every one of Tokens.
type ListQuery struct {
	Type    string
	Tokens  []Token // all must match (AND); empty: every resource of Type
	AfterID string  // continue a listing after this id
	Limit   int
}

// Reader reads committed versions.
type Reader interface {
	// Read returns the current version of type/id. A deleted resource
	// returns its deletion version (Deleted set); ErrNotFound means the
	// resource never existed.
	Read(ctx context.Context, typ, id string) (*Version, error)
	// VRead returns one version; ErrNotFound if it does not exist.
	VRead(ctx context.Context, typ, id string, version int64) (*Version, error)
	// History returns versions newest first (by Seq descending).
	History(ctx context.Context, q HistoryQuery) ([]*Version, error)
	// List returns the ids of current, undeleted resources matching q.
	List(ctx context.Context, q ListQuery) ([]string, error)
}

// Tx is one write transaction. Its reads see its own writes.
type Tx interface {
	Reader
	KeyStore
	// Put appends v as the next version of v.Type/v.ID and makes it
	// current: v.Version must be 1 for a new resource or the current
	// version + 1, else ErrConflict. Put sets v.Seq. ix replaces the
	// resource's index entries (nil for none, and for a delete).
	Put(ctx context.Context, v *Version, ix *Index) error
	// AfterCommit registers f to run once the transaction has committed;
	// it never runs if the transaction rolls back.
	AfterCommit(f func())
}

// KeyStore keeps wrapped data keys. Owners are names such as
// "Patient/123" or "store"; ids are small integers assigned by the store.
type KeyStore interface {
	// WrappedKey returns the key owned by owner; ErrNotFound if none.
	WrappedKey(ctx context.Context, owner string) (id int64, wrapped []byte, err error)
	// WrappedKeyByID returns the key with id; ErrNotFound if none.
	WrappedKeyByID(ctx context.Context, id int64) (owner string, wrapped []byte, err error)
	// PutWrappedKey stores a new key for owner and returns its id;
	// ErrExists if owner has one.
	PutWrappedKey(ctx context.Context, owner string, wrapped []byte) (id int64, err error)
}

// Store is a storage backend.
type Store interface {
	Reader
	// Keys reads wrapped data keys outside a write transaction.
	Keys() KeyStore
	// Update runs fn in one write transaction; see the package promises.
	// If fn returns an error the transaction rolls back and Update returns
	// that error unchanged.
	Update(ctx context.Context, fn func(Tx) error) error
	// Close releases the store; later calls fail with ErrClosed.
	Close() error
}

// AuthToken is a stored API bearer token: only its hash is kept.
type AuthToken struct {
	ID      string // short public id, for listing, logs and revocation
	Hash    []byte // SHA-256 of the token
	Label   string // what the operator said it is for
	Created time.Time
	Expires time.Time
	Revoked bool
}

// AuthTokens keeps bearer tokens. A backend implements it beside Store.
type AuthTokens interface {
	// PutAuthToken stores a new token; ErrExists if the id or hash is taken.
	PutAuthToken(ctx context.Context, t AuthToken) error
	// AuthTokenByHash returns the token with this hash; ErrNotFound if none.
	AuthTokenByHash(ctx context.Context, hash []byte) (*AuthToken, error)
	// AuthTokens lists every token, newest first.
	AuthTokens(ctx context.Context) ([]AuthToken, error)
	// RevokeAuthToken marks a token revoked; ErrNotFound if no such id.
	RevokeAuthToken(ctx context.Context, id string) error
}

// Searcher finds current resources by conditions on their index, with the
// caller's restriction applied inside the query. A backend implements it
// beside Store.
type Searcher interface {
	// Search returns the row ids (and sort values) of the current,
	// undeleted resources q selects, in q's order, at most q.Limit.
	Search(ctx context.Context, q SearchQuery) ([]Hit, error)
	// Count returns how many resources q selects (q.Order, q.After and
	// q.Limit are ignored).
	Count(ctx context.Context, q SearchQuery) (int64, error)
}

// SearchQuery selects current, undeleted resources of one type.
type SearchQuery struct {
	Type string
	// Where lists conditions that all must hold.
	Where []Cond
	// Keys, when not nil, admits only resources sealed under one of these
	// data keys: the caller's restriction to some patients' compartments
	// (and the store key). An empty, non-nil Keys admits nothing.
	Keys []int64
	// Labels, when not nil, admits only resources each of whose security
	// labels (Index.Labels) is one of these: a resource with no label is
	// admitted, one with a label outside the list is not.
	Labels []Token
	// Order lists sort keys; the row id breaks ties and orders alone when
	// Order is empty.
	Order []Order
	// After continues a listing after this hit (of the same query).
	After *Hit
	Limit int // at most this many; 0: no limit
}

// Cond is one condition: the resource has one of Tokens, or a value in
// one of Values, or is one of IDs. With Not it has none of them. A Cond
// with nothing in it holds for no resource (or, with Not, every one).
type Cond struct {
	Tokens []Token
	Values []ValueRange
	IDs    []string // row ids
	Not    bool
}

// ValueRange selects values under Key whose ends meet every bound.
type ValueRange struct {
	Key    Token
	Bounds []Bound
}

// Bound compares one end of a value with V.
type Bound struct {
	End string // "lo" or "hi"
	Op  string // ">=", ">", "<=", "<"
	V   float64
}

// Order is one sort key.
type Order struct {
	// By is "updated" (the time of the current version), or "value": the
	// least Lo (or, descending, the greatest Hi) of the resource's values
	// under Key; resources without one sort last.
	By   string
	Key  Token
	Desc bool
}

// Hit is one resource a search found, with its sort values.
type Hit struct {
	ID   string
	Sort []float64
}

// AuthObject is one record of the identity layer: a user, a factor, a
// session, an app, a device, a refresh token. Its owner package seals
// Data; the store sees only the kind, the ids, a keyed hash to find it by
// and its expiry.
type AuthObject struct {
	Kind    string    // what it is: "user", "session", ...
	ID      string    // random public id, unique within Kind
	Lookup  []byte    // optional keyed hash to find it by (a user name, a token); unique within Kind when set
	Parent  string    // optional id of the object it belongs to (a session's user), to list and delete together
	Data    []byte    // sealed by the caller
	Version int64     // 1 when created, one more on every update
	Expires time.Time // zero: never; PurgeAuthObjects deletes it once past
}

// AuthObjects keeps the identity layer's records. A backend implements it
// beside Store. Updates are compare-and-swap on Version, so that two
// servers (or two requests) that both saw a one-time code or a refresh
// token cannot both use it.
type AuthObjects interface {
	// CreateAuthObject stores a new object with Version 1 (o.Version is
	// ignored); ErrExists if its id, or its lookup, is taken in its kind.
	CreateAuthObject(ctx context.Context, o AuthObject) error
	// UpdateAuthObject replaces the Lookup, Parent, Data and Expires of
	// the object of o.Kind and o.ID if its stored Version is o.Version,
	// and returns the new Version; ErrConflict if the stored version is
	// another, ErrNotFound if there is no such object, ErrExists if the
	// new lookup is another object's.
	UpdateAuthObject(ctx context.Context, o AuthObject) (int64, error)
	// AuthObject returns one object; ErrNotFound if none.
	AuthObject(ctx context.Context, kind, id string) (*AuthObject, error)
	// AuthObjectByLookup returns the object of kind with this lookup;
	// ErrNotFound if none.
	AuthObjectByLookup(ctx context.Context, kind string, lookup []byte) (*AuthObject, error)
	// AuthObjects lists the objects of kind whose Parent is parent (every
	// object of kind if parent is ""), in ID order.
	AuthObjects(ctx context.Context, kind, parent string) ([]AuthObject, error)
	// DeleteAuthObject deletes one object; ErrNotFound if none.
	DeleteAuthObject(ctx context.Context, kind, id string) error
	// DeleteAuthObjects deletes the objects of kind whose Parent is
	// parent (which must not be "") and returns how many there were.
	DeleteAuthObjects(ctx context.Context, kind, parent string) (int, error)
	// PurgeAuthObjects deletes every object whose Expires is set and not
	// after before, and returns how many there were.
	PurgeAuthObjects(ctx context.Context, before time.Time) (int, error)
}
