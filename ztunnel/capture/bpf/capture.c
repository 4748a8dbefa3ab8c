// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * Transparent capture of enrolled pods' TCP for ztunnel.
 *
 * Attached with TCX to the ingress of every pod's host-side veth and of the
 * node uplink (in the node network namespace). For each IPv4 or IPv6 packet:
 *
 *   0. Packets that neither come from nor go to an enrolled pod, and non-TCP
 *      packets, are not ours. TCP to or from an enrolled pod whose TCP header
 *      cannot be read here (IP fragments, IPv6 extension headers, truncated
 *      headers) is dropped: it could otherwise slip past capture.
 *   1. If the source IP is an enrolled pod, the packet must have arrived on that
 *      pod's own veth; otherwise it is spoofed and dropped.
 *   2. Packets of flows that involve an enrolled pod (source or destination) and
 *      that belong to a socket of the node netns (ztunnel's accepted socket, a
 *      request socket, ztunnel's source-preserving upstream socket, or a
 *      TIME_WAIT socket, see capture_lookup) are assigned to that socket.
 *   3. A SYN (no ACK) from an enrolled pod goes to the outbound listener (15001);
 *      (the listener of the packet's address family);
 *      a SYN to an enrolled pod goes to the HBONE listener (15008) when the
 *      destination port is 15008, else to the plaintext inbound listener (15006).
 *      If the listener is not registered (proxy down) the SYN is dropped: the
 *      client retransmits and connects once the proxy is back (fail closed).
 *   4. Everything else is not ours: TC_ACT_UNSPEC (TCX_NEXT) so the next TCX
 *      program on the hook (a CNI's) still runs.
 *
 * Assigned packets get skb->mark |= CAPTURE_MARK; the node routes marked packets
 * to "local" (ip [-6] rule fwmark 0x400/0x400 lookup 100; local 0.0.0.0/0 and
 * local ::/0 dev lo table 100) so the stack delivers them to the assigned socket.
 *
 * ztunnel's own connections leave the node netns through a veth's egress (or the
 * uplink's egress) and are never seen here, so they do not loop.
 */
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/in6.h>
#include <linux/ip.h>
#include <linux/ipv6.h>
#include <linux/pkt_cls.h>
#include <linux/tcp.h>
#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>

#define CAPTURE_MARK 0x400
#define HBONE_PORT 15008
#ifndef AF_INET
#define AF_INET 2
#endif
#ifndef AF_INET6
#define AF_INET6 10
#endif

/* Kind of capture listener. The listeners SOCKMAP holds the IPv4 listener of a
 * kind at index kind and the IPv6 one at index kind + LISTENER_MAX.
 * Mirrored in Go by bpf2go. */
enum listener_kind {
	LISTENER_OUTBOUND = 0,      /* 15001 */
	LISTENER_INBOUND_PLAIN = 1, /* 15006 */
	LISTENER_HBONE = 2,         /* 15008 */
	LISTENER_MAX = 3,
};

/* Index of a counter in the stats map. Mirrored in Go by bpf2go. */
enum stat {
	STAT_ASSIGN_ESTABLISHED = 0,
	STAT_ASSIGN_OUTBOUND = 1,
	STAT_ASSIGN_INBOUND_PLAIN = 2,
	STAT_ASSIGN_HBONE = 3,
	STAT_NO_LISTENER = 4,
	STAT_ASSIGN_FAILED = 5,
	STAT_SPOOFED = 6,
	STAT_UNPARSED = 7,
	STAT_LOOKUP_ASSIGNED = 8,
	STAT_MAX = 9,
};

/* A pod address in network byte order: IPv6, or IPv4 mapped (::ffff:a.b.c.d). */
struct pod_addr {
	__u32 addr[4];
};

/* Value of the enrolled map: the host-side veth the pod's packets must come from. */
struct enrolled_pod {
	__u32 ifindex;
	__u32 flags; /* reserved, 0 */
};

/* Enrolled pod addresses on this node. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__type(key, struct pod_addr);
	__type(value, struct enrolled_pod);
	__uint(max_entries, 16384);
} enrolled SEC(".maps");

/* ztunnel's IP_TRANSPARENT listening sockets, see enum listener_kind. */
struct {
	__uint(type, BPF_MAP_TYPE_SOCKMAP);
	__type(key, enum listener_kind);
	__type(value, __u64);
	__uint(max_entries, 2 * LISTENER_MAX);
} listeners SEC(".maps");

/* Per-CPU counters, indexed by enum stat. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__type(key, enum stat);
	__type(value, __u64);
	__uint(max_entries, STAT_MAX);
} stats SEC(".maps");

static __always_inline void count(enum stat k)
{
	__u64 *v = bpf_map_lookup_elem(&stats, &k);
	if (v)
		__sync_fetch_and_add(v, 1);
}

/* assign steers the packet to sk and consumes the reference on sk. */
static __always_inline int assign(struct __sk_buff *skb, struct bpf_sock *sk)
{
	long err = bpf_sk_assign(skb, sk, 0);
	bpf_sk_release(sk);
	if (err) {
		count(STAT_ASSIGN_FAILED);
		return TC_ACT_SHOT;
	}
	/* volatile: keep clang from merging this context store with others
	 * (the verifier rejects wide context stores). */
	*(volatile __u32 *)&skb->mark = skb->mark | CAPTURE_MARK;
	return TC_ACT_OK; /* ends the TCX chain: the packet is ours */
}

/* Context fields must be loaded with a constant offset from the context
 * pointer; volatile keeps clang from computing an interior pointer first. */
#define CTX_U32(field) (*(volatile __u32 *)&(field))

/* new_flow picks the listener slot of a new connection from (src enrolled) or
 * to (otherwise) an enrolled pod; dport in host byte order. */
static __always_inline __u32 new_flow(int from_enrolled, __u16 dport, __u32 slot_base, enum stat *stat)
{
	if (from_enrolled) {
		*stat = STAT_ASSIGN_OUTBOUND;
		return slot_base + LISTENER_OUTBOUND;
	}
	if (dport == HBONE_PORT) {
		*stat = STAT_ASSIGN_HBONE;
		return slot_base + LISTENER_HBONE;
	}
	*stat = STAT_ASSIGN_INBOUND_PLAIN;
	return slot_base + LISTENER_INBOUND_PLAIN;
}

/* IPv6 extension headers, which may hide a TCP header behind them. */
static __always_inline int ipv6_ext_header(__u8 nexthdr)
{
	switch (nexthdr) {
	case IPPROTO_HOPOPTS:
	case IPPROTO_ROUTING:
	case IPPROTO_FRAGMENT:
	case IPPROTO_DSTOPTS:
	case IPPROTO_AH:
	case IPPROTO_MH:
	case 139: /* HIP */
	case 140: /* Shim6 */
		return 1;
	}
	return 0;
}

SEC("tc")
int capture_ingress(struct __sk_buff *skb)
{
	void *data = (void *)(long)skb->data;
	void *data_end = (void *)(long)skb->data_end;

	struct ethhdr *eth = data;
	if ((void *)(eth + 1) > data_end)
		return TC_ACT_UNSPEC;

	struct pod_addr saddr = {}, daddr = {};
	struct bpf_sock_tuple t = {};
	__u32 tuple_len;
	__u32 slot_base; /* listeners index of this address family */
	struct tcphdr *th;
	int tcp, parsed;

	if (eth->h_proto == bpf_htons(ETH_P_IP)) {
		struct iphdr *iph = (void *)(eth + 1);
		if ((void *)(iph + 1) > data_end || iph->ihl < 5)
			return TC_ACT_UNSPEC;
		saddr.addr[2] = daddr.addr[2] = bpf_htonl(0xffff);
		saddr.addr[3] = iph->saddr;
		daddr.addr[3] = iph->daddr;
		tcp = iph->protocol == IPPROTO_TCP;
		th = (void *)iph + iph->ihl * 4;
		/* No fragment at all: with a tiny first fragment the TCP header
		 * would only be complete after reassembly. */
		parsed = !(iph->frag_off & bpf_htons(0x3fff)) && (void *)(th + 1) <= data_end;
		if (tcp && parsed) {
			t.ipv4.saddr = iph->saddr;
			t.ipv4.daddr = iph->daddr;
			t.ipv4.sport = th->source;
			t.ipv4.dport = th->dest;
		}
		tuple_len = sizeof(t.ipv4);
		slot_base = 0;
	} else if (eth->h_proto == bpf_htons(ETH_P_IPV6)) {
		struct ipv6hdr *ip6 = (void *)(eth + 1);
		if ((void *)(ip6 + 1) > data_end)
			return TC_ACT_UNSPEC;
		__builtin_memcpy(saddr.addr, &ip6->saddr, sizeof(saddr.addr));
		__builtin_memcpy(daddr.addr, &ip6->daddr, sizeof(daddr.addr));
		/* An extension header may hide TCP: treat it as TCP we cannot parse. */
		tcp = ip6->nexthdr == IPPROTO_TCP || ipv6_ext_header(ip6->nexthdr);
		th = (void *)(ip6 + 1);
		parsed = ip6->nexthdr == IPPROTO_TCP && (void *)(th + 1) <= data_end;
		if (tcp && parsed) {
			__builtin_memcpy(t.ipv6.saddr, &ip6->saddr, sizeof(t.ipv6.saddr));
			__builtin_memcpy(t.ipv6.daddr, &ip6->daddr, sizeof(t.ipv6.daddr));
			t.ipv6.sport = th->source;
			t.ipv6.dport = th->dest;
		}
		tuple_len = sizeof(t.ipv6);
		slot_base = LISTENER_MAX;
	} else {
		return TC_ACT_UNSPEC;
	}
	if (!tcp)
		return TC_ACT_UNSPEC;

	struct enrolled_pod *src = bpf_map_lookup_elem(&enrolled, &saddr);
	if (src && src->ifindex != skb->ingress_ifindex) {
		/* An enrolled pod's address from another interface: spoofed. */
		count(STAT_SPOOFED);
		return TC_ACT_SHOT;
	}
	struct enrolled_pod *dst = bpf_map_lookup_elem(&enrolled, &daddr);
	if (!src && !dst)
		return TC_ACT_UNSPEC;
	if (!parsed) {
		count(STAT_UNPARSED);
		return TC_ACT_SHOT;
	}
	/* parsed implies th + 1 <= data_end, but the verifier needs to see it. */
	if ((void *)(th + 1) > data_end)
		return TC_ACT_SHOT;

	int syn = th->syn && !th->ack;

	struct bpf_sock *sk = bpf_skc_lookup_tcp(skb, &t, tuple_len, BPF_F_CURRENT_NETNS, 0);
	if (sk) {
		/* A LISTEN match is some node-local listener, not a flow of ours.
		 * A SYN matching TIME_WAIT (the client reuses a port) also goes to
		 * the TIME_WAIT socket: the kernel retires it and looks up a
		 * listener, which capture_lookup answers. Assigning the SYN to the
		 * listener directly would fail: the kernel drops a request whose
		 * addresses duplicate the TIME_WAIT socket's. */
		if (sk->state != BPF_TCP_LISTEN) {
			count(STAT_ASSIGN_ESTABLISHED);
			return assign(skb, sk);
		}
		bpf_sk_release(sk);
	}
	if (!syn)
		return TC_ACT_UNSPEC;

	enum stat stat;
	__u32 slot = new_flow(src != 0, bpf_ntohs(th->dest), slot_base, &stat);
	sk = bpf_map_lookup_elem(&listeners, &slot);
	if (!sk) {
		/* Never bypass: without a listener the SYN waits for the proxy. */
		count(STAT_NO_LISTENER);
		return TC_ACT_SHOT;
	}
	count(stat);
	return assign(skb, sk);
}

/*
 * capture_lookup runs (BPF sk_lookup, attached to the node netns) when the
 * kernel looks up a listener for a SYN delivered locally. That matters for SYNs
 * that capture_ingress handed to a TIME_WAIT socket: the kernel retires the
 * TIME_WAIT socket and takes the listener found here. (The kernel also runs it
 * for SYNs capture_ingress assigned to a listener; it picks the same one.)
 * It picks the listener capture_ingress would; anything else is left to the
 * regular lookup.
 */
SEC("sk_lookup")
int capture_lookup(struct bpf_sk_lookup *ctx)
{
	if (ctx->protocol != IPPROTO_TCP)
		return SK_PASS;

	/* Load every address field up front, each with its own constant offset:
	 * clang would otherwise share one load between the two families through
	 * a computed context pointer, which the verifier rejects. */
	__u32 family = CTX_U32(ctx->family);
	struct pod_addr r6 = {}, l6 = {};
	__u32 r4 = CTX_U32(ctx->remote_ip4);
	__u32 l4 = CTX_U32(ctx->local_ip4);
	r6.addr[0] = CTX_U32(ctx->remote_ip6[0]);
	r6.addr[1] = CTX_U32(ctx->remote_ip6[1]);
	r6.addr[2] = CTX_U32(ctx->remote_ip6[2]);
	r6.addr[3] = CTX_U32(ctx->remote_ip6[3]);
	l6.addr[0] = CTX_U32(ctx->local_ip6[0]);
	l6.addr[1] = CTX_U32(ctx->local_ip6[1]);
	l6.addr[2] = CTX_U32(ctx->local_ip6[2]);
	l6.addr[3] = CTX_U32(ctx->local_ip6[3]);

	struct pod_addr saddr = {}, daddr = {};
	__u32 slot_base;
	if (family == AF_INET) {
		saddr.addr[2] = daddr.addr[2] = bpf_htonl(0xffff);
		saddr.addr[3] = r4;
		daddr.addr[3] = l4;
		slot_base = 0;
	} else if (family == AF_INET6) {
		saddr = r6;
		daddr = l6;
		slot_base = LISTENER_MAX;
	} else {
		return SK_PASS;
	}

	struct enrolled_pod *src = bpf_map_lookup_elem(&enrolled, &saddr);
	if (src && src->ifindex != ctx->ingress_ifindex) {
		count(STAT_SPOOFED);
		return SK_DROP;
	}
	struct enrolled_pod *dst = bpf_map_lookup_elem(&enrolled, &daddr);
	if (!src && !dst)
		return SK_PASS;

	enum stat stat;
	__u32 slot = new_flow(src != 0, ctx->local_port, slot_base, &stat);
	struct bpf_sock *sk = bpf_map_lookup_elem(&listeners, &slot);
	if (!sk) {
		count(STAT_NO_LISTENER);
		return SK_DROP;
	}
	long err = bpf_sk_assign(ctx, sk, 0);
	bpf_sk_release(sk);
	if (err) {
		count(STAT_ASSIGN_FAILED);
		return SK_DROP;
	}
	count(STAT_LOOKUP_ASSIGNED);
	return SK_PASS;
}

char __license[] SEC("license") = "Dual BSD/GPL";
