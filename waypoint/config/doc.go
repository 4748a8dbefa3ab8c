// Package config is the waypoint's configuration: command-line flags and the
// downward-API environment (POD_NAME, POD_NAMESPACE, NODE_NAME, INSTANCE_IP,
// SERVICE_ACCOUNT) parsed once into an immutable Config, validated, and
// logged at start-up. Derived values (the SPIFFE identity, the xDS node ID
// and metadata, the resource name prefix) are methods, so every part of the
// binary computes them the same way.
package config
