/* SPDX-License-Identifier: MIT */
/*
 * ureg-inspect [--json] [--no-instances] CONFIG
 *
 * Loads CONFIG with the demo types and providers (tools/config/demo.c),
 * creates one user context "inspect" holding one instance of every factory
 * (unless --no-instances), and prints ureg_report(): every registry, its
 * type chain, every entry with kind, scope, provider, source and
 * generation, and the contexts with their instances and bytes.
 * Exit 0; 1 when the config is invalid (errors on stderr); 2 on usage.
 */
#include <stdio.h>
#include <string.h>
#include "demo.h"

static int usage(void)
{
	fprintf(stderr, "usage: ureg-inspect [--json] [--no-instances] CONFIG\n");
	return 2;
}

int main(int argc, char **argv)
{
	const char *path = NULL;
	bool json = false, instances = true;
	ureg_config *cfg;
	ureg_ctx *ctx = NULL;
	int rc;

	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--json"))
			json = true;
		else if (!strcmp(argv[i], "--no-instances"))
			instances = false;
		else if (argv[i][0] == '-' || path)
			return usage();
		else
			path = argv[i];
	}
	if (!path)
		return usage();
	if (ureg_config_new(&cfg) || demo_register(cfg)) {
		fprintf(stderr, "ureg-inspect: %s\n", ureg_last_error());
		return 1;
	}
	struct ureg_config_errors errs = { 0 };
	if ((rc = ureg_config_load(cfg, path, &errs))) {
		if (!ureg_config_errors_print(&errs, stderr))
			fprintf(stderr, "%s: error: %s\n", path, ureg_last_error());
		ureg_config_errors_free(&errs);
		ureg_config_destroy(cfg);
		return 1;
	}
	if (instances && ureg_ctx_new("inspect", 0, &ctx) == 0) {
		char **names;
		if (!ureg_config_registry_names(cfg, &names, NULL)) {
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
	}
	rc = ureg_report(stdout, json ? UREG_REPORT_JSON : UREG_REPORT_TEXT);
	if (rc)
		fprintf(stderr, "ureg-inspect: %s\n", ureg_last_error());
	ureg_ctx_destroy(ctx);
	ureg_config_destroy(cfg);
	return rc ? 1 : 0;
}
