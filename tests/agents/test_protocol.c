/* SPDX-License-Identifier: MIT */
/*
 * The agent server's protocol over the real wire: the server in this
 * process on a loopback port, one scripted libwebsockets client
 * (agent_exchange_run) per test.
 *
 *  - an unknown or invalid agent name gets one clear error event and
 *    creates nothing;
 *  - the fail agent gives started then error, in order, per run;
 *  - malformed messages (not JSON, not an object, missing or non-string
 *    fields, invalid UTF-8, empty, binary, larger than the limit) each get one error
 *    event, start no run, create no instance and allocate no context byte,
 *    and the connection keeps working (a large valid request sent in
 *    fragments still runs);
 *  - a session that runs more agent types than any fixed table would hold
 *    leaves no byte and no instance behind;
 *  - every frame is built by jansson: an agent key with '"' and '\' comes
 *    back escaped in its events and in the live report, and an agent whose
 *    payload is not JSON cannot break the frame (it arrives as a string).
 *
 * After every script the client closes; the test waits (bounded) for the
 * server to go idle and checks that no context is left and nothing leaked.
 */
#include <criterion/criterion.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>
#include <libwebsockets.h>
#include <ureg/ureg.h>
#include <ureg/registries.h>

#include "agent_client.h"
#include "agent_server.h"

#define EXPECTED_SHAPE "expected {\"run\":\"<agent>\",\"input\":\"<text>\"}"

static struct agent_server *srv;

static void start_server(void)
{
	struct agent_server_opts so = { .port = 0, .workers = 2 };

	signal(SIGPIPE, SIG_IGN);
	lws_set_log_level(LLL_ERR, NULL);
	cr_assert_eq(agent_server_start(&so, &srv), 0);
}

static int count_ctx(ureg_ctx *ctx, void *arg)
{
	(*(int *)arg)++;
	return 0;
}

/* Close reached the server: no context left, nothing leaked. */
static void stop_server_expect_clean(void)
{
	struct agent_server_stats st;
	int contexts = 0;

	cr_assert_eq(agent_server_wait_idle(srv, 10000), 0, "sessions still open");
	ureg_ctx_foreach(count_ctx, &contexts);
	cr_expect_eq(contexts, 0, "%d contexts left", contexts);
	agent_server_stats(srv, &st);
	cr_expect_eq(st.leaked_bytes, 0, "%llu context bytes leaked",
		     (unsigned long long)st.leaked_bytes);
	cr_expect_eq(st.leaked_instances, 0, "%llu instances leaked",
		     (unsigned long long)st.leaked_instances);
	agent_server_stop(srv);
	srv = NULL;
}

static void run_script(const struct agent_exchange_step *steps, unsigned n,
		       void (*on_step)(unsigned, const struct agent_exchange_result *, void *),
		       void *arg, struct agent_exchange_result *r)
{
	struct agent_exchange_opts o = {
		.port = agent_server_port(srv), .steps = steps, .nsteps = n,
		.timeout_ms = 15000, .on_step = on_step, .arg = arg,
	};
	cr_assert_eq(agent_exchange_run(&o, r), 0);
	cr_expect(r->connected);
	cr_expect_not(r->timed_out, "script stuck after step %u (%zu frames)",
		      r->steps_done, r->nframes);
	cr_expect_not(r->closed_by_peer, "the server closed the connection");
	cr_assert_eq(r->steps_done, n);
}

/* The frame as JSON; the test fails on anything else. */
static json_t *frame(const struct agent_exchange_result *r, size_t i)
{
	json_error_t err;
	cr_assert_lt(i, r->nframes);
	json_t *j = json_loads(r->frames[i], 0, &err);
	cr_assert_not_null(j, "frame %zu is not JSON (%s): %.200s", i, err.text, r->frames[i]);
	return j;
}

static const char *str(json_t *o, const char *k)
{
	return json_string_value(json_object_get(o, k));
}

static json_int_t num(json_t *o, const char *k)
{
	return json_integer_value(json_object_get(o, k));
}

/* A protocol error: seq 0, the user's id, an "error" containing @why, and
 * "agent" equal to @agent (NULL: absent). */
static void expect_protocol_error(const struct agent_exchange_result *r, size_t i,
				  const char *agent, const char *why)
{
	json_t *e = frame(r, i);
	cr_expect_str_eq(str(e, "ev"), "error", "%s", r->frames[i]);
	cr_expect_eq(num(e, "seq"), 0, "%s", r->frames[i]);
	cr_expect_not_null(str(e, "user"), "%s", r->frames[i]);
	cr_expect(str(e, "error") && strstr(str(e, "error"), why),
		  "frame %zu: wanted an error with \"%s\", got %s", i, why, r->frames[i]);
	if (agent)
		cr_expect(str(e, "agent") && !strcmp(str(e, "agent"), agent), "%s", r->frames[i]);
	else
		cr_expect_null(json_object_get(e, "agent"), "%s", r->frames[i]);
	json_decref(e);
}

/* The 5 frames of an echo run from @first: started, progress 1..3,
 * completed, every one carrying @input, seq increasing by 1. */
static void expect_echo_run(const struct agent_exchange_result *r, size_t first,
			    const char *input)
{
	static const char *evs[] = { "started", "progress", "progress", "progress", "completed" };
	json_int_t seq0 = 0;

	for (size_t k = 0; k < 5; k++) {
		json_t *e = frame(r, first + k), *d = json_object_get(e, "data");
		cr_expect_str_eq(str(e, "ev"), evs[k], "frame %zu", first + k);
		cr_expect_str_eq(str(e, "agent"), "echo");
		cr_expect(str(d, "input") && !strcmp(str(d, "input"), input),
			  "frame %zu carries another input", first + k);
		if (k == 0)
			seq0 = num(e, "seq");
		cr_expect_eq(num(e, "seq"), seq0 + (json_int_t)k, "frame %zu out of order", first + k);
		if (k >= 1 && k <= 3)
			cr_expect_eq(num(d, "step"), (json_int_t)k);
		json_decref(e);
	}
	cr_expect_gt(seq0, 0);
}

/* Context of the user named in frame 0: its instances and bytes now. */
struct ctx_probe {
	const char *name;
	struct ureg_ctx_stats st;
	int found;
};

static int probe_ctx(ureg_ctx *ctx, void *arg)
{
	struct ctx_probe *p = arg;
	if (strcmp(ureg_ctx_name(ctx), p->name))
		return 0;
	ureg_ctx_stats(ctx, &p->st);
	p->found++;
	return 1;
}

static struct ureg_ctx_stats user_ctx(const struct agent_exchange_result *r)
{
	json_t *e = frame(r, 0);
	struct ctx_probe p = { .name = str(e, "user") };
	cr_assert_not_null(p.name, "%s", r->frames[0]);
	ureg_ctx_foreach(probe_ctx, &p);
	cr_assert_eq(p.found, 1, "no live context named %s", p.name);
	json_decref(e);
	return p.st;
}

/* on_step for scripts whose steps must change nothing in the context */
static void expect_nothing_created(unsigned i, const struct agent_exchange_result *r, void *arg)
{
	unsigned *checked = arg;
	struct ureg_ctx_stats st = user_ctx(r);
	cr_expect_eq(st.instances, 0, "step %u created an instance", i);
	cr_expect_eq(st.live_bytes, 0, "step %u allocated %zu context bytes", i, st.live_bytes);
	cr_expect_eq(st.total_allocations, 0, "step %u allocated in the context", i);
	(*checked)++;
}

/* ------------------------------------------------------------------ */

Test(protocol, an_unknown_or_invalid_agent_gets_one_clear_error_and_creates_nothing, .timeout = 30)
{
	static const struct agent_exchange_step steps[] = {
		{ .send = "{\"run\":\"nope\",\"input\":\"x\"}", .expect = 1 },
		{ .send = "{\"run\":\"\",\"input\":\"x\"}", .expect = 1 },
		{ .send = "{\"run\":\"has space\",\"input\":\"x\"}", .expect = 1 },
		{ .send = "{\"run\":\"\\\"quoted\\\"\\n\",\"input\":\"x\"}", .expect = 1 },
	};
	struct agent_exchange_result r;
	struct agent_server_stats st;
	unsigned checked = 0;

	start_server();
	run_script(steps, 4, expect_nothing_created, &checked, &r);
	cr_expect_eq(checked, 4);
	cr_assert_eq(r.nframes, 4, "one frame per request, got %zu", r.nframes);
	expect_protocol_error(&r, 0, "nope", "unknown agent");
	expect_protocol_error(&r, 1, "", "invalid agent name");
	expect_protocol_error(&r, 2, "has space", "invalid agent name");
	expect_protocol_error(&r, 3, "\"quoted\"\n", "invalid agent name"); /* escaped on the wire */
	agent_server_stats(srv, &st);
	cr_expect_eq(st.events_queued, 0, "no agent ran, so no agent event");
	agent_exchange_free(&r);
	stop_server_expect_clean();
}

static void fail_step(unsigned i, const struct agent_exchange_result *r, void *arg)
{
	struct ureg_ctx_stats st = user_ctx(r);
	/* one fail instance for both fail runs, then the echo instance */
	cr_expect_eq(st.instances, i < 2 ? 1 : 2, "after step %u", i);
	(*(unsigned *)arg)++;
}

Test(protocol, the_fail_agent_sends_started_then_error_in_order_and_leaks_nothing, .timeout = 30)
{
	static const struct agent_exchange_step steps[] = {
		{ .send = "{\"run\":\"fail\",\"input\":\"first\"}", .expect = 2 },
		{ .send = "{\"run\":\"fail\",\"input\":\"second\"}", .expect = 2 },
		{ .send = "{\"run\":\"echo\",\"input\":\"still works\"}", .expect = 5 },
	};
	static const char *inputs[] = { "first", "first", "second", "second" };
	struct agent_exchange_result r;
	unsigned checked = 0;

	start_server();
	run_script(steps, 3, fail_step, &checked, &r);
	cr_expect_eq(checked, 3);
	cr_assert_eq(r.nframes, 9, "got %zu frames", r.nframes);
	for (size_t i = 0; i < 4; i++) {
		json_t *e = frame(&r, i), *d = json_object_get(e, "data");
		cr_expect_str_eq(str(e, "ev"), i % 2 ? "error" : "started", "frame %zu: %s", i, r.frames[i]);
		cr_expect_str_eq(str(e, "agent"), "fail");
		cr_expect_eq(num(e, "seq"), (json_int_t)i + 1, "frame %zu: %s", i, r.frames[i]);
		cr_expect(str(d, "input") && !strcmp(str(d, "input"), inputs[i]), "%s", r.frames[i]);
		if (i % 2)
			cr_expect(str(d, "error") && !strcmp(str(d, "error"), "this agent always fails"),
				  "%s", r.frames[i]);
		json_decref(e);
	}
	expect_echo_run(&r, 4, "still works");
	agent_exchange_free(&r);
	stop_server_expect_clean();
}

Test(protocol, malformed_messages_get_one_clear_error_each_and_change_nothing, .timeout = 30)
{
	/* one request just over the limit, sent in 16 KiB fragments: refused
	 * while it streams in, never buffered */
	size_t big = AGENT_SERVER_MAX_REQUEST + 1;
	char *huge = malloc(big + 1);
	cr_assert_not_null(huge);
	int n = snprintf(huge, big + 1, "{\"run\":\"echo\",\"input\":\"");
	memset(huge + n, 'a', big - (size_t)n - 2);
	memcpy(huge + big - 2, "\"}", 3);
	cr_assert_eq(strlen(huge), big);

	static const char bin[] = "{\"run\":\"echo\",\"input\":\"binary\"}";
	const struct agent_exchange_step steps[] = {
		{ .send = "hello", .expect = 1 },
		{ .send = "{\"run\":\"echo\",", .expect = 1 },
		{ .send = "[\"echo\",\"x\"]", .expect = 1 },
		{ .send = "{}", .expect = 1 },
		{ .send = "{\"input\":\"x\"}", .expect = 1 },
		{ .send = "{\"run\":5,\"input\":\"x\"}", .expect = 1 },
		{ .send = "{\"run\":\"echo\"}", .expect = 1 },
		{ .send = "{\"run\":\"echo\",\"input\":7}", .expect = 1 },
		{ .send = "{\"run\":\"echo\",\"input\":\"\\ud800\"}", .expect = 1 },
		{ .send = "\xff\xfe{}", .expect = 1 },
		{ .send = "", .expect = 1 },
		{ .send = huge, .len = big, .frag = 16384, .expect = 1 },
		{ .send = bin, .binary = true, .expect = 1 },
	};
	static const struct { const char *agent, *why; } want[] = {
		{ NULL, "request is not JSON" },
		{ NULL, "request is not JSON" },
		{ NULL, "request is not a JSON object" },
		{ NULL, "missing \"run\"" },
		{ NULL, "missing \"run\"" },
		{ NULL, "\"run\" is not a string" },
		{ "echo", "missing \"input\"" },
		{ "echo", "\"input\" is not a string" },
		{ NULL, "request is not JSON" },
		{ NULL, "request is not JSON" },
		{ NULL, "request is not JSON" },
		{ NULL, "request too large (limit 65536 bytes)" },
		{ NULL, "binary message refused" },
	};
	const unsigned nsteps = sizeof(steps) / sizeof(steps[0]);
	struct agent_exchange_result r;
	struct agent_server_stats st;
	unsigned checked = 0;

	cr_assert_eq(nsteps, sizeof(want) / sizeof(want[0]));
	start_server();
	run_script(steps, nsteps, expect_nothing_created, &checked, &r);
	cr_expect_eq(checked, nsteps);
	cr_assert_eq(r.nframes, nsteps, "one frame per bad request, got %zu", r.nframes);
	for (unsigned i = 0; i < nsteps; i++) {
		expect_protocol_error(&r, i, want[i].agent, want[i].why);
		if (i < nsteps - 2) { /* the shape errors also say what was expected */
			json_t *e = frame(&r, i);
			cr_expect(str(e, "error") && strstr(str(e, "error"), EXPECTED_SHAPE),
				  "frame %u does not say what is expected: %s", i, r.frames[i]);
			json_decref(e);
		}
	}
	agent_server_stats(srv, &st);
	cr_expect_eq(st.runs, 0, "a malformed request started a run");
	cr_expect_eq(st.events_queued, 0);
	agent_exchange_free(&r);
	free(huge);
	stop_server_expect_clean();
}

Test(protocol, the_connection_keeps_working_and_a_large_request_in_fragments_runs, .timeout = 30)
{
	/* 30,000 bytes of input: one request of ~30 KB, sent in 4 KiB
	 * fragments and read by lws in 4 KiB pieces, joined by the server */
	size_t in_len = 30000;
	char *input = malloc(in_len + 1), *req = malloc(in_len + 64);
	cr_assert(input && req);
	for (size_t i = 0; i < in_len; i++)
		input[i] = (char)('a' + i % 26);
	input[in_len] = 0;
	snprintf(req, in_len + 64, "{\"run\":\"echo\",\"input\":\"%s\"}", input);
	const struct agent_exchange_step steps[] = {
		{ .send = "not json", .expect = 1 },
		{ .send = "{\"run\":\"echo\",\"input\":\"after the error\"}", .expect = 5 },
		{ .send = req, .frag = 4096, .expect = 5 },
		{ .send = "{\"run\":\"nope\",\"input\":\"x\"}", .expect = 1 },
		{ .send = "{\"run\":\"echo\",\"input\":\"last\"}", .expect = 5 },
	};
	struct agent_exchange_result r;
	struct agent_server_stats st;

	start_server();
	run_script(steps, 5, NULL, NULL, &r);
	cr_assert_eq(r.nframes, 17, "got %zu frames", r.nframes);
	expect_protocol_error(&r, 0, NULL, "request is not JSON");
	expect_echo_run(&r, 1, "after the error");
	expect_echo_run(&r, 6, input);
	expect_protocol_error(&r, 11, "nope", "unknown agent");
	expect_echo_run(&r, 12, "last");
	/* a worker counts a run after its last event is queued: the counters
	 * are final once the session is gone */
	cr_assert_eq(agent_server_wait_idle(srv, 10000), 0);
	agent_server_stats(srv, &st);
	cr_expect_eq(st.runs, 4, "3 echo runs and the unknown agent's attempt");
	agent_exchange_free(&r);
	free(req);
	free(input);
	stop_server_expect_clean();
}

/* ---------------------------------------- many agent types per session */

#define MANY 20 /* more than the 8 the first version tracked */

struct many_agent {
	struct ureg_agent base;
	char *scratch; /* context memory, freed by destroy */
};

static int many_run(struct ureg_agent *a, const char *input)
{
	struct many_agent *m = (struct many_agent *)a;
	char data[96];
	int n = snprintf(data, sizeof(data), "{\"input\":\"%s\"}", input);

	ureg_ctx_free(a->ctx, m->scratch);
	m->scratch = ureg_ctx_alloc(a->ctx, 1000);
	ureg_agent_emit(a, UREG_AGENT_STARTED, data, (size_t)n);
	ureg_agent_emit(a, UREG_AGENT_COMPLETED, data, (size_t)n);
	return m->scratch ? 0 : -ENOMEM;
}

static void many_destroy(struct ureg_agent *a, ureg_ctx *ctx)
{
	struct many_agent *m = (struct many_agent *)a;
	ureg_ctx_free(ctx, m->scratch);
	ureg_ctx_free(ctx, m);
}

static const struct ureg_agent_ops many_ops = { .run = many_run, .destroy = many_destroy };

static int many_create(ureg_ctx *ctx, void *arg, void **out)
{
	struct many_agent *m = ureg_ctx_calloc(ctx, 1, sizeof(*m));
	if (!m)
		return -ENOMEM;
	m->base.ops = &many_ops;
	*out = m;
	return 0;
}

static void many_step(unsigned i, const struct agent_exchange_result *r, void *arg)
{
	struct ureg_ctx_stats st = user_ctx(r);
	/* runs 0..MANY-1 each add an agent; the second round reuses them */
	cr_expect_eq(st.instances, i < MANY ? i + 1 : MANY, "after step %u", i);
	cr_expect_gt(st.live_bytes, 0);
	(*(unsigned *)arg)++;
}

Test(protocol, a_session_running_many_agent_types_leaves_no_byte_and_no_instance, .timeout = 30)
{
	static char reqs[2 * MANY][64];
	struct agent_exchange_step steps[2 * MANY];
	struct ureg_factory f = { .create = many_create, .scope = UREG_SCOPE_CONTEXT };
	struct agent_exchange_result r;
	char key[16];
	unsigned checked = 0;

	start_server();
	for (int i = 0; i < MANY; i++) {
		snprintf(key, sizeof(key), "many%d", i);
		cr_assert_eq(ureg_agent_reg_register_factory(agent_server_agents(srv), key, &f), 0);
	}
	for (int i = 0; i < 2 * MANY; i++) {
		snprintf(reqs[i], sizeof(reqs[i]), "{\"run\":\"many%d\",\"input\":\"r%d\"}", i % MANY, i);
		steps[i] = (struct agent_exchange_step){ .send = reqs[i], .expect = 2 };
	}
	run_script(steps, 2 * MANY, many_step, &checked, &r);
	cr_expect_eq(checked, 2 * MANY);
	cr_assert_eq(r.nframes, 4 * MANY);
	for (int i = 0; i < 2 * MANY; i++) {
		json_t *s = frame(&r, 2 * (size_t)i), *c = frame(&r, 2 * (size_t)i + 1);
		snprintf(key, sizeof(key), "many%d", i % MANY);
		cr_expect_str_eq(str(s, "ev"), "started");
		cr_expect_str_eq(str(c, "ev"), "completed");
		cr_expect_str_eq(str(s, "agent"), key);
		cr_expect_eq(num(c, "seq"), num(s, "seq") + 1);
		cr_expect_eq(num(s, "seq"), i < MANY ? 1 : 3, "run %d on a reused agent", i);
		json_decref(s);
		json_decref(c);
	}
	agent_exchange_free(&r);
	/* releasing all MANY agents must bring the context to zero */
	stop_server_expect_clean();
}

/* ------------------------------------------------------------------ */

/* an agent that emits its input as is: JSON or not */
static int raw_run(struct ureg_agent *a, const char *input)
{
	ureg_agent_emit(a, UREG_AGENT_STARTED, input, strlen(input));
	ureg_agent_emit(a, UREG_AGENT_COMPLETED, "{\"done\":true}", 13);
	return 0;
}

static void raw_destroy(struct ureg_agent *a, ureg_ctx *ctx)
{
	ureg_ctx_free(ctx, a);
}

static const struct ureg_agent_ops raw_ops = { .run = raw_run, .destroy = raw_destroy };

static int raw_create(ureg_ctx *ctx, void *arg, void **out)
{
	struct ureg_agent *a = ureg_ctx_calloc(ctx, 1, sizeof(*a));
	(void)arg;
	if (!a)
		return -ENOMEM;
	a->ops = &raw_ops;
	*out = a;
	return 0;
}

#define ODD_KEY "say\"hi\\"

/* the live report names the odd key among the agent registry's entries */
static bool report_has_odd_key(json_t *rep)
{
	json_t *regs = json_object_get(json_object_get(rep, "data"), "registries"), *r, *e;
	size_t i, k;

	json_array_foreach(regs, i, r)
		json_array_foreach(json_object_get(r, "entries"), k, e) {
			const char *key = json_is_string(e) ? json_string_value(e) :
					  str(e, "key");
			if (key && !strcmp(key, ODD_KEY))
				return true;
		}
	return false;
}

Test(protocol, keys_and_payloads_with_quotes_and_backslashes_reach_the_wire_escaped, .timeout = 30)
{
	static const char run_odd[] = "{\"run\":\"say\\\"hi\\\\\",\"input\":\"plain \\\"text\\\\\"}";
	const struct agent_exchange_step steps[] = {
		{ .send = run_odd, .expect = 2 },
		{ .send = "{\"watch\":true}", .expect = 1 },
		{ .send = "{\"watch\":false}", .expect = 0 },
	};
	struct ureg_factory f = { .create = raw_create, .scope = UREG_SCOPE_CONTEXT };
	struct agent_exchange_result r;

	start_server();
	cr_assert_eq(ureg_agent_reg_register_factory(agent_server_agents(srv), ODD_KEY, &f), 0);
	run_script(steps, 3, NULL, NULL, &r);
	cr_assert_geq(r.nframes, 3);
	json_t *s = frame(&r, 0), *c = frame(&r, 1), *rep = NULL;
	cr_expect_str_eq(str(s, "ev"), "started", "%s", r.frames[0]);
	cr_expect_str_eq(str(s, "agent"), ODD_KEY, "%s", r.frames[0]);
	/* the payload was not JSON: it comes as a string, unchanged */
	cr_expect(json_is_string(json_object_get(s, "data")), "%s", r.frames[0]);
	cr_expect_str_eq(str(s, "data"), "plain \"text\\", "%s", r.frames[0]);
	cr_expect_str_eq(str(c, "ev"), "completed", "%s", r.frames[1]);
	cr_expect_str_eq(str(c, "agent"), ODD_KEY, "%s", r.frames[1]);
	cr_expect(json_is_true(json_object_get(json_object_get(c, "data"), "done")), "%s",
		  r.frames[1]);
	for (size_t i = 2; i < r.nframes && !rep; i++) {
		json_t *e = frame(&r, i);
		if (str(e, "ev") && !strcmp(str(e, "ev"), "report"))
			rep = e;
		else
			json_decref(e);
	}
	cr_assert_not_null(rep, "no report frame");
	cr_expect(report_has_odd_key(rep), "the report does not list %s", ODD_KEY);
	json_decref(rep);
	json_decref(s);
	json_decref(c);
	agent_exchange_free(&r);
	stop_server_expect_clean();
}
