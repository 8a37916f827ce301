/* SPDX-License-Identifier: MIT */
/*
 * Allocation failure at every step of the config layer: for a first load,
 * a reload with a diff (added, changed, removed keys; a new and a dropped
 * registry), a dry-run plan, ureg_report and the watcher, fail the 1st,
 * 2nd, ... allocation libureg makes (ureg_fault_inject(N)) until the call
 * succeeds without reaching the Nth one.  After each failure: -ENOMEM came
 * back, the process's registries are exactly as before (the full
 * ureg_report, every singleton pointer and label, every context-scope
 * instance), every object the failed call built was destroyed and no live
 * one was.  Loads and reloads are all or nothing: a call that reached its
 * Nth allocation cannot succeed.
 * LeakSanitizer in the ASan build proves that no failure path leaks.
 *
 * Needs a library built with -Dfault_injection=true.
 */
#include <urcu/urcu-memb.h>
#include <ureg/fault.h>

#include "../config/config_test.h"

#define WALK_MAX 20000 /* no call makes this many allocations */

static const char v1[] =
	"registries:\n"
	"  - name: tools\n"
	"    type: tool\n"
	"    required: [keep, change]\n"
	"    entries:\n"
	"      - {key: keep, kind: singleton, provider: test.item, params: {label: k, tag: 1}}\n"
	"      - {key: change, kind: singleton, provider: test.item, params: {label: c1}}\n"
	"      - {key: drop, kind: factory, scope: context, provider: test.item, params: {label: d}}\n"
	"  - name: agents\n"
	"    type: agent\n"
	"    entries:\n"
	"      - {key: planner, kind: factory, scope: context, provider: test.item, params: {label: p1}}\n"
	"      - {key: boss, kind: singleton, provider: test.item, params: {label: b}}\n"
	"  - name: gone\n"
	"    type: base\n"
	"    entries:\n"
	"      - {key: x, kind: singleton, provider: test.item}\n";

static const char v2[] =
	"registries:\n"
	"  - name: tools\n"
	"    type: tool\n"
	"    required: [keep, new]\n"
	"    entries:\n"
	"      - {key: keep, kind: singleton, provider: test.item, params: {label: k, tag: 1}}\n"
	"      - {key: change, kind: singleton, provider: test.item, params: {label: c2}}\n"
	"      - {key: new, kind: factory, provider: test.item, params: {label: n}}\n"
	"  - name: agents\n"
	"    type: agent\n"
	"    entries:\n"
	"      - {key: planner, kind: factory, scope: context, provider: test.item, params: {label: p2}}\n"
	"      - {key: boss, kind: singleton, provider: test.item, params: {label: b}}\n"
	"  - name: extra\n"
	"    type: tool\n"
	"    entries:\n"
	"      - {key: e, kind: singleton, provider: test.item, params: {label: e}}\n";

/* Every pending call_rcu has run: no destructor is still on its way. */
static void quiesce(void)
{
	ureg_synchronize();
	urcu_memb_barrier();
}

static ureg_ctx *user;

/*
 * Everything a reader or an operator can observe, as text: the JSON report
 * of the whole process (registries, entries with generation, provider and
 * source, contexts), then per config registry each key with its singleton
 * pointer and contents, and the instance a context-scope factory gives
 * @user.  Items are read inside a read section: a destroyed one trips ASan.
 * Call with injection off.
 */
static char *state(ureg_config *cfg)
{
	char *buf = NULL, **names, **keys;
	size_t len = 0, n, nk;
	FILE *f = open_memstream(&buf, &len);

	cr_assert_not_null(f);
	cr_assert_eq(ureg_config_registry_names(cfg, &names, &n), 0);
	for (size_t i = 0; i < n; i++) {
		ureg_registry *reg = ureg_config_registry(cfg, names[i]);
		cr_assert_not_null(reg);
		cr_assert_eq(ureg_keys(reg, &keys, &nk), 0);
		fprintf(f, "registry %s generation %llu count %zu\n", names[i],
			(unsigned long long)ureg_generation(reg), ureg_count(reg));
		for (size_t k = 0; k < nk; k++) {
			/* sorted output without qsort: print in key order */
			size_t m = k;
			for (size_t j = k + 1; j < nk; j++)
				if (strcmp(keys[j], keys[m]) < 0)
					m = j;
			char *tmp = keys[k];
			keys[k] = keys[m];
			keys[m] = tmp;
			struct ureg_entry_info in;
			void *p = NULL;
			ureg_read_lock();
			cr_assert_eq(ureg_entry_info(reg, keys[k], &in), 0);
			if (in.has_singleton) {
				cr_assert_eq(ureg_lookup(reg, keys[k], &p), 0);
				struct titem *t = p;
				cr_assert_eq(t->magic, TITEM_MAGIC, "%s/%s destroyed while live",
					     names[i], keys[k]);
				fprintf(f, "  %s singleton %p %s %ld\n", keys[k], p,
					t->label, t->tag);
			}
			if (in.has_factory && in.scope == UREG_SCOPE_CONTEXT) {
				cr_assert_eq(ureg_get(reg, keys[k], user, &p), 0);
				fprintf(f, "  %s instance %p %s\n", keys[k], p,
					((struct titem *)p)->label);
			} else if (in.has_factory) {
				fprintf(f, "  %s transient factory\n", keys[k]);
			}
			ureg_read_unlock();
		}
		ureg_keys_free(keys);
	}
	ureg_keys_free(names);
	/* last: the report also shows the instances the gets made */
	cr_assert_eq(ureg_report(f, UREG_REPORT_JSON), 0);
	cr_assert_eq(fclose(f), 0);
	return buf;
}

struct attempt {
	int rc;
	long seen; /* allocations the call made (including the failed one) */
};

typedef int (*config_op)(ureg_config *cfg, void *arg);

/* Run @op with its @nth allocation failing; check the failure contract. */
static struct attempt attempt(ureg_config *cfg, long nth, config_op op,
			      void *arg)
{
	struct attempt a;

	char *before = state(cfg);
	quiesce();
	int made = atomic_load(&titems_made);
	int destroyed = atomic_load(&titems_destroyed);
	cr_assert_eq(ureg_fault_inject(nth), 0);
	a.rc = op(cfg, arg);
	a.seen = ureg_fault_allocations();
	cr_assert_eq(ureg_fault_inject(0), 0);
	quiesce();
	if (a.rc) {
		cr_assert_eq(a.rc, -ENOMEM, "N=%ld: %s (%s)", nth,
			     ureg_strerror(a.rc), ureg_last_error());
		cr_assert_geq(a.seen, nth, "N=%ld: failed before the fault", nth);
		/* what the failed call built it destroyed; nothing else */
		cr_assert_eq(atomic_load(&titems_destroyed) - destroyed,
			     atomic_load(&titems_made) - made,
			     "N=%ld: made %d, destroyed %d", nth,
			     atomic_load(&titems_made) - made,
			     atomic_load(&titems_destroyed) - destroyed);
		char *after = state(cfg);
		cr_assert_str_eq(after, before, "N=%ld: the live state changed", nth);
		free(after);
	}
	free(before);
	return a;
}

static int op_reload(ureg_config *cfg, void *arg)
{
	const char *text = arg;
	struct ureg_config_errors errs = { 0 };
	int rc = ureg_config_reload_buffer(cfg, text, strlen(text),
					   "conf.d/app.yaml", 0, NULL, &errs);
	/* a failed load says why, when the error list itself could be kept */
	if (rc)
		for (size_t i = 0; i < errs.count; i++)
			cr_assert_not_null(errs.v[i].reason);
	ureg_config_errors_free(&errs);
	return rc;
}

/* ureg_config_load from a file: also walks reading it. */
static int op_load_file(ureg_config *cfg, void *arg)
{
	struct ureg_config_errors errs = { 0 };
	int rc = ureg_config_load(cfg, arg, &errs);
	ureg_config_errors_free(&errs);
	return rc;
}

static void load_nofault(ureg_config *cfg, const char *text)
{
	cr_assert_eq(op_reload(cfg, (void *)text), 0, "%s", ureg_last_error());
}

static void check_v1(ureg_config *cfg)
{
	cr_assert_str_eq(ct_item(cfg, "tools", "keep").label, "k");
	cr_assert_eq(ct_item(cfg, "tools", "keep").tag, 1);
	cr_assert_str_eq(ct_item(cfg, "tools", "change").label, "c1");
	cr_assert_str_eq(ct_item(cfg, "agents", "boss").label, "b");
	cr_assert_eq(ureg_contains(ureg_config_registry(cfg, "tools"), "drop"), 1);
	cr_assert_eq(ureg_contains(ureg_config_registry(cfg, "agents"), "planner"), 1);
	cr_assert_eq(ureg_count(ureg_config_registry(cfg, "gone")), 1);
}

static void check_v2(ureg_config *cfg, void *keep_before)
{
	void *keep;
	ureg_registry *tools = ureg_config_registry(cfg, "tools");
	cr_assert_str_eq(ct_item(cfg, "tools", "change").label, "c2");
	cr_assert_str_eq(ct_item(cfg, "extra", "e").label, "e");
	cr_assert_eq(ureg_contains(tools, "drop"), 0);
	cr_assert_eq(ureg_contains(tools, "new"), 1);
	cr_assert_eq(ureg_count(ureg_config_registry(cfg, "gone")), 0);
	ureg_read_lock();
	cr_assert_eq(ureg_lookup(tools, "keep", &keep), 0);
	ureg_read_unlock();
	cr_assert_eq(keep, keep_before, "an unchanged entry was rebuilt");
	void *inst;
	ureg_read_lock();
	int rc = ureg_get(ureg_config_registry(cfg, "agents"), "planner", user, &inst);
	struct titem t = rc ? (struct titem){ 0 } : *(struct titem *)inst;
	ureg_read_unlock();
	cr_assert_eq(rc, 0);
	cr_assert_str_eq(t.label, "p2");
}

static void *lookup_keep(ureg_config *cfg)
{
	void *p;
	ureg_read_lock();
	cr_assert_eq(ureg_lookup(ureg_config_registry(cfg, "tools"), "keep", &p), 0);
	ureg_read_unlock();
	return p;
}

static void setup(void)
{
	cr_assert_eq(ureg_ctx_new("alice", UREG_CTX_SHARED, &user), 0);
}

static void teardown(void)
{
	ureg_ctx_destroy(user);
	quiesce();
}

TestSuite(fault_config, .init = setup, .fini = teardown, .timeout = 280);

/* After a failed first load (fault at allocation @n): no registry at all. */
static void expect_no_registry(ureg_config *cfg, long n)
{
	char **names;
	size_t nn;

	cr_assert_eq(ureg_config_registry_names(cfg, &names, &nn), 0);
	cr_assert_eq(nn, 0, "N=%ld: a registry was left behind", n);
	ureg_keys_free(names);
}

Test(fault_config, a_first_load_that_runs_out_of_memory_creates_nothing)
{
	long n, failed = 0, survived = 0;
	char *dir = ct_tempdir();
	char *path = ct_write_temp(dir, "app.yaml", v1);

	for (n = 1; n < WALK_MAX; n++) {
		ureg_config *cfg = ct_config();
		struct attempt a = attempt(cfg, n, op_load_file, path);
		if (a.rc == 0) {
			check_v1(cfg); /* all of it, even when the fault was hit */
			survived += a.seen >= n;
		} else {
			failed++;
			expect_no_registry(cfg, n);
		}
		ureg_config_destroy(cfg);
		if (a.rc == 0 && a.seen < n)
			break;
	}
	cr_assert_lt(n, WALK_MAX);
	cr_assert_gt(n, 20, "the walk covered only %ld allocations", n);
	/* the 3 registries commit together: every fault fails the load */
	cr_assert_eq(survived, 0, "%ld loads succeeded although a fault hit them", survived);
	cr_assert_eq(failed, n - 1);
	free(path);
	ct_rmdir(dir);
}

Test(fault_config, a_reload_that_runs_out_of_memory_leaves_every_registry_as_it_was)
{
	ureg_config *cfg = ct_config();
	long n, survived = 0, failed = 0;

	load_nofault(cfg, v1);
	for (n = 1; n < WALK_MAX; n++) {
		void *keep = lookup_keep(cfg);
		struct attempt a = attempt(cfg, n, op_reload, (void *)v2);
		if (a.rc) {
			check_v1(cfg);
			failed++;
			continue;
		}
		/* succeeded: all of it, even when the fault was hit */
		check_v2(cfg, keep);
		if (a.seen < n)
			break;
		survived++;
		load_nofault(cfg, v1); /* back to the old state for the next N */
		check_v1(cfg);
	}
	cr_assert_lt(n, WALK_MAX);
	cr_assert_gt(n, 20, "the walk covered only %ld allocations", n);
	/* the 4 registries commit together: every fault fails the reload */
	cr_assert_eq(survived, 0, "%ld reloads succeeded although a fault hit them", survived);
	cr_assert_eq(failed, n - 1);
	cr_log_info("reload walk: %ld allocations, each failed cleanly", n - 1);
	ureg_config_destroy(cfg);
}

static int op_dry_run(ureg_config *cfg, void *arg)
{
	struct ureg_config_plan *plan = arg;
	int rc = ureg_config_reload_buffer(cfg, v2, strlen(v2), "v2.yaml",
					   UREG_CONFIG_DRY_RUN, plan, NULL);
	if (rc) {
		cr_assert_eq(plan->count, 0, "a failed dry run returned a partial plan");
		cr_assert_null(plan->v);
	}
	return rc;
}

Test(fault_config, a_dry_run_that_runs_out_of_memory_returns_no_plan_and_changes_nothing)
{
	ureg_config *cfg = ct_config();
	long n;

	load_nofault(cfg, v1);
	for (n = 1; n < WALK_MAX; n++) {
		struct ureg_config_plan plan = { 0 };
		struct attempt a = attempt(cfg, n, op_dry_run, &plan);
		check_v1(cfg);
		if (a.rc == 0) {
			/* ~tools/change, +tools/new, -tools/drop, ~agents/planner,
			 * -gone/x, +extra/e */
			cr_assert_eq(plan.count, 6);
			cr_assert_eq(plan.v[0].op, UREG_PLAN_CHANGE);
			cr_assert_str_eq(plan.v[0].registry, "agents");
		}
		ureg_config_plan_free(&plan);
		if (a.rc == 0 && a.seen < n)
			break;
	}
	cr_assert_lt(n, WALK_MAX);
	cr_assert_gt(n, 10, "the walk covered only %ld allocations", n);
	ureg_config_destroy(cfg);
}

struct report_arg {
	unsigned flags;
	char *out;
};

static int op_report(ureg_config *cfg, void *arg)
{
	struct report_arg *r = arg;
	size_t len;
	FILE *f = open_memstream(&r->out, &len);

	(void)cfg;
	cr_assert_not_null(f);
	int rc = ureg_report(f, r->flags);
	cr_assert_eq(fclose(f), 0);
	return rc;
}

static void report_walk(unsigned flags)
{
	ureg_config *cfg = ct_config();
	long n;

	load_nofault(cfg, v1);
	free(state(cfg)); /* makes the context instances state() shows */
	struct report_arg ref = { flags, NULL };
	cr_assert_eq(op_report(cfg, &ref), 0);
	for (n = 1; n < WALK_MAX; n++) {
		struct report_arg r = { flags, NULL };
		struct attempt a = attempt(cfg, n, op_report, &r);
		if (a.rc == 0)
			cr_assert_str_eq(r.out, ref.out, "N=%ld: a different report", n);
		free(r.out);
		if (a.rc == 0 && a.seen < n)
			break;
		cr_assert_neq(a.rc, 0, "N=%ld: the fault was hit but the report succeeded", n);
	}
	cr_assert_lt(n, WALK_MAX);
	cr_assert_gt(n, 3, "the walk covered only %ld allocations", n);
	free(ref.out);
	ureg_config_destroy(cfg);
}

Test(fault_config, a_text_report_that_runs_out_of_memory_returns_enomem)
{
	report_walk(UREG_REPORT_TEXT);
}

Test(fault_config, a_json_report_that_runs_out_of_memory_returns_enomem)
{
	report_walk(UREG_REPORT_JSON);
}

static int op_watch(ureg_config *cfg, void *arg)
{
	return ureg_config_watch_start(cfg, arg, NULL, NULL);
}

Test(fault_config, a_watcher_start_that_runs_out_of_memory_leaves_no_watcher)
{
	ureg_config *cfg = ct_config();
	char *dir = ct_tempdir();
	char *path = ct_write_temp(dir, "app.yaml", v1);
	long n;

	load_nofault(cfg, v1);
	for (n = 1; n < WALK_MAX; n++) {
		struct attempt a = attempt(cfg, n, op_watch, path);
		if (a.rc == 0) {
			/* exactly one watcher runs */
			cr_assert_eq(ureg_config_watch_start(cfg, path, NULL, NULL), -EBUSY);
			ureg_config_watch_stop(cfg);
			if (a.seen < n)
				break;
		}
		/* a failed start left nothing to stop: a new start works */
		cr_assert_eq(ureg_config_watch_start(cfg, path, NULL, NULL), 0);
		ureg_config_watch_stop(cfg);
	}
	cr_assert_lt(n, WALK_MAX);
	cr_assert_gt(n, 2);
	ureg_config_destroy(cfg);
	free(path);
	ct_rmdir(dir);
}

Test(fault_config, registering_types_and_providers_out_of_memory_returns_enomem)
{
	static const struct ureg_provider prov = { .create = titem_create, .destroy = titem_destroy };
	ureg_config *cfg;
	long n;

	for (n = 1; n < WALK_MAX; n++) {
		cr_assert_eq(ureg_fault_inject(n), 0);
		int rc = ureg_config_new(&cfg);
		if (!rc) {
			rc = ureg_config_type_register(cfg, &ct_tool);
			if (!rc)
				rc = ureg_config_provider_register(cfg, "test.item", &prov);
			long seen = ureg_fault_allocations();
			cr_assert_eq(ureg_fault_inject(0), 0);
			if (!rc) {
				ureg_config_destroy(cfg);
				if (seen < n)
					break;
				continue;
			}
			cr_assert_eq(rc, -ENOMEM, "N=%ld: %s", n, ureg_strerror(rc));
			/* nothing half-registered: a retry now succeeds */
			rc = ureg_config_type_register(cfg, &ct_tool);
			cr_assert(rc == 0 || rc == -EEXIST);
			rc = ureg_config_provider_register(cfg, "test.item", &prov);
			cr_assert(rc == 0 || rc == -EEXIST);
			ct_load(cfg, "registries:\n  - {name: t, type: tool, entries: "
				"[{key: a, kind: singleton, provider: test.item}]}\n");
			ureg_config_destroy(cfg);
		} else {
			cr_assert_eq(ureg_fault_inject(0), 0);
			cr_assert_eq(rc, -ENOMEM);
		}
	}
	cr_assert_lt(n, WALK_MAX);
}

/* The document model and the maps: an anchor and its alias, a mapping
 * large enough for the duplicate map (> 16 pairs), ranked entries of one
 * key (a key chain), a second registry. */
static char *v_model(void)
{
	char *t = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&t, &len);

	cr_assert_not_null(f);
	fprintf(f, "registries:\n  - name: model\n    type: tool\n    entries:\n"
		   "      - {key: a, kind: singleton, provider: test.item, params: {label: &l shared}}\n"
		   "      - {key: b, kind: singleton, provider: test.item, params: {label: *l}}\n"
		   "      - {key: r, kind: singleton, rank: 5, provider: test.item, params: {label: r5}}\n"
		   "      - {key: r, kind: singleton, rank: 1, provider: test.item, params: {label: r1}}\n"
		   "      - key: wide\n        kind: singleton\n        provider: test.item\n"
		   "        params:\n          label: w\n");
	for (int i = 0; i < 20; i++)
		fprintf(f, "          p%d: v%d\n", i, i);
	fprintf(f, "  - name: other\n    type: agent\n    entries:\n"
		   "      - {key: o, kind: factory, scope: context, provider: test.item}\n");
	cr_assert_eq(fclose(f), 0);
	return t;
}

Test(fault_config, a_load_with_aliases_large_mappings_and_ranked_keys_out_of_memory_creates_nothing)
{
	char *text = v_model();
	long n, failed = 0;

	for (n = 1; n < WALK_MAX; n++) {
		ureg_config *cfg = ct_config();
		struct attempt a = attempt(cfg, n, op_reload, text);
		if (a.rc == 0) {
			cr_assert_str_eq(ct_item(cfg, "model", "b").label, "shared");
			cr_assert_str_eq(ct_item(cfg, "model", "r").label, "r5");
			cr_assert_str_eq(ct_item(cfg, "model", "wide").label, "w");
		} else {
			failed++;
			expect_no_registry(cfg, n);
		}
		ureg_config_destroy(cfg);
		if (a.rc == 0) {
			cr_assert_lt(a.seen, n, "N=%ld: a load succeeded although a fault hit it", n);
			break;
		}
	}
	cr_assert_lt(n, WALK_MAX);
	cr_assert_gt(n, 20, "the walk covered only %ld allocations", n);
	cr_assert_eq(failed, n - 1);
	free(text);
}
