/* SPDX-License-Identifier: MIT */
/*
 * Helpers shared by the config suites: the types and the builtin provider
 * "test.item" the fixtures name, items that poison themselves when
 * destroyed, and temporary files.  Criterion runs each test in its own
 * process, so the counters start at zero.
 */
#ifndef UREG_TESTS_CONFIG_TEST_H
#define UREG_TESTS_CONFIG_TEST_H

#include <errno.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <criterion/criterion.h>
#include <ureg/config.h>

#define CT_UNUSED __attribute__((unused))
#define TITEM_MAGIC 0x17e3c0de17e3c0deull
#define TITEM_DEAD 0xdeaddeaddeaddeadull

struct titem {
	unsigned long long magic;
	long tag;
	char label[32];
};

CT_UNUSED static atomic_int titems_made, titems_destroyed;

static int titem_create(ureg_ctx *ctx, const struct ureg_params *p, void *arg,
			void **out)
{
	const char *label = ureg_params_get(p, "label");
	const char *tag = ureg_params_get(p, "tag");
	const char *fail = ureg_params_get(p, "fail");
	if (fail)
		return -atoi(fail);
	struct titem *t = ctx ? ureg_ctx_calloc(ctx, 1, sizeof(*t)) : calloc(1, sizeof(*t));
	if (!t)
		return -ENOMEM;
	t->magic = TITEM_MAGIC;
	t->tag = tag ? atol(tag) : 0;
	snprintf(t->label, sizeof(t->label), "%s", label ? label : "");
	atomic_fetch_add(&titems_made, 1);
	*out = t;
	return 0;
}

static void titem_destroy(void *obj, ureg_ctx *ctx)
{
	struct titem *t = obj;
	t->magic = TITEM_DEAD;
	atomic_fetch_add(&titems_destroyed, 1);
	if (ctx)
		ureg_ctx_free(ctx, t);
	else
		free(t);
}

CT_UNUSED static const ureg_type ct_base = { .name = "base" };
CT_UNUSED static const ureg_type ct_tool = { .name = "tool", .parent = &ct_base };
CT_UNUSED static const ureg_type ct_agent = { .name = "agent", .parent = &ct_base };

/* A config with the types base/tool/agent and the provider test.item. */
CT_UNUSED static ureg_config *ct_config(void)
{
	static const struct ureg_provider prov = { .create = titem_create, .destroy = titem_destroy };
	ureg_config *cfg;
	cr_assert_eq(ureg_config_new(&cfg), 0);
	cr_assert_eq(ureg_config_type_register(cfg, &ct_base), 0);
	cr_assert_eq(ureg_config_type_register(cfg, &ct_tool), 0);
	cr_assert_eq(ureg_config_type_register(cfg, &ct_agent), 0);
	cr_assert_eq(ureg_config_provider_register(cfg, "test.item", &prov), 0);
	return cfg;
}

/* Load YAML text; asserts success. */
CT_UNUSED static void ct_load(ureg_config *cfg, const char *yaml)
{
	struct ureg_config_errors errs = { 0 };
	int rc = ureg_config_reload_buffer(cfg, yaml, strlen(yaml), "test.yaml",
					   0, NULL, &errs);
	if (rc)
		ureg_config_errors_print(&errs, stderr);
	ureg_config_errors_free(&errs);
	cr_assert_eq(rc, 0, "load failed: %s", ureg_last_error());
}

/* One tool registry with one singleton (label v1): the live state a
 * rejected reload must leave as it was. */
CT_UNUSED static const char ct_base_yaml[] =
	"registries:\n"
	"  - name: tools\n"
	"    type: tool\n"
	"    entries:\n"
	"      - key: calculator\n"
	"        kind: singleton\n"
	"        provider: test.item\n"
	"        params: {label: v1}\n";

/* Whether @errs holds an error at @line:@col (@line 0: anywhere) whose
 * reason contains @reason. */
CT_UNUSED static bool ct_has_error(const struct ureg_config_errors *errs,
				   unsigned line, unsigned col, const char *reason)
{
	for (size_t i = 0; i < errs->count; i++)
		if ((!line || (errs->v[i].line == line && errs->v[i].column == col)) &&
		    strstr(errs->v[i].reason, reason))
			return true;
	return false;
}

/* The singleton under reg/key, copied out of a read section. */
CT_UNUSED static struct titem ct_item(ureg_config *cfg, const char *reg,
				      const char *key)
{
	struct titem copy = { 0 };
	void *p;
	ureg_registry *r = ureg_config_registry(cfg, reg);
	cr_assert_not_null(r, "no registry %s", reg);
	ureg_read_lock();
	int rc = ureg_lookup(r, key, &p);
	if (!rc)
		copy = *(struct titem *)p;
	ureg_read_unlock();
	cr_assert_eq(rc, 0, "%s/%s: %s", reg, key, ureg_strerror(rc));
	cr_assert_eq(copy.magic, TITEM_MAGIC);
	return copy;
}

/* Write @text to a new file in a fresh temp dir; returns a malloc'd path. */
CT_UNUSED static char *ct_write_temp(const char *dir, const char *name,
				     const char *text)
{
	char *path;
	cr_assert(asprintf(&path, "%s/%s", dir, name) > 0);
	char *tmp;
	cr_assert(asprintf(&tmp, "%s.tmp", path) > 0);
	FILE *f = fopen(tmp, "w");
	cr_assert_not_null(f);
	fputs(text, f);
	cr_assert_eq(fclose(f), 0);
	cr_assert_eq(rename(tmp, path), 0); /* atomic replace */
	free(tmp);
	return path;
}

CT_UNUSED static char *ct_tempdir(void)
{
	char *d = strdup("/tmp/ureg-config-test-XXXXXX");
	cr_assert_not_null(mkdtemp(d));
	return d;
}

CT_UNUSED static void ct_rmdir(char *d)
{
	char *cmd;
	if (asprintf(&cmd, "rm -rf '%s'", d) > 0) {
		if (system(cmd)) {}
		free(cmd);
	}
	free(d);
}

#endif
