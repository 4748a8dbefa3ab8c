//go:build linux

package captureagent

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/ambient-mesh/ambient/ztunnel/capture"
)

// MetricPackets is the capture program's counters, by result.
const MetricPackets = "ztunnel_capture_packets_total"

// StatsSource reads the capture program's counters (capture.Objects).
type StatsSource interface {
	Stats() (capture.Stats, error)
}

// NewStatsCollector exposes the program's counters (summed over CPUs) as
// ztunnel_capture_packets_total{result}, read at scrape time.
func NewStatsCollector(src StatsSource) prometheus.Collector {
	return &statsCollector{src: src, desc: prometheus.NewDesc(MetricPackets,
		"Packets the capture program assigned to ztunnel or dropped (fail closed, spoofed, unparsed), by result.",
		[]string{"result"}, nil)}
}

type statsCollector struct {
	src  StatsSource
	desc *prometheus.Desc
}

func (c *statsCollector) Describe(ch chan<- *prometheus.Desc) { ch <- c.desc }

func (c *statsCollector) Collect(ch chan<- prometheus.Metric) {
	s, err := c.src.Stats()
	if err != nil {
		ch <- prometheus.NewInvalidMetric(c.desc, err)
		return
	}
	for _, v := range statsValues(s) {
		ch <- prometheus.MustNewConstMetric(c.desc, prometheus.CounterValue, float64(v.n), v.result)
	}
}

type statValue struct {
	result string
	n      uint64
}

// statsValues names the counters: assigned_* went to ztunnel, dropped_* were
// dropped by the program.
func statsValues(s capture.Stats) []statValue {
	return []statValue{
		{"assigned_established", s.AssignedEstablished},
		{"assigned_outbound", s.AssignedOutbound},
		{"assigned_inbound_plaintext", s.AssignedInboundPlain},
		{"assigned_hbone", s.AssignedHBONE},
		{"assigned_lookup", s.LookupAssigned},
		{"dropped_no_listener", s.NoListener},
		{"dropped_assign_failed", s.AssignFailed},
		{"dropped_spoofed", s.Spoofed},
		{"dropped_unparsed", s.Unparsed},
	}
}
