/* SPDX-License-Identifier: MIT */
/*
 * The agent server as a library, so that the command (ureg-agent-server.c)
 * and the isolation test run the same code.  Not installed.
 *
 * One libwebsockets context, one service thread (every lws call except
 * lws_cancel_service happens there), N worker threads that run agents,
 * and a front door (http_front.h) that owns the listening socket, answers
 * 414/431 for oversized requests itself and hands every other connection
 * to the service thread.
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
 * "<text>"} of at most opts.max_message bytes (fragments are joined).  It
 * receives, per run, the agent's events
 *   {"ev":"started|progress|completed|error","agent":A,"user":U,"seq":N,
 *    "t":NS,"data":{...}}                        (seq > 0, per agent)
 * and, when the request carried "id":N (an integer, 0 to 2^53-1), every
 * event of that run and its protocol error carry "id":N too, so a client
 * can tell its runs apart (events of one run always come in order:
 * started, progress..., then completed or error).
 * A client that sends {"watch":true} also receives, every report_ms until
 * {"watch":false}, the live report of the process: every registry (type
 * chain, generation, entries) and the user contexts with their memory,
 * its own included:
 *   {"ev":"report","user":U,"seq":0,"t":NS,"self":{...}|null,"data":{...}}
 * (the shape is documented in session.c, "the live report").
 * and, for a request the server cannot run (not JSON, valid JSON of the
 * wrong shape, a missing or non-string field, too large, binary, unknown or
 * invalid agent name), one protocol error that changed nothing:
 *   {"ev":"error","agent":A (when known),"user":U,"seq":0,"error":"why"}
 *
 * Limits (struct agent_server_opts; 0 picks the default), and what a
 * client that breaks them sees:
 *  - max_message: a longer message is dropped as it streams in and
 *    answered with one protocol error; the connection stays usable.
 *  - max_runs: runs in flight per connection (= per user).  With that many
 *    runs accepted and not finished the server holds the next request and
 *    stops reading the connection until a run finishes: nothing is
 *    refused, a pipelining client just waits (TCP backpressure).
 *  - queue_soft / queue_hard: bytes of outgoing frames queued for one
 *    connection (allocation sizes, so the real memory).  Past queue_soft the
 *    server stops reading the connection's requests, and starts none it
 *    already holds, until the queue falls to half of it, so a client that
 *    does not read can only add the output of the runs already in flight; a connection that stays over queue_soft
 *    for stall_ms is closed with 1008 "client stalled ...".  queue_hard is
 *    the backstop for agents whose output has no bound: an event that would
 *    take the queue past it is dropped, the queue freed and the connection
 *    closed with 1008 "client too slow ...".  A client that reads is never
 *    closed while queue_hard >= queue_soft + max_runs * (largest output of
 *    one run): echo's largest is about 6 * max_message, 390 KB by default.
 *  - max_conns: one more WebSocket is accepted and closed at once with
 *    1013 "server full ...".
 *  - sock_buf: the kernel's send and receive buffers of a WebSocket
 *    (SO_SNDBUF/SO_RCVBUF, 32 KiB, which Linux doubles): what a client
 *    that does not read can make the server push into the kernel before
 *    the queue caps act, and what it can pin there.
 *  - ctx_quota: live bytes of one user context (agents allocating past it
 *    get -EDQUOT, reported as the run's error).
 * So the memory one connection can hold is bounded by about
 *   min(queue_hard, queue_soft + max_runs * largest run output)
 *   + max_message (request being joined)
 *   + (max_runs + 1) * (max_message + 64) (accepted and held requests)
 *   + ctx_quota + one frame inside lws (a partly written frame) + 4 KiB rx,
 *   and in the kernel about 2 * sock_buf each way;
 * agent_server_stats and GET /stats report what it holds.
 */
#define AGENT_SERVER_MAX_REQUEST 65536
#define AGENT_SERVER_MAX_RUNS 2
#define AGENT_SERVER_QUEUE_SOFT (256u << 10)
#define AGENT_SERVER_QUEUE_HARD (4u << 20)
#define AGENT_SERVER_STALL_MS 30000
#define AGENT_SERVER_MAX_CONNS 10000
#define AGENT_SERVER_CTX_QUOTA (4u << 20)
#define AGENT_SERVER_REPORT_MS 1000
#define AGENT_SERVER_SOCK_BUF (32u << 10)

/* WebSocket close codes the server sends, with a reason text */
#define AGENT_SERVER_CLOSE_SLOW 1008   /* policy: queue over its caps */
#define AGENT_SERVER_CLOSE_FULL 1013   /* try again later: max_conns */
#define AGENT_SERVER_CLOSE_GOING_AWAY 1001 /* the server stops */
#define AGENT_SERVER_CLOSE_PROTOCOL 1002 /* an unmasked client frame */

struct agent_server;

struct agent_server_opts {
	const char *host;   /* listen address, default "127.0.0.1" */
	int port;           /* 0: the kernel picks a free port */
	unsigned workers;   /* agent threads, default 2 */
	int verbose;        /* log connects / closes to stderr */
	/* limits, 0: the AGENT_SERVER_* default above */
	size_t max_message; /* bytes of one client message */
	unsigned max_runs;  /* runs in flight per connection */
	size_t queue_soft;  /* outgoing bytes: stop reading past this */
	size_t queue_hard;  /* outgoing bytes: close past this */
	unsigned stall_ms;  /* close a connection over queue_soft this long */
	unsigned max_conns; /* open WebSocket connections */
	size_t ctx_quota;   /* live bytes per user context; SIZE_MAX: none */
	/* SO_SNDBUF and SO_RCVBUF of each WebSocket (the kernel doubles it);
	 * SIZE_MAX: leave the kernel's autotuning (up to tcp_wmem/tcp_rmem) */
	size_t sock_buf;
	/* origins a browser page may open a WebSocket from, comma-separated,
	 * exact ("http://a.example:8080"); NULL: the server's own host (the
	 * Origin's host[:port] is the request's Host).  A request without
	 * Origin (not a browser) is always allowed; any other gets 403. */
	const char *allow_origin;
	unsigned report_ms; /* live report period (watching sessions), default 1 s */
	/* a config that follows etcd (ureg_config_etcd_start), or NULL: GET
	 * /stats and the live report then carry "config": the etcd revision
	 * (= generation of its entries) served and the source's counters */
	struct ureg_config *config;
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
	/* limits at work */
	uint64_t frames_dropped_slow; /* frames dropped: queue at its hard cap
				       * or connection closing */
	uint64_t closed_slow;      /* connections closed over queue_hard */
	uint64_t closed_stalled;   /* connections closed after stall_ms */
	uint64_t refused_conns;    /* connections refused over max_conns */
	uint64_t rx_pauses;        /* times a connection stopped being read
				    * (queue over soft cap, or max_runs) */
	uint64_t queue_peak;       /* largest outgoing queue one closed
				    * connection reached (bytes) */
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

/*
 * How long agent_server_stop() lets clients take their 1001 close frames.
 * A client whose socket is full (it does not read) cannot take one: past
 * this its connection is cut without a close frame.
 */
#define AGENT_SERVER_SHUTDOWN_GRACE_MS 3000

/**
 * agent_server_stop - close every connection, finish the runs, destroy the
 * contexts and registries, join the threads, free @s.  Not from a server
 * thread, not inside a read section.  Blocks until the runs in flight end
 * and then at most AGENT_SERVER_SHUTDOWN_GRACE_MS for the close frames.
 * NULL is a no-op.
 */
void agent_server_stop(struct agent_server *s);

/** agent_server_now_ns - CLOCK_MONOTONIC in ns, the clock of the "t" field. */
uint64_t agent_server_now_ns(void);

#endif
