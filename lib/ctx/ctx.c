/* SPDX-License-Identifier: MIT */
/*
 * User contexts: the memory, the instances and the CONTEXT-scope instance
 * cache of one user.
 *
 * Memory.  Every block a context hands out is one jemalloc allocation from
 * the context's arena with a 16-byte header that links it into the
 * context's list, so destroy frees exactly what the context still holds
 * (a dedicated arena is reset instead, dropping everything at once).
 * Shared-pool blocks go through jemalloc's automatic thread cache (safe:
 * pool arenas are never reset, see arena_pool.c), which is what makes a
 * context about as cheap as a talloc context; dedicated ones bypass it.
 * Accounting is exact: nallocx() before the allocation gives the usable
 * size, so the quota check refuses cleanly, and sallocx() on free.
 *
 * The context lock is a 4-byte futex lock (Drepper, "Futexes Are Tricky",
 * mutex 3) biased to one owner thread, which enters with plain stores (see
 * ctx_int.h, "biased"; the slow path and the seats are in bias.c, the
 * fork pause here).  Stats
 * and the per-entry walk read relaxed counters without it.
 *
 * Creations (frames, the instance cache, single flight, cycles) are in
 * ctx_create.c, finding an entry's record by name in ctx_uses.c; what
 * the files share is in ctx_int.h.
 */
#include <sched.h>
#include "ctx_int.h"

/*
 * jemalloc's usable size for a request of @n bytes, without a call: 16-byte
 * steps up to 128, then four classes per doubling.  That is the size class
 * layout of jemalloc 5 with a 16-byte quantum; class_check() compares it
 * with nallocx() once per process and falls back to nallocx() if they ever
 * disagree (another build or version of jemalloc).
 */
static bool class_formula_ok;
static bool class_checked;
static pthread_once_t class_once = PTHREAD_ONCE_INIT;

static inline size_t class_formula(size_t n)
{
	if (n <= 128)
		return (n + 15) & ~(size_t)15;
	size_t x = n - 1;
	unsigned lg = 63u - (unsigned)__builtin_clzl(x);
	return (x | (((size_t)1 << (lg - 2)) - 1)) + 1;
}


static void class_check(void)
{
	bool ok = true;

	ureg__ctx_bias_init();
	for (size_t n = 17; ok && n <= 65536; n++)
		ok = nallocx(n, 0) == class_formula(n);
	for (size_t n = 65536; ok && n <= ((size_t)64 << 20); n += n / 61 + 1)
		ok = nallocx(n, 0) == class_formula(n);
	class_formula_ok = ok;
	__atomic_store_n(&class_checked, true, __ATOMIC_RELEASE);
}

static inline size_t usable_size(size_t n, int flags)
{
	if (UREG_LIKELY(class_formula_ok) && n <= ((size_t)64 << 20))
		return class_formula(n);
	return nallocx(n, flags);
}

/* Every live context, for ureg_ctx_foreach and reports.  Global by design:
 * a process-wide view is the point of ureg_report. */
static uint32_t all_lock;

/* cds_list_for_each_entry would form a ureg_ctx pointer from the list head
 * itself (16-byte aligned type, 8-byte aligned head: UBSan objects) */
#define for_each_ctx(ctx)                                                      \
	for (struct cds_list_head *n_ = all_contexts.next;                     \
	     n_ != &all_contexts &&                                            \
	     ((ctx) = caa_container_of(n_, struct ureg_ctx, all_node), 1);     \
	     n_ = n_->next)
static CDS_LIST_HEAD(all_contexts);

/*
 * fork: hold every context's lock across the fork, so that a child does
 * not inherit one locked by a thread that no longer exists (fork.c gives
 * the order).
 */
void ureg__ctx_lock_all(void)
{
	ureg_ctx *ctx;
	bool paused = false;

	lock_take(&all_lock);
	/* every futex lock, every bias paused, one membarrier for all, then
	 * wait for owners still inside (ctx_int.h, "biased") */
	for_each_ctx(ctx) {
		lock_take(&ctx->lock);
		if ((ctx->bias >> 2) && (ctx->bias & BIAS_STATE) == BIAS_ON) {
			__atomic_store_n(&ctx->bias, (ctx->bias & ~BIAS_STATE) | BIAS_PAUSED,
					 __ATOMIC_RELAXED);
			paused = true;
		}
	}
	if (paused)
		ureg__ctx_membarrier();
	for_each_ctx(ctx)
		while ((ctx->bias >> 2) &&
		       __atomic_load_n(&ureg__ctx_seat_at(ctx->bias >> 2)->inside,
				       __ATOMIC_ACQUIRE) == ctx)
			sched_yield();
	ureg__ctx_seats_lock(); /* a leaf: thread exits and first seats */
}

void ureg__ctx_unlock_all(void)
{
	ureg_ctx *ctx;

	for_each_ctx(ctx) {
		if ((ctx->bias & BIAS_STATE) == BIAS_PAUSED)
			__atomic_store_n(&ctx->bias, (ctx->bias & ~BIAS_STATE) | BIAS_ON,
					 __ATOMIC_RELEASE);
		lock_drop(&ctx->lock);
	}
	ureg__ctx_seats_unlock(false);
	lock_drop(&all_lock);
}

/* In the child only this thread exists: nothing can wait, just clear. */
void ureg__ctx_unlock_all_child(void)
{
	ureg_ctx *ctx;

	for_each_ctx(ctx) {
		__atomic_store_n(&ctx->lock, 0, __ATOMIC_RELAXED);
		/* an owner that did not survive may have been between its
		 * store into its seat and its clearing of it (a fast entry
		 * that found the bias paused by prepare): nobody will clear
		 * it now, and the child's first entry would wait on it
		 * forever */
		if ((ctx->bias >> 2) && ureg__ctx_seat_at(ctx->bias >> 2) != ureg__ctx_seat)
			ureg__ctx_seat_at(ctx->bias >> 2)->inside = NULL;
		if ((ctx->bias & BIAS_STATE) == BIAS_PAUSED)
			ctx->bias = (ctx->bias & ~BIAS_STATE) | BIAS_ON;
	}
	/* the seats of threads that did not survive stay taken (their exits
	 * never run here): one line each, in the child only */
	ureg__ctx_seats_unlock(true);
	__atomic_store_n(&all_lock, 0, __ATOMIC_RELAXED);
}

/* ------------------------------------------------------------ lifecycle */

/*
 * Recycled context structs.  Creating and destroying contexts at a high
 * rate (one per request) would otherwise pay a malloc, a free and two
 * trips through the global list lock each time - about half the cost of a
 * context.  So a destroyed context's struct (names up to 15 bytes) stays
 * in all_contexts, marked not live, on a short per-thread list, and the
 * thread's next ureg_ctx_new takes it back: no list operation, no lock.
 *
 * The one race is with ureg_ctx_foreach, which calls back on every live
 * context under all_lock: destroy marks the context not live and then
 * checks foreach_active; foreach raises foreach_active and then reads the
 * live marks.  Both with sequentially consistent operations (Dekker), so
 * either destroy sees the walk and waits for it on all_lock, or the walk
 * skips the context.  A thread's spares are freed when it exits.
 *
 * Off in sanitizer and fault-injection builds: ASan must see every free,
 * and the fault walks must meet the same allocations every time.
 */
#if defined(UREG_FAULT_INJECTION) || defined(__SANITIZE_ADDRESS__)
#define CTX_SPARES 0
#else
#define CTX_SPARES 32
#endif

static UREG_TLS struct ureg_ctx *spares;
static UREG_TLS unsigned nspares;
static UREG_TLS bool spares_key_set;
static uint32_t foreach_active;
static pthread_key_t spares_key;
static pthread_once_t spares_once __attribute__((unused)) = PTHREAD_ONCE_INIT;

static void spares_free(void *unused)
{
	struct ureg_ctx *ctx, *next;

	(void)unused;
	if (!spares)
		return;
	lock_take(&all_lock);
	for (ctx = spares; ctx; ctx = ctx->spare_next)
		cds_list_del(&ctx->all_node);
	lock_drop(&all_lock);
	for (ctx = spares; ctx; ctx = next) {
		next = ctx->spare_next;
		ureg__free(ctx);
	}
	spares = NULL;
	nspares = 0;
	spares_key_set = false;
}

static __attribute__((unused)) void spares_key_init(void)
{
	if (pthread_key_create(&spares_key, spares_free) != 0)
		abort(); /* once per process, at the first context */
}

static inline struct ureg_ctx *spare_take(void)
{
	struct ureg_ctx *ctx = spares;

	if (ctx) {
		spares = ctx->spare_next;
		nspares--;
	}
	return ctx;
}

/* true: @ctx is parked on this thread (still in all_contexts, not live) */
static inline bool spare_put(struct ureg_ctx *ctx)
{
#if CTX_SPARES == 0
	(void)ctx;
	return false;
#else
	if (!ctx->small || nspares >= CTX_SPARES)
		return false;
	if (UREG_UNLIKELY(!spares_key_set)) {
		pthread_once(&spares_once, spares_key_init);
		pthread_setspecific(spares_key, &spares); /* any non-NULL value */
		spares_key_set = true;
	}
	ctx->spare_next = spares;
	spares = ctx;
	nspares++;
	return true;
#endif
}

static inline void ctx_init(struct ureg_ctx *ctx, unsigned arena, unsigned flags,
			    const char *name, size_t namelen)
{
	hdr_list_init(&ctx->allocs);
	ctx->lock = 0;
	ctx->arena = (uint16_t)arena;
	ctx->dedicated = (flags & UREG_CTX_DEDICATED) != 0;
	ctx->small = namelen < CTX_NAME_INLINE;
	ctx->live_bytes = ctx->peak_bytes = ctx->allocations = ctx->quota = 0;
	ctx->total_allocations = 0;
	ctx->waiting = 0;
	ctx->bias_hist = 0;
	/* owned by the creating thread's seat (without one: no owner yet) */
	ctx->bias = ctx_seat() ? ureg__ctx_seat->key : BIAS_ON;
	ctx->cache = NULL;
	ctx->inst = NULL;
	memcpy(ctx->name, name ? name : "", namelen);
	ctx->name[namelen] = '\0';
}

int ureg_ctx_new(const char *name, unsigned flags, ureg_ctx **out)
{
	unsigned shared_arena, arena;
	size_t namelen = 0;
	ureg_ctx *ctx;
	int rc;

	ureg__rcu_ensure();
	if (!out)
		return ureg__err(-EINVAL, "ctx_new: out is NULL");
	if (flags & ~(unsigned)UREG_CTX_DEDICATED)
		return ureg__err(-EINVAL, "ctx_new: unknown flags 0x%x", flags);
	if (name && (namelen = strnlen(name, UREG_NAME_MAX + 1)) > UREG_NAME_MAX)
		return ureg__err(-EINVAL, "ctx_new: name longer than %d bytes", UREG_NAME_MAX);
	if (UREG_UNLIKELY(!__atomic_load_n(&class_checked, __ATOMIC_ACQUIRE)))
		pthread_once(&class_once, class_check);
	if (UREG_LIKELY(ureg__home_arena))
		shared_arena = ureg__home_arena - 1;
	else if ((rc = ureg__arena_shared(&shared_arena)) != 0)
		return ureg__err(rc, "ctx_new: %s", rc == -EAGAIN ?
				 "jemalloc has no arena left for the shared pool" :
				 "cannot create the shared arena pool");
	arena = shared_arena;
	if ((flags & UREG_CTX_DEDICATED) && (rc = ureg__arena_dedicated_new(&arena)) != 0)
		return ureg__err(rc, "ctx_new: %s", rc == -EAGAIN ?
				 "no dedicated arena left (ureg_arena_dedicated_max or jemalloc's limit)" :
				 "cannot create an arena");
	ctx = namelen < CTX_NAME_INLINE ? spare_take() : NULL;
	if (!ctx) {
		/* the struct is library bookkeeping: the application's malloc,
		 * like every other ureg structure (and a dedicated arena is
		 * reset under it) */
		size_t room = namelen < CTX_NAME_INLINE ? CTX_NAME_INLINE : namelen + 1;
		ctx = ureg__malloc(sizeof(*ctx) + room);
		if (!ctx) {
			if (flags & UREG_CTX_DEDICATED)
				ureg__arena_dedicated_release(arena);
			return ureg__err(-ENOMEM, "ctx_new: out of memory");
		}
		ctx_init(ctx, arena, flags, name, namelen);
		lock_take(&all_lock);
		cds_list_add_tail(&ctx->all_node, &all_contexts);
		lock_drop(&all_lock);
	} else {
		ctx_init(ctx, arena, flags, name, namelen);
	}
	/* visible to ureg_ctx_foreach from here: pairs with its acquire */
	__atomic_store_n(&ctx->live, 1, __ATOMIC_RELEASE);
	*out = ctx;
	return 0;
}

void ureg_ctx_destroy(ureg_ctx *ctx)
{
	if (!ctx)
		return;
	ureg__rcu_ensure();
	/* out of ureg_ctx_foreach's sight: see "Recycled context structs" */
	__atomic_store_n(&ctx->live, 0, __ATOMIC_SEQ_CST);
	if (UREG_UNLIKELY(__atomic_load_n(&foreach_active, __ATOMIC_SEQ_CST))) {
		lock_take(&all_lock); /* wait for the walk that may see it */
		lock_drop(&all_lock);
	}

	/* newest first; destructors may free context memory (takes lock) */
	while (ctx->inst) {
		struct inst_gone g;
		uint32_t i;

		ctx_lock(ctx);
		i = ctx->inst->inst.newest;
		if (i != INST_NONE)
			ureg__ctx_instance_unlink(ctx, i, &g);
		ctx_unlock(ctx);
		if (i == INST_NONE)
			break;
		ureg__ctx_instance_destroy(ctx, &g);
	}
	if (ctx->dedicated) {
		ureg__arena_dedicated_release(ctx->arena);
	} else {
		struct alloc_hdr *h = hdr_next(&ctx->allocs), *next;
		for (; h != &ctx->allocs; h = next) {
			next = hdr_next(h);
			if (!bc_push(h, hdr_size(h)))
				sdallocx(h, hdr_size(h), 0);
		}
	}
	/* no other thread may use ctx now (contract), so no reader can be
	 * probing the cache: free it at once */
	ureg__free(ctx->cache);
	if (ctx->inst) {
		struct ctx_use *u, *un;
		for (u = ctx->inst->uses; u; u = un) {
			un = u->next;
			ureg__free(u);
		}
		insttab_free(&ctx->inst->inst);
		ptrmap_free(&ctx->inst->by_serial);
		ptrmap_free(&ctx->inst->by_name);
		ureg__free(ctx->inst);
	}
	if (!spare_put(ctx)) {
		lock_take(&all_lock);
		cds_list_del(&ctx->all_node);
		lock_drop(&all_lock);
		ureg__free(ctx);
	}
}

const char *ureg_ctx_name(const ureg_ctx *ctx)
{
	return ctx ? ctx->name : NULL;
}

int ureg_ctx_set_quota(ureg_ctx *ctx, size_t bytes)
{
	if (!ctx)
		return ureg__err(-EINVAL, "ctx_set_quota: context is NULL");
	ctx_lock(ctx);
	CTR_SET(ctx->quota, bytes);
	ctx_unlock(ctx);
	return 0;
}

/*
 * Stats and the per-entry walk take no lock, so a report thread does not
 * pause every context's bias each time it looks (ctx_int.h, "biased"):
 * every counter is written with a relaxed atomic store under the context
 * lock and read here with a relaxed load; the book and the use records
 * are published with release stores and never freed before the context.
 */
#define CTR_GET(x) __atomic_load_n(&(x), __ATOMIC_RELAXED)

int ureg_ctx_stats(ureg_ctx *ctx, struct ureg_ctx_stats *st)
{
	struct ctx_book *b;

	if (!ctx || !st)
		return ureg__err(-EINVAL, "ctx_stats: NULL context or stats");
	b = __atomic_load_n(&ctx->inst, __ATOMIC_ACQUIRE);
	memset(st, 0, sizeof(*st));
	st->live_bytes = CTR_GET(ctx->live_bytes);
	st->peak_bytes = CTR_GET(ctx->peak_bytes);
	st->allocations = CTR_GET(ctx->allocations);
	st->total_allocations = CTR_GET(ctx->total_allocations);
	st->instances = b ? CTR_GET(b->inst.count) : 0;
	st->quota = CTR_GET(ctx->quota);
	st->arena = ctx->arena;
	st->dedicated = ctx->dedicated;
	st->waiting = CTR_GET(ctx->waiting);
	if (st->peak_bytes < st->live_bytes) /* read between two stores */
		st->peak_bytes = st->live_bytes;
	return 0;
}

int ureg_ctx_foreach(int (*fn)(ureg_ctx *ctx, void *arg), void *arg)
{
	ureg_ctx *ctx;
	int rc = 0;

	if (!fn)
		return ureg__err(-EINVAL, "ctx_foreach: callback is NULL");
	lock_take(&all_lock);
	__atomic_add_fetch(&foreach_active, 1, __ATOMIC_SEQ_CST);
	for_each_ctx(ctx)
		if (__atomic_load_n(&ctx->live, __ATOMIC_SEQ_CST) && (rc = fn(ctx, arg)))
			break;
	__atomic_sub_fetch(&foreach_active, 1, __ATOMIC_RELAXED);
	lock_drop(&all_lock);
	return rc;
}

/* --------------------------------------------------------------- memory */

/* The innermost creation of this thread in @ctx, if any. */
static inline struct creation *frame_of(ureg_ctx *ctx)
{
	struct creation *c;

	for (c = ureg__ctx_creating; c; c = c->parent)
		if (c->ctx == ctx)
			return c;
	return NULL;
}

/*
 * Allocate @size bytes in @ctx.  @for_obj: an instance of @ctx the block
 * is counted for (ureg_ctx_alloc_for), else NULL: a block of the
 * innermost creation this thread runs in @ctx (counted for its entry if
 * the creation succeeds, freed if it fails), or the context's own.
 */
static inline __attribute__((always_inline)) void *ctx_alloc(ureg_ctx *ctx, size_t size, int zero,
							    const void *for_obj)
{
	int flags = alloc_flags(ctx) | zero;
	struct creation *frame;
	struct ctx_blk *b;
	struct ctx_use *use = NULL;
	size_t total, usable;

	if (size == 0 || size > SIZE_MAX / 2) {
		errno = EINVAL;
		return NULL;
	}
	total = size + sizeof(*b);
	usable = usable_size(total, flags);
	if (!usable) {
		errno = ENOMEM;
		return NULL;
	}
	frame = ureg__ctx_creating && !for_obj ? frame_of(ctx) : NULL;
	ctx_lock(ctx);
	if (UREG_UNLIKELY(for_obj)) {
		uint32_t i = ctx->inst ? insttab_find(&ctx->inst->inst, for_obj) : INST_NONE;

		if (i == INST_NONE) {
			ctx_unlock(ctx);
			ureg__err(-ENOENT, "context '%s': alloc_for: %p is not one of its instances",
				  ctx->name, for_obj);
			errno = ENOENT;
			return NULL;
		}
		use = ctx->inst->inst.tab[i].use;
	}
	if (ctx->quota && ctx->live_bytes + usable > ctx->quota) {
		ctx_unlock(ctx);
		ureg__err(-EDQUOT, "context '%s': %zu more bytes would pass its quota of %zu",
			  ctx->name, usable, ctx->quota);
		errno = EDQUOT;
		return NULL;
	}
	if (ureg__fault_hit()) {
		b = NULL;
	} else if (!ctx->dedicated && (b = bc_pop(usable))) {
		if (zero)
			memset(b + 1, 0, size);
	} else {
		b = mallocx(total, flags);
	}
	if (!b) {
		ctx_unlock(ctx);
		errno = ENOMEM;
		return NULL;
	}
	b->usable = usable;
	b->use = use;
	if (frame) {
		if (!frame->allocated)
			frame->peak_before = ctx->peak_bytes;
		hdr_add_tail(&frame->allocs, &b->link);
		frame->allocated++;
	} else {
		hdr_add_tail(&ctx->allocs, &b->link);
	}
	if (use) {
		CTR_SET(use->bytes, use->bytes + usable);
		CTR_SET(use->blocks, use->blocks + 1);
		if (use->bytes > use->peak)
			CTR_SET(use->peak, use->bytes);
	}
	CTR_SET(ctx->live_bytes, ctx->live_bytes + usable);
	if (ctx->live_bytes > ctx->peak_bytes)
		CTR_SET(ctx->peak_bytes, ctx->live_bytes);
	CTR_SET(ctx->allocations, ctx->allocations + 1);
	CTR_SET(ctx->total_allocations, ctx->total_allocations + 1);
	ctx_unlock(ctx);
	return b + 1;
}

void *ureg_ctx_alloc(ureg_ctx *ctx, size_t size)
{
	if (!ctx) {
		errno = EINVAL;
		return NULL;
	}
	return ctx_alloc(ctx, size, 0, NULL);
}

void *ureg_ctx_calloc(ureg_ctx *ctx, size_t n, size_t size)
{
	if (!ctx || (size && n > SIZE_MAX / size)) {
		errno = EINVAL;
		return NULL;
	}
	return ctx_alloc(ctx, n * size, MALLOCX_ZERO, NULL);
}

char *ureg_ctx_strdup(ureg_ctx *ctx, const char *s)
{
	if (!ctx || !s) {
		errno = EINVAL;
		return NULL;
	}
	size_t n = strlen(s) + 1;
	char *d = ctx_alloc(ctx, n, 0, NULL);
	if (d)
		memcpy(d, s, n);
	return d;
}

void *ureg_ctx_alloc_for(ureg_ctx *ctx, const void *instance, size_t size)
{
	if (!ctx || !instance) {
		ureg__err(-EINVAL, "ctx_alloc_for: NULL context or instance");
		errno = EINVAL;
		return NULL;
	}
	return ctx_alloc(ctx, size, 0, instance);
}

void *ureg_ctx_calloc_for(ureg_ctx *ctx, const void *instance, size_t n, size_t size)
{
	if (!ctx || !instance || (size && n > SIZE_MAX / size)) {
		ureg__err(-EINVAL, "ctx_calloc_for: NULL context or instance, or overflow");
		errno = EINVAL;
		return NULL;
	}
	return ctx_alloc(ctx, n * size, MALLOCX_ZERO, instance);
}

void ureg_ctx_free(ureg_ctx *ctx, void *p)
{
	struct ctx_blk *b;

	if (!ctx || !p)
		return;
	b = blk_of(p);
	ctx_lock(ctx);
	/* the context's list or a creation frame's: unlinking needs neither */
	hdr_unlink(&b->link);
	size_t usable = hdr_size(&b->link);
	if (b->use) {
		CTR_SET(b->use->bytes, b->use->bytes - usable);
		CTR_SET(b->use->blocks, b->use->blocks - 1);
	}
	CTR_SET(ctx->live_bytes, ctx->live_bytes - usable);
	CTR_SET(ctx->allocations, ctx->allocations - 1);
	ctx_unlock(ctx);
	if (ctx->dedicated || !bc_push(b, usable))
		sdallocx(b, usable, free_flags(ctx));
}

int ureg_ctx_entries(ureg_ctx *ctx,
		     int (*fn)(const struct ureg_ctx_entry *e, void *arg), void *arg)
{
	struct ureg_ctx_entry e;
	struct ctx_book *b;
	struct ctx_use *u;
	int rc = 0;

	if (!ctx || !fn)
		return ureg__err(-EINVAL, "ctx_entries: NULL context or callback");
	b = __atomic_load_n(&ctx->inst, __ATOMIC_ACQUIRE);
	for (u = b ? __atomic_load_n(&b->uses, __ATOMIC_ACQUIRE) : NULL; u && !rc;
	     u = __atomic_load_n(&u->next, __ATOMIC_ACQUIRE)) {
		e.registry = u->names;
		e.key = u->key;
		e.instances = CTR_GET(u->instances);
		e.bytes = CTR_GET(u->bytes);
		e.peak_bytes = CTR_GET(u->peak);
		e.allocations = CTR_GET(u->blocks);
		if (e.peak_bytes < e.bytes)
			e.peak_bytes = e.bytes;
		rc = fn(&e, arg);
	}
	return rc;
}
