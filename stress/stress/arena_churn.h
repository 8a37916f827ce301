/* SPDX-License-Identifier: MIT */
/*
 * arena_churn - the hostile workload for the jemalloc arena layer, shared by
 * `ureg-stress --mode arenas` and tests/core/test_arena_churn.c.
 *
 * Threads that each, in a loop, create a DEDICATED context, allocate 1..16
 * blocks of 16 B..4 MiB in it (log-uniform sizes), write a pattern over
 * every page of each block, check it, free some blocks one by one and
 * destroy the context, next to threads that do the same in SHARED
 * contexts and threads doing plain malloc/free (jemalloc is the process
 * malloc in these programs, so this is traffic on jemalloc's automatic
 * arenas).  Any corruption shows as a pattern mismatch (counted) or a crash
 * inside jemalloc; on the ureg of 2026-11-26 (extent hooks that unmap in
 * retain mode) it crashed in mallocx in most 5 s runs.
 *
 * No sleeps: every thread runs flat out until the deadline.
 */
#ifndef UREG_ARENA_CHURN_H
#define UREG_ARENA_CHURN_H

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <ureg/ureg.h>
#include <ureg/ctx.h>

struct arena_churn_result {
	long dedicated_cycles;  /* dedicated contexts created and destroyed */
	long shared_cycles;     /* shared contexts created and destroyed */
	long malloc_ops;        /* plain malloc/free pairs */
	long bad_patterns;      /* blocks whose contents changed under us */
	long failures;          /* unexpected error codes */
	long eagain;            /* dedicated contexts refused (cap reached) */
};

struct arena_churn_shared {
	double deadline;
	atomic_long dedicated_cycles, shared_cycles, malloc_ops;
	atomic_long bad_patterns, failures, eagain;
};

struct arena_churn_thread {
	struct arena_churn_shared *sh;
	uint64_t seed;
	int kind; /* 0 dedicated, 1 shared, 2 malloc */
};

static inline double arena_churn_now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static inline uint64_t arena_churn_rand(uint64_t *s)
{
	/* xorshift64*: fast, good enough to pick sizes */
	*s ^= *s >> 12;
	*s ^= *s << 25;
	*s ^= *s >> 27;
	return *s * UINT64_C(2685821657736338717);
}

/* 16 B .. max_log2 bytes, log-uniform */
static inline size_t arena_churn_size(uint64_t *s, unsigned max_log2)
{
	unsigned lg = 4 + (unsigned)(arena_churn_rand(s) % (max_log2 - 3));
	size_t lo = (size_t)1 << lg;

	return lo + (size_t)(arena_churn_rand(s) % lo);
}

/* one byte per 4 KiB page plus both ends: cheap, touches every page */
static inline void arena_churn_fill(unsigned char *p, size_t n, unsigned char v)
{
	for (size_t i = 0; i < n; i += 4096)
		p[i] = v;
	p[n - 1] = v;
}

static inline int arena_churn_check(const unsigned char *p, size_t n, unsigned char v)
{
	for (size_t i = 0; i < n; i += 4096)
		if (p[i] != v)
			return 0;
	return p[n - 1] == v;
}

#define ARENA_CHURN_BLOCKS 16

static inline void arena_churn_ctx_cycle(struct arena_churn_thread *t, unsigned flags,
					 unsigned max_log2)
{
	struct arena_churn_shared *sh = t->sh;
	unsigned char *blk[ARENA_CHURN_BLOCKS];
	size_t len[ARENA_CHURN_BLOCKS];
	ureg_ctx *ctx = NULL;
	int rc = ureg_ctx_new("churn", flags, &ctx);

	if (rc == -EAGAIN && (flags & UREG_CTX_DEDICATED)) {
		atomic_fetch_add(&sh->eagain, 1);
		return;
	}
	if (rc != 0) {
		atomic_fetch_add(&sh->failures, 1);
		return;
	}
	unsigned n = 1 + (unsigned)(arena_churn_rand(&t->seed) % ARENA_CHURN_BLOCKS);
	for (unsigned i = 0; i < n; i++) {
		len[i] = arena_churn_size(&t->seed, max_log2);
		blk[i] = ureg_ctx_alloc(ctx, len[i]);
		if (!blk[i]) {
			atomic_fetch_add(&sh->failures, 1);
			n = i;
			break;
		}
		arena_churn_fill(blk[i], len[i], (unsigned char)(i * 37 + 1));
	}
	for (unsigned i = 0; i < n; i++)
		if (!arena_churn_check(blk[i], len[i], (unsigned char)(i * 37 + 1)))
			atomic_fetch_add(&sh->bad_patterns, 1);
	/* free every other block one by one; destroy drops the rest */
	for (unsigned i = 0; i < n; i += 2)
		ureg_ctx_free(ctx, blk[i]);
	ureg_ctx_destroy(ctx);
	atomic_fetch_add(flags & UREG_CTX_DEDICATED ? &sh->dedicated_cycles :
			 &sh->shared_cycles, 1);
}

static inline void arena_churn_malloc(struct arena_churn_thread *t)
{
	unsigned char *blk[ARENA_CHURN_BLOCKS];
	size_t len[ARENA_CHURN_BLOCKS];

	for (unsigned i = 0; i < ARENA_CHURN_BLOCKS; i++) {
		len[i] = arena_churn_size(&t->seed, 20);
		blk[i] = malloc(len[i]);
		if (!blk[i]) {
			atomic_fetch_add(&t->sh->failures, 1);
			len[i] = 0;
			continue;
		}
		arena_churn_fill(blk[i], len[i], (unsigned char)i);
	}
	for (unsigned i = 0; i < ARENA_CHURN_BLOCKS; i++) {
		if (!len[i])
			continue;
		if (!arena_churn_check(blk[i], len[i], (unsigned char)i))
			atomic_fetch_add(&t->sh->bad_patterns, 1);
		free(blk[i]);
	}
	atomic_fetch_add(&t->sh->malloc_ops, ARENA_CHURN_BLOCKS);
}

static inline void *arena_churn_thread_main(void *arg)
{
	struct arena_churn_thread *t = arg;

	while (arena_churn_now() < t->sh->deadline) {
		switch (t->kind) {
		case 0: arena_churn_ctx_cycle(t, UREG_CTX_DEDICATED, 22); break;
		case 1: arena_churn_ctx_cycle(t, UREG_CTX_SHARED, 17); break;
		default: arena_churn_malloc(t); break;
		}
	}
	return NULL;
}

/*
 * Run @dedicated + @shared + @mallocs threads for @seconds; 0 or -errno of
 * pthread_create.  The caller judges @res.
 */
static inline int arena_churn_run(unsigned dedicated, unsigned shared, unsigned mallocs,
				  double seconds, uint64_t seed,
				  struct arena_churn_result *res)
{
	unsigned n = dedicated + shared + mallocs;
	struct arena_churn_shared sh = { .deadline = arena_churn_now() + seconds };
	struct arena_churn_thread *t = calloc(n, sizeof(*t));
	pthread_t *tid = calloc(n, sizeof(*tid));
	unsigned started = 0;
	int rc = 0;

	memset(res, 0, sizeof(*res));
	if (!t || !tid) {
		free(t);
		free(tid);
		return -ENOMEM;
	}
	for (unsigned i = 0; i < n; i++) {
		t[i].sh = &sh;
		t[i].seed = seed * 0x9e3779b97f4a7c15ull + i + 1;
		t[i].kind = i < dedicated ? 0 : i < dedicated + shared ? 1 : 2;
		if (pthread_create(&tid[i], NULL, arena_churn_thread_main, &t[i])) {
			rc = -EAGAIN;
			sh.deadline = 0;
			break;
		}
		started++;
	}
	for (unsigned i = 0; i < started; i++)
		pthread_join(tid[i], NULL);
	res->dedicated_cycles = atomic_load(&sh.dedicated_cycles);
	res->shared_cycles = atomic_load(&sh.shared_cycles);
	res->malloc_ops = atomic_load(&sh.malloc_ops);
	res->bad_patterns = atomic_load(&sh.bad_patterns);
	res->failures = atomic_load(&sh.failures);
	res->eagain = atomic_load(&sh.eagain);
	free(t);
	free(tid);
	return rc;
}

#endif /* UREG_ARENA_CHURN_H */
