package framework

import (
	"encoding/binary"
	"net/netip"
	"testing"
)

func TestParseMetrics(t *testing.T) {
	text := `# HELP istio_tcp_connections_opened_total The total number of TCP connections opened
# TYPE istio_tcp_connections_opened_total counter
istio_tcp_connections_opened_total{reporter="destination",source_principal="spiffe://cluster.local/ns/a/sa/client",destination_principal="spiffe://cluster.local/ns/b/sa/server"} 3
istio_tcp_connections_opened_total{reporter="source",source_principal="spiffe://cluster.local/ns/a/sa/client",destination_principal="spiffe://cluster.local/ns/b/sa/server"} 2
istio_tcp_connections_opened_total{reporter="destination",source_principal="unknown",destination_principal="spiffe://cluster.local/ns/b/sa/server",note="a \"quoted\", comma"} 7
go_goroutines 42
`
	s, err := ParseMetrics([]byte(text))
	if err != nil {
		t.Fatal(err)
	}
	if len(s) != 4 {
		t.Fatalf("%d samples, want 4: %+v", len(s), s)
	}
	if s[2].Labels["note"] != `a "quoted", comma` || s[2].Value != 7 {
		t.Fatalf("escaped label: %+v", s[2])
	}
	if got := SumMetric(s, "istio_tcp_connections_opened_total", map[string]string{"destination_principal": "spiffe://cluster.local/ns/b/sa/server"}); got != 12 {
		t.Errorf("sum over the destination = %v, want 12", got)
	}
	if got := SumMetric(s, "istio_tcp_connections_opened_total", map[string]string{"reporter": "destination", "source_principal": "spiffe://cluster.local/ns/a/sa/client"}); got != 3 {
		t.Errorf("sum for the client at the destination = %v, want 3", got)
	}
	if got := SumMetric(s, "go_goroutines", nil); got != 42 {
		t.Errorf("unlabelled sample = %v, want 42", got)
	}
	if _, err := ParseMetrics([]byte("broken{x=1} 2\n")); err == nil {
		t.Error("unquoted label value accepted")
	}
}

// frame builds an Ethernet + IPv4 + TCP frame.
func frame(src, dst netip.AddrPort, flags byte, payload string) []byte {
	b := make([]byte, 14+20+20+len(payload))
	binary.BigEndian.PutUint16(b[12:], 0x0800)
	ip := b[14:]
	ip[0] = 0x45
	binary.BigEndian.PutUint16(ip[2:], uint16(40+len(payload)))
	ip[9] = 6
	s4, d4 := src.Addr().As4(), dst.Addr().As4()
	copy(ip[12:], s4[:])
	copy(ip[16:], d4[:])
	tcp := ip[20:]
	binary.BigEndian.PutUint16(tcp[0:], src.Port())
	binary.BigEndian.PutUint16(tcp[2:], dst.Port())
	tcp[12] = 5 << 4
	tcp[13] = flags
	copy(tcp[20:], payload)
	return b
}

func TestParseFrame(t *testing.T) {
	src, dst := netip.MustParseAddrPort("172.30.0.11:40000"), netip.MustParseAddrPort("10.244.2.4:15008")
	seg, ok := ParseFrame(frame(src, dst, 0x02, ""))
	if !ok || !seg.SYN || seg.Src != src || seg.Dst != dst || len(seg.Payload) != 0 {
		t.Fatalf("SYN: %+v, %v", seg, ok)
	}
	seg, ok = ParseFrame(frame(dst, src, 0x12, ""))
	if !ok || seg.SYN {
		t.Fatalf("SYN-ACK parsed as a SYN: %+v", seg)
	}
	seg, ok = ParseFrame(frame(src, dst, 0x18, "\x16\x03\x01hello"))
	if !ok || string(seg.Payload) != "\x16\x03\x01hello" {
		t.Fatalf("data: %+v, %v", seg, ok)
	}
	arp := frame(src, dst, 0, "")
	binary.BigEndian.PutUint16(arp[12:], 0x0806)
	if _, ok := ParseFrame(arp); ok {
		t.Error("ARP frame parsed as TCP")
	}
	udp := frame(src, dst, 0, "")
	udp[14+9] = 17
	if _, ok := ParseFrame(udp); ok {
		t.Error("UDP parsed as TCP")
	}
	if _, ok := ParseFrame(frame(src, dst, 0, "x")[:40]); ok {
		t.Error("truncated TCP header parsed")
	}
}
