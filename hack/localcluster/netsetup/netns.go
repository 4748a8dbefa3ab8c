package netsetup

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
)

// netnsDir is where iproute2 keeps named network namespaces.
const netnsDir = "/run/netns"

// ensureNetns creates the named network namespace if it does not exist.
func ensureNetns(name string) (string, error) {
	p := filepath.Join(netnsDir, name)
	if h, err := netns.GetFromPath(p); err == nil {
		h.Close()
		return p, nil
	}
	// iproute2 does the bind-mount dance (and the /run/netns shared mount) correctly.
	if out, err := exec.Command("ip", "netns", "add", name).CombinedOutput(); err != nil {
		return "", fmt.Errorf("ip netns add %s: %w: %s", name, err, strings.TrimSpace(string(out)))
	}
	return p, nil
}

// deleteNetns removes a named network namespace; a missing one is not an error.
func deleteNetns(name string) error {
	p := filepath.Join(netnsDir, name)
	if _, err := os.Stat(p); errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if out, err := exec.Command("ip", "netns", "del", name).CombinedOutput(); err != nil {
		return fmt.Errorf("ip netns del %s: %w: %s", name, err, strings.TrimSpace(string(out)))
	}
	return nil
}

// handleAt opens a netlink handle inside the network namespace at path.
func handleAt(path string) (*netlink.Handle, netns.NsHandle, error) {
	ns, err := netns.GetFromPath(path)
	if err != nil {
		return nil, 0, fmt.Errorf("open netns %s: %w", path, err)
	}
	h, err := netlink.NewHandleAt(ns)
	if err != nil {
		ns.Close()
		return nil, 0, fmt.Errorf("netlink handle in %s: %w", path, err)
	}
	return h, ns, nil
}

// InNetns runs fn on an OS thread that has entered the network namespace at
// path. The thread is never returned to the Go scheduler (it exits with the
// goroutine), so a failure to switch back cannot leak a namespace.
func InNetns(path string, fn func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread() // no Unlock: the thread dies with this goroutine
		ns, err := netns.GetFromPath(path)
		if err != nil {
			errc <- fmt.Errorf("open netns %s: %w", path, err)
			return
		}
		defer ns.Close()
		if err := netns.Set(ns); err != nil {
			errc <- fmt.Errorf("enter netns %s: %w", path, err)
			return
		}
		errc <- fn()
	}()
	return <-errc
}

// setSysctls writes net sysctls (keys like "net/ipv4/ip_forward") inside a
// network namespace; /proc/sys/net resolves to the calling thread's namespace.
func setSysctls(path string, kv map[string]string) error {
	return InNetns(path, func() error {
		for k, v := range kv {
			if err := os.WriteFile(filepath.Join("/proc/sys", k), []byte(v), 0o644); err != nil {
				return fmt.Errorf("sysctl %s=%s in %s: %w", k, v, path, err)
			}
		}
		return nil
	})
}
