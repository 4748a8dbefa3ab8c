// Package dns is the local cluster's DNS server, standing in for CoreDNS: a
// small authoritative server for the cluster domain (cluster.local) on UDP
// and TCP, fed by Service and EndpointSlice informers. It answers
//
//   - <svc>.<ns>.svc.<domain>: A/AAAA → the Service's ClusterIPs; for a
//     headless Service, the ready addresses of its EndpointSlices; for an
//     ExternalName Service, a CNAME (not chased);
//   - <hostname-or-dashed-ip>.<svc>.<ns>.svc.<domain>: one endpoint of a
//     headless Service;
//   - _<port>._<proto>.<svc>.<ns>.svc.<domain>: SRV for named ports;
//   - <dashed-ip>.<ns>.pod.<domain>: the IP itself (CoreDNS "pods insecure");
//
// with NODATA for other types of existing names (and empty non-terminals
// such as <ns>.svc.<domain>), NXDOMAIN for other names in the domain (so
// search-path expansions fail fast) and REFUSED for names outside it:
// nothing is forwarded, nothing leaves the machine. Until the informers have
// synced, names in the domain get SERVFAIL rather than a cacheable NXDOMAIN.
//
// Decisions are pure: BuildIndex (objects → Index) and Answer (query, Index
// → response) are table-tested; Truncate fits a response to a UDP size.
//
// Goroutines: Watch owns the informers; their handlers only signal one
// rebuild goroutine, the single writer of the Store, which swaps in a new
// immutable Index (atomic.Pointer). Serve reads the Store per query from
// one UDP loop and one goroutine per TCP connection.
package dns
