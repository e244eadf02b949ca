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
	tables map[string]*typeTable
	pool   sync.Pool // *hasher
	evals  sync.Pool // *fhirpath.Evaluator
}

var _ records.Indexer = (*Indexer)(nil)

// ParamInfo describes a search parameter an Indexer supports, for the
// CapabilityStatement.
type ParamInfo struct {
	Name string // the code used in queries: "identifier"
	Type string // token, reference or uri
	URL  string // canonical URL of the SearchParameter
}

// NewIndexer returns an Indexer whose tokens are keyed by key, the 32-byte
// index key derived from the KEK. Tokens made under one key are useless
// under another.
func NewIndexer(key []byte) *Indexer {
	if len(key) < 32 {
		panic("search: the index key must have 32 bytes") // keys come from the keyring
	}
	k := bytes.Clone(key)
	ix := &Indexer{key: k, tables: typeTables()}
	ix.pool.New = func() any { return &hasher{mac: hmac.New(sha256.New, k)} }
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
		out[i] = ParamInfo{Name: p.code, Type: p.def.typ, URL: p.def.url}
	}
	return out
}

// Owner returns the owner of res by the rule in the package doc:
// "Patient/<id>" or "store".
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
				return "store" // several patients
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

// Index returns what res is found by: its tokens (see Tokens).
func (ix *Indexer) Index(res *fhir.Value) *store.Index {
	return &store.Index{Tokens: ix.Tokens(res)}
}

// Tokens returns the blind-index tokens of res, sorted and without
// repeats. A resource of an unknown type has none. A parameter whose
// expression fails on res (malformed content the validator let through)
// contributes no tokens rather than failing the write.
func (ix *Indexer) Tokens(res *fhir.Value) []store.Token {
	tt := ix.tables[res.Str("resourceType")]
	if tt == nil {
		return nil
	}
	h := ix.pool.Get().(*hasher)
	defer ix.pool.Put(h)
	h.sums = h.sums[:0]
	ev := ix.evals.Get().(*fhirpath.Evaluator)
	defer func() { ev.Reset(); ix.evals.Put(ev) }()
	for _, p := range tt.params {
		nodes, err := ev.Eval(p.expr, res)
		if err != nil {
			continue
		}
		for _, n := range nodes {
			addValue(h, p, n)
		}
	}
	return h.tokens()
}

// hasher computes tokens; one is pooled per concurrent caller.
type hasher struct {
	mac  hash.Hash
	msg  []byte
	sum  [sha256.Size]byte
	sums [][TokenSize]byte
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
