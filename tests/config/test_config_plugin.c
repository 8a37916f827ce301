/* SPDX-License-Identifier: MIT */
/*
 * Plugins stay loaded while anything made from them lives: an instance
 * keeps its plugin mapped after a reload removed its entry, and only
 * ureg_ctx_destroy (then the grace period) unloads it.  A changed plugin
 * file is loaded beside the old version.  A missing symbol is an error.
 */
#include <urcu/urcu-memb.h>
#include "config_test.h"

struct plugin_obj {
	int (*version)(void);
	int magic;
};

/* How many distinct private copies of "plug" are mapped right now. */
static int plugin_copies_mapped(void)
{
	char line[4096], seen[8][256];
	int n = 0;
	FILE *f = fopen("/proc/self/maps", "r");
	cr_assert_not_null(f);
	while (fgets(line, sizeof(line), f)) {
		char *p = strstr(line, "/ureg-plug-");
		if (!p)
			continue;
		char *end = strchr(p, ' ');
		if (!end)
			end = strchr(p, '\n');
		size_t len = end ? (size_t)(end - p) : strlen(p);
		if (len >= 256)
			len = 255;
		bool dup = false;
		for (int i = 0; i < n; i++)
			if (!strncmp(seen[i], p, len) && seen[i][len] == 0)
				dup = true;
		if (!dup && n < 8) {
			memcpy(seen[n], p, len);
			seen[n][len] = 0;
			n++;
		}
	}
	fclose(f);
	return n;
}

static void copy_file(const char *from, const char *to)
{
	char *cmd;
	cr_assert(asprintf(&cmd, "cp '%s' '%s.tmp' && mv '%s.tmp' '%s'", from, to, to, to) > 0);
	cr_assert_eq(system(cmd), 0);
	free(cmd);
}

static char *plugin_yaml(const char *key, const char *symbol)
{
	char *y;
	cr_assert(asprintf(&y,
		"registries:\n"
		"  - name: tools\n"
		"    type: tool\n"
		"    entries:\n"
		"      - key: %s\n"
		"        kind: factory\n"
		"        scope: context\n"
		"        plugin: {path: plug.so, symbol: %s}\n", key, symbol) > 0);
	return y;
}

static void wait_reclaim(void)
{
	ureg_synchronize();
	urcu_memb_barrier(); /* every pending call_rcu has run */
}

static char *setup_plugin(char **dir, int version)
{
	char *src, *dst;
	*dir = ct_tempdir();
	cr_assert(asprintf(&src, "%s/test_plugin_v%d.so", getenv("UREG_TEST_PLUGIN_DIR"), version) > 0);
	cr_assert(asprintf(&dst, "%s/plug.so", *dir) > 0);
	copy_file(src, dst);
	free(src);
	return dst;
}

Test(config_plugin, a_plugin_stays_loaded_until_its_last_instance_is_gone)
{
	char *dir, *plug = setup_plugin(&dir, 1);
	char *y = plugin_yaml("p", "test_provider");
	char *path = ct_write_temp(dir, "c.yaml", y);
	ureg_config *cfg = ct_config();
	cr_assert_eq(ureg_config_load(cfg, path, NULL), 0, "%s", ureg_last_error());
	cr_assert_eq(plugin_copies_mapped(), 1);

	ureg_ctx *ctx;
	struct plugin_obj *o;
	cr_assert_eq(ureg_ctx_new("u", 0, &ctx), 0);
	cr_assert_eq(ureg_create_instance(ureg_config_registry(cfg, "tools"), "p",
					  ctx, (void **)&o), 0);
	cr_assert_eq(o->version(), 1);

	/* reload without the entry: the instance still runs plugin code */
	const char *empty = "registries:\n  - {name: tools, type: tool}\n";
	free(ct_write_temp(dir, "c.yaml", empty));
	cr_assert_eq(ureg_config_reload(cfg, path, 0, NULL, NULL), 0);
	wait_reclaim();
	cr_assert_eq(ureg_contains(ureg_config_registry(cfg, "tools"), "p"), 0);
	cr_assert_eq(plugin_copies_mapped(), 1, "the instance keeps the plugin mapped");
	cr_assert_eq(o->version(), 1);
	cr_assert_eq(o->magic, 4242);

	ureg_ctx_destroy(ctx);
	wait_reclaim();
	cr_assert_eq(plugin_copies_mapped(), 0, "unloaded after the last instance");
	ureg_config_destroy(cfg);
	free(y);
	free(path);
	free(plug);
	ct_rmdir(dir);
}

Test(config_plugin, a_changed_plugin_file_is_loaded_beside_the_old_version)
{
	char *dir, *plug = setup_plugin(&dir, 1);
	char *y = plugin_yaml("p", "test_provider");
	char *path = ct_write_temp(dir, "c.yaml", y);
	ureg_config *cfg = ct_config();
	ureg_registry *tools;
	cr_assert_eq(ureg_config_load(cfg, path, NULL), 0, "%s", ureg_last_error());
	tools = ureg_config_registry(cfg, "tools");

	ureg_ctx *old_ctx, *new_ctx;
	struct plugin_obj *a, *b;
	cr_assert_eq(ureg_ctx_new("old", 0, &old_ctx), 0);
	cr_assert_eq(ureg_ctx_new("new", 0, &new_ctx), 0);
	cr_assert_eq(ureg_create_instance(tools, "p", old_ctx, (void **)&a), 0);

	/* unchanged file: the plan is empty */
	struct ureg_config_plan plan = { 0 };
	cr_assert_eq(ureg_config_reload(cfg, path, UREG_CONFIG_DRY_RUN, &plan, NULL), 0);
	cr_assert_eq(plan.count, 0);

	char *src;
	cr_assert(asprintf(&src, "%s/test_plugin_v2.so", getenv("UREG_TEST_PLUGIN_DIR")) > 0);
	copy_file(src, plug);
	cr_assert_eq(ureg_config_reload(cfg, path, 0, &plan, NULL), 0);
	cr_assert_eq(plan.count, 1);
	cr_assert_eq(plan.v[0].op, UREG_PLAN_CHANGE);
	ureg_config_plan_free(&plan);

	cr_assert_eq(ureg_create_instance(tools, "p", new_ctx, (void **)&b), 0);
	cr_assert_eq(b->version(), 2);
	cr_assert_eq(a->version(), 1, "the old instance still runs the old code");
	wait_reclaim();
	cr_assert_eq(plugin_copies_mapped(), 2);
	ureg_ctx_destroy(old_ctx);
	wait_reclaim();
	cr_assert_eq(plugin_copies_mapped(), 1, "old version closed after its last release");
	cr_assert_eq(b->version(), 2);
	ureg_ctx_destroy(new_ctx);
	ureg_config_destroy(cfg);
	wait_reclaim();
	cr_assert_eq(plugin_copies_mapped(), 0);
	free(src);
	free(y);
	free(path);
	free(plug);
	ct_rmdir(dir);
}

Test(config_plugin, a_singleton_from_a_plugin_keeps_it_loaded_until_destroyed)
{
	char *dir, *plug = setup_plugin(&dir, 1);
	const char *y = "registries:\n  - name: tools\n    type: tool\n    entries:\n"
			"      - {key: s, kind: singleton, plugin: {path: plug.so, symbol: test_provider}}\n";
	char *path = ct_write_temp(dir, "c.yaml", y);
	ureg_config *cfg = ct_config();
	cr_assert_eq(ureg_config_load(cfg, path, NULL), 0, "%s", ureg_last_error());
	ureg_ref *ref;
	cr_assert_eq(ureg_acquire(ureg_config_registry(cfg, "tools"), "s", &ref), 0);
	ureg_config_destroy(cfg);
	wait_reclaim();
	cr_assert_eq(plugin_copies_mapped(), 1, "a counted reference pins the plugin");
	struct plugin_obj *o = ureg_ref_item(ref);
	cr_assert_eq(o->version(), 1);
	ureg_ref_release(ref);
	wait_reclaim();
	cr_assert_eq(plugin_copies_mapped(), 0);
	free(path);
	free(plug);
	ct_rmdir(dir);
}

Test(config_plugin, a_missing_symbol_is_reported_and_the_plugin_unloaded)
{
	char *dir, *plug = setup_plugin(&dir, 1);
	char *y = plugin_yaml("p", "no_such_symbol");
	char *path = ct_write_temp(dir, "c.yaml", y);
	ureg_config *cfg = ct_config();
	struct ureg_config_errors errs = { 0 };
	cr_assert_eq(ureg_config_load(cfg, path, &errs), -EBADMSG);
	cr_assert_eq(errs.count, 1);
	cr_assert_eq(errs.v[0].line, 8);
	cr_assert_eq(errs.v[0].column, 41);
	cr_assert(strstr(errs.v[0].reason, "has no symbol 'no_such_symbol'"), "%s", errs.v[0].reason);
	ureg_config_errors_free(&errs);
	cr_assert_eq(plugin_copies_mapped(), 0);
	cr_assert_null(ureg_config_registry(cfg, "tools"));
	ureg_config_destroy(cfg);
	free(y);
	free(path);
	free(plug);
	ct_rmdir(dir);
}

Test(config_plugin, plugins_can_be_disabled_for_untrusted_configs)
{
	ureg_config *cfg = ct_config();
	cr_assert_eq(ureg_config_set_flags(cfg, UREG_CONFIG_NO_PLUGINS), 0);
	char *y = plugin_yaml("p", "test_provider");
	struct ureg_config_errors errs = { 0 };
	cr_assert_eq(ureg_config_reload_buffer(cfg, y, strlen(y), "x.yaml", 0, NULL, &errs), -EBADMSG);
	cr_assert(strstr(errs.v[0].reason, "plugins are disabled"));
	ureg_config_errors_free(&errs);
	ureg_config_destroy(cfg);
	free(y);
}
