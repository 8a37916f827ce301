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
	struct ureg_source src;        /* strings owned */
	char key[];
};

struct ureg_batch {
	ureg_registry *reg;
	struct batch_op *ops;
	size_t n;
};

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
	}
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
				 f->scope != UREG_SCOPE_CONTEXT)))
		return ureg__err(-EINVAL, "batch_put: factory for '%s' has no create function or a bad scope", key);
	for (op = b->ops; op; op = op->next)
		if (op->k.hash == k.hash && op->k.len == k.len &&
		    !memcmp(op->key, key, k.len))
			return ureg__err(-EEXIST, "batch_put: key '%s' is already in this batch", key);
	op = ureg__calloc(1, sizeof(*op) + k.len + 1);
	if (!op)
		return ureg__err(-ENOMEM, "batch_put: out of memory");
	memcpy(op->key, key, k.len + 1);
	op->k = k;
	op->k.str = op->key;
	if (item && !(op->ib = ureg__ibox_new(b->reg, item)))
		goto nomem;
	if (f && !(op->fb = ureg__fbox_new(b->reg, key, f)))
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

void ureg_batch_abort(ureg_batch *b)
{
	if (!b)
		return;
	for (struct batch_op *op = b->ops, *next; op; op = next) {
		next = op->next;
		op_free(op, true);
	}
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
		bool from_op = false;
		for (struct batch_op *op = b->ops; op; op = op->next)
			if ((ureg__cold(e)->ibox && ureg__cold(e)->ibox == op->ib) ||
			    (e->fbox && e->fbox == op->fb))
				from_op = true;
		if (!(from_op && keep_op_boxes)) {
			/* copies of live entries took a reference each */
			if (ureg__cold(e)->ibox)
				__atomic_sub_fetch(&ureg__cold(e)->ibox->refs, 1, __ATOMIC_RELAXED);
			if (e->fbox)
				__atomic_sub_fetch(&e->fbox->refs, 1, __ATOMIC_RELAXED);
		}
		ureg__entry_retire_unused(e);
	}
	urcu_memb_read_unlock();
	ureg__ht_destroy(ht);
}

int ureg_batch_commit(ureg_batch *b, uint64_t generation)
{
	ureg_registry *reg;
	struct cds_lfht *old_ht, *ht;
	struct cds_lfht_iter iter;
	struct ureg_entry *e, *ne;
	struct cds_list_head events;
	struct ureg_event_node *evn, *tmp;
	bool want_events;
	size_t count = 0;
	uint64_t gen;

	ureg__rcu_ensure();
	if (!b)
		return ureg__err(-EINVAL, "batch_commit: batch is NULL");
	if (ureg__thread.read_depth)
		return ureg__err(-EPERM, "batch_commit inside a read section would deadlock");
	reg = b->reg;
	CDS_INIT_LIST_HEAD(&events);
	want_events = ureg__has_listeners(reg);

	pthread_mutex_lock(&reg->writer);
	old_ht = reg->ht;
	gen = reg->generation + 1;
	if (!generation)
		generation = gen;
	ht = ureg__ht_new(reg->count + b->n);
	if (!ht)
		goto nomem_unlocked_ht;

	urcu_memb_read_lock();
	/* 1. the batch's own entries; removals as placeholder entries */
	for (struct batch_op *op = b->ops; op; op = op->next) {
		struct ureg_entry *old = ureg__find(old_ht, &op->k);
		if (!(ne = ureg__entry_alloc(&op->k)))
			goto nomem;
		ureg__cold(ne)->ibox = op->ib;
		ne->item = op->ib ? op->ib->item : NULL;
		ne->fbox = op->fb;
		ureg__cold(ne)->generation = generation;
		if (ureg__entry_set_source(ne, &op->src)) {
			ureg__entry_free_unpublished(ne);
			goto nomem;
		}
		cds_lfht_add(ht, op->k.hash, &ne->node);
		if (want_events && (old || op->ib || op->fb)) {
			enum ureg_event_kind kind = !(op->ib || op->fb) ?
				UREG_EV_UNREGISTERED : old ? UREG_EV_REPLACED :
				UREG_EV_REGISTERED;
			if (!(evn = ureg__event_prepare(reg, kind, op->key)))
				goto nomem;
			cds_list_add_tail(&evn->node, &events);
		}
	}
	/* 2. copies of every entry the batch does not touch */
	cds_lfht_for_each_entry(old_ht, &iter, e, node) {
		struct ureg_key k = { .str = e->key, .len = e->keylen, .hash = ureg__cold(e)->hash };
		if (ureg__find(ht, &k))
			continue;
		if (!(ne = ureg__entry_alloc(&k)))
			goto nomem;
		struct ureg_source src = {
			.provider = ureg__cold(e)->provider, .file = ureg__cold(e)->source_file,
			.line = ureg__cold(e)->source_line, .column = ureg__cold(e)->source_column,
		};
		if (ureg__entry_set_source(ne, &src)) {
			ureg__entry_free_unpublished(ne);
			goto nomem;
		}
		ureg__cold(ne)->ibox = ureg__cold(e)->ibox;
		ne->item = e->item;
		ne->fbox = e->fbox;
		ureg__cold(ne)->generation = ureg__cold(e)->generation;
		if (ureg__cold(ne)->ibox)
			__atomic_add_fetch(&ureg__cold(ne)->ibox->refs, 1, __ATOMIC_RELAXED);
		if (ne->fbox)
			ureg__fbox_get(ne->fbox);
		cds_lfht_add(ht, k.hash, &ne->node);
	}
	if (want_events) {
		if (!(evn = ureg__event_prepare(reg, UREG_EV_RELOAD_APPLIED, NULL)))
			goto nomem;
		cds_list_add_tail(&evn->node, &events);
	}
	/* 3. drop the removal placeholders; count */
	cds_lfht_for_each_entry(ht, &iter, e, node) {
		if (!ureg__cold(e)->ibox && !e->fbox) {
			cds_lfht_del(ht, &e->node);
			ureg__entry_retire_unused(e);
		} else {
			count++;
		}
	}
	urcu_memb_read_unlock();

	/* 4. publish: one pointer store */
	rcu_assign_pointer(reg->ht, ht);
	__atomic_store_n(&reg->buckets, ureg__buckets_for(reg->count + b->n),
			 __ATOMIC_RELAXED);
	__atomic_store_n(&reg->count, count, __ATOMIC_RELAXED);
	__atomic_store_n(&reg->generation, gen, __ATOMIC_RELAXED);
	cds_list_for_each_entry_safe(evn, tmp, &events, node) {
		cds_list_del(&evn->node);
		ureg__event_queue(reg, evn, gen);
	}
	pthread_mutex_unlock(&reg->writer);
	ureg__events_flush(reg);

	/* the boxes now belong to the published entries */
	for (struct batch_op *op = b->ops, *next; op; op = next) {
		next = op->next;
		op_free(op, false);
	}
	ureg__free(b);

	/* 5. no reader is left on the old table after a grace period */
	urcu_memb_synchronize_rcu();
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
	ureg__clear_err();
	return 0;

nomem:
	urcu_memb_read_unlock();
	pthread_mutex_unlock(&reg->writer);
	unbuilt_table_free(ht, true, b);
	goto nomem_events;
nomem_unlocked_ht:
	pthread_mutex_unlock(&reg->writer);
nomem_events:
	cds_list_for_each_entry_safe(evn, tmp, &events, node) {
		cds_list_del(&evn->node);
		ureg__free(evn);
	}
	return ureg__err(-ENOMEM, "batch_commit: out of memory, nothing changed");
}
