/* SPDX-License-Identifier: MIT */
/*
 * The seed example of the original UniversalRegistry, in ureg: a tool
 * registered once (a singleton), an agent registered as a factory (one
 * instance per user context), two users, then get and create_instance.
 * Return values are not checked, to keep it short: see ureg.h for each.
 */
#include <stdio.h>
#include <ureg/typed.h>

struct tool { const char *name; }; struct agent { const char *user; };
UREG_DECLARE_TYPED(tools, struct tool) UREG_DECLARE_TYPED(agents, struct agent)

UREG_FACTORY(agents, make_agent, ctx, arg, out)      /* factory(ctx) -> agent */
{
	if ((*out = ureg_ctx_alloc(ctx, sizeof(**out)))) (*out)->user = ureg_ctx_name(ctx);
	return *out ? 0 : -ENOMEM;
}

int main(void)
{
	static const ureg_type tool_t = { .name = "tool" }, agent_t = { .name = "agent" };
	tools_registry *tools; agents_registry *agents; ureg_ctx *alice, *bob;
	struct agent *a1 = NULL, *a2 = NULL, *b1 = NULL, *b2 = NULL;
	tools_new(&tool_t, "tools", &tools); agents_new(&agent_t, "agents", &agents);
	tools_register(tools, "calculator", &(struct tool){ "calculator" });
	agents_register_factory_of(agents, "assistant", make_agent_factory, UREG_SCOPE_CONTEXT, NULL);
	ureg_ctx_new("alice", 0, &alice); ureg_ctx_new("bob", 0, &bob);
	agents_get(agents, "assistant", alice, &a1); agents_get(agents, "assistant", alice, &a2);
	agents_get(agents, "assistant", bob, &b1); agents_create_instance(agents, "assistant", bob, &b2);
	UREG_READ_SECTION { struct tool *t = NULL; tools_get(tools, "calculator", NULL, &t); printf("tool: %s\n", t->name); }
	printf("%s: get twice, same agent: %s\n", a1->user, a1 == a2 ? "yes" : "no");
	printf("%s: get then create_instance, new agent: %s\n", b1->user, b1 != b2 ? "yes" : "no");
	ureg_ctx_destroy(alice); ureg_ctx_destroy(bob); agents_destroy(agents); tools_destroy(tools);
}
