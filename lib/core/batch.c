/* SPDX-License-Identifier: MIT */
/*
 * Batches: many changes to one registry published as one generation.
 *
 * The live table is never edited in place.  Commit builds the next table
 * beside it - the batch's entries plus a copy of every untouched entry
 * (sharing its item and factory boxes) - and publishes it with a single
 * rcu_assign_pointer.  A reader's read section therefore runs entirely on
 * one generation: all of a batch or none of it.  After a grace period no
 * reader is left on the old table; its entries are retired (their boxes
 * die with their last reference) and the table is destroyed.
 */
#include <stdlib.h>
#include "internal.h"

struct batch_op {
	struct batch_op *next;
	struct ureg_key k;             /* k.str points to key[] */
	struct ureg_item_box *ib;      /* NULL: no singleton */
	struct ureg_factory_box *fb;   /* NULL: no factory */
	int srank, frank;              /* ranks of ib and fb */
	uint32_t nmore;                /* lower-ranked providers (batch_add) */
	struct ureg_prov *more;        /* their boxes are owned like ib, fb */
	struct ureg_source src;        /* strings owned */
	char key[];
};

/* The ops, newest first, plus an open-addressing index of them by key
 * hash (linear probing, at most half full) so that put's duplicate check
 * and add's lookup cost O(1): a config of 100,000 entries is one batch. */
struct ureg_batch {
	ureg_registry *reg;
	struct batch_op *ops;
	size_t n;
	struct batch_op **idx;
	size_t idx_mask;               /* slots - 1; 0 with no index yet */
};

static struct batch_op *op_find_hashed(const ureg_batch *b, uint64_t hash,
				       const char *key, size_t len)
{
	if (!b->idx)
		return NULL;
	for (size_t i = hash & b->idx_mask;; i = (i + 1) & b->idx_mask) {
		struct batch_op *op = b->idx[i];
		if (!op)
			return NULL;
		if (op->k.hash == hash && op->k.len == len && !memcmp(op->key, key, len))
			return op;
	}
}

static struct batch_op *op_find(ureg_batch *b, const struct ureg_key *k)
{
	return op_find_hashed(b, k->hash, k->str, k->len);
}

static void idx_place(struct batch_op **idx, size_t mask, struct batch_op *op)
{
	size_t i = op->k.hash & mask;

	while (idx[i])
		i = (i + 1) & mask;
	idx[i] = op;
}

/* Room for one more op in the index: may allocate (-ENOMEM, batch as it
 * was), so put calls it before it changes anything. */
static int idx_reserve(ureg_batch *b)
{
	size_t slots = b->idx ? b->idx_mask + 1 : 0;
	struct batch_op **idx;

	if ((b->n + 1) * 2 <= slots)
		return 0;
	slots = slots ? slots * 2 : 16;
	if (!(idx = ureg__calloc(slots, sizeof(*idx))))
		return -ENOMEM;
	for (struct batch_op *op = b->ops; op; op = op->next)
		idx_place(idx, slots - 1, op);
	ureg__free(b->idx);
	b->idx = idx;
	b->idx_mask = slots - 1;
	return 0;
}

int ureg_batch_new(ureg_registry *reg, ureg_batch **out)
{
	ureg__rcu_ensure();
	if (!reg || !out)
		return ureg__err(-EINVAL, "batch_new: NULL registry or out");
	ureg_batch *b = ureg__calloc(1, sizeof(*b));
	if (!b)
		return ureg__err(-ENOMEM, "batch_new: out of memory");
	b->reg = reg;
	*out = b;
	return 0;
}

static void op_free(struct batch_op *op, bool destroy_payload)
{
	if (destroy_payload) {
		ureg__ibox_put(op->ib);
		ureg__fbox_put(op->fb);
		for (uint32_t i = 0; i < op->nmore; i++) {
			ureg__ibox_put(op->more[i].ib);
			ureg__fbox_put(op->more[i].fb);
		}
	}
	ureg__free(op->more);
	ureg__free((char *)op->src.provider);
	ureg__free((char *)op->src.file);
	ureg__free(op);
}

int ureg_batch_put(ureg_batch *b, const char *key, void *item,
		   const struct ureg_factory *f, const struct ureg_source *src)
{
	struct ureg_key k;
	struct batch_op *op;
	int rc;

	if (!b)
		return ureg__err(-EINVAL, "batch_put: batch is NULL");
	if ((rc = ureg__key_prepare(key, &k)))
		return rc;
	if (f && (!f->create || (f->scope != UREG_SCOPE_TRANSIENT &&
				 f->scope != UREG_SCOPE_CONTEXT) ||
		  !ureg__reserved_zero(f->reserved)))
		return ureg__err(-EINVAL, "batch_put: factory for '%s' has no create function, a bad scope or nonzero reserved fields", key);
	if (src && !ureg__reserved_zero(src->reserved))
		return ureg__err(-EINVAL, "batch_put: source of '%s' has nonzero reserved fields", key);
	if (op_find(b, &k))
		return ureg__err(-EEXIST, "batch_put: key '%s' is already in this batch", key);
	if (idx_reserve(b))
		return ureg__err(-ENOMEM, "batch_put: out of memory");
	op = ureg__calloc(1, sizeof(*op) + k.len + 1);
	if (!op)
		return ureg__err(-ENOMEM, "batch_put: out of memory");
	memcpy(op->key, key, k.len + 1);
	op->k = k;
	op->k.str = op->key;
	if (item && !(op->ib = ureg__ibox_new(b->reg, item)))
		goto nomem;
	if (f && !(op->fb = ureg__fbox_new(b->reg, &op->k, f)))
		goto nomem;
	if (src) {
		if (src->provider && !(op->src.provider = ureg__strdup(src->provider)))
			goto nomem;
		if (src->file && !(op->src.file = ureg__strdup(src->file)))
			goto nomem;
		op->src.line = src->line;
		op->src.column = src->column;
	}
	op->next = b->ops;
	b->ops = op;
	b->n++;
	idx_place(b->idx, b->idx_mask, op); /* reserved above: cannot fail */
	return 0;
nomem:
	/* the caller keeps item and f->arg: free only our wrappers */
	if (op->ib)
		ureg__ibox_free_unused(op->ib);
	if (op->fb)
		ureg__fbox_free_unused(op->fb);
	op->ib = NULL;
	op->fb = NULL;
	op_free(op, false);
	return ureg__err(-ENOMEM, "batch_put: out of memory");
}

static int rank_desc(const void *a, const void *b)
{
	const struct ureg_prov *x = a, *y = b;

	if (x->rank != y->rank)
		return x->rank < y->rank ? 1 : -1;
	return (x->ib == NULL) - (y->ib == NULL);
}

/* Insert provider @p into @op's set: the top of its kind, or below it. */
static void op_insert(struct batch_op *op, struct ureg_prov p)
{
	struct ureg_prov down = { 0 };
	bool have_down = true;

	if (p.ib) {
		if (!op->ib) {
			op->ib = p.ib, op->srank = p.rank, have_down = false;
		} else if (p.rank > op->srank) {
			down = (struct ureg_prov){ op->srank, op->ib, NULL };
			op->ib = p.ib, op->srank = p.rank;
		} else {
			down = p;
		}
	} else {
		if (!op->fb) {
			op->fb = p.fb, op->frank = p.rank, have_down = false;
		} else if (p.rank > op->frank) {
			down = (struct ureg_prov){ op->frank, NULL, op->fb };
			op->fb = p.fb, op->frank = p.rank;
		} else {
			down = p;
		}
	}
	if (have_down) /* room was made by the caller */
		op->more[op->nmore++] = down;
}

static bool op_has(const struct batch_op *op, bool singleton, int rank)
{
	if (singleton ? op->ib && op->srank == rank : op->fb && op->frank == rank)
		return true;
	for (uint32_t i = 0; i < op->nmore; i++)
		if ((singleton ? op->more[i].ib != NULL : op->more[i].fb != NULL) &&
		    op->more[i].rank == rank)
			return true;
	return false;
}

int ureg_batch_add(ureg_batch *b, const char *key, void *item,
		   const struct ureg_factory *f, int rank,
		   const struct ureg_source *src)
{
	struct ureg_key k;
	struct batch_op *op;
	struct ureg_item_box *ib = NULL;
	struct ureg_factory_box *fb = NULL;
	struct ureg_prov *more;
	char *prov = NULL, *file = NULL;
	bool first;
	int rc;

	if (!b)
		return ureg__err(-EINVAL, "batch_add: batch is NULL");
	if ((rc = ureg__key_prepare(key, &k)))
		return rc;
	if (!item && !f)
		return ureg__err(-EINVAL, "batch_add: neither an item nor a factory for '%s'", key);
	if (f && (!f->create || (f->scope != UREG_SCOPE_TRANSIENT &&
				 f->scope != UREG_SCOPE_CONTEXT) ||
		  !ureg__reserved_zero(f->reserved)))
		return ureg__err(-EINVAL, "batch_add: factory for '%s' has no create function, a bad scope or nonzero reserved fields", key);
	if (src && !ureg__reserved_zero(src->reserved))
		return ureg__err(-EINVAL, "batch_add: source of '%s' has nonzero reserved fields", key);
	if (!(op = op_find(b, &k))) {
		/* the key's first provider in this batch: a put */
		if ((rc = ureg_batch_put(b, key, item, f, src)))
			return rc;
		b->ops->srank = b->ops->frank = rank;
		return 0;
	}
	if (!op->ib && !op->fb)
		return ureg__err(-EEXIST, "batch_add: key '%s' is removed in this batch", key);
	if ((item && op_has(op, true, rank)) || (f && op_has(op, false, rank)))
		return ureg__err(-EEXIST, "batch_add: key '%s' already has a %s at rank %d in this batch",
				 key, item && op_has(op, true, rank) ? "singleton" : "factory", rank);
	/* the key's source is that of the provider ureg_get uses first */
	first = item ? !op->ib || rank > op->srank :
		!op->ib && (!op->fb || rank > op->frank);
	/* everything that can fail first: the batch stays as it was */
	if (!(more = ureg__realloc(op->more, (op->nmore + 2) * sizeof(*more))))
		return ureg__err(-ENOMEM, "batch_add: out of memory");
	op->more = more;
	if (first && src && ((src->provider && !(prov = ureg__strdup(src->provider))) ||
			     (src->file && !(file = ureg__strdup(src->file))))) {
		ureg__free(prov);
		return ureg__err(-ENOMEM, "batch_add: out of memory");
	}
	if ((item && !(ib = ureg__ibox_new(b->reg, item))) ||
	    (f && !(fb = ureg__fbox_new(b->reg, &op->k, f)))) {
		if (ib)
			ureg__ibox_free_unused(ib);
		ureg__free(prov);
		ureg__free(file);
		return ureg__err(-ENOMEM, "batch_add: out of memory");
	}
	if (first && src) {
		ureg__free((char *)op->src.provider);
		ureg__free((char *)op->src.file);
		op->src.provider = prov;
		op->src.file = file;
		op->src.line = src->line;
		op->src.column = src->column;
	}
	if (ib)
		op_insert(op, (struct ureg_prov){ rank, ib, NULL });
	if (fb)
		op_insert(op, (struct ureg_prov){ rank, NULL, fb });
	qsort(op->more, op->nmore, sizeof(*op->more), rank_desc);
	return 0;
}

void ureg_batch_abort(ureg_batch *b)
{
	if (!b)
		return;
	for (struct batch_op *op = b->ops, *next; op; op = next) {
		next = op->next;
		op_free(op, true);
	}
	ureg__free(b->idx);
	ureg__free(b);
}

/* Entries of an unpublished table: empty it, drop what each took. */
static void unbuilt_table_free(struct cds_lfht *ht, bool keep_op_boxes,
			       struct ureg_batch *b)
{
	struct cds_lfht_iter iter;
	struct ureg_entry *e;

	urcu_memb_read_lock();
	cds_lfht_for_each_entry(ht, &iter, e, node) {
		cds_lfht_del(ht, &e->node);
		/* an entry made from this batch's op for its key holds the
		 * op's own boxes; a copied live entry holds others */
		struct batch_op *op = op_find_hashed(b, ureg__cold(e)->hash, e->key, e->keylen);
		bool from_op = op &&
			((ureg__cold(e)->ibox && ureg__cold(e)->ibox == op->ib) ||
			 (e->fbox && e->fbox == op->fb));
		if (!(from_op && keep_op_boxes)) {
			/* copies of live entries took a reference each */
			if (ureg__cold(e)->ibox)
				__atomic_sub_fetch(&ureg__cold(e)->ibox->refs, 1, __ATOMIC_RELAXED);
			if (e->fbox)
				__atomic_sub_fetch(&e->fbox->trefs, 1, __ATOMIC_RELAXED);
			ureg__entry_unshare_more(e);
		}
		ureg__entry_retire_unused(e);
	}
	urcu_memb_read_unlock();
	ureg__ht_destroy(ht);
}

/* A batch's next generation, built beside the live table. */
struct built {
	ureg_registry *reg;
	struct cds_lfht *ht;
	struct cds_lfht *old_ht;
	struct cds_list_head events;   /* prepared ureg_event_node */
	size_t count;
	unsigned long buckets;
	uint64_t gen;
};

static void built_events_free(struct built *bt)
{
	struct ureg_event_node *evn, *tmp;

	cds_list_for_each_entry_safe(evn, tmp, &bt->events, node) {
		cds_list_del(&evn->node);
		ureg__free(evn);
	}
}

/*
 * With b->reg's writer mutex held: build the table of the next generation
 * (the batch's entries plus a copy of every entry it does not touch) and
 * prepare its events.  Every allocation of a commit happens here; on
 * -ENOMEM everything built is freed and nothing is visible.
 */
static int batch_build(ureg_batch *b, uint64_t generation, struct built *bt)
{
	ureg_registry *reg = b->reg;
	bool want_events = ureg__has_listeners(reg);
	struct cds_lfht_iter iter;
	struct ureg_entry *e, *ne;
	struct ureg_event_node *evn;

	CDS_INIT_LIST_HEAD(&bt->events);
	bt->reg = reg;
	bt->old_ht = reg->ht;
	bt->gen = reg->generation + 1;
	bt->count = 0;
	bt->buckets = ureg__buckets_for(reg->count + b->n);
	if (!generation)
		generation = bt->gen;
	if (!(bt->ht = ureg__ht_new(reg->count + b->n)))
		return -ENOMEM;

	urcu_memb_read_lock();
	/* 1. the batch's own entries; removals as placeholder entries */
	for (struct batch_op *op = b->ops; op; op = op->next) {
		struct ureg_entry *old = ureg__find(bt->old_ht, &op->k);
		if (!(ne = ureg__entry_alloc(&op->k)))
			goto nomem;
		ureg__cold(ne)->ibox = op->ib;
		ne->item = op->ib ? op->ib->item : NULL;
		ureg__entry_set_fbox(ne, op->fb);
		ureg__cold(ne)->srank = op->srank;
		ureg__cold(ne)->frank = op->frank;
		ureg__cold(ne)->generation = generation;
		if (ureg__entry_set_source(ne, &op->src)) {
			ureg__entry_free_unpublished(ne);
			goto nomem;
		}
		if (op->nmore) {
			/* the op's references move to the entry on publish */
			struct ureg_prov *m = ureg__malloc(op->nmore * sizeof(*m));

			if (!m) {
				ureg__entry_free_unpublished(ne);
				goto nomem;
			}
			memcpy(m, op->more, op->nmore * sizeof(*m));
			ureg__cold(ne)->more = m;
			ureg__cold(ne)->nmore = op->nmore;
		}
		cds_lfht_add(bt->ht, op->k.hash, &ne->node);
		if (want_events && (old || op->ib || op->fb)) {
			enum ureg_event_kind kind = !(op->ib || op->fb) ?
				UREG_EV_UNREGISTERED : old ? UREG_EV_REPLACED :
				UREG_EV_REGISTERED;
			if (!(evn = ureg__event_prepare(reg, kind, op->key)))
				goto nomem;
			cds_list_add_tail(&evn->node, &bt->events);
		}
	}
	/* 2. copies of every entry the batch does not touch */
	cds_lfht_for_each_entry(bt->old_ht, &iter, e, node) {
		struct ureg_entry_cold *c = ureg__cold(e);
		struct ureg_key k = { .str = e->key, .len = e->keylen, .hash = c->hash };
		if (ureg__find(bt->ht, &k))
			continue;
		if (!(ne = ureg__entry_alloc(&k)))
			goto nomem;
		/* with the lower-ranked providers (ranking), one reference
		 * each: the last step that can fail */
		if (ureg__entry_copy_source(ne, e) ||
		    ureg__entry_copy_more(ne, e, true)) {
			ureg__entry_free_unpublished(ne);
			goto nomem;
		}
		ureg__cold(ne)->ibox = c->ibox;
		ne->item = e->item;
		ureg__entry_set_fbox(ne, e->fbox);
		if (c->ibox)
			ureg__ibox_get(c->ibox);
		if (ne->fbox)
			ureg__fbox_get(ne->fbox);
		cds_lfht_add(bt->ht, k.hash, &ne->node);
	}
	if (want_events) {
		if (!(evn = ureg__event_prepare(reg, UREG_EV_RELOAD_APPLIED, NULL)))
			goto nomem;
		cds_list_add_tail(&evn->node, &bt->events);
	}
	/* 3. drop the removal placeholders; count */
	cds_lfht_for_each_entry(bt->ht, &iter, e, node) {
		if (!e->item && !e->fbox) {
			cds_lfht_del(bt->ht, &e->node);
			ureg__entry_retire_unused(e);
		} else {
			bt->count++;
		}
	}
	urcu_memb_read_unlock();
	return 0;

nomem:
	urcu_memb_read_unlock();
	unbuilt_table_free(bt->ht, true, b);
	built_events_free(bt);
	return -ENOMEM;
}

/* With the writer mutex held: one pointer store makes it live. */
static void batch_publish(ureg_batch *b, struct built *bt)
{
	ureg_registry *reg = b->reg;
	struct ureg_event_node *evn, *tmp;

	/* every stripe odd before the new table is visible, a fresh even
	 * value after it, before the old table's entries are retired (after
	 * the grace period below): internal.h, "Stamps" */
	ureg__stamp_all_begin(reg);
	rcu_assign_pointer(reg->ht, bt->ht);
	ureg__stamp_all(reg);
	__atomic_store_n(&reg->buckets, bt->buckets, __ATOMIC_RELAXED);
	__atomic_store_n(&reg->count, bt->count, __ATOMIC_RELAXED);
	__atomic_store_n(&reg->generation, bt->gen, __ATOMIC_RELAXED);
	cds_list_for_each_entry_safe(evn, tmp, &bt->events, node) {
		cds_list_del(&evn->node);
		ureg__event_queue(reg, evn, bt->gen);
	}
}

/* After publish: the boxes now belong to the published entries. */
static void batch_free_published(ureg_batch *b)
{
	for (struct batch_op *op = b->ops, *next; op; op = next) {
		next = op->next;
		op_free(op, false);
	}
	ureg__free(b->idx);
	ureg__free(b);
}

/* After a grace period: no reader is left on the old table. */
static void retire_old_table(ureg_registry *reg, struct cds_lfht *old_ht)
{
	struct cds_lfht_iter iter;
	struct ureg_entry *e;

	urcu_memb_read_lock();
	cds_lfht_for_each_entry(old_ht, &iter, e, node) {
		cds_lfht_del(old_ht, &e->node);
		ureg__entry_retire(e);
	}
	urcu_memb_read_unlock();
	pthread_mutex_lock(&reg->resize_lock); /* no resize of old_ht running */
	pthread_mutex_unlock(&reg->resize_lock);
	ureg__ht_destroy(old_ht);
	ureg__maybe_resize(reg);
}

int ureg_batch_commit(ureg_batch *b, uint64_t generation)
{
	return ureg_batch_commit_all(&b, 1, generation);
}

static int reg_order(const void *a, const void *b)
{
	uintptr_t x = (uintptr_t)(*(ureg_batch *const *)a)->reg;
	uintptr_t y = (uintptr_t)(*(ureg_batch *const *)b)->reg;
	return x < y ? -1 : x > y;
}

int ureg_batch_commit_all(ureg_batch **bs, size_t n, uint64_t generation)
{
	struct built one, *bt = &one;
	ureg_batch *sorted_one, **sorted = &sorted_one;
	size_t i, j;
	int rc = 0;

	ureg__rcu_ensure();
	if (!bs || n == 0)
		return ureg__err(-EINVAL, "batch_commit: no batch");
	for (i = 0; i < n; i++) {
		if (!bs[i])
			return ureg__err(-EINVAL, "batch_commit: batch %zu is NULL", i);
		for (j = 0; j < i; j++)
			if (bs[j]->reg == bs[i]->reg)
				return ureg__err(-EINVAL, "batch_commit: two batches for registry '%s'",
						 bs[i]->reg->name);
	}
	if (ureg__thread.read_depth || urcu_memb_read_ongoing())
		return ureg__err(-EPERM, "batch_commit inside a read section would deadlock");
	if (n > 1) {
		bt = ureg__malloc(n * sizeof(*bt));
		sorted = ureg__malloc(n * sizeof(*sorted));
		if (!bt || !sorted) {
			ureg__free(bt);
			ureg__free(sorted);
			return ureg__err(-ENOMEM, "batch_commit: out of memory, nothing changed");
		}
	}
	/* writer mutexes in address order: two multi-commits cannot deadlock */
	memcpy(sorted, bs, n * sizeof(*sorted));
	qsort(sorted, n, sizeof(*sorted), reg_order);
	for (i = 0; i < n; i++)
		pthread_mutex_lock(&sorted[i]->reg->writer);
	for (i = 0; i < n && rc == 0; i++)
		rc = batch_build(sorted[i], generation, &bt[i]);
	if (rc) {
		/* batch i-1 freed its own; undo the ones before it */
		for (j = 0; j + 1 < i; j++) {
			unbuilt_table_free(bt[j].ht, true, sorted[j]);
			built_events_free(&bt[j]);
		}
		for (i = n; i-- > 0;)
			pthread_mutex_unlock(&sorted[i]->reg->writer);
		if (n > 1) {
			ureg__free(bt);
			ureg__free(sorted);
		}
		return ureg__err(-ENOMEM, "batch_commit: out of memory, nothing changed");
	}
	for (i = 0; i < n; i++)
		batch_publish(sorted[i], &bt[i]);
	for (i = n; i-- > 0;)
		pthread_mutex_unlock(&sorted[i]->reg->writer);

	for (i = 0; i < n; i++) {
		ureg__events_flush(bt[i].reg);
		batch_free_published(sorted[i]);
	}
	ureg__synchronize();
	for (i = 0; i < n; i++)
		retire_old_table(bt[i].reg, bt[i].old_ht);
	if (n > 1) {
		ureg__free(bt);
		ureg__free(sorted);
	}
	ureg__clear_err();
	return 0;
}
