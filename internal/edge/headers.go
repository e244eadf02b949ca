package edge

import (
	"encoding/json"
	"net/http"
	"strconv"
	"sync"
)

// Security headers set on every response. A handler may replace any of
// them (e.g. Cache-Control on a public, cacheable document).
const (
	// HSTS is sent on HTTPS only (RFC 6797 7.2: never over plain HTTP).
	HSTS = "max-age=63072000; includeSubDomains"
	// CSP lets pages load scripts, styles and images from their own
	// origin only and never be framed. It sets no form-action: browsers
	// apply it to the redirect after a form post, which would stop the
	// OAuth consent page from returning to an app.
	CSP               = "default-src 'self'; frame-ancestors 'none'; base-uri 'none'; object-src 'none'"
	PermissionsPolicy = "camera=(), microphone=(), geolocation=(), payment=(), usb=()"
)

// securityHeaders are the headers SecurityHeaders sets, by canonical key;
// the value slices are shared and never changed, so that setting them
// costs no allocation on a hot path.
var (
	securityHeaders = map[string][]string{
		"X-Content-Type-Options":  {"nosniff"},
		"X-Frame-Options":         {"DENY"},
		"Content-Security-Policy": {CSP},
		"Referrer-Policy":         {"no-referrer"},
		"Cache-Control":           {"no-store"},
		"Permissions-Policy":      {PermissionsPolicy},
	}
	hstsHeader = []string{HSTS}
)

// SecurityHeaders sets the security headers on every response of next.
func SecurityHeaders(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		if r.TLS != nil {
			h["Strict-Transport-Security"] = hstsHeader
		}
		for k, v := range securityHeaders {
			h[k] = v
		}
		next.ServeHTTP(w, r)
	})
}

// WriteError answers status with a small JSON body shaped like a FHIR
// OperationOutcome, which FHIR clients show, and readable by anybody:
//
//	{"resourceType":"OperationOutcome","issue":[{"severity":"error","code":"too-long","diagnostics":"…"}]}
func WriteError(w http.ResponseWriter, status int, code, diagnostics string) {
	body, _ := json.Marshal(map[string]any{
		"resourceType": "OperationOutcome",
		"issue":        []map[string]string{{"severity": "error", "code": code, "diagnostics": diagnostics}},
	})
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(status)
	w.Write(body)
}

// MaxBody limits request bodies to n bytes: a request that declares a
// longer body is answered 413 at once; one whose body turns out longer
// while the handler reads it gets a read error, and, if the handler has
// not answered yet, the 413 answer (the handler's later writes are
// dropped).
func MaxBody(n int64, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.ContentLength > n {
			tooLarge(w, n)
			return
		}
		if r.Body == nil || r.Body == http.NoBody {
			next.ServeHTTP(w, r)
			return
		}
		lw := &limitWriter{ResponseWriter: w, n: n}
		r.Body = &limitBody{body: http.MaxBytesReader(w, r.Body, n), w: lw}
		next.ServeHTTP(lw, r)
	})
}

func tooLarge(w http.ResponseWriter, n int64) {
	w.Header().Set("Connection", "close")
	WriteError(w, http.StatusRequestEntityTooLarge, "too-long", "request body larger than the limit of "+strconv.FormatInt(n, 10)+" bytes")
}

// limitWriter passes writes on until the body limit answered 413.
type limitWriter struct {
	http.ResponseWriter
	n        int64
	mu       sync.Mutex
	wrote    bool // the handler began its answer
	answered bool // MaxBody answered 413
}

func (w *limitWriter) WriteHeader(status int) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.answered || w.wrote {
		return
	}
	w.wrote = true
	w.ResponseWriter.WriteHeader(status)
}

func (w *limitWriter) Write(b []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.answered {
		return len(b), nil
	}
	w.wrote = true
	return w.ResponseWriter.Write(b)
}

// Unwrap lets http.ResponseController reach the connection's writer.
func (w *limitWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

func (w *limitWriter) overflow() {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.wrote || w.answered {
		return
	}
	w.answered = true
	tooLarge(w.ResponseWriter, w.n)
}

// limitBody reports an overflow of the limit to the writer.
type limitBody struct {
	body interface {
		Read([]byte) (int, error)
		Close() error
	}
	w *limitWriter
}

func (b *limitBody) Read(p []byte) (int, error) {
	n, err := b.body.Read(p)
	if _, ok := err.(*http.MaxBytesError); ok {
		b.w.overflow()
	}
	return n, err
}

func (b *limitBody) Close() error { return b.body.Close() }
