/* SPDX-License-Identifier: MIT */
/*
 * The specialized registries: agents, tools, strategies, services.
 *
 * A specialization is nothing but a type descriptor (whose parent is
 * ureg_base_type, for the hierarchy report), typed wrappers from
 * UREG_DECLARE_TYPED and, for agents, one hook.  Every registry call is the
 * generic one from ureg.h with the same contract; nothing is written twice.
 *
 *   ureg_tool_reg_registry *tools;
 *   ureg_tool_reg_new(&ureg_tool_type, "tools", &tools);
 *   ureg_tool_reg_register(tools, "calculator", calc);   (struct ureg_tool *)
 *
 * Agents and the event bridge (the original set_websocket_manager).
 *
 * An agent instance embeds struct ureg_agent as its FIRST member.  Agent
 * registries are made with ureg_agent_registry_new(), which gives each one
 * its own descriptor (a copy of ureg_agent_type carrying that registry's
 * bridge slot).  The descriptor's on_create hook runs after each factory
 * creation, before anyone can see the instance, and injects into the agent
 * its registry's bridge slot, its context and its key.
 *
 * A bridge is set (or replaced, or cleared) on the registry with
 * ureg_agent_set_bridge().  The slot holds an RCU-protected pointer to the
 * current bridge, so an agent created before a replacement emits through
 * the new bridge from the moment the replacement is published.  Emitting
 * (ureg_agent_emit) takes no lock and writes no shared memory: it opens a
 * read section (nesting), loads the bridge with rcu_dereference and calls
 * it.  Whatever the bridge's own emit writes is its business (the agent
 * server writes only the target connection's queue).
 *
 * Lifetimes: the per-registry descriptor and bridge slot are reference
 * counted by the registry's owner and by every live agent, so agents may
 * outlive ureg_agent_registry_destroy() (their contexts destroy them
 * later).  An agent's destructor is its ops->destroy, called by the agent
 * descriptor's instance_destroy: do not set ureg_factory.instance_destroy
 * on agent factories.
 */
#ifndef UREG_REGISTRIES_H
#define UREG_REGISTRIES_H

#include <ureg/api.h>

#include <ureg/typed.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ------------------------------------------------------------------ */
/* Descriptors                                                         */
/* ------------------------------------------------------------------ */

/**
 * ureg_base_type - the root of the hierarchy ("registry").  No hooks, no
 * destructors: registries of raw pointers the caller manages may use it.
 */
extern UREG_API const ureg_type ureg_base_type;

/**
 * ureg_tool_type / ureg_strategy_type / ureg_service_type - descriptors of
 * the tool, strategy and service registries (parent: ureg_base_type).
 * Singletons and instances are destroyed through their ops->destroy when
 * set (see struct ureg_tool etc.).  Static: valid for the whole process.
 */
extern UREG_API const ureg_type ureg_tool_type;
extern UREG_API const ureg_type ureg_strategy_type;
extern UREG_API const ureg_type ureg_service_type;

/**
 * ureg_agent_type - the template of every agent registry's descriptor
 * (name "agent", parent ureg_base_type, with the bridge injection hook).
 * Do not create registries with it directly: ureg_agent_registry_new()
 * copies it so that each registry has its own bridge.  A registry made
 * from the template itself works but has no bridge (emits are dropped).
 */
extern UREG_API const ureg_type ureg_agent_type;

/* ------------------------------------------------------------------ */
/* Item types                                                          */
/* ------------------------------------------------------------------ */

/*
 * Tools, strategies and services: embed the struct as the first member so
 * the descriptors can destroy them.  @destroy frees a singleton (@ctx NULL)
 * or an instance (@ctx its context; free context memory with
 * ureg_ctx_free).  It runs on the thread that drops the last reference,
 * never under a ureg lock.  May be NULL (the item is then not freed).
 */
struct ureg_tool {
	const char *name;
	void (*destroy)(struct ureg_tool *t, ureg_ctx *ctx);
	void *reserved[2]; /* zero: room for fields (<ureg/api.h>, ABI) */
};
struct ureg_strategy {
	const char *name;
	void (*destroy)(struct ureg_strategy *s, ureg_ctx *ctx);
	void *reserved[2]; /* zero: room for fields (<ureg/api.h>, ABI) */
};
struct ureg_service {
	const char *name;
	void (*destroy)(struct ureg_service *s, ureg_ctx *ctx);
	void *reserved[2]; /* zero: room for fields (<ureg/api.h>, ABI) */
};

struct ureg_agent;
struct ureg_bridge_slot; /* private: the registry's RCU-protected bridge */

/**
 * struct ureg_agent_ops - what an agent implementation provides.
 * @run:     run once on @input; emits events with ureg_agent_emit().  Called
 *           by the application (the agent server calls it from a worker
 *           thread, inside a read section, one run at a time per agent).
 *           Returns 0 or a negative errno.  May be NULL.
 * @destroy: frees the agent (instances are freed inside their context:
 *           ureg_ctx_free).  Runs when the context is destroyed or the
 *           instance released, on that thread, never under a ureg lock.
 *           May be NULL.
 */
struct ureg_agent_ops {
	int (*run)(struct ureg_agent *a, const char *input);
	void (*destroy)(struct ureg_agent *a, ureg_ctx *ctx);
	void (*reserved[4])(void); /* zero: room for more ops (ABI) */
};

/**
 * struct ureg_agent - header of every agent instance (first member).
 * @ops:   set by the factory.
 * @ctx:   the owning user context: set by the on_create hook.
 * @key:   the registry key the agent was created under; valid while the
 *         agent lives.  Set by the hook.
 * @seq:   per-agent event counter (private; read with ureg_agent_emit's
 *         event.seq).
 * @slot:  private: the registry's bridge slot, injected by the hook.
 */
struct ureg_agent {
	const struct ureg_agent_ops *ops;
	ureg_ctx *ctx;
	const char *key;
	uint64_t seq;
	struct ureg_bridge_slot *slot;
	void *reserved[2]; /* zero: room for fields (ABI) */
};

/* ------------------------------------------------------------------ */
/* Typed registries (UniversalRegistry[T])                             */
/* ------------------------------------------------------------------ */

UREG_DECLARE_TYPED(ureg_agent_reg, struct ureg_agent)
UREG_DECLARE_TYPED(ureg_tool_reg, struct ureg_tool)
UREG_DECLARE_TYPED(ureg_strategy_reg, struct ureg_strategy)
UREG_DECLARE_TYPED(ureg_service_reg, struct ureg_service)

/* ------------------------------------------------------------------ */
/* Agent registries and the event bridge                               */
/* ------------------------------------------------------------------ */

enum ureg_agent_event_kind {
	UREG_AGENT_STARTED = 0,
	UREG_AGENT_PROGRESS = 1,
	UREG_AGENT_COMPLETED = 2,
	UREG_AGENT_ERROR = 3,
};

/**
 * struct ureg_agent_event - one agent event, as the bridge receives it.
 * Valid only during the bridge's @emit call (copy what you keep).
 * @kind:   started, progress, completed or error.
 * @ctx:    the user context of the agent: the tag that routes the event.
 * @agent:  the agent.
 * @key:    the agent's registry key.
 * @seq:    per-agent sequence number, strictly increasing from 1.
 * @data:   the agent's payload (by convention of the application; the
 *          agent server's agents give a JSON value), may be NULL.
 * @len:    bytes in @data.
 */
struct ureg_agent_event {
	enum ureg_agent_event_kind kind;
	ureg_ctx *ctx;
	struct ureg_agent *agent;
	const char *key;
	uint64_t seq;
	const char *data;
	size_t len;
};

/**
 * struct ureg_bridge - where agent events go (the original WebSocket
 * manager).  The caller owns it; it must stay valid until
 * ureg_agent_set_bridge() that replaces or clears it has returned.
 * @emit:  called for every event, on the emitting agent's thread, inside a
 *         read section, with no ureg lock held.  Must not block for long,
 *         must not call ureg_synchronize / destroy calls.  Must be
 *         thread-safe: agents of many users emit at once.
 * @arg:   passed to @emit.
 * @reserved: must be zero (-EINVAL otherwise): room for fields (ABI).
 */
struct ureg_bridge {
	void (*emit)(const struct ureg_agent_event *ev, void *arg);
	void *arg;
	void *reserved[2];
};

/**
 * ureg_agent_registry_new - create an agent registry with its own bridge
 * slot (initially no bridge: events are dropped).
 * @name:  registry name (as ureg_registry_new).
 * @out:   receives the registry.
 *
 * Any thread; blocks in malloc.  Valid until ureg_agent_registry_destroy().
 * Returns 0, -EINVAL, -ENOMEM.
 */
UREG_API int ureg_agent_registry_new(const char *name, ureg_agent_reg_registry **out);

/**
 * ureg_agent_registry_destroy - ureg_registry_destroy() plus the release
 * of the registry's descriptor and bridge slot (kept until the last agent
 * of the registry is destroyed).  Same calling rules as
 * ureg_registry_destroy: not inside a read section, blocks for a grace
 * period.  NULL is a no-op.
 */
UREG_API void ureg_agent_registry_destroy(ureg_agent_reg_registry *reg);

/**
 * ureg_agent_set_bridge - set, replace (or with NULL clear) the bridge of
 * an agent registry.  Agents alive now and created later emit through
 * @bridge as soon as this is published.
 *
 * Any thread, not inside a read section.  Serializes with other setters of
 * the same registry on the slot's mutex and waits for a grace period, so
 * when it returns no emit can still be running in the previous bridge: the
 * caller may free it.  @bridge must stay valid until it is replaced or
 * cleared (and the registry destroyed only with the bridge cleared or
 * still valid).  Returns 0, -EINVAL (NULL registry, not an agent registry
 * made by ureg_agent_registry_new, or a bridge with no emit).
 */
UREG_API int ureg_agent_set_bridge(ureg_agent_reg_registry *reg,
			  const struct ureg_bridge *bridge);

/**
 * ureg_agent_emit - send one event of @a through its registry's current
 * bridge.
 * @a:     an agent created by a factory of an agent registry.
 * @kind:  UREG_AGENT_*.
 * @data:  payload handed to the bridge as is (may be NULL); @len its size.
 *
 * Any thread that may use @a (normally the one running it).  Never blocks
 * in ureg, takes no lock, writes only @a's own sequence counter (atomic):
 * one read section (nesting) and one rcu_dereference.  Whatever the bridge
 * does is on top.  Returns the event's sequence number (> 0), -EINVAL (NULL
 * @a or bad kind) or -ENOTCONN (no bridge set: the event is dropped).
 */
UREG_API int64_t ureg_agent_emit(struct ureg_agent *a, enum ureg_agent_event_kind kind,
			const char *data, size_t len);

/** ureg_agent_event_name - "started", "progress", "completed", "error". */
UREG_API const char *ureg_agent_event_name(enum ureg_agent_event_kind kind);

#ifdef __cplusplus
}
#endif

#endif /* UREG_REGISTRIES_H */
