package dns

import (
	"strings"

	"golang.org/x/net/dns/dnsmessage"
)

// TTL is the time-to-live of every answer and of negative answers (SOA
// minimum), in seconds; CoreDNS's kubernetes plugin uses 5 too.
const TTL = 5

// MaxUDPSize is the largest UDP response offered to EDNS clients (the
// DNS-flag-day value).
const MaxUDPSize = 1232

// NotReady returns the Index served before the informers have synced: every
// name of domain gets SERVFAIL, so no resolver caches a false NXDOMAIN.
func NotReady(domain string) *Index {
	return &Index{domain: Fqdn(domain)}
}

// Answer computes the response to query from ix. It is pure. A nil ix
// refuses everything.
func Answer(query dnsmessage.Message, ix *Index) (r dnsmessage.Message) {
	r = dnsmessage.Message{Header: dnsmessage.Header{
		ID: query.ID, Response: true, OpCode: query.OpCode, RecursionDesired: query.RecursionDesired,
	}}
	edns := hasOPT(query)
	defer func() {
		if edns {
			r.Additionals = append(r.Additionals, optRR())
		}
	}()
	if query.Response {
		r.RCode = dnsmessage.RCodeFormatError
		return r
	}
	if query.OpCode != 0 {
		r.RCode = dnsmessage.RCodeNotImplemented
		return r
	}
	if len(query.Questions) != 1 {
		r.RCode = dnsmessage.RCodeFormatError
		return r
	}
	q := query.Questions[0]
	r.Questions = []dnsmessage.Question{q}
	name := strings.ToLower(q.Name.String())
	if ix == nil || q.Class != dnsmessage.ClassINET || !inZone(name, ix.domain) {
		r.RCode = dnsmessage.RCodeRefused
		return r
	}
	r.Authoritative = true
	if ix.names == nil {
		r.RCode = dnsmessage.RCodeServerFailure
		return r
	}
	n, ok := ix.find(name)
	if !ok {
		r.RCode = dnsmessage.RCodeNameError
		r.Authorities = []dnsmessage.Resource{ix.soa()}
		return r
	}
	r.Answers = n.records(q.Name, q.Type)
	if name == ix.domain && (q.Type == dnsmessage.TypeSOA || q.Type == dnsmessage.TypeALL) {
		r.Answers = append(r.Answers, ix.soa())
	}
	if len(r.Answers) == 0 {
		r.Authorities = []dnsmessage.Resource{ix.soa()}
		return r
	}
	if q.Type == dnsmessage.TypeSRV {
		for _, s := range n.srv {
			if t, ok := ix.lookup(s.target); ok {
				tn, err := dnsmessage.NewName(s.target)
				if err != nil {
					continue
				}
				r.Additionals = append(r.Additionals, t.records(tn, dnsmessage.TypeA)...)
				r.Additionals = append(r.Additionals, t.records(tn, dnsmessage.TypeAAAA)...)
			}
		}
	}
	return r
}

// find looks name up, including the synthetic <dashed-ip>.<ns>.pod names.
func (ix *Index) find(name string) (*node, bool) {
	if rest, ok := strings.CutSuffix(name, ".pod."+ix.domain); ok {
		labels := strings.Split(rest, ".")
		switch len(labels) {
		case 1: // a namespace: an empty non-terminal
			return &node{}, true
		case 2:
			if a, ok := ParseDashedIP(labels[0]); ok {
				n := &node{}
				n.add(a)
				return n, true
			}
		}
		return nil, false
	}
	return ix.lookup(name)
}

// records returns n's resource records of type t owned by name.
func (n *node) records(name dnsmessage.Name, t dnsmessage.Type) []dnsmessage.Resource {
	hdr := func(typ dnsmessage.Type) dnsmessage.ResourceHeader {
		return dnsmessage.ResourceHeader{Name: name, Type: typ, Class: dnsmessage.ClassINET, TTL: TTL}
	}
	var out []dnsmessage.Resource
	if n.cname != "" {
		if target, err := dnsmessage.NewName(n.cname); err == nil {
			out = append(out, dnsmessage.Resource{Header: hdr(dnsmessage.TypeCNAME), Body: &dnsmessage.CNAMEResource{CNAME: target}})
		}
		return out
	}
	if t == dnsmessage.TypeA || t == dnsmessage.TypeALL {
		for _, a := range n.a {
			out = append(out, dnsmessage.Resource{Header: hdr(dnsmessage.TypeA), Body: &dnsmessage.AResource{A: a.As4()}})
		}
	}
	if t == dnsmessage.TypeAAAA || t == dnsmessage.TypeALL {
		for _, a := range n.aaaa {
			out = append(out, dnsmessage.Resource{Header: hdr(dnsmessage.TypeAAAA), Body: &dnsmessage.AAAAResource{AAAA: a.As16()}})
		}
	}
	if t == dnsmessage.TypeSRV || t == dnsmessage.TypeALL {
		for _, s := range n.srv {
			target, err := dnsmessage.NewName(s.target)
			if err != nil {
				continue
			}
			out = append(out, dnsmessage.Resource{Header: hdr(dnsmessage.TypeSRV), Body: &dnsmessage.SRVResource{
				Priority: 0, Weight: 100, Port: s.port, Target: target,
			}})
		}
	}
	return out
}

func (ix *Index) soa() dnsmessage.Resource {
	zone := dnsmessage.MustNewName(ix.domain)
	return dnsmessage.Resource{
		Header: dnsmessage.ResourceHeader{Name: zone, Type: dnsmessage.TypeSOA, Class: dnsmessage.ClassINET, TTL: TTL},
		Body: &dnsmessage.SOAResource{
			NS:      dnsmessage.MustNewName("ns.dns." + ix.domain),
			MBox:    dnsmessage.MustNewName("hostmaster." + ix.domain),
			Serial:  1,
			Refresh: 7200, Retry: 1800, Expire: 86400, MinTTL: TTL,
		},
	}
}

func inZone(name, zone string) bool {
	return name == zone || strings.HasSuffix(name, "."+zone)
}

func hasOPT(m dnsmessage.Message) bool {
	for _, rr := range m.Additionals {
		if rr.Header.Type == dnsmessage.TypeOPT {
			return true
		}
	}
	return false
}

func optRR() dnsmessage.Resource {
	var h dnsmessage.ResourceHeader
	_ = h.SetEDNS0(MaxUDPSize, dnsmessage.RCodeSuccess, false) // never fails for these arguments
	return dnsmessage.Resource{Header: h, Body: &dnsmessage.OPTResource{}}
}

// UDPLimit is the largest UDP response query's sender accepts: 512 bytes,
// or its EDNS buffer size capped at MaxUDPSize.
func UDPLimit(query dnsmessage.Message) int {
	for _, rr := range query.Additionals {
		if rr.Header.Type == dnsmessage.TypeOPT {
			return min(max(int(rr.Header.Class), 512), MaxUDPSize)
		}
	}
	return 512
}

// Truncate packs r, and when it exceeds limit drops its records (keeping
// the question and any OPT) and sets TC so the client retries over TCP.
func Truncate(r dnsmessage.Message, limit int) ([]byte, error) {
	b, err := r.Pack()
	if err != nil || len(b) <= limit {
		return b, err
	}
	r.Truncated = true
	r.Answers, r.Authorities = nil, nil
	var keep []dnsmessage.Resource
	for _, rr := range r.Additionals {
		if rr.Header.Type == dnsmessage.TypeOPT {
			keep = append(keep, rr)
		}
	}
	r.Additionals = keep
	return r.Pack()
}
