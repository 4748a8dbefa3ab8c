package client

import (
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strings"
)

// Schemes a target may use.
const (
	SchemeTCP   = "tcp"
	SchemeHTTP  = "http"
	SchemeH2C   = "h2c"
	SchemeHTTPS = "https"
	SchemeGRPC  = "grpc"
)

// Target is a parsed --target.
type Target struct {
	Scheme string
	// Addr is host:port.
	Addr string
	// Path is the request path with its query ("/" when empty); HTTP only.
	Path string
}

// ParseTarget parses tcp://host:port, http://host:port/path,
// h2c://host:port/path, https://host:port/path or grpc://host:port. HTTP
// schemes default the port to 80/443; tcp and grpc need one.
func ParseTarget(s string) (Target, error) {
	u, err := url.Parse(s)
	if err != nil {
		return Target{}, fmt.Errorf("target %q: %w (want e.g. http://host:port/path)", s, err)
	}
	t := Target{Scheme: strings.ToLower(u.Scheme), Addr: u.Host}
	if t.Addr == "" {
		return Target{}, fmt.Errorf("target %q has no host:port (want e.g. %s://host:port)", s, orDefault(t.Scheme, "http"))
	}
	switch t.Scheme {
	case SchemeHTTP, SchemeH2C, SchemeHTTPS:
		if u.Port() == "" {
			port := "80"
			if t.Scheme == SchemeHTTPS {
				port = "443"
			}
			t.Addr = net.JoinHostPort(u.Hostname(), port)
		}
		t.Path = u.EscapedPath()
		if t.Path == "" {
			t.Path = "/"
		}
		if u.RawQuery != "" {
			t.Path += "?" + u.RawQuery
		}
	case SchemeTCP, SchemeGRPC:
		if u.Port() == "" {
			return Target{}, fmt.Errorf("target %q has no port (want %s://host:port)", s, t.Scheme)
		}
		if p := u.EscapedPath(); p != "" && p != "/" {
			return Target{}, fmt.Errorf("target %q: %s targets take no path", s, t.Scheme)
		}
	default:
		return Target{}, fmt.Errorf("target %q: unknown scheme %q (want tcp, http, h2c, https or grpc)", s, u.Scheme)
	}
	return t, nil
}

func orDefault(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

// ParseHeaders parses repeated -H "key: value" (or key=value is refused:
// the separator is the first colon) into a header.
func ParseHeaders(hs []string) (http.Header, error) {
	out := http.Header{}
	for _, h := range hs {
		k, v, ok := strings.Cut(h, ":")
		k = strings.TrimSpace(k)
		if !ok || k == "" {
			return nil, fmt.Errorf("header %q: want key:value, e.g. -H 'x-user: alice'", h)
		}
		out.Add(k, strings.TrimSpace(v))
	}
	return out, nil
}
