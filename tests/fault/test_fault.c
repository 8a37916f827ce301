/* SPDX-License-Identifier: MIT */
/*
 * Allocation failure at every step: for each operation, fail its 1st, 2nd,
 * ... allocation (ureg_fault_inject(N)) until the operation succeeds, and
 * after each failure check that -ENOMEM came back and that nothing changed:
 * the registry's count, generation and lookups, the contexts' accounting,
 * and that the caller still owns what it passed in (the test frees it).
 * LeakSanitizer (the ASan build) then proves that no failure path leaks.
 *
 * Needs a library built with -Dfault_injection=true (tests/fault is only
 * built then).  Criterion runs every test in its own process, so counters
 * start at zero.
 */
#include <criterion/criterion.h>

#include <errno.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <ureg/ureg.h>
#include <ureg/ctx.h>
#include <ureg/events.h>
#include <ureg/fault.h>

#define LIVE UINT64_C(0x11fe11fe11fe11fe)
#define DEAD UINT64_C(0xdeaddeaddeaddead)
#define WALK_MAX 10000 /* no operation makes this many allocations */

/* ------------------------------------------------------------- objects */

struct item {
	uint64_t magic;
	int id;
};

static atomic_int items_destroyed;
static atomic_int insts_made, insts_destroyed;
static atomic_int args_freed;

static struct item *item_new(int id)
{
	struct item *it = malloc(sizeof(*it));

	cr_assert_not_null(it);
	it->magic = LIVE;
	it->id = id;
	return it;
}

static void item_destroy(void *p)
{
	struct item *it = p;

	cr_assert_eq(it->magic, LIVE, "item destroyed twice");
	it->magic = DEAD;
	atomic_fetch_add(&items_destroyed, 1);
	free(it);
}

struct inst {
	uint64_t magic;
	char *label; /* a second context allocation: two failure points */
};

static int fac_create(ureg_ctx *ctx, void *arg, void **out)
{
	struct inst *in = ureg_ctx_alloc(ctx, sizeof(*in));

	(void)arg;
	if (!in)
		return -errno;
	in->label = ureg_ctx_strdup(ctx, "an instance label");
	if (!in->label) {
		int err = -errno;
		ureg_ctx_free(ctx, in);
		return err;
	}
	in->magic = LIVE;
	atomic_fetch_add(&insts_made, 1);
	*out = in;
	return 0;
}

static void inst_destroy(void *p, ureg_ctx *ctx)
{
	struct inst *in = p;

	cr_assert_eq(in->magic, LIVE, "instance destroyed twice");
	in->magic = DEAD;
	atomic_fetch_add(&insts_destroyed, 1);
	ureg_ctx_free(ctx, in->label);
	ureg_ctx_free(ctx, in);
}

static void arg_free(void *arg)
{
	atomic_fetch_add(&args_freed, 1);
	free(arg);
}

static const ureg_type fault_type = {
	.name = "fault-item",
	.item_destroy = item_destroy,
	.instance_destroy = inst_destroy,
};

static struct ureg_factory factory(enum ureg_scope scope)
{
	struct ureg_factory f = {
		.create = fac_create, .scope = scope,
		.arg = malloc(16), .arg_free = arg_free,
	};
	cr_assert_not_null(f.arg);
	return f;
}

/* ------------------------------------------------------------ fixtures */

static ureg_registry *reg;
static ureg_listener *listener;
static atomic_int events_seen;

static void on_event(const struct ureg_event *ev, void *arg)
{
	(void)ev; (void)arg;
	atomic_fetch_add(&events_seen, 1);
}

#define BASE_KEYS 40 /* more than ureg_keys' first array (16): it grows */

/* A registry with singletons k00..k39, factories on f00..f03 (one also
 * holds a singleton), and one key written by a batch with a source, so
 * single-key changes to it must copy the provider and file strings. */
static void setup_registry(void)
{
	char key[16];
	ureg_batch *b;

	cr_assert(ureg_fault_inject(0) == 0,
		  "libureg was built without -Dfault_injection=true");
	cr_assert_eq(ureg_registry_new(&fault_type, "fault", &reg), 0);
	for (int i = 0; i < BASE_KEYS; i++) {
		snprintf(key, sizeof(key), "k%02d", i);
		cr_assert_eq(ureg_register(reg, key, item_new(i)), 0);
	}
	for (int i = 0; i < 4; i++) {
		struct ureg_factory f = factory(i % 2 ? UREG_SCOPE_CONTEXT : UREG_SCOPE_TRANSIENT);
		snprintf(key, sizeof(key), "f%02d", i);
		cr_assert_eq(ureg_register_factory(reg, key, &f), 0);
	}
	cr_assert_eq(ureg_register(reg, "f00", item_new(100)), 0);
	struct ureg_factory f = factory(UREG_SCOPE_TRANSIENT);
	struct ureg_source src = { .provider = "builtin", .file = "fault.yaml",
				   .line = 3, .column = 5 };
	cr_assert_eq(ureg_batch_new(reg, &b), 0);
	cr_assert_eq(ureg_batch_put(b, "sourced", item_new(200), &f, &src), 0);
	cr_assert_eq(ureg_batch_commit(b, 0), 0);
}

/* The same registry with a listener: every change also prepares an event. */
static void setup_registry_listening(void)
{
	setup_registry();
	cr_assert_eq(ureg_listen(NULL, UREG_EV_ALL, on_event, NULL, &listener), 0);
}

static void teardown_registry(void)
{
	ureg_fault_inject(0);
	ureg_unlisten(listener);
	listener = NULL;
	ureg_registry_destroy(reg); /* rcu_barrier: deferred frees have run */
	reg = NULL;
}

/* What must not change when an operation fails. */
struct reg_snapshot {
	size_t count;
	uint64_t generation;
	int items_destroyed, args_freed;
	void *k00, *f00, *sourced;
};

static void *lookup(const char *key)
{
	void *p = NULL;

	ureg_read_lock();
	if (ureg_lookup(reg, key, &p) != 0)
		p = NULL;
	ureg_read_unlock();
	return p;
}

static struct reg_snapshot snap(void)
{
	struct reg_snapshot s = {
		.count = ureg_count(reg), .generation = ureg_generation(reg),
		.items_destroyed = atomic_load(&items_destroyed),
		.args_freed = atomic_load(&args_freed),
		.k00 = lookup("k00"), .f00 = lookup("f00"), .sourced = lookup("sourced"),
	};
	return s;
}

static void assert_unchanged(const struct reg_snapshot *a, long n)
{
	struct reg_snapshot b;

	/* the old table's entries may still be waiting for call_rcu: wait */
	ureg_synchronize();
	b = snap();
	cr_assert_eq(b.count, a->count, "N=%ld: count changed", n);
	cr_assert_eq(b.generation, a->generation, "N=%ld: generation changed", n);
	cr_assert_eq(b.items_destroyed, a->items_destroyed, "N=%ld: an item was destroyed", n);
	cr_assert_eq(b.args_freed, a->args_freed, "N=%ld: a factory argument was freed", n);
	cr_assert_eq(b.k00, a->k00, "N=%ld: k00 changed", n);
	cr_assert_eq(b.f00, a->f00, "N=%ld: f00 changed", n);
	cr_assert_eq(b.sourced, a->sourced, "N=%ld: sourced changed", n);
	ureg_read_lock();
	struct ureg_entry_info info;
	cr_assert_eq(ureg_entry_info(reg, "sourced", &info), 0);
	cr_assert_str_eq(info.provider, "builtin", "N=%ld: source lost", n);
	cr_assert_str_eq(info.source_file, "fault.yaml", "N=%ld: source lost", n);
	ureg_read_unlock();
}

/*
 * Walk N = 1, 2, ...: arm the fault, run @op (an expression giving the
 * return code), disarm.  On failure it must be -ENOMEM, and the trailing
 * block (which sees the failing N as `n`) checks that nothing changed.
 * Leaves the number of failures in @fails.
 */
#define FAULT_WALK(fails, op, ...)                                              \
	do {                                                                   \
		(fails) = 0;                                                   \
		for (long n_ = 1;; n_++) {                                     \
			cr_assert_lt(n_, WALK_MAX, "never succeeded");         \
			cr_assert_eq(ureg_fault_inject(n_), 0);                \
			int rc_ = (op);                                        \
			long seen_ = ureg_fault_allocations();                 \
			ureg_fault_inject(0);                                  \
			if (rc_ == 0)                                          \
				break;                                         \
			cr_assert_eq(rc_, -ENOMEM, "N=%ld: %s (%s)", n_,       \
				     ureg_strerror(rc_), ureg_last_error());   \
			cr_assert_geq(seen_, n_, "N=%ld: failed before its "   \
				      "Nth allocation", n_);                   \
			(fails)++;                                             \
			long n = n_;                                           \
			(void)n;                                               \
			__VA_ARGS__                                            \
		}                                                              \
	} while (0)

/* ------------------------------------------------------------ registry */

TestSuite(fault_registry, .init = setup_registry, .fini = teardown_registry);

static void walk_register(void)
{
	struct reg_snapshot s = snap();
	struct item *it = item_new(7);
	int fails;

	FAULT_WALK(fails, ureg_register(reg, "new-key", it), {
		assert_unchanged(&s, n);
		cr_assert_null(lookup("new-key"));
		cr_assert_eq(it->magic, LIVE, "the caller's item was destroyed");
	});
	cr_assert_gt(fails, 0);
	cr_assert_eq(lookup("new-key"), it);
	cr_assert_eq(ureg_count(reg), s.count + 1);
}

Test(fault_registry, register_of_a_new_key_fails_cleanly_at_every_allocation)
{
	walk_register();
}

Test(fault_registry, register_next_to_a_sourced_factory_fails_cleanly_at_every_allocation)
{
	struct reg_snapshot s;
	struct item *it = item_new(8);
	int fails;

	cr_assert_eq(ureg_unregister(reg, "sourced", UREG_SINGLETON), 0);
	ureg_synchronize();
	s = snap();
	s.sourced = NULL;
	FAULT_WALK(fails, ureg_register(reg, "sourced", it), {
		cr_assert_null(lookup("sourced"), "N=%ld", n);
		cr_assert_eq(ureg_count(reg), s.count);
		cr_assert_eq(ureg_generation(reg), s.generation);
		cr_assert_eq(ureg_contains(reg, "sourced"), 1, "N=%ld: factory lost", n);
		ureg_read_lock();
		struct ureg_entry_info info;
		cr_assert_eq(ureg_entry_info(reg, "sourced", &info), 0);
		cr_assert(info.has_factory && !info.has_singleton);
		cr_assert_str_eq(info.provider, "builtin");
		ureg_read_unlock();
	});
	cr_assert_geq(fails, 3, "entry, box and the two source strings can each fail");
	cr_assert_eq(lookup("sourced"), it);
}

Test(fault_registry, register_factory_fails_cleanly_and_keeps_the_callers_argument)
{
	struct reg_snapshot s = snap();
	struct ureg_factory f = factory(UREG_SCOPE_CONTEXT);
	int fails;

	/* k01 has a singleton: the new entry carries it over */
	FAULT_WALK(fails, ureg_register_factory(reg, "k01", &f), {
		assert_unchanged(&s, n);
		ureg_read_lock();
		struct ureg_entry_info info;
		cr_assert_eq(ureg_entry_info(reg, "k01", &info), 0);
		cr_assert(!info.has_factory, "N=%ld: phantom factory", n);
		ureg_read_unlock();
	});
	cr_assert_geq(fails, 3, "entry, box and key copy can each fail");
	cr_assert_eq(atomic_load(&args_freed), 0);
	ureg_read_lock();
	struct ureg_entry_info info;
	cr_assert_eq(ureg_entry_info(reg, "k01", &info), 0);
	cr_assert(info.has_factory && info.has_singleton);
	ureg_read_unlock();
}

Test(fault_registry, replace_fails_cleanly_and_keeps_the_old_item_published)
{
	struct reg_snapshot s = snap();
	struct item *it = item_new(9), *old = lookup("sourced");
	int fails;

	FAULT_WALK(fails, ureg_replace(reg, "sourced", it), {
		assert_unchanged(&s, n);
		cr_assert_eq(lookup("sourced"), old);
		cr_assert_eq(it->magic, LIVE);
	});
	cr_assert_geq(fails, 2);
	cr_assert_eq(lookup("sourced"), it);
	ureg_synchronize();
	ureg_registry_destroy(reg);
	reg = NULL;
	cr_assert_eq(atomic_load(&items_destroyed), BASE_KEYS + 3,
		     "every item, the replaced one included, destroyed exactly once");
}

Test(fault_registry, replace_factory_fails_cleanly)
{
	struct reg_snapshot s = snap();
	struct ureg_factory f = factory(UREG_SCOPE_TRANSIENT);
	int fails;

	FAULT_WALK(fails, ureg_replace_factory(reg, "f01", &f), {
		assert_unchanged(&s, n);
		ureg_read_lock();
		struct ureg_entry_info info;
		cr_assert_eq(ureg_entry_info(reg, "f01", &info), 0);
		cr_assert_eq(info.scope, UREG_SCOPE_CONTEXT, "N=%ld: factory swapped", n);
		ureg_read_unlock();
	});
	cr_assert_gt(fails, 0);
	ureg_synchronize();
	ureg_read_lock();
	struct ureg_entry_info info;
	cr_assert_eq(ureg_entry_info(reg, "f01", &info), 0);
	cr_assert_eq(info.scope, UREG_SCOPE_TRANSIENT);
	ureg_read_unlock();
}

Test(fault_registry, unregister_fails_cleanly_and_keeps_the_key)
{
	struct reg_snapshot s = snap();
	int fails;

	/* removing the singleton of a sourced key builds a new entry */
	FAULT_WALK(fails, ureg_unregister(reg, "sourced", UREG_SINGLETON), {
		assert_unchanged(&s, n);
	});
	cr_assert_gt(fails, 0);
	cr_assert_null(lookup("sourced"));
	cr_assert_eq(ureg_contains(reg, "sourced"), 1);
	/* removing a whole key */
	s = snap();
	FAULT_WALK(fails, ureg_unregister(reg, "k00", UREG_BOTH), {
		assert_unchanged(&s, n);
	});
	cr_assert_eq(ureg_contains(reg, "k00"), 0);
	cr_assert_eq(ureg_count(reg), s.count - 1);
}

static int ranked_top(void)
{
	struct item *it = lookup("ranked");

	return it ? it->id : -1;
}

/* Ranking: a key with more providers than the writer gathers on its
 * stack, so registering, falling back, removing a lower rank and copying
 * the key into a batch's table each allocate the provider set too. */
Test(fault_registry, ranked_providers_fail_cleanly_at_every_allocation)
{
	struct reg_snapshot s;
	struct item *it = item_new(300);
	struct ureg_factory f = factory(UREG_SCOPE_TRANSIENT);
	ureg_batch *b;
	int fails, before, base = atomic_load(&items_destroyed);

	for (int r = 1; r <= 10; r++)
		cr_assert_eq(ureg_register_ranked(reg, "ranked", item_new(200 + r), r), 0);
	cr_assert_eq(ureg_register_factory_ranked(reg, "ranked", &f, 3), 0);
	s = snap();
	FAULT_WALK(fails, ureg_register_ranked(reg, "ranked", it, 20), {
		assert_unchanged(&s, n);
		cr_assert_eq(ranked_top(), 210, "N=%ld", n);
		cr_assert_eq(it->magic, LIVE, "the caller's item was destroyed");
	});
	cr_assert_geq(fails, 4, "entry, box, gathered set and cold array");
	cr_assert_eq(ranked_top(), 300);

	s = snap();
	FAULT_WALK(fails, ureg_unregister(reg, "ranked", UREG_SINGLETON), {
		assert_unchanged(&s, n);
		cr_assert_eq(ranked_top(), 300, "N=%ld", n);
	});
	cr_assert_gt(fails, 0);
	cr_assert_eq(ranked_top(), 210, "fell back to the next rank");

	s = snap();
	FAULT_WALK(fails, ureg_unregister_ranked(reg, "ranked", UREG_BOTH, 3), {
		assert_unchanged(&s, n);
	});
	cr_assert_gt(fails, 0);
	cr_assert_eq(ureg_unregister_ranked(reg, "ranked", UREG_SINGLETON, 3), -ENOENT);
	/* items 300 and 203 and the factory's argument die in call_rcu
	 * callbacks: let them run before the next snapshot (bounded, no sleep) */
	for (long i = 0; i < 200000 && (atomic_load(&items_destroyed) < base + 2 ||
					 atomic_load(&args_freed) < s.args_freed + 1); i++) {
		ureg_synchronize();
		sched_yield();
	}
	cr_assert_eq(atomic_load(&args_freed), s.args_freed + 1);
	cr_assert_eq(atomic_load(&items_destroyed), base + 2);

	cr_assert_eq(ureg_batch_new(reg, &b), 0);
	cr_assert_eq(ureg_batch_put(b, "other", item_new(400), NULL, NULL), 0);
	s = snap();
	FAULT_WALK(fails, ureg_batch_commit(b, 0), {
		assert_unchanged(&s, n);
		cr_assert_eq(ranked_top(), 210, "N=%ld", n);
	});
	cr_assert_gt(fails, BASE_KEYS);
	/* the copy kept every lower rank: falls back all the way down */
	before = atomic_load(&items_destroyed);
	for (int want = 9; want >= 1; want--) {
		if (want == 3)
			continue; /* removed above */
		cr_assert_eq(ureg_unregister(reg, "ranked", UREG_SINGLETON), 0);
		cr_assert_eq(ranked_top(), 200 + want);
	}
	cr_assert_eq(ureg_unregister(reg, "ranked", UREG_SINGLETON), 0);
	cr_assert_eq(ureg_contains(reg, "ranked"), 0);
	ureg_synchronize();
	ureg_registry_destroy(reg);
	reg = NULL;
	cr_assert_geq(atomic_load(&items_destroyed), before + 9);
}

Test(fault_registry, registry_new_fails_cleanly_at_every_allocation)
{
	ureg_registry *r = NULL;
	int fails;

	FAULT_WALK(fails, ureg_registry_new(&fault_type, "another", &r), {
		cr_assert_null(r, "N=%ld: out written on failure", n);
	});
	cr_assert_geq(fails, 2);
	cr_assert_not_null(r);
	ureg_registry_destroy(r);
}

Test(fault_registry, keys_snapshot_fails_cleanly_at_every_allocation)
{
	char **keys = NULL;
	size_t n_keys = 0;
	int fails;

	FAULT_WALK(fails, ureg_keys(reg, &keys, &n_keys), {
		cr_assert_null(keys, "N=%ld: keys written on failure", n);
	});
	cr_assert_geq(fails, BASE_KEYS, "every key copy and every growth can fail");
	cr_assert_eq(n_keys, ureg_count(reg));
	ureg_keys_free(keys);
}

/* The same walks with a listener attached: event nodes can fail too. */
TestSuite(fault_events, .init = setup_registry_listening, .fini = teardown_registry);

Test(fault_events, register_with_a_listener_fails_cleanly_and_sends_no_event)
{
	int before = atomic_load(&events_seen);
	struct reg_snapshot s = snap();
	struct item *it = item_new(7);
	int fails;

	FAULT_WALK(fails, ureg_register(reg, "new-key", it), {
		assert_unchanged(&s, n);
		cr_assert_eq(atomic_load(&events_seen), before, "N=%ld: event for a failed change", n);
	});
	cr_assert_geq(fails, 3);
	cr_assert_eq(atomic_load(&events_seen), before + 1);
}

Test(fault_events, batch_commit_with_a_listener_fails_cleanly_and_sends_no_event)
{
	int before = atomic_load(&events_seen);
	struct reg_snapshot s = snap();
	ureg_batch *b;
	int fails;

	cr_assert_eq(ureg_batch_new(reg, &b), 0);
	cr_assert_eq(ureg_batch_put(b, "b1", item_new(1), NULL, NULL), 0);
	cr_assert_eq(ureg_batch_put(b, "k05", NULL, NULL, NULL), 0);
	FAULT_WALK(fails, ureg_batch_commit(b, 0), {
		assert_unchanged(&s, n);
		cr_assert_eq(atomic_load(&events_seen), before);
	});
	cr_assert_gt(fails, BASE_KEYS);
	cr_assert_eq(atomic_load(&events_seen), before + 3); /* 2 changes + reload */
}

/* ------------------------------------------------------------- factories */

TestSuite(fault_factory, .init = setup_registry, .fini = teardown_registry);

static ureg_ctx *new_ctx(unsigned flags)
{
	ureg_ctx *ctx = NULL;

	cr_assert_eq(ureg_ctx_new("fault", flags, &ctx), 0, "%s", ureg_last_error());
	return ctx;
}

static void assert_stats(ureg_ctx *ctx, const struct ureg_ctx_stats *want, long n)
{
	struct ureg_ctx_stats st;

	cr_assert_eq(ureg_ctx_stats(ctx, &st), 0);
	cr_assert_eq(st.live_bytes, want->live_bytes, "N=%ld: live_bytes changed", n);
	cr_assert_eq(st.allocations, want->allocations, "N=%ld: allocations changed", n);
	cr_assert_eq(st.instances, want->instances, "N=%ld: instances changed", n);
}

static int create_in(ureg_ctx *ctx, const char *key, void **out)
{
	return ureg_create_instance(reg, key, ctx, out);
}

static void walk_create(unsigned flags)
{
	ureg_ctx *ctx = new_ctx(flags);
	struct ureg_ctx_stats before;
	struct reg_snapshot s = snap();
	void *obj = NULL;
	int fails;

	cr_assert_eq(create_in(ctx, "f02", &obj), 0); /* warm: a non-empty context */
	cr_assert_eq(ureg_ctx_stats(ctx, &before), 0);
	FAULT_WALK(fails, create_in(ctx, "f00", &obj), {
		assert_stats(ctx, &before, n);
		assert_unchanged(&s, n);
		cr_assert_eq(atomic_load(&insts_made), 1);
	});
	cr_assert_geq(fails, 3, "record, instance and label can each fail");
	cr_assert_eq(((struct inst *)obj)->magic, LIVE);
	struct ureg_ctx_stats st;
	ureg_ctx_stats(ctx, &st);
	cr_assert_eq(st.instances, 2);
	cr_assert_eq(ureg_instance_release(ctx, obj), 0);
	assert_stats(ctx, &before, 0);
	ureg_ctx_destroy(ctx);
	cr_assert_eq(atomic_load(&insts_destroyed), atomic_load(&insts_made));
}

Test(fault_factory, create_instance_in_a_shared_context_fails_cleanly)
{
	walk_create(UREG_CTX_SHARED);
}

Test(fault_factory, create_instance_in_a_dedicated_context_fails_cleanly)
{
	walk_create(UREG_CTX_DEDICATED);
}

static int get_in(ureg_ctx *ctx, const char *key, void **out)
{
	int rc;

	ureg_read_lock();
	rc = ureg_get(reg, key, ctx, out);
	ureg_read_unlock();
	return rc;
}

Test(fault_factory, context_scope_get_fails_cleanly_and_then_caches_one_instance)
{
	ureg_ctx *ctx = new_ctx(UREG_CTX_SHARED);
	struct ureg_ctx_stats before;
	void *obj = NULL, *again = NULL;
	int fails;

	cr_assert_eq(ureg_ctx_stats(ctx, &before), 0);
	FAULT_WALK(fails, get_in(ctx, "f01", &obj), {
		assert_stats(ctx, &before, n);
		cr_assert_eq(atomic_load(&insts_made), 0);
	});
	cr_assert_geq(fails, 3, "cache, record, instance and label can each fail (the cache slot survives the first failure)");
	cr_assert_eq(get_in(ctx, "f01", &again), 0);
	cr_assert_eq(again, obj, "the cached instance is served after the failures");
	struct ureg_ctx_stats st;
	ureg_ctx_stats(ctx, &st);
	cr_assert_eq(st.instances, 1);
	/* a second CONTEXT key forces the cache to hold two serials */
	FAULT_WALK(fails, get_in(ctx, "f03", &obj), {
		ureg_ctx_stats(ctx, &st);
		cr_assert_eq(st.instances, 1, "N=%ld", n);
	});
	cr_assert_eq(get_in(ctx, "f03", &again), 0);
	cr_assert_eq(again, obj);
	ureg_ctx_destroy(ctx);
	cr_assert_eq(atomic_load(&insts_destroyed), 2);
}

Test(fault_factory, context_scope_get_in_a_dedicated_context_fails_cleanly)
{
	ureg_ctx *ctx = new_ctx(UREG_CTX_DEDICATED);
	struct ureg_ctx_stats before;
	void *obj = NULL, *again = NULL;
	int fails;

	cr_assert_eq(ureg_ctx_stats(ctx, &before), 0);
	FAULT_WALK(fails, get_in(ctx, "f03", &obj), {
		assert_stats(ctx, &before, n);
	});
	cr_assert_gt(fails, 0);
	cr_assert_eq(get_in(ctx, "f03", &again), 0);
	cr_assert_eq(again, obj);
	ureg_ctx_destroy(ctx);
	cr_assert_eq(atomic_load(&insts_destroyed), 1);
}

/* ------------------------------------------------------------- contexts */

TestSuite(fault_ctx, .init = setup_registry, .fini = teardown_registry);

static int count_ctx(ureg_ctx *ctx, void *arg)
{
	(void)ctx;
	(*(int *)arg)++;
	return 0;
}

static int live_contexts(void)
{
	int n = 0;

	ureg_ctx_foreach(count_ctx, &n);
	return n;
}

static void walk_ctx_new(unsigned flags)
{
	ureg_ctx *ctx = NULL;
	int before = live_contexts(), fails;

	FAULT_WALK(fails, ureg_ctx_new("walk", flags, &ctx), {
		cr_assert_null(ctx, "N=%ld: out written on failure", n);
		cr_assert_eq(live_contexts(), before, "N=%ld: a context leaked into the list", n);
	});
	cr_assert_gt(fails, 0);
	cr_assert_not_null(ctx);
	cr_assert_eq(live_contexts(), before + 1);
	void *p = ureg_ctx_alloc(ctx, 100);
	cr_assert_not_null(p, "the context works after the failures");
	ureg_ctx_destroy(ctx);
	cr_assert_eq(live_contexts(), before);
}

Test(fault_ctx, shared_context_creation_fails_cleanly_at_every_allocation)
{
	walk_ctx_new(UREG_CTX_SHARED);
	/* and again once the pool has its arenas */
	walk_ctx_new(UREG_CTX_SHARED);
}

Test(fault_ctx, dedicated_context_creation_fails_cleanly_at_every_allocation)
{
	walk_ctx_new(UREG_CTX_DEDICATED);
}

static void destroy_full_context_under_faults(unsigned flags)
{
	ureg_ctx *ctx = new_ctx(flags);
	void *obj;

	for (int i = 0; i < 5; i++)
		cr_assert_eq(create_in(ctx, "f00", &obj), 0);
	cr_assert_eq(get_in(ctx, "f01", &obj), 0);
	cr_assert_not_null(ureg_ctx_alloc(ctx, 1000));
	cr_assert_not_null(ureg_ctx_strdup(ctx, "loose memory"));
	/* destroy cannot fail: it must not need memory at all */
	for (long n = 1; n <= 4; n++) {
		cr_assert_eq(ureg_fault_inject(n), 0);
		ureg_ctx_destroy(ctx);
		long seen = ureg_fault_allocations();
		ureg_fault_inject(0);
		cr_assert_eq(seen, 0, "ctx_destroy allocated %ld times", seen);
		cr_assert_eq(atomic_load(&insts_destroyed), 6 * (int)n);
		if (n < 4) {
			ctx = new_ctx(flags);
			for (int i = 0; i < 5; i++)
				cr_assert_eq(create_in(ctx, "f00", &obj), 0);
			cr_assert_eq(get_in(ctx, "f01", &obj), 0);
			cr_assert_not_null(ureg_ctx_alloc(ctx, 3000));
		}
	}
}

Test(fault_ctx, destroying_a_shared_context_needs_no_memory_and_frees_everything)
{
	destroy_full_context_under_faults(UREG_CTX_SHARED);
}

Test(fault_ctx, destroying_a_dedicated_context_needs_no_memory_and_frees_everything)
{
	destroy_full_context_under_faults(UREG_CTX_DEDICATED);
}

Test(fault_ctx, context_allocations_fail_cleanly)
{
	ureg_ctx *ctx = new_ctx(UREG_CTX_SHARED);
	struct ureg_ctx_stats before;

	cr_assert_not_null(ureg_ctx_alloc(ctx, 64));
	ureg_ctx_stats(ctx, &before);
	cr_assert_eq(ureg_fault_inject(1), 0);
	errno = 0;
	cr_assert_null(ureg_ctx_alloc(ctx, 64));
	cr_assert_eq(errno, ENOMEM);
	ureg_fault_inject(0);
	assert_stats(ctx, &before, 1);
	ureg_ctx_destroy(ctx);
}

/* -------------------------------------------------------------- batches */

TestSuite(fault_batch, .init = setup_registry, .fini = teardown_registry);

Test(fault_batch, batch_new_and_put_fail_cleanly_and_leave_the_batch_as_it_was)
{
	ureg_batch *b = NULL;
	struct item *it = item_new(1);
	struct ureg_factory f = factory(UREG_SCOPE_CONTEXT);
	struct ureg_source src = { .provider = "p", .file = "f.yaml", .line = 1 };
	struct reg_snapshot s = snap();
	int fails;

	FAULT_WALK(fails, ureg_batch_new(reg, &b), {
		cr_assert_null(b);
	});
	cr_assert_eq(fails, 1);
	cr_assert_eq(ureg_batch_put(b, "first", item_new(2), NULL, NULL), 0);
	FAULT_WALK(fails, ureg_batch_put(b, "second", it, &f, &src), {
		cr_assert_eq(it->magic, LIVE);
		cr_assert_eq(atomic_load(&args_freed), 0, "N=%ld: the caller's arg was freed", n);
		/* the batch is as it was: "first" still in it, "second" not */
		cr_assert_eq(ureg_batch_put(b, "first", NULL, NULL, NULL), -EEXIST);
	});
	cr_assert_geq(fails, 5, "op, box, factory box, key, provider, file");
	assert_unchanged(&s, 0);
	cr_assert_eq(ureg_batch_commit(b, 0), 0);
	ureg_synchronize();
	cr_assert_eq(ureg_count(reg), s.count + 2);
	cr_assert_eq(lookup("second"), it);
	cr_assert_not_null(lookup("first"));
}

Test(fault_batch, batch_commit_fails_cleanly_and_the_batch_can_be_retried)
{
	ureg_batch *b;
	struct item *a = item_new(1), *r = item_new(2);
	struct ureg_factory f = factory(UREG_SCOPE_TRANSIENT);
	struct ureg_source src = { .provider = "reload", .file = "r.yaml", .line = 9 };
	struct reg_snapshot s = snap();
	int fails;

	cr_assert_eq(ureg_batch_new(reg, &b), 0);
	cr_assert_eq(ureg_batch_put(b, "added", a, &f, &src), 0);   /* new key */
	cr_assert_eq(ureg_batch_put(b, "k03", r, NULL, NULL), 0);   /* replaced */
	cr_assert_eq(ureg_batch_put(b, "k04", NULL, NULL, NULL), 0);/* removed */
	FAULT_WALK(fails, ureg_batch_commit(b, 0), {
		assert_unchanged(&s, n);
		cr_assert_null(lookup("added"), "N=%ld: part of a failed batch is visible", n);
		cr_assert_not_null(lookup("k04"));
		cr_assert_eq(a->magic, LIVE);
		cr_assert_eq(r->magic, LIVE);
	});
	cr_assert_gt(fails, BASE_KEYS, "every copied entry can fail");
	ureg_synchronize();
	cr_assert_eq(ureg_count(reg), s.count); /* +added -k04 */
	cr_assert_eq(lookup("added"), a);
	cr_assert_eq(lookup("k03"), r);
	cr_assert_null(lookup("k04"));
	cr_assert_eq(lookup("sourced"), s.sourced, "untouched entries carried over");
	ureg_read_lock();
	struct ureg_entry_info info;
	cr_assert_eq(ureg_entry_info(reg, "sourced", &info), 0);
	cr_assert_str_eq(info.provider, "builtin");
	cr_assert_eq(ureg_entry_info(reg, "added", &info), 0);
	cr_assert_str_eq(info.source_file, "r.yaml");
	ureg_read_unlock();
}

/* Ranking: ureg_batch_add builds a ranked set; each add and the commit
 * that publishes it fail cleanly at every allocation. */
Test(fault_batch, batch_add_and_its_commit_fail_cleanly_at_every_allocation)
{
	struct ureg_source src = { .provider = "ranked", .file = "rank.yaml", .line = 4 };
	struct reg_snapshot s = snap();
	ureg_batch *b;
	int fails;

	cr_assert_eq(ureg_batch_new(reg, &b), 0);
	for (int r = 0; r < 4; r++) {
		struct item *it = item_new(500 + r);
		struct ureg_factory f = factory(UREG_SCOPE_TRANSIENT);

		FAULT_WALK(fails, ureg_batch_add(b, "ranked", it, &f, r, &src), {
			cr_assert_eq(it->magic, LIVE, "N=%ld: the caller's item was destroyed", n);
			cr_assert_eq(atomic_load(&args_freed), s.args_freed,
				     "N=%ld: the caller's argument was freed", n);
		});
		cr_assert_gt(fails, 0);
	}
	FAULT_WALK(fails, ureg_batch_commit(b, 0), {
		assert_unchanged(&s, n);
		cr_assert_null(lookup("ranked"), "N=%ld", n);
	});
	cr_assert_gt(fails, BASE_KEYS);
	cr_assert_eq(((struct item *)lookup("ranked"))->id, 503);
	for (int want = 502; want >= 500; want--) {
		cr_assert_eq(ureg_unregister(reg, "ranked", UREG_SINGLETON), 0);
		cr_assert_eq(((struct item *)lookup("ranked"))->id, want);
	}
}

Test(fault_batch, an_aborted_batch_after_failures_frees_what_it_owned)
{
	ureg_batch *b;
	int fails;

	cr_assert_eq(ureg_batch_new(reg, &b), 0);
	cr_assert_eq(ureg_batch_put(b, "x1", item_new(1), NULL, NULL), 0);
	struct ureg_factory f = factory(UREG_SCOPE_CONTEXT);
	cr_assert_eq(ureg_batch_put(b, "x2", NULL, &f, NULL), 0);
	/* fail the commit at a few points, then give up on it */
	for (long n = 1; n <= 3; n++) {
		cr_assert_eq(ureg_fault_inject(n), 0);
		int rc = ureg_batch_commit(b, 0);
		ureg_fault_inject(0);
		cr_assert_eq(rc, -ENOMEM);
	}
	int before = atomic_load(&items_destroyed);
	ureg_batch_abort(b);
	cr_assert_eq(atomic_load(&items_destroyed), before + 1);
	cr_assert_eq(atomic_load(&args_freed), 1);
	cr_assert_null(lookup("x1"));
	(void)fails;
}

/* --------------------------------------------- colliding record names */

/*
 * A context finds its per-entry record (ureg_ctx_entries) by the
 * registry's name and the key, through a map keyed by a 64-bit hash of
 * both once it holds more than a few records.  ureg_fault_names_collide()
 * makes every such hash equal, which no real key set can be made to do:
 * entries must still keep one record each, across reloads, in registries
 * that share key names, and with allocations failing on the way.
 */
enum { NAME_KEYS = 12, NAME_RELOADS = 20 }; /* 24 records: past the list's 8 */

struct name_tally {
	int records;
	int seen[2][NAME_KEYS];
	size_t instances[2][NAME_KEYS];
};

static int tally_names(const struct ureg_ctx_entry *e, void *arg)
{
	struct name_tally *t = arg;
	int r = strcmp(e->registry, "names-b") == 0, k = -1;

	t->records++;
	cr_assert(r || strcmp(e->registry, "names-a") == 0, "record of %s", e->registry);
	cr_assert_eq(sscanf(e->key, "agent.%d", &k), 1, "key %s", e->key);
	cr_assert(k >= 0 && k < NAME_KEYS);
	t->seen[r][k]++;
	t->instances[r][k] = e->instances;
	return 0;
}

static void assert_one_record_each(ureg_ctx *ctx, size_t instances, long n)
{
	struct name_tally t = { 0 };

	cr_assert_eq(ureg_ctx_entries(ctx, tally_names, &t), 0);
	cr_assert_eq(t.records, 2 * NAME_KEYS, "N=%ld: %d records for %d entries", n,
		     t.records, 2 * NAME_KEYS);
	for (int r = 0; r < 2; r++)
		for (int k = 0; k < NAME_KEYS; k++) {
			cr_assert_eq(t.seen[r][k], 1, "N=%ld: %s agent.%d: %d records", n,
				     r ? "names-b" : "names-a", k, t.seen[r][k]);
			cr_assert_eq(t.instances[r][k], instances, "N=%ld: %zu instances",
				     n, t.instances[r][k]);
		}
}

static int get_named(ureg_registry *r, const char *key, ureg_ctx *ctx, void **out)
{
	int rc;

	ureg_read_lock();
	rc = ureg_get(r, key, ctx, out);
	ureg_read_unlock();
	return rc;
}

Test(fault_names, colliding_names_keep_one_record_per_entry_across_reloads_and_failures)
{
	ureg_registry *regs[2] = { NULL, NULL };
	ureg_ctx *ctx;
	char key[16];
	void *obj, *again;
	int fails;

	cr_assert(ureg_fault_inject(0) == 0);
	ureg_fault_names_collide(true);
	cr_assert(ureg_fault_names_colliding());
	cr_assert_eq(ureg_registry_new(&fault_type, "names-a", &regs[0]), 0);
	cr_assert_eq(ureg_registry_new(&fault_type, "names-b", &regs[1]), 0);
	ctx = new_ctx(UREG_CTX_SHARED);
	for (int round = 0; round < NAME_RELOADS; round++)
		for (int r = 0; r < 2; r++)
			for (int k = 0; k < NAME_KEYS; k++) {
				struct ureg_factory f = factory(UREG_SCOPE_CONTEXT);

				snprintf(key, sizeof(key), "agent.%d", k);
				cr_assert_eq(round ? ureg_replace_factory(regs[r], key, &f)
						   : ureg_register_factory(regs[r], key, &f), 0);
				cr_assert_eq(get_named(regs[r], key, ctx, &obj), 0);
				cr_assert_eq(get_named(regs[r], key, ctx, &again), 0);
				cr_assert_eq(again, obj, "one instance per registration");
			}
	/* each get of a new registration made an instance; all are kept */
	assert_one_record_each(ctx, NAME_RELOADS, 0);
	cr_assert_eq(atomic_load(&insts_made), 2 * NAME_KEYS * NAME_RELOADS);

	/* one more reload of a key whose name collides with every other:
	 * a get that fails at any allocation leaves the records as they were */
	struct ureg_factory f = factory(UREG_SCOPE_CONTEXT);
	cr_assert_eq(ureg_replace_factory(regs[1], "agent.7", &f), 0);
	FAULT_WALK(fails, get_named(regs[1], "agent.7", ctx, &obj), {
		assert_one_record_each(ctx, NAME_RELOADS, n);
	});
	cr_assert_gt(fails, 0);
	cr_assert_eq(get_named(regs[1], "agent.7", ctx, &again), 0);
	cr_assert_eq(again, obj);

	struct name_tally t = { 0 };
	cr_assert_eq(ureg_ctx_entries(ctx, tally_names, &t), 0);
	cr_assert_eq(t.records, 2 * NAME_KEYS);
	cr_assert_eq(t.instances[1][7], NAME_RELOADS + 1);
	cr_assert_eq(t.instances[0][7], NAME_RELOADS);
	ureg_ctx_destroy(ctx);
	cr_assert_eq(atomic_load(&insts_destroyed), atomic_load(&insts_made));
	ureg_fault_names_collide(false);
	ureg_registry_destroy(regs[0]);
	ureg_registry_destroy(regs[1]);
}
