package dump

import (
	"encoding/json"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/ambient-mesh/ambient/ctl/internal/printer"
)

// Connection is one xDS client of an istiod-lite replica, as served by
// GET :15014/debug/connections (a JSON array of these):
//
//	[{"nodeId": "...", "podName": "ztunnel-abc", "podNamespace": "istio-system",
//	  "connectedSince": "2026-11-26T01:00:00Z",
//	  "types": {"type.googleapis.com/istio.workload.Address":
//	    {"sentVersion": "7", "ackedVersion": "7", "nacks": 0, "lastError": "",
//	     "lastPush": "2026-11-26T01:02:03Z"}}}]
//
// podNamespace is optional (a podName is then matched in any namespace).
type Connection struct {
	NodeID         string               `json:"nodeId"`
	PodName        string               `json:"podName"`
	PodNamespace   string               `json:"podNamespace,omitempty"`
	ConnectedSince Time                 `json:"connectedSince"`
	Types          map[string]TypeState `json:"types"`
}

// TypeState is the state of one resource type on one connection.
type TypeState struct {
	SentVersion  string `json:"sentVersion"`
	AckedVersion string `json:"ackedVersion"`
	Nacks        int    `json:"nacks"`
	LastError    string `json:"lastError,omitempty"`
	LastPush     Time   `json:"lastPush"`
}

// ParseConnections decodes istiod-lite's /debug/connections.
func ParseConnections(b []byte) ([]Connection, error) {
	var cs []Connection
	if err := json.Unmarshal(b, &cs); err != nil {
		return nil, fmt.Errorf("istiod-lite /debug/connections has an unexpected shape: %w", err)
	}
	return cs, nil
}

// Short names of the type URLs, in column order.
var typeColumns = []struct{ url, name string }{
	{"type.googleapis.com/istio.workload.Address", "ADDRESS"},
	{"type.googleapis.com/istio.security.Authorization", "AUTHZ"},
	{"type.googleapis.com/envoy.config.listener.v3.Listener", "LDS"},
	{"type.googleapis.com/envoy.config.route.v3.RouteConfiguration", "RDS"},
	{"type.googleapis.com/envoy.config.cluster.v3.Cluster", "CDS"},
	{"type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment", "EDS"},
}

// TypeState returns SYNCED, STALE (sent but not acknowledged yet) or NACK.
func (s TypeState) String() string {
	switch {
	case s.Nacks > 0 && s.AckedVersion != s.SentVersion:
		return "NACK"
	case s.AckedVersion != s.SentVersion:
		return "STALE"
	}
	return "SYNCED"
}

// Proxy is a ztunnel or waypoint pod expected to be connected.
type Proxy struct {
	Namespace string `json:"namespace"`
	Name      string `json:"name"`
}

// StatusEntry is one proxy with the connection that matched it (nil when none).
type StatusEntry struct {
	Proxy      Proxy       `json:"proxy"`
	Istiod     string      `json:"istiod,omitempty"`
	Connection *Connection `json:"connection,omitempty"`
}

// MatchProxies pairs each proxy with its connection; byIstiod maps an
// istiod-lite pod name to its /debug/connections. Connections of pods that
// are not in proxies (e.g. a client outside the cluster) are left out.
func MatchProxies(proxies []Proxy, byIstiod map[string][]Connection) []StatusEntry {
	istiods := make([]string, 0, len(byIstiod))
	for n := range byIstiod {
		istiods = append(istiods, n)
	}
	sort.Strings(istiods)
	out := make([]StatusEntry, 0, len(proxies))
	for _, p := range proxies {
		e := StatusEntry{Proxy: p}
	found:
		for _, is := range istiods {
			for i, c := range byIstiod[is] {
				if c.PodName == p.Name && (c.PodNamespace == "" || c.PodNamespace == p.Namespace) {
					e.Istiod, e.Connection = is, &byIstiod[is][i]
					break found
				}
			}
		}
		out = append(out, e)
	}
	sort.SliceStable(out, func(i, j int) bool {
		a, b := out[i].Proxy, out[j].Proxy
		if a.Namespace != b.Namespace {
			return a.Namespace < b.Namespace
		}
		return a.Name < b.Name
	})
	return out
}

// ProxyStatusRows: NAME ISTIOD <one column per type seen> LAST-PUSH. A type
// the proxy did not subscribe to is "-"; a proxy without a connection is
// NOT CONNECTED.
func ProxyStatusRows(es []StatusEntry) printer.Rows {
	seen := map[string]bool{}
	for _, e := range es {
		if e.Connection != nil {
			for u := range e.Connection.Types {
				seen[u] = true
			}
		}
	}
	type col struct{ url, name string }
	var cols []col
	for _, tc := range typeColumns {
		if seen[tc.url] {
			cols = append(cols, col(tc))
			delete(seen, tc.url)
		}
	}
	var extra []string
	for u := range seen {
		extra = append(extra, u)
	}
	sort.Strings(extra)
	for _, u := range extra {
		cols = append(cols, col{u, strings.ToUpper(u[strings.LastIndex(u, ".")+1:])})
	}

	r := printer.Rows{Header: []string{"NAME", "ISTIOD"}}
	for _, c := range cols {
		r.Header = append(r.Header, c.name)
	}
	r.Header = append(r.Header, "LAST-PUSH")
	for _, e := range es {
		row := []string{e.Proxy.Name + "." + e.Proxy.Namespace}
		if e.Connection == nil {
			row = append(row, "NOT CONNECTED")
			for range cols {
				row = append(row, "")
			}
			r.Rows = append(r.Rows, append(row, ""))
			continue
		}
		row = append(row, e.Istiod)
		var last time.Time
		for _, c := range cols {
			s, ok := e.Connection.Types[c.url]
			if !ok {
				row = append(row, "")
				continue
			}
			row = append(row, s.String())
			if s.LastPush.After(last) {
				last = s.LastPush.Time
			}
		}
		r.Rows = append(r.Rows, append(row, stamp(last)))
	}
	return r
}
