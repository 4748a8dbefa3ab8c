package statetest

import (
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"runtime"
	"testing"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/fault/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/rbac/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/router/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/upstreams/http/v3"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/structpb"
	"sigs.k8s.io/yaml"

	"github.com/ambient-mesh/ambient/waypoint/state"
)

// GoldenDir is istiod-lite/waypointxds/testdata in this checkout.
func GoldenDir() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..", "..", "istiod-lite", "waypointxds", "testdata")
}

// Load reads testdata/<name>-out.yaml into waypoint resources.
func Load(name string) (state.Resources, error) {
	var r state.Resources
	data, err := os.ReadFile(filepath.Join(GoldenDir(), name+"-out.yaml"))
	if err != nil {
		return r, fmt.Errorf("read golden output: %w", err)
	}
	js, err := yaml.YAMLToJSON(data)
	if err != nil {
		return r, fmt.Errorf("%s: %w", name, err)
	}
	var doc struct {
		Listeners, Routes, Clusters, Endpoints []json.RawMessage
	}
	if err := json.Unmarshal(js, &doc); err != nil {
		return r, fmt.Errorf("%s: %w", name, err)
	}
	dec := func(raw json.RawMessage, m proto.Message) error {
		if err := protojson.Unmarshal(raw, m); err != nil {
			return fmt.Errorf("%s: %T: %w", name, m, err)
		}
		return nil
	}
	for _, raw := range doc.Listeners {
		m := &listenerv3.Listener{}
		if err := dec(raw, m); err != nil {
			return r, err
		}
		r.Listeners = append(r.Listeners, m)
	}
	for _, raw := range doc.Routes {
		m := &routev3.RouteConfiguration{}
		if err := dec(raw, m); err != nil {
			return r, err
		}
		r.Routes = append(r.Routes, m)
	}
	for _, raw := range doc.Clusters {
		m := &clusterv3.Cluster{}
		if err := dec(raw, m); err != nil {
			return r, err
		}
		r.Clusters = append(r.Clusters, m)
	}
	for _, raw := range doc.Endpoints {
		m := &endpointv3.ClusterLoadAssignment{}
		if err := dec(raw, m); err != nil {
			return r, err
		}
		r.Endpoints = append(r.Endpoints, m)
	}
	return r, nil
}

// MustLoad is Load failing tb on error.
func MustLoad(tb testing.TB, name string) state.Resources {
	tb.Helper()
	r, err := Load(name)
	if err != nil {
		tb.Fatal(err)
	}
	return r
}

// Relocation says where an endpoint's pod really is in a test: its HBONE
// tunnel (the fake destination ztunnel) and the address that tunnel
// forwards to.
type Relocation struct {
	Tunnel, Destination netip.AddrPort
}

// Relocate rewrites every endpoint whose pod IP is a key of m: socket
// address and tunnel.destination become Destination, tunnel.address
// becomes Tunnel. Endpoints of other IPs are left alone.
func Relocate(r state.Resources, m map[netip.Addr]Relocation) {
	for _, la := range r.Endpoints {
		for _, lle := range la.Endpoints {
			for _, lb := range lle.LbEndpoints {
				sa := lb.GetEndpoint().GetAddress().GetSocketAddress()
				ip, err := netip.ParseAddr(sa.GetAddress())
				if err != nil {
					continue
				}
				rl, ok := m[ip]
				if !ok {
					continue
				}
				sa.Address = rl.Destination.Addr().String()
				sa.PortSpecifier = &corev3.SocketAddress_PortValue{PortValue: uint32(rl.Destination.Port())}
				if t := lb.GetMetadata().GetFilterMetadata()["tunnel"]; t != nil {
					t.Fields["address"] = structpb.NewStringValue(rl.Tunnel.String())
					t.Fields["destination"] = structpb.NewStringValue(rl.Destination.String())
				}
			}
		}
	}
}
