// Package xds is the delta ADS client of the mesh data plane (ztunnel and
// waypoints). It subscribes to a set of type URLs as wildcard over
// envoy.service.discovery.v3.AggregatedDiscoveryService/DeltaAggregatedResources,
// decodes each resource into the Go type registered for its type URL and hands
// the changes to a per-type Handler. A handler error NACKs the response (the
// client keeps its last good state); success ACKs it. The client reconnects
// with exponential backoff and jitter, telling the server which resource
// versions it still holds so that unchanged resources are not sent again, and
// exposes its State for readiness probes, admin pages and proxy-status.
package xds
