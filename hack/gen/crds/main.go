// Command crds copies the CRD manifests the mesh uses from the pinned Go
// modules into charts/base/crds, so they are never written by hand:
//
//   - sigs.k8s.io/gateway-api: every gateway.networking.k8s.io CRD of
//     config/crd/experimental. The experimental channel is a superset of the
//     standard one and is what Istio's documentation installs for the
//     HTTPRoute fields our waypoints implement beyond the standard channel
//     (spec.rules[].retry): with the standard CRD the API server silently
//     drops them. The x-k8s.io CRDs there and the ValidatingAdmissionPolicy
//     (not a CRD) are skipped;
//   - istio.io/api: AuthorizationPolicy, PeerAuthentication and
//     RequestAuthentication out of kubernetes/customresourcedefinitions.gen.yaml
//     (RequestAuthentication is not enforced yet; it is installed so manifests
//     written for Istio ambient apply unchanged).
//
// The module versions are the ones go.mod pins (`go mod download -json`), so
// the output is reproducible. Run from anywhere in the module:
//
//	go run ./hack/gen/crds        (or: go generate ./charts)
package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"

	"sigs.k8s.io/yaml"
)

// gatewayChannel is the Gateway API release channel the base chart ships.
const gatewayChannel = "experimental"

// istioCRDs are the Istio CRDs the base chart ships.
var istioCRDs = map[string]bool{
	"authorizationpolicies.security.istio.io":  true,
	"peerauthentications.security.istio.io":    true,
	"requestauthentications.security.istio.io": true,
}

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "crds:", err)
		os.Exit(1)
	}
}

func run() error {
	root, err := moduleRoot()
	if err != nil {
		return err
	}
	out := filepath.Join(root, "charts", "base", "crds")
	if err := os.RemoveAll(out); err != nil {
		return fmt.Errorf("clean %s: %w", out, err)
	}
	if err := os.MkdirAll(out, 0o755); err != nil {
		return fmt.Errorf("create %s: %w", out, err)
	}

	gw, err := download(root, "sigs.k8s.io/gateway-api")
	if err != nil {
		return err
	}
	dir := filepath.Join(gw.Dir, "config", "crd", gatewayChannel)
	files, err := filepath.Glob(filepath.Join(dir, "*.yaml"))
	if err != nil || len(files) == 0 {
		return fmt.Errorf("no Gateway API CRDs in %s (module zip layout changed?): %v", dir, err)
	}
	sort.Strings(files)
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			return fmt.Errorf("read %s: %w", f, err)
		}
		for _, doc := range splitDocs(data) {
			name, ok, err := crdName(doc)
			if err != nil {
				return fmt.Errorf("%s: %w", f, err)
			}
			if !ok || !strings.HasSuffix(name, ".gateway.networking.k8s.io") {
				continue // the ValidatingAdmissionPolicy of vap_safeupgrades.yaml, x-k8s.io CRDs
			}
			src := fmt.Sprintf("%s@%s config/crd/%s/%s", gw.Path, gw.Version, gatewayChannel, filepath.Base(f))
			if err := write(out, name, src, doc); err != nil {
				return err
			}
		}
	}

	ist, err := download(root, "istio.io/api")
	if err != nil {
		return err
	}
	f := filepath.Join(ist.Dir, "kubernetes", "customresourcedefinitions.gen.yaml")
	data, err := os.ReadFile(f)
	if err != nil {
		return fmt.Errorf("read %s: %w", f, err)
	}
	found := 0
	for _, doc := range splitDocs(data) {
		name, ok, err := crdName(doc)
		if err != nil {
			return fmt.Errorf("%s: %w", f, err)
		}
		if !ok || !istioCRDs[name] {
			continue
		}
		found++
		src := fmt.Sprintf("%s@%s kubernetes/customresourcedefinitions.gen.yaml", ist.Path, ist.Version)
		if err := write(out, name, src, doc); err != nil {
			return err
		}
	}
	if found != len(istioCRDs) {
		return fmt.Errorf("found %d of the %d Istio CRDs in %s", found, len(istioCRDs), f)
	}
	return nil
}

type module struct{ Path, Version, Dir, Error string }

// download returns the directory of the module at the version go.mod pins.
func download(root, path string) (module, error) {
	cmd := exec.Command("go", "mod", "download", "-json", path)
	cmd.Dir = root
	cmd.Stderr = os.Stderr
	b, err := cmd.Output()
	var m module
	if jerr := json.Unmarshal(b, &m); jerr != nil && err == nil {
		err = jerr
	}
	if err != nil || m.Error != "" || m.Dir == "" {
		return m, fmt.Errorf("go mod download %s: %v %s", path, err, m.Error)
	}
	return m, nil
}

func moduleRoot() (string, error) {
	b, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		return "", fmt.Errorf("go env GOMOD: %w", err)
	}
	gomod := strings.TrimSpace(string(b))
	if gomod == "" || gomod == os.DevNull {
		return "", fmt.Errorf("not inside the module: run from the repository")
	}
	return filepath.Dir(gomod), nil
}

// splitDocs splits a multi-document YAML stream, keeping each document's bytes.
func splitDocs(data []byte) [][]byte {
	var docs [][]byte
	for _, d := range bytes.Split(data, []byte("\n---\n")) {
		if len(bytes.TrimSpace(d)) > 0 {
			docs = append(docs, d)
		}
	}
	return docs
}

// crdName returns metadata.name when doc is a CustomResourceDefinition.
func crdName(doc []byte) (string, bool, error) {
	var obj struct {
		Kind     string `json:"kind"`
		Metadata struct {
			Name string `json:"name"`
		} `json:"metadata"`
	}
	if err := yaml.Unmarshal(doc, &obj); err != nil {
		return "", false, fmt.Errorf("parse YAML: %w", err)
	}
	return obj.Metadata.Name, obj.Kind == "CustomResourceDefinition", nil
}

func write(dir, name, src string, doc []byte) error {
	var b bytes.Buffer
	fmt.Fprintf(&b, "# Code generated by hack/gen/crds from %s. DO NOT EDIT.\n", src)
	// Drop the source's own leading comment lines; keep the document verbatim.
	for bytes.HasPrefix(doc, []byte("#")) {
		_, rest, _ := bytes.Cut(doc, []byte("\n"))
		doc = rest
	}
	doc = bytes.TrimPrefix(doc, []byte("---\n"))
	b.Write(bytes.TrimRight(doc, "\n"))
	b.WriteString("\n")
	path := filepath.Join(dir, name+".yaml")
	if err := os.WriteFile(path, b.Bytes(), 0o644); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}
