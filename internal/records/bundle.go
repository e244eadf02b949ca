package records

import (
	"context"
	"fmt"
	"strings"

	"github.com/ehrvault/ehrvault/internal/fhir"
	"github.com/ehrvault/ehrvault/internal/store"
)

// EntryResult is what one Bundle entry did.
type EntryResult struct {
	Method string
	// Outcome is set for a POST, PUT or DELETE that succeeded.
	Outcome *Outcome
	// Read is set for a GET that succeeded.
	Read *Resource
	// LeftOut is set for an entry that LoadOnly left out: a read or an
	// operation call.
	LeftOut bool
	// Err is set for an entry of a batch that failed; its issues' paths
	// start with Bundle.entry[i].
	Err error
}

// entry is one parsed Bundle entry.
type entry struct {
	index    int
	where    string // "Bundle.entry[3]"
	method   string
	typ, id  string
	vid      string // GET …/_history/vid
	query    string // conditional URL or search
	fullURL  string
	res      *fhir.Value
	ifMatch  int64
	ifNone   string // ifNoneExist
	resolved bool   // typ/id decided for a write
	result   EntryResult
}

// batchGroup is how many batch entries share one commit. Grouping saves a
// disk flush per entry; an entry that fails inside a group is handled as
// explained at runBatch.
const batchGroup = 256

// Bundle carries out a transaction or batch Bundle. A transaction is
// all-or-nothing: the first failing entry fails the whole Bundle with an
// error whose issue paths name the entry (Bundle.entry[i]), and nothing is
// stored. A batch carries out each entry on its own and reports each
// entry's error in its EntryResult. Bundle takes b over.
func (s *Service) Bundle(ctx context.Context, b *Body, opt WriteOptions) (string, []EntryResult, error) {
	kind, entries, err := parseBundle(b, opt)
	if err != nil {
		return kind, nil, err
	}
	if kind == "transaction" {
		err := s.update(ctx, opt, func(w *writer) error { return w.transaction(ctx, entries) })
		if err != nil {
			return kind, nil, err
		}
	} else {
		s.runBatch(ctx, opt, entries)
	}
	return kind, entryResults(entries), nil
}

// BundleResult is what one Bundle given to Bundles did: what Bundle
// returns for it.
type BundleResult struct {
	Kind    string
	Results []EntryResult
	Err     error
}

// Bundles carries out several Bundles, each with the meaning Bundle gives
// it, sharing one store transaction when it can: a commit rewrites every
// page its writes touched, and blind-index pages are touched all over, so
// one commit for many Bundles writes far less than one commit each. If
// anything fails in the shared transaction (any entry of a transaction, or
// a batch entry for a reason that is not its own fault), it is rolled back
// and each Bundle is carried out on its own, so that only the Bundle at
// fault fails. Sharing needs KeepIDs, under which carrying a Bundle out
// again after a rollback gives the same ids and references; without it
// Bundles is Bundle on each. Bundles takes the Bodies over.
func (s *Service) Bundles(ctx context.Context, bs []*Body, opt WriteOptions) []BundleResult {
	out := make([]BundleResult, len(bs))
	if len(bs) > 1 && opt.KeepIDs {
		parsed := make([][]*entry, len(bs))
		shared := false
		for i, b := range bs {
			kind, entries, err := parseBundle(b, opt)
			out[i] = BundleResult{Kind: kind, Err: err}
			if err == nil {
				parsed[i] = entries
				shared = true
			}
		}
		if !shared {
			return out
		}
		err := s.update(ctx, opt, func(w *writer) error {
			for i, entries := range parsed {
				if out[i].Err != nil {
					continue
				}
				if out[i].Kind == "transaction" {
					if err := w.transaction(ctx, entries); err != nil {
						return err
					}
					continue
				}
				for _, e := range entries {
					if e.method == "" { // failed to parse, or left out
						continue
					}
					e.result = EntryResult{Method: e.method}
					if err := w.batchEntry(ctx, e); err != nil {
						if !ownFault(err) {
							return err
						}
						e.result = EntryResult{Method: e.method, Err: prefixIssues(err, e.where)}
					}
				}
			}
			return nil
		})
		if err == nil {
			for i, entries := range parsed {
				if out[i].Err == nil {
					out[i].Results = entryResults(entries)
				}
			}
			return out
		}
		if ctx.Err() != nil {
			for i := range out {
				if out[i].Err == nil {
					out[i].Err = s.storeError(ctx.Err(), "", "")
				}
			}
			return out
		}
		// Carry each out on its own, below; those that failed to parse
		// fail the same way again.
	}
	for i, b := range bs {
		kind, res, err := s.Bundle(ctx, b, opt)
		out[i] = BundleResult{Kind: kind, Results: res, Err: err}
	}
	return out
}

// parseBundle checks that b is a transaction or batch and reads its
// entries. An entry of a batch that does not parse comes back with its
// error in its result; in a transaction it fails the whole Bundle.
func parseBundle(b *Body, opt WriteOptions) (string, []*entry, error) {
	bundle := &b.v
	if bundle.Str("resourceType") != "Bundle" {
		return "", nil, newError(Invalid, "resourceType", "POST a Bundle of type transaction or batch to the base URL")
	}
	kind := bundle.Str("type")
	if kind != "transaction" && kind != "batch" {
		return kind, nil, newError(Invalid, "Bundle.type", "only transaction and batch Bundles can be processed; this Bundle has another type")
	}
	var entries []*entry
	if list := bundle.Get("entry"); list != nil {
		for i := range list.Items {
			if opt.LoadOnly && leaveOut(&list.Items[i]) {
				entries = append(entries, &entry{index: i, where: fmt.Sprintf("Bundle.entry[%d]", i), result: EntryResult{LeftOut: true}})
				continue
			}
			e, err := parseEntry(&list.Items[i], i, opt.LoadOnly)
			if err != nil {
				if kind == "transaction" {
					return kind, nil, err
				}
				e = &entry{index: i, where: fmt.Sprintf("Bundle.entry[%d]", i), result: EntryResult{Err: err}}
			}
			entries = append(entries, e)
		}
	}
	return kind, entries, nil
}

func entryResults(entries []*entry) []EntryResult {
	results := make([]EntryResult, len(entries))
	for i, e := range entries {
		results[i] = e.result
	}
	return results
}

// leaveOut reports whether LoadOnly leaves entry v out: a read or an
// operation call, which load nothing.
func leaveOut(v *fhir.Value) bool {
	req := v.Get("request")
	if req == nil {
		return false
	}
	switch req.Str("method") {
	case "GET", "HEAD":
		return true
	}
	path, _, _ := strings.Cut(req.Str("url"), "?")
	for _, seg := range strings.Split(path, "/") {
		if strings.HasPrefix(seg, "$") {
			return true
		}
	}
	return false
}

// relativeURL returns the part of an entry's request url from its
// resource type on. Clients may send absolute urls
// ("http://example.org/fhir/Patient/1"); the base in front names the server
// the Bundle was meant for, which is this one.
func relativeURL(raw string) string {
	if !strings.HasPrefix(raw, "http://") && !strings.HasPrefix(raw, "https://") {
		return raw
	}
	path, query, hasQuery := strings.Cut(raw, "?")
	parts := strings.Split(path, "/")
	for i := 3; i < len(parts); i++ { // after scheme://host/
		if fhir.IsResourceType(parts[i]) {
			rel := strings.Join(parts[i:], "/")
			if hasQuery {
				rel += "?" + query
			}
			return rel
		}
	}
	return raw
}

// parseEntry reads an entry's request. loadOnly drops its version
// preconditions.
func parseEntry(v *fhir.Value, i int, loadOnly bool) (*entry, error) {
	e := &entry{index: i, where: fmt.Sprintf("Bundle.entry[%d]", i), fullURL: v.Str("fullUrl")}
	if r := v.Get("resource"); r != nil {
		e.res = r
	}
	req := v.Get("request")
	if req == nil {
		return nil, newError(Invalid, e.where+".request", "each entry of a transaction or batch needs a request")
	}
	e.method = req.Str("method")
	e.result.Method = e.method
	raw := relativeURL(req.Str("url"))
	if m := req.Str("ifMatch"); m != "" && !loadOnly {
		n, err := parseETag(m)
		if err != nil {
			return nil, prefixIssues(err, e.where+".request.ifMatch")
		}
		e.ifMatch = n
	}
	e.ifNone = req.Str("ifNoneExist")
	path, query, _ := strings.Cut(raw, "?")
	parts := strings.Split(strings.Trim(path, "/"), "/")
	bad := func(msg string) error { return newError(Invalid, e.where+".request.url", "%s", msg) }
	if !fhir.IsResourceType(parts[0]) {
		return nil, bad("the request url must start with a known resource type")
	}
	e.typ = parts[0]
	switch len(parts) {
	case 1:
	case 2:
		e.id = parts[1]
	case 4:
		if parts[2] != "_history" || e.method != "GET" {
			return nil, bad("only GET may name a version (Type/id/_history/vid)")
		}
		e.id, e.vid = parts[1], parts[3]
	default:
		return nil, bad("the request url must be Type, Type/id or Type?search")
	}
	if e.id != "" {
		if err := checkID(e.id); err != nil {
			return nil, bad("the request url holds an invalid id")
		}
	}
	e.query = query
	switch e.method {
	case "POST":
		if e.res == nil {
			return nil, newError(Invalid, e.where+".resource", "a POST entry needs a resource")
		}
		if e.id != "" || query != "" {
			return nil, bad("a POST entry's url is the resource type alone; use ifNoneExist for a conditional create")
		}
	case "PUT":
		if e.res == nil {
			return nil, newError(Invalid, e.where+".resource", "a PUT entry needs a resource")
		}
		if e.id == "" && query == "" {
			return nil, bad("a PUT entry's url is Type/id or Type?search")
		}
	case "DELETE":
		if e.id == "" && query == "" {
			return nil, bad("a DELETE entry's url is Type/id or Type?search")
		}
	case "GET":
		if e.id == "" {
			return nil, newError(NotSupported, e.where+".request.url", "searches inside a Bundle are not supported yet; GET Type/id or Type/id/_history/vid")
		}
	case "":
		return nil, newError(Invalid, e.where+".request.method", "the entry's request has no method")
	default:
		return nil, newError(NotSupported, e.where+".request.method", "only GET, POST, PUT and DELETE are supported in a Bundle")
	}
	if e.res != nil && e.res.Str("resourceType") != e.typ {
		return nil, newError(Invalid, e.where+".resource.resourceType", "the entry's resource type differs from its request url")
	}
	return e, nil
}

// transaction carries out every entry in w's transaction, in the order
// FHIR prescribes: DELETE, POST, PUT, then GET.
func (w *writer) transaction(ctx context.Context, entries []*entry) error {
	refs := map[string]string{} // fullUrl -> Type/id
	seen := map[string]int{}    // Type/id -> entry written
	claim := func(e *entry) error {
		key := e.typ + "/" + e.id
		if j, ok := seen[key]; ok {
			return newError(Invalid, e.where, "two entries (%d and %d) of the transaction write the same resource", j, e.index)
		}
		seen[key] = e.index
		if e.fullURL != "" {
			refs[e.fullURL] = key
		}
		return nil
	}
	// Decide every target first, so references can be rewritten before
	// anything is written.
	for _, m := range []string{"DELETE", "POST", "PUT"} {
		for _, e := range entries {
			if e.method != m {
				continue
			}
			if err := w.resolve(ctx, e); err != nil {
				return prefixIssues(err, e.where)
			}
			if e.resolved {
				if err := claim(e); err != nil {
					return err
				}
			}
		}
	}
	for _, e := range entries {
		if e.res == nil {
			continue
		}
		if err := w.rewriteRefs(ctx, e, refs); err != nil {
			return err
		}
	}
	for _, m := range []string{"DELETE", "POST", "PUT", "GET"} {
		for _, e := range entries {
			if e.method != m {
				continue
			}
			if err := w.execute(ctx, e); err != nil {
				return prefixIssues(err, e.where)
			}
		}
	}
	return nil
}

// resolve decides the id a write entry acts on. A conditional create that
// finds its match is completed here.
func (w *writer) resolve(ctx context.Context, e *entry) error {
	switch e.method {
	case "POST":
		if e.ifNone != "" {
			ids, err := w.match(ctx, e.typ, e.ifNone)
			if err != nil {
				return prefixIssues(err, "request.ifNoneExist")
			}
			switch len(ids) {
			case 0:
			case 1:
				r, err := w.current(ctx, e.typ, ids[0])
				if err != nil {
					return err
				}
				e.id = r.ID
				e.resolved = true
				e.result.Outcome = &Outcome{Result: Existing, Resource: r}
				return nil
			default:
				return newError(PreconditionFailed, "request.ifNoneExist", "ifNoneExist matches more than one resource")
			}
		}
		if w.opt.KeepIDs {
			e.id = keptID(e.res, e.fullURL)
		}
		if e.id == "" {
			e.id = w.s.newID()
		}
		e.res.Set("id", fhir.StringValue(e.id))
	case "PUT", "DELETE":
		if e.id == "" {
			ids, err := w.match(ctx, e.typ, e.query)
			if err != nil {
				return prefixIssues(err, "request.url")
			}
			switch len(ids) {
			case 0:
				if e.method == "DELETE" {
					e.result.Outcome = &Outcome{Result: NothingToDelete}
					return nil
				}
				e.id = e.res.Str("id")
				if e.id == "" {
					e.id = w.s.newID()
				}
			case 1:
				r, err := w.current(ctx, e.typ, ids[0])
				if err != nil {
					return err
				}
				e.id = r.ID
			default:
				return newError(PreconditionFailed, "request.url", "the conditional url matches more than one resource")
			}
			if e.res != nil {
				if bid := e.res.Str("id"); bid != "" && bid != e.id {
					return newError(Invalid, "resource.id", "the id in the resource differs from the resource the url names")
				}
				e.res.Set("id", fhir.StringValue(e.id))
			}
		} else if e.method == "PUT" {
			if err := w.checkBody(e.res, e.typ, e.id); err != nil {
				return prefixIssues(err, "resource")
			}
		}
	}
	e.resolved = true
	return nil
}

// rewriteRefs points e's references at the resources they mean:
// urn:uuid and other fullUrls of the Bundle become Type/id, and
// conditional references (Type?search) become the one resource they match.
func (w *writer) rewriteRefs(ctx context.Context, e *entry, refs map[string]string) error {
	for _, ref := range fhir.References(e.res) {
		r := ref.Str("reference")
		if r == "" || strings.HasPrefix(r, "#") {
			continue
		}
		if to, ok := refs[r]; ok {
			ref.Set("reference", fhir.StringValue(to))
			continue
		}
		if strings.HasPrefix(r, "urn:uuid:") || strings.HasPrefix(r, "urn:oid:") {
			return newError(Invalid, e.where+".resource", "a reference names a urn fullUrl that no entry of the Bundle has")
		}
		typ, query, ok := strings.Cut(r, "?")
		if !ok || !fhir.IsResourceType(typ) {
			continue
		}
		ids, err := w.match(ctx, typ, query)
		if err != nil {
			return prefixIssues(err, e.where+".resource")
		}
		switch len(ids) {
		case 1:
			cur, err := w.current(ctx, typ, ids[0])
			if err != nil {
				return err
			}
			to := typ + "/" + cur.ID
			refs[r] = to
			ref.Set("reference", fhir.StringValue(to))
		case 0:
			err := newError(Invalid, e.where+".resource", "a conditional reference matches no resource")
			err.cause = ErrUnresolvedReference
			return err
		default:
			return newError(PreconditionFailed, e.where+".resource", "a conditional reference matches more than one resource")
		}
	}
	return nil
}

// execute carries out a resolved entry.
func (w *writer) execute(ctx context.Context, e *entry) error {
	if e.result.Outcome != nil { // settled while resolving
		return nil
	}
	var err error
	switch e.method {
	case "POST":
		if w.opt.KeepIDs {
			e.result.Outcome, err = w.put(ctx, e.typ, e.id, e.res, 0)
		} else {
			var r *Resource
			r, err = w.write(ctx, e.typ, e.id, 1, e.res)
			e.result.Outcome = &Outcome{Result: Created, Resource: r}
		}
	case "PUT":
		e.result.Outcome, err = w.put(ctx, e.typ, e.id, e.res, e.ifMatch)
	case "DELETE":
		e.result.Outcome, err = w.delete(ctx, e.typ, e.id, e.ifMatch)
	case "GET":
		e.result.Read, err = w.get(ctx, e)
	}
	return err
}

// get carries out a GET entry inside the transaction.
func (w *writer) get(ctx context.Context, e *entry) (*Resource, error) {
	var v *store.Version
	var err error
	if e.vid != "" {
		n, ok := parsePositive(e.vid)
		if !ok {
			return nil, newError(NotFound, "request.url", "no such version: version ids are positive integers")
		}
		v, err = w.tx.VRead(ctx, e.typ, w.s.rowID(e.typ, e.id), n)
	} else {
		v, err = w.tx.Read(ctx, e.typ, w.s.rowID(e.typ, e.id))
	}
	if err != nil {
		return nil, w.s.storeError(err, e.typ, e.id)
	}
	return w.s.admitted(ctx, w.tx, v, w.opt.Restrict, "the resource has been deleted")
}

// runBatch carries out the entries of a batch, each on its own. Entries
// share commits in groups: an entry that fails for a reason of its own (bad
// input, a precondition) fails before it writes anything, so the group
// goes on without it. If anything else fails, the group is rolled back and
// its entries are carried out again one transaction each, so that only the
// entry at fault fails.
func (s *Service) runBatch(ctx context.Context, opt WriteOptions, entries []*entry) {
	for start := 0; start < len(entries); start += batchGroup {
		group := entries[start:min(start+batchGroup, len(entries))]
		err := s.update(ctx, opt, func(w *writer) error {
			for _, e := range group {
				if e.method == "" { // failed to parse, or left out
					continue
				}
				e.result = EntryResult{Method: e.method}
				if err := w.batchEntry(ctx, e); err != nil {
					if !ownFault(err) {
						return err
					}
					e.result = EntryResult{Method: e.method, Err: prefixIssues(err, e.where)}
				}
			}
			return nil
		})
		if err == nil {
			continue
		}
		for _, e := range group {
			if e.method == "" {
				continue
			}
			e.result = EntryResult{Method: e.method}
			err := s.update(ctx, opt, func(w *writer) error { return w.batchEntry(ctx, e) })
			if err != nil {
				e.result = EntryResult{Method: e.method, Err: prefixIssues(err, e.where)}
			}
		}
	}
}

// ownFault reports whether err is an entry's own fault, found before the
// entry wrote anything.
func ownFault(err error) bool {
	switch CodeOf(err) {
	case Invalid, Unprocessable, NotFound, Gone, PreconditionFailed, NotSupported:
		return true
	}
	return false
}

// batchEntry carries out one batch entry: resolve, rewrite what can be
// rewritten (batch entries may not depend on each other, but conditional
// references are resolved), execute.
func (w *writer) batchEntry(ctx context.Context, e *entry) error {
	e.resolved = false
	if err := w.resolve(ctx, e); err != nil {
		return err
	}
	if e.res != nil {
		refs := map[string]string{}
		if e.fullURL != "" && e.resolved {
			refs[e.fullURL] = e.typ + "/" + e.id
		}
		if err := w.rewriteRefs(ctx, e, refs); err != nil {
			return err
		}
	}
	return w.execute(ctx, e)
}

// BatchItem is one resource for BatchOf.
type BatchItem struct {
	Body    *Body
	FullURL string // optional
}

// BatchOf makes a batch Bundle that creates each item (under KeepIDs:
// creates or updates it under its own id). The Bundle is valid by
// construction, since its parts are.
func BatchOf(items []BatchItem) *Body {
	entries := make([]fhir.Value, 0, len(items))
	for _, it := range items {
		e := fhir.Value{Kind: fhir.Object}
		if it.FullURL != "" {
			e.Set("fullUrl", fhir.StringValue(it.FullURL))
		}
		e.Set("resource", it.Body.v)
		e.Set("request", requestValue("POST", it.Body.Type()))
		entries = append(entries, e)
	}
	b := fhir.Value{Kind: fhir.Object}
	b.Set("resourceType", fhir.StringValue("Bundle"))
	b.Set("type", fhir.StringValue("batch"))
	if len(entries) > 0 {
		b.Set("entry", fhir.Value{Kind: fhir.Array, Items: entries})
	}
	return &Body{v: b}
}

func requestValue(method, url string) fhir.Value {
	r := fhir.Value{Kind: fhir.Object}
	r.Set("method", fhir.StringValue(method))
	r.Set("url", fhir.StringValue(url))
	return r
}

// AsBatch turns a collection, searchset or history Bundle into a batch that
// creates (under KeepIDs: creates or updates) each entry's resource;
// entries without a resource are dropped, and orig[i] is the index in b of
// entry i of the batch. It returns b unchanged (orig nil) for transaction
// and batch Bundles, and false for other Bundles (document, message), which
// are resources in their own right.
func AsBatch(b *Body) (batch *Body, orig []int, ok bool) {
	switch b.v.Str("type") {
	case "transaction", "batch":
		return b, nil, true
	case "collection", "searchset", "history":
	default:
		return nil, nil, false
	}
	out := fhir.Value{Kind: fhir.Object}
	out.Set("resourceType", fhir.StringValue("Bundle"))
	out.Set("type", fhir.StringValue("batch"))
	var entries []fhir.Value
	if list := b.v.Get("entry"); list != nil {
		for i := range list.Items {
			res := list.Items[i].Get("resource")
			if res == nil {
				continue
			}
			e := fhir.Value{Kind: fhir.Object}
			if u := list.Items[i].Str("fullUrl"); u != "" {
				e.Set("fullUrl", fhir.StringValue(u))
			}
			e.Set("resource", *res)
			e.Set("request", requestValue("POST", res.Str("resourceType")))
			entries = append(entries, e)
			orig = append(orig, i)
		}
	}
	linkCollection(entries)
	if len(entries) > 0 {
		out.Set("entry", fhir.Value{Kind: fhir.Array, Items: entries})
	}
	return &Body{v: out}, orig, true
}

// linkCollection prepares the entries of a collection turned into a batch
// for loading under KeepIDs. A collection's resources refer to each other
// by fullUrl, but batch entries are carried out each on its own, so the
// references are resolved here: every entry whose id is known (its own, or
// the UUID of its urn:uuid fullUrl) gets that id, and references to its
// fullUrl become Type/id.
func linkCollection(entries []fhir.Value) {
	refs := map[string]string{}
	for i := range entries {
		e := &entries[i]
		res, u := e.Get("resource"), e.Str("fullUrl")
		if res == nil || u == "" {
			continue
		}
		if id := keptID(res, u); id != "" {
			res.Set("id", fhir.StringValue(id))
			refs[u] = res.Str("resourceType") + "/" + id
		}
	}
	if len(refs) == 0 {
		return
	}
	for i := range entries {
		res := entries[i].Get("resource")
		if res == nil {
			continue
		}
		for _, ref := range fhir.References(res) {
			if to, ok := refs[ref.Str("reference")]; ok {
				ref.Set("reference", fhir.StringValue(to))
			}
		}
	}
}

// EntryError is an entry of a Bundle that could not be used.
type EntryError struct {
	Index int // the entry's index in the Bundle as given
	Err   error
}

// SplitBatch reads a batch, collection, searchset or history Bundle entry
// by entry, for callers (import) that load what is good and report what is
// not: entries whose resources are invalid come back as EntryErrors, the
// others as a batch Body (collection entries become creates), with
// orig[i] the index in the given Bundle of the batch's entry i. The error
// is for what spoils the whole Bundle: malformed JSON, another type of
// Bundle, a problem outside the entries' resources.
func SplitBatch(data []byte) (b *Body, orig []int, bad []EntryError, err error) {
	v, err := fhir.Parse(data, 0)
	if err != nil {
		return nil, nil, nil, newError(Invalid, "", "%s", err.Error())
	}
	kind := v.Str("type")
	if v.Str("resourceType") != "Bundle" || kind == "transaction" || kind == "document" || kind == "message" {
		_, err := Parse(data)
		return nil, nil, nil, err
	}
	out := fhir.Value{Kind: fhir.Object}
	out.Set("resourceType", fhir.StringValue("Bundle"))
	out.Set("type", fhir.StringValue("batch"))
	var kept []fhir.Value
	if list := v.Get("entry"); list != nil && list.Kind == fhir.Array {
		for i := range list.Items {
			e := &list.Items[i]
			where := fmt.Sprintf("Bundle.entry[%d]", i)
			res := e.Get("resource")
			if res == nil {
				if kind == "batch" {
					kept = append(kept, *e)
					orig = append(orig, i)
				}
				continue
			}
			if issues := fhir.Validate(res); hasErrors(issues) {
				for j := range issues {
					issues[j].Path = rebase(issues[j].Path, res.Str("resourceType"), where+".resource")
				}
				bad = append(bad, EntryError{Index: i, Err: &Error{Code: Invalid, Issues: issues}})
				continue
			}
			if kind != "batch" {
				n := fhir.Value{Kind: fhir.Object}
				if u := e.Str("fullUrl"); u != "" {
					n.Set("fullUrl", fhir.StringValue(u))
				}
				n.Set("resource", *res)
				n.Set("request", requestValue("POST", res.Str("resourceType")))
				e = &n
			}
			kept = append(kept, *e)
			orig = append(orig, i)
		}
	}
	if kind != "batch" {
		linkCollection(kept)
	}
	if len(kept) > 0 {
		out.Set("entry", fhir.Value{Kind: fhir.Array, Items: kept})
	}
	// What is left must be valid as a whole (requests included).
	if issues := fhir.Validate(&out); hasErrors(issues) {
		return nil, nil, nil, &Error{Code: Invalid, Issues: issues}
	}
	return &Body{v: out}, orig, bad, nil
}

// rebase rewrites an issue path found in a resource validated on its own
// ("Patient.active") to its place in a Bundle
// ("Bundle.entry[1].resource.active").
func rebase(path, typ, where string) string {
	if path == typ {
		return where
	}
	if rest, ok := strings.CutPrefix(path, typ+"."); ok {
		return where + "." + rest
	}
	if path == "" {
		return where
	}
	return where + ": " + path
}
