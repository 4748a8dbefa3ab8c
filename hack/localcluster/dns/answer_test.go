package dns

import (
	"fmt"
	"net/netip"
	"reflect"
	"strings"
	"testing"

	"golang.org/x/net/dns/dnsmessage"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func ptr[T any](v T) *T { return &v }

func service(ns, name string, clusterIPs ...string) *corev1.Service {
	s := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}}
	if len(clusterIPs) > 0 {
		s.Spec.ClusterIP = clusterIPs[0]
		if clusterIPs[0] != corev1.ClusterIPNone {
			s.Spec.ClusterIPs = clusterIPs
		}
	}
	return s
}

type ep struct {
	addr     string
	ready    *bool
	hostname string
}

func slice(ns, svc, name string, typ discoveryv1.AddressType, ports map[string]int32, eps ...ep) *discoveryv1.EndpointSlice {
	s := &discoveryv1.EndpointSlice{
		ObjectMeta:  metav1.ObjectMeta{Namespace: ns, Name: name, Labels: map[string]string{discoveryv1.LabelServiceName: svc}},
		AddressType: typ,
	}
	for n, p := range ports {
		s.Ports = append(s.Ports, discoveryv1.EndpointPort{Name: ptr(n), Port: ptr(p), Protocol: ptr(corev1.ProtocolTCP)})
	}
	for _, e := range eps {
		x := discoveryv1.Endpoint{Addresses: []string{e.addr}, Conditions: discoveryv1.EndpointConditions{Ready: e.ready}}
		if e.hostname != "" {
			x.Hostname = ptr(e.hostname)
		}
		s.Endpoints = append(s.Endpoints, x)
	}
	return s
}

// testIndex is a small cluster.
func testIndex() *Index {
	kube := service("default", "kubernetes", "10.96.0.1")
	kube.Spec.Ports = []corev1.ServicePort{{Name: "https", Port: 443, Protocol: corev1.ProtocolTCP}}
	httpbin := service("foo", "httpbin", "10.96.0.20")
	httpbin.Spec.Ports = []corev1.ServicePort{{Name: "http", Port: 8000, Protocol: corev1.ProtocolTCP}, {Port: 9000}}
	dual := service("foo", "dual", "10.96.0.30", "fd00:10:96::30")
	ext := service("foo", "ext", "")
	ext.Spec.Type = corev1.ServiceTypeExternalName
	ext.Spec.ExternalName = "httpbin.foo.svc.cluster.local"
	svcs := []*corev1.Service{
		kube, httpbin, dual, ext, nil,
		service("foo", "db", corev1.ClusterIPNone),
		service("foo", "empty", corev1.ClusterIPNone),
		service("istio-system", "istiod-lite", "10.96.0.40"),
	}
	eps := []*discoveryv1.EndpointSlice{
		slice("foo", "db", "db-1", discoveryv1.AddressTypeIPv4, map[string]int32{"pg": 5432},
			ep{addr: "10.244.1.5", ready: ptr(true), hostname: "db-0"},
			ep{addr: "10.244.2.7"}, // nil ready means ready
			ep{addr: "10.244.1.9", ready: ptr(false)},
		),
		slice("foo", "db", "db-2", discoveryv1.AddressTypeIPv4, nil, ep{addr: "10.244.1.5"}), // duplicate
		slice("foo", "db", "db-3", discoveryv1.AddressTypeFQDN, nil, ep{addr: "example.com"}),
		slice("bar", "db", "db-x", discoveryv1.AddressTypeIPv4, nil, ep{addr: "10.244.3.3"}), // other namespace, no service
		nil,
	}
	return BuildIndex("cluster.local", svcs, eps)
}

func query(name string, t dnsmessage.Type) dnsmessage.Message {
	return dnsmessage.Message{
		Header:    dnsmessage.Header{ID: 42, RecursionDesired: true},
		Questions: []dnsmessage.Question{{Name: dnsmessage.MustNewName(name), Type: t, Class: dnsmessage.ClassINET}},
	}
}

// rrs renders records compactly: "A 10.96.0.1", "SRV 8000 httpbin.foo...".
func rrs(rs []dnsmessage.Resource) []string {
	var out []string
	for _, r := range rs {
		var s string
		switch b := r.Body.(type) {
		case *dnsmessage.AResource:
			s = "A " + netip.AddrFrom4(b.A).String()
		case *dnsmessage.AAAAResource:
			s = "AAAA " + netip.AddrFrom16(b.AAAA).String()
		case *dnsmessage.CNAMEResource:
			s = "CNAME " + b.CNAME.String()
		case *dnsmessage.SRVResource:
			s = fmt.Sprintf("SRV %d %s", b.Port, b.Target)
		case *dnsmessage.SOAResource:
			s = "SOA " + b.NS.String()
		case *dnsmessage.OPTResource:
			s = "OPT"
		default:
			s = r.Header.Type.String()
		}
		if r.Header.Type != dnsmessage.TypeOPT && !strings.EqualFold(r.Header.Name.String(), "") {
			s = r.Header.Name.String() + " " + s
		}
		out = append(out, s)
	}
	return out
}

func TestAnswer(t *testing.T) {
	ix := testIndex()
	const soa = "cluster.local. SOA ns.dns.cluster.local."
	for _, tc := range []struct {
		name  string
		q     dnsmessage.Message
		ix    *Index
		rcode dnsmessage.RCode
		aa    bool
		ans   []string
		auth  []string
		add   []string
	}{
		{name: "service A", q: query("kubernetes.default.svc.cluster.local.", dnsmessage.TypeA),
			aa: true, ans: []string{"kubernetes.default.svc.cluster.local. A 10.96.0.1"}},
		{name: "service AAAA is NODATA", q: query("kubernetes.default.svc.cluster.local.", dnsmessage.TypeAAAA),
			aa: true, auth: []string{soa}},
		{name: "case-insensitive, owner echoes the question", q: query("Kubernetes.DEFAULT.svc.Cluster.Local.", dnsmessage.TypeA),
			aa: true, ans: []string{"Kubernetes.DEFAULT.svc.Cluster.Local. A 10.96.0.1"}},
		{name: "dual-stack A", q: query("dual.foo.svc.cluster.local.", dnsmessage.TypeA),
			aa: true, ans: []string{"dual.foo.svc.cluster.local. A 10.96.0.30"}},
		{name: "dual-stack AAAA", q: query("dual.foo.svc.cluster.local.", dnsmessage.TypeAAAA),
			aa: true, ans: []string{"dual.foo.svc.cluster.local. AAAA fd00:10:96::30"}},
		{name: "headless: ready endpoints, deduplicated", q: query("db.foo.svc.cluster.local.", dnsmessage.TypeA),
			aa: true, ans: []string{"db.foo.svc.cluster.local. A 10.244.1.5", "db.foo.svc.cluster.local. A 10.244.2.7"}},
		{name: "headless endpoint by hostname", q: query("db-0.db.foo.svc.cluster.local.", dnsmessage.TypeA),
			aa: true, ans: []string{"db-0.db.foo.svc.cluster.local. A 10.244.1.5"}},
		{name: "headless endpoint by dashed IP", q: query("10-244-2-7.db.foo.svc.cluster.local.", dnsmessage.TypeA),
			aa: true, ans: []string{"10-244-2-7.db.foo.svc.cluster.local. A 10.244.2.7"}},
		{name: "not-ready endpoint has no name", q: query("10-244-1-9.db.foo.svc.cluster.local.", dnsmessage.TypeA),
			rcode: dnsmessage.RCodeNameError, aa: true, auth: []string{soa}},
		{name: "headless without endpoints is NODATA", q: query("empty.foo.svc.cluster.local.", dnsmessage.TypeA),
			aa: true, auth: []string{soa}},
		{name: "headless SRV with additionals", q: query("_pg._tcp.db.foo.svc.cluster.local.", dnsmessage.TypeSRV),
			aa: true,
			ans: []string{
				"_pg._tcp.db.foo.svc.cluster.local. SRV 5432 10-244-2-7.db.foo.svc.cluster.local.",
				"_pg._tcp.db.foo.svc.cluster.local. SRV 5432 db-0.db.foo.svc.cluster.local.",
			},
			add: []string{"10-244-2-7.db.foo.svc.cluster.local. A 10.244.2.7", "db-0.db.foo.svc.cluster.local. A 10.244.1.5"}},
		{name: "ClusterIP SRV for a named port", q: query("_http._tcp.httpbin.foo.svc.cluster.local.", dnsmessage.TypeSRV),
			aa: true, ans: []string{"_http._tcp.httpbin.foo.svc.cluster.local. SRV 8000 httpbin.foo.svc.cluster.local."},
			add: []string{"httpbin.foo.svc.cluster.local. A 10.96.0.20"}},
		{name: "SRV of a name without SRV is NODATA", q: query("httpbin.foo.svc.cluster.local.", dnsmessage.TypeSRV),
			aa: true, auth: []string{soa}},
		{name: "ExternalName is a CNAME", q: query("ext.foo.svc.cluster.local.", dnsmessage.TypeA),
			aa: true, ans: []string{"ext.foo.svc.cluster.local. CNAME httpbin.foo.svc.cluster.local."}},
		{name: "pod name", q: query("10-244-1-5.foo.pod.cluster.local.", dnsmessage.TypeA),
			aa: true, ans: []string{"10-244-1-5.foo.pod.cluster.local. A 10.244.1.5"}},
		{name: "IPv6 pod name", q: query("fd00--5.foo.pod.cluster.local.", dnsmessage.TypeAAAA),
			aa: true, ans: []string{"fd00--5.foo.pod.cluster.local. AAAA fd00::5"}},
		{name: "IPv4 pod name AAAA is NODATA", q: query("10-244-1-5.foo.pod.cluster.local.", dnsmessage.TypeAAAA),
			aa: true, auth: []string{soa}},
		{name: "pod name that is no IP", q: query("web.foo.pod.cluster.local.", dnsmessage.TypeA),
			rcode: dnsmessage.RCodeNameError, aa: true, auth: []string{soa}},
		{name: "pod namespace is an empty non-terminal", q: query("foo.pod.cluster.local.", dnsmessage.TypeA),
			aa: true, auth: []string{soa}},
		{name: "search expansion of httpbin.foo from bar", q: query("httpbin.foo.bar.svc.cluster.local.", dnsmessage.TypeA),
			rcode: dnsmessage.RCodeNameError, aa: true, auth: []string{soa}},
		{name: "search expansion of an outside name", q: query("example.com.foo.svc.cluster.local.", dnsmessage.TypeAAAA),
			rcode: dnsmessage.RCodeNameError, aa: true, auth: []string{soa}},
		{name: "namespace with services is NODATA", q: query("foo.svc.cluster.local.", dnsmessage.TypeA),
			aa: true, auth: []string{soa}},
		{name: "namespace without services is NXDOMAIN", q: query("bar.svc.cluster.local.", dnsmessage.TypeA),
			rcode: dnsmessage.RCodeNameError, aa: true, auth: []string{soa}},
		{name: "svc is NODATA", q: query("svc.cluster.local.", dnsmessage.TypeA),
			aa: true, auth: []string{soa}},
		{name: "apex SOA", q: query("cluster.local.", dnsmessage.TypeSOA),
			aa: true, ans: []string{soa}},
		{name: "outside the domain is REFUSED", q: query("example.com.", dnsmessage.TypeA),
			rcode: dnsmessage.RCodeRefused},
		{name: "suffix that is no subdomain is REFUSED", q: query("xcluster.local.", dnsmessage.TypeA),
			rcode: dnsmessage.RCodeRefused},
		{name: "domain as a label elsewhere is REFUSED", q: query("cluster.local.evil.com.", dnsmessage.TypeA),
			rcode: dnsmessage.RCodeRefused},
		{name: "class CHAOS is REFUSED", q: func() dnsmessage.Message {
			q := query("kubernetes.default.svc.cluster.local.", dnsmessage.TypeA)
			q.Questions[0].Class = dnsmessage.ClassCHAOS
			return q
		}(), rcode: dnsmessage.RCodeRefused},
		{name: "before sync: SERVFAIL", ix: NotReady("cluster.local"), q: query("kubernetes.default.svc.cluster.local.", dnsmessage.TypeA),
			rcode: dnsmessage.RCodeServerFailure, aa: true},
		{name: "before sync: outside still REFUSED", ix: NotReady("cluster.local"), q: query("example.com.", dnsmessage.TypeA),
			rcode: dnsmessage.RCodeRefused},
		{name: "two questions: FORMERR", q: func() dnsmessage.Message {
			q := query("a.cluster.local.", dnsmessage.TypeA)
			q.Questions = append(q.Questions, q.Questions[0])
			return q
		}(), rcode: dnsmessage.RCodeFormatError},
		{name: "no question: FORMERR", q: dnsmessage.Message{Header: dnsmessage.Header{ID: 42, RecursionDesired: true}},
			rcode: dnsmessage.RCodeFormatError},
		{name: "opcode STATUS: NOTIMP", q: func() dnsmessage.Message {
			q := query("kubernetes.default.svc.cluster.local.", dnsmessage.TypeA)
			q.OpCode = 2
			return q
		}(), rcode: dnsmessage.RCodeNotImplemented},
		{name: "EDNS query gets an OPT", q: func() dnsmessage.Message {
			q := query("kubernetes.default.svc.cluster.local.", dnsmessage.TypeA)
			q.Additionals = []dnsmessage.Resource{optRR()}
			return q
		}(), aa: true, ans: []string{"kubernetes.default.svc.cluster.local. A 10.96.0.1"}, add: []string{"OPT"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			use := ix
			if tc.ix != nil {
				use = tc.ix
			}
			r := Answer(tc.q, use)
			if r.ID != 42 || !r.Response || !r.RecursionDesired || r.RecursionAvailable {
				t.Errorf("header = %+v, want ID 42, QR, RD echoed, no RA", r.Header)
			}
			if r.RCode != tc.rcode || r.Authoritative != tc.aa {
				t.Errorf("rcode %v aa %v, want %v %v", r.RCode, r.Authoritative, tc.rcode, tc.aa)
			}
			for _, c := range []struct {
				what      string
				got, want []string
			}{{"answers", rrs(r.Answers), tc.ans}, {"authorities", rrs(r.Authorities), tc.auth}, {"additionals", rrs(r.Additionals), tc.add}} {
				if !reflect.DeepEqual(c.got, c.want) {
					t.Errorf("%s = %q, want %q", c.what, c.got, c.want)
				}
			}
			if _, err := r.Pack(); err != nil {
				t.Errorf("pack: %v", err)
			}
		})
	}
}

func TestAnswerNilIndexRefuses(t *testing.T) {
	if r := Answer(query("kubernetes.default.svc.cluster.local.", dnsmessage.TypeA), nil); r.RCode != dnsmessage.RCodeRefused {
		t.Errorf("rcode = %v, want REFUSED", r.RCode)
	}
}

func TestBuildIndexOtherDomain(t *testing.T) {
	ix := BuildIndex("Example.Internal", []*corev1.Service{service("ns", "s", "10.96.1.1")}, nil)
	if ix.Domain() != "example.internal." {
		t.Errorf("domain = %q", ix.Domain())
	}
	r := Answer(query("s.ns.svc.example.internal.", dnsmessage.TypeA), ix)
	if got := rrs(r.Answers); !reflect.DeepEqual(got, []string{"s.ns.svc.example.internal. A 10.96.1.1"}) {
		t.Errorf("answers = %q", got)
	}
	if r := Answer(query("s.ns.svc.cluster.local.", dnsmessage.TypeA), ix); r.RCode != dnsmessage.RCodeRefused {
		t.Errorf("cluster.local in another domain: rcode %v, want REFUSED", r.RCode)
	}
}

func TestDashedIP(t *testing.T) {
	for _, tc := range []struct {
		label string
		addr  string // "" = not an address
	}{
		{"10-244-1-5", "10.244.1.5"},
		{"fd00--1", "fd00::1"},
		{"fd00-0-0-0-0-0-0-1", "fd00::1"},
		{"10-244-1", ""},
		{"10-244-1-500", ""},
		{"web", ""},
		{"", ""},
		{"1-2-3-4-5", ""},
	} {
		a, ok := ParseDashedIP(tc.label)
		if ok != (tc.addr != "") || (ok && a.String() != tc.addr) {
			t.Errorf("ParseDashedIP(%q) = %v, %v; want %q", tc.label, a, ok, tc.addr)
		}
		if ok && tc.label == DashedIP(a) {
			continue
		}
		if ok && !strings.Contains(tc.label, "-0-") {
			t.Errorf("DashedIP(%v) = %q, want %q", a, DashedIP(a), tc.label)
		}
	}
}

func TestUDPLimitAndTruncate(t *testing.T) {
	q := query("many.ns.svc.cluster.local.", dnsmessage.TypeA)
	if got := UDPLimit(q); got != 512 {
		t.Errorf("UDPLimit without EDNS = %d, want 512", got)
	}
	var big dnsmessage.ResourceHeader
	_ = big.SetEDNS0(4096, dnsmessage.RCodeSuccess, false)
	qe := q
	qe.Additionals = []dnsmessage.Resource{{Header: big, Body: &dnsmessage.OPTResource{}}}
	if got := UDPLimit(qe); got != MaxUDPSize {
		t.Errorf("UDPLimit with EDNS 4096 = %d, want %d", got, MaxUDPSize)
	}
	var eps []ep
	for i := range 100 {
		eps = append(eps, ep{addr: fmt.Sprintf("10.244.1.%d", i+2)})
	}
	ix := BuildIndex("cluster.local", []*corev1.Service{service("ns", "many", corev1.ClusterIPNone)},
		[]*discoveryv1.EndpointSlice{slice("ns", "many", "m", discoveryv1.AddressTypeIPv4, nil, eps...)})
	for _, tc := range []struct {
		name  string
		q     dnsmessage.Message
		limit int
		tc    bool
		ans   int
	}{
		{"fits TCP", q, 65535, false, 100},
		{"too big for 512", q, 512, true, 0},
		{"EDNS: too big for 1232 too", qe, UDPLimit(qe), true, 0},
	} {
		b, err := Truncate(Answer(tc.q, ix), tc.limit)
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		var m dnsmessage.Message
		if err := m.Unpack(b); err != nil {
			t.Fatalf("%s: unpack: %v", tc.name, err)
		}
		if len(b) > tc.limit || m.Truncated != tc.tc || len(m.Answers) != tc.ans || len(m.Questions) != 1 {
			t.Errorf("%s: %d bytes, TC %v, %d answers; want ≤%d, TC %v, %d answers", tc.name, len(b), m.Truncated, len(m.Answers), tc.limit, tc.tc, tc.ans)
		}
		if hasOPT(tc.q) != hasOPT(m) {
			t.Errorf("%s: OPT in response %v, in query %v", tc.name, hasOPT(m), hasOPT(tc.q))
		}
	}
}
