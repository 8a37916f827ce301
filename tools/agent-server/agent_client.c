/* SPDX-License-Identifier: MIT */
/*
 * Many WebSocket connections on one lws client context, one thread.  Each
 * connection is a little state machine (see agent_client.h for what it
 * checks).  Latency is the server's emit timestamp ("t", CLOCK_MONOTONIC,
 * so only meaningful on the same machine) to the client's receive.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jansson.h>
#include <libwebsockets.h>

#include "agent_client.h"

#define ECHO_STEPS 3 /* events per run: started, 3 x progress, completed */

struct client;

struct conn {
	struct client *cl;
	struct lws *wsi;
	unsigned idx;
	char nonce[20];
	unsigned sent, done;   /* runs sent / completed */
	unsigned expect;       /* next event of the current run: 0 started,
				* 1..ECHO_STEPS progress, ECHO_STEPS+1 completed */
	uint64_t last_seq;
	char user[32];
	bool drop, established, closed, finishing, settled;
};

struct client {
	const struct agent_client_opts *o;
	struct agent_client_result *r;
	struct conn *conns;
	unsigned open;           /* not yet closed (or failed) */
	uint64_t t_first, t_last;
	/* the sending window (--seconds) opens once every connection is
	 * established or failed: opening 5,000 takes seconds, and a window
	 * counted from the first connect would close before most had sent */
	uint64_t t_stop_sending;
	unsigned settled;        /* connections established or failed */
	uint32_t *lat;           /* microseconds */
	size_t nlat, caplat;
};

static uint64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static void violation(struct conn *c, const char *fmt, const char *detail)
{
	struct agent_client_result *r = c->cl->r;

	if (r->violations++ == 0) {
		char msg[200];
		snprintf(msg, sizeof(msg), fmt, detail ? detail : "");
		snprintf(r->first_violation, sizeof(r->first_violation), "c%u: %s", c->idx, msg);
	}
}

static bool more_to_send(struct conn *c)
{
	const struct agent_client_opts *o = c->cl->o;
	unsigned pipe = o->pipeline ? o->pipeline : 1;

	if (c->finishing || c->sent - c->done >= pipe)
		return false;
	if (o->runs)
		return c->sent < o->runs;
	return now_ns() < c->cl->t_stop_sending;
}

static bool all_done(struct conn *c)
{
	const struct agent_client_opts *o = c->cl->o;
	if (o->runs)
		return c->done >= o->runs;
	return c->done == c->sent && now_ns() >= c->cl->t_stop_sending;
}

static void record_latency(struct client *cl, uint64_t t_emit, uint64_t t_recv)
{
	if (cl->nlat == cl->caplat) {
		size_t n = cl->caplat ? cl->caplat * 2 : 1 << 16;
		uint32_t *p = realloc(cl->lat, n * sizeof(*p));
		if (!p)
			return;
		cl->lat = p;
		cl->caplat = n;
	}
	uint64_t us = t_recv > t_emit ? (t_recv - t_emit) / 1000 : 0;
	cl->lat[cl->nlat++] = us > UINT32_MAX ? UINT32_MAX : (uint32_t)us;
}

/* Returns -1 when the connection must close now. */
static int on_event(struct conn *c, const char *in, size_t len)
{
	struct client *cl = c->cl;
	uint64_t t_recv = now_ns();
	json_error_t err;
	json_t *e = json_loadb(in, len, 0, &err);
	char want[96];
	int rc = 0;

	cl->r->events++;
	cl->t_last = t_recv;
	if (!e) {
		violation(c, "unparsable event: %s", err.text);
		return 0;
	}
	const char *ev = json_string_value(json_object_get(e, "ev"));
	const char *user = json_string_value(json_object_get(e, "user"));
	json_int_t seq = json_integer_value(json_object_get(e, "seq"));
	json_t *data = json_object_get(e, "data");
	const char *input = json_string_value(json_object_get(data, "input"));
	json_t *t = json_object_get(e, "t");

	if (t)
		record_latency(cl, (uint64_t)json_integer_value(t), t_recv);
	if (!ev || !user) {
		violation(c, "event without ev/user: %s", in);
		goto out;
	}
	if (!c->user[0])
		snprintf(c->user, sizeof(c->user), "%s", user);
	else if (strcmp(c->user, user))
		violation(c, "event of another user %s", user);
	if (seq <= 0 || (uint64_t)seq <= c->last_seq)
		violation(c, "sequence not increasing: %s", in);
	else
		c->last_seq = (uint64_t)seq;
	snprintf(want, sizeof(want), "c%u:%s:r%u", c->idx, c->nonce, c->done);
	if (!input || strcmp(input, want)) {
		violation(c, "event of another run or user: %s", in);
		goto out;
	}
	if (c->expect == 0) {
		if (strcmp(ev, "started"))
			violation(c, "expected started: %s", in);
	} else if (c->expect <= ECHO_STEPS) {
		if (strcmp(ev, "progress") ||
		    json_integer_value(json_object_get(data, "step")) != (json_int_t)c->expect)
			violation(c, "expected progress in order: %s", in);
	} else if (strcmp(ev, "completed")) {
		violation(c, "expected completed: %s", in);
	}
	if (++c->expect > ECHO_STEPS + 1) {
		c->expect = 0;
		c->done++;
		cl->r->runs_completed++;
	}
	/* a dropped client goes away in the middle of its second run */
	if (c->drop && c->done == 1 && c->expect == 2) {
		c->finishing = true;
		cl->r->dropped++;
		rc = -1;
	} else if (all_done(c)) {
		c->finishing = true;
		cl->r->finished++;
		lws_close_reason(c->wsi, LWS_CLOSE_STATUS_NORMAL, NULL, 0);
		rc = -1;
	} else if (more_to_send(c)) {
		lws_callback_on_writable(c->wsi);
	}
out:
	json_decref(e);
	return rc;
}

/* one more connection established or failed: the last one opens the
 * sending window */
static void conn_settled(struct conn *c)
{
	struct client *cl = c->cl;

	if (c->settled)
		return;
	c->settled = true;
	if (++cl->settled == cl->o->conns && !cl->o->runs)
		cl->t_stop_sending = now_ns() + (uint64_t)cl->o->duration_ms * 1000000ull;
}

static void conn_closed(struct conn *c)
{
	if (c->closed)
		return;
	c->closed = true;
	c->cl->open--;
	if (!c->finishing)
		c->cl->r->failed++;
}

static int callback(struct lws *wsi, enum lws_callback_reasons reason,
		    void *user, void *in, size_t len)
{
	struct conn *c = user;
	unsigned char buf[LWS_PRE + 160];

	switch (reason) {
	case LWS_CALLBACK_CLIENT_CONNECTION_ERROR:
		if (c) {
			conn_settled(c);
			conn_closed(c);
		}
		return 0;
	case LWS_CALLBACK_CLIENT_ESTABLISHED:
		conn_settled(c);
		c->established = true;
		c->cl->r->connected++;
		if (!c->cl->t_first)
			c->cl->t_first = now_ns();
		lws_callback_on_writable(wsi);
		return 0;
	case LWS_CALLBACK_CLIENT_WRITEABLE: {
		if (!more_to_send(c)) {
			if (c->finishing || !all_done(c))
				return 0;
			/* duration over while this connection was idle */
			c->finishing = true;
			c->cl->r->finished++;
			lws_close_reason(wsi, LWS_CLOSE_STATUS_NORMAL, NULL, 0);
			return -1;
		}
		char input[64];
		snprintf(input, sizeof(input), "c%u:%s:r%u", c->idx, c->nonce, c->sent);
		json_t *req = json_pack("{s:s,s:s}", "run", "echo", "input", input);
		size_t n = req ? json_dumpb(req, (char *)buf + LWS_PRE, sizeof(buf) - LWS_PRE,
					    JSON_COMPACT | JSON_PRESERVE_ORDER) : 0;
		json_decref(req);
		if (!n || n > sizeof(buf) - LWS_PRE ||
		    lws_write(wsi, buf + LWS_PRE, n, LWS_WRITE_TEXT) < (int)n)
			return -1;
		c->sent++;
		if (more_to_send(c))
			lws_callback_on_writable(wsi);
		return 0;
	}
	case LWS_CALLBACK_CLIENT_RECEIVE:
		return on_event(c, in, len);
	case LWS_CALLBACK_CLIENT_CLOSED:
		conn_closed(c);
		return 0;
	default:
		break;
	}
	return lws_callback_http_dummy(wsi, reason, user, in, len);
}

static const struct lws_protocols protocols[] = {
	{ "ureg-agents", callback, 0, 65536, 0, NULL, 0 },
	{ NULL, NULL, 0, 0, 0, NULL, 0 },
};

static int cmp_u32(const void *a, const void *b)
{
	uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
	return x < y ? -1 : x > y;
}

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

int agent_client_run(const struct agent_client_opts *o, struct agent_client_result *r)
{
	struct lws_context_creation_info info;
	struct lws_context *lws;
	struct client cl = { .o = o, .r = r };
	uint64_t deadline;

	memset(r, 0, sizeof(*r));
	if (!o->conns || o->port <= 0)
		return -EINVAL;
	cl.conns = calloc(o->conns, sizeof(*cl.conns));
	if (!cl.conns)
		return -ENOMEM;
	memset(&info, 0, sizeof(info));
	info.port = CONTEXT_PORT_NO_LISTEN;
	info.protocols = protocols;
	info.options = LWS_SERVER_OPTION_DISABLE_IPV6;
	lws = lws_create_context(&info);
	if (!lws) {
		free(cl.conns);
		return -EIO;
	}
	srand((unsigned)now_ns());
	uint64_t start = now_ns();
	deadline = start + (uint64_t)(o->timeout_ms ? o->timeout_ms : 30000) * 1000000ull;
	cl.t_stop_sending = UINT64_MAX; /* set when every connection settled */
	for (unsigned i = 0; i < o->conns; i++) {
		struct conn *c = &cl.conns[i];
		struct lws_client_connect_info ci;

		c->cl = &cl;
		c->idx = i;
		snprintf(c->nonce, sizeof(c->nonce), "%08x%08x", (unsigned)rand(), (unsigned)rand());
		c->drop = o->drop_every && i % o->drop_every == o->drop_every - 1;
		memset(&ci, 0, sizeof(ci));
		ci.context = lws;
		ci.address = o->host ? o->host : "127.0.0.1";
		ci.port = o->port;
		ci.path = "/";
		ci.host = ci.address;
		ci.origin = NULL; /* not a browser: no Origin */
		ci.protocol = "ureg-agents";
		ci.userdata = c;
		ci.pwsi = &c->wsi;
		cl.open++;
		if (!lws_client_connect_via_info(&ci)) {
			conn_settled(c);
			conn_closed(c);
		}
	}
	while (cl.open > 0) {
		if (now_ns() > deadline) {
			r->timed_out = true;
			break;
		}
		if (lws_service(lws, 50) < 0)
			break;
	}
	lws_context_destroy(lws); /* closes what a timeout left open */

	/* distinct users across every connection that saw one */
	char **users = calloc(o->conns, sizeof(*users));
	unsigned nu = 0;
	for (unsigned i = 0; users && i < o->conns; i++)
		if (cl.conns[i].user[0])
			users[nu++] = cl.conns[i].user;
	if (users) {
		qsort(users, nu, sizeof(*users), cmp_str);
		for (unsigned i = 0; i < nu; i++)
			if (i == 0 || strcmp(users[i], users[i - 1]))
				r->distinct_users++;
		free(users);
	}
	if (cl.t_last > cl.t_first)
		r->seconds = (double)(cl.t_last - cl.t_first) / 1e9;
	if (r->seconds > 0)
		r->events_per_s = (double)r->events / r->seconds;
	if (cl.nlat) {
		qsort(cl.lat, cl.nlat, sizeof(*cl.lat), cmp_u32);
		r->p50_us = cl.lat[cl.nlat / 2];
		r->p99_us = cl.lat[(size_t)((double)cl.nlat * 0.99)];
		r->max_us = cl.lat[cl.nlat - 1];
	}
	free(cl.lat);
	free(cl.conns);
	return 0;
}

/* ------------------------------------------------- the scripted exchange */

struct exchange {
	const struct agent_exchange_opts *o;
	struct agent_exchange_result *r;
	struct lws *wsi;
	unsigned step;           /* current step */
	size_t want;             /* frames expected once this step is over */
	size_t off;              /* bytes of the step's message already sent */
	bool sending, closing, closed;
	size_t capframes;
	char *rx;                /* frame being received */
	size_t rx_len, rx_cap;
};

static size_t step_len(const struct agent_exchange_step *st)
{
	return st->len ? st->len : strlen(st->send);
}

static void exchange_begin_step(struct exchange *x);

/* Advance over every step whose frames are all in. */
static void exchange_progress(struct exchange *x)
{
	while (!x->closing && !x->sending && x->r->nframes >= x->want) {
		if (x->o->on_step)
			x->o->on_step(x->step, x->r, x->o->arg);
		x->r->steps_done++;
		if (++x->step == x->o->nsteps) {
			x->closing = true;
			lws_callback_on_writable(x->wsi);
			return;
		}
		exchange_begin_step(x);
	}
}

static void exchange_begin_step(struct exchange *x)
{
	const struct agent_exchange_step *st = &x->o->steps[x->step];

	x->want += st->expect;
	x->off = 0;
	x->sending = st->send != NULL;
	if (x->sending)
		lws_callback_on_writable(x->wsi);
}

static int exchange_write(struct exchange *x)
{
	const struct agent_exchange_step *st = &x->o->steps[x->step];
	size_t len = step_len(st), chunk = len - x->off;
	int flags;

	if (st->frag && chunk > st->frag)
		chunk = st->frag;
	flags = x->off ? LWS_WRITE_CONTINUATION : st->binary ? LWS_WRITE_BINARY : LWS_WRITE_TEXT;
	if (x->off + chunk < len)
		flags |= LWS_WRITE_NO_FIN;
	unsigned char *buf = malloc(LWS_PRE + chunk + 1);
	if (!buf)
		return -1;
	memcpy(buf + LWS_PRE, st->send + x->off, chunk);
	int n = lws_write(x->wsi, buf + LWS_PRE, chunk, (enum lws_write_protocol)flags);
	free(buf);
	if (n < (int)chunk)
		return -1;
	x->off += chunk;
	if (x->off < len) {
		lws_callback_on_writable(x->wsi);
		return 0;
	}
	x->sending = false;
	exchange_progress(x);
	return 0;
}

static int exchange_receive(struct exchange *x, const void *in, size_t len)
{
	struct agent_exchange_result *r = x->r;

	if (x->rx_len + len + 1 > x->rx_cap) {
		size_t cap = x->rx_cap ? x->rx_cap : 4096;
		while (cap < x->rx_len + len + 1)
			cap *= 2;
		char *p = realloc(x->rx, cap);
		if (!p)
			return -1;
		x->rx = p;
		x->rx_cap = cap;
	}
	memcpy(x->rx + x->rx_len, in, len);
	x->rx_len += len;
	if (!lws_is_final_fragment(x->wsi))
		return 0;
	x->rx[x->rx_len] = 0;
	if (r->nframes == x->capframes) {
		size_t cap = x->capframes ? 2 * x->capframes : 16;
		char **p = realloc(r->frames, cap * sizeof(*p));
		if (!p)
			return -1;
		r->frames = p;
		x->capframes = cap;
	}
	r->frames[r->nframes++] = x->rx; /* the buffer becomes the frame */
	x->rx = NULL;
	x->rx_len = x->rx_cap = 0;
	exchange_progress(x);
	return 0;
}

static int exchange_callback(struct lws *wsi, enum lws_callback_reasons reason,
			     void *user, void *in, size_t len)
{
	struct exchange *x = user;

	switch (reason) {
	case LWS_CALLBACK_CLIENT_CONNECTION_ERROR:
		if (x)
			x->closed = true;
		return 0;
	case LWS_CALLBACK_CLIENT_ESTABLISHED:
		x->r->connected = true;
		if (x->o->nsteps) {
			exchange_begin_step(x);
			exchange_progress(x);
		} else {
			x->closing = true;
			lws_callback_on_writable(wsi);
		}
		return 0;
	case LWS_CALLBACK_CLIENT_WRITEABLE:
		if (x->closing) {
			lws_close_reason(wsi, LWS_CLOSE_STATUS_NORMAL, NULL, 0);
			return -1;
		}
		return x->sending ? exchange_write(x) : 0;
	case LWS_CALLBACK_CLIENT_RECEIVE:
		return exchange_receive(x, in, len);
	case LWS_CALLBACK_CLIENT_CLOSED:
		if (!x->closing)
			x->r->closed_by_peer = true;
		x->closed = true;
		return 0;
	default:
		break;
	}
	return lws_callback_http_dummy(wsi, reason, user, in, len);
}

static const struct lws_protocols exchange_protocols[] = {
	{ "ureg-agents", exchange_callback, 0, 65536, 0, NULL, 0 },
	{ NULL, NULL, 0, 0, 0, NULL, 0 },
};

int agent_exchange_run(const struct agent_exchange_opts *o, struct agent_exchange_result *r)
{
	struct lws_context_creation_info info;
	struct lws_client_connect_info ci;
	struct lws_context *lws;
	struct exchange x = { .o = o, .r = r };

	memset(r, 0, sizeof(*r));
	if (!o || o->port <= 0 || (o->nsteps && !o->steps))
		return -EINVAL;
	memset(&info, 0, sizeof(info));
	info.port = CONTEXT_PORT_NO_LISTEN;
	info.protocols = exchange_protocols;
	info.options = LWS_SERVER_OPTION_DISABLE_IPV6;
	if (!(lws = lws_create_context(&info)))
		return -EIO;
	memset(&ci, 0, sizeof(ci));
	ci.context = lws;
	ci.address = o->host ? o->host : "127.0.0.1";
	ci.port = o->port;
	ci.path = "/";
	ci.host = ci.address;
	ci.origin = NULL; /* not a browser: no Origin */
	ci.protocol = "ureg-agents";
	ci.userdata = &x;
	ci.pwsi = &x.wsi;
	uint64_t deadline = now_ns() + (uint64_t)(o->timeout_ms ? o->timeout_ms : 10000) * 1000000ull;
	if (!lws_client_connect_via_info(&ci))
		x.closed = true;
	while (!x.closed) {
		if (now_ns() > deadline) {
			r->timed_out = true;
			break;
		}
		if (lws_service(lws, 50) < 0)
			break;
	}
	lws_context_destroy(lws);
	free(x.rx);
	return 0;
}

void agent_exchange_free(struct agent_exchange_result *r)
{
	for (size_t i = 0; i < r->nframes; i++)
		free(r->frames[i]);
	free(r->frames);
	r->frames = NULL;
	r->nframes = 0;
}
