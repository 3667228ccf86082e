/* pahlevan-bpfd: the native helper's extension interface (see PROTOCOL.md).
 * Other C files in agent/native/ (e.g. fanotify.c) use these to reply, emit asynchronous lines and
 * get called back when their file descriptors become readable in the helper's single epoll loop. */
#ifndef PAHLEVAN_BPFD_H
#define PAHLEVAN_BPFD_H

#include <stddef.h>

/* Writes "<id> <formatted>\n", e.g. bpfd_reply(id, "ok %d", n) or bpfd_reply(id, "err %d %s", e, msg). */
void bpfd_reply(const char *id, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Writes "* <formatted>\n": an asynchronous line. */
void bpfd_emit(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* Calls on_readable(arg) whenever fd is readable; returns 0 or -errno. */
int bpfd_watch_fd(int fd, void (*on_readable)(void *arg), void *arg);
/* Stops watching fd (does not close it); returns 0 or -errno. */
int bpfd_unwatch_fd(int fd);
/* Lowercase hex of len bytes into out (2*len+1 bytes). */
void bpfd_hex(const void *data, size_t len, char *out);
/* Parses lowercase/uppercase hex into out; returns the number of bytes or -1. */
long bpfd_unhex(const char *hex, void *out, size_t cap);
/* The fd of map <map> of an object opened with `open <obj> ...`, or -errno. */
int bpfd_map_fd(const char *obj, const char *map);

/* Commands whose name starts with "fan_" go here (defined weak in bpfd.c; fanotify.c overrides).
 * It must reply exactly once to id (now or later). args is the rest of the line (may be modified). */
int fan_command(const char *id, const char *cmd, char *args);

#endif
