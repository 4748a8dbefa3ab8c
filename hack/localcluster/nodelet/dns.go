package nodelet

import (
	"bufio"
	"bytes"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/ambient-mesh/ambient/hack/localcluster/shim"
	corev1 "k8s.io/api/core/v1"
)

// DNSConfig is the cluster DNS the nodelet points pods at, as the kubelet's
// --cluster-dns and --cluster-domain do.
type DNSConfig struct {
	// Nameserver is the cluster DNS server (the local cluster's: 172.30.0.1).
	Nameserver netip.Addr
	// Domain is the cluster domain ("cluster.local").
	Domain string
}

// ResolvConfPath is where containers find their resolver configuration.
const ResolvConfPath = "/etc/resolv.conf"

// HostResolvConf is the node's resolver configuration, the base of pods
// with dnsPolicy Default.
const HostResolvConf = "/etc/resolv.conf"

// Limits the kubelet applies to a pod's resolv.conf.
const (
	maxNameservers    = 3
	maxSearches       = 32
	maxSearchListChar = 2048
)

// ResolvConf is a resolver configuration.
type ResolvConf struct {
	Nameservers []string
	Searches    []string
	Options     []string
}

// ParseResolvConf reads the nameserver, search/domain and options lines of
// a resolv.conf.
func ParseResolvConf(b []byte) ResolvConf {
	var r ResolvConf
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) == 0 || strings.HasPrefix(f[0], "#") || strings.HasPrefix(f[0], ";") {
			continue
		}
		switch f[0] {
		case "nameserver":
			if len(f) > 1 {
				r.Nameservers = append(r.Nameservers, f[1])
			}
		case "search", "domain": // the last one wins, as in the resolver
			r.Searches = slices.Clone(f[1:])
		case "options":
			r.Options = append(r.Options, f[1:]...)
		}
	}
	return r
}

// Render writes r in resolv.conf syntax.
func (r ResolvConf) Render() []byte {
	var b bytes.Buffer
	if len(r.Searches) > 0 {
		fmt.Fprintf(&b, "search %s\n", strings.Join(r.Searches, " "))
	}
	for _, ns := range r.Nameservers {
		fmt.Fprintf(&b, "nameserver %s\n", ns)
	}
	if len(r.Options) > 0 {
		fmt.Fprintf(&b, "options %s\n", strings.Join(r.Options, " "))
	}
	return b.Bytes()
}

// PodResolvConf decides a pod's resolver configuration like the kubelet:
// dnsPolicy ClusterFirst (the default) and, for hostNetwork pods,
// ClusterFirstWithHostNet use the cluster DNS (search <ns>.svc.<domain>
// svc.<domain> <domain>, ndots:5); hostNetwork pods with ClusterFirst and
// pods with Default use the node's (host); None starts empty. The pod's
// dnsConfig nameservers, searches and options are then merged in. ok is
// false when the container should keep the host's file untouched (cluster
// DNS off, or the node's configuration without additions). Unlike the
// kubelet, cluster-DNS pods do not inherit the node's search domains: they
// lead nowhere in the local cluster.
func PodResolvConf(pod *corev1.Pod, cluster *DNSConfig, host ResolvConf) (r ResolvConf, ok bool) {
	if cluster == nil {
		return ResolvConf{}, false
	}
	const (
		fromCluster = iota
		fromHost
		fromNothing
	)
	base := fromHost // Default
	switch pod.Spec.DNSPolicy {
	case corev1.DNSClusterFirstWithHostNet:
		base = fromCluster
	case corev1.DNSClusterFirst, "":
		if !pod.Spec.HostNetwork {
			base = fromCluster
		}
	case corev1.DNSNone:
		base = fromNothing
	}
	switch base {
	case fromCluster:
		d := strings.TrimSuffix(cluster.Domain, ".")
		r = ResolvConf{
			Nameservers: []string{cluster.Nameserver.String()},
			Searches:    []string{pod.Namespace + ".svc." + d, "svc." + d, d},
			Options:     []string{"ndots:5"},
		}
	case fromHost:
		if pod.Spec.DNSConfig == nil {
			return ResolvConf{}, false
		}
		r = ResolvConf{
			Nameservers: slices.Clone(host.Nameservers),
			Searches:    slices.Clone(host.Searches),
			Options:     slices.Clone(host.Options),
		}
	}
	if dc := pod.Spec.DNSConfig; dc != nil {
		r.Nameservers = dedup(append(r.Nameservers, dc.Nameservers...))
		r.Searches = dedup(append(r.Searches, dc.Searches...))
		for _, o := range dc.Options {
			r.Options = setOption(r.Options, o)
		}
	}
	if len(r.Nameservers) > maxNameservers {
		r.Nameservers = r.Nameservers[:maxNameservers]
	}
	if len(r.Searches) > maxSearches {
		r.Searches = r.Searches[:maxSearches]
	}
	for len(r.Searches) > 0 && len(strings.Join(r.Searches, " ")) > maxSearchListChar {
		r.Searches = r.Searches[:len(r.Searches)-1]
	}
	return r, true
}

// setOption sets option o in opts, replacing one of the same name in place.
func setOption(opts []string, o corev1.PodDNSConfigOption) []string {
	s := o.Name
	if o.Value != nil && *o.Value != "" {
		s += ":" + *o.Value
	}
	for i, old := range opts {
		if name, _, _ := strings.Cut(old, ":"); name == o.Name {
			opts[i] = s
			return opts
		}
	}
	return append(opts, s)
}

func dedup(xs []string) []string {
	var out []string
	for _, x := range xs {
		if x != "" && !slices.Contains(out, x) {
			out = append(out, x)
		}
	}
	return out
}

// resolvConfMount writes the pod's resolv.conf (if it needs its own) and
// returns the mount that puts it at /etc/resolv.conf. The file lives in the
// pod's volumes directory (as ".resolv.conf", a name no volume can have) so
// that pod clean-up removes it.
func (w *worker) resolvConfMount(pod *corev1.Pod) (*shim.Mount, error) {
	if w.cfg.DNS == nil {
		return nil, nil
	}
	var host ResolvConf
	if pod.Spec.DNSConfig != nil {
		b, err := os.ReadFile(HostResolvConf)
		if err != nil && !os.IsNotExist(err) {
			return nil, fmt.Errorf("read the node's resolv.conf: %w", err)
		}
		host = ParseResolvConf(b)
	}
	rc, ok := PodResolvConf(pod, w.cfg.DNS, host)
	if !ok {
		return nil, nil
	}
	dir := filepath.Join(w.dir, "volumes")
	const name = ".resolv.conf"
	if err := writeFiles(dir, map[string][]byte{name: rc.Render()}); err != nil {
		return nil, fmt.Errorf("write resolv.conf: %w", err)
	}
	return &shim.Mount{Source: filepath.Join(dir, name), Target: ResolvConfPath, ReadOnly: true}, nil
}

// withResolvConf adds m to ms unless the container mounts something at
// /etc/resolv.conf itself.
func withResolvConf(ms []shim.Mount, m *shim.Mount) []shim.Mount {
	if m == nil {
		return ms
	}
	for _, x := range ms {
		if x.Target == m.Target {
			return ms
		}
	}
	return append(ms, *m)
}
