// Package authz evaluates the Envoy RBAC http filter configuration a
// waypoint receives (extensions.filters.http.rbac.v3.RBAC, and RBACPerRoute
// overrides on virtual hosts and routes) against a request and the HBONE
// peer's SPIFFE identity. It supports the subset istiod-lite emits: and/or/
// not rules and ids, header, url_path, destination_port, authenticated
// principal_name and any; anything else is a compile error naming the field.
package authz
