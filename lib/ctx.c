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
 * mutex 3): one uncontended atomic to take, one to drop, which keeps the
 * common one-thread-per-context case cheap and the struct small (an idle
 * context is one 112- or 128-byte jemalloc block).
 *
 * Rollback.  A factory runs inside a creation frame (thread-local, on the
 * creating thread's stack).  Blocks the creating thread allocates in that
 * context while the frame is open go to the frame's own list; if the
 * creation fails they are freed and the context's counters restored, so a
 * failed creation changes nothing.  On success the list is spliced into the
 * context's.
 *
 * The CONTEXT-scope cache maps a factory's serial number to the instance, in
 * an open-addressing table that readers probe inside their read section
 * without a lock: slots are only ever added (serial 0 -> serial, published
 * with a release store) and a slot's value moves between an instance,
 * TOMB (none) and a tagged pointer to the in-flight creation record.
 * Growing copies the table and publishes the copy with rcu_assign_pointer;
 * the old one is freed after a grace period.
 *
 * Single flight.  The first thread to miss becomes the creator: it stores a
 * tagged pointer to its creation record (on its stack) in the slot and runs
 * the factory with no lock held.  Threads that find the record wait on its
 * futex word and take its answer - the instance or the same error, the
 * factory never reruns for them.  The creator does not return (its record
 * lives on its stack) until every waiter has copied the answer.
 *
 * Cycles.  Before waiting on a record, a thread follows the wait-for chain
 * under the context lock: the record's owner, the record that owner waits
 * on in this context, and so on.  Reaching itself means the wait could
 * never end (a factory asking for its own key, directly, through other
 * factories, or through another thread of the same context): -EDEADLK with
 * the chain of keys in ureg_last_error().  Every link of the chain is only
 * written under this context's lock, so the walk is exact.  Chains that
 * leave the context (a factory of context A waiting in context B) are not
 * followed.
 */
#include <jemalloc/jemalloc.h>
#include <limits.h>
#include <linux/futex.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/syscall.h>
#include <unistd.h>
#include "internal.h"

#define TOMB ((void *)1)
#define PENDING_TAG ((uintptr_t)2)

static inline bool is_instance(const void *v)
{
	return v && ((uintptr_t)v & 3) == 0;
}

/* ------------------------------------------------------------ the lock */

static inline void futex_wait(uint32_t *addr, uint32_t val)
{
	syscall(SYS_futex, addr, FUTEX_WAIT_PRIVATE, val, NULL, NULL, 0);
}

static inline void futex_wake(uint32_t *addr, int n)
{
	syscall(SYS_futex, addr, FUTEX_WAKE_PRIVATE, n, NULL, NULL, 0);
}

/* 0 free, 1 held, 2 held with (maybe) waiters */
static inline void lock_take(uint32_t *l)
{
	uint32_t c = 0;

	if (UREG_LIKELY(__atomic_compare_exchange_n(l, &c, 1, false, __ATOMIC_ACQUIRE,
						    __ATOMIC_RELAXED)))
		return;
	if (c != 2)
		c = __atomic_exchange_n(l, 2, __ATOMIC_ACQUIRE);
	while (c != 0) {
		futex_wait(l, 2);
		c = __atomic_exchange_n(l, 2, __ATOMIC_ACQUIRE);
	}
}

static inline void lock_drop(uint32_t *l)
{
	if (UREG_UNLIKELY(__atomic_exchange_n(l, 0, __ATOMIC_RELEASE) != 1))
		futex_wake(l, 1);
}

/* ------------------------------------------------------------ structures */

/*
 * The 16-byte block header: a doubly-linked list node whose pointers (to
 * 16-byte aligned headers) carry the block's jemalloc size class in their
 * low 4 bits each.  Every jemalloc usable size is 2^lg + k * 2^(lg-2),
 * k = 0..3 (checked for all sizes up to 64 MiB against nallocx()), so the
 * code lg * 4 + k fits in 8 bits; knowing the size lets free use
 * sdallocx(), jemalloc's fast path, and the accounting skip sallocx().
 * List heads (sentinels) have code 0.
 */
struct alloc_hdr {
	uintptr_t prev, next;
};
_Static_assert(sizeof(struct alloc_hdr) == 16, "header keeps 16-byte alignment");

#define HDR_TAG ((uintptr_t)15)

static inline struct alloc_hdr *hdr_next(const struct alloc_hdr *h)
{
	return (struct alloc_hdr *)(h->next & ~HDR_TAG);
}

static inline struct alloc_hdr *hdr_prev(const struct alloc_hdr *h)
{
	return (struct alloc_hdr *)(h->prev & ~HDR_TAG);
}

static inline void hdr_set_next(struct alloc_hdr *h, struct alloc_hdr *n)
{
	h->next = (uintptr_t)n | (h->next & HDR_TAG);
}

static inline void hdr_set_prev(struct alloc_hdr *h, struct alloc_hdr *p)
{
	h->prev = (uintptr_t)p | (h->prev & HDR_TAG);
}

static inline void hdr_init(struct alloc_hdr *h, size_t usable)
{
	unsigned lg = 63u - (unsigned)__builtin_clzl(usable);
	unsigned code = lg * 4 + (unsigned)((usable - ((size_t)1 << lg)) >> (lg - 2));

	h->next = code & HDR_TAG;
	h->prev = code >> 4;
}

static inline size_t hdr_size(const struct alloc_hdr *h)
{
	unsigned code = (unsigned)((h->next & HDR_TAG) | (h->prev & HDR_TAG) << 4);
	unsigned lg = code >> 2;

	return ((size_t)1 << lg) + ((size_t)(code & 3) << (lg - 2));
}

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

static inline void hdr_list_init(struct alloc_hdr *head)
{
	head->prev = head->next = (uintptr_t)head;
}

static inline bool hdr_list_empty(const struct alloc_hdr *head)
{
	return hdr_next(head) == head;
}

static inline void hdr_unlink(struct alloc_hdr *h)
{
	hdr_set_next(hdr_prev(h), hdr_next(h));
	hdr_set_prev(hdr_next(h), hdr_prev(h));
}

static inline void hdr_add_tail(struct alloc_hdr *head, struct alloc_hdr *h)
{
	struct alloc_hdr *last = hdr_prev(head);

	hdr_set_next(h, head);
	hdr_set_prev(h, last);
	hdr_set_next(last, h);
	hdr_set_prev(head, h);
}

/* Move every node of @from to the tail of @to; @from is left empty. */
static inline void hdr_splice_tail(struct alloc_hdr *to, struct alloc_hdr *from)
{
	if (hdr_list_empty(from))
		return;
	struct alloc_hdr *first = hdr_next(from), *last = hdr_prev(from);
	struct alloc_hdr *tail = hdr_prev(to);

	hdr_set_prev(first, tail);
	hdr_set_next(tail, first);
	hdr_set_next(last, to);
	hdr_set_prev(to, last);
	hdr_list_init(from);
}

struct cache_slot {
	uint64_t serial; /* 0: empty */
	void *obj;       /* instance, TOMB, or creation record | PENDING_TAG */
};

struct ctx_cache {
	struct rcu_head rcu;
	uint32_t mask;
	uint32_t used;
	struct cache_slot slots[];
};

struct ureg_instance {
	struct ureg_instance *prev, *next; /* creation order */
	void *obj;
	struct ureg_factory_box *fb;       /* keeps arg, anchor, destructor, reg */
	bool cached;
};

/*
 * Object pointer -> instance record, so ureg_instance_release is O(1):
 * open addressing with linear probing, at most half full, deletion by
 * backward shift.  Under the context lock; allocated with the first
 * instance, so idle contexts do not pay for it.
 */
struct ctx_instances {
	struct ureg_instance *oldest, *newest;
	size_t count;
	uint32_t mask, used;
	uint32_t reserved; /* creations in flight that hold a free slot */
	struct ureg_instance **slot;
};

#define CTX_NAME_INLINE 16               /* names up to 15 bytes: no extra room */

struct ureg_ctx {
	struct alloc_hdr allocs;          /* list head: first, so 16-byte aligned */
	uint32_t lock;                    /* everything but the name */
	uint16_t arena;                   /* jemalloc arena index (< 4096) */
	uint8_t dedicated : 1;
	uint8_t small : 1;                /* name fits CTX_NAME_INLINE: reusable */
	uint8_t live;                     /* 0: destroyed, parked for reuse */
	size_t live_bytes, peak_bytes, allocations, quota;
	uint64_t total_allocations;
	uint32_t waiting;                 /* threads waiting on a creation */
	struct ctx_cache *cache;          /* rcu pointer, NULL until first use */
	union {
		struct ctx_instances *inst; /* NULL until the first instance */
		struct ureg_ctx *spare_next; /* while parked on a thread */
	};
	struct cds_list_head all_node;    /* all_contexts */
	char name[];                      /* at least CTX_NAME_INLINE bytes */
};

/* List heads need free low bits: malloc gives 16-byte alignment to the
 * context, whose head comes first; creation frames align theirs. */
_Static_assert(offsetof(struct ureg_ctx, allocs) == 0, "list head first");

/*
 * One creation in progress on this thread: the rollback list, and for
 * CONTEXT scope the single-flight record other threads wait on.
 */
struct creation_wait;
struct creation {
	struct creation *parent;          /* this thread's enclosing creation */
	ureg_ctx *ctx;
	const char *key;
	_Alignas(16) struct alloc_hdr allocs; /* blocks made while it runs */
	uint64_t allocated;               /* how many (freed ones included) */
	size_t peak_before;
	/* single flight (CONTEXT scope), under ctx->lock */
	struct creation_wait *owner;      /* the creating thread */
	uint32_t done;                    /* futex word: 0 running, 1 done */
	uint32_t waiters;                 /* futex word: threads still reading */
	int rc;
	void *obj;
};

/* What a thread waits on, so others can follow the wait-for chain. */
struct creation_wait {
	ureg_ctx *ctx;                    /* written under that ctx's lock */
	struct creation *on;
};

static UREG_TLS struct creation *creating;       /* innermost frame */

static void record_free(struct ureg_instance *in);
static UREG_TLS struct creation_wait waiting;

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

	lock_take(&all_lock);
	for_each_ctx(ctx)
		lock_take(&ctx->lock);
}

void ureg__ctx_unlock_all(void)
{
	ureg_ctx *ctx;

	for_each_ctx(ctx)
		lock_drop(&ctx->lock);
	lock_drop(&all_lock);
}

/* In the child only this thread exists: nothing can wait, just clear. */
void ureg__ctx_unlock_all_child(void)
{
	ureg_ctx *ctx;

	for_each_ctx(ctx)
		__atomic_store_n(&ctx->lock, 0, __ATOMIC_RELAXED);
	__atomic_store_n(&all_lock, 0, __ATOMIC_RELAXED);
}

static inline int alloc_flags(const ureg_ctx *ctx)
{
	return ctx->dedicated ? MALLOCX_ARENA(ctx->arena) | MALLOCX_TCACHE_NONE :
		MALLOCX_ARENA(ctx->arena);
}

/* sdallocx flags: 0 (the fast path) unless the arena bypasses caches */
static inline int free_flags(const ureg_ctx *ctx)
{
	return ctx->dedicated ? MALLOCX_TCACHE_NONE : 0;
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

static void instance_destroy(ureg_ctx *ctx, struct ureg_instance *in)
{
	struct ureg_factory_box *fb = in->fb;
	void (*destroy)(void *, ureg_ctx *) = fb->f.instance_destroy ?
		fb->f.instance_destroy : fb->type->instance_destroy;

	ureg__event_instance(fb->reg, UREG_EV_INSTANCE_DESTROYED, fb->key, ctx, in->obj);
	if (destroy)
		destroy(in->obj, ctx);
	ureg__fbox_put(fb);
	record_free(in);
}

/* Under ctx->lock: out of the creation-order list (not the map). */
static void instance_unlink(ureg_ctx *ctx, struct ureg_instance *in)
{
	struct ctx_instances *ci = ctx->inst;

	if (in->prev)
		in->prev->next = in->next;
	else
		ci->oldest = in->next;
	if (in->next)
		in->next->prev = in->prev;
	else
		ci->newest = in->prev;
	ci->count--;
}

void ureg_ctx_destroy(ureg_ctx *ctx)
{
	struct ureg_instance *in;

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
		lock_take(&ctx->lock);
		in = ctx->inst->newest;
		if (in)
			instance_unlink(ctx, in); /* the map is dropped whole below */
		lock_drop(&ctx->lock);
		if (!in)
			break;
		instance_destroy(ctx, in);
	}
	if (ctx->dedicated) {
		ureg__arena_dedicated_release(ctx->arena);
	} else {
		struct alloc_hdr *h = hdr_next(&ctx->allocs), *next;
		for (; h != &ctx->allocs; h = next) {
			next = hdr_next(h);
			sdallocx(h, hdr_size(h), 0);
		}
	}
	/* no other thread may use ctx now (contract), so no reader can be
	 * probing the cache: free it at once */
	ureg__free(ctx->cache);
	if (ctx->inst) {
		ureg__free(ctx->inst->slot);
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
	lock_take(&ctx->lock);
	ctx->quota = bytes;
	lock_drop(&ctx->lock);
	return 0;
}

int ureg_ctx_stats(ureg_ctx *ctx, struct ureg_ctx_stats *st)
{
	if (!ctx || !st)
		return ureg__err(-EINVAL, "ctx_stats: NULL context or stats");
	lock_take(&ctx->lock);
	st->live_bytes = ctx->live_bytes;
	st->peak_bytes = ctx->peak_bytes;
	st->allocations = ctx->allocations;
	st->total_allocations = ctx->total_allocations;
	st->instances = ctx->inst ? ctx->inst->count : 0;
	st->quota = ctx->quota;
	st->arena = ctx->arena;
	st->dedicated = ctx->dedicated;
	st->waiting = ctx->waiting;
	lock_drop(&ctx->lock);
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

	for (c = creating; c; c = c->parent)
		if (c->ctx == ctx)
			return c;
	return NULL;
}

static void *ctx_alloc(ureg_ctx *ctx, size_t size, int zero)
{
	int flags = alloc_flags(ctx) | zero;
	struct creation *frame;
	struct alloc_hdr *h;
	size_t total, usable;

	if (size == 0 || size > SIZE_MAX / 2) {
		errno = EINVAL;
		return NULL;
	}
	total = size + sizeof(*h);
	usable = usable_size(total, flags);
	if (!usable) {
		errno = ENOMEM;
		return NULL;
	}
	frame = creating ? frame_of(ctx) : NULL;
	lock_take(&ctx->lock);
	if (ctx->quota && ctx->live_bytes + usable > ctx->quota) {
		lock_drop(&ctx->lock);
		ureg__err(-EDQUOT, "context '%s': %zu more bytes would pass its quota of %zu",
			  ctx->name, usable, ctx->quota);
		errno = EDQUOT;
		return NULL;
	}
	h = ureg__fault_hit() ? NULL : mallocx(total, flags);
	if (!h) {
		lock_drop(&ctx->lock);
		errno = ENOMEM;
		return NULL;
	}
	hdr_init(h, usable);
	if (frame) {
		hdr_add_tail(&frame->allocs, h);
		frame->allocated++;
	} else {
		hdr_add_tail(&ctx->allocs, h);
	}
	ctx->live_bytes += usable;
	if (ctx->live_bytes > ctx->peak_bytes)
		ctx->peak_bytes = ctx->live_bytes;
	ctx->allocations++;
	ctx->total_allocations++;
	lock_drop(&ctx->lock);
	return h + 1;
}

void *ureg_ctx_alloc(ureg_ctx *ctx, size_t size)
{
	if (!ctx) {
		errno = EINVAL;
		return NULL;
	}
	return ctx_alloc(ctx, size, 0);
}

void *ureg_ctx_calloc(ureg_ctx *ctx, size_t n, size_t size)
{
	if (!ctx || (size && n > SIZE_MAX / size)) {
		errno = EINVAL;
		return NULL;
	}
	return ctx_alloc(ctx, n * size, MALLOCX_ZERO);
}

char *ureg_ctx_strdup(ureg_ctx *ctx, const char *s)
{
	if (!ctx || !s) {
		errno = EINVAL;
		return NULL;
	}
	size_t n = strlen(s) + 1;
	char *d = ctx_alloc(ctx, n, 0);
	if (d)
		memcpy(d, s, n);
	return d;
}

void ureg_ctx_free(ureg_ctx *ctx, void *p)
{
	struct alloc_hdr *h;

	if (!ctx || !p)
		return;
	h = (struct alloc_hdr *)p - 1;
	lock_take(&ctx->lock);
	/* the context's list or a creation frame's: unlinking needs neither */
	hdr_unlink(h);
	size_t usable = hdr_size(h);
	ctx->live_bytes -= usable;
	ctx->allocations--;
	lock_drop(&ctx->lock);
	sdallocx(h, usable, free_flags(ctx));
}

/* ------------------------------------------------------------ creations */

/* Under ctx->lock. */
static void frame_open_locked(struct creation *c, ureg_ctx *ctx, const char *key)
{
	c->parent = creating;
	c->ctx = ctx;
	c->key = key;
	hdr_list_init(&c->allocs);
	c->allocated = 0;
	c->peak_before = ctx->peak_bytes;
}

/* Under ctx->lock.  Success: the frame's blocks become the context's. */
static void frame_keep_locked(struct creation *c)
{
	hdr_splice_tail(&c->ctx->allocs, &c->allocs);
}

/* Under ctx->lock.  Failure: free what the creation allocated, restore
 * the counters. */
static void frame_rollback_locked(struct creation *c)
{
	ureg_ctx *ctx = c->ctx;
	struct alloc_hdr *h, *next;

	for (h = hdr_next(&c->allocs); h != &c->allocs; h = next) {
		size_t usable = hdr_size(h);

		next = hdr_next(h);
		ctx->live_bytes -= usable;
		ctx->allocations--;
		sdallocx(h, usable, free_flags(ctx));
	}
	ctx->total_allocations -= c->allocated;
	/* the failed creation's own high-water mark does not count */
	if (ctx->peak_bytes > c->peak_before)
		ctx->peak_bytes = ctx->live_bytes > c->peak_before ?
			ctx->live_bytes : c->peak_before;
}

/*
 * Instance records are library bookkeeping made and dropped at the rate of
 * factory calls: they come from the thread's shared-pool arena through
 * jemalloc's thread cache (whose bins hold far more than glibc's 7 per size
 * when a thread creates and releases instances in batches).
 */
static struct ureg_instance *record_new(void)
{
	unsigned arena;

	if (UREG_LIKELY(ureg__home_arena))
		arena = ureg__home_arena - 1;
	else if (ureg__arena_shared(&arena))
		return NULL;
	return ureg__fault_hit() ? NULL :
		mallocx(sizeof(struct ureg_instance), MALLOCX_ARENA(arena));
}

static void record_free(struct ureg_instance *in)
{
	sdallocx(in, sizeof(*in), 0);
}

static struct ctx_instances *instances_of(ureg_ctx *ctx)
{
	if (!ctx->inst)
		ctx->inst = ureg__calloc(1, sizeof(*ctx->inst));
	return ctx->inst;
}

static inline uint32_t ptr_hash(const void *p)
{
	return (uint32_t)(((uintptr_t)p >> 4) * 0x9e3779b97f4a7c15ull >> 32);
}

/*
 * Under ctx->lock: hold room for one more record, taken before a factory
 * runs so that the insert after it cannot fail; -ENOMEM leaves the map as
 * it was.
 */
static int map_reserve(ureg_ctx *ctx)
{
	struct ctx_instances *m = instances_of(ctx);
	struct ureg_instance **ns;
	uint32_t n;

	if (!m)
		return -ENOMEM;
	if (m->slot && (m->used + m->reserved + 1) * 2 <= m->mask + 1) {
		m->reserved++;
		return 0;
	}
	n = m->slot ? (m->mask + 1) * 2 : 8;
	if (!(ns = ureg__calloc(n, sizeof(*ns))))
		return -ENOMEM;
	for (uint32_t i = 0; m->slot && i <= m->mask; i++) {
		if (!m->slot[i])
			continue;
		uint32_t j = ptr_hash(m->slot[i]->obj) & (n - 1);
		while (ns[j])
			j = (j + 1) & (n - 1);
		ns[j] = m->slot[i];
	}
	ureg__free(m->slot);
	m->slot = ns;
	m->mask = n - 1;
	m->reserved++;
	return 0;
}

static void map_insert(struct ctx_instances *m, struct ureg_instance *in)
{
	uint32_t i = ptr_hash(in->obj) & m->mask;

	while (m->slot[i])
		i = (i + 1) & m->mask;
	m->slot[i] = in;
	m->used++;
	m->reserved--;
}

/* Remove and return the record of @obj, or NULL. */
static struct ureg_instance *map_take(struct ctx_instances *m, const void *obj)
{
	struct ureg_instance *in;
	uint32_t i, j;

	if (!m || !m->slot)
		return NULL;
	for (i = ptr_hash(obj) & m->mask; m->slot[i]; i = (i + 1) & m->mask)
		if (m->slot[i]->obj == obj)
			break;
	if (!(in = m->slot[i]))
		return NULL;
	/* backward-shift the rest of the cluster into the hole */
	for (j = (i + 1) & m->mask; m->slot[j]; j = (j + 1) & m->mask) {
		uint32_t home = ptr_hash(m->slot[j]->obj) & m->mask;
		/* move j to i when its home is not cyclically in (i, j] */
		if (((j - home) & m->mask) >= ((j - i) & m->mask)) {
			m->slot[i] = m->slot[j];
			i = j;
		}
	}
	m->slot[i] = NULL;
	m->used--;
	return in;
}

static void instance_destroy_unrecorded(struct ureg_factory_box *fb,
				       void *obj, ureg_ctx *ctx)
{
	void (*destroy)(void *, ureg_ctx *) = fb->f.instance_destroy ?
		fb->f.instance_destroy : fb->type->instance_destroy;
	if (destroy)
		destroy(obj, ctx);
}

/*
 * Run @fb's factory in @ctx inside the creation frame @c and record the
 * instance (creation order list, object map).  @cached marks a
 * CONTEXT-scope instance.  No lock is held while the factory and the
 * on_create hook run.  On failure everything the creation allocated in
 * @ctx is freed again.
 */
static int create_in_frame(ureg_ctx *ctx, ureg_registry *reg,
			   struct ureg_factory_box *fb, bool cached,
			   struct creation *c, void **out)
{
	struct ureg_instance *in;
	void *obj = NULL;
	int rc;

	if (!(in = record_new()))
		return ureg__err(-ENOMEM, "registry '%s': out of memory creating '%s'",
				 reg->name, fb->key);
	lock_take(&ctx->lock);
	rc = map_reserve(ctx);
	if (rc == 0)
		frame_open_locked(c, ctx, fb->key);
	lock_drop(&ctx->lock);
	if (rc) {
		record_free(in);
		return ureg__err(-ENOMEM, "registry '%s': out of memory creating '%s'",
				 reg->name, fb->key);
	}
	creating = c;
	ureg__clear_err();
	rc = fb->f.create(ctx, fb->f.arg, &obj);
	if (rc == 0 && !obj)
		rc = ureg__err(-EINVAL, "registry '%s': factory '%s' returned success but no instance",
			       reg->name, fb->key);
	else if (rc > 0)
		rc = -rc; /* a factory that returned a positive errno */
	if (rc == 0 && fb->type->on_create) {
		rc = fb->type->on_create(reg, fb->key, obj, ctx,
					 fb->type->on_create_arg);
		if (rc) {
			instance_destroy_unrecorded(fb, obj, ctx);
			if (rc > 0)
				rc = -rc;
		}
	}
	creating = c->parent;
	if (rc) {
		lock_take(&ctx->lock);
		frame_rollback_locked(c);
		ctx->inst->reserved--;
		lock_drop(&ctx->lock);
		record_free(in);
		if (!*ureg_last_error())
			ureg__err(rc, "registry '%s': factory '%s' failed: %s",
				  reg->name, fb->key, ureg_strerror(rc));
		return rc;
	}
	in->obj = obj;
	in->fb = fb;
	in->cached = cached;
	in->next = NULL;
	lock_take(&ctx->lock);
	frame_keep_locked(c);
	struct ctx_instances *ci = ctx->inst;
	map_insert(ci, in);
	in->prev = ci->newest;
	if (ci->newest)
		ci->newest->next = in;
	else
		ci->oldest = in;
	ci->newest = in;
	ci->count++;
	lock_drop(&ctx->lock);
	ureg__fbox_get(fb);
	ureg__event_instance(reg, UREG_EV_INSTANCE_CREATED, fb->key, ctx, obj);
	*out = obj;
	return 0;
}

int ureg__ctx_create(ureg_ctx *ctx, ureg_registry *reg,
		     struct ureg_factory_box *fb, bool cached, void **out)
{
	struct creation c;

	c.owner = NULL;
	return create_in_frame(ctx, reg, fb, cached, &c, out);
}

static inline uint32_t serial_hash(uint64_t serial)
{
	serial *= 0x9e3779b97f4a7c15ull; /* Fibonacci hashing */
	return (uint32_t)(serial >> 32);
}

/* Under ctx->lock, or in a read section for a lock-free probe. */
static struct cache_slot *cache_find(struct ctx_cache *c, uint64_t serial)
{
	if (!c)
		return NULL;
	for (uint32_t i = serial_hash(serial) & c->mask;; i = (i + 1) & c->mask) {
		uint64_t s = __atomic_load_n(&c->slots[i].serial, __ATOMIC_ACQUIRE);
		if (s == serial)
			return &c->slots[i];
		if (s == 0)
			return NULL;
	}
}

static void cache_free_rcu(struct rcu_head *head)
{
	ureg__free(caa_container_of(head, struct ctx_cache, rcu));
}

/* Under ctx->lock: a slot for @serial (absent before), value TOMB. */
static struct cache_slot *cache_insert(ureg_ctx *ctx, uint64_t serial)
{
	struct ctx_cache *c = ctx->cache, *nc;
	struct cache_slot *s;

	if (!c || (c->used + 1) * 2 > c->mask + 1) {
		uint32_t n = c ? (c->mask + 1) * 2 : 8;
		nc = ureg__calloc(1, sizeof(*nc) + n * sizeof(nc->slots[0]));
		if (!nc)
			return NULL;
		nc->mask = n - 1;
		for (uint32_t i = 0; c && i <= c->mask; i++) {
			if (!c->slots[i].serial)
				continue;
			uint32_t j = serial_hash(c->slots[i].serial) & nc->mask;
			while (nc->slots[j].serial)
				j = (j + 1) & nc->mask;
			nc->slots[j] = c->slots[i];
			nc->used++;
		}
		rcu_assign_pointer(ctx->cache, nc);
		if (c)
			ureg__call_rcu(&c->rcu, cache_free_rcu);
		c = nc;
	}
	uint32_t i = serial_hash(serial) & c->mask;
	while (c->slots[i].serial)
		i = (i + 1) & c->mask;
	s = &c->slots[i];
	s->obj = TOMB;
	__atomic_store_n(&s->serial, serial, __ATOMIC_RELEASE);
	c->used++;
	return s;
}

/*
 * Under ctx->lock: would waiting on @target close a wait-for loop back to
 * this thread?  Then describe it ("a -> b -> a") and return true.
 */
static bool would_deadlock(ureg_ctx *ctx, struct creation *target,
			   char *chain, size_t len)
{
	struct creation *r = target;
	size_t off = 0;
	int guard = 0;

	chain[0] = '\0';
	while (r && guard++ < 64) {
		off += (size_t)snprintf(chain + off, off < len ? len - off : 0, "%s -> ",
					r->key);
		if (r->owner == &waiting) {
			/* close the loop with what this thread is creating
			 * inside @r, innermost last */
			struct creation *mine[16];
			int n = 0;
			for (struct creation *f = creating; f && f != r && n < 16; f = f->parent)
				if (f->ctx == ctx)
					mine[n++] = f;
			while (n-- > 0)
				off += (size_t)snprintf(chain + off, off < len ? len - off : 0,
							"%s -> ", mine[n]->key);
			snprintf(chain + off, off < len ? len - off : 0, "%s", target->key);
			return true;
		}
		/* follow the owner only while it waits in this context: those
		 * links are written under ctx->lock, which we hold */
		struct creation_wait *w = r->owner;
		if (!w || __atomic_load_n(&w->ctx, __ATOMIC_RELAXED) != ctx)
			return false;
		r = w->on;
	}
	return false;
}

int ureg__ctx_get_instance(ureg_ctx *ctx, ureg_registry *reg,
			   struct ureg_entry *e, void **out)
{
	struct ureg_factory_box *fb = e->fbox;
	struct cache_slot *s;
	struct creation c, *rec;
	void *obj;
	int rc;

	if (fb->f.scope == UREG_SCOPE_TRANSIENT)
		return ureg__ctx_create(ctx, reg, fb, false, out);

	/* fast path: lock-free probe, no writes */
	s = cache_find(rcu_dereference(ctx->cache), fb->serial);
	if (UREG_LIKELY(s)) {
		obj = __atomic_load_n(&s->obj, __ATOMIC_ACQUIRE);
		if (UREG_LIKELY(is_instance(obj))) {
			*out = obj;
			return 0;
		}
	}

	/* slow path: single-flight creation */
	lock_take(&ctx->lock);
	s = cache_find(ctx->cache, fb->serial);
	obj = s ? s->obj : TOMB;
	if (is_instance(obj)) {
		lock_drop(&ctx->lock);
		*out = obj;
		return 0;
	}
	if (obj != TOMB) {
		/* another creation is in flight: take its answer */
		char chain[256];

		rec = (struct creation *)((uintptr_t)obj & ~PENDING_TAG);
		if (would_deadlock(ctx, rec, chain, sizeof(chain))) {
			lock_drop(&ctx->lock);
			return ureg__err(-EDEADLK, "registry '%s': creation cycle in context '%s': %s",
					 reg->name, ctx->name, chain);
		}
		__atomic_add_fetch(&rec->waiters, 1, __ATOMIC_RELAXED);
		ctx->waiting++;
		__atomic_store_n(&waiting.ctx, ctx, __ATOMIC_RELAXED);
		waiting.on = rec;
		lock_drop(&ctx->lock);
		while (!__atomic_load_n(&rec->done, __ATOMIC_ACQUIRE))
			futex_wait(&rec->done, 0);
		lock_take(&ctx->lock);
		__atomic_store_n(&waiting.ctx, NULL, __ATOMIC_RELAXED);
		waiting.on = NULL;
		ctx->waiting--;
		rc = rec->rc;
		obj = rec->obj;
		/* the record lives on its creator's stack: let it go once the
		 * last waiter has read it */
		if (__atomic_sub_fetch(&rec->waiters, 1, __ATOMIC_RELEASE) == 0)
			futex_wake(&rec->waiters, 1);
		lock_drop(&ctx->lock);
		if (rc)
			return ureg__err(rc, "registry '%s': creating '%s' in context '%s' failed (on another thread): %s",
					 reg->name, fb->key, ctx->name, ureg_strerror(rc));
		*out = obj;
		return 0;
	}
	if (!s && !(s = cache_insert(ctx, fb->serial))) {
		lock_drop(&ctx->lock);
		return ureg__err(-ENOMEM, "context '%s': out of memory", ctx->name);
	}
	c.owner = &waiting;
	c.key = fb->key;
	c.done = 0;
	c.waiters = 0;
	__atomic_store_n(&s->obj, (void *)((uintptr_t)&c | PENDING_TAG), __ATOMIC_RELAXED);
	lock_drop(&ctx->lock);

	rc = create_in_frame(ctx, reg, fb, true, &c, &obj);

	lock_take(&ctx->lock);
	s = cache_find(ctx->cache, fb->serial); /* the table may have grown */
	__atomic_store_n(&s->obj, rc == 0 ? obj : TOMB, __ATOMIC_RELEASE);
	c.rc = rc;
	c.obj = obj;
	__atomic_store_n(&c.done, 1, __ATOMIC_RELEASE);
	lock_drop(&ctx->lock);
	futex_wake(&c.done, INT_MAX);
	for (;;) {
		uint32_t w = __atomic_load_n(&c.waiters, __ATOMIC_ACQUIRE);
		if (!w)
			break;
		futex_wait(&c.waiters, w);
	}
	if (rc == 0)
		*out = obj;
	return rc;
}

int ureg_instance_release(ureg_ctx *ctx, void *instance)
{
	struct ureg_instance *in;

	if (!ctx || !instance)
		return ureg__err(-EINVAL, "instance_release: NULL context or instance");
	ureg__rcu_ensure();
	lock_take(&ctx->lock);
	in = map_take(ctx->inst, instance);
	if (!in) {
		lock_drop(&ctx->lock);
		return ureg__err(-ENOENT, "instance_release: not an instance of context '%s'",
				 ctx->name);
	}
	instance_unlink(ctx, in);
	if (in->cached) {
		struct cache_slot *s = cache_find(ctx->cache, in->fb->serial);
		if (s && s->obj == instance)
			__atomic_store_n(&s->obj, TOMB, __ATOMIC_RELEASE);
	}
	lock_drop(&ctx->lock);
	instance_destroy(ctx, in);
	return 0;
}

/*
 * ureg_drain's holder report (registry.c): the live instances of @fb in
 * @ctx.  Called from ureg_ctx_foreach: the list lock, then this context's
 * lock (the order fork.c states).  Walks the context's instances: only
 * for a report, never on a lookup or creation path.
 */
size_t ureg__ctx_instances_of(ureg_ctx *ctx, const struct ureg_factory_box *fb)
{
	size_t n = 0;

	lock_take(&ctx->lock);
	if (ctx->inst)
		for (struct ureg_instance *in = ctx->inst->oldest; in; in = in->next)
			n += in->fb == fb;
	lock_drop(&ctx->lock);
	return n;
}
