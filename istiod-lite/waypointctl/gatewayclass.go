package waypointctl

import (
	"slices"

	"k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"
)

// DesiredGatewayClass is the built-in istio-waypoint GatewayClass, as Istio
// creates it.
func DesiredGatewayClass() *gatewayv1.GatewayClass {
	return &gatewayv1.GatewayClass{
		ObjectMeta: metav1.ObjectMeta{Name: ClassName},
		Spec: gatewayv1.GatewayClassSpec{
			ControllerName: ControllerName,
			Description:    new("The default Istio waypoint GatewayClass"),
		},
	}
}

// ClassConditions are the conditions we report on a GatewayClass we
// control.
func ClassConditions(gc *gatewayv1.GatewayClass) []metav1.Condition {
	return []metav1.Condition{cond(gatewayv1.GatewayClassConditionStatusAccepted, true, gatewayv1.GatewayClassReasonAccepted, "Handled by Istio controller", gc.Generation)}
}

// ClassStatusEqual compares condition lists ignoring LastTransitionTime.
func ClassStatusEqual(a, b []metav1.Condition) bool {
	a, b = slices.Clone(a), slices.Clone(b)
	clearTimes(a)
	clearTimes(b)
	return equality.Semantic.DeepEqual(a, b)
}
