package model

import (
	"regexp"
	"strings"

	"istio.io/istio/pkg/workloadapi"
)

// WorkloadUID is Istio's uid of a pod workload: "<cluster>//Pod/<ns>/<name>".
func WorkloadUID(clusterID, ns, name string) string {
	return clusterID + "//Pod/" + ns + "/" + name
}

var cronJobName = regexp.MustCompile(`^(.+)-\d{8,10}$`)

// WorkloadNameAndType derives the telemetry workload name and type from the
// pod's controller, as Istio does: ReplicaSet "<deploy>-<pod-template-hash>"
// → Deployment; Job "<cronjob>-<8..10 digits>" → CronJob; other owners give
// their name with type POD; no owner → the pod name.
func WorkloadNameAndType(p *Pod) (string, workloadapi.WorkloadType) {
	switch p.Owner.Kind {
	case "ReplicaSet":
		if h := p.Labels["pod-template-hash"]; h != "" && strings.HasSuffix(p.Owner.Name, "-"+h) {
			return strings.TrimSuffix(p.Owner.Name, "-"+h), workloadapi.WorkloadType_DEPLOYMENT
		}
		return p.Owner.Name, workloadapi.WorkloadType_POD
	case "Job":
		if m := cronJobName.FindStringSubmatch(p.Owner.Name); m != nil {
			return m[1], workloadapi.WorkloadType_CRONJOB
		}
		return p.Owner.Name, workloadapi.WorkloadType_JOB
	case "":
		return p.Name, workloadapi.WorkloadType_POD
	default:
		return p.Owner.Name, workloadapi.WorkloadType_POD
	}
}

// CanonicalService returns the canonical service name and revision from
// labels (Istio's precedence), defaulting to workloadName and "latest".
func CanonicalService(labels map[string]string, workloadName string) (string, string) {
	name := first(labels, "service.istio.io/canonical-name", "app.kubernetes.io/name", "app")
	if name == "" {
		name = workloadName
	}
	rev := first(labels, "service.istio.io/canonical-revision", "app.kubernetes.io/version", "version")
	if rev == "" {
		rev = "latest"
	}
	return name, rev
}

func first(labels map[string]string, keys ...string) string {
	for _, k := range keys {
		if v := labels[k]; v != "" {
			return v
		}
	}
	return ""
}

// selects reports whether every selector label is on labels (an empty
// selector selects everything).
func selects(selector, labels map[string]string) bool {
	for k, v := range selector {
		if lv, ok := labels[k]; !ok || lv != v {
			return false
		}
	}
	return true
}

// workloadPorts computes the pod's PortList for one service: numeric target
// ports as is, named ones resolved against the pod's container ports; a name
// the pod does not have drops that port for this pod.
func workloadPorts(svc *Service, p *Pod) *workloadapi.PortList {
	pl := &workloadapi.PortList{Ports: make([]*workloadapi.Port, 0, len(svc.Ports))}
	for _, sp := range svc.Ports {
		target := servicePortTarget(sp)
		if name := namedTarget(sp); name != "" {
			n, ok := p.ContainerPorts[name]
			if !ok {
				continue
			}
			target = n
		}
		pl.Ports = append(pl.Ports, &workloadapi.Port{ServicePort: sp.Port, TargetPort: target})
	}
	return pl
}
