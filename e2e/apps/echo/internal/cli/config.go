package cli

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
)

// Environment fallbacks of the server's port flags. They end in _PORTS so
// Kubernetes service links (<SERVICE>_PORT=tcp://...) never collide.
const (
	EnvTCPPorts  = "ECHO_TCP_PORTS"
	EnvHTTPPorts = "ECHO_HTTP_PORTS"
	EnvGRPCPorts = "ECHO_GRPC_PORTS"
	EnvTLSPorts  = "ECHO_TLS_PORTS"
)

// parsePorts parses a comma-separated port list; "" or "0" turns the
// protocol off (nil).
func parsePorts(flag, s string) ([]int, error) {
	s = strings.TrimSpace(s)
	if s == "" || s == "0" {
		return nil, nil
	}
	var out []int
	for _, f := range strings.Split(s, ",") {
		p, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || p < 1 || p > 65535 {
			return nil, fmt.Errorf("--%s %q: want comma-separated ports 1..65535 (or 0 to turn it off)", flag, s)
		}
		if slices.Contains(out, p) {
			return nil, fmt.Errorf("--%s %q: port %d listed twice", flag, s, p)
		}
		out = append(out, p)
	}
	return out, nil
}

// envOr returns the environment value of key when set and not empty, else
// def.
func envOr(lookup func(string) (string, bool), key, def string) string {
	if v, ok := lookup(key); ok && v != "" {
		return v
	}
	return def
}

// checkDistinct refuses a port used by two protocols.
func checkDistinct(byProto map[string][]int) error {
	seen := map[int]string{}
	for _, proto := range []string{"tcp", "http", "grpc", "tls"} {
		for _, p := range byProto[proto] {
			if other, ok := seen[p]; ok {
				return fmt.Errorf("port %d is given to both --%s-port and --%s-port: pick distinct ports", p, other, proto)
			}
			seen[p] = proto
		}
	}
	return nil
}
