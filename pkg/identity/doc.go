// Package identity is the certificate manager of ztunnel and waypoints: one
// certificate per workload identity (spiffe.Identity), fetched on first use or prefetched when
// a pod arrives, shared by every connection of that identity, renewed at half
// life with jitter, retried with exponential backoff (the old certificate is
// served while still valid), and dropped when the identity's last pod leaves.
// Certificates come from a Fetcher: the Istio CA gRPC client (CAClient) or a
// local CA (LocalFetcher, for --ca local). The manager also holds the trust
// bundle used to verify peers: the static roots (Options.Roots, SetRoots)
// plus the roots the CA distributes, i.e. the self-signed certificates ending
// the latest fetched chain (Istio appends root-cert.pem, which holds old and
// new roots during a rotation). A root no longer distributed is dropped; when
// the distributed set changes, every held certificate is renewed at once.
// Renewal failures are logged at error level with the identity, the time
// left and the likely cause (LikelyCause), and exported by Collector
// (<prefix>_certificate_renewal_failures_total,
// <prefix>_certificate_expiry_seconds{identity}, <prefix>_trust_bundle_roots).
package identity
