/* SPDX-License-Identifier: MIT */
/*
 * jemalloc arenas for user contexts.
 *
 * jemalloc allows ~4,086 manual arenas per process and an empty one costs
 * ~126 KiB and 60-200 us, so contexts cannot each own one.  Shared contexts
 * borrow from a small pool created on first use (round-robin); dedicated
 * contexts create their own arena with extent hooks that really unmap
 * (under the default retain:true, every create/destroy cycle of an arena
 * would otherwise keep 2 MiB of address space).
 */
#include <jemalloc/jemalloc.h>
#include <stdio.h>
#include <sys/mman.h>
#include "internal.h"

#define POOL_MAX 1024

/* The pool is process-wide because jemalloc's arenas are: one bounded set
 * shared by every shared context of the process, whatever its registry. */
static pthread_mutex_t pool_lock = PTHREAD_MUTEX_INITIALIZER;
static unsigned pool_size = 8;          /* ureg_arena_pool_size() */
static unsigned pool_arenas[POOL_MAX];
static unsigned pool_ready;             /* arenas created so far */
static unsigned pool_next;              /* round-robin cursor */

/* ---- extent hooks for dedicated arenas: plain mmap / munmap ---- */

static void *hook_alloc(extent_hooks_t *h, void *new_addr, size_t size,
			size_t alignment, bool *zero, bool *commit,
			unsigned arena_ind)
{
	(void)h; (void)arena_ind;
	if (new_addr)
		return NULL; /* cannot grow in place: jemalloc copes */
	if (alignment < 4096)
		alignment = 4096;
	size_t span = size + alignment - 4096;
	char *p = mmap(NULL, span, PROT_READ | PROT_WRITE,
		       MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (p == MAP_FAILED)
		return NULL;
	uintptr_t a = ((uintptr_t)p + alignment - 1) & ~(uintptr_t)(alignment - 1);
	if (a > (uintptr_t)p)
		munmap(p, a - (uintptr_t)p);
	if ((uintptr_t)p + span > a + size)
		munmap((void *)(a + size), (uintptr_t)p + span - (a + size));
	*zero = true;
	*commit = true;
	return (void *)a;
}

static bool hook_dalloc(extent_hooks_t *h, void *addr, size_t size,
			bool committed, unsigned arena_ind)
{
	(void)h; (void)committed; (void)arena_ind;
	return munmap(addr, size) != 0; /* false: done, nothing retained */
}

static void hook_destroy(extent_hooks_t *h, void *addr, size_t size,
			 bool committed, unsigned arena_ind)
{
	(void)h; (void)committed; (void)arena_ind;
	munmap(addr, size);
}

static bool hook_commit(extent_hooks_t *h, void *addr, size_t size,
			size_t offset, size_t length, unsigned arena_ind)
{
	(void)h; (void)addr; (void)size; (void)offset; (void)length; (void)arena_ind;
	return false; /* mappings are always committed */
}

static bool hook_decommit(extent_hooks_t *h, void *addr, size_t size,
			  size_t offset, size_t length, unsigned arena_ind)
{
	(void)h; (void)addr; (void)size; (void)offset; (void)length; (void)arena_ind;
	return true; /* opt out: jemalloc purges instead */
}

static bool hook_purge_forced(extent_hooks_t *h, void *addr, size_t size,
			      size_t offset, size_t length, unsigned arena_ind)
{
	(void)h; (void)size; (void)arena_ind;
	return madvise((char *)addr + offset, length, MADV_DONTNEED) != 0;
}

static bool hook_split(extent_hooks_t *h, void *addr, size_t size,
		       size_t size_a, size_t size_b, bool committed,
		       unsigned arena_ind)
{
	(void)h; (void)addr; (void)size; (void)size_a; (void)size_b;
	(void)committed; (void)arena_ind;
	return false; /* any page range of a mapping can be unmapped alone */
}

static bool hook_merge(extent_hooks_t *h, void *addr_a, size_t size_a,
		       void *addr_b, size_t size_b, bool committed,
		       unsigned arena_ind)
{
	(void)h; (void)addr_a; (void)size_a; (void)addr_b; (void)size_b;
	(void)committed; (void)arena_ind;
	return false; /* adjacent ranges unmap fine as one */
}

static extent_hooks_t unmap_hooks = {
	.alloc = hook_alloc,
	.dalloc = hook_dalloc,
	.destroy = hook_destroy,
	.commit = hook_commit,
	.decommit = hook_decommit,
	.purge_lazy = NULL,
	.purge_forced = hook_purge_forced,
	.split = hook_split,
	.merge = hook_merge,
};

static int arena_create(extent_hooks_t *hooks, unsigned *out)
{
	unsigned ind;
	size_t sz = sizeof(ind);
	int rc;

	if (ureg__fault_hit())
		return -ENOMEM;
	if (hooks)
		rc = mallctl("arenas.create", &ind, &sz, &hooks, sizeof(hooks));
	else
		rc = mallctl("arenas.create", &ind, &sz, NULL, 0);
	if (rc)
		return rc == EAGAIN ? -EAGAIN : -ENOMEM;
	*out = ind;
	return 0;
}

int ureg__arena_shared(unsigned *arena)
{
	int rc = 0;

	pthread_mutex_lock(&pool_lock);
	unsigned slot = pool_next++ % pool_size;
	if (slot >= pool_ready) {
		/* the pool fills lazily, one new arena per early context */
		rc = arena_create(NULL, &pool_arenas[pool_ready]);
		if (rc == 0)
			slot = pool_ready++;
		else if (pool_ready > 0)
			rc = 0, slot %= pool_ready; /* use an existing arena */
	}
	if (rc == 0)
		*arena = pool_arenas[slot];
	pthread_mutex_unlock(&pool_lock);
	return rc;
}

/*
 * Dedicated arenas are never destroyed: ureg_ctx_destroy resets the arena
 * (arena.<i>.reset discards every allocation, the extent hooks unmap or
 * retain the pages for the arena's next user) and parks its index here for
 * the next dedicated context.  Destroying arenas (arena.<i>.destroy) and
 * creating new ones in their recycled indices while other threads allocate
 * corrupted jemalloc 5.3's state in ureg-stress (a crash in mallocx of an
 * unrelated arena about once in a hundred runs; one in four with thread
 * caches); reset + reuse never did.  The spares are bounded by the peak
 * number of live dedicated contexts, itself bounded by jemalloc's ~4,086.
 */
#define SPARE_MAX 4096
static unsigned spare_arenas[SPARE_MAX];
static unsigned nspare;

int ureg__arena_dedicated_new(unsigned *arena)
{
	pthread_mutex_lock(&pool_lock);
	if (nspare) {
		*arena = spare_arenas[--nspare];
		pthread_mutex_unlock(&pool_lock);
		return 0;
	}
	pthread_mutex_unlock(&pool_lock);
	return arena_create(&unmap_hooks, arena);
}

void ureg__arena_dedicated_destroy(unsigned arena)
{
	char name[64];

	snprintf(name, sizeof(name), "arena.%u.reset", arena);
	mallctl(name, NULL, NULL, NULL, 0);
	pthread_mutex_lock(&pool_lock);
	if (nspare < SPARE_MAX)
		spare_arenas[nspare++] = arena;
	pthread_mutex_unlock(&pool_lock);
}

int ureg_arena_pool_size(unsigned n)
{
	int rc = 0;

	if (n < 1 || n > POOL_MAX)
		return ureg__err(-EINVAL, "arena pool size %u outside 1..%d", n, POOL_MAX);
	pthread_mutex_lock(&pool_lock);
	if (pool_ready)
		rc = ureg__err(-EBUSY, "arena pool already in use");
	else
		pool_size = n;
	pthread_mutex_unlock(&pool_lock);
	return rc;
}
