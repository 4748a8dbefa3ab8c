// Command benchca is the certificate authority of the hack/bench/l7
// topology: an IstioCertificateService on a plaintext gRPC port signing
// every CSR for the identity it asks for (ImpersonatedIdentity metadata),
// with one self-signed root held in memory. It lets the ztunnels and the
// waypoint of the benchmark, run with --ca=istiod --ca-address=<this>:15010,
// trust each other without istiod-lite or Kubernetes. Benchmarks only: it
// authenticates nobody.
package main
