package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"html"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"

	"github.com/ehrvault/ehrvault/internal/audit"
	"github.com/ehrvault/ehrvault/internal/auth/devices"
	"github.com/ehrvault/ehrvault/internal/auth/dpop"
	"github.com/ehrvault/ehrvault/internal/auth/dpop/dpoptest"
	"github.com/ehrvault/ehrvault/internal/auth/smart"
	"github.com/ehrvault/ehrvault/internal/auth/users"
)

// The end-to-end tests of issue 4: scopes enforced and attacks refused
// through the real wiring of "ehrvault serve" (HTTPS, the login pages,
// the SMART server, the device registry, the FHIR API).

const (
	catSystem = "http://terminology.hl7.org/CodeSystem/observation-category"
	labScope  = "patient/Observation.rs?category=" + catSystem + "|laboratory"
)

// sharedTypes hold records of no patient, which patient/ scopes see.
var sharedTypes = map[string]bool{"Practitioner": true, "PractitionerRole": true, "Organization": true, "Location": true, "Medication": true}

// world is a served store with three synthetic patients, an enrolled
// clinician logged in on a browser, and an enrolled workstation.
type world struct {
	s          *idServer
	a, b, c    string          // patient ids
	bKeys      map[string]bool // Type/id of every record of B's compartment
	clinician  *person
	browser    *http.Client
	key        *dpoptest.Key // the workstation's key
	deviceID   string
	bObs, aObs string // an Observation of B's, of A's
}

func newWorld(t *testing.T, args ...string) *world {
	s := newIDServer(t, args...)
	pats := s.importSynthetic(4, 3)
	w := &world{s: s, a: pats[0], b: pats[1], c: pats[2], bKeys: map[string]bool{}}
	op := s.op_()
	for _, res := range op.all("/Patient/" + w.b + "/$everything") {
		if !sharedTypes[res["resourceType"].(string)] {
			w.bKeys[key(res)] = true
		}
	}
	if !w.bKeys["Patient/"+w.b] || len(w.bKeys) < 10 {
		t.Fatalf("B's compartment holds %d records; want B and many more", len(w.bKeys))
	}
	w.bObs = op.get("/Observation?patient="+w.b+"&_count=1").want(t, 200).str("entry.0.resource.id")
	w.aObs = op.get("/Observation?patient="+w.a+"&_count=1").want(t, 200).str("entry.0.resource.id")
	if w.bObs == "" || w.aObs == "" {
		t.Fatal("the synthetic patients have no Observations")
	}
	w.clinician = s.enroll("carla", "clinician")
	w.browser = s.login(w.clinician, "otp", "")
	w.key, w.deviceID = s.device("ws-1")
	return w
}

// noB fails if an answer holds a record of B's compartment.
func (w *world) noB(t *testing.T, r *idResponse) {
	t.Helper()
	for _, k := range r.keys() {
		if w.bKeys[k] {
			t.Errorf("%s shows %s, of patient B", r.req, k)
		}
	}
}

// obsBody is an Observation for patient pid.
func obsBody(pid, extra string) string {
	return `{"resourceType":"Observation","status":"final","code":{"coding":[{"system":"http://loinc.org","code":"8867-4"}]},"subject":{"reference":"Patient/` + pid + `"},"effectiveDateTime":"2025-01-02T03:04:05Z","valueQuantity":{"value":72,"unit":"/min"}` + extra + `}`
}

func TestIdentityScopes(t *testing.T) {
	w := newWorld(t)
	s := w.s
	op := s.op_()

	t.Run("patient app", func(t *testing.T) {
		s.sub(t)
		app := s.app("Chart viewer", "patient/*.rs patient/Observation.cu")
		tok := s.authorize(w.browser, app, "patient/*.rs patient/Observation.cu launch/patient offline_access", w.a, w.key)
		if tok.Patient != w.a {
			t.Errorf("patient in context %q, want A %q", tok.Patient, w.a)
		}
		if strings.Contains(tok.Scope, "user/") || strings.Contains(tok.Scope, ".cruds") {
			t.Errorf("granted %q: more than asked", tok.Scope)
		}
		me := &cred{s: s, token: tok.AccessToken, key: w.key}

		// A's records are there.
		aCount := len(op.all("/Observation?patient=" + w.a + "&_count=50"))
		mine := me.all("/Observation?_count=50")
		if len(mine) != aCount || aCount == 0 {
			t.Errorf("the app sees %d Observations, want A's %d", len(mine), aCount)
		}
		for _, res := range mine {
			if ref := res["subject"].(map[string]any)["reference"]; ref != "Patient/"+w.a {
				t.Errorf("Observation/%s of %v shown to A's app", res["id"], ref)
			}
		}
		me.get("/Observation/"+w.aObs).want(t, 200)

		// B's are not, by any path.
		me.get("/Observation/"+w.bObs).want(t, 404)
		me.get("/Patient/"+w.b).want(t, 404)
		me.get("/Observation/"+w.bObs+"/_history/1").want(t, 404)
		me.get("/Observation/"+w.bObs+"/_history").want(t, 404)
		if r := me.get("/Observation/_history?_count=1000").want(t, 200); len(r.entries()) == 0 {
			t.Error("the type history shows nothing of A's")
		} else {
			w.noB(t, r)
		}
		for _, q := range []string{"/Observation?patient=" + w.b, "/Observation?subject=Patient/" + w.b, "/Observation?_id=" + w.bObs,
			"/Patient?_id=" + w.b, "/Patient?_id=" + w.b + "&_revinclude=Observation:subject"} {
			r := me.get(q).want(t, 200)
			if n := len(r.entries()); n != 0 {
				t.Errorf("%s: %d entries, want none", q, n)
			}
			w.noB(t, r)
		}
		for _, q := range []string{"/Observation?patient=" + w.b + "&_summary=count", "/Observation?_id=" + w.bObs + "&_total=accurate"} {
			if got := me.get(q).want(t, 200).str("total"); got != "0" {
				t.Errorf("%s: total %q, want 0", q, got)
			}
		}
		if got := me.get("/Observation?_summary=count").want(t, 200).str("total"); got != strconv.Itoa(aCount) {
			t.Errorf("_summary=count = %s, want A's %d", got, aCount)
		}
		if got := me.get("/Observation?_total=accurate&_count=1").want(t, 200).str("total"); got != strconv.Itoa(aCount) {
			t.Errorf("_total=accurate = %s, want A's %d", got, aCount)
		}
		for _, q := range []string{"/Observation?_include=Observation:subject&_count=200", "/Encounter?_include=Encounter:subject&_revinclude=Observation:encounter&_count=200",
			"/Patient?_revinclude=Observation:subject&_revinclude=Encounter:subject&_count=200", "/Observation?_include=Observation:performer&_count=200"} {
			r := me.get(q).want(t, 200)
			if len(r.entries()) == 0 {
				t.Errorf("%s: nothing, want A's records", q)
			}
			w.noB(t, r)
		}
		if r := me.get("/Patient/" + w.b + "/$everything"); r.status == 200 {
			if len(r.entries()) != 0 {
				t.Errorf("Patient/B/$everything: %d entries", len(r.entries()))
			}
			w.noB(t, r)
		} else if r.status != 404 {
			t.Errorf("Patient/B/$everything: %d, want 404 or an empty Bundle", r.status)
		}
		if n := len(me.all("/Patient/" + w.a + "/$everything")); n == 0 {
			t.Error("Patient/A/$everything is empty")
		}
		batch := `{"resourceType":"Bundle","type":"batch","entry":[{"request":{"method":"GET","url":"Observation/` + w.bObs + `"}},{"request":{"method":"GET","url":"Patient/` + w.b + `"}},{"request":{"method":"GET","url":"Observation/` + w.aObs + `"}}]}`
		br := me.send("POST", "", batch).want(t, 200)
		for i, want := range []string{"404", "404", "200"} {
			if got := br.str(fmt.Sprintf("entry.%d.response.status", i)); !strings.HasPrefix(got, want) {
				t.Errorf("batch entry %d: status %q, want %s: %.300s", i, got, want, br.str(fmt.Sprintf("entry.%d", i)))
			}
		}
		if strings.Contains(string(br.body), w.bObs) {
			t.Errorf("the batch shows B's records: %.500s", br.body)
		}

		// Writes: A's yes, B's no.
		me.send("POST", "/Observation", obsBody(w.b, "")).want(t, 403)
		id := me.send("POST", "/Observation", obsBody(w.a, "")).want(t, 201).str("id")
		me.send("PUT", "/Observation/"+w.bObs, strings.Replace(obsBody(w.a, ""), `{"resourceType":"Observation",`, `{"resourceType":"Observation","id":"`+w.bObs+`",`, 1)).want(t, 403)
		me.send("DELETE", "/Observation/"+id, "").want(t, 403) // no d scope

		// A transaction or batch that writes for B writes nothing for B.
		before := len(op.all("/Observation?patient=" + w.b + "&_count=200"))
		for _, typ := range []string{"transaction", "batch"} {
			bundle := `{"resourceType":"Bundle","type":"` + typ + `","entry":[{"fullUrl":"urn:uuid:0b3a2e1c-0000-4000-8000-000000000001","resource":` + obsBody(w.a, "") + `,"request":{"method":"POST","url":"Observation"}},{"fullUrl":"urn:uuid:0b3a2e1c-0000-4000-8000-000000000002","resource":` + obsBody(w.b, "") + `,"request":{"method":"POST","url":"Observation"}}]}`
			r := me.send("POST", "", bundle)
			switch {
			case typ == "transaction" && r.status != 403:
				t.Errorf("a transaction writing for B: %d, want 403: %.300s", r.status, r.body)
			case typ == "batch" && r.status == 200 && !strings.HasPrefix(r.str("entry.1.response.status"), "403"):
				t.Errorf("a batch entry writing for B: %q, want 403", r.str("entry.1.response.status"))
			}
		}
		if after := len(op.all("/Observation?patient=" + w.b + "&_count=200")); after != before {
			t.Errorf("B has %d Observations after the Bundles, had %d", after, before)
		}

		// Conditional writes whose query matches only B's record neither
		// touch nor reveal it: it does not exist for this app.
		ident := func(v string) string {
			return `,"identifier":[{"system":"urn:test:cond","value":"` + v + `"}]`
		}
		b1 := op.send("POST", "/Observation", obsBody(w.b, ident("b-1"))).want(t, 201).str("id")
		b2 := op.send("POST", "/Observation", obsBody(w.b, ident("b-2"))).want(t, 201).str("id")
		r := me.send("POST", "/Observation", obsBody(w.a, ident("b-1")), "If-None-Exist", "identifier=urn:test:cond|b-1")
		if r.status != 201 || r.str("id") == b1 || strings.Contains(string(r.body), w.b) {
			t.Errorf("conditional create matching only B's: %d %.300s; want 201, a new record of A's", r.status, r.body)
		}
		r = me.send("PUT", "/Observation?identifier=urn:test:cond|b-2", obsBody(w.a, ident("b-2")))
		if r.status != 201 || r.str("id") == b2 || strings.Contains(string(r.body), b2) || r.str("subject.reference") != "Patient/"+w.a {
			t.Errorf("conditional update matching only B's: %d %.300s; want 201, a new record of A's", r.status, r.body)
		}
		for _, id := range []string{b1, b2} {
			if v := op.get("/Observation/"+id).want(t, 200); v.str("meta.versionId") != "1" || v.str("subject.reference") != "Patient/"+w.b {
				t.Errorf("B's Observation/%s was changed: %.300s", id, v.body)
			}
		}
		r = me.send("DELETE", "/Observation?identifier=urn:test:cond|b-1", "")
		if r.status < 400 {
			t.Errorf("conditional delete without a d scope: %d", r.status)
		}
		op.get("/Observation/"+b1).want(t, 200)
	})

	t.Run("granular category", func(t *testing.T) {
		s.sub(t)
		app := s.app("Lab viewer", labScope)
		tok := s.authorize(w.browser, app, labScope, w.a, w.key)
		if tok.Scope != labScope {
			t.Errorf("granted %q, want %q", tok.Scope, labScope)
		}
		lab := &cred{s: s, token: tok.AccessToken, key: w.key}
		isLab := func(res map[string]any) bool {
			b, _ := json.Marshal(res["category"])
			return strings.Contains(string(b), `"code":"laboratory"`) && strings.Contains(string(b), catSystem)
		}
		vital := op.get("/Observation?patient="+w.a+"&category="+url.QueryEscape(catSystem+"|vital-signs")+"&_count=1").want(t, 200).str("entry.0.resource.id")
		labID := op.get("/Observation?patient="+w.a+"&category="+url.QueryEscape(catSystem+"|laboratory")+"&_count=1").want(t, 200).str("entry.0.resource.id")
		if vital == "" || labID == "" {
			t.Fatal("patient A lacks vital-signs or laboratory Observations")
		}
		lab.get("/Observation/"+vital).want(t, 404)
		lab.get("/Observation/"+labID).want(t, 200)
		lab.get("/Observation/"+w.bObs).want(t, 404)
		lab.get("/Patient/"+w.a).want(t, 403) // no Patient scope
		want := len(op.all("/Observation?patient=" + w.a + "&category=" + url.QueryEscape(catSystem+"|laboratory") + "&_count=50"))
		first := lab.get("/Observation?_count=3").want(t, 200)
		if first.next(s) == "" {
			t.Fatal("no next page for the lab app")
		}
		got := first.entries()
		for p := first.next(s); p != ""; {
			r := lab.get(p).want(t, 200)
			got = append(got, r.entries()...)
			p = r.next(s)
		}
		if len(got) != want {
			t.Errorf("the lab app's pages hold %d Observations, want A's %d laboratory ones", len(got), want)
		}
		for _, res := range got {
			if !isLab(res) {
				t.Errorf("Observation/%s shown to the lab app is not laboratory: %v", res["id"], res["category"])
			}
		}
		if n := lab.get("/Observation?category="+url.QueryEscape(catSystem+"|vital-signs")).want(t, 200).entries(); len(n) != 0 {
			t.Errorf("a search for vital signs shows %d", len(n))
		}
		if c := lab.get("/Observation?_summary=count").want(t, 200).str("total"); c != strconv.Itoa(want) {
			t.Errorf("_summary=count = %s, want %d", c, want)
		}
		// The operator's cursor over everything, replayed by the lab app.
		opPage := op.get("/Observation?_count=5").want(t, 200)
		next := opPage.next(s)
		if next == "" {
			t.Fatal("no next link for the operator")
		}
		// It is the lab app's own search from there on: filtered.
		r := lab.get(next).want(t, 200)
		if len(r.entries()) == 0 {
			t.Error("the replayed cursor found nothing; want A's laboratory Observations")
		}
		for _, res := range r.entries() {
			if !isLab(res) || res["subject"].(map[string]any)["reference"] != "Patient/"+w.a {
				t.Errorf("the operator's cursor shows %s (%v) to the lab app", key(res), res["category"])
			}
		}
	})

	t.Run("backend service", func(t *testing.T) {
		s.sub(t)
		svc := s.program(smart.ClientService, "Nightly export", "system/Patient.rs")
		tok := s.credentials(svc, "system/*.cruds")
		if tok.status != 200 || tok.Scope != "system/Patient.rs" {
			t.Fatalf("client_credentials for system/*.cruds: %d scope %q, want only system/Patient.rs: %s", tok.status, tok.Scope, tok.body)
		}
		if tok.RefreshToken != "" {
			t.Error("a backend service got a refresh token")
		}
		me := &cred{s: s, token: tok.AccessToken, key: svc.dpop}
		if n := len(me.get("/Patient?_count=10").want(t, 200).entries()); n != 3 {
			t.Errorf("the service sees %d patients, want 3", n)
		}
		me.get("/Patient/"+w.b).want(t, 200)
		me.get("/Observation?_count=1").want(t, 403)
		me.get("/Observation/"+w.aObs).want(t, 403)
		me.send("POST", "/Patient", `{"resourceType":"Patient","name":[{"family":"Intruder"}]}`).want(t, 403)
		if r := me.get("/Patient?_id=" + w.a + "&_revinclude=Observation:subject"); r.status != 403 && slices.ContainsFunc(r.keys(), func(k string) bool { return strings.HasPrefix(k, "Observation/") }) {
			t.Errorf("_revinclude brought Observations to a service without an Observation scope")
		}
		if a := s.credentials(svc, "system/Observation.rs"); a.status != 400 || a.Err != "invalid_scope" {
			t.Errorf("a service asking only for scopes it lacks: %d %q, want 400 invalid_scope", a.status, a.Err)
		}
		// Forged assertions: alg none, and HS256 keyed with the public key.
		claims := fmt.Sprintf(`{"iss":%q,"sub":%q,"aud":%q,"jti":%q,"exp":%d}`, svc.client.ID, svc.client.ID, s.origin+smart.PathToken, randHex(16), s.now().Add(time.Minute).Unix())
		enc := base64.RawURLEncoding.EncodeToString
		none := enc([]byte(`{"alg":"none","typ":"JWT"}`)) + "." + enc([]byte(claims)) + "."
		pubJSON, _ := json.Marshal(jose.JSONWebKey{Key: &svc.key.PublicKey})
		hs, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.HS256, Key: pubJSON}, (&jose.SignerOptions{}).WithType("JWT").WithHeader("kid", "k1"))
		if err != nil {
			t.Fatal(err)
		}
		hsJWS, err := hs.Sign([]byte(claims))
		if err != nil {
			t.Fatal(err)
		}
		hs256, _ := hsJWS.CompactSerialize()
		for name, a := range map[string]string{"alg none": none, "HS256 with the public key": hs256} {
			r := s.tokenRequest(url.Values{"grant_type": {"client_credentials"}, "scope": {"system/Patient.rs"},
				"client_assertion_type": {"urn:ietf:params:oauth:client-assertion-type:jwt-bearer"}, "client_assertion": {a}}, svc.dpop)
			if r.status != 401 || r.Err != "invalid_client" || r.AccessToken != "" {
				t.Errorf("an assertion with %s: %d %q, want 401 invalid_client", name, r.status, r.Err)
			}
		}
		// A DPoP proof with alg none at the FHIR API.
		req := me.request("GET", "/Patient/"+w.a, "")
		proof := enc([]byte(`{"alg":"none","typ":"dpop+jwt"}`)) + "." + enc([]byte(fmt.Sprintf(`{"jti":%q,"htm":"GET","htu":%q,"iat":%d,"ath":%q}`, randHex(8), s.origin+"/fhir/Patient/"+w.a, s.now().Unix(), dpop.ATH(tok.AccessToken)))) + "."
		req.Header.Set("DPoP", proof)
		me.do(req).want(t, 401)
		other := s.program(smart.ClientService, "Other", "system/Patient.r")
		other.key = svc.key // signs with a key not registered for it
		if a := s.credentials(other, "system/Patient.r"); a.status != 401 || a.Err != "invalid_client" {
			t.Errorf("an assertion signed by another client's key: %d %q, want 401 invalid_client", a.status, a.Err)
		}
	})

	t.Run("medical device", func(t *testing.T) {
		s.sub(t)
		mon := s.program(smart.ClientDevice, "Ward 3 monitor", "system/Observation.c", w.a)
		tok := s.credentials(mon, "system/Observation.crs system/Patient.r")
		if tok.status != 200 || tok.Scope != "system/Observation.c" {
			t.Fatalf("device token: %d scope %q, want system/Observation.c: %s", tok.status, tok.Scope, tok.body)
		}
		if a := s.credentials(mon, "system/Observation.rs"); a.status != 400 || a.Err != "invalid_scope" {
			t.Errorf("a device asking for read scopes: %d %q, want invalid_scope", a.status, a.Err)
		}
		if _, err := s.v.clients.Add(context.Background(), smart.Client{Kind: smart.ClientDevice, Name: "Reader", Scopes: []string{"system/Observation.rs"}, JWKS: mon.client.JWKS, Patients: []string{w.a}}); err == nil {
			t.Error("a device client with a read scope was registered")
		}
		me := &cred{s: s, token: tok.AccessToken, key: mon.dpop}
		id := me.send("POST", "/Observation", obsBody(w.a, "")).want(t, 201).str("id")
		me.send("POST", "/Observation", obsBody(w.b, "")).want(t, 403)
		me.send("POST", "/Observation", `{"resourceType":"Observation","status":"final","code":{"text":"x"}}`).want(t, 403) // no patient
		me.send("POST", "/Patient", `{"resourceType":"Patient"}`).want(t, 403)
		for _, p := range []string{"/Observation/" + id, "/Observation?_count=1", "/Observation?patient=" + w.a, "/Patient/" + w.a, "/Patient/" + w.a + "/$everything", "/Observation/" + id + "/_history"} {
			me.get(p).want(t, 403)
		}
		me.send("PUT", "/Observation/"+id, strings.Replace(obsBody(w.a, ""), `{"resourceType":"Observation",`, `{"resourceType":"Observation","id":"`+id+`",`, 1)).want(t, 403)
		batch := `{"resourceType":"Bundle","type":"batch","entry":[{"request":{"method":"GET","url":"Observation/` + id + `"}}]}`
		if r := me.send("POST", "", batch); r.status == 200 && !strings.HasPrefix(r.str("entry.0.response.status"), "403") {
			t.Errorf("a device read through a batch: %s", r.str("entry.0.response.status"))
		}
	})
}

// TestIdentityAttacks plays the attacks of issue 4 against the served
// store, and checks what the audit log kept.
func TestIdentityAttacks(t *testing.T) {
	w := newWorld(t, "--trusted-proxy", "127.0.0.1/32")
	s := w.s
	ctx := context.Background()
	app := s.app("Chart viewer", "patient/*.rs")
	scope := "patient/*.rs launch/patient offline_access"

	t.Run("DPoP", func(t *testing.T) {
		s.sub(t)
		tok := s.authorize(w.browser, app, scope, w.a, w.key)
		me := &cred{s: s, token: tok.AccessToken, key: w.key}
		me.get("/Patient/"+w.a).want(t, 200)
		path := "/Patient/" + w.a
		check := func(what string, mod func(r *http.Request)) {
			t.Helper()
			req := me.request("GET", path, "")
			mod(req)
			r := me.do(req)
			if r.status != 401 || !strings.HasPrefix(r.header.Get("WWW-Authenticate"), "DPoP") {
				t.Errorf("%s: %d %q, want 401 with a DPoP challenge", what, r.status, r.header.Get("WWW-Authenticate"))
			}
			if strings.Contains(string(r.body), w.a) {
				t.Errorf("%s: the refusal shows the record", what)
			}
		}
		other := dpoptest.NewKey()
		target := s.origin + "/fhir" + path
		check("no proof", func(r *http.Request) { r.Header.Del("DPoP") })
		check("a proof by another key", func(r *http.Request) { r.Header.Set("DPoP", other.Proof("GET", target, tok.AccessToken, s.now())) })
		check("a proof for another URL", func(r *http.Request) {
			r.Header.Set("DPoP", w.key.Proof("GET", s.origin+"/fhir/Patient/"+w.b, tok.AccessToken, s.now()))
		})
		check("a proof for another method", func(r *http.Request) { r.Header.Set("DPoP", w.key.Proof("DELETE", target, tok.AccessToken, s.now())) })
		check("a proof for another token", func(r *http.Request) { r.Header.Set("DPoP", w.key.Proof("GET", target, "ehsa_other", s.now())) })
		check("a proof without ath", func(r *http.Request) { r.Header.Set("DPoP", w.key.Proof("GET", target, "", s.now())) })
		check("a proof from an hour ago", func(r *http.Request) {
			r.Header.Set("DPoP", w.key.Proof("GET", target, tok.AccessToken, s.now().Add(-time.Hour)))
		})
		check("the token as Bearer", func(r *http.Request) {
			r.Header.Set("Authorization", "Bearer "+tok.AccessToken)
			r.Header.Del("DPoP")
		})
		check("the token as Bearer with its proof", func(r *http.Request) { r.Header.Set("Authorization", "Bearer "+tok.AccessToken) })
		check("the refresh token as access token", func(r *http.Request) {
			r.Header.Set("Authorization", "DPoP "+tok.RefreshToken)
			r.Header.Set("DPoP", w.key.Proof("GET", target, tok.RefreshToken, s.now()))
		})
		req := me.request("GET", path, "")
		me.do(req).want(t, 200)
		replay := me.request("GET", path, "")
		replay.Header.Set("DPoP", req.Header.Get("DPoP"))
		if r := me.do(replay); r.status != 401 || !strings.Contains(r.header.Get("WWW-Authenticate"), "invalid_dpop_proof") {
			t.Errorf("a replayed proof: %d %q, want 401 invalid_dpop_proof", r.status, r.header.Get("WWW-Authenticate"))
		}
		// A token issued to another (enrolled) device's key is useless
		// with this one's, and the code exchange needs an enrolled key.
		stranger := dpoptest.NewKey()
		if a, _ := s.tryAuthorize(w.browser, app, scope, w.a, stranger); a == nil || a.status == 200 || a.AccessToken != "" {
			t.Errorf("a code exchanged with a key of no enrolled device: %+v", a)
		}
		me.get("/Patient/"+w.a).want(t, 200)
	})

	t.Run("revoked device", func(t *testing.T) {
		s.sub(t)
		key, dev := s.device("ws-2")
		tok := s.authorize(w.browser, app, scope, w.a, key)
		me := &cred{s: s, token: tok.AccessToken, key: key}
		me.get("/Patient/"+w.a).want(t, 200)
		if _, err := s.v.devices.Revoke(ctx, dev, "test"); err != nil {
			t.Fatal(err)
		}
		me.get("/Patient/"+w.a).want(t, 401)
		if a := s.tokenRequest(url.Values{"grant_type": {"refresh_token"}, "refresh_token": {tok.RefreshToken}, "client_id": {app.ID}}, key); a.status == 200 {
			t.Error("a revoked device refreshed its token")
		}
	})

	t.Run("refresh reuse", func(t *testing.T) {
		s.sub(t)
		tok := s.authorize(w.browser, app, scope, w.a, w.key)
		refresh := func(rt string) *tokenAnswer {
			return s.tokenRequest(url.Values{"grant_type": {"refresh_token"}, "refresh_token": {rt}, "client_id": {app.ID}}, w.key)
		}
		if a := s.tokenRequest(url.Values{"grant_type": {"refresh_token"}, "refresh_token": {tok.RefreshToken}, "client_id": {app.ID}}, dpoptest.NewKey()); a.status == 200 {
			t.Error("a refresh token was used with another key")
		}
		second := refresh(tok.RefreshToken)
		if second.status != 200 || second.RefreshToken == "" || second.RefreshToken == tok.RefreshToken {
			t.Fatalf("refresh: %d %s", second.status, second.body)
		}
		me2 := &cred{s: s, token: second.AccessToken, key: w.key}
		me2.get("/Patient/"+w.a).want(t, 200)
		if a := refresh(tok.RefreshToken); a.status != 400 || a.Err != "invalid_grant" {
			t.Errorf("the rotated refresh token again: %d %q, want 400 invalid_grant", a.status, a.Err)
		}
		me2.get("/Patient/"+w.a).want(t, 401)
		(&cred{s: s, token: tok.AccessToken, key: w.key}).get("/Patient/"+w.a).want(t, 401)
		if a := refresh(second.RefreshToken); a.status == 200 {
			t.Error("the family's newest refresh token still works after reuse was detected")
		}
	})

	t.Run("revocation", func(t *testing.T) {
		s.sub(t)
		tok := s.authorize(w.browser, app, scope, w.a, w.key)
		me := &cred{s: s, token: tok.AccessToken, key: w.key}
		me.get("/Patient/"+w.a).want(t, 200)
		other := s.app("Other app", "patient/*.rs")
		revoke := func(clientID, token string) *idResponse {
			req, _ := http.NewRequest("POST", s.origin+smart.PathRevoke, strings.NewReader(url.Values{"client_id": {clientID}, "token": {token}}.Encode()))
			req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
			return s.do(s.client(false), req)
		}
		revoke(other.ID, tok.AccessToken) // another client's token: ignored (RFC 7009 answers 200)
		me.get("/Patient/"+w.a).want(t, 200)
		revoke(app.ID, tok.AccessToken).want(t, 200)
		me.get("/Patient/"+w.a).want(t, 401)
		// Revoking the refresh token ends the family.
		second := s.tokenRequest(url.Values{"grant_type": {"refresh_token"}, "refresh_token": {tok.RefreshToken}, "client_id": {app.ID}}, w.key)
		if second.status != 200 {
			t.Fatalf("refresh: %d %s", second.status, second.body)
		}
		revoke(app.ID, second.RefreshToken).want(t, 200)
		(&cred{s: s, token: second.AccessToken, key: w.key}).get("/Patient/"+w.a).want(t, 401)
	})

	t.Run("PKCE", func(t *testing.T) {
		s.sub(t)
		base := url.Values{"response_type": {"code"}, "client_id": {app.ID}, "redirect_uri": {app.RedirectURIs[0]}, "scope": {scope},
			"state": {"s1"}, "aud": {s.origin + "/fhir"}}
		for name, extra := range map[string]url.Values{
			"missing":   {},
			"plain":     {"code_challenge": {strings.Repeat("a", 43)}, "code_challenge_method": {"plain"}},
			"no method": {"code_challenge": {strings.Repeat("a", 43)}},
		} {
			q := url.Values{}
			for k, v := range base {
				q[k] = v
			}
			for k, v := range extra {
				q[k] = v
			}
			r := s.page(w.browser, "GET", smart.PathAuthorize+"?"+q.Encode(), nil)
			if r.status != 303 || s.redirectQuery(r).Get("error") != "invalid_request" || s.redirectQuery(r).Get("code") != "" {
				t.Errorf("PKCE %s: %d %q, want a redirect with invalid_request", name, r.status, r.header.Get("Location"))
			}
		}
		// A code with the wrong verifier is refused.
		verifier := randHex(32)
		sum := sha256.Sum256([]byte(verifier))
		q := url.Values{}
		for k, v := range base {
			q[k] = v
		}
		q.Set("code_challenge", base64.RawURLEncoding.EncodeToString(sum[:]))
		q.Set("code_challenge_method", "S256")
		r := s.page(w.browser, "GET", smart.PathAuthorize+"?"+q.Encode(), nil).want(t, 200)
		form := url.Values{"decision": {"approve"}, "patient": {w.a}}
		for _, m := range hiddenRE.FindAllSubmatch(r.body, -1) {
			form.Set(html.UnescapeString(string(m[1])), html.UnescapeString(string(m[2])))
		}
		code := s.redirectQuery(s.page(w.browser, "POST", smart.PathAuthorize, form).want(t, 303)).Get("code")
		s.secrets.add("authorization code", code)
		exchange := func(v string) *tokenAnswer {
			return s.tokenRequest(url.Values{"grant_type": {"authorization_code"}, "code": {code}, "redirect_uri": {app.RedirectURIs[0]}, "code_verifier": {v}, "client_id": {app.ID}}, w.key)
		}
		if a := exchange(randHex(32)); a.status != 400 || a.Err != "invalid_grant" {
			t.Errorf("a wrong code_verifier: %d %q, want invalid_grant", a.status, a.Err)
		}
		// The code works once; a second use revokes what the first got.
		first := exchange(verifier)
		if first.status != 200 {
			t.Fatalf("the right verifier: %d %s", first.status, first.body)
		}
		me := &cred{s: s, token: first.AccessToken, key: w.key}
		me.get("/Patient/"+w.a).want(t, 200)
		if a := exchange(verifier); a.status != 400 || a.Err != "invalid_grant" {
			t.Errorf("a code used twice: %d %q, want invalid_grant", a.status, a.Err)
		}
		me.get("/Patient/"+w.a).want(t, 401)
	})

	t.Run("devices and clients", func(t *testing.T) {
		s.sub(t)
		// A device whose disk is not encrypted is not approved, and its
		// key gets no token.
		code, _, err := s.v.devices.NewCode(ctx, "laptop", devices.Workstation, "test")
		if err != nil {
			t.Fatal(err)
		}
		dk, err := devices.GenerateKey()
		if err != nil {
			t.Fatal(err)
		}
		proof, err := dk.Proof("enroll", code, &devices.Posture{OS: "windows", OSVersion: "11", DiskEncrypted: false}, time.Now())
		if err != nil {
			t.Fatal(err)
		}
		d, err := s.v.devices.Enroll(ctx, proof)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := s.v.devices.Approve(ctx, d.ID, "test"); err == nil {
			t.Error("a device without disk encryption was approved")
		}
		priv := dk.Signer().(*ecdsa.PrivateKey)
		if a, _ := s.tryAuthorize(w.browser, app, scope, w.a, &dpoptest.Key{Private: priv, JWK: dk.Public(), JKT: dk.JKT()}); a == nil || a.status == 200 {
			t.Errorf("a code exchanged with an unencrypted device's key: %+v", a)
		}
		// Removing a client ends its tokens within a second.
		gone := s.app("Gone app", "patient/*.rs")
		tok := s.authorize(w.browser, gone, scope, w.a, w.key)
		me := &cred{s: s, token: tok.AccessToken, key: w.key}
		me.get("/Patient/"+w.a).want(t, 200)
		if out, st := s.cli("client", "remove", "--data", s.dir, gone.ID); st != 0 {
			t.Fatalf("client remove: %d %s", st, out)
		}
		deadline := time.Now().Add(3 * time.Second)
		for me.get("/Patient/"+w.a).status != 401 {
			if time.Now().After(deadline) {
				t.Fatal("a removed client's token still works after 3 s")
			}
			time.Sleep(100 * time.Millisecond)
		}
	})

	t.Run("pages", func(t *testing.T) {
		s.sub(t)
		// A login form without its CSRF field is refused before the
		// password is looked at.
		b := s.client(true)
		s.page(b, "GET", "/auth/login", nil).want(t, 200)
		s.page(b, "POST", "/auth/login", url.Values{"username": {w.clinician.name}, "password": {w.clinician.password}}).want(t, 403)
		// A clinician's session is no admin's.
		for _, p := range []string{"/admin/users", "/admin/devices"} {
			if r := s.page(w.browser, "GET", p, nil); r.status != 403 && r.status != 401 {
				t.Errorf("GET %s with a clinician's session: %d, want 403", p, r.status)
			}
		}
		// A SMART token is no credential for the admin API.
		tok := s.authorize(w.browser, app, scope, w.a, w.key)
		req, _ := http.NewRequest("GET", s.origin+"/admin/users", nil)
		req.Header.Set("Authorization", "DPoP "+tok.AccessToken)
		req.Header.Set("DPoP", w.key.Proof("GET", s.origin+"/admin/users", tok.AccessToken, s.now()))
		if r := s.do(s.client(false), req); r.status != 401 && r.status != 403 {
			t.Errorf("the admin API with a SMART token: %d", r.status)
		}
		// The operator's token is.
		req, _ = http.NewRequest("GET", s.origin+"/admin/users", nil)
		req.Header.Set("Authorization", "Bearer "+s.op)
		s.do(s.client(false), req).want(t, 200)
	})

	t.Run("users", func(t *testing.T) {
		s.sub(t)
		for _, end := range []struct {
			name string
			kill func(p *person) error
		}{
			{"disabled", func(p *person) error {
				// by the operator, in another process, beside the server
				if out, st := s.cli("user", "disable", "--data", s.dir, p.name); st != 0 {
					return fmt.Errorf("user disable: %d %s", st, out)
				}
				return nil
			}},
			{"password changed", func(p *person) error { return s.v.users.SetPassword(ctx, p.id, "a brand new long passphrase "+p.name) }},
			{"mfa reset", func(p *person) error { _, err := s.v.users.ResetMFA(ctx, p.id); return err }},
		} {
			p := s.enroll("u-"+strings.ReplaceAll(end.name, " ", "-"), "nurse")
			b := s.login(p, "otp", "")
			tok := s.authorize(b, app, scope, w.a, w.key)
			me := &cred{s: s, token: tok.AccessToken, key: w.key}
			me.get("/Patient/"+w.a).want(t, 200)
			s.page(b, "GET", "/auth/", nil).want(t, 200)
			if err := end.kill(p); err != nil {
				t.Fatal(err)
			}
			if r := me.get("/Patient/" + w.a); r.status != 401 {
				t.Errorf("%s: the live token answers %d, want 401", end.name, r.status)
			}
			if r := s.page(b, "GET", "/auth/", nil); r.status != 303 || !strings.HasPrefix(r.header.Get("Location"), "/auth/login") {
				t.Errorf("%s: the browser session answers %d %q, want a redirect to the login page", end.name, r.status, r.header.Get("Location"))
			}
			if a := s.tokenRequest(url.Values{"grant_type": {"refresh_token"}, "refresh_token": {tok.RefreshToken}, "client_id": {app.ID}}, w.key); a.status == 200 {
				t.Errorf("%s: the refresh token still works", end.name)
			}
		}
	})

	t.Run("totp replay", func(t *testing.T) {
		s.sub(t)
		p := s.enroll("rita", "clinician")
		code := totpCode(t, p.totpSecret, time.Now().Add(30*time.Second))
		s.login(p, "otp", code)
		b := s.client(true)
		csrf := s.csrf(s.page(b, "GET", "/auth/login", nil).want(t, 200))
		s.page(b, "POST", "/auth/login", url.Values{"csrf": {csrf}, "username": {p.name}, "password": {p.password}}).want(t, 200)
		s.page(b, "POST", "/auth/login/factor", url.Values{"csrf": {csrf}, "method": {"otp"}, "code": {code}}).want(t, 401)
		s.page(b, "GET", "/auth/", nil).want(t, 303)
		// A recovery code works once too.
		s.login(p, "recovery", p.recovery[0])
		b = s.client(true)
		csrf = s.csrf(s.page(b, "GET", "/auth/login", nil).want(t, 200))
		s.page(b, "POST", "/auth/login", url.Values{"csrf": {csrf}, "username": {p.name}, "password": {p.password}}).want(t, 200)
		s.page(b, "POST", "/auth/login/factor", url.Values{"csrf": {csrf}, "method": {"recovery"}, "code": {p.recovery[0]}}).want(t, 401)
	})

	t.Run("brute force", func(t *testing.T) {
		s.sub(t)
		victim := s.enroll("dr-house", "clinician")
		bystander := s.enroll("dr-wilson", "clinician")
		b := s.client(true)
		csrf := s.csrf(s.page(b, "GET", "/auth/login", nil).want(t, 200))
		try := func(p *person, password, from string) *idResponse {
			return s.page(b, "POST", "/auth/login", url.Values{"csrf": {csrf}, "username": {p.name}, "password": {password}}, "X-Forwarded-For", from)
		}
		for i := range 3 {
			try(victim, "wrong password number "+strconv.Itoa(i), "10.1.1.1").want(t, 401)
		}
		r := try(victim, "wrong password number 3", "10.1.1.1").want(t, 429)
		first, _ := strconv.Atoi(r.header.Get("Retry-After"))
		if first < 1 {
			t.Fatalf("Retry-After %q", r.header.Get("Retry-After"))
		}
		// Another address, the same account: still throttled, even with
		// the right password; another account from there is not.
		try(victim, victim.password, "10.2.2.2").want(t, 429)
		try(bystander, bystander.password, "10.2.2.2").want(t, 200)
		time.Sleep(time.Duration(first)*time.Second + 100*time.Millisecond)
		try(victim, "wrong password number 4", "10.3.3.3").want(t, 401)
		r = try(victim, "wrong password number 5", "10.4.4.4").want(t, 429)
		if second, _ := strconv.Atoi(r.header.Get("Retry-After")); second <= first {
			t.Errorf("Retry-After %d after a further failure, want more than %d", second, first)
		}
	})

	t.Run("scope escalation", func(t *testing.T) {
		s.sub(t)
		narrow := s.app("Narrow", "patient/Observation.rs")
		if _, q := s.tryAuthorize(w.browser, narrow, "user/*.cruds", w.a, w.key); q.Get("error") != "invalid_scope" {
			t.Errorf("asking only for more than allowed: %v, want invalid_scope", q)
		}
		tok := s.authorize(w.browser, narrow, "patient/*.cruds user/Patient.r system/*.cruds", w.a, w.key)
		if tok.Scope != "patient/Observation.rs" {
			t.Errorf("granted %q, want patient/Observation.rs", tok.Scope)
		}
		me := &cred{s: s, token: tok.AccessToken, key: w.key}
		me.get("/Observation/"+w.aObs).want(t, 200)
		me.get("/Patient/"+w.a).want(t, 403)
		me.get("/Encounter?_count=1").want(t, 403)
		me.send("POST", "/Observation", obsBody(w.a, "")).want(t, 403)
		me.send("DELETE", "/Observation/"+w.aObs, "").want(t, 403)
		me.get("/Observation?_include=Observation:subject").want(t, 200)
		if r := me.get("/Observation?_include=Observation:subject&_count=200"); slices.ContainsFunc(r.keys(), func(k string) bool { return strings.HasPrefix(k, "Patient/") }) {
			t.Error("_include brought Patients to a token without a Patient scope")
		}
		me.get("/_history?_count=1").want(t, 403)
		me.get("/Patient/"+w.a+"/$everything").want(t, 403)
	})

	t.Run("chains and _has reach only permitted types", func(t *testing.T) {
		s.sub(t)
		narrow := s.app("Obs only", "patient/Observation.rs")
		me := &cred{s: s, token: s.authorize(w.browser, narrow, "patient/Observation.rs", w.a, w.key).AccessToken, key: w.key}
		// A chain into Patient, which the token may not search.
		me.get("/Observation?subject:Patient.name=a").want(t, 403)
		// A chain that does not name its target could reach any type.
		me.get("/Observation?subject.name=a").want(t, 403)
		// _has searches its source type.
		me.get("/Observation?_has:Provenance:target:agent=Practitioner/x").want(t, 403)
		me.send("POST", "/Observation/_search", "subject:Patient.name=a", "Content-Type", "application/x-www-form-urlencoded").want(t, 403)
		// With Patient permitted, the chain runs (inside the compartment).
		wide := s.app("Chart", "patient/*.rs")
		me = &cred{s: s, token: s.authorize(w.browser, wide, "patient/*.rs", w.a, w.key).AccessToken, key: w.key}
		me.get("/Observation?subject:Patient._id="+w.a+"&_count=1").want(t, 200)
		me.get("/Observation?subject:Patient._id="+w.b+"&_summary=count").want(t, 200)
		if r := me.get("/Observation?subject:Patient._id=" + w.b + "&_summary=count"); r.json["total"] != 0.0 {
			t.Errorf("a chain to B's Patient counts %v Observations, want 0", r.json["total"])
		}
	})

	t.Run("audit", func(t *testing.T) {
		s.sub(t)
		found, err := s.v.audit.Find(ctx, audit.Filter{Limit: 1000000})
		if err != nil {
			t.Fatal(err)
		}
		count := map[string]int{}
		var leaves []byte
		for _, f := range found {
			count[f.Entry.Action+"/"+f.Entry.Outcome]++
			leaves = append(leaves, f.Leaf...)
		}
		for _, want := range []string{smart.ActionTokenIssue + "/success", smart.ActionTokenRefresh + "/success", smart.ActionTokenRevoke + "/denied",
			smart.ActionAuthFailure + "/denied", users.ActionLogin + "/failure", users.ActionSecondStep + "/failure", users.ActionLogin + "/denied", users.ActionDisable + "/success"} {
			if count[want] == 0 {
				t.Errorf("no %s in the audit log; have %v", want, count)
			}
		}
		from := map[string]bool{}
		for _, f := range found {
			if f.Entry.Action == users.ActionLogin && f.Entry.Outcome != "success" {
				from[f.Entry.Source] = true
			}
		}
		if !from["10.1.1.1"] || !from["10.2.2.2"] {
			t.Errorf("login failures recorded from %v, want the forwarded addresses 10.1.1.1 and 10.2.2.2", from)
		}
		raw, err := os.ReadFile(filepath.Join(s.dir, auditFileName))
		if err != nil {
			t.Fatal(err)
		}
		logs := s.logs.Bytes()
		s.secrets.mu.Lock()
		defer s.secrets.mu.Unlock()
		if len(s.secrets.vals) < 20 {
			t.Fatalf("only %d secrets collected", len(s.secrets.vals))
		}
		for v, what := range s.secrets.vals {
			for name, b := range map[string][]byte{"audit entries": leaves, "audit file": raw, "logs": logs} {
				if strings.Contains(string(b), v) {
					t.Errorf("the %s hold a %s", name, what)
				}
			}
		}
	})
}
