/* SPDX-License-Identifier: MIT */
/*
 * Creating instances: what a failed creation leaves behind (nothing), what
 * racing threads get (one factory run, one answer), and creation cycles
 * (-EDEADLK at once, never a hang).  lib/ctx.c, include/ureg/ctx.h.
 */
#include <criterion/criterion.h>

#include <pthread.h>
#include <sched.h>

#include "core_test.h"

static ureg_registry *new_reg(void)
{
	ureg_registry *reg = NULL;

	cr_assert_eq(ureg_registry_new(&item_type, "creation", &reg), 0);
	return reg;
}

static ureg_ctx *new_ctx(unsigned flags)
{
	ureg_ctx *ctx = NULL;

	cr_assert_eq(ureg_ctx_new("user", flags, &ctx), 0);
	return ctx;
}

static void assert_same_stats(const struct ureg_ctx_stats *a, const struct ureg_ctx_stats *b)
{
	cr_assert_eq(a->live_bytes, b->live_bytes, "live %zu -> %zu", a->live_bytes, b->live_bytes);
	cr_assert_eq(a->peak_bytes, b->peak_bytes, "peak %zu -> %zu", a->peak_bytes, b->peak_bytes);
	cr_assert_eq(a->allocations, b->allocations);
	cr_assert_eq(a->total_allocations, b->total_allocations);
	cr_assert_eq(a->instances, b->instances);
}

/* ------------------------------------------------------------ rollback */

/* Allocates @blocks blocks of 200 bytes (frees the second), then fails. */
struct leaky {
	int blocks;
	atomic_int calls;
};

static int leaky_create(ureg_ctx *ctx, void *arg, void **out)
{
	struct leaky *l = arg;
	void *p[64];
	int n = 0, rc = -EIO;

	(void)out;
	atomic_fetch_add(&l->calls, 1);
	for (; n < l->blocks && n < 64; n++) {
		if (!(p[n] = ureg_ctx_alloc(ctx, 200))) {
			rc = -errno; /* e.g. the quota */
			break;
		}
	}
	if (n > 1)
		ureg_ctx_free(ctx, p[1]);
	return rc;
}

static void rollback_case(unsigned flags, enum ureg_scope scope, size_t quota)
{
	ureg_registry *reg = new_reg();
	ureg_ctx *ctx = new_ctx(flags);
	struct leaky l = { .blocks = 40 };
	struct ureg_factory f = { .create = leaky_create, .scope = scope, .arg = &l };
	struct ureg_ctx_stats before, after;
	void *keep, *out = NULL;

	cr_assert_eq(ureg_register_factory(reg, "leaky", &f), 0);
	if (quota)
		cr_assert_eq(ureg_ctx_set_quota(ctx, quota), 0);
	/* the context already holds something: it must stay */
	keep = ureg_ctx_alloc(ctx, 100);
	cr_assert_not_null(keep);
	before = ctx_stats(ctx);
	for (int i = 0; i < 3; i++) {
		int rc = get_rc(reg, "leaky", ctx, &out);

		cr_assert_eq(rc, quota ? -EDQUOT : -EIO, "rc %d", rc);
		after = ctx_stats(ctx);
		assert_same_stats(&before, &after);
	}
	cr_assert_eq(ureg_create_instance(reg, "leaky", ctx, &out), quota ? -EDQUOT : -EIO);
	after = ctx_stats(ctx);
	assert_same_stats(&before, &after);
	cr_assert_eq(atomic_load(&l.calls), 4);
	ureg_ctx_free(ctx, keep);
	cr_assert_eq(ctx_stats(ctx).live_bytes, 0);
	ureg_ctx_destroy(ctx);
	ureg_registry_destroy(reg);
}

Test(creation, a_failed_transient_creation_in_a_shared_context_leaves_its_stats_as_before)
{
	rollback_case(UREG_CTX_SHARED, UREG_SCOPE_TRANSIENT, 0);
}

Test(creation, a_failed_context_creation_in_a_shared_context_leaves_its_stats_as_before)
{
	rollback_case(UREG_CTX_SHARED, UREG_SCOPE_CONTEXT, 0);
}

Test(creation, a_failed_creation_in_a_dedicated_context_leaves_its_stats_as_before)
{
	rollback_case(UREG_CTX_DEDICATED, UREG_SCOPE_CONTEXT, 0);
	rollback_case(UREG_CTX_DEDICATED, UREG_SCOPE_TRANSIENT, 0);
}

Test(creation, a_creation_that_runs_into_the_quota_leaves_its_stats_as_before)
{
	rollback_case(UREG_CTX_SHARED, UREG_SCOPE_CONTEXT, 4096);
	rollback_case(UREG_CTX_DEDICATED, UREG_SCOPE_TRANSIENT, 4096);
}

/* A factory that makes a CONTEXT-scope dependency, then fails itself: the
 * dependency is a real instance and stays; only the failing creation's own
 * blocks go. */
static ureg_registry *dep_reg;
static struct fac dep_fac = { .id = 7, .extra = 300 };

static int needs_dep_then_fails(ureg_ctx *ctx, void *arg, void **out)
{
	void *dep = NULL;

	(void)arg; (void)out;
	if (!ureg_ctx_alloc(ctx, 500))
		return -ENOMEM;
	if (ureg_get(dep_reg, "dep", ctx, &dep) != 0)
		return -EFAULT;
	return -EIO;
}

Test(creation, a_dependency_made_by_a_failed_creation_stays_and_only_the_failure_is_undone)
{
	ureg_ctx *ctx = new_ctx(UREG_CTX_SHARED);
	struct ureg_factory dep = fac_factory(&dep_fac, UREG_SCOPE_CONTEXT);
	struct ureg_factory outer = { .create = needs_dep_then_fails, .scope = UREG_SCOPE_CONTEXT };
	struct ureg_ctx_stats with_dep, after;
	void *p = NULL;

	dep_reg = new_reg();
	cr_assert_eq(ureg_register_factory(dep_reg, "dep", &dep), 0);
	cr_assert_eq(ureg_register_factory(dep_reg, "outer", &outer), 0);
	/* what the dependency alone costs, in a twin context */
	{
		ureg_ctx *twin = new_ctx(UREG_CTX_SHARED);
		cr_assert_eq(get_rc(dep_reg, "dep", twin, &p), 0);
		with_dep = ctx_stats(twin);
		ureg_ctx_destroy(twin);
	}
	cr_assert_eq(get_rc(dep_reg, "outer", ctx, &p), -EIO);
	after = ctx_stats(ctx);
	cr_assert_eq(after.instances, 1);
	cr_assert_eq(after.live_bytes, with_dep.live_bytes);
	cr_assert_eq(after.allocations, with_dep.allocations);
	cr_assert_eq(after.total_allocations, with_dep.total_allocations);
	/* and the dependency is the cached one */
	cr_assert_eq(get_rc(dep_reg, "dep", ctx, &p), 0);
	cr_assert_eq(atomic_load(&dep_fac.calls), 2);
	ureg_ctx_destroy(ctx);
	ureg_registry_destroy(dep_reg);
}

/* ---------------------------------------------------------- one answer */

struct slow_fail {
	ureg_ctx *ctx;
	int waiters;        /* how many other threads must be waiting */
	int fail_with;
	atomic_int calls;
};

/* Holds the creation open until every other thread waits on it, which the
 * context's own stats show: no sleep, no guess. */
static int slow_create(ureg_ctx *ctx, void *arg, void **out)
{
	struct slow_fail *s = arg;

	atomic_fetch_add(&s->calls, 1);
	while (ctx_stats(ctx).waiting < (unsigned)s->waiters)
		sched_yield();
	if (s->fail_with)
		return s->fail_with;
	return fac_create(ctx, &(struct fac){ .id = 9 }, out);
}

struct racer {
	ureg_registry *reg;
	ureg_ctx *ctx;
	pthread_barrier_t *go;
	int rc;
	void *out;
	char err[256];
};

static void *race_get(void *arg)
{
	struct racer *r = arg;

	pthread_barrier_wait(r->go);
	r->rc = get_rc(r->reg, "slow", r->ctx, &r->out);
	snprintf(r->err, sizeof(r->err), "%s", ureg_last_error());
	return NULL;
}

static void eight_racers(int fail_with)
{
	enum { N = 8 };
	ureg_registry *reg = new_reg();
	ureg_ctx *ctx = new_ctx(UREG_CTX_SHARED);
	struct slow_fail s = { .ctx = ctx, .waiters = N - 1, .fail_with = fail_with };
	struct ureg_factory f = { .create = slow_create, .scope = UREG_SCOPE_CONTEXT, .arg = &s,
				  .instance_destroy = inst_destroy };
	struct racer r[N];
	pthread_t t[N];
	pthread_barrier_t go;

	cr_assert_eq(ureg_register_factory(reg, "slow", &f), 0);
	pthread_barrier_init(&go, NULL, N);
	for (int i = 0; i < N; i++) {
		r[i] = (struct racer){ .reg = reg, .ctx = ctx, .go = &go };
		cr_assert_eq(pthread_create(&t[i], NULL, race_get, &r[i]), 0);
	}
	for (int i = 0; i < N; i++)
		cr_assert_eq(pthread_join(t[i], NULL), 0);
	cr_assert_eq(atomic_load(&s.calls), 1, "the factory ran %d times", atomic_load(&s.calls));
	for (int i = 0; i < N; i++) {
		cr_assert_eq(r[i].rc, fail_with, "thread %d: %d (%s)", i, r[i].rc, r[i].err);
		if (!fail_with)
			cr_assert_eq(r[i].out, r[0].out);
		else
			cr_assert(strstr(r[i].err, "slow"), "thread %d: %s", i, r[i].err);
	}
	cr_assert_eq(ctx_stats(ctx).waiting, 0);
	cr_assert_eq(ctx_stats(ctx).instances, fail_with ? 0 : 1);
	pthread_barrier_destroy(&go);
	ureg_ctx_destroy(ctx);
	ureg_registry_destroy(reg);
}

Test(creation, eight_threads_waiting_on_a_failing_factory_get_its_error_from_one_run,
     .timeout = 30)
{
	eight_racers(-EIO);
}

Test(creation, eight_threads_waiting_on_a_slow_factory_get_its_one_instance,
     .timeout = 30)
{
	eight_racers(0);
}

/* -------------------------------------------------------------- cycles */

static ureg_registry *cyc_reg;
static char cyc_err[512];

/* The factory of key K gets key arg[0]..: "a" -> "b" -> "c" -> "a". */
static int chain_create(ureg_ctx *ctx, void *arg, void **out)
{
	const char *next = arg;
	void *dep = NULL;
	int rc = ureg_get(cyc_reg, next, ctx, &dep);

	if (rc) {
		if (rc == -EDEADLK && !cyc_err[0])
			snprintf(cyc_err, sizeof(cyc_err), "%s", ureg_last_error());
		return rc;
	}
	return fac_create(ctx, &(struct fac){ .id = 3 }, out);
}

static void register_chain(const char *key, const char *next)
{
	struct ureg_factory f = { .create = chain_create, .scope = UREG_SCOPE_CONTEXT,
				  .arg = (void *)next };

	cr_assert_eq(ureg_register_factory(cyc_reg, key, &f), 0);
}

Test(creation, a_factory_that_asks_for_its_own_key_gets_edeadlk_not_a_hang, .timeout = 10)
{
	ureg_ctx *ctx = new_ctx(UREG_CTX_SHARED);
	struct ureg_ctx_stats before;
	void *p = NULL;

	cyc_reg = new_reg();
	register_chain("self", "self");
	before = ctx_stats(ctx);
	cr_assert_eq(get_rc(cyc_reg, "self", ctx, &p), -EDEADLK);
	cr_assert(strstr(cyc_err, "self -> self"), "%s", cyc_err);
	struct ureg_ctx_stats after = ctx_stats(ctx);
	assert_same_stats(&before, &after);
	/* nothing is left pending: the next attempt runs (and fails) again */
	cr_assert_eq(get_rc(cyc_reg, "self", ctx, &p), -EDEADLK);
	ureg_synchronize();
	ureg_ctx_destroy(ctx);
	ureg_registry_destroy(cyc_reg);
}

Test(creation, a_three_factory_cycle_gets_edeadlk_naming_the_chain, .timeout = 10)
{
	ureg_ctx *ctx = new_ctx(UREG_CTX_SHARED);
	void *p = NULL;

	cyc_reg = new_reg();
	register_chain("a", "b");
	register_chain("b", "c");
	register_chain("c", "a");
	cr_assert_eq(get_rc(cyc_reg, "a", ctx, &p), -EDEADLK);
	cr_assert(strstr(cyc_err, "a -> b -> c -> a"), "%s", cyc_err);
	cr_assert_eq(ctx_stats(ctx).instances, 0);
	cr_assert_eq(ctx_stats(ctx).live_bytes, 0);
	ureg_synchronize();
	ureg_ctx_destroy(ctx);
	ureg_registry_destroy(cyc_reg);
}

/* Two threads of one context: x's factory waits for y, y's for x. */
static pthread_barrier_t both_running;

static int cross_create(ureg_ctx *ctx, void *arg, void **out)
{
	const char *next = arg;
	void *dep = NULL;
	int rc;

	pthread_barrier_wait(&both_running); /* both creations are in flight */
	rc = ureg_get(cyc_reg, next, ctx, &dep);
	if (rc)
		return rc;
	return fac_create(ctx, &(struct fac){ .id = 4 }, out);
}

struct cross {
	ureg_ctx *ctx;
	const char *key;
	int rc;
};

static void *cross_get(void *arg)
{
	struct cross *c = arg;
	void *p = NULL;

	c->rc = get_rc(cyc_reg, c->key, c->ctx, &p); /* inside a read section */
	return NULL;
}

Test(creation, a_cycle_across_two_threads_of_one_context_fails_both_and_grace_periods_go_on,
     .timeout = 10)
{
	ureg_ctx *ctx = new_ctx(UREG_CTX_SHARED);
	struct ureg_factory fx = { .create = cross_create, .scope = UREG_SCOPE_CONTEXT, .arg = "y" };
	struct ureg_factory fy = { .create = cross_create, .scope = UREG_SCOPE_CONTEXT, .arg = "x" };
	struct cross cx = { ctx, "x", 1 }, cy = { ctx, "y", 1 };
	pthread_t tx, ty;

	cyc_reg = new_reg();
	cr_assert_eq(ureg_register_factory(cyc_reg, "x", &fx), 0);
	cr_assert_eq(ureg_register_factory(cyc_reg, "y", &fy), 0);
	pthread_barrier_init(&both_running, NULL, 2);
	cr_assert_eq(pthread_create(&tx, NULL, cross_get, &cx), 0);
	cr_assert_eq(pthread_create(&ty, NULL, cross_get, &cy), 0);
	/* the getters sit in read sections: a hang would stall this too */
	ureg_synchronize();
	cr_assert_eq(pthread_join(tx, NULL), 0);
	cr_assert_eq(pthread_join(ty, NULL), 0);
	cr_assert_eq(cx.rc, -EDEADLK);
	cr_assert_eq(cy.rc, -EDEADLK);
	cr_assert_eq(ctx_stats(ctx).instances, 0);
	cr_assert_eq(ctx_stats(ctx).live_bytes, 0);
	pthread_barrier_destroy(&both_running);
	ureg_ctx_destroy(ctx);
	ureg_registry_destroy(cyc_reg);
}
