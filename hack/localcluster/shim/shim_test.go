package shim_test

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ambient-mesh/ambient/hack/localcluster/shim"
	"github.com/ambient-mesh/ambient/hack/localcluster/shim/shimtest"
)

func TestMain(m *testing.M) {
	shimtest.Dispatch()
	os.Exit(m.Run())
}

func TestLookPath(t *testing.T) {
	for _, tc := range []struct {
		name string
		env  []string
		want string
		err  bool
	}{
		{name: "/bin/sh", want: "/bin/sh"},
		{name: "./x", want: "./x"},
		{name: "sh", env: []string{"PATH=/bin"}, want: "/bin/sh"},
		{name: "no-such-binary-xyz", env: []string{"PATH=/bin"}, err: true},
	} {
		got, err := shim.LookPath(tc.name, tc.env)
		if (err != nil) != tc.err || got != tc.want {
			t.Errorf("LookPath(%q) = %q, %v; want %q, err=%v", tc.name, got, err, tc.want, tc.err)
		}
	}
}

// TestRunContainer runs a shell through the shim (the test binary acts as
// the shim) and checks that it sees its volume at the mount path, read-only,
// runs in the pod's network namespace, and that the host does not see the
// mount.
func TestRunContainer(t *testing.T) {
	shimtest.SkipUnlessRoot(t)
	netns, ino := shimtest.NewNetns(t)
	dir := t.TempDir()
	vol := filepath.Join(dir, "vol")
	if err := os.MkdirAll(vol, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(vol, "file"), []byte("hello-volume\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	fileSrc := filepath.Join(dir, "single")
	if err := os.WriteFile(fileSrc, []byte("single-file\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	target := filepath.Join(dir, "root", "mnt", "x")
	fileTarget := filepath.Join(dir, "root", "etc", "conf.txt")
	created := filepath.Join(dir, "created.txt")
	spec := shim.Spec{
		Argv: []string{"sh", "-c", `cat mnt/x/file; cat etc/conf.txt; readlink /proc/self/ns/net; echo $FOO; touch mnt/x/new 2>/dev/null && echo WRITABLE || echo READONLY`},
		Env:  []string{"FOO=bar", "PATH=/usr/bin:/bin"},
		Dir:  filepath.Join(dir, "root"),
		Mounts: []shim.Mount{
			{Source: vol, Target: target, ReadOnly: true},
			{Source: fileSrc, Target: fileTarget},
		},
		NetnsPath:        netns,
		CreatedPathsFile: created,
	}
	specPath := filepath.Join(dir, "spec.json")
	if err := shim.WriteSpec(specPath, spec); err != nil {
		t.Fatal(err)
	}
	out := runShim(t, "run-container", specPath)
	want := fmt.Sprintf("hello-volume\nsingle-file\nnet:[%d]\nbar\nREADONLY\n", ino)
	if out != want {
		t.Errorf("container output:\n%s\nwant:\n%s", out, want)
	}
	// The mount lives only in the container's mount namespace.
	ents, err := os.ReadDir(target)
	if err != nil {
		t.Fatalf("mount point not created on the host: %v", err)
	}
	if len(ents) != 0 {
		t.Errorf("host sees %d entries at the container's mount path, want none", len(ents))
	}
	rec, err := os.ReadFile(created)
	if err != nil {
		t.Fatal(err)
	}
	wantRec := strings.Join([]string{
		filepath.Join(dir, "root"), filepath.Join(dir, "root", "mnt"), target,
		filepath.Join(dir, "root", "etc"), fileTarget,
	}, "\n") + "\n"
	if string(rec) != wantRec {
		t.Errorf("recorded paths:\n%s\nwant:\n%s", rec, wantRec)
	}

	// Exec mode: same view, another command.
	out = runShim(t, "exec-container", specPath, "cat", filepath.Join(target, "file"))
	if out != "hello-volume\n" {
		t.Errorf("exec output %q", out)
	}
}

func TestRunContainerErrors(t *testing.T) {
	shimtest.SkipUnlessRoot(t)
	dir := t.TempDir()
	specPath := filepath.Join(dir, "spec.json")
	if err := shim.WriteSpec(specPath, shim.Spec{Argv: []string{"/bin/true"}, NetnsPath: filepath.Join(dir, "missing")}); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("/proc/self/exe", "run-container", specPath)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	err := cmd.Run()
	if err == nil || !strings.Contains(stderr.String(), "open pod network namespace") {
		t.Errorf("run with a missing netns: err=%v stderr=%q", err, stderr.String())
	}
}

func runShim(t *testing.T, args ...string) string {
	t.Helper()
	cmd := exec.Command("/proc/self/exe", args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("shim %v: %v\nstderr: %s", args, err, stderr.String())
	}
	return stdout.String()
}
