/* SPDX-License-Identifier: MIT */
/* Sessions, the bridge, the live report and the workers of the agent
   server (see server_int.h). */

#include "server_int.h"

static __thread struct worker *this_worker;

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

void srv_job_free(struct job *j)
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

const ureg_type srv_session_type = {
	.name = "session", .parent = &ureg_base_type,
	.item_destroy = session_item_destroy,
};

/* Last user gone: no run in flight, connection closed.  Not in a read
 * section (ureg_ctx_destroy). */
void srv_session_users_put(struct session *s)
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
void srv_session_push_error(struct session *s, const char *agent, long long id,
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
void srv_bridge_emit(const struct ureg_agent_event *ev, void *arg)
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
	else if (ev->data == srv_emitting_text) /* emit_json's: the value itself */
		data = json_incref((json_t *)srv_emitting_json);
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
void srv_report_wake(struct agent_server *srv)
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
json_t *srv_config_json(struct agent_server *srv)
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
		json_object_set_new(out, "config", srv_config_json(srv));
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

void *srv_reporter_main(void *arg)
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
			srv_session_push_error(s, j->key, j->id, "out of memory");
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
			srv_session_push_error(s, j->key, j->id, "agent run failed: %s", ureg_strerror(rc));
	} else {
		ureg_read_unlock();
		if (rc == -ENOENT)
			srv_session_push_error(s, j->key, j->id, "unknown agent");
		else if (rc == -EINVAL)
			srv_session_push_error(s, j->key, j->id, "invalid agent name (1 to %d printable "
					   "ASCII bytes, no space)", UREG_KEY_MAX);
		else
			srv_session_push_error(s, j->key, j->id, "cannot create the agent: %s", ureg_strerror(rc));
	}
done:
	__atomic_store_n(&this_worker->runs, this_worker->runs + 1, __ATOMIC_RELAXED);
	srv_job_free(j);
	/* a run slot is free: if the service thread holds a request for it,
	 * wake it (seq_cst pairs with session_dispatch: one of the two sees
	 * the other's write) */
	__atomic_sub_fetch(&s->inflight, 1, __ATOMIC_SEQ_CST);
	if (__atomic_load_n(&s->held_waiting, __ATOMIC_SEQ_CST))
		session_wake(s);
	srv_session_users_put(s);
}

void *srv_worker_main(void *arg)
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
bool srv_worker_push(struct worker *w, struct job *j)
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
