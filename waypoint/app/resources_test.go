package app

import (
	"maps"
	"slices"
	"testing"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/ambient-mesh/ambient/pkg/xds"
)

// testListener is a listener with one HTTP chain per route name.
func testListener(name string, routes ...string) *listenerv3.Listener {
	l := &listenerv3.Listener{Name: name}
	for i, rn := range routes {
		hcm, err := anypb.New(&hcmv3.HttpConnectionManager{
			StatPrefix:     "inbound",
			RouteSpecifier: &hcmv3.HttpConnectionManager_Rds{Rds: &hcmv3.Rds{RouteConfigName: rn}},
		})
		if err != nil {
			panic(err)
		}
		l.FilterChains = append(l.FilterChains, &listenerv3.FilterChain{
			Name:             rn,
			FilterChainMatch: &listenerv3.FilterChainMatch{DestinationPort: wrapperspb.UInt32(uint32(9080 + i))},
			Filters: []*listenerv3.Filter{{Name: "envoy.filters.network.http_connection_manager",
				ConfigType: &listenerv3.Filter_TypedConfig{TypedConfig: hcm}}},
		})
	}
	return l
}

// rdsNames lists the RDS route names a listener references.
func rdsNames(t *testing.T, l *listenerv3.Listener) []string {
	t.Helper()
	var out []string
	for _, fc := range l.FilterChains {
		for _, f := range fc.Filters {
			hcm := &hcmv3.HttpConnectionManager{}
			if err := f.GetTypedConfig().UnmarshalTo(hcm); err != nil {
				t.Fatal(err)
			}
			out = append(out, hcm.GetRds().GetRouteConfigName())
		}
	}
	return out
}

func TestOwnResources(t *testing.T) {
	const prefix = "ns1/waypoint/"
	tests := []struct {
		name        string
		typeURL     string
		upserts     map[string]proto.Message
		removes     []string
		wantNames   []string
		wantRemoves []string
		wantRDS     map[string][]string // listener name → RDS references after
		wantErr     bool
	}{
		{
			name:    "own listener stripped with its RDS references, others dropped",
			typeURL: xds.ListenerType,
			upserts: map[string]proto.Message{
				"ns1/waypoint/waypoint": testListener("ns1/waypoint/waypoint", "ns1/waypoint/9080", "ns1/waypoint/9081"),
				"ns2/waypoint/waypoint": testListener("ns2/waypoint/waypoint", "ns2/waypoint/9080"),
				"ns1/waypoint2/wp":      testListener("ns1/waypoint2/wp", "ns1/waypoint2/9080"),
				"waypoint":              testListener("waypoint", "9080"),
			},
			wantNames: []string{"waypoint"},
			wantRDS:   map[string][]string{"waypoint": {"9080", "9081"}},
		},
		{
			name:      "unprefixed RDS reference left alone",
			typeURL:   xds.ListenerType,
			upserts:   map[string]proto.Message{"ns1/waypoint/l": testListener("ns1/waypoint/l", "9080", "ns2/x/1")},
			wantNames: []string{"l"},
			wantRDS:   map[string][]string{"l": {"9080", "ns2/x/1"}},
		},
		{
			name:    "routes",
			typeURL: xds.RouteType,
			upserts: map[string]proto.Message{
				"ns1/waypoint/9080": &routev3.RouteConfiguration{Name: "ns1/waypoint/9080"},
				"ns2/waypoint/9080": &routev3.RouteConfiguration{Name: "ns2/waypoint/9080"},
				"ns1/waypoint/":     &routev3.RouteConfiguration{Name: "ns1/waypoint/"},
			},
			removes:     []string{"ns1/waypoint/8080", "ns2/waypoint/8080", "8080"},
			wantNames:   []string{"9080"},
			wantRemoves: []string{"8080"},
		},
		{
			name:        "clusters are shared and unchanged",
			typeURL:     xds.ClusterType,
			upserts:     map[string]proto.Message{"outbound|9080||a.ns.svc.cluster.local": &clusterv3.Cluster{Name: "outbound|9080||a.ns.svc.cluster.local"}},
			removes:     []string{"outbound|9080||b.ns.svc.cluster.local"},
			wantNames:   []string{"outbound|9080||a.ns.svc.cluster.local"},
			wantRemoves: []string{"outbound|9080||b.ns.svc.cluster.local"},
		},
		{
			name:    "wrong Go type",
			typeURL: xds.RouteType,
			upserts: map[string]proto.Message{"ns1/waypoint/x": &clusterv3.Cluster{}},
			wantErr: true,
		},
		{
			name:    "undecodable HTTP connection manager",
			typeURL: xds.ListenerType,
			upserts: map[string]proto.Message{"ns1/waypoint/bad": &listenerv3.Listener{FilterChains: []*listenerv3.FilterChain{{
				Filters: []*listenerv3.Filter{{ConfigType: &listenerv3.Filter_TypedConfig{TypedConfig: &anypb.Any{
					TypeUrl: "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
					Value:   []byte{0xff, 0xff},
				}}}},
			}}}},
			wantErr: true,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := map[string]proto.Message{}
			for k, v := range tt.upserts {
				before[k] = proto.Clone(v)
			}
			got, removes, err := OwnResources(prefix, tt.typeURL, tt.upserts, tt.removes)
			if tt.wantErr {
				if err == nil {
					t.Fatalf("OwnResources = %v, want an error", slices.Sorted(maps.Keys(got)))
				}
				return
			}
			if err != nil {
				t.Fatalf("OwnResources: %v", err)
			}
			if names := slices.Sorted(maps.Keys(got)); !slices.Equal(names, tt.wantNames) {
				t.Errorf("names = %q, want %q", names, tt.wantNames)
			}
			if !slices.Equal(removes, tt.wantRemoves) {
				t.Errorf("removes = %q, want %q", removes, tt.wantRemoves)
			}
			for name, m := range got {
				type named interface{ GetName() string }
				if n, ok := m.(named); ok && n.GetName() != name {
					t.Errorf("resource %q carries name %q", name, n.GetName())
				}
			}
			for name, want := range tt.wantRDS {
				if rds := rdsNames(t, got[name].(*listenerv3.Listener)); !slices.Equal(rds, want) {
					t.Errorf("listener %q RDS = %q, want %q", name, rds, want)
				}
			}
			for k, v := range tt.upserts {
				if !proto.Equal(v, before[k]) {
					t.Errorf("input %q modified", k)
				}
			}
		})
	}
}
