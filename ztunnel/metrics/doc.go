// Package metrics defines ztunnel's Prometheus metrics with Istio's standard
// names and labels (istio_tcp_connections_opened_total, ..._closed_total,
// istio_tcp_sent_bytes_total, istio_tcp_received_bytes_total), so existing
// Istio dashboards and alerts work unchanged.
package metrics
