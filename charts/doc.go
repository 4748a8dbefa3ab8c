// Package charts embeds the mesh's Helm charts — base (CRDs), istiod-lite and
// ztunnel — so ambientctl installs exactly the charts it was built with.
//
// base/crds is generated from the pinned modules by hack/gen/crds
// (`go generate ./charts`); never edit it by hand.
package charts
