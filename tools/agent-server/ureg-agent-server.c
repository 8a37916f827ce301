/* SPDX-License-Identifier: MIT */
/*
 * ureg-agent-server - agents over WebSocket, one user context per
 * connection.  See agent_server.c for the threads and lifetimes.
 *
 *   ureg-agent-server [--host 127.0.0.1] [--port 8080 | --port 0] [--workers 2] [--verbose]
 *
 * Prints "listening on http://HOST:PORT/" (PORT is the real one when
 * --port 0 let the kernel pick) and serves until SIGINT / SIGTERM.
 */
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <ureg/ureg.h>
#include "agent_server.h"

static void usage(FILE *f)
{
	fprintf(f, "usage: ureg-agent-server [--host ADDR] [--port N (0: any free port)] "
		"[--workers N] [--verbose]\n");
}

int main(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "host", required_argument, NULL, 'H' },
		{ "port", required_argument, NULL, 'p' },
		{ "workers", required_argument, NULL, 'w' },
		{ "verbose", no_argument, NULL, 'v' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	struct agent_server_opts o = { .host = "127.0.0.1", .port = 8080, .workers = 2 };
	struct agent_server *srv;
	struct agent_server_stats st;
	sigset_t set;
	int c, sig, rc;

	while ((c = getopt_long(argc, argv, "H:p:w:vh", longopts, NULL)) != -1) {
		switch (c) {
		case 'H': o.host = optarg; break;
		case 'p': o.port = atoi(optarg); break;
		case 'w': o.workers = (unsigned)atoi(optarg); break;
		case 'v': o.verbose = 1; break;
		case 'h': usage(stdout); return 0;
		default: usage(stderr); return 2;
		}
	}
	/* signals are taken by sigwait below, not by any server thread */
	sigemptyset(&set);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGTERM);
	pthread_sigmask(SIG_BLOCK, &set, NULL);
	signal(SIGPIPE, SIG_IGN);

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
	fprintf(stderr, "ureg-agent-server: %llu sessions, %llu runs, %llu events sent, "
		"%llu leaked context bytes, %llu leaked instances\n",
		(unsigned long long)st.sessions_total, (unsigned long long)st.runs,
		(unsigned long long)st.events_sent, (unsigned long long)st.leaked_bytes,
		(unsigned long long)st.leaked_instances);
	return 0;
}
