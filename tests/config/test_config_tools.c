/* SPDX-License-Identifier: MIT */
/*
 * ureg_report in a live process, and the two tools: ureg-inspect (text and
 * JSON on tools/example.yaml) and ureg-check (exit codes, messages, plan).
 * The tools' paths come from the environment (tests/config/meson.build).
 */
#include <sys/wait.h>
#include "config_test.h"

/* Run a shell command; returns its exit status and its stdout (malloc'd). */
static int run(char **out, const char *fmt, ...)
{
	char *cmd, *buf = NULL;
	size_t len = 0;
	va_list ap;
	va_start(ap, fmt);
	cr_assert(vasprintf(&cmd, fmt, ap) > 0);
	va_end(ap);
	FILE *f = popen(cmd, "r");
	cr_assert_not_null(f);
	FILE *m = open_memstream(&buf, &len);
	char chunk[4096];
	size_t n;
	while ((n = fread(chunk, 1, sizeof(chunk), f)) > 0)
		fwrite(chunk, 1, n, m);
	fclose(m);
	int st = pclose(f);
	free(cmd);
	*out = buf;
	return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static const char *tool(const char *name)
{
	static char path[4096];
	snprintf(path, sizeof(path), "%s/%s", getenv("UREG_TOOLS_DIR"), name);
	return path;
}

static char *fixture(const char *name)
{
	char *p;
	cr_assert(asprintf(&p, "%s/%s", getenv("UREG_TEST_FIXTURES"), name) > 0);
	return p;
}

Test(config_tools, ureg_report_shows_registries_type_chains_entries_and_contexts)
{
	ureg_config *cfg = ct_config();
	ct_load(cfg, "registries:\n"
		     "  - name: agents\n"
		     "    type: agent\n"
		     "    entries:\n"
		     "      - {key: planner, kind: factory, scope: context, provider: test.item}\n"
		     "      - {key: \"q\\\"uote\", kind: singleton, provider: test.item}\n");
	ureg_ctx *ctx;
	void *o;
	cr_assert_eq(ureg_ctx_new("alice", 0, &ctx), 0);
	cr_assert_eq(ureg_create_instance(ureg_config_registry(cfg, "agents"), "planner", ctx, &o), 0);
	char *buf = NULL;
	size_t len = 0;
	FILE *m = open_memstream(&buf, &len);
	cr_assert_eq(ureg_report(m, UREG_REPORT_TEXT), 0);
	fclose(m);
	cr_assert(strstr(buf, "registry agents  type agent -> base  generation 1  2 keys"), "%s", buf);
	cr_assert(strstr(buf, "planner"));
	cr_assert(strstr(buf, "factory"));
	cr_assert(strstr(buf, "context"));
	cr_assert(strstr(buf, "test.yaml:5:9"), "%s", buf);
	cr_assert(strstr(buf, "alice"));
	cr_assert(strstr(buf, "instances 1"));
	free(buf);
	m = open_memstream(&buf, &len);
	cr_assert_eq(ureg_report(m, UREG_REPORT_JSON), 0);
	fclose(m);
	cr_assert(strstr(buf, "\"type_chain\": [\"agent\", \"base\"]"), "%s", buf);
	cr_assert(strstr(buf, "\"key\": \"q\\\"uote\""), "%s", buf);
	cr_assert(strstr(buf, "\"source\": {\"file\": \"test.yaml\", \"line\": 5, \"column\": 9}"), "%s", buf);
	cr_assert(strstr(buf, "\"name\": \"alice\", \"instances\": 1, \"live_bytes\": "), "%s", buf);
	free(buf);
	cr_assert_eq(ureg_report(NULL, 0), -EINVAL);
	ureg_ctx_destroy(ctx);
	ureg_config_destroy(cfg);
}

Test(config_tools, ureg_inspect_prints_the_example_as_text)
{
	char *out;
	int rc = run(&out, "'%s' --demo '%s'", tool("ureg-inspect"), getenv("UREG_EXAMPLE"));
	cr_assert_eq(rc, 0, "%s", out);
	cr_assert(strstr(out, "registry agents  type agent -> base"), "%s", out);
	cr_assert(strstr(out, "registry tools  type tool -> base"), "%s", out);
	cr_assert(strstr(out, "planner"));
	cr_assert(strstr(out, "demo.object"));
	cr_assert(strstr(out, "example.yaml:"));
	cr_assert(strstr(out, "inspect "), "the demo context is listed: %s", out);
	free(out);
}

Test(config_tools, ureg_inspect_prints_the_example_as_json)
{
	char *out;
	int rc = run(&out, "'%s' --demo --json '%s'", tool("ureg-inspect"), getenv("UREG_EXAMPLE"));
	cr_assert_eq(rc, 0, "%s", out);
	cr_assert_eq(out[0], '{');
	cr_assert(strstr(out, "\"registries\": ["));
	cr_assert(strstr(out, "\"name\": \"agents\", \"type_chain\": [\"agent\", \"base\"]"), "%s", out);
	cr_assert(strstr(out, "\"key\": \"planner\", \"kind\": \"factory\", \"scope\": \"context\", \"provider\": \"demo.object\""), "%s", out);
	cr_assert(strstr(out, "\"contexts\": ["));
	cr_assert(strstr(out, "\"name\": \"inspect\", \"instances\": 4"), "%s", out);
	free(out);
	/* valid JSON, if python3 is around to say so */
	if (system("command -v python3 >/dev/null 2>&1") == 0) {
		rc = run(&out, "'%s' --demo --json '%s' | python3 -c 'import json,sys; json.load(sys.stdin); print(\"ok\")'",
			 tool("ureg-inspect"), getenv("UREG_EXAMPLE"));
		cr_assert_eq(rc, 0);
		cr_assert_str_eq(out, "ok\n");
		free(out);
	}
}

Test(config_tools, ureg_check_exits_0_on_a_valid_config)
{
	char *out;
	int rc = run(&out, "'%s' --demo '%s'", tool("ureg-check"), getenv("UREG_EXAMPLE"));
	cr_assert_eq(rc, 0, "%s", out);
	cr_assert(strstr(out, ": ok"));
	free(out);
}

Test(config_tools, ureg_check_exits_1_with_every_error_and_its_position)
{
	char *out, *f = fixture("many_errors.yaml");
	int rc = run(&out, "'%s' --demo '%s'", tool("ureg-check"), f);
	cr_assert_eq(rc, 1, "%s", out);
	char *want;
	cr_assert(asprintf(&want, "%s:9:14: error: invalid key 'has space'", f) > 0);
	cr_assert(strstr(out, want), "%s", out);
	free(want);
	cr_assert(asprintf(&want, "%s:13:11: error: unknown type 'nosuchtype'", f) > 0);
	cr_assert(strstr(out, want), "%s", out);
	free(want);
	cr_assert(asprintf(&want, "%s:17:14: error: entries must be a sequence", f) > 0);
	cr_assert(strstr(out, want), "%s", out);
	free(want);
	free(out);
	free(f);
	rc = run(&out, "'%s' --demo /nonexistent.yaml", tool("ureg-check"));
	cr_assert_eq(rc, 1);
	cr_assert(strstr(out, "/nonexistent.yaml: error: cannot read"), "%s", out);
	free(out);
	rc = run(&out, "'%s' 2>/dev/null", tool("ureg-check"));
	cr_assert_eq(rc, 2, "usage error");
	free(out);
}

Test(config_tools, ureg_check_plan_prints_the_reload_diff)
{
	char *dir = ct_tempdir();
	char *old = ct_write_temp(dir, "old.yaml",
		"registries:\n  - name: tools\n    type: tool\n    entries:\n"
		"      - {key: a, kind: singleton, provider: demo.object}\n"
		"      - {key: b, kind: singleton, provider: demo.object, params: {label: x}}\n");
	char *nw = ct_write_temp(dir, "new.yaml",
		"registries:\n  - name: tools\n    type: tool\n    entries:\n"
		"      - {key: b, kind: singleton, provider: demo.object, params: {label: y}}\n"
		"      - {key: c, kind: factory, provider: demo.object}\n");
	char *out;
	int rc = run(&out, "'%s' --demo --plan '%s' '%s'", tool("ureg-check"), old, nw);
	cr_assert_eq(rc, 0, "%s", out);
	cr_assert_str_eq(out, "- tools/a\n~ tools/b\n+ tools/c\n");
	free(out);
	rc = run(&out, "'%s' --demo --plan '%s' '%s'", tool("ureg-check"), old, old);
	cr_assert_eq(rc, 0);
	cr_assert_str_eq(out, "no changes\n");
	free(out);
	free(old);
	free(nw);
	ct_rmdir(dir);
}

/* A plugin a user writes and builds outside the source tree: a type and a
 * builtin provider registered by ureg_config_plugin_init (for --plugin),
 * and the same provider exported for `plugin:` entries. */
static const char user_plugin_c[] =
	"#include <stdio.h>\n"
	"#include <stdlib.h>\n"
	"#include <ureg/config.h>\n"
	"#include <ureg/ctx.h>\n"
	"struct widget { char label[32]; };\n"
	"static int make(ureg_ctx *ctx, const struct ureg_params *p, void *arg, void **out)\n"
	"{\n"
	"	struct widget *w = ctx ? ureg_ctx_calloc(ctx, 1, sizeof(*w)) : calloc(1, sizeof(*w));\n"
	"	const char *l = ureg_params_get(p, \"label\");\n"
	"	(void)arg;\n"
	"	if (!w)\n"
	"		return -12;\n"
	"	snprintf(w->label, sizeof(w->label), \"%s\", l ? l : \"\");\n"
	"	*out = w;\n"
	"	return 0;\n"
	"}\n"
	"static void destroy(void *obj, ureg_ctx *ctx)\n"
	"{\n"
	"	if (ctx)\n"
	"		ureg_ctx_free(ctx, obj);\n"
	"	else\n"
	"		free(obj);\n"
	"}\n"
	"const struct ureg_provider widget_provider = { .create = make, .destroy = destroy };\n"
	"static const ureg_type widget_type = { .name = \"widget\" };\n"
	"int ureg_config_plugin_init(ureg_config *cfg)\n"
	"{\n"
	"	int rc = ureg_config_type_register(cfg, &widget_type);\n"
	"	return rc ? rc : ureg_config_provider_register(cfg, \"my.widget\", &widget_provider);\n"
	"}\n";

static const char user_config[] =
	"registries:\n"
	"  - name: widgets\n"
	"    type: widget\n"
	"    required: [w1]\n"
	"    entries:\n"
	"      - {key: w1, kind: singleton, provider: my.widget, params: {label: one}}\n"
	"      - {key: w2, kind: factory, scope: context,\n"
	"         plugin: {path: libwidget.so, symbol: widget_provider}}\n";

/* Build the user's plugin in a fresh temp dir (not under the source or
 * build tree) with the C compiler against the ureg headers and libraries. */
static char *build_user_plugin(void)
{
	char *dir = ct_tempdir(), *out;
	free(ct_write_temp(dir, "widget.c", user_plugin_c));
	free(ct_write_temp(dir, "widgets.yaml", user_config));
	int rc = run(&out, "cd '%s' && %s -shared -fPIC -Wall -Werror -o libwidget.so widget.c "
		     "-I'%s' -L'%s' -lureg-config -lureg 2>&1",
		     dir, getenv("UREG_TEST_CC"), getenv("UREG_TEST_INCLUDE"),
		     getenv("UREG_TEST_LIBDIR"));
	cr_assert_eq(rc, 0, "cc failed: %s", out);
	free(out);
	return dir;
}

Test(config_tools, ureg_check_validates_a_config_that_uses_a_plugin_the_user_built)
{
	char *dir = build_user_plugin(), *out;
	int rc = run(&out, "cd '%s' && '%s' --plugin ./libwidget.so widgets.yaml 2>&1",
		     dir, tool("ureg-check"));
	cr_assert_eq(rc, 0, "%s", out);
	cr_assert_str_eq(out, "widgets.yaml: ok\n");
	free(out);
	/* the same with an absolute path and a bare file name */
	rc = run(&out, "cd '%s' && '%s' -p libwidget.so '%s/widgets.yaml' 2>&1",
		 dir, tool("ureg-check"), dir);
	cr_assert_eq(rc, 0, "%s", out);
	free(out);
	/* without the user's plugin its type and provider are unknown */
	rc = run(&out, "cd '%s' && '%s' widgets.yaml 2>/dev/null", dir, tool("ureg-check"));
	cr_assert_eq(rc, 1, "%s", out);
	cr_assert(strstr(out, "widgets.yaml:3:11: error: unknown type 'widget'"), "%s", out);
	cr_assert(strstr(out, "widgets.yaml:6:46: error: unknown provider 'my.widget'"), "%s", out);
	free(out);
	ct_rmdir(dir);
}

Test(config_tools, ureg_check_catches_errors_in_a_config_of_the_users_plugin)
{
	char *dir = build_user_plugin(), *out;
	free(ct_write_temp(dir, "bad.yaml",
		"registries:\n  - name: widgets\n    type: widget\n    entries:\n"
		"      - {key: w1, kind: singleton, provider: my.widget}\n"
		"      - {key: w2, kind: factory, plugin: {path: libwidget.so, symbol: no_such}}\n"
		"      - {key: w1, kind: singleton, provider: my.widget}\n"));
	int rc = run(&out, "cd '%s' && '%s' --plugin ./libwidget.so bad.yaml", dir,
		     tool("ureg-check"));
	cr_assert_eq(rc, 1, "%s", out);
	cr_assert(strstr(out, "bad.yaml:6:71: error: plugin 'libwidget.so' has no symbol 'no_such'"), "%s", out);
	cr_assert(strstr(out, "bad.yaml:7:15: error: duplicate key 'w1' in registry 'widgets'"), "%s", out);
	free(out);
	ct_rmdir(dir);
}

Test(config_tools, ureg_inspect_shows_the_users_own_types_and_instances)
{
	char *dir = build_user_plugin(), *out;
	int rc = run(&out, "cd '%s' && '%s' --plugin ./libwidget.so widgets.yaml", dir,
		     tool("ureg-inspect"));
	cr_assert_eq(rc, 0, "%s", out);
	cr_assert(strstr(out, "widgets"), "%s", out);
	cr_assert(strstr(out, "widget"), "%s", out);
	cr_assert(strstr(out, "my.widget"), "%s", out);
	cr_assert(strstr(out, "libwidget.so:widget_provider"), "%s", out);
	free(out);
	/* --type: a config of plugin: entries only needs its type's name */
	free(ct_write_temp(dir, "plugin_only.yaml",
		"registries:\n  - name: widgets\n    type: widget\n    entries:\n"
		"      - {key: w2, kind: factory, plugin: {path: libwidget.so, symbol: widget_provider}}\n"));
	rc = run(&out, "cd '%s' && '%s' --type widget --contexts 2 plugin_only.yaml", dir,
		 tool("ureg-inspect"));
	cr_assert_eq(rc, 0, "%s", out);
	cr_assert(strstr(out, "inspect-2"), "%s", out);
	free(out);
	ct_rmdir(dir);
}

Test(config_tools, a_plugin_that_cannot_be_loaded_is_exit_1_with_its_reason)
{
	char *dir = build_user_plugin(), *out;
	int rc = run(&out, "cd '%s' && '%s' --plugin ./nothing.so widgets.yaml 2>&1", dir,
		     tool("ureg-check"));
	cr_assert_eq(rc, 1, "%s", out);
	cr_assert(strstr(out, "ureg-check: --plugin ./nothing.so: "), "%s", out);
	free(out);
	/* a shared object without ureg_config_plugin_init */
	rc = run(&out, "cd '%s' && %s -shared -fPIC -o empty.so -x c /dev/null && "
		 "'%s' --plugin ./empty.so widgets.yaml 2>&1", dir,
		 getenv("UREG_TEST_CC"), tool("ureg-check"));
	cr_assert_eq(rc, 1, "%s", out);
	cr_assert(strstr(out, "no function ureg_config_plugin_init"), "%s", out);
	free(out);
	ct_rmdir(dir);
}
