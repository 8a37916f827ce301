/* SPDX-License-Identifier: MIT */
/*
 * Boxes, anchors and entries (internal.h has the lifetime rules): making
 * them, the references on them, and retiring an entry after its grace
 * period.  An entry is immutable once published; every change builds a
 * new one (rank.c).
 */
#include <limits.h>
#include <unistd.h>
#include <linux/futex.h>
#include <linux/membarrier.h>
#include <sched.h>
#include <sys/syscall.h>
#include "registry_int.h"

/* ---------------------------------------------------------------- boxes */

/*
 * ureg_drain waits for boxes' reference counts to drop.  Waking it must
 * not touch the box after the decrement (the drain may free it at once),
 * so drains wait on one process-wide futex word, bumped by every box put
 * while any drain runs.  Global by design: drains are rare, and with none
 * running a put pays one load of a line nobody writes.  Ordering: a put
 * decrements (seq_cst) and then reads drain_active (seq_cst); a drain
 * raises drain_active before its unregister and reads the count after, so
 * one of the two sees the other (see ureg_drain).
 */
uint32_t ureg__drain_active;
uint32_t ureg__drain_seq;

static void drain_wake(void)
{
	if (UREG_UNLIKELY(__atomic_load_n(&ureg__drain_active, __ATOMIC_SEQ_CST))) {
		__atomic_add_fetch(&ureg__drain_seq, 1, __ATOMIC_SEQ_CST);
		syscall(SYS_futex, &ureg__drain_seq, FUTEX_WAKE_PRIVATE, INT_MAX, NULL, NULL, 0);
	}
}

struct ureg_item_box *ureg__ibox_new(const ureg_registry *reg, void *item)
{
	struct ureg_item_box *ib = ureg__meta_alloc(sizeof(*ib));
	if (!ib)
		return NULL;
	ib->refs = 1;
	ib->item = item;
	ib->type = reg->type;
	ib->counted = 0;
	return ib;
}

/* Free a box that was never shared, without destroying the item (the
 * caller still owns it: a failed call changes nothing). */
void ureg__ibox_free_unused(struct ureg_item_box *ib)
{
	ureg__meta_free(ib);
}

void ureg__ibox_get(struct ureg_item_box *ib)
{
	__atomic_add_fetch(&ib->refs, 1, __ATOMIC_RELAXED);
}

void ureg__ibox_put(struct ureg_item_box *ib)
{
	if (!ib)
		return;
	if (__atomic_sub_fetch(&ib->refs, 1, __ATOMIC_SEQ_CST) != 0) {
		drain_wake(); /* @ib may be freed by now: not touched again */
		return;
	}
	if (ib->type->item_destroy)
		ib->type->item_destroy(ib->item);
	ureg__meta_free(ib);
}

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
					const char *key,
					const struct ureg_factory *f)
{
	static uint64_t next_serial = 1;
	size_t n = strlen(key) + 1;
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
	memcpy(fb->key, key, n);
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
	fb->serial = __atomic_fetch_add(&next_serial, 1, __ATOMIC_RELAXED);
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
	drain_wake(); /* a drain may wait for the fold; @fb not touched again */
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
		drain_wake(); /* @fb may be freed by now: not touched again */
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
	long *slot = hold_slot(fb->hid);

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
		drain_wake();
}
/* -------------------------------------------------------------- anchors */

void ureg_anchor_init(ureg_anchor *a, void (*release)(ureg_anchor *a))
{
	a->refs = 1;
	a->release = release;
	memset(a->reserved, 0, sizeof(a->reserved));
}

void ureg_anchor_get(ureg_anchor *a)
{
	__atomic_add_fetch(&a->refs, 1, __ATOMIC_RELAXED);
}

void ureg_anchor_put(ureg_anchor *a)
{
	if (a && __atomic_sub_fetch(&a->refs, 1, __ATOMIC_ACQ_REL) == 0 &&
	    a->release)
		a->release(a);
}
/* -------------------------------------------------------------- entries */

struct ureg_entry *ureg__entry_alloc(const struct ureg_key *k)
{
	struct ureg_entry *e = ureg__hot_alloc(ureg__entry_hot_size(k->len));
	struct ureg_entry_cold *c;

	if (!e)
		return NULL;
	if (!(c = ureg__meta_alloc(sizeof(*c)))) {
		ureg__hot_free(e);
		return NULL;
	}
	memset(e, 0, offsetof(struct ureg_entry, key));
	cds_lfht_node_init(&e->node);
	e->cold = c;
	e->keylen = k->len;
	memcpy(e->key, k->str, k->len + 1);
	memset(c, 0, sizeof(*c));
	c->entry = e;
	c->hash = k->hash;
	c->refs = 1;
	return e;
}

int ureg__entry_set_source(struct ureg_entry *e, const struct ureg_source *src)
{
	if (!src)
		return 0;
	if (src->provider && !(ureg__cold(e)->provider = ureg__strdup(src->provider)))
		return -ENOMEM;
	if (src->file && !(ureg__cold(e)->source_file = ureg__strdup(src->file)))
		return -ENOMEM;
	ureg__cold(e)->source_line = src->line;
	ureg__cold(e)->source_column = src->column;
	return 0;
}

/* @dst takes @src's provenance (copies) and generation; -ENOMEM or 0. */
int ureg__entry_copy_source(struct ureg_entry *dst, const struct ureg_entry *src)
{
	const struct ureg_entry_cold *c = ureg__cold(src);
	struct ureg_source s = {
		.provider = c->provider, .file = c->source_file,
		.line = c->source_line, .column = c->source_column,
	};

	ureg__cold(dst)->generation = c->generation;
	return ureg__entry_set_source(dst, &s);
}

/* An entry that was never published and whose boxes are not taken. */
void ureg__entry_free_unpublished(struct ureg_entry *e)
{
	if (!e)
		return;
	ureg__free(ureg__cold(e)->provider);
	ureg__free(ureg__cold(e)->source_file);
	ureg__free(ureg__cold(e)->more);
	ureg__meta_free(ureg__cold(e));
	ureg__hot_free(e);
}

int ureg__entry_copy_more(struct ureg_entry *dst, const struct ureg_entry *src,
			  bool take)
{
	const struct ureg_entry_cold *c = ureg__cold(src);
	struct ureg_entry_cold *d = ureg__cold(dst);

	d->srank = c->srank;
	d->frank = c->frank;
	if (!c->nmore)
		return 0;
	if (!(d->more = ureg__malloc(c->nmore * sizeof(*d->more))))
		return -ENOMEM;
	memcpy(d->more, c->more, c->nmore * sizeof(*d->more));
	d->nmore = c->nmore;
	for (uint32_t i = 0; take && i < d->nmore; i++) {
		if (d->more[i].ib)
			ureg__ibox_get(d->more[i].ib);
		else
			ureg__fbox_get(d->more[i].fb);
	}
	return 0;
}

/* Only for a copy no reader saw: the live entry still holds every box. */
void ureg__entry_unshare_more(struct ureg_entry *e)
{
	struct ureg_entry_cold *c = ureg__cold(e);

	for (uint32_t i = 0; i < c->nmore; i++) {
		if (c->more[i].ib)
			__atomic_sub_fetch(&c->more[i].ib->refs, 1, __ATOMIC_RELAXED);
		else
			__atomic_sub_fetch(&c->more[i].fb->trefs, 1, __ATOMIC_RELAXED);
	}
}

void ureg__entry_put(struct ureg_entry *e)
{
	struct ureg_entry_cold *c = ureg__cold(e);

	if (__atomic_sub_fetch(&c->refs, 1, __ATOMIC_ACQ_REL) != 0)
		return;
	ureg__ibox_put(c->ibox);
	ureg__fbox_put(e->fbox);
	for (uint32_t i = 0; i < c->nmore; i++) {
		ureg__ibox_put(c->more[i].ib);
		ureg__fbox_put(c->more[i].fb);
	}
	ureg__entry_free_unpublished(e);
}

static void entry_rcu_cb(struct rcu_head *head)
{
	ureg__entry_put(caa_container_of(head, struct ureg_entry_cold, rcu)->entry);
}

/* The entry left the table (or its table was unpublished): drop the
 * table's reference once no reader can still see it. */
void ureg__entry_retire(struct ureg_entry *e)
{
	ureg__call_rcu(&ureg__cold(e)->rcu, entry_rcu_cb);
}

static void entry_unused_rcu_cb(struct rcu_head *head)
{
	ureg__entry_free_unpublished(caa_container_of(head, struct ureg_entry_cold, rcu)->entry);
}

/* An entry of a table no reader ever saw, whose boxes it does not own;
 * deferred only because a table iteration may still step through it. */
void ureg__entry_retire_unused(struct ureg_entry *e)
{
	ureg__call_rcu(&ureg__cold(e)->rcu, entry_unused_rcu_cb);
}

/*
 * cds_lfht's match callback, called once per node whose full 64-bit hash
 * equals the key's, so nearly always for the entry that is sought: the
 * compare confirms it in a few word loads rather than a call to memcmp.
 * The entry's key is followed by its padding and cold part, and the
 * looked-up key has k->len bytes, so no load leaves either object.
 */
int ureg__entry_match(struct cds_lfht_node *node, const void *key)
{
	const struct ureg_key *k = key;
	const struct ureg_entry *e =
		caa_container_of(node, struct ureg_entry, node);
	const char *a = e->key, *b = k->str;
	size_t n = k->len;
	uint64_t x, y;
	uint32_t u, v;

	if (e->keylen != n)
		return 0;
	if (n - 8 <= 8) { /* 8..16 bytes: two words each, overlapping */
		uint64_t x2, y2;

		memcpy(&x, a, 8);
		memcpy(&y, b, 8);
		memcpy(&x2, a + n - 8, 8);
		memcpy(&y2, b + n - 8, 8);
		return ((x ^ y) | (x2 ^ y2)) == 0;
	}
	if (n >= 8) {
		for (size_t i = 0; i + 8 < n; i += 8) {
			memcpy(&x, a + i, 8);
			memcpy(&y, b + i, 8);
			if (x != y)
				return 0;
		}
		memcpy(&x, a + n - 8, 8);
		memcpy(&y, b + n - 8, 8);
		return x == y;
	}
	if (n >= 4) {
		memcpy(&u, a, 4);
		memcpy(&v, b, 4);
		if (u != v)
			return 0;
		memcpy(&u, a + n - 4, 4);
		memcpy(&v, b + n - 4, 4);
		return u == v;
	}
	for (size_t i = 0; i < n; i++)
		if (a[i] != b[i])
			return 0;
	return 1;
}
