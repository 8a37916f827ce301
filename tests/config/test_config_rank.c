/* SPDX-License-Identifier: MIT */
/*
 * `rank:` in config files (ureg/config.h, "Ranking"): a key's entries, one
 * per (kind, rank), become its ranked providers; reloads restage a changed
 * key whole and fall back atomically; ureg-inspect shows every provider
 * with its rank.
 */
#include <sys/wait.h>
#include "config_test.h"

static const char ranked_v1[] =
	"registries:\n"
	"  - name: tools\n"
	"    type: tool\n"
	"    entries:\n"
	"      - {key: search, kind: singleton, provider: test.item, params: {label: builtin}}\n"
	"      - {key: search, kind: singleton, rank: 10, provider: test.item, params: {label: fast}}\n"
	"      - {key: search, kind: factory, rank: -3, provider: test.item, params: {label: session}}\n"
	"      - {key: other, kind: singleton, provider: test.item, params: {label: other}}\n";

/* v1 without the rank-10 singleton */
static const char ranked_v2[] =
	"registries:\n"
	"  - name: tools\n"
	"    type: tool\n"
	"    entries:\n"
	"      - {key: search, kind: singleton, provider: test.item, params: {label: builtin}}\n"
	"      - {key: search, kind: factory, rank: -3, provider: test.item, params: {label: session}}\n"
	"      - {key: other, kind: singleton, provider: test.item, params: {label: other}}\n";

static int providers_of(ureg_config *cfg, const char *key,
			struct ureg_provider_info *pi, size_t cap)
{
	ureg_registry *tools = ureg_config_registry(cfg, "tools");
	int n;

	ureg_read_lock();
	n = ureg_providers(tools, key, pi, cap);
	ureg_read_unlock();
	return n;
}

Test(config_rank, the_entries_of_one_key_become_its_ranked_providers)
{
	ureg_config *cfg = ct_config();
	struct ureg_provider_info pi[4];
	ureg_ctx *ctx = NULL;
	void *obj = NULL;

	ct_load(cfg, ranked_v1);
	cr_assert_str_eq(ct_item(cfg, "tools", "search").label, "fast");
	cr_assert_eq(providers_of(cfg, "search", pi, 4), 3);
	cr_assert_eq(pi[0].rank, 10);
	cr_assert(pi[0].active);
	cr_assert_eq(pi[1].rank, 0);
	cr_assert_not(pi[1].active);
	cr_assert_eq(pi[2].what, UREG_FACTORY);
	cr_assert_eq(pi[2].rank, -3);
	cr_assert(pi[2].active, "the only factory is the active one");
	cr_assert_eq(ureg_count(ureg_config_registry(cfg, "tools")), 2);
	/* the factory works too */
	cr_assert_eq(ureg_ctx_new("u", 0, &ctx), 0);
	cr_assert_eq(ureg_create_instance(ureg_config_registry(cfg, "tools"), "search",
					  ctx, &obj), 0);
	cr_assert_str_eq(((struct titem *)obj)->label, "session");
	ureg_ctx_destroy(ctx);
	ureg_config_destroy(cfg);
	cr_assert_eq(atomic_load(&titems_destroyed), atomic_load(&titems_made));
}

Test(config_rank, a_singleton_and_a_factory_may_share_a_key_without_ranks)
{
	static const char yaml[] =
		"registries:\n"
		"  - name: tools\n"
		"    type: tool\n"
		"    entries:\n"
		"      - {key: both, kind: singleton, provider: test.item, params: {label: s}}\n"
		"      - {key: both, kind: factory, provider: test.item, params: {label: f}}\n";
	ureg_config *cfg = ct_config();
	struct ureg_provider_info pi[4];

	ct_load(cfg, yaml);
	cr_assert_eq(providers_of(cfg, "both", pi, 4), 2);
	cr_assert_eq(pi[0].what, UREG_SINGLETON);
	cr_assert_eq(pi[1].what, UREG_FACTORY);
	ureg_config_destroy(cfg);
}

static void expect_error(const char *fixture, unsigned line, unsigned col,
			 const char *reason)
{
	ureg_config *cfg = ct_config();
	struct ureg_config_errors errs = { 0 };
	char *path;

	cr_assert(asprintf(&path, "%s/%s", getenv("UREG_TEST_FIXTURES"), fixture) > 0);
	cr_assert_eq(ureg_config_load(cfg, path, &errs), -EBADMSG);
	bool found = ct_has_error(&errs, line, col, reason);
	if (!found)
		ureg_config_errors_print(&errs, stderr);
	cr_assert(found, "%s: no error '%s' at %u:%u", fixture, reason, line, col);
	cr_assert_null(ureg_config_registry(cfg, "tools"), "a failed load created a registry");
	ureg_config_errors_free(&errs);
	free(path);
	ureg_config_destroy(cfg);
	cr_assert_eq(atomic_load(&titems_destroyed), atomic_load(&titems_made));
}

Test(config_rank, the_same_kind_at_the_same_rank_twice_is_a_duplicate_key)
{
	expect_error("duplicate_rank.yaml", 9, 14,
		     "duplicate key 'search' in registry 'tools': a singleton at rank 5 already");
}

Test(config_rank, a_rank_that_is_not_an_integer_is_reported_at_its_value)
{
	expect_error("bad_rank.yaml", 7, 15, "bad rank 'high'");
}

Test(config_rank, a_rank_outside_int_is_reported)
{
	static const char yaml[] =
		"registries:\n"
		"  - name: tools\n"
		"    type: tool\n"
		"    entries:\n"
		"      - {key: k, kind: singleton, rank: 99999999999, provider: test.item}\n";
	ureg_config *cfg = ct_config();
	struct ureg_config_errors errs = { 0 };

	cr_assert_eq(ureg_config_reload_buffer(cfg, yaml, strlen(yaml), "r.yaml", 0,
					       NULL, &errs), -EBADMSG);
	cr_assert_eq(errs.count, 1);
	cr_assert(strstr(errs.v[0].reason, "bad rank '99999999999'"), "%s", errs.v[0].reason);
	ureg_config_errors_free(&errs);
	ureg_config_destroy(cfg);
}

Test(config_rank, a_reload_that_drops_the_top_rank_falls_back_and_plans_the_key_once)
{
	ureg_config *cfg = ct_config();
	struct ureg_config_plan plan = { 0 };
	struct ureg_provider_info pi[4];
	struct ureg_entry_info other_before, other_after;
	ureg_registry *tools;

	ct_load(cfg, ranked_v1);
	tools = ureg_config_registry(cfg, "tools");
	ureg_read_lock();
	cr_assert_eq(ureg_entry_info(tools, "other", &other_before), 0);
	ureg_read_unlock();
	cr_assert_eq(ureg_config_reload_buffer(cfg, ranked_v2, strlen(ranked_v2), "v2.yaml",
					       0, &plan, NULL), 0, "%s", ureg_last_error());
	cr_assert_eq(plan.count, 1);
	cr_assert_eq(plan.v[0].op, UREG_PLAN_CHANGE);
	cr_assert_str_eq(plan.v[0].key, "search");
	ureg_config_plan_free(&plan);
	cr_assert_str_eq(ct_item(cfg, "tools", "search").label, "builtin");
	cr_assert_eq(providers_of(cfg, "search", pi, 4), 2);
	/* an untouched key keeps its entry */
	ureg_read_lock();
	cr_assert_eq(ureg_entry_info(tools, "other", &other_after), 0);
	ureg_read_unlock();
	cr_assert_eq(other_after.generation, other_before.generation);
	/* and back: the rank-10 provider wins again */
	cr_assert_eq(ureg_config_reload_buffer(cfg, ranked_v1, strlen(ranked_v1), "v1.yaml",
					       0, &plan, NULL), 0, "%s", ureg_last_error());
	cr_assert_eq(plan.count, 1);
	ureg_config_plan_free(&plan);
	cr_assert_str_eq(ct_item(cfg, "tools", "search").label, "fast");
	/* the same file again: nothing to do */
	cr_assert_eq(ureg_config_reload_buffer(cfg, ranked_v1, strlen(ranked_v1), "v1.yaml",
					       0, &plan, NULL), 0);
	cr_assert_eq(plan.count, 0);
	ureg_config_plan_free(&plan);
	ureg_config_destroy(cfg);
	cr_assert_eq(atomic_load(&titems_destroyed), atomic_load(&titems_made));
}

Test(config_rank, changing_only_a_rank_is_a_change)
{
	ureg_config *cfg = ct_config();
	struct ureg_config_plan plan = { 0 };
	static const char v3[] =
		"registries:\n"
		"  - name: tools\n"
		"    type: tool\n"
		"    entries:\n"
		"      - {key: search, kind: singleton, rank: 20, provider: test.item, params: {label: builtin}}\n"
		"      - {key: search, kind: singleton, rank: 10, provider: test.item, params: {label: fast}}\n"
		"      - {key: search, kind: factory, rank: -3, provider: test.item, params: {label: session}}\n"
		"      - {key: other, kind: singleton, provider: test.item, params: {label: other}}\n";

	ct_load(cfg, ranked_v1);
	cr_assert_eq(ureg_config_reload_buffer(cfg, v3, strlen(v3), "v3.yaml", 0, &plan, NULL), 0);
	cr_assert_eq(plan.count, 1);
	cr_assert_str_eq(plan.v[0].key, "search");
	ureg_config_plan_free(&plan);
	cr_assert_str_eq(ct_item(cfg, "tools", "search").label, "builtin");
	ureg_config_destroy(cfg);
}

static int run(char **out, const char *fmt, const char *a, const char *b)
{
	char *cmd, *buf = NULL;
	size_t len = 0, n;
	char chunk[4096];
	FILE *f, *m;
	int st;

	cr_assert(asprintf(&cmd, fmt, a, b) > 0);
	f = popen(cmd, "r");
	cr_assert_not_null(f);
	m = open_memstream(&buf, &len);
	while ((n = fread(chunk, 1, sizeof(chunk), f)) > 0)
		fwrite(chunk, 1, n, m);
	fclose(m);
	st = pclose(f);
	free(cmd);
	*out = buf;
	return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

Test(config_rank, ureg_inspect_shows_every_provider_of_a_key_with_its_rank)
{
	char tool[4096], fixture[4096], *out;

	snprintf(tool, sizeof(tool), "%s/ureg-inspect", getenv("UREG_TOOLS_DIR"));
	snprintf(fixture, sizeof(fixture), "%s/ranked.yaml", getenv("UREG_TEST_FIXTURES"));
	cr_assert_eq(run(&out, "'%s' --demo --no-instances '%s'", tool, fixture), 0, "%s", out);
	cr_assert(strstr(out, "rank 10\n"), "%s", out);
	cr_assert(strstr(out, "      rank 10          singleton -         (active)\n"), "%s", out);
	cr_assert(strstr(out, "      rank 0           singleton -\n"), "%s", out);
	cr_assert(strstr(out, "      rank -3          factory   context   (active)\n"), "%s", out);
	/* the key's source is its active provider's entry (line 10) */
	cr_assert(strstr(out, "ranked.yaml:10:9  gen 1  rank 10\n"), "%s", out);
	free(out);
	cr_assert_eq(run(&out, "'%s' --demo --json --no-instances '%s'", tool, fixture), 0, "%s", out);
	cr_assert(strstr(out, "\"key\": \"search\""), "%s", out);
	cr_assert(strstr(out, "\"rank\": 10, \"providers\": [{\"kind\": \"singleton\", \"rank\": 10, "
			      "\"active\": true, \"scope\": null}, {\"kind\": \"singleton\", \"rank\": 0, "
			      "\"active\": false, \"scope\": null}, {\"kind\": \"factory\", \"rank\": -3, "
			      "\"active\": true, \"scope\": \"context\"}]"), "%s", out);
	/* a plain key: rank 0, one provider */
	cr_assert(strstr(out, "\"rank\": 0, \"providers\": [{\"kind\": \"singleton\", \"rank\": 0, "
			      "\"active\": true, \"scope\": null}]"), "%s", out);
	free(out);
}
