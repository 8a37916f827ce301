/* SPDX-License-Identifier: MIT */
/*
 * The agent server's private header: the structures and the functions
 * shared by its files (the design - threads, lifetimes - is described at
 * the top of agent_server.c):
 *
 *  - agents.c       the demo agents (echo, fail);
 *  - session.c      sessions, the bridge, the live report, workers;
 *  - http.c         the lws service thread's sessions, HTTP, the Origin check;
 *  - rx_guard.c     recv() as lws calls it: unmasked frames, and the
 *                   header limit of later requests on a kept-alive
 *                   connection (what lws 4.1.6 does not check);
 *  - agent_server.c WebSocket, and the lifecycle (agent_server.h).
 */
#ifndef UREG_AGENT_SERVER_INT_H
#define UREG_AGENT_SERVER_INT_H

#define _LGPL_SOURCE
#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <jansson.h>
#include <libwebsockets.h>
#include <urcu/wfcqueue.h>

#include <ureg/config.h>
#include <ureg/config_etcd.h>
#include <ureg/events.h>
#include <ureg/registries.h>

#include "agent_server.h"
#include "http_front.h"
#include "rx_guard.h"

#define ECHO_STEPS 3
#define PROTOCOL_NAME "ureg-agents"

/* ------------------------------------------------------------ structures */

struct out_msg {
	struct cds_wfcq_node node;
	size_t len;
	size_t cost;         /* bytes allocated, counted against the caps */
	unsigned char buf[]; /* LWS_PRE bytes of room, then the frame */
};

struct session {
	struct agent_server *srv;
	struct lws *wsi;                 /* service thread only; NULL once closed */
	ureg_ctx *ctx;
	char id[32];                     /* context name = sessions-registry key */
	unsigned worker;
	struct cds_wfcq_head qh;         /* outgoing frames: many producers, */
	struct cds_wfcq_tail qt;         /* the service thread consumes */
	int wake;                        /* 1: a wake-up for it is pending */
	/* backpressure: `queued` (bytes of the frames in the queue) is added
	 * to by producers and subtracted from by the service thread;
	 * `dropping` is set once the hard cap is hit or the connection is
	 * closing, after which producers drop frames (and count them in
	 * `dropped`) instead of queueing */
	size_t queued, queued_peak;
	int dropping;
	uint64_t dropped;
	long inflight;                   /* runs accepted, not finished */
	int held_waiting;                /* 1: a request is held for a run slot */
	long users;                      /* connection + in-flight runs */
	long refs;                       /* registry entry + users side */
	/* agents this session obtained (malloc, no cap): written by its
	 * worker only, read at teardown after `users` reached zero (acq_rel
	 * on users orders it) */
	struct ureg_agent **agents;
	size_t nagents, cap_agents;
	/* the request being received (a message may come in several
	 * fragments and lws callbacks): service thread only */
	char *rx;
	size_t rx_len, rx_cap;
	bool rx_in_msg;                  /* inside a message */
	bool rx_refused;                 /* this message is refused (too large) */
	bool rx_binary;                  /* this message is binary */
	/* flow control, service thread only: reading stops while the queue
	 * is over the soft cap (RX_BACKLOG) or a request waits for a run slot
	 * (RX_RUNS, the request in `held`) */
	unsigned rx_paused;              /* RX_BACKLOG | RX_RUNS */
	uint64_t backlog_since;          /* ns: over the soft cap since */
	struct job *held;
	int watch;                       /* 1: gets the live report; written by
					  * the service thread, read (atomic)
					  * by the reporter */
	bool unmasked;                   /* sent an unmasked frame (rx_guard.c):
					  * closing with 1002; service thread */
	int close_code;                  /* != 0: closing with this code */
	char close_why[100];
	struct session *prev, *next;     /* open list, service thread only */
};

struct job {
	struct job *next;
	struct session *s;
	char *key;
	char *input;
	long long id;                    /* the client's run id, -1: none */
};

struct worker {
	pthread_t th;
	pthread_mutex_t lock;
	pthread_cond_t cond;
	struct job *head, *tail;
	bool stop;
	struct agent_server *srv;
	/* written by this worker only (relaxed atomics), summed by stats */
	uint64_t runs, queued, dropped;
	/* the job this worker is running (this worker only): its events carry
	 * the job's id */
	const struct job *running;
};

#define RX_BACKLOG 1u
#define RX_RUNS 2u

struct agent_server {
	struct lws_context *lws;
	int port;
	int verbose;
	/* limits (opts with the defaults filled in), read-only once started */
	size_t max_message, queue_soft, queue_hard, ctx_quota;
	size_t sock_buf;                 /* SO_SNDBUF/SO_RCVBUF; 0: the kernel's */
	char *allow_origin;              /* comma-separated; NULL: same host */
	unsigned max_runs, stall_ms, max_conns;
	/* the front door (http_front.h) and the connections it passed on,
	 * which the service thread adopts into lws */
	struct http_front *front;
	struct lws_vhost *vhost;
	pthread_mutex_t adopt_lock;
	int *adopt_fds;                  /* under adopt_lock */
	size_t nadopt, capadopt;
	pthread_t service;
	int stop;                        /* atomic */
	struct worker *workers;
	unsigned nworkers;
	ureg_agent_reg_registry *agents;
	ureg_registry *sessions;
	struct ureg_bridge bridge;
	/* service thread only */
	struct session *open;
	unsigned nopen;
	uint64_t next_num;
	uint64_t sent;                   /* read relaxed by stats */
	uint64_t dropped_closed;
	/* sessions whose context still lives, and the idle condition */
	pthread_mutex_t idle_lock;
	pthread_cond_t idle_cond;
	uint64_t sessions_open, sessions_total, leaked_bytes, leaked_instances;
	/* limits at work: written by the service thread (relaxed), except
	 * queue_peak and dropped_slow, folded in under idle_lock at teardown */
	uint64_t closed_slow, closed_stalled, refused_conns, rx_pauses;
	uint64_t closed_unmasked;
	uint64_t queue_peak, dropped_slow;
	/* the live report (report.c-style JSON of ureg_report, reshaped):
	 * one thread builds it every report_ms while a session watches */
	unsigned report_ms;
	unsigned watchers;               /* sessions watching (atomic) */
	pthread_t reporter;
	bool reporter_started;
	pthread_mutex_t report_lock;
	pthread_cond_t report_cond;
	bool report_stop, report_now;    /* under report_lock */
	uint64_t reports;                /* reports built (atomic) */
	ureg_config *config;             /* followed through etcd, or NULL */
};

/* What lws keeps per connection for us: the session of a WebSocket, or the
 * body of an HTTP response being written in pieces. */
struct conn {
	struct session *s;
	/* HTTP */
	char *body;               /* malloc'd (NULL: the static page) */
	const char *out;          /* what is written: body or the page */
	size_t out_len, out_off;
	char uri[64];             /* what was asked (longer ones get 404/414) */
	unsigned status;          /* != 0: answer this error */
	const char *why;
	size_t body_seen;         /* bytes of a request body read and dropped */
	bool head, body_wait, close_after;
};

/* HTTP limits.  The front door (http_front.c) answers 414 and 431 for the
 * first request of every connection, whatever its size; a later request on
 * a kept-alive connection gets its 431 from rx_guard.c (a header block over
 * HTTP_MAX_HEADERS: lws holds at most HTTP_HEADER_TABLE bytes of headers
 * and drops the connection past that, with no status) and its 414 from
 * srv_serve_http */
#define HTTP_CHUNK 16384
#define HTTP_MAX_URI 4096
#define HTTP_MAX_URI_TEXT "4096"
#define HTTP_MAX_HEADERS 16384
#define HTTP_MAX_HEADERS_TEXT "16384"
#define HTTP_HEADER_TABLE (2 * HTTP_MAX_HEADERS)
#define HTTP_MAX_BODY (1 << 20)
#define HTTP_MAX_BODY_TEXT "1048576"

/* --------------------------------------------------- agents.c */

extern __thread const json_t *srv_emitting_json;
extern __thread const char *srv_emitting_text;
extern const struct ureg_agent_ops srv_echo_ops;
extern const struct ureg_agent_ops srv_fail_ops;
int srv_agent_create(ureg_ctx *ctx, void *arg, void **out);

/* --------------------------------------------------- session.c */

extern const ureg_type srv_session_type;
void srv_job_free(struct job *j);
void srv_session_users_put(struct session *s);
void srv_session_push_error(struct session *s, const char *agent, long long id,
			    const char *fmt, ...) __attribute__((format(printf, 4, 5)));
void srv_bridge_emit(const struct ureg_agent_event *ev, void *arg);
void srv_report_wake(struct agent_server *srv);
json_t *srv_config_json(struct agent_server *srv);
void *srv_reporter_main(void *arg);
void *srv_worker_main(void *arg);
bool srv_worker_push(struct worker *w, struct job *j);

/* --------------------------------------------------- http.c */

void srv_rx_resume(struct session *s, unsigned why);
void srv_session_check_backlog(struct agent_server *srv, struct session *s);
void srv_session_release_held(struct agent_server *srv, struct session *s);
void srv_receive_piece(struct agent_server *srv, struct session *s, struct lws *wsi,
		       const void *in, size_t len);
struct session *srv_session_open(struct agent_server *srv, struct lws *wsi);
void srv_session_close(struct agent_server *srv, struct session *s);
int srv_http_answer(struct agent_server *srv, struct lws *wsi, struct conn *c);
int srv_serve_http(struct agent_server *srv, struct lws *wsi, struct conn *c, const char *uri);
int srv_http_writeable(struct lws *wsi, struct conn *c);
bool srv_origin_allowed(struct agent_server *srv, struct lws *wsi);

#endif
