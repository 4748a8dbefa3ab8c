package nodelet

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"go.uber.org/zap"
	coordv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
)

// NodeLeaseNamespace holds the nodes' heartbeat Leases.
const NodeLeaseNamespace = "kube-node-lease"

// nodeVersion is what the node reports as its kubelet version.
const nodeVersion = "v1.37.2"

// BuildNodeStatus is the status the nodelet keeps on its Node: Ready and
// no pressure, the node IP, and a fixed capacity. Transition times are kept
// from prev while a condition's status does not change.
func BuildNodeStatus(n Node, prev corev1.NodeStatus, now time.Time) corev1.NodeStatus {
	now = now.Truncate(time.Second)
	res := corev1.ResourceList{
		corev1.ResourceCPU:              resource.MustParse("2"),
		corev1.ResourceMemory:           resource.MustParse("8Gi"),
		corev1.ResourcePods:             resource.MustParse("110"),
		corev1.ResourceEphemeralStorage: resource.MustParse("20Gi"),
	}
	st := corev1.NodeStatus{
		Capacity:    res,
		Allocatable: res.DeepCopy(),
		NodeInfo: corev1.NodeSystemInfo{
			KubeletVersion: nodeVersion, OperatingSystem: "linux", Architecture: "amd64",
			ContainerRuntimeVersion: "nodelet://1",
		},
	}
	if n.IP.IsValid() {
		st.Addresses = append(st.Addresses, corev1.NodeAddress{Type: corev1.NodeInternalIP, Address: n.IP.String()})
	}
	st.Addresses = append(st.Addresses, corev1.NodeAddress{Type: corev1.NodeHostName, Address: n.Name})
	conds := []corev1.NodeCondition{
		{Type: corev1.NodeMemoryPressure, Status: corev1.ConditionFalse, Reason: "KubeletHasSufficientMemory", Message: "nodelet has sufficient memory available"},
		{Type: corev1.NodeDiskPressure, Status: corev1.ConditionFalse, Reason: "KubeletHasNoDiskPressure", Message: "nodelet has no disk pressure"},
		{Type: corev1.NodePIDPressure, Status: corev1.ConditionFalse, Reason: "KubeletHasSufficientPID", Message: "nodelet has sufficient PID available"},
		{Type: corev1.NodeReady, Status: corev1.ConditionTrue, Reason: "KubeletReady", Message: "nodelet is posting ready status"},
	}
	for i := range conds {
		conds[i].LastHeartbeatTime = metav1.NewTime(now)
		conds[i].LastTransitionTime = metav1.NewTime(now)
		for _, p := range prev.Conditions {
			if p.Type == conds[i].Type && p.Status == conds[i].Status && !p.LastTransitionTime.IsZero() {
				conds[i].LastTransitionTime = p.LastTransitionTime
			}
		}
	}
	st.Conditions = conds
	return st
}

// heartbeat keeps the Node status and Lease fresh until ctx ends.
func heartbeat(ctx context.Context, cfg *Config) {
	t := time.NewTicker(cfg.HeartbeatInterval)
	defer t.Stop()
	for {
		if err := updateNode(ctx, cfg); err != nil && ctx.Err() == nil {
			cfg.Logger.Warn("node heartbeat failed", zap.Error(err))
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

func updateNode(ctx context.Context, cfg *Config) error {
	nodes := cfg.Client.CoreV1().Nodes()
	node, err := nodes.Get(ctx, cfg.Node.Name, metav1.GetOptions{})
	if err != nil {
		return fmt.Errorf("get node %s (the cluster should have registered it): %w", cfg.Node.Name, err)
	}
	st := BuildNodeStatus(cfg.Node, node.Status, time.Now())
	body, err := json.Marshal(map[string]any{"status": st})
	if err != nil {
		return fmt.Errorf("encode node status: %w", err)
	}
	if _, err := nodes.Patch(ctx, cfg.Node.Name, types.MergePatchType, body, metav1.PatchOptions{}, "status"); err != nil {
		return fmt.Errorf("patch node %s status: %w", cfg.Node.Name, err)
	}
	return renewLease(ctx, cfg, node)
}

func renewLease(ctx context.Context, cfg *Config, node *corev1.Node) error {
	leases := cfg.Client.CoordinationV1().Leases(NodeLeaseNamespace)
	now := metav1.NewMicroTime(time.Now())
	dur := int32(40)
	l, err := leases.Get(ctx, cfg.Node.Name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		holder := cfg.Node.Name
		l = &coordv1.Lease{
			ObjectMeta: metav1.ObjectMeta{
				Name: cfg.Node.Name, Namespace: NodeLeaseNamespace,
				OwnerReferences: []metav1.OwnerReference{{APIVersion: "v1", Kind: "Node", Name: node.Name, UID: node.UID}},
			},
			Spec: coordv1.LeaseSpec{HolderIdentity: &holder, LeaseDurationSeconds: &dur, RenewTime: &now},
		}
		if _, err := leases.Create(ctx, l, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
			return fmt.Errorf("create node lease: %w", err)
		}
		return nil
	}
	if err != nil {
		return fmt.Errorf("get node lease: %w", err)
	}
	l.Spec.RenewTime = &now
	l.Spec.LeaseDurationSeconds = &dur
	if _, err := leases.Update(ctx, l, metav1.UpdateOptions{}); err != nil {
		return fmt.Errorf("renew node lease: %w", err)
	}
	return nil
}
