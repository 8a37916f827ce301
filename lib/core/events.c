/* SPDX-License-Identifier: MIT */
/*
 * Lifecycle events.  Listener lists are RCU lists: emitting walks them in
 * a read section without a lock; ureg_listen / ureg_unlisten serialize on
 * one mutex and unlisten waits a grace period before freeing.
 *
 * Registry events are prepared (allocated) before the writer mutex, queued
 * under it in generation order, and drained after it is dropped by exactly
 * one thread at a time per registry (reg->delivering).  A listener that
 * changes the same registry only queues: the drainer delivers that event
 * after the current one, so every listener sees one registry's events in
 * generation order, and nothing runs under the writer mutex.
 */
#include <stdlib.h>
#include "internal.h"

struct ureg_listener {
	struct cds_list_head node;
	ureg_registry *reg;
	unsigned mask;
	ureg_listener_fn fn;
	void *arg;
};

/* Global listeners hear every registry of the process: the list is global
 * by definition.  listeners_lock only serializes listen / unlisten. */
static pthread_mutex_t listeners_lock = PTHREAD_MUTEX_INITIALIZER;
static CDS_LIST_HEAD(global_listeners);

/* fork.c: held across fork() (step 5 of its order) */
void ureg__events_lock(void)
{
	pthread_mutex_lock(&listeners_lock);
}

void ureg__events_unlock(void)
{
	pthread_mutex_unlock(&listeners_lock);
}
/* number of listeners anywhere: writers skip event work when zero */
long ureg__listener_count; /* internal.h */
#define listener_count ureg__listener_count

bool ureg__has_listeners(ureg_registry *reg)
{
	(void)reg;
	return __atomic_load_n(&listener_count, __ATOMIC_ACQUIRE) > 0;
}

int ureg_listen(ureg_registry *reg, unsigned mask, ureg_listener_fn fn,
		void *arg, ureg_listener **out)
{
	struct ureg_listener *l;

	ureg__rcu_ensure();
	if (!fn || !out || !mask || (mask & ~(unsigned)UREG_EV_ALL))
		return ureg__err(-EINVAL, "listen: NULL callback or out, or bad mask 0x%x", mask);
	if (!(l = ureg__calloc(1, sizeof(*l))))
		return ureg__err(-ENOMEM, "listen: out of memory");
	l->reg = reg;
	l->mask = mask;
	l->fn = fn;
	l->arg = arg;
	pthread_mutex_lock(&listeners_lock);
	cds_list_add_tail_rcu(&l->node, reg ? &reg->listeners : &global_listeners);
	__atomic_add_fetch(&listener_count, 1, __ATOMIC_RELEASE);
	pthread_mutex_unlock(&listeners_lock);
	*out = l;
	return 0;
}

void ureg_unlisten(ureg_listener *l)
{
	if (!l)
		return;
	ureg__rcu_ensure();
	pthread_mutex_lock(&listeners_lock);
	cds_list_del_rcu(&l->node);
	__atomic_sub_fetch(&listener_count, 1, __ATOMIC_RELEASE);
	pthread_mutex_unlock(&listeners_lock);
	ureg__synchronize();
	ureg__free(l);
}

/* Registry destroy: its listeners go with it (do not unlisten them later). */
void ureg__events_detach_registry(ureg_registry *reg)
{
	struct ureg_listener *l, *tmp;
	struct cds_list_head gone;
	struct ureg_event_node *n, *ntmp;

	CDS_INIT_LIST_HEAD(&gone);
	pthread_mutex_lock(&listeners_lock);
	cds_list_for_each_entry_safe(l, tmp, &reg->listeners, node) {
		cds_list_del_rcu(&l->node);
		__atomic_sub_fetch(&listener_count, 1, __ATOMIC_RELEASE);
		cds_list_add(&l->node, &gone);
	}
	pthread_mutex_unlock(&listeners_lock);
	ureg__synchronize();
	cds_list_for_each_entry_safe(l, tmp, &gone, node)
		ureg__free(l);
	pthread_mutex_lock(&reg->evq_lock);
	cds_list_for_each_entry_safe(n, ntmp, &reg->evq, node) {
		cds_list_del(&n->node);
		ureg__free(n);
	}
	pthread_mutex_unlock(&reg->evq_lock);
}

struct ureg_event_node *ureg__event_prepare(ureg_registry *reg,
					    enum ureg_event_kind kind,
					    const char *key)
{
	size_t len = key ? strlen(key) : 0;
	struct ureg_event_node *n = ureg__malloc(sizeof(*n) + len + 1);

	if (!n)
		return NULL;
	memset(&n->ev, 0, sizeof(n->ev));
	n->ev.kind = kind;
	n->ev.reg = reg;
	if (key)
		memcpy(n->key, key, len + 1);
	n->ev.key = key ? n->key : NULL;
	return n;
}

void ureg__event_queue(ureg_registry *reg, struct ureg_event_node *n,
		       uint64_t generation)
{
	n->ev.generation = generation;
	pthread_mutex_lock(&reg->evq_lock);
	cds_list_add_tail(&n->node, &reg->evq);
	pthread_mutex_unlock(&reg->evq_lock);
}

static void deliver(ureg_registry *reg, const struct ureg_event *ev)
{
	struct ureg_listener *l;

	ureg_read_lock();
	if (reg)
		cds_list_for_each_entry_rcu(l, &reg->listeners, node)
			if (l->mask & ev->kind)
				l->fn(ev, l->arg);
	cds_list_for_each_entry_rcu(l, &global_listeners, node)
		if (l->mask & ev->kind)
			l->fn(ev, l->arg);
	ureg_read_unlock();
}

void ureg__events_flush(ureg_registry *reg)
{
	struct ureg_event_node *n;

	pthread_mutex_lock(&reg->evq_lock);
	if (reg->delivering) {
		/* another thread (or our caller, up the stack) drains */
		pthread_mutex_unlock(&reg->evq_lock);
		return;
	}
	reg->delivering = true;
	while (!cds_list_empty(&reg->evq)) {
		n = cds_list_first_entry(&reg->evq, struct ureg_event_node, node);
		cds_list_del(&n->node);
		pthread_mutex_unlock(&reg->evq_lock);
		deliver(reg, &n->ev);
		ureg__free(n);
		pthread_mutex_lock(&reg->evq_lock);
	}
	reg->delivering = false;
	pthread_mutex_unlock(&reg->evq_lock);
}

void ureg__event_instance_deliver(ureg_registry *reg, enum ureg_event_kind kind,
				  const char *key, ureg_ctx *ctx, void *instance)
{
	struct ureg_event ev = {
		.kind = kind, .reg = reg, .key = key, .ctx = ctx,
		.instance = instance, .generation = 0,
	};
	deliver(reg, &ev);
}
