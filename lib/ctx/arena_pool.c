/* SPDX-License-Identifier: MIT */
/*
 * jemalloc arenas for user contexts.
 *
 * jemalloc allows ~4,086 manual arenas per process and an empty one costs
 * ~126 KiB of metadata and 60-200 us to create, so contexts cannot each own
 * one.  Two kinds:
 *
 *  - The shared pool: pool_size arenas (default 8), all created together
 *    the first time any context is made, *before* any dedicated arena can
 *    take jemalloc's last indices - so shared contexts never fail for lack
 *    of arenas once the pool exists.  Each thread picks a home arena of the
 *    pool once (round-robin) and its shared contexts use it: no lock on the
 *    context path.
 *
 *  - Dedicated arenas, one per DEDICATED context, capped by
 *    ureg_arena_dedicated_max() (past it ureg_ctx_new gives -EAGAIN).  They
 *    use jemalloc's own extent hooks and are never destroyed: when their
 *    context goes, "arena.<i>.reset" drops every allocation at once,
 *    "arena.<i>.purge" hands the pages back to the kernel (MADV_DONTNEED:
 *    no RSS, the address range stays reserved), and the index is parked for
 *    the next dedicated context.
 *
 * Why no custom extent hooks.  Until 2026-11 dedicated arenas had hooks
 * whose dalloc/destroy called munmap, so create/destroy cycles would not
 * keep address space.  jemalloc's default mode is retain:true, and its
 * extent layer is written for it: with hooks that really unmap, four threads
 * cycling dedicated contexts (16 B..4 MiB blocks) next to shared-context and
 * plain malloc traffic crashed in mallocx in 10 of 10 runs of 2 s
 * (stress/arena_churn.h; `ureg-stress --mode arenas`).  The same workload
 * with jemalloc's own hooks, which never unmap in retain mode, runs clean:
 * see stress/loop.sh.  Address space is bounded instead by never destroying
 * an arena: the parked ones are reused, so a million context create/destroy
 * cycles reuse the same few arenas' ranges.
 *
 * Context allocations never go through a thread cache for dedicated arenas
 * (MALLOCX_TCACHE_NONE): reset requires that no tcache holds their blocks.
 * Shared-pool blocks do use the automatic tcache: pool arenas are never
 * reset or destroyed, so a block moving between pool arenas (or to the
 * application's arenas when jemalloc is its malloc) through a thread cache
 * is harmless; each block's size, not its arena, is what accounting reads.
 */
#include <jemalloc/jemalloc.h>
#include <stdio.h>
#include "../core/internal.h"

#define POOL_MAX 1024
#define DEDICATED_LIMIT 4096  /* jemalloc's own ceiling is ~4,086 */

/*
 * Process-wide because jemalloc's arenas are: one bounded set shared by
 * every context of the process, whatever its registry.  pool_lock guards
 * everything below except pool_arenas[] and pool_ready, which are written
 * once (under the lock) before pool_ready is published with a release
 * store and read-only afterwards.
 */
static pthread_mutex_t pool_lock = PTHREAD_MUTEX_INITIALIZER;
static unsigned pool_size = 8;            /* ureg_arena_pool_size() */
static unsigned pool_arenas[POOL_MAX];
static unsigned pool_ready;               /* 0 until the pool exists */
static unsigned pool_next;                /* round-robin for home arenas */
static unsigned dedicated_max = 1024;     /* ureg_arena_dedicated_max() */
static unsigned dedicated_made;           /* created so far (live + parked) */
static unsigned spare_arenas[DEDICATED_LIMIT]; /* parked, reset and purged */
static unsigned nspare;

/* this thread's pool arena + 1 (0: not chosen yet); ctx.c reads it inline */
UREG_TLS unsigned ureg__home_arena;

static int arena_create(unsigned *out)
{
	unsigned ind;
	size_t sz = sizeof(ind);
	int rc;

	if (ureg__fault_hit())
		return -ENOMEM;
	rc = mallctl("arenas.create", &ind, &sz, NULL, 0);
	if (rc)
		return rc == EAGAIN ? -EAGAIN : -ENOMEM;
	*out = ind;
	return 0;
}

/* Under pool_lock: create the whole pool, once.  Keeps what it could make
 * when jemalloc runs out part-way; fails only when it made none. */
static int pool_fill_locked(void)
{
	unsigned n = 0;
	int rc = 0;

	if (pool_ready)
		return 0;
	while (n < pool_size && (rc = arena_create(&pool_arenas[n])) == 0)
		n++;
	if (n == 0)
		return rc;
	__atomic_store_n(&pool_ready, n, __ATOMIC_RELEASE);
	return 0;
}

int ureg__arena_shared(unsigned *arena)
{
	if (UREG_LIKELY(ureg__home_arena)) {
		*arena = ureg__home_arena - 1;
		return 0;
	}
	pthread_mutex_lock(&pool_lock);
	int rc = pool_fill_locked();
	if (rc == 0) {
		*arena = pool_arenas[pool_next++ % pool_ready];
		ureg__home_arena = *arena + 1;
	}
	pthread_mutex_unlock(&pool_lock);
	return rc;
}

int ureg__arena_dedicated_new(unsigned *arena)
{
	int rc;

	pthread_mutex_lock(&pool_lock);
	/* the shared pool first: dedicated arenas never starve it */
	if ((rc = pool_fill_locked()) != 0)
		goto out;
	if (nspare) {
		*arena = spare_arenas[--nspare];
		goto out;
	}
	if (dedicated_made >= dedicated_max) {
		rc = -EAGAIN;
		goto out;
	}
	/* arenas.create takes jemalloc's arenas lock, never ours in reverse */
	if ((rc = arena_create(arena)) == 0)
		dedicated_made++;
out:
	pthread_mutex_unlock(&pool_lock);
	return rc;
}

static void arena_ctl(const char *what, unsigned arena)
{
	char name[64];

	snprintf(name, sizeof(name), "arena.%u.%s", arena, what);
	mallctl(name, NULL, NULL, NULL, 0);
}

void ureg__arena_dedicated_release(unsigned arena)
{
	/* drop every block, then give the pages back; outside pool_lock:
	 * nobody else can reach this arena until it is parked */
	arena_ctl("reset", arena);
	arena_ctl("purge", arena);
	pthread_mutex_lock(&pool_lock);
	spare_arenas[nspare++] = arena; /* nspare <= dedicated_made <= LIMIT */
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

int ureg_arena_dedicated_max(unsigned n)
{
	int rc = 0;

	if (n > DEDICATED_LIMIT)
		return ureg__err(-EINVAL, "dedicated arena cap %u above %d", n,
				 DEDICATED_LIMIT);
	pthread_mutex_lock(&pool_lock);
	if (n < dedicated_made)
		rc = ureg__err(-EBUSY, "dedicated arena cap %u below the %u arenas already made",
			       n, dedicated_made);
	else
		dedicated_max = n;
	pthread_mutex_unlock(&pool_lock);
	return rc;
}

int ureg_arena_stats(struct ureg_arena_stats *st)
{
	if (!st)
		return ureg__err(-EINVAL, "arena_stats: NULL stats");
	pthread_mutex_lock(&pool_lock);
	memset(st, 0, sizeof(*st));
	st->pool_arenas = pool_ready;
	st->pool_size = pool_size;
	st->dedicated_made = dedicated_made;
	st->dedicated_parked = nspare;
	st->dedicated_max = dedicated_max;
	pthread_mutex_unlock(&pool_lock);
	return 0;
}

/* fork.c: held across fork() so a child never inherits it locked. */
void ureg__arena_lock(void)
{
	pthread_mutex_lock(&pool_lock);
}

void ureg__arena_unlock(void)
{
	pthread_mutex_unlock(&pool_lock);
}
