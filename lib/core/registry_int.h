/* SPDX-License-Identifier: MIT */
/*
 * What the files of the registry share beyond internal.h:
 *
 *   registry.c  registries (new, destroy, names, counts, key listing),
 *               table sizing and resize, stamps
 *   entry.c     item boxes, anchors, entries and their retirement
 *               (call_rcu), counted entry references
 *   fbox.c      factory boxes and their instances' per-thread holds
 *   rank.c      single-key changes (register, replace, unregister) over a
 *               key's ranked providers; entry_info and providers
 *   lookup.c    the string-key read path (lookup, get), and the calls that
 *               take a read section of their own (contains, acquire,
 *               create_instance), for strings and key handles
 *   handle.c    the key-handle read path (lookup_key, get_key), cached
 *               handles
 *   drain.c     ureg_drain
 */
#ifndef UREG_REGISTRY_INT_H
#define UREG_REGISTRY_INT_H

#include <limits.h>
#include <linux/futex.h>
#include <sys/syscall.h>
#include <unistd.h>
#include "internal.h"

#pragma GCC visibility push(hidden)

/* ---- entry.c ---- */
/* Drains in progress, and the futex word they wait on (entry.c, drain.c). */
extern uint32_t ureg__drain_active;
extern uint32_t ureg__drain_seq;

/* After a box's count went down: wake the drains (entry.c, "boxes"),
 * without touching the box again. */
static inline void ureg__drain_wake(void)
{
	if (UREG_UNLIKELY(__atomic_load_n(&ureg__drain_active, __ATOMIC_SEQ_CST))) {
		__atomic_add_fetch(&ureg__drain_seq, 1, __ATOMIC_SEQ_CST);
		syscall(SYS_futex, &ureg__drain_seq, FUTEX_WAKE_PRIVATE, INT_MAX, NULL, NULL, 0);
	}
}
/* Drop one reference on @e (the table's, or a counted one). */
void ureg__entry_put(struct ureg_entry *e);

/* ---- rank.c ---- */
enum ureg__op {
	OP_REGISTER,       /* add a singleton at a rank, -EEXIST if one there */
	OP_FACTORY,        /* add a factory at a rank, -EEXIST if one there */
	OP_REPLACE,        /* swap the top singleton, -ENOENT if none */
	OP_REPLACE_FACTORY,/* swap the top factory, -ENOENT if none */
	OP_UNREGISTER,     /* drop the top (or the ranked) singleton / factory */
};

/* What ureg_drain keeps of the providers it removes: one reference on
 * each box it waits for. */
struct ureg__drain_grab {
	struct ureg_item_box *ib;
	struct ureg_factory_box *fb;
};

/* One single-key change, beside the key. */
struct ureg__change {
	enum ureg__op op;
	void *item;                    /* OP_REGISTER, OP_REPLACE */
	const struct ureg_factory *f;  /* OP_FACTORY, OP_REPLACE_FACTORY */
	unsigned what;                 /* OP_UNREGISTER */
	int rank;                      /* OP_REGISTER, OP_FACTORY; by_rank */
	bool by_rank;                  /* OP_UNREGISTER: at @rank, not the top */
};

/* Apply @c to @key; with @grab, keep a reference on the removed boxes
 * (ureg_drain).  0 or a negative errno with its message set. */
int ureg__mutate(ureg_registry *reg, const char *key,
		 const struct ureg__change *c, struct ureg__drain_grab *grab);

/* ---- lookup.c / handle.c: the read path ---- */

/* Failure messages of the read path: copied, formatted only when read
 * (errors.c), so a miss costs two short copies and no formatting. */
__attribute__((noinline, cold))
int ureg__miss(int err, const char *what, const ureg_registry *reg,
	       const char *key);

/*
 * The common front of the calls that need the caller's read section:
 * check arguments, validate and hash the key once, check the section, find
 * the entry in the table this section pinned.  0 with *@e (NULL: absent),
 * or a negative errno with its message set.
 */
static inline int ureg__find_in_section(ureg_registry *reg, const char *key,
					const void *out, const char *call,
					struct ureg_entry **e)
{
	struct ureg_key k;
	int rc;

	if (UREG_UNLIKELY(!reg || !out))
		return ureg__err(-EINVAL, "%s: NULL registry or out", call);
	if (UREG_UNLIKELY((rc = ureg__key_prepare(key, &k))))
		return rc;
	if (UREG_UNLIKELY(!ureg__thread.read_depth))
		return ureg__err(-EPERM, "registry '%s': %s of '%s' outside ureg_read_lock()",
				 reg->name, call, key);
	*e = ureg__find(ureg__ht(reg), &k);
	return 0;
}

/*
 * What ureg_get makes of entry @e (found in a read section the caller
 * holds).  Singleton first; else the factory's instance in @ctx.
 */
static inline int ureg__get_from(ureg_registry *reg, struct ureg_entry *e,
				 const char *key, ureg_ctx *ctx, void **out)
{
	if (UREG_UNLIKELY(!e))
		return ureg__miss(-ENOENT, "get: no such key:", reg, key);
	if (e->item) {
		*out = e->item;
		return 0;
	}
	if (UREG_UNLIKELY(!e->fbox))
		return ureg__miss(-ENOENT, "get: no singleton and no factory under", reg, key);
	if (UREG_UNLIKELY(!ctx))
		return ureg__miss(-ENOENT, "get: only a factory, and no context given, for", reg, key);
	return ureg__ctx_get_instance(ctx, reg, e, out);
}

/* A finder for the calls that take their own read section: inside it, the
 * entry for @karg (a struct ureg_key of a string key, or a ureg_key
 * handle).  0 with *@e (NULL: absent) or a negative errno. */
typedef int (*ureg__finder)(ureg_registry *reg, const void *karg,
			    struct ureg_entry **e);
int ureg__find_str(ureg_registry *reg, const void *karg, struct ureg_entry **e);
int ureg__find_handle(ureg_registry *reg, const void *karg, struct ureg_entry **e);

/* ureg_get outside a read section (lookup.c); @key names the key in
 * messages. */
__attribute__((noinline))
int ureg__get_own_section(ureg_registry *reg, ureg_ctx *ctx, void **out,
			  ureg__finder find, const void *karg, const char *key);

#pragma GCC visibility pop

#endif /* UREG_REGISTRY_INT_H */
