/* SPDX-License-Identifier: MIT */
/*
 * The agent server as a library, so that the command (ureg-agent-server.c)
 * and the isolation test run the same code.  Not installed.
 *
 * One libwebsockets context, one service thread (every lws call except
 * lws_cancel_service happens there), N worker threads that run agents.
 * Each WebSocket connection is a session: one user context (ureg_ctx_new on
 * connect, destroyed once the connection is closed and its last run has
 * finished), one outgoing queue (wait-free multi-producer), one worker
 * (chosen by session number, so a session's runs execute in order).
 */
#ifndef UREG_AGENT_SERVER_H
#define UREG_AGENT_SERVER_H

#include <stddef.h>
#include <stdint.h>

#include <ureg/registries.h>

/*
 * The protocol.  A client sends text messages {"run":"<agent>","input":
 * "<text>"} of at most AGENT_SERVER_MAX_REQUEST bytes (fragments are
 * joined).  It receives, per run, the agent's events
 *   {"ev":"started|progress|completed|error","agent":A,"user":U,"seq":N,
 *    "t":NS,"data":{...}}                        (seq > 0, per agent)
 * and, for a request the server cannot run (not JSON, a missing or
 * non-string field, too large, binary, unknown or invalid agent name),
 * one protocol error that changed nothing:
 *   {"ev":"error","agent":A (when known),"user":U,"seq":0,"error":"why"}
 */
#define AGENT_SERVER_MAX_REQUEST 65536

struct agent_server;

struct agent_server_opts {
	const char *host;   /* listen address, default "127.0.0.1" */
	int port;           /* 0: the kernel picks a free port */
	unsigned workers;   /* agent threads, default 2 */
	int verbose;        /* log connects / closes to stderr */
};

struct agent_server_stats {
	uint64_t sessions_open;    /* live sessions (contexts not yet destroyed) */
	uint64_t sessions_total;   /* sessions ever opened */
	uint64_t runs;             /* agent runs finished */
	uint64_t events_queued;    /* events the bridge queued */
	uint64_t events_sent;      /* event frames written */
	uint64_t events_dropped;   /* events for a session already closed */
	uint64_t leaked_bytes;     /* context bytes still live after every
				    * agent of the session was released */
	uint64_t leaked_instances; /* instances still live at that point */
};

/**
 * agent_server_start - bind, register the agents, start the threads.
 *
 * Any thread.  Blocks until the listener is bound.  The server is valid
 * until agent_server_stop().  Returns 0 or a negative errno (-EADDRINUSE
 * when the port is taken, -ENOMEM, -EIO when lws fails).
 */
int agent_server_start(const struct agent_server_opts *o, struct agent_server **out);

/** agent_server_port - the port it listens on. Any thread, never blocks. */
int agent_server_port(const struct agent_server *s);

/**
 * agent_server_agents - the agent registry the server runs from ("echo"
 * and "fail" are registered at start).  An application or test may
 * register more factories (UREG_SCOPE_CONTEXT, agents embedding struct
 * ureg_agent) at any time; they are reachable by name at once.  Any
 * thread; valid until agent_server_stop().
 */
ureg_agent_reg_registry *agent_server_agents(struct agent_server *s);

/** agent_server_stats - copy the counters. Any thread, never blocks. */
void agent_server_stats(const struct agent_server *s, struct agent_server_stats *st);

/**
 * agent_server_wait_idle - wait until no session is open (every context
 * destroyed) or @timeout_ms passes.  Any thread but the service thread.
 * Blocks on the server's idle condition.  Returns 0 or -ETIMEDOUT.
 */
int agent_server_wait_idle(struct agent_server *s, int timeout_ms);

/**
 * agent_server_stop - close every connection, finish the runs, destroy the
 * contexts and registries, join the threads, free @s.  Not from a server
 * thread, not inside a read section.  NULL is a no-op.
 */
void agent_server_stop(struct agent_server *s);

/** agent_server_now_ns - CLOCK_MONOTONIC in ns, the clock of the "t" field. */
uint64_t agent_server_now_ns(void);

#endif
