/* SPDX-License-Identifier: MIT */
/*
 * The one internal map of lib/ctx: word-sized key -> record, where the key
 * is a field of the record (at key_off).  A context keeps two, both under
 * its lock: object pointer -> instance record (ureg_instance_release and
 * ureg_ctx_alloc_for in constant time) and factory serial -> per-entry use
 * record (the per-entry memory breakdown).
 *
 * Open addressing with linear probing, at most half full, deletion by
 * backward shift (no tombstones, so a long-lived context that creates and
 * releases millions of instances never degrades).  Keys are spread with
 * Fibonacci hashing (the high bits of key * 2^64/phi), which suits both
 * 16-byte-aligned pointers and consecutive serials.  Not thread-safe: the
 * owner's lock serializes every call.  The lock-free CONTEXT-scope cache
 * (ctx_create.c) is a different structure: readers probe it without a lock.
 */
#ifndef UREG_PTRMAP_H
#define UREG_PTRMAP_H

#include <errno.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include "../core/internal.h"

struct ptrmap {
	void **slot;        /* NULL until the first reservation */
	uint32_t mask;      /* capacity - 1 */
	uint32_t used;
	uint32_t key_off;   /* offset of the key in each record */
};

static inline void ptrmap_init(struct ptrmap *m, size_t key_off)
{
	m->slot = NULL;
	m->mask = 0;
	m->used = 0;
	m->key_off = (uint32_t)key_off;
}

static inline uintptr_t ptrmap_key(const struct ptrmap *m, const void *rec)
{
	uintptr_t k;

	memcpy(&k, (const char *)rec + m->key_off, sizeof(k));
	return k;
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
	void **ns;

	if (m->slot && (uint64_t)(m->used + extra) * 2 <= n)
		return 0;
	if (!n)
		n = 8;
	while ((uint64_t)(m->used + extra) * 2 > n)
		n *= 2;
	if (!(ns = ureg__calloc(n, sizeof(*ns))))
		return -ENOMEM;
	for (uint32_t i = 0; m->slot && i <= m->mask; i++) {
		if (!m->slot[i])
			continue;
		uint32_t j = ptrmap_hash(ptrmap_key(m, m->slot[i])) & (n - 1);
		while (ns[j])
			j = (j + 1) & (n - 1);
		ns[j] = m->slot[i];
	}
	ureg__free(m->slot);
	m->slot = ns;
	m->mask = n - 1;
	return 0;
}

/* Insert @rec; ptrmap_reserve() must have made room.  Duplicate keys are
 * allowed (the newest is found last). */
static inline void ptrmap_insert(struct ptrmap *m, void *rec)
{
	uint32_t i = ptrmap_hash(ptrmap_key(m, rec)) & m->mask;

	while (m->slot[i])
		i = (i + 1) & m->mask;
	m->slot[i] = rec;
	m->used++;
}

static inline void *ptrmap_find(const struct ptrmap *m, uintptr_t key)
{
	if (!m->slot)
		return NULL;
	for (uint32_t i = ptrmap_hash(key) & m->mask; m->slot[i]; i = (i + 1) & m->mask)
		if (ptrmap_key(m, m->slot[i]) == key)
			return m->slot[i];
	return NULL;
}

/* Remove and return a record with @key, or NULL. */
static inline void *ptrmap_take(struct ptrmap *m, uintptr_t key)
{
	uint32_t i, j;
	void *rec;

	if (!m->slot)
		return NULL;
	for (i = ptrmap_hash(key) & m->mask; m->slot[i]; i = (i + 1) & m->mask)
		if (ptrmap_key(m, m->slot[i]) == key)
			break;
	if (!(rec = m->slot[i]))
		return NULL;
	/* backward-shift the rest of the cluster into the hole */
	for (j = (i + 1) & m->mask; m->slot[j]; j = (j + 1) & m->mask) {
		uint32_t home = ptrmap_hash(ptrmap_key(m, m->slot[j])) & m->mask;
		/* move j to i when its home is not cyclically in (i, j] */
		if (((j - home) & m->mask) >= ((j - i) & m->mask)) {
			m->slot[i] = m->slot[j];
			i = j;
		}
	}
	m->slot[i] = NULL;
	m->used--;
	return rec;
}

static inline void ptrmap_free(struct ptrmap *m)
{
	ureg__free(m->slot);
	m->slot = NULL;
	m->mask = m->used = 0;
}

#endif /* UREG_PTRMAP_H */
