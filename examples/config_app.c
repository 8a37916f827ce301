/* SPDX-License-Identifier: MIT */
/*
 * An application populated from a config file: it registers its type,
 * loads the YAML named on the command line (whose entries come from a
 * plugin), then serves a singleton and a per-user instance from it.  A
 * broken file is reported with every error's file:line:column.
 * Build: cc config_app.c $(pkg-config --cflags --libs ureg-config)
 * Run:   ./config_app greeter.yaml
 */
#include <stdio.h>
#include <ureg/config.h>

struct greeter { char text[64]; };

int main(int argc, char **argv)
{
	static const ureg_type greeter_type = { .name = "greeter" };
	struct ureg_config_errors errs = { 0 };
	ureg_config *cfg;
	ureg_registry *greeters;
	ureg_ctx *alice;
	void *hello = NULL, *welcome = NULL;
	int rc;

	if (argc != 2) {
		fprintf(stderr, "usage: %s CONFIG.yaml\n", argv[0]);
		return 2;
	}
	if (ureg_config_new(&cfg) || ureg_config_type_register(cfg, &greeter_type))
		return 1;
	if ((rc = ureg_config_load(cfg, argv[1], &errs))) {
		fprintf(stderr, "config_app: %s: %s\n", argv[1], ureg_strerror(rc));
		ureg_config_errors_print(&errs, stderr);
		ureg_config_errors_free(&errs);
		ureg_config_destroy(cfg);
		return 1;
	}
	greeters = ureg_config_registry(cfg, "greeters");
	ureg_read_lock();
	if (ureg_lookup(greeters, "hello", &hello) == 0)
		printf("singleton: %s\n", ((struct greeter *)hello)->text);
	ureg_read_unlock();
	if (ureg_ctx_new("alice", 0, &alice) ||
	    ureg_get(greeters, "welcome", alice, &welcome))
		return 1;
	printf("alice's instance: %s\n", ((struct greeter *)welcome)->text);
	ureg_ctx_destroy(alice);   /* alice's instance goes with her context */
	ureg_config_destroy(cfg);  /* registries, singletons, then the plugin */
	return 0;
}
