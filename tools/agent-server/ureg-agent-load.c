/* SPDX-License-Identifier: MIT */
/*
 * ureg-agent-load - open N WebSocket connections to ureg-agent-server, run
 * the echo agent on each (closed loop, --pipeline runs in flight per
 * connection) for --seconds, verify every event (see agent_client.h), and
 * report events/s and the emit-to-receive latency (p50, p99, max).
 *
 *   ureg-agent-load --port 8080 --conns 1000 --seconds 10 [--pipeline 1]
 *                   [--repeat 3] [--stalled 50]
 *
 * Every figure is the median of --repeat runs (default 3) with the spread
 * (min-max) beside it, under a line naming the machine (nproc, CPU model):
 * quote it that way.  --stalled N adds N clients that never read their
 * socket and send echo runs of 60 KB input as fast as it takes them (the
 * hostile client of issue 12); the runs are then done twice, without and
 * with them, and the p99 ratio and the server's RSS growth (GET /stats) are
 * printed.
 *
 * Raise `ulimit -n` above the connection count (each end needs one fd).
 * Exit status 1 when an event was wrong or a normal connection failed.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <getopt.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>
#include <libwebsockets.h>
#include "agent_client.h"

#define STALLED_INPUT 60000

static uint64_t now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* ------------------------------------------------------------- machine */

static void print_machine(void)
{
	char line[256], model[160] = "unknown";
	FILE *f = fopen("/proc/cpuinfo", "r");

	while (f && fgets(line, sizeof(line), f)) {
		char *c = strchr(line, ':');
		if (!strncmp(line, "model name", 10) && c) {
			snprintf(model, sizeof(model), "%s", c + 2);
			model[strcspn(model, "\n")] = 0;
			break;
		}
	}
	if (f)
		fclose(f);
	printf("machine: %ld CPUs (nproc), %s\n", sysconf(_SC_NPROCESSORS_ONLN), model);
}

/* --------------------------------------------- plain sockets: /stats, ws */

static int tcp_connect(const char *host, int port)
{
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port) };
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

	if (fd < 0)
		return -1;
	if (inet_pton(AF_INET, host, &a.sin_addr) != 1 ||
	    connect(fd, (struct sockaddr *)&a, sizeof(a)) < 0) {
		close(fd);
		return -1;
	}
	return fd;
}

/* read until @until or EOF, 5 s at most */
static size_t read_some(int fd, char *buf, size_t cap, const char *until)
{
	size_t got = 0;
	uint64_t deadline = now_ms() + 5000;

	buf[0] = 0;
	while (got < cap - 1 && now_ms() < deadline && !(until && strstr(buf, until))) {
		struct pollfd p = { .fd = fd, .events = POLLIN };
		if (poll(&p, 1, 100) <= 0)
			continue;
		ssize_t n = recv(fd, buf + got, until ? 1 : cap - 1 - got, 0);
		if (n <= 0)
			break;
		got += (size_t)n;
		buf[got] = 0;
	}
	return got;
}

/* the server's RSS from GET /stats, 0 when unknown */
static uint64_t server_rss(const char *host, int port)
{
	static char buf[1 << 21];
	char req[160];
	json_t *j;
	uint64_t rss = 0;
	int fd = tcp_connect(host, port);

	if (fd < 0)
		return 0;
	int n = snprintf(req, sizeof(req), "GET /stats HTTP/1.1\r\nHost: %s:%d\r\n"
			 "Connection: close\r\n\r\n", host, port);
	if (send(fd, req, (size_t)n, MSG_NOSIGNAL) == n)
		read_some(fd, buf, sizeof(buf), NULL);
	close(fd);
	char *body = strstr(buf, "\r\n\r\n");
	if (body && (j = json_loads(body + 4, 0, NULL))) {
		rss = (uint64_t)json_integer_value(json_object_get(j, "rss_bytes"));
		json_decref(j);
	}
	return rss;
}

static int ws_open(const char *host, int port)
{
	char req[512], reply[1024];
	int fd = tcp_connect(host, port), rcvbuf = 4096;

	if (fd < 0)
		return -1;
	setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof(rcvbuf));
	int n = snprintf(req, sizeof(req),
			 "GET / HTTP/1.1\r\nHost: %s:%d\r\nUpgrade: websocket\r\n"
			 "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
			 "Sec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: ureg-agents\r\n\r\n",
			 host, port);
	if (send(fd, req, (size_t)n, MSG_NOSIGNAL) != n ||
	    !read_some(fd, reply, sizeof(reply), "\r\n\r\n") || strncmp(reply, "HTTP/1.1 101", 12)) {
		close(fd);
		return -1;
	}
	return fd;
}

/* --------------------------------------------- the non-reading clients */

struct stalled {
	const char *host;
	int port;
	unsigned n;
	int stop;                  /* atomic */
	pthread_t th;
	uint64_t rss_max, sent;
	unsigned opened, closed_by_server;
};

static void *stalled_main(void *arg)
{
	struct stalled *st = arg;
	int *fds = calloc(st->n, sizeof(int));
	size_t *off = calloc(st->n, sizeof(size_t));
	char *req = malloc(STALLED_INPUT + 64);
	unsigned char *frame = malloc(STALLED_INPUT + 96);
	size_t flen;
	uint64_t next_rss = 0;

	if (!fds || !off || !req || !frame)
		goto out;
	int h = snprintf(req, 64, "{\"run\":\"echo\",\"input\":\"");
	memset(req + h, 's', STALLED_INPUT);
	strcpy(req + h + STALLED_INPUT, "\"}");
	size_t len = strlen(req);
	/* one masked text frame, 64-bit length form not needed (< 64 KiB) */
	frame[0] = 0x81;
	frame[1] = 0x80 | 126;
	frame[2] = (unsigned char)(len >> 8);
	frame[3] = (unsigned char)len;
	memset(frame + 4, 0, 4); /* an all-zero mask: the payload as is */
	memcpy(frame + 8, req, len);
	flen = 8 + len;
	for (unsigned i = 0; i < st->n; i++)
		if ((fds[i] = ws_open(st->host, st->port)) >= 0)
			st->opened++;
	while (!__atomic_load_n(&st->stop, __ATOMIC_ACQUIRE)) {
		bool any = false;
		for (unsigned i = 0; i < st->n; i++) {
			if (fds[i] < 0)
				continue;
			ssize_t w = send(fds[i], frame + off[i], flen - off[i], MSG_DONTWAIT | MSG_NOSIGNAL);
			if (w > 0) {
				any = true;
				st->sent += (uint64_t)w;
				off[i] = (off[i] + (size_t)w) % flen;
			} else if (w < 0 && errno != EAGAIN) {
				close(fds[i]); /* the server closed it */
				fds[i] = -1;
				st->closed_by_server++;
			}
		}
		if (now_ms() >= next_rss) {
			uint64_t rss = server_rss(st->host, st->port);
			if (rss > st->rss_max)
				st->rss_max = rss;
			next_rss = now_ms() + 200;
		}
		if (!any)
			poll(NULL, 0, 20); /* every socket full: do not spin */
	}
	for (unsigned i = 0; i < st->n; i++)
		if (fds[i] >= 0)
			close(fds[i]);
out:
	free(frame);
	free(req);
	free(off);
	free(fds);
	return NULL;
}

/* ------------------------------------------------------------- summary */

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return x < y ? -1 : x > y;
}

/* "median [min-max]" of @v (sorted in place) */
static const char *spread(double *v, int n, const char *fmt, char *buf, size_t cap)
{
	char a[32], b[32], c[32];
	qsort(v, (size_t)n, sizeof(*v), cmp_double);
	snprintf(a, sizeof(a), fmt, v[n / 2]);
	snprintf(b, sizeof(b), fmt, v[0]);
	snprintf(c, sizeof(c), fmt, v[n - 1]);
	snprintf(buf, cap, "%s [%s-%s]", a, b, c);
	return buf;
}

struct series {
	double eps[16], p50[16], p99[16], rss[16];
	int n;
	bool bad;
};

static void run_series(const struct agent_client_opts *o, unsigned stalled, int repeat,
		       struct series *s)
{
	memset(s, 0, sizeof(*s));
	for (int i = 0; i < repeat && i < 16; i++) {
		struct agent_client_result r;
		struct stalled st = { .host = o->host, .port = o->port, .n = stalled };
		uint64_t rss0 = server_rss(o->host, o->port);

		if (stalled && pthread_create(&st.th, NULL, stalled_main, &st)) {
			fprintf(stderr, "ureg-agent-load: no thread for the stalled clients\n");
			exit(1);
		}
		int rc = agent_client_run(o, &r);
		if (stalled) {
			__atomic_store_n(&st.stop, 1, __ATOMIC_RELEASE);
			pthread_join(st.th, NULL);
		}
		if (rc) {
			fprintf(stderr, "ureg-agent-load: cannot start the client\n");
			exit(1);
		}
		uint64_t rss1 = stalled ? st.rss_max : server_rss(o->host, o->port);
		s->eps[i] = r.events_per_s;
		s->p50[i] = r.p50_us / 1000.0;
		s->p99[i] = r.p99_us / 1000.0;
		s->rss[i] = rss0 && rss1 > rss0 ? (double)(rss1 - rss0) / 1e6 : 0;
		s->n++;
		printf("  run %d: %u conns (failed %u)%s, %llu events in %.2f s: %.0f events/s, "
		       "p50 %.2f ms, p99 %.2f ms, violations %llu",
		       i + 1, r.connected, r.failed, r.timed_out ? " TIMED OUT" : "",
		       (unsigned long long)r.events, r.seconds, r.events_per_s,
		       s->p50[i], s->p99[i], (unsigned long long)r.violations);
		if (stalled)
			printf("; %u stalled clients (%u opened, %u closed by the server, %.0f MB sent), "
			       "server RSS +%.1f MB", stalled, st.opened, st.closed_by_server,
			       (double)st.sent / 1e6, s->rss[i]);
		printf("\n");
		if (r.violations)
			printf("  first violation: %s\n", r.first_violation);
		fflush(stdout);
		if (r.violations || r.failed || r.timed_out)
			s->bad = true;
	}
}

static void print_series(const char *label, struct series *s, bool rss)
{
	char a[128], b[128], c[128], d[128];
	printf("%s: events/s %s, p50 %s ms, p99 %s ms", label,
	       spread(s->eps, s->n, "%.0f", a, sizeof(a)),
	       spread(s->p50, s->n, "%.2f", b, sizeof(b)),
	       spread(s->p99, s->n, "%.2f", c, sizeof(c)));
	if (rss)
		printf(", server RSS growth %s MB", spread(s->rss, s->n, "%.1f", d, sizeof(d)));
	printf("  (median [min-max] of %d runs)\n", s->n);
}

int main(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "host", required_argument, NULL, 'H' },
		{ "port", required_argument, NULL, 'p' },
		{ "conns", required_argument, NULL, 'c' },
		{ "seconds", required_argument, NULL, 's' },
		{ "runs", required_argument, NULL, 'r' },
		{ "pipeline", required_argument, NULL, 'P' },
		{ "repeat", required_argument, NULL, 'R' },
		{ "stalled", required_argument, NULL, 'S' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	struct agent_client_opts o = { .host = "127.0.0.1", .port = 8080, .conns = 200,
				       .duration_ms = 10000, .pipeline = 1 };
	int c, repeat = 3;
	unsigned stalled = 0;

	while ((c = getopt_long(argc, argv, "H:p:c:s:r:P:R:S:h", longopts, NULL)) != -1) {
		switch (c) {
		case 'H': o.host = optarg; break;
		case 'p': o.port = atoi(optarg); break;
		case 'c': o.conns = (unsigned)atoi(optarg); break;
		case 's': o.duration_ms = (unsigned)(atof(optarg) * 1000); break;
		case 'r': o.runs = (unsigned)atoi(optarg); break;
		case 'P': o.pipeline = (unsigned)atoi(optarg); break;
		case 'R': repeat = atoi(optarg); break;
		case 'S': stalled = (unsigned)atoi(optarg); break;
		default:
			fprintf(stderr, "usage: ureg-agent-load [--host A] [--port N] [--conns N] "
				"[--seconds S | --runs N] [--pipeline N] [--repeat N (1-16)] "
				"[--stalled N]\n");
			return c == 'h' ? 0 : 2;
		}
	}
	if (repeat < 1 || repeat > 16) {
		fprintf(stderr, "ureg-agent-load: --repeat takes 1 to 16\n");
		return 2;
	}
	o.timeout_ms = o.duration_ms + 60000;
	lws_set_log_level(LLL_ERR, NULL);
	print_machine();
	printf("%u connections, pipeline %u, %s %.1f s per run, %d runs\n", o.conns,
	       o.pipeline ? o.pipeline : 1, o.runs ? "runs" : "duration",
	       o.runs ? (double)o.runs : o.duration_ms / 1000.0, repeat);

	struct series base, with;
	run_series(&o, 0, repeat, &base);
	print_series(stalled ? "without stalled clients" : "result", &base, false);
	if (stalled) {
		run_series(&o, stalled, repeat, &with);
		char label[64];
		snprintf(label, sizeof(label), "with %u stalled clients", stalled);
		print_series(label, &with, true);
		printf("p99 with / without stalled clients: %.2fx (medians)\n",
		       base.p99[base.n / 2] > 0 ? with.p99[with.n / 2] / base.p99[base.n / 2] : 0);
	}
	return base.bad || (stalled && with.bad) ? 1 : 0;
}
