// Package install installs, upgrades and removes the embedded charts with the
// Helm SDK (release names base, istiod-lite, ztunnel in istio-system), and
// decides from Deployment/DaemonSet status whether the rollout is done.
//
// Values use one document for all charts: "global" goes to every chart,
// "base", "istiodLite" and "ztunnel" to that chart only, e.g.
// --set global.tag=v1 --set istiodLite.replicaCount=3.
package install
