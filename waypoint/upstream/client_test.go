package upstream

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"net/http"
	"net/netip"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/ambient-mesh/ambient/pkg/hbone"
	"github.com/ambient-mesh/ambient/pkg/hbone/hbonetest"
	"github.com/ambient-mesh/ambient/pkg/spiffe"
	"github.com/ambient-mesh/ambient/waypoint/state"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// countingDialer counts HBONE dials and remembers the last request.
type countingDialer struct {
	Dialer
	n    atomic.Int64
	mu   sync.Mutex
	last hbone.DialRequest
}

func (d *countingDialer) Dial(ctx context.Context, r hbone.DialRequest) (*hbone.Stream, error) {
	d.n.Add(1)
	d.mu.Lock()
	d.last = r
	d.mu.Unlock()
	return d.Dialer.Dial(ctx, r)
}

type fixture struct {
	dialer   *countingDialer
	client   *Client
	endpoint *state.Endpoint
	connects atomic.Int64 // CONNECTs the destination ztunnel accepted
	fwd      atomic.Value // last forwarded-for seen
}

func newFixture(t *testing.T) *fixture {
	ca := hbonetest.MustCA(t, "cluster.local")
	wpID, podID := ca.Identity("default", "waypoint"), ca.Identity("default", "reviews")
	certs := &hbonetest.Certs{}
	certs.Set(wpID, ca.MustIssue(t, wpID, time.Hour))
	bundle := func() spiffe.Bundle { return ca.Bundle() }
	f := &fixture{}

	// Backend: HTTP/1.1 and h2c on one port.
	bln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var protos http.Protocols
	protos.SetHTTP1(true)
	protos.SetUnencryptedHTTP2(true)
	backend := &http.Server{Protocols: &protos, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Proto", r.Proto)
		io.WriteString(w, "hello "+r.URL.Path)
	})}
	go backend.Serve(bln)

	podCert := ca.MustIssue(t, podID, time.Hour)
	zt, err := hbone.NewServer(hbone.ServerConfig{
		GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) { return podCert, nil },
		Bundle:         bundle,
		Handler: hbone.HandlerFunc(func(ctx context.Context, r *hbone.Request) {
			f.connects.Add(1)
			f.fwd.Store(r.ForwardedFor)
			c, err := net.Dial("tcp", r.Authority.String())
			if err != nil {
				r.Reject(503)
				return
			}
			s, err := r.Accept()
			if err != nil {
				c.Close()
				return
			}
			go func() { io.Copy(c, s); c.(*net.TCPConn).CloseWrite() }()
			io.Copy(s, c)
			s.Close()
			c.Close()
		}),
	})
	if err != nil {
		t.Fatal(err)
	}
	zln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go zt.Serve(zln)

	hc, err := hbone.NewClient(hbone.ClientConfig{Certs: certs, Bundle: bundle})
	if err != nil {
		t.Fatal(err)
	}
	f.dialer = &countingDialer{Dialer: hc}
	f.client, err = NewClient(Config{HBONE: f.dialer, Source: wpID})
	if err != nil {
		t.Fatal(err)
	}
	dst := netip.MustParseAddrPort(bln.Addr().String())
	f.endpoint = &state.Endpoint{Address: dst, Destination: dst, Tunnel: netip.MustParseAddrPort(zln.Addr().String()), Identity: podID, Healthy: true}
	t.Cleanup(func() {
		f.client.Close()
		hc.Close()
		zt.Close()
		backend.Close()
	})
	return f
}

func (f *fixture) get(t *testing.T, ep *state.Endpoint, h2 bool, path string, client netip.Addr) (string, string, error) {
	t.Helper()
	req, _ := http.NewRequestWithContext(WithForwardedFor(t.Context(), client), "GET", "http://reviews"+path, nil)
	res, err := f.client.RoundTrip(ep, h2, time.Second, req)
	if err != nil {
		return "", "", err
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	return string(b), res.Header.Get("X-Proto"), err
}

func TestRoundTripReusesConnections(t *testing.T) {
	for _, h2 := range []bool{false, true} {
		t.Run(map[bool]string{false: "http1", true: "h2c"}[h2], func(t *testing.T) {
			f := newFixture(t)
			client := netip.MustParseAddr("10.244.0.7")
			for i := range 20 {
				body, proto, err := f.get(t, f.endpoint, h2, "/r", client)
				if err != nil || body != "hello /r" {
					t.Fatalf("request %d: %q %v", i, body, err)
				}
				if want := map[bool]string{false: "HTTP/1.1", true: "HTTP/2.0"}[h2]; proto != want {
					t.Fatalf("backend saw %s, want %s", proto, want)
				}
			}
			if n := f.connects.Load(); n != 1 {
				t.Errorf("%d tunnels for 20 sequential requests, want 1 (reuse)", n)
			}
			if got := f.fwd.Load().(netip.Addr); got != client {
				t.Errorf("forwarded for = %v, want %v", got, client)
			}
			f.dialer.mu.Lock()
			last := f.dialer.last
			f.dialer.mu.Unlock()
			if last.Peer != f.endpoint.Tunnel || last.Authority != f.endpoint.Destination ||
				len(last.ExpectedPeers) != 1 || last.ExpectedPeers[0] != f.endpoint.Identity || last.Source.ServiceAccount != "waypoint" {
				t.Errorf("dial request = %+v", last)
			}
		})
	}
}

func TestRoundTripConnectErrors(t *testing.T) {
	f := newFixture(t)
	wrongID := *f.endpoint
	wrongID.Identity.ServiceAccount = "ratings"
	deadTunnel := *f.endpoint
	deadTunnel.Tunnel = netip.MustParseAddrPort("127.0.0.1:1")
	deadDest := *f.endpoint
	deadDest.Destination = netip.MustParseAddrPort("127.0.0.1:1")
	for name, ep := range map[string]*state.Endpoint{"wrong identity": &wrongID, "no ztunnel": &deadTunnel, "ztunnel answers 503": &deadDest} {
		_, _, err := f.get(t, ep, false, "/", netip.Addr{})
		var ce *ConnectError
		if !errors.As(err, &ce) {
			t.Errorf("%s: %v, want a ConnectError", name, err)
		}
	}
	if got := f.client.Endpoints(); len(got) != 3 { // one pool per (tunnel, destination, identity)
		t.Errorf("pools = %v", got)
	}
	f.client.Retain(func(_, dest netip.AddrPort) bool { return dest == f.endpoint.Destination })
	if got := f.client.Endpoints(); len(got) != 2 {
		t.Errorf("pools after Retain = %v", got)
	}
}
