package app

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"go.uber.org/zap"
	"google.golang.org/grpc"
	gwlisters "sigs.k8s.io/gateway-api/pkg/client/listers/apis/v1"

	"github.com/ambient-mesh/ambient/istiod-lite/ca"
	"github.com/ambient-mesh/ambient/istiod-lite/config"
	"github.com/ambient-mesh/ambient/istiod-lite/kube"
	"github.com/ambient-mesh/ambient/istiod-lite/model"
	"github.com/ambient-mesh/ambient/istiod-lite/status"
	"github.com/ambient-mesh/ambient/istiod-lite/waypointctl"
	"github.com/ambient-mesh/ambient/istiod-lite/xds"
	"github.com/ambient-mesh/ambient/pkg/admin"
	"github.com/ambient-mesh/ambient/pkg/certs"
	pkgkube "github.com/ambient-mesh/ambient/pkg/kube"
	"github.com/ambient-mesh/ambient/pkg/version"
)

// LeaseName is the coordination.k8s.io Lease the replicas elect a leader with.
const LeaseName = "istiod-lite"

// syncWarnAfter is how long the start waits for the caches before warning
// (then it warns again each period and keeps waiting).
const syncWarnAfter = 30 * time.Second

// shutdownGrace bounds the graceful stop of the gRPC and HTTP servers.
const shutdownGrace = 5 * time.Second

// Deps are what New takes from outside besides the Config. Tests fill the
// clients with fake clientsets and pass loopback listeners.
type Deps struct {
	Clients *pkgkube.Clients
	// Listeners, when set, replace the configured ports.
	PlaintextListener, TLSListener, MonitoringListener, ReadyListener net.Listener
}

// App is a built istiod-lite; Run runs it.
type App struct {
	cfg  config.Config
	log  *zap.Logger
	deps Deps

	reg       *prometheus.Registry
	informers *kube.Informers
	watcher   *kube.Watcher
	debouncer *xds.Debouncer
	pipe      *pipeline
	xds       *xds.Server
	ca        *certs.CA
	caServer  *ca.Server
	serving   *servingCert
	xdsAuth   xds.Authenticator
	publisher *ca.RootPublisher
	reloader  *ca.Reloader
	waypoints *waypointctl.Controller
	status    *status.Writer
	elector   *pkgkube.LeaderElector

	synced chan struct{} // closed once the informers have synced
}

// Build creates the API clients from cfg (kubeconfig or in-cluster) and
// calls New.
func Build(ctx context.Context, cfg config.Config, log *zap.Logger) (*App, error) {
	rc, err := pkgkube.RESTConfig(cfg.Kubeconfig, "istiod-lite/"+version.Version)
	if err != nil {
		return nil, fmt.Errorf("kubernetes client configuration: %w", err)
	}
	clients, err := pkgkube.NewClients(rc)
	if err != nil {
		return nil, fmt.Errorf("kubernetes clients: %w", err)
	}
	return New(ctx, cfg, log, Deps{Clients: clients})
}

// New builds every part. It loads (or creates) the signing CA through the
// API server, so it needs ctx; nothing runs until Run.
func New(ctx context.Context, cfg config.Config, log *zap.Logger, deps Deps) (*App, error) {
	if deps.Clients == nil {
		return nil, errors.New("istiod-lite: no Kubernetes clients")
	}
	a := &App{cfg: cfg, log: log, deps: deps, reg: prometheus.NewRegistry(), synced: make(chan struct{})}
	a.reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	kc := deps.Clients.Kube

	// Informers (trimmed) and the rebuild pipeline.
	inf, err := kube.NewInformers(kube.Clients{Kube: kc, Istio: deps.Clients.Istio, Gateway: deps.Clients.Gateway}, 0)
	if err != nil {
		return nil, fmt.Errorf("informers: %w", err)
	}
	a.informers = inf
	// The CA's node authorizer reads the same (trimmed) pod cache: it keeps
	// namespace, name, serviceAccountName, nodeName and phase.
	if err := ca.AddNodeIndex(inf.Pods); err != nil {
		return nil, fmt.Errorf("pod node index: %w", err)
	}
	a.watcher, err = kube.NewWatcher(log, append(inf.ModelInformers(), inf.HTTPRoutes, inf.GRPCRoutes)...)
	if err != nil {
		return nil, fmt.Errorf("watcher: %w", err)
	}
	a.debouncer = xds.NewDebouncer(xds.DefaultDebounceQuiet, xds.DefaultDebounceMaxWait)
	a.xds = xds.New(log, xds.Options{Registerer: a.reg, WaitForReady: true})
	a.pipe = &pipeline{
		log: log, listers: inf.Listers(), srv: a.xds,
		httpRoutes: gwlisters.NewHTTPRouteLister(inf.HTTPRoutes.GetIndexer()),
		grpcRoutes: gwlisters.NewGRPCRouteLister(inf.GRPCRoutes.GetIndexer()),
		cfg:        model.Config{TrustDomain: cfg.TrustDomain, RootNamespace: cfg.Namespace, SystemNamespace: cfg.Namespace}.WithDefaults(),
		takeBatch:  a.watcher.TakeBatch,
		metrics:    newPipelineMetrics(a.reg),
	}
	a.reg.MustRegister(a.watcher.Collectors()...)

	// CA: every replica reads (or races to create) the same Secret.
	signer, source, err := ca.LoadOrCreateCA(ctx, kc, ca.StoreOptions{Namespace: cfg.Namespace, TrustDomain: cfg.TrustDomain}, log)
	if err != nil {
		return nil, fmt.Errorf("load the signing CA: %w", err)
	}
	if cfg.CASource == config.CASourceCACerts && source != ca.SourcePlugged {
		return nil, fmt.Errorf("--ca-source=cacerts but Secret %s/%s does not exist: create it (ca-cert.pem, ca-key.pem, cert-chain.pem, root-cert.pem) or use --ca-source=selfsigned", cfg.Namespace, ca.PluggedSecretName)
	}
	log.Info("signing CA loaded", zap.String("source", string(source)))
	a.ca = signer
	tr := ca.TokenReviewAuthenticator{Client: kc, Audiences: []string{ca.DefaultAudience}}
	a.caServer, err = ca.NewServer(ca.Options{
		CA: signer, TrustDomain: cfg.TrustDomain, Authenticator: tr, Client: kc,
		Pods:        ca.InformerPodsOnNode{Indexer: inf.Pods.GetIndexer()},
		NodeProxies: []ca.NamespacedName{{Namespace: cfg.ZtunnelNamespace, Name: cfg.ZtunnelServiceAccount}},
		Registry:    a.reg, Logger: log,
	})
	if err != nil {
		return nil, fmt.Errorf("CA server: %w", err)
	}
	a.serving = newServingCert(signer, cfg.Namespace, time.Now)
	a.xdsAuth = tokenReviewXDSAuth(tr)

	// Writers, run on the leader only.
	if cfg.LeaderElect {
		id := cfg.PodName
		if id == "" {
			id = pkgkube.DefaultIdentity()
		}
		a.elector, err = pkgkube.NewLeaderElector(kc, pkgkube.ElectionConfig{Name: LeaseName, Namespace: cfg.Namespace, Identity: id}, log)
		if err != nil {
			return nil, fmt.Errorf("leader election: %w", err)
		}
	}
	a.publisher = ca.NewRootPublisher(kc, signer.RootsPEM(), a.isLeader, 0, log)
	// cacerts is re-read: installing or rotating a plugged-in CA needs no
	// restart. (The 15012 serving certificate stays on the startup CA, which
	// the proxies' mounted root file trusts.)
	a.reloader, err = ca.NewReloader(ca.ReloaderOptions{Client: kc, Namespace: cfg.Namespace, Current: signer, Logger: log,
		OnChange: func(c *certs.CA) {
			a.caServer.SetCA(c)
			a.publisher.SetRoots(c.RootsPEM())
		}})
	if err != nil {
		return nil, fmt.Errorf("CA reloader: %w", err)
	}
	xdsAddr := "istiod-lite." + cfg.Namespace + ".svc:" + strconv.Itoa(firstNonZero(cfg.XDSTLSPort, 15012))
	a.waypoints, err = waypointctl.New(kc, deps.Clients.Gateway, waypointctl.Config{
		Image: cfg.WaypointImage, XDSAddress: xdsAddr, TrustDomain: cfg.TrustDomain, LogLevel: cfg.LogLevel,
	}, log, a.reg)
	if err != nil {
		return nil, fmt.Errorf("waypoint controller: %w", err)
	}
	a.status, err = status.New(status.Options{
		Istio: deps.Clients.Istio, Gateway: deps.Clients.Gateway,
		Policies: inf.Listers().AuthorizationPolicies, HTTPRoutes: a.pipe.httpRoutes, GRPCRoutes: a.pipe.grpcRoutes,
		Source: a.pipe.desiredStatus, Controller: waypointctl.ControllerName, Registerer: a.reg, Logger: log,
	})
	if err != nil {
		return nil, fmt.Errorf("status writer: %w", err)
	}
	a.pipe.onBuilt = a.status.Trigger
	if a.elector != nil {
		a.elector.OnStartedLeading("waypoint-controller", a.waypoints.Run)
		a.elector.OnStartedLeading("status-writer", a.status.Run)
		a.elector.OnStartedLeading("ca-root-publisher", a.publisher.ReconcileAll)
	}
	return a, nil
}

func firstNonZero(vs ...int) int {
	for _, v := range vs {
		if v != 0 {
			return v
		}
	}
	return 0
}

func (a *App) isLeader() bool { return a.elector == nil || a.elector.IsLeader() }

// tokenReviewXDSAuth authenticates xDS callers on the TLS port by their
// bearer token (audience istio-ca), as the CA does.
func tokenReviewXDSAuth(tr ca.Authenticator) xds.Authenticator {
	return xds.AuthenticatorFunc(func(ctx context.Context) (xds.Identity, error) {
		tok, err := xds.BearerToken(ctx)
		if err != nil {
			return xds.Identity{}, err
		}
		c, err := tr.Authenticate(ctx, tok)
		if err != nil {
			return xds.Identity{}, err
		}
		return xds.Identity{Namespace: c.Namespace, ServiceAccount: c.ServiceAccount}, nil
	})
}

// Ready reports whether the informers synced and the first model was pushed.
func (a *App) Ready() error {
	select {
	case <-a.synced:
	default:
		return errors.New("informer caches not synced yet")
	}
	if !a.xds.Ready() {
		return errors.New("first xDS push not done yet")
	}
	return nil
}

// Run runs every part until ctx ends (returns nil after a graceful shutdown)
// or one part fails (returns its error after stopping the others).
func (a *App) Run(ctx context.Context) error {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	var wg sync.WaitGroup
	var errOnce sync.Once
	var firstErr error
	run := func(name string, fn func(context.Context) error) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := fn(ctx); err != nil && ctx.Err() == nil {
				errOnce.Do(func() { firstErr = fmt.Errorf("%s: %w", name, err) })
				cancel(err)
			}
		}()
	}

	a.informers.Start(ctx)
	run("model", a.runModel)
	run("grpc", a.serveGRPC)
	if err := a.serveHTTP(run); err != nil {
		cancel(err)
		wg.Wait()
		a.informers.Shutdown()
		return err
	}
	run("ca-root-publisher", a.publisher.Run)
	run("ca-reloader", a.reloader.Run)
	if a.elector != nil {
		run("leader-election", a.elector.Run)
	} else {
		run("waypoint-controller", a.waypoints.Run)
		run("status-writer", a.status.Run)
	}
	<-ctx.Done()
	a.log.Info("shutting down")
	wg.Wait()
	a.informers.Shutdown()
	return firstErr
}

// runModel waits for the caches, then runs the single rebuild goroutine.
func (a *App) runModel(ctx context.Context) error {
	for {
		wctx, cancel := context.WithTimeout(ctx, syncWarnAfter)
		err := a.informers.WaitForSync(wctx)
		cancel()
		if err == nil {
			break
		}
		if ctx.Err() != nil {
			return err
		}
		a.log.Warn("informer caches not synced yet, still waiting", zap.Error(err))
	}
	close(a.synced)
	a.log.Info("informer caches synced")
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		a.watcher.Run(ctx, a.debouncer.Trigger)
	}()
	a.debouncer.Run(ctx, func() {
		if err := a.pipe.rebuild(); err != nil {
			a.log.Error("model rebuild failed", zap.Error(err))
		}
	})
	wg.Wait()
	return nil
}

func (a *App) serveGRPC(ctx context.Context) error {
	stop := context.AfterFunc(ctx, a.xds.Close) // end ADS streams so GracefulStop can finish
	defer stop()
	sc := xds.ServeConfig{
		PlaintextListener: a.deps.PlaintextListener, TLSListener: a.deps.TLSListener,
		TLS:           &tls.Config{GetCertificate: a.serving.GetCertificate, MinVersion: tls.VersionTLS12},
		Authenticator: a.xdsAuth,
		Register: func(g grpc.ServiceRegistrar) {
			a.xds.Register(g)
			a.caServer.Register(g)
		},
		ShutdownGrace: shutdownGrace,
	}
	if sc.PlaintextListener == nil && a.cfg.XDSPort != 0 {
		sc.PlaintextAddr = ":" + strconv.Itoa(a.cfg.XDSPort)
	}
	if sc.TLSListener == nil && a.cfg.XDSTLSPort != 0 {
		sc.TLSAddr = ":" + strconv.Itoa(a.cfg.XDSTLSPort)
	}
	return xds.Serve(ctx, a.log, sc)
}

// Handler is the monitoring port's mux (15014).
func (a *App) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("/metrics", admin.Metrics(a.reg))
	mux.Handle("/debug/connections", connectionsHandler(a.xds))
	mux.Handle("/debug/model", modelHandler(a.pipe))
	mux.Handle("/version", versionHandler())
	return mux
}

// ReadyHandler is the readiness port's mux (8080).
func (a *App) ReadyHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/ready", func(w http.ResponseWriter, _ *http.Request) {
		if err := a.Ready(); err != nil {
			http.Error(w, "not ready: "+err.Error(), http.StatusServiceUnavailable)
			return
		}
		_, _ = io.WriteString(w, "ready\n")
	})
	return mux
}

func (a *App) serveHTTP(run func(string, func(context.Context) error)) error {
	for _, s := range []struct {
		name string
		lis  net.Listener
		port int
		h    http.Handler
	}{
		{"monitoring", a.deps.MonitoringListener, a.cfg.MonitoringPort, a.Handler()},
		{"ready", a.deps.ReadyListener, a.cfg.ReadyPort, a.ReadyHandler()},
	} {
		lis := s.lis
		if lis == nil {
			if s.port == 0 {
				continue
			}
			var err error
			if lis, err = net.Listen("tcp", ":"+strconv.Itoa(s.port)); err != nil {
				return fmt.Errorf("listen %s port %d: %w", s.name, s.port, err)
			}
		}
		srv := &http.Server{Handler: s.h, ReadHeaderTimeout: 10 * time.Second}
		a.log.Info("http listening", zap.String("port", s.name), zap.String("address", lis.Addr().String()))
		run("http "+s.name, func(ctx context.Context) error {
			errc := make(chan error, 1)
			go func() { errc <- srv.Serve(lis) }()
			select {
			case err := <-errc:
				return fmt.Errorf("serve %s on %s: %w", s.name, lis.Addr(), err)
			case <-ctx.Done():
			}
			sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), shutdownGrace)
			defer cancel()
			_ = srv.Shutdown(sctx) // best effort at shutdown
			<-errc
			return nil
		})
	}
	return nil
}
