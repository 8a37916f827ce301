/* SPDX-License-Identifier: MIT */
/*
 * The agent event bridge (the original AgentRegistry.set_websocket_manager).
 *
 * The one idea: an agent never holds the bridge itself, only its registry's
 * slot, whose bridge pointer is RCU-protected.  Emit is a read section, an
 * rcu_dereference and a call - no lock, no shared write (the agent's own
 * sequence counter is the only store) - so replacing the bridge reaches
 * agents already alive, and the setter's grace period guarantees that no
 * emit still runs in the old bridge when ureg_agent_set_bridge returns.
 */
#include <stdlib.h>
#include "bridge_internal.h"

void ureg__slot_get(struct ureg_bridge_slot *s)
{
	__atomic_add_fetch(&s->refs, 1, __ATOMIC_RELAXED);
}

void ureg__slot_put(struct ureg_bridge_slot *s)
{
	if (!s || __atomic_sub_fetch(&s->refs, 1, __ATOMIC_ACQ_REL) != 0)
		return;
	ureg__free(s);
}

int ureg_agent_set_bridge(ureg_agent_reg_registry *reg,
			  const struct ureg_bridge *bridge)
{
	struct ureg_bridge_slot *slot;

	ureg__rcu_ensure();
	if (!reg || !(slot = ureg__agent_slot(ureg_agent_reg_base(reg))))
		return ureg_set_error(-EINVAL, "agent_set_bridge: not an agent registry made by ureg_agent_registry_new");
	if (bridge && !bridge->emit)
		return ureg_set_error(-EINVAL, "agent_set_bridge: bridge has no emit");
	if (bridge && (bridge->reserved[0] || bridge->reserved[1]))
		return ureg_set_error(-EINVAL, "agent_set_bridge: reserved fields must be zero");
	if (ureg_in_read_section())
		return ureg_set_error(-EDEADLK, "agent_set_bridge: called inside a read section");
	/* one pointer store: racing setters need no lock (and a lock here
	 * would be one more for fork.c to hold); the last store wins */
	__atomic_store_n(&slot->bridge, bridge, __ATOMIC_RELEASE);
	/* after this no emit can still be inside the previous bridge */
	ureg_synchronize();
	return 0;
}

int64_t ureg_agent_emit(struct ureg_agent *a, enum ureg_agent_event_kind kind,
			const char *data, size_t len)
{
	const struct ureg_bridge *b;
	uint64_t seq;

	if (UREG_UNLIKELY(!a || (unsigned)kind > UREG_AGENT_ERROR))
		return ureg_set_error(-EINVAL, "agent_emit: NULL agent or bad kind %d", (int)kind);
	ureg_read_lock();
	seq = __atomic_add_fetch(&a->seq, 1, __ATOMIC_RELAXED);
	b = a->slot ? __atomic_load_n(&a->slot->bridge, __ATOMIC_ACQUIRE) : NULL;
	if (UREG_LIKELY(b != NULL)) {
		struct ureg_agent_event ev = {
			.kind = kind, .ctx = a->ctx, .agent = a, .key = a->key,
			.seq = seq, .data = data, .len = len,
		};
		b->emit(&ev, b->arg);
	}
	ureg_read_unlock();
	return b ? (int64_t)seq : -ENOTCONN;
}

const char *ureg_agent_event_name(enum ureg_agent_event_kind kind)
{
	static const char *const names[] = {
		[UREG_AGENT_STARTED] = "started",
		[UREG_AGENT_PROGRESS] = "progress",
		[UREG_AGENT_COMPLETED] = "completed",
		[UREG_AGENT_ERROR] = "error",
	};
	return (unsigned)kind <= UREG_AGENT_ERROR ? names[kind] : "unknown";
}
