/* SPDX-License-Identifier: MIT */
/*
 * Key handles (ureg_key): a key validated and hashed once, optionally
 * remembering the entry it found (a cached handle).  The spec: a lookup
 * through a handle answers exactly what the same lookup by string answers
 * in the same read section (G.4 in ureg.h), whatever happened to the
 * registry since the handle last looked: replace, unregister, batch
 * commit, resize, registry destroyed and another one made in its place.
 */
#include <criterion/criterion.h>
#include <pthread.h>

#include <ureg/typed.h>

#include "core_test.h"

static ureg_registry *new_reg(const char *name)
{
	ureg_registry *r = NULL;

	cr_assert_eq(ureg_registry_new(&item_type, name, &r), 0);
	return r;
}

/* lookup by handle and by string in one section: they must agree */
static struct item *lookup_both(ureg_registry *r, ureg_key *k, int *rc)
{
	void *a = NULL, *b = NULL;
	int ra, rb;

	ureg_read_lock();
	ra = ureg_lookup_key(r, k, &a);
	rb = ureg_lookup(r, ureg_key_str(k), &b);
	ureg_read_unlock();
	cr_assert_eq(ra, rb, "handle %d, string %d", ra, rb);
	cr_assert_eq(a, b);
	*rc = ra;
	return a;
}

Test(keys, a_handle_finds_what_the_string_finds)
{
	ureg_registry *r = new_reg("k");
	struct item *it = item_new(1);
	ureg_key k, kc;
	int rc;

	cr_assert_eq(ureg_key_init(&k, "alpha"), 0);
	cr_assert_eq(ureg_key_init_cached(&kc, "alpha"), 0);
	cr_assert_str_eq(ureg_key_str(&k), "alpha");
	cr_assert_null(lookup_both(r, &k, &rc));
	cr_assert_eq(rc, -ENOENT);
	cr_assert_null(lookup_both(r, &kc, &rc));
	cr_assert_eq(ureg_register(r, "alpha", it), 0);
	cr_assert_eq(lookup_both(r, &k, &rc), it);
	cr_assert_eq(lookup_both(r, &kc, &rc), it);
	cr_assert_eq(lookup_both(r, &kc, &rc), it); /* from the cache */
	cr_assert_eq(ureg_contains_key(r, &k), 1);
	ureg_registry_destroy(r);
}

Test(keys, static_handles_are_prepared_on_first_use)
{
	static ureg_key k = UREG_KEY_INIT("svc.search");
	static ureg_key kc = UREG_KEY_CACHED_INIT("svc.search");
	ureg_registry *r = new_reg("k");
	struct item *it = item_new(1);
	int rc;

	cr_assert_eq(ureg_register(r, "svc.search", it), 0);
	cr_assert_eq(lookup_both(r, &k, &rc), it);
	cr_assert_eq(lookup_both(r, &kc, &rc), it);
	cr_assert_eq(k.len, strlen("svc.search"));
	cr_assert_eq(lookup_both(r, &kc, &rc), it);
	ureg_registry_destroy(r);
}

Test(keys, an_invalid_key_makes_a_handle_every_call_refuses)
{
	static ureg_key bad_static = UREG_KEY_CACHED_INIT("has space");
	ureg_registry *r = new_reg("k");
	ureg_key k;
	void *out = NULL;
	ureg_ref *ref = NULL;

	cr_assert_eq(ureg_key_init(&k, "has space"), -EINVAL);
	cr_assert_eq(ureg_key_init(&k, ""), -EINVAL);
	cr_assert_eq(ureg_key_init(&k, NULL), -EINVAL);
	cr_assert_eq(ureg_key_init(NULL, "x"), -EINVAL);
	ureg_read_lock();
	cr_assert_eq(ureg_lookup_key(r, &k, &out), -EINVAL);
	cr_assert_eq(ureg_lookup_key(r, &bad_static, &out), -EINVAL);
	cr_assert_eq(ureg_lookup_key(r, &bad_static, &out), -EINVAL);
	cr_assert_eq(ureg_get_key(r, &k, NULL, &out), -EINVAL);
	cr_assert_eq(ureg_lookup_key(NULL, &k, &out), -EINVAL);
	cr_assert_eq(ureg_lookup_key(r, NULL, &out), -EINVAL);
	ureg_read_unlock();
	cr_assert_null(out);
	cr_assert_eq(ureg_contains_key(r, &k), -EINVAL);
	cr_assert_eq(ureg_acquire_key(r, &bad_static, &ref), -EINVAL);
	cr_assert_null(ref);
	ureg_registry_destroy(r);
}

Test(keys, a_handle_lookup_outside_a_read_section_is_refused)
{
	ureg_registry *r = new_reg("k");
	ureg_key k;
	void *out = NULL;

	cr_assert_eq(ureg_key_init_cached(&k, "a"), 0);
	cr_assert_eq(ureg_register(r, "a", item_new(1)), 0);
	cr_assert_eq(ureg_lookup_key(r, &k, &out), -EPERM);
	cr_assert_eq(ureg_get_key(r, &k, NULL, &out), -EPERM);
	cr_assert_null(out);
	ureg_registry_destroy(r);
}

Test(keys, a_cached_handle_sees_replace_and_unregister_at_once)
{
	ureg_registry *r = new_reg("k");
	struct item *a = item_new(1), *b = item_new(2), *c = item_new(3);
	ureg_key k;
	int rc;

	cr_assert_eq(ureg_key_init_cached(&k, "key"), 0);
	cr_assert_eq(ureg_register(r, "key", a), 0);
	cr_assert_eq(lookup_both(r, &k, &rc), a);
	cr_assert_eq(lookup_both(r, &k, &rc), a);
	cr_assert_eq(ureg_replace(r, "key", b), 0);
	cr_assert_eq(lookup_both(r, &k, &rc), b);
	cr_assert_eq(ureg_unregister(r, "key", UREG_SINGLETON), 0);
	cr_assert_null(lookup_both(r, &k, &rc));
	cr_assert_eq(rc, -ENOENT);
	cr_assert_eq(ureg_register(r, "key", c), 0);
	cr_assert_eq(lookup_both(r, &k, &rc), c);
	ureg_registry_destroy(r);
	cr_assert_eq(atomic_load(&items_destroyed), 3);
}

Test(keys, a_cached_handle_sees_changes_to_other_keys_of_its_stripe_and_resizes)
{
	ureg_registry *r = new_reg("k");
	struct item *mine = item_new(0);
	ureg_key k;
	char name[32];
	int rc;

	cr_assert_eq(ureg_key_init_cached(&k, "mine"), 0);
	cr_assert_eq(ureg_register(r, "mine", mine), 0);
	cr_assert_eq(lookup_both(r, &k, &rc), mine);
	/* 20,000 keys: the table resizes several times, every stripe moves */
	for (int i = 0; i < 20000; i++) {
		snprintf(name, sizeof(name), "other.%d", i);
		cr_assert_eq(ureg_register(r, name, item_new(i + 1)), 0);
		if (i % 997 == 0)
			cr_assert_eq(lookup_both(r, &k, &rc), mine);
	}
	for (int i = 0; i < 20000; i += 3) {
		snprintf(name, sizeof(name), "other.%d", i);
		cr_assert_eq(ureg_unregister(r, name, UREG_BOTH), 0);
	}
	cr_assert_eq(lookup_both(r, &k, &rc), mine);
	ureg_registry_destroy(r);
}

Test(keys, a_cached_handle_sees_a_batch_whole_within_one_section)
{
	ureg_registry *r = new_reg("k");
	struct item *a1 = item_new(1), *b1 = item_new(2);
	struct item *a2 = item_new(3), *b2 = item_new(4);
	ureg_key ka, kb;
	ureg_batch *bt = NULL;
	void *x = NULL, *y = NULL;
	int rc;

	cr_assert_eq(ureg_key_init_cached(&ka, "a"), 0);
	cr_assert_eq(ureg_key_init_cached(&kb, "b"), 0);
	cr_assert_eq(ureg_register(r, "a", a1), 0);
	cr_assert_eq(ureg_register(r, "b", b1), 0);
	cr_assert_eq(lookup_both(r, &ka, &rc), a1);
	cr_assert_eq(lookup_both(r, &kb, &rc), b1);
	cr_assert_eq(ureg_batch_new(r, &bt), 0);
	cr_assert_eq(ureg_batch_put(bt, "a", a2, NULL, NULL), 0);
	cr_assert_eq(ureg_batch_put(bt, "b", b2, NULL, NULL), 0);
	cr_assert_eq(ureg_batch_commit(bt, 0), 0);
	ureg_read_lock();
	cr_assert_eq(ureg_lookup_key(r, &ka, &x), 0);
	cr_assert_eq(ureg_lookup_key(r, &kb, &y), 0);
	ureg_read_unlock();
	cr_assert_eq(x, a2);
	cr_assert_eq(y, b2);
	ureg_registry_destroy(r);
}

/* A reader section opened before a batch is committed keeps reading the
 * old generation through a cached handle, even when another thread has
 * refilled that handle from the new generation meanwhile. */
struct batch_reader {
	ureg_registry *r;
	ureg_key *ka, *kb;
	pthread_barrier_t *step;
	void *a, *b;
	int rc;
};

static void *old_section_reader(void *arg)
{
	struct batch_reader *br = arg;
	void *x = NULL;

	ureg_read_lock();
	br->rc = ureg_lookup_key(br->r, br->ka, &br->a); /* pins the old table */
	pthread_barrier_wait(br->step); /* 1: main commits and refills kb */
	pthread_barrier_wait(br->step); /* 2 */
	br->rc |= ureg_lookup_key(br->r, br->kb, &br->b);
	br->rc |= ureg_lookup(br->r, "b", &x);
	if (x != br->b)
		br->rc = -1;
	ureg_read_unlock();
	return NULL;
}

static void *committer(void *arg)
{
	struct batch_reader *br = arg;
	ureg_batch *bt = NULL;

	if (ureg_batch_new(br->r, &bt) == 0 &&
	    ureg_batch_put(bt, "b", item_new(20), NULL, NULL) == 0)
		br->rc = ureg_batch_commit(bt, 0); /* waits for the old reader */
	return NULL;
}

Test(keys, a_section_that_started_before_a_batch_never_sees_it_through_a_handle)
{
	ureg_registry *r = new_reg("k");
	struct item *b1 = item_new(2);
	ureg_key ka, kb;
	pthread_barrier_t step;
	pthread_t rd, wr;
	struct batch_reader br = { .r = r, .ka = &ka, .kb = &kb, .step = &step };
	struct batch_reader bw = { .r = r };
	void *y = NULL;
	int rc;

	cr_assert_eq(ureg_key_init_cached(&ka, "a"), 0);
	cr_assert_eq(ureg_key_init_cached(&kb, "b"), 0);
	cr_assert_eq(ureg_register(r, "a", item_new(1)), 0);
	cr_assert_eq(ureg_register(r, "b", b1), 0);
	pthread_barrier_init(&step, NULL, 2);
	pthread_create(&rd, NULL, old_section_reader, &br);
	pthread_barrier_wait(&step);
	/* commit on a thread: it blocks in its grace period until the
	 * reader's section ends; wait until the new table is published */
	uint64_t gen = ureg_generation(r);
	pthread_create(&wr, NULL, committer, &bw);
	while (ureg_generation(r) == gen)
		sched_yield();
	/* refill kb from the new generation */
	ureg_read_lock();
	cr_assert_eq(ureg_lookup_key(r, &kb, &y), 0);
	ureg_read_unlock();
	cr_assert_neq(y, b1);
	pthread_barrier_wait(&step);
	pthread_join(rd, NULL);
	pthread_join(wr, NULL);
	cr_assert_eq(br.rc, 0);
	cr_assert_eq(bw.rc, 0);
	cr_assert_eq(br.b, b1, "old section must see the old generation");
	cr_assert_eq(lookup_both(r, &kb, &rc), y);
	pthread_barrier_destroy(&step);
	ureg_registry_destroy(r);
}

Test(keys, one_cached_handle_serves_several_registries)
{
	ureg_registry *r1 = new_reg("one"), *r2 = new_reg("two");
	struct item *a = item_new(1), *b = item_new(2);
	ureg_key k;
	int rc;

	cr_assert_eq(ureg_key_init_cached(&k, "same"), 0);
	cr_assert_eq(ureg_register(r1, "same", a), 0);
	cr_assert_eq(ureg_register(r2, "same", b), 0);
	for (int i = 0; i < 4; i++) {
		cr_assert_eq(lookup_both(r1, &k, &rc), a);
		cr_assert_eq(lookup_both(r2, &k, &rc), b);
	}
	ureg_registry_destroy(r1);
	/* a registry made after the destroy, possibly at the same address */
	r1 = new_reg("one");
	cr_assert_null(lookup_both(r1, &k, &rc));
	cr_assert_eq(rc, -ENOENT);
	ureg_registry_destroy(r1);
	ureg_registry_destroy(r2);
}

Test(keys, get_acquire_and_create_instance_take_handles)
{
	ureg_registry *r = new_reg("k");
	struct fac f = { .id = 7 };
	struct ureg_factory uf = fac_factory(&f, UREG_SCOPE_CONTEXT);
	ureg_ctx *ctx = NULL;
	ureg_key kf, ks;
	struct item *it = item_new(1);
	void *i1 = NULL, *i2 = NULL, *i3 = NULL;
	ureg_ref *ref = NULL;

	cr_assert_eq(ureg_ctx_new(NULL, UREG_CTX_SHARED, &ctx), 0);
	cr_assert_eq(ureg_key_init_cached(&kf, "fac"), 0);
	cr_assert_eq(ureg_key_init(&ks, "single"), 0);
	cr_assert_eq(ureg_register_factory(r, "fac", &uf), 0);
	cr_assert_eq(ureg_register(r, "single", it), 0);
	ureg_read_lock();
	cr_assert_eq(ureg_get_key(r, &kf, ctx, &i1), 0);
	cr_assert_eq(ureg_get_key(r, &kf, ctx, &i2), 0);
	cr_assert_eq(i1, i2, "CONTEXT scope: one instance per context");
	cr_assert_eq(ureg_get_key(r, &kf, NULL, &i3), -ENOENT);
	cr_assert_eq(ureg_get_key(r, &ks, NULL, &i3), 0);
	cr_assert_eq(i3, it);
	ureg_read_unlock();
	cr_assert_eq(ureg_create_instance_key(r, &kf, ctx, &i3), 0);
	cr_assert_neq(i3, i1);
	cr_assert_eq(ureg_create_instance_key(r, &ks, ctx, &i3), -ENOENT);
	cr_assert_eq(ureg_acquire_key(r, &ks, &ref), 0);
	cr_assert_eq(ureg_unregister(r, "single", UREG_SINGLETON), 0);
	cr_assert_eq(ureg_ref_item(ref), it, "a counted reference outlives unregister");
	ureg_ref_release(ref);
	cr_assert_eq(ureg_acquire_key(r, &ks, &ref), -ENOENT);
	cr_assert_eq(ureg_acquire_key(r, &kf, &ref), -ENOENT);
	ureg_ctx_destroy(ctx);
	ureg_registry_destroy(r);
}

/*
 * The entry keeps its key inline after a packed length (one cache line for
 * keys up to 15 bytes, more for longer ones): every length from 1 to
 * UREG_KEY_MAX is found by string, plain handle and cached handle, and a
 * key one byte longer or shorter is not.
 */
Test(keys, keys_of_every_length_are_found_by_string_and_by_handle)
{
	static char keys[UREG_KEY_MAX][UREG_KEY_MAX + 1];
	static ureg_key plain[UREG_KEY_MAX], cached[UREG_KEY_MAX];
	ureg_registry *r = new_reg("k");
	struct item *items[UREG_KEY_MAX];
	int rc;

	for (int n = 1; n <= UREG_KEY_MAX; n++) {
		for (int i = 0; i < n; i++)
			keys[n - 1][i] = (char)('a' + (i * 7 + n) % 26);
		items[n - 1] = item_new(n);
		cr_assert_eq(ureg_register(r, keys[n - 1], items[n - 1]), 0, "length %d", n);
		cr_assert_eq(ureg_key_init(&plain[n - 1], keys[n - 1]), 0);
		cr_assert_eq(ureg_key_init_cached(&cached[n - 1], keys[n - 1]), 0);
	}
	for (int pass = 0; pass < 2; pass++) /* the second: cached hits */
		for (int n = 1; n <= UREG_KEY_MAX; n++) {
			cr_assert_eq(lookup_both(r, &plain[n - 1], &rc), items[n - 1], "length %d", n);
			cr_assert_eq(lookup_both(r, &cached[n - 1], &rc), items[n - 1], "length %d", n);
		}
	/* a prefix of a registered key is another key */
	ureg_read_lock();
	for (int n = 2; n <= UREG_KEY_MAX; n++) {
		char prefix[UREG_KEY_MAX + 1];
		void *it = NULL;

		memcpy(prefix, keys[n - 1], (size_t)n - 1);
		prefix[n - 1] = '\0';
		rc = ureg_lookup(r, prefix, &it);
		cr_assert(rc == -ENOENT || (rc == 0 && it == items[n - 2]),
			  "length %d: prefix gave %d", n, rc);
	}
	ureg_read_unlock();
	ureg_registry_destroy(r);
}

/*
 * ureg_get of a CONTEXT-scope factory probes the context's cache with the
 * serial the entry carries (the factory box is not read on a hit); the
 * serial follows the factory through replace and through a batch, and a
 * TRANSIENT factory under the same key makes a new instance every time.
 */
Test(keys, get_follows_the_factory_through_replace_batch_and_scope_change)
{
	ureg_registry *r = new_reg("k");
	struct fac f1 = { .id = 1 }, f2 = { .id = 2 }, f3 = { .id = 3 };
	struct ureg_factory u1 = fac_factory(&f1, UREG_SCOPE_CONTEXT);
	struct ureg_factory u2 = fac_factory(&f2, UREG_SCOPE_CONTEXT);
	struct ureg_factory u3 = fac_factory(&f3, UREG_SCOPE_TRANSIENT);
	ureg_ctx *ctx = NULL;
	ureg_key kc;
	void *a = NULL, *b = NULL;
	ureg_batch *bt = NULL;

	cr_assert_eq(ureg_ctx_new(NULL, UREG_CTX_SHARED, &ctx), 0);
	cr_assert_eq(ureg_key_init_cached(&kc, "a-factory-key-longer-than-one-line"), 0);
	cr_assert_eq(ureg_register_factory(r, ureg_key_str(&kc), &u1), 0);
	ureg_read_lock();
	cr_assert_eq(ureg_get_key(r, &kc, ctx, &a), 0);
	cr_assert_eq(ureg_get(r, ureg_key_str(&kc), ctx, &b), 0);
	cr_assert_eq(a, b);
	cr_assert_eq(((struct inst *)a)->factory_id, 1);
	ureg_read_unlock();
	cr_assert_eq(ureg_replace_factory(r, ureg_key_str(&kc), &u2), 0);
	ureg_read_lock();
	cr_assert_eq(ureg_get_key(r, &kc, ctx, &b), 0);
	cr_assert_eq(((struct inst *)b)->factory_id, 2, "the replacing factory's instance");
	cr_assert_neq(a, b);
	ureg_read_unlock();
	/* a batch that leaves the key alone keeps its factory and instance */
	cr_assert_eq(ureg_batch_new(r, &bt), 0);
	cr_assert_eq(ureg_batch_put(bt, "other", item_new(9), NULL, NULL), 0);
	cr_assert_eq(ureg_batch_commit(bt, 0), 0);
	ureg_read_lock();
	cr_assert_eq(ureg_get_key(r, &kc, ctx, &a), 0);
	cr_assert_eq(a, b, "same factory, same context: same instance");
	ureg_read_unlock();
	cr_assert_eq(ureg_replace_factory(r, ureg_key_str(&kc), &u3), 0);
	ureg_read_lock();
	cr_assert_eq(ureg_get_key(r, &kc, ctx, &a), 0);
	cr_assert_eq(ureg_get_key(r, &kc, ctx, &b), 0);
	cr_assert_neq(a, b, "TRANSIENT: a new instance per call");
	cr_assert_eq(((struct inst *)a)->factory_id, 3);
	ureg_read_unlock();
	ureg_instance_release(ctx, a);
	ureg_instance_release(ctx, b);
	ureg_ctx_destroy(ctx);
	ureg_registry_destroy(r);
}

/*
 * Many threads share cached handles while a writer replaces items.  A
 * reader that saw the writer's announcement "version v is published"
 * before opening its section must never get an item older than v, and
 * never a destroyed one (the destructor poisons the magic).
 */
#define SHARED_KEYS 8
#define READERS 4
static ureg_registry *shared_reg;
static ureg_key shared_keys[SHARED_KEYS];
static atomic_int published[SHARED_KEYS]; /* version announced per key */
static atomic_bool stop_readers;
static atomic_int stale_seen, dead_seen;

static void *handle_reader(void *arg)
{
	unsigned n = (unsigned)(uintptr_t)arg;

	while (!atomic_load(&stop_readers)) {
		unsigned i = n++ % SHARED_KEYS;
		int floor = atomic_load_explicit(&published[i], memory_order_acquire);
		void *p = NULL;

		ureg_read_lock();
		if (ureg_lookup_key(shared_reg, &shared_keys[i], &p) == 0) {
			struct item *it = p;
			if (it->magic != ITEM_MAGIC)
				atomic_fetch_add(&dead_seen, 1);
			else if (it->id < floor)
				atomic_fetch_add(&stale_seen, 1);
		} else {
			atomic_fetch_add(&stale_seen, 1);
		}
		ureg_read_unlock();
	}
	return NULL;
}

Test(keys, shared_cached_handles_never_return_a_stale_or_dead_item, .timeout = 60)
{
	pthread_t th[READERS];
	char name[16];

	shared_reg = new_reg("shared");
	for (int i = 0; i < SHARED_KEYS; i++) {
		snprintf(name, sizeof(name), "key.%d", i);
		cr_assert_eq(ureg_register(shared_reg, name, item_new(0)), 0);
		cr_assert_eq(ureg_key_init_cached(&shared_keys[i], strdup(name)), 0);
	}
	for (int i = 0; i < READERS; i++)
		pthread_create(&th[i], NULL, handle_reader, (void *)(uintptr_t)i);
	for (int v = 1; v <= 3000; v++) {
		int i = v % SHARED_KEYS;
		snprintf(name, sizeof(name), "key.%d", i);
		cr_assert_eq(ureg_replace(shared_reg, name, item_new(v)), 0);
		atomic_store_explicit(&published[i], v, memory_order_release);
		if (v % 500 == 0) { /* and now and then a whole batch */
			ureg_batch *bt = NULL;
			cr_assert_eq(ureg_batch_new(shared_reg, &bt), 0);
			for (int j = 0; j < SHARED_KEYS; j++) {
				snprintf(name, sizeof(name), "key.%d", j);
				cr_assert_eq(ureg_batch_put(bt, name, item_new(v), NULL, NULL), 0);
			}
			cr_assert_eq(ureg_batch_commit(bt, 0), 0);
			for (int j = 0; j < SHARED_KEYS; j++)
				atomic_store_explicit(&published[j], v, memory_order_release);
		}
	}
	atomic_store(&stop_readers, true);
	for (int i = 0; i < READERS; i++)
		pthread_join(th[i], NULL);
	cr_assert_eq(atomic_load(&stale_seen), 0);
	cr_assert_eq(atomic_load(&dead_seen), 0);
	ureg_registry_destroy(shared_reg);
}
