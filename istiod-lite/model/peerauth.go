package model

import (
	"sort"

	securityv1beta1 "istio.io/api/security/v1beta1"
	"istio.io/istio/pkg/workloadapi/security"
)

// Names of the Authorization resources synthesized from PeerAuthentication
// (Istio's names; '_' cannot appear in Kubernetes names, so no clash).
const (
	StaticStrictPolicyName            = "istio_converted_static_strict"
	ConvertedPeerAuthenticationPrefix = "converted_peer_authentication_"
)

const (
	modeUnset      = securityv1beta1.PeerAuthentication_MutualTLS_UNSET
	modeStrict     = securityv1beta1.PeerAuthentication_MutualTLS_STRICT
	modePermissive = securityv1beta1.PeerAuthentication_MutualTLS_PERMISSIVE
	modeDisable    = securityv1beta1.PeerAuthentication_MutualTLS_DISABLE
)

// denyPlaintext matches connections without an mTLS peer identity.
func denyPlaintext(ports ...uint32) *security.Match {
	return &security.Match{
		NotPrincipals:    []*security.StringMatch{{MatchType: &security.StringMatch_Presence{}}},
		DestinationPorts: ports,
	}
}

// StaticStrictPolicy is the DENY-plaintext policy that workloads under an
// effective STRICT PeerAuthentication reference. Istio sends it whenever
// any PeerAuthentication exists.
func StaticStrictPolicy(rootNamespace string) *security.Authorization {
	return &security.Authorization{
		Name:      StaticStrictPolicyName,
		Namespace: rootNamespace,
		Scope:     security.Scope_WORKLOAD_SELECTOR,
		Action:    security.Action_DENY,
		Groups:    []*security.Group{{Rules: []*security.Rules{{Matches: []*security.Match{denyPlaintext()}}}}},
	}
}

// peerAuthLevels are the oldest mesh-wide, namespace-wide and workload
// PeerAuthentication that apply to one workload (nil when absent).
type peerAuthLevels struct {
	mesh, namespace, workload *PeerAuthentication
}

func older(a, b *PeerAuthentication) bool {
	if !a.Created.Equal(b.Created) {
		return a.Created.Before(b.Created)
	}
	return a.Name < b.Name
}

// namespaceLevels returns the oldest mesh-wide and namespace-wide policies.
func namespaceLevels(byNS map[string][]*PeerAuthentication, ns, root string) (mesh, nsPol *PeerAuthentication) {
	for _, pa := range byNS[root] {
		if pa.Selector == nil && (mesh == nil || older(pa, mesh)) {
			mesh = pa
		}
	}
	if ns != root {
		for _, pa := range byNS[ns] {
			if pa.Selector == nil && (nsPol == nil || older(pa, nsPol)) {
				nsPol = pa
			}
		}
	}
	return mesh, nsPol
}

func levelsFor(byNS map[string][]*PeerAuthentication, ns, root string, labels map[string]string) peerAuthLevels {
	var l peerAuthLevels
	l.mesh, l.namespace = namespaceLevels(byNS, ns, root)
	if ns != root {
		for _, pa := range byNS[ns] {
			if pa.Selector != nil && selects(pa.Selector, labels) && (l.workload == nil || older(pa, l.workload)) {
				l.workload = pa
			}
		}
	}
	return l
}

func modeOf(p *PeerAuthentication) securityv1beta1.PeerAuthentication_MutualTLS_Mode {
	if p == nil {
		return modeUnset
	}
	return p.Mode
}

// keys returns the synthesized policy names ("<ns>/<name>")
// a workload must reference, as Istio's convertedSelectorPeerAuthentications.
func (l peerAuthLevels) keys(root string) []string {
	strict := modeOf(l.mesh) == modeStrict
	if m := modeOf(l.namespace); m != modeUnset {
		strict = m == modeStrict
	}
	var portKey string
	if w := l.workload; w != nil {
		switch w.Mode {
		case modeStrict:
			strict = true
		case modePermissive, modeDisable:
			strict = false
		}
		if len(w.PortModes) > 0 {
			key := w.Namespace + "/" + ConvertedPeerAuthenticationPrefix + w.Name
			anyPort := func(pred func(securityv1beta1.PeerAuthentication_MutualTLS_Mode) bool) bool {
				for _, m := range w.PortModes {
					if pred(m) {
						return true
					}
				}
				return false
			}
			isStrict := func(m securityv1beta1.PeerAuthentication_MutualTLS_Mode) bool { return m == modeStrict }
			notStrict := func(m securityv1beta1.PeerAuthentication_MutualTLS_Mode) bool {
				return m == modePermissive || m == modeDisable
			}
			switch w.Mode {
			case modeStrict:
				if anyPort(notStrict) {
					portKey, strict = key, false
				}
			case modePermissive, modeDisable:
				if anyPort(isStrict) {
					portKey = key
				}
			default:
				if strict {
					if anyPort(notStrict) {
						portKey, strict = key, false
					}
				} else if anyPort(isStrict) {
					portKey = key
				}
			}
		}
	}
	var out []string
	if strict {
		out = append(out, root+"/"+StaticStrictPolicyName)
	}
	if portKey != "" {
		out = append(out, portKey)
	}
	return out
}

// ConvertPeerAuthentication returns the DENY policy expressing a workload
// PeerAuthentication's port-level modes (merged with an inherited STRICT
// mode), or nil when none is needed: mesh/namespace-wide policies and
// policies without portLevelMtls are expressed by the static policy alone.
// mesh and ns are the effective mesh-wide and namespace-wide policies.
func ConvertPeerAuthentication(pa *PeerAuthentication, mesh, ns *PeerAuthentication, root string) *security.Authorization {
	if pa.Namespace == root || pa.Selector == nil || len(pa.PortModes) == 0 {
		return nil
	}
	inheritedStrict := modeOf(ns) == modeStrict || (modeOf(ns) == modeUnset && modeOf(mesh) == modeStrict)
	var rules []*security.Rules
	var groups []*security.Group
	if pa.Mode == modeStrict {
		rules = append(rules, &security.Rules{Matches: []*security.Match{denyPlaintext()}})
	}
	ports := make([]uint32, 0, len(pa.PortModes))
	for p := range pa.PortModes {
		ports = append(ports, p)
	}
	sort.Slice(ports, func(i, j int) bool { return ports[i] < ports[j] })
	foundNonStrict := false
	for _, port := range ports {
		switch pa.PortModes[port] {
		case modeStrict:
			if pa.Mode == modeStrict || (pa.Mode == modeUnset && inheritedStrict) {
				continue // already enforced by the policy-level mode
			}
			// Groups are OR-ed: one per STRICT port.
			groups = append(groups, &security.Group{Rules: []*security.Rules{{Matches: []*security.Match{denyPlaintext(port)}}}})
		case modePermissive, modeDisable:
			if pa.Mode == modePermissive || pa.Mode == modeDisable {
				continue
			}
			if pa.Mode == modeUnset && !inheritedStrict {
				continue
			}
			foundNonStrict = true
			// Rules are AND-ed: deny plaintext only when not to this port.
			rules = append(rules, &security.Rules{Matches: []*security.Match{{NotDestinationPorts: []uint32{port}}}})
		}
	}
	if pa.Mode == modeStrict && !foundNonStrict {
		return nil
	}
	if len(rules) == 0 && len(groups) == 0 {
		return nil
	}
	if pa.Mode == modeUnset && inheritedStrict && foundNonStrict {
		rules = append(rules, &security.Rules{Matches: []*security.Match{denyPlaintext()}})
	}
	if len(rules) > 0 {
		groups = append(groups, &security.Group{Rules: rules})
	}
	return &security.Authorization{
		Name:      ConvertedPeerAuthenticationPrefix + pa.Name,
		Namespace: pa.Namespace,
		Scope:     security.Scope_WORKLOAD_SELECTOR,
		Action:    security.Action_DENY,
		Groups:    groups,
	}
}
