package netsetup

import (
	"net/netip"
	"testing"
)

func TestPlan(t *testing.T) {
	nodes, err := Plan(2)
	if err != nil {
		t.Fatal(err)
	}
	want := []struct {
		name, ip, cidr, ns string
	}{
		{"node1", "172.30.0.11", "10.244.1.0/24", "amb-node1"},
		{"node2", "172.30.0.12", "10.244.2.0/24", "amb-node2"},
	}
	for i, w := range want {
		n := nodes[i]
		if n.Name != w.name || n.IP.String() != w.ip || n.PodCIDR.String() != w.cidr || n.Netns != w.ns {
			t.Errorf("node %d = %+v, want %+v", i, n, w)
		}
		if !UnderlayPrefix.Contains(n.IP) || !ClusterCIDR.Contains(n.PodCIDR.Addr()) {
			t.Errorf("node %d addresses outside the cluster ranges: %+v", i, n)
		}
		if len(n.RootVeth) > 15 || len(n.NodeVeth) > 15 {
			t.Errorf("veth names too long: %q %q", n.RootVeth, n.NodeVeth)
		}
	}
	for _, bad := range []int{0, -1, MaxNodes + 1} {
		if _, err := Plan(bad); err == nil {
			t.Errorf("Plan(%d) succeeded, want error", bad)
		}
	}
}

func TestPodAddr(t *testing.T) {
	cidr := netip.MustParsePrefix("10.244.3.0/24")
	tests := []struct {
		n       int
		want    string
		wantErr bool
	}{
		{1, "10.244.3.2", false},
		{252, "10.244.3.253", false},
		{0, "", true},
		{253, "", true},
	}
	for _, tt := range tests {
		got, err := PodAddr(cidr, tt.n)
		if (err != nil) != tt.wantErr {
			t.Fatalf("PodAddr(%d) err = %v", tt.n, err)
		}
		if err == nil && got.String() != tt.want {
			t.Errorf("PodAddr(%d) = %s, want %s", tt.n, got, tt.want)
		}
	}
}

func TestHostVethName(t *testing.T) {
	a, b := HostVethName("uid-a"), HostVethName("uid-b")
	if a == b {
		t.Fatalf("different keys share a veth name %q", a)
	}
	if a != HostVethName("uid-a") {
		t.Fatal("veth name not stable")
	}
	if len(a) > 15 {
		t.Fatalf("veth name %q longer than 15 bytes", a)
	}
}

func TestLowestFree(t *testing.T) {
	tests := []struct {
		used []int
		want int
	}{
		{nil, 1},
		{[]int{1, 2, 3}, 4},
		{[]int{2, 3}, 1},
		{[]int{1, 3}, 2},
		{[]int{3, 1, 2, 5}, 4},
	}
	for _, tt := range tests {
		if got := lowestFree(append([]int(nil), tt.used...)); got != tt.want {
			t.Errorf("lowestFree(%v) = %d, want %d", tt.used, got, tt.want)
		}
	}
}
