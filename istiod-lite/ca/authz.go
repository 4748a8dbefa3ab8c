package ca

import (
	"errors"
	"fmt"
	"time"

	"github.com/ambient-mesh/ambient/pkg/spiffe"
)

// ImpersonatedIdentityKey is the request metadata key ztunnel uses to ask for
// a pod's identity instead of its own.
const ImpersonatedIdentityKey = "ImpersonatedIdentity"

// Errors of authorization; ErrBadIdentity maps to codes.InvalidArgument, the
// others to codes.PermissionDenied.
var (
	ErrBadIdentity      = errors.New("malformed ImpersonatedIdentity (want spiffe://<trust-domain>/ns/<ns>/sa/<sa>)")
	ErrOtherTrustDomain = errors.New("requested identity is in another trust domain than this CA's")
	ErrNotTrusted       = errors.New("caller may not request other identities (only the node proxy service account, e.g. istio-system/ztunnel, may)")
	ErrNoNode           = errors.New("caller's token is not bound to a pod on a node (mount a projected ServiceAccount token in the ztunnel pod)")
	ErrNotOnNode        = errors.New("no pod with the requested service account runs on the caller's node")
)

// NamespacedName names a service account.
type NamespacedName struct{ Namespace, Name string }

func (n NamespacedName) String() string { return n.Namespace + "/" + n.Name }

// target decides which identity a request is for: the caller's own, or the
// impersonated one (impersonating = true) that still has to be authorized by
// checkImpersonation.
func target(caller Caller, impersonated, trustDomain string) (id spiffe.Identity, impersonating bool, err error) {
	own := spiffe.Identity{TrustDomain: trustDomain, Namespace: caller.Namespace, ServiceAccount: caller.ServiceAccount}
	if impersonated == "" {
		return own, false, nil
	}
	want, err := spiffe.Parse(impersonated)
	if err != nil {
		return spiffe.Identity{}, false, fmt.Errorf("%w: %w", ErrBadIdentity, err)
	}
	if want.TrustDomain != trustDomain {
		return spiffe.Identity{}, false, fmt.Errorf("%w: %s, want %q", ErrOtherTrustDomain, want, trustDomain)
	}
	if want == own {
		return own, false, nil
	}
	return want, true, nil
}

// callerTrusted reports whether the caller is one of the node proxy accounts
// allowed to impersonate.
func callerTrusted(caller Caller, trusted []NamespacedName) error {
	for _, t := range trusted {
		if t.Namespace == caller.Namespace && t.Name == caller.ServiceAccount {
			return nil
		}
	}
	return fmt.Errorf("%w: caller %s", ErrNotTrusted, caller)
}

// podOnNode reports whether a pod with want's service account runs on node.
func podOnNode(want spiffe.Identity, node string, pods []PodRef) error {
	if node == "" {
		return ErrNoNode
	}
	for _, p := range pods {
		if p.Node == node && p.Namespace == want.Namespace && p.ServiceAccount == want.ServiceAccount {
			return nil
		}
	}
	return fmt.Errorf("%w: %s/%s on node %q", ErrNotOnNode, want.Namespace, want.ServiceAccount, node)
}

// ErrBadTTL maps to codes.InvalidArgument.
var ErrBadTTL = errors.New("negative validity_duration (send seconds > 0, or 0 for the default)")

// effectiveTTL turns the requested validity (seconds) into the issued
// lifetime: 0 means def, anything above max is capped at max.
func effectiveTTL(requestedSeconds int64, def, maxTTL time.Duration) (time.Duration, error) {
	if requestedSeconds < 0 {
		return 0, ErrBadTTL
	}
	ttl := def
	if requestedSeconds > 0 {
		if requestedSeconds > int64(maxTTL/time.Second) {
			return maxTTL, nil
		}
		ttl = time.Duration(requestedSeconds) * time.Second
	}
	return min(ttl, maxTTL), nil
}
