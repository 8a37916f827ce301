/* SPDX-License-Identifier: MIT */
/*
 * Shared by the baselines: item allocation, the malloc factory, and the
 * per-thread state of the factory and context-get workloads.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "baseline.h"

static void *base_malloc_create(uint64_t value)
{
	struct bench_instance *in = malloc(sizeof(*in));
	if (in != NULL)
		bench_instance_init(in, value);
	return in;
}

const struct base_factory base_malloc_factory = { base_malloc_create };

void *base_item_alloc(size_t hdr, size_t i, uint64_t value,
		      const struct base_factory *factory)
{
	const char *key = bench_keys[i];
	size_t len = strlen(key);
	char *p = malloc(hdr + sizeof(struct base_item) + len + 1);
	if (p == NULL)
		return NULL;
	memset(p, 0, hdr);
	struct base_item *it = base_item_at(p, hdr);
	memcpy(it->keybuf, key, len + 1);
	it->k.key = it->keybuf;
	it->k.len = len;
	it->value = value;
	it->factory = factory;
	return p;
}

int base_thread_enter(struct bench_thread *t, enum bench_role role)
{
	t->state = NULL;
	if (role != ROLE_READER)
		return 0;
	if (t->workload != WL_FACTORY && t->workload != WL_CONTEXT_GET)
		return 0;
	struct base_thread *bt = aligned_alloc(BENCH_CACHELINE,
		(sizeof(*bt) + BENCH_CACHELINE - 1) / BENCH_CACHELINE * BENCH_CACHELINE);
	if (bt == NULL)
		return -ENOMEM;
	bt->list.n = 0;
	bt->cache = NULL;
	if (t->workload == WL_CONTEXT_GET)
		bt->cache = g_hash_table_new_full(g_direct_hash, g_direct_equal,
						  NULL, free);
	t->state = bt;
	return 0;
}

void base_thread_exit(struct bench_thread *t, enum bench_role role)
{
	struct base_thread *bt = t->state;
	(void)role;
	if (bt == NULL)
		return;
	for (unsigned j = 0; j < bt->list.n; j++)
		free(bt->list.items[j]);
	if (bt->cache != NULL)
		g_hash_table_destroy(bt->cache);
	free(bt);
	t->state = NULL;
}
