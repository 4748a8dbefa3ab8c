package capture

import "testing"

func TestLinkPinRoundTrip(t *testing.T) {
	for _, ifindex := range []int{1, 7, 4096, 1 << 30} {
		name := linkPinPath("/sys/fs/bpf/x", ifindex)
		base := name[len("/sys/fs/bpf/x/links/"):]
		got, ok := parseLinkPin(base)
		if !ok || got != ifindex {
			t.Errorf("parseLinkPin(%q) = %d, %v; want %d, true", base, got, ok, ifindex)
		}
	}
}

func TestParseLinkPin(t *testing.T) {
	tests := []struct {
		name string
		want int
		ok   bool
	}{
		{"tcx-ingress-12", 12, true},
		{"tcx-ingress-0", 0, false},
		{"tcx-ingress--3", 0, false},
		{"tcx-ingress-012", 0, false},
		{"tcx-ingress-", 0, false},
		{"tcx-ingress-12a", 0, false},
		{"tcx-egress-12", 0, false},
		{"listeners", 0, false},
	}
	for _, tt := range tests {
		got, ok := parseLinkPin(tt.name)
		if got != tt.want || ok != tt.ok {
			t.Errorf("parseLinkPin(%q) = %d, %v; want %d, %v", tt.name, got, ok, tt.want, tt.ok)
		}
	}
}
