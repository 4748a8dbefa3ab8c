package waypointctl

import (
	"fmt"
	"maps"
	"strconv"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"
)

// Names Istio uses for waypoints.
const (
	// ClassName is the GatewayClass of waypoints.
	ClassName = "istio-waypoint"
	// ControllerName is the controllerName Istio gives the built-in
	// istio-waypoint GatewayClass (constants.ManagedGatewayMeshController).
	ControllerName = "istio.io/mesh-controller"
	// ManagedValue is the gateway.istio.io/managed label value Istio puts on
	// the objects it deploys for this controller.
	ManagedValue = "istio.io-mesh-controller"

	LabelGatewayName      = "gateway.networking.k8s.io/gateway-name"
	LabelGatewayClassName = "gateway.networking.k8s.io/gateway-class-name"
	LabelManaged          = "gateway.istio.io/managed"
	LabelWaypointFor      = "istio.io/waypoint-for"
	// LabelDataplaneMode=none keeps waypoint pods out of ztunnel capture:
	// a waypoint speaks HBONE itself (Istio's waypoint template sets it).
	LabelDataplaneMode = "istio.io/dataplane-mode"
	LabelSidecarInject = "sidecar.istio.io/inject"
	// LabelTunnel=http says the pod receives HBONE itself (native tunnel):
	// istiod-lite's model reads it to send HBONE, not plaintext, to
	// waypoint pods.
	LabelTunnel        = "networking.istio.io/tunnel"
	LabelCanonicalName = "service.istio.io/canonical-name"
	LabelCanonicalRev  = "service.istio.io/canonical-revision"

	// AnnotationReplicas on the Gateway overrides Config.Replicas (ours:
	// Istio leaves replicas to an HPA, which we do not deploy).
	AnnotationReplicas = "ambient-mesh.io/waypoint-replicas"

	// WaypointForDefault applies when the Gateway has no istio.io/waypoint-for.
	WaypointForDefault = "service"

	// HBONEProtocol and HBONEPort make the one listener a waypoint needs.
	HBONEProtocol gatewayv1.ProtocolType = "HBONE"
	HBONEPort     int32                  = 15008

	PortMetrics   int32 = 15020
	PortReadiness int32 = 15021
	PortAdmin     int32 = 15000

	containerName  = "waypoint"
	tokenVolume    = "istio-token"
	tokenDir       = "/var/run/secrets/tokens"
	tokenFile      = tokenDir + "/istio-token"
	tokenAudience  = "istio-ca"
	tokenTTL       = int64(43200) // seconds, as Istio's waypoint template
	rootVolume     = "istiod-ca-cert"
	rootConfigMap  = "istio-ca-root-cert"
	rootDir        = "/var/run/secrets/istio"
	rootFile       = rootDir + "/root-cert.pem"
	readyPath      = "/healthz/ready"
	defaultMode    = int32(0o644) // the API server's default, set so updates compare equal
	gatewayGroup   = "gateway.networking.k8s.io"
	gatewayVersion = "v1"
)

// Config is what every waypoint Deployment shares.
type Config struct {
	// Image of the waypoint, e.g. ambient/waypoint:<tag>.
	Image string
	// XDSAddress and CAAddress of istiod-lite, e.g.
	// istiod-lite.istio-system.svc:15012. CAAddress defaults to XDSAddress.
	XDSAddress string
	CAAddress  string
	// TrustDomain of the mesh; default cluster.local.
	TrustDomain string
	// ClusterDomain is the DNS suffix of Services (status Hostname address);
	// default cluster.local.
	ClusterDomain string
	// LogLevel of the waypoint; default info.
	LogLevel string
	// Replicas unless the Gateway's AnnotationReplicas says otherwise;
	// default 1.
	Replicas int32
	// Resources of the waypoint container.
	Resources corev1.ResourceRequirements
	// TerminationGracePeriodSeconds of waypoint pods; default 5.
	TerminationGracePeriodSeconds int64
}

// WithDefaults fills the zero fields.
func (c Config) WithDefaults() Config {
	if c.CAAddress == "" {
		c.CAAddress = c.XDSAddress
	}
	if c.TrustDomain == "" {
		c.TrustDomain = "cluster.local"
	}
	if c.ClusterDomain == "" {
		c.ClusterDomain = "cluster.local"
	}
	if c.LogLevel == "" {
		c.LogLevel = "info"
	}
	if c.Replicas == 0 {
		c.Replicas = 1
	}
	if c.TerminationGracePeriodSeconds == 0 {
		c.TerminationGracePeriodSeconds = 5
	}
	return c
}

// Validate reports a Config the controller cannot deploy with.
func (c Config) Validate() error {
	if c.Image == "" {
		return fmt.Errorf("waypoint image is empty (e.g. ambient/waypoint:<tag>)")
	}
	if c.XDSAddress == "" {
		return fmt.Errorf("xDS address is empty (e.g. istiod-lite.istio-system.svc:15012)")
	}
	return nil
}

// replicas returns the Gateway's AnnotationReplicas, or def when absent.
func replicas(gw *gatewayv1.Gateway, def int32) (int32, error) {
	v, ok := gw.Annotations[AnnotationReplicas]
	if !ok {
		return def, nil
	}
	n, err := strconv.ParseInt(v, 10, 32)
	if err != nil || n < 0 {
		return def, fmt.Errorf("annotation %s=%q: want a non-negative integer", AnnotationReplicas, v)
	}
	return int32(n), nil
}

// WaypointFor is the Gateway's istio.io/waypoint-for, or "service".
func WaypointFor(gw *gatewayv1.Gateway) string {
	if v := gw.Labels[LabelWaypointFor]; v != "" {
		return v
	}
	return WaypointForDefault
}

// OwnerReference makes gw the controller of an object.
func OwnerReference(gw *gatewayv1.Gateway) metav1.OwnerReference {
	return metav1.OwnerReference{
		APIVersion: gatewayGroup + "/" + gatewayVersion,
		Kind:       "Gateway",
		Name:       gw.Name,
		UID:        gw.UID,
		Controller: new(true),
	}
}

// commonLabels are on every child: spec.infrastructure.labels first, then
// ours (which win).
func commonLabels(gw *gatewayv1.Gateway) map[string]string {
	l := map[string]string{}
	if gw.Spec.Infrastructure != nil {
		for k, v := range gw.Spec.Infrastructure.Labels {
			l[string(k)] = string(v)
		}
	}
	l[LabelGatewayName] = gw.Name
	l[LabelGatewayClassName] = string(gw.Spec.GatewayClassName)
	l[LabelManaged] = ManagedValue
	return l
}

func meta(gw *gatewayv1.Gateway, labels map[string]string) metav1.ObjectMeta {
	var ann map[string]string
	if gw.Spec.Infrastructure != nil && len(gw.Spec.Infrastructure.Annotations) > 0 {
		ann = map[string]string{}
		for k, v := range gw.Spec.Infrastructure.Annotations {
			ann[string(k)] = string(v)
		}
	}
	return metav1.ObjectMeta{
		Name:            gw.Name,
		Namespace:       gw.Namespace,
		Labels:          labels,
		Annotations:     ann,
		OwnerReferences: []metav1.OwnerReference{OwnerReference(gw)},
	}
}

func fieldEnv(name, path string) corev1.EnvVar {
	return corev1.EnvVar{Name: name, ValueFrom: &corev1.EnvVarSource{
		FieldRef: &corev1.ObjectFieldSelector{APIVersion: "v1", FieldPath: path},
	}}
}

func tcpPort(name string, port int32) corev1.ContainerPort {
	return corev1.ContainerPort{Name: name, ContainerPort: port, Protocol: corev1.ProtocolTCP}
}

// Desired renders the ServiceAccount, Deployment and Service of the waypoint
// gw, all named like the Gateway and controlled by it. cfg must have its
// defaults filled (Config.WithDefaults). An invalid AnnotationReplicas falls
// back to cfg.Replicas (Validate reports it).
func Desired(gw *gatewayv1.Gateway, cfg Config) (*corev1.ServiceAccount, *appsv1.Deployment, *corev1.Service) {
	labels := commonLabels(gw)
	n, _ := replicas(gw, cfg.Replicas)

	sa := &corev1.ServiceAccount{ObjectMeta: meta(gw, maps.Clone(labels))}

	podLabels := maps.Clone(labels)
	podLabels[LabelDataplaneMode] = "none"
	podLabels[LabelSidecarInject] = "false"
	podLabels[LabelTunnel] = "http"
	podLabels[LabelCanonicalName] = gw.Name
	podLabels[LabelCanonicalRev] = "latest"

	dep := &appsv1.Deployment{
		ObjectMeta: meta(gw, maps.Clone(labels)),
		Spec: appsv1.DeploymentSpec{
			Replicas: new(n),
			Selector: &metav1.LabelSelector{MatchLabels: map[string]string{LabelGatewayName: gw.Name}},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: podLabels},
				Spec: corev1.PodSpec{
					ServiceAccountName:            gw.Name,
					TerminationGracePeriodSeconds: new(cfg.TerminationGracePeriodSeconds),
					Containers: []corev1.Container{{
						Name:  containerName,
						Image: cfg.Image,
						Args: []string{
							"--xds-address=" + cfg.XDSAddress,
							"--ca-address=" + cfg.CAAddress,
							"--trust-domain=" + cfg.TrustDomain,
							"--name=" + gw.Name,
							"--namespace=" + gw.Namespace,
							"--log-level=" + cfg.LogLevel,
							"--token-file=" + tokenFile,
							"--root-cert=" + rootFile,
						},
						Env: []corev1.EnvVar{
							fieldEnv("POD_NAME", "metadata.name"),
							fieldEnv("POD_NAMESPACE", "metadata.namespace"),
							fieldEnv("NODE_NAME", "spec.nodeName"),
							fieldEnv("INSTANCE_IP", "status.podIP"),
							fieldEnv("SERVICE_ACCOUNT", "spec.serviceAccountName"),
						},
						Ports: []corev1.ContainerPort{
							tcpPort("hbone", HBONEPort),
							tcpPort("metrics", PortMetrics),
							tcpPort("status-port", PortReadiness),
							tcpPort("admin", PortAdmin),
						},
						ReadinessProbe: &corev1.Probe{
							ProbeHandler: corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{
								Path: readyPath, Port: intstr.FromInt32(PortReadiness), Scheme: corev1.URISchemeHTTP,
							}},
							TimeoutSeconds: 1, PeriodSeconds: 5, SuccessThreshold: 1, FailureThreshold: 4,
						},
						Resources: *cfg.Resources.DeepCopy(),
						VolumeMounts: []corev1.VolumeMount{
							{Name: tokenVolume, MountPath: tokenDir, ReadOnly: true},
							{Name: rootVolume, MountPath: rootDir, ReadOnly: true},
						},
					}},
					Volumes: []corev1.Volume{
						{Name: tokenVolume, VolumeSource: corev1.VolumeSource{Projected: &corev1.ProjectedVolumeSource{
							DefaultMode: new(defaultMode),
							Sources: []corev1.VolumeProjection{{ServiceAccountToken: &corev1.ServiceAccountTokenProjection{
								Audience: tokenAudience, ExpirationSeconds: new(tokenTTL), Path: "istio-token",
							}}},
						}}},
						{Name: rootVolume, VolumeSource: corev1.VolumeSource{ConfigMap: &corev1.ConfigMapVolumeSource{
							LocalObjectReference: corev1.LocalObjectReference{Name: rootConfigMap},
							DefaultMode:          new(defaultMode),
						}}},
					},
				},
			},
		},
	}

	svcLabels := maps.Clone(labels)
	svcLabels[LabelWaypointFor] = WaypointFor(gw)
	svc := &corev1.Service{
		ObjectMeta: meta(gw, svcLabels),
		Spec: corev1.ServiceSpec{
			Type:     corev1.ServiceTypeClusterIP,
			Selector: map[string]string{LabelGatewayName: gw.Name},
			Ports: []corev1.ServicePort{
				{Name: "status-port", Port: PortReadiness, TargetPort: intstr.FromInt32(PortReadiness), Protocol: corev1.ProtocolTCP, AppProtocol: new("tcp")},
				{Name: "mesh", Port: HBONEPort, TargetPort: intstr.FromInt32(HBONEPort), Protocol: corev1.ProtocolTCP, AppProtocol: new("all")},
			},
		},
	}
	return sa, dep, svc
}
