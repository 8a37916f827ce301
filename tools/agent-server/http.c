/* SPDX-License-Identifier: MIT */
/* The lws service thread's side of sessions, and HTTP (see server_int.h). */

#include "server_int.h"

#include "page.h"

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

void srv_rx_resume(struct session *s, unsigned why)
{
	why &= s->rx_paused;
	if (!why)
		return;
	s->rx_paused &= ~why;
	lws_rx_flow_control(s->wsi, LWS_RXFLOW_REASON_APPLIES_ENABLE | (int)why |
			    LWS_RXFLOW_REASON_FLAG_PROCESS_NOW);
}

/* The soft cap: stop reading over it, read again at half of it. */
void srv_session_check_backlog(struct agent_server *srv, struct session *s)
{
	size_t q = __atomic_load_n(&s->queued, __ATOMIC_RELAXED);

	if (q > srv->queue_soft)
		rx_pause(srv, s, RX_BACKLOG);
	else if (q <= srv->queue_soft / 2)
		srv_rx_resume(s, RX_BACKLOG);
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
	srv_session_check_backlog(srv, s);
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
			srv_rx_resume(s, RX_RUNS);
		}
	}
	__atomic_add_fetch(&s->inflight, 1, __ATOMIC_SEQ_CST);
	__atomic_add_fetch(&s->users, 1, __ATOMIC_RELAXED);
	if (!srv_worker_push(&srv->workers[s->worker], j)) {
		srv_job_free(j);
		__atomic_sub_fetch(&s->inflight, 1, __ATOMIC_SEQ_CST);
		__atomic_sub_fetch(&s->users, 1, __ATOMIC_RELAXED); /* connection still holds one */
	}
}

/* Held requests that may run now: a run slot came free or the queue fell
 * back under the soft cap (service thread). */
void srv_session_release_held(struct agent_server *srv, struct session *s)
{
	while (s->held && session_may_run(srv, s)) {
		struct job *j = s->held;
		s->held = j->next;
		if (!s->held) {
			__atomic_store_n(&s->held_waiting, 0, __ATOMIC_SEQ_CST);
			srv_rx_resume(s, RX_RUNS);
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
		srv_report_wake(srv);
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
		srv_session_push_error(s, NULL, -1, "request is not JSON (column %d: %s); "
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
			srv_session_push_error(s, NULL, -1, "\"watch\" is not a boolean; "
					   REQUEST_SHAPES);
		json_decref(root);
		return;
	}
	if (json_is_integer(id) && json_integer_value(id) >= 0 &&
	    json_integer_value(id) <= RUN_ID_MAX)
		run_id = json_integer_value(id);
	if (!json_is_object(root) || !json_is_string(run) || !json_is_string(input) ||
	    (id && run_id < 0)) {
		srv_session_push_error(s, json_string_value(run), -1, "%s; " REQUEST_SHAPES,
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
		srv_session_push_error(s, json_string_value(run), run_id, "out of memory");
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
void srv_receive_piece(struct agent_server *srv, struct session *s, struct lws *wsi,
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
		srv_session_push_error(s, NULL, -1, "binary message refused: send a JSON text message");
	else if (s->rx_refused)
		srv_session_push_error(s, NULL, -1, "request too large (limit %zu bytes) or out of memory",
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

struct session *srv_session_open(struct agent_server *srv, struct lws *wsi)
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

void srv_session_close(struct agent_server *srv, struct session *s)
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
		srv_job_free(j);
	}
	__atomic_store_n(&s->held_waiting, 0, __ATOMIC_SEQ_CST);
	session_set_watch(srv, s, false);
	if (srv->verbose)
		fprintf(stderr, "ureg-agent-server: %s: closed\n", s->id);
	/* no new event finds it; the entry's grace period then frees our ref */
	ureg_unregister(srv->sessions, s->id, UREG_SINGLETON);
	srv_session_users_put(s);
}

/* ------------------------------------------------------ HTTP (service thread) */
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
		json_object_set_new(o, "config", srv_config_json(srv));
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
	json_object_set_new(o, "closed_unmasked", json_integer((json_int_t)__atomic_load_n(
				    &srv->closed_unmasked, __ATOMIC_RELAXED)));
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
 * Cross-site WebSocket hijacking: a browser sends the page's Origin with
 * every WebSocket, so a page of another site could open sessions here.
 * Allowed: no Origin (not a browser), an Origin in --allow-origin (exact,
 * comma-separated), or, without that list, an Origin whose host[:port]
 * is the request's Host (the page this server served).
 */
bool srv_origin_allowed(struct agent_server *srv, struct lws *wsi)
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

/*
 * An answer is complete (HTTP callbacks): lws keeps the connection for the
 * next request (or closes it: -1).  That request's header block gets the
 * same limit as a first request's (rx_guard.c answers 431 past it; lws
 * alone would drop it past its table, without a status) - if nothing of
 * this answer is left in lws's buffer, since the guard writes its 431
 * directly on the socket.
 */
static int http_transaction_done(struct lws *wsi)
{
	if (!lws_partial_buffered(wsi))
		rx_guard_next_request(lws_get_socket_fd(wsi), HTTP_MAX_HEADERS);
	return lws_http_transaction_completed(wsi) ? -1 : 0;
}

/*
 * One reply: status line, headers, and the body written by srv_http_writeable
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
		return http_transaction_done(wsi);
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
int srv_http_answer(struct agent_server *srv, struct lws *wsi, struct conn *c)
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
int srv_serve_http(struct agent_server *srv, struct lws *wsi, struct conn *c, const char *uri)
{
	char cl[32] = "";

	rx_guard_http(lws_get_socket_fd(wsi));
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
		return srv_http_answer(srv, wsi, c);
	}
	long long body_len = cn > 0 ? strtoll(cl, NULL, 10) : 0;
	if (body_len > 0) {
		if (body_len > HTTP_MAX_BODY) {
			/* not worth reading: answer and close */
			c->status = HTTP_STATUS_REQ_ENTITY_TOO_LARGE;
			c->why = "request body too large (limit " HTTP_MAX_BODY_TEXT " bytes)";
			srv_http_answer(srv, wsi, c);
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
	return srv_http_answer(srv, wsi, c);
}

int srv_http_writeable(struct lws *wsi, struct conn *c)
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
	return http_transaction_done(wsi);
}
