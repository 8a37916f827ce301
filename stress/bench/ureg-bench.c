/* SPDX-License-Identifier: MIT */
/*
 * ureg-bench - ureg against four baselines, side by side, in one process:
 * same keys, same hash, same per-thread key sequences, same machine.
 *
 * A run is a grid of cells (workload x keys x threads x implementation).
 * For every (workload, keys) pair each implementation builds its table
 * once; then for every thread count and every repeat the implementations
 * run one after the other, so slow drift of a noisy machine spreads over
 * all of them instead of favouring one.  A cell run is:
 *
 *   1. start the reader threads (and the workload's writer threads); each
 *      enters the implementation (RCU registration, per-thread context)
 *      and warms up on every key, untimed;
 *   2. all meet at a barrier; the main thread sleeps --seconds, then sets
 *      the stop flag that the readers look at every BENCH_BATCH operations;
 *   3. each reader reports its own operation count and timed interval;
 *      one operation in --sample-every was timed into the thread's own
 *      sample array.  The main thread sums and merges after the join.
 *
 * See stress/README.md for the workloads and how to read the numbers.
 */
#include <dlfcn.h>
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/utsname.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>

#include "bench.h"
#include "../tool_opts.h"

#ifndef BENCH_LIBS
#define BENCH_LIBS "unknown"
#endif

#define MAX_THREADS 4096
#define SAMPLE_CAP (1u << 18)          /* per thread, power of two */
#define READ_MOSTLY_PERIOD_NS 100000   /* one replace every 100 us */
#define MIN_WARM_OPS 8192

static const char *const workload_names[WL_COUNT] = {
	"read-only", "read-mostly", "churn", "factory", "context-get",
	"handle", "cached-handle", "handle-mostly", "cached-handle-mostly",
	"section", "loop",
};

static const struct bench_impl *const all_impls[] = {
	&bench_impl_ureg, &bench_impl_lfht, &bench_impl_ck,
	&bench_impl_rwlock, &bench_impl_mutex,
};
#define N_IMPLS (sizeof(all_impls) / sizeof(all_impls[0]))

const char *const *bench_keys;
char *const *bench_lookup_keys;
size_t bench_nkeys;
bool bench_use_tsc;
struct bench_fixed_item bench_fixed_item = { 1 };

/* ------------------------------------------------------------------ */
/* Options                                                             */
/* ------------------------------------------------------------------ */

struct options {
	double seconds;
	unsigned threads[64];
	size_t n_threads;
	size_t keys[16];
	size_t n_keys;
	bool workloads[WL_COUNT];
	bool impls[N_IMPLS];
	bool json;
	unsigned repeat;
	unsigned sample_every;
	unsigned churn_writers;
	uint64_t ops; /* 0: run for --seconds */
	int progress; /* -1: when stderr is a terminal, 0: never, 1: always */
};

static void usage(FILE *f)
{
	fprintf(f,
"usage: ureg-bench [options]\n"
"  --seconds S        timed seconds per cell run (default 0.5)\n"
"  --threads LIST     reader thread counts, e.g. 1,2,8 (default 1,2,<cores>)\n"
"  --keys LIST        registry sizes (default 16,1000,100000)\n"
"  --workload LIST    read-only,read-mostly,churn,factory,context-get,handle,\n"
"                     cached-handle,handle-mostly,cached-handle-mostly\n"
"                     (default all of these); section,loop: the instruction\n"
"                     floor for instructions.sh (read section only / nothing)\n"
"  --impl LIST        ureg,cds_lfht,ck_hs,rwlock,mutex (default all)\n"
"  --repeat N         runs per cell; every number is the median (default 1)\n"
"  --json             one JSON document on stdout instead of the table\n"
"  --sample-every N   time one operation in N for latency (default 61)\n"
"  --writers N        writer threads of the churn workload (default 1)\n"
"  --ops N            each reader stops after N timed operations instead of\n"
"                     after --seconds (for instruction counts: see\n"
"                     stress/bench/instructions.sh)\n"
"  --progress / --no-progress\n"
"                     force / silence the progress line on stderr (default:\n"
"                     shown on a terminal when the run takes over 3 s)\n"
"  -h, --help         this text, on stdout\n"
"  -V, --version      the program and libureg version\n"
"Exit status: 0 done, 1 a run failed (a table could not be built, a thread\n"
"not started, the JSON not written), 2 usage error.\n");
}

static _Noreturn void die_usage(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	fprintf(stderr, "ureg-bench: ");
	vfprintf(stderr, fmt, ap);
	fprintf(stderr, "\n");
	va_end(ap);
	usage(stderr);
	exit(TOOL_EXIT_USAGE);
}

static unsigned long parse_ulong(const char *s, const char *what,
				 unsigned long min, unsigned long max)
{
	unsigned long v;

	if (!tool_parse_ulong(s, min, max, &v))
		die_usage("bad %s '%s' (%lu..%lu)", what, s, min, max);
	return v;
}

/* Split a comma-separated LIST and call @fn on each element. */
static void for_each_item(const char *list, const char *what,
			  void (*fn)(const char *item, void *arg), void *arg)
{
	char *copy = strdup(list), *save = NULL;
	if (copy == NULL)
		die_usage("out of memory");
	int n = 0;
	for (char *tok = strtok_r(copy, ",", &save); tok != NULL;
	     tok = strtok_r(NULL, ",", &save), n++)
		fn(tok, arg);
	free(copy);
	if (n == 0)
		die_usage("empty %s list", what);
}

static void add_thread_count(const char *item, void *arg)
{
	struct options *o = arg;
	if (o->n_threads == sizeof(o->threads) / sizeof(o->threads[0]))
		die_usage("too many thread counts");
	o->threads[o->n_threads++] =
		(unsigned)parse_ulong(item, "thread count", 1, MAX_THREADS);
}

static void add_key_count(const char *item, void *arg)
{
	struct options *o = arg;
	if (o->n_keys == sizeof(o->keys) / sizeof(o->keys[0]))
		die_usage("too many key counts");
	o->keys[o->n_keys++] = parse_ulong(item, "key count", 1, 10000000);
}

static void add_workload(const char *item, void *arg)
{
	bool *sel = arg;
	for (int w = 0; w < WL_COUNT; w++) {
		if (strcmp(item, workload_names[w]) == 0) {
			sel[w] = true;
			return;
		}
	}
	die_usage("unknown workload '%s'", item);
}

static void add_impl(const char *item, void *arg)
{
	bool *sel = arg;
	for (size_t i = 0; i < N_IMPLS; i++) {
		if (strcmp(item, all_impls[i]->name) == 0) {
			sel[i] = true;
			return;
		}
	}
	die_usage("unknown implementation '%s'", item);
}

static int cmp_unsigned(const void *a, const void *b)
{
	unsigned x = *(const unsigned *)a, y = *(const unsigned *)b;
	return (x > y) - (x < y);
}

static int cmp_size(const void *a, const void *b)
{
	size_t x = *(const size_t *)a, y = *(const size_t *)b;
	return (x > y) - (x < y);
}

/* Sort and drop duplicates. */
static size_t uniq_unsigned(unsigned *v, size_t n)
{
	qsort(v, n, sizeof(*v), cmp_unsigned);
	size_t m = 0;
	for (size_t i = 0; i < n; i++)
		if (m == 0 || v[m - 1] != v[i])
			v[m++] = v[i];
	return m;
}

static size_t uniq_size(size_t *v, size_t n)
{
	qsort(v, n, sizeof(*v), cmp_size);
	size_t m = 0;
	for (size_t i = 0; i < n; i++)
		if (m == 0 || v[m - 1] != v[i])
			v[m++] = v[i];
	return m;
}

static unsigned online_cores(void)
{
	long n = sysconf(_SC_NPROCESSORS_ONLN);
	return n > 0 ? (unsigned)n : 1;
}

static void parse_options(int argc, char **argv, struct options *o)
{
	enum { O_SECONDS = 256, O_THREADS, O_KEYS, O_WORKLOAD, O_IMPL, O_JSON,
	       O_REPEAT, O_SAMPLE, O_WRITERS, O_PROGRESS, O_NO_PROGRESS, O_OPS };
	static const struct option longopts[] = {
		{ "seconds", required_argument, NULL, O_SECONDS },
		{ "threads", required_argument, NULL, O_THREADS },
		{ "keys", required_argument, NULL, O_KEYS },
		{ "workload", required_argument, NULL, O_WORKLOAD },
		{ "workloads", required_argument, NULL, O_WORKLOAD },
		{ "impl", required_argument, NULL, O_IMPL },
		{ "impls", required_argument, NULL, O_IMPL },
		{ "json", no_argument, NULL, O_JSON },
		{ "repeat", required_argument, NULL, O_REPEAT },
		{ "sample-every", required_argument, NULL, O_SAMPLE },
		{ "writers", required_argument, NULL, O_WRITERS },
		{ "ops", required_argument, NULL, O_OPS },
		{ "progress", no_argument, NULL, O_PROGRESS },
		{ "no-progress", no_argument, NULL, O_NO_PROGRESS },
		{ "help", no_argument, NULL, 'h' },
		{ "version", no_argument, NULL, 'V' },
		{ NULL, 0, NULL, 0 },
	};
	bool any_wl = false, any_impl = false;

	memset(o, 0, sizeof(*o));
	o->seconds = 0.5;
	o->repeat = 1;
	o->sample_every = 61; /* prime: never in step with periodic work */
	o->churn_writers = 1;
	o->progress = -1;

	int c;
	while ((c = getopt_long(argc, argv, "hV", longopts, NULL)) != -1) {
		switch (c) {
		case O_SECONDS:
			if (!tool_parse_double(optarg, 0.01, 3600, &o->seconds))
				die_usage("bad --seconds '%s' (0.01..3600)", optarg);
			break;
		case O_THREADS:
			o->n_threads = 0;
			for_each_item(optarg, "thread", add_thread_count, o);
			break;
		case O_KEYS:
			o->n_keys = 0;
			for_each_item(optarg, "key", add_key_count, o);
			break;
		case O_WORKLOAD:
			if (!any_wl)
				memset(o->workloads, 0, sizeof(o->workloads));
			any_wl = true;
			for_each_item(optarg, "workload", add_workload, o->workloads);
			break;
		case O_IMPL:
			if (!any_impl)
				memset(o->impls, 0, sizeof(o->impls));
			any_impl = true;
			for_each_item(optarg, "impl", add_impl, o->impls);
			break;
		case O_JSON:
			o->json = true;
			break;
		case O_REPEAT:
			o->repeat = (unsigned)parse_ulong(optarg, "--repeat", 1, 1000);
			break;
		case O_SAMPLE:
			o->sample_every = (unsigned)parse_ulong(optarg,
				"--sample-every", 1, 1000000);
			break;
		case O_WRITERS:
			o->churn_writers = (unsigned)parse_ulong(optarg,
				"--writers", 1, 256);
			break;
		case O_OPS:
			o->ops = parse_ulong(optarg, "--ops", 1, ULONG_MAX);
			break;
		case O_PROGRESS:
			o->progress = 1;
			break;
		case O_NO_PROGRESS:
			o->progress = 0;
			break;
		case 'h':
			usage(stdout);
			exit(TOOL_EXIT_OK);
		case 'V':
			tool_print_version("ureg-bench");
			exit(TOOL_EXIT_OK);
		default:
			usage(stderr);
			exit(TOOL_EXIT_USAGE);
		}
	}
	if (optind != argc)
		die_usage("unexpected argument '%s'", argv[optind]);
	if (!any_wl)
		for (int w = 0; w < WL_SECTION; w++) /* not the floor ones */
			o->workloads[w] = true;
	if (!any_impl)
		for (size_t i = 0; i < N_IMPLS; i++)
			o->impls[i] = true;
	if (o->n_threads == 0) {
		o->threads[o->n_threads++] = 1;
		o->threads[o->n_threads++] = 2;
		o->threads[o->n_threads++] = online_cores();
	}
	o->n_threads = uniq_unsigned(o->threads, o->n_threads);
	if (o->n_keys == 0) {
		o->keys[o->n_keys++] = 16;
		o->keys[o->n_keys++] = 1000;
		o->keys[o->n_keys++] = 100000;
	}
	o->n_keys = uniq_size(o->keys, o->n_keys);
}

/* ------------------------------------------------------------------ */
/* Timer calibration                                                   */
/* ------------------------------------------------------------------ */

static double ns_per_tick = 1.0;
static double timer_overhead_ticks;

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
	return (x > y) - (x < y);
}

/* The TSC is used only when the kernel says it is invariant. */
static bool tsc_is_invariant(void)
{
#if BENCH_HAVE_TSC
	FILE *f = fopen("/proc/cpuinfo", "r");
	char line[4096];
	bool constant = false, nonstop = false;
	if (f == NULL)
		return false;
	while (fgets(line, sizeof(line), f) != NULL) {
		if (strncmp(line, "flags", 5) != 0)
			continue;
		constant = strstr(line, " constant_tsc") != NULL;
		nonstop = strstr(line, " nonstop_tsc") != NULL;
		break;
	}
	fclose(f);
	return constant && nonstop;
#else
	return false;
#endif
}

static void calibrate_timer(void)
{
	bench_use_tsc = tsc_is_invariant();
	if (bench_use_tsc) {
		uint64_t n0 = bench_now_ns(), t0 = bench_ticks();
		struct timespec d = { 0, 50 * 1000 * 1000 };
		nanosleep(&d, NULL);
		uint64_t n1 = bench_now_ns(), t1 = bench_ticks();
		if (t1 > t0 && n1 > n0)
			ns_per_tick = (double)(n1 - n0) / (double)(t1 - t0);
		else
			bench_use_tsc = false;
	}
	enum { N = 10001 };
	static uint64_t d[N];
	for (int i = 0; i < N; i++) {
		uint64_t a = bench_ticks();
		uint64_t b = bench_ticks();
		d[i] = b - a;
	}
	qsort(d, N, sizeof(d[0]), cmp_u64);
	timer_overhead_ticks = (double)d[N / 2];
}

static double ticks_to_ns(uint32_t ticks)
{
	double ns = ((double)ticks - timer_overhead_ticks) * ns_per_tick;
	return ns > 0 ? ns : 0;
}

/* ------------------------------------------------------------------ */
/* Keys and per-thread key sequences                                   */
/* ------------------------------------------------------------------ */

/* Keys as registered (bench_keys) and a separate copy to look up with, so
 * no implementation can win by comparing a pointer with itself. */
static char **lookup_keys;

static void make_keys(size_t n)
{
	char **reg = malloc(n * sizeof(*reg));
	lookup_keys = malloc(n * sizeof(*lookup_keys));
	if (reg == NULL || lookup_keys == NULL)
		die_usage("out of memory for %zu keys", n);
	for (size_t i = 0; i < n; i++) {
		char buf[64];
		snprintf(buf, sizeof(buf), "svc.tool.%06zu", i);
		size_t len = strlen(buf);
		size_t block = (BENCH_KEY_PREFIX + len + 1 + 63) & ~(size_t)63;
		char *b = aligned_alloc(64, block);
		reg[i] = strdup(buf);
		if (reg[i] == NULL || b == NULL)
			die_usage("out of memory for %zu keys", n);
		memset(b, 0, BENCH_KEY_PREFIX);
		lookup_keys[i] = b + BENCH_KEY_PREFIX;
		memcpy(lookup_keys[i], buf, len + 1);
	}
	bench_keys = (const char *const *)reg;
	bench_lookup_keys = lookup_keys;
	bench_nkeys = n;
}

static uint64_t xorshift64(uint64_t *s)
{
	uint64_t x = *s;
	x ^= x << 13;
	x ^= x >> 7;
	x ^= x << 17;
	return *s = x;
}

static size_t pow2_at_least(size_t n)
{
	size_t p = 1;
	while (p < n)
		p <<= 1;
	return p;
}

/* Per-thread uniform random key sequences: thread j gets the same one in
 * every implementation. */
struct sequences {
	size_t nkeys;
	size_t len;              /* power of two */
	unsigned nthreads;
	const char **rand;       /* nthreads * len */
	const char **ordered;    /* warm-up: every key once, in order */
	size_t ordered_len;      /* power of two >= nkeys */
};

static void make_sequences(struct sequences *s, size_t nkeys, unsigned nthreads)
{
	s->nkeys = nkeys;
	s->len = pow2_at_least(nkeys * 2 > 65536 ? nkeys * 2 : 65536);
	s->nthreads = nthreads;
	s->rand = malloc((size_t)nthreads * s->len * sizeof(*s->rand));
	s->ordered_len = pow2_at_least(nkeys);
	s->ordered = malloc(s->ordered_len * sizeof(*s->ordered));
	if (s->rand == NULL || s->ordered == NULL)
		die_usage("out of memory for key sequences");
	for (unsigned j = 0; j < nthreads; j++) {
		uint64_t st = 0x9e3779b97f4a7c15ull * (j + 1);
		const char **seq = s->rand + (size_t)j * s->len;
		for (size_t i = 0; i < s->len; i++)
			seq[i] = lookup_keys[xorshift64(&st) % nkeys];
	}
	for (size_t i = 0; i < s->ordered_len; i++)
		s->ordered[i] = lookup_keys[i % nkeys];
}

static void free_sequences(struct sequences *s)
{
	free(s->rand);
	free(s->ordered);
}

/* ------------------------------------------------------------------ */
/* Running one cell                                                    */
/* ------------------------------------------------------------------ */

struct run {
	const struct bench_impl *impl;
	void *table;
	enum bench_workload workload;
	size_t nkeys;
	const struct sequences *seq;
	uint64_t ops;            /* --ops: readers stop after this many */
	atomic_bool stop;
	pthread_barrier_t start;
};

struct worker {
	struct run *run;
	struct bench_thread *t;
	enum bench_role role;
	pthread_t tid;
};

static const atomic_bool never_stop = false;

static void *reader_main(void *arg)
{
	struct worker *w = arg;
	struct run *r = w->run;
	struct bench_thread *t = w->t;

	t->error = r->impl->thread_enter(r->table, ROLE_READER, t);
	if (t->error == 0) {
		/* Warm up on every key once (context-get fills its cache). */
		t->seq = r->seq->ordered;
		t->seq_mask = r->seq->ordered_len - 1;
		t->stop = &never_stop;
		t->max_ops = r->nkeys > MIN_WARM_OPS ? r->nkeys : MIN_WARM_OPS;
		r->impl->read_loop(r->table, t);
		if (t->misses != 0 && r->workload != WL_CHURN)
			t->error = -ENOENT;
		t->seq = r->seq->rand + (size_t)t->index * r->seq->len;
		t->seq_mask = r->seq->len - 1;
		t->stop = &r->stop;
		t->max_ops = r->ops ? r->ops : UINT64_MAX;
		t->sample_count = 0;
	}
	pthread_barrier_wait(&r->start);
	if (t->error == 0) {
		r->impl->read_loop(r->table, t);
		/* every key is present in these workloads: a miss is a bug */
		if (t->misses != 0 && r->workload != WL_CHURN)
			t->error = -ENOENT;
	}
	r->impl->thread_exit(r->table, ROLE_READER, t);
	return NULL;
}

/* read-mostly: replace one random entry every 100 us (absolute deadlines,
 * so the rate holds despite wake-up latency; slots missed while
 * descheduled are skipped, not burst). */
static void writer_read_mostly(struct run *r, struct bench_thread *t)
{
	uint64_t st = 0xda942042e4dd58b5ull ^ t->index;
	struct timespec next;
	clock_gettime(CLOCK_MONOTONIC, &next);
	uint64_t start = bench_now_ns();
	prctl(PR_SET_TIMERSLACK, 1UL, 0, 0, 0);
	while (!atomic_load_explicit(&r->stop, memory_order_relaxed)) {
		next.tv_nsec += READ_MOSTLY_PERIOD_NS;
		if (next.tv_nsec >= 1000000000) {
			next.tv_nsec -= 1000000000;
			next.tv_sec++;
		}
		clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &next, NULL);
		size_t k = xorshift64(&st) % r->nkeys;
		int rc = r->impl->replace(r->table, k, bench_value(k));
		if (rc != 0 && t->error == 0)
			t->error = rc;
		t->writes++;
		/* More than a whole period late (descheduled): start afresh
		 * from now instead of replacing in a burst. */
		struct timespec now;
		clock_gettime(CLOCK_MONOTONIC, &now);
		int64_t late = (int64_t)(now.tv_sec - next.tv_sec) * 1000000000 +
			       (now.tv_nsec - next.tv_nsec);
		if (late > READ_MOSTLY_PERIOD_NS)
			next = now;
	}
	t->elapsed_ns = bench_now_ns() - start;
}

/* churn: unregister and re-register random keys, back to back. */
static void writer_churn(struct run *r, struct bench_thread *t)
{
	uint64_t st = 0x2545f4914f6cdd1dull ^ ((uint64_t)t->index << 32);
	uint64_t start = bench_now_ns();
	while (!atomic_load_explicit(&r->stop, memory_order_relaxed)) {
		size_t k = xorshift64(&st) % r->nkeys;
		int rc = r->impl->remove(r->table, k);
		if (rc != 0 && rc != -ENOENT && t->error == 0)
			t->error = rc;
		rc = r->impl->insert(r->table, k, bench_value(k));
		if (rc != 0 && rc != -EEXIST && t->error == 0)
			t->error = rc;
		t->writes += 2;
	}
	t->elapsed_ns = bench_now_ns() - start;
}

static void *writer_main(void *arg)
{
	struct worker *w = arg;
	struct run *r = w->run;
	struct bench_thread *t = w->t;

	t->error = r->impl->thread_enter(r->table, ROLE_WRITER, t);
	pthread_barrier_wait(&r->start);
	if (t->error == 0) {
		if (bench_replaces(r->workload))
			writer_read_mostly(r, t);
		else
			writer_churn(r, t);
	}
	r->impl->thread_exit(r->table, ROLE_WRITER, t);
	return NULL;
}

/* Table creation and destruction run on a thread of their own that enters
 * the implementation as ROLE_SETUP (the baselines register it with RCU;
 * the main thread never touches RCU, so it never meets ureg's lazy
 * registration of the same thread). */
struct setup_job {
	const struct bench_impl *impl;
	enum bench_workload workload;
	size_t nkeys;
	void *table;
	bool destroy;
	int rc;
};

static void *setup_main(void *arg)
{
	struct setup_job *j = arg;
	struct bench_thread t;
	memset(&t, 0, sizeof(t));
	t.workload = j->workload;
	j->rc = j->impl->thread_enter(NULL, ROLE_SETUP, &t);
	if (j->rc == 0) {
		if (j->destroy)
			j->impl->destroy(j->table);
		else
			j->rc = j->impl->create(j->nkeys, j->workload, &j->table);
	}
	j->impl->thread_exit(NULL, ROLE_SETUP, &t);
	return NULL;
}

static int run_setup(struct setup_job *j)
{
	pthread_t tid;
	int rc = pthread_create(&tid, NULL, setup_main, j);
	if (rc != 0)
		return -rc;
	pthread_join(tid, NULL);
	return j->rc;
}

/* What one cell run measured. */
struct measure {
	double ops_per_s;
	double ns_per_op;    /* threads / ops_per_s: ns per operation per thread */
	double p50, p99, p999;
	double writes_per_s;
	double miss_ratio;
};

static struct bench_thread *threads;   /* readers, then writers */
static struct worker *workers;
static uint32_t *sample_pool;
static double *merge_buf;

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return (x > y) - (x < y);
}

static double percentile(const double *sorted, size_t n, double q)
{
	if (n == 0)
		return 0;
	size_t i = (size_t)ceil(q * (double)n);
	if (i > 0)
		i--;
	if (i >= n)
		i = n - 1;
	return sorted[i];
}

static int run_cell(const struct options *o, const struct bench_impl *impl,
		    void *table, enum bench_workload wl, size_t nkeys,
		    const struct sequences *seq, unsigned nreaders,
		    struct measure *m)
{
	unsigned nwriters = bench_replaces(wl) ? 1
			  : wl == WL_CHURN ? o->churn_writers : 0;
	unsigned n = nreaders + nwriters;
	struct run r = {
		.impl = impl, .table = table, .workload = wl, .nkeys = nkeys,
		.seq = seq, .ops = o->ops,
	};
	atomic_init(&r.stop, false);
	pthread_barrier_init(&r.start, NULL, n + 1);

	memset(threads, 0, (size_t)n * sizeof(*threads));
	for (unsigned i = 0; i < n; i++) {
		struct bench_thread *t = &threads[i];
		t->index = i;
		t->workload = wl;
		t->sample_every = o->sample_every;
		t->samples = sample_pool + (size_t)i * SAMPLE_CAP;
		t->sample_cap = SAMPLE_CAP;
		t->stop = &r.stop;
		t->max_ops = UINT64_MAX;
		workers[i] = (struct worker){ .run = &r, .t = t,
			.role = i < nreaders ? ROLE_READER : ROLE_WRITER };
		int rc = pthread_create(&workers[i].tid, NULL,
					i < nreaders ? reader_main : writer_main,
					&workers[i]);
		if (rc != 0) {
			fprintf(stderr, "ureg-bench: pthread_create: %s\n",
				strerror(rc));
			exit(1);
		}
	}
	pthread_barrier_wait(&r.start);
	if (o->ops) {
		/* a fixed amount of work: the readers stop by themselves */
		for (unsigned i = 0; i < nreaders; i++)
			pthread_join(workers[i].tid, NULL);
	} else {
		struct timespec d = {
			.tv_sec = (time_t)o->seconds,
			.tv_nsec = (long)((o->seconds - (double)(time_t)o->seconds) * 1e9),
		};
		while (nanosleep(&d, &d) != 0 && errno == EINTR)
			;
	}
	atomic_store_explicit(&r.stop, true, memory_order_relaxed);
	for (unsigned i = o->ops ? nreaders : 0; i < n; i++)
		pthread_join(workers[i].tid, NULL);
	pthread_barrier_destroy(&r.start);

	memset(m, 0, sizeof(*m));
	size_t ns = 0;
	uint64_t ops = 0, misses = 0, writes = 0;
	double writer_s = 0;
	for (unsigned i = 0; i < n; i++) {
		struct bench_thread *t = &threads[i];
		if (t->error != 0) {
			fprintf(stderr, "ureg-bench: %s %s keys=%zu threads=%u: "
				"%s thread %u failed: %s\n", workload_names[wl],
				impl->name, nkeys, nreaders,
				i < nreaders ? "reader" : "writer", i,
				strerror(-t->error));
			return t->error;
		}
		if (i >= nreaders) {
			writes += t->writes;
			writer_s += (double)t->elapsed_ns / 1e9 / nwriters;
			continue;
		}
		ops += t->ops;
		misses += t->misses;
		double secs = (double)t->elapsed_ns / 1e9;
		m->ops_per_s += (double)t->ops / secs;
		size_t got = t->sample_count < t->sample_cap ? t->sample_count
							     : t->sample_cap;
		for (size_t k = 0; k < got; k++)
			merge_buf[ns++] = ticks_to_ns(t->samples[k]);
	}
	/* per thread: the threads' time over all operations (robust when
	 * oversubscribed threads get very different shares of the cores) */
	m->ns_per_op = m->ops_per_s > 0 ? nreaders * 1e9 / m->ops_per_s : 0;
	qsort(merge_buf, ns, sizeof(*merge_buf), cmp_double);
	m->p50 = percentile(merge_buf, ns, 0.50);
	m->p99 = percentile(merge_buf, ns, 0.99);
	m->p999 = percentile(merge_buf, ns, 0.999);
	m->writes_per_s = writer_s > 0 ? (double)writes / writer_s : 0;
	m->miss_ratio = ops > 0 ? (double)misses / (double)ops : 0;
	return 0;
}

/* ------------------------------------------------------------------ */
/* Results                                                             */
/* ------------------------------------------------------------------ */

struct result {
	enum bench_workload workload;
	size_t keys;
	unsigned threads;
	size_t impl;             /* index into all_impls */
	struct measure med;      /* medians over the runs */
	struct measure *runs;    /* o->repeat of them */
	double ureg_ratio;       /* ureg ops/s over this one's; 0: none */
	/* spread over the runs: run r of ureg against run r of this one
	 * (they ran back to back), and this one's ops/s */
	double ratio_min, ratio_max;
	double ops_min, ops_max;
};

static int cmp_result(const void *a, const void *b)
{
	const struct result *x = a, *y = b;
	if (x->workload != y->workload)
		return (x->workload > y->workload) - (x->workload < y->workload);
	if (x->keys != y->keys)
		return (x->keys > y->keys) - (x->keys < y->keys);
	if (x->threads != y->threads)
		return (x->threads > y->threads) - (x->threads < y->threads);
	return (x->impl > y->impl) - (x->impl < y->impl);
}

static double median_of(const struct measure *runs, unsigned n, size_t off)
{
	double v[n];
	for (unsigned i = 0; i < n; i++)
		v[i] = *(const double *)(const void *)((const char *)&runs[i] + off);
	qsort(v, n, sizeof(v[0]), cmp_double);
	return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

static void take_medians(struct result *res, unsigned n)
{
#define MED(f) res->med.f = median_of(res->runs, n, offsetof(struct measure, f))
	MED(ops_per_s);
	MED(ns_per_op);
	MED(p50);
	MED(p99);
	MED(p999);
	MED(writes_per_s);
	MED(miss_ratio);
#undef MED
}

/* ------------------------------------------------------------------ */
/* Machine description                                                 */
/* ------------------------------------------------------------------ */

struct machine {
	char cpu[256];
	unsigned cores;
	char kernel[256];
	char date[64];
	char malloc_lib[256];
};

/* Which shared object the process's malloc comes from (glibc, jemalloc). */
static void describe_malloc(char *buf, size_t len)
{
	Dl_info info;
	void *(*volatile fn)(size_t) = malloc;
	if (dladdr((void *)fn, &info) != 0 && info.dli_fname != NULL) {
		const char *base = strrchr(info.dli_fname, '/');
		snprintf(buf, len, "%s", base != NULL ? base + 1 : info.dli_fname);
	} else {
		snprintf(buf, len, "unknown");
	}
}

static void describe_machine(struct machine *mc)
{
	snprintf(mc->cpu, sizeof(mc->cpu), "unknown");
	FILE *f = fopen("/proc/cpuinfo", "r");
	if (f != NULL) {
		char line[1024];
		while (fgets(line, sizeof(line), f) != NULL) {
			if (strncmp(line, "model name", 10) != 0)
				continue;
			char *v = strchr(line, ':');
			if (v == NULL)
				continue;
			v++;
			while (*v == ' ' || *v == '\t')
				v++;
			v[strcspn(v, "\n")] = '\0';
			snprintf(mc->cpu, sizeof(mc->cpu), "%s", v);
			break;
		}
		fclose(f);
	}
	mc->cores = online_cores();
	struct utsname u;
	if (uname(&u) == 0)
		snprintf(mc->kernel, sizeof(mc->kernel), "%s %s %s", u.sysname,
			 u.release, u.machine);
	else
		snprintf(mc->kernel, sizeof(mc->kernel), "unknown");
	time_t now = time(NULL);
	struct tm tm;
	gmtime_r(&now, &tm);
	strftime(mc->date, sizeof(mc->date), "%Y-%m-%dT%H:%M:%SZ", &tm);
	describe_malloc(mc->malloc_lib, sizeof(mc->malloc_lib));
}

static char *command_line(int argc, char **argv)
{
	size_t len = 1;
	for (int i = 0; i < argc; i++)
		len += strlen(argv[i]) + 1;
	char *s = malloc(len), *p = s;
	if (s == NULL)
		return NULL;
	for (int i = 0; i < argc; i++)
		p += sprintf(p, "%s%s", i ? " " : "", argv[i]);
	*p = '\0';
	return s;
}

static void print_json(const struct options *o, const struct machine *mc,
		       const char *cmd, const struct result *res, size_t nres)
{
	json_t *machine = json_pack("{s:s, s:I, s:s, s:s, s:s, s:s, s:s, s:s, s:f, "
				    "s:f, s:s, s:I, s:I, s:I}",
		"cpu", mc->cpu,
		"cores", (json_int_t)mc->cores,
		"kernel", mc->kernel,
		"date", mc->date,
		"compiler", __VERSION__,
		"libraries", BENCH_LIBS,
		"malloc", mc->malloc_lib,
		"timer", bench_use_tsc ? "tsc" : "clock_gettime",
		"timer_overhead_ns", timer_overhead_ticks * ns_per_tick,
		"seconds_per_cell", o->seconds,
		"command", cmd != NULL ? cmd : "",
		"sample_every", (json_int_t)o->sample_every,
		"repeat", (json_int_t)o->repeat,
		"churn_writers", (json_int_t)o->churn_writers);
	json_t *results = json_array();
	for (size_t i = 0; i < nres; i++) {
		const struct result *r = &res[i];
		json_t *row = json_pack("{s:s, s:I, s:I, s:s, s:f, s:f, s:I, s:I, s:I}",
			"workload", workload_names[r->workload],
			"keys", (json_int_t)r->keys,
			"threads", (json_int_t)r->threads,
			"impl", all_impls[r->impl]->name,
			"ops_per_s", r->med.ops_per_s,
			"ns_per_op", r->med.ns_per_op,
			"p50_ns", (json_int_t)llround(r->med.p50),
			"p99_ns", (json_int_t)llround(r->med.p99),
			"p999_ns", (json_int_t)llround(r->med.p999));
		if (bench_replaces(r->workload) || r->workload == WL_CHURN)
			json_object_set_new(row, "writes_per_s",
					    json_real(r->med.writes_per_s));
		if (r->workload == WL_CHURN)
			json_object_set_new(row, "miss_ratio",
					    json_real(r->med.miss_ratio));
		json_object_set_new(row, "ops_per_s_min", json_real(r->ops_min));
		json_object_set_new(row, "ops_per_s_max", json_real(r->ops_max));
		if (r->ureg_ratio > 0) {
			json_object_set_new(row, "ureg_ratio",
					    json_real(r->ureg_ratio));
			json_object_set_new(row, "ureg_ratio_min",
					    json_real(r->ratio_min));
			json_object_set_new(row, "ureg_ratio_max",
					    json_real(r->ratio_max));
		}
		json_object_set_new(row, "runs", json_integer(o->repeat));
		json_array_append_new(results, row);
	}
	json_t *root = json_pack("{s:o, s:o}", "machine", machine,
				 "results", results);
	if (root == NULL || json_dumpf(root, stdout, JSON_INDENT(1) |
			JSON_REAL_PRECISION(6)) != 0) {
		fprintf(stderr, "ureg-bench: JSON output failed\n");
		exit(1);
	}
	fputc('\n', stdout);
	json_decref(root);
}

/* 45.2M, 812k, 950 */
static const char *si(double v, char *buf, size_t len)
{
	if (v >= 1e9)
		snprintf(buf, len, "%.2fG", v / 1e9);
	else if (v >= 1e6)
		snprintf(buf, len, "%.2fM", v / 1e6);
	else if (v >= 1e3)
		snprintf(buf, len, "%.1fk", v / 1e3);
	else
		snprintf(buf, len, "%.0f", v);
	return buf;
}

static void print_table(const struct options *o, const struct machine *mc,
			const char *cmd, const struct result *res, size_t nres)
{
	printf("ureg-bench: %s, %u cores, %s, %s\n", mc->cpu, mc->cores,
	       mc->kernel, mc->date);
	printf("%.2f s per cell, %s%u run%s, 1 op in %u timed (%s, %.0f ns "
	       "overhead removed)\n",
	       o->seconds, o->repeat > 1 ? "median of " : "", o->repeat,
	       o->repeat > 1 ? "s" : "", o->sample_every,
	       bench_use_tsc ? "tsc" : "clock_gettime",
	       timer_overhead_ticks * ns_per_tick);
	printf("malloc from %s; %s\n", mc->malloc_lib, BENCH_LIBS);
	printf("command: %s\n", cmd != NULL ? cmd : "");
	printf("ureg/x: ureg's ops/s divided by x's (above 1: ureg is faster); "
	       "[min-max]: the same ratio run by run\n");
	const char *hdr = "%-20s %7s %7s  %-9s %9s %10s %7s %7s %7s %9s %7s %s\n";
	for (size_t i = 0; i < nres; i++) {
		const struct result *r = &res[i];
		bool first = i == 0 || res[i - 1].workload != r->workload ||
			     res[i - 1].keys != r->keys ||
			     res[i - 1].threads != r->threads;
		char a[32], w[32], ratio[32], spread[48] = "";
		if (i == 0 || res[i - 1].workload != r->workload) {
			printf("\n");
			printf(hdr, "workload", "keys", "threads", "impl", "ops/s",
			       "ns/op/thr", "p50", "p99", "p99.9", "writes/s",
			       "ureg/x", "[min-max]");
		} else if (first) {
			printf("\n");
		}
		if (r->ureg_ratio > 0) {
			snprintf(ratio, sizeof(ratio), "%.2f", r->ureg_ratio);
			if (o->repeat > 1)
				snprintf(spread, sizeof(spread), "[%.2f-%.2f]",
					 r->ratio_min, r->ratio_max);
		} else
			snprintf(ratio, sizeof(ratio), "-");
		if (bench_replaces(r->workload) || r->workload == WL_CHURN)
			si(r->med.writes_per_s, w, sizeof(w));
		else
			snprintf(w, sizeof(w), "-");
		char keys[32], thr[32];
		snprintf(keys, sizeof(keys), "%zu", r->keys);
		snprintf(thr, sizeof(thr), "%u", r->threads);
		printf("%-20s %7s %7s  %-9s %9s %10.1f %7.0f %7.0f %7.0f %9s %7s %s\n",
		       first ? workload_names[r->workload] : "",
		       first ? keys : "", first ? thr : "",
		       all_impls[r->impl]->name, si(r->med.ops_per_s, a, sizeof(a)),
		       r->med.ns_per_op, r->med.p50, r->med.p99, r->med.p999, w,
		       ratio, spread);
	}
	fflush(stdout);
}

/* ------------------------------------------------------------------ */
/* Progress                                                            */
/* ------------------------------------------------------------------ */

struct progress {
	bool on;
	size_t done, total;
	uint64_t t0;
};

static void progress_show(struct progress *p, enum bench_workload wl,
			  size_t keys, unsigned thr, const char *impl,
			  unsigned rep, unsigned repeat)
{
	if (!p->on)
		return;
	double el = (double)(bench_now_ns() - p->t0) / 1e9;
	double eta = p->done ? el / (double)p->done * (double)(p->total - p->done)
			     : 0;
	fprintf(stderr, "\r\033[K[%zu/%zu] %s keys=%zu threads=%u %s run %u/%u"
		"  %.0f s elapsed, ~%.0f s left",
		p->done + 1, p->total, workload_names[wl], keys, thr, impl,
		rep + 1, repeat, el, eta);
	fflush(stderr);
}

static void progress_end(struct progress *p)
{
	if (p->on) {
		fprintf(stderr, "\r\033[K");
		fflush(stderr);
	}
}

/* ------------------------------------------------------------------ */

int main(int argc, char **argv)
{
	struct options o;
	parse_options(argc, argv, &o);
	calibrate_timer();

	size_t impl_idx[N_IMPLS], n_impl = 0;
	for (size_t i = 0; i < N_IMPLS; i++)
		if (o.impls[i])
			impl_idx[n_impl++] = i;
	size_t n_wl = 0;
	for (int w = 0; w < WL_COUNT; w++)
		n_wl += o.workloads[w];

	size_t max_keys = o.keys[o.n_keys - 1];
	unsigned max_thr = o.threads[o.n_threads - 1];
	unsigned max_all = max_thr + (o.churn_writers > 1 ? o.churn_writers : 1);
	make_keys(max_keys);
	threads = aligned_alloc(BENCH_CACHELINE, (size_t)max_all * sizeof(*threads));
	workers = calloc(max_all, sizeof(*workers));
	sample_pool = malloc((size_t)max_all * SAMPLE_CAP * sizeof(*sample_pool));
	merge_buf = malloc((size_t)max_all * SAMPLE_CAP * sizeof(*merge_buf));
	if (threads == NULL || workers == NULL || sample_pool == NULL ||
	    merge_buf == NULL)
		die_usage("out of memory for %u threads", max_all);

	size_t nres = n_wl * o.n_keys * o.n_threads * n_impl;
	struct result *res = calloc(nres, sizeof(*res));
	if (res == NULL)
		die_usage("out of memory");
	for (size_t i = 0; i < nres; i++) {
		res[i].runs = calloc(o.repeat, sizeof(*res[i].runs));
		if (res[i].runs == NULL)
			die_usage("out of memory");
	}

	struct progress prog = {
		.total = nres * o.repeat,
		.t0 = bench_now_ns(),
	};
	double est = (double)prog.total * (o.seconds + 0.02);
	prog.on = o.progress == 1 ||
		  (o.progress == -1 && est > 3.0 && isatty(STDERR_FILENO));

	struct machine mc;
	describe_machine(&mc);
	char *cmd = command_line(argc, argv);

	size_t ri = 0;
	for (size_t ki = 0; ki < o.n_keys; ki++) {
		size_t nkeys = o.keys[ki];
		struct sequences seq;
		make_sequences(&seq, nkeys, max_thr);
		for (int wl = 0; wl < WL_COUNT; wl++) {
			if (!o.workloads[wl])
				continue;
			void *tables[N_IMPLS] = { 0 };
			for (size_t ii = 0; ii < n_impl; ii++) {
				struct setup_job j = {
					.impl = all_impls[impl_idx[ii]],
					.workload = (enum bench_workload)wl,
					.nkeys = nkeys,
				};
				int rc = run_setup(&j);
				if (rc != 0) {
					progress_end(&prog);
					fprintf(stderr, "ureg-bench: %s: building "
						"%zu keys for %s failed: %s\n",
						j.impl->name, nkeys,
						workload_names[wl], strerror(-rc));
					return 1;
				}
				tables[ii] = j.table;
			}
			for (size_t ti = 0; ti < o.n_threads; ti++) {
				struct result *cell = &res[ri];
				for (size_t ii = 0; ii < n_impl; ii++) {
					cell[ii].workload = (enum bench_workload)wl;
					cell[ii].keys = nkeys;
					cell[ii].threads = o.threads[ti];
					cell[ii].impl = impl_idx[ii];
				}
				for (unsigned rep = 0; rep < o.repeat; rep++) {
					for (size_t ii = 0; ii < n_impl; ii++) {
						progress_show(&prog, (enum bench_workload)wl,
							      nkeys, o.threads[ti],
							      all_impls[impl_idx[ii]]->name,
							      rep, o.repeat);
						int rc = run_cell(&o, all_impls[impl_idx[ii]],
							tables[ii], (enum bench_workload)wl,
							nkeys, &seq, o.threads[ti],
							&cell[ii].runs[rep]);
						if (rc != 0) {
							progress_end(&prog);
							return 1;
						}
						prog.done++;
					}
				}
				double ureg_ops = 0;
				const struct result *ureg_cell = NULL;
				for (size_t ii = 0; ii < n_impl; ii++) {
					take_medians(&cell[ii], o.repeat);
					cell[ii].ops_min = cell[ii].ops_max = cell[ii].runs[0].ops_per_s;
					for (unsigned rep = 1; rep < o.repeat; rep++) {
						double v = cell[ii].runs[rep].ops_per_s;
						if (v < cell[ii].ops_min)
							cell[ii].ops_min = v;
						if (v > cell[ii].ops_max)
							cell[ii].ops_max = v;
					}
					if (strcmp(all_impls[impl_idx[ii]]->name, "ureg") == 0) {
						ureg_ops = cell[ii].med.ops_per_s;
						ureg_cell = &cell[ii];
					}
				}
				for (size_t ii = 0; ii < n_impl; ii++) {
					if (!(ureg_ops > 0) || !ureg_cell ||
					    strcmp(all_impls[impl_idx[ii]]->name, "ureg") == 0 ||
					    !(cell[ii].med.ops_per_s > 0))
						continue;
					cell[ii].ureg_ratio = ureg_ops / cell[ii].med.ops_per_s;
					cell[ii].ratio_min = INFINITY;
					cell[ii].ratio_max = 0;
					for (unsigned rep = 0; rep < o.repeat; rep++) {
						double x = cell[ii].runs[rep].ops_per_s;
						double q = x > 0 ? ureg_cell->runs[rep].ops_per_s / x : 0;
						if (q < cell[ii].ratio_min)
							cell[ii].ratio_min = q;
						if (q > cell[ii].ratio_max)
							cell[ii].ratio_max = q;
					}
				}
				ri += n_impl;
			}
			for (size_t ii = 0; ii < n_impl; ii++) {
				struct setup_job j = {
					.impl = all_impls[impl_idx[ii]],
					.workload = (enum bench_workload)wl,
					.table = tables[ii],
					.destroy = true,
				};
				run_setup(&j);
			}
		}
		free_sequences(&seq);
	}
	progress_end(&prog);

	/* Group rows as a reader scans them: workload, keys, threads. */
	qsort(res, nres, sizeof(*res), cmp_result);
	if (o.json)
		print_json(&o, &mc, cmd, res, nres);
	else
		print_table(&o, &mc, cmd, res, nres);
	for (size_t i = 0; i < nres; i++)
		free(res[i].runs);
	free(res);
	free(cmd);
	return 0;
}
