/* SPDX-License-Identifier: MIT */
/*
 * UREG_DECLARE_TYPED: the C form of UniversalRegistry[T].  The wrappers must
 * behave exactly like the generic calls they wrap, hand back T pointers,
 * and never write an out-parameter on failure.  That a wrong T does not
 * compile is proven by compile_fail_wrong_type.c (see meson.build).
 */
#include <criterion/criterion.h>

#include <ureg/typed.h>

#include "core_test.h"

struct agent {
	uint64_t magic;
	char name[16];
};

struct tool {
	int arity;
};

UREG_DECLARE_TYPED(agent_reg, struct agent)
UREG_DECLARE_TYPED(tool_reg, struct tool)

static atomic_int agents_destroyed;
static atomic_int agent_instances_destroyed;

static void agent_destroy(void *p)
{
	struct agent *a = p;

	a->magic = ITEM_DEAD;
	atomic_fetch_add(&agents_destroyed, 1);
	free(a);
}

static void agent_instance_destroy(void *p, ureg_ctx *ctx)
{
	atomic_fetch_add(&agent_instances_destroyed, 1);
	ureg_ctx_free(ctx, p);
}

static int agent_factory(ureg_ctx *ctx, void *arg, void **out)
{
	struct agent *a = ureg_ctx_calloc(ctx, 1, sizeof(*a));

	if (!a)
		return -ENOMEM;
	a->magic = ITEM_MAGIC;
	snprintf(a->name, sizeof(a->name), "%s", (const char *)arg);
	*out = a;
	return 0;
}

static const ureg_type base_type = { .name = "component" };
static const ureg_type agent_type = {
	.name = "agent",
	.parent = &base_type,
	.item_destroy = agent_destroy,
	.instance_destroy = agent_instance_destroy,
};
static const ureg_type tool_type = { .name = "tool", .parent = &base_type };

static struct agent *agent_new(const char *name)
{
	struct agent *a = calloc(1, sizeof(*a));

	cr_assert_not_null(a);
	a->magic = ITEM_MAGIC;
	snprintf(a->name, sizeof(a->name), "%s", name);
	return a;
}

Test(typed, wrappers_register_and_look_up_items_of_their_type)
{
	agent_reg_registry *r = NULL;
	struct agent *planner = agent_new("planner"), *got = NULL;

	cr_assert_eq(agent_reg_new(&agent_type, "agents", &r), 0);
	cr_assert_not_null(r);
	cr_assert_str_eq(ureg_registry_name(agent_reg_base(r)), "agents");
	cr_assert_eq(ureg_registry_type(agent_reg_base(r))->parent, &base_type);
	cr_assert_eq(agent_reg_register(r, "planner", planner), 0);
	ureg_read_lock();
	cr_assert_eq(agent_reg_lookup(r, "planner", &got), 0);
	cr_assert_eq(got, planner);
	cr_assert_str_eq(got->name, "planner");
	got = NULL;
	cr_assert_eq(agent_reg_get(r, "planner", NULL, &got), 0);
	cr_assert_eq(got, planner);
	ureg_read_unlock();
	cr_assert_eq(agent_reg_count(r), 1);
	agent_reg_destroy(r);
	cr_assert_eq(atomic_load(&agents_destroyed), 1);
}

Test(typed, wrappers_return_the_generic_errors_and_leave_out_untouched)
{
	agent_reg_registry *r = NULL;
	struct agent *a = agent_new("a"), *b = agent_new("b");
	struct agent sentinel, *got = &sentinel;
	ureg_ctx *ctx = NULL;

	cr_assert_eq(agent_reg_new(&agent_type, "agents", &r), 0);
	cr_assert_eq(ureg_ctx_new(NULL, UREG_CTX_SHARED, &ctx), 0);
	cr_assert_eq(agent_reg_register(r, "a", a), 0);
	cr_assert_eq(agent_reg_register(r, "a", b), -EEXIST);
	cr_assert_eq(agent_reg_replace(r, "missing", b), -ENOENT);
	cr_assert_eq(agent_reg_unregister(r, "missing", UREG_BOTH), -ENOENT);
	cr_assert_eq(agent_reg_register(r, "bad key", b), -EINVAL);
	ureg_read_lock();
	cr_assert_eq(agent_reg_lookup(r, "missing", &got), -ENOENT);
	cr_assert_eq(got, &sentinel);
	cr_assert_eq(agent_reg_get(r, "missing", ctx, &got), -ENOENT);
	cr_assert_eq(got, &sentinel);
	ureg_read_unlock();
	cr_assert_eq(agent_reg_lookup(r, "a", &got), -EPERM);
	cr_assert_eq(got, &sentinel);
	cr_assert_eq(agent_reg_create_instance(r, "a", ctx, &got), -ENOENT);
	cr_assert_eq(got, &sentinel);
	cr_assert_eq(agent_reg_count(r), 1);
	ureg_ctx_destroy(ctx);
	agent_reg_destroy(r);
	cr_assert_eq(atomic_load(&agents_destroyed), 1);
	free(b);
}

Test(typed, wrappers_make_typed_instances_in_a_context)
{
	agent_reg_registry *r = NULL;
	ureg_ctx *ctx = NULL;
	struct ureg_factory f = {
		.create = agent_factory,
		.scope = UREG_SCOPE_CONTEXT,
		.arg = "writer",
	};
	struct agent *a = NULL, *b = NULL, *c = NULL;

	cr_assert_eq(agent_reg_new(&agent_type, "agents", &r), 0);
	cr_assert_eq(ureg_ctx_new("alice", UREG_CTX_SHARED, &ctx), 0);
	cr_assert_eq(agent_reg_register_factory(r, "writer", &f), 0);
	ureg_read_lock();
	cr_assert_eq(agent_reg_get(r, "writer", ctx, &a), 0);
	cr_assert_eq(agent_reg_get(r, "writer", ctx, &b), 0);
	ureg_read_unlock();
	cr_assert_eq(a, b);
	cr_assert_str_eq(a->name, "writer");
	cr_assert_eq(agent_reg_create_instance(r, "writer", ctx, &c), 0);
	cr_assert_neq(c, a);
	cr_assert_eq(c->magic, ITEM_MAGIC);
	cr_assert_eq(ctx_stats(ctx).instances, 2);
	ureg_ctx_destroy(ctx);
	cr_assert_eq(atomic_load(&agent_instances_destroyed), 2);
	agent_reg_destroy(r);
}

Test(typed, wrappers_replace_acquire_and_unregister)
{
	agent_reg_registry *r = NULL;
	struct agent *v1 = agent_new("v1"), *v2 = agent_new("v2"), *got = NULL;
	ureg_ref *ref = NULL;

	cr_assert_eq(agent_reg_new(&agent_type, "agents", &r), 0);
	cr_assert_eq(agent_reg_register(r, "k", v1), 0);
	cr_assert_eq(agent_reg_acquire(r, "k", &ref), 0);
	cr_assert_eq(agent_reg_replace(r, "k", v2), 0);
	ureg_read_lock();
	cr_assert_eq(agent_reg_lookup(r, "k", &got), 0);
	ureg_read_unlock();
	cr_assert_eq(got, v2);
	/* the reference still holds the old version */
	cr_assert_eq(agent_reg_ref_item(ref), v1);
	cr_assert_str_eq(agent_reg_ref_item(ref)->name, "v1");
	cr_assert_eq(agent_reg_unregister(r, "k", UREG_SINGLETON), 0);
	cr_assert_eq(agent_reg_count(r), 0);
	agent_reg_destroy(r);
	cr_assert_eq(atomic_load(&agents_destroyed), 1);
	cr_assert_eq(v1->magic, ITEM_MAGIC);
	ureg_ref_release(ref);
	cr_assert_eq(wait_count(&agents_destroyed, 2), 2);
}

Test(typed, two_typed_registries_are_independent)
{
	agent_reg_registry *agents = NULL;
	tool_reg_registry *tools = NULL;
	struct tool hammer = { .arity = 2 }, *t = NULL;
	char **keys = NULL;
	size_t n = 0;

	cr_assert_eq(agent_reg_new(&agent_type, "agents", &agents), 0);
	cr_assert_eq(tool_reg_new(&tool_type, "tools", &tools), 0);
	cr_assert_eq(tool_reg_register(tools, "hammer", &hammer), 0);
	cr_assert_eq(agent_reg_register(agents, "hammer", agent_new("hammer")), 0);
	ureg_read_lock();
	cr_assert_eq(tool_reg_lookup(tools, "hammer", &t), 0);
	ureg_read_unlock();
	cr_assert_eq(t, &hammer);
	cr_assert_eq(t->arity, 2);
	cr_assert_eq(tool_reg_keys(tools, &keys, &n), 0);
	cr_assert_eq(n, 1);
	cr_assert_str_eq(keys[0], "hammer");
	ureg_keys_free(keys);
	cr_assert_eq(tool_reg_unregister(tools, "hammer", UREG_SINGLETON), 0);
	cr_assert_eq(tool_reg_count(tools), 0);
	cr_assert_eq(agent_reg_count(agents), 1);
	tool_reg_destroy(tools); /* tool_type has no destructor: hammer is static */
	agent_reg_destroy(agents);
	cr_assert_eq(atomic_load(&agents_destroyed), 1);
}

Test(typed, key_handle_wrappers_hand_back_their_type)
{
	static ureg_key planner_key = UREG_KEY_CACHED_INIT("planner");
	agent_reg_registry *r = NULL;
	struct agent *planner = agent_new("planner"), *got = NULL;
	ureg_key missing;

	cr_assert_eq(agent_reg_new(&agent_type, "agents", &r), 0);
	cr_assert_eq(agent_reg_register(r, "planner", planner), 0);
	cr_assert_eq(ureg_key_init(&missing, "missing"), 0);
	ureg_read_lock();
	cr_assert_eq(agent_reg_lookup_key(r, &planner_key, &got), 0);
	cr_assert_eq(got, planner);
	got = NULL;
	cr_assert_eq(agent_reg_get_key(r, &planner_key, NULL, &got), 0);
	cr_assert_eq(got, planner);
	got = NULL;
	cr_assert_eq(agent_reg_lookup_key(r, &missing, &got), -ENOENT);
	cr_assert_null(got);
	ureg_read_unlock();
	agent_reg_destroy(r);
}

/* ------------------------------------------------------------------ */
/* every call typed: factories, replace_factory, contains, entry_info,  */
/* handles, batches                                                     */
/* ------------------------------------------------------------------ */

static atomic_int typed_factory_calls;

/* the body sees `out` as struct agent **: a typed factory signature */
UREG_FACTORY(agent_reg, make_named_agent, ctx, arg, out)
{
	struct agent *a = ureg_ctx_calloc(ctx, 1, sizeof(*a));

	atomic_fetch_add(&typed_factory_calls, 1);
	if (!a)
		return -ENOMEM;
	a->magic = ITEM_MAGIC;
	snprintf(a->name, sizeof(a->name), "%s", arg ? (const char *)arg : "anon");
	*out = a;
	return 0;
}

UREG_FACTORY(agent_reg, make_failing_agent, ctx, arg, out)
{
	atomic_fetch_add(&typed_factory_calls, 1);
	return -EIO;
}

Test(typed, a_typed_factory_registers_creates_and_replaces_with_t_pointers)
{
	agent_reg_registry *r = NULL;
	ureg_ctx *ctx = NULL;
	struct agent sentinel, *a = NULL, *b = &sentinel;
	agent_reg_factory_fn typed_fn = make_named_agent; /* the typed signature */

	cr_assert_not_null(typed_fn);
	cr_assert_eq(agent_reg_new(&agent_type, "agents", &r), 0);
	cr_assert_eq(ureg_ctx_new("alice", UREG_CTX_SHARED, &ctx), 0);
	cr_assert_eq(agent_reg_register_factory_of(r, "helper", make_named_agent_factory,
						   UREG_SCOPE_CONTEXT, "first"), 0);
	cr_assert_eq(agent_reg_contains(r, "helper"), 1);
	cr_assert_eq(agent_reg_contains(r, "nobody"), 0);
	/* a factory key: get works without a read section */
	cr_assert_eq(agent_reg_get(r, "helper", ctx, &a), 0, "%s", ureg_last_error());
	cr_assert_str_eq(a->name, "first");
	cr_assert_eq(a->magic, ITEM_MAGIC);

	cr_assert_eq(agent_reg_replace_factory_of(r, "helper", make_failing_agent_factory,
						  UREG_SCOPE_TRANSIENT, NULL), 0);
	cr_assert_eq(agent_reg_create_instance(r, "helper", ctx, &b), -EIO);
	cr_assert_eq(b, &sentinel, "no out-parameter written on failure");
	cr_assert_eq(agent_reg_replace_factory_of(r, "nobody", make_failing_agent_factory,
						  UREG_SCOPE_TRANSIENT, NULL), -ENOENT);
	struct ureg_factory full = {
		.create = make_named_agent_factory.create,
		.scope = UREG_SCOPE_TRANSIENT,
		.arg = "second",
		.instance_destroy = agent_instance_destroy,
	};
	cr_assert_eq(agent_reg_replace_factory(r, "helper", &full), 0);
	cr_assert_eq(agent_reg_create_instance(r, "helper", ctx, &b), 0);
	cr_assert_str_eq(b->name, "second");
	cr_assert_eq(atomic_load(&typed_factory_calls), 3);
	ureg_ctx_destroy(ctx);
	cr_assert_eq(atomic_load(&agent_instances_destroyed), 2,
		     "the type's destructor and the entry's override both ran");
	agent_reg_destroy(r);
}

Test(typed, entry_info_handles_and_counted_references_are_typed_too)
{
	agent_reg_registry *r = NULL;
	struct agent *planner = agent_new("planner"), *got = NULL;
	static ureg_key k = UREG_KEY_CACHED_INIT("planner");
	static ureg_key maker = UREG_KEY_INIT("maker");
	struct ureg_entry_info info;
	ureg_ref *ref = NULL;
	ureg_ctx *ctx = NULL;

	cr_assert_eq(agent_reg_new(&agent_type, "agents", &r), 0);
	cr_assert_str_eq(agent_reg_name(r), "agents");
	cr_assert_eq(ureg_ctx_new("bob", UREG_CTX_SHARED, &ctx), 0);
	cr_assert_eq(agent_reg_register(r, "planner", planner), 0);
	cr_assert_eq(agent_reg_register_factory_of(r, "maker", make_named_agent_factory,
						   UREG_SCOPE_TRANSIENT, NULL), 0);
	cr_assert_eq(agent_reg_generation(r), 2);
	cr_assert_eq(agent_reg_contains_key(r, &k), 1);
	UREG_READ_SECTION {
		cr_assert_eq(agent_reg_entry_info(r, "planner", &info), 0);
		cr_assert(info.has_singleton);
		cr_assert_not(info.has_factory);
		cr_assert_eq(agent_reg_entry_info(r, "maker", &info), 0);
		cr_assert(info.has_factory);
		cr_assert_eq(agent_reg_lookup_key(r, &k, &got), 0);
		cr_assert_eq(got, planner);
	}
	cr_assert_eq(agent_reg_acquire_key(r, &k, &ref), 0);
	cr_assert_eq(agent_reg_ref_item(ref), planner);
	ureg_ref_release(ref);
	got = NULL;
	cr_assert_eq(agent_reg_create_instance_key(r, &maker, ctx, &got), 0);
	cr_assert_str_eq(got->name, "anon");
	ureg_ctx_destroy(ctx);
	agent_reg_destroy(r);
}

Test(typed, typed_batches_publish_t_items_at_once)
{
	agent_reg_registry *r = NULL;
	agent_reg_batch *b = NULL;
	struct agent *x = agent_new("x"), *y = agent_new("y"), *got = NULL;

	cr_assert_eq(agent_reg_new(&agent_type, "agents", &r), 0);
	cr_assert_eq(agent_reg_batch_new(r, &b), 0);
	cr_assert_eq(agent_reg_batch_put(b, "x", x, NULL, NULL), 0);
	cr_assert_eq(agent_reg_batch_put(b, "y", y, NULL, NULL), 0);
	cr_assert_eq(agent_reg_batch_put(b, "x", y, NULL, NULL), -EEXIST);
	cr_assert_eq(agent_reg_count(r), 0, "nothing visible before commit");
	cr_assert_eq(agent_reg_batch_commit(b, 0), 0);
	cr_assert_eq(agent_reg_count(r), 2);
	UREG_READ_SECTION {
		cr_assert_eq(agent_reg_lookup(r, "y", &got), 0);
		cr_assert_eq(got, y);
	}
	cr_assert_eq(agent_reg_batch_new(r, &b), 0);
	cr_assert_eq(agent_reg_batch_put(b, "z", agent_new("z"), NULL, NULL), 0);
	agent_reg_batch_abort(b); /* destroys what it owned */
	cr_assert_eq(atomic_load(&agents_destroyed), 1);
	cr_assert_eq(agent_reg_contains(r, "z"), 0);
	agent_reg_destroy(r);
	cr_assert_eq(atomic_load(&agents_destroyed), 3);
}
