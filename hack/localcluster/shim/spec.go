package shim

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
)

// Spec describes one container process. It is written by the node agent and
// read by Main/Exec in the child process.
type Spec struct {
	// Argv is the full argument vector; Argv[0] is an absolute path or a name
	// looked up in the PATH of Env.
	Argv []string `json:"argv"`
	// Env is the complete environment, KEY=VALUE.
	Env []string `json:"env"`
	// Dir is the working directory inside the container's view ("" keeps the
	// daemon's).
	Dir string `json:"dir,omitempty"`
	// NetnsPath is the network namespace to join ("" keeps the current one).
	NetnsPath string `json:"netnsPath,omitempty"`
	// Mounts are bind mounts done in order in a private mount namespace.
	Mounts []Mount `json:"mounts,omitempty"`
	// CreatedPathsFile, when set, gets one line appended per mount point
	// (directory or empty file) the shim had to create on the host, so that a
	// cluster teardown can remove them (deepest paths come last).
	CreatedPathsFile string `json:"createdPathsFile,omitempty"`
}

// Mount is one bind mount of a host path at a path of the container's view.
type Mount struct {
	Source   string `json:"source"`
	Target   string `json:"target"`
	ReadOnly bool   `json:"readOnly,omitempty"`
}

// WriteSpec writes s as JSON to path atomically.
func WriteSpec(path string, s Spec) error {
	b, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		return fmt.Errorf("encode container spec: %w", err)
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), ".spec-*")
	if err != nil {
		return fmt.Errorf("write container spec: %w", err)
	}
	if _, err := tmp.Write(b); err != nil {
		tmp.Close()
		os.Remove(tmp.Name())
		return fmt.Errorf("write container spec %s: %w", tmp.Name(), err)
	}
	if err := tmp.Close(); err != nil {
		os.Remove(tmp.Name())
		return fmt.Errorf("write container spec %s: %w", tmp.Name(), err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		os.Remove(tmp.Name())
		return fmt.Errorf("write container spec: %w", err)
	}
	return nil
}

// ReadSpec reads a Spec written by WriteSpec.
func ReadSpec(path string) (Spec, error) {
	var s Spec
	b, err := os.ReadFile(path)
	if err != nil {
		return s, fmt.Errorf("read container spec: %w", err)
	}
	if err := json.Unmarshal(b, &s); err != nil {
		return s, fmt.Errorf("decode container spec %s: %w", path, err)
	}
	if len(s.Argv) == 0 {
		return s, fmt.Errorf("container spec %s has an empty argv", path)
	}
	return s, nil
}

// LookPath resolves name like execvp does, with the PATH from env (a
// container's environment), falling back to a standard PATH.
func LookPath(name string, env []string) (string, error) {
	if filepath.IsAbs(name) || containsSlash(name) {
		return name, nil
	}
	path := "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
	for _, kv := range env {
		if len(kv) > 5 && kv[:5] == "PATH=" {
			path = kv[5:]
		}
	}
	for _, dir := range filepath.SplitList(path) {
		if dir == "" {
			dir = "."
		}
		p := filepath.Join(dir, name)
		if fi, err := os.Stat(p); err == nil && !fi.IsDir() && fi.Mode()&0o111 != 0 {
			return p, nil
		}
	}
	return "", fmt.Errorf("executable %q not found in PATH %q: use an absolute path in the container command or map the image to a binary", name, path)
}

func containsSlash(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] == '/' {
			return true
		}
	}
	return false
}
