/* SPDX-License-Identifier: MIT */
/*
 * ureg-check [--no-plugins] CONFIG...     validate; every error as
 *                                         file:line:column: error: reason
 * ureg-check [--no-plugins] --plan OLD NEW print the reload diff OLD -> NEW
 *                                         (+ added, ~ changed, - removed)
 * ureg-check [--no-plugins] --etcd URL --prefix P
 *                                         validate the document in etcd
 *                                         (<P>config.yaml); prints its
 *                                         revision: "etcd:KEY@REV: ok"
 * ureg-check [--no-plugins] --etcd URL --prefix P --plan NEW
 *                                         the diff etcd's document -> NEW
 *
 * Uses the demo types and providers (tools/config/demo.c).  Validation
 * is a dry run: no constructor runs.  Exit 0 valid, 1 invalid, 2 usage,
 * 4 etcd unreachable or no document there.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include "demo.h"
#include "etcd_tool.h"

static int usage(void)
{
	fprintf(stderr, "usage: ureg-check [--no-plugins] CONFIG...\n"
			"       ureg-check [--no-plugins] --plan OLD NEW\n"
		"       ureg-check [--no-plugins] --etcd URL --prefix P [--plan NEW]\n");
	return 2;
}

static ureg_config *new_cfg(unsigned flags)
{
	ureg_config *cfg;
	if (ureg_config_new(&cfg))
		return NULL;
	if (demo_register(cfg) || ureg_config_set_flags(cfg, flags)) {
		ureg_config_destroy(cfg);
		return NULL;
	}
	return cfg;
}

/* Print errors (or the reason when none were collected); 0 ok, 1 bad. */
static int report(const char *path, int rc, struct ureg_config_errors *errs)
{
	if (!rc)
		return 0;
	if (!ureg_config_errors_print(errs, stdout))
		printf("%s: error: %s\n", path, ureg_last_error());
	ureg_config_errors_free(errs);
	return 1;
}

/* --etcd: check etcd's document, or (@newer) the diff from it to @newer */
static int check_etcd(const char *url, const char *prefix, const char *newer,
		      unsigned flags)
{
	ureg_config *cfg = new_cfg(flags);
	struct ureg_config_errors errs = { 0 };
	struct ureg_config_plan p = { 0 };
	char name[512];
	uint64_t rev = 0;
	int rc, bad;

	if (!cfg)
		return 1;
	/* the etcd document must load (not a dry run) for a plan against it */
	rc = etcd_tool_load(cfg, url, prefix, newer ? 0 : UREG_CONFIG_DRY_RUN, NULL,
			    &errs, &rev, name, sizeof(name));
	if (rc && rc != -EBADMSG && rc != -ENOMEM) {
		fprintf(stderr, "ureg-check: %s\n", ureg_last_error());
		ureg_config_destroy(cfg);
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
	} else if (!bad) {
		printf("%s: ok\n", name);
	}
	ureg_config_plan_free(&p);
	ureg_config_destroy(cfg);
	return bad;
}

int main(int argc, char **argv)
{
	unsigned flags = 0;
	bool plan = false;
	const char *etcd = NULL, *prefix = NULL;
	int i = 1, bad = 0;

	for (; i < argc && argv[i][0] == '-'; i++) {
		if (!strcmp(argv[i], "--no-plugins"))
			flags |= UREG_CONFIG_NO_PLUGINS;
		else if (!strcmp(argv[i], "--plan"))
			plan = true;
		else if (!strcmp(argv[i], "--etcd") && i + 1 < argc)
			etcd = argv[++i];
		else if (!strcmp(argv[i], "--prefix") && i + 1 < argc)
			prefix = argv[++i];
		else
			return usage();
	}
	if (etcd || prefix) {
		if (!etcd || !prefix || argc - i != (plan ? 1 : 0))
			return usage();
		return check_etcd(etcd, prefix, plan ? argv[i] : NULL, flags);
	}
	if (plan) {
		if (argc - i != 2)
			return usage();
		ureg_config *cfg = new_cfg(flags);
		struct ureg_config_errors errs = { 0 };
		struct ureg_config_plan p = { 0 };
		if (!cfg)
			return 1;
		bad = report(argv[i], ureg_config_load(cfg, argv[i], &errs), &errs);
		if (!bad)
			bad = report(argv[i + 1], ureg_config_reload(cfg, argv[i + 1],
				     UREG_CONFIG_DRY_RUN, &p, &errs), &errs);
		if (!bad)
			ureg_config_plan_print(&p, stdout);
		ureg_config_plan_free(&p);
		ureg_config_destroy(cfg);
		return bad;
	}
	if (i == argc)
		return usage();
	for (; i < argc; i++) {
		ureg_config *cfg = new_cfg(flags);
		struct ureg_config_errors errs = { 0 };
		if (!cfg)
			return 1;
		int rc = ureg_config_reload(cfg, argv[i], UREG_CONFIG_DRY_RUN, NULL, &errs);
		if (report(argv[i], rc, &errs))
			bad = 1;
		else
			printf("%s: ok\n", argv[i]);
		ureg_config_destroy(cfg);
	}
	return bad;
}
