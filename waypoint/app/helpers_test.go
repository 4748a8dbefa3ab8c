package app

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	"github.com/ambient-mesh/ambient/pkg/certs"
	"github.com/ambient-mesh/ambient/pkg/hbone"
	"github.com/ambient-mesh/ambient/pkg/spiffe"
	"github.com/ambient-mesh/ambient/waypoint/config"
	"github.com/ambient-mesh/ambient/waypoint/state"
	"github.com/ambient-mesh/ambient/waypoint/state/statetest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

var sleepID = spiffe.Identity{TrustDomain: "cluster.local", Namespace: "default", ServiceAccount: "sleep"}

// parse parses waypoint flags listening on loopback ports chosen by the OS.
func parse(t *testing.T, args ...string) config.Config {
	t.Helper()
	base := []string{"--bind-address=127.0.0.1", "--hbone-port=0", "--admin-port=0", "--metrics-port=0", "--ready-port=0", "--drain-timeout=5s"}
	cfg, err := config.Parse(append(base, args...), func(string) string { return "" }, io.Discard)
	if err != nil {
		t.Fatalf("config: %v", err)
	}
	return cfg
}

// running is an App serving in the background.
type running struct {
	*App
	stop func() // cancels Run and waits for it, failing the test on an error
}

func start(t *testing.T, cfg config.Config) running {
	t.Helper()
	lg := zaptest.NewLogger(t, zaptest.Level(zap.InfoLevel))
	a, err := New(cfg, lg, zap.NewAtomicLevel())
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	var stopped atomic.Bool
	r := running{App: a, stop: func() {
		if stopped.Swap(true) {
			return
		}
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	}}
	t.Cleanup(r.stop)
	return r
}

// httpGet fetches url and returns status and body.
func httpGet(t *testing.T, url string) (int, string) {
	t.Helper()
	c := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	res, err := c.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	return res.StatusCode, string(b)
}

// waitReady polls /healthz/ready until 200 (liveness bound only).
func waitReady(t *testing.T, a *App) {
	t.Helper()
	url := "http://" + a.Addrs().Ready.String() + "/healthz/ready"
	var code int
	var body string
	for deadline := time.Now().Add(15 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		if code, body = httpGet(t, url); code == http.StatusOK {
			return
		}
	}
	t.Fatalf("never ready: %d %s", code, body)
}

// writeResources writes r as a --local-config file.
func writeResources(t *testing.T, r state.Resources) string {
	t.Helper()
	raw := func(ms ...proto.Message) []json.RawMessage {
		out := []json.RawMessage{}
		for _, m := range ms {
			b, err := protojson.Marshal(m)
			if err != nil {
				t.Fatal(err)
			}
			out = append(out, b)
		}
		return out
	}
	doc := map[string][]json.RawMessage{}
	for _, l := range r.Listeners {
		doc["listeners"] = append(doc["listeners"], raw(l)...)
	}
	for _, m := range r.Routes {
		doc["routes"] = append(doc["routes"], raw(m)...)
	}
	for _, m := range r.Clusters {
		doc["clusters"] = append(doc["clusters"], raw(m)...)
	}
	for _, m := range r.Endpoints {
		doc["endpoints"] = append(doc["endpoints"], raw(m)...)
	}
	b, err := json.Marshal(doc)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "resources.json")
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// pods are fake destination pods: a backend answering with its name behind
// an HBONE server standing for the pod's ztunnel. Their certificates come
// from the CA set later (the waypoint's local CA exists only once it is
// built, after the relocated config was written).
type pods struct {
	ca    atomic.Pointer[certs.CA]
	reloc map[netip.Addr]statetest.Relocation
	ids   map[netip.Addr]spiffe.Identity
}

// named answers every request with name.
func named(name string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, name) })
}

// newPods starts one pod per golden IP of r, serving backends[ip], and
// relocates r's endpoints to them.
func newPods(t *testing.T, r state.Resources, backends map[string]http.Handler) *pods {
	t.Helper()
	p := &pods{reloc: map[netip.Addr]statetest.Relocation{}, ids: map[netip.Addr]spiffe.Identity{}}
	snap, err := state.Build(r)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range snap.Clusters {
		for _, ep := range c.Endpoints {
			p.ids[ep.Address.Addr()] = ep.Identity
		}
	}
	for gip, h := range backends {
		ip := netip.MustParseAddr(gip)
		backend := listen(t)
		srv := &http.Server{Handler: h}
		go srv.Serve(backend)
		tunnel := listen(t)
		id := p.ids[ip]
		zt, err := hbone.NewServer(hbone.ServerConfig{
			GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) { return p.ca.Load().Issue(id, time.Hour) },
			Bundle:         func() spiffe.Bundle { return p.ca.Load().Bundle() },
			Handler:        hbone.HandlerFunc(forward),
		})
		if err != nil {
			t.Fatal(err)
		}
		go zt.Serve(tunnel)
		t.Cleanup(func() { zt.Close(); srv.Close() })
		p.reloc[ip] = statetest.Relocation{Tunnel: addrOf(tunnel), Destination: addrOf(backend)}
	}
	statetest.Relocate(r, p.reloc)
	return p
}

// forward is the fake ztunnel: CONNECT to the authority over TCP.
func forward(ctx context.Context, r *hbone.Request) {
	var d net.Dialer
	c, err := d.DialContext(ctx, "tcp", r.Authority.String())
	if err != nil {
		r.Reject(http.StatusServiceUnavailable)
		return
	}
	defer c.Close()
	s, err := r.Accept()
	if err != nil {
		return
	}
	defer s.Close()
	done := make(chan struct{})
	go func() {
		defer close(done)
		io.Copy(c, s)
		c.(*net.TCPConn).CloseWrite()
	}()
	io.Copy(s, c)
	s.CloseWrite()
	<-done
}

func listen(t *testing.T) net.Listener {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	return ln
}

func addrOf(ln net.Listener) netip.AddrPort { return netip.MustParseAddrPort(ln.Addr().String()) }

// clientCerts is the source ztunnel's certificate source: sleep's
// certificate from ca.
type clientCerts struct{ ca *certs.CA }

func (c clientCerts) ClientCertificate(_ context.Context, id spiffe.Identity) (*tls.Certificate, error) {
	return c.ca.Issue(id, time.Hour)
}

// viaWaypoint is an HTTP client whose connections are HBONE tunnels to
// authority through the waypoint at wp, as sleep.
func viaWaypoint(t *testing.T, ca *certs.CA, wp netip.AddrPort, authority string) *http.Client {
	t.Helper()
	hc, err := hbone.NewClient(hbone.ClientConfig{Certs: clientCerts{ca}, Bundle: ca.Bundle})
	if err != nil {
		t.Fatal(err)
	}
	tr := &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		return hc.Dial(ctx, hbone.DialRequest{Source: sleepID, Peer: wp,
			Target: hbone.Target{Authority: netip.MustParseAddrPort(authority)}})
	}}
	t.Cleanup(func() { tr.CloseIdleConnections(); hc.Close() })
	return &http.Client{Transport: tr, Timeout: 10 * time.Second}
}

func zapTest(t *testing.T) *zap.Logger { return zaptest.NewLogger(t) }
func zapLevel() zap.AtomicLevel        { return zap.NewAtomicLevel() }
