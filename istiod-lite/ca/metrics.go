package ca

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

// Refusal reasons, the values of the reason label.
const (
	reasonUnauthenticated  = "unauthenticated"
	reasonPermissionDenied = "permission_denied"
	reasonInvalidCSR       = "invalid_csr"
	reasonInvalidArgument  = "invalid_argument"
	reasonUnavailable      = "unavailable"
	reasonSign             = "sign"
)

// metrics uses Istio's citadel_server_* names where Istio has one.
type metrics struct {
	csr        prometheus.Counter
	success    prometheus.Counter
	authnFail  prometheus.Counter
	parseErr   prometheus.Counter
	signErr    *prometheus.CounterVec
	refusals   *prometheus.CounterVec
	rootExpiry prometheus.Gauge
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		csr: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "citadel_server_csr_count", Help: "The number of CSRs received by Citadel server.",
		}),
		success: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "citadel_server_success_cert_issuance_count", Help: "The number of certificates issuances that have succeeded.",
		}),
		authnFail: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "citadel_server_authentication_failure_count", Help: "The number of authentication failures.",
		}),
		parseErr: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "citadel_server_csr_parsing_err_count", Help: "The number of errors occurred when parsing the CSR.",
		}),
		signErr: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "citadel_server_csr_sign_err_count", Help: "The number of errors occurred when signing the CSR.",
		}, []string{"error"}),
		refusals: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "citadel_server_csr_refused_count", Help: "The number of CSRs refused, by reason.",
		}, []string{"reason"}),
		rootExpiry: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "citadel_server_root_cert_expiry_timestamp", Help: "The unix timestamp, in seconds, when the root cert will expire.",
		}),
	}
	if reg == nil {
		return m, nil
	}
	for _, c := range []prometheus.Collector{m.csr, m.success, m.authnFail, m.parseErr, m.signErr, m.refusals, m.rootExpiry} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("register CA metrics: %w", err)
		}
	}
	return m, nil
}
