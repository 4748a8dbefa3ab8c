package config

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"net/netip"
	"os"
	"strings"
	"time"

	"github.com/ambient-mesh/ambient/pkg/spiffe"
)

// Roles of the ztunnel binary (two containers of the DaemonSet pod).
const (
	RoleProxy   = "proxy"
	RoleCapture = "capture"
)

// Config is ztunnel's configuration.
type Config struct {
	Role        string
	Node        string
	NodeIP      netip.Addr
	TrustDomain string
	LogLevel    string
	LogJSON     bool
	BPFFS       string

	// Proxy role.
	XDSAddress   string
	CAAddress    string
	TokenFile    string
	RootCertFile string
	ClusterID    string
	LocalConfig  string // static workloads/services/policies instead of xDS
	CA           string // "istiod" or "local"
	CACertFile   string // with CA "local": sign with this CA (PEM) instead of a new one
	CAKeyFile    string // its key (PEM)
	Capture      bool   // register listeners in the capture sockmap
	OutboundAddr string
	InboundAddr  string
	PlainAddr    string
	AdminAddr    string
	MetricsAddr  string
	ReadyAddr    string
	DrainTimeout time.Duration
	CertTTL      time.Duration
	// PreserveSourceIP: connections to local pods from clients on other
	// nodes keep the client's pod IP as source (needs Capture).
	PreserveSourceIP bool

	// Capture role.
	CaptureResync   time.Duration
	Notrack         bool
	Uninstall       bool
	UninstallOnExit bool
	Kubeconfig      string
}

const usage = `ztunnel is the ambient mesh's per-node L4 proxy.

It runs as two containers of one DaemonSet pod on every node:
  --role=capture  loads the eBPF capture programs and keeps them in sync with
                  this node's enrolled pods (istio.io/dataplane-mode=ambient)
  --role=proxy    serves the captured connections: HBONE mTLS between nodes,
                  L4 AuthorizationPolicy, metrics, admin

Examples:
  ztunnel --role=proxy --xds-address=istiod-lite.istio-system.svc:15012 --node=$NODE_NAME
  ztunnel --role=capture --node=$NODE_NAME
  ztunnel --role=proxy --local-config=local.yaml --ca=local --capture=false   # no Kubernetes
  ztunnel --role=capture --local-config=local.yaml --node=node-a              # capture without Kubernetes

Flags:
`

// Parse parses args (without the program name) with env as the environment.
func Parse(args []string, env func(string) string, out io.Writer) (Config, error) {
	c := Config{}
	fs := flag.NewFlagSet("ztunnel", flag.ContinueOnError)
	fs.SetOutput(out)
	fs.Usage = func() {
		fmt.Fprint(out, usage)
		fs.PrintDefaults()
	}
	def := func(k, d string) string {
		if v := strings.TrimSpace(env(k)); v != "" {
			return v
		}
		return d
	}
	var nodeIP string
	fs.StringVar(&c.Role, "role", RoleProxy, "proxy or capture")
	fs.StringVar(&c.Node, "node", def("NODE_NAME", ""), "this node's name (env NODE_NAME)")
	fs.StringVar(&nodeIP, "node-ip", def("INSTANCE_IP", def("NODE_IP", "")), "this node's IP (env INSTANCE_IP); picks the capture uplink")
	fs.StringVar(&c.TrustDomain, "trust-domain", spiffe.DefaultTrustDomain, "SPIFFE trust domain")
	fs.StringVar(&c.LogLevel, "log-level", "info", "debug, info, warn or error")
	fs.BoolVar(&c.LogJSON, "log-json", false, "log as JSON")
	fs.StringVar(&c.BPFFS, "bpffs", "/sys/fs/bpf/ambient", "bpffs directory shared by the two roles")

	fs.StringVar(&c.XDSAddress, "xds-address", "istiod-lite.istio-system.svc:15012", "istiod-lite xDS address (port 15010 = plaintext, local use only)")
	fs.StringVar(&c.CAAddress, "ca-address", "", "CA address (default: --xds-address)")
	fs.StringVar(&c.TokenFile, "token-file", "/var/run/secrets/tokens/istio-token", "projected ServiceAccount token (audience istio-ca)")
	fs.StringVar(&c.RootCertFile, "root-cert", "/var/run/secrets/istio/root-cert.pem", "mesh root certificate, to verify istiod-lite on 15012")
	fs.StringVar(&c.ClusterID, "cluster-id", "Kubernetes", "cluster ID sent to the CA")
	fs.StringVar(&c.LocalConfig, "local-config", "", "static config file (workloads, services, policies) instead of xDS; capture role: enroll this node's HBONE workloads from it instead of watching Kubernetes")
	fs.StringVar(&c.CA, "ca", "istiod", "istiod (certificates from --ca-address) or local (a self-signed CA in memory)")
	fs.StringVar(&c.CACertFile, "ca-cert", "", "with --ca=local: the local CA's self-signed root certificate (PEM), so several ztunnels share one trust; default: a new CA per process")
	fs.StringVar(&c.CAKeyFile, "ca-key", "", "with --ca=local: the key of --ca-cert (PEM)")
	fs.BoolVar(&c.Capture, "capture", true, "register the listeners with the eBPF capture of the capture role")
	fs.StringVar(&c.OutboundAddr, "outbound-addr", "0.0.0.0:15001", "outbound capture listener")
	fs.StringVar(&c.PlainAddr, "inbound-plaintext-addr", "0.0.0.0:15006", "inbound plaintext capture listener")
	fs.StringVar(&c.InboundAddr, "inbound-addr", "0.0.0.0:15008", "HBONE inbound listener")
	fs.StringVar(&c.AdminAddr, "admin-addr", "0.0.0.0:15000", "admin endpoint (config_dump, logging)")
	fs.StringVar(&c.MetricsAddr, "metrics-addr", "0.0.0.0:15020", "Prometheus metrics")
	fs.StringVar(&c.ReadyAddr, "ready-addr", "0.0.0.0:15021", "readiness (/healthz/ready)")
	fs.DurationVar(&c.DrainTimeout, "drain-timeout", 30*time.Second, "how long open connections may finish after SIGTERM")
	fs.BoolVar(&c.PreserveSourceIP, "preserve-source-ip", true, "connect to local pods from the client's pod IP when the client is on another node (IP_TRANSPARENT; only with --capture)")
	fs.DurationVar(&c.CertTTL, "cert-ttl", 0, "requested workload certificate lifetime (0: the CA's default, 24h)")

	fs.DurationVar(&c.CaptureResync, "capture-resync", 30*time.Second, "capture role: period of the full reconcile")
	fs.BoolVar(&c.Notrack, "notrack", true, "capture role: nftables notrack rule for captured packets (needed with kube-proxy)")
	fs.BoolVar(&c.Uninstall, "uninstall", false, "capture role: remove capture from this node and exit")
	fs.BoolVar(&c.UninstallOnExit, "uninstall-on-exit", false, "capture role: remove capture when stopping (development only)")
	fs.StringVar(&c.Kubeconfig, "kubeconfig", "", "capture role: kubeconfig (default: in-cluster)")
	if err := fs.Parse(args); err != nil {
		return c, err
	}
	if fs.NArg() > 0 {
		return c, fmt.Errorf("unexpected arguments %q (see --help)", fs.Args())
	}
	if nodeIP != "" {
		a, err := netip.ParseAddr(nodeIP)
		if err != nil {
			return c, fmt.Errorf("--node-ip %q: %w", nodeIP, err)
		}
		c.NodeIP = a.Unmap()
	}
	if c.CAAddress == "" {
		c.CAAddress = c.XDSAddress
	}
	return c, c.Validate()
}

// Validate checks the combination of settings.
func (c Config) Validate() error {
	var errs []error
	switch c.Role {
	case RoleProxy:
		if c.LocalConfig == "" && c.XDSAddress == "" {
			errs = append(errs, errors.New("--xds-address is empty: point it at istiod-lite (or use --local-config)"))
		}
		if c.CA != "istiod" && c.CA != "local" {
			errs = append(errs, fmt.Errorf("--ca=%q: want istiod or local", c.CA))
		}
		if (c.CACertFile == "") != (c.CAKeyFile == "") {
			errs = append(errs, errors.New("--ca-cert and --ca-key go together"))
		}
		if c.CACertFile != "" && c.CA != "local" {
			errs = append(errs, errors.New("--ca-cert/--ca-key need --ca=local"))
		}
	case RoleCapture:
		if c.Node == "" && !c.Uninstall {
			errs = append(errs, errors.New("--node is empty: set it (or NODE_NAME) to this node's name"))
		}
	default:
		errs = append(errs, fmt.Errorf("--role=%q: want proxy or capture", c.Role))
	}
	if c.TrustDomain == "" {
		errs = append(errs, errors.New("--trust-domain is empty"))
	}
	return errors.Join(errs...)
}

// Plaintext reports whether an istiod-lite address is the plaintext port.
func Plaintext(addr string) bool { return strings.HasSuffix(addr, ":15010") }

// OSEnv is os.Getenv, for Parse.
func OSEnv(k string) string { return os.Getenv(k) }
