package kube

import (
	"fmt"

	istiolisters "istio.io/client-go/pkg/listers/security/v1"
	"k8s.io/apimachinery/pkg/labels"
	corelisters "k8s.io/client-go/listers/core/v1"
	gwlisters "sigs.k8s.io/gateway-api/pkg/client/listers/apis/v1"

	"github.com/ambient-mesh/ambient/istiod-lite/model"
)

// Listers are the caches Snapshot reads.
type Listers struct {
	Namespaces            corelisters.NamespaceLister
	Pods                  corelisters.PodLister
	Services              corelisters.ServiceLister
	AuthorizationPolicies istiolisters.AuthorizationPolicyLister
	PeerAuthentications   istiolisters.PeerAuthenticationLister
	Gateways              gwlisters.GatewayLister
}

// Snapshot converts the current cache contents into the model's input.
func Snapshot(l Listers) (model.Input, error) {
	var in model.Input
	all := labels.Everything()
	nss, err := l.Namespaces.List(all)
	if err != nil {
		return in, fmt.Errorf("list namespaces: %w", err)
	}
	pods, err := l.Pods.List(all)
	if err != nil {
		return in, fmt.Errorf("list pods: %w", err)
	}
	svcs, err := l.Services.List(all)
	if err != nil {
		return in, fmt.Errorf("list services: %w", err)
	}
	aps, err := l.AuthorizationPolicies.List(all)
	if err != nil {
		return in, fmt.Errorf("list authorization policies: %w", err)
	}
	pas, err := l.PeerAuthentications.List(all)
	if err != nil {
		return in, fmt.Errorf("list peer authentications: %w", err)
	}
	gws, err := l.Gateways.List(all)
	if err != nil {
		return in, fmt.Errorf("list gateways: %w", err)
	}
	in.Namespaces = make([]model.Namespace, 0, len(nss))
	for _, o := range nss {
		in.Namespaces = append(in.Namespaces, model.FromNamespace(o))
	}
	in.Pods = make([]model.Pod, 0, len(pods))
	for _, o := range pods {
		in.Pods = append(in.Pods, model.FromPod(o))
	}
	in.Services = make([]model.Service, 0, len(svcs))
	for _, o := range svcs {
		in.Services = append(in.Services, model.FromService(o))
	}
	in.AuthorizationPolicies = make([]model.AuthorizationPolicy, 0, len(aps))
	for _, o := range aps {
		in.AuthorizationPolicies = append(in.AuthorizationPolicies, model.FromAuthorizationPolicy(o))
	}
	in.PeerAuthentications = make([]model.PeerAuthentication, 0, len(pas))
	for _, o := range pas {
		in.PeerAuthentications = append(in.PeerAuthentications, model.FromPeerAuthentication(o))
	}
	in.Gateways = make([]model.Gateway, 0, len(gws))
	for _, o := range gws {
		in.Gateways = append(in.Gateways, model.FromGateway(o))
	}
	return in, nil
}
