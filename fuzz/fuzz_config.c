/* SPDX-License-Identifier: MIT */
/*
 * libFuzzer target for the config loader: each input is loaded as a YAML
 * config (plugins disabled: a fuzzer must not dlopen arbitrary paths),
 * then dry-run reloaded against itself, then the config is destroyed.
 * Any crash, sanitizer report or leak is a bug.  Build and run: fuzz/run.sh
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <ureg/config.h>

static const ureg_type base = { .name = "base" };
static const ureg_type tool = { .name = "tool", .parent = &base };

static int make(ureg_ctx *ctx, const struct ureg_params *p, void *arg, void **out)
{
	const char *fail = ureg_params_get(p, "fail");
	if (fail)
		return -5;
	char *o = malloc(16);
	if (!o)
		return -12;
	*out = o;
	return 0;
}

static void destroy(void *obj, ureg_ctx *ctx)
{
	free(obj);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const struct ureg_provider prov = { .create = make, .destroy = destroy };
	struct ureg_config_errors errs = { 0 };
	struct ureg_config_plan plan = { 0 };
	ureg_config *cfg;

	if (ureg_config_new(&cfg))
		return 0;
	ureg_config_set_flags(cfg, UREG_CONFIG_NO_PLUGINS);
	ureg_config_type_register(cfg, &base);
	ureg_config_type_register(cfg, &tool);
	ureg_config_provider_register(cfg, "p", &prov);
	int rc = ureg_config_reload_buffer(cfg, (const char *)data, size,
					   "fuzz/in.yaml", 0, NULL, &errs);
	if (!rc) {
		ureg_config_reload_buffer(cfg, (const char *)data, size,
					  "fuzz/in.yaml", UREG_CONFIG_DRY_RUN,
					  &plan, &errs);
		if (plan.count)
			abort(); /* the same text twice must plan nothing */
	}
	ureg_config_plan_free(&plan);
	ureg_config_errors_free(&errs);
	ureg_config_destroy(cfg);
	return 0;
}
