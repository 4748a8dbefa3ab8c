package kube

import (
	"fmt"

	istioclient "istio.io/client-go/pkg/clientset/versioned"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	gatewayclient "sigs.k8s.io/gateway-api/pkg/client/clientset/versioned"

	"github.com/ambient-mesh/ambient/pkg/kube/restconfig"
)

// Default client-side rate limits (see package restconfig).
const (
	DefaultQPS   = restconfig.DefaultQPS
	DefaultBurst = restconfig.DefaultBurst
)

// RESTConfig returns the client configuration: from the kubeconfig file at
// path when path is set, otherwise from the in-cluster service account.
// userAgent (e.g. "istiod-lite/1.2.3") names the caller in API server logs.
// It is [restconfig.New], which binaries that need no clientset import
// directly.
func RESTConfig(path, userAgent string) (*rest.Config, error) {
	return restconfig.New(path, userAgent)
}

// Clients are the typed clients of the APIs the mesh reads and writes.
// Tests fill the fields with the fake clientsets of each package.
type Clients struct {
	Kube    kubernetes.Interface
	Gateway gatewayclient.Interface
	Istio   istioclient.Interface
}

// NewClients builds the three clientsets from one configuration.
func NewClients(cfg *rest.Config) (*Clients, error) {
	k, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, fmt.Errorf("kubernetes client: %w", err)
	}
	g, err := gatewayclient.NewForConfig(cfg)
	if err != nil {
		return nil, fmt.Errorf("gateway API client: %w", err)
	}
	i, err := istioclient.NewForConfig(cfg)
	if err != nil {
		return nil, fmt.Errorf("istio client: %w", err)
	}
	return &Clients{Kube: k, Gateway: g, Istio: i}, nil
}
