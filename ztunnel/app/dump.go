package app

import (
	"sort"
	"time"

	"github.com/ambient-mesh/ambient/pkg/identity"
	"github.com/ambient-mesh/ambient/ztunnel/proxy/conntrack"
	"github.com/ambient-mesh/ambient/ztunnel/state"
)

// The /config_dump sections, in the JSON shape ambientctl ztunnel-config
// reads (ctl/internal/dump). Pure conversions from the proxy's state.

type waypointRef struct {
	Namespace string `json:"namespace,omitempty"`
	Name      string `json:"name,omitempty"`
	Address   string `json:"address,omitempty"`
}

type workloadView struct {
	UID            string       `json:"uid"`
	Name           string       `json:"name"`
	Namespace      string       `json:"namespace"`
	WorkloadIPs    []string     `json:"workloadIps"`
	Node           string       `json:"node"`
	ServiceAccount string       `json:"serviceAccount"`
	Identity       string       `json:"identity"`
	Protocol       string       `json:"protocol"`
	Healthy        bool         `json:"healthy"`
	Waypoint       *waypointRef `json:"waypoint,omitempty"`
}

type endpointView struct {
	Workload string `json:"workload"`
	Address  string `json:"address,omitempty"`
	Status   string `json:"status"`
}

type serviceView struct {
	Name      string            `json:"name"`
	Namespace string            `json:"namespace"`
	Hostname  string            `json:"hostname"`
	VIPs      []string          `json:"vips"`
	Ports     map[uint16]uint16 `json:"ports"`
	Waypoint  *waypointRef      `json:"waypoint,omitempty"`
	Endpoints []endpointView    `json:"endpoints"`
}

type policyView struct {
	Name      string `json:"name"`
	Namespace string `json:"namespace"`
	Action    string `json:"action"`
	Scope     string `json:"scope"`
	Rules     int    `json:"rules"`
}

type certView struct {
	SerialNumber   string    `json:"serialNumber"`
	ValidFrom      time.Time `json:"validFrom"`
	ExpirationTime time.Time `json:"expirationTime"`
}

type certificateView struct {
	Identity  string     `json:"identity"`
	State     string     `json:"state"`
	CertChain []certView `json:"certChain"`
	Error     string     `json:"error,omitempty"`
}

type connectionView struct {
	Direction   string    `json:"direction"`
	Src         string    `json:"src"`
	Dst         string    `json:"dst"`
	Via         string    `json:"hboneAddr,omitempty"`
	SrcIdentity string    `json:"srcIdentity"`
	DstIdentity string    `json:"dstIdentity"`
	SrcWorkload string    `json:"srcWorkload,omitempty"`
	DstWorkload string    `json:"dstWorkload,omitempty"`
	Protocol    string    `json:"protocol"`
	Start       time.Time `json:"start"`
	BytesSent   int64     `json:"bytesSent"`
	BytesRecv   int64     `json:"bytesRecv"`
}

func gatewayRef(g *state.Gateway) *waypointRef {
	if g == nil {
		return nil
	}
	r := &waypointRef{}
	if g.Hostname != "" {
		r.Namespace, r.Name = g.Namespace, g.Hostname
	}
	if g.Addr.Addr.IsValid() {
		r.Address = g.Addr.Addr.String()
	}
	return r
}

func workloadsView(s *state.Snapshot) []workloadView {
	out := []workloadView{}
	for _, w := range s.Workloads() {
		ips := make([]string, 0, len(w.Addrs))
		for _, a := range w.Addrs {
			ips = append(ips, a.String())
		}
		proto := "TCP"
		if w.HBONE() {
			proto = "HBONE"
		}
		out = append(out, workloadView{
			UID: w.UID, Name: w.Name, Namespace: w.Namespace, WorkloadIPs: ips, Node: w.Node,
			ServiceAccount: w.Identity.ServiceAccount, Identity: w.Identity.String(), Protocol: proto,
			Healthy: w.Healthy, Waypoint: gatewayRef(w.Waypoint),
		})
	}
	return out
}

func servicesView(s *state.Snapshot) []serviceView {
	out := []serviceView{}
	for _, svc := range s.Services() {
		vips := make([]string, 0, len(svc.VIPs))
		for _, v := range svc.VIPs {
			vips = append(vips, v.Addr.String())
		}
		eps := []endpointView{}
		for _, ep := range s.EndpointsOf(svc) {
			st := "Healthy"
			if !ep.Workload.Healthy {
				st = "Unhealthy"
			}
			addr := ""
			if len(ep.Workload.Addrs) > 0 {
				addr = ep.Workload.Addrs[0].String()
			}
			eps = append(eps, endpointView{Workload: ep.Workload.UID, Address: addr, Status: st})
		}
		out = append(out, serviceView{Name: svc.Name, Namespace: svc.Namespace, Hostname: svc.Hostname,
			VIPs: vips, Ports: svc.Ports, Waypoint: gatewayRef(svc.Waypoint), Endpoints: eps})
	}
	return out
}

func policiesView(s *state.Snapshot) []policyView {
	out := []policyView{}
	for _, p := range s.Policies() {
		out = append(out, policyView{Name: p.GetName(), Namespace: p.GetNamespace(),
			Action: titleEnum(p.GetAction().String()), Scope: titleEnum(p.GetScope().String()), Rules: len(p.GetGroups())})
	}
	return out
}

// titleEnum turns ALLOW / WORKLOAD_SELECTOR into Allow / WorkloadSelector.
func titleEnum(s string) string {
	out := make([]byte, 0, len(s))
	upper := true
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c == '_' {
			upper = true
			continue
		}
		if upper {
			if c >= 'a' && c <= 'z' {
				c -= 'a' - 'A'
			}
			upper = false
		} else if c >= 'A' && c <= 'Z' {
			c += 'a' - 'A'
		}
		out = append(out, c)
	}
	return string(out)
}

func certificatesView(infos []identity.CertInfo) []certificateView {
	out := []certificateView{}
	for _, ci := range infos {
		v := certificateView{Identity: ci.Identity, State: titleEnum(ci.State), Error: ci.Error, CertChain: []certView{}}
		if ci.SerialNumber != "" {
			v.CertChain = append(v.CertChain, certView{SerialNumber: ci.SerialNumber, ValidFrom: ci.NotBefore, ExpirationTime: ci.NotAfter})
			for _, c := range ci.Intermediates {
				v.CertChain = append(v.CertChain, certView{SerialNumber: c.SerialNumber, ValidFrom: c.NotBefore, ExpirationTime: c.NotAfter})
			}
		}
		if ci.Error != "" && v.State != "Available" {
			v.State = "Unavailable: " + ci.Error
		}
		out = append(out, v)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Identity < out[j].Identity })
	return out
}

func connectionsView(conns []conntrack.Info) []connectionView {
	out := []connectionView{}
	for _, c := range conns {
		v := connectionView{Direction: c.Direction, Src: c.Src.String(), Dst: c.Dst.String(),
			SrcIdentity: c.SrcIdentity, DstIdentity: c.DstIdentity, SrcWorkload: c.SrcWorkload, DstWorkload: c.DstWorkload,
			Protocol: "TCP", Start: c.Start, BytesSent: c.Sent, BytesRecv: c.Received}
		if c.Via.IsValid() {
			v.Via, v.Protocol = c.Via.String(), "HBONE"
		}
		out = append(out, v)
	}
	return out
}
