package main

import (
	"context"
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/ehrvault/ehrvault/internal/api"
	"github.com/ehrvault/ehrvault/internal/audit"
	"github.com/ehrvault/ehrvault/internal/auth/smart"
	"github.com/ehrvault/ehrvault/internal/edge"
)

// serveFlags are the flags of serve (and demo).
type serveFlags struct {
	listen    string
	baseURL   string
	maxBody   int64
	logFormat string
	// The audit log's checkpoints: how often, and where they go.
	cpEvery     int64
	cpInterval  time.Duration
	publishFile string
	webhook     string
	flushEvery  time.Duration
	// The network edge and the identity layer.
	tlsCert, tlsKey, tlsClientCA string
	insecureHTTP                 bool
	allow                        listFlag
	trustedProxies               string
	ratePerAddress               float64
	ratePerPrincipal             float64
	idleTimeout                  time.Duration
	absoluteTimeout              time.Duration
	accessTTL                    time.Duration
	allowUnencrypted             bool
	// now, if set, is the clock of the login sessions and of the SMART
	// authorization server and its token checks (tests only; no flag
	// sets it).
	now func() time.Time
}

func (s *serveFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&s.listen, "listen", "127.0.0.1:8080", "the `address` to listen on")
	fs.StringVar(&s.baseURL, "base-url", "", "the public base `URL` of the FHIR API, for links (default: from each request's Host, plus /fhir)")
	fs.Int64Var(&s.maxBody, "max-body", api.DefaultMaxBody, "the largest request body accepted, in `bytes`")
	fs.StringVar(&s.logFormat, "log-format", "text", "log `format`: text or json (logs hold ids, never health data)")
	fs.Int64Var(&s.cpEvery, "audit-checkpoint-every", 1000, "sign an audit checkpoint after this many `entries`")
	fs.DurationVar(&s.cpInterval, "audit-checkpoint-interval", 10*time.Second, "or this long after the first unsigned entry")
	fs.StringVar(&s.publishFile, "audit-publish-file", "", "write each new audit checkpoint to this `file` (replaced atomically), for a witness to keep")
	fs.StringVar(&s.webhook, "audit-webhook", "", "POST each new audit checkpoint (text/plain) to this `URL`")
	fs.StringVar(&s.tlsCert, "tls-cert", "", "serve HTTPS with this certificate `file` (PEM; default: the self-signed one init made in the data directory, tls-cert.pem)")
	fs.StringVar(&s.tlsKey, "tls-key", "", "the private key `file` of --tls-cert (PEM)")
	fs.StringVar(&s.tlsClientCA, "tls-client-ca", "", "ask clients for certificates and verify them against these CA certificates (PEM `file`)")
	fs.BoolVar(&s.insecureHTTP, "insecure-http", false, "serve plain HTTP instead of HTTPS; only on a loopback address (behind a TLS-terminating proxy on the same host, or for tests)")
	fs.Var(&s.allow, "allow", "a network allowlist `rule`, repeatable: role:ROLE=CIDR,CIDR or client:ID=CIDR,CIDR (principals a rule names may connect only from its networks)")
	fs.StringVar(&s.trustedProxies, "trusted-proxy", "", "comma-separated `CIDRs` of proxies whose X-Forwarded-For is believed")
	fs.Float64Var(&s.ratePerAddress, "rate-per-address", 1000, "requests a `second` one source address may make on average (0: no limit); bursts of twice that")
	fs.Float64Var(&s.ratePerPrincipal, "rate-per-principal", 1000, "requests a `second` one principal (token, user, app) may make on average (0: no limit)")
	fs.DurationVar(&s.idleTimeout, "idle-timeout", 15*time.Minute, "a login session ends after this long without use (`duration`)")
	fs.DurationVar(&s.absoluteTimeout, "absolute-timeout", 12*time.Hour, "a login session, and every token issued from it, ends this long after login (`duration`)")
	fs.DurationVar(&s.accessTTL, "access-token-ttl", 5*time.Minute, "lifetime of SMART access tokens (`duration`, at most 10m)")
	fs.BoolVar(&s.allowUnencrypted, "allow-unencrypted-devices", false, "let devices whose disks are not encrypted be approved and used")
	fs.DurationVar(&s.flushEvery, "audit-flush-every", 0, "0: flush each batch of audit entries to disk before its responses (survives power loss); a `duration` such as 50ms: answer once the OS holds the entries (they survive a crash of ehrvault, not of the machine) and flush them at most that long after")
}

// auditSettings turns the flags into the audit log's settings.
func (s *serveFlags) auditSettings() (auditSettings, error) {
	as := auditSettings{every: s.cpEvery, interval: s.cpInterval, flushEvery: s.flushEvery}
	if s.cpEvery < 1 || s.cpInterval < time.Second {
		return as, usagef("--audit-checkpoint-every must be at least 1 and --audit-checkpoint-interval at least 1s")
	}
	if s.flushEvery < 0 || s.flushEvery > time.Second {
		return as, usagef("--audit-flush-every must be between 0 and 1s")
	}
	if s.idleTimeout < time.Minute || s.absoluteTimeout < s.idleTimeout {
		return as, usagef("--idle-timeout must be at least 1m and --absolute-timeout at least as long")
	}
	if s.accessTTL < 10*time.Second || s.accessTTL > 10*time.Minute {
		return as, usagef("--access-token-ttl must be between 10s and 10m")
	}
	if s.ratePerAddress < 0 || s.ratePerPrincipal < 0 {
		return as, usagef("--rate-per-address and --rate-per-principal must not be negative")
	}
	if (s.tlsCert == "") != (s.tlsKey == "") {
		return as, usagef("--tls-cert and --tls-key go together")
	}
	if s.publishFile != "" {
		as.publish = append(as.publish, &audit.FilePublisher{Path: s.publishFile})
	}
	if s.webhook != "" {
		u, err := url.Parse(s.webhook)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return as, usagef("--audit-webhook must be an http or https URL")
		}
		as.publish = append(as.publish, &audit.WebhookPublisher{URL: s.webhook})
	}
	return as, nil
}

func newLogger(w io.Writer, format string) (*slog.Logger, error) {
	switch format {
	case "text":
		return slog.New(slog.NewTextHandler(w, nil)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(w, nil)), nil
	}
	return nil, usagef("--log-format must be text or json")
}

func runServe(ctx context.Context, c *cli, args []string) error {
	fs := c.flags("serve", "--data DIR [--listen ADDR] [flags]", `
Serve the FHIR R4 API of a data directory at https://ADDR/fhir until
interrupted (Ctrl-C or SIGTERM), then finish the requests in flight and
close the store cleanly. HTTPS uses the self-signed certificate init made
(tls-cert.pem in the data directory: give it to clients) or --tls-cert.

Beside the API: the login pages (/auth/login, /auth/enroll), the SMART on
FHIR authorization server (/.well-known/smart-configuration), device
enrollment (/auth/devices/enroll) and the admin API (/admin/users,
/admin/devices). Every FHIR request but GET /fhir/metadata needs a SMART
access token with its DPoP proof, or an operator token from "ehrvault
token create" (Authorization: Bearer <token>).`)
	var pf passphraseFlags
	pf.register(fs)
	var sf serveFlags
	sf.register(fs)
	if err := c.parse(fs, args); err != nil {
		return err
	}
	if err := pf.check(); err != nil {
		return err
	}
	log, err := newLogger(c.stderr, sf.logFormat)
	if err != nil {
		return err
	}
	as, err := sf.auditSettings()
	if err != nil {
		return err
	}
	v, err := c.unsealWith(ctx, &pf, log, writerAccess, as)
	if err != nil {
		return err
	}
	defer v.Close()
	ln, err := net.Listen("tcp", sf.listen)
	if err != nil {
		return withHint(err, "choose another address with --listen, e.g. --listen 127.0.0.1:0 for any free port")
	}
	return c.serve(ctx, v, ln, &sf, log, nil)
}

// serve runs the API on ln until ctx ends. ready, if set, runs once the
// server accepts requests.
func (c *cli) serve(ctx context.Context, v *vault, ln net.Listener, sf *serveFlags, log *slog.Logger, ready func(url string)) error {
	addr := ln.Addr().(*net.TCPAddr)
	plain, err := edge.PlainHTTP(addr.String(), sf.insecureHTTP)
	if err != nil {
		return withHint(err, "serve HTTPS (the default), or listen on 127.0.0.1 behind a TLS-terminating proxy with --insecure-http")
	}
	scheme := "https"
	var tlsCfg *tls.Config
	if plain {
		scheme = "http"
	} else if tlsCfg, err = v.tlsConfig(ctx, sf); err != nil {
		return err
	}
	origin, err := publicOrigin(sf, scheme, addr.String())
	if err != nil {
		return err
	}
	handler, err := newHandler(ctx, v, sf, origin, log)
	if err != nil {
		return err
	}
	srv := &http.Server{
		Handler:           handler,
		TLSConfig:         tlsCfg,
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       2 * time.Minute,
		WriteTimeout:      5 * time.Minute,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	pctx, stopPurge := context.WithCancel(ctx)
	defer stopPurge()
	go purgeAuthObjects(pctx, v, log)
	url := origin + api.Base
	// The server's start, with the settings that decide what is served
	// and audited, is itself an audited event (a configuration change).
	start := &audit.Entry{Action: audit.ActionServerStart, Outcome: audit.OutcomeSuccess, Detail: []audit.Param{
		{Name: "listen", Value: addr.String()}, {Name: "version", Value: version},
		{Name: "max-body", Value: strconv.FormatInt(sf.maxBody, 10)},
		{Name: "audit-checkpoint-every", Value: strconv.FormatInt(sf.cpEvery, 10)},
		{Name: "audit-checkpoint-interval", Value: sf.cpInterval.String()},
		{Name: "audit-publish", Value: strconv.Itoa(len(v.auditPublishers(sf)))},
		{Name: "audit-flush-every", Value: sf.flushEvery.String()},
		{Name: "tls", Value: strconv.FormatBool(!plain)},
		{Name: "idle-timeout", Value: sf.idleTimeout.String()},
		{Name: "absolute-timeout", Value: sf.absoluteTimeout.String()},
		{Name: "allow-rules", Value: strconv.Itoa(len(sf.allow))},
	}}
	if err := v.auditCommand(ctx, start); err != nil {
		return err
	}
	log.Info("serving FHIR R4", "url", url, "data", v.dir)
	errc := make(chan error, 1)
	go func() {
		if plain {
			errc <- srv.Serve(ln)
		} else {
			errc <- srv.ServeTLS(ln, "", "")
		}
	}()
	if ready != nil {
		ready(url)
	}
	select {
	case err := <-errc:
		return fmt.Errorf("serve: %w", err)
	case <-ctx.Done():
	}
	log.Info("shutting down")
	sctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil && !errors.Is(err, context.DeadlineExceeded) {
		return fmt.Errorf("shutdown: %w", err)
	}
	return v.auditCommand(context.Background(), &audit.Entry{Action: audit.ActionServerStop, Outcome: audit.OutcomeSuccess})
}

// newHandler builds what serve answers at origin: the FHIR API beside the
// identity endpoints, behind the network edge's headers and rate limits.
func newHandler(ctx context.Context, v *vault, sf *serveFlags, origin string, log *slog.Logger) (http.Handler, error) {
	id, err := newIdentity(ctx, v, sf, origin, log)
	if err != nil {
		return nil, err
	}
	h := api.New(api.Config{
		Records:      v.records,
		Auth:         id,
		Log:          log,
		MaxBody:      sf.maxBody,
		BaseURL:      sf.baseURL,
		Version:      version,
		SearchParams: v.searchParams,
		Audit:        v.audit,
		AuditLog:     v.audit,
		Search:       v.search,
		Grants:       id,
		Gate:         id.gate,
		OAuth: &api.OAuthURIs{Authorize: origin + smart.PathAuthorize, Token: origin + smart.PathToken,
			Introspect: origin + smart.PathIntrospect, Revoke: origin + smart.PathRevoke},
	})
	mux := http.NewServeMux()
	mux.Handle("/", h)
	id.mount(mux)
	return edge.SecurityHeaders(id.limiter.Middleware(mux)), nil
}

// auditPublishers lists where checkpoints go, by kind.
func (v *vault) auditPublishers(sf *serveFlags) []string {
	var out []string
	if sf.publishFile != "" {
		out = append(out, "file")
	}
	if sf.webhook != "" {
		out = append(out, "webhook")
	}
	return out
}

// searchParams lists the search parameters of a type for /metadata.
func (v *vault) searchParams(typ string) []api.SearchParam {
	var out []api.SearchParam
	for _, p := range v.index.Params(typ) {
		out = append(out, api.SearchParam{Name: p.Name, Type: p.Type, Definition: p.URL, Targets: p.Targets})
	}
	return out
}

// tlsConfig returns the server's TLS settings: the operator's certificate,
// or the data directory's self-signed one (made again when it is missing
// or nearly expired).
func (v *vault) tlsConfig(ctx context.Context, sf *serveFlags) (*tls.Config, error) {
	var cert tls.Certificate
	var err error
	if sf.tlsCert != "" {
		if cert, err = edge.LoadKeyPair(sf.tlsCert, sf.tlsKey); err != nil {
			return nil, withHint(err, "--tls-cert and --tls-key must name a PEM certificate and its private key")
		}
	} else {
		if cert, _, err = edge.EnsureSelfSigned(v.dir, v.authSeal, time.Now()); err != nil {
			return nil, fmt.Errorf("self-signed certificate: %w", err)
		}
	}
	cfg, err := edge.ServerConfig(cert, sf.tlsClientCA)
	if err != nil {
		return nil, withHint(err, "--tls-client-ca must name a PEM file of CA certificates")
	}
	return cfg, nil
}
