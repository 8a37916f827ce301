/* SPDX-License-Identifier: MIT */
/*
 * Boxes, anchors and entries (internal.h has the lifetime rules): making
 * them, the references on them, and retiring an entry after its grace
 * period.  An entry is immutable once published; every change builds a
 * new one (rank.c).
 */
#include <limits.h>
#include <sched.h>
#include <unistd.h>
#include <linux/futex.h>
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
 * Factory boxes: @refs and the per-CPU holds (internal.h).
 *
 * @refs carries FBOX_BIAS until the box is killed, so that holds dropped
 * into it before the fold can never take it to 0 (Linux's
 * PERCPU_COUNT_BIAS).  The protocol:
 *
 *  - a hold adds 1 to the slot of the CPU it runs on, inside a read
 *    section (the caller's) that found the box through a published entry;
 *  - a dropped hold, inside a read section of its own, subtracts 1 from
 *    its CPU's slot while @dying is 0, else from @refs (and frees the box
 *    if that was the last reference);
 *  - when a put takes @refs to FBOX_BIAS (no entry holds the box: no hold
 *    can begin) or ureg_drain asks, the killer sets @dying and, after a
 *    grace period - every section that saw @dying == 0 has finished its
 *    slot update - fbox_fold adds the slots' sum minus FBOX_BIAS to @refs
 *    in one step.  From then on @refs is the exact count.
 *
 * Slots are summed, not matched: a hold taken on one CPU and dropped on
 * another leaves +1 and -1, which add up.  A slot is a line of its own, so
 * threads on different CPUs never write the same line.
 */
#define FBOX_BIAS (1L << 48)
#define SHARD_STRIDE (128 / sizeof(long)) /* a line pair: the adjacent-line prefetcher */

static unsigned fbox_nshards; /* a power of two, set once by ureg__fbox_new */

static unsigned shards_wanted(void)
{
	long cpus = sysconf(_SC_NPROCESSORS_CONF);
	unsigned n = 1;

	while ((long)n < cpus && n < 64)
		n <<= 1;
	return n;
}

static inline long *fbox_slot(struct ureg_factory_box *fb)
{
	int cpu = sched_getcpu();

	return fb->shards + (size_t)((unsigned)(cpu > 0 ? cpu : 0) &
				     (__atomic_load_n(&fbox_nshards, __ATOMIC_RELAXED) - 1)) *
		SHARD_STRIDE;
}

struct ureg_factory_box *ureg__fbox_new(ureg_registry *reg,
					const char *key,
					const struct ureg_factory *f)
{
	static uint64_t next_serial = 1;
	size_t n = strlen(key) + 1;
	struct ureg_factory_box *fb;
	unsigned ns = __atomic_load_n(&fbox_nshards, __ATOMIC_RELAXED);

	if (!ns) {
		ns = shards_wanted();
		__atomic_store_n(&fbox_nshards, ns, __ATOMIC_RELAXED); /* same value on every thread */
	}
	if (!(fb = ureg__meta_alloc(sizeof(*fb))))
		return NULL;
	fb->key = ureg__meta_alloc(n);
	fb->shards = ureg__meta_alloc_lines(ns * SHARD_STRIDE * sizeof(long));
	if (!fb->key || !fb->shards) {
		ureg__meta_free(fb->key);
		ureg__meta_free(fb->shards);
		ureg__meta_free(fb);
		return NULL;
	}
	memset(fb->shards, 0, ns * SHARD_STRIDE * sizeof(long));
	memcpy(fb->key, key, n);
	fb->refs = FBOX_BIAS + 1;
	fb->dying = 0;
	fb->folded = 0;
	fb->f = *f;
	fb->type = reg->type;
	fb->reg = reg;
	ureg__registry_get(reg);
	fb->serial = __atomic_fetch_add(&next_serial, 1, __ATOMIC_RELAXED);
	if (fb->f.anchor)
		ureg_anchor_get(fb->f.anchor);
	return fb;
}

void ureg__fbox_free_unused(struct ureg_factory_box *fb)
{
	if (fb->f.anchor)
		ureg_anchor_put(fb->f.anchor);
	ureg__registry_put(fb->reg);
	ureg__meta_free(fb->shards);
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
	unsigned ns = __atomic_load_n(&fbox_nshards, __ATOMIC_RELAXED);
	long sum = 0;

	for (unsigned i = 0; i < ns; i++)
		sum += __atomic_load_n(&fb->shards[i * SHARD_STRIDE], __ATOMIC_RELAXED);
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
 * slots, and they can only go down from here.  Then a sum of 0 read now
 * means no hold is live and no drop is still in flight (a drop in flight
 * belongs to a live hold, whose +1 the sum would include): the box goes
 * at once, as a box without holds always did.  Otherwise it is killed.
 */
static void fbox_last_entry(struct ureg_factory_box *fb)
{
	unsigned ns = __atomic_load_n(&fbox_nshards, __ATOMIC_RELAXED);
	long sum = 0;

	for (unsigned i = 0; i < ns; i++)
		sum += __atomic_load_n(&fb->shards[i * SHARD_STRIDE], __ATOMIC_SEQ_CST);
	if (sum == 0) {
		fbox_destroy(fb);
		return;
	}
	ureg__fbox_kill(fb);
}

void ureg__fbox_get(struct ureg_factory_box *fb)
{
	__atomic_add_fetch(&fb->refs, 1, __ATOMIC_RELAXED);
}

void ureg__fbox_put(struct ureg_factory_box *fb)
{
	long r;

	if (!fb)
		return;
	r = __atomic_sub_fetch(&fb->refs, 1, __ATOMIC_SEQ_CST);
	if (r == 0) {
		fbox_destroy(fb); /* folded, and nothing holds it */
		return;
	}
	if (r == FBOX_BIAS)
		fbox_last_entry(fb);
	else
		drain_wake(); /* @fb may be freed by now: not touched again */
}

void ureg__fbox_hold(struct ureg_factory_box *fb)
{
	__atomic_add_fetch(fbox_slot(fb), 1, __ATOMIC_RELAXED);
}

void ureg__fbox_unhold(struct ureg_factory_box *fb)
{
	ureg__rcu_ensure();
	urcu_memb_read_lock();
	if (UREG_LIKELY(!__atomic_load_n(&fb->dying, __ATOMIC_RELAXED))) {
		__atomic_sub_fetch(fbox_slot(fb), 1, __ATOMIC_RELAXED);
		urcu_memb_read_unlock();
		return;
	}
	urcu_memb_read_unlock();
	/* killed: the fold counts what the slots held; this one goes to
	 * @refs, which holds FBOX_BIAS until the fold (never 0 before) */
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
			__atomic_sub_fetch(&c->more[i].fb->refs, 1, __ATOMIC_RELAXED);
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
