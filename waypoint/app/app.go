package app

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"go.uber.org/zap"
	"google.golang.org/grpc"

	"github.com/ambient-mesh/ambient/pkg/admin"
	"github.com/ambient-mesh/ambient/pkg/certs"
	"github.com/ambient-mesh/ambient/pkg/hbone"
	"github.com/ambient-mesh/ambient/pkg/identity"
	"github.com/ambient-mesh/ambient/pkg/spiffe"
	"github.com/ambient-mesh/ambient/pkg/version"
	"github.com/ambient-mesh/ambient/pkg/xds"
	"github.com/ambient-mesh/ambient/waypoint/config"
	"github.com/ambient-mesh/ambient/waypoint/listener"
	"github.com/ambient-mesh/ambient/waypoint/state"
)

// localCATTL is the validity of the --ca=local root.
const localCATTL = 365 * 24 * time.Hour

// App is a waypoint: build it with New, serve with Run.
type App struct {
	cfg   config.Config
	log   *zap.Logger
	level zap.AtomicLevel
	id    spiffe.Identity

	localCA *certs.CA        // --ca=local only
	caConn  *grpc.ClientConn // --ca=istiod only
	ids     *identity.Manager
	store   *state.Store
	h       *handler
	xds     *xds.Client // nil with --local-config
	reg     *prometheus.Registry
	tunnels *hbone.Client
	lis     *listener.Listener
	hsrv    *hbone.Server

	hboneLn, adminLn, metricsLn, readyLn net.Listener

	loaded   atomic.Bool // --local-config applied
	draining atomic.Bool
}

// Addrs are the addresses an App listens on (ports chosen when configured 0).
type Addrs struct {
	HBONE, Admin, Metrics, Ready netip.AddrPort
}

// New builds the waypoint and binds its ports; nothing is served before Run.
// With --local-config the file is loaded and applied here, so a bad file
// fails start-up.
func New(cfg config.Config, logger *zap.Logger, level zap.AtomicLevel) (_ *App, err error) {
	a := &App{cfg: cfg, log: logger, level: level, id: cfg.Identity(), store: state.NewStore()}
	defer func() {
		if err != nil {
			a.closeAll()
		}
	}()
	if err := a.buildIdentity(); err != nil {
		return nil, err
	}
	a.h = newHandler(cfg.ResourcePrefix(), a.store)
	if err := a.buildConfigSource(); err != nil {
		return nil, err
	}
	a.reg = prometheus.NewRegistry()
	a.reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	// The waypoint's own certificate: fetches, renewal failures, expiry
	// (waypoint_certificate_*), as ztunnel exports them for its identities.
	a.reg.MustRegister(a.ids.Collector())
	metrics, err := listener.NewMetrics(a.reg)
	if err != nil {
		return nil, fmt.Errorf("listener metrics: %w", err)
	}
	a.tunnels, err = hbone.NewClient(hbone.ClientConfig{Certs: ownCert{a}, Bundle: a.ids.Bundle})
	if err != nil {
		return nil, fmt.Errorf("HBONE client: %w", err)
	}
	a.lis, err = listener.New(listener.Config{
		State: a.store.Load, Identity: a.id, Tunnels: a.tunnels, Metrics: metrics, Logger: logger,
		MaxConnections: cfg.MaxConnections, MaxRequests: cfg.MaxRequests,
	})
	if err != nil {
		return nil, fmt.Errorf("listener: %w", err)
	}
	a.hsrv, err = hbone.NewServer(hbone.ServerConfig{
		GetCertificate: func(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
			return a.ids.GetCertificate(hello.Context(), a.id)
		},
		Bundle: a.ids.Bundle, Handler: a.lis, Logger: logger,
	})
	if err != nil {
		return nil, fmt.Errorf("HBONE server: %w", err)
	}
	for _, p := range []struct {
		ln   *net.Listener
		port uint16
		what string
	}{{&a.hboneLn, cfg.HBONEPort, "HBONE"}, {&a.adminLn, cfg.AdminPort, "admin"}, {&a.metricsLn, cfg.MetricsPort, "metrics"}, {&a.readyLn, cfg.ReadyPort, "readiness"}} {
		ln, err := net.Listen("tcp", cfg.Addr(p.port))
		if err != nil {
			return nil, fmt.Errorf("listen for %s on %s (is another process using the port?): %w", p.what, cfg.Addr(p.port), err)
		}
		*p.ln = ln
	}
	return a, nil
}

// buildIdentity makes the certificate manager: the CA client (or a local
// CA) and the trusted roots.
func (a *App) buildIdentity() error {
	cfg := a.cfg
	var (
		fetcher identity.Fetcher
		roots   []*x509.Certificate
		err     error
	)
	switch cfg.CA {
	case config.CALocal:
		// Peers are trusted only when the local CA issued them.
		a.localCA, err = certs.NewSelfSignedCA(cfg.TrustDomain, localCATTL)
		if err != nil {
			return fmt.Errorf("local CA: %w", err)
		}
		chain := a.localCA.Chain()
		roots = []*x509.Certificate{chain[len(chain)-1]}
		fetcher = identity.LocalFetcher{CA: a.localCA}
	default:
		var rootPEM []byte
		roots, rootPEM, err = readRoots(cfg.RootCertFile, cfg.NeedsRootCert())
		if err != nil {
			return err
		}
		var pem []byte
		if !config.Plaintext(cfg.CAAddress) {
			pem = rootPEM
		}
		a.caConn, err = identity.DialCA(cfg.CAAddress, pem, "")
		if err != nil {
			return fmt.Errorf("CA client: %w", err)
		}
		fetcher, err = identity.NewCAClient(identity.CAClientOptions{Conn: a.caConn, TokenPath: cfg.TokenFile})
		if err != nil {
			return fmt.Errorf("CA client: %w", err)
		}
	}
	a.ids, err = identity.NewManager(identity.Options{Fetcher: fetcher, Logger: a.log, TrustDomain: cfg.TrustDomain, Roots: roots, MetricPrefix: "waypoint"})
	if err != nil {
		return fmt.Errorf("identity manager: %w", err)
	}
	return nil
}

// readRoots reads --root-cert. A missing file is an error only when
// istiod-lite is reached over TLS.
func readRoots(path string, required bool) ([]*x509.Certificate, []byte, error) {
	if path == "" {
		return nil, nil, nil
	}
	pem, err := os.ReadFile(path)
	if err != nil {
		if !required && errors.Is(err, os.ErrNotExist) {
			return nil, nil, nil
		}
		return nil, nil, fmt.Errorf("read --root-cert (is the istio-ca-root-cert ConfigMap mounted?): %w", err)
	}
	roots, err := certs.ParseCertsPEM(pem)
	if err != nil {
		return nil, nil, fmt.Errorf("--root-cert %s: %w", path, err)
	}
	return roots, pem, nil
}

// buildConfigSource loads --local-config, or makes the xDS client.
func (a *App) buildConfigSource() error {
	cfg := a.cfg
	if !cfg.UsesXDS() {
		r, err := LoadLocalConfig(cfg.LocalConfig)
		if err != nil {
			return err
		}
		if err := a.h.load(r); err != nil {
			return fmt.Errorf("local config %s: %w", cfg.LocalConfig, err)
		}
		a.loaded.Store(true)
		return nil
	}
	var tlsCfg *tls.Config
	if !config.Plaintext(cfg.XDSAddress) {
		_, rootPEM, err := readRoots(cfg.RootCertFile, true)
		if err != nil {
			return err
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(rootPEM) {
			return fmt.Errorf("--root-cert %s: no PEM certificate found", cfg.RootCertFile)
		}
		host, _, _ := net.SplitHostPort(cfg.XDSAddress)
		tlsCfg = &tls.Config{RootCAs: pool, ServerName: host, MinVersion: tls.VersionTLS12}
	}
	c, err := xds.New(a.log, xds.Config{
		Address: cfg.XDSAddress, TLS: tlsCfg, TokenFile: cfg.TokenFile,
		NodeID: cfg.NodeID(), NodeMetadata: cfg.NodeMetadata(), Types: xds.WaypointTypes,
	}, a.h.handlers())
	if err != nil {
		return fmt.Errorf("xDS client: %w", err)
	}
	a.xds = c
	return nil
}

// ownCert is the HBONE client's certificate source: the waypoint's own
// identity only.
type ownCert struct{ a *App }

func (o ownCert) ClientCertificate(ctx context.Context, id spiffe.Identity) (*tls.Certificate, error) {
	if id != o.a.id {
		return nil, fmt.Errorf("waypoint has no certificate for %s (only %s)", id, o.a.id)
	}
	return o.a.ids.GetCertificate(ctx, id)
}

// Addrs returns the bound addresses.
func (a *App) Addrs() Addrs {
	ap := func(ln net.Listener) netip.AddrPort { return netip.MustParseAddrPort(ln.Addr().String()) }
	return Addrs{HBONE: ap(a.hboneLn), Admin: ap(a.adminLn), Metrics: ap(a.metricsLn), Ready: ap(a.readyLn)}
}

// LocalCA is the in-memory CA of --ca=local (nil otherwise): tests and
// benchmarks issue their clients' certificates from it.
func (a *App) LocalCA() *certs.CA { return a.localCA }

// Snapshot is the current configuration.
func (a *App) Snapshot() *state.Snapshot { return a.store.Load() }

// Ready reports why the waypoint is not ready, or nil: it needs its
// certificate and its configuration (xDS synced once for all four types,
// or the local file loaded), and is not ready while draining.
func (a *App) Ready() error {
	if a.draining.Load() {
		return errors.New("draining")
	}
	if err := a.certReady(); err != nil {
		return err
	}
	if a.xds == nil {
		if !a.loaded.Load() {
			return errors.New("local config not loaded")
		}
		return nil
	}
	st := a.xds.State()
	if !st.Synced() {
		var waiting []string
		for _, t := range xds.WaypointTypes {
			if !st.Types[t].Synced {
				waiting = append(waiting, xds.ShortType(t))
			}
		}
		return fmt.Errorf("xDS from %s not synced yet (waiting for %v; connected=%v, last error %q)", st.Address, waiting, st.Connected, st.LastError)
	}
	return nil
}

func (a *App) certReady() error {
	want := a.id.String()
	for _, ci := range a.ids.Snapshot() {
		if ci.Identity != want {
			continue
		}
		if ci.State == identity.StateAvailable {
			return nil
		}
		return fmt.Errorf("certificate for %s is %s: %s", want, ci.State, ci.Error)
	}
	return fmt.Errorf("certificate for %s not requested yet", want)
}

// Run serves until ctx ends (SIGTERM), then drains: readiness turns 503,
// the HBONE port stops accepting, open tunnels and requests get up to
// --drain-timeout to finish, and everything is closed. It returns an error
// when a port fails while serving.
func (a *App) Run(ctx context.Context) error {
	a.log.Info("waypoint starting", zap.String("version", version.String()), a.cfg.Field(),
		zap.Stringer("hbone", a.hboneLn.Addr()), zap.Stringer("admin", a.adminLn.Addr()),
		zap.Stringer("metrics", a.metricsLn.Addr()), zap.Stringer("ready", a.readyLn.Addr()))
	a.ids.Prefetch(a.id)

	failed := make(chan error, 5)
	var wg sync.WaitGroup
	serve := func(what string, f func() error) {
		wg.Go(func() {
			if err := f(); err != nil && !a.draining.Load() {
				failed <- fmt.Errorf("%s: %w", what, err)
			}
		})
	}
	adminSrv := a.httpServer(a.adminHandler())
	metricsSrv := a.httpServer(admin.Metrics(a.reg))
	readySrv := a.httpServer(admin.Ready(a.Ready))
	serve("HBONE server", func() error { return a.hsrv.Serve(a.hboneLn) })
	serve("admin server", func() error { return ignoreClosed(adminSrv.Serve(a.adminLn)) })
	serve("metrics server", func() error { return ignoreClosed(metricsSrv.Serve(a.metricsLn)) })
	serve("readiness server", func() error { return ignoreClosed(readySrv.Serve(a.readyLn)) })
	xctx, xcancel := context.WithCancel(context.Background())
	defer xcancel()
	if a.xds != nil {
		serve("xDS client", func() error { return a.xds.Run(xctx) })
	}

	var runErr error
	select {
	case <-ctx.Done():
		a.log.Info("waypoint draining", zap.Duration("timeout", a.cfg.DrainTimeout))
	case runErr = <-failed:
		a.log.Error("waypoint failed, shutting down", zap.Error(runErr))
	}
	a.draining.Store(true)
	a.drain()
	xcancel()
	adminSrv.Close()
	metricsSrv.Close()
	readySrv.Close()
	wg.Wait()
	a.closeAll()
	a.log.Info("waypoint stopped")
	return runErr
}

// drain stops accepting tunnels and waits up to the drain timeout for open
// ones, then closes what is left.
func (a *App) drain() {
	dctx, cancel := context.WithTimeout(context.Background(), a.cfg.DrainTimeout)
	defer cancel()
	a.hboneLn.Close() // stop accepting before the listener stops serving
	var wg sync.WaitGroup
	wg.Go(func() {
		if err := a.hsrv.Shutdown(dctx); err != nil {
			a.log.Warn("HBONE drain incomplete", zap.Error(err))
		}
	})
	if err := a.lis.Shutdown(dctx); err != nil {
		a.log.Warn("listener drain incomplete", zap.Error(err))
	}
	wg.Wait()
	tunnels, requests := a.lis.Stats()
	a.log.Info("waypoint drained", zap.Int64("tunnels", tunnels), zap.Int64("requests", requests))
}

// closeAll releases everything New made; safe on a partly built App.
func (a *App) closeAll() {
	if a.hsrv != nil {
		a.hsrv.Close()
	}
	if a.lis != nil {
		a.lis.Close()
	}
	if a.tunnels != nil {
		a.tunnels.Close()
	}
	for _, ln := range []net.Listener{a.hboneLn, a.adminLn, a.metricsLn, a.readyLn} {
		if ln != nil {
			ln.Close()
		}
	}
	if a.ids != nil {
		a.ids.Close()
	}
	if a.caConn != nil {
		a.caConn.Close()
	}
}

func (a *App) httpServer(h http.Handler) *http.Server {
	return &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second,
		ErrorLog: zap.NewStdLog(a.log.WithOptions(zap.IncreaseLevel(zap.WarnLevel)))}
}

func ignoreClosed(err error) error {
	if errors.Is(err, http.ErrServerClosed) {
		return nil
	}
	return err
}

// adminHandler serves /config_dump, /logging and pprof on the admin port.
func (a *App) adminHandler() http.Handler {
	ad := admin.New(a.level)
	for section, typ := range map[string]string{
		"listeners": xds.ListenerType, "routes": xds.RouteType,
		"clusters": xds.ClusterType, "endpoints": xds.EndpointType,
	} {
		ad.Register(section, func() any { return a.h.summary(typ) })
	}
	ad.Register("certificates", func() any { return a.ids.Snapshot() })
	ad.Register("xds", func() any {
		if a.xds == nil {
			return map[string]any{"localConfig": a.cfg.LocalConfig, "loaded": a.loaded.Load()}
		}
		return a.xds.State()
	})
	ad.Register("state", func() any {
		s := a.store.Load()
		return map[string]any{"version": s.Version, "chains": len(s.Chains), "routes": len(s.Routes), "clusters": len(s.Clusters)}
	})
	return ad.Handler()
}
