/* SPDX-License-Identifier: MIT */
/*
 * User contexts: exact accounting, quota, instance lifetime and destroy
 * order, dedicated arenas, the shared arena pool, ureg_ctx_foreach, and
 * 100,000 contexts alive at once.
 */
#include <criterion/criterion.h>

#include <jemalloc/jemalloc.h>
#include <pthread.h>

#include "core_test.h"

static ureg_ctx *new_ctx(const char *name, unsigned flags)
{
	ureg_ctx *ctx = NULL;

	cr_assert_eq(ureg_ctx_new(name, flags, &ctx), 0, "ureg_ctx_new: %s",
		     ureg_last_error());
	cr_assert_not_null(ctx);
	return ctx;
}

static ureg_registry *new_reg(void)
{
	ureg_registry *reg = NULL;

	cr_assert_eq(ureg_registry_new(&item_type, "ctx-test", &reg), 0);
	return reg;
}

static void assert_stats_equal(const struct ureg_ctx_stats *a,
			       const struct ureg_ctx_stats *b)
{
	cr_assert_eq(a->live_bytes, b->live_bytes);
	cr_assert_eq(a->peak_bytes, b->peak_bytes);
	cr_assert_eq(a->allocations, b->allocations);
	cr_assert_eq(a->total_allocations, b->total_allocations);
	cr_assert_eq(a->instances, b->instances);
	cr_assert_eq(a->quota, b->quota);
	cr_assert_eq(a->arena, b->arena);
	cr_assert_eq(a->dedicated, b->dedicated);
}

/* What one allocation of @size costs @ctx (measured, then refunded). */
static size_t charge_of(ureg_ctx *ctx, size_t size)
{
	size_t before = ctx_live(ctx), charge;
	void *p = ureg_ctx_alloc(ctx, size);

	cr_assert_not_null(p);
	charge = ctx_live(ctx) - before;
	ureg_ctx_free(ctx, p);
	cr_assert_eq(ctx_live(ctx), before);
	return charge;
}

Test(ctx, a_new_context_has_zero_accounting_and_its_name)
{
	ureg_ctx *ctx = new_ctx("alice", UREG_CTX_SHARED);
	ureg_ctx *anon = new_ctx(NULL, UREG_CTX_SHARED);
	struct ureg_ctx_stats st = ctx_stats(ctx);

	cr_assert_str_eq(ureg_ctx_name(ctx), "alice");
	cr_assert_str_eq(ureg_ctx_name(anon), "");
	cr_assert_eq(st.live_bytes, 0);
	cr_assert_eq(st.peak_bytes, 0);
	cr_assert_eq(st.allocations, 0);
	cr_assert_eq(st.total_allocations, 0);
	cr_assert_eq(st.instances, 0);
	cr_assert_eq(st.quota, 0);
	cr_assert_eq(st.dedicated, 0);
	ureg_ctx_destroy(ctx);
	ureg_ctx_destroy(anon);
	ureg_ctx_destroy(NULL);
}

Test(ctx, allocations_are_charged_exactly_and_refunded_when_freed)
{
	ureg_ctx *ctx = new_ctx("acct", UREG_CTX_SHARED);
	size_t sizes[] = { 1, 16, 17, 100, 1000, 4096, 70000 };
	enum { N = sizeof(sizes) / sizeof(sizes[0]) };
	size_t charge[N], sum = 0;
	void *p[N];
	struct ureg_ctx_stats st;

	for (int i = 0; i < N; i++) {
		charge[i] = charge_of(ctx, sizes[i]);
		cr_assert_geq(charge[i], sizes[i]);
		/* the same size always costs the same */
		cr_assert_eq(charge_of(ctx, sizes[i]), charge[i]);
	}
	for (int i = 0; i < N; i++) {
		p[i] = ureg_ctx_alloc(ctx, sizes[i]);
		cr_assert_not_null(p[i]);
		cr_assert_eq((uintptr_t)p[i] % 16, 0, "not 16-byte aligned");
		memset(p[i], 0xab, sizes[i]);
		sum += charge[i];
		st = ctx_stats(ctx);
		cr_assert_eq(st.live_bytes, sum);
		cr_assert_eq(st.allocations, (size_t)i + 1);
	}
	st = ctx_stats(ctx);
	cr_assert_eq(st.peak_bytes, sum);
	cr_assert_eq(st.total_allocations, 2 * N + N);
	for (int i = 0; i < N; i += 2) {
		ureg_ctx_free(ctx, p[i]);
		sum -= charge[i];
	}
	st = ctx_stats(ctx);
	cr_assert_eq(st.live_bytes, sum);
	cr_assert_eq(st.allocations, N / 2);
	for (int i = 1; i < N; i += 2)
		ureg_ctx_free(ctx, p[i]);
	ureg_ctx_free(ctx, NULL);
	st = ctx_stats(ctx);
	cr_assert_eq(st.live_bytes, 0);
	cr_assert_eq(st.allocations, 0);
	cr_assert_eq(st.total_allocations, 3 * N);
	cr_assert_geq(st.peak_bytes, charge[N - 1]);
	ureg_ctx_destroy(ctx);
}

Test(ctx, a_shared_context_charges_jemalloc_usable_size_with_the_32_byte_header)
{
	ureg_ctx *ctx = new_ctx("hdr", UREG_CTX_SHARED);
	size_t sizes[] = { 1, 8, 48, 100, 1000, 5000, 100000 };

	for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++)
		cr_assert_eq(charge_of(ctx, sizes[i]), nallocx(sizes[i] + 32, 0),
			     "size %zu", sizes[i]);
	ureg_ctx_destroy(ctx);
}

Test(ctx, peak_bytes_remembers_the_highest_live_bytes)
{
	ureg_ctx *ctx = new_ctx("peak", UREG_CTX_SHARED);
	void *big = ureg_ctx_alloc(ctx, 50000);
	size_t high = ctx_live(ctx);
	void *small;

	cr_assert_not_null(big);
	ureg_ctx_free(ctx, big);
	small = ureg_ctx_alloc(ctx, 10);
	cr_assert_not_null(small);
	cr_assert_eq(ctx_stats(ctx).peak_bytes, high);
	cr_assert_lt(ctx_stats(ctx).live_bytes, high);
	ureg_ctx_destroy(ctx);
}

Test(ctx, calloc_zeroes_and_strdup_copies_into_the_context)
{
	ureg_ctx *ctx = new_ctx("mem", UREG_CTX_SHARED);
	unsigned char *z;
	char *s;
	char src[] = "hello, context";

	/* dirty the arena first so that zeroes are not luck */
	for (int i = 0; i < 8; i++) {
		void *d = ureg_ctx_alloc(ctx, 256);

		cr_assert_not_null(d);
		memset(d, 0xff, 256);
		ureg_ctx_free(ctx, d);
	}
	z = ureg_ctx_calloc(ctx, 16, 16);
	cr_assert_not_null(z);
	for (int i = 0; i < 256; i++)
		cr_assert_eq(z[i], 0, "byte %d", i);
	s = ureg_ctx_strdup(ctx, src);
	cr_assert_not_null(s);
	cr_assert_neq(s, src);
	cr_assert_str_eq(s, src);
	cr_assert_eq(ctx_stats(ctx).allocations, 2);
	cr_assert_eq(ctx_live(ctx), charge_of(ctx, 256) + charge_of(ctx, sizeof(src)));
	ureg_ctx_free(ctx, z);
	ureg_ctx_free(ctx, s);
	cr_assert_eq(ctx_live(ctx), 0);
	ureg_ctx_destroy(ctx);
}

Test(ctx, allocations_in_one_context_do_not_touch_another)
{
	ureg_ctx *a = new_ctx("a", UREG_CTX_SHARED);
	ureg_ctx *b = new_ctx("b", UREG_CTX_SHARED);
	struct ureg_ctx_stats before = ctx_stats(b), after;

	for (int i = 0; i < 100; i++)
		cr_assert_not_null(ureg_ctx_alloc(a, 64));
	after = ctx_stats(b);
	assert_stats_equal(&before, &after);
	cr_assert_eq(ctx_stats(b).live_bytes, 0);
	cr_assert_eq(ctx_stats(b).total_allocations, 0);
	cr_assert_eq(ctx_stats(a).allocations, 100);
	ureg_ctx_destroy(a);
	cr_assert_eq(ctx_stats(b).live_bytes, 0);
	ureg_ctx_destroy(b);
}

/* ------------------------------------------------------------------ */
/* quota                                                               */
/* ------------------------------------------------------------------ */

Test(ctx, an_allocation_over_quota_fails_with_edquot_and_changes_nothing)
{
	ureg_ctx *ctx = new_ctx("quota", UREG_CTX_SHARED);
	size_t c64 = charge_of(ctx, 64);
	void *keep = ureg_ctx_alloc(ctx, 100);
	struct ureg_ctx_stats before, after;
	void *p;

	cr_assert_not_null(keep);
	cr_assert_eq(ureg_ctx_set_quota(ctx, ctx_live(ctx) + c64), 0);
	before = ctx_stats(ctx);
	cr_assert_eq(before.quota, before.live_bytes + c64);

	errno = 0;
	cr_assert_null(ureg_ctx_alloc(ctx, 100000));
	cr_assert_eq(errno, EDQUOT);
	errno = 0;
	cr_assert_null(ureg_ctx_calloc(ctx, 1000, 100));
	cr_assert_eq(errno, EDQUOT);
	errno = 0;
	cr_assert_null(ureg_ctx_alloc(ctx, c64 + 1));
	cr_assert_eq(errno, EDQUOT);
	after = ctx_stats(ctx);
	assert_stats_equal(&before, &after);

	/* exactly up to the cap is allowed, one byte more is not */
	p = ureg_ctx_alloc(ctx, 64);
	cr_assert_not_null(p, "an allocation that reaches the cap exactly was refused");
	cr_assert_eq(ctx_live(ctx), ctx_stats(ctx).quota);
	errno = 0;
	cr_assert_null(ureg_ctx_alloc(ctx, 1));
	cr_assert_eq(errno, EDQUOT);
	cr_assert_null(ureg_ctx_strdup(ctx, "x"));
	cr_assert_eq(ctx_stats(ctx).allocations, 2);

	/* freeing makes room again */
	ureg_ctx_free(ctx, p);
	p = ureg_ctx_alloc(ctx, 64);
	cr_assert_not_null(p);
	ureg_ctx_destroy(ctx);
}

Test(ctx, a_factory_over_quota_fails_the_get_with_edquot_and_creates_nothing)
{
	ureg_registry *reg = new_reg();
	ureg_ctx *ctx = new_ctx("quota", UREG_CTX_SHARED);
	ureg_ctx *other = new_ctx("other", UREG_CTX_SHARED);
	struct fac f = { .id = 1, .extra = 1 << 20 };
	struct ureg_factory uf = fac_factory(&f, UREG_SCOPE_CONTEXT);
	struct ureg_ctx_stats before, after;
	void *p = NULL;

	cr_assert_eq(ureg_register_factory(reg, "big", &uf), 0);
	cr_assert_eq(ureg_ctx_set_quota(ctx, 64 * 1024), 0);
	before = ctx_stats(ctx);
	cr_assert_eq(get_rc(reg, "big", ctx, &p), -EDQUOT);
	cr_assert_eq(ureg_create_instance(reg, "big", ctx, &p), -EDQUOT);
	after = ctx_stats(ctx);
	cr_assert_eq(after.live_bytes, before.live_bytes);
	cr_assert_eq(after.allocations, before.allocations);
	cr_assert_eq(after.instances, 0);
	/* another context is not affected by this one's quota */
	cr_assert_eq(get_rc(reg, "big", other, &p), 0);
	cr_assert_eq(ctx_stats(other).instances, 1);
	/* lifting the quota lets the same get succeed: nothing was cached */
	cr_assert_eq(ureg_ctx_set_quota(ctx, 0), 0);
	cr_assert_eq(get_rc(reg, "big", ctx, &p), 0);
	cr_assert_eq(ctx_stats(ctx).instances, 1);
	ureg_ctx_destroy(ctx);
	ureg_ctx_destroy(other);
	ureg_registry_destroy(reg);
}

Test(ctx, lowering_the_quota_below_live_bytes_only_refuses_new_allocations)
{
	ureg_ctx *ctx = new_ctx("quota", UREG_CTX_SHARED);
	void *a = ureg_ctx_alloc(ctx, 1000);
	void *b = ureg_ctx_alloc(ctx, 1000);
	size_t live = ctx_live(ctx);

	cr_assert_not_null(a);
	cr_assert_not_null(b);
	cr_assert_eq(ureg_ctx_set_quota(ctx, 10), 0);
	cr_assert_eq(ctx_live(ctx), live);
	memset(a, 1, 1000); /* still ours */
	cr_assert_null(ureg_ctx_alloc(ctx, 1));
	ureg_ctx_free(ctx, a);
	cr_assert_lt(ctx_live(ctx), live);
	cr_assert_null(ureg_ctx_alloc(ctx, 1));
	cr_assert_eq(ureg_ctx_set_quota(ctx, 0), 0);
	cr_assert_eq(ctx_stats(ctx).quota, 0);
	a = ureg_ctx_alloc(ctx, 1 << 20);
	cr_assert_not_null(a);
	ureg_ctx_destroy(ctx);
}

/* ------------------------------------------------------------------ */
/* instances                                                           */
/* ------------------------------------------------------------------ */

Test(ctx, destroy_runs_instance_destructors_in_reverse_creation_order)
{
	ureg_registry *reg = new_reg();
	ureg_ctx *ctx = new_ctx("order", UREG_CTX_SHARED);
	struct fac t = { .id = 1, .extra = 40 }, c = { .id = 2 };
	struct ureg_factory ut = fac_factory(&t, UREG_SCOPE_TRANSIENT);
	struct ureg_factory uc = fac_factory(&c, UREG_SCOPE_CONTEXT);
	int created[12];
	char key[16];
	void *p;

	cr_assert_eq(ureg_register_factory(reg, "transient", &ut), 0);
	for (int i = 0; i < 6; i++) {
		snprintf(key, sizeof(key), "ctx-%d", i);
		cr_assert_eq(ureg_register_factory(reg, key, &uc), 0);
	}
	/* interleave the ways of creating */
	for (int i = 0; i < 12; i++) {
		if (i % 2) {
			snprintf(key, sizeof(key), "ctx-%d", i / 2);
			cr_assert_eq(get_rc(reg, key, ctx, &p), 0);
		} else if (i % 4) {
			cr_assert_eq(get_rc(reg, "transient", ctx, &p), 0);
		} else {
			cr_assert_eq(ureg_create_instance(reg, "transient", ctx, &p), 0);
		}
		created[i] = ((struct inst *)p)->serial;
	}
	cr_assert_eq(ctx_stats(ctx).instances, 12);
	ureg_ctx_destroy(ctx);
	cr_assert_eq(atomic_load(&destroy_log_len), 12);
	for (int i = 0; i < 12; i++)
		cr_assert_eq(destroy_log[i], created[11 - i],
			     "destroyed #%d was serial %d, expected %d", i,
			     destroy_log[i], created[11 - i]);
	ureg_registry_destroy(reg);
}

Test(ctx, a_released_instance_is_destroyed_at_once_and_not_again_at_context_destroy)
{
	ureg_registry *reg = new_reg();
	ureg_ctx *ctx = new_ctx("release", UREG_CTX_SHARED);
	struct fac f = { .id = 1 };
	struct ureg_factory uf = fac_factory(&f, UREG_SCOPE_TRANSIENT);
	void *inst[5];

	cr_assert_eq(ureg_register_factory(reg, "k", &uf), 0);
	for (int i = 0; i < 5; i++)
		cr_assert_eq(ureg_create_instance(reg, "k", ctx, &inst[i]), 0);
	cr_assert_eq(ureg_instance_release(ctx, inst[1]), 0);
	cr_assert_eq(atomic_load(&inst_destroyed), 1);
	cr_assert_eq(destroy_log[0], 1);
	cr_assert_eq(ctx_stats(ctx).instances, 4);
	cr_assert_eq(ureg_instance_release(ctx, inst[3]), 0);
	cr_assert_eq(ctx_stats(ctx).instances, 3);
	ureg_ctx_destroy(ctx);
	cr_assert_eq(atomic_load(&inst_destroyed), 5);
	int expect[] = { 1, 3, 4, 2, 0 };
	for (int i = 0; i < 5; i++)
		cr_assert_eq(destroy_log[i], expect[i], "destroy #%d", i);
	ureg_registry_destroy(reg);
}

Test(ctx, accounting_returns_to_zero_after_every_instance_is_released)
{
	ureg_registry *reg = new_reg();
	ureg_ctx *ctx = new_ctx("zero", UREG_CTX_SHARED);
	struct fac t = { .id = 1, .extra = 300 }, c = { .id = 2, .extra = 5000 };
	struct ureg_factory ut = fac_factory(&t, UREG_SCOPE_TRANSIENT);
	struct ureg_factory uc = fac_factory(&c, UREG_SCOPE_CONTEXT);
	void *inst[8];
	struct ureg_ctx_stats st;

	cr_assert_eq(ureg_register_factory(reg, "t", &ut), 0);
	cr_assert_eq(ureg_register_factory(reg, "c", &uc), 0);
	for (int i = 0; i < 7; i++)
		cr_assert_eq(ureg_create_instance(reg, "t", ctx, &inst[i]), 0);
	cr_assert_eq(get_rc(reg, "c", ctx, &inst[7]), 0);
	st = ctx_stats(ctx);
	cr_assert_eq(st.instances, 8);
	cr_assert_geq(st.allocations, 16);
	cr_assert_gt(st.live_bytes, 7 * 300 + 5000);
	for (int i = 0; i < 8; i++)
		cr_assert_eq(ureg_instance_release(ctx, inst[i]), 0);
	st = ctx_stats(ctx);
	cr_assert_eq(st.instances, 0);
	cr_assert_eq(st.live_bytes, 0);
	cr_assert_eq(st.allocations, 0);
	cr_assert_gt(st.peak_bytes, 7 * 300 + 5000);
	cr_assert_eq(atomic_load(&inst_destroyed), 8);
	ureg_ctx_destroy(ctx);
	cr_assert_eq(atomic_load(&inst_destroyed), 8);
	ureg_registry_destroy(reg);
}

Test(ctx, releasing_a_context_scope_instance_drops_it_from_the_cache)
{
	ureg_registry *reg = new_reg();
	ureg_ctx *ctx = new_ctx("cache", UREG_CTX_SHARED);
	struct fac f = { .id = 1 };
	struct ureg_factory uf = fac_factory(&f, UREG_SCOPE_CONTEXT);
	struct inst *a = NULL, *b = NULL;

	cr_assert_eq(ureg_register_factory(reg, "k", &uf), 0);
	cr_assert_eq(get_rc(reg, "k", ctx, (void **)&a), 0);
	cr_assert_eq(ureg_instance_release(ctx, a), 0);
	cr_assert_eq(ctx_stats(ctx).instances, 0);
	cr_assert_eq(get_rc(reg, "k", ctx, (void **)&b), 0);
	cr_assert_eq(atomic_load(&f.calls), 2);
	cr_assert_eq(b->magic, INST_MAGIC);
	cr_assert_eq(b->serial, 1);
	cr_assert_eq(ctx_stats(ctx).instances, 1);
	ureg_ctx_destroy(ctx);
	cr_assert_eq(atomic_load(&inst_destroyed), 2);
	ureg_registry_destroy(reg);
}

/*
 * A context that outlives many reloads: the cache homes a factory's serial
 * at its key's hash (lib/core/internal.h, UREG__SERIAL_HBITS), so every
 * factory ever registered under one key homes at the same slot, and a
 * full cache is rebuilt without the slots of released instances.  Every
 * get must still find the newest factory's instance, made once; with the
 * old instances kept (their slots stay), and with them released.  The
 * per-entry record (ureg_ctx_entries) is one for the key throughout.
 */
struct planner_records {
	int planner, others;
	size_t instances;
};

static int count_planner(const struct ureg_ctx_entry *e, void *arg)
{
	struct planner_records *r = arg;

	if (strcmp(e->key, "planner") == 0) {
		r->planner++;
		r->instances = e->instances;
	} else {
		r->others++;
	}
	return 0;
}

static void replaced_key_case(bool release)
{
	enum { N = 3000 };
	ureg_registry *reg = new_reg();
	ureg_ctx *ctx = new_ctx("reloads", UREG_CTX_SHARED);
	struct fac *f = calloc(N, sizeof(*f));
	struct inst *in, *again;
	char other[16];

	cr_assert_not_null(f);
	for (int i = 0; i < N; i++) {
		struct ureg_factory uf;

		f[i].id = i + 1;
		uf = fac_factory(&f[i], UREG_SCOPE_CONTEXT);
		cr_assert_eq(i ? ureg_replace_factory(reg, "planner", &uf)
			       : ureg_register_factory(reg, "planner", &uf), 0);
		/* a neighbour key now and then, so the cache holds more than
		 * one key's serials */
		if (i % 100 == 0) {
			snprintf(other, sizeof(other), "tool.%d", i);
			cr_assert_eq(ureg_register_factory(reg, other, &uf), 0);
			cr_assert_eq(get_rc(reg, other, ctx, (void **)&in), 0);
		}
		cr_assert_eq(get_rc(reg, "planner", ctx, (void **)&in), 0);
		cr_assert_eq(in->factory_id, i + 1, "get %d: instance of factory %d", i, in->factory_id);
		cr_assert_eq(get_rc(reg, "planner", ctx, (void **)&again), 0);
		cr_assert_eq(again, in, "get %d: a second get made another instance", i);
		if (release)
			cr_assert_eq(ureg_instance_release(ctx, in), 0);
	}
	for (int i = 0; i < N; i++)
		cr_assert_eq(atomic_load(&f[i].calls), 1 + (i % 100 == 0), "factory %d ran %d times",
			     i + 1, atomic_load(&f[i].calls));
	cr_assert_eq(ctx_stats(ctx).instances, (release ? 0 : N) + N / 100);
	/* one record per entry, whatever number of registrations made its
	 * instances: the context's bookkeeping does not grow with reloads */
	struct planner_records r = { 0 };
	cr_assert_eq(ureg_ctx_entries(ctx, count_planner, &r), 0);
	cr_assert_eq(r.planner, 1, "%d records for one key", r.planner);
	cr_assert_eq(r.others, N / 100);
	cr_assert_eq(r.instances, release ? 0 : N);
	ureg_ctx_destroy(ctx);
	ureg_registry_destroy(reg);
	free(f);
}

Test(ctx, a_key_replaced_thousands_of_times_gets_its_newest_factory_with_old_instances_kept)
{
	replaced_key_case(false);
}

Test(ctx, a_key_replaced_thousands_of_times_gets_its_newest_factory_with_old_instances_released)
{
	replaced_key_case(true);
}

static int count_records(const struct ureg_ctx_entry *e, void *arg)
{
	(void)e;
	(*(int *)arg)++;
	return 0;
}

/* Entries are named by registry and key, as every report names them: the
 * same key in two registries is two records (two registries that share a
 * name, which nothing forbids, would share them: a report could not tell
 * them apart either). */
Test(ctx, the_same_key_in_two_registries_keeps_two_records_across_reloads)
{
	ureg_registry *a = NULL, *b = NULL;

	cr_assert_eq(ureg_registry_new(&item_type, "ctx-test-a", &a), 0);
	cr_assert_eq(ureg_registry_new(&item_type, "ctx-test-b", &b), 0);
	ureg_ctx *ctx = new_ctx("two", UREG_CTX_SHARED);
	struct fac fa = { .id = 1 }, fb = { .id = 2 }, fa2 = { .id = 3 };
	struct ureg_factory ua = fac_factory(&fa, UREG_SCOPE_CONTEXT);
	struct ureg_factory ub = fac_factory(&fb, UREG_SCOPE_CONTEXT);
	struct ureg_factory ua2 = fac_factory(&fa2, UREG_SCOPE_CONTEXT);
	struct inst *x, *y, *z;
	int n = 0;

	cr_assert_eq(ureg_register_factory(a, "planner", &ua), 0);
	cr_assert_eq(ureg_register_factory(b, "planner", &ub), 0);
	cr_assert_eq(get_rc(a, "planner", ctx, (void **)&x), 0);
	cr_assert_eq(get_rc(b, "planner", ctx, (void **)&y), 0);
	cr_assert_eq(ureg_replace_factory(a, "planner", &ua2), 0);
	cr_assert_eq(get_rc(a, "planner", ctx, (void **)&z), 0);
	cr_assert_eq(x->factory_id, 1);
	cr_assert_eq(y->factory_id, 2);
	cr_assert_eq(z->factory_id, 3);
	cr_assert_eq(ureg_ctx_entries(ctx, count_records, &n), 0);
	cr_assert_eq(n, 2, "%d records: one per registry and key", n);
	ureg_ctx_destroy(ctx);
	ureg_registry_destroy(a);
	ureg_registry_destroy(b);
}

Test(ctx, releasing_something_that_is_not_an_instance_of_the_context_returns_enoent)
{
	ureg_registry *reg = new_reg();
	ureg_ctx *a = new_ctx("a", UREG_CTX_SHARED), *b = new_ctx("b", UREG_CTX_SHARED);
	struct fac f = { .id = 1 };
	struct ureg_factory uf = fac_factory(&f, UREG_SCOPE_TRANSIENT);
	void *inst = NULL, *plain = NULL;

	cr_assert_eq(ureg_register_factory(reg, "k", &uf), 0);
	cr_assert_eq(ureg_create_instance(reg, "k", a, &inst), 0);
	plain = ureg_ctx_alloc(a, 32);
	cr_assert_not_null(plain);
	cr_assert_eq(ureg_instance_release(b, inst), -ENOENT);
	cr_assert_eq(ureg_instance_release(a, plain), -ENOENT);
	cr_assert_eq(atomic_load(&inst_destroyed), 0);
	cr_assert_eq(ctx_stats(a).instances, 1);
	cr_assert_eq(ureg_instance_release(a, inst), 0);
	cr_assert_eq(ureg_instance_release(a, inst), -ENOENT);
	cr_assert_eq(atomic_load(&inst_destroyed), 1);
	ureg_ctx_destroy(a);
	ureg_ctx_destroy(b);
	ureg_registry_destroy(reg);
}

/* ------------------------------------------------------------------ */
/* arenas                                                              */
/* ------------------------------------------------------------------ */

Test(ctx, a_dedicated_context_has_an_arena_of_its_own)
{
	ureg_ctx *shared = new_ctx("s", UREG_CTX_SHARED);
	ureg_ctx *d1 = new_ctx("d1", UREG_CTX_DEDICATED);
	ureg_ctx *d2 = new_ctx("d2", UREG_CTX_DEDICATED);
	struct ureg_ctx_stats s = ctx_stats(shared), a = ctx_stats(d1), b = ctx_stats(d2);
	size_t c100 = charge_of(d1, 100);
	void *p[10];

	cr_assert_eq(s.dedicated, 0);
	cr_assert_eq(a.dedicated, 1);
	cr_assert_eq(b.dedicated, 1);
	cr_assert_neq(a.arena, b.arena);
	cr_assert_neq(a.arena, s.arena);
	cr_assert_neq(b.arena, s.arena);
	cr_assert_geq(c100, 100);
	for (int i = 0; i < 10; i++) {
		p[i] = ureg_ctx_alloc(d1, 100);
		cr_assert_not_null(p[i]);
		cr_assert_eq((uintptr_t)p[i] % 16, 0);
	}
	cr_assert_eq(ctx_live(d1), 10 * c100);
	cr_assert_eq(ctx_stats(d1).allocations, 10);
	for (int i = 0; i < 10; i++)
		ureg_ctx_free(d1, p[i]);
	cr_assert_eq(ctx_live(d1), 0);
	cr_assert_eq(ctx_live(d2), 0);
	ureg_ctx_destroy(d1);
	ureg_ctx_destroy(d2);
	ureg_ctx_destroy(shared);
}

Test(ctx, dedicated_contexts_give_their_arena_back_on_destroy)
{
	/* More cycles than jemalloc has arenas (~4,086): a leaked arena per
	 * cycle would end in -EAGAIN. */
	for (int i = 0; i < 4500; i++) {
		ureg_ctx *ctx = NULL;
		int rc = ureg_ctx_new(NULL, UREG_CTX_DEDICATED, &ctx);

		cr_assert_eq(rc, 0, "cycle %d: %s", i, ureg_strerror(rc));
		cr_assert_not_null(ureg_ctx_alloc(ctx, 4096));
		ureg_ctx_destroy(ctx);
	}
}

Test(ctx, shared_contexts_draw_from_a_pool_of_the_configured_size)
{
	enum { N = 40 };
	ureg_ctx *ctx[N];
	unsigned arenas[N];
	int distinct = 0;

	cr_assert_eq(ureg_arena_pool_size(2), 0);
	for (int i = 0; i < N; i++) {
		bool seen = false;

		ctx[i] = new_ctx(NULL, UREG_CTX_SHARED);
		arenas[i] = ctx_stats(ctx[i]).arena;
		for (int j = 0; j < i; j++)
			seen = seen || arenas[j] == arenas[i];
		distinct += !seen;
	}
	cr_assert_leq(distinct, 2);
	cr_assert_geq(distinct, 1);
	cr_assert_eq(ureg_arena_pool_size(4), -EBUSY);
	for (int i = 0; i < N; i++)
		ureg_ctx_destroy(ctx[i]);
}

/* ------------------------------------------------------------------ */
/* foreach and scale                                                   */
/* ------------------------------------------------------------------ */

struct walk {
	ureg_ctx **expect;
	size_t n;
	size_t seen;
	size_t mismatches;
	size_t stop_after;
};

static int walk_fn(ureg_ctx *ctx, void *arg)
{
	struct walk *w = arg;

	if (w->seen >= w->n || w->expect[w->seen] != ctx)
		w->mismatches++;
	w->seen++;
	if (w->stop_after && w->seen == w->stop_after)
		return 77;
	return 0;
}

Test(ctx, foreach_visits_every_live_context_in_creation_order)
{
	ureg_ctx *all[5], *live[4];
	struct walk w = { 0 };

	for (int i = 0; i < 5; i++)
		all[i] = new_ctx(NULL, i == 2 ? UREG_CTX_DEDICATED : UREG_CTX_SHARED);
	ureg_ctx_destroy(all[1]);
	live[0] = all[0];
	live[1] = all[2];
	live[2] = all[3];
	live[3] = all[4];
	w.expect = live;
	w.n = 4;
	cr_assert_eq(ureg_ctx_foreach(walk_fn, &w), 0);
	cr_assert_eq(w.seen, 4);
	cr_assert_eq(w.mismatches, 0);
	for (int i = 0; i < 4; i++)
		ureg_ctx_destroy(live[i]);
	w.seen = 0;
	w.n = 0;
	cr_assert_eq(ureg_ctx_foreach(walk_fn, &w), 0);
	cr_assert_eq(w.seen, 0);
}

Test(ctx, foreach_stops_at_the_first_non_zero_return_and_returns_it)
{
	ureg_ctx *c[4];
	struct walk w = { .expect = c, .n = 4, .stop_after = 2 };

	for (int i = 0; i < 4; i++)
		c[i] = new_ctx(NULL, UREG_CTX_SHARED);
	cr_assert_eq(ureg_ctx_foreach(walk_fn, &w), 77);
	cr_assert_eq(w.seen, 2);
	cr_assert_eq(w.mismatches, 0);
	for (int i = 0; i < 4; i++)
		ureg_ctx_destroy(c[i]);
}

Test(ctx, a_hundred_thousand_shared_contexts_live_at_once, .timeout = 60)
{
	enum { N = 100000 };
	ureg_ctx **ctx = calloc(N, sizeof(*ctx));
	uint32_t **mem = calloc(N, sizeof(*mem));
	struct walk w = { .expect = ctx, .n = N };
	unsigned arenas[16];
	int distinct = 0;

	cr_assert_not_null(ctx);
	cr_assert_not_null(mem);
	for (int i = 0; i < N; i++) {
		int rc = ureg_ctx_new(NULL, UREG_CTX_SHARED, &ctx[i]);

		cr_assert_eq(rc, 0, "context %d: %s", i, ureg_strerror(rc));
		mem[i] = ureg_ctx_alloc(ctx[i], 24);
		cr_assert_not_null(mem[i], "context %d", i);
		*mem[i] = (uint32_t)i;
	}
	/* all alive, all intact, each with its own exact accounting */
	for (int i = 0; i < N; i++) {
		cr_assert_eq(*mem[i], (uint32_t)i);
		if (i % 1000 == 0) {
			struct ureg_ctx_stats st = ctx_stats(ctx[i]);
			bool seen = false;

			cr_assert_eq(st.allocations, 1);
			cr_assert_eq(st.dedicated, 0);
			for (int j = 0; j < distinct; j++)
				seen = seen || arenas[j] == st.arena;
			if (!seen && distinct < 16)
				arenas[distinct++] = st.arena;
		}
	}
	cr_assert_leq(distinct, 8, "the default pool has 8 arenas");
	cr_assert_eq(ureg_ctx_foreach(walk_fn, &w), 0);
	cr_assert_eq(w.seen, N);
	cr_assert_eq(w.mismatches, 0);
	for (int i = 0; i < N; i++)
		ureg_ctx_destroy(ctx[i]);
	w.n = 0;
	w.seen = 0;
	cr_assert_eq(ureg_ctx_foreach(walk_fn, &w), 0);
	cr_assert_eq(w.seen, 0);
	free(ctx);
	free(mem);
}

/* Fisher-Yates over @order[0..n) with a fixed LCG seeded by @x. */
static void shuffle(unsigned *order, int n, unsigned x)
{
	for (int i = n - 1; i > 0; i--) {
		x = x * 1103515245u + 12345u;
		unsigned j = (x >> 8) % (unsigned)(i + 1), tmp = order[i];
		order[i] = order[j];
		order[j] = tmp;
	}
}

/*
 * Release finds an instance through the context's instance table: releasing in
 * any order (here a fixed shuffle of 1,000) destroys exactly the instance
 * named, keeps every other one alive, and leaves the accounting exact.
 */
static int shuffle_made;
static void *shuffle_seen[1000];

static int shuffle_factory(ureg_ctx *ctx, void *arg, void **out)
{
	int *p = ureg_ctx_alloc(ctx, sizeof(int));
	if (!p)
		return -ENOMEM;
	*p = shuffle_made++;
	*out = p;
	return 0;
}

static int shuffle_destroyed[1000];
static void shuffle_destroy(void *inst, ureg_ctx *ctx)
{
	shuffle_destroyed[*(int *)inst]++;
	ureg_ctx_free(ctx, inst);
}

Test(ctx, instances_are_released_in_any_order_and_only_the_named_one_dies)
{
	static const ureg_type t = { .name = "shuffle" };
	ureg_registry *reg;
	ureg_ctx *ctx;
	struct ureg_ctx_stats st;
	unsigned order[1000], x = 12345;

	cr_assert_eq(ureg_registry_new(&t, "shuffle", &reg), 0);
	cr_assert_eq(ureg_register_factory(reg, "f", &(struct ureg_factory){
		.create = shuffle_factory, .instance_destroy = shuffle_destroy }), 0);
	cr_assert_eq(ureg_ctx_new("shuffle", 0, &ctx), 0);
	for (int i = 0; i < 1000; i++) {
		cr_assert_eq(ureg_create_instance(reg, "f", ctx, &shuffle_seen[i]), 0);
		order[i] = (unsigned)i;
	}
	shuffle(order, 1000, x);
	for (int n = 0; n < 1000; n++) {
		unsigned victim = order[n];
		cr_assert_eq(ureg_instance_release(ctx, shuffle_seen[victim]), 0);
		cr_assert_eq(shuffle_destroyed[victim], 1);
		cr_assert_eq(ureg_instance_release(ctx, shuffle_seen[victim]), -ENOENT);
		cr_assert_eq(ureg_ctx_stats(ctx, &st), 0);
		cr_assert_eq(st.instances, (size_t)(999 - n));
		cr_assert_eq(st.allocations, (size_t)(999 - n));
	}
	for (int i = 0; i < 1000; i++)
		cr_assert_eq(shuffle_destroyed[i], 1, "instance %d destroyed %d times", i,
			     shuffle_destroyed[i]);
	cr_assert_eq(st.live_bytes, 0);
	ureg_ctx_destroy(ctx);
	ureg_registry_destroy(reg);
}

/*
 * The records live by value in a table keyed by object (insttab.h): a
 * release shifts the rest of its cluster back, a growth rebuilds the
 * table, and both must carry the creation order with them.  2,000
 * instances (the table grows from 4 to 4,096 slots), a shuffled half
 * released, 500 more made in the holes; destroy must then run the
 * destructors of the survivors exactly newest first.
 */
static int order_made;
static int order_log[2500], order_log_len;

static int order_factory(ureg_ctx *ctx, void *arg, void **out)
{
	int *p = ureg_ctx_alloc(ctx, sizeof(int));
	(void)arg;
	if (!p)
		return -ENOMEM;
	*p = order_made++;
	*out = p;
	return 0;
}

static void order_destroy(void *inst, ureg_ctx *ctx)
{
	order_log[order_log_len++] = *(int *)inst;
	ureg_ctx_free(ctx, inst);
}

Test(ctx, creation_order_survives_the_shifts_and_growths_of_the_instance_table)
{
	static const ureg_type t = { .name = "order" };
	static void *made[2500];
	static bool alive[2500];
	ureg_registry *reg;
	ureg_ctx *ctx;
	unsigned order[2000], x = 777;
	int expect = 0;

	cr_assert_eq(ureg_registry_new(&t, "order2", &reg), 0);
	cr_assert_eq(ureg_register_factory(reg, "f", &(struct ureg_factory){
		.create = order_factory, .instance_destroy = order_destroy }), 0);
	cr_assert_eq(ureg_ctx_new("order2", 0, &ctx), 0);
	for (int i = 0; i < 2000; i++) {
		cr_assert_eq(ureg_create_instance(reg, "f", ctx, &made[i]), 0);
		alive[i] = true;
		order[i] = (unsigned)i;
	}
	shuffle(order, 2000, x);
	for (int n = 0; n < 1000; n++) {
		cr_assert_eq(ureg_instance_release(ctx, made[order[n]]), 0);
		alive[order[n]] = false;
	}
	cr_assert_eq(order_log_len, 1000);
	for (int i = 2000; i < 2500; i++) {
		cr_assert_eq(ureg_create_instance(reg, "f", ctx, &made[i]), 0);
		alive[i] = true;
	}
	/* every live one is still found (and alloc_for reaches its record) */
	for (int i = 0; i < 2500; i++)
		if (alive[i])
			cr_assert_not_null(ureg_ctx_alloc_for(ctx, made[i], 8), "instance %d lost", i);
	order_log_len = 0;
	ureg_ctx_destroy(ctx);
	cr_assert_eq(order_log_len, 1500);
	for (int i = 2499, n = 0; i >= 0; i--) {
		if (!alive[i])
			continue;
		cr_assert_eq(order_log[n], i, "destroyed #%d was %d, expected %d", n,
			     order_log[n], i);
		n++;
		expect++;
	}
	cr_assert_eq(expect, 1500);
	ureg_registry_destroy(reg);
}

/*
 * The biased context lock (ctx_int.h): the owner takes it with plain
 * stores, another thread pauses the bias with a membarrier, moves the
 * ownership after 15 entries and switches the bias off after 3 moves.
 * Two threads allocate and free in one context at the same time; a lost
 * update (both inside at once) would show in the counters, a broken list
 * in ASan at destroy.
 */
struct bias_run {
	ureg_ctx *ctx;
	int foreign_ops;
	atomic_int foreign_done;
	atomic_int started;
	atomic_int bad;
};

static void *bias_owner(void *arg)
{
	struct bias_run *r = arg;

	if (ureg_ctx_new("bias", UREG_CTX_SHARED, &r->ctx)) { /* its creator owns it */
		atomic_fetch_add(&r->bad, 1);
		atomic_store(&r->foreign_done, 1);
	}
	atomic_store(&r->started, 1);
	while (!atomic_load(&r->foreign_done)) {
		void *q = ureg_ctx_alloc(r->ctx, 40);
		/* (the creator's entries take the biased path) */
		if (!q)
			atomic_fetch_add(&r->bad, 1);
		ureg_ctx_free(r->ctx, q);
	}
	return NULL;
}

static void *bias_foreign(void *arg)
{
	struct bias_run *r = arg;

	while (!atomic_load(&r->started))
		sched_yield();
	for (int i = 0; i < r->foreign_ops && r->ctx; i++) {
		void *q = ureg_ctx_alloc(r->ctx, 200);
		if (!q)
			atomic_fetch_add(&r->bad, 1);
		ureg_ctx_free(r->ctx, q);
	}
	atomic_store(&r->foreign_done, 1);
	return NULL;
}

static void bias_check(int foreign_ops)
{
	struct bias_run r = { .foreign_ops = foreign_ops };
	struct ureg_ctx_stats st;
	pthread_t a, b;

	cr_assert_eq(pthread_create(&a, NULL, bias_owner, &r), 0);
	cr_assert_eq(pthread_create(&b, NULL, bias_foreign, &r), 0);
	pthread_join(a, NULL);
	pthread_join(b, NULL);
	cr_assert_eq(atomic_load(&r.bad), 0);
	cr_assert_eq(ureg_ctx_stats(r.ctx, &st), 0);
	cr_assert_eq(st.live_bytes, 0, "lost update: %zu bytes", st.live_bytes);
	cr_assert_eq(st.allocations, 0);
	cr_assert_geq(st.total_allocations, (uint64_t)foreign_ops + 1);
	ureg_ctx_destroy(r.ctx);
}

Test(ctx, a_second_thread_entering_an_owned_context_a_few_times_keeps_exact_accounting)
{
	for (int i = 0; i < 200; i++)
		bias_check(7); /* 14 entries: the bias is paused each time, never moved */
}

Test(ctx, a_context_that_changes_threads_keeps_exact_accounting_through_every_change_of_owner)
{
	for (int i = 0; i < 5; i++)
		bias_check(5000); /* ownership moves three times, then the bias is off */
}

/*
 * Seats (ctx_int.h): a thread's seat outlives it and serves the next
 * thread.  A context whose owner exited names a seat that a new thread
 * now uses for its own context, in and out of it all the time: entries
 * into the orphan must neither wait on that thread nor lose an update
 * (the 20 entries pause the dead owner's bias 15 times, then move the
 * ownership to the entering thread).
 */
struct orphan_run {
	ureg_ctx *orphan;
	void *kept;
	atomic_int stop, bad;
	atomic_long ops;
};

static void *orphan_maker(void *arg)
{
	struct orphan_run *r = arg;

	if (ureg_ctx_new("orphan", UREG_CTX_SHARED, &r->orphan) ||
	    !(r->kept = ureg_ctx_alloc(r->orphan, 100)))
		atomic_fetch_add(&r->bad, 1);
	return NULL; /* its seat goes back to the free list */
}

static void *seat_reuser(void *arg)
{
	struct orphan_run *r = arg;
	ureg_ctx *own = NULL;

	if (ureg_ctx_new("own", UREG_CTX_SHARED, &own)) {
		atomic_fetch_add(&r->bad, 1);
		atomic_store(&r->ops, 1);
		return NULL;
	}
	while (!atomic_load(&r->stop)) {
		void *q = ureg_ctx_alloc(own, 40);
		if (!q)
			atomic_fetch_add(&r->bad, 1);
		ureg_ctx_free(own, q);
		atomic_fetch_add(&r->ops, 1);
	}
	ureg_ctx_destroy(own);
	return NULL;
}

Test(ctx, a_context_whose_owner_exited_is_entered_while_the_owners_seat_serves_a_new_thread,
     .timeout = 30)
{
	struct orphan_run r = { 0 };
	struct ureg_ctx_stats st;
	pthread_t a, b;

	for (int round = 0; round < 50; round++) {
		memset(&r, 0, sizeof(r));
		cr_assert_eq(pthread_create(&a, NULL, orphan_maker, &r), 0);
		pthread_join(a, NULL);
		cr_assert_eq(atomic_load(&r.bad), 0);
		cr_assert_eq(pthread_create(&b, NULL, seat_reuser, &r), 0);
		while (!atomic_load(&r.ops))
			sched_yield();
		for (int i = 0; i < 20; i++) {
			void *q = ureg_ctx_alloc(r.orphan, 200);
			cr_assert_not_null(q);
			ureg_ctx_free(r.orphan, q);
		}
		atomic_store(&r.stop, 1);
		pthread_join(b, NULL);
		cr_assert_eq(atomic_load(&r.bad), 0);
		cr_assert_eq(ureg_ctx_stats(r.orphan, &st), 0);
		cr_assert_eq(st.allocations, 1, "round %d: %zu allocations", round, st.allocations);
		cr_assert_eq(st.total_allocations, 21);
		ureg_ctx_free(r.orphan, r.kept);
		ureg_ctx_destroy(r.orphan);
	}
}

/* ------------------------------------------------ the thread's block cache */

static uint64_t thread_deallocated(void)
{
	uint64_t v = 0;
	size_t sz = sizeof(v);

	cr_assert_eq(mallctl("thread.deallocated", &v, &sz, NULL, 0), 0);
	return v;
}

static unsigned arena_of(void *p)
{
	unsigned a = 0;
	size_t sz = sizeof(a);

	cr_assert_eq(mallctl("arenas.lookup", &a, &sz, &p, sizeof(p)), 0);
	return a;
}

Test(ctx, a_block_freed_in_one_shared_context_and_reused_by_another_counts_for_the_second_only)
{
	ureg_ctx *a = new_ctx("cache-a", UREG_CTX_SHARED);
	ureg_ctx *b = new_ctx("cache-b", UREG_CTX_SHARED);
	void *p, *q;

	ureg_ctx_thread_cache_flush();
	p = ureg_ctx_alloc(a, 100);
	cr_assert_not_null(p);
	ureg_ctx_free(a, p);
	q = ureg_ctx_alloc(b, 100); /* the same class, on the same thread */
	cr_assert_eq(q, p, "the thread's cache hands the freed block back");
	cr_assert_eq(ctx_live(a), 0);
	cr_assert_eq(ctx_stats(a).allocations, 0);
	cr_assert_eq(ctx_live(b), charge_of(b, 100));
	cr_assert_eq(ctx_stats(b).allocations, 1);
	ureg_ctx_destroy(a);
	ureg_ctx_destroy(b);
}

Test(ctx, the_thread_cache_keeps_at_most_128_kib_of_a_size_class_and_a_flush_gives_back_the_rest)
{
	enum { N = 4000 };
	ureg_ctx *ctx = new_ctx("cache-bound", UREG_CTX_SHARED);
	size_t usable = charge_of(ctx, 64); /* 96: 64 bytes + the 32-byte header */
	static void *blk[N];
	uint64_t before, after_free, after_flush;

	ureg_ctx_thread_cache_flush();
	for (int i = 0; i < N; i++)
		cr_assert_not_null(blk[i] = ureg_ctx_alloc(ctx, 64));
	before = thread_deallocated();
	for (int i = 0; i < N; i++)
		ureg_ctx_free(ctx, blk[i]);
	after_free = thread_deallocated();
	/* what the cache may keep went nowhere; everything else to jemalloc */
	cr_assert_geq(after_free - before, (uint64_t)N * usable - ((uint64_t)128 << 10),
		      "freed %llu of %llu bytes", (unsigned long long)(after_free - before),
		      (unsigned long long)N * usable);
	cr_assert_lt(after_free - before, (uint64_t)N * usable, "the cache kept some");
	ureg_ctx_thread_cache_flush();
	after_flush = thread_deallocated();
	cr_assert_eq(after_flush - before, (uint64_t)N * usable, "flushed: all of it is back");
	cr_assert_eq(ctx_live(ctx), 0);
	ureg_ctx_destroy(ctx);
}

Test(ctx, a_dedicated_context_never_takes_or_lends_cached_blocks)
{
	ureg_ctx *sh = new_ctx("cache-shared", UREG_CTX_SHARED);
	ureg_ctx *de = new_ctx("cache-dedicated", UREG_CTX_DEDICATED);
	unsigned arena = ctx_stats(de).arena;
	void *p, *q;

	ureg_ctx_thread_cache_flush();
	p = ureg_ctx_alloc(sh, 64);
	cr_assert_not_null(p);
	ureg_ctx_free(sh, p); /* cached */
	q = ureg_ctx_alloc(de, 64);
	cr_assert_not_null(q);
	cr_assert_neq(q, p);
	cr_assert_eq(arena_of((char *)q - 32), arena, "from the context's own arena");
	ureg_ctx_free(de, q); /* back to its arena, not to the cache */
	p = ureg_ctx_alloc(sh, 64);
	cr_assert_not_null(p);
	cr_assert_neq(p, q);
	ureg_ctx_free(sh, p);
	ureg_ctx_destroy(de);
	ureg_ctx_destroy(sh);
}

/*
 * A context past 2^UREG__SERIAL_HBITS cache slots (lib/core/internal.h):
 * below that size a serial homes at its key's hash bits and ureg_get
 * prefetches the slot before the table search; past it a home also
 * takes counter bits and there is no prefetch.  The cache holds at most
 * half its slots, so more than 2^19 live instances put it past 2^20.
 * Every get must still find its own key's instance, made once, through
 * replaces and releases at that size.
 */
Test(ctx, a_context_of_more_than_half_a_million_instances_finds_each_one)
{
	enum { N = (1 << 19) + 40000, REPLACED = 2000 };
	ureg_registry *reg = new_reg();
	ureg_ctx *ctx = new_ctx("huge", UREG_CTX_SHARED);
	struct fac f = { .id = 1 }, g = { .id = 2 };
	struct ureg_factory uf = fac_factory(&f, UREG_SCOPE_CONTEXT);
	struct ureg_factory ug = fac_factory(&g, UREG_SCOPE_CONTEXT);
	struct inst **in = calloc(N, sizeof(*in));
	struct inst *p;
	char key[16];

	cr_assert_not_null(in);
	for (int i = 0; i < N; i++) {
		snprintf(key, sizeof(key), "k%07d", i);
		cr_assert_eq(ureg_register_factory(reg, key, &uf), 0);
		cr_assert_eq(get_rc(reg, key, ctx, (void **)&in[i]), 0);
		cr_assert_eq(in[i]->magic, INST_MAGIC);
	}
	cr_assert_eq(ctx_stats(ctx).instances, N);
	cr_assert_eq(atomic_load(&f.calls), N);
	/* every key again, at full size: its own instance, nothing made */
	for (int i = 0; i < N; i++) {
		snprintf(key, sizeof(key), "k%07d", i);
		cr_assert_eq(get_rc(reg, key, ctx, (void **)&p), 0);
		cr_assert_eq(p, in[i], "key %d: another instance", i);
	}
	cr_assert_eq(atomic_load(&f.calls), N);
	/* replaced keys get the new factory's instance; released ones are
	 * made again, once */
	for (int i = 0; i < REPLACED; i++) {
		int r = i * (N / REPLACED), q = r + 1;

		snprintf(key, sizeof(key), "k%07d", r);
		cr_assert_eq(ureg_replace_factory(reg, key, &ug), 0);
		cr_assert_eq(get_rc(reg, key, ctx, (void **)&p), 0);
		cr_assert_eq(p->factory_id, 2, "key %d: instance of factory %d", r, p->factory_id);
		cr_assert_neq(p, in[r]);
		in[r] = p;
		snprintf(key, sizeof(key), "k%07d", q);
		cr_assert_eq(ureg_instance_release(ctx, in[q]), 0);
		cr_assert_eq(get_rc(reg, key, ctx, (void **)&p), 0);
		cr_assert_eq(p->factory_id, 1);
		in[q] = p;
	}
	cr_assert_eq(atomic_load(&g.calls), REPLACED);
	cr_assert_eq(atomic_load(&f.calls), N + REPLACED);
	for (int i = 0; i < N; i++) {
		snprintf(key, sizeof(key), "k%07d", i);
		cr_assert_eq(get_rc(reg, key, ctx, (void **)&p), 0);
		cr_assert_eq(p, in[i], "key %d: another instance after the changes", i);
	}
	cr_assert_eq(ctx_stats(ctx).instances, N + REPLACED);
	ureg_ctx_destroy(ctx);
	cr_assert_eq(atomic_load(&inst_destroyed), N + 2 * REPLACED);
	ureg_registry_destroy(reg);
	free(in);
}
