/* SPDX-License-Identifier: MIT */
/*
 * lib/config/map.h - the config layer's one private hash map (map.c).
 *
 * Every name lookup of the config layer goes through it: types,
 * providers and live registries by name, registries and keys of a parsed
 * file, duplicate fields of a large YAML mapping, and the process-wide
 * singleton records by item pointer.  Open addressing with linear probing
 * over XXH3 (libxxhash, already a libureg dependency), at most half full,
 * backward-shift deletion (no tombstones).
 *
 * Why not a library table: liburcu's cds_lfht is built for concurrent
 * readers (RCU, per-node allocation, resize workers) - wasted on a map
 * one thread builds and reads under a mutex; GLib's GHashTable may not be
 * linked into the libraries (only libureg's dependencies plus libyaml);
 * libck-dev's ck_hs is a benchmark baseline, not a runtime dependency.
 * So: ~150 lines here, used by every file of lib/config.
 *
 * Not thread safe: the caller serializes (the config mutexes, or the
 * item-record lock).  Keys are BORROWED: a string key must stay valid and
 * unchanged while it is in the map (the map stores the pointer, not a
 * copy).  Allocation goes through ureg__calloc, so a fault-injection
 * build fails it like any other.
 */
#ifndef UREG_CONFIG_MAP_H
#define UREG_CONFIG_MAP_H

#include <stddef.h>
#include <stdint.h>

struct cfg_map_slot {
	const void *key;   /* NULL: empty */
	size_t len;        /* string length; CFG_MAP_PTR: key is the pointer */
	uint64_t hash;
	void *val;
};

struct cfg_map {
	struct cfg_map_slot *slots;
	size_t cap;        /* 0 or a power of two */
	size_t n;
};

#define CFG_MAP_PTR ((size_t)-1)

/* Reserve room for @n entries in all (0 or -ENOMEM; the map is unchanged
 * on failure). */
int cfg_map_reserve(struct cfg_map *m, size_t n);
/* The value of string @key (@len bytes), or NULL. */
void *cfg_map_get(const struct cfg_map *m, const char *key, size_t len);
static inline void *cfg_map_gets(const struct cfg_map *m, const char *key);
/* Insert: 0, -EEXIST (present: nothing changed), -ENOMEM. */
int cfg_map_put(struct cfg_map *m, const char *key, size_t len, void *val);
static inline int cfg_map_puts(struct cfg_map *m, const char *key, void *val);
/* Remove string @key; returns its value, or NULL when absent. */
void *cfg_map_del(struct cfg_map *m, const char *key, size_t len);
/* Pointer keys (identity). */
void *cfg_map_getp(const struct cfg_map *m, const void *key);
int cfg_map_putp(struct cfg_map *m, const void *key, void *val);
/* Remove pointer @key; returns its value, or NULL when absent. */
void *cfg_map_delp(struct cfg_map *m, const void *key);
void cfg_map_free(struct cfg_map *m);

#include <string.h>
static inline void *cfg_map_gets(const struct cfg_map *m, const char *key)
{
	return cfg_map_get(m, key, strlen(key));
}

static inline int cfg_map_puts(struct cfg_map *m, const char *key, void *val)
{
	return cfg_map_put(m, key, strlen(key), val);
}

#endif /* UREG_CONFIG_MAP_H */
