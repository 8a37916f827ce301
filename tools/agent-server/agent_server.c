/* SPDX-License-Identifier: MIT */
/*
 * The agent server: libwebsockets in front, ureg behind.
 *
 * The tricky part is who may touch what, on which thread:
 *
 *  - the lws service thread owns every struct lws and the list of open
 *    sessions; it is the only thread that calls lws functions, except
 *    lws_cancel_service(), the one lws call other threads may make;
 *  - workers run agents: a session's runs always go to the same worker
 *    (session number modulo workers), so they execute in request order and
 *    the per-agent sequence numbers reach the queue in order;
 *  - an agent's events reach the bridge (ureg_agent_emit), which finds the
 *    target session by its context's name in the "sessions" registry - an
 *    RCU lookup, no lock - and pushes a ready-to-send frame on that
 *    session's wait-free queue (liburcu wfcqueue), then wakes the service
 *    thread only if no wake-up is pending for that session (one atomic
 *    exchange on the session).  Nothing else is written: counters are per
 *    worker;
 *  - the service thread, woken, asks lws for a writeable callback on every
 *    session with a pending wake-up and writes what the socket takes, up
 *    to WRITE_BUDGET bytes per callback;
 *  - the front door's thread (http_front.c) accepts connections, answers
 *    oversized requests itself and passes the others to the service
 *    thread, which adopts them into lws.
 *
 * Session lifetime.  `users` counts the connection plus in-flight runs:
 * whoever drops it to zero (the service thread at close, or the worker
 * finishing the last run) releases the session's agents (every distinct
 * agent it obtained, however many: a growable list, room reserved before
 * the agent is obtained so that tracking cannot fail after it), checks
 * that the context holds no byte and no instance any more, and destroys
 * the context.  `refs` counts
 * the sessions-registry entry plus the users side: the memory goes when the
 * entry's grace period has passed (a bridge may still hold the borrowed
 * pointer until then) and the context is gone.
 */
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
#include "page.h"

#define ECHO_STEPS 3
#define PROTOCOL_NAME "ureg-agents"

uint64_t agent_server_now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

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

static __thread struct worker *this_worker;

/* ----------------------------------------------------------- the agents */

struct echo_agent {
	struct ureg_agent base;
	uint64_t runs;
	char *last_input; /* context memory: shows up in the accounting */
};

/*
 * The payload an agent of this server is emitting, as jansson built it
 * (this thread only).  ureg_agent_emit hands the bridge text - the
 * contract for any bridge - and our bridge would parse that text again to
 * nest it in the event; when the text is the one emit_json just made from
 * this value, the bridge takes the value instead.  Measured: with 60 KB
 * inputs the second parse was a third of a run's cost.
 */
static __thread const json_t *emitting_json;
static __thread const char *emitting_text;

/*
 * Emit @payload (a JSON value, consumed) as one event of @a.  Every frame
 * the server sends is built by jansson, never by printf: a string the
 * client sent (the input, an agent name) reaches the wire escaped.
 */
static int emit_json(struct ureg_agent *a, enum ureg_agent_event_kind kind, json_t *payload)
{
	char *txt;

	if (!payload) /* json_pack: the input is not UTF-8, or no memory */
		return -EINVAL;
	txt = json_dumps(payload, JSON_COMPACT | JSON_PRESERVE_ORDER);
	if (!txt) {
		json_decref(payload);
		return -ENOMEM;
	}
	emitting_json = payload;
	emitting_text = txt;
	ureg_agent_emit(a, kind, txt, strlen(txt));
	emitting_json = NULL;
	emitting_text = NULL;
	json_decref(payload);
	free(txt);
	return 0;
}

/* The input is one jansson string shared by the run's 5 payloads (checked
 * for UTF-8 and copied once). */
static int echo_run(struct ureg_agent *a, const char *input)
{
	struct echo_agent *e = (struct echo_agent *)a;
	json_t *in = json_string(input);
	int rc;

	if (!in)
		return -EINVAL; /* not UTF-8 (or no memory) */
	e->runs++;
	ureg_ctx_free(a->ctx, e->last_input);
	e->last_input = ureg_ctx_strdup(a->ctx, input); /* NULL on quota: fine */
	rc = emit_json(a, UREG_AGENT_STARTED, json_pack("{s:O,s:I}", "input", in,
							"run", (json_int_t)e->runs));
	for (int i = 1; i <= ECHO_STEPS && !rc; i++)
		rc = emit_json(a, UREG_AGENT_PROGRESS, json_pack("{s:O,s:i,s:i}", "input", in,
								 "step", i, "of", ECHO_STEPS));
	if (!rc)
		rc = emit_json(a, UREG_AGENT_COMPLETED, json_pack("{s:O,s:O}", "input", in,
								  "output", in));
	json_decref(in);
	return rc;
}

static int fail_run(struct ureg_agent *a, const char *input)
{
	int rc = emit_json(a, UREG_AGENT_STARTED, json_pack("{s:s}", "input", input));
	if (rc)
		return rc;
	return emit_json(a, UREG_AGENT_ERROR, json_pack("{s:s,s:s}", "input", input, "error",
							"this agent always fails"));
}

static void echo_destroy(struct ureg_agent *a, ureg_ctx *ctx)
{
	struct echo_agent *e = (struct echo_agent *)a;
	ureg_ctx_free(ctx, e->last_input);
	ureg_ctx_free(ctx, e);
}

static const struct ureg_agent_ops echo_ops = { .run = echo_run, .destroy = echo_destroy };
static const struct ureg_agent_ops fail_ops = { .run = fail_run, .destroy = echo_destroy };

static int agent_create(ureg_ctx *ctx, void *arg, void **out)
{
	struct echo_agent *e = ureg_ctx_calloc(ctx, 1, sizeof(*e));
	if (!e)
		return -errno;
	e->base.ops = arg;
	*out = e;
	return 0;
}

/* ------------------------------------------------------------- sessions */

static void session_free(struct session *s)
{
	struct cds_wfcq_node *n;

	while ((n = __cds_wfcq_dequeue_blocking(&s->qh, &s->qt)))
		free(caa_container_of(n, struct out_msg, node));
	cds_wfcq_destroy(&s->qh, &s->qt);
	free(s->rx);
	free(s);
}

static void job_free(struct job *j)
{
	if (j) {
		free(j->key);
		free(j->input);
		free(j);
	}
}

static void session_ref_put(struct session *s)
{
	if (__atomic_sub_fetch(&s->refs, 1, __ATOMIC_ACQ_REL) == 0)
		session_free(s);
}

/* item_destroy of the sessions registry: after the entry's grace period */
static void session_item_destroy(void *item)
{
	session_ref_put(item);
}

static const ureg_type session_type = {
	.name = "session", .parent = &ureg_base_type,
	.item_destroy = session_item_destroy,
};

/* Last user gone: no run in flight, connection closed.  Not in a read
 * section (ureg_ctx_destroy). */
static void session_users_put(struct session *s)
{
	struct agent_server *srv = s->srv;
	struct ureg_ctx_stats st;

	if (__atomic_sub_fetch(&s->users, 1, __ATOMIC_ACQ_REL) != 0)
		return;
	for (size_t i = 0; i < s->nagents; i++)
		ureg_instance_release(s->ctx, s->agents[i]);
	free(s->agents);
	s->agents = NULL;
	s->nagents = s->cap_agents = 0;
	ureg_ctx_stats(s->ctx, &st);
	ureg_ctx_destroy(s->ctx);
	s->ctx = NULL;
	pthread_mutex_lock(&srv->idle_lock);
	srv->leaked_bytes += st.live_bytes;
	srv->leaked_instances += st.instances;
	/* no producer is left (no run, no connection): plain reads */
	srv->dropped_slow += s->dropped;
	if (s->queued_peak > srv->queue_peak)
		srv->queue_peak = s->queued_peak;
	srv->sessions_open--;
	pthread_cond_broadcast(&srv->idle_cond);
	pthread_mutex_unlock(&srv->idle_lock);
	if (srv->verbose)
		fprintf(stderr, "ureg-agent-server: %s: context destroyed (%zu bytes, %zu instances left before destroy)\n",
			s->id, st.live_bytes, (size_t)st.instances);
	session_ref_put(s);
}

/* Ask the service thread to look at @s (any thread). */
static void session_wake(struct session *s)
{
	if (!__atomic_exchange_n(&s->wake, 1, __ATOMIC_ACQ_REL))
		lws_cancel_service(s->srv->lws);
}

/*
 * Queue a frame for @s, or drop it (any thread).  The frame's allocation
 * counts against the connection's caps: one that would take the queue past
 * queue_hard is dropped, and the first such drop marks the session
 * `dropping` and wakes the service thread, which closes the connection
 * (1008) and frees the queue.  Two atomics on the session, none shared
 * between sessions.
 */
static void session_push(struct session *s, struct out_msg *m)
{
	size_t q, peak;

	if (__atomic_load_n(&s->dropping, __ATOMIC_ACQUIRE))
		goto drop;
	q = __atomic_add_fetch(&s->queued, m->cost, __ATOMIC_RELAXED);
	if (q > s->srv->queue_hard) {
		__atomic_sub_fetch(&s->queued, m->cost, __ATOMIC_RELAXED);
		__atomic_store_n(&s->dropping, 1, __ATOMIC_RELEASE);
		session_wake(s);
		goto drop;
	}
	peak = __atomic_load_n(&s->queued_peak, __ATOMIC_RELAXED);
	while (q > peak && !__atomic_compare_exchange_n(&s->queued_peak, &peak, q, true,
							__ATOMIC_RELAXED, __ATOMIC_RELAXED))
		;
	cds_wfcq_node_init(&m->node);
	cds_wfcq_enqueue(&s->qh, &s->qt, &m->node);
	session_wake(s);
	return;
drop:
	__atomic_add_fetch(&s->dropped, 1, __ATOMIC_RELAXED);
	free(m);
}

static struct out_msg *msg_new(size_t cap)
{
	struct out_msg *m = malloc(sizeof(*m) + LWS_PRE + cap);
	if (m) {
		m->len = 0;
		m->cost = sizeof(*m) + LWS_PRE + cap;
	}
	return m;
}

/* jansson writes a frame straight into its out_msg (one pass, no copy):
 * json_dump_callback's sink, growing the message while it is not queued */
struct frame_sink {
	struct out_msg *m;
	size_t cap;
};

static int frame_sink_put(const char *buf, size_t n, void *arg)
{
	struct frame_sink *fs = arg;

	if (fs->m->len + n > fs->cap) {
		size_t cap = fs->cap * 2 > fs->m->len + n ? fs->cap * 2 : fs->m->len + n;
		struct out_msg *m = realloc(fs->m, sizeof(*m) + LWS_PRE + cap);
		if (!m)
			return -1;
		m->cost = sizeof(*m) + LWS_PRE + cap;
		fs->m = m;
		fs->cap = cap;
	}
	memcpy(fs->m->buf + LWS_PRE + fs->m->len, buf, n);
	fs->m->len += n;
	return 0;
}

/* @o (not consumed) as a frame of @s's queue, @hint bytes expected (any
 * thread). */
static void session_push_json(struct session *s, const json_t *o, size_t hint)
{
	struct frame_sink fs = { .cap = hint + 256 };

	if (!o || !(fs.m = msg_new(fs.cap)))
		return;
	if (json_dump_callback(o, frame_sink_put, &fs, JSON_COMPACT | JSON_PRESERVE_ORDER)) {
		free(fs.m);
		return;
	}
	session_push(s, fs.m);
}

/*
 * A protocol error for the client: {"ev":"error","agent":AGENT,"user":ID,
 * "seq":0,"id":RUN,"error":MESSAGE} ("agent" only when known, "id" only
 * when the request carried one: @id >= 0).  seq 0 tells it from an agent's
 * own error event (seq > 0).  Built with jansson, so the agent name (any
 * JSON string the client sent) is escaped correctly.  Any thread.
 */
static void session_push_error(struct session *s, const char *agent, long long id,
			       const char *fmt, ...) __attribute__((format(printf, 4, 5)));
static void session_push_error(struct session *s, const char *agent, long long id,
			       const char *fmt, ...)
{
	char msg[256];
	va_list ap;
	json_t *o;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	for (char *p = msg; *p; p++) /* jansson's texts may quote raw input */
		if ((unsigned char)*p < 0x20 || (unsigned char)*p > 0x7e)
			*p = '?';
	o = json_object();
	if (!o)
		return;
	json_object_set_new(o, "ev", json_string("error"));
	if (agent)
		json_object_set_new(o, "agent", json_string(agent));
	json_object_set_new(o, "user", json_string(s->id));
	json_object_set_new(o, "seq", json_integer(0));
	if (id >= 0)
		json_object_set_new(o, "id", json_integer(id));
	json_object_set_new(o, "error", json_string(msg));
	session_push_json(s, o, strlen(msg));
	json_decref(o);
}

/* ----------------------------------------------------------- the bridge */

/*
 * Inside the emitting agent's read section (see ureg_agent_emit).  The
 * event becomes {"ev","agent","user","seq"[,"id"],"t","data"}, built with
 * jansson: the agent's key is escaped whatever it holds (a key may contain
 * '"' and '\'), and the payload is parsed, so an agent that emits text
 * that is not JSON cannot break the frame (it arrives as a JSON string).
 */
static void bridge_emit(const struct ureg_agent_event *ev, void *arg)
{
	struct agent_server *srv = arg;
	struct worker *w = this_worker;
	json_t *o, *data;
	void *item;

	if (ureg_lookup(srv->sessions, ureg_ctx_name(ev->ctx), &item) != 0) {
		if (w)
			__atomic_store_n(&w->dropped, w->dropped + 1, __ATOMIC_RELAXED);
		return;
	}
	struct session *s = item;
	if (!ev->data)
		data = json_null();
	else if (ev->data == emitting_text) /* emit_json's: the value itself */
		data = json_incref((json_t *)emitting_json);
	else if (!(data = json_loadb(ev->data, ev->len, JSON_DECODE_ANY, NULL)))
		data = json_stringn_nocheck(ev->data, ev->len);
	o = json_pack("{s:s,s:s,s:s,s:I}", "ev", ureg_agent_event_name(ev->kind),
		      "agent", ev->key, "user", s->id, "seq", (json_int_t)ev->seq);
	/* the run's id when the event comes from the run this worker is
	 * running for this session (an agent emitting from a thread of its
	 * own has none) */
	if (o && w && w->running && w->running->s == s && w->running->id >= 0)
		json_object_set_new(o, "id", json_integer(w->running->id));
	if (o) {
		json_object_set_new(o, "t", json_integer((json_int_t)agent_server_now_ns()));
		json_object_set(o, "data", data);
	}
	json_decref(data);
	session_push_json(s, o, ev->len + strlen(ev->key));
	json_decref(o);
	if (w)
		__atomic_store_n(&w->queued, w->queued + 1, __ATOMIC_RELAXED);
}

/* ------------------------------------------------------- the live report */

/*
 * Sessions that sent {"watch":true} get, every report_ms, what ureg_report
 * says about the whole process - every registry with its type chain,
 * generation and entries, and every live user context with its bytes,
 * peak and instances (ureg_ctx_foreach + ureg_ctx_stats inside the
 * library) - as one frame:
 *   {"ev":"report","user":U,"seq":0,"t":NS,"self":<U's context|null>,
 *    "data":{"registries":[...],"contexts":[...],"contexts_total":N,
 *            "live_bytes_total":B,"instances_total":I,"report_ms":MS}}
 * The registry and context objects are ureg_report's own (so whatever it
 * reports about a context, a per-entry breakdown included, reaches the
 * page unchanged), bounded for the wire: the REPORT_MAX_CONTEXTS largest
 * contexts by live bytes, the first REPORT_MAX_ENTRIES entries of each
 * registry ("entries_total" says how many there are).
 *
 * One reporter thread builds the report once per round, outside any read
 * section and off the service thread (ureg_report takes the registry and
 * context-list locks), then pushes a copy to each watching session the way
 * the bridge pushes events: looked up in the sessions registry inside a
 * read section, queued under the same caps.  A session that starts
 * watching gets a round at once, but rounds are never closer than
 * REPORT_MIN_GAP_MS: toggling "watch" cannot make the server report more
 * than 10 times a second.
 */
#define REPORT_MAX_CONTEXTS 32
#define REPORT_MAX_ENTRIES 64
#define REPORT_MIN_GAP_MS 100

/* Any thread; report_lock is only ever held for a few instructions. */
static void report_wake(struct agent_server *srv)
{
	pthread_mutex_lock(&srv->report_lock);
	srv->report_now = true;
	pthread_cond_signal(&srv->report_cond);
	pthread_mutex_unlock(&srv->report_lock);
}

static const char *ctx_name(const json_t *c)
{
	const char *n = json_string_value(json_object_get(c, "name"));
	return n ? n : "";
}

static json_int_t ctx_bytes(const json_t *c)
{
	return json_integer_value(json_object_get(c, "live_bytes"));
}

/* largest first; equal sizes by name, so the order does not flicker */
static int ctx_cmp(const void *a, const void *b)
{
	const json_t *x = *(json_t *const *)a, *y = *(json_t *const *)b;
	json_int_t bx = ctx_bytes(x), by = ctx_bytes(y);

	if (bx != by)
		return bx > by ? -1 : 1;
	return strcmp(ctx_name(x), ctx_name(y));
}

/* "config": what the etcd source serves (NULL without one) */
static json_t *config_json(struct agent_server *srv)
{
	struct ureg_config_etcd_stats st;

	if (!srv->config || ureg_config_etcd_stats(srv->config, &st))
		return NULL;
	return json_pack("{s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:b,s:s}",
			 "generation", (json_int_t)st.revision,
			 "revision", (json_int_t)st.revision,
			 "applied_at_ns", (json_int_t)st.applied_at_ns,
			 "seen_revision", (json_int_t)st.seen_revision,
			 "applied", (json_int_t)st.applied,
			 "rejected", (json_int_t)st.rejected,
			 "rejected_revision", (json_int_t)st.rejected_revision,
			 "reconnects", (json_int_t)st.reconnects,
			 "compactions", (json_int_t)st.compactions,
			 "connected", st.connected, "last_error", st.last_error);
}

/* The shared "data" object of one round, and every context by name (for
 * "self").  NULL when ureg_report or an allocation failed. */
static json_t *report_build(struct agent_server *srv, json_t **by_name)
{
	char *txt = NULL;
	json_t *data = NULL;
	size_t len = 0, n, i;
	json_t *rep = NULL, *regs, *ctxs, *r, *c, *top = NULL, *out = NULL, **v = NULL;
	json_int_t bytes = 0, instances = 0;
	FILE *f = open_memstream(&txt, &len);
	int rc;

	*by_name = NULL;
	if (!f)
		return NULL;
	rc = ureg_report(f, UREG_REPORT_JSON);
	if (fclose(f) == 0 && rc == 0)
		rep = json_loadb(txt, len, 0, NULL);
	free(txt);
	regs = json_object_get(rep, "registries");
	ctxs = json_object_get(rep, "contexts");
	if (!json_is_array(regs) || !json_is_array(ctxs))
		goto out;
	json_array_foreach(regs, i, r) {
		json_t *e = json_object_get(r, "entries");
		json_object_set_new(r, "entries_total", json_integer((json_int_t)json_array_size(e)));
		while (json_array_size(e) > REPORT_MAX_ENTRIES)
			json_array_remove(e, json_array_size(e) - 1);
	}
	n = json_array_size(ctxs);
	if (!(*by_name = json_object()) || !(top = json_array()) || !(out = json_object()) ||
	    (n && !(v = malloc(n * sizeof(*v)))))
		goto out;
	json_array_foreach(ctxs, i, c) {
		v[i] = c;
		bytes += ctx_bytes(c);
		instances += json_integer_value(json_object_get(c, "instances"));
		json_object_set(*by_name, ctx_name(c), c);
	}
	if (n)
		qsort(v, n, sizeof(*v), ctx_cmp);
	for (i = 0; i < n && i < REPORT_MAX_CONTEXTS; i++)
		json_array_append(top, v[i]);
	json_object_set(out, "registries", regs);
	json_object_set(out, "contexts", top);
	json_object_set_new(out, "contexts_total", json_integer((json_int_t)n));
	json_object_set_new(out, "live_bytes_total", json_integer(bytes));
	json_object_set_new(out, "instances_total", json_integer(instances));
	if (srv->config)
		json_object_set_new(out, "config", config_json(srv));
	if (!json_object_set_new(out, "report_ms", json_integer(srv->report_ms)))
		data = json_incref(out);
out:
	if (!data) {
		json_decref(*by_name);
		*by_name = NULL;
	}
	free(v);
	json_decref(out);
	json_decref(top);
	json_decref(rep);
	return data;
}

/* One round: build the report, queue it for every watching session (a
 * frame built by jansson around the shared data object). */
static void report_round(struct agent_server *srv)
{
	json_t *by_name, *data = report_build(srv, &by_name);
	char **keys = NULL;
	size_t nkeys = 0;

	if (!data)
		return;
	if (ureg_keys(srv->sessions, &keys, &nkeys) == 0) {
		uint64_t t = agent_server_now_ns();
		for (size_t i = 0; i < nkeys; i++) {
			void *item;
			ureg_read_lock();
			if (ureg_lookup(srv->sessions, keys[i], &item) == 0 &&
			    __atomic_load_n(&((struct session *)item)->watch, __ATOMIC_RELAXED)) {
				struct session *s = item;
				json_t *me = json_object_get(by_name, s->id);
				json_t *o = json_pack("{s:s,s:s,s:i,s:I,s:O?,s:O}", "ev", "report",
						      "user", s->id, "seq", 0, "t", (json_int_t)t,
						      "self", me, "data", data);
				session_push_json(s, o, 64 << 10);
				json_decref(o);
			}
			ureg_read_unlock();
		}
		ureg_keys_free(keys);
	}
	__atomic_add_fetch(&srv->reports, 1, __ATOMIC_RELAXED);
	json_decref(by_name);
	json_decref(data);
}

static void *reporter_main(void *arg)
{
	struct agent_server *srv = arg;
	uint64_t last = 0;

	pthread_mutex_lock(&srv->report_lock);
	while (!srv->report_stop) {
		uint64_t now = agent_server_now_ns(),
			 due = last + (uint64_t)srv->report_ms * 1000000ull;
		if (srv->report_now && last + REPORT_MIN_GAP_MS * 1000000ull < due)
			due = last + REPORT_MIN_GAP_MS * 1000000ull;
		if (now < due) {
			struct timespec ts = { (time_t)(due / 1000000000ull),
					       (long)(due % 1000000000ull) };
			pthread_cond_timedwait(&srv->report_cond, &srv->report_lock, &ts);
			continue;
		}
		srv->report_now = false;
		pthread_mutex_unlock(&srv->report_lock);
		if (__atomic_load_n(&srv->watchers, __ATOMIC_RELAXED))
			report_round(srv);
		last = agent_server_now_ns();
		pthread_mutex_lock(&srv->report_lock);
	}
	pthread_mutex_unlock(&srv->report_lock);
	return NULL;
}

/* -------------------------------------------------------------- workers */

static void run_job(struct agent_server *srv, struct job *j)
{
	struct session *s = j->s;
	struct ureg_agent *a = NULL;
	int rc;

	/* room for one more agent first: once the agent exists it must be
	 * tracked, so that teardown releases it and checks its bytes */
	if (s->nagents == s->cap_agents) {
		size_t cap = s->cap_agents ? 2 * s->cap_agents : 4;
		struct ureg_agent **p = realloc(s->agents, cap * sizeof(*p));
		if (!p) {
			session_push_error(s, j->key, j->id, "out of memory");
			goto done;
		}
		s->agents = p;
		s->cap_agents = cap;
	}
	ureg_read_lock();
	rc = ureg_agent_reg_get(srv->agents, j->key, s->ctx, &a);
	if (rc == 0) {
		size_t i;
		for (i = 0; i < s->nagents && s->agents[i] != a; i++)
			;
		if (i == s->nagents)
			s->agents[s->nagents++] = a;
		this_worker->running = j;
		rc = a->ops->run ? a->ops->run(a, j->input) : -ENOSYS;
		this_worker->running = NULL;
		ureg_read_unlock();
		if (rc)
			session_push_error(s, j->key, j->id, "agent run failed: %s", ureg_strerror(rc));
	} else {
		ureg_read_unlock();
		if (rc == -ENOENT)
			session_push_error(s, j->key, j->id, "unknown agent");
		else if (rc == -EINVAL)
			session_push_error(s, j->key, j->id, "invalid agent name (1 to %d printable "
					   "ASCII bytes, no space)", UREG_KEY_MAX);
		else
			session_push_error(s, j->key, j->id, "cannot create the agent: %s", ureg_strerror(rc));
	}
done:
	__atomic_store_n(&this_worker->runs, this_worker->runs + 1, __ATOMIC_RELAXED);
	job_free(j);
	/* a run slot is free: if the service thread holds a request for it,
	 * wake it (seq_cst pairs with session_dispatch: one of the two sees
	 * the other's write) */
	__atomic_sub_fetch(&s->inflight, 1, __ATOMIC_SEQ_CST);
	if (__atomic_load_n(&s->held_waiting, __ATOMIC_SEQ_CST))
		session_wake(s);
	session_users_put(s);
}

static void *worker_main(void *arg)
{
	struct worker *w = arg;
	struct job *j;

	this_worker = w;
	for (;;) {
		pthread_mutex_lock(&w->lock);
		while (!w->head && !w->stop)
			pthread_cond_wait(&w->cond, &w->lock);
		j = w->head;
		if (j) {
			w->head = j->next;
			if (!w->head)
				w->tail = NULL;
		}
		pthread_mutex_unlock(&w->lock);
		if (!j)
			break; /* stop, and nothing left */
		run_job(w->srv, j);
	}
	return NULL;
}

/* Service thread: false when the worker is stopping (job not taken). */
static bool worker_push(struct worker *w, struct job *j)
{
	pthread_mutex_lock(&w->lock);
	if (w->stop) {
		pthread_mutex_unlock(&w->lock);
		return false;
	}
	j->next = NULL;
	if (w->tail)
		w->tail->next = j;
	else
		w->head = j;
	w->tail = j;
	pthread_cond_signal(&w->cond);
	pthread_mutex_unlock(&w->lock);
	return true;
}

/* ---------------------------------------------------- lws (service thread) */

/*
 * Flow control (service thread).  Reading a connection stops for either
 * reason (bits of rx_paused) and resumes when neither holds; lws keeps one
 * reason bit per cause, so the two never undo each other.
 */
static void rx_pause(struct agent_server *srv, struct session *s, unsigned why)
{
	if (s->rx_paused & why)
		return;
	s->rx_paused |= why;
	__atomic_store_n(&srv->rx_pauses, srv->rx_pauses + 1, __ATOMIC_RELAXED);
	lws_rx_flow_control(s->wsi, LWS_RXFLOW_REASON_APPLIES_DISABLE | (int)why);
	if (why == RX_BACKLOG) {
		/* the stall clock: the timer closes it if still over then */
		s->backlog_since = agent_server_now_ns();
		lws_set_timer_usecs(s->wsi, (lws_usec_t)srv->stall_ms * 1000);
	}
}

static void rx_resume(struct session *s, unsigned why)
{
	why &= s->rx_paused;
	if (!why)
		return;
	s->rx_paused &= ~why;
	lws_rx_flow_control(s->wsi, LWS_RXFLOW_REASON_APPLIES_ENABLE | (int)why |
			    LWS_RXFLOW_REASON_FLAG_PROCESS_NOW);
}

/* The soft cap: stop reading over it, read again at half of it. */
static void session_check_backlog(struct agent_server *srv, struct session *s)
{
	size_t q = __atomic_load_n(&s->queued, __ATOMIC_RELAXED);

	if (q > srv->queue_soft)
		rx_pause(srv, s, RX_BACKLOG);
	else if (q <= srv->queue_soft / 2)
		rx_resume(s, RX_BACKLOG);
}

static void session_hold(struct agent_server *srv, struct session *s, struct job *j)
{
	struct job **p = &s->held;

	while (*p)
		p = &(*p)->next;
	j->next = NULL;
	*p = j;
	__atomic_store_n(&s->held_waiting, 1, __ATOMIC_SEQ_CST);
	rx_pause(srv, s, RX_RUNS);
}

/*
 * May the session start one more run now?  Not with max_runs in flight,
 * and not while its outgoing queue is over the soft cap: a request already
 * read (or held) must not add a run's output to a client that is not
 * reading - measured before this rule, held requests took 50 non-reading
 * clients to 3 runs' output each (1 MB) instead of 2 (service thread).
 */
static bool session_may_run(struct agent_server *srv, struct session *s)
{
	session_check_backlog(srv, s);
	return __atomic_load_n(&s->inflight, __ATOMIC_SEQ_CST) < (long)srv->max_runs &&
	       !(s->rx_paused & RX_BACKLOG);
}

/* Give @j to the session's worker, or hold it while it may not run
 * (service thread). */
static void session_dispatch(struct agent_server *srv, struct session *s, struct job *j)
{
	if (!session_may_run(srv, s)) {
		session_hold(srv, s, j);
		/* a run may have finished before held_waiting was set: its
		 * worker then did not wake us, so look again */
		if (!session_may_run(srv, s))
			return;
		s->held = j->next;
		if (!s->held) {
			__atomic_store_n(&s->held_waiting, 0, __ATOMIC_SEQ_CST);
			rx_resume(s, RX_RUNS);
		}
	}
	__atomic_add_fetch(&s->inflight, 1, __ATOMIC_SEQ_CST);
	__atomic_add_fetch(&s->users, 1, __ATOMIC_RELAXED);
	if (!worker_push(&srv->workers[s->worker], j)) {
		job_free(j);
		__atomic_sub_fetch(&s->inflight, 1, __ATOMIC_SEQ_CST);
		__atomic_sub_fetch(&s->users, 1, __ATOMIC_RELAXED); /* connection still holds one */
	}
}

/* Held requests that may run now: a run slot came free or the queue fell
 * back under the soft cap (service thread). */
static void session_release_held(struct agent_server *srv, struct session *s)
{
	while (s->held && session_may_run(srv, s)) {
		struct job *j = s->held;
		s->held = j->next;
		if (!s->held) {
			__atomic_store_n(&s->held_waiting, 0, __ATOMIC_SEQ_CST);
			rx_resume(s, RX_RUNS);
		}
		session_dispatch(srv, s, j);
	}
}

/* what a valid JSON text of the wrong shape is */
static const char *json_kind(const json_t *j)
{
	switch (json_typeof(j)) {
	case JSON_ARRAY: return "request is not a JSON object (it is an array)";
	case JSON_STRING: return "request is not a JSON object (it is a string)";
	case JSON_INTEGER:
	case JSON_REAL: return "request is not a JSON object (it is a number)";
	case JSON_TRUE:
	case JSON_FALSE: return "request is not a JSON object (it is a boolean)";
	case JSON_NULL: return "request is not a JSON object (it is null)";
	default: return "request is not a JSON object";
	}
}

#define REQUEST_SHAPES "expected {\"run\":\"<agent>\",\"input\":\"<text>\"} " \
	"(with an optional \"id\":<integer>) or {\"watch\":true|false}"
/* largest run id: what a JavaScript number holds exactly */
#define RUN_ID_MAX 9007199254740991ll

/* {"watch": true|false} (service thread): the session gets the live report
 * from the reporter's next round, at once when it starts watching. */
static void session_set_watch(struct agent_server *srv, struct session *s, bool on)
{
	if (on == !!s->watch)
		return;
	__atomic_store_n(&s->watch, on, __ATOMIC_RELAXED);
	if (on) {
		__atomic_add_fetch(&srv->watchers, 1, __ATOMIC_RELAXED);
		report_wake(srv);
	} else {
		__atomic_sub_fetch(&srv->watchers, 1, __ATOMIC_RELAXED);
	}
}

/*
 * One complete request (service thread).  A run {"run": "<agent>",
 * "input": "<text>", "id": N (optional)} or a watch {"watch": true|false};
 * anything else gets one error event and changes nothing: no job, no
 * agent, no context byte.
 */
static void handle_request(struct agent_server *srv, struct session *s,
			   const char *in, size_t len)
{
	json_error_t err;
	json_t *root = json_loadb(in, len, JSON_DECODE_ANY, &err), *run, *input, *id, *watch;
	long long run_id = -1;
	struct job *j;

	if (!root) {
		session_push_error(s, NULL, -1, "request is not JSON (column %d: %s); "
				   REQUEST_SHAPES, err.column, err.text);
		return;
	}
	run = json_object_get(root, "run");
	input = json_object_get(root, "input");
	id = json_object_get(root, "id");
	watch = json_object_get(root, "watch");
	if (json_is_object(root) && watch && !run) {
		if (json_is_boolean(watch))
			session_set_watch(srv, s, json_is_true(watch));
		else
			session_push_error(s, NULL, -1, "\"watch\" is not a boolean; "
					   REQUEST_SHAPES);
		json_decref(root);
		return;
	}
	if (json_is_integer(id) && json_integer_value(id) >= 0 &&
	    json_integer_value(id) <= RUN_ID_MAX)
		run_id = json_integer_value(id);
	if (!json_is_object(root) || !json_is_string(run) || !json_is_string(input) ||
	    (id && run_id < 0)) {
		session_push_error(s, json_string_value(run), -1, "%s; " REQUEST_SHAPES,
				   !json_is_object(root) ? json_kind(root) :
				   !run ? "missing \"run\"" :
				   !json_is_string(run) ? "\"run\" is not a string" :
				   !input ? "missing \"input\"" :
				   !json_is_string(input) ? "\"input\" is not a string" :
				   "\"id\" is not an integer from 0 to 2^53-1");
		json_decref(root);
		return;
	}
	j = calloc(1, sizeof(*j));
	if (j) {
		j->s = s;
		j->id = run_id;
		j->key = strdup(json_string_value(run));
		j->input = strdup(json_string_value(input));
	}
	if (!j || !j->key || !j->input) {
		if (j) {
			free(j->key);
			free(j->input);
			free(j);
		}
		session_push_error(s, json_string_value(run), run_id, "out of memory");
		json_decref(root);
		return;
	}
	json_decref(root);
	if (s->held) {
		/* requests keep their order: behind the one already held */
		session_hold(srv, s, j);
		return;
	}
	session_dispatch(srv, s, j);
}

/*
 * A piece of a client message (service thread).  lws hands a message over
 * in pieces (WebSocket fragments, and pieces of at most the rx buffer); they
 * are joined here up to srv->max_message bytes.  A longer message
 * is dropped as it arrives (never buffered) and answered with one error.
 */
static void receive_piece(struct agent_server *srv, struct session *s, struct lws *wsi,
			  const void *in, size_t len)
{
	bool final = lws_is_final_fragment(wsi);

	if (!s->rx_in_msg) {
		s->rx_in_msg = true;
		s->rx_len = 0;
		s->rx_binary = lws_frame_is_binary(wsi); /* of its first frame */
		s->rx_refused = s->rx_binary;
	}
	if (!s->rx_refused && len) {
		if (len > srv->max_message - s->rx_len) {
			s->rx_refused = true;
		} else {
			if (s->rx_len + len > s->rx_cap) {
				size_t cap = s->rx_cap ? s->rx_cap : 1024;
				while (cap < s->rx_len + len)
					cap *= 2;
				char *p = realloc(s->rx, cap);
				if (!p) {
					s->rx_refused = true;
					goto out;
				}
				s->rx = p;
				s->rx_cap = cap;
			}
			memcpy(s->rx + s->rx_len, in, len);
			s->rx_len += len;
		}
	}
out:
	if (!final)
		return;
	s->rx_in_msg = false;
	if (s->rx_binary)
		session_push_error(s, NULL, -1, "binary message refused: send a JSON text message");
	else if (s->rx_refused)
		session_push_error(s, NULL, -1, "request too large (limit %zu bytes) or out of memory",
				   srv->max_message);
	else
		handle_request(srv, s, s->rx, s->rx_len);
	/* a large buffer is not kept for the connection's life */
	if (s->rx_cap > 16384) {
		free(s->rx);
		s->rx = NULL;
		s->rx_cap = 0;
	}
	s->rx_len = 0;
}

static struct session *session_open(struct agent_server *srv, struct lws *wsi)
{
	struct session *s = calloc(1, sizeof(*s));
	if (!s)
		return NULL;
	uint64_t num = ++srv->next_num;
	s->srv = srv;
	s->wsi = wsi;
	snprintf(s->id, sizeof(s->id), "u%llu", (unsigned long long)num);
	s->worker = (unsigned)(num % srv->nworkers);
	cds_wfcq_init(&s->qh, &s->qt);
	if (ureg_ctx_new(s->id, UREG_CTX_SHARED, &s->ctx)) {
		free(s);
		return NULL;
	}
	if ((srv->ctx_quota != SIZE_MAX && ureg_ctx_set_quota(s->ctx, srv->ctx_quota)) ||
	    ureg_register(srv->sessions, s->id, s)) {
		ureg_ctx_destroy(s->ctx);
		cds_wfcq_destroy(&s->qh, &s->qt);
		free(s);
		return NULL;
	}
	s->users = 1;
	s->refs = 2;
	s->next = srv->open;
	if (srv->open)
		srv->open->prev = s;
	srv->open = s;
	srv->nopen++;
	pthread_mutex_lock(&srv->idle_lock);
	srv->sessions_open++;
	srv->sessions_total++;
	pthread_mutex_unlock(&srv->idle_lock);
	if (srv->verbose)
		fprintf(stderr, "ureg-agent-server: %s: connected\n", s->id);
	return s;
}

static void session_close(struct agent_server *srv, struct session *s)
{
	if (s->prev)
		s->prev->next = s->next;
	else
		srv->open = s->next;
	if (s->next)
		s->next->prev = s->prev;
	srv->nopen--;
	s->wsi = NULL;
	while (s->held) { /* requests that never got a run slot */
		struct job *j = s->held;
		s->held = j->next;
		job_free(j);
	}
	__atomic_store_n(&s->held_waiting, 0, __ATOMIC_SEQ_CST);
	session_set_watch(srv, s, false);
	if (srv->verbose)
		fprintf(stderr, "ureg-agent-server: %s: closed\n", s->id);
	/* no new event finds it; the entry's grace period then frees our ref */
	ureg_unregister(srv->sessions, s->id, UREG_SINGLETON);
	session_users_put(s);
}

/* ------------------------------------------------------ HTTP (service thread) */

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
 * first request of every connection, whatever its size; lws holds at most
 * HTTP_HEADER_TABLE bytes of a request's headers (it drops the connection
 * past that, with no status), twice the limit, so a later request on a
 * kept-alive connection still gets its 414/431 from serve_http up to
 * there */
#define HTTP_CHUNK 16384
#define HTTP_MAX_URI 4096
#define HTTP_MAX_URI_TEXT "4096"
#define HTTP_MAX_HEADERS 16384
#define HTTP_MAX_HEADERS_TEXT "16384"
#define HTTP_HEADER_TABLE (2 * HTTP_MAX_HEADERS)
#define HTTP_MAX_BODY (1 << 20)
#define HTTP_MAX_BODY_TEXT "1048576"

static uint64_t process_rss(void)
{
	unsigned long size, resident;
	FILE *f = fopen("/proc/self/statm", "r");
	int n = f ? fscanf(f, "%lu %lu", &size, &resident) : 0;

	if (f)
		fclose(f);
	return n == 2 ? (uint64_t)resident * (uint64_t)sysconf(_SC_PAGESIZE) : 0;
}

/*
 * GET /stats: the limits, the counters, the process RSS and, per open
 * connection, what it holds (service thread: it owns the open list, and a
 * listed session's context is alive).
 */
static char *stats_json(struct agent_server *srv, size_t *len)
{
	struct agent_server_stats st;
	json_t *o = json_object(), *lim = json_object(), *conns = json_array();
	uint64_t queued = 0;
	char *txt = NULL;

	if (!o || !lim || !conns)
		goto out;
	agent_server_stats(srv, &st);
	json_object_set_new(lim, "max_message", json_integer((json_int_t)srv->max_message));
	json_object_set_new(lim, "max_runs", json_integer(srv->max_runs));
	json_object_set_new(lim, "queue_soft", json_integer((json_int_t)srv->queue_soft));
	json_object_set_new(lim, "queue_hard", json_integer((json_int_t)srv->queue_hard));
	json_object_set_new(lim, "stall_ms", json_integer(srv->stall_ms));
	json_object_set_new(lim, "max_conns", json_integer(srv->max_conns));
	json_object_set_new(lim, "ctx_quota", srv->ctx_quota == SIZE_MAX ? json_null() :
			    json_integer((json_int_t)srv->ctx_quota));
	for (struct session *s = srv->open; s; s = s->next) {
		struct ureg_ctx_stats cs;
		json_t *c = json_object();
		size_t q = __atomic_load_n(&s->queued, __ATOMIC_RELAXED);

		if (!c)
			goto out;
		ureg_ctx_stats(s->ctx, &cs);
		queued += q;
		json_object_set_new(c, "user", json_string(s->id));
		json_object_set_new(c, "queued_bytes", json_integer((json_int_t)q));
		json_object_set_new(c, "queue_peak", json_integer((json_int_t)
				    __atomic_load_n(&s->queued_peak, __ATOMIC_RELAXED)));
		json_object_set_new(c, "runs_in_flight", json_integer(
				    __atomic_load_n(&s->inflight, __ATOMIC_RELAXED)));
		json_object_set_new(c, "reading", json_boolean(!s->rx_paused));
		size_t held = 0;
		for (struct job *j = s->held; j; j = j->next)
			held++;
		json_object_set_new(c, "runs_held", json_integer((json_int_t)held));
		json_object_set_new(c, "ctx_live_bytes", json_integer((json_int_t)cs.live_bytes));
		json_object_set_new(c, "ctx_instances", json_integer((json_int_t)cs.instances));
		json_array_append_new(conns, c);
	}
	if (srv->config)
		json_object_set_new(o, "config", config_json(srv));
	json_object_set_new(o, "rss_bytes", json_integer((json_int_t)process_rss()));
	json_object_set_new(o, "connections_open", json_integer(srv->nopen));
	json_object_set_new(o, "watchers", json_integer(__atomic_load_n(&srv->watchers,
								   __ATOMIC_RELAXED)));
	json_object_set_new(o, "reports", json_integer((json_int_t)__atomic_load_n(
				    &srv->reports, __ATOMIC_RELAXED)));
	json_object_set_new(o, "queued_bytes", json_integer((json_int_t)queued));
	json_object_set_new(o, "sessions_open", json_integer((json_int_t)st.sessions_open));
	json_object_set_new(o, "sessions_total", json_integer((json_int_t)st.sessions_total));
	json_object_set_new(o, "runs", json_integer((json_int_t)st.runs));
	json_object_set_new(o, "events_sent", json_integer((json_int_t)st.events_sent));
	json_object_set_new(o, "frames_dropped_slow", json_integer((json_int_t)st.frames_dropped_slow));
	json_object_set_new(o, "closed_slow", json_integer((json_int_t)st.closed_slow));
	json_object_set_new(o, "closed_stalled", json_integer((json_int_t)st.closed_stalled));
	json_object_set_new(o, "refused_conns", json_integer((json_int_t)st.refused_conns));
	json_object_set_new(o, "rx_pauses", json_integer((json_int_t)st.rx_pauses));
	json_object_set_new(o, "queue_peak_closed", json_integer((json_int_t)st.queue_peak));
	json_object_set_new(o, "limits", lim);
	json_object_set_new(o, "connections", conns);
	lim = conns = NULL;
	txt = json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER);
	if (txt)
		*len = strlen(txt);
out:
	json_decref(lim);
	json_decref(conns);
	json_decref(o);
	return txt;
}

/*
 * One reply: status line, headers, and the body written by http_writeable
 * in pieces (none for HEAD).  @allow adds "allow: GET, HEAD" (405).
 */
static int http_reply(struct lws *wsi, struct conn *c, unsigned status,
		      const char *type, const char *body, size_t len, char *owned)
{
	uint8_t buf[LWS_PRE + 512], *start = &buf[LWS_PRE], *p = start,
		*end = &buf[sizeof(buf) - 1];

	c->body = owned;
	c->out = body;
	c->out_len = len;
	c->out_off = 0;
	if (lws_add_http_common_headers(wsi, status, type, len, &p, end) ||
	    lws_add_http_header_by_name(wsi, (const unsigned char *)"cache-control:",
					(const unsigned char *)"no-store", 8, &p, end) ||
	    (status == HTTP_STATUS_METHOD_NOT_ALLOWED &&
	     lws_add_http_header_by_name(wsi, (const unsigned char *)"allow:",
					 (const unsigned char *)"GET, HEAD", 9, &p, end)) ||
	    lws_finalize_write_http_header(wsi, start, &p, end))
		return 1;
	if (c->head) {
		/* the headers say how long the body would be; none follows */
		free(c->body);
		c->body = NULL;
		c->out = NULL;
		return lws_http_transaction_completed(wsi) ? -1 : 0;
	}
	lws_callback_on_writable(wsi);
	return 0;
}

/* An error reply with a one-line text body saying why. */
static int http_error(struct lws *wsi, struct conn *c, unsigned status, const char *why)
{
	char *txt = NULL;
	int n = asprintf(&txt, "%u %s\n", status, why);

	if (n < 0)
		return -1;
	return http_reply(wsi, c, status, "text/plain", txt, (size_t)n, txt);
}

/* The request lws has parsed: what to answer (service thread).  Returns
 * what the HTTP callback returns. */
static int http_answer(struct agent_server *srv, struct lws *wsi, struct conn *c)
{
	const char *uri = c->uri;

	if (c->status)
		return http_error(wsi, c, c->status, c->why);
	if (!strcmp(uri, "/") || !strcmp(uri, "/index.html"))
		return http_reply(wsi, c, HTTP_STATUS_OK, "text/html", agent_page_html,
				  sizeof(agent_page_html) - 1, NULL);
	if (!strcmp(uri, "/stats")) {
		size_t len = 0;
		char *j = stats_json(srv, &len);
		if (!j)
			return -1;
		return http_reply(wsi, c, HTTP_STATUS_OK, "application/json", j, len, j);
	}
	return http_error(wsi, c, HTTP_STATUS_NOT_FOUND, "not found: the page is at /, the "
			  "counters at /stats");
}

/* bytes of the headers lws knows by name (a request's custom headers are
 * not counted; past lws's own table, max_http_header_data, lws drops the
 * connection itself) */
static size_t known_header_bytes(struct lws *wsi)
{
	size_t n = 0;
	for (int t = 0; t < WSI_TOKEN_COUNT; t++)
		n += (size_t)lws_hdr_total_length(wsi, (enum lws_token_indexes)t);
	return n;
}

/*
 * LWS_CALLBACK_HTTP: GET and HEAD of / and /stats; 405 (with allow) for
 * any other method lws parses, 414 past HTTP_MAX_URI, 431 past
 * HTTP_MAX_HEADERS.  A request with a body is answered once the body has
 * been read (and dropped): answering first would leave lws reading the
 * body as the next request or hanging in its body state.
 */
static int serve_http(struct agent_server *srv, struct lws *wsi, struct conn *c, const char *uri)
{
	char cl[32] = "";

	memset(c, 0, sizeof(*c));
	c->head = lws_hdr_total_length(wsi, WSI_TOKEN_HEAD_URI) > 0;
	snprintf(c->uri, sizeof(c->uri), "%s", uri);
	if (!c->head && !lws_hdr_total_length(wsi, WSI_TOKEN_GET_URI)) {
		c->status = HTTP_STATUS_METHOD_NOT_ALLOWED;
		c->why = "method not allowed: this server answers GET and HEAD";
	} else if (strlen(uri) > HTTP_MAX_URI) {
		c->status = HTTP_STATUS_REQ_URI_TOO_LONG;
		c->why = "URI too long (limit " HTTP_MAX_URI_TEXT " bytes)";
	} else if (known_header_bytes(wsi) > HTTP_MAX_HEADERS) {
		c->status = 431;
		c->why = "request header fields too large (limit " HTTP_MAX_HEADERS_TEXT " bytes)";
	}
	int cn = lws_hdr_copy(wsi, cl, sizeof(cl), WSI_TOKEN_HTTP_CONTENT_LENGTH);
	if (lws_hdr_total_length(wsi, WSI_TOKEN_HTTP_CONTENT_LENGTH) > 0 &&
	    (cn <= 0 || cn > 18 || strspn(cl, "0123456789") != (size_t)cn)) {
		/* not a length we can trust to find the next request: answer, close */
		c->status = HTTP_STATUS_BAD_REQUEST;
		c->why = "bad Content-Length: not a decimal number of at most 18 digits";
		c->close_after = true;
		return http_answer(srv, wsi, c);
	}
	long long body_len = cn > 0 ? strtoll(cl, NULL, 10) : 0;
	if (body_len > 0) {
		if (body_len > HTTP_MAX_BODY) {
			/* not worth reading: answer and close */
			c->status = HTTP_STATUS_REQ_ENTITY_TOO_LARGE;
			c->why = "request body too large (limit " HTTP_MAX_BODY_TEXT " bytes)";
			http_answer(srv, wsi, c);
			return -1;
		}
		c->body_wait = true; /* answered at LWS_CALLBACK_HTTP_BODY_COMPLETION */
		return 0;
	}
	if (c->status && (lws_hdr_total_length(wsi, WSI_TOKEN_POST_URI) ||
			  lws_hdr_total_length(wsi, WSI_TOKEN_PUT_URI) ||
			  lws_hdr_total_length(wsi, WSI_TOKEN_PATCH_URI))) {
		/* a body of unknown length (lws would wait for 100 MB of it):
		 * answer, then close */
		c->close_after = true;
	}
	return http_answer(srv, wsi, c);
}

static int http_writeable(struct lws *wsi, struct conn *c)
{
	uint8_t buf[LWS_PRE + HTTP_CHUNK];
	size_t n = c->out_len - c->out_off;
	bool last = n <= HTTP_CHUNK;

	if (!c->out)
		return 0;
	if (!last)
		n = HTTP_CHUNK;
	memcpy(buf + LWS_PRE, c->out + c->out_off, n);
	if (lws_write(wsi, buf + LWS_PRE, n, last ? LWS_WRITE_HTTP_FINAL : LWS_WRITE_HTTP) != (int)n)
		return 1;
	c->out_off += n;
	if (!last) {
		lws_callback_on_writable(wsi);
		return 0;
	}
	free(c->body);
	c->body = NULL;
	c->out = NULL;
	if (c->close_after)
		return -1;
	return lws_http_transaction_completed(wsi) ? -1 : 0;
}

/* ------------------------------------------- WebSocket (service thread) */

/*
 * Close @s with @code and a reason: producers drop from now on, the queue
 * is freed at once (nothing of it will be sent), reading stops, and the
 * wsi's timer does the close (an lws close needs a callback of that wsi).
 */
static void session_begin_close(struct agent_server *srv, struct session *s, int code,
				const char *fmt, ...) __attribute__((format(printf, 4, 5)));
static void session_begin_close(struct agent_server *srv, struct session *s, int code,
				const char *fmt, ...)
{
	struct cds_wfcq_node *n;
	va_list ap;

	if (s->close_code)
		return;
	s->close_code = code;
	va_start(ap, fmt);
	vsnprintf(s->close_why, sizeof(s->close_why), fmt, ap);
	va_end(ap);
	__atomic_store_n(&s->dropping, 1, __ATOMIC_RELEASE);
	while ((n = __cds_wfcq_dequeue_blocking(&s->qh, &s->qt))) {
		struct out_msg *m = caa_container_of(n, struct out_msg, node);
		__atomic_sub_fetch(&s->queued, m->cost, __ATOMIC_RELAXED);
		__atomic_add_fetch(&s->dropped, 1, __ATOMIC_RELAXED);
		free(m);
	}
	if (srv->verbose)
		fprintf(stderr, "ureg-agent-server: %s: closing (%d %s)\n", s->id, code, s->close_why);
	/* read again, and discard (RECEIVE ignores a closing session): a
	 * socket closed with unread input sends a reset, and the reset would
	 * destroy the close frame in the client's receive buffer */
	rx_resume(s, RX_BACKLOG | RX_RUNS);
	lws_set_timer_usecs(s->wsi, 1);
}

/* The service thread was woken for @s: a frame to write, a run slot free,
 * or the hard cap hit. */
static void session_service(struct agent_server *srv, struct session *s)
{
	if (s->close_code)
		return;
	if (__atomic_load_n(&s->dropping, __ATOMIC_ACQUIRE)) {
		__atomic_store_n(&srv->closed_slow, srv->closed_slow + 1, __ATOMIC_RELAXED);
		session_begin_close(srv, s, AGENT_SERVER_CLOSE_SLOW,
				    "client too slow: outgoing queue over %zu bytes", srv->queue_hard);
		return;
	}
	session_release_held(srv, s);
	session_check_backlog(srv, s);
	if (!cds_wfcq_empty(&s->qh, &s->qt))
		lws_callback_on_writable(s->wsi);
}

/*
 * Write what the connection's socket takes now: frames in queue order until
 * the queue is empty, the kernel send buffer is full (lws_send_pipe_choked:
 * lws holds the rest of a partly written frame and asks for POLLOUT
 * itself), or WRITE_BUDGET bytes went out in this callback - then the next
 * writeable callback comes after lws has served every other ready socket,
 * so one connection with a deep queue cannot hold the service thread.  One
 * frame per callback (the old way) made a run's 5 events wait 5 turns of
 * the whole poll loop.
 */
#define WRITE_BUDGET (64u << 10)

static int ws_writeable(struct agent_server *srv, struct lws *wsi, struct session *s)
{
	struct cds_wfcq_node *n;
	size_t budget = 0;
	uint64_t sent = 0;

	if (s->close_code)
		return 0;
	while ((n = __cds_wfcq_dequeue_blocking(&s->qh, &s->qt))) {
		struct out_msg *m = caa_container_of(n, struct out_msg, node);
		int w = lws_write(wsi, m->buf + LWS_PRE, m->len, LWS_WRITE_TEXT);
		__atomic_sub_fetch(&s->queued, m->cost, __ATOMIC_RELAXED);
		budget += m->len;
		free(m);
		if (w < 0)
			return -1;
		sent++;
		if (budget >= WRITE_BUDGET || cds_wfcq_empty(&s->qh, &s->qt) ||
		    lws_send_pipe_choked(wsi))
			break;
	}
	__atomic_store_n(&srv->sent, srv->sent + sent, __ATOMIC_RELAXED);
	if (s->rx_paused & RX_BACKLOG)
		session_check_backlog(srv, s);
	if (s->held) /* the queue fell under the soft cap: held runs may go */
		session_release_held(srv, s);
	if (!cds_wfcq_empty(&s->qh, &s->qt))
		lws_callback_on_writable(wsi);
	return 0;
}

/* The wsi's timer: a close begun by session_begin_close, or the stall
 * clock of a connection over the soft cap. */
static int ws_timer(struct agent_server *srv, struct lws *wsi, struct session *s)
{
	if (!s->close_code && (s->rx_paused & RX_BACKLOG)) {
		uint64_t over = agent_server_now_ns() - s->backlog_since,
			 limit = (uint64_t)srv->stall_ms * 1000000ull;
		if (over < limit) {
			lws_set_timer_usecs(wsi, (lws_usec_t)((limit - over) / 1000 + 1));
			return 0;
		}
		__atomic_store_n(&srv->closed_stalled, srv->closed_stalled + 1, __ATOMIC_RELAXED);
		session_begin_close(srv, s, AGENT_SERVER_CLOSE_SLOW,
				    "client stalled: outgoing queue over %zu bytes for %u ms",
				    srv->queue_soft, srv->stall_ms);
	}
	if (!s->close_code)
		return 0;
	lws_close_reason(wsi, (enum lws_close_status)s->close_code,
			 (unsigned char *)s->close_why, strlen(s->close_why));
	return -1;
}

/*
 * A connection we close is often one whose input we stopped reading.  The
 * kernel answers close() on a socket with unread input with a reset, and a
 * reset throws away what is still queued for the client - the close frame
 * and its reason included.  So read and drop what has arrived (lws has
 * already shut the write side down, after the close frame); a client that
 * keeps sending after this still gets the reset.  Bounded: 16 MiB.
 */
static void discard_input(struct lws *wsi)
{
	char buf[16384];
	int fd = lws_get_socket_fd(wsi);

	for (int i = 0; fd >= 0 && i < 1024; i++)
		if (recv(fd, buf, sizeof(buf), MSG_DONTWAIT) <= 0)
			break;
}

/*
 * The kernel's share of a connection.  Linux grows a socket's send buffer
 * up to net.ipv4.tcp_wmem's max (4 MiB here) and its receive buffer up to
 * tcp_rmem's (32 MiB) by itself.  For a client that never reads, that is
 * up to 4 MiB of the server's output parked in the kernel, outside every
 * cap of ours.  A fixed SO_SNDBUF / SO_RCVBUF (the kernel doubles the
 * value) bounds the memory a connection can pin in the kernel to about
 * 2 * sock_buf each way; what the kernel does not take waits in the
 * connection's queue, under its caps (README has the measured trade).  Events are small and a larger frame goes out in pieces as
 * the client reads; but over a long round trip a 64 KiB window caps one
 * connection at 64 KiB per round trip: raise --sock-buf there.
 */
static void socket_caps(struct agent_server *srv, struct lws *wsi)
{
	int fd = lws_get_socket_fd(wsi), v = (int)srv->sock_buf;

	if (fd < 0 || !srv->sock_buf)
		return;
	setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &v, sizeof(v));
	setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &v, sizeof(v));
}

/*
 * Cross-site WebSocket hijacking: a browser sends the page's Origin with
 * every WebSocket, so a page of another site could open sessions here.
 * Allowed: no Origin (not a browser), an Origin in --allow-origin (exact,
 * comma-separated), or, without that list, an Origin whose host[:port]
 * is the request's Host (the page this server served).
 */
static bool origin_allowed(struct agent_server *srv, struct lws *wsi)
{
	char origin[256], host[256];
	const char *o = origin;

	if (lws_hdr_total_length(wsi, WSI_TOKEN_ORIGIN) <= 0)
		return true;
	if (lws_hdr_total_length(wsi, WSI_TOKEN_ORIGIN) >= (int)sizeof(origin) ||
	    lws_hdr_copy(wsi, origin, sizeof(origin), WSI_TOKEN_ORIGIN) <= 0)
		return false;
	if (srv->allow_origin) {
		size_t n = strlen(origin);
		for (const char *p = srv->allow_origin; *p; ) {
			size_t k = strcspn(p, ",");
			if (k == n && !strncmp(p, origin, n))
				return true;
			p += k + (p[k] == ',');
		}
		return false;
	}
	if (lws_hdr_copy(wsi, host, sizeof(host), WSI_TOKEN_HOST) <= 0)
		return false;
	if (!strncmp(o, "http://", 7))
		o += 7;
	else if (!strncmp(o, "https://", 8))
		o += 8;
	else
		return false;
	return !strcmp(o, host);
}

/* The front door passed @fd on (front thread): the service thread adopts
 * it at its next wake-up. */
static void front_handoff(int fd, void *arg)
{
	struct agent_server *srv = arg;
	bool ok = true;

	pthread_mutex_lock(&srv->adopt_lock);
	if (srv->nadopt == srv->capadopt) {
		size_t cap = srv->capadopt ? 2 * srv->capadopt : 64;
		int *p = realloc(srv->adopt_fds, cap * sizeof(*p));
		if (p) {
			srv->adopt_fds = p;
			srv->capadopt = cap;
		} else {
			ok = false;
		}
	}
	if (ok)
		srv->adopt_fds[srv->nadopt++] = fd;
	pthread_mutex_unlock(&srv->adopt_lock);
	if (!ok)
		close(fd);
	else
		lws_cancel_service(srv->lws);
}

/* Service thread: into lws, as if its listener had accepted them (on
 * failure lws closes the fd itself). */
static void adopt_handed(struct agent_server *srv)
{
	int fds[256];
	size_t n;

	do {
		pthread_mutex_lock(&srv->adopt_lock);
		n = srv->nadopt < 256 ? srv->nadopt : 256;
		srv->nadopt -= n;
		if (n)
			memcpy(fds, srv->adopt_fds + srv->nadopt, n * sizeof(*fds));
		pthread_mutex_unlock(&srv->adopt_lock);
		for (size_t i = 0; i < n; i++)
			lws_adopt_socket_vhost(srv->vhost, fds[i]);
	} while (n == 256);
}

static int callback(struct lws *wsi, enum lws_callback_reasons reason,
		    void *user, void *in, size_t len)
{
	struct agent_server *srv = lws_context_user(lws_get_context(wsi));
	struct conn *c = user;
	struct session *s;

	switch (reason) {
	case LWS_CALLBACK_HTTP:
		return serve_http(srv, wsi, c, in ? (const char *)in : "/");

	case LWS_CALLBACK_HTTP_WRITEABLE:
		return http_writeable(wsi, c);

	case LWS_CALLBACK_HTTP_BODY:
		if (c && c->body_wait) {
			c->body_seen += len;
			if (c->body_seen > HTTP_MAX_BODY)
				return -1;
		}
		return 0;

	case LWS_CALLBACK_HTTP_BODY_COMPLETION:
		if (!c || !c->body_wait)
			return 0;
		c->body_wait = false;
		return http_answer(srv, wsi, c);

	case LWS_CALLBACK_CLOSED_HTTP:
		if (c) {
			free(c->body);
			c->body = NULL;
			c->out = NULL;
		}
		break;

	case LWS_CALLBACK_FILTER_PROTOCOL_CONNECTION:
		if (!origin_allowed(srv, wsi)) {
			lws_return_http_status(wsi, HTTP_STATUS_FORBIDDEN,
					       "origin not allowed (see --allow-origin)");
			return -1;
		}
		return 0;

	case LWS_CALLBACK_ESTABLISHED:
		if (srv->nopen >= srv->max_conns) {
			char why[100];
			int n = snprintf(why, sizeof(why), "server full: %u connections (limit %u); "
					 "try again later", srv->nopen, srv->max_conns);
			__atomic_store_n(&srv->refused_conns, srv->refused_conns + 1, __ATOMIC_RELAXED);
			lws_close_reason(wsi, AGENT_SERVER_CLOSE_FULL, (unsigned char *)why, (size_t)n);
			return -1;
		}
		if (!(s = session_open(srv, wsi)))
			return -1; /* refuse: no context for this user */
		c->s = s;
		socket_caps(srv, wsi);
		return 0;

	case LWS_CALLBACK_RECEIVE:
		if (!(s = c->s))
			return -1;
		if (s->close_code)
			return 0;
		receive_piece(srv, s, wsi, in, len);
		session_check_backlog(srv, s);
		return 0;

	case LWS_CALLBACK_SERVER_WRITEABLE:
		return (s = c->s) ? ws_writeable(srv, wsi, s) : 0;

	case LWS_CALLBACK_TIMER:
		return (s = c->s) ? ws_timer(srv, wsi, s) : 0;

	case LWS_CALLBACK_CLOSED:
		if ((s = c->s)) {
			c->s = NULL;
			if (s->close_code)
				discard_input(wsi);
			session_close(srv, s);
		}
		return 0;

	case LWS_CALLBACK_EVENT_WAIT_CANCELLED:
		if (!srv)
			return 0;
		adopt_handed(srv);
		for (s = srv->open; s; s = s->next)
			if (__atomic_load_n(&s->wake, __ATOMIC_ACQUIRE) &&
			    __atomic_exchange_n(&s->wake, 0, __ATOMIC_ACQ_REL))
				session_service(srv, s);
		return 0;

	default:
		break;
	}
	return lws_callback_http_dummy(wsi, reason, user, in, len);
}

static const struct lws_protocols protocols[] = {
	{ "http", callback, sizeof(struct conn), 4096, 0, NULL, 0 },
	{ PROTOCOL_NAME, callback, sizeof(struct conn), 4096, 0, NULL, 0 },
	{ NULL, NULL, 0, 0, 0, NULL, 0 },
};

static void *service_main(void *arg)
{
	struct agent_server *srv = arg;

	while (!__atomic_load_n(&srv->stop, __ATOMIC_ACQUIRE))
		if (lws_service(srv->lws, 0) < 0)
			break;
	/* every client gets a close frame, 1001 "going away", not a bare
	 * TCP close (1006 in a browser); 3 s for them, then lws closes what
	 * is left (a client that does not read its socket) */
	for (struct session *s = srv->open; s; s = s->next)
		session_begin_close(srv, s, AGENT_SERVER_CLOSE_GOING_AWAY, "server shutting down");
	uint64_t deadline = agent_server_now_ns() + 3000000000ull;
	while (srv->open && agent_server_now_ns() < deadline)
		if (lws_service(srv->lws, 0) < 0)
			break;
	/* closes every connection left: CLOSED for each, on this thread */
	lws_context_destroy(srv->lws);
	srv->lws = NULL;
	return NULL;
}

/* ------------------------------------------------------------ lifecycle */

static int register_agents(struct agent_server *srv)
{
	struct ureg_factory f = { .create = agent_create, .scope = UREG_SCOPE_CONTEXT };
	int rc;

	f.arg = (void *)&echo_ops;
	if ((rc = ureg_agent_reg_register_factory(srv->agents, "echo", &f)))
		return rc;
	f.arg = (void *)&fail_ops;
	return ureg_agent_reg_register_factory(srv->agents, "fail", &f);
}

int agent_server_start(const struct agent_server_opts *o, struct agent_server **out)
{
	struct lws_context_creation_info info;
	struct agent_server *srv;
	int rc;

	if (!o || !out || o->port < 0 || o->port > 65535)
		return -EINVAL;
	if (!(srv = calloc(1, sizeof(*srv))))
		return -ENOMEM;
	srv->verbose = o->verbose;
	srv->nworkers = o->workers ? o->workers : 2;
	srv->max_message = o->max_message ? o->max_message : AGENT_SERVER_MAX_REQUEST;
	srv->max_runs = o->max_runs ? o->max_runs : AGENT_SERVER_MAX_RUNS;
	srv->queue_soft = o->queue_soft ? o->queue_soft : AGENT_SERVER_QUEUE_SOFT;
	srv->queue_hard = o->queue_hard ? o->queue_hard : AGENT_SERVER_QUEUE_HARD;
	if (srv->queue_hard < srv->queue_soft)
		srv->queue_hard = srv->queue_soft;
	srv->stall_ms = o->stall_ms ? o->stall_ms : AGENT_SERVER_STALL_MS;
	srv->max_conns = o->max_conns ? o->max_conns : AGENT_SERVER_MAX_CONNS;
	srv->ctx_quota = o->ctx_quota ? o->ctx_quota : AGENT_SERVER_CTX_QUOTA;
	srv->report_ms = o->report_ms ? o->report_ms : AGENT_SERVER_REPORT_MS;
	srv->sock_buf = o->sock_buf == SIZE_MAX ? 0 : o->sock_buf ? o->sock_buf :
			AGENT_SERVER_SOCK_BUF;
	if (srv->sock_buf > INT_MAX / 2)
		srv->sock_buf = INT_MAX / 2;
	srv->config = o->config;
	if (o->allow_origin && !(srv->allow_origin = strdup(o->allow_origin))) {
		free(srv);
		return -ENOMEM;
	}
	pthread_mutex_init(&srv->idle_lock, NULL);
	pthread_cond_init(&srv->idle_cond, NULL);
	pthread_mutex_init(&srv->adopt_lock, NULL);
	pthread_mutex_init(&srv->report_lock, NULL);
	{ /* the reporter's deadlines are CLOCK_MONOTONIC, like everything here */
		pthread_condattr_t ca;
		pthread_condattr_init(&ca);
		pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
		pthread_cond_init(&srv->report_cond, &ca);
		pthread_condattr_destroy(&ca);
	}
	if ((rc = ureg_agent_registry_new("agents", &srv->agents)))
		goto fail;
	if ((rc = ureg_registry_new(&session_type, "sessions", &srv->sessions)))
		goto fail;
	if ((rc = register_agents(srv)))
		goto fail;
	srv->bridge.emit = bridge_emit;
	srv->bridge.arg = srv;
	if ((rc = ureg_agent_set_bridge(srv->agents, &srv->bridge)))
		goto fail;

	lws_set_log_level(o->verbose ? (LLL_ERR | LLL_WARN | LLL_NOTICE) : LLL_ERR, NULL);
	memset(&info, 0, sizeof(info));
	info.port = CONTEXT_PORT_NO_LISTEN_SERVER; /* the front door listens */
	info.protocols = protocols;
	info.user = srv;
	info.options = LWS_SERVER_OPTION_DISABLE_IPV6;
	info.max_http_header_data = HTTP_HEADER_TABLE;
	info.count_threads = 1;
	info.fd_limit_per_thread = 0;
	srv->lws = lws_create_context(&info);
	if (!srv->lws) {
		rc = -EIO;
		goto fail;
	}
	if (!(srv->vhost = lws_get_vhost_by_name(srv->lws, "default"))) {
		rc = -EIO;
		goto fail_lws;
	}
	srv->workers = calloc(srv->nworkers, sizeof(*srv->workers));
	if (!srv->workers) {
		rc = -ENOMEM;
		goto fail_lws;
	}
	for (unsigned i = 0; i < srv->nworkers; i++) {
		struct worker *w = &srv->workers[i];
		w->srv = srv;
		pthread_mutex_init(&w->lock, NULL);
		pthread_cond_init(&w->cond, NULL);
		if (pthread_create(&w->th, NULL, worker_main, w)) {
			/* stop the ones already running */
			for (unsigned k = 0; k < i; k++) {
				pthread_mutex_lock(&srv->workers[k].lock);
				srv->workers[k].stop = true;
				pthread_cond_signal(&srv->workers[k].cond);
				pthread_mutex_unlock(&srv->workers[k].lock);
				pthread_join(srv->workers[k].th, NULL);
			}
			free(srv->workers);
			rc = -EAGAIN;
			goto fail_lws;
		}
	}
	if (pthread_create(&srv->service, NULL, service_main, srv)) {
		srv->nworkers = srv->nworkers; /* stop() joins them */
		srv->stop = 1;
		srv->service = 0;
		agent_server_stop(srv);
		return -EAGAIN;
	}
	if (pthread_create(&srv->reporter, NULL, reporter_main, srv)) {
		agent_server_stop(srv); /* workers and service thread */
		return -EAGAIN;
	}
	srv->reporter_started = true;
	{
		struct http_front_opts fo = {
			.host = o->host ? o->host : "127.0.0.1", .port = o->port,
			.max_headers = HTTP_MAX_HEADERS, .max_uri = HTTP_MAX_URI,
			.handoff = front_handoff, .arg = srv,
		};
		if ((rc = http_front_start(&fo, &srv->front))) {
			agent_server_stop(srv);
			return rc;
		}
		srv->port = http_front_port(srv->front);
	}
	*out = srv;
	return 0;

fail_lws:
	lws_context_destroy(srv->lws);
fail:
	if (srv->agents)
		ureg_agent_set_bridge(srv->agents, NULL);
	ureg_registry_destroy(srv->sessions);
	ureg_agent_registry_destroy(srv->agents);
	pthread_cond_destroy(&srv->idle_cond);
	pthread_mutex_destroy(&srv->idle_lock);
	pthread_mutex_destroy(&srv->adopt_lock);
	pthread_cond_destroy(&srv->report_cond);
	pthread_mutex_destroy(&srv->report_lock);
	free(srv->allow_origin);
	free(srv);
	return rc;
}

int agent_server_port(const struct agent_server *s)
{
	return s->port;
}

ureg_agent_reg_registry *agent_server_agents(struct agent_server *s)
{
	return s->agents;
}

void agent_server_stats(const struct agent_server *s, struct agent_server_stats *st)
{
	struct agent_server *srv = (struct agent_server *)s;

	memset(st, 0, sizeof(*st));
	for (unsigned i = 0; i < s->nworkers; i++) {
		st->runs += __atomic_load_n(&s->workers[i].runs, __ATOMIC_RELAXED);
		st->events_queued += __atomic_load_n(&s->workers[i].queued, __ATOMIC_RELAXED);
		st->events_dropped += __atomic_load_n(&s->workers[i].dropped, __ATOMIC_RELAXED);
	}
	st->events_sent = __atomic_load_n(&s->sent, __ATOMIC_RELAXED);
	pthread_mutex_lock(&srv->idle_lock);
	st->sessions_open = s->sessions_open;
	st->sessions_total = s->sessions_total;
	st->leaked_bytes = s->leaked_bytes;
	st->leaked_instances = s->leaked_instances;
	st->frames_dropped_slow = s->dropped_slow;
	st->queue_peak = s->queue_peak;
	pthread_mutex_unlock(&srv->idle_lock);
	st->closed_slow = __atomic_load_n(&s->closed_slow, __ATOMIC_RELAXED);
	st->closed_stalled = __atomic_load_n(&s->closed_stalled, __ATOMIC_RELAXED);
	st->refused_conns = __atomic_load_n(&s->refused_conns, __ATOMIC_RELAXED);
	st->rx_pauses = __atomic_load_n(&s->rx_pauses, __ATOMIC_RELAXED);
}

int agent_server_wait_idle(struct agent_server *s, int timeout_ms)
{
	struct timespec ts;
	int rc = 0;

	clock_gettime(CLOCK_REALTIME, &ts);
	ts.tv_sec += timeout_ms / 1000;
	ts.tv_nsec += (long)(timeout_ms % 1000) * 1000000L;
	if (ts.tv_nsec >= 1000000000L) {
		ts.tv_sec++;
		ts.tv_nsec -= 1000000000L;
	}
	pthread_mutex_lock(&s->idle_lock);
	while (s->sessions_open && rc == 0)
		rc = pthread_cond_timedwait(&s->idle_cond, &s->idle_lock, &ts);
	rc = s->sessions_open ? -ETIMEDOUT : 0;
	pthread_mutex_unlock(&s->idle_lock);
	return rc;
}

void agent_server_stop(struct agent_server *srv)
{
	if (!srv)
		return;
	/* 0. no new connection; no more reports (the reporter pushes to
	 *    sessions) */
	http_front_stop(srv->front);
	srv->front = NULL;
	if (srv->reporter_started) {
		pthread_mutex_lock(&srv->report_lock);
		srv->report_stop = true;
		pthread_cond_signal(&srv->report_cond);
		pthread_mutex_unlock(&srv->report_lock);
		pthread_join(srv->reporter, NULL);
	}
	/* 1. workers finish what they hold and refuse new runs (the service
	 *    thread keeps running: their events still flow out) */
	for (unsigned i = 0; i < srv->nworkers; i++) {
		struct worker *w = &srv->workers[i];
		pthread_mutex_lock(&w->lock);
		w->stop = true;
		pthread_cond_signal(&w->cond);
		pthread_mutex_unlock(&w->lock);
	}
	for (unsigned i = 0; i < srv->nworkers; i++)
		pthread_join(srv->workers[i].th, NULL);
	/* 2. no emitter is left: stop the service thread, which closes every
	 *    connection (and so destroys the remaining contexts) */
	__atomic_store_n(&srv->stop, 1, __ATOMIC_RELEASE);
	if (srv->service) {
		lws_cancel_service(srv->lws);
		pthread_join(srv->service, NULL);
	} else {
		lws_context_destroy(srv->lws);
	}
	/* connections the front passed on that lws never adopted */
	for (size_t i = 0; i < srv->nadopt; i++)
		close(srv->adopt_fds[i]);
	free(srv->adopt_fds);
	/* 3. registries: the bridge first, so no agent can reach us */
	ureg_agent_set_bridge(srv->agents, NULL);
	ureg_registry_destroy(srv->sessions);
	ureg_agent_registry_destroy(srv->agents);
	for (unsigned i = 0; i < srv->nworkers; i++) {
		pthread_cond_destroy(&srv->workers[i].cond);
		pthread_mutex_destroy(&srv->workers[i].lock);
	}
	free(srv->workers);
	pthread_cond_destroy(&srv->idle_cond);
	pthread_mutex_destroy(&srv->idle_lock);
	pthread_mutex_destroy(&srv->adopt_lock);
	pthread_cond_destroy(&srv->report_cond);
	pthread_mutex_destroy(&srv->report_lock);
	free(srv->allow_origin);
	free(srv);
}
