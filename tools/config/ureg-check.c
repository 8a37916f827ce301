/* SPDX-License-Identifier: MIT */
/*
 * ureg-check - validate ureg configuration files, or print the reload
 * diff of two of them.  See --help (and the man page made from it).
 *
 * Types and builtin providers come from --plugin objects (the user's
 * own), --type and --demo; `plugin:` entries load the plugins the config
 * names.  Validation is a dry run: no constructor runs.
 */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <string.h>

#include "cli.h"
#include "etcd_tool.h"

static const char *prog = "ureg-check";

static void help(void)
{
	printf("Usage: %s [OPTION]... CONFIG...\n"
	       "  or:  %s [OPTION]... --plan OLD NEW\n"
	       "  or:  %s [OPTION]... --etcd=URL[,URL...] --prefix=P [--plan NEW]\n"
	       "Validate ureg configuration files (YAML, see ureg/config.h): every error\n"
	       "is printed as FILE:LINE:COLUMN: error: REASON.  Validation is a dry run:\n"
	       "types, providers and plugins are resolved, no constructor runs.\n"
	       "\n"
	       "Options:\n"
	       CLI_CONFIG_HELP
	       "      --plan           load OLD, then print the reload diff OLD -> NEW:\n"
	       "                       + added, ~ changed, - removed\n"
	       "      --etcd=URL       check the fleet's document <P>config.yaml in etcd\n"
	       "                       (prints etcd:KEY@REVISION: ok); with --plan NEW,\n"
	       "                       the diff from etcd's document to NEW\n"
	       "      --prefix=P       the key prefix in etcd (with --etcd)\n"
	       "  -m, --max-errors=N   print at most N errors per file (1-%d, default %d)\n"
	       "  -q, --quiet          print nothing for a valid file\n"
	       "  -h, --help           display this help and exit\n"
	       "  -V, --version        output version information and exit\n"
	       "\n"
	       "Exit status:\n"
	       "  0  every CONFIG is valid (--plan: both are)\n"
	       "  1  a CONFIG is invalid or unreadable, or a --plugin cannot be loaded\n"
	       "  2  usage error (unknown option, bad number, missing CONFIG)\n"
	       "  4  --etcd: etcd unreachable, or no document under the prefix\n"
	       "\n"
	       "Examples:\n"
	       "  %s --demo tools/example.yaml\n"
	       "  %s --plugin ./libmytypes.so services.yaml\n",
	       prog, prog, prog, UREG_CONFIG_MAX_ERRORS, UREG_CONFIG_MAX_ERRORS, prog, prog);
}

static long max_errors = UREG_CONFIG_MAX_ERRORS;

static struct cli_config c;

/* Print errors (or the reason when none were collected); 0 ok, 1 bad. */
static int report(const char *path, int rc, struct ureg_config_errors *errs)
{
	if (!rc)
		return 0;
	if (rc == -EBADMSG)
		cli_hint(prog, &c);
	if (!errs->count)
		printf("%s: error: %s\n", path, ureg_last_error());
	struct ureg_config_errors shown = *errs;
	if (shown.count > (size_t)max_errors)
		shown.count = (size_t)max_errors;
	ureg_config_errors_print(&shown, stdout);
	if (shown.count < errs->count)
		printf("%s: %zu more error(s) not shown (--max-errors)\n", path,
		       errs->count - shown.count);
	ureg_config_errors_free(errs);
	return 1;
}

static int plan(const char *old, const char *nw)
{
	struct ureg_config_errors errs = { 0 };
	struct ureg_config_plan p = { 0 };
	ureg_config *cfg;
	int bad;

	if (cli_config_new(prog, &c, &cfg))
		return 1;
	bad = report(old, ureg_config_load(cfg, old, &errs), &errs);
	if (!bad)
		bad = report(nw, ureg_config_reload(cfg, nw, UREG_CONFIG_DRY_RUN, &p, &errs),
			     &errs);
	if (!bad)
		ureg_config_plan_print(&p, stdout);
	ureg_config_plan_free(&p);
	cli_config_done(&c, cfg);
	return bad;
}

/* --etcd: check etcd's document, or (@newer) the diff from it to @newer */
static int check_etcd(const char *url, const char *prefix, const char *newer, bool quiet)
{
	struct ureg_config_errors errs = { 0 };
	struct ureg_config_plan p = { 0 };
	ureg_config *cfg;
	char name[512];
	uint64_t rev = 0;
	int rc, bad;

	if (cli_config_new(prog, &c, &cfg))
		return 1;
	/* the etcd document must load (not a dry run) for a plan against it */
	rc = etcd_tool_load(cfg, url, prefix, newer ? 0 : UREG_CONFIG_DRY_RUN, NULL,
			    &errs, &rev, name, sizeof(name));
	if (rc && rc != -EBADMSG && rc != -ENOMEM) {
		fprintf(stderr, "%s: %s\n", prog, ureg_last_error());
		cli_config_done(&c, cfg);
		return 4;
	}
	bad = report(name, rc, &errs);
	if (!bad && newer) {
		bad = report(newer, ureg_config_reload(cfg, newer, UREG_CONFIG_DRY_RUN, &p,
						       &errs), &errs);
		if (!bad) {
			printf("plan %s -> %s:\n", name, newer);
			ureg_config_plan_print(&p, stdout);
		}
	} else if (!bad && !quiet) {
		printf("%s: ok\n", name);
	}
	ureg_config_plan_free(&p);
	cli_config_done(&c, cfg);
	return bad;
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		CLI_CONFIG_LONG_OPTIONS,
		{ "plan", no_argument, NULL, 'P' },
		{ "max-errors", required_argument, NULL, 'm' },
		{ "quiet", no_argument, NULL, 'q' },
		{ 0 }
	};
	bool want_plan = false, quiet = false;
	int o, bad = 0;

	while ((o = getopt_long(argc, argv, "p:t:m:qhV", opts, NULL)) != -1) {
		int shared = cli_config_option(prog, &c, o, optarg);
		if (shared < 0)
			return 1;
		if (shared)
			continue;
		switch (o) {
		case 'P': want_plan = true; break;
		case 'm':
			if (cli_long(prog, "--max-errors", optarg, 1,
				     UREG_CONFIG_MAX_ERRORS, &max_errors)) {
				cli_config_free(&c);
				return CLI_USAGE;
			}
			break;
		case 'q': quiet = true; break;
		default:
			return cli_config_last_option(prog, &c, o, help);
		}
	}
	if (c.etcd || c.prefix) {
		if (!c.etcd || !c.prefix || argc - optind != (want_plan ? 1 : 0)) {
			fprintf(stderr, "%s: --etcd and --prefix go together, with one NEW "
				"for --plan, no CONFIG otherwise\n", prog);
			cli_config_free(&c);
			return cli_usage_error(prog);
		}
		bad = check_etcd(c.etcd, c.prefix, want_plan ? argv[optind] : NULL, quiet);
		cli_config_free(&c);
		return bad;
	}
	if (want_plan ? argc - optind != 2 : optind == argc) {
		fprintf(stderr, "%s: %s\n", prog, want_plan ?
			"--plan needs two files, OLD and NEW" : "no CONFIG given");
		cli_config_free(&c);
		return cli_usage_error(prog);
	}
	if (want_plan) {
		bad = plan(argv[optind], argv[optind + 1]);
		cli_config_free(&c);
		return bad;
	}
	for (int i = optind; i < argc; i++) {
		struct ureg_config_errors errs = { 0 };
		ureg_config *cfg;
		if (cli_config_new(prog, &c, &cfg))
			return 1;
		int rc = ureg_config_reload(cfg, argv[i], UREG_CONFIG_DRY_RUN, NULL, &errs);
		if (report(argv[i], rc, &errs))
			bad = 1;
		else if (!quiet)
			printf("%s: ok\n", argv[i]);
		cli_config_done(&c, cfg);
	}
	cli_config_free(&c);
	return bad;
}
