package smart

import (
	"crypto/hmac"
	"encoding/base64"
	"errors"
	"html/template"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strings"

	"github.com/ehrvault/ehrvault/internal/auth"
)

// authzParams are the parameters of an authorization request that the
// consent form carries back.
var authzParams = []string{"response_type", "client_id", "redirect_uri", "scope", "state", "aud",
	"code_challenge", "code_challenge_method", "dpop_jkt", "nonce"}

// authzRequest is a checked authorization request.
type authzRequest struct {
	params  url.Values // authzParams only
	client  *Client
	granted Scopes
}

// serveAuthorize is the authorization endpoint (RFC 6749 section 4.1.1,
// SMART App Launch v2 "standalone launch", RFC 7636). GET and POST both
// start a request; a POST with a decision answers the consent page.
func (s *Server) serveAuthorize(w http.ResponseWriter, r *http.Request) {
	setPageHeaders(w)
	if err := r.ParseForm(); err != nil {
		s.page(w, http.StatusBadRequest, errorPage{Message: "The request could not be read."})
		return
	}
	form := r.Form
	if r.Method == http.MethodPost {
		form = r.PostForm
	}
	for _, k := range authzParams {
		if len(form[k]) > 1 {
			s.page(w, http.StatusBadRequest, errorPage{Message: "The parameter " + k + " is given twice."})
			return
		}
	}
	// Until client and redirect URI are known good, errors stay here:
	// never redirect a browser to an unregistered address.
	c, err := s.clients.Get(r.Context(), form.Get("client_id"))
	if errors.Is(err, ErrNoClient) {
		s.page(w, http.StatusBadRequest, errorPage{Message: "Unknown application (client_id)."})
		return
	} else if err != nil {
		s.log.Error("smart: authorize: client", "err", err)
		s.page(w, http.StatusInternalServerError, errorPage{Message: "Internal error."})
		return
	}
	redirect := form.Get("redirect_uri")
	if c.Kind != ClientApp || !slices.Contains(c.RedirectURIs, redirect) {
		s.page(w, http.StatusBadRequest, errorPage{Message: "The redirect_uri is not one registered for this application."})
		return
	}
	state := form.Get("state")
	fail := func(code, desc string) {
		s.record(r.Context(), r, Event{Action: ActionAuthorize, Outcome: OutcomeFailure, Client: c.ID, Reason: code + ": " + desc})
		s.redirect(w, r, redirect, url.Values{"error": {code}, "error_description": {desc}, "state": {state}})
	}
	switch {
	case form.Get("response_type") != "code":
		fail("unsupported_response_type", "response_type must be code")
		return
	case state == "":
		fail("invalid_request", "state is required")
		return
	case form.Get("code_challenge") == "" || form.Get("code_challenge_method") != "S256":
		fail("invalid_request", "PKCE is required: code_challenge with code_challenge_method S256 (plain is refused)")
		return
	case len(form.Get("code_challenge")) != 43:
		fail("invalid_request", "code_challenge must be the base64url SHA-256 of the code_verifier (43 characters)")
		return
	case strings.TrimSuffix(form.Get("aud"), "/") != s.cfg.FHIRBase:
		fail("invalid_request", "aud must be this server's FHIR base URL "+s.cfg.FHIRBase)
		return
	case len(form.Get("nonce")) > MaxNonce:
		fail("invalid_request", "nonce is longer than 256 characters")
		return
	case len(c.JWKS) > 0:
		// Confidential apps are welcome at the token endpoint; the
		// authorization endpoint is the same for them.
	}
	asked, err := ParseScopes(form.Get("scope"))
	if err != nil {
		fail("invalid_scope", err.Error())
		return
	}
	granted := Grant(asked, c.Allowed())
	if !granted.HasResource() {
		fail("invalid_scope", "none of the requested scopes is allowed for this application")
		return
	}
	req := &authzRequest{params: url.Values{}, client: c, granted: granted}
	for _, k := range authzParams {
		if v := form.Get(k); v != "" {
			req.params.Set(k, v)
		}
	}

	p, err := s.cfg.Sessions.Session(r)
	if err != nil {
		if !errors.Is(err, auth.ErrUnauthenticated) {
			s.log.Error("smart: authorize: session", "err", err)
			s.page(w, http.StatusInternalServerError, errorPage{Message: "Internal error."})
			return
		}
		http.Redirect(w, r, s.cfg.Sessions.LoginURL(PathAuthorize+"?"+req.params.Encode()), http.StatusSeeOther)
		return
	}
	decision := ""
	if r.Method == http.MethodPost {
		decision = r.PostForm.Get("decision")
	}
	if decision == "" {
		s.consent(w, r, req, p, "")
		return
	}
	if !hmac.Equal([]byte(r.PostForm.Get("csrf")), []byte(s.csrf(p.Session))) {
		s.record(r.Context(), r, Event{Action: ActionAuthorize, Outcome: OutcomeDenied, Client: c.ID, Principal: p.User, Session: p.Session, Reason: "consent: CSRF token missing or wrong"})
		s.page(w, http.StatusForbidden, errorPage{Message: "This form has expired or did not come from this server. Go back and start again."})
		return
	}
	if decision != "approve" {
		s.record(r.Context(), r, Event{Action: ActionAuthorize, Outcome: OutcomeDenied, Client: c.ID, Principal: p.User, Session: p.Session, Reason: "access_denied: the user refused"})
		s.redirect(w, r, redirect, url.Values{"error": {"access_denied"}, "error_description": {"the user refused"}, "state": {state}})
		return
	}
	patient := ""
	if granted.HasContext(ContextPatient) {
		if p.Role == auth.RolePatient {
			// A patient is their own patient in context, and picks no one
			// else.
			if p.Patient == "" {
				s.consent(w, r, req, p, "Your account is not linked to a patient record; ask the clinic to link it.")
				return
			}
			patient = p.Patient
		} else {
			patient = strings.TrimSpace(r.PostForm.Get("patient"))
			if !fhirID.MatchString(patient) {
				s.consent(w, r, req, p, "Enter the id of the patient the application may see.")
				return
			}
			if s.cfg.PatientExists != nil {
				if err := s.cfg.PatientExists(r.Context(), patient); err != nil {
					s.consent(w, r, req, p, "There is no patient with that id.")
					return
				}
			}
		}
	}
	code := secret(codePrefix)
	now := s.now()
	rec := codeRecord{
		grant: grant{Family: newID("fam_"), Client: c.ID, Kind: auth.KindUser, User: p.User, Role: p.Role, Session: p.Session,
			Patient: patient, Scopes: granted.Strings(), Factors: p.Factors},
		Redirect: redirect, Challenge: req.params.Get("code_challenge"), DPoPJKT: req.params.Get("dpop_jkt"),
		Nonce: req.params.Get("nonce"), Until: now.Add(CodeTTL),
	}
	if p.Role == auth.RolePatient {
		rec.LinkedPatient = p.Patient
	}
	if err := s.create(r.Context(), kindCode, newID("code_"), s.lookup(kindCode, code), rec.Family, &rec, now.Add(CodeTTL+s.cfg.RefreshTTL)); err != nil {
		s.log.Error("smart: authorize: store code", "err", err)
		s.redirect(w, r, redirect, url.Values{"error": {"server_error"}, "state": {state}})
		return
	}
	if err := s.record(r.Context(), r, Event{Action: ActionAuthorize, Outcome: OutcomeSuccess, Client: c.ID, Principal: p.User, Session: p.Session, Token: rec.Family}); err != nil {
		s.redirect(w, r, redirect, url.Values{"error": {"server_error"}, "state": {state}})
		return
	}
	s.redirect(w, r, redirect, url.Values{"code": {code}, "state": {state}})
}

// redirect sends the browser back to the app with params and iss (RFC
// 9207), keeping any query the registered URI has.
func (s *Server) redirect(w http.ResponseWriter, r *http.Request, to string, params url.Values) {
	u, _ := url.Parse(to) // registered, hence parseable
	q := u.Query()
	for k, vs := range params {
		if len(vs) == 1 && vs[0] != "" {
			q.Set(k, vs[0])
		}
	}
	q.Set("iss", s.cfg.Issuer)
	u.RawQuery = q.Encode()
	http.Redirect(w, r, u.String(), http.StatusSeeOther)
}

// csrf is the consent form's token: a MAC of the session id, so that only
// a page this server showed to this session can answer.
func (s *Server) csrf(session string) string {
	sum := s.cfg.MAC.Sum([]byte("smart.csrf\x00" + session))
	return base64.RawURLEncoding.EncodeToString(sum[:])
}

func setPageHeaders(w http.ResponseWriter) {
	h := w.Header()
	h.Set("Cache-Control", "no-store")
	h.Set("X-Frame-Options", "DENY")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'")
}

// cspHost is what a CSP host-source can name: DNS names and IPv4
// addresses, with a port.
var cspHost = regexp.MustCompile(`^[A-Za-z0-9.-]+(:[0-9]{1,5})?$`)

// formAction is the consent form's CSP form-action: this server, which
// the form posts to, and the app's redirect URI, which the answer
// redirects to. Browsers check a redirect after a form post against
// form-action too, so 'self' alone stops every answer on its way back to
// the app. redirect is registered (validRedirect), hence parseable; a
// host CSP cannot name (an IPv6 literal) falls back to its scheme.
func formAction(redirect string) string {
	u, err := url.Parse(redirect)
	if err != nil {
		return "'self'"
	}
	if (u.Scheme == "https" || u.Scheme == "http") && cspHost.MatchString(u.Host) {
		return "'self' " + u.Scheme + "://" + u.Host
	}
	return "'self' " + u.Scheme + ":"
}

type consentPage struct {
	App       string
	Scopes    []string
	NeedsPick bool   // the user picks the patient
	Self      bool   // the user is the patient
	Error     string // why the last answer was not accepted
	Hidden    []hiddenField
	CSRF      string
	Action    string
}

type hiddenField struct{ Name, Value string }

type errorPage struct{ Message string }

func (s *Server) consent(w http.ResponseWriter, r *http.Request, req *authzRequest, p *auth.Principal, problem string) {
	pg := consentPage{App: req.client.Name, Error: problem, CSRF: s.csrf(p.Session), Action: PathAuthorize}
	for _, sc := range req.granted {
		pg.Scopes = append(pg.Scopes, describe(sc))
	}
	if req.granted.HasContext(ContextPatient) {
		pg.Self = p.Role == auth.RolePatient
		pg.NeedsPick = !pg.Self
	}
	for _, k := range authzParams {
		if v := req.params.Get(k); v != "" {
			pg.Hidden = append(pg.Hidden, hiddenField{k, v})
		}
	}
	status := http.StatusOK
	if problem != "" {
		status = http.StatusBadRequest
	}
	w.Header().Set("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'; form-action "+formAction(req.params.Get("redirect_uri"))+"; frame-ancestors 'none'")
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(status)
	if err := consentTmpl.Execute(w, pg); err != nil {
		s.log.Error("smart: consent page", "err", err)
	}
}

func (s *Server) page(w http.ResponseWriter, status int, pg errorPage) {
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(status)
	errorTmpl.Execute(w, pg)
}

var verbs = map[byte]string{'c': "create", 'r': "read", 'u': "update", 'd': "delete", 's': "search"}

// describe says a scope in plain words.
func describe(sc Scope) string {
	if !sc.IsResource() {
		switch sc.Name {
		case ScopeLaunchPatient:
			return "Know which patient record is open"
		case ScopeOffline:
			return "Keep access while you stay signed in, without asking again"
		case ScopeOnline:
			return "Keep access while you are signed in"
		case ScopeOpenID:
			return "Know who you are: your user id on this server"
		case ScopeFHIRUser:
			return "Know which patient record is yours, if you are a patient"
		}
		return sc.Name
	}
	var vs []string
	for i := 0; i < len(sc.Perms); i++ {
		vs = append(vs, verbs[sc.Perms[i]])
	}
	what := sc.Type + " records"
	if sc.Type == "*" {
		what = "all kinds of records"
	}
	whose := map[string]string{ContextPatient: "of the selected patient", ContextUser: "that you can see", ContextSystem: "on the whole server"}[sc.Context]
	out := strings.ToUpper(vs[0][:1]) + vs[0][1:]
	if len(vs) > 1 {
		out += ", " + strings.Join(vs[1:len(vs)-1], ", ")
		out = strings.TrimSuffix(out, ", ") + " and " + vs[len(vs)-1]
	}
	out += " " + what + " " + whose
	if len(sc.Query) > 0 {
		out += " (only those with " + sc.Query.Encode() + ")"
	}
	return out
}

var consentTmpl = template.Must(template.New("consent").Parse(`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Allow {{.App}}?</title>
<style>body{font-family:sans-serif;max-width:40em;margin:2em auto}li{margin:.3em 0}.err{color:#a00}</style></head>
<body><h1 id="title">Allow <span id="app">{{.App}}</span> to use your access?</h1>
{{if .Error}}<p class="err" id="error">{{.Error}}</p>{{end}}
<p>The application asks to:</p>
<ul id="scopes">{{range .Scopes}}<li>{{.}}</li>{{end}}</ul>
<form method="post" action="{{.Action}}">
{{range .Hidden}}<input type="hidden" name="{{.Name}}" value="{{.Value}}">
{{end}}<input type="hidden" name="csrf" value="{{.CSRF}}">
{{if .NeedsPick}}<p><label for="patient">Patient id</label> <input id="patient" name="patient" autocomplete="off" required></p>{{end}}
{{if .Self}}<p id="self">Only your own record will be shared.</p>{{end}}
<button id="approve" type="submit" name="decision" value="approve">Allow</button>
<button id="deny" type="submit" name="decision" value="deny" formnovalidate>Deny</button>
</form></body></html>
`))

var errorTmpl = template.Must(template.New("error").Parse(`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Authorization error</title></head>
<body><h1>Authorization error</h1><p id="error">{{.Message}}</p></body></html>
`))
