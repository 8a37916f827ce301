/* SPDX-License-Identifier: MIT */
/*
 * The implementation under test: ureg through its public API only, used
 * the way its header tells an application to use it.
 *
 *  lookup workloads: ureg_read_lock(); ureg_lookup(); read item->value;
 *                    ureg_read_unlock() (one read section per operation);
 *  handle workloads: the same with ureg_lookup_key() and the key's handle
 *                    (made once, kept in the BENCH_KEY_PREFIX bytes before
 *                    the looked-up string, shared by every reader thread);
 *                    plain handles, or cached ones for cached-handle;
 *  factory:          ureg_create_instance() of a TRANSIENT factory into the
 *                    thread's own shared-pool context; instances released
 *                    with ureg_instance_release() every BENCH_FACTORY_BATCH;
 *  context-get:      ureg_read_lock(); ureg_get() of a CONTEXT-scope
 *                    factory with the thread's context; read; unlock.
 *  writers:          ureg_replace(), ureg_unregister(), ureg_register().
 *
 * Threads are never registered with RCU here: ureg does it lazily.
 */
#include <errno.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>

/* The header-inline read section (liburcu's public memb fast path), as
 * ureg.h recommends for a hot read path; the baselines inline theirs too. */
#define UREG_INLINE_READ 1
#include <ureg/ureg.h>

#include "bench.h"

_Static_assert(sizeof(ureg_key) <= BENCH_KEY_PREFIX,
	       "a ureg_key must fit before each looked-up key string");

static inline ureg_key *ureg_handle_of(const char *lookup_key)
{
	return (ureg_key *)(void *)(lookup_key - BENCH_KEY_PREFIX);
}

struct ureg_bench_item {
	uint64_t value;
};

struct ureg_thread {
	ureg_ctx *ctx;
	struct bench_instance_list list;
};

static void ureg_bench_instance_destroy(void *instance, ureg_ctx *ctx)
{
	ureg_ctx_free(ctx, instance);
}

static const ureg_type ureg_bench_type = {
	.name = "bench",
	.item_destroy = free,
	.instance_destroy = ureg_bench_instance_destroy,
};

/* The factory: same work as the baselines' malloc factory, in @ctx. */
static int ureg_bench_factory(ureg_ctx *ctx, void *arg, void **out)
{
	struct bench_instance *in = ureg_ctx_alloc(ctx, sizeof(*in));
	if (in == NULL)
		return -errno;
	bench_instance_init(in, (uint64_t)(uintptr_t)arg);
	*out = in;
	return 0;
}

static struct ureg_bench_item *ureg_item_new(uint64_t value)
{
	struct ureg_bench_item *it = malloc(sizeof(*it));
	if (it != NULL)
		it->value = value;
	return it;
}

static int ureg_create(size_t nkeys, enum bench_workload w, void **table)
{
	static atomic_uint serial;
	char name[UREG_NAME_MAX + 1];
	ureg_registry *reg;

	snprintf(name, sizeof(name), "bench.%u", atomic_fetch_add(&serial, 1));
	int rc = ureg_registry_new(&ureg_bench_type, name, &reg);
	if (rc != 0)
		return rc;
	for (size_t i = 0; i < nkeys && rc == 0; i++) {
		if (bench_wants_factories(w)) {
			struct ureg_factory f = {
				.create = ureg_bench_factory,
				.scope = w == WL_CONTEXT_GET ? UREG_SCOPE_CONTEXT
							     : UREG_SCOPE_TRANSIENT,
				.arg = (void *)(uintptr_t)bench_value(i),
			};
			rc = ureg_register_factory(reg, bench_keys[i], &f);
		} else {
			struct ureg_bench_item *it = ureg_item_new(bench_value(i));
			rc = it != NULL ? ureg_register(reg, bench_keys[i], it)
					: -ENOMEM;
			if (rc != 0)
				free(it);
		}
	}
	/* handles, made once per key (the previous table's are simply
	 * overwritten: no reader is running) */
	for (size_t i = 0; i < nkeys && rc == 0 && bench_uses_handles(w); i++)
		rc = bench_cached_handles(w)
			? ureg_key_init_cached(ureg_handle_of(bench_lookup_keys[i]),
					       bench_lookup_keys[i])
			: ureg_key_init(ureg_handle_of(bench_lookup_keys[i]),
					bench_lookup_keys[i]);
	if (rc != 0) {
		fprintf(stderr, "ureg-bench: ureg setup: %s (%s)\n",
			ureg_strerror(rc), ureg_last_error());
		ureg_registry_destroy(reg);
		return rc;
	}
	*table = reg;
	return 0;
}

static void ureg_destroy(void *table)
{
	ureg_registry_destroy(table);
}

static int ureg_thread_enter(void *table, enum bench_role role,
			     struct bench_thread *t)
{
	(void)table;
	t->state = NULL;
	if (role != ROLE_READER || !bench_wants_factories(t->workload))
		return 0;
	struct ureg_thread *ut = aligned_alloc(BENCH_CACHELINE,
		(sizeof(*ut) + BENCH_CACHELINE - 1) / BENCH_CACHELINE * BENCH_CACHELINE);
	if (ut == NULL)
		return -ENOMEM;
	ut->list.n = 0;
	int rc = ureg_ctx_new(NULL, UREG_CTX_SHARED, &ut->ctx);
	if (rc != 0) {
		free(ut);
		return rc;
	}
	t->state = ut;
	return 0;
}

static void ureg_release_all(struct ureg_thread *ut)
{
	for (unsigned j = 0; j < ut->list.n; j++)
		ureg_instance_release(ut->ctx, ut->list.items[j]);
	ut->list.n = 0;
}

static void ureg_thread_exit(void *table, enum bench_role role,
			     struct bench_thread *t)
{
	(void)table;
	(void)role;
	struct ureg_thread *ut = t->state;
	if (ut == NULL)
		return;
	ureg_release_all(ut);
	ureg_ctx_destroy(ut->ctx);
	free(ut);
	t->state = NULL;
}

/* ---- reader operations ---- */

static uint64_t ureg_op_lookup(void *table, struct bench_thread *t,
			       const char *key)
{
	(void)t;
	void *item;
	uint64_t v = 0;
	ureg_read_lock();
	if (ureg_lookup(table, key, &item) == 0)
		v = ((const struct ureg_bench_item *)item)->value;
	ureg_read_unlock();
	return v;
}

static uint64_t ureg_op_handle(void *table, struct bench_thread *t,
			       const char *key)
{
	(void)t;
	void *item;
	uint64_t v = 0;
	ureg_read_lock();
	if (ureg_lookup_key(table, ureg_handle_of(key), &item) == 0)
		v = ((const struct ureg_bench_item *)item)->value;
	ureg_read_unlock();
	return v;
}

static uint64_t ureg_op_factory(void *table, struct bench_thread *t,
				const char *key)
{
	struct ureg_thread *ut = t->state;
	void *inst;
	if (ureg_create_instance(table, key, ut->ctx, &inst) != 0)
		return 0;
	uint64_t v = ((const struct bench_instance *)inst)->value;
	ut->list.items[ut->list.n++] = inst;
	if (ut->list.n == BENCH_FACTORY_BATCH)
		ureg_release_all(ut);
	return v;
}

static uint64_t ureg_op_context_get(void *table, struct bench_thread *t,
				    const char *key)
{
	struct ureg_thread *ut = t->state;
	void *inst;
	uint64_t v = 0;
	ureg_read_lock();
	if (ureg_get(table, key, ut->ctx, &inst) == 0)
		v = ((const struct bench_instance *)inst)->value;
	ureg_read_unlock();
	return v;
}

static uint64_t ureg_op_section(void *table, struct bench_thread *t,
				const char *key)
{
	(void)table;
	(void)t;
	(void)key;
	ureg_read_lock();
	uint64_t v = bench_fixed_item.value;
	ureg_read_unlock();
	return v;
}

static void ureg_read_loop(void *table, struct bench_thread *t)
{
	switch (t->workload) {
	case WL_SECTION:
		bench_reader_loop(table, t, ureg_op_section);
		break;
	case WL_LOOP:
		bench_reader_loop(table, t, bench_op_loop);
		break;
	case WL_FACTORY:
		bench_reader_loop(table, t, ureg_op_factory);
		break;
	case WL_CONTEXT_GET:
		bench_reader_loop(table, t, ureg_op_context_get);
		break;
	case WL_HANDLE:
	case WL_CACHED_HANDLE:
	case WL_HANDLE_MOSTLY:
	case WL_CACHED_HANDLE_MOSTLY:
		bench_reader_loop(table, t, ureg_op_handle);
		break;
	default:
		bench_reader_loop(table, t, ureg_op_lookup);
		break;
	}
}

/* ---- writer operations ---- */

static int ureg_replace_item(void *table, size_t i, uint64_t value)
{
	struct ureg_bench_item *it = ureg_item_new(value);
	if (it == NULL)
		return -ENOMEM;
	int rc = ureg_replace(table, bench_keys[i], it);
	if (rc != 0)
		free(it);
	return rc;
}

static int ureg_remove_item(void *table, size_t i)
{
	return ureg_unregister(table, bench_keys[i], UREG_SINGLETON);
}

static int ureg_insert_item(void *table, size_t i, uint64_t value)
{
	struct ureg_bench_item *it = ureg_item_new(value);
	if (it == NULL)
		return -ENOMEM;
	int rc = ureg_register(table, bench_keys[i], it);
	if (rc != 0)
		free(it);
	return rc;
}

const struct bench_impl bench_impl_ureg = {
	.name = "ureg",
	.create = ureg_create,
	.destroy = ureg_destroy,
	.thread_enter = ureg_thread_enter,
	.thread_exit = ureg_thread_exit,
	.read_loop = ureg_read_loop,
	.replace = ureg_replace_item,
	.remove = ureg_remove_item,
	.insert = ureg_insert_item,
};
