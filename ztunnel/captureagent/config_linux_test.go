//go:build linux

package captureagent

import (
	"flag"
	"io"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/ambient-mesh/ambient/ztunnel/capture"
)

func TestConfigFlags(t *testing.T) {
	t.Setenv("NODE_NAME", "env-node")
	t.Setenv("NODE_IP", "10.1.1.1")
	var cfg Config
	fs := flag.NewFlagSet("t", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	cfg.RegisterFlags(fs)
	if err := fs.Parse([]string{"--node-ip", "10.0.0.7", "--bpffs", "/b", "--notrack=false", "--capture-resync", "5s"}); err != nil {
		t.Fatal(err)
	}
	want := Config{NodeName: "env-node", NodeIP: netip.MustParseAddr("10.0.0.7"), BPFFS: "/b", Resync: 5 * time.Second}
	if cfg != want {
		t.Errorf("Config = %+v, want %+v", cfg, want)
	}
	if got := cfg.PinDir(); got != "/b/capture" {
		t.Errorf("PinDir = %q", got)
	}
	var def Config
	fs = flag.NewFlagSet("t", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	def.RegisterFlags(fs)
	if err := fs.Parse(nil); err != nil {
		t.Fatal(err)
	}
	if !def.Notrack || def.NodeIP != netip.MustParseAddr("10.1.1.1") || def.PinDir() != capture.DefaultPinDir || def.Resync != DefaultResync {
		t.Errorf("defaults = %+v", def)
	}
	if err := fs.Parse([]string{"--node-ip", "nope"}); err == nil {
		t.Error("bad --node-ip accepted")
	}
}

type fakeStats capture.Stats

func (f fakeStats) Stats() (capture.Stats, error) { return capture.Stats(f), nil }

func TestStatsCollector(t *testing.T) {
	c := NewStatsCollector(fakeStats{NoListener: 3, Spoofed: 2, AssignedOutbound: 7, LookupAssigned: 1})
	want := `# HELP ztunnel_capture_packets_total Packets the capture program assigned to ztunnel or dropped (fail closed, spoofed, unparsed), by result.
# TYPE ztunnel_capture_packets_total counter
ztunnel_capture_packets_total{result="assigned_established"} 0
ztunnel_capture_packets_total{result="assigned_hbone"} 0
ztunnel_capture_packets_total{result="assigned_inbound_plaintext"} 0
ztunnel_capture_packets_total{result="assigned_lookup"} 1
ztunnel_capture_packets_total{result="assigned_outbound"} 7
ztunnel_capture_packets_total{result="dropped_assign_failed"} 0
ztunnel_capture_packets_total{result="dropped_no_listener"} 3
ztunnel_capture_packets_total{result="dropped_spoofed"} 2
ztunnel_capture_packets_total{result="dropped_unparsed"} 0
`
	if err := testutil.CollectAndCompare(c, strings.NewReader(want)); err != nil {
		t.Error(err)
	}
}
