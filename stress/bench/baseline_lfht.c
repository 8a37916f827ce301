/* SPDX-License-Identifier: MIT */
/*
 * Baseline "cds_lfht": the floor ureg's design can reach.  The same
 * liburcu memb read section and the same cds_lfht as ureg, with nothing
 * else: an item embeds its cds_lfht node and key, a lookup is
 * rcu_read_lock + cds_lfht_lookup + key compare + one field read +
 * rcu_read_unlock.  Writers serialize on one mutex, publish with
 * cds_lfht_add_replace / add_unique / del and free with call_rcu, exactly
 * the discipline ureg follows.
 *
 * _LGPL_SOURCE inlines liburcu's read-side fast path (the lowest cost a
 * caller of liburcu can get; ureg's own read lock is a library call).
 */
#define _LGPL_SOURCE 1
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include <urcu/urcu-memb.h>
#include <urcu/rculfhash.h>

#include "baseline.h"

/* What precedes a struct base_item in one allocation. */
struct lfht_hdr {
	struct cds_lfht_node node; /* first: node address == allocation */
	struct rcu_head rcu;
};

#define LFHT_HDR sizeof(struct lfht_hdr)

struct lfht_table {
	struct cds_lfht *ht;
	pthread_mutex_t writer;
	const struct base_factory *factory;
};

static inline struct base_item *item_of_node(struct cds_lfht_node *n)
{
	return base_item_at(n, LFHT_HDR);
}

static int lfht_match(struct cds_lfht_node *n, const void *key)
{
	return base_key_equal(&item_of_node(n)->k, key);
}

static void lfht_free_rcu(struct rcu_head *head)
{
	free(caa_container_of(head, struct lfht_hdr, rcu));
}

static unsigned long pow2_at_least(size_t n)
{
	unsigned long p = 1;
	while (p < n)
		p <<= 1;
	return p;
}

/* Publish a prepared item unless its key is present.  Writer mutex held
 * (or the table still private to its creator). */
static int lfht_add_locked(struct lfht_table *tb, struct lfht_hdr *h)
{
	struct base_item *it = base_item_at(h, LFHT_HDR);
	urcu_memb_read_lock();
	struct cds_lfht_node *prev = cds_lfht_add_unique(tb->ht,
		bench_hash(it->k.key, it->k.len), lfht_match, &it->k, &h->node);
	urcu_memb_read_unlock();
	return prev == &h->node ? 0 : -EEXIST;
}

static struct lfht_hdr *lfht_item_new(struct lfht_table *tb, size_t i,
				      uint64_t value)
{
	struct lfht_hdr *h = base_item_alloc(LFHT_HDR, i, value, tb->factory);
	if (h != NULL)
		cds_lfht_node_init(&h->node);
	return h;
}

static void lfht_destroy(void *table);

static int lfht_create(size_t nkeys, enum bench_workload w, void **table)
{
	struct lfht_table *tb = calloc(1, sizeof(*tb));
	if (tb == NULL)
		return -ENOMEM;
	tb->ht = cds_lfht_new_flavor(pow2_at_least(nkeys), 1, 0,
				     CDS_LFHT_AUTO_RESIZE | CDS_LFHT_ACCOUNTING,
				     &urcu_memb_flavor, NULL);
	if (tb->ht == NULL) {
		free(tb);
		return -ENOMEM;
	}
	pthread_mutex_init(&tb->writer, NULL);
	tb->factory = bench_wants_factories(w) ? &base_malloc_factory : NULL;
	for (size_t i = 0; i < nkeys; i++) {
		struct lfht_hdr *h = lfht_item_new(tb, i, bench_value(i));
		if (h == NULL || lfht_add_locked(tb, h) != 0) {
			free(h);
			lfht_destroy(tb);
			return -ENOMEM;
		}
	}
	*table = tb;
	return 0;
}

static void lfht_destroy(void *table)
{
	struct lfht_table *tb = table;
	struct cds_lfht_iter iter;
	struct cds_lfht_node *n;

	urcu_memb_read_lock();
	cds_lfht_for_each(tb->ht, &iter, n) {
		if (cds_lfht_del(tb->ht, n) == 0)
			urcu_memb_call_rcu(&((struct lfht_hdr *)(void *)n)->rcu,
					   lfht_free_rcu);
	}
	urcu_memb_read_unlock();
	urcu_memb_barrier();
	cds_lfht_destroy(tb->ht, NULL);
	pthread_mutex_destroy(&tb->writer);
	free(tb);
}

static int lfht_thread_enter(void *table, enum bench_role role,
			     struct bench_thread *t)
{
	(void)table;
	urcu_memb_register_thread();
	return base_thread_enter(t, role);
}

static void lfht_thread_exit(void *table, enum bench_role role,
			     struct bench_thread *t)
{
	(void)table;
	base_thread_exit(t, role);
	urcu_memb_unregister_thread();
}

/* ---- reader operations ---- */

static inline __attribute__((always_inline)) struct base_item *
lfht_find(struct lfht_table *tb, const char *key)
{
	struct bench_key probe = { key, strlen(key) };
	struct cds_lfht_iter iter;
	cds_lfht_lookup(tb->ht, bench_hash(key, probe.len), lfht_match,
			&probe, &iter);
	struct cds_lfht_node *n = cds_lfht_iter_get_node(&iter);
	return n != NULL ? item_of_node(n) : NULL;
}

BASE_RCU_READERS(lfht, lfht_find)

/* ---- writer operations ---- */

static int lfht_replace(void *table, size_t i, uint64_t value)
{
	struct lfht_table *tb = table;
	struct lfht_hdr *h = lfht_item_new(tb, i, value);
	if (h == NULL)
		return -ENOMEM;
	struct base_item *it = base_item_at(h, LFHT_HDR);

	pthread_mutex_lock(&tb->writer);
	urcu_memb_read_lock();
	struct cds_lfht_node *old = cds_lfht_add_replace(tb->ht,
		bench_hash(it->k.key, it->k.len), lfht_match, &it->k, &h->node);
	urcu_memb_read_unlock();
	pthread_mutex_unlock(&tb->writer);
	if (old != NULL)
		urcu_memb_call_rcu(&((struct lfht_hdr *)(void *)old)->rcu,
				   lfht_free_rcu);
	return 0;
}

static int lfht_remove(void *table, size_t i)
{
	struct lfht_table *tb = table;
	const char *key = bench_keys[i];
	struct bench_key probe = { key, strlen(key) };
	struct cds_lfht_iter iter;
	int rc = -ENOENT;

	pthread_mutex_lock(&tb->writer);
	urcu_memb_read_lock();
	cds_lfht_lookup(tb->ht, bench_hash(key, probe.len), lfht_match,
			&probe, &iter);
	struct cds_lfht_node *n = cds_lfht_iter_get_node(&iter);
	if (n != NULL && cds_lfht_del(tb->ht, n) == 0)
		rc = 0;
	urcu_memb_read_unlock();
	pthread_mutex_unlock(&tb->writer);
	if (rc == 0)
		urcu_memb_call_rcu(&((struct lfht_hdr *)(void *)n)->rcu,
				   lfht_free_rcu);
	return rc;
}

static int lfht_insert(void *table, size_t i, uint64_t value)
{
	struct lfht_table *tb = table;
	struct lfht_hdr *h = lfht_item_new(tb, i, value);
	if (h == NULL)
		return -ENOMEM;
	pthread_mutex_lock(&tb->writer);
	int rc = lfht_add_locked(tb, h);
	pthread_mutex_unlock(&tb->writer);
	if (rc != 0)
		free(h);
	return rc;
}

const struct bench_impl bench_impl_lfht = {
	.name = "cds_lfht",
	.create = lfht_create,
	.destroy = lfht_destroy,
	.thread_enter = lfht_thread_enter,
	.thread_exit = lfht_thread_exit,
	.read_loop = lfht_read_loop,
	.replace = lfht_replace,
	.remove = lfht_remove,
	.insert = lfht_insert,
};
