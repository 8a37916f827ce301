/* SPDX-License-Identifier: MIT */
/*
 * Hot reload: the plan (added / changed / removed), dry runs, one
 * generation per registry, no torn state under 8 concurrent readers, old
 * items destroyed only after their grace period, and the inotify watcher.
 */
#include <pthread.h>
#include <time.h>
#include <urcu/urcu-memb.h>
#include "torn_readers.h"

static const char v1[] =
	"registries:\n"
	"  - name: tools\n"
	"    type: tool\n"
	"    entries:\n"
	"      - {key: keep, kind: singleton, provider: test.item, params: {label: k}}\n"
	"      - {key: change, kind: singleton, provider: test.item, params: {label: c1}}\n"
	"      - {key: drop, kind: factory, provider: test.item}\n"
	"  - name: gone\n"
	"    type: base\n"
	"    entries:\n"
	"      - {key: x, kind: singleton, provider: test.item}\n";

static const char v2[] =
	"registries:\n"
	"  - name: tools\n"
	"    type: tool\n"
	"    entries:\n"
	"      - {key: keep, kind: singleton, provider: test.item, params: {label: k}}\n"
	"      - {key: change, kind: singleton, provider: test.item, params: {label: c2}}\n"
	"      - {key: new, kind: factory, scope: context, provider: test.item}\n";

Test(config_reload, the_plan_lists_added_changed_and_removed_keys_sorted)
{
	ureg_config *cfg = ct_config();
	ct_load(cfg, v1);
	struct ureg_config_plan plan = { 0 };
	cr_assert_eq(ureg_config_reload_buffer(cfg, v2, strlen(v2), "v2.yaml",
					       UREG_CONFIG_DRY_RUN, &plan, NULL), 0);
	cr_assert_eq(plan.count, 4);
	cr_assert_eq(plan.v[0].op, UREG_PLAN_REMOVE);
	cr_assert_str_eq(plan.v[0].registry, "gone");
	cr_assert_str_eq(plan.v[0].key, "x");
	cr_assert_eq(plan.v[1].op, UREG_PLAN_CHANGE);
	cr_assert_str_eq(plan.v[1].key, "change");
	cr_assert_eq(plan.v[2].op, UREG_PLAN_REMOVE);
	cr_assert_str_eq(plan.v[2].key, "drop");
	cr_assert_eq(plan.v[3].op, UREG_PLAN_ADD);
	cr_assert_str_eq(plan.v[3].key, "new");
	ureg_config_plan_free(&plan);
	cr_assert_eq(plan.count, 0);
	ureg_config_destroy(cfg);
}

Test(config_reload, a_dry_run_changes_nothing)
{
	ureg_config *cfg = ct_config();
	ct_load(cfg, v1);
	ureg_registry *tools = ureg_config_registry(cfg, "tools");
	uint64_t gen = ureg_generation(tools);
	int made = atomic_load(&titems_made);
	cr_assert_eq(ureg_config_reload_buffer(cfg, v2, strlen(v2), "v2.yaml",
					       UREG_CONFIG_DRY_RUN, NULL, NULL), 0);
	cr_assert_eq(ureg_generation(tools), gen);
	cr_assert_eq(atomic_load(&titems_made), made);
	cr_assert_str_eq(ct_item(cfg, "tools", "change").label, "c1");
	cr_assert_eq(ureg_contains(tools, "drop"), 1);
	ureg_config_destroy(cfg);
}

Test(config_reload, a_reload_applies_the_diff_as_one_generation_and_keeps_unchanged_items)
{
	ureg_config *cfg = ct_config();
	ct_load(cfg, v1);
	ureg_registry *tools = ureg_config_registry(cfg, "tools");
	ureg_registry *gone = ureg_config_registry(cfg, "gone");
	void *keep_before, *keep_after;
	ureg_read_lock();
	cr_assert_eq(ureg_lookup(tools, "keep", &keep_before), 0);
	ureg_read_unlock();
	uint64_t gen = ureg_generation(tools);

	struct ureg_config_plan plan = { 0 };
	cr_assert_eq(ureg_config_reload_buffer(cfg, v2, strlen(v2), "v2.yaml", 0,
					       &plan, NULL), 0);
	cr_assert_eq(plan.count, 4);
	ureg_config_plan_free(&plan);
	cr_assert_eq(ureg_generation(tools), gen + 1, "one generation");
	cr_assert_str_eq(ct_item(cfg, "tools", "change").label, "c2");
	cr_assert_eq(ureg_contains(tools, "drop"), 0);
	cr_assert_eq(ureg_contains(tools, "new"), 1);
	ureg_read_lock();
	cr_assert_eq(ureg_lookup(tools, "keep", &keep_after), 0);
	struct ureg_entry_info in;
	cr_assert_eq(ureg_entry_info(tools, "keep", &in), 0);
	cr_assert_eq(in.generation, gen, "unchanged entries keep their generation");
	cr_assert_eq(ureg_entry_info(tools, "change", &in), 0);
	cr_assert_eq(in.generation, gen + 1);
	ureg_read_unlock();
	cr_assert_eq(keep_before, keep_after, "unchanged items are not rebuilt");
	cr_assert_eq(ureg_count(gone), 0, "a registry dropped from the file is emptied");
	cr_assert_eq(ureg_config_registry(cfg, "gone"), gone);
	ureg_config_destroy(cfg);
	cr_assert_eq(atomic_load(&titems_made), atomic_load(&titems_destroyed));
}

Test(config_reload, a_replaced_item_pinned_by_a_reference_lives_until_released)
{
	ureg_config *cfg = ct_config();
	ct_load(cfg, v1);
	ureg_ref *ref;
	cr_assert_eq(ureg_acquire(ureg_config_registry(cfg, "tools"), "change", &ref), 0);
	ct_load(cfg, v2);
	ureg_synchronize();
	urcu_memb_barrier(); /* the old table's reference is dropped */
	struct titem *old = ureg_ref_item(ref);
	cr_assert_eq(old->magic, TITEM_MAGIC);
	cr_assert_str_eq(old->label, "c1");
	int destroyed = atomic_load(&titems_destroyed);
	ureg_ref_release(ref);
	cr_assert_eq(atomic_load(&titems_destroyed), destroyed + 1);
	ureg_config_destroy(cfg);
}

/* ---- 8 readers, two keys changed together, never torn ---- */

#define RELOADS 40

Test(config_reload, readers_never_see_a_reload_half_applied)
{
	struct torn t;
	ureg_config *cfg = ct_config();
	char *y = torn_doc(0);
	ct_load(cfg, y);
	free(y);
	torn_start(&t, ureg_config_registry(cfg, "pair"), false);
	for (int i = 1; i <= RELOADS; i++) {
		torn_wait_progress(&t); /* each reload overlaps reads */
		y = torn_doc(i);
		ct_load(cfg, y);
		free(y);
	}
	torn_finish(&t, RELOADS);
	cr_assert_eq(ct_item(cfg, "pair", "left").tag, RELOADS);
	cr_assert_eq(ureg_generation(t.reg), RELOADS + 1);
	ureg_config_destroy(cfg);
	cr_assert_eq(atomic_load(&titems_made), atomic_load(&titems_destroyed));
}

/* ---- the inotify watcher ---- */

static pthread_mutex_t w_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t w_cond = PTHREAD_COND_INITIALIZER;
static int w_calls, w_last_rc;
static size_t w_last_errors;

static void on_reload(ureg_config *cfg, int rc,
		      const struct ureg_config_errors *errs, void *arg)
{
	pthread_mutex_lock(&w_lock);
	w_calls++;
	w_last_rc = rc;
	w_last_errors = errs->count;
	pthread_cond_broadcast(&w_cond);
	pthread_mutex_unlock(&w_lock);
}

static void wait_calls(int n)
{
	struct timespec dl;
	clock_gettime(CLOCK_REALTIME, &dl);
	dl.tv_sec += 10;
	pthread_mutex_lock(&w_lock);
	while (w_calls < n)
		if (pthread_cond_timedwait(&w_cond, &w_lock, &dl)) {
			pthread_mutex_unlock(&w_lock);
			cr_assert_fail("watcher did not reload within 10 s");
		}
	pthread_mutex_unlock(&w_lock);
}

Test(config_reload, the_watcher_reloads_a_replaced_file_and_reports_errors)
{
	char *dir = ct_tempdir();
	char *path = ct_write_temp(dir, "w.yaml", v1);
	ureg_config *cfg = ct_config();
	cr_assert_eq(ureg_config_load(cfg, path, NULL), 0);
	cr_assert_eq(ureg_config_watch_start(cfg, path, on_reload, NULL), 0);
	cr_assert_eq(ureg_config_watch_start(cfg, path, on_reload, NULL), -EBUSY);
	free(ct_write_temp(dir, "unrelated.yaml", "x: 1\n"));
	free(ct_write_temp(dir, "w.yaml", v2));
	wait_calls(1);
	cr_assert_eq(w_last_rc, 0);
	cr_assert_str_eq(ct_item(cfg, "tools", "change").label, "c2");
	free(ct_write_temp(dir, "w.yaml", "registries: 5\n"));
	wait_calls(2);
	cr_assert_eq(w_last_rc, -EBADMSG);
	cr_assert_eq(w_last_errors, 1);
	cr_assert_str_eq(ct_item(cfg, "tools", "change").label, "c2");
	ureg_config_watch_stop(cfg);
	ureg_config_destroy(cfg);
	free(path);
	ct_rmdir(dir);
}
