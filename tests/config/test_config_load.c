/* SPDX-License-Identifier: MIT */
/*
 * Loading is all or nothing: every class of invalid config is reported with
 * file:line:column and a reason, and after each the live registries are
 * exactly as they were (same generation, same items, no new registry).
 */
#include "config_test.h"

/* Load base, then the fixture; check the error and that nothing changed. */
static void expect_invalid(const char *fixture, unsigned line, unsigned col,
			   const char *reason)
{
	char *path;
	ureg_config *cfg = ct_config();
	ct_load(cfg, ct_base_yaml);
	ureg_registry *tools = ureg_config_registry(cfg, "tools");
	uint64_t gen = ureg_generation(tools);
	int made = atomic_load(&titems_made);

	cr_assert(asprintf(&path, "%s/%s", getenv("UREG_TEST_FIXTURES"), fixture) > 0);
	struct ureg_config_errors errs = { 0 };
	int rc = ureg_config_reload(cfg, path, 0, NULL, &errs);
	ureg_config_errors_print(&errs, stderr);
	cr_assert_eq(rc, -EBADMSG, "%s: rc %d", fixture, rc);
	cr_assert_geq(errs.count, 1);
	for (size_t i = 0; i < errs.count; i++)
		cr_assert_str_eq(errs.v[i].file, path);
	cr_assert(ct_has_error(&errs, line, col, reason), "%s: no error '%s' at %u:%u",
		  fixture, reason, line, col);
	ureg_config_errors_free(&errs);

	/* the live state is untouched */
	cr_assert_eq(ureg_generation(tools), gen);
	cr_assert_eq(ureg_count(tools), 1);
	cr_assert_str_eq(ct_item(cfg, "tools", "calculator").label, "v1");
	cr_assert_null(ureg_config_registry(cfg, "other"));
	cr_assert_null(ureg_config_registry(cfg, "agents"));
	cr_assert_eq(atomic_load(&titems_made), made, "no constructor may run");
	free(path);
	ureg_config_destroy(cfg);
}

Test(config_load, a_valid_config_populates_its_registries_in_one_generation)
{
	ureg_config *cfg = ct_config();
	ct_load(cfg, ct_base_yaml);
	ureg_registry *tools = ureg_config_registry(cfg, "tools");
	cr_assert_not_null(tools);
	cr_assert_eq(ureg_generation(tools), 1);
	struct titem t = ct_item(cfg, "tools", "calculator");
	cr_assert_str_eq(t.label, "v1");
	cr_assert_str_eq(ureg_registry_type(tools)->name, "tool");
	cr_assert_eq(ureg_registry_type(tools)->parent, &ct_base);

	struct ureg_entry_info in;
	ureg_read_lock();
	cr_assert_eq(ureg_entry_info(tools, "calculator", &in), 0);
	cr_assert(in.has_singleton);
	cr_assert_str_eq(in.provider, "test.item");
	cr_assert_str_eq(in.source_file, "test.yaml");
	cr_assert_eq(in.source_line, 5);
	cr_assert_eq(in.source_column, 9, "column %u", in.source_column); /* "key:" after "- " */
	ureg_read_unlock();
	ureg_config_destroy(cfg);
	cr_assert_eq(atomic_load(&titems_destroyed), 1);
}

Test(config_load, a_factory_entry_makes_instances_with_its_params_in_a_context)
{
	ureg_config *cfg = ct_config();
	ct_load(cfg, "registries:\n"
		     "  - name: agents\n"
		     "    type: agent\n"
		     "    entries:\n"
		     "      - {key: planner, kind: factory, scope: context, provider: test.item,\n"
		     "         params: {label: plan, tag: 7}}\n");
	ureg_ctx *ctx;
	cr_assert_eq(ureg_ctx_new("u", 0, &ctx), 0);
	void *a, *b;
	ureg_read_lock();
	cr_assert_eq(ureg_get(ureg_config_registry(cfg, "agents"), "planner", ctx, &a), 0);
	cr_assert_eq(ureg_get(ureg_config_registry(cfg, "agents"), "planner", ctx, &b), 0);
	ureg_read_unlock();
	cr_assert_eq(a, b, "context scope: one instance per context");
	cr_assert_str_eq(((struct titem *)a)->label, "plan");
	cr_assert_eq(((struct titem *)a)->tag, 7);
	ureg_ctx_destroy(ctx);
	cr_assert_eq(atomic_load(&titems_destroyed), 1);
	ureg_config_destroy(cfg);
}

Test(config_load, a_yaml_syntax_error_is_reported_with_its_position)
{
	expect_invalid("syntax.yaml", 0, 0, "YAML syntax");
}

Test(config_load, an_unknown_type_is_reported_at_the_type)
{
	expect_invalid("unknown_type.yaml", 10, 11, "unknown type 'nosuchtype'");
}

Test(config_load, an_unknown_provider_is_reported_at_the_provider)
{
	expect_invalid("unknown_provider.yaml", 11, 19, "unknown provider 'nosuch.provider'");
}

Test(config_load, a_missing_plugin_file_is_reported_at_its_path)
{
	expect_invalid("missing_plugin.yaml", 11, 24, "does-not-exist.so");
}

Test(config_load, a_bad_scope_is_reported)
{
	expect_invalid("bad_scope.yaml", 11, 16, "bad scope 'forever'");
}

Test(config_load, a_bad_kind_is_reported)
{
	expect_invalid("bad_kind.yaml", 10, 15, "bad kind 'multiton'");
}

Test(config_load, a_duplicate_key_is_reported_at_the_second_one)
{
	expect_invalid("duplicate_key.yaml", 9, 14, "duplicate key 'calculator'");
}

Test(config_load, a_duplicate_registry_is_reported)
{
	expect_invalid("duplicate_registry.yaml", 9, 11, "duplicate registry 'tools'");
}

Test(config_load, a_missing_required_key_is_reported_at_the_requirement)
{
	expect_invalid("missing_required.yaml", 11, 16, "required key 'planner' is missing");
}

Test(config_load, a_wrong_yaml_type_is_reported)
{
	expect_invalid("wrong_yaml_type.yaml", 12, 17, "params must be a mapping");
}

Test(config_load, an_unknown_field_is_reported)
{
	expect_invalid("unknown_field.yaml", 12, 9, "unknown entry field 'colour'");
}

Test(config_load, every_error_of_a_file_is_reported_not_only_the_first)
{
	expect_invalid("many_errors.yaml", 9, 14, "invalid key 'has space'");
	ureg_config *cfg = ct_config();
	struct ureg_config_errors errs = { 0 };
	char *path;
	cr_assert(asprintf(&path, "%s/many_errors.yaml", getenv("UREG_TEST_FIXTURES")) > 0);
	cr_assert_eq(ureg_config_reload(cfg, path, 0, NULL, &errs), -EBADMSG);
	cr_assert_eq(errs.count, 3);
	cr_assert_eq(errs.v[1].line, 13);
	cr_assert(strstr(errs.v[1].reason, "unknown type"));
	cr_assert_eq(errs.v[2].line, 17);
	cr_assert_eq(errs.v[2].column, 14);
	cr_assert(strstr(errs.v[2].reason, "entries must be a sequence"));
	cr_assert_null(ureg_config_registry(cfg, "tools"));
	ureg_config_errors_free(&errs);
	free(path);
	ureg_config_destroy(cfg);
}

Test(config_load, a_reload_cannot_change_a_registry_type)
{
	ureg_config *cfg = ct_config();
	ct_load(cfg, ct_base_yaml);
	struct ureg_config_errors errs = { 0 };
	const char *y = "registries:\n  - name: tools\n    type: agent\n";
	cr_assert_eq(ureg_config_reload_buffer(cfg, y, strlen(y), "t2.yaml", 0,
					       NULL, &errs), -EBADMSG);
	cr_assert_eq(errs.count, 1);
	cr_assert_eq(errs.v[0].line, 3);
	cr_assert(strstr(errs.v[0].reason, "cannot change it to 'agent'"));
	ureg_config_errors_free(&errs);
	cr_assert_eq(ureg_count(ureg_config_registry(cfg, "tools")), 1);
	ureg_config_destroy(cfg);
}

Test(config_load, a_failing_constructor_aborts_the_whole_load_and_destroys_what_was_built)
{
	ureg_config *cfg = ct_config();
	ct_load(cfg, ct_base_yaml);
	const char *y =
		"registries:\n"
		"  - name: tools\n"
		"    type: tool\n"
		"    entries:\n"
		"      - {key: calculator, kind: singleton, provider: test.item, params: {label: v2}}\n"
		"      - {key: boom, kind: singleton, provider: test.item, params: {fail: 5}}\n";
	struct ureg_config_errors errs = { 0 };
	cr_assert_eq(ureg_config_reload_buffer(cfg, y, strlen(y), "t.yaml", 0, NULL, &errs), -EBADMSG);
	cr_assert_eq(errs.count, 1);
	cr_assert_eq(errs.v[0].line, 6);
	cr_assert(strstr(errs.v[0].reason, "failed to build singleton 'boom'"));
	ureg_config_errors_free(&errs);
	cr_assert_str_eq(ct_item(cfg, "tools", "calculator").label, "v1");
	cr_assert_eq(atomic_load(&titems_made), 2);
	cr_assert_eq(atomic_load(&titems_destroyed), 1, "the v2 item is destroyed");
	ureg_config_destroy(cfg);
}

Test(config_load, an_empty_file_is_valid_and_bad_arguments_are_refused)
{
	ureg_config *cfg = ct_config();
	cr_assert_eq(ureg_config_reload_buffer(cfg, "", 0, "e.yaml", 0, NULL, NULL), 0);
	cr_assert_eq(ureg_config_reload_buffer(NULL, "", 0, "e.yaml", 0, NULL, NULL), -EINVAL);
	cr_assert_eq(ureg_config_reload(cfg, "/nonexistent/x.yaml", 0, NULL, NULL), -ENOENT);
	cr_assert_eq(ureg_config_reload_buffer(cfg, "", 0, "e", 1u << 9, NULL, NULL), -EINVAL);
	ureg_read_lock();
	cr_assert_eq(ureg_config_reload_buffer(cfg, "", 0, "e", 0, NULL, NULL), -EPERM);
	ureg_read_unlock();
	struct ureg_provider p = { 0 };
	cr_assert_eq(ureg_config_provider_register(cfg, "x", &p), -EINVAL);
	/* a provider built for a newer ureg (a reserved field set) is refused */
	struct ureg_provider newer = { .create = titem_create, .reserved = { [3] = &p } };
	cr_assert_eq(ureg_config_provider_register(cfg, "newer", &newer), -EINVAL);
	cr_assert(strstr(ureg_last_error(), "reserved"), "%s", ureg_last_error());
	cr_assert_eq(ureg_config_type_register(cfg, &ct_tool), -EEXIST);
	ureg_config_destroy(cfg);
}

Test(config_load, aliases_to_collections_are_refused)
{
	ureg_config *cfg = ct_config();
	const char *y = "x: &a {key: k}\nregistries: [{name: r, type: tool, entries: [*a, *a]}]\n";
	struct ureg_config_errors errs = { 0 };
	cr_assert_eq(ureg_config_reload_buffer(cfg, y, strlen(y), "a.yaml", 0, NULL, &errs), -EBADMSG);
	cr_assert_geq(errs.count, 1);
	ureg_config_errors_free(&errs);
	ureg_config_destroy(cfg);
}
