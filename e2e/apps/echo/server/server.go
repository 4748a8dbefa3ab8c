package server

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"
	"golang.org/x/net/http2"
	//lint:ignore SA1019 net/http cannot serve the h2c Upgrade (RFC 7540 §3.2); only this package can.
	"golang.org/x/net/http2/h2c"
	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/ambient-mesh/ambient/e2e/apps/echo/api"
)

// DefaultDrainTimeout bounds the drain after Run's context ends.
const DefaultDrainTimeout = 5 * time.Second

// Config configures Run.
type Config struct {
	Identity api.Identity
	// Logger is the server's logger; nil discards.
	Logger *zap.Logger
	// DrainTimeout bounds how long open connections and requests may run
	// after the context ends; 0 means DefaultDrainTimeout.
	DrainTimeout time.Duration
	// TLS is the config of the TLS listeners (must hold a certificate);
	// nil makes a self-signed one when there are TLS listeners.
	TLS *tls.Config
}

// Listeners are the sockets Run serves, by protocol. Any may be empty.
type Listeners struct {
	// TCP listeners greet and echo raw bytes.
	TCP []net.Listener
	// HTTP listeners serve HTTP/1.1 and h2c (prior knowledge and upgrade).
	HTTP []net.Listener
	// GRPC listeners serve echo.Echo and grpc.health.v1.Health.
	GRPC []net.Listener
	// TLS listeners serve HTTP/1.1 and HTTP/2 over TLS (ALPN).
	TLS []net.Listener
}

// Run serves ls until ctx ends, then stops accepting and drains open
// connections for up to cfg.DrainTimeout. It takes ownership of the
// listeners. It returns early with an error when a listener fails.
func Run(ctx context.Context, cfg Config, ls Listeners) error {
	log := cfg.Logger
	if log == nil {
		log = zap.NewNop()
	}
	drain := cfg.DrainTimeout
	if drain <= 0 {
		drain = DefaultDrainTimeout
	}
	failEvery := new(atomic.Uint64)
	h := newHandler(cfg.Identity, log, failEvery)

	plain, err := newPlainHTTPServer(h, log)
	if err != nil {
		closeAll(ls)
		return err
	}
	var secure *http.Server
	if len(ls.TLS) > 0 {
		tc := cfg.TLS
		if tc == nil {
			if tc, err = SelfSignedTLSConfig(cfg.Identity.Hostname); err != nil {
				closeAll(ls)
				return err
			}
		}
		secure = &http.Server{
			Handler:           h,
			TLSConfig:         tc.Clone(),
			ReadHeaderTimeout: 30 * time.Second,
			ErrorLog:          zap.NewStdLog(log.Named("tls")),
		}
	}
	gs := grpc.NewServer()
	api.RegisterEchoServer(gs, newGRPCEcho(cfg.Identity, log, failEvery))
	hs := health.NewServer()
	hs.SetServingStatus(api.GRPCService, healthpb.HealthCheckResponse_SERVING)
	healthpb.RegisterHealthServer(gs, hs)
	tcp := newTCPServer(cfg.Identity, log)

	var wg sync.WaitGroup
	errc := make(chan error, len(ls.TCP)+len(ls.HTTP)+len(ls.GRPC)+len(ls.TLS))
	start := func(proto string, l net.Listener, serve func(net.Listener) error) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := serve(l); err != nil && !errors.Is(err, http.ErrServerClosed) && !errors.Is(err, grpc.ErrServerStopped) {
				errc <- fmt.Errorf("serve %s on %s: %w", proto, l.Addr(), err)
			}
		}()
	}
	for _, l := range ls.TCP {
		start("tcp", l, tcp.serve)
	}
	for _, l := range ls.HTTP {
		start("http", l, plain.Serve)
	}
	for _, l := range ls.TLS {
		start("https", l, func(l net.Listener) error { return secure.ServeTLS(l, "", "") })
	}
	for _, l := range ls.GRPC {
		start("grpc", l, gs.Serve)
	}

	var runErr error
	select {
	case <-ctx.Done():
	case runErr = <-errc:
	}
	log.Info("draining", zap.Duration("timeout", drain))
	dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), drain)
	defer cancel()
	hs.Shutdown()
	var sd sync.WaitGroup
	shut := func(f func()) {
		sd.Add(1)
		go func() {
			defer sd.Done()
			f()
		}()
	}
	shut(func() { tcp.shutdown(dctx) })
	for _, s := range []*http.Server{plain, secure} {
		if s == nil {
			continue
		}
		shut(func() {
			if err := s.Shutdown(dctx); err != nil {
				_ = s.Close()
			}
		})
	}
	shut(func() {
		done := make(chan struct{})
		go func() {
			gs.GracefulStop()
			close(done)
		}()
		select {
		case <-done:
		case <-dctx.Done():
			gs.Stop()
			<-done
		}
	})
	sd.Wait()
	wg.Wait()
	if runErr == nil {
		select {
		case runErr = <-errc:
		default:
		}
	}
	log.Info("stopped")
	return runErr
}

// newPlainHTTPServer serves HTTP/1.1, h2c with prior knowledge (net/http)
// and h2c upgrade (x/net h2c), all drained by Shutdown.
func newPlainHTTPServer(h http.Handler, log *zap.Logger) (*http.Server, error) {
	//lint:ignore SA1019 net/http has no h2c upgrade; x/net/http2 serves upgraded conns.
	h2s := &http2.Server{}
	s := &http.Server{
		//lint:ignore SA1019 see above; the h2c handler only takes over "Upgrade: h2c" requests.
		Handler:           h2c.NewHandler(h, h2s),
		ReadHeaderTimeout: 30 * time.Second,
		ErrorLog:          zap.NewStdLog(log.Named("http")),
	}
	s.Protocols = new(http.Protocols)
	s.Protocols.SetHTTP1(true)
	s.Protocols.SetUnencryptedHTTP2(true)
	// Registers h2s's graceful shutdown (GOAWAY) with s.Shutdown and serves
	// prior-knowledge h2c with the same h2s.
	//lint:ignore SA1019 see above.
	if err := http2.ConfigureServer(s, h2s); err != nil {
		return nil, fmt.Errorf("configure h2c: %w", err)
	}
	return s, nil
}

func closeAll(ls Listeners) {
	for _, group := range [][]net.Listener{ls.TCP, ls.HTTP, ls.GRPC, ls.TLS} {
		for _, l := range group {
			_ = l.Close()
		}
	}
}
