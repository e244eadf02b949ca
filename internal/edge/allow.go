package edge

import (
	"bufio"
	"fmt"
	"net/http"
	"net/netip"
	"os"
	"strings"

	"github.com/ehrvault/ehrvault/internal/auth"
)

// Proxies are the reverse proxies trusted to say, in X-Forwarded-For,
// whom they forward for. Empty: nobody is, and the source is always
// r.RemoteAddr.
type Proxies []netip.Prefix

// ParseProxies parses a comma-separated list of CIDRs or addresses (as
// for --trusted-proxy).
func ParseProxies(s string) (Proxies, error) {
	if strings.TrimSpace(s) == "" {
		return nil, nil
	}
	ps, err := parsePrefixes(s)
	if err != nil {
		return nil, fmt.Errorf("trusted proxies: %w", err)
	}
	return Proxies(ps), nil
}

func (p Proxies) contain(a netip.Addr) bool {
	for _, x := range p {
		if x.Contains(a) {
			return true
		}
	}
	return false
}

// Source returns the address a request came from: the peer's address,
// unless the peer is a trusted proxy; then the last address in
// X-Forwarded-For that is not a trusted proxy (the one the nearest
// untrusted hop connected from: anything before it can be forged). The
// zero Addr if the peer's address does not parse.
func (p Proxies) Source(r *http.Request) netip.Addr {
	a := RemoteIP(r.RemoteAddr)
	if !a.IsValid() || len(p) == 0 || !p.contain(a) {
		return a
	}
	var hops []string
	for _, v := range r.Header.Values("X-Forwarded-For") {
		hops = append(hops, strings.Split(v, ",")...)
	}
	for i := len(hops) - 1; i >= 0; i-- {
		h, err := netip.ParseAddr(strings.TrimSpace(hops[i]))
		if err != nil {
			return a // a garbled header: believe only the peer
		}
		h = h.Unmap()
		if !p.contain(h) {
			return h
		}
		a = h
	}
	return a
}

// RemoteIP parses an address as in r.RemoteAddr ("ip:port", "[ip6]:port")
// or a bare IP; the zero Addr if neither.
func RemoteIP(s string) netip.Addr {
	if ap, err := netip.ParseAddrPort(s); err == nil {
		return ap.Addr().Unmap()
	}
	if a, err := netip.ParseAddr(strings.TrimSuffix(strings.TrimPrefix(s, "["), "]")); err == nil {
		return a.Unmap()
	}
	return netip.Addr{}
}

// Allowlist says from which networks principals may call, by role and by
// SMART client id. A principal matched by a role rule and a client rule
// must satisfy both; one matched by none may call from anywhere. The
// zero Allowlist (or nil) allows everything.
type Allowlist struct {
	roles   map[string][]netip.Prefix
	clients map[string][]netip.Prefix
}

// ParseAllowlist parses rules, one per string, each
//
//	role:ROLE=CIDR[,CIDR...]      e.g. role:billing=10.0.0.0/8,192.168.1.0/24
//	client:CLIENT_ID=CIDR[,...]   e.g. client:lab-feed=2001:db8:5::/48
//
// A bare address stands for itself (/32, /128). Rules for the same role
// or client add up.
func ParseAllowlist(rules []string) (*Allowlist, error) {
	a := &Allowlist{roles: map[string][]netip.Prefix{}, clients: map[string][]netip.Prefix{}}
	for i, rule := range rules {
		if err := a.add(rule); err != nil {
			return nil, fmt.Errorf("allowlist rule %d: %w", i+1, err)
		}
	}
	return a, nil
}

// ParseAllowlistFile reads rules from a file, one per line; blank lines
// and lines starting with # are ignored.
func ParseAllowlistFile(path string) (*Allowlist, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("allowlist: %w", err)
	}
	defer f.Close()
	a := &Allowlist{roles: map[string][]netip.Prefix{}, clients: map[string][]netip.Prefix{}}
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		if err := a.add(line); err != nil {
			return nil, fmt.Errorf("allowlist %s line %d: %w", path, n, err)
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("allowlist %s: %w", path, err)
	}
	return a, nil
}

func (a *Allowlist) add(rule string) error {
	subject, nets, ok := strings.Cut(strings.TrimSpace(rule), "=")
	if !ok {
		return fmt.Errorf("want role:ROLE=CIDR,... or client:ID=CIDR,...")
	}
	kind, name, ok := strings.Cut(subject, ":")
	if !ok || name == "" {
		return fmt.Errorf("subject %q: want role:ROLE or client:ID", subject)
	}
	ps, err := parsePrefixes(nets)
	if err != nil {
		return fmt.Errorf("%s: %w", subject, err)
	}
	switch kind {
	case "role":
		if !auth.ValidRole(name) {
			return fmt.Errorf("unknown role %q (roles: %s)", name, strings.Join(auth.Roles, ", "))
		}
		a.roles[name] = append(a.roles[name], ps...)
	case "client":
		a.clients[name] = append(a.clients[name], ps...)
	default:
		return fmt.Errorf("subject %q: want role:ROLE or client:ID", subject)
	}
	return nil
}

func parsePrefixes(s string) ([]netip.Prefix, error) {
	var out []netip.Prefix
	for _, f := range strings.Split(s, ",") {
		f = strings.TrimSpace(f)
		if f == "" {
			continue
		}
		var p netip.Prefix
		var err error
		if strings.Contains(f, "/") {
			p, err = netip.ParsePrefix(f)
		} else {
			var a netip.Addr
			a, err = netip.ParseAddr(f)
			if err == nil {
				p = netip.PrefixFrom(a, a.BitLen())
			}
		}
		if err != nil {
			return nil, fmt.Errorf("network %q is not a CIDR or an address", f)
		}
		if p.Addr().Is4In6() && p.Bits() >= 96 {
			p = netip.PrefixFrom(p.Addr().Unmap(), p.Bits()-96)
		}
		out = append(out, p.Masked())
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("no networks")
	}
	return out, nil
}

// Empty reports whether a has no rules.
func (a *Allowlist) Empty() bool { return a == nil || len(a.roles)+len(a.clients) == 0 }

// Allowed reports whether p may call from remote (an address as in
// r.RemoteAddr, or as Proxies.Source returns it, formatted). An address
// that does not parse is allowed only where no rule applies.
func (a *Allowlist) Allowed(p *auth.Principal, remote string) bool {
	if a.Empty() || p == nil {
		return true
	}
	ip := RemoteIP(remote)
	check := func(nets []netip.Prefix, ok bool) bool {
		if !ok {
			return true
		}
		if !ip.IsValid() {
			return false
		}
		for _, n := range nets {
			if n.Contains(ip) {
				return true
			}
		}
		return false
	}
	rn, rok := a.roles[p.Role]
	cn, cok := a.clients[p.Client]
	return check(rn, rok && p.Role != "") && check(cn, cok && p.Client != "")
}
