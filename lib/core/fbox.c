/* SPDX-License-Identifier: MIT */
/*
 * Factory boxes and the per-thread holds of their instances (internal.h
 * has the lifetime rules; entry.c the item boxes and entries).
 */
#include <linux/membarrier.h>
#include <sched.h>
#include <sys/syscall.h>
#include <unistd.h>
#include "registry_int.h"

/*
 * Factory boxes: @trefs, @refs and the per-thread holds (internal.h).
 *
 * A hold (a live instance, a creation in flight) is +1 in the holding
 * thread's own counter for the box, a plain add to a slot of a per-thread
 * array indexed by the box's @hid: no atomic instruction, no line another
 * thread writes, and with 1,000 factories the array is 8 KiB.  A hold
 * dropped on another thread is -1 in that thread's slot: the counters are
 * summed, not matched.
 *
 * @refs carries FBOX_BIAS + 1 until the box is folded (Linux's
 * PERCPU_COUNT_BIAS: holds that go to @refs before the fold never take it
 * to 0; the +1 is the entries', @trefs, together).  The protocol:
 *
 *  - a hold is taken inside a read section (the caller's) that found the
 *    box through a published entry: the box cannot be dying;
 *  - a dropped hold goes to the thread's slot while @dying is 0, else to
 *    @refs (and frees the box if that was the last reference).  The drop
 *    marks its thread's area with the box (@dropping) first, then reads
 *    @dying, writes the slot and clears the mark: the asymmetric pattern
 *    of liburcu's memb flavor (a compiler barrier here, a
 *    sys_membarrier in the fold), cheaper than the read section it
 *    replaced (where membarrier is missing - old kernels, valgrind - a
 *    drop still takes a read section, covered by the fold's grace
 *    period);
 *  - when @trefs reaches 0 (no entry holds the box: no hold can begin) or
 *    ureg_drain asks, the box is killed: @dying is set and, a grace period
 *    later, fbox_fold runs one membarrier and waits until no thread's
 *    area is marked with the box - every drop that saw @dying == 0 has
 *    written its slot - then sums the box's slots of every thread (and of
 *    the threads that exited, holds_orphan) into @refs in one step, minus
 *    the bias.  From then on @refs is the exact count.
 *
 * holds_lock guards the list of threads' arrays, their growth, the
 * orphans and the ids: never taken on a hold or a drop once the thread's
 * array is big enough.  It is a leaf (nothing is locked under it; fork.c
 * takes it last).  A thread's array grows (under the lock, so that a fold
 * never reads one being replaced) when it meets a box with a larger @hid.
 */
#define FBOX_BIAS (1L << 48)

struct hold_area {
	struct cds_list_head node;   /* hold_areas */
	long *slot;                  /* [cap], by box hid */
	uint32_t cap;
	/* the box whose hold this thread is dropping, or NULL; written only
	 * by the thread, read by folds */
	const struct ureg_factory_box *dropping;
};

static pthread_mutex_t holds_lock = PTHREAD_MUTEX_INITIALIZER;
static CDS_LIST_HEAD(hold_areas);
static long *holds_orphan;       /* [orphan_cap]: slots of threads gone */
static uint32_t orphan_cap;
static uint32_t *free_hids, nfree_hids, free_hids_cap, next_hid;
static UREG_TLS struct hold_area *my_holds;
static pthread_key_t holds_key;
static pthread_once_t holds_once = PTHREAD_ONCE_INIT;
static bool holds_key_ok;
static bool drop_marks;          /* membarrier works: drops mark, not read-lock */

/* Under holds_lock: @slot[0..n) grown to hold index @hid (zeroed).  */
static long *slots_grow(long *slot, uint32_t *cap, uint32_t hid)
{
	uint32_t n = *cap ? *cap : 64;
	long *ns;

	while (n <= hid)
		n *= 2;
	if (!(ns = ureg__meta_alloc(n * sizeof(long))))
		return NULL;
	memset(ns, 0, n * sizeof(long));
	if (*cap)
		memcpy(ns, slot, *cap * sizeof(long));
	ureg__meta_free(slot);
	*cap = n;
	return ns;
}

/* The thread's exit: what it holds (and dropped) moves to the orphans. */
static void holds_thread_exit(void *arg)
{
	struct hold_area *a = arg;

	pthread_mutex_lock(&holds_lock);
	for (uint32_t i = 0; i < a->cap; i++) {
		if (!a->slot[i])
			continue;
		if (i >= orphan_cap) { /* cannot grow: keep the area, listed */
			long *no = slots_grow(holds_orphan, &orphan_cap, i);
			if (!no) {
				pthread_mutex_unlock(&holds_lock);
				my_holds = NULL;
				return;
			}
			holds_orphan = no;
		}
		holds_orphan[i] += a->slot[i];
	}
	cds_list_del(&a->node);
	pthread_mutex_unlock(&holds_lock);
	ureg__meta_free(a->slot);
	ureg__meta_free(a);
	my_holds = NULL;
}

static void holds_key_init(void)
{
	holds_key_ok = pthread_key_create(&holds_key, holds_thread_exit) == 0;
	drop_marks = syscall(SYS_membarrier, MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED, 0, 0) == 0 &&
		     syscall(SYS_membarrier, MEMBARRIER_CMD_PRIVATE_EXPEDITED, 0, 0) == 0;
}

/* This thread's array, able to count box @hid; NULL: out of memory. */
static struct hold_area *holds_slow(uint32_t hid)
{
	struct hold_area *a = my_holds;
	long *ns;

	pthread_once(&holds_once, holds_key_init);
	if (!holds_key_ok)
		return NULL;
	pthread_mutex_lock(&holds_lock);
	if (!a) {
		if (!(a = ureg__meta_alloc(sizeof(*a)))) {
			pthread_mutex_unlock(&holds_lock);
			return NULL;
		}
		a->slot = NULL;
		a->cap = 0;
		a->dropping = NULL;
		if (pthread_setspecific(holds_key, a) != 0) {
			pthread_mutex_unlock(&holds_lock);
			ureg__meta_free(a);
			return NULL;
		}
		cds_list_add(&a->node, &hold_areas);
		my_holds = a;
	}
	if (hid >= a->cap) {
		if (!(ns = slots_grow(a->slot, &a->cap, hid))) {
			pthread_mutex_unlock(&holds_lock);
			return NULL;
		}
		a->slot = ns;
	}
	pthread_mutex_unlock(&holds_lock);
	return a;
}

static inline long *hold_slot(uint32_t hid)
{
	struct hold_area *a = my_holds;

	if (UREG_UNLIKELY(!a || hid >= a->cap) && !(a = holds_slow(hid)))
		return NULL;
	return &a->slot[hid];
}

/* Under holds_lock: the sum of box @hid's slots (the orphans' included),
 * with @zero then zeroed for the id's next box - only once no drop can
 * still land in them: the box was killed a grace period ago, or its total
 * is 0 (fbox_last_entry). */
static long holds_sum(uint32_t hid, bool zero)
{
	struct hold_area *a;
	long sum = 0;

	cds_list_for_each_entry(a, &hold_areas, node) {
		if (hid < a->cap) {
			sum += __atomic_load_n(&a->slot[hid], __ATOMIC_RELAXED);
			if (zero)
				__atomic_store_n(&a->slot[hid], 0, __ATOMIC_RELAXED);
		}
	}
	if (hid < orphan_cap) {
		sum += holds_orphan[hid];
		if (zero)
			holds_orphan[hid] = 0;
	}
	return sum;
}

/* Under holds_lock, the box's slots zeroed: the id for the next box.
 * Cannot fail: hid_take keeps room for every id it ever handed out. */
static void hid_free_locked(uint32_t hid)
{
	free_hids[nfree_hids++] = hid;
}

/* An id for a new box: a freed one, or the next.  The free list first
 * gets room for every id handed out (so that freeing one needs no
 * memory), under the same lock, so that two registrations at once cannot
 * outgrow it.  0 or -ENOMEM. */
static int hid_take(uint32_t *hid)
{
	int rc = 0;

	pthread_mutex_lock(&holds_lock);
	if (!nfree_hids && next_hid == UINT32_MAX) {
		rc = -ENOMEM;
	} else if (!nfree_hids && next_hid + 1 > free_hids_cap) {
		uint32_t n = free_hids_cap ? free_hids_cap * 2 : 256;
		uint32_t *nf = ureg__meta_alloc(n * sizeof(*nf));

		if (!nf) {
			rc = -ENOMEM;
		} else {
			ureg__meta_free(free_hids); /* empty: nothing to copy */
			free_hids = nf;
			free_hids_cap = n;
		}
	}
	if (!rc)
		*hid = nfree_hids ? free_hids[--nfree_hids] : next_hid++;
	pthread_mutex_unlock(&holds_lock);
	return rc;
}

/* fork.c: holds_lock is a leaf, taken last */
void ureg__holds_lock(void)
{
	pthread_mutex_lock(&holds_lock);
}

void ureg__holds_unlock(bool child)
{
	struct hold_area *a;

	if (!child) {
		pthread_mutex_unlock(&holds_lock);
		return;
	}
	/* a thread that did not survive may have been inside a drop: its
	 * mark would hold up every fold of that box in the child (its -1 is
	 * lost with it, as everything it was doing: the box is kept) */
	cds_list_for_each_entry(a, &hold_areas, node)
		if (a != my_holds)
			a->dropping = NULL;
	pthread_mutex_init(&holds_lock, NULL);
}

struct ureg_factory_box *ureg__fbox_new(ureg_registry *reg,
					const struct ureg_key *k,
					const struct ureg_factory *f)
{
	static uint64_t next_serial = 1;
	size_t n = (size_t)k->len + 1;
	struct ureg_factory_box *fb;

	_Static_assert(offsetof(struct ureg_factory_box, refs) == 64,
		       "a box's hot fields fill its first line");
	if (!(fb = ureg__meta_alloc_line(sizeof(*fb))))
		return NULL;
	if (!(fb->key = ureg__meta_alloc(n)) || hid_take(&fb->hid)) {
		ureg__meta_free(fb->key);
		ureg__meta_free(fb);
		return NULL;
	}
	memcpy(fb->key, k->str, n);
	fb->refs = FBOX_BIAS + 1;
	fb->trefs = 1;
	fb->dying = 0;
	fb->folded = 0;
	fb->f = *f;
	fb->create = f->create;
	fb->arg = f->arg;
	fb->destroy = f->instance_destroy ? f->instance_destroy : reg->type->instance_destroy;
	fb->type = reg->type;
	fb->reg = reg;
	ureg__registry_get(reg);
	/* the low bits: the very hash the entry is found by (internal.h) */
	fb->serial = __atomic_fetch_add(&next_serial, 1, __ATOMIC_RELAXED) << UREG__SERIAL_HBITS |
		     (k->hash & ((1u << UREG__SERIAL_HBITS) - 1));
	if (fb->f.anchor)
		ureg_anchor_get(fb->f.anchor);
	return fb;
}

/* Never shared (a failed registration): its slots are all 0. */
void ureg__fbox_free_unused(struct ureg_factory_box *fb)
{
	pthread_mutex_lock(&holds_lock);
	hid_free_locked(fb->hid);
	pthread_mutex_unlock(&holds_lock);
	if (fb->f.anchor)
		ureg_anchor_put(fb->f.anchor);
	ureg__registry_put(fb->reg);
	ureg__meta_free(fb->key);
	ureg__meta_free(fb);
}

static void fbox_destroy(struct ureg_factory_box *fb)
{
	if (fb->f.arg_free)
		fb->f.arg_free(fb->f.arg);
	ureg__fbox_free_unused(fb);
}

/* A grace period after the kill: every slot update that saw dying == 0
 * is done.  One atomic add moves @refs from biased to exact. */
static void fbox_fold(struct rcu_head *head)
{
	struct ureg_factory_box *fb = caa_container_of(head, struct ureg_factory_box, rcu);
	struct hold_area *a;
	long sum;

	pthread_mutex_lock(&holds_lock);
	if (drop_marks) {
		/* every drop either saw @dying (set before the grace period)
		 * or marked its area before it read it: wait for those */
		if (syscall(SYS_membarrier, MEMBARRIER_CMD_PRIVATE_EXPEDITED, 0, 0) != 0)
			abort(); /* registered at start-up: cannot fail afterwards */
		cds_list_for_each_entry(a, &hold_areas, node)
			while (__atomic_load_n(&a->dropping, __ATOMIC_ACQUIRE) == fb)
				sched_yield();
	}
	sum = holds_sum(fb->hid, true); /* frozen: no drop of the box in flight */
	pthread_mutex_unlock(&holds_lock);
	__atomic_store_n(&fb->folded, 1, __ATOMIC_SEQ_CST); /* before: the drain reads it after @refs */
	if (__atomic_add_fetch(&fb->refs, sum - FBOX_BIAS, __ATOMIC_SEQ_CST) == 0) {
		fbox_destroy(fb);
		return;
	}
	ureg__drain_wake(); /* a drain may wait for the fold; @fb not touched again */
}

void ureg__fbox_kill(struct ureg_factory_box *fb)
{
	if (__atomic_exchange_n(&fb->dying, 1, __ATOMIC_SEQ_CST))
		return; /* killed already (by a drain, then its last put) */
	ureg__call_rcu(&fb->rcu, fbox_fold);
}

/*
 * No entry holds @fb any more, and none of its holds can begin: the last
 * entry went a grace period ago, so every hold ever taken is in the
 * slots (or in @refs), and they can only go down from here.  Then a total
 * of 0 read now means no hold is live and no drop is still in flight (a
 * drop in flight belongs to a live hold, whose +1 the total would
 * include): the box goes at once, as a box without holds always did.
 * Otherwise the entries' +1 goes and the box is killed.
 */
static void fbox_last_entry(struct ureg_factory_box *fb)
{
	long total;

	/* summed, not zeroed: a drop may still be landing in a slot (it is
	 * then counted by the fold, a grace period later) */
	pthread_mutex_lock(&holds_lock);
	total = holds_sum(fb->hid, false);
	/* @refs is FBOX_BIAS + 1 + the drops that went to it for want of a
	 * slot (out of memory) */
	total += __atomic_load_n(&fb->refs, __ATOMIC_SEQ_CST) - FBOX_BIAS - 1;
	if (total == 0) {
		(void)holds_sum(fb->hid, true); /* nothing in flight: zero them */
		pthread_mutex_unlock(&holds_lock);
		fbox_destroy(fb);
		return;
	}
	pthread_mutex_unlock(&holds_lock);
	/* the entries' +1 goes; the fold moves the holds to @refs */
	__atomic_sub_fetch(&fb->refs, 1, __ATOMIC_SEQ_CST);
	ureg__fbox_kill(fb);
}

void ureg__fbox_get(struct ureg_factory_box *fb)
{
	__atomic_add_fetch(&fb->trefs, 1, __ATOMIC_RELAXED);
}

void ureg__fbox_put(struct ureg_factory_box *fb)
{
	if (!fb)
		return;
	if (__atomic_sub_fetch(&fb->trefs, 1, __ATOMIC_SEQ_CST) != 0) {
		ureg__drain_wake(); /* @fb may be freed by now: not touched again */
		return;
	}
	if (!__atomic_load_n(&fb->dying, __ATOMIC_SEQ_CST)) {
		fbox_last_entry(fb); /* no entry holds it: no new hold can begin */
		return;
	}
	/* a drain killed it (and held a reference until now): the
	 * entries' +1 goes; 0 only once folded */
	if (__atomic_sub_fetch(&fb->refs, 1, __ATOMIC_SEQ_CST) == 0)
		fbox_destroy(fb);
}

int ureg__fbox_hold(struct ureg_factory_box *fb)
{
	return ureg__fbox_hold_id(fb->hid);
}

int ureg__fbox_hold_id(uint32_t hid)
{
	long *slot = hold_slot(hid);

	if (UREG_UNLIKELY(!slot))
		return -ENOMEM;
	/* this thread's own: only it writes (a plain load and store; a
	 * fold reads it concurrently only for a box past its grace period) */
	__atomic_store_n(slot, __atomic_load_n(slot, __ATOMIC_RELAXED) + 1, __ATOMIC_RELAXED);
	return 0;
}

void ureg__fbox_unhold(struct ureg_factory_box *fb)
{
	struct hold_area *a = my_holds;
	long *slot;

	if (UREG_LIKELY(drop_marks && a && fb->hid < a->cap)) {
		__atomic_store_n(&a->dropping, fb, __ATOMIC_RELAXED);
		__atomic_signal_fence(__ATOMIC_SEQ_CST); /* the fold's membarrier pairs */
		if (UREG_LIKELY(!__atomic_load_n(&fb->dying, __ATOMIC_RELAXED))) {
			slot = &a->slot[fb->hid];
			__atomic_store_n(slot, __atomic_load_n(slot, __ATOMIC_RELAXED) - 1,
					 __ATOMIC_RELAXED);
			__atomic_store_n(&a->dropping, NULL, __ATOMIC_RELEASE);
			return;
		}
		__atomic_store_n(&a->dropping, NULL, __ATOMIC_RELEASE);
		goto refs;
	}
	ureg__rcu_ensure();
	urcu_memb_read_lock();
	if (UREG_LIKELY(!__atomic_load_n(&fb->dying, __ATOMIC_RELAXED)) &&
	    UREG_LIKELY((slot = hold_slot(fb->hid)) != NULL)) {
		__atomic_store_n(slot, __atomic_load_n(slot, __ATOMIC_RELAXED) - 1,
				 __ATOMIC_RELAXED);
		urcu_memb_read_unlock();
		return;
	}
	urcu_memb_read_unlock();
refs:
	/* killed, or no slot (out of memory): to @refs, which holds
	 * FBOX_BIAS until the fold (never 0 before) */
	if (__atomic_sub_fetch(&fb->refs, 1, __ATOMIC_SEQ_CST) == 0)
		fbox_destroy(fb);
	else
		ureg__drain_wake();
}
