package captureagent

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

// Metric names of the agent.
const (
	MetricEnrolledPods       = "ztunnel_capture_enrolled_pods"
	MetricAttachedInterfaces = "ztunnel_capture_attached_interfaces"
	MetricReconcileErrors    = "ztunnel_capture_reconcile_errors_total"
)

type metrics struct {
	enrolledPods    prometheus.Gauge
	attached        prometheus.Gauge
	reconcileErrors prometheus.Counter
}

// newMetrics creates the agent's metrics and registers them with reg (nil:
// not registered).
func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		enrolledPods: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: MetricEnrolledPods,
			Help: "Pods of this node whose addresses are in the capture map.",
		}),
		attached: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: MetricAttachedInterfaces,
			Help: "Interfaces (pod veths and the uplink) the capture program is attached to.",
		}),
		reconcileErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: MetricReconcileErrors,
			Help: "Capture reconcile passes that failed (retried with backoff).",
		}),
	}
	if reg == nil {
		return m, nil
	}
	for _, c := range []prometheus.Collector{m.enrolledPods, m.attached, m.reconcileErrors} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("register capture agent metrics: %w", err)
		}
	}
	return m, nil
}
