package listener

import (
	"context"
	"net"
	"net/netip"
	"sync"

	"github.com/ambient-mesh/ambient/pkg/spiffe"
	"github.com/ambient-mesh/ambient/waypoint/state"
)

// tunnel is what the HBONE CONNECT told us about every request it carries.
type tunnel struct {
	peer        spiffe.Identity
	peerURI     string
	authority   netip.AddrPort
	client      netip.Addr // original client: forwarded for=, else the HBONE peer
	traceparent string
	baggage     string
	chain       *state.Chain
}

type tunnelKey struct{}

func withTunnel(ctx context.Context, t *tunnel) context.Context {
	return context.WithValue(ctx, tunnelKey{}, t)
}

func tunnelFrom(ctx context.Context) *tunnel {
	t, _ := ctx.Value(tunnelKey{}).(*tunnel)
	return t
}

// tunnelConn is a tunnel handed to net/http; closing it releases the
// goroutine serving the HBONE stream.
type tunnelConn struct {
	net.Conn
	t    *tunnel
	once sync.Once
	done chan struct{}
}

func (c *tunnelConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(func() { close(c.done) })
	return err
}

// oneConnListener hands one connection to http.Server.Serve, then blocks
// Accept until that connection is closed.
type oneConnListener struct {
	mu   sync.Mutex
	conn *tunnelConn
}

func (l *oneConnListener) Accept() (net.Conn, error) {
	l.mu.Lock()
	c := l.conn
	l.conn = nil
	l.mu.Unlock()
	if c != nil {
		return c, nil
	}
	return nil, net.ErrClosed
}

func (l *oneConnListener) Close() error { return nil }

func (l *oneConnListener) Addr() net.Addr { return tunnelAddr{} }

type tunnelAddr struct{}

func (tunnelAddr) Network() string { return "hbone" }
func (tunnelAddr) String() string  { return "hbone" }
