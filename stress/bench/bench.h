/* SPDX-License-Identifier: MIT */
/*
 * ureg-bench internals: what every implementation (ureg and the four
 * baselines) plugs into, and the one reader loop they all share.
 *
 * The one idea to keep in mind while reading the implementations: every
 * implementation does the SAME work per operation, so that a ratio means
 * something.  A reader operation is: take the key string the thread's
 * precomputed sequence names, hash it with XXH3_64bits(key, strlen(key))
 * (no precomputed hash anywhere), find the entry under the implementation's
 * own concurrency control (an RCU read section or a lock), read one field
 * of the item ("touch"), leave the section.  The loop around it is
 * bench_reader_loop() below, inlined into each implementation's file so
 * that no indirect call sits between the loop and the operation.
 *
 * Nothing on the hot path writes memory another thread reads: counters,
 * sums and latency samples live in the thread's own cache-line-aligned
 * struct bench_thread and are summed by the main thread after the join.
 */
#ifndef UREG_BENCH_H
#define UREG_BENCH_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <time.h>

#include <xxhash.h>

#if defined(__x86_64__) || defined(__i386__)
#include <x86intrin.h>
#define BENCH_HAVE_TSC 1
#else
#define BENCH_HAVE_TSC 0
#endif

#define BENCH_CACHELINE 128 /* two lines: the adjacent-line prefetcher pairs them */
#define BENCH_BATCH 64      /* operations between two looks at the stop flag */
#define BENCH_ITEM_BYTES 64 /* size of one factory-made instance */
#define BENCH_FACTORY_BATCH 1024 /* instances a thread keeps before freeing them */

enum bench_workload {
	WL_READ_ONLY,
	WL_READ_MOSTLY,
	WL_CHURN,
	WL_FACTORY,
	WL_CONTEXT_GET,
	/* ureg's key handles: the read-only / read-mostly access pattern,
	 * ureg looking up through a key handle made once per key (plain or
	 * cached); the baselines, having no handles, run their string
	 * lookups, so that a ratio says what a handle buys over them */
	WL_HANDLE,
	WL_CACHED_HANDLE,
	WL_HANDLE_MOSTLY,
	WL_CACHED_HANDLE_MOSTLY,
	/* The instruction floor (stress/bench/instructions.sh), not a
	 * comparison: "section" runs the same loop with the read section
	 * only (ureg: ureg_read_lock/unlock, inline; cds_lfht and ck_hs: raw
	 * urcu_memb_read_lock/unlock) around reading one field of a fixed
	 * item, no lookup; "loop" reads that field with no section at all.
	 * The GLib baselines run their lookups for them. */
	WL_SECTION,
	WL_LOOP,
	WL_COUNT
};

/* Whether @w runs read-mostly's writer (one replace every 100 us). */
static inline int bench_replaces(enum bench_workload w)
{
	return w == WL_READ_MOSTLY || w == WL_HANDLE_MOSTLY ||
	       w == WL_CACHED_HANDLE_MOSTLY;
}

/* Whether @w looks up through ureg key handles (and which kind). */
static inline int bench_uses_handles(enum bench_workload w)
{
	return w >= WL_HANDLE && w <= WL_CACHED_HANDLE_MOSTLY;
}

static inline int bench_cached_handles(enum bench_workload w)
{
	return w == WL_CACHED_HANDLE || w == WL_CACHED_HANDLE_MOSTLY;
}

/*
 * Every looked-up key string (the strings the sequences point to) is
 * preceded by BENCH_KEY_PREFIX bytes an implementation may use for a
 * per-key handle (ureg keeps its ureg_key there), in a 64-byte block of
 * its own: prefix + string.  Every implementation reads the same string
 * at the same place, so the layout favours none of them.
 */
#define BENCH_KEY_PREFIX 48

/* Whether @w's table holds factories (else singletons). */
static inline int bench_wants_factories(enum bench_workload w)
{
	return w == WL_FACTORY || w == WL_CONTEXT_GET;
}

enum bench_role { ROLE_READER, ROLE_WRITER, ROLE_SETUP };

/* A key as the baselines store and compare it: string plus length. */
struct bench_key {
	const char *key;
	size_t len;
};

/*
 * One thread of one run.  Aligned and padded so that no two threads share
 * a cache line (nor an adjacent-line prefetch pair).
 */
struct bench_thread {
	_Alignas(BENCH_CACHELINE)
	/* read-only during the run */
	unsigned index;               /* 0..threads-1 (readers), writers follow */
	enum bench_workload workload;
	const char *const *seq;       /* key strings to look up, in order */
	size_t seq_mask;              /* seq length - 1 (a power of two) */
	unsigned sample_every;        /* time one op out of this many */
	const atomic_bool *stop;      /* set once by the main thread */
	uint64_t max_ops;             /* also stop after this many (warm-up) */
	uint32_t *samples;            /* latency samples, in timer ticks */
	size_t sample_cap;            /* capacity of @samples (a power of two) */
	void *state;                  /* implementation's per-thread state */
	/* written by the owning thread only */
	size_t sample_count;          /* samples taken (wraps over @samples) */
	uint64_t ops;                 /* completed operations */
	uint64_t misses;              /* operations that found nothing */
	uint64_t sink;                /* sum of touched fields: keeps work real */
	uint64_t elapsed_ns;          /* the thread's own timed interval */
	uint64_t writes;              /* writer threads: mutations done */
	int error;                    /* first error the thread hit, or 0 */
};

/*
 * struct bench_impl - one implementation under test.
 * @name:          "ureg", "cds_lfht", "ck_hs", "rwlock" or "mutex".
 * @create:        build a table for workload @w holding keys 0..@nkeys-1
 *                 of bench_keys, each with bench_value(i): singletons, or
 *                 for factory (TRANSIENT) and context-get (CONTEXT scope)
 *                 factories whose instances carry that value.
 *                 Runs on a thread that has called @thread_enter(ROLE_SETUP).
 * @destroy:       free the table (same kind of thread, no reader running).
 * @thread_enter:  per-thread setup before any operation (RCU registration,
 *                 per-thread context or cache); stores state in t->state.
 * @thread_exit:   undo @thread_enter (frees per-thread instances too).
 * @read_loop:     run t->workload's reader loop until *t->stop.
 * @replace:       swap the item under keys[i] for a fresh one with @value.
 * @remove:        unregister keys[i] (0 or -ENOENT).
 * @insert:        register keys[i] with a fresh item (0 or -EEXIST).
 */
struct bench_impl {
	const char *name;
	int (*create)(size_t nkeys, enum bench_workload w, void **table);
	void (*destroy)(void *table);
	int (*thread_enter)(void *table, enum bench_role role,
			    struct bench_thread *t);
	void (*thread_exit)(void *table, enum bench_role role,
			    struct bench_thread *t);
	void (*read_loop)(void *table, struct bench_thread *t);
	int (*replace)(void *table, size_t i, uint64_t value);
	int (*remove)(void *table, size_t i);
	int (*insert)(void *table, size_t i, uint64_t value);
};

extern const struct bench_impl bench_impl_ureg;
extern const struct bench_impl bench_impl_lfht;
extern const struct bench_impl bench_impl_ck;
extern const struct bench_impl bench_impl_rwlock;
extern const struct bench_impl bench_impl_mutex;

/* The key strings every implementation registers (index i -> string). */
extern const char *const *bench_keys;
/* The copies the readers look up with (index i -> string), each preceded
 * by BENCH_KEY_PREFIX bytes of handle room. */
extern char *const *bench_lookup_keys;
extern size_t bench_nkeys;

/* The fixed item of the "section" and "loop" workloads (extern, so that
 * the compiler cannot fold its field into a constant). */
extern struct bench_fixed_item {
	uint64_t value;
} bench_fixed_item;

static inline uint64_t bench_op_loop(void *table, struct bench_thread *t,
				     const char *key)
{
	(void)table;
	(void)t;
	(void)key;
	return bench_fixed_item.value;
}

/*
 * The hash every implementation uses, computed per operation from the key
 * string exactly as ureg does (length first, then XXH3_64bits).
 */
static inline uint64_t bench_hash(const char *key, size_t len)
{
	return XXH3_64bits(key, len);
}

/* The value stored in (and read back from) the item of key @i: never 0,
 * so a reader can tell a hit (non-zero) from a miss (0). */
static inline uint64_t bench_value(size_t i)
{
	return (uint64_t)i + 1;
}

/* ---- factory-made instances, identical for every implementation ---- */

struct bench_instance {
	uint64_t value;
	uint64_t created_by;
	char payload[BENCH_ITEM_BYTES - 2 * sizeof(uint64_t)];
};

/* Fill a freshly allocated instance: the "constructor" work of a factory. */
static inline void bench_instance_init(struct bench_instance *in,
				       uint64_t value)
{
	in->value = value;
	in->created_by = value ^ 0x9e3779b97f4a7c15ull;
	memset(in->payload, 0x5a, sizeof(in->payload));
}

/* ---- timer: TSC where it is invariant, else CLOCK_MONOTONIC ---- */

extern bool bench_use_tsc;

static inline uint64_t bench_now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* Timestamp for a latency sample.  The fences keep the timed operation
 * between the two reads (rdtsc alone may be reordered around it). */
static inline __attribute__((always_inline)) uint64_t bench_ticks(void)
{
#if BENCH_HAVE_TSC
	if (bench_use_tsc) {
		_mm_lfence();
		uint64_t t = __rdtsc();
		_mm_lfence();
		return t;
	}
#endif
	return bench_now_ns();
}

static inline __attribute__((always_inline)) void
bench_sample(struct bench_thread *t, uint64_t ticks)
{
	t->samples[t->sample_count++ & (t->sample_cap - 1)] =
		ticks > UINT32_MAX ? UINT32_MAX : (uint32_t)ticks;
}

/*
 * bench_reader_loop - the reader loop every implementation runs.
 * @table: the implementation's table.
 * @t:     this thread.
 * @op:    one operation on @key: returns the touched field (non-zero) or 0
 *         when nothing was found.  Must be a static function of the
 *         caller's file so that it is inlined here.
 *
 * Runs until *t->stop or t->max_ops operations, looking every BENCH_BATCH
 * operations;
 * times one operation in t->sample_every.  Writes only to @t.
 */
typedef uint64_t bench_op_fn(void *table, struct bench_thread *t,
			     const char *key);

static inline __attribute__((always_inline)) void
bench_reader_loop(void *table, struct bench_thread *t, bench_op_fn *op)
{
	const char *const *seq = t->seq;
	const size_t mask = t->seq_mask;
	const unsigned every = t->sample_every;
	const uint64_t max_ops = t->max_ops;
	unsigned until_sample = every;
	uint64_t ops = 0, misses = 0, sink = 0;
	size_t i = 0;
	uint64_t start = bench_now_ns();

	for (;;) {
		for (unsigned b = 0; b < BENCH_BATCH; b++) {
			const char *key = seq[i++ & mask];
			uint64_t v;
			if (__builtin_expect(--until_sample == 0, 0)) {
				until_sample = every;
				uint64_t t0 = bench_ticks();
				v = op(table, t, key);
				uint64_t t1 = bench_ticks();
				bench_sample(t, t1 - t0);
			} else {
				v = op(table, t, key);
			}
			misses += v == 0;
			sink += v;
		}
		ops += BENCH_BATCH;
		if (atomic_load_explicit(t->stop, memory_order_relaxed) ||
		    ops >= max_ops)
			break;
	}
	t->elapsed_ns = bench_now_ns() - start;
	t->ops = ops;
	t->misses = misses;
	t->sink = sink;
}

/* Per-thread list of factory-made instances, freed every
 * BENCH_FACTORY_BATCH creations (the "factory" workload). */
struct bench_instance_list {
	unsigned n;
	void *items[BENCH_FACTORY_BATCH];
};

#endif /* UREG_BENCH_H */
