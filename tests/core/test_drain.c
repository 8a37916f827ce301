/* SPDX-License-Identifier: MIT */
/*
 * ureg_drain: unregister, then wait until no counted reference and no
 * live instance made by the removed entry remains; on timeout, -ETIMEDOUT
 * and a report of the holders.  The waits here never sleep: a drain that
 * does not wake when a holder lets go runs into its (long) timeout and the
 * test fails.
 */
#include <criterion/criterion.h>
#include <pthread.h>
#include <time.h>

#include <ureg/typed.h>

#include "core_test.h"

#define LONG_MS 30000u /* only reached when a wake-up is lost */

static ureg_registry *new_reg(void)
{
	ureg_registry *reg = NULL;

	cr_assert_eq(ureg_registry_new(&item_type, "plugins", &reg), 0);
	return reg;
}

static ureg_ctx *new_ctx(const char *name)
{
	ureg_ctx *ctx = NULL;

	cr_assert_eq(ureg_ctx_new(name, UREG_CTX_SHARED, &ctx), 0);
	return ctx;
}

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

Test(drain, with_no_holders_it_returns_at_once_and_the_destructors_have_run)
{
	ureg_registry *reg = new_reg();
	atomic_int arg_freed = 0;
	struct fac f = { .id = 1, .arg_freed = &arg_freed };
	struct ureg_factory uf = fac_factory(&f, UREG_SCOPE_CONTEXT);
	struct ureg_drain_report rep;
	double t0;

	cr_assert_eq(ureg_register(reg, "plugin", item_new(1)), 0);
	cr_assert_eq(ureg_register_factory(reg, "plugin", &uf), 0);
	t0 = now_s();
	cr_assert_eq(ureg_drain(reg, "plugin", UREG_BOTH, LONG_MS, &rep), 0,
		     "%s", ureg_last_error());
	cr_assert_lt(now_s() - t0, LONG_MS / 1000.0 / 2, "waited for the timeout");
	cr_assert_eq(ureg_contains(reg, "plugin"), 0);
	/* drained means destroyed: no grace period left to wait for */
	cr_assert_eq(atomic_load(&items_destroyed), 1);
	cr_assert_eq(atomic_load(&arg_freed), 1);
	cr_assert_eq(rep.refs + rep.instances + rep.contexts + rep.other + rep.nholders, 0);
	ureg_registry_destroy(reg);
}

Test(drain, refuses_bad_input_a_missing_key_and_a_read_section)
{
	ureg_registry *reg = new_reg();

	cr_assert_eq(ureg_register(reg, "k", item_new(1)), 0);
	cr_assert_eq(ureg_drain(NULL, "k", UREG_BOTH, 0, NULL), -EINVAL);
	cr_assert_eq(ureg_drain(reg, "bad key", UREG_BOTH, 0, NULL), -EINVAL);
	cr_assert_eq(ureg_drain(reg, "k", 0, 0, NULL), -EINVAL);
	cr_assert_eq(ureg_drain(reg, "missing", UREG_BOTH, 0, NULL), -ENOENT);
	cr_assert_eq(ureg_drain(reg, "k", UREG_FACTORY, 0, NULL), -ENOENT);
	UREG_READ_SECTION
		cr_assert_eq(ureg_drain(reg, "k", UREG_BOTH, 0, NULL), -EPERM);
	cr_assert_eq(ureg_contains(reg, "k"), 1, "failed drains change nothing");
	cr_assert_eq(atomic_load(&items_destroyed), 0);
	ureg_registry_destroy(reg);
}

Test(drain, times_out_with_a_report_naming_the_context_and_its_two_instances)
{
	ureg_registry *reg = new_reg();
	ureg_ctx *alice = new_ctx("alice"), *bob = new_ctx("bob");
	atomic_int arg_freed = 0;
	struct fac f = { .id = 2, .arg_freed = &arg_freed };
	struct ureg_factory uf = fac_factory(&f, UREG_SCOPE_TRANSIENT);
	struct ureg_drain_report rep;
	ureg_ref *ref = NULL;
	void *a = NULL, *b = NULL;
	const char *msg;

	cr_assert_eq(ureg_register(reg, "plugin", item_new(1)), 0);
	cr_assert_eq(ureg_register_factory(reg, "plugin", &uf), 0);
	cr_assert_eq(ureg_create_instance(reg, "plugin", alice, &a), 0);
	cr_assert_eq(ureg_create_instance(reg, "plugin", alice, &b), 0);
	cr_assert_eq(ureg_acquire(reg, "plugin", &ref), 0);

	cr_assert_eq(ureg_drain(reg, "plugin", UREG_BOTH, 50, &rep), -ETIMEDOUT);
	msg = ureg_last_error();
	cr_assert_eq(rep.instances, 2);
	cr_assert_eq(rep.contexts, 1, "bob holds none");
	cr_assert_eq(rep.nholders, 1);
	cr_assert_str_eq(rep.holders[0].name, "alice");
	cr_assert_eq(rep.holders[0].ctx, alice);
	cr_assert_eq(rep.holders[0].instances, 2);
	cr_assert_eq(rep.refs, 1);
	/* the removed entry itself, pinned by that counted reference, still
	 * holds the factory too */
	cr_assert_eq(rep.other, 1);
	cr_assert(strstr(msg, "'plugins'") && strstr(msg, "'plugin'"), "%s", msg);
	cr_assert(strstr(msg, "alice: 2"), "%s", msg);
	cr_assert(strstr(msg, "1 counted reference"), "%s", msg);
	cr_assert_str_eq(ureg_strerror(-ETIMEDOUT), ureg_strerror(-ETIMEDOUT));

	/* the removal stands; the holders keep what they hold */
	cr_assert_eq(ureg_contains(reg, "plugin"), 0);
	cr_assert_eq(((struct inst *)a)->magic, INST_MAGIC);
	cr_assert_eq(ureg_ref_item(ref) != NULL, 1);
	cr_assert_eq(atomic_load(&items_destroyed), 0);
	cr_assert_eq(atomic_load(&arg_freed), 0);
	ureg_ref_release(ref);
	ureg_ctx_destroy(alice);
	ureg_ctx_destroy(bob);
	cr_assert_eq(atomic_load(&arg_freed), 1, "the last instance freed the factory");
	cr_assert_eq(wait_count(&items_destroyed, 1), 1);
	ureg_registry_destroy(reg);
}

/* ---- another thread lets go while the drain waits ---- */

struct letgo {
	ureg_registry *reg;
	ureg_ctx *ctx;
	void *inst[2];
	ureg_ref *ref;
	int how; /* 0: destroy the context, 1: release each instance, 2: release the ref */
	unsigned what; /* what the drain removes */
	atomic_int bad;
};

/* Whether the part of "plugin" the drain removes is still registered. */
static bool still_registered(const struct letgo *l)
{
	struct ureg_entry_info info;
	bool there = false;

	UREG_READ_SECTION
		there = ureg_entry_info(l->reg, "plugin", &info) == 0 &&
			(l->what == UREG_FACTORY ? info.has_factory : info.has_singleton);
	return there;
}

/* Waits (yielding, no sleep) until the drain has removed the key, i.e.
 * is about to wait or waiting, then lets go. */
static void *let_go(void *p)
{
	struct letgo *l = p;

	while (still_registered(l))
		sched_yield();
	switch (l->how) {
	case 0:
		ureg_ctx_destroy(l->ctx);
		break;
	case 1:
		for (int i = 0; i < 2; i++)
			if (ureg_instance_release(l->ctx, l->inst[i]) != 0)
				atomic_fetch_add(&l->bad, 1);
		break;
	default:
		ureg_ref_release(l->ref);
		break;
	}
	return NULL;
}

static void drain_while_another_thread_lets_go(int how)
{
	ureg_registry *reg = new_reg();
	atomic_int arg_freed = 0;
	struct fac f = { .id = 3, .arg_freed = &arg_freed };
	struct ureg_factory uf = fac_factory(&f, UREG_SCOPE_CONTEXT);
	struct letgo l = { .reg = reg, .ctx = new_ctx("carol"), .how = how };
	struct ureg_drain_report rep;
	pthread_t t;
	double t0;

	cr_assert_eq(ureg_register(reg, "plugin", item_new(1)), 0);
	cr_assert_eq(ureg_register_factory(reg, "plugin", &uf), 0);
	/* one CONTEXT-scope instance plus one made by create_instance */
	cr_assert_eq(ureg_get(reg, "plugin", NULL, &l.inst[0]), -EPERM);
	cr_assert_eq(ureg_create_instance(reg, "plugin", l.ctx, &l.inst[0]), 0);
	UREG_READ_SECTION
		cr_assert_eq(ureg_get(reg, "plugin", NULL, &l.inst[1]), 0); /* the singleton */
	cr_assert_eq(ureg_create_instance(reg, "plugin", l.ctx, &l.inst[1]), 0);
	cr_assert_eq(ureg_acquire(reg, "plugin", &l.ref), 0);
	if (how != 2) {
		ureg_ref_release(l.ref);
		l.ref = NULL;
	}
	unsigned what = how == 2 ? UREG_SINGLETON : UREG_FACTORY;

	l.what = what;

	cr_assert_eq(pthread_create(&t, NULL, let_go, &l), 0);
	t0 = now_s();
	int rc = ureg_drain(reg, "plugin", what, LONG_MS, &rep);
	double took = now_s() - t0;
	cr_assert_eq(pthread_join(t, NULL), 0);
	cr_assert_eq(rc, 0, "%s", ureg_last_error());
	cr_assert_lt(took, LONG_MS / 1000.0 / 2, "the drain was not woken");
	cr_assert_eq(atomic_load(&l.bad), 0);
	if (how == 2) {
		cr_assert_eq(atomic_load(&items_destroyed), 1, "the singleton is drained");
		cr_assert_eq(ureg_contains(reg, "plugin"), 1, "the factory stays");
		ureg_ctx_destroy(l.ctx);
	} else {
		cr_assert_eq(atomic_load(&arg_freed), 1, "the factory is drained");
		cr_assert_eq(atomic_load(&inst_destroyed), 2);
		if (how == 1)
			ureg_ctx_destroy(l.ctx);
	}
	ureg_registry_destroy(reg);
}

Test(drain, completes_when_another_thread_destroys_the_holding_context)
{
	drain_while_another_thread_lets_go(0);
}

Test(drain, completes_when_another_thread_releases_the_instances)
{
	drain_while_another_thread_lets_go(1);
}

Test(drain, completes_when_another_thread_releases_its_counted_reference)
{
	drain_while_another_thread_lets_go(2);
}

UREG_DECLARE_TYPED(plugin_reg, struct item)

Test(drain, the_typed_wrapper_drains_too)
{
	plugin_reg_registry *r = NULL;

	cr_assert_eq(plugin_reg_new(&item_type, "typed", &r), 0);
	cr_assert_eq(plugin_reg_register(r, "k", item_new(1)), 0);
	cr_assert_eq(plugin_reg_drain(r, "k", UREG_SINGLETON, UREG_WAIT_FOREVER, NULL), 0);
	cr_assert_eq(atomic_load(&items_destroyed), 1);
	plugin_reg_destroy(r);
}
