/* SPDX-License-Identifier: MIT */
/*
 * ureg-check [--no-plugins] CONFIG...     validate; every error as
 *                                         file:line:column: error: reason
 * ureg-check [--no-plugins] --plan OLD NEW print the reload diff OLD -> NEW
 *                                         (+ added, ~ changed, - removed)
 *
 * Uses the demo types and providers (tools/config/demo.c).  Validation
 * is a dry run: no constructor runs.  Exit 0 valid, 1 invalid, 2 usage.
 */
#include <stdio.h>
#include <string.h>
#include "demo.h"

static int usage(void)
{
	fprintf(stderr, "usage: ureg-check [--no-plugins] CONFIG...\n"
			"       ureg-check [--no-plugins] --plan OLD NEW\n");
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

int main(int argc, char **argv)
{
	unsigned flags = 0;
	bool plan = false;
	int i = 1, bad = 0;

	for (; i < argc && argv[i][0] == '-'; i++) {
		if (!strcmp(argv[i], "--no-plugins"))
			flags |= UREG_CONFIG_NO_PLUGINS;
		else if (!strcmp(argv[i], "--plan"))
			plan = true;
		else
			return usage();
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
