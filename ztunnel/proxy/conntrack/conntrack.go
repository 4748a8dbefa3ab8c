package conntrack

import (
	"io"
	"net/netip"
	"slices"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/ambient-mesh/ambient/pkg/spiffe"
	"github.com/ambient-mesh/ambient/ztunnel/accesslog"
	"github.com/ambient-mesh/ambient/ztunnel/metrics"
	"github.com/ambient-mesh/ambient/ztunnel/proxy/relay"
	"github.com/ambient-mesh/ambient/ztunnel/state"
)

// Info describes one connection; Sent and Received are filled in by
// Tracker.Snapshot.
type Info struct {
	Direction   string         `json:"direction"`
	Src         netip.AddrPort `json:"src"`
	Dst         netip.AddrPort `json:"dst"`
	Via         netip.AddrPort `json:"hbone_addr,omitzero"`
	SrcWorkload string         `json:"src_workload,omitempty"`
	DstWorkload string         `json:"dst_workload,omitempty"`
	SrcIdentity string         `json:"src_identity,omitempty"`
	DstIdentity string         `json:"dst_identity,omitempty"`
	Service     string         `json:"service,omitempty"`
	Start       time.Time      `json:"start"`
	// Sent is bytes sent to the client, Received bytes from it.
	Sent     int64 `json:"bytes_sent"`
	Received int64 `json:"bytes_recv"`
}

// Tracker holds the live connections. It is safe for concurrent use.
type Tracker struct {
	log *zap.Logger
	now func() time.Time

	mu    sync.Mutex
	conns map[*Conn]struct{}
}

// New returns a Tracker writing access log lines to log.
func New(log *zap.Logger) *Tracker {
	return &Tracker{log: log, now: time.Now, conns: map[*Conn]struct{}{}}
}

// Conn is a tracked connection.
type Conn struct {
	t       *Tracker
	info    Info
	rec     *metrics.ConnRecorder
	closers []io.Closer
	// Counters: AToB is client→upstream (Received), BToA upstream→client
	// (Sent), as relay.Relay(client, upstream, ...) fills them.
	counters relay.Counters
}

// Begin registers a connection about to be relayed; closers are closed
// by CloseAll. rec may be nil.
func (t *Tracker) Begin(info Info, rec *metrics.ConnRecorder, closers ...io.Closer) *Conn {
	c := &Conn{t: t, info: info, rec: rec, closers: closers}
	t.mu.Lock()
	t.conns[c] = struct{}{}
	t.mu.Unlock()
	return c
}

// Counters are the byte counters to pass to relay.Relay(client, upstream, …).
func (c *Conn) Counters() *relay.Counters { return &c.counters }

// End unregisters c, closes its metrics and writes its access log line.
// A locally closed connection (shutdown) is not reported as an error.
func (c *Conn) End(res relay.Result) {
	c.t.mu.Lock()
	delete(c.t.conns, c)
	c.t.mu.Unlock()
	if c.rec != nil {
		c.rec.Received(res.AToB)
		c.rec.Sent(res.BToA)
		c.rec.Close()
	}
	e := entry(c.info, c.t.now())
	e.Received, e.Sent = res.AToB, res.BToA
	if res.Err != nil && !relay.IsClosed(res.Err) {
		e.Err = res.Err
	}
	accesslog.Log(c.t.log, e)
}

// Refused writes the access log line of a connection that was never
// relayed: denied, unroutable or whose upstream could not be reached.
func (t *Tracker) Refused(info Info, reason string, err error) {
	e := entry(info, t.now())
	e.Reason, e.Err = reason, err
	accesslog.Log(t.log, e)
}

func entry(i Info, now time.Time) accesslog.Entry {
	return accesslog.Entry{
		Direction: i.Direction, Src: i.Src, Dst: i.Dst, Via: i.Via,
		SrcWorkload: i.SrcWorkload, DstWorkload: i.DstWorkload,
		SrcIdentity: i.SrcIdentity, DstIdentity: i.DstIdentity,
		Service: i.Service, Duration: now.Sub(i.Start),
	}
}

// Snapshot returns the live connections, oldest first, with their byte
// counts so far.
func (t *Tracker) Snapshot() []Info {
	t.mu.Lock()
	out := make([]Info, 0, len(t.conns))
	for c := range t.conns {
		i := c.info
		i.Received = c.counters.AToB.Load()
		i.Sent = c.counters.BToA.Load()
		out = append(out, i)
	}
	t.mu.Unlock()
	slices.SortFunc(out, func(a, b Info) int { return a.Start.Compare(b.Start) })
	return out
}

// Len is the number of live connections.
func (t *Tracker) Len() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.conns)
}

// CloseAll closes every live connection; their relays end and report.
func (t *Tracker) CloseAll() {
	t.mu.Lock()
	var cl []io.Closer
	for c := range t.conns {
		cl = append(cl, c.closers...)
	}
	t.mu.Unlock()
	for _, c := range cl {
		_ = c.Close()
	}
}

// Identity formats id for logs and metrics, "" for the zero identity.
func Identity(id spiffe.Identity) string {
	if id.IsZero() {
		return ""
	}
	return id.String()
}

// Name is w's name, "" for nil.
func Name(w *state.Workload) string {
	if w == nil {
		return ""
	}
	return w.Name
}

// Peer returns the metric labels of one side: w (nil when unknown) and the
// identity it presented or is expected to present.
func Peer(w *state.Workload, id spiffe.Identity) metrics.Peer {
	p := metrics.Peer{Principal: Identity(id)}
	if w == nil {
		return p
	}
	p.Workload = w.Proto.GetWorkloadName()
	if p.Workload == "" {
		p.Workload = w.Name
	}
	p.Namespace = w.Namespace
	p.CanonicalService = w.Proto.GetCanonicalName()
	p.CanonicalRevision = w.Proto.GetCanonicalRevision()
	p.Cluster = w.Proto.GetClusterId()
	if p.Principal == "" {
		p.Principal = Identity(w.Identity)
	}
	return p
}

// Service fills the destination service labels of m from svc (nil: none).
func Service(m *metrics.Conn, svc *state.Service) {
	if svc == nil {
		return
	}
	m.ServiceHost, m.ServiceNamespace, m.ServiceName = svc.Hostname, svc.Namespace, svc.Name
}
