/* SPDX-License-Identifier: MIT */
/*
 * User contexts: one per user or session.  A context owns the instances its
 * factories create and every byte they allocate through it, accounted
 * exactly and released as a whole by ureg_ctx_destroy().
 *
 * Memory comes from jemalloc arenas, never from the application's malloc:
 *  - UREG_CTX_SHARED (default): the context allocates from one arena of a
 *    bounded pool shared by all shared contexts (ureg_arena_pool_size), so
 *    contexts scale far past jemalloc's ~4,086-arena limit.  The pool is
 *    created whole on first use, before any dedicated arena, so shared
 *    contexts never fail for lack of arenas afterwards.  Blocks go through
 *    jemalloc's thread cache: a context costs about what a talloc context
 *    costs (README, "Memory per user context").
 *  - UREG_CTX_DEDICATED: the context gets an arena of its own, for heavy
 *    tenants.  Destroy resets it (every block dropped at once), purges its
 *    pages back to the kernel and parks it for the next dedicated context:
 *    arenas are reused, never destroyed, so create/destroy cycles do not
 *    grow the address space.  At most ureg_arena_dedicated_max() arenas
 *    (default 1,024); past it ureg_ctx_new fails with -EAGAIN.
 *
 * Every block carries a 32-byte header that links it into its context (so
 * destroy frees exactly what the context still holds), keeps its size
 * (frees are sized: jemalloc's sdallocx fast path) and names the
 * registry entry its bytes count for (ureg_ctx_entries: what a factory
 * allocated while creating, and ureg_ctx_alloc_for on an instance's
 * behalf).  Accounting is exact:
 * live_bytes is the sum of jemalloc's usable size of every live block
 * (header included), computed with nallocx() before the allocation so a
 * quota refuses it cleanly (-EDQUOT) without touching anything else.
 *
 * Failed creations change nothing: what a factory (or the type's on_create
 * hook) allocated in the context on the creating thread before it failed
 * is freed again, and live_bytes, allocations, total_allocations and
 * peak_bytes read as before the call (peak_bytes may keep a high-water mark
 * another thread of the same context reached meanwhile).
 *
 * A context may be used from several threads at once; allocation and
 * instance bookkeeping serialize on the context's own lock (never a
 * registry's lock).  The lock is biased to one owner thread (the one
 * that created the context), which takes it with plain stores and no atomic
 * instruction; another thread pays a sys_membarrier (microseconds) per
 * entry, and after 15 such entries becomes the owner itself (at most 3
 * times; then every thread takes an ordinary futex lock).  So a context
 * used mostly by one thread at a time - one user's requests - is cheap,
 * and one shared by busy threads falls back to an ordinary lock.  Stats
 * and the per-entry walk take no lock at all.  (Ownership belongs to a
 * per-thread "seat" that outlives the thread: the next thread to start
 * using contexts takes over an exited owner's contexts.)
 */
#ifndef UREG_CTX_H
#define UREG_CTX_H

#include <ureg/api.h>

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

enum ureg_ctx_flags {
	UREG_CTX_SHARED = 0,          /* arena from the shared pool (default) */
	UREG_CTX_DEDICATED = 1u << 0, /* an arena of its own */
};

/**
 * struct ureg_ctx_stats - exact accounting of one context.
 * @live_bytes:  bytes allocated and not yet freed (usable sizes).
 * @peak_bytes:  highest @live_bytes so far.
 * @allocations: live allocation count.
 * @total_allocations: allocations made over the context's life.
 * @instances:   live instances.
 * @quota:       byte quota, 0 for none.
 * @arena:       jemalloc arena index the context allocates from.
 * @dedicated:   1 when the arena is the context's own.
 * @waiting:     threads now waiting for a CONTEXT-scope instance another
 *               thread is creating (they get its answer: one factory run).
 */
struct ureg_ctx_stats {
	size_t live_bytes;
	size_t peak_bytes;
	size_t allocations;
	uint64_t total_allocations;
	size_t instances;
	size_t quota;
	unsigned arena;
	int dedicated;
	unsigned waiting;
	uint64_t reserved[4]; /* zeroed: room for fields (<ureg/api.h>, ABI) */
};

/**
 * ureg_ctx_new - create a user context.
 * @name:   label for reports (copied; NULL for none; at most UREG_NAME_MAX).
 * @flags:  UREG_CTX_SHARED or UREG_CTX_DEDICATED.
 * @out:    receives the context.
 *
 * Any thread; blocks on jemalloc and, the first time (the shared pool is
 * created: ureg_arena_pool_size() arenas of 60-200 us each) or for a
 * dedicated context without a parked arena to reuse, in jemalloc's arena
 * creation.  Valid until ureg_ctx_destroy().  Returns 0, -EINVAL (bad
 * flags, name), -ENOMEM, -EAGAIN: for a dedicated context, the
 * ureg_arena_dedicated_max() cap or jemalloc's arena limit is reached; for
 * a shared one, jemalloc had no arena left for the pool when it was first
 * created (only possible when the application itself created ~4,000).
 */
UREG_API int ureg_ctx_new(const char *name, unsigned flags, ureg_ctx **out);

/**
 * ureg_ctx_destroy - destroy every instance of @ctx in reverse creation
 * order, then free every byte it still holds, then the context.
 *
 * Call once, from a thread not inside a read section, when no other thread
 * uses @ctx (so nothing can still be probing its instance cache, which is
 * freed at once).  Blocks in the destructors it runs and on jemalloc.
 * NULL is a no-op.
 */
UREG_API void ureg_ctx_destroy(ureg_ctx *ctx);

/**
 * ureg_ctx_thread_cache_flush - give the calling thread's cache of freed
 * shared-context blocks back to jemalloc.
 *
 * Shared contexts keep small freed blocks (up to 512 bytes with the block
 * header) in a per-thread cache for the thread's next allocations, at most
 * 128 KiB per size class and 256 KiB per thread; the cache belongs to no
 * context, and a thread's exit empties it.  Call this on a thread that
 * will allocate in no context for a long time (a worker going idle).  Any
 * thread, any time but inside a fork handler; blocks on nothing but
 * jemalloc.
 */
UREG_API void ureg_ctx_thread_cache_flush(void);

/** ureg_ctx_name - the context's name ("" when none); valid as long as @ctx. */
UREG_API const char *ureg_ctx_name(const ureg_ctx *ctx);

/**
 * ureg_ctx_set_quota - cap @ctx's live bytes at @bytes (0 removes the cap).
 * Allocations that would pass it fail with -EDQUOT (NULL from the alloc
 * calls) and change nothing.  Lowering the cap below the live bytes is
 * allowed: it only refuses new allocations.  Any thread; takes the context
 * mutex.  Returns 0 or -EINVAL.
 */
UREG_API int ureg_ctx_set_quota(ureg_ctx *ctx, size_t bytes);

/**
 * ureg_ctx_stats - copy @ctx's accounting into @st.  Any thread, while
 * @ctx is not being destroyed; never blocks and takes no lock (each
 * counter is read atomically; while other threads allocate in @ctx the
 * counters may come from slightly different moments).  Returns 0 or
 * -EINVAL.
 */
UREG_API int ureg_ctx_stats(ureg_ctx *ctx, struct ureg_ctx_stats *st);

/**
 * ureg_ctx_alloc / ureg_ctx_calloc / ureg_ctx_strdup - allocate inside @ctx.
 *
 * For factories and instance code.  Any thread; blocks on the context lock
 * (not at all on the owner's biased path; another thread pays a membarrier,
 * see the top of this file) and on jemalloc's arena lock.  Inside a
 * creation the block counts for the entry being created (ureg_ctx_entries)
 * if the creation succeeds, and is freed if it fails; outside one it is the
 * context's own.  The memory is 16-byte aligned and valid until
 * ureg_ctx_free() or ureg_ctx_destroy().  Return NULL on a NULL @ctx, a zero
 * size, overflow, quota (errno EDQUOT) or exhaustion (errno ENOMEM).
 */
UREG_API void *ureg_ctx_alloc(ureg_ctx *ctx, size_t size);
UREG_API void *ureg_ctx_calloc(ureg_ctx *ctx, size_t n, size_t size);
UREG_API char *ureg_ctx_strdup(ureg_ctx *ctx, const char *s);

/**
 * ureg_ctx_alloc_for / ureg_ctx_calloc_for - allocate inside @ctx on
 * behalf of @instance, one of @ctx's live instances: the block counts for
 * the registry entry that made @instance in the per-entry breakdown
 * (ureg_ctx_entries), exactly as what its factory allocated while
 * creating it.  For instance code that grows after creation (a session's
 * buffers, a tool's cache).  Same rules, lifetime and errors as
 * ureg_ctx_alloc(), plus NULL with errno ENOENT (and ureg_last_error())
 * when @instance is not a live instance of @ctx, EINVAL for a NULL @ctx or
 * @instance; nothing is allocated or counted then.  The block stays
 * counted for that entry until it is freed, even after @instance is
 * released (the bytes are still the entry's doing).
 */
UREG_API void *ureg_ctx_alloc_for(ureg_ctx *ctx, const void *instance, size_t size);
UREG_API void *ureg_ctx_calloc_for(ureg_ctx *ctx, const void *instance,
				   size_t n, size_t size);

/**
 * ureg_ctx_free - free @p, which @ctx allocated.  NULL is a no-op.  Any
 * thread; blocks on the context mutex.
 */
UREG_API void ureg_ctx_free(ureg_ctx *ctx, void *p);

/**
 * ureg_instance_release - destroy one instance of @ctx now (its destructor
 * runs on the calling thread) instead of at ureg_ctx_destroy().  A
 * CONTEXT-scope instance is also dropped from the context's cache; the
 * caller must know no other thread still uses it.  Not inside a read
 * section.  Constant time (a per-context map from object to record).
 * Returns 0, -EINVAL, -ENOENT (not an instance of @ctx).
 */
UREG_API int ureg_instance_release(ureg_ctx *ctx, void *instance);

/**
 * struct ureg_ctx_entry - what one registry entry holds in one context.
 * @registry:    the registry's name.
 * @key:         the entry's key.
 * @instances:   live instances it made in the context.
 * @bytes:       live bytes counted for it (usable sizes, headers included,
 *               as in live_bytes): the blocks its factory allocated in
 *               the context while creating those instances (in successful
 *               creations only), plus the blocks allocated with
 *               ureg_ctx_alloc_for() on behalf of its instances, until
 *               freed.
 * @peak_bytes:  highest @bytes so far.
 * @allocations: live blocks counted in @bytes.
 *
 * One record per registry name and key: the instances of every factory
 * registered under the key (a reload's replacement, ranked providers)
 * count together, so a context that outlives any number of reloads keeps
 * one record per key it used, not one per registration (two live
 * registries of the same name share records, as they share a name in
 * every report).
 * The sum of @bytes over a context's entries is at most its live_bytes;
 * the rest is what was allocated outside any creation with ureg_ctx_alloc.
 * The library's storage, handed to the callback by pointer: it may grow
 * at the end in a later version (api.h, "ABI policy").
 */
struct ureg_ctx_entry {
	const char *registry;
	const char *key;
	size_t instances;
	size_t bytes;
	size_t peak_bytes;
	size_t allocations;
};

/**
 * ureg_ctx_entries - call @fn(entry, @arg) for every registry entry that
 * made an instance in @ctx (those whose instances are all gone included,
 * for their peak), oldest first, until @fn returns non-zero (returned).
 *
 * The per-entry breakdown of the context's memory: kept up to date by
 * creations, releases, ureg_ctx_alloc_for() and ureg_ctx_free(), under
 * the context lock those already take; lookups do no extra work.  Any
 * thread, while @ctx is not being destroyed; takes no lock and never
 * blocks (records are only ever appended; each number is read atomically,
 * so with other threads busy in @ctx they may come from slightly
 * different moments).  @fn may call into @ctx.  The strings in @entry are
 * valid until @ctx is destroyed; the struct only during the call.
 * Returns 0, -EINVAL or @fn's value.
 */
UREG_API int ureg_ctx_entries(ureg_ctx *ctx,
			      int (*fn)(const struct ureg_ctx_entry *entry, void *arg),
			      void *arg);

/**
 * ureg_ctx_foreach - call @fn(ctx, @arg) for every live context until it
 * returns non-zero (that value is returned).  Order: oldest first, where a
 * context made from a recycled context struct (a thread reuses the structs
 * of contexts it destroyed) takes that struct's place.  For reports and
 * tools.  Any thread; holds the global context-list lock throughout (a
 * concurrent ureg_ctx_destroy of a visited context waits for the walk), so
 * @fn must not create or destroy contexts.  Returns 0 or @fn's value.
 */
UREG_API int ureg_ctx_foreach(int (*fn)(ureg_ctx *ctx, void *arg), void *arg);

/**
 * ureg_arena_pool_size - set the number of arenas in the shared pool
 * (default 8; 1..1024).  Only before the first context (of either kind)
 * exists; afterwards -EBUSY.  Any thread; takes the arena mutex briefly.
 */
UREG_API int ureg_arena_pool_size(unsigned n);

/**
 * ureg_arena_dedicated_max - cap the dedicated arenas the process may make
 * (default 1,024; 0..4096; 0 forbids dedicated contexts).  Arenas are never
 * destroyed, so the cap bounds the live plus parked ones; a cap below the
 * number already made is -EBUSY.  Any thread; takes the arena mutex.
 * Returns 0, -EINVAL, -EBUSY.
 */
UREG_API int ureg_arena_dedicated_max(unsigned n);

/**
 * struct ureg_arena_stats - the arena layer, process-wide.
 * @pool_arenas:      shared-pool arenas created (0 before the first context).
 * @pool_size:        the pool size asked for.
 * @dedicated_made:   dedicated arenas created so far (in use + parked).
 * @dedicated_parked: reset, purged and waiting for the next dedicated context.
 * @dedicated_max:    the cap (ureg_arena_dedicated_max).
 */
struct ureg_arena_stats {
	unsigned pool_arenas;
	unsigned pool_size;
	unsigned dedicated_made;
	unsigned dedicated_parked;
	unsigned dedicated_max;
	uint64_t reserved[4]; /* zeroed: room for fields (ABI) */
};

/**
 * ureg_arena_stats - copy the arena layer's counts into @st.  Any thread;
 * takes the arena mutex briefly.  Returns 0 or -EINVAL.
 */
UREG_API int ureg_arena_stats(struct ureg_arena_stats *st);

#ifdef __cplusplus
}
#endif

#endif /* UREG_CTX_H */
