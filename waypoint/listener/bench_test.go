package listener_test

import (
	"context"
	"io"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"testing"

	"github.com/ambient-mesh/ambient/pkg/hbone"
)

var kilobyte = strings.Repeat("x", 1024)

func oneKB() backend {
	return httpBackend(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain")
		io.WriteString(w, kilobyte)
	}))
}

func benchGet(b *testing.B, c *http.Client, url string) {
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			res, err := c.Get(url)
			if err != nil {
				b.Error(err)
				return
			}
			n, _ := io.Copy(io.Discard, res.Body)
			res.Body.Close()
			if res.StatusCode != 200 || n != 1024 {
				b.Errorf("status %d, %d bytes", res.StatusCode, n)
				return
			}
		}
	})
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "req/s")
}

// BenchmarkHTTP1ThroughWaypoint: client → HBONE → waypoint (route, RBAC,
// metrics) → HBONE → destination ztunnel → backend, keep-alive, 1 KB
// answers.
func BenchmarkHTTP1ThroughWaypoint(b *testing.B) {
	e := newEnv(b, "weights", map[string]backend{"10.244.1.11": oneKB(), "10.244.2.12": oneKB()})
	c := e.httpClient(sleepID, "10.96.0.21:9080")
	benchGet(b, c, "http://reviews-v1:9080/")
}

// BenchmarkHTTP1HBONEOnly: client → HBONE → destination ztunnel →
// backend: the tunnel cost without the waypoint hop.
func BenchmarkHTTP1HBONEOnly(b *testing.B) {
	e := newEnv(b, "weights", map[string]backend{"10.244.1.11": oneKB(), "10.244.2.12": oneKB()})
	p := e.pods["10.244.1.11"]
	tr := &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return e.clients.Dial(ctx, hbone.DialRequest{Source: waypointID, Peer: p.tunnel, Target: hbone.Target{Authority: p.backend}})
		},
		MaxIdleConnsPerHost: 64, DisableCompression: true,
	}
	defer tr.CloseIdleConnections()
	benchGet(b, &http.Client{Transport: tr}, "http://reviews-v1:9080/")
}

// BenchmarkHTTP1Direct: client → backend over loopback TCP.
func BenchmarkHTTP1Direct(b *testing.B) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	oneKB()(b, ln)
	tr := &http.Transport{MaxIdleConnsPerHost: 64, DisableCompression: true}
	defer tr.CloseIdleConnections()
	benchGet(b, &http.Client{Transport: tr}, "http://"+netip.MustParseAddrPort(ln.Addr().String()).String()+"/")
}
