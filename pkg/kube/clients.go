package kube

import (
	"errors"
	"fmt"

	istioclient "istio.io/client-go/pkg/clientset/versioned"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	gatewayclient "sigs.k8s.io/gateway-api/pkg/client/clientset/versioned"
)

// Default client-side rate limits. client-go's own defaults (5 QPS, burst 10)
// are too low for a control plane that lists every Pod and Service at start.
const (
	DefaultQPS   = 50
	DefaultBurst = 100
)

// RESTConfig returns the client configuration: from the kubeconfig file at
// path when path is set, otherwise from the in-cluster service account.
// userAgent (e.g. "istiod-lite/1.2.3") names the caller in API server logs.
func RESTConfig(path, userAgent string) (*rest.Config, error) {
	var (
		cfg *rest.Config
		err error
	)
	if path != "" {
		cfg, err = clientcmd.BuildConfigFromFlags("", path)
		if err != nil {
			return nil, fmt.Errorf("load kubeconfig %s: %w", path, err)
		}
	} else {
		cfg, err = rest.InClusterConfig()
		if errors.Is(err, rest.ErrNotInCluster) {
			return nil, fmt.Errorf("not running in a cluster (no KUBERNETES_SERVICE_HOST): pass --kubeconfig: %w", err)
		}
		if err != nil {
			return nil, fmt.Errorf("in-cluster config: %w", err)
		}
	}
	if cfg.QPS == 0 {
		cfg.QPS = DefaultQPS
	}
	if cfg.Burst == 0 {
		cfg.Burst = DefaultBurst
	}
	if userAgent != "" {
		cfg.UserAgent = userAgent
	}
	return cfg, nil
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
