package waypointctl

import (
	"slices"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"
)

var testConfig = Config{
	Image:       "ambient/waypoint:test",
	XDSAddress:  "istiod-lite.istio-system.svc:15012",
	TrustDomain: "example.org",
}.WithDefaults()

func hboneListener() gatewayv1.Listener {
	return gatewayv1.Listener{Name: "mesh", Port: HBONEPort, Protocol: HBONEProtocol}
}

func waypoint(name string, mods ...func(*gatewayv1.Gateway)) *gatewayv1.Gateway {
	gw := &gatewayv1.Gateway{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "ns1", UID: types.UID("uid-" + name), Generation: 3},
		Spec: gatewayv1.GatewaySpec{
			GatewayClassName: ClassName,
			Listeners:        []gatewayv1.Listener{hboneListener()},
		},
	}
	for _, m := range mods {
		m(gw)
	}
	return gw
}

func withLabel(k, v string) func(*gatewayv1.Gateway) {
	return func(gw *gatewayv1.Gateway) {
		if gw.Labels == nil {
			gw.Labels = map[string]string{}
		}
		gw.Labels[k] = v
	}
}

func withAnnotation(k, v string) func(*gatewayv1.Gateway) {
	return func(gw *gatewayv1.Gateway) {
		if gw.Annotations == nil {
			gw.Annotations = map[string]string{}
		}
		gw.Annotations[k] = v
	}
}

func TestDesired(t *testing.T) {
	tests := []struct {
		name        string
		gw          *gatewayv1.Gateway
		waypointFor string
		replicas    int32
		extraLabel  string // from spec.infrastructure.labels, on every object
	}{
		{name: "default waypoint-for", gw: waypoint("wp"), waypointFor: "service", replicas: 1},
		{name: "waypoint-for workload", gw: waypoint("wp", withLabel(LabelWaypointFor, "workload")), waypointFor: "workload", replicas: 1},
		{name: "waypoint-for all", gw: waypoint("wp", withLabel(LabelWaypointFor, "all")), waypointFor: "all", replicas: 1},
		{name: "waypoint-for none", gw: waypoint("wp", withLabel(LabelWaypointFor, "none")), waypointFor: "none", replicas: 1},
		{name: "replicas annotation", gw: waypoint("wp", withAnnotation(AnnotationReplicas, "3")), waypointFor: "service", replicas: 3},
		{name: "bad replicas annotation falls back", gw: waypoint("wp", withAnnotation(AnnotationReplicas, "many")), waypointFor: "service", replicas: 1},
		{name: "infrastructure labels", gw: waypoint("wp", func(gw *gatewayv1.Gateway) {
			gw.Spec.Infrastructure = &gatewayv1.GatewayInfrastructure{Labels: map[gatewayv1.LabelKey]gatewayv1.LabelValue{
				"team": "payments", LabelGatewayName: "spoofed",
			}}
		}), waypointFor: "service", replicas: 1, extraLabel: "payments"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sa, dep, svc := Desired(tt.gw, testConfig)
			for _, m := range []metav1.Object{sa, dep, svc} {
				if m.GetName() != "wp" || m.GetNamespace() != "ns1" {
					t.Errorf("%T named %s/%s, want ns1/wp", m, m.GetNamespace(), m.GetName())
				}
				checkOwner(t, m, tt.gw)
				l := m.GetLabels()
				if l[LabelGatewayName] != "wp" || l[LabelGatewayClassName] != ClassName || l[LabelManaged] != ManagedValue {
					t.Errorf("%T labels %v", m, l)
				}
				if got := l["team"]; got != tt.extraLabel {
					t.Errorf("%T infrastructure label team=%q, want %q", m, got, tt.extraLabel)
				}
			}
			if got := svc.Labels[LabelWaypointFor]; got != tt.waypointFor {
				t.Errorf("service %s=%q, want %q", LabelWaypointFor, got, tt.waypointFor)
			}
			if got := *dep.Spec.Replicas; got != tt.replicas {
				t.Errorf("replicas %d, want %d", got, tt.replicas)
			}
			checkDeployment(t, dep)
			checkService(t, svc)
		})
	}
}

func checkOwner(t *testing.T, m metav1.Object, gw *gatewayv1.Gateway) {
	t.Helper()
	refs := m.GetOwnerReferences()
	if len(refs) != 1 {
		t.Fatalf("%T owner references %v, want one", m, refs)
	}
	r := refs[0]
	if r.APIVersion != "gateway.networking.k8s.io/v1" || r.Kind != "Gateway" || r.Name != gw.Name || r.UID != gw.UID || r.Controller == nil || !*r.Controller {
		t.Errorf("%T owner reference %+v", m, r)
	}
}

func checkDeployment(t *testing.T, dep *appsv1.Deployment) {
	t.Helper()
	if got := dep.Spec.Selector.MatchLabels; len(got) != 1 || got[LabelGatewayName] != "wp" {
		t.Errorf("selector %v", got)
	}
	pl := dep.Spec.Template.Labels
	for k, v := range dep.Spec.Selector.MatchLabels {
		if pl[k] != v {
			t.Errorf("pod labels %v do not match selector", pl)
		}
	}
	if pl[LabelDataplaneMode] != "none" || pl[LabelSidecarInject] != "false" {
		t.Errorf("pod labels %v: waypoint pods must opt out of capture", pl)
	}
	if pl[LabelTunnel] != "http" || pl[LabelManaged] != ManagedValue {
		t.Errorf("pod labels %v: the model must see a native-HBONE waypoint pod", pl)
	}
	ps := dep.Spec.Template.Spec
	if ps.ServiceAccountName != "wp" || ps.TerminationGracePeriodSeconds == nil || *ps.TerminationGracePeriodSeconds != 5 {
		t.Errorf("serviceAccountName %q grace %v", ps.ServiceAccountName, ps.TerminationGracePeriodSeconds)
	}
	if len(ps.Containers) != 1 {
		t.Fatalf("containers %d", len(ps.Containers))
	}
	c := ps.Containers[0]
	if c.Image != "ambient/waypoint:test" {
		t.Errorf("image %q", c.Image)
	}
	wantArgs := []string{
		"--xds-address=istiod-lite.istio-system.svc:15012",
		"--ca-address=istiod-lite.istio-system.svc:15012",
		"--trust-domain=example.org",
		"--name=wp",
		"--namespace=ns1",
		"--log-level=info",
		"--token-file=/var/run/secrets/tokens/istio-token",
		"--root-cert=/var/run/secrets/istio/root-cert.pem",
	}
	if !slices.Equal(c.Args, wantArgs) {
		t.Errorf("args\n got %q\nwant %q", c.Args, wantArgs)
	}
	env := map[string]string{}
	for _, e := range c.Env {
		if e.ValueFrom != nil && e.ValueFrom.FieldRef != nil {
			env[e.Name] = e.ValueFrom.FieldRef.FieldPath
		}
	}
	for name, path := range map[string]string{
		"POD_NAME": "metadata.name", "POD_NAMESPACE": "metadata.namespace", "NODE_NAME": "spec.nodeName",
		"INSTANCE_IP": "status.podIP", "SERVICE_ACCOUNT": "spec.serviceAccountName",
	} {
		if env[name] != path {
			t.Errorf("env %s fieldRef %q, want %q", name, env[name], path)
		}
	}
	ports := map[int32]string{}
	for _, p := range c.Ports {
		ports[p.ContainerPort] = p.Name
	}
	for _, p := range []int32{15008, 15020, 15021, 15000} {
		if _, ok := ports[p]; !ok {
			t.Errorf("container port %d missing: %v", p, ports)
		}
	}
	rp := c.ReadinessProbe
	if rp == nil || rp.HTTPGet == nil || rp.HTTPGet.Path != "/healthz/ready" || rp.HTTPGet.Port.IntVal != 15021 {
		t.Errorf("readiness probe %+v", rp)
	}
	var token *corev1.ServiceAccountTokenProjection
	for _, v := range ps.Volumes {
		if v.Projected != nil {
			for _, s := range v.Projected.Sources {
				if s.ServiceAccountToken != nil {
					token = s.ServiceAccountToken
				}
			}
		}
	}
	if token == nil || token.Audience != "istio-ca" || token.Path != "istio-token" {
		t.Errorf("projected token %+v", token)
	}
	mounted := false
	for _, m := range c.VolumeMounts {
		mounted = mounted || m.MountPath == "/var/run/secrets/tokens"
	}
	if !mounted {
		t.Errorf("token not mounted at /var/run/secrets/tokens: %+v", c.VolumeMounts)
	}
}

func checkService(t *testing.T, svc *corev1.Service) {
	t.Helper()
	if svc.Spec.Type != corev1.ServiceTypeClusterIP || len(svc.Spec.Selector) != 1 || svc.Spec.Selector[LabelGatewayName] != "wp" {
		t.Errorf("service type %q selector %v", svc.Spec.Type, svc.Spec.Selector)
	}
	got := map[string]int32{}
	for _, p := range svc.Spec.Ports {
		got[p.Name] = p.Port
		if p.Name == "mesh" && (p.AppProtocol == nil || *p.AppProtocol != "all") {
			t.Errorf("mesh port appProtocol %v", p.AppProtocol)
		}
	}
	if got["mesh"] != 15008 || got["status-port"] != 15021 || len(got) != 2 {
		t.Errorf("service ports %v", got)
	}
}

func TestDesiredResourcesAndConfig(t *testing.T) {
	cfg := testConfig
	cfg.CAAddress = "ca.istio-system.svc:15012"
	cfg.Resources = corev1.ResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("100m")}}
	_, dep, _ := Desired(waypoint("wp"), cfg)
	c := dep.Spec.Template.Spec.Containers[0]
	if !slices.Contains(c.Args, "--ca-address=ca.istio-system.svc:15012") {
		t.Errorf("args %q lack the CA address", c.Args)
	}
	if q := c.Resources.Requests[corev1.ResourceCPU]; q.String() != "100m" {
		t.Errorf("cpu request %s", q.String())
	}
	// Desired must not alias the Config's maps.
	c.Resources.Requests[corev1.ResourceCPU] = resource.MustParse("1")
	if q := cfg.Resources.Requests[corev1.ResourceCPU]; q.String() != "100m" {
		t.Errorf("Desired aliases cfg.Resources")
	}
}

func TestConfigValidate(t *testing.T) {
	if err := (Config{XDSAddress: "x:1"}).Validate(); err == nil {
		t.Error("empty image accepted")
	}
	if err := (Config{Image: "i"}).Validate(); err == nil {
		t.Error("empty xDS address accepted")
	}
	if err := testConfig.Validate(); err != nil {
		t.Error(err)
	}
}
