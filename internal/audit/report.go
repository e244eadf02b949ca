package audit

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"
)

// ReportColumns are the fields of an audit report, in order.
var ReportColumns = []string{"index", "time", "action", "outcome", "status", "principal_kind", "principal", "role", "source", "purpose", "request", "resources", "patients", "query"}

// numericColumns sort as numbers.
var numericColumns = map[string]bool{"index": true, "status": true}

// MaxReportRows bounds a report; ask for a longer period in parts.
const MaxReportRows = 100000

// Row is one entry as a report row, a value per ReportColumns.
type Row []string

// RowOf renders a found entry as a report row.
func RowOf(x Found) Row {
	e := x.Entry
	var res []string
	for _, r := range e.Resources {
		s := r.Type + "/" + r.ID
		if r.Version > 0 {
			s += "/_history/" + strconv.FormatInt(r.Version, 10)
		}
		res = append(res, s)
	}
	var qs []string
	for _, p := range e.Query {
		qs = append(qs, p.Name+"="+p.Value)
	}
	status := ""
	if e.Status != 0 {
		status = strconv.Itoa(e.Status)
	}
	return Row{strconv.FormatInt(x.Index, 10), e.Time.UTC().Format(time.RFC3339Nano), e.Action, e.Outcome, status,
		e.Principal.Kind, e.Principal.ID, e.Role, e.Source, e.Purpose, e.Request,
		strings.Join(res, " "), strings.Join(e.Patients(), " "), strings.Join(qs, "&")}
}

// ReportSpec says what a report holds beyond a Filter: exact values of
// any column, and the order.
type ReportSpec struct {
	Filter Filter
	// Equal keeps rows whose column has exactly this value.
	Equal map[string]string
	// Sort lists columns, "-" in front for descending; log order if empty.
	Sort []string
}

// Report is an audit report (ONC 170.315(d)(3)).
type Report struct {
	Rows      []Row
	Truncated bool // more than MaxReportRows entries matched
	Found     []Found
}

// Report builds an audit report.
func (l *Log) Report(ctx context.Context, spec ReportSpec) (*Report, error) {
	col := map[string]int{}
	for i, c := range ReportColumns {
		col[c] = i
	}
	for c := range spec.Equal {
		if _, ok := col[c]; !ok {
			return nil, fmt.Errorf("%w: no column %s; the columns are %s", ErrSpec, c, strings.Join(ReportColumns, ", "))
		}
	}
	var keys []int
	var desc []bool
	for _, k := range spec.Sort {
		c, ok := col[strings.TrimPrefix(k, "-")]
		if !ok {
			return nil, fmt.Errorf("%w: cannot sort by %s; the columns are %s", ErrSpec, strings.TrimPrefix(k, "-"), strings.Join(ReportColumns, ", "))
		}
		keys, desc = append(keys, c), append(desc, strings.HasPrefix(k, "-"))
	}
	f := spec.Filter
	f.Limit = MaxReportRows + 1
	found, err := l.Find(ctx, f)
	if err != nil {
		return nil, err
	}
	rep := &Report{}
	if len(found) > MaxReportRows {
		found, rep.Truncated = found[:MaxReportRows], true
	}
	for _, x := range found {
		row := RowOf(x)
		keep := true
		for c, v := range spec.Equal {
			if row[col[c]] != v {
				keep = false
			}
		}
		if keep {
			rep.Rows = append(rep.Rows, row)
			rep.Found = append(rep.Found, x)
		}
	}
	if len(keys) > 0 {
		idx := make([]int, len(rep.Rows))
		for i := range idx {
			idx[i] = i
		}
		sort.SliceStable(idx, func(a, b int) bool {
			ra, rb := rep.Rows[idx[a]], rep.Rows[idx[b]]
			for k, c := range keys {
				x, y := ra[c], rb[c]
				if numericColumns[ReportColumns[c]] {
					nx, _ := strconv.ParseInt(x, 10, 64)
					ny, _ := strconv.ParseInt(y, 10, 64)
					if nx != ny {
						return (nx < ny) != desc[k]
					}
					continue
				}
				if x != y {
					return (x < y) != desc[k]
				}
			}
			return false
		})
		rows, fs := make([]Row, len(idx)), make([]Found, len(idx))
		for i, j := range idx {
			rows[i], fs[i] = rep.Rows[j], rep.Found[j]
		}
		rep.Rows, rep.Found = rows, fs
	}
	return rep, nil
}

// ErrSpec is returned for a report or view asked for wrongly.
var ErrSpec = fmt.Errorf("audit: bad request")

// CSV renders the report with a header line.
func (r *Report) CSV() []byte {
	var b bytes.Buffer
	w := csv.NewWriter(&b)
	w.Write(ReportColumns)
	for _, row := range r.Rows {
		w.Write(row)
	}
	w.Flush()
	return b.Bytes()
}

// JSON renders the report as {"columns": […], "rows": [{column: value}],
// "truncated": bool}, leaving out empty values.
func (r *Report) JSON() []byte {
	rows := make([]map[string]string, len(r.Rows))
	for i, row := range r.Rows {
		m := make(map[string]string, len(row))
		for j, c := range ReportColumns {
			if row[j] != "" {
				m[c] = row[j]
			}
		}
		rows[i] = m
	}
	b, _ := json.Marshal(map[string]any{"columns": ReportColumns, "rows": rows, "truncated": r.Truncated})
	return append(b, '\n')
}

// Access is one event in a patient's record, as the patient sees it.
type Access struct {
	Index     int64    `json:"index"`
	Time      string   `json:"time"`
	Who       string   `json:"who"`
	WhoKind   string   `json:"whoKind"`
	Role      string   `json:"role,omitempty"`
	Action    string   `json:"action"`
	Outcome   string   `json:"outcome"`
	Purpose   string   `json:"purpose,omitempty"`
	Source    string   `json:"source,omitempty"`
	Resources []string `json:"resources,omitempty"`
	// Entry is the entry's canonical bytes (base64), and Proof the
	// inclusion proof of its leaf hash in the tree of the checkpoint's
	// size (base64 hashes): the patient's software checks both.
	Entry string   `json:"entry,omitempty"`
	Proof []string `json:"proof,omitempty"`
}

// AccessLog is every access to one patient's record, each with its proof
// against one signed checkpoint.
type AccessLog struct {
	Patient     string   `json:"patient"`
	Accesses    []Access `json:"accesses"`
	Checkpoint  string   `json:"checkpoint,omitempty"` // the signed note
	Size        int64    `json:"size,omitempty"`
	VerifierKey string   `json:"verifierKey"`
}

// disclosureActions are the actions that release a patient's data.
var disclosureActions = map[string]bool{
	"read": true, "vread": true, "search-type": true, "search-system": true, "search-compartment": true, "history-instance": true,
	"history-type": true, "history-system": true, "operation": true, "batch": true, "transaction": true, "export": true,
}

// Accesses returns the events of the patient with pseudonym key (and id
// for display), in f's period: every access (who opened my record), each
// with its inclusion proof against a checkpoint that covers it, signed now
// if need be; or, with disclosures, the accounting of disclosures (ONC
// 170.315(d)(11)): the successful events that released the patient's data,
// without proofs.
func (l *Log) Accesses(ctx context.Context, id, key string, f Filter, disclosures bool) (*AccessLog, error) {
	f.Patient = key
	f.Limit = MaxReportRows
	found, err := l.Find(ctx, f)
	if err != nil {
		return nil, err
	}
	out := &AccessLog{Patient: "Patient/" + id, VerifierKey: l.vkey, Accesses: []Access{}}
	var kept []Found
	for _, x := range found {
		e := x.Entry
		if disclosures && (e.Outcome != OutcomeSuccess || !disclosureActions[e.Action]) {
			continue
		}
		a := Access{Index: x.Index, Time: e.Time.UTC().Format(time.RFC3339Nano), Who: e.Principal.ID, WhoKind: e.Principal.Kind,
			Role: e.Role, Action: e.Action, Outcome: e.Outcome, Purpose: e.Purpose, Source: e.Source}
		for _, r := range e.Resources {
			if r.Owner == "Patient/"+key && r.ID != "" {
				a.Resources = append(a.Resources, r.Type+"/"+r.ID)
			}
		}
		out.Accesses = append(out.Accesses, a)
		kept = append(kept, x)
	}
	if disclosures || len(kept) == 0 {
		return out, nil
	}
	cp, err := l.Latest(ctx)
	if err != nil {
		return nil, err
	}
	if cp == nil || cp.Size <= kept[len(kept)-1].Index {
		if cp, err = l.Sign(ctx); err != nil {
			return nil, err
		}
	}
	out.Checkpoint, out.Size = string(cp.Note), cp.Size
	for i, x := range kept {
		p, err := l.ProveInclusion(ctx, x.Index, cp.Size)
		if err != nil {
			return nil, err
		}
		out.Accesses[i].Entry = base64.StdEncoding.EncodeToString(x.Leaf)
		for _, h := range p.Hashes {
			out.Accesses[i].Proof = append(out.Accesses[i].Proof, base64.StdEncoding.EncodeToString(h[:]))
		}
	}
	return out, nil
}

// DisclosuresCSV renders an accounting of disclosures.
func (a *AccessLog) DisclosuresCSV() []byte {
	var b bytes.Buffer
	w := csv.NewWriter(&b)
	w.Write([]string{"index", "time", "recipient", "recipient_kind", "role", "purpose", "action", "resources"})
	for _, x := range a.Accesses {
		w.Write([]string{strconv.FormatInt(x.Index, 10), x.Time, x.Who, x.WhoKind, x.Role, x.Purpose, x.Action, strings.Join(x.Resources, " ")})
	}
	w.Flush()
	return b.Bytes()
}
