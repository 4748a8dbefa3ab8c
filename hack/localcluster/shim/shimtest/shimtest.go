package shimtest

import (
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"testing"

	"github.com/ambient-mesh/ambient/hack/localcluster/shim"
	"golang.org/x/sys/unix"
)

// Dispatch runs the shim and exits when the process was started as
// `<test binary> run-container <spec>` or `exec-container <spec> [--] argv...`,
// like the daemon's main does; otherwise it returns. Call it first in TestMain.
func Dispatch() {
	if len(os.Args) < 3 {
		return
	}
	var err error
	switch os.Args[1] {
	case "run-container":
		err = shim.Main(os.Args[2])
	case "exec-container":
		argv := os.Args[3:]
		if len(argv) > 0 && argv[0] == "--" {
			argv = argv[1:]
		}
		err = shim.Exec(os.Args[2], argv)
	default:
		return
	}
	fmt.Fprintf(os.Stderr, "shim: %v\n", err)
	os.Exit(255)
}

// SkipUnlessRoot skips t when not running as root.
func SkipUnlessRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root (namespaces and mounts)")
	}
}

// NewNetns creates a network namespace with loopback up, pinned by a bind
// mount in a temporary directory, and returns its path and inode. It is
// removed when the test ends.
func NewNetns(t testing.TB) (path string, inode uint64) {
	t.Helper()
	SkipUnlessRoot(t)
	path = filepath.Join(t.TempDir(), "netns")
	if err := os.WriteFile(path, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := unix.Open("/proc/thread-self/ns/net", unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			runtime.UnlockOSThread()
			errc <- err
			return
		}
		defer unix.Close(orig)
		err = newNetnsOnThread(path)
		if serr := unix.Setns(orig, unix.CLONE_NEWNET); serr != nil {
			// Leave the thread locked: it dies with this goroutine.
			errc <- fmt.Errorf("restore netns: %w", serr)
			return
		}
		runtime.UnlockOSThread()
		errc <- err
	}()
	if err := <-errc; err != nil {
		t.Fatalf("create netns: %v", err)
	}
	t.Cleanup(func() { _ = unix.Unmount(path, unix.MNT_DETACH) })
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		t.Fatal(err)
	}
	return path, st.Ino
}

func newNetnsOnThread(path string) error {
	if err := unix.Unshare(unix.CLONE_NEWNET); err != nil {
		return fmt.Errorf("unshare: %w", err)
	}
	if err := unix.Mount("/proc/thread-self/ns/net", path, "", unix.MS_BIND, ""); err != nil {
		return fmt.Errorf("pin netns: %w", err)
	}
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("socket: %w", err)
	}
	defer unix.Close(fd)
	ifr, err := unix.NewIfreq("lo")
	if err != nil {
		return err
	}
	ifr.SetUint16(unix.IFF_UP | unix.IFF_LOOPBACK | unix.IFF_RUNNING)
	if err := unix.IoctlIfreq(fd, unix.SIOCSIFFLAGS, ifr); err != nil {
		return fmt.Errorf("loopback up: %w", err)
	}
	return nil
}
