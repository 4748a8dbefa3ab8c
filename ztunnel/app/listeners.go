package app

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"path/filepath"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"go.uber.org/zap"

	"github.com/ambient-mesh/ambient/ztunnel/capture"
	"github.com/ambient-mesh/ambient/ztunnel/config"
)

// takeoverAddr is where a capture listener listens when its configured
// address is still held by the ztunnel this process replaces.
const takeoverAddr = "127.0.0.1:0"

// errConfigPending: the listeners are not registered until the proxy has
// its configuration, so it never takes connections it cannot route.
var errConfigPending = errors.New("waiting for the configuration before taking the capture slots")

// listeners are the proxy's three listeners and, with capture, their
// registration in the capture sockmap.
type listeners struct {
	outbound, inbound, plain net.Listener
	originalDst              func(net.Conn) (netip.AddrPort, error)
	// ready reports whether capture delivers to these listeners.
	ready func() error
	// keep registers the listeners with the capture sockmap once
	// configReady says the proxy can serve (retrying until the capture role
	// has loaded the sockmap) and re-registers them if they vanish. Until
	// then captured SYNs wait (or go to the process this one replaces).
	keep  func(ctx context.Context, configReady func() bool) error
	close func()
	// hboneDial opens HBONE connections; nil means a plain dial. With
	// capture, a connection to an enrolled pod of this node is marked so the
	// node delivers it to our own HBONE listener (a pod's veth only captures
	// what the pod sends, not what the node sends to it).
	hboneDial func(ctx context.Context, network, addr string) (net.Conn, error)
}

func openListeners(ctx context.Context, cfg config.Config, log *zap.Logger) (*listeners, error) {
	addrs := []string{cfg.OutboundAddr, cfg.InboundAddr, cfg.PlainAddr}
	lns := make([]net.Listener, 0, 3)
	closeAll := func() {
		for _, l := range lns {
			_ = l.Close()
		}
	}
	for _, a := range addrs {
		var l net.Listener
		var err error
		if cfg.Capture {
			l, err = capture.ListenTransparent(ctx, a)
			if errors.Is(err, syscall.EADDRINUSE) {
				// Another ztunnel holds the address: the one this process
				// replaces, still draining. Capture delivers to the socket
				// registered in the sockmap whatever its address, so listen
				// on a free port and take the registration over.
				l, err = capture.ListenTransparent(ctx, takeoverAddr)
				if err == nil {
					log.Warn("listener address in use, taking over with another port",
						zap.String("addr", a), zap.String("listening", l.Addr().String()))
				}
			}
		} else {
			var lc net.ListenConfig
			lc.SetMultipathTCP(false)
			l, err = lc.Listen(ctx, "tcp", a)
		}
		if err != nil {
			closeAll()
			return nil, fmt.Errorf("listen on %s: %w", a, err)
		}
		lns = append(lns, l)
	}
	out := &listeners{outbound: lns[0], inbound: lns[1], plain: lns[2], close: closeAll, ready: func() error { return nil }}
	if !cfg.Capture {
		return out, nil
	}
	out.originalDst = capture.OriginalDst
	kinds := []capture.ListenerKind{capture.Outbound, capture.HBONE, capture.InboundPlain}
	pinDir := filepath.Join(cfg.BPFFS, "capture")
	var mu sync.Mutex
	var sm *capture.Sockmap
	var enrolled atomic.Pointer[capture.EnrolledView]
	out.hboneDial = func(ctx context.Context, network, addr string) (net.Conn, error) {
		d := net.Dialer{}
		if ap, err := netip.ParseAddrPort(addr); err == nil {
			if v := enrolled.Load(); v != nil && v.Enrolled(ap.Addr()) {
				d.Control = capture.MarkCaptured
				// The local route's preferred source is the pod's address,
				// which is not ours: leave from the node's address.
				if cfg.NodeIP.IsValid() {
					d.LocalAddr = &net.TCPAddr{IP: cfg.NodeIP.AsSlice()}
				}
			}
		}
		return d.DialContext(ctx, network, addr)
	}
	var lastErr error = errors.New("not yet registered with the capture sockmap")
	out.ready = func() error {
		mu.Lock()
		defer mu.Unlock()
		return lastErr
	}
	// Until every listener has been registered once, registration replaces
	// whatever the slots hold: a new process takes over from the one it
	// replaces (which keeps serving the connections it has). After that a
	// slot is filled again only when it is empty (its socket closed), so
	// two live processes never fight over the slots.
	takenOver := false
	register := func() error {
		if sm == nil {
			s, err := capture.Open(pinDir)
			if err != nil {
				return fmt.Errorf("open the capture sockmap in %s (is the capture container running?): %w", pinDir, err)
			}
			sm = s
		}
		if enrolled.Load() == nil {
			v, err := capture.OpenEnrolled(pinDir)
			if err != nil {
				return err
			}
			enrolled.Store(v)
		}
		for i, k := range kinds {
			if takenOver && sm.Registered(k, false) {
				continue
			}
			if err := sm.Register(k, lns[i].(*net.TCPListener)); err != nil {
				return fmt.Errorf("register the %s listener: %w", k, err)
			}
			log.Info("listener registered with capture", zap.Stringer("kind", k), zap.String("addr", lns[i].Addr().String()))
		}
		takenOver = true
		return nil
	}
	out.keep = func(ctx context.Context, configReady func() bool) error {
		defer func() {
			if sm != nil {
				_ = sm.Close()
			}
			if v := enrolled.Swap(nil); v != nil {
				_ = v.Close()
			}
		}()
		for {
			var err error
			if configReady != nil && !configReady() {
				err = errConfigPending
			} else {
				err = register()
			}
			mu.Lock()
			if err != nil && err != errConfigPending && (lastErr == nil || err.Error() != lastErr.Error()) {
				log.Warn("capture registration failed", zap.Error(err))
			}
			lastErr = err
			mu.Unlock()
			// Poll quickly until registered: SYNs are waiting.
			wait := time.Second
			if !takenOver {
				wait = 50 * time.Millisecond
			}
			select {
			case <-ctx.Done():
				return nil
			case <-time.After(wait):
			}
		}
	}
	return out, nil
}
