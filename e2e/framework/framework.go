package framework

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
)

var (
	kubeconfig  = flag.String("kubeconfig", os.Getenv("AMBIENT_E2E_KUBECONFIG"), "use this cluster instead of bringing up the local cluster ($AMBIENT_E2E_KUBECONFIG)")
	binDir      = flag.String("bin-dir", os.Getenv("AMBIENT_BIN_DIR"), "the project's binaries (default: <repo>/_output/bin; $AMBIENT_BIN_DIR)")
	stateDir    = flag.String("state-dir", envOr("AMBIENT_CLUSTER_STATE", "/tmp/ambient-localcluster"), "local cluster state dir ($AMBIENT_CLUSTER_STATE)")
	nodes       = flag.Int("nodes", 2, "local cluster node count")
	keepCluster = flag.Bool("keep-cluster", false, "leave the local cluster up after the tests")
)

// Env is the cluster the tests run against.
type Env struct {
	Kubeconfig string
	Config     *rest.Config
	Client     kubernetes.Interface
	// StateDir is the local cluster's state dir; "" for an external cluster.
	StateDir string
	BinDir   string
}

var env *Env

// Main brings the cluster up, runs the tests and tears it down. Call it from
// TestMain. Setup functions run once the cluster is up, before the tests (e.g.
// InstallMesh); a failing one fails the run.
func Main(m *testing.M, setup ...func() error) {
	flag.Parse()
	code, err := run(m, setup)
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e:", err)
		if code == 0 {
			code = 1
		}
	}
	os.Exit(code)
}

func run(m *testing.M, setup []func() error) (int, error) {
	e := &Env{Kubeconfig: *kubeconfig, BinDir: *binDir}
	if e.BinDir == "" {
		root, err := repoRoot()
		if err != nil {
			return 1, err
		}
		e.BinDir = filepath.Join(root, "_output", "bin")
	}
	if e.Kubeconfig == "" {
		if os.Geteuid() != 0 {
			return 1, fmt.Errorf("the local cluster needs root; run as root or pass -kubeconfig")
		}
		e.StateDir = *stateDir
		e.Kubeconfig = filepath.Join(e.StateDir, "kubeconfig")
		lc := filepath.Join(e.BinDir, "localcluster")
		_, statErr := os.Stat(e.Kubeconfig)
		wasUp := statErr == nil && exec.Command(lc, "status", "--state-dir", e.StateDir).Run() == nil
		if !wasUp {
			// Whatever a crashed run left behind goes first.
			_ = exec.Command(lc, "down", "--state-dir", e.StateDir).Run()
			t0 := time.Now()
			cmd := exec.Command(lc, "up", "--nodes", fmt.Sprint(*nodes), "--state-dir", e.StateDir, "--bin-dir", e.BinDir)
			cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
			if err := cmd.Run(); err != nil {
				_ = exec.Command(lc, "down", "--state-dir", e.StateDir).Run()
				return 1, fmt.Errorf("bring up the local cluster: %w", err)
			}
			fmt.Fprintf(os.Stderr, "e2e: local cluster up in %s\n", time.Since(t0).Round(time.Millisecond))
			if !*keepCluster {
				defer func() {
					cmd := exec.Command(lc, "down", "--state-dir", e.StateDir)
					cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
					if err := cmd.Run(); err != nil {
						fmt.Fprintln(os.Stderr, "e2e: cluster down:", err)
					}
				}()
			}
		}
	}
	rc, err := clientcmd.BuildConfigFromFlags("", e.Kubeconfig)
	if err != nil {
		return 1, fmt.Errorf("load kubeconfig %s: %w", e.Kubeconfig, err)
	}
	rc.QPS, rc.Burst = 50, 100
	e.Config = rc
	if e.Client, err = kubernetes.NewForConfig(rc); err != nil {
		return 1, err
	}
	env = e
	for _, fn := range setup {
		if err := fn(); err != nil {
			return 1, fmt.Errorf("setup: %w", err)
		}
	}
	return m.Run(), nil
}

func envOr(k, def string) string {
	if v := os.Getenv(k); v != "" {
		return v
	}
	return def
}

// repoRoot finds the module root from the working directory.
func repoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", fmt.Errorf("no go.mod above the working directory")
		}
		dir = parent
	}
}

// T is a test's view of the cluster: its own namespace and helpers.
type T struct {
	*testing.T
	*Env
	Namespace string
	Ctx       context.Context
}

// New creates the test's namespace (with labels) and registers its clean-up.
func New(t *testing.T, labels map[string]string) *T {
	t.Helper()
	if env == nil {
		t.Fatal("framework.Main was not called from TestMain")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	name := strings.ToLower(strings.NewReplacer("/", "-", "_", "-").Replace(t.Name()))
	if len(name) > 40 {
		name = name[:40]
	}
	ns := fmt.Sprintf("e2e-%s-%04x", strings.Trim(name, "-"), rand.IntN(0x10000))
	if _, err := env.Client.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{
		ObjectMeta: metav1.ObjectMeta{Name: ns, Labels: labels},
	}, metav1.CreateOptions{}); err != nil {
		cancel()
		t.Fatalf("create namespace %s: %v", ns, err)
	}
	ft := &T{T: t, Env: env, Namespace: ns, Ctx: ctx}
	t.Cleanup(func() {
		if t.Failed() {
			ft.dumpPods()
		}
		err := env.Client.CoreV1().Namespaces().Delete(context.Background(), ns, metav1.DeleteOptions{})
		if err != nil && !apierrors.IsNotFound(err) {
			t.Logf("delete namespace %s: %v", ns, err)
		}
		cancel()
	})
	return ft
}

// Eventually polls cond every interval until it returns nil or timeout
// passes, then fails the test with the last error. It is a liveness bound,
// not a performance assertion.
func (t *T) Eventually(timeout time.Duration, what string, cond func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	var err error
	for {
		if err = cond(); err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: still not true after %s: %v", what, timeout, err)
		}
		time.Sleep(250 * time.Millisecond)
	}
}

// Existing is New for a namespace that already exists, e.g. "default" for
// manifests copied unchanged from documentation that names it. It adds
// labels to the namespace and, at clean-up, puts its labels back and deletes
// what a test creates there (Deployments, Pods, Services other than
// "kubernetes", ServiceAccounts other than "default", AuthorizationPolicies,
// PeerAuthentications, Gateway API Gateways and routes), waiting until its
// pods are gone so the next test starts clean.
func Existing(t *testing.T, name string, labels map[string]string) *T {
	t.Helper()
	if env == nil {
		t.Fatal("framework.Main was not called from TestMain")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	nsc := env.Client.CoreV1().Namespaces()
	ns, err := nsc.Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		cancel()
		t.Fatalf("get namespace %s: %v", name, err)
	}
	before := ns.Labels
	ns.Labels = map[string]string{}
	for k, v := range before {
		ns.Labels[k] = v
	}
	for k, v := range labels {
		ns.Labels[k] = v
	}
	if _, err := nsc.Update(ctx, ns, metav1.UpdateOptions{}); err != nil {
		cancel()
		t.Fatalf("label namespace %s: %v", name, err)
	}
	ft := &T{T: t, Env: env, Namespace: name, Ctx: ctx}
	t.Cleanup(func() {
		defer cancel()
		if t.Failed() {
			ft.dumpPods()
		}
		cctx, ccancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer ccancel()
		if err := ft.emptyNamespace(cctx); err != nil {
			t.Errorf("clean namespace %s: %v", name, err)
		}
		if ns, err := nsc.Get(cctx, name, metav1.GetOptions{}); err == nil {
			ns.Labels = before
			if _, err := nsc.Update(cctx, ns, metav1.UpdateOptions{}); err != nil {
				t.Errorf("restore labels of namespace %s: %v", name, err)
			}
		}
	})
	return ft
}

// emptyNamespace deletes what Existing promises to delete and waits for the
// namespace's pods to be gone.
func (t *T) emptyNamespace(ctx context.Context) error {
	ns, all := t.Namespace, metav1.ListOptions{}
	del := metav1.DeleteOptions{}
	var errs []error
	dyn, err := dynamic.NewForConfig(t.Config)
	if err != nil {
		return err
	}
	for _, gvr := range []schema.GroupVersionResource{
		{Group: "security.istio.io", Version: "v1", Resource: "authorizationpolicies"},
		{Group: "security.istio.io", Version: "v1", Resource: "peerauthentications"},
		HTTPRoutes, GRPCRoutes,
		{Group: "gateway.networking.k8s.io", Version: "v1", Resource: "gateways"},
	} {
		if err := dyn.Resource(gvr).Namespace(ns).DeleteCollection(ctx, del, all); err != nil && !apierrors.IsNotFound(err) {
			errs = append(errs, fmt.Errorf("delete %s: %w", gvr.Resource, err))
		}
	}
	if err := t.Client.AppsV1().Deployments(ns).DeleteCollection(ctx, del, all); err != nil {
		errs = append(errs, fmt.Errorf("delete deployments: %w", err))
	}
	if err := t.Client.CoreV1().Pods(ns).DeleteCollection(ctx, del, all); err != nil {
		errs = append(errs, fmt.Errorf("delete pods: %w", err))
	}
	if svcs, err := t.Client.CoreV1().Services(ns).List(ctx, all); err == nil {
		for _, s := range svcs.Items {
			if s.Name != "kubernetes" {
				if err := t.Client.CoreV1().Services(ns).Delete(ctx, s.Name, del); err != nil && !apierrors.IsNotFound(err) {
					errs = append(errs, err)
				}
			}
		}
	}
	if sas, err := t.Client.CoreV1().ServiceAccounts(ns).List(ctx, all); err == nil {
		for _, sa := range sas.Items {
			if sa.Name != "default" {
				if err := t.Client.CoreV1().ServiceAccounts(ns).Delete(ctx, sa.Name, del); err != nil && !apierrors.IsNotFound(err) {
					errs = append(errs, err)
				}
			}
		}
	}
	for {
		pods, err := t.Client.CoreV1().Pods(ns).List(ctx, all)
		if err == nil && len(pods.Items) == 0 {
			break
		}
		if ctx.Err() != nil {
			errs = append(errs, fmt.Errorf("pods still present: %w", ctx.Err()))
			break
		}
		time.Sleep(500 * time.Millisecond)
	}
	return errors.Join(errs...)
}
