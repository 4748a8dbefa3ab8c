package model

import (
	"net/netip"
	"time"

	securityv1beta1 "istio.io/api/security/v1beta1"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// Well-known labels and values (Istio's user-facing API).
const (
	LabelDataplaneMode           = "istio.io/dataplane-mode"
	DataplaneModeAmbient         = "ambient"
	DataplaneModeNone            = "none"
	LabelUseWaypoint             = "istio.io/use-waypoint"
	LabelUseWaypointNamespace    = "istio.io/use-waypoint-namespace"
	LabelWaypointFor             = "istio.io/waypoint-for"
	LabelIngressUseWaypoint      = "istio.io/ingress-use-waypoint"
	LabelTunnel                  = "networking.istio.io/tunnel"
	LabelManagedGateway          = "gateway.istio.io/managed"
	ManagedGatewayMeshController = "istio.io-mesh-controller"
	AnnotationDryRun             = "istio.io/dry-run"
	WaypointNone                 = "none"
	WaypointGatewayClass         = "istio-waypoint"
	HBONEPort                    = 15008
)

// Waypoint traffic types (values of istio.io/waypoint-for).
const (
	WaypointForService  = "service"
	WaypointForWorkload = "workload"
	WaypointForAll      = "all"
	WaypointForNone     = "none"
)

// Config is the mesh-wide configuration Build needs.
type Config struct {
	// TrustDomain of workload identities; default cluster.local.
	TrustDomain string
	// ClusterID prefixes workload uids; default "Kubernetes".
	ClusterID string
	// RootNamespace holds mesh-wide policies; default istio-system.
	RootNamespace string
	// SystemNamespace is where istiod-lite runs; default istio-system.
	SystemNamespace string
	// DomainSuffix of service hostnames; default cluster.local.
	DomainSuffix string
}

// WithDefaults returns c with empty fields set to their defaults.
func (c Config) WithDefaults() Config {
	if c.TrustDomain == "" {
		c.TrustDomain = "cluster.local"
	}
	if c.ClusterID == "" {
		c.ClusterID = "Kubernetes"
	}
	if c.RootNamespace == "" {
		c.RootNamespace = "istio-system"
	}
	if c.SystemNamespace == "" {
		c.SystemNamespace = "istio-system"
	}
	if c.DomainSuffix == "" {
		c.DomainSuffix = "cluster.local"
	}
	return c
}

// Input is everything Build reads: trimmed copies of the watched objects.
// Slices need not be sorted; Build does not mutate them.
type Input struct {
	Namespaces            []Namespace
	Pods                  []Pod
	Services              []Service
	AuthorizationPolicies []AuthorizationPolicy
	PeerAuthentications   []PeerAuthentication
	Gateways              []Gateway
}

// Namespace is a trimmed Kubernetes Namespace.
type Namespace struct {
	Name   string
	Labels map[string]string
}

// Owner is a pod's controlling owner reference.
type Owner struct {
	Kind string
	Name string
}

// Pod is a trimmed Kubernetes Pod.
type Pod struct {
	Name           string
	Namespace      string
	Labels         map[string]string
	IPs            []netip.Addr
	NodeName       string
	ServiceAccount string
	HostNetwork    bool
	Ready          bool
	// Phase is the pod phase (Pending, Running, Succeeded, Failed, Unknown).
	Phase string
	// ContainerPorts maps container port names to numbers (named targetPorts).
	ContainerPorts map[string]uint32
	// Owner is the controller owner, if any (for telemetry workload name/type).
	Owner Owner
}

// Service is a trimmed Kubernetes Service.
type Service struct {
	Name      string
	Namespace string
	Labels    map[string]string
	// ClusterIPs holds the cluster IPs (none for headless) followed by
	// LoadBalancer ingress IPs.
	ClusterIPs []netip.Addr
	Headless   bool
	// ExternalName services are not sent (no workloads, no VIP).
	ExternalName bool
	// Selector selects pods in the namespace; nil or empty selects none.
	Selector map[string]string
	Ports    []ServicePort
	// IPFamilies as in spec.ipFamilies ("IPv4", "IPv6").
	IPFamilies []string
	// TrafficDistribution is spec.trafficDistribution (PreferClose, ...).
	TrafficDistribution string
	// InternalTrafficLocal is spec.internalTrafficPolicy == Local.
	InternalTrafficLocal bool
}

// ServicePort is one port of a Service.
type ServicePort struct {
	Name        string
	Port        uint32
	TargetPort  intstr.IntOrString
	Protocol    string // TCP, UDP, SCTP
	AppProtocol string
}

// AuthorizationPolicy is a security.istio.io AuthorizationPolicy.
type AuthorizationPolicy struct {
	Name      string
	Namespace string
	DryRun    bool
	// Spec is the Istio API spec (never mutated).
	Spec *securityv1beta1.AuthorizationPolicy
}

// PeerAuthentication is a security.istio.io PeerAuthentication.
type PeerAuthentication struct {
	Name      string
	Namespace string
	Created   time.Time
	// Selector is spec.selector.matchLabels; nil for namespace/mesh-wide.
	Selector map[string]string
	Mode     securityv1beta1.PeerAuthentication_MutualTLS_Mode
	// PortModes is spec.portLevelMtls (container port → mode).
	PortModes map[uint32]securityv1beta1.PeerAuthentication_MutualTLS_Mode
}

// Gateway is a trimmed Gateway API Gateway.
type Gateway struct {
	Name      string
	Namespace string
	ClassName string
	Labels    map[string]string
	// HBONEListener is true when a listener has protocol HBONE.
	HBONEListener bool
	// StatusHostname is the first Hostname-type status address, if any.
	StatusHostname string
}
