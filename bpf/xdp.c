//go:build ignore

// sipwall XDP prefilter.
//
// Judges packets sent to the SIP ports before the kernel's network stack
// sees them: allow-list, bans, deny list, payload class, per-source rate
// limit, per-CPU caps per class. Everything that is not for a SIP port
// passes untouched. model.go is the same decision in Go; the two are
// compared by the package's tests, so a change here needs the same change
// there.
//
// Regenerate the Go bindings and the object with `go generate ./bpf`
// (clang needed only then).

#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/ipv6.h>
#include <linux/udp.h>
#include <linux/tcp.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

// Payload classes, each with its own budgets.
enum sw_class {
	CLASS_REQUEST = 0,
	CLASS_RESPONSE = 1,
	CLASS_KEEPALIVE = 2,
	CLASS_STUN = 3,
	CLASS_JUNK = 4,
	CLASS_SYN = 5,
	NCLASS = 6,
};

// Reasons counted in the counters map, one slot each.
enum sw_reason {
	REASON_OTHER = 0,     // not for a SIP port (or not IP): passed untouched
	REASON_ALLOW = 1,     // allow-listed source: passed
	REASON_PASS = 2,      // judged and passed
	REASON_FRAGMENT = 3,  // non-first fragment from an unbanned source: passed
	REASON_STREAM = 4,    // TCP segment other than SYN: passed
	REASON_BAN = 5,       // banned source: dropped
	REASON_DENY = 6,      // denied network: dropped
	REASON_RATE = 7,      // per-source rate limit: dropped
	REASON_GLOBAL = 8,    // per-CPU class cap: dropped
	REASON_MALFORMED = 9, // UDP header to a SIP port that cannot be right: dropped
	NREASON = 10,
};

#define PORT_UDP 1
#define PORT_TCP 2

#define FLAG_OBSERVE 1 // count decisions but pass everything

#define MAX_VLAN 2
#define MAX_EXTHDR 6
#define MAX_METHOD 16
#define WINDOW_NS 1000000000ULL

// An address as 16 bytes: IPv4 as an IPv4-mapped IPv6 address.
struct sw_addr {
	__u8 b[16];
};

// Key of the LPM tries (allow, deny, ban_nets): prefix length counted on the
// 16-byte form (an IPv4 /24 is 96+24).
struct sw_lpm_key {
	__u32 prefixlen;
	struct sw_addr addr;
};

// Key of the ban hash: a host (/128, IPv4 mapped) or an IPv6 /64 (low
// half zero), told apart by plen.
struct sw_ban_key {
	struct sw_addr addr;
	__u32 plen;
};

// One class's per-source limit (GCRA): interval between packets and the
// tolerance (burst-1 intervals). interval 0 = no limit.
struct sw_limit {
	__u64 interval_ns;
	__u64 tolerance_ns;
};

struct sw_config {
	struct sw_limit source[NCLASS];
	// Packets per second per CPU for each class, all sources together
	// (0 = no cap), and the part of it unverified sources may use.
	__u64 cap[NCLASS];
	__u64 cap_unverified[NCLASS];
	__u32 flags;
	__u32 pad;
};

// Per-source state: the GCRA theoretical arrival time per class.
struct sw_source {
	__u64 tat[NCLASS];
};

// Per-CPU window of a class cap.
struct sw_window {
	__u64 start;
	__u64 count;
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct sw_config);
} config SEC(".maps");

// SIP ports (host byte order) -> PORT_UDP|PORT_TCP.
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 64);
	__type(key, __u16);
	__type(value, __u8);
} ports SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, 16384);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct sw_lpm_key);
	__type(value, __u8);
} allow SEC(".maps");

// Denied networks; value = expiry (coarse monotonic ns), 0 = never.
struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, 16384);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct sw_lpm_key);
	__type(value, __u64);
} deny SEC(".maps");

// Bans of hosts and IPv6 /64s; value = expiry (coarse monotonic ns), 0 = never.
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 131072);
	__type(key, struct sw_ban_key);
	__type(value, __u64);
} bans SEC(".maps");

// Bans of other prefix lengths; value as in bans.
struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, 16384);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct sw_lpm_key);
	__type(value, __u64);
} ban_nets SEC(".maps");

// Sources that authenticated recently (hosts); value = expiry, 0 = never.
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 65536);
	__type(key, struct sw_addr);
	__type(value, __u64);
} verified SEC(".maps");

// Per-source limiter state, per IPv4 address and per IPv6 /64.
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 262144);
	__type(key, struct sw_addr);
	__type(value, struct sw_source);
} sources SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, NCLASS);
	__type(key, __u32);
	__type(value, struct sw_window);
} windows SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, NREASON);
	__type(key, __u32);
	__type(value, __u64);
} counters SEC(".maps");

// Per class: slot 2*class = passed, 2*class+1 = dropped.
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 2 * NCLASS);
	__type(key, __u32);
	__type(value, __u64);
} class_counters SEC(".maps");

static __always_inline void count(__u32 slot)
{
	__u64 *c = bpf_map_lookup_elem(&counters, &slot);
	if (c)
		*c += 1;
}

static __always_inline void count_class(__u32 class, int dropped)
{
	__u32 slot = 2 * class + (dropped ? 1 : 0);
	__u64 *c = bpf_map_lookup_elem(&class_counters, &slot);
	if (c)
		*c += 1;
}

static __always_inline int live(__u64 *expiry, __u64 now)
{
	return expiry && (*expiry == 0 || *expiry > now);
}

static __always_inline int in_trie(void *map, struct sw_addr *a)
{
	struct sw_lpm_key k = { .prefixlen = 128 };
	__builtin_memcpy(&k.addr, a, sizeof(k.addr));
	return bpf_map_lookup_elem(map, &k) != 0;
}

static __always_inline int denied(void *map, struct sw_addr *a, __u64 now)
{
	struct sw_lpm_key k = { .prefixlen = 128 };
	__builtin_memcpy(&k.addr, a, sizeof(k.addr));
	return live(bpf_map_lookup_elem(map, &k), now);
}

static __always_inline int banned(struct sw_addr *a, int v4, __u64 now)
{
	struct sw_ban_key k = { .plen = 128 };
	__builtin_memcpy(&k.addr, a, sizeof(k.addr));
	if (live(bpf_map_lookup_elem(&bans, &k), now))
		return 1;
	if (!v4) {
		__builtin_memset(&k.addr.b[8], 0, 8);
		k.plen = 64;
		if (live(bpf_map_lookup_elem(&bans, &k), now))
			return 1;
	}
	return denied(&ban_nets, a, now);
}

static __always_inline int is_upper(__u8 c)
{
	return c >= 'A' && c <= 'Z';
}

// classify looks at the first bytes of a UDP payload [p, p+n), n being the
// bytes present in the frame.
static __always_inline __u32 classify(__u8 *p, __u32 n, void *end)
{
	if (n == 0)
		return CLASS_JUNK;
	if ((void *)(p + 1) > end)
		return CLASS_JUNK;
	if (p[0] == '\r' || p[0] == '\n') {
		if (n > 4)
			return CLASS_JUNK;
		for (int i = 0; i < 4; i++) {
			if (i >= n)
				break;
			if ((void *)(p + i + 1) > end)
				return CLASS_JUNK;
			if (p[i] != '\r' && p[i] != '\n')
				return CLASS_JUNK;
		}
		return CLASS_KEEPALIVE;
	}
	if ((p[0] & 0xc0) == 0) {
		if (n >= 20 && (void *)(p + 20) <= end && p[4] == 0x21 &&
		    p[5] == 0x12 && p[6] == 0xa4 && p[7] == 0x42)
			return CLASS_STUN;
		return CLASS_JUNK;
	}
	if (n >= 8 && (void *)(p + 8) <= end && p[0] == 'S' && p[1] == 'I' &&
	    p[2] == 'P' && p[3] == '/' && p[4] == '2' && p[5] == '.' &&
	    p[6] == '0' && p[7] == ' ')
		return CLASS_RESPONSE;
	// A request: a method of 1..MAX_METHOD upper-case letters, then a space.
	for (int i = 0; i <= MAX_METHOD; i++) {
		if (i >= n)
			return CLASS_JUNK;
		if ((void *)(p + i + 1) > end)
			return CLASS_JUNK;
		if (p[i] == ' ')
			return i > 0 ? CLASS_REQUEST : CLASS_JUNK;
		if (!is_upper(p[i]))
			return CLASS_JUNK;
	}
	return CLASS_JUNK;
}

// limited applies the per-source GCRA of a class.
static __always_inline int limited(struct sw_config *cfg, struct sw_addr *a,
				   int v4, __u32 class, __u64 now)
{
	if (class >= NCLASS)
		return 0;
	struct sw_limit *lim = &cfg->source[class];
	if (lim->interval_ns == 0)
		return 0;
	struct sw_addr k;
	__builtin_memcpy(&k, a, sizeof(k));
	if (!v4)
		__builtin_memset(&k.b[8], 0, 8);
	struct sw_source *s = bpf_map_lookup_elem(&sources, &k);
	if (!s) {
		struct sw_source zero = {};
		bpf_map_update_elem(&sources, &k, &zero, BPF_NOEXIST);
		s = bpf_map_lookup_elem(&sources, &k);
		if (!s)
			return 0;
	}
	__u64 tat = s->tat[class];
	if (tat < now)
		tat = now;
	if (tat - now > lim->tolerance_ns)
		return 1;
	s->tat[class] = tat + lim->interval_ns;
	return 0;
}

// capped applies the per-CPU cap of a class, keeping a share for verified
// sources.
static __always_inline int capped(struct sw_config *cfg, struct sw_addr *a,
				  __u32 class, __u64 now)
{
	if (class >= NCLASS)
		return 0;
	__u64 cap = cfg->cap[class];
	if (cap == 0)
		return 0;
	struct sw_window *w = bpf_map_lookup_elem(&windows, &class);
	if (!w)
		return 0;
	if (now - w->start >= WINDOW_NS) {
		w->start = now;
		w->count = 0;
	}
	if (w->count >= cfg->cap_unverified[class]) {
		if (w->count >= cap)
			return 1;
		if (!live(bpf_map_lookup_elem(&verified, a), now))
			return 1;
	}
	w->count += 1;
	return 0;
}

// by_address is the judgement by source address alone: ALLOW, BAN, DENY,
// or PASS when none applies.
static __always_inline __u32 by_address(struct sw_addr *src, int v4, __u64 now)
{
	if (in_trie(&allow, src))
		return REASON_ALLOW;
	if (banned(src, v4, now))
		return REASON_BAN;
	if (denied(&deny, src, now))
		return REASON_DENY;
	return REASON_PASS;
}

static __always_inline int verdict(struct sw_config *cfg, __u32 reason)
{
	count(reason);
	if (reason >= REASON_BAN && !(cfg->flags & FLAG_OBSERVE))
		return XDP_DROP;
	return XDP_PASS;
}

SEC("xdp")
int sipwall_xdp(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *end = (void *)(long)ctx->data_end;
	__u32 zero = 0;
	struct sw_config *cfg = bpf_map_lookup_elem(&config, &zero);
	if (!cfg)
		return XDP_PASS;

	struct ethhdr *eth = data;
	if ((void *)(eth + 1) > end)
		return verdict(cfg, REASON_OTHER);
	__u16 proto = eth->h_proto;
	void *cur = eth + 1;
#pragma unroll
	for (int i = 0; i < MAX_VLAN; i++) {
		if (proto != bpf_htons(ETH_P_8021Q) && proto != bpf_htons(ETH_P_8021AD))
			break;
		if (cur + 4 > end)
			return verdict(cfg, REASON_OTHER);
		proto = *(__u16 *)(cur + 2);
		cur += 4;
	}

	struct sw_addr src = {};
	int v4 = 0, fragment = 0, first_fragment = 0;
	__u8 l4;
	__u32 l3_payload; // bytes the IP header says follow it

	if (proto == bpf_htons(ETH_P_IP)) {
		struct iphdr *ip = cur;
		if ((void *)(ip + 1) > end)
			return verdict(cfg, REASON_OTHER);
		__u32 hl = ip->ihl * 4;
		__u32 tot = bpf_ntohs(ip->tot_len);
		if (hl < sizeof(*ip) || tot < hl || cur + hl > end)
			return verdict(cfg, REASON_OTHER);
		v4 = 1;
		src.b[10] = 0xff;
		src.b[11] = 0xff;
		__builtin_memcpy(&src.b[12], &ip->saddr, 4);
		__u16 frag = bpf_ntohs(ip->frag_off);
		if (frag & 0x1fff)
			fragment = 1;
		else if (frag & 0x2000)
			first_fragment = 1;
		l4 = ip->protocol;
		l3_payload = tot - hl;
		cur += hl;
	} else if (proto == bpf_htons(ETH_P_IPV6)) {
		struct ipv6hdr *ip6 = cur;
		if ((void *)(ip6 + 1) > end)
			return verdict(cfg, REASON_OTHER);
		__builtin_memcpy(&src, &ip6->saddr, 16);
		l4 = ip6->nexthdr;
		l3_payload = bpf_ntohs(ip6->payload_len);
		cur = ip6 + 1;
#pragma unroll
		for (int i = 0; i < MAX_EXTHDR; i++) {
			__u32 len;
			if (l4 == IPPROTO_HOPOPTS || l4 == IPPROTO_ROUTING ||
			    l4 == IPPROTO_DSTOPTS) {
				if (cur + 2 > end)
					return verdict(cfg, REASON_OTHER);
				len = (*(__u8 *)(cur + 1) + 1) * 8;
			} else if (l4 == IPPROTO_FRAGMENT) {
				if (cur + 8 > end)
					return verdict(cfg, REASON_OTHER);
				__u16 off = bpf_ntohs(*(__u16 *)(cur + 2));
				if (off & 0xfff8)
					fragment = 1;
				else if (off & 1)
					first_fragment = 1;
				len = 8;
			} else if (l4 == IPPROTO_AH) {
				if (cur + 2 > end)
					return verdict(cfg, REASON_OTHER);
				len = (*(__u8 *)(cur + 1) + 2) * 4;
			} else {
				break;
			}
			if (fragment)
				break;
			if (len > l3_payload)
				return verdict(cfg, REASON_OTHER);
			l4 = *(__u8 *)cur;
			l3_payload -= len;
			cur += len;
		}
	} else {
		return verdict(cfg, REASON_OTHER);
	}

	__u64 now = bpf_ktime_get_coarse_ns();

	if (fragment) {
		// No transport header: judged by address alone.
		__u32 r = by_address(&src, v4, now);
		return verdict(cfg, r != REASON_PASS ? r : REASON_FRAGMENT);
	}

	__u32 class;
	__u16 dport;
	if (l4 == IPPROTO_UDP) {
		struct udphdr *udp = cur;
		if ((void *)(udp + 1) > end)
			return verdict(cfg, REASON_OTHER);
		dport = bpf_ntohs(udp->dest);
		__u8 *mask = bpf_map_lookup_elem(&ports, &dport);
		if (!mask || !(*mask & PORT_UDP))
			return verdict(cfg, REASON_OTHER);
		__u32 ulen = bpf_ntohs(udp->len);
		if (ulen < sizeof(*udp) || (!first_fragment && ulen > l3_payload))
			return verdict(cfg, REASON_MALFORMED);
		__u32 r = by_address(&src, v4, now);
		if (r != REASON_PASS)
			return verdict(cfg, r);
		__u8 *p = (__u8 *)(udp + 1);
		__u32 n = ulen - sizeof(*udp);
		class = classify(p, n, end);
	} else if (l4 == IPPROTO_TCP) {
		struct tcphdr *tcp = cur;
		if ((void *)(tcp + 1) > end)
			return verdict(cfg, REASON_OTHER);
		dport = bpf_ntohs(tcp->dest);
		__u8 *mask = bpf_map_lookup_elem(&ports, &dport);
		if (!mask || !(*mask & PORT_TCP))
			return verdict(cfg, REASON_OTHER);
		__u32 r = by_address(&src, v4, now);
		if (r != REASON_PASS)
			return verdict(cfg, r);
		if (!tcp->syn || tcp->ack)
			return verdict(cfg, REASON_STREAM);
		class = CLASS_SYN;
	} else {
		return verdict(cfg, REASON_OTHER);
	}

	if (class >= NCLASS)
		return verdict(cfg, REASON_OTHER);
	if (limited(cfg, &src, v4, class, now)) {
		count_class(class, 1);
		return verdict(cfg, REASON_RATE);
	}
	if (capped(cfg, &src, class, now)) {
		count_class(class, 1);
		return verdict(cfg, REASON_GLOBAL);
	}
	count_class(class, 0);
	return verdict(cfg, REASON_PASS);
}

char __license[] SEC("license") = "GPL";
