package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"time"

	facc "github.com/ehrvault/ehrvault/internal/access"
	"github.com/ehrvault/ehrvault/internal/api"
	"github.com/ehrvault/ehrvault/internal/audit"
	"github.com/ehrvault/ehrvault/internal/auth"
	"github.com/ehrvault/ehrvault/internal/auth/devices"
	"github.com/ehrvault/ehrvault/internal/auth/smart"
	"github.com/ehrvault/ehrvault/internal/auth/users"
	"github.com/ehrvault/ehrvault/internal/edge"
)

// identity is what serve builds for people, apps and devices: the users
// service behind the login pages, the SMART authorization server and the
// device registry's endpoints, and the checks every FHIR request passes.
type identity struct {
	users   *users.Service
	smart   *smart.Server
	devices http.Handler
	limiter *edge.Limiter
	allow   *edge.Allowlist
	proxies edge.Proxies
	tokens  *auth.Tokens
}

// newIdentity builds the identity layer of a server whose public origin is
// origin ("https://ehr.example:8443"): the issuer of its tokens, the
// relying party of its passkeys.
func newIdentity(ctx context.Context, v *vault, sf *serveFlags, origin string, log *slog.Logger) (*identity, error) {
	id := &identity{tokens: v.tokens}
	var err error
	if id.proxies, err = edge.ParseProxies(sf.trustedProxies); err != nil {
		return nil, usagef("--trusted-proxy: %v", err)
	}
	if id.allow, err = edge.ParseAllowlist(sf.allow); err != nil {
		return nil, usagef("--allow: %v", err)
	}
	id.limiter = edge.NewLimiter(edge.LimiterConfig{
		Address:   edge.Rate{PerSecond: sf.ratePerAddress, Burst: int(sf.ratePerAddress*2) + 1},
		Principal: edge.Rate{PerSecond: sf.ratePerPrincipal, Burst: int(sf.ratePerPrincipal*2) + 1},
		Proxies:   id.proxies,
	})
	source := func(r *http.Request) string { return id.proxies.Source(r).String() }
	id.users, err = v.newUsers(users.Config{
		Recorder:        auditRecorder(v.audit),
		BaseURL:         origin,
		Log:             log,
		IdleTimeout:     sf.idleTimeout,
		AbsoluteTimeout: sf.absoluteTimeout,
		SourceAddr:      source,
		Now:             sf.now,
	})
	if err != nil {
		return nil, fmt.Errorf("users: %w", err)
	}
	if sf.allowUnencrypted {
		v.devices = devices.New(v.db, v.authSeal, v.authMAC, devices.RequireDiskEncryption(false))
	}
	scheme := "https"
	if strings.HasPrefix(origin, "http://") {
		scheme = "http"
	}
	id.smart, err = smart.New(smart.Config{
		Issuer:   origin,
		FHIRBase: origin + api.Base,
		Store:    v.db,
		Sealer:   v.authSeal,
		MAC:      v.authMAC,
		Sessions: id.users,
		Devices:  v.devices,
		Recorder: v.smartRecorder(),
		Operator: func(r *http.Request) bool {
			p, err := v.tokens.AuthenticateRequest(r)
			return err == nil && p != nil
		},
		PatientExists: func(ctx context.Context, pid string) error {
			_, err := v.records.Read(ctx, "Patient", pid, nil)
			return err
		},
		// DPoP proofs name the URL the client used; the Host it sent is
		// that URL's (a proof made for another server names another).
		RequestURL: func(r *http.Request) string { return scheme + "://" + r.Host + r.URL.EscapedPath() },
		AccessTTL:  sf.accessTTL,
		Now:        sf.now,
		Log:        log,
	})
	if err != nil {
		return nil, fmt.Errorf("smart: %w", err)
	}
	id.devices = devices.NewHandler(devices.HandlerConfig{
		Registry: v.devices,
		Admin:    id.admin,
		Recorder: v.deviceRecorder(),
		Log:      log,
		Source:   source,
	})
	return id, nil
}

// authMaxBody bounds the bodies of the login, OAuth, device and admin
// endpoints: forms, JWTs and small JSON documents.
const authMaxBody = 64 << 10

// mount adds the identity endpoints beside the API.
func (id *identity) mount(mux *http.ServeMux) {
	handle := func(pattern string, h http.Handler) { mux.Handle(pattern, edge.MaxBody(authMaxBody, h)) }
	handle("/auth/", id.users.Handler())
	for _, p := range []string{smart.PathConfiguration, smart.PathAuthorize, smart.PathToken, smart.PathIntrospect, smart.PathRevoke,
		smart.PathJWKS, smart.PathOpenIDConfiguration} {
		handle(p, id.smart.Handler())
	}
	handle("/auth/devices/", id.devices)
	handle("/admin/devices", id.devices)
	handle("/admin/devices/", id.devices)
	admin := id.users.AdminHandler(id.admin)
	handle("/admin/users", admin)
	handle("/admin/users/", admin)
}

// admin returns the principal of an administrative request: an operator
// token, or a person's browser session (the handlers check the role and
// the second factor).
func (id *identity) admin(r *http.Request) (*auth.Principal, error) {
	if _, ok := auth.BearerToken(r); ok {
		return id.tokens.AuthenticateRequest(r)
	}
	return id.users.Session(r)
}

// AuthenticateRequest implements api.Authenticator: SMART access tokens
// with their DPoP proofs, and operator bearer tokens for scripts.
func (id *identity) AuthenticateRequest(r *http.Request) (*auth.Principal, error) {
	if smart.Handles(r) {
		return id.smart.Authenticate(r)
	}
	return id.tokens.AuthenticateRequest(r)
}

// gate is api.Config.Gate: the allowlists and the rate per principal.
func (id *identity) gate(r *http.Request, p *auth.Principal) error {
	if !id.allow.Allowed(p, id.proxies.Source(r).String()) {
		return &api.Refusal{Status: http.StatusForbidden, Msg: "this principal may not connect from this network address"}
	}
	if wait, ok := id.limiter.AllowPrincipal(p.ID); !ok {
		return &api.Refusal{Status: http.StatusTooManyRequests, Msg: "too many requests for this principal; slow down", RetryAfter: wait}
	}
	return nil
}

// Permit implements api.Grants over SMART scopes. patient/ scopes hold in
// the compartment of the token's patient, with the records that belong to
// no patient (practitioners, organizations, medications); user/ scopes
// see what the user may see (everything, until the access issue);
// system/ scopes are a program's. A medical device writes only for its
// assigned patients and reads nothing.
func (id *identity) Permit(ctx context.Context, p *auth.Principal, typ string, interaction byte) (api.Permission, bool) {
	sc := smart.ScopesOf(p)
	if p.Patient != "" && p.Kind != auth.KindDevice {
		if f, ok := sc.Constraints(smart.ContextPatient, typ, interaction); ok {
			own := &facc.Restriction{Patients: []string{p.Patient}, Shared: true}
			writes := &facc.Restriction{Patients: []string{p.Patient}}
			return api.Permission{Restrict: own, Writes: writes, Filters: f}, true
		}
	}
	if p.Role == auth.RolePatient {
		// A patient sees their own record only, whatever the scopes'
		// context says (until the access issue's consent rules).
		return api.Permission{}, false
	}
	ctxName := smart.ContextUser
	if p.Kind == auth.KindService || p.Kind == auth.KindDevice {
		ctxName = smart.ContextSystem
	}
	f, ok := sc.Constraints(ctxName, typ, interaction)
	if !ok {
		return api.Permission{}, false
	}
	perm := api.Permission{Filters: f}
	if p.Kind == auth.KindDevice {
		if interaction != 'c' && interaction != 'u' {
			return api.Permission{}, false
		}
		pats, err := id.smart.AssignedPatients(ctx, p)
		if err != nil || len(pats) == 0 {
			return api.Permission{}, false
		}
		perm.Writes = &facc.Restriction{Patients: pats}
		perm.Restrict = &facc.Restriction{Patients: pats}
	}
	return perm, true
}

// smartRecorder records the authorization server's events in the audit
// log: codes and tokens issued, refreshed, revoked, and refusals.
func (v *vault) smartRecorder() smart.Recorder {
	return smart.RecorderFunc(func(ctx context.Context, e smart.Event) error {
		ae := &audit.Entry{Action: e.Action, Outcome: e.Outcome, Principal: audit.Principal{Kind: "anonymous"}, Session: e.Session, Source: e.Source}
		if e.Principal != "" {
			ae.Principal = audit.Principal{Kind: "smart", ID: e.Principal}
		}
		for _, d := range []audit.Param{{Name: "client", Value: e.Client}, {Name: "device", Value: e.Device}, {Name: "token", Value: e.Token}, {Name: "reason", Value: e.Reason}} {
			if d.Value != "" {
				ae.Detail = append(ae.Detail, d)
			}
		}
		_, err := v.audit.Append(ctx, ae)
		return err
	})
}

// purgeAuthObjects deletes expired sessions, codes and tokens now and then
// until ctx ends.
func purgeAuthObjects(ctx context.Context, v *vault, log *slog.Logger) {
	t := time.NewTicker(10 * time.Minute)
	defer t.Stop()
	for {
		if n, err := v.db.PurgeAuthObjects(ctx, time.Now()); err != nil && !errors.Is(err, context.Canceled) {
			log.Warn("purging expired identity records failed", "err", err)
		} else if n > 0 {
			log.Info("purged expired identity records", "count", n)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// publicOrigin is the origin clients reach the server at: --base-url's,
// or the listening address (loopback addresses as localhost, which
// passkeys need).
func publicOrigin(sf *serveFlags, scheme, addr string) (string, error) {
	if sf.baseURL != "" {
		u, err := url.Parse(sf.baseURL)
		if err != nil || u.Scheme == "" || u.Host == "" {
			return "", usagef("--base-url must be an absolute URL such as https://ehr.example.org/fhir")
		}
		return u.Scheme + "://" + u.Host, nil
	}
	host, port, _ := strings.Cut(addr, ":")
	if i := strings.LastIndex(addr, ":"); i >= 0 {
		host, port = strings.Trim(addr[:i], "[]"), addr[i+1:]
	}
	if edge.IsLoopback(host) {
		host = "localhost"
	} else if strings.Contains(host, ":") {
		host = "[" + host + "]"
	}
	return scheme + "://" + host + ":" + port, nil
}
