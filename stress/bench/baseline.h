/* SPDX-License-Identifier: MIT */
/*
 * What the four baselines share: their item layout, the hand-written
 * "factory" a C server would use (a function pointer that mallocs), and the
 * per-thread state of the factory and context-get workloads.
 *
 * A baseline item embeds its key, as a hand-written registry would; ureg's
 * items are the caller's own objects behind a pointer in ureg's entry.
 */
#ifndef UREG_BENCH_BASELINE_H
#define UREG_BENCH_BASELINE_H

#include <stdlib.h>

#include <glib.h>

#include "bench.h"

/* A hand-written factory: makes one instance with malloc. */
struct base_factory {
	void *(*create)(uint64_t value);
};

extern const struct base_factory base_malloc_factory;

/*
 * One registered key.  @k comes first: ck_hs and cds_lfht compare an item
 * with a probe through struct bench_key.  @value is the field readers
 * touch; @factory is set in the factory and context-get workloads.  The
 * key's bytes follow in the same allocation (one cache line for short
 * keys), preceded by @hdr bytes that belong to the baseline (its
 * cds_lfht node, its rcu_head).
 */
struct base_item {
	struct bench_key k;
	uint64_t value;
	const struct base_factory *factory;
	char keybuf[];
};

/*
 * base_item_alloc - malloc @hdr bytes of baseline header (a multiple of 8)
 * followed by the item of key @i of bench_keys, with @value and, for the
 * factory workloads, @factory (else NULL).  Returns the header's address
 * (free() it), or NULL.
 */
void *base_item_alloc(size_t hdr, size_t i, uint64_t value,
		      const struct base_factory *factory);

/* The item that follows a @hdr-byte header at @p. */
static inline struct base_item *base_item_at(void *p, size_t hdr)
{
	return (struct base_item *)(void *)((char *)p + hdr);
}

/* Compare an item (or a probe) with a probe: same length, same bytes. */
static inline bool base_key_equal(const struct bench_key *a,
				  const struct bench_key *b)
{
	return a->len == b->len && memcmp(a->key, b->key, a->len) == 0;
}

/*
 * Per-thread state of a baseline reader: the factory workload's instance
 * list (malloc'd instances freed every BENCH_FACTORY_BATCH creations) and
 * the context-get workload's per-thread cache (entry pointer -> instance,
 * a GHashTable with g_direct_hash: the cheapest map a C author would use).
 */
struct base_thread {
	struct bench_instance_list list;
	GHashTable *cache;
};

int base_thread_enter(struct bench_thread *t, enum bench_role role);
void base_thread_exit(struct bench_thread *t, enum bench_role role);

/* Factory workload: keep @inst, freeing the whole list when it is full. */
static inline void base_keep_instance(struct base_thread *bt, void *inst)
{
	bt->list.items[bt->list.n++] = inst;
	if (bt->list.n == BENCH_FACTORY_BATCH) {
		for (unsigned j = 0; j < BENCH_FACTORY_BATCH; j++)
			free(bt->list.items[j]);
		bt->list.n = 0;
	}
}

/* Context-get workload: the thread's instance for @entry, made by
 * @f(@value) on the first call. */
static inline uint64_t base_cached_instance(struct base_thread *bt,
					    const void *entry,
					    const struct base_factory *f,
					    uint64_t value)
{
	struct bench_instance *in = g_hash_table_lookup(bt->cache, entry);
	if (__builtin_expect(in == NULL, 0)) {
		in = f->create(value);
		if (in == NULL)
			return 0;
		g_hash_table_insert(bt->cache, (gpointer)entry, in);
	}
	return in->value;
}


/*
 * BASE_RCU_READERS(prefix, find) - the reader operations and loop of a
 * baseline whose lookups run in a liburcu memb read section (raw cds_lfht,
 * ck_hs): @find(table, key) returns the struct base_item or NULL.  One
 * definition for both, so they differ only in their table.  The caller's
 * file includes <urcu/urcu-memb.h> (with _LGPL_SOURCE, as ureg does).
 */
#define BASE_RCU_READERS(prefix, find)                                        \
	static uint64_t prefix##_op_lookup(void *table, struct bench_thread *t, \
					   const char *key)                    \
	{                                                                      \
		(void)t;                                                       \
		uint64_t v = 0;                                                \
		urcu_memb_read_lock();                                         \
		struct base_item *it = find(table, key);                       \
		if (it != NULL)                                                \
			v = it->value;                                         \
		urcu_memb_read_unlock();                                       \
		return v;                                                      \
	}                                                                      \
	static uint64_t prefix##_op_factory(void *table, struct bench_thread *t, \
					    const char *key)                   \
	{                                                                      \
		struct bench_instance *in = NULL;                              \
		urcu_memb_read_lock();                                         \
		struct base_item *it = find(table, key);                       \
		if (it != NULL)                                                \
			in = it->factory->create(it->value);                   \
		urcu_memb_read_unlock();                                       \
		if (in == NULL)                                                \
			return 0;                                              \
		uint64_t v = in->value;                                        \
		base_keep_instance(t->state, in);                              \
		return v;                                                      \
	}                                                                      \
	static uint64_t prefix##_op_context_get(void *table,                  \
						struct bench_thread *t,        \
						const char *key)               \
	{                                                                      \
		uint64_t v = 0;                                                \
		urcu_memb_read_lock();                                         \
		struct base_item *it = find(table, key);                       \
		if (it != NULL)                                                \
			v = base_cached_instance(t->state, it, it->factory,    \
						 it->value);                   \
		urcu_memb_read_unlock();                                       \
		return v;                                                      \
	}                                                                      \
	static uint64_t prefix##_op_section(void *table, struct bench_thread *t, \
					    const char *key)                   \
	{                                                                      \
		(void)table;                                                   \
		(void)t;                                                       \
		(void)key;                                                     \
		urcu_memb_read_lock();                                         \
		uint64_t v = bench_fixed_item.value;                           \
		urcu_memb_read_unlock();                                       \
		return v;                                                      \
	}                                                                      \
	static void prefix##_read_loop(void *table, struct bench_thread *t)   \
	{                                                                      \
		switch (t->workload) {                                         \
		case WL_FACTORY:                                               \
			bench_reader_loop(table, t, prefix##_op_factory);      \
			break;                                                 \
		case WL_CONTEXT_GET:                                           \
			bench_reader_loop(table, t, prefix##_op_context_get);  \
			break;                                                 \
		case WL_SECTION:                                               \
			bench_reader_loop(table, t, prefix##_op_section);      \
			break;                                                 \
		case WL_LOOP:                                                  \
			bench_reader_loop(table, t, bench_op_loop);            \
			break;                                                 \
		default:                                                       \
			bench_reader_loop(table, t, prefix##_op_lookup);       \
			break;                                                 \
		}                                                              \
	}

#endif /* UREG_BENCH_BASELINE_H */
