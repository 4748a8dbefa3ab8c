package dns

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"syscall"

	"go.uber.org/zap"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"
)

// Watch keeps store up to date with the Services and EndpointSlices of the
// cluster until ctx is done. It stores NotReady(domain) until the informers
// have synced. The informer handlers only signal; one goroutine (this one)
// rebuilds the Index and is the store's single writer.
func Watch(ctx context.Context, client kubernetes.Interface, domain string, store *Store, log *zap.Logger) error {
	store.Set(NotReady(domain))
	f := informers.NewSharedInformerFactory(client, 0)
	svcs := f.Core().V1().Services()
	eps := f.Discovery().V1().EndpointSlices()
	kick := make(chan struct{}, 1)
	signal := func() {
		select {
		case kick <- struct{}{}:
		default:
		}
	}
	h := cache.ResourceEventHandlerFuncs{
		AddFunc:    func(any) { signal() },
		UpdateFunc: func(any, any) { signal() },
		DeleteFunc: func(any) { signal() },
	}
	for _, inf := range []cache.SharedIndexInformer{svcs.Informer(), eps.Informer()} {
		if _, err := inf.AddEventHandler(h); err != nil {
			return fmt.Errorf("dns: add informer handler: %w", err)
		}
	}
	f.Start(ctx.Done())
	defer f.Shutdown()
	for typ, ok := range f.WaitForCacheSync(ctx.Done()) {
		if !ok {
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("dns: informer for %v did not sync", typ)
		}
	}
	log.Info("dns informers synced")
	for {
		sl, err := svcs.Lister().List(labels.Everything())
		if err != nil {
			return fmt.Errorf("dns: list services: %w", err)
		}
		el, err := eps.Lister().List(labels.Everything())
		if err != nil {
			return fmt.Errorf("dns: list endpointslices: %w", err)
		}
		store.Set(BuildIndex(domain, sl, el))
		select {
		case <-ctx.Done():
			return nil
		case <-kick:
		}
	}
}

// Config configures Run.
type Config struct {
	Client kubernetes.Interface
	// Addr is where to listen, on UDP and TCP (e.g. 172.30.0.1:53).
	Addr netip.AddrPort
	// Domain is the cluster domain (DefaultDomain when empty).
	Domain string
	Logger *zap.Logger
	// Ready, if set, is called once both sockets are listening.
	Ready func(udp, tcp net.Addr)
}

// Run listens on cfg.Addr (UDP and TCP) and serves the cluster's names
// until ctx is done.
func Run(ctx context.Context, cfg Config) error {
	if cfg.Client == nil {
		return errors.New("dns: Config.Client is required")
	}
	if cfg.Domain == "" {
		cfg.Domain = DefaultDomain
	}
	if cfg.Logger == nil {
		cfg.Logger = zap.NewNop()
	}
	udp, tcp, addr, err := listen(ctx, cfg.Addr)
	if err != nil {
		return err
	}
	cfg.Logger.Info("dns server listening", zap.Stringer("addr", addr), zap.String("domain", cfg.Domain))
	if cfg.Ready != nil {
		cfg.Ready(udp.LocalAddr(), tcp.Addr())
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	store := &Store{}
	store.Set(NotReady(cfg.Domain))
	werr := make(chan error, 1)
	go func() {
		err := Watch(ctx, cfg.Client, cfg.Domain, store, cfg.Logger)
		if err != nil {
			cancel()
		}
		werr <- err
	}()
	serr := Serve(ctx, udp, tcp, store, cfg.Logger)
	cancel()
	return errors.Join(serr, <-werr)
}

// listen binds UDP and TCP on addr. With port 0 TCP takes the port the
// kernel chose for UDP; when that TCP port is taken already, it tries again
// with a new UDP port (a few times).
func listen(ctx context.Context, addr netip.AddrPort) (net.PacketConn, net.Listener, netip.AddrPort, error) {
	var lc net.ListenConfig
	for attempt := 1; ; attempt++ {
		udp, err := lc.ListenPacket(ctx, "udp", addr.String())
		if err != nil {
			return nil, nil, addr, fmt.Errorf("dns: listen udp %s: %w", addr, err)
		}
		bound := addr
		if addr.Port() == 0 { // same port for TCP as the kernel chose for UDP
			bound = netip.AddrPortFrom(addr.Addr(), uint16(udp.LocalAddr().(*net.UDPAddr).Port))
		}
		tcp, err := lc.Listen(ctx, "tcp", bound.String())
		if err == nil {
			return udp, tcp, bound, nil
		}
		udp.Close()
		if addr.Port() != 0 || !errors.Is(err, syscall.EADDRINUSE) || attempt == 10 {
			return nil, nil, bound, fmt.Errorf("dns: listen tcp %s: %w", bound, err)
		}
	}
}
