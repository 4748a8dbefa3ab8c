package xds

// Type URLs served by istiod-lite. The ztunnel ones are Istio's own so that
// upstream ztunnel and ours are interchangeable. The Envoy ones equal
// go-control-plane's resource/v3 constants (checked by a test) without
// linking every Envoy API package into ztunnel.
const (
	// AddressType carries istio.io/istio/pkg/workloadapi.Address (workloads and services).
	AddressType = "type.googleapis.com/istio.workload.Address"
	// AuthorizationType carries istio.io/istio/pkg/workloadapi/security.Authorization.
	AuthorizationType = "type.googleapis.com/istio.security.Authorization"
	// ListenerType is the Envoy v3 Listener (waypoints).
	ListenerType = "type.googleapis.com/envoy.config.listener.v3.Listener"
	// RouteType is the Envoy v3 RouteConfiguration (waypoints).
	RouteType = "type.googleapis.com/envoy.config.route.v3.RouteConfiguration"
	// ClusterType is the Envoy v3 Cluster (waypoints).
	ClusterType = "type.googleapis.com/envoy.config.cluster.v3.Cluster"
	// EndpointType is the Envoy v3 ClusterLoadAssignment (waypoints).
	EndpointType = "type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment"
)

// ZtunnelTypes are the type URLs a ztunnel subscribes to.
var ZtunnelTypes = []string{AddressType, AuthorizationType}

// WaypointTypes are the type URLs a waypoint subscribes to.
var WaypointTypes = []string{ListenerType, RouteType, ClusterType, EndpointType}

// ShortType is the short name of a type URL used in metric labels and logs,
// following Istio's names (cds, lds, rds, eds, wads, wdsauthz). Unknown type
// URLs are returned unchanged.
func ShortType(typeURL string) string {
	switch typeURL {
	case ClusterType:
		return "cds"
	case ListenerType:
		return "lds"
	case RouteType:
		return "rds"
	case EndpointType:
		return "eds"
	case AddressType:
		return "wads"
	case AuthorizationType:
		return "wdsauthz"
	default:
		return typeURL
	}
}
