package xds

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"errors"
	"fmt"
	"math/big"
	"net"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"
	"istio.io/istio/pkg/workloadapi"
	"istio.io/istio/pkg/workloadapi/security"

	pkgxds "github.com/ambient-mesh/ambient/pkg/xds"
)

func ztunnelConfig(addr string) pkgxds.Config {
	return pkgxds.Config{
		Address: addr,
		NodeID:  "ztunnel~10.0.0.9~ztunnel-x.istio-system~istio-system.svc.cluster.local",
		NodeMetadata: map[string]string{
			"NODE_NAME": "node-a", "CLUSTER_ID": "Kubernetes", "NAMESPACE": "istio-system",
		},
	}
}

func TestPushOnlyChanges(t *testing.T) {
	log := zaptest.NewLogger(t)
	h := startHarness(t, "127.0.0.1:0", log, nil)
	defer h.stop()
	addrs := addresses(10, 2)
	if err := h.srv.SetResources(pkgxds.AddressType, addrs); err != nil {
		t.Fatal(err)
	}
	if err := h.srv.SetResources(pkgxds.AuthorizationType, map[string]proto.Message{
		"default/allow": authzPolicy("allow", security.Action_ALLOW), "default/deny": authzPolicy("deny", security.Action_DENY),
	}); err != nil {
		t.Fatal(err)
	}
	cl := startClient(t, log, ztunnelConfig(h.addr))
	defer cl.stop()

	u := cl.addrs.next(t)
	if len(u.upserts) != 12 || len(u.removes) != 0 {
		t.Fatalf("initial Address state: %d upserts %d removes, want 12 and 0", len(u.upserts), len(u.removes))
	}
	if got := u.upserts[workloadName(3)].(*workloadapi.Address); !proto.Equal(got, addrs[workloadName(3)]) {
		t.Errorf("workload 3 = %v, want %v", got, addrs[workloadName(3)])
	}
	if p := cl.authz.next(t); len(p.upserts) != 2 {
		t.Fatalf("initial Authorization state: %d upserts, want 2", len(p.upserts))
	}

	// One changed workload, all others fresh but equal copies.
	next := addresses(10, 2)
	next[workloadName(4)] = workloadAddr(4, "b")
	if err := h.srv.SetResources(pkgxds.AddressType, next); err != nil {
		t.Fatal(err)
	}
	u = cl.addrs.next(t)
	if got := sortedKeys(u.upserts); !slices.Equal(got, []string{workloadName(4)}) || len(u.removes) != 0 {
		t.Fatalf("after one change: upserts %v removes %v, want only %s", got, u.removes, workloadName(4))
	}

	// Removal.
	delete(next, serviceName(1))
	if err := h.srv.SetResources(pkgxds.AddressType, next); err != nil {
		t.Fatal(err)
	}
	u = cl.addrs.next(t)
	if len(u.upserts) != 0 || !slices.Equal(u.removes, []string{serviceName(1)}) {
		t.Fatalf("after removal: upserts %v removes %v, want only remove %s", sortedKeys(u.upserts), u.removes, serviceName(1))
	}
	pushes := metricValue(t, h.srv.metrics.pushes.WithLabelValues("wads"))

	// Unchanged set: nothing is pushed. The marker update that follows must
	// be the very next Address call, alone.
	same := addresses(10, 2)
	same[workloadName(4)] = workloadAddr(4, "b")
	delete(same, serviceName(1))
	version := h.srv.caches[pkgxds.AddressType].cache.currentVersion()
	if err := h.srv.SetResources(pkgxds.AddressType, same); err != nil {
		t.Fatal(err)
	}
	if v := h.srv.caches[pkgxds.AddressType].cache.currentVersion(); v != version {
		t.Errorf("unchanged SetResources moved the cache version %d → %d", version, v)
	}
	if err := h.srv.UpdateResources(pkgxds.AddressType, map[string]proto.Message{"marker": workloadAddr(999, "m")}, nil); err != nil {
		t.Fatal(err)
	}
	u = cl.addrs.next(t)
	if got := sortedKeys(u.upserts); !slices.Equal(got, []string{"marker"}) || len(u.removes) != 0 {
		t.Fatalf("after unchanged set + marker: upserts %v removes %v, want only the marker", got, u.removes)
	}
	if got := metricValue(t, h.srv.metrics.pushes.WithLabelValues("wads")); got != pushes+1 {
		t.Errorf("pilot_xds_pushes{type=wads} went %v → %v, want +1 (the marker only)", pushes, got)
	}
	if n := len(h.srv.Resources(pkgxds.AddressType)); n != 12 {
		t.Errorf("served Address resources = %d, want 12", n)
	}

	// Connection tracking: node, metadata and both types synced.
	eventually(t, "both types SYNCED", func() bool {
		cs := h.srv.Connections()
		return len(cs) == 1 && len(cs[0].Types) == 2 && cs[0].Types[0].Sync == SyncSynced && cs[0].Types[1].Sync == SyncSynced
	})
	c := h.srv.Connections()[0]
	if c.NodeID != ztunnelConfig("").NodeID || c.Metadata["NODE_NAME"] != "node-a" || c.Metadata["CLUSTER_ID"] != "Kubernetes" {
		t.Errorf("connection = %+v, want node id and metadata of the client", c)
	}
	for _, ts := range c.Types {
		if !ts.Wildcard || ts.LastAckedVersion == "" || ts.LastAckedVersion != ts.LastSentVersion {
			t.Errorf("type status %+v: want wildcard, acked version = sent version", ts)
		}
	}
	if got := metricValue(t, h.srv.metrics.clients); got != 1 {
		t.Errorf("pilot_xds = %v, want 1", got)
	}
	if n := metricValue(t, h.srv.metrics.pushTime); n == 0 {
		t.Error("pilot_xds_push_time has no series after pushes of changes")
	}

	// The debug handler serves the same as JSON.
	rec := httptest.NewRecorder()
	h.srv.ConnectionsHandler().ServeHTTP(rec, httptest.NewRequest("GET", "/debug/connections", nil))
	var decoded []ConnectionStatus
	if err := json.Unmarshal(rec.Body.Bytes(), &decoded); err != nil {
		t.Fatalf("decode /debug/connections: %v\n%s", err, rec.Body.String())
	}
	if len(decoded) != 1 || decoded[0].NodeID != c.NodeID || len(decoded[0].Types) != 2 {
		t.Errorf("/debug/connections = %s", rec.Body.String())
	}
}

func TestNACK(t *testing.T) {
	log := zaptest.NewLogger(t)
	h := startHarness(t, "127.0.0.1:0", log, nil)
	defer h.stop()
	if err := h.srv.SetResources(pkgxds.AddressType, addresses(3, 0)); err != nil {
		t.Fatal(err)
	}
	cl := startClient(t, log, ztunnelConfig(h.addr))
	defer cl.stop()
	cl.addrs.mu.Lock()
	cl.addrs.reject = func(u update) error {
		if _, bad := u.upserts["bad"]; bad {
			return errors.New("workload bad has no address")
		}
		return nil
	}
	cl.addrs.mu.Unlock()
	cl.addrs.next(t)
	cl.authz.next(t)
	eventually(t, "initial Address ACK", func() bool {
		cs := h.srv.Connections()
		return len(cs) == 1 && len(cs[0].Types) == 2 && cs[0].Types[0].Sync == SyncSynced
	})
	good := cl.c.State().Types[pkgxds.AddressType]

	if err := h.srv.UpdateResources(pkgxds.AddressType, map[string]proto.Message{"bad": workloadAddr(66, "x")}, nil); err != nil {
		t.Fatal(err)
	}
	if u := cl.addrs.next(t); len(u.upserts) != 1 {
		t.Fatalf("bad update upserts = %v", sortedKeys(u.upserts))
	}
	var addrStatus TypeStatus
	eventually(t, "NACK recorded", func() bool {
		for _, ts := range h.srv.Connections()[0].Types {
			if ts.TypeURL == pkgxds.AddressType && ts.Sync == SyncNACKed {
				addrStatus = ts
				return true
			}
		}
		return false
	})
	if addrStatus.NACKs != 1 || addrStatus.LastNACK == nil || !strings.Contains(addrStatus.LastNACK.Error, "has no address") ||
		addrStatus.LastNACK.Version != addrStatus.LastSentVersion {
		t.Errorf("Address status after NACK = %+v (last NACK %+v)", addrStatus, addrStatus.LastNACK)
	}
	if got := metricValue(t, h.srv.metrics.rejects.WithLabelValues("wads")); got != 1 {
		t.Errorf("pilot_total_xds_rejects{type=wads} = %v, want 1", got)
	}
	st := cl.c.State().Types[pkgxds.AddressType]
	if st.NACKs != 1 || st.Version != good.Version || st.Resources != 3 {
		t.Errorf("client state after NACK = %+v, want last good version %q with 3 resources", st, good.Version)
	}

	// The next good update is accepted, and the rejected one is not resent.
	if err := h.srv.UpdateResources(pkgxds.AddressType, map[string]proto.Message{"good": workloadAddr(67, "x")}, nil); err != nil {
		t.Fatal(err)
	}
	if u := cl.addrs.next(t); !slices.Equal(sortedKeys(u.upserts), []string{"good"}) {
		t.Fatalf("update after NACK upserts = %v, want [good]", sortedKeys(u.upserts))
	}
	eventually(t, "Address SYNCED again", func() bool {
		for _, ts := range h.srv.Connections()[0].Types {
			if ts.TypeURL == pkgxds.AddressType {
				return ts.Sync == SyncSynced
			}
		}
		return false
	})
	if st := cl.c.State().Types[pkgxds.AddressType]; st.Version == good.Version || st.Resources != 4 || st.NACKs != 1 {
		t.Errorf("client state after good update = %+v, want a new version, 4 resources, still 1 NACK", st)
	}
	if got := metricValue(t, h.srv.metrics.rejects.WithLabelValues("wads")); got != 1 {
		t.Errorf("pilot_total_xds_rejects{type=wads} = %v after a good update, want still 1", got)
	}
}

func TestReconnectConverges(t *testing.T) {
	log := zaptest.NewLogger(t)
	h := startHarness(t, "127.0.0.1:0", log, nil)
	if err := h.srv.SetResources(pkgxds.AddressType, addresses(5, 1)); err != nil {
		t.Fatal(err)
	}
	cl := startClient(t, log, ztunnelConfig(h.addr))
	defer cl.stop()
	if u := cl.addrs.next(t); len(u.upserts) != 6 {
		t.Fatalf("initial upserts = %d, want 6", len(u.upserts))
	}
	cl.authz.next(t)

	addr := h.addr
	h.stop()
	eventually(t, "client reports disconnected", func() bool { return !cl.c.State().Connected })
	if st := cl.c.State(); st.LastError == "" || st.Types[pkgxds.AddressType].Resources != 6 {
		t.Errorf("state while disconnected = %+v, want an error and the 6 resources kept", st)
	}

	changed := addresses(5, 0) // service 0 removed
	changed[workloadName(2)] = workloadAddr(2, "new")
	changed[workloadName(7)] = workloadAddr(7, "a")
	h2 := startHarness(t, addr, log, func(s *Server) {
		if err := s.SetResources(pkgxds.AddressType, changed); err != nil {
			t.Fatal(err)
		}
	})
	defer h2.stop()
	u := cl.addrs.next(t)
	if got := sortedKeys(u.upserts); !slices.Equal(got, []string{workloadName(2), workloadName(7)}) {
		t.Errorf("upserts after reconnect = %v, want only the changed and the new workload", got)
	}
	if !slices.Equal(u.removes, []string{serviceName(0)}) {
		t.Errorf("removes after reconnect = %v, want [%s]", u.removes, serviceName(0))
	}
	eventually(t, "client reconnected", func() bool { return cl.c.State().Connected })
	if st := cl.c.State(); st.Types[pkgxds.AddressType].Resources != 6 {
		t.Errorf("state after reconnect = %+v, want 6 resources", st)
	}
}

func TestLateClientGetsFullState(t *testing.T) {
	log := zaptest.NewLogger(t)
	h := startHarness(t, "127.0.0.1:0", log, nil)
	defer h.stop()
	if err := h.srv.SetResources(pkgxds.AddressType, addresses(4, 2)); err != nil {
		t.Fatal(err)
	}
	first := startClient(t, log, ztunnelConfig(h.addr))
	defer first.stop()
	first.addrs.next(t)
	next := addresses(4, 2)
	next[workloadName(1)] = workloadAddr(1, "b")
	delete(next, serviceName(0))
	if err := h.srv.SetResources(pkgxds.AddressType, next); err != nil {
		t.Fatal(err)
	}
	first.addrs.next(t)

	// A new stream without initial versions (a new or restarted client)
	// receives everything currently served.
	second := startClient(t, log, ztunnelConfig(h.addr))
	defer second.stop()
	u := second.addrs.next(t)
	if got, want := sortedKeys(u.upserts), sortedKeys(next); !slices.Equal(got, want) || len(u.removes) != 0 {
		t.Fatalf("late client state = %v (removes %v), want %v", got, u.removes, want)
	}
	if !proto.Equal(u.upserts[workloadName(1)], next[workloadName(1)]) {
		t.Errorf("late client got a stale workload 1")
	}
	if p := second.authz.next(t); len(p.upserts) != 0 {
		t.Errorf("empty Authorization set sent %d resources", len(p.upserts))
	}
	eventually(t, "two connections", func() bool { return len(h.srv.Connections()) == 2 })
}

func TestUnservedTypeKeepsStream(t *testing.T) {
	log := zaptest.NewLogger(t)
	h := startHarness(t, "127.0.0.1:0", log, nil)
	defer h.stop()
	if err := h.srv.SetResources(pkgxds.AddressType, addresses(1, 0)); err != nil {
		t.Fatal(err)
	}
	const other = "type.googleapis.com/istio.workload.Other"
	cfg := ztunnelConfig(h.addr)
	cfg.Types = []string{other, pkgxds.AddressType}
	cfg.Prototypes = map[string]proto.Message{other: &workloadapi.Workload{}}
	cl := startClient(t, log, cfg)
	defer cl.stop()
	if u := cl.addrs.next(t); len(u.upserts) != 1 {
		t.Fatalf("Address upserts = %d, want 1", len(u.upserts))
	}
	if err := h.srv.SetResources(other, nil); err == nil {
		t.Error("SetResources of an unserved type succeeded")
	}
	if err := h.srv.UpdateResources(pkgxds.AddressType, map[string]proto.Message{"nil": nil}, nil); err == nil {
		t.Error("UpdateResources with a nil message succeeded")
	}
	if err := h.srv.SetResources(pkgxds.AddressType, map[string]proto.Message{"": workloadAddr(1, "a")}); err == nil {
		t.Error("SetResources with an empty name succeeded")
	}
}

func TestUpdateResourcesSemantics(t *testing.T) {
	srv := New(zap.NewNop(), Options{Types: []string{pkgxds.AuthorizationType}})
	defer srv.Close()
	a, b := authzPolicy("a", security.Action_ALLOW), authzPolicy("b", security.Action_DENY)
	steps := []struct {
		upsert map[string]proto.Message
		remove []string
		want   []string
		bumps  uint64
	}{
		{map[string]proto.Message{"a": a, "b": b}, nil, []string{"a", "b"}, 1},
		{map[string]proto.Message{"a": proto.Clone(a)}, []string{"nope"}, []string{"a", "b"}, 0}, // no-op
		{nil, []string{"b"}, []string{"a"}, 1},
		{map[string]proto.Message{"b": b}, []string{"b"}, []string{"a", "b"}, 1}, // upsert wins
	}
	tc := srv.caches[pkgxds.AuthorizationType]
	for i, s := range steps {
		before := tc.cache.currentVersion()
		if err := srv.UpdateResources(pkgxds.AuthorizationType, s.upsert, s.remove); err != nil {
			t.Fatalf("step %d: %v", i, err)
		}
		if got := sortedKeys(srv.Resources(pkgxds.AuthorizationType)); !slices.Equal(got, s.want) {
			t.Errorf("step %d: served %v, want %v", i, got, s.want)
		}
		if got := sortedKeys(tc.cache.entries); !slices.Equal(got, s.want) {
			t.Errorf("step %d: cache holds %v, want %v", i, got, s.want)
		}
		if n := tc.cache.currentVersion() - before; n != s.bumps {
			t.Errorf("step %d: version bumped %d times, want %d", i, n, s.bumps)
		}
	}
	if got := srv.Types(); !slices.Equal(got, []string{pkgxds.AuthorizationType}) {
		t.Errorf("Types = %v", got)
	}
}

// TestTLSAuthentication runs Serve's TLS port with an Authenticator that
// accepts one bearer token.
func TestTLSAuthentication(t *testing.T) {
	log := zaptest.NewLogger(t)
	serverCert, pool := selfSigned(t)
	srv := New(log, Options{})
	if err := srv.SetResources(pkgxds.AddressType, addresses(2, 0)); err != nil {
		t.Fatal(err)
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	auth := AuthenticatorFunc(func(ctx context.Context) (Identity, error) {
		tok, err := BearerToken(ctx)
		if err != nil {
			return Identity{}, err
		}
		if tok != "ztunnel-token" {
			return Identity{}, errors.New("token rejected by TokenReview")
		}
		return Identity{Namespace: "istio-system", ServiceAccount: "ztunnel"}, nil
	})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- Serve(ctx, log, ServeConfig{
			TLSListener: lis, TLS: &tls.Config{Certificates: []tls.Certificate{serverCert}},
			Authenticator: auth, Register: srv.Register, ShutdownGrace: time.Second,
		})
	}()
	defer func() {
		srv.Close()
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	}()

	dir := t.TempDir()
	good, bad := filepath.Join(dir, "good"), filepath.Join(dir, "bad")
	if err := os.WriteFile(good, []byte("ztunnel-token"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(bad, []byte("stolen"), 0o600); err != nil {
		t.Fatal(err)
	}
	clientTLS := &tls.Config{RootCAs: pool, ServerName: "istiod.istio-system.svc"}

	cfg := ztunnelConfig(lis.Addr().String())
	cfg.TLS, cfg.TokenFile = clientTLS, bad
	rejected := startClient(t, log, cfg)
	eventually(t, "unauthenticated error", func() bool { return strings.Contains(cl2err(rejected), "Unauthenticated") })
	if rejected.c.State().Connected {
		t.Error("client with a bad token is connected")
	}
	rejected.stop()

	cfg.TokenFile = good
	accepted := startClient(t, log, cfg)
	defer accepted.stop()
	if u := accepted.addrs.next(t); len(u.upserts) != 2 {
		t.Fatalf("upserts over TLS = %d, want 2", len(u.upserts))
	}
	eventually(t, "connection listed", func() bool { return len(srv.Connections()) == 1 })
	if id := srv.Connections()[0].Identity; id != "system:serviceaccount:istio-system:ztunnel" {
		t.Errorf("connection identity = %q", id)
	}
}

func cl2err(c *client) string { return c.c.State().LastError }

func selfSigned(t *testing.T) (tls.Certificate, *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "istiod"},
		DNSNames:  []string{"istiod.istio-system.svc"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign, IsCA: true, BasicConstraintsValid: true,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: cert}, pool
}

func TestServeValidates(t *testing.T) {
	reg := func(grpc.ServiceRegistrar) {}
	for _, tc := range []struct {
		name string
		cfg  ServeConfig
	}{
		{"no register", ServeConfig{PlaintextAddr: "127.0.0.1:0"}},
		{"no port", ServeConfig{Register: reg}},
		{"tls without cert", ServeConfig{TLSAddr: "127.0.0.1:0", Authenticator: NoAuthentication{}, Register: reg}},
		{"tls without authenticator", ServeConfig{TLSAddr: "127.0.0.1:0", TLS: &tls.Config{Certificates: []tls.Certificate{{}}}, Register: reg}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := Serve(context.Background(), zap.NewNop(), tc.cfg); err == nil {
				t.Error("Serve succeeded, want a configuration error")
			}
		})
	}
}

func TestWaitForReady(t *testing.T) {
	log := zaptest.NewLogger(t)
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := New(log, Options{WaitForReady: true})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- Serve(ctx, log, ServeConfig{PlaintextListener: lis, Register: srv.Register, ShutdownGrace: time.Second})
	}()
	defer func() {
		srv.Close()
		cancel()
		<-done
	}()
	cl := startClient(t, log, ztunnelConfig(lis.Addr().String()))
	defer cl.stop()
	eventually(t, "client refused while not ready", func() bool { return strings.Contains(cl.c.State().LastError, "not built yet") })
	if srv.Ready() || len(srv.Connections()) != 0 {
		t.Fatal("server ready or tracking a connection before MarkReady")
	}
	if err := srv.SetResources(pkgxds.AddressType, addresses(2, 1)); err != nil {
		t.Fatal(err)
	}
	srv.MarkReady()
	if u := cl.addrs.next(t); len(u.upserts) != 3 || len(u.removes) != 0 {
		t.Fatalf("first state after ready: %d upserts %v removes, want 3 and none", len(u.upserts), u.removes)
	}
}

// mirror is a handler that applies every update to a map, as ztunnel's
// state store would.
type mirror struct {
	mu    sync.Mutex
	state map[string]proto.Message
}

func (m *mirror) Update(_ string, upserts map[string]proto.Message, removes []string, _ string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	for k, v := range upserts {
		m.state[k] = v
	}
	for _, k := range removes {
		delete(m.state, k)
	}
	return nil
}

func (m *mirror) equals(want map[string]proto.Message) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	if len(m.state) != len(want) {
		return false
	}
	for k, v := range want {
		if !proto.Equal(m.state[k], v) {
			return false
		}
	}
	return true
}

// TestManyClientsConvergeUnderChurn changes the set faster than clients
// ACK, so responses are in flight while changes land, and checks that every
// client ends with exactly the served set.
func TestManyClientsConvergeUnderChurn(t *testing.T) {
	log := zap.NewNop()
	h := startHarness(t, "127.0.0.1:0", log, func(s *Server) {
		if err := s.SetResources(pkgxds.AddressType, addresses(200, 20)); err != nil {
			t.Fatal(err)
		}
	})
	defer h.stop()
	var mirrors []*mirror
	for range 8 {
		m := &mirror{state: map[string]proto.Message{}}
		mirrors = append(mirrors, m)
		c, err := pkgxds.New(log, pkgxds.Config{Address: h.addr, NodeID: "n", Types: []string{pkgxds.AddressType}},
			map[string]pkgxds.Handler{pkgxds.AddressType: m})
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() { defer close(done); _ = c.Run(ctx) }()
		defer func() { cancel(); <-done }()
	}
	state := addresses(200, 20)
	for i := range 60 {
		state[workloadName(i*7%200)] = workloadAddr(i*7%200, fmt.Sprint("r", i))
		switch i % 3 {
		case 0:
			delete(state, workloadName(i%200))
		case 1:
			state[workloadName(200+i)] = workloadAddr(200+i, "new")
		}
		if err := h.srv.SetResources(pkgxds.AddressType, state); err != nil {
			t.Fatal(err)
		}
	}
	for i, m := range mirrors {
		eventually(t, fmt.Sprintf("client %d converged", i), func() bool { return m.equals(state) })
	}
}
