package main

import (
	"context"
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
Serve the FHIR R4 API of a data directory at http://ADDR/fhir until
interrupted (Ctrl-C or SIGTERM), then finish the requests in flight and
close the store cleanly.

Every request but GET /fhir/metadata needs Authorization: Bearer <token>;
make tokens with "ehrvault token create". Plain HTTP is meant for loopback
or behind a TLS-terminating proxy.`)
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
	h := api.New(api.Config{
		Records:      v.records,
		Auth:         v.tokens,
		Log:          log,
		MaxBody:      sf.maxBody,
		BaseURL:      sf.baseURL,
		Version:      version,
		SearchParams: v.searchParams,
		Audit:        v.audit,
		AuditLog:     v.audit,
		Search:       v.search,
	})
	srv := &http.Server{
		Handler:           h,
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       2 * time.Minute,
		WriteTimeout:      5 * time.Minute,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	addr := ln.Addr().(*net.TCPAddr)
	if !addr.IP.IsLoopback() {
		log.Warn("serving plain HTTP on a non-loopback address: put a TLS-terminating proxy in front", "addr", addr.String())
	}
	url := "http://" + addr.String() + api.Base
	// The server's start, with the settings that decide what is served
	// and audited, is itself an audited event (a configuration change).
	start := &audit.Entry{Action: audit.ActionServerStart, Outcome: audit.OutcomeSuccess, Detail: []audit.Param{
		{Name: "listen", Value: addr.String()}, {Name: "version", Value: version},
		{Name: "max-body", Value: strconv.FormatInt(sf.maxBody, 10)},
		{Name: "audit-checkpoint-every", Value: strconv.FormatInt(sf.cpEvery, 10)},
		{Name: "audit-checkpoint-interval", Value: sf.cpInterval.String()},
		{Name: "audit-publish", Value: strconv.Itoa(len(v.auditPublishers(sf)))},
		{Name: "audit-flush-every", Value: sf.flushEvery.String()},
	}}
	if err := v.auditCommand(ctx, start); err != nil {
		return err
	}
	log.Info("serving FHIR R4", "url", url, "data", v.dir)
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
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
