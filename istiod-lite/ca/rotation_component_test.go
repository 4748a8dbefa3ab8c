package ca

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/zap"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"

	"github.com/ambient-mesh/ambient/pkg/certs"
	"github.com/ambient-mesh/ambient/pkg/hbone"
	"github.com/ambient-mesh/ambient/pkg/identity"
	"github.com/ambient-mesh/ambient/pkg/spiffe"
)

var (
	rotSleep   = spiffe.Identity{TrustDomain: "cluster.local", Namespace: "app", ServiceAccount: "sleep"}
	rotHttpbin = spiffe.Identity{TrustDomain: "cluster.local", Namespace: "app", ServiceAccount: "httpbin"}
)

// rotationMesh is the CA (server + cacerts reloader on a fake API server,
// gRPC on loopback) and two node proxies: identity managers asking the CA
// as ztunnel-a (for app/sleep on node-a) and ztunnel-b (for app/httpbin on
// node-b), an HBONE server for httpbin and a client for sleep.
type rotationMesh struct {
	client   *fake.Clientset
	reloader *Reloader
	a, b     *identity.Manager
	peer     netip.AddrPort
}

type managerCerts struct{ m *identity.Manager }

func (c managerCerts) ClientCertificate(ctx context.Context, id spiffe.Identity) (*tls.Certificate, error) {
	return c.m.GetCertificate(ctx, id)
}

func newRotationMesh(t *testing.T, initial *certs.CA, certTTL time.Duration) *rotationMesh {
	t.Helper()
	ctx := context.Background()
	client := fake.NewClientset(impersonationCluster()...)
	if _, err := client.CoreV1().Secrets("istio-system").Create(ctx, pluggedSecret(t, initial), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	signer, src, err := LoadOrCreateCA(ctx, client, StoreOptions{}, zap.NewNop())
	if err != nil || src != SourcePlugged {
		t.Fatalf("LoadOrCreateCA = %v, %v", src, err)
	}
	srv, err := NewServer(Options{CA: signer, Client: client, Authenticator: stubAuthenticator(impersonationCallers), Logger: zap.NewNop()})
	if err != nil {
		t.Fatal(err)
	}
	r, err := NewReloader(ReloaderOptions{Client: client, Current: signer, OnChange: srv.SetCA, Logger: zap.NewNop()})
	if err != nil {
		t.Fatal(err)
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	gs := grpc.NewServer()
	srv.Register(gs)
	go func() { _ = gs.Serve(lis) }()
	t.Cleanup(gs.Stop)

	dir := t.TempDir()
	newManager := func(token string) *identity.Manager {
		path := filepath.Join(dir, token)
		if err := os.WriteFile(path, []byte(token), 0o600); err != nil {
			t.Fatal(err)
		}
		cc, err := grpc.NewClient("passthrough:///"+lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = cc.Close() })
		f, err := identity.NewCAClient(identity.CAClientOptions{Conn: cc, TokenPath: path, TTL: certTTL})
		if err != nil {
			t.Fatal(err)
		}
		// No static roots: the bundle is what the CA distributes.
		m, err := identity.NewManager(identity.Options{Fetcher: f, TrustDomain: "cluster.local", Logger: zap.NewNop()})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(m.Close)
		return m
	}
	mesh := &rotationMesh{client: client, reloader: r, a: newManager("ztunnel-a"), b: newManager("ztunnel-b")}

	hs, err := hbone.NewServer(hbone.ServerConfig{
		GetCertificate: func(h *tls.ClientHelloInfo) (*tls.Certificate, error) {
			return mesh.b.GetCertificate(h.Context(), rotHttpbin)
		},
		Bundle: mesh.b.Bundle,
		Handler: hbone.HandlerFunc(func(_ context.Context, r *hbone.Request) {
			s, err := r.Accept()
			if err != nil {
				return
			}
			_, _ = io.Copy(s, s)
			_ = s.Close()
		}),
	})
	if err != nil {
		t.Fatal(err)
	}
	hl, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	mesh.peer = hl.Addr().(*net.TCPAddr).AddrPort()
	served := make(chan struct{})
	go func() { defer close(served); _ = hs.Serve(hl) }()
	t.Cleanup(func() { _ = hs.Close(); <-served })
	return mesh
}

// connect opens a new HBONE connection (new client, so a new TLS handshake
// verified both ways) from sleep to httpbin and echoes one message.
func (m *rotationMesh) connect(ctx context.Context) error {
	cl, err := hbone.NewClient(hbone.ClientConfig{Certs: managerCerts{m.a}, Bundle: m.a.Bundle})
	if err != nil {
		return err
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	s, err := cl.Dial(ctx, hbone.DialRequest{
		Source: rotSleep, Peer: m.peer, ExpectedPeers: []spiffe.Identity{rotHttpbin},
		Target: hbone.Target{Authority: netip.MustParseAddrPort("10.0.0.1:80")},
	})
	if err != nil {
		return fmt.Errorf("dial: %w", err)
	}
	defer s.Close()
	_ = s.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := s.Write([]byte("ping")); err != nil {
		return fmt.Errorf("write: %w", err)
	}
	buf := make([]byte, 4)
	if _, err := io.ReadFull(s, buf); err != nil || string(buf) != "ping" {
		return fmt.Errorf("echo: %q, %w", buf, err)
	}
	return nil
}

// install writes ca as the cacerts Secret and has istiod-lite re-read it.
func (m *rotationMesh) install(t *testing.T, ca *certs.CA) {
	t.Helper()
	if _, err := m.client.CoreV1().Secrets("istio-system").Update(context.Background(), pluggedSecret(t, ca), metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	if !m.reloader.Check(context.Background()) {
		t.Fatal("istiod-lite did not reload cacerts")
	}
}

func heldBy(m *identity.Manager, id spiffe.Identity, signer *certs.CA) bool {
	c, err := m.GetCertificate(context.Background(), id)
	return err == nil && c.Leaf.CheckSignatureFrom(signer.SigningCert()) == nil
}

func trustsExactly(m *identity.Manager, roots ...*certs.CA) bool {
	have := m.Roots()
	if len(have) != len(roots) {
		return false
	}
	for _, r := range roots {
		found := false
		for _, h := range have {
			found = found || h.Equal(r.SigningCert())
		}
		if !found {
			return false
		}
	}
	return true
}

// eventuallyTrue polls cond with a generous deadline (liveness, not speed).
func eventuallyTrue(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestRootRotationNoFailedConnections rotates the plugged-in CA from
// root1/intermediate1 to root2/intermediate2 in Istio's three steps (add
// root2 to root-cert.pem; sign with intermediate2; drop root1) while sleep
// opens new HBONE connections to httpbin without pause. Certificates live 4
// s, so every step reaches both proxies through ordinary renewals. Not one
// connection may fail.
func TestRootRotationNoFailedConnections(t *testing.T) {
	if testing.Short() {
		t.Skip("runs for several certificate lifetimes")
	}
	root1 := mustNewCA(t)(certs.NewSelfSignedCA("cluster.local", time.Hour))
	root2 := mustNewCA(t)(certs.NewSelfSignedCA("cluster.local", time.Hour))
	int1 := mustNewCA(t)(root1.NewIntermediate("intermediate1", time.Hour))
	int2 := mustNewCA(t)(root2.NewIntermediate("intermediate2", time.Hour))
	mesh := newRotationMesh(t, int1, 4*time.Second)
	ctx := t.Context()
	if err := mesh.connect(ctx); err != nil {
		t.Fatalf("before rotation: %v", err)
	}

	var ok, failed atomic.Int64
	var firstErr atomic.Value
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			select {
			case <-stop:
				return
			default:
			}
			if err := mesh.connect(ctx); err != nil {
				failed.Add(1)
				firstErr.CompareAndSwap(nil, err.Error())
			} else {
				ok.Add(1)
			}
			time.Sleep(5 * time.Millisecond) // a steady client, not a flood
		}
	}()
	progress := func(what string) {
		t.Helper()
		before := ok.Load()
		eventuallyTrue(t, what+": connections keep succeeding", func() bool { return ok.Load() > before+5 || failed.Load() > 0 })
	}

	// 1. root-cert.pem gains root2; intermediate1 still signs.
	mesh.install(t, int1.WithRoots(root2.SigningCert()))
	eventuallyTrue(t, "both proxies trust root1 and root2", func() bool {
		return trustsExactly(mesh.a, root1, root2) && trustsExactly(mesh.b, root1, root2)
	})
	progress("overlap, old signer")
	// 2. intermediate2 signs; both roots still distributed.
	mesh.install(t, int2.WithRoots(root1.SigningCert()))
	eventuallyTrue(t, "both proxies hold intermediate2 certificates", func() bool {
		return heldBy(mesh.a, rotSleep, int2) && heldBy(mesh.b, rotHttpbin, int2)
	})
	progress("overlap, new signer")
	// 3. root1 is dropped.
	mesh.install(t, int2)
	eventuallyTrue(t, "both proxies trust root2 only", func() bool {
		return trustsExactly(mesh.a, root2) && trustsExactly(mesh.b, root2)
	})
	progress("after overlap")
	close(stop)
	wg.Wait()

	t.Logf("rotation: %d new connections, %d failed", ok.Load(), failed.Load())
	if n := failed.Load(); n != 0 {
		t.Fatalf("%d connections failed during the rotation; first: %v", n, firstErr.Load())
	}
}

// TestRootSwitchWithoutOverlapFails is the control: switching straight to a
// new root (no overlap) makes a proxy that renewed reject a peer still on the
// old chain, which the rotation test would catch.
func TestRootSwitchWithoutOverlapFails(t *testing.T) {
	root1 := mustNewCA(t)(certs.NewSelfSignedCA("cluster.local", time.Hour))
	root2 := mustNewCA(t)(certs.NewSelfSignedCA("cluster.local", time.Hour))
	int1 := mustNewCA(t)(root1.NewIntermediate("intermediate1", time.Hour))
	int2 := mustNewCA(t)(root2.NewIntermediate("intermediate2", time.Hour))
	mesh := newRotationMesh(t, int1, time.Hour)
	ctx := t.Context()
	if err := mesh.connect(ctx); err != nil {
		t.Fatalf("before the switch: %v", err)
	}
	mesh.install(t, int2)
	mesh.a.Forget(rotSleep) // sleep's proxy renews now; httpbin's keeps its intermediate1 certificate
	if err := mesh.connect(ctx); err == nil {
		t.Fatal("connection succeeded across a root switch without overlap")
	}
}
