/* SPDX-License-Identifier: MIT */
/*
 * A word-sized key -> record map: a context's factory serial, or name
 * hash, -> per-entry use record (ctx_create.c, ctx_uses.c), whose records live until
 * the context does.
 *
 * Open addressing with linear probing, at most half full, the key beside
 * the record pointer in each slot: a find reads the slot array only, so
 * the caller can prefetch the record it gets and touch it later (a
 * creation reads its use record after the factory ran).  Keys are spread
 * with Fibonacci hashing (the high bits of key * 2^64/phi), which suits
 * both consecutive serials and 16-byte-aligned pointers (insttab.h uses
 * ptrmap_hash for object pointers).  Not thread-safe: the owner's lock
 * serializes every call.  The lock-free CONTEXT-scope cache
 * (ctx_create.c) is a different structure: readers probe it without a
 * lock.
 */
#ifndef UREG_PTRMAP_H
#define UREG_PTRMAP_H

#include <errno.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include "../core/internal.h"

struct ptrmap_slot {
	uintptr_t key;
	void *rec;          /* NULL: a free slot */
};

struct ptrmap {
	struct ptrmap_slot *slot; /* NULL until the first reservation */
	uint32_t mask;      /* capacity - 1 */
	uint32_t used;
};

static inline void ptrmap_init(struct ptrmap *m)
{
	m->slot = NULL;
	m->mask = 0;
	m->used = 0;
}

static inline uint32_t ptrmap_hash(uintptr_t k)
{
	return (uint32_t)(((uint64_t)k * 0x9e3779b97f4a7c15ull) >> 32);
}

/* Room for @extra more records without failing: 0 or -ENOMEM (the map is
 * unchanged on failure). */
static inline int ptrmap_reserve(struct ptrmap *m, uint32_t extra)
{
	uint32_t n = m->slot ? m->mask + 1 : 0;
	struct ptrmap_slot *ns;

	if (m->slot && (uint64_t)(m->used + extra) * 2 <= n)
		return 0;
	if (!n)
		n = 8;
	while ((uint64_t)(m->used + extra) * 2 > n)
		n *= 2;
	if (!(ns = ureg__calloc(n, sizeof(*ns))))
		return -ENOMEM;
	for (uint32_t i = 0; m->slot && i <= m->mask; i++) {
		if (!m->slot[i].rec)
			continue;
		uint32_t j = ptrmap_hash(m->slot[i].key) & (n - 1);
		while (ns[j].rec)
			j = (j + 1) & (n - 1);
		ns[j] = m->slot[i];
	}
	ureg__free(m->slot);
	m->slot = ns;
	m->mask = n - 1;
	return 0;
}

/* Insert @rec (not NULL) under @key; ptrmap_reserve() must have made
 * room.  Keys are unique by the caller's contract. */
static inline void ptrmap_insert(struct ptrmap *m, uintptr_t key, void *rec)
{
	uint32_t i = ptrmap_hash(key) & m->mask;

	while (m->slot[i].rec)
		i = (i + 1) & m->mask;
	m->slot[i].key = key;
	m->slot[i].rec = rec;
	m->used++;
}

static inline void *ptrmap_find(const struct ptrmap *m, uintptr_t key)
{
	if (!m->slot)
		return NULL;
	for (uint32_t i = ptrmap_hash(key) & m->mask; m->slot[i].rec; i = (i + 1) & m->mask)
		if (m->slot[i].key == key)
			return m->slot[i].rec;
	return NULL;
}

/* Remove @key's record if there is one: the rest of its cluster shifts
 * back into the hole (no tombstones). */
static inline void ptrmap_remove(struct ptrmap *m, uintptr_t key)
{
	uint32_t i, j;

	if (!m->slot)
		return;
	for (i = ptrmap_hash(key) & m->mask; m->slot[i].key != key; i = (i + 1) & m->mask)
		if (!m->slot[i].rec)
			return;
	if (!m->slot[i].rec)
		return;
	for (j = (i + 1) & m->mask; m->slot[j].rec; j = (j + 1) & m->mask) {
		uint32_t home = ptrmap_hash(m->slot[j].key) & m->mask;

		/* move j to i when its home is not cyclically in (i, j] */
		if (((j - home) & m->mask) >= ((j - i) & m->mask)) {
			m->slot[i] = m->slot[j];
			i = j;
		}
	}
	m->slot[i].key = 0;
	m->slot[i].rec = NULL;
	m->used--;
}

static inline void ptrmap_free(struct ptrmap *m)
{
	ureg__free(m->slot);
	ptrmap_init(m);
}

#endif /* UREG_PTRMAP_H */
