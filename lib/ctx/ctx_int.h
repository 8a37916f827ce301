/* SPDX-License-Identifier: MIT */
/*
 * Private to lib/ctx (ctx.c, ctx_create.c, ctx_uses.c): the context's structures,
 * its futex lock and the block header.  Nothing here is API.
 */
#ifndef UREG_CTX_INT_H
#define UREG_CTX_INT_H

#include <jemalloc/jemalloc.h>
#include <limits.h>
#include <linux/futex.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/syscall.h>
#include <unistd.h>
#include "../core/internal.h"
#include "insttab.h"
#include "ptrmap.h"

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
 * A doubly-linked list node, the first 16 bytes of every block (and the
 * list heads, sentinels, of a context and of a creation frame).  Plain
 * pointers: the block's size is a word of its own (struct ctx_blk), so
 * linking and unlinking are four plain stores, with no tag bits to mask.
 */
struct alloc_hdr {
	struct alloc_hdr *prev, *next;
};
_Static_assert(sizeof(struct alloc_hdr) == 16, "header keeps 16-byte alignment");

static inline struct alloc_hdr *hdr_next(const struct alloc_hdr *h)
{
	return h->next;
}

static inline void hdr_list_init(struct alloc_hdr *head)
{
	head->prev = head->next = head;
}

static inline bool hdr_list_empty(const struct alloc_hdr *head)
{
	return head->next == head;
}

static inline void hdr_unlink(struct alloc_hdr *h)
{
	h->prev->next = h->next;
	h->next->prev = h->prev;
}

static inline void hdr_add_tail(struct alloc_hdr *head, struct alloc_hdr *h)
{
	struct alloc_hdr *last = head->prev;

	h->next = head;
	h->prev = last;
	last->next = h;
	head->prev = h;
}

/* Move every node of @from to the tail of @to; @from is left empty. */
static inline void hdr_splice_tail(struct alloc_hdr *to, struct alloc_hdr *from)
{
	if (hdr_list_empty(from))
		return;
	struct alloc_hdr *first = from->next, *last = from->prev;
	struct alloc_hdr *tail = to->prev;

	first->prev = tail;
	tail->next = first;
	last->next = to;
	to->prev = last;
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

/* A serial's home slot: its low bits, which below UREG__SERIAL_HBITS are
 * its key's hash (internal.h), so a get can compute it before it has
 * found the entry. */
static inline uint32_t cache_home(uint64_t serial, uint32_t mask)
{
	return (uint32_t)serial & mask;
}

/*
 * A block as the context hands it out: the list link, the per-entry record
 * the block's bytes count for (NULL: the context's own, unattributed), and
 * the block's usable size (its jemalloc size class, header included: free
 * and destroy hand it to sdallocx(), jemalloc's sized fast path, and the
 * accounting never asks sallocx()), then the caller's memory.  32 bytes,
 * so the memory stays 16-byte aligned.
 */
struct ctx_blk {
	struct alloc_hdr link;
	struct ctx_use *use;
	size_t usable;
};
_Static_assert(sizeof(struct ctx_blk) == 32, "block header keeps 16-byte alignment");

/* The usable size of the block whose link is @h. */
static inline size_t hdr_size(const struct alloc_hdr *h)
{
	return ((const struct ctx_blk *)(const void *)h)->usable;
}

static inline struct ctx_blk *blk_of(void *p)
{
	return (struct ctx_blk *)p - 1;
}

/*
 * Per registry entry (a registry and a key, whatever factory registrations
 * - reloads, ranked providers - made the instances), what the context
 * holds for it: live instances, and the live blocks the factories
 * allocated while creating them plus those allocated later with
 * ureg_ctx_alloc_for() on an instance's behalf.  Made at the entry's first
 * successful creation in the context, kept until the context is destroyed
 * (so the peak survives the entry's instances), in creation order.  Found
 * by the serial of the registration it was last used for through the
 * book's by_serial map (the creation path), else by registry and key
 * name, through by_name or, in a context of a few records, the list (a
 * registration new to this context: the record is re-bound to its
 * serial).  So a context that outlives any number of reloads keeps one
 * record and one map slot of each per entry, not per registration.
 */
struct ctx_use {
	/* first: what every creation and release writes (the record comes
	 * from malloc, 16-byte aligned: these 32 bytes share a line with
	 * each other in 3 of 4 placements, where after a leading pointer
	 * they did in 2 of 4) */
	size_t instances, bytes, blocks, peak;
	struct ctx_use *next;
	const char *key;                 /* in names[], after the registry's */
	uintptr_t serial;                /* its key in by_serial (use_key) */
	char names[];                    /* registry name, NUL, key, NUL */
};

/*
 * A context's bookkeeping, allocated with its first instance so idle
 * contexts do not pay for it: the instances (by value, in creation order,
 * found by object: insttab.h), serial -> per-entry use.
 */
struct ctx_book {
	struct insttab inst;
	struct ptrmap by_serial;          /* -> struct ctx_use, one serial each */
	struct ptrmap by_name;            /* use_name_hash() -> struct ctx_use;
					   * built past USE_SCAN_MAX records */
	struct ctx_use *uses, **uses_tail;
	uint32_t reserved;                /* creations running that hold room */
	uint32_t reserved_uses;           /* ... and a use record of their own */
};

/* What destroying an instance needs once its record is gone. */
struct inst_gone {
	void *obj;
	struct ureg_factory_box *fb;
};

#define CTX_NAME_INLINE 16               /* names up to 15 bytes: no extra room */

struct ureg_ctx {
	struct alloc_hdr allocs;          /* list head (the blocks) */
	uint32_t lock;                    /* everything but the name */
	uint16_t arena;                   /* jemalloc arena index (< 4096) */
	uint8_t dedicated : 1;
	uint8_t small : 1;                /* name fits CTX_NAME_INLINE: reusable */
	uint8_t live;                     /* 0: destroyed, parked for reuse */
	size_t live_bytes, peak_bytes, allocations, quota;
	uint64_t total_allocations;
	uint16_t waiting;                 /* threads waiting on a creation */
	uint8_t bias_hist;                /* entries by others, owner moves */
	uint32_t bias;                    /* owner's seat << 2 | BIAS_ON/PAUSED/OFF */
	struct ctx_cache *cache;          /* rcu pointer, NULL until first use */
	union {
		struct ctx_book *inst;      /* NULL until the first instance */
		struct ureg_ctx *spare_next; /* while parked on a thread */
	};
	struct cds_list_head all_node;    /* all_contexts */
	char name[];                      /* at least CTX_NAME_INLINE bytes */
};

/*
 * One creation in progress on this thread: the rollback list, and for
 * CONTEXT scope the single-flight record other threads wait on.
 */
struct creation_wait;
struct creation {
	struct creation *parent;          /* this thread's enclosing creation */
	ureg_ctx *ctx;
	const char *key;
	struct alloc_hdr allocs;          /* blocks made while it runs */
	uint64_t allocated;               /* how many (freed ones included) */
	struct ctx_use *use;              /* the entry's, if it existed */
	struct ctx_use *new_use;          /* else made, published on success */
	size_t peak_before;               /* at its first allocation */
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

/*
 * The context lock, biased to its owner.
 *
 * Nearly every context is used by one thread at a time (a user's request
 * handler), and a create + release took the context lock four times: with
 * two atomic read-modify-writes each (~10 ns a pair on this machine) that
 * was a third of a factory call.  So one thread, the owner, enters with
 * plain stores - its seat's inside = the context, a compiler barrier, then
 * check that the bias is on and it is still the owner - and leaves with a
 * release store (inside = NULL).
 * Every other thread takes the futex lock and, holding it, pauses the bias
 * (state BIAS_PAUSED), runs sys_membarrier(PRIVATE_EXPEDITED) - a full
 * barrier on every running thread of the process, which pairs with the
 * owner's compiler barrier the way liburcu's memb flavor pairs its readers
 * with synchronize_rcu - and waits until the owner's seat is not inside
 * the context.  Either the owner saw the pause (and queues on the futex
 * like anyone), or the other thread sees it inside and waits for it to
 * leave.  Invariant: whoever holds the futex lock is the owner, or has
 * paused the bias.
 *
 * Seats.  Each thread says "I am inside context X" in a seat of its own
 * (struct ctx_seat), which only it writes; the owner of a context is a
 * seat, named by its index in the bias word.  A single per-context "owner
 * inside" flag is not enough: a former owner that read the bias just
 * before its ownership moved may store the flag late - after the new
 * owner entered - and then clear it on seeing the move, so that a pausing
 * thread would find the flag clear with the new owner inside (found by
 * reading; the window is one instruction of a preempted thread).  With
 * seats such a late store lands in the former owner's own seat, which
 * nobody waits on once the ownership has moved (it moves only after the
 * waiting), and the unlock tells a biased entry from a futex one by its
 * own seat.  Seats live in chunks that are never freed: a thread's seat
 * goes back to a free list when it exits, and the next thread that takes
 * it takes over the ownerships it carries - a pausing thread waits on the
 * seat, whoever sits in it, and a seat has one thread at a time.
 *
 * bias: the owner's seat index (0: none) << 2 | the state, in one word,
 * so that the owner's entry compares it once with its seat's key (index
 * << 2 | BIAS_ON).  bias_hist (under the futex lock): bits 0-3 entries by
 * others since the last change of owner, 4-5 changes of owner.
 */
#define BIAS_ON 1u
#define BIAS_PAUSED 2u
#define BIAS_OFF 3u
#define BIAS_STATE 3u
#define SEAT_CHUNK 256u           /* seats per chunk (16 KiB) */
#define SEAT_CHUNKS 256u          /* at most 65,535 seats: threads alive at once */

struct ctx_seat {
	/* a line of its own: each lock and unlock writes it */
	_Alignas(64) ureg_ctx *inside; /* the context its thread holds biased,
					* or is trying to; written only by
					* that thread */
	uint32_t key;           /* its index (1..) << 2 | BIAS_ON, for good */
	struct ctx_seat *next;  /* on the free list */
};

/* the thread's seat, NULL until its first context (and for a thread that
 * cannot own: no membarrier, every seat taken, no memory) */
extern UREG_TLS struct ctx_seat *ureg__ctx_seat;
struct ctx_seat *ureg__ctx_seat_slow(void);
struct ctx_seat *ureg__ctx_seat_at(uint32_t index);
void ureg__ctx_lock_slow(ureg_ctx *ctx);
/* bias.c: registers membarrier (once, before the first context) */
void ureg__ctx_bias_init(void);
/* a membarrier of the process (registered: cannot fail) */
void ureg__ctx_membarrier(void);
/* fork: the seats' lock, a leaf (ureg__ctx_lock_all takes it last) */
void ureg__ctx_seats_lock(void);
void ureg__ctx_seats_unlock(bool child);

static inline struct ctx_seat *ctx_seat(void)
{
	struct ctx_seat *s = ureg__ctx_seat;

	return UREG_LIKELY(s) ? s : ureg__ctx_seat_slow();
}

static inline void ctx_lock(ureg_ctx *ctx)
{
	struct ctx_seat *me = ureg__ctx_seat;

	/* no check of the bias before the store: the seat is this thread's
	 * own, so a thread that turns out not to be the owner has only
	 * written a line nobody waits on */
	if (UREG_LIKELY(me != NULL)) {
		__atomic_store_n(&me->inside, ctx, __ATOMIC_RELAXED);
		__atomic_signal_fence(__ATOMIC_SEQ_CST); /* membarrier's pair */
		if (UREG_LIKELY(__atomic_load_n(&ctx->bias, __ATOMIC_ACQUIRE) == me->key))
			return;
		__atomic_store_n(&me->inside, NULL, __ATOMIC_RELEASE);
	}
	ureg__ctx_lock_slow(ctx);
}

static inline void ctx_unlock(ureg_ctx *ctx)
{
	struct ctx_seat *me = ureg__ctx_seat;
	uint32_t r;

	/* entered on the biased path?  Only this thread writes its seat, and
	 * a failed fast entry clears it before taking the futex lock. */
	if (me && __atomic_load_n(&me->inside, __ATOMIC_RELAXED) == ctx) {
		__atomic_store_n(&me->inside, NULL, __ATOMIC_RELEASE);
		return;
	}
	r = __atomic_load_n(&ctx->bias, __ATOMIC_RELAXED);
	if ((r & BIAS_STATE) == BIAS_PAUSED) /* we paused it: resume */
		__atomic_store_n(&ctx->bias, (r & ~BIAS_STATE) | BIAS_ON, __ATOMIC_RELEASE);
	lock_drop(&ctx->lock);
}

/* ------------------------------------------------- the block cache */

/*
 * The thread's cache of freed shared-context blocks (blkcache.c has the
 * why and the bounds): per size class a free list, for usable sizes (the
 * 32-byte block header included) up to BC_MAX_USABLE.
 */
#define BC_MAX_USABLE 512
#define BC_NCLASSES 16
#define BC_BIN_BYTES ((size_t)128 << 10)
#define BC_THREAD_BYTES ((size_t)256 << 10)
#define BC_OFF ((struct bc_thread *)1) /* exiting, or no cache possible */

struct bc_block {
	struct bc_block *next;
};

struct bc_thread {
	struct {
		struct bc_block *head;
		size_t n;
	} bin[BC_NCLASSES];
	size_t bytes;
};

extern UREG_TLS struct bc_thread *ureg__bc;
struct bc_thread *ureg__bc_init(void);

/* jemalloc's classes with a 16-byte quantum: 16..128 by 16, then four
 * per doubling (160 ... 512) */
static inline unsigned bc_class(size_t usable)
{
	if (usable <= 128)
		return (unsigned)(usable >> 4) - 1;
	unsigned lg = 63u - (unsigned)__builtin_clzl(usable - 1);
	return 8 + (lg - 7) * 4 + (unsigned)(((usable - 1) >> (lg - 2)) & 3);
}

static inline size_t bc_class_size(unsigned c)
{
	if (c < 8)
		return ((size_t)c + 1) << 4;
	unsigned lg = 7 + (c - 8) / 4;
	return ((size_t)1 << lg) + ((size_t)((c - 8) % 4 + 1) << (lg - 2));
}

/* A cached block of @usable bytes, or NULL. */
static inline void *bc_pop(size_t usable)
{
	struct bc_thread *t = ureg__bc;
	struct bc_block *b;
	unsigned c;

	if (usable > BC_MAX_USABLE || t == BC_OFF)
		return NULL;
	if (UREG_UNLIKELY(!t)) {
		ureg__bc_init(); /* the thread's first allocation: empty yet */
		return NULL;
	}
	c = bc_class(usable);
	if (!(b = t->bin[c].head))
		return NULL;
	t->bin[c].head = b->next;
	/* the class's next allocation takes the new head: fetch its line
	 * now (a prefetch of NULL is harmless), not when that one runs */
	__builtin_prefetch(b->next, 1);
	t->bin[c].n--;
	t->bytes -= usable;
	return b;
}

/* Keep @p (a freed shared-context block of @usable bytes) for this
 * thread's next allocation of its class; false: the caller frees it. */
static inline bool bc_push(void *p, size_t usable)
{
	struct bc_thread *t = ureg__bc;
	struct bc_block *b = p;
	unsigned c;

	/* no cache before the thread's first allocation in a context: a
	 * free (a destroy) never needs memory */
	if (usable > BC_MAX_USABLE || !t || t == BC_OFF)
		return false;
	c = bc_class(usable);
	if ((t->bin[c].n + 1) * usable > BC_BIN_BYTES || t->bytes + usable > BC_THREAD_BYTES)
		return false;
	b->next = t->bin[c].head;
	t->bin[c].head = b;
	t->bin[c].n++;
	t->bytes += usable;
	return true;
}

/* Counters that ureg_ctx_stats and ureg_ctx_entries read without the
 * lock: written (under it) with relaxed atomic stores - plain moves. */
#define CTR_SET(x, v) __atomic_store_n(&(x), (v), __ATOMIC_RELAXED)

#pragma GCC visibility push(hidden)

/* this thread's innermost creation frame (ctx_create.c) */
extern UREG_TLS struct creation *ureg__ctx_creating;

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

/* The by_serial key of @fb: its serial's counter (unique per box; the
 * Fibonacci hash spreads consecutive counters evenly, where the serial's
 * hash bits would collide like any random key). */
static inline uintptr_t use_key(const struct ureg_factory_box *fb)
{
	return (uintptr_t)(fb->serial >> UREG__SERIAL_HBITS);
}

/* ctx_uses.c, under ctx->lock, on a by_serial miss (a registration's
 * first creation in the context):
 *  - ureg__ctx_use_rebind: the record of @fb's entry if another
 *    registration of it made instances here, re-bound to @fb's serial in
 *    by_serial; else NULL;
 *  - ureg__ctx_use_reserve_by_name: before a new record, room for it in
 *    by_name (built from the list past USE_SCAN_MAX records); 0 or
 *    -ENOMEM;
 *  - ureg__ctx_use_name_add: a new record, once published, into by_name. */
struct ctx_use *ureg__ctx_use_rebind(struct ctx_book *b, const struct ureg_factory_box *fb);
int ureg__ctx_use_reserve_by_name(struct ctx_book *b);
void ureg__ctx_use_name_add(struct ctx_book *b, struct ctx_use *u);

/* ctx_create.c, for ureg_ctx_destroy: out of the creation-order list
 * (under ctx->lock), then destroyed (no lock held) */
void ureg__ctx_instance_unlink(ureg_ctx *ctx, uint32_t i, struct inst_gone *g);
void ureg__ctx_instance_destroy(ureg_ctx *ctx, const struct inst_gone *g);

#pragma GCC visibility pop

#endif /* UREG_CTX_INT_H */
