// SPDX-License-Identifier: Apache-2.0
// File and exec enforcement with fanotify permission events, for kernels without BPF-LSM.
//
// Why this shape:
// - Marks are per mount (FAN_MARK_MOUNT on /proc/<pid>/root/<mountpoint>), so only opens through a
//   watched container's own mounts wait for us; host processes never do. Pseudo filesystems (proc, sys,
//   dev, ...) are not marked: fanotify opens an fd for every event, and opening some devices has effects.
// - Verdicts are answered in C on a thread of their own: the helper's main loop may itself open files
//   (BPF objects) on a marked filesystem, which would deadlock a single-threaded listener.
// - Allow-lists use the same keys as lsm.bpf.c: (cgroup id, kernel s_dev, inode, kind) for a file or a
//   directory subtree, so agent/enforcer.ts computes them once for both layers.
// - Violations are counted here (exact) and reported as `* fan ...` lines through the main loop (an
//   eventfd wakes it); if the line queue overflows, the loss is counted, never silent.
//
// Commands (see fan_command):
//   fan_init                                   -> ok            start the listener (idempotent)
//   fan_hostfs                                 -> ok <fs> <mounts> mark every file-bearing filesystem of this
//                                                               mount namespace, ignoring its own mounts: only
//                                                               other mount namespaces' mounts (containers'
//                                                               bind mounts, made later) report. Race-free:
//                                                               done before a container exists.
//   fan_watch <cgid> <pid>                     -> ok <mounts>   mark the mounts of <pid>'s mount namespace
//                                                               (its own tmpfs etc., which fan_hostfs cannot see)
//   fan_mode <cgid> <fileMode> <execMode>      -> ok            0 off, 1 monitor, 2 enforce, 3 alert
//   fan_allow <cgid> <kind>:<dev>:<ino>:<flags> ... -> ok <n> kind 1 file, 2 exec; flags 1 this inode,
//                                                               2 subtree; dev is the kernel's major<<20|minor
//   fan_clear <cgid>                           -> ok            drop the allow-list
//   fan_forget <cgid>                          -> ok            stop judging that container
//   fan_stats <cgid>                           -> ok <fileDenied> <execDenied> <judged> <linesLost>
// Asynchronous: `* fan <cgid> <file|exec> <denied|allowed> <mode> <pid> <comm> <path>` (path %-escaped).
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/fanotify.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <time.h>
#include <unistd.h>

#include "bpfd.h"

#define FAN_KIND_FILE 1
#define FAN_KIND_EXEC 2
#define FAN_ALLOW_FILE 1
#define FAN_ALLOW_SUBTREE 2
#define FAN_MODE_OFF 0
#define FAN_MODE_MONITOR 1
#define FAN_MODE_ENFORCE 2
#define FAN_MODE_ALERT 3

#define ALLOW_BUCKETS 65536
#define MAX_CONTAINERS 4096
#define PID_CACHE 4096
#define PID_CACHE_TTL_NS 1000000000ull
#define LINE_QUEUE 4096
#define LINE_MAX_BYTES 1400

struct allow_entry {
	uint64_t cgid, ino;
	uint32_t dev, kind;
	uint8_t flags;
	struct allow_entry *next;
};

struct container {
	uint64_t cgid;
	int file_mode, exec_mode;
	uint64_t file_denied, exec_denied, judged;
	bool used;
};

struct pid_slot {
	int pid;
	uint64_t cgid;
	uint64_t at_ns;
	/* The kernel sends FAN_OPEN_EXEC_PERM and then FAN_OPEN_PERM for the same exec open: the second
	 * one belongs to the exec layer, recognised by (pid, dev, ino) of the exec event just answered. */
	uint64_t exec_ino;
	uint32_t exec_dev;
	bool exec_pending;
};

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static int fan_fd = -1;
static int wake_fd = -1;
static pthread_t listener;
static struct allow_entry *allow_table[ALLOW_BUCKETS];
static struct container containers[MAX_CONTAINERS];
static int containers_high; /* slots [0, containers_high) have ever been used: bounds the scans */
static struct pid_slot pid_cache[PID_CACHE];
static char cgroup2_root[PATH_MAX] = "";
static char *line_queue[LINE_QUEUE];
static unsigned line_head, line_count;
static uint64_t lines_lost;
static uint64_t events_total;

/* ---------- tables (callers hold lock) ---------- */

static uint64_t mix(uint64_t x)
{
	x ^= x >> 33;
	x *= 0xff51afd7ed558ccdull;
	x ^= x >> 33;
	return x;
}

static unsigned allow_bucket(uint64_t cgid, uint32_t dev, uint64_t ino, uint32_t kind)
{
	return mix(cgid * 31 + ino * 131 + dev * 7 + kind) % ALLOW_BUCKETS;
}

static struct allow_entry *allow_find(uint64_t cgid, uint32_t dev, uint64_t ino, uint32_t kind)
{
	for (struct allow_entry *e = allow_table[allow_bucket(cgid, dev, ino, kind)]; e; e = e->next)
		if (e->cgid == cgid && e->dev == dev && e->ino == ino && e->kind == kind)
			return e;
	return NULL;
}

static int allow_add(uint64_t cgid, uint32_t dev, uint64_t ino, uint32_t kind, uint8_t flags)
{
	struct allow_entry *e = allow_find(cgid, dev, ino, kind);
	if (e) {
		e->flags |= flags;
		return 0;
	}
	e = calloc(1, sizeof(*e));
	if (!e)
		return -ENOMEM;
	unsigned b = allow_bucket(cgid, dev, ino, kind);
	*e = (struct allow_entry){ .cgid = cgid, .ino = ino, .dev = dev, .kind = kind, .flags = flags, .next = allow_table[b] };
	allow_table[b] = e;
	return 0;
}

static void allow_clear(uint64_t cgid)
{
	for (unsigned b = 0; b < ALLOW_BUCKETS; b++) {
		struct allow_entry **pp = &allow_table[b];
		while (*pp) {
			if ((*pp)->cgid == cgid) {
				struct allow_entry *dead = *pp;
				*pp = dead->next;
				free(dead);
			} else {
				pp = &(*pp)->next;
			}
		}
	}
}

static struct container *container_find(uint64_t cgid, bool create)
{
	struct container *free_slot = NULL;
	for (int i = 0; i < containers_high; i++) {
		if (containers[i].used && containers[i].cgid == cgid)
			return &containers[i];
		if (!containers[i].used && !free_slot)
			free_slot = &containers[i];
	}
	if (!create)
		return NULL;
	if (!free_slot) {
		if (containers_high == MAX_CONTAINERS)
			return NULL;
		free_slot = &containers[containers_high++];
	}
	*free_slot = (struct container){ .cgid = cgid, .used = true };
	return free_slot;
}

/* ---------- helpers ---------- */

static uint64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + ts.tv_nsec;
}

static uint32_t kernel_dev(dev_t d)
{
	return (major(d) << 20) | minor(d);
}

static void find_cgroup2_root(void)
{
	FILE *f = fopen("/proc/self/mountinfo", "re");
	char line[4096];
	if (!f)
		return;
	while (fgets(line, sizeof(line), f)) {
		/* id parent maj:min root mountpoint opts... - fstype source superopts */
		char *sep = strstr(line, " - ");
		if (!sep || strncmp(sep + 3, "cgroup2 ", 8) != 0)
			continue;
		char mp[PATH_MAX];
		if (sscanf(line, "%*s %*s %*s %*s %4095s", mp) == 1) {
			snprintf(cgroup2_root, sizeof(cgroup2_root), "%s", mp);
			break;
		}
	}
	fclose(f);
}

/* cgroup v2 id (= inode of its directory) of a process, or 0. */
static uint64_t read_pid_cgid(int pid)
{
	char path[64], line[PATH_MAX + 8];
	uint64_t cgid = 0;
	snprintf(path, sizeof(path), "/proc/%d/cgroup", pid);
	FILE *f = fopen(path, "re");
	if (!f)
		return 0;
	while (fgets(line, sizeof(line), f)) {
		if (strncmp(line, "0::", 3) != 0)
			continue;
		line[strcspn(line, "\n")] = 0;
		char dir[PATH_MAX * 2 + 16];
		struct stat st;
		snprintf(dir, sizeof(dir), "%s%s", cgroup2_root, line + 3);
		if (stat(dir, &st) == 0)
			cgid = st.st_ino;
		break;
	}
	fclose(f);
	return cgid;
}

static uint64_t pid_cgid(int pid)
{
	struct pid_slot *s = &pid_cache[(unsigned)pid % PID_CACHE];
	uint64_t t = now_ns();
	if (s->pid == pid && t - s->at_ns < PID_CACHE_TTL_NS)
		return s->cgid;
	uint64_t cgid = read_pid_cgid(pid);
	if (s->pid != pid)
		*s = (struct pid_slot){ .pid = pid };
	s->cgid = cgid;
	s->at_ns = t;
	return cgid;
}

static void escape_path(const char *in, char *out, size_t cap)
{
	static const char digits[] = "0123456789abcdef";
	size_t o = 0;
	for (const unsigned char *p = (const unsigned char *)in; *p && o + 4 < cap; p++) {
		if (*p <= 0x20 || *p == '%' || *p >= 0x7f) {
			out[o++] = '%';
			out[o++] = digits[*p >> 4];
			out[o++] = digits[*p & 15];
		} else {
			out[o++] = *p;
		}
	}
	out[o] = 0;
}

/* Queues an async line for the main loop (the listener thread must not write stdout itself). */
static void queue_line(char *line)
{
	pthread_mutex_lock(&lock);
	if (line_count == LINE_QUEUE) {
		lines_lost++;
		free(line);
	} else {
		line_queue[(line_head + line_count++) % LINE_QUEUE] = line;
	}
	pthread_mutex_unlock(&lock);
	uint64_t one = 1;
	if (write(wake_fd, &one, sizeof(one)) < 0) {
		/* counter saturated: the main loop is already due to drain */
	}
}

static void drain_lines(void *arg)
{
	(void)arg;
	uint64_t n;
	if (read(wake_fd, &n, sizeof(n)) < 0) {
		/* spurious wake-up */
	}
	for (;;) {
		pthread_mutex_lock(&lock);
		char *line = NULL;
		if (line_count) {
			line = line_queue[line_head];
			line_head = (line_head + 1) % LINE_QUEUE;
			line_count--;
		}
		pthread_mutex_unlock(&lock);
		if (!line)
			break;
		bpfd_emit("%s", line);
		free(line);
	}
	fflush(stdout);
}

/* ---------- judging ---------- */

static const char *mode_name(int mode)
{
	switch (mode) {
	case FAN_MODE_MONITOR:
		return "monitor";
	case FAN_MODE_ENFORCE:
		return "enforce";
	case FAN_MODE_ALERT:
		return "alert";
	default:
		return "off";
	}
}

/* The file itself, or any directory above it (as seen from the process's root), is allowed. */
static bool allowed(uint64_t cgid, uint32_t kind, const struct stat *st, int pid, const char *path)
{
	if (allow_find(cgid, kernel_dev(st->st_dev), st->st_ino, kind))
		return true;
	char buf[PATH_MAX + 64];
	int base = snprintf(buf, sizeof(buf), "/proc/%d/root", pid);
	if (base < 0 || (size_t)base + strlen(path) + 1 >= sizeof(buf) || path[0] != '/')
		return false;
	strcpy(buf + base, path);
	/* Strip one component at a time: /a/b/c -> /a/b -> /a -> / */
	for (;;) {
		char *slash = strrchr(buf + base, '/');
		if (!slash)
			return false;
		if (slash == buf + base)
			slash[1] = 0; /* the root itself */
		else
			*slash = 0;
		struct stat dst;
		if (stat(buf, &dst) == 0) {
			struct allow_entry *e = allow_find(cgid, kernel_dev(dst.st_dev), dst.st_ino, kind);
			if (e && (e->flags & FAN_ALLOW_SUBTREE))
				return true;
		}
		if (slash == buf + base)
			return false;
	}
}

/*
 * Fast path for files every watched container may read: an ignore mark on the inode makes the kernel stop
 * asking us about plain opens of it (the expensive part of fanotify is the round trip, not the lookup).
 * Only when each container that judges files allows this very inode; any policy change flushes all such
 * marks (flush_inode_marks), and the kernel drops one by itself when the file is modified. Exec events
 * keep coming (an exec also sends an open event, which an ignore mark would hide from the pairing).
 * Caller holds lock.
 */
static bool inode_marks_enabled = true;
static void maybe_ignore_inode(int fd, uint32_t dev, uint64_t ino)
{
	if (!inode_marks_enabled)
		return;
	for (int i = 0; i < containers_high; i++) {
		const struct container *o = &containers[i];
		if (o->used && o->file_mode != FAN_MODE_OFF) {
			const struct allow_entry *e = allow_find(o->cgid, dev, ino, FAN_KIND_FILE);
			if (!e)
				return;
		}
	}
	if (fanotify_mark(fan_fd, FAN_MARK_ADD | FAN_MARK_IGNORED_MASK, FAN_OPEN_PERM, fd, NULL) != 0)
		inode_marks_enabled = false; /* e.g. out of marks: keep judging every open */
}

/* Caller holds lock. Inode marks are only ever ignore marks here; mount/filesystem marks stay. */
static void flush_inode_marks(void)
{
	if (fan_fd >= 0)
		fanotify_mark(fan_fd, FAN_MARK_FLUSH, 0, AT_FDCWD, NULL);
}

static unsigned judge(const struct fanotify_event_metadata *md)
{
	if (md->pid == getpid())
		return FAN_ALLOW;
	uint64_t cgid = pid_cgid(md->pid);
	if (!cgid)
		return FAN_ALLOW;
	uint32_t kind = (md->mask & FAN_OPEN_EXEC_PERM) ? FAN_KIND_EXEC : FAN_KIND_FILE;

	pthread_mutex_lock(&lock);
	struct container *c = container_find(cgid, false);
	int mode = c ? (kind == FAN_KIND_EXEC ? c->exec_mode : c->file_mode) : FAN_MODE_OFF;
	pthread_mutex_unlock(&lock);
	if (!c)
		return FAN_ALLOW;

	struct stat st;
	if (fstat(md->fd, &st) != 0 || !S_ISREG(st.st_mode))
		return FAN_ALLOW;
	/* Pair the two events of one exec even while a layer is off: the mode may change in between. */
	struct pid_slot *slot = &pid_cache[(unsigned)md->pid % PID_CACHE];
	if (slot->pid == md->pid) {
		if (kind == FAN_KIND_EXEC) {
			slot->exec_pending = true;
			slot->exec_dev = kernel_dev(st.st_dev);
			slot->exec_ino = st.st_ino;
		} else if (slot->exec_pending && slot->exec_dev == kernel_dev(st.st_dev) && slot->exec_ino == st.st_ino) {
			slot->exec_pending = false;
			return FAN_ALLOW; /* the open half of an exec already judged */
		}
	}
	if (mode == FAN_MODE_OFF)
		return FAN_ALLOW;
	char path[PATH_MAX] = "";
	bool have_path = false;

	pthread_mutex_lock(&lock);
	c = container_find(cgid, false);
	/* The common case, an allowed file, needs no path: one hash lookup by inode. */
	bool ok = c && allow_find(cgid, kernel_dev(st.st_dev), st.st_ino, kind);
	pthread_mutex_unlock(&lock);
	if (!ok && c) {
		char link[64];
		snprintf(link, sizeof(link), "/proc/self/fd/%d", md->fd);
		ssize_t n = readlink(link, path, sizeof(path) - 1);
		path[n > 0 ? n : 0] = 0;
		have_path = true;
	}
	pthread_mutex_lock(&lock);
	c = container_find(cgid, false);
	if (!ok && have_path)
		ok = c && allowed(cgid, kind, &st, md->pid, path);
	bool deny = false;
	if (c) {
		c->judged++;
		mode = kind == FAN_KIND_EXEC ? c->exec_mode : c->file_mode;
		if (!ok && mode != FAN_MODE_OFF) {
			deny = mode == FAN_MODE_ENFORCE || mode == FAN_MODE_ALERT;
			if (kind == FAN_KIND_EXEC)
				c->exec_denied++;
			else
				c->file_denied++;
		} else {
			ok = true;
		}
	}
	if (ok && c && kind == FAN_KIND_FILE)
		maybe_ignore_inode(md->fd, kernel_dev(st.st_dev), st.st_ino);
	pthread_mutex_unlock(&lock);
	if (ok || !c)
		return FAN_ALLOW;
	if (deny && slot->pid == md->pid)
		slot->exec_pending = false; /* a refused exec sends no open event after it */

	char comm[32] = "?", commpath[64], escaped[LINE_MAX_BYTES / 2 + 8];
	snprintf(commpath, sizeof(commpath), "/proc/%d/comm", md->pid);
	FILE *f = fopen(commpath, "re");
	if (f) {
		if (fgets(comm, sizeof(comm), f))
			comm[strcspn(comm, "\n")] = 0;
		fclose(f);
	}
	for (char *p = comm; *p; p++)
		if (*p <= ' ')
			*p = '_';
	escape_path(path, escaped, sizeof(escaped));
	char *line = NULL;
	if (asprintf(&line, "fan %" PRIu64 " %s %s %s %d %s %s", cgid, kind == FAN_KIND_EXEC ? "exec" : "file",
		     deny ? "denied" : "allowed", mode_name(mode), md->pid, comm, escaped) >= 0)
		queue_line(line);
	return deny ? FAN_DENY : FAN_ALLOW;
}

static void *listen_loop(void *arg)
{
	(void)arg;
	char buf[8192] __attribute__((aligned(__alignof__(struct fanotify_event_metadata))));
	for (;;) {
		ssize_t len = read(fan_fd, buf, sizeof(buf));
		if (len < 0) {
			if (errno == EINTR || errno == EAGAIN)
				continue;
			return NULL;
		}
		struct fanotify_event_metadata *md = (struct fanotify_event_metadata *)buf;
		for (; FAN_EVENT_OK(md, len); md = FAN_EVENT_NEXT(md, len)) {
			if (md->vers != FANOTIFY_METADATA_VERSION || md->fd < 0)
				continue;
			__atomic_add_fetch(&events_total, 1, __ATOMIC_RELAXED);
			struct fanotify_response resp = { .fd = md->fd, .response = judge(md) };
			if (write(fan_fd, &resp, sizeof(resp)) < 0) {
				/* the opener is gone; nothing to answer */
			}
			close(md->fd);
		}
	}
}

/* ---------- commands ---------- */

/* A terminal's Ctrl-C reaches the whole process group: the helper must outlive it so the agent can
 * still read its counters and answer pending permission events; the agent ends the helper by closing
 * its stdin. (Runs at load: fanotify.c is linked into pahlevan-bpfd.) */
__attribute__((constructor)) static void ignore_terminal_signals(void)
{
	signal(SIGINT, SIG_IGN);
	signal(SIGQUIT, SIG_IGN);
}

static int start(void)
{
	if (fan_fd >= 0)
		return 0;
	int fd = fanotify_init(FAN_CLASS_CONTENT | FAN_CLOEXEC | FAN_UNLIMITED_QUEUE | FAN_UNLIMITED_MARKS,
			       O_RDONLY | O_LARGEFILE | O_CLOEXEC | O_NONBLOCK);
	if (fd < 0)
		return -errno;
	/* The fd itself is blocking for the thread; O_NONBLOCK above applies to the event files. */
	int wfd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (wfd < 0) {
		int err = -errno;
		close(fd);
		return err;
	}
	int err = bpfd_watch_fd(wfd, drain_lines, NULL);
	if (err) {
		close(fd);
		close(wfd);
		return err;
	}
	find_cgroup2_root();
	fan_fd = fd;
	wake_fd = wfd;
	err = pthread_create(&listener, NULL, listen_loop, NULL);
	if (err) {
		bpfd_unwatch_fd(wfd);
		close(fd);
		close(wfd);
		fan_fd = wake_fd = -1;
		return -err;
	}
	pthread_detach(listener);
	return 0;
}

static const char *const skipped_fstypes[] = { "proc",      "sysfs",   "devpts", "devtmpfs", "mqueue",
					       "cgroup",    "cgroup2", "bpf",    "tracefs",  "debugfs",
					       "securityfs", "pstore", "fusectl", "configfs", "hugetlbfs",
					       "autofs",    "binfmt_misc", "nsfs",  NULL };

static bool skipped_mount(const char *mountpoint, const char *fstype)
{
	for (int i = 0; skipped_fstypes[i]; i++)
		if (strcmp(fstype, skipped_fstypes[i]) == 0)
			return true;
	return strcmp(mountpoint, "/dev") == 0 || strncmp(mountpoint, "/dev/", 5) == 0 ||
	       strncmp(mountpoint, "/proc/", 6) == 0 || strncmp(mountpoint, "/sys/", 5) == 0;
}

/* Marks the filesystems of this mount namespace (FAN_MARK_FILESYSTEM) and puts an ignore mask on each of
 * its mounts: opens through our own mounts stay silent, opens through any other mount of the same
 * filesystems (a container's bind mounts) report. */
static int mark_host_filesystems(int *filesystems, int *mounts)
{
	FILE *f = fopen("/proc/self/mountinfo", "re");
	if (!f)
		return -errno;
	char line[4096], seen[256][32];
	int nseen = 0, err = 0;
	*filesystems = *mounts = 0;
	while (fgets(line, sizeof(line), f)) {
		char mp[PATH_MAX], fstype[64], devid[32];
		char *sep = strstr(line, " - ");
		if (!sep || sscanf(line, "%*s %*s %31s %*s %4095s", devid, mp) != 2 || sscanf(sep + 3, "%63s", fstype) != 1)
			continue;
		if (skipped_mount(mp, fstype) || strcmp(fstype, "tmpfs") == 0 || strchr(mp, '\\'))
			continue;
		/* Ignore first, so that no host open reports in between. */
		if (fanotify_mark(fan_fd, FAN_MARK_ADD | FAN_MARK_MOUNT | FAN_MARK_IGNORED_MASK | FAN_MARK_IGNORED_SURV_MODIFY,
				  FAN_OPEN_PERM | FAN_OPEN_EXEC_PERM, AT_FDCWD, mp) == 0)
			(*mounts)++;
		else
			continue;
		bool known = false;
		for (int i = 0; i < nseen; i++)
			known = known || strcmp(seen[i], devid) == 0;
		if (known || nseen == 256)
			continue;
		if (fanotify_mark(fan_fd, FAN_MARK_ADD | FAN_MARK_FILESYSTEM, FAN_OPEN_PERM | FAN_OPEN_EXEC_PERM, AT_FDCWD, mp) == 0) {
			snprintf(seen[nseen++], sizeof(seen[0]), "%s", devid);
			(*filesystems)++;
		} else if (!err) {
			err = -errno;
		}
	}
	fclose(f);
	return *filesystems ? 0 : (err ? err : -ENOENT);
}

/* Marks every file-bearing mount of pid's mount namespace; returns how many or -errno. */
static int mark_mounts(int pid)
{
	char path[64];
	snprintf(path, sizeof(path), "/proc/%d/mountinfo", pid);
	FILE *f = fopen(path, "re");
	if (!f)
		return -errno;
	char line[4096];
	int marked = 0, err = 0;
	while (fgets(line, sizeof(line), f)) {
		char mp[PATH_MAX], fstype[64];
		char *sep = strstr(line, " - ");
		if (!sep || sscanf(line, "%*s %*s %*s %*s %4095s", mp) != 1 || sscanf(sep + 3, "%63s", fstype) != 1)
			continue;
		if (skipped_mount(mp, fstype))
			continue;
		char target[PATH_MAX + 64];
		/* Octal escapes (\040 for a space) in mountinfo: such mount points are rare; skip them. */
		if (strchr(mp, '\\'))
			continue;
		snprintf(target, sizeof(target), "/proc/%d/root%s", pid, mp);
		if (fanotify_mark(fan_fd, FAN_MARK_ADD | FAN_MARK_MOUNT, FAN_OPEN_PERM | FAN_OPEN_EXEC_PERM, AT_FDCWD,
				  target) == 0)
			marked++;
		else if (!err)
			err = -errno;
	}
	fclose(f);
	return marked ? marked : (err ? err : -ENOENT);
}

static int parse_u64(const char *s, uint64_t *out)
{
	char *end;
	errno = 0;
	unsigned long long v = strtoull(s, &end, 10);
	if (errno || end == s || *end)
		return -EINVAL;
	*out = v;
	return 0;
}

int fan_command(const char *id, const char *cmd, char *args)
{
	char *save = NULL;
	char *a1 = strtok_r(args, " ", &save);
	char *a2 = a1 ? strtok_r(NULL, " ", &save) : NULL;
	char *a3 = a2 ? strtok_r(NULL, " ", &save) : NULL;
	uint64_t cgid = 0;

	if (strcmp(cmd, "fan_init") == 0) {
		int err = start();
		if (err)
			bpfd_reply(id, "err %d fanotify_init(FAN_CLASS_CONTENT): %s", -err, strerror(-err));
		else
			bpfd_reply(id, "ok");
		return 0;
	}
	if (fan_fd < 0) {
		bpfd_reply(id, "err %d %s: run fan_init first", ENOTCONN, cmd);
		return 0;
	}
	if (strcmp(cmd, "fan_hostfs") == 0) {
		int filesystems, mounts;
		int err = mark_host_filesystems(&filesystems, &mounts);
		if (err)
			bpfd_reply(id, "err %d fan_hostfs: fanotify_mark(FAN_MARK_FILESYSTEM): %s", -err, strerror(-err));
		else
			bpfd_reply(id, "ok %d %d", filesystems, mounts);
		return 0;
	}
	if (strcmp(cmd, "fan_events") == 0) {
		bpfd_reply(id, "ok %" PRIu64, __atomic_load_n(&events_total, __ATOMIC_RELAXED));
		return 0;
	}
	if (!a1 || parse_u64(a1, &cgid) || cgid == 0) {
		bpfd_reply(id, "err %d %s: expected a cgroup id as first argument", EINVAL, cmd);
		return 0;
	}
	if (strcmp(cmd, "fan_watch") == 0) {
		uint64_t pid;
		if (!a2 || parse_u64(a2, &pid) || pid == 0 || pid > INT_MAX) {
			bpfd_reply(id, "err %d fan_watch: usage fan_watch <cgid> <pid>", EINVAL);
			return 0;
		}
		pthread_mutex_lock(&lock);
		struct container *c = container_find(cgid, true);
		pthread_mutex_unlock(&lock);
		if (!c) {
			bpfd_reply(id, "err %d fan_watch: too many containers (%d)", ENOSPC, MAX_CONTAINERS);
			return 0;
		}
		int n = mark_mounts((int)pid);
		if (n < 0)
			bpfd_reply(id, "err %d fan_watch: marking the mounts of pid %d: %s", -n, (int)pid, strerror(-n));
		else
			bpfd_reply(id, "ok %d", n);
		return 0;
	}
	if (strcmp(cmd, "fan_mode") == 0) {
		uint64_t fm, em;
		if (!a2 || !a3 || parse_u64(a2, &fm) || parse_u64(a3, &em) || fm > 3 || em > 3) {
			bpfd_reply(id, "err %d fan_mode: usage fan_mode <cgid> <fileMode 0-3> <execMode 0-3>", EINVAL);
			return 0;
		}
		pthread_mutex_lock(&lock);
		struct container *c = container_find(cgid, true);
		if (c) {
			c->file_mode = (int)fm;
			c->exec_mode = (int)em;
		}
		flush_inode_marks();
		pthread_mutex_unlock(&lock);
		if (c)
			bpfd_reply(id, "ok");
		else
			bpfd_reply(id, "err %d fan_mode: too many containers", ENOSPC);
		return 0;
	}
	if (strcmp(cmd, "fan_allow") == 0) {
		int added = 0;
		/* a2, a3 and the rest are entries */
		char *entries[3] = { a2, a3, NULL };
		pthread_mutex_lock(&lock);
		for (int i = 0;; i++) {
			char *e = i < 2 ? entries[i] : strtok_r(NULL, " ", &save);
			if (!e)
				break;
			unsigned kind, flags;
			unsigned long dev;
			unsigned long long ino;
			if (sscanf(e, "%u:%lu:%llu:%u", &kind, &dev, &ino, &flags) != 4 || (kind != 1 && kind != 2) ||
			    flags == 0 || flags > 3) {
				pthread_mutex_unlock(&lock);
				bpfd_reply(id, "err %d fan_allow: bad entry %s (want kind:dev:ino:flags)", EINVAL, e);
				return 0;
			}
			if (allow_add(cgid, (uint32_t)dev, ino, kind, (uint8_t)flags)) {
				pthread_mutex_unlock(&lock);
				bpfd_reply(id, "err %d fan_allow: out of memory", ENOMEM);
				return 0;
			}
			added++;
		}
		pthread_mutex_unlock(&lock);
		bpfd_reply(id, "ok %d", added);
		return 0;
	}
	if (strcmp(cmd, "fan_clear") == 0 || strcmp(cmd, "fan_forget") == 0) {
		pthread_mutex_lock(&lock);
		allow_clear(cgid);
		flush_inode_marks();
		if (strcmp(cmd, "fan_forget") == 0) {
			struct container *c = container_find(cgid, false);
			if (c)
				c->used = false;
		}
		pthread_mutex_unlock(&lock);
		bpfd_reply(id, "ok");
		return 0;
	}
	if (strcmp(cmd, "fan_stats") == 0) {
		pthread_mutex_lock(&lock);
		struct container *c = container_find(cgid, false);
		struct container copy = c ? *c : (struct container){ 0 };
		uint64_t lost = lines_lost;
		pthread_mutex_unlock(&lock);
		if (!c)
			bpfd_reply(id, "err %d fan_stats: cgroup %" PRIu64 " is not watched", ENOENT, cgid);
		else
			bpfd_reply(id, "ok %" PRIu64 " %" PRIu64 " %" PRIu64 " %" PRIu64, copy.file_denied, copy.exec_denied,
				   copy.judged, lost);
		return 0;
	}
	bpfd_reply(id, "err %d unknown command %s", EINVAL, cmd);
	return 0;
}
