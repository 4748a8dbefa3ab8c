package nodelet

import (
	"context"
	"errors"
	"net/netip"
	"time"

	"go.uber.org/zap"
	"k8s.io/client-go/kubernetes"
)

// PodNet is a pod's sandbox as set up by a Network.
type PodNet struct {
	IP            netip.Addr
	NetnsPath     string
	HostVeth      string
	HostVethIndex int
}

// Network creates and removes pod sandboxes (netns + veth + routed /32).
type Network interface {
	// SetupPod is idempotent per key (the pod UID).
	SetupPod(ctx context.Context, key string) (PodNet, error)
	// TeardownPod is idempotent.
	TeardownPod(ctx context.Context, key string) error
}

// Node describes the node a nodelet serves.
type Node struct {
	Name string
	// IP is the node's host-network IP; hostNetwork pods get it as podIP.
	IP netip.Addr
	// NetnsPath is the node's netns; hostNetwork containers and probes run there.
	NetnsPath string
	// HostPathRoot is where hostPath volumes resolve: <HostPathRoot>/<path>.
	HostPathRoot string
	// BPFFSPath is this node's bpffs; hostPath /sys/fs/bpf[/...] maps there.
	BPFFSPath string
	// CgroupPath is optional and unused for now.
	CgroupPath string
}

// Config configures Run. The fields after Logger are optional knobs; zero
// values select the kubelet's defaults.
type Config struct {
	Client kubernetes.Interface
	Node   Node
	Net    Network
	Images ImageResolver
	// StateDir is this node's directory for pod files: StateDir/pods/<ns>_<name>_<uid>/
	// holds volumes, container specs and <container>.log.
	StateDir string
	// APIServerCAFile is written as ca.crt into service-account token volumes.
	APIServerCAFile string
	// ServiceHost/ServicePort become KUBERNETES_SERVICE_HOST/PORT.
	ServiceHost, ServicePort string
	Logger                   *zap.Logger

	// Backoff is the crash-loop schedule (DefaultBackoff when zero).
	Backoff Backoff
	// HeartbeatInterval is how often the Node status and Lease are renewed (10 s).
	HeartbeatInterval time.Duration
	// MaxGracePeriod caps terminationGracePeriodSeconds (30 s).
	MaxGracePeriod time.Duration
	// StopGracePeriod is the grace given to containers when ctx ends (5 s).
	StopGracePeriod time.Duration
	// RetryInterval is the wait after a failed sandbox or volume setup (2 s).
	RetryInterval time.Duration
	// Marker is the value of MarkerEnv in every container ("1"); use the
	// cluster's marker (procs.Spec.Marker) so its teardown finds them.
	Marker string
	// VolumeRefreshInterval is how often ConfigMap, Secret and downward-API
	// volume files are brought up to date (10 s).
	VolumeRefreshInterval time.Duration
	// DNS, when set, gives pods a resolv.conf pointing at the cluster DNS
	// (see PodResolvConf); nil leaves every container the host's.
	DNS *DNSConfig
	// ShimPath is the binary run as `ShimPath run-container <spec>` and
	// `ShimPath exec-container <spec> -- argv...` (/proc/self/exe).
	ShimPath string
}

// CreatedPathsFile is the file in StateDir listing the mount points (one
// path per line, parents first) the shim created on the host; remove them in
// reverse order when the cluster goes down.
const CreatedPathsFile = "created-mountpoints.txt"

// MarkerEnv is set in the environment of every container (and shim) so that
// a cluster teardown can find stray processes; its value is Config.Marker.
const MarkerEnv = "AMBIENT_LOCALCLUSTER"

func (c *Config) defaults() error {
	switch {
	case c.Client == nil:
		return errors.New("nodelet: Config.Client is required")
	case c.Node.Name == "":
		return errors.New("nodelet: Config.Node.Name is required")
	case c.Net == nil:
		return errors.New("nodelet: Config.Net is required")
	case c.Images == nil:
		return errors.New("nodelet: Config.Images is required")
	case c.StateDir == "":
		return errors.New("nodelet: Config.StateDir is required")
	}
	if c.Logger == nil {
		c.Logger = zap.NewNop()
	}
	if c.Backoff == (Backoff{}) {
		c.Backoff = DefaultBackoff
	}
	if c.Backoff.ResetAfter == 0 {
		c.Backoff.ResetAfter = DefaultBackoff.ResetAfter
	}
	if c.Backoff.Max == 0 {
		c.Backoff.Max = DefaultBackoff.Max
	}
	setDur(&c.HeartbeatInterval, 10*time.Second)
	setDur(&c.MaxGracePeriod, 30*time.Second)
	setDur(&c.StopGracePeriod, 5*time.Second)
	setDur(&c.RetryInterval, 2*time.Second)
	setDur(&c.VolumeRefreshInterval, 10*time.Second)
	if c.Marker == "" {
		c.Marker = "1"
	}
	if c.ShimPath == "" {
		c.ShimPath = "/proc/self/exe"
	}
	return nil
}

func setDur(d *time.Duration, def time.Duration) {
	if *d <= 0 {
		*d = def
	}
}
