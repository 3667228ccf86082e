// SPDX-License-Identifier: GPL-2.0
/* Counts seccomp denials per (container, syscall) exactly, in the kernel.
 * A syscall that seccomp refuses never reaches sys_enter (the filter runs first) but still passes
 * sys_exit. So for watched cgroups only, sys_enter marks the task as "inside a syscall" and sys_exit
 * clears the mark; an exit without a mark is a denial. Counting happens here (one atomic add), so a
 * burst of any size is exact; user space gets one event per new (container, syscall) pair and reads
 * the counters for the rest. */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_core_read.h>
#include "enforce.bpf.h"

char LICENSE[] SEC("license") = "GPL";

struct sw_task {
	__u32 in_syscall;
	__u32 seen; /* the task has passed sys_enter or a fork return since we watch it */
};

struct sw_count_key {
	__u64 cgid;
	__u32 nr;
	__u32 pad;
};

struct sw_totals {
	__u64 denied;
	__u64 events_lost;
	__u64 pairs_lost; /* sw_counts was full: counted in `denied` only */
};

struct sw_event {
	__u64 cgid;
	__u32 nr;
	__u32 pid;
	__s64 ret;
	char comm[16];
};

/* cgroup id -> mode (watched when present). */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, PV_MAX_CONTAINERS);
	__type(key, __u64);
	__type(value, __u32);
} sw_watch SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_TASK_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, int);
	__type(value, struct sw_task);
} sw_tasks SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 262144);
	__type(key, struct sw_count_key);
	__type(value, __u64);
} sw_counts SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, PV_MAX_CONTAINERS);
	__type(key, __u64);
	__type(value, struct sw_totals);
} sw_totals SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 1 << 18);
} sw_events SEC(".maps");

#if defined(__TARGET_ARCH_x86)
#define SYSCALL_NR(regs) BPF_CORE_READ(regs, orig_ax)
#define NR_CLONE 56
#define NR_FORK 57
#define NR_VFORK 58
#define NR_CLONE3 435
#elif defined(__TARGET_ARCH_arm64)
#define SYSCALL_NR(regs) BPF_CORE_READ(regs, syscallno)
#define NR_CLONE 220
#define NR_FORK (-1)
#define NR_VFORK (-1)
#define NR_CLONE3 435
#endif

SEC("tp_btf/sys_enter")
int BPF_PROG(sw_sys_enter, struct pt_regs *regs, long id)
{
	__u64 cgid = bpf_get_current_cgroup_id();
	struct sw_task *t;

	if (!bpf_map_lookup_elem(&sw_watch, &cgid))
		return 0;
	t = bpf_task_storage_get(&sw_tasks, bpf_get_current_task_btf(), 0, BPF_LOCAL_STORAGE_GET_F_CREATE);
	if (t) {
		t->in_syscall = 1;
		t->seen = 1;
	}
	return 0;
}

SEC("tp_btf/sys_exit")
int BPF_PROG(sw_sys_exit, struct pt_regs *regs, long ret)
{
	__u64 cgid = bpf_get_current_cgroup_id();
	struct sw_count_key key = {};
	struct sw_totals *tot;
	struct sw_task *t;
	__u64 zero = 0, *cnt;
	long nr;

	if (!bpf_map_lookup_elem(&sw_watch, &cgid))
		return 0;
	t = bpf_task_storage_get(&sw_tasks, bpf_get_current_task_btf(), 0, BPF_LOCAL_STORAGE_GET_F_CREATE);
	if (!t)
		return 0;
	if (t->in_syscall) {
		t->in_syscall = 0;
		return 0;
	}
	nr = SYSCALL_NR(regs);
	if (!t->seen) {
		/* First sight of this task: a new child returning from fork, or a task that was already inside a
		 * syscall when watching began. Neither is a denial. */
		t->seen = 1;
		return 0;
	}
	if (ret == 0 && (nr == NR_CLONE || nr == NR_CLONE3 || nr == NR_FORK || nr == NR_VFORK))
		return 0; /* child side of a fork in a task we saw before (cannot happen, kept as a guard) */

	tot = bpf_map_lookup_elem(&sw_totals, &cgid);
	if (tot)
		__sync_fetch_and_add(&tot->denied, 1);
	key.cgid = cgid;
	key.nr = (__u32)nr;
	cnt = bpf_map_lookup_elem(&sw_counts, &key);
	if (cnt) {
		__sync_fetch_and_add(cnt, 1);
		return 0;
	}
	/* First denial of this syscall in this container: create the counter; the winner of a race reports. */
	int first = bpf_map_update_elem(&sw_counts, &key, &zero, BPF_NOEXIST) == 0;
	cnt = bpf_map_lookup_elem(&sw_counts, &key);
	if (cnt)
		__sync_fetch_and_add(cnt, 1);
	else if (tot)
		__sync_fetch_and_add(&tot->pairs_lost, 1);
	if (!first)
		return 0;
	struct sw_event *ev = bpf_ringbuf_reserve(&sw_events, sizeof(*ev), 0);
	if (!ev) {
		if (tot)
			__sync_fetch_and_add(&tot->events_lost, 1);
		return 0;
	}
	ev->cgid = cgid;
	ev->nr = (__u32)nr;
	ev->pid = bpf_get_current_pid_tgid() >> 32;
	ev->ret = ret;
	bpf_get_current_comm(ev->comm, sizeof(ev->comm));
	bpf_ringbuf_submit(ev, 0);
	return 0;
}
