/* SPDX-License-Identifier: MIT */
/*
 * ureg-agent-server - agents over WebSocket, one user context per
 * connection.  See agent_server.c for the threads and lifetimes and
 * agent_server.h for the limits and what a client past them sees.
 *
 *   ureg-agent-server [--host 127.0.0.1] [--port 8080 | --port 0] [--workers 2]
 *                     [--max-message 64K] [--max-runs 2] [--queue-soft 256K]
 *                     [--queue-hard 4M] [--stall-ms 30000] [--max-conns 10000]
 *                     [--ctx-quota 4M | --ctx-quota none] [--sock-buf 32K | none]
 *                     [--allow-origin http://a.example:8080,...] [--report-ms 1000]
 *                     [--etcd URL[,URL...] --prefix P] [--verbose] [--help] [--version]
 *
 * --etcd: the server follows the fleet's configuration <P>config.yaml in
 * etcd (<ureg/config_etcd.h>; demo types and providers of
 * tools/config/demo.c): it waits up to 10 s for the first version, then
 * applies every valid new one and keeps serving the last good one when a
 * bad one is put.  GET /stats and the page show "config": the generation
 * (= etcd revision) served and the source's counters.
 *
 * Sizes take a K, M or G suffix (powers of 1024).  Prints "listening on
 * http://HOST:PORT/" (PORT is the real one when --port 0 let the kernel
 * pick) and serves until SIGINT / SIGTERM.  GET /stats reports the limits,
 * the counters, the RSS and what each connection holds.  The open-files
 * limit is raised towards --max-conns (up to the hard limit; --verbose
 * says what it got).
 *
 * Exit status: 0 stopped by SIGINT/SIGTERM, 1 could not listen or start,
 * 2 bad usage.
 */
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <signal.h>
#include <sys/resource.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <ureg/config_etcd.h>
#include <ureg/ureg.h>
#include "agent_server.h"
#include "../config/demo.h"

static void usage(FILE *f)
{
	fprintf(f,
		"Usage: ureg-agent-server [OPTION]...\n"
		"Serve ureg's agents over WebSocket (page at /, counters at /stats).\n\n"
		"  -H, --host ADDR          IPv4 address to listen on (default 127.0.0.1)\n"
		"  -p, --port N             port, 0-65535; 0: any free port (default 8080)\n"
		"  -w, --workers N          agent threads, 1-256 (default 2)\n"
		"      --max-message SIZE   bytes of one client message (default 64K)\n"
		"      --max-runs N         runs in flight per connection (default 2)\n"
		"      --queue-soft SIZE    outgoing bytes: stop reading past this (default 256K)\n"
		"      --queue-hard SIZE    outgoing bytes: close past this (default 4M)\n"
		"      --stall-ms MS        close a connection over --queue-soft this long (default 30000)\n"
		"      --max-conns N        open WebSocket connections (default 10000)\n"
		"      --ctx-quota SIZE|none  live bytes per user context (default 4M)\n"
		"      --sock-buf SIZE|none SO_SNDBUF/SO_RCVBUF per WebSocket (default 32K; none: kernel)\n"
		"      --allow-origin LIST  origins that may open a WebSocket, comma-separated\n"
		"                           (default: this server's own host)\n"
		"      --report-ms MS       live report period for watching pages (default 1000)\n"
		"      --etcd URL[,URL...]  follow the configuration <P>config.yaml in etcd\n"
		"                           (demo types; waits up to 10 s for the first)\n"
		"      --prefix P           the etcd key prefix (with --etcd)\n"
		"  -v, --verbose            log connections and closes to stderr\n"
		"  -h, --help               this text, on stdout\n"
		"  -V, --version            the version (of the libureg loaded)\n\n"
		"SIZE: bytes, or with a K, M or G suffix (powers of 1024); see agent_server.h\n"
		"for the limits.  Exit status: 0 stopped by SIGINT/SIGTERM, 1 could not listen\n"
		"or start, 2 bad usage.\n");
}

/* "64K" -> 65536; false on anything else (0 included) */
static bool parse_size(const char *s, size_t *out)
{
	char *end;
	errno = 0;
	unsigned long long v = strtoull(s, &end, 10);
	unsigned shift = 0;

	if (errno || end == s || s[0] == '-')
		return false;
	switch (*end) {
	case 'K': case 'k': shift = 10; end++; break;
	case 'M': case 'm': shift = 20; end++; break;
	case 'G': case 'g': shift = 30; end++; break;
	default: break;
	}
	if (*end || v == 0 || v > (SIZE_MAX >> shift))
		return false;
	*out = (size_t)(v << shift);
	return true;
}

/* a whole number in [lo, hi] (a K/M/G suffix allowed) */
static bool parse_uint(const char *s, unsigned lo, unsigned hi, unsigned *out)
{
	size_t v;
	if (!parse_size(s, &v) || v < lo || v > hi)
		return false;
	*out = (unsigned)v;
	return true;
}

/* the port: 0 (any free port) to 65535, decimal only */
static bool parse_port(const char *s, int *out)
{
	char *end;
	errno = 0;
	unsigned long v = strtoul(s, &end, 10);
	if (errno || end == s || *end || s[0] == '-' || s[0] == '+' || v > 65535)
		return false;
	*out = (int)v;
	return true;
}

/* Raise the soft open-files limit towards one fd per connection plus
 * room for the listener, stdio and lws (up to the hard limit). */
static void raise_nofile(unsigned conns, int verbose)
{
	struct rlimit rl;
	rlim_t need = (rlim_t)conns + 64, was;

	if (getrlimit(RLIMIT_NOFILE, &rl))
		return;
	was = rl.rlim_cur;
	if (rl.rlim_cur < need) {
		rl.rlim_cur = rl.rlim_max == RLIM_INFINITY || rl.rlim_max >= need ? need : rl.rlim_max;
		if (setrlimit(RLIMIT_NOFILE, &rl))
			rl.rlim_cur = was;
	}
	if (verbose || rl.rlim_cur < need)
		fprintf(stderr, "ureg-agent-server: open files: soft limit %llu (was %llu, hard "
			"limit %llu) for --max-conns %u\n", (unsigned long long)rl.rlim_cur,
			(unsigned long long)was, (unsigned long long)rl.rlim_max, conns);
}

/* --etcd: a config with the demo types that follows etcd */
static int start_etcd(struct ureg_config_etcd_opts *eo, ureg_config **out)
{
	ureg_config *cfg;
	int rc;

	if ((rc = ureg_config_new(&cfg)))
		goto fail;
	if ((rc = demo_register(cfg)) || (rc = ureg_config_etcd_start(cfg, eo))) {
		ureg_config_destroy(cfg);
		goto fail;
	}
	if (ureg_config_etcd_wait(cfg, 1, 10000))
		fprintf(stderr, "ureg-agent-server: no configuration from %s yet; "
			"serving without one until it comes\n", eo->endpoints);
	*out = cfg;
	return 0;
fail:
	fprintf(stderr, "ureg-agent-server: %s\n", ureg_last_error());
	return rc;
}

int main(int argc, char **argv)
{
	enum { O_MSG = 256, O_RUNS, O_SOFT, O_HARD, O_STALL, O_CONNS, O_QUOTA, O_ORIGIN, O_REPORT, O_SOCKBUF, O_ETCD, O_PREFIX };
	static const struct option longopts[] = {
		{ "host", required_argument, NULL, 'H' },
		{ "port", required_argument, NULL, 'p' },
		{ "workers", required_argument, NULL, 'w' },
		{ "max-message", required_argument, NULL, O_MSG },
		{ "max-runs", required_argument, NULL, O_RUNS },
		{ "queue-soft", required_argument, NULL, O_SOFT },
		{ "queue-hard", required_argument, NULL, O_HARD },
		{ "stall-ms", required_argument, NULL, O_STALL },
		{ "max-conns", required_argument, NULL, O_CONNS },
		{ "ctx-quota", required_argument, NULL, O_QUOTA },
		{ "allow-origin", required_argument, NULL, O_ORIGIN },
		{ "report-ms", required_argument, NULL, O_REPORT },
		{ "sock-buf", required_argument, NULL, O_SOCKBUF },
		{ "etcd", required_argument, NULL, O_ETCD },
		{ "prefix", required_argument, NULL, O_PREFIX },
		{ "verbose", no_argument, NULL, 'v' },
		{ "help", no_argument, NULL, 'h' },
		{ "version", no_argument, NULL, 'V' },
		{ NULL, 0, NULL, 0 },
	};
	struct agent_server_opts o = { .host = "127.0.0.1", .port = 8080, .workers = 2 };
	struct ureg_config_etcd_opts eo = { 0 };
	struct agent_server *srv;
	struct agent_server_stats st;
	sigset_t set;
	int c, sig, rc;
	bool ok;

	int li = -1;
	while ((c = getopt_long(argc, argv, "H:p:w:vhV", longopts, &li)) != -1) {
		ok = true;
		switch (c) {
		case 'H': o.host = optarg; break;
		case 'p': ok = parse_port(optarg, &o.port); break;
		case 'w': ok = parse_uint(optarg, 1, 256, &o.workers); break;
		case O_MSG: ok = parse_size(optarg, &o.max_message); break;
		case O_RUNS: ok = parse_uint(optarg, 1, 1024, &o.max_runs); break;
		case O_SOFT: ok = parse_size(optarg, &o.queue_soft); break;
		case O_HARD: ok = parse_size(optarg, &o.queue_hard); break;
		case O_STALL: ok = parse_uint(optarg, 1, 86400000, &o.stall_ms); break;
		case O_CONNS: ok = parse_uint(optarg, 1, 1000000, &o.max_conns); break;
		case O_QUOTA:
			if (!strcmp(optarg, "none"))
				o.ctx_quota = SIZE_MAX;
			else
				ok = parse_size(optarg, &o.ctx_quota);
			break;
		case O_ORIGIN: o.allow_origin = optarg; break;
		case O_REPORT: ok = parse_uint(optarg, 10, 3600000, &o.report_ms); break;
		case O_SOCKBUF:
			if (!strcmp(optarg, "none"))
				o.sock_buf = SIZE_MAX;
			else
				ok = parse_size(optarg, &o.sock_buf) && o.sock_buf >= 4096 &&
				     o.sock_buf <= (64u << 20);
			break;
		case O_ETCD: eo.endpoints = optarg; break;
		case O_PREFIX: eo.prefix = optarg; break;
		case 'v': o.verbose = 1; break;
		case 'h': usage(stdout); return 0;
		case 'V': printf("ureg-agent-server (ureg) %s\n", ureg_version()); return 0;
		default:
			fprintf(stderr, "Try 'ureg-agent-server --help'.\n");
			return 2;
		}
		if (!ok) {
			fprintf(stderr, "ureg-agent-server: bad value for --%s: '%s' (see --help)\n",
				li >= 0 ? longopts[li].name : c == 'p' ? "port" : "workers", optarg);
			return 2;
		}
		li = -1;
	}
	if (optind < argc) {
		fprintf(stderr, "ureg-agent-server: unexpected argument '%s' (see --help)\n",
			argv[optind]);
		return 2;
	}
	if (!eo.endpoints != !eo.prefix) {
		fprintf(stderr, "ureg-agent-server: --etcd and --prefix go together\n");
		usage(stderr);
		return 2;
	}
	/* signals are taken by sigwait below, not by any server thread */
	sigemptyset(&set);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGTERM);
	pthread_sigmask(SIG_BLOCK, &set, NULL);
	signal(SIGPIPE, SIG_IGN);
	raise_nofile(o.max_conns ? o.max_conns : AGENT_SERVER_MAX_CONNS, o.verbose);

	if (eo.endpoints && (rc = start_etcd(&eo, &o.config)))
		return 1;
	if ((rc = agent_server_start(&o, &srv))) {
		fprintf(stderr, "ureg-agent-server: cannot listen on %s:%d: %s\n",
			o.host, o.port, ureg_strerror(rc));
		return 1;
	}
	printf("listening on http://%s:%d/\n", o.host, agent_server_port(srv));
	fflush(stdout);
	sigwait(&set, &sig);
	agent_server_stats(srv, &st);
	agent_server_stop(srv);
	ureg_config_destroy(o.config); /* stops the etcd source */
	fprintf(stderr, "ureg-agent-server: %llu sessions, %llu runs, %llu events sent, "
		"%llu leaked context bytes, %llu leaked instances\n",
		(unsigned long long)st.sessions_total, (unsigned long long)st.runs,
		(unsigned long long)st.events_sent, (unsigned long long)st.leaked_bytes,
		(unsigned long long)st.leaked_instances);
	fprintf(stderr, "ureg-agent-server: limits: %llu closed too slow, %llu closed stalled, "
		"%llu refused (full), %llu read pauses, largest queue %llu bytes, "
		"%llu frames dropped\n",
		(unsigned long long)st.closed_slow, (unsigned long long)st.closed_stalled,
		(unsigned long long)st.refused_conns, (unsigned long long)st.rx_pauses,
		(unsigned long long)st.queue_peak, (unsigned long long)st.frames_dropped_slow);
	return 0;
}
