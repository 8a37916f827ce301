/* SPDX-License-Identifier: MIT */
/*
 * Baselines "rwlock" and "mutex": GLib's GHashTable behind one
 * pthread_rwlock (what most C authors pick) or behind one pthread_mutex
 * (the original system's lock design).  Keys are hashed with the same
 * XXH3_64bits (truncated to GHashTable's 32-bit guint) and compared with
 * g_str_equal.
 *
 * A reader holds the lock (shared for rwlock) while it looks up and reads
 * the item, so writers free replaced and removed items under the write
 * lock: no reader can still hold one.  Factories run after the lock is
 * dropped (only the factory pointer and the value are read under it), the
 * most generous choice for these baselines.
 *
 * The rwlock prefers writers (PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP):
 * glibc's default prefers readers, and with readers on every core the
 * read-mostly writer would then starve, which would make the run do less
 * work than the others rather than show the lock's cost.
 */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "baseline.h"

struct glib_table {
	GHashTable *ht;
	pthread_rwlock_t rw;
	pthread_mutex_t mx;
	const struct base_factory *factory;
};

static guint glib_key_hash(gconstpointer key)
{
	const char *k = key;
	return (guint)bench_hash(k, strlen(k));
}

static int glib_create(size_t nkeys, enum bench_workload w, void **table)
{
	struct glib_table *tb = calloc(1, sizeof(*tb));
	if (tb == NULL)
		return -ENOMEM;
	pthread_rwlockattr_t attr;
	pthread_rwlockattr_init(&attr);
	pthread_rwlockattr_setkind_np(&attr,
				      PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP);
	pthread_rwlock_init(&tb->rw, &attr);
	pthread_rwlockattr_destroy(&attr);
	pthread_mutex_init(&tb->mx, NULL);
	tb->factory = bench_wants_factories(w) ? &base_malloc_factory : NULL;
	tb->ht = g_hash_table_new(glib_key_hash, g_str_equal);
	for (size_t i = 0; i < nkeys; i++) {
		struct base_item *it = base_item_alloc(0, i, bench_value(i),
						       tb->factory);
		if (it == NULL)
			return -ENOMEM; /* GLib aborts on OOM anyway */
		g_hash_table_insert(tb->ht, it->keybuf, it);
	}
	*table = tb;
	return 0;
}

static void glib_destroy(void *table)
{
	struct glib_table *tb = table;
	GHashTableIter iter;
	gpointer key, value;
	g_hash_table_iter_init(&iter, tb->ht);
	while (g_hash_table_iter_next(&iter, &key, &value))
		free(value);
	g_hash_table_destroy(tb->ht);
	pthread_rwlock_destroy(&tb->rw);
	pthread_mutex_destroy(&tb->mx);
	free(tb);
}

static int glib_thread_enter(void *table, enum bench_role role,
			     struct bench_thread *t)
{
	(void)table;
	return base_thread_enter(t, role);
}

static void glib_thread_exit(void *table, enum bench_role role,
			     struct bench_thread *t)
{
	(void)table;
	base_thread_exit(t, role);
}

/* @rw is a constant in every caller: each loop is specialized. */
static inline __attribute__((always_inline)) void
glib_lock(struct glib_table *tb, bool rw, bool write)
{
	if (!rw)
		pthread_mutex_lock(&tb->mx);
	else if (write)
		pthread_rwlock_wrlock(&tb->rw);
	else
		pthread_rwlock_rdlock(&tb->rw);
}

static inline __attribute__((always_inline)) void
glib_unlock(struct glib_table *tb, bool rw)
{
	if (rw)
		pthread_rwlock_unlock(&tb->rw);
	else
		pthread_mutex_unlock(&tb->mx);
}

static inline __attribute__((always_inline)) uint64_t
glib_op_lookup(void *table, const char *key, bool rw)
{
	struct glib_table *tb = table;
	uint64_t v = 0;
	glib_lock(tb, rw, false);
	struct base_item *it = g_hash_table_lookup(tb->ht, key);
	if (it != NULL)
		v = it->value;
	glib_unlock(tb, rw);
	return v;
}

static inline __attribute__((always_inline)) uint64_t
glib_op_factory(void *table, struct bench_thread *t, const char *key, bool rw)
{
	struct glib_table *tb = table;
	const struct base_factory *f = NULL;
	uint64_t value = 0;
	glib_lock(tb, rw, false);
	struct base_item *it = g_hash_table_lookup(tb->ht, key);
	if (it != NULL) {
		f = it->factory;
		value = it->value;
	}
	glib_unlock(tb, rw);
	if (f == NULL)
		return 0;
	struct bench_instance *in = f->create(value);
	if (in == NULL)
		return 0;
	uint64_t v = in->value;
	base_keep_instance(t->state, in);
	return v;
}

/* Entries are never removed in this workload, so the entry pointer stays
 * a valid cache key after the lock is dropped. */
static inline __attribute__((always_inline)) uint64_t
glib_op_context_get(void *table, struct bench_thread *t, const char *key,
		    bool rw)
{
	struct glib_table *tb = table;
	const struct base_factory *f = NULL;
	uint64_t value = 0;
	glib_lock(tb, rw, false);
	struct base_item *it = g_hash_table_lookup(tb->ht, key);
	if (it != NULL) {
		f = it->factory;
		value = it->value;
	}
	glib_unlock(tb, rw);
	if (f == NULL)
		return 0;
	return base_cached_instance(t->state, it, f, value);
}

static uint64_t rw_lookup(void *tb, struct bench_thread *t, const char *k)
{
	(void)t;
	return glib_op_lookup(tb, k, true);
}
static uint64_t rw_factory(void *tb, struct bench_thread *t, const char *k)
{
	return glib_op_factory(tb, t, k, true);
}
static uint64_t rw_context_get(void *tb, struct bench_thread *t, const char *k)
{
	return glib_op_context_get(tb, t, k, true);
}
static uint64_t mx_lookup(void *tb, struct bench_thread *t, const char *k)
{
	(void)t;
	return glib_op_lookup(tb, k, false);
}
static uint64_t mx_factory(void *tb, struct bench_thread *t, const char *k)
{
	return glib_op_factory(tb, t, k, false);
}
static uint64_t mx_context_get(void *tb, struct bench_thread *t, const char *k)
{
	return glib_op_context_get(tb, t, k, false);
}

static void rw_read_loop(void *table, struct bench_thread *t)
{
	switch (t->workload) {
	case WL_FACTORY:
		bench_reader_loop(table, t, rw_factory);
		break;
	case WL_CONTEXT_GET:
		bench_reader_loop(table, t, rw_context_get);
		break;
	default:
		bench_reader_loop(table, t, rw_lookup);
		break;
	}
}

static void mx_read_loop(void *table, struct bench_thread *t)
{
	switch (t->workload) {
	case WL_FACTORY:
		bench_reader_loop(table, t, mx_factory);
		break;
	case WL_CONTEXT_GET:
		bench_reader_loop(table, t, mx_context_get);
		break;
	default:
		bench_reader_loop(table, t, mx_lookup);
		break;
	}
}

/* ---- writer operations (free old items under the write lock) ---- */

static inline __attribute__((always_inline)) int
glib_replace(void *table, size_t i, uint64_t value, bool rw)
{
	struct glib_table *tb = table;
	struct base_item *it = base_item_alloc(0, i, value, tb->factory);
	if (it == NULL)
		return -ENOMEM;
	glib_lock(tb, rw, true);
	struct base_item *old = g_hash_table_lookup(tb->ht, it->keybuf);
	if (old != NULL) {
		/* replace, not insert: the stored key is the old item's */
		g_hash_table_replace(tb->ht, it->keybuf, it);
		free(old);
	}
	glib_unlock(tb, rw);
	if (old == NULL) {
		free(it);
		return -ENOENT;
	}
	return 0;
}

static inline __attribute__((always_inline)) int
glib_remove(void *table, size_t i, bool rw)
{
	struct glib_table *tb = table;
	const char *key = bench_keys[i];
	glib_lock(tb, rw, true);
	struct base_item *old = g_hash_table_lookup(tb->ht, key);
	if (old != NULL) {
		g_hash_table_remove(tb->ht, key);
		free(old);
	}
	glib_unlock(tb, rw);
	return old != NULL ? 0 : -ENOENT;
}

static inline __attribute__((always_inline)) int
glib_insert(void *table, size_t i, uint64_t value, bool rw)
{
	struct glib_table *tb = table;
	struct base_item *it = base_item_alloc(0, i, value, tb->factory);
	if (it == NULL)
		return -ENOMEM;
	glib_lock(tb, rw, true);
	bool exists = g_hash_table_contains(tb->ht, it->keybuf);
	if (!exists)
		g_hash_table_insert(tb->ht, it->keybuf, it);
	glib_unlock(tb, rw);
	if (exists) {
		free(it);
		return -EEXIST;
	}
	return 0;
}

static int rw_replace(void *tb, size_t i, uint64_t v) { return glib_replace(tb, i, v, true); }
static int rw_remove(void *tb, size_t i) { return glib_remove(tb, i, true); }
static int rw_insert(void *tb, size_t i, uint64_t v) { return glib_insert(tb, i, v, true); }
static int mx_replace(void *tb, size_t i, uint64_t v) { return glib_replace(tb, i, v, false); }
static int mx_remove(void *tb, size_t i) { return glib_remove(tb, i, false); }
static int mx_insert(void *tb, size_t i, uint64_t v) { return glib_insert(tb, i, v, false); }

const struct bench_impl bench_impl_rwlock = {
	.name = "rwlock",
	.create = glib_create,
	.destroy = glib_destroy,
	.thread_enter = glib_thread_enter,
	.thread_exit = glib_thread_exit,
	.read_loop = rw_read_loop,
	.replace = rw_replace,
	.remove = rw_remove,
	.insert = rw_insert,
};

const struct bench_impl bench_impl_mutex = {
	.name = "mutex",
	.create = glib_create,
	.destroy = glib_destroy,
	.thread_enter = glib_thread_enter,
	.thread_exit = glib_thread_exit,
	.read_loop = mx_read_loop,
	.replace = mx_replace,
	.remove = mx_remove,
	.insert = mx_insert,
};
