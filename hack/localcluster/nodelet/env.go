package nodelet

import (
	"fmt"
	"sort"
	"strings"

	corev1 "k8s.io/api/core/v1"
)

// RefLookup reads ConfigMaps and Secrets of the pod's namespace. found is
// false (with a nil error) when the object does not exist.
type RefLookup interface {
	ConfigMap(name string) (data map[string]string, found bool, err error)
	Secret(name string) (data map[string][]byte, found bool, err error)
}

// PodAddrs are the addresses the downward API exposes.
type PodAddrs struct {
	PodIPs  []string
	HostIPs []string
}

// EnvVar is one resolved environment variable.
type EnvVar struct{ Name, Value string }

// ResolveEnv computes a container's environment as the kubelet does: base
// (service variables, HOSTNAME, ...) first, then envFrom in order, then env in
// order, each env value $(VAR)-expanded against the variables defined before
// it. Later definitions override earlier ones; the result keeps the order of
// first definition.
func ResolveEnv(pod *corev1.Pod, c *corev1.Container, addrs PodAddrs, base []EnvVar, refs RefLookup) ([]EnvVar, error) {
	var out []EnvVar
	idx := map[string]int{}
	set := func(k, v string) {
		if i, ok := idx[k]; ok {
			out[i].Value = v
			return
		}
		idx[k] = len(out)
		out = append(out, EnvVar{k, v})
	}
	for _, e := range base {
		set(e.Name, e.Value)
	}
	for _, ef := range c.EnvFrom {
		switch {
		case ef.ConfigMapRef != nil:
			data, found, err := refs.ConfigMap(ef.ConfigMapRef.Name)
			if err != nil {
				return nil, err
			}
			if !found {
				if optional(ef.ConfigMapRef.Optional) {
					continue
				}
				return nil, fmt.Errorf("configmap %q not found (envFrom of container %q)", ef.ConfigMapRef.Name, c.Name)
			}
			for _, k := range sortedKeys(data) {
				set(ef.Prefix+k, data[k])
			}
		case ef.SecretRef != nil:
			data, found, err := refs.Secret(ef.SecretRef.Name)
			if err != nil {
				return nil, err
			}
			if !found {
				if optional(ef.SecretRef.Optional) {
					continue
				}
				return nil, fmt.Errorf("secret %q not found (envFrom of container %q)", ef.SecretRef.Name, c.Name)
			}
			for _, k := range sortedKeys(data) {
				set(ef.Prefix+k, string(data[k]))
			}
		}
	}
	for _, e := range c.Env {
		if e.ValueFrom == nil {
			set(e.Name, Expand(e.Value, lookupIn(out, idx)))
			continue
		}
		v, ok, err := envValueFrom(pod, e, addrs, refs)
		if err != nil {
			return nil, fmt.Errorf("env %s of container %q: %w", e.Name, c.Name, err)
		}
		if ok {
			set(e.Name, v)
		}
	}
	return out, nil
}

func lookupIn(env []EnvVar, idx map[string]int) func(string) (string, bool) {
	return func(k string) (string, bool) {
		i, ok := idx[k]
		if !ok {
			return "", false
		}
		return env[i].Value, true
	}
}

func envValueFrom(pod *corev1.Pod, e corev1.EnvVar, addrs PodAddrs, refs RefLookup) (string, bool, error) {
	vf := e.ValueFrom
	switch {
	case vf.FieldRef != nil:
		v, err := FieldPath(pod, vf.FieldRef.FieldPath, addrs)
		return v, err == nil, err
	case vf.ConfigMapKeyRef != nil:
		r := vf.ConfigMapKeyRef
		data, found, err := refs.ConfigMap(r.Name)
		if err != nil {
			return "", false, err
		}
		v, ok := data[r.Key]
		if !found || !ok {
			if optional(r.Optional) {
				return "", false, nil
			}
			return "", false, fmt.Errorf("key %q of configmap %q not found", r.Key, r.Name)
		}
		return v, true, nil
	case vf.SecretKeyRef != nil:
		r := vf.SecretKeyRef
		data, found, err := refs.Secret(r.Name)
		if err != nil {
			return "", false, err
		}
		v, ok := data[r.Key]
		if !found || !ok {
			if optional(r.Optional) {
				return "", false, nil
			}
			return "", false, fmt.Errorf("key %q of secret %q not found", r.Key, r.Name)
		}
		return string(v), true, nil
	case vf.ResourceFieldRef != nil:
		// No resource accounting: report "0" like an unlimited container
		// would report its node's capacity; good enough for GOMAXPROCS-style use.
		return "0", true, nil
	}
	return "", false, fmt.Errorf("unsupported valueFrom")
}

// FieldPath evaluates a downward-API fieldRef path.
func FieldPath(pod *corev1.Pod, path string, addrs PodAddrs) (string, error) {
	switch path {
	case "metadata.name":
		return pod.Name, nil
	case "metadata.namespace":
		return pod.Namespace, nil
	case "metadata.uid":
		return string(pod.UID), nil
	case "metadata.labels":
		return formatMap(pod.Labels), nil
	case "metadata.annotations":
		return formatMap(pod.Annotations), nil
	case "spec.nodeName":
		return pod.Spec.NodeName, nil
	case "spec.serviceAccountName":
		return pod.Spec.ServiceAccountName, nil
	case "status.podIP":
		return first(addrs.PodIPs), nil
	case "status.podIPs":
		return strings.Join(addrs.PodIPs, ","), nil
	case "status.hostIP":
		return first(addrs.HostIPs), nil
	case "status.hostIPs":
		return strings.Join(addrs.HostIPs, ","), nil
	}
	for prefix, m := range map[string]map[string]string{"metadata.labels": pod.Labels, "metadata.annotations": pod.Annotations} {
		if rest, ok := strings.CutPrefix(path, prefix+"["); ok && strings.HasSuffix(rest, "]") {
			key := strings.Trim(strings.TrimSuffix(rest, "]"), `'"`)
			return m[key], nil
		}
	}
	return "", fmt.Errorf("unsupported fieldRef %q", path)
}

// formatMap renders labels/annotations as the downward API does: sorted
// key="value" lines.
func formatMap(m map[string]string) string {
	var b strings.Builder
	for i, k := range sortedKeys(m) {
		if i > 0 {
			b.WriteByte('\n')
		}
		fmt.Fprintf(&b, "%s=%q", k, m[k])
	}
	return b.String()
}

// Expand replaces $(VAR) references with values from lookup, as the kubelet
// does: $$ is an escaped $, and references to undefined variables are kept
// verbatim.
func Expand(s string, lookup func(string) (string, bool)) string {
	if !strings.Contains(s, "$") {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] != '$' || i+1 >= len(s) {
			b.WriteByte(s[i])
			continue
		}
		switch s[i+1] {
		case '$':
			b.WriteByte('$')
			i++
		case '(':
			end := strings.IndexByte(s[i+2:], ')')
			if end < 0 {
				b.WriteString(s[i:])
				return b.String()
			}
			name := s[i+2 : i+2+end]
			if v, ok := lookup(name); ok && name != "" {
				b.WriteString(v)
			} else {
				b.WriteString(s[i : i+3+end])
			}
			i += 2 + end
		default:
			b.WriteByte('$')
		}
	}
	return b.String()
}

// BuildArgv merges image entrypoint, command and args with Kubernetes
// semantics: the image's entrypoint is its binary; command replaces it;
// args follow. command[0] naming a known image binary (isImageBinary, by
// name or path) runs that binary. All elements are $(VAR)-expanded.
func BuildArgv(imageBinary string, command, args []string, env []EnvVar, isImageBinary func(string) (string, bool)) []string {
	idx := map[string]int{}
	for i, e := range env {
		idx[e.Name] = i
	}
	lookup := lookupIn(env, idx)
	var argv []string
	if len(command) == 0 {
		argv = []string{imageBinary}
	} else {
		c0 := Expand(command[0], lookup)
		if p, ok := isImageBinary(c0); ok {
			c0 = p
		}
		argv = append(argv, c0)
		for _, c := range command[1:] {
			argv = append(argv, Expand(c, lookup))
		}
	}
	for _, a := range args {
		argv = append(argv, Expand(a, lookup))
	}
	return argv
}

func optional(b *bool) bool { return b != nil && *b }

func first(s []string) string {
	if len(s) == 0 {
		return ""
	}
	return s[0]
}

func sortedKeys[V any](m map[string]V) []string {
	ks := make([]string, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	return ks
}
