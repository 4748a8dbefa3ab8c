package charts

import (
	"embed"
	"fmt"
	"io/fs"
	"strings"

	"helm.sh/helm/v3/pkg/chart"
	"helm.sh/helm/v3/pkg/chart/loader"
)

//go:generate go run ../hack/gen/crds

//go:embed all:base all:istiod-lite all:ztunnel
var files embed.FS

// Names of the embedded charts, in install order.
const (
	Base       = "base"
	IstiodLite = "istiod-lite"
	Ztunnel    = "ztunnel"
)

// All lists the charts in install order (uninstall in reverse).
var All = []string{Base, IstiodLite, Ztunnel}

// FS returns the embedded chart files; each chart is a top-level directory.
func FS() fs.FS { return files }

// Load returns the named embedded chart.
func Load(name string) (*chart.Chart, error) {
	var bf []*loader.BufferedFile
	err := fs.WalkDir(files, name, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		data, err := files.ReadFile(p)
		if err != nil {
			return err
		}
		rel, _ := strings.CutPrefix(p, name+"/")
		bf = append(bf, &loader.BufferedFile{Name: rel, Data: data})
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("read embedded chart %q: %w", name, err)
	}
	if len(bf) == 0 {
		return nil, fmt.Errorf("no embedded chart %q (have %v)", name, All)
	}
	c, err := loader.LoadFiles(bf)
	if err != nil {
		return nil, fmt.Errorf("load embedded chart %q: %w", name, err)
	}
	return c, nil
}
