/* SPDX-License-Identifier: MIT */
/*
 * ureg-memprofile - what a user context costs, side by side with the
 * allocators a C server author knows, all from one run:
 *
 *   ureg shared     ureg_ctx_new(UREG_CTX_SHARED) / ureg_ctx_alloc / destroy
 *   ureg dedicated  the same with UREG_CTX_DEDICATED (an arena of its own)
 *   talloc          talloc_new(NULL) / talloc_size(ctx, 64) / talloc_free
 *   glibc malloc    a minimal hand-written context: a malloc'd head, every
 *                   allocation malloc'd with a next pointer to the head's
 *                   list; destroy walks the list and frees
 *
 *  a) create+destroy latency of an idle context, with one and with ten
 *     64-byte allocations: ns per cycle, median of 5 runs (spread min..max);
 *     the runs interleave the four implementations so machine noise hits
 *     them alike.
 *  b) 1,000,000 contexts that stay alive: ns per create, bytes per idle
 *     context and per context with one 64-byte allocation by RSS
 *     (/proc/self/statm delta; the idle contexts stay alive while the
 *     others are made).  Dedicated contexts: 1,000 (the dedicated arena
 *     cap, ureg_arena_dedicated_max, defaults to 1,024), on fresh arenas:
 *     arenas parked by earlier phases are taken by held contexts first,
 *     and the cap is raised for this run to make room for that.
 *  c) ratios talloc/ureg-shared (and malloc/ureg-shared) per latency row:
 *     >= 1.0 means ureg is as fast or faster.
 *  d) parked dedicated arenas: RSS before 200 dedicated contexts, after
 *     filling each with 1 MiB, after destroying them (reset + purge).
 *  e) 100,000 shared contexts with 3 instances each, by ureg's accounting
 *     and RSS, against glibc malloc making the same allocations.
 *  f) address space (VmSize) over 1,000,000 shared and 2,000 dedicated
 *     create/destroy cycles with one allocation each: exit 1 if it grows
 *     by more than 2 MiB.
 *
 * Measurement hygiene.  ureg allocates from jemalloc arenas; talloc and the
 * baseline from glibc's heap.  After the latency runs (which interleave
 * all four), the ureg memory phases run first, then talloc's, then the
 * malloc baseline's; between phases
 * jemalloc's unused dirty pages are purged (mallctl, looked up with dlsym)
 * and glibc's heap is trimmed (malloc_trim), so no phase's RSS delta is
 * hidden by pages an earlier phase freed.  This executable deliberately
 * does not link jemalloc (libureg brings it for its own mallocx calls):
 * linking it would make it the process malloc and falsify the glibc
 * baseline; the header prints which library malloc resolves to.
 *
 * Numbers are meaningful in a release build only; the machine is shared
 * and noisy, so nothing here asserts on time.  --quick: ~10x fewer of
 * everything (tools/dev test); --json: one JSON object instead of text.
 */
#include <dlfcn.h>
#include <errno.h>
#include <getopt.h>
#include <gnu/libc-version.h>
#include <jansson.h>
#include <malloc.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <talloc.h>
#include <time.h>
#include <unistd.h>

#include <ureg/ureg.h>
#include <ureg/ctx.h>

#include "../tool_opts.h"

#define RUNS 5
#define ALLOC_SIZE 64
#define INST_SIZE 96   /* an instance object (section e) */
#define LABEL_SIZE 40  /* a second allocation per instance (a name) */
#define MALLCTL_ALL 4096 /* jemalloc's MALLCTL_ARENAS_ALL */

enum { U_SHARED, U_DEDICATED, TALLOC, MALLOC, NIMPL };
static const char *const impl_key[NIMPL] = { "ureg_shared", "ureg_dedicated", "talloc", "malloc" };
static const char *const impl_title[NIMPL] = { "ureg shared", "ureg dedicated", "talloc", "glibc malloc" };

enum { ROW_IDLE, ROW_ONE, ROW_TEN, NROW };
static const int row_allocs[NROW] = { 0, 1, 10 };
static const char *const row_key[NROW] = { "idle", "one_alloc", "ten_allocs" };
static const char *const row_title[NROW] = { "idle context", "+ 1 x 64 B", "+ 10 x 64 B" };

/* ------------------------------------------------------------ counts */

static bool quick;
static long lat_cycles = 200000, lat_cycles_ded = 5000;
static long live_n = 1000000, live_n_ded = 1000;
static long parked_n = 200;
static long parked_fill = 1 << 20;
static long ncontexts = 100000, ninstances = 3;
static long vm_shared = 1000000, vm_dedicated = 2000;
static const long vm_tolerance = 2 << 20;

/* ------------------------------------------------------------ results */

struct lat { long cycles; double med, min, max; };
struct live {
	long n;
	double create_ns, idle_bytes;       /* idle contexts */
	double create_alloc_ns, alloc_bytes; /* one 64-byte allocation each */
};
static struct lat lat[NIMPL][NROW];
/* talloc/ureg-shared per run (the two ran back to back): median, min, max */
static struct lat paired[NROW];
static struct live live[NIMPL];
static unsigned ded_max_set; /* 0: left at its default */

static struct {
	long n, fill;
	long rss_before, rss_filled, rss_after;
	long vm_before, vm_after;
	unsigned parked;
} parked;

static struct {
	long n, inst;
	double acct, rss_ureg, usable_malloc, rss_malloc;
} instp;

static struct {
	long shared_cycles, ded_cycles;
	long shared_before, shared_after, ded_before, ded_after;
	bool ok;
} vm;

static struct {
	long nproc;
	char cpu[128];
	char malloc_lib[256];
	bool malloc_is_glibc;
	char jemalloc[64];
	bool purge;
} mach;

/* ------------------------------------------------------------ helpers */

static long page_size;
static void *volatile sink; /* every allocation escapes here: not elided */

static void statm(long *vm_bytes, long *rss)
{
	long size = 0, resident = 0;
	FILE *f = fopen("/proc/self/statm", "r");

	if (!f || fscanf(f, "%ld %ld", &size, &resident) != 2) {
		perror("memprofile: /proc/self/statm");
		exit(2);
	}
	fclose(f);
	if (vm_bytes)
		*vm_bytes = size * page_size;
	if (rss)
		*rss = resident * page_size;
}

static long rss_bytes(void)
{
	long r;

	statm(NULL, &r);
	return r;
}

static long vm_bytes(void)
{
	long v;

	statm(&v, NULL);
	return v;
}

static double now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return (x > y) - (x < y);
}

static void die(const char *what, int rc)
{
	fprintf(stderr, "memprofile: %s: %s (%s)\n", what, ureg_strerror(rc), ureg_last_error());
	exit(2);
}

static void oom(const char *what)
{
	fprintf(stderr, "memprofile: %s: out of memory\n", what);
	exit(2);
}

/* jemalloc's mallctl, found at run time in libureg's jemalloc (not linked
 * here: see the top comment).  NULL when it is not there. */
static int (*je_mallctl)(const char *, void *, size_t *, void *, size_t);

/* Give jemalloc's unused dirty pages back (every arena) so the next
 * measurement cannot reuse them for free. */
static void je_purge(void)
{
	char name[64];

	if (!je_mallctl)
		return;
	je_mallctl("thread.tcache.flush", NULL, NULL, NULL, 0);
	snprintf(name, sizeof(name), "arena.%u.purge", MALLCTL_ALL);
	je_mallctl(name, NULL, NULL, NULL, 0);
}

/* Between phases: both heaps hand back what they do not use. */
static void settle(void)
{
	je_purge();
	malloc_trim(0);
}

static void machine_info(void)
{
	char line[256];
	FILE *f;
	Dl_info di;

	mach.nproc = sysconf(_SC_NPROCESSORS_ONLN);
	snprintf(mach.cpu, sizeof(mach.cpu), "unknown");
	if ((f = fopen("/proc/cpuinfo", "r"))) {
		while (fgets(line, sizeof(line), f)) {
			char *colon = strchr(line, ':');
			if (strncmp(line, "model name", 10) == 0 && colon) {
				colon++;
				colon += strspn(colon, " \t");
				colon[strcspn(colon, "\n")] = '\0';
				snprintf(mach.cpu, sizeof(mach.cpu), "%s", colon);
				break;
			}
		}
		fclose(f);
	}
	snprintf(mach.malloc_lib, sizeof(mach.malloc_lib), "unknown");
	if (dladdr((void *)malloc, &di) && di.dli_fname)
		snprintf(mach.malloc_lib, sizeof(mach.malloc_lib), "%s", di.dli_fname);
	mach.malloc_is_glibc = strstr(mach.malloc_lib, "libc.so") != NULL;

	*(void **)&je_mallctl = dlsym(RTLD_DEFAULT, "mallctl");
	mach.purge = je_mallctl != NULL;
	snprintf(mach.jemalloc, sizeof(mach.jemalloc), "unknown");
	if (je_mallctl) {
		const char *v = NULL;
		size_t sz = sizeof(v);
		if (je_mallctl("version", &v, &sz, NULL, 0) == 0 && v)
			snprintf(mach.jemalloc, sizeof(mach.jemalloc), "%s", v);
	}
}

/* ------------------------------------------------------------ implementations
 *
 * Each implementation: NAME_new() -> context, NAME_alloc(ctx) -> 64 bytes
 * in it, NAME_destroy(ctx).  Small static functions the loops below call
 * directly (inlined), so the four pay the same harness overhead.
 */

static inline void *ushared_new(void)
{
	ureg_ctx *c;
	int rc = ureg_ctx_new(NULL, UREG_CTX_SHARED, &c);

	if (rc)
		die("ctx_new (shared)", rc);
	return c;
}

static inline void *udedicated_new(void)
{
	ureg_ctx *c;
	int rc = ureg_ctx_new(NULL, UREG_CTX_DEDICATED, &c);

	if (rc)
		die("ctx_new (dedicated)", rc);
	return c;
}

static inline void *ureg_alloc64(void *c)
{
	void *p = ureg_ctx_alloc(c, ALLOC_SIZE);

	if (!p)
		die("ctx_alloc", -errno);
	return p;
}

static inline void ureg_destroy(void *c)
{
	ureg_ctx_destroy(c);
}

#define ushared_alloc ureg_alloc64
#define ushared_destroy ureg_destroy
#define udedicated_alloc ureg_alloc64
#define udedicated_destroy ureg_destroy

static inline void *tal_new(void)
{
	void *c = talloc_new(NULL);

	if (!c)
		oom("talloc_new");
	return c;
}

static inline void *tal_alloc(void *c)
{
	void *p = talloc_size(c, ALLOC_SIZE);

	if (!p)
		oom("talloc_size");
	return p;
}

static inline void tal_destroy(void *c)
{
	talloc_free(c);
}

/* the hand-written glibc malloc context */
struct mnode {
	struct mnode *next;
	void *pad; /* keeps the payload 16-byte aligned, as malloc's is */
	unsigned char data[];
};

struct mctx {
	struct mnode *first;
};

static inline void *mal_new(void)
{
	struct mctx *c = malloc(sizeof(*c));

	if (!c)
		oom("malloc");
	c->first = NULL;
	return c;
}

static inline void *mal_alloc(void *cv)
{
	struct mctx *c = cv;
	struct mnode *n = malloc(sizeof(*n) + ALLOC_SIZE);

	if (!n)
		oom("malloc");
	n->next = c->first;
	c->first = n;
	return n->data;
}

static inline void mal_destroy(void *cv)
{
	struct mctx *c = cv;
	struct mnode *n = c->first, *next;

	for (; n; n = next) {
		next = n->next;
		free(n);
	}
	free(c);
}

/* ns per create+nalloc+destroy cycle over @n cycles */
#define CYCLE_FN(P)                                                     \
	static double P##_cycle(long n, int nalloc)                     \
	{                                                               \
		double t0 = now_ns();                                   \
		for (long i = 0; i < n; i++) {                          \
			void *c = P##_new();                            \
			for (int k = 0; k < nalloc; k++)                \
				sink = P##_alloc(c);                    \
			P##_destroy(c);                                 \
		}                                                       \
		return (now_ns() - t0) / (double)n;                     \
	}

/* create @n contexts into @v (each with @nalloc allocations): ns each */
#define LIVE_FN(P)                                                      \
	static double P##_live(void **v, long n, int nalloc)            \
	{                                                               \
		double t0 = now_ns();                                   \
		for (long i = 0; i < n; i++) {                          \
			v[i] = P##_new();                               \
			for (int k = 0; k < nalloc; k++)                \
				sink = P##_alloc(v[i]);                 \
		}                                                       \
		return (now_ns() - t0) / (double)n;                     \
	}                                                               \
	static void P##_kill(void **v, long n)                          \
	{                                                               \
		for (long i = 0; i < n; i++)                            \
			P##_destroy(v[i]);                              \
	}

CYCLE_FN(ushared) CYCLE_FN(udedicated) CYCLE_FN(tal) CYCLE_FN(mal)
LIVE_FN(ushared) LIVE_FN(udedicated) LIVE_FN(tal) LIVE_FN(mal)

static double (*const cycle_fn[NIMPL])(long, int) = {
	ushared_cycle, udedicated_cycle, tal_cycle, mal_cycle,
};
static double (*const live_fn[NIMPL])(void **, long, int) = {
	ushared_live, udedicated_live, tal_live, mal_live,
};
static void (*const kill_fn[NIMPL])(void **, long) = {
	ushared_kill, udedicated_kill, tal_kill, mal_kill,
};

/* ------------------------------------------------------------ a) latency */

static void profile_latency(void)
{
	static double t[NIMPL][NROW][RUNS];

	for (int i = 0; i < NIMPL; i++)
		for (int r = 0; r < NROW; r++)
			lat[i][r].cycles = i == U_DEDICATED ? lat_cycles_ded : lat_cycles;
	/* warm-up: caches, the shared pool, a first parked arena */
	for (int i = 0; i < NIMPL; i++)
		for (int r = 0; r < NROW; r++)
			cycle_fn[i](lat[i][r].cycles / 10 + 1, row_allocs[r]);
	/* run-major, so noise spreads over every implementation alike */
	for (int run = 0; run < RUNS; run++)
		for (int i = 0; i < NIMPL; i++)
			for (int r = 0; r < NROW; r++)
				t[i][r][run] = cycle_fn[i](lat[i][r].cycles, row_allocs[r]);
	for (int r = 0; r < NROW; r++) {
		double q[RUNS];
		for (int run = 0; run < RUNS; run++)
			q[run] = t[U_SHARED][r][run] > 0 ? t[TALLOC][r][run] / t[U_SHARED][r][run] : 0;
		qsort(q, RUNS, sizeof(double), cmp_double);
		paired[r] = (struct lat){ RUNS, q[RUNS / 2], q[0], q[RUNS - 1] };
	}
	for (int i = 0; i < NIMPL; i++)
		for (int r = 0; r < NROW; r++) {
			qsort(t[i][r], RUNS, sizeof(double), cmp_double);
			lat[i][r].min = t[i][r][0];
			lat[i][r].med = t[i][r][RUNS / 2];
			lat[i][r].max = t[i][r][RUNS - 1];
		}
	settle();
}

/* ------------------------------------------------------------ b) live */

/* Dedicated contexts reuse parked arenas first.  To measure what fresh
 * arenas cost, take every parked one with a context held until
 * release_parked(). */
static ureg_ctx **held;
static long nheld;

static void hold_parked(void)
{
	struct ureg_arena_stats st;

	if (ureg_arena_stats(&st) || !st.dedicated_parked)
		return;
	nheld = st.dedicated_parked;
	if (!(held = calloc((size_t)nheld, sizeof(*held))))
		oom("held");
	for (long i = 0; i < nheld; i++)
		held[i] = udedicated_new();
}

static void release_parked(void)
{
	for (long i = 0; i < nheld; i++)
		ureg_ctx_destroy(held[i]);
	free(held);
	held = NULL;
	nheld = 0;
}

/* @v holds 2 x the contexts: the idle ones stay alive while the ones with
 * an allocation are made, so neither phase can reuse the other's memory. */
static void profile_live(int impl, void **v)
{
	struct live *l = &live[impl];
	long r0, r1;

	l->n = impl == U_DEDICATED ? live_n_ded : live_n;
	if (impl == U_DEDICATED)
		hold_parked();
	settle();
	r0 = rss_bytes();
	l->create_ns = live_fn[impl](v, l->n, 0);
	r1 = rss_bytes();
	l->idle_bytes = (double)(r1 - r0) / (double)l->n;

	r0 = rss_bytes();
	l->create_alloc_ns = live_fn[impl](v + l->n, l->n, 1);
	r1 = rss_bytes();
	l->alloc_bytes = (double)(r1 - r0) / (double)l->n;
	kill_fn[impl](v, 2 * l->n);
	release_parked();
	settle();
}

/* ------------------------------------------------------------ d) parked */

static void profile_parked(void **v)
{
	struct ureg_arena_stats st;
	const size_t block = (64 << 10) - 32; /* + ureg's 32-byte header: 64 KiB */

	parked.n = parked_n;
	parked.fill = parked_fill;
	hold_parked(); /* fresh arenas: what parking them costs */
	settle();
	statm(&parked.vm_before, &parked.rss_before);
	for (long i = 0; i < parked_n; i++) {
		v[i] = udedicated_new();
		for (long got = 0; got < parked_fill; got += (long)block + 32) {
			void *p = ureg_ctx_alloc(v[i], block);
			if (!p)
				die("ctx_alloc (parked)", -errno);
			memset(p, 0x5a, block); /* resident, not just reserved */
		}
	}
	parked.rss_filled = rss_bytes();
	for (long i = 0; i < parked_n; i++)
		ureg_ctx_destroy(v[i]);
	settle();
	statm(&parked.vm_after, &parked.rss_after);
	if (ureg_arena_stats(&st) == 0)
		parked.parked = st.dedicated_parked;
	release_parked();
	settle();
}

/* ------------------------------------------------------------ e) instances */

struct inst {
	char *label;
	char body[INST_SIZE - sizeof(char *)];
};

static int make_inst(ureg_ctx *ctx, void *arg, void **out)
{
	struct inst *in = ureg_ctx_alloc(ctx, sizeof(*in));

	(void)arg;
	if (!in)
		return -errno;
	in->label = ureg_ctx_alloc(ctx, LABEL_SIZE);
	if (!in->label) {
		int err = -errno;
		ureg_ctx_free(ctx, in);
		return err;
	}
	memset(in->body, 1, sizeof(in->body));
	memset(in->label, 2, LABEL_SIZE);
	*out = in;
	return 0;
}

static void drop_inst(void *p, ureg_ctx *ctx)
{
	struct inst *in = p;

	ureg_ctx_free(ctx, in->label);
	ureg_ctx_free(ctx, in);
}

static const ureg_type prof_type = {
	.name = "profile",
	.instance_destroy = drop_inst,
};

static void profile_instances(ureg_registry *reg)
{
	ureg_ctx **ctxs = calloc((size_t)ncontexts, sizeof(*ctxs));
	void **plain = calloc((size_t)(ncontexts * ninstances * 2), sizeof(*plain));
	size_t acct = 0, plain_usable = 0;
	long r0, r1;

	if (!ctxs || !plain)
		oom("instances");
	/* touch the pointer arrays first so they are not in the deltas */
	memset(ctxs, 0, (size_t)ncontexts * sizeof(*ctxs));
	memset(plain, 0, (size_t)(ncontexts * ninstances * 2) * sizeof(*plain));
	instp.n = ncontexts;
	instp.inst = ninstances;

	/* the baseline: the same allocations with glibc malloc */
	settle();
	r0 = rss_bytes();
	for (long i = 0, k = 0; i < ncontexts; i++) {
		for (long j = 0; j < ninstances; j++) {
			struct inst *in = malloc(sizeof(*in));
			if (!in || !(in->label = malloc(LABEL_SIZE)))
				oom("instances baseline");
			memset(in->body, 1, sizeof(in->body));
			memset(in->label, 2, LABEL_SIZE);
			plain[k++] = in;
			plain[k++] = in->label;
			plain_usable += malloc_usable_size(in) + malloc_usable_size(in->label);
		}
	}
	r1 = rss_bytes();
	instp.rss_malloc = (double)(r1 - r0) / (double)ncontexts;
	instp.usable_malloc = (double)plain_usable / (double)ncontexts;
	for (long k = 0; k < ncontexts * ninstances * 2; k++)
		free(plain[k]);
	settle();

	r0 = rss_bytes();
	for (long i = 0; i < ncontexts; i++) {
		int rc = ureg_ctx_new(NULL, UREG_CTX_SHARED, &ctxs[i]);
		if (rc)
			die("ctx_new", rc);
		for (long j = 0; j < ninstances; j++) {
			void *obj;
			if ((rc = ureg_create_instance(reg, "inst", ctxs[i], &obj)))
				die("create_instance", rc);
		}
	}
	r1 = rss_bytes();
	for (long i = 0; i < ncontexts; i++) {
		struct ureg_ctx_stats st;
		if (ureg_ctx_stats(ctxs[i], &st) == 0)
			acct += st.live_bytes;
	}
	instp.rss_ureg = (double)(r1 - r0) / (double)ncontexts;
	instp.acct = (double)acct / (double)ncontexts;
	for (long i = 0; i < ncontexts; i++)
		ureg_ctx_destroy(ctxs[i]);
	free(ctxs);
	free(plain);
	settle();
}

/* ------------------------------------------------------------ f) address space */

/* VmSize before and after @n cycles (after a short warm-up) */
static void vm_growth(unsigned flags, long n, long *before, long *after)
{
	double (*cycle)(long, int) = flags & UREG_CTX_DEDICATED ? udedicated_cycle : ushared_cycle;

	cycle(n / 100 + 10, 1); /* warm-up: pools, caches */
	*before = vm_bytes();
	cycle(n, 1);
	*after = vm_bytes();
}

static void profile_vm(void)
{
	vm.shared_cycles = vm_shared;
	vm.ded_cycles = vm_dedicated;
	vm_growth(UREG_CTX_SHARED, vm_shared, &vm.shared_before, &vm.shared_after);
	vm_growth(UREG_CTX_DEDICATED, vm_dedicated, &vm.ded_before, &vm.ded_after);
	vm.ok = vm.shared_after - vm.shared_before <= vm_tolerance &&
		vm.ded_after - vm.ded_before <= vm_tolerance;
}

/* ------------------------------------------------------------ output */

static const char *build_kind(void)
{
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
	return "sanitizer build: numbers are not meaningful";
#elif !defined(__OPTIMIZE__)
	return "unoptimized build: numbers are not meaningful";
#else
	return "optimized build";
#endif
}

static double ratio(int impl, int row)
{
	return lat[U_SHARED][row].med > 0 ? lat[impl][row].med / lat[U_SHARED][row].med : 0;
}

static double kib_per(long delta, long n)
{
	return (double)delta / 1024.0 / (double)n;
}

static void print_text(void)
{
	char cell[64];

	printf("ureg-memprofile%s: %ld CPUs (%s); %s\n", quick ? " --quick" : "",
	       mach.nproc, mach.cpu, build_kind());
	printf("  glibc %s, talloc %d.%d, jemalloc %s; process malloc: %s%s\n",
	       gnu_get_libc_version(), talloc_version_major(), talloc_version_minor(),
	       mach.jemalloc, mach.malloc_lib,
	       mach.malloc_is_glibc ? " (glibc: the baseline is glibc's)" : " (NOT glibc)");
	if (!mach.purge)
		printf("  (jemalloc's mallctl not found: dirty pages not purged between phases)\n");

	printf("\na) create+destroy, ns per cycle: median of %d runs [min..max]\n", RUNS);
	printf("   %-14s", "");
	for (int i = 0; i < NIMPL; i++)
		printf("  %-24s", impl_title[i]);
	printf("\n   %-14s", "cycles/run");
	for (int i = 0; i < NIMPL; i++)
		printf("  %-24ld", lat[i][0].cycles);
	printf("\n");
	for (int r = 0; r < NROW; r++) {
		printf("   %-14s", row_title[r]);
		for (int i = 0; i < NIMPL; i++) {
			snprintf(cell, sizeof(cell), "%.0f [%.0f..%.0f]",
				 lat[i][r].med, lat[i][r].min, lat[i][r].max);
			printf("  %-24s", cell);
		}
		printf("\n");
	}

	printf("\nc) ratios of the medians above (>= 1.0: ureg shared as fast or faster);\n"
	       "   paired: talloc/ureg of each run (back to back), median [min..max]\n");
	printf("   %-14s  %-12s  %-20s  %-12s  %-14s\n", "", "talloc/ureg", "paired",
	       "malloc/ureg", "dedicated/ureg");
	for (int r = 0; r < NROW; r++) {
		snprintf(cell, sizeof(cell), "%.2f [%.2f..%.2f]", paired[r].med, paired[r].min,
			 paired[r].max);
		printf("   %-14s  %-12.2f  %-20s  %-12.2f  %-14.2f\n", row_title[r],
		       ratio(TALLOC, r), cell, ratio(MALLOC, r), ratio(U_DEDICATED, r));
	}

	printf("\nb) contexts that stay alive, bytes by RSS (/proc/self/statm delta / contexts)\n");
	printf("   %-22s", "");
	for (int i = 0; i < NIMPL; i++)
		printf("  %-15s", impl_title[i]);
	printf("\n   %-22s", "live contexts");
	for (int i = 0; i < NIMPL; i++)
		printf("  %-15ld", live[i].n);
	printf("\n   %-22s", "ns per create");
	for (int i = 0; i < NIMPL; i++)
		printf("  %-15.0f", live[i].create_ns);
	printf("\n   %-22s", "bytes per idle context");
	for (int i = 0; i < NIMPL; i++)
		printf("  %-15.1f", live[i].idle_bytes);
	printf("\n   %-22s", "ns per create + 64 B");
	for (int i = 0; i < NIMPL; i++)
		printf("  %-15.0f", live[i].create_alloc_ns);
	printf("\n   %-22s", "bytes per ctx + 64 B");
	for (int i = 0; i < NIMPL; i++)
		printf("  %-15.1f", live[i].alloc_bytes);
	printf("\n   dedicated: %ld live contexts, not %ld: ureg_arena_dedicated_max caps the\n"
	       "   dedicated arenas (default 1,024).  On fresh arenas (parked ones are\n"
	       "   held aside; cap %s): its create includes\n"
	       "   jemalloc's arena creation, its bytes the arena's metadata\n",
	       live[U_DEDICATED].n, live[U_SHARED].n,
	       ded_max_set ? "raised for this run to make room" : "left at its default");

	long vmd = parked.vm_after - parked.vm_before;
	printf("\nd) parked dedicated arenas: %ld contexts (fresh arenas), each filled with %ld KiB\n",
	       parked.n, parked.fill >> 10);
	printf("   RSS before %ld KiB, filled %ld KiB (%+.1f KiB per context), destroyed %ld KiB\n",
	       parked.rss_before >> 10, parked.rss_filled >> 10,
	       kib_per(parked.rss_filled - parked.rss_before, parked.n), parked.rss_after >> 10);
	printf("   per parked arena: %.1f KiB RSS, %.1f KiB address space (VmSize); %u arenas parked\n",
	       kib_per(parked.rss_after - parked.rss_before, parked.n), kib_per(vmd, parked.n),
	       parked.parked);

	printf("\ne) %ld shared contexts x %ld instances (%d + %d bytes each)\n",
	       instp.n, instp.inst, INST_SIZE, LABEL_SIZE);
	printf("   bytes/context, ureg accounting:      %8.1f\n", instp.acct);
	printf("   bytes/context, RSS (ureg):           %8.1f\n", instp.rss_ureg);
	printf("   bytes/context, glibc malloc usable:  %8.1f\n", instp.usable_malloc);
	printf("   bytes/context, RSS (glibc malloc):   %8.1f\n", instp.rss_malloc);

	printf("\nf) address space, one 64-byte allocation per cycle (tolerance %ld KiB)\n",
	       vm_tolerance / 1024);
	printf("   shared    %8ld cycles: VmSize %ld -> %ld KiB, growth %+ld KiB\n",
	       vm.shared_cycles, vm.shared_before >> 10, vm.shared_after >> 10,
	       (vm.shared_after - vm.shared_before) / 1024);
	printf("   dedicated %8ld cycles: VmSize %ld -> %ld KiB, growth %+ld KiB\n",
	       vm.ded_cycles, vm.ded_before >> 10, vm.ded_after >> 10,
	       (vm.ded_after - vm.ded_before) / 1024);
	printf("memprofile: vm_growth_shared=%ld vm_growth_dedicated=%ld %s\n",
	       vm.shared_after - vm.shared_before, vm.ded_after - vm.ded_before,
	       vm.ok ? "ok" : "GREW");
}

static void jset(json_t *o, const char *k, json_t *v)
{
	if (!v || json_object_set_new(o, k, v))
		oom("json");
}

static void print_json(void)
{
	json_t *root = json_object(), *o, *p;
	char ver[32];

	if (!root)
		oom("json");
	o = json_object();
	jset(o, "nproc", json_integer(mach.nproc));
	jset(o, "cpu", json_string(mach.cpu));
	jset(o, "build", json_string(build_kind()));
	jset(o, "glibc", json_string(gnu_get_libc_version()));
	snprintf(ver, sizeof(ver), "%d.%d", talloc_version_major(), talloc_version_minor());
	jset(o, "talloc", json_string(ver));
	jset(o, "jemalloc", json_string(mach.jemalloc));
	jset(o, "process_malloc", json_string(mach.malloc_lib));
	jset(o, "process_malloc_is_glibc", json_boolean(mach.malloc_is_glibc));
	jset(o, "jemalloc_purged_between_phases", json_boolean(mach.purge));
	jset(root, "machine", o);
	jset(root, "quick", json_boolean(quick));

	o = json_object();
	jset(o, "runs", json_integer(RUNS));
	jset(o, "alloc_size", json_integer(ALLOC_SIZE));
	for (int r = 0; r < NROW; r++) {
		json_t *row = json_object();
		jset(row, "allocations", json_integer(row_allocs[r]));
		for (int i = 0; i < NIMPL; i++) {
			p = json_object();
			jset(p, "cycles_per_run", json_integer(lat[i][r].cycles));
			jset(p, "median_ns", json_real(lat[i][r].med));
			jset(p, "min_ns", json_real(lat[i][r].min));
			jset(p, "max_ns", json_real(lat[i][r].max));
			jset(row, impl_key[i], p);
		}
		jset(row, "ratio_talloc_over_ureg_shared", json_real(ratio(TALLOC, r)));
		p = json_object();
		jset(p, "median", json_real(paired[r].med));
		jset(p, "min", json_real(paired[r].min));
		jset(p, "max", json_real(paired[r].max));
		jset(row, "ratio_talloc_over_ureg_shared_paired", p);
		jset(row, "ratio_malloc_over_ureg_shared", json_real(ratio(MALLOC, r)));
		jset(row, "ratio_dedicated_over_ureg_shared", json_real(ratio(U_DEDICATED, r)));
		jset(o, row_key[r], row);
	}
	jset(root, "create_destroy", o);

	o = json_object();
	for (int i = 0; i < NIMPL; i++) {
		p = json_object();
		jset(p, "contexts", json_integer(live[i].n));
		jset(p, "create_ns", json_real(live[i].create_ns));
		jset(p, "idle_bytes", json_real(live[i].idle_bytes));
		jset(p, "create_alloc_ns", json_real(live[i].create_alloc_ns));
		jset(p, "one_alloc_bytes", json_real(live[i].alloc_bytes));
		jset(o, impl_key[i], p);
	}
	jset(o, "dedicated_note", json_string(
		"dedicated measured over fewer live contexts: ureg_arena_dedicated_max "
		"caps dedicated arenas (default 1024); each phase on fresh arenas"));
	jset(o, "dedicated_max_raised_to", json_integer(ded_max_set));
	jset(root, "live", o);

	o = json_object();
	jset(o, "contexts", json_integer(parked.n));
	jset(o, "fill_bytes", json_integer(parked.fill));
	jset(o, "rss_before", json_integer(parked.rss_before));
	jset(o, "rss_filled", json_integer(parked.rss_filled));
	jset(o, "rss_after_destroy", json_integer(parked.rss_after));
	jset(o, "rss_per_parked_arena",
	     json_real((double)(parked.rss_after - parked.rss_before) / (double)parked.n));
	jset(o, "vm_per_parked_arena",
	     json_real((double)(parked.vm_after - parked.vm_before) / (double)parked.n));
	jset(o, "arenas_parked", json_integer(parked.parked));
	jset(root, "parked_dedicated", o);

	o = json_object();
	jset(o, "contexts", json_integer(instp.n));
	jset(o, "instances_per_context", json_integer(instp.inst));
	jset(o, "ureg_accounted_bytes", json_real(instp.acct));
	jset(o, "ureg_rss_bytes", json_real(instp.rss_ureg));
	jset(o, "malloc_usable_bytes", json_real(instp.usable_malloc));
	jset(o, "malloc_rss_bytes", json_real(instp.rss_malloc));
	jset(root, "instances", o);

	o = json_object();
	jset(o, "tolerance", json_integer(vm_tolerance));
	jset(o, "shared_cycles", json_integer(vm.shared_cycles));
	jset(o, "shared_growth", json_integer(vm.shared_after - vm.shared_before));
	jset(o, "dedicated_cycles", json_integer(vm.ded_cycles));
	jset(o, "dedicated_growth", json_integer(vm.ded_after - vm.ded_before));
	jset(o, "ok", json_boolean(vm.ok));
	jset(root, "address_space", o);

	if (json_dumpf(root, stdout, JSON_INDENT(2) | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(6)))
		oom("json dump");
	putchar('\n');
	json_decref(root);
}

static void usage(FILE *f)
{
	fprintf(f,
		"usage: ureg-memprofile [--quick] [--json] [--contexts N] [--help] [--version]\n"
		"  Side by side, from one run: ureg shared contexts, ureg dedicated\n"
		"  contexts, talloc and a glibc-malloc context:\n"
		"   a) create+destroy of an idle context, with one and with ten 64-byte\n"
		"      allocations (ns, median of %d runs, min..max) and c) the ratios\n"
		"      talloc/ureg-shared (>= 1.0: ureg as fast or faster);\n"
		"   b) 1,000,000 live contexts (dedicated: 1,000): ns per create, bytes\n"
		"      per idle context and per context with one 64-byte allocation (RSS);\n"
		"   d) RSS per parked dedicated arena (200 filled with 1 MiB, destroyed);\n"
		"   e) 100,000 shared contexts x 3 instances (ureg accounting, RSS, malloc);\n"
		"   f) VmSize over 1,000,000 shared / 2,000 dedicated create/destroy cycles:\n"
		"      exit 1 if it grows by more than 2 MiB.\n"
		"  --quick       ~10x fewer of everything (a smoke run)\n"
		"  --json        print one JSON object instead of the text\n"
		"  --contexts N  contexts in e) (1..10,000,000; default 100,000)\n"
		"  -h, --help    this text, on stdout\n"
		"  -V, --version the program and libureg version\n"
		"Exit status: 0 ok, 1 address space grew, 2 usage error or a failed call.\n", RUNS);
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "quick", no_argument, NULL, 'q' },
		{ "json", no_argument, NULL, 'j' },
		{ "contexts", required_argument, NULL, 'n' },
		{ "help", no_argument, NULL, 'h' },
		{ "version", no_argument, NULL, 'V' },
		{ 0 },
	};
	unsigned long contexts_arg = 0;
	bool json = false;
	ureg_registry *reg;
	void **v;
	int c, rc;

	while ((c = getopt_long(argc, argv, "qjn:hV", opts, NULL)) != -1) {
		switch (c) {
		case 'q': quick = true; break;
		case 'j': json = true; break;
		case 'n':
			if (!tool_parse_ulong(optarg, 1, 10000000, &contexts_arg)) {
				fprintf(stderr, "ureg-memprofile: bad --contexts '%s'\n", optarg);
				usage(stderr);
				return TOOL_EXIT_USAGE;
			}
			break;
		case 'h': usage(stdout); return TOOL_EXIT_OK;
		case 'V': tool_print_version("ureg-memprofile"); return TOOL_EXIT_OK;
		default: usage(stderr); return TOOL_EXIT_USAGE;
		}
	}
	if (optind < argc) {
		fprintf(stderr, "ureg-memprofile: unexpected argument '%s'\n", argv[optind]);
		usage(stderr);
		return TOOL_EXIT_USAGE;
	}
	if (quick) {
		lat_cycles /= 10; lat_cycles_ded /= 10;
		live_n /= 10; live_n_ded /= 10;
		parked_n /= 10;
		ncontexts /= 10;
		vm_shared /= 10; vm_dedicated /= 10;
	}
	if (contexts_arg)
		ncontexts = (long)contexts_arg;
	page_size = sysconf(_SC_PAGESIZE);
	machine_info();

	if ((rc = ureg_registry_new(&prof_type, "profile", &reg)))
		die("registry_new", rc);
	struct ureg_factory f = { .create = make_inst, .scope = UREG_SCOPE_TRANSIENT };
	if ((rc = ureg_register_factory(reg, "inst", &f)))
		die("register_factory", rc);
	/* each dedicated phase on fresh arenas (hold_parked): the parked
	 * phase, both live phases, the one arena the latency cycles reuse */
	unsigned need = (unsigned)(2 * live_n_ded + parked_n + 16);
	if (need > 1024) {
		if ((rc = ureg_arena_dedicated_max(need)))
			die("arena_dedicated_max", rc);
		ded_max_set = need;
	}
	/* the shared pool is made on the first context: not in any number */
	ushared_destroy(ushared_new());

	long vn = 2 * live_n > parked_n ? 2 * live_n : parked_n;
	if (!(v = calloc((size_t)vn, sizeof(*v))))
		oom("contexts array");
	memset(v, 1, (size_t)vn * sizeof(*v)); /* resident before any delta */

	profile_latency();
	/* jemalloc (ureg) first, then glibc's heap (talloc, malloc) */
	profile_parked(v);
	profile_live(U_SHARED, v);
	profile_live(U_DEDICATED, v);
	profile_live(TALLOC, v);
	profile_live(MALLOC, v);
	profile_instances(reg);
	profile_vm();
	free(v);
	ureg_registry_destroy(reg);

	if (json)
		print_json();
	else
		print_text();
	return vm.ok ? 0 : 1;
}
