package proxy

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/ambient-mesh/ambient/pkg/hbone"
	"github.com/ambient-mesh/ambient/pkg/spiffe"
	"github.com/ambient-mesh/ambient/ztunnel/metrics"
	"github.com/ambient-mesh/ambient/ztunnel/proxy/conntrack"
	"github.com/ambient-mesh/ambient/ztunnel/proxy/inbound"
	"github.com/ambient-mesh/ambient/ztunnel/proxy/outbound"
	"github.com/ambient-mesh/ambient/ztunnel/proxy/passthrough"
	"github.com/ambient-mesh/ambient/ztunnel/route"
	"github.com/ambient-mesh/ambient/ztunnel/state"
)

// DefaultDrainTimeout is how long Run lets connections finish after its
// context ends.
const DefaultDrainTimeout = 30 * time.Second

// Certs supplies workload certificates: the source workload's as an HBONE
// client, the destination workload's as the HBONE server.
// ztunnel/identity's manager implements it.
type Certs interface {
	hbone.CertSource
	ServerCertificate(ctx context.Context, id spiffe.Identity) (*tls.Certificate, error)
}

// Config configures a Proxy.
type Config struct {
	// Store is ztunnel's state. Required.
	Store *state.Store
	// Local is this ztunnel's node and network.
	Local route.Local
	// Certs and Bundle: workload certificates and the trust bundle peers'
	// certificates must chain to. Required.
	Certs  Certs
	Bundle func() spiffe.Bundle
	// Logger; access log lines are written to it too. Required.
	Logger *zap.Logger
	// Metrics receives Istio TCP metrics; nil disables them.
	Metrics *metrics.Metrics

	// Listeners; a nil listener disables that role. The Proxy closes
	// them.
	Outbound, Inbound, InboundPlaintext net.Listener

	// OriginalDst of captured connections; default their local address.
	OriginalDst outbound.OriginalDstFunc
	// RouteOptions tune route.Route (e.g. HBONEPort in tests).
	RouteOptions route.Options
	// PodDial connects to local pods (inbound and plaintext inbound);
	// default inbound.PlainDial. inbound.TransparentDialer keeps the
	// client's IP.
	PodDial inbound.DialFunc
	// PassthroughDial opens outbound plaintext connections; default
	// net.Dialer.
	PassthroughDial outbound.Dialer
	// HBONE tunes the HTTP/2 connections of client and server;
	// HBONEDialTimeout bounds a new HBONE connection (default 10 s).
	HBONE            hbone.Limits
	HBONEDialTimeout time.Duration
	// HBONEDialContext opens HBONE TCP connections; default net.Dialer.
	HBONEDialContext func(ctx context.Context, network, addr string) (net.Conn, error)
	// DrainTimeout: how long Run lets connections finish after its context
	// ends (default 30 s).
	DrainTimeout time.Duration
}

// Proxy is ztunnel's data path.
type Proxy struct {
	cfg     Config
	log     *zap.Logger
	tracker *conntrack.Tracker
	client  *hbone.Client
	out     *outbound.Server
	plain   *passthrough.Server
	hsrv    *hbone.Server
}

// New checks cfg and builds a Proxy.
func New(cfg Config) (*Proxy, error) {
	switch {
	case cfg.Store == nil:
		return nil, errors.New("proxy: Store is required")
	case cfg.Certs == nil || cfg.Bundle == nil:
		return nil, errors.New("proxy: Certs and Bundle are required")
	case cfg.Logger == nil:
		return nil, errors.New("proxy: Logger is required")
	}
	if cfg.DrainTimeout <= 0 {
		cfg.DrainTimeout = DefaultDrainTimeout
	}
	p := &Proxy{cfg: cfg, log: cfg.Logger, tracker: conntrack.New(cfg.Logger.Named("access"))}
	var err error
	if cfg.Outbound != nil {
		p.client, err = hbone.NewClient(hbone.ClientConfig{
			Certs: cfg.Certs, Bundle: cfg.Bundle, DialTimeout: cfg.HBONEDialTimeout,
			DialContext: cfg.HBONEDialContext, Limits: cfg.HBONE,
		})
		if err != nil {
			return nil, fmt.Errorf("proxy: HBONE client: %w", err)
		}
		p.out, err = outbound.New(outbound.Config{
			Store: cfg.Store, Local: cfg.Local, Client: p.client, RouteOptions: cfg.RouteOptions,
			OriginalDst: cfg.OriginalDst, Dial: cfg.PassthroughDial, Tracker: p.tracker,
			Metrics: cfg.Metrics, Logger: cfg.Logger,
		})
		if err != nil {
			return nil, fmt.Errorf("proxy: %w", err)
		}
	}
	if cfg.Inbound != nil {
		h, err := inbound.New(inbound.Config{
			Store: cfg.Store, Local: cfg.Local, Certs: cfg.Certs, Dial: cfg.PodDial,
			Tracker: p.tracker, Metrics: cfg.Metrics, Logger: cfg.Logger.Named("inbound"),
		})
		if err != nil {
			return nil, fmt.Errorf("proxy: %w", err)
		}
		if p.hsrv, err = inbound.NewServer(h, cfg.Bundle, cfg.Logger.Named("hbone"), cfg.HBONE); err != nil {
			return nil, fmt.Errorf("proxy: %w", err)
		}
	}
	if cfg.InboundPlaintext != nil {
		p.plain, err = passthrough.New(passthrough.Config{
			Store: cfg.Store, Local: cfg.Local, OriginalDst: cfg.OriginalDst, Dial: cfg.PodDial,
			Tracker: p.tracker, Metrics: cfg.Metrics,
		})
		if err != nil {
			return nil, fmt.Errorf("proxy: %w", err)
		}
	}
	return p, nil
}

// Connections returns the connections being relayed, oldest first, for
// the admin server's /config_dump.
func (p *Proxy) Connections() []conntrack.Info { return p.tracker.Snapshot() }

// Run serves until ctx ends, then drains: no new connection is accepted,
// open ones may finish for DrainTimeout, after which they are closed. It
// returns when every connection is done.
func (p *Proxy) Run(ctx context.Context) error {
	// force ends in-flight dials and handshakes at the drain deadline.
	force, forceCancel := context.WithCancel(context.WithoutCancel(ctx))
	defer forceCancel()

	var handlers, loops sync.WaitGroup
	serve := func(ln net.Listener, name string, handle func(context.Context, net.Conn)) {
		loops.Go(func() { p.acceptLoop(ln, name, &handlers, func(c net.Conn) { handle(force, c) }) })
	}
	if p.out != nil {
		serve(p.cfg.Outbound, "outbound", p.out.Handle)
	}
	if p.plain != nil {
		serve(p.cfg.InboundPlaintext, "inbound_plaintext", p.plain.Handle)
	}
	hboneDone := make(chan error, 1)
	if p.hsrv != nil {
		go func() { hboneDone <- p.hsrv.Serve(p.cfg.Inbound) }()
	} else {
		hboneDone <- hbone.ErrServerClosed
	}
	p.log.Info("proxy started")

	<-ctx.Done()
	p.log.Info("proxy draining", zap.Duration("timeout", p.cfg.DrainTimeout), zap.Int("connections", p.tracker.Len()))
	for _, ln := range []net.Listener{p.cfg.Outbound, p.cfg.InboundPlaintext} {
		if ln != nil {
			ln.Close()
		}
	}
	loops.Wait()

	drainCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), p.cfg.DrainTimeout)
	defer cancel()
	shutdownDone := make(chan struct{})
	go func() {
		defer close(shutdownDone)
		if p.hsrv != nil {
			_ = p.hsrv.Shutdown(drainCtx) // closes what is left at the deadline
		}
	}()
	handlersDone := make(chan struct{})
	go func() { handlers.Wait(); close(handlersDone) }()

	select {
	case <-handlersDone:
	case <-drainCtx.Done():
		p.log.Warn("proxy drain deadline passed, closing connections", zap.Int("connections", p.tracker.Len()))
		forceCancel()
		p.tracker.CloseAll()
		<-handlersDone
	}
	<-shutdownDone
	if p.hsrv != nil {
		p.hsrv.Close()
		p.tracker.CloseAll() // inbound streams whose HBONE connection outlived Shutdown
	}
	<-hboneDone
	if p.client != nil {
		p.client.Close()
	}
	p.log.Info("proxy stopped")
	return nil
}

func (p *Proxy) acceptLoop(ln net.Listener, name string, handlers *sync.WaitGroup, handle func(net.Conn)) {
	var backoff time.Duration
	for {
		c, err := ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			// Like net/http: back off on transient errors (EMFILE, …).
			backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
			p.log.Error("accept failed", zap.String("listener", name), zap.Error(err), zap.Duration("retry_in", backoff))
			time.Sleep(backoff)
			continue
		}
		backoff = 0
		handlers.Go(func() { handle(c) })
	}
}
