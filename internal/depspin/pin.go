// Package depspin keeps the pinned dependency versions of DESIGN.md in go.mod
// while the packages that use them are being written; it is removed once they
// are all imported by real code.
package depspin

import (
	_ "github.com/cilium/ebpf"
	_ "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	_ "github.com/envoyproxy/go-control-plane/pkg/server/v3"
	_ "github.com/google/go-containerregistry/pkg/v1"
	_ "github.com/prometheus/client_golang/prometheus"
	_ "github.com/spf13/cobra"
	_ "github.com/vishvananda/netlink"
	_ "go.uber.org/goleak"
	_ "go.uber.org/zap"
	_ "golang.org/x/net/http2"
	_ "google.golang.org/grpc"
	_ "helm.sh/helm/v3/pkg/action"
	_ "istio.io/api/security/v1alpha1"
	_ "istio.io/client-go/pkg/clientset/versioned"
	_ "istio.io/istio/pkg/workloadapi"
	_ "istio.io/istio/pkg/workloadapi/security"
	_ "k8s.io/client-go/kubernetes"
	_ "sigs.k8s.io/gateway-api/pkg/client/clientset/versioned"
)
