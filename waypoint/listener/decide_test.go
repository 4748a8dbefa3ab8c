package listener_test

import (
	"math/rand/v2"
	"net/http"
	"net/netip"
	"net/url"
	"testing"

	"github.com/ambient-mesh/ambient/pkg/spiffe"
	"github.com/ambient-mesh/ambient/waypoint/listener"
	"github.com/ambient-mesh/ambient/waypoint/router"
	"github.com/ambient-mesh/ambient/waypoint/router/authz"
	"github.com/ambient-mesh/ambient/waypoint/state"
	"github.com/ambient-mesh/ambient/waypoint/state/statetest"
)

func snapshot(t *testing.T, name string, mutate func(*state.Resources)) *state.Snapshot {
	t.Helper()
	r := statetest.MustLoad(t, name)
	if mutate != nil {
		mutate(&r)
	}
	s, err := state.Build(r)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func input(authority, host, method, target string, peer spiffe.Identity) listener.Input {
	u, _ := url.ParseRequestURI(target)
	ap := netip.MustParseAddrPort(authority)
	in := listener.Input{
		Route:     router.RequestInfo{Host: host, Method: method, Path: u.Path, Headers: http.Header{}},
		Authority: ap,
		Authz:     authz.Request{Method: method, Host: host, Path: target, Headers: http.Header{}, DestinationPort: uint32(ap.Port()), Peer: peer},
		RawQuery:  u.RawQuery,
	}
	if u.RawQuery != "" {
		in.Route.Query = u.Query()
	}
	return in
}

func TestDecide(t *testing.T) {
	weights := snapshot(t, "weights", nil)
	authzSnap := snapshot(t, "authz", nil)
	missing := snapshot(t, "missing-backend", nil)
	redirect := snapshot(t, "redirect", nil)
	noEndpoints := snapshot(t, "weights", func(r *state.Resources) { r.Endpoints = nil })
	for _, tc := range []struct {
		name        string
		snap        *state.Snapshot
		in          listener.Input
		status      int
		body, flags string
		cluster     string
		location    string
	}{
		{name: "route by VIP", snap: weights, in: input("10.96.0.21:9080", "whatever", "GET", "/", sleepID),
			cluster: "outbound|9080||reviews-v1.default.svc.cluster.local", flags: "-"},
		{name: "route by Host for a pod", snap: weights, in: input("10.244.1.11:9080", "reviews-v2.default:9080", "GET", "/", sleepID),
			cluster: "outbound|9080||reviews-v2.default.svc.cluster.local", flags: "-"},
		{name: "no route", snap: weights, in: input("10.244.1.11:9080", "nope", "GET", "/", sleepID), status: 404, flags: "NR"},
		{name: "rbac allow", snap: authzSnap, in: input("10.96.0.41:9080", "ratings", "GET", "/public/x?a=1", sleepID),
			cluster: "outbound|9080||ratings.default.svc.cluster.local", flags: "-"},
		{name: "rbac deny", snap: authzSnap, in: input("10.96.0.41:9080", "ratings", "POST", "/admin", sleepID),
			status: 403, body: listener.BodyRBACDenied, flags: "RBAC"},
		{name: "rbac allow admin", snap: authzSnap, in: input("10.96.0.41:9080", "ratings", "POST", "/admin", adminID),
			cluster: "outbound|9080||ratings.default.svc.cluster.local", flags: "-"},
		{name: "rbac before 404", snap: authzSnap, in: input("10.244.9.9:9080", "nope", "GET", "/admin", sleepID),
			status: 403, body: listener.BodyRBACDenied, flags: "RBAC"},
		{name: "direct response", snap: missing, in: input("10.96.0.20:9080", "reviews", "GET", "/only-missing", sleepID),
			status: 500, flags: "-"},
		{name: "no endpoints", snap: noEndpoints, in: input("10.96.0.21:9080", "reviews-v1", "GET", "/", sleepID),
			status: 503, body: listener.BodyNoHealthy, flags: "UH", cluster: "outbound|9080||reviews-v1.default.svc.cluster.local"},
		{name: "redirect", snap: redirect, in: input("10.96.0.20:9080", "reviews:9080", "GET", "/old/page?x=1", sleepID),
			status: 301, flags: "-", location: "https://reviews.example.com/old/page?x=1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			chain := tc.snap.Chain(uint32(tc.in.Authority.Port()))
			p := listener.Decide(tc.snap, chain, tc.in, rand.New(rand.NewPCG(1, 2)))
			if p.Status != tc.status || p.Body != tc.body || p.Flags != tc.flags || p.ClusterName != tc.cluster || p.Location != tc.location {
				t.Errorf("plan = status %d body %q flags %q cluster %q location %q\nwant status %d body %q flags %q cluster %q location %q",
					p.Status, p.Body, p.Flags, p.ClusterName, p.Location, tc.status, tc.body, tc.flags, tc.cluster, tc.location)
			}
		})
	}
}

// The missing backend's share answers 500 (cluster_not_found_response_code).
func TestDecideClusterNotFound(t *testing.T) {
	snap := snapshot(t, "missing-backend", nil)
	rnd := rand.New(rand.NewPCG(3, 4))
	codes := map[int]int{}
	for range 1000 {
		p := listener.Decide(snap, snap.Chain(9080), input("10.96.0.20:9080", "reviews", "GET", "/", sleepID), rnd)
		codes[p.Status]++
		if p.Status == 500 && p.Flags != "NC" {
			t.Fatalf("flags %q", p.Flags)
		}
	}
	if codes[500] < 70 || codes[500] > 130 || codes[0]+codes[500] != 1000 {
		t.Errorf("statuses %v, want ~100 × 500 and the rest forwarded", codes)
	}
}

func TestPassthroughPeer(t *testing.T) {
	snap := snapshot(t, "weights", nil)
	for _, tc := range []struct {
		authority string
		peer      string
		id        string
	}{
		{"10.244.1.11:3306", "10.244.1.11:15008", "spiffe://cluster.local/ns/default/sa/bookinfo-reviews"},
		{"10.1.1.1:3306", "10.1.1.1:15008", ""},
	} {
		peer, id := listener.PassthroughPeer(snap, netip.MustParseAddrPort(tc.authority), 15008)
		gotID := ""
		if !id.IsZero() {
			gotID = id.String()
		}
		if peer.String() != tc.peer || gotID != tc.id {
			t.Errorf("PassthroughPeer(%s) = %v %q, want %s %q", tc.authority, peer, gotID, tc.peer, tc.id)
		}
	}
}

func TestRequestLabels(t *testing.T) {
	got := listener.RequestLabels{Source: sleepID, DestinationService: "reviews.default.svc.cluster.local",
		Destination: adminID, GRPC: true, Code: 200, GRPCStatus: "0", Flags: "-"}.Values()
	want := []string{"waypoint", "sleep", "default", "spiffe://cluster.local/ns/default/sa/sleep",
		"reviews.default.svc.cluster.local", "reviews", "default", "admin", "default", "spiffe://cluster.local/ns/default/sa/admin",
		"grpc", "200", "0", "-", "mutual_tls"}
	if len(got) != len(want) {
		t.Fatalf("%d values, want %d", len(got), len(want))
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("value %d = %q, want %q", i, got[i], want[i])
		}
	}
	empty := listener.RequestLabels{Code: 404, Flags: "NR"}.Values()
	if empty[1] != "unknown" || empty[4] != "unknown" || empty[5] != "unknown" || empty[12] != "-" {
		t.Errorf("unknown labels: %v", empty)
	}
}
