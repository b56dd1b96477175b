//go:build ignore

// sipwall media fast path (TC ingress).
//
// Forwards the RTP of latched streams in the kernel: a datagram to one of
// the relay's RTP sockets (the key of the routes map), from the peer that
// socket latched to, leaves from the relay's socket on the other side
// toward the peer latched there, as the userspace relay would have sent it
// (addresses, ports, TTL 64, checksums updated). Everything else passes
// to the stack untouched and reaches the relay's sockets as before: other
// sources, expired routes, RTCP, what is not RTP version 2 (STUN, DTLS,
// ZRTP), IP options, fragments, packets too big for the egress device.
// media.go (MediaModel) is the same decision in Go; the package's tests compare
// the two frame by frame, so a change here needs the same change there.
//
// TC and not XDP: the checksum helpers know the skb's checksum state
// (CHECKSUM_PARTIAL from a local sender on a veth, CHECKSUM_COMPLETE from
// a NIC), bpf_redirect_neigh resolves the next hop's MAC address and
// transmits through any device, and nothing depends on the driver's XDP
// support or on the far end of a veth. See README.md.
//
// Regenerate the Go bindings and the object with `go generate ./bpf`
// (clang needed only then).

#include <linux/bpf.h>
#include <linux/pkt_cls.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/ipv6.h>
#include <linux/udp.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#define AF_INET 2
#define AF_INET6 10
#define LOOPBACK_IFINDEX 1

// Reasons counted per CPU, one slot each, for datagrams to a relay RTP
// socket that has a route. Every reason but FORWARD passes the datagram
// to the stack (the userspace relay).
enum sw_media_reason {
	MR_FORWARD = 0, // rewritten and sent on
	MR_SOURCE = 1,  // not from the latched peer
	MR_EXPIRED = 2, // the route's lease ended
	MR_SHAPE = 3,   // IP options, first fragment, lengths, checksum, GSO
	MR_NOT_RTP = 4, // not RTP version 2, or shorter than its header
	MR_RTCP = 5,    // RTCP (second byte 192-223, RFC 5761)
	MR_LOCAL = 6,   // local destination, arrived on another device than lo
	MR_MTU = 7,     // larger than the egress device takes
	MR_ERROR = 8,   // a helper failed during the rewrite: dropped
	NMREASON = 9,
};

// Route flags.
#define ROUTE_LOCAL 1 // the destination is an address of this host

#define RELAY_TTL 64
#define RTP_HEADER 12
// Bytes the parser reads: Ethernet, the longest IPv4 header, UDP, the
// first two bytes of RTP.
#define PARSE_LEN (14 + 60 + 8 + 2)

// An address as 16 bytes: IPv4 as an IPv4-mapped IPv6 address.
struct sw_addr {
	__u8 b[16];
};

// A relay RTP socket: its address and port (host byte order).
struct sw_media_key {
	struct sw_addr addr;
	__u16 port;
	__u16 pad;
};

// Where a datagram to the key's socket goes. Ports in host byte order.
struct sw_media_route {
	struct sw_addr peer;    // the only source forwarded: the latched peer
	struct sw_addr src;     // new source: the relay's socket on the other side
	struct sw_addr dst;     // new destination: the peer latched there
	struct sw_addr nexthop; // gateway toward dst, or dst when on link
	__u16 peer_port;
	__u16 src_port;
	__u16 dst_port;
	__u16 mtu;     // largest IP packet the egress device sends
	__u32 ifindex; // egress device (not used with ROUTE_LOCAL)
	__u32 flags;   // ROUTE_*
	__u64 expires; // coarse monotonic ns; 0 = never
};

// Per route, written by the program only.
struct sw_media_stats {
	__u64 packets;
	__u64 bytes; // UDP payload
	__u64 last_seen; // coarse monotonic ns
};

struct sw_media_config {
	__u16 port_min; // the relay's port range; port_max 0 = off
	__u16 port_max;
	__u32 pad;
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct sw_media_config);
} media_config SEC(".maps");

// Written by userspace; max_entries is set at load time.
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 65536);
	__type(key, struct sw_media_key);
	__type(value, struct sw_media_route);
} media_routes SEC(".maps");

// Created (zero) and deleted by userspace with its route, counted here.
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 65536);
	__type(key, struct sw_media_key);
	__type(value, struct sw_media_stats);
} media_stats SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, NMREASON);
	__type(key, __u32);
	__type(value, __u64);
} media_counters SEC(".maps");

static __always_inline int pass(__u32 reason)
{
	__u64 *c = bpf_map_lookup_elem(&media_counters, &reason);
	if (c)
		*c += 1;
	return TC_ACT_OK;
}

static __always_inline int addr_eq(const struct sw_addr *a, const struct sw_addr *b)
{
	const __u64 *x = (const __u64 *)a, *y = (const __u64 *)b;
	return x[0] == y[0] && x[1] == y[1];
}

// ip_sum_ok checks an IPv4 header checksum (20 bytes, no options).
static __always_inline int ip_sum_ok(const __u16 *h)
{
	__u32 s = 0;
#pragma unroll
	for (int i = 0; i < 10; i++)
		s += h[i];
	s = (s & 0xffff) + (s >> 16);
	s = (s & 0xffff) + (s >> 16);
	return s == 0xffff;
}

SEC("tc")
int sipwall_media(struct __sk_buff *skb)
{
	__u32 zero = 0;
	struct sw_media_config *cfg = bpf_map_lookup_elem(&media_config, &zero);
	if (!cfg || cfg->port_max == 0)
		return TC_ACT_OK;
	// A tag kept beside the packet would go out with it on the egress
	// device: VLAN traffic is forwarded by a program on the VLAN device.
	if (skb->vlan_present)
		return TC_ACT_OK;

	void *data = (void *)(long)skb->data;
	void *end = (void *)(long)skb->data_end;
	if (data + PARSE_LEN > end) {
		__u32 want = skb->len < PARSE_LEN ? skb->len : PARSE_LEN;
		if (bpf_skb_pull_data(skb, want))
			return TC_ACT_OK;
		data = (void *)(long)skb->data;
		end = (void *)(long)skb->data_end;
	}

	struct ethhdr *eth = data;
	if ((void *)(eth + 1) > end)
		return TC_ACT_OK;

	struct sw_media_key key = {};
	struct sw_addr src = {};
	__u32 l4;      // offset of the UDP header
	__u32 l3len;   // IP packet length from its header
	int v4 = 0, shape_bad = 0;

	if (eth->h_proto == bpf_htons(ETH_P_IP)) {
		struct iphdr *ip = (void *)(eth + 1);
		if ((void *)(ip + 1) > end)
			return TC_ACT_OK;
		if (ip->version != 4 || ip->protocol != IPPROTO_UDP)
			return TC_ACT_OK;
		if (ip->frag_off & bpf_htons(0x1fff))
			return TC_ACT_OK; // not the first fragment: no UDP header
		__u32 hl = ip->ihl * 4;
		if (hl < sizeof(*ip))
			return TC_ACT_OK;
		l4 = sizeof(*eth) + hl;
		l3len = bpf_ntohs(ip->tot_len);
		v4 = 1;
		key.addr.b[10] = 0xff;
		key.addr.b[11] = 0xff;
		__builtin_memcpy(&key.addr.b[12], &ip->daddr, 4);
		src.b[10] = 0xff;
		src.b[11] = 0xff;
		__builtin_memcpy(&src.b[12], &ip->saddr, 4);
		if (hl != sizeof(*ip) || (ip->frag_off & bpf_htons(0x2000)) ||
		    !ip_sum_ok((const __u16 *)ip))
			shape_bad = 1;
	} else if (eth->h_proto == bpf_htons(ETH_P_IPV6)) {
		struct ipv6hdr *ip6 = (void *)(eth + 1);
		if ((void *)(ip6 + 1) > end)
			return TC_ACT_OK;
		if (ip6->version != 6 || ip6->nexthdr != IPPROTO_UDP)
			return TC_ACT_OK;
		l4 = sizeof(*eth) + sizeof(*ip6);
		l3len = sizeof(*ip6) + bpf_ntohs(ip6->payload_len);
		__builtin_memcpy(&key.addr, &ip6->daddr, 16);
		__builtin_memcpy(&src, &ip6->saddr, 16);
	} else {
		return TC_ACT_OK;
	}

	if (l4 > sizeof(struct ethhdr) + 60)
		return TC_ACT_OK;
	struct udphdr *udp = data + l4;
	if ((void *)(udp + 1) > end)
		return TC_ACT_OK;
	__u16 dport = bpf_ntohs(udp->dest);
	if (dport < cfg->port_min || dport > cfg->port_max)
		return TC_ACT_OK;
	key.port = dport;
	struct sw_media_route *rp = bpf_map_lookup_elem(&media_routes, &key);
	if (!rp)
		return TC_ACT_OK;
	struct sw_media_route r = *rp;

	__u64 now = bpf_ktime_get_coarse_ns();
	if (r.expires && r.expires <= now)
		return pass(MR_EXPIRED);
	if (bpf_ntohs(udp->source) != r.peer_port || !addr_eq(&src, &r.peer))
		return pass(MR_SOURCE);

	__u32 ulen = bpf_ntohs(udp->len);
	__u32 l3 = sizeof(struct ethhdr);
	if (shape_bad || skb->gso_segs > 1 || l3 + l3len > skb->len ||
	    ulen != l3len - (l4 - l3))
		return pass(MR_SHAPE);
	if (!v4 && udp->check == 0)
		return pass(MR_SHAPE); // not valid over IPv6: the stack drops it

	__u8 *p = (__u8 *)(udp + 1);
	if ((void *)(p + 2) > end || ulen < sizeof(*udp) + RTP_HEADER)
		return pass(MR_NOT_RTP);
	if ((p[0] & 0xc0) != 0x80)
		return pass(MR_NOT_RTP);
	if (p[1] >= 192 && p[1] <= 223)
		return pass(MR_RTCP);

	if (r.flags & ROUTE_LOCAL) {
		// Delivered in place: only a packet that came through loopback
		// carries the local route the stack then follows. Anywhere
		// else the stack would route it again and refuse our own
		// address as its source.
		if (skb->ingress_ifindex != LOOPBACK_IFINDEX)
			return pass(MR_LOCAL);
	} else if (l3len > r.mtu) {
		return pass(MR_MTU);
	}

	// Rewrite. Checksums first, while the old values are at hand; the
	// helpers know the skb's checksum state (full, partial, complete).
	// A helper fails only on bad arguments or when the skb cannot be
	// made writable: before the first change the packet passes as it
	// came, after it the half-rewritten packet is dropped.
	__u32 csum_off = l4 + offsetof(struct udphdr, check);
	__u32 ports_old = (__u32)udp->source | ((__u32)udp->dest << 16);
	__u32 ports_new = (__u32)bpf_htons(r.src_port) | ((__u32)bpf_htons(r.dst_port) << 16);
	__u64 mangled = v4 ? BPF_F_MARK_MANGLED_0 : 0;
	int bad = 0;
	if (v4) {
		struct iphdr *ip = (void *)(eth + 1);
		__u32 old[2] = {ip->saddr, ip->daddr};
		__u32 new[2];
		__builtin_memcpy(&new[0], &r.src.b[12], 4);
		__builtin_memcpy(&new[1], &r.dst.b[12], 4);
		__u16 ttl_old = *(__u16 *)&ip->ttl; // TTL and protocol
		__u16 ttl_new = ttl_old;
		((__u8 *)&ttl_new)[0] = RELAY_TTL;
		__s64 d = bpf_csum_diff(old, 8, new, 8, 0);
		if (d < 0 || bpf_l4_csum_replace(skb, csum_off, 0, d, BPF_F_PSEUDO_HDR | mangled))
			return TC_ACT_OK;
		// The IPv4 header still sums to zero afterwards: the skb's
		// complete checksum, if any, needs no change for it.
		bad |= bpf_l3_csum_replace(skb, l3 + offsetof(struct iphdr, check), 0, d, 0);
		bad |= bpf_l3_csum_replace(skb, l3 + offsetof(struct iphdr, check), ttl_old, ttl_new, 2);
		bad |= bpf_skb_store_bytes(skb, l3 + offsetof(struct iphdr, ttl), &ttl_new, 1, 0);
		bad |= bpf_skb_store_bytes(skb, l3 + offsetof(struct iphdr, saddr), new, 8, 0);
	} else {
		struct ipv6hdr *ip6 = (void *)(eth + 1);
		__u32 old[8], new[8];
		__builtin_memcpy(old, &ip6->saddr, 32);
		__builtin_memcpy(&new[0], &r.src, 16);
		__builtin_memcpy(&new[4], &r.dst, 16);
		__u8 hop = RELAY_TTL;
		__s64 d = bpf_csum_diff(old, 32, new, 32, 0);
		if (d < 0 || bpf_l4_csum_replace(skb, csum_off, 0, d, BPF_F_PSEUDO_HDR))
			return TC_ACT_OK;
		// No header checksum: the skb's complete checksum follows the
		// stored bytes.
		bad |= bpf_skb_store_bytes(skb, l3 + offsetof(struct ipv6hdr, hop_limit), &hop, 1, BPF_F_RECOMPUTE_CSUM);
		bad |= bpf_skb_store_bytes(skb, l3 + offsetof(struct ipv6hdr, saddr), new, 32, BPF_F_RECOMPUTE_CSUM);
	}
	__s64 dp = bpf_csum_diff(&ports_old, 4, &ports_new, 4, 0);
	if (dp < 0)
		bad = 1;
	else
		bad |= bpf_l4_csum_replace(skb, csum_off, 0, dp, mangled);
	bad |= bpf_skb_store_bytes(skb, l4, &ports_new, 4, BPF_F_INVALIDATE_HASH);
	if (bad) {
		pass(MR_ERROR);
		return TC_ACT_SHOT;
	}

	struct sw_media_stats *st = bpf_map_lookup_elem(&media_stats, &key);
	if (st) {
		__sync_fetch_and_add(&st->packets, 1);
		__sync_fetch_and_add(&st->bytes, ulen - sizeof(struct udphdr));
		st->last_seen = now;
	}
	pass(MR_FORWARD);
	if (r.flags & ROUTE_LOCAL)
		return TC_ACT_OK;
	struct bpf_redir_neigh nh = {};
	if (v4) {
		nh.nh_family = AF_INET;
		__builtin_memcpy(&nh.ipv4_nh, &r.nexthop.b[12], 4);
	} else {
		nh.nh_family = AF_INET6;
		__builtin_memcpy(nh.ipv6_nh, &r.nexthop, 16);
	}
	return bpf_redirect_neigh(r.ifindex, &nh, sizeof(nh), 0);
}

char __license[] SEC("license") = "GPL";
