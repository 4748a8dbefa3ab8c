package listener

import (
	"math/rand/v2"
	"net/http"
	"net/netip"
	"time"

	"github.com/ambient-mesh/ambient/waypoint/router"
	"github.com/ambient-mesh/ambient/waypoint/router/authz"
	"github.com/ambient-mesh/ambient/waypoint/state"
)

// Bodies of the waypoint's own answers (Envoy's texts).
const (
	BodyRBACDenied     = "RBAC: access denied"
	BodyFaultAbort     = "fault filter abort"
	BodyTimeout        = "upstream request timeout"
	BodyNoHealthy      = "no healthy upstream"
	BodyConnectFailure = "upstream connect error or disconnect/reset before headers. reset reason: connection failure"
	BodyReset          = "upstream connect error or disconnect/reset before headers. reset reason: connection termination"
	BodyOverloaded     = "overloaded"
)

// Input is the part of a request Decide looks at.
type Input struct {
	Route router.RequestInfo
	// Authority is the HBONE CONNECT authority (service VIP or pod IP, port).
	Authority netip.AddrPort
	Authz     authz.Request
	RawQuery  string
}

// Plan is what to do with a request. Either Status is set (answer locally,
// after Delay) or Cluster is (forward, after Delay).
type Plan struct {
	Route *router.Route // nil when no route matched
	Delay time.Duration // fault injection

	Status   int    // local answer
	Body     string // local answer body
	Location string // redirect target
	Flags    string // Envoy response flags, "-" when none

	ClusterName string
	Cluster     *state.Cluster

	Authz authz.Decision
}

// MatchRoute finds the route: within the virtual host of the destination
// service when the authority is a service VIP the table knows (ambient
// routes by destination service, whatever the Host header says), else by
// the Host header (a pod addressed directly).
func MatchRoute(tbl *router.Table, info router.RequestInfo, authority netip.AddrPort) (*router.Route, bool) {
	if tbl == nil {
		return nil, false
	}
	if authority.IsValid() {
		vip := authority.String()
		if tbl.VirtualHostFor(vip) != nil {
			byVIP := info
			byVIP.Host = vip
			return tbl.Match(byVIP)
		}
	}
	return tbl.Match(info)
}

// Decide runs RBAC, route match, fault injection and the route action for
// a request arriving on chain, using rnd for weighted and fault draws.
// Filter order is Envoy's: RBAC deny, RBAC allow, fault, router.
func Decide(snap *state.Snapshot, chain *state.Chain, in Input, rnd *rand.Rand) Plan {
	p := Plan{Flags: "-"}
	rt, ok := MatchRoute(snap.Routes[chain.RouteName], in.Route, in.Authority)
	var overrides map[string]*authz.Engine
	if ok {
		p.Route = rt
		overrides = rt.Authz
	}
	p.Authz = authz.Chain(chain.RBAC, overrides, &in.Authz)
	if !p.Authz.Allowed {
		p.Status, p.Body, p.Flags = http.StatusForbidden, BodyRBACDenied, "RBAC"
		return p
	}
	if !ok {
		p.Status, p.Flags = http.StatusNotFound, "NR"
		return p
	}
	delay, abort := rt.Fault.Decide(rnd)
	p.Delay = delay
	if delay > 0 {
		p.Flags = "DI"
	}
	if abort != 0 {
		p.Status, p.Body = abort, BodyFaultAbort
		p.Flags = "FI"
		if delay > 0 {
			p.Flags = "DI,FI"
		}
		return p
	}
	switch {
	case rt.Redirect != nil:
		p.Status = rt.Redirect.Status
		p.Location = rt.RedirectLocation(in.Route, "http", in.RawQuery)
		return p
	case rt.DirectResponse != nil:
		p.Status, p.Body = rt.DirectResponse.Status, rt.DirectResponse.Body
		return p
	}
	p.ClusterName = rt.PickCluster(rnd)
	p.Cluster = snap.Clusters[p.ClusterName]
	if p.Cluster == nil {
		p.Status, p.Flags = rt.ClusterNotFoundStatus, "NC"
		if p.Status == 0 {
			p.Status = http.StatusServiceUnavailable
		}
		return p
	}
	if len(p.Cluster.Endpoints) == 0 {
		p.Status, p.Body, p.Flags = http.StatusServiceUnavailable, BodyNoHealthy, "UH"
	}
	return p
}
