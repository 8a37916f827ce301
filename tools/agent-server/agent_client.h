/* SPDX-License-Identifier: MIT */
/*
 * A many-connection WebSocket client of the agent server (libwebsockets
 * client API, one thread).  Shared by ureg-agent-load and the isolation
 * test: every connection sends runs whose input embeds its own id and a
 * random nonce ("c17:9f3a...:r2") and checks every event it receives:
 * same server user every time, sequence strictly increasing, the input of
 * the run it expects (so an event of another user cannot pass), and the
 * order started, progress 1..3, completed of each run.
 */
#ifndef UREG_AGENT_CLIENT_H
#define UREG_AGENT_CLIENT_H

#include <stdbool.h>
#include <stdint.h>

struct agent_client_opts {
	const char *host;        /* default 127.0.0.1 */
	int port;
	unsigned conns;          /* connections opened at once */
	unsigned runs;           /* runs per connection; 0: until @duration_ms */
	unsigned duration_ms;    /* with runs == 0: send for this long */
	unsigned pipeline;       /* runs in flight per connection (default 1) */
	unsigned drop_every;     /* every Nth connection closes mid-run (0: none) */
	unsigned timeout_ms;     /* fail everything still open after this */
};

struct agent_client_result {
	unsigned connected, finished, dropped, failed;
	unsigned distinct_users;  /* distinct server user ids seen */
	uint64_t events, runs_completed, violations;
	char first_violation[256];
	bool timed_out;
	double seconds;           /* first send to last event */
	double events_per_s;
	double p50_us, p99_us, max_us; /* server emit -> client receive */
};

/**
 * agent_client_run - connect, run, verify, close.  Blocks the calling
 * thread (it runs its own lws context) until every connection is closed or
 * @o->timeout_ms passed.  Returns 0 when it could run (check @r), or a
 * negative errno when it could not start.
 */
int agent_client_run(const struct agent_client_opts *o, struct agent_client_result *r);

#endif
