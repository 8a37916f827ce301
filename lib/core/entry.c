/* SPDX-License-Identifier: MIT */
/*
 * Item boxes, anchors and entries (internal.h has the lifetime rules):
 * making them, the references on them, and retiring an entry after its
 * grace period.  Factory boxes and their per-thread holds: fbox.c.  An entry is immutable once published; every change builds a
 * new one (rank.c).
 */
#include <limits.h>
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
		ureg__drain_wake(); /* @ib may be freed by now: not touched again */
		return;
	}
	if (ib->type->item_destroy)
		ib->type->item_destroy(ib->item);
	ureg__meta_free(ib);
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
