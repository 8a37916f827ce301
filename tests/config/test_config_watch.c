/* SPDX-License-Identifier: MIT */
/*
 * Starting and stopping the watcher from several threads at once, and the
 * SIGHUP pattern documented in ureg/config.h (signalfd + a reload thread).
 * Waits use a condition variable with a deadline that fails the test;
 * nothing sleeps to wait for a race.
 */
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <sys/eventfd.h>
#include <sys/signalfd.h>
#include <time.h>
#include "config_test.h"

#define ROUNDS 200
#define DEADLINE_S 20

static const char v1[] =
	"registries:\n"
	"  - name: tools\n"
	"    type: tool\n"
	"    entries:\n"
	"      - {key: a, kind: singleton, provider: test.item, params: {label: v1}}\n";

static const char v2[] =
	"registries:\n"
	"  - name: tools\n"
	"    type: tool\n"
	"    entries:\n"
	"      - {key: a, kind: singleton, provider: test.item, params: {label: v2}}\n"
	"      - {key: b, kind: singleton, provider: test.item, params: {label: b}}\n";

/* ------------------------------------------------- waiting with a deadline */

struct waiter {
	pthread_mutex_t lock;
	pthread_cond_t cond;
	int reloads;
	int last_rc;
};

static void waiter_init(struct waiter *w)
{
	pthread_condattr_t a;

	pthread_condattr_init(&a);
	pthread_condattr_setclock(&a, CLOCK_MONOTONIC);
	pthread_mutex_init(&w->lock, NULL);
	pthread_cond_init(&w->cond, &a);
	pthread_condattr_destroy(&a);
	w->reloads = 0;
	w->last_rc = 1;
}

static void waiter_note(struct waiter *w, int rc)
{
	pthread_mutex_lock(&w->lock);
	w->reloads++;
	w->last_rc = rc;
	pthread_cond_broadcast(&w->cond);
	pthread_mutex_unlock(&w->lock);
}

/* Wait until @n reloads were noted; fails the test at the deadline. */
static int waiter_wait(struct waiter *w, int n)
{
	struct timespec until;

	clock_gettime(CLOCK_MONOTONIC, &until);
	until.tv_sec += DEADLINE_S;
	pthread_mutex_lock(&w->lock);
	int rc = 0;
	while (w->reloads < n && rc == 0)
		rc = pthread_cond_timedwait(&w->cond, &w->lock, &until);
	int reloads = w->reloads, last = w->last_rc;
	pthread_mutex_unlock(&w->lock);
	cr_assert_geq(reloads, n, "no reload within %d s", DEADLINE_S);
	return last;
}

/* ------------------------------------------------------ racing watchers */

struct racer {
	ureg_config *cfg;
	const char *path;
	pthread_barrier_t *go;
	bool stop;    /* this thread stops instead of starting */
	int rc;
};

static void *race(void *arg)
{
	struct racer *r = arg;

	pthread_barrier_wait(r->go);
	if (r->stop)
		ureg_config_watch_stop(r->cfg);
	else
		r->rc = ureg_config_watch_start(r->cfg, r->path, NULL, NULL);
	return NULL;
}

static void run_pair(struct racer *a, struct racer *b)
{
	pthread_t ta, tb;
	pthread_barrier_t go;

	pthread_barrier_init(&go, NULL, 2);
	a->go = b->go = &go;
	cr_assert_eq(pthread_create(&ta, NULL, race, a), 0);
	cr_assert_eq(pthread_create(&tb, NULL, race, b), 0);
	pthread_join(ta, NULL);
	pthread_join(tb, NULL);
	pthread_barrier_destroy(&go);
}

static void on_reload(ureg_config *cfg, int rc,
		      const struct ureg_config_errors *errs, void *arg)
{
	(void)cfg;
	(void)errs;
	waiter_note(arg, rc);
}

/* After the races: one watcher still works end to end. */
static void watcher_still_reloads(ureg_config *cfg, const char *dir)
{
	struct waiter w;

	waiter_init(&w);
	char *path = ct_write_temp(dir, "app.yaml", v1);
	cr_assert_eq(ureg_config_watch_start(cfg, path, on_reload, &w), 0);
	free(ct_write_temp(dir, "app.yaml", v2));
	cr_assert_eq(waiter_wait(&w, 1), 0);
	ureg_config_watch_stop(cfg);
	cr_assert_str_eq(ct_item(cfg, "tools", "b").label, "b");
	free(path);
}

Test(config_watch, two_threads_starting_a_watcher_at_once_start_exactly_one)
{
	ureg_config *cfg = ct_config();
	char *dir = ct_tempdir();
	char *path = ct_write_temp(dir, "app.yaml", v1);

	ct_load(cfg, v1);
	for (int i = 0; i < ROUNDS; i++) {
		struct racer a = { .cfg = cfg, .path = path };
		struct racer b = { .cfg = cfg, .path = path };
		run_pair(&a, &b);
		cr_assert((a.rc == 0 && b.rc == -EBUSY) || (a.rc == -EBUSY && b.rc == 0),
			  "round %d: starts returned %d and %d", i, a.rc, b.rc);
		ureg_config_watch_stop(cfg);
	}
	watcher_still_reloads(cfg, dir);
	ureg_config_destroy(cfg);
	free(path);
	ct_rmdir(dir);
}

Test(config_watch, a_stop_racing_a_start_leaves_one_watcher_or_none_never_a_broken_one)
{
	ureg_config *cfg = ct_config();
	char *dir = ct_tempdir();
	char *path = ct_write_temp(dir, "app.yaml", v1);
	int running = 0, stopped = 0;

	ct_load(cfg, v1);
	for (int i = 0; i < ROUNDS; i++) {
		struct racer a = { .cfg = cfg, .path = path };
		struct racer b = { .cfg = cfg, .path = path, .stop = true };
		run_pair(&a, &b);
		cr_assert_eq(a.rc, 0, "round %d: %s", i, ureg_strerror(a.rc));
		/* either the stop came first (the watcher runs) or it stopped it */
		int rc = ureg_config_watch_start(cfg, path, NULL, NULL);
		cr_assert(rc == -EBUSY || rc == 0, "round %d: %s", i, ureg_strerror(rc));
		if (rc == -EBUSY)
			running++;
		else
			stopped++;
		ureg_config_watch_stop(cfg);
		cr_assert_eq(ureg_config_watch_start(cfg, path, NULL, NULL), 0,
			     "round %d: a stop left a watcher behind", i);
		ureg_config_watch_stop(cfg);
	}
	cr_assert_eq(running + stopped, ROUNDS);
	watcher_still_reloads(cfg, dir);
	ureg_config_destroy(cfg);
	free(path);
	ct_rmdir(dir);
}

static void stop_from_callback(ureg_config *cfg, int rc,
			       const struct ureg_config_errors *errs, void *arg)
{
	(void)errs;
	/* neither may deadlock or join this thread */
	ureg_config_watch_stop(cfg);
	int again = ureg_config_watch_start(cfg, "/nonexistent/x.yaml", NULL, NULL);
	waiter_note(arg, again == -EBUSY ? rc : -1000);
}

Test(config_watch, the_watcher_callback_cannot_stop_or_restart_its_own_watcher)
{
	ureg_config *cfg = ct_config();
	char *dir = ct_tempdir();
	char *path = ct_write_temp(dir, "app.yaml", v1);
	struct waiter w;

	waiter_init(&w);
	ct_load(cfg, v1);
	cr_assert_eq(ureg_config_watch_start(cfg, path, stop_from_callback, &w), 0);
	free(ct_write_temp(dir, "app.yaml", v2));
	cr_assert_eq(waiter_wait(&w, 1), 0);
	/* the watcher is still there: stop it from here */
	cr_assert_eq(ureg_config_watch_start(cfg, path, NULL, NULL), -EBUSY);
	ureg_config_watch_stop(cfg);
	cr_assert_eq(ureg_config_watch_start(cfg, path, NULL, NULL), 0);
	ureg_config_destroy(cfg); /* stops it */
	free(path);
	ct_rmdir(dir);
}

/* ---------------------------------------------------------------- SIGHUP */

struct hup_server {
	ureg_config *cfg;
	const char *path;
	int sfd, stopfd;
	struct waiter w;
};

/* The reload thread of the documented pattern: a normal thread, never a
 * signal handler. */
static void *hup_thread(void *arg)
{
	struct hup_server *s = arg;

	for (;;) {
		struct pollfd p[2] = { { s->sfd, POLLIN, 0 }, { s->stopfd, POLLIN, 0 } };
		if (poll(p, 2, -1) < 0)
			continue; /* EINTR */
		if (p[1].revents)
			return NULL;
		struct signalfd_siginfo si;
		if (read(s->sfd, &si, sizeof(si)) != sizeof(si) ||
		    si.ssi_signo != SIGHUP)
			continue;
		struct ureg_config_errors errs = { 0 };
		int rc = ureg_config_reload(s->cfg, s->path, 0, NULL, &errs);
		if (rc)
			ureg_config_errors_print(&errs, stderr);
		ureg_config_errors_free(&errs);
		waiter_note(&s->w, rc);
	}
}

Test(config_watch, sighup_with_the_documented_signalfd_pattern_reloads_the_file)
{
	struct hup_server s = { 0 };
	sigset_t set;
	pthread_t t;
	uint64_t one = 1;

	/* first thing, before this test makes any thread (the library's
	 * threads inherit the mask too) */
	sigemptyset(&set);
	sigaddset(&set, SIGHUP);
	cr_assert_eq(pthread_sigmask(SIG_BLOCK, &set, NULL), 0);
	s.sfd = signalfd(-1, &set, SFD_CLOEXEC);
	cr_assert_geq(s.sfd, 0);
	s.stopfd = eventfd(0, EFD_CLOEXEC);
	cr_assert_geq(s.stopfd, 0);
	waiter_init(&s.w);

	char *dir = ct_tempdir();
	char *path = ct_write_temp(dir, "app.yaml", v1);
	s.cfg = ct_config();
	s.path = path;
	struct ureg_config_errors errs = { 0 };
	cr_assert_eq(ureg_config_load(s.cfg, path, &errs), 0);
	cr_assert_str_eq(ct_item(s.cfg, "tools", "a").label, "v1");
	cr_assert_eq(pthread_create(&t, NULL, hup_thread, &s), 0);

	free(ct_write_temp(dir, "app.yaml", v2));
	cr_assert_eq(kill(getpid(), SIGHUP), 0); /* process-directed, like kill -HUP */
	cr_assert_eq(waiter_wait(&s.w, 1), 0, "the SIGHUP reload failed");
	cr_assert_str_eq(ct_item(s.cfg, "tools", "a").label, "v2");
	cr_assert_str_eq(ct_item(s.cfg, "tools", "b").label, "b");

	/* an invalid file: the reload reports it and the live state stays */
	free(ct_write_temp(dir, "app.yaml", "registries: [{name: tools, type: nope}]\n"));
	cr_assert_eq(kill(getpid(), SIGHUP), 0);
	cr_assert_eq(waiter_wait(&s.w, 2), -EBADMSG);
	cr_assert_str_eq(ct_item(s.cfg, "tools", "a").label, "v2");

	cr_assert_eq(write(s.stopfd, &one, sizeof(one)), (ssize_t)sizeof(one));
	pthread_join(t, NULL);
	ureg_config_destroy(s.cfg);
	close(s.sfd);
	close(s.stopfd);
	free(path);
	ct_rmdir(dir);
}
