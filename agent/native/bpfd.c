// SPDX-License-Identifier: Apache-2.0
// pahlevan-bpfd: a small libbpf helper process. The TypeScript agent spawns it and speaks the line
// protocol of PROTOCOL.md on stdin/stdout. One epoll loop serves stdin, ring buffers and any fd a
// plugin registers (bpfd_watch_fd). libbpf diagnostics go to stderr; the first warning of a failing
// command is also put into its error reply, so the agent can say what the kernel refused.
#define _GNU_SOURCE
#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/magic.h>
#include <net/if.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <unistd.h>

#include "bpfd.h"

#ifndef BPF_FS_MAGIC
#define BPF_FS_MAGIC 0xcafe4a11
#endif
/* tcx attach types (kernel 6.6+); libbpf 1.1's headers predate them. */
#define PAHLEVAN_BPF_TCX_INGRESS 46
#define PAHLEVAN_BPF_TCX_EGRESS 47

struct attachment {
	char prog[128];
	struct bpf_link *link; /* libbpf link, or NULL */
	int link_fd;           /* raw bpf_link_create fd (tcx), or -1 */
	bool tc;               /* clsact filter */
	struct bpf_tc_hook hook;
	struct bpf_tc_opts opts;
	struct attachment *next;
};

struct rbuf {
	char label[256]; /* "<obj>/<map>" */
	struct ring_buffer *rb;
	int fd;
	struct rbuf *next;
};

struct obj {
	char name[128];
	struct bpf_object *bo;
	struct attachment *atts;
	struct rbuf *rbufs;
	struct obj *next;
};

struct watch {
	int fd;
	void (*cb)(void *);
	void *arg;
	struct watch *next;
};

static struct obj *objects;
static struct watch *watches;
static int epfd = -1;
static char first_warning[512];

/* ---------- output ---------- */

static void vwrite_line(const char *prefix, const char *fmt, va_list ap)
{
	char *body = NULL;
	if (vasprintf(&body, fmt, ap) < 0)
		return;
	for (char *p = body; *p; p++)
		if (*p == '\n' || *p == '\r')
			*p = ' ';
	fprintf(stdout, "%s%s\n", prefix, body);
	free(body);
}

void bpfd_reply(const char *id, const char *fmt, ...)
{
	char prefix[80];
	snprintf(prefix, sizeof(prefix), "%s ", id);
	va_list ap;
	va_start(ap, fmt);
	vwrite_line(prefix, fmt, ap);
	va_end(ap);
	fflush(stdout);
}

void bpfd_emit(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vwrite_line("* ", fmt, ap);
	va_end(ap);
}

static void reply_err(const char *id, int err, const char *fmt, ...)
{
	char msg[1024];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	if (err < 0)
		err = -err;
	if (first_warning[0])
		bpfd_reply(id, "err %d %s (%s): %s", err, msg, strerror(err), first_warning);
	else
		bpfd_reply(id, "err %d %s (%s)", err, msg, strerror(err));
}

void bpfd_hex(const void *data, size_t len, char *out)
{
	static const char digits[] = "0123456789abcdef";
	const unsigned char *p = data;
	for (size_t i = 0; i < len; i++) {
		out[2 * i] = digits[p[i] >> 4];
		out[2 * i + 1] = digits[p[i] & 15];
	}
	out[2 * len] = 0;
}

static int hexval(int c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	c = tolower(c);
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	return -1;
}

long bpfd_unhex(const char *hex, void *out, size_t cap)
{
	size_t n = strlen(hex);
	if (n % 2 || n / 2 > cap)
		return -1;
	unsigned char *o = out;
	for (size_t i = 0; i < n / 2; i++) {
		int hi = hexval(hex[2 * i]), lo = hexval(hex[2 * i + 1]);
		if (hi < 0 || lo < 0)
			return -1;
		o[i] = hi << 4 | lo;
	}
	return n / 2;
}

static int libbpf_print(enum libbpf_print_level level, const char *fmt, va_list ap)
{
	if (level == LIBBPF_DEBUG && !getenv("PAHLEVAN_BPFD_DEBUG"))
		return 0;
	va_list copy;
	va_copy(copy, ap);
	int n = vfprintf(stderr, fmt, ap);
	if (level == LIBBPF_WARN && !first_warning[0]) {
		vsnprintf(first_warning, sizeof(first_warning), fmt, copy);
		for (char *p = first_warning; *p; p++)
			if (*p == '\n' || *p == '\r')
				*p = ' ';
	}
	va_end(copy);
	return n;
}

/* ---------- epoll ---------- */

int bpfd_watch_fd(int fd, void (*on_readable)(void *arg), void *arg)
{
	struct watch *w = calloc(1, sizeof(*w));
	if (!w)
		return -ENOMEM;
	w->fd = fd;
	w->cb = on_readable;
	w->arg = arg;
	struct epoll_event ev = { .events = EPOLLIN, .data.ptr = w };
	if (epoll_ctl(epfd, EPOLL_CTL_ADD, fd, &ev)) {
		int err = -errno;
		free(w);
		return err;
	}
	w->next = watches;
	watches = w;
	return 0;
}

int bpfd_unwatch_fd(int fd)
{
	for (struct watch **pw = &watches; *pw; pw = &(*pw)->next) {
		if ((*pw)->fd == fd) {
			struct watch *w = *pw;
			epoll_ctl(epfd, EPOLL_CTL_DEL, fd, NULL);
			*pw = w->next;
			/* Freed lazily: an event for it may still be in the current epoll batch. */
			w->cb = NULL;
			w->next = NULL;
			return 0;
		}
	}
	return -ENOENT;
}

/* ---------- objects ---------- */

static struct obj *find_obj(const char *name)
{
	for (struct obj *o = objects; o; o = o->next)
		if (strcmp(o->name, name) == 0)
			return o;
	return NULL;
}

static struct bpf_map *find_map(const char *id, const char *objname, const char *mapname)
{
	struct obj *o = find_obj(objname);
	if (!o) {
		reply_err(id, ENOENT, "no object %s (open it first)", objname);
		return NULL;
	}
	struct bpf_map *m = bpf_object__find_map_by_name(o->bo, mapname);
	if (!m) {
		reply_err(id, ENOENT, "object %s has no map %s", objname, mapname);
		return NULL;
	}
	return m;
}

int bpfd_map_fd(const char *objname, const char *mapname)
{
	struct obj *o = find_obj(objname);
	if (!o)
		return -ENOENT;
	struct bpf_map *m = bpf_object__find_map_by_name(o->bo, mapname);
	if (!m)
		return -ENOENT;
	return bpf_map__fd(m);
}

static int mkdir_p(const char *path)
{
	char buf[4096];
	snprintf(buf, sizeof(buf), "%s", path);
	for (char *p = buf + 1; *p; p++) {
		if (*p == '/') {
			*p = 0;
			if (mkdir(buf, 0700) && errno != EEXIST)
				return -errno;
			*p = '/';
		}
	}
	if (mkdir(buf, 0700) && errno != EEXIST)
		return -errno;
	return 0;
}

/* Pin directories must be on bpffs; mount it at /sys/fs/bpf when nobody has. */
static int ensure_bpffs(const char *pin_dir)
{
	struct statfs st;
	if (strncmp(pin_dir, "/sys/fs/bpf", 11) == 0 &&
	    (statfs("/sys/fs/bpf", &st) || st.f_type != BPF_FS_MAGIC)) {
		mkdir("/sys/fs/bpf", 0700);
		if (mount("bpf", "/sys/fs/bpf", "bpf", 0, "mode=0700"))
			return -errno;
	}
	int err = mkdir_p(pin_dir);
	if (err)
		return err;
	if (statfs(pin_dir, &st))
		return -errno;
	if (st.f_type != BPF_FS_MAGIC)
		return -ENOTDIR;
	return 0;
}

static void cmd_open(const char *id, char **argv, int argc)
{
	if (argc < 2) {
		reply_err(id, EINVAL, "usage: open <obj> <file.bpf.o> [pin-dir]");
		return;
	}
	if (find_obj(argv[0])) {
		reply_err(id, EEXIST, "object %s is already open", argv[0]);
		return;
	}
	LIBBPF_OPTS(bpf_object_open_opts, opts);
	if (argc > 2) {
		int err = ensure_bpffs(argv[2]);
		if (err) {
			reply_err(id, err, "pin dir %s is not usable on bpffs", argv[2]);
			return;
		}
		opts.pin_root_path = argv[2];
	}
	struct bpf_object *bo = bpf_object__open_file(argv[1], &opts);
	if (!bo) {
		reply_err(id, errno, "cannot open %s", argv[1]);
		return;
	}
	int err = bpf_object__load(bo);
	if (err) {
		reply_err(id, err, "kernel refused to load %s", argv[1]);
		bpf_object__close(bo);
		return;
	}
	struct obj *o = calloc(1, sizeof(*o));
	snprintf(o->name, sizeof(o->name), "%s", argv[0]);
	o->bo = bo;
	o->next = objects;
	objects = o;

	char *out = NULL;
	size_t outlen = 0;
	FILE *f = open_memstream(&out, &outlen);
	struct bpf_program *p;
	struct bpf_map *m;
	const char *sep = "";
	fprintf(f, "progs=");
	bpf_object__for_each_program(p, bo)
	{
		fprintf(f, "%s%s", sep, bpf_program__name(p));
		sep = ",";
	}
	sep = "";
	fprintf(f, " maps=");
	bpf_object__for_each_map(m, bo)
	{
		fprintf(f, "%s%s", sep, bpf_map__name(m));
		sep = ",";
	}
	fclose(f);
	bpfd_reply(id, "ok %s", out);
	free(out);
}

static struct bpf_program *find_prog(const char *id, const char *objname, const char *progname, struct obj **po)
{
	struct obj *o = find_obj(objname);
	if (!o) {
		reply_err(id, ENOENT, "no object %s (open it first)", objname);
		return NULL;
	}
	struct bpf_program *p = bpf_object__find_program_by_name(o->bo, progname);
	if (!p) {
		reply_err(id, ENOENT, "object %s has no program %s", objname, progname);
		return NULL;
	}
	*po = o;
	return p;
}

static struct attachment *new_attachment(struct obj *o, const char *prog)
{
	struct attachment *a = calloc(1, sizeof(*a));
	snprintf(a->prog, sizeof(a->prog), "%s", prog);
	a->link_fd = -1;
	a->next = o->atts;
	o->atts = a;
	return a;
}

/* The tag of the program behind a pinned link, or -errno. */
static int pinned_link_prog_tag(const char *path, unsigned char tag[BPF_TAG_SIZE])
{
	int lfd = bpf_obj_get(path);
	if (lfd < 0)
		return -errno;
	struct bpf_link_info li = {};
	__u32 len = sizeof(li);
	int err = bpf_obj_get_info_by_fd(lfd, &li, &len);
	close(lfd);
	if (err)
		return -errno;
	int pfd = bpf_prog_get_fd_by_id(li.prog_id);
	if (pfd < 0)
		return -errno;
	struct bpf_prog_info pi = {};
	len = sizeof(pi);
	err = bpf_obj_get_info_by_fd(pfd, &pi, &len);
	close(pfd);
	if (err)
		return -errno;
	memcpy(tag, pi.tag, BPF_TAG_SIZE);
	return 0;
}

/* attach <obj> <prog> [link-pin-path]: with a pin path the link outlives this process, so programs stay
 * attached while the agent restarts. A pinned link running the same program (same tag) is kept; one
 * running another version is replaced (new link first, then the old pin goes: no gap). */
static void cmd_attach(const char *id, char **argv, int argc)
{
	if (argc < 2) {
		reply_err(id, EINVAL, "usage: attach <obj> <prog> [link-pin-path]");
		return;
	}
	struct obj *o;
	struct bpf_program *p = find_prog(id, argv[0], argv[1], &o);
	if (!p)
		return;
	const char *pin = argc > 2 ? argv[2] : NULL;
	bool replacing = false;
	if (pin) {
		unsigned char old_tag[BPF_TAG_SIZE];
		if (pinned_link_prog_tag(pin, old_tag) == 0) {
			struct bpf_prog_info pi = {};
			__u32 len = sizeof(pi);
			if (bpf_obj_get_info_by_fd(bpf_program__fd(p), &pi, &len) == 0 &&
			    memcmp(pi.tag, old_tag, BPF_TAG_SIZE) == 0) {
				bpfd_reply(id, "ok kept");
				return;
			}
			replacing = true;
		}
	}
	struct bpf_link *l = bpf_program__attach(p);
	if (!l) {
		reply_err(id, errno, "cannot attach %s/%s", argv[0], argv[1]);
		return;
	}
	if (pin) {
		if (replacing)
			unlink(pin);
		int err = bpf_link__pin(l, pin);
		if (err) {
			bpf_link__destroy(l);
			reply_err(id, err, "cannot pin link %s", pin);
			return;
		}
		/* Pinned: the link lives on in bpffs; this process only drops its fd at exit. */
		bpf_link__disconnect(l);
	}
	new_attachment(o, argv[1])->link = l;
	bpfd_reply(id, replacing ? "ok replaced" : (pin ? "ok pinned" : "ok"));
}

static void cmd_attach_cgroup(const char *id, char **argv, int argc)
{
	if (argc < 3) {
		reply_err(id, EINVAL, "usage: attach_cgroup <obj> <prog> <cgroup-dir>");
		return;
	}
	struct obj *o;
	struct bpf_program *p = find_prog(id, argv[0], argv[1], &o);
	if (!p)
		return;
	int cfd = open(argv[2], O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (cfd < 0) {
		reply_err(id, errno, "cannot open cgroup %s", argv[2]);
		return;
	}
	struct bpf_link *l = bpf_program__attach_cgroup(p, cfd);
	int err = errno;
	close(cfd);
	if (!l) {
		reply_err(id, err, "cannot attach %s/%s to cgroup %s", argv[0], argv[1], argv[2]);
		return;
	}
	new_attachment(o, argv[1])->link = l;
	bpfd_reply(id, "ok");
}

static void cmd_attach_tc(const char *id, char **argv, int argc)
{
	if (argc < 4 || (strcmp(argv[3], "ingress") && strcmp(argv[3], "egress"))) {
		reply_err(id, EINVAL, "usage: attach_tc <obj> <prog> <ifname|ifindex> ingress|egress");
		return;
	}
	struct obj *o;
	struct bpf_program *p = find_prog(id, argv[0], argv[1], &o);
	if (!p)
		return;
	char *end;
	unsigned ifindex = strtoul(argv[2], &end, 10);
	if (*end || !ifindex)
		ifindex = if_nametoindex(argv[2]);
	if (!ifindex) {
		reply_err(id, ENODEV, "no network interface %s", argv[2]);
		return;
	}
	bool ingress = strcmp(argv[3], "ingress") == 0;
	/* tcx first: a link, and it runs alongside a CNI's own programs. */
	int lfd = bpf_link_create(bpf_program__fd(p), ifindex,
				  ingress ? PAHLEVAN_BPF_TCX_INGRESS : PAHLEVAN_BPF_TCX_EGRESS, NULL);
	if (lfd >= 0) {
		struct attachment *a = new_attachment(o, argv[1]);
		a->link_fd = lfd;
		bpfd_reply(id, "ok tcx");
		return;
	}
	first_warning[0] = 0;
	struct attachment *a = new_attachment(o, argv[1]);
	a->tc = true;
	a->hook.sz = sizeof(a->hook);
	a->hook.ifindex = ifindex;
	a->hook.attach_point = ingress ? BPF_TC_INGRESS : BPF_TC_EGRESS;
	int err = bpf_tc_hook_create(&a->hook);
	if (err && err != -EEXIST) {
		o->atts = a->next;
		free(a);
		reply_err(id, err, "cannot create clsact on ifindex %u", ifindex);
		return;
	}
	a->opts.sz = sizeof(a->opts);
	a->opts.prog_fd = bpf_program__fd(p);
	err = bpf_tc_attach(&a->hook, &a->opts);
	if (err) {
		o->atts = a->next;
		free(a);
		reply_err(id, err, "cannot attach tc program %s/%s", argv[0], argv[1]);
		return;
	}
	bpfd_reply(id, "ok clsact");
}

static void destroy_attachment(struct attachment *a)
{
	if (a->link)
		bpf_link__destroy(a->link); /* a disconnected (pinned) link stays attached */
	if (a->link_fd >= 0)
		close(a->link_fd);
	if (a->tc) {
		a->opts.flags = a->opts.prog_fd = a->opts.prog_id = 0;
		bpf_tc_detach(&a->hook, &a->opts);
	}
	free(a);
}

static void cmd_detach(const char *id, char **argv, int argc)
{
	if (argc < 2) {
		reply_err(id, EINVAL, "usage: detach <obj> <prog>");
		return;
	}
	struct obj *o = find_obj(argv[0]);
	if (!o) {
		reply_err(id, ENOENT, "no object %s", argv[0]);
		return;
	}
	int n = 0;
	for (struct attachment **pa = &o->atts; *pa;) {
		if (strcmp((*pa)->prog, argv[1]) == 0) {
			struct attachment *a = *pa;
			*pa = a->next;
			destroy_attachment(a);
			n++;
		} else {
			pa = &(*pa)->next;
		}
	}
	if (!n)
		reply_err(id, ENOENT, "%s/%s is not attached", argv[0], argv[1]);
	else
		bpfd_reply(id, "ok %d", n);
}

static bool is_percpu(struct bpf_map *m)
{
	enum bpf_map_type t = bpf_map__type(m);
	return t == BPF_MAP_TYPE_PERCPU_HASH || t == BPF_MAP_TYPE_PERCPU_ARRAY ||
	       t == BPF_MAP_TYPE_LRU_PERCPU_HASH || t == BPF_MAP_TYPE_PERCPU_CGROUP_STORAGE;
}

static size_t value_buf_size(struct bpf_map *m)
{
	size_t vs = bpf_map__value_size(m);
	if (is_percpu(m))
		return ((vs + 7) / 8) * 8 * libbpf_num_possible_cpus();
	return vs;
}

/* Parses a key of exactly key_size bytes. */
static void *parse_key(const char *id, struct bpf_map *m, const char *hex)
{
	size_t ks = bpf_map__key_size(m);
	void *k = calloc(1, ks ? ks : 1);
	if (bpfd_unhex(hex, k, ks) != (long)ks) {
		reply_err(id, EINVAL, "key must be %zu bytes of hex for map %s", ks, bpf_map__name(m));
		free(k);
		return NULL;
	}
	return k;
}

static void cmd_map_update(const char *id, char **argv, int argc)
{
	if (argc < 4) {
		reply_err(id, EINVAL, "usage: map_update <obj> <map> <keyhex> <valhex> [any|noexist|exist]");
		return;
	}
	struct bpf_map *m = find_map(id, argv[0], argv[1]);
	if (!m)
		return;
	__u64 flags = BPF_ANY;
	if (argc > 4) {
		if (!strcmp(argv[4], "noexist"))
			flags = BPF_NOEXIST;
		else if (!strcmp(argv[4], "exist"))
			flags = BPF_EXIST;
		else if (strcmp(argv[4], "any")) {
			reply_err(id, EINVAL, "flag must be any, noexist or exist, not %s", argv[4]);
			return;
		}
	}
	void *k = parse_key(id, m, argv[2]);
	if (!k)
		return;
	size_t vs = bpf_map__value_size(m), full = value_buf_size(m);
	char *v = calloc(1, full ? full : 1);
	long n = bpfd_unhex(argv[3], v, full);
	if (n == (long)vs && full != vs) {
		/* One value for a per-CPU map: the same on every CPU. */
		size_t stride = ((vs + 7) / 8) * 8;
		for (size_t off = stride; off < full; off += stride)
			memcpy(v + off, v, vs);
	} else if (n != (long)full) {
		reply_err(id, EINVAL, "value must be %zu bytes of hex for map %s", vs, bpf_map__name(m));
		free(k);
		free(v);
		return;
	}
	if (bpf_map_update_elem(bpf_map__fd(m), k, v, flags))
		reply_err(id, errno, "update of %s/%s failed", argv[0], argv[1]);
	else
		bpfd_reply(id, "ok");
	free(k);
	free(v);
}

static void cmd_map_lookup(const char *id, char **argv, int argc)
{
	if (argc < 3) {
		reply_err(id, EINVAL, "usage: map_lookup <obj> <map> <keyhex>");
		return;
	}
	struct bpf_map *m = find_map(id, argv[0], argv[1]);
	if (!m)
		return;
	void *k = parse_key(id, m, argv[2]);
	if (!k)
		return;
	size_t full = value_buf_size(m);
	void *v = calloc(1, full);
	char *hex = malloc(2 * full + 1);
	if (bpf_map_lookup_elem(bpf_map__fd(m), k, v))
		reply_err(id, errno, "lookup in %s/%s failed", argv[0], argv[1]);
	else {
		bpfd_hex(v, full, hex);
		bpfd_reply(id, "ok %s", hex);
	}
	free(k);
	free(v);
	free(hex);
}

static void cmd_map_delete(const char *id, char **argv, int argc)
{
	if (argc < 3) {
		reply_err(id, EINVAL, "usage: map_delete <obj> <map> <keyhex>");
		return;
	}
	struct bpf_map *m = find_map(id, argv[0], argv[1]);
	if (!m)
		return;
	void *k = parse_key(id, m, argv[2]);
	if (!k)
		return;
	if (bpf_map_delete_elem(bpf_map__fd(m), k))
		reply_err(id, errno, "delete in %s/%s failed", argv[0], argv[1]);
	else
		bpfd_reply(id, "ok");
	free(k);
}

static void cmd_map_dump(const char *id, char **argv, int argc)
{
	if (argc < 2) {
		reply_err(id, EINVAL, "usage: map_dump <obj> <map>");
		return;
	}
	struct bpf_map *m = find_map(id, argv[0], argv[1]);
	if (!m)
		return;
	int fd = bpf_map__fd(m);
	size_t ks = bpf_map__key_size(m), full = value_buf_size(m);
	char *k = calloc(1, ks), *next = calloc(1, ks), *v = calloc(1, full);
	char *khex = malloc(2 * ks + 1), *vhex = malloc(2 * full + 1);
	char *out = NULL;
	size_t outlen = 0;
	FILE *f = open_memstream(&out, &outlen);
	long n = 0;
	void *cur = NULL;
	while (bpf_map_get_next_key(fd, cur, next) == 0) {
		memcpy(k, next, ks);
		cur = k;
		if (bpf_map_lookup_elem(fd, k, v))
			continue; /* deleted meanwhile */
		bpfd_hex(k, ks, khex);
		bpfd_hex(v, full, vhex);
		fprintf(f, " %s:%s", khex, vhex);
		n++;
	}
	fclose(f);
	bpfd_reply(id, "ok %ld%s", n, out ? out : "");
	free(out);
	free(k);
	free(next);
	free(v);
	free(khex);
	free(vhex);
}

/* Map metadata plus the kernel's memory accounting (memlock from fdinfo). */
static void cmd_map_info(const char *id, char **argv, int argc)
{
	if (argc < 2) {
		reply_err(id, EINVAL, "usage: map_info <obj> <map>");
		return;
	}
	struct bpf_map *m = find_map(id, argv[0], argv[1]);
	if (!m)
		return;
	char path[64], line[256];
	unsigned long long memlock = 0;
	unsigned map_id = 0;
	snprintf(path, sizeof(path), "/proc/self/fdinfo/%d", bpf_map__fd(m));
	FILE *f = fopen(path, "r");
	while (f && fgets(line, sizeof(line), f)) {
		sscanf(line, "memlock: %llu", &memlock);
		sscanf(line, "map_id: %u", &map_id);
	}
	if (f)
		fclose(f);
	bpfd_reply(id, "ok type=%s key=%u value=%u max=%u memlock=%llu id=%u",
		   libbpf_bpf_map_type_str(bpf_map__type(m)), bpf_map__key_size(m), bpf_map__value_size(m),
		   bpf_map__max_entries(m), memlock, map_id);
}

static int on_ringbuf_record(void *ctx, void *data, size_t size)
{
	struct rbuf *r = ctx;
	char *hex = malloc(2 * size + 1);
	if (!hex)
		return 0;
	bpfd_hex(data, size, hex);
	fprintf(stdout, "* ev %s %s\n", r->label, hex);
	free(hex);
	return 0;
}

static void on_ringbuf_readable(void *arg)
{
	struct rbuf *r = arg;
	ring_buffer__consume(r->rb);
}

static void cmd_ringbuf(const char *id, char **argv, int argc)
{
	if (argc < 2) {
		reply_err(id, EINVAL, "usage: ringbuf <obj> <map>");
		return;
	}
	struct bpf_map *m = find_map(id, argv[0], argv[1]);
	if (!m)
		return;
	struct obj *o = find_obj(argv[0]);
	for (struct rbuf *r = o->rbufs; r; r = r->next) {
		if (strcmp(r->label + strlen(o->name) + 1, argv[1]) == 0) {
			reply_err(id, EALREADY, "ring buffer %s/%s is already streaming", argv[0], argv[1]);
			return;
		}
	}
	if (bpf_map__type(m) != BPF_MAP_TYPE_RINGBUF) {
		reply_err(id, EINVAL, "map %s/%s is not a ring buffer", argv[0], argv[1]);
		return;
	}
	struct rbuf *r = calloc(1, sizeof(*r));
	snprintf(r->label, sizeof(r->label), "%s/%s", argv[0], argv[1]);
	r->rb = ring_buffer__new(bpf_map__fd(m), on_ringbuf_record, r, NULL);
	if (!r->rb) {
		int err = errno;
		free(r);
		reply_err(id, err, "cannot open ring buffer %s/%s", argv[0], argv[1]);
		return;
	}
	r->fd = ring_buffer__epoll_fd(r->rb);
	int err = bpfd_watch_fd(r->fd, on_ringbuf_readable, r);
	if (err) {
		ring_buffer__free(r->rb);
		free(r);
		reply_err(id, err, "cannot watch ring buffer %s/%s", argv[0], argv[1]);
		return;
	}
	r->next = o->rbufs;
	o->rbufs = r;
	bpfd_reply(id, "ok");
	/* Records already waiting (e.g. written while a previous agent was down) come out now. */
	ring_buffer__consume(r->rb);
}

/* prog_info <obj> <prog>: id, tag and the kernel's run statistics (non-zero while stats are enabled). */
static void cmd_prog_info(const char *id, char **argv, int argc)
{
	if (argc < 2) {
		reply_err(id, EINVAL, "usage: prog_info <obj> <prog>");
		return;
	}
	struct obj *o;
	struct bpf_program *p = find_prog(id, argv[0], argv[1], &o);
	if (!p)
		return;
	struct bpf_prog_info pi = {};
	__u32 len = sizeof(pi);
	if (bpf_obj_get_info_by_fd(bpf_program__fd(p), &pi, &len)) {
		reply_err(id, errno, "cannot get info of %s/%s", argv[0], argv[1]);
		return;
	}
	char tag[2 * BPF_TAG_SIZE + 1];
	bpfd_hex(pi.tag, BPF_TAG_SIZE, tag);
	bpfd_reply(id, "ok id=%u tag=%s run_time_ns=%llu run_cnt=%llu jited=%u xlated=%u", pi.id, tag,
		   (unsigned long long)pi.run_time_ns, (unsigned long long)pi.run_cnt, pi.jited_prog_len,
		   pi.xlated_prog_len);
}

/* stats on|off: kernel run-time statistics for all BPF programs while this helper holds them on. */
static int stats_fd = -1;
static void cmd_stats(const char *id, char **argv, int argc)
{
	if (argc < 1 || (strcmp(argv[0], "on") && strcmp(argv[0], "off"))) {
		reply_err(id, EINVAL, "usage: stats on|off");
		return;
	}
	if (!strcmp(argv[0], "on") && stats_fd < 0) {
		stats_fd = bpf_enable_stats(BPF_STATS_RUN_TIME);
		if (stats_fd < 0) {
			reply_err(id, errno, "cannot enable BPF run-time statistics");
			return;
		}
	} else if (!strcmp(argv[0], "off") && stats_fd >= 0) {
		close(stats_fd);
		stats_fd = -1;
	}
	bpfd_reply(id, "ok");
}

static void close_obj(struct obj *o)
{
	while (o->rbufs) {
		struct rbuf *r = o->rbufs;
		o->rbufs = r->next;
		bpfd_unwatch_fd(r->fd);
		ring_buffer__free(r->rb);
		/* r is referenced by its (now inert) watch entry; keep it allocated. */
	}
	while (o->atts) {
		struct attachment *a = o->atts;
		o->atts = a->next;
		destroy_attachment(a);
	}
	bpf_object__close(o->bo);
}

static void cmd_close(const char *id, char **argv, int argc)
{
	if (argc < 1) {
		reply_err(id, EINVAL, "usage: close <obj>");
		return;
	}
	for (struct obj **po = &objects; *po; po = &(*po)->next) {
		if (strcmp((*po)->name, argv[0]) == 0) {
			struct obj *o = *po;
			*po = o->next;
			close_obj(o);
			free(o);
			bpfd_reply(id, "ok");
			return;
		}
	}
	reply_err(id, ENOENT, "no object %s", argv[0]);
}

__attribute__((weak)) int fan_command(const char *id, const char *cmd, char *args)
{
	reply_err(id, ENOSYS, "%s: this helper was built without fanotify support (agent/native/fanotify.c)", cmd);
	return 0;
}

/* ---------- request loop ---------- */

#define MAX_ARGS 16

static void handle_line(char *line)
{
	first_warning[0] = 0;
	char *save = NULL;
	char *id = strtok_r(line, " \t", &save);
	if (!id || !*id)
		return;
	char *cmd = strtok_r(NULL, " \t", &save);
	if (!cmd) {
		reply_err(id, EINVAL, "missing command");
		return;
	}
	if (strncmp(cmd, "fan_", 4) == 0) {
		char *rest = save ? save : (char *)"";
		while (*rest == ' ' || *rest == '\t')
			rest++;
		fan_command(id, cmd, rest);
		return;
	}
	char *argv[MAX_ARGS];
	int argc = 0;
	char *a;
	while (argc < MAX_ARGS && (a = strtok_r(NULL, " \t", &save)))
		argv[argc++] = a;

	if (!strcmp(cmd, "ping"))
		bpfd_reply(id, "ok pong");
	else if (!strcmp(cmd, "open"))
		cmd_open(id, argv, argc);
	else if (!strcmp(cmd, "attach"))
		cmd_attach(id, argv, argc);
	else if (!strcmp(cmd, "attach_cgroup"))
		cmd_attach_cgroup(id, argv, argc);
	else if (!strcmp(cmd, "attach_tc"))
		cmd_attach_tc(id, argv, argc);
	else if (!strcmp(cmd, "detach"))
		cmd_detach(id, argv, argc);
	else if (!strcmp(cmd, "map_update"))
		cmd_map_update(id, argv, argc);
	else if (!strcmp(cmd, "map_lookup"))
		cmd_map_lookup(id, argv, argc);
	else if (!strcmp(cmd, "map_delete"))
		cmd_map_delete(id, argv, argc);
	else if (!strcmp(cmd, "map_dump"))
		cmd_map_dump(id, argv, argc);
	else if (!strcmp(cmd, "map_info"))
		cmd_map_info(id, argv, argc);
	else if (!strcmp(cmd, "prog_info"))
		cmd_prog_info(id, argv, argc);
	else if (!strcmp(cmd, "stats"))
		cmd_stats(id, argv, argc);
	else if (!strcmp(cmd, "ringbuf"))
		cmd_ringbuf(id, argv, argc);
	else if (!strcmp(cmd, "close"))
		cmd_close(id, argv, argc);
	else
		reply_err(id, EINVAL, "unknown command %s", cmd);
}

static char *inbuf;
static size_t inlen, incap;
static bool stdin_eof;

static void on_stdin(void *arg)
{
	if (incap - inlen < 65536) {
		incap = incap ? incap * 2 : 131072;
		inbuf = realloc(inbuf, incap);
	}
	ssize_t n = read(0, inbuf + inlen, incap - inlen - 1);
	if (n <= 0) {
		if (n == 0 || (errno != EAGAIN && errno != EINTR))
			stdin_eof = true;
		return;
	}
	inlen += n;
	size_t start = 0;
	for (size_t i = 0; i < inlen; i++) {
		if (inbuf[i] == '\n') {
			inbuf[i] = 0;
			if (i > start && inbuf[i - 1] == '\r')
				inbuf[i - 1] = 0;
			handle_line(inbuf + start);
			start = i + 1;
		}
	}
	memmove(inbuf, inbuf + start, inlen - start);
	inlen -= start;
}

int main(int argc, char **argv)
{
	if (argc > 1 && (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h"))) {
		fprintf(stderr, "pahlevan-bpfd: line protocol on stdin/stdout, see agent/native/PROTOCOL.md\n");
		return 0;
	}
	signal(SIGPIPE, SIG_IGN);
	libbpf_set_print(libbpf_print);
	libbpf_set_strict_mode(LIBBPF_STRICT_ALL);
	static char outbuf[1 << 16];
	setvbuf(stdout, outbuf, _IOFBF, sizeof(outbuf));
	epfd = epoll_create1(EPOLL_CLOEXEC);
	if (epfd < 0 || bpfd_watch_fd(0, on_stdin, NULL)) {
		perror("pahlevan-bpfd: epoll");
		return 1;
	}
	fprintf(stdout, "* ready pahlevan-bpfd 1\n");
	fflush(stdout);
	struct epoll_event evs[32];
	while (!stdin_eof) {
		int n = epoll_wait(epfd, evs, 32, -1);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			perror("pahlevan-bpfd: epoll_wait");
			break;
		}
		for (int i = 0; i < n; i++) {
			struct watch *w = evs[i].data.ptr;
			if (w->cb)
				w->cb(w->arg);
		}
		fflush(stdout);
	}
	/* stdin closed: the agent is gone. Links die with us; pinned maps stay for the next agent. */
	while (objects) {
		struct obj *o = objects;
		objects = o->next;
		close_obj(o);
	}
	return 0;
}
