// SPDX-License-Identifier: GPL-2.0
// The learner: per-container syscall bitmaps plus first-seen exec/file/network events.
//
// Cost model (PLATFORM.md): the hook dominates, so there is ONE program on the raw sys_enter hook
// (tp_btf, the cheapest); execs come from the scheduler tracepoint (fires only on exec) and accepted
// TCP connections from inet_sock_set_state (fires only on TCP state changes).
// The hot path for a task nobody watches is: read current's cgroup v2 id through BTF pointers (no
// helper call), one inlined array lookup and a compare, return. A watched task finds its bitmap in the
// same array slot; only tasks of watched cgroups go on to the bitmap and the per-syscall dispatch.
//
// Identity: the cgroup v2 id (kernfs inode of the cgroup directory). User space creates the cgroup
// before the runtime starts, so it is watched before the container's first instruction.
//
// Runtime correctness: with WATCH_REQUIRE_SECCOMP, a task's syscalls count only once the task is
// under a seccomp filter (task->seccomp.mode == SECCOMP_MODE_FILTER). The recorder runs the
// container with an allow-all filter, so what is learned is exactly what runs under the filter the
// runtime installs: the runtime's own post-filter syscalls (runc: futex, write, close, execve...;
// crun: execve) are in, its setup before seccomp() is out, for any runtime, with no runtime-specific
// marker syscall (SPO's prctl(PR_GET_PDEATHSIG) trick is runc-only). The runtime's monitor process
// sharing the cgroup (crun with --cgroup-manager=disabled) has no filter and is not counted.
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_endian.h>

char LICENSE[] SEC("license") = "GPL";

#define SECCOMP_MODE_FILTER 2
#define SYSCALL_BITMAP_WORDS 8 /* 512 syscall numbers: x86_64 and arm64 stay below 512 */
#define WATCH_SLOTS 8192       /* direct-mapped fast path; collisions go to the 'watched' hash */
#define MAX_WATCHED 16384
#define MAX_OBJECTS 262144
#define PATH_MAX_LEN 256

#define WATCH_REQUIRE_SECCOMP 1

enum event_kind { EV_SYSCALL = 1, EV_EXEC = 2, EV_FILE = 3, EV_NET = 4 };
enum net_op { NET_CONNECT = 1, NET_BIND = 2, NET_LISTEN = 3, NET_ACCEPT = 4, NET_SENDTO = 5 };
#define INTENT_READ 1
#define INTENT_WRITE 2

// One watched cgroup: its id, flags (set by user space) and the syscall bitmap (set here).
struct watch_state {
	__u64 cgid;
	__u64 flags;
	__u64 bits[SYSCALL_BITMAP_WORDS];
};

// Header shared by all events; a syscall event is only the header.
struct event {
	__u64 cgid;
	__u32 kind;
	__u32 pid;
	__u32 arg;    /* syscall nr | file intent bits | net op */
	__u16 family; /* AF_INET / AF_INET6 for net */
	__u16 port;   /* host byte order */
	__u8 proto;   /* IPPROTO_TCP / IPPROTO_UDP */
	__u8 pad[7];
	__u8 addr[16];
	char path[PATH_MAX_LEN];
};
#define EVENT_HEADER_SIZE 48 /* offsetof(struct event, path) */

struct object_key {
	__u64 cgid;
	__u64 hash;
};

// Aggregated in the kernel: one entry per (cgroup, exec path / file path / network tuple).
struct object {
	__u64 count;
	struct event ev;
};

// Watched cgroups, direct-mapped by (cgid % WATCH_SLOTS): an array lookup is inlined by the verifier
// (no helper call, no hashing), so an unwatched task pays a few loads and one compare. A watched cgroup
// whose slot is taken by another lives in the 'watched' hash instead, and its slot's bit in
// 'slot_overflow' sends tasks with that slot to the hash.
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, WATCH_SLOTS);
	__type(key, __u32);
	__type(value, struct watch_state);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} watch_slots SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, WATCH_SLOTS / 64);
	__type(key, __u32);
	__type(value, __u64);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} slot_overflow SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, MAX_WATCHED);
	/* Grows with the colliding cgroups only; the programs update values in place. */
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, __u64);
	__type(value, struct watch_state);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} watched SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, MAX_OBJECTS);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct object_key);
	__type(value, struct object);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} objects SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 1 << 20);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} events SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct object);
} scratch SEC(".maps");

// Counters for user space: [0] events lost (ring buffer full), [1] objects not stored (map full).
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 2);
	__type(key, __u32);
	__type(value, __u64);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} learner_stats SEC(".maps");

#if defined(__TARGET_ARCH_arm64)
#define NR_OPEN -1
#define NR_CREAT -1
#define NR_OPENAT 56
#define NR_OPENAT2 437
#define NR_CONNECT 203
#define NR_BIND 200
#define NR_LISTEN 201
#define NR_SENDTO 206
#else
#define NR_OPEN 2
#define NR_CREAT 85
#define NR_OPENAT 257
#define NR_OPENAT2 437
#define NR_CONNECT 42
#define NR_BIND 49
#define NR_LISTEN 50
#define NR_SENDTO 44
#endif

#define O_ACCMODE 3
#define O_WRONLY 1
#define O_RDWR 2
#define O_CREAT 0100
#define O_TRUNC 01000
#define O_APPEND 02000
#define AF_INET 2
#define AF_INET6 10
#define S_IFMT 00170000
#define S_IFSOCK 0140000

static __always_inline void count_stat(__u32 idx)
{
	__u64 *v = bpf_map_lookup_elem(&learner_stats, &idx);
	if (v)
		*v += 1;
}

static __always_inline __u64 current_cgroup_id(struct task_struct *task)
{
	// Same value as bpf_get_current_cgroup_id(), read through BTF pointers without a helper call.
	return task->cgroups->dfl_cgrp->kn->id;
}

static __always_inline struct watch_state *lookup_cgroup(__u64 cgid)
{
	__u32 slot = cgid & (WATCH_SLOTS - 1);
	struct watch_state *w = bpf_map_lookup_elem(&watch_slots, &slot);
	if (!w)
		return 0;
	if (w->cgid != cgid) {
		__u32 word = slot / 64;
		__u64 *overflow = bpf_map_lookup_elem(&slot_overflow, &word);
		if (!overflow || !(*overflow & (1ULL << (slot & 63))))
			return 0;
		w = bpf_map_lookup_elem(&watched, &cgid);
	}
	return w;
}

static __always_inline struct watch_state *lookup_watched(struct task_struct *task, __u64 *cgid_out)
{
	__u64 cgid = current_cgroup_id(task);
	struct watch_state *w = lookup_cgroup(cgid);
	if (!w)
		return 0;
	if ((w->flags & WATCH_REQUIRE_SECCOMP) && task->seccomp.mode != SECCOMP_MODE_FILTER)
		return 0;
	*cgid_out = cgid;
	return w;
}

static __always_inline struct object *scratch_object(void)
{
	__u32 zero = 0;
	return bpf_map_lookup_elem(&scratch, &zero);
}

static __always_inline __u64 fnv1a(const void *data, __u32 len)
{
	const __u8 *p = data;
	__u64 h = 0xcbf29ce484222325ULL;
	for (__u32 i = 0; i < len && i < sizeof(struct event); i++) {
		h ^= p[i];
		h *= 0x100000001b3ULL;
	}
	return h;
}

// Hashes a string read by bpf_probe_read_*_str (len includes the NUL) 8 bytes at a time; bytes after
// the NUL in the last word are masked off, since the scratch buffer holds leftovers of earlier paths.
static __always_inline __u64 hash_path(const char *path, long len)
{
	const __u64 *words = (const __u64 *)path;
	__u64 h = 0xcbf29ce484222325ULL;
	for (int i = 0; i < PATH_MAX_LEN / 8; i++) {
		long left = len - i * 8;
		if (left <= 0)
			break;
		__u64 w = words[i];
		if (left < 8)
			w &= (1ULL << (left * 8)) - 1; /* little-endian: the string's bytes are the low ones */
		h = (h ^ w) * 0x100000001b3ULL;
		h ^= h >> 29;
	}
	return h;
}

// Aggregate one observation: count it; the first time (or when new intent bits appear) send it up.
static __always_inline void observe(struct object *o, __u64 hash)
{
	struct object_key key = { .cgid = o->ev.cgid, .hash = hash ^ o->ev.kind };
	struct object *old = bpf_map_lookup_elem(&objects, &key);
	if (old) {
		__sync_fetch_and_add(&old->count, 1);
		if (o->ev.kind != EV_FILE)
			return;
		__u32 merged = old->ev.arg | o->ev.arg;
		if (merged == old->ev.arg)
			return;
		__sync_fetch_and_or(&old->ev.arg, o->ev.arg);
		o->ev.arg = merged;
		o->count = old->count;
	} else {
		o->count = 1;
		long err = bpf_map_update_elem(&objects, &key, o, BPF_NOEXIST);
		if (err == -17 /* EEXIST: another CPU stored it first */)
			return;
		if (err)
			count_stat(1); /* map full: still reported once now, but not aggregated */
	}
	if (bpf_ringbuf_output(&events, &o->ev, sizeof(o->ev), 0))
		count_stat(0);
}

static __always_inline void emit_syscall(__u64 cgid, long nr)
{
	struct event *e = bpf_ringbuf_reserve(&events, EVENT_HEADER_SIZE, 0);
	if (!e) {
		count_stat(0);
		return;
	}
	e->cgid = cgid;
	e->kind = EV_SYSCALL;
	e->pid = bpf_get_current_pid_tgid() >> 32;
	e->arg = nr;
	e->family = 0;
	e->port = 0;
	e->proto = 0;
	bpf_ringbuf_submit(e, 0);
}

static __always_inline void init_event(struct object *o, __u64 cgid, __u32 kind)
{
	__builtin_memset(&o->ev, 0, EVENT_HEADER_SIZE);
	o->ev.cgid = cgid;
	o->ev.kind = kind;
	o->ev.pid = bpf_get_current_pid_tgid() >> 32;
}

static __always_inline void learn_open(__u64 cgid, const char *upath, __u64 flags)
{
	struct object *o = scratch_object();
	if (!o)
		return;
	init_event(o, cgid, EV_FILE);
	__u32 intent = INTENT_READ;
	__u32 acc = flags & O_ACCMODE;
	if (acc == O_WRONLY)
		intent = INTENT_WRITE;
	else if (acc == O_RDWR)
		intent = INTENT_READ | INTENT_WRITE;
	if (flags & (O_CREAT | O_TRUNC | O_APPEND))
		intent |= INTENT_WRITE;
	o->ev.arg = intent;
	long len = bpf_probe_read_user_str(o->ev.path, sizeof(o->ev.path), upath);
	if (len <= 0)
		return;
	observe(o, hash_path(o->ev.path, len));
}

static __always_inline struct sock *sock_of_fd(struct task_struct *task, int fd)
{
	struct fdtable *fdt = BPF_CORE_READ(task, files, fdt);
	if (!fdt || fd < 0 || fd >= BPF_CORE_READ(fdt, max_fds))
		return 0;
	struct file **fds = BPF_CORE_READ(fdt, fd);
	struct file *f = 0;
	if (bpf_probe_read_kernel(&f, sizeof(f), &fds[fd]) || !f)
		return 0;
	if ((BPF_CORE_READ(f, f_inode, i_mode) & S_IFMT) != S_IFSOCK)
		return 0;
	struct socket *sock = BPF_CORE_READ(f, private_data);
	if (!sock)
		return 0;
	return BPF_CORE_READ(sock, sk);
}

static __always_inline void learn_net(struct task_struct *task, __u64 cgid, __u32 op, int fd,
				      const void *uaddr)
{
	struct sock *sk = sock_of_fd(task, fd);
	if (!sk)
		return;
	__u16 family = BPF_CORE_READ(sk, __sk_common.skc_family);
	if (family != AF_INET && family != AF_INET6)
		return;
	struct object *o = scratch_object();
	if (!o)
		return;
	init_event(o, cgid, EV_NET);
	o->ev.arg = op;
	o->ev.proto = BPF_CORE_READ(sk, sk_protocol);
	o->ev.family = family;
	if (uaddr) {
		// connect/bind/sendto: the address the program passes (network byte order port).
		__u16 ufamily = 0;
		if (bpf_probe_read_user(&ufamily, sizeof(ufamily), uaddr))
			return;
		if (ufamily == AF_INET) {
			struct sockaddr_in sin = {};
			if (bpf_probe_read_user(&sin, sizeof(sin), uaddr))
				return;
			o->ev.port = bpf_ntohs(sin.sin_port);
			__builtin_memcpy(o->ev.addr, &sin.sin_addr, 4);
		} else if (ufamily == AF_INET6) {
			struct sockaddr_in6 sin6 = {};
			if (bpf_probe_read_user(&sin6, sizeof(sin6), uaddr))
				return;
			o->ev.port = bpf_ntohs(sin6.sin6_port);
			__builtin_memcpy(o->ev.addr, &sin6.sin6_addr, 16);
		} else {
			return; /* AF_UNSPEC disconnect and the like */
		}
		o->ev.family = ufamily;
	} else {
		// listen/accept: the socket's own bound port and address.
		o->ev.port = BPF_CORE_READ(sk, __sk_common.skc_num);
		if (family == AF_INET) {
			__u32 a = BPF_CORE_READ(sk, __sk_common.skc_rcv_saddr);
			__builtin_memcpy(o->ev.addr, &a, 4);
		} else {
			BPF_CORE_READ_INTO(&o->ev.addr, sk, __sk_common.skc_v6_rcv_saddr);
		}
	}
	observe(o, fnv1a(&o->ev.arg, 28 /* arg..addr */));
}

SEC("tp_btf/sys_enter")
int BPF_PROG(learn_sys_enter, struct pt_regs *regs, long id)
{
	struct task_struct *task = bpf_get_current_task_btf();
	__u64 cgid = 0;
	struct watch_state *w = lookup_watched(task, &cgid);
	if (!w)
		return 0;
	if (id < 0 || id >= SYSCALL_BITMAP_WORDS * 64)
		return 0;
	__u64 bit = 1ULL << (id & 63);
	__u64 *word = &w->bits[(id >> 6) & (SYSCALL_BITMAP_WORDS - 1)];
	if (!(*word & bit)) {
		__u64 old = __sync_fetch_and_or(word, bit);
		if (!(old & bit))
			emit_syscall(cgid, id);
	}

	// Dispatch on the syscall number: details of a few syscalls, from the same program (every extra
	// per-syscall tracepoint would add its cost to every syscall of the machine). tp_btf hands us the
	// task's pt_regs as a BTF pointer: its fields are read directly (no probe-read helper call).
	// x86_64 syscall arguments: di, si, dx, r10, r8 (PARM5 = r8 matches); arm64: regs[0..].
	if (id == NR_OPENAT || id == NR_OPENAT2) {
		const char *path = (const char *)PT_REGS_PARM2(regs);
		__u64 flags = 0;
		if (id == NR_OPENAT)
			flags = PT_REGS_PARM3(regs);
		else
			bpf_probe_read_user(&flags, sizeof(flags), (void *)PT_REGS_PARM3(regs));
		learn_open(cgid, path, flags);
	} else if (id == NR_OPEN) {
		learn_open(cgid, (const char *)PT_REGS_PARM1(regs), PT_REGS_PARM2(regs));
	} else if (id == NR_CREAT) {
		learn_open(cgid, (const char *)PT_REGS_PARM1(regs), O_CREAT | O_WRONLY | O_TRUNC);
	} else if (id == NR_CONNECT) {
		learn_net(task, cgid, NET_CONNECT, PT_REGS_PARM1(regs), (void *)PT_REGS_PARM2(regs));
	} else if (id == NR_BIND) {
		learn_net(task, cgid, NET_BIND, PT_REGS_PARM1(regs), (void *)PT_REGS_PARM2(regs));
	} else if (id == NR_SENDTO) {
		void *addr = (void *)PT_REGS_PARM5(regs);
		if (addr)
			learn_net(task, cgid, NET_SENDTO, PT_REGS_PARM1(regs), addr);
	} else if (id == NR_LISTEN) {
		learn_net(task, cgid, NET_LISTEN, PT_REGS_PARM1(regs), 0);
	}
	return 0;
}

// Execs: the scheduler tracepoint fires only on a successful exec, so it costs nothing elsewhere.
SEC("tp_btf/sched_process_exec")
int BPF_PROG(learn_exec, struct task_struct *p, pid_t old_pid, struct linux_binprm *bprm)
{
	struct task_struct *task = bpf_get_current_task_btf();
	__u64 cgid = 0;
	if (!lookup_watched(task, &cgid))
		return 0;
	struct object *o = scratch_object();
	if (!o)
		return 0;
	init_event(o, cgid, EV_EXEC);
	long len = bpf_probe_read_kernel_str(o->ev.path, sizeof(o->ev.path), BPF_CORE_READ(bprm, filename));
	if (len <= 0)
		return 0;
	observe(o, hash_path(o->ev.path, len));
	return 0;
}

// Accepted TCP connections, with the peer: a passive open turns SYN_RECV -> ESTABLISHED in softirq
// context, where `current` is unrelated, so the container is the cgroup of the socket (inherited from
// the listener). This tracepoint fires only on TCP state changes. The peer's port is ephemeral and is
// left out; the peer's address and the local port are learned.
#define TCP_ESTABLISHED 1
#define TCP_SYN_RECV 3
SEC("tp_btf/inet_sock_set_state")
int BPF_PROG(learn_accept, const struct sock *sk, const int oldstate, const int newstate)
{
	if (oldstate != TCP_SYN_RECV || newstate != TCP_ESTABLISHED)
		return 0;
	struct cgroup *cg = BPF_CORE_READ(sk, sk_cgrp_data.cgroup);
	if (!cg)
		return 0;
	__u64 cgid = BPF_CORE_READ(cg, kn, id);
	if (!lookup_cgroup(cgid))
		return 0;
	__u16 family = BPF_CORE_READ(sk, __sk_common.skc_family);
	if (family != AF_INET && family != AF_INET6)
		return 0;
	struct object *o = scratch_object();
	if (!o)
		return 0;
	__builtin_memset(&o->ev, 0, EVENT_HEADER_SIZE);
	o->ev.cgid = cgid;
	o->ev.kind = EV_NET;
	o->ev.arg = NET_ACCEPT;
	o->ev.family = family;
	o->ev.proto = BPF_CORE_READ(sk, sk_protocol);
	o->ev.port = BPF_CORE_READ(sk, __sk_common.skc_num);
	if (family == AF_INET) {
		__u32 a = BPF_CORE_READ(sk, __sk_common.skc_daddr);
		__builtin_memcpy(o->ev.addr, &a, 4);
	} else {
		BPF_CORE_READ_INTO(&o->ev.addr, sk, __sk_common.skc_v6_daddr);
	}
	observe(o, fnv1a(&o->ev.arg, 28 /* arg..addr */));
	return 0;
}
