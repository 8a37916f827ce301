/* SPDX-License-Identifier: MIT */
/*
 * Memory per user context, broken down per registry entry (ureg.h
 * ureg_ctx_entries, ureg_ctx_alloc_for; issue 12 point 3): a factory that
 * allocates exactly N bytes in M blocks is charged exactly their usable
 * sizes, an instance that later allocates K more on its own behalf is
 * charged those too, a release gives them back, and a failed creation
 * records nothing.  lib/ctx/ctx.c, lib/ctx/ctx_create.c.
 */
#include <criterion/criterion.h>

#include <jemalloc/jemalloc.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <ureg/report.h>

#include "core_test.h"

#define HDR 32 /* ureg's block header (ctx.h) */

/* A factory that allocates blocks of the given sizes; the first block is
 * the instance, which remembers the others so its destructor frees all. */
struct shape {
	size_t sizes[8];
	int n;
	int fail; /* non-zero: allocate everything, then fail with this */
};

struct blob {
	int n;
	void *blocks[16];
};

static int shape_create(ureg_ctx *ctx, void *arg, void **out)
{
	const struct shape *s = arg;
	struct blob *b = ureg_ctx_alloc(ctx, s->sizes[0]);

	if (!b)
		return -ENOMEM;
	b->n = 0;
	for (int i = 1; i < s->n; i++)
		if (!(b->blocks[b->n++] = ureg_ctx_alloc(ctx, s->sizes[i])))
			return -ENOMEM; /* rollback frees what was made */
	if (s->fail)
		return s->fail;
	*out = b;
	return 0;
}

static void shape_destroy(void *p, ureg_ctx *ctx)
{
	struct blob *b = p;

	for (int i = 0; i < b->n; i++)
		ureg_ctx_free(ctx, b->blocks[i]);
	ureg_ctx_free(ctx, b);
}

static const ureg_type shape_type = {
	.name = "shape",
	.instance_destroy = shape_destroy,
};

static size_t charge(size_t n)
{
	return nallocx(n + HDR, 0);
}

static size_t charge_of(const struct shape *s)
{
	size_t t = 0;

	for (int i = 0; i < s->n; i++)
		t += charge(s->sizes[i]);
	return t;
}

#define MAX_SEEN 8
struct seen {
	int n;
	struct ureg_ctx_entry e[MAX_SEEN];
	char reg[MAX_SEEN][64], key[MAX_SEEN][64];
};

static int collect(const struct ureg_ctx_entry *e, void *arg)
{
	struct seen *s = arg;

	if (s->n == MAX_SEEN)
		return 1;
	s->e[s->n] = *e;
	snprintf(s->reg[s->n], sizeof(s->reg[0]), "%s", e->registry);
	snprintf(s->key[s->n], sizeof(s->key[0]), "%s", e->key);
	s->n++;
	return 0;
}

static struct seen entries_of(ureg_ctx *ctx)
{
	struct seen s = { 0 };

	cr_assert_eq(ureg_ctx_entries(ctx, collect, &s), 0);
	return s;
}

static ureg_registry *new_reg(const char *name)
{
	ureg_registry *reg = NULL;

	cr_assert_eq(ureg_registry_new(&shape_type, name, &reg), 0);
	return reg;
}

static void add_factory(ureg_registry *reg, const char *key, struct shape *s,
			enum ureg_scope scope)
{
	struct ureg_factory f = { .create = shape_create, .scope = scope, .arg = s };

	cr_assert_eq(ureg_register_factory(reg, key, &f), 0);
}

static ureg_ctx *new_ctx(unsigned flags)
{
	ureg_ctx *ctx = NULL;

	cr_assert_eq(ureg_ctx_new("alice", flags, &ctx), 0);
	return ctx;
}

static size_t live_of(ureg_ctx *ctx)
{
	struct ureg_ctx_stats st;

	cr_assert_eq(ureg_ctx_stats(ctx, &st), 0);
	return st.live_bytes;
}

static void check_exact(unsigned flags)
{
	struct shape s = { .sizes = { 64, 100, 1000, 5000 }, .n = 4 };
	ureg_registry *reg = new_reg("bd.tools");
	ureg_ctx *ctx = new_ctx(flags);
	void *a, *b;

	add_factory(reg, "search", &s, UREG_SCOPE_TRANSIENT);
	cr_assert_eq(ureg_create_instance(reg, "search", ctx, &a), 0);
	struct seen e = entries_of(ctx);
	cr_assert_eq(e.n, 1);
	cr_assert_str_eq(e.reg[0], "bd.tools");
	cr_assert_str_eq(e.key[0], "search");
	cr_assert_eq(e.e[0].instances, 1);
	cr_assert_eq(e.e[0].allocations, 4);
	cr_assert_eq(e.e[0].bytes, charge_of(&s), "%zu != %zu", e.e[0].bytes, charge_of(&s));
	cr_assert_eq(e.e[0].peak_bytes, charge_of(&s));
	cr_assert_eq(e.e[0].bytes, live_of(ctx));

	cr_assert_eq(ureg_create_instance(reg, "search", ctx, &b), 0);
	e = entries_of(ctx);
	cr_assert_eq(e.n, 1, "one record per entry, not per instance");
	cr_assert_eq(e.e[0].instances, 2);
	cr_assert_eq(e.e[0].allocations, 8);
	cr_assert_eq(e.e[0].bytes, 2 * charge_of(&s));
	ureg_ctx_destroy(ctx);
	ureg_registry_destroy(reg);
}

Test(ctx_breakdown, a_factory_that_allocates_n_bytes_in_m_blocks_is_charged_exactly_their_usable_sizes)
{
	check_exact(UREG_CTX_SHARED);
}

Test(ctx_breakdown, a_dedicated_context_breaks_its_memory_down_the_same_way)
{
	check_exact(UREG_CTX_DEDICATED);
}

Test(ctx_breakdown, what_an_instance_allocates_later_on_its_own_behalf_counts_for_its_entry)
{
	struct shape s = { .sizes = { 48, 200 }, .n = 2 };
	ureg_registry *reg = new_reg("bd.agents");
	ureg_ctx *ctx = new_ctx(UREG_CTX_SHARED);
	void *inst, *more, *zeroed, *plain;

	add_factory(reg, "planner", &s, UREG_SCOPE_TRANSIENT);
	cr_assert_eq(ureg_create_instance(reg, "planner", ctx, &inst), 0);
	more = ureg_ctx_alloc_for(ctx, inst, 3000);
	zeroed = ureg_ctx_calloc_for(ctx, inst, 10, 10);
	plain = ureg_ctx_alloc(ctx, 500); /* the context's own, no entry's */
	cr_assert(more && zeroed && plain);
	cr_assert_eq(((char *)zeroed)[99], 0);

	struct seen e = entries_of(ctx);
	cr_assert_eq(e.n, 1);
	cr_assert_eq(e.e[0].bytes, charge_of(&s) + charge(3000) + charge(100));
	cr_assert_eq(e.e[0].allocations, 4);
	cr_assert_eq(live_of(ctx), e.e[0].bytes + charge(500),
		     "entries plus the unattributed block make live_bytes");

	ureg_ctx_free(ctx, more);
	e = entries_of(ctx);
	cr_assert_eq(e.e[0].bytes, charge_of(&s) + charge(100));
	cr_assert_eq(e.e[0].peak_bytes, charge_of(&s) + charge(3000) + charge(100));
	ureg_ctx_free(ctx, zeroed);
	ureg_ctx_free(ctx, plain);
	ureg_ctx_destroy(ctx);
	ureg_registry_destroy(reg);
}

Test(ctx_breakdown, releasing_an_instance_drops_its_bytes_and_instances_and_keeps_the_peak)
{
	struct shape s = { .sizes = { 64, 4096, 4096 }, .n = 3 };
	ureg_registry *reg = new_reg("bd.tools");
	ureg_ctx *ctx = new_ctx(UREG_CTX_SHARED);
	void *a, *b, *extra;

	add_factory(reg, "fetch", &s, UREG_SCOPE_TRANSIENT);
	cr_assert_eq(ureg_create_instance(reg, "fetch", ctx, &a), 0);
	cr_assert_eq(ureg_create_instance(reg, "fetch", ctx, &b), 0);
	extra = ureg_ctx_alloc_for(ctx, a, 777);
	cr_assert_not_null(extra);

	cr_assert_eq(ureg_instance_release(ctx, a), 0);
	struct seen e = entries_of(ctx);
	cr_assert_eq(e.e[0].instances, 1);
	cr_assert_eq(e.e[0].bytes, charge_of(&s) + charge(777),
		     "a's own blocks are gone; what it allocated on its behalf "
		     "stays counted for the entry until freed");
	cr_assert_eq(e.e[0].peak_bytes, 2 * charge_of(&s) + charge(777));
	ureg_ctx_free(ctx, extra);
	cr_assert_eq(ureg_instance_release(ctx, b), 0);
	e = entries_of(ctx);
	cr_assert_eq(e.n, 1, "the record stays, for its peak");
	cr_assert_eq(e.e[0].instances, 0);
	cr_assert_eq(e.e[0].bytes, 0);
	cr_assert_eq(e.e[0].allocations, 0);
	cr_assert_eq(e.e[0].peak_bytes, 2 * charge_of(&s) + charge(777));
	cr_assert_eq(live_of(ctx), 0);
	ureg_ctx_destroy(ctx);
	ureg_registry_destroy(reg);
}

Test(ctx_breakdown, a_failed_creation_records_nothing)
{
	struct shape ok = { .sizes = { 64, 300 }, .n = 2 };
	struct shape bad = { .sizes = { 64, 300, 9000 }, .n = 3, .fail = -EIO };
	ureg_registry *reg = new_reg("bd.tools");
	ureg_ctx *ctx = new_ctx(UREG_CTX_SHARED);
	void *inst;

	add_factory(reg, "bad", &bad, UREG_SCOPE_TRANSIENT);
	add_factory(reg, "ok", &ok, UREG_SCOPE_CONTEXT);
	cr_assert_eq(ureg_create_instance(reg, "bad", ctx, &inst), -EIO);
	cr_assert_eq(entries_of(ctx).n, 0, "a failure makes no record");
	cr_assert_eq(live_of(ctx), 0);

	ureg_read_lock();
	cr_assert_eq(ureg_get(reg, "ok", ctx, &inst), 0);
	ureg_read_unlock();
	struct seen before = entries_of(ctx);
	cr_assert_eq(ureg_create_instance(reg, "bad", ctx, &inst), -EIO);
	struct seen after = entries_of(ctx);
	cr_assert_eq(after.n, 1);
	cr_assert_str_eq(after.key[0], "ok");
	cr_assert_eq(after.e[0].bytes, before.e[0].bytes);
	cr_assert_eq(after.e[0].bytes, charge_of(&ok));
	cr_assert_eq(after.e[0].peak_bytes, charge_of(&ok));
	cr_assert_eq(after.e[0].instances, 1);
	ureg_ctx_destroy(ctx);
	ureg_registry_destroy(reg);
}

/* A factory that makes an instance of another entry in the same context:
 * each entry is charged what its own factory allocated. */
static ureg_registry *nest_reg;

static int outer_create(ureg_ctx *ctx, void *arg, void **out)
{
	void *dep;
	struct blob *b;

	(void)arg;
	if (ureg_create_instance(nest_reg, "inner", ctx, &dep))
		return -EIO;
	if (!(b = ureg_ctx_alloc(ctx, 500)))
		return -ENOMEM;
	b->n = 0;
	*out = b;
	return 0;
}

Test(ctx_breakdown, a_nested_creation_charges_each_entry_its_own_blocks)
{
	struct shape inner = { .sizes = { 64, 2000 }, .n = 2 };
	struct ureg_factory of = { .create = outer_create, .scope = UREG_SCOPE_TRANSIENT };
	ureg_ctx *ctx = new_ctx(UREG_CTX_SHARED);
	void *inst;

	nest_reg = new_reg("bd.nest");
	add_factory(nest_reg, "inner", &inner, UREG_SCOPE_TRANSIENT);
	cr_assert_eq(ureg_register_factory(nest_reg, "outer", &of), 0);
	cr_assert_eq(ureg_create_instance(nest_reg, "outer", ctx, &inst), 0);
	struct seen e = entries_of(ctx);
	cr_assert_eq(e.n, 2);
	cr_assert_str_eq(e.key[0], "inner", "oldest first: inner finished first");
	cr_assert_eq(e.e[0].bytes, charge_of(&inner));
	cr_assert_str_eq(e.key[1], "outer");
	cr_assert_eq(e.e[1].bytes, charge(500));
	cr_assert_eq(live_of(ctx), charge_of(&inner) + charge(500));
	ureg_ctx_destroy(ctx);
	ureg_registry_destroy(nest_reg);
}

Test(ctx_breakdown, alloc_for_something_that_is_not_an_instance_fails_and_changes_nothing)
{
	ureg_ctx *ctx = new_ctx(UREG_CTX_SHARED);
	void *own = ureg_ctx_alloc(ctx, 64);
	size_t live = live_of(ctx);
	int x;

	errno = 0;
	cr_assert_null(ureg_ctx_alloc_for(ctx, &x, 64));
	cr_assert_eq(errno, ENOENT);
	cr_assert_neq(strstr(ureg_last_error(), "not one of its instances"), NULL,
		      "%s", ureg_last_error());
	cr_assert_null(ureg_ctx_alloc_for(ctx, own, 64), "a block is not an instance");
	cr_assert_null(ureg_ctx_alloc_for(NULL, &x, 64));
	cr_assert_eq(errno, EINVAL);
	cr_assert_null(ureg_ctx_alloc_for(ctx, NULL, 64));
	cr_assert_null(ureg_ctx_calloc_for(ctx, &x, SIZE_MAX, 2));
	cr_assert_eq(errno, EINVAL);
	cr_assert_eq(live_of(ctx), live);
	cr_assert_eq(entries_of(ctx).n, 0);
	cr_assert_eq(ureg_ctx_entries(NULL, collect, NULL), -EINVAL);
	cr_assert_eq(ureg_ctx_entries(ctx, NULL, NULL), -EINVAL);
	ureg_ctx_free(ctx, own);
	ureg_ctx_destroy(ctx);
}

Test(ctx_breakdown, alloc_for_respects_the_quota)
{
	struct shape s = { .sizes = { 64 }, .n = 1 };
	ureg_registry *reg = new_reg("bd.tools");
	ureg_ctx *ctx = new_ctx(UREG_CTX_SHARED);
	void *inst;

	add_factory(reg, "q", &s, UREG_SCOPE_TRANSIENT);
	cr_assert_eq(ureg_create_instance(reg, "q", ctx, &inst), 0);
	cr_assert_eq(ureg_ctx_set_quota(ctx, live_of(ctx) + 1000), 0);
	errno = 0;
	cr_assert_null(ureg_ctx_alloc_for(ctx, inst, 5000));
	cr_assert_eq(errno, EDQUOT);
	struct seen e = entries_of(ctx);
	cr_assert_eq(e.e[0].bytes, charge(64));
	cr_assert_eq(e.e[0].peak_bytes, charge(64));
	ureg_ctx_destroy(ctx);
	ureg_registry_destroy(reg);
}

static int stop_at_first(const struct ureg_ctx_entry *e, void *arg)
{
	(void)e;
	++*(int *)arg;
	return 7;
}

Test(ctx_breakdown, the_walk_stops_at_the_first_non_zero_answer)
{
	struct shape s = { .sizes = { 64 }, .n = 1 };
	ureg_registry *reg = new_reg("bd.tools");
	ureg_ctx *ctx = new_ctx(UREG_CTX_SHARED);
	void *inst;
	int calls = 0;

	add_factory(reg, "a", &s, UREG_SCOPE_TRANSIENT);
	add_factory(reg, "b", &s, UREG_SCOPE_TRANSIENT);
	cr_assert_eq(ureg_create_instance(reg, "a", ctx, &inst), 0);
	cr_assert_eq(ureg_create_instance(reg, "b", ctx, &inst), 0);
	cr_assert_eq(ureg_ctx_entries(ctx, stop_at_first, &calls), 7);
	cr_assert_eq(calls, 1);
	ureg_ctx_destroy(ctx);
	ureg_registry_destroy(reg);
}

static char *report_json(void)
{
	char *txt = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&txt, &len);

	cr_assert_not_null(f);
	cr_assert_eq(ureg_report(f, UREG_REPORT_JSON), 0, "%s", ureg_last_error());
	fclose(f);
	return txt;
}

Test(ctx_breakdown, the_json_report_lists_each_contexts_entries_top_contexts_and_a_size_histogram)
{
	struct shape s = { .sizes = { 64, 1000 }, .n = 2 };
	ureg_registry *reg = new_reg("bd.tools");
	ureg_ctx *big, *small;
	void *inst;
	char want[512];

	cr_assert_eq(ureg_ctx_new("big", 0, &big), 0);
	cr_assert_eq(ureg_ctx_new("small", 0, &small), 0);
	add_factory(reg, "search", &s, UREG_SCOPE_TRANSIENT);
	cr_assert_eq(ureg_create_instance(reg, "search", big, &inst), 0);
	cr_assert_eq(ureg_create_instance(reg, "search", big, &inst), 0);
	char *txt = report_json();
	snprintf(want, sizeof(want),
		 "\"entries\": [{\"registry\": \"bd.tools\", \"key\": \"search\", "
		 "\"instances\": 2, \"bytes\": %zu, \"peak\": %zu, \"allocations\": 4, "
		 "\"live_bytes\": %zu, \"peak_bytes\": %zu}]",
		 2 * charge_of(&s), 2 * charge_of(&s), 2 * charge_of(&s), 2 * charge_of(&s));
	cr_assert_neq(strstr(txt, want), NULL, "want %s in:\n%s", want, txt);
	cr_assert_neq(strstr(txt, "\"entries\": []"), NULL, "small has none:\n%s", txt);
	snprintf(want, sizeof(want), "\"top_contexts\": [{\"name\": \"big\", \"live_bytes\": %zu}",
		 2 * charge_of(&s));
	cr_assert_neq(strstr(txt, want), NULL, "want %s in:\n%s", want, txt);
	cr_assert_neq(strstr(txt, "\"context_sizes\": [{\"up_to\": 0, \"contexts\": 1}"), NULL,
		      "the empty context is in the first bucket:\n%s", txt);
	free(txt);
	ureg_ctx_destroy(big);
	ureg_ctx_destroy(small);
	ureg_registry_destroy(reg);
}

Test(ctx_breakdown, the_text_report_shows_the_breakdown_under_each_context)
{
	struct shape s = { .sizes = { 64 }, .n = 1 };
	ureg_registry *reg = new_reg("bd.tools");
	ureg_ctx *ctx = new_ctx(UREG_CTX_SHARED);
	void *inst;
	char *txt = NULL, want[256];
	size_t len = 0;
	FILE *f = open_memstream(&txt, &len);

	add_factory(reg, "calc", &s, UREG_SCOPE_TRANSIENT);
	cr_assert_eq(ureg_create_instance(reg, "calc", ctx, &inst), 0);
	cr_assert_eq(ureg_report(f, UREG_REPORT_TEXT), 0);
	fclose(f);
	snprintf(want, sizeof(want), "bd.tools/calc");
	cr_assert_neq(strstr(txt, want), NULL, "%s", txt);
	snprintf(want, sizeof(want), "live %zu B  peak %zu B", charge(64), charge(64));
	cr_assert_neq(strstr(strstr(txt, "bd.tools/calc"), want), NULL, "%s", txt);
	cr_assert_neq(strstr(txt, "largest contexts"), NULL, "%s", txt);
	cr_assert_neq(strstr(txt, "context sizes"), NULL, "%s", txt);
	free(txt);
	ureg_ctx_destroy(ctx);
	ureg_registry_destroy(reg);
}
