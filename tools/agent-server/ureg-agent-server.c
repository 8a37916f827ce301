/* SPDX-License-Identifier: MIT */
/*
 * ureg-agent-server - agents over WebSocket, one user context per
 * connection.  See agent_server.c for the threads and lifetimes and
 * agent_server.h for the limits and what a client past them sees.
 *
 *   ureg-agent-server [--host 127.0.0.1] [--port 8080 | --port 0] [--workers 2]
 *                     [--max-message 64K] [--max-runs 2] [--queue-soft 256K]
 *                     [--queue-hard 4M] [--stall-ms 30000] [--max-conns 10000]
 *                     [--ctx-quota 4M | --ctx-quota none]
 *                     [--allow-origin http://a.example:8080,...] [--report-ms 1000]
 *                     [--etcd URL[,URL...] --prefix P] [--verbose]
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
 * the counters, the RSS and what each connection holds.
 */
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <signal.h>
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
	fprintf(f, "usage: ureg-agent-server [--host ADDR] [--port N (0: any free port)] "
		"[--workers N]\n"
		"         [--max-message SIZE] [--max-runs N] [--queue-soft SIZE] "
		"[--queue-hard SIZE]\n"
		"         [--stall-ms MS] [--max-conns N] [--ctx-quota SIZE|none]\n"
		"         [--allow-origin ORIGIN[,ORIGIN...] (default: this server's own host)]\n"
		"         [--report-ms MS (live report period for watching pages)] [--verbose]\n"
		"         [--etcd URL[,URL...] --prefix P (follow <P>config.yaml in etcd)]\n"
		"  SIZE: bytes, or with a K, M or G suffix; see agent_server.h for the limits\n");
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

static bool parse_uint(const char *s, unsigned *out)
{
	size_t v;
	if (!parse_size(s, &v) || v > UINT_MAX)
		return false;
	*out = (unsigned)v;
	return true;
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
	enum { O_MSG = 256, O_RUNS, O_SOFT, O_HARD, O_STALL, O_CONNS, O_QUOTA, O_ORIGIN, O_REPORT, O_ETCD, O_PREFIX };
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
		{ "etcd", required_argument, NULL, O_ETCD },
		{ "prefix", required_argument, NULL, O_PREFIX },
		{ "verbose", no_argument, NULL, 'v' },
		{ "help", no_argument, NULL, 'h' },
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
	while ((c = getopt_long(argc, argv, "H:p:w:vh", longopts, &li)) != -1) {
		ok = true;
		switch (c) {
		case 'H': o.host = optarg; break;
		case 'p': o.port = atoi(optarg); break;
		case 'w': ok = parse_uint(optarg, &o.workers); break;
		case O_MSG: ok = parse_size(optarg, &o.max_message); break;
		case O_RUNS: ok = parse_uint(optarg, &o.max_runs); break;
		case O_SOFT: ok = parse_size(optarg, &o.queue_soft); break;
		case O_HARD: ok = parse_size(optarg, &o.queue_hard); break;
		case O_STALL: ok = parse_uint(optarg, &o.stall_ms); break;
		case O_CONNS: ok = parse_uint(optarg, &o.max_conns); break;
		case O_QUOTA:
			if (!strcmp(optarg, "none"))
				o.ctx_quota = SIZE_MAX;
			else
				ok = parse_size(optarg, &o.ctx_quota);
			break;
		case O_ORIGIN: o.allow_origin = optarg; break;
		case O_REPORT: ok = parse_uint(optarg, &o.report_ms); break;
		case O_ETCD: eo.endpoints = optarg; break;
		case O_PREFIX: eo.prefix = optarg; break;
		case 'v': o.verbose = 1; break;
		case 'h': usage(stdout); return 0;
		default: usage(stderr); return 2;
		}
		if (!ok) {
			fprintf(stderr, "ureg-agent-server: bad value for --%s: '%s'\n",
				li >= 0 ? longopts[li].name : "workers", optarg);
			usage(stderr);
			return 2;
		}
		li = -1;
	}
	if (optind < argc) {
		fprintf(stderr, "ureg-agent-server: unexpected argument '%s'\n", argv[optind]);
		usage(stderr);
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
