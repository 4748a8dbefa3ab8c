package waypointxds

import (
	"fmt"
	"net"
	"sort"
	"strconv"
	"strings"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	faultv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/fault/v3"
	rbacfilterv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/rbac/v3"
	routerv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/router/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	upstreamhttpv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/upstreams/http/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/structpb"
)

// Names shared with the waypoint (waypoint/router reads them).
const (
	// ListenerName is the single Listener of a waypoint. It has one filter
	// chain per HTTP service port, matched on the destination port of the
	// HBONE CONNECT authority.
	ListenerName = "waypoint"
	// RBACDenyFilter and RBACAllowFilter are the two RBAC http filters, DENY
	// first; a VirtualHost overrides both through typed_per_filter_config
	// when a Service has its own policies.
	RBACDenyFilter  = "ambient.rbac.deny"
	RBACAllowFilter = "ambient.rbac.allow"
	// FaultFilter is the fault filter; routes configure it per route.
	FaultFilter  = "envoy.filters.http.fault"
	RouterFilter = "envoy.filters.http.router"
	// HBONEPort is where endpoints are reached through HBONE.
	HBONEPort = 15008
	// InvalidBackendPrefix starts the name of a cluster that is never sent:
	// a weighted share pointing at an unresolved backendRef, answered with 500
	// through cluster_not_found_response_code.
	InvalidBackendPrefix = "invalid-backend|"
	// Endpoint metadata keys (filter_metadata) describing the HBONE hop.
	MetadataTunnel          = "tunnel"                       // {address: ip:15008, destination: ip:port}
	MetadataTransportSocket = "envoy.transport_socket_match" // {tunnel: http}
	MetadataIstio           = "istio"                        // {identity: spiffe://..., node: ...}
	httpProtocolOptionsKey  = "envoy.extensions.upstreams.http.v3.HttpProtocolOptions"
	hcmFilterName           = "envoy.filters.network.http_connection_manager"
	defaultTrustDomain      = "cluster.local"
)

// Output holds the resources for one waypoint, each list sorted by name.
type Output struct {
	Listeners []*listenerv3.Listener
	Routes    []*routev3.RouteConfiguration
	Clusters  []*clusterv3.Cluster
	Endpoints []*endpointv3.ClusterLoadAssignment
}

// vhostKey is one (bound service, port) virtual host.
type vhostKey struct {
	svc  Key
	port uint32
}

// clusterRef is one (service, port) cluster.
type clusterRef struct {
	svc  Key
	port uint32
}

type builder struct {
	in       Input
	td       string
	bound    map[Key]*Service
	clusters map[clusterRef]bool
	conds    []Condition
	// routes per virtual host: service-attached first, then Gateway-attached.
	svcRoutes map[vhostKey][]candidate
	gwRoutes  map[vhostKey][]candidate
}

// Build translates one waypoint's input into Envoy resources and status
// conditions. It is pure and deterministic.
func Build(in Input) (Output, []Condition) {
	b := &builder{
		in:        in,
		td:        in.Waypoint.TrustDomain,
		bound:     map[Key]*Service{},
		clusters:  map[clusterRef]bool{},
		svcRoutes: map[vhostKey][]candidate{},
		gwRoutes:  map[vhostKey][]candidate{},
	}
	if b.td == "" {
		b.td = defaultTrustDomain
	}
	for i := range in.Bound {
		s := &in.Bound[i]
		b.bound[s.Key()] = s
		for _, p := range s.Ports {
			if isHTTPPort(p) {
				b.clusters[clusterRef{s.Key(), p.Port}] = true
			}
		}
	}
	b.attachHTTPRoutes()
	b.attachGRPCRoutes()
	gwAuthz, svcAuthz := b.authorization()

	var out Output
	ports := b.httpPorts()
	out.Listeners = []*listenerv3.Listener{b.listener(ports, gwAuthz)}
	for _, p := range ports {
		out.Routes = append(out.Routes, b.routeConfig(p, gwAuthz, svcAuthz))
	}
	out.Clusters, out.Endpoints = b.clusterResources()
	sortConditions(b.conds)
	return out, b.conds
}

func (b *builder) lookup(k Key) (*Service, bool) {
	if s, ok := b.bound[k]; ok {
		return s, true
	}
	if s, ok := b.in.Services[k]; ok {
		return &s, true
	}
	return nil, false
}

// isHTTPPort reports whether the waypoint handles a port as HTTP. Ports
// declared as TCP-like (appProtocol or Istio name prefix) are not served.
func isHTTPPort(p ServicePort) bool {
	proto := strings.ToLower(p.AppProtocol)
	if proto == "" {
		proto, _, _ = strings.Cut(strings.ToLower(p.Name), "-")
	}
	switch proto {
	case "tcp", "tls", "https", "mongo", "mysql", "redis", "kubernetes.io/wss":
		return false
	}
	return true
}

// isHTTP2Port reports whether upstream connections should use HTTP/2.
func isHTTP2Port(p ServicePort) bool {
	proto := strings.ToLower(p.AppProtocol)
	if proto == "" {
		proto, _, _ = strings.Cut(strings.ToLower(p.Name), "-")
	}
	switch proto {
	case "http2", "grpc", "grpc-web", "h2c", "kubernetes.io/h2c":
		return true
	}
	return false
}

func (b *builder) httpPorts() []uint32 {
	set := map[uint32]bool{}
	for _, s := range b.in.Bound {
		for _, p := range s.Ports {
			if isHTTPPort(p) {
				set[p.Port] = true
			}
		}
	}
	ports := make([]uint32, 0, len(set))
	for p := range set {
		ports = append(ports, p)
	}
	sort.Slice(ports, func(i, j int) bool { return ports[i] < ports[j] })
	return ports
}

// ClusterName is Istio's outbound cluster name.
func ClusterName(hostname string, port uint32) string {
	return "outbound|" + strconv.FormatUint(uint64(port), 10) + "||" + hostname
}

// RouteName is the RDS name of a port's RouteConfiguration.
func RouteName(port uint32) string { return strconv.FormatUint(uint64(port), 10) }

func mustAny(m proto.Message) *anypb.Any {
	a, err := anypb.New(m)
	if err != nil {
		panic(fmt.Sprintf("marshal %T: %v", m, err)) // only fails for unregistered types: a programming error
	}
	return a
}

func ads() *corev3.ConfigSource {
	return &corev3.ConfigSource{
		ResourceApiVersion:    corev3.ApiVersion_V3,
		ConfigSourceSpecifier: &corev3.ConfigSource_Ads{Ads: &corev3.AggregatedConfigSource{}},
	}
}

func (b *builder) listener(ports []uint32, gw *authzScope) *listenerv3.Listener {
	l := &listenerv3.Listener{
		Name: ListenerName,
		Address: &corev3.Address{Address: &corev3.Address_SocketAddress{SocketAddress: &corev3.SocketAddress{
			Address: "0.0.0.0", PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: HBONEPort},
		}}},
	}
	for _, p := range ports {
		hcm := &hcmv3.HttpConnectionManager{
			StatPrefix: "inbound_" + RouteName(p),
			CodecType:  hcmv3.HttpConnectionManager_AUTO,
			RouteSpecifier: &hcmv3.HttpConnectionManager_Rds{Rds: &hcmv3.Rds{
				ConfigSource: ads(), RouteConfigName: RouteName(p),
			}},
			HttpFilters: []*hcmv3.HttpFilter{
				{Name: RBACDenyFilter, ConfigType: &hcmv3.HttpFilter_TypedConfig{TypedConfig: mustAny(gw.rbac(true))}},
				{Name: RBACAllowFilter, ConfigType: &hcmv3.HttpFilter_TypedConfig{TypedConfig: mustAny(gw.rbac(false))}},
				{Name: FaultFilter, ConfigType: &hcmv3.HttpFilter_TypedConfig{TypedConfig: mustAny(&faultv3.HTTPFault{})}},
				{Name: RouterFilter, ConfigType: &hcmv3.HttpFilter_TypedConfig{TypedConfig: mustAny(&routerv3.Router{})}},
			},
		}
		l.FilterChains = append(l.FilterChains, &listenerv3.FilterChain{
			Name:             "inbound-vip|" + RouteName(p) + "|http",
			FilterChainMatch: &listenerv3.FilterChainMatch{DestinationPort: wrapU32(p)},
			Filters: []*listenerv3.Filter{{
				Name:       hcmFilterName,
				ConfigType: &listenerv3.Filter_TypedConfig{TypedConfig: mustAny(hcm)},
			}},
		})
	}
	return l
}

// domains lists the names a virtual host answers to: FQDN, the short forms
// (the bare name only when no other service on the port shares it), VIPs,
// each with and without the port.
func domains(s *Service, port uint32, bareUnique bool) []string {
	ps := ":" + RouteName(port)
	var names []string
	names = append(names, s.Hostname)
	if short, ok := strings.CutSuffix(s.Hostname, "."+s.Namespace+".svc"+suffixAfterSvc(s.Hostname)); ok && short == s.Name {
		names = append(names, s.Name+"."+s.Namespace+".svc", s.Name+"."+s.Namespace)
		if bareUnique {
			names = append(names, s.Name)
		}
	}
	for _, v := range s.VIPs {
		if ip := net.ParseIP(v); ip != nil && ip.To4() == nil {
			names = append(names, "["+v+"]")
			continue
		}
		names = append(names, v)
	}
	var out []string
	for _, n := range names {
		out = append(out, n, n+ps)
	}
	return out
}

// suffixAfterSvc returns the cluster-domain part after ".svc" ("." included)
// of a Kubernetes service hostname, or "" when there is none.
func suffixAfterSvc(host string) string {
	i := strings.Index(host, ".svc.")
	if i < 0 {
		return ""
	}
	return host[i+len(".svc"):]
}

func (b *builder) routeConfig(port uint32, gw *authzScope, svcAuthz map[Key]*authzScope) *routev3.RouteConfiguration {
	rc := &routev3.RouteConfiguration{Name: RouteName(port), ValidateClusters: wrapBool(false)}
	var svcs []*Service
	bareCount := map[string]int{}
	for i := range b.in.Bound {
		s := &b.in.Bound[i]
		if p, ok := servicePort(s, port); ok && isHTTPPort(p) {
			svcs = append(svcs, s)
			bareCount[s.Name]++
		}
	}
	sort.Slice(svcs, func(i, j int) bool { return svcs[i].Hostname < svcs[j].Hostname })
	taken := map[string]bool{}
	for _, s := range svcs {
		vh := &routev3.VirtualHost{Name: s.Hostname + ":" + RouteName(port)}
		for _, d := range domains(s, port, bareCount[s.Name] == 1) {
			if !taken[d] {
				taken[d] = true
				vh.Domains = append(vh.Domains, d)
			}
		}
		vk := vhostKey{s.Key(), port}
		cands := append(sortCandidates(b.svcRoutes[vk]), sortCandidates(b.gwRoutes[vk])...)
		for _, c := range cands {
			vh.Routes = append(vh.Routes, c.route)
		}
		if len(b.svcRoutes[vk]) == 0 {
			// No route attached to the Service: after any Gateway-attached
			// routes, traffic goes to the Service itself.
			vh.Routes = append(vh.Routes, defaultRoute(s, port))
		}
		if sa := svcAuthz[s.Key()]; sa != nil {
			merged := gw.merge(sa)
			vh.TypedPerFilterConfig = map[string]*anypb.Any{
				RBACDenyFilter:  mustAny(&rbacfilterv3.RBACPerRoute{Rbac: merged.rbac(true)}),
				RBACAllowFilter: mustAny(&rbacfilterv3.RBACPerRoute{Rbac: merged.rbac(false)}),
			}
		}
		rc.VirtualHosts = append(rc.VirtualHosts, vh)
	}
	return rc
}

func servicePort(s *Service, port uint32) (ServicePort, bool) {
	for _, p := range s.Ports {
		if p.Port == port {
			return p, true
		}
	}
	return ServicePort{}, false
}

func defaultRoute(s *Service, port uint32) *routev3.Route {
	return &routev3.Route{
		Name:  "default",
		Match: &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: "/"}},
		Action: &routev3.Route_Route{Route: &routev3.RouteAction{
			ClusterSpecifier: &routev3.RouteAction_Cluster{Cluster: ClusterName(s.Hostname, port)},
			Timeout:          durationpb.New(0),
		}},
	}
}

func (b *builder) clusterResources() ([]*clusterv3.Cluster, []*endpointv3.ClusterLoadAssignment) {
	refs := make([]clusterRef, 0, len(b.clusters))
	for r := range b.clusters {
		refs = append(refs, r)
	}
	var clusters []*clusterv3.Cluster
	var clas []*endpointv3.ClusterLoadAssignment
	for _, r := range refs {
		s, _ := b.lookup(r.svc) // refs only hold resolved services
		sp, _ := servicePort(s, r.port)
		name := ClusterName(s.Hostname, r.port)
		c := &clusterv3.Cluster{
			Name:                 name,
			ClusterDiscoveryType: &clusterv3.Cluster_Type{Type: clusterv3.Cluster_EDS},
			EdsClusterConfig:     &clusterv3.Cluster_EdsClusterConfig{EdsConfig: ads(), ServiceName: name},
			ConnectTimeout:       durationpb.New(10 * time.Second),
		}
		if isHTTP2Port(sp) {
			c.TypedExtensionProtocolOptions = map[string]*anypb.Any{httpProtocolOptionsKey: mustAny(&upstreamhttpv3.HttpProtocolOptions{
				UpstreamProtocolOptions: &upstreamhttpv3.HttpProtocolOptions_ExplicitHttpConfig_{ExplicitHttpConfig: &upstreamhttpv3.HttpProtocolOptions_ExplicitHttpConfig{
					ProtocolConfig: &upstreamhttpv3.HttpProtocolOptions_ExplicitHttpConfig_Http2ProtocolOptions{Http2ProtocolOptions: &corev3.Http2ProtocolOptions{}},
				}},
			})}
		}
		clusters = append(clusters, c)
		clas = append(clas, loadAssignment(name, s, sp))
	}
	sort.Slice(clusters, func(i, j int) bool { return clusters[i].Name < clusters[j].Name })
	sort.Slice(clas, func(i, j int) bool { return clas[i].ClusterName < clas[j].ClusterName })
	return clusters, clas
}

// EndpointPort returns the port an endpoint serves a service port on.
func EndpointPort(e Endpoint, sp ServicePort) uint32 {
	if p, ok := e.Ports[sp.Name]; ok && p != 0 {
		return p
	}
	if sp.TargetPort != 0 {
		return sp.TargetPort
	}
	return sp.Port
}

func loadAssignment(name string, s *Service, sp ServicePort) *endpointv3.ClusterLoadAssignment {
	cla := &endpointv3.ClusterLoadAssignment{ClusterName: name}
	eps := append([]Endpoint(nil), s.Endpoints...)
	sort.Slice(eps, func(i, j int) bool { return eps[i].IP < eps[j].IP })
	var lbs []*endpointv3.LbEndpoint
	for _, e := range eps {
		if !e.Ready {
			continue
		}
		port := EndpointPort(e, sp)
		dst := net.JoinHostPort(e.IP, strconv.FormatUint(uint64(port), 10))
		md := map[string]*structpb.Struct{
			MetadataTransportSocket: {Fields: map[string]*structpb.Value{"tunnel": structpb.NewStringValue("http")}},
			MetadataTunnel: {Fields: map[string]*structpb.Value{
				"address":     structpb.NewStringValue(net.JoinHostPort(e.IP, strconv.Itoa(HBONEPort))),
				"destination": structpb.NewStringValue(dst),
			}},
		}
		istio := &structpb.Struct{Fields: map[string]*structpb.Value{}}
		if e.Identity != "" {
			istio.Fields["identity"] = structpb.NewStringValue(e.Identity)
		}
		if e.Node != "" {
			istio.Fields["node"] = structpb.NewStringValue(e.Node)
		}
		md[MetadataIstio] = istio
		lbs = append(lbs, &endpointv3.LbEndpoint{
			HostIdentifier: &endpointv3.LbEndpoint_Endpoint{Endpoint: &endpointv3.Endpoint{
				Address: &corev3.Address{Address: &corev3.Address_SocketAddress{SocketAddress: &corev3.SocketAddress{
					Address: e.IP, PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: port},
				}}},
			}},
			HealthStatus: corev3.HealthStatus_HEALTHY,
			Metadata:     &corev3.Metadata{FilterMetadata: md},
		})
	}
	if len(lbs) > 0 {
		cla.Endpoints = []*endpointv3.LocalityLbEndpoints{{LbEndpoints: lbs}}
	}
	return cla
}

func sortConditions(cs []Condition) {
	key := func(c Condition) string {
		p := ""
		if c.ParentRef != nil {
			p = parentString(*c.ParentRef, c.Namespace)
		}
		return c.Kind + "\x00" + c.Namespace + "\x00" + c.Name + "\x00" + p + "\x00" + c.Type
	}
	sort.SliceStable(cs, func(i, j int) bool { return key(cs[i]) < key(cs[j]) })
}

// Type URLs of the resources in Output (as go-control-plane's resource/v3).
const (
	TypeListener = "type.googleapis.com/envoy.config.listener.v3.Listener"
	TypeRoute    = "type.googleapis.com/envoy.config.route.v3.RouteConfiguration"
	TypeCluster  = "type.googleapis.com/envoy.config.cluster.v3.Cluster"
	TypeEndpoint = "type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment"
)

// Resources returns the output by type URL and resource name, the shape an
// xDS cache takes.
func (o Output) Resources() map[string]map[string]proto.Message {
	res := map[string]map[string]proto.Message{TypeListener: {}, TypeRoute: {}, TypeCluster: {}, TypeEndpoint: {}}
	for _, l := range o.Listeners {
		res[TypeListener][l.Name] = l
	}
	for _, r := range o.Routes {
		res[TypeRoute][r.Name] = r
	}
	for _, c := range o.Clusters {
		res[TypeCluster][c.Name] = c
	}
	for _, e := range o.Endpoints {
		res[TypeEndpoint][e.ClusterName] = e
	}
	return res
}
