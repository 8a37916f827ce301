/* SPDX-License-Identifier: MIT */
/*
 * lib/config/map.c, the config layer's one private hash map, compiled into
 * this test: string and pointer keys, duplicates refused, growth, and
 * backward-shift deletion keeping every other key reachable (checked
 * against a plain array after each of many random deletions).
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>

#include "config/map.h"

Test(config_map, string_keys_are_found_by_content_and_a_duplicate_is_refused)
{
	struct cfg_map m = { 0 };
	char a[] = "planner", b[] = "planner";

	cr_assert_null(cfg_map_gets(&m, "planner"), "an empty map finds nothing");
	cr_assert_eq(cfg_map_puts(&m, a, (void *)1), 0);
	cr_assert_eq(cfg_map_gets(&m, b), (void *)1, "found through another copy");
	cr_assert_eq(cfg_map_puts(&m, b, (void *)2), -EEXIST);
	cr_assert_eq(cfg_map_gets(&m, "planner"), (void *)1, "unchanged by the refusal");
	cr_assert_null(cfg_map_get(&m, "plan", 4), "a prefix is another key");
	cr_assert_eq(cfg_map_get(&m, "planner-x", 7), (void *)1, "length-bounded keys");
	cr_assert_eq(cfg_map_del(&m, "planner", 7), (void *)1);
	cr_assert_null(cfg_map_gets(&m, "planner"));
	cr_assert_eq(m.n, 0);
	cfg_map_free(&m);
}

Test(config_map, a_hundred_thousand_keys_grow_the_table_and_all_stay_reachable)
{
	enum { N = 100000 };
	struct cfg_map m = { 0 };
	char (*keys)[16] = malloc(N * sizeof(*keys));

	cr_assert_not_null(keys);
	for (int i = 0; i < N; i++) {
		snprintf(keys[i], sizeof(keys[i]), "k%d", i);
		cr_assert_eq(cfg_map_puts(&m, keys[i], (void *)(uintptr_t)(i + 1)), 0);
	}
	cr_assert_eq(m.n, N);
	cr_assert_leq(m.n * 2, m.cap, "at most half full");
	for (int i = 0; i < N; i++)
		cr_assert_eq(cfg_map_gets(&m, keys[i]), (void *)(uintptr_t)(i + 1));
	cr_assert_null(cfg_map_gets(&m, "k100000"));
	cfg_map_free(&m);
	free(keys);
}

Test(config_map, deleting_pointer_keys_in_random_order_keeps_the_others_reachable)
{
	enum { N = 5000 };
	struct cfg_map m = { 0 };
	char *objs = malloc(N);
	int order[N];
	bool live[N];

	cr_assert_not_null(objs);
	srand(7);
	for (int i = 0; i < N; i++) {
		cr_assert_eq(cfg_map_putp(&m, &objs[i], (void *)(uintptr_t)(i + 1)), 0);
		order[i] = i;
		live[i] = true;
	}
	cr_assert_eq(cfg_map_putp(&m, &objs[3], NULL), -EEXIST);
	for (int i = N - 1; i > 0; i--) {
		int j = rand() % (i + 1), t = order[i];
		order[i] = order[j];
		order[j] = t;
	}
	for (int k = 0; k < N; k++) {
		int victim = order[k];
		cr_assert_eq(cfg_map_delp(&m, &objs[victim]), (void *)(uintptr_t)(victim + 1));
		live[victim] = false;
		cr_assert_null(cfg_map_delp(&m, &objs[victim]), "deleted once only");
		if (k % 97 == 0 || k > N - 50)
			for (int i = 0; i < N; i++)
				cr_assert_eq(cfg_map_getp(&m, &objs[i]),
					     live[i] ? (void *)(uintptr_t)(i + 1) : NULL,
					     "after %d deletions, key %d", k + 1, i);
	}
	cr_assert_eq(m.n, 0);
	cfg_map_free(&m);
	free(objs);
}
