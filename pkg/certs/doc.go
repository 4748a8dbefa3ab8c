// Package certs holds the X.509 primitives of the mesh: ECDSA P-256 keys,
// certificate signing requests, PEM encoding, and a signing CA (self-signed
// root or an intermediate loaded from Istio's cacerts layout) that issues
// SPIFFE workload certificates. It uses the standard library's crypto only.
package certs
