package cluster

import (
	"context"
	"fmt"
	"net/netip"
	"path/filepath"
	"sync"

	"go.uber.org/zap"

	"github.com/ambient-mesh/ambient/hack/localcluster/dns"
	"github.com/ambient-mesh/ambient/hack/localcluster/netsetup"
	"github.com/ambient-mesh/ambient/hack/localcluster/nodelet"
)

// Images maps an image's repository basename to the project binary that
// stands in for it (see nodelet.TableResolver).
var Images = map[string]string{
	"ztunnel":     "ztunnel",
	"waypoint":    "waypoint",
	"istiod-lite": "istiod-lite",
	"echo":        "echo",
	"ambientctl":  "ambientctl",
}

// DNSPort is the cluster DNS server's port on netsetup.RootAddr.
const DNSPort = 53

// RunDaemon runs the cluster DNS server (netsetup.RootAddr:53, see package
// dns) and one node agent per node until ctx is done.
func RunDaemon(ctx context.Context, stateDir string, log *zap.Logger) error {
	c, err := Load(stateDir)
	if err != nil {
		return err
	}
	client, err := Client(stateDir)
	if err != nil {
		return err
	}
	nodes, err := netsetup.Plan(c.Nodes)
	if err != nil {
		return err
	}
	table := map[string]string{}
	for img, bin := range Images {
		table[img] = filepath.Join(c.ImageBinDir, bin)
	}
	resolver := nodelet.TableResolver{Table: table}
	cp := c.ControlPlane()
	var wg sync.WaitGroup
	errc := make(chan error, len(nodes)+1)
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	dnsCfg := dns.Config{
		Client: client,
		Addr:   netip.AddrPortFrom(netsetup.RootAddr, DNSPort),
		Domain: dns.DefaultDomain,
		Logger: log.With(zap.String("component", "dns")),
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		if err := dns.Run(ctx, dnsCfg); err != nil && ctx.Err() == nil {
			errc <- fmt.Errorf("cluster dns: %w", err)
			cancel()
		}
	}()
	for _, n := range nodes {
		pn, err := netsetup.NewPodNetwork(n, c.NodeDir(n.Name))
		if err != nil {
			return err
		}
		cfg := nodelet.Config{
			Client: client,
			Node: nodelet.Node{
				Name: n.Name, IP: n.IP, NetnsPath: n.NetnsPath,
				HostPathRoot: c.HostPathRoot(n.Name), BPFFSPath: c.BPFFS(n.Name),
			},
			Net:             podNet{pn},
			Images:          resolver,
			StateDir:        c.NodeDir(n.Name),
			APIServerCAFile: cp.PKI().CACert,
			ServiceHost:     "10.96.0.1",
			ServicePort:     "443",
			Logger:          log.With(zap.String("node", n.Name)),
			Marker:          c.StateDir,
			DNS:             &nodelet.DNSConfig{Nameserver: netsetup.RootAddr, Domain: dns.DefaultDomain},
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := nodelet.Run(ctx, cfg); err != nil && ctx.Err() == nil {
				errc <- fmt.Errorf("node agent %s: %w", cfg.Node.Name, err)
				cancel()
			}
		}()
	}
	wg.Wait()
	close(errc)
	return <-errc
}

// podNet adapts netsetup's pod network to the node agent's interface.
type podNet struct{ pn *netsetup.PodNetwork }

func (p podNet) SetupPod(ctx context.Context, key string) (nodelet.PodNet, error) {
	pod, err := p.pn.SetupPod(ctx, key)
	if err != nil {
		return nodelet.PodNet{}, err
	}
	return nodelet.PodNet{IP: pod.IP, NetnsPath: pod.NetnsPath, HostVeth: pod.HostVeth, HostVethIndex: pod.HostVethIndex}, nil
}

func (p podNet) TeardownPod(ctx context.Context, key string) error { return p.pn.TeardownPod(ctx, key) }
