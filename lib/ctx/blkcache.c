/* SPDX-License-Identifier: MIT */
/*
 * The thread's cache of shared-context blocks (ctx_int.h: bc_pop, bc_push).
 *
 * A create + release of a small instance used to cost two jemalloc calls
 * with flags (mallocx with MALLOCX_ARENA takes no fast path in jemalloc
 * 5.3: about 120 instructions, plus the thread cache's fill and flush when
 * a thread keeps more than it holds), more than the rest of the path.  So
 * a shared context's freed block of up to BC_MAX_USABLE bytes goes to a
 * per-thread free list of its size class, and the next allocation of that
 * class on the thread, in any shared context, takes it back: a pop and a
 * push, no lock, no atomic.  What the cache holds belongs to no context
 * (as with jemalloc's own thread cache), so every context's accounting
 * stays exact: a block counts for its context from allocation to free.
 *
 * Bounded: BC_BIN_BYTES per class and BC_THREAD_BYTES per thread; past
 * them a block goes back to jemalloc.  Dedicated contexts never use it
 * (their arenas are reset whole and must not lend blocks to others).
 * Pool arenas are never reset (arena_pool.c), so a cached block stays
 * valid for as long as the thread lives; the thread's exit gives them all
 * back (a pthread key).  fork(): nothing to lock, the list is the
 * thread's own; a child keeps the forking thread's cache.  The cache is
 * made by the thread's first allocation in a shared context, so that a
 * free - ureg_ctx_destroy included - never needs memory.
 */
#include <pthread.h>
#include "ctx_int.h"

UREG_TLS struct bc_thread *ureg__bc;

static pthread_key_t bc_key;
static pthread_once_t bc_once = PTHREAD_ONCE_INIT;
static bool bc_key_ok;

static void bc_flush_all(struct bc_thread *t)
{
	for (unsigned c = 0; c < BC_NCLASSES; c++) {
		struct bc_block *b, *next;

		for (b = t->bin[c].head; b; b = next) {
			next = b->next;
			sdallocx(b, bc_class_size(c), 0);
		}
		t->bin[c].head = NULL;
		t->bin[c].n = 0;
	}
	t->bytes = 0;
}

static void bc_thread_exit(void *arg)
{
	struct bc_thread *t = arg;

	ureg__bc = BC_OFF; /* later frees (other destructors) go to jemalloc */
	bc_flush_all(t);
	ureg__meta_free(t);
}

static void bc_key_init(void)
{
	bc_key_ok = pthread_key_create(&bc_key, bc_thread_exit) == 0;
}

struct bc_thread *ureg__bc_init(void)
{
	struct bc_thread *t;

	pthread_once(&bc_once, bc_key_init);
	/* not a fault-injection site: failing only leaves this thread
	 * without a cache, which nothing can observe but speed */
	if (!bc_key_ok || !(t = ureg__meta_alloc_unfaulted(sizeof(*t)))) {
		ureg__bc = BC_OFF; /* no cache on this thread, nothing lost */
		return NULL;
	}
	memset(t, 0, sizeof(*t));
	if (pthread_setspecific(bc_key, t) != 0) {
		ureg__meta_free(t);
		ureg__bc = BC_OFF;
		return NULL;
	}
	ureg__bc = t;
	return t;
}

void ureg_ctx_thread_cache_flush(void)
{
	struct bc_thread *t = ureg__bc;

	if (t && t != BC_OFF)
		bc_flush_all(t);
}
