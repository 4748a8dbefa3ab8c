package dump

import (
	"encoding/json"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/ambient-mesh/ambient/ctl/internal/printer"
)

// Sections of ztunnel's /config_dump, in the order ambientctl lists them.
var Sections = []string{"workloads", "services", "policies", "certificates", "connections"}

// ConfigDump is ztunnel's /config_dump with each section kept raw.
type ConfigDump map[string]json.RawMessage

// ParseConfigDump decodes the top-level object of a /config_dump response.
func ParseConfigDump(b []byte) (ConfigDump, error) {
	var d ConfigDump
	if err := json.Unmarshal(b, &d); err != nil {
		return nil, fmt.Errorf("ztunnel /config_dump is not a JSON object: %w", err)
	}
	return d, nil
}

// Section returns the raw section; an absent section is an empty array.
func (d ConfigDump) Section(name string) json.RawMessage {
	if s, ok := d[name]; ok && len(s) > 0 && string(s) != "null" {
		return s
	}
	return json.RawMessage("[]")
}

// WaypointRef names the waypoint a workload or service uses.
type WaypointRef struct {
	Namespace string `json:"namespace"`
	Name      string `json:"name"`
	Address   string `json:"address"`
}

func (w *WaypointRef) String() string {
	switch {
	case w == nil:
		return "None"
	case w.Name != "":
		return w.Name
	case w.Address != "":
		return w.Address
	}
	return "None"
}

// Workload is one entry of the "workloads" section.
type Workload struct {
	UID            string       `json:"uid"`
	Name           string       `json:"name"`
	Namespace      string       `json:"namespace"`
	WorkloadIPs    []string     `json:"workloadIps"`
	Node           string       `json:"node"`
	ServiceAccount string       `json:"serviceAccount"`
	Protocol       string       `json:"protocol"` // HBONE or TCP
	Waypoint       *WaypointRef `json:"waypoint"`
}

// Service is one entry of the "services" section. Endpoints is an object
// keyed by workload UID or an array; an endpoint is healthy unless its
// "status" says otherwise.
type Service struct {
	Name      string          `json:"name"`
	Namespace string          `json:"namespace"`
	Hostname  string          `json:"hostname"`
	VIPs      []string        `json:"vips"`
	Waypoint  *WaypointRef    `json:"waypoint"`
	Endpoints json.RawMessage `json:"endpoints"`
}

// Policy is one entry of the "policies" section.
type Policy struct {
	Name      string `json:"name"`
	Namespace string `json:"namespace"`
	Action    string `json:"action"` // Allow, Deny
	Scope     string `json:"scope"`  // Global, Namespace, WorkloadSelector
}

// Cert is one certificate of a chain.
type Cert struct {
	SerialNumber   string `json:"serialNumber"`
	ValidFrom      Time   `json:"validFrom"`
	ExpirationTime Time   `json:"expirationTime"`
}

// Certificate is one entry of the "certificates" section: the certificate
// ztunnel holds for one workload identity.
type Certificate struct {
	Identity  string `json:"identity"`
	State     string `json:"state"` // Available, Initializing, Unavailable: <why>
	CertChain []Cert `json:"certChain"`
	RootCerts []Cert `json:"rootCerts"`
}

// ConnectionInfo is one entry of the "connections" section.
type ConnectionInfo struct {
	Direction   string `json:"direction"` // inbound, outbound
	Src         string `json:"src"`
	Dst         string `json:"dst"`
	SrcIdentity string `json:"srcIdentity"`
	DstIdentity string `json:"dstIdentity"`
	Protocol    string `json:"protocol"`
}

func decode[T any](raw json.RawMessage, section string) ([]T, error) {
	var v []T
	if err := json.Unmarshal(raw, &v); err != nil {
		return nil, fmt.Errorf("ztunnel /config_dump section %q has an unexpected shape: %w", section, err)
	}
	return v, nil
}

// Table turns a section into rows; now decides whether certificates are valid.
func Table(section string, raw json.RawMessage, now time.Time) (printer.Rows, error) {
	switch section {
	case "workloads":
		ws, err := decode[Workload](raw, section)
		return WorkloadRows(ws), err
	case "services":
		ss, err := decode[Service](raw, section)
		return ServiceRows(ss), err
	case "policies":
		ps, err := decode[Policy](raw, section)
		return PolicyRows(ps), err
	case "certificates":
		cs, err := decode[Certificate](raw, section)
		return CertificateRows(cs, now), err
	case "connections":
		cs, err := decode[ConnectionInfo](raw, section)
		return ConnectionRows(cs), err
	}
	return printer.Rows{}, fmt.Errorf("unknown config_dump section %q: use one of %s", section, strings.Join(Sections, ", "))
}

// WorkloadRows: NAMESPACE POD-NAME ADDRESS NODE WAYPOINT PROTOCOL, sorted.
func WorkloadRows(ws []Workload) printer.Rows {
	sort.SliceStable(ws, func(i, j int) bool {
		if ws[i].Namespace != ws[j].Namespace {
			return ws[i].Namespace < ws[j].Namespace
		}
		return ws[i].Name < ws[j].Name
	})
	r := printer.Rows{Header: []string{"NAMESPACE", "POD-NAME", "ADDRESS", "NODE", "WAYPOINT", "PROTOCOL"}}
	for _, w := range ws {
		r.Rows = append(r.Rows, []string{w.Namespace, w.Name, strings.Join(w.WorkloadIPs, ","), w.Node, w.Waypoint.String(), w.Protocol})
	}
	return r
}

// ServiceRows: NAMESPACE SERVICE-NAME SERVICE-VIP WAYPOINT ENDPOINTS (healthy/total).
func ServiceRows(ss []Service) printer.Rows {
	sort.SliceStable(ss, func(i, j int) bool {
		if ss[i].Namespace != ss[j].Namespace {
			return ss[i].Namespace < ss[j].Namespace
		}
		return ss[i].Name < ss[j].Name
	})
	r := printer.Rows{Header: []string{"NAMESPACE", "SERVICE-NAME", "SERVICE-VIP", "WAYPOINT", "ENDPOINTS"}}
	for _, s := range ss {
		healthy, total := countEndpoints(s.Endpoints)
		vips := make([]string, len(s.VIPs))
		for i, v := range s.VIPs {
			// Istio writes VIPs as "<network>/<ip>"; show the address.
			vips[i] = v[strings.LastIndex(v, "/")+1:]
		}
		r.Rows = append(r.Rows, []string{s.Namespace, s.Name, strings.Join(vips, ","), s.Waypoint.String(), fmt.Sprintf("%d/%d", healthy, total)})
	}
	return r
}

func countEndpoints(raw json.RawMessage) (healthy, total int) {
	type ep struct {
		Status string `json:"status"`
	}
	var eps []ep
	var byUID map[string]ep
	if json.Unmarshal(raw, &byUID) == nil {
		for _, e := range byUID {
			eps = append(eps, e)
		}
	} else {
		_ = json.Unmarshal(raw, &eps) // anything else counts as no endpoints
	}
	for _, e := range eps {
		total++
		if e.Status == "" || strings.EqualFold(e.Status, "healthy") {
			healthy++
		}
	}
	return healthy, total
}

// PolicyRows: NAMESPACE POLICY-NAME ACTION SCOPE.
func PolicyRows(ps []Policy) printer.Rows {
	sort.SliceStable(ps, func(i, j int) bool {
		if ps[i].Namespace != ps[j].Namespace {
			return ps[i].Namespace < ps[j].Namespace
		}
		return ps[i].Name < ps[j].Name
	})
	r := printer.Rows{Header: []string{"NAMESPACE", "POLICY-NAME", "ACTION", "SCOPE"}}
	for _, p := range ps {
		r.Rows = append(r.Rows, []string{p.Namespace, p.Name, p.Action, p.Scope})
	}
	return r
}

// CertificateRows: CERTIFICATE-NAME TYPE STATUS VALID-CERT SERIAL-NUMBER FROM TO,
// one row per certificate of each chain (Leaf, Intermediate…, Root).
func CertificateRows(cs []Certificate, now time.Time) printer.Rows {
	sort.SliceStable(cs, func(i, j int) bool { return cs[i].Identity < cs[j].Identity })
	r := printer.Rows{Header: []string{"CERTIFICATE-NAME", "TYPE", "STATUS", "VALID-CERT", "SERIAL-NUMBER", "FROM", "TO"}}
	row := func(c Certificate, typ string, x Cert) {
		valid := !x.ValidFrom.IsZero() && !now.Before(x.ValidFrom.Time) && now.Before(x.ExpirationTime.Time)
		r.Rows = append(r.Rows, []string{c.Identity, typ, c.State, strconv.FormatBool(valid), x.SerialNumber, stamp(x.ValidFrom.Time), stamp(x.ExpirationTime.Time)})
	}
	for _, c := range cs {
		if len(c.CertChain) == 0 && len(c.RootCerts) == 0 {
			r.Rows = append(r.Rows, []string{c.Identity, "Leaf", c.State, "false", "", "", ""})
		}
		for i, x := range c.CertChain {
			typ := "Intermediate"
			if i == 0 {
				typ = "Leaf"
			}
			row(c, typ, x)
		}
		for _, x := range c.RootCerts {
			row(c, "Root", x)
		}
	}
	return r
}

func stamp(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.UTC().Format(time.RFC3339)
}

// ConnectionRows: DIRECTION SOURCE DESTINATION SRC-IDENTITY DST-IDENTITY PROTOCOL.
func ConnectionRows(cs []ConnectionInfo) printer.Rows {
	r := printer.Rows{Header: []string{"DIRECTION", "SOURCE", "DESTINATION", "SRC-IDENTITY", "DST-IDENTITY", "PROTOCOL"}}
	for _, c := range cs {
		r.Rows = append(r.Rows, []string{c.Direction, c.Src, c.Dst, c.SrcIdentity, c.DstIdentity, c.Protocol})
	}
	return r
}
