package kube

import (
	"context"
	"fmt"
	"time"

	istioclient "istio.io/client-go/pkg/clientset/versioned"
	istioinformers "istio.io/client-go/pkg/informers/externalversions"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"
	gwclient "sigs.k8s.io/gateway-api/pkg/client/clientset/versioned"
	gwinformers "sigs.k8s.io/gateway-api/pkg/client/informers/externalversions"
)

// Clients are the API clients the informers list and watch through.
type Clients struct {
	Kube    kubernetes.Interface
	Istio   istioclient.Interface
	Gateway gwclient.Interface
}

// Informers are the shared informers of the mesh model, all trimmed by
// Transform.
type Informers struct {
	Namespaces            cache.SharedIndexInformer
	Pods                  cache.SharedIndexInformer
	Services              cache.SharedIndexInformer
	AuthorizationPolicies cache.SharedIndexInformer
	PeerAuthentications   cache.SharedIndexInformer
	Gateways              cache.SharedIndexInformer
	HTTPRoutes            cache.SharedIndexInformer
	GRPCRoutes            cache.SharedIndexInformer

	kube  informers.SharedInformerFactory
	istio istioinformers.SharedInformerFactory
	gw    gwinformers.SharedInformerFactory
	lst   Listers
}

// NewInformers creates (does not start) the informers. resync 0 disables
// periodic resyncs, which the level-based model does not need.
func NewInformers(c Clients, resync time.Duration) (*Informers, error) {
	kf := informers.NewSharedInformerFactory(c.Kube, resync)
	isf := istioinformers.NewSharedInformerFactory(c.Istio, resync)
	gwf := gwinformers.NewSharedInformerFactory(c.Gateway, resync)

	ns, pods, svcs := kf.Core().V1().Namespaces(), kf.Core().V1().Pods(), kf.Core().V1().Services()
	aps, pas := isf.Security().V1().AuthorizationPolicies(), isf.Security().V1().PeerAuthentications()
	gws, hrs, grs := gwf.Gateway().V1().Gateways(), gwf.Gateway().V1().HTTPRoutes(), gwf.Gateway().V1().GRPCRoutes()

	inf := &Informers{
		Namespaces:            ns.Informer(),
		Pods:                  pods.Informer(),
		Services:              svcs.Informer(),
		AuthorizationPolicies: aps.Informer(),
		PeerAuthentications:   pas.Informer(),
		Gateways:              gws.Informer(),
		HTTPRoutes:            hrs.Informer(),
		GRPCRoutes:            grs.Informer(),
		kube:                  kf,
		istio:                 isf,
		gw:                    gwf,
		lst: Listers{
			Namespaces:            ns.Lister(),
			Pods:                  pods.Lister(),
			Services:              svcs.Lister(),
			AuthorizationPolicies: aps.Lister(),
			PeerAuthentications:   pas.Lister(),
			Gateways:              gws.Lister(),
		},
	}
	for name, i := range inf.all() {
		if err := i.SetTransform(Transform); err != nil {
			return nil, fmt.Errorf("set transform on %s informer: %w", name, err)
		}
	}
	return inf, nil
}

func (i *Informers) all() map[string]cache.SharedIndexInformer {
	return map[string]cache.SharedIndexInformer{
		"namespaces": i.Namespaces, "pods": i.Pods, "services": i.Services,
		"authorizationpolicies": i.AuthorizationPolicies, "peerauthentications": i.PeerAuthentications,
		"gateways": i.Gateways, "httproutes": i.HTTPRoutes, "grpcroutes": i.GRPCRoutes,
	}
}

// Listers returns the listers the model is built from.
func (i *Informers) Listers() Listers { return i.lst }

// Start starts all informers; they stop when ctx is done.
func (i *Informers) Start(ctx context.Context) {
	i.kube.Start(ctx.Done())
	i.istio.Start(ctx.Done())
	i.gw.Start(ctx.Done())
}

// WaitForSync blocks until every informer has synced or ctx is done.
func (i *Informers) WaitForSync(ctx context.Context) error {
	var synced []cache.InformerSynced
	for _, inf := range i.all() {
		synced = append(synced, inf.HasSynced)
	}
	if !cache.WaitForCacheSync(ctx.Done(), synced...) {
		return fmt.Errorf("informer caches did not sync (is the API server reachable and are the Istio and Gateway API CRDs installed?): %w", context.Cause(ctx))
	}
	return nil
}

// Shutdown stops the informer factories and waits for their goroutines.
func (i *Informers) Shutdown() {
	i.kube.Shutdown()
	i.istio.Shutdown()
	i.gw.Shutdown()
}
