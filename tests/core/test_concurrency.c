/* SPDX-License-Identifier: MIT */
/*
 * Many threads at once: distinct registrations, racing duplicates, readers
 * running through replace / unregister churn (the ASan build turns any
 * touch of a freed item into a crash; the normal build sees the poisoned
 * magic), single-flight CONTEXT-scope creation, batches seen all-or-nothing,
 * and one context shared by several allocating threads.
 *
 * No test waits for a race by sleeping: threads start together on a
 * pthread barrier and the test thread joins them before asserting.
 */
#include <criterion/criterion.h>

#include <pthread.h>

#include "core_test.h"

#define NTHREADS 8

static ureg_registry *new_reg(void)
{
	ureg_registry *reg = NULL;

	cr_assert_eq(ureg_registry_new(&item_type, "concurrency", &reg), 0);
	return reg;
}

static void start_all(pthread_t *t, int n, void *(*fn)(void *), void *args,
		      size_t arg_size)
{
	for (int i = 0; i < n; i++)
		cr_assert_eq(pthread_create(&t[i], NULL, fn,
					    (char *)args + (size_t)i * arg_size), 0);
}

static void join_all(pthread_t *t, int n)
{
	for (int i = 0; i < n; i++)
		cr_assert_eq(pthread_join(t[i], NULL), 0);
}

/* ------------------------------------------------------------------ */
/* distinct keys                                                       */
/* ------------------------------------------------------------------ */

#define KEYS_PER_THREAD 2000

struct distinct_arg {
	ureg_registry *reg;
	pthread_barrier_t *go;
	int thread;
	int failures;
};

static void *register_distinct(void *p)
{
	struct distinct_arg *a = p;
	char key[32];

	pthread_barrier_wait(a->go);
	for (int i = 0; i < KEYS_PER_THREAD; i++) {
		int id = a->thread * KEYS_PER_THREAD + i;

		snprintf(key, sizeof(key), "t%d.key-%d", a->thread, i);
		if (ureg_register(a->reg, key, item_new(id)) != 0)
			a->failures++;
	}
	return NULL;
}

Test(concurrency, eight_threads_registering_distinct_keys_all_succeed)
{
	ureg_registry *reg = new_reg();
	pthread_barrier_t go;
	pthread_t t[NTHREADS];
	struct distinct_arg args[NTHREADS];
	char key[32];
	char **keys = NULL;
	size_t n = 0;

	pthread_barrier_init(&go, NULL, NTHREADS);
	for (int i = 0; i < NTHREADS; i++)
		args[i] = (struct distinct_arg){ .reg = reg, .go = &go, .thread = i };
	start_all(t, NTHREADS, register_distinct, args, sizeof(args[0]));
	join_all(t, NTHREADS);
	for (int i = 0; i < NTHREADS; i++)
		cr_assert_eq(args[i].failures, 0, "thread %d", i);
	cr_assert_eq(ureg_count(reg), NTHREADS * KEYS_PER_THREAD);
	ureg_read_lock();
	for (int th = 0; th < NTHREADS; th++) {
		for (int i = 0; i < KEYS_PER_THREAD; i++) {
			struct item *it = NULL;

			snprintf(key, sizeof(key), "t%d.key-%d", th, i);
			cr_assert_eq(ureg_lookup(reg, key, (void **)&it), 0, "%s", key);
			cr_assert_eq(it->magic, ITEM_MAGIC);
			cr_assert_eq(it->id, th * KEYS_PER_THREAD + i);
		}
	}
	ureg_read_unlock();
	cr_assert_eq(ureg_keys(reg, &keys, &n), 0);
	cr_assert_eq(n, NTHREADS * KEYS_PER_THREAD);
	ureg_keys_free(keys);
	ureg_registry_destroy(reg);
	cr_assert_eq(atomic_load(&items_destroyed), NTHREADS * KEYS_PER_THREAD);
}

/* ------------------------------------------------------------------ */
/* racing duplicates                                                   */
/* ------------------------------------------------------------------ */

#define RACE_ROUNDS 200

struct race_arg {
	ureg_registry *reg;
	pthread_barrier_t *go;
	int thread;
	bool factories;
	int rc[RACE_ROUNDS];
	struct item *item[RACE_ROUNDS];
	struct fac fac[RACE_ROUNDS];
};

static void *race_same_key(void *p)
{
	struct race_arg *a = p;
	char key[32];

	for (int r = 0; r < RACE_ROUNDS; r++) {
		snprintf(key, sizeof(key), "contested-%d", r);
		a->item[r] = item_new(a->thread);
		a->fac[r].id = a->thread;
		pthread_barrier_wait(a->go);
		if (a->factories) {
			struct ureg_factory f = fac_factory(&a->fac[r],
							    UREG_SCOPE_CONTEXT);

			a->rc[r] = ureg_register_factory(a->reg, key, &f);
		} else {
			a->rc[r] = ureg_register(a->reg, key, a->item[r]);
		}
	}
	return NULL;
}

static void run_duplicate_race(bool factories)
{
	ureg_registry *reg = new_reg();
	ureg_ctx *ctx = NULL;
	pthread_barrier_t go;
	pthread_t t[NTHREADS];
	struct race_arg *args = calloc(NTHREADS, sizeof(*args));
	char key[32];

	cr_assert_not_null(args);
	cr_assert_eq(ureg_ctx_new(NULL, UREG_CTX_SHARED, &ctx), 0);
	pthread_barrier_init(&go, NULL, NTHREADS);
	for (int i = 0; i < NTHREADS; i++) {
		args[i].reg = reg;
		args[i].go = &go;
		args[i].thread = i;
		args[i].factories = factories;
	}
	start_all(t, NTHREADS, race_same_key, args, sizeof(args[0]));
	join_all(t, NTHREADS);
	cr_assert_eq(ureg_count(reg), RACE_ROUNDS);
	for (int r = 0; r < RACE_ROUNDS; r++) {
		int winners = 0, winner = -1;
		void *p = NULL;

		for (int i = 0; i < NTHREADS; i++) {
			if (args[i].rc[r] == 0) {
				winners++;
				winner = i;
			} else {
				cr_assert_eq(args[i].rc[r], -EEXIST,
					     "round %d thread %d: %d", r, i,
					     args[i].rc[r]);
			}
		}
		cr_assert_eq(winners, 1, "round %d: %d winners", r, winners);
		snprintf(key, sizeof(key), "contested-%d", r);
		if (factories) {
			cr_assert_eq(get_rc(reg, key, ctx, &p), 0);
			cr_assert_eq(((struct inst *)p)->factory_id, winner);
		} else {
			cr_assert_eq(lookup_rc(reg, key, &p), 0);
			cr_assert_eq(p, args[winner].item[r], "round %d", r);
		}
	}
	ureg_ctx_destroy(ctx);
	ureg_registry_destroy(reg);
	/* every loser's item is untouched and still the caller's */
	for (int r = 0; r < RACE_ROUNDS; r++)
		for (int i = 0; i < NTHREADS; i++)
			if (factories || args[i].rc[r] != 0) {
				cr_assert_eq(args[i].item[r]->magic, ITEM_MAGIC);
				item_free_unowned(args[i].item[r]);
			}
	cr_assert_eq(atomic_load(&items_destroyed), factories ? 0 : RACE_ROUNDS);
	cr_assert_eq(atomic_load(&items_bad_destroy), 0);
	pthread_barrier_destroy(&go);
	free(args);
}

Test(concurrency, eight_threads_racing_to_register_one_key_give_exactly_one_winner)
{
	run_duplicate_race(false);
}

Test(concurrency, eight_threads_racing_to_register_one_factory_give_exactly_one_winner)
{
	run_duplicate_race(true);
}

/* ------------------------------------------------------------------ */
/* readers through churn                                               */
/* ------------------------------------------------------------------ */

#define CHURN_KEYS 16
#define CHURN_WRITERS 2
#define CHURN_READERS 6
#define CHURN_OPS 20000

struct churn {
	ureg_registry *reg;
	pthread_barrier_t go;
	atomic_int writers_left;
	atomic_long reads;
	atomic_long hits;
	atomic_long refs;
	atomic_long bad;
	atomic_long writes;
};

struct churn_arg {
	struct churn *c;
	int thread;
};

static void churn_key(char *buf, size_t len, int i)
{
	snprintf(buf, len, "churn-%d", i % CHURN_KEYS);
}

static void *churn_writer(void *p)
{
	struct churn_arg *a = p;
	struct churn *c = a->c;
	char key[32];
	unsigned seed = 12345u + (unsigned)a->thread;

	pthread_barrier_wait(&c->go);
	for (int i = 0; i < CHURN_OPS; i++) {
		int k = rand_r(&seed) % CHURN_KEYS, rc;
		struct item *it = item_new(k);

		churn_key(key, sizeof(key), k);
		switch (rand_r(&seed) % 4) {
		case 0:
		case 1:
			rc = ureg_replace(c->reg, key, it);
			if (rc == -ENOENT)
				rc = ureg_register(c->reg, key, it);
			break;
		case 2:
			rc = ureg_register(c->reg, key, it);
			break;
		default:
			item_free_unowned(it);
			it = NULL;
			rc = ureg_unregister(c->reg, key, UREG_SINGLETON);
			break;
		}
		if (rc == 0)
			atomic_fetch_add(&c->writes, 1);
		else if (rc != -EEXIST && rc != -ENOENT)
			atomic_fetch_add(&c->bad, 1);
		if (rc != 0 && it)
			item_free_unowned(it);
	}
	atomic_fetch_sub(&c->writers_left, 1);
	return NULL;
}

static void check_item(struct churn *c, void *p, int k)
{
	struct item *it = p;

	/* read the whole item: ASan reports here if it was freed */
	if (it->magic != ITEM_MAGIC || it->id != k)
		atomic_fetch_add(&c->bad, 1);
}

static void *churn_reader(void *p)
{
	struct churn_arg *a = p;
	struct churn *c = a->c;
	char key[32];
	long reads = 0, hits = 0, refs = 0;

	pthread_barrier_wait(&c->go);
	while (atomic_load(&c->writers_left) > 0 || reads < 2000) {
		int k = (int)(reads % CHURN_KEYS);
		void *item = NULL;
		ureg_ref *ref = NULL;

		bool hit = false;

		churn_key(key, sizeof(key), k);
		ureg_read_lock();
		if (ureg_lookup(c->reg, key, &item) == 0) {
			hits++;
			hit = true;
			check_item(c, item, k);
			/* a writer may free it now: still valid in here */
			check_item(c, item, k);
		}
		if (ureg_get(c->reg, key, NULL, &item) == 0)
			check_item(c, item, k);
		ureg_read_unlock();
		if ((hit || refs == 0) && (reads / CHURN_KEYS) % 4 == 0 &&
		    ureg_acquire(c->reg, key, &ref) == 0) {
			refs++;
			check_item(c, ureg_ref_item(ref), k);
			ureg_ref_release(ref);
		}
		reads++;
	}
	atomic_fetch_add(&c->reads, reads);
	atomic_fetch_add(&c->hits, hits);
	atomic_fetch_add(&c->refs, refs);
	return NULL;
}

Test(concurrency, readers_never_see_a_destroyed_item_through_replace_and_unregister_churn,
     .timeout = 60)
{
	struct churn *c = calloc(1, sizeof(*c));
	pthread_t t[CHURN_WRITERS + CHURN_READERS];
	struct churn_arg args[CHURN_WRITERS + CHURN_READERS];

	cr_assert_not_null(c);
	c->reg = new_reg();
	atomic_store(&c->writers_left, CHURN_WRITERS);
	pthread_barrier_init(&c->go, NULL, CHURN_WRITERS + CHURN_READERS);
	for (int i = 0; i < CHURN_WRITERS + CHURN_READERS; i++) {
		args[i] = (struct churn_arg){ .c = c, .thread = i };
		cr_assert_eq(pthread_create(&t[i], NULL,
					    i < CHURN_WRITERS ? churn_writer : churn_reader,
					    &args[i]), 0);
	}
	join_all(t, CHURN_WRITERS + CHURN_READERS);
	cr_assert_eq(atomic_load(&c->bad), 0, "%ld bad reads or writes",
		     (long)atomic_load(&c->bad));
	cr_assert_geq(atomic_load(&c->reads), CHURN_READERS * 2000L);
	cr_assert_gt(atomic_load(&c->hits), 0);
	cr_assert_gt(atomic_load(&c->refs), 0);
	cr_assert_gt(atomic_load(&c->writes), CHURN_OPS / 2);
	ureg_registry_destroy(c->reg);
	/* every item the registry took was destroyed exactly once */
	cr_assert_eq(atomic_load(&items_destroyed), atomic_load(&items_made));
	cr_assert_eq(atomic_load(&items_bad_destroy), 0);
	pthread_barrier_destroy(&c->go);
	free(c);
}

/* ------------------------------------------------------------------ */
/* batches are all-or-nothing for readers                              */
/* ------------------------------------------------------------------ */

struct batch_race {
	ureg_registry *reg;
	pthread_barrier_t go;
	atomic_int done;
	atomic_long torn;
	atomic_long reads;
	atomic_long seen_both;
};

static void *batch_reader(void *p)
{
	struct batch_race *b = p;
	long reads = 0, both = 0;

	pthread_barrier_wait(&b->go);
	while (!atomic_load(&b->done) || reads < 1000) {
		void *x = NULL, *y = NULL;
		int rx, ry;

		ureg_read_lock();
		rx = ureg_lookup(b->reg, "pair-x", &x);
		ry = ureg_lookup(b->reg, "pair-y", &y);
		if (rx != ry)
			atomic_fetch_add(&b->torn, 1);
		else if (rx == 0 && (((struct item *)x)->id != ((struct item *)y)->id ||
				     ((struct item *)x)->magic != ITEM_MAGIC ||
				     ((struct item *)y)->magic != ITEM_MAGIC))
			atomic_fetch_add(&b->torn, 1);
		ureg_read_unlock();
		both += rx == 0;
		reads++;
	}
	atomic_fetch_add(&b->reads, reads);
	atomic_fetch_add(&b->seen_both, both);
	return NULL;
}

Test(concurrency, a_reader_sees_all_of_a_batch_or_none_of_it, .timeout = 60)
{
	struct batch_race *b = calloc(1, sizeof(*b));
	pthread_t t[4];

	cr_assert_not_null(b);
	b->reg = new_reg();
	pthread_barrier_init(&b->go, NULL, 5);
	for (int i = 0; i < 4; i++)
		cr_assert_eq(pthread_create(&t[i], NULL, batch_reader, b), 0);
	pthread_barrier_wait(&b->go);
	for (int round = 0; round < 150; round++) {
		ureg_batch *batch = NULL;

		cr_assert_eq(ureg_batch_new(b->reg, &batch), 0);
		if (round % 3 == 2) {
			cr_assert_eq(ureg_batch_put(batch, "pair-x", NULL, NULL, NULL), 0);
			cr_assert_eq(ureg_batch_put(batch, "pair-y", NULL, NULL, NULL), 0);
		} else {
			cr_assert_eq(ureg_batch_put(batch, "pair-x", item_new(round), NULL, NULL), 0);
			cr_assert_eq(ureg_batch_put(batch, "pair-y", item_new(round), NULL, NULL), 0);
		}
		cr_assert_eq(ureg_batch_commit(batch, 0), 0);
	}
	atomic_store(&b->done, 1);
	join_all(t, 4);
	cr_assert_eq(atomic_load(&b->torn), 0, "%ld torn reads", (long)atomic_load(&b->torn));
	cr_assert_geq(atomic_load(&b->reads), 4000);
	cr_assert_gt(atomic_load(&b->seen_both), 0);
	ureg_registry_destroy(b->reg);
	cr_assert_eq(atomic_load(&items_destroyed), atomic_load(&items_made));
	pthread_barrier_destroy(&b->go);
	free(b);
}

/* ------------------------------------------------------------------ */
/* single-flight CONTEXT-scope creation                                */
/* ------------------------------------------------------------------ */

#define FLIGHT_ROUNDS 30

struct flight {
	ureg_registry *reg;
	ureg_ctx *ctx;
	pthread_barrier_t go;
	pthread_barrier_t round_done;
	atomic_int entered;
	atomic_int calls;
	atomic_long spin_timeouts;
	void *got[NTHREADS];
	int rc[NTHREADS];
};

static struct flight *flight;

/*
 * Holds the creation open until every thread has entered ureg_get (or a
 * bounded number of yields passed), so all eight really race this one
 * creation.  A library that ran the factory per thread would count 8 calls.
 */
static int slow_factory(ureg_ctx *ctx, void *arg, void **out)
{
	struct inst *in;
	long spins = 0;

	atomic_fetch_add(&flight->calls, 1);
	while (atomic_load(&flight->entered) < NTHREADS && spins++ < 1000000)
		sched_yield();
	if (spins >= 1000000)
		atomic_fetch_add(&flight->spin_timeouts, 1);
	in = ureg_ctx_alloc(ctx, sizeof(*in));
	if (!in)
		return -ENOMEM;
	in->magic = INST_MAGIC;
	in->serial = atomic_fetch_add(&inst_serial, 1);
	in->label = NULL;
	*out = in;
	return 0;
}

struct flight_arg {
	int thread;
};

static void *flight_thread(void *p)
{
	struct flight_arg *a = p;

	for (int r = 0; r < FLIGHT_ROUNDS; r++) {
		pthread_barrier_wait(&flight->go);
		ureg_read_lock();
		atomic_fetch_add(&flight->entered, 1);
		flight->rc[a->thread] = ureg_get(flight->reg, "session", flight->ctx,
						 &flight->got[a->thread]);
		ureg_read_unlock();
		pthread_barrier_wait(&flight->round_done);
	}
	return NULL;
}

Test(concurrency, eight_threads_getting_one_context_scope_instance_run_the_factory_once,
     .timeout = 60)
{
	struct ureg_factory f = { .create = slow_factory, .scope = UREG_SCOPE_CONTEXT };
	pthread_t t[NTHREADS];
	struct flight_arg args[NTHREADS];

	flight = calloc(1, sizeof(*flight));
	cr_assert_not_null(flight);
	flight->reg = new_reg();
	cr_assert_eq(ureg_register_factory(flight->reg, "session", &f), 0);
	pthread_barrier_init(&flight->go, NULL, NTHREADS + 1);
	pthread_barrier_init(&flight->round_done, NULL, NTHREADS + 1);
	for (int i = 0; i < NTHREADS; i++)
		args[i].thread = i;
	start_all(t, NTHREADS, flight_thread, args, sizeof(args[0]));
	for (int r = 0; r < FLIGHT_ROUNDS; r++) {
		cr_assert_eq(ureg_ctx_new(NULL, UREG_CTX_SHARED, &flight->ctx), 0);
		atomic_store(&flight->entered, 0);
		atomic_store(&flight->calls, 0);
		pthread_barrier_wait(&flight->go);
		pthread_barrier_wait(&flight->round_done);
		cr_assert_eq(atomic_load(&flight->calls), 1, "round %d: factory ran %d times",
			     r, atomic_load(&flight->calls));
		for (int i = 0; i < NTHREADS; i++) {
			cr_assert_eq(flight->rc[i], 0, "round %d thread %d", r, i);
			cr_assert_eq(flight->got[i], flight->got[0], "round %d thread %d", r, i);
		}
		cr_assert_eq(((struct inst *)flight->got[0])->magic, INST_MAGIC);
		cr_assert_eq(ctx_stats(flight->ctx).instances, 1);
		ureg_ctx_destroy(flight->ctx);
	}
	join_all(t, NTHREADS);
	cr_assert_eq(atomic_load(&flight->spin_timeouts), 0,
		     "a racing thread never reached ureg_get while the factory ran");
	cr_assert_eq(atomic_load(&inst_serial), FLIGHT_ROUNDS);
	ureg_registry_destroy(flight->reg);
	pthread_barrier_destroy(&flight->go);
	pthread_barrier_destroy(&flight->round_done);
	free(flight);
}

/* ------------------------------------------------------------------ */
/* one context, many allocating threads                                */
/* ------------------------------------------------------------------ */

#define ALLOC_THREADS 8
#define ALLOCS_PER_THREAD 4000
static const size_t alloc_sizes[] = { 8, 24, 64, 200, 1000, 3000 };
#define NSIZES (sizeof(alloc_sizes) / sizeof(alloc_sizes[0]))

struct alloc_arg {
	ureg_ctx *ctx;
	pthread_barrier_t *go;
	int thread;
	void *kept[ALLOCS_PER_THREAD];
	size_t kept_per_size[NSIZES];
	int nkept;
	int failures;
};

static void *alloc_thread(void *p)
{
	struct alloc_arg *a = p;

	pthread_barrier_wait(a->go);
	for (int i = 0; i < ALLOCS_PER_THREAD; i++) {
		size_t s = (size_t)(i + a->thread) % NSIZES;
		unsigned char *m = ureg_ctx_alloc(a->ctx, alloc_sizes[s]);

		if (!m) {
			a->failures++;
			continue;
		}
		memset(m, a->thread, alloc_sizes[s]);
		if (i % 2) {
			/* free at once: another thread's blocks must be untouched */
			ureg_ctx_free(a->ctx, m);
		} else {
			a->kept[a->nkept++] = m;
			a->kept_per_size[s]++;
		}
	}
	/* check our kept blocks were not handed to anyone else */
	for (int i = 0; i < a->nkept; i++)
		if (*(unsigned char *)a->kept[i] != (unsigned char)a->thread)
			a->failures++;
	return NULL;
}

Test(concurrency, one_context_used_by_eight_allocating_threads_keeps_exact_accounting,
     .timeout = 60)
{
	ureg_ctx *ctx = NULL;
	pthread_barrier_t go;
	pthread_t t[ALLOC_THREADS];
	struct alloc_arg *args = calloc(ALLOC_THREADS, sizeof(*args));
	size_t charge[NSIZES], expect_live = 0, expect_allocs = 0;
	struct ureg_ctx_stats st;

	cr_assert_not_null(args);
	cr_assert_eq(ureg_ctx_new("shared-by-8", UREG_CTX_SHARED, &ctx), 0);
	/* what each size costs, measured alone */
	for (size_t s = 0; s < NSIZES; s++) {
		void *m = ureg_ctx_alloc(ctx, alloc_sizes[s]);

		cr_assert_not_null(m);
		charge[s] = ctx_live(ctx);
		ureg_ctx_free(ctx, m);
		cr_assert_eq(ctx_live(ctx), 0);
	}
	pthread_barrier_init(&go, NULL, ALLOC_THREADS);
	for (int i = 0; i < ALLOC_THREADS; i++) {
		args[i].ctx = ctx;
		args[i].go = &go;
		args[i].thread = i + 1;
	}
	start_all(t, ALLOC_THREADS, alloc_thread, args, sizeof(args[0]));
	join_all(t, ALLOC_THREADS);
	for (int i = 0; i < ALLOC_THREADS; i++) {
		cr_assert_eq(args[i].failures, 0, "thread %d", i);
		for (size_t s = 0; s < NSIZES; s++) {
			expect_live += args[i].kept_per_size[s] * charge[s];
			expect_allocs += args[i].kept_per_size[s];
		}
	}
	st = ctx_stats(ctx);
	cr_assert_eq(st.live_bytes, expect_live);
	cr_assert_eq(st.allocations, expect_allocs);
	cr_assert_eq(st.total_allocations,
		     (uint64_t)ALLOC_THREADS * ALLOCS_PER_THREAD + NSIZES);
	cr_assert_geq(st.peak_bytes, expect_live);
	/* free from other threads than the allocating ones: here */
	for (int i = 0; i < ALLOC_THREADS; i++)
		for (int k = 0; k < args[i].nkept; k++)
			ureg_ctx_free(ctx, args[i].kept[k]);
	st = ctx_stats(ctx);
	cr_assert_eq(st.live_bytes, 0);
	cr_assert_eq(st.allocations, 0);
	ureg_ctx_destroy(ctx);
	pthread_barrier_destroy(&go);
	free(args);
}

/* ------------------------------------------------------------------ */
/* instances created and released from many threads                    */
/* ------------------------------------------------------------------ */

struct inst_arg {
	ureg_registry *reg;
	ureg_ctx *ctx;
	pthread_barrier_t *go;
	int failures;
};

static void *make_instances(void *p)
{
	struct inst_arg *a = p;
	void *keep[100];

	pthread_barrier_wait(a->go);
	for (int i = 0; i < 100; i++)
		if (ureg_create_instance(a->reg, "t", a->ctx, &keep[i]) != 0)
			a->failures++;
	for (int i = 0; i < 100; i += 2)
		if (ureg_instance_release(a->ctx, keep[i]) != 0)
			a->failures++;
	return NULL;
}

Test(concurrency, instances_made_and_released_by_eight_threads_in_one_context_are_all_accounted)
{
	ureg_registry *reg = new_reg();
	ureg_ctx *ctx = NULL;
	struct fac f = { .id = 1, .extra = 50 };
	struct ureg_factory uf = fac_factory(&f, UREG_SCOPE_TRANSIENT);
	pthread_barrier_t go;
	pthread_t t[NTHREADS];
	struct inst_arg args[NTHREADS];

	cr_assert_eq(ureg_register_factory(reg, "t", &uf), 0);
	cr_assert_eq(ureg_ctx_new(NULL, UREG_CTX_SHARED, &ctx), 0);
	pthread_barrier_init(&go, NULL, NTHREADS);
	for (int i = 0; i < NTHREADS; i++)
		args[i] = (struct inst_arg){ .reg = reg, .ctx = ctx, .go = &go };
	start_all(t, NTHREADS, make_instances, args, sizeof(args[0]));
	join_all(t, NTHREADS);
	for (int i = 0; i < NTHREADS; i++)
		cr_assert_eq(args[i].failures, 0);
	cr_assert_eq(atomic_load(&f.calls), NTHREADS * 100);
	cr_assert_eq(ctx_stats(ctx).instances, NTHREADS * 50);
	cr_assert_eq(atomic_load(&inst_destroyed), NTHREADS * 50);
	cr_assert_eq(ctx_stats(ctx).allocations, NTHREADS * 50 * 2);
	ureg_ctx_destroy(ctx);
	cr_assert_eq(atomic_load(&inst_destroyed), NTHREADS * 100);
	ureg_registry_destroy(reg);
	pthread_barrier_destroy(&go);
}

/*
 * Factory boxes under churn: while four threads create and release
 * instances of one key (each in its own context, so the holds of the
 * same box land on every CPU's slot and are dropped on others), the test
 * thread replaces the factory 300 times and drains it every 10th time.
 * Every box must be freed exactly once, never while one of its instances
 * lives or its factory runs, and every one must be freed by the time the
 * instances are gone and the registry destroyed (lib/core/entry.c: the
 * per-CPU holds, the kill and the fold).
 */
#define BOXCHURN_BOXES 300

struct boxchurn_arg {
	atomic_int live;  /* instances alive, and factories running */
	atomic_int freed; /* arg_free calls */
};

static struct boxchurn_arg boxchurn_args[BOXCHURN_BOXES];
static atomic_int boxchurn_violations;
static atomic_int boxchurn_stop;
static ureg_registry *boxchurn_reg;

static int boxchurn_create(ureg_ctx *ctx, void *arg, void **out)
{
	struct boxchurn_arg *a = arg;
	struct boxchurn_arg **inst;

	atomic_fetch_add(&a->live, 1);
	if (atomic_load(&a->freed))
		atomic_fetch_add(&boxchurn_violations, 1); /* ran after arg_free */
	inst = ureg_ctx_alloc(ctx, sizeof(*inst));
	if (!inst) {
		atomic_fetch_sub(&a->live, 1);
		return -ENOMEM;
	}
	*inst = a;
	*out = inst; /* still counted in live: until its destructor */
	return 0;
}

static void boxchurn_destroy(void *instance, ureg_ctx *ctx)
{
	struct boxchurn_arg *a = *(struct boxchurn_arg **)instance;

	if (atomic_load(&a->freed))
		atomic_fetch_add(&boxchurn_violations, 1); /* outlived its factory */
	atomic_fetch_sub(&a->live, 1);
	ureg_ctx_free(ctx, instance);
}

static void boxchurn_arg_free(void *arg)
{
	struct boxchurn_arg *a = arg;

	if (atomic_load(&a->live) != 0)
		atomic_fetch_add(&boxchurn_violations, 1); /* freed under an instance */
	if (atomic_fetch_add(&a->freed, 1) != 0)
		atomic_fetch_add(&boxchurn_violations, 1); /* freed twice */
}

static struct ureg_factory boxchurn_factory(int i)
{
	struct ureg_factory f = {
		.create = boxchurn_create,
		.scope = UREG_SCOPE_TRANSIENT,
		.arg = &boxchurn_args[i],
		.arg_free = boxchurn_arg_free,
		.instance_destroy = boxchurn_destroy,
	};
	return f;
}

static void *boxchurn_worker(void *arg)
{
	void *held[8] = { NULL }, *kept[64];
	unsigned n = 0, nkept = 0;
	ureg_ctx *ctx = NULL;
	char name[32];

	snprintf(name, sizeof(name), "churn-%d", *(int *)arg);
	if (ureg_ctx_new(name, UREG_CTX_SHARED, &ctx) != 0)
		return (void *)1;
	while (!atomic_load(&boxchurn_stop)) {
		void *inst;
		unsigned slot = n++ % 8;

		if (held[slot]) {
			if (ureg_instance_release(ctx, held[slot]) != 0)
				atomic_fetch_add(&boxchurn_violations, 1);
			held[slot] = NULL;
		}
		if (ureg_create_instance(boxchurn_reg, "k", ctx, &inst) != 0)
			continue;
		if (n % 97 == 0 && nkept < 64)
			kept[nkept++] = inst; /* outlives many boxes' entries */
		else
			held[slot] = inst;
	}
	/* some released one by one, the rest by the context's destroy */
	for (unsigned i = 0; i < 4; i++)
		if (held[i] && ureg_instance_release(ctx, held[i]) != 0)
			atomic_fetch_add(&boxchurn_violations, 1);
	for (unsigned i = 0; i < nkept; i += 2)
		if (ureg_instance_release(ctx, kept[i]) != 0)
			atomic_fetch_add(&boxchurn_violations, 1);
	ureg_ctx_destroy(ctx);
	return NULL;
}

Test(concurrency, factory_boxes_replaced_under_creating_threads_are_freed_once_after_their_last_instance,
     .timeout = 120)
{
	pthread_t t[4];
	int ids[4] = { 0, 1, 2, 3 };
	struct ureg_factory f = boxchurn_factory(0);

	memset(boxchurn_args, 0, sizeof(boxchurn_args));
	atomic_store(&boxchurn_violations, 0);
	atomic_store(&boxchurn_stop, 0);
	boxchurn_reg = new_reg();
	cr_assert_eq(ureg_register_factory(boxchurn_reg, "k", &f), 0);
	start_all(t, 4, boxchurn_worker, ids, sizeof(ids[0]));
	for (int i = 1; i < BOXCHURN_BOXES; i++) {
		f = boxchurn_factory(i);
		if (i % 10 == 0) {
			/* a drain that gives up at once on the live instances,
			 * then a fresh registration */
			int rc = ureg_drain(boxchurn_reg, "k", UREG_FACTORY, 0, NULL);
			cr_assert(rc == 0 || rc == -ETIMEDOUT, "drain: %d", rc);
			cr_assert_eq(ureg_register_factory(boxchurn_reg, "k", &f), 0);
		} else {
			cr_assert_eq(ureg_replace_factory(boxchurn_reg, "k", &f), 0);
		}
	}
	atomic_store(&boxchurn_stop, 1);
	join_all(t, 4);
	cr_assert_eq(atomic_load(&boxchurn_violations), 0);
	/* no instance is left; once the registry is destroyed (its barrier:
	 * every deferred free has run) no box may be left either */
	ureg_registry_destroy(boxchurn_reg);
	for (int i = 0; i < BOXCHURN_BOXES; i++) {
		cr_assert_eq(atomic_load(&boxchurn_args[i].freed), 1,
			     "box %d freed %d times", i, atomic_load(&boxchurn_args[i].freed));
		cr_assert_eq(atomic_load(&boxchurn_args[i].live), 0);
	}
	cr_assert_eq(atomic_load(&boxchurn_violations), 0);
}
