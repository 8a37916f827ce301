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
 * hostile client of issue 12); each repetition is then a pair, a run
 * without them and at once a run beside them (interleaved, so that a
 * change in the machine's background load hits both sides alike), and the
 * p99 ratio (medians, and per pair) and the server's RSS growth (GET
 * /stats, largest seen while they ran) are printed.
 *
 * The open-files limit is raised to what the connections need (up to the
 * hard limit; the line "open files:" says what it got).
 * Exit status: 0 every event checked out; 1 an event was wrong, or a normal
 * connection failed or timed out; 2 bad usage; 3 could not run (the
 * server does not answer, not enough file descriptors, no thread).
 */
#include <arpa/inet.h>
#include <errno.h>
#include <getopt.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <limits.h>
#include <sys/resource.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>
#include <libwebsockets.h>
#include <ureg/ureg.h>
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
	/* set once every stalled client has connected and sent (atomic) */
	int ready;
};

static void *stalled_main(void *arg)
{
	struct stalled *st = arg;
	int *fds = calloc(st->n, sizeof(int));
	size_t *off = calloc(st->n, sizeof(size_t));
	char *req = malloc(STALLED_INPUT + 64); /* the input, then the request */
	unsigned char *frame = malloc(STALLED_INPUT + 96);
	size_t flen;
	uint64_t next_rss = 0;

	if (!fds || !off || !req || !frame) {
		__atomic_store_n(&st->ready, 1, __ATOMIC_RELEASE);
		goto out;
	}
	/* {"run":"echo","input":"sss..."} by jansson */
	memset(req, 's', STALLED_INPUT);
	req[STALLED_INPUT] = 0;
	json_t *j = json_pack("{s:s,s:s}", "run", "echo", "input", req);
	char *txt = j ? json_dumps(j, JSON_COMPACT | JSON_PRESERVE_ORDER) : NULL;
	json_decref(j);
	if (!txt) {
		__atomic_store_n(&st->ready, 1, __ATOMIC_RELEASE);
		goto out;
	}
	size_t len = strlen(txt);
	memcpy(req, txt, len);
	free(txt);
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
	__atomic_store_n(&st->ready, 1, __ATOMIC_RELEASE);
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

static double median(const double *v, int n)
{
	double t[16];
	memcpy(t, v, (size_t)n * sizeof(*v));
	qsort(t, (size_t)n, sizeof(*t), cmp_double);
	return n % 2 ? t[n / 2] : (t[n / 2 - 1] + t[n / 2]) / 2;
}

/* "median [min-max]" of @v (not reordered) */
static const char *spread(const double *v, int n, const char *fmt, char *buf, size_t cap)
{
	char a[32], b[32], c[32];
	double lo = v[0], hi = v[0];
	for (int i = 1; i < n; i++) {
		lo = v[i] < lo ? v[i] : lo;
		hi = v[i] > hi ? v[i] : hi;
	}
	snprintf(a, sizeof(a), fmt, median(v, n));
	snprintf(b, sizeof(b), fmt, lo);
	snprintf(c, sizeof(c), fmt, hi);
	snprintf(buf, cap, "%s [%s-%s]", a, b, c);
	return buf;
}

#define MAX_REPEAT 16

struct series {
	double eps[MAX_REPEAT], p50[MAX_REPEAT], p99[MAX_REPEAT], rss[MAX_REPEAT];
	int n;
	bool bad;
};

/* One run of the normal clients, beside @stalled non-reading ones; its
 * figures go to @s.  Exits 3 when it cannot run at all. */
static void run_once(const struct agent_client_opts *o, unsigned stalled, int i,
		     struct series *s)
{
	struct agent_client_result r;
	struct stalled st = { .host = o->host, .port = o->port, .n = stalled };
	uint64_t rss0 = server_rss(o->host, o->port);

	if (!rss0) {
		fprintf(stderr, "ureg-agent-load: no answer from http://%s:%d/stats\n",
			o->host, o->port);
		exit(3);
	}
	if (stalled) {
		if (pthread_create(&st.th, NULL, stalled_main, &st)) {
			fprintf(stderr, "ureg-agent-load: no thread for the stalled clients\n");
			exit(3);
		}
		/* they are connected and sending before the measured run starts */
		while (!__atomic_load_n(&st.ready, __ATOMIC_ACQUIRE))
			poll(NULL, 0, 5);
	}
	int rc = agent_client_run(o, &r);
	if (stalled) {
		__atomic_store_n(&st.stop, 1, __ATOMIC_RELEASE);
		pthread_join(st.th, NULL);
	}
	if (rc) {
		fprintf(stderr, "ureg-agent-load: cannot start the client: %s\n", strerror(-rc));
		exit(3);
	}
	uint64_t rss1 = stalled ? st.rss_max : server_rss(o->host, o->port);
	s->eps[s->n] = r.events_per_s;
	s->p50[s->n] = r.p50_us / 1000.0;
	s->p99[s->n] = r.p99_us / 1000.0;
	s->rss[s->n] = rss1 > rss0 ? (double)(rss1 - rss0) / 1e6 : 0;
	printf("  run %d%s: %u conns (failed %u)%s, %llu events in %.2f s: %.0f events/s, "
	       "p50 %.2f ms, p99 %.2f ms, violations %llu",
	       i + 1, stalled ? " beside stalled" : "", r.connected, r.failed,
	       r.timed_out ? " TIMED OUT" : "",
	       (unsigned long long)r.events, r.seconds, r.events_per_s,
	       s->p50[s->n], s->p99[s->n], (unsigned long long)r.violations);
	if (stalled)
		printf("; %u stalled clients (%u opened, %u closed by the server, %.0f MB sent), "
		       "server RSS +%.1f MB", stalled, st.opened, st.closed_by_server,
		       (double)st.sent / 1e6, s->rss[s->n]);
	printf("\n");
	if (r.violations)
		printf("  first violation: %s\n", r.first_violation);
	fflush(stdout);
	if (r.violations || r.failed || r.timed_out || r.connected < o->conns)
		s->bad = true;
	s->n++;
}

static void print_series(const char *label, const struct series *s, bool rss)
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

/* ---------------------------------------------------------- arguments */

static void usage(FILE *f)
{
	fprintf(f,
		"Usage: ureg-agent-load [OPTION]...\n"
		"Load ureg-agent-server with echo runs and report events/s and latency.\n\n"
		"  -H, --host ADDR      server address (default 127.0.0.1)\n"
		"  -p, --port N         server port, 1-65535 (default 8080)\n"
		"  -c, --conns N        normal connections, 1-1000000 (default 200)\n"
		"  -s, --seconds S      seconds per run, 0.1-3600 (default 10)\n"
		"  -r, --runs N         runs per connection instead of --seconds\n"
		"  -P, --pipeline N     runs in flight per connection, 1-64 (default 1)\n"
		"  -R, --repeat N       runs (pairs with --stalled), 1-%d (default 3)\n"
		"  -S, --stalled N      also N clients that never read, 0-100000 (default 0)\n"
		"  -h, --help           this text, on stdout\n"
		"  -V, --version        the version (of the libureg loaded)\n\n"
		"Figures are median [min-max] of --repeat runs.  Exit status: 0 all events\n"
		"checked out, 1 a wrong event or a failed normal connection, 2 bad usage,\n"
		"3 could not run (no server, no file descriptors, no thread).\n", MAX_REPEAT);
}

/* a whole decimal number in [lo, hi]; false on anything else */
static bool parse_ulong(const char *s, unsigned long lo, unsigned long hi, unsigned long *out)
{
	char *end;
	errno = 0;
	unsigned long v = strtoul(s, &end, 10);
	if (errno || end == s || *end || s[0] == '-' || s[0] == '+' || v < lo || v > hi)
		return false;
	*out = v;
	return true;
}

static bool parse_seconds(const char *s, unsigned *ms)
{
	char *end;
	errno = 0;
	double v = strtod(s, &end);
	if (errno || end == s || *end || !(v >= 0.1 && v <= 3600))
		return false;
	*ms = (unsigned)(v * 1000 + 0.5);
	return true;
}

/* Raise the soft open-files limit to @need (up to the hard limit). */
static bool raise_nofile(rlim_t need)
{
	struct rlimit rl;
	rlim_t was;

	if (getrlimit(RLIMIT_NOFILE, &rl))
		return false;
	was = rl.rlim_cur;
	if (rl.rlim_cur < need) {
		rl.rlim_cur = rl.rlim_max == RLIM_INFINITY || rl.rlim_max >= need ? need : rl.rlim_max;
		if (setrlimit(RLIMIT_NOFILE, &rl))
			rl.rlim_cur = was;
	}
	printf("open files: need %llu, soft limit %llu (was %llu, hard limit %llu)\n",
	       (unsigned long long)need, (unsigned long long)rl.rlim_cur,
	       (unsigned long long)was, (unsigned long long)rl.rlim_max);
	return rl.rlim_cur >= need;
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
		{ "version", no_argument, NULL, 'V' },
		{ NULL, 0, NULL, 0 },
	};
	struct agent_client_opts o = { .host = "127.0.0.1", .port = 8080, .conns = 200,
				       .duration_ms = 10000, .pipeline = 1 };
	int c, repeat = 3, li = -1;
	unsigned stalled = 0;
	unsigned long v = 0;
	bool ok;

	while ((c = getopt_long(argc, argv, "H:p:c:s:r:P:R:S:hV", longopts, &li)) != -1) {
		switch (c) {
		case 'H': o.host = optarg; ok = true; break;
		case 'p': ok = parse_ulong(optarg, 1, 65535, &v); o.port = (int)v; break;
		case 'c': ok = parse_ulong(optarg, 1, 1000000, &v); o.conns = (unsigned)v; break;
		case 's': ok = parse_seconds(optarg, &o.duration_ms); break;
		case 'r': ok = parse_ulong(optarg, 1, 100000000, &v); o.runs = (unsigned)v; break;
		case 'P': ok = parse_ulong(optarg, 1, 64, &v); o.pipeline = (unsigned)v; break;
		case 'R': ok = parse_ulong(optarg, 1, MAX_REPEAT, &v); repeat = (int)v; break;
		case 'S': ok = parse_ulong(optarg, 0, 100000, &v); stalled = (unsigned)v; break;
		case 'h': usage(stdout); return 0;
		case 'V': printf("ureg-agent-load (ureg) %s\n", ureg_version()); return 0;
		default: usage(stderr); return 2;
		}
		if (!ok) {
			fprintf(stderr, "ureg-agent-load: bad value for --%s: '%s' (see --help)\n",
				li >= 0 ? longopts[li].name : (c == 'H' ? "host" : "option"), optarg);
			return 2;
		}
		li = -1;
	}
	if (optind < argc) {
		fprintf(stderr, "ureg-agent-load: unexpected argument '%s' (see --help)\n",
			argv[optind]);
		return 2;
	}
	o.timeout_ms = (o.runs ? 600000 : o.duration_ms) + 60000;
	lws_set_log_level(LLL_ERR, NULL);
	print_machine();
	/* one fd per connection, the stalled clients, /stats, stdio, lws */
	if (!raise_nofile((rlim_t)o.conns + stalled + 64)) {
		fprintf(stderr, "ureg-agent-load: not enough file descriptors for %u connections "
			"(raise the hard limit: ulimit -Hn)\n", o.conns + stalled);
		return 3;
	}
	printf("%u connections, pipeline %u, %s %.1f %s, %d %s%s\n", o.conns, o.pipeline,
	       o.runs ? "runs" : "duration", o.runs ? (double)o.runs : o.duration_ms / 1000.0,
	       o.runs ? "per connection" : "s per run", repeat,
	       stalled ? "pairs of runs (without, then beside " : "runs",
	       stalled ? "the stalled clients)" : "");
	fflush(stdout);

	struct series base = { .n = 0 }, with = { .n = 0 };
	for (int i = 0; i < repeat; i++) {
		run_once(&o, 0, i, &base);
		if (stalled)
			run_once(&o, stalled, i, &with);
	}
	print_series(stalled ? "without stalled clients" : "result", &base, false);
	if (stalled) {
		char label[64], a[128];
		double ratio[MAX_REPEAT];
		snprintf(label, sizeof(label), "beside %u stalled clients", stalled);
		print_series(label, &with, true);
		for (int i = 0; i < with.n; i++)
			ratio[i] = base.p99[i] > 0 ? with.p99[i] / base.p99[i] : 0;
		double mb = median(base.p99, base.n), mw = median(with.p99, with.n);
		printf("p99 beside / without stalled clients: %.2fx (ratio of the medians); "
		       "per pair %s\n", mb > 0 ? mw / mb : 0,
		       spread(ratio, with.n, "%.2fx", a, sizeof(a)));
	}
	return base.bad || (stalled && with.bad) ? 1 : 0;
}
