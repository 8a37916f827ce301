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

/*
 * A scripted single connection, for protocol tests: step by step, send one
 * message (raw bytes, so malformed ones too; optionally in WebSocket
 * fragments), then wait until the total number of frames received reaches
 * the sum of the steps' @expect so far, call @on_step, go on.  After the
 * last step it closes normally.  Frames are kept whole (pieces joined), in
 * arrival order.
 */
struct agent_exchange_step {
	const char *send;        /* message to send; NULL: send nothing */
	size_t len;              /* bytes of @send; 0: strlen(@send) */
	size_t frag;             /* > 0: send in fragments of this size */
	bool binary;             /* a binary message instead of text */
	unsigned expect;         /* frames to receive after this send */
};

struct agent_exchange_result {
	char **frames;           /* NUL-terminated copies */
	size_t nframes;
	unsigned steps_done;     /* steps whose frames all arrived */
	bool connected, closed_by_peer, timed_out;
};

struct agent_exchange_opts {
	const char *host;        /* default 127.0.0.1 */
	int port;
	const struct agent_exchange_step *steps;
	unsigned nsteps;
	unsigned timeout_ms;     /* whole exchange; default 10000 */
	/* after step @i's frames arrived, on the calling thread (may be NULL) */
	void (*on_step)(unsigned i, const struct agent_exchange_result *r, void *arg);
	void *arg;
};

/**
 * agent_exchange_run - run the script.  Blocks the calling thread (its own
 * lws context) until the connection is closed or @o->timeout_ms passed.
 * Returns 0 when it could run (check @r: steps_done == nsteps and not
 * timed_out), or a negative errno.  Free @r with agent_exchange_free().
 */
int agent_exchange_run(const struct agent_exchange_opts *o, struct agent_exchange_result *r);
void agent_exchange_free(struct agent_exchange_result *r);

#endif
