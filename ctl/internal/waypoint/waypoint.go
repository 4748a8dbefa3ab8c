package waypoint

import (
	"fmt"
	"sort"
	"strings"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	gwv1 "sigs.k8s.io/gateway-api/apis/v1"

	"github.com/ambient-mesh/ambient/ctl/internal/printer"
)

// Labels and names shared with Istio.
const (
	ClassName      = "istio-waypoint"
	ForLabel       = "istio.io/waypoint-for"
	UseLabel       = "istio.io/use-waypoint"
	ListenerName   = "mesh"
	HBONEPort      = 15008
	HBONEProtocol  = "HBONE"
	DefaultName    = "waypoint"
	DefaultFor     = "service"
	ProgrammedType = string(gwv1.GatewayConditionProgrammed)
)

// ForValues are the accepted --for values.
var ForValues = []string{"service", "workload", "all", "none"}

// ValidateFor checks a --for value.
func ValidateFor(f string) error {
	for _, ok := range ForValues {
		if f == ok {
			return nil
		}
	}
	return fmt.Errorf("invalid --for %q: use one of %s", f, strings.Join(ForValues, "|"))
}

// Gateway returns the waypoint Gateway for namespace/name serving forType.
func Gateway(namespace, name, forType string) *gwv1.Gateway {
	return &gwv1.Gateway{
		TypeMeta: metav1.TypeMeta{APIVersion: gwv1.GroupVersion.String(), Kind: "Gateway"},
		ObjectMeta: metav1.ObjectMeta{
			Name:      name,
			Namespace: namespace,
			Labels:    map[string]string{ForLabel: forType},
		},
		Spec: gwv1.GatewaySpec{
			GatewayClassName: ClassName,
			Listeners: []gwv1.Listener{{
				Name:     ListenerName,
				Port:     HBONEPort,
				Protocol: HBONEProtocol,
			}},
		},
	}
}

// Merge returns existing updated to want: want's spec and waypoint-for label,
// keeping the other labels, annotations and status of existing.
func Merge(existing, want *gwv1.Gateway) *gwv1.Gateway {
	out := existing.DeepCopy()
	if out.Labels == nil {
		out.Labels = map[string]string{}
	}
	out.Labels[ForLabel] = want.Labels[ForLabel]
	out.Spec = want.Spec
	return out
}

// IsWaypoint says whether a Gateway is a waypoint.
func IsWaypoint(g *gwv1.Gateway) bool { return string(g.Spec.GatewayClassName) == ClassName }

// Programmed returns the status of the Programmed condition ("Unknown" when absent).
func Programmed(g *gwv1.Gateway) string {
	for _, c := range g.Status.Conditions {
		if c.Type == ProgrammedType && c.ObservedGeneration >= g.Generation {
			return string(c.Status)
		}
	}
	return "Unknown"
}

// ListRows: NAMESPACE NAME CLASS FOR PROGRAMMED ADDRESS, sorted.
func ListRows(gs []gwv1.Gateway) printer.Rows {
	sort.SliceStable(gs, func(i, j int) bool {
		if gs[i].Namespace != gs[j].Namespace {
			return gs[i].Namespace < gs[j].Namespace
		}
		return gs[i].Name < gs[j].Name
	})
	r := printer.Rows{Header: []string{"NAMESPACE", "NAME", "CLASS", "FOR", "PROGRAMMED", "ADDRESS"}}
	for i := range gs {
		g := &gs[i]
		var addrs []string
		for _, a := range g.Status.Addresses {
			addrs = append(addrs, a.Value)
		}
		forType := g.Labels[ForLabel]
		if forType == "" {
			forType = DefaultFor
		}
		r.Rows = append(r.Rows, []string{g.Namespace, g.Name, string(g.Spec.GatewayClassName), forType, Programmed(g), strings.Join(addrs, ",")})
	}
	return r
}

// StatusRows: NAMESPACE NAME TYPE STATUS REASON MESSAGE, one row per
// condition of each Gateway (and of its listeners, as TYPE listener/<name>/<type>).
func StatusRows(gs []gwv1.Gateway) printer.Rows {
	r := printer.Rows{Header: []string{"NAMESPACE", "NAME", "TYPE", "STATUS", "REASON", "MESSAGE"}}
	for i := range gs {
		g := &gs[i]
		if len(g.Status.Conditions) == 0 {
			r.Rows = append(r.Rows, []string{g.Namespace, g.Name, "", "", "", "no status yet: is istiod-lite running? (ambientctl check --post)"})
		}
		add := func(prefix string, cs []metav1.Condition) {
			for _, c := range cs {
				r.Rows = append(r.Rows, []string{g.Namespace, g.Name, prefix + c.Type, string(c.Status), c.Reason, c.Message})
			}
		}
		add("", g.Status.Conditions)
		for _, l := range g.Status.Listeners {
			add("listener/"+string(l.Name)+"/", l.Conditions)
		}
	}
	return r
}
