package nodelet

import (
	"fmt"
	"path/filepath"
	"sort"
	"strings"
)

// ImageResolver maps a container image reference to the absolute path of a
// locally built binary.
type ImageResolver interface {
	Resolve(image string) (path string, err error)
}

// TableResolver resolves an image by its name (ImageName) in Table, a map
// of name → absolute binary path.
type TableResolver struct {
	Table map[string]string
}

// NewDirResolver maps each name to <binDir>/<name>.
func NewDirResolver(binDir string, names ...string) TableResolver {
	t := TableResolver{Table: map[string]string{}}
	for _, n := range names {
		t.Table[n] = filepath.Join(binDir, n)
	}
	return t
}

// Resolve implements ImageResolver.
func (t TableResolver) Resolve(image string) (string, error) {
	if p, ok := t.Table[ImageName(image)]; ok {
		return p, nil
	}
	known := make([]string, 0, len(t.Table))
	for n := range t.Table {
		known = append(known, n)
	}
	sort.Strings(known)
	return "", fmt.Errorf("image %q has no local binary; known images: %s (build it into the cluster's bin dir or use one of those)", image, strings.Join(known, ", "))
}

// ImageName is the last path element of an image reference's repository,
// without registry, tag or digest: "ghcr.io/ambient-mesh/ztunnel:1.0",
// "localhost:5000/ambient/ztunnel@sha256:..." and "ztunnel" all give
// "ztunnel".
func ImageName(ref string) string {
	ref = strings.TrimSpace(ref)
	if i := strings.Index(ref, "@"); i >= 0 {
		ref = ref[:i]
	}
	last := ref
	if i := strings.LastIndex(ref, "/"); i >= 0 {
		last = ref[i+1:]
	}
	if i := strings.Index(last, ":"); i >= 0 {
		last = last[:i]
	}
	return last
}
