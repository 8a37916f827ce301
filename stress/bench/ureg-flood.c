/* SPDX-License-Identifier: MIT */
/*
 * ureg-flood: lookups of keys chosen to share one bucket, against ordinary
 * keys.  A registry of N keys has 2^B buckets (one per key, at least
 * 4,096: lib/core/registry.c) and cds_lfht puts a key in the bucket of
 * its hash's low B bits.  This program picks N keys ("flood.<hex>") whose
 * plain XXH3_64bits share those bits - what anyone can compute offline for
 * a hash without a secret seed - registers them in one registry and N
 * ordinary keys ("plain.<n>") in another, and times string lookups of each
 * set in a random order (one thread, a read section per lookup).
 *
 * ureg seeds its hash per process (ureg.h, "Keys"), so the chosen keys
 * spread like any others and the two figures agree.  UREG_HASH_SEED=0
 * gives plain XXH3, the hash of every ureg before the seed: there the
 * chosen keys form one chain and each lookup walks half of it.
 *
 * Prints one line: the seed mode, ns per lookup of each set, their ratio.
 */
#define _POSIX_C_SOURCE 200809L
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <ureg/ureg.h>
#define XXH_INLINE_ALL
#include <xxhash.h>

#include "../tool_opts.h"

#define KEY_LEN 24

static const ureg_type type = { .name = "flood" };

static double now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* ns per lookup of @keys (in @order), at least @seconds of them. */
static double time_lookups(ureg_registry *reg, char (*keys)[KEY_LEN], const unsigned *order,
			   unsigned n, double seconds, int *err)
{
	unsigned long done = 0;
	double t0 = now(), t;

	do {
		for (unsigned i = 0; i < n; i++) {
			void *item;

			ureg_read_lock();
			if (ureg_lookup(reg, keys[order[i]], &item) != 0)
				*err = 1;
			ureg_read_unlock();
		}
		done += n;
		t = now() - t0;
	} while (t < seconds);
	return t * 1e9 / (double)done;
}

static void usage(FILE *f)
{
	fprintf(f,
		"usage: ureg-flood [OPTION]...\n"
		"  -k, --keys N      keys in each registry (64..100000, default 8192)\n"
		"  -s, --seconds N   seconds of lookups per set (1..60, default 1)\n"
		"  -h, --help        this text, on stdout\n"
		"  -V, --version     the version (of the libureg loaded)\n\n"
		"UREG_HASH_SEED=0 in the environment: ureg's hash without a seed.\n"
		"Exit status: 0 measured, 1 a ureg call failed, 2 bad usage.\n");
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "keys", required_argument, NULL, 'k' },
		{ "seconds", required_argument, NULL, 's' },
		{ "help", no_argument, NULL, 'h' },
		{ "version", no_argument, NULL, 'V' },
		{ NULL, 0, NULL, 0 },
	};
	unsigned long n = 8192, seconds = 1;
	int o;

	while ((o = getopt_long(argc, argv, "k:s:hV", opts, NULL)) != -1) {
		switch (o) {
		case 'k':
			if (!tool_parse_ulong(optarg, 64, 100000, &n)) {
				fprintf(stderr, "ureg-flood: bad --keys '%s'\n", optarg);
				usage(stderr);
				return TOOL_EXIT_USAGE;
			}
			break;
		case 's':
			if (!tool_parse_ulong(optarg, 1, 60, &seconds)) {
				fprintf(stderr, "ureg-flood: bad --seconds '%s'\n", optarg);
				usage(stderr);
				return TOOL_EXIT_USAGE;
			}
			break;
		case 'h': usage(stdout); return TOOL_EXIT_OK;
		case 'V': tool_print_version("ureg-flood"); return TOOL_EXIT_OK;
		default: usage(stderr); return TOOL_EXIT_USAGE;
		}
	}
	if (optind < argc) {
		fprintf(stderr, "ureg-flood: unexpected argument '%s'\n", argv[optind]);
		usage(stderr);
		return TOOL_EXIT_USAGE;
	}

	/* the table's buckets for n keys, as lib/core/registry.c sizes it */
	uint64_t buckets = 4096;
	while (buckets < n)
		buckets <<= 1;
	char (*flood)[KEY_LEN] = calloc(n, KEY_LEN), (*plain)[KEY_LEN] = calloc(n, KEY_LEN);
	unsigned *order = calloc(n, sizeof(*order));
	static int item;
	ureg_registry *rf, *rp;
	int rc, err = 0;

	if (!flood || !plain || !order) {
		fprintf(stderr, "ureg-flood: out of memory\n");
		return TOOL_EXIT_FAIL;
	}
	unsigned got = 0;
	for (uint64_t c = 0; got < n; c++) {
		int len = snprintf(flood[got], KEY_LEN, "flood.%llx", (unsigned long long)c);

		if ((XXH3_64bits(flood[got], (size_t)len) & (buckets - 1)) == 0)
			got++;
	}
	for (unsigned i = 0; i < n; i++)
		snprintf(plain[i], KEY_LEN, "plain.%u", i);
	/* one random order for both sets (xorshift64, Fisher-Yates) */
	uint64_t x = 88172645463325252ull;
	for (unsigned i = 0; i < n; i++)
		order[i] = i;
	for (unsigned i = n - 1; i > 0; i--) {
		x ^= x << 13, x ^= x >> 7, x ^= x << 17;
		unsigned j = (unsigned)(x % (i + 1)), t = order[i];
		order[i] = order[j], order[j] = t;
	}
	if ((rc = ureg_registry_new(&type, "flood", &rf)) ||
	    (rc = ureg_registry_new(&type, "plain", &rp))) {
		fprintf(stderr, "ureg-flood: %s\n", ureg_last_error());
		return TOOL_EXIT_FAIL;
	}
	double t0 = now();
	for (unsigned i = 0; i < n; i++)
		if ((rc = ureg_register(rf, flood[i], &item)) ||
		    (rc = ureg_register(rp, plain[i], &item))) {
			fprintf(stderr, "ureg-flood: register: %s\n", ureg_last_error());
			return TOOL_EXIT_FAIL;
		}
	double reg_s = now() - t0;
	double tf = time_lookups(rf, flood, order, (unsigned)n, (double)seconds, &err);
	double tp = time_lookups(rp, plain, order, (unsigned)n, (double)seconds, &err);
	if (err) {
		fprintf(stderr, "ureg-flood: a registered key was not found\n");
		return TOOL_EXIT_FAIL;
	}
	const char *seed = getenv("UREG_HASH_SEED");
	/* the library ignores a value it cannot parse (random seed then) */
	printf("%lu keys sharing the low %d bits of plain XXH3 (%llu buckets), %s%s: "
	       "%.1f ns per lookup, ordinary keys %.1f ns, ratio %.2f; registering both sets %.2f s\n",
	       n, __builtin_ctzll(buckets), (unsigned long long)buckets,
	       seed && *seed ? "UREG_HASH_SEED=" : "hash seed random",
	       seed && *seed ? seed : "", tf, tp, tf / tp, reg_s);
	ureg_registry_destroy(rf);
	ureg_registry_destroy(rp);
	free(flood);
	free(plain);
	free(order);
	return TOOL_EXIT_OK;
}
