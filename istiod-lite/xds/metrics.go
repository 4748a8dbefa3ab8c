package xds

import (
	"errors"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"
)

// metrics are the xDS server metrics, named as Istio's pilot exports them.
type metrics struct {
	pushes    *prometheus.CounterVec   // pilot_xds_pushes{type}
	pushTime  *prometheus.HistogramVec // pilot_xds_push_time{type}
	clients   prometheus.Gauge         // pilot_xds
	rejects   *prometheus.CounterVec   // pilot_total_xds_rejects{type}
	resources *prometheus.GaugeVec     // ambient_xds_resources{type}
}

func newMetrics(logger *zap.Logger, reg prometheus.Registerer) *metrics {
	m := &metrics{
		pushes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "pilot_xds_pushes",
			Help: "Delta xDS responses sent to clients, by type.",
		}, []string{"type"}),
		pushTime: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "pilot_xds_push_time",
			Help:    "Time in seconds from a change of the served resources to its response being sent, by type.",
			Buckets: []float64{.001, .005, .01, .025, .05, .1, .2, .5, 1, 3, 5, 10},
		}, []string{"type"}),
		clients: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "pilot_xds",
			Help: "Number of endpoints connected to this pilot using XDS.",
		}),
		rejects: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "pilot_total_xds_rejects",
			Help: "Total number of XDS responses from pilot rejected by proxy (NACKs), by type.",
		}, []string{"type"}),
		resources: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "ambient_xds_resources",
			Help: "Number of resources currently served, by type.",
		}, []string{"type"}),
	}
	if reg == nil {
		return m
	}
	m.pushes = register(logger, reg, m.pushes)
	m.pushTime = register(logger, reg, m.pushTime)
	m.clients = register(logger, reg, m.clients)
	m.rejects = register(logger, reg, m.rejects)
	m.resources = register(logger, reg, m.resources)
	return m
}

// register registers c, reusing an identical collector registered earlier
// (a second Server on the same registry, as in tests).
func register[C prometheus.Collector](logger *zap.Logger, reg prometheus.Registerer, c C) C {
	err := reg.Register(c)
	if err == nil {
		return c
	}
	var are prometheus.AlreadyRegisteredError
	if errors.As(err, &are) {
		if existing, ok := are.ExistingCollector.(C); ok {
			return existing
		}
	}
	logger.Error("xds metric not registered", zap.Error(err))
	return c
}
