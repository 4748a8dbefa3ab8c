package waypointctl

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

// Results, the values of the result label.
const (
	resultSuccess = "success" // children and status up to date
	resultInvalid = "invalid" // Gateway not accepted; status written
	resultIgnored = "ignored" // another class, or the Gateway is gone
	resultRequeue = "requeue" // stale cache or write conflict; retried
	resultError   = "error"
)

type metrics struct {
	reconciles *prometheus.CounterVec
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		reconciles: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "istiod_lite_waypoint_reconciles_total",
			Help: "Reconciles of waypoint Gateways and the istio-waypoint GatewayClass, by result.",
		}, []string{"result"}),
	}
	for _, r := range []string{resultSuccess, resultInvalid, resultIgnored, resultRequeue, resultError} {
		m.reconciles.WithLabelValues(r)
	}
	if reg != nil {
		if err := reg.Register(m.reconciles); err != nil {
			return nil, fmt.Errorf("register waypoint controller metrics: %w", err)
		}
	}
	return m, nil
}
