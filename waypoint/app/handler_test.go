package app

import (
	"strings"
	"testing"

	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	"google.golang.org/protobuf/proto"

	"github.com/ambient-mesh/ambient/pkg/xds"
	"github.com/ambient-mesh/ambient/waypoint/state"
)

func TestHandlerUpdate(t *testing.T) {
	store := state.NewStore()
	h := newHandler("ns1/wp/", store)
	update := func(typeURL string, upserts map[string]proto.Message, removes ...string) error {
		return h.Update(typeURL, upserts, removes, "v")
	}

	if err := update(xds.RouteType, map[string]proto.Message{
		"ns1/wp/9080": &routev3.RouteConfiguration{Name: "ns1/wp/9080"},
		"ns2/wp/9080": &routev3.RouteConfiguration{Name: "ns2/wp/9080"},
	}); err != nil {
		t.Fatalf("routes: %v", err)
	}
	if err := update(xds.ListenerType, map[string]proto.Message{
		"ns1/wp/wp": testListener("ns1/wp/wp", "ns1/wp/9080"),
		"ns2/wp/wp": testListener("ns2/wp/wp", "ns2/wp/9080"), // same port: the store would refuse both
	}); err != nil {
		t.Fatalf("listeners: %v", err)
	}
	snap := store.Load()
	if c := snap.Chain(9080); c == nil || c.RouteName != "9080" || snap.Routes["9080"] == nil || len(snap.Routes) != 1 {
		t.Fatalf("snapshot: chain %+v, routes %v", c, keys(snap.Routes))
	}

	// Two chains for port 9080 are refused: NACK,
	// nothing changes.
	bad := testListener("ns1/wp/wp", "ns1/wp/9080")
	bad.FilterChains = append(bad.FilterChains, proto.Clone(bad.FilterChains[0]).(*listenerv3.FilterChain))
	err := update(xds.ListenerType, map[string]proto.Message{"ns1/wp/wp": bad})
	if err == nil || !strings.Contains(err.Error(), "ns1/wp/") {
		t.Fatalf("bad listener: err = %v, want a refusal naming the prefix", err)
	}
	if store.Load() != snap {
		t.Error("refused update changed the snapshot")
	}
	if s := h.summary(xds.ListenerType); s.Count != 1 || s.Names[0] != "wp" {
		t.Errorf("listener summary = %+v", s)
	}

	// Removing someone else's route changes nothing; ours goes.
	if err := update(xds.RouteType, nil, "ns2/wp/9080"); err != nil {
		t.Fatal(err)
	}
	if s := h.summary(xds.RouteType); s.Count != 1 {
		t.Errorf("route summary after foreign removal = %+v", s)
	}
	if err := update(xds.RouteType, nil, "ns1/wp/9080"); err != nil {
		t.Fatal(err)
	}
	if s := h.summary(xds.RouteType); s.Count != 0 || len(store.Load().Routes) != 0 {
		t.Errorf("after removal: summary %+v, store routes %v", s, keys(store.Load().Routes))
	}
}
