package audit

import (
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/ehrvault/ehrvault/internal/fhir"
)

// Entry is one audited event: an API request, an import, a security event.
//
// Nothing in an Entry may be identifying plaintext chosen by a client or a
// patient: search values and free text go in as keyed hashes (Log.Hash).
// Resource ids and principal ids go in as they are: the stored entry is
// sealed, and only authenticated readers of the log see them.
type Entry struct {
	// Time is when the event happened, UTC, microseconds; Log.Append sets
	// it from its clock when zero.
	Time time.Time
	// Request identifies the request (X-Request-Id) or, for a command, the
	// run. Log.Append sets a random one when empty, so that every entry
	// holds 96 unguessable bits and its hash cannot be guessed.
	Request string
	// Session is the login session, when there is one (not yet).
	Session string
	// Principal is who acted.
	Principal Principal
	// Role is the role the principal acted in ("operator" for operator
	// tokens; people get roles with the identity issue).
	Role string
	// Source is the network address the request came from, or "local"
	// for a command run on the server.
	Source string
	// Action is what was done: a FHIR interaction (read, vread, search-type,
	// create, update, delete, history-instance, transaction …) or another
	// event (import, token-create, audit-read …). See the Action constants.
	Action string
	// Outcome is success, failure (the client's fault), denied (not
	// authenticated or not allowed) or error (the server's fault).
	Outcome string
	// Status is the HTTP status answered; 0 for events outside HTTP.
	Status int
	// Purpose is the purpose of use the client declared (a v3
	// PurposeOfUse code such as TREAT or HPAYMT), if any.
	Purpose string
	// Resources lists every resource the event read, returned or wrote.
	Resources []Resource
	// Query is the search or conditional query, parameter by parameter,
	// with every value but those of paging and result-shaping parameters
	// replaced by its keyed hash.
	Query []Param
	// Detail holds a few more facts that name nobody (counts, a file's
	// entry index), in order.
	Detail []Param
}

// Principal is who acted.
type Principal struct {
	Kind string // operator-token, cli, anonymous (user, client, device: the identity issue)
	ID   string // the token's public id, the OS user of a command, "" when anonymous
}

// Resource is one resource version an event touched.
type Resource struct {
	Type    string
	ID      string
	Version int64
	// Owner is whose data it is: "Patient/<key>" for a resource of one
	// patient's compartment, where <key> is the patient's pseudonym (the
	// keyed hash the store keys the patient's data key by), or "store".
	Owner string
}

// Param is a name and a value.
type Param struct {
	Name, Value string
}

// The actions that are not FHIR interaction codes.
const (
	ActionImport      = "import"
	ActionTokenCreate = "token-create"
	ActionTokenRevoke = "token-revoke"
	ActionAuditRead   = "audit-read"
	ActionStoreInit   = "store-init"
	ActionServerStart = "server-start"
	ActionServerStop  = "server-stop"
)

// The outcomes.
const (
	OutcomeSuccess = "success"
	OutcomeFailure = "failure"
	OutcomeDenied  = "denied"
	OutcomeError   = "error"
)

// OutcomeOf classifies an HTTP status.
func OutcomeOf(status int) string {
	switch {
	case status < 400:
		return OutcomeSuccess
	case status == 401 || status == 403:
		return OutcomeDenied
	case status < 500:
		return OutcomeFailure
	}
	return OutcomeError
}

// Patients returns the distinct patient pseudonyms of the entry's
// resources, in order of first appearance.
func (e *Entry) Patients() []string {
	var out []string
	seen := map[string]bool{}
	for _, r := range e.Resources {
		if p, ok := patientKey(r.Owner); ok && !seen[p] {
			seen[p] = true
			out = append(out, p)
		}
	}
	return out
}

func patientKey(owner string) (string, bool) {
	if len(owner) > len("Patient/") && owner[:len("Patient/")] == "Patient/" {
		return owner[len("Patient/"):], true
	}
	return "", false
}

// formatVersion is the first member of every encoded entry.
const formatVersion = 1

// Encode returns the entry's canonical encoding, version 1: a JSON object
// whose members come in this order, each only when set:
//
//	{"v":1,"time":"2026-12-01T19:00:00.123456Z","request":"…","session":"…",
//	 "principal":{"kind":"operator-token","id":"tok_…"},"role":"operator",
//	 "source":"127.0.0.1","action":"read","outcome":"success","status":200,
//	 "purpose":"TREAT",
//	 "resources":[{"type":"Observation","id":"…","version":2,"owner":"Patient/…"}],
//	 "query":[["code","h:…"],["_count","10"]],"detail":[["entries","12"]]}
//
// These bytes are the Merkle leaf: the log's hashes are over them, and a
// patient's software checks an inclusion proof against them, so they are
// frozen (testdata/entry-v1.golden). A new field means a new version.
func (e *Entry) Encode() []byte {
	// Written by hand for speed (every request encodes one); the golden
	// test holds it to the bytes above.
	b := make([]byte, 0, 320+96*len(e.Resources)+48*(len(e.Query)+len(e.Detail)))
	b = append(b, `{"v":`...)
	b = strconv.AppendInt(b, formatVersion, 10)
	b = append(b, `,"time":`...)
	b = appendString(b, e.Time.UTC().Format(timeFormat))
	member := func(name, s string) {
		if s != "" {
			b = append(b, `,"`...)
			b = append(b, name...)
			b = append(b, `":`...)
			b = appendString(b, s)
		}
	}
	member("request", e.Request)
	member("session", e.Session)
	b = append(b, `,"principal":{"kind":`...)
	b = appendString(b, e.Principal.Kind)
	if e.Principal.ID != "" {
		b = append(b, `,"id":`...)
		b = appendString(b, e.Principal.ID)
	}
	b = append(b, '}')
	member("role", e.Role)
	member("source", e.Source)
	member("action", e.Action)
	member("outcome", e.Outcome)
	if e.Status != 0 {
		b = append(b, `,"status":`...)
		b = strconv.AppendInt(b, int64(e.Status), 10)
	}
	member("purpose", e.Purpose)
	if len(e.Resources) > 0 {
		b = append(b, `,"resources":[`...)
		for i, r := range e.Resources {
			if i > 0 {
				b = append(b, ',')
			}
			b = append(b, `{"type":`...)
			b = appendString(b, r.Type)
			if r.ID != "" {
				b = append(b, `,"id":`...)
				b = appendString(b, r.ID)
			}
			if r.Version != 0 {
				b = append(b, `,"version":`...)
				b = strconv.AppendInt(b, r.Version, 10)
			}
			if r.Owner != "" {
				b = append(b, `,"owner":`...)
				b = appendString(b, r.Owner)
			}
			b = append(b, '}')
		}
		b = append(b, ']')
	}
	pairs := func(name string, ps []Param) {
		if len(ps) == 0 {
			return
		}
		b = append(b, `,"`...)
		b = append(b, name...)
		b = append(b, `":[`...)
		for i, q := range ps {
			if i > 0 {
				b = append(b, ',')
			}
			b = append(b, '[')
			b = appendString(b, q.Name)
			b = append(b, ',')
			b = appendString(b, q.Value)
			b = append(b, ']')
		}
		b = append(b, ']')
	}
	pairs("query", e.Query)
	pairs("detail", e.Detail)
	return append(b, '}')
}

// appendString appends s as a JSON string, escaped as internal/fhir
// writes strings.
func appendString(b []byte, s string) []byte {
	v := fhir.StringValue(s)
	return fhir.AppendJSON(b, &v)
}

// timeFormat is RFC 3339 in UTC with exactly six fractional digits.
const timeFormat = "2006-01-02T15:04:05.000000Z"

// ErrFormat is returned by Decode for bytes that are not an encoded entry.
var ErrFormat = errors.New("audit: not an encoded entry")

// Decode parses what Encode returned.
func Decode(data []byte) (*Entry, error) {
	v, err := fhir.Parse(data, 8)
	if err != nil || v.Kind != fhir.Object {
		return nil, ErrFormat
	}
	if ver := v.Get("v"); ver == nil || ver.Text != strconv.Itoa(formatVersion) {
		return nil, fmt.Errorf("%w: unknown version", ErrFormat)
	}
	e := &Entry{
		Request: v.Str("request"),
		Session: v.Str("session"),
		Role:    v.Str("role"),
		Source:  v.Str("source"),
		Action:  v.Str("action"),
		Outcome: v.Str("outcome"),
		Purpose: v.Str("purpose"),
	}
	e.Time, err = time.Parse(timeFormat, v.Str("time"))
	if err != nil {
		return nil, fmt.Errorf("%w: time", ErrFormat)
	}
	if p := v.Get("principal"); p != nil {
		e.Principal = Principal{Kind: p.Str("kind"), ID: p.Str("id")}
	}
	if s := v.Get("status"); s != nil {
		e.Status, _ = strconv.Atoi(s.Text)
	}
	if rs := v.Get("resources"); rs != nil {
		for i := range rs.Items {
			r := &rs.Items[i]
			res := Resource{Type: r.Str("type"), ID: r.Str("id"), Owner: r.Str("owner")}
			if n := r.Get("version"); n != nil {
				res.Version, _ = strconv.ParseInt(n.Text, 10, 64)
			}
			e.Resources = append(e.Resources, res)
		}
	}
	pairs := func(name string) []Param {
		a := v.Get(name)
		if a == nil {
			return nil
		}
		var out []Param
		for i := range a.Items {
			if it := &a.Items[i]; it.Kind == fhir.Array && len(it.Items) == 2 {
				out = append(out, Param{Name: it.Items[0].Text, Value: it.Items[1].Text})
			}
		}
		return out
	}
	e.Query = pairs("query")
	e.Detail = pairs("detail")
	return e, nil
}
