/* SPDX-License-Identifier: MIT */
/*
 * ureg-stress - many threads hammer one registry and their own user
 * contexts while a shadow model checks every answer.
 *
 * The one idea that makes exact checking possible under full concurrency:
 * ownership is partitioned.
 *  - Keys: writer thread w owns keys "wNNN-kNNN"; only w registers,
 *    replaces or unregisters them, so w knows their exact state at any time
 *    and every lookup w makes of its own keys must match its shadow (no lost
 *    and no phantom registration).  Every thread also reads every other
 *    thread's keys: there it can only check that what it read is a live item
 *    (valid magic) made for exactly the key it looked up.  A few "hot" keys
 *    are replaced by everyone and never removed: a lookup of them must never
 *    miss (readers see the old or the new item, never neither).
 *  - Contexts: each context is owned by one thread, so the bytes, the
 *    allocations and the instances its ureg_ctx_stats report must equal the
 *    shadow's, after every operation.  What an allocation should cost is
 *    computed independently: nallocx(size + 32-byte header), as ctx.h
 *    documents.
 *
 * Liveness of what a reader sees: the item destructor (which ureg runs only
 * after a grace period and the last counted reference) poisons the magic
 * and parks the item in a quarantine ring before it is really freed, so a
 * reader that sees a poisoned magic caught ureg destroying an item that a
 * read section could still see.  (ASan would also catch it once freed.)
 *
 * No sleeps: threads run flat out until the deadline; the final checks run
 * after every thread has joined, when the registry is quiescent.
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <jemalloc/jemalloc.h>
#include <ureg/ureg.h>
#include <ureg/ctx.h>

#include "arena_churn.h"
#include "fork_storm.h"
#include "rank_churn.h"
#include "../tool_opts.h"

#define ITEM_LIVE UINT64_C(0x17e3a11fe17e3a11)
#define INST_LIVE UINT64_C(0x1257a1ce1257a1ce)
#define ARG_LIVE UINT64_C(0xfac70e7fac70e7a1)
#define POISON UINT64_C(0xdeaddeaddeaddead)

#define HOT_KEYS 8
#define HOT_OWNER (-1)
#define CTX_SLOTS 3
#define MAX_INSTS 48
#define MAX_ALLOCS 32
#define REFS 4
#define ALLOC_HDR 32 /* ctx.h: each allocation carries a 32-byte header */

/* ------------------------------------------------------------ reporting */

static atomic_long violations;

static void violation(const char *fmt, ...)
	__attribute__((format(printf, 1, 2)));

static void violation(const char *fmt, ...)
{
	long n = atomic_fetch_add(&violations, 1);
	va_list ap;

	if (n >= 30)
		return;
	va_start(ap, fmt);
	fputs("stress: VIOLATION: ", stderr);
	vfprintf(stderr, fmt, ap);
	fputc('\n', stderr);
	va_end(ap);
}

#define CHECK(cond, ...) do { if (!(cond)) violation(__VA_ARGS__); } while (0)

/* -------------------------------------------------------------- objects */

/* A singleton item. */
struct item {
	_Atomic uint64_t magic;
	int owner; /* writer thread, or HOT_OWNER */
	int idx;   /* key index within the owner's keys */
};

/* A factory's argument: which key it was registered under, what it makes. */
struct fac_arg {
	uint64_t magic;
	int owner, idx;
	size_t size1, size2; /* the instance's two allocations */
};

struct worker;

/* A factory-made instance, allocated in its context. */
struct inst {
	uint64_t magic;
	int owner, idx;         /* the key, from the factory's argument */
	size_t charge;          /* what its allocations should cost the context */
	char *payload;          /* the second allocation */
	struct worker *creator; /* counts destructions */
};

static atomic_long items_alive, args_alive, insts_alive;

/* Items whose destructor ran wait here, poisoned, before being freed, so
 * a late reader reads a poisoned magic instead of reused memory. */
#define QUARANTINE 65536
static pthread_mutex_t quarantine_lock = PTHREAD_MUTEX_INITIALIZER;
static struct item *quarantine[QUARANTINE];
static size_t quarantine_next;

static struct item *item_new(int owner, int idx)
{
	struct item *it = malloc(sizeof(*it));

	if (!it)
		abort();
	atomic_store(&it->magic, ITEM_LIVE);
	it->owner = owner;
	it->idx = idx;
	atomic_fetch_add(&items_alive, 1);
	return it;
}

/* Free an item ureg never took (after -EEXIST / -ENOENT). */
static void item_free_unowned(struct item *it)
{
	atomic_fetch_sub(&items_alive, 1);
	free(it);
}

static void item_destroy(void *p)
{
	struct item *it = p, *old;
	uint64_t m = atomic_exchange(&it->magic, POISON);

	CHECK(m == ITEM_LIVE, "item destructor ran on a dead item %p (magic %" PRIx64 ")", p, m);
	atomic_fetch_sub(&items_alive, 1);
	pthread_mutex_lock(&quarantine_lock);
	old = quarantine[quarantine_next % QUARANTINE];
	quarantine[quarantine_next++ % QUARANTINE] = it;
	pthread_mutex_unlock(&quarantine_lock);
	free(old);
}

static void quarantine_flush(void)
{
	for (size_t i = 0; i < QUARANTINE; i++) {
		free(quarantine[i]);
		quarantine[i] = NULL;
	}
}

static size_t charge_of(size_t size)
{
	return nallocx(size + ALLOC_HDR, 0);
}

static void inst_destroy(void *p, ureg_ctx *ctx);

static __thread struct worker *self;

static int fac_create(ureg_ctx *ctx, void *arg, void **out)
{
	struct fac_arg *fa = arg;
	struct inst *in;

	CHECK(fa->magic == ARG_LIVE, "factory ran with a dead argument");
	in = ureg_ctx_alloc(ctx, fa->size1);
	if (!in)
		return -(errno ? errno : ENOMEM);
	in->payload = ureg_ctx_alloc(ctx, fa->size2);
	if (!in->payload) {
		int err = -(errno ? errno : ENOMEM);

		ureg_ctx_free(ctx, in);
		return err;
	}
	memset(in->payload, 0x5a, fa->size2);
	in->magic = INST_LIVE;
	in->owner = fa->owner;
	in->idx = fa->idx;
	in->charge = charge_of(fa->size1) + charge_of(fa->size2);
	in->creator = self;
	atomic_fetch_add(&insts_alive, 1);
	*out = in;
	return 0;
}

static void fac_arg_free(void *arg)
{
	struct fac_arg *fa = arg;

	CHECK(fa->magic == ARG_LIVE, "factory argument freed twice");
	fa->magic = POISON;
	atomic_fetch_sub(&args_alive, 1);
	free(fa);
}

static const ureg_type stress_type = {
	.name = "stress-item",
	.item_destroy = item_destroy,
	.instance_destroy = inst_destroy,
};

/* --------------------------------------------------------------- shadow */

struct key_shadow {
	struct item *item; /* the singleton we registered, or NULL */
	bool factory;
	enum ureg_scope scope;
};

struct inst_rec {
	struct inst *obj;
	size_t charge;
};

struct alloc_rec {
	void *p;
	size_t charge;
};

struct ctx_shadow {
	ureg_ctx *ctx;
	bool dedicated;
	size_t bytes, allocs;
	struct inst_rec insts[MAX_INSTS];
	int ninsts;
	struct alloc_rec mem[MAX_ALLOCS];
	int nmem;
};

struct counters {
	long lookups, hits, registers, unregisters, replaces, factories,
	     creates, gets, ctx_new, ctx_destroy, quota_hits, acquires,
	     batches, allocs;
};

struct worker {
	pthread_t tid;
	int id;
	uint64_t rng;
	long ops;
	long insts_destroyed; /* by inst_destroy, on this thread */
	struct counters c;
	struct key_shadow *keys;
	struct ctx_shadow ctxs[CTX_SLOTS];
	ureg_ref *refs[REFS];
};

static void inst_destroy(void *p, ureg_ctx *ctx)
{
	struct inst *in = p;

	CHECK(in->magic == INST_LIVE, "instance destructor ran on a dead instance");
	CHECK(in->creator == self, "instance destroyed on a thread that does not own its context");
	in->magic = POISON;
	if (in->creator)
		in->creator->insts_destroyed++;
	atomic_fetch_sub(&insts_alive, 1);
	ureg_ctx_free(ctx, in->payload);
	ureg_ctx_free(ctx, in);
}

/* --------------------------------------------------------------- config */

static ureg_registry *reg;
static int nthreads, nkeys = 48;
static double seconds = 10;
static uint64_t seed;
static atomic_bool stop;
static struct worker *workers;

static uint64_t rnd(struct worker *w)
{
	/* xorshift64* */
	w->rng ^= w->rng >> 12;
	w->rng ^= w->rng << 25;
	w->rng ^= w->rng >> 27;
	return w->rng * UINT64_C(2685821657736338717);
}

static unsigned rndn(struct worker *w, unsigned n)
{
	return (unsigned)(rnd(w) % n);
}

static void key_name(char *buf, size_t n, int owner, int idx)
{
	if (owner == HOT_OWNER)
		snprintf(buf, n, "hot-%d", idx);
	else
		snprintf(buf, n, "w%03d-k%03d", owner, idx);
}

static struct fac_arg *fac_arg_new(struct worker *w, int idx)
{
	struct fac_arg *fa = malloc(sizeof(*fa));

	if (!fa)
		abort();
	fa->magic = ARG_LIVE;
	fa->owner = w->id;
	fa->idx = idx;
	fa->size1 = sizeof(struct inst) + rndn(w, 200);
	fa->size2 = 1 + rndn(w, rndn(w, 8) == 0 ? 5000 : 300);
	atomic_fetch_add(&args_alive, 1);
	return fa;
}

static void fac_arg_free_unowned(struct fac_arg *fa)
{
	atomic_fetch_sub(&args_alive, 1);
	free(fa);
}

static struct ureg_factory make_factory(struct fac_arg *fa, enum ureg_scope scope)
{
	struct ureg_factory f = {
		.create = fac_create, .scope = scope, .arg = fa,
		.arg_free = fac_arg_free,
	};
	return f;
}

/* -------------------------------------------------------------- checks */

/* What a reader got for key (owner, idx): a live item or instance made
 * for exactly that key. */
static void check_object(void *p, int owner, int idx, const char *how)
{
	uint64_t m = atomic_load(&((struct item *)p)->magic);

	if (m == ITEM_LIVE) {
		struct item *it = p;
		CHECK(it->owner == owner && it->idx == idx,
		      "%s of key (%d,%d) returned the item of key (%d,%d)",
		      how, owner, idx, it->owner, it->idx);
	} else if (m == INST_LIVE) {
		struct inst *in = p;
		CHECK(in->owner == owner && in->idx == idx,
		      "%s of key (%d,%d) returned an instance of key (%d,%d)",
		      how, owner, idx, in->owner, in->idx);
	} else {
		violation("%s of key (%d,%d) returned a dead object %p (magic %" PRIx64 ")",
			  how, owner, idx, p, m);
	}
}

static void check_ctx(struct worker *w, struct ctx_shadow *cs, const char *after)
{
	struct ureg_ctx_stats st;

	if (ureg_ctx_stats(cs->ctx, &st) != 0) {
		violation("ureg_ctx_stats failed after %s", after);
		return;
	}
	CHECK(st.live_bytes == cs->bytes, "thread %d, after %s: context live_bytes %zu, shadow %zu",
	      w->id, after, st.live_bytes, cs->bytes);
	CHECK(st.allocations == cs->allocs, "thread %d, after %s: context allocations %zu, shadow %zu",
	      w->id, after, st.allocations, cs->allocs);
	CHECK(st.instances == (size_t)cs->ninsts, "thread %d, after %s: context instances %zu, shadow %d",
	      w->id, after, st.instances, cs->ninsts);
	CHECK(st.dedicated == (int)cs->dedicated, "context dedicated flag changed");
}

static int find_inst(struct ctx_shadow *cs, void *obj)
{
	for (int i = 0; i < cs->ninsts; i++)
		if (cs->insts[i].obj == obj)
			return i;
	return -1;
}

/* After a get / create that returned @obj in @cs (0 from ureg): either a
 * new instance (instances + 1, exact bytes) or a cached one we know. */
static void account_result(struct worker *w, struct ctx_shadow *cs, void *obj,
			   const struct ureg_ctx_stats *before, int owner, int idx,
			   bool must_be_new)
{
	struct ureg_ctx_stats st;
	struct inst *in = obj;

	ureg_ctx_stats(cs->ctx, &st);
	if (atomic_load(&((struct item *)obj)->magic) == ITEM_LIVE) {
		CHECK(!must_be_new, "create_instance returned a singleton item");
		CHECK(st.instances == before->instances && st.live_bytes == before->live_bytes,
		      "a singleton get changed the context's accounting");
		check_object(obj, owner, idx, "get");
		return;
	}
	check_object(obj, owner, idx, must_be_new ? "create_instance" : "get");
	if (in->magic != INST_LIVE)
		return;
	if (st.instances == before->instances + 1) {
		CHECK(find_inst(cs, obj) < 0, "a new instance has the address of a live one");
		CHECK(st.live_bytes - before->live_bytes == in->charge,
		      "thread %d: an instance cost its context %zu bytes, expected %zu",
		      w->id, st.live_bytes - before->live_bytes, in->charge);
		if (cs->ninsts == MAX_INSTS) {
			violation("shadow instance table full");
			return;
		}
		cs->insts[cs->ninsts++] = (struct inst_rec){ in, in->charge };
		cs->bytes += in->charge;
		cs->allocs += 2;
	} else {
		CHECK(!must_be_new, "create_instance did not add an instance");
		CHECK(st.instances == before->instances && st.live_bytes == before->live_bytes,
		      "a cached get changed the context's accounting");
		CHECK(find_inst(cs, obj) >= 0, "get returned an instance the context never made");
	}
	check_ctx(w, cs, must_be_new ? "create_instance" : "get");
}

static void release_inst(struct worker *w, struct ctx_shadow *cs, int i)
{
	long before = w->insts_destroyed;
	struct inst_rec r = cs->insts[i];
	int rc = ureg_instance_release(cs->ctx, r.obj);

	CHECK(rc == 0, "ureg_instance_release: %s", ureg_strerror(rc));
	CHECK(w->insts_destroyed == before + 1, "instance_release did not run the destructor once");
	cs->insts[i] = cs->insts[--cs->ninsts];
	cs->bytes -= r.charge;
	cs->allocs -= 2;
	check_ctx(w, cs, "instance_release");
}

static struct ctx_shadow *some_ctx(struct worker *w)
{
	struct ctx_shadow *cs = &w->ctxs[rndn(w, CTX_SLOTS)];

	return cs->ctx ? cs : NULL;
}

static void ctx_create(struct worker *w, struct ctx_shadow *cs)
{
	char name[32];
	bool dedicated = rndn(w, 16) == 0;
	int rc;

	snprintf(name, sizeof(name), "t%d", w->id);
	rc = ureg_ctx_new(name, dedicated ? UREG_CTX_DEDICATED : UREG_CTX_SHARED, &cs->ctx);
	if (rc == -EAGAIN && dedicated) { /* no arena left: a legal answer */
		cs->ctx = NULL;
		return;
	}
	CHECK(rc == 0, "ureg_ctx_new: %s", ureg_last_error());
	if (rc) {
		cs->ctx = NULL;
		return;
	}
	cs->dedicated = dedicated;
	cs->bytes = cs->allocs = 0;
	cs->ninsts = cs->nmem = 0;
	w->c.ctx_new++;
	check_ctx(w, cs, "ctx_new");
}

/* Destroy a context: half the time after releasing everything (then the
 * accounting must read zero), half the time with everything still live
 * (then destroy must run every instance destructor). */
static void ctx_destroy(struct worker *w, struct ctx_shadow *cs, bool clean)
{
	if (clean) {
		while (cs->ninsts)
			release_inst(w, cs, cs->ninsts - 1);
		while (cs->nmem) {
			ureg_ctx_free(cs->ctx, cs->mem[--cs->nmem].p);
			cs->bytes -= cs->mem[cs->nmem].charge;
			cs->allocs--;
		}
		struct ureg_ctx_stats st;
		ureg_ctx_stats(cs->ctx, &st);
		CHECK(st.live_bytes == 0 && st.allocations == 0 && st.instances == 0,
		      "thread %d: emptied context reads live_bytes=%zu allocations=%zu instances=%zu",
		      w->id, st.live_bytes, st.allocations, st.instances);
	}
	long before = w->insts_destroyed;
	int expect = cs->ninsts;
	ureg_ctx_destroy(cs->ctx);
	CHECK(w->insts_destroyed == before + expect,
	      "ctx_destroy ran %ld instance destructors, expected %d",
	      w->insts_destroyed - before, expect);
	cs->ctx = NULL;
	cs->ninsts = cs->nmem = 0;
	w->c.ctx_destroy++;
}

/* ------------------------------------------------------------ operations */

static void op_read_any(struct worker *w)
{
	char key[32];
	int n = 1 + rndn(w, 4);
	struct ctx_shadow *cs = some_ctx(w);
	struct ureg_ctx_stats before;

	/* each get below may add an instance: keep room in the shadow */
	while (cs && cs->ninsts > MAX_INSTS - 5)
		release_inst(w, cs, rndn(w, cs->ninsts));
	ureg_read_lock();
	for (int i = 0; i < n; i++) {
		int owner = rndn(w, 5) == 0 ? HOT_OWNER : (int)rndn(w, nthreads);
		int idx = owner == HOT_OWNER ? (int)rndn(w, HOT_KEYS) : (int)rndn(w, nkeys);
		void *p = NULL;
		int rc;

		key_name(key, sizeof(key), owner, idx);
		if (cs && rndn(w, 3) == 0) {
			ureg_ctx_stats(cs->ctx, &before);
			rc = ureg_get(reg, key, cs->ctx, &p);
			w->c.gets++;
			if (rc == 0)
				account_result(w, cs, p, &before, owner, idx, false);
			else
				CHECK(rc == -ENOENT, "ureg_get(%s): %s", key, ureg_strerror(rc));
		} else {
			rc = ureg_lookup(reg, key, &p);
			w->c.lookups++;
			if (rc == 0) {
				w->c.hits++;
				check_object(p, owner, idx, "lookup");
			} else {
				CHECK(rc == -ENOENT, "ureg_lookup(%s): %s", key, ureg_strerror(rc));
				CHECK(owner != HOT_OWNER, "lookup of hot key %s missed during a replace", key);
			}
		}
		if (owner == w->id) { /* our own key: the shadow is exact */
			struct key_shadow *ks = &w->keys[idx];
			void *q = NULL;
			rc = ureg_lookup(reg, key, &q);
			if (ks->item)
				CHECK(rc == 0 && q == ks->item, "own key %s: registered item lost (rc %d)", key, rc);
			else
				CHECK(rc == -ENOENT, "own key %s: phantom singleton (rc %d)", key, rc);
		}
	}
	ureg_read_unlock();
}

static void op_check_own(struct worker *w)
{
	char key[32];
	int idx = rndn(w, nkeys);
	struct key_shadow *ks = &w->keys[idx];
	void *p = NULL;
	int rc;

	key_name(key, sizeof(key), w->id, idx);
	rc = ureg_contains(reg, key);
	CHECK(rc == (ks->item || ks->factory), "own key %s: contains %d, shadow %d", key, rc,
	      ks->item || ks->factory);
	ureg_read_lock();
	rc = ureg_lookup(reg, key, &p);
	if (ks->item)
		CHECK(rc == 0 && p == ks->item, "own key %s: registered item lost (rc %d)", key, rc);
	else
		CHECK(rc == -ENOENT, "own key %s: phantom singleton (rc %d)", key, rc);
	struct ureg_entry_info info;
	rc = ureg_entry_info(reg, key, &info);
	if (ks->item || ks->factory) {
		CHECK(rc == 0 && info.has_singleton == (ks->item != NULL) &&
		      info.has_factory == ks->factory &&
		      (!ks->factory || info.scope == ks->scope),
		      "own key %s: entry_info disagrees with the shadow", key);
	} else {
		CHECK(rc == -ENOENT, "own key %s: phantom entry", key);
	}
	ureg_read_unlock();
	w->c.lookups++;
}

static void op_register(struct worker *w)
{
	char key[32];
	int idx = rndn(w, nkeys);
	struct key_shadow *ks = &w->keys[idx];
	struct item *it = item_new(w->id, idx);
	int rc;

	key_name(key, sizeof(key), w->id, idx);
	rc = ureg_register(reg, key, it);
	w->c.registers++;
	if (ks->item) {
		CHECK(rc == -EEXIST, "register over a singleton: %s", ureg_strerror(rc));
		if (rc == -EEXIST)
			item_free_unowned(it);
	} else {
		CHECK(rc == 0, "register %s: %s", key, ureg_last_error());
		if (rc == 0)
			ks->item = it;
		else
			item_free_unowned(it);
	}
}

static void op_replace(struct worker *w)
{
	char key[32];
	int idx = rndn(w, nkeys);
	struct key_shadow *ks = &w->keys[idx];
	struct item *it = item_new(w->id, idx);
	int rc;

	key_name(key, sizeof(key), w->id, idx);
	rc = ureg_replace(reg, key, it);
	w->c.replaces++;
	if (ks->item) {
		CHECK(rc == 0, "replace %s: %s", key, ureg_last_error());
		if (rc == 0)
			ks->item = it;
		else
			item_free_unowned(it);
	} else {
		CHECK(rc == -ENOENT, "replace of a missing singleton: %s", ureg_strerror(rc));
		if (rc == -ENOENT)
			item_free_unowned(it);
	}
}

static void op_replace_hot(struct worker *w)
{
	char key[32];
	int idx = rndn(w, HOT_KEYS);
	struct item *it = item_new(HOT_OWNER, idx);
	int rc;

	key_name(key, sizeof(key), HOT_OWNER, idx);
	rc = ureg_replace(reg, key, it);
	w->c.replaces++;
	CHECK(rc == 0, "replace hot %s: %s", key, ureg_last_error());
	if (rc)
		item_free_unowned(it);
}

static void op_unregister(struct worker *w)
{
	char key[32];
	int idx = rndn(w, nkeys);
	struct key_shadow *ks = &w->keys[idx];
	unsigned what = 1 + rndn(w, 3);
	bool hit = ((what & UREG_SINGLETON) && ks->item) || ((what & UREG_FACTORY) && ks->factory);
	int rc;

	key_name(key, sizeof(key), w->id, idx);
	rc = ureg_unregister(reg, key, what);
	w->c.unregisters++;
	CHECK(rc == (hit ? 0 : -ENOENT), "unregister %s what=%u: rc %d, shadow %d", key, what, rc,
	      hit ? 0 : -ENOENT);
	if (rc == 0) {
		if (what & UREG_SINGLETON)
			ks->item = NULL;
		if (what & UREG_FACTORY)
			ks->factory = false;
	}
}

static void op_factory(struct worker *w)
{
	char key[32];
	int idx = rndn(w, nkeys);
	struct key_shadow *ks = &w->keys[idx];
	struct fac_arg *fa = fac_arg_new(w, idx);
	enum ureg_scope scope = rndn(w, 2) ? UREG_SCOPE_CONTEXT : UREG_SCOPE_TRANSIENT;
	struct ureg_factory f = make_factory(fa, scope);
	bool replace = rndn(w, 2);
	int rc, want;

	key_name(key, sizeof(key), w->id, idx);
	if (replace) {
		rc = ureg_replace_factory(reg, key, &f);
		want = ks->factory ? 0 : -ENOENT;
	} else {
		rc = ureg_register_factory(reg, key, &f);
		want = ks->factory ? -EEXIST : 0;
	}
	w->c.factories++;
	CHECK(rc == want, "%s %s: rc %d, shadow says %d", replace ? "replace_factory" : "register_factory",
	      key, rc, want);
	if (rc == 0) {
		ks->factory = true;
		ks->scope = scope;
	} else {
		fac_arg_free_unowned(fa);
	}
}

static void op_create(struct worker *w)
{
	struct ctx_shadow *cs = some_ctx(w);
	char key[32];
	struct ureg_ctx_stats before;
	void *obj = NULL;
	int owner = (int)rndn(w, nthreads), idx = rndn(w, nkeys), rc;

	if (!cs)
		return;
	if (cs->ninsts >= MAX_INSTS - 2) {
		release_inst(w, cs, rndn(w, cs->ninsts));
		return;
	}
	key_name(key, sizeof(key), owner, idx);
	ureg_ctx_stats(cs->ctx, &before);
	rc = ureg_create_instance(reg, key, cs->ctx, &obj);
	w->c.creates++;
	if (rc == 0) {
		account_result(w, cs, obj, &before, owner, idx, true);
	} else {
		CHECK(rc == -ENOENT, "create_instance(%s): %s", key, ureg_strerror(rc));
		if (owner == w->id)
			CHECK(!w->keys[idx].factory, "create_instance(%s): own factory lost", key);
		check_ctx(w, cs, "failed create_instance");
	}
}

static void op_alloc(struct worker *w)
{
	struct ctx_shadow *cs = some_ctx(w);
	size_t size;
	void *p;

	if (!cs)
		return;
	if (cs->nmem == MAX_ALLOCS || (cs->nmem && rndn(w, 2))) {
		int i = rndn(w, cs->nmem);
		ureg_ctx_free(cs->ctx, cs->mem[i].p);
		cs->bytes -= cs->mem[i].charge;
		cs->allocs--;
		cs->mem[i] = cs->mem[--cs->nmem];
		check_ctx(w, cs, "ctx_free");
		return;
	}
	size = 1 + rndn(w, rndn(w, 10) == 0 ? 20000 : 256);
	p = rndn(w, 2) ? ureg_ctx_alloc(cs->ctx, size) : ureg_ctx_calloc(cs->ctx, 1, size);
	w->c.allocs++;
	CHECK(p != NULL, "ureg_ctx_alloc(%zu) failed without a quota", size);
	if (!p)
		return;
	CHECK(((uintptr_t)p & 15) == 0, "context memory not 16-byte aligned");
	memset(p, 0xa5, size);
	cs->mem[cs->nmem++] = (struct alloc_rec){ p, charge_of(size) };
	cs->bytes += charge_of(size);
	cs->allocs++;
	check_ctx(w, cs, "ctx_alloc");
}

/* Quota: a cap one byte above what the context holds refuses everything,
 * cleanly: -EDQUOT / NULL+EDQUOT, accounting untouched. */
static void op_quota(struct worker *w)
{
	struct ctx_shadow *cs = some_ctx(w);
	struct ureg_ctx_stats before, st;
	void *p, *obj = NULL;
	char key[32];
	int idx = rndn(w, nkeys), rc;

	if (!cs)
		return;
	ureg_ctx_stats(cs->ctx, &before);
	ureg_ctx_set_quota(cs->ctx, before.live_bytes + 1);
	errno = 0;
	p = ureg_ctx_alloc(cs->ctx, 1 + rndn(w, 100));
	CHECK(p == NULL && errno == EDQUOT, "allocation over the quota: p=%p errno=%d", p, errno);
	if (p) /* keep the shadow honest even after a violation */
		ureg_ctx_free(cs->ctx, p);
	if (w->keys[idx].factory) {
		key_name(key, sizeof(key), w->id, idx);
		rc = ureg_create_instance(reg, key, cs->ctx, &obj);
		CHECK(rc == -EDQUOT, "create_instance over the quota: %s", ureg_strerror(rc));
		if (rc == 0)
			ureg_instance_release(cs->ctx, obj);
	}
	ureg_ctx_stats(cs->ctx, &st);
	CHECK(st.live_bytes == before.live_bytes && st.allocations == before.allocations &&
	      st.instances == before.instances && st.total_allocations == before.total_allocations,
	      "a refused allocation changed the context's accounting");
	ureg_ctx_set_quota(cs->ctx, 0);
	w->c.quota_hits++;
}

static void op_acquire(struct worker *w)
{
	int slot = rndn(w, REFS);
	char key[32];

	if (w->refs[slot]) {
		struct item *it = ureg_ref_item(w->refs[slot]);
		CHECK(atomic_load(&it->magic) == ITEM_LIVE,
		      "an item held by a counted reference was destroyed");
		ureg_ref_release(w->refs[slot]);
		w->refs[slot] = NULL;
		return;
	}
	int owner = rndn(w, 4) == 0 ? HOT_OWNER : (int)rndn(w, nthreads);
	int idx = owner == HOT_OWNER ? (int)rndn(w, HOT_KEYS) : (int)rndn(w, nkeys);
	key_name(key, sizeof(key), owner, idx);
	int rc = ureg_acquire(reg, key, &w->refs[slot]);
	w->c.acquires++;
	if (rc == 0)
		check_object(ureg_ref_item(w->refs[slot]), owner, idx, "acquire");
	else
		CHECK(rc == -ENOENT && owner != HOT_OWNER, "acquire %s: %s", key, ureg_strerror(rc));
	if (rc)
		w->refs[slot] = NULL;
}

/* A batch of 1-4 of our own keys, each set to a random new state. */
static void op_batch(struct worker *w)
{
	ureg_batch *b;
	int n = 1 + rndn(w, 4), idxs[4], nput = 0;
	struct key_shadow next[4];
	int rc = ureg_batch_new(reg, &b);

	CHECK(rc == 0, "batch_new: %s", ureg_strerror(rc));
	if (rc)
		return;
	for (int i = 0; i < n; i++) {
		int idx = rndn(w, nkeys);
		char key[32];
		struct item *it = rndn(w, 3) ? item_new(w->id, idx) : NULL;
		struct fac_arg *fa = rndn(w, 2) ? fac_arg_new(w, idx) : NULL;
		enum ureg_scope scope = rndn(w, 2) ? UREG_SCOPE_CONTEXT : UREG_SCOPE_TRANSIENT;
		struct ureg_factory f = make_factory(fa, scope);
		bool dup = false;

		for (int j = 0; j < nput; j++)
			dup |= idxs[j] == idx;
		key_name(key, sizeof(key), w->id, idx);
		rc = ureg_batch_put(b, key, it, fa ? &f : NULL, NULL);
		CHECK(rc == (dup ? -EEXIST : 0), "batch_put %s: rc %d (dup %d)", key, rc, dup);
		if (rc) {
			if (it)
				item_free_unowned(it);
			if (fa)
				fac_arg_free_unowned(fa);
			continue;
		}
		idxs[nput] = idx;
		next[nput++] = (struct key_shadow){ it, fa != NULL, scope };
	}
	rc = ureg_batch_commit(b, 0);
	CHECK(rc == 0, "batch_commit: %s", ureg_strerror(rc));
	if (rc) {
		ureg_batch_abort(b);
		return;
	}
	for (int i = 0; i < nput; i++)
		w->keys[idxs[i]] = next[i];
	w->c.batches++;
}

static void op_ctx_cycle(struct worker *w)
{
	struct ctx_shadow *cs = &w->ctxs[rndn(w, CTX_SLOTS)];

	if (cs->ctx)
		ctx_destroy(w, cs, rndn(w, 2));
	else
		ctx_create(w, cs);
}

static void *worker_main(void *arg)
{
	struct worker *w = arg;

	self = w;
	for (int i = 0; i < CTX_SLOTS; i++)
		if (i < 2)
			ctx_create(w, &w->ctxs[i]);
	while (!atomic_load_explicit(&stop, memory_order_relaxed)) {
		for (int burst = 0; burst < 64; burst++) {
			unsigned r = rndn(w, 1000);
			if (r < 450)
				op_read_any(w);
			else if (r < 500)
				op_check_own(w);
			else if (r < 570)
				op_register(w);
			else if (r < 610)
				op_unregister(w);
			else if (r < 660)
				op_replace(w);
			else if (r < 680)
				op_replace_hot(w);
			else if (r < 720)
				op_factory(w);
			else if (r < 790)
				op_create(w);
			else if (r < 820)
				op_alloc(w);
			else if (r < 835)
				op_ctx_cycle(w);
			else if (r < 850)
				op_quota(w);
			else if (r < 885)
				op_acquire(w);
			else if (r < 888)
				op_batch(w);
			else
				op_read_any(w);
			w->ops++;
		}
	}
	/* wind down: references, then every context, checked to zero */
	for (int i = 0; i < REFS; i++) {
		if (w->refs[i]) {
			struct item *it = ureg_ref_item(w->refs[i]);
			CHECK(atomic_load(&it->magic) == ITEM_LIVE,
			      "an item held by a counted reference was destroyed");
			ureg_ref_release(w->refs[i]);
			w->refs[i] = NULL;
		}
	}
	for (int i = 0; i < CTX_SLOTS; i++)
		if (w->ctxs[i].ctx)
			ctx_destroy(w, &w->ctxs[i], i != 0);
	return NULL;
}

/* ------------------------------------------------------------- the end */

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

static void final_checks(void)
{
	size_t expect = HOT_KEYS, n = 0;
	char key[32], **keys = NULL;
	char **want;
	size_t nwant = 0;

	want = calloc((size_t)nthreads * nkeys + HOT_KEYS, sizeof(*want));
	if (!want)
		abort();
	for (int i = 0; i < HOT_KEYS; i++) {
		key_name(key, sizeof(key), HOT_OWNER, i);
		want[nwant++] = strdup(key);
	}
	ureg_read_lock();
	for (int t = 0; t < nthreads; t++) {
		for (int i = 0; i < nkeys; i++) {
			struct key_shadow *ks = &workers[t].keys[i];
			void *p = NULL;
			int rc;

			key_name(key, sizeof(key), t, i);
			rc = ureg_lookup(reg, key, &p);
			if (ks->item)
				CHECK(rc == 0 && p == ks->item, "final: key %s lost its item", key);
			else
				CHECK(rc == -ENOENT, "final: key %s has a phantom item", key);
			if (ks->item || ks->factory) {
				expect++;
				want[nwant++] = strdup(key);
			}
		}
	}
	for (int i = 0; i < HOT_KEYS; i++) {
		void *p = NULL;
		key_name(key, sizeof(key), HOT_OWNER, i);
		CHECK(ureg_lookup(reg, key, &p) == 0, "final: hot key %s missing", key);
	}
	ureg_read_unlock();
	CHECK(ureg_count(reg) == expect, "final: ureg_count %zu, shadow %zu", ureg_count(reg), expect);
	int rc = ureg_keys(reg, &keys, &n);
	CHECK(rc == 0 && n == expect, "final: ureg_keys gave %zu keys (rc %d), shadow %zu", n, rc, expect);
	if (rc == 0 && n == nwant) {
		qsort(keys, n, sizeof(*keys), cmp_str);
		qsort(want, nwant, sizeof(*want), cmp_str);
		for (size_t i = 0; i < n; i++)
			CHECK(strcmp(keys[i], want[i]) == 0, "final: key set differs at %s / %s",
			      keys[i], want[i]);
	}
	ureg_keys_free(keys);
	for (size_t i = 0; i < nwant; i++)
		free(want[i]);
	free(want);
}

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

static void usage(FILE *f)
{
	fprintf(f, "usage: ureg-stress [--mode registry|arenas|fork|rank] [--threads N] [--seconds S]\n"
		   "                   [--seed X] [--keys K] [--forks N] [--help] [--version]\n"
		   "  --threads N (1..999), --seconds S (0.01..86400), --seed X (decimal or\n"
		   "  0x hex), --keys K (1..999 per thread), --forks N (1..100000000).\n"
		   "  registry (default): many threads run a random mix of lookups,\n"
		   "    registrations, replaces, unregistrations, factories, contexts, quota\n"
		   "    hits, references and batches against a shadow model; exit 0 only when\n"
		   "    no invariant broke.  Defaults: threads = 4 x cores, 10 s, seed from\n"
		   "    the clock, 48 keys/thread.\n"
		   "  arenas: 4 threads cycle DEDICATED contexts (1-16 blocks of 16 B-4 MiB)\n"
		   "    beside 4 in SHARED contexts and 2 doing plain malloc (stress/stress/\n"
		   "    arena_churn.h) for --seconds; exit 1 if any block changed under its\n"
		   "    owner or a call failed.\n"
		   "  fork: --forks N (default 1000) forks beside 4 threads busy on every lock\n"
		   "    of the library (fork_storm.h); exit 3 if a child hung, 4 if one\n"
		   "    crashed, 1 if one failed a step.\n"
		   "  rank: --threads readers and 2 writers churn ranked providers on 8 keys\n"
		   "    (rank_churn.h) for --seconds; exit 1 if a reader saw a lower rank\n"
		   "    while a higher one was registered, a miss, a dead item, an\n"
		   "    inconsistent provider list, or a call failed.\n"
		   "  -h, --help: this text, on stdout.  -V, --version: program and libureg\n"
		   "  version.\n"
		   "Exit status: 0 no invariant broke, 1 one did (or a call failed), 2 usage\n"
		   "error, 3 a fork child hung, 4 a fork child crashed.\n");
}

static _Noreturn void bad_arg(const char *opt, const char *arg)
{
	fprintf(stderr, "ureg-stress: bad %s '%s'\n", opt, arg);
	usage(stderr);
	exit(TOOL_EXIT_USAGE);
}

static int run_arenas(void)
{
	struct arena_churn_result r;
	int rc = arena_churn_run(4, 4, 2, seconds, seed, &r);

	printf("arenas: dedicated_cycles=%ld shared_cycles=%ld malloc_ops=%ld "
	       "bad_patterns=%ld failures=%ld eagain=%ld seconds=%.1f seed=%" PRIu64 "\n",
	       r.dedicated_cycles, r.shared_cycles, r.malloc_ops, r.bad_patterns,
	       r.failures, r.eagain, seconds, seed);
	return rc == 0 && r.bad_patterns == 0 && r.failures == 0 ? 0 : 1;
}

static int run_fork(long forks)
{
	struct fork_storm_result r;
	int rc = fork_storm_run(forks, &r);

	printf("fork: forks=%ld ok=%ld failed=%ld crashed=%ld hung=%ld busy_ops=%ld "
	       "busy_errors=%ld first_bad_status=0x%x\n",
	       r.forks, r.ok, r.failed, r.crashed, r.hung, r.busy_ops, r.busy_errors,
	       r.first_bad_status);
	if (r.hung)
		return 3;
	if (r.crashed)
		return 4;
	return rc == 0 && r.ok == forks && r.busy_errors == 0 ? 0 : 1;
}

static int run_rank(void)
{
	struct rank_churn_result r = { 0 };
	int rc = rank_churn_run(nthreads, seconds, seed, &r);

	printf("rank: lookups=%ld checked=%ld writes=%ld batches=%ld misses=%ld "
	       "too_low=%ld dead=%ld bad_lists=%ld failures=%ld seconds=%.1f seed=%" PRIu64 "\n",
	       r.lookups, r.checked, r.writes, r.batches, r.misses, r.too_low, r.dead,
	       r.bad_lists, r.failures, seconds, seed);
	return rc == 0 && r.misses == 0 && r.too_low == 0 && r.dead == 0 &&
	       r.bad_lists == 0 && r.failures == 0 && r.checked > 0 ? 0 : 1;
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "threads", required_argument, NULL, 't' },
		{ "seconds", required_argument, NULL, 's' },
		{ "seed", required_argument, NULL, 'r' },
		{ "keys", required_argument, NULL, 'k' },
		{ "mode", required_argument, NULL, 'm' },
		{ "forks", required_argument, NULL, 'f' },
		{ "help", no_argument, NULL, 'h' },
		{ "version", no_argument, NULL, 'V' },
		{ 0 },
	};
	const char *mode = "registry";
	long forks = 1000;
	unsigned long num;
	int c;
	long cores = sysconf(_SC_NPROCESSORS_ONLN);

	nthreads = (int)(cores > 0 ? cores : 1) * 4;
	seed = (uint64_t)time(NULL);
	while ((c = getopt_long(argc, argv, "t:s:r:k:m:f:hV", opts, NULL)) != -1) {
		switch (c) {
		case 'm': mode = optarg; break;
		case 'f':
			if (!tool_parse_ulong(optarg, 1, 100000000, &num))
				bad_arg("--forks", optarg);
			forks = (long)num;
			break;
		case 't':
			if (!tool_parse_ulong(optarg, 1, 999, &num))
				bad_arg("--threads", optarg);
			nthreads = (int)num;
			break;
		case 's':
			if (!tool_parse_double(optarg, 0.01, 86400, &seconds))
				bad_arg("--seconds", optarg);
			break;
		case 'r':
			if (!tool_parse_u64(optarg, &seed))
				bad_arg("--seed", optarg);
			break;
		case 'k':
			if (!tool_parse_ulong(optarg, 1, 999, &num))
				bad_arg("--keys", optarg);
			nkeys = (int)num;
			break;
		case 'h': usage(stdout); return TOOL_EXIT_OK;
		case 'V': tool_print_version("ureg-stress"); return TOOL_EXIT_OK;
		default: usage(stderr); return TOOL_EXIT_USAGE;
		}
	}
	if (optind < argc)
		bad_arg("argument", argv[optind]);
	if (nthreads < 1 || nthreads > 999) { /* 4 x cores, on a big machine */
		fprintf(stderr, "ureg-stress: %d threads by default is over 999: give --threads\n",
			nthreads);
		return TOOL_EXIT_USAGE;
	}
	if (!strcmp(mode, "arenas"))
		return run_arenas();
	if (!strcmp(mode, "fork"))
		return run_fork(forks);
	if (!strcmp(mode, "rank"))
		return run_rank();
	if (strcmp(mode, "registry"))
		bad_arg("--mode", mode);
	fprintf(stderr, "stress: %d threads, %.1f s, seed %" PRIu64 ", %d keys per thread\n",
		nthreads, seconds, seed, nkeys);

	if (ureg_registry_new(&stress_type, "stress", &reg) != 0) {
		fprintf(stderr, "stress: registry_new: %s\n", ureg_last_error());
		return 1;
	}
	for (int i = 0; i < HOT_KEYS; i++) {
		char key[32];
		key_name(key, sizeof(key), HOT_OWNER, i);
		if (ureg_register(reg, key, item_new(HOT_OWNER, i)) != 0)
			abort();
	}
	workers = calloc((size_t)nthreads, sizeof(*workers));
	if (!workers)
		abort();
	double t0 = now_s();
	for (int t = 0; t < nthreads; t++) {
		struct worker *w = &workers[t];
		w->id = t;
		w->rng = seed * UINT64_C(0x9e3779b97f4a7c15) + (uint64_t)t * 7919 + 1;
		if (!w->rng)
			w->rng = 1;
		w->keys = calloc((size_t)nkeys, sizeof(*w->keys));
		if (!w->keys || pthread_create(&w->tid, NULL, worker_main, w) != 0)
			abort();
	}
	/* the deadline: a timed wait, not a sleep that hopes a race happened */
	{
		struct timespec ts;
		pthread_mutex_t m = PTHREAD_MUTEX_INITIALIZER;
		pthread_cond_t cv = PTHREAD_COND_INITIALIZER;
		clock_gettime(CLOCK_REALTIME, &ts);
		double end = ts.tv_sec + ts.tv_nsec / 1e9 + seconds;
		ts.tv_sec = (time_t)end;
		ts.tv_nsec = (long)((end - (double)ts.tv_sec) * 1e9);
		pthread_mutex_lock(&m);
		while (pthread_cond_timedwait(&cv, &m, &ts) != ETIMEDOUT)
			;
		pthread_mutex_unlock(&m);
	}
	atomic_store(&stop, true);
	struct counters tot = { 0 };
	long ops = 0;
	for (int t = 0; t < nthreads; t++) {
		pthread_join(workers[t].tid, NULL);
		struct counters *k = &workers[t].c;
		ops += workers[t].ops;
		tot.lookups += k->lookups; tot.hits += k->hits;
		tot.registers += k->registers; tot.unregisters += k->unregisters;
		tot.replaces += k->replaces; tot.factories += k->factories;
		tot.creates += k->creates; tot.gets += k->gets;
		tot.ctx_new += k->ctx_new; tot.ctx_destroy += k->ctx_destroy;
		tot.quota_hits += k->quota_hits; tot.acquires += k->acquires;
		tot.batches += k->batches; tot.allocs += k->allocs;
	}
	double elapsed = now_s() - t0;

	final_checks();
	ureg_registry_destroy(reg); /* rcu_barrier: every destructor has run */
	CHECK(atomic_load(&items_alive) == 0, "final: %ld items never destroyed", atomic_load(&items_alive));
	CHECK(atomic_load(&args_alive) == 0, "final: %ld factory arguments never freed", atomic_load(&args_alive));
	CHECK(atomic_load(&insts_alive) == 0, "final: %ld instances never destroyed", atomic_load(&insts_alive));
	quarantine_flush();
	for (int t = 0; t < nthreads; t++)
		free(workers[t].keys);
	free(workers);

	long v = atomic_load(&violations);
	printf("stress: lookups=%ld hits=%ld gets=%ld registers=%ld unregisters=%ld replaces=%ld "
	       "factories=%ld creates=%ld allocs=%ld ctx_new=%ld ctx_destroy=%ld quota_hits=%ld "
	       "acquires=%ld batches=%ld\n",
	       tot.lookups, tot.hits, tot.gets, tot.registers, tot.unregisters, tot.replaces,
	       tot.factories, tot.creates, tot.allocs, tot.ctx_new, tot.ctx_destroy,
	       tot.quota_hits, tot.acquires, tot.batches);
	printf("stress: ops=%ld violations=%ld threads=%d seconds=%.1f ops_per_s=%.0f seed=%" PRIu64 "\n",
	       ops, v, nthreads, elapsed, ops / elapsed, seed);
	return v == 0 ? 0 : 1;
}
