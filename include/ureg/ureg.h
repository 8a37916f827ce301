/* SPDX-License-Identifier: MIT */
/*
 * ureg - one generic concurrent registry ("universal registry").
 *
 * The contract, stated up front (see also ../README.md):
 *
 *  - Many readers, serialized writers.  Lookups (ureg_lookup, ureg_get on a
 *    singleton, ureg_get of a cached CONTEXT-scope instance) run inside an RCU
 *    read-side section (liburcu, memb flavor) over a lock-free cds_lfht.  They
 *    never lock, never allocate and never write shared memory.
 *  - Every mutation of one registry serializes on that registry's writer
 *    mutex, publishes with cds_lfht add_unique / add_replace / del (or, for a
 *    whole generation, one rcu_assign_pointer of a new table) and reclaims
 *    with call_rcu.  No user code (factory, destructor, listener) ever runs
 *    while a writer mutex is held.
 *  - Threads are registered with RCU lazily by the library on their first
 *    call and unregistered at thread exit; applications never do it.
 *  - Pointer lifetime is explicit:
 *      borrowed pointer:  valid until the ureg_read_unlock() that closes the
 *                         read section it was obtained in;
 *      counted reference: (ureg_acquire) valid until ureg_ref_release();
 *      instance:          owned by its user context, valid until
 *                         ureg_instance_release() or ureg_ctx_destroy().
 *    A removed item's destructor runs only after a grace period AND after
 *    its last counted reference is released, on whichever thread drops it
 *    last (often liburcu's call_rcu worker).
 *  - fork() without exec: both processes keep working.  ureg's atfork
 *    handlers hold its locks across the fork and, in the child, drop the
 *    threads that did not survive from liburcu's reader list.  A thread
 *    inside a read section at the instant of fork() is one of those.
 *  - Every call returns 0 or a negative errno; ureg_strerror() turns it into
 *    text and ureg_last_error() gives the calling thread's detailed message
 *    for its last failed call.  A failed call changes nothing.
 *
 * Keys: 1..UREG_KEY_MAX bytes of printable ASCII without space
 * (0x21..0x7e), NUL terminated.  Anything else is -EINVAL.  A key is
 * hashed with XXH3 under a seed each process draws at random when libureg
 * is loaded (getrandom), so keys a client picks (tenant or user names)
 * cannot be chosen offline to pile into one bucket; the environment
 * variable UREG_HASH_SEED (a number, read once at load, ignored in
 * setuid programs) fixes the seed to reproduce a run, 0 giving plain
 * XXH3_64bits.  Hashes are only ever compared within one process and its
 * forked children, which keep the seed.
 */
#ifndef UREG_UREG_H
#define UREG_UREG_H

#include <ureg/api.h>

#include <errno.h>   /* return values are negative errno constants */
#include <stddef.h>
#include <stdint.h>
#include <stdbool.h>

#ifdef __cplusplus
extern "C" {
#endif

#define UREG_KEY_MAX 255          /* longest key, in bytes, without the NUL */
#define UREG_NAME_MAX 63          /* longest registry / type name */

typedef struct ureg_registry ureg_registry;
typedef struct ureg_ctx ureg_ctx;
typedef struct ureg_ref ureg_ref;
typedef struct ureg_anchor ureg_anchor;

/* ------------------------------------------------------------------ */
/* Type descriptor: the "T" of UniversalRegistry[T].                   */
/* ------------------------------------------------------------------ */

/**
 * struct ureg_type - describes what a registry holds.
 * @name:             type name shown by ureg_report ("agent", "tool"...).
 * @parent:           parent type for the hierarchy report, NULL for a root.
 * @item_destroy:     destroys a singleton item once no reader can see it and
 *                    no counted reference holds it.  May be NULL.  Runs on
 *                    the thread that drops the last reference (often the
 *                    call_rcu worker): it must not call ureg_synchronize(),
 *                    ureg_registry_destroy() or ureg_ctx_destroy().
 * @instance_destroy: destroys a factory-made instance when its context is
 *                    destroyed or the instance released; @ctx is the owning
 *                    context (free context memory with ureg_ctx_free).  May
 *                    be NULL.  A factory may override it per entry.
 * @on_create:        hook run after every successful factory creation and
 *                    before the instance is visible to anyone (injection:
 *                    the agent registry sets its event bridge here).  A
 *                    negative return fails the creation; the instance is
 *                    then destroyed.  May be NULL.
 * @on_create_arg:    passed to @on_create unchanged.
 *
 * A descriptor must outlive every registry that uses it (normally static).
 */
typedef struct ureg_type {
	const char *name;
	const struct ureg_type *parent;
	void (*item_destroy)(void *item);
	void (*instance_destroy)(void *instance, ureg_ctx *ctx);
	int (*on_create)(ureg_registry *reg, const char *key, void *instance,
			 ureg_ctx *ctx, void *on_create_arg);
	void *on_create_arg;
	void *reserved[4]; /* zero (-EINVAL otherwise): <ureg/api.h>, ABI */
} ureg_type;

/* ------------------------------------------------------------------ */
/* Factories                                                           */
/* ------------------------------------------------------------------ */

enum ureg_scope {
	/* A new instance on every creation (the original behaviour). */
	UREG_SCOPE_TRANSIENT = 0,
	/* One instance per (context, key): created once, even when threads
	 * race; later ureg_get calls return the cached instance. */
	UREG_SCOPE_CONTEXT = 1,
};

/**
 * ureg_factory_fn - makes one instance inside @ctx.
 * @ctx:  the user context; allocate the instance with ureg_ctx_alloc() and
 *        friends so that it is accounted and freed with the context.
 * @arg:  the factory's argument (struct ureg_factory.arg).
 * @out:  where to store the new instance (must not be NULL on success).
 *
 * Return 0 or a negative errno (the creation then fails with that errno).
 * Called with no ureg lock held, possibly inside the caller's read section:
 * it must not call ureg_synchronize(), ureg_registry_destroy() or
 * ureg_ctx_destroy().
 */
typedef int (*ureg_factory_fn)(ureg_ctx *ctx, void *arg, void **out);

/**
 * struct ureg_factory - a factory registration.
 * @create:           the constructor (required).
 * @scope:            UREG_SCOPE_TRANSIENT or UREG_SCOPE_CONTEXT.
 * @arg:              passed to @create; owned by the registry on success.
 * @arg_free:         frees @arg once the factory and every instance it made
 *                    are gone.  May be NULL.
 * @instance_destroy: overrides the type's instance destructor for instances
 *                    of this factory.  May be NULL.
 * @anchor:           optional keep-alive (e.g. a dlopen'd plugin): the
 *                    registry takes one reference, every instance another,
 *                    released when the entry / instance is gone.
 */
struct ureg_factory {
	ureg_factory_fn create;
	enum ureg_scope scope;
	void *arg;
	void (*arg_free)(void *arg);
	void (*instance_destroy)(void *instance, ureg_ctx *ctx);
	ureg_anchor *anchor;
	void *reserved[4]; /* zero (-EINVAL otherwise): <ureg/api.h>, ABI */
};

/**
 * struct ureg_anchor - a reference-counted keep-alive for code or data that
 * items and instances depend on (a plugin's shared object).  The owner
 * initializes it with ureg_anchor_init(); @release runs once, when the last
 * reference is gone, on the thread that dropped it.
 */
struct ureg_anchor {
	long refs; /* private: use ureg_anchor_get / ureg_anchor_put */
	void (*release)(ureg_anchor *anchor);
	void *reserved[2]; /* private, zeroed by ureg_anchor_init (ABI) */
};

/** ureg_anchor_init - set @a to one reference owned by the caller. Any thread. */
UREG_API void ureg_anchor_init(ureg_anchor *a, void (*release)(ureg_anchor *a));
/** ureg_anchor_get - take a reference. Any thread, never blocks. */
UREG_API void ureg_anchor_get(ureg_anchor *a);
/** ureg_anchor_put - drop a reference; the last one runs @release. Any thread. */
UREG_API void ureg_anchor_put(ureg_anchor *a);

/* ------------------------------------------------------------------ */
/* Registries                                                          */
/* ------------------------------------------------------------------ */

/**
 * ureg_registry_new - create an empty registry.
 * @type:  its type descriptor (must outlive the registry).
 * @name:  1..UREG_NAME_MAX characters, same alphabet as keys.
 * @out:   receives the registry.
 *
 * Any thread; blocks only in malloc.  The registry is valid until
 * ureg_registry_destroy().  Returns 0, -EINVAL or -ENOMEM.
 */
UREG_API int ureg_registry_new(const ureg_type *type, const char *name,
		      ureg_registry **out);

/**
 * ureg_registry_destroy - unregister everything and free the registry.
 *
 * Call once, from a thread that is NOT inside a read section, after every
 * other thread has stopped using @reg.  Blocks for a grace period and for
 * pending call_rcu callbacks (rcu_barrier).  Items still pinned by counted
 * references are destroyed when those are released.  NULL is a no-op.
 */
UREG_API void ureg_registry_destroy(ureg_registry *reg);

/** ureg_registry_name - the registry's name; valid as long as @reg. Any thread. */
UREG_API const char *ureg_registry_name(const ureg_registry *reg);
/** ureg_registry_type - the registry's type descriptor. Any thread. */
UREG_API const ureg_type *ureg_registry_type(const ureg_registry *reg);

/**
 * ureg_register - register a singleton @item under @key.
 *
 * Any thread; blocks on the registry's writer mutex and in malloc.  On
 * success the registry owns @item (destroyed with type->item_destroy after
 * it is removed, a grace period has passed and no reference remains).  A key
 * may hold a singleton and a factory at once.  Same as
 * ureg_register_ranked(@reg, @key, @item, 0).
 * Returns 0; -EINVAL (NULL/invalid key or registry, NULL item); -EEXIST (the
 * key already has a singleton at rank 0: nothing changed, @item still the
 * caller's); -ENOMEM.
 */
UREG_API int ureg_register(ureg_registry *reg, const char *key, void *item);

/**
 * ureg_register_factory - register a factory under @key.
 *
 * Any thread; blocks on the writer mutex and in malloc.  @f is copied; on
 * success the registry owns f->arg and one reference to f->anchor.  Same
 * as ureg_register_factory_ranked(@reg, @key, @f, 0).
 * Returns 0; -EINVAL (bad key, NULL create, bad scope); -EEXIST (the key
 * already has a factory at rank 0, nothing changed); -ENOMEM.
 */
UREG_API int ureg_register_factory(ureg_registry *reg, const char *key,
			  const struct ureg_factory *f);

/*
 * Ranking (the kernel crypto API's priorities, OSGi's service ranking).
 *
 * A key may hold several singletons and several factories, each with a
 * rank (any int; plain ureg_register / ureg_register_factory use 0).
 * Ranks order providers of the same kind:
 *
 * R.1  Lookups see the highest-ranked provider of each kind: ureg_lookup,
 *      ureg_acquire and the singleton step of ureg_get see the top-ranked
 *      singleton; ureg_create_instance and the factory step of ureg_get
 *      the top-ranked factory.  ureg_get still prefers a singleton over a
 *      factory, whatever their ranks (kinds are not ranked against each
 *      other).
 * R.2  Equal ranks: a key holds at most one provider per (kind, rank).
 *      Registering a second one is -EEXIST and changes nothing, so the
 *      winner never depends on registration order and (key, kind, rank)
 *      names a provider (ureg_unregister_ranked).
 * R.3  Fallback is atomic: every change builds the key's whole provider
 *      set anew and publishes it with one swap.  A reader sees the set
 *      before or after the change: never a lower-ranked provider while a
 *      higher one is registered, never a miss while any provider of the
 *      kind remains.
 * R.4  The single-provider path is untouched: the top provider of each
 *      kind sits where a lone provider sits; the others live in the
 *      entry's cold part, which lookups do not read.
 *
 * ureg_replace / ureg_replace_factory swap the top-ranked provider (it
 * keeps its rank); ureg_unregister and ureg_drain remove the top-ranked
 * provider of each kind in @what (the next one takes over);
 * ureg_unregister_ranked removes the one at a given rank.  A batch's
 * ureg_batch_put replaces every provider of its key; ureg_batch_add
 * builds a ranked set in a batch.
 */

/**
 * ureg_register_ranked - add singleton @item to @key at @rank.
 * @rank: any int; the highest-ranked singleton is the one lookups see.
 *
 * Any thread; blocks on the writer mutex and in malloc.  On success the
 * registry owns @item (as ureg_register).  A key holding a higher-ranked
 * singleton keeps serving that one; a lower-ranked one is replaced
 * atomically for readers (R.3).  Returns 0; -EINVAL (bad registry or key,
 * NULL item); -EEXIST (a singleton at @rank already: nothing changed, @item
 * still the caller's); -ENOMEM.
 */
UREG_API int ureg_register_ranked(ureg_registry *reg, const char *key, void *item,
			 int rank);

/**
 * ureg_register_factory_ranked - add factory @f to @key at @rank.
 *
 * As ureg_register_factory, ranked among the key's factories like
 * ureg_register_ranked among its singletons.  Returns 0; -EINVAL; -EEXIST
 * (a factory at @rank already: nothing changed, f->arg still the
 * caller's); -ENOMEM.
 */
UREG_API int ureg_register_factory_ranked(ureg_registry *reg, const char *key,
				 const struct ureg_factory *f, int rank);

/**
 * ureg_replace - atomically swap the singleton under @key for @item.
 *
 * Readers see either the old or the new item, never neither.  The old item
 * is destroyed after its grace period and last reference.  The key's
 * factory, if any, is kept.  With several singletons, the top-ranked one
 * is swapped and @item takes its rank.  Any thread; blocks on the writer
 * mutex.
 * Returns 0, -EINVAL, -ENOENT (no singleton under @key; nothing changed),
 * -ENOMEM.
 */
UREG_API int ureg_replace(ureg_registry *reg, const char *key, void *item);

/**
 * ureg_replace_factory - atomically swap the factory under @key.
 *
 * Instances already made by the old factory stay in their contexts until
 * released; a CONTEXT-scope ureg_get after the swap makes a new instance
 * with the new factory.  Returns 0, -EINVAL, -ENOENT, -ENOMEM.
 */
UREG_API int ureg_replace_factory(ureg_registry *reg, const char *key,
			 const struct ureg_factory *f);

/* What ureg_unregister removes. */
enum {
	UREG_SINGLETON = 1u << 0,
	UREG_FACTORY = 1u << 1,
	UREG_BOTH = UREG_SINGLETON | UREG_FACTORY,
};

/**
 * ureg_unregister - remove the singleton and/or factory under @key.
 * @what: UREG_SINGLETON, UREG_FACTORY or UREG_BOTH.
 *
 * Any thread; blocks on the writer mutex and, with ranked providers, in
 * malloc.  With several providers of a kind, the top-ranked one goes and
 * the next-ranked one takes over in the same swap (R.3).  Readers inside a
 * read section may still see the old entry; it is destroyed after the
 * grace period and last reference.  Returns 0, -EINVAL, -ENOENT (nothing
 * of @what under @key), -ENOMEM (only with more than one provider left:
 * nothing changed).
 */
UREG_API int ureg_unregister(ureg_registry *reg, const char *key, unsigned what);

/**
 * ureg_unregister_ranked - remove the provider(s) of @what at @rank.
 * @what: UREG_SINGLETON, UREG_FACTORY or UREG_BOTH (each kind's provider
 *        at @rank, where there is one).
 *
 * As ureg_unregister, but names the provider by rank (R.2) instead of
 * taking the top one; removing a lower-ranked provider changes nothing a
 * lookup sees.  Returns 0, -EINVAL, -ENOENT (nothing of @what at @rank),
 * -ENOMEM.
 */
UREG_API int ureg_unregister_ranked(ureg_registry *reg, const char *key, unsigned what,
			   int rank);

/* ureg_drain's timeout for "as long as it takes". */
#define UREG_WAIT_FOREVER (~0u)
/* Holders ureg_drain's report names one by one (the counts cover all). */
#define UREG_DRAIN_HOLDERS_MAX 8

/**
 * struct ureg_drain_holder - one context that still holds instances.
 * @ctx:       the context, for identity only: it may be gone by the time
 *             the report is read; do not dereference it.
 * @name:      its name when the report was made ("" when it has none).
 * @instances: how many live instances of the drained factory it holds.
 */
struct ureg_drain_holder {
	const ureg_ctx *ctx;
	char name[UREG_NAME_MAX + 1];
	size_t instances;
	uint64_t reserved[2]; /* zeroed: room for fields (ABI) */
};

/**
 * struct ureg_drain_report - who held the drained entry when ureg_drain
 * gave up (all zero after a successful drain).
 * @refs:      counted references (ureg_acquire) still out on the singleton.
 * @instances: live instances the factory made, over all contexts.
 * @contexts:  how many contexts hold them.
 * @other:     other references on the factory: creations in flight,
 *             instances being destroyed, and older entries of the key
 *             kept alive by a counted reference to their singleton.
 * @nholders:  entries used in @holders (at most UREG_DRAIN_HOLDERS_MAX;
 *             @contexts may be more).
 * @holders:   the holding contexts, oldest first.
 */
struct ureg_drain_report {
	size_t refs;
	size_t instances;
	size_t contexts;
	size_t other;
	size_t nholders;
	struct ureg_drain_holder holders[UREG_DRAIN_HOLDERS_MAX];
	uint64_t reserved[4]; /* zeroed: room for fields (ABI) */
};

/**
 * ureg_drain - unregister @what under @key, then wait until nothing made
 * from the removed entry is still held: no counted reference on its
 * singleton, no live instance made by its factory (in any context).
 * @reg:        the registry.
 * @key:        the key.
 * @what:       UREG_SINGLETON, UREG_FACTORY or UREG_BOTH (as ureg_unregister).
 * @timeout_ms: how long to wait for holders, or UREG_WAIT_FOREVER.
 * @report:     on -ETIMEDOUT, who still holds what; zeroed otherwise.  May
 *              be NULL (ureg_last_error() carries the same report as text:
 *              "... 2 instances in 1 context (alice: 2), 0 counted
 *              references ...").
 *
 * This is what a safe plugin unload or a graceful shutdown needs: when it
 * returns 0 the singleton's item_destroy and the factory's arg_free have
 * run (on the calling thread, unless a holder let go last), and nothing
 * can still call into the code they came from.
 *
 * Who may call it: any thread, outside a read section (-EPERM inside one),
 * not from a destructor, factory or listener, and not while the calling
 * thread itself holds a counted reference or an instance it would wait
 * for (it would wait for itself until the timeout).
 *
 * Blocking: the writer mutex (as ureg_unregister), then one grace period
 * and the call_rcu callbacks queued before it (not counted against
 * @timeout_ms: read sections are short by contract), then at most
 * @timeout_ms for holders.  It does not poll: every reference dropped on
 * any entry box wakes it to re-check (a futex wait with the time left).
 *
 * The removal itself is not undone on timeout: new lookups no longer see
 * the entry, and its boxes die, as always, with their last holder.
 * Returns 0; -EINVAL (bad arguments or flags); -ENOENT (nothing of @what
 * under @key); -EPERM; -ENOMEM (nothing changed); -ETIMEDOUT (removed, but
 * still held: see @report).
 */
UREG_API int ureg_drain(ureg_registry *reg, const char *key, unsigned what,
	       unsigned timeout_ms, struct ureg_drain_report *report);

/* ------------------------------------------------------------------ */
/* Read sections and lookups                                           */
/* ------------------------------------------------------------------ */

/**
 * ureg_read_lock / ureg_read_unlock - open / close a read section.
 *
 * Any thread (registered with RCU on first use, automatically).  Nests.
 * Never blocks, never writes shared memory.  Inside a section do not call
 * ureg_synchronize(), ureg_registry_destroy() or ureg_ctx_destroy().
 */
UREG_API void ureg_read_lock(void);
UREG_API void ureg_read_unlock(void);

/** ureg_in_read_section - true inside ureg_read_lock(). Any thread. */
UREG_API bool ureg_in_read_section(void);

/**
 * ureg_synchronize - wait for every read section that started before the
 * call to end (a grace period).  Not inside a read section.
 */
UREG_API void ureg_synchronize(void);

/**
 * ureg_lookup - find the singleton under @key; never creates anything.
 *
 * Call inside a read section.  Never blocks, locks, allocates or writes
 * shared memory.  *@item is a borrowed pointer valid until the section
 * closes.  Returns 0, -EINVAL (bad arguments), -EPERM (not inside a read
 * section), -ENOENT (no singleton under @key).  After a failure
 * ureg_last_error() names the registry and the key (formatted only when
 * read: the miss itself copies two short strings and formats nothing).
 */
UREG_API int ureg_lookup(ureg_registry *reg, const char *key, void **item);

/**
 * ureg_contains - whether @key holds a singleton or a factory. Any thread,
 * never blocks.  Returns 1, 0 or -EINVAL.
 */
UREG_API int ureg_contains(ureg_registry *reg, const char *key);

/**
 * ureg_get - the original get(key, ctx).
 * @reg:  the registry.
 * @key:  the key.
 * @ctx:  the user context for a factory's instance; NULL for singletons only.
 * @out:  receives the singleton or the instance (untouched on failure).
 *
 * Returns the singleton under @key if there is one (a borrowed pointer,
 * valid until the read section closes); otherwise, when @ctx is not NULL
 * and the key has a factory, its instance in @ctx: for CONTEXT scope the
 * context's cached instance (created once, single-flight), for TRANSIENT
 * scope a new one.  Instances belong to @ctx and stay valid until released
 * or the context is destroyed.
 *
 * Who may call it: any thread.  Inside a read section it serves both
 * kinds.  Outside one it serves factory keys only (their instances belong
 * to @ctx, not to a section; the call opens a section of its own for the
 * lookup, and a TRANSIENT creation runs after it is closed): a key that
 * holds a singleton is refused with -EPERM, because the borrowed pointer
 * would be dead on return.  For singletons open a section
 * (UREG_READ_SECTION below) or take a counted reference (ureg_acquire).
 *
 * Blocking: the cached paths never block or write shared memory; a
 * creation runs the factory (no ureg lock held) and may block on @ctx's
 * lock while another thread creates the same instance.
 *
 * Returns 0, -EINVAL, -EPERM (a singleton key, outside a read section),
 * -ENOENT (nothing usable under @key), -EDEADLK (a creation cycle),
 * -ENOMEM / -EDQUOT (context quota) or the factory's own error.  On
 * failure ureg_last_error() names the registry and the key; the message is
 * formatted only when it is read, so a miss costs no formatting.
 */
UREG_API int ureg_get(ureg_registry *reg, const char *key, ureg_ctx *ctx, void **out);

/**
 * ureg_create_instance - always make a new instance with @key's factory.
 *
 * Any thread, inside or outside a read section; blocks in the factory, on
 * @ctx's allocation lock and, when the thread's per-factory counters must
 * grow (its first instance of a newer factory), on a short internal lock.
 * The instance belongs to @ctx (valid until
 * ureg_instance_release or ureg_ctx_destroy).  Returns 0, -EINVAL, -ENOENT
 * (no factory under @key), -ENOMEM, -EDQUOT, or the factory's error.
 */
UREG_API int ureg_create_instance(ureg_registry *reg, const char *key, ureg_ctx *ctx,
			 void **out);

/**
 * ureg_acquire - take a counted reference to the singleton under @key.
 *
 * Any thread, inside or outside a read section; never blocks.  The item
 * stays alive (even if unregistered or replaced) until ureg_ref_release().
 * This is the one lookup that writes shared memory (the entry's count): use
 * it to keep an item past a read section, not on a hot path.
 * Returns 0, -EINVAL, -ENOENT.
 */
UREG_API int ureg_acquire(ureg_registry *reg, const char *key, ureg_ref **ref);

/** ureg_ref_item - the item a reference holds; valid until the release. */
UREG_API void *ureg_ref_item(const ureg_ref *ref);

/**
 * ureg_ref_release - drop a counted reference.  Any thread, not required to
 * be inside a read section; may run the item's destructor.  NULL is a no-op.
 */
UREG_API void ureg_ref_release(ureg_ref *ref);

/**
 * ureg_count - number of keys (with a singleton, a factory or both).
 * Any thread, never blocks; exact when no writer is running.
 */
UREG_API size_t ureg_count(const ureg_registry *reg);

/**
 * ureg_keys - snapshot of the keys, in no particular order.
 * @keys:  receives a malloc'd NULL-terminated array of malloc'd strings;
 *         free it with ureg_keys_free().  Owned by the caller.
 * @n:     receives the number of keys (may be NULL).
 *
 * Any thread; takes its own read section; allocates.  Keys registered or
 * removed while it runs may or may not appear.  Returns 0, -EINVAL, -ENOMEM.
 */
UREG_API int ureg_keys(ureg_registry *reg, char ***keys, size_t *n);

/** ureg_keys_free - free a ureg_keys() result. NULL is a no-op. Any thread. */
UREG_API void ureg_keys_free(char **keys);

/**
 * struct ureg_entry_info - what ureg_entry_info() reports about one key.
 * Strings point into the entry: valid until the read section closes.
 */
struct ureg_entry_info {
	bool has_singleton;
	bool has_factory;
	enum ureg_scope scope;
	uint64_t generation;     /* registry generation that last wrote it */
	const char *provider;    /* provider name, or NULL */
	const char *source_file; /* config file, or NULL */
	unsigned source_line;    /* 1-based; 0 when unknown */
	unsigned source_column;  /* 1-based; 0 when unknown */
	int rank;                /* rank of the provider ureg_get uses first */
	unsigned providers;      /* singletons + factories under the key */
	uint64_t reserved[4];    /* zeroed: room for fields (ABI) */
};

/**
 * ureg_entry_info - describe @key.  Call inside a read section; never
 * blocks.  Returns 0, -EINVAL, -EPERM, -ENOENT.
 */
UREG_API int ureg_entry_info(ureg_registry *reg, const char *key,
		    struct ureg_entry_info *info);

/**
 * struct ureg_provider_info - one provider of a key (ureg_providers).
 * @what:   UREG_SINGLETON or UREG_FACTORY.
 * @rank:   its rank.
 * @active: true for the top-ranked one of its kind (the one lookups see).
 * @item:   the singleton (borrowed: valid until the read section closes),
 *          NULL for a factory.
 * @scope:  a factory's scope.
 */
struct ureg_provider_info {
	unsigned what;
	int rank;
	bool active;
	void *item;
	enum ureg_scope scope;
	uint64_t reserved[2]; /* zeroed: room for fields (ABI) */
};

/**
 * ureg_providers - every provider of @key, highest rank first (a
 * singleton before a factory of equal rank).
 * @out: filled with up to @cap providers (may be NULL when @cap is 0).
 *
 * Call inside a read section; never blocks or allocates.  The list is one
 * consistent snapshot of the key.  Returns the number of providers (more
 * than @cap when @out was too small: call again with a larger one),
 * -EINVAL, -EPERM (not inside a read section), -ENOENT.
 */
UREG_API int ureg_providers(ureg_registry *reg, const char *key,
		   struct ureg_provider_info *out, size_t cap);

/* ------------------------------------------------------------------ */
/* Key handles: a key validated, measured and hashed once              */
/* ------------------------------------------------------------------ */

/**
 * struct ureg_key - a key handle: a key string validated, measured and
 * hashed (XXH3) once, for the lookups a server repeats on every request.
 *
 * A lookup through a handle (ureg_lookup_key & co.) does no validation, no
 * strlen and no hashing.  A *cached* handle (UREG_KEY_CACHED_INIT or
 * ureg_key_init_cached) also remembers the entry it last found and that
 * entry's item, together with a stamp of the part of the registry the
 * entry lives in: while that stamp has not moved and the read section's
 * table is the registry's current one, a lookup returns the remembered
 * item without touching the table or the entry (guarantee G.4 below).
 *
 * Every field is private.  The string is NOT copied: it must outlive the
 * handle (a string literal, a config string kept for the handle's life).
 * One handle may be shared by any number of threads and used with any
 * number of registries (a cached handle remembers one registry at a time).
 *
 * Concurrency: a plain handle is only read by lookups, once prepared.  A
 * cached handle is written only when a lookup misses its cache (a
 * seqlock-protected refill that a losing thread skips); a hit writes no
 * shared memory.  Give hot cached handles their own cache line (e.g.
 * _Alignas(64)) if many of them sit side by side and refill often.
 */
typedef struct ureg_key {
	const char *str;       /* the key; not owned */
	uint64_t hash;         /* XXH3 of str, len with the process's seed */
	uint16_t len;          /* strlen(str), once prepared */
	uint16_t state;        /* UREG__KEY_* bits, atomic */
	/* the cache of a cached handle: a seqlock over (entry, item, stamp) */
	uint32_t seq;          /* odd while a refill writes */
	const void *entry;
	void *item;            /* entry's item (an entry never changes it) */
	uint64_t stamp;
} ureg_key; /* 48 bytes on LP64 */

#define UREG__KEY_READY  1u /* str, len and hash are set and valid */
#define UREG__KEY_BAD    2u /* str failed validation: lookups give -EINVAL */
#define UREG__KEY_CACHED 4u /* remember the entry found */
#define UREG__KEY_BUSY   8u /* one thread is preparing a static handle */

/**
 * UREG_KEY_INIT / UREG_KEY_CACHED_INIT - static initializers for a handle
 * at the call site:
 *
 *	static ureg_key planner = UREG_KEY_CACHED_INIT("planner");
 *	ureg_lookup_key(agents, &planner, &item);
 *
 * The first lookup through such a handle validates and hashes @s (once,
 * publishing the result with a release store; threads racing on that
 * first use each compute it and one of them stores it).  A handle made
 * this way must live in writable memory (not `const`).
 */
#define UREG_KEY_INIT(s) { .str = (s) }
#define UREG_KEY_CACHED_INIT(s) { .str = (s), .state = UREG__KEY_CACHED }

/**
 * ureg_key_init - make @k a plain (uncached) handle for @key.
 * @k:   the handle to fill (owned by the caller; not yet shared).
 * @key: 1..UREG_KEY_MAX printable ASCII bytes without space; not copied:
 *       it must outlive @k.
 *
 * Any thread, never blocks, never allocates.  Returns 0 or -EINVAL (bad
 * key; @k is then a handle every lookup refuses with -EINVAL).
 */
UREG_API int ureg_key_init(ureg_key *k, const char *key);

/**
 * ureg_key_init_cached - like ureg_key_init(), and @k remembers the entry
 * its lookups find (see struct ureg_key).  Returns 0 or -EINVAL.
 */
UREG_API int ureg_key_init_cached(ureg_key *k, const char *key);

/**
 * ureg_key_str - the key string of @k (the pointer it was made with).
 * Any thread.  Valid as long as that string.
 */
UREG_API const char *ureg_key_str(const ureg_key *k);

/**
 * ureg_lookup_key - ureg_lookup() through a key handle.
 *
 * Call inside a read section.  Never blocks, locks or allocates.  On a
 * cache hit it reads the handle and two words of the registry (its table
 * pointer and the key's stamp), not the entry; on a miss
 * it searches the table and, for a cached handle, may refill the handle
 * (the only write, to the handle itself).  *@item is a borrowed pointer,
 * valid until the section closes.  Returns 0, -EINVAL (NULL argument or a
 * handle whose key is invalid), -EPERM (not inside a read section),
 * -ENOENT.
 *
 * G.4 (cached handles): a cached lookup returns exactly what a table
 * lookup in the same read section would: never an item that was replaced
 * or unregistered by a change published before the section started, and
 * within one section the same batch generation as every other lookup of
 * that registry (guarantee of ureg_batch_commit).
 */
UREG_API int ureg_lookup_key(ureg_registry *reg, ureg_key *k, void **item);

/**
 * ureg_get_key - ureg_get() through a key handle: same contract, same
 * returns (outside a read section: factory keys only, -EPERM for a
 * singleton).  Any thread.
 */
UREG_API int ureg_get_key(ureg_registry *reg, ureg_key *k, ureg_ctx *ctx, void **out);

/**
 * ureg_contains_key - ureg_contains() through a key handle.  Any thread,
 * never blocks (takes its own read section).  Returns 1, 0 or -EINVAL.
 */
UREG_API int ureg_contains_key(ureg_registry *reg, ureg_key *k);

/**
 * ureg_acquire_key - ureg_acquire() through a key handle: a counted
 * reference valid until ureg_ref_release().  Any thread, never blocks.
 * Returns 0, -EINVAL, -ENOENT.
 */
UREG_API int ureg_acquire_key(ureg_registry *reg, ureg_key *k, ureg_ref **ref);

/**
 * ureg_create_instance_key - ureg_create_instance() through a key handle;
 * same contract and returns.
 */
UREG_API int ureg_create_instance_key(ureg_registry *reg, ureg_key *k, ureg_ctx *ctx,
			     void **out);

/* ------------------------------------------------------------------ */
/* Batches: several changes to one registry published as one generation */
/* ------------------------------------------------------------------ */

/**
 * struct ureg_source - where an entry came from (shown by ureg_report).
 * All strings are copied.  Any field may be NULL / 0.
 */
struct ureg_source {
	const char *provider;  /* builtin provider or "plugin.so:symbol" */
	const char *file;      /* config file */
	unsigned line;
	unsigned column;
	void *reserved[2];     /* zero (-EINVAL otherwise): ABI */
};

typedef struct ureg_batch ureg_batch;

/**
 * ureg_batch_new - start a batch of changes to @reg.  Nothing is visible
 * until ureg_batch_commit().  Any thread; allocates.  The batch belongs to
 * the caller until commit or abort.  Returns 0, -EINVAL, -ENOMEM.
 */
UREG_API int ureg_batch_new(ureg_registry *reg, ureg_batch **out);

/**
 * ureg_batch_put - in the batch, set @key's singleton to @item (NULL: none)
 * and its factory to @f (NULL: none), replacing whatever the key holds.
 * Both NULL removes the key.  @src may be NULL.  The batch owns @item and
 * f->arg from now on (freed by abort, or by the registry after commit).
 * Returns 0, -EINVAL (bad key or factory; the batch is unchanged and the
 * caller still owns @item and f->arg), -EEXIST (@key already in this
 * batch), -ENOMEM.
 */
UREG_API int ureg_batch_put(ureg_batch *b, const char *key, void *item,
		   const struct ureg_factory *f, const struct ureg_source *src);

/**
 * ureg_batch_add - in the batch, add a provider to @key at @rank: the
 * singleton @item and/or the factory @f (at least one).
 *
 * The key's first ureg_batch_put or ureg_batch_add in a batch replaces
 * whatever the key holds; each further ureg_batch_add adds one provider
 * of each kind given, ranked as ureg_register_ranked does (R.1, R.2), so a
 * batch can publish a key's whole ranked set in one generation.  The
 * key's source (ureg_entry_info) is the @src given with the provider
 * ureg_get uses first: the top singleton, else the top factory.  The batch owns
 * @item and f->arg from now on.  Any thread that owns @b; allocates.
 * Returns 0, -EINVAL (bad key or factory, neither @item nor @f; the
 * caller still owns both), -EEXIST (a provider of that kind at @rank
 * already in this batch, or @key removed in it), -ENOMEM (the batch is
 * unchanged).
 */
UREG_API int ureg_batch_add(ureg_batch *b, const char *key, void *item,
		   const struct ureg_factory *f, int rank,
		   const struct ureg_source *src);

/**
 * ureg_batch_commit - publish every change of @b at once and free @b.
 *
 * Builds the next generation's table beside the live one and publishes it
 * with one pointer swap.  The first lookup of a registry in a read section
 * pins that registry's table (thread-locally) for the rest of the section,
 * so a reader inside one read section sees all of the batch or none of it
 * (guaranteed for up to 16 registries read in one section; beyond that,
 * each lookup is still atomic).  Then waits for a grace period and
 * releases the previous generation.  Call outside a read section; blocks
 * on the writer mutex, in malloc and for a grace period.  @generation is
 * recorded in every entry the batch writes (0: the registry's next
 * number).  Returns 0; -EINVAL (NULL batch); -EPERM (inside a read
 * section); -ENOMEM (nothing changed, @b still valid: retry or abort).
 */
UREG_API int ureg_batch_commit(ureg_batch *b, uint64_t generation);

/**
 * ureg_batch_commit_all - commit batches of @n different registries
 * together: all of them or none.
 *
 * Takes the registries' writer mutexes (in a fixed order), builds every
 * next generation, and only when all were built publishes them one after
 * the other while still holding every mutex; then one grace period
 * releases all previous generations.  On -ENOMEM nothing changed and every
 * batch is still valid (retry or abort each).  Each registry switches
 * atomically; a reader that reads two of them in one read section may see
 * the first switched and the second not yet (for a few stores).  Call
 * outside a read section.  Returns 0; -EINVAL (no batch, a NULL one, two
 * for one registry); -EPERM (inside a read section); -ENOMEM.  On success
 * the batches are consumed.
 */
UREG_API int ureg_batch_commit_all(ureg_batch **b, size_t n, uint64_t generation);

/** ureg_batch_abort - drop @b and everything it owns.  NULL is a no-op. */
UREG_API void ureg_batch_abort(ureg_batch *b);

/**
 * ureg_generation - the registry's current generation number (bumped by
 * every commit and every single-key change).  Any thread, never blocks.
 */
UREG_API uint64_t ureg_generation(const ureg_registry *reg);

/* ------------------------------------------------------------------ */
/* Errors                                                              */
/* ------------------------------------------------------------------ */

/** ureg_strerror - static text for a ureg return value (0 or -errno). */
UREG_API const char *ureg_strerror(int err);

/**
 * ureg_version - the version of the libureg actually loaded ("0.2.0"),
 * which may be newer than the headers' UREG_VERSION_STRING.  Any thread,
 * never blocks; a static string.
 */
UREG_API const char *ureg_version(void);

/**
 * ureg_last_error - the calling thread's message for its last failed ureg
 * call ("registry 'tools': key 'x' already has a singleton"), or "" when
 * none.  Thread-local: valid until this thread's next ureg call.
 */
UREG_API const char *ureg_last_error(void);

/**
 * ureg_set_error - set the calling thread's ureg_last_error() message and
 * return @err, so a failing factory, provider or library layered on ureg
 * can explain itself through the same channel: `return ureg_set_error(
 * -EINVAL, "tool '%s': no endpoint", name);`.  @fmt NULL (with @err 0)
 * clears the message.  Any thread, never blocks; the message is copied
 * (at most 255 bytes kept).
 */
UREG_API int ureg_set_error(int err, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

/* ------------------------------------------------------------------ */
/* For libraries layered on ureg (libureg-config, libureg-agents)      */
/* ------------------------------------------------------------------ */

/**
 * ureg_atfork_layer - have libureg's fork() handlers take a layered
 * library's locks too, in the documented order (after liburcu's call_rcu
 * workers pause, before libureg's own locks; see lib/core/fork.c).
 * @lock runs in the parent before fork(), @unlock in the parent after it,
 * @unlock_child in the child (it may re-initialise instead of unlocking).
 * Layers registered later are locked later and unlocked first.
 *
 * Who may call it: a library's one-time initialisation (pthread_once),
 * any thread, not from inside a fork handler.  Blocks on nothing but a
 * short internal mutex.  Returns 0, -EINVAL (a NULL hook) or -ENOSPC (at
 * most 8 layers).  A layer cannot be removed: its code must stay mapped.
 */
UREG_API int ureg_atfork_layer(void (*lock)(void), void (*unlock)(void),
		      void (*unlock_child)(void));

/* ------------------------------------------------------------------ */
/* Inline read sections (opt-in)                                       */
/* ------------------------------------------------------------------ */

/*
 * Private: the per-thread reader state of libureg, declared here only so
 * that the inline read path below can reach it.  Not API; the layout may
 * change with any release of libureg, which is why the inline path is
 * opt-in and ties the application to the exact libureg it was built with.
 */
#define UREG__SNAP_SLOTS 16
struct cds_lfht;
struct ureg__thread {
	int registered;   /* 1: by us; 2: by liburcu or the application */
	int read_depth;   /* nesting of ureg_read_lock */
	/* Tables pinned in the current read section, one per registry, so
	 * that a section sees one generation of each registry (batch
	 * atomicity): snap[0..npinned), emptied when the outermost
	 * section ends (so that the next one starts with none).  Thread-local: the read path still writes no
	 * shared memory. */
	unsigned npinned;
	struct {
		const void *reg;
		struct cds_lfht *ht;
	} snap[UREG__SNAP_SLOTS];
};
/* Private: the first fields of a registry, read by the inline
 * cached-handle hit below (the library checks the layout with static
 * assertions). */
#define UREG__STAMP_STRIPES 1024u
struct ureg__registry_head {
	struct cds_lfht *ht;      /* the current table (RCU pointer) */
	const uint64_t *stamps;   /* UREG__STAMP_STRIPES stamps */
};
extern UREG_API __thread struct ureg__thread ureg__thread
	__attribute__((tls_model("initial-exec")));
/* Private: registers the calling thread with liburcu (first use). */
UREG_API void ureg__rcu_register_slow(void);
/* Private: ureg_lookup_key of a plain handle (state UREG__KEY_READY), for
 * the inline path below only, which has checked what it does not: @reg,
 * @k and @item not NULL, the caller inside a read section.  One table
 * search with the handle's hash; never blocks, locks or allocates; *@item
 * is borrowed until the section closes.  0 or -ENOENT (message set). */
UREG_API int ureg__lookup_key_plain(ureg_registry *reg, ureg_key *k, void **item);

#ifdef __cplusplus
}
#endif

/*
 * UREG_INLINE_READ: define it before including <ureg/ureg.h> to make
 * ureg_read_lock() and ureg_read_unlock() header-inline on liburcu's
 * public memb fast path (<urcu/static/urcu-memb.h>), so that a read
 * section plus one lookup crosses the library boundary once, and to make
 * ureg_lookup_key()'s cached hit header-inline (a hit then never enters
 * the library; a miss, a plain handle or an error calls it).  Same
 * contract as the library calls.  The application then also compiles
 * against liburcu's headers and links liburcu-memb
 * (pkg-config --cflags --libs ureg liburcu-memb), inlines liburcu's
 * LGPL-2.1 read-side code (as liburcu's own _LGPL_SOURCE does), and must
 * be rebuilt with every new libureg (the thread state above is private).
 */
#if defined(UREG_INLINE_READ) && !defined(UREG_BUILDING)
#include <urcu/static/urcu-memb.h>

static inline void ureg__read_lock_inline(void)
{
	if (__builtin_expect(!ureg__thread.registered, 0))
		ureg__rcu_register_slow();
	_urcu_memb_read_lock();
	ureg__thread.read_depth++;
}

static inline void ureg__read_unlock_inline(void)
{
	if (--ureg__thread.read_depth == 0)
		ureg__thread.npinned = 0; /* section over: its table pins go */
	_urcu_memb_read_unlock();
}

/*
 * ureg_lookup_key, inline: a cached handle's hit without entering the
 * library (the checks of the library's own hit, guarantee G.4: the
 * handle's seqlock, the section's table is the current one, then the
 * key's stripe stamp); a plain
 * handle straight to the one library call that searches the table with
 * the precomputed hash; anything else (a miss, a handle not prepared yet,
 * an error) the library's ureg_lookup_key.  The first lookup of a section
 * pins the table it read (snap[0], constant offsets), as the library does.
 */
static inline int ureg__lookup_key_inline(ureg_registry *reg, ureg_key *k,
					  void **item)
{
	struct ureg__thread *t = &ureg__thread;
	const struct ureg__registry_head *h = (const struct ureg__registry_head *)(const void *)reg;
	uint16_t st;

	if (__builtin_expect(!reg || !k || !item || !t->read_depth, 0))
		goto full;
	st = __atomic_load_n(&k->state, __ATOMIC_ACQUIRE);
	if (__builtin_expect(st == (UREG__KEY_READY | UREG__KEY_CACHED), 1)) {
		uint32_t s1 = __atomic_load_n(&k->seq, __ATOMIC_ACQUIRE);
		void *it = __atomic_load_n(&k->item, __ATOMIC_RELAXED);
		uint64_t cs = __atomic_load_n(&k->stamp, __ATOMIC_RELAXED);
		__atomic_thread_fence(__ATOMIC_ACQUIRE);
		uint32_t s2 = __atomic_load_n(&k->seq, __ATOMIC_RELAXED);
		/* the current table, read BEFORE the stripe (the order the
		 * library's hit keeps; internal.h, "Stamps") */
		struct cds_lfht *cur = __atomic_load_n(&h->ht, __ATOMIC_ACQUIRE);
		unsigned n = t->npinned, i;

		if (__builtin_expect(n == 0, 1)) {
			/* the section's first lookup: pin the current table */
			t->snap[0].reg = reg;
			t->snap[0].ht = cur;
			t->npinned = 1;
		} else {
			for (i = 0; i < n; i++)
				if (t->snap[i].reg == (const void *)reg)
					break;
			if (i < n) {
				if (t->snap[i].ht != cur)
					goto full; /* a batch since the pin */
			} else {
				if (n >= UREG__SNAP_SLOTS)
					goto full;
				t->snap[n].reg = reg;
				t->snap[n].ht = cur;
				t->npinned = n + 1;
			}
		}
		if (__builtin_expect(s2 == (s1 & ~1u) && it != NULL &&
				     cs == __atomic_load_n(&h->stamps[k->hash & (UREG__STAMP_STRIPES - 1)],
							   __ATOMIC_ACQUIRE), 1)) {
			*item = it;
			return 0;
		}
	} else if (st == UREG__KEY_READY) {
		return ureg__lookup_key_plain(reg, k, item);
	}
full:
	return ureg_lookup_key(reg, k, item);
}

#define ureg_read_lock() ureg__read_lock_inline()
#define ureg_read_unlock() ureg__read_unlock_inline()
#define ureg_lookup_key(reg, k, item) ureg__lookup_key_inline(reg, k, item)
#endif

/*
 * UREG_READ_SECTION - a scoped read section:
 *
 *	UREG_READ_SECTION {
 *		struct tool *t;
 *		if (tools_lookup(reg, "calculator", &t) == 0)
 *			use(t);          // borrowed: valid inside the block only
 *	}
 *
 * Opens a read section (ureg_read_lock) for the statement or block that
 * follows and closes it (ureg_read_unlock) however control leaves it: at
 * its end, or by break, continue, return or goto (GCC/Clang's cleanup
 * attribute runs the unlock when the hidden variable goes out of scope;
 * ureg requires GNU C anyway).  Nests like the calls themselves.  Same
 * rules as any read section: do not call ureg_synchronize(),
 * ureg_batch_commit(), ureg_drain(), ureg_registry_destroy() or
 * ureg_ctx_destroy() inside it, and do not keep a borrowed pointer past
 * its end.  Any thread; never blocks.
 */
static inline int ureg__read_section_begin(void)
{
	ureg_read_lock();
	return 1;
}

static inline void ureg__read_section_end(int *unused)
{
	(void)unused;
	ureg_read_unlock();
}

#define UREG_READ_SECTION                                                      \
	for (int ureg__rs_ __attribute__((cleanup(ureg__read_section_end), unused)) = \
		     ureg__read_section_begin(), ureg__rs_once_ = 1;           \
	     ureg__rs_once_; ureg__rs_once_ = 0)

#include <ureg/ctx.h>

#endif /* UREG_UREG_H */
