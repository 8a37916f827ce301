/* SPDX-License-Identifier: MIT */
/*
 * ureg-inspect [--json] [--no-instances] CONFIG
 * ureg-inspect [--json] [--no-instances] --etcd URL --prefix P
 *
 * Loads CONFIG with the demo types and providers (tools/config/demo.c),
 * creates one user context "inspect" holding one instance of every factory
 * (unless --no-instances), and prints ureg_report(): every registry, its
 * type chain, every entry with kind, scope, provider, source and
 * generation, and the contexts with their instances and bytes.
 * From etcd, the document <P>config.yaml is loaded with its etcd revision
 * as the generation of every entry.
 * Exit 0; 1 when the config is invalid (errors on stderr); 2 on usage;
 * 4 etcd unreachable or no document there.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include "demo.h"
#include "etcd_tool.h"

static int usage(void)
{
	fprintf(stderr, "usage: ureg-inspect [--json] [--no-instances] CONFIG\n"
			"       ureg-inspect [--json] [--no-instances] --etcd URL --prefix P\n");
	return 2;
}

int main(int argc, char **argv)
{
	const char *path = NULL, *etcd = NULL, *prefix = NULL;
	char name[512];
	uint64_t rev = 0;
	bool json = false, instances = true;
	ureg_config *cfg;
	ureg_ctx *ctx = NULL;
	int rc;

	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--json"))
			json = true;
		else if (!strcmp(argv[i], "--no-instances"))
			instances = false;
		else if (!strcmp(argv[i], "--etcd") && i + 1 < argc)
			etcd = argv[++i];
		else if (!strcmp(argv[i], "--prefix") && i + 1 < argc)
			prefix = argv[++i];
		else if (argv[i][0] == '-' || path)
			return usage();
		else
			path = argv[i];
	}
	if (etcd || prefix ? !etcd || !prefix || path : !path)
		return usage();
	if (ureg_config_new(&cfg) || demo_register(cfg)) {
		fprintf(stderr, "ureg-inspect: %s\n", ureg_last_error());
		return 1;
	}
	struct ureg_config_errors errs = { 0 };
	if (etcd)
		rc = etcd_tool_load(cfg, etcd, prefix, 0, NULL, &errs, &rev, name, sizeof(name));
	else
		rc = ureg_config_load(cfg, path, &errs);
	if (rc) {
		if (!ureg_config_errors_print(&errs, stderr))
			fprintf(stderr, "%s: error: %s\n", etcd ? name : path, ureg_last_error());
		ureg_config_errors_free(&errs);
		ureg_config_destroy(cfg);
		return rc == -EBADMSG || rc == -ENOMEM || !etcd ? 1 : 4;
	}
	if (etcd && !json)
		printf("# %s (generation %llu)\n", name, (unsigned long long)rev);
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
