/* SPDX-License-Identifier: MIT */
/*
 * ureg-memprofile - what a user context costs.
 *
 *  1. 100,000 contexts with a few instances each: bytes per context by
 *     ureg's own accounting (ureg_ctx_stats live_bytes), by RSS
 *     (/proc/self/statm), and for plain glibc malloc making the same
 *     allocations (the baseline a hand-written server would have; measured
 *     first, then freed and trimmed, so neither run reuses the other's heap).
 *  2. The idle context: RSS per empty shared context, and the size of the
 *     context's own block (malloc_usable_size: ureg allocates the context
 *     object with the application's malloc).
 *  3. Create + destroy latency, shared pool and dedicated arena (median of
 *     several runs).
 *  4. Address space (VmSize) across 1,000,000 create/destroy cycles of
 *     shared contexts and 2,000 of dedicated ones, one allocation each: it
 *     must not grow (exit 1 beyond the tolerance).
 *
 * This executable deliberately does not link jemalloc itself, so its
 * malloc is glibc's (libureg only calls mallocx & co.) and the baseline is
 * what it claims to be.  Numbers are meaningful in a normal (not sanitizer)
 * build; --quick shrinks every count for a smoke run in tools/dev test.
 */
#include <errno.h>
#include <getopt.h>
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <ureg/ureg.h>
#include <ureg/ctx.h>

#define INST_SIZE 96   /* an instance object */
#define LABEL_SIZE 40  /* a second allocation per instance (a name) */
#define RUNS 5

static long page_size;

static long rss_bytes(void)
{
	long size = 0, resident = 0;
	FILE *f = fopen("/proc/self/statm", "r");

	if (!f || fscanf(f, "%ld %ld", &size, &resident) != 2) {
		perror("memprofile: /proc/self/statm");
		exit(2);
	}
	fclose(f);
	return resident * page_size;
}

static long vm_size_bytes(void)
{
	char line[256];
	long kb = -1;
	FILE *f = fopen("/proc/self/status", "r");

	if (!f) {
		perror("memprofile: /proc/self/status");
		exit(2);
	}
	while (fgets(line, sizeof(line), f))
		if (sscanf(line, "VmSize: %ld kB", &kb) == 1)
			break;
	fclose(f);
	return kb * 1024;
}

static double now_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec * 1e6 + ts.tv_nsec / 1e3;
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

/* ------------------------------------------------------------ factory */

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

/* ------------------------------------------------------------ sections */

static long ncontexts = 100000, ninstances = 3;
static long lat_shared = 100000, lat_dedicated = 2000;
static long vm_shared = 1000000, vm_dedicated = 2000;
static long vm_tolerance = 2 << 20;

static void profile_many(ureg_registry *reg)
{
	ureg_ctx **ctxs = calloc((size_t)ncontexts, sizeof(*ctxs));
	void **plain = calloc((size_t)(ncontexts * ninstances * 2), sizeof(*plain));
	size_t acct = 0, plain_usable = 0;
	long rss0, rss1, rss2;

	if (!ctxs || !plain)
		exit(2);
	/* touch the pointer arrays first so they are not in the deltas */
	memset(ctxs, 0, (size_t)ncontexts * sizeof(*ctxs));
	memset(plain, 0, (size_t)(ncontexts * ninstances * 2) * sizeof(*plain));

	/* the baseline: the same allocations with glibc malloc */
	long rssb0 = rss_bytes();
	for (long i = 0, k = 0; i < ncontexts; i++) {
		for (long j = 0; j < ninstances; j++) {
			struct inst *in = malloc(sizeof(*in));
			if (!in || !(in->label = malloc(LABEL_SIZE)))
				exit(2);
			memset(in->body, 1, sizeof(in->body));
			memset(in->label, 2, LABEL_SIZE);
			plain[k++] = in;
			plain[k++] = in->label;
			plain_usable += malloc_usable_size(in) + malloc_usable_size(in->label);
		}
	}
	rss2 = rss_bytes();
	for (long k = 0; k < ncontexts * ninstances * 2; k++)
		free(plain[k]);
	malloc_trim(0); /* give the baseline's pages back before measuring ureg */

	rss0 = rss_bytes();
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
	rss1 = rss_bytes();
	for (long i = 0; i < ncontexts; i++) {
		struct ureg_ctx_stats st;
		ureg_ctx_stats(ctxs[i], &st);
		acct += st.live_bytes;
	}
	for (long i = 0; i < ncontexts; i++)
		ureg_ctx_destroy(ctxs[i]);

	malloc_trim(0);
	printf("contexts: %ld shared contexts x %ld instances (%d + %d bytes each)\n",
	       ncontexts, ninstances, INST_SIZE, LABEL_SIZE);
	printf("  bytes/context, ureg accounting:       %8.1f\n", (double)acct / ncontexts);
	printf("  bytes/context, RSS (ureg):            %8.1f\n", (double)(rss1 - rss0) / ncontexts);
	printf("  bytes/context, glibc malloc usable:   %8.1f\n", (double)plain_usable / ncontexts);
	printf("  bytes/context, RSS (glibc malloc):    %8.1f\n", (double)(rss2 - rssb0) / ncontexts);
	free(ctxs);
	free(plain);
}

static void profile_idle(void)
{
	ureg_ctx **ctxs = calloc((size_t)ncontexts, sizeof(*ctxs));
	size_t usable = 0;
	long rss0, rss1;

	if (!ctxs)
		exit(2);
	memset(ctxs, 0, (size_t)ncontexts * sizeof(*ctxs));
	rss0 = rss_bytes();
	for (long i = 0; i < ncontexts; i++) {
		int rc = ureg_ctx_new(NULL, UREG_CTX_SHARED, &ctxs[i]);
		if (rc)
			die("ctx_new", rc);
	}
	rss1 = rss_bytes();
	/* ureg allocates the context object itself with the application's
	 * malloc (lib/ctx.c): its usable size is the idle cost in the heap */
	for (long i = 0; i < ncontexts; i++)
		usable += malloc_usable_size(ctxs[i]);
	for (long i = 0; i < ncontexts; i++)
		ureg_ctx_destroy(ctxs[i]);
	free(ctxs);
	printf("idle shared context: %8.1f bytes by RSS, %8.1f bytes malloc_usable_size\n",
	       (double)(rss1 - rss0) / ncontexts, (double)usable / ncontexts);
}

/* Median over RUNS of the mean create+destroy time of @n contexts. */
static double cycle_us(unsigned flags, long n, bool alloc)
{
	double t[RUNS];

	for (int r = 0; r < RUNS; r++) {
		double t0 = now_us();
		for (long i = 0; i < n; i++) {
			ureg_ctx *ctx;
			int rc = ureg_ctx_new(NULL, flags, &ctx);
			if (rc)
				die("ctx_new", rc);
			if (alloc && !ureg_ctx_alloc(ctx, 64))
				die("ctx_alloc", -errno);
			ureg_ctx_destroy(ctx);
		}
		t[r] = (now_us() - t0) / n;
	}
	qsort(t, RUNS, sizeof(t[0]), cmp_double);
	return t[RUNS / 2];
}

static void profile_latency(void)
{
	printf("create+destroy (median of %d runs):\n", RUNS);
	printf("  shared pool:     %8.3f us  (%8.3f us with one 64-byte allocation)   [%ld cycles/run]\n",
	       cycle_us(UREG_CTX_SHARED, lat_shared, false),
	       cycle_us(UREG_CTX_SHARED, lat_shared, true), lat_shared);
	printf("  dedicated arena: %8.3f us  (%8.3f us with one 64-byte allocation)   [%ld cycles/run]\n",
	       cycle_us(UREG_CTX_DEDICATED, lat_dedicated, false),
	       cycle_us(UREG_CTX_DEDICATED, lat_dedicated, true), lat_dedicated);
}

/* VmSize before and after @n cycles (after a short warm-up). */
static long vm_growth(unsigned flags, long n)
{
	long before, after;

	cycle_us(flags, n / 100 + 10, true); /* warm-up: pools, caches */
	before = vm_size_bytes();
	for (long i = 0; i < n; i++) {
		ureg_ctx *ctx;
		int rc = ureg_ctx_new(NULL, flags, &ctx);
		if (rc)
			die("ctx_new", rc);
		if (!ureg_ctx_alloc(ctx, 64))
			die("ctx_alloc", -errno);
		ureg_ctx_destroy(ctx);
	}
	after = vm_size_bytes();
	printf("  %-9s %8ld cycles: VmSize %ld -> %ld KiB, growth %+ld KiB\n",
	       flags & UREG_CTX_DEDICATED ? "dedicated" : "shared", n,
	       before / 1024, after / 1024, (after - before) / 1024);
	return after - before;
}

static void usage(FILE *f)
{
	fprintf(f, "usage: ureg-memprofile [--quick] [--contexts N]\n"
		   "  per-context memory (ureg accounting, RSS, glibc baseline), idle\n"
		   "  context cost, create+destroy latency, and VmSize growth over\n"
		   "  1,000,000 shared / 2,000 dedicated create/destroy cycles (exit 1\n"
		   "  if it grows by more than 2 MiB).  --quick: 10x fewer of everything.\n");
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "quick", no_argument, NULL, 'q' },
		{ "contexts", required_argument, NULL, 'n' },
		{ "help", no_argument, NULL, 'h' },
		{ 0 },
	};
	ureg_registry *reg;
	int c, rc;

	while ((c = getopt_long(argc, argv, "qn:h", opts, NULL)) != -1) {
		switch (c) {
		case 'q':
			ncontexts /= 10; lat_shared /= 10; lat_dedicated /= 10;
			vm_shared /= 10; vm_dedicated /= 10;
			break;
		case 'n': ncontexts = atol(optarg); break;
		case 'h': usage(stdout); return 0;
		default: usage(stderr); return 2;
		}
	}
	if (ncontexts < 1) {
		usage(stderr);
		return 2;
	}
	page_size = sysconf(_SC_PAGESIZE);
	if ((rc = ureg_registry_new(&prof_type, "profile", &reg)))
		die("registry_new", rc);
	struct ureg_factory f = { .create = make_inst, .scope = UREG_SCOPE_TRANSIENT };
	if ((rc = ureg_register_factory(reg, "inst", &f)))
		die("register_factory", rc);

	profile_many(reg);
	profile_idle();
	profile_latency();
	printf("address space (tolerance %ld KiB):\n", vm_tolerance / 1024);
	long gs = vm_growth(UREG_CTX_SHARED, vm_shared);
	long gd = vm_growth(UREG_CTX_DEDICATED, vm_dedicated);
	ureg_registry_destroy(reg);
	bool ok = gs <= vm_tolerance && gd <= vm_tolerance;
	printf("memprofile: vm_growth_shared=%ld vm_growth_dedicated=%ld %s\n", gs, gd,
	       ok ? "ok" : "GREW");
	return ok ? 0 : 1;
}
