/* SPDX-License-Identifier: MIT */
/*
 * A context's per-entry use records (what ureg_ctx_entries reports), found
 * by name: a registration new to the context (a reload, another ranked
 * provider) finds its entry's record by registry name and key, walking
 * the context's list while it holds at most USE_SCAN_MAX records and
 * through by_name, a map of a seeded hash of both names, past that; the
 * record is then re-bound to the registration's serial in by_serial (the
 * map every later creation finds it through, ctx_create.c).  A creation
 * meets this file once per registration and context, never on a get.
 * Everything here runs under the context's lock.
 */
#include "../core/key_int.h" /* ureg__hash_bytes, XXH3 inlined */
#include "ctx_int.h"

/* The by_name key of an entry: its key's hash seeded with its registry
 * name's (names identify an entry, as in every report). */
static uint64_t use_name_hash(const char *registry, const char *key)
{
#ifdef UREG_FAULT_INJECTION
	if (ureg_fault_names_colliding())
		return 1; /* tests: every pair of names collides */
#endif
	return XXH3_64bits_withSeed(key, strlen(key),
				    ureg__hash_bytes(registry, strlen(registry)));
}

static bool use_names(const struct ctx_use *u, const struct ureg_factory_box *fb)
{
	return !strcmp(u->key, fb->key) && !strcmp(u->names, fb->reg->name);
}

/* Records up to which by_name is not built: a context of a few entries
 * finds a record by walking its list (a registration's first creation in
 * the context only) and pays no map. */
#define USE_SCAN_MAX 8

/*
 * Under ctx->lock: the record of @fb's entry, or NULL.  by_name holds one
 * record per hash: of two entries whose names collide in 64 bits, the
 * first made keeps the slot and the second is found by walking the list
 * (only ever on such a collision, so a context keeps one record per
 * entry whatever its names hash to).
 */
static struct ctx_use *use_by_name(const struct ctx_book *b, const struct ureg_factory_box *fb)
{
	struct ctx_use *u = NULL;

	if (b->by_name.slot) {
		u = ptrmap_find(&b->by_name, use_name_hash(fb->reg->name, fb->key));
		if (!u || use_names(u, fb))
			return u;
	}
	for (u = b->uses; u; u = u->next)
		if (use_names(u, fb))
			return u;
	return NULL;
}

/*
 * Under ctx->lock, before a new record: room in by_name for it, building
 * the map from the list when the context passes USE_SCAN_MAX records.
 * 0 or -ENOMEM (nothing changed that matters: a map built stays).
 */
int ureg__ctx_use_reserve_by_name(struct ctx_book *b)
{
	bool fresh = !b->by_name.slot;
	uint32_t n = 0;

	/* the list is short while there is no map (at most USE_SCAN_MAX):
	 * count it (no counter in the book, which stays within its
	 * allocation class) */
	for (struct ctx_use *u = fresh ? b->uses : NULL; u; u = u->next)
		n++;
	if (fresh && n + b->reserved_uses + 1 <= USE_SCAN_MAX)
		return 0;
	if (ptrmap_reserve(&b->by_name, b->reserved_uses + 1 + n))
		return -ENOMEM;
	for (struct ctx_use *u = fresh ? b->uses : NULL; u; u = u->next)
		ureg__ctx_use_name_add(b, u);
	return 0;
}

/*
 * Under ctx->lock, on a by_serial miss: the record of @fb's entry if
 * another registration of it (a reload, another ranked provider) made
 * instances here, then bound to @fb's serial in by_serial in place of
 * the one it had (the map keeps its size: one slot per record); else NULL.
 */
struct ctx_use *ureg__ctx_use_rebind(struct ctx_book *b, const struct ureg_factory_box *fb)
{
	struct ctx_use *u = use_by_name(b, fb);

	if (!u)
		return NULL;
	ptrmap_remove(&b->by_serial, u->serial);
	ptrmap_insert(&b->by_serial, use_key(fb), u);
	u->serial = use_key(fb);
	return u;
}

/* Under ctx->lock: a new record @u, once published, into by_name if the
 * map exists (room: reserved by the creation that made @u, or by the one
 * that built the map meanwhile, which counted it); a hash another record
 * holds leaves @u to the list (use_by_name). */
void ureg__ctx_use_name_add(struct ctx_book *b, struct ctx_use *u)
{
	if (b->by_name.slot) {
		uint64_t nh = use_name_hash(u->names, u->key);

		if (!ptrmap_find(&b->by_name, nh))
			ptrmap_insert(&b->by_name, nh, u);
	}
}
