/* SPDX-License-Identifier: MIT */
/*
 * What the page is built on (issue 12, points 4-5), over raw WebSockets
 * (wire.c) against the server in-process: run ids that find every event
 * of their run, and the live report a watching client receives - the
 * registry hierarchy and every user context's memory, updated each round,
 * a closed user dropped.  The browser test (browser_page.py) checks the
 * page that draws them.
 */
#include <criterion/criterion.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <jansson.h>
#include <libwebsockets.h>
#include <ureg/ureg.h>

#include "agent_server.h"
#include "wire.h"

static struct agent_server *srv;

static int start(unsigned report_ms)
{
	struct agent_server_opts so = { .report_ms = report_ms };
	signal(SIGPIPE, SIG_IGN);
	lws_set_log_level(LLL_ERR, NULL);
	cr_assert_eq(agent_server_start(&so, &srv), 0);
	return agent_server_port(srv);
}

static void stop(void)
{
	struct agent_server_stats st;
	cr_assert_eq(agent_server_wait_idle(srv, 10000), 0);
	agent_server_stats(srv, &st);
	cr_expect_eq(st.leaked_bytes, 0);
	cr_expect_eq(st.leaked_instances, 0);
	agent_server_stop(srv);
	srv = NULL;
}

static int ws_open(int port)
{
	char reply[1024];
	int fd = wire_ws_open(port, NULL, 0, reply, sizeof(reply));
	cr_assert_geq(fd, 0, "%s", reply);
	return fd;
}

static void send_text(int fd, const char *msg)
{
	wire_ws_send(fd, 1, msg, strlen(msg), true);
}

/* the next frame as JSON (fails the test after @timeout_ms) */
static json_t *next(int fd, int timeout_ms)
{
	struct wire_frame f;
	int rc = wire_ws_read(fd, &f, timeout_ms);
	cr_assert_eq(rc, 1, "no frame within %d ms (%d)", timeout_ms, rc);
	json_t *j = json_loads((const char *)f.data, 0, NULL);
	cr_assert_not_null(j, "not JSON: %s", f.data);
	wire_frame_free(&f);
	return j;
}

static const char *str(json_t *o, const char *k)
{
	return json_string_value(json_object_get(o, k));
}

/* the next report, skipping run events (5 s at most) */
static json_t *next_report(int fd)
{
	uint64_t until = wire_now_ms() + 5000;
	for (;;) {
		uint64_t now = wire_now_ms();
		cr_assert_lt(now, until, "no report within 5 s");
		json_t *j = next(fd, (int)(until - now));
		if (str(j, "ev") && !strcmp(str(j, "ev"), "report"))
			return j;
		json_decref(j);
	}
}

/* the context named @user in a report's data, or NULL */
static json_t *report_ctx(json_t *rep, const char *user)
{
	size_t i;
	json_t *c;
	json_array_foreach(json_object_get(json_object_get(rep, "data"), "contexts"), i, c)
		if (!strcmp(str(c, "name"), user))
			return c;
	return NULL;
}

static json_t *report_registry(json_t *rep, const char *name)
{
	size_t i;
	json_t *r;
	json_array_foreach(json_object_get(json_object_get(rep, "data"), "registries"), i, r)
		if (!strcmp(str(r, "name"), name))
			return r;
	return NULL;
}

static json_int_t num(json_t *o, const char *k)
{
	return json_integer_value(json_object_get(o, k));
}

Test(report, every_event_of_a_run_carries_the_id_its_request_gave, .timeout = 20)
{
	int port = start(0), fd = ws_open(port);
	static const char *want[] = { "started", "progress", "progress", "progress", "completed",
				      "started", "error" };

	send_text(fd, "{\"run\":\"echo\",\"input\":\"a\",\"id\":7}");
	send_text(fd, "{\"run\":\"fail\",\"input\":\"b\",\"id\":9007199254740991}");
	for (unsigned i = 0; i < 7; i++) {
		json_t *e = next(fd, 5000);
		cr_expect_str_eq(str(e, "ev"), want[i]);
		cr_expect_eq(num(e, "id"), i < 5 ? 7 : 9007199254740991ll, "event %u: %s", i,
			     json_dumps(e, JSON_COMPACT));
		json_decref(e);
	}
	/* without an id: none; a protocol error keeps the request's id */
	send_text(fd, "{\"run\":\"echo\",\"input\":\"c\"}");
	for (unsigned i = 0; i < 5; i++) {
		json_t *e = next(fd, 5000);
		cr_expect_null(json_object_get(e, "id"));
		json_decref(e);
	}
	send_text(fd, "{\"run\":\"nosuch\",\"input\":\"d\",\"id\":3}");
	json_t *e = next(fd, 5000);
	cr_expect_str_eq(str(e, "error"), "unknown agent");
	cr_expect_eq(num(e, "seq"), 0);
	cr_expect_eq(num(e, "id"), 3);
	json_decref(e);
	close(fd);
	stop();
}

Test(report, a_bad_id_or_watch_is_refused_and_changes_nothing, .timeout = 20)
{
	static const struct { const char *msg, *why; } cases[] = {
		{ "{\"run\":\"echo\",\"input\":\"x\",\"id\":-1}", "\"id\" is not an integer" },
		{ "{\"run\":\"echo\",\"input\":\"x\",\"id\":\"7\"}", "\"id\" is not an integer" },
		{ "{\"run\":\"echo\",\"input\":\"x\",\"id\":1.5}", "\"id\" is not an integer" },
		{ "{\"run\":\"echo\",\"input\":\"x\",\"id\":9007199254740992}", "\"id\" is not an integer" },
		{ "{\"watch\":1}", "\"watch\" is not a boolean" },
		{ "{\"watch\":\"yes\"}", "\"watch\" is not a boolean" },
	};
	struct agent_server_stats st;
	int port = start(0), fd = ws_open(port);

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		send_text(fd, cases[i].msg);
		json_t *e = next(fd, 5000);
		cr_expect_str_eq(str(e, "ev"), "error");
		cr_expect(str(e, "error") && strstr(str(e, "error"), cases[i].why), "%s -> %s",
			  cases[i].msg, str(e, "error"));
		cr_expect(str(e, "error") && strstr(str(e, "error"), "{\"watch\":true|false}"));
		json_decref(e);
	}
	agent_server_stats(srv, &st);
	cr_expect_eq(st.runs, 0, "a refused request ran");
	close(fd);
	stop();
}

Test(report, a_watching_client_gets_the_hierarchy_and_its_own_context, .timeout = 20)
{
	int port = start(0), fd = ws_open(port);

	send_text(fd, "{\"run\":\"echo\",\"input\":\"remember me\",\"id\":1}");
	for (unsigned i = 0; i < 5; i++)
		json_decref(next(fd, 5000));
	send_text(fd, "{\"watch\":true}");
	json_t *rep = next_report(fd);
	const char *user = str(rep, "user");
	cr_assert_not_null(user);
	cr_expect_eq(num(rep, "seq"), 0);

	/* the hierarchy: agents (type chain agent -> ...) with echo and fail */
	json_t *agents = report_registry(rep, "agents");
	cr_assert_not_null(agents, "%s", json_dumps(rep, JSON_COMPACT));
	cr_expect_str_eq(json_string_value(json_array_get(json_object_get(agents, "type_chain"), 0)),
			 "agent");
	cr_expect_geq(json_array_size(json_object_get(agents, "type_chain")), 2);
	cr_expect_geq(num(agents, "generation"), 1);
	cr_expect_eq(num(agents, "entries_total"), 2);
	json_t *entries = json_object_get(agents, "entries");
	cr_assert_eq(json_array_size(entries), 2);
	cr_expect_str_eq(str(json_array_get(entries, 0), "key"), "echo");
	cr_expect_str_eq(str(json_array_get(entries, 0), "scope"), "context");
	cr_expect_str_eq(str(json_array_get(entries, 1), "key"), "fail");
	json_t *sessions = report_registry(rep, "sessions");
	cr_assert_not_null(sessions);
	cr_expect_str_eq(str(json_array_get(json_object_get(sessions, "entries"), 0), "key"), user);

	/* memory: this user's context holds the echo agent and its input */
	json_t *self = json_object_get(rep, "self");
	cr_assert(json_is_object(self));
	cr_expect_str_eq(str(self, "name"), user);
	cr_expect_eq(num(self, "instances"), 1);
	cr_expect_geq(num(self, "live_bytes"), (json_int_t)sizeof("remember me"));
	cr_expect_geq(num(self, "peak_bytes"), num(self, "live_bytes"));
	json_t *c = report_ctx(rep, user);
	cr_assert_not_null(c);
	cr_expect(json_equal(c, self));
	json_t *data = json_object_get(rep, "data");
	cr_expect_eq(num(data, "contexts_total"), 1);
	cr_expect_eq(num(data, "live_bytes_total"), num(self, "live_bytes"));
	cr_expect_eq(num(data, "instances_total"), 1);
	cr_expect_eq(num(data, "report_ms"), AGENT_SERVER_REPORT_MS);
	json_decref(rep);

	/* {"watch":false}: no more reports (a run's events still come) */
	send_text(fd, "{\"watch\":false}");
	send_text(fd, "{\"run\":\"echo\",\"input\":\"x\",\"id\":2}");
	/* read until the run's 5 events are in (bounded by 10 s), then two
	 * report periods and a half more: no report may come after them.  A
	 * slow machine can only make this window weaker, never fail it. */
	uint64_t until = wire_now_ms() + 10000;
	bool quiet_window = false;
	unsigned events = 0;
	for (;;) {
		struct wire_frame f;
		uint64_t now = wire_now_ms();
		if (events == 5 && !quiet_window) {
			quiet_window = true;
			until = now + 2500;
		}
		if (now >= until)
			break;
		int rc = wire_ws_read(fd, &f, (int)(until - now));
		if (rc == -2)
			break;
		cr_assert_eq(rc, 1);
		json_t *e = json_loads((const char *)f.data, 0, NULL);
		/* a report may have been queued before the unwatch arrived */
		if (strcmp(str(e, "ev"), "report"))
			events++;
		else
			cr_expect_eq(events, 0, "a report after {\"watch\":false} and the next run");
		json_decref(e);
		wire_frame_free(&f);
	}
	cr_expect_eq(events, 5);
	close(fd);
	stop();
}

Test(report, reports_follow_every_user_and_drop_one_that_left, .timeout = 30)
{
	int port = start(200);
	int a = ws_open(port), b = ws_open(port);
	char big[3001];

	send_text(a, "{\"watch\":true}");
	send_text(b, "{\"run\":\"echo\",\"input\":\"b\",\"id\":1}");
	for (unsigned i = 0; i < 5; i++)
		json_decref(next(b, 5000));
	/* A sees both contexts; B's is B's (B learns its name from events).
	 * A report already queued when B's run finished may predate B's
	 * instance: take reports until one shows it (reports come every
	 * 200 ms; 50 of them bound the wait, the test timeout bounds it too) */
	json_t *rep = NULL, *other = NULL, *c;
	char ua[32];
	size_t i;
	for (int tries = 0; tries < 50; tries++) {
		json_decref(rep);
		rep = next_report(a);
		other = NULL;
		cr_assert_not_null(str(rep, "user"));
		json_array_foreach(json_object_get(json_object_get(rep, "data"), "contexts"), i, c)
			if (strcmp(str(c, "name"), str(rep, "user")))
				other = c;
		if (other && num(other, "instances") >= 1)
			break;
	}
	snprintf(ua, sizeof(ua), "%s", str(rep, "user"));
	cr_expect_eq(num(json_object_get(rep, "data"), "contexts_total"), 2);
	cr_assert_not_null(report_ctx(rep, ua));
	cr_assert_not_null(other);
	char ub[32];
	snprintf(ub, sizeof(ub), "%s", str(other, "name"));
	json_int_t before = num(other, "live_bytes");
	cr_expect_eq(num(other, "instances"), 1);
	json_decref(rep);

	/* B's context grows by a 3,000-byte input: a later report shows it */
	memset(big, 'x', 3000);
	big[3000] = 0;
	char *msg;
	cr_assert_geq(asprintf(&msg, "{\"run\":\"echo\",\"input\":\"%s\",\"id\":2}", big), 0);
	send_text(b, msg);
	free(msg);
	for (unsigned k = 0; k < 5; k++)
		json_decref(next(b, 5000));
	for (;;) {
		rep = next_report(a);
		c = report_ctx(rep, ub);
		cr_assert_not_null(c, "%s left early", ub);
		bool grown = num(c, "live_bytes") >= before + 3000;
		json_decref(rep);
		if (grown)
			break;
	}

	/* B leaves: its context goes from A's reports */
	close(b);
	for (;;) {
		rep = next_report(a);
		bool gone = !report_ctx(rep, ub);
		if (gone) {
			cr_expect_not_null(report_ctx(rep, ua));
			cr_expect_eq(num(json_object_get(rep, "data"), "contexts_total"), 1);
		}
		json_decref(rep);
		if (gone)
			break;
	}
	close(a);
	stop();
}
