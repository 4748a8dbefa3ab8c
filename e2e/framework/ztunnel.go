package framework

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/ambient-mesh/ambient/hack/localcluster/netsetup"
)

// WaitPodRunning waits until the pod has a running container (its IP is
// set) and returns it.
func (t *T) WaitPodRunning(name string, timeout time.Duration) *corev1.Pod {
	t.Helper()
	var pod *corev1.Pod
	t.Eventually(timeout, "pod "+name+" running", func() error {
		p, err := t.Client.CoreV1().Pods(t.Namespace).Get(t.Ctx, name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		if p.Status.PodIP == "" || p.Status.Phase == corev1.PodPending {
			return fmt.Errorf("phase %s, ip %q", p.Status.Phase, p.Status.PodIP)
		}
		pod = p
		return nil
	})
	return pod
}

// WaitZtunnelReady waits until node's ztunnel pod is Ready and returns it;
// not is a pod UID the ready pod must not have (the one just deleted), or "".
func (t *T) WaitZtunnelReady(node string, not string, timeout time.Duration) *corev1.Pod {
	t.Helper()
	var pod *corev1.Pod
	t.Eventually(timeout, "ztunnel on "+node+" ready", func() error {
		l, err := t.Client.CoreV1().Pods(SystemNamespace).List(t.Ctx, metav1.ListOptions{LabelSelector: "app=ztunnel", FieldSelector: "spec.nodeName=" + node})
		if err != nil {
			return err
		}
		for i := range l.Items {
			p := &l.Items[i]
			if string(p.UID) == not || p.DeletionTimestamp != nil {
				continue
			}
			for _, c := range p.Status.Conditions {
				if c.Type == corev1.PodReady && c.Status == corev1.ConditionTrue {
					pod = p
					return nil
				}
			}
		}
		return fmt.Errorf("no ready ztunnel pod (other than %s) among %d", not, len(l.Items))
	})
	return pod
}

// DeleteZtunnelPod deletes node's ztunnel pod (the DaemonSet creates a new
// one) and returns the deleted pod's UID.
func (t *T) DeleteZtunnelPod(node string) string {
	t.Helper()
	p := t.ZtunnelPod(node)
	if err := t.Client.CoreV1().Pods(SystemNamespace).Delete(t.Ctx, p.Name, metav1.DeleteOptions{}); err != nil {
		t.Fatalf("delete ztunnel pod %s: %v", p.Name, err)
	}
	return string(p.UID)
}

// ZtunnelProxyPID finds the process of the proxy container of the ztunnel
// pod (local cluster only: containers are processes of this machine).
func (t *T) ZtunnelProxyPID(pod *corev1.Pod) int {
	t.Helper()
	if t.StateDir == "" {
		t.Skip("finding ztunnel's process needs the local cluster")
	}
	if pid := t.ZtunnelProxyPIDOrZero(pod); pid != 0 {
		return pid
	}
	t.Fatalf("no proxy process of %s", pod.Name)
	return 0
}

// ZtunnelProxyPIDOrZero is ZtunnelProxyPID, 0 when no such process runs
// (e.g. while the node agent restarts the container).
func (t *T) ZtunnelProxyPIDOrZero(pod *corev1.Pod) int {
	// ztunnel runs with the host network, so HOSTNAME is the node's name:
	// the pod is told apart by its POD_NAME.
	return processWithEnv("POD_NAME="+pod.Name, func(cmdline []byte) bool {
		return bytes.Contains(cmdline, []byte("--role=proxy")) && bytes.Contains(cmdline, []byte("ztunnel"))
	})
}

// KillZtunnelProxy sends SIGKILL to the proxy process of node's ztunnel pod
// (the node agent restarts the container) and returns the killed pid.
func (t *T) KillZtunnelProxy(node string) int {
	t.Helper()
	pid := t.ZtunnelProxyPID(t.ZtunnelPod(node))
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatalf("kill -9 %d: %v", pid, err)
	}
	return pid
}

// Sample is one Prometheus sample.
type Sample struct {
	Name   string
	Labels map[string]string
	Value  float64
}

// ParseMetrics parses the Prometheus text format (no escapes inside label
// values other than \" and \\, which is what client_golang writes).
func ParseMetrics(b []byte) ([]Sample, error) {
	var out []Sample
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		s := Sample{Labels: map[string]string{}}
		rest := line
		if i := strings.IndexAny(line, "{ "); i >= 0 && line[i] == '{' {
			s.Name = line[:i]
			j := i + 1
			for j < len(line) && line[j] != '}' {
				eq := strings.IndexByte(line[j:], '=')
				if eq < 0 || j+eq+1 >= len(line) || line[j+eq+1] != '"' {
					return nil, fmt.Errorf("bad labels in %q", line)
				}
				key := line[j : j+eq]
				k := j + eq + 2
				var val strings.Builder
				for k < len(line) && line[k] != '"' {
					if line[k] == '\\' && k+1 < len(line) {
						k++
					}
					val.WriteByte(line[k])
					k++
				}
				s.Labels[key] = val.String()
				j = k + 1
				if j < len(line) && line[j] == ',' {
					j++
				}
			}
			rest = strings.TrimSpace(line[min(j+1, len(line)):])
		} else {
			f := strings.Fields(line)
			s.Name, rest = f[0], strings.Join(f[1:], " ")
		}
		f := strings.Fields(rest)
		if len(f) == 0 {
			return nil, fmt.Errorf("no value in %q", line)
		}
		v, err := strconv.ParseFloat(f[0], 64)
		if err != nil {
			return nil, fmt.Errorf("value in %q: %w", line, err)
		}
		s.Value = v
		out = append(out, s)
	}
	return out, sc.Err()
}

// SumMetric adds up the samples named name whose labels include match.
func SumMetric(samples []Sample, name string, match map[string]string) float64 {
	var sum float64
next:
	for _, s := range samples {
		if s.Name != name {
			continue
		}
		for k, v := range match {
			if s.Labels[k] != v {
				continue next
			}
		}
		sum += s.Value
	}
	return sum
}

// ZtunnelMetrics scrapes node's ztunnel (port 15020).
func (t *T) ZtunnelMetrics(node string) ([]Sample, error) {
	b, err := t.ProxyGet(t.ZtunnelPod(node), "15020", "/metrics")
	if err != nil {
		return nil, fmt.Errorf("scrape ztunnel on %s: %w", node, err)
	}
	return ParseMetrics(b)
}

// UnderlayBridge is the local cluster's node network bridge (in the root
// network namespace), "" on another cluster.
func (e *Env) UnderlayBridge() string {
	if e.StateDir == "" {
		return ""
	}
	return netsetup.Bridge
}

// PodNetns returns the path of the pod's network namespace on the local
// cluster (the test skips elsewhere).
func (t *T) PodNetns(p *corev1.Pod) string {
	t.Helper()
	if t.StateDir == "" {
		t.Skip("entering a pod's network namespace needs the local cluster")
	}
	ip, err := netip.ParseAddr(p.Status.PodIP)
	if err != nil {
		t.Fatalf("pod %s has no IP: %v", p.Name, err)
	}
	paths, _ := filepath.Glob("/run/netns/" + netsetup.Prefix + "-" + p.Spec.NodeName + "-*")
	for _, path := range paths {
		found := false
		_ = netsetup.InNetns(path, func() error {
			addrs, err := net.InterfaceAddrs()
			if err != nil {
				return err
			}
			for _, a := range addrs {
				if n, ok := a.(*net.IPNet); ok && n.IP.Equal(ip.AsSlice()) {
					found = true
				}
			}
			return nil
		})
		if found {
			return path
		}
	}
	t.Fatalf("no network namespace of pod %s (%s) on %s", p.Name, ip, p.Spec.NodeName)
	return ""
}

// DialFromNetns opens a TCP connection from inside the network namespace at
// path (from PodNetns): the connection is the pod's, so the mesh captures it
// as the pod's traffic. The returned connection is used from any goroutine.
func DialFromNetns(ctx context.Context, path, addr string) (net.Conn, error) {
	var c net.Conn
	err := netsetup.InNetns(path, func() error {
		var d net.Dialer
		var err error
		c, err = d.DialContext(ctx, "tcp", addr)
		return err
	})
	return c, err
}

// Segment is one captured TCP segment.
type Segment struct {
	Src, Dst netip.AddrPort
	SYN      bool
	Payload  []byte
}

// PacketCapture records the IPv4 TCP segments crossing a link, as tcpdump
// would, with an AF_PACKET socket (root only).
type PacketCapture struct {
	fd   int
	keep func(src, dst netip.AddrPort) bool
	stop chan struct{}
	done chan struct{}
	mu   sync.Mutex
	segs []Segment
	err  error
}

// StartCapture captures the TCP segments on iface (in the calling process's
// network namespace) for which keep returns true (nil keeps all), in
// promiscuous mode so a bridge shows the frames it forwards between its
// ports.
func StartCapture(iface string, keep func(src, dst netip.AddrPort) bool) (*PacketCapture, error) {
	ifi, err := net.InterfaceByName(iface)
	if err != nil {
		return nil, fmt.Errorf("capture on %s: %w", iface, err)
	}
	proto := int(htons(unix.ETH_P_ALL))
	fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, proto)
	if err != nil {
		return nil, fmt.Errorf("AF_PACKET socket (needs CAP_NET_RAW): %w", err)
	}
	fail := func(what string, err error) (*PacketCapture, error) {
		unix.Close(fd)
		return nil, fmt.Errorf("capture on %s: %s: %w", iface, what, err)
	}
	if err := unix.Bind(fd, &unix.SockaddrLinklayer{Protocol: htons(unix.ETH_P_ALL), Ifindex: ifi.Index}); err != nil {
		return fail("bind", err)
	}
	mreq := unix.PacketMreq{Ifindex: int32(ifi.Index), Type: unix.PACKET_MR_PROMISC}
	if err := unix.SetsockoptPacketMreq(fd, unix.SOL_PACKET, unix.PACKET_ADD_MEMBERSHIP, &mreq); err != nil {
		return fail("promiscuous mode", err)
	}
	_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUF, 8<<20)
	tv := unix.NsecToTimeval(int64(100 * time.Millisecond))
	if err := unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv); err != nil {
		return fail("receive timeout", err)
	}
	if keep == nil {
		keep = func(_, _ netip.AddrPort) bool { return true }
	}
	c := &PacketCapture{fd: fd, keep: keep, stop: make(chan struct{}), done: make(chan struct{})}
	go c.loop()
	return c, nil
}

func htons(v uint16) uint16 { return v<<8 | v>>8 }

func (c *PacketCapture) loop() {
	defer close(c.done)
	defer unix.Close(c.fd)
	buf := make([]byte, 256<<10)
	for {
		select {
		case <-c.stop:
			return
		default:
		}
		n, from, err := unix.Recvfrom(c.fd, buf, 0)
		if errors.Is(err, unix.EAGAIN) || errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			c.mu.Lock()
			c.err = err
			c.mu.Unlock()
			return
		}
		// A frame the bridge sends out itself is seen once more as outgoing.
		if ll, ok := from.(*unix.SockaddrLinklayer); ok && ll.Pkttype == unix.PACKET_OUTGOING {
			continue
		}
		seg, ok := ParseFrame(buf[:n])
		if !ok || !c.keep(seg.Src, seg.Dst) {
			continue
		}
		c.mu.Lock()
		c.segs = append(c.segs, seg)
		c.mu.Unlock()
	}
}

// Len is the number of segments captured so far.
func (c *PacketCapture) Len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.segs)
}

// Stop ends the capture and returns the segments, in arrival order.
func (c *PacketCapture) Stop() ([]Segment, error) {
	close(c.stop)
	<-c.done
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.segs, c.err
}

// ParseFrame decodes an Ethernet frame carrying IPv4 TCP; ok is false for
// anything else. The payload is copied.
func ParseFrame(b []byte) (Segment, bool) {
	if len(b) < 14 || binary.BigEndian.Uint16(b[12:14]) != unix.ETH_P_IP {
		return Segment{}, false
	}
	ip := b[14:]
	if len(ip) < 20 || ip[0]>>4 != 4 || ip[9] != unix.IPPROTO_TCP {
		return Segment{}, false
	}
	ihl := int(ip[0]&0x0f) * 4
	total := int(binary.BigEndian.Uint16(ip[2:4]))
	if total == 0 || total > len(ip) { // GSO packets may leave it 0
		total = len(ip)
	}
	if ihl < 20 || total < ihl+20 {
		return Segment{}, false
	}
	src := netip.AddrFrom4([4]byte(ip[12:16]))
	dst := netip.AddrFrom4([4]byte(ip[16:20]))
	tcp := ip[ihl:total]
	off := int(tcp[12]>>4) * 4
	if off < 20 || off > len(tcp) {
		return Segment{}, false
	}
	return Segment{
		Src:     netip.AddrPortFrom(src, binary.BigEndian.Uint16(tcp[0:2])),
		Dst:     netip.AddrPortFrom(dst, binary.BigEndian.Uint16(tcp[2:4])),
		SYN:     tcp[13]&0x02 != 0 && tcp[13]&0x10 == 0,
		Payload: bytes.Clone(tcp[off:]),
	}, true
}
