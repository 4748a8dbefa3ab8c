package listener_test

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"net/http"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"

	"github.com/ambient-mesh/ambient/pkg/hbone"
	"github.com/ambient-mesh/ambient/pkg/hbone/hbonetest"
	"github.com/ambient-mesh/ambient/pkg/spiffe"
	"github.com/ambient-mesh/ambient/waypoint/listener"
	"github.com/ambient-mesh/ambient/waypoint/state"
	"github.com/ambient-mesh/ambient/waypoint/state/statetest"
)

// env is a waypoint in process: an HBONE server on loopback running the
// listener, fed with a golden xDS output whose pods are relocated to
// loopback backends, each behind its own fake destination ztunnel.
type env struct {
	t       testing.TB
	ca      *hbonetest.CA
	certs   *hbonetest.Certs
	store   *state.Store
	reg     *prometheus.Registry
	wp      *listener.Listener
	wpAddr  netip.AddrPort
	clients *hbone.Client // the source ztunnels' client
	pods    map[string]*pod
}

// pod is one relocated endpoint: a backend and the ztunnel in front of it.
type pod struct {
	golden  netip.Addr // address in the golden file
	ip      netip.Addr // loopback address standing for the pod
	backend netip.AddrPort
	tunnel  netip.AddrPort
}

type envOptions struct {
	config    func(*listener.Config)
	resources func(state.Resources)
}

type option func(*envOptions)

// withConfig adjusts the listener configuration.
func withConfig(f func(*listener.Config)) option { return func(o *envOptions) { o.config = f } }

// withResources adjusts the xDS resources after relocation.
func withResources(f func(state.Resources)) option { return func(o *envOptions) { o.resources = f } }

// backend serves a pod's application on ln until the test ends.
type backend func(t testing.TB, ln net.Listener)

func httpBackend(h http.Handler) backend {
	return func(t testing.TB, ln net.Listener) {
		var protos http.Protocols // HTTP/1.1 and h2c, like most mesh apps' servers
		protos.SetHTTP1(true)
		protos.SetUnencryptedHTTP2(true)
		srv := &http.Server{Handler: h, Protocols: &protos}
		go srv.Serve(ln)
		t.Cleanup(func() { srv.Close() })
	}
}

var (
	waypointID = spiffe.Identity{TrustDomain: "cluster.local", Namespace: "default", ServiceAccount: "waypoint"}
	sleepID    = spiffe.Identity{TrustDomain: "cluster.local", Namespace: "default", ServiceAccount: "sleep"}
	adminID    = spiffe.Identity{TrustDomain: "cluster.local", Namespace: "default", ServiceAccount: "admin"}
	nextIP     = netip.MustParseAddr("127.0.10.1")
	ipMu       sync.Mutex
)

func loopbackIP() netip.Addr {
	ipMu.Lock()
	defer ipMu.Unlock()
	ip := nextIP
	nextIP = nextIP.Next()
	return ip
}

// newEnv loads the golden output name; pods maps golden pod IPs to their
// backends. Pods not listed keep their (unreachable) golden addresses.
func newEnv(t testing.TB, name string, pods map[string]backend, opts ...option) *env {
	t.Helper()
	var o envOptions
	for _, f := range opts {
		f(&o)
	}
	ca := hbonetest.MustCA(t, "cluster.local")
	e := &env{t: t, ca: ca, certs: &hbonetest.Certs{}, store: state.NewStore(), reg: prometheus.NewRegistry(), pods: map[string]*pod{}}
	for _, id := range []spiffe.Identity{waypointID, sleepID, adminID} {
		e.certs.Set(id, ca.MustIssue(t, id, time.Hour))
	}
	bundle := func() spiffe.Bundle { return ca.Bundle() }

	res := statetest.MustLoad(t, name)
	ids := podIdentities(t, res)
	reloc := map[netip.Addr]statetest.Relocation{}
	for gip, b := range pods {
		p := &pod{golden: netip.MustParseAddr(gip), ip: loopbackIP()}
		ln, err := net.Listen("tcp", netip.AddrPortFrom(p.ip, 0).String())
		if err != nil {
			t.Fatal(err)
		}
		p.backend = netip.MustParseAddrPort(ln.Addr().String())
		b(t, ln)
		p.tunnel = e.startZtunnel(p, ca.MustIssue(t, ids[p.golden], time.Hour), bundle)
		reloc[p.golden] = statetest.Relocation{Tunnel: p.tunnel, Destination: p.backend}
		e.pods[gip] = p
	}
	// Pods without a backend get a closed loopback port: never dial the
	// golden (non-loopback) addresses.
	for gip := range ids {
		if _, ok := reloc[gip]; !ok {
			dead := closedPort(t)
			reloc[gip] = statetest.Relocation{Tunnel: dead, Destination: dead}
		}
	}
	statetest.Relocate(res, reloc)
	if o.resources != nil {
		o.resources(res)
	}
	if err := e.store.Apply(res); err != nil {
		t.Fatalf("waypoint refuses %s: %v", name, err)
	}

	tunnels, err := hbone.NewClient(hbone.ClientConfig{Certs: e.certs, Bundle: bundle})
	if err != nil {
		t.Fatal(err)
	}
	metrics, err := listener.NewMetrics(e.reg)
	if err != nil {
		t.Fatal(err)
	}
	cfg := listener.Config{State: e.store.Load, Identity: waypointID, Tunnels: tunnels, Metrics: metrics,
		Logger: zaptest.NewLogger(t, zaptest.Level(zap.WarnLevel)), Seed: 1}
	if o.config != nil {
		o.config(&cfg)
	}
	wp, err := listener.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	e.wp = wp
	wcert := ca.MustIssue(t, waypointID, time.Hour)
	srv, err := hbone.NewServer(hbone.ServerConfig{
		GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) { return wcert, nil },
		Bundle:         bundle, Handler: wp,
	})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	e.wpAddr = netip.MustParseAddrPort(ln.Addr().String())
	go srv.Serve(ln)
	e.clients, err = hbone.NewClient(hbone.ClientConfig{Certs: e.certs, Bundle: bundle})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		e.clients.Close()
		srv.Close()
		wp.Close()
		tunnels.Close()
	})
	return e
}

// podIdentities reads each golden pod's identity from its endpoint
// metadata.
func podIdentities(t testing.TB, res state.Resources) map[netip.Addr]spiffe.Identity {
	snap, err := state.Build(res)
	if err != nil {
		t.Fatal(err)
	}
	out := map[netip.Addr]spiffe.Identity{}
	for _, c := range snap.Clusters {
		for _, ep := range c.Endpoints {
			out[ep.Address.Addr()] = ep.Identity
		}
	}
	return out
}

// startZtunnel runs the destination pod's ztunnel: HBONE in, TCP to the
// CONNECT authority (the backend) out.
func (e *env) startZtunnel(p *pod, cert *tls.Certificate, bundle func() spiffe.Bundle) netip.AddrPort {
	t := e.t
	srv, err := hbone.NewServer(hbone.ServerConfig{
		GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) { return cert, nil },
		Bundle:         bundle,
		Handler: hbone.HandlerFunc(func(ctx context.Context, r *hbone.Request) {
			var d net.Dialer
			c, err := d.DialContext(ctx, "tcp", r.Authority.String())
			if err != nil {
				r.Reject(http.StatusServiceUnavailable)
				return
			}
			s, err := r.Accept()
			if err != nil {
				c.Close()
				return
			}
			splice(s, c.(*net.TCPConn))
		}),
	})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", netip.AddrPortFrom(p.ip, 0).String())
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return netip.MustParseAddrPort(ln.Addr().String())
}

type halfCloser interface {
	net.Conn
	CloseWrite() error
}

func splice(a, b halfCloser) {
	done := make(chan struct{})
	go func() {
		defer close(done)
		if _, err := io.Copy(b, a); err != nil {
			a.Close()
			b.Close()
			return
		}
		b.CloseWrite()
	}()
	if _, err := io.Copy(a, b); err != nil {
		a.Close()
		b.Close()
	} else {
		a.CloseWrite()
	}
	<-done
	a.Close()
	b.Close()
}

// dial opens a tunnel to the waypoint as source id for authority.
func (e *env) dial(ctx context.Context, id spiffe.Identity, authority string) (*hbone.Stream, error) {
	return e.clients.Dial(ctx, hbone.DialRequest{Source: id, Peer: e.wpAddr,
		Target: hbone.Target{Authority: netip.MustParseAddrPort(authority), ForwardedFor: netip.MustParseAddr("10.244.0.99")}})
}

// httpClient is a keep-alive HTTP/1.1 client whose connections are
// tunnels to authority (a service VIP:port) through the waypoint.
func (e *env) httpClient(id spiffe.Identity, authority string) *http.Client {
	tr := &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return e.dial(ctx, id, authority)
		},
		MaxIdleConnsPerHost: 16,
		DisableCompression:  true,
	}
	e.t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr, Timeout: 20 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
}

// get sends one request and returns status and body.
func get(t testing.TB, c *http.Client, method, url string, hdr ...string) (int, string, http.Header) {
	t.Helper()
	req, err := http.NewRequest(method, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	res, err := c.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil && !errors.Is(err, io.EOF) {
		t.Fatalf("%s %s: read body: %v", method, url, err)
	}
	return res.StatusCode, string(b), res.Header
}

// whoami answers with the pod name and echoes what the waypoint sent.
func whoami(name string) backend {
	return httpBackend(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Pod", name)
		w.Header().Set("X-Seen-Path", r.URL.Path)
		w.Header().Set("X-Seen-Proto", r.Proto)
		w.Header().Set("X-Seen-Xff", r.Header.Get("X-Forwarded-For"))
		w.Header().Set("X-Seen-Request-Id", r.Header.Get("X-Request-Id"))
		w.Header().Set("X-Seen-Traceparent", r.Header.Get("Traceparent"))
		io.WriteString(w, name)
	}))
}

// closedPort returns a loopback address where nothing listens.
func closedPort(t testing.TB) netip.AddrPort {
	ln, err := net.Listen("tcp", netip.AddrPortFrom(loopbackIP(), 0).String())
	if err != nil {
		t.Fatal(err)
	}
	ap := netip.MustParseAddrPort(ln.Addr().String())
	ln.Close()
	return ap
}
