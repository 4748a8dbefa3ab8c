package conntrack

import (
	"errors"
	"net"
	"net/netip"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/ambient-mesh/ambient/ztunnel/accesslog"
	"github.com/ambient-mesh/ambient/ztunnel/proxy/relay"
)

type closer struct{ closed int }

func (c *closer) Close() error { c.closed++; return nil }

func TestTracker(t *testing.T) {
	core, logs := observer.New(zap.DebugLevel)
	tr := New(zap.New(core))
	now := time.Unix(1000, 0)
	tr.now = func() time.Time { return now }

	cl := &closer{}
	old := tr.Begin(Info{Direction: accesslog.Outbound, Src: netip.MustParseAddrPort("10.0.0.1:1"), Start: now.Add(-2 * time.Second)}, nil, cl)
	young := tr.Begin(Info{Direction: accesslog.Inbound, Start: now.Add(-time.Second)}, nil)
	old.Counters().AToB.Add(10)
	old.Counters().BToA.Add(20)

	snap := tr.Snapshot()
	if len(snap) != 2 || snap[0].Direction != accesslog.Outbound || snap[0].Received != 10 || snap[0].Sent != 20 {
		t.Fatalf("snapshot = %+v", snap)
	}
	tr.CloseAll()
	if cl.closed != 1 {
		t.Fatalf("closer closed %d times", cl.closed)
	}

	old.End(relay.Result{AToB: 10, BToA: 20, Err: net.ErrClosed})
	young.End(relay.Result{Err: errors.New("reset")})
	tr.Refused(Info{Direction: accesslog.Outbound, Start: now}, "denied", errors.New("401"))
	if tr.Len() != 0 {
		t.Fatalf("%d connections left", tr.Len())
	}
	got := logs.All()
	if len(got) != 3 {
		t.Fatalf("%d log lines", len(got))
	}
	first := got[0].ContextMap()
	if _, hasErr := first["error"]; hasErr || first["bytes_recv"] != int64(10) || first["duration"] != 2*time.Second {
		t.Errorf("shutdown-closed connection logged as %v", first)
	}
	if got[1].ContextMap()["error"] != "reset" || got[2].ContextMap()["reason"] != "denied" {
		t.Errorf("lines = %v / %v", got[1].ContextMap(), got[2].ContextMap())
	}
}
