/* SPDX-License-Identifier: MIT */
/*
 * Readers that must never see a reload half applied, shared by the file
 * reload test (tests/config) and the etcd-driven one (tests/etcd).
 *
 * The document (torn_doc) has a registry "pair" whose entries "left" and
 * "right" carry the same tag in every reload.  TORN_READERS threads look
 * both up in one read section, over and over, and count the sections that
 * saw two different tags (or, with @gens, two different entry
 * generations): a torn view.  The reloading thread calls
 * torn_wait_progress() before each reload so that every reload overlaps
 * reads, without sleeping.
 */
#ifndef UREG_TESTS_TORN_READERS_H
#define UREG_TESTS_TORN_READERS_H

#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdbool.h>
#include "config_test.h"

#define TORN_READERS 8

struct torn {
	ureg_registry *reg;
	bool gens;                        /* compare entry generations too */
	atomic_bool stop;
	atomic_long seen, reads, errors;
	pthread_barrier_t start;
	pthread_t th[TORN_READERS];
};

static void *torn_reader(void *arg)
{
	struct torn *t = arg;

	pthread_barrier_wait(&t->start);
	while (!atomic_load_explicit(&t->stop, memory_order_relaxed)) {
		void *a, *b;
		struct ureg_entry_info ia = {0}, ib = {0};
		int bad;

		ureg_read_lock();
		bad = ureg_lookup(t->reg, "left", &a) || ureg_lookup(t->reg, "right", &b) ||
		      (t->gens && (ureg_entry_info(t->reg, "left", &ia) ||
				   ureg_entry_info(t->reg, "right", &ib)));
		if (bad) {
			atomic_fetch_add(&t->errors, 1);
		} else {
			const struct titem *l = a, *r = b;

			if (l->magic != TITEM_MAGIC || r->magic != TITEM_MAGIC)
				atomic_fetch_add(&t->errors, 1);
			else if (l->tag != r->tag || ia.generation != ib.generation)
				atomic_fetch_add(&t->seen, 1);
		}
		ureg_read_unlock();
		atomic_fetch_add_explicit(&t->reads, 1, memory_order_relaxed);
	}
	return NULL;
}

/* The document of reload @tag (free it). */
static char *torn_doc(int tag)
{
	char *y;

	cr_assert(asprintf(&y,
		"registries:\n"
		"  - name: pair\n"
		"    type: base\n"
		"    entries:\n"
		"      - {key: left, kind: singleton, provider: test.item, params: {tag: %d}}\n"
		"      - {key: other, kind: singleton, provider: test.item}\n"
		"      - {key: right, kind: singleton, provider: test.item, params: {tag: %d}}\n",
		tag, tag) > 0);
	return y;
}

/* Start the readers on @reg; returns once they are all running. */
static void torn_start(struct torn *t, ureg_registry *reg, bool gens)
{
	cr_assert_not_null(reg);
	t->reg = reg;
	t->gens = gens;
	atomic_init(&t->stop, false);
	atomic_init(&t->seen, 0);
	atomic_init(&t->reads, 0);
	atomic_init(&t->errors, 0);
	pthread_barrier_init(&t->start, NULL, TORN_READERS + 1);
	for (int i = 0; i < TORN_READERS; i++)
		cr_assert_eq(pthread_create(&t->th[i], NULL, torn_reader, t), 0);
	pthread_barrier_wait(&t->start);
}

/* Wait until the readers made progress since the call (no sleep). */
static void torn_wait_progress(struct torn *t)
{
	long before = atomic_load(&t->reads);

	while (atomic_load(&t->reads) < before + TORN_READERS)
		sched_yield();
}

/* Stop and join the readers, then check that none saw a torn view or
 * failed a lookup, and that they read at least TORN_READERS times per
 * one of @reloads. */
static void torn_finish(struct torn *t, int reloads)
{
	atomic_store(&t->stop, true);
	for (int i = 0; i < TORN_READERS; i++)
		pthread_join(t->th[i], NULL);
	pthread_barrier_destroy(&t->start);
	cr_assert_eq(atomic_load(&t->errors), 0);
	cr_assert_eq(atomic_load(&t->seen), 0, "a reader saw left and right of different reloads");
	cr_assert_geq(atomic_load(&t->reads), (long)reloads * TORN_READERS);
}

#endif /* UREG_TESTS_TORN_READERS_H */
