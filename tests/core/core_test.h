/* SPDX-License-Identifier: MIT */
/*
 * Helpers shared by the core suites: items that carry a magic value their
 * destructor poisons (so a reader that touches a destroyed item fails even
 * without ASan), instances made by counting factories, and a bounded way to
 * wait for call_rcu work without sleeping.
 *
 * Everything here is static: each suite is its own executable and Criterion
 * runs every test in a fresh forked process, so counters start at zero.
 * Worker threads never call cr_assert (Criterion can only abort the test from
 * its own thread): they count failures in atomics that the test thread
 * asserts after joining them.
 */
#ifndef UREG_TESTS_CORE_TEST_H
#define UREG_TESTS_CORE_TEST_H

#include <errno.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <ureg/ureg.h>
#include <ureg/ctx.h>

/* Not every suite uses every helper. */
#define CORE_UNUSED __attribute__((unused))

#define ITEM_MAGIC UINT64_C(0x5ec0de5ec0de1234)
#define ITEM_DEAD UINT64_C(0xdeaddeaddeaddead)

/* A singleton item. */
struct item {
	uint64_t magic;
	int id;
};

CORE_UNUSED static atomic_int items_made;
CORE_UNUSED static atomic_int items_destroyed;
CORE_UNUSED static atomic_int items_bad_destroy; /* destroyed twice or never valid */

static inline struct item *item_new(int id)
{
	struct item *it = malloc(sizeof(*it));

	if (!it)
		abort();
	it->magic = ITEM_MAGIC;
	it->id = id;
	atomic_fetch_add(&items_made, 1);
	return it;
}

/* Frees an item the registry never took (e.g. after -EEXIST). */
static inline void item_free_unowned(struct item *it)
{
	atomic_fetch_sub(&items_made, 1);
	free(it);
}

static inline void item_destroy(void *p)
{
	struct item *it = p;

	if (it->magic != ITEM_MAGIC)
		atomic_fetch_add(&items_bad_destroy, 1);
	it->magic = ITEM_DEAD;
	atomic_fetch_add(&items_destroyed, 1);
	free(it);
}

/* A factory-made instance, allocated in its context. */
#define INST_MAGIC UINT64_C(0x1257a1ce1257a1ce)

struct inst {
	uint64_t magic;
	int serial; /* creation number, from inst_serial */
	int factory_id;
	char *label; /* a second allocation in the context */
};

CORE_UNUSED static atomic_int inst_serial;
CORE_UNUSED static atomic_int inst_destroyed;
/* Serials in destruction order (only for tests with few instances). */
#define DESTROY_LOG_MAX 256
CORE_UNUSED static int destroy_log[DESTROY_LOG_MAX];
CORE_UNUSED static atomic_int destroy_log_len;

/* Per-factory behaviour, passed as struct ureg_factory.arg. */
struct fac {
	int id;
	atomic_int calls;
	size_t extra;      /* bytes of label to allocate besides the struct */
	int fail_with;     /* non-zero: return this instead of creating */
	atomic_int *arg_freed; /* set by fac_arg_free, may be NULL */
};

static inline int fac_create(ureg_ctx *ctx, void *arg, void **out)
{
	struct fac *f = arg;
	struct inst *in;

	atomic_fetch_add(&f->calls, 1);
	if (f->fail_with)
		return f->fail_with;
	in = ureg_ctx_alloc(ctx, sizeof(*in));
	if (!in)
		return errno ? -errno : -ENOMEM;
	in->magic = INST_MAGIC;
	in->factory_id = f->id;
	in->label = NULL;
	if (f->extra) {
		in->label = ureg_ctx_calloc(ctx, 1, f->extra);
		if (!in->label) {
			int err = errno ? -errno : -ENOMEM;

			ureg_ctx_free(ctx, in);
			return err;
		}
	}
	in->serial = atomic_fetch_add(&inst_serial, 1);
	*out = in;
	return 0;
}

static inline void inst_destroy(void *p, ureg_ctx *ctx)
{
	struct inst *in = p;
	int n = atomic_fetch_add(&destroy_log_len, 1);

	if (n < DESTROY_LOG_MAX)
		destroy_log[n] = in->serial;
	atomic_fetch_add(&inst_destroyed, 1);
	in->magic = ITEM_DEAD;
	ureg_ctx_free(ctx, in->label);
	ureg_ctx_free(ctx, in);
}

static inline void fac_arg_free(void *arg)
{
	struct fac *f = arg;

	if (f->arg_freed)
		atomic_fetch_add(f->arg_freed, 1);
}

static inline struct ureg_factory fac_factory(struct fac *f,
					      enum ureg_scope scope)
{
	struct ureg_factory uf = {
		.create = fac_create,
		.scope = scope,
		.arg = f,
		.arg_free = f->arg_freed ? fac_arg_free : NULL,
	};
	return uf;
}

CORE_UNUSED static const ureg_type item_type = {
	.name = "item",
	.item_destroy = item_destroy,
	.instance_destroy = inst_destroy,
};

/*
 * Wait, without sleeping, until *@v reaches @want: each round is a grace
 * period, which is what call_rcu callbacks wait for.  Bounded so that a
 * destructor that never runs fails the test instead of hanging it.
 */
static inline int wait_count(atomic_int *v, int want)
{
	for (long i = 0; i < 200000 && atomic_load(v) < want; i++) {
		ureg_synchronize();
		sched_yield();
	}
	return atomic_load(v);
}

/* Run @n grace periods (gives call_rcu every chance to run too early). */
static inline void grace_periods(int n)
{
	for (int i = 0; i < n; i++) {
		ureg_synchronize();
		sched_yield();
	}
}

static inline size_t ctx_live(ureg_ctx *ctx)
{
	struct ureg_ctx_stats st;

	if (ureg_ctx_stats(ctx, &st) != 0)
		abort();
	return st.live_bytes;
}

static inline struct ureg_ctx_stats ctx_stats(ureg_ctx *ctx)
{
	struct ureg_ctx_stats st;

	memset(&st, 0, sizeof(st));
	if (ureg_ctx_stats(ctx, &st) != 0)
		abort();
	return st;
}

/* Lookup in its own read section; returns the rc and the item. */
static inline int lookup_rc(ureg_registry *reg, const char *key, void **item)
{
	int rc;

	ureg_read_lock();
	rc = ureg_lookup(reg, key, item);
	ureg_read_unlock();
	return rc;
}

static inline int get_rc(ureg_registry *reg, const char *key, ureg_ctx *ctx,
			 void **out)
{
	int rc;

	ureg_read_lock();
	rc = ureg_get(reg, key, ctx, out);
	ureg_read_unlock();
	return rc;
}

#endif /* UREG_TESTS_CORE_TEST_H */
