package cli

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"strings"
	"time"

	"helm.sh/helm/v3/pkg/action"
	"helm.sh/helm/v3/pkg/kube"
	apiextclient "k8s.io/apiextensions-apiserver/pkg/client/clientset/clientset"
	"k8s.io/cli-runtime/pkg/genericclioptions"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
	gwclient "sigs.k8s.io/gateway-api/pkg/client/clientset/versioned"
)

// Clients are the API clients commands use.
type Clients struct {
	Kube    kubernetes.Interface
	Gateway gwclient.Interface
	CRDs    apiextclient.Interface
}

// Env is what commands need from the outside world; tests fill it with fakes.
type Env struct {
	Out, Err io.Writer
	// Clients builds the clients (once per command).
	Clients func() (*Clients, error)
	// DefaultNamespace is the namespace when -n is not given.
	DefaultNamespace func() (string, error)
	// Helm returns a Helm configuration for the namespace.
	Helm func(namespace string) (*action.Configuration, error)
	// Now is the clock (certificate validity).
	Now func() time.Time
	// Poll is the interval of status polling while waiting.
	Poll time.Duration
}

// errNoKubeconfig is the one-line error when no cluster is configured.
var errNoKubeconfig = errors.New("no kubeconfig: set KUBECONFIG or pass --kubeconfig")

// kubeconfigError turns "no configuration" errors into errNoKubeconfig.
func kubeconfigError(err error) error {
	if err == nil {
		return nil
	}
	if clientcmd.IsEmptyConfig(err) || errors.Is(err, fs.ErrNotExist) || strings.Contains(err.Error(), "no such file or directory") {
		return errNoKubeconfig
	}
	return fmt.Errorf("load kubeconfig: %w", err)
}

// haveKubeconfig fails with errNoKubeconfig when there is nothing to connect
// to: client-go would otherwise fall back to http://localhost:8080.
func haveKubeconfig(cf *genericclioptions.ConfigFlags) error {
	if cf.APIServer != nil && *cf.APIServer != "" || os.Getenv("KUBERNETES_SERVICE_HOST") != "" {
		return nil // --server, or in a pod
	}
	raw, err := cf.ToRawKubeConfigLoader().RawConfig()
	if err != nil {
		return kubeconfigError(err)
	}
	if len(raw.Contexts) == 0 && len(raw.Clusters) == 0 {
		return errNoKubeconfig
	}
	return nil
}

// realEnv builds an Env talking to the cluster of the kubeconfig flags.
func realEnv(cf *genericclioptions.ConfigFlags, out, errOut io.Writer) *Env {
	return &Env{
		Out: out, Err: errOut,
		Clients: func() (*Clients, error) {
			if err := haveKubeconfig(cf); err != nil {
				return nil, err
			}
			rc, err := cf.ToRESTConfig()
			if err != nil {
				return nil, kubeconfigError(err)
			}
			k, err := kubernetes.NewForConfig(rc)
			if err != nil {
				return nil, fmt.Errorf("create Kubernetes client: %w", err)
			}
			g, err := gwclient.NewForConfig(rc)
			if err != nil {
				return nil, fmt.Errorf("create Gateway API client: %w", err)
			}
			x, err := apiextclient.NewForConfig(rc)
			if err != nil {
				return nil, fmt.Errorf("create CRD client: %w", err)
			}
			return &Clients{Kube: k, Gateway: g, CRDs: x}, nil
		},
		DefaultNamespace: func() (string, error) {
			ns, _, err := cf.ToRawKubeConfigLoader().Namespace()
			if err != nil {
				return "", kubeconfigError(err)
			}
			return ns, nil
		},
		Helm: func(namespace string) (*action.Configuration, error) {
			if err := haveKubeconfig(cf); err != nil {
				return nil, err
			}
			cfg := new(action.Configuration)
			debug := func(string, ...any) {}
			if os.Getenv("AMBIENTCTL_DEBUG") != "" {
				debug = func(f string, v ...any) { fmt.Fprintf(errOut, f+"\n", v...) }
			}
			if err := cfg.Init(cf, namespace, "secret", debug); err != nil {
				return nil, fmt.Errorf("set up Helm: %w", err)
			}
			// Without this, objects without a namespace would follow -n or the
			// kubeconfig context instead of the release namespace.
			if kc, ok := cfg.KubeClient.(*kube.Client); ok {
				kc.Namespace = namespace
			}
			return cfg, nil
		},
		Now:  time.Now,
		Poll: 2 * time.Second,
	}
}
