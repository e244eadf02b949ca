package devices

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ehrvault/ehrvault/internal/auth"
)

// recorder keeps events.
type recorder struct {
	mu     sync.Mutex
	events []Event
}

func (r *recorder) Record(ctx context.Context, e Event) error {
	r.mu.Lock()
	r.events = append(r.events, e)
	r.mu.Unlock()
	return nil
}

func (r *recorder) has(action, outcome string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, e := range r.events {
		if e.Action == action && e.Outcome == outcome {
			return true
		}
	}
	return false
}

// testAdmin takes the principal from test headers: X-Kind and X-Role.
func testAdmin(r *http.Request) (*auth.Principal, error) {
	kind := r.Header.Get("X-Kind")
	if kind == "" {
		return nil, auth.ErrUnauthenticated
	}
	return &auth.Principal{Kind: kind, ID: "p_" + r.Header.Get("X-Role"), Role: r.Header.Get("X-Role")}, nil
}

func TestHandler(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t)
	reg := e.registry(WithClock(nowUTC)) // client proofs use the real clock
	rec := &recorder{}
	srv := httptest.NewServer(NewHandler(HandlerConfig{Registry: reg, Admin: testAdmin, Recorder: rec}))
	defer srv.Close()

	admin := func(method, path, kind, role, body string) (int, []byte) {
		t.Helper()
		req, _ := http.NewRequest(method, srv.URL+path, strings.NewReader(body))
		if kind != "" {
			req.Header.Set("X-Kind", kind)
			req.Header.Set("X-Role", role)
		}
		if method == http.MethodPost {
			req.Header.Set("Content-Type", "application/json")
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var b json.RawMessage
		json.NewDecoder(resp.Body).Decode(&b)
		return resp.StatusCode, b
	}

	// Role checks on every admin route.
	for _, rt := range []struct{ method, path string }{
		{"GET", PathAdmin}, {"GET", PathAdmin + "/dev_x"}, {"POST", PathAdmin + "/dev_x/approve"},
		{"POST", PathAdmin + "/dev_x/revoke"}, {"POST", PathAdmin + "/codes"},
	} {
		if st, _ := admin(rt.method, rt.path, "", "", "{}"); st != http.StatusUnauthorized {
			t.Errorf("%s %s unauthenticated: status %d, want 401", rt.method, rt.path, st)
		}
		if st, _ := admin(rt.method, rt.path, auth.KindUser, auth.RoleClinician, "{}"); st != http.StatusForbidden {
			t.Errorf("%s %s as a clinician: status %d, want 403", rt.method, rt.path, st)
		}
	}
	if !rec.has(ActionAdmin, OutcomeDenied) {
		t.Error("refused admin requests were not recorded")
	}

	st, body := admin("POST", PathAdmin+"/codes", auth.KindUser, auth.RoleAdmin, `{"label":"ward tablet","kind":"tablet"}`)
	if st != http.StatusCreated {
		t.Fatalf("POST codes as admin: %d %s", st, body)
	}
	var cr CodeResponse
	json.Unmarshal(body, &cr)
	if !strings.HasPrefix(cr.Code, CodePrefix) || cr.Kind != Tablet {
		t.Fatalf("POST codes = %s", body)
	}
	if st, _ := admin("POST", PathAdmin+"/codes", auth.KindOperator, "", `{"label":"x","kind":"toaster"}`); st != http.StatusBadRequest {
		t.Errorf("POST codes with kind toaster: status %d, want 400", st)
	}

	k := newKey(t)
	hc := srv.Client()
	s, err := Enroll(ctx, hc, srv.URL, cr.Code, k, encrypted)
	if err != nil {
		t.Fatalf("Enroll: %v", err)
	}
	if s.State != StatePending || s.Passes {
		t.Fatalf("Enroll status = %+v, want pending, not passing", s)
	}
	var se *ServerError
	if _, err := Enroll(ctx, hc, srv.URL, cr.Code, newKey(t), encrypted); !errors.As(err, &se) || se.Code != "invalid_grant" {
		t.Errorf("Enroll with a used code: err = %v, want invalid_grant", err)
	}
	if !rec.has(ActionEnroll, OutcomeSuccess) || !rec.has(ActionEnroll, OutcomeDenied) {
		t.Errorf("enrolments not recorded: %+v", rec.events)
	}
	if _, err := FetchStatus(ctx, hc, srv.URL, newKey(t)); !errors.As(err, &se) || se.Status != http.StatusUnauthorized {
		t.Errorf("FetchStatus(unenrolled key) err = %v, want 401", err)
	}

	if st, body := admin("POST", PathAdmin+"/"+s.Device+"/approve", auth.KindUser, auth.RoleAdmin, ""); st != http.StatusOK {
		t.Fatalf("approve: %d %s", st, body)
	}
	if !rec.has(ActionApprove, OutcomeSuccess) {
		t.Error("approval not recorded")
	}
	s, err = FetchStatus(ctx, hc, srv.URL, k)
	if err != nil || s.State != StateApproved || !s.Passes {
		t.Fatalf("FetchStatus after approve = %+v, %v; want approved and passing", s, err)
	}
	plain := encrypted
	plain.DiskEncrypted = false
	s, err = SendPosture(ctx, hc, srv.URL, k, plain)
	if err != nil || s.Passes || !strings.Contains(s.Reason, "encryption") {
		t.Fatalf("SendPosture(unencrypted) = %+v, %v; want not passing for encryption", s, err)
	}
	if _, err := SendPosture(ctx, hc, srv.URL, k, encrypted); err != nil {
		t.Fatal(err)
	}

	st, body = admin("GET", PathAdmin, auth.KindOperator, "", "")
	var list []Device
	if err := json.Unmarshal(body, &list); st != http.StatusOK || err != nil || len(list) != 1 || list[0].ID != s.Device || !list[0].Posture.DiskEncrypted {
		t.Fatalf("GET %s = %d %s", PathAdmin, st, body)
	}
	if strings.Contains(string(body), cr.Code) {
		t.Error("device list shows the enrollment code")
	}
	// A POST that a form of another origin could send is refused.
	req, _ := http.NewRequest("POST", srv.URL+PathAdmin+"/"+s.Device+"/revoke", strings.NewReader("a=b"))
	req.Header.Set("X-Kind", auth.KindOperator)
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if resp, err := http.DefaultClient.Do(req); err != nil || resp.StatusCode != http.StatusUnsupportedMediaType {
		t.Errorf("revoke with a form body: %v %v, want 415", resp.StatusCode, err)
	}
	if st, body := admin("POST", PathAdmin+"/"+s.Device+"/revoke", auth.KindOperator, "", ""); st != http.StatusOK {
		t.Fatalf("revoke: %d %s", st, body)
	}
	if _, err := reg.DeviceByKey(ctx, k.JKT()); !errors.Is(err, auth.ErrUnauthenticated) {
		t.Errorf("DeviceByKey after revoke over HTTP: err = %v", err)
	}
	if st, _ := admin("POST", PathAdmin+"/dev_nope/approve", auth.KindOperator, "", ""); st != http.StatusNotFound {
		t.Errorf("approve unknown device: status %d, want 404", st)
	}
	if !rec.has(ActionRevoke, OutcomeSuccess) || !rec.has(ActionApprove, OutcomeFailure) {
		t.Errorf("revocation or failed approval not recorded: %+v", rec.events)
	}
	for _, ev := range rec.events {
		if strings.Contains(ev.Reason+ev.Principal+ev.Device, CodePrefix) {
			t.Errorf("event %+v holds a code", ev)
		}
	}
}

func nowUTC() time.Time { return time.Now().UTC() }
