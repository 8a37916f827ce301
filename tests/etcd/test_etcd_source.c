/* SPDX-License-Identifier: MIT */
/*
 * The etcd config source against a real etcd (started by etcd_harness.py,
 * which sets UREG_ETCD_URL): start-up, valid and invalid puts, a deleted
 * key, compare-and-swap, bad arguments, stop while the watch is blocked,
 * an unreachable etcd, an endpoint list whose first member is down, fork,
 * and the reload-under-readers test driven through etcd.  Each test uses
 * its own prefix.  Waits are on observable state (ureg_config_etcd_wait /
 * stats) with generous deadlines, never a sleep.
 */
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <sys/wait.h>
#include <time.h>

#include "../config/torn_readers.h"
#include <ureg/config_etcd.h>

#define WAIT_MS 20000

static const char *url(void)
{
	const char *u = getenv("UREG_ETCD_URL");
	cr_assert_not_null(u, "UREG_ETCD_URL unset: run through etcd_harness.py");
	return u;
}

/* a prefix no other test (or earlier run on this etcd) uses */
static char *prefix(const char *name)
{
	static atomic_int seq;
	char *p;
	cr_assert(asprintf(&p, "/ureg-test/%s/%d-%d/", name, (int)getpid(),
			   atomic_fetch_add(&seq, 1)) > 0);
	return p;
}

static uint64_t put_doc(const char *pfx, const char *yaml, uint64_t expect)
{
	uint64_t rev = 0;
	int rc = ureg_config_etcd_put(url(), pfx, yaml, strlen(yaml), expect, &rev, 5000);
	cr_assert_eq(rc, 0, "put: %s", ureg_last_error());
	return rev;
}

static char *one_item(const char *key, int tag)
{
	char *y;
	cr_assert(asprintf(&y,
		"registries:\n"
		"  - name: fleet\n"
		"    type: base\n"
		"    entries:\n"
		"      - {key: %s, kind: singleton, provider: test.item, params: {tag: %d}}\n",
		key, tag) > 0);
	return y;
}

static void start(ureg_config *cfg, const char *endpoints, const char *pfx)
{
	struct ureg_config_etcd_opts o = { .endpoints = endpoints, .prefix = pfx,
					   .quiet = true };
	cr_assert_eq(ureg_config_etcd_start(cfg, &o), 0, "%s", ureg_last_error());
}

static struct ureg_config_etcd_stats stats(ureg_config *cfg)
{
	struct ureg_config_etcd_stats st;
	cr_assert_eq(ureg_config_etcd_stats(cfg, &st), 0);
	return st;
}

static uint64_t entry_generation(ureg_config *cfg, const char *reg, const char *key)
{
	struct ureg_entry_info info;
	ureg_registry *r = ureg_config_registry(cfg, reg);
	cr_assert_not_null(r);
	ureg_read_lock();
	int rc = ureg_entry_info(r, key, &info);
	ureg_read_unlock();
	cr_assert_eq(rc, 0, "%s/%s: %s", reg, key, ureg_strerror(rc));
	return info.generation;
}

Test(etcd_source, starts_from_the_document_in_etcd_with_its_revision_as_generation)
{
	char *pfx = prefix("start"), *y = one_item("alpha", 7);
	uint64_t rev = put_doc(pfx, y, 0);
	ureg_config *cfg = ct_config();

	start(cfg, url(), pfx);
	cr_assert_eq(ureg_config_etcd_wait(cfg, rev, WAIT_MS), 0, "%s", ureg_last_error());
	cr_assert_eq(ct_item(cfg, "fleet", "alpha").tag, 7);
	cr_assert_eq(entry_generation(cfg, "fleet", "alpha"), rev);
	struct ureg_config_etcd_stats st = stats(cfg);
	cr_assert_eq(st.revision, rev);
	cr_assert_eq(st.applied, 1);
	cr_assert_eq(st.rejected, 0);
	ureg_config_destroy(cfg); /* stops the source */
	free(y);
	free(pfx);
}

Test(etcd_source, a_valid_put_is_applied_and_an_invalid_one_rejected_with_the_old_kept)
{
	char *pfx = prefix("puts"), *y = one_item("alpha", 1);
	uint64_t r1 = put_doc(pfx, y, 0);
	ureg_config *cfg = ct_config();

	start(cfg, url(), pfx);
	cr_assert_eq(ureg_config_etcd_wait(cfg, r1, WAIT_MS), 0);
	free(y);
	y = one_item("alpha", 2);
	uint64_t r2 = put_doc(pfx, y, r1);
	cr_assert_eq(ureg_config_etcd_wait(cfg, r2, WAIT_MS), 0);
	cr_assert_eq(ct_item(cfg, "fleet", "alpha").tag, 2);
	cr_assert_eq(entry_generation(cfg, "fleet", "alpha"), r2);

	/* an unknown provider on line 5: rejected, generation r2 still served */
	const char *bad = "registries:\n  - name: fleet\n    type: base\n    entries:\n"
			  "      - {key: alpha, kind: singleton, provider: no.such}\n";
	uint64_t r3 = put_doc(pfx, bad, r2);
	cr_assert_eq(ureg_config_etcd_wait(cfg, r3, WAIT_MS), 0);
	struct ureg_config_etcd_stats st = stats(cfg);
	cr_assert_eq(st.revision, r2);
	cr_assert_eq(st.rejected, 1);
	cr_assert_eq(st.rejected_revision, r3);
	cr_assert(strstr(st.last_error, "config.yaml@") && strstr(st.last_error, ":5:"),
		  "the error names the key, revision and line: %s", st.last_error);
	cr_assert(strstr(st.last_error, "no.such"), "%s", st.last_error);
	cr_assert_eq(ct_item(cfg, "fleet", "alpha").tag, 2);
	cr_assert_eq(entry_generation(cfg, "fleet", "alpha"), r2);
	ureg_config_destroy(cfg);
	free(y);
	free(pfx);
}

Test(etcd_source, an_empty_document_is_applied_and_empties_the_registry)
{
	char *pfx = prefix("empty"), *y = one_item("alpha", 3);
	uint64_t r1 = put_doc(pfx, y, 0);
	ureg_config *cfg = ct_config();
	char *text, **keys;
	size_t len, n;
	uint64_t rev;

	start(cfg, url(), pfx);
	cr_assert_eq(ureg_config_etcd_wait(cfg, r1, WAIT_MS), 0);
	cr_assert_eq(ureg_config_etcd_get(url(), pfx, &text, &len, &rev, 5000), 0);
	cr_assert_eq(rev, r1);
	cr_assert_str_eq(text, y);
	free(text);
	/* valid YAML without registries: applied (unlike a deleted key,
	 * which tests/etcd/test_etcd_fleet.py shows rejected) */
	uint64_t r2 = put_doc(pfx, "registries: []\n", r1);
	cr_assert_eq(ureg_config_etcd_wait(cfg, r2, WAIT_MS), 0);
	cr_assert_eq(stats(cfg).revision, r2);
	cr_assert_eq(ureg_keys(ureg_config_registry(cfg, "fleet"), &keys, &n), 0);
	cr_assert_eq(n, 0);
	ureg_keys_free(keys);
	ureg_config_destroy(cfg);
	free(y);
	free(pfx);
}

Test(etcd_source, a_put_over_another_revision_fails_and_writes_nothing)
{
	char *pfx = prefix("cas"), *y = one_item("alpha", 1);
	uint64_t r1 = put_doc(pfx, y, 0), now = 1;
	char *text;
	size_t len;

	cr_assert_eq(ureg_config_etcd_put(url(), pfx, "registries: []\n", 15, r1 - 1, &now,
					  5000), -ESTALE);
	cr_assert_eq(now, 0);
	cr_assert(strstr(ureg_last_error(), "changed since revision"), "%s", ureg_last_error());
	cr_assert_eq(ureg_config_etcd_put(url(), pfx, "registries: []\n", 15, 0, NULL, 5000),
		     -ESTALE, "expect 0 means: only when the key does not exist");
	cr_assert_eq(ureg_config_etcd_get(url(), pfx, &text, &len, &now, 5000), 0);
	cr_assert_eq(now, r1);
	cr_assert_str_eq(text, y);
	free(text);
	free(y);
	free(pfx);
}

Test(etcd_source, bad_arguments_are_refused_and_start_nothing)
{
	ureg_config *cfg = ct_config();
	struct ureg_config_etcd_opts o = { .endpoints = "ftp://127.0.0.1:1", .prefix = "/p/" };
	struct ureg_config_etcd_stats st;
	char *text;
	size_t len;
	uint64_t rev;

	cr_assert_eq(ureg_config_etcd_start(NULL, &o), -EINVAL);
	cr_assert_eq(ureg_config_etcd_start(cfg, NULL), -EINVAL);
	cr_assert_eq(ureg_config_etcd_start(cfg, &o), -EINVAL);
	cr_assert(strstr(ureg_last_error(), "http://"), "%s", ureg_last_error());
	o.endpoints = "http://127.0.0.1:1,";
	o.prefix = "";
	cr_assert_eq(ureg_config_etcd_start(cfg, &o), -EINVAL);
	o.prefix = "/p/";
	o.reserved[3] = &o;
	cr_assert_eq(ureg_config_etcd_start(cfg, &o), -EINVAL, "a nonzero reserved field");
	cr_assert(strstr(ureg_last_error(), "reserved"), "%s", ureg_last_error());
	o.reserved[3] = NULL;
	cr_assert_eq(ureg_config_etcd_stats(cfg, &st), -EINVAL, "no source was started");
	cr_assert_eq(ureg_config_etcd_wait(cfg, 1, 1), -EINVAL);
	cr_assert_eq(ureg_config_etcd_get(url(), "", &text, &len, &rev, 1000), -EINVAL);
	cr_assert_eq(ureg_config_etcd_get("localhost:2379", "/p/", &text, &len, &rev, 1000),
		     -EINVAL);
	char *pfx = prefix("missing");
	cr_assert_eq(ureg_config_etcd_get(url(), pfx, &text, &len, &rev, 5000), -ENOENT);
	cr_assert_null(text);
	o.prefix = pfx;
	o.endpoints = url();
	o.quiet = true;
	cr_assert_eq(ureg_config_etcd_start(cfg, &o), 0);
	cr_assert_eq(ureg_config_etcd_start(cfg, &o), -EBUSY);
	ureg_config_etcd_stop(cfg);
	ureg_config_etcd_stop(cfg); /* a no-op now */
	cr_assert_eq(ureg_config_etcd_stats(cfg, &st), -EINVAL);
	ureg_config_destroy(cfg);
	free(pfx);
}

Test(etcd_source, stop_ends_a_watch_that_is_waiting_for_a_change, .timeout = 30)
{
	char *pfx = prefix("stop"), *y = one_item("alpha", 1);
	uint64_t r1 = put_doc(pfx, y, 0);
	ureg_config *cfg = ct_config();

	start(cfg, url(), pfx);
	cr_assert_eq(ureg_config_etcd_wait(cfg, r1, WAIT_MS), 0);
	/* the watch is established and idle: nothing will arrive */
	for (int i = 0; i < 2000 && !stats(cfg).connected; i++)
		sched_yield();
	ureg_config_etcd_stop(cfg); /* returns: woken, not timed out (.timeout) */
	cr_assert_eq(ct_item(cfg, "fleet", "alpha").tag, 1, "the last document stays");
	ureg_config_destroy(cfg);
	free(y);
	free(pfx);
}

static void *waiter(void *arg)
{
	return (void *)(intptr_t)ureg_config_etcd_wait(arg, UINT64_MAX, 60000);
}

Test(etcd_source, an_unreachable_etcd_is_retried_until_stop_which_releases_waiters,
     .timeout = 60)
{
	ureg_config *cfg = ct_config();
	struct ureg_config_etcd_opts o = { .endpoints = "http://127.0.0.1:1",
					   .prefix = "/p/", .quiet = true,
					   .backoff_min_ms = 1, .backoff_max_ms = 4 };
	pthread_t th;
	void *ret;

	cr_assert_eq(ureg_config_etcd_start(cfg, &o), 0);
	cr_assert_eq(pthread_create(&th, NULL, waiter, cfg), 0);
	struct timespec dl;
	clock_gettime(CLOCK_MONOTONIC, &dl);
	/* the waiter is blocked and the source keeps failing */
	while (stats(cfg).reconnects < 3 || stats(cfg).waiters != 1) {
		struct timespec t;
		clock_gettime(CLOCK_MONOTONIC, &t);
		cr_assert(t.tv_sec < dl.tv_sec + 30, "no reconnect attempts (or no waiter) in 30 s");
		sched_yield();
	}
	struct ureg_config_etcd_stats st = stats(cfg);
	cr_assert_not(st.connected);
	cr_assert_eq(st.applied, 0);
	cr_assert(strstr(st.last_error, "127.0.0.1"), "%s", st.last_error);
	ureg_config_etcd_stop(cfg);
	pthread_join(th, &ret);
	cr_assert_eq((intptr_t)ret, -ECANCELED, "the waiter left when the source stopped");
	ureg_config_destroy(cfg);
}

Test(etcd_source, a_dead_first_endpoint_is_skipped_for_the_next_one)
{
	char *pfx = prefix("endpoints"), *y = one_item("alpha", 5), *eps;
	uint64_t r1 = put_doc(pfx, y, 0);
	ureg_config *cfg = ct_config();

	cr_assert(asprintf(&eps, "http://127.0.0.1:1,%s", url()) > 0);
	start(cfg, eps, pfx);
	cr_assert_eq(ureg_config_etcd_wait(cfg, r1, WAIT_MS), 0);
	cr_assert_eq(ct_item(cfg, "fleet", "alpha").tag, 5);
	cr_assert_eq(stats(cfg).endpoint, 1);
	ureg_config_destroy(cfg);
	free(eps);
	free(y);
	free(pfx);
}

Test(etcd_source, a_forked_child_can_destroy_the_config_without_the_thread)
{
	char *pfx = prefix("fork"), *y = one_item("alpha", 1);
	uint64_t r1 = put_doc(pfx, y, 0);
	ureg_config *cfg = ct_config();

	start(cfg, url(), pfx);
	cr_assert_eq(ureg_config_etcd_wait(cfg, r1, WAIT_MS), 0);
	pid_t pid = fork();
	cr_assert_geq(pid, 0);
	if (pid == 0) {
		struct ureg_config_etcd_stats st;
		int ok = ureg_config_etcd_stats(cfg, &st) == 0 && st.revision == r1 &&
			 ct_item(cfg, "fleet", "alpha").tag == 1;
		ureg_config_destroy(cfg); /* no watcher thread here: not joined */
		_exit(ok ? 0 : 1);
	}
	int status;
	cr_assert_eq(waitpid(pid, &status, 0), pid);
	cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	ureg_config_destroy(cfg);
	free(y);
	free(pfx);
}

/* ---- readers never see a partial generation during etcd-driven reloads ----
 * The readers of tests/config/torn_readers.h, the reloads put
 * into etcd and applied by the source's thread. */

#define RELOADS 20

Test(etcd_source, readers_never_see_an_etcd_driven_reload_half_applied, .timeout = 120)
{
	struct torn t;
	ureg_config *cfg = ct_config();
	char *pfx = prefix("readers"), *y = torn_doc(0);
	uint64_t rev = put_doc(pfx, y, 0);
	free(y);

	start(cfg, url(), pfx);
	cr_assert_eq(ureg_config_etcd_wait(cfg, rev, WAIT_MS), 0);
	torn_start(&t, ureg_config_registry(cfg, "pair"), true);
	for (int i = 1; i <= RELOADS; i++) {
		torn_wait_progress(&t); /* each reload overlaps reads */
		y = torn_doc(i);
		rev = put_doc(pfx, y, rev);
		free(y);
		cr_assert_eq(ureg_config_etcd_wait(cfg, rev, WAIT_MS), 0);
	}
	torn_finish(&t, RELOADS);
	cr_assert_eq(ct_item(cfg, "pair", "left").tag, RELOADS);
	cr_assert_eq(entry_generation(cfg, "pair", "left"), rev);
	cr_assert_eq(stats(cfg).applied, RELOADS + 1);
	ureg_config_destroy(cfg);
	cr_assert_eq(atomic_load(&titems_made), atomic_load(&titems_destroyed));
	free(pfx);
}
