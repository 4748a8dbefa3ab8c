package dns

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"testing"
	"time"

	"go.uber.org/zap/zaptest"
	"golang.org/x/net/dns/dnsmessage"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes/fake"
)

// startServer runs Run on 127.0.0.1 with a fake clientset holding objs and
// returns the address once the index has synced.
func startServer(t *testing.T, objs ...runtime.Object) (*fake.Clientset, string) {
	t.Helper()
	client := fake.NewClientset(objs...)
	ctx, cancel := context.WithCancel(context.Background())
	addrc := make(chan string, 1)
	done := make(chan error, 1)
	go func() {
		done <- Run(ctx, Config{
			Client: client, Addr: netip.MustParseAddrPort("127.0.0.1:0"), Logger: zaptest.NewLogger(t),
			Ready: func(udp, tcp net.Addr) {
				if udp.String() != tcp.String() {
					t.Errorf("udp %v and tcp %v differ", udp, tcp)
				}
				addrc <- udp.String()
			},
		})
	}()
	var addr string
	select {
	case addr = <-addrc:
	case err := <-done:
		cancel()
		t.Fatalf("Run: %v", err)
	}
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	// Wait for the informers: SERVFAIL until then.
	waitFor(t, addr, "kubernetes.default.svc.cluster.local.", func(m dnsmessage.Message) bool {
		return m.RCode != dnsmessage.RCodeServerFailure
	})
	return client, addr
}

// exchange sends one query over network ("udp" or "tcp") and returns the response.
func exchange(t *testing.T, network, addr string, q dnsmessage.Message) dnsmessage.Message {
	t.Helper()
	b, err := q.Pack()
	if err != nil {
		t.Fatal(err)
	}
	c, err := net.Dial(network, addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if network == "tcp" {
		b = append([]byte{byte(len(b) >> 8), byte(len(b))}, b...)
	}
	if _, err := c.Write(b); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 65537)
	n, err := c.Read(buf)
	if err != nil {
		t.Fatal(err)
	}
	if network == "tcp" {
		if n < 2 || int(buf[0])<<8|int(buf[1]) != n-2 {
			t.Fatalf("tcp frame: %d bytes, length prefix %d", n, int(buf[0])<<8|int(buf[1]))
		}
		buf = buf[2:n]
	} else {
		buf = buf[:n]
	}
	var m dnsmessage.Message
	if err := m.Unpack(buf); err != nil {
		t.Fatalf("unpack response: %v", err)
	}
	return m
}

// waitFor repeats an A query for name until ok holds (the informers are
// asynchronous); it gives up after a minute so a broken server fails the test
// instead of hanging it.
func waitFor(t *testing.T, addr, name string, ok func(dnsmessage.Message) bool) dnsmessage.Message {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for {
		m := exchange(t, "udp", addr, query(name, dnsmessage.TypeA))
		if ok(m) {
			return m
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: still %v %q", name, m.RCode, rrs(m.Answers))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func resolver(addr string) *net.Resolver {
	return &net.Resolver{PreferGo: true, Dial: func(ctx context.Context, network, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, network, addr)
	}}
}

func kubernetesObjects() []runtime.Object {
	kube := service("default", "kubernetes", "10.96.0.1")
	kube.Spec.Ports = []corev1.ServicePort{{Name: "https", Port: 443, Protocol: corev1.ProtocolTCP}}
	var eps []ep
	for i := range 100 {
		eps = append(eps, ep{addr: fmt.Sprintf("10.244.1.%d", i+2)})
	}
	return []runtime.Object{
		kube,
		service("foo", "many", corev1.ClusterIPNone),
		slice("foo", "many", "many-1", discoveryv1.AddressTypeIPv4, map[string]int32{"http": 8080}, eps...),
	}
}

func TestServerUDPAndTCP(t *testing.T) {
	_, addr := startServer(t, kubernetesObjects()...)
	for _, network := range []string{"udp", "tcp"} {
		m := exchange(t, network, addr, query("kubernetes.default.svc.cluster.local.", dnsmessage.TypeA))
		if got := rrs(m.Answers); m.RCode != dnsmessage.RCodeSuccess || !slices.Equal(got, []string{"kubernetes.default.svc.cluster.local. A 10.96.0.1"}) {
			t.Errorf("%s: %v %q", network, m.RCode, got)
		}
		if m := exchange(t, network, addr, query("example.com.", dnsmessage.TypeA)); m.RCode != dnsmessage.RCodeRefused {
			t.Errorf("%s: example.com: %v, want REFUSED", network, m.RCode)
		}
	}
	// 100 endpoints do not fit in 512 bytes of UDP but do over TCP.
	if m := exchange(t, "udp", addr, query("many.foo.svc.cluster.local.", dnsmessage.TypeA)); !m.Truncated || len(m.Answers) != 0 {
		t.Errorf("udp: big answer: TC %v, %d answers; want truncated", m.Truncated, len(m.Answers))
	}
	if m := exchange(t, "tcp", addr, query("many.foo.svc.cluster.local.", dnsmessage.TypeA)); m.Truncated || len(m.Answers) != 100 {
		t.Errorf("tcp: big answer: TC %v, %d answers; want 100", m.Truncated, len(m.Answers))
	}
}

func TestServerWithGoResolver(t *testing.T) {
	client, addr := startServer(t, kubernetesObjects()...)
	r := resolver(addr)
	ctx := context.Background()

	ips, err := r.LookupHost(ctx, "kubernetes.default.svc.cluster.local.")
	if err != nil || !slices.Equal(ips, []string{"10.96.0.1"}) {
		t.Errorf("LookupHost kubernetes = %v, %v", ips, err)
	}
	// The Go resolver retries the truncated UDP answer over TCP.
	ips, err = r.LookupHost(ctx, "many.foo.svc.cluster.local.")
	if err != nil || len(ips) != 100 {
		t.Errorf("LookupHost many = %d addresses, %v; want 100", len(ips), err)
	}
	_, srvs, err := r.LookupSRV(ctx, "https", "tcp", "kubernetes.default.svc.cluster.local.")
	if err != nil || len(srvs) != 1 || srvs[0].Port != 443 || srvs[0].Target != "kubernetes.default.svc.cluster.local." {
		t.Errorf("LookupSRV = %+v, %v", srvs, err)
	}
	ips, err = r.LookupHost(ctx, "10-244-7-9.foo.pod.cluster.local.")
	if err != nil || !slices.Equal(ips, []string{"10.244.7.9"}) {
		t.Errorf("LookupHost pod = %v, %v", ips, err)
	}
	var dnsErr *net.DNSError
	_, err = r.LookupHost(ctx, "nothere.default.svc.cluster.local.")
	if !errors.As(err, &dnsErr) || !dnsErr.IsNotFound {
		t.Errorf("LookupHost unknown: %v, want not found", err)
	}
	_, err = r.LookupHost(ctx, "example.com.")
	if !errors.As(err, &dnsErr) || dnsErr.IsNotFound {
		t.Errorf("LookupHost outside: %v, want a (non-NXDOMAIN) error", err)
	}

	// Informer updates reach the index.
	svc := service("foo", "httpbin", "10.96.0.20")
	if _, err := client.CoreV1().Services("foo").Create(ctx, svc, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, addr, "httpbin.foo.svc.cluster.local.", func(m dnsmessage.Message) bool { return len(m.Answers) == 1 })
	ips, err = r.LookupHost(ctx, "httpbin.foo.svc.cluster.local.")
	if err != nil || !slices.Equal(ips, []string{"10.96.0.20"}) {
		t.Errorf("LookupHost httpbin = %v, %v", ips, err)
	}
	if err := client.CoreV1().Services("foo").Delete(ctx, "httpbin", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, addr, "httpbin.foo.svc.cluster.local.", func(m dnsmessage.Message) bool { return m.RCode == dnsmessage.RCodeNameError })
}

func TestRunListenError(t *testing.T) {
	l, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	err = Run(context.Background(), Config{Client: fake.NewClientset(), Addr: netip.MustParseAddrPort(l.LocalAddr().String())})
	if err == nil {
		t.Fatal("Run on a busy port succeeded")
	}
}
