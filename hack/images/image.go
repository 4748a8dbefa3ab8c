package main

import (
	"archive/tar"
	"bytes"
	"debug/elf"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"runtime"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

// Default are the images `make images` builds.
var Default = []string{"ztunnel", "waypoint", "istiod-lite", "ambientctl"}

// BinDir is where a binary sits in its image.
const BinDir = "/usr/local/bin"

// WriteTarball packages the static binary at bin as the image ref and writes
// it as a `docker load` tarball to out.
func WriteTarball(bin, ref, out string) error {
	tag, err := name.NewTag(ref)
	if err != nil {
		return fmt.Errorf("image name %q: %w", ref, err)
	}
	img, err := Build(bin)
	if err != nil {
		return err
	}
	if err := tarball.WriteToFile(out, tag, img); err != nil {
		return fmt.Errorf("write %s: %w", out, err)
	}
	return nil
}

// Build returns an image of the static binary bin on an empty base:
// /usr/local/bin/<name> (the entrypoint) and a world-writable /tmp. Files
// carry no timestamps and the config no creation time, so the same binary
// always gives the same image digest.
func Build(bin string) (v1.Image, error) {
	data, err := os.ReadFile(bin)
	if err != nil {
		return nil, fmt.Errorf("read binary (run `make build` first): %w", err)
	}
	if err := checkStatic(data); err != nil {
		return nil, fmt.Errorf("%s: %w", bin, err)
	}
	entry := path.Join(BinDir, path.Base(bin))
	layerTar, err := layerTar(entry, data)
	if err != nil {
		return nil, err
	}
	layer, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(layerTar)), nil
	})
	if err != nil {
		return nil, fmt.Errorf("layer of %s: %w", bin, err)
	}
	img, err := mutate.AppendLayers(empty.Image, layer)
	if err != nil {
		return nil, fmt.Errorf("image of %s: %w", bin, err)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, fmt.Errorf("image config of %s: %w", bin, err)
	}
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture = "linux", runtime.GOARCH
	cf.Config.Entrypoint = []string{entry}
	cf.Config.Env = []string{"PATH=" + BinDir + ":/usr/bin:/bin"}
	cf.Config.WorkingDir = "/"
	img, err = mutate.ConfigFile(img, cf)
	if err != nil {
		return nil, fmt.Errorf("image config of %s: %w", bin, err)
	}
	return img, nil
}

// checkStatic refuses a dynamically linked ELF: the image has no libc.
func checkStatic(data []byte) error {
	f, err := elf.NewFile(bytes.NewReader(data))
	if err != nil {
		return fmt.Errorf("not an ELF binary: %w", err)
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			return errors.New("dynamically linked: the image has no libc; build with CGO_ENABLED=0 (`make build`)")
		}
	}
	return nil
}

// layerTar is the layer's uncompressed tar: the directories, /tmp and the
// binary, owned by root.
func layerTar(entry string, data []byte) ([]byte, error) {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	var hdrs []*tar.Header
	for d := path.Dir(entry); d != "/"; d = path.Dir(d) {
		hdrs = append([]*tar.Header{{Typeflag: tar.TypeDir, Name: d[1:] + "/", Mode: 0o755}}, hdrs...)
	}
	hdrs = append(hdrs, &tar.Header{Typeflag: tar.TypeDir, Name: "tmp/", Mode: 0o1777})
	for _, h := range hdrs {
		if err := tw.WriteHeader(h); err != nil {
			return nil, fmt.Errorf("layer tar: %w", err)
		}
	}
	if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: entry[1:], Mode: 0o755, Size: int64(len(data))}); err != nil {
		return nil, fmt.Errorf("layer tar: %w", err)
	}
	if _, err := tw.Write(data); err != nil {
		return nil, fmt.Errorf("layer tar: %w", err)
	}
	if err := tw.Close(); err != nil {
		return nil, fmt.Errorf("layer tar: %w", err)
	}
	return buf.Bytes(), nil
}
