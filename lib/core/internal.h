/* SPDX-License-Identifier: MIT */
/*
 * Private structures shared by the files of lib/.  Nothing here is API.
 *
 * Object lifetimes (who frees what, after which grace period):
 *
 *   registry --rcu ptr--> cds_lfht --nodes--> ureg_entry
 *   ureg_entry --ref--> item_box   (owns the singleton item)
 *              --ref--> factory_box (owns the factory arg, anchor, key copy)
 *
 * An entry is immutable once published.  Every change builds a new entry
 * (sharing the boxes that did not change) and swaps it in; the old entry
 * loses its "table" reference in a call_rcu callback, i.e. only after every
 * reader that could have found it has left its read section.  Counted
 * references (ureg_acquire) are further references on the entry, so the
 * entry - and with it its boxes - dies at max(grace period, last release).
 * A box dies when its last entry or instance drops it; the item destructor
 * and the factory's arg_free run there, never under a writer mutex.
 *
 * A registry is itself reference counted: the owner holds one (dropped by
 * ureg_registry_destroy), every factory box another; an instance holds its
 * factory box, so it may outlive the registry that made it without
 * dangling, and creating it touches no registry-wide counter.
 */
#ifndef UREG_INTERNAL_H
#define UREG_INTERNAL_H

#ifndef _LGPL_SOURCE
#define _LGPL_SOURCE /* inline the memb read-side fast paths */
#endif
#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>

#include <urcu/urcu-memb.h>
#include <urcu/rculfhash.h>
#include <urcu/rculist.h>
#include <urcu/list.h>

#include "ureg/ureg.h"
#include "ureg/ctx.h"
#include "ureg/events.h"

/* Everything declared below is private to libureg.so: hidden symbols are
 * called directly, not through the PLT, on the lookup path. */
#pragma GCC visibility push(hidden)

#define UREG_LIKELY(x) __builtin_expect(!!(x), 1)
#define UREG_UNLIKELY(x) __builtin_expect(!!(x), 0)
#define UREG_TLS __thread __attribute__((tls_model("initial-exec")))

/* Reserved fields of a public struct the caller filled are all zero
 * (<ureg/api.h>, ABI policy). */
#define ureg__reserved_zero(arr) ureg__all_zero((arr), sizeof(arr))
static inline bool ureg__all_zero(const void *p, size_t n)
{
	const unsigned char *c = p;
	for (size_t i = 0; i < n; i++)
		if (c[i])
			return false;
	return true;
}

/* ---- per-thread state (rcu_thread.c) ----
 * struct ureg__thread and ureg__thread itself are declared in ureg.h (its
 * private part), because the opt-in inline read path reaches them; the
 * TLS variable and ureg__rcu_register_slow are exported for that reason. */
#define UREG_SNAP_SLOTS UREG__SNAP_SLOTS
void ureg__threads_forget_others_in_child(void);

static inline void ureg__rcu_ensure(void)
{
	if (UREG_UNLIKELY(!ureg__thread.registered))
		ureg__rcu_register_slow();
}

/* ureg_read_lock()/ureg_read_unlock() for the library's own sections,
 * inline (no call through the exported symbols); the caller has run
 * ureg__rcu_ensure(). */
static inline void ureg__section_enter(void)
{
	urcu_memb_read_lock();
	ureg__thread.read_depth++;
}

static inline void ureg__section_exit(void)
{
	if (--ureg__thread.read_depth == 0)
		ureg__thread.npinned = 0; /* section over: its table pins go */
	urcu_memb_read_unlock();
}

/* ---- errors (errors.c) ---- */
int ureg__err(int err, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
int ureg__err_static(int err, const char *msg);
/* For read-path failures: copies @reg_name and @key (@keylen bytes), and
 * ureg_last_error() formats "registry 'R': @what 'K'" only when asked. */
int ureg__err_key(int err, const char *what, const char *reg_name,
		  const char *key, size_t keylen);
extern UREG_TLS const char *ureg__last_msg; /* errors.c */
/* Forget the thread's last error (before a factory runs: a failure that
 * sets none gets the default message). */
static inline void ureg__clear_err(void)
{
	ureg__last_msg = NULL;
}

/* ---- allocation inside the library, with fault injection (alloc.c) ---- */
#ifdef UREG_FAULT_INJECTION
#include "ureg/fault.h"
#define ureg__fault_hit() ureg_fault_hit()
#else
#define ureg__fault_hit() false
#endif
void *ureg__malloc(size_t n);
void *ureg__aligned_alloc(size_t align, size_t n);
/* The hot parts of entries (struct ureg_entry): a jemalloc arena of
 * libureg's own, no thread cache, sizes up to 64 bytes on their own line,
 * larger ones 64-byte aligned.  Sanitizer builds use malloc instead, so
 * that LeakSanitizer sees them.  Any thread; ureg__hot_free also from a
 * call_rcu callback. */
void *ureg__hot_alloc(size_t n);
void ureg__hot_free(void *p);
/* The rest of an entry's bookkeeping (cold part, item and factory boxes):
 * a second arena of libureg's own, so that it does not interleave with
 * the application's allocations (its items); malloc under sanitizers.
 * Any thread; ureg__meta_free also from a call_rcu callback. */
void *ureg__meta_alloc(size_t n);
/* The same, 64-byte aligned (a factory box: its hot fields on one line). */
void *ureg__meta_alloc_line(size_t n);
/* The same as ureg__meta_alloc, never failed by fault injection: only for an allocation
 * whose failure changes nothing but speed (the block cache). */
void *ureg__meta_alloc_unfaulted(size_t n);
void ureg__meta_free(void *p);
void *ureg__calloc(size_t n, size_t size);
void *ureg__realloc(void *p, size_t n);
char *ureg__strdup(const char *s);
void ureg__free(void *p);

/* ---- keys (keys.c) ----
 * Inside the library a key travels as a struct ureg_key (ureg.h): str, len
 * and hash; the cache fields are used only by the handle lookups. */
/* Validates and hashes; 0 or -EINVAL (message set). */
int ureg__key_prepare(const char *key, struct ureg_key *k);
/* A handle that is not UREG__KEY_READY yet: prepare it.  0: @k is ready
 * now; 1: another thread is preparing it, use *@tmp (prepared) for this
 * call; -EINVAL (message set). */
int ureg__key_handle_slow(ureg_key *k, struct ureg_key *tmp);
int ureg__name_check(const char *name, const char *what);

/* ---- boxes and entries (registry.c) ---- */
struct ureg_item_box {
	long refs;
	void *item;
	const ureg_type *type;
	long counted;      /* counted references (ureg_acquire) out on it,
			    * for ureg_drain's report only */
};

/*
 * A factory box has two kinds of reference (fbox.c has the protocol):
 *
 *  - @trefs: the entries (and their ranked copies) that hold the box, and
 *    ureg_drain's grab - taken and dropped by writers;
 *  - holds, one per live instance and per creation in flight: +1 / -1 in
 *    a per-thread counter of the box (by @hid), a plain add, so that
 *    threads creating and releasing instances of the same factories never
 *    write one line between them (a shared count cost a remote
 *    read-modify-write per instance; README, factory benchmark).  A hold
 *    is only taken where no kill can have begun: inside a read section
 *    that found the box through a published entry.
 *
 * When @trefs reaches 0 no new hold can begin, and the holds are summed
 * into @refs (percpu_ref-style, cf. Linux lib/percpu-refcount.c); after
 * that a dropped hold goes to @refs and the last one frees the box.
 * ureg_drain folds the box it waits for itself, once its grace period has
 * passed.
 */
struct ureg_factory_box {
	/* One 64-byte line (the box is line-aligned) with everything a
	 * creation and a release read: hold, factory call, destructor,
	 * events, the context's per-entry record.  Written only by the
	 * killer (@dying, once). */
	uint32_t hid;      /* the box's index in every thread's hold counters */
	uint32_t dying;    /* set once, by the killer */
	ureg_factory_fn create;                    /* f.create */
	void *arg;                                 /* f.arg */
	void (*destroy)(void *instance, ureg_ctx *ctx); /* f.instance_destroy,
							   * else the type's */
	const ureg_type *type;
	ureg_registry *reg; /* counted: instances reach their registry through
			     * their factory, so creating one writes no
			     * registry-wide counter */
	char *key;         /* for instance events */
	uint64_t serial;   /* unique per factory registration: context cache
			    * key (UREG__SERIAL_HBITS) */
	/* the rest: reference counts (written at entry changes, kills and
	 * folds only), the registration as given */
	long refs;         /* FBOX_BIAS + 1 until folded, then the holds
			    * (+1 while @trefs > 0) */
	long trefs;
	uint32_t folded;   /* holds now go to @refs */
	struct rcu_head rcu; /* the fold, a grace period after the kill */
	struct ureg_factory f;
};

/*
 * A factory box's serial: a registration counter (from 1, so never 0)
 * above the low UREG__SERIAL_HBITS bits of its key's XXH3 hash, the hash
 * every lookup of the key computes.  Unique per box by the counter.  A
 * context's cache (lib/ctx/ctx_create.c) homes a serial at its low bits,
 * so a get, which has the key's hash before it searches the table, can
 * start fetching the cache's line while the search runs
 * (ureg__ctx_cache_prefetch) instead of after it.  The entry keeps the
 * serial in its hot line while the counter is below 2^35 (fb_hot); past
 * that a get reads the box (slower, still correct).
 */
#define UREG__SERIAL_HBITS 20

/*
 * An entry is two allocations.  The hot part, what a lookup touches (lfht
 * node, item, factory, key), is small - one 64-byte line for keys up to 15
 * bytes - and comes from an allocator that packs equal sizes densely
 * (ureg__hot_alloc), so that the hot parts of a large registry lie side by
 * side like an intrusive hash table's nodes: a lookup costs the same cache
 * lines and pages as one in such a table.  The cold part (ownership,
 * reclamation, provenance) is a separate ordinary allocation, reached
 * through @cold by writers and by the introspection calls only.
 */
struct ureg_entry {
	struct cds_lfht_node node;
	void *item;                    /* the singleton, NULL if none */
	struct ureg_factory_box *fbox; /* NULL: no factory; set it with
					* ureg__entry_set_fbox */
	struct ureg_entry_cold *cold;  /* set at allocation, never changed */
	/* what a creation or a get needs of the factory box first, here
	 * rather than in the box, so that the box's line and what comes
	 * next are fetched side by side instead of one after the other
	 * (ureg__entry_set_fbox; read with ureg__entry_ctx_serial and
	 * ureg__entry_hid):
	 *  - fbox a CONTEXT-scope factory whose serial fits: serial << 1 | 1
	 *    (the context-cache probe of ureg_get reads no line beyond the
	 *    entry's before the context's cache);
	 *  - else: fbox->hid << 1 (ureg_create_instance takes its hold by
	 *    it while the box's line is on its way), 0 without a factory.
	 * Packed with the key's length so that the key starts at 48: keys up
	 * to 15 bytes keep the hot part in one 64-byte line. */
	uint64_t keylen : 8;           /* <= UREG_KEY_MAX */
	uint64_t fb_hot : 56;
	char key[];
};
_Static_assert(UREG_KEY_MAX < 256, "keylen is 8 bits");

/*
 * Ranking: a key may hold several singletons and factories, each with a
 * rank, at most one per (kind, rank).  The entry's hot fields hold the
 * highest-ranked of each kind (item / fbox), so a lookup reads what it
 * reads with one provider; the others wait in the cold part, ordered by
 * rank (highest first, a singleton before a factory of equal rank), each
 * holding one reference on its box.  A change builds the next set and
 * swaps the whole entry, so readers fall back atomically.
 */
struct ureg_prov {
	int rank;
	struct ureg_item_box *ib;      /* a singleton, or */
	struct ureg_factory_box *fb;   /* a factory (exactly one is set) */
};

struct ureg_entry_cold {
	struct ureg_entry *entry;      /* back from an rcu_head */
	struct ureg_item_box *ibox;    /* owns item; NULL iff item is NULL */
	int srank;                     /* rank of ibox (when set) */
	int frank;                     /* rank of the entry's fbox (when set) */
	uint32_t nmore;                /* providers below the top ones */
	struct ureg_prov *more;        /* owned array; boxes counted */
	long refs;                     /* 1 for the table + counted refs */
	uint64_t hash;
	uint64_t generation;
	char *provider;
	char *source_file;
	unsigned source_line;
	unsigned source_column;
	struct rcu_head rcu;
};

static inline size_t ureg__entry_hot_size(size_t keylen)
{
	return offsetof(struct ureg_entry, key) + keylen + 1;
}

static inline struct ureg_entry_cold *ureg__cold(const struct ureg_entry *e)
{
	return e->cold;
}

/* An unpublished entry's factory (NULL: none), and what creations and
 * gets read of it first (struct ureg_entry, fb_hot). */
static inline void ureg__entry_set_fbox(struct ureg_entry *e,
					struct ureg_factory_box *fb)
{
	e->fbox = fb;
	if (!fb)
		e->fb_hot = 0;
	else if (fb->f.scope == UREG_SCOPE_CONTEXT && fb->serial < ((uint64_t)1 << 55))
		e->fb_hot = fb->serial << 1 | 1;
	else
		e->fb_hot = (uint64_t)fb->hid << 1;
}

/* The serial of @e's factory when it is CONTEXT-scope (and fits), else 0:
 * the context-cache key, without reading the box. */
static inline uint64_t ureg__entry_ctx_serial(const struct ureg_entry *e)
{
	return e->fb_hot & 1 ? e->fb_hot >> 1 : 0;
}

/* The hold id of @e's factory box (@e->fbox not NULL), from the entry's
 * line when it is there, else from the box. */
static inline uint32_t ureg__entry_hid(const struct ureg_entry *e)
{
	return e->fb_hot & 1 ? e->fbox->hid : (uint32_t)(e->fb_hot >> 1);
}

struct ureg_event_node;

struct ureg_registry {
	/* these two first: the inline cached hit of ureg.h reads them
	 * through struct ureg__registry_head */
	struct cds_lfht *ht;            /* rcu pointer: a batch swaps it */
	const uint64_t *stamp_base;     /* == stamps, below */
	const ureg_type *type;
	long refs;                      /* owner + live instances */
	pthread_mutex_t writer;
	size_t count;                   /* written under writer, read relaxed */
	unsigned long buckets;          /* table size we asked for */
	pthread_mutex_t resize_lock;    /* resize vs. table destroy */
	uint64_t generation;            /* written under writer, read relaxed */
	/* events (events.c) */
	struct cds_list_head listeners; /* rcu list of ureg_listener */
	pthread_mutex_t evq_lock;
	struct cds_list_head evq;       /* pending ureg_event_node, commit order */
	bool delivering;
	struct cds_list_head all_node;  /* ureg__registries, for fork */
	char name[UREG_NAME_MAX + 1];
	/* Cached key handles' stamps (registry.c): key k lives in stripe
	 * hash & (UREG_STAMP_STRIPES - 1).  Written under the writer mutex,
	 * read by cached lookups; see ureg__stamp_key. */
	uint64_t stamps[];
};

/*
 * Stamps: how a cached handle knows, in two loads, that the entry it
 * remembers is still the live one (ureg_lookup_key, guarantee G.4).
 *
 * A stamp value comes from one process-wide counter, so it is never reused
 * and never equal between two registries.  A change to key k stores a
 * fresh ODD value into k's stripe BEFORE publishing the change in the
 * table and a fresh even one AFTER, before retiring the entry it replaced
 * (call_rcu); a handle never remembers an odd stamp (a search made while
 * the change is in flight may still return the replaced entry: with the
 * "before" value remembered it would hit until the "after" store, so a
 * section that had already seen the new entry could read the old one
 * after it - ureg-stress-handles caught that, about 1 run in 20).  A batch
 * commit does the same to every stripe around publishing its new table:
 * all odd, then the table, then all even (before the old table's entries
 * are retired); a registry destroy refreshes every stripe.
 *
 * A handle remembers (entry, its item, the stamp it read before
 * searching), and fills only when the table it searched is still the
 * registry's current one after the search.  A hit reads, in this order:
 * the handle (seqlock), the registry's current table (which must be the
 * table this section pinned, or becomes its pin), then the stripe, which
 * must equal the remembered stamp.  Hence, inside a read section:
 *  - no change to the stripe's keys has begun since the stamp was read
 *    (the "before" store) and the search that followed saw every change
 *    that ended before it (the "after" store), so the entry is the live
 *    one - a cached hit is never older than a table lookup made just
 *    before it - and it cannot have been freed: its retirement comes
 *    after the stripe moved, and a grace period after that;
 *  - the entry is in the current table, the section's: a batch that
 *    published the current table made every stripe odd first, so a
 *    stripe read after that table still equal to the remembered stamp
 *    means the fill read its stamp after that batch ended, and then
 *    searched that table or a later one (the fill checks it is current).
 *    (So the handle needs no copy of the table pointer: 48 bytes hold the
 *    entry and its item, and a hit reads no entry.)
 */
#define UREG_STAMP_STRIPES UREG__STAMP_STRIPES
_Static_assert(offsetof(struct ureg_registry, ht) ==
	       offsetof(struct ureg__registry_head, ht), "registry head");
_Static_assert(offsetof(struct ureg_registry, stamp_base) ==
	       offsetof(struct ureg__registry_head, stamps), "registry head");
void ureg__stamp_key_begin(ureg_registry *reg, uint64_t hash);
void ureg__stamp_key(ureg_registry *reg, uint64_t hash);
void ureg__stamp_all_begin(ureg_registry *reg);
void ureg__stamp_all(ureg_registry *reg);


/*
 * The table of @reg this read section reads: the first lookup of @reg in a
 * section pins the registry's current table in the next thread-local slot
 * (sections rarely read more than one or two registries: a short linear
 * search beats hashing); later lookups in the same section reuse it, so a batch (one table swap) is seen whole
 * or not at all.  Past UREG_SNAP_SLOTS registries in one section the
 * guarantee degrades to per-lookup atomicity (documented in ureg.h).
 * Call inside a read section.
 */
static inline struct cds_lfht *ureg__ht(ureg_registry *reg)
{
	struct ureg__thread *t = &ureg__thread;
	unsigned n = t->npinned;
	struct cds_lfht *ht;

	if (UREG_LIKELY(n == 0)) {
		/* the section's first lookup: constant offsets, no bound */
		ht = rcu_dereference(reg->ht);
		t->snap[0].reg = reg;
		t->snap[0].ht = ht;
		t->npinned = 1;
		return ht;
	}
	for (unsigned i = 0; i < n; i++)
		if (UREG_LIKELY(t->snap[i].reg == reg))
			return t->snap[i].ht;
	/* first lookup of @reg in this section: pin its current table */
	ht = rcu_dereference(reg->ht);
	if (UREG_LIKELY(n < UREG_SNAP_SLOTS)) {
		t->snap[n].reg = reg;
		t->snap[n].ht = ht;
		t->npinned = n + 1;
	}
	return ht;
}

/* cds_lfht match function (entry.c): @key is a struct ureg_key. */
int ureg__entry_match(struct cds_lfht_node *node, const void *key);

/* The entry of @k in @ht, or NULL.  Call inside a read section. */
static inline struct ureg_entry *ureg__find(struct cds_lfht *ht,
					    const struct ureg_key *k)
{
	struct cds_lfht_iter iter;
	struct cds_lfht_node *node;

	cds_lfht_lookup(ht, k->hash, ureg__entry_match, k, &iter);
	node = cds_lfht_iter_get_node(&iter);
	return node ? caa_container_of(node, struct ureg_entry, node) : NULL;
}
/* A reference in @refs (entries, drain grabs): writers, any thread. */
void ureg__fbox_get(struct ureg_factory_box *fb);
void ureg__fbox_put(struct ureg_factory_box *fb);
/* A hold (a live instance, a creation in flight).  ureg__fbox_hold only
 * inside a read section that reached @fb through a published entry;
 * 0, or -ENOMEM (the thread's counters could not grow: nothing taken).
 * ureg__fbox_unhold anywhere; cannot fail. */
int ureg__fbox_hold(struct ureg_factory_box *fb);
int ureg__fbox_hold_id(uint32_t hid); /* the same, by the box's hold id */
void ureg__fbox_unhold(struct ureg_factory_box *fb);
/* fork.c: the holds' lock, a leaf */
void ureg__holds_lock(void);
void ureg__holds_unlock(bool child);
/* ureg_drain, once its grace period is over: fold the holds into @refs
 * (the caller has a reference in @refs). */
void ureg__fbox_kill(struct ureg_factory_box *fb);
void ureg__registry_get(ureg_registry *reg);
void ureg__registry_put(ureg_registry *reg);
struct ureg_entry *ureg__entry_alloc(const struct ureg_key *k);
void ureg__entry_free_unpublished(struct ureg_entry *e);
void ureg__entry_retire(struct ureg_entry *e);
void ureg__entry_retire_unused(struct ureg_entry *e);
int ureg__entry_set_source(struct ureg_entry *e, const struct ureg_source *src);
int ureg__entry_copy_source(struct ureg_entry *dst, const struct ureg_entry *src);
/* Ranking: @dst takes @src's ranks and a copy of its lower-ranked
 * providers (-ENOMEM or 0); with @take, one reference on each of their
 * boxes.  ureg__entry_unshare_more undoes the references of a copy that
 * is never published (the array itself goes with the entry). */
int ureg__entry_copy_more(struct ureg_entry *dst, const struct ureg_entry *src,
			  bool take);
void ureg__entry_unshare_more(struct ureg_entry *e);
void ureg__ibox_get(struct ureg_item_box *ib);
/* A box for factory @f under key @k (measured and hashed: its hash gives
 * the serial's low bits, UREG__SERIAL_HBITS). */
struct ureg_factory_box *ureg__fbox_new(ureg_registry *reg,
					const struct ureg_key *k,
					const struct ureg_factory *f);
struct ureg_item_box *ureg__ibox_new(const ureg_registry *reg, void *item);
void ureg__ibox_put(struct ureg_item_box *ib);
void ureg__ibox_free_unused(struct ureg_item_box *ib);
void ureg__fbox_free_unused(struct ureg_factory_box *fb);
struct cds_lfht *ureg__ht_new(unsigned long size_hint);
void ureg__ht_destroy(struct cds_lfht *ht);
void ureg__maybe_resize(ureg_registry *reg);
unsigned long ureg__buckets_for(unsigned long keys);

/* global list of registries, for fork handlers (fork.c) */
extern pthread_mutex_t ureg__registries_lock;
extern struct cds_list_head ureg__registries;
void ureg__fork_init(void);
/* every grace-period wait and RCU thread (un)registration of the library
 * passes this gate, which fork's prepare closes: liburcu's own locks
 * (grace period, reader registry) are never inherited held (fork.c) */
void ureg__gp_gate_enter(void);
void ureg__gp_gate_leave(void);
void ureg__synchronize(void);
/* call_rcu through the enqueue gate, which prepare closes last (fork.c) */
void ureg__call_rcu(struct rcu_head *head, void (*fn)(struct rcu_head *));
/* an upper layer's locks, taken after liburcu's workers pause and before
 * the core's (fork.c states the whole order); call once per layer */
/* upper layers register with the public ureg_atfork_layer() */

/* ---- events (events.c) ---- */
/* An event prepared before the writer lock (allocation may fail), queued
 * under it, delivered after it. */
struct ureg_event_node {
	struct cds_list_head node;
	struct ureg_event ev;
	char key[];
};
bool ureg__has_listeners(ureg_registry *reg);
struct ureg_event_node *ureg__event_prepare(ureg_registry *reg,
					    enum ureg_event_kind kind,
					    const char *key);
/* under the writer mutex: stamp the generation and queue */
void ureg__event_queue(ureg_registry *reg, struct ureg_event_node *n,
		       uint64_t generation);
/* after the writer mutex is dropped: deliver everything queued */
void ureg__events_flush(ureg_registry *reg);
/* instance events: delivered at once on this thread */
void ureg__event_instance_deliver(ureg_registry *reg, enum ureg_event_kind kind,
				  const char *key, ureg_ctx *ctx, void *instance);
extern long ureg__listener_count; /* events.c: listeners in the process */
/* An instance event, delivered only when some listener exists (the check
 * inline: a creation and a release without listeners make no call). */
static inline void ureg__event_instance(ureg_registry *reg, enum ureg_event_kind kind,
					const char *key, ureg_ctx *ctx, void *instance)
{
	if (UREG_UNLIKELY(__atomic_load_n(&ureg__listener_count, __ATOMIC_ACQUIRE) > 0))
		ureg__event_instance_deliver(reg, kind, key, ctx, instance);
}
void ureg__events_detach_registry(ureg_registry *reg);
void ureg__events_lock(void);
void ureg__events_unlock(void);

/* ---- contexts (ctx.c) ---- */
/*
 * ureg_get and ureg_get_key with a context, inside the caller's read
 * section, before their table search: start fetching the cache slot where
 * @ctx would hold the instance of a CONTEXT-scope factory whose key hashes
 * to @hash (UREG__SERIAL_HBITS), so that the slot's miss overlaps the
 * search's instead of following it.  Reads @ctx's cache pointer and mask;
 * writes nothing, never blocks.  A cache past 2^UREG__SERIAL_HBITS slots
 * homes serials on counter bits too: no prefetch then.
 */
void ureg__ctx_cache_prefetch(const ureg_ctx *ctx, uint64_t hash);
int ureg__ctx_get_instance(ureg_ctx *ctx, ureg_registry *reg,
			   struct ureg_entry *e, void **out);
/* Like ureg__ctx_create (not cached), consuming the caller's hold on
 * @fb (ureg__fbox_hold): the instance keeps it, a failure drops it. */
int ureg__ctx_create_ref(ureg_ctx *ctx, ureg_registry *reg,
			 struct ureg_factory_box *fb, void **out);
int ureg__ctx_create(ureg_ctx *ctx, ureg_registry *reg,
		     struct ureg_factory_box *fb, bool cached, void **out);
/* ureg_drain's holder report: live instances of @fb that @ctx holds.
 * Takes @ctx's lock; call from ureg_ctx_foreach (list lock first). */
size_t ureg__ctx_instances_of(ureg_ctx *ctx, const struct ureg_factory_box *fb);
void ureg__ctx_lock_all(void);
void ureg__ctx_unlock_all(void);
void ureg__ctx_unlock_all_child(void);

/* ---- arenas (arena_pool.c) ---- */
int ureg__arena_shared(unsigned *arena);
extern UREG_TLS unsigned ureg__home_arena; /* the thread's pool arena + 1 */
int ureg__arena_dedicated_new(unsigned *arena);
void ureg__arena_dedicated_release(unsigned arena);
void ureg__arena_lock(void);
void ureg__arena_unlock(void);

#pragma GCC visibility pop

#endif /* UREG_INTERNAL_H */
