package model

import (
	"cmp"
	"maps"
	"slices"
	"sort"
	"strings"

	"google.golang.org/protobuf/proto"
	"istio.io/istio/pkg/workloadapi"
	"istio.io/istio/pkg/workloadapi/security"
)

// xDS type URLs of the resources ztunnel consumes.
const (
	TypeAddress       = "type.googleapis.com/istio.workload.Address"
	TypeAuthorization = "type.googleapis.com/istio.security.Authorization"
)

// Snapshot is the whole mesh model for ztunnels at one point in time. It is
// immutable once built: readers may share it without locking.
type Snapshot struct {
	// Workloads by uid.
	Workloads map[string]*workloadapi.Workload
	// Services by "<ns>/<hostname>".
	Services map[string]*workloadapi.Service
	// Policies by "<ns>/<name>".
	Policies map[string]*security.Authorization
	// Conditions to write back to policy status, sorted.
	Conditions []Condition
	// Diagnostics about the input, sorted.
	Diagnostics []Diagnostic

	// idx are the indexes of the Build that made this Snapshot (read-only
	// once built), for WithPods.
	idx *builder
}

// Resources returns the xDS resources by type URL, then resource name.
func (s *Snapshot) Resources() map[string]map[string]proto.Message {
	addrs := make(map[string]proto.Message, len(s.Workloads)+len(s.Services))
	for k, w := range s.Workloads {
		addrs[k] = WorkloadAddress(w)
	}
	for k, svc := range s.Services {
		addrs[k] = &workloadapi.Address{Type: &workloadapi.Address_Service{Service: svc}}
	}
	auths := make(map[string]proto.Message, len(s.Policies))
	for k, p := range s.Policies {
		auths[k] = p
	}
	return map[string]map[string]proto.Message{TypeAddress: addrs, TypeAuthorization: auths}
}

// WorkloadAddress wraps a workload as the Address resource served for it.
func WorkloadAddress(w *workloadapi.Workload) *workloadapi.Address {
	return &workloadapi.Address{Type: &workloadapi.Address_Workload{Workload: w}}
}

// selectorPolicy is a WORKLOAD_SELECTOR policy awaiting workloads.
type selectorPolicy struct {
	key      string
	selector map[string]string
}

// builder holds the indexes of one Build.
type builder struct {
	cfg       Config
	nsLabels  map[string]map[string]string
	gateways  map[WaypointRef]*Gateway
	svcByNS   map[string][]*Service
	svcKey    map[*Service]string
	polByNS   map[string][]selectorPolicy
	paByNS    map[string][]*PeerAuthentication
	snap      *Snapshot
	diagnosed map[ObjectRef]bool
}

// Build computes the ztunnel model from in. It is a pure function: same
// input, same Snapshot; it never mutates in.
func Build(in Input, cfg Config) *Snapshot {
	cfg = cfg.WithDefaults()
	b := &builder{
		cfg:       cfg,
		nsLabels:  make(map[string]map[string]string, len(in.Namespaces)),
		gateways:  make(map[WaypointRef]*Gateway, len(in.Gateways)),
		svcByNS:   map[string][]*Service{},
		svcKey:    make(map[*Service]string, len(in.Services)),
		polByNS:   map[string][]selectorPolicy{},
		paByNS:    map[string][]*PeerAuthentication{},
		diagnosed: map[ObjectRef]bool{},
		snap: &Snapshot{
			Workloads: make(map[string]*workloadapi.Workload, len(in.Pods)),
			Services:  make(map[string]*workloadapi.Service, len(in.Services)),
			Policies:  make(map[string]*security.Authorization, len(in.AuthorizationPolicies)+1),
		},
	}
	for i := range in.Namespaces {
		b.nsLabels[in.Namespaces[i].Name] = in.Namespaces[i].Labels
	}
	for i := range in.Gateways {
		g := &in.Gateways[i]
		b.gateways[WaypointRef{Namespace: g.Namespace, Name: g.Name}] = g
	}
	for i := range in.Services {
		b.addService(&in.Services[i])
	}
	for i := range in.AuthorizationPolicies {
		b.addPolicy(in.AuthorizationPolicies[i])
	}
	for i := range in.PeerAuthentications {
		pa := &in.PeerAuthentications[i]
		b.paByNS[pa.Namespace] = append(b.paByNS[pa.Namespace], pa)
	}
	if len(in.PeerAuthentications) > 0 {
		p := StaticStrictPolicy(cfg.RootNamespace)
		b.snap.Policies[p.Namespace+"/"+p.Name] = p
		for _, pa := range in.PeerAuthentications {
			mesh, ns := namespaceLevels(b.paByNS, pa.Namespace, cfg.RootNamespace)
			if p := ConvertPeerAuthentication(&pa, mesh, ns, cfg.RootNamespace); p != nil {
				b.snap.Policies[p.Namespace+"/"+p.Name] = p
			}
		}
	}
	for i := range in.Pods {
		b.addPod(&in.Pods[i])
	}
	slices.SortFunc(b.snap.Conditions, func(x, y Condition) int { return cmpRef(x.Object, y.Object) })
	sortDiagnostics(b.snap.Diagnostics)
	b.snap.idx = b
	return b.snap
}

func sortDiagnostics(ds []Diagnostic) {
	slices.SortFunc(ds, func(x, y Diagnostic) int {
		if c := cmpRef(x.Object, y.Object); c != 0 {
			return c
		}
		return cmp.Compare(x.Reason, y.Reason)
	})
}

// WithPods returns the Snapshot that Build would return for s's input with
// the pods named in changed ("<namespace>/<name>") replaced by pods (the
// current state of those still present; the others were deleted). Only
// those pods' workloads are recomputed: a workload depends on its own pod,
// its namespace, Services, policies and waypoints, never on another pod,
// and nothing else depends on pods. s is left as it was; the result shares
// its unchanged parts. One difference from a full Build: a namespace-level
// diagnostic raised only by the changed pods is kept until the next Build.
// It returns nil if s was not made by Build or WithPods.
func (s *Snapshot) WithPods(pods []Pod, changed map[string]bool) *Snapshot {
	if s.idx == nil {
		return nil
	}
	next := &Snapshot{
		Workloads: maps.Clone(s.Workloads), Services: s.Services, Policies: s.Policies,
		Conditions: s.Conditions, Diagnostics: make([]Diagnostic, 0, len(s.Diagnostics)),
	}
	b := *s.idx
	b.snap, b.diagnosed = next, maps.Clone(s.idx.diagnosed)
	for _, d := range s.Diagnostics {
		if d.Object.Kind == "Pod" && changed[d.Object.Namespace+"/"+d.Object.Name] {
			delete(b.diagnosed, d.Object)
			continue
		}
		next.Diagnostics = append(next.Diagnostics, d)
	}
	for key := range changed {
		ns, name, _ := strings.Cut(key, "/")
		delete(next.Workloads, WorkloadUID(b.cfg.ClusterID, ns, name))
	}
	for i := range pods {
		if changed[pods[i].Namespace+"/"+pods[i].Name] {
			b.addPod(&pods[i])
		}
	}
	sortDiagnostics(next.Diagnostics)
	next.idx = &b
	return next
}

func cmpRef(x, y ObjectRef) int {
	return cmp.Or(cmp.Compare(x.Kind, y.Kind), cmp.Compare(x.Namespace, y.Namespace), cmp.Compare(x.Name, y.Name))
}

func (b *builder) diagnose(ref ObjectRef, reason, msg string) {
	if reason == "" || b.diagnosed[ref] {
		return
	}
	b.diagnosed[ref] = true
	b.snap.Diagnostics = append(b.snap.Diagnostics, Diagnostic{Object: ref, Reason: reason, Message: msg})
}

// waypointFor resolves the waypoint of a Service ("service") or Pod
// ("workload"). Problems with a binding set on the object itself are
// diagnosed against it; a namespace binding that does not fit this kind of
// object is normal (waypoint-for) and only a missing Gateway is diagnosed.
func (b *builder) waypointFor(kind string, ref ObjectRef, labels map[string]string) *workloadapi.GatewayAddress {
	if labels[LabelManagedGateway] == ManagedGatewayMeshController || labels[LabelTunnel] == "http" {
		return nil // waypoints have no waypoint
	}
	nsLabels := b.nsLabels[ref.Namespace]
	wp, ok := WaypointBinding(labels, nsLabels, ref.Namespace)
	if !ok {
		return nil
	}
	addr, reason, msg := resolveWaypoint(wp, b.gateways, kind, b.cfg.DomainSuffix)
	if addr != nil {
		return addr
	}
	if _, own := waypointLabel(labels, ref.Namespace); own {
		b.diagnose(ref, reason, msg)
	} else if reason != ReasonWaypointWrongType {
		b.diagnose(ObjectRef{Kind: "Namespace", Name: ref.Namespace}, reason, msg)
	}
	return nil
}

func (b *builder) addService(s *Service) {
	if s.ExternalName {
		return
	}
	host := Hostname(s.Name, s.Namespace, b.cfg.DomainSuffix)
	key := s.Namespace + "/" + host
	b.svcByNS[s.Namespace] = append(b.svcByNS[s.Namespace], s)
	b.svcKey[s] = key
	out := &workloadapi.Service{
		Name:          s.Name,
		Namespace:     s.Namespace,
		Hostname:      host,
		Ports:         make([]*workloadapi.Port, 0, len(s.Ports)),
		LoadBalancing: LoadBalancing(s),
		IpFamilies:    ipFamilies(s.IPFamilies),
	}
	if !s.Headless {
		for _, ip := range s.ClusterIPs {
			out.Addresses = append(out.Addresses, &workloadapi.NetworkAddress{Address: ip.AsSlice()})
		}
	}
	for _, sp := range s.Ports {
		out.Ports = append(out.Ports, &workloadapi.Port{
			ServicePort: sp.Port,
			TargetPort:  servicePortTarget(sp),
			AppProtocol: AppProtocol(sp),
		})
	}
	out.Waypoint = b.waypointFor(WaypointForService, ObjectRef{Kind: "Service", Namespace: s.Namespace, Name: s.Name}, s.Labels)
	if out.Waypoint != nil {
		v, ok := s.Labels[LabelIngressUseWaypoint]
		if !ok {
			v = b.nsLabels[s.Namespace][LabelIngressUseWaypoint]
		}
		out.IngressUseWaypoint = v == "true"
	}
	b.snap.Services[key] = out
}

func (b *builder) addPolicy(p AuthorizationPolicy) {
	r := ConvertAuthorizationPolicy(p, b.cfg.RootNamespace)
	if r.Condition != nil {
		b.snap.Conditions = append(b.snap.Conditions, *r.Condition)
	}
	if r.Diagnostic != nil {
		b.snap.Diagnostics = append(b.snap.Diagnostics, *r.Diagnostic)
	}
	if r.Authorization == nil {
		return
	}
	key := p.Namespace + "/" + p.Name
	b.snap.Policies[key] = r.Authorization
	if r.Authorization.Scope == security.Scope_WORKLOAD_SELECTOR {
		b.polByNS[p.Namespace] = append(b.polByNS[p.Namespace], selectorPolicy{key: key, selector: r.Selector})
	}
}

func (b *builder) addPod(p *Pod) {
	if len(p.IPs) == 0 || p.Phase == "Succeeded" || p.Phase == "Failed" {
		return
	}
	uid := WorkloadUID(b.cfg.ClusterID, p.Namespace, p.Name)
	nsLabels := b.nsLabels[p.Namespace]
	w := &workloadapi.Workload{
		Uid:            uid,
		Name:           p.Name,
		Namespace:      p.Namespace,
		Addresses:      make([][]byte, 0, len(p.IPs)),
		TrustDomain:    b.cfg.TrustDomain,
		ServiceAccount: p.ServiceAccount,
		Node:           p.NodeName,
		ClusterId:      b.cfg.ClusterID,
	}
	for _, ip := range p.IPs {
		w.Addresses = append(w.Addresses, ip.AsSlice())
	}
	w.TunnelProtocol, w.NativeTunnel = TunnelProtocol(nsLabels, p)
	if p.HostNetwork {
		w.NetworkMode = workloadapi.NetworkMode_HOST_NETWORK
	}
	if !p.Ready {
		w.Status = workloadapi.WorkloadStatus_UNHEALTHY
	}
	w.WorkloadName, w.WorkloadType = WorkloadNameAndType(p)
	w.CanonicalName, w.CanonicalRevision = CanonicalService(p.Labels, w.WorkloadName)
	w.Waypoint = b.waypointFor(WaypointForWorkload, ObjectRef{Kind: "Pod", Namespace: p.Namespace, Name: p.Name}, p.Labels)

	for _, s := range b.svcByNS[p.Namespace] {
		if len(s.Selector) == 0 || !selects(s.Selector, p.Labels) {
			continue
		}
		if w.Services == nil {
			w.Services = map[string]*workloadapi.PortList{}
		}
		w.Services[b.svcKey[s]] = workloadPorts(s, p)
	}

	var pols []string
	for _, sp := range b.polByNS[p.Namespace] {
		if selects(sp.selector, p.Labels) {
			pols = append(pols, sp.key)
		}
	}
	if p.Namespace != b.cfg.RootNamespace {
		for _, sp := range b.polByNS[b.cfg.RootNamespace] {
			if selects(sp.selector, p.Labels) {
				pols = append(pols, sp.key)
			}
		}
	}
	sort.Strings(pols)
	if len(b.paByNS) > 0 {
		pols = append(pols, levelsFor(b.paByNS, p.Namespace, b.cfg.RootNamespace, p.Labels).keys(b.cfg.RootNamespace)...)
	}
	w.AuthorizationPolicies = pols
	b.snap.Workloads[uid] = w
}
