/* SPDX-License-Identifier: MIT */
/*
 * ureg-stress-handles - many threads share cached key handles while
 * writers replace, unregister, re-register, commit batches and resize the
 * tables under them.  Proves guarantee G.4 of ureg.h:
 *
 *   a cached handle never returns a removed, destroyed or stale item
 *   within a read section that started after the change was published,
 *   and within one section it reads the same batch generation as the
 *   table does.
 *
 * How "after the change was published" is made checkable: every item
 * carries a version from one global counter.  A writer that changes key k
 * of registry r stores the new version into published[r][k] (release)
 * once its ureg call has returned.  A reader loads published[r][k]
 * (acquire) BEFORE opening its read section; whatever the cached handle
 * returns inside the section must then carry a version at least that
 * high (a removal publishes its version too: an older item is stale).
 * Every lookup is made three ways in one section, by string, through the
 * cached handle and through a plain handle, in that order: as a
 * single-key change is visible at once (a section pins only a batch
 * generation), each may see a newer item than the one before, never an
 * older one.
 *
 * Batch keys (the first BATCH_KEYS keys of a registry) are changed only
 * by batch commits, all to one version: two of them read in one section
 * must carry the same version.
 *
 * Liveness: the item destructor poisons the magic before freeing, so a
 * reader that sees a poisoned item, or ASan a freed one, caught a cached
 * entry outliving its grace period.  Run it in the ASan build.
 *
 * The registries and the handles are shared by every thread: the handles
 * are refilled concurrently by all readers of all registries (one handle
 * per key name, used with every registry), which is the case the seqlock
 * refill must survive.
 */
#ifdef UREG_STRESS_INLINE_READ
/* ureg-stress-handles-inline: the same proof through the header-inline
 * read section and cached hit (ureg.h, UREG_INLINE_READ) */
#define UREG_INLINE_READ 1
#endif
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <ureg/ureg.h>

#include "../tool_opts.h"

#define REGS 2
#define KEYS 64            /* key names; --keys uses the first N of them */
#define BATCH_KEYS 8
#define FILLER 3000        /* extra keys that make the tables resize */
#define ITEM_LIVE UINT64_C(0x17e3a11fe17e3a11)
#define POISON UINT64_C(0xdeaddeaddeaddead)

struct item {
	uint64_t magic;
	unsigned reg, key;
	uint64_t version;
};

static ureg_registry *regs[REGS];
static char names[KEYS][16];
static ureg_key cached[KEYS]; /* one per key name, shared by all */
static ureg_key plain[KEYS];
static _Atomic uint64_t published[REGS][KEYS];
static _Atomic uint64_t version_counter;
static atomic_bool stop;
static atomic_ulong violations, lookups;
/* --keys: keys in use (BATCH_KEYS + 1 .. KEYS); --replace-only: the writers
 * only replace (no unregister, batch or resize), the tightest loop on the
 * single-key change path */
static unsigned nkeys = KEYS;
static bool replace_only;

static void violation(const char *fmt, ...)
	__attribute__((format(printf, 1, 2)));

static void violation(const char *fmt, ...)
{
	va_list ap;

	if (atomic_fetch_add(&violations, 1) < 20) {
		va_start(ap, fmt);
		fprintf(stderr, "ureg-stress-handles: VIOLATION: ");
		vfprintf(stderr, fmt, ap);
		fputc('\n', stderr);
		va_end(ap);
	}
}

static void item_destroy(void *p)
{
	struct item *it = p;

	if (it->magic != ITEM_LIVE)
		violation("item destroyed twice");
	it->magic = POISON;
	free(it);
}

static const ureg_type stress_type = { .name = "stress", .item_destroy = item_destroy };

static struct item *item_new(unsigned r, unsigned k, uint64_t v)
{
	struct item *it = malloc(sizeof(*it));

	if (!it)
		abort();
	*it = (struct item){ ITEM_LIVE, r, k, v };
	return it;
}

static uint64_t next_version(void)
{
	return atomic_fetch_add(&version_counter, 1) + 1;
}

static uint64_t xorshift(uint64_t *s)
{
	*s ^= *s << 13;
	*s ^= *s >> 7;
	*s ^= *s << 17;
	return *s;
}

/* ------------------------------------------------------------ readers */

static uint64_t version_of(const void *p)
{
	const struct item *it = p;
	return it->magic == ITEM_LIVE ? it->version : UINT64_MAX;
}

static void check_item(const void *p, unsigned r, unsigned k, uint64_t floor,
		       const char *how)
{
	const struct item *it = p;

	if (it->magic != ITEM_LIVE)
		violation("%s: reg %u key %u: destroyed item", how, r, k);
	else if (it->reg != r || it->key != k)
		violation("%s: reg %u key %u: item of reg %u key %u", how, r, k,
			  it->reg, it->key);
	else if (it->version < floor)
		violation("%s: reg %u key %u: version %" PRIu64 " older than "
			  "published %" PRIu64, how, r, k, it->version, floor);
}

static void *reader(void *arg)
{
	uint64_t s = (uint64_t)(uintptr_t)arg * 0x9e3779b97f4a7c15ull + 1;
	unsigned long n = 0;

	while (!atomic_load_explicit(&stop, memory_order_relaxed)) {
		unsigned r = (unsigned)(xorshift(&s) % REGS);
		unsigned k = replace_only
			? BATCH_KEYS + (unsigned)(xorshift(&s) % (nkeys - BATCH_KEYS))
			: (unsigned)(xorshift(&s) % nkeys);
		uint64_t floor = atomic_load_explicit(&published[r][k],
						      memory_order_acquire);
		void *a = NULL, *b = NULL, *c = NULL;
		int ra, rb, rc;

		ureg_read_lock();
		/* string, then cached, then plain: a single-key change is
		 * visible at once, even inside a section, so each may see a
		 * newer version than the one before, never an older one */
		rc = ureg_lookup(regs[r], names[k], &c);
		ra = ureg_lookup_key(regs[r], &cached[k], &a);
		rb = ureg_lookup_key(regs[r], &plain[k], &b);
		if ((ra && ra != -ENOENT) || (rb && rb != -ENOENT) ||
		    (rc && rc != -ENOENT))
			violation("reg %u key %u: lookups returned %d %d %d", r, k,
				  ra, rb, rc);
		if (rc == 0)
			check_item(c, r, k, floor, "string");
		if (ra == 0)
			check_item(a, r, k, rc == 0 ? version_of(c) : floor, "cached");
		if (rb == 0)
			check_item(b, r, k, ra == 0 ? version_of(a) : floor, "plain");
		if (k < BATCH_KEYS) {
			/* batch keys: one generation per section */
			unsigned k2 = (k + 1 + (unsigned)(xorshift(&s) % (BATCH_KEYS - 1))) % BATCH_KEYS;
			void *d = NULL;
			if (ureg_lookup_key(regs[r], &cached[k2], &d) != 0)
				violation("reg %u batch key %u missing", r, k2);
			else if (ra == 0 && ((const struct item *)d)->version !=
				 ((const struct item *)a)->version)
				violation("reg %u: batch keys %u and %u from two "
					  "generations in one section", r, k, k2);
		}
		ureg_read_unlock();
		n++;
	}
	atomic_fetch_add(&lookups, n);
	return NULL;
}

/* ------------------------------------------------------------ writers */

static void must(int rc, const char *what)
{
	if (rc != 0) {
		fprintf(stderr, "ureg-stress-handles: %s: %s (%s)\n", what,
			ureg_strerror(rc), ureg_last_error());
		abort();
	}
}

static void *writer(void *arg)
{
	unsigned r = (unsigned)(uintptr_t)arg;
	uint64_t s = 0x2545f4914f6cdd1dull ^ r;
	bool present[KEYS];
	unsigned fillers = 0;
	char fname[32];

	for (unsigned k = 0; k < KEYS; k++)
		present[k] = true;
	while (!atomic_load_explicit(&stop, memory_order_relaxed)) {
		unsigned op = replace_only ? 0 : (unsigned)(xorshift(&s) % 100);
		unsigned k = BATCH_KEYS + (unsigned)(xorshift(&s) % (nkeys - BATCH_KEYS));
		uint64_t v = next_version();

		if (op < 60) {                         /* replace or register */
			if (present[k])
				must(ureg_replace(regs[r], names[k], item_new(r, k, v)), "replace");
			else
				must(ureg_register(regs[r], names[k], item_new(r, k, v)), "register");
			present[k] = true;
		} else if (op < 85) {                  /* unregister */
			if (!present[k])
				continue;
			must(ureg_unregister(regs[r], names[k], UREG_BOTH), "unregister");
			present[k] = false;
		} else if (op < 95) {                  /* batch: every batch key, plus one more */
			ureg_batch *b = NULL;
			must(ureg_batch_new(regs[r], &b), "batch_new");
			for (unsigned j = 0; j < BATCH_KEYS; j++)
				must(ureg_batch_put(b, names[j], item_new(r, j, v), NULL, NULL), "batch_put");
			must(ureg_batch_put(b, names[k], item_new(r, k, v), NULL, NULL), "batch_put");
			must(ureg_batch_commit(b, 0), "batch_commit");
			present[k] = true;
			for (unsigned j = 0; j < BATCH_KEYS; j++)
				atomic_store_explicit(&published[r][j], v, memory_order_release);
		} else {                               /* grow or shrink: resize */
			if (fillers == 0) {
				for (; fillers < FILLER; fillers++) {
					snprintf(fname, sizeof(fname), "filler.%u", fillers);
					must(ureg_register(regs[r], fname, item_new(r, KEYS, 0)), "filler");
				}
			} else {
				for (; fillers > 0; fillers--) {
					snprintf(fname, sizeof(fname), "filler.%u", fillers - 1);
					must(ureg_unregister(regs[r], fname, UREG_BOTH), "filler");
				}
			}
			continue;
		}
		atomic_store_explicit(&published[r][k], v, memory_order_release);
	}
	return NULL;
}

/* --------------------------------------------------------------- main */

static void usage(FILE *f)
{
	fprintf(f,
		"usage: ureg-stress-handles [--threads N] [--seconds S] [--keys K]\n"
		"                           [--replace-only] [--help] [--version]\n"
		"  %u registries of K keys (%u..%u, default %u; the first %u change only by\n"
		"  batches), shared cached and plain key handles; N reader threads (1..256,\n"
		"  default 4) check guarantee G.4 of ureg.h for S seconds (0.01..86400,\n"
		"  default 5) while one writer per registry replaces, unregisters,\n"
		"  re-registers, commits batches and resizes.\n"
		"  --replace-only: the writers only replace and the readers read only the\n"
		"  keys they replace (the single-key change path as fast as it goes; with\n"
		"  a small K, the race that commit 7535603 fixed).\n"
		"  -h, --help: this text, on stdout.  -V, --version: program and libureg\n"
		"  version.\n"
		"Exit status: 0 no violation, 1 a violation (stale, removed or dead item,\n"
		"or two batch keys of different generations in one section), 2 usage error.\n",
		REGS, BATCH_KEYS + 1, KEYS, KEYS, BATCH_KEYS);
}

static _Noreturn void bad_arg(const char *opt, const char *arg)
{
	fprintf(stderr, "ureg-stress-handles: bad %s '%s'\n", opt, arg);
	usage(stderr);
	exit(TOOL_EXIT_USAGE);
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "threads", required_argument, NULL, 't' },
		{ "seconds", required_argument, NULL, 's' },
		{ "keys", required_argument, NULL, 'k' },
		{ "replace-only", no_argument, NULL, 'r' },
		{ "help", no_argument, NULL, 'h' },
		{ "version", no_argument, NULL, 'V' },
		{ NULL, 0, NULL, 0 },
	};
	unsigned nreaders = 4;
	double seconds = 5;
	unsigned long v;
	int c;

	while ((c = getopt_long(argc, argv, "t:s:k:rhV", opts, NULL)) != -1) {
		switch (c) {
		case 't':
			if (!tool_parse_ulong(optarg, 1, 256, &v))
				bad_arg("--threads", optarg);
			nreaders = (unsigned)v;
			break;
		case 's':
			if (!tool_parse_double(optarg, 0.01, 86400, &seconds))
				bad_arg("--seconds", optarg);
			break;
		case 'k':
			if (!tool_parse_ulong(optarg, BATCH_KEYS + 1, KEYS, &v))
				bad_arg("--keys", optarg);
			nkeys = (unsigned)v;
			break;
		case 'r':
			replace_only = true;
			break;
		case 'h':
			usage(stdout);
			return TOOL_EXIT_OK;
		case 'V':
			tool_print_version("ureg-stress-handles");
			return TOOL_EXIT_OK;
		default:
			usage(stderr);
			return TOOL_EXIT_USAGE;
		}
	}
	if (optind < argc)
		bad_arg("argument", argv[optind]);
	for (unsigned k = 0; k < KEYS; k++) {
		snprintf(names[k], sizeof(names[k]), "key.%u", k);
		must(ureg_key_init_cached(&cached[k], names[k]), "key_init_cached");
		must(ureg_key_init(&plain[k], names[k]), "key_init");
	}
	for (unsigned r = 0; r < REGS; r++) {
		char rn[16];
		snprintf(rn, sizeof(rn), "reg%u", r);
		must(ureg_registry_new(&stress_type, rn, &regs[r]), "registry_new");
		for (unsigned k = 0; k < KEYS; k++)
			must(ureg_register(regs[r], names[k], item_new(r, k, 0)), "register");
	}

	pthread_t rd[256], wr[REGS];
	for (unsigned i = 0; i < nreaders; i++)
		pthread_create(&rd[i], NULL, reader, (void *)(uintptr_t)(i + 1));
	for (unsigned r = 0; r < REGS; r++)
		pthread_create(&wr[r], NULL, writer, (void *)(uintptr_t)r);
	struct timespec d = { (time_t)seconds,
			      (long)((seconds - (double)(time_t)seconds) * 1e9) };
	nanosleep(&d, NULL);
	atomic_store(&stop, true);
	for (unsigned i = 0; i < nreaders; i++)
		pthread_join(rd[i], NULL);
	for (unsigned r = 0; r < REGS; r++)
		pthread_join(wr[r], NULL);
	for (unsigned r = 0; r < REGS; r++)
		ureg_registry_destroy(regs[r]);

	printf("ureg-stress-handles: %u readers, %u registries, %.1f s: %lu "
	       "lookups (x3 ways), %" PRIu64 " changes, %lu violations\n",
	       nreaders, REGS, seconds, atomic_load(&lookups),
	       atomic_load(&version_counter), atomic_load(&violations));
	return atomic_load(&violations) ? 1 : 0;
}
