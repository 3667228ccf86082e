// Tight syscall loop for bench/learner.ts: `syscall-loop getppid|openat|nr=N ITERATIONS [--seccomp]`.
// Prints the mean ns per iteration; with nr=N (a raw syscall with an invalid first argument, used by the kernel
// tests to probe a profile) and 1 iteration it prints `ret=R errno=E` instead. --seccomp first installs an allow-all filter, as a container
// runtime would, so the learner's watched path (which counts only tasks under a filter) is exercised.
#include <errno.h>
#include <fcntl.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

static long long now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

int main(int argc, char **argv)
{
	if (argc < 3) {
		fprintf(stderr, "usage: %s getppid|openat ITERATIONS [--seccomp]\n", argv[0]);
		return 2;
	}
	long n = atol(argv[2]);
	if (argc > 3 && strcmp(argv[3], "--seccomp") == 0) {
		struct sock_filter allow = BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW);
		struct sock_fprog prog = { .len = 1, .filter = &allow };
		if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) || syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, 0, &prog)) {
			perror("seccomp");
			return 1;
		}
	}
	if (strncmp(argv[1], "nr=", 3) == 0) {
		long nr = atol(argv[1] + 3), ret = 0;
		for (long i = 0; i < n; i++) {
			errno = 0;
			// An invalid first argument: when allowed, the call fails harmlessly instead of acting
			// (ptrace(PTRACE_TRACEME) would make the runtime our tracer and can leave us in ptrace_stop).
			ret = syscall(nr, -1L, 0, 0, 0, 0);
		}
		printf("ret=%ld errno=%d\n", ret, ret < 0 ? errno : 0);
		return 0;
	}
	int open_loop = strcmp(argv[1], "openat") == 0;
	long long t0 = now_ns();
	for (long i = 0; i < n; i++) {
		if (open_loop) {
			// An openat that fails fast in the kernel (ENOENT) still runs the learner's open path.
			syscall(SYS_openat, AT_FDCWD, "/nonexistent-pahlevan-bench", O_RDONLY);
		} else {
			syscall(SYS_getppid);
		}
	}
	long long t1 = now_ns();
	printf("%.2f\n", (double)(t1 - t0) / n);
	return 0;
}
