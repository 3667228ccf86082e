// SPDX-License-Identifier: GPL-2.0
/* Test fixture standing in for a CNI's own TC program: counts the packets that reach it after
 * netpolicy's classifier (which must pass allowed packets on with TC_ACT_UNSPEC / TCX_NEXT), per
 * TCP destination port. Used by test/kernel/enforce.test.ts only. */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

char LICENSE[] SEC("license") = "GPL";

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1024);
	__type(key, __u16);
	__type(value, __u64);
} seen_by_port SEC(".maps");

SEC("tc")
int neighbour_count(struct __sk_buff *skb)
{
	struct iphdr ip;
	__u16 ports[2];
	__u64 one = 1, *n;

	if (skb->protocol != bpf_htons(0x0800) || bpf_skb_load_bytes(skb, 14, &ip, sizeof(ip)) || ip.protocol != 6)
		return -1;
	if (bpf_skb_load_bytes(skb, 14 + ip.ihl * 4, ports, sizeof(ports)))
		return -1;
	__u16 dport = bpf_ntohs(ports[1]);
	n = bpf_map_lookup_elem(&seen_by_port, &dport);
	if (n)
		__sync_fetch_and_add(n, 1);
	else
		bpf_map_update_elem(&seen_by_port, &dport, &one, BPF_NOEXIST);
	return -1; /* TC_ACT_UNSPEC: next program / default action */
}
