// Command istiod-lite is the control plane of the ambient mesh: it watches
// Kubernetes, serves delta xDS to ztunnels and waypoints, signs workload
// certificates, deploys waypoints and writes status. See istiod-lite/app.
package main
