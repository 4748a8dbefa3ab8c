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
	"time"

	"go.uber.org/zap"

	"github.com/ambient-mesh/ambient/ztunnel/capture"
	"github.com/ambient-mesh/ambient/ztunnel/config"
)

// listeners are the proxy's three listeners and, with capture, their
// registration in the capture sockmap.
type listeners struct {
	outbound, inbound, plain net.Listener
	originalDst              func(net.Conn) (netip.AddrPort, error)
	// ready reports whether capture delivers to these listeners.
	ready func() error
	// keep registers the listeners with the capture sockmap (retrying until
	// the capture role has loaded it) and re-registers them if they vanish.
	keep  func(ctx context.Context) error
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
			if sm.Registered(k, false) {
				continue
			}
			if err := sm.Register(k, lns[i].(*net.TCPListener)); err != nil {
				return fmt.Errorf("register the %s listener: %w", k, err)
			}
			log.Info("listener registered with capture", zap.Stringer("kind", k), zap.String("addr", lns[i].Addr().String()))
		}
		return nil
	}
	out.keep = func(ctx context.Context) error {
		t := time.NewTicker(time.Second)
		defer t.Stop()
		defer func() {
			if sm != nil {
				_ = sm.Close()
			}
			if v := enrolled.Swap(nil); v != nil {
				_ = v.Close()
			}
		}()
		for {
			err := register()
			mu.Lock()
			if err != nil && (lastErr == nil || err.Error() != lastErr.Error()) {
				log.Warn("capture registration failed", zap.Error(err))
			}
			lastErr = err
			mu.Unlock()
			select {
			case <-ctx.Done():
				return nil
			case <-t.C:
			}
		}
	}
	return out, nil
}
