package accesslog

import (
	"errors"
	"net/netip"
	"reflect"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"
)

func TestFields(t *testing.T) {
	src := netip.MustParseAddrPort("10.0.0.1:40000")
	dst := netip.MustParseAddrPort("10.0.0.2:8080")
	via := netip.MustParseAddrPort("10.0.0.2:15008")
	tests := []struct {
		name string
		e    Entry
		want map[string]any
	}{
		{
			name: "full outbound",
			e: Entry{Direction: Outbound, Src: src, Dst: dst, Via: via, SrcWorkload: "a", DstWorkload: "b",
				SrcIdentity: "spiffe://td/ns/n/sa/a", DstIdentity: "spiffe://td/ns/n/sa/b", Service: "svc.n",
				Sent: 5, Received: 7, Duration: time.Second, Reason: "r"},
			want: map[string]any{"direction": "outbound", "src.addr": src.String(), "src.workload": "a",
				"src.identity": "spiffe://td/ns/n/sa/a", "dst.addr": dst.String(), "dst.hbone_addr": via.String(),
				"dst.service": "svc.n", "dst.workload": "b", "dst.identity": "spiffe://td/ns/n/sa/b",
				"bytes_sent": int64(5), "bytes_recv": int64(7), "duration": time.Second, "reason": "r"},
		},
		{
			name: "plaintext refused, empty fields left out",
			e:    Entry{Direction: InboundPlaintext, Src: src, Dst: dst, Err: errors.New("boom")},
			want: map[string]any{"direction": "inbound_plaintext", "src.addr": src.String(), "dst.addr": dst.String(),
				"bytes_sent": int64(0), "bytes_recv": int64(0), "duration": time.Duration(0), "error": "boom"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			enc := zapcore.NewMapObjectEncoder()
			for _, f := range Fields(tt.e) {
				f.AddTo(enc)
			}
			if !reflect.DeepEqual(enc.Fields, tt.want) {
				t.Errorf("fields = %v\nwant     %v", enc.Fields, tt.want)
			}
		})
	}
}

func TestLogLevel(t *testing.T) {
	core, logs := observer.New(zap.DebugLevel)
	l := zap.New(core)
	Log(l, Entry{Direction: Inbound})
	Log(l, Entry{Direction: Inbound, Err: errors.New("x")})
	got := logs.All()
	if len(got) != 2 || got[0].Level != zap.InfoLevel || got[1].Level != zap.WarnLevel || got[0].Message != Message {
		t.Fatalf("entries = %+v", got)
	}
}
