// Package ca is istiod-lite's certificate authority: it keeps the signing CA
// in Kubernetes Secrets (a generated self-signed root in istio-ca-secret, or a
// plugged-in intermediate from cacerts), serves
// istio.v1.auth.IstioCertificateService/CreateCertificate to callers
// authenticated by a ServiceAccount token (TokenReview), lets the ztunnel
// service account ask for the identities of pods on its own node, and
// publishes the root in the istio-ca-root-cert ConfigMap of every namespace.
// See README.md for the authorization rules.
package ca
