/* SPDX-License-Identifier: MIT */
/*
 * Config files at scale and at the format's limits: nesting is capped
 * (CONFIG_MAX_DEPTH, 64) with the position of the first level too deep; a
 * second YAML document is an error at its '---'; duplicates are found in
 * large mappings and large registries; a reload of a large registry that
 * changes one key plans and applies that one key.  (The 100,000-entry
 * file is checked by the config_big test: gen_big.py + ureg-check.)
 */
#include "config_test.h"

/* Reload @text into a config holding ct_base_yaml; expect -EBADMSG with an
 * error containing @reason at @line:@col, and nothing changed. */
static void expect_error_at(const char *text, unsigned line, unsigned col,
			    const char *reason)
{
	ureg_config *cfg = ct_config();
	ct_load(cfg, ct_base_yaml);
	ureg_registry *tools = ureg_config_registry(cfg, "tools");
	uint64_t gen = ureg_generation(tools);
	struct ureg_config_errors errs = { 0 };

	int rc = ureg_config_reload_buffer(cfg, text, strlen(text), "big.yaml", 0,
					   NULL, &errs);
	ureg_config_errors_print(&errs, stderr);
	cr_assert_eq(rc, -EBADMSG, "rc %d", rc);
	cr_assert(ct_has_error(&errs, line, col, reason), "no error '%s' at %u:%u",
		  reason, line, col);
	ureg_config_errors_free(&errs);
	cr_assert_eq(ureg_generation(tools), gen);
	cr_assert_str_eq(ct_item(cfg, "tools", "calculator").label, "v1");
	ureg_config_destroy(cfg);
}

/* "registries: " then @depth '[' and as many ']'. */
static char *nested(int depth)
{
	char *s = malloc(32 + 2 * (size_t)depth);
	cr_assert_not_null(s);
	int n = sprintf(s, "registries: ");
	for (int i = 0; i < depth; i++)
		s[n++] = '[';
	for (int i = 0; i < depth; i++)
		s[n++] = ']';
	s[n++] = '\n';
	s[n] = '\0';
	return s;
}

Test(config_scale, nesting_deeper_than_64_levels_is_refused_at_the_first_level_too_deep)
{
	/* the root mapping is level 1; the k-th '[' (column 12 + k) is level
	 * k + 1, so level 65 is the 64th '[', column 76 */
	char *deep = nested(10000);
	expect_error_at(deep, 1, 76, "nesting deeper than 64 levels");
	free(deep);
}

Test(config_scale, nesting_of_exactly_64_levels_is_not_a_depth_error)
{
	char *ok = nested(63); /* 63 sequences under the root mapping */
	ureg_config *cfg = ct_config();
	struct ureg_config_errors errs = { 0 };
	int rc = ureg_config_reload_buffer(cfg, ok, strlen(ok), "d.yaml", 0, NULL, &errs);
	cr_assert_eq(rc, -EBADMSG); /* a registry must be a mapping */
	for (size_t i = 0; i < errs.count; i++)
		cr_assert_null(strstr(errs.v[i].reason, "nesting"), "%s", errs.v[i].reason);
	ureg_config_errors_free(&errs);
	ureg_config_destroy(cfg);
	free(ok);
}

Test(config_scale, a_second_yaml_document_is_an_error_at_its_separator)
{
	char text[512];
	snprintf(text, sizeof(text), "%s---\nregistries: []\n", ct_base_yaml);
	expect_error_at(text, 9, 1, "a second YAML document");
}

Test(config_scale, a_second_document_after_an_explicit_first_one_is_an_error_too)
{
	expect_error_at("---\nregistries: []\n...\n---\nregistries: []\n", 4, 1,
			"a second YAML document");
}

Test(config_scale, a_duplicate_field_in_a_mapping_of_many_pairs_is_reported_at_the_second_one)
{
	char text[4096];
	int n = snprintf(text, sizeof(text),
			 "registries:\n  - name: tools\n    type: tool\n    entries:\n"
			 "      - key: calculator\n        kind: singleton\n"
			 "        provider: test.item\n        params:\n");
	for (int i = 0; i < 40; i++) /* line 9 + i; p7 again at i = 30 */
		n += snprintf(text + n, sizeof(text) - (size_t)n,
			      "          p%d: v\n", i == 30 ? 7 : i);
	expect_error_at(text, 39, 11, "duplicate field 'p7'");
}

/* A registry "big" of @n singletons k0..k(n-1); k(@dup) repeats k0. */
static char *big_registry(int n, int dup, const char *label_of_k5)
{
	size_t cap = 96 * (size_t)n + 256, len = 0;
	char *s = malloc(cap);
	cr_assert_not_null(s);
	len += (size_t)sprintf(s, "registries:\n  - name: big\n    type: tool\n    entries:\n");
	for (int i = 0; i < n; i++)
		len += (size_t)sprintf(s + len,
			"      - {key: k%d, kind: singleton, provider: test.item, params: {label: %s}}\n",
			i == dup ? 0 : i, i == 5 ? label_of_k5 : "x");
	return s;
}

Test(config_scale, a_duplicate_key_among_20000_entries_is_reported_at_the_second_one)
{
	char *text = big_registry(20000, 12345, "x");
	/* line 5 + i, the key's value at column 15 */
	expect_error_at(text, 5 + 12345, 15, "duplicate key 'k0' in registry 'big'");
	free(text);
}

Test(config_scale, a_reload_of_20000_entries_that_changes_one_plans_and_applies_that_one)
{
	ureg_config *cfg = ct_config();
	char *v1 = big_registry(20000, -1, "x"), *v2 = big_registry(20000, -1, "changed");
	struct ureg_config_plan plan = { 0 };

	ct_load(cfg, v1);
	ureg_registry *big = ureg_config_registry(cfg, "big");
	cr_assert_eq(ureg_count(big), 20000);
	int made = atomic_load(&titems_made);
	cr_assert_eq(ureg_config_reload_buffer(cfg, v2, strlen(v2), "big.yaml",
					       UREG_CONFIG_DRY_RUN, &plan, NULL), 0);
	cr_assert_eq(plan.count, 1);
	cr_assert_eq(plan.v[0].op, UREG_PLAN_CHANGE);
	cr_assert_str_eq(plan.v[0].key, "k5");
	ureg_config_plan_free(&plan);
	cr_assert_eq(atomic_load(&titems_made), made, "a dry run builds nothing");

	uint64_t gen = ureg_generation(big);
	cr_assert_eq(ureg_config_reload_buffer(cfg, v2, strlen(v2), "big.yaml", 0,
					       &plan, NULL), 0);
	cr_assert_eq(plan.count, 1);
	cr_assert_eq(atomic_load(&titems_made), made + 1, "only k5 is rebuilt");
	cr_assert_eq(ureg_generation(big), gen + 1);
	cr_assert_str_eq(ct_item(cfg, "big", "k5").label, "changed");
	cr_assert_str_eq(ct_item(cfg, "big", "k19999").label, "x");
	ureg_config_plan_free(&plan);
	free(v1);
	free(v2);
	ureg_config_destroy(cfg);
	cr_assert_eq(atomic_load(&titems_destroyed), atomic_load(&titems_made));
}

Test(config_scale, an_alias_to_a_scalar_reads_as_the_anchored_value)
{
	static const char y[] =
		"registries:\n  - name: tools\n    type: tool\n    entries:\n"
		"      - {key: a, kind: singleton, provider: test.item, params: {label: &l shared}}\n"
		"      - {key: b, kind: singleton, provider: test.item, params: {label: *l}}\n";
	ureg_config *cfg = ct_config();
	ct_load(cfg, y);
	cr_assert_str_eq(ct_item(cfg, "tools", "a").label, "shared");
	cr_assert_str_eq(ct_item(cfg, "tools", "b").label, "shared");
	ureg_config_destroy(cfg);
}

Test(config_scale, an_undefined_alias_is_an_error_at_the_alias)
{
	expect_error_at("registries:\n  - name: tools\n    type: tool\n    entries:\n"
			"      - {key: a, kind: singleton, provider: test.item, params: {label: *nope}}\n",
			5, 72, "undefined alias '*nope'");
}
