/* SPDX-License-Identifier: MIT */
/*
 * The isolation test: the real WebSocket server on loopback (port 0, in
 * this process so that its contexts can be inspected), 200 concurrent
 * libwebsockets clients each running the echo agent several times with
 * their own id and nonce in every input.  Every client must receive exactly
 * its own events, in order, none of another user's; every 10th client drops
 * its connection in the middle of a run; after all closes no context is
 * left and none held a byte once its agents were released.
 */
#include <criterion/criterion.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <libwebsockets.h>
#include <ureg/ureg.h>

#include "agent_client.h"
#include "agent_server.h"

#define CLIENTS 200
#define RUNS 4
#define EVENTS_PER_RUN 5

static int count_ctx(ureg_ctx *ctx, void *arg)
{
	(*(int *)arg)++;
	return 0;
}

/* 200 clients and the server's 200 ends live in this process: make sure a
 * low soft descriptor limit (some CI shells) is raised to the hard one. */
static void raise_fd_limit(void)
{
	struct rlimit r;

	if (getrlimit(RLIMIT_NOFILE, &r) == 0 && r.rlim_cur < r.rlim_max) {
		r.rlim_cur = r.rlim_max;
		setrlimit(RLIMIT_NOFILE, &r);
	}
}

Test(isolation, two_hundred_websocket_clients_each_get_exactly_their_own_events_and_leave_nothing_behind,
     .timeout = 60, .init = raise_fd_limit)
{
	struct agent_server_opts so = { .port = 0, .workers = 2 };
	struct agent_server *srv;
	struct agent_server_stats st;
	struct agent_client_result r;
	int contexts = 0;

	signal(SIGPIPE, SIG_IGN);
	lws_set_log_level(LLL_ERR, NULL);
	cr_assert_eq(agent_server_start(&so, &srv), 0);
	cr_assert_gt(agent_server_port(srv), 0);

	struct agent_client_opts co = {
		.port = agent_server_port(srv), .conns = CLIENTS, .runs = RUNS,
		.pipeline = 2, .drop_every = 10, .timeout_ms = 30000,
	};
	cr_assert_eq(agent_client_run(&co, &r), 0);
	cr_expect_not(r.timed_out, "clients still open at the deadline");
	cr_expect_eq(r.violations, 0, "%llu wrong events, first: %s",
		     (unsigned long long)r.violations, r.first_violation);
	cr_expect_eq(r.connected, CLIENTS);
	cr_expect_eq(r.failed, 0);
	cr_expect_eq(r.dropped, CLIENTS / 10);
	cr_expect_eq(r.finished, CLIENTS - CLIENTS / 10);
	cr_expect_eq(r.distinct_users, CLIENTS, "every connection is its own user");
	/* finished clients saw all their runs; dropped ones 1 run + 2 events */
	cr_expect_eq(r.events, (uint64_t)(CLIENTS - CLIENTS / 10) * RUNS * EVENTS_PER_RUN +
			       (uint64_t)(CLIENTS / 10) * (EVENTS_PER_RUN + 2));

	/* every close reaches the server: no context left, none leaked */
	cr_assert_eq(agent_server_wait_idle(srv, 20000), 0, "sessions still open");
	ureg_ctx_foreach(count_ctx, &contexts);
	cr_expect_eq(contexts, 0, "%d contexts left", contexts);
	agent_server_stats(srv, &st);
	cr_expect_eq(st.sessions_total, CLIENTS);
	cr_expect_eq(st.leaked_bytes, 0, "context bytes left after agents were released");
	cr_expect_geq(st.runs, (uint64_t)(CLIENTS - CLIENTS / 10) * RUNS);
	cr_log_info("%llu events to %u clients in %.3f s, p99 %.0f us",
		    (unsigned long long)r.events, r.connected, r.seconds, r.p99_us);
	agent_server_stop(srv);
}

/* GET @path over a plain socket; the reply in @buf (bounded wait). */
static void http_get(int port, const char *path, char *buf, size_t cap)
{
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port) };
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	size_t got = 0;
	char req[128];

	cr_assert_geq(fd, 0);
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	cr_assert_eq(connect(fd, (struct sockaddr *)&a, sizeof(a)), 0);
	int n = snprintf(req, sizeof(req), "GET %s HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n", path);
	cr_assert_eq(write(fd, req, (size_t)n), n);
	for (;;) {
		struct pollfd p = { .fd = fd, .events = POLLIN };
		cr_assert_gt(poll(&p, 1, 5000), 0, "no reply within 5 s");
		ssize_t r = read(fd, buf + got, cap - 1 - got);
		if (r <= 0)
			break;
		got += (size_t)r;
		buf[got] = 0;
		if (got == cap - 1 || strstr(buf, "</html>") || strstr(buf, "404"))
			break;
	}
	buf[got] = 0;
	close(fd);
}

Test(isolation, the_server_serves_the_page_at_slash_and_404_elsewhere, .timeout = 30)
{
	struct agent_server_opts so = { .port = 0, .workers = 1 };
	struct agent_server *srv;
	static char buf[1 << 16]; /* the page is ~25 KB */

	lws_set_log_level(LLL_ERR, NULL);
	cr_assert_eq(agent_server_start(&so, &srv), 0);
	http_get(agent_server_port(srv), "/", buf, sizeof(buf));
	cr_expect(strstr(buf, "200 OK") != NULL, "%.200s", buf);
	cr_expect(strstr(buf, "new WebSocket(") != NULL);
	cr_expect(strstr(buf, "</html>") != NULL);
	http_get(agent_server_port(srv), "/nope", buf, sizeof(buf));
	cr_expect(strstr(buf, "404") != NULL, "%.200s", buf);
	agent_server_stop(srv);
}

Test(isolation, a_second_server_on_a_taken_port_fails_cleanly, .timeout = 30)
{
	struct agent_server_opts so = { .port = 0, .workers = 1 };
	struct agent_server *srv;
	int contexts = 0;

	lws_set_log_level(LLL_ERR, NULL);
	cr_assert_eq(agent_server_start(&so, &srv), 0);
	/* a second server on the same port must fail cleanly */
	struct agent_server_opts same = { .port = agent_server_port(srv), .workers = 1 };
	struct agent_server *dup = NULL;
	cr_expect_lt(agent_server_start(&same, &dup), 0);
	cr_expect_null(dup);
	agent_server_stop(srv);
	ureg_ctx_foreach(count_ctx, &contexts);
	cr_expect_eq(contexts, 0);
}
