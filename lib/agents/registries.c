/* SPDX-License-Identifier: MIT */
/*
 * The specialized registries are descriptors and hooks only: every
 * registry operation is the generic one.  Tools, strategies and services
 * differ by name and destructor; agents add one hook (on_create) that
 * injects the registry's bridge slot, context and key into each new agent
 * before anyone can see it.  Each agent registry gets its own copy of the
 * agent descriptor, so the hook finds its registry's slot in on_create_arg
 * without any global table (see bridge_internal.h for the lifetime).
 */
#include <stdlib.h>
#include "bridge_internal.h"

const ureg_type ureg_base_type = { .name = "registry" };

/* One destructor pair per item kind: @destroy is the embedded first member's
 * hook.  A macro would hide three six-line functions; spelled out instead. */
static void tool_item_destroy(void *item)
{
	struct ureg_tool *t = item;
	if (t->destroy)
		t->destroy(t, NULL);
}
static void tool_instance_destroy(void *inst, ureg_ctx *ctx)
{
	struct ureg_tool *t = inst;
	if (t->destroy)
		t->destroy(t, ctx);
}
static void strategy_item_destroy(void *item)
{
	struct ureg_strategy *s = item;
	if (s->destroy)
		s->destroy(s, NULL);
}
static void strategy_instance_destroy(void *inst, ureg_ctx *ctx)
{
	struct ureg_strategy *s = inst;
	if (s->destroy)
		s->destroy(s, ctx);
}
static void service_item_destroy(void *item)
{
	struct ureg_service *s = item;
	if (s->destroy)
		s->destroy(s, NULL);
}
static void service_instance_destroy(void *inst, ureg_ctx *ctx)
{
	struct ureg_service *s = inst;
	if (s->destroy)
		s->destroy(s, ctx);
}

const ureg_type ureg_tool_type = {
	.name = "tool", .parent = &ureg_base_type,
	.item_destroy = tool_item_destroy,
	.instance_destroy = tool_instance_destroy,
};
const ureg_type ureg_strategy_type = {
	.name = "strategy", .parent = &ureg_base_type,
	.item_destroy = strategy_item_destroy,
	.instance_destroy = strategy_instance_destroy,
};
const ureg_type ureg_service_type = {
	.name = "service", .parent = &ureg_base_type,
	.item_destroy = service_item_destroy,
	.instance_destroy = service_instance_destroy,
};

/* ---------------------------------------------------------------- agents */

static void agent_item_destroy(void *item)
{
	struct ureg_agent *a = item;
	if (a->ops && a->ops->destroy)
		a->ops->destroy(a, NULL);
}

static void agent_instance_destroy(void *inst, ureg_ctx *ctx)
{
	struct ureg_agent *a = inst;
	struct ureg_bridge_slot *slot = a->slot; /* read before @a is freed */

	if (a->ops && a->ops->destroy)
		a->ops->destroy(a, ctx);
	/* may free this registry's descriptor: the core does not read it
	 * after the destructor returns */
	ureg__slot_put(slot);
}

/* The injection point: runs after the factory, before the instance is
 * visible, on the creating thread, with no ureg lock held. */
static int agent_on_create(ureg_registry *reg, const char *key, void *instance,
			   ureg_ctx *ctx, void *arg)
{
	struct ureg_agent *a = instance;
	struct ureg_bridge_slot *slot = arg;

	a->slot = NULL;
	if (!a->ops)
		return ureg_set_error(-EINVAL, "registry '%s': agent factory '%s' made an agent without ops",
				 ureg_registry_name(reg), key);
	a->ctx = ctx;
	a->key = key; /* the factory box's copy: the instance pins it */
	__atomic_store_n(&a->seq, 0, __ATOMIC_RELAXED);
	if (slot) {
		ureg__slot_get(slot);
		a->slot = slot;
	}
	return 0;
}

const ureg_type ureg_agent_type = {
	.name = "agent", .parent = &ureg_base_type,
	.item_destroy = agent_item_destroy,
	.instance_destroy = agent_instance_destroy,
	.on_create = agent_on_create,
	.on_create_arg = NULL, /* the template has no bridge */
};

struct ureg_bridge_slot *ureg__agent_slot(ureg_registry *reg)
{
	const ureg_type *t = ureg_registry_type(reg);

	if (!t || t->on_create != agent_on_create || !t->on_create_arg)
		return NULL;
	return t->on_create_arg;
}

int ureg_agent_registry_new(const char *name, ureg_agent_reg_registry **out)
{
	struct ureg_bridge_slot *slot;
	int rc;

	if (!out)
		return ureg_set_error(-EINVAL, "agent_registry_new: out is NULL");
	if (!(slot = ureg__calloc(1, sizeof(*slot))))
		return ureg_set_error(-ENOMEM, "agent_registry_new: out of memory");
	slot->type = ureg_agent_type;
	slot->type.on_create_arg = slot;
	slot->refs = 1;
	rc = ureg_agent_reg_new(&slot->type, name, out);
	if (rc)
		ureg__free(slot);
	return rc;
}

void ureg_agent_registry_destroy(ureg_agent_reg_registry *reg)
{
	struct ureg_bridge_slot *slot;

	if (!reg)
		return;
	slot = ureg__agent_slot(ureg_agent_reg_base(reg));
	ureg_agent_reg_destroy(reg);
	ureg__slot_put(slot);
}
