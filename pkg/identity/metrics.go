package identity

import (
	"github.com/prometheus/client_golang/prometheus"
)

// collector exports the manager's state at scrape time, so forgotten
// identities leave no series behind.
type collector struct {
	m                             *Manager
	fetches, failures, roots, exp *prometheus.Desc
}

// Collector returns the manager's metrics (names start with
// Options.MetricPrefix, default "ztunnel"):
//
//	<prefix>_certificate_fetches_total          certificate fetch attempts
//	<prefix>_certificate_renewal_failures_total failed fetch attempts (first fetches and renewals)
//	<prefix>_certificate_expiry_seconds{identity} seconds until the held certificate expires (negative once expired)
//	<prefix>_trust_bundle_roots                 roots in the trust bundle
func (m *Manager) Collector() prometheus.Collector {
	p := m.o.MetricPrefix
	return &collector{
		m:        m,
		fetches:  prometheus.NewDesc(p+"_certificate_fetches_total", "Certificate fetch attempts from the CA.", nil, nil),
		failures: prometheus.NewDesc(p+"_certificate_renewal_failures_total", "Failed certificate fetch attempts (first fetches and renewals).", nil, nil),
		roots:    prometheus.NewDesc(p+"_trust_bundle_roots", "Roots in the trust bundle used to verify peers.", nil, nil),
		exp: prometheus.NewDesc(p+"_certificate_expiry_seconds",
			"Seconds until the held certificate of an identity expires (negative once expired).", []string{"identity"}, nil),
	}
}

func (c *collector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.fetches
	ch <- c.failures
	ch <- c.roots
	ch <- c.exp
}

func (c *collector) Collect(ch chan<- prometheus.Metric) {
	st := c.m.Stats()
	ch <- prometheus.MustNewConstMetric(c.fetches, prometheus.CounterValue, float64(st.Fetches))
	ch <- prometheus.MustNewConstMetric(c.failures, prometheus.CounterValue, float64(st.Failures))
	ch <- prometheus.MustNewConstMetric(c.roots, prometheus.GaugeValue, float64(len(c.m.Roots())))
	now := c.m.o.Clock.Now()
	for _, ci := range c.m.Snapshot() {
		if ci.NotAfter.IsZero() {
			continue
		}
		ch <- prometheus.MustNewConstMetric(c.exp, prometheus.GaugeValue, ci.NotAfter.Sub(now).Seconds(), ci.Identity)
	}
}
