// Package kube is istiod-lite's thin Kubernetes layer for the mesh model:
// shared informers for the objects the model reads (Namespaces, Pods,
// Services, security.istio.io/v1 AuthorizationPolicies and
// PeerAuthentications, Gateway API Gateways; HTTPRoutes and GRPCRoutes are
// watched for the waypoint configuration), a transform that trims objects
// before they are cached, Snapshot to turn the listers into a model.Input,
// and a Watcher that funnels every relevant change into one goroutine.
//
// The translation itself lives in package model and never sees an informer.
package kube
