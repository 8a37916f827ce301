/* SPDX-License-Identifier: MIT */
/*
 * ureg-factory-cpu: the factory workload of ureg-bench (a TRANSIENT
 * factory that allocates a 64-byte instance in the thread's context, 1,000
 * keys in random order, instances released every 1,024), timed with the
 * thread's CPU clock instead of the wall clock, so that a machine shared
 * with other work (preemption) moves the figure less.  Prints the median,
 * min and max over 9 rounds of 400,000 creations, in ns per
 * create+release.  Run it alternately with a build of another commit to
 * compare the two in the same conditions.
 */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include <getopt.h>
#include <ureg/ureg.h>

#include "../tool_opts.h"

#define KEYS 1000
#define BATCH 1024
#define ROUNDS 9
#define OPS 400000L

struct inst {
	unsigned long v[8];
};

static int make(ureg_ctx *ctx, void *arg, void **out)
{
	struct inst *in = ureg_ctx_alloc(ctx, sizeof(*in));

	if (!in)
		return -ENOMEM;
	in->v[0] = (unsigned long)(uintptr_t)arg;
	*out = in;
	return 0;
}

static void drop(void *p, ureg_ctx *ctx)
{
	ureg_ctx_free(ctx, p);
}

static const ureg_type cpu_type = { .name = "factory-cpu", .instance_destroy = drop };

static double cpu_ns(void)
{
	struct timespec t;

	clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
	return t.tv_sec * 1e9 + t.tv_nsec;
}

static int cmp(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
}

static void usage(FILE *f)
{
	fprintf(f,
		"usage: ureg-factory-cpu [OPTION]...\n"
		"Time ureg-bench's factory workload with the thread's CPU clock: median,\n"
		"min and max ns per create+release over 9 rounds of 400,000 creations.\n\n"
		"  -h, --help     this text, on stdout\n"
		"  -V, --version  the version (of the libureg loaded)\n\n"
		"Exit status: 0 measured, 1 a ureg call failed, 2 bad usage.\n");
}

int main(int argc, char **argv)
{
	static char keys[KEYS][32];
	static void *live[BATCH];
	ureg_registry *reg;
	ureg_ctx *ctx;
	double r[ROUNDS];
	unsigned n = 0, x = 1;
	unsigned long sum = 0;
	static const struct option opts[] = {
		{ "help", no_argument, NULL, 'h' },
		{ "version", no_argument, NULL, 'V' },
		{ 0 }
	};
	int o;

	while ((o = getopt_long(argc, argv, "hV", opts, NULL)) != -1) {
		switch (o) {
		case 'h': usage(stdout); return TOOL_EXIT_OK;
		case 'V': tool_print_version("ureg-factory-cpu"); return TOOL_EXIT_OK;
		default: usage(stderr); return TOOL_EXIT_USAGE;
		}
	}
	if (optind < argc) {
		fprintf(stderr, "ureg-factory-cpu: unexpected argument '%s'\n", argv[optind]);
		return TOOL_EXIT_USAGE;
	}
	if (ureg_registry_new(&cpu_type, "factory-cpu", &reg) ||
	    ureg_ctx_new("factory-cpu", UREG_CTX_SHARED, &ctx))
		goto fail;
	for (int i = 0; i < KEYS; i++) {
		struct ureg_factory f = { .create = make, .arg = (void *)(uintptr_t)i };

		snprintf(keys[i], sizeof(keys[i]), "tool.key.%04d", i);
		if (ureg_register_factory(reg, keys[i], &f))
			goto fail;
	}
	for (int round = 0; round < ROUNDS; round++) {
		double t0 = cpu_ns();

		for (long k = 0; k < OPS; k++) {
			void *o;

			x = x * 1103515245u + 12345u;
			if (ureg_create_instance(reg, keys[(x >> 8) % KEYS], ctx, &o))
				goto fail;
			sum += ((struct inst *)o)->v[0];
			live[n++] = o;
			if (n == BATCH) {
				for (unsigned j = 0; j < n; j++)
					ureg_instance_release(ctx, live[j]);
				n = 0;
			}
		}
		r[round] = (cpu_ns() - t0) / OPS;
	}
	qsort(r, ROUNDS, sizeof(r[0]), cmp);
	printf("create+release: median %.1f ns [%.1f..%.1f] (thread CPU time, %d rounds of %ld; %lu)\n",
	       r[ROUNDS / 2], r[0], r[ROUNDS - 1], ROUNDS, OPS, sum % 7);
	ureg_ctx_destroy(ctx);
	ureg_registry_destroy(reg);
	return 0;
fail:
	fprintf(stderr, "ureg-factory-cpu: %s\n", ureg_last_error());
	return 1;
}
