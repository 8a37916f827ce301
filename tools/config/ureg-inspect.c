/* SPDX-License-Identifier: MIT */
/*
 * ureg-inspect - load a config and print what it made: every registry,
 * its type chain, every entry with kind, scope, rank, provider, source
 * and generation, and the user contexts with their instances and bytes
 * (ureg_report).  See --help (and the man page made from it).
 *
 * Types and builtin providers come from --plugin objects (the user's
 * own), --type and --demo; `plugin:` entries load the plugins the config
 * names.  Unlike ureg-check this runs the constructors: singletons are
 * built, and each of --contexts user contexts gets one instance of every
 * factory.
 */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <string.h>

#include "cli.h"
#include "etcd_tool.h"

static const char *prog = "ureg-inspect";

#define MAX_CONTEXTS 64

static void help(void)
{
	printf("Usage: %s [OPTION]... CONFIG\n"
	       "  or:  %s [OPTION]... --etcd=URL[,URL...] --prefix=P\n"
	       "Load the ureg configuration CONFIG and print its registries, their type\n"
	       "chains, every entry (kind, scope, rank, provider, file:line:column,\n"
	       "generation) and the user contexts with their instances and memory.\n"
	       "Singleton constructors run; each context gets one instance of every\n"
	       "factory.\n"
	       "\n"
	       "Options:\n"
	       CLI_CONFIG_HELP
	       "  -j, --json           print the report as JSON\n"
	       "  -c, --contexts=N     create N user contexts (0-%d, default 1), named\n"
	       "                       inspect, inspect-2, ...\n"
	       "      --no-instances   same as --contexts=0\n"
	       "      --etcd=URL       load the fleet's document <P>config.yaml from etcd\n"
	       "                       instead of CONFIG (its revision is the generation)\n"
	       "      --prefix=P       the key prefix in etcd (with --etcd)\n"
	       "  -h, --help           display this help and exit\n"
	       "  -V, --version        output version information and exit\n"
	       "\n"
	       "Exit status:\n"
	       "  0  the report was printed\n"
	       "  1  CONFIG is invalid or unreadable (errors on stderr as\n"
	       "     FILE:LINE:COLUMN: error: REASON), a --plugin cannot be loaded,\n"
	       "     or the report failed\n"
	       "  4  --etcd: etcd unreachable, or no document under the prefix\n"
	       "  2  usage error (unknown option, bad number, not one CONFIG)\n"
	       "\n"
	       "Examples:\n"
	       "  %s --demo tools/example.yaml\n"
	       "  %s --plugin ./libmytypes.so --json services.yaml\n",
	       prog, prog, MAX_CONTEXTS, prog, prog);
}

/* One instance of every factory of every registry in @ctx. */
static void instantiate(ureg_config *cfg, ureg_ctx *ctx)
{
	char **names;

	if (ureg_config_registry_names(cfg, &names, NULL))
		return;
	for (char **n = names; *n; n++) {
		ureg_registry *reg = ureg_config_registry(cfg, *n);
		char **keys;
		if (ureg_keys(reg, &keys, NULL))
			continue;
		for (char **k = keys; *k; k++) {
			void *obj;
			(void)ureg_create_instance(reg, *k, ctx, &obj);
		}
		ureg_keys_free(keys);
	}
	ureg_keys_free(names);
}

static const char *etcd, *prefix;

static int inspect(struct cli_config *c, const char *path, bool json, long nctx)
{
	char name[512];
	uint64_t rev = 0;
	struct ureg_config_errors errs = { 0 };
	ureg_ctx *ctx[MAX_CONTEXTS] = { 0 };
	ureg_config *cfg;
	int rc;

	if (cli_config_new(prog, c, &cfg))
		return 1;
	if (etcd)
		rc = etcd_tool_load(cfg, etcd, prefix, 0, NULL, &errs, &rev, name, sizeof(name));
	else
		rc = ureg_config_load(cfg, path, &errs);
	if (rc) {
		if (!ureg_config_errors_print(&errs, stderr))
			fprintf(stderr, "%s: error: %s\n", etcd ? name : path, ureg_last_error());
		ureg_config_errors_free(&errs);
		if (rc == -EBADMSG)
			cli_hint(prog, c);
		cli_config_done(c, cfg);
		return rc == -EBADMSG || rc == -ENOMEM || !etcd ? 1 : 4;
	}
	if (etcd && !json)
		printf("# %s (generation %llu)\n", name, (unsigned long long)rev);
	for (long i = 0; i < nctx; i++) {
		char name[32];
		if (i)
			snprintf(name, sizeof(name), "inspect-%ld", i + 1);
		else
			snprintf(name, sizeof(name), "inspect");
		if (ureg_ctx_new(name, 0, &ctx[i]) == 0)
			instantiate(cfg, ctx[i]);
	}
	rc = ureg_report(stdout, json ? UREG_REPORT_JSON : UREG_REPORT_TEXT);
	if (rc)
		fprintf(stderr, "%s: %s\n", prog, ureg_last_error());
	for (long i = 0; i < nctx; i++)
		ureg_ctx_destroy(ctx[i]);
	cli_config_done(c, cfg);
	return rc ? 1 : 0;
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		CLI_CONFIG_LONG_OPTIONS,
		{ "json", no_argument, NULL, 'j' },
		{ "contexts", required_argument, NULL, 'c' },
		{ "no-instances", no_argument, NULL, 'I' },
		{ 0 }
	};
	struct cli_config c = { 0 };
	bool json = false;
	long nctx = 1;
	int o, rc;

	while ((o = getopt_long(argc, argv, "p:t:jc:hV", opts, NULL)) != -1) {
		int shared = cli_config_option(prog, &c, o, optarg);
		if (shared < 0)
			return 1;
		if (shared)
			continue;
		switch (o) {
		case 'j': json = true; break;
		case 'c':
			if (cli_long(prog, "--contexts", optarg, 0, MAX_CONTEXTS, &nctx)) {
				cli_config_free(&c);
				return CLI_USAGE;
			}
			break;
		case 'I': nctx = 0; break;
		default:
			return cli_config_last_option(prog, &c, o, help);
		}
	}
	etcd = c.etcd;
	prefix = c.prefix;
	if (etcd || prefix) {
		if (!etcd || !prefix || optind != argc) {
			fprintf(stderr, "%s: --etcd and --prefix go together, without CONFIG\n", prog);
			cli_config_free(&c);
			return cli_usage_error(prog);
		}
		rc = inspect(&c, NULL, json, nctx);
		cli_config_free(&c);
		return rc;
	}
	if (argc - optind != 1) {
		fprintf(stderr, "%s: %s\n", prog, optind == argc ? "no CONFIG given" :
			"one CONFIG at a time");
		cli_config_free(&c);
		return cli_usage_error(prog);
	}
	rc = inspect(&c, argv[optind], json, nctx);
	cli_config_free(&c);
	return rc;
}
