package config

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/ambient-mesh/ambient/pkg/spiffe"
	"github.com/ambient-mesh/ambient/waypoint/listener"
)

// Certificate sources (--ca).
const (
	CAIstiod = "istiod" // fetched from --ca-address
	CALocal  = "local"  // a self-signed CA in memory (tests, benchmarks, demos)
)

// PlaintextPort is istiod-lite's plaintext gRPC port (local/dev only); every
// other port is dialled with TLS verified against --root-cert.
const PlaintextPort = "15010"

// clusterDomain is the DNS suffix of the node ID (Istio's proxy domain).
const clusterDomain = "svc.cluster.local"

// Config is the waypoint's configuration. Parse returns it by value; treat it
// as immutable.
type Config struct {
	// Gateway this waypoint serves (--name, --namespace).
	Name      string
	Namespace string

	TrustDomain string
	LogLevel    string
	LogJSON     bool

	// Control plane.
	XDSAddress   string
	CAAddress    string
	CA           string // CAIstiod or CALocal
	TokenFile    string
	RootCertFile string
	// LocalConfig is a file of Envoy resources used instead of xDS.
	LocalConfig string

	// Pod (downward API).
	PodName        string
	PodNamespace   string
	NodeName       string
	InstanceIP     netip.Addr
	ServiceAccount string

	// Serving. Port 0 picks a free port (tests).
	BindAddress  netip.Addr
	HBONEPort    uint16
	AdminPort    uint16
	MetricsPort  uint16
	ReadyPort    uint16
	DrainTimeout time.Duration

	MaxConnections int
	MaxRequests    int
}

const usage = `waypoint is the ambient mesh's L7 proxy: it serves the HBONE tunnels
ztunnels open to it (port 15008) with HTTP routing and L7 policy, configured by
istiod-lite over xDS. istiod-lite's waypoint controller deploys one per
waypoint Gateway.

Examples:
  waypoint --xds-address=istiod-lite.istio-system.svc:15012 --name=waypoint --namespace=default
  waypoint --local-config=resources.yaml --ca=local      # no Kubernetes

Flags:
`

// Parse parses args (without the program name) with env as the environment.
// It returns flag.ErrHelp for --help (usage written to out).
func Parse(args []string, env func(string) string, out io.Writer) (Config, error) {
	var c Config
	fs := flag.NewFlagSet("waypoint", flag.ContinueOnError)
	fs.SetOutput(out)
	fs.Usage = func() {
		fmt.Fprint(out, usage)
		fs.PrintDefaults()
	}
	getenv := func(k string) string { return strings.TrimSpace(env(k)) }
	var bind string
	var hbonePort, adminPort, metricsPort, readyPort uint
	fs.StringVar(&c.Name, "name", "", "name of the waypoint Gateway (default in local mode: waypoint)")
	fs.StringVar(&c.Namespace, "namespace", getenv("POD_NAMESPACE"), "namespace of the waypoint Gateway (env POD_NAMESPACE; default in local mode: default)")
	fs.StringVar(&c.TrustDomain, "trust-domain", spiffe.DefaultTrustDomain, "SPIFFE trust domain")
	fs.StringVar(&c.LogLevel, "log-level", "info", "debug, info, warn or error")
	fs.BoolVar(&c.LogJSON, "log-json", false, "log as JSON")
	fs.StringVar(&c.XDSAddress, "xds-address", "", "istiod-lite xDS address host:port (port "+PlaintextPort+" = plaintext, local use only)")
	fs.StringVar(&c.CAAddress, "ca-address", "", "CA address host:port (default: --xds-address)")
	fs.StringVar(&c.CA, "ca", CAIstiod, "istiod (certificates from --ca-address) or local (a self-signed CA in memory)")
	fs.StringVar(&c.TokenFile, "token-file", "", "projected ServiceAccount token (audience istio-ca) sent to xDS and the CA")
	fs.StringVar(&c.RootCertFile, "root-cert", "/var/run/secrets/istio/root-cert.pem", "mesh root certificate: verifies istiod-lite over TLS and is trusted for peers")
	fs.StringVar(&c.LocalConfig, "local-config", "", "file of Envoy resources (YAML/JSON: listeners, routes, clusters, endpoints) used instead of xDS")
	fs.StringVar(&bind, "bind-address", "0.0.0.0", "IP address every port listens on")
	fs.UintVar(&hbonePort, "hbone-port", 15008, "HBONE port")
	fs.UintVar(&adminPort, "admin-port", 15000, "admin port (/config_dump, /logging, /debug/pprof)")
	fs.UintVar(&metricsPort, "metrics-port", 15020, "Prometheus port (/stats/prometheus, /metrics)")
	fs.UintVar(&readyPort, "ready-port", 15021, "readiness port (/healthz/ready)")
	fs.DurationVar(&c.DrainTimeout, "drain-timeout", 30*time.Second, "how long open tunnels and requests may finish after SIGTERM")
	fs.IntVar(&c.MaxConnections, "max-connections", listener.DefaultMaxConnections, "concurrent tunnels; more are refused with 503")
	fs.IntVar(&c.MaxRequests, "max-requests", listener.DefaultMaxRequests, "concurrent HTTP requests; more get 503")
	if err := fs.Parse(args); err != nil {
		return Config{}, err
	}
	if fs.NArg() > 0 {
		return Config{}, fmt.Errorf("unexpected arguments %q (see --help)", fs.Args())
	}
	var errs []error
	port := func(flagName string, v uint) uint16 {
		if v > 65535 {
			errs = append(errs, fmt.Errorf("--%s=%d: want a port 0-65535", flagName, v))
		}
		return uint16(v)
	}
	c.HBONEPort = port("hbone-port", hbonePort)
	c.AdminPort = port("admin-port", adminPort)
	c.MetricsPort = port("metrics-port", metricsPort)
	c.ReadyPort = port("ready-port", readyPort)
	if a, err := netip.ParseAddr(bind); err != nil {
		errs = append(errs, fmt.Errorf("--bind-address=%q: want an IP address: %w", bind, err))
	} else {
		c.BindAddress = a.Unmap()
	}
	if v := getenv("INSTANCE_IP"); v != "" {
		a, err := netip.ParseAddr(v)
		if err != nil {
			errs = append(errs, fmt.Errorf("INSTANCE_IP=%q: want an IP address: %w", v, err))
		}
		c.InstanceIP = a.Unmap()
	}
	if err := errors.Join(errs...); err != nil {
		return Config{}, err
	}
	c.PodName = getenv("POD_NAME")
	c.PodNamespace = getenv("POD_NAMESPACE")
	c.NodeName = getenv("NODE_NAME")
	c.ServiceAccount = getenv("SERVICE_ACCOUNT")
	c = c.withDefaults()
	return c, c.Validate()
}

// withDefaults fills the values derived from others.
func (c Config) withDefaults() Config {
	if c.LocalConfig != "" {
		if c.Name == "" {
			c.Name = "waypoint"
		}
		if c.Namespace == "" {
			c.Namespace = "default"
		}
	}
	if c.CAAddress == "" {
		c.CAAddress = c.XDSAddress
	}
	if c.ServiceAccount == "" {
		c.ServiceAccount = c.Name
	}
	if c.PodName == "" {
		c.PodName = c.Name
	}
	if c.PodNamespace == "" {
		c.PodNamespace = c.Namespace
	}
	if !c.InstanceIP.IsValid() {
		c.InstanceIP = netip.IPv4Unspecified()
	}
	return c
}

// Validate checks the combination of settings.
func (c Config) Validate() error {
	var errs []error
	if c.Name == "" {
		errs = append(errs, errors.New("--name is empty: set it to the waypoint Gateway's name"))
	}
	if c.Namespace == "" {
		errs = append(errs, errors.New("--namespace is empty: set it (or POD_NAMESPACE) to the waypoint Gateway's namespace"))
	}
	for _, v := range []struct{ flag, val string }{{"name", c.Name}, {"namespace", c.Namespace}, {"trust-domain", c.TrustDomain}} {
		if strings.ContainsAny(v.val, "/ ") {
			errs = append(errs, fmt.Errorf("--%s=%q: must not contain '/' or spaces", v.flag, v.val))
		}
	}
	if c.TrustDomain == "" {
		errs = append(errs, errors.New("--trust-domain is empty"))
	}
	if strings.ContainsAny(c.ServiceAccount, "/ ") {
		errs = append(errs, fmt.Errorf("SERVICE_ACCOUNT=%q: must not contain '/' or spaces", c.ServiceAccount))
	}
	var lvl zapcore.Level
	if err := lvl.UnmarshalText([]byte(c.LogLevel)); err != nil {
		errs = append(errs, fmt.Errorf("--log-level=%q: want debug, info, warn or error", c.LogLevel))
	}
	switch {
	case c.LocalConfig != "" && c.XDSAddress != "":
		errs = append(errs, errors.New("--local-config and --xds-address both set: choose one source of configuration"))
	case c.LocalConfig == "" && c.XDSAddress == "":
		errs = append(errs, errors.New("--xds-address is empty: point it at istiod-lite (e.g. istiod-lite.istio-system.svc:15012) or use --local-config"))
	}
	if c.XDSAddress != "" {
		if err := checkHostPort(c.XDSAddress); err != nil {
			errs = append(errs, fmt.Errorf("--xds-address: %w", err))
		}
	}
	switch c.CA {
	case CALocal:
	case CAIstiod:
		if c.CAAddress == "" {
			if c.LocalConfig != "" { // else the missing --xds-address is reported
				errs = append(errs, errors.New("--ca-address is empty: point it at istiod-lite, or use --ca=local"))
			}
		} else if err := checkHostPort(c.CAAddress); err != nil {
			errs = append(errs, fmt.Errorf("--ca-address: %w", err))
		}
	default:
		errs = append(errs, fmt.Errorf("--ca=%q: want %s or %s", c.CA, CAIstiod, CALocal))
	}
	if c.NeedsRootCert() && c.RootCertFile == "" {
		errs = append(errs, errors.New("--root-cert is empty: istiod-lite is reached over TLS, mount the istio-ca-root-cert ConfigMap and point --root-cert at root-cert.pem"))
	}
	seen := map[uint16]string{}
	for _, p := range []struct {
		flag string
		port uint16
	}{{"hbone-port", c.HBONEPort}, {"admin-port", c.AdminPort}, {"metrics-port", c.MetricsPort}, {"ready-port", c.ReadyPort}} {
		if p.port == 0 {
			continue
		}
		if other, dup := seen[p.port]; dup {
			errs = append(errs, fmt.Errorf("--%s and --%s are both %d", other, p.flag, p.port))
		}
		seen[p.port] = p.flag
	}
	if c.DrainTimeout < 0 {
		errs = append(errs, fmt.Errorf("--drain-timeout=%s: must not be negative", c.DrainTimeout))
	}
	if c.MaxConnections <= 0 {
		errs = append(errs, fmt.Errorf("--max-connections=%d: must be positive", c.MaxConnections))
	}
	if c.MaxRequests <= 0 {
		errs = append(errs, fmt.Errorf("--max-requests=%d: must be positive", c.MaxRequests))
	}
	return errors.Join(errs...)
}

func checkHostPort(addr string) error {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("%q: want host:port: %w", addr, err)
	}
	if n, err := strconv.ParseUint(port, 10, 16); err != nil || n == 0 || host == "" {
		return fmt.Errorf("%q: want host:port with a port 1-65535", addr)
	}
	return nil
}

// Plaintext reports whether an istiod-lite address is the plaintext port.
func Plaintext(addr string) bool {
	_, port, err := net.SplitHostPort(addr)
	return err == nil && port == PlaintextPort
}

// UsesXDS reports whether configuration comes from istiod-lite.
func (c Config) UsesXDS() bool { return c.LocalConfig == "" }

// NeedsRootCert reports whether istiod-lite is reached over TLS (xDS or CA).
func (c Config) NeedsRootCert() bool {
	return (c.UsesXDS() && !Plaintext(c.XDSAddress)) || (c.CA == CAIstiod && !Plaintext(c.CAAddress))
}

// Identity is the waypoint's SPIFFE identity:
// spiffe://<trust domain>/ns/<namespace>/sa/<service account>.
func (c Config) Identity() spiffe.Identity {
	return spiffe.Identity{TrustDomain: c.TrustDomain, Namespace: c.Namespace, ServiceAccount: c.ServiceAccount}
}

// ResourcePrefix is the prefix istiod-lite gives this waypoint's listeners
// and route configurations: "<namespace>/<name>/".
func (c Config) ResourcePrefix() string { return c.Namespace + "/" + c.Name + "/" }

// NodeID is the xDS node ID in Istio's form
// "router~<ip>~<pod>.<pod namespace>~<pod namespace>.svc.cluster.local".
func (c Config) NodeID() string {
	return fmt.Sprintf("router~%s~%s.%s~%s.%s", c.InstanceIP, c.PodName, c.PodNamespace, c.PodNamespace, clusterDomain)
}

// NodeMetadata is the xDS node metadata.
func (c Config) NodeMetadata() map[string]string {
	md := map[string]string{
		"NAME":            c.PodName,
		"NAMESPACE":       c.PodNamespace,
		"INSTANCE_IP":     c.InstanceIP.String(),
		"SERVICE_ACCOUNT": c.ServiceAccount,
	}
	if c.NodeName != "" {
		md["NODE_NAME"] = c.NodeName
	}
	return md
}

// Addr is the listen address of port.
func (c Config) Addr(port uint16) string {
	return netip.AddrPortFrom(c.BindAddress, port).String()
}

// MarshalLogObject logs the configuration (zap.Object("config", c)).
func (c Config) MarshalLogObject(enc zapcore.ObjectEncoder) error {
	enc.AddString("name", c.Name)
	enc.AddString("namespace", c.Namespace)
	enc.AddString("identity", c.Identity().String())
	enc.AddString("trustDomain", c.TrustDomain)
	enc.AddString("logLevel", c.LogLevel)
	if c.UsesXDS() {
		enc.AddString("xdsAddress", c.XDSAddress)
		enc.AddBool("xdsPlaintext", Plaintext(c.XDSAddress))
		enc.AddString("resourcePrefix", c.ResourcePrefix())
		enc.AddString("nodeID", c.NodeID())
	} else {
		enc.AddString("localConfig", c.LocalConfig)
	}
	enc.AddString("ca", c.CA)
	if c.CA == CAIstiod {
		enc.AddString("caAddress", c.CAAddress)
	}
	enc.AddString("tokenFile", c.TokenFile)
	enc.AddString("rootCert", c.RootCertFile)
	enc.AddString("node", c.NodeName)
	enc.AddString("pod", c.PodNamespace+"/"+c.PodName)
	enc.AddString("instanceIP", c.InstanceIP.String())
	enc.AddString("bind", c.BindAddress.String())
	enc.AddUint16("hbonePort", c.HBONEPort)
	enc.AddUint16("adminPort", c.AdminPort)
	enc.AddUint16("metricsPort", c.MetricsPort)
	enc.AddUint16("readyPort", c.ReadyPort)
	enc.AddString("drainTimeout", c.DrainTimeout.String())
	enc.AddInt("maxConnections", c.MaxConnections)
	enc.AddInt("maxRequests", c.MaxRequests)
	return nil
}

var _ zapcore.ObjectMarshaler = Config{}

// Field is the configuration as one log field.
func (c Config) Field() zap.Field { return zap.Object("config", c) }
