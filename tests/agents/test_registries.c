/* SPDX-License-Identifier: MIT */
/* Specialized registries: descriptors, typed wrappers, hooks. */
#include <criterion/criterion.h>
#include <errno.h>
#include <string.h>

#include <ureg/registries.h>

static int destroyed_tools;

static void tool_free(struct ureg_tool *t, ureg_ctx *ctx)
{
	destroyed_tools++;
	if (ctx)
		ureg_ctx_free(ctx, t);
}

static int make_tool(ureg_ctx *ctx, void *arg, void **out)
{
	struct ureg_tool *t = ureg_ctx_calloc(ctx, 1, sizeof(*t));
	if (!t)
		return -ENOMEM;
	t->name = arg;
	t->destroy = tool_free;
	*out = t;
	return 0;
}

Test(registries, every_specialization_is_a_descriptor_whose_parent_is_the_base_type)
{
	const ureg_type *types[] = { &ureg_agent_type, &ureg_tool_type,
				     &ureg_strategy_type, &ureg_service_type };
	const char *names[] = { "agent", "tool", "strategy", "service" };

	cr_assert_null(ureg_base_type.parent);
	for (int i = 0; i < 4; i++) {
		cr_assert_eq(types[i]->parent, &ureg_base_type, "%s", names[i]);
		cr_assert_str_eq(types[i]->name, names[i]);
	}
	cr_assert_not_null(ureg_agent_type.on_create, "agents inject the bridge");
	cr_assert_null(ureg_tool_type.on_create);
}

Test(registries, typed_tool_registry_registers_looks_up_and_destroys_through_the_item_hook)
{
	ureg_tool_reg_registry *tools;
	static struct ureg_tool calc = { .name = "calculator", .destroy = tool_free };
	struct ureg_tool *got = NULL;

	destroyed_tools = 0;
	cr_assert_eq(ureg_tool_reg_new(&ureg_tool_type, "tools", &tools), 0);
	cr_assert_eq(ureg_registry_type(ureg_tool_reg_base(tools)), &ureg_tool_type);
	cr_assert_eq(ureg_tool_reg_register(tools, "calculator", &calc), 0);
	cr_assert_eq(ureg_tool_reg_register(tools, "calculator", &calc), -EEXIST);
	ureg_read_lock();
	cr_assert_eq(ureg_tool_reg_lookup(tools, "calculator", &got), 0);
	ureg_read_unlock();
	cr_assert_eq(got, &calc);
	cr_assert_eq(ureg_tool_reg_count(tools), 1);
	ureg_tool_reg_destroy(tools);
	cr_assert_eq(destroyed_tools, 1, "the tool descriptor ran ->destroy once");
}

Test(registries, tool_instances_live_in_the_context_and_die_with_it)
{
	ureg_tool_reg_registry *tools;
	ureg_ctx *ctx;
	struct ureg_tool *a = NULL, *b = NULL;
	struct ureg_ctx_stats st;
	struct ureg_factory f = { .create = make_tool, .scope = UREG_SCOPE_CONTEXT,
				  .arg = "search" };

	destroyed_tools = 0;
	cr_assert_eq(ureg_tool_reg_new(&ureg_tool_type, "tools", &tools), 0);
	cr_assert_eq(ureg_tool_reg_register_factory(tools, "search", &f), 0);
	cr_assert_eq(ureg_ctx_new("alice", UREG_CTX_SHARED, &ctx), 0);
	ureg_read_lock();
	cr_assert_eq(ureg_tool_reg_get(tools, "search", ctx, &a), 0);
	cr_assert_eq(ureg_tool_reg_get(tools, "search", ctx, &b), 0);
	ureg_read_unlock();
	cr_assert_eq(a, b, "CONTEXT scope: one instance per context");
	cr_assert_str_eq(a->name, "search");
	ureg_ctx_stats(ctx, &st);
	cr_assert_gt(st.live_bytes, 0);
	ureg_ctx_destroy(ctx);
	cr_assert_eq(destroyed_tools, 1);
	ureg_tool_reg_destroy(tools);
}

Test(registries, strategy_and_service_registries_are_the_same_generic_registry)
{
	ureg_strategy_reg_registry *st;
	ureg_service_reg_registry *sv;
	static struct ureg_strategy greedy = { .name = "greedy" };
	static struct ureg_service db = { .name = "db" };
	struct ureg_strategy *gs = NULL;
	struct ureg_service *gv = NULL;

	cr_assert_eq(ureg_strategy_reg_new(&ureg_strategy_type, "strategies", &st), 0);
	cr_assert_eq(ureg_service_reg_new(&ureg_service_type, "services", &sv), 0);
	cr_assert_eq(ureg_strategy_reg_register(st, "greedy", &greedy), 0);
	cr_assert_eq(ureg_service_reg_register(sv, "db", &db), 0);
	ureg_read_lock();
	cr_assert_eq(ureg_strategy_reg_lookup(st, "greedy", &gs), 0);
	cr_assert_eq(ureg_service_reg_lookup(sv, "db", &gv), 0);
	cr_assert_eq(ureg_service_reg_lookup(sv, "greedy", &gv), -ENOENT);
	ureg_read_unlock();
	cr_assert_eq(gs, &greedy);
	cr_assert_eq(gv, &db);
	cr_assert_str_eq(ureg_registry_type(ureg_service_reg_base(sv))->parent->name, "registry");
	ureg_strategy_reg_destroy(st);
	ureg_service_reg_destroy(sv);
}

/* ---- agents ---- */

static int agents_destroyed;

static void agent_free(struct ureg_agent *a, ureg_ctx *ctx)
{
	agents_destroyed++;
	ureg_ctx_free(ctx, a);
}

static const struct ureg_agent_ops ops = { .destroy = agent_free };

static int make_agent(ureg_ctx *ctx, void *arg, void **out)
{
	struct ureg_agent *a = ureg_ctx_calloc(ctx, 1, sizeof(*a));
	if (!a)
		return -ENOMEM;
	a->ops = arg;
	*out = a;
	return 0;
}

Test(registries, each_agent_registry_has_its_own_descriptor_copied_from_the_agent_type)
{
	ureg_agent_reg_registry *r1, *r2;
	const ureg_type *t1, *t2;

	cr_assert_eq(ureg_agent_registry_new("agents1", &r1), 0);
	cr_assert_eq(ureg_agent_registry_new("agents2", &r2), 0);
	t1 = ureg_registry_type(ureg_agent_reg_base(r1));
	t2 = ureg_registry_type(ureg_agent_reg_base(r2));
	cr_assert_neq(t1, t2, "a bridge per registry");
	cr_assert_str_eq(t1->name, "agent");
	cr_assert_eq(t1->parent, &ureg_base_type);
	cr_assert_eq(t1->on_create, ureg_agent_type.on_create);
	ureg_agent_reg_registry *bad = NULL;
	cr_assert_eq(ureg_agent_registry_new("bad name", &bad), -EINVAL);
	cr_assert_null(bad);
	ureg_agent_registry_destroy(r2);
	ureg_agent_registry_destroy(r1);
}

Test(registries, the_on_create_hook_injects_context_and_key_before_the_agent_is_visible)
{
	ureg_agent_reg_registry *agents;
	ureg_ctx *ctx;
	struct ureg_agent *a = NULL;
	struct ureg_factory f = { .create = make_agent, .scope = UREG_SCOPE_CONTEXT,
				  .arg = (void *)&ops };

	agents_destroyed = 0;
	cr_assert_eq(ureg_agent_registry_new("agents", &agents), 0);
	cr_assert_eq(ureg_agent_reg_register_factory(agents, "planner", &f), 0);
	cr_assert_eq(ureg_ctx_new("bob", UREG_CTX_SHARED, &ctx), 0);
	ureg_read_lock();
	cr_assert_eq(ureg_agent_reg_get(agents, "planner", ctx, &a), 0);
	ureg_read_unlock();
	cr_assert_eq(a->ctx, ctx);
	cr_assert_str_eq(a->key, "planner");
	cr_assert_not_null(a->slot, "the registry's bridge slot was injected");
	/* the agent outlives its registry: the descriptor stays until it dies */
	ureg_agent_registry_destroy(agents);
	cr_assert_eq(agents_destroyed, 0);
	ureg_ctx_destroy(ctx);
	cr_assert_eq(agents_destroyed, 1);
}

static int make_agent_without_ops(ureg_ctx *ctx, void *arg, void **out)
{
	return make_agent(ctx, NULL, out);
}

Test(registries, an_agent_factory_that_forgets_ops_fails_the_creation_and_no_instance_remains)
{
	ureg_agent_reg_registry *agents;
	ureg_ctx *ctx;
	struct ureg_agent *a = NULL;
	struct ureg_ctx_stats st;
	struct ureg_factory f = { .create = make_agent_without_ops,
				  .scope = UREG_SCOPE_TRANSIENT };

	cr_assert_eq(ureg_agent_registry_new("agents", &agents), 0);
	cr_assert_eq(ureg_agent_reg_register_factory(agents, "broken", &f), 0);
	cr_assert_eq(ureg_ctx_new("carol", UREG_CTX_SHARED, &ctx), 0);
	cr_assert_eq(ureg_agent_reg_create_instance(agents, "broken", ctx, &a), -EINVAL);
	cr_assert_null(a);
	ureg_ctx_stats(ctx, &st);
	cr_assert_eq(st.instances, 0);
	ureg_ctx_destroy(ctx);
	ureg_agent_registry_destroy(agents);
}
