/* SPDX-License-Identifier: MIT */
/*
 * The agent server's limits against hostile and slow clients, over real
 * sockets on 127.0.0.1 (see agent_server.h for the limits):
 *
 *  - clients that never read their socket cannot grow the server (a child
 *    process: its RSS is measured in /proc/PID/statm) past its caps, and
 *    are closed;
 *  - a client that reads late is paused (the server stops reading it), not
 *    closed, and then gets every event in order;
 *  - runs over max_runs are held, not refused, and run once a slot frees;
 *  - a held request does not start while the connection's queue is over
 *    the soft cap, so a client that stops reading gets no more runs;
 *  - past max_conns a connection is closed with 1013 and a reason;
 *  - an event past queue_hard closes the connection with 1008 and a reason;
 *  - max_message is configurable and its refusal says the limit.
 */
#include <criterion/criterion.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <jansson.h>
#include <libwebsockets.h>
#include <ureg/ureg.h>
#include <ureg/registries.h>

#include "agent_server.h"
#include "wire.h"

static struct agent_server *srv;

static void start(struct agent_server_opts so)
{
	signal(SIGPIPE, SIG_IGN);
	lws_set_log_level(LLL_ERR, NULL);
	cr_assert_eq(agent_server_start(&so, &srv), 0);
}

static void stop_expect_clean(void)
{
	struct agent_server_stats st;

	cr_assert_eq(agent_server_wait_idle(srv, 15000), 0, "sessions still open");
	agent_server_stats(srv, &st);
	cr_expect_eq(st.leaked_bytes, 0);
	cr_expect_eq(st.leaked_instances, 0);
	agent_server_stop(srv);
	srv = NULL;
}

/* GET /stats as JSON (fails the test otherwise) */
static json_t *stats(int port)
{
	json_error_t err;
	char *body = wire_http_get(port, "/stats", 5000);
	cr_assert_not_null(body, "GET /stats failed");
	json_t *j = json_loads(body, 0, &err);
	cr_assert_not_null(j, "/stats is not JSON: %s", err.text);
	free(body);
	return j;
}

static json_int_t stat_int(json_t *j, const char *k)
{
	json_t *v = json_object_get(j, k);
	cr_assert(json_is_integer(v), "/stats has no integer \"%s\"", k);
	return json_integer_value(v);
}

/* the only open connection's entry in /stats */
static json_t *only_conn(json_t *st)
{
	json_t *a = json_object_get(st, "connections");
	cr_assert_eq(json_array_size(a), 1);
	return json_array_get(a, 0);
}

static void send_text(int fd, const char *s)
{
	wire_ws_send(fd, 1, s, strlen(s), true);
}

/* the next frame as JSON */
static json_t *next_event(int fd)
{
	struct wire_frame f;
	json_error_t err;

	cr_assert_eq(wire_ws_read(fd, &f, 10000), 1, "no frame");
	cr_assert_eq(f.opcode, 1, "frame opcode %d (close %d %s)", f.opcode, f.close_code,
		     f.close_reason ? f.close_reason : "");
	json_t *e = json_loadb((const char *)f.data, f.len, 0, &err);
	cr_assert_not_null(e, "not JSON: %.200s", f.data);
	wire_frame_free(&f);
	return e;
}

static const char *str(json_t *o, const char *k)
{
	return json_string_value(json_object_get(o, k));
}

/* ---------------------------------------------- clients that never read */

#define NONREADERS 20
#define NONREADER_INPUT 60000

Test(limits, clients_that_never_read_cannot_grow_the_server_past_its_caps_and_are_closed,
     .timeout = 90)
{
	/* the client: echo runs of 60 KB input (6 x that comes back),
	 * sent as fast as the socket takes them, never a byte read */
	static const char *const args[] = {
		"--queue-soft", "64K", "--queue-hard", "4M", "--max-runs", "2",
		"--stall-ms", "1500", "--workers", "2", NULL,
	};
	int port, fds[NONREADERS];
	size_t off[NONREADERS] = { 0 }, flen;
	bool dead[NONREADERS] = { false };
	char reply[1024];
	pid_t pid = wire_server_spawn(args, &port);

	char *req = malloc(NONREADER_INPUT + 64);
	cr_assert_not_null(req);
	int n = snprintf(req, 64, "{\"run\":\"echo\",\"input\":\"");
	memset(req + n, 'x', NONREADER_INPUT);
	strcpy(req + n + NONREADER_INPUT, "\"}");
	unsigned char *frame = wire_ws_frame(1, req, strlen(req), &flen);

	uint64_t rss0 = wire_rss(pid), rss_max = rss0;
	for (int i = 0; i < NONREADERS; i++) {
		fds[i] = wire_ws_open(port, NULL, 4096, reply, sizeof(reply));
		cr_assert_geq(fds[i], 0, "handshake %d: %s", i, reply);
	}
	/* write until the server reports every one of them closed */
	uint64_t deadline = wire_now_ms() + 30000, next_stats = 0, sent = 0;
	json_int_t closed = 0, pauses = 0;
	while (closed < NONREADERS) {
		cr_assert_lt(wire_now_ms(), deadline, "only %lld of %d closed in 30 s",
			     (long long)closed, NONREADERS);
		for (int i = 0; i < NONREADERS; i++) {
			if (dead[i])
				continue;
			ssize_t w = send(fds[i], frame + off[i], flen - off[i], MSG_DONTWAIT | MSG_NOSIGNAL);
			if (w > 0) {
				sent += (uint64_t)w;
				off[i] = (off[i] + (size_t)w) % flen;
			} else if (w < 0 && errno != EAGAIN) {
				dead[i] = true; /* reset by the server's close */
			}
		}
		uint64_t rss = wire_rss(pid);
		if (rss > rss_max)
			rss_max = rss;
		if (wire_now_ms() >= next_stats) {
			json_t *st = stats(port);
			closed = stat_int(st, "closed_slow") + stat_int(st, "closed_stalled");
			pauses = stat_int(st, "rx_pauses");
			json_decref(st);
			next_stats = wire_now_ms() + 50;
		}
	}
	/* the bound: per client the soft cap, the output of the runs in
	 * flight (6 frames of up to 2 x 60 KB each) and requests being read or
	 * held, plus a fixed allowance for threads, lws and the allocator */
	uint64_t per_client = 64 * 1024 + 2 * 6 * 2 * NONREADER_INPUT + 3 * 65536;
	uint64_t fixed = 16u << 20;
#if defined(__SANITIZE_ADDRESS__)
	fixed *= 4; /* shadow memory and the quarantine */
	per_client *= 2;
#endif
	uint64_t bound = NONREADERS * per_client + fixed;
	/* stderr, not cr_log_info: criterion 2.4.1 leaks its log message
	 * (LeakSanitizer sees it in the sanitizer build) */
	fprintf(stderr, "%d non-reading clients sent %.1f MB; server RSS %.1f -> max %.1f MB "
		    "(bound %.1f MB), %lld read pauses",
		    NONREADERS, (double)sent / 1e6, (double)rss0 / 1e6, (double)rss_max / 1e6,
		    (double)(rss0 + bound) / 1e6, (long long)pauses);
	fprintf(stderr, "\n");
	cr_expect_gt(sent, (uint64_t)NONREADERS * 5 * flen, "the clients hardly sent anything");
	cr_expect_leq(rss_max - rss0, bound, "server RSS grew by %.1f MB, bound %.1f MB",
		      (double)(rss_max - rss0) / 1e6, (double)bound / 1e6);
	cr_expect_geq(pauses, NONREADERS, "every client was paused before it was closed");

	/* each one's connection is over: reading now ends (a close frame, or,
	 * when lws still held part of a frame, EOF or a reset) - never waits */
	for (int i = 0; i < NONREADERS; i++) {
		struct wire_frame f;
		size_t nf;
		int rc = wire_ws_read_until_close(fds[i], &f, &nf, 10000);
		cr_expect_neq(rc, -2, "client %d: the connection was not closed", i);
		if (rc == 1) {
			cr_expect_eq(f.close_code, AGENT_SERVER_CLOSE_SLOW);
			cr_expect(strstr(f.close_reason, "client stalled") ||
				  strstr(f.close_reason, "client too slow"), "reason: %s", f.close_reason);
			wire_frame_free(&f);
		}
		close(fds[i]);
	}
	/* and the server still serves */
	int fd = wire_ws_open(port, NULL, 0, reply, sizeof(reply));
	cr_assert_geq(fd, 0, "%s", reply);
	send_text(fd, "{\"run\":\"echo\",\"input\":\"after\"}");
	for (int k = 0; k < 5; k++) {
		json_t *e = next_event(fd);
		cr_expect_str_eq(str(json_object_get(e, "data"), "input"), "after");
		json_decref(e);
	}
	close(fd);
	cr_expect_eq(wire_server_stop(pid), 0, "the server did not exit cleanly");
	free(frame);
	free(req);
}

/* ------------------------------------------------- flood: big output */

#define FLOOD_PAD 16000

struct flood_agent {
	struct ureg_agent base;
};

static int flood_run(struct ureg_agent *a, const char *input)
{
	int n = atoi(input);
	size_t cap = FLOOD_PAD + 128;
	char *d = malloc(cap);

	if (!d)
		return -ENOMEM;
	int k = snprintf(d, cap, "{\"input\":\"%s\"}", input);
	ureg_agent_emit(a, UREG_AGENT_STARTED, d, (size_t)k);
	for (int i = 1; i <= n; i++) {
		k = snprintf(d, cap, "{\"input\":\"%s\",\"step\":%d,\"of\":%d,\"pad\":\"%0*d\"}",
			     input, i, n, FLOOD_PAD, 0);
		ureg_agent_emit(a, UREG_AGENT_PROGRESS, d, (size_t)k);
	}
	k = snprintf(d, cap, "{\"input\":\"%s\"}", input);
	ureg_agent_emit(a, UREG_AGENT_COMPLETED, d, (size_t)k);
	free(d);
	return 0;
}

static void plain_destroy(struct ureg_agent *a, ureg_ctx *ctx)
{
	ureg_ctx_free(ctx, a);
}

static const struct ureg_agent_ops flood_ops = { .run = flood_run, .destroy = plain_destroy };

static int plain_create(ureg_ctx *ctx, void *arg, void **out)
{
	struct ureg_agent *a = ureg_ctx_calloc(ctx, 1, sizeof(struct flood_agent));
	if (!a)
		return -errno;
	a->ops = arg;
	*out = a;
	return 0;
}

static void register_agent(const char *name, const struct ureg_agent_ops *ops)
{
	struct ureg_factory f = { .create = plain_create, .arg = (void *)ops,
				  .scope = UREG_SCOPE_CONTEXT };
	cr_assert_eq(ureg_agent_reg_register_factory(agent_server_agents(srv), name, &f), 0);
}

/* poll /stats until @pred holds for the only connection (bounded) */
static void wait_conn(int port, bool (*pred)(json_t *c), const char *what)
{
	uint64_t deadline = wire_now_ms() + 15000;
	for (;;) {
		json_t *st = stats(port);
		bool ok = pred(only_conn(st));
		char *last = json_dumps(only_conn(st), JSON_COMPACT);
		json_decref(st);
		if (ok || wire_now_ms() < deadline) {
			free(last);
			if (ok)
				return;
			continue;
		}
		cr_assert_fail("never saw: %s (last: %s)", what, last ? last : "?");
	}
}

static bool not_reading(json_t *c)
{
	return json_is_false(json_object_get(c, "reading"));
}

#define FLOOD_RUNS 16
#define FLOOD_EVENTS 64 /* x 16 KB: 1 MB per run, 16 MB in all */

Test(limits, a_client_that_reads_late_is_paused_not_closed_and_then_gets_every_event_in_order,
     .timeout = 60)
{
	char reply[1024];
	struct agent_server_stats st;

	start((struct agent_server_opts){ .queue_soft = 64 << 10, .queue_hard = 8 << 20,
					  .max_runs = 2, .stall_ms = 20000 });
	register_agent("flood", &flood_ops);
	int port = agent_server_port(srv);
	int fd = wire_ws_open(port, NULL, 4096, reply, sizeof(reply));
	cr_assert_geq(fd, 0, "%s", reply);
	for (int r = 0; r < FLOOD_RUNS; r++) {
		char msg[96];
		snprintf(msg, sizeof(msg), "{\"run\":\"flood\",\"input\":\"%d\"}", FLOOD_EVENTS + r);
		send_text(fd, msg); /* small: the socket takes them all */
	}
	/* 16 MB of output cannot fit the kernel's buffers: the queue passes
	 * the soft cap and the server stops reading this connection */
	wait_conn(port, not_reading, "the connection paused");
	/* now read: every run, every event, in order, no close */
	for (int r = 0; r < FLOOD_RUNS; r++) {
		char input[16];
		snprintf(input, sizeof(input), "%d", FLOOD_EVENTS + r);
		for (int k = 0; k < FLOOD_EVENTS + r + 2; k++) {
			json_t *e = next_event(fd), *d = json_object_get(e, "data");
			const char *want = k == 0 ? "started" : k <= FLOOD_EVENTS + r ? "progress" : "completed";
			cr_assert_str_eq(str(e, "ev"), want, "run %d event %d", r, k);
			cr_assert_str_eq(str(d, "input"), input, "run %d event %d", r, k);
			if (k && k <= FLOOD_EVENTS + r)
				cr_assert_eq(json_integer_value(json_object_get(d, "step")), k);
			json_decref(e);
		}
	}
	agent_server_stats(srv, &st);
	cr_expect_eq(st.closed_slow + st.closed_stalled, 0);
	cr_expect_geq(st.rx_pauses, 1);
	close(fd);
	stop_expect_clean();
}

/* ------------------------------------------------ runs over max_runs */

static pthread_mutex_t gate_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t gate_cond = PTHREAD_COND_INITIALIZER;
static bool gate_open;

static int gate_run(struct ureg_agent *a, const char *input)
{
	char d[96];
	int k = snprintf(d, sizeof(d), "{\"input\":\"%s\"}", input);

	ureg_agent_emit(a, UREG_AGENT_STARTED, d, (size_t)k);
	pthread_mutex_lock(&gate_lock);
	while (!gate_open)
		pthread_cond_wait(&gate_cond, &gate_lock);
	pthread_mutex_unlock(&gate_lock);
	ureg_agent_emit(a, UREG_AGENT_COMPLETED, d, (size_t)k);
	return 0;
}

static const struct ureg_agent_ops gate_ops = { .run = gate_run, .destroy = plain_destroy };

static bool two_in_flight_one_held(json_t *c)
{
	return json_integer_value(json_object_get(c, "runs_in_flight")) == 2 &&
	       json_is_false(json_object_get(c, "reading"));
}

Test(limits, runs_past_max_runs_are_held_and_run_in_order_once_a_slot_frees, .timeout = 30)
{
	char reply[1024];

	start((struct agent_server_opts){ .max_runs = 2 });
	register_agent("gate", &gate_ops);
	int port = agent_server_port(srv);
	int fd = wire_ws_open(port, NULL, 0, reply, sizeof(reply));
	cr_assert_geq(fd, 0, "%s", reply);
	send_text(fd, "{\"run\":\"gate\",\"input\":\"r0\"}");
	send_text(fd, "{\"run\":\"gate\",\"input\":\"r1\"}");
	send_text(fd, "{\"run\":\"gate\",\"input\":\"r2\"}");
	/* r0 runs (blocked in the gate), r1 waits for the worker, r2 is held
	 * by the server, which stopped reading the connection */
	wait_conn(port, two_in_flight_one_held, "2 runs in flight and the connection paused");
	json_t *e = next_event(fd);
	cr_expect_str_eq(str(e, "ev"), "started");
	json_decref(e);
	pthread_mutex_lock(&gate_lock);
	gate_open = true;
	pthread_cond_broadcast(&gate_cond);
	pthread_mutex_unlock(&gate_lock);
	/* r0 completed, then r1 and r2 in full: nothing refused */
	static const char *want[][2] = { { "completed", "r0" }, { "started", "r1" },
					 { "completed", "r1" }, { "started", "r2" },
					 { "completed", "r2" } };
	for (int k = 0; k < 5; k++) {
		e = next_event(fd);
		cr_expect_str_eq(str(e, "ev"), want[k][0], "event %d", k);
		cr_expect_str_eq(str(json_object_get(e, "data"), "input"), want[k][1], "event %d", k);
		json_decref(e);
	}
	close(fd);
	stop_expect_clean();
}

/* ------------------------------------------------------ max_conns */

Test(limits, a_connection_past_max_conns_is_closed_with_1013_and_a_reason, .timeout = 30)
{
	char reply[1024];
	struct wire_frame f;
	struct agent_server_stats st;

	start((struct agent_server_opts){ .max_conns = 2 });
	int port = agent_server_port(srv);
	int a = wire_ws_open(port, NULL, 0, reply, sizeof(reply));
	int b = wire_ws_open(port, NULL, 0, reply, sizeof(reply));
	cr_assert(a >= 0 && b >= 0);
	/* the two are open once each got an answer */
	send_text(a, "{\"run\":\"nope\",\"input\":\"\"}");
	send_text(b, "{\"run\":\"nope\",\"input\":\"\"}");
	json_decref(next_event(a));
	json_decref(next_event(b));
	int c = wire_ws_open(port, NULL, 0, reply, sizeof(reply));
	cr_assert_geq(c, 0, "%s", reply);
	cr_assert_eq(wire_ws_read(c, &f, 5000), 1);
	cr_expect_eq(f.opcode, 8);
	cr_expect_eq(f.close_code, AGENT_SERVER_CLOSE_FULL);
	cr_expect(f.close_reason && strstr(f.close_reason, "server full: 2 connections (limit 2)"),
		  "reason: %s", f.close_reason ? f.close_reason : "(none)");
	wire_frame_free(&f);
	close(c);
	agent_server_stats(srv, &st);
	cr_expect_eq(st.refused_conns, 1);
	cr_expect_eq(st.sessions_total, 2, "the refused connection got no context");
	/* a slot frees: a new connection works */
	close(a);
	cr_assert_eq(wire_ws_read(b, &f, 0) == -2, true);
	uint64_t deadline = wire_now_ms() + 10000;
	for (;;) {
		json_t *j = stats(port);
		json_int_t open = stat_int(j, "connections_open");
		json_decref(j);
		if (open == 1)
			break;
		cr_assert_lt(wire_now_ms(), deadline);
	}
	int d = wire_ws_open(port, NULL, 0, reply, sizeof(reply));
	cr_assert_geq(d, 0);
	send_text(d, "{\"run\":\"echo\",\"input\":\"in\"}");
	json_t *e = next_event(d);
	cr_expect_str_eq(str(e, "ev"), "started");
	json_decref(e);
	close(b);
	close(d);
	stop_expect_clean();
}

/* ------------------------------------------------------ queue_hard */

Test(limits, an_event_past_queue_hard_closes_the_connection_with_1008_and_a_reason, .timeout = 30)
{
	char reply[1024];
	struct wire_frame f;
	struct agent_server_stats st;
	size_t in_len = 20000; /* the first event alone is past the cap */
	char *req = malloc(in_len + 64);

	cr_assert_not_null(req);
	int n = snprintf(req, 64, "{\"run\":\"echo\",\"input\":\"");
	memset(req + n, 'y', in_len);
	strcpy(req + n + in_len, "\"}");
	start((struct agent_server_opts){ .queue_soft = 8 << 10, .queue_hard = 16 << 10 });
	int fd = wire_ws_open(agent_server_port(srv), NULL, 0, reply, sizeof(reply));
	cr_assert_geq(fd, 0, "%s", reply);
	send_text(fd, req);
	size_t nf;
	cr_assert_eq(wire_ws_read_until_close(fd, &f, &nf, 10000), 1, "no close frame");
	cr_expect_eq(nf, 0, "an event past the cap was sent");
	cr_expect_eq(f.close_code, AGENT_SERVER_CLOSE_SLOW);
	cr_expect(f.close_reason && strstr(f.close_reason, "client too slow: outgoing queue over 16384 bytes"),
		  "reason: %s", f.close_reason ? f.close_reason : "(none)");
	wire_frame_free(&f);
	close(fd);
	cr_assert_eq(agent_server_wait_idle(srv, 10000), 0);
	agent_server_stats(srv, &st);
	cr_expect_eq(st.closed_slow, 1);
	cr_expect_geq(st.frames_dropped_slow, 1);
	free(req);
	stop_expect_clean();
}

/* ---------------------------------------------------- max_message */

Test(limits, max_message_is_configurable_and_its_refusal_names_the_limit, .timeout = 30)
{
	char reply[1024], big[1100];

	start((struct agent_server_opts){ .max_message = 1000 });
	int fd = wire_ws_open(agent_server_port(srv), NULL, 0, reply, sizeof(reply));
	cr_assert_geq(fd, 0, "%s", reply);
	int n = snprintf(big, sizeof(big), "{\"run\":\"echo\",\"input\":\"");
	memset(big + n, 'z', 1001 - (size_t)n - 2);
	strcpy(big + 1001 - 2, "\"}");
	cr_assert_eq(strlen(big), 1001);
	send_text(fd, big);
	json_t *e = next_event(fd);
	cr_expect_str_eq(str(e, "ev"), "error");
	cr_expect(strstr(str(e, "error"), "request too large (limit 1000 bytes)"), "%s", str(e, "error"));
	json_decref(e);
	big[1001 - 3] = 0; /* 998 bytes + the closing quote and brace */
	strcat(big, "\"}");
	send_text(fd, big);
	e = next_event(fd);
	cr_expect_str_eq(str(e, "ev"), "started");
	json_decref(e);
	close(fd);
	stop_expect_clean();
}

/* ---------------------------------- held requests and the soft cap */

/* an agent that waits for the test to open its gate, then emits
 * BURST_EVENTS events of BURST_PAD bytes: its output lands all at once */
#define BURST_EVENTS 8
#define BURST_PAD 30000

static pthread_mutex_t burst_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t burst_cond = PTHREAD_COND_INITIALIZER;
static bool burst_open;

static int burst_run(struct ureg_agent *a, const char *input)
{
	char *d = malloc(BURST_PAD + 64);
	if (!d)
		return -ENOMEM;
	pthread_mutex_lock(&burst_lock);
	while (!burst_open)
		pthread_cond_wait(&burst_cond, &burst_lock);
	pthread_mutex_unlock(&burst_lock);
	int n = snprintf(d, BURST_PAD + 64, "{\"input\":\"%s\",\"pad\":\"%0*d\"}", input, BURST_PAD, 0);
	for (int i = 0; i < BURST_EVENTS; i++)
		ureg_agent_emit(a, i ? UREG_AGENT_PROGRESS : UREG_AGENT_STARTED, d, (size_t)n);
	ureg_agent_emit(a, UREG_AGENT_COMPLETED, "{}", 2);
	free(d);
	return 0;
}

static const struct ureg_agent_ops burst_ops = { .run = burst_run, .destroy = plain_destroy };

static json_int_t conn_int(json_t *c, const char *k)
{
	return json_integer_value(json_object_get(c, k));
}

static bool burst_running_echo_held(json_t *c)
{
	return conn_int(c, "runs_in_flight") == 1 && conn_int(c, "runs_held") == 1;
}

static bool held_over_soft_cap(json_t *c)
{
	return json_is_false(json_object_get(c, "reading")) &&
	       conn_int(c, "runs_in_flight") == 0 && conn_int(c, "runs_held") == 1 &&
	       conn_int(c, "queued_bytes") > (64 << 10);
}

/*
 * One run slot.  The burst agent takes it and waits; an echo request comes
 * in and is held (the slot is taken).  Its gate opens: 240 KB of output,
 * far over the 64 KiB soft cap for a client that reads nothing, and the
 * slot is free.  The held echo must stay held (before the rule it started
 * as soon as the slot freed); once the client reads, it runs.
 */
Test(limits, a_held_request_does_not_start_while_the_queue_is_over_the_soft_cap, .timeout = 60)
{
	char reply[1024];
	struct agent_server_stats st;

	burst_open = false;
	start((struct agent_server_opts){ .queue_soft = 64 << 10, .queue_hard = 16 << 20,
					  .max_runs = 1, .stall_ms = 30000 });
	register_agent("burst", &burst_ops);
	int port = agent_server_port(srv);
	/* a small receive buffer and no reading: the output piles up */
	int fd = wire_ws_open(port, NULL, 4096, reply, sizeof(reply));
	cr_assert_geq(fd, 0, "%s", reply);
	send_text(fd, "{\"run\":\"burst\",\"input\":\"g\"}");
	send_text(fd, "{\"run\":\"echo\",\"input\":\"held\"}");
	wait_conn(port, burst_running_echo_held, "the burst agent running and the echo held");
	pthread_mutex_lock(&burst_lock);
	burst_open = true;
	pthread_cond_broadcast(&burst_cond);
	pthread_mutex_unlock(&burst_lock);
	wait_conn(port, held_over_soft_cap, "the echo still held, nothing in flight, the queue "
		  "over the soft cap");
	agent_server_stats(srv, &st);
	cr_expect_eq(st.runs, 1, "%llu runs finished: the held echo ran for a client whose queue "
		     "is over the soft cap", (unsigned long long)st.runs);
	/* reading again lets the echo through, after the burst's events */
	for (int k = 0; k < BURST_EVENTS + 1; k++) {
		json_t *e = next_event(fd);
		cr_expect_str_eq(str(e, "agent"), "burst");
		json_decref(e);
	}
	for (int k = 0; k < 5; k++) {
		json_t *e = next_event(fd);
		cr_expect_str_eq(str(json_object_get(e, "data"), "input"), "held");
		json_decref(e);
	}
	close(fd);
	stop_expect_clean();
}
