// SPDX-License-Identifier: GPL-2.0
/* File and exec enforcement with BPF-LSM: per-container allow-lists keyed by (cgroup id, device, inode).
 * An entry is either one file or a whole directory subtree (generalised from the learned paths by
 * agent/paths.ts): file_open and bprm_check_security walk from the file up through its parent
 * directories, crossing mount points, and allow on the first hit. Only regular files are judged; the
 * ELF interpreter and the binary itself reach file_open with FMODE_EXEC and are left to the exec layer.
 * Mode per container and layer sits in lsm_config, so Monitor/Enforce/Alert switch without a reload. */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_core_read.h>
#include "enforce.bpf.h"

char LICENSE[] SEC("license") = "GPL";

#define EPERM 1
#define S_IFMT 00170000
#define S_IFREG 0100000
#define FMODE_EXEC 0x20
#define __FMODE_EXEC 0x20 /* in f_flags: set by do_open_execat on every kernel; f_mode has it only on some */

#define LSM_ALLOW_FILE 1    /* this inode */
#define LSM_ALLOW_SUBTREE 2 /* everything below this directory */
#define LSM_KIND_FILE 1
#define LSM_KIND_EXEC 2
#define LSM_MAX_DEPTH 32
#define LSM_NAME_LEVELS 6
#define LSM_NAME_LEN 48

struct pv_lsm_config {
	__u32 file_mode;
	__u32 exec_mode;
};

struct pv_lsm_allow_key {
	__u64 cgid;
	__u64 ino;
	__u32 dev; /* kernel s_dev: major << 20 | minor */
	__u32 kind;
};

struct pv_lsm_counters {
	__u64 file_denied;
	__u64 exec_denied;
	__u64 events_lost;
};

struct pv_lsm_event {
	__u64 cgid;
	__u64 ino;
	__u32 dev;
	__u32 pid;
	__u8 kind;
	__u8 verdict;
	__u8 mode;
	__u8 levels; /* names filled, innermost first */
	__u32 pad;
	char comm[16];
	char names[LSM_NAME_LEVELS][LSM_NAME_LEN];
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, PV_MAX_CONTAINERS);
	__type(key, __u64);
	__type(value, struct pv_lsm_config);
} lsm_config SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1 << 20);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct pv_lsm_allow_key);
	__type(value, __u8);
} lsm_allow SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, PV_MAX_CONTAINERS);
	__type(key, __u64);
	__type(value, struct pv_lsm_counters);
} lsm_counters SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 1 << 20);
} lsm_events SEC(".maps");

/* Event buffer too large for the stack. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct pv_lsm_event);
} lsm_scratch SEC(".maps");

static __always_inline int allowed_at(__u64 cgid, __u32 kind, struct dentry *d, int self)
{
	struct pv_lsm_allow_key key = {};
	__u8 *flags;

	key.cgid = cgid;
	key.kind = kind;
	key.ino = BPF_CORE_READ(d, d_inode, i_ino);
	key.dev = BPF_CORE_READ(d, d_sb, s_dev);
	flags = bpf_map_lookup_elem(&lsm_allow, &key);
	if (!flags)
		return 0;
	return self || (*flags & LSM_ALLOW_SUBTREE);
}

/* Walks the file and its ancestors up to the root of the caller's view, crossing mounts. */
static __always_inline int path_allowed(__u64 cgid, __u32 kind, struct file *file)
{
	struct dentry *d = BPF_CORE_READ(file, f_path.dentry);
	struct vfsmount *vmnt = BPF_CORE_READ(file, f_path.mnt);
	struct mount *mnt = (struct mount *)((void *)vmnt - bpf_core_field_offset(struct mount, mnt));

	for (int i = 0; i < LSM_MAX_DEPTH; i++) {
		if (allowed_at(cgid, kind, d, i == 0))
			return 1;
		struct dentry *mnt_root = BPF_CORE_READ(mnt, mnt.mnt_root);
		if (d == mnt_root) {
			struct mount *parent = BPF_CORE_READ(mnt, mnt_parent);
			if (parent == mnt)
				return 0;
			d = BPF_CORE_READ(mnt, mnt_mountpoint);
			mnt = parent;
			continue;
		}
		struct dentry *up = BPF_CORE_READ(d, d_parent);
		if (up == d)
			return 0;
		d = up;
	}
	return 0;
}

static __always_inline void report(__u64 cgid, __u32 kind, __u32 mode, struct file *file, int deny)
{
	struct pv_lsm_counters *c = bpf_map_lookup_elem(&lsm_counters, &cgid);
	__u32 zero = 0;
	struct pv_lsm_event *scratch = bpf_map_lookup_elem(&lsm_scratch, &zero);
	struct pv_lsm_event *ev;

	if (c) {
		if (kind == LSM_KIND_EXEC)
			__sync_fetch_and_add(&c->exec_denied, 1);
		else
			__sync_fetch_and_add(&c->file_denied, 1);
	}
	if (!scratch)
		return;
	struct dentry *d = BPF_CORE_READ(file, f_path.dentry);
	scratch->cgid = cgid;
	scratch->ino = BPF_CORE_READ(d, d_inode, i_ino);
	scratch->dev = BPF_CORE_READ(d, d_sb, s_dev);
	scratch->pid = bpf_get_current_pid_tgid() >> 32;
	scratch->kind = kind;
	scratch->verdict = deny ? PV_VERDICT_DENIED : PV_VERDICT_ALLOWED;
	scratch->mode = mode;
	scratch->pad = 0;
	bpf_get_current_comm(scratch->comm, sizeof(scratch->comm));
	scratch->levels = 0;
	for (int i = 0; i < LSM_NAME_LEVELS; i++) {
		const unsigned char *name = BPF_CORE_READ(d, d_name.name);
		bpf_probe_read_kernel_str(scratch->names[i], LSM_NAME_LEN, name);
		scratch->levels = i + 1;
		struct dentry *up = BPF_CORE_READ(d, d_parent);
		if (up == d)
			break;
		d = up;
	}
	ev = bpf_ringbuf_reserve(&lsm_events, sizeof(*ev), 0);
	if (!ev) {
		if (c)
			__sync_fetch_and_add(&c->events_lost, 1);
		return;
	}
	__builtin_memcpy(ev, scratch, sizeof(*ev));
	bpf_ringbuf_submit(ev, 0);
}

static __always_inline int judge(__u32 kind, struct file *file)
{
	__u64 cgid = bpf_get_current_cgroup_id();
	struct pv_lsm_config *cfg = bpf_map_lookup_elem(&lsm_config, &cgid);
	__u32 mode;

	if (!cfg)
		return 0;
	mode = kind == LSM_KIND_EXEC ? cfg->exec_mode : cfg->file_mode;
	if (mode == PV_MODE_OFF)
		return 0;
	if ((BPF_CORE_READ(file, f_inode, i_mode) & S_IFMT) != S_IFREG)
		return 0;
	if (path_allowed(cgid, kind, file))
		return 0;
	int deny = pv_denies(mode);
	report(cgid, kind, mode, file, deny);
	return deny ? -EPERM : 0;
}

SEC("lsm/file_open")
int BPF_PROG(pv_file_open, struct file *file, int ret)
{
	if (ret)
		return ret;
	if ((BPF_CORE_READ(file, f_flags) & __FMODE_EXEC) || (BPF_CORE_READ(file, f_mode) & FMODE_EXEC))
		return 0; /* the binary or its ELF interpreter being loaded: judged as an exec */
	return judge(LSM_KIND_FILE, file);
}

SEC("lsm/bprm_check_security")
int BPF_PROG(pv_bprm_check, struct linux_binprm *bprm, int ret)
{
	if (ret)
		return ret;
	return judge(LSM_KIND_EXEC, BPF_CORE_READ(bprm, file));
}
