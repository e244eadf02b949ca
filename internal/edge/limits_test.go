package edge

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ehrvault/ehrvault/internal/auth"
)

var ok = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
	if _, err := io.ReadAll(r.Body); err != nil {
		// A handler that answers the read error itself: its answer must
		// not replace the 413.
		http.Error(w, "read failed", http.StatusBadRequest)
		return
	}
	io.WriteString(w, "ok")
})

func TestSecurityHeaders(t *testing.T) {
	h := SecurityHeaders(ok)
	want := map[string]string{
		"X-Content-Type-Options":  "nosniff",
		"X-Frame-Options":         "DENY",
		"Content-Security-Policy": CSP,
		"Referrer-Policy":         "no-referrer",
		"Cache-Control":           "no-store",
		"Permissions-Policy":      PermissionsPolicy,
	}
	for _, https := range []bool{false, true} {
		url := "http://localhost/"
		if https {
			url = "https://localhost/" // httptest sets r.TLS
		}
		r := httptest.NewRequest("GET", url, nil)
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		for k, v := range want {
			if got := w.Header().Get(k); got != v {
				t.Errorf("https %v: %s = %q, want %q", https, k, got, v)
			}
		}
		if got := w.Header().Get("Strict-Transport-Security"); https && got != HSTS || !https && got != "" {
			t.Errorf("https %v: Strict-Transport-Security = %q", https, got)
		}
	}
	if !strings.Contains(CSP, "default-src 'self'") || !strings.Contains(CSP, "frame-ancestors 'none'") {
		t.Errorf("CSP = %q", CSP)
	}
}

func TestMaxBody(t *testing.T) {
	h := MaxBody(10, ok)
	check := func(name string, r *http.Request, status int) {
		t.Helper()
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		if w.Code != status {
			t.Errorf("%s: status %d, want %d (%s)", name, w.Code, status, w.Body)
		}
		if status == http.StatusRequestEntityTooLarge {
			var oo struct {
				ResourceType string
				Issue        []struct{ Code, Diagnostics string }
			}
			if err := json.Unmarshal(w.Body.Bytes(), &oo); err != nil || len(oo.Issue) != 1 || !strings.Contains(oo.Issue[0].Diagnostics, "10 bytes") {
				t.Errorf("%s: body %q does not name the limit", name, w.Body)
			}
		}
	}
	check("small body", httptest.NewRequest("POST", "/", strings.NewReader("0123456789")), 200)
	check("declared too long", httptest.NewRequest("POST", "/", strings.NewReader("0123456789a")), 413)
	r := httptest.NewRequest("POST", "/", io.MultiReader(strings.NewReader("01234"), strings.NewReader("56789abc")))
	r.ContentLength = -1 // chunked: the length shows only while reading
	check("chunked too long", r, 413)
	check("no body", httptest.NewRequest("GET", "/", nil), 200)
}

func TestRateLimitPerAddress(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	var mu sync.Mutex
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	l := NewLimiter(LimiterConfig{Address: Rate{PerSecond: 1, Burst: 3}, Now: clock})
	h := l.Middleware(ok)
	get := func(addr string) *httptest.ResponseRecorder {
		r := httptest.NewRequest("GET", "/", nil)
		r.RemoteAddr = addr
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		return w
	}
	for i := range 3 {
		if w := get("192.0.2.1:1000"); w.Code != 200 {
			t.Fatalf("request %d within the burst: %d", i+1, w.Code)
		}
	}
	w := get("192.0.2.1:1001")
	if w.Code != http.StatusTooManyRequests {
		t.Fatalf("request past the burst: %d, want 429", w.Code)
	}
	if ra, err := strconv.Atoi(w.Header().Get("Retry-After")); err != nil || ra < 1 {
		t.Errorf("Retry-After = %q, want whole seconds ≥ 1", w.Header().Get("Retry-After"))
	}
	if w := get("192.0.2.2:1000"); w.Code != 200 {
		t.Errorf("another address: %d, want 200", w.Code)
	}
	// IPv6: one /64 shares a bucket.
	for i := range 3 {
		get("[2001:db8:1:2::" + strconv.Itoa(i+1) + "]:1")
	}
	if w := get("[2001:db8:1:2::99]:1"); w.Code != http.StatusTooManyRequests {
		t.Errorf("4th request from one /64: %d, want 429", w.Code)
	}
	if w := get("[2001:db8:1:3::1]:1"); w.Code != 200 {
		t.Errorf("another /64: %d, want 200", w.Code)
	}
	mu.Lock()
	now = now.Add(time.Second)
	mu.Unlock()
	if w := get("192.0.2.1:1000"); w.Code != 200 {
		t.Errorf("a second later: %d, want 200", w.Code)
	}
}

func TestRateLimitPerPrincipal(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	l := NewLimiter(LimiterConfig{Principal: Rate{PerSecond: 0.5, Burst: 2}, MaxKeys: 3, Now: func() time.Time { return now }})
	for i := range 2 {
		if _, ok := l.AllowPrincipal("usr_a"); !ok {
			t.Fatalf("AllowPrincipal %d within the burst refused", i+1)
		}
	}
	wait, allowed := l.AllowPrincipal("usr_a")
	if allowed || wait < time.Second || wait > 2*time.Second {
		t.Fatalf("AllowPrincipal past the burst = %v, %v; want refused for about 2s", wait, allowed)
	}
	w := httptest.NewRecorder()
	if l.LimitPrincipal(w, "usr_a") || w.Code != http.StatusTooManyRequests || w.Header().Get("Retry-After") != "2" {
		t.Errorf("LimitPrincipal = %d, Retry-After %q; want 429, 2", w.Code, w.Header().Get("Retry-After"))
	}
	if _, ok := l.AllowPrincipal("usr_b"); !ok {
		t.Error("another principal refused")
	}
	// The map stays bounded.
	for _, id := range []string{"c", "d", "e", "f"} {
		l.AllowPrincipal(id)
	}
	if n := l.principal.len(); n != 3 {
		t.Errorf("buckets kept = %d, want MaxKeys 3", n)
	}
	// No address limit configured: everything passes.
	if _, ok := l.AllowAddress(netip.MustParseAddr("192.0.2.1")); !ok {
		t.Error("AllowAddress without an address rate refused")
	}
}

func TestAllowlist(t *testing.T) {
	a, err := ParseAllowlist([]string{
		"role:billing=10.0.0.0/8, 192.168.1.0/24",
		"role:billing=2001:db8:b::/48",
		"client:lab-feed=198.51.100.7",
		"role:clinician=fd00::/8",
	})
	if err != nil {
		t.Fatal(err)
	}
	billing := &auth.Principal{Kind: auth.KindUser, Role: auth.RoleBilling}
	nurse := &auth.Principal{Kind: auth.KindUser, Role: auth.RoleNurse}
	lab := &auth.Principal{Kind: auth.KindService, Client: "lab-feed"}
	clinApp := &auth.Principal{Kind: auth.KindUser, Role: auth.RoleClinician, Client: "lab-feed"}
	tests := []struct {
		p      *auth.Principal
		remote string
		want   bool
	}{
		{billing, "10.20.30.40:5555", true},
		{billing, "192.168.1.200:1", true},
		{billing, "192.168.2.1:1", false},
		{billing, "[::ffff:10.0.0.1]:1", true}, // IPv4-mapped
		{billing, "[2001:db8:b:ffff::1]:443", true},
		{billing, "[2001:db8:c::1]:443", false},
		{billing, "garbage", false},
		{nurse, "203.0.113.9:1", true}, // no rule for nurses
		{lab, "198.51.100.7:9", true},
		{lab, "198.51.100.8:9", false},
		{clinApp, "[fd00::1]:1", false},    // the client rule fails
		{clinApp, "198.51.100.7:1", false}, // the role rule fails
		{nil, "203.0.113.9:1", true},
	}
	for _, tt := range tests {
		if got := a.Allowed(tt.p, tt.remote); got != tt.want {
			t.Errorf("Allowed(%+v, %s) = %v, want %v", tt.p, tt.remote, got, tt.want)
		}
	}
	var empty *Allowlist
	if !empty.Allowed(billing, "203.0.113.1:1") {
		t.Error("a nil Allowlist refused")
	}
	for _, bad := range []string{"billing=10.0.0.0/8", "role:wizard=10.0.0.0/8", "role:billing=10.0.0.0/33", "role:billing=", "user:x=10.0.0.1", "role:billing"} {
		if _, err := ParseAllowlist([]string{bad}); err == nil {
			t.Errorf("ParseAllowlist(%q) succeeded", bad)
		}
	}
	f := filepath.Join(t.TempDir(), "allow.txt")
	os.WriteFile(f, []byte("# billing office only\nrole:billing=10.0.0.0/8\n\nclient:abc=::1\n"), 0o644)
	fa, err := ParseAllowlistFile(f)
	if err != nil || fa.Allowed(billing, "11.0.0.1:1") || !fa.Allowed(&auth.Principal{Client: "abc"}, "[::1]:1") {
		t.Errorf("ParseAllowlistFile: %v", err)
	}
}

func TestProxiesSource(t *testing.T) {
	p, err := ParseProxies("10.0.0.0/8, ::1")
	if err != nil {
		t.Fatal(err)
	}
	src := func(remote, xff string, p Proxies) string {
		r := httptest.NewRequest("GET", "/", nil)
		r.RemoteAddr = remote
		if xff != "" {
			r.Header.Set("X-Forwarded-For", xff)
		}
		return p.Source(r).String()
	}
	tests := []struct{ remote, xff, want string }{
		{"203.0.113.5:1", "1.2.3.4", "203.0.113.5"},             // not a proxy: header ignored
		{"10.0.0.2:1", "1.2.3.4", "1.2.3.4"},                    // a proxy
		{"10.0.0.2:1", "6.6.6.6, 1.2.3.4, 10.0.0.3", "1.2.3.4"}, // forged first hop ignored
		{"[::1]:1", "2001:db8::9", "2001:db8::9"},
		{"10.0.0.2:1", "not-an-ip", "10.0.0.2"},
		{"10.0.0.2:1", "", "10.0.0.2"},
	}
	for _, tt := range tests {
		if got := src(tt.remote, tt.xff, p); got != tt.want {
			t.Errorf("Source(%s, XFF %q) = %s, want %s", tt.remote, tt.xff, got, tt.want)
		}
	}
	if got := src("10.0.0.2:1", "1.2.3.4", nil); got != "10.0.0.2" {
		t.Errorf("Source without proxies = %s, want the peer", got)
	}
}
