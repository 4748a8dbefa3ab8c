package main

import (
	"archive/tar"
	"bytes"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

// buildStatic compiles a tiny static program, so the test needs no `make build`.
func buildStatic(t *testing.T, dir string) string {
	t.Helper()
	src := filepath.Join(dir, "main.go")
	if err := os.WriteFile(src, []byte("package main\n\nfunc main() { println(\"hello\") }\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(dir, "hello")
	cmd := exec.Command("go", "build", "-o", bin, src)
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOFLAGS=-mod=mod", "GO111MODULE=off")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build test binary: %v\n%s", err, out)
	}
	return bin
}

// TestImageRoundTrip writes an image tarball and reads it back: the tag, the
// entrypoint and the binary in the layer, byte for byte.
func TestImageRoundTrip(t *testing.T) {
	dir := t.TempDir()
	bin := buildStatic(t, dir)
	want, err := os.ReadFile(bin)
	if err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "hello.tar")
	if err := WriteTarball(bin, "ambient/hello:dev", out); err != nil {
		t.Fatal(err)
	}
	tag, _ := name.NewTag("ambient/hello:dev")
	img, err := tarball.ImageFromPath(out, &tag)
	if err != nil {
		t.Fatalf("read back by tag: %v", err)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	if got := cf.Config.Entrypoint; len(got) != 1 || got[0] != "/usr/local/bin/hello" {
		t.Errorf("entrypoint %q, want [/usr/local/bin/hello]", got)
	}
	if cf.OS != "linux" || cf.Architecture != runtime.GOARCH {
		t.Errorf("platform %s/%s, want linux/%s", cf.OS, cf.Architecture, runtime.GOARCH)
	}
	layers, err := img.Layers()
	if err != nil || len(layers) != 1 {
		t.Fatalf("layers: %d, %v; want 1", len(layers), err)
	}
	rc, err := layers[0].Uncompressed()
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	files := map[string]*tar.Header{}
	var got []byte
	tr := tar.NewReader(rc)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		files[h.Name] = h
		if h.Name == "usr/local/bin/hello" {
			if got, err = io.ReadAll(tr); err != nil {
				t.Fatal(err)
			}
		}
	}
	h := files["usr/local/bin/hello"]
	if h == nil || h.Mode&0o111 == 0 {
		t.Fatalf("binary missing or not executable in the layer: %v", files)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("binary in the layer differs from the input (%d vs %d bytes)", len(got), len(want))
	}
	if files["tmp/"] == nil || files["usr/local/"] == nil {
		t.Errorf("missing directories in the layer: %v", files)
	}

	// Reproducible: the same binary gives the same digest.
	again, err := Build(bin)
	if err != nil {
		t.Fatal(err)
	}
	d1, _ := img.Digest()
	d2, _ := again.Digest()
	if d1 != d2 {
		t.Errorf("digest changed between builds: %s vs %s", d1, d2)
	}
}

func TestRefusesNonStatic(t *testing.T) {
	dir := t.TempDir()
	script := filepath.Join(dir, "script")
	if err := os.WriteFile(script, []byte("#!/bin/sh\necho hi\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	if _, err := Build(script); err == nil || !strings.Contains(err.Error(), "not an ELF") {
		t.Errorf("Build(script) = %v, want a not-ELF error", err)
	}
	// A dynamically linked system binary, when there is one.
	if _, err := os.Stat("/bin/sh"); err == nil {
		if _, err := Build("/bin/sh"); err == nil || !strings.Contains(err.Error(), "CGO_ENABLED=0") {
			t.Errorf("Build(/bin/sh) = %v, want the dynamically-linked error", err)
		}
	}
	if _, err := Build(filepath.Join(dir, "missing")); err == nil || !strings.Contains(err.Error(), "make build") {
		t.Errorf("Build(missing) = %v, want a hint to run make build", err)
	}
}
