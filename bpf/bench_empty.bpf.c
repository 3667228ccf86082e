// SPDX-License-Identifier: GPL-2.0
// Baseline for bench/learner.ts: an empty program on the learner's hook, so the learner's cost is
// measured against the cost of the hook itself, in the same run.
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>

char LICENSE[] SEC("license") = "GPL";

SEC("tp_btf/sys_enter")
int BPF_PROG(empty_sys_enter, struct pt_regs *regs, long id)
{
	return 0;
}
