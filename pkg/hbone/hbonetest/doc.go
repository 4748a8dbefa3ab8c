// Package hbonetest holds test helpers for HBONE: a throwaway certificate
// authority that issues SPIFFE SVIDs (ECDSA P-256) with a chosen validity,
// and an in-memory CertSource. It is for tests only; pkg/certs is the real CA.
package hbonetest
