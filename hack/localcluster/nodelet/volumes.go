package nodelet

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"go.uber.org/zap"
	authv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
)

// ServiceAccountMountPath is where containers find their API credentials.
const ServiceAccountMountPath = "/var/run/secrets/kubernetes.io/serviceaccount"

// autoSAVolume names the service-account volume the nodelet adds when the
// API server did not (pods created before the ServiceAccount admission
// plugin, or a fake clientset).
const autoSAVolume = "kube-api-access-nodelet"

// clientRefs reads ConfigMaps and Secrets of one namespace on demand.
type clientRefs struct {
	ctx    context.Context
	client kubernetes.Interface
	ns     string
}

func (r clientRefs) ConfigMap(name string) (map[string]string, bool, error) {
	cm, err := r.client.CoreV1().ConfigMaps(r.ns).Get(r.ctx, name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, fmt.Errorf("get configmap %s/%s: %w", r.ns, name, err)
	}
	data := map[string]string{}
	for k, v := range cm.Data {
		data[k] = v
	}
	for k, v := range cm.BinaryData {
		data[k] = string(v)
	}
	return data, true, nil
}

func (r clientRefs) Secret(name string) (map[string][]byte, bool, error) {
	s, err := r.client.CoreV1().Secrets(r.ns).Get(r.ctx, name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, fmt.Errorf("get secret %s/%s: %w", r.ns, name, err)
	}
	data := map[string][]byte{}
	for k, v := range s.Data {
		data[k] = v
	}
	for k, v := range s.StringData {
		data[k] = []byte(v)
	}
	return data, true, nil
}

// tokenFile is a projected service-account token kept fresh on disk.
type tokenFile struct {
	path      string
	audiences []string
	expSecs   *int64
	refreshAt time.Time
}

// volumes is what preparing a pod's volumes produced.
type volumes struct {
	dirs   map[string]string // volume name → host path (dir or file)
	tokens []tokenFile
}

// needsAutoSA reports whether the nodelet must add the service-account
// volume itself.
func needsAutoSA(pod *corev1.Pod) bool {
	if pod.Spec.AutomountServiceAccountToken != nil && !*pod.Spec.AutomountServiceAccountToken {
		return false
	}
	for _, cs := range [][]corev1.Container{pod.Spec.InitContainers, pod.Spec.Containers} {
		for _, c := range cs {
			for _, m := range c.VolumeMounts {
				if filepath.Clean(m.MountPath) == ServiceAccountMountPath {
					return false
				}
			}
		}
	}
	return true
}

// prepareVolumes writes every volume of pod under dir/volumes and returns
// where each lives. Tokens are written once here; refreshTokens keeps them fresh.
func (w *worker) prepareVolumes(ctx context.Context, pod *corev1.Pod, addrs PodAddrs) (*volumes, error) {
	refs := clientRefs{ctx: ctx, client: w.cfg.Client, ns: pod.Namespace}
	v := &volumes{dirs: map[string]string{}}
	root := filepath.Join(w.dir, "volumes")
	for _, vol := range pod.Spec.Volumes {
		dir := filepath.Join(root, vol.Name)
		if vol.HostPath != nil {
			p, err := prepareHostPath(w.cfg.Node, vol.HostPath)
			if err != nil {
				return nil, fmt.Errorf("volume %q: %w", vol.Name, err)
			}
			v.dirs[vol.Name] = p
			continue
		}
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return nil, fmt.Errorf("volume %q: %w", vol.Name, err)
		}
		v.dirs[vol.Name] = dir
		files, tokens, err := volumeFiles(refs, pod, vol, addrs, dir)
		if err != nil {
			return nil, fmt.Errorf("volume %q: %w", vol.Name, err)
		}
		v.tokens = append(v.tokens, tokens...)
		if err := writeFiles(dir, files); err != nil {
			return nil, fmt.Errorf("volume %q: %w", vol.Name, err)
		}
	}
	if needsAutoSA(pod) {
		dir := filepath.Join(root, autoSAVolume)
		files := map[string][]byte{"namespace": []byte(pod.Namespace)}
		if w.cfg.APIServerCAFile != "" {
			ca, err := os.ReadFile(w.cfg.APIServerCAFile)
			if err != nil {
				return nil, fmt.Errorf("service-account volume: read API server CA: %w", err)
			}
			files["ca.crt"] = ca
		}
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return nil, fmt.Errorf("service-account volume: %w", err)
		}
		if err := writeFiles(dir, files); err != nil {
			return nil, fmt.Errorf("service-account volume: %w", err)
		}
		v.dirs[autoSAVolume] = dir
		v.tokens = append(v.tokens, tokenFile{path: filepath.Join(dir, "token")})
	}
	for i, t := range v.tokens {
		next, err := w.writeToken(ctx, pod, t)
		if err != nil {
			return nil, err
		}
		v.tokens[i].refreshAt = next
	}
	return v, nil
}

// writeToken asks the TokenRequest API for a token bound to pod and writes
// it atomically; it returns when the token should be refreshed (80% of its
// lifetime).
func (w *worker) writeToken(ctx context.Context, pod *corev1.Pod, t tokenFile) (time.Time, error) {
	sa := pod.Spec.ServiceAccountName
	if sa == "" {
		sa = "default"
	}
	exp := t.expSecs
	if exp == nil {
		d := int64(3607)
		exp = &d
	}
	req := &authv1.TokenRequest{Spec: authv1.TokenRequestSpec{
		Audiences:         t.audiences,
		ExpirationSeconds: exp,
		BoundObjectRef:    &authv1.BoundObjectReference{Kind: "Pod", APIVersion: "v1", Name: pod.Name, UID: pod.UID},
	}}
	now := time.Now()
	resp, err := w.cfg.Client.CoreV1().ServiceAccounts(pod.Namespace).CreateToken(ctx, sa, req, metav1.CreateOptions{})
	if err != nil {
		return time.Time{}, fmt.Errorf("request token for service account %s/%s (does it exist?): %w", pod.Namespace, sa, err)
	}
	if resp.Status.Token == "" {
		return time.Time{}, fmt.Errorf("token request for service account %s/%s returned no token", pod.Namespace, sa)
	}
	if err := writeFiles(filepath.Dir(t.path), map[string][]byte{filepath.Base(t.path): []byte(resp.Status.Token)}); err != nil {
		return time.Time{}, fmt.Errorf("write token: %w", err)
	}
	// The API server may extend a token's life (for 3607 s requests, up to a
	// year); refresh on the requested lifetime anyway, as the kubelet does.
	lifetime := time.Duration(*exp) * time.Second
	if e := resp.Status.ExpirationTimestamp.Time; !e.IsZero() && e.Sub(now) < lifetime {
		lifetime = max(e.Sub(now), 0)
	}
	return now.Add(lifetime * 8 / 10), nil
}

// refreshTokens rewrites pod's tokens before 80% of their lifetime until ctx ends.
func (w *worker) refreshTokens(ctx context.Context, pod *corev1.Pod, tokens []tokenFile) {
	for _, t := range tokens {
		w.bg.Add(1)
		go func() {
			defer w.bg.Done()
			next := t.refreshAt
			for {
				timer := time.NewTimer(max(time.Until(next), time.Second))
				select {
				case <-ctx.Done():
					timer.Stop()
					return
				case <-timer.C:
				}
				n, err := w.writeToken(ctx, pod, t)
				if err != nil {
					if ctx.Err() != nil {
						return
					}
					w.log.Warn("token refresh failed", zap.Error(err), zap.String("path", t.path))
					n = time.Now().Add(10 * time.Second)
				}
				next = n
			}
		}()
	}
}

// volumeFiles computes the files of a configMap, secret, downwardAPI or
// projected volume (relative path → content) and the tokens it holds;
// emptyDir has none.
func volumeFiles(refs RefLookup, pod *corev1.Pod, vol corev1.Volume, addrs PodAddrs, dir string) (map[string][]byte, []tokenFile, error) {
	switch {
	case vol.EmptyDir != nil:
		return nil, nil, nil
	case vol.ConfigMap != nil:
		f, err := configMapFiles(refs, vol.ConfigMap.Name, vol.ConfigMap.Items, vol.ConfigMap.Optional)
		return f, nil, err
	case vol.Secret != nil:
		f, err := secretFiles(refs, vol.Secret.SecretName, vol.Secret.Items, vol.Secret.Optional)
		return f, nil, err
	case vol.DownwardAPI != nil:
		f, err := downwardFiles(pod, vol.DownwardAPI.Items, addrs)
		return f, nil, err
	case vol.Projected != nil:
		files := map[string][]byte{}
		var tokens []tokenFile
		for _, src := range vol.Projected.Sources {
			var f map[string][]byte
			var err error
			switch {
			case src.ConfigMap != nil:
				f, err = configMapFiles(refs, src.ConfigMap.Name, src.ConfigMap.Items, src.ConfigMap.Optional)
			case src.Secret != nil:
				f, err = secretFiles(refs, src.Secret.Name, src.Secret.Items, src.Secret.Optional)
			case src.DownwardAPI != nil:
				f, err = downwardFiles(pod, src.DownwardAPI.Items, addrs)
			case src.ServiceAccountToken != nil:
				t := src.ServiceAccountToken
				var aud []string
				if t.Audience != "" {
					aud = []string{t.Audience}
				}
				tokens = append(tokens, tokenFile{path: filepath.Join(dir, t.Path), audiences: aud, expSecs: t.ExpirationSeconds})
			default:
				err = errors.New("unsupported projected source (only configMap, secret, downwardAPI, serviceAccountToken)")
			}
			if err != nil {
				return nil, nil, err
			}
			for k, b := range f {
				files[k] = b
			}
		}
		return files, tokens, nil
	}
	return nil, nil, errors.New("unsupported volume type in the local cluster (use emptyDir, hostPath, configMap, secret, projected or downwardAPI)")
}

// refreshVolumes rewrites changed ConfigMap, Secret and downward-API files
// every interval until ctx ends, as the kubelet's volume sync does (files
// are replaced atomically; keys that disappear are left in place).
func (w *worker) refreshVolumes(ctx context.Context, interval time.Duration) {
	w.bg.Add(1)
	go func() {
		defer w.bg.Done()
		t := time.NewTicker(interval)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
			pod, _ := w.current()
			refs := clientRefs{ctx: ctx, client: w.cfg.Client, ns: pod.Namespace}
			for _, vol := range pod.Spec.Volumes {
				if vol.EmptyDir != nil || vol.HostPath != nil {
					continue
				}
				dir := filepath.Join(w.dir, "volumes", vol.Name)
				files, _, err := volumeFiles(refs, pod, vol, w.addrs(), dir)
				if err == nil {
					err = writeFiles(dir, files)
				}
				if err != nil && ctx.Err() == nil {
					w.log.Debug("volume refresh failed", zap.String("volume", vol.Name), zap.Error(err))
				}
			}
		}
	}()
}

func prepareHostPath(n Node, hp *corev1.HostPathVolumeSource) (string, error) {
	p, real := MapHostPath(n, hp.Path)
	if real {
		return p, nil
	}
	if _, err := os.Stat(p); err == nil {
		return p, nil
	}
	typ := corev1.HostPathUnset
	if hp.Type != nil {
		typ = *hp.Type
	}
	switch typ {
	case corev1.HostPathFileOrCreate, corev1.HostPathFile:
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return "", fmt.Errorf("hostPath %s: %w", hp.Path, err)
		}
		f, err := os.OpenFile(p, os.O_CREATE|os.O_WRONLY, 0o644)
		if err != nil {
			return "", fmt.Errorf("hostPath %s: %w", hp.Path, err)
		}
		f.Close()
	case corev1.HostPathSocket, corev1.HostPathCharDev, corev1.HostPathBlockDev:
		return "", fmt.Errorf("hostPath %s (%s) does not exist at %s", hp.Path, typ, p)
	default:
		if err := os.MkdirAll(p, 0o755); err != nil {
			return "", fmt.Errorf("hostPath %s: %w", hp.Path, err)
		}
	}
	return p, nil
}

func configMapFiles(refs RefLookup, name string, items []corev1.KeyToPath, opt *bool) (map[string][]byte, error) {
	data, found, err := refs.ConfigMap(name)
	if err != nil {
		return nil, err
	}
	if !found {
		if optional(opt) {
			return nil, nil
		}
		return nil, fmt.Errorf("configmap %q not found", name)
	}
	b := map[string][]byte{}
	for k, v := range data {
		b[k] = []byte(v)
	}
	return keyFiles("configmap", name, b, items, opt)
}

func secretFiles(refs RefLookup, name string, items []corev1.KeyToPath, opt *bool) (map[string][]byte, error) {
	data, found, err := refs.Secret(name)
	if err != nil {
		return nil, err
	}
	if !found {
		if optional(opt) {
			return nil, nil
		}
		return nil, fmt.Errorf("secret %q not found", name)
	}
	return keyFiles("secret", name, data, items, opt)
}

// keyFiles selects keys → relative file paths: all keys, or items.
func keyFiles(kind, name string, data map[string][]byte, items []corev1.KeyToPath, opt *bool) (map[string][]byte, error) {
	out := map[string][]byte{}
	if len(items) == 0 {
		for k, v := range data {
			out[k] = v
		}
		return out, nil
	}
	for _, it := range items {
		v, ok := data[it.Key]
		if !ok {
			if optional(opt) {
				continue
			}
			return nil, fmt.Errorf("key %q of %s %q not found", it.Key, kind, name)
		}
		out[it.Path] = v
	}
	return out, nil
}

func downwardFiles(pod *corev1.Pod, items []corev1.DownwardAPIVolumeFile, addrs PodAddrs) (map[string][]byte, error) {
	out := map[string][]byte{}
	for _, it := range items {
		switch {
		case it.FieldRef != nil:
			v, err := FieldPath(pod, it.FieldRef.FieldPath, addrs)
			if err != nil {
				return nil, err
			}
			out[it.Path] = []byte(v)
		case it.ResourceFieldRef != nil:
			out[it.Path] = []byte("0")
		}
	}
	return out, nil
}

// writeFiles writes files (relative paths) under dir, each atomically
// (temp file + rename) so a reader never sees half a file.
func writeFiles(dir string, files map[string][]byte) error {
	names := make([]string, 0, len(files))
	for k := range files {
		names = append(names, k)
	}
	sort.Strings(names)
	for _, name := range names {
		rel := filepath.Clean("/" + name)
		if rel == "/" || strings.Contains(name, "..") {
			return fmt.Errorf("invalid file path %q", name)
		}
		p := filepath.Join(dir, rel)
		if old, err := os.ReadFile(p); err == nil && bytes.Equal(old, files[name]) {
			continue
		}
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return err
		}
		tmp, err := os.CreateTemp(filepath.Dir(p), ".tmp-*")
		if err != nil {
			return err
		}
		_, werr := tmp.Write(files[name])
		cerr := tmp.Close()
		if err := errors.Join(werr, cerr, os.Chmod(tmp.Name(), 0o644)); err != nil {
			os.Remove(tmp.Name())
			return err
		}
		if err := os.Rename(tmp.Name(), p); err != nil {
			os.Remove(tmp.Name())
			return err
		}
	}
	return nil
}

// removeAll removes a pod's files, tolerating a missing directory.
func removeAll(dir string) error {
	if err := os.RemoveAll(dir); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	return nil
}
