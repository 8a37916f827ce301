/* SPDX-License-Identifier: MIT */
/*
 * The key-handle read path: ureg_lookup_key and ureg_get_key, for plain
 * handles (prepared once: no validation, strlen or hash per call) and
 * cached ones (the remembered entry, checked by its stamp; internal.h,
 * "Stamps").  The calls that take their own read section use
 * ureg__find_handle (lookup.c).
 */
#include "registry_int.h"

/*
 * A refill of a cached handle: a seqlock with a try-lock for writers, so
 * that threads sharing the handle never wait on each other: the thread
 * that loses the CAS skips the refill.  Only on a miss, never on a hit.
 * Readers: handle_hit(), handle_find() and the inline hit of ureg.h.
 */
static void handle_fill(ureg_key *k, const struct ureg_entry *e,
			uint64_t stamp)
{
	uint32_t s = __atomic_load_n(&k->seq, __ATOMIC_RELAXED);

	if ((s & 1) || !__atomic_compare_exchange_n(&k->seq, &s, s + 1, false,
						    __ATOMIC_RELAXED,
						    __ATOMIC_RELAXED))
		return;
	__atomic_thread_fence(__ATOMIC_RELEASE);
	__atomic_store_n(&k->entry, (const void *)e, __ATOMIC_RELAXED);
	__atomic_store_n(&k->item, e->item, __ATOMIC_RELAXED);
	__atomic_store_n(&k->stamp, stamp, __ATOMIC_RELAXED);
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
		__atomic_thread_fence(__ATOMIC_ACQUIRE);
		uint32_t s2 = __atomic_load_n(&k->seq, __ATOMIC_RELAXED);
		bool current;

		/* the section's table, then whether it is still the current
		 * one, then the stripe: in this order (internal.h, "Stamps") */
		ht = ureg__ht(reg);
		current = ht == rcu_dereference(reg->ht);
		stamp = __atomic_load_n(&reg->stamps[k->hash & (UREG_STAMP_STRIPES - 1)],
					__ATOMIC_ACQUIRE);
		if (UREG_LIKELY(s2 == (s1 & ~1u) && current && cs == stamp)) {
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
		ht = ureg__ht(reg);
		stamp = __atomic_load_n(&reg->stamps[k->hash & (UREG_STAMP_STRIPES - 1)],
					__ATOMIC_ACQUIRE);
	} else {
		/* plain handle */
		*out = ureg__find(ureg__ht(reg), use);
		return 0;
	}
	/* miss: the stamp was read before the search, so a change published
	 * meanwhile leaves the remembered stamp stale, never the entry */
	e = ureg__find(ht, use);
	*out = e;
	/* an odd stamp: a single-key change of this stripe is in flight, and
	 * @e may be the entry it is replacing: remember nothing */
	if (e && (st & UREG__KEY_CACHED) && !(stamp & 1) && ht == rcu_dereference(reg->ht))
		handle_fill(k, e, stamp);
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
 * The cached hit of a handle in state READY | CACHED (read by the caller
 * with acquire), written to stay a few loads and compares: the handle
 * (one seqlock read), this thread's pin of @reg against the registry's
 * current table, then the key's stripe (that order: internal.h,
 * "Stamps").  The remembered item (NULL: the entry holds none), or NULL
 * when it is not a hit: take the full path.  Inside a read section;
 * writes only this thread's pin slots (a section that has not pinned @reg
 * yet pins the current table, exactly as a table lookup would).
 */
static inline void *handle_hit(ureg_registry *reg, const ureg_key *k)
{
	uint32_t s1, s2;
	void *it;
	uint64_t cs;

	s1 = __atomic_load_n(&k->seq, __ATOMIC_ACQUIRE);
	it = __atomic_load_n(&k->item, __ATOMIC_RELAXED);
	cs = __atomic_load_n(&k->stamp, __ATOMIC_RELAXED);
	__atomic_thread_fence(__ATOMIC_ACQUIRE);
	s2 = __atomic_load_n(&k->seq, __ATOMIC_RELAXED);
	/* the section's table (pinned now if it was not), still the current
	 * one, then the stripe: handle_find's checks, in its order */
	if (UREG_UNLIKELY(ureg__ht(reg) != rcu_dereference(reg->ht) ||
			  s2 != (s1 & ~1u) ||
			  cs != __atomic_load_n(&reg->stamps[k->hash & (UREG_STAMP_STRIPES - 1)],
						__ATOMIC_ACQUIRE)))
		return NULL;
	return it;
}

static __attribute__((noinline)) int lookup_key_full(ureg_registry *reg,
						     ureg_key *k, void **item)
{
	struct ureg_entry *e = NULL;
	int rc;

	if (UREG_UNLIKELY((rc = handle_in_section(reg, k, item, "lookup_key", &e))))
		return rc;
	if (UREG_UNLIKELY(!e || !e->item))
		return ureg__miss(-ENOENT, "lookup: no singleton under", reg, k->str);
	*item = e->item;
	return 0;
}

/*
 * A plain handle, prepared (state UREG__KEY_READY), arguments and read
 * section checked by the caller: straight to the table with its
 * precomputed hash.  Exported (private) for the inline path of ureg.h,
 * which calls it directly: one library call per plain-handle lookup.
 */
int ureg__lookup_key_plain(ureg_registry *reg, ureg_key *k, void **item)
{
	const struct ureg_entry *e;

	e = ureg__find(ureg__ht(reg), k);
	if (UREG_UNLIKELY(!e || !e->item))
		return ureg__miss(-ENOENT, "lookup: no singleton under", reg, k->str);
	*item = e->item;
	return 0;
}

int ureg_lookup_key(ureg_registry *reg, ureg_key *k, void **item)
{
	void *it;
	uint16_t st;

	if (UREG_UNLIKELY(!reg || !k || !item || !ureg__thread.read_depth))
		return lookup_key_full(reg, k, item);
	st = __atomic_load_n(&k->state, __ATOMIC_ACQUIRE);
	if (st != (UREG__KEY_READY | UREG__KEY_CACHED))
		return UREG_LIKELY(st == UREG__KEY_READY)
			? ureg__lookup_key_plain(reg, k, item)
			: lookup_key_full(reg, k, item);
	if (UREG_UNLIKELY(!(it = handle_hit(reg, k))))
		return lookup_key_full(reg, k, item);
	*item = it;
	return 0;
}

/* The finder of a handle, for the calls that take their own section. */
int ureg__find_handle(ureg_registry *reg, const void *karg, struct ureg_entry **e)
{
	return handle_find(reg, (ureg_key *)karg, e);
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
		return ureg__get_own_section(reg, ctx, out, ureg__find_handle, k, k->str);
	}
	if (UREG_UNLIKELY((rc = handle_in_section(reg, k, out, "get_key", &e))))
		return rc;
	return ureg__get_from(reg, e, k->str, ctx, out);
}

static __attribute__((noinline)) int get_key_plain(ureg_registry *reg,
						   ureg_key *k, ureg_ctx *ctx,
						   void **out, uint16_t st)
{
	struct ureg_entry *e;

	if (UREG_UNLIKELY(st != UREG__KEY_READY))
		return get_key_full(reg, k, ctx, out);
	if (ctx)
		ureg__ctx_cache_prefetch(ctx, k->hash);
	e = ureg__find(ureg__ht(reg), k);
	return ureg__get_from(reg, e, k->str, ctx, out);
}

int ureg_get_key(ureg_registry *reg, ureg_key *k, ureg_ctx *ctx, void **out)
{
	void *it;
	uint16_t st;

	if (UREG_UNLIKELY(!reg || !k || !out || !ureg__thread.read_depth))
		return get_key_full(reg, k, ctx, out);
	st = __atomic_load_n(&k->state, __ATOMIC_ACQUIRE);
	if (st != (UREG__KEY_READY | UREG__KEY_CACHED))
		return get_key_plain(reg, k, ctx, out, st);
	if (UREG_UNLIKELY(!(it = handle_hit(reg, k))))
		return get_key_full(reg, k, ctx, out);
	*out = it;
	return 0;
}
