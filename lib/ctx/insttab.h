/* SPDX-License-Identifier: MIT */
/*
 * A context's live instances, by value in one open-addressing table keyed
 * by the object pointer, threaded in creation order.
 *
 * Why by value: ureg_instance_release() finds the record from the object
 * (an O(1) probe) and then reads it.  With records allocated apart and a
 * map of pointers to them, a release in a context of many instances
 * missed the cache twice in a row (the map's slot, then the record), and
 * a creation twice (a recycled record, then the map's slot).  Here the
 * slot is the record: one line each way.
 *
 * 32-byte records (two per 64-byte line, the table line-aligned): the
 * object, the factory box with the CONTEXT-scope mark in its low bit
 * (boxes are 64-byte aligned), the entry's use record, and the
 * creation-order links as slot indices.  Linear probing, at most 3/4
 * full, deletion by backward shift (no tombstones: a context that creates
 * and releases millions of instances never degrades); a record that
 * shifts takes its neighbours' links with it.  Growing rebuilds the table
 * in creation order.  Keys are spread with Fibonacci hashing (ptrmap.h).
 *
 * Not thread-safe: the context lock serializes every call.  A record's
 * address and index are valid only until the lock is dropped (a later
 * removal may shift it, a reservation may rebuild the table).
 */
#ifndef UREG_INSTTAB_H
#define UREG_INSTTAB_H

#include "ptrmap.h"

#define INST_NONE UINT32_MAX     /* end of the creation-order list */
#define INST_CACHED ((uintptr_t)1) /* in fbc: a CONTEXT-scope instance */

struct ureg_instance {
	void *obj;         /* the key; NULL: a free slot */
	uintptr_t fbc;     /* struct ureg_factory_box * | INST_CACHED */
	struct ctx_use *use;
	uint32_t prev, next; /* creation order: slot indices, INST_NONE at the ends */
};
_Static_assert(sizeof(struct ureg_instance) == 32, "two records per line");

struct insttab {
	struct ureg_instance *tab; /* NULL until the first reservation */
	uint32_t mask;             /* capacity - 1 */
	uint32_t oldest, newest;   /* INST_NONE when empty */
	size_t count;              /* live records; read lock-free (stats) */
};

static inline struct ureg_factory_box *inst_fb(const struct ureg_instance *in)
{
	return (struct ureg_factory_box *)(in->fbc & ~INST_CACHED);
}

static inline void insttab_init(struct insttab *t)
{
	t->tab = NULL;
	t->mask = 0;
	t->oldest = t->newest = INST_NONE;
	t->count = 0;
}

static inline uint32_t insttab_home(const struct insttab *t, const void *obj)
{
	return ptrmap_hash((uintptr_t)obj) & t->mask;
}

/* A free slot for @obj (the reservation guarantees one). */
static inline uint32_t insttab_free_slot(const struct insttab *t, const void *obj)
{
	uint32_t i = insttab_home(t, obj);

	while (t->tab[i].obj)
		i = (i + 1) & t->mask;
	return i;
}

/* Append record @i (written but for its links) to the creation order. */
static inline void insttab_link_newest(struct insttab *t, uint32_t i)
{
	t->tab[i].prev = t->newest;
	t->tab[i].next = INST_NONE;
	if (t->newest != INST_NONE)
		t->tab[t->newest].next = i;
	else
		t->oldest = i;
	t->newest = i;
}

/* Room for @extra more records: 0, or -ENOMEM with the table unchanged.
 * Growing rebuilds it in creation order (every index changes). */
static inline int insttab_reserve(struct insttab *t, uint32_t extra)
{
	/* at most 3/4 full (linear probing over 32-byte records stays within
	 * a line or two; a context with 3 instances fits 4 slots) */
	uint64_t need = (((uint64_t)t->count + extra) * 4 + 2) / 3;
	uint32_t n = t->tab ? t->mask + 1 : 4;
	struct insttab nt;

	if (t->tab && need <= n)
		return 0;
	while (need > n)
		n *= 2;
	insttab_init(&nt);
	/* line-aligned once it spans lines worth aligning; small tables come
	 * from malloc, whose alignment costs no padding */
	nt.tab = n >= 64 ? ureg__aligned_alloc(64, (size_t)n * sizeof(*nt.tab))
			 : ureg__malloc((size_t)n * sizeof(*nt.tab));
	if (!nt.tab)
		return -ENOMEM;
	memset(nt.tab, 0, (size_t)n * sizeof(*nt.tab));
	nt.mask = n - 1;
	for (uint32_t i = t->oldest; i != INST_NONE; i = t->tab[i].next) {
		uint32_t j = insttab_free_slot(&nt, t->tab[i].obj);

		nt.tab[j] = t->tab[i];
		insttab_link_newest(&nt, j);
	}
	nt.count = t->count;
	ureg__free(t->tab);
	*t = nt;
	return 0;
}

/* Add a record (newest); insttab_reserve() must have made room.
 * Duplicate objects are allowed (a release takes one of them). */
static inline void insttab_insert(struct insttab *t, void *obj, uintptr_t fbc,
				  struct ctx_use *use)
{
	uint32_t i = insttab_free_slot(t, obj);

	t->tab[i].obj = obj;
	t->tab[i].fbc = fbc;
	t->tab[i].use = use;
	insttab_link_newest(t, i);
	__atomic_store_n(&t->count, t->count + 1, __ATOMIC_RELAXED);
}

/* The index of a record of @obj, or INST_NONE. */
static inline uint32_t insttab_find(const struct insttab *t, const void *obj)
{
	if (!t->tab)
		return INST_NONE;
	for (uint32_t i = insttab_home(t, obj); t->tab[i].obj; i = (i + 1) & t->mask)
		if (t->tab[i].obj == obj)
			return i;
	return INST_NONE;
}

/* Point the neighbours of the record now at slot @i (moved there) at it. */
static inline void insttab_relink(struct insttab *t, uint32_t i)
{
	const struct ureg_instance *in = &t->tab[i];

	if (in->prev != INST_NONE)
		t->tab[in->prev].next = i;
	else
		t->oldest = i;
	if (in->next != INST_NONE)
		t->tab[in->next].prev = i;
	else
		t->newest = i;
}

/* Remove record @i: out of the creation order, then the rest of its
 * cluster shifted back into the hole (moved records keep their links). */
static inline void insttab_remove(struct insttab *t, uint32_t i)
{
	struct ureg_instance *in = &t->tab[i];
	uint32_t j;

	if (in->prev != INST_NONE)
		t->tab[in->prev].next = in->next;
	else
		t->oldest = in->next;
	if (in->next != INST_NONE)
		t->tab[in->next].prev = in->prev;
	else
		t->newest = in->prev;
	for (j = (i + 1) & t->mask; t->tab[j].obj; j = (j + 1) & t->mask) {
		uint32_t home = insttab_home(t, t->tab[j].obj);

		/* move j to i when its home is not cyclically in (i, j] */
		if (((j - home) & t->mask) >= ((j - i) & t->mask)) {
			t->tab[i] = t->tab[j];
			insttab_relink(t, i);
			i = j;
		}
	}
	t->tab[i].obj = NULL;
	__atomic_store_n(&t->count, t->count - 1, __ATOMIC_RELAXED);
}

static inline void insttab_free(struct insttab *t)
{
	ureg__free(t->tab);
	insttab_init(t);
}

#endif /* UREG_INSTTAB_H */
