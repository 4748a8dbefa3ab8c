// Package spiffe parses and formats the SPIFFE identities of mesh workloads
// (spiffe://<trust-domain>/ns/<namespace>/sa/<service-account>) and extracts a
// verified peer identity from a TLS connection against a trust bundle that may
// hold more than one root (for rotation).
package spiffe
