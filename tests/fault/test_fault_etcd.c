/* SPDX-License-Identifier: MIT */
/*
 * The etcd source (issue 13) out of memory: starting a source, and the
 * one-shot get and put, fail the 1st, 2nd, ... allocation of libureg and
 * its layers until the call gets past every one; each failure returns
 * -ENOMEM and leaves nothing behind (no source, no thread, no leak:
 * LeakSanitizer checks every walk).  No etcd is needed: the endpoints
 * refuse connections, which the source retries and the one-shot calls
 * report.  Allocations of libcurl and jansson are theirs, not walked.
 */
#include <ureg/config_etcd.h>
#include <ureg/fault.h>

#include "../config/config_test.h"

#define WALK_MAX 2000
#define DEAD "http://127.0.0.1:1,http://127.0.0.1:2"

TestSuite(fault_etcd, .timeout = 280);

Test(fault_etcd, a_source_start_that_runs_out_of_memory_starts_nothing)
{
	struct ureg_config_etcd_opts o = { .endpoints = DEAD, .prefix = "/p/", .quiet = true,
					   .backoff_min_ms = 1, .backoff_max_ms = 2 };
	struct ureg_config_etcd_stats st;
	long n;

	for (n = 1; n < WALK_MAX; n++) {
		ureg_config *cfg = ct_config();
		cr_assert_eq(ureg_fault_inject(n), 0);
		int rc = ureg_config_etcd_start(cfg, &o);
		ureg_fault_inject(0);
		if (rc) {
			cr_assert_eq(rc, -ENOMEM, "allocation %ld: %s", n, ureg_strerror(rc));
			cr_assert_eq(ureg_config_etcd_stats(cfg, &st), -EINVAL, "no source is left");
			ureg_config_destroy(cfg);
			continue;
		}
		cr_assert_eq(ureg_config_etcd_stats(cfg, &st), 0);
		ureg_config_destroy(cfg); /* stops the retrying thread */
		break;
	}
	cr_assert_lt(n, WALK_MAX);
	cr_assert_gt(n, 1, "start allocates");
}

Test(fault_etcd, one_shot_get_and_put_that_run_out_of_memory_return_enomem)
{
	char *text;
	size_t len;
	uint64_t rev;
	long n;

	for (n = 1; n < WALK_MAX; n++) {
		cr_assert_eq(ureg_fault_inject(n), 0);
		int rc = ureg_config_etcd_get(DEAD, "/p/", &text, &len, &rev, 50);
		ureg_fault_inject(0);
		cr_assert_null(text);
		if (rc == -ENOMEM)
			continue;
		cr_assert_eq(rc, -ECONNREFUSED, "allocation %ld: %s", n, ureg_last_error());
		break;
	}
	cr_assert_lt(n, WALK_MAX);
	for (n = 1; n < WALK_MAX; n++) {
		cr_assert_eq(ureg_fault_inject(n), 0);
		int rc = ureg_config_etcd_put(DEAD, "/p/", "registries: []\n", 15, 0, &rev, 50);
		ureg_fault_inject(0);
		if (rc == -ENOMEM)
			continue;
		cr_assert_eq(rc, -ECONNREFUSED, "allocation %ld: %s", n, ureg_last_error());
		break;
	}
	cr_assert_lt(n, WALK_MAX);
}
