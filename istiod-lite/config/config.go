package config

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// CA sources (--ca-source).
const (
	// CASourceSelfSigned generates (or reuses) the self-signed root kept in
	// the istio-ca-secret Secret; a cacerts Secret, if present, still wins
	// (Istio's behaviour).
	CASourceSelfSigned = "selfsigned"
	// CASourceCACerts requires the plugged-in cacerts Secret.
	CASourceCACerts = "cacerts"
)

// Defaults of the environment.
const (
	DefaultNamespace     = "istio-system"
	DefaultWaypointImage = "ambient/waypoint:dev"
)

// Config is istiod-lite's configuration. It is built once by Parse and never
// modified afterwards.
type Config struct {
	LogLevel    string
	TrustDomain string
	// Ports: XDSPort is plaintext gRPC (xDS + CA, local/dev only), XDSTLSPort
	// gRPC over TLS, MonitoringPort /metrics and /debug, ReadyPort /ready.
	// 0 disables a port (tests); the flags default to the well-known ports.
	XDSPort        int
	XDSTLSPort     int
	MonitoringPort int
	ReadyPort      int
	CASource       string
	// ZtunnelNamespace/ZtunnelServiceAccount may ask the CA for the
	// identities of pods on their node.
	ZtunnelNamespace      string
	ZtunnelServiceAccount string
	LeaderElect           bool
	// Kubeconfig is a kubeconfig path; empty means in-cluster.
	Kubeconfig string

	// From the environment.
	PodName       string // POD_NAME: leader-election identity
	Namespace     string // POD_NAMESPACE: system namespace (default istio-system)
	WaypointImage string // WAYPOINT_IMAGE
}

// Parse parses the command-line arguments (without the program name) and the
// environment (getenv, normally os.Getenv). Usage and errors go to output.
func Parse(args []string, getenv func(string) string, output io.Writer) (Config, error) {
	var c Config
	var ztunnel string
	fs := flag.NewFlagSet("istiod-lite", flag.ContinueOnError)
	fs.SetOutput(output)
	fs.StringVar(&c.LogLevel, "log-level", "info", "log level: debug, info, warn or error")
	fs.StringVar(&c.TrustDomain, "trust-domain", "cluster.local", "SPIFFE trust domain of workload identities")
	fs.IntVar(&c.XDSPort, "xds-port", 15010, "plaintext gRPC port for xDS and the CA (local/dev only; 0 disables)")
	fs.IntVar(&c.XDSTLSPort, "xds-tls-port", 15012, "TLS gRPC port for xDS and the CA (0 disables)")
	fs.IntVar(&c.MonitoringPort, "monitoring-port", 15014, "HTTP port for /metrics, /debug/* and /version (0 disables)")
	fs.IntVar(&c.ReadyPort, "ready-port", 8080, "HTTP port for /ready (0 disables)")
	fs.StringVar(&c.CASource, "ca-source", CASourceSelfSigned, "signing CA: selfsigned (istio-ca-secret, generated on first start) or cacerts (the plugged-in cacerts Secret)")
	fs.StringVar(&ztunnel, "ztunnel-identity", "istio-system/ztunnel", "namespace/serviceaccount of ztunnel, allowed to request certificates for pods on its node")
	fs.BoolVar(&c.LeaderElect, "leader-elect", true, "run the writers (waypoint controller, status, CA root publisher) only on the replica holding the Lease")
	fs.StringVar(&c.Kubeconfig, "kubeconfig", "", "path to a kubeconfig; in-cluster configuration when empty")
	if err := fs.Parse(args); err != nil {
		return Config{}, err
	}
	if fs.NArg() > 0 {
		return Config{}, fmt.Errorf("unexpected arguments %q (istiod-lite takes flags only)", fs.Args())
	}
	c.PodName = getenv("POD_NAME")
	c.Namespace = orDefault(getenv("POD_NAMESPACE"), DefaultNamespace)
	c.WaypointImage = orDefault(getenv("WAYPOINT_IMAGE"), DefaultWaypointImage)

	var errs []error
	ns, sa, ok := strings.Cut(ztunnel, "/")
	if !ok || ns == "" || sa == "" || strings.Contains(sa, "/") {
		errs = append(errs, fmt.Errorf("--ztunnel-identity=%q: want <namespace>/<serviceaccount>, e.g. istio-system/ztunnel", ztunnel))
	}
	c.ZtunnelNamespace, c.ZtunnelServiceAccount = ns, sa
	if _, err := zapcore.ParseLevel(c.LogLevel); err != nil {
		errs = append(errs, fmt.Errorf("--log-level=%q: want debug, info, warn or error", c.LogLevel))
	}
	if c.TrustDomain == "" || strings.ContainsAny(c.TrustDomain, "/: ") {
		errs = append(errs, fmt.Errorf("--trust-domain=%q: want a DNS-like name such as cluster.local", c.TrustDomain))
	}
	if c.CASource != CASourceSelfSigned && c.CASource != CASourceCACerts {
		errs = append(errs, fmt.Errorf("--ca-source=%q: want selfsigned or cacerts", c.CASource))
	}
	ports := map[string]int{"xds-port": c.XDSPort, "xds-tls-port": c.XDSTLSPort, "monitoring-port": c.MonitoringPort, "ready-port": c.ReadyPort}
	seen := map[int]string{}
	for _, name := range []string{"xds-port", "xds-tls-port", "monitoring-port", "ready-port"} {
		p := ports[name]
		if p < 0 || p > 65535 {
			errs = append(errs, fmt.Errorf("--%s=%d: out of range 0-65535", name, p))
			continue
		}
		if p == 0 {
			continue
		}
		if other, dup := seen[p]; dup {
			errs = append(errs, fmt.Errorf("--%s=%d: same port as --%s", name, p, other))
		}
		seen[p] = name
	}
	if c.XDSPort == 0 && c.XDSTLSPort == 0 {
		errs = append(errs, errors.New("--xds-port and --xds-tls-port are both 0: enable at least one"))
	}
	if err := errors.Join(errs...); err != nil {
		return Config{}, fmt.Errorf("invalid configuration: %w", err)
	}
	return c, nil
}

func orDefault(v, def string) string {
	if v == "" {
		return def
	}
	return v
}

// Fields are the configuration as log fields, logged once at start-up.
func (c Config) Fields() []zap.Field {
	return []zap.Field{
		zap.String("log_level", c.LogLevel),
		zap.String("trust_domain", c.TrustDomain),
		zap.Int("xds_port", c.XDSPort),
		zap.Int("xds_tls_port", c.XDSTLSPort),
		zap.Int("monitoring_port", c.MonitoringPort),
		zap.Int("ready_port", c.ReadyPort),
		zap.String("ca_source", c.CASource),
		zap.String("ztunnel_namespace", c.ZtunnelNamespace),
		zap.String("ztunnel_service_account", c.ZtunnelServiceAccount),
		zap.Bool("leader_elect", c.LeaderElect),
		zap.String("kubeconfig", c.Kubeconfig),
		zap.String("pod_name", c.PodName),
		zap.String("namespace", c.Namespace),
		zap.String("waypoint_image", c.WaypointImage),
	}
}
