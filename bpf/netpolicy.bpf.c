// SPDX-License-Identifier: GPL-2.0
/* Per-container network policy: cgroup socket hooks (connect4/6, sendmsg4/6, bind4/6) decide egress and
 * listening ports when the socket call is made, and a TC classifier on the container's interface drops
 * new inbound flows to ports the container never learned. Containers are keyed by cgroup v2 id (socket
 * hooks) and by interface index (TC); rules live in one LPM trie so a port rule can carry a CIDR.
 * Allowed packets return TC_ACT_UNSPEC (== TCX_NEXT): a CNI's own programs after ours still run. */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>
#include "enforce.bpf.h"

char LICENSE[] SEC("license") = "GPL";

#define NP_ALLOW_DNS 1
#define NP_ALLOW_LOOPBACK 2

/* Rule directions (first byte of the rule key). */
#define NP_DIR_EGRESS 1
#define NP_DIR_BIND 2
#define NP_DIR_INGRESS 3

#define AF_INET 2
#define AF_INET6 10
#define ETH_P_IP 0x0800
#define ETH_P_IPV6 0x86DD
#define TC_ACT_UNSPEC (-1)
#define TC_ACT_SHOT 2
/* UDP datagrams to ports at or above this are replies to the container's own traffic (ephemeral range). */
#define NP_EPHEMERAL_PORT_MIN 32768

struct np_config {
	__u32 mode;
	__u32 flags;
};

/* LPM key: dir, proto, port and cgid are always matched in full (96 bits), then the peer address
 * (IPv4 as ::ffff:a.b.c.d) up to the rule's CIDR. port 0 in a rule = any port. */
struct np_rule_key {
	__u32 prefixlen;
	__u8 dir;
	__u8 proto;
	__u16 port;
	__u64 cgid;
	__u8 addr[16];
};

struct np_counters {
	__u64 connect;
	__u64 bind;
	__u64 ingress;
	__u64 sendmsg;
	__u64 events_lost;
};

struct np_event {
	__u64 cgid;
	__u8 kind;
	__u8 verdict;
	__u8 proto;
	__u8 mode;
	__u16 port;
	__u16 pad;
	__u32 pid;
	__u8 addr[16];
	char comm[16];
};

/* An inbound flow already reported: TCP retries its SYN, a violation is still counted once. */
struct np_flow_key {
	__u64 cgid;
	__u8 saddr[16];
	__u16 sport;
	__u16 dport;
	__u8 proto;
	__u8 pad[3];
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, PV_MAX_CONTAINERS);
	__type(key, __u64);
	__type(value, struct np_config);
} np_config SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, PV_MAX_CONTAINERS);
	__type(key, __u64);
	__type(value, struct np_counters);
} np_counters SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, 262144);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct np_rule_key);
	__type(value, __u8);
} np_rules SEC(".maps");

/* Interface index (host side of the container's veth, or the container's own device) -> cgroup id. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, PV_MAX_CONTAINERS);
	__type(key, __u32);
	__type(value, __u64);
} np_ifaces SEC(".maps");

/* Value: when the flow was last counted (ns). A SYN retried within NP_FLOW_RETRY_NS is the same attempt. */
#define NP_FLOW_RETRY_NS (30ull * 1000000000ull)
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 65536);
	__type(key, struct np_flow_key);
	__type(value, __u64);
} np_flows_seen SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 1 << 20);
} np_events SEC(".maps");

static __always_inline void set_v4_mapped(__u8 *addr, __u32 ip4_be)
{
	__builtin_memset(addr, 0, 10);
	addr[10] = 0xff;
	addr[11] = 0xff;
	__builtin_memcpy(addr + 12, &ip4_be, 4);
}

static __always_inline int rule_allows(__u64 cgid, __u8 dir, __u8 proto, __u16 port, const __u8 *addr)
{
	struct np_rule_key key = {};

	key.prefixlen = 96 + 128;
	key.dir = dir;
	key.proto = proto;
	key.port = port;
	key.cgid = cgid;
	__builtin_memcpy(key.addr, addr, 16);
	if (bpf_map_lookup_elem(&np_rules, &key))
		return 1;
	key.port = 0; /* rules for any port */
	return bpf_map_lookup_elem(&np_rules, &key) != NULL;
}

static __always_inline void count(__u64 cgid, __u8 kind, int lost)
{
	struct np_counters *c = bpf_map_lookup_elem(&np_counters, &cgid);

	if (!c)
		return;
	if (kind == PV_KIND_CONNECT)
		__sync_fetch_and_add(&c->connect, 1);
	else if (kind == PV_KIND_BIND)
		__sync_fetch_and_add(&c->bind, 1);
	else if (kind == PV_KIND_INGRESS)
		__sync_fetch_and_add(&c->ingress, 1);
	else
		__sync_fetch_and_add(&c->sendmsg, 1);
	if (lost)
		__sync_fetch_and_add(&c->events_lost, 1);
}

/* Counts and reports one violation; returns 1 when the call/packet may go on. */
static __always_inline int violation(__u64 cgid, const struct np_config *cfg, __u8 kind, __u8 proto,
				     __u16 port, const __u8 *addr, int in_task)
{
	__u32 mode = cfg->mode;
	int deny = pv_denies(mode);
	struct np_event *ev = bpf_ringbuf_reserve(&np_events, sizeof(*ev), 0);

	count(cgid, kind, ev == NULL);
	if (ev) {
		ev->cgid = cgid;
		ev->kind = kind;
		ev->verdict = deny ? PV_VERDICT_DENIED : PV_VERDICT_ALLOWED;
		ev->proto = proto;
		ev->mode = mode;
		ev->port = port;
		ev->pad = 0;
		__builtin_memcpy(ev->addr, addr, 16);
		if (in_task) {
			ev->pid = bpf_get_current_pid_tgid() >> 32;
			bpf_get_current_comm(ev->comm, sizeof(ev->comm));
		} else {
			ev->pid = 0;
			__builtin_memset(ev->comm, 0, sizeof(ev->comm));
		}
		bpf_ringbuf_submit(ev, 0);
	}
	return !deny;
}

static __always_inline int is_loopback(const __u8 *addr)
{
	/* ::ffff:127.0.0.0/104 or ::1 */
	if (addr[10] == 0xff && addr[11] == 0xff && addr[12] == 127)
		return 1;
	for (int i = 0; i < 15; i++)
		if (addr[i])
			return 0;
	return addr[15] == 1;
}

static __always_inline int check_sock_addr(struct bpf_sock_addr *ctx, __u8 dir, __u8 kind, int v6)
{
	__u64 cgid = bpf_get_current_cgroup_id();
	struct np_config *cfg = bpf_map_lookup_elem(&np_config, &cgid);
	__u8 addr[16];
	__u16 port;
	__u8 proto;

	if (!cfg || cfg->mode == PV_MODE_OFF)
		return 1;
	proto = ctx->protocol;
	port = bpf_ntohs(ctx->user_port);
	if (v6) {
		__u32 w0 = ctx->user_ip6[0], w1 = ctx->user_ip6[1], w2 = ctx->user_ip6[2], w3 = ctx->user_ip6[3];

		__builtin_memcpy(addr, &w0, 4);
		__builtin_memcpy(addr + 4, &w1, 4);
		__builtin_memcpy(addr + 8, &w2, 4);
		__builtin_memcpy(addr + 12, &w3, 4);
	} else {
		set_v4_mapped(addr, ctx->user_ip4);
	}
	if (dir == NP_DIR_BIND) {
		if (port == 0) /* ephemeral port chosen by the kernel: a client socket */
			return 1;
		if ((cfg->flags & NP_ALLOW_LOOPBACK) && is_loopback(addr))
			return 1;
		__builtin_memset(addr, 0, 16); /* bind rules match any local address */
	} else {
		if ((cfg->flags & NP_ALLOW_LOOPBACK) && is_loopback(addr))
			return 1;
		if ((cfg->flags & NP_ALLOW_DNS) && port == 53)
			return 1;
	}
	if (rule_allows(cgid, dir, proto, port, addr))
		return 1;
	return violation(cgid, cfg, kind, proto, port, addr, 1);
}

SEC("cgroup/connect4")
int np_connect4(struct bpf_sock_addr *ctx)
{
	return check_sock_addr(ctx, NP_DIR_EGRESS, PV_KIND_CONNECT, 0);
}

SEC("cgroup/connect6")
int np_connect6(struct bpf_sock_addr *ctx)
{
	return check_sock_addr(ctx, NP_DIR_EGRESS, PV_KIND_CONNECT, 1);
}

/* Unconnected UDP (sendto with an address) never passes connect. */
SEC("cgroup/sendmsg4")
int np_sendmsg4(struct bpf_sock_addr *ctx)
{
	return check_sock_addr(ctx, NP_DIR_EGRESS, PV_KIND_SENDMSG, 0);
}

SEC("cgroup/sendmsg6")
int np_sendmsg6(struct bpf_sock_addr *ctx)
{
	return check_sock_addr(ctx, NP_DIR_EGRESS, PV_KIND_SENDMSG, 1);
}

SEC("cgroup/bind4")
int np_bind4(struct bpf_sock_addr *ctx)
{
	return check_sock_addr(ctx, NP_DIR_BIND, PV_KIND_BIND, 0);
}

SEC("cgroup/bind6")
int np_bind6(struct bpf_sock_addr *ctx)
{
	return check_sock_addr(ctx, NP_DIR_BIND, PV_KIND_BIND, 1);
}

/* Traffic towards the container. Attach at ingress of the container's own device, or at egress of the
 * host end of its veth pair (what the host sees leaving towards the container). Only the first packet of
 * a flow is judged: TCP SYN without ACK, UDP to a non-ephemeral port; everything else passes on. */
SEC("tc")
int np_tc_ingress(struct __sk_buff *skb)
{
	__u32 ifindex = skb->ifindex;
	__u64 *cgidp = bpf_map_lookup_elem(&np_ifaces, &ifindex);
	struct np_flow_key flow = {};
	struct np_config *cfg;
	__u8 saddr[16];
	__u32 l4off;
	__u8 proto;
	__u16 ports[2];
	__u64 cgid;

	if (!cgidp)
		return TC_ACT_UNSPEC;
	cgid = *cgidp;
	cfg = bpf_map_lookup_elem(&np_config, &cgid);
	if (!cfg || cfg->mode == PV_MODE_OFF)
		return TC_ACT_UNSPEC;

	if (skb->protocol == bpf_htons(ETH_P_IP)) {
		struct iphdr ip;

		if (bpf_skb_load_bytes(skb, 14, &ip, sizeof(ip)))
			return TC_ACT_UNSPEC;
		if (ip.frag_off & bpf_htons(0x1fff)) /* later fragments carry no ports */
			return TC_ACT_UNSPEC;
		proto = ip.protocol;
		l4off = 14 + ip.ihl * 4;
		set_v4_mapped(saddr, ip.saddr);
	} else if (skb->protocol == bpf_htons(ETH_P_IPV6)) {
		struct ipv6hdr ip6;

		if (bpf_skb_load_bytes(skb, 14, &ip6, sizeof(ip6)))
			return TC_ACT_UNSPEC;
		proto = ip6.nexthdr; /* extension headers: not judged */
		l4off = 14 + sizeof(ip6);
		__builtin_memcpy(saddr, &ip6.saddr, 16);
	} else {
		return TC_ACT_UNSPEC;
	}
	if (proto != IPPROTO_TCP && proto != IPPROTO_UDP)
		return TC_ACT_UNSPEC;
	if (bpf_skb_load_bytes(skb, l4off, ports, sizeof(ports)))
		return TC_ACT_UNSPEC;
	__u16 sport = bpf_ntohs(ports[0]), dport = bpf_ntohs(ports[1]);

	if (proto == IPPROTO_TCP) {
		__u8 flags;

		if (bpf_skb_load_bytes(skb, l4off + 13, &flags, 1))
			return TC_ACT_UNSPEC;
		if (!(flags & 0x02) || (flags & 0x10)) /* not a SYN, or a SYN-ACK: an existing flow */
			return TC_ACT_UNSPEC;
	} else {
		if (dport >= NP_EPHEMERAL_PORT_MIN)
			return TC_ACT_UNSPEC;
		if ((cfg->flags & NP_ALLOW_DNS) && sport == 53)
			return TC_ACT_UNSPEC;
	}
	if ((cfg->flags & NP_ALLOW_LOOPBACK) && is_loopback(saddr))
		return TC_ACT_UNSPEC;
	if (rule_allows(cgid, NP_DIR_INGRESS, proto, dport, saddr))
		return TC_ACT_UNSPEC;

	/* Count a refused flow once, however often its first packet is retried. */
	flow.cgid = cgid;
	__builtin_memcpy(flow.saddr, saddr, 16);
	flow.sport = sport;
	flow.dport = dport;
	flow.proto = proto;
	__u64 now = bpf_ktime_get_ns();
	__u64 *last = bpf_map_lookup_elem(&np_flows_seen, &flow);
	if (last && now - *last < NP_FLOW_RETRY_NS)
		return pv_denies(cfg->mode) ? TC_ACT_SHOT : TC_ACT_UNSPEC;
	bpf_map_update_elem(&np_flows_seen, &flow, &now, BPF_ANY);
	return violation(cgid, cfg, PV_KIND_INGRESS, proto, dport, saddr, 0) ? TC_ACT_UNSPEC : TC_ACT_SHOT;
}
