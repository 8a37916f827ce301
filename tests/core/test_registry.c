/* SPDX-License-Identifier: MIT */
/*
 * The registry's semantics, call by call (DESIGN.md "Concepts"):
 * register / register_factory / get / create_instance / unregister /
 * replace / lookup / contains / keys / count / entry_info, counted
 * references, factory args and anchors, the on_create hook, and batches.
 */
#include <criterion/criterion.h>

#include "core_test.h"

static ureg_registry *new_reg(const ureg_type *type)
{
	ureg_registry *reg = NULL;

	cr_assert_eq(ureg_registry_new(type, "core-test", &reg), 0);
	cr_assert_not_null(reg);
	return reg;
}

static ureg_ctx *new_ctx(void)
{
	ureg_ctx *ctx = NULL;

	cr_assert_eq(ureg_ctx_new("user", UREG_CTX_SHARED, &ctx), 0);
	cr_assert_not_null(ctx);
	return ctx;
}

/* ------------------------------------------------------------------ */
/* register                                                            */
/* ------------------------------------------------------------------ */

Test(registry, a_registered_singleton_is_found_by_lookup_and_get)
{
	ureg_registry *reg = new_reg(&item_type);
	struct item *it = item_new(1);
	void *p = NULL;

	cr_assert_eq(ureg_count(reg), 0);
	cr_assert_eq(ureg_register(reg, "planner", it), 0);
	cr_assert_eq(lookup_rc(reg, "planner", &p), 0);
	cr_assert_eq(p, it);
	p = NULL;
	cr_assert_eq(get_rc(reg, "planner", NULL, &p), 0);
	cr_assert_eq(p, it);
	cr_assert_eq(ureg_count(reg), 1);
	cr_assert_eq(ureg_contains(reg, "planner"), 1);
	ureg_registry_destroy(reg);
	cr_assert_eq(atomic_load(&items_destroyed), 1);
	cr_assert_eq(atomic_load(&items_bad_destroy), 0);
}

Test(registry, registering_a_taken_key_returns_eexist_and_changes_nothing)
{
	ureg_registry *reg = new_reg(&item_type);
	struct item *first = item_new(1), *second = item_new(2);
	void *p = NULL;
	uint64_t gen;

	cr_assert_eq(ureg_register(reg, "k", first), 0);
	gen = ureg_generation(reg);
	cr_assert_eq(ureg_register(reg, "k", second), -EEXIST);
	cr_assert_str_not_empty(ureg_last_error());
	cr_assert_eq(ureg_generation(reg), gen);
	cr_assert_eq(ureg_count(reg), 1);
	cr_assert_eq(lookup_rc(reg, "k", &p), 0);
	cr_assert_eq(p, first);
	/* the refused item is still the caller's: nobody destroys it */
	ureg_registry_destroy(reg);
	cr_assert_eq(atomic_load(&items_destroyed), 1);
	cr_assert_eq(second->magic, ITEM_MAGIC);
	item_free_unowned(second);
}

Test(registry, registering_a_taken_factory_key_returns_eexist_and_keeps_the_first_factory)
{
	ureg_registry *reg = new_reg(&item_type);
	ureg_ctx *ctx = new_ctx();
	struct fac f1 = { .id = 1 }, f2 = { .id = 2 };
	struct ureg_factory u1 = fac_factory(&f1, UREG_SCOPE_TRANSIENT);
	struct ureg_factory u2 = fac_factory(&f2, UREG_SCOPE_TRANSIENT);
	uint64_t gen;
	void *p = NULL;

	cr_assert_eq(ureg_register_factory(reg, "k", &u1), 0);
	gen = ureg_generation(reg);
	cr_assert_eq(ureg_register_factory(reg, "k", &u2), -EEXIST);
	cr_assert_eq(ureg_generation(reg), gen);
	cr_assert_eq(ureg_count(reg), 1);
	cr_assert_eq(get_rc(reg, "k", ctx, &p), 0);
	cr_assert_eq(((struct inst *)p)->factory_id, 1);
	cr_assert_eq(atomic_load(&f2.calls), 0);
	ureg_ctx_destroy(ctx);
	ureg_registry_destroy(reg);
}

Test(registry, a_key_may_hold_a_singleton_and_a_factory_at_once)
{
	ureg_registry *reg = new_reg(&item_type);
	struct fac f = { .id = 1 };
	struct ureg_factory uf = fac_factory(&f, UREG_SCOPE_CONTEXT);
	struct ureg_entry_info info;

	cr_assert_eq(ureg_register(reg, "k", item_new(1)), 0);
	cr_assert_eq(ureg_register_factory(reg, "k", &uf), 0);
	cr_assert_eq(ureg_count(reg), 1);
	ureg_read_lock();
	cr_assert_eq(ureg_entry_info(reg, "k", &info), 0);
	ureg_read_unlock();
	cr_assert(info.has_singleton);
	cr_assert(info.has_factory);
	cr_assert_eq(info.scope, UREG_SCOPE_CONTEXT);
	/* and in the other order */
	cr_assert_eq(ureg_register_factory(reg, "j", &uf), 0);
	cr_assert_eq(ureg_register(reg, "j", item_new(2)), 0);
	cr_assert_eq(ureg_count(reg), 2);
	ureg_registry_destroy(reg);
	cr_assert_eq(atomic_load(&items_destroyed), 2);
}

/* ------------------------------------------------------------------ */
/* get / create_instance                                               */
/* ------------------------------------------------------------------ */

Test(registry, get_prefers_the_singleton_over_the_factory)
{
	ureg_registry *reg = new_reg(&item_type);
	ureg_ctx *ctx = new_ctx();
	struct item *it = item_new(7);
	struct fac f = { .id = 1 };
	struct ureg_factory uf = fac_factory(&f, UREG_SCOPE_TRANSIENT);
	void *p = NULL;

	cr_assert_eq(ureg_register_factory(reg, "k", &uf), 0);
	cr_assert_eq(ureg_register(reg, "k", it), 0);
	cr_assert_eq(get_rc(reg, "k", ctx, &p), 0);
	cr_assert_eq(p, it);
	cr_assert_eq(atomic_load(&f.calls), 0);
	cr_assert_eq(ctx_stats(ctx).instances, 0);
	ureg_ctx_destroy(ctx);
	ureg_registry_destroy(reg);
}

Test(registry, get_with_a_context_makes_a_new_transient_instance_each_call)
{
	ureg_registry *reg = new_reg(&item_type);
	ureg_ctx *ctx = new_ctx();
	struct fac f = { .id = 3 };
	struct ureg_factory uf = fac_factory(&f, UREG_SCOPE_TRANSIENT);
	void *a = NULL, *b = NULL;

	cr_assert_eq(ureg_register_factory(reg, "k", &uf), 0);
	cr_assert_eq(get_rc(reg, "k", ctx, &a), 0);
	cr_assert_eq(get_rc(reg, "k", ctx, &b), 0);
	cr_assert_not_null(a);
	cr_assert_not_null(b);
	cr_assert_neq(a, b);
	cr_assert_eq(((struct inst *)a)->factory_id, 3);
	cr_assert_eq(((struct inst *)a)->magic, INST_MAGIC);
	cr_assert_eq(atomic_load(&f.calls), 2);
	cr_assert_eq(ctx_stats(ctx).instances, 2);
	ureg_ctx_destroy(ctx);
	cr_assert_eq(atomic_load(&inst_destroyed), 2);
	ureg_registry_destroy(reg);
}

Test(registry, get_with_a_context_returns_one_cached_context_scope_instance_per_context)
{
	ureg_registry *reg = new_reg(&item_type);
	ureg_ctx *c1 = new_ctx(), *c2 = new_ctx();
	struct fac f = { .id = 4 };
	struct ureg_factory uf = fac_factory(&f, UREG_SCOPE_CONTEXT);
	void *a = NULL, *b = NULL, *other = NULL;

	cr_assert_eq(ureg_register_factory(reg, "k", &uf), 0);
	cr_assert_eq(get_rc(reg, "k", c1, &a), 0);
	cr_assert_eq(get_rc(reg, "k", c1, &b), 0);
	cr_assert_eq(a, b);
	cr_assert_eq(atomic_load(&f.calls), 1);
	cr_assert_eq(get_rc(reg, "k", c2, &other), 0);
	cr_assert_neq(other, a);
	cr_assert_eq(atomic_load(&f.calls), 2);
	cr_assert_eq(ctx_stats(c1).instances, 1);
	cr_assert_eq(ctx_stats(c2).instances, 1);
	ureg_ctx_destroy(c1);
	ureg_ctx_destroy(c2);
	cr_assert_eq(atomic_load(&inst_destroyed), 2);
	ureg_registry_destroy(reg);
}

Test(registry, get_without_a_context_on_a_factory_only_key_returns_enoent)
{
	ureg_registry *reg = new_reg(&item_type);
	struct fac f = { .id = 1 };
	struct ureg_factory uf = fac_factory(&f, UREG_SCOPE_TRANSIENT);
	void *p = (void *)0x1;

	cr_assert_eq(ureg_register_factory(reg, "k", &uf), 0);
	cr_assert_eq(get_rc(reg, "k", NULL, &p), -ENOENT);
	cr_assert_eq(atomic_load(&f.calls), 0);
	cr_assert_eq(get_rc(reg, "missing", NULL, &p), -ENOENT);
	ureg_registry_destroy(reg);
}

Test(registry, get_of_an_unknown_key_with_a_context_returns_enoent)
{
	ureg_registry *reg = new_reg(&item_type);
	ureg_ctx *ctx = new_ctx();
	void *p = NULL;

	cr_assert_eq(get_rc(reg, "nobody", ctx, &p), -ENOENT);
	cr_assert_eq(ctx_stats(ctx).instances, 0);
	cr_assert_eq(ctx_stats(ctx).live_bytes, 0);
	ureg_ctx_destroy(ctx);
	ureg_registry_destroy(reg);
}

Test(registry, create_instance_always_makes_a_new_instance_even_for_context_scope)
{
	ureg_registry *reg = new_reg(&item_type);
	ureg_ctx *ctx = new_ctx();
	struct fac f = { .id = 5 };
	struct ureg_factory uf = fac_factory(&f, UREG_SCOPE_CONTEXT);
	void *a = NULL, *b = NULL;

	cr_assert_eq(ureg_register_factory(reg, "k", &uf), 0);
	/* a singleton on the key does not stop create_instance */
	cr_assert_eq(ureg_register(reg, "k", item_new(1)), 0);
	/* outside a read section too */
	cr_assert_eq(ureg_create_instance(reg, "k", ctx, &a), 0);
	ureg_read_lock();
	cr_assert_eq(ureg_create_instance(reg, "k", ctx, &b), 0);
	ureg_read_unlock();
	cr_assert_neq(a, b);
	cr_assert_eq(((struct inst *)a)->factory_id, 5);
	cr_assert_eq(((struct inst *)b)->factory_id, 5);
	cr_assert_eq(atomic_load(&f.calls), 2);
	cr_assert_eq(ctx_stats(ctx).instances, 2);
	ureg_ctx_destroy(ctx);
	cr_assert_eq(atomic_load(&inst_destroyed), 2);
	ureg_registry_destroy(reg);
}

Test(registry, create_instance_of_a_singleton_only_key_returns_enoent)
{
	ureg_registry *reg = new_reg(&item_type);
	ureg_ctx *ctx = new_ctx();
	void *p = NULL;

	cr_assert_eq(ureg_register(reg, "k", item_new(1)), 0);
	cr_assert_eq(ureg_create_instance(reg, "k", ctx, &p), -ENOENT);
	cr_assert_eq(ureg_create_instance(reg, "missing", ctx, &p), -ENOENT);
	cr_assert_eq(ctx_stats(ctx).instances, 0);
	ureg_ctx_destroy(ctx);
	ureg_registry_destroy(reg);
}

Test(registry, a_failing_factory_returns_its_error_and_caches_nothing)
{
	ureg_registry *reg = new_reg(&item_type);
	ureg_ctx *ctx = new_ctx();
	struct fac f = { .id = 1, .fail_with = -EIO };
	struct ureg_factory uf = fac_factory(&f, UREG_SCOPE_CONTEXT);
	void *p = NULL;

	cr_assert_eq(ureg_register_factory(reg, "k", &uf), 0);
	cr_assert_eq(get_rc(reg, "k", ctx, &p), -EIO);
	cr_assert_eq(ureg_create_instance(reg, "k", ctx, &p), -EIO);
	cr_assert_eq(ctx_stats(ctx).instances, 0);
	cr_assert_eq(ctx_stats(ctx).live_bytes, 0);
	/* the failure was not cached: the next get tries again and succeeds */
	f.fail_with = 0;
	cr_assert_eq(get_rc(reg, "k", ctx, &p), 0);
	cr_assert_eq(atomic_load(&f.calls), 3);
	cr_assert_eq(ctx_stats(ctx).instances, 1);
	ureg_ctx_destroy(ctx);
	ureg_registry_destroy(reg);
}

/* ------------------------------------------------------------------ */
/* unregister                                                          */
/* ------------------------------------------------------------------ */

Test(registry, unregistering_the_singleton_keeps_the_factory)
{
	ureg_registry *reg = new_reg(&item_type);
	ureg_ctx *ctx = new_ctx();
	struct fac f = { .id = 9 };
	struct ureg_factory uf = fac_factory(&f, UREG_SCOPE_TRANSIENT);
	void *p = NULL;

	cr_assert_eq(ureg_register(reg, "k", item_new(1)), 0);
	cr_assert_eq(ureg_register_factory(reg, "k", &uf), 0);
	cr_assert_eq(ureg_unregister(reg, "k", UREG_SINGLETON), 0);
	cr_assert_eq(ureg_contains(reg, "k"), 1);
	cr_assert_eq(ureg_count(reg), 1);
	cr_assert_eq(lookup_rc(reg, "k", &p), -ENOENT);
	cr_assert_eq(get_rc(reg, "k", ctx, &p), 0);
	cr_assert_eq(((struct inst *)p)->factory_id, 9);
	cr_assert_eq(wait_count(&items_destroyed, 1), 1);
	ureg_ctx_destroy(ctx);
	ureg_registry_destroy(reg);
	cr_assert_eq(atomic_load(&items_destroyed), 1);
}

Test(registry, unregistering_the_factory_keeps_the_singleton)
{
	ureg_registry *reg = new_reg(&item_type);
	ureg_ctx *ctx = new_ctx();
	struct item *it = item_new(1);
	struct fac f = { .id = 9 };
	struct ureg_factory uf = fac_factory(&f, UREG_SCOPE_TRANSIENT);
	void *p = NULL;

	cr_assert_eq(ureg_register(reg, "k", it), 0);
	cr_assert_eq(ureg_register_factory(reg, "k", &uf), 0);
	cr_assert_eq(ureg_unregister(reg, "k", UREG_FACTORY), 0);
	cr_assert_eq(ureg_contains(reg, "k"), 1);
	cr_assert_eq(ureg_create_instance(reg, "k", ctx, &p), -ENOENT);
	cr_assert_eq(lookup_rc(reg, "k", &p), 0);
	cr_assert_eq(p, it);
	cr_assert_eq(atomic_load(&f.calls), 0);
	ureg_ctx_destroy(ctx);
	ureg_registry_destroy(reg);
}

Test(registry, unregistering_both_removes_the_key)
{
	ureg_registry *reg = new_reg(&item_type);
	ureg_ctx *ctx = new_ctx();
	struct fac f = { .id = 9 };
	struct ureg_factory uf = fac_factory(&f, UREG_SCOPE_TRANSIENT);
	void *p = NULL;

	cr_assert_eq(ureg_register(reg, "k", item_new(1)), 0);
	cr_assert_eq(ureg_register_factory(reg, "k", &uf), 0);
	cr_assert_eq(ureg_register(reg, "other", item_new(2)), 0);
	cr_assert_eq(ureg_unregister(reg, "k", UREG_BOTH), 0);
	cr_assert_eq(ureg_contains(reg, "k"), 0);
	cr_assert_eq(ureg_count(reg), 1);
	cr_assert_eq(get_rc(reg, "k", ctx, &p), -ENOENT);
	/* the key is free again */
	cr_assert_eq(ureg_register(reg, "k", item_new(3)), 0);
	ureg_ctx_destroy(ctx);
	ureg_registry_destroy(reg);
	cr_assert_eq(atomic_load(&items_destroyed), 3);
}

Test(registry, removing_the_last_part_of_a_key_removes_the_key)
{
	ureg_registry *reg = new_reg(&item_type);
	struct fac f = { .id = 9 };
	struct ureg_factory uf = fac_factory(&f, UREG_SCOPE_TRANSIENT);

	cr_assert_eq(ureg_register(reg, "k", item_new(1)), 0);
	cr_assert_eq(ureg_register_factory(reg, "k", &uf), 0);
	cr_assert_eq(ureg_unregister(reg, "k", UREG_SINGLETON), 0);
	cr_assert_eq(ureg_unregister(reg, "k", UREG_FACTORY), 0);
	cr_assert_eq(ureg_contains(reg, "k"), 0);
	cr_assert_eq(ureg_count(reg), 0);
	ureg_registry_destroy(reg);
}

Test(registry, unregistering_a_missing_part_returns_enoent_and_changes_nothing)
{
	ureg_registry *reg = new_reg(&item_type);
	struct fac f = { .id = 9 };
	struct ureg_factory uf = fac_factory(&f, UREG_SCOPE_TRANSIENT);
	uint64_t gen;

	cr_assert_eq(ureg_register(reg, "only-item", item_new(1)), 0);
	cr_assert_eq(ureg_register_factory(reg, "only-factory", &uf), 0);
	gen = ureg_generation(reg);
	cr_assert_eq(ureg_unregister(reg, "only-item", UREG_FACTORY), -ENOENT);
	cr_assert_eq(ureg_unregister(reg, "only-factory", UREG_SINGLETON), -ENOENT);
	cr_assert_eq(ureg_unregister(reg, "nothing", UREG_BOTH), -ENOENT);
	cr_assert_eq(ureg_generation(reg), gen);
	cr_assert_eq(ureg_count(reg), 2);
	cr_assert_eq(ureg_contains(reg, "only-item"), 1);
	cr_assert_eq(ureg_contains(reg, "only-factory"), 1);
	grace_periods(3);
	cr_assert_eq(atomic_load(&items_destroyed), 0);
	ureg_registry_destroy(reg);
}

Test(registry, unregister_both_of_a_singleton_only_key_removes_it)
{
	ureg_registry *reg = new_reg(&item_type);

	cr_assert_eq(ureg_register(reg, "k", item_new(1)), 0);
	cr_assert_eq(ureg_unregister(reg, "k", UREG_BOTH), 0);
	cr_assert_eq(ureg_count(reg), 0);
	cr_assert_eq(wait_count(&items_destroyed, 1), 1);
	ureg_registry_destroy(reg);
	cr_assert_eq(atomic_load(&items_destroyed), 1);
}

Test(registry, an_unregistered_item_stays_readable_until_the_read_section_ends)
{
	ureg_registry *reg = new_reg(&item_type);
	struct item *it = item_new(1);
	void *p = NULL;

	cr_assert_eq(ureg_register(reg, "k", it), 0);
	ureg_read_lock();
	cr_assert_eq(ureg_lookup(reg, "k", &p), 0);
	/* a writer may run while this thread reads: it must not free */
	cr_assert_eq(ureg_unregister(reg, "k", UREG_SINGLETON), 0);
	cr_assert_eq(((struct item *)p)->magic, ITEM_MAGIC);
	cr_assert_eq(atomic_load(&items_destroyed), 0);
	ureg_read_unlock();
	cr_assert_eq(wait_count(&items_destroyed, 1), 1);
	ureg_registry_destroy(reg);
	cr_assert_eq(atomic_load(&items_destroyed), 1);
	cr_assert_eq(atomic_load(&items_bad_destroy), 0);
}

/* ------------------------------------------------------------------ */
/* replace                                                             */
/* ------------------------------------------------------------------ */

Test(registry, replace_swaps_the_singleton_and_destroys_the_old_one_once)
{
	ureg_registry *reg = new_reg(&item_type);
	struct item *old = item_new(1), *new = item_new(2);
	void *p = NULL;

	cr_assert_eq(ureg_register(reg, "k", old), 0);
	cr_assert_eq(ureg_replace(reg, "k", new), 0);
	cr_assert_eq(lookup_rc(reg, "k", &p), 0);
	cr_assert_eq(p, new);
	cr_assert_eq(ureg_count(reg), 1);
	cr_assert_eq(wait_count(&items_destroyed, 1), 1);
	cr_assert_eq(new->magic, ITEM_MAGIC);
	ureg_registry_destroy(reg);
	cr_assert_eq(atomic_load(&items_destroyed), 2);
	cr_assert_eq(atomic_load(&items_bad_destroy), 0);
}

Test(registry, replace_keeps_the_factory)
{
	ureg_registry *reg = new_reg(&item_type);
	ureg_ctx *ctx = new_ctx();
	struct fac f = { .id = 6 };
	struct ureg_factory uf = fac_factory(&f, UREG_SCOPE_TRANSIENT);
	struct ureg_entry_info info;
	void *p = NULL;

	cr_assert_eq(ureg_register(reg, "k", item_new(1)), 0);
	cr_assert_eq(ureg_register_factory(reg, "k", &uf), 0);
	cr_assert_eq(ureg_replace(reg, "k", item_new(2)), 0);
	ureg_read_lock();
	cr_assert_eq(ureg_entry_info(reg, "k", &info), 0);
	ureg_read_unlock();
	cr_assert(info.has_factory);
	cr_assert(info.has_singleton);
	cr_assert_eq(ureg_create_instance(reg, "k", ctx, &p), 0);
	cr_assert_eq(((struct inst *)p)->factory_id, 6);
	ureg_ctx_destroy(ctx);
	ureg_registry_destroy(reg);
}

Test(registry, replace_of_a_key_without_a_singleton_returns_enoent_and_changes_nothing)
{
	ureg_registry *reg = new_reg(&item_type);
	struct fac f = { .id = 6 };
	struct ureg_factory uf = fac_factory(&f, UREG_SCOPE_TRANSIENT);
	struct item *it = item_new(1);
	void *p = NULL;
	uint64_t gen;

	cr_assert_eq(ureg_register_factory(reg, "k", &uf), 0);
	gen = ureg_generation(reg);
	cr_assert_eq(ureg_replace(reg, "k", it), -ENOENT);
	cr_assert_eq(ureg_replace(reg, "missing", it), -ENOENT);
	cr_assert_eq(ureg_generation(reg), gen);
	cr_assert_eq(lookup_rc(reg, "k", &p), -ENOENT);
	cr_assert_eq(ureg_contains(reg, "missing"), 0);
	cr_assert_eq(ureg_count(reg), 1);
	ureg_registry_destroy(reg);
	cr_assert_eq(it->magic, ITEM_MAGIC);
	cr_assert_eq(atomic_load(&items_destroyed), 0);
	item_free_unowned(it);
}

Test(registry, replace_factory_makes_new_context_instances_with_the_new_factory_and_keeps_old_ones)
{
	ureg_registry *reg = new_reg(&item_type);
	ureg_ctx *ctx = new_ctx();
	struct fac f1 = { .id = 1 }, f2 = { .id = 2 };
	struct ureg_factory u1 = fac_factory(&f1, UREG_SCOPE_CONTEXT);
	struct ureg_factory u2 = fac_factory(&f2, UREG_SCOPE_CONTEXT);
	struct inst *before = NULL, *after = NULL;

	cr_assert_eq(ureg_register_factory(reg, "k", &u1), 0);
	cr_assert_eq(get_rc(reg, "k", ctx, (void **)&before), 0);
	cr_assert_eq(before->factory_id, 1);
	cr_assert_eq(ureg_replace_factory(reg, "k", &u2), 0);
	cr_assert_eq(get_rc(reg, "k", ctx, (void **)&after), 0);
	cr_assert_eq(after->factory_id, 2);
	cr_assert_neq(after, before);
	/* the old instance stays in its context, untouched */
	cr_assert_eq(before->magic, INST_MAGIC);
	cr_assert_eq(ctx_stats(ctx).instances, 2);
	cr_assert_eq(atomic_load(&inst_destroyed), 0);
	cr_assert_eq(atomic_load(&f1.calls), 1);
	cr_assert_eq(atomic_load(&f2.calls), 1);
	ureg_ctx_destroy(ctx);
	cr_assert_eq(atomic_load(&inst_destroyed), 2);
	ureg_registry_destroy(reg);
}

Test(registry, replace_factory_of_a_key_without_a_factory_returns_enoent)
{
	ureg_registry *reg = new_reg(&item_type);
	struct fac f = { .id = 2 };
	struct ureg_factory uf = fac_factory(&f, UREG_SCOPE_CONTEXT);
	uint64_t gen;

	cr_assert_eq(ureg_register(reg, "k", item_new(1)), 0);
	gen = ureg_generation(reg);
	cr_assert_eq(ureg_replace_factory(reg, "k", &uf), -ENOENT);
	cr_assert_eq(ureg_replace_factory(reg, "missing", &uf), -ENOENT);
	cr_assert_eq(ureg_generation(reg), gen);
	cr_assert_eq(ureg_count(reg), 1);
	ureg_registry_destroy(reg);
}

/* ------------------------------------------------------------------ */
/* lookup, contains, keys, count, entry_info, read sections             */
/* ------------------------------------------------------------------ */

Test(registry, contains_reports_keys_with_a_singleton_or_a_factory)
{
	ureg_registry *reg = new_reg(&item_type);
	struct fac f = { .id = 2 };
	struct ureg_factory uf = fac_factory(&f, UREG_SCOPE_CONTEXT);

	cr_assert_eq(ureg_register(reg, "item", item_new(1)), 0);
	cr_assert_eq(ureg_register_factory(reg, "factory", &uf), 0);
	cr_assert_eq(ureg_contains(reg, "item"), 1);
	cr_assert_eq(ureg_contains(reg, "factory"), 1);
	cr_assert_eq(ureg_contains(reg, "neither"), 0);
	/* inside a read section as well */
	ureg_read_lock();
	cr_assert_eq(ureg_contains(reg, "item"), 1);
	ureg_read_unlock();
	ureg_registry_destroy(reg);
}

Test(registry, lookup_never_creates_an_instance)
{
	ureg_registry *reg = new_reg(&item_type);
	struct fac f = { .id = 2 };
	struct ureg_factory uf = fac_factory(&f, UREG_SCOPE_CONTEXT);
	void *p = NULL;

	cr_assert_eq(ureg_register_factory(reg, "k", &uf), 0);
	cr_assert_eq(lookup_rc(reg, "k", &p), -ENOENT);
	cr_assert_eq(atomic_load(&f.calls), 0);
	ureg_registry_destroy(reg);
}

Test(registry, lookup_singleton_get_and_entry_info_outside_a_read_section_return_eperm)
{
	ureg_registry *reg = new_reg(&item_type);
	ureg_ctx *ctx = new_ctx();
	struct fac f = { .id = 2 };
	struct ureg_factory uf = fac_factory(&f, UREG_SCOPE_CONTEXT);
	struct ureg_entry_info info;
	void *p = NULL;

	cr_assert_eq(ureg_register(reg, "item", item_new(1)), 0);
	cr_assert_eq(ureg_register_factory(reg, "factory", &uf), 0);
	cr_assert_not(ureg_in_read_section());
	cr_assert_eq(ureg_lookup(reg, "item", &p), -EPERM);
	cr_assert_null(p);
	cr_assert_str_not_empty(ureg_last_error());
	cr_assert_eq(ureg_get(reg, "item", NULL, &p), -EPERM);
	cr_assert_eq(ureg_get(reg, "item", ctx, &p), -EPERM);
	cr_assert_null(p);
	cr_assert_eq(ureg_entry_info(reg, "item", &info), -EPERM);
	cr_assert_eq(atomic_load(&f.calls), 0);
	cr_assert_eq(ctx_stats(ctx).instances, 0);
	ureg_ctx_destroy(ctx);
	ureg_registry_destroy(reg);
}

Test(registry, read_sections_nest)
{
	ureg_registry *reg = new_reg(&item_type);
	void *p = NULL;

	cr_assert_eq(ureg_register(reg, "k", item_new(1)), 0);
	cr_assert_not(ureg_in_read_section());
	ureg_read_lock();
	ureg_read_lock();
	cr_assert(ureg_in_read_section());
	ureg_read_unlock();
	cr_assert(ureg_in_read_section());
	cr_assert_eq(ureg_lookup(reg, "k", &p), 0);
	ureg_read_unlock();
	cr_assert_not(ureg_in_read_section());
	cr_assert_eq(ureg_lookup(reg, "k", &p), -EPERM);
	ureg_registry_destroy(reg);
}

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

Test(registry, keys_returns_a_snapshot_of_every_key)
{
	ureg_registry *reg = new_reg(&item_type);
	struct fac f = { .id = 2 };
	struct ureg_factory uf = fac_factory(&f, UREG_SCOPE_CONTEXT);
	char **keys = NULL;
	size_t n = 99;

	cr_assert_eq(ureg_register(reg, "alpha", item_new(1)), 0);
	cr_assert_eq(ureg_register_factory(reg, "beta", &uf), 0);
	cr_assert_eq(ureg_register(reg, "gamma", item_new(2)), 0);
	cr_assert_eq(ureg_register_factory(reg, "gamma", &uf), 0);
	cr_assert_eq(ureg_keys(reg, &keys, &n), 0);
	cr_assert_eq(n, 3);
	cr_assert_null(keys[3]);
	qsort(keys, n, sizeof(*keys), cmp_str);
	cr_assert_str_eq(keys[0], "alpha");
	cr_assert_str_eq(keys[1], "beta");
	cr_assert_str_eq(keys[2], "gamma");
	/* a snapshot: later changes do not touch it */
	cr_assert_eq(ureg_unregister(reg, "alpha", UREG_BOTH), 0);
	ureg_synchronize();
	cr_assert_str_eq(keys[0], "alpha");
	ureg_keys_free(keys);
	/* n may be NULL */
	cr_assert_eq(ureg_keys(reg, &keys, NULL), 0);
	cr_assert_not_null(keys[0]);
	cr_assert_not_null(keys[1]);
	cr_assert_null(keys[2]);
	ureg_keys_free(keys);
	ureg_registry_destroy(reg);
}

Test(registry, keys_of_an_empty_registry_is_an_empty_array)
{
	ureg_registry *reg = new_reg(&item_type);
	char **keys = NULL;
	size_t n = 99;

	cr_assert_eq(ureg_keys(reg, &keys, &n), 0);
	cr_assert_eq(n, 0);
	cr_assert_not_null(keys);
	cr_assert_null(keys[0]);
	ureg_keys_free(keys);
	ureg_keys_free(NULL);
	ureg_registry_destroy(reg);
}

Test(registry, count_counts_keys_not_their_parts)
{
	ureg_registry *reg = new_reg(&item_type);
	struct fac f = { .id = 2 };
	struct ureg_factory uf = fac_factory(&f, UREG_SCOPE_TRANSIENT);
	char key[32];

	cr_assert_eq(ureg_count(reg), 0);
	for (int i = 0; i < 100; i++) {
		snprintf(key, sizeof(key), "key-%d", i);
		cr_assert_eq(ureg_register(reg, key, item_new(i)), 0);
		if (i % 2)
			cr_assert_eq(ureg_register_factory(reg, key, &uf), 0);
	}
	cr_assert_eq(ureg_count(reg), 100);
	for (int i = 0; i < 100; i += 4) {
		snprintf(key, sizeof(key), "key-%d", i);
		cr_assert_eq(ureg_unregister(reg, key, UREG_BOTH), 0);
	}
	cr_assert_eq(ureg_count(reg), 75);
	ureg_registry_destroy(reg);
	cr_assert_eq(atomic_load(&items_destroyed), 100);
}

Test(registry, entry_info_describes_an_entry_registered_through_the_api)
{
	ureg_registry *reg = new_reg(&item_type);
	struct fac f = { .id = 2 };
	struct ureg_factory uf = fac_factory(&f, UREG_SCOPE_TRANSIENT);
	struct ureg_entry_info info;

	cr_assert_eq(ureg_register(reg, "item", item_new(1)), 0);
	cr_assert_eq(ureg_register_factory(reg, "factory", &uf), 0);
	ureg_read_lock();
	memset(&info, 0xa5, sizeof(info));
	cr_assert_eq(ureg_entry_info(reg, "item", &info), 0);
	cr_assert(info.has_singleton);
	cr_assert_not(info.has_factory);
	cr_assert_eq(info.generation, 1); /* the first change of this registry */
	cr_assert_null(info.provider);
	cr_assert_null(info.source_file);
	memset(&info, 0xa5, sizeof(info));
	cr_assert_eq(ureg_entry_info(reg, "factory", &info), 0);
	cr_assert_not(info.has_singleton);
	cr_assert(info.has_factory);
	cr_assert_eq(info.scope, UREG_SCOPE_TRANSIENT);
	cr_assert_eq(ureg_entry_info(reg, "missing", &info), -ENOENT);
	ureg_read_unlock();
	ureg_registry_destroy(reg);
}

Test(registry, name_and_type_are_the_ones_given_at_creation)
{
	static const ureg_type parent = { .name = "base" };
	static const ureg_type child = { .name = "derived", .parent = &parent };
	ureg_registry *reg = NULL;

	cr_assert_eq(ureg_registry_new(&child, "tools", &reg), 0);
	cr_assert_str_eq(ureg_registry_name(reg), "tools");
	cr_assert_eq(ureg_registry_type(reg), &child);
	cr_assert_eq(ureg_registry_type(reg)->parent, &parent);
	ureg_registry_destroy(reg);
	ureg_registry_destroy(NULL);
}

Test(registry, generation_increases_with_every_change_and_never_on_failure)
{
	ureg_registry *reg = new_reg(&item_type);
	struct fac f = { .id = 2 };
	struct ureg_factory uf = fac_factory(&f, UREG_SCOPE_TRANSIENT);
	uint64_t g0 = ureg_generation(reg), g;
	struct item *spare = item_new(99);

	cr_assert_eq(ureg_register(reg, "k", item_new(1)), 0);
	g = ureg_generation(reg);
	cr_assert_gt(g, g0);
	cr_assert_eq(ureg_register(reg, "k", spare), -EEXIST);
	cr_assert_eq(ureg_generation(reg), g);
	cr_assert_eq(ureg_register_factory(reg, "k", &uf), 0);
	cr_assert_gt(ureg_generation(reg), g);
	g = ureg_generation(reg);
	cr_assert_eq(ureg_replace(reg, "k", item_new(2)), 0);
	cr_assert_gt(ureg_generation(reg), g);
	g = ureg_generation(reg);
	cr_assert_eq(ureg_replace_factory(reg, "k", &uf), 0);
	cr_assert_gt(ureg_generation(reg), g);
	g = ureg_generation(reg);
	cr_assert_eq(ureg_unregister(reg, "k", UREG_BOTH), 0);
	cr_assert_gt(ureg_generation(reg), g);
	g = ureg_generation(reg);
	cr_assert_eq(ureg_unregister(reg, "k", UREG_BOTH), -ENOENT);
	cr_assert_eq(ureg_generation(reg), g);
	ureg_registry_destroy(reg);
	item_free_unowned(spare);
}

/* ------------------------------------------------------------------ */
/* counted references                                                  */
/* ------------------------------------------------------------------ */

Test(registry, an_acquired_reference_keeps_an_unregistered_item_alive_until_released)
{
	ureg_registry *reg = new_reg(&item_type);
	struct item *it = item_new(1);
	ureg_ref *ref = NULL;

	cr_assert_eq(ureg_register(reg, "k", it), 0);
	cr_assert_eq(ureg_acquire(reg, "k", &ref), 0);
	cr_assert_not_null(ref);
	cr_assert_eq(ureg_ref_item(ref), it);
	cr_assert_eq(ureg_unregister(reg, "k", UREG_SINGLETON), 0);
	cr_assert_eq(ureg_contains(reg, "k"), 0);
	grace_periods(20);
	cr_assert_eq(atomic_load(&items_destroyed), 0);
	cr_assert_eq(it->magic, ITEM_MAGIC);
	cr_assert_eq(ureg_ref_item(ref), it);
	ureg_ref_release(ref);
	cr_assert_eq(wait_count(&items_destroyed, 1), 1);
	ureg_registry_destroy(reg);
	cr_assert_eq(atomic_load(&items_destroyed), 1);
	cr_assert_eq(atomic_load(&items_bad_destroy), 0);
}

Test(registry, an_acquired_reference_survives_replace_and_registry_destroy)
{
	ureg_registry *reg = new_reg(&item_type);
	struct item *old = item_new(1);
	ureg_ref *ref = NULL, *ref2 = NULL;

	cr_assert_eq(ureg_register(reg, "k", old), 0);
	cr_assert_eq(ureg_acquire(reg, "k", &ref), 0);
	cr_assert_eq(ureg_acquire(reg, "k", &ref2), 0);
	cr_assert_eq(ureg_replace(reg, "k", item_new(2)), 0);
	/* destroy runs rcu_barrier: every callback that could run has run */
	ureg_registry_destroy(reg);
	cr_assert_eq(atomic_load(&items_destroyed), 1); /* the new item only */
	cr_assert_eq(old->magic, ITEM_MAGIC);
	cr_assert_eq(ureg_ref_item(ref), old);
	ureg_ref_release(ref);
	grace_periods(20);
	cr_assert_eq(atomic_load(&items_destroyed), 1); /* ref2 still holds it */
	cr_assert_eq(old->magic, ITEM_MAGIC);
	ureg_ref_release(ref2);
	cr_assert_eq(wait_count(&items_destroyed, 2), 2);
	cr_assert_eq(atomic_load(&items_bad_destroy), 0);
	ureg_ref_release(NULL);
}

Test(registry, acquire_of_a_key_without_a_singleton_returns_enoent)
{
	ureg_registry *reg = new_reg(&item_type);
	struct fac f = { .id = 2 };
	struct ureg_factory uf = fac_factory(&f, UREG_SCOPE_TRANSIENT);
	ureg_ref *ref = NULL;

	cr_assert_eq(ureg_register_factory(reg, "factory", &uf), 0);
	cr_assert_eq(ureg_acquire(reg, "factory", &ref), -ENOENT);
	cr_assert_eq(ureg_acquire(reg, "missing", &ref), -ENOENT);
	cr_assert_null(ref);
	ureg_registry_destroy(reg);
}

/* ------------------------------------------------------------------ */
/* factory args, anchors, destructor overrides, on_create               */
/* ------------------------------------------------------------------ */

Test(registry, a_factory_arg_is_freed_once_the_factory_and_all_its_instances_are_gone)
{
	ureg_registry *reg = new_reg(&item_type);
	ureg_ctx *ctx = new_ctx();
	atomic_int freed = 0;
	struct fac f = { .id = 1, .arg_freed = &freed };
	struct ureg_factory uf = fac_factory(&f, UREG_SCOPE_TRANSIENT);
	void *a = NULL, *b = NULL;

	cr_assert_eq(ureg_register_factory(reg, "k", &uf), 0);
	cr_assert_eq(ureg_create_instance(reg, "k", ctx, &a), 0);
	cr_assert_eq(ureg_create_instance(reg, "k", ctx, &b), 0);
	cr_assert_eq(ureg_unregister(reg, "k", UREG_FACTORY), 0);
	grace_periods(20);
	cr_assert_eq(atomic_load(&freed), 0, "arg freed while instances live");
	cr_assert_eq(ureg_instance_release(ctx, a), 0);
	grace_periods(5);
	cr_assert_eq(atomic_load(&freed), 0, "arg freed while an instance lives");
	cr_assert_eq(ureg_instance_release(ctx, b), 0);
	cr_assert_eq(wait_count(&freed, 1), 1);
	ureg_ctx_destroy(ctx);
	ureg_registry_destroy(reg);
	cr_assert_eq(atomic_load(&freed), 1);
}

Test(registry, a_factory_arg_outlives_the_registry_while_its_instances_live)
{
	ureg_registry *reg = new_reg(&item_type);
	ureg_ctx *ctx = new_ctx();
	atomic_int freed = 0;
	struct fac f = { .id = 1, .arg_freed = &freed };
	struct ureg_factory uf = fac_factory(&f, UREG_SCOPE_CONTEXT);
	void *a = NULL;

	cr_assert_eq(ureg_register_factory(reg, "k", &uf), 0);
	cr_assert_eq(get_rc(reg, "k", ctx, &a), 0);
	ureg_registry_destroy(reg);
	cr_assert_eq(atomic_load(&freed), 0);
	cr_assert_eq(((struct inst *)a)->magic, INST_MAGIC);
	ureg_ctx_destroy(ctx);
	cr_assert_eq(atomic_load(&inst_destroyed), 1);
	cr_assert_eq(wait_count(&freed, 1), 1);
}

Test(registry, a_factory_arg_is_freed_when_the_registry_is_destroyed)
{
	ureg_registry *reg = new_reg(&item_type);
	atomic_int freed = 0;
	struct fac f = { .id = 1, .arg_freed = &freed };
	struct ureg_factory uf = fac_factory(&f, UREG_SCOPE_CONTEXT);

	cr_assert_eq(ureg_register_factory(reg, "k", &uf), 0);
	ureg_registry_destroy(reg);
	cr_assert_eq(wait_count(&freed, 1), 1);
}

static atomic_int anchor_released;

static void anchor_release(ureg_anchor *a)
{
	(void)a;
	atomic_fetch_add(&anchor_released, 1);
}

Test(registry, an_anchor_is_released_after_the_entry_and_its_instances_are_gone)
{
	ureg_registry *reg = new_reg(&item_type);
	ureg_ctx *ctx = new_ctx();
	ureg_anchor anchor;
	struct fac f = { .id = 1 };
	struct ureg_factory uf = fac_factory(&f, UREG_SCOPE_TRANSIENT);
	void *inst = NULL;

	ureg_anchor_init(&anchor, anchor_release);
	uf.anchor = &anchor;
	cr_assert_eq(ureg_register_factory(reg, "k", &uf), 0);
	cr_assert_eq(ureg_create_instance(reg, "k", ctx, &inst), 0);
	ureg_anchor_put(&anchor); /* the owner's reference */
	cr_assert_eq(atomic_load(&anchor_released), 0);
	cr_assert_eq(ureg_unregister(reg, "k", UREG_FACTORY), 0);
	grace_periods(20);
	cr_assert_eq(atomic_load(&anchor_released), 0, "released under a live instance");
	cr_assert_eq(ureg_instance_release(ctx, inst), 0);
	cr_assert_eq(wait_count(&anchor_released, 1), 1);
	ureg_ctx_destroy(ctx);
	ureg_registry_destroy(reg);
	cr_assert_eq(atomic_load(&anchor_released), 1);
}

Test(registry, anchor_get_and_put_release_on_the_last_reference)
{
	ureg_anchor anchor;

	ureg_anchor_init(&anchor, anchor_release);
	ureg_anchor_get(&anchor);
	ureg_anchor_put(&anchor);
	cr_assert_eq(atomic_load(&anchor_released), 0);
	ureg_anchor_put(&anchor);
	cr_assert_eq(atomic_load(&anchor_released), 1);
}

static atomic_int override_calls;

static void override_destroy(void *p, ureg_ctx *ctx)
{
	atomic_fetch_add(&override_calls, 1);
	inst_destroy(p, ctx);
}

Test(registry, a_factory_instance_destroy_overrides_the_type_destructor)
{
	ureg_registry *reg = new_reg(&item_type);
	ureg_ctx *ctx = new_ctx();
	struct fac f = { .id = 1 };
	struct ureg_factory uf = fac_factory(&f, UREG_SCOPE_TRANSIENT);
	void *inst = NULL;

	uf.instance_destroy = override_destroy;
	cr_assert_eq(ureg_register_factory(reg, "k", &uf), 0);
	cr_assert_eq(ureg_create_instance(reg, "k", ctx, &inst), 0);
	cr_assert_eq(ureg_create_instance(reg, "k", ctx, &inst), 0);
	cr_assert_eq(ureg_instance_release(ctx, inst), 0);
	cr_assert_eq(atomic_load(&override_calls), 1);
	ureg_ctx_destroy(ctx);
	cr_assert_eq(atomic_load(&override_calls), 2);
	cr_assert_eq(atomic_load(&inst_destroyed), 2);
	ureg_registry_destroy(reg);
}

struct hook_log {
	int calls;
	int result;
	ureg_registry *reg;
	char key[32];
	void *instance;
	ureg_ctx *ctx;
	uint64_t magic_seen;
};

static struct hook_log hook_log;

static int record_on_create(ureg_registry *reg, const char *key, void *instance,
			    ureg_ctx *ctx, void *arg)
{
	struct hook_log *log = arg;

	log->calls++;
	log->reg = reg;
	snprintf(log->key, sizeof(log->key), "%s", key);
	log->instance = instance;
	log->ctx = ctx;
	log->magic_seen = ((struct inst *)instance)->magic;
	return log->result;
}

static const ureg_type hooked_type = {
	.name = "hooked",
	.item_destroy = item_destroy,
	.instance_destroy = inst_destroy,
	.on_create = record_on_create,
	.on_create_arg = &hook_log,
};

Test(registry, on_create_sees_every_new_instance_before_it_is_returned)
{
	ureg_registry *reg = new_reg(&hooked_type);
	ureg_ctx *ctx = new_ctx();
	struct fac f = { .id = 1 };
	struct ureg_factory uf = fac_factory(&f, UREG_SCOPE_CONTEXT);
	void *p = NULL, *q = NULL;

	cr_assert_eq(ureg_register_factory(reg, "agent-1", &uf), 0);
	cr_assert_eq(get_rc(reg, "agent-1", ctx, &p), 0);
	cr_assert_eq(hook_log.calls, 1);
	cr_assert_eq(hook_log.reg, reg);
	cr_assert_str_eq(hook_log.key, "agent-1");
	cr_assert_eq(hook_log.instance, p);
	cr_assert_eq(hook_log.ctx, ctx);
	cr_assert_eq(hook_log.magic_seen, INST_MAGIC);
	/* a cached get creates nothing, so no hook */
	cr_assert_eq(get_rc(reg, "agent-1", ctx, &q), 0);
	cr_assert_eq(hook_log.calls, 1);
	cr_assert_eq(ureg_create_instance(reg, "agent-1", ctx, &q), 0);
	cr_assert_eq(hook_log.calls, 2);
	cr_assert_eq(hook_log.instance, q);
	ureg_ctx_destroy(ctx);
	ureg_registry_destroy(reg);
}

Test(registry, a_failing_on_create_fails_the_creation_and_destroys_the_instance)
{
	ureg_registry *reg = new_reg(&hooked_type);
	ureg_ctx *ctx = new_ctx();
	struct fac f = { .id = 1 };
	struct ureg_factory uf = fac_factory(&f, UREG_SCOPE_CONTEXT);
	void *p = NULL;

	hook_log.result = -EACCES;
	cr_assert_eq(ureg_register_factory(reg, "k", &uf), 0);
	cr_assert_eq(get_rc(reg, "k", ctx, &p), -EACCES);
	cr_assert_eq(hook_log.calls, 1);
	cr_assert_eq(atomic_load(&inst_destroyed), 1);
	cr_assert_eq(ctx_stats(ctx).instances, 0);
	cr_assert_eq(ctx_stats(ctx).live_bytes, 0);
	cr_assert_eq(ureg_create_instance(reg, "k", ctx, &p), -EACCES);
	cr_assert_eq(atomic_load(&inst_destroyed), 2);
	/* nothing was cached: once the hook agrees, get creates */
	hook_log.result = 0;
	cr_assert_eq(get_rc(reg, "k", ctx, &p), 0);
	cr_assert_eq(atomic_load(&f.calls), 3);
	cr_assert_eq(ctx_stats(ctx).instances, 1);
	ureg_ctx_destroy(ctx);
	ureg_registry_destroy(reg);
}

/* ------------------------------------------------------------------ */
/* batches                                                             */
/* ------------------------------------------------------------------ */

Test(batch, changes_are_invisible_until_commit)
{
	ureg_registry *reg = new_reg(&item_type);
	struct fac f = { .id = 1 };
	struct ureg_factory uf = fac_factory(&f, UREG_SCOPE_CONTEXT);
	struct item *old = item_new(1), *fresh = item_new(2), *repl = item_new(3);
	ureg_batch *b = NULL;
	void *p = NULL;
	uint64_t gen;

	cr_assert_eq(ureg_register(reg, "existing", old), 0);
	cr_assert_eq(ureg_register(reg, "doomed", item_new(4)), 0);
	gen = ureg_generation(reg);
	cr_assert_eq(ureg_batch_new(reg, &b), 0);
	cr_assert_eq(ureg_batch_put(b, "fresh", fresh, NULL, NULL), 0);
	cr_assert_eq(ureg_batch_put(b, "existing", repl, NULL, NULL), 0);
	cr_assert_eq(ureg_batch_put(b, "maker", NULL, &uf, NULL), 0);
	cr_assert_eq(ureg_batch_put(b, "doomed", NULL, NULL, NULL), 0);

	/* before commit: the registry is exactly as it was */
	cr_assert_eq(ureg_count(reg), 2);
	cr_assert_eq(ureg_generation(reg), gen);
	cr_assert_eq(ureg_contains(reg, "fresh"), 0);
	cr_assert_eq(ureg_contains(reg, "maker"), 0);
	cr_assert_eq(lookup_rc(reg, "fresh", &p), -ENOENT);
	cr_assert_eq(lookup_rc(reg, "existing", &p), 0);
	cr_assert_eq(p, old);
	cr_assert_eq(lookup_rc(reg, "doomed", &p), 0);

	cr_assert_eq(ureg_batch_commit(b, 0), 0);
	cr_assert_gt(ureg_generation(reg), gen);
	cr_assert_eq(ureg_count(reg), 3);
	cr_assert_eq(lookup_rc(reg, "fresh", &p), 0);
	cr_assert_eq(p, fresh);
	cr_assert_eq(lookup_rc(reg, "existing", &p), 0);
	cr_assert_eq(p, repl);
	cr_assert_eq(ureg_contains(reg, "maker"), 1);
	cr_assert_eq(ureg_contains(reg, "doomed"), 0);
	/* the replaced and the removed item are destroyed, nothing else */
	cr_assert_eq(wait_count(&items_destroyed, 2), 2);
	cr_assert_eq(fresh->magic, ITEM_MAGIC);
	cr_assert_eq(repl->magic, ITEM_MAGIC);
	ureg_registry_destroy(reg);
	cr_assert_eq(atomic_load(&items_destroyed), 4);
	cr_assert_eq(atomic_load(&items_bad_destroy), 0);
}

Test(batch, put_replaces_whatever_the_key_holds)
{
	ureg_registry *reg = new_reg(&item_type);
	ureg_ctx *ctx = new_ctx();
	struct fac f = { .id = 1 }, g = { .id = 2 };
	struct ureg_factory uf = fac_factory(&f, UREG_SCOPE_CONTEXT);
	struct ureg_factory ug = fac_factory(&g, UREG_SCOPE_TRANSIENT);
	struct ureg_entry_info info;
	ureg_batch *b = NULL;
	void *p = NULL;

	/* "k" holds item+factory; the batch leaves it with a factory only */
	cr_assert_eq(ureg_register(reg, "k", item_new(1)), 0);
	cr_assert_eq(ureg_register_factory(reg, "k", &uf), 0);
	cr_assert_eq(ureg_batch_new(reg, &b), 0);
	cr_assert_eq(ureg_batch_put(b, "k", NULL, &ug, NULL), 0);
	cr_assert_eq(ureg_batch_commit(b, 0), 0);
	ureg_read_lock();
	cr_assert_eq(ureg_entry_info(reg, "k", &info), 0);
	cr_assert_not(info.has_singleton);
	cr_assert(info.has_factory);
	cr_assert_eq(info.scope, UREG_SCOPE_TRANSIENT);
	cr_assert_eq(ureg_lookup(reg, "k", &p), -ENOENT);
	cr_assert_eq(ureg_get(reg, "k", ctx, &p), 0);
	ureg_read_unlock();
	cr_assert_eq(((struct inst *)p)->factory_id, 2);
	ureg_ctx_destroy(ctx);
	ureg_registry_destroy(reg);
	cr_assert_eq(atomic_load(&items_destroyed), 1);
}

Test(batch, commit_records_the_generation_and_the_source_of_each_entry)
{
	ureg_registry *reg = new_reg(&item_type);
	struct ureg_source src = {
		.provider = "builtin:echo",
		.file = "agents.yaml",
		.line = 12,
		.column = 3,
	};
	char file[32];
	struct ureg_entry_info info;
	ureg_batch *b = NULL;
	uint64_t before = ureg_generation(reg);

	snprintf(file, sizeof(file), "%s", src.file);
	src.file = file;
	cr_assert_eq(ureg_batch_new(reg, &b), 0);
	cr_assert_eq(ureg_batch_put(b, "echo", item_new(1), NULL, &src), 0);
	cr_assert_eq(ureg_batch_put(b, "plain", item_new(2), NULL, NULL), 0);
	memset(file, 'x', sizeof(file) - 1); /* the source was copied */
	cr_assert_eq(ureg_batch_commit(b, 42), 0);
	/* the registry's own number moves on; the entries carry 42 */
	cr_assert_gt(ureg_generation(reg), before);
	ureg_read_lock();
	cr_assert_eq(ureg_entry_info(reg, "echo", &info), 0);
	cr_assert_eq(info.generation, 42);
	cr_assert_str_eq(info.provider, "builtin:echo");
	cr_assert_str_eq(info.source_file, "agents.yaml");
	cr_assert_eq(info.source_line, 12);
	cr_assert_eq(ureg_entry_info(reg, "plain", &info), 0);
	cr_assert_eq(info.generation, 42);
	cr_assert_null(info.provider);
	ureg_read_unlock();
	ureg_registry_destroy(reg);
}

Test(batch, commit_with_generation_zero_takes_the_next_number)
{
	ureg_registry *reg = new_reg(&item_type);
	struct ureg_entry_info info;
	ureg_batch *b = NULL;
	uint64_t before;

	cr_assert_eq(ureg_register(reg, "a", item_new(1)), 0);
	before = ureg_generation(reg);
	cr_assert_eq(ureg_batch_new(reg, &b), 0);
	cr_assert_eq(ureg_batch_put(b, "b", item_new(2), NULL, NULL), 0);
	cr_assert_eq(ureg_batch_commit(b, 0), 0);
	cr_assert_gt(ureg_generation(reg), before);
	ureg_read_lock();
	cr_assert_eq(ureg_entry_info(reg, "b", &info), 0);
	cr_assert_eq(info.generation, ureg_generation(reg));
	ureg_read_unlock();
	ureg_registry_destroy(reg);
}

Test(batch, abort_changes_nothing_and_frees_everything_the_batch_owned)
{
	ureg_registry *reg = new_reg(&item_type);
	atomic_int freed = 0;
	struct fac f = { .id = 1, .arg_freed = &freed };
	struct ureg_factory uf = fac_factory(&f, UREG_SCOPE_CONTEXT);
	struct item *kept = item_new(1);
	ureg_batch *b = NULL;
	uint64_t gen;
	void *p = NULL;

	cr_assert_eq(ureg_register(reg, "kept", kept), 0);
	gen = ureg_generation(reg);
	cr_assert_eq(ureg_batch_new(reg, &b), 0);
	cr_assert_eq(ureg_batch_put(b, "new", item_new(2), &uf, NULL), 0);
	cr_assert_eq(ureg_batch_put(b, "kept", NULL, NULL, NULL), 0);
	ureg_batch_abort(b);
	cr_assert_eq(wait_count(&items_destroyed, 1), 1);
	cr_assert_eq(wait_count(&freed, 1), 1);
	cr_assert_eq(ureg_generation(reg), gen);
	cr_assert_eq(ureg_count(reg), 1);
	cr_assert_eq(ureg_contains(reg, "new"), 0);
	cr_assert_eq(lookup_rc(reg, "kept", &p), 0);
	cr_assert_eq(p, kept);
	cr_assert_eq(kept->magic, ITEM_MAGIC);
	ureg_batch_abort(NULL);
	ureg_registry_destroy(reg);
	cr_assert_eq(atomic_load(&items_destroyed), 2);
}

Test(batch, putting_a_key_twice_returns_eexist_and_keeps_the_first_put)
{
	ureg_registry *reg = new_reg(&item_type);
	struct item *first = item_new(1), *second = item_new(2);
	ureg_batch *b = NULL;
	void *p = NULL;

	cr_assert_eq(ureg_batch_new(reg, &b), 0);
	cr_assert_eq(ureg_batch_put(b, "k", first, NULL, NULL), 0);
	cr_assert_eq(ureg_batch_put(b, "k", second, NULL, NULL), -EEXIST);
	cr_assert_eq(ureg_batch_commit(b, 0), 0);
	cr_assert_eq(lookup_rc(reg, "k", &p), 0);
	cr_assert_eq(p, first);
	ureg_registry_destroy(reg);
	cr_assert_eq(atomic_load(&items_destroyed), 1);
	cr_assert_eq(second->magic, ITEM_MAGIC);
	item_free_unowned(second);
}

Test(batch, a_failed_put_leaves_the_item_and_arg_with_the_caller)
{
	ureg_registry *reg = new_reg(&item_type);
	atomic_int freed = 0;
	struct fac f = { .id = 1, .arg_freed = &freed };
	struct ureg_factory bad = fac_factory(&f, UREG_SCOPE_CONTEXT);
	struct item *it = item_new(1);
	ureg_batch *b = NULL;

	bad.create = NULL;
	cr_assert_eq(ureg_batch_new(reg, &b), 0);
	cr_assert_eq(ureg_batch_put(b, "k", it, &bad, NULL), -EINVAL);
	cr_assert_eq(ureg_batch_put(b, "bad key", it, NULL, NULL), -EINVAL);
	cr_assert_eq(ureg_batch_put(b, "", it, NULL, NULL), -EINVAL);
	ureg_batch_abort(b);
	grace_periods(5);
	cr_assert_eq(atomic_load(&items_destroyed), 0);
	cr_assert_eq(atomic_load(&freed), 0);
	cr_assert_eq(ureg_count(reg), 0);
	ureg_registry_destroy(reg);
	cr_assert_eq(it->magic, ITEM_MAGIC);
	item_free_unowned(it);
}

Test(batch, an_empty_batch_commits_and_changes_no_entry)
{
	ureg_registry *reg = new_reg(&item_type);
	ureg_batch *b = NULL;

	cr_assert_eq(ureg_register(reg, "a", item_new(1)), 0);
	cr_assert_eq(ureg_batch_new(reg, &b), 0);
	cr_assert_eq(ureg_batch_commit(b, 0), 0);
	cr_assert_eq(ureg_count(reg), 1);
	cr_assert_eq(ureg_contains(reg, "a"), 1);
	ureg_registry_destroy(reg);
	cr_assert_eq(atomic_load(&items_destroyed), 1);
}

Test(batch, single_key_calls_keep_working_after_a_commit)
{
	ureg_registry *reg = new_reg(&item_type);
	struct item *spare = item_new(9);
	ureg_batch *b = NULL;
	void *p = NULL;

	cr_assert_eq(ureg_batch_new(reg, &b), 0);
	cr_assert_eq(ureg_batch_put(b, "a", item_new(1), NULL, NULL), 0);
	cr_assert_eq(ureg_batch_commit(b, 0), 0);
	cr_assert_eq(ureg_register(reg, "a", spare), -EEXIST);
	item_free_unowned(spare);
	cr_assert_eq(ureg_register(reg, "b", item_new(2)), 0);
	cr_assert_eq(ureg_replace(reg, "a", item_new(3)), 0);
	cr_assert_eq(ureg_unregister(reg, "b", UREG_SINGLETON), 0);
	cr_assert_eq(lookup_rc(reg, "a", &p), 0);
	cr_assert_eq(((struct item *)p)->id, 3);
	cr_assert_eq(ureg_count(reg), 1);
	ureg_registry_destroy(reg);
}

Test(batch, batches_of_several_registries_commit_together_or_are_refused_whole)
{
	ureg_registry *a = new_reg(&item_type), *b = new_reg(&item_type);
	ureg_batch *ba, *bb, *pair[2];
	void *p;

	cr_assert_eq(ureg_batch_new(a, &ba), 0);
	cr_assert_eq(ureg_batch_new(b, &bb), 0);
	cr_assert_eq(ureg_batch_put(ba, "x", item_new(1), NULL, NULL), 0);
	cr_assert_eq(ureg_batch_put(bb, "y", item_new(2), NULL, NULL), 0);

	/* refused whole: the same registry twice, a NULL batch, none */
	pair[0] = ba;
	pair[1] = ba;
	cr_assert_eq(ureg_batch_commit_all(pair, 2, 0), -EINVAL);
	pair[1] = NULL;
	cr_assert_eq(ureg_batch_commit_all(pair, 2, 0), -EINVAL);
	cr_assert_eq(ureg_batch_commit_all(pair, 0, 0), -EINVAL);
	cr_assert_eq(ureg_count(a) + ureg_count(b), 0);

	pair[1] = bb;
	cr_assert_eq(ureg_batch_commit_all(pair, 2, 7), 0);
	ureg_read_lock();
	cr_assert_eq(ureg_lookup(a, "x", &p), 0);
	cr_assert_eq(((struct item *)p)->id, 1);
	cr_assert_eq(ureg_lookup(b, "y", &p), 0);
	cr_assert_eq(((struct item *)p)->id, 2);
	struct ureg_entry_info info;
	cr_assert_eq(ureg_entry_info(b, "y", &info), 0);
	cr_assert_eq(info.generation, 7);
	ureg_read_unlock();
	ureg_registry_destroy(a);
	ureg_registry_destroy(b);
}

/* ------------------------------------------------------------------ */
/* get outside a read section, scoped read sections, read-path errors  */
/* ------------------------------------------------------------------ */

Test(registry, get_of_a_context_scope_factory_works_outside_a_read_section)
{
	ureg_registry *reg = new_reg(&item_type);
	ureg_ctx *ctx = new_ctx();
	struct fac f = { .id = 7 };
	struct ureg_factory uf = fac_factory(&f, UREG_SCOPE_CONTEXT);
	void *a = NULL, *b = NULL;

	cr_assert_eq(ureg_register_factory(reg, "agent", &uf), 0);
	cr_assert_not(ureg_in_read_section());
	cr_assert_eq(ureg_get(reg, "agent", ctx, &a), 0, "%s", ureg_last_error());
	cr_assert_eq(ureg_get(reg, "agent", ctx, &b), 0);
	cr_assert_not(ureg_in_read_section(), "the call's own section is closed");
	cr_assert_not_null(a);
	cr_assert_eq(a, b, "one instance per (context, key)");
	cr_assert_eq(((struct inst *)a)->factory_id, 7);
	cr_assert_eq(atomic_load(&f.calls), 1);
	/* the instance belongs to the context: valid after a grace period */
	ureg_synchronize();
	cr_assert_eq(((struct inst *)a)->magic, INST_MAGIC);
	ureg_ctx_destroy(ctx);
	cr_assert_eq(atomic_load(&inst_destroyed), 1);
	ureg_registry_destroy(reg);
}

Test(registry, get_of_a_transient_factory_outside_a_read_section_makes_a_new_instance_each_time)
{
	ureg_registry *reg = new_reg(&item_type);
	ureg_ctx *ctx = new_ctx();
	struct fac f = { .id = 8 };
	struct ureg_factory uf = fac_factory(&f, UREG_SCOPE_TRANSIENT);
	static ureg_key k = UREG_KEY_CACHED_INIT("agent");
	void *a = NULL, *b = NULL;

	cr_assert_eq(ureg_register_factory(reg, "agent", &uf), 0);
	cr_assert_eq(ureg_get(reg, "agent", ctx, &a), 0);
	cr_assert_eq(ureg_get_key(reg, &k, ctx, &b), 0, "%s", ureg_last_error());
	cr_assert_neq(a, b);
	cr_assert_eq(atomic_load(&f.calls), 2);
	cr_assert_eq(ctx_stats(ctx).instances, 2);
	ureg_ctx_destroy(ctx);
	ureg_registry_destroy(reg);
}

Test(registry, get_outside_a_read_section_refuses_a_singleton_and_names_the_key)
{
	ureg_registry *reg = new_reg(&item_type);
	ureg_ctx *ctx = new_ctx();
	struct fac f = { .id = 9 };
	struct ureg_factory uf = fac_factory(&f, UREG_SCOPE_CONTEXT);
	static ureg_key k = UREG_KEY_INIT("both");
	void *p = NULL;

	cr_assert_eq(ureg_register(reg, "both", item_new(1)), 0);
	cr_assert_eq(ureg_register_factory(reg, "both", &uf), 0);
	/* get prefers the singleton, whose pointer needs a section */
	cr_assert_eq(ureg_get(reg, "both", ctx, &p), -EPERM);
	cr_assert(strstr(ureg_last_error(), "'core-test'"), "%s", ureg_last_error());
	cr_assert(strstr(ureg_last_error(), "'both'"), "%s", ureg_last_error());
	cr_assert(strstr(ureg_last_error(), "singleton"), "%s", ureg_last_error());
	cr_assert_eq(ureg_get_key(reg, &k, ctx, &p), -EPERM);
	cr_assert_null(p);
	cr_assert_eq(atomic_load(&f.calls), 0);
	/* unknown keys and factory keys without a context: -ENOENT */
	cr_assert_eq(ureg_get(reg, "unknown", ctx, &p), -ENOENT);
	cr_assert_eq(ureg_unregister(reg, "both", UREG_SINGLETON), 0);
	cr_assert_eq(ureg_get(reg, "both", NULL, &p), -ENOENT);
	cr_assert_null(p);
	cr_assert_eq(ureg_get(reg, "both", ctx, &p), 0);
	cr_assert_not_null(p);
	ureg_ctx_destroy(ctx);
	ureg_registry_destroy(reg);
}

static int lookup_in_scoped_section_and_return(ureg_registry *reg, void **p,
					       bool *inside)
{
	UREG_READ_SECTION {
		*inside = ureg_in_read_section();
		return ureg_lookup(reg, "k", p); /* leaves by return */
	}
	return -1;
}

Test(registry, a_scoped_read_section_closes_however_its_block_is_left)
{
	ureg_registry *reg = new_reg(&item_type);
	struct item *it = item_new(1);
	bool inside = false;
	void *p = NULL;
	int rounds = 0;

	cr_assert_eq(ureg_register(reg, "k", it), 0);
	UREG_READ_SECTION {
		cr_assert(ureg_in_read_section());
		cr_assert_eq(ureg_lookup(reg, "k", &p), 0);
		rounds++;
	}
	cr_assert_eq(rounds, 1, "the block runs exactly once");
	cr_assert_eq(p, it);
	cr_assert_not(ureg_in_read_section());

	UREG_READ_SECTION {
		UREG_READ_SECTION /* nests */
			cr_assert(ureg_in_read_section());
		cr_assert(ureg_in_read_section(), "the outer section is still open");
		break;
	}
	cr_assert_not(ureg_in_read_section(), "break closes the section");

	p = NULL;
	cr_assert_eq(lookup_in_scoped_section_and_return(reg, &p, &inside), 0);
	cr_assert(inside);
	cr_assert_eq(p, it);
	cr_assert_not(ureg_in_read_section(), "return closes the section");
	ureg_synchronize(); /* would hang if a section were left open */
	ureg_registry_destroy(reg);
}

Test(registry, read_path_errors_name_the_registry_and_the_key)
{
	ureg_registry *reg = new_reg(&item_type);
	ureg_ctx *ctx = new_ctx();
	struct fac f = { .id = 3 };
	struct ureg_factory uf = fac_factory(&f, UREG_SCOPE_CONTEXT);
	static ureg_key missing_key = UREG_KEY_CACHED_INIT("missing-handle");
	struct ureg_entry_info info;
	char key[32];
	void *p = NULL;

	cr_assert_eq(ureg_register_factory(reg, "maker", &uf), 0);
	/* the key buffer is reused before the message is read: the message
	 * must hold a copy */
	snprintf(key, sizeof(key), "missing-lookup");
	ureg_read_lock();
	cr_assert_eq(ureg_lookup(reg, key, &p), -ENOENT);
	memset(key, 'x', sizeof(key) - 1);
	cr_assert(strstr(ureg_last_error(), "registry 'core-test'"), "%s", ureg_last_error());
	cr_assert(strstr(ureg_last_error(), "'missing-lookup'"), "%s", ureg_last_error());
	cr_assert_eq(ureg_get(reg, "missing-get", ctx, &p), -ENOENT);
	cr_assert(strstr(ureg_last_error(), "'missing-get'"), "%s", ureg_last_error());
	cr_assert(strstr(ureg_last_error(), "'core-test'"), "%s", ureg_last_error());
	cr_assert_eq(ureg_get(reg, "maker", NULL, &p), -ENOENT);
	cr_assert(strstr(ureg_last_error(), "'maker'"), "%s", ureg_last_error());
	cr_assert(strstr(ureg_last_error(), "no context"), "%s", ureg_last_error());
	cr_assert_eq(ureg_lookup(reg, "maker", &p), -ENOENT);
	cr_assert(strstr(ureg_last_error(), "no singleton under 'maker'"), "%s",
		  ureg_last_error());
	cr_assert_eq(ureg_lookup_key(reg, &missing_key, &p), -ENOENT);
	cr_assert(strstr(ureg_last_error(), "'missing-handle'"), "%s", ureg_last_error());
	cr_assert_eq(ureg_get_key(reg, &missing_key, ctx, &p), -ENOENT);
	cr_assert(strstr(ureg_last_error(), "'missing-handle'"), "%s", ureg_last_error());
	cr_assert_eq(ureg_entry_info(reg, "missing-info", &info), -ENOENT);
	cr_assert(strstr(ureg_last_error(), "'missing-info'"), "%s", ureg_last_error());
	/* a success afterwards does not disturb the message of the failure */
	cr_assert_eq(ureg_get(reg, "maker", ctx, &p), 0);
	ureg_read_unlock();
	cr_assert_eq(ureg_lookup(reg, "maker", &p), -EPERM);
	cr_assert(strstr(ureg_last_error(), "'maker'"), "%s", ureg_last_error());
	cr_assert(strstr(ureg_last_error(), "'core-test'"), "%s", ureg_last_error());
	ureg_ctx_destroy(ctx);
	ureg_registry_destroy(reg);
}
