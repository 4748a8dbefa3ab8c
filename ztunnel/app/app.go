package app

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"go.uber.org/zap"
	"google.golang.org/protobuf/proto"
	"istio.io/istio/pkg/workloadapi"
	"istio.io/istio/pkg/workloadapi/security"

	"github.com/ambient-mesh/ambient/pkg/admin"
	"github.com/ambient-mesh/ambient/pkg/certs"
	"github.com/ambient-mesh/ambient/pkg/identity"
	"github.com/ambient-mesh/ambient/pkg/spiffe"
	"github.com/ambient-mesh/ambient/pkg/xds"
	"github.com/ambient-mesh/ambient/ztunnel/config"
	"github.com/ambient-mesh/ambient/ztunnel/metrics"
	"github.com/ambient-mesh/ambient/ztunnel/proxy"
	"github.com/ambient-mesh/ambient/ztunnel/proxy/inbound"
	"github.com/ambient-mesh/ambient/ztunnel/route"
	"github.com/ambient-mesh/ambient/ztunnel/state"
)

// Run runs the role cfg names until ctx ends.
func Run(ctx context.Context, cfg config.Config, log *zap.Logger, level zap.AtomicLevel) error {
	log.Info("ztunnel starting", zap.String("role", cfg.Role), zap.String("node", cfg.Node),
		zap.String("xds", cfg.XDSAddress), zap.String("ca", cfg.CA), zap.String("trustDomain", cfg.TrustDomain),
		zap.Bool("capture", cfg.Capture), zap.Bool("preserveSourceIP", cfg.PreserveSourceIP && cfg.Capture),
		zap.String("localConfig", cfg.LocalConfig))
	if cfg.Role == config.RoleCapture {
		return runCapture(ctx, cfg, log)
	}
	return runProxy(ctx, cfg, log, level)
}

// certSource adapts the identity manager to the proxy's certificate needs.
type certSource struct{ m *identity.Manager }

func (c certSource) ClientCertificate(ctx context.Context, id spiffe.Identity) (*tls.Certificate, error) {
	return c.m.GetCertificate(ctx, id)
}

func (c certSource) ServerCertificate(ctx context.Context, id spiffe.Identity) (*tls.Certificate, error) {
	return c.m.GetCertificate(ctx, id)
}

// newIdentity builds the certificate manager: a local CA, or istiod-lite's.
func newIdentity(cfg config.Config, log *zap.Logger) (*identity.Manager, func(), error) {
	opts := identity.Options{Logger: log.Named("identity"), TrustDomain: cfg.TrustDomain}
	closeFn := func() {}
	if cfg.CA == "local" {
		ca, err := localCA(cfg)
		if err != nil {
			return nil, nil, err
		}
		opts.Fetcher = identity.LocalFetcher{CA: ca, TTL: cfg.CertTTL}
		roots, err := certs.ParseCertsPEM(ca.RootsPEM())
		if err != nil {
			return nil, nil, err
		}
		opts.Roots = roots
	} else {
		var rootPEM []byte
		if !config.Plaintext(cfg.CAAddress) {
			b, err := os.ReadFile(cfg.RootCertFile)
			if err != nil {
				return nil, nil, fmt.Errorf("read the mesh root certificate %s (mounted from the istio-ca-root-cert ConfigMap): %w", cfg.RootCertFile, err)
			}
			rootPEM = b
			roots, err := certs.ParseCertsPEM(b)
			if err != nil {
				return nil, nil, fmt.Errorf("parse %s: %w", cfg.RootCertFile, err)
			}
			opts.Roots = roots
		}
		conn, err := identity.DialCA(cfg.CAAddress, rootPEM, hostOf(cfg.CAAddress))
		if err != nil {
			return nil, nil, fmt.Errorf("dial the CA at %s: %w", cfg.CAAddress, err)
		}
		closeFn = func() { _ = conn.Close() }
		f, err := identity.NewCAClient(identity.CAClientOptions{Conn: conn, TokenPath: cfg.TokenFile, ClusterID: cfg.ClusterID, TTL: cfg.CertTTL})
		if err != nil {
			return nil, nil, err
		}
		opts.Fetcher = f
	}
	m, err := identity.NewManager(opts)
	if err != nil {
		closeFn()
		return nil, nil, err
	}
	return m, func() { m.Close(); closeFn() }, nil
}

// localCA is --ca=local's CA: loaded from --ca-cert/--ca-key (so several
// ztunnels share one trust), else a new self-signed one.
func localCA(cfg config.Config) (*certs.CA, error) {
	if cfg.CACertFile == "" {
		return certs.NewSelfSignedCA(cfg.TrustDomain, 10*365*24*time.Hour)
	}
	certPEM, err := os.ReadFile(cfg.CACertFile)
	if err != nil {
		return nil, fmt.Errorf("read --ca-cert: %w", err)
	}
	keyPEM, err := os.ReadFile(cfg.CAKeyFile)
	if err != nil {
		return nil, fmt.Errorf("read --ca-key: %w", err)
	}
	ca, err := certs.LoadCA(certPEM, keyPEM, nil, nil)
	if err != nil {
		return nil, fmt.Errorf("--ca-cert %s: %w", cfg.CACertFile, err)
	}
	return ca, nil
}

func hostOf(addr string) string {
	h, _, err := net.SplitHostPort(addr)
	if err != nil {
		return addr
	}
	return h
}

// storeHandler applies xDS updates to the store: the store's one writer.
func storeHandler(store *state.Store) map[string]xds.Handler {
	return map[string]xds.Handler{
		xds.AddressType: xds.HandlerFunc(func(_ string, up map[string]proto.Message, rm []string, _ string) error {
			m := make(map[string]*workloadapi.Address, len(up))
			for k, v := range up {
				a, ok := v.(*workloadapi.Address)
				if !ok {
					return fmt.Errorf("resource %q is %T, want istio.workload.Address", k, v)
				}
				m[k] = a
			}
			return store.ApplyAddresses(m, rm)
		}),
		xds.AuthorizationType: xds.HandlerFunc(func(_ string, up map[string]proto.Message, rm []string, _ string) error {
			m := make(map[string]*security.Authorization, len(up))
			for k, v := range up {
				a, ok := v.(*security.Authorization)
				if !ok {
					return fmt.Errorf("resource %q is %T, want istio.security.Authorization", k, v)
				}
				m[k] = a
			}
			return store.ApplyAuthorizations(m, rm)
		}),
	}
}

func runProxy(ctx context.Context, cfg config.Config, log *zap.Logger, level zap.AtomicLevel) error {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	store := state.NewStore()
	ids, closeIDs, err := newIdentity(cfg, log)
	if err != nil {
		return err
	}
	defer closeIDs()
	reg.MustRegister(ids.Collector())

	var configReady func() bool
	var xdsClient *xds.Client
	if cfg.LocalConfig != "" {
		addrs, pols, err := state.LoadLocalConfig(cfg.LocalConfig)
		if err != nil {
			return err
		}
		if err := store.ReplaceAddresses(addrs); err != nil {
			return fmt.Errorf("local config %s: %w", cfg.LocalConfig, err)
		}
		if err := store.ReplaceAuthorizations(pols); err != nil {
			return fmt.Errorf("local config %s: %w", cfg.LocalConfig, err)
		}
		configReady = func() bool { return true }
	} else {
		var tlsCfg *tls.Config
		if !config.Plaintext(cfg.XDSAddress) {
			pool := x509.NewCertPool()
			b, err := os.ReadFile(cfg.RootCertFile)
			if err != nil {
				return fmt.Errorf("read the mesh root certificate %s: %w", cfg.RootCertFile, err)
			}
			if !pool.AppendCertsFromPEM(b) {
				return fmt.Errorf("%s holds no certificate", cfg.RootCertFile)
			}
			tlsCfg = &tls.Config{RootCAs: pool, ServerName: hostOf(cfg.XDSAddress), MinVersion: tls.VersionTLS12}
		}
		ip := cfg.NodeIP.String()
		podName, podNS := os.Getenv("POD_NAME"), os.Getenv("POD_NAMESPACE")
		xdsClient, err = xds.New(log.Named("xds"), xds.Config{
			Address: cfg.XDSAddress, TLS: tlsCfg, TokenFile: cfg.TokenFile,
			NodeID:       fmt.Sprintf("ztunnel~%s~%s.%s~%s.svc.cluster.local", ip, podName, podNS, podNS),
			NodeMetadata: map[string]string{"NODE_NAME": cfg.Node, "NAME": podName, "NAMESPACE": podNS, "INSTANCE_IPS": ip, "CLUSTER_ID": cfg.ClusterID},
			Types:        xds.ZtunnelTypes,
		}, storeHandler(store))
		if err != nil {
			return err
		}
		configReady = func() bool { return xdsClient.State().Synced() }
	}

	lns, err := openListeners(ctx, cfg, log)
	if err != nil {
		return err
	}
	local := route.Local{Node: cfg.Node}
	var podDial inbound.DialFunc // default: a plain dial from the node
	if cfg.Capture && cfg.PreserveSourceIP {
		// The pod answers the client's IP; capture hands those packets
		// back to the dialing socket (see ztunnel/capture/bpf/capture.c).
		podDial = inbound.SourceKeepingDial(store, local, inbound.TransparentDialer())
	}
	p, err := proxy.New(proxy.Config{
		Store: store, Local: local, PodDial: podDial,
		Certs: certSource{ids}, Bundle: ids.Bundle, Logger: log.Named("proxy"),
		Metrics:  metrics.New(reg),
		Outbound: lns.outbound, Inbound: lns.inbound, InboundPlaintext: lns.plain,
		OriginalDst:      lns.originalDst,
		HBONEDialContext: lns.hboneDial,
		DrainTimeout:     cfg.DrainTimeout,
	})
	if err != nil {
		lns.close()
		return err
	}

	adm := admin.New(level)
	adm.Register("workloads", func() any { return workloadsView(store.Snapshot()) })
	adm.Register("services", func() any { return servicesView(store.Snapshot()) })
	adm.Register("policies", func() any { return policiesView(store.Snapshot()) })
	adm.Register("certificates", func() any { return certificatesView(ids.Snapshot()) })
	adm.Register("connections", func() any { return connectionsView(p.Connections()) })
	if xdsClient != nil {
		adm.Register("xds", func() any { return xdsClient.State() })
	}
	var draining atomic.Bool
	ready := func() error {
		switch {
		case draining.Load():
			return errors.New("draining")
		case !configReady():
			return errors.New("waiting for the first xDS configuration from istiod-lite")
		}
		return lns.ready()
	}

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var core, web sync.WaitGroup
	errc := make(chan error, 8)
	run := func(wg *sync.WaitGroup, name string, fn func() error) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := fn(); err != nil && ctx.Err() == nil {
				errc <- fmt.Errorf("%s: %w", name, err)
				cancel()
			}
		}()
	}
	servers := []*http.Server{
		{Addr: cfg.AdminAddr, Handler: adm.Handler(), ReadHeaderTimeout: 10 * time.Second},
		{Addr: cfg.MetricsAddr, Handler: admin.Metrics(reg), ReadHeaderTimeout: 10 * time.Second},
		{Addr: cfg.ReadyAddr, Handler: admin.Ready(ready), ReadHeaderTimeout: 10 * time.Second},
	}
	for _, s := range servers {
		run(&web, "http "+s.Addr, func() error { return serveWhenFree(ctx, s, log) })
	}
	if xdsClient != nil {
		run(&core, "xds", func() error { return xdsClient.Run(ctx) })
	}
	if lns.keep != nil {
		run(&core, "listener registration", func() error { return lns.keep(ctx, configReady) })
	}
	if cfg.Node != "" {
		run(&core, "identity sweep", func() error {
			return sweepIdentities(ctx, store, ids, cfg.Node, identitySweepPeriod, log.Named("identity"))
		})
	}
	run(&core, "proxy", func() error { return p.Run(ctx) })
	log.Info("ztunnel proxy running", zap.String("admin", cfg.AdminAddr), zap.String("metrics", cfg.MetricsAddr), zap.String("ready", cfg.ReadyAddr))

	<-ctx.Done()
	draining.Store(true)
	log.Info("ztunnel proxy draining", zap.Duration("timeout", cfg.DrainTimeout))
	core.Wait() // the proxy drains its connections before Run returns; readiness says 503 meanwhile
	shutdownCtx, done := context.WithTimeout(context.Background(), 2*time.Second)
	defer done()
	for _, s := range servers {
		_ = s.Shutdown(shutdownCtx)
	}
	web.Wait()
	close(errc)
	var errs []error
	for err := range errc {
		errs = append(errs, err)
	}
	log.Info("ztunnel proxy stopped")
	return errors.Join(errs...)
}

// serveWhenFree serves s on its address. While another process holds the
// address (the ztunnel this one replaces, still draining) it retries until
// the address is free or ctx ends, so a takeover does not fail on the admin
// ports.
func serveWhenFree(ctx context.Context, s *http.Server, log *zap.Logger) error {
	warned := false
	for {
		err := s.ListenAndServe()
		switch {
		case errors.Is(err, http.ErrServerClosed):
			return nil
		case !errors.Is(err, syscall.EADDRINUSE):
			return err
		}
		if !warned {
			log.Warn("address in use, waiting for it", zap.String("addr", s.Addr))
			warned = true
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(250 * time.Millisecond):
		}
	}
}
