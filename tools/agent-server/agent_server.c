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

#include "server_int.h"

uint64_t agent_server_now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
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
	srv_rx_resume(s, RX_BACKLOG | RX_RUNS);
	lws_set_timer_usecs(s->wsi, 1);
}

/* rx_guard.c saw an unmasked frame from @arg's client (service thread,
 * inside lws's read): nothing of it reached lws; the wake-up closes it. */
static void session_unmasked(void *arg)
{
	struct session *s = arg;

	s->unmasked = true;
	if (!__atomic_exchange_n(&s->wake, 1, __ATOMIC_ACQ_REL))
		lws_cancel_service(s->srv->lws);
}

/* The service thread was woken for @s: a frame to write, a run slot free,
 * an unmasked frame, or the hard cap hit. */
static void session_service(struct agent_server *srv, struct session *s)
{
	if (s->close_code)
		return;
	if (s->unmasked) {
		__atomic_store_n(&srv->closed_unmasked, srv->closed_unmasked + 1, __ATOMIC_RELAXED);
		session_begin_close(srv, s, AGENT_SERVER_CLOSE_PROTOCOL, "%s", RX_GUARD_UNMASKED_WHY);
		return;
	}
	if (__atomic_load_n(&s->dropping, __ATOMIC_ACQUIRE)) {
		__atomic_store_n(&srv->closed_slow, srv->closed_slow + 1, __ATOMIC_RELAXED);
		session_begin_close(srv, s, AGENT_SERVER_CLOSE_SLOW,
				    "client too slow: outgoing queue over %zu bytes", srv->queue_hard);
		return;
	}
	srv_session_release_held(srv, s);
	srv_session_check_backlog(srv, s);
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
		srv_session_check_backlog(srv, s);
	if (s->held) /* the queue fell under the soft cap: held runs may go */
		srv_session_release_held(srv, s);
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
	if (s->unmasked) /* the client's answer to the close frame ends it */
		rx_guard_closing(lws_get_socket_fd(wsi));
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
		for (size_t i = 0; i < n; i++) {
			if (rx_guard_adopt(fds[i])) {
				close(fds[i]); /* past the guard's table */
				continue;
			}
			lws_adopt_socket_vhost(srv->vhost, fds[i]);
		}
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
		return srv_serve_http(srv, wsi, c, in ? (const char *)in : "/");

	case LWS_CALLBACK_HTTP_WRITEABLE:
		return srv_http_writeable(wsi, c);

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
		return srv_http_answer(srv, wsi, c);

	case LWS_CALLBACK_CLOSED_HTTP:
		if (c) {
			free(c->body);
			c->body = NULL;
			c->out = NULL;
		}
		break;

	case LWS_CALLBACK_FILTER_PROTOCOL_CONNECTION:
		if (!rx_guard_upgrade_ok(lws_get_socket_fd(wsi))) {
			lws_return_http_status(wsi, HTTP_STATUS_BAD_REQUEST, "a WebSocket upgrade "
					       "must be the first request of its connection");
			return -1;
		}
		if (!srv_origin_allowed(srv, wsi)) {
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
		if (!(s = srv_session_open(srv, wsi)))
			return -1; /* refuse: no context for this user */
		c->s = s;
		socket_caps(srv, wsi);
		rx_guard_websocket(lws_get_socket_fd(wsi), s);
		return 0;

	case LWS_CALLBACK_RECEIVE:
		if (!(s = c->s))
			return -1;
		if (s->close_code)
			return 0;
		srv_receive_piece(srv, s, wsi, in, len);
		srv_session_check_backlog(srv, s);
		return 0;

	case LWS_CALLBACK_SERVER_WRITEABLE:
		return (s = c->s) ? ws_writeable(srv, wsi, s) : 0;

	case LWS_CALLBACK_TIMER:
		return (s = c->s) ? ws_timer(srv, wsi, s) : 0;

	case LWS_CALLBACK_CLOSED:
		if ((s = c->s)) {
			c->s = NULL;
			rx_guard_forget(lws_get_socket_fd(wsi));
			if (s->close_code)
				discard_input(wsi);
			srv_session_close(srv, s);
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

/* the shutdown grace period is over: waking lws_service is all it does */
static void grace_over(lws_sorted_usec_list_t *sul)
{
	(void)sul;
}

static void *service_main(void *arg)
{
	struct agent_server *srv = arg;

	rx_guard_enter_thread();
	while (!__atomic_load_n(&srv->stop, __ATOMIC_ACQUIRE))
		if (lws_service(srv->lws, 0) < 0)
			break;
	/* every client gets a close frame, 1001 "going away", not a bare
	 * TCP close (1006 in a browser); the grace period for them, then lws
	 * closes what is left: a client that does not read its socket has no
	 * room for a close frame (lws would wait 5 s, PENDING_TIMEOUT_CLOSE_SEND,
	 * then give up) and is cut without one */
	for (struct session *s = srv->open; s; s = s->next)
		session_begin_close(srv, s, AGENT_SERVER_CLOSE_GOING_AWAY, "server shutting down");
	uint64_t deadline = agent_server_now_ns() +
			    AGENT_SERVER_SHUTDOWN_GRACE_MS * 1000000ull;
	/* lws_service() sleeps until lws's next timer, whatever its timeout
	 * argument (lib/plat/unix/unix-service.c); a close frame stuck behind
	 * a full socket has a 5 s one.  A timer of ours at the deadline ends
	 * the wait in time (measured before it: 5.0 s, not 3) */
	lws_sorted_usec_list_t grace;
	memset(&grace, 0, sizeof(grace));
	lws_sul_schedule(srv->lws, 0, &grace, grace_over,
			 (lws_usec_t)AGENT_SERVER_SHUTDOWN_GRACE_MS * 1000);
	while (srv->open && agent_server_now_ns() < deadline)
		if (lws_service(srv->lws, 0) < 0)
			break;
	lws_sul_cancel(&grace);
	/* closes every connection left: CLOSED for each, on this thread */
	lws_context_destroy(srv->lws);
	srv->lws = NULL;
	return NULL;
}

/* ------------------------------------------------------------ lifecycle */

static int register_agents(struct agent_server *srv)
{
	struct ureg_factory f = { .create = srv_agent_create, .scope = UREG_SCOPE_CONTEXT };
	int rc;

	f.arg = (void *)&srv_echo_ops;
	if ((rc = ureg_agent_reg_register_factory(srv->agents, "echo", &f)))
		return rc;
	f.arg = (void *)&srv_fail_ops;
	return ureg_agent_reg_register_factory(srv->agents, "fail", &f);
}

int agent_server_start(const struct agent_server_opts *o, struct agent_server **out)
{
	struct lws_context_creation_info info;
	struct agent_server *srv;
	int rc;

	if (!o || !out || o->port < 0 || o->port > 65535)
		return -EINVAL;
	if ((rc = rx_guard_init(session_unmasked)))
		return rc;
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
	if ((rc = ureg_registry_new(&srv_session_type, "sessions", &srv->sessions)))
		goto fail;
	if ((rc = register_agents(srv)))
		goto fail;
	srv->bridge.emit = srv_bridge_emit;
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
		if (pthread_create(&w->th, NULL, srv_worker_main, w)) {
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
	if (pthread_create(&srv->reporter, NULL, srv_reporter_main, srv)) {
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
