package restconfig

import (
	"errors"
	"fmt"

	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
)

// Default client-side rate limits. client-go's own defaults (5 QPS, burst 10)
// are too low for a control plane that lists every Pod and Service at start.
const (
	DefaultQPS   = 50
	DefaultBurst = 100
)

// New returns the client configuration: from the kubeconfig file at path
// when path is set, otherwise from the in-cluster service account.
// userAgent (e.g. "istiod-lite/1.2.3") names the caller in API server logs.
func New(path, userAgent string) (*rest.Config, error) {
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
