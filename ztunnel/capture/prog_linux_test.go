//go:build linux

package capture

import (
	"context"
	"encoding/binary"
	"net"
	"net/netip"
	"testing"

	"github.com/cilium/ebpf"
)

// TC verdicts as seen by BPF_PROG_TEST_RUN.
const (
	verdictOK     = 0          // TC_ACT_OK: assigned, end of the TCX chain
	verdictShot   = 2          // TC_ACT_SHOT: dropped
	verdictUnspec = 0xffffffff // TC_ACT_UNSPEC: not ours, next TCX program
)

func verdictName(v uint32) string {
	switch v {
	case verdictOK:
		return "TC_ACT_OK"
	case verdictShot:
		return "TC_ACT_SHOT"
	case verdictUnspec:
		return "TC_ACT_UNSPEC"
	}
	return "unknown"
}

// skbContext mirrors struct __sk_buff (192 bytes); BPF_PROG_TEST_RUN accepts
// mark, priority, ingress_ifindex, ifindex, cb and tstamp in it.
type skbContext struct {
	Len, PktType, Mark, QueueMapping, Protocol uint32
	VlanPresent, VlanTCI, VlanProto, Priority  uint32
	IngressIfindex, Ifindex, TCIndex           uint32
	CB                                         [5]uint32
	Rest                                       [31]uint32
}

const (
	tcpFIN = 0x01
	tcpSYN = 0x02
	tcpRST = 0x04
	tcpACK = 0x10
)

type frame struct {
	src, dst netip.AddrPort // IPv4 or IPv6 (both the same family)
	proto    int            // IPv4 protocol / IPv6 next header; 0: TCP, protoHopByHop: 0
	flags    uint8          // TCP flags
	fragment uint16         // IPv4 fragment field (MF 0x2000 | offset in 8-byte units)
	truncate int            // cut the frame to this length
}

const (
	ipv4MF        = 0x2000
	protoHopByHop = 256 // IPv6 next header 0
)

// bytes builds an Ethernet + IPv4/IPv6 + TCP (or other) frame. Checksums are
// left zero: the program does not check them and BPF_PROG_TEST_RUN does not
// either.
func (f frame) bytes() []byte {
	proto := uint8(f.proto)
	switch f.proto {
	case 0:
		proto = 6
	case protoHopByHop:
		proto = 0
	}
	eth := make([]byte, 14)
	copy(eth[0:6], []byte{0x02, 0, 0, 0, 0, 1})
	copy(eth[6:12], []byte{0x02, 0, 0, 0, 0, 2})
	var ip []byte
	if f.src.Addr().Is4() {
		binary.BigEndian.PutUint16(eth[12:], 0x0800)
		ip = make([]byte, 20)
		ip[0] = 0x45
		binary.BigEndian.PutUint16(ip[2:], 40)
		binary.BigEndian.PutUint16(ip[6:], 0x4000|f.fragment) // DF
		ip[8] = 64
		ip[9] = proto
		s, d := f.src.Addr().As4(), f.dst.Addr().As4()
		copy(ip[12:16], s[:])
		copy(ip[16:20], d[:])
	} else {
		binary.BigEndian.PutUint16(eth[12:], 0x86dd)
		ip = make([]byte, 40)
		ip[0] = 0x60
		binary.BigEndian.PutUint16(ip[4:], 20)
		ip[6] = proto
		ip[7] = 64
		s, d := f.src.Addr().As16(), f.dst.Addr().As16()
		copy(ip[8:24], s[:])
		copy(ip[24:40], d[:])
	}
	l4 := make([]byte, 20)
	binary.BigEndian.PutUint16(l4[0:], f.src.Port())
	binary.BigEndian.PutUint16(l4[2:], f.dst.Port())
	binary.BigEndian.PutUint32(l4[4:], 1000)
	l4[12] = 5 << 4
	l4[13] = f.flags
	binary.BigEndian.PutUint16(l4[14:], 65535)
	b := append(append(eth, ip...), l4...)
	if f.truncate > 0 {
		b = b[:f.truncate]
	}
	return b
}

// run runs the program on one frame arriving on ingressIfindex with mark.
func run(t *testing.T, prog *ebpf.Program, f frame, ingressIfindex, mark uint32) (verdict, markOut uint32) {
	t.Helper()
	in := skbContext{IngressIfindex: ingressIfindex, Mark: mark}
	var out skbContext
	ret, err := prog.Run(&ebpf.RunOptions{Data: f.bytes(), Context: in, ContextOut: &out})
	skipIfNotSupported(t, featureErr(err))
	if err != nil {
		t.Fatalf("BPF_PROG_TEST_RUN: %v", err)
	}
	return ret, out.Mark
}

// The addresses of the program tests, per family.
type addrs struct{ podA, podB, other, ext netip.Addr }

var (
	// podA: enrolled, veth ifindex 7; podB: enrolled, veth ifindex 8;
	// other, ext: not enrolled.
	addrs4 = addrs{
		podA:  netip.MustParseAddr("10.77.1.2"),
		podB:  netip.MustParseAddr("10.77.1.3"),
		other: netip.MustParseAddr("10.77.9.9"),
		ext:   netip.MustParseAddr("10.77.8.8"),
	}
	addrs6 = addrs{
		podA:  netip.MustParseAddr("fd77::1:2"),
		podB:  netip.MustParseAddr("fd77::1:3"),
		other: netip.MustParseAddr("fd77::9:9"),
		ext:   netip.MustParseAddr("fd77::8:8"),
	}
)

const (
	ifA      = 7
	ifB      = 8
	ifOther  = 9  // a non-enrolled pod's veth
	ifUplink = 10 // the node uplink
)

func ap(a netip.Addr, port uint16) netip.AddrPort { return netip.AddrPortFrom(a, port) }

type verdictCase struct {
	name     string
	f        frame
	ingress  uint32
	mark     uint32 // mark of the packet
	verdict  uint32
	wantMark uint32
	stat     func(*Stats) *uint64 // counter that must grow by one
}

// enrollAll enrolls podA and podB of both families.
func enrollAll(t *testing.T, o *Objects) {
	t.Helper()
	for _, a := range []addrs{addrs4, addrs6} {
		must(t, o.Enroll(ifA, a.podA))
		must(t, o.Enroll(ifB, a.podB))
	}
}

// TestProgramVerdicts runs the real program on crafted packets in a fresh
// network namespace with the listeners of both families registered.
func TestProgramVerdicts(t *testing.T) {
	o := loadForTest(t)
	ns := newNetns(t)
	enrollAll(t, o)
	inNetns(t, ns, func() {
		for _, addr := range []string{"127.0.0.1:0", "[::1]:0"} {
			for _, k := range ListenerKinds {
				ln, err := ListenTransparent(context.Background(), addr)
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { ln.Close() })
				if err := o.RegisterListener(k, ln); err != nil {
					t.Fatal(err)
				}
			}
		}
	})
	for _, k := range ListenerKinds {
		if !o.Sockmap().Registered(k, false) || !o.Sockmap().Registered(k, true) {
			t.Fatalf("%s: listeners of both families not registered", k)
		}
	}

	outbound := func(s *Stats) *uint64 { return &s.AssignedOutbound }
	inbound := func(s *Stats) *uint64 { return &s.AssignedInboundPlain }
	hbone := func(s *Stats) *uint64 { return &s.AssignedHBONE }
	spoofed := func(s *Stats) *uint64 { return &s.Spoofed }
	unparsed := func(s *Stats) *uint64 { return &s.Unparsed }

	for _, fam := range []struct {
		name string
		a    addrs
	}{{"v4", addrs4}, {"v6", addrs6}} {
		podA, podB, other, ext := fam.a.podA, fam.a.podB, fam.a.other, fam.a.ext
		ipLen := 20
		if podA.Is6() {
			ipLen = 40
		}
		tests := []verdictCase{
			{"SYN from enrolled pod on its veth to outside", frame{src: ap(podA, 40000), dst: ap(ext, 80), flags: tcpSYN}, ifA, 0, verdictOK, CaptureMark, outbound},
			{"SYN from enrolled pod to enrolled pod is outbound", frame{src: ap(podA, 40001), dst: ap(podB, 80), flags: tcpSYN}, ifA, 0, verdictOK, CaptureMark, outbound},
			{"SYN from enrolled pod to port 15008 is outbound", frame{src: ap(podA, 40002), dst: ap(ext, 15008), flags: tcpSYN}, ifA, 0, verdictOK, CaptureMark, outbound},
			{"mark bits of others are kept", frame{src: ap(podA, 40003), dst: ap(ext, 80), flags: tcpSYN}, ifA, 0x4000, verdictOK, 0x4000 | CaptureMark, outbound},
			{"SYN with enrolled source from another pod's veth is spoofed", frame{src: ap(podA, 40004), dst: ap(ext, 80), flags: tcpSYN}, ifOther, 0, verdictShot, 0, spoofed},
			{"SYN with enrolled source from the uplink is spoofed", frame{src: ap(podA, 40005), dst: ap(podB, 80), flags: tcpSYN}, ifUplink, 0, verdictShot, 0, spoofed},
			{"SYN with enrolled source from the other enrolled pod's veth is spoofed", frame{src: ap(podA, 40006), dst: ap(ext, 80), flags: tcpSYN}, ifB, 0, verdictShot, 0, spoofed},
			{"ACK with spoofed enrolled source is dropped", frame{src: ap(podA, 40007), dst: ap(ext, 80), flags: tcpACK}, ifOther, 0, verdictShot, 0, spoofed},
			{"SYN from uplink to enrolled pod plaintext", frame{src: ap(ext, 40008), dst: ap(podB, 80), flags: tcpSYN}, ifUplink, 0, verdictOK, CaptureMark, inbound},
			{"SYN from non-enrolled local pod to enrolled pod", frame{src: ap(other, 40009), dst: ap(podB, 80), flags: tcpSYN}, ifOther, 0, verdictOK, CaptureMark, inbound},
			{"SYN from uplink to enrolled pod port 15008 is HBONE", frame{src: ap(ext, 40010), dst: ap(podB, 15008), flags: tcpSYN}, ifUplink, 0, verdictOK, CaptureMark, hbone},
			{"SYN between non-enrolled addresses is not ours", frame{src: ap(other, 40011), dst: ap(ext, 80), flags: tcpSYN}, ifOther, 0, verdictUnspec, 0, nil},
			{"SYN to non-enrolled destination on uplink is not ours", frame{src: ap(ext, 40012), dst: ap(other, 15008), flags: tcpSYN}, ifUplink, 0, verdictUnspec, 0, nil},
			{"ACK of unknown flow from enrolled pod is not ours", frame{src: ap(podA, 40013), dst: ap(ext, 80), flags: tcpACK}, ifA, 0, verdictUnspec, 0, nil},
			{"SYN-ACK to enrolled pod without socket is not ours", frame{src: ap(ext, 80), dst: ap(podB, 40014), flags: tcpSYN | tcpACK}, ifUplink, 0, verdictUnspec, 0, nil},
			{"RST from enrolled pod without socket is not ours", frame{src: ap(podA, 40015), dst: ap(ext, 80), flags: tcpRST}, ifA, 0, verdictUnspec, 0, nil},
			{"UDP from enrolled pod is not ours", frame{src: ap(podA, 40016), dst: ap(ext, 53), proto: 17}, ifA, 0, verdictUnspec, 0, nil},
			{"UDP with spoofed enrolled source is left to the CNI", frame{src: ap(podA, 40017), dst: ap(ext, 53), proto: 17}, ifOther, 0, verdictUnspec, 0, nil},
			{"truncated TCP header from enrolled pod is dropped", frame{src: ap(podA, 40020), dst: ap(ext, 80), flags: tcpSYN, truncate: 14 + ipLen + 10}, ifA, 0, verdictShot, 0, unparsed},
			{"truncated TCP header to enrolled pod is dropped", frame{src: ap(ext, 40021), dst: ap(podB, 80), flags: tcpSYN, truncate: 14 + ipLen + 10}, ifUplink, 0, verdictShot, 0, unparsed},
			{"truncated TCP header between others is not ours", frame{src: ap(other, 40022), dst: ap(ext, 80), flags: tcpSYN, truncate: 14 + ipLen + 10}, ifOther, 0, verdictUnspec, 0, nil},
		}
		if podA.Is4() {
			tests = append(tests, []verdictCase{
				{"first fragment from enrolled pod is dropped", frame{src: ap(podA, 40030), dst: ap(ext, 80), flags: tcpSYN, fragment: ipv4MF}, ifA, 0, verdictShot, 0, unparsed},
				{"non-first fragment to enrolled pod is dropped", frame{src: ap(ext, 40031), dst: ap(podB, 80), flags: tcpSYN, fragment: 10}, ifUplink, 0, verdictShot, 0, unparsed},
				{"fragment between others is not ours", frame{src: ap(other, 40032), dst: ap(ext, 80), flags: tcpSYN, fragment: ipv4MF | 10}, ifOther, 0, verdictUnspec, 0, nil},
				{"UDP fragment from enrolled pod is not ours", frame{src: ap(podA, 40033), dst: ap(ext, 53), proto: 17, fragment: ipv4MF}, ifA, 0, verdictUnspec, 0, nil},
			}...)
		} else {
			tests = append(tests, []verdictCase{
				{"fragment header from enrolled pod is dropped", frame{src: ap(podA, 40040), dst: ap(ext, 80), flags: tcpSYN, proto: 44}, ifA, 0, verdictShot, 0, unparsed},
				{"hop-by-hop header to enrolled pod is dropped", frame{src: ap(ext, 40041), dst: ap(podB, 80), flags: tcpSYN, proto: protoHopByHop}, ifUplink, 0, verdictShot, 0, unparsed},
				{"destination options between others are not ours", frame{src: ap(other, 40042), dst: ap(ext, 80), flags: tcpSYN, proto: 60}, ifOther, 0, verdictUnspec, 0, nil},
				{"ICMPv6 from enrolled pod is not ours", frame{src: ap(podA, 40043), dst: ap(ext, 80), proto: 58}, ifA, 0, verdictUnspec, 0, nil},
			}...)
		}
		for _, tt := range tests {
			t.Run(fam.name+"/"+tt.name, func(t *testing.T) {
				before, err := o.Stats()
				if err != nil {
					t.Fatal(err)
				}
				var verdict, mark uint32
				inNetns(t, ns, func() { verdict, mark = run(t, o.objs.CaptureIngress, tt.f, tt.ingress, tt.mark) })
				after, err := o.Stats()
				if err != nil {
					t.Fatal(err)
				}
				want := before
				if tt.stat != nil {
					*tt.stat(&want)++
				}
				checkVerdict(t, verdict, mark, after, want, tt.verdict, tt.mark, tt.wantMark)
			})
		}
	}
}

// TestProgramFailClosed: a SYN to be captured while its listener is not
// registered (proxy down) is dropped, never passed; a listener of one family
// does not serve the other.
func TestProgramFailClosed(t *testing.T) {
	o := loadForTest(t)
	ns := newNetns(t)
	enrollAll(t, o)
	inNetns(t, ns, func() {
		// Only IPv4 listeners: IPv6 SYNs must still be dropped.
		for _, k := range ListenerKinds {
			ln, err := ListenTransparent(context.Background(), "127.0.0.1:0")
			must(t, err)
			t.Cleanup(func() { ln.Close() })
			must(t, o.RegisterListener(k, ln))
		}
	})
	a := addrs6
	tests := []struct {
		name    string
		f       frame
		ingress uint32
	}{
		{"outbound", frame{src: ap(a.podA, 41000), dst: ap(a.ext, 80), flags: tcpSYN}, ifA},
		{"inbound plaintext", frame{src: ap(a.ext, 41001), dst: ap(a.podB, 80), flags: tcpSYN}, ifUplink},
		{"hbone", frame{src: ap(a.ext, 41002), dst: ap(a.podB, 15008), flags: tcpSYN}, ifUplink},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before, _ := o.Stats()
			var verdict uint32
			inNetns(t, ns, func() { verdict, _ = run(t, o.objs.CaptureIngress, tt.f, tt.ingress, 0) })
			if verdict != verdictShot {
				t.Errorf("verdict = %s, want TC_ACT_SHOT", verdictName(verdict))
			}
			after, _ := o.Stats()
			if after.NoListener != before.NoListener+1 {
				t.Errorf("NoListener = %d, want %d", after.NoListener, before.NoListener+1)
			}
		})
	}
}

// TestProgramEstablished: packets of a flow owned by a socket of the netns are
// assigned to it, a listener match is not taken for a flow of ours.
func TestProgramEstablished(t *testing.T) {
	o := loadForTest(t)
	ns := newNetns(t)
	enrollAll(t, o)
	for _, fam := range []struct {
		name string
		a    addrs
	}{{"v4", addrs4}, {"v6", addrs6}} {
		podA := fam.a.podA
		var client, server net.Conn
		inNetns(t, ns, func() {
			// podA on lo stands in for a captured flow's local end.
			addLoAddr(t, podA)
			ln, err := net.Listen("tcp", ap(podA, 9000).String())
			must(t, err)
			defer ln.Close()
			client, err = net.Dial("tcp", ap(podA, 9000).String())
			must(t, err)
			server, err = ln.Accept()
			must(t, err)
		})
		t.Cleanup(func() { client.Close(); server.Close() })
		cl := client.LocalAddr().(*net.TCPAddr).AddrPort()
		cl = netip.AddrPortFrom(cl.Addr().Unmap(), cl.Port())

		tests := []struct {
			name    string
			f       frame
			verdict uint32
			stat    func(*Stats) *uint64
		}{
			{"ACK of the established flow follows its socket", frame{src: cl, dst: ap(podA, 9000), flags: tcpACK}, verdictOK, func(s *Stats) *uint64 { return &s.AssignedEstablished }},
			{"FIN of the established flow follows its socket", frame{src: cl, dst: ap(podA, 9000), flags: tcpFIN | tcpACK}, verdictOK, func(s *Stats) *uint64 { return &s.AssignedEstablished }},
			// Only the plain listener on podA:9000 matches: not taken, decided as a new flow.
			{"SYN matching only a node listener is decided as new", frame{src: ap(podA, 42000), dst: ap(podA, 9000), flags: tcpSYN}, verdictShot, func(s *Stats) *uint64 { return &s.NoListener }},
			{"ACK matching only a node listener is not ours", frame{src: ap(podA, 42001), dst: ap(podA, 9000), flags: tcpACK}, verdictUnspec, nil},
		}
		for _, tt := range tests {
			t.Run(fam.name+"/"+tt.name, func(t *testing.T) {
				before, _ := o.Stats()
				var verdict, mark uint32
				inNetns(t, ns, func() { verdict, mark = run(t, o.objs.CaptureIngress, tt.f, ifA, 0) })
				after, _ := o.Stats()
				want := before
				if tt.stat != nil {
					*tt.stat(&want)++
				}
				checkVerdict(t, verdict, mark, after, want, tt.verdict, 0, CaptureMark)
			})
		}
	}
}

// checkVerdict compares a run's outcome with the expected one. Under
// BPF_PROG_TEST_RUN bpf_sk_assign fails (the skb is not at tc ingress), so a
// packet the program assigns comes back as TC_ACT_SHOT with AssignFailed
// counted and the mark untouched; the counter of the chosen path still tells
// which listener or socket was picked. Real assignment is covered by the
// netns tests.
func checkVerdict(t *testing.T, verdict, mark uint32, got, want Stats, wantVerdict, markIn, wantMark uint32) {
	t.Helper()
	if wantVerdict == verdictOK && verdict == verdictShot && got.AssignFailed == want.AssignFailed+1 {
		wantVerdict, wantMark = verdictShot, markIn
		want.AssignFailed++
	}
	if wantVerdict != verdictOK {
		wantMark = markIn
	}
	if verdict != wantVerdict {
		t.Errorf("verdict = %s, want %s", verdictName(verdict), verdictName(wantVerdict))
	}
	if mark != wantMark {
		t.Errorf("mark = %#x, want %#x", mark, wantMark)
	}
	if got != want {
		t.Errorf("stats = %+v\n            want %+v", got, want)
	}
}
