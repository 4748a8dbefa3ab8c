package model

import (
	"net/netip"
	"strings"

	securityv1beta1 "istio.io/api/security/v1beta1"
	securityv1 "istio.io/client-go/pkg/apis/security/v1"
	corev1 "k8s.io/api/core/v1"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"
)

// FromNamespace trims a Namespace.
func FromNamespace(ns *corev1.Namespace) Namespace {
	return Namespace{Name: ns.Name, Labels: ns.Labels}
}

// FromPod trims a Pod. Unparsable IPs are dropped.
func FromPod(p *corev1.Pod) Pod {
	out := Pod{
		Name:           p.Name,
		Namespace:      p.Namespace,
		Labels:         p.Labels,
		NodeName:       p.Spec.NodeName,
		ServiceAccount: p.Spec.ServiceAccountName,
		HostNetwork:    p.Spec.HostNetwork,
		Phase:          string(p.Status.Phase),
	}
	if out.ServiceAccount == "" {
		out.ServiceAccount = "default"
	}
	ips := p.Status.PodIPs
	if len(ips) == 0 && p.Status.PodIP != "" {
		ips = []corev1.PodIP{{IP: p.Status.PodIP}}
	}
	for _, ip := range ips {
		if a, err := netip.ParseAddr(ip.IP); err == nil {
			out.IPs = append(out.IPs, a.Unmap())
		}
	}
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady {
			out.Ready = c.Status == corev1.ConditionTrue
		}
	}
	for _, c := range p.Spec.Containers {
		for _, cp := range c.Ports {
			if cp.Name == "" {
				continue
			}
			if out.ContainerPorts == nil {
				out.ContainerPorts = map[string]uint32{}
			}
			if _, dup := out.ContainerPorts[cp.Name]; !dup {
				out.ContainerPorts[cp.Name] = uint32(cp.ContainerPort)
			}
		}
	}
	for _, ref := range p.OwnerReferences {
		if ref.Controller != nil && *ref.Controller {
			out.Owner = Owner{Kind: ref.Kind, Name: ref.Name}
			break
		}
	}
	return out
}

// FromService trims a Service.
func FromService(s *corev1.Service) Service {
	out := Service{
		Name:         s.Name,
		Namespace:    s.Namespace,
		Labels:       s.Labels,
		Selector:     s.Spec.Selector,
		ExternalName: s.Spec.Type == corev1.ServiceTypeExternalName,
		Headless:     s.Spec.ClusterIP == corev1.ClusterIPNone,
	}
	cips := s.Spec.ClusterIPs
	if len(cips) == 0 && s.Spec.ClusterIP != "" {
		cips = []string{s.Spec.ClusterIP}
	}
	for _, ip := range cips {
		if a, err := netip.ParseAddr(ip); err == nil {
			out.ClusterIPs = append(out.ClusterIPs, a.Unmap())
		}
	}
	if s.Spec.Type == corev1.ServiceTypeLoadBalancer {
		for _, ing := range s.Status.LoadBalancer.Ingress {
			if a, err := netip.ParseAddr(ing.IP); err == nil {
				out.ClusterIPs = append(out.ClusterIPs, a.Unmap())
			}
		}
	}
	if s.Spec.TrafficDistribution != nil {
		out.TrafficDistribution = *s.Spec.TrafficDistribution
	}
	if itp := s.Spec.InternalTrafficPolicy; itp != nil && *itp == corev1.ServiceInternalTrafficPolicyLocal {
		out.InternalTrafficLocal = true
	}
	for _, f := range s.Spec.IPFamilies {
		out.IPFamilies = append(out.IPFamilies, string(f))
	}
	for _, p := range s.Spec.Ports {
		sp := ServicePort{
			Name:       p.Name,
			Port:       uint32(p.Port),
			TargetPort: p.TargetPort,
			Protocol:   string(p.Protocol),
		}
		if p.AppProtocol != nil {
			sp.AppProtocol = *p.AppProtocol
		}
		out.Ports = append(out.Ports, sp)
	}
	return out
}

// FromAuthorizationPolicy trims an AuthorizationPolicy. The spec is shared,
// not copied: callers must not mutate the informer's object (they never do).
func FromAuthorizationPolicy(p *securityv1.AuthorizationPolicy) AuthorizationPolicy {
	return AuthorizationPolicy{
		Name:      p.Name,
		Namespace: p.Namespace,
		DryRun:    strings.EqualFold(p.Annotations[AnnotationDryRun], "true"),
		Spec:      &p.Spec,
	}
}

// FromPeerAuthentication trims a PeerAuthentication.
func FromPeerAuthentication(p *securityv1.PeerAuthentication) PeerAuthentication {
	out := PeerAuthentication{
		Name:      p.Name,
		Namespace: p.Namespace,
		Created:   p.CreationTimestamp.Time,
		Mode:      p.Spec.GetMtls().GetMode(),
	}
	if sel := p.Spec.GetSelector(); sel != nil && len(sel.MatchLabels) > 0 {
		out.Selector = sel.MatchLabels
	}
	for port, m := range p.Spec.GetPortLevelMtls() {
		if out.PortModes == nil {
			out.PortModes = map[uint32]securityv1beta1.PeerAuthentication_MutualTLS_Mode{}
		}
		out.PortModes[port] = m.GetMode()
	}
	return out
}

// FromGateway trims a Gateway API Gateway.
func FromGateway(g *gatewayv1.Gateway) Gateway {
	out := Gateway{
		Name:      g.Name,
		Namespace: g.Namespace,
		ClassName: string(g.Spec.GatewayClassName),
		Labels:    g.Labels,
	}
	for _, l := range g.Spec.Listeners {
		if l.Protocol == "HBONE" {
			out.HBONEListener = true
		}
	}
	for _, a := range g.Status.Addresses {
		if a.Type != nil && *a.Type == gatewayv1.HostnameAddressType {
			out.StatusHostname = a.Value
			break
		}
	}
	return out
}
