package state

import (
	"errors"
	"fmt"
	"net/netip"
	"strings"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	faultv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/fault/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/rbac/v3" // RBAC typed configs
	routerv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/router/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	httpv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/upstreams/http/v3"
	"google.golang.org/protobuf/proto"

	"github.com/ambient-mesh/ambient/pkg/spiffe"
	"github.com/ambient-mesh/ambient/waypoint/router/authz"
)

// ErrUnsupported is wrapped by errors about configuration the waypoint does
// not implement.
var ErrUnsupported = errors.New("not supported by the waypoint")

const (
	hcmName       = "envoy.filters.network.http_connection_manager"
	rbacTypeURL   = "type.googleapis.com/envoy.extensions.filters.http.rbac.v3.RBAC"
	faultTypeURL  = "type.googleapis.com/envoy.extensions.filters.http.fault.v3.HTTPFault"
	routerTypeURL = "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"
	httpOptsKey   = "envoy.extensions.upstreams.http.v3.HttpProtocolOptions"
)

func compileListeners(ls []*listenerv3.Listener) (map[uint32]*Chain, *Chain, error) {
	chains := map[uint32]*Chain{}
	var def *Chain
	for _, l := range ls {
		for i, fc := range l.FilterChains {
			path := fmt.Sprintf("Listener %q filter_chains[%d] (%s)", l.Name, i, fc.Name)
			c, err := compileChain(fc, path)
			if err != nil {
				return nil, nil, err
			}
			if c == nil {
				continue
			}
			m := fc.GetFilterChainMatch()
			if m.GetDestinationPort() == nil {
				if def != nil {
					return nil, nil, fmt.Errorf("%s: a second chain without destination_port", path)
				}
				def = c
				continue
			}
			c.Port = m.GetDestinationPort().GetValue()
			if _, dup := chains[c.Port]; dup {
				return nil, nil, fmt.Errorf("%s: destination_port %d matched by two chains", path, c.Port)
			}
			chains[c.Port] = c
		}
	}
	return chains, def, nil
}

// compileChain returns nil for a chain without an HTTP connection manager
// (a TCP chain: the waypoint passes such traffic through).
func compileChain(fc *listenerv3.FilterChain, path string) (*Chain, error) {
	var hcm *hcmv3.HttpConnectionManager
	for j, f := range fc.Filters {
		if f.Name != hcmName && !strings.HasSuffix(f.GetTypedConfig().GetTypeUrl(), ".HttpConnectionManager") {
			continue
		}
		hcm = &hcmv3.HttpConnectionManager{}
		if err := f.GetTypedConfig().UnmarshalTo(hcm); err != nil {
			return nil, fmt.Errorf("%s.filters[%d]: %w", path, j, err)
		}
	}
	if hcm == nil {
		return nil, nil
	}
	c := &Chain{Name: fc.Name, RouteName: hcm.GetRds().GetRouteConfigName()}
	if hcm.GetRds() == nil {
		return nil, fmt.Errorf("%s: http_connection_manager without rds: %w", path, ErrUnsupported)
	}
	for j, hf := range hcm.HttpFilters {
		fp := fmt.Sprintf("%s.http_filters[%d] (%s)", path, j, hf.Name)
		tc := hf.GetTypedConfig()
		switch tc.GetTypeUrl() {
		case rbacTypeURL, routerTypeURL:
		case faultTypeURL:
			f := &faultv3.HTTPFault{}
			if err := tc.UnmarshalTo(f); err != nil {
				return nil, fmt.Errorf("%s: %w", fp, err)
			}
			if proto.Size(f) != 0 {
				return nil, fmt.Errorf("%s: listener-level fault configuration (only per-route): %w", fp, ErrUnsupported)
			}
		default:
			return nil, fmt.Errorf("%s: filter type %q: %w", fp, tc.GetTypeUrl(), ErrUnsupported)
		}
		if tc.GetTypeUrl() == routerTypeURL {
			r := &routerv3.Router{}
			if err := tc.UnmarshalTo(r); err != nil {
				return nil, fmt.Errorf("%s: %w", fp, err)
			}
		}
	}
	rbac, err := authz.FromHTTPFilters(hcm.HttpFilters)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	c.RBAC = rbac
	return c, nil
}

func compileCluster(c *clusterv3.Cluster) (*Cluster, []*Endpoint, error) {
	path := fmt.Sprintf("Cluster %q", c.Name)
	out := &Cluster{Name: c.Name, Service: ServiceOfCluster(c.Name), ConnectTimeout: c.GetConnectTimeout().AsDuration()}
	switch c.GetType() {
	case clusterv3.Cluster_EDS, clusterv3.Cluster_STATIC:
	default:
		return nil, nil, fmt.Errorf("%s: type %s: %w", path, c.GetType(), ErrUnsupported)
	}
	switch c.LbPolicy {
	case clusterv3.Cluster_ROUND_ROBIN:
		out.LB = RoundRobin
	case clusterv3.Cluster_LEAST_REQUEST:
		out.LB = LeastRequest
	default:
		return nil, nil, fmt.Errorf("%s: lb_policy %s: %w", path, c.LbPolicy, ErrUnsupported)
	}
	if od := c.OutlierDetection; od != nil {
		o := &Outlier{Consecutive5xx: 5, BaseEjection: 30e9, MaxEjectionPercent: 10}
		if v := od.Consecutive_5Xx; v != nil {
			o.Consecutive5xx = v.Value
		}
		if v := od.BaseEjectionTime; v != nil {
			o.BaseEjection = v.AsDuration()
		}
		if v := od.MaxEjectionPercent; v != nil {
			o.MaxEjectionPercent = min(v.Value, 100)
		}
		out.Outlier = o
	}
	for key, a := range c.TypedExtensionProtocolOptions {
		if key != httpOptsKey {
			return nil, nil, fmt.Errorf("%s: typed_extension_protocol_options[%s]: %w", path, key, ErrUnsupported)
		}
		opts := &httpv3.HttpProtocolOptions{}
		if err := a.UnmarshalTo(opts); err != nil {
			return nil, nil, fmt.Errorf("%s: typed_extension_protocol_options[%s]: %w", path, key, err)
		}
		out.HTTP2 = opts.GetExplicitHttpConfig().GetHttp2ProtocolOptions() != nil
	}
	var inline []*Endpoint
	if la := c.LoadAssignment; la != nil && c.GetType() == clusterv3.Cluster_STATIC {
		eps, err := compileAssignment(la)
		if err != nil {
			return nil, nil, fmt.Errorf("%s.load_assignment: %w", path, err)
		}
		inline = eps
	}
	return out, inline, nil
}

// DefaultTunnelPort is the HBONE port used when an endpoint has no tunnel
// metadata.
const DefaultTunnelPort = 15008

func compileAssignment(la *endpointv3.ClusterLoadAssignment) ([]*Endpoint, error) {
	eps := []*Endpoint{}
	for i, lle := range la.Endpoints {
		for j, lb := range lle.LbEndpoints {
			path := fmt.Sprintf("ClusterLoadAssignment %q endpoints[%d].lb_endpoints[%d]", la.ClusterName, i, j)
			e, err := compileEndpoint(lb, path)
			if err != nil {
				return nil, err
			}
			eps = append(eps, e)
		}
	}
	return eps, nil
}

func compileEndpoint(lb *endpointv3.LbEndpoint, path string) (*Endpoint, error) {
	sa := lb.GetEndpoint().GetAddress().GetSocketAddress()
	if sa == nil {
		return nil, fmt.Errorf("%s: endpoint.address is not a socket address: %w", path, ErrUnsupported)
	}
	ip, err := netip.ParseAddr(sa.Address)
	if err != nil {
		return nil, fmt.Errorf("%s: endpoint.address %q: %w", path, sa.Address, err)
	}
	ip = ip.Unmap()
	e := &Endpoint{Address: netip.AddrPortFrom(ip, uint16(sa.GetPortValue())), Weight: 1}
	if w := lb.GetLoadBalancingWeight(); w != nil && w.Value > 0 {
		e.Weight = w.Value
	}
	switch lb.HealthStatus {
	case corev3.HealthStatus_UNKNOWN, corev3.HealthStatus_HEALTHY:
		e.Healthy = true
	}
	e.Tunnel = netip.AddrPortFrom(ip, DefaultTunnelPort)
	e.Destination = e.Address
	md := lb.GetMetadata().GetFilterMetadata()
	if t := md["tunnel"]; t != nil {
		if v := t.Fields["address"].GetStringValue(); v != "" {
			if e.Tunnel, err = netip.ParseAddrPort(v); err != nil {
				return nil, fmt.Errorf("%s: metadata tunnel.address %q: %w", path, v, err)
			}
		}
		if v := t.Fields["destination"].GetStringValue(); v != "" {
			if e.Destination, err = netip.ParseAddrPort(v); err != nil {
				return nil, fmt.Errorf("%s: metadata tunnel.destination %q: %w", path, v, err)
			}
		}
	}
	if is := md["istio"]; is != nil {
		if v := is.Fields["identity"].GetStringValue(); v != "" {
			if e.Identity, err = spiffe.Parse(v); err != nil {
				return nil, fmt.Errorf("%s: metadata istio.identity %q: %w", path, v, err)
			}
		}
		e.Node = is.Fields["node"].GetStringValue()
	}
	return e, nil
}
