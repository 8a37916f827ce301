/* SPDX-License-Identifier: MIT */
/*
 * The registry: a cds_lfht of immutable entries (see internal.h for the
 * lifetime rules).  Readers: one rcu_dereference of the table, one
 * cds_lfht_lookup, no writes.  Writers: the registry's writer mutex, build
 * the new entry before taking it, publish with add_unique / replace / del,
 * retire the old entry with call_rcu.  Events are queued under the mutex
 * and delivered after it is dropped (events.c).
 */
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>
#include <linux/futex.h>
#include <sys/syscall.h>
#include "internal.h"

pthread_mutex_t ureg__registries_lock = PTHREAD_MUTEX_INITIALIZER;
CDS_LIST_HEAD(ureg__registries);

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
static uint32_t drain_active;
static uint32_t drain_seq;

static void drain_wake(void)
{
	if (UREG_UNLIKELY(__atomic_load_n(&drain_active, __ATOMIC_SEQ_CST))) {
		__atomic_add_fetch(&drain_seq, 1, __ATOMIC_SEQ_CST);
		syscall(SYS_futex, &drain_seq, FUTEX_WAKE_PRIVATE, INT_MAX, NULL, NULL, 0);
	}
}

struct ureg_item_box *ureg__ibox_new(const ureg_registry *reg, void *item)
{
	struct ureg_item_box *ib = ureg__malloc(sizeof(*ib));
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
	ureg__free(ib);
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
	ureg__free(ib);
}

struct ureg_factory_box *ureg__fbox_new(ureg_registry *reg,
					const char *key,
					const struct ureg_factory *f)
{
	static uint64_t next_serial = 1;
	struct ureg_factory_box *fb = ureg__malloc(sizeof(*fb));
	if (!fb)
		return NULL;
	fb->key = ureg__strdup(key);
	if (!fb->key) {
		ureg__free(fb);
		return NULL;
	}
	fb->refs = 1;
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
	ureg__free(fb->key);
	ureg__free(fb);
}

void ureg__fbox_get(struct ureg_factory_box *fb)
{
	__atomic_add_fetch(&fb->refs, 1, __ATOMIC_RELAXED);
}

void ureg__fbox_put(struct ureg_factory_box *fb)
{
	if (!fb)
		return;
	if (__atomic_sub_fetch(&fb->refs, 1, __ATOMIC_SEQ_CST) != 0) {
		drain_wake(); /* @fb may be freed by now: not touched again */
		return;
	}
	if (fb->f.arg_free)
		fb->f.arg_free(fb->f.arg);
	ureg__fbox_free_unused(fb);
}

/* -------------------------------------------------------------- anchors */

void ureg_anchor_init(ureg_anchor *a, void (*release)(ureg_anchor *a))
{
	a->refs = 1;
	a->release = release;
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
	size_t hot = ureg__entry_hot_size(k->len);
	struct ureg_entry *e = ureg__aligned_alloc(64, hot + sizeof(struct ureg_entry_cold));
	struct ureg_entry_cold *c;

	if (!e)
		return NULL;
	memset(e, 0, offsetof(struct ureg_entry, key));
	cds_lfht_node_init(&e->node);
	e->keylen = (uint32_t)k->len;
	memcpy(e->key, k->str, k->len + 1);
	c = ureg__cold(e);
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
	ureg__free(e);
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

static void entry_put(struct ureg_entry *e)
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
	entry_put(caa_container_of(head, struct ureg_entry_cold, rcu)->entry);
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

/* --------------------------------------------------------------- tables */

static int entry_match(struct cds_lfht_node *node, const void *key)
{
	const struct ureg_key *k = key;
	const struct ureg_entry *e =
		caa_container_of(node, struct ureg_entry, node);
	return e->keylen == k->len && memcmp(e->key, k->str, k->len) == 0;
}

/* Call inside a read section. */
struct ureg_entry *ureg__find(struct cds_lfht *ht, const struct ureg_key *k)
{
	struct cds_lfht_iter iter;
	struct cds_lfht_node *node;

	cds_lfht_lookup(ht, k->hash, entry_match, k, &iter);
	node = cds_lfht_iter_get_node(&iter);
	return node ? caa_container_of(node, struct ureg_entry, node) : NULL;
}

/*
 * Table sizing.  Buckets below min_nr_alloc_buckets live in one array that
 * a lookup indexes directly; above it liburcu's "order" allocator adds an
 * fls() and an indirection, so 4,096 buckets (32 KiB) is the floor.  Above
 * that we size the table ourselves - one bucket per key, a power of two -
 * instead of liburcu's AUTO_RESIZE: its count-based policy lets chains
 * reach ~3 nodes (32,768 buckets for 100,000 keys) and its chain-length
 * policy overshoots by two orders of magnitude and never shrinks.
 */
#define MIN_ALLOC_BUCKETS 4096ul
#define MAX_BUCKETS (1ul << 26)

unsigned long ureg__buckets_for(unsigned long keys)
{
	unsigned long n = MIN_ALLOC_BUCKETS;
	while (n < keys && n < MAX_BUCKETS)
		n <<= 1;
	return n;
}

struct cds_lfht *ureg__ht_new(unsigned long size_hint)
{
	if (ureg__fault_hit())
		return NULL;
	return cds_lfht_new_flavor(ureg__buckets_for(size_hint), MIN_ALLOC_BUCKETS,
				   MAX_BUCKETS, 0, &urcu_memb_flavor, NULL);
}

/*
 * After a change, outside the writer mutex: grow the table when the keys
 * outnumber the buckets, shrink it when they fill less than an eighth.
 * cds_lfht_resize waits for grace periods, so it must not run inside a
 * read section (a change made inside one leaves the resize to the next
 * change made outside) nor under the writer mutex (a reader blocked on that
 * mutex inside its read section would stall the grace period forever).
 * resize_lock keeps a batch commit or registry destroy from destroying the
 * table while it is being resized.
 */
void ureg__maybe_resize(ureg_registry *reg)
{
	unsigned long count, want, have;

	if (ureg__thread.read_depth || urcu_memb_read_ongoing())
		return; /* also an application's own liburcu read section */
	count = __atomic_load_n(&reg->count, __ATOMIC_RELAXED);
	have = __atomic_load_n(&reg->buckets, __ATOMIC_RELAXED);
	want = ureg__buckets_for(count);
	if (want <= have && (have == MIN_ALLOC_BUCKETS || count >= have / 8))
		return;
	pthread_mutex_lock(&reg->resize_lock);
	have = reg->buckets;
	count = __atomic_load_n(&reg->count, __ATOMIC_RELAXED);
	want = ureg__buckets_for(count);
	if (want > have || (have > MIN_ALLOC_BUCKETS && count < have / 8)) {
		cds_lfht_resize(reg->ht, want);
		__atomic_store_n(&reg->buckets, want, __ATOMIC_RELAXED);
	}
	pthread_mutex_unlock(&reg->resize_lock);
}

/* Not inside a read section (liburcu 0.13 may deadlock destroying a
 * table during a resize from inside one). */
void ureg__ht_destroy(struct cds_lfht *ht)
{
	cds_lfht_destroy(ht, NULL);
}

/* ------------------------------------------------------------ registry */

void ureg__registry_get(ureg_registry *reg)
{
	__atomic_add_fetch(&reg->refs, 1, __ATOMIC_RELAXED);
}

void ureg__registry_put(ureg_registry *reg)
{
	if (__atomic_sub_fetch(&reg->refs, 1, __ATOMIC_ACQ_REL) != 0)
		return;
	pthread_mutex_destroy(&reg->writer);
	pthread_mutex_destroy(&reg->resize_lock);
	pthread_mutex_destroy(&reg->evq_lock);
	ureg__free(reg);
}

int ureg_registry_new(const ureg_type *type, const char *name,
		      ureg_registry **out)
{
	ureg_registry *reg;
	int rc;

	ureg__rcu_ensure();
	if (!out)
		return ureg__err(-EINVAL, "registry_new: out is NULL");
	if (!type || !type->name)
		return ureg__err(-EINVAL, "registry_new: type or type name is NULL");
	if ((rc = ureg__name_check(name, "registry")))
		return rc;
	reg = ureg__calloc(1, sizeof(*reg) +
			   UREG_STAMP_STRIPES * sizeof(reg->stamps[0]));
	if (!reg)
		return ureg__err(-ENOMEM, "registry_new: out of memory");
	reg->ht = ureg__ht_new(0);
	reg->buckets = MIN_ALLOC_BUCKETS;
	if (!reg->ht) {
		ureg__free(reg);
		return ureg__err(-ENOMEM, "registry_new: out of memory");
	}
	reg->type = type;
	reg->refs = 1;
	ureg__stamp_all(reg); /* values no handle can remember yet */
	pthread_mutex_init(&reg->writer, NULL);
	pthread_mutex_init(&reg->resize_lock, NULL);
	pthread_mutex_init(&reg->evq_lock, NULL);
	CDS_INIT_LIST_HEAD(&reg->listeners);
	CDS_INIT_LIST_HEAD(&reg->evq);
	strcpy(reg->name, name);
	pthread_mutex_lock(&ureg__registries_lock);
	cds_list_add_tail(&reg->all_node, &ureg__registries);
	pthread_mutex_unlock(&ureg__registries_lock);
	*out = reg;
	return 0;
}

void ureg_registry_destroy(ureg_registry *reg)
{
	struct cds_lfht_iter iter;
	struct cds_lfht_node *node;
	struct cds_lfht *ht;

	if (!reg)
		return;
	ureg__rcu_ensure();
	pthread_mutex_lock(&ureg__registries_lock);
	cds_list_del(&reg->all_node);
	pthread_mutex_unlock(&ureg__registries_lock);

	pthread_mutex_lock(&reg->writer);
	ht = reg->ht;
	/* handles are not to be used past destroy; moving every stamp first
	 * keeps a misused one from reaching a retired entry all the same */
	ureg__stamp_all(reg);
	urcu_memb_read_lock();
	cds_lfht_for_each(ht, &iter, node) {
		if (!cds_lfht_del(ht, node))
			ureg__entry_retire(caa_container_of(
				node, struct ureg_entry, node));
	}
	urcu_memb_read_unlock();
	reg->count = 0;
	pthread_mutex_unlock(&reg->writer);

	ureg__events_detach_registry(reg);
	/* every retired entry's callback has run (or is pinned by a counted
	 * reference) once the barrier returns; then the table is empty */
	urcu_memb_barrier();
	pthread_mutex_lock(&reg->resize_lock); /* no resize still running */
	pthread_mutex_unlock(&reg->resize_lock);
	ureg__ht_destroy(ht);
	ureg__registry_put(reg);
}

const char *ureg_registry_name(const ureg_registry *reg)
{
	return reg ? reg->name : NULL;
}

const ureg_type *ureg_registry_type(const ureg_registry *reg)
{
	return reg ? reg->type : NULL;
}

size_t ureg_count(const ureg_registry *reg)
{
	return reg ? __atomic_load_n(&reg->count, __ATOMIC_RELAXED) : 0;
}

uint64_t ureg_generation(const ureg_registry *reg)
{
	return reg ? __atomic_load_n(&reg->generation, __ATOMIC_RELAXED) : 0;
}

/* --------------------------------------------------------------- stamps */

/* Process-wide: a stamp value is never reused and never shared by two
 * registries (see internal.h).  Only writers touch it, under their own
 * registry's writer mutex or before the registry is visible. */
static uint64_t stamp_counter;

void ureg__stamp_key(ureg_registry *reg, uint64_t hash)
{
	uint64_t v = __atomic_add_fetch(&stamp_counter, 1, __ATOMIC_RELAXED);
	__atomic_store_n(&reg->stamps[hash & (UREG_STAMP_STRIPES - 1)], v,
			 __ATOMIC_RELEASE);
}

void ureg__stamp_all(ureg_registry *reg)
{
	uint64_t v = __atomic_add_fetch(&stamp_counter, 1, __ATOMIC_RELAXED);
	for (unsigned i = 0; i < UREG_STAMP_STRIPES; i++)
		__atomic_store_n(&reg->stamps[i], v, __ATOMIC_RELEASE);
}

/* ------------------------------------------------------------ mutations */

enum op {
	OP_REGISTER,       /* add a singleton at a rank, -EEXIST if one there */
	OP_FACTORY,        /* add a factory at a rank, -EEXIST if one there */
	OP_REPLACE,        /* swap the top singleton, -ENOENT if none */
	OP_REPLACE_FACTORY,/* swap the top factory, -ENOENT if none */
	OP_UNREGISTER,     /* drop the top (or the ranked) singleton / factory */
};

/* What ureg_drain keeps of the providers it removes: one reference on
 * each box it waits for. */
struct drain_grab {
	struct ureg_item_box *ib;
	struct ureg_factory_box *fb;
};

/* One single-key change, beside the key. */
struct change {
	enum op op;
	void *item;                    /* OP_REGISTER, OP_REPLACE */
	const struct ureg_factory *f;  /* OP_FACTORY, OP_REPLACE_FACTORY */
	unsigned what;                 /* OP_UNREGISTER */
	int rank;                      /* OP_REGISTER, OP_FACTORY; by_rank */
	bool by_rank;                  /* OP_UNREGISTER: at @rank, not the top */
};

/* Providers gathered on the stack up to this many (a bigger set mallocs). */
#define PROV_STACK 8

/* The provider of a kind at @rank (@by_rank) or the highest-ranked one;
 * -1 when there is none.  Ranks are unique per kind. */
static long prov_find(const struct ureg_prov *v, size_t n, bool singleton,
		      bool by_rank, int rank)
{
	long best = -1;

	for (size_t i = 0; i < n; i++) {
		if (singleton ? !v[i].ib : !v[i].fb)
			continue;
		if (by_rank ? v[i].rank == rank :
		    best < 0 || v[i].rank > v[best].rank)
			best = (long)i;
	}
	return best;
}

/* Highest rank first; a singleton before a factory of the same rank. */
static int prov_cmp(const void *a, const void *b)
{
	const struct ureg_prov *x = a, *y = b;

	if (x->rank != y->rank)
		return x->rank < y->rank ? 1 : -1;
	return (x->ib == NULL) - (y->ib == NULL);
}

/* Remove v[i] (order does not matter: the survivors are sorted later). */
static void prov_remove(struct ureg_prov *v, size_t *n, long i)
{
	v[i] = v[--*n];
}

/*
 * One single-key change.  The boxes it makes are allocated before the
 * writer mutex; under it, the key's provider set (old entry's, plus or
 * minus this change) is gathered, checked and laid out in the new entry
 * (top singleton and top factory in the hot fields, the rest in the cold
 * part), and published with one swap.  Old boxes the new entry keeps get
 * their reference only once nothing can fail any more.  On failure
 * nothing is published and the caller's item / factory arg are still the
 * caller's.
 */
static int mutate(ureg_registry *reg, const char *key, const struct change *c,
		  struct drain_grab *grab)
{
	const enum op op = c->op;
	void *item = c->item;
	const struct ureg_factory *f = c->f;
	const unsigned what = c->what;
	struct ureg_key k;
	struct ureg_entry *ne = NULL, *old = NULL;
	struct cds_lfht_iter it;
	struct cds_lfht_node *node;
	struct ureg_item_box *nib = NULL, *rm_ib = NULL;
	struct ureg_factory_box *nfb = NULL, *rm_fb = NULL;
	struct ureg_event_node *ev = NULL;
	struct ureg_prov stack[PROV_STACK], *all = stack, *more = NULL;
	size_t n = 0, nmore = 0;
	long si, fi;
	struct cds_lfht *ht;
	enum ureg_event_kind kind;
	int rc;

	ureg__rcu_ensure();
	if (!reg)
		return ureg__err(-EINVAL, "registry is NULL");
	if ((rc = ureg__key_prepare(key, &k)))
		return rc;
	switch (op) {
	case OP_REGISTER:
	case OP_REPLACE:
		if (!item)
			return ureg__err(-EINVAL, "registry '%s': item for '%s' is NULL",
					 reg->name, key);
		kind = op == OP_REGISTER ? UREG_EV_REGISTERED : UREG_EV_REPLACED;
		break;
	case OP_FACTORY:
	case OP_REPLACE_FACTORY:
		if (!f || !f->create)
			return ureg__err(-EINVAL, "registry '%s': factory for '%s' has no create function",
					 reg->name, key);
		if (f->scope != UREG_SCOPE_TRANSIENT &&
		    f->scope != UREG_SCOPE_CONTEXT)
			return ureg__err(-EINVAL, "registry '%s': factory for '%s' has bad scope %d",
					 reg->name, key, (int)f->scope);
		kind = op == OP_FACTORY ? UREG_EV_REGISTERED : UREG_EV_REPLACED;
		break;
	case OP_UNREGISTER:
	default:
		if (what == 0 || (what & ~(unsigned)UREG_BOTH))
			return ureg__err(-EINVAL, "unregister: bad flags 0x%x", what);
		kind = UREG_EV_UNREGISTERED;
		break;
	}

	/* allocate everything up front */
	rc = -ENOMEM;
	ne = ureg__entry_alloc(&k);
	if (!ne)
		goto fail;
	if (item && !(nib = ureg__ibox_new(reg, item)))
		goto fail;
	if (f && !(nfb = ureg__fbox_new(reg, key, f)))
		goto fail;
	if (ureg__has_listeners(reg) &&
	    !(ev = ureg__event_prepare(reg, kind, key)))
		goto fail;

	pthread_mutex_lock(&reg->writer);
	ht = reg->ht;
	urcu_memb_read_lock();
	cds_lfht_lookup(ht, k.hash, entry_match, &k, &it);
	node = cds_lfht_iter_get_node(&it);
	old = node ? caa_container_of(node, struct ureg_entry, node) : NULL;
	rc = 0;

	/* the key's providers: the old entry's, and room for one more */
	if (old) {
		struct ureg_entry_cold *oc = ureg__cold(old);
		size_t total = (oc->ibox != NULL) + (old->fbox != NULL) + oc->nmore;

		if (total + 1 > PROV_STACK &&
		    !(all = ureg__malloc((total + 1) * sizeof(*all)))) {
			all = stack;
			rc = -ENOMEM;
		} else {
			if (oc->ibox)
				all[n++] = (struct ureg_prov){ oc->srank, oc->ibox, NULL };
			if (old->fbox)
				all[n++] = (struct ureg_prov){ oc->frank, NULL, old->fbox };
			if (oc->nmore)
				memcpy(all + n, oc->more, oc->nmore * sizeof(*all));
			n += oc->nmore;
		}
	}
	switch (rc ? -1 : (int)op) {
	case OP_REGISTER:
		if (prov_find(all, n, true, true, c->rank) >= 0)
			rc = ureg__err(-EEXIST, "registry '%s': key '%s' already has a singleton at rank %d",
				       reg->name, key, c->rank);
		else
			all[n++] = (struct ureg_prov){ c->rank, nib, NULL };
		break;
	case OP_FACTORY:
		if (prov_find(all, n, false, true, c->rank) >= 0)
			rc = ureg__err(-EEXIST, "registry '%s': key '%s' already has a factory at rank %d",
				       reg->name, key, c->rank);
		else
			all[n++] = (struct ureg_prov){ c->rank, NULL, nfb };
		break;
	case OP_REPLACE:
		if ((si = prov_find(all, n, true, false, 0)) < 0)
			rc = ureg__err(-ENOENT, "registry '%s': key '%s' has no singleton to replace",
				       reg->name, key);
		else
			all[si].ib = nib;
		break;
	case OP_REPLACE_FACTORY:
		if ((fi = prov_find(all, n, false, false, 0)) < 0)
			rc = ureg__err(-ENOENT, "registry '%s': key '%s' has no factory to replace",
				       reg->name, key);
		else
			all[fi].fb = nfb;
		break;
	case OP_UNREGISTER:
		if ((what & UREG_SINGLETON) &&
		    (si = prov_find(all, n, true, c->by_rank, c->rank)) >= 0) {
			rm_ib = all[si].ib;
			prov_remove(all, &n, si);
		}
		if ((what & UREG_FACTORY) &&
		    (fi = prov_find(all, n, false, c->by_rank, c->rank)) >= 0) {
			rm_fb = all[fi].fb;
			prov_remove(all, &n, fi);
		}
		if (!rm_ib && !rm_fb) {
			if (c->by_rank)
				rc = ureg__err(-ENOENT, "registry '%s': key '%s' has nothing to unregister at rank %d",
					       reg->name, key, c->rank);
			else
				rc = ureg__err(-ENOENT, "registry '%s': key '%s' has nothing to unregister",
					       reg->name, key);
		}
		break;
	default:
		break;
	}
	if (rc == 0 && old && ureg__entry_copy_source(ne, old))
		rc = -ENOMEM;
	si = prov_find(all, n, true, false, 0);
	fi = prov_find(all, n, false, false, 0);
	nmore = n - (si >= 0) - (fi >= 0);
	if (rc == 0 && nmore && !(more = ureg__malloc(nmore * sizeof(*more))))
		rc = -ENOMEM;
	if (rc) {
		urcu_memb_read_unlock();
		pthread_mutex_unlock(&reg->writer);
		if (all != stack)
			ureg__free(all);
		goto fail;
	}

	/* nothing can fail any more: the old boxes kept get their reference */
	for (size_t i = 0; i < n; i++) {
		if (all[i].ib && all[i].ib != nib)
			ureg__ibox_get(all[i].ib);
		if (all[i].fb && all[i].fb != nfb)
			ureg__fbox_get(all[i].fb);
	}
	if (grab) {
		/* old stays alive until its grace period: safe to take */
		if ((grab->ib = rm_ib))
			ureg__ibox_get(rm_ib);
		if ((grab->fb = rm_fb))
			ureg__fbox_get(rm_fb);
	}
	if (si >= 0) {
		ureg__cold(ne)->ibox = all[si].ib;
		ureg__cold(ne)->srank = all[si].rank;
		ne->item = all[si].ib->item;
	}
	if (fi >= 0) {
		ne->fbox = all[fi].fb;
		ureg__cold(ne)->frank = all[fi].rank;
	}
	if (nmore) {
		size_t j = 0;

		for (size_t i = 0; i < n; i++)
			if ((long)i != si && (long)i != fi)
				more[j++] = all[i];
		qsort(more, nmore, sizeof(*more), prov_cmp);
		ureg__cold(ne)->more = more;
		ureg__cold(ne)->nmore = (uint32_t)nmore;
	}
	if (all != stack)
		ureg__free(all);
	uint64_t gen = reg->generation + 1;
	ureg__cold(ne)->generation = gen;
	/* stamp before and after publishing (internal.h, "Stamps") */
	ureg__stamp_key(reg, k.hash);
	if (!old) {
		cds_lfht_add_unique(ht, k.hash, entry_match, &k, &ne->node);
		__atomic_store_n(&reg->count, reg->count + 1, __ATOMIC_RELAXED);
	} else if (n == 0) {
		cds_lfht_del(ht, &old->node);
		__atomic_store_n(&reg->count, reg->count - 1, __ATOMIC_RELAXED);
		ureg__entry_free_unpublished(ne);
		ne = NULL;
	} else {
		cds_lfht_replace(ht, &it, k.hash, entry_match, &k, &ne->node);
	}
	urcu_memb_read_unlock();
	ureg__stamp_key(reg, k.hash);
	__atomic_store_n(&reg->generation, gen, __ATOMIC_RELAXED);
	if (old)
		ureg__entry_retire(old);
	if (ev)
		ureg__event_queue(reg, ev, gen);
	pthread_mutex_unlock(&reg->writer);
	if (ev)
		ureg__events_flush(reg);
	ureg__maybe_resize(reg);
	ureg__clear_err();
	return 0;

fail:
	if (rc == -ENOMEM)
		ureg__err(-ENOMEM, "registry '%s': out of memory registering '%s'",
			  reg->name, key);
	/* only boxes made by this call can be here: old boxes get their
	 * references only once nothing can fail any more */
	if (nib)
		ureg__ibox_free_unused(nib);
	if (nfb)
		ureg__fbox_free_unused(nfb);
	ureg__free(more);
	ureg__entry_free_unpublished(ne);
	ureg__free(ev);
	return rc;
}

int ureg_register(ureg_registry *reg, const char *key, void *item)
{
	return ureg_register_ranked(reg, key, item, 0);
}

int ureg_register_ranked(ureg_registry *reg, const char *key, void *item,
			 int rank)
{
	struct change c = { .op = OP_REGISTER, .item = item, .rank = rank };

	return mutate(reg, key, &c, NULL);
}

int ureg_register_factory(ureg_registry *reg, const char *key,
			  const struct ureg_factory *f)
{
	return ureg_register_factory_ranked(reg, key, f, 0);
}

int ureg_register_factory_ranked(ureg_registry *reg, const char *key,
				 const struct ureg_factory *f, int rank)
{
	struct change c = { .op = OP_FACTORY, .f = f, .rank = rank };

	if (!f)
		return ureg__err(-EINVAL, "register_factory: factory is NULL");
	return mutate(reg, key, &c, NULL);
}

int ureg_replace(ureg_registry *reg, const char *key, void *item)
{
	struct change c = { .op = OP_REPLACE, .item = item };

	return mutate(reg, key, &c, NULL);
}

int ureg_replace_factory(ureg_registry *reg, const char *key,
			 const struct ureg_factory *f)
{
	struct change c = { .op = OP_REPLACE_FACTORY, .f = f };

	if (!f)
		return ureg__err(-EINVAL, "replace_factory: factory is NULL");
	return mutate(reg, key, &c, NULL);
}

int ureg_unregister(ureg_registry *reg, const char *key, unsigned what)
{
	struct change c = { .op = OP_UNREGISTER, .what = what };

	return mutate(reg, key, &c, NULL);
}

int ureg_unregister_ranked(ureg_registry *reg, const char *key, unsigned what,
			   int rank)
{
	struct change c = { .op = OP_UNREGISTER, .what = what, .rank = rank,
			    .by_rank = true };

	return mutate(reg, key, &c, NULL);
}

/* -------------------------------------------------------------- readers */

/*
 * The common front of the calls that need the caller's read section:
 * check arguments, validate and hash the key once, check the section, find
 * the entry in the table this section pinned.  0 with *@e (NULL: absent),
 * or a negative errno with its message set.
 */
static inline int find_in_section(ureg_registry *reg, const char *key,
				  const void *out, const char *call,
				  struct ureg_entry **e)
{
	struct ureg_key k;
	int rc;

	if (UREG_UNLIKELY(!reg || !out))
		return ureg__err(-EINVAL, "%s: NULL registry or out", call);
	if (UREG_UNLIKELY((rc = ureg__key_prepare(key, &k))))
		return rc;
	if (UREG_UNLIKELY(!ureg__thread.read_depth))
		return ureg__err(-EPERM, "registry '%s': %s of '%s' outside ureg_read_lock()",
				 reg->name, call, key);
	*e = ureg__find(ureg__ht(reg), &k);
	return 0;
}

/* Failure messages of the read path: copied, formatted only when read
 * (errors.c), so a miss costs two short copies and no formatting. */
static __attribute__((noinline, cold)) int miss(int err, const char *what,
						const ureg_registry *reg,
						const char *key)
{
	return ureg__err_key(err, what, reg->name, key, strnlen(key, UREG_KEY_MAX));
}

int ureg_lookup(ureg_registry *reg, const char *key, void **item)
{
	struct ureg_entry *e = NULL;
	int rc;

	if (UREG_UNLIKELY((rc = find_in_section(reg, key, item, "lookup", &e))))
		return rc;
	if (UREG_UNLIKELY(!e || !e->item))
		return miss(-ENOENT, "lookup: no singleton under", reg, key);
	*item = e->item;
	return 0;
}

/*
 * What ureg_get makes of entry @e (found in a read section the caller
 * holds).  Singleton first; else the factory's instance in @ctx.
 */
static inline int get_from(ureg_registry *reg, struct ureg_entry *e,
			   const char *key, ureg_ctx *ctx, void **out)
{
	if (UREG_UNLIKELY(!e))
		return miss(-ENOENT, "get: no such key:", reg, key);
	if (e->item) {
		*out = e->item;
		return 0;
	}
	if (UREG_UNLIKELY(!e->fbox))
		return miss(-ENOENT, "get: no singleton and no factory under", reg, key);
	if (UREG_UNLIKELY(!ctx))
		return miss(-ENOENT, "get: only a factory, and no context given, for", reg, key);
	return ureg__ctx_get_instance(ctx, reg, e, out);
}

/*
 * ureg_get outside a read section (ureg.h, ureg_get): a factory's
 * instance belongs to its context and outlives any section, so the call
 * takes a section of its own for the lookup.  A singleton is refused: its
 * borrowed pointer would be dead by the time the caller sees it.
 * TRANSIENT creations run after the section is closed (as
 * ureg_create_instance does); a CONTEXT-scope get keeps it, because the
 * context's instance cache is probed, and replaced, under RCU.
 * @find looks the key up (string or handle) inside the section.
 */
static __attribute__((noinline)) int get_own_section(ureg_registry *reg,
						     ureg_ctx *ctx, void **out,
						     struct ureg_entry *(*find)(ureg_registry *, const void *),
						     const void *key_arg, const char *key)
{
	struct ureg_factory_box *fb;
	struct ureg_entry *e;
	int rc;

	ureg__rcu_ensure();
	ureg_read_lock();
	e = find(reg, key_arg);
	if (e && e->item) {
		ureg_read_unlock();
		return miss(-EPERM, "get outside a read section: it is a singleton (use "
			    "UREG_READ_SECTION or ureg_acquire):", reg, key);
	}
	if (!e || !e->fbox || !ctx || e->fbox->f.scope == UREG_SCOPE_CONTEXT) {
		rc = get_from(reg, e, key, ctx, out);
		ureg_read_unlock();
		return rc;
	}
	fb = e->fbox;
	ureg__fbox_get(fb);
	ureg_read_unlock();
	return ureg__ctx_create_ref(ctx, reg, fb, out); /* the instance keeps the ref */
}

static struct ureg_entry *find_str(ureg_registry *reg, const void *k)
{
	return ureg__find(ureg__ht(reg), k);
}

int ureg_get(ureg_registry *reg, const char *key, ureg_ctx *ctx, void **out)
{
	struct ureg_entry *e = NULL;
	struct ureg_key k;
	int rc;

	if (UREG_UNLIKELY(!ureg__thread.read_depth)) {
		if (!reg || !out)
			return ureg__err(-EINVAL, "get: NULL registry or out");
		if ((rc = ureg__key_prepare(key, &k)))
			return rc;
		return get_own_section(reg, ctx, out, find_str, &k, key);
	}
	if (UREG_UNLIKELY((rc = find_in_section(reg, key, out, "get", &e))))
		return rc;
	return get_from(reg, e, key, ctx, out);
}

/* ------------------------------------------------------ key handles */

/*
 * A refill of a cached handle: a seqlock with a try-lock for writers, so
 * that threads sharing the handle never wait on each other: the thread
 * that loses the CAS skips the refill.  Only on a miss, never on a hit.
 * Readers: handle_cached().
 */
static void handle_fill(ureg_key *k, const struct ureg_entry *e,
			uint64_t stamp, const struct cds_lfht *ht)
{
	uint32_t s = __atomic_load_n(&k->seq, __ATOMIC_RELAXED);

	if ((s & 1) || !__atomic_compare_exchange_n(&k->seq, &s, s + 1, false,
						    __ATOMIC_RELAXED,
						    __ATOMIC_RELAXED))
		return;
	__atomic_thread_fence(__ATOMIC_RELEASE);
	__atomic_store_n(&k->entry, (const void *)e, __ATOMIC_RELAXED);
	__atomic_store_n(&k->stamp, stamp, __ATOMIC_RELAXED);
	__atomic_store_n(&k->table, (const void *)ht, __ATOMIC_RELAXED);
	__atomic_store_n(&k->seq, s + 2, __ATOMIC_RELEASE);
}

/*
 * The entry a handle finds in @reg, inside a read section: the remembered
 * one when the handle is cached, consistent and its stamp and table still
 * current (internal.h, "Stamps"); else the table's, remembered for next
 * time.  0 with *@out (NULL: absent), or -EINVAL.
 */
static inline int handle_find(ureg_registry *reg, ureg_key *k,
			      struct ureg_entry **out)
{
	uint16_t st = __atomic_load_n(&k->state, __ATOMIC_ACQUIRE);
	struct ureg_key tmp;
	const struct ureg_key *use = k;
	struct cds_lfht *ht;
	uint64_t stamp;
	struct ureg_entry *e;

	if (UREG_LIKELY(st == (UREG__KEY_READY | UREG__KEY_CACHED))) {
		uint32_t s1 = __atomic_load_n(&k->seq, __ATOMIC_ACQUIRE);
		const void *ce = __atomic_load_n(&k->entry, __ATOMIC_RELAXED);
		uint64_t cs = __atomic_load_n(&k->stamp, __ATOMIC_RELAXED);
		const void *ct = __atomic_load_n(&k->table, __ATOMIC_RELAXED);
		__atomic_thread_fence(__ATOMIC_ACQUIRE);
		uint32_t s2 = __atomic_load_n(&k->seq, __ATOMIC_RELAXED);

		stamp = __atomic_load_n(&reg->stamps[k->hash & (UREG_STAMP_STRIPES - 1)],
					__ATOMIC_ACQUIRE);
		ht = ureg__ht(reg);
		if (UREG_LIKELY(s2 == (s1 & ~1u) && cs == stamp && ct == ht)) {
			*out = (struct ureg_entry *)ce;
			return 0;
		}
	} else if (UREG_UNLIKELY(!(st & UREG__KEY_READY))) {
		int rc = ureg__key_handle_slow(k, &tmp);
		if (rc < 0)
			return rc;
		if (rc == 1) {
			/* another thread is preparing it: no cache this time */
			*out = ureg__find(ureg__ht(reg), &tmp);
			return 0;
		}
		st = __atomic_load_n(&k->state, __ATOMIC_ACQUIRE);
		stamp = __atomic_load_n(&reg->stamps[k->hash & (UREG_STAMP_STRIPES - 1)],
					__ATOMIC_ACQUIRE);
		ht = ureg__ht(reg);
	} else {
		/* plain handle */
		*out = ureg__find(ureg__ht(reg), use);
		return 0;
	}
	/* miss: the stamp was read before the search, so a change published
	 * meanwhile leaves the remembered stamp stale, never the entry */
	e = ureg__find(ht, use);
	*out = e;
	if (e && (st & UREG__KEY_CACHED) && ht == rcu_dereference(reg->ht))
		handle_fill(k, e, stamp, ht);
	return 0;
}

/* The front of the handle calls that need the caller's read section. */
static inline int handle_in_section(ureg_registry *reg, ureg_key *k,
				    const void *out, const char *call,
				    struct ureg_entry **e)
{
	if (UREG_UNLIKELY(!reg || !k || !out))
		return ureg__err(-EINVAL, "%s: NULL registry, key handle or out", call);
	if (UREG_UNLIKELY(!ureg__thread.read_depth))
		return ureg__err(-EPERM, "registry '%s': %s of '%.*s' outside ureg_read_lock()",
				 reg->name, call, UREG_KEY_MAX, k->str ? k->str : "(null)");
	return handle_find(reg, k, e);
}

/*
 * The cached hit, written to stay a few loads and compares: the handle
 * (one seqlock read), the key's stripe, and this thread's pin of @reg.
 * NULL: not a hit, take the full path.  Inside a read section; writes
 * only this thread's pin slot (when the section has not pinned @reg yet,
 * the hit pins the table the handle remembers, which is then the current
 * one, exactly as a table lookup would pin it).
 */
static inline const struct ureg_entry *handle_hit(ureg_registry *reg,
						  const ureg_key *k)
{
	struct ureg__thread *t = &ureg__thread;
	uint32_t s1, s2;
	const void *ce, *ct;
	uint64_t cs;
	unsigned i;

	if (__atomic_load_n(&k->state, __ATOMIC_ACQUIRE) !=
	    (UREG__KEY_READY | UREG__KEY_CACHED))
		return NULL;
	s1 = __atomic_load_n(&k->seq, __ATOMIC_ACQUIRE);
	ce = __atomic_load_n(&k->entry, __ATOMIC_RELAXED);
	cs = __atomic_load_n(&k->stamp, __ATOMIC_RELAXED);
	ct = __atomic_load_n(&k->table, __ATOMIC_RELAXED);
	__atomic_thread_fence(__ATOMIC_ACQUIRE);
	s2 = __atomic_load_n(&k->seq, __ATOMIC_RELAXED);
	if (UREG_UNLIKELY(s2 != (s1 & ~1u) ||
			  cs != __atomic_load_n(&reg->stamps[k->hash & (UREG_STAMP_STRIPES - 1)],
						__ATOMIC_ACQUIRE)))
		return NULL;
	/* the table: the one this section pinned, or pin the current one */
	i = (unsigned)((uintptr_t)reg >> 6) & (UREG_SNAP_SLOTS - 1);
	if (t->snap[i].section == t->section) {
		if (UREG_UNLIKELY(t->snap[i].reg != reg || t->snap[i].ht != ct))
			return NULL;
	} else {
		if (UREG_UNLIKELY(rcu_dereference(reg->ht) != ct))
			return NULL;
		t->snap[i].reg = reg;
		t->snap[i].section = t->section;
		t->snap[i].ht = (struct cds_lfht *)ct;
	}
	return ce;
}

static __attribute__((noinline)) int lookup_key_full(ureg_registry *reg,
						     ureg_key *k, void **item)
{
	struct ureg_entry *e = NULL;
	int rc;

	if (UREG_UNLIKELY((rc = handle_in_section(reg, k, item, "lookup_key", &e))))
		return rc;
	if (UREG_UNLIKELY(!e || !e->item))
		return miss(-ENOENT, "lookup: no singleton under", reg, k->str);
	*item = e->item;
	return 0;
}

int ureg_lookup_key(ureg_registry *reg, ureg_key *k, void **item)
{
	const struct ureg_entry *e;

	if (UREG_LIKELY(reg && k && item && ureg__thread.read_depth) &&
	    UREG_LIKELY((e = handle_hit(reg, k)) != NULL) && UREG_LIKELY(e->item)) {
		*item = e->item;
		return 0;
	}
	return lookup_key_full(reg, k, item);
}

/* get_own_section's finder for a handle: inside the section it opened */
static struct ureg_entry *find_handle(ureg_registry *reg, const void *k)
{
	struct ureg_entry *e = NULL;

	return handle_find(reg, (ureg_key *)k, &e) ? NULL : e;
}

static __attribute__((noinline)) int get_key_full(ureg_registry *reg,
						  ureg_key *k, ureg_ctx *ctx,
						  void **out)
{
	struct ureg_entry *e = NULL;
	int rc;

	if (UREG_UNLIKELY(reg && k && out && !ureg__thread.read_depth)) {
		struct ureg_key tmp;

		/* validate the handle before taking a section for it */
		if (!(__atomic_load_n(&k->state, __ATOMIC_ACQUIRE) & UREG__KEY_READY) &&
		    (rc = ureg__key_handle_slow(k, &tmp)) < 0)
			return rc;
		return get_own_section(reg, ctx, out, find_handle, k, k->str);
	}
	if (UREG_UNLIKELY((rc = handle_in_section(reg, k, out, "get_key", &e))))
		return rc;
	return get_from(reg, e, k->str, ctx, out);
}

int ureg_get_key(ureg_registry *reg, ureg_key *k, ureg_ctx *ctx, void **out)
{
	const struct ureg_entry *e;

	if (UREG_LIKELY(reg && k && out && ureg__thread.read_depth) &&
	    UREG_LIKELY((e = handle_hit(reg, k)) != NULL) && UREG_LIKELY(e->item)) {
		*out = e->item;
		return 0;
	}
	return get_key_full(reg, k, ctx, out);
}

int ureg_contains_key(ureg_registry *reg, ureg_key *k)
{
	struct ureg_entry *e = NULL;
	int rc;

	ureg__rcu_ensure();
	if (!reg || !k)
		return ureg__err(-EINVAL, "contains_key: NULL registry or key handle");
	ureg_read_lock();
	rc = handle_find(reg, k, &e);
	ureg_read_unlock();
	return rc ? rc : e != NULL;
}

int ureg_acquire_key(ureg_registry *reg, ureg_key *k, ureg_ref **ref)
{
	struct ureg_entry *e = NULL;
	int rc;

	ureg__rcu_ensure();
	if (!reg || !k || !ref)
		return ureg__err(-EINVAL, "acquire_key: NULL registry, key handle or ref");
	ureg_read_lock();
	rc = handle_find(reg, k, &e);
	if (e && e->item) {
		/* safe: the table's reference cannot be dropped before this
		 * read section ends */
		__atomic_add_fetch(&ureg__cold(e)->refs, 1, __ATOMIC_RELAXED);
		__atomic_add_fetch(&ureg__cold(e)->ibox->counted, 1, __ATOMIC_RELAXED);
	} else
		e = NULL;
	ureg_read_unlock();
	if (rc)
		return rc;
	if (!e)
		return ureg__err(-ENOENT, "registry '%s': no singleton under '%s'",
				 reg->name, k->str);
	*ref = (ureg_ref *)e;
	return 0;
}

int ureg_create_instance_key(ureg_registry *reg, ureg_key *k, ureg_ctx *ctx,
			     void **out)
{
	struct ureg_entry *e = NULL;
	struct ureg_factory_box *fb = NULL;
	int rc;

	ureg__rcu_ensure();
	if (!reg || !k || !ctx || !out)
		return ureg__err(-EINVAL, "create_instance_key: NULL registry, key handle, context or out");
	ureg_read_lock();
	rc = handle_find(reg, k, &e);
	if (e && e->fbox) {
		fb = e->fbox;
		ureg__fbox_get(fb);
	}
	ureg_read_unlock();
	if (rc)
		return rc;
	if (!fb)
		return ureg__err(-ENOENT, "registry '%s': no factory under '%s'",
				 reg->name, k->str);
	return ureg__ctx_create_ref(ctx, reg, fb, out); /* the instance keeps the ref */
}

int ureg_create_instance(ureg_registry *reg, const char *key, ureg_ctx *ctx,
			 void **out)
{
	struct ureg_key k;
	struct ureg_entry *e;
	struct ureg_factory_box *fb = NULL;
	int rc;

	ureg__rcu_ensure();
	if (!reg || !ctx || !out)
		return ureg__err(-EINVAL, "create_instance: NULL registry, context or out");
	if ((rc = ureg__key_prepare(key, &k)))
		return rc;
	ureg_read_lock();
	e = ureg__find(ureg__ht(reg), &k);
	if (e && e->fbox) {
		fb = e->fbox;
		ureg__fbox_get(fb);
	}
	ureg_read_unlock();
	if (!fb)
		return ureg__err(-ENOENT, "registry '%s': no factory under '%s'",
				 reg->name, key);
	return ureg__ctx_create_ref(ctx, reg, fb, out); /* the instance keeps the ref */
}

int ureg_contains(ureg_registry *reg, const char *key)
{
	struct ureg_key k;
	int rc;

	ureg__rcu_ensure();
	if (!reg)
		return ureg__err(-EINVAL, "contains: registry is NULL");
	if ((rc = ureg__key_prepare(key, &k)))
		return rc;
	ureg_read_lock();
	rc = ureg__find(ureg__ht(reg), &k) != NULL;
	ureg_read_unlock();
	return rc;
}

int ureg_acquire(ureg_registry *reg, const char *key, ureg_ref **ref)
{
	struct ureg_key k;
	struct ureg_entry *e;
	int rc;

	ureg__rcu_ensure();
	if (!reg || !ref)
		return ureg__err(-EINVAL, "acquire: NULL registry or ref");
	if ((rc = ureg__key_prepare(key, &k)))
		return rc;
	ureg_read_lock();
	e = ureg__find(ureg__ht(reg), &k);
	if (e && e->item) {
		/* safe: the table's reference cannot be dropped before this
		 * read section ends */
		__atomic_add_fetch(&ureg__cold(e)->refs, 1, __ATOMIC_RELAXED);
		__atomic_add_fetch(&ureg__cold(e)->ibox->counted, 1, __ATOMIC_RELAXED);
	} else
		e = NULL;
	ureg_read_unlock();
	if (!e)
		return ureg__err(-ENOENT, "registry '%s': no singleton under '%s'",
				 reg->name, key);
	*ref = (ureg_ref *)e;
	return 0;
}

void *ureg_ref_item(const ureg_ref *ref)
{
	return ref ? ((const struct ureg_entry *)ref)->item : NULL;
}

void ureg_ref_release(ureg_ref *ref)
{
	struct ureg_entry *e = (struct ureg_entry *)ref;

	if (!e)
		return;
	__atomic_sub_fetch(&ureg__cold(e)->ibox->counted, 1, __ATOMIC_RELAXED);
	entry_put(e);
}

int ureg_keys(ureg_registry *reg, char ***keys, size_t *n)
{
	struct cds_lfht_iter iter;
	struct ureg_entry *e;
	struct cds_lfht *ht;
	size_t cap = 16, len = 0;
	char **v;
	int rc = 0;

	ureg__rcu_ensure();
	if (!reg || !keys)
		return ureg__err(-EINVAL, "keys: NULL registry or out");
	v = ureg__malloc(cap * sizeof(*v));
	if (!v)
		return ureg__err(-ENOMEM, "keys: out of memory");
	ureg_read_lock();
	ht = ureg__ht(reg);
	cds_lfht_for_each_entry(ht, &iter, e, node) {
		if (len + 1 >= cap) {
			char **nv = ureg__realloc(v, cap * 2 * sizeof(*v));
			if (!nv) {
				rc = -ENOMEM;
				break;
			}
			v = nv;
			cap *= 2;
		}
		if (!(v[len] = ureg__strdup(e->key))) {
			rc = -ENOMEM;
			break;
		}
		len++;
	}
	ureg_read_unlock();
	v[len] = NULL;
	if (rc) {
		ureg_keys_free(v);
		return ureg__err(rc, "keys: out of memory");
	}
	*keys = v;
	if (n)
		*n = len;
	return 0;
}

void ureg_keys_free(char **keys)
{
	if (!keys)
		return;
	for (char **p = keys; *p; p++)
		ureg__free(*p);
	ureg__free(keys);
}

int ureg_entry_info(ureg_registry *reg, const char *key,
		    struct ureg_entry_info *info)
{
	struct ureg_entry *e = NULL;
	int rc;

	if ((rc = find_in_section(reg, key, info, "entry_info", &e)))
		return rc;
	if (!e)
		return miss(-ENOENT, "entry_info: no such key:", reg, key);
	info->has_singleton = e->item != NULL;
	info->has_factory = e->fbox != NULL;
	info->scope = e->fbox ? e->fbox->f.scope : UREG_SCOPE_TRANSIENT;
	info->generation = ureg__cold(e)->generation;
	info->provider = ureg__cold(e)->provider;
	info->source_file = ureg__cold(e)->source_file;
	info->source_line = ureg__cold(e)->source_line;
	info->source_column = ureg__cold(e)->source_column;
	info->rank = e->item ? ureg__cold(e)->srank : ureg__cold(e)->frank;
	info->providers = (e->item != NULL) + (e->fbox != NULL) + ureg__cold(e)->nmore;
	return 0;
}

static void provider_fill(struct ureg_provider_info *p, int rank, bool active,
			  const struct ureg_item_box *ib,
			  const struct ureg_factory_box *fb)
{
	p->what = ib ? UREG_SINGLETON : UREG_FACTORY;
	p->rank = rank;
	p->active = active;
	p->item = ib ? ib->item : NULL;
	p->scope = fb ? fb->f.scope : UREG_SCOPE_TRANSIENT;
}

int ureg_providers(ureg_registry *reg, const char *key,
		   struct ureg_provider_info *out, size_t cap)
{
	struct ureg_entry *e = NULL;
	struct ureg_entry_cold *c;
	struct ureg_provider_info tmp[2];
	size_t n = 0, top = 0;
	int rc;

	if (!out && cap)
		return ureg__err(-EINVAL, "providers: out is NULL but cap is %zu", cap);
	if ((rc = find_in_section(reg, key, &cap /* out checked above */, "providers", &e)))
		return rc;
	if (!e)
		return miss(-ENOENT, "providers: no such key:", reg, key);
	c = ureg__cold(e);
	/* the two active ones, in rank order, then the rest (already sorted):
	 * merged, so the whole list is in rank order */
	if (c->ibox)
		provider_fill(&tmp[top++], c->srank, true, c->ibox, NULL);
	if (e->fbox)
		provider_fill(&tmp[top++], c->frank, true, NULL, e->fbox);
	if (top == 2 && tmp[1].rank > tmp[0].rank) {
		struct ureg_provider_info t = tmp[0];
		tmp[0] = tmp[1];
		tmp[1] = t;
	}
	for (size_t i = 0, j = 0; i < top || j < c->nmore; n++) {
		struct ureg_provider_info p;

		if (i < top && (j == c->nmore || tmp[i].rank > c->more[j].rank ||
				(tmp[i].rank == c->more[j].rank &&
				 tmp[i].what == UREG_SINGLETON)))
			p = tmp[i++];
		else {
			provider_fill(&p, c->more[j].rank, false, c->more[j].ib,
				      c->more[j].fb);
			j++;
		}
		if (n < cap)
			out[n] = p;
	}
	return (int)n;
}

/* ---------------------------------------------------------------- drain */

/*
 * ureg_drain: unregister, then wait until the removed entry's boxes are
 * held by nobody but the drain.
 *
 * The removed entry still holds its boxes until its grace period ends
 * (call_rcu drops the table's reference).  The drain queues a marker
 * callback behind that retirement and waits for it without a deadline (a
 * grace period is bounded by read sections, which the contract keeps
 * short); the deadline applies to the holders: counted references and
 * live instances, which only their owners can drop.  Every box put wakes
 * the drain (drain_wake), so the wait is a futex wait with the time left,
 * re-checked after each wake.
 */
struct drain_marker {
	struct rcu_head rcu;
	uint32_t fired;
};

static void drain_marker_cb(struct rcu_head *head)
{
	struct drain_marker *m = caa_container_of(head, struct drain_marker, rcu);

	/* the drain may return (and its stack frame go) once it sees fired:
	 * touch only globals afterwards */
	__atomic_store_n(&m->fired, 1, __ATOMIC_SEQ_CST);
	__atomic_add_fetch(&drain_seq, 1, __ATOMIC_SEQ_CST);
	syscall(SYS_futex, &drain_seq, FUTEX_WAKE_PRIVATE, INT_MAX, NULL, NULL, 0);
}

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static bool drain_held(const struct drain_grab *g)
{
	return (g->ib && __atomic_load_n(&g->ib->refs, __ATOMIC_SEQ_CST) > 1) ||
	       (g->fb && __atomic_load_n(&g->fb->refs, __ATOMIC_SEQ_CST) > 1);
}

struct holders_walk {
	const struct ureg_factory_box *fb;
	struct ureg_drain_report *rep;
};

static int count_holder(ureg_ctx *ctx, void *arg)
{
	struct holders_walk *w = arg;
	size_t n = ureg__ctx_instances_of(ctx, w->fb);

	if (n) {
		struct ureg_drain_report *r = w->rep;

		r->instances += n;
		if (r->nholders < UREG_DRAIN_HOLDERS_MAX) {
			struct ureg_drain_holder *h = &r->holders[r->nholders++];

			h->ctx = ctx;
			h->instances = n;
			snprintf(h->name, sizeof(h->name), "%s", ureg_ctx_name(ctx));
		}
		r->contexts++;
	}
	return 0;
}

/* Who still holds what the drain waits for; the message for last_error. */
static void drain_report(const struct drain_grab *g, struct ureg_drain_report *r)
{
	memset(r, 0, sizeof(*r));
	if (g->ib)
		r->refs = (size_t)__atomic_load_n(&g->ib->counted, __ATOMIC_RELAXED);
	if (g->fb) {
		struct holders_walk w = { .fb = g->fb, .rep = r };
		long held = __atomic_load_n(&g->fb->refs, __ATOMIC_RELAXED) - 1;

		(void)ureg_ctx_foreach(count_holder, &w);
		if (held > (long)r->instances)
			r->other = (size_t)held - r->instances;
	}
}

int ureg_drain(ureg_registry *reg, const char *key, unsigned what,
	       unsigned timeout_ms, struct ureg_drain_report *report)
{
	struct drain_grab g = { NULL, NULL };
	struct drain_marker m = { .fired = 0 };
	struct ureg_drain_report local;
	uint64_t deadline;
	int rc;

	ureg__rcu_ensure();
	if (report)
		memset(report, 0, sizeof(*report));
	if (!reg)
		return ureg__err(-EINVAL, "drain: registry is NULL");
	if (ureg__thread.read_depth || urcu_memb_read_ongoing())
		return ureg__err(-EPERM, "registry '%s': drain of '%s' inside a read section "
				 "(it waits for a grace period)", reg->name, key ? key : "(null)");
	deadline = 0; /* set once the grace period is over */

	/* raised before the unregister: every later put wakes us */
	__atomic_add_fetch(&drain_active, 1, __ATOMIC_SEQ_CST);
	{
		struct change c = { .op = OP_UNREGISTER, .what = what };

		rc = mutate(reg, key, &c, &g);
	}
	if (rc) {
		__atomic_sub_fetch(&drain_active, 1, __ATOMIC_SEQ_CST);
		return rc;
	}
	ureg__call_rcu(&m.rcu, drain_marker_cb);

	for (;;) {
		uint32_t seq = __atomic_load_n(&drain_seq, __ATOMIC_SEQ_CST);
		bool fired = __atomic_load_n(&m.fired, __ATOMIC_SEQ_CST);
		struct timespec ts, *tsp = NULL;
		uint64_t now;

		if (fired && !drain_held(&g))
			break;
		if (fired) {
			if (!deadline)
				deadline = timeout_ms == UREG_WAIT_FOREVER ? UINT64_MAX :
					now_ns() + (uint64_t)timeout_ms * 1000000u;
			if (deadline != UINT64_MAX) {
				now = now_ns();
				if (now >= deadline)
					break;
				ts.tv_sec = (time_t)((deadline - now) / 1000000000u);
				ts.tv_nsec = (long)((deadline - now) % 1000000000u);
				tsp = &ts;
			}
		}
		/* not fired yet: the grace period, no deadline (see above) */
		syscall(SYS_futex, &drain_seq, FUTEX_WAIT_PRIVATE, seq, tsp, NULL, 0);
	}

	rc = 0;
	if (drain_held(&g)) {
		char who[256] = "";
		size_t off = 0;

		drain_report(&g, &local);
		for (size_t i = 0; i < local.nholders && off < sizeof(who); i++)
			off += (size_t)snprintf(who + off, sizeof(who) - off, "%s%s%s: %zu",
						i ? ", " : "",
						local.holders[i].name[0] ? "" : "(unnamed)",
						local.holders[i].name, local.holders[i].instances);
		rc = ureg__err(-ETIMEDOUT, "registry '%s': drain of '%s' timed out after %u ms: "
			       "%zu instance%s in %zu context%s (%s), %zu counted reference%s, "
			       "%zu other reference%s (creations in flight, pinned entries)",
			       reg->name, key, timeout_ms,
			       local.instances, local.instances == 1 ? "" : "s",
			       local.contexts, local.contexts == 1 ? "" : "s", who,
			       local.refs, local.refs == 1 ? "" : "s",
			       local.other, local.other == 1 ? "" : "s");
		if (report)
			*report = local;
	}
	__atomic_sub_fetch(&drain_active, 1, __ATOMIC_SEQ_CST);
	/* the last references, when drained: destructor and arg_free run here */
	ureg__ibox_put(g.ib);
	ureg__fbox_put(g.fb);
	if (rc == 0)
		ureg__clear_err();
	return rc;
}
