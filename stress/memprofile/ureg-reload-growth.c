/* SPDX-License-Identifier: MIT */
/*
 * ureg-reload-growth: what one long-lived context keeps per reload.  One
 * registry, one key, one shared context; --reloads times: replace the
 * key's CONTEXT-scope factory (a 32-byte instance), ureg_get it in the
 * context, release the instance (unless --keep).  Prints the RSS and
 * jemalloc's allocated bytes after the 1,000th reload and at the end
 * (after two grace periods and their callbacks), and the growth per
 * reload of each.  README, "Memory per user context".
 */
#define _POSIX_C_SOURCE 200809L
#include <dlfcn.h>
#include <malloc.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>

#include <getopt.h>
#include <ureg/ureg.h>

#include "../tool_opts.h"

static long rss_kib(void)
{
	FILE *f = fopen("/proc/self/status", "r");
	char line[256];
	long kib = -1;

	while (f && fgets(line, sizeof(line), f))
		if (sscanf(line, "VmRSS: %ld", &kib) == 1)
			break;
	if (f)
		fclose(f);
	return kib;
}

/* jemalloc's stats.allocated (libureg's arenas), through dlsym: this
 * program's own malloc stays glibc's (meson.build). */
static double je_allocated(void)
{
	int (*mallctl)(const char *, void *, size_t *, void *, size_t) =
		(int (*)(const char *, void *, size_t *, void *, size_t))dlsym(RTLD_DEFAULT, "mallctl");
	uint64_t epoch = 1;
	size_t sz = sizeof(epoch), a = 0;

	if (!mallctl || mallctl("epoch", &epoch, &sz, &epoch, sz))
		return -1;
	sz = sizeof(a);
	return mallctl("stats.allocated", &a, &sz, NULL, 0) ? -1 : (double)a;
}

static int make(ureg_ctx *ctx, void *arg, void **out)
{
	(void)arg;
	*out = ureg_ctx_alloc(ctx, 32);
	return *out ? 0 : -ENOMEM;
}

static void destroy(void *p, ureg_ctx *ctx)
{
	ureg_ctx_free(ctx, p);
}

static const ureg_type type = { .name = "growth", .instance_destroy = destroy };

static void usage(FILE *f)
{
	fprintf(f,
		"usage: ureg-reload-growth [OPTION]...\n"
		"  -n, --reloads N  reloads of the key (2000..100000000, default 200000)\n"
		"  -k, --keep       keep every instance (default: release each)\n"
		"  -h, --help       this text, on stdout\n"
		"  -V, --version    the version (of the libureg loaded)\n\n"
		"Exit status: 0 measured, 1 a ureg call failed, 2 bad usage.\n");
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "reloads", required_argument, NULL, 'n' },
		{ "keep", no_argument, NULL, 'k' },
		{ "help", no_argument, NULL, 'h' },
		{ "version", no_argument, NULL, 'V' },
		{ NULL, 0, NULL, 0 },
	};
	unsigned long n = 200000;
	int keep = 0, o;

	while ((o = getopt_long(argc, argv, "n:khV", opts, NULL)) != -1) {
		switch (o) {
		case 'n':
			if (!tool_parse_ulong(optarg, 2000, 100000000, &n)) {
				fprintf(stderr, "ureg-reload-growth: bad --reloads '%s'\n", optarg);
				usage(stderr);
				return TOOL_EXIT_USAGE;
			}
			break;
		case 'k': keep = 1; break;
		case 'h': usage(stdout); return TOOL_EXIT_OK;
		case 'V': tool_print_version("ureg-reload-growth"); return TOOL_EXIT_OK;
		default: usage(stderr); return TOOL_EXIT_USAGE;
		}
	}
	if (optind < argc) {
		fprintf(stderr, "ureg-reload-growth: unexpected argument '%s'\n", argv[optind]);
		usage(stderr);
		return TOOL_EXIT_USAGE;
	}

	struct ureg_factory f = { .create = make, .scope = UREG_SCOPE_CONTEXT };
	ureg_registry *reg;
	ureg_ctx *ctx;
	long rss0 = 0;
	double je0 = 0, gl0 = 0;
	int rc;

	if ((rc = ureg_registry_new(&type, "growth", &reg)) ||
	    (rc = ureg_ctx_new("long-lived", UREG_CTX_SHARED, &ctx))) {
		fprintf(stderr, "ureg-reload-growth: %s\n", ureg_last_error());
		return TOOL_EXIT_FAIL;
	}
	for (unsigned long i = 0; i < n; i++) {
		void *in;

		if ((rc = i ? ureg_replace_factory(reg, "planner", &f)
			    : ureg_register_factory(reg, "planner", &f)) ||
		    (rc = ureg_get(reg, "planner", ctx, &in)) ||
		    (!keep && (rc = ureg_instance_release(ctx, in)))) {
			fprintf(stderr, "ureg-reload-growth: reload %lu: %s\n", i, ureg_last_error());
			return TOOL_EXIT_FAIL;
		}
		if (i == 999) {
			ureg_synchronize();
			rss0 = rss_kib();
			je0 = je_allocated();
			gl0 = (double)mallinfo2().uordblks;
		}
	}
	ureg_synchronize();
	ureg_synchronize();
	long rss1 = rss_kib();
	double je1 = je_allocated(), gl1 = (double)mallinfo2().uordblks;
	double per = (double)(n - 1000);
	printf("%lu reloads (%s), growth from the 1,000th to the last: RSS %+.1f MB (%.1f bytes "
	       "per reload), glibc allocated %+.1f MB (%.1f), jemalloc allocated %+.1f MB (%.1f)\n",
	       n, keep ? "instances kept" : "each instance released",
	       (double)(rss1 - rss0) * 1024 / 1e6, (double)(rss1 - rss0) * 1024 / per,
	       (gl1 - gl0) / 1e6, (gl1 - gl0) / per, (je1 - je0) / 1e6, (je1 - je0) / per);
	ureg_ctx_destroy(ctx);
	ureg_registry_destroy(reg);
	return TOOL_EXIT_OK;
}
