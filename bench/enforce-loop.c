// Tight loops for bench/enforce.ts (also run inside the qemu guest, so it is linked statically):
//   enforce-loop open PATH ITERATIONS            open()+close() of one file
//   enforce-loop connect-udp ADDR PORT ITERATIONS connect() of one UDP socket (no handshake: the
//                                                 cgroup connect4 hook's cost is not drowned by TCP)
// Prints the mean ns per iteration; exits 1 on the first failing call.
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
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
	if (argc == 4 && strcmp(argv[1], "open") == 0) {
		long n = atol(argv[3]);
		long long t = now_ns();
		for (long i = 0; i < n; i++) {
			int fd = open(argv[2], O_RDONLY);
			if (fd < 0) {
				perror("open");
				return 1;
			}
			close(fd);
		}
		printf("%.1f\n", (double)(now_ns() - t) / n);
		return 0;
	}
	if (argc == 5 && strcmp(argv[1], "connect-udp") == 0) {
		struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons(atoi(argv[3])) };
		inet_pton(AF_INET, argv[2], &sa.sin_addr);
		long n = atol(argv[4]);
		int s = socket(AF_INET, SOCK_DGRAM, 0);
		long long t = now_ns();
		for (long i = 0; i < n; i++) {
			if (connect(s, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
				perror("connect");
				return 1;
			}
		}
		printf("%.1f\n", (double)(now_ns() - t) / n);
		return 0;
	}
	fprintf(stderr, "usage: %s open PATH N | connect-udp ADDR PORT N\n", argv[0]);
	return 2;
}
