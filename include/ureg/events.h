/* SPDX-License-Identifier: MIT */
/*
 * Lifecycle events: who hears about registry changes, and when.
 *
 * Listeners attach to one registry or globally (every registry).  The list
 * is an RCU list: listeners can be added and removed while events flow, and
 * emitting takes no lock.  Events are delivered AFTER the change is
 * committed and AFTER the writer mutex is released, on the thread that made
 * the change - or, when another thread is already delivering that
 * registry's events, by that thread, right after the event it is on.  A
 * listener may call back into ureg (but not ureg_synchronize / destroy
 * calls: it runs inside a read section).
 *
 * Ordering: for one registry, the changes a listener hears about are
 * delivered in commit order; each carries the registry generation it
 * produced: strictly increasing per registry, except that the events of one
 * batch share its generation (RELOAD_APPLIED comes last).  The writer takes the
 * registry's event mutex before it drops the writer mutex and delivers
 * after dropping it, so deliveries of one registry are serialized in
 * generation order while no listener runs under the writer mutex.
 * Instance events are delivered on the creating / destroying thread, in
 * that thread's order, with generation 0.
 */
#ifndef UREG_EVENTS_H
#define UREG_EVENTS_H

#include <ureg/api.h>

#include <ureg/ureg.h>

#ifdef __cplusplus
extern "C" {
#endif

enum ureg_event_kind {
	UREG_EV_REGISTERED = 1u << 0,
	UREG_EV_UNREGISTERED = 1u << 1,
	UREG_EV_REPLACED = 1u << 2,
	UREG_EV_INSTANCE_CREATED = 1u << 3,
	UREG_EV_INSTANCE_DESTROYED = 1u << 4,
	UREG_EV_RELOAD_APPLIED = 1u << 5,
	UREG_EV_ALL = (1u << 6) - 1,
};

/**
 * struct ureg_event - one lifecycle event; valid only during the callback.
 * @kind:       one UREG_EV_* bit.
 * @reg:        the registry.
 * @key:        the key (NULL for RELOAD_APPLIED).
 * @ctx:        the context (instance events), else NULL.
 * @instance:   the instance (instance events), else NULL.  For
 *              INSTANCE_DESTROYED it is about to be destroyed.
 * @generation: registry generation the change produced (0 for instance
 *              events).
 */
struct ureg_event {
	enum ureg_event_kind kind;
	ureg_registry *reg;
	const char *key;
	ureg_ctx *ctx;
	void *instance;
	uint64_t generation;
};

typedef void (*ureg_listener_fn)(const struct ureg_event *ev, void *arg);
typedef struct ureg_listener ureg_listener;

/**
 * ureg_listen - call @fn(@arg) for events whose kind is in @mask on @reg
 * (NULL: every registry).  Any thread, not inside a read section; blocks
 * on the listener mutex.  Returns 0, -EINVAL, -ENOMEM; *@out identifies the
 * listener for ureg_unlisten.
 */
UREG_API int ureg_listen(ureg_registry *reg, unsigned mask, ureg_listener_fn fn,
		void *arg, ureg_listener **out);

/**
 * ureg_unlisten - detach a listener.  After it returns @fn is not running
 * and will not run again (waits a grace period): @arg may be freed.  Not
 * inside a read section nor from a listener.  NULL is a no-op.
 */
UREG_API void ureg_unlisten(ureg_listener *l);

#ifdef __cplusplus
}
#endif

#endif /* UREG_EVENTS_H */
