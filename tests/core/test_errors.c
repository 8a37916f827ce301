/* SPDX-License-Identifier: MIT */
/*
 * Bad input to every public call: it returns a negative errno, a message is
 * available (ureg_strerror and the thread's ureg_last_error), and nothing
 * changed (count, generation, what lookups find, context accounting).
 */
#include <criterion/criterion.h>

#include <limits.h>
#include <pthread.h>

#include <ureg/events.h>

#include "core_test.h"

/* The world every test starts from. */
static ureg_registry *reg;
static ureg_ctx *ctx;
static struct item *present;
static struct fac maker = { .id = 1 };
static struct ureg_factory good_factory;
static char long_key[UREG_KEY_MAX + 2];     /* UREG_KEY_MAX + 1 bytes */
static char max_key[UREG_KEY_MAX + 1];      /* exactly UREG_KEY_MAX */
static char long_name[UREG_NAME_MAX + 2];   /* UREG_NAME_MAX + 1 */

static const char *const bad_keys[] = {
	NULL,
	"",
	long_key,
	"has space",
	" leading",
	"tab\there",
	"newline\n",
	"bell\a",
	"del\x7f",
	"caf\xc3\xa9",
};
#define NBAD (sizeof(bad_keys) / sizeof(bad_keys[0]))

struct snapshot {
	size_t count;
	uint64_t generation;
	struct ureg_ctx_stats stats;
	int factory_calls;
};

static struct snapshot snap(void)
{
	struct snapshot s = {
		.count = ureg_count(reg),
		.generation = ureg_generation(reg),
		.stats = ctx_stats(ctx),
		.factory_calls = atomic_load(&maker.calls),
	};
	return s;
}

static void assert_unchanged_(const struct snapshot *before, const char *what)
{
	struct snapshot now = snap();
	void *p = NULL;

	cr_assert_eq(now.count, before->count, "%s changed the count", what);
	cr_assert_eq(now.generation, before->generation,
		     "%s changed the generation", what);
	cr_assert_eq(now.stats.live_bytes, before->stats.live_bytes, "%s", what);
	cr_assert_eq(now.stats.allocations, before->stats.allocations, "%s", what);
	cr_assert_eq(now.stats.instances, before->stats.instances, "%s", what);
	cr_assert_eq(now.stats.quota, before->stats.quota, "%s", what);
	cr_assert_eq(now.factory_calls, before->factory_calls,
		     "%s ran a factory", what);
	cr_assert_eq(lookup_rc(reg, "present", &p), 0, "%s", what);
	cr_assert_eq(p, present, "%s", what);
	cr_assert_eq(present->magic, ITEM_MAGIC, "%s", what);
	cr_assert_eq(ureg_contains(reg, "maker"), 1, "%s", what);
	cr_assert_eq(atomic_load(&items_destroyed), 0, "%s destroyed an item", what);
}

/* Call, expect @err, a message, and no change. */
#define EXPECT_FAIL(call, err)                                                  \
	do {                                                                    \
		struct snapshot before_ = snap();                               \
		int rc_ = (call);                                               \
		cr_assert_eq(rc_, (err), "%s returned %d (%s), expected %d",    \
			     #call, rc_, ureg_strerror(rc_), (err));            \
		cr_assert_str_not_empty(ureg_strerror(rc_), "%s", #call);       \
		cr_assert_str_not_empty(ureg_last_error(), "%s", #call);        \
		assert_unchanged_(&before_, #call);                             \
	} while (0)

static void setup(void)
{
	memset(long_key, 'k', UREG_KEY_MAX + 1);
	long_key[UREG_KEY_MAX + 1] = '\0';
	memset(max_key, 'm', UREG_KEY_MAX);
	max_key[UREG_KEY_MAX] = '\0';
	memset(long_name, 'n', UREG_NAME_MAX + 1);
	long_name[UREG_NAME_MAX + 1] = '\0';
	cr_assert_eq(ureg_registry_new(&item_type, "errors", &reg), 0);
	cr_assert_eq(ureg_ctx_new("errors", UREG_CTX_SHARED, &ctx), 0);
	present = item_new(1);
	cr_assert_eq(ureg_register(reg, "present", present), 0);
	good_factory = fac_factory(&maker, UREG_SCOPE_CONTEXT);
	cr_assert_eq(ureg_register_factory(reg, "maker", &good_factory), 0);
}

static void teardown(void)
{
	ureg_ctx_destroy(ctx);
	ureg_registry_destroy(reg);
}

TestSuite(errors, .init = setup, .fini = teardown);

/* ------------------------------------------------------------------ */
/* keys                                                                */
/* ------------------------------------------------------------------ */

Test(errors, the_longest_key_and_every_printable_character_are_accepted)
{
	const char *punct = "a!\"#$%&'()*+,-./0123456789:;<=>?@AZ[\\]^_`az{|}~";
	void *p = NULL;

	cr_assert_eq(ureg_register(reg, max_key, item_new(2)), 0);
	cr_assert_eq(ureg_register(reg, punct, item_new(3)), 0);
	cr_assert_eq(lookup_rc(reg, max_key, &p), 0);
	cr_assert_eq(((struct item *)p)->id, 2);
	cr_assert_eq(lookup_rc(reg, punct, &p), 0);
	cr_assert_eq(((struct item *)p)->id, 3);
	cr_assert_eq(ureg_count(reg), 4);
}

Test(errors, register_rejects_every_bad_key_and_a_null_item)
{
	struct item *it = item_new(2);

	for (size_t i = 0; i < NBAD; i++)
		EXPECT_FAIL(ureg_register(reg, bad_keys[i], it), -EINVAL);
	EXPECT_FAIL(ureg_register(NULL, "fine", it), -EINVAL);
	EXPECT_FAIL(ureg_register(reg, "fine", NULL), -EINVAL);
	EXPECT_FAIL(ureg_register(reg, "present", it), -EEXIST);
	cr_assert_eq(ureg_contains(reg, "fine"), 0);
	cr_assert_eq(it->magic, ITEM_MAGIC);
	item_free_unowned(it);
}

Test(errors, register_factory_rejects_bad_keys_missing_create_and_bad_scope)
{
	struct fac other = { .id = 2 };
	struct ureg_factory f = fac_factory(&other, UREG_SCOPE_TRANSIENT);
	struct ureg_factory no_create = f, bad_scope = f, neg_scope = f;

	no_create.create = NULL;
	bad_scope.scope = (enum ureg_scope)2;
	neg_scope.scope = (enum ureg_scope)-1;
	for (size_t i = 0; i < NBAD; i++)
		EXPECT_FAIL(ureg_register_factory(reg, bad_keys[i], &f), -EINVAL);
	EXPECT_FAIL(ureg_register_factory(NULL, "fine", &f), -EINVAL);
	EXPECT_FAIL(ureg_register_factory(reg, "fine", NULL), -EINVAL);
	EXPECT_FAIL(ureg_register_factory(reg, "fine", &no_create), -EINVAL);
	EXPECT_FAIL(ureg_register_factory(reg, "fine", &bad_scope), -EINVAL);
	EXPECT_FAIL(ureg_register_factory(reg, "fine", &neg_scope), -EINVAL);
	EXPECT_FAIL(ureg_register_factory(reg, "maker", &f), -EEXIST);
	cr_assert_eq(ureg_contains(reg, "fine"), 0);
	cr_assert_eq(atomic_load(&other.calls), 0);
}

Test(errors, replace_rejects_bad_input_and_unknown_keys)
{
	struct item *it = item_new(2);

	for (size_t i = 0; i < NBAD; i++)
		EXPECT_FAIL(ureg_replace(reg, bad_keys[i], it), -EINVAL);
	EXPECT_FAIL(ureg_replace(NULL, "present", it), -EINVAL);
	EXPECT_FAIL(ureg_replace(reg, "present", NULL), -EINVAL);
	EXPECT_FAIL(ureg_replace(reg, "unknown", it), -ENOENT);
	EXPECT_FAIL(ureg_replace(reg, "maker", it), -ENOENT);
	item_free_unowned(it);
}

Test(errors, replace_factory_rejects_bad_input_and_unknown_keys)
{
	struct fac other = { .id = 2 };
	struct ureg_factory f = fac_factory(&other, UREG_SCOPE_TRANSIENT);
	struct ureg_factory no_create = f, bad_scope = f;

	no_create.create = NULL;
	bad_scope.scope = (enum ureg_scope)7;
	for (size_t i = 0; i < NBAD; i++)
		EXPECT_FAIL(ureg_replace_factory(reg, bad_keys[i], &f), -EINVAL);
	EXPECT_FAIL(ureg_replace_factory(NULL, "maker", &f), -EINVAL);
	EXPECT_FAIL(ureg_replace_factory(reg, "maker", NULL), -EINVAL);
	EXPECT_FAIL(ureg_replace_factory(reg, "maker", &no_create), -EINVAL);
	EXPECT_FAIL(ureg_replace_factory(reg, "maker", &bad_scope), -EINVAL);
	EXPECT_FAIL(ureg_replace_factory(reg, "unknown", &f), -ENOENT);
	EXPECT_FAIL(ureg_replace_factory(reg, "present", &f), -ENOENT);
}

Test(errors, unregister_rejects_bad_keys_bad_what_and_unknown_keys)
{
	for (size_t i = 0; i < NBAD; i++)
		EXPECT_FAIL(ureg_unregister(reg, bad_keys[i], UREG_BOTH), -EINVAL);
	EXPECT_FAIL(ureg_unregister(NULL, "present", UREG_BOTH), -EINVAL);
	EXPECT_FAIL(ureg_unregister(reg, "present", 0), -EINVAL);
	EXPECT_FAIL(ureg_unregister(reg, "present", 4), -EINVAL);
	EXPECT_FAIL(ureg_unregister(reg, "present", UREG_BOTH | 8), -EINVAL);
	EXPECT_FAIL(ureg_unregister(reg, "unknown", UREG_BOTH), -ENOENT);
	EXPECT_FAIL(ureg_unregister(reg, "present", UREG_FACTORY), -ENOENT);
	EXPECT_FAIL(ureg_unregister(reg, "maker", UREG_SINGLETON), -ENOENT);
}

Test(errors, lookup_rejects_bad_input_outside_and_inside_a_read_section)
{
	void *p = NULL;
	struct snapshot before = snap();

	EXPECT_FAIL(ureg_lookup(reg, "present", &p), -EPERM);
	ureg_read_lock();
	for (size_t i = 0; i < NBAD; i++)
		cr_assert_eq(ureg_lookup(reg, bad_keys[i], &p), -EINVAL, "key %zu", i);
	cr_assert_eq(ureg_lookup(NULL, "present", &p), -EINVAL);
	cr_assert_eq(ureg_lookup(reg, "present", NULL), -EINVAL);
	cr_assert_eq(ureg_lookup(reg, "unknown", &p), -ENOENT);
	cr_assert_str_not_empty(ureg_last_error());
	ureg_read_unlock();
	cr_assert_null(p);
	assert_unchanged_(&before, "lookup");
}

Test(errors, contains_rejects_bad_keys_and_a_null_registry)
{
	for (size_t i = 0; i < NBAD; i++)
		EXPECT_FAIL(ureg_contains(reg, bad_keys[i]), -EINVAL);
	EXPECT_FAIL(ureg_contains(NULL, "present"), -EINVAL);
}

Test(errors, get_rejects_bad_input_and_runs_no_factory)
{
	void *p = NULL;

	EXPECT_FAIL(ureg_get(reg, "present", ctx, &p), -EPERM); /* a singleton */
	ureg_read_lock();
	for (size_t i = 0; i < NBAD; i++)
		cr_assert_eq(ureg_get(reg, bad_keys[i], ctx, &p), -EINVAL, "key %zu", i);
	cr_assert_eq(ureg_get(NULL, "maker", ctx, &p), -EINVAL);
	cr_assert_eq(ureg_get(reg, "maker", ctx, NULL), -EINVAL);
	cr_assert_eq(ureg_get(reg, "unknown", ctx, &p), -ENOENT);
	cr_assert_eq(ureg_get(reg, "maker", NULL, &p), -ENOENT);
	cr_assert_str_not_empty(ureg_last_error());
	ureg_read_unlock();
	cr_assert_null(p);
	cr_assert_eq(atomic_load(&maker.calls), 0);
	cr_assert_eq(ctx_stats(ctx).instances, 0);
}

Test(errors, create_instance_rejects_bad_input_a_null_context_and_unknown_keys)
{
	void *p = NULL;

	for (size_t i = 0; i < NBAD; i++)
		EXPECT_FAIL(ureg_create_instance(reg, bad_keys[i], ctx, &p), -EINVAL);
	EXPECT_FAIL(ureg_create_instance(NULL, "maker", ctx, &p), -EINVAL);
	EXPECT_FAIL(ureg_create_instance(reg, "maker", NULL, &p), -EINVAL);
	EXPECT_FAIL(ureg_create_instance(reg, "maker", ctx, NULL), -EINVAL);
	EXPECT_FAIL(ureg_create_instance(reg, "unknown", ctx, &p), -ENOENT);
	EXPECT_FAIL(ureg_create_instance(reg, "present", ctx, &p), -ENOENT);
	cr_assert_null(p);
}

Test(errors, acquire_rejects_bad_input_and_unknown_keys)
{
	ureg_ref *ref = NULL;

	for (size_t i = 0; i < NBAD; i++)
		EXPECT_FAIL(ureg_acquire(reg, bad_keys[i], &ref), -EINVAL);
	EXPECT_FAIL(ureg_acquire(NULL, "present", &ref), -EINVAL);
	EXPECT_FAIL(ureg_acquire(reg, "present", NULL), -EINVAL);
	EXPECT_FAIL(ureg_acquire(reg, "unknown", &ref), -ENOENT);
	EXPECT_FAIL(ureg_acquire(reg, "maker", &ref), -ENOENT);
	cr_assert_null(ref);
	cr_assert_null(ureg_ref_item(NULL));
	ureg_ref_release(NULL);
}

Test(errors, entry_info_rejects_bad_input)
{
	struct ureg_entry_info info;

	EXPECT_FAIL(ureg_entry_info(reg, "present", &info), -EPERM);
	ureg_read_lock();
	for (size_t i = 0; i < NBAD; i++)
		cr_assert_eq(ureg_entry_info(reg, bad_keys[i], &info), -EINVAL);
	cr_assert_eq(ureg_entry_info(NULL, "present", &info), -EINVAL);
	cr_assert_eq(ureg_entry_info(reg, "present", NULL), -EINVAL);
	cr_assert_eq(ureg_entry_info(reg, "unknown", &info), -ENOENT);
	ureg_read_unlock();
}

Test(errors, keys_rejects_null_arguments)
{
	char **keys = NULL;

	EXPECT_FAIL(ureg_keys(NULL, &keys, NULL), -EINVAL);
	EXPECT_FAIL(ureg_keys(reg, NULL, NULL), -EINVAL);
	cr_assert_null(keys);
	ureg_keys_free(NULL);
}

Test(errors, calls_on_a_null_registry_that_return_values_do_not_crash)
{
	cr_assert_eq(ureg_count(NULL), 0);
	cr_assert_eq(ureg_generation(NULL), 0);
	cr_assert_null(ureg_registry_type(NULL));
	ureg_registry_destroy(NULL);
}

Test(errors, registry_new_rejects_bad_names_and_null_arguments)
{
	ureg_registry *r = NULL;
	char max_name[UREG_NAME_MAX + 1];

	EXPECT_FAIL(ureg_registry_new(&item_type, NULL, &r), -EINVAL);
	EXPECT_FAIL(ureg_registry_new(&item_type, "", &r), -EINVAL);
	EXPECT_FAIL(ureg_registry_new(&item_type, long_name, &r), -EINVAL);
	EXPECT_FAIL(ureg_registry_new(&item_type, "two words", &r), -EINVAL);
	EXPECT_FAIL(ureg_registry_new(&item_type, "ctl\x01", &r), -EINVAL);
	EXPECT_FAIL(ureg_registry_new(&item_type, "ok", NULL), -EINVAL);
	EXPECT_FAIL(ureg_registry_new(NULL, "ok", &r), -EINVAL);
	cr_assert_null(r);
	memset(max_name, 'n', UREG_NAME_MAX);
	max_name[UREG_NAME_MAX] = '\0';
	cr_assert_eq(ureg_registry_new(&item_type, max_name, &r), 0);
	cr_assert_str_eq(ureg_registry_name(r), max_name);
	ureg_registry_destroy(r);
}

/* ------------------------------------------------------------------ */
/* batches                                                             */
/* ------------------------------------------------------------------ */

Test(errors, batch_calls_reject_bad_input_and_a_failed_put_changes_nothing)
{
	ureg_batch *b = NULL;
	struct fac other = { .id = 2 };
	struct ureg_factory f = fac_factory(&other, UREG_SCOPE_TRANSIENT);
	struct ureg_factory no_create = f, bad_scope = f;
	struct item *it = item_new(2);
	void *p = NULL;

	no_create.create = NULL;
	bad_scope.scope = (enum ureg_scope)9;
	EXPECT_FAIL(ureg_batch_new(NULL, &b), -EINVAL);
	EXPECT_FAIL(ureg_batch_new(reg, NULL), -EINVAL);
	cr_assert_null(b);
	cr_assert_eq(ureg_batch_new(reg, &b), 0);
	for (size_t i = 0; i < NBAD; i++)
		EXPECT_FAIL(ureg_batch_put(b, bad_keys[i], it, NULL, NULL), -EINVAL);
	EXPECT_FAIL(ureg_batch_put(NULL, "fine", it, NULL, NULL), -EINVAL);
	EXPECT_FAIL(ureg_batch_put(b, "fine", NULL, &no_create, NULL), -EINVAL);
	EXPECT_FAIL(ureg_batch_put(b, "fine", NULL, &bad_scope, NULL), -EINVAL);
	cr_assert_eq(ureg_batch_put(b, "fine", it, NULL, NULL), 0);
	EXPECT_FAIL(ureg_batch_put(b, "fine", NULL, &f, NULL), -EEXIST);
	EXPECT_FAIL(ureg_batch_commit(NULL, 0), -EINVAL);
	/* the batch is still usable after all those failures */
	cr_assert_eq(ureg_batch_commit(b, 0), 0);
	cr_assert_eq(lookup_rc(reg, "fine", &p), 0);
	cr_assert_eq(p, it);
	cr_assert_eq(ureg_contains(reg, "present"), 1);
	ureg_batch_abort(NULL);
}

/* ------------------------------------------------------------------ */
/* contexts                                                            */
/* ------------------------------------------------------------------ */

static int count_ctx(ureg_ctx *c, void *arg)
{
	(void)c;
	(*(int *)arg)++;
	return 0;
}

static int live_contexts(void)
{
	int n = 0;

	cr_assert_eq(ureg_ctx_foreach(count_ctx, &n), 0);
	return n;
}

Test(errors, ctx_new_rejects_bad_flags_long_names_and_a_null_out)
{
	ureg_ctx *c = NULL;
	int n = live_contexts();

	EXPECT_FAIL(ureg_ctx_new("x", 2, &c), -EINVAL);
	EXPECT_FAIL(ureg_ctx_new("x", UREG_CTX_DEDICATED | 4, &c), -EINVAL);
	EXPECT_FAIL(ureg_ctx_new("x", 0x80000000u, &c), -EINVAL);
	EXPECT_FAIL(ureg_ctx_new(long_name, UREG_CTX_SHARED, &c), -EINVAL);
	EXPECT_FAIL(ureg_ctx_new("x", UREG_CTX_SHARED, NULL), -EINVAL);
	cr_assert_null(c);
	cr_assert_eq(live_contexts(), n);
}

Test(errors, ctx_calls_reject_a_null_context)
{
	struct ureg_ctx_stats st;

	EXPECT_FAIL(ureg_ctx_set_quota(NULL, 10), -EINVAL);
	EXPECT_FAIL(ureg_ctx_stats(NULL, &st), -EINVAL);
	EXPECT_FAIL(ureg_ctx_stats(ctx, NULL), -EINVAL);
	EXPECT_FAIL(ureg_instance_release(NULL, present), -EINVAL);
	EXPECT_FAIL(ureg_instance_release(ctx, NULL), -EINVAL);
	EXPECT_FAIL(ureg_instance_release(ctx, present), -ENOENT);
	EXPECT_FAIL(ureg_ctx_foreach(NULL, NULL), -EINVAL);
	ureg_ctx_destroy(NULL);
	ureg_ctx_free(ctx, NULL);
}

Test(errors, ctx_allocations_with_bad_sizes_return_null_and_change_nothing)
{
	struct snapshot before = snap();

	cr_assert_null(ureg_ctx_alloc(NULL, 16));
	cr_assert_null(ureg_ctx_alloc(ctx, 0));
	/* sizes that overflow once the header is added (errno unspecified) */
	cr_assert_null(ureg_ctx_alloc(ctx, SIZE_MAX));
	cr_assert_null(ureg_ctx_alloc(ctx, SIZE_MAX - 8));
	cr_assert_null(ureg_ctx_calloc(NULL, 1, 16));
	cr_assert_null(ureg_ctx_calloc(ctx, 0, 16));
	cr_assert_null(ureg_ctx_calloc(ctx, 16, 0));
	cr_assert_null(ureg_ctx_calloc(ctx, SIZE_MAX / 2, 4));
	/* too big for the machine, yet no overflow: exhaustion */
	errno = 0;
	cr_assert_null(ureg_ctx_alloc(ctx, (size_t)1 << 62));
	cr_assert(errno == ENOMEM || errno == EINVAL, "errno %d", errno);
	cr_assert_null(ureg_ctx_strdup(NULL, "x"));
	cr_assert_null(ureg_ctx_strdup(ctx, NULL));
	assert_unchanged_(&before, "bad allocations");
	cr_assert_eq(ctx_stats(ctx).total_allocations, before.stats.total_allocations);
}

Test(errors, arena_pool_size_rejects_zero_and_more_than_1024)
{
	cr_assert_eq(ureg_arena_pool_size(0), -EINVAL);
	cr_assert_str_not_empty(ureg_last_error());
	cr_assert_eq(ureg_arena_pool_size(1025), -EINVAL);
	cr_assert_eq(ureg_arena_pool_size(UINT_MAX), -EINVAL);
	/* a shared context already exists (setup): too late for any size */
	cr_assert_eq(ureg_arena_pool_size(4), -EBUSY);
	cr_assert_str_not_empty(ureg_strerror(-EBUSY));
}

/* ------------------------------------------------------------------ */
/* listeners                                                           */
/* ------------------------------------------------------------------ */

static void ignore_event(const struct ureg_event *ev, void *arg)
{
	(void)ev;
	(void)arg;
}

Test(errors, listen_rejects_a_null_callback_and_bad_masks)
{
	ureg_listener *l = NULL;

	EXPECT_FAIL(ureg_listen(reg, UREG_EV_ALL, NULL, NULL, &l), -EINVAL);
	EXPECT_FAIL(ureg_listen(reg, 0, ignore_event, NULL, &l), -EINVAL);
	EXPECT_FAIL(ureg_listen(reg, UREG_EV_ALL + 1, ignore_event, NULL, &l), -EINVAL);
	cr_assert_null(l);
	ureg_unlisten(NULL);
}

/* ------------------------------------------------------------------ */
/* messages                                                            */
/* ------------------------------------------------------------------ */

Test(errors, strerror_has_text_for_every_return_value)
{
	int codes[] = { 0, -EINVAL, -EEXIST, -ENOENT, -EPERM, -ENOMEM,
			-EDQUOT, -EAGAIN, -EBUSY, -EIO, -9999, 12345, INT_MIN };

	for (size_t i = 0; i < sizeof(codes) / sizeof(codes[0]); i++) {
		cr_assert_not_null(ureg_strerror(codes[i]));
		cr_assert_str_not_empty(ureg_strerror(codes[i]), "code %d", codes[i]);
	}
	cr_assert_str_neq(ureg_strerror(-EINVAL), ureg_strerror(-EEXIST));
	cr_assert_str_neq(ureg_strerror(-ENOENT), ureg_strerror(-EPERM));
}

Test(errors, last_error_names_the_key_of_a_duplicate_registration)
{
	struct item *it = item_new(2);

	cr_assert_eq(ureg_register(reg, "present", it), -EEXIST);
	cr_assert_not_null(strstr(ureg_last_error(), "present"),
			   "message: \"%s\"", ureg_last_error());
	item_free_unowned(it);
}

/*
 * Each failing call below runs in a thread of its own, whose last error
 * starts empty, so "a message is set" cannot be left over from an earlier
 * failure.
 */
typedef int (*fail_fn)(void);

#define FAILING(name, expr) static int name(void) { return (expr); }

static void *arg_void;
FAILING(f_register, ureg_register(reg, "present", present))
FAILING(f_register_factory, ureg_register_factory(reg, "bad key", &good_factory))
FAILING(f_replace, ureg_replace(reg, "unknown", present))
FAILING(f_replace_factory, ureg_replace_factory(reg, "unknown", &good_factory))
FAILING(f_unregister, ureg_unregister(reg, "present", 0))
FAILING(f_lookup, ureg_lookup(reg, "present", &arg_void))
FAILING(f_contains, ureg_contains(reg, ""))
FAILING(f_get, ureg_get(reg, "present", ctx, &arg_void)) /* singleton, no section */
FAILING(f_create_instance, ureg_create_instance(reg, "present", ctx, &arg_void))
FAILING(f_acquire, ureg_acquire(reg, "unknown", (ureg_ref **)&arg_void))
FAILING(f_keys, ureg_keys(NULL, (char ***)&arg_void, NULL))
FAILING(f_entry_info, ureg_entry_info(reg, "present", NULL))
FAILING(f_registry_new, ureg_registry_new(&item_type, "", (ureg_registry **)&arg_void))
FAILING(f_batch_new, ureg_batch_new(NULL, (ureg_batch **)&arg_void))
FAILING(f_batch_put, ureg_batch_put(NULL, "k", present, NULL, NULL))
FAILING(f_batch_commit, ureg_batch_commit(NULL, 0))
FAILING(f_ctx_new, ureg_ctx_new(NULL, 99, (ureg_ctx **)&arg_void))
FAILING(f_ctx_set_quota, ureg_ctx_set_quota(NULL, 1))
FAILING(f_ctx_stats, ureg_ctx_stats(ctx, NULL))
FAILING(f_instance_release, ureg_instance_release(ctx, present))
FAILING(f_ctx_foreach, ureg_ctx_foreach(NULL, NULL))
FAILING(f_arena_pool_size, ureg_arena_pool_size(0))
FAILING(f_listen, ureg_listen(reg, 0, ignore_event, NULL, (ureg_listener **)&arg_void))

static const struct { const char *name; fail_fn fn; } failing[] = {
#define F(n) { #n, f_##n }
	F(register), F(register_factory), F(replace), F(replace_factory),
	F(unregister), F(lookup), F(contains), F(get), F(create_instance),
	F(acquire), F(keys), F(entry_info), F(registry_new), F(batch_new),
	F(batch_put), F(batch_commit), F(ctx_new), F(ctx_set_quota),
	F(ctx_stats), F(instance_release), F(ctx_foreach), F(arena_pool_size),
	F(listen),
#undef F
};
#define NFAILING (sizeof(failing) / sizeof(failing[0]))

struct fresh_result {
	int rc;
	char before[8];
	char after[256];
};

static struct fresh_result results[NFAILING];

static void *run_fresh(void *p)
{
	size_t i = (size_t)(uintptr_t)p;

	snprintf(results[i].before, sizeof(results[i].before), "%s", ureg_last_error());
	results[i].rc = failing[i].fn();
	snprintf(results[i].after, sizeof(results[i].after), "%s", ureg_last_error());
	return NULL;
}

Test(errors, every_failing_call_leaves_a_message_for_its_thread)
{
	struct snapshot before = snap();

	for (size_t i = 0; i < NFAILING; i++) {
		pthread_t t;

		cr_assert_eq(pthread_create(&t, NULL, run_fresh, (void *)(uintptr_t)i), 0);
		cr_assert_eq(pthread_join(t, NULL), 0);
		cr_assert_lt(results[i].rc, 0, "%s succeeded", failing[i].name);
		cr_assert_str_empty(results[i].before, "%s: a new thread's last error "
				    "is not empty", failing[i].name);
		cr_assert_str_not_empty(results[i].after, "%s failed (%s) without a message",
					failing[i].name, ureg_strerror(results[i].rc));
	}
	assert_unchanged_(&before, "fresh threads");
}

static char other_thread_msg[256];

static void *fail_in_other_thread(void *p)
{
	(void)p;
	(void)ureg_unregister(reg, "unknown", UREG_BOTH);
	snprintf(other_thread_msg, sizeof(other_thread_msg), "%s", ureg_last_error());
	return NULL;
}

Test(errors, last_error_is_per_thread)
{
	struct item *it = item_new(2);
	char mine[256];
	pthread_t t;

	cr_assert_eq(ureg_register(reg, "present", it), -EEXIST);
	snprintf(mine, sizeof(mine), "%s", ureg_last_error());
	cr_assert_str_not_empty(mine);
	cr_assert_eq(pthread_create(&t, NULL, fail_in_other_thread, NULL), 0);
	cr_assert_eq(pthread_join(t, NULL), 0);
	cr_assert_str_not_empty(other_thread_msg);
	cr_assert_str_neq(other_thread_msg, mine);
	cr_assert_str_eq(ureg_last_error(), mine);
	item_free_unowned(it);
}
