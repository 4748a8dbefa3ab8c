package rbac

import (
	"errors"
	"net/netip"
	"testing"

	"google.golang.org/protobuf/types/known/emptypb"
	"istio.io/istio/pkg/workloadapi/security"

	"github.com/ambient-mesh/ambient/pkg/spiffe"
)

// Builders keeping the tables readable.

func exact(s string) *security.StringMatch {
	return &security.StringMatch{MatchType: &security.StringMatch_Exact{Exact: s}}
}
func prefix(s string) *security.StringMatch {
	return &security.StringMatch{MatchType: &security.StringMatch_Prefix{Prefix: s}}
}
func suffix(s string) *security.StringMatch {
	return &security.StringMatch{MatchType: &security.StringMatch_Suffix{Suffix: s}}
}
func presence() *security.StringMatch {
	return &security.StringMatch{MatchType: &security.StringMatch_Presence{Presence: &emptypb.Empty{}}}
}

func cidr(s string) *security.Address {
	p := netip.MustParsePrefix(s)
	return &security.Address{Address: p.Addr().AsSlice(), Length: uint32(p.Bits())}
}

// policy builds a policy with one group per element of groups; each group is
// a list of Rules (AND), each Rules a list of matches (OR).
func policy(name string, action security.Action, groups ...[][]*security.Match) *security.Authorization {
	p := &security.Authorization{Name: name, Namespace: "ns", Action: action}
	for _, g := range groups {
		grp := &security.Group{}
		for _, ms := range g {
			grp.Rules = append(grp.Rules, &security.Rules{Matches: ms})
		}
		p.Groups = append(p.Groups, grp)
	}
	return p
}

// one is a group with one Rules holding the given OR-ed matches.
func one(ms ...*security.Match) [][]*security.Match { return [][]*security.Match{ms} }

func dryRun(p *security.Authorization) *security.Authorization { p.DryRun = true; return p }

var (
	sleep = &spiffe.Identity{TrustDomain: "cluster.local", Namespace: "default", ServiceAccount: "sleep"}
	other = &spiffe.Identity{TrustDomain: "cluster.local", Namespace: "other", ServiceAccount: "bot"}
)

func conn(id *spiffe.Identity) Conn {
	return Conn{
		SrcIP:       netip.MustParseAddr("10.0.1.5"),
		DstIP:       netip.MustParseAddr("10.0.2.7"),
		DstPort:     8080,
		SrcIdentity: id,
	}
}

func TestEvaluate(t *testing.T) {
	allow, deny := security.Action_ALLOW, security.Action_DENY
	tests := []struct {
		name       string
		policies   []*security.Authorization
		conn       Conn
		want       bool
		wantPolicy string
		wantReason string
	}{
		{name: "no policies allows", conn: conn(sleep), want: true, wantReason: ReasonNoPolicy},
		{
			name:     "allow with no groups is deny-all",
			policies: []*security.Authorization{policy("allow-nothing", allow)},
			conn:     conn(sleep), want: false, wantReason: ReasonNoAllowMatch,
		},
		{
			name:     "deny with no groups matches nothing",
			policies: []*security.Authorization{policy("deny-nothing", deny)},
			conn:     conn(sleep), want: true, wantReason: ReasonNoPolicy,
		},
		{
			name:     "allow with an empty group allows everything",
			policies: []*security.Authorization{policy("allow-all", allow, nil)},
			conn:     conn(nil), want: true, wantPolicy: "ns/allow-all", wantReason: ReasonAllowMatched,
		},
		{
			name:     "principal exact matches without spiffe prefix",
			policies: []*security.Authorization{policy("a", allow, one(&security.Match{Principals: []*security.StringMatch{exact("cluster.local/ns/default/sa/sleep")}}))},
			conn:     conn(sleep), want: true, wantPolicy: "ns/a", wantReason: ReasonAllowMatched,
		},
		{
			name:     "principal pattern with spiffe prefix does not match (as upstream)",
			policies: []*security.Authorization{policy("a", allow, one(&security.Match{Principals: []*security.StringMatch{exact("spiffe://cluster.local/ns/default/sa/sleep")}}))},
			conn:     conn(sleep), want: false, wantReason: ReasonNoAllowMatch,
		},
		{
			name:     "principal exact is not a prefix match",
			policies: []*security.Authorization{policy("a", allow, one(&security.Match{Principals: []*security.StringMatch{exact("cluster.local/ns/default/sa/sle")}}))},
			conn:     conn(sleep), want: false, wantReason: ReasonNoAllowMatch,
		},
		{
			name:     "principal prefix across segments",
			policies: []*security.Authorization{policy("a", allow, one(&security.Match{Principals: []*security.StringMatch{prefix("cluster.local/ns/def")}}))},
			conn:     conn(sleep), want: true, wantPolicy: "ns/a", wantReason: ReasonAllowMatched,
		},
		{
			name:     "principal prefix mismatch",
			policies: []*security.Authorization{policy("a", allow, one(&security.Match{Principals: []*security.StringMatch{prefix("cluster.local/ns/other/")}}))},
			conn:     conn(sleep), want: false, wantReason: ReasonNoAllowMatch,
		},
		{
			name:     "principal suffix across segments",
			policies: []*security.Authorization{policy("a", allow, one(&security.Match{Principals: []*security.StringMatch{suffix("/sa/sleep")}}))},
			conn:     conn(sleep), want: true, wantPolicy: "ns/a", wantReason: ReasonAllowMatched,
		},
		{
			name:     "principal presence matches any mTLS peer",
			policies: []*security.Authorization{policy("a", allow, one(&security.Match{Principals: []*security.StringMatch{presence()}}))},
			conn:     conn(other), want: true, wantPolicy: "ns/a", wantReason: ReasonAllowMatched,
		},
		{
			name:     "plaintext never matches principals, even presence",
			policies: []*security.Authorization{policy("a", allow, one(&security.Match{Principals: []*security.StringMatch{presence()}}))},
			conn:     conn(nil), want: false, wantReason: ReasonNoAllowMatch,
		},
		{
			name:     "plaintext never matches namespaces presence",
			policies: []*security.Authorization{policy("a", allow, one(&security.Match{Namespaces: []*security.StringMatch{presence()}}))},
			conn:     conn(nil), want: false, wantReason: ReasonNoAllowMatch,
		},
		{
			name:     "plaintext never matches service accounts",
			policies: []*security.Authorization{policy("a", allow, one(&security.Match{ServiceAccounts: []*security.ServiceAccountMatch{{Namespace: "default", ServiceAccount: "sleep"}}}))},
			conn:     conn(nil), want: false, wantReason: ReasonNoAllowMatch,
		},
		{
			name:     "plaintext matches not_namespaces",
			policies: []*security.Authorization{policy("d", deny, one(&security.Match{NotNamespaces: []*security.StringMatch{exact("default")}}))},
			conn:     conn(nil), want: false, wantPolicy: "ns/d", wantReason: ReasonDenyMatched,
		},
		{
			name:     "empty match matches nothing (as upstream)",
			policies: []*security.Authorization{policy("a", allow, one(&security.Match{}))},
			conn:     conn(sleep), want: false, wantReason: ReasonNoAllowMatch,
		},
		{
			name:     "empty match is skipped, next match in the rules counts",
			policies: []*security.Authorization{policy("a", allow, one(&security.Match{}, &security.Match{DestinationPorts: []uint32{8080}}))},
			conn:     conn(sleep), want: true, wantPolicy: "ns/a", wantReason: ReasonAllowMatched,
		},
		{
			name:     "rules without matches match everything",
			policies: []*security.Authorization{policy("a", allow, [][]*security.Match{nil, {{DestinationPorts: []uint32{8080}}}})},
			conn:     conn(sleep), want: true, wantPolicy: "ns/a", wantReason: ReasonAllowMatched,
		},
		{
			name:     "0.0.0.0/0 matches every IPv4 source",
			policies: []*security.Authorization{policy("d", deny, one(&security.Match{SourceIps: []*security.Address{cidr("0.0.0.0/0")}}))},
			conn:     conn(sleep), want: false, wantPolicy: "ns/d", wantReason: ReasonDenyMatched,
		},
		{
			name:     "not_principals excludes the listed identity",
			policies: []*security.Authorization{policy("d", deny, one(&security.Match{NotPrincipals: []*security.StringMatch{exact("cluster.local/ns/default/sa/sleep")}}))},
			conn:     conn(other), want: false, wantPolicy: "ns/d", wantReason: ReasonDenyMatched,
		},
		{
			name:     "not_principals does not deny the listed identity",
			policies: []*security.Authorization{policy("d", deny, one(&security.Match{NotPrincipals: []*security.StringMatch{exact("cluster.local/ns/default/sa/sleep")}}))},
			conn:     conn(sleep), want: true, wantReason: ReasonNoPolicy,
		},
		{
			name:     "namespaces and not_namespaces",
			policies: []*security.Authorization{policy("a", allow, one(&security.Match{Namespaces: []*security.StringMatch{suffix("ault"), exact("other")}, NotNamespaces: []*security.StringMatch{exact("other")}}))},
			conn:     conn(other), want: false, wantReason: ReasonNoAllowMatch,
		},
		{
			name:     "service account match",
			policies: []*security.Authorization{policy("a", allow, one(&security.Match{ServiceAccounts: []*security.ServiceAccountMatch{{Namespace: "default", ServiceAccount: "sleep"}}}))},
			conn:     conn(sleep), want: true, wantPolicy: "ns/a", wantReason: ReasonAllowMatched,
		},
		{
			name:     "not_service_accounts excludes",
			policies: []*security.Authorization{policy("a", allow, one(&security.Match{NotServiceAccounts: []*security.ServiceAccountMatch{{Namespace: "default", ServiceAccount: "sleep"}}}))},
			conn:     conn(sleep), want: false, wantReason: ReasonNoAllowMatch,
		},
		{
			name:     "source CIDR contains",
			policies: []*security.Authorization{policy("a", allow, one(&security.Match{SourceIps: []*security.Address{cidr("10.0.0.0/16")}}))},
			conn:     conn(nil), want: true, wantPolicy: "ns/a", wantReason: ReasonAllowMatched,
		},
		{
			name:     "not_source_ips host address excludes",
			policies: []*security.Authorization{policy("a", allow, one(&security.Match{SourceIps: []*security.Address{cidr("10.0.0.0/8")}, NotSourceIps: []*security.Address{cidr("10.0.1.5/32")}}))},
			conn:     conn(sleep), want: false, wantReason: ReasonNoAllowMatch,
		},
		{
			name:     "IPv6 CIDR does not match IPv4 address",
			policies: []*security.Authorization{policy("a", allow, one(&security.Match{DestinationIps: []*security.Address{cidr("::/0")}}))},
			conn:     conn(sleep), want: false, wantReason: ReasonNoAllowMatch,
		},
		{
			name:     "destination ip and port ANDed within a match",
			policies: []*security.Authorization{policy("a", allow, one(&security.Match{DestinationIps: []*security.Address{cidr("10.0.2.7/32")}, DestinationPorts: []uint32{9090}}))},
			conn:     conn(sleep), want: false, wantReason: ReasonNoAllowMatch,
		},
		{
			name: "deny on not_destination_ports",
			policies: []*security.Authorization{
				policy("d", deny, one(&security.Match{NotDestinationPorts: []uint32{80, 443}})),
			},
			conn: conn(sleep), want: false, wantPolicy: "ns/d", wantReason: ReasonDenyMatched,
		},
		{
			name: "matches within rules are ORed",
			policies: []*security.Authorization{policy("a", allow, one(
				&security.Match{Principals: []*security.StringMatch{exact("cluster.local/ns/x/sa/y")}},
				&security.Match{DestinationPorts: []uint32{8080}},
			))},
			conn: conn(sleep), want: true, wantPolicy: "ns/a", wantReason: ReasonAllowMatched,
		},
		{
			name: "rules within a group are ANDed",
			policies: []*security.Authorization{policy("a", allow, [][]*security.Match{
				{{Principals: []*security.StringMatch{presence()}}}, // from
				{{DestinationPorts: []uint32{9090}}},                // to
			})},
			conn: conn(sleep), want: false, wantReason: ReasonNoAllowMatch,
		},
		{
			name: "groups are ORed",
			policies: []*security.Authorization{policy("a", allow,
				one(&security.Match{DestinationPorts: []uint32{9090}}),
				one(&security.Match{Namespaces: []*security.StringMatch{exact("default")}}),
			)},
			conn: conn(sleep), want: true, wantPolicy: "ns/a", wantReason: ReasonAllowMatched,
		},
		{
			name: "deny wins over a matching allow",
			policies: []*security.Authorization{
				policy("a", allow, nil),
				policy("d", deny, one(&security.Match{Principals: []*security.StringMatch{suffix("/sa/sleep")}})),
			},
			conn: conn(sleep), want: false, wantPolicy: "ns/d", wantReason: ReasonDenyMatched,
		},
		{
			name: "one of several allows must match",
			policies: []*security.Authorization{
				policy("a1", allow, one(&security.Match{DestinationPorts: []uint32{1}})),
				policy("a2", allow, one(&security.Match{DestinationPorts: []uint32{8080}})),
			},
			conn: conn(sleep), want: true, wantPolicy: "ns/a2", wantReason: ReasonAllowMatched,
		},
		{
			name: "dry-run deny is not enforced",
			policies: []*security.Authorization{
				dryRun(policy("d", deny, nil)),
			},
			conn: conn(sleep), want: true, wantReason: ReasonNoPolicy,
		},
		{
			name: "dry-run allow does not make the workload deny-all",
			policies: []*security.Authorization{
				dryRun(policy("a", allow)),
			},
			conn: conn(sleep), want: true, wantReason: ReasonNoPolicy,
		},
		{
			name:     "strict mTLS denies plaintext",
			policies: []*security.Authorization{StrictMTLS("ns", "strict", security.Scope_NAMESPACE)},
			conn:     conn(nil), want: false, wantPolicy: "ns/strict", wantReason: ReasonDenyMatched,
		},
		{
			name:     "strict mTLS lets mTLS through",
			policies: []*security.Authorization{StrictMTLS("ns", "strict", security.Scope_NAMESPACE)},
			conn:     conn(sleep), want: true, wantReason: ReasonNoPolicy,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for _, p := range tt.policies {
				if err := Validate(p); err != nil {
					t.Fatalf("test policy invalid: %v", err)
				}
			}
			d := Evaluate(tt.policies, tt.conn)
			if d.Allow != tt.want || d.PolicyName() != tt.wantPolicy || d.Reason != tt.wantReason {
				t.Errorf("Evaluate = {Allow:%v Policy:%q Reason:%q}, want {Allow:%v Policy:%q Reason:%q}",
					d.Allow, d.PolicyName(), d.Reason, tt.want, tt.wantPolicy, tt.wantReason)
			}
		})
	}
}

func TestEvaluateDryRunReported(t *testing.T) {
	d := Evaluate([]*security.Authorization{
		policy("a", security.Action_ALLOW, nil),
		dryRun(policy("d", security.Action_DENY, one(&security.Match{DestinationPorts: []uint32{8080}}))),
	}, conn(sleep))
	if !d.Allow || d.PolicyName() != "ns/a" {
		t.Errorf("enforced = %v %q, want allowed by ns/a", d.Allow, d.PolicyName())
	}
	if d.DryRun.Allow || Name(d.DryRun.Policy) != "ns/d" || d.DryRun.Reason != ReasonDenyMatched {
		t.Errorf("dry run = %+v, want denied by ns/d", d.DryRun)
	}
}

func TestRequiresMTLS(t *testing.T) {
	tests := []struct {
		name     string
		policies []*security.Authorization
		want     bool
	}{
		{"none", nil, false},
		{"strict", []*security.Authorization{StrictMTLS("ns", "s", security.Scope_GLOBAL)}, true},
		{"strict dry-run", []*security.Authorization{dryRun(StrictMTLS("ns", "s", security.Scope_GLOBAL))}, false},
		{"deny with port is partial", []*security.Authorization{policy("d", security.Action_DENY, one(&security.Match{
			NotPrincipals: []*security.StringMatch{presence()}, DestinationPorts: []uint32{80},
		}))}, false},
		{"allow on principals is not strict", []*security.Authorization{policy("a", security.Action_ALLOW, one(&security.Match{
			Principals: []*security.StringMatch{presence()},
		}))}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := RequiresMTLS(tt.policies); got != tt.want {
				t.Errorf("RequiresMTLS = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestValidate(t *testing.T) {
	tests := []struct {
		name    string
		p       *security.Authorization
		wantErr string
	}{
		{"ok", policy("a", security.Action_ALLOW, one(&security.Match{SourceIps: []*security.Address{cidr("10.0.0.0/8")}})), ""},
		{"bad action", &security.Authorization{Name: "a", Action: 7}, "field action: unknown value 7"},
		{"bad scope", &security.Authorization{Name: "a", Scope: 9}, "field scope: unknown value 9"},
		{"bad ip length", policy("a", security.Action_ALLOW, one(&security.Match{NotDestinationIps: []*security.Address{{Address: []byte{1, 2, 3}, Length: 24}}})),
			"field groups[0].rules[0].matches[0].not_destination_ips[0].address: want 4 or 16 bytes, got 3"},
		{"prefix too long", policy("a", security.Action_ALLOW, one(&security.Match{SourceIps: []*security.Address{{Address: []byte{1, 2, 3, 4}, Length: 33}}})),
			"field groups[0].rules[0].matches[0].source_ips[0].length: 33 exceeds 32 bits"},
		{"port zero", policy("a", security.Action_ALLOW, one(&security.Match{DestinationPorts: []uint32{0}})),
			"field groups[0].rules[0].matches[0].destination_ports[0]: port 0 out of range"},
		{"empty string match", policy("a", security.Action_ALLOW, one(&security.Match{Principals: []*security.StringMatch{{}}})),
			"field groups[0].rules[0].matches[0].principals[0]: no match type"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := Validate(tt.p)
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("Validate = %v, want nil", err)
				}
				return
			}
			if err == nil || !errors.Is(err, ErrInvalid) || !contains(err.Error(), tt.wantErr) {
				t.Fatalf("Validate = %v, want error containing %q wrapping ErrInvalid", err, tt.wantErr)
			}
		})
	}
}

func contains(s, sub string) bool {
	return len(sub) <= len(s) && (s[:len(sub)] == sub || contains(s[1:], sub))
}

// benchPolicies: 10 policies × 5 rules (groups), none of which match until
// the last ALLOW, so Evaluate walks everything.
func benchPolicies() []*security.Authorization {
	var ps []*security.Authorization
	for i := range 10 {
		action := security.Action_ALLOW
		if i < 3 {
			action = security.Action_DENY
		}
		var groups [][][]*security.Match
		for j := range 5 {
			groups = append(groups, [][]*security.Match{
				{{
					Principals: []*security.StringMatch{exact("cluster.local/ns/x/sa/y"), prefix("cluster.local/ns/team-"), suffix("/sa/admin")},
					SourceIps:  []*security.Address{cidr("192.168.0.0/16")},
				}},
				{{DestinationPorts: []uint32{uint32(1000 + i*10 + j), 443}, NotDestinationIps: []*security.Address{cidr("10.9.0.0/16")}}},
			})
		}
		ps = append(ps, policy("p", action, groups...))
	}
	ps[9].Groups[4].Rules[1].Matches[0].DestinationPorts = []uint32{8080}
	ps[9].Groups[4].Rules[0].Matches[0].SourceIps = []*security.Address{cidr("10.0.0.0/8")}
	ps[9].Groups[4].Rules[0].Matches[0].Principals = append(ps[9].Groups[4].Rules[0].Matches[0].Principals, suffix("/sa/sleep"))
	return ps
}

func TestBenchPoliciesAllowLast(t *testing.T) {
	d := Evaluate(benchPolicies(), conn(sleep))
	if !d.Allow || d.Policy == nil {
		t.Fatalf("bench fixture: got %+v, want allowed by the last policy", d)
	}
}

func TestEvaluateAllocs(t *testing.T) {
	ps, c := benchPolicies(), conn(sleep)
	if n := testing.AllocsPerRun(100, func() { Evaluate(ps, c) }); n != 0 {
		t.Errorf("Evaluate allocates %v times per call, want 0", n)
	}
}

func BenchmarkEvaluate(b *testing.B) {
	ps, c := benchPolicies(), conn(sleep)
	b.ReportAllocs()
	for b.Loop() {
		Evaluate(ps, c)
	}
}
