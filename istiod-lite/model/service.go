package model

import (
	"strings"

	"istio.io/istio/pkg/workloadapi"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// Hostname is a Service's FQDN.
func Hostname(name, ns, domain string) string {
	return name + "." + ns + ".svc." + domain
}

// namedTarget returns the targetPort name, or "" when numeric.
func namedTarget(sp ServicePort) string {
	if sp.TargetPort.Type == intstr.String {
		if n := sp.TargetPort.StrVal; n != "" {
			return n
		}
	}
	return ""
}

// servicePortTarget is the numeric target port at the service level: the
// number, the service port when unset, and 0 for a named port (resolved per
// workload).
func servicePortTarget(sp ServicePort) uint32 {
	if sp.TargetPort.Type == intstr.String {
		if sp.TargetPort.StrVal == "" {
			return sp.Port
		}
		return 0
	}
	if sp.TargetPort.IntVal == 0 {
		return sp.Port
	}
	return uint32(sp.TargetPort.IntVal)
}

// AppProtocol maps a service port to the workload API's protocol as Istio
// does: appProtocol first, else the port name prefix ("http-web"); only
// HTTP/1.1, HTTP/2 and gRPC are distinguished, UDP is never HTTP.
func AppProtocol(sp ServicePort) workloadapi.AppProtocol {
	if strings.EqualFold(sp.Protocol, "UDP") || strings.EqualFold(sp.Protocol, "SCTP") {
		return workloadapi.AppProtocol_UNKNOWN
	}
	p := sp.AppProtocol
	if p == "" {
		p, _, _ = strings.Cut(sp.Name, "-")
	}
	switch strings.ToLower(p) {
	case "http", "http1", "http1.1":
		return workloadapi.AppProtocol_HTTP11
	case "http2", "kubernetes.io/h2c":
		return workloadapi.AppProtocol_HTTP2
	case "grpc":
		return workloadapi.AppProtocol_GRPC
	}
	return workloadapi.AppProtocol_UNKNOWN
}

func ipFamilies(fams []string) workloadapi.IPFamilies {
	v4, v6 := false, false
	for _, f := range fams {
		switch f {
		case "IPv4":
			v4 = true
		case "IPv6":
			v6 = true
		}
	}
	switch {
	case v4 && v6:
		return workloadapi.IPFamilies_DUAL
	case v4:
		return workloadapi.IPFamilies_IPV4_ONLY
	case v6:
		return workloadapi.IPFamilies_IPV6_ONLY
	}
	return workloadapi.IPFamilies_AUTOMATIC
}

// LoadBalancing returns the service's endpoint selection policy as Istio
// derives it: internalTrafficPolicy Local → same node only; PreferClose
// traffic distribution and waypoint services → locality failover; else nil.
func LoadBalancing(s *Service) *workloadapi.LoadBalancing {
	if s.InternalTrafficLocal {
		return &workloadapi.LoadBalancing{
			RoutingPreference: []workloadapi.LoadBalancing_Scope{workloadapi.LoadBalancing_NODE},
			Mode:              workloadapi.LoadBalancing_STRICT,
		}
	}
	if s.TrafficDistribution == "PreferClose" || s.Labels[LabelManagedGateway] == ManagedGatewayMeshController {
		return &workloadapi.LoadBalancing{
			RoutingPreference: []workloadapi.LoadBalancing_Scope{
				workloadapi.LoadBalancing_NETWORK,
				workloadapi.LoadBalancing_REGION,
				workloadapi.LoadBalancing_ZONE,
				workloadapi.LoadBalancing_SUBZONE,
			},
			Mode: workloadapi.LoadBalancing_FAILOVER,
		}
	}
	return nil
}
