package edge

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"
)

// ErrPlainHTTP is returned by PlainHTTP when plain HTTP was asked for on
// an address that is not loopback. Its message says what to do.
var ErrPlainHTTP = errors.New("plain HTTP is served only on a loopback address")

// PlainHTTP decides the listener for listen (host:port): it returns
// false (serve HTTPS) unless insecureHTTP is set; with insecureHTTP it
// returns true if the host is loopback (127.0.0.0/8, ::1, "localhost")
// and an error wrapping ErrPlainHTTP otherwise. An empty host (":8080")
// means every interface, which is not loopback.
func PlainHTTP(listen string, insecureHTTP bool) (bool, error) {
	if !insecureHTTP {
		return false, nil
	}
	host, _, err := net.SplitHostPort(listen)
	if err != nil {
		return false, fmt.Errorf("listen address %q: %w", listen, err)
	}
	if IsLoopback(host) {
		return true, nil
	}
	return false, fmt.Errorf("%w: %q is not one (use 127.0.0.1, [::1] or localhost); serve HTTPS instead by leaving out --insecure-http, or put a TLS-terminating proxy in front of a loopback listener", ErrPlainHTTP, listen)
}

// IsLoopback reports whether host (an IP address or "localhost") is a
// loopback address. Other names are not, whatever they resolve to now.
func IsLoopback(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	a, err := netip.ParseAddr(strings.TrimSuffix(strings.TrimPrefix(host, "["), "]"))
	if err != nil || a.Zone() != "" {
		return false
	}
	return a.Unmap().IsLoopback()
}
