// Package identity is the certificate manager of ztunnel and waypoints: one
// certificate per workload identity (spiffe.Identity), fetched on first use or prefetched when
// a pod arrives, shared by every connection of that identity, renewed at half
// life with jitter, retried with exponential backoff (the old certificate is
// served while still valid), and dropped when the identity's last pod leaves.
// Certificates come from a Fetcher: the Istio CA gRPC client (CAClient) or a
// local CA (LocalFetcher, for --ca local). The manager also holds the trust
// bundle used to verify peers.
package identity
