/* SPDX-License-Identifier: MIT */
/*
 * Ranking (ureg.h, R.1-R.4): several providers per key, the highest-ranked
 * one of each kind is the one lookups see, unregistering it falls back to
 * the next in one swap.  The churn test checks R.3 with threads and
 * atomics, no sleeps.
 */
#include <criterion/criterion.h>
#include <pthread.h>

#include <ureg/typed.h>

#include "core_test.h"

static ureg_registry *new_reg(void)
{
	ureg_registry *reg = NULL;

	cr_assert_eq(ureg_registry_new(&item_type, "ranked", &reg), 0);
	return reg;
}

/* The id of the singleton a lookup sees under @key, -1 on a miss. */
static int seen(ureg_registry *reg, const char *key)
{
	void *p = NULL;
	int id = -1;

	ureg_read_lock();
	if (ureg_lookup(reg, key, &p) == 0)
		id = ((struct item *)p)->id;
	ureg_read_unlock();
	return id;
}

/* The factory id of a fresh instance made under @key, -1 on failure. */
static int made_by(ureg_registry *reg, const char *key, ureg_ctx *ctx)
{
	void *p = NULL;

	if (ureg_create_instance(reg, key, ctx, &p))
		return -1;
	return ((struct inst *)p)->factory_id;
}

Test(rank, the_highest_rank_wins_whatever_the_registration_order)
{
	ureg_registry *reg = new_reg();

	cr_assert_eq(ureg_register_ranked(reg, "codec", item_new(10), 10), 0);
	cr_assert_eq(ureg_register_ranked(reg, "codec", item_new(-5), -5), 0);
	cr_assert_eq(ureg_register_ranked(reg, "codec", item_new(30), 30), 0);
	cr_assert_eq(ureg_register_ranked(reg, "codec", item_new(20), 20), 0);
	cr_assert_eq(seen(reg, "codec"), 30);
	cr_assert_eq(ureg_count(reg), 1, "one key, however many providers");
	ureg_registry_destroy(reg);
	cr_assert_eq(atomic_load(&items_destroyed), 4);
	cr_assert_eq(atomic_load(&items_bad_destroy), 0);
}

Test(rank, unregistering_the_top_falls_back_to_the_next_and_destroys_only_it)
{
	ureg_registry *reg = new_reg();

	cr_assert_eq(ureg_register_ranked(reg, "codec", item_new(1), 1), 0);
	cr_assert_eq(ureg_register_ranked(reg, "codec", item_new(2), 2), 0);
	cr_assert_eq(ureg_register_ranked(reg, "codec", item_new(3), 3), 0);
	cr_assert_eq(ureg_unregister(reg, "codec", UREG_SINGLETON), 0);
	cr_assert_eq(seen(reg, "codec"), 2);
	cr_assert_eq(wait_count(&items_destroyed, 1), 1);
	cr_assert_eq(ureg_unregister(reg, "codec", UREG_SINGLETON), 0);
	cr_assert_eq(seen(reg, "codec"), 1);
	cr_assert_eq(ureg_unregister(reg, "codec", UREG_SINGLETON), 0);
	cr_assert_eq(seen(reg, "codec"), -1);
	cr_assert_eq(ureg_contains(reg, "codec"), 0);
	cr_assert_eq(ureg_count(reg), 0);
	cr_assert_eq(ureg_unregister(reg, "codec", UREG_SINGLETON), -ENOENT);
	cr_assert_eq(wait_count(&items_destroyed, 3), 3);
	ureg_registry_destroy(reg);
	cr_assert_eq(atomic_load(&items_bad_destroy), 0);
}

Test(rank, an_equal_rank_of_the_same_kind_is_refused_and_changes_nothing)
{
	ureg_registry *reg = new_reg();
	struct item *dup = item_new(99);
	struct fac f1 = { .id = 1 }, f2 = { .id = 2 };
	struct ureg_factory uf1 = fac_factory(&f1, UREG_SCOPE_TRANSIENT);
	struct ureg_factory uf2 = fac_factory(&f2, UREG_SCOPE_TRANSIENT);
	uint64_t gen;

	cr_assert_eq(ureg_register_ranked(reg, "codec", item_new(7), 7), 0);
	gen = ureg_generation(reg);
	cr_assert_eq(ureg_register_ranked(reg, "codec", dup, 7), -EEXIST);
	cr_assert(strstr(ureg_last_error(), "rank 7"), "%s", ureg_last_error());
	cr_assert_eq(ureg_generation(reg), gen, "a refused call published something");
	cr_assert_eq(seen(reg, "codec"), 7);
	item_free_unowned(dup); /* still ours */
	/* kinds are ranked apart: a factory may share the singleton's rank */
	cr_assert_eq(ureg_register_factory_ranked(reg, "codec", &uf1, 7), 0);
	cr_assert_eq(ureg_register_factory_ranked(reg, "codec", &uf2, 7), -EEXIST);
	ureg_registry_destroy(reg);
}

Test(rank, plain_register_is_rank_zero_below_a_higher_rank_and_refused_at_zero)
{
	ureg_registry *reg = new_reg();
	struct item *dup = item_new(98);
	struct ureg_entry_info info;

	cr_assert_eq(ureg_register_ranked(reg, "codec", item_new(5), 5), 0);
	cr_assert_eq(ureg_register(reg, "codec", item_new(0)), 0);
	cr_assert_eq(seen(reg, "codec"), 5);
	cr_assert_eq(ureg_register(reg, "codec", dup), -EEXIST);
	item_free_unowned(dup);
	ureg_read_lock();
	cr_assert_eq(ureg_entry_info(reg, "codec", &info), 0);
	ureg_read_unlock();
	cr_assert_eq(info.rank, 5);
	cr_assert_eq(info.providers, 2);
	cr_assert(info.has_singleton);
	cr_assert_not(info.has_factory);
	ureg_registry_destroy(reg);
}

Test(rank, factories_rank_among_factories_and_get_still_prefers_a_singleton)
{
	ureg_registry *reg = new_reg();
	ureg_ctx *ctx = NULL;
	struct fac lo = { .id = 1 }, hi = { .id = 2 };
	struct ureg_factory ulo = fac_factory(&lo, UREG_SCOPE_TRANSIENT);
	struct ureg_factory uhi = fac_factory(&hi, UREG_SCOPE_TRANSIENT);
	void *p = NULL;

	cr_assert_eq(ureg_ctx_new("u", UREG_CTX_SHARED, &ctx), 0);
	cr_assert_eq(ureg_register_factory_ranked(reg, "agent", &ulo, 1), 0);
	cr_assert_eq(ureg_register_factory_ranked(reg, "agent", &uhi, 2), 0);
	cr_assert_eq(made_by(reg, "agent", ctx), 2);
	cr_assert_eq(ureg_get(reg, "agent", ctx, &p), 0);
	cr_assert_eq(((struct inst *)p)->factory_id, 2);
	/* a low-ranked singleton still comes first in get (R.1) */
	cr_assert_eq(ureg_register_ranked(reg, "agent", item_new(1), -100), 0);
	ureg_read_lock();
	cr_assert_eq(ureg_get(reg, "agent", ctx, &p), 0);
	cr_assert_eq(((struct item *)p)->id, 1);
	ureg_read_unlock();
	cr_assert_eq(ureg_unregister(reg, "agent", UREG_FACTORY), 0);
	cr_assert_eq(made_by(reg, "agent", ctx), 1);
	cr_assert_eq(ureg_unregister(reg, "agent", UREG_BOTH), 0);
	cr_assert_eq(ureg_contains(reg, "agent"), 0);
	ureg_ctx_destroy(ctx);
	ureg_registry_destroy(reg);
}

Test(rank, unregister_ranked_removes_only_the_provider_at_that_rank)
{
	ureg_registry *reg = new_reg();
	struct fac f = { .id = 3 };
	struct ureg_factory uf = fac_factory(&f, UREG_SCOPE_TRANSIENT);
	ureg_ctx *ctx = NULL;

	cr_assert_eq(ureg_ctx_new("u", UREG_CTX_SHARED, &ctx), 0);
	cr_assert_eq(ureg_register_ranked(reg, "codec", item_new(1), 1), 0);
	cr_assert_eq(ureg_register_ranked(reg, "codec", item_new(2), 2), 0);
	cr_assert_eq(ureg_register_ranked(reg, "codec", item_new(3), 3), 0);
	cr_assert_eq(ureg_register_factory_ranked(reg, "codec", &uf, 2), 0);
	/* a lower rank goes without anyone noticing */
	cr_assert_eq(ureg_unregister_ranked(reg, "codec", UREG_SINGLETON, 1), 0);
	cr_assert_eq(seen(reg, "codec"), 3);
	cr_assert_eq(ureg_unregister_ranked(reg, "codec", UREG_SINGLETON, 1), -ENOENT);
	/* BOTH at a rank: each kind's provider at that rank */
	cr_assert_eq(ureg_unregister_ranked(reg, "codec", UREG_BOTH, 2), 0);
	cr_assert_eq(made_by(reg, "codec", ctx), -1);
	cr_assert_eq(seen(reg, "codec"), 3);
	cr_assert_eq(ureg_unregister_ranked(reg, "codec", UREG_FACTORY, 3), -ENOENT);
	cr_assert_eq(ureg_unregister_ranked(reg, "codec", UREG_SINGLETON, 3), 0);
	cr_assert_eq(ureg_contains(reg, "codec"), 0);
	cr_assert_eq(wait_count(&items_destroyed, 3), 3);
	ureg_ctx_destroy(ctx);
	ureg_registry_destroy(reg);
}

Test(rank, replace_swaps_the_top_provider_which_keeps_its_rank)
{
	ureg_registry *reg = new_reg();
	struct ureg_provider_info pi[4];

	cr_assert_eq(ureg_register_ranked(reg, "codec", item_new(1), 1), 0);
	cr_assert_eq(ureg_register_ranked(reg, "codec", item_new(9), 9), 0);
	cr_assert_eq(ureg_replace(reg, "codec", item_new(90)), 0);
	cr_assert_eq(seen(reg, "codec"), 90);
	ureg_read_lock();
	cr_assert_eq(ureg_providers(reg, "codec", pi, 4), 2);
	ureg_read_unlock();
	cr_assert_eq(pi[0].rank, 9);
	cr_assert_eq(((struct item *)pi[0].item)->id, 90);
	cr_assert_eq(pi[1].rank, 1);
	cr_assert_eq(ureg_unregister(reg, "codec", UREG_SINGLETON), 0);
	cr_assert_eq(seen(reg, "codec"), 1);
	ureg_registry_destroy(reg);
	cr_assert_eq(atomic_load(&items_destroyed), 3);
}

Test(rank, providers_lists_every_provider_highest_first_singleton_before_factory)
{
	ureg_registry *reg = new_reg();
	struct fac f0 = { .id = 0 }, f5 = { .id = 5 };
	struct ureg_factory u0 = fac_factory(&f0, UREG_SCOPE_CONTEXT);
	struct ureg_factory u5 = fac_factory(&f5, UREG_SCOPE_TRANSIENT);
	struct ureg_provider_info pi[8];
	static const struct { unsigned what; int rank; bool active; } want[] = {
		{ UREG_FACTORY, 8, true },
		{ UREG_SINGLETON, 5, true },
		{ UREG_FACTORY, 5, false },
		{ UREG_SINGLETON, 0, false },
		{ UREG_FACTORY, 0, false },
	};
	int n;

	cr_assert_eq(ureg_register(reg, "k", item_new(0)), 0);
	cr_assert_eq(ureg_register_factory(reg, "k", &u0), 0);
	cr_assert_eq(ureg_register_ranked(reg, "k", item_new(5), 5), 0);
	cr_assert_eq(ureg_register_factory_ranked(reg, "k", &u5, 5), 0);
	cr_assert_eq(ureg_register_factory_ranked(reg, "k", &u0, 8), 0);
	ureg_read_lock();
	n = ureg_providers(reg, "k", pi, 8);
	cr_assert_eq(ureg_providers(reg, "k", NULL, 0), 5, "count only");
	cr_assert_eq(ureg_providers(reg, "k", pi, 2), 5, "a short array still gets the count");
	ureg_read_unlock();
	cr_assert_eq(n, 5);
	n = 0;
	ureg_read_lock();
	n = ureg_providers(reg, "k", pi, 8);
	ureg_read_unlock();
	for (int i = 0; i < n; i++) {
		cr_assert_eq(pi[i].what, want[i].what, "provider %d", i);
		cr_assert_eq(pi[i].rank, want[i].rank, "provider %d", i);
		cr_assert_eq(pi[i].active, want[i].active, "provider %d", i);
		cr_assert_eq(pi[i].item == NULL, pi[i].what == UREG_FACTORY, "provider %d", i);
	}
	cr_assert_eq(pi[4].scope, UREG_SCOPE_CONTEXT);
	cr_assert_eq(pi[2].scope, UREG_SCOPE_TRANSIENT);
	ureg_registry_destroy(reg);
}

Test(rank, bad_input_is_refused_with_a_negative_errno_and_changes_nothing)
{
	ureg_registry *reg = new_reg();
	struct item *it = item_new(1);
	struct ureg_factory nocreate = { .create = NULL };
	struct ureg_provider_info pi[1];

	cr_assert_eq(ureg_register_ranked(NULL, "k", it, 1), -EINVAL);
	cr_assert_eq(ureg_register_ranked(reg, NULL, it, 1), -EINVAL);
	cr_assert_eq(ureg_register_ranked(reg, "bad key", it, 1), -EINVAL);
	cr_assert_eq(ureg_register_ranked(reg, "k", NULL, 1), -EINVAL);
	cr_assert_eq(ureg_register_factory_ranked(reg, "k", NULL, 1), -EINVAL);
	cr_assert_eq(ureg_register_factory_ranked(reg, "k", &nocreate, 1), -EINVAL);
	cr_assert_eq(ureg_unregister_ranked(NULL, "k", UREG_SINGLETON, 1), -EINVAL);
	cr_assert_eq(ureg_unregister_ranked(reg, "k", 0, 1), -EINVAL);
	cr_assert_eq(ureg_unregister_ranked(reg, "k", 8, 1), -EINVAL);
	cr_assert_eq(ureg_unregister_ranked(reg, "k", UREG_BOTH, 1), -ENOENT);
	cr_assert_eq(ureg_providers(reg, "k", pi, 1), -EPERM, "outside a read section");
	ureg_read_lock();
	cr_assert_eq(ureg_providers(reg, "k", pi, 1), -ENOENT);
	cr_assert_eq(ureg_providers(reg, "k", NULL, 1), -EINVAL);
	cr_assert_eq(ureg_providers(NULL, "k", pi, 1), -EINVAL);
	cr_assert_eq(ureg_providers(reg, "", pi, 1), -EINVAL);
	ureg_read_unlock();
	cr_assert_eq(ureg_count(reg), 0);
	cr_assert_eq(ureg_generation(reg), 0);
	item_free_unowned(it);
	ureg_registry_destroy(reg);
	cr_assert_eq(atomic_load(&items_destroyed), 0);
}

Test(rank, a_batch_keeps_the_ranked_providers_of_keys_it_does_not_touch)
{
	ureg_registry *reg = new_reg();
	ureg_batch *b = NULL;

	cr_assert_eq(ureg_register_ranked(reg, "kept", item_new(1), 1), 0);
	cr_assert_eq(ureg_register_ranked(reg, "kept", item_new(2), 2), 0);
	cr_assert_eq(ureg_register_ranked(reg, "put", item_new(3), 3), 0);
	cr_assert_eq(ureg_register_ranked(reg, "put", item_new(4), 4), 0);
	cr_assert_eq(ureg_batch_new(reg, &b), 0);
	cr_assert_eq(ureg_batch_put(b, "put", item_new(5), NULL, NULL), 0);
	cr_assert_eq(ureg_batch_commit(b, 0), 0);
	cr_assert_eq(seen(reg, "kept"), 2);
	cr_assert_eq(seen(reg, "put"), 5);
	/* put replaced every provider of its key: nothing to fall back to */
	cr_assert_eq(wait_count(&items_destroyed, 2), 2);
	cr_assert_eq(ureg_unregister(reg, "put", UREG_SINGLETON), 0);
	cr_assert_eq(ureg_contains(reg, "put"), 0);
	/* the untouched key still falls back */
	cr_assert_eq(ureg_unregister(reg, "kept", UREG_SINGLETON), 0);
	cr_assert_eq(seen(reg, "kept"), 1);
	ureg_registry_destroy(reg);
	cr_assert_eq(atomic_load(&items_destroyed), 5);
	cr_assert_eq(atomic_load(&items_bad_destroy), 0);
}

Test(rank, drain_removes_the_top_provider_and_the_next_one_serves)
{
	ureg_registry *reg = new_reg();
	struct ureg_drain_report rep;

	cr_assert_eq(ureg_register_ranked(reg, "codec", item_new(1), 1), 0);
	cr_assert_eq(ureg_register_ranked(reg, "codec", item_new(2), 2), 0);
	cr_assert_eq(ureg_drain(reg, "codec", UREG_SINGLETON, UREG_WAIT_FOREVER, &rep), 0,
		     "%s", ureg_last_error());
	cr_assert_eq(atomic_load(&items_destroyed), 1, "drained means destroyed");
	cr_assert_eq(seen(reg, "codec"), 1);
	ureg_registry_destroy(reg);
}

Test(rank, cached_key_handles_follow_the_fallback)
{
	ureg_registry *reg = new_reg();
	ureg_key k;
	void *p = NULL;

	cr_assert_eq(ureg_key_init_cached(&k, "codec"), 0);
	cr_assert_eq(ureg_register_ranked(reg, "codec", item_new(1), 1), 0);
	cr_assert_eq(ureg_register_ranked(reg, "codec", item_new(2), 2), 0);
	for (int want = 2; want >= 1; want--) {
		for (int i = 0; i < 2; i++) { /* the second one is a cache hit */
			ureg_read_lock();
			cr_assert_eq(ureg_lookup_key(reg, &k, &p), 0);
			cr_assert_eq(((struct item *)p)->id, want);
			ureg_read_unlock();
		}
		cr_assert_eq(ureg_unregister(reg, "codec", UREG_SINGLETON), 0);
	}
	ureg_read_lock();
	cr_assert_eq(ureg_lookup_key(reg, &k, &p), -ENOENT);
	ureg_read_unlock();
	ureg_registry_destroy(reg);
}

/*
 * Churn (R.3).  One key; rank 0 is registered for the whole test, ranks
 * 1..RANKS come and go.  The writer publishes `floor` = (sequence, highest
 * rank registered) around every change that moves the top: raised after
 * registering a new top, lowered before unregistering the top.  A reader
 * that reads the same floor before and after its lookup knows that rank
 * was registered throughout, so it must see that rank or a higher one
 * (never a lower-ranked provider while a higher one is registered), and
 * never a miss (rank 0 never goes).  Readers alternate string lookups and
 * cached handles, and check every item is alive.
 */
#define RANKS 4
#define FLOOR(seq, rank) (((uint64_t)(seq) << 32) | (uint32_t)(rank))

struct churn {
	ureg_registry *reg;
	_Atomic uint64_t floor;
	atomic_int done;
	atomic_long lookups;
	atomic_long checked;
	atomic_long misses;
	atomic_long too_low;
	atomic_long dead;
	atomic_long writer_errors;
};

static void *churn_reader(void *arg)
{
	struct churn *c = arg;
	ureg_key k;
	long n = 0;

	if (ureg_key_init_cached(&k, "codec"))
		abort();
	while (!atomic_load(&c->done) || n < 1000) {
		uint64_t f1 = atomic_load(&c->floor);
		void *p = NULL;
		int rc;

		ureg_read_lock();
		rc = (n & 1) ? ureg_lookup_key(c->reg, &k, &p) :
			       ureg_lookup(c->reg, "codec", &p);
		if (rc) {
			atomic_fetch_add(&c->misses, 1);
		} else {
			struct item *it = p;
			uint64_t f2 = atomic_load(&c->floor);

			if (it->magic != ITEM_MAGIC)
				atomic_fetch_add(&c->dead, 1);
			else if (f1 == f2) {
				atomic_fetch_add(&c->checked, 1);
				if (it->id < (int)(uint32_t)f1)
					atomic_fetch_add(&c->too_low, 1);
			}
		}
		ureg_read_unlock();
		n++;
	}
	atomic_fetch_add(&c->lookups, n);
	return NULL;
}

static void *churn_writer(void *arg)
{
	struct churn *c = arg;
	bool reg_at[RANKS + 1] = { true };
	uint32_t seq = 0, x = 12345;
	int top = 0;

	for (int i = 0; i < 20000; i++) {
		int r;

		x = x * 1103515245u + 12345u;
		r = 1 + (int)((x >> 16) % RANKS);
		if (!reg_at[r]) {
			if (ureg_register_ranked(c->reg, "codec", item_new(r), r))
				atomic_fetch_add(&c->writer_errors, 1);
			reg_at[r] = true;
			if (r > top) {
				top = r;
				atomic_store(&c->floor, FLOOR(++seq, top));
			}
		} else if (r == top && (x & 0x100)) {
			/* drop the top: lower the floor first */
			int next = top - 1;

			while (!reg_at[next])
				next--;
			atomic_store(&c->floor, FLOOR(++seq, next));
			if (ureg_unregister(c->reg, "codec", UREG_SINGLETON))
				atomic_fetch_add(&c->writer_errors, 1);
			reg_at[r] = false;
			top = next;
		} else if (r != top) {
			/* a lower rank, by name: the top stays */
			if (ureg_unregister_ranked(c->reg, "codec", UREG_SINGLETON, r))
				atomic_fetch_add(&c->writer_errors, 1);
			reg_at[r] = false;
		}
	}
	atomic_store(&c->done, 1);
	return NULL;
}

Test(rank, readers_under_churn_never_see_a_lower_rank_while_a_higher_one_is_registered_nor_a_miss,
     .timeout = 100)
{
	struct churn c = { .floor = FLOOR(0, 0) };
	pthread_t readers[3], writer;

	c.reg = new_reg();
	cr_assert_eq(ureg_register(c.reg, "codec", item_new(0)), 0);
	for (int i = 0; i < 3; i++)
		cr_assert_eq(pthread_create(&readers[i], NULL, churn_reader, &c), 0);
	cr_assert_eq(pthread_create(&writer, NULL, churn_writer, &c), 0);
	pthread_join(writer, NULL);
	for (int i = 0; i < 3; i++)
		pthread_join(readers[i], NULL);
	cr_assert_eq(atomic_load(&c.writer_errors), 0);
	cr_assert_eq(atomic_load(&c.misses), 0, "a miss while rank 0 was registered");
	cr_assert_eq(atomic_load(&c.too_low), 0, "a lower rank seen while a higher one was registered");
	cr_assert_eq(atomic_load(&c.dead), 0, "a destroyed item seen");
	cr_assert_gt(atomic_load(&c.checked), 0);
	cr_log_info("%ld lookups, %ld checked against the floor",
		    atomic_load(&c.lookups), atomic_load(&c.checked));
	ureg_registry_destroy(c.reg);
	cr_assert_eq(atomic_load(&items_bad_destroy), 0);
	cr_assert_eq(atomic_load(&items_destroyed), atomic_load(&items_made));
}

Test(rank, a_batch_add_publishes_a_whole_ranked_set_in_one_generation)
{
	ureg_registry *reg = new_reg();
	struct fac f = { .id = 7 };
	struct ureg_factory uf = fac_factory(&f, UREG_SCOPE_CONTEXT);
	struct ureg_provider_info pi[4];
	struct item *dup = item_new(55), *orphan = item_new(66);
	ureg_batch *b = NULL;
	uint64_t gen;

	cr_assert_eq(ureg_register_ranked(reg, "codec", item_new(99), 99), 0);
	gen = ureg_generation(reg);
	cr_assert_eq(ureg_batch_new(reg, &b), 0);
	cr_assert_eq(ureg_batch_add(b, "codec", item_new(1), NULL, 1, NULL), 0);
	cr_assert_eq(ureg_batch_add(b, "codec", item_new(5), &uf, 5, NULL), 0);
	cr_assert_eq(ureg_batch_add(b, "codec", dup, NULL, 5, NULL), -EEXIST);
	cr_assert_eq(ureg_batch_add(b, "codec", item_new(3), NULL, 3, NULL), 0);
	cr_assert_eq(ureg_batch_add(b, "codec", NULL, NULL, 3, NULL), -EINVAL);
	cr_assert_eq(ureg_batch_put(b, "gone", NULL, NULL, NULL), 0);
	cr_assert_eq(ureg_batch_add(b, "gone", orphan, NULL, 0, NULL), -EEXIST);
	cr_assert_eq(ureg_batch_add(NULL, "codec", orphan, NULL, 0, NULL), -EINVAL);
	cr_assert_eq(ureg_batch_add(b, "bad key", orphan, NULL, 0, NULL), -EINVAL);
	cr_assert_eq(seen(reg, "codec"), 99, "nothing visible before the commit");
	cr_assert_eq(ureg_batch_commit(b, 0), 0);
	cr_assert_eq(ureg_generation(reg), gen + 1);
	/* the batch replaced the key's providers: 99 is gone */
	cr_assert_eq(seen(reg, "codec"), 5);
	ureg_read_lock();
	cr_assert_eq(ureg_providers(reg, "codec", pi, 4), 4);
	ureg_read_unlock();
	cr_assert_eq(pi[0].rank, 5);
	cr_assert_eq(pi[0].what, UREG_SINGLETON);
	cr_assert_eq(pi[1].what, UREG_FACTORY);
	cr_assert_eq(pi[2].rank, 3);
	cr_assert_eq(pi[3].rank, 1);
	cr_assert_eq(ureg_unregister(reg, "codec", UREG_SINGLETON), 0);
	cr_assert_eq(seen(reg, "codec"), 3);
	item_free_unowned(dup);
	item_free_unowned(orphan);
	ureg_registry_destroy(reg);
	cr_assert_eq(atomic_load(&items_destroyed), 4);
	cr_assert_eq(atomic_load(&items_bad_destroy), 0);
}

Test(rank, an_aborted_batch_frees_every_provider_it_was_given)
{
	ureg_registry *reg = new_reg();
	atomic_int arg_freed = 0;
	struct fac f = { .id = 1, .arg_freed = &arg_freed };
	struct ureg_factory uf = fac_factory(&f, UREG_SCOPE_TRANSIENT);
	ureg_batch *b = NULL;

	cr_assert_eq(ureg_batch_new(reg, &b), 0);
	for (int r = 0; r < 6; r++)
		cr_assert_eq(ureg_batch_add(b, "codec", item_new(r), r & 1 ? &uf : NULL, r, NULL), 0);
	ureg_batch_abort(b);
	cr_assert_eq(atomic_load(&items_destroyed), 6);
	cr_assert_eq(atomic_load(&arg_freed), 3);
	cr_assert_eq(ureg_count(reg), 0);
	ureg_registry_destroy(reg);
}

struct codec {
	struct item base; /* first: the registry's item_destroy frees it */
};

UREG_DECLARE_TYPED(codec_reg, struct codec)

Test(rank, the_typed_wrappers_take_ranks_and_list_providers)
{
	codec_reg_registry *reg = NULL;
	codec_reg_batch *b = NULL;
	struct codec *c1 = (struct codec *)item_new(1), *c2 = (struct codec *)item_new(2);
	struct codec *got = NULL;
	struct ureg_provider_info pi[2];

	cr_assert_eq(codec_reg_new(&item_type, "codecs", &reg), 0);
	cr_assert_eq(codec_reg_register_ranked(reg, "c", c1, 1), 0);
	cr_assert_eq(codec_reg_register_ranked(reg, "c", c2, 2), 0);
	ureg_read_lock();
	cr_assert_eq(codec_reg_lookup(reg, "c", &got), 0);
	cr_assert_eq(got, c2);
	cr_assert_eq(codec_reg_providers(reg, "c", pi, 2), 2);
	ureg_read_unlock();
	cr_assert_eq(codec_reg_unregister_ranked(reg, "c", UREG_SINGLETON, 2), 0);
	cr_assert_eq(codec_reg_batch_new(reg, &b), 0);
	cr_assert_eq(codec_reg_batch_add(b, "d", (struct codec *)item_new(3), NULL, 3, NULL), 0);
	cr_assert_eq(codec_reg_batch_commit(b, 0), 0);
	ureg_read_lock();
	cr_assert_eq(codec_reg_lookup(reg, "c", &got), 0);
	cr_assert_eq(got, c1);
	cr_assert_eq(codec_reg_lookup(reg, "d", &got), 0);
	cr_assert_eq(got->base.id, 3);
	ureg_read_unlock();
	codec_reg_destroy(reg);
	cr_assert_eq(atomic_load(&items_destroyed), 3);
}
