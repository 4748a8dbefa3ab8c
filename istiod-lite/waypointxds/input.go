package waypointxds

import (
	securityv1beta1 "istio.io/api/security/v1beta1"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"
)

// Input is everything Build needs for one waypoint. Callers trim Kubernetes
// objects into these structs; Build never mutates them.
type Input struct {
	Waypoint Waypoint
	// Bound are the Services that use this waypoint (istio.io/use-waypoint):
	// each HTTP port of each gets a virtual host.
	Bound []Service
	// Services holds every known Service by namespace/name, bound or not, to
	// resolve backendRefs and parentRefs. Bound services need not be repeated.
	Services   map[Key]Service
	HTTPRoutes []*gatewayv1.HTTPRoute
	GRPCRoutes []*gatewayv1.GRPCRoute
	// AuthorizationPolicies may hold any policies; only those whose targetRefs
	// name this waypoint's Gateway or a bound Service are used.
	AuthorizationPolicies []AuthorizationPolicy
}

// Waypoint identifies the waypoint Gateway the resources are for.
type Waypoint struct {
	Name        string
	Namespace   string
	TrustDomain string // default "cluster.local"
}

// Key names a namespaced object.
type Key struct {
	Namespace string
	Name      string
}

func (k Key) String() string { return k.Namespace + "/" + k.Name }

// Service is a trimmed Kubernetes Service with its endpoints.
type Service struct {
	Name      string
	Namespace string
	Hostname  string // e.g. reviews.default.svc.cluster.local
	VIPs      []string
	Ports     []ServicePort
	Endpoints []Endpoint
}

// Key returns the service's namespace/name.
func (s Service) Key() Key { return Key{Namespace: s.Namespace, Name: s.Name} }

// ServicePort is one port of a Service.
type ServicePort struct {
	Name        string
	Port        uint32
	TargetPort  uint32 // 0 when the target port is named: see Endpoint.Ports
	AppProtocol string
}

// Endpoint is one backend of a Service (a pod).
type Endpoint struct {
	IP    string
	Node  string
	Ready bool
	// Ports maps a service port name to the endpoint's port, for named or
	// differing target ports. Missing entries fall back to ServicePort.TargetPort
	// and then to ServicePort.Port.
	Ports map[string]uint32
	// Identity is the workload's SPIFFE identity (spiffe://td/ns/x/sa/y).
	Identity string
}

// AuthorizationPolicy is a security.istio.io AuthorizationPolicy.
type AuthorizationPolicy struct {
	Name       string
	Namespace  string
	Generation int64
	Spec       *securityv1beta1.AuthorizationPolicy
}
