/* SPDX-License-Identifier: MIT */
/*
 * rank_churn - ranked providers under churn, for `ureg-stress --mode rank`
 * (ureg.h, guarantees R.1-R.3).
 *
 * KEYS keys, each with a rank-0 singleton and a rank-0 factory that stay
 * for the whole run, and ranks 1..RANKS of both kinds that one writer per
 * key registers and unregisters (the top one, a lower one by rank, the
 * factory side alike), with batches that rewrite other keys so the ranked
 * keys are copied into new tables.  Each key publishes `floor` = (sequence,
 * highest singleton rank registered): raised after a new top is
 * registered, lowered before the top is removed.  Readers that read the
 * same floor before and after a lookup must have seen that rank or a
 * higher one; no lookup may miss (rank 0 never goes); every item seen is
 * alive; ureg_providers must list a consistent set (ranks strictly
 * ordered per kind, one active provider per kind, the top one).
 *
 * No sleeps: every thread runs flat out until the deadline.
 */
#ifndef UREG_RANK_CHURN_H
#define UREG_RANK_CHURN_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include <ureg/ureg.h>
#include <ureg/ctx.h>

struct rank_churn_result {
	long lookups;        /* reader lookups */
	long checked;        /* of which the floor was stable around */
	long writes;         /* ranked registrations and removals */
	long batches;        /* batch commits beside the churn */
	long misses;         /* lookups that found nothing (must be 0) */
	long too_low;        /* a lower rank while a higher one was registered */
	long dead;           /* a destroyed item seen */
	long bad_lists;      /* inconsistent ureg_providers answers */
	long failures;       /* unexpected error codes */
};

#define RANK_CHURN_KEYS 8
#define RANK_CHURN_RANKS 6
#define RANK_CHURN_ALIVE UINT64_C(0x7a4c7a4c7a4c7a4c)

struct rank_churn_item {
	uint64_t magic;
	int rank;
};

static void rank_churn_item_destroy(void *p)
{
	struct rank_churn_item *it = p;

	it->magic = 0;
	free(it);
}

static int rank_churn_create(ureg_ctx *ctx, void *arg, void **out)
{
	(void)ctx;
	*out = arg; /* never called: the factories only take part in ranking */
	return 0;
}

static const ureg_type rank_churn_type = {
	.name = "ranked",
	.item_destroy = rank_churn_item_destroy,
};

struct rank_churn {
	ureg_registry *reg;
	double deadline;
	atomic_bool stop;
	_Atomic uint64_t floor[RANK_CHURN_KEYS];
	struct rank_churn_result r;
	pthread_mutex_t lock; /* merges per-thread counts into r */
	uint64_t seed;
};

static double rank_churn_now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

static struct rank_churn_item *rank_churn_item(int rank)
{
	struct rank_churn_item *it = malloc(sizeof(*it));

	if (!it)
		abort();
	it->magic = RANK_CHURN_ALIVE;
	it->rank = rank;
	return it;
}

static void rank_churn_key(char *buf, size_t n, int k)
{
	snprintf(buf, n, "ranked-%d", k);
}

#define RANK_CHURN_FLOOR(seq, rank) (((uint64_t)(seq) << 32) | (uint32_t)(rank))

static bool rank_churn_list_ok(const struct ureg_provider_info *p, int n, int top)
{
	int act_s = 0, act_f = 0, last_s = 1 << 30, last_f = 1 << 30;

	for (int i = 0; i < n; i++) {
		int *last = p[i].what == UREG_SINGLETON ? &last_s : &last_f;

		if (p[i].rank >= *last)
			return false; /* not strictly ordered within a kind */
		if (p[i].active) {
			if (*last != 1 << 30)
				return false; /* active but not the top of its kind */
			*(p[i].what == UREG_SINGLETON ? &act_s : &act_f) += 1;
		}
		*last = p[i].rank;
	}
	for (int i = 0; i < n && top >= 0; i++)
		if (p[i].what == UREG_SINGLETON) {
			if (p[i].rank < top)
				return false; /* the top singleton below the floor */
			break;
		}
	return act_s == 1 && act_f == 1 && last_s == 0 && last_f == 0;
}

static void *rank_churn_reader(void *arg)
{
	struct rank_churn *c = arg;
	struct rank_churn_result mine = { 0 };
	ureg_key keys[RANK_CHURN_KEYS];
	char names[RANK_CHURN_KEYS][32];
	struct ureg_provider_info list[2 * (RANK_CHURN_RANKS + 1)];
	uint64_t x = c->seed | 1;

	for (int k = 0; k < RANK_CHURN_KEYS; k++) {
		rank_churn_key(names[k], sizeof(names[k]), k);
		if (ureg_key_init_cached(&keys[k], names[k]))
			abort();
	}
	while (!atomic_load_explicit(&c->stop, memory_order_relaxed)) {
		int k, rc;
		uint64_t f1, f2;
		void *p = NULL;

		x ^= x << 13;
		x ^= x >> 7;
		x ^= x << 17;
		k = (int)(x % RANK_CHURN_KEYS);
		f1 = atomic_load(&c->floor[k]);
		ureg_read_lock();
		switch ((x >> 8) % 4) {
		case 0: rc = ureg_lookup(c->reg, names[k], &p); break;
		case 1: rc = ureg_lookup_key(c->reg, &keys[k], &p); break;
		case 2: rc = ureg_get(c->reg, names[k], NULL, &p); break;
		default:
			rc = ureg_providers(c->reg, names[k], list,
					    sizeof(list) / sizeof(list[0]));
			f2 = atomic_load(&c->floor[k]);
			if (rc < 0)
				mine.misses++;
			else if (!rank_churn_list_ok(list, rc,
						     f1 == f2 ? (int)(uint32_t)f1 : -1))
				mine.bad_lists++;
			ureg_read_unlock();
			mine.lookups++;
			continue;
		}
		f2 = atomic_load(&c->floor[k]);
		if (rc) {
			mine.misses++;
		} else {
			struct rank_churn_item *it = p;

			if (it->magic != RANK_CHURN_ALIVE)
				mine.dead++;
			else if (f1 == f2) {
				mine.checked++;
				if (it->rank < (int)(uint32_t)f1)
					mine.too_low++;
			}
		}
		ureg_read_unlock();
		mine.lookups++;
	}
	pthread_mutex_lock(&c->lock);
	c->r.lookups += mine.lookups;
	c->r.checked += mine.checked;
	c->r.misses += mine.misses;
	c->r.too_low += mine.too_low;
	c->r.dead += mine.dead;
	c->r.bad_lists += mine.bad_lists;
	pthread_mutex_unlock(&c->lock);
	return NULL;
}

struct rank_churn_writer {
	struct rank_churn *c;
	int first, n; /* keys first .. first + n - 1 */
};

static void *rank_churn_write(void *arg)
{
	struct rank_churn_writer *w = arg;
	struct rank_churn *c = w->c;
	struct rank_churn_result mine = { 0 };
	bool sing[RANK_CHURN_KEYS][RANK_CHURN_RANKS + 1] = { { false } };
	bool fac[RANK_CHURN_KEYS][RANK_CHURN_RANKS + 1] = { { false } };
	uint32_t seq[RANK_CHURN_KEYS] = { 0 };
	int top[RANK_CHURN_KEYS] = { 0 };
	uint64_t x = (c->seed + (uint64_t)w->first * 7919u) | 1;
	struct ureg_factory f = { .create = rank_churn_create };
	char name[32];

	for (int k = 0; k < RANK_CHURN_KEYS; k++)
		sing[k][0] = fac[k][0] = true;
	while (!atomic_load_explicit(&c->stop, memory_order_relaxed)) {
		int k, r;

		x ^= x << 13;
		x ^= x >> 7;
		x ^= x << 17;
		k = w->first + (int)(x % (uint64_t)w->n);
		r = 1 + (int)((x >> 8) % RANK_CHURN_RANKS);
		rank_churn_key(name, sizeof(name), k);
		if ((x >> 16) & 1) {
			/* the factory side: no floor, ranked the same way */
			if (!fac[k][r]) {
				mine.failures += ureg_register_factory_ranked(c->reg, name, &f, r) != 0;
				fac[k][r] = true;
			} else {
				mine.failures += ureg_unregister_ranked(c->reg, name, UREG_FACTORY, r) != 0;
				fac[k][r] = false;
			}
		} else if (!sing[k][r]) {
			struct rank_churn_item *it = rank_churn_item(r);

			if (ureg_register_ranked(c->reg, name, it, r)) {
				mine.failures++;
				free(it);
			}
			sing[k][r] = true;
			if (r > top[k]) {
				top[k] = r;
				atomic_store(&c->floor[k], RANK_CHURN_FLOOR(++seq[k], r));
			}
		} else if (r == top[k]) {
			int next = r - 1;

			while (!sing[k][next])
				next--;
			atomic_store(&c->floor[k], RANK_CHURN_FLOOR(++seq[k], next));
			mine.failures += ureg_unregister(c->reg, name, UREG_SINGLETON) != 0;
			sing[k][r] = false;
			top[k] = next;
		} else {
			mine.failures += ureg_unregister_ranked(c->reg, name, UREG_SINGLETON, r) != 0;
			sing[k][r] = false;
		}
		mine.writes++;
		if (w->first == 0 && (x >> 20) % 64 == 0) {
			/* a batch elsewhere: every ranked key is copied */
			ureg_batch *b;

			if (ureg_batch_new(c->reg, &b) ||
			    ureg_batch_put(b, "unranked", rank_churn_item(0), NULL, NULL) ||
			    ureg_batch_commit(b, 0))
				mine.failures++;
			mine.batches++;
		}
		if ((mine.writes & 255) == 0 && rank_churn_now() >= c->deadline)
			atomic_store(&c->stop, true);
	}
	pthread_mutex_lock(&c->lock);
	c->r.writes += mine.writes;
	c->r.batches += mine.batches;
	c->r.failures += mine.failures;
	pthread_mutex_unlock(&c->lock);
	return NULL;
}

/* @readers reader threads, 2 writers, for @seconds.  0 or -1 (setup). */
static int rank_churn_run(int readers, double seconds, uint64_t seed,
			  struct rank_churn_result *out)
{
	static struct rank_churn c; /* large; one run per process */
	pthread_t *th;
	struct rank_churn_writer ws[2] = {
		{ &c, 0, RANK_CHURN_KEYS / 2 },
		{ &c, RANK_CHURN_KEYS / 2, RANK_CHURN_KEYS - RANK_CHURN_KEYS / 2 },
	};
	struct ureg_factory f = { .create = rank_churn_create };
	char name[32];
	int n = 0;

	pthread_mutex_init(&c.lock, NULL);
	c.seed = seed;
	if (ureg_registry_new(&rank_churn_type, "ranked", &c.reg))
		return -1;
	for (int k = 0; k < RANK_CHURN_KEYS; k++) {
		rank_churn_key(name, sizeof(name), k);
		if (ureg_register(c.reg, name, rank_churn_item(0)) ||
		    ureg_register_factory(c.reg, name, &f))
			return -1;
		atomic_store(&c.floor[k], RANK_CHURN_FLOOR(0, 0));
	}
	th = calloc((size_t)readers + 2, sizeof(*th));
	if (!th)
		return -1;
	c.deadline = rank_churn_now() + seconds;
	for (int i = 0; i < readers; i++)
		if (pthread_create(&th[n], NULL, rank_churn_reader, &c) == 0)
			n++;
	for (int i = 0; i < 2; i++)
		if (pthread_create(&th[n], NULL, rank_churn_write, &ws[i]) == 0)
			n++;
	if (n < readers + 2)
		atomic_store(&c.stop, true);
	for (int i = 0; i < n; i++)
		pthread_join(th[i], NULL);
	free(th);
	ureg_registry_destroy(c.reg);
	*out = c.r;
	return n == readers + 2 ? 0 : -1;
}

#endif /* UREG_RANK_CHURN_H */
