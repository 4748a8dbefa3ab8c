package framework

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/ambient-mesh/ambient/e2e/apps/echo/client"
	"github.com/ambient-mesh/ambient/hack/localcluster/netsetup"
)

// EchoImage is the test workload's image; the local cluster runs
// _output/bin/echo for it.
const EchoImage = "ambient/echo:dev"

// Echo ports.
const (
	EchoTCPPort  = 9000
	EchoHTTPPort = 8080
	EchoGRPCPort = 7070
)

// EchoOptions shape an echo Deployment.
type EchoOptions struct {
	Name, Version, ServiceAccount, Node string
	Replicas                            int32
	Labels                              map[string]string
}

func fieldEnv(name, path string) corev1.EnvVar {
	return corev1.EnvVar{Name: name, ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: path}}}
}

// echoPodSpec is the pod spec of an echo server.
func echoPodSpec(o EchoOptions) corev1.PodSpec {
	spec := corev1.PodSpec{
		ServiceAccountName: o.ServiceAccount,
		Containers: []corev1.Container{{
			Name:  "echo",
			Image: EchoImage,
			Args:  []string{"server"},
			Env: []corev1.EnvVar{
				fieldEnv("POD_NAME", "metadata.name"), fieldEnv("POD_NAMESPACE", "metadata.namespace"),
				fieldEnv("SERVICE_ACCOUNT", "spec.serviceAccountName"), fieldEnv("NODE_NAME", "spec.nodeName"),
				fieldEnv("POD_IP", "status.podIP"), {Name: "VERSION", Value: o.Version},
			},
			Ports: []corev1.ContainerPort{
				{Name: "tcp", ContainerPort: EchoTCPPort}, {Name: "http", ContainerPort: EchoHTTPPort},
				{Name: "grpc", ContainerPort: EchoGRPCPort},
			},
			ReadinessProbe: &corev1.Probe{
				ProbeHandler:  corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: "/healthz", Port: intstr.FromString("http")}},
				PeriodSeconds: 1,
			},
		}},
	}
	if o.Node != "" {
		spec.NodeSelector = map[string]string{"kubernetes.io/hostname": o.Node}
	}
	return spec
}

// DeployEcho creates an echo server Deployment (and its ServiceAccount) and
// a Service named o.Name selecting app=o.Name.
func (t *T) DeployEcho(o EchoOptions) {
	t.Helper()
	if o.Replicas == 0 {
		o.Replicas = 1
	}
	if o.Version == "" {
		o.Version = "v1"
	}
	if o.ServiceAccount == "" {
		o.ServiceAccount = o.Name
	}
	_, _ = t.Client.CoreV1().ServiceAccounts(t.Namespace).Create(t.Ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: o.ServiceAccount}}, metav1.CreateOptions{})
	labels := map[string]string{"app": o.Name, "version": o.Version}
	for k, v := range o.Labels {
		labels[k] = v
	}
	dep := &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: o.Name + "-" + o.Version, Labels: labels},
		Spec: appsv1.DeploymentSpec{
			Replicas: &o.Replicas,
			Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": o.Name, "version": o.Version}},
			Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: labels}, Spec: echoPodSpec(o)},
		},
	}
	if _, err := t.Client.AppsV1().Deployments(t.Namespace).Create(t.Ctx, dep, metav1.CreateOptions{}); err != nil {
		t.Fatalf("create deployment %s: %v", dep.Name, err)
	}
	svc := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: o.Name, Labels: map[string]string{"app": o.Name}},
		Spec: corev1.ServiceSpec{
			Selector: map[string]string{"app": o.Name},
			Ports: []corev1.ServicePort{
				{Name: "tcp", Port: EchoTCPPort, TargetPort: intstr.FromString("tcp")},
				{Name: "http", Port: 80, TargetPort: intstr.FromString("http")},
				{Name: "grpc", Port: EchoGRPCPort, TargetPort: intstr.FromString("grpc")},
			},
		},
	}
	if _, err := t.Client.CoreV1().Services(t.Namespace).Create(t.Ctx, svc, metav1.CreateOptions{}); err != nil && !strings.Contains(err.Error(), "already exists") {
		t.Fatalf("create service %s: %v", svc.Name, err)
	}
}

// WaitDeploymentReady waits until every replica of the deployment is ready.
func (t *T) WaitDeploymentReady(name string, timeout time.Duration) {
	t.Helper()
	t.Eventually(timeout, "deployment "+name+" ready", func() error {
		d, err := t.Client.AppsV1().Deployments(t.Namespace).Get(t.Ctx, name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		want := int32(1)
		if d.Spec.Replicas != nil {
			want = *d.Spec.Replicas
		}
		if d.Status.ObservedGeneration < d.Generation || d.Status.ReadyReplicas != want || d.Status.UpdatedReplicas != want {
			return fmt.Errorf("%d/%d ready, %d updated", d.Status.ReadyReplicas, want, d.Status.UpdatedReplicas)
		}
		return nil
	})
}

// Pods lists the pods matching a label selector.
func (t *T) Pods(selector string) []corev1.Pod {
	t.Helper()
	l, err := t.Client.CoreV1().Pods(t.Namespace).List(t.Ctx, metav1.ListOptions{LabelSelector: selector})
	if err != nil {
		t.Fatalf("list pods %s: %v", selector, err)
	}
	return l.Items
}

// EchoSummary is the echo client's JSON summary.
type EchoSummary = client.Result

// RunEchoClient runs `echo client ARGS...` as a pod on node (any node if
// ""), waits for it to finish and returns its parsed summary.
func (t *T) RunEchoClient(name, node string, args ...string) client.Result {
	t.Helper()
	return t.RunEchoClientAs(name, node, "", args...)
}

// RunEchoClientAs is RunEchoClient with the pod running as serviceAccount
// (its mesh identity).
func (t *T) RunEchoClientAs(name, node, serviceAccount string, args ...string) client.Result {
	t.Helper()
	return t.RunEchoClientWith(ClientPod{Name: name, Node: node, ServiceAccount: serviceAccount}, args...)
}

// ClientPod shapes the pod of RunEchoClientWith.
type ClientPod struct {
	Name, Node, ServiceAccount string
	Labels                     map[string]string // added to app=<name>
}

// RunEchoClientWith runs `echo client ARGS...` in a pod shaped by p, waits for
// it to finish and returns its parsed summary.
func (t *T) RunEchoClientWith(p ClientPod, args ...string) client.Result {
	t.Helper()
	return t.StartEchoClient(p, args...).Wait(2 * time.Minute)
}

// EchoClient is a client pod started by StartEchoClient.
type EchoClient struct {
	t    *T
	name string
}

// StartEchoClient creates the client pod of RunEchoClientWith and returns
// without waiting for it, e.g. to keep a request loop going while a test
// breaks something.
func (t *T) StartEchoClient(p ClientPod, args ...string) *EchoClient {
	t.Helper()
	labels := map[string]string{"app": p.Name}
	for k, v := range p.Labels {
		labels[k] = v
	}
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: p.Name, Labels: labels},
		Spec: corev1.PodSpec{
			ServiceAccountName: p.ServiceAccount,
			RestartPolicy:      corev1.RestartPolicyNever,
			Containers: []corev1.Container{{
				Name: "client", Image: EchoImage, Args: append([]string{"client", "--allow-errors"}, args...),
			}},
		},
	}
	if p.Node != "" {
		pod.Spec.NodeSelector = map[string]string{"kubernetes.io/hostname": p.Node}
	}
	if _, err := t.Client.CoreV1().Pods(t.Namespace).Create(t.Ctx, pod, metav1.CreateOptions{}); err != nil {
		t.Fatalf("create client pod %s: %v", p.Name, err)
	}
	return &EchoClient{t: t, name: p.Name}
}

// Wait waits up to timeout for the client pod to finish and returns its
// parsed summary. Call it from the test's goroutine.
func (c *EchoClient) Wait(timeout time.Duration) client.Result {
	t := c.t
	t.Helper()
	var done *corev1.Pod
	t.Eventually(timeout, "client pod "+c.name+" finished", func() error {
		p, err := t.Client.CoreV1().Pods(t.Namespace).Get(t.Ctx, c.name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		if p.Status.Phase != corev1.PodSucceeded && p.Status.Phase != corev1.PodFailed {
			return fmt.Errorf("phase %s", p.Status.Phase)
		}
		done = p
		return nil
	})
	out := t.PodLog(done, "client")
	res, err := parseResult(out)
	if err != nil {
		t.Fatalf("client pod %s (uid %s, phase %s): %v; output:\n%s", c.name, done.UID, done.Status.Phase, err, out)
	}
	return res
}

// parseResult finds the client's JSON summary: the last line that parses.
func parseResult(out []byte) (client.Result, error) {
	var last client.Result
	found := false
	sc := bufio.NewScanner(bytes.NewReader(out))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := bytes.TrimSpace(sc.Bytes())
		if !bytes.HasPrefix(line, []byte("{")) || !bytes.Contains(line, []byte(`"target"`)) {
			continue
		}
		var r client.Result
		if json.Unmarshal(line, &r) == nil {
			last, found = r, true
		}
	}
	if !found {
		return last, fmt.Errorf("no JSON summary in the client's output")
	}
	return last, nil
}

// PodLog returns a container's output. On the local cluster it reads the
// node agent's log file.
func (t *T) PodLog(p *corev1.Pod, container string) []byte {
	t.Helper()
	if t.StateDir == "" {
		b, err := t.Client.CoreV1().Pods(p.Namespace).GetLogs(p.Name, &corev1.PodLogOptions{Container: container}).DoRaw(t.Ctx)
		if err != nil {
			t.Fatalf("logs of %s/%s: %v", p.Name, container, err)
		}
		return b
	}
	pattern := filepath.Join(t.StateDir, "nodes", "*", "pods", fmt.Sprintf("%s_%s_%s", p.Namespace, p.Name, p.UID), container+".log")
	matches, _ := filepath.Glob(pattern)
	if len(matches) == 0 {
		t.Fatalf("no log file %s", pattern)
	}
	b, err := os.ReadFile(matches[0])
	if err != nil {
		t.Fatalf("read %s: %v", matches[0], err)
	}
	return b
}

// dumpPods logs the status and output of every pod in the test's namespace.
func (t *T) dumpPods() {
	l, err := t.Client.CoreV1().Pods(t.Namespace).List(t.Ctx, metav1.ListOptions{})
	if err != nil {
		t.Logf("list pods for the failure report: %v", err)
		return
	}
	for _, p := range l.Items {
		b, _ := json.MarshalIndent(p.Status, "", "  ")
		t.Logf("pod %s on %s: %s", p.Name, p.Spec.NodeName, b)
		if t.StateDir == "" {
			continue
		}
		logs, _ := filepath.Glob(filepath.Join(t.StateDir, "nodes", "*", "pods", fmt.Sprintf("%s_%s_%s", p.Namespace, p.Name, p.UID), "*.log"))
		for _, f := range logs {
			b, _ := os.ReadFile(f)
			if len(b) > 4000 {
				b = b[len(b)-4000:]
			}
			t.Logf("--- %s (tail)\n%s", f, b)
		}
	}
}

// WaitServiceReachable waits until the Service's ClusterIP answers on port
// from every node of the local cluster, i.e. each node's kube-proxy has
// programmed it (a new Service takes a moment, as on any cluster). On an
// external cluster it only waits for ready endpoints.
func (t *T) WaitServiceReachable(name string, port int32) {
	t.Helper()
	svc, err := t.Client.CoreV1().Services(t.Namespace).Get(t.Ctx, name, metav1.GetOptions{})
	if err != nil {
		t.Fatalf("get service %s: %v", name, err)
	}
	addr := net.JoinHostPort(svc.Spec.ClusterIP, fmt.Sprint(port))
	nodes, _ := filepath.Glob("/run/netns/" + netsetup.Prefix + "-node*")
	for _, ns := range nodes {
		if strings.Count(filepath.Base(ns), "-") != 1 { // pod namespaces are amb-nodeN-<hash>
			continue
		}
		t.Eventually(60*time.Second, "service "+addr+" reachable from "+filepath.Base(ns), func() error {
			return netsetup.InNetns(ns, func() error {
				c, err := net.DialTimeout("tcp", addr, time.Second)
				if err != nil {
					return err
				}
				return c.Close()
			})
		})
	}
}
