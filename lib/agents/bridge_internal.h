/* SPDX-License-Identifier: MIT */
/*
 * Private: the per-agent-registry descriptor and bridge slot shared by
 * registries.c (descriptors, hooks) and bridge.c (set / emit).
 *
 * Lifetime: one allocation holds the registry's descriptor and its bridge
 * slot.  References: the registry's owner (dropped by
 * ureg_agent_registry_destroy) and every live agent (taken by the on_create
 * hook, dropped by the descriptor's instance_destroy after the agent's own
 * destructor).  Agents may outlive their registry, and the core reads an
 * instance's descriptor until its destructor returns, so the descriptor dies
 * with the last of them, never earlier.
 */
#ifndef UREG_BRIDGE_INTERNAL_H
#define UREG_BRIDGE_INTERNAL_H

#include "../layer.h"
#include "ureg/registries.h"

struct ureg_bridge_slot {
	ureg_type type;                     /* this registry's descriptor */
	const struct ureg_bridge *bridge;   /* rcu pointer; NULL: none */
	long refs;                          /* owner + live agents */
};

/* the slot of an agent registry made by ureg_agent_registry_new, or NULL */
struct ureg_bridge_slot *ureg__agent_slot(ureg_registry *reg);
void ureg__slot_get(struct ureg_bridge_slot *s);
void ureg__slot_put(struct ureg_bridge_slot *s);

#endif /* UREG_BRIDGE_INTERNAL_H */
