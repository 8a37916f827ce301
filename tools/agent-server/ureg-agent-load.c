/* SPDX-License-Identifier: MIT */
/*
 * ureg-agent-load - open N WebSocket connections to ureg-agent-server, run
 * the echo agent on each (closed loop, --pipeline runs in flight per
 * connection) for --seconds, verify every event (see agent_client.h), and
 * report events/s and the emit-to-receive latency (p50, p99, max).
 *
 *   ureg-agent-load --port 8080 --conns 1000 --seconds 10 [--pipeline 1]
 *
 * Raise `ulimit -n` above the connection count (each end needs one fd).
 * Exit status 1 when an event was wrong or a connection failed.
 */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <libwebsockets.h>
#include "agent_client.h"

int main(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "host", required_argument, NULL, 'H' },
		{ "port", required_argument, NULL, 'p' },
		{ "conns", required_argument, NULL, 'c' },
		{ "seconds", required_argument, NULL, 's' },
		{ "runs", required_argument, NULL, 'r' },
		{ "pipeline", required_argument, NULL, 'P' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	struct agent_client_opts o = { .host = "127.0.0.1", .port = 8080, .conns = 200,
				       .duration_ms = 10000, .pipeline = 1 };
	struct agent_client_result r;
	int c;

	while ((c = getopt_long(argc, argv, "H:p:c:s:r:P:h", longopts, NULL)) != -1) {
		switch (c) {
		case 'H': o.host = optarg; break;
		case 'p': o.port = atoi(optarg); break;
		case 'c': o.conns = (unsigned)atoi(optarg); break;
		case 's': o.duration_ms = (unsigned)(atof(optarg) * 1000); break;
		case 'r': o.runs = (unsigned)atoi(optarg); break;
		case 'P': o.pipeline = (unsigned)atoi(optarg); break;
		default:
			fprintf(stderr, "usage: ureg-agent-load [--host A] [--port N] [--conns N] "
				"[--seconds S | --runs N] [--pipeline N]\n");
			return c == 'h' ? 0 : 2;
		}
	}
	o.timeout_ms = o.duration_ms + 60000;
	lws_set_log_level(LLL_ERR, NULL);
	if (agent_client_run(&o, &r)) {
		fprintf(stderr, "ureg-agent-load: cannot start the client\n");
		return 1;
	}
	printf("connections %u (connected %u, finished %u, failed %u), distinct users %u\n",
	       o.conns, r.connected, r.finished, r.failed, r.distinct_users);
	printf("runs %llu, events %llu in %.2f s: %.0f events/s\n",
	       (unsigned long long)r.runs_completed, (unsigned long long)r.events,
	       r.seconds, r.events_per_s);
	printf("event latency (server emit -> client receive): p50 %.0f us, p99 %.0f us, max %.0f us\n",
	       r.p50_us, r.p99_us, r.max_us);
	printf("violations %llu%s%s%s\n", (unsigned long long)r.violations,
	       r.violations ? " (first: " : "", r.first_violation, r.violations ? ")" : "");
	return (r.violations || r.failed || r.timed_out) ? 1 : 0;
}
