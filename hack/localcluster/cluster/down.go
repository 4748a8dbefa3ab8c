package cluster

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ambient-mesh/ambient/hack/localcluster/netsetup"
	"github.com/ambient-mesh/ambient/hack/localcluster/nodelet"
	"github.com/ambient-mesh/ambient/hack/localcluster/procs"
)

// Down removes everything a local cluster made: every marked process, every
// mount under the state dir, every namespace and link, the created mount
// points and the state dir. It works after a crash and on a machine with no
// cluster (idempotent).
func Down(stateDir string) error {
	var errs []error
	// Processes first: the daemon (and with it the containers) and the control plane.
	if err := procs.Stop(procs.Marked(""), 15*time.Second); err != nil {
		errs = append(errs, err)
	}
	if err := unmountUnder(stateDir); err != nil {
		errs = append(errs, err)
	}
	if err := netsetup.Cleanup(); err != nil {
		errs = append(errs, err)
	}
	if err := removeCreatedDirs(stateDir); err != nil {
		errs = append(errs, err)
	}
	if err := os.RemoveAll(stateDir); err != nil {
		errs = append(errs, fmt.Errorf("remove %s: %w", stateDir, err))
	}
	return errors.Join(errs...)
}

// unmountUnder detaches every mount point below dir, deepest first.
func unmountUnder(dir string) error {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return err
	}
	defer f.Close()
	prefix := filepath.Clean(dir) + "/"
	var points []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) > 4 && strings.HasPrefix(fields[4]+"/", prefix) {
			points = append(points, fields[4])
		}
	}
	sort.Slice(points, func(i, j int) bool { return len(points[i]) > len(points[j]) })
	var errs []error
	for _, p := range points {
		if err := unix.Unmount(p, unix.MNT_DETACH); err != nil && !errors.Is(err, unix.EINVAL) && !errors.Is(err, unix.ENOENT) {
			errs = append(errs, fmt.Errorf("unmount %s: %w", p, err))
		}
	}
	return errors.Join(errs...)
}

// removeCreatedDirs removes the mount points the container shim created
// outside the state dir (listed in each node's nodelet.CreatedPathsFile),
// deepest first; a directory that is not empty is left alone.
func removeCreatedDirs(stateDir string) error {
	var dirs []string
	_ = filepath.WalkDir(stateDir, func(p string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() || d.Name() != nodelet.CreatedPathsFile {
			return nil
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return nil
		}
		for _, l := range strings.Split(string(b), "\n") {
			if l = strings.TrimSpace(l); l != "" && filepath.IsAbs(l) && !strings.HasPrefix(l, stateDir) {
				dirs = append(dirs, l)
			}
		}
		return nil
	})
	sort.Slice(dirs, func(i, j int) bool { return len(dirs[i]) > len(dirs[j]) })
	for _, d := range dirs {
		_ = os.Remove(d) // only if empty; a non-empty one is not ours alone
	}
	return nil
}
