// Package waypointctl is istiod-lite's waypoint controller: Istio's
// behaviour for Gateways of class istio-waypoint. It keeps the
// istio-waypoint GatewayClass (controller istio.io/mesh-controller) present
// and Accepted, and for every waypoint Gateway a ServiceAccount, Deployment
// and Service named after the Gateway and owned by it (the garbage collector
// deletes them with the Gateway), then reports the Gateway's Accepted and
// Programmed conditions, listener status and addresses.
//
// The decisions are pure functions: Desired renders the children from the
// Gateway and Config, Validate and ComputeStatus derive the status. The
// Controller is a level-based reconcile over informers and a workqueue; it
// runs only on the leader replica (see pkg/kube.LeaderElector).
package waypointctl
