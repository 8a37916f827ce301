/* A program outside the tree that uses libureg-agents through
 * `pkg-config ureg-agents` (or CMake's ureg::agents): an agent factory,
 * one user context, one run whose events reach a bridge. */
#include <stdio.h>
#include <string.h>
#include <ureg/registries.h>

static int events;

static void on_event(const struct ureg_agent_event *ev, void *arg)
{
	(void)arg;
	if (ev->kind == UREG_AGENT_COMPLETED && ev->len == 2 && !memcmp(ev->data, "ok", 2))
		__atomic_add_fetch(&events, 1, __ATOMIC_RELAXED);
}

static int run(struct ureg_agent *a, const char *input)
{
	(void)input;
	return ureg_agent_emit(a, UREG_AGENT_COMPLETED, "ok", 2) < 0 ? -EIO : 0;
}

static const struct ureg_agent_ops ops = { .run = run };

static int make(ureg_ctx *ctx, void *arg, void **out)
{
	struct ureg_agent *a = ureg_ctx_calloc(ctx, 1, sizeof(*a));
	(void)arg;
	if (!a)
		return -ENOMEM;
	a->ops = &ops;
	*out = a;
	return 0;
}

int main(void)
{
	static const struct ureg_bridge bridge = { .emit = on_event };
	struct ureg_factory f = { .create = make, .scope = UREG_SCOPE_CONTEXT };
	ureg_agent_reg_registry *agents;
	struct ureg_agent *a = NULL;
	ureg_ctx *alice;

	if (ureg_agent_registry_new("agents", &agents) ||
	    ureg_agent_set_bridge(agents, &bridge) ||
	    ureg_register_factory(ureg_agent_reg_base(agents), "echo", &f) ||
	    ureg_ctx_new("alice", 0, &alice) ||
	    ureg_agent_reg_get(agents, "echo", alice, &a) || !a)
		return 1;
	if (a->ops->run(a, "hi") || events != 1)
		return 2;
	ureg_ctx_destroy(alice);
	ureg_agent_registry_destroy(agents);
	printf("consumer_agents: ok (libureg %s)\n", ureg_version());
	return 0;
}
