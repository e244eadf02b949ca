package search

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/binary"
	"hash"
	"slices"
	"sync"

	"github.com/ehrvault/ehrvault/internal/fhir"
	"github.com/ehrvault/ehrvault/internal/fhirpath"
	"github.com/ehrvault/ehrvault/internal/records"
	"github.com/ehrvault/ehrvault/internal/store"
)

// TokenSize is the length of a token in bytes: HMAC-SHA256 truncated to
// 128 bits, which keeps accidental collisions out of reach (2^-64 at 2^32
// values per parameter) at half the index size.
const TokenSize = 16

// Indexer extracts owners and blind-index tokens from resources and
// compiles conditional queries into tokens. It implements records.Indexer
// and is safe for concurrent use.
type Indexer struct {
	key    []byte
	rowID  func(typ, id string) string
	tables map[string]*typeTable
	pool   sync.Pool // *hasher
	evals  sync.Pool // *fhirpath.Evaluator
}

var _ records.Indexer = (*Indexer)(nil)

// ParamInfo describes a search parameter an Indexer supports, for the
// CapabilityStatement.
type ParamInfo struct {
	Name string // the code used in queries: "identifier"
	Type string // token, reference, uri, string, date, number or quantity
	URL  string // canonical URL of the SearchParameter
	// Targets lists the types a reference parameter points to; empty
	// for any.
	Targets []string
}

// NewIndexer returns an Indexer whose tokens are keyed by key, the 32-byte
// index key derived from the KEK. Tokens made under one key are useless
// under another. rowID names the store's rows (records.RowIDs): a
// reference is indexed by the row of its target, so that a chain can go
// from the rows a search found to the references that point at them
// without opening anything.
func NewIndexer(key []byte, rowID func(typ, id string) string) *Indexer {
	if len(key) < 32 {
		panic("search: the index key must have 32 bytes") // keys come from the keyring
	}
	if rowID == nil {
		panic("search: NewIndexer needs the row namer")
	}
	k := bytes.Clone(key)
	ix := &Indexer{key: k, rowID: rowID, tables: typeTables()}
	ix.pool.New = func() any { return &hasher{mac: hmac.New(sha256.New, k), rowID: rowID} }
	ix.evals.New = func() any { return new(fhirpath.Evaluator) }
	return ix
}

// Params returns the search parameters the indexer supports for resources
// of type typ, in definition order; nil for an unknown type.
func (ix *Indexer) Params(typ string) []ParamInfo {
	tt := ix.tables[typ]
	if tt == nil {
		return nil
	}
	out := make([]ParamInfo, len(tt.params))
	for i, p := range tt.params {
		out[i] = ParamInfo{Name: p.code, Type: p.def.typ, URL: p.def.url, Targets: p.def.target}
	}
	return out
}

// Owner returns the owner of res by the rule in the package doc:
// "Patient/<id>", "shared" or "store".
func (ix *Indexer) Owner(res *fhir.Value) string {
	typ := res.Str("resourceType")
	if typ == "Patient" {
		if id := res.Str("id"); validID(id) {
			return "Patient/" + id
		}
		return "store"
	}
	tt := ix.tables[typ]
	if tt == nil {
		return "store"
	}
	ev := ix.evals.Get().(*fhirpath.Evaluator)
	defer func() { ev.Reset(); ix.evals.Put(ev) }()
	for _, e := range tt.owner {
		nodes, err := ev.Eval(e, res)
		if err != nil {
			continue
		}
		owner := ""
		for _, n := range nodes {
			id, ok := patientRef(n)
			if !ok {
				continue
			}
			switch {
			case owner == "":
				owner = id
			case owner != id:
				return records.OwnerShared // several patients
			}
		}
		if owner != "" {
			return "Patient/" + owner
		}
	}
	return "store"
}

// patientRef returns the id of the Patient a reference node points to.
func patientRef(n fhirpath.Node) (string, bool) {
	if n.Value == nil || n.Value.Kind != fhir.Object {
		return "", false
	}
	typ, id, ok := fhirpath.ReferenceTarget(n.Value.Str("reference"))
	if !ok || typ != "Patient" {
		return "", false
	}
	return id, true
}

// Index returns what res is found and sorted by: its blind-index tokens
// (sorted, without repeats) and its values in the clear (clinical dates,
// numbers, quantities). A resource of an unknown type has neither. A
// parameter whose expression fails on res (malformed content the validator
// let through) contributes nothing rather than failing the write.
func (ix *Indexer) Index(res *fhir.Value) *store.Index {
	tt := ix.tables[res.Str("resourceType")]
	if tt == nil {
		return nil
	}
	h := ix.pool.Get().(*hasher)
	defer ix.pool.Put(h)
	h.sums = h.sums[:0]
	h.values = nil
	ev := ix.evals.Get().(*fhirpath.Evaluator)
	defer func() { ev.Reset(); ix.evals.Put(ev) }()
	for _, p := range tt.params {
		if len(p.parts) > 0 {
			continue // found through its parts
		}
		nodes, err := ev.Eval(p.expr, res)
		if err != nil || len(nodes) == 0 {
			continue
		}
		before, beforeVals := len(h.sums), len(h.values)
		for _, n := range nodes {
			if p.code == "_security" {
				addLabel(h, n)
			}
			switch p.kind {
			case kindString:
				for _, s := range stringParts(n) {
					addString(h, p, s)
				}
			case kindDate:
				addDate(h, p, n)
			case kindNumber:
				addNumber(h, p, n)
			case kindQuantity:
				addQuantity(h, p, n)
			default:
				addValue(h, p, n)
				if p.kind == kindToken {
					addTokenText(h, p, n)
				}
			}
		}
		if len(h.sums) > before || len(h.values) > beforeVals {
			h.add(p.prefix, formPresent)
		}
	}
	out := &store.Index{Tokens: h.tokens(), Values: h.values, Labels: h.labels}
	h.values, h.labels = nil, nil
	return out
}

// labelPrefix starts the message of a label token: an empty type, which no
// parameter token has, so that labels are the same for every type.
var labelPrefix = appendLP(appendLP(nil, ""), "_security")

// formLabel is the form of a security label token.
const formLabel = 'L'

// addLabel adds the label token of a meta.security Coding.
func addLabel(h *hasher, n fhirpath.Node) {
	if v := n.Value; v != nil && v.Kind == fhir.Object {
		h.labels = append(h.labels, h.key(labelPrefix, formLabel, v.Str("system")+"|"+v.Str("code")))
	}
}

// LabelTokens returns the tokens that Index gives the security labels
// ("system|code"; "|code" for a label without a system).
func (ix *Indexer) LabelTokens(labels []string) []store.Token {
	if len(labels) == 0 {
		return nil
	}
	h := ix.pool.Get().(*hasher)
	defer ix.pool.Put(h)
	out := make([]store.Token, len(labels))
	for i, l := range labels {
		out[i] = h.key(labelPrefix, formLabel, l)
	}
	return out
}

// Tokens returns the blind-index tokens of res (see Index).
func (ix *Indexer) Tokens(res *fhir.Value) []store.Token {
	if x := ix.Index(res); x != nil {
		return x.Tokens
	}
	return nil
}

// hasher computes tokens; one is pooled per concurrent caller.
type hasher struct {
	mac    hash.Hash
	msg    []byte
	sum    [sha256.Size]byte
	sums   [][TokenSize]byte
	values []store.Value
	labels []store.Token
	rowID  func(typ, id string) string
}

// add hashes the message prefix ‖ form ‖ lp(vals[0]) ‖ lp(vals[1]) ….
func (h *hasher) add(prefix []byte, form byte, vals ...string) {
	h.msg = append(h.msg[:0], prefix...)
	h.msg = append(h.msg, form)
	for _, v := range vals {
		h.msg = appendLP(h.msg, v)
	}
	h.mac.Reset()
	h.mac.Write(h.msg)
	h.sums = append(h.sums, [TokenSize]byte(h.mac.Sum(h.sum[:0])))
}

// tokens returns the distinct sums as tokens sharing one allocation.
func (h *hasher) tokens() []store.Token {
	if len(h.sums) == 0 {
		return nil
	}
	slices.SortFunc(h.sums, func(a, b [TokenSize]byte) int { return bytes.Compare(a[:], b[:]) })
	sums := slices.Compact(h.sums)
	buf := make([]byte, len(sums)*TokenSize)
	out := make([]store.Token, len(sums))
	for i := range sums {
		b := buf[i*TokenSize : (i+1)*TokenSize : (i+1)*TokenSize]
		copy(b, sums[i][:])
		out[i] = b
	}
	return out
}

// appendLP appends uvarint(len(s)) ‖ s.
func appendLP(dst []byte, s string) []byte {
	dst = binary.AppendUvarint(dst, uint64(len(s)))
	return append(dst, s...)
}

// validID reports whether s is a FHIR id: 1 to 64 of [A-Za-z0-9.-].
func validID(s string) bool {
	if s == "" || len(s) > 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '.') {
			return false
		}
	}
	return true
}
