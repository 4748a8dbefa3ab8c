package listener

import (
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/ambient-mesh/ambient/pkg/spiffe"
)

// observe caches each label set's series: repeated and distinct label sets
// must still land in their own series.
func TestMetricsObserveSeries(t *testing.T) {
	reg := prometheus.NewRegistry()
	m, err := NewMetrics(reg)
	if err != nil {
		t.Fatal(err)
	}
	src := spiffe.Identity{TrustDomain: "cluster.local", Namespace: "default", ServiceAccount: "sleep"}
	ok := RequestLabels{Source: src, DestinationService: "reviews.default.svc.cluster.local", Code: 200, Flags: "-"}
	failed := ok
	failed.Code, failed.Flags = 503, "UH"
	for range 3 {
		m.observe(ok, 1.5, 0, 1024)
	}
	m.observe(failed, 0.2, 10, 0)

	for _, c := range []struct {
		l    RequestLabels
		want float64
	}{{ok, 3}, {failed, 1}} {
		if got := testutil.ToFloat64(m.requests.WithLabelValues(c.l.Values()...)); got != c.want {
			t.Errorf("istio_requests_total{code=%d} = %v, want %v", c.l.Code, got, c.want)
		}
	}
	if n := testutil.CollectAndCount(m.duration); n != 2 {
		t.Errorf("%d duration series, want 2", n)
	}
	if n := testutil.CollectAndCount(m.respBytes); n != 2 {
		t.Errorf("%d response size series, want 2", n)
	}
}
