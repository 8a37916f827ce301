/* SPDX-License-Identifier: MIT */
/*
 * The jemalloc arena layer under the hostile workload and at its limits
 * (lib/arena_pool.c, include/ureg/ctx.h):
 *  - dedicated contexts cycling with blocks of 16 B..4 MiB next to shared
 *    contexts and plain malloc traffic never corrupt or crash (the ureg of
 *    2026-11-26 crashed here in 10 of 10 runs of 2 s);
 *  - the shared pool is reserved before any dedicated arena, so shared
 *    contexts never fail for lack of arenas;
 *  - the dedicated cap gives a documented -EAGAIN and nothing else;
 *  - a parked dedicated arena gives its pages back.
 * Every test runs in its own process (Criterion), so caps and pool sizes
 * set here start from the defaults.
 */
#include <criterion/criterion.h>

#include <jemalloc/jemalloc.h>
#include <stdio.h>
#include <unistd.h>

#include "core_test.h"
#include "arena_churn.h"

#ifdef __SANITIZE_ADDRESS__
#define CHURN_SECONDS 4.0
#else
#define CHURN_SECONDS 3.0
#endif

Test(arenas, dedicated_contexts_cycling_beside_shared_and_malloc_traffic_never_corrupt,
     .timeout = 60)
{
	struct arena_churn_result r;

	cr_assert_eq(arena_churn_run(4, 4, 2, CHURN_SECONDS, 1, &r), 0);
	cr_assert_eq(r.bad_patterns, 0, "%ld blocks changed under their owner", r.bad_patterns);
	cr_assert_eq(r.failures, 0, "%ld unexpected errors", r.failures);
	cr_assert_eq(r.eagain, 0);
	cr_assert_gt(r.dedicated_cycles, 20, "only %ld dedicated cycles", r.dedicated_cycles);
	cr_assert_gt(r.shared_cycles, 100);
	cr_assert_gt(r.malloc_ops, 100);
}

Test(arenas, the_dedicated_cap_refuses_with_eagain_and_changes_nothing)
{
	ureg_ctx *d[3], *x = NULL;
	struct ureg_arena_stats st;

	cr_assert_eq(ureg_arena_dedicated_max(3), 0);
	for (int i = 0; i < 3; i++)
		cr_assert_eq(ureg_ctx_new("d", UREG_CTX_DEDICATED, &d[i]), 0);
	cr_assert_eq(ureg_ctx_new("one-too-many", UREG_CTX_DEDICATED, &x), -EAGAIN);
	cr_assert_null(x);
	cr_assert(strstr(ureg_last_error(), "dedicated"), "%s", ureg_last_error());
	cr_assert_eq(ureg_arena_stats(&st), 0);
	cr_assert_eq(st.dedicated_made, 3);
	cr_assert_eq(st.dedicated_parked, 0);
	cr_assert_eq(st.dedicated_max, 3);
	/* a cap below what exists is refused; shared contexts are unaffected */
	cr_assert_eq(ureg_arena_dedicated_max(2), -EBUSY);
	cr_assert_eq(ureg_arena_dedicated_max(4097), -EINVAL);
	cr_assert_eq(ureg_ctx_new("shared", UREG_CTX_SHARED, &x), 0);
	ureg_ctx_destroy(x);
	/* a destroyed one is parked and reused: the cap counts arenas */
	ureg_ctx_destroy(d[1]);
	cr_assert_eq(ureg_arena_stats(&st), 0);
	cr_assert_eq(st.dedicated_parked, 1);
	cr_assert_eq(ureg_ctx_new("again", UREG_CTX_DEDICATED, &d[1]), 0);
	cr_assert_eq(ureg_arena_stats(&st), 0);
	cr_assert_eq(st.dedicated_made, 3);
	cr_assert_eq(st.dedicated_parked, 0);
	for (int i = 0; i < 3; i++)
		ureg_ctx_destroy(d[i]);
}

Test(arenas, shared_contexts_keep_working_when_jemalloc_has_no_arena_left,
     .timeout = 60)
{
	enum { MAX = 5000 };
	unsigned *mine = calloc(MAX, sizeof(*mine));
	unsigned n = 0, ind;
	size_t sz = sizeof(ind);
	ureg_ctx *d = NULL, *s[64];
	struct ureg_arena_stats st;

	cr_assert_not_null(mine);
	/* the first context creates the whole shared pool */
	cr_assert_eq(ureg_ctx_new("first", UREG_CTX_SHARED, &s[0]), 0);
	cr_assert_eq(ureg_arena_stats(&st), 0);
	cr_assert_eq(st.pool_arenas, st.pool_size);
	/* then something else in the process takes every arena left */
	while (n < MAX && mallctl("arenas.create", &ind, &sz, NULL, 0) == 0)
		mine[n++] = ind;
	cr_assert_lt(n, MAX, "jemalloc never ran out of arenas");
	/* dedicated contexts fail cleanly, shared ones do not fail at all */
	cr_assert_eq(ureg_ctx_new("dedicated", UREG_CTX_DEDICATED, &d), -EAGAIN);
	cr_assert_null(d);
	for (int i = 1; i < 64; i++) {
		cr_assert_eq(ureg_ctx_new("shared", UREG_CTX_SHARED, &s[i]), 0);
		cr_assert_not_null(ureg_ctx_alloc(s[i], 1000));
	}
	for (int i = 0; i < 64; i++)
		ureg_ctx_destroy(s[i]);
	free(mine);
}

static long rss_kib(void)
{
	long pages = 0, resident = 0;
	FILE *f = fopen("/proc/self/statm", "r");

	cr_assert_not_null(f);
	cr_assert_eq(fscanf(f, "%ld %ld", &pages, &resident), 2);
	fclose(f);
	return resident * (sysconf(_SC_PAGESIZE) / 1024);
}

Test(arenas, a_parked_dedicated_arena_gives_its_pages_back)
{
	enum { N = 8, MIB_EACH = 16 };
	ureg_ctx *d[N];
	long before, filled, parked;

	/* warm: the pool and jemalloc's own metadata exist before we measure */
	cr_assert_eq(ureg_ctx_new("warm", UREG_CTX_SHARED, &d[0]), 0);
	ureg_ctx_destroy(d[0]);
	before = rss_kib();
	for (int i = 0; i < N; i++) {
		cr_assert_eq(ureg_ctx_new("tenant", UREG_CTX_DEDICATED, &d[i]), 0);
		for (int j = 0; j < MIB_EACH * 4; j++) {
			char *p = ureg_ctx_alloc(d[i], 256 << 10);
			cr_assert_not_null(p);
			memset(p, 1, 256 << 10);
		}
	}
	filled = rss_kib();
	for (int i = 0; i < N; i++)
		ureg_ctx_destroy(d[i]);
	parked = rss_kib();
	cr_assert_geq(filled - before, N * MIB_EACH * 1024 * 9 / 10,
		      "filling did not show in RSS: %ld -> %ld KiB", before, filled);
	/* what stays is the arenas' own metadata (~100 KiB each), not pages */
	cr_assert_leq(parked - before, N * 256,
		      "parked arenas hold %ld KiB (before %ld, filled %ld)",
		      parked - before, before, filled);
}
