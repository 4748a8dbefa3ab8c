// Package netsetup builds the local cluster's network: one network namespace
// per node joined by an underlay bridge in the root namespace, and one network
// namespace per pod joined to its node by a veth pair with a routed /32, as a
// typical routed CNI does.
//
// Addressing (see Plan): the underlay is 172.30.0.0/24 with the root namespace
// at .1 and node i at .(10+i); node i owns pod CIDR 10.244.i.0/24. Nodes have
// no default route, so nothing a pod or node sends can leave the machine; the
// root namespace only gains routes to the pod CIDRs (so the API server can
// reach pods) and never forwards.
//
// Every object is named with the "amb" prefix so Cleanup can remove whatever a
// crashed run left behind.
package netsetup
