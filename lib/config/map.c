/* SPDX-License-Identifier: MIT */
/*
 * lib/config/map.c - open addressing over XXH3; see map.h for the why.
 *
 * Linear probing from hash & (cap - 1); the table is grown (doubled) before
 * it gets more than half full, so a probe sequence is short and always
 * ends at an empty slot.  Deletion shifts the following entries of the
 * cluster back instead of leaving tombstones: an entry may move back to
 * the deleted slot when its home position is not inside (deleted, its
 * current slot] (cyclically).
 */
#include <errno.h>
#include <xxhash.h>

#include "../layer.h"
#include "map.h"

static uint64_t hash_of(const void *key, size_t len)
{
	if (len == CFG_MAP_PTR)
		return XXH3_64bits(&key, sizeof(key));
	return XXH3_64bits(key, len);
}

static bool same(const struct cfg_map_slot *s, const void *key, size_t len,
		 uint64_t h)
{
	if (s->hash != h || s->len != len)
		return false;
	if (len == CFG_MAP_PTR)
		return s->key == key;
	return !memcmp(s->key, key, len);
}

/* The slot of @key, or the empty slot where it would go. */
static struct cfg_map_slot *probe(const struct cfg_map *m, const void *key,
				  size_t len, uint64_t h)
{
	size_t mask = m->cap - 1;

	for (size_t i = (size_t)h & mask;; i = (i + 1) & mask) {
		struct cfg_map_slot *s = &m->slots[i];
		if (!s->key || same(s, key, len, h))
			return s;
	}
}

static int grow(struct cfg_map *m, size_t cap)
{
	struct cfg_map_slot *old = m->slots, *v;
	size_t oldcap = m->cap;

	if (!(v = ureg__calloc(cap, sizeof(*v))))
		return -ENOMEM;
	m->slots = v;
	m->cap = cap;
	for (size_t i = 0; i < oldcap; i++)
		if (old[i].key)
			*probe(m, old[i].key, old[i].len, old[i].hash) = old[i];
	ureg__free(old);
	return 0;
}

int cfg_map_reserve(struct cfg_map *m, size_t n)
{
	size_t cap = m->cap ? m->cap : 8;

	while (cap / 2 < n)
		cap *= 2;
	return cap == m->cap ? 0 : grow(m, cap);
}

static void *get(const struct cfg_map *m, const void *key, size_t len)
{
	if (!m->n)
		return NULL;
	struct cfg_map_slot *s = probe(m, key, len, hash_of(key, len));
	return s->key ? s->val : NULL;
}

static int put(struct cfg_map *m, const void *key, size_t len, void *val)
{
	uint64_t h = hash_of(key, len);
	struct cfg_map_slot *s;

	if (m->n && probe(m, key, len, h)->key)
		return -EEXIST;
	if (cfg_map_reserve(m, m->n + 1))
		return -ENOMEM;
	s = probe(m, key, len, h);
	*s = (struct cfg_map_slot){ key, len, h, val };
	m->n++;
	return 0;
}

void *cfg_map_get(const struct cfg_map *m, const char *key, size_t len)
{
	return get(m, key, len);
}

int cfg_map_put(struct cfg_map *m, const char *key, size_t len, void *val)
{
	return put(m, key, len, val);
}

void *cfg_map_getp(const struct cfg_map *m, const void *key)
{
	return get(m, key, CFG_MAP_PTR);
}

int cfg_map_putp(struct cfg_map *m, const void *key, void *val)
{
	return put(m, key, CFG_MAP_PTR, val);
}

static void *del(struct cfg_map *m, const void *key, size_t len)
{
	if (!m->n)
		return NULL;
	size_t mask = m->cap - 1;
	struct cfg_map_slot *s = probe(m, key, len, hash_of(key, len));
	if (!s->key)
		return NULL;
	void *val = s->val;
	size_t hole = (size_t)(s - m->slots);
	for (size_t i = (hole + 1) & mask; m->slots[i].key; i = (i + 1) & mask) {
		size_t home = (size_t)m->slots[i].hash & mask;
		/* stays when home lies cyclically in (hole, i] */
		if (((i - home) & mask) < ((i - hole) & mask))
			continue;
		m->slots[hole] = m->slots[i];
		hole = i;
	}
	m->slots[hole].key = NULL;
	m->n--;
	return val;
}

void *cfg_map_del(struct cfg_map *m, const char *key, size_t len)
{
	return del(m, key, len);
}

void *cfg_map_delp(struct cfg_map *m, const void *key)
{
	return del(m, key, CFG_MAP_PTR);
}

void cfg_map_free(struct cfg_map *m)
{
	ureg__free(m->slots);
	m->slots = NULL;
	m->cap = m->n = 0;
}
