package search

import (
	"encoding/base64"
	"encoding/json"
	"net/url"
	"strconv"

	"github.com/ehrvault/ehrvault/internal/records"
	"github.com/ehrvault/ehrvault/internal/store"
)

// A page cursor (_page) stands for the rest of a search: the query, the
// restriction-free parts of the request and the position the last page
// ended at, sealed (XChaCha20-Poly1305 under a key derived from the KEK
// for this purpose alone). Sealing makes it opaque and tamper-proof: a
// cursor a client alters does not open and is refused. It also keeps the
// query's values (names, identifiers) out of next links, and so out of
// the access logs of proxies that see them.
//
// The position is a keyset (the row and sort values of the last match),
// never an offset: a page costs the same however deep it is. The
// restriction is not in the cursor: each page applies the caller's own.
type cursorState struct {
	Type        string     `json:"t,omitempty"`
	Compartment string     `json:"c,omitempty"`
	Query       string     `json:"q"`
	Strict      bool       `json:"s,omitempty"`
	After       *store.Hit `json:"-"`
	Row         string     `json:"r,omitempty"` // After.ID
	Sort        []string   `json:"v,omitempty"` // After.Sort, as text: ±Inf is not JSON
	Everything  bool       `json:"e,omitempty"`
	TypeIndex   int        `json:"i,omitempty"`
}

// cursorAD binds sealed cursors to their use.
var cursorAD = []byte("ehrvault search page cursor v1")

func (e *Engine) sealCursor(st cursorState) string {
	if st.After != nil {
		st.Row, st.Sort = st.After.ID, make([]string, len(st.After.Sort))
		for i, v := range st.After.Sort {
			st.Sort[i] = strconv.FormatFloat(v, 'g', -1, 64)
		}
	}
	data, err := json.Marshal(st)
	if err != nil {
		panic("search: a cursor state does not marshal: " + err.Error()) // plain data
	}
	return base64.RawURLEncoding.EncodeToString(e.pages.Seal(data, cursorAD))
}

// openCursor opens the _page of params.
func (e *Engine) openCursor(params url.Values) (*cursorState, error) {
	bad := records.NewError(records.Invalid, "_page", "the page cursor is invalid, altered or from another server; start again from the first page")
	for name := range params {
		if name != "_page" && name != "_format" && name != "_pretty" {
			return nil, records.NewError(records.Invalid, name, "%s", ErrPageMixed.Error())
		}
	}
	if len(params["_page"]) != 1 {
		return nil, bad
	}
	raw, err := base64.RawURLEncoding.DecodeString(params.Get("_page"))
	if err != nil {
		return nil, bad
	}
	data, err := e.pages.Open(raw, cursorAD)
	if err != nil {
		return nil, bad
	}
	var st cursorState
	if err := json.Unmarshal(data, &st); err != nil {
		return nil, bad
	}
	if st.Row != "" {
		st.After = &store.Hit{ID: st.Row, Sort: make([]float64, len(st.Sort))}
		for i, v := range st.Sort {
			if st.After.Sort[i], err = strconv.ParseFloat(v, 64); err != nil {
				return nil, bad
			}
		}
		if len(st.Sort) == 0 {
			st.After.Sort = nil
		}
	}
	return &st, nil
}
