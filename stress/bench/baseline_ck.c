/* SPDX-License-Identifier: MIT */
/*
 * Baseline "ck_hs": Concurrency Kit's open-addressing hash set in SPMC
 * mode (one writer at a time, readers concurrent and lock-free), the
 * strongest single-writer/many-reader table in C.  Writers serialize on a
 * pthread mutex, as SPMC requires.
 *
 * Safe memory reclamation: ck_hs itself only promises that a reader never
 * sees a torn slot; an item a writer replaced or removed, and a slot array
 * the table outgrew (the allocator's free() with defer=true), may still be
 * read.  We use the same liburcu memb RCU as ureg: readers wrap
 * ck_hs_get + the field read in rcu_read_lock/unlock, writers hand old
 * items and old slot arrays to call_rcu.  (ck_epoch would work too; using
 * RCU keeps the read-side cost identical to ureg and cds_lfht, so the
 * comparison isolates the table.)
 *
 * Mode: CK_HS_MODE_SPMC | CK_HS_MODE_OBJECT (items are pointers; ck packs
 * hash bits into them to skip most mismatching compares), plus
 * CK_HS_MODE_DELETE for the churn workload, whose constant removals it is
 * designed for.
 */
#define _LGPL_SOURCE 1
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include <ck_hs.h>
#include <urcu/urcu-memb.h>

#include "baseline.h"

/* What precedes a struct base_item in one allocation. */
struct ck_item_hdr {
	struct rcu_head rcu;
};
#define CK_HDR sizeof(struct ck_item_hdr)

struct ck_table {
	ck_hs_t hs;
	pthread_mutex_t writer;
	const struct base_factory *factory;
};

/* ---- allocator whose deferred frees wait for a grace period ---- */

struct ck_block_hdr {
	struct rcu_head rcu; /* 16 bytes: keeps the block 16-byte aligned */
};

static void *ck_block_malloc(size_t size)
{
	struct ck_block_hdr *b = malloc(sizeof(*b) + size);
	return b != NULL ? b + 1 : NULL;
}

static void ck_block_free_rcu(struct rcu_head *head)
{
	free(caa_container_of(head, struct ck_block_hdr, rcu));
}

/* @defer: readers may still be walking the block (an outgrown map). */
static void ck_block_free(void *p, size_t size, bool defer)
{
	(void)size;
	if (p == NULL)
		return;
	struct ck_block_hdr *b = (struct ck_block_hdr *)p - 1;
	if (defer)
		urcu_memb_call_rcu(&b->rcu, ck_block_free_rcu);
	else
		free(b);
}

static void *ck_block_realloc(void *p, size_t old, size_t size, bool defer)
{
	void *n = ck_block_malloc(size);
	if (n == NULL)
		return NULL;
	memcpy(n, p, old < size ? old : size);
	ck_block_free(p, old, defer);
	return n;
}

static struct ck_malloc ck_allocator = {
	.malloc = ck_block_malloc,
	.realloc = ck_block_realloc,
	.free = ck_block_free,
};

/* ---- items ---- */

static unsigned long ck_item_hash(const void *object, unsigned long seed)
{
	const struct bench_key *k = object;
	(void)seed;
	return (unsigned long)bench_hash(k->key, k->len);
}

/* @stored is an item, @probe an item or a bare struct bench_key. */
static bool ck_item_equal(const void *stored, const void *probe)
{
	return base_key_equal(stored, probe);
}

static struct base_item *ck_item_new(struct ck_table *tb, size_t i,
				     uint64_t value)
{
	void *p = base_item_alloc(CK_HDR, i, value, tb->factory);
	return p != NULL ? base_item_at(p, CK_HDR) : NULL;
}

static void ck_item_free_now(struct base_item *it)
{
	free((char *)it - CK_HDR);
}

static void ck_item_free_rcu(struct rcu_head *head)
{
	free(caa_container_of(head, struct ck_item_hdr, rcu));
}

static void ck_item_free_later(struct base_item *it)
{
	struct ck_item_hdr *h = (struct ck_item_hdr *)(void *)((char *)it - CK_HDR);
	urcu_memb_call_rcu(&h->rcu, ck_item_free_rcu);
}

static void ck_destroy(void *table);

static int ck_create(size_t nkeys, enum bench_workload w, void **table)
{
	struct ck_table *tb = calloc(1, sizeof(*tb));
	if (tb == NULL)
		return -ENOMEM;
	unsigned mode = CK_HS_MODE_SPMC | CK_HS_MODE_OBJECT;
	if (w == WL_CHURN)
		mode |= CK_HS_MODE_DELETE;
	if (!ck_hs_init(&tb->hs, mode, ck_item_hash, ck_item_equal,
			&ck_allocator, nkeys < 16 ? 16 : nkeys, 0)) {
		free(tb);
		return -ENOMEM;
	}
	pthread_mutex_init(&tb->writer, NULL);
	tb->factory = bench_wants_factories(w) ? &base_malloc_factory : NULL;
	for (size_t i = 0; i < nkeys; i++) {
		struct base_item *it = ck_item_new(tb, i, bench_value(i));
		if (it == NULL ||
		    !ck_hs_put(&tb->hs, bench_hash(it->k.key, it->k.len), it)) {
			if (it != NULL)
				ck_item_free_now(it);
			ck_destroy(tb);
			return -ENOMEM;
		}
	}
	*table = tb;
	return 0;
}

static void ck_destroy(void *table)
{
	struct ck_table *tb = table;
	ck_hs_iterator_t iter = CK_HS_ITERATOR_INITIALIZER;
	void *obj;

	/* No reader left; wait for frees still queued by writers. */
	urcu_memb_barrier();
	while (ck_hs_next(&tb->hs, &iter, &obj))
		ck_item_free_now(obj);
	ck_hs_destroy(&tb->hs);
	pthread_mutex_destroy(&tb->writer);
	free(tb);
}

static int ck_thread_enter(void *table, enum bench_role role,
			   struct bench_thread *t)
{
	(void)table;
	urcu_memb_register_thread();
	return base_thread_enter(t, role);
}

static void ck_thread_exit(void *table, enum bench_role role,
			   struct bench_thread *t)
{
	(void)table;
	base_thread_exit(t, role);
	urcu_memb_unregister_thread();
}

/* ---- reader operations ---- */

static inline __attribute__((always_inline)) struct base_item *
ck_find(struct ck_table *tb, const char *key)
{
	struct bench_key probe = { key, strlen(key) };
	return ck_hs_get(&tb->hs, bench_hash(key, probe.len), &probe);
}

BASE_RCU_READERS(ck, ck_find)

/* ---- writer operations ---- */

static int ck_replace(void *table, size_t i, uint64_t value)
{
	struct ck_table *tb = table;
	struct base_item *it = ck_item_new(tb, i, value);
	void *old = NULL;
	if (it == NULL)
		return -ENOMEM;
	pthread_mutex_lock(&tb->writer);
	bool ok = ck_hs_fas(&tb->hs, bench_hash(it->k.key, it->k.len), it, &old);
	pthread_mutex_unlock(&tb->writer);
	if (!ok) {
		ck_item_free_now(it);
		return -ENOENT;
	}
	ck_item_free_later(old);
	return 0;
}

static int ck_remove(void *table, size_t i)
{
	struct ck_table *tb = table;
	const char *key = bench_keys[i];
	struct bench_key probe = { key, strlen(key) };
	pthread_mutex_lock(&tb->writer);
	struct base_item *old = ck_hs_remove(&tb->hs, bench_hash(key, probe.len),
					     &probe);
	pthread_mutex_unlock(&tb->writer);
	if (old == NULL)
		return -ENOENT;
	ck_item_free_later(old);
	return 0;
}

static int ck_insert(void *table, size_t i, uint64_t value)
{
	struct ck_table *tb = table;
	struct base_item *it = ck_item_new(tb, i, value);
	if (it == NULL)
		return -ENOMEM;
	pthread_mutex_lock(&tb->writer);
	bool ok = ck_hs_put(&tb->hs, bench_hash(it->k.key, it->k.len), it);
	pthread_mutex_unlock(&tb->writer);
	if (!ok) {
		ck_item_free_now(it);
		return -EEXIST;
	}
	return 0;
}

const struct bench_impl bench_impl_ck = {
	.name = "ck_hs",
	.create = ck_create,
	.destroy = ck_destroy,
	.thread_enter = ck_thread_enter,
	.thread_exit = ck_thread_exit,
	.read_loop = ck_read_loop,
	.replace = ck_replace,
	.remove = ck_remove,
	.insert = ck_insert,
};
